/* test_compartment_wire.c: the messages between the gateway and an adapter's child
 * (guardian/compartment.h): every field round-trips; a wrong length, an unknown type, a sequence
 * out of order, an index out of range and garbage are refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../guardian/compartment.h"

static uint8_t buf[CM_MSG_MAX];
static struct sample in[CM_SAMPLES_MAX];
static char text[CM_MSG_MAX];
static char why[256];

/* Three points of one adapter, numbered from 40 in the gateway's table. */
static struct point points[3] = { { .id = 40 }, { .id = 41 }, { .id = 42 } };

static int decode(size_t len, uint32_t seq, bool from_child, struct cm_msg *m)
{
	return cm_decode(buf, len, seq, from_child, 3, m, in, CM_SAMPLES_MAX, text, sizeof(text),
			 why, sizeof(why));
}

Test(compartment_wire, a_batch_round_trips_field_by_field)
{
	const struct sample s[] = {
		{ .point_id = 40,
		  .quality = QUALITY_GOOD,
		  .ts_ms = 1764590000123,
		  .value = { .kind = VALUE_KIND_FLOAT, .f = -12.5 } },
		{ .point_id = 41,
		  .quality = QUALITY_EXCEPTION,
		  .code = 2,
		  .flags = 0x3,
		  .ts_ms = -1,
		  .value = { .kind = VALUE_KIND_NONE } },
		{ .point_id = 42,
		  .quality = QUALITY_GOOD,
		  .ts_ms = 7,
		  .value = { .kind = VALUE_KIND_STRING, .s = "OVL" } },
		{ .point_id = 40,
		  .quality = QUALITY_GOOD,
		  .value = { .kind = VALUE_KIND_INT, .i = INT64_MIN } },
		{ .point_id = 41,
		  .quality = QUALITY_GOOD,
		  .value = { .kind = VALUE_KIND_UINT, .u = UINT64_MAX } },
		{ .point_id = 42,
		  .quality = QUALITY_BAD_VALUE,
		  .value = { .kind = VALUE_KIND_BOOL, .b = true } },
	};
	size_t taken = 0, len = cm_encode_batch(buf, sizeof(buf), 9, s, 6, points, 3, &taken);
	struct cm_msg m;

	cr_assert_gt(len, 0);
	cr_expect_eq(taken, 6);
	cr_assert_eq(decode(len, 9, true, &m), 0, "%s", why);
	cr_expect_eq(m.type, CM_BATCH);
	cr_expect_eq(m.seq, 9);
	cr_expect(!m.more);
	cr_assert_eq(m.nsamples, 6);
	for (size_t i = 0; i < 6; i++) {
		cr_expect_eq(in[i].point_id, s[i].point_id - 40, "sample %zu: an index", i);
		cr_expect_eq(in[i].quality, s[i].quality);
		cr_expect_eq(in[i].flags, s[i].flags);
		cr_expect_eq(in[i].code, s[i].code);
		cr_expect_eq(in[i].ts_ms, s[i].ts_ms);
		cr_expect_eq(in[i].value.kind, s[i].value.kind);
	}
	cr_expect_eq(in[0].value.f, -12.5);
	cr_expect_str_eq(in[2].value.s, "OVL");
	cr_expect_eq(in[3].value.i, INT64_MIN);
	cr_expect_eq(in[4].value.u, UINT64_MAX);
	cr_expect(in[5].value.b);
}

Test(compartment_wire, a_large_batch_goes_in_several_messages)
{
	static struct sample many[10000];
	size_t done = 0, msgs = 0, got = 0;

	for (size_t i = 0; i < 10000; i++)
		many[i] = (struct sample){ .point_id = 40 + (uint32_t)(i % 3),
					   .value = { .kind = VALUE_KIND_FLOAT, .f = (double)i } };
	while (done < 10000) {
		size_t taken = 0;
		size_t len = cm_encode_batch(buf, sizeof(buf), (uint32_t)msgs, many + done,
					     10000 - done, points, 3, &taken);
		struct cm_msg m;

		cr_assert_gt(len, 0);
		cr_assert_leq(len, CM_MSG_MAX);
		cr_assert_eq(decode(len, (uint32_t)msgs, true, &m), 0, "%s", why);
		cr_expect_eq(in[0].value.f, (double)done);
		got += m.nsamples;
		done += taken;
		cr_expect_eq(m.more, done < 10000, "'more' on every part but the last");
		msgs++;
	}
	cr_expect_eq(got, 10000);
	cr_expect_gt(msgs, 1);
}

Test(compartment_wire, stats_answers_and_requests_round_trip)
{
	struct adapter_stats st = { .polls = 1,
				    .polls_ok = 2,
				    .timeouts = 3,
				    .exceptions = 4,
				    .bad_frames = 5,
				    .io_errors = 6,
				    .reconnects = 7,
				    .samples = 8,
				    .last_ok_ms = 1764590000999,
				    .link_up = 1 };
	struct value v = { .kind = VALUE_KIND_FLOAT, .f = 600.25 },
		     s = { .kind = VALUE_KIND_STRING, .s = "on" };
	struct cm_msg m;
	size_t len;

	len = cm_encode_stats(buf, sizeof(buf), 0, &st, "no answer from unit 3", ",\"late\":2");
	cr_assert_eq(decode(len, 0, true, &m), 0, "%s", why);
	cr_expect_eq(m.type, CM_STATS);
	cr_expect_eq(m.stats.polls, 1);
	cr_expect_eq(m.stats.polls_ok, 2);
	cr_expect_eq(m.stats.timeouts, 3);
	cr_expect_eq(m.stats.exceptions, 4);
	cr_expect_eq(m.stats.bad_frames, 5);
	cr_expect_eq(m.stats.io_errors, 6);
	cr_expect_eq(m.stats.reconnects, 7);
	cr_expect_eq(m.stats.samples, 8);
	cr_expect_eq(m.stats.last_ok_ms, 1764590000999);
	cr_expect_eq(m.stats.link_up, 1);
	cr_expect_str_eq(m.fault, "no answer from unit 3");
	cr_expect_str_eq(m.json, ",\"late\":2");

	len = cm_encode_answer(buf, sizeof(buf), 1, 77, GD_ETIMEDOUT, &v);
	cr_assert_eq(decode(len, 1, true, &m), 0, "%s", why);
	cr_expect_eq(m.type, CM_ANSWER);
	cr_expect_eq(m.answers, 77);
	cr_expect_eq(m.rc, GD_ETIMEDOUT);
	cr_expect_eq(m.value.f, 600.25);

	len = cm_encode_write(buf, sizeof(buf), 5, 2, 123456789, &s);
	cr_assert_eq(decode(len, 5, false, &m), 0, "%s", why);
	cr_expect_eq(m.type, CM_WRITE);
	cr_expect_eq(m.index, 2);
	cr_expect_eq(m.deadline_ms, 123456789);
	cr_expect_str_eq(m.value.s, "on");

	len = cm_encode_read(buf, sizeof(buf), 6, 1, 42);
	cr_assert_eq(decode(len, 6, false, &m), 0, "%s", why);
	cr_expect_eq(m.type, CM_READ);
	cr_expect_eq(m.index, 1);
	cr_expect_eq(m.deadline_ms, 42);

	len = cm_encode_stop(buf, sizeof(buf), 7);
	cr_assert_eq(len, CM_HDR_LEN);
	cr_assert_eq(decode(len, 7, false, &m), 0, "%s", why);
	cr_expect_eq(m.type, CM_STOP);
}

Test(compartment_wire, a_wrong_length_is_refused)
{
	struct value v = { .kind = VALUE_KIND_INT, .i = 5 };
	struct cm_msg m;
	size_t len = cm_encode_write(buf, sizeof(buf), 0, 1, 0, &v);
	uint32_t claimed = (uint32_t)len + 1;

	/* One byte short, one byte more, a header that says another length, less than a header. */
	cr_expect_eq(decode(len - 1, 0, false, &m), GD_EPROTO);
	buf[len] = 0;
	cr_expect_eq(decode(len + 1, 0, false, &m), GD_EPROTO);
	cr_expect_eq(decode(CM_HDR_LEN - 1, 0, false, &m), GD_EPROTO);
	memcpy(buf + 8, &claimed, 4);
	cr_expect_eq(decode(len, 0, false, &m), GD_EPROTO, "a header with the wrong length");
	/* A batch whose count says more samples than it holds. */
	len = cm_encode_stop(buf, sizeof(buf), 0);
	cr_expect_eq(decode(len, 0, true, &m), GD_EPROTO, "STOP from a child");
}

Test(compartment_wire, an_unknown_type_or_a_sequence_out_of_order_is_refused)
{
	struct cm_msg m;
	size_t len = cm_encode_read(buf, sizeof(buf), 3, 0, 0);
	uint16_t type = 99;

	cr_expect_eq(decode(len, 3, false, &m), 0, "%s", why);
	cr_expect_eq(decode(len, 4, false, &m), GD_EPROTO, "a replayed or skipped message");
	cr_expect_eq(decode(len, 3, true, &m), GD_EPROTO, "a READ from a child");
	memcpy(buf, &type, 2);
	cr_expect_eq(decode(len, 3, false, &m), GD_EPROTO);
	cr_expect_not_null(strstr(why, "unknown type 99"), "%s", why);
}

Test(compartment_wire, an_index_out_of_range_or_garbage_is_refused)
{
	const struct sample s = { .point_id = 41, .value = { .kind = VALUE_KIND_BOOL, .b = 1 } };
	uint32_t bad = 3;
	struct cm_msg m;
	size_t taken, len;

	len = cm_encode_read(buf, sizeof(buf), 0, 3, 0);
	cr_expect_eq(decode(len, 0, false, &m), GD_EPROTO, "READ of point 3 of 3");
	cr_expect_not_null(strstr(why, "out of range"), "%s", why);
	len = cm_encode_batch(buf, sizeof(buf), 0, &s, 1, points, 3, &taken);
	cr_assert_eq(decode(len, 0, true, &m), 0, "%s", why);
	/* The sample's index (after header, count and 'more') made 3: out of range. */
	memcpy(buf + CM_HDR_LEN + 5, &bad, 4);
	cr_expect_eq(decode(len, 0, true, &m), GD_EPROTO);
	bad = 1;
	memcpy(buf + CM_HDR_LEN + 5, &bad, 4);
	buf[CM_HDR_LEN + 9] = 42; /* a quality that does not exist */
	cr_expect_eq(decode(len, 0, true, &m), GD_EPROTO);
	buf[CM_HDR_LEN + 9] = 0;
	buf[CM_HDR_LEN + 4] = 2; /* a 'more' that is neither 0 nor 1 */
	cr_expect_eq(decode(len, 0, true, &m), GD_EPROTO);
	buf[CM_HDR_LEN + 4] = 0;
	buf[len - 1] = 2; /* a bool of 2 */
	cr_expect_eq(decode(len, 0, true, &m), GD_EPROTO);
	/* A sample of a point not in the adapter is left out by the encoder, never sent. */
	{
		const struct sample alien = { .point_id = 7 };

		len = cm_encode_batch(buf, sizeof(buf), 0, &alien, 1, points, 3, &taken);
		cr_expect_eq(taken, 1);
		cr_assert_eq(decode(len, 0, true, &m), 0, "%s", why);
		cr_expect_eq(m.nsamples, 0);
	}
	/* Random bytes are never taken for a message. */
	for (int round = 0; round < 2000; round++) {
		size_t n = 1 + (size_t)(rand() % 300);

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rand();
		cr_expect_eq(decode(n, 0, true, &m), GD_EPROTO);
	}
	/* A string with NUL in it, and a string longer than a value may be. */
	{
		struct value sv = { .kind = VALUE_KIND_STRING, .s = "abc" };

		len = cm_encode_write(buf, sizeof(buf), 0, 0, 0, &sv);
		buf[len - 2] = '\0';
		cr_expect_eq(decode(len, 0, false, &m), GD_EPROTO);
	}
	{
		static char longtext[CM_TEXT_MAX + 2];
		struct value sv = { .kind = VALUE_KIND_STRING, .s = longtext };

		memset(longtext, 'x', CM_TEXT_MAX + 1);
		cr_expect_eq(cm_encode_write(buf, sizeof(buf), 0, 0, 0, &sv), 0);
	}
}
