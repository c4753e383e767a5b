/* test_audit_cli.c: guardian audit verify on a log the real daemon wrote: every broken line, a cut
 * tail against the head the cloud saw, a record forged with plain SHA-256. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE	"press-09"
#define RECORDS 5

static int bport;

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(audit_cli, .init = setup, .fini = it_teardown, .timeout = 90);

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

/*
 * Runs broker, PLC simulator and guardian; sends RECORDS writes to points that
 * do not exist (each refused and audited); waits for each refusal on the audit
 * topic; stops guardian. state/audit.log then holds RECORDS records.
 */
static void make_log(void)
{
	int mport = h_free_port();
	char text[4096], simargs[128], needle[64];
	pid_t gd;

	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\"}]}",
		 bport);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\"},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":100,\"points\":["
		 "{\"name\":\"counter\",\"address\":0}]}]}",
		 bport, mport);
	h_write(h_path("site.json"), text);
	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/counter\"", 10000), 0,
		     "no telemetry:\n%s", h_read(h_path("guardian.log")));
	/* The subscription to cmd is made right after connecting; give it a moment. */
	h_sleep_ms(300);
	for (int i = 1; i <= RECORDS; i++) {
		snprintf(text, sizeof(text),
			 "{\"id\":\"a%d\",\"point\":\"plc1/nope%d\",\"value\":%d}", i, i, i);
		send_command(text);
		snprintf(needle, sizeof(needle), "/audit {\"seq\":%d,", i);
		cr_assert_eq(h_wait_contains(h_path("sub.out"), needle, 10000), 0,
			     "record %d was not published; guardian log:\n%s", i,
			     h_read(h_path("guardian.log")));
	}
	cr_assert_eq(h_stop(gd, 5000), 0, "guardian did not stop cleanly");
	cr_assert_eq(h_count(h_path("state/audit.log"), "\n"), RECORDS, "%s",
		     h_read(h_path("state/audit.log")));
}

/* guardian audit verify, with 'extra' arguments; its output goes to verify.out. The exit status. */
static int verify(const char *extra)
{
	return h_sh("'%s/guardian' audit verify -c '%s' %s >'%s' 2>&1", h_build(),
		    h_path("site.json"), extra, h_path("verify.out"));
}

/*
 * The head the cloud saw: seq and MAC of the last record published on the
 * audit topic (its last member), as "--head SEQ:MAC" into 'out'.
 */
static void published_head(char *out, size_t cap)
{
	char *text = h_read(h_path("sub.out"));
	char *last = NULL, *eol;
	unsigned long seq;

	cr_assert_not_null(text);
	for (char *p = text; (p = strstr(p, "/audit {\"seq\":")) != NULL; p++)
		last = p;
	cr_assert_not_null(last, "nothing on the audit topic");
	eol = strchr(last, '\n');
	if (eol != NULL)
		*eol = '\0';
	cr_assert_gt(strlen(last), 66, "%s", last);
	seq = strtoul(last + strlen("/audit {\"seq\":"), NULL, 10);
	snprintf(out, cap, "--head %lu:%.64s", seq, last + strlen(last) - 66);
	free(text);
}

/* The log's lines (without '\n'); *n receives how many. Caller frees lines[0] and lines. */
static char **log_lines(size_t *n)
{
	char *text = h_read(h_path("state/audit.log"));
	char **lines = calloc(64, sizeof(*lines));
	size_t count = 0;

	cr_assert_not_null(text);
	cr_assert_not_null(lines);
	lines[0] = text;
	for (char *p = text; *p != '\0' && count < 64;) {
		char *nl = strchr(p, '\n');

		lines[count++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	*n = count;
	return lines;
}

static void write_log(char *const *lines, size_t n)
{
	FILE *f = fopen(h_path("state/audit.log"), "w");

	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\n", lines[i]);
	cr_assert_eq(fclose(f), 0);
}

/*
 * What anyone who can write the file but lacks the key can do to 'line': its
 * last member (",\"<name>\":\"<64 hex>\"}") made again as plain SHA-256 (by
 * sha256sum) over the text before it. Writes the new line into 'out'.
 */
static void rehash_with_sha256(const char *line, char *out, size_t cap)
{
	size_t len = strlen(line);
	const char *hex = line + len - 66;
	const char *tail = hex;
	char *body, *sum;

	while (tail > line && strncmp(tail, ",\"", 2) != 0)
		tail--;
	cr_assert_gt(tail, line, "no last member in %s", line);
	body = strndup(line, (size_t)(tail - line));
	cr_assert_not_null(body);
	h_write(h_path("body"), body);
	cr_assert_eq(h_sh("sha256sum <'%s' >'%s'", h_path("body"), h_path("sum")), 0);
	sum = h_read(h_path("sum"));
	cr_assert_not_null(sum);
	snprintf(out, cap, "%s%.*s%.64s\"}", body, (int)(hex - tail), tail, sum);
	free(body);
	free(sum);
}

Test(audit_cli, an_intact_log_passes_with_its_count)
{
	char head[128];

	make_log();
	published_head(head, sizeof(head));
	cr_expect_eq(verify(""), 0, "%s", h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "5 records checked, 0 problems"), 1, "%s",
		     h_read(h_path("verify.out")));
	cr_expect_eq(verify(head), 0, "%s: %s", head, h_read(h_path("verify.out")));
	cr_expect_eq(verify("--head 5:nothex"), 2, "%s", h_read(h_path("verify.out")));
}

Test(audit_cli, two_edited_lines_are_both_reported)
{
	make_log();
	cr_assert_eq(
		h_sh("sed -i -e '2s/plc1\\/nope2/plc1\\/other/' -e '4s/\"value\":4/\"value\":1/' "
		     "'%s'",
		     h_path("state/audit.log")),
		0);
	cr_assert_eq(h_count(h_path("state/audit.log"), "plc1/other"), 1, "the edit did not apply");
	cr_expect_eq(verify(""), 1, "%s", h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "line 2: MAC does not match its content"), 1,
		     "%s", h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "line 4: MAC does not match its content"), 1,
		     "%s", h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "5 records checked, 2 problems"), 1, "%s",
		     h_read(h_path("verify.out")));
}

Test(audit_cli, a_cut_tail_is_reported_against_the_published_head)
{
	char head[128];
	char **lines;
	size_t n;

	make_log();
	published_head(head, sizeof(head));
	cr_assert(strncmp(head, "--head 5:", 9) == 0, "%s", head);
	lines = log_lines(&n);
	cr_assert_eq(n, RECORDS);
	write_log(lines, RECORDS - 2);
	free(lines[0]);
	free(lines);

	/* The file alone cannot tell; the head the cloud saw can. */
	cr_expect_eq(verify(""), 0, "%s", h_read(h_path("verify.out")));
	cr_expect_eq(verify(head), 1, "%s: %s", head, h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "truncated"), 1, "%s",
		     h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "3 records checked, 1 problem"), 1, "%s",
		     h_read(h_path("verify.out")));
}

Test(audit_cli, a_record_forged_with_plain_sha256_is_caught)
{
	char forged[2048];
	char **lines;
	char *p;
	size_t n;

	make_log();
	lines = log_lines(&n);
	cr_assert_eq(n, RECORDS);
	/* Hide the last attempt: another point, and the chain's last member made again. */
	p = strstr(lines[RECORDS - 1], "plc1/nope5");
	cr_assert_not_null(p, "%s", lines[RECORDS - 1]);
	memcpy(p, "plc1/xxxx5", 10);
	rehash_with_sha256(lines[RECORDS - 1], forged, sizeof(forged));
	lines[RECORDS - 1] = forged;
	write_log(lines, n);
	free(lines[0]);
	free(lines);

	cr_expect_eq(verify(""), 1, "a forged record passed:\n%s", h_read(h_path("verify.out")));
	cr_expect_eq(h_count(h_path("verify.out"), "line 5: MAC does not match its content"), 1,
		     "%s", h_read(h_path("verify.out")));
}
