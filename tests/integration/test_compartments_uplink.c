/* test_compartments_uplink.c: with compartments the uplink runs in a child process of its own
 * (guardian/uplink_remote.h): what /proc says of it, telemetry, commands and attestation through
 * it, the child killed and replaced with nothing lost, no child left when guardian is killed, and
 * what the child may not do, tried from inside it (build/guardian-probe). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-15"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(compartments_uplink, .init = setup, .fini = it_teardown, .timeout = 150);

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

/* The live child of 'parent' whose cmdline is "guardian uplink-child ...", or 0. */
static pid_t uplink_child_of(pid_t parent)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	cr_assert_not_null(d);
	while (found == 0 && (e = readdir(d)) != NULL) {
		char path[300], buf[4096], state;
		int ppid = 0;
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
		if (len > strlen(buf) + 1 && strcmp(buf + strlen(buf) + 1, "uplink-child") == 0)
			found = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/* Waits up to 'ms' for an uplink child of 'parent' other than 'not'. */
static pid_t wait_uplink_child(pid_t parent, pid_t not, int ms)
{
	int64_t end = h_ms() + ms;
	pid_t p;

	while ((p = uplink_child_of(parent)) == 0 || p == not ) {
		if (h_ms() >= end)
			return 0;
		h_sleep_ms(50);
	}
	return p;
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

/* Whether 'p' is a live "guardian uplink-child". */
static bool is_uplink_child(pid_t p)
{
	char path[64], buf[4096];
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p);
	f = fopen(path, "r");
	if (f == NULL)
		return false;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	return len > strlen(buf) + 1 && strcmp(buf + strlen(buf) + 1, "uplink-child") == 0;
}

/* Should guardian have left its uplink child behind, it goes at the end of the test. */
static void kill_leftover(pid_t p)
{
	if (is_uplink_child(p))
		kill(p, SIGKILL);
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

/* None of the child's descriptors is a terminal or serial line, the identity key or anything
 * in the state directory but its spool and its own directory; fd 3 is its socket. */
static void expect_no_device_and_no_key(pid_t pid, const char *state_dir)
{
	char dir[64], path[320], target[4096], real_state[4096];
	struct dirent *e;
	DIR *d;

	cr_assert_not_null(realpath(state_dir, real_state), "%s", state_dir);
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
		if (fd == 3)
			cr_expect(strncmp(target, "socket:", 7) == 0, "fd 3 is %s", target);
		if (fd <= 2)
			continue; /* stdio: the log */
		cr_expect(strncmp(target, "/dev/tty", 8) != 0 &&
				  strncmp(target, "/dev/pts", 8) != 0,
			  "the uplink child holds a terminal: fd %d is %s", fd, target);
		cr_expect(strstr(target, "identity.key") == NULL,
			  "the uplink child holds the identity key: fd %d is %s", fd, target);
		if (strncmp(target, real_state, strlen(real_state)) == 0) {
			const char *rest = target + strlen(real_state);

			cr_expect(strncmp(rest, "/spool", 6) == 0 ||
					  strncmp(rest, "/uplink", 7) == 0,
				  "the uplink child holds %s of the state directory (fd %d)",
				  target, fd);
		}
	}
	closedir(d);
}

/*
 * Broker, viewer, plcsim on Modbus TCP (setpoint 500 at 120), serialsim on a pty pair, and
 * guardian 'program' with both adapters; 'sandbox': a top-level member of the site (with its
 * comma) or "". An identity.key stands in the state directory for the child to be kept from.
 * Returns guardian once telemetry arrived.
 */
static pid_t start_all(const char *program, const char *sandbox)
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
		 "\"port\":%d,\"poll_interval_ms\":100,\"points\":["
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
	cr_assert_eq(h_sh("mkdir -p -m 700 '%s' && umask 077 && echo not-a-key >'%s/identity.key'",
			  h_path("state"), h_path("state")),
		     0);
	snprintf(bin, sizeof(bin), "%s/%s", h_build(), program);
	gd = h_spawn(h_path("guardian.log"), argv);
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no telemetry; log:\n%s", h_read(h_path("guardian.log")));
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

/* Telemetry lines of the viewer that hold 'needle'. */
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

/*
 * The telemetry seqs the viewer got, as a bitmap up to *max: every seq from 1 to *max must be
 * there (a resent duplicate is allowed, a hole is not).
 */
static size_t seq_holes(uint64_t *max)
{
	static const char topic[] = "guardian/" DEVICE "/telemetry ";
	char *text = h_read(h_path("sub.out"));
	unsigned char *seen = calloc(1 << 20, 1);
	size_t holes = 0;

	cr_assert_not_null(seen);
	*max = 0;
	for (char *line = text; line != NULL && *line != '\0';) {
		char *eol = strchr(line, '\n');

		if (eol != NULL)
			*eol = '\0';
		if (strncmp(line, topic, sizeof(topic) - 1) == 0) {
			cJSON *doc = cJSON_Parse(line + sizeof(topic) - 1);
			double seq = doc != NULL ? it_json_num(doc, "seq") : -1;

			if (seq >= 1 && seq < (1 << 20)) {
				seen[(size_t)seq] = 1;
				if ((uint64_t)seq > *max)
					*max = (uint64_t)seq;
			}
			cJSON_Delete(doc);
		}
		line = eol != NULL ? eol + 1 : NULL;
	}
	for (uint64_t s = 1; s <= *max; s++)
		holes += seen[s] == 0;
	free(seen);
	free(text);
	return holes;
}

Test(compartments_uplink, the_uplink_child_is_confined_and_carries_telemetry_and_commands)
{
	pid_t gd = start_all("guardian", ""), up;
	size_t before;

	up = wait_uplink_child(gd, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "uplink in a child process"), 1);
	expect_confined(up);
	cr_expect(wait_telemetry("\"scale/weight\"", 15000), "no serial telemetry; log:\n%s",
		  h_read(h_path("guardian.log")));
	expect_no_device_and_no_key(up, h_path("state"));

	/* Commands come back to guardian, whose policy decides: allowed reaches the PLC, refused
	 * does not. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "the uplink never subscribed to commands:\n%s",
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
	/* Health carries the child's counters. */
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"published\":", 10000), 0);
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
}

Test(compartments_uplink, a_killed_uplink_child_is_replaced_and_no_telemetry_is_lost)
{
	pid_t gd = start_all("guardian", ""), up, up2;
	uint64_t max = 0;
	size_t holes, before;

	up = wait_uplink_child(gd, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	it_wait_messages(h_path("sub.out"), 5, 10000);
	cr_assert_eq(kill(up, SIGKILL), 0);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "killed by signal 9", 10000), 0,
		     "log:\n%s", h_read(h_path("guardian.log")));
	/* Logged once, not once per message. */
	cr_expect_eq(h_count(h_path("guardian.log"), "the uplink child (pid"), 1, "log:\n%s",
		     h_read(h_path("guardian.log")));
	up2 = wait_uplink_child(gd, up, 10000);
	cr_assert_gt(up2, 0, "the uplink child was not started again; log:\n%s",
		     h_read(h_path("guardian.log")));
	expect_confined(up2);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "the uplink child is back", 10000), 0,
		     "log:\n%s", h_read(h_path("guardian.log")));
	before = h_count(h_path("sub.out"), "/telemetry ");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "/telemetry ", before + 10, 15000), 0,
		     "telemetry did not resume; log:\n%s", h_read(h_path("guardian.log")));
	/* Stopped cleanly, the new child drains: every seq arrived, across the kill. */
	cr_expect_eq(h_stop(gd, 15000), 0, "guardian did not stop cleanly; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"reason\":\"stopped\"", 10000), 0);
	holes = seq_holes(&max);
	cr_expect_gt(max, 10);
	cr_expect_eq(holes, 0, "%zu of seq 1..%llu never arrived; log:\n%s", holes,
		     (unsigned long long)max, h_read(h_path("guardian.log")));
	cr_expect(gone(up2, 3000), "the uplink child outlived guardian's stop");
	kill_leftover(up2);
}

Test(compartments_uplink, guardian_killed_leaves_no_uplink_child)
{
	pid_t gd = start_all("guardian", ""), up;

	up = wait_uplink_child(gd, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(kill(gd, SIGKILL), 0);
	cr_expect(gone(up, 5000), "the uplink child outlived guardian");
	kill_leftover(up);
}

Test(compartments_uplink, turned_off_the_uplink_is_in_guardian)
{
	pid_t gd = start_all("guardian", "\"sandbox\":{\"compartments\":false},");

	cr_expect_eq(uplink_child_of(gd), 0, "an uplink child runs with compartments off");
	cr_expect_eq(h_count(h_path("guardian.log"), "uplink in a child process"), 0);
}

/* Attested: the rounds stay in guardian (their TLS is the identity key's); the kept certificate
 * goes to the child, whose telemetry connection it opens. */
Test(compartments_uplink, attested_telemetry_flows_through_the_child)
{
	struct h_attest b;
	pid_t up;

	it_attest_up(&b, 86400);
	h_attest_site(&b, DEVICE, "");
	it_attest_enroll(&b);
	it_attest_serve(&b);
	it_attest_viewer(&b, "guardian/" DEVICE "/#", NULL);
	it_attest_guardian(&b);
	it_wait_messages(h_path("sub.out"), 5, 30000);
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"state\":\"attested\"", 10000), 0,
		     "health does not say attested");
	up = wait_uplink_child(b.gd, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	expect_confined(up);
	expect_no_device_and_no_key(up, b.state);
}

/*
 * From inside the child (build/guardian-probe: right after confining itself it tries what a
 * compromised uplink would): the identity key and a serial line cannot be opened (Landlock:
 * EACCES), execve is refused (seccomp: EPERM), and telemetry flows all the same.
 */
Test(compartments_uplink, inside_the_uplink_child_the_key_a_device_and_exec_are_out_of_reach)
{
	char path[256];
	pid_t gd;

	snprintf(path, sizeof(path), "%s/guardian-probe", h_build());
	if (access(path, X_OK) != 0)
		cr_skip_test("%s is not built (make %s)", path, path);
	snprintf(path, sizeof(path), "%s", h_path("tty-gd"));
	setenv("GUARDIAN_PROBE_DEVICE", path, 1);
	gd = start_all("guardian-probe", "");
	unsetenv("GUARDIAN_PROBE_DEVICE");
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "uplink probe: ", 3, 10000), 0,
		     "the probes did not run; log:\n%s", h_read(h_path("guardian.log")));
	if (h_count(h_path("guardian.log"), "files are not confined: Landlock is not available") >
	    0)
		cr_skip_test(
			"Landlock is not available here: the uplink child's files are not confined");
	cr_expect_eq(
		h_count(h_path("guardian.log"), "identity.key: Permission denied") +
			h_count(h_path("guardian.log"), "identity.key: Operation not permitted"),
		1, "the identity key was not refused; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "tty-gd: Permission denied") +
			     h_count(h_path("guardian.log"), "tty-gd: Operation not permitted"),
		     1, "the serial line was not refused; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"),
			     "uplink probe: execve /bin/true: Operation not permitted"),
		     1, "execve was not refused; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "uplink probe: open the identity key"), 1);
	cr_expect_neq(h_sh("grep -q 'uplink probe: .*succeeded' '%s'", h_path("guardian.log")), 0,
		      "log:\n%s", h_read(h_path("guardian.log")));
	it_wait_messages(h_path("sub.out"), 5, 10000);
	(void)gd;
}

/*
 * A child that sends a frame of no known type (build/guardian-probe with GUARDIAN_PROBE_GARBAGE:
 * every child does, right after its first word) is killed and another started, with backoff;
 * guardian itself runs on.
 */
Test(compartments_uplink, a_child_that_breaks_the_protocol_is_killed_and_replaced)
{
	char path[256];
	const char *argv[] = { path, "run", "-c", NULL, NULL };
	char site[256], adapters[512];
	pid_t gd, last;

	snprintf(path, sizeof(path), "%s/guardian-probe", h_build());
	if (access(path, X_OK) != 0)
		cr_skip_test("%s is not built (make %s)", path, path);
	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":200,\"points\":[{\"name\":\"counter\","
		 "\"address\":0}]}]",
		 h_free_port());
	snprintf(site, sizeof(site), "%s",
		 it_write_site(DEVICE, bport, adapters, it_allow_all, ""));
	argv[3] = site;
	setenv("GUARDIAN_PROBE_GARBAGE", "1", 1);
	gd = h_spawn(h_path("guardian.log"), argv);
	unsetenv("GUARDIAN_PROBE_GARBAGE");
	cr_assert_gt(gd, 0);
	/* Each child is killed as it breaks the rules, and another started, with backoff. */
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "broke the protocol: killed", 3, 15000),
		     0, "log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_exit(gd, 0), -1, "guardian itself ended; log:\n%s",
		     h_read(h_path("guardian.log")));
	last = uplink_child_of(gd);
	cr_assert_eq(kill(gd, SIGKILL), 0);
	if (last > 0) {
		cr_expect(gone(last, 5000), "the uplink child outlived guardian");
		kill_leftover(last);
	}
}
