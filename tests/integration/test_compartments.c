/* test_compartments.c: with the sandbox, each adapter runs in a child process of its own
 * (guardian/compartment.h): what /proc says of each child, telemetry and writes through it, a
 * child killed and started again, no child left when guardian is killed, and what a child may not
 * do, tried from inside it (build/guardian-probe). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "compartments.h"
#include "site.h"

#define DEVICE "press-14"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(compartments, .init = setup, .fini = it_teardown, .timeout = 120);

static struct it_bed bed;

struct descriptors {
	pid_t pid;
	const char *link_kind;
};

static void check_descriptor(int fd, const char *target, void *arg)
{
	const struct descriptors *want = arg;

	cr_expect(fd <= 4, "child %d holds descriptor %d (%s)", (int)want->pid, fd, target);
	if (fd == 4)
		cr_expect(strstr(target, want->link_kind) != NULL, "fd 4 is %s, not %s", target,
			  want->link_kind);
}

/* What the child's descriptors are: "0 1 2 3:socket 4:<kind>", kinds socket or a tty. */
static void expect_only_its_descriptors(pid_t pid, const char *link_kind)
{
	struct descriptors want = { .pid = pid, .link_kind = link_kind };
	int n = (int)it_each_fd(pid, check_descriptor, &want);

	cr_expect_eq(n, 5, "child %d holds %d descriptors, not stdio, 3 and 4", (int)pid, n);
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
	pid_t gd;

	it_bed_up(&bed, DEVICE);
	it_bed_serialsim(&bed);
	it_bed_site(&bed, sandbox, 200);
	gd = it_bed_guardian(program);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no Modbus telemetry; log:\n%s", h_read(h_path("guardian.log")));
	if (want_scale)
		cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"scale/weight\"", 15000), 0,
			     "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	return gd;
}

Test(compartments, each_adapter_in_a_confined_child_of_its_own)
{
	pid_t gd = start_all("guardian", ""), plc, scale, plc2;
	size_t before;

	plc = h_child_process(gd, "adapter-child", "plc1", 0, 5000);
	scale = h_child_process(gd, "adapter-child", "scale", 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(scale, 0, "no child runs scale; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_neq(plc, scale);
	it_expect_confined(plc, "plc1's child");
	it_expect_confined(scale, "scale's child");
	expect_only_its_descriptors(plc, "socket:");
	expect_only_its_descriptors(scale, "/dev/pts/");

	/* A write the policy allows reaches the PLC through the child; one it refuses does not. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "guardian never subscribed to commands:\n%s",
		     h_read(h_path("guardian.log")));
	it_bed_expect_writes_decided(&bed);

	/* A child killed: counted, logged, started again; telemetry resumes. */
	cr_assert_eq(kill(plc, SIGKILL), 0);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"),
				     "adapter plc1: child exited with signal 9", 10000),
		     0, "log:\n%s", h_read(h_path("guardian.log")));
	plc2 = h_child_process(gd, "adapter-child", "plc1", plc, 10000);
	cr_expect_gt(plc2, 0, "plc1's child was not started again; log:\n%s",
		     h_read(h_path("guardian.log")));
	before = h_count(h_path("sub.out"), "\"plc1/counter\"");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "\"plc1/counter\"", before + 3, 10000), 0,
		     "plc1's telemetry did not resume; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));

	/* guardian killed with -9: no child survives it. */
	cr_assert_eq(kill(gd, SIGKILL), 0);
	cr_expect(h_gone(plc2, 5000), "plc1's child outlived guardian");
	cr_expect(h_gone(scale, 5000), "scale's child outlived guardian");
	it_kill_leftover(plc2, "adapter-child");
	it_kill_leftover(scale, "adapter-child");
}

Test(compartments, a_stop_ends_every_child)
{
	pid_t gd = start_all("guardian", ""), plc, scale;
	int status;

	plc = h_child_process(gd, "adapter-child", "plc1", 0, 5000);
	scale = h_child_process(gd, "adapter-child", "scale", 0, 5000);
	cr_assert_gt(plc, 0);
	cr_assert_gt(scale, 0);
	status = h_stop(gd, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "guardian did not exit 0 on SIGTERM (status 0x%x); log:\n%s", status,
		  h_read(h_path("guardian.log")));
	cr_expect(h_gone(plc, 3000) && h_gone(scale, 3000), "a child outlived guardian's stop");
	it_kill_leftover(plc, "adapter-child");
	it_kill_leftover(scale, "adapter-child");
}

/*
 * A signal to the whole process group (Ctrl-C in a terminal, systemd's default stop) reaches the
 * children too: they leave their stop to guardian, which ends them in order, without a word of
 * a child killed by a signal.
 */
Test(compartments, a_signal_to_the_group_is_guardians_to_act_on)
{
	pid_t gd = start_all("guardian", ""), plc, scale, up;
	int status;

	plc = h_child_process(gd, "adapter-child", "plc1", 0, 5000);
	scale = h_child_process(gd, "adapter-child", "scale", 0, 5000);
	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0);
	cr_assert_gt(scale, 0);
	cr_assert_gt(up, 0);
	cr_assert_eq(kill(plc, SIGTERM), 0);
	cr_assert_eq(kill(scale, SIGINT), 0);
	cr_assert_eq(kill(up, SIGTERM), 0);
	h_sleep_ms(300);
	cr_expect(h_process_runs(plc, "adapter-child") && h_process_runs(scale, "adapter-child") &&
			  h_process_runs(up, "uplink-child"),
		  "a child ended on a signal meant for guardian; log:\n%s",
		  h_read(h_path("guardian.log")));
	status = h_stop(gd, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "guardian did not exit 0 on SIGTERM (status 0x%x); log:\n%s", status,
		  h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "exited with signal"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect(h_gone(plc, 3000) && h_gone(scale, 3000) && h_gone(up, 3000),
		  "a child outlived guardian's stop");
	it_kill_leftover(plc, "adapter-child");
	it_kill_leftover(scale, "adapter-child");
	it_kill_leftover(up, "uplink-child");
}

Test(compartments, turned_off_the_adapters_are_threads)
{
	pid_t gd = start_all("guardian", "\"sandbox\":{\"compartments\":false},");

	cr_expect_eq(h_child_process(gd, "adapter-child", "plc1", 0, 0), 0,
		     "an adapter child runs with compartments off");
	cr_expect_eq(h_child_process(gd, "adapter-child", "scale", 0, 0), 0,
		     "an adapter child runs with compartments off");
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

	it_need_probe(path, sizeof(path));
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

	it_need_probe(path, sizeof(path));
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
	cr_expect_eq(it_bed_telemetry_count(&bed, "\"scale/"), 0,
		     "a sample of the bad child went out");
	before = h_count(h_path("sub.out"), "\"plc1/counter\"");
	cr_expect(h_wait_count(h_path("sub.out"), "\"plc1/counter\"", before + 3, 10000) == 0,
		  "plc1 stopped with scale's child");
}
