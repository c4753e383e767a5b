/* test_sandbox.c: `guardian run` confines itself (base/sandbox.h): what /proc says of the running
 * process, that telemetry still flows, what health says, and the sandbox turned off. */
#include <criterion/criterion.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-07"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(sandbox, .init = setup, .fini = it_teardown, .timeout = 90);

/* site.json with 'member' ("\"sandbox\":{...}") added at the top level. */
static const char *with_member(const char *site, const char *member)
{
	char *text = h_read(site), *out;
	size_t n;

	cr_assert_not_null(text);
	cr_assert_eq(text[0], '{');
	n = strlen(text) + strlen(member) + 8;
	out = malloc(n);
	cr_assert_not_null(out);
	snprintf(out, n, "{%s,%s", member, text + 1);
	h_write(site, out);
	free(out);
	free(text);
	return site;
}

/* mosquitto, plcsim on Modbus TCP and a viewer of everything under the device's topics; the
 * adapters array for guardian. */
static void bed(char *adapters, size_t cap, int *bport)
{
	int mport = h_free_port();
	char simargs[128];

	*bport = h_free_port();
	cr_assert_gt(h_mosquitto(*bport), 0, "mosquitto did not start");
	cr_assert_gt(h_subscribe(*bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 7", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0, "plcsim did not start");
	snprintf(adapters, cap,
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":200,\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 mport);
}

/* Health says 'want' for "sandbox" within the timeout. */
static void expect_health_sandbox(const char *want)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "\"sandbox\":\"%s\"", want);
	cr_expect_eq(h_wait_contains(h_path("sub.out"), needle, 10000), 0,
		     "no health message with %s; viewer:\n%s", needle, h_read(h_path("sub.out")));
}

/* Stopped with SIGTERM, guardian exits 0: its shutdown (and, under ASan, the leak check) runs
 * inside the sandbox. */
static void expect_clean_stop(pid_t gd)
{
	int status = h_stop(gd, 10000);

	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "guardian did not exit 0 on SIGTERM (status 0x%x); log:\n%s", status,
		  h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0,
		     "a call was denied; log:\n%s", h_read(h_path("guardian.log")));
}

Test(sandbox, running_guardian_has_no_privileges_and_telemetry_flows)
{
	char adapters[1024], v[64];
	int bport;
	pid_t gd;

	bed(adapters, sizeof(adapters), &bport);
	gd = h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), 3, 15000);
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: profile gateway"), 1,
		     "no line that says the sandbox was entered; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_str_eq(h_proc_status(gd, "NoNewPrivs", v, sizeof(v)), "1");
	cr_expect_str_eq(h_proc_status(gd, "Seccomp", v, sizeof(v)), "2");
	cr_expect_str_eq(h_proc_status(gd, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status(gd, "CapPrm", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status(gd, "CapAmb", v, sizeof(v)), "0000000000000000");
	if (geteuid() == 0)
		cr_expect_str_eq(h_proc_status(gd, "CapBnd", v, sizeof(v)), "0000000000000000");
	else
		cr_log_info("not root: CapBnd not checked (clearing it needs CAP_SETPCAP)");
	expect_health_sandbox("seccomp");
	/* Every thread, not only the first. */
	cr_expect_eq(
		h_sh("n=0; for t in /proc/%d/task/*; do n=$((n+1)); "
		     "grep -q '^Seccomp:[[:space:]]*2$' $t/status || exit 1; done; [ $n -gt 3 ]",
		     (int)gd),
		0, "a thread of guardian is not under the filter");
	/* A policy reload (SIGHUP) reads the policy again inside the sandbox. */
	cr_assert_eq(kill(gd, SIGHUP), 0);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "policy reloaded", 10000), 0,
		     "no reload; log:\n%s", h_read(h_path("guardian.log")));
	expect_clean_stop(gd);
}

Test(sandbox, turned_off_it_runs_unconfined_and_health_says_off)
{
	char adapters[1024], v[64];
	int bport;
	pid_t gd;

	bed(adapters, sizeof(adapters), &bport);
	gd = h_guardian(with_member(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				    "\"sandbox\":{\"enabled\":false}"),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), 3, 15000);
	cr_expect_str_eq(h_proc_status(gd, "Seccomp", v, sizeof(v)), "0");
	cr_expect_str_eq(h_proc_status(gd, "NoNewPrivs", v, sizeof(v)), "0");
	expect_health_sandbox("off");
	cr_expect_gt(h_count(h_path("guardian.log"), "sandbox: off"), 0);
	expect_clean_stop(gd);
}

Test(sandbox, a_sandbox_that_cannot_be_entered_is_a_refusal_to_start)
{
	char adapters[1024];
	int bport, status;
	pid_t gd;

	bed(adapters, sizeof(adapters), &bport);
	gd = h_guardian(with_member(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				    "\"sandbox\":{\"user\":\"no-such-user-gd\"}"),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	status = h_wait_exit(gd, 10000);
	cr_expect(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
		  "guardian did not refuse to start (status 0x%x)", status);
	cr_expect_gt(h_count(h_path("guardian.log"),
			     "refusing to start: sandbox: no user \"no-such-user-gd\""),
		     0, "no clear reason; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("sub.out"), "/telemetry "), 0, "telemetry without a sandbox");
}

Test(sandbox, as_another_user_it_runs_as_that_user)
{
	const struct passwd *pw = getpwnam("nobody");
	char adapters[1024], v[64], want[32], site[4096];
	int bport;
	pid_t gd;

	if (geteuid() != 0)
		cr_skip_test("not root: only root can change user");
	cr_assert_not_null(pw, "no user nobody");
	bed(adapters, sizeof(adapters), &bport);
	/* What guardian opens once it runs as nobody: its state directory and TLS files. */
	cr_assert_eq(h_sh("chmod 711 '%s' && mkdir -m 700 '%s' && cp -r '%s' '%s' && "
			  "chown -R nobody '%s' '%s'",
			  h_dir(), h_path("state-nobody"), h_path("pki"), h_path("pki-nobody"),
			  h_path("state-nobody"), h_path("pki-nobody")),
		     0);
	it_write_site(DEVICE, bport, adapters, it_allow_all, "");
	snprintf(site, sizeof(site),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":"
		 "\"state-nobody\",\"sandbox\":{\"user\":\"nobody\"},"
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki-nobody/ca.crt\","
		 "\"cert_file\":\"pki-nobody/device.crt\",\"key_file\":\"pki-nobody/device.key\","
		 "\"health_interval_ms\":1000},\"adapters\":%s}",
		 bport, adapters);
	h_write(h_path("site.json"), site);
	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), 3, 15000);
	snprintf(want, sizeof(want), "%u", (unsigned)pw->pw_uid);
	cr_expect_str_eq(h_proc_status(gd, "Uid", v, sizeof(v)), want);
	cr_expect_str_eq(h_proc_status(gd, "CapBnd", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status(gd, "Seccomp", v, sizeof(v)), "2");
	expect_health_sandbox("seccomp");
	expect_clean_stop(gd);
}
