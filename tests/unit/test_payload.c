/* test_payload.c: telemetry JSON is exact, escaped, split at the cap, and never overflows it. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../uplink/uplink.h"

static struct point temp = { .name = "plc1/temp", .id = 0, .unit = "degC" };
static struct point flag = { .name = "plc1/run", .id = 1, .unit = "" };
static const struct point *const table[] = { &temp, &flag };

#define BOOT "5f0c7e1a9b32d4c8"
#define HEAD                                                                                       \
	"{\"device\":\"press-07\",\"boot\":\"" BOOT                                                \
	"\",\"seq\":12,\"ts\":1732200000000,\"points\":["

/* The document for one sample of plc1/temp (id 0) or plc1/run (id 1). */
static const char *doc1(char *buf, size_t cap, const struct sample *s)
{
	size_t len = 0;

	cr_assert_eq(payload_telemetry(buf, cap, &len, "press-07", BOOT, 12, 1732200000000, table,
				       NULL, s, 1),
		     1);
	cr_assert_eq(len, strlen(buf));
	return buf;
}

static struct sample good(uint32_t id, struct value v)
{
	return (struct sample){
		.point_id = id, .quality = QUALITY_GOOD, .ts_ms = 1732200000001, .value = v
	};
}

Test(payload, the_documented_example)
{
	char buf[512];
	struct sample s = good(0, (struct value){ .kind = VALUE_KIND_FLOAT, .f = 21.5 });

	s.ts_ms = 1732200000000;
	cr_assert_str_eq(doc1(buf, sizeof(buf), &s),
			 HEAD "{\"name\":\"plc1/temp\",\"value\":21.5,\"unit\":\"degC\","
			      "\"quality\":\"good\",\"ts\":1732200000000}]}");
}

Test(payload, each_value_kind)
{
	static const struct {
		struct value v;
		const char *json;
	} cases[] = {
		{ { .kind = VALUE_KIND_BOOL, .b = true }, "true" },
		{ { .kind = VALUE_KIND_BOOL, .b = false }, "false" },
		{ { .kind = VALUE_KIND_INT, .i = -42 }, "-42" },
		{ { .kind = VALUE_KIND_INT, .i = INT64_MIN }, "-9223372036854775808" },
		{ { .kind = VALUE_KIND_UINT, .u = UINT64_MAX }, "18446744073709551615" },
		{ { .kind = VALUE_KIND_FLOAT, .f = 0.1 }, "0.1" },
		{ { .kind = VALUE_KIND_FLOAT, .f = 1.0 / 3.0 }, "0.3333333333333333" },
		{ { .kind = VALUE_KIND_FLOAT, .f = 0.1 + 0.2 }, "0.30000000000000004" },
		{ { .kind = VALUE_KIND_FLOAT, .f = 1e300 }, "1e+300" },
		{ { .kind = VALUE_KIND_FLOAT, .f = -2.5e-7 }, "-2.5e-07" },
		{ { .kind = VALUE_KIND_FLOAT, .f = 3.0 }, "3" },
		{ { .kind = VALUE_KIND_FLOAT, .f = DBL_MAX }, "1.7976931348623157e+308" },
		{ { .kind = VALUE_KIND_FLOAT, .f = NAN }, "null" },
		{ { .kind = VALUE_KIND_FLOAT, .f = INFINITY }, "null" },
		{ { .kind = VALUE_KIND_STRING, .s = "idle" }, "\"idle\"" },
		{ { .kind = VALUE_KIND_STRING, .s = NULL }, "null" },
		{ { .kind = VALUE_KIND_NONE }, "null" },
	};
	char buf[512], expect[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sample s = good(1, cases[i].v);

		snprintf(expect, sizeof(expect),
			 HEAD "{\"name\":\"plc1/run\",\"value\":%s,\"quality\":\"good\","
			      "\"ts\":1732200000001}]}",
			 cases[i].json);
		cr_expect_str_eq(doc1(buf, sizeof(buf), &s), expect, "case %zu", i);
	}
}

Test(payload, floats_read_back_exactly)
{
	double values[] = { 0.1,    1.0 / 3.0,	   2.0 / 3.0, 123456.789,	  1e-310,
			    5e-324, 6.02214076e23, -0.0,      9007199254740993.0, 0.7 };
	char buf[512];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct sample s =
			good(0, (struct value){ .kind = VALUE_KIND_FLOAT, .f = values[i] });
		cJSON *root = cJSON_Parse(doc1(buf, sizeof(buf), &s));
		cJSON *v;

		cr_assert_not_null(root, "%s", buf);
		v = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "points"), 0),
					"value");
		cr_expect(cJSON_IsNumber(v));
		cr_expect_eq(v->valuedouble, values[i], "%.17g came back as %.17g from %s",
			     values[i], v->valuedouble, buf);
		cJSON_Delete(root);
	}
}

Test(payload, each_quality)
{
	static const char *const names[] = { "good",	"timeout",	"exception", "bad_frame",
					     "offline", "disconnected", "bad_value" };
	char buf[512], expect[512];

	for (int q = QUALITY_TIMEOUT; q <= QUALITY_BAD_VALUE; q++) {
		struct sample s = {
			.point_id = 0, .quality = (enum quality)q, .code = 2, .ts_ms = 5
		};

		snprintf(expect, sizeof(expect),
			 HEAD "{\"name\":\"plc1/temp\",\"value\":null,\"unit\":\"degC\","
			      "\"quality\":\"%s\"%s,\"ts\":5}]}",
			 names[q], q == QUALITY_EXCEPTION ? ",\"code\":2" : "");
		cr_expect_str_eq(doc1(buf, sizeof(buf), &s), expect, "quality %d", q);
	}
}

Test(payload, bad_quality_hides_a_stale_value)
{
	char buf[512];
	struct sample s = { .point_id = 1,
			    .quality = QUALITY_TIMEOUT,
			    .ts_ms = 9,
			    .value = { .kind = VALUE_KIND_INT, .i = 7 } };

	cr_assert_str_eq(doc1(buf, sizeof(buf), &s),
			 HEAD "{\"name\":\"plc1/run\",\"value\":null,\"quality\":\"timeout\","
			      "\"ts\":9}]}");
}

Test(payload, strings_are_escaped)
{
	struct point odd = { .name = "a\"b\\c",
			     .id = 0,
			     .unit = "\xc2\xb0"
				     "C" };
	const struct point *const odd_table[] = { &odd };
	struct sample s =
		good(0, (struct value){ .kind = VALUE_KIND_STRING,
					.s = "tab\tnl\ncr\r\x01\x1f end \xff\xe2\x82\xac" });
	char buf[512];
	size_t len;

	cr_assert_eq(payload_telemetry(buf, sizeof(buf), &len, "d\"1", BOOT, 1, 2, odd_table, NULL,
				       &s, 1),
		     1);
	cr_assert_str_eq(buf, "{\"device\":\"d\\\"1\",\"boot\":\"" BOOT
			      "\",\"seq\":1,\"ts\":2,\"points\":["
			      "{\"name\":\"a\\\"b\\\\c\",\"value\":\"tab\\u0009nl\\u000acr\\u000d"
			      "\\u0001\\u001f end \\ufffd\xe2\x82\xac\",\"unit\":\"\xc2\xb0"
			      "C\",\"quality\":\"good\",\"ts\":1732200000001}]}");
	cJSON *root = cJSON_Parse(buf);

	cr_assert_not_null(root, "valid JSON: %s", buf);
	cJSON_Delete(root);
}

/* 'n' samples alternating between the two points, values 0..n-1. */
static void make_batch(struct sample *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s[i] = good((uint32_t)(i % 2),
			    (struct value){ .kind = VALUE_KIND_INT, .i = (int64_t)i });
}

Test(payload, a_batch_split_at_the_cap_yields_every_sample_once)
{
	struct sample batch[200];
	size_t caps[] = { 200, 333, 512, 1000, 4096 };

	make_batch(batch, 200);
	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		char buf[4096];
		size_t done = 0, docs = 0;
		int64_t next = 0;

		while (done < 200) {
			size_t len = 0;
			size_t wrote =
				payload_telemetry(buf, caps[c], &len, "press-07", BOOT, docs + 1, 1,
						  table, NULL, batch + done, 200 - done);
			cJSON *root, *item;

			cr_assert_gt(wrote, 0, "cap %zu", caps[c]);
			cr_assert_lt(len, caps[c]);
			cr_assert_eq(strlen(buf), len);
			root = cJSON_Parse(buf);
			cr_assert_not_null(root, "cap %zu: %s", caps[c], buf);
			cr_assert_eq(
				(size_t)cJSON_GetArraySize(cJSON_GetObjectItem(root, "points")),
				wrote);
			cJSON_ArrayForEach (item, cJSON_GetObjectItem(root, "points")) {
				cr_assert_eq(
					(int64_t)cJSON_GetObjectItem(item, "value")->valuedouble,
					next, "cap %zu", caps[c]);
				next++;
			}
			cJSON_Delete(root);
			done += wrote;
			docs++;
		}
		cr_assert_eq(next, 200);
		if (caps[c] < 1000)
			cr_assert_gt(docs, 1, "cap %zu must split", caps[c]);
	}
}

Test(payload, never_writes_past_cap)
{
	struct sample batch[12];
	char whole[2048];
	size_t one_len, full_len;

	make_batch(batch, 12);
	cr_assert_eq(payload_telemetry(whole, sizeof(whole), &one_len, "press-07", BOOT, 1, 1,
				       table, NULL, batch, 1),
		     1);
	cr_assert_eq(payload_telemetry(whole, sizeof(whole), &full_len, "press-07", BOOT, 1, 1,
				       table, NULL, batch, 12),
		     12);
	cr_assert_lt(full_len, 1400, "the loop below passes the whole batch");
	for (size_t cap = 0; cap < 1400; cap++) {
		char buf[1536];
		size_t len = 12345;
		size_t wrote;

		memset(buf, '#', sizeof(buf));
		wrote = payload_telemetry(buf, cap, &len, "press-07", BOOT, 1, 1, table, NULL,
					  batch, 12);
		for (size_t i = cap; i < sizeof(buf); i++)
			cr_assert_eq(buf[i], '#', "cap %zu: byte %zu written", cap, i);
		if (cap <= one_len) {
			cr_assert_eq(wrote, 0, "cap %zu: not even one sample fits", cap);
			cr_assert_eq(len, 0);
			if (cap > 0)
				cr_assert_eq(buf[0], '\0');
			continue;
		}
		cr_assert_gt(wrote, 0, "cap %zu", cap);
		cr_assert_lt(len, cap);
		cr_assert_eq(buf[len], '\0');
		if (cap > full_len)
			cr_assert_eq(wrote, 12, "cap %zu holds the whole batch", cap);
		else
			cr_assert_lt(wrote, 12, "cap %zu cannot hold the whole batch", cap);
	}
}

Test(payload, cap_is_filled_as_far_as_it_goes)
{
	struct sample batch[3];
	char whole[512], buf[512];
	size_t whole_len, len;

	make_batch(batch, 3);
	payload_telemetry(whole, sizeof(whole), &whole_len, "press-07", BOOT, 1, 1, table, NULL,
			  batch, 3);
	/* Exactly the length plus the NUL: all three fit; one byte less: only two. */
	cr_assert_eq(payload_telemetry(buf, whole_len + 1, &len, "press-07", BOOT, 1, 1, table,
				       NULL, batch, 3),
		     3);
	cr_assert_eq(len, whole_len);
	cr_assert_eq(payload_telemetry(buf, whole_len, &len, "press-07", BOOT, 1, 1, table, NULL,
				       batch, 3),
		     2);
}

Test(payload, alias_names_and_range_marks)
{
	static const char *const names[] = { "oven_temp", "plc1/run" };
	struct sample s[2] = { good(0, (struct value){ .kind = VALUE_KIND_FLOAT, .f = 150 }),
			       good(1, (struct value){ .kind = VALUE_KIND_BOOL, .b = true }) };
	char buf[512];
	size_t len = 0;

	s[0].flags = SAMPLE_CLAMPED;
	s[1].flags = SAMPLE_OUT_OF_RANGE;
	cr_assert_eq(payload_telemetry(buf, sizeof(buf), &len, "press-07", BOOT, 12, 1732200000000,
				       table, names, s, 2),
		     2);
	cr_assert_str_eq(buf,
			 HEAD "{\"name\":\"oven_temp\",\"value\":150,\"unit\":\"degC\","
			      "\"quality\":\"good\",\"range\":\"clamped\",\"ts\":1732200000001},"
			      "{\"name\":\"plc1/run\",\"value\":true,\"quality\":\"good\","
			      "\"range\":\"outside\",\"ts\":1732200000001}]}");
	cr_assert_null(strstr(buf, "plc1/temp"), "the internal name must not leave under an alias");
}

/* Built with seq 0 and numbered afterwards: the very document payload_telemetry writes with the
 * number, whatever its digits, and whatever the device id holds. */
Test(payload, numbered_afterwards_is_the_same_document)
{
	static const uint64_t seqs[] = { 1, 9, 10, 12, 999, 1000, 123456789, UINT64_MAX };
	static const char *const devices[] = { "press-07", "x\",\"seq\":0,\"y" };
	struct sample s = good(0, (struct value){ .kind = VALUE_KIND_FLOAT, .f = 21.5 });

	for (size_t d = 0; d < 2; d++) {
		for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
			char want[512], buf[PAYLOAD_SEQ_ROOM + 512], *doc;
			size_t want_len = 0, len = 0;

			cr_assert_eq(payload_telemetry(want, sizeof(want), &want_len, devices[d],
						       BOOT, seqs[i], 1732200000000, table, NULL,
						       &s, 1),
				     1);
			memset(buf, '#', sizeof(buf));
			cr_assert_eq(payload_telemetry(buf + PAYLOAD_SEQ_ROOM, 512, &len,
						       devices[d], BOOT, 0, 1732200000000, table,
						       NULL, &s, 1),
				     1);
			doc = payload_number(buf + PAYLOAD_SEQ_ROOM, &len, seqs[i]);
			cr_assert_geq(doc, buf, "seq %llu: wrote before the room",
				      (unsigned long long)seqs[i]);
			cr_assert_eq(len, want_len);
			cr_assert_eq(memcmp(doc, want, len), 0, "seq %llu: %.*s\nwanted %s",
				     (unsigned long long)seqs[i], (int)len, doc, want);
			cr_assert_eq(doc[len], '\0');
		}
	}
}
