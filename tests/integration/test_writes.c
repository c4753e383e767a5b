/* test_writes.c: writes under attack: max_step against what the machine holds, one answer per
 * command in a burst, valid JSON whatever the fields, log lines nobody can forge. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-08"

static int bport;

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(writes, .init = setup, .fini = it_teardown, .timeout = 120);

/*
 * Broker, subscriber, plcsim (setpoint at 500) and guardian, polling every
 * 'poll_ms', with one downlink rule 'downlink' for plc1/setpoint. Returns once
 * the setpoint's first value arrived and guardian subscribed to commands.
 */
static void start_all(int poll_ms, const char *downlink)
{
	int mport = h_free_port();
	char text[8192], simargs[128];

	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"function_codes\":{\"plc1\":[1,2,3,4,6]},"
		 "\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\"}],"
		 "\"downlink\":[{\"points\":\"plc1/setpoint\",\"action\":\"allow\",%s}]}",
		 bport, downlink);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":%d,\"points\":["
		 "{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"setpoint\",\"address\":120,\"writable\":true}]}]}",
		 bport, mport, poll_ms);
	h_write(h_path("site.json"), text);
	cr_assert_gt(h_guardian(h_path("site.json"), h_path("guardian.log")), 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 10000),
		     0, "no telemetry:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "guardian never subscribed to commands:\n%s",
		     h_read(h_path("guardian.log")));
}

/* Publishes the file 'file' as one command, or (lines) each of its lines as one command. */
static void publish_file(const char *file, bool lines)
{
	const char *pki = h_path("pki");
	char pkicopy[256];

	snprintf(pkicopy, sizeof(pkicopy), "%s", pki);
	cr_assert_eq(h_sh("mosquitto_pub -h localhost -p %d --cafile '%s/ca.crt' --cert "
			  "'%s/viewer.crt' --key '%s/viewer.key' -q 1 -t 'guardian/" DEVICE
			  "/cmd' %s '%s'",
			  bport, pkicopy, pkicopy, pkicopy, lines ? "-l <" : "-f", file),
		     0);
}

static void send_command(const char *json)
{
	char file[256];

	snprintf(file, sizeof(file), "%s", h_path("cmd.json"));
	h_write(file, json);
	publish_file(file, false);
}

/* Every cmd/result answer that arrived, parsed; fails the test on one that is not JSON. */
static size_t read_results(cJSON **out, size_t cap)
{
	char *text = h_read(h_path("sub.out"));
	size_t n = 0;

	for (char *line = text; line != NULL && *line != '\0';) {
		char *eol = strchr(line, '\n');
		static const char topic[] = "guardian/" DEVICE "/cmd/result ";

		if (eol != NULL)
			*eol = '\0';
		if (strncmp(line, topic, sizeof(topic) - 1) == 0) {
			cJSON *doc = cJSON_Parse(line + sizeof(topic) - 1);

			cr_assert_not_null(doc, "an answer is not JSON: %s", line);
			if (n < cap)
				out[n] = doc;
			else
				cJSON_Delete(doc);
			n++;
		}
		line = eol != NULL ? eol + 1 : NULL;
	}
	free(text);
	return n;
}

/* Waits until 'n' answers arrived (or 20 s); returns how many did. */
/*
 * Waits for n answers while they keep coming: gives up only after 10 s without a new one, so a
 * slow machine (or a sanitizer build) answering a burst of 1,000 is not taken for a lost answer.
 */
static size_t wait_results(size_t n)
{
	size_t have = h_count(h_path("sub.out"), "/cmd/result ");
	int64_t idle_end = h_ms() + 10000;

	while (have < n && h_ms() < idle_end) {
		size_t now;

		h_sleep_ms(50);
		now = h_count(h_path("sub.out"), "/cmd/result ");
		if (now > have)
			idle_end = h_ms() + 10000;
		have = now;
	}
	return have;
}

/* The answer to command 'id' (a string id): its status and reason, or fails. */
static void expect_answer(const char *id, const char *status, const char *reason_part)
{
	cJSON *docs[64];
	size_t n = read_results(docs, 64);
	bool found = false;

	for (size_t i = 0; i < n && i < 64; i++) {
		const cJSON *jid = cJSON_GetObjectItem(docs[i], "id");
		const cJSON *jst = cJSON_GetObjectItem(docs[i], "status");
		const cJSON *jre = cJSON_GetObjectItem(docs[i], "reason");

		if (cJSON_IsString(jid) && strcmp(jid->valuestring, id) == 0) {
			found = true;
			cr_expect_str_eq(jst->valuestring, status, "%s: %s", id, jre->valuestring);
			cr_expect(strstr(jre->valuestring, reason_part) != NULL,
				  "%s: no \"%s\" in \"%s\"", id, reason_part, jre->valuestring);
		}
		cJSON_Delete(docs[i]);
	}
	cr_expect(found, "no answer for %s", id);
}

/*
 * Two accepted writes between polls must not walk the machine further than
 * max_step allows: each is judged against what the machine holds now (500,
 * then 600 after the first write), not the last poll (500).
 */
Test(writes, max_step_is_judged_against_the_machine_not_the_last_poll)
{
	/* One poll at the start, the next a minute later: no poll between the writes. */
	start_all(60000, "\"range\":{\"min\":0,\"max\":1000},\"max_step\":100");
	send_command("{\"id\":\"s1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	cr_assert_eq(wait_results(1), 1);
	expect_answer("s1", "accepted", "written");
	/* 600 -> 400 is a step of 200; the last poll's 500 would have let it through. */
	send_command("{\"id\":\"s2\",\"point\":\"plc1/setpoint\",\"value\":400}");
	cr_assert_eq(wait_results(2), 2);
	expect_answer("s2", "refused", "a step from 600 to 400 is larger than max_step 100");
	/* 600 -> 650 is a step of 50; judged against the last poll's 500 it was refused. */
	send_command("{\"id\":\"s3\",\"point\":\"plc1/setpoint\",\"value\":650}");
	cr_assert_eq(wait_results(3), 3);
	expect_answer("s3", "accepted", "written");
	/* A burst walking 650 -> 740 -> 830 -> 920 in steps of 90 is fine; 920 -> 1000 -> 900
	 * too, but nothing ever jumps more than 100 from what the machine holds. */
	h_write(h_path("burst.txt"), "{\"id\":\"b1\",\"point\":\"plc1/setpoint\",\"value\":740}\n"
				     "{\"id\":\"b2\",\"point\":\"plc1/setpoint\",\"value\":830}\n"
				     "{\"id\":\"b3\",\"point\":\"plc1/setpoint\",\"value\":700}\n"
				     "{\"id\":\"b4\",\"point\":\"plc1/setpoint\",\"value\":920}\n");
	publish_file(h_path("burst.txt"), true);
	cr_assert_eq(wait_results(7), 7);
	expect_answer("b1", "accepted", "written");
	expect_answer("b2", "accepted", "written");
	expect_answer("b3", "refused", "a step from 830 to 700");
	expect_answer("b4", "accepted", "written");
}

/* A burst far larger than the inbox: every command gets exactly one answer, and one audit record.
 */
Test(writes, a_burst_of_commands_gets_one_answer_each)
{
	enum { N = 1000 };
	static char seen[N];
	static cJSON *docs[N + 16];
	FILE *f;
	size_t n, busy = 0, other = 0;

	start_all(1000, "\"range\":{\"min\":0,\"max\":1000}");
	f = fopen(h_path("burst.txt"), "w");
	cr_assert_not_null(f);
	/* Out of range: refused by the policy, nothing reaches the PLC. */
	for (int i = 0; i < N; i++)
		fprintf(f, "{\"id\":\"k%d\",\"point\":\"plc1/setpoint\",\"value\":5000}\n", i);
	fclose(f);
	publish_file(h_path("burst.txt"), true);
	n = wait_results(N);
	cr_assert_eq(n, N, "%zu answers to %d commands; guardian log:\n%s", n, N,
		     h_read(h_path("guardian.log")));
	n = read_results(docs, N + 16);
	for (size_t i = 0; i < n && i < N; i++) {
		const cJSON *id = cJSON_GetObjectItem(docs[i], "id");
		const char *status = cJSON_GetObjectItem(docs[i], "status")->valuestring;
		int k;

		cr_assert(cJSON_IsString(id) && sscanf(id->valuestring, "k%d", &k) == 1 && k >= 0 &&
			  k < N);
		cr_expect_eq(seen[k], 0, "two answers for %s", id->valuestring);
		seen[k] = 1;
		if (strcmp(status, "busy") == 0)
			busy++;
		else if (strcmp(status, "refused") == 0)
			other++;
		else
			cr_expect_fail("%s answered %s", id->valuestring, status);
		cJSON_Delete(docs[i]);
	}
	cr_expect_eq(busy + other, N);
	cr_log_info("burst of %d: %zu refused by the policy, %zu busy", N, other, busy);
	/* Every answer is audited, and health counts them. */
	cr_expect_eq(h_count(h_path("state/audit.log"), "\"event\":\"write_refused\""), N);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"commands\":{\"received\":1000,", 5000),
		     0, "health does not count the commands");
	{
		char want[128];

		snprintf(want, sizeof(want),
			 "\"received\":1000,\"accepted\":0,\"refused\":%zu,"
			 "\"failed\":0,\"busy\":%zu",
			 other, busy);
		cr_expect_gt(h_count(h_path("sub.out"), want), 0, "no health with %s", want);
	}
}

/* Long ids, point names and values, and an id of 1e999: every answer and record stays JSON. */
Test(writes, answers_and_audit_records_are_json_whatever_the_fields)
{
	char big[3000], cmd[8192];
	size_t sent = 0, n;
	char *log, *line;

	start_all(1000, "\"range\":{\"min\":0,\"max\":1000}");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	static const int lengths[] = { 100, 158, 200, 254, 300, 1000, 2000 };
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		int len = lengths[i];

		snprintf(cmd, sizeof(cmd),
			 "{\"id\":\"%.*s\",\"point\":\"plc1/setpoint\",\"value\":5000}", len, big);
		send_command(cmd);
		snprintf(cmd, sizeof(cmd),
			 "{\"id\":\"p%d\",\"point\":\"plc1/%.*s\",\"value\":5000}", len, len, big);
		send_command(cmd);
		snprintf(cmd, sizeof(cmd),
			 "{\"id\":\"v%d\",\"point\":\"plc1/setpoint\",\"value\":\"%.*s\"}", len,
			 len, big);
		send_command(cmd);
		sent += 3;
	}
	send_command("{\"id\":1e999,\"point\":\"plc1/setpoint\",\"value\":5000}");
	send_command("{\"id\":-1e999,\"point\":\"plc1/setpoint\",\"value\":1e999}");
	send_command("{\"id\":\"q\\\"\\\\\\u0001\\n\",\"point\":\"plc1/\\u001b[2J\",\"value\":1}");
	sent += 3;
	n = wait_results(sent);
	cr_assert_eq(n, sent, "%zu answers to %zu commands", n, sent);
	/* read_results fails the test on an answer that does not parse. */
	{
		cJSON **docs = calloc(sent + 1, sizeof(*docs));

		n = read_results(docs, sent + 1);
		for (size_t i = 0; i < n && i <= sent; i++)
			cJSON_Delete(docs[i]);
		free(docs);
	}
	/* Every record of the audit log is one JSON object. */
	log = h_read(h_path("state/audit.log"));
	cr_assert_not_null(log);
	n = 0;
	for (line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		cJSON *doc = cJSON_Parse(line);

		cr_expect(cJSON_IsObject(doc), "an audit record is not JSON: %.300s", line);
		cJSON_Delete(doc);
		n++;
	}
	free(log);
	cr_expect_eq(n, sent, "%zu audit records for %zu commands", n, sent);
	cr_expect_eq(h_sh("'%s/guardian' audit verify -c '%s' >'%s' 2>&1", h_build(),
			  h_path("site.json"), h_path("verify.out")),
		     0, "%s", h_read(h_path("verify.out")));
}

/* Text from the cloud cannot forge a log line nor drive the technician's terminal. */
Test(writes, log_lines_escape_what_the_cloud_sends)
{
	start_all(1000, "\"range\":{\"min\":0,\"max\":1000}");
	send_command("{\"id\":\"inj\",\"point\":\"plc1/x\\n2026-01-01T00:00:00.000Z error gateway: "
		     "FORGED\\u001b[31m\",\"value\":1}");
	cr_assert_eq(wait_results(1), 1);
	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "FORGED", 5000), 0);
	cr_expect_eq(h_sh("grep -q '^2026-01-01T00:00:00.000Z error gateway: FORGED' '%s'",
			  h_path("guardian.log")),
		     1, "a forged line reached the log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_gt(h_count(h_path("guardian.log"), "plc1/x\\x0a2026-01-01"), 0, "%s",
		     h_read(h_path("guardian.log")));
	cr_expect_gt(h_count(h_path("guardian.log"), "FORGED\\x1b[31m"), 0);
	cr_expect_eq(h_count(h_path("guardian.log"), "\x1b"), 0, "an escape reached the log");
}
