/* fleet.c: a fleet bed for tests and benchmarks: one guardian-service directory (any store),
 * mosquitto with a test-only listener, several `serve` instances on the directory sharing the
 * load through $share, and build/fleetsim's simulated devices against them. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Runs a setup command with its output in the bed's steps log. 0 or -1 (the command logged). */
static int fleet_step(const struct h_fleet *f, const char *cmd)
{
	if (h_sh("%s >>%s 2>&1", cmd, f->steps) == 0)
		return 0;
	h_sh("echo 'setup: this step failed: %s' >>%s", cmd, f->steps);
	return -1;
}

int h_fleet_up(struct h_fleet *f, const char *name, const char *init_args)
{
	const struct passwd *pw = getpwuid(getuid());
	char cmd[2048], conf[2048], path[320];

	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->svc, sizeof(f->svc), "%s/%s-svc", h_dir(), name);
	snprintf(f->pki, sizeof(f->pki), "%s", h_path("pki"));
	snprintf(f->steps, sizeof(f->steps), "%s/%s-steps.log", h_dir(), name);
	f->port = h_free_port();
	if (h_pki("fleet-pki") != 0) {
		h_sh("echo 'setup: tools/pki.sh failed' >>%s", f->steps);
		return -1;
	}
	snprintf(cmd, sizeof(cmd),
		 "%s/guardian-service init -d %s --broker localhost:%d --broker-ca %s/ca.crt %s",
		 h_build(), f->svc, f->port, f->pki, init_args ? init_args : "");
	if (fleet_step(f, cmd) != 0)
		return -1;
	/*
	 * A test-only broker: one TLS listener on loopback taking any client certificate of the
	 * manufacturer CA, without per-device ACLs, because fleetsim's simulated devices share a
	 * few connections. The attestation listener's ACLs (tools/attest-broker.sh) are tested
	 * elsewhere: test_attest.c, devices_cannot_touch_each_others_topics.
	 */
	snprintf(conf, sizeof(conf),
		 "# Written by tests/harness/fleet.c: test only, loopback only, no ACLs.\n"
		 "per_listener_settings false\n"
		 "allow_anonymous false\n"
		 "user %s\n"
		 "persistence false\n"
		 "max_queued_messages 100000\n"
		 "set_tcp_nodelay true\n"
		 "log_dest stderr\n"
		 "log_type error\nlog_type warning\nlog_type notice\n"
		 "connection_messages false\n"
		 "listener %d 127.0.0.1\n"
		 "cafile %s/mfg-ca.crt\n"
		 "certfile %s/broker.crt\n"
		 "keyfile %s/broker.key\n"
		 "require_certificate true\n"
		 "use_identity_as_username true\n",
		 pw ? pw->pw_name : "root", f->port, f->svc, f->pki, f->pki);
	snprintf(path, sizeof(path), "%s/%s-mosquitto.conf", h_dir(), f->name);
	h_write(path, conf);
	{
		char log[320];
		const char *argv[] = { "mosquitto", "-c", path, NULL };

		snprintf(log, sizeof(log), "%s/%s-mosquitto.log", h_dir(), f->name);
		f->broker = h_spawn(log, argv);
		if (f->broker <= 0 || h_wait_port(f->port, 10000) != 0) {
			h_sh("echo 'setup: mosquitto did not listen on %d; its log:'; cat %s >>%s",
			     f->port, log, f->steps);
			return -1;
		}
	}
	return 0;
}

int h_fleet_serve(struct h_fleet *f, int n)
{
	char bin[300];

	snprintf(bin, sizeof(bin), "%s/guardian-service", h_build());
	for (int i = 0; i < n && f->nserve < H_FLEET_MAX; i++) {
		const char *argv[] = { bin, "serve", "-d", f->svc, NULL };
		int k = f->nserve;

		char log[320];

		snprintf(log, sizeof(log), "%s/%s-serve-%d.log", h_dir(), f->name, k);
		memcpy(f->serve_log[k], log, sizeof(log));
		f->serve[k] = h_spawn(f->serve_log[k], argv);
		f->nserve++;
		if (f->serve[k] <= 0 || h_wait_contains(f->serve_log[k], "ready", 15000) != 0) {
			h_sh("echo 'setup: serve %d did not get ready; see %s' >>%s", k,
			     f->serve_log[k], f->steps);
			return -1;
		}
	}
	return 0;
}

int h_fleet_run(struct h_fleet *f, const char *args, const char *outfile, int timeout_ms)
{
	char bin[300], broker[32], work[300], ca[300], sbin[300];
	char *copy = strdup(args ? args : "");
	const char *argv[48];
	size_t n = 0;
	pid_t pid;
	int status;

	snprintf(bin, sizeof(bin), "%s/fleetsim", h_build());
	snprintf(broker, sizeof(broker), "localhost:%d", f->port);
	snprintf(work, sizeof(work), "%s/%s-fleet-%lld", h_dir(), f->name, (long long)h_ms());
	snprintf(ca, sizeof(ca), "%s/ca.crt", f->pki);
	snprintf(sbin, sizeof(sbin), "%s/guardian-service", h_build());
	argv[n++] = bin;
	argv[n++] = "-d";
	argv[n++] = f->svc;
	argv[n++] = "--broker";
	argv[n++] = broker;
	argv[n++] = "--ca";
	argv[n++] = ca;
	argv[n++] = "--work";
	argv[n++] = work;
	argv[n++] = "--service-bin";
	argv[n++] = sbin;
	for (char *tok = strtok(copy, " "); tok != NULL && n < 46; tok = strtok(NULL, " "))
		argv[n++] = tok;
	argv[n] = NULL;
	pid = h_spawn(outfile, argv);
	free(copy);
	if (pid <= 0)
		return -1;
	status = h_wait_exit(pid, timeout_ms);
	if (status == -1) {
		h_sh("echo 'fleetsim did not finish within %d ms' >>%s", timeout_ms, outfile);
		h_stop(pid, 2000);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

double h_fleet_result(const char *outfile, const char *key)
{
	char *text = h_read(outfile), *at, needle[64];
	double v = -1;

	snprintf(needle, sizeof(needle), " %s=", key);
	at = text ? strstr(text, "fleetsim-result:") : NULL;
	if (at != NULL && (at = strstr(at, needle)) != NULL)
		v = atof(at + strlen(needle));
	free(text);
	return v;
}

size_t h_fleet_answered(const struct h_fleet *f, int i)
{
	if (i < 0 || i >= f->nserve)
		return 0;
	return h_count(f->serve_log[i], ": ok: operational certificate issued");
}

void h_fleet_down(struct h_fleet *f)
{
	for (int i = 0; i < f->nserve; i++)
		if (f->serve[i] > 0)
			h_stop(f->serve[i], 5000);
	f->nserve = 0;
	if (f->broker > 0)
		h_stop(f->broker, 2000);
	f->broker = 0;
}
