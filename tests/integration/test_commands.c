/* test_commands.c: writes from the cloud through the real broker: what the policy allows reaches
 * the PLC, the rest is refused, audited and explained. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-07"

static int bport;
/* The uplink rules start_all writes; a test may change them first. */
static const char *uplink_rules = "[{\"points\":\"plc1/*\",\"action\":\"allow\"}]";
static pid_t gd_pid;

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(commands, .init = setup, .fini = it_teardown, .timeout = 90);

/* Starts broker, subscriber, plcsim (setpoint at 500) and guardian with 'function_codes'. */
static void start_all(const char *function_codes)
{
	int mport = h_free_port();
	char text[8192], simargs[128];

	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],%s"
		 "\"uplink\":%s,"
		 "\"downlink\":[{\"points\":\"plc1/setpoint\",\"action\":\"allow\","
		 "\"range\":{\"min\":0,\"max\":1000},\"max_step\":200,\"min_interval_ms\":2000}]}",
		 bport, function_codes, uplink_rules);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":100,\"points\":["
		 "{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"setpoint\",\"address\":120,\"writable\":true}]}]}",
		 bport, mport);
	h_write(h_path("site.json"), text);
	gd_pid = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(gd_pid, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 10000),
		     0, "no telemetry:\n%s", h_read(h_path("guardian.log")));
	/* Commands can arrive once the broker has granted guardian's subscription. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "guardian did not subscribe to its commands:\n%s",
		     h_read(h_path("guardian.log")));
}

/*
 * Waits for 'n' telemetry messages more than have arrived so far: polls that
 * began after whatever came before. What did not show by then did not happen.
 */
static void wait_later_telemetry(size_t n)
{
	size_t now = h_count(h_path("sub.out"), "/telemetry ");

	cr_assert_eq(h_wait_count(h_path("sub.out"), "/telemetry ", now + n, 10000), 0,
		     "telemetry stopped");
}

/* Publishes one command as the cloud would. */
static void send_command(const char *json)
{
	char pki[256];

	snprintf(pki, sizeof(pki), "%s", h_path("pki"));
	cr_assert_eq(h_sh("mosquitto_pub -h localhost -p %d --cafile '%s/ca.crt' --cert "
			  "'%s/viewer.crt' --key '%s/viewer.key' -q 1 -t 'guardian/" DEVICE
			  "/cmd' -m '%s'",
			  bport, pki, pki, pki, json),
		     0);
}

/* Waits for the result of command 'id'; returns the line (caller frees) or fails. */
static char *result_of(const char *id)
{
	char needle[128];
	int64_t end = h_ms() + 10000;

	snprintf(needle, sizeof(needle), "cmd/result {\"id\":\"%s\"", id);
	while (h_ms() < end) {
		char *text = h_read(h_path("sub.out"));
		char *p = text ? strstr(text, needle) : NULL;

		if (p != NULL) {
			char *eol = strchr(p, '\n');
			char *line;

			if (eol != NULL)
				*eol = '\0';
			line = strdup(p);
			free(text);
			return line;
		}
		free(text);
		h_sleep_ms(50);
	}
	cr_assert_fail("no result for command %s; guardian log:\n%s", id,
		       h_read(h_path("guardian.log")));
	return NULL;
}

static void expect_refused(const char *id, const char *reason_part)
{
	char *r = result_of(id);

	cr_expect(strstr(r, "\"status\":\"refused\"") != NULL, "%s not refused: %s", id, r);
	cr_expect(strstr(r, reason_part) != NULL, "%s: no \"%s\" in %s", id, reason_part, r);
	free(r);
}

/* The last telemetry value of the setpoint, as text. */
static long last_setpoint(void)
{
	char *text = h_read(h_path("sub.out"));
	char *last = NULL;
	long v = -1;

	for (char *p = text; p && (p = strstr(p, "\"plc1/setpoint\",\"value\":")) != NULL; p++)
		last = p;
	if (last != NULL)
		v = atol(last + strlen("\"plc1/setpoint\",\"value\":"));
	free(text);
	return v;
}

static int audit_verify(void)
{
	return h_sh("'%s/guardian' audit verify -c '%s' >'%s' 2>&1", h_build(), h_path("site.json"),
		    h_path("verify.out"));
}

Test(commands, policy_decides_every_write_and_audits_refusals)
{
	char *r;

	start_all("\"function_codes\":{\"plc1\":[1,2,3,4,6]},");

	/* In range, a step of 100 from 500: written, and read back from the PLC. */
	send_command("{\"id\":\"c1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	r = result_of("c1");
	cr_expect(strstr(r, "\"status\":\"accepted\"") != NULL, "%s", r);
	free(r);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":600", 5000), 0,
		     "the write did not reach the PLC");

	/* Too soon after c1 (min_interval_ms 2000), though in range and a small step. */
	send_command("{\"id\":\"c2\",\"point\":\"plc1/setpoint\",\"value\":650}");
	expect_refused("c2", "min_interval");
	/* Out of range. */
	send_command("{\"id\":\"c3\",\"point\":\"plc1/setpoint\",\"value\":1200}");
	expect_refused("c3", "1000");
	/* Too large a step: 600 -> 900 with max_step 200 (once min_interval_ms has passed: the
	 * policy's own clock, not a wait for readiness). */
	h_sleep_ms(2100);
	send_command("{\"id\":\"c4\",\"point\":\"plc1/setpoint\",\"value\":900}");
	expect_refused("c4", "max_step");
	/* A point the map does not mark writable, that no downlink rule allows. */
	send_command("{\"id\":\"c5\",\"point\":\"plc1/counter\",\"value\":1}");
	expect_refused("c5", "plc1/counter is not writable in the adapter map");
	/* A point that does not exist. */
	send_command("{\"id\":\"c6\",\"point\":\"plc1/nope\",\"value\":1}");
	expect_refused("c6", "unknown point");
	/* Malformed: no value. */
	send_command("{\"id\":\"c7\",\"point\":\"plc1/setpoint\"}");
	expect_refused("c7", "malformed");
	/* Not even JSON: refused with id null. */
	send_command("this is not json");
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "cmd/result {\"id\":null", 5000), 0);

	/* Nothing refused was written: the PLC still holds 600 in polls after the last answer. */
	wait_later_telemetry(2);
	cr_expect_eq(last_setpoint(), 600);

	/* Every refusal is in the audit log, and published on the audit topic. */
	cr_expect_geq(h_count(h_path("state/audit.log"), "\"event\":\"write_refused\""), 7);
	cr_expect_eq(h_count(h_path("state/audit.log"), "\"event\":\"write_done\""), 1);
	cr_expect_geq(h_count(h_path("sub.out"), "guardian/" DEVICE "/audit "), 7);
	cr_expect_eq(audit_verify(), 0, "%s", h_read(h_path("verify.out")));
}

Test(commands, a_write_needs_its_function_code)
{
	char *r;

	start_all(""); /* no function_codes: reads only */
	send_command("{\"id\":\"f1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	r = result_of("f1");
	cr_expect(strstr(r, "\"status\":\"refused\"") != NULL, "%s", r);
	cr_expect(strstr(r, "function code 6") != NULL, "%s", r);
	free(r);
	wait_later_telemetry(2);
	cr_expect_eq(last_setpoint(), 500, "a refused write changed the PLC");
}

Test(commands, tampering_with_the_audit_log_is_detected)
{
	start_all("\"function_codes\":{\"plc1\":[1,2,3,4,6]},");
	send_command("{\"id\":\"t1\",\"point\":\"plc1/nope\",\"value\":1}");
	free(result_of("t1"));
	send_command("{\"id\":\"t2\",\"point\":\"plc1/setpoint\",\"value\":5000}");
	free(result_of("t2"));
	send_command("{\"id\":\"t3\",\"point\":\"plc1/other\",\"value\":1}");
	free(result_of("t3"));
	cr_assert_eq(audit_verify(), 0, "%s", h_read(h_path("verify.out")));
	/* Someone hides the out-of-range attempt: 5000 becomes 500 in line 2. */
	cr_assert_eq(
		h_sh("sed -i '2s/\"value\":5000/\"value\":500/' '%s'", h_path("state/audit.log")),
		0);
	cr_expect_neq(audit_verify(), 0, "a changed record passed verification");
	cr_expect_gt(h_count(h_path("verify.out"), "line 2"), 0, "%s",
		     h_read(h_path("verify.out")));
}

Test(commands, sighup_reloads_a_valid_policy_and_keeps_the_old_one_otherwise)
{
	char text[1024];
	start_all("\"function_codes\":{\"plc1\":[1,2,3,4,6]},");
	/* A broken policy: the old one stays in force and the log says why. */
	h_write(h_path("policy.json"), "{\"version\":1,\"connections\":[],\"uplink\":[]}");
	cr_assert_eq(kill(gd_pid, SIGHUP), 0);
	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "reload refused", 5000), 0, "%s",
		     h_read(h_path("guardian.log")));
	send_command("{\"id\":\"r1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	free(result_of("r1")); /* still decided by the old policy: accepted */
	cr_expect_gt(h_count(h_path("sub.out"), "{\"id\":\"r1\",\"point\":\"plc1/setpoint\","
						"\"value\":600,\"status\":\"accepted\""),
		     0);
	/* A valid one that denies the counter and allows no writes: in force at once. */
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"uplink\":[{\"points\":\"plc1/setpoint\",\"action\":\"allow\"}]}",
		 bport);
	h_write(h_path("policy.json"), text);
	cr_assert_eq(kill(gd_pid, SIGHUP), 0);
	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "policy reloaded", 5000), 0);
	/* The old policy would refuse it for min_interval_ms at most: the reason tells. */
	send_command("{\"id\":\"r2\",\"point\":\"plc1/setpoint\",\"value\":650}");
	expect_refused("r2", "default deny");
}

Test(commands, explain_names_the_deciding_rule_and_the_decision)
{
	int rc;

	start_all("\"function_codes\":{\"plc1\":[1,2,3,4,6]},");
	rc = h_sh("'%s/guardian' policy explain -c '%s' plc1/setpoint 1200 >'%s' 2>&1", h_build(),
		  h_path("site.json"), h_path("explain.out"));
	cr_assert_eq(rc, 0, "%s", h_read(h_path("explain.out")));
	cr_expect_gt(h_count(h_path("explain.out"), "uplink:   uplink[0] (\"plc1/*\") allows it"),
		     0, "%s", h_read(h_path("explain.out")));
	cr_expect_gt(h_count(h_path("explain.out"), "downlink: downlink[0] (\"plc1/setpoint\") "
						    "allows writes; range 0..1000; max_step 200"),
		     0, "%s", h_read(h_path("explain.out")));
	cr_expect_gt(h_count(h_path("explain.out"), "above the maximum 1000"), 0, "%s",
		     h_read(h_path("explain.out")));
	rc = h_sh("'%s/guardian' policy explain -c '%s' plc1/counter >'%s' 2>&1", h_build(),
		  h_path("site.json"), h_path("explain.out"));
	cr_assert_eq(rc, 0);
	cr_expect_gt(
		h_count(h_path("explain.out"), "downlink: no rule allows writes (default deny)"), 0,
		"%s", h_read(h_path("explain.out")));
	rc = h_sh("'%s/guardian' policy explain -c '%s' plc1/nope >'%s' 2>&1", h_build(),
		  h_path("site.json"), h_path("explain.out"));
	cr_expect_eq(rc, 1, "an unknown point is an error");
}

Test(commands, a_value_outside_its_range_is_dropped_and_audited_once_per_interval)
{
	/* The counter reads 5; the rule allows 10..20 and drops what lies outside. */
	uplink_rules = "[{\"points\":\"plc1/counter\",\"action\":\"allow\","
		       "\"range\":{\"min\":10,\"max\":20}},"
		       "{\"points\":\"plc1/*\",\"action\":\"allow\"}]";
	start_all("");
	wait_later_telemetry(15); /* 15 poll cycles, every one with the counter out of range */
	cr_expect_eq(h_count(h_path("sub.out"), "{\"name\":\"plc1/counter\""), 0,
		     "a value outside the range reached the broker as telemetry");
	cr_expect_eq(h_count(h_path("state/audit.log"), "\"event\":\"uplink_dropped\""), 1,
		     "expected exactly one record per point per minute:\n%s",
		     h_read(h_path("state/audit.log")));
	cr_expect_eq(h_count(h_path("state/audit.log"), "\"point\":\"plc1/counter\",\"value\":5"),
		     1);
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "/audit {\"seq\":1", 5000), 0,
		     "the drop record was not published on the audit topic");
	cr_expect_eq(audit_verify(), 0, "%s", h_read(h_path("verify.out")));
}
