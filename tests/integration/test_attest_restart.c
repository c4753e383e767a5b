/* test_attest_restart.c: attested telemetry through broker restarts and a slow service: telemetry
 * resumes on the certificate it holds, and a round whose hello nobody heard asks again instead
 * of waiting out the nonce timeout. */
#include <criterion/criterion.h>
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

TestSuite(attest_restart, .init = setup, .fini = it_teardown, .timeout = 150);

/* The broker, the PLC, the site, the device enrolled; no service yet. 'timeout_ms': how long a
 * round waits for each answer. */
static void bed_up(struct h_attest *b, int timeout_ms)
{
	it_attest_up(b, 86400);
	h_attest_site(b, DEVICE, "");
	cr_assert_eq(
		h_sh("sed -i 's/\"timeout_ms\":[0-9]*/\"timeout_ms\":%d/' %s", timeout_ms, b->site),
		0);
	it_attest_enroll(b);
}

/* A backend reading the device's telemetry; mosquitto_sub subscribes again after a reconnect. */
static void bed_viewer(struct h_attest *b)
{
	it_attest_viewer(b, "guardian/" DEVICE "/telemetry", NULL);
}

/* Hears the device's hellos as the service would, without answering: says when one went out. */
static void bed_listen_hello(struct h_attest *b)
{
	char prefix[300];

	snprintf(prefix, sizeof(prefix), "%s/service", b->svc);
	cr_assert_gt(h_subscribe_as(b->aport, "guardian/" DEVICE "/attest/hello",
				    h_path("hello.out"), prefix, "hello-listener", false),
		     0);
}

/* Stops mosquitto and starts it again on the same ports, with the same config. */
static void broker_restart(struct h_attest *b)
{
	char conf[300];
	const char *argv[] = { "mosquitto", "-c", conf, NULL };

	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->brk);
	h_stop(b->broker, 5000);
	b->broker = h_spawn(h_path("mosquitto.log"), argv);
	cr_assert_gt(b->broker, 0);
	cr_assert_eq(h_wait_port(b->aport, 5000), 0, "the broker did not come back:\n%s",
		     h_read(h_path("mosquitto.log")));
	cr_assert_eq(h_wait_port(b->tport, 5000), 0);
}

/* The first round ended with a certificate: no round failed (and was retried) before it. */
static void expect_first_round_attested(void)
{
	char *log;

	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "attested; certificate valid", 30000),
		     0, "no certificate; guardian log:\n%s\nservice log:\n%s",
		     h_read(h_path("guardian.log")), h_read(h_path("service.log")));
	log = h_read(h_path("guardian.log"));
	cr_expect_null(strstr(log, "attestation failed"),
		       "a round failed and was retried; guardian log:\n%s", log);
	free(log);
}

/* The certificate stays valid across a broker restart: telemetry resumes on it. */
Test(attest_restart, telemetry_resumes_after_a_broker_restart)
{
	struct h_attest b;

	bed_up(&b, 5000);
	it_attest_serve(&b);
	bed_viewer(&b);
	it_attest_guardian(&b);
	it_wait_messages(h_path("sub.out"), 5, 30000);
	broker_restart(&b);
	/* A new viewer on the new broker: all it receives crossed the broker after its restart
	 * (the first viewer's own reconnect, mosquitto_sub's, is not what is tested). */
	{
		char prefix[300];

		snprintf(prefix, sizeof(prefix), "%s/viewer", b.brk);
		cr_assert_gt(h_subscribe_as(b.tport, "guardian/" DEVICE "/telemetry",
					    h_path("sub2.out"), prefix, "viewer-2", false),
			     0);
	}
	it_wait_messages(h_path("sub2.out"), 10, 30000);
	cr_expect_geq(h_count(h_path("guardian.log"), "connection to ssl://localhost"), 1,
		      "guardian did not see the broker go:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "attested; certificate valid"), 1,
		     "the restart cost an attestation round:\n%s", h_read(h_path("guardian.log")));
}

/* The service starts after the device's first hello went to nobody: the device says hello
 * again, and that round gets its certificate. */
Test(attest_restart, an_unheard_hello_is_repeated_within_the_round)
{
	struct h_attest b;

	bed_up(&b, 20000);
	bed_listen_hello(&b);
	bed_viewer(&b);
	it_attest_guardian(&b);
	cr_assert_eq(h_wait_contains(h_path("hello.out"), "/attest/hello ", 20000), 0,
		     "no hello; guardian log:\n%s", h_read(h_path("guardian.log")));
	it_attest_serve(&b);
	expect_first_round_attested();
	cr_expect_geq(h_count(h_path("guardian.log"), "hello again"), 1,
		      "guardian did not say hello again:\n%s", h_read(h_path("guardian.log")));
	cr_expect_geq(h_count(h_path("hello.out"), "/attest/hello "), 2);
	it_wait_messages(h_path("sub.out"), 3, 20000);
}

/* The broker restarts while a round waits for its nonce: the device connects to the
 * attestation listener again, asks again, and that round gets its certificate. */
Test(attest_restart, a_round_survives_a_broker_restart)
{
	struct h_attest b;

	bed_up(&b, 20000);
	bed_listen_hello(&b);
	bed_viewer(&b);
	it_attest_guardian(&b);
	cr_assert_eq(h_wait_contains(h_path("hello.out"), "/attest/hello ", 20000), 0,
		     "no hello; guardian log:\n%s", h_read(h_path("guardian.log")));
	broker_restart(&b);
	it_attest_serve(&b);
	expect_first_round_attested();
	cr_expect_geq(h_count(h_path("guardian.log"), "lost the attestation listener"), 1,
		      "guardian did not notice the broker go:\n%s", h_read(h_path("guardian.log")));
	it_wait_messages(h_path("sub.out"), 3, 20000);
}
