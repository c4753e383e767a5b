/* test_attest_reload.c: with attestation, a reloaded policy is enforced only once the service has
 * attested it; evidence measures what was loaded; a refused state holds the uplink. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "oven-5"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(attest_reload, .init = setup, .fini = it_teardown, .timeout = 150);

/* A: the counter leaves, nothing else; no write. B: the secret leaves too, and the setpoint
 * may be written. */
#define POLICY_A "\"uplink\":[{\"points\":\"press/counter\",\"action\":\"allow\"}]"
#define POLICY_B                                                                                   \
	"\"function_codes\":{\"press\":[1,2,3,4,6]},\"uplink\":["                                  \
	"{\"points\":\"press/counter\",\"action\":\"allow\"},"                                     \
	"{\"points\":\"press/secret\",\"action\":\"allow\"}],"                                     \
	"\"downlink\":[{\"points\":\"press/setpoint\",\"action\":\"allow\","                       \
	"\"range\":{\"min\":0,\"max\":1000}}]"

static void write_policy(const struct h_attest *b, const char *rules)
{
	char text[2048];

	snprintf(text, sizeof(text), "{\"version\":1,\"connections\":[\"localhost:%d\"],%s}",
		 b->tport, rules);
	h_write(h_path("policy.json"), text);
}

static void reload(const struct h_attest *b)
{
	cr_assert_eq(kill(b->gd, SIGHUP), 0);
}

/*
 * The attested bed of test_attest.c with a press of three points (counter, secret, a writable
 * setpoint) under policy A, whose measurement is the one reference; guardian runs and has
 * attested, its telemetry flows and it takes commands.
 */
static void start_attested(struct h_attest *b)
{
	it_attest_up(b, 86400);
	h_attest_site(b, DEVICE, "");
	cr_assert_eq(h_sh("sed -i 's/\"points\":\\[{\"name\":\"counter\",\"address\":0}\\]/"
			  "\"points\":[{\"name\":\"counter\",\"address\":0},{\"name\":\"secret\","
			  "\"address\":110},{\"name\":\"setpoint\",\"address\":120,"
			  "\"writable\":true}]/' %s && grep -q setpoint %s",
			  b->site, b->site),
		     0, "the site has changed shape:\n%s", h_read(b->site));
	write_policy(b, POLICY_A);
	it_attest_enroll(b);
	it_attest_serve(b);
	it_attest_viewer(b, "guardian/" DEVICE "/# guardian/nobody/cmd", NULL);
	it_attest_guardian(b);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"press/counter\"", 30000), 0,
		     "no attested telemetry; guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0);
}

/* Publishes 'msg' on 'topic' as the backend (the viewer); 0 when the broker has it. */
static int backend_publish(const struct h_attest *b, const char *topic, const char *msg)
{
	return h_sh(
		"mosquitto_pub -h localhost -p %d --cafile %s/ca.crt --cert %s/viewer.crt --key "
		"%s/viewer.key -q 1 -t '%s' -m '%s' >>%s 2>&1",
		b->tport, h_path("pki"), b->brk, b->brk, topic, msg, h_path("pub.log"));
}

static int send_command(const struct h_attest *b, const char *json)
{
	return backend_publish(b, "guardian/" DEVICE "/cmd", json);
}

/* The backend's marker, a command to no device, came back: whatever guardian published before
 * it is in sub.out. */
static void sync_viewer(const struct h_attest *b, const char *marker)
{
	cr_assert_eq(backend_publish(b, "guardian/nobody/cmd", marker), 0, "%s",
		     h_read(h_path("pub.log")));
	cr_assert_eq(h_wait_contains(h_path("sub.out"), marker, 10000), 0);
}

/* A reload the service refuses never goes into force: not for telemetry, not for writes. */
Test(attest_reload, refused_reload_keeps_the_policy_in_force)
{
	struct h_attest b;
	size_t n;

	start_attested(&b);
	write_policy(&b, POLICY_B);
	reload(&b);
	cr_assert_eq(h_wait_contains(h_path("service.log"), "refused: measurement_mismatch", 20000),
		     0, "the service did not refuse:\n%s", h_read(h_path("service.log")));
	cr_expect_eq(h_wait_contains(h_path("guardian.log"),
				     "reload refused by the attestation service: "
				     "measurement_mismatch: policy ",
				     5000),
		     0, "no refusal named; guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "the policy in force stays", 100), 0);
	/* The refusal revokes the certificate: guardian attests what it enforces, at once. */
	cr_expect_eq(h_wait_count(h_path("guardian.log"), "attested; certificate valid", 2, 20000),
		     0, "the policy in force was not attested again:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_count(h_path("guardian.log"), "subscribed to guardian/" DEVICE "/cmd",
				  2, 10000),
		     0);
	cr_assert_eq(send_command(&b, "{\"id\":\"w1\",\"point\":\"press/setpoint\",\"value\":600}"),
		     0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "/cmd/result {\"id\":\"w1\"", 10000), 0,
		     "no answer:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("sub.out"), "\"status\":\"accepted\""), 0,
		     "a write only the refused policy allows was carried out");
	cr_expect_eq(h_count(h_path("sub.out"), "/cmd/result {\"id\":\"w1\",\"point\":"
						"\"press/setpoint\",\"value\":600,\"status\":"
						"\"refused\""),
		     1);
	/* Telemetry keeps flowing under the policy in force, and never carries the secret. */
	n = h_count(h_path("sub.out"), "/telemetry ");
	it_wait_messages(h_path("sub.out"), n + 10, 15000);
	cr_expect_geq(h_wait_contains(h_path("sub.out"),
				      "\"reload_reason\":\"measurement_mismatch\"", 5000),
		      0, "health does not name the refusal");
	sync_viewer(&b, "marker-a");
	cr_expect_eq(h_count(h_path("sub.out"), "press/secret"), 0,
		     "a point only the refused policy allows left");
	cr_expect_eq(h_count(h_path("guardian.log"), "rules in force"), 0,
		     "a policy went into force:\n%s", h_read(h_path("guardian.log")));
}

/* An accepted reload goes into force when its certificate comes, not before: while the service
 * is away it waits (a second reload replaces it), and the policy in force stays. */
Test(attest_reload, accepted_reload_goes_into_force_with_its_certificate)
{
	struct h_attest b;

	start_attested(&b);
	write_policy(&b, POLICY_B);
	cr_assert_eq(
		h_sh("%s/guardian measure -c %s --json >%s && %s/guardian-service reference add "
		     "-d %s --name policy-b %s >>%s 2>&1",
		     h_build(), b.site, h_path("ref-b.json"), h_build(), b.svc,
		     h_path("ref-b.json"), h_path("steps.log")),
		0, "%s", h_read(h_path("steps.log")));
	h_stop(b.service, 5000);
	/* First a policy the service has no reference for, then B in its place. */
	write_policy(&b, POLICY_A);
	cr_assert_eq(h_sh("printf ' ' >>%s", h_path("policy.json")), 0);
	reload(&b);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "is pending", 5000), 0, "%s",
		     h_read(h_path("guardian.log")));
	write_policy(&b, POLICY_B);
	reload(&b);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "replacing the one that was", 5000), 0,
		     "%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "attestation failed", 20000), 0,
		     "no round without the service:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"policy\":\"pending\"", 5000), 0,
		     "health does not say pending");
	sync_viewer(&b, "marker-b");
	cr_expect_eq(h_count(h_path("sub.out"), "press/secret"), 0,
		     "the pending policy was enforced before the service accepted it");
	cr_assert_eq(h_attest_serve(&b), 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"press/secret\"", 30000), 0,
		     "the accepted policy never went into force:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "rules in force (attested)"), 1);
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"policy\":\"in_force\"", 5000), 0);
}

/* The evidence measures the bytes loaded: a config changed on disk since is not what runs. */
Test(attest_reload, evidence_measures_what_was_loaded)
{
	struct h_attest b;

	start_attested(&b);
	cr_assert_eq(h_sh("printf ' ' >>%s", b.site), 0);
	reload(&b);
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "attested; certificate valid", 2, 20000),
		     0, "the round after the reload was not accepted:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "measurement_mismatch"), 0, "%s",
		     h_read(h_path("guardian.log")));
}

/* What is enforced is refused (its reference removed): no telemetry and no commands. */
Test(attest_reload, refused_state_holds_telemetry_and_commands)
{
	struct h_attest b;
	size_t n;

	start_attested(&b);
	cr_assert_eq(h_sh("for l in $(%s/guardian-service reference list -d %s | cut -d' ' -f1); "
			  "do %s/guardian-service reference remove -d %s $l || exit 1; done "
			  ">>%s 2>&1",
			  h_build(), b.svc, h_build(), b.svc, h_path("steps.log")),
		     0, "%s", h_read(h_path("steps.log")));
	reload(&b);
	/* Refused twice: the reload (the same bytes), then what is enforced. */
	cr_assert_eq(h_wait_count(h_path("service.log"), "refused: no_reference", 2, 20000), 0,
		     "%s", h_read(h_path("service.log")));
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), "telemetry and commands held", 5000),
		     0, "%s", h_read(h_path("guardian.log")));
	h_sleep_ms(500); /* the uplink's thread drops the connection */
	sync_viewer(&b, "marker-c1");
	n = h_count(h_path("sub.out"), "/telemetry ");
	cr_assert_eq(send_command(&b, "{\"id\":\"w2\",\"point\":\"press/setpoint\",\"value\":600}"),
		     0);
	/* 20 polls' worth of time. */
	h_sleep_ms(2000);
	sync_viewer(&b, "marker-c2");
	cr_expect_eq(h_count(h_path("sub.out"), "/telemetry "), n,
		     "telemetry left a refused state");
	cr_expect_eq(h_count(h_path("sub.out"), "/cmd/result "), 0, "a command was taken");
}
