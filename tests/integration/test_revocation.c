/* test_revocation.c: the broker enforces revocation (a superseded or refused certificate no longer
 * opens the telemetry listener, and nobody is dropped by the reload), and its two listeners'
 * ACLs do not overlap. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "kiln-2"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(revocation, .init = setup, .fini = it_teardown, .timeout = 150);

/*
 * The attested bed of test_attest.c, the service told of the broker's pid file, guardian
 * attested once and its telemetry reaching the viewer (sub.out, on the telemetry listener).
 */
static void bed_attested(struct h_attest *b)
{
	char pid_file[300], *pid;

	it_attest_up(b, 86400);
	snprintf(pid_file, sizeof(pid_file), "%s/mosquitto.pid", b->brk);
	pid = h_read(pid_file);
	cr_assert(pid != NULL && atol(pid) == (long)b->broker, "mosquitto's pid file: %s",
		  pid ? pid : "missing");
	free(pid);
	cr_assert_eq(h_sh("sed -i '1s|{|{\"broker_pid_file\": \"%s\",|' %s/service.json", pid_file,
			  b->svc),
		     0);
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

/* mosquitto_pub with <prefix>.crt and .key; its exit status (non-zero: refused by TLS). */
static int pub_as(int port, const char *prefix, const char *topic, const char *msg)
{
	return h_sh(
		"mosquitto_pub -h localhost -p %d --cafile %s/ca.crt --cert %s.crt --key %s.key "
		"-q 1 -t '%s' -m '%s' >>%s 2>&1",
		port, h_path("pki"), prefix, prefix, topic, msg, h_path("pub.log"));
}

/* Keeps a copy of the operational certificate and key in force as <work dir>/<name>.crt, .key. */
static const char *keep_op(const struct h_attest *b, const char *name)
{
	static char prefix[300];

	snprintf(prefix, sizeof(prefix), "%s/%s", h_dir(), name);
	cr_assert_eq(h_sh("cp %s/op.crt %s.crt && cp %s/op.key %s.key", b->state, prefix, b->state,
			  prefix),
		     0);
	return prefix;
}

/* Tries 'prefix' on the telemetry listener until the broker refuses it; the ms it took, or -1. */
static long until_refused(const struct h_attest *b, const char *prefix, int timeout_ms)
{
	int64_t start = h_ms();

	while (h_ms() - start < timeout_ms) {
		if (pub_as(b->tport, prefix, "guardian/" DEVICE "/probe", "{}") != 0)
			return (long)(h_ms() - start);
		h_sleep_ms(100);
	}
	return -1;
}

/* The viewer connected once (no reconnection) and telemetry still reaches it. */
static void expect_viewer_kept(void)
{
	size_t n = h_count(h_path("sub.out"), "/telemetry ");

	cr_expect_eq(h_wait_count(h_path("sub.out"), "/telemetry ", n + 5, 10000), 0,
		     "no telemetry reached the viewer after the CRL was reloaded");
	cr_expect_eq(h_count(h_path("sub.out"), "received CONNACK"), 1,
		     "the viewer was disconnected by the reload");
}

Test(revocation, a_superseded_certificate_is_refused_and_nobody_is_dropped)
{
	struct h_attest b;
	char first[300];
	long ms;

	bed_attested(&b);
	snprintf(first, sizeof(first), "%s", keep_op(&b, "first-op"));
	cr_assert_eq(pub_as(b.tport, first, "guardian/" DEVICE "/probe", "{}"), 0,
		     "the certificate in force was refused:\n%s", h_read(h_path("pub.log")));
	/* SIGHUP: guardian reloads its policy and attests again. */
	cr_assert_eq(kill(b.gd, SIGHUP), 0);
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "attested; certificate valid", 2, 20000),
		     0, "no second round:\n%s", h_read(h_path("guardian.log")));
	ms = until_refused(&b, first, 10000);
	cr_assert_geq(ms, 0, "the superseded certificate still opens the telemetry listener:\n%s",
		      h_read(h_path("service.log")));
	fprintf(stderr,
		"revocation: superseded certificate refused by the broker %ld ms after the "
		"new one was installed\n",
		ms);
	cr_expect_eq(h_wait_contains(h_path("service.log"), "revoked (superseded)", 1000), 0);
	cr_expect_eq(h_wait_contains(h_path("service.log"), "told to reload the CRL", 1000), 0);
	cr_expect_eq(h_wait_contains(h_path("mosquitto.log"), "Reloading config", 1000), 0);
	cr_expect_eq(pub_as(b.tport, keep_op(&b, "second-op"), "guardian/" DEVICE "/probe", "{}"),
		     0, "the new certificate was refused:\n%s", h_read(h_path("pub.log")));
	expect_viewer_kept();
}

/* The reference removed: the next round is refused, and the certificate in force is revoked. */
Test(revocation, a_refusal_revokes_the_certificate_in_force)
{
	struct h_attest b;
	char kept[300];
	long ms;

	bed_attested(&b);
	snprintf(kept, sizeof(kept), "%s", keep_op(&b, "kept-op"));
	cr_assert_eq(h_sh("for l in $(%s/guardian-service reference list -d %s | cut -d' ' -f1); "
			  "do %s/guardian-service reference remove -d %s $l || exit 1; done "
			  ">>%s 2>&1",
			  h_build(), b.svc, h_build(), b.svc, h_path("steps.log")),
		     0, "%s", h_read(h_path("steps.log")));
	cr_assert_eq(kill(b.gd, SIGHUP), 0);
	cr_assert_eq(h_wait_contains(h_path("service.log"), "refused: no_reference", 20000), 0,
		     "no refusal:\n%s", h_read(h_path("service.log")));
	ms = until_refused(&b, kept, 10000);
	cr_assert_geq(ms, 0, "a refused device's certificate still opens the telemetry listener");
	fprintf(stderr,
		"revocation: refused device's certificate refused by the broker %ld ms "
		"after the refusal was logged\n",
		ms);
	cr_expect_eq(h_count(h_path("service.log"), "revoked (refused)"), 1);
	cr_expect_eq(h_count(h_path("sub.out"), "received CONNACK"), 1,
		     "the viewer was disconnected by the reload");
}

/* Waits for 'needle' in 'file' (the control message that proves delivery). */
static void expect_arrived(const char *file, const char *needle)
{
	cr_assert_eq(h_wait_contains(h_path(file), needle, 5000), 0,
		     "%s never reached %s, so nothing proves the others would not:\n%s", needle,
		     file, h_read(h_path(file)));
}

/* Nothing a client publishes on one listener reaches a reader of the other's topics. */
Test(revocation, no_publish_crosses_from_one_listener_to_the_other)
{
	struct h_attest b;
	char op[300], id[300], svc[300], viewer[300];

	bed_attested(&b);
	snprintf(op, sizeof(op), "%s/op", b.state);
	snprintf(id, sizeof(id), "%s/identity", b.state);
	snprintf(svc, sizeof(svc), "%s/service", b.svc);
	snprintf(viewer, sizeof(viewer), "%s/viewer", b.brk);
	/* On the attestation listener: the device hears its nonce and result, the service the
	 * device's hello and evidence. */
	cr_assert_gt(h_subscribe_as(b.aport,
				    "guardian/" DEVICE "/attest/result guardian/" DEVICE
				    "/attest/nonce",
				    h_path("device.out"), id, "device-ears", false),
		     0);
	cr_assert_gt(h_subscribe_as(b.aport, "guardian/+/attest/hello guardian/+/attest/evidence",
				    h_path("service.out"), svc, "service-ears", false),
		     0);
	/* From the telemetry listener: the device, and the backend. */
	pub_as(b.tport, op, "guardian/" DEVICE "/attest/result", "forged-result");
	pub_as(b.tport, op, "guardian/" DEVICE "/attest/nonce", "forged-nonce");
	pub_as(b.tport, op, "guardian/" DEVICE "/attest/hello", "forged-hello");
	pub_as(b.tport, op, "guardian/" DEVICE "/attest/evidence", "forged-evidence");
	pub_as(b.tport, viewer, "guardian/" DEVICE "/attest/result", "viewer-result");
	/* From the attestation listener, towards the viewer. */
	pub_as(b.aport, id, "guardian/" DEVICE "/telemetry", "forged-telemetry");
	pub_as(b.aport, svc, "guardian/" DEVICE "/cmd", "forged-cmd");
	/* Control messages on allowed topics, published last: delivery works. */
	cr_assert_eq(pub_as(b.aport, svc, "guardian/" DEVICE "/attest/result", "control-result"),
		     0);
	cr_assert_eq(pub_as(b.aport, id, "guardian/" DEVICE "/attest/evidence", "control-evidence"),
		     0);
	cr_assert_eq(pub_as(b.tport, viewer, "guardian/" DEVICE "/cmd", "control-cmd"), 0);
	expect_arrived("device.out", "control-result");
	expect_arrived("service.out", "control-evidence");
	expect_arrived("sub.out", "control-cmd");
	cr_expect_eq(h_count(h_path("device.out"), "forged-"), 0, "%s",
		     h_read(h_path("device.out")));
	cr_expect_eq(h_count(h_path("device.out"), "viewer-result"), 0,
		     "the backend wrote an attestation result");
	cr_expect_eq(h_count(h_path("service.out"), "forged-"), 0, "%s",
		     h_read(h_path("service.out")));
	cr_expect_eq(h_count(h_path("sub.out"), "forged-"), 0, "%s", h_read(h_path("sub.out")));
}
