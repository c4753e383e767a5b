/* test_report.c: failure reports: deduplicated while they wait, rate-limited per kind, kept on
 * disk across a restart until acknowledged; a crash found at the next start; refused writes
 * summed per point; and the service counting what arrives once, whatever is sent again. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../../base/base.h"
#include "../../guardian/report.h"
#include "../../service/report.h"
#include "../../service/store.h"

#define T0 1763744523000LL

static char dir[64];
static int64_t fake_now;

static int64_t fake_clock(void)
{
	return fake_now;
}

/* What the reporter sent, as the uplink would have taken it. */
static struct {
	char *docs[64];
	uint64_t ids[64];
	size_t n;
} sent;

static int fake_send(void *ctx, const char *doc, size_t len, uint64_t id)
{
	(void)ctx;
	cr_assert_lt(sent.n, 64);
	sent.docs[sent.n] = strndup(doc, len);
	sent.ids[sent.n++] = id;
	return 0;
}

static void setup(void)
{
	strcpy(dir, "/tmp/test_report.XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	fake_now = T0;
	sent.n = 0;
}

static void teardown(void)
{
	char cmd[128];

	for (size_t i = 0; i < sent.n; i++)
		free(sent.docs[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(report, .init = setup, .fini = teardown);

static struct reporter *open_with(int per_hour, bool sending)
{
	char why[256] = "";
	struct reporter *r =
		reporter_open(&(struct reporter_config){ .state_dir = dir,
							 .device_id = "press-07",
							 .boot_id = "5f0c7e1a9b32d4c8",
							 .send = sending ? fake_send : NULL,
							 .per_hour = per_hour,
							 .now_ms = fake_clock },
			      why, sizeof(why));

	cr_assert_not_null(r, "reporter_open: %s", why);
	return r;
}

/* The report files in reports/, parsed, in seq order (cJSON_Delete the array). */
static cJSON *files(void)
{
	char path[256];
	struct dirent **list;
	cJSON *arr = cJSON_CreateArray();
	int n;

	snprintf(path, sizeof(path), "%s/reports", dir);
	n = scandir(path, &list, NULL, alphasort);
	cr_assert_geq(n, 0, "%s: %s", path, strerror(errno));
	for (int i = 0; i < n; i++) {
		size_t len = strlen(list[i]->d_name);

		if (len > 5 && strcmp(list[i]->d_name + len - 5, ".json") == 0) {
			char file[512], *text;
			cJSON *doc;

			snprintf(file, sizeof(file), "%s/%s", path, list[i]->d_name);
			text = gd_read_file(file);
			cr_assert_not_null(text);
			doc = cJSON_Parse(text);
			cr_assert_not_null(doc, "%s is not JSON: %s", file, text);
			free(text);
			cJSON_AddItemToArray(arr, doc);
		}
		free(list[i]);
	}
	free(list);
	return arr;
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	cr_assert(cJSON_IsNumber(v), "no number \"%s\"", k);
	return v->valuedouble;
}

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	cr_assert(cJSON_IsString(v), "no string \"%s\"", k);
	return v->valuestring;
}

Test(report, same_kind_and_key_while_pending_counts_instead_of_a_new_report)
{
	struct reporter *r = open_with(0, false);
	struct report_stats st;
	cJSON *f, *doc;

	cr_assert_eq(report_event(r, "update_refused", "v1.4.0", "bad signature"), 0);
	fake_now += 5000;
	cr_assert_eq(report_event(r, "update_refused", "v1.4.0", "bad signature again"), 0);
	cr_assert_eq(report_event(r, "update_refused", "v1.5.0", "expired manifest"), 0);
	cr_assert_eq(report_event(r, "rollback", "v1.4.0", "health check failed"), 0);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 3, "%s", cJSON_PrintUnformatted(f));
	doc = cJSON_GetArrayItem(f, 0);
	cr_expect_str_eq(str(doc, "device"), "press-07");
	cr_expect_str_eq(str(doc, "boot"), "5f0c7e1a9b32d4c8");
	cr_expect_str_eq(str(doc, "kind"), "update_refused");
	cr_expect_str_eq(str(doc, "key"), "v1.4.0");
	cr_expect_str_eq(str(doc, "text"), "bad signature again", "the newest text is kept");
	cr_expect_eq(num(doc, "count"), 2);
	cr_expect_eq(num(doc, "first_ts"), T0);
	cr_expect_eq(num(doc, "last_ts"), T0 + 5000);
	cr_expect_eq(num(doc, "seq"), 1);
	cr_expect_eq(num(cJSON_GetArrayItem(f, 1), "seq"), 2);
	cr_expect_str_eq(str(cJSON_GetArrayItem(f, 2), "kind"), "rollback");
	cJSON_Delete(f);
	reporter_get_stats(r, &st);
	cr_expect_eq(st.pending, 3);
	cr_expect_eq(st.suppressed, 0);
	/* A kind that is not a name is refused, and "suppressed" is the reporter's own. */
	cr_expect_eq(report_event(r, "Bad Kind", "k", "t"), GD_EINVAL);
	cr_expect_eq(report_event(r, "suppressed", "k", "t"), GD_EINVAL);
	reporter_close(r);
}

Test(report, beyond_the_hourly_limit_reports_are_counted_as_suppressed)
{
	struct reporter *r = open_with(3, false);
	struct report_stats st;
	char key[16];
	cJSON *f, *sup;

	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "p%d", i);
		cr_assert_eq(report_event(r, "write_refused", key, "refused"), 0);
		fake_now += 1000;
	}
	/* Another kind has its own budget. */
	cr_assert_eq(report_event(r, "rollback", "v2", "failed its health check"), 0);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 5, "3 reports, 1 suppressed, 1 rollback: %s",
		     cJSON_PrintUnformatted(f));
	sup = cJSON_GetArrayItem(f, 3);
	cr_expect_str_eq(str(sup, "kind"), "suppressed");
	cr_expect_str_eq(str(sup, "key"), "write_refused");
	cr_expect_eq(num(sup, "count"), 4);
	cr_expect(strstr(str(sup, "text"), "4 write_refused events") != NULL, "%s",
		  str(sup, "text"));
	cJSON_Delete(f);
	reporter_get_stats(r, &st);
	cr_expect_eq(st.suppressed, 4);
	/* An hour after the first, there is room again. */
	fake_now = T0 + 3600000 + 1;
	cr_assert_eq(report_event(r, "write_refused", "p9", "refused"), 0);
	f = files();
	cr_expect_eq(cJSON_GetArraySize(f), 6);
	cr_expect_str_eq(str(cJSON_GetArrayItem(f, 5), "key"), "p9");
	cJSON_Delete(f);
	reporter_close(r);
}

/* The uplink's id of the n-th send. */
static uint64_t sent_id(size_t i)
{
	cr_assert_lt(i, sent.n);
	return sent.ids[i];
}

Test(report, the_queue_survives_a_restart_and_only_acknowledged_reports_go)
{
	struct reporter *r = open_with(0, true);
	struct report_stats st;
	cJSON *f;

	cr_assert_eq(report_event(r, "update_refused", "v3", "rollback attempt: 3 <= 4"), 0);
	cr_assert_eq(report_event(r, "rollback", "v4", "no heartbeat in 60 s"), 0);
	cr_assert_eq(report_event(r, "attest_refused", "measurement_mismatch", "policy"), 0);
	/* Closed before anything was sent: a crash or a stop while the broker is away. */
	reporter_close(r);
	r = open_with(0, true);
	reporter_get_stats(r, &st);
	cr_expect_eq(st.pending, 3, "the reports did not survive the restart");
	reporter_tick(r);
	cr_assert_eq(sent.n, 3, "the reports from before were not sent");
	cr_expect(strstr(sent.docs[0], "\"kind\":\"update_refused\"") != NULL, "%s", sent.docs[0]);
	cr_expect(strstr(sent.docs[0], "\"seq\":1") != NULL, "%s", sent.docs[0]);
	/* A tick does not send what is in flight again. */
	reporter_tick(r);
	cr_expect_eq(sent.n, 3);
	/* The broker acknowledges the first; the second's connection went; the third waits. */
	reporter_ack(r, sent_id(0), true);
	reporter_ack(r, sent_id(1), false);
	reporter_tick(r);
	f = files();
	cr_expect_eq(cJSON_GetArraySize(f), 2, "only the acknowledged report is deleted");
	cr_expect_str_eq(str(cJSON_GetArrayItem(f, 0), "kind"), "rollback");
	cJSON_Delete(f);
	cr_expect_eq(sent.n, 4, "the failed send was not sent again");
	reporter_get_stats(r, &st);
	cr_expect_eq(st.sent, 1);
	cr_expect_eq(st.pending, 2);
	reporter_close(r);
	/* After another restart: the two left, and numbering goes on after them. */
	r = open_with(0, true);
	reporter_get_stats(r, &st);
	cr_expect_eq(st.pending, 2);
	cr_assert_eq(report_event(r, "rollback", "v5", "crashed twice"), 0);
	f = files();
	cr_expect_eq(num(cJSON_GetArrayItem(f, 2), "seq"), 4);
	cJSON_Delete(f);
	reporter_close(r);
}

Test(report, an_update_while_in_flight_is_sent_again_not_lost)
{
	struct reporter *r = open_with(0, true);
	cJSON *f;

	cr_assert_eq(report_event(r, "adapter_down", "press", "link down"), 0);
	reporter_tick(r);
	cr_assert_eq(sent.n, 1);
	/* Counted while the first send is on its way: its acknowledgement is for the old count. */
	cr_assert_eq(report_event(r, "adapter_down", "press", "link down again"), 0);
	reporter_ack(r, sent_id(0), true);
	reporter_tick(r);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 1, "the newer count was deleted unsent");
	cr_expect_eq(num(cJSON_GetArrayItem(f, 0), "count"), 2);
	cJSON_Delete(f);
	reporter_tick(r);
	cr_assert_eq(sent.n, 2, "the newer count was not sent");
	cr_expect(strstr(sent.docs[1], "\"count\":2") != NULL, "%s", sent.docs[1]);
	cr_expect(strstr(sent.docs[1], "\"seq\":1") != NULL, "the same report, counted on");
	/* A late word about the first send changes nothing. */
	reporter_ack(r, sent_id(0), true);
	reporter_tick(r);
	f = files();
	cr_expect_eq(cJSON_GetArraySize(f), 1);
	cJSON_Delete(f);
	reporter_ack(r, sent_id(1), true);
	reporter_tick(r);
	f = files();
	cr_expect_eq(cJSON_GetArraySize(f), 0);
	cJSON_Delete(f);
	reporter_close(r);
}

Test(report, a_run_that_did_not_stop_cleanly_is_reported_at_the_next_start)
{
	struct reporter *first, *second, *third, *fourth;
	char path[256];
	cJSON *f, *doc;

	first = open_with(0, false);
	/* A clean stop: nothing to say at the next start. */
	reporter_close(first);
	second = open_with(0, false);
	f = files();
	cr_expect_eq(cJSON_GetArraySize(f), 0, "a clean stop was reported as a crash");
	cJSON_Delete(f);
	/* 'second' never stops cleanly (killed); its supervisor says how it ended. */
	snprintf(path, sizeof(path), "%s/last-exit", dir);
	{
		FILE *fp = fopen(path, "w");

		cr_assert_not_null(fp);
		fputs("status=killed signal=9 (SIGKILL)\ncore=/var/crash/core.guardian.4711\n", fp);
		fclose(fp);
	}
	fake_now += 60000;
	third = open_with(0, false);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 1, "no crash report");
	doc = cJSON_GetArrayItem(f, 0);
	cr_expect_str_eq(str(doc, "kind"), "crash");
	cr_expect_str_eq(str(doc, "key"), "unclean_stop");
	cr_expect(strstr(str(doc, "text"), "did not stop cleanly") != NULL, "%s", str(doc, "text"));
	cr_expect(strstr(str(doc, "text"),
			 "signal=9 (SIGKILL); core=/var/crash/core.guardian.4711") != NULL,
		  "the supervisor's word is missing: %s", str(doc, "text"));
	cr_expect(strstr(str(doc, "text"), "5f0c7e1a9b32d4c8") != NULL, "no boot id: %s",
		  str(doc, "text"));
	cr_expect_eq(num(doc, "first_ts"), T0, "first_ts is when the crashed run started");
	cJSON_Delete(f);
	cr_expect_eq(access(path, F_OK), 0, "last-exit is the supervisor's: it stays");
	/* 'third' dies too; the supervisor's file is older than its start: not about it. */
	{
		struct timeval old[2] = { { .tv_sec = T0 / 1000 - 3600 },
					  { .tv_sec = T0 / 1000 - 3600 } };

		cr_assert_eq(utimes(path, old), 0);
	}
	fourth = open_with(0, false);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 1, "a second crash while the first waits is counted");
	doc = cJSON_GetArrayItem(f, 0);
	cr_expect_eq(num(doc, "count"), 2);
	cr_expect(strstr(str(doc, "text"), "no last-exit") != NULL,
		  "a stale last-exit was taken for this crash: %s", str(doc, "text"));
	cJSON_Delete(f);
	reporter_close(fourth);
	reporter_close(third);
	reporter_close(second);
}

Test(report, refused_writes_are_summed_per_point_over_a_window)
{
	struct reporter *r = open_with(0, false);
	cJSON *f, *doc;

	report_write_refused(r, "press/setpoint", "value 1200 is above the maximum 1000");
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 1, "the first refusal is not reported at once");
	cr_expect_eq(num(cJSON_GetArrayItem(f, 0), "count"), 1);
	cJSON_Delete(f);
	for (int i = 0; i < 9; i++) {
		fake_now += 1000;
		report_write_refused(r, "press/setpoint", "value 1300 is above the maximum 1000");
	}
	report_write_refused(r, "press/speed", "no downlink rule allows press/speed");
	reporter_tick(r);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 2, "one report per point, not one per write");
	cr_expect_eq(num(cJSON_GetArrayItem(f, 0), "count"), 1, "summed before the window ended");
	cJSON_Delete(f);
	fake_now = T0 + REPORT_WINDOW_MS;
	reporter_tick(r);
	f = files();
	cr_assert_eq(cJSON_GetArraySize(f), 2);
	doc = cJSON_GetArrayItem(f, 0);
	cr_expect_str_eq(str(doc, "kind"), "write_refused");
	cr_expect_str_eq(str(doc, "key"), "press/setpoint");
	cr_expect_eq(num(doc, "count"), 10, "the window's refusals were not counted in");
	cr_expect_eq(num(doc, "last_ts"), T0 + 9000);
	cr_expect(strstr(str(doc, "text"), "9 more writes to press/setpoint refused") != NULL, "%s",
		  str(doc, "text"));
	cr_expect(strstr(str(doc, "text"), "value 1300") != NULL, "no last reason: %s",
		  str(doc, "text"));
	cJSON_Delete(f);
	reporter_close(r);
}

/* The service's document of 'dev' (cJSON_Delete it). */
static cJSON *service_doc(const char *dev)
{
	char path[256], *text;
	cJSON *doc;

	snprintf(path, sizeof(path), "%s/reports/%s.json", dir, dev);
	text = gd_read_file(path);
	cr_assert_not_null(text, "%s: %s", path, strerror(errno));
	doc = cJSON_Parse(text);
	free(text);
	cr_assert_not_null(doc);
	return doc;
}

static int store(const char *dev, const char *doc)
{
	static const struct store_config files = { .backend = STORE_FILES };
	struct store *st = NULL;
	char why[512] = "";
	int rc;

	/* The files store of the service, on the test's directory: reports/<dev>.json. */
	cr_assert_eq(store_open(dir, &files, false, &st, why, sizeof(why)), 0, "%s", why);
	rc = service_report_store(st, dev, doc, strlen(doc), T0, why, sizeof(why));
	store_close(st);

	if (rc != 0)
		cr_log_info("refused: %s", why);
	return rc;
}

#define REP(kind, key, boot, count, seq)                                                           \
	"{\"device\":\"oven-4\",\"boot\":\"" boot "\",\"kind\":\"" kind "\",\"key\":\"" key        \
	"\",\"text\":\"t\",\"first_ts\":1,\"last_ts\":2,\"count\":" #count ",\"seq\":" #seq "}"

Test(report, the_service_counts_each_report_once_whatever_is_sent_again)
{
	cJSON *d, *k;
	char dev[64];

	cr_expect(service_report_topic("guardian/oven-4/report", dev));
	cr_expect_str_eq(dev, "oven-4");
	cr_expect_not(service_report_topic("guardian/oven-4/attest/hello", dev));
	cr_expect_not(service_report_topic("guardian/../report", dev));
	cr_assert_eq(store("oven-4", REP("crash", "unclean_stop", "aa", 1, 1)), 0);
	cr_assert_eq(store("oven-4", REP("crash", "unclean_stop", "aa", 1, 1)), 0); /* repeat */
	cr_assert_eq(store("oven-4", REP("crash", "unclean_stop", "aa", 3, 1)), 0); /* grew */
	cr_assert_eq(store("oven-4", REP("crash", "unclean_stop", "bb", 1, 7)), 0); /* new */
	cr_assert_eq(store("oven-4", REP("write_refused", "press/setpoint", "bb", 5, 8)), 0);
	d = service_doc("oven-4");
	cr_expect_eq(num(d, "reports"), 3);
	cr_expect_eq(num(d, "events"), 9);
	k = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "kinds"), "crash");
	cr_expect_eq(num(k, "reports"), 2);
	cr_expect_eq(num(k, "events"), 4);
	cr_expect_eq(num(cJSON_GetObjectItemCaseSensitive(k, "latest"), "seq"), 7);
	cJSON_Delete(d);
	/* Refused: another device's name inside, a kind that is not a name, no count. */
	cr_expect_eq(store("oven-4", "{\"device\":\"oven-5\"}"), GD_EINVAL);
	cr_expect_eq(store("oven-4", REP("Crash!", "k", "aa", 1, 9)), GD_EINVAL);
	cr_expect_eq(store("oven-4", REP("crash", "k", "aa", 0, 9)), GD_EINVAL);
	cr_expect_eq(store("oven-4", "not json"), GD_EINVAL);
	d = service_doc("oven-4");
	cr_expect_eq(num(d, "reports"), 3);
	cJSON_Delete(d);
}
