/* test_compartments_uplink.c: with compartments the uplink runs in a child process of its own
 * (guardian/uplink_remote.h): what /proc says of it, telemetry, commands and attestation through
 * it, the child killed and replaced with nothing lost, no child left when guardian is killed, and
 * what the child may not do, tried from inside it (build/guardian-probe). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "compartments.h"
#include "site.h"

#define DEVICE "press-15"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(compartments_uplink, .init = setup, .fini = it_teardown, .timeout = 150);

static struct it_bed bed;

/* None of the child's descriptors is a terminal or serial line, the identity key or anything
 * in the state directory (real_state, resolved) but its spool and its own directory. */
static void check_uplink_descriptor(int fd, const char *target, void *real_state_arg)
{
	const char *real_state = real_state_arg;

	if (fd <= 2)
		return; /* stdio: the log */
	cr_expect(strncmp(target, "/dev/tty", 8) != 0 && strncmp(target, "/dev/pts", 8) != 0,
		  "the uplink child holds a terminal: fd %d is %s", fd, target);
	cr_expect(strstr(target, "identity.key") == NULL,
		  "the uplink child holds the identity key: fd %d is %s", fd, target);
	if (strncmp(target, real_state, strlen(real_state)) == 0) {
		const char *rest = target + strlen(real_state);

		cr_expect(strncmp(rest, "/spool", 6) == 0 || strncmp(rest, "/uplink", 7) == 0,
			  "the uplink child holds %s of the state directory (fd %d)", target, fd);
	}
}

/* None of the child's descriptors is a terminal or serial line, the identity key or anything
 * in the state directory but its spool and its own directory; fd 3 is its socket. */
static void expect_no_device_and_no_key(pid_t pid, const char *state_dir)
{
	char real_state[4096];

	cr_assert_not_null(realpath(state_dir, real_state), "%s", state_dir);
	it_each_fd(pid, check_uplink_descriptor, real_state);
}

/*
 * Broker, viewer, plcsim on Modbus TCP (setpoint 500 at 120), serialsim on a pty pair, and
 * guardian 'program' with both adapters; 'sandbox': a top-level member of the site (with its
 * comma) or "". An identity.key stands in the state directory for the child to be kept from.
 * Returns guardian once telemetry arrived.
 */
static pid_t start_all(const char *program, const char *sandbox)
{
	pid_t gd;

	it_bed_up(&bed, DEVICE);
	it_bed_serialsim(&bed);
	it_bed_site(&bed, sandbox, 100);
	cr_assert_eq(h_sh("mkdir -p -m 700 '%s' && umask 077 && echo not-a-key >'%s/identity.key'",
			  h_path("state"), h_path("state")),
		     0);
	gd = it_bed_guardian(program);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no telemetry; log:\n%s", h_read(h_path("guardian.log")));
	return gd;
}

Test(compartments_uplink, the_uplink_child_is_confined_and_carries_telemetry_and_commands)
{
	pid_t gd = start_all("guardian", ""), up;

	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "uplink in a child process"), 1);
	it_expect_confined(up, "the uplink's child");
	cr_expect(it_bed_wait_telemetry(&bed, "\"scale/weight\"", 15000),
		  "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	expect_no_device_and_no_key(up, h_path("state"));

	/* Commands come back to guardian, whose policy decides: allowed reaches the PLC, refused
	 * does not. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "the uplink never subscribed to commands:\n%s",
		     h_read(h_path("guardian.log")));
	it_bed_expect_writes_decided(&bed);
	/* Health carries the child's counters. */
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"published\":", 10000), 0);
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
}

Test(compartments_uplink, a_killed_uplink_child_is_replaced_and_no_telemetry_is_lost)
{
	pid_t gd = start_all("guardian", ""), up, up2;

	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	it_wait_messages(h_path("sub.out"), 5, 10000);
	cr_assert_eq(kill(up, SIGKILL), 0);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "killed by signal 9", 10000), 0,
		     "log:\n%s", h_read(h_path("guardian.log")));
	/* Logged once, not once per message. */
	cr_expect_eq(h_count(h_path("guardian.log"), "the uplink child (pid"), 1, "log:\n%s",
		     h_read(h_path("guardian.log")));
	up2 = h_child_process(gd, "uplink-child", NULL, up, 10000);
	cr_assert_gt(up2, 0, "the uplink child was not started again; log:\n%s",
		     h_read(h_path("guardian.log")));
	it_expect_confined(up2, "the uplink's second child");
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "the uplink child is back", 10000), 0,
		     "log:\n%s", h_read(h_path("guardian.log")));
	/* Stopped cleanly, the new child drains: every seq arrived, across the kill. */
	it_bed_expect_resumed_and_nothing_lost(&bed, gd);
	cr_expect(h_gone(up2, 3000), "the uplink child outlived guardian's stop");
	it_kill_leftover(up2, "uplink-child");
}

Test(compartments_uplink, guardian_killed_leaves_no_uplink_child)
{
	pid_t gd = start_all("guardian", ""), up;

	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(kill(gd, SIGKILL), 0);
	cr_expect(h_gone(up, 5000), "the uplink child outlived guardian");
	it_kill_leftover(up, "uplink-child");
}

Test(compartments_uplink, turned_off_the_uplink_is_in_guardian)
{
	pid_t gd = start_all("guardian", "\"sandbox\":{\"compartments\":false},");

	cr_expect_eq(h_child_process(gd, "uplink-child", NULL, 0, 0), 0,
		     "an uplink child runs with compartments off");
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
	up = h_child_process(b.gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	it_expect_confined(up, "the uplink's child");
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

	it_need_probe(path, sizeof(path));
	snprintf(path, sizeof(path), "%s", h_path("tty-gd"));
	setenv("GUARDIAN_PROBE_DEVICE", path, 1);
	gd = start_all("guardian-probe", "");
	unsetenv("GUARDIAN_PROBE_DEVICE");
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "uplink probe: ", 3, 10000), 0,
		     "the probes did not run; log:\n%s", h_read(h_path("guardian.log")));
	if (h_count(h_path("guardian.log"), "files are not confined: Landlock is not available") >
	    0)
		cr_skip_test("Landlock is not available here: the uplink child's files are not "
			     "confined");
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
	int bport;
	pid_t gd, last;

	it_need_probe(path, sizeof(path));
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
	last = h_child_process(gd, "uplink-child", NULL, 0, 0);
	cr_assert_eq(kill(gd, SIGKILL), 0);
	if (last > 0) {
		cr_expect(h_gone(last, 5000), "the uplink child outlived guardian");
		it_kill_leftover(last, "uplink-child");
	}
}
