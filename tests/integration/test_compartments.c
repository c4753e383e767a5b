/* test_compartments.c: with the sandbox, each adapter runs in a child process of its own
 * (guardian/compartment.h): what /proc says of each child, telemetry and writes through it, a
 * child killed and started again, no child left when guardian is killed, and what a child may not
 * do, tried from inside it (build/guardian-probe). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-14"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(compartments, .init = setup, .fini = it_teardown, .timeout = 120);

static int bport;
static char tty_sim[256], tty_gd[256];

/* A field of /proc/<pid>/status, its first word ("" if absent). */
static const char *status_of(pid_t pid, const char *name, char *out, size_t cap)
{
	char path[64], key[64], *text;
	const char *at;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = h_read(path);
	if (text == NULL)
		return out;
	snprintf(key, sizeof(key), "\n%s:", name);
	at = strstr(text, key);
	if (at != NULL) {
		at += strlen(key);
		at += strspn(at, " \t");
		snprintf(out, cap, "%.*s", (int)strcspn(at, " \t\n"), at);
	}
	free(text);
	return out;
}

/* The child of 'parent' that runs adapter 'name' (its cmdline: guardian adapter-child FILE INDEX
 * NAME SHA256), or 0. */
static pid_t child_of(pid_t parent, const char *name)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	cr_assert_not_null(d);
	while (found == 0 && (e = readdir(d)) != NULL) {
		char path[300], buf[4096], state;
		const char *args[6] = { 0 };
		int ppid = 0, n = 0;
		FILE *f;
		size_t len;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		if (strrchr(buf, ')') == NULL ||
		    sscanf(strrchr(buf, ')') + 1, " %c %d", &state, &ppid) != 2 || ppid != parent ||
		    state == 'Z')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		for (size_t at = 0; at < len && n < 6; at += strlen(buf + at) + 1)
			args[n++] = buf + at;
		if (n == 6 && strcmp(args[1], "adapter-child") == 0 && strcmp(args[4], name) == 0)
			found = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/* Waits up to 'ms' for a child of 'parent' running 'name' other than 'not'. */
static pid_t wait_child(pid_t parent, const char *name, pid_t not, int ms)
{
	int64_t end = h_ms() + ms;
	pid_t p;

	while ((p = child_of(parent, name)) == 0 || p == not ) {
		if (h_ms() >= end)
			return 0;
		h_sleep_ms(50);
	}
	return p;
}

/* What the child's descriptors are: "0 1 2 3:socket 4:<kind>", kinds socket or a tty. */
static void expect_only_its_descriptors(pid_t pid, const char *link_kind)
{
	char dir[64], path[320], target[256];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	cr_assert_not_null(d, "cannot list %s (not root?)", dir);
	while ((e = readdir(d)) != NULL) {
		ssize_t len;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = '\0';
		n++;
		cr_expect(fd <= 4, "child %d holds descriptor %d (%s)", (int)pid, fd, target);
		if (fd == 3)
			cr_expect(strncmp(target, "socket:", 7) == 0, "fd 3 is %s", target);
		if (fd == 4)
			cr_expect(strstr(target, link_kind) != NULL, "fd 4 is %s, not %s", target,
				  link_kind);
	}
	closedir(d);
	cr_expect_eq(n, 5, "child %d holds %d descriptors, not stdio, 3 and 4", (int)pid, n);
}

static void expect_confined(pid_t pid)
{
	char v[64];

	cr_expect_str_eq(status_of(pid, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_of(pid, "CapPrm", v, sizeof(v)), "0000000000000000");
	if (geteuid() == 0)
		cr_expect_str_eq(status_of(pid, "CapBnd", v, sizeof(v)), "0000000000000000");
	else
		cr_log_info("not root: CapBnd not checked (clearing it needs CAP_SETPCAP)");
	cr_expect_str_eq(status_of(pid, "NoNewPrivs", v, sizeof(v)), "1");
	cr_expect_str_eq(status_of(pid, "Seccomp", v, sizeof(v)), "2");
}

/*
 * Broker, viewer, plcsim on Modbus TCP (setpoint 500 at 120), serialsim on a pty pair, and
 * guardian 'program' with both adapters; 'sandbox': the sandbox member of the site. Returns
 * guardian once both adapters' telemetry arrived.
 */
static pid_t start_some(const char *program, const char *sandbox, bool want_scale);

static pid_t start_all(const char *program, const char *sandbox)
{
	return start_some(program, sandbox, true);
}

/* start_all, waiting for the serial adapter's telemetry only if 'want_scale'. */
static pid_t start_some(const char *program, const char *sandbox, bool want_scale)
{
	int mport = h_free_port();
	char text[8192], simargs[512], bin[300], site[256];
	const char *argv[] = { bin, "run", "-c", site, NULL };
	pid_t gd;

	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(tty_sim, sizeof(tty_sim), "%s", h_path("tty-sim"));
	snprintf(tty_gd, sizeof(tty_gd), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(tty_sim, tty_gd), 0, "socat could not make a pty pair");
	snprintf(simargs, sizeof(simargs),
		 "--device %s --mode text --checksum xor8 --interval-ms 100", tty_sim);
	{
		char cmd[1024];
		const char *sh[] = { "/bin/sh", "-c", cmd, NULL };

		snprintf(cmd, sizeof(cmd), "exec %s/serialsim %s", h_build(), simargs);
		cr_assert_gt(h_spawn(h_path("sim.log"), sh), 0);
	}
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"function_codes\":{\"plc1\":[1,2,3,4,6]},"
		 "\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\"},"
		 "{\"points\":\"scale/*\",\"action\":\"allow\"}],"
		 "\"downlink\":[{\"points\":\"plc1/setpoint\",\"action\":\"allow\","
		 "\"range\":{\"min\":0,\"max\":1000}}]}",
		 bport);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "%s"
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":200,\"points\":["
		 "{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"setpoint\",\"address\":120,\"writable\":true}]},"
		 "{\"name\":\"scale\",\"type\":\"uart\",\"device\":\"%s\",\"baud\":115200,"
		 "\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\r\\n\",\"max_len\":80},"
		 "\"checksum\":{\"type\":\"xor8\",\"encoding\":\"hex\",\"separator\":\"*\"},"
		 "\"timeout_ms\":2000,\"backoff_min_ms\":200,\"backoff_max_ms\":1000,"
		 "\"regex\":\"^ST,(OK|OVL),([-+0-9.]+),kg,([-+0-9.]+),C,([0-9]+)$\","
		 "\"points\":[{\"name\":\"status\",\"group\":1,\"type\":\"string\"},"
		 "{\"name\":\"weight\",\"group\":2,\"unit\":\"kg\"}]}]}",
		 sandbox, bport, mport, tty_gd);
	snprintf(site, sizeof(site), "%s", h_path("site.json"));
	h_write(site, text);
	snprintf(bin, sizeof(bin), "%s/%s", h_build(), program);
	gd = h_spawn(h_path("guardian.log"), argv);
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no Modbus telemetry; log:\n%s", h_read(h_path("guardian.log")));
	if (want_scale)
		cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"scale/weight\"", 15000), 0,
			     "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	return gd;
}

static void send_command(const char *json)
{
	char file[256], pki[256];

	snprintf(file, sizeof(file), "%s", h_path("cmd.json"));
	snprintf(pki, sizeof(pki), "%s", h_path("pki"));
	h_write(file, json);
	cr_assert_eq(h_sh("mosquitto_pub -h localhost -p %d --cafile '%s/ca.crt' --cert "
			  "'%s/viewer.crt' --key '%s/viewer.key' -q 1 -t 'guardian/" DEVICE
			  "/cmd' -f '%s'",
			  bport, pki, pki, pki, file),
		     0);
}

/* Telemetry lines of the viewer that hold 'needle' (not the commands, which the viewer sees
 * too). */
static size_t telemetry_count(const char *needle)
{
	static const char topic[] = "guardian/" DEVICE "/telemetry ";
	char *text = h_read(h_path("sub.out"));
	size_t n = 0;

	for (char *line = text; line != NULL && *line != '\0';) {
		char *eol = strchr(line, '\n');

		if (eol != NULL)
			*eol = '\0';
		if (strncmp(line, topic, sizeof(topic) - 1) == 0 && strstr(line, needle) != NULL)
			n++;
		line = eol != NULL ? eol + 1 : NULL;
	}
	free(text);
	return n;
}

/* Waits up to 'ms' for a telemetry line with 'needle'. */
static bool wait_telemetry(const char *needle, int ms)
{
	int64_t end = h_ms() + ms;

	while (telemetry_count(needle) == 0) {
		if (h_ms() >= end)
			return false;
		h_sleep_ms(50);
	}
	return true;
}

/* Children seen, killed at the end of a test should guardian have left one behind. */
static void kill_leftover(pid_t p)
{
	char path[64], *cmd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p);
	cmd = h_read(path);
	if (cmd != NULL && cmd[0] != '\0' && strstr(cmd + strlen(cmd) + 1, "adapter-child") != NULL)
		kill(p, SIGKILL);
	free(cmd);
}

/* The pid is gone (or a zombie nobody waits for yet) within 'ms'. */
static bool gone(pid_t p, int ms)
{
	int64_t end = h_ms() + ms;
	char v[64];

	for (;;) {
		status_of(p, "State", v, sizeof(v));
		if (v[0] == '\0' || v[0] == 'Z')
			return true;
		if (h_ms() >= end)
			return false;
		h_sleep_ms(50);
	}
}

Test(compartments, each_adapter_in_a_confined_child_of_its_own)
{
	pid_t gd = start_all("guardian", ""), plc, scale, plc2;
	size_t before;

	plc = wait_child(gd, "plc1", 0, 5000);
	scale = wait_child(gd, "scale", 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(scale, 0, "no child runs scale; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_neq(plc, scale);
	expect_confined(plc);
	expect_confined(scale);
	expect_only_its_descriptors(plc, "socket:");
	expect_only_its_descriptors(scale, "/dev/pts/");

	/* A write the policy allows reaches the PLC through the child; one it refuses does not. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "guardian never subscribed to commands:\n%s",
		     h_read(h_path("guardian.log")));
	send_command("{\"id\":\"w1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	cr_expect(wait_telemetry("\"plc1/setpoint\",\"value\":600", 10000),
		  "the accepted write never reached the PLC; log:\n%s",
		  h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"status\":\"accepted\"", 10000), 0,
		     "no answer accepted w1; viewer:\n%s", h_read(h_path("sub.out")));
	send_command("{\"id\":\"w2\",\"point\":\"plc1/setpoint\",\"value\":5000}");
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"status\":\"refused\"", 10000), 0,
		     "no refusal of w2; viewer:\n%s", h_read(h_path("sub.out")));
	before = h_count(h_path("sub.out"), "\"plc1/setpoint\"");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "\"plc1/setpoint\"", before + 3, 10000), 0);
	cr_expect_eq(telemetry_count("\"plc1/setpoint\",\"value\":5000"), 0,
		     "a refused write reached the PLC");

	/* A child killed: counted, logged, started again; telemetry resumes. */
	cr_assert_eq(kill(plc, SIGKILL), 0);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"),
				     "adapter plc1: child exited with signal 9", 10000),
		     0, "log:\n%s", h_read(h_path("guardian.log")));
	plc2 = wait_child(gd, "plc1", plc, 10000);
	cr_expect_gt(plc2, 0, "plc1's child was not started again; log:\n%s",
		     h_read(h_path("guardian.log")));
	before = h_count(h_path("sub.out"), "\"plc1/counter\"");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "\"plc1/counter\"", before + 3, 10000), 0,
		     "plc1's telemetry did not resume; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));

	/* guardian killed with -9: no child survives it. */
	cr_assert_eq(kill(gd, SIGKILL), 0);
	cr_expect(gone(plc2, 5000), "plc1's child outlived guardian");
	cr_expect(gone(scale, 5000), "scale's child outlived guardian");
	kill_leftover(plc2);
	kill_leftover(scale);
}

Test(compartments, a_stop_ends_every_child)
{
	pid_t gd = start_all("guardian", ""), plc, scale;
	int status;

	plc = wait_child(gd, "plc1", 0, 5000);
	scale = wait_child(gd, "scale", 0, 5000);
	cr_assert_gt(plc, 0);
	cr_assert_gt(scale, 0);
	status = h_stop(gd, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "guardian did not exit 0 on SIGTERM (status 0x%x); log:\n%s", status,
		  h_read(h_path("guardian.log")));
	cr_expect(gone(plc, 3000) && gone(scale, 3000), "a child outlived guardian's stop");
	kill_leftover(plc);
	kill_leftover(scale);
}

Test(compartments, turned_off_the_adapters_are_threads)
{
	pid_t gd = start_all("guardian", "\"sandbox\":{\"compartments\":false},");

	cr_expect_eq(child_of(gd, "plc1"), 0, "an adapter child runs with compartments off");
	cr_expect_eq(child_of(gd, "scale"), 0, "an adapter child runs with compartments off");
	cr_expect_eq(h_count(h_path("guardian.log"), "in a child process of its own"), 0);
}

/*
 * From inside each child (build/guardian-probe: the child tries, right after entering its
 * sandbox, what a compromised adapter would): the identity key, an IPv4 and an IPv6 socket,
 * execve and connect all fail with EPERM, and telemetry flows all the same.
 */
Test(compartments, inside_a_child_the_key_the_network_and_exec_are_out_of_reach)
{
	static const char *const tries[] = { "identity.key): ", "socket(AF_INET): ",
					     "socket(AF_INET6): ", "execve(/bin/true): ",
					     "connect(AF_UNIX): " };
	char path[256], line[128];
	bool sanitized;
	pid_t gd;

	snprintf(path, sizeof(path), "%s/guardian-probe", h_build());
	if (access(path, X_OK) != 0)
		cr_skip_test("%s is not built (make %s)", path, path);
	/* A key to read, should the filter let the open through. */
	cr_assert_eq(h_sh("mkdir -p -m 700 '%s' && echo secret > '%s/identity.key' && chmod 600 "
			  "'%s/identity.key'",
			  h_path("state"), h_path("state"), h_path("state")),
		     0);
	gd = start_all("guardian-probe", "");
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "probe: ", 10, 10000), 0,
		     "the probes did not run in both children; log:\n%s",
		     h_read(h_path("guardian.log")));
	sanitized = h_count(h_path("guardian.log"), "probe: a sanitizer build") > 0;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		/* Sanitizer builds let read-only opens through, for LeakSanitizer (base/sandbox.c):
		 * never a release. */
		if (i == 0 && sanitized) {
			cr_log_info("a sanitizer build: the open of the key is not checked");
			continue;
		}
		snprintf(line, sizeof(line), "%sOperation not permitted", tries[i]);
		cr_expect_eq(h_count(h_path("guardian.log"), line), 2,
			     "not refused with EPERM in both children: %s; log:\n%s", tries[i],
			     h_read(h_path("guardian.log")));
	}
	if (!sanitized)
		cr_expect_eq(h_count(h_path("guardian.log"), "succeeded"), 0);
	(void)gd;
}

/* A child that sends a point index it does not have is killed, logged with the adapter's name,
 * counted and started again after a backoff; the other adapter goes on. */
Test(compartments, a_child_that_breaks_the_protocol_is_killed_and_started_again)
{
	char path[256];
	size_t before;

	snprintf(path, sizeof(path), "%s/guardian-probe", h_build());
	if (access(path, X_OK) != 0)
		cr_skip_test("%s is not built (make %s)", path, path);
	setenv("GUARDIAN_PROBE_BAD_INDEX", "scale", 1);
	start_some("guardian-probe", "", false);
	unsetenv("GUARDIAN_PROBE_BAD_INDEX");
	cr_expect_eq(
		h_wait_count(h_path("guardian.log"), "adapter scale: its child (pid ", 2, 15000), 0,
		"the bad child was not killed, or not started again; log:\n%s",
		h_read(h_path("guardian.log")));
	cr_expect_gt(h_count(h_path("guardian.log"),
			     "broke the protocol: index: point index 2 out of range; killed"),
		     0, "log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "adapter plc1: its child"), 0);
	cr_expect_eq(telemetry_count("\"scale/"), 0, "a sample of the bad child went out");
	before = h_count(h_path("sub.out"), "\"plc1/counter\"");
	cr_expect(h_wait_count(h_path("sub.out"), "\"plc1/counter\"", before + 3, 10000) == 0,
		  "plc1 stopped with scale's child");
}
