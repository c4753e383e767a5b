/* test_order.c: the order and identity of telemetry: seq is the order of the queue whatever
 * adapter sends, and a boot id tells one start of guardian from the next. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-07"

static void setup(void)
{
	it_pki(DEVICE);
}

/* Generous: under the sanitizers (make check) the message rate is a fraction of a plain build's. */
TestSuite(order, .init = setup, .fini = it_teardown, .timeout = 240);

/* A boot id as guardian makes it: 16 lowercase hex digits. */
static bool is_boot_id(const char *s)
{
	return strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16;
}

/* 'nadapters' Modbus TCP adapters named a1, a2, ... on one plcsim, each with 'npoints' bulk
 * registers, polled every 'interval_ms'; broker and subscriber first. Returns guardian's pid. */
static pid_t start_site(int bport, int nadapters, int npoints, int interval_ms, const char *sub)
{
	int mport = h_free_port();
	char simargs[128], *adapters = malloc(65536);
	size_t n = 0;
	pid_t gd;

	cr_assert_not_null(adapters);
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, sub, h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --step-ms 100 --bulk 1000", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	n += (size_t)snprintf(adapters + n, 65536 - n, "[");
	for (int a = 0; a < nadapters; a++) {
		n += (size_t)snprintf(
			adapters + n, 65536 - n,
			"%s{\"name\":\"a%d\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
			"\"port\":%d,\"poll_interval_ms\":%d,\"points\":[",
			a ? "," : "", a + 1, mport, interval_ms);
		for (int p = 0; p < npoints; p++)
			n += (size_t)snprintf(adapters + n, 65536 - n,
					      "%s{\"name\":\"r%d\",\"address\":%d}", p ? "," : "",
					      p, 1000 + a * npoints + p);
		n += (size_t)snprintf(adapters + n, 65536 - n, "]}");
	}
	snprintf(adapters + n, 65536 - n, "]");
	cr_assert_lt(n, 65000);
	gd = h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	free(adapters);
	return gd;
}

/*
 * Three adapters polling as fast as they can: their threads number, build and
 * queue messages at the same time. The subscriber must see seq rise with every
 * message: a lower seq than the one before means a message entered the queue
 * after one numbered later.
 */
Test(order, seq_is_the_order_of_the_queue_with_several_adapters)
{
	enum { MESSAGES = 4000 };
	int bport = h_free_port();
	struct h_telemetry t;
	size_t lower = 0, first_lower = 0;

	pid_t gd = start_site(bport, 3, 40, 0, "guardian/" DEVICE "/telemetry");

	it_wait_messages(h_path("sub.out"), MESSAGES, 150000);
	/* Stopped before reading: polling back to back, it writes megabytes a second, and the
	 * file must not grow while it is read (under the sanitizers that took minutes). */
	cr_assert_eq(h_stop(gd, 20000), 0, "guardian did not stop cleanly");
	h_sleep_ms(500);
	h_telemetry_read(h_path("sub.out"), &t);
	cr_assert_geq(t.nmessages, MESSAGES);
	for (size_t i = 1; i < t.nmessages; i++) {
		if (t.seqs[i] < t.seqs[i - 1] && lower++ == 0)
			first_lower = i;
	}
	cr_expect_eq(lower, 0,
		     "%zu of %zu messages arrived with a lower seq than the one before (first: "
		     "message %zu, seq %llu after %llu)",
		     lower, t.nmessages, first_lower, (unsigned long long)t.seqs[first_lower],
		     (unsigned long long)t.seqs[first_lower ? first_lower - 1 : 0]);
	/* Every message names the same start. */
	cr_expect(is_boot_id(t.boots[0]), "boot id \"%s\"", t.boots[0]);
	for (size_t i = 1; i < t.nmessages; i++)
		cr_assert_str_eq(t.boots[i], t.boots[0], "message %zu", i);
	h_telemetry_free(&t);
}

/* The boot id of every telemetry message in 'file', from message 'from' on; all must agree.
 */
static void boot_of_messages(const char *file, size_t from, char *out, size_t cap)
{
	struct h_telemetry t;

	h_telemetry_read(file, &t);
	cr_assert_gt(t.nmessages, from);
	snprintf(out, cap, "%s", t.boots[from]);
	cr_expect(is_boot_id(out), "message %zu: boot id \"%s\"", from, out);
	for (size_t i = from; i < t.nmessages; i++)
		cr_assert_str_eq(t.boots[i], out, "message %zu of one start", i);
	h_telemetry_free(&t);
}

/* Stops guardian cleanly; returns once its last word, the offline health, reached the
 * subscriber: everything it sent before is in by then. */
static void stop_and_drain(pid_t gd)
{
	size_t offline = h_count(h_path("sub.out"), "\"state\":\"offline\"");

	cr_assert_eq(h_stop(gd, 10000), 0, "guardian did not stop cleanly");
	cr_assert_eq(h_wait_count(h_path("sub.out"), "\"state\":\"offline\"", offline + 1, 10000),
		     0, "no offline health after the stop");
}

/* Two starts of guardian: another boot id, and seq goes on from the spool's last. */
Test(order, each_start_has_its_own_boot_id_in_telemetry)
{
	int bport = h_free_port();
	char boot1[32], boot2[32];
	struct h_telemetry t;
	size_t first_run;
	pid_t gd;

	gd = start_site(bport, 1, 2, 100,
			"guardian/" DEVICE "/telemetry guardian/" DEVICE "/health");
	it_wait_messages(h_path("sub.out"), 3, 15000);
	stop_and_drain(gd);
	h_telemetry_read(h_path("sub.out"), &t);
	first_run = t.nmessages;
	h_telemetry_free(&t);
	boot_of_messages(h_path("sub.out"), 0, boot1, sizeof(boot1));

	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), first_run + 3, 15000);
	boot_of_messages(h_path("sub.out"), first_run, boot2, sizeof(boot2));
	cr_expect_str_neq(boot1, boot2, "two starts, one boot id");
	h_telemetry_read(h_path("sub.out"), &t);
	cr_expect_eq(t.seqs[0], 1);
	/* The spool keeps the numbering: the new start goes on after the last message, so seq
	 * alone orders across starts and (boot, seq) names each message once. */
	cr_expect_eq(t.seqs[first_run], t.seqs[first_run - 1] + 1,
		     "seq does not go on after %llu across the restart (%llu)",
		     (unsigned long long)t.seqs[first_run - 1],
		     (unsigned long long)t.seqs[first_run]);
	h_telemetry_free(&t);
	/* The log names it too, for whoever holds the box's log against the cloud's data. */
	cr_expect(boot1[0] != '\0' && h_count(h_path("guardian.log"), boot1) > 0);
	cr_expect(boot2[0] != '\0' && h_count(h_path("guardian.log"), boot2) > 0);
}

/* The "boot" member of the last online health document in 'file' ("" if none). */
static void boot_of_health(const char *file, char *out, size_t cap)
{
	char *text = h_read(file);

	out[0] = '\0';
	for (char *p = text; p != NULL && (p = strstr(p, "/health {")) != NULL; p++) {
		char *doc_text = strchr(p, '{'), *eol = strchr(doc_text, '\n');
		cJSON *doc = cJSON_ParseWithLength(doc_text, eol != NULL ? (size_t)(eol - doc_text)
									 : strlen(doc_text));
		const cJSON *boot = cJSON_GetObjectItemCaseSensitive(doc, "boot");
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(doc, "state");

		if (cJSON_IsString(state) && strcmp(state->valuestring, "online") == 0)
			snprintf(out, cap, "%s", cJSON_IsString(boot) ? boot->valuestring : "");
		cJSON_Delete(doc);
	}
	free(text);
}

/* Health carries the boot id of the start that sent it: the same as that start's telemetry. */
Test(order, health_names_the_boot_id_of_its_start)
{
	int bport = h_free_port();
	char tele1[32], tele2[32], health1[32], health2[32];
	pid_t gd;

	gd = start_site(bport, 1, 1, 100,
			"guardian/" DEVICE "/telemetry guardian/" DEVICE "/health");
	it_wait_messages(h_path("sub.out"), 2, 15000);
	stop_and_drain(gd);
	boot_of_health(h_path("sub.out"), health1, sizeof(health1));
	boot_of_messages(h_path("sub.out"), 0, tele1, sizeof(tele1));

	/* What the next start sends, alone in the file. */
	cr_assert_eq(truncate(h_path("sub.out"), 0), 0);
	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), 2, 15000);
	stop_and_drain(gd);
	boot_of_health(h_path("sub.out"), health2, sizeof(health2));
	boot_of_messages(h_path("sub.out"), 0, tele2, sizeof(tele2));
	cr_expect(is_boot_id(health1), "health of the first start: boot id \"%s\"", health1);
	cr_expect_str_eq(health1, tele1, "health and telemetry of the first start disagree");
	cr_expect_str_eq(health2, tele2, "health and telemetry of the second start disagree");
	cr_expect_str_neq(health1, health2, "two starts, one boot id in health");
}
