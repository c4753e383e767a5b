/* test_canbus.c: DBC signal layouts, J1939 identifiers and SLCAN lines against hand-worked
 * vectors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../adapters/canbus.h"

/* Every byte different, so that a wrong byte or bit order shows. */
static const uint8_t frame[8] = { 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0 };

static struct can_signal intel(unsigned start, unsigned length, bool is_signed)
{
	return (struct can_signal){ .start_bit = (uint16_t)start,
				    .length = (uint16_t)length,
				    .is_signed = is_signed };
}

static struct can_signal motorola(unsigned start, unsigned length, bool is_signed)
{
	return (struct can_signal){ .start_bit = (uint16_t)start,
				    .length = (uint16_t)length,
				    .big_endian = true,
				    .is_signed = is_signed };
}

static void expect_raw(struct can_signal s, const uint8_t *data, uint64_t want)
{
	uint64_t got;

	cr_assert(can_signal_fits(&s, 8), "start %u length %u should fit", s.start_bit, s.length);
	got = can_signal_raw(&s, data);
	cr_assert_eq(got, want, "%s start %u length %u: 0x%llx, expected 0x%llx",
		     s.big_endian ? "motorola" : "intel", s.start_bit, s.length,
		     (unsigned long long)got, (unsigned long long)want);
}

Test(canbus, intel_vectors)
{
	expect_raw(intel(0, 8, false), frame, 0x12);	 /* byte 0 */
	expect_raw(intel(24, 16, false), frame, 0x9A78); /* EEC1 engine speed: bytes 3, 4 LE */
	expect_raw(intel(4, 12, false), frame, 0x341);	 /* 0x3412 >> 4 */
	expect_raw(intel(13, 3, false), frame, 0x1);	 /* 0x34 = 0011 0100: bits 7..5 = 001 */
	expect_raw(intel(0, 64, false), frame, 0xF0DEBC9A78563412ull);
	expect_raw(intel(63, 1, false), frame, 1); /* 0xF0 bit 7 */
	expect_raw(intel(0, 1, false), frame, 0);  /* 0x12 bit 0 */
	expect_raw(intel(1, 1, false), frame, 1);  /* 0x12 bit 1 */
	expect_raw(intel(60, 4, false), frame, 0xF);
	expect_raw(intel(1, 63, false), frame, 0xF0DEBC9A78563412ull >> 1);
}

Test(canbus, motorola_vectors)
{
	/* cantools: a Motorola signal with start 7 and length 8 is byte 0. */
	expect_raw(motorola(7, 8, false), frame, 0x12);
	expect_raw(motorola(7, 16, false), frame, 0x1234);
	/* 12 bits from bit 7: all of byte 0, then bits 7..4 of byte 1. */
	expect_raw(motorola(7, 12, false), frame, 0x123);
	/* 3 bits from bit 13: bits 13, 12, 11 of 0x34 = 0011 0100 -> 110. */
	expect_raw(motorola(13, 3, false), frame, 0x6);
	expect_raw(motorola(7, 64, false), frame, 0x123456789ABCDEF0ull);
	/* From bit 3: bits 3..0 of byte 0 (0x2), then bits 7..4 of byte 1 (0x3). */
	expect_raw(motorola(3, 8, false), frame, 0x23);
	/* Start 0, length 2: bit 0 of byte 0 (0), then bit 7 of byte 1 (0). */
	expect_raw(motorola(0, 2, false), frame, 0x0);
	expect_raw(motorola(23, 12, false), frame, 0x567); /* byte 2, high nibble of byte 3 */
	expect_raw(motorola(27, 12, false), frame, 0x89A); /* low nibble of byte 3, byte 4 */
	expect_raw(motorola(47, 1, false), frame, 1);	   /* 0xBC bit 7 */
	expect_raw(motorola(43, 4, false), frame, 0xC);	   /* 0xBC bits 3..0 */
	expect_raw(motorola(56, 1, false), frame, 0);	   /* 0xF0 bit 0 */
	expect_raw(motorola(63, 8, false), frame, 0xF0);
}

Test(canbus, sign_extension)
{
	struct can_signal s = intel(32, 8, true);

	/* 0x9A = 154 = -102 in 8-bit two's complement. */
	cr_assert_eq(can_signal_signed(&s, can_signal_raw(&s, frame)), -102);
	/* YawRate-like: 12-bit 0x89A = 2202 = 2202 - 4096 = -1894. */
	s = motorola(27, 12, true);
	cr_assert_eq(can_signal_signed(&s, can_signal_raw(&s, frame)), -1894);
	s = intel(0, 12, true);
	cr_assert_eq(can_signal_signed(&s, 0x7FF), 2047);
	cr_assert_eq(can_signal_signed(&s, 0x800), -2048);
	cr_assert_eq(can_signal_signed(&s, 0xFFF), -1);
	s = intel(0, 1, true);
	cr_assert_eq(can_signal_signed(&s, 1), -1);
	cr_assert_eq(can_signal_signed(&s, 0), 0);
	s = intel(0, 64, true);
	cr_assert_eq(can_signal_signed(&s, 0xFFFFFFFFFFFFFFFEull), -2);
	/* Unsigned signals keep the raw value. */
	s = intel(0, 8, false);
	cr_assert_eq(can_signal_signed(&s, 0x9A), 154);
}

Test(canbus, fits)
{
	struct can_signal s = intel(56, 8, false);

	cr_assert(can_signal_fits(&s, 8));
	cr_assert_not(can_signal_fits(&s, 7));
	s = motorola(7, 64, false);
	cr_assert(can_signal_fits(&s, 8));
	s = motorola(15, 64, false); /* runs 8 bits past the end */
	cr_assert_not(can_signal_fits(&s, 8));
	s = motorola(0, 2, false); /* bit 0 of byte 0, bit 7 of byte 1 */
	cr_assert_not(can_signal_fits(&s, 1));
	cr_assert(can_signal_fits(&s, 2));
	s = motorola(7, 8, false);
	cr_assert(can_signal_fits(&s, 1));
	cr_assert_not(can_signal_fits(&s, 0));
	s = intel(0, 0, false);
	cr_assert_not(can_signal_fits(&s, 8));
	s = intel(0, 65, false);
	cr_assert_not(can_signal_fits(&s, 8));
	s = intel(64, 1, false);
	cr_assert_not(can_signal_fits(&s, 8));
	s = intel(0, 8, false);
	cr_assert_not(can_signal_fits(&s, 9));
}

/* The DBC definition taken literally, one bit at a time, to check the fast path against. */
static uint64_t reference_raw(const struct can_signal *s, const uint8_t *data)
{
	uint64_t v = 0;
	unsigned b = s->start_bit;

	for (unsigned i = 0; i < s->length; i++) {
		unsigned bit = (data[b / 8] >> (b % 8)) & 1u;

		if (s->big_endian) {
			v = v << 1 | bit; /* MSB first, sawtooth */
			b = b % 8 == 0 ? b + 15 : b - 1;
		} else {
			v |= (uint64_t)bit << i; /* LSB first, upward */
			b++;
		}
	}
	return v;
}

static uint64_t next_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

Test(canbus, every_layout_matches_the_definition_and_round_trips)
{
	uint64_t rng = 0x9E3779B97F4A7C15ull;
	unsigned checked = 0;

	for (int order = 0; order < 2; order++) {
		for (unsigned start = 0; start < 64; start++) {
			for (unsigned length = 1; length <= 64; length++) {
				struct can_signal s = order ? motorola(start, length, false)
							    : intel(start, length, false);
				uint64_t bg = next_random(&rng), val = next_random(&rng);
				uint64_t mask = length == 64 ? ~0ull : (1ull << length) - 1;
				uint8_t data[8], before[8], again[8];

				if (!can_signal_fits(&s, 8))
					continue;
				memcpy(data, &bg, 8);
				memcpy(before, data, 8);
				cr_assert_eq(can_signal_raw(&s, data), reference_raw(&s, data),
					     "order %d start %u length %u", order, start, length);
				can_signal_put(&s, data, val);
				cr_assert_eq(can_signal_raw(&s, data), val & mask,
					     "put/raw order %d start %u length %u", order, start,
					     length);
				cr_assert_eq(reference_raw(&s, data), val & mask);
				/* Putting the old value back restores every other bit too. */
				memcpy(again, data, 8);
				can_signal_put(&s, again, reference_raw(&s, before));
				cr_assert_arr_eq(again, before, 8, "order %d start %u length %u",
						 order, start, length);
				checked++;
			}
		}
	}
	/* Intel: sum over start of (64 - start) = 2080; Motorola fits the same count. */
	cr_assert_eq(checked, 2 * 2080);
}

Test(canbus, put_known_vectors)
{
	uint8_t data[8] = { 0 };
	struct can_signal s = motorola(7, 12, false);
	struct can_signal speed = intel(24, 16, false);

	can_signal_put(&s, data, 0xABC);
	cr_assert_eq(data[0], 0xAB);
	cr_assert_eq(data[1], 0xC0);
	/* 1500 rpm at 0.125 rpm/bit = 12000 = 0x2EE0, little-endian in bytes 3, 4. */
	can_signal_put(&speed, data, 12000);
	cr_assert_eq(data[3], 0xE0);
	cr_assert_eq(data[4], 0x2E);
	/* A negative value is stored as its low bits. */
	s = intel(40, 4, true);
	can_signal_put(&s, data, (uint64_t)-3);
	cr_assert_eq(data[5], 0x0D);
	cr_assert_eq(can_signal_signed(&s, can_signal_raw(&s, data)), -3);
}

Test(canbus, out_of_frame_signals_are_harmless)
{
	uint8_t data[8];
	struct can_signal s = motorola(15, 64, false);

	memcpy(data, frame, 8);
	cr_assert_eq(can_signal_raw(&s, data), 0);
	can_signal_put(&s, data, ~0ull);
	cr_assert_arr_eq(data, frame, 8);
	s = intel(200, 3, false);
	cr_assert_eq(can_signal_raw(&s, data), 0);
}

Test(canbus, multiplexed_message)
{
	/* DIAG_MUX: Page M 0|8@1+, Page0_Voltage m0 8|16@1+ (0.01), Page1_Temp m1 8|8@1-. */
	struct can_signal page = intel(0, 8, false);
	struct can_signal voltage = intel(8, 16, false);
	struct can_signal temp = intel(8, 8, true);
	const uint8_t p0[8] = { 0x00, 0xB0, 0x04 }; /* 0x04B0 = 1200 -> 12.00 V */
	const uint8_t p1[8] = { 0x01, 0xF6 };	    /* 0xF6 = -10 degC */

	cr_assert_eq(can_signal_raw(&page, p0), 0);
	cr_assert_float_eq(can_signal_raw(&voltage, p0) * 0.01, 12.0, 1e-9);
	cr_assert_eq(can_signal_raw(&page, p1), 1);
	cr_assert_eq(can_signal_signed(&temp, can_signal_raw(&temp, p1)), -10);
}

Test(canbus, j1939_ids)
{
	struct j1939_id j;

	/* EEC1: 0x0CF00400 = prio 011, DP 0, PF 0xF0 (PDU2), PS 0x04, SA 0x00. */
	j1939_decode(0x0CF00400, &j);
	cr_assert_eq(j.priority, 3);
	cr_assert_eq(j.pgn, 61444); /* 0xF004 */
	cr_assert_eq(j.source, 0);
	cr_assert_eq(j.dest, 0xFF);
	cr_assert_eq(j1939_encode(&j), 0x0CF00400);

	/* Request: 0x18EA00FE = prio 110, PF 0xEA (PDU1), dest 0x00, SA 0xFE. */
	j1939_decode(0x18EA00FE, &j);
	cr_assert_eq(j.priority, 6);
	cr_assert_eq(j.pgn, 59904); /* 0xEA00: PS is not part of it */
	cr_assert_eq(j.dest, 0);
	cr_assert_eq(j.source, 0xFE);
	cr_assert_eq(j1939_encode(&j), 0x18EA00FE);

	/* PDU1 to a specific node: dest 0x17 goes back into PS. */
	j = (struct j1939_id){ .priority = 6, .pgn = 0xEA00, .source = 0xF9, .dest = 0x17 };
	cr_assert_eq(j1939_encode(&j), 0x18EA17F9);

	/* Data page 1: 0x19FECA00 -> PGN 0x1FECA = 130762. */
	j1939_decode(0x19FECA00, &j);
	cr_assert_eq(j.pgn, 0x1FECA);
	cr_assert_eq(j.priority, 6);
	cr_assert_eq(j1939_encode(&j), 0x19FECA00);

	/* CCVS1 from SA 0x21. */
	j1939_decode(0x18FEF121, &j);
	cr_assert_eq(j.pgn, 65265);
	cr_assert_eq(j.source, 0x21);
}

/* ---- SLCAN ---- */

static enum slcan_kind parse(const char *line, struct slcan_event *ev)
{
	return slcan_parse_line(line, strlen(line), ev);
}

Test(canbus, slcan_standard_and_extended_frames)
{
	struct slcan_event ev;

	cr_assert_eq(parse("t1232AABB", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.msg.id, 0x123);
	cr_assert_not(ev.msg.extended);
	cr_assert_not(ev.msg.rtr);
	cr_assert_eq(ev.msg.dlc, 2);
	cr_assert_eq(ev.msg.data[0], 0xAA);
	cr_assert_eq(ev.msg.data[1], 0xBB);
	cr_assert_eq(ev.msg.data[2], 0);
	cr_assert_eq(ev.timestamp_ms, -1);

	cr_assert_eq(parse("T0CF004008F1FF7DDE03B80FFF", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.msg.id, 0x0CF00400);
	cr_assert(ev.msg.extended);
	cr_assert_eq(ev.msg.dlc, 8);
	cr_assert_eq(ev.msg.data[3], 0xDE);
	cr_assert_eq(ev.msg.data[7], 0xFF);

	cr_assert_eq(parse("t7FF0", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.msg.id, 0x7FF);
	cr_assert_eq(ev.msg.dlc, 0);
	cr_assert_eq(parse("T1FFFFFFF0", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.msg.id, 0x1FFFFFFF);
}

Test(canbus, slcan_lowercase_and_timestamps)
{
	struct slcan_event ev;

	cr_assert_eq(parse("t1a21ff", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.msg.id, 0x1A2);
	cr_assert_eq(ev.msg.data[0], 0xFF);
	cr_assert_eq(parse("t12310AEA5F", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.timestamp_ms, 59999);
	cr_assert_eq(ev.msg.data[0], 0x0A);
	cr_assert_eq(parse("T0cf004000ea5f", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.timestamp_ms, 0xEA5F);
	cr_assert_eq(parse("t12300000", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.timestamp_ms, 0);
	cr_assert_eq(parse("t12310AEA60", &ev), SLCAN_MALFORMED); /* 60000 ms is past the wrap */
	cr_assert_eq(ev.timestamp_ms, -1);
}

Test(canbus, slcan_remote_frames)
{
	struct slcan_event ev;

	cr_assert_eq(parse("r1230", &ev), SLCAN_FRAME);
	cr_assert(ev.msg.rtr);
	cr_assert_eq(ev.msg.dlc, 0);
	cr_assert_eq(parse("r1238", &ev), SLCAN_FRAME); /* asks for 8 bytes, carries none */
	cr_assert_eq(ev.msg.dlc, 8);
	cr_assert_eq(ev.msg.data[0], 0);
	cr_assert_eq(parse("R0CF004008", &ev), SLCAN_FRAME);
	cr_assert(ev.msg.rtr);
	cr_assert(ev.msg.extended);
	cr_assert_eq(parse("r12381234", &ev), SLCAN_FRAME);
	cr_assert_eq(ev.timestamp_ms, 0x1234);
	cr_assert_eq(parse("r123812", &ev), SLCAN_MALFORMED);
}

Test(canbus, slcan_replies)
{
	struct slcan_event ev;

	cr_assert_eq(parse("", &ev), SLCAN_OK);
	cr_assert_eq(parse("\a", &ev), SLCAN_ERROR);
	cr_assert_eq(parse("z", &ev), SLCAN_TX_ACK);
	cr_assert_eq(parse("Z", &ev), SLCAN_TX_ACK);
	cr_assert_eq(parse("V1013", &ev), SLCAN_VERSION);
	cr_assert_str_eq(ev.text, "1013");
	cr_assert_eq(parse("NA1B2", &ev), SLCAN_SERIAL);
	cr_assert_str_eq(ev.text, "A1B2");
	cr_assert_eq(parse("F8a", &ev), SLCAN_STATUS);
	cr_assert_eq(ev.status, 0x8A);
	cr_assert_eq(parse("F00", &ev), SLCAN_STATUS);
	cr_assert_eq(ev.status, 0);
	cr_assert_eq(slcan_parse_line(NULL, 5, &ev), SLCAN_OK);
}

Test(canbus, slcan_malformed)
{
	static const char *const bad[] = {
		"t8001",		       /* standard id above 0x7FF */
		"T200000000",		       /* extended id above 0x1FFFFFFF */
		"t1239",		       /* dlc 9 */
		"t123A",		       /* dlc not a digit */
		"t12G0",		       /* not hex */
		"t1232AA",		       /* data short */
		"t1232AABBC",		       /* one digit too many */
		"t1232AABB12",		       /* two: neither data nor a timestamp */
		"t1232AABB12345",	       /* five */
		"t1232AAXB",		       /* data not hex */
		"t12",			       /* no dlc */
		"T1234567",		       /* short extended id */
		"T0CF004009",		       /* dlc 9 extended */
		"t1231FF12G4",		       /* timestamp not hex */
		"z1",			       /* ack with trailing bytes */
		"V10",			       /* short version */
		"V10133",		       /* long version */
		"N12 4",		       /* serial not alphanumeric */
		"F1",			       /* short status */
		"Fzz",			       /* status not hex */
		"x",			       /* unknown */
		"\a\a",			       /* two BEL in one line */
		" t1230",		       /* leading space */
		"T0CF00400811223344556677889", /* 8 bytes plus one */
	};
	struct slcan_event ev;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(bad[i], &ev), SLCAN_MALFORMED, "\"%s\" should be malformed",
			     bad[i]);
		cr_assert_eq(ev.msg.id, 0, "\"%s\" left an id", bad[i]);
		cr_assert_eq(ev.timestamp_ms, -1);
	}
	/* The text is the start of the line, made printable. */
	cr_assert_eq(slcan_parse_line("\x01q\xffw", 4, &ev), SLCAN_MALFORMED);
	cr_assert_str_eq(ev.text, "?q?w");
	cr_assert_eq(parse("T0CF00400811223344556677889", &ev), SLCAN_MALFORMED);
	cr_assert_str_eq(ev.text, "T0CF00400811223344556677889");
}

#define MAX_EVENTS 64

struct collected {
	struct slcan_event ev[MAX_EVENTS];
	size_t n;
};

static void collect(void *ctx, const struct slcan_event *ev)
{
	struct collected *c = ctx;

	if (c->n < MAX_EVENTS)
		c->ev[c->n] = *ev;
	c->n++;
}

static void push_str(struct slcan_parser *p, const char *s, struct collected *c)
{
	slcan_push(p, (const uint8_t *)s, strlen(s), collect, c);
}

Test(canbus, slcan_push_lines_bel_and_split_input)
{
	static const char stream[] = "\r\aV1013\rt1231FF\r\nT0CF004000\rz\rF04\rNABCD\r";
	static const enum slcan_kind want[] = { SLCAN_OK,     SLCAN_ERROR, SLCAN_VERSION,
						SLCAN_FRAME,  SLCAN_FRAME, SLCAN_TX_ACK,
						SLCAN_STATUS, SLCAN_SERIAL };
	size_t nwant = sizeof(want) / sizeof(want[0]);

	/* Whole, then one byte at a time: the same events. */
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct slcan_parser p;
		struct collected c = { .n = 0 };

		slcan_init(&p);
		if (bytewise) {
			for (size_t i = 0; i < sizeof(stream) - 1; i++)
				slcan_push(&p, (const uint8_t *)stream + i, 1, collect, &c);
		} else {
			push_str(&p, stream, &c);
		}
		cr_assert_eq(c.n, nwant);
		for (size_t i = 0; i < nwant; i++)
			cr_assert_eq(c.ev[i].kind, want[i], "event %zu (bytewise %d)", i, bytewise);
		cr_assert_eq(c.ev[3].msg.id, 0x123);
		cr_assert_eq(c.ev[3].msg.data[0], 0xFF);
		cr_assert_eq(c.ev[4].msg.id, 0x0CF00400);
		cr_assert_eq(p.lines, nwant);
		cr_assert_eq(p.malformed, 0);
	}
}

Test(canbus, slcan_push_torn_line_before_bel)
{
	struct slcan_parser p;
	struct collected c = { .n = 0 };

	slcan_init(&p);
	push_str(&p, "t12\a", &c);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.ev[0].kind, SLCAN_MALFORMED);
	cr_assert_str_eq(c.ev[0].text, "t12");
	cr_assert_eq(c.ev[1].kind, SLCAN_ERROR);
	cr_assert_eq(p.malformed, 1);
}

Test(canbus, slcan_push_overlong_line)
{
	struct slcan_parser p;
	struct collected c = { .n = 0 };
	char big[200];

	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	slcan_init(&p);
	push_str(&p, "t1", &c);
	push_str(&p, big, &c);
	push_str(&p, "\rt1230\r", &c);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.ev[0].kind, SLCAN_MALFORMED);
	cr_assert_eq(strncmp(c.ev[0].text, "t1AAAA", 6), 0);
	cr_assert_eq(c.ev[1].kind, SLCAN_FRAME, "the line after an overlong one parses");
	cr_assert_eq(p.lines, 2);
	cr_assert_eq(p.malformed, 1);
	cr_assert_eq(p.len, 0);
	cr_assert_not(p.overflow);
}

Test(canbus, slcan_push_garbage)
{
	struct slcan_parser p;
	struct collected c = { .n = 0 };
	uint64_t rng = 12345;
	uint64_t ends = 0;
	uint8_t buf[4096];

	slcan_init(&p);
	for (int round = 0; round < 64; round++) {
		for (size_t i = 0; i < sizeof(buf); i++) {
			buf[i] = (uint8_t)next_random(&rng);
			ends += buf[i] == '\r' || buf[i] == '\a';
		}
		slcan_push(&p, buf, sizeof(buf), collect, &c);
	}
	/* One event per CR or BEL, plus one per torn line before a BEL. */
	cr_assert_geq(p.lines, ends);
	cr_assert_eq(c.n, p.lines);
	cr_assert_gt(p.malformed, 0);
	slcan_push(&p, NULL, 0, NULL, NULL);
	/* Whatever was left ends at the next CR; then the parser is in step again. */
	push_str(&p, "\r", &c);
	c.n = 0;
	push_str(&p, "t1230\r", &c);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.ev[0].kind, SLCAN_FRAME);
}

/* Field by field: struct padding holds nothing. */
static bool msg_eq(const struct can_msg *a, const struct can_msg *b)
{
	return a->id == b->id && a->extended == b->extended && a->rtr == b->rtr &&
	       a->dlc == b->dlc && memcmp(a->data, b->data, sizeof(a->data)) == 0;
}

Test(canbus, slcan_format_and_back)
{
	struct can_msg msgs[] = {
		{ .id = 0x123, .dlc = 2, .data = { 0xAA, 0xBB } },
		{ .id = 0x0CF00400,
		  .extended = true,
		  .dlc = 8,
		  .data = { 0xF1, 0xFF, 0x7D, 0xDE, 0x03, 0xB8, 0x0F, 0xFF } },
		{ .id = 0x7FF, .dlc = 0 },
		{ .id = 0x100, .rtr = true, .dlc = 4 },
		{ .id = 0x1FFFFFFF, .extended = true, .rtr = true, .dlc = 8 },
	};
	static const char *const want[] = { "t1232AABB\r", "T0CF004008F1FF7DDE03B80FFF\r",
					    "t7FF0\r", "r1004\r", "R1FFFFFFF8\r" };
	char line[SLCAN_LINE_MAX];

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct slcan_event ev;
		size_t n = slcan_format(&msgs[i], line);

		cr_assert_str_eq(line, want[i]);
		cr_assert_eq(n, strlen(want[i]));
		cr_assert_eq(slcan_parse_line(line, n - 1, &ev), SLCAN_FRAME);
		cr_assert(msg_eq(&ev.msg, &msgs[i]), "%s", want[i]);
	}
	/* A dlc above 8 is written as 8, never past the data. */
	msgs[0].dlc = 15;
	cr_assert_eq(slcan_format(&msgs[0], line), 22);
	cr_assert_eq(line[4], '8');
}

Test(canbus, slcan_bitrates)
{
	static const int rates[] = { 10000,  20000,  50000,  100000, 125000,
				     250000, 500000, 800000, 1000000 };
	char cmd[8];

	for (int i = 0; i < 9; i++) {
		char want[4] = { 'S', (char)('0' + i), '\r', '\0' };

		cr_assert_eq(slcan_bitrate_cmd(rates[i], cmd, sizeof(cmd)), 3);
		cr_assert_str_eq(cmd, want);
	}
	cr_assert_eq(slcan_bitrate_cmd(500000, cmd, sizeof(cmd)), 3);
	cr_assert_str_eq(cmd, "S6\r");
	cr_assert_eq(slcan_bitrate_cmd(83333, cmd, sizeof(cmd)), -1);
	cr_assert_eq(slcan_bitrate_cmd(0, cmd, sizeof(cmd)), -1);
	cr_assert_eq(slcan_bitrate_cmd(-500000, cmd, sizeof(cmd)), -1);
	cr_assert_eq(slcan_bitrate_cmd(500000, cmd, 3), -1); /* no room for the NUL */
}
