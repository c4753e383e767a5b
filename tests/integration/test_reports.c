/* test_reports.c: failure reports end to end with real parts (the attested bed of test_attest.c):
 * guardian killed and started again reports the crash to guardian-service, and refused writes
 * arrive summed per point, not one report per write. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "mill-9"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(reports, .init = setup, .fini = it_teardown, .timeout = 150);

/* Attested, with telemetry reaching the viewer (sub.out). */
static void bed_attested(struct h_attest *b)
{
	it_attest_up(b, 86400);
	h_attest_site(b, DEVICE, "");
	it_attest_enroll(b);
	it_attest_serve(b);
	it_attest_viewer(b, "guardian/" DEVICE "/#", "viewer");
	it_attest_guardian(b);
	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "attested; certificate valid", 30000),
		     0, "no attestation:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_wait_count(h_path("sub.out"), "/telemetry ", 3, 20000), 0,
		     "no telemetry:\n%s", h_read(h_path("guardian.log")));
}

/* `guardian-service reports` into 'out'; its exit status. */
static int reports_cmd(const struct h_attest *b, const char *args, const char *out)
{
	return h_sh("%s/guardian-service reports -d %s %s >%s 2>&1", h_build(), b->svc, args,
		    h_path(out));
}

/* Asks `guardian-service reports` until its output holds 'needle'; fails the test if not. */
static void wait_reports(const struct h_attest *b, const char *needle, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	do {
		cr_assert_eq(reports_cmd(b, "--device " DEVICE, "reports.out"), 0, "%s",
			     h_read(h_path("reports.out")));
		if (h_count(h_path("reports.out"), needle) > 0)
			return;
		h_sleep_ms(200);
	} while (h_ms() < end);
	cr_assert_fail("`guardian-service reports` never showed %s:\n%s\nservice log:\n%s", needle,
		       h_read(h_path("reports.out")), h_read(h_path("service.log")));
}

/* The number at "kinds.<kind>.<member>" in the service's JSON for DEVICE; -1 if absent. */
static double kind_num(const struct h_attest *b, const char *kind, const char *member)
{
	char path[128], *text;
	cJSON *doc;
	double v;

	cr_assert_eq(reports_cmd(b, "--device " DEVICE " --json", "reports.json"), 0);
	text = h_read(h_path("reports.json"));
	doc = cJSON_Parse(text);
	cr_assert_not_null(doc, "not JSON: %s", text);
	free(text);
	snprintf(path, sizeof(path), "kinds.%s.%s", kind, member);
	v = it_json_num(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "devices"), 0),
			path);
	cJSON_Delete(doc);
	return v;
}

/* How many reports wait in the device's queue on disk. */
static size_t queued(const struct h_attest *b)
{
	char out[64];

	snprintf(out, sizeof(out), "%s", h_path("queued.out"));
	h_sh("ls %s/reports | grep -c '\\.json$' >%s 2>/dev/null", b->state, out);
	{
		char *text = h_read(out);
		size_t n = text ? strtoul(text, NULL, 10) : 0;

		free(text);
		return n;
	}
}

Test(reports, a_killed_guardian_reports_its_crash_at_the_next_start)
{
	struct h_attest b;
	char path[300];
	int64_t end;

	bed_attested(&b);
	/* A clean start says nothing about the run before. */
	cr_expect_eq(h_count(h_path("guardian.log"), "did not stop cleanly"), 0);
	cr_assert_eq(kill(b.gd, SIGKILL), 0);
	cr_assert_neq(h_wait_exit(b.gd, 5000), -1, "guardian did not die");
	/* What a supervisor (systemd's ExecStopPost) leaves behind. */
	snprintf(path, sizeof(path), "%s/last-exit", b.state);
	h_write(path, "service_result=signal exit_code=killed exit_status=KILL\n");
	b.gd = h_guardian(b.site, h_path("guardian2.log"));
	cr_assert_gt(b.gd, 0);
	cr_assert_eq(h_wait_contains(h_path("guardian2.log"), "did not stop cleanly", 10000), 0,
		     "%s", h_read(h_path("guardian2.log")));
	wait_reports(&b, "unclean_stop", 30000);
	cr_expect_eq(h_count(h_path("reports.out"), "  crash "), 1, "%s",
		     h_read(h_path("reports.out")));
	cr_expect_geq(h_count(h_path("reports.out"), "exit_status=KILL"), 1,
		      "the supervisor's word did not arrive:\n%s", h_read(h_path("reports.out")));
	cr_expect_eq(kind_num(&b, "crash", "reports"), 1);
	/* Acknowledged by the broker: deleted on the device, and health says it was sent. */
	end = h_ms() + 10000;
	while (queued(&b) > 0 && h_ms() < end)
		h_sleep_ms(100);
	cr_expect_eq(queued(&b), 0, "an acknowledged report stayed on disk");
	cr_expect_eq(
		h_wait_contains(h_path("sub.out"), "\"reports\":{\"pending\":0,\"sent\":1", 10000),
		0, "health does not count the report sent:\n%s", h_read(h_path("sub.out")));
	/* A clean stop, then a start: no second crash report. */
	cr_assert_eq(h_stop(b.gd, 10000), 0);
	b.gd = h_guardian(b.site, h_path("guardian3.log"));
	cr_assert_eq(h_wait_contains(h_path("guardian3.log"), "attested; certificate valid", 30000),
		     0, "%s", h_read(h_path("guardian3.log")));
	cr_expect_eq(h_count(h_path("guardian3.log"), "did not stop cleanly"), 0,
		     "a clean stop was reported as a crash");
	h_stop(b.gd, 10000);
	cr_expect_eq(kind_num(&b, "crash", "reports"), 1);
}

Test(reports, refused_writes_arrive_summed_not_one_report_per_write)
{
	struct h_attest b;
	char viewer[300], cmd[200];

	bed_attested(&b);
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0);
	snprintf(viewer, sizeof(viewer), "%s/viewer", b.brk);
	/* The policy has no downlink rule: every write is refused. */
	for (int i = 0; i < 5; i++) {
		snprintf(cmd, sizeof(cmd),
			 "{\"id\":\"w%d\",\"point\":\"press/counter\",\"value\":%d}", i, 100 + i);
		cr_assert_eq(
			h_sh("mosquitto_pub -h localhost -p %d --cafile %s/ca.crt --cert %s.crt "
			     "--key %s.key -q 1 -t guardian/" DEVICE "/cmd -m '%s' >>%s 2>&1",
			     b.tport, h_path("pki"), viewer, viewer, cmd, h_path("pub.log")),
			0, "%s", h_read(h_path("pub.log")));
	}
	cr_assert_eq(h_wait_count(h_path("sub.out"), "\"status\":\"refused\"", 5, 10000), 0,
		     "not every write was answered:\n%s", h_read(h_path("sub.out")));
	wait_reports(&b, "write_refused", 20000);
	cr_expect_geq(h_count(h_path("reports.out"), "press/counter"), 1, "%s",
		      h_read(h_path("reports.out")));
	/* Time for five reports to arrive, were there five. */
	cr_assert_eq(h_wait_count(h_path("sub.out"), "/report ", 1, 5000), 0,
		     "the viewer saw no report:\n%s", h_read(h_path("sub.out")));
	h_sleep_ms(1500);
	cr_expect_eq(kind_num(&b, "write_refused", "reports"), 1,
		     "one report per write, not one per window:\n%s",
		     h_read(h_path("service.log")));
	cr_expect_eq(h_count(h_path("sub.out"), "/report "), 1, "%s", h_read(h_path("sub.out")));
	h_stop(b.gd, 10000);
}
