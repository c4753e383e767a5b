/* test_attest.c: attested telemetry end to end with real parts: guardian-service, mosquitto with
 * its two listeners, guardian with a simulated PLC; refusals, replay, renewal, expiry, ACLs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "oven-4"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(attest, .init = setup, .fini = it_teardown, .timeout = 150);

/* Every step of the setup logs to steps.log; a failure points there. */
static void bed_up(struct h_attest *b, int lifetime_s)
{
	it_attest_up(b, lifetime_s);
}

static void bed_site(struct h_attest *b, const char *policy_tail)
{
	h_attest_site(b, DEVICE, policy_tail);
}

static void bed_viewer(struct h_attest *b)
{
	it_attest_viewer(b, "guardian/" DEVICE "/#", NULL);
}

/* Publishes with mosquitto_pub; returns its exit status (non-zero: refused by TLS). */
static int pub_as(int port, const char *cert, const char *key, const char *topic, const char *msg)
{
	return h_sh("mosquitto_pub -h localhost -p %d --cafile %s/ca.crt --cert %s --key %s -q 1 "
		    "-t '%s' -m '%s' >>%s 2>&1",
		    port, h_path("pki"), cert, key, topic, msg, h_path("pub.log"));
}

Test(attest, whole_flow_then_telemetry_arrives)
{
	struct h_attest b;

	bed_up(&b, 86400);
	bed_site(&b, "");
	it_attest_enroll(&b);
	it_attest_serve(&b);
	bed_viewer(&b);
	it_attest_guardian(&b);
	it_wait_messages(h_path("sub.out"), 5, 30000);
	cr_expect_geq(h_wait_contains(h_path("guardian.log"), "attested; certificate valid", 1000),
		      0);
	cr_expect_geq(h_wait_contains(h_path("sub.out"), "\"state\":\"attested\"", 5000), 0,
		      "health does not say attested");
	cr_expect_geq(h_wait_contains(h_path("service.log"), DEVICE, 1000), 0,
		      "the service did not log its decision");
	{
		struct stat st;
		char path[300];

		snprintf(path, sizeof(path), "%s/op.key", b.state);
		cr_assert_eq(stat(path, &st), 0);
		cr_expect_eq(st.st_mode & 0777, 0600, "op.key mode %o", st.st_mode & 0777);
	}
}

/* One byte more in the policy: refused, naming the policy; no certificate; the identity
 * certificate does not open the telemetry listener. */
Test(attest, one_byte_changed_is_refused_with_the_measurement_named)
{
	struct h_attest b;
	char crt[300], key[300], path[300];

	bed_up(&b, 86400);
	bed_site(&b, "");
	it_attest_enroll(&b);
	bed_site(&b, " ");
	it_attest_serve(&b);
	bed_viewer(&b);
	it_attest_guardian(&b);
	cr_assert_geq(h_wait_contains(h_path("guardian.log"), "measurement_mismatch", 20000), 0,
		      "no refusal; guardian log:\n%s\nservice log:\n%s",
		      h_read(h_path("guardian.log")), h_read(h_path("service.log")));
	cr_expect_geq(h_wait_contains(h_path("guardian.log"), "policy.json", 1000), 0,
		      "the refusal does not name the policy:\n%s", h_read(h_path("guardian.log")));
	snprintf(path, sizeof(path), "%s/op.crt", b.state);
	cr_expect_neq(access(path, F_OK), 0, "a certificate was installed after a refusal");
	/* A technician at the box sees why telemetry does not flow. */
	cr_expect_eq(h_sh("printf 'uplink\\r' | %s/guardian console -c %s >%s 2>&1", h_build(),
			  b.site, h_path("console.out")),
		     0);
	cr_expect_geq(h_wait_contains(h_path("console.out"), "measurement_mismatch", 100), 0,
		      "the console does not say why:\n%s", h_read(h_path("console.out")));
	/* A marker from the backend reached the viewer after the refusal: telemetry sent before
	 * it would be in by now. */
	{
		char prefix[300], vcrt[320], vkey[320];

		snprintf(prefix, sizeof(prefix), "%s/viewer", b.brk);
		snprintf(vcrt, sizeof(vcrt), "%s.crt", prefix);
		snprintf(vkey, sizeof(vkey), "%s.key", prefix);
		cr_assert_eq(pub_as(b.tport, vcrt, vkey, "guardian/" DEVICE "/cmd", "marker"), 0,
			     "%s", h_read(h_path("pub.log")));
		cr_assert_eq(h_wait_contains(h_path("sub.out"), "/cmd marker", 5000), 0);
	}
	cr_expect_eq(h_count(h_path("sub.out"), "/telemetry "), 0, "telemetry left unattested");
	snprintf(crt, sizeof(crt), "%s/identity.crt", b.state);
	snprintf(key, sizeof(key), "%s/identity.key", b.state);
	cr_expect_neq(pub_as(b.tport, crt, key, "guardian/" DEVICE "/telemetry", "{}"), 0,
		      "the telemetry listener took an identity certificate");
}

/* Evidence captured off the wire and sent again is refused: the nonce was used. */
Test(attest, replayed_evidence_is_refused)
{
	struct h_attest b;
	char prefix[300], crt[300], key[300], *cap, *ev, *end;

	bed_up(&b, 86400);
	bed_site(&b, "");
	it_attest_enroll(&b);
	it_attest_serve(&b);
	/* Listen as the service does, to capture the device's evidence, and as the device, for
	 * the results (the service may not read them). */
	snprintf(prefix, sizeof(prefix), "%s/service", b.svc);
	cr_assert_gt(h_subscribe_as(b.aport, "guardian/+/attest/#", h_path("attest.out"), prefix,
				    "capture", false),
		     0);
	snprintf(prefix, sizeof(prefix), "%s/identity", b.state);
	cr_assert_gt(h_subscribe_as(b.aport, "guardian/" DEVICE "/attest/result",
				    h_path("attest.out"), prefix, "capture-results", false),
		     0);
	it_attest_guardian(&b);
	cr_assert_geq(h_wait_contains(h_path("attest.out"), "\"ok\":true", 20000), 0,
		      "no successful round to capture:\n%s", h_read(h_path("attest.out")));
	cap = h_read(h_path("attest.out"));
	ev = strstr(cap, "/attest/evidence ");
	cr_assert_not_null(ev);
	ev += strlen("/attest/evidence ");
	end = strchr(ev, '\n');
	cr_assert_not_null(end);
	*end = '\0';
	h_write(h_path("replay.json"), ev);
	free(cap);
	snprintf(crt, sizeof(crt), "%s/identity.crt", b.state);
	snprintf(key, sizeof(key), "%s/identity.key", b.state);
	cr_assert_eq(h_sh("mosquitto_pub -h localhost -p %d --cafile %s/ca.crt --cert %s --key %s "
			  "-q 1 -i replayer -t guardian/" DEVICE "/attest/evidence -f %s",
			  b.aport, h_path("pki"), crt, key, h_path("replay.json")),
		     0);
	cr_expect_geq(h_wait_contains(h_path("attest.out"), "replayed_nonce", 10000), 0,
		      "the replay was not refused:\n%s", h_read(h_path("attest.out")));
}

/* Certificates that live 9 s: renewed at two thirds, telemetry continues without a gap; the
 * first certificate, once expired, no longer opens the telemetry listener. */
Test(attest, short_lifetime_renews_without_loss_and_expired_cert_is_refused)
{
	struct h_attest b;
	struct h_telemetry t;
	char crt[300], key[300], old_crt[300], old_key[300];

	bed_up(&b, 9);
	bed_site(&b, "");
	it_attest_enroll(&b);
	it_attest_serve(&b);
	bed_viewer(&b);
	it_attest_guardian(&b);
	it_wait_messages(h_path("sub.out"), 3, 30000);
	snprintf(crt, sizeof(crt), "%s/op.crt", b.state);
	snprintf(key, sizeof(key), "%s/op.key", b.state);
	snprintf(old_crt, sizeof(old_crt), "%s", h_path("first-op.crt"));
	snprintf(old_key, sizeof(old_key), "%s", h_path("first-op.key"));
	cr_assert_eq(h_sh("cp %s %s && cp %s %s", crt, old_crt, key, old_key), 0);
	/* Two renewals at least (every 6 s), and telemetry after the second. */
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "attested; certificate valid", 3, 30000),
		     0, "no renewal:\n%s", h_read(h_path("guardian.log")));
	it_wait_messages(h_path("sub.out"), h_count(h_path("sub.out"), "/telemetry ") + 10, 10000);
	h_telemetry_read(h_path("sub.out"), &t);
	cr_expect_gt(t.nmessages, 50);
	for (size_t i = 1; i < t.nmessages; i++)
		cr_expect_leq(t.seqs[i], t.seqs[i - 1] + 1, "telemetry lost: seq %llu after %llu",
			      (unsigned long long)t.seqs[i], (unsigned long long)t.seqs[i - 1]);
	h_telemetry_free(&t);
	cr_expect_neq(pub_as(b.tport, old_crt, old_key, "guardian/" DEVICE "/telemetry", "{}"), 0,
		      "the broker accepted an expired certificate");
	cr_expect_eq(pub_as(b.tport, crt, key, "guardian/" DEVICE "/probe", "{}"), 0,
		     "the current certificate was refused:\n%s", h_read(h_path("pub.log")));
}

/* Certificates for two devices, made directly with the CAs, to try the broker's rules. */
static void make_cert(const char *ca, const char *cn, const char *out_prefix)
{
	cr_assert_eq(h_sh("cd %s && openssl ecparam -name prime256v1 -genkey -noout -out %s.key "
			  "2>/dev/null && openssl req -new -key %s.key -subj /CN=%s -out %s.csr && "
			  "printf 'extendedKeyUsage=clientAuth\\n' >%s.ext && openssl x509 -req "
			  "-in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -CAserial %s.srl "
			  "-days 1 -extfile %s.ext -out %s.crt 2>/dev/null",
			  h_dir(), out_prefix, out_prefix, cn, out_prefix, out_prefix, out_prefix,
			  ca, ca, out_prefix, out_prefix, out_prefix),
		     0, "openssl failed for %s", cn);
}

/* A device cannot read or write another's topics, on either listener. */
Test(attest, devices_cannot_touch_each_others_topics)
{
	struct h_attest b;
	char a_op[256], b_op[256], a_id[256];

	bed_up(&b, 86400);
	h_sh("cp %s/op-ca.crt %s/op-ca.key %s/mfg-ca.crt %s/mfg-ca.key %s/", b.svc, b.svc, b.svc,
	     b.svc, h_dir());
	make_cert("op-ca", "dev-a", "a-op");
	make_cert("op-ca", "dev-b", "b-op");
	make_cert("mfg-ca", "dev-a", "a-id");
	snprintf(a_op, sizeof(a_op), "%s/a-op", h_dir());
	snprintf(b_op, sizeof(b_op), "%s/b-op", h_dir());
	snprintf(a_id, sizeof(a_id), "%s/a-id", h_dir());
	bed_viewer(&b);
	/* a listens to b's topics and to everything, on both listeners; and to its own, where
	 * something must arrive before the test may say that b's did not (its cmd: a device reads
	 * nothing else of its own). */
	cr_assert_gt(h_subscribe_as(b.tport, "guardian/dev-b/# guardian/dev-a/#",
				    h_path("a-spy.out"), a_op, "a1", false),
		     0);
	cr_assert_gt(h_subscribe_as(b.tport, "#", h_path("a-all.out"), a_op, "a2", false), 0);
	cr_assert_gt(h_subscribe_as(b.aport, "guardian/dev-b/attest/# guardian/dev-a/attest/#",
				    h_path("a-attest.out"), a_id, "a3", false),
		     0);
	{
		char prefix[300];

		snprintf(prefix, sizeof(prefix), "%s/viewer", b.brk);
		cr_assert_gt(h_subscribe_as(b.tport, "guardian/#", h_path("all.out"), prefix,
					    "viewer-all", false),
			     0);
	}
	{
		char crt[300], key[300];

		snprintf(crt, sizeof(crt), "%s.crt", b_op);
		snprintf(key, sizeof(key), "%s.key", b_op);
		cr_assert_eq(pub_as(b.tport, crt, key, "guardian/dev-b/telemetry", "from-b"), 0);
		snprintf(crt, sizeof(crt), "%s.crt", a_op);
		snprintf(key, sizeof(key), "%s.key", a_op);
		/* a writes as b: the broker drops it (MQTT 3.1.1 has no way to say so). */
		pub_as(b.tport, crt, key, "guardian/dev-b/telemetry", "forged-by-a");
		cr_assert_eq(pub_as(b.tport, crt, key, "guardian/dev-a/telemetry", "from-a"), 0);
		snprintf(crt, sizeof(crt), "%s/service.crt", b.svc);
		snprintf(key, sizeof(key), "%s/service.key", b.svc);
		cr_assert_eq(pub_as(b.aport, crt, key, "guardian/dev-b/attest/nonce", "for-b"), 0);
		cr_assert_eq(pub_as(b.aport, crt, key, "guardian/dev-a/attest/nonce", "for-a"), 0);
		snprintf(crt, sizeof(crt), "%s/viewer.crt", b.brk);
		snprintf(key, sizeof(key), "%s/viewer.key", b.brk);
		cr_assert_eq(pub_as(b.tport, crt, key, "guardian/dev-a/cmd", "to-a"), 0);
	}
	/* What was published last reached every listener: anything before it would be in. */
	cr_assert_geq(h_wait_contains(h_path("all.out"), "from-a", 5000), 0,
		      "the viewer saw nothing; broker log:\n%s", h_read(h_path("mosquitto.log")));
	cr_assert_geq(h_wait_contains(h_path("a-spy.out"), "to-a", 5000), 0, "%s",
		      h_read(h_path("a-spy.out")));
	cr_assert_geq(h_wait_contains(h_path("a-all.out"), "to-a", 5000), 0, "%s",
		      h_read(h_path("a-all.out")));
	cr_assert_geq(h_wait_contains(h_path("a-attest.out"), "for-a", 5000), 0, "%s",
		      h_read(h_path("a-attest.out")));
	cr_expect_geq(h_count(h_path("all.out"), "from-b"), 1);
	cr_expect_eq(h_count(h_path("all.out"), "forged-by-a"), 0, "a wrote to b's topic");
	cr_expect_eq(h_count(h_path("a-spy.out"), "from-b"), 0, "a read b's telemetry");
	cr_expect_eq(h_count(h_path("a-all.out"), "from-b"), 0, "a read b's telemetry via #");
	cr_expect_eq(h_count(h_path("a-attest.out"), "for-b"), 0, "a read b's attestation");
}

/* A key others can read: guardian does not start, and says which file and how to fix it. */
Test(attest, loose_key_permissions_refuse_to_start)
{
	struct h_attest b;
	char key[300];
	int status;

	bed_up(&b, 86400);
	bed_site(&b, "");
	it_attest_enroll(&b);
	snprintf(key, sizeof(key), "%s/identity.key", b.state);
	cr_assert_eq(chmod(key, 0644), 0);
	it_attest_guardian(&b);
	status = h_wait_exit(b.gd, 10000);
	if (status == -1)
		status = h_stop(b.gd, 10000); /* still running: a failure, said below */
	cr_expect(status != 0, "guardian ran with a world-readable key");
	cr_expect_geq(h_wait_contains(h_path("guardian.log"), "chmod 600", 1000), 0,
		      "no fix named:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(chmod(key, 0600), 0);
	cr_assert_eq(chmod(b.state, 0755), 0);
	it_attest_guardian(&b);
	cr_expect_geq(h_wait_contains(h_path("guardian.log"), "chmod 700", 5000), 0,
		      "an open state directory was accepted:\n%s", h_read(h_path("guardian.log")));
	h_stop(b.gd, 10000);
}
