/* bench_sandbox.c: what the sandbox costs: guardian's CPU end to end at 10,000 and 100,000
 * points/s without it ("sandbox": {"enabled": false}), with it and the adapters as threads
 * ("compartments": false) and with each adapter in a child process of its own (compartments,
 * the children's CPU counted in), rounds alternating; and one system call's time under the
 * "gateway" filter against none. `bench_sandbox SECONDS [ROUNDS [LOADS]]` (LOADS 1: only the
 * first). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/sandbox.h"
#include "../tests/harness/harness.h"

#define DEVICE "bench-01"

struct result {
	double points_per_s; /* arrived at the subscriber */
	double cpu_pct;	     /* guardian's, % of one core, utime + stime from /proc/<pid>/stat */
	double cpu_sched;    /* the same from schedstat */
};

/* utime + stime of the whole process in seconds; -1 if gone. */
static double stat_cpu_s(pid_t pid)
{
	char path[64], *text, *p;
	unsigned long long ut, st;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	text = h_read(path);
	if (text == NULL)
		return -1;
	p = strrchr(text, ')');
	/* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
	 * stime */
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
		free(text);
		return -1;
	}
	free(text);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The CPU of 'pid' and of its children (compartments), in seconds by stat and ns by schedstat. */
static double tree_cpu_s(pid_t pid, long long *ns)
{
	double total = stat_cpu_s(pid);
	struct dirent *e;
	DIR *d = opendir("/proc");

	*ns = h_cpu_ns(pid);
	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], *text, *p;
		int ppid = 0;
		pid_t child;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		text = h_read(path);
		p = text != NULL ? strrchr(text, ')') : NULL;
		if (p != NULL && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == pid) {
			child = (pid_t)atoi(e->d_name);
			total += stat_cpu_s(child);
			*ns += h_cpu_ns(child);
		}
		free(text);
	}
	if (d != NULL)
		closedir(d);
	return total;
}

enum mode { MODE_OFF, MODE_THREADS, MODE_COMPARTMENTS };
static const char *const mode_names[] = { "off", "seccomp", "compartments" };

/* 'npoints' registers polled every 'interval_ms', all allowed, to mosquitto over TLS. */
static int run(enum mode mode, int npoints, int interval_ms, int seconds, struct result *r)
{
	bool sandbox = mode != MODE_OFF;
	int bport = h_free_port(), mport = h_free_port();
	size_t cap = (size_t)npoints * 64 + 4096;
	char args[160], policy[256], *text, *p;
	unsigned long long pts = 0, msgs = 0;
	int64_t w0, w1, m0, m1;
	long long n0, n1;
	double s0, s1;
	pid_t gd;

	if (h_pki(DEVICE) != 0 || h_mosquitto(bport) <= 0)
		return -1;
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --bulk %d --step-ms 1000 --quiet", mport,
		 npoints);
	if (h_plcsim(args, h_path("plcsim.log")) <= 0 ||
	    h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false) <= 0)
		return -1;
	snprintf(policy, sizeof(policy),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]}",
		 bport);
	h_write(h_path("policy.json"), policy);
	text = malloc(cap);
	if (text == NULL)
		return -1;
	p = text +
	    snprintf(text, cap,
		     "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\","
		     "\"state_dir\":\"state\",\"sandbox\":{\"enabled\":%s,\"compartments\":%s},"
		     "\"uplink\":{\"host\":\"localhost\",\"port\":%d,"
		     "\"ca_file\":\"pki/ca.crt\",\"cert_file\":\"pki/device.crt\","
		     "\"key_file\":\"pki/device.key\"},"
		     "\"adapters\":[{\"name\":\"plc\",\"type\":\"modbus-tcp\","
		     "\"host\":\"127.0.0.1\",\"port\":%d,\"poll_interval_ms\":%d,\"points\":[",
		     sandbox ? "true" : "false", mode == MODE_COMPARTMENTS ? "true" : "false",
		     bport, mport, interval_ms);
	for (int i = 0; i < npoints; i++)
		p += sprintf(p, "%s{\"name\":\"r%d\",\"address\":%d}", i ? "," : "", i, 1000 + i);
	strcpy(p, "]}]}");
	h_write(h_path("site.json"), text);
	free(text);
	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	if (gd <= 0)
		return -1;
	h_sleep_ms(5000);
	w0 = h_wall_ms();
	m0 = h_ms();
	s0 = tree_cpu_s(gd, &n0);
	h_sleep_ms(seconds * 1000);
	s1 = tree_cpu_s(gd, &n1);
	m1 = h_ms();
	w1 = h_wall_ms();
	h_sleep_ms(500);
	h_count_points(h_path("sub.out"), w0, w1, &pts, &msgs);
	r->points_per_s = (double)pts * 1000.0 / (double)(w1 - w0);
	r->cpu_pct = 100.0 * (s1 - s0) * 1000.0 / (double)(m1 - m0);
	r->cpu_sched = 100.0 * (double)(n1 - n0) / 1e6 / (double)(m1 - m0);
	if (h_count(h_path("guardian.log"), "sandbox: denied") > 0 ||
	    h_count(h_path("guardian.log"), "error") > 0)
		fprintf(stderr, "bench: guardian logged a denial or an error:\n%s",
			h_read(h_path("guardian.log")));
	if (sandbox != (h_count(h_path("guardian.log"), "sandbox: profile gateway") == 1) ||
	    (mode == MODE_COMPARTMENTS) !=
		    (h_count(h_path("guardian.log"), "in a child process of its own") > 0)) {
		fprintf(stderr, "bench: the sandbox is not as asked (%s)\n", mode_names[mode]);
		h_cleanup();
		return -1;
	}
	h_cleanup();
	return 0;
}

/* ns per getppid() (a system call that does nothing), in a child: confined to 'profile' or not. */
static double syscall_ns(const char *profile)
{
	int fds[2];
	double ns = -1;
	pid_t pid;

	if (pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		const long n = 2000000;
		struct timespec a, b;
		double v;
		char why[256];

		close(fds[0]);
		if (profile != NULL && gd_sandbox_enter(&(struct gd_sandbox){ .profile = profile },
							why, sizeof(why)) != 0) {
			fprintf(stderr, "bench: %s\n", why);
			_exit(1);
		}
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
		clock_gettime(CLOCK_MONOTONIC, &b);
		v = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
		    (double)n;
		if (write(fds[1], &v, sizeof(v)) != (ssize_t)sizeof(v))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	if (pid > 0 && read(fds[0], &ns, sizeof(ns)) != (ssize_t)sizeof(ns))
		ns = -1;
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return ns;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20, rounds = argc > 2 ? atoi(argv[2]) : 3;
	size_t nloads = argc > 3 ? (size_t)atoi(argv[3]) : 2;
	static const struct {
		const char *name;
		int npoints, interval_ms;
	} loads[] = { { "10,000 registers every 1 s", 10000, 1000 },
		      { "10,000 registers every 100 ms", 10000, 100 } };
	double none = 1e9, filtered = 1e9;

	if (seconds < 4)
		seconds = 4;
	if (rounds < 1)
		rounds = 1;
	/* The harness starts $GUARDIAN_BUILD/guardian: this program's own build unless told. */
	if (getenv("GUARDIAN_BUILD") == NULL && strrchr(argv[0], '/') != NULL) {
		char dir[1024];

		snprintf(dir, sizeof(dir), "%s", argv[0]);
		*strrchr(dir, '/') = '\0';
		setenv("GUARDIAN_BUILD", dir, 1);
	}
	for (int i = 0; i < 5; i++) {
		double a = syscall_ns(NULL), b = syscall_ns("gateway");

		none = a >= 0 && a < none ? a : none;
		filtered = b >= 0 && b < filtered ? b : filtered;
	}
	printf("one system call (getppid), best of 5 x 2,000,000: %.1f ns unconfined, %.1f ns "
	       "under the gateway filter (+%.1f ns)\n",
	       none, filtered, filtered - none);
	printf("end to end: plcsim (Modbus TCP) -> guardian -> mosquitto (TLS, QoS 1) -> "
	       "mosquitto_sub; %d s per run after 5 s warm-up, %d round%s, the three modes "
	       "alternating; CPU is guardian's own and its children's, %% of one core\n",
	       seconds, rounds, rounds == 1 ? "" : "s");
	printf("  %-32s %-12s %11s %11s %12s\n", "workload", "sandbox", "points/s", "CPU (stat)",
	       "CPU (sched)");
	for (size_t l = 0; l < sizeof(loads) / sizeof(loads[0]) && l < nloads; l++) {
		struct result sum[3] = { { 0 } };

		for (int round = 0; round < rounds; round++) {
			for (int m = MODE_COMPARTMENTS; m >= MODE_OFF; m--) {
				struct result r;

				if (run((enum mode)m, loads[l].npoints, loads[l].interval_ms,
					seconds, &r) != 0) {
					fprintf(stderr, "bench: a run failed to start\n");
					h_cleanup();
					return 1;
				}
				printf("  %-32s %-12s %11.0f %10.2f%% %11.2f%%  (round %d)\n",
				       loads[l].name, mode_names[m], r.points_per_s, r.cpu_pct,
				       r.cpu_sched, round + 1);
				fflush(stdout);
				sum[m].points_per_s += r.points_per_s / rounds;
				sum[m].cpu_pct += r.cpu_pct / rounds;
				sum[m].cpu_sched += r.cpu_sched / rounds;
			}
		}
		printf("  %-32s mean (sched): off %.2f%%, seccomp %.2f%%, compartments %.2f%%: "
		       "seccomp %+.2f, compartments %+.2f against seccomp, points of a core "
		       "(target <= +0.30 each)\n",
		       loads[l].name, sum[MODE_OFF].cpu_sched, sum[MODE_THREADS].cpu_sched,
		       sum[MODE_COMPARTMENTS].cpu_sched,
		       sum[MODE_THREADS].cpu_sched - sum[MODE_OFF].cpu_sched,
		       sum[MODE_COMPARTMENTS].cpu_sched - sum[MODE_THREADS].cpu_sched);
	}
	return 0;
}
