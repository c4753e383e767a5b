/* test_framer.c: every framing mode and checksum against known frames, pushed whole, byte by byte
 * and split at every point; counters exact; bad configs refused with a reason. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../adapters/framer.h"
#include "../../base/base.h"

/* The bodies handed out, escaped and each followed by '|', so one string compare checks all. */
struct got {
	char text[8192];
	size_t used;
};

static void collect(void *ctx, const uint8_t *body, size_t len)
{
	struct got *g = ctx;

	for (size_t i = 0; i < len; i++) {
		int room = (int)(sizeof(g->text) - g->used);
		int n = body[i] >= 0x20 && body[i] < 0x7f && body[i] != '\\' && body[i] != '|'
				? snprintf(g->text + g->used, (size_t)room, "%c", body[i])
				: snprintf(g->text + g->used, (size_t)room, "\\x%02x", body[i]);

		cr_assert(n > 0 && n < room, "collector full");
		g->used += (size_t)n;
	}
	cr_assert(g->used + 1 < sizeof(g->text), "collector full");
	g->text[g->used++] = '|';
	g->text[g->used] = '\0';
}

static void set_mark(uint8_t *mark, size_t *len, const char *text)
{
	int n = framer_parse_bytes(text, mark, FRAMER_MARK_MAX);

	cr_assert(n > 0, "bad marker in the test: %s", text);
	*len = (size_t)n;
}

static void assert_stats(const struct framer_stats *got, const struct framer_stats *want,
			 const char *how)
{
	cr_assert_eq(got->bytes, want->bytes, "%s: bytes %llu, expected %llu", how,
		     (unsigned long long)got->bytes, (unsigned long long)want->bytes);
	cr_assert_eq(got->frames, want->frames, "%s: frames %llu, expected %llu", how,
		     (unsigned long long)got->frames, (unsigned long long)want->frames);
	cr_assert_eq(got->overlong, want->overlong, "%s: overlong %llu, expected %llu", how,
		     (unsigned long long)got->overlong, (unsigned long long)want->overlong);
	cr_assert_eq(got->bad_checksum, want->bad_checksum, "%s: bad_checksum %llu, expected %llu",
		     how, (unsigned long long)got->bad_checksum,
		     (unsigned long long)want->bad_checksum);
	cr_assert_eq(got->bad_length, want->bad_length, "%s: bad_length %llu, expected %llu", how,
		     (unsigned long long)got->bad_length, (unsigned long long)want->bad_length);
	cr_assert_eq(got->garbage, want->garbage, "%s: garbage %llu, expected %llu", how,
		     (unsigned long long)got->garbage, (unsigned long long)want->garbage);
}

/* Pushes s[0..n) cut at 'cut1' and 'cut2' (0 <= cut1 <= cut2 <= n), or byte by byte when
 * 'bytewise'; checks the bodies and the counters. */
static void run_once(const struct framer_config *cfg, const uint8_t *s, size_t n, size_t cut1,
		     size_t cut2, bool bytewise, const char *want_text,
		     const struct framer_stats *want)
{
	struct framer f;
	struct got g = { .used = 0 };
	char how[64];
	const char *why = NULL;

	cr_assert_eq(framer_init(&f, cfg, &why), 0, "config refused: %s", why);
	if (bytewise) {
		snprintf(how, sizeof(how), "byte by byte");
		for (size_t i = 0; i < n; i++)
			framer_push(&f, s + i, 1, collect, &g);
	} else {
		snprintf(how, sizeof(how), "cut at %zu and %zu of %zu", cut1, cut2, n);
		framer_push(&f, s, cut1, collect, &g);
		framer_push(&f, s + cut1, cut2 - cut1, collect, &g);
		framer_push(&f, s + cut2, n - cut2, collect, &g);
	}
	cr_assert_str_eq(g.text, want_text, "%s: bodies \"%s\", expected \"%s\"", how, g.text,
			 want_text);
	assert_stats(&f.stats, want, how);
	framer_free(&f);
}

/* The same stream whole, byte by byte, and cut in two and in three at every point. */
static void expect_stream(const struct framer_config *cfg, const void *stream, size_t n,
			  const char *want_text, struct framer_stats want)
{
	const uint8_t *s = stream;

	want.bytes = n;
	run_once(cfg, s, n, 0, 0, true, want_text, &want);
	for (size_t a = 0; a <= n; a++) {
		size_t step = n > 80 ? 7 : 1; /* three cuts in long streams: a sample */

		for (size_t b = a; b <= n; b += a == 0 || b == n ? 1 : step)
			run_once(cfg, s, n, a, b, false, want_text, &want);
	}
}

#define STREAM(lit) lit, sizeof(lit) - 1

static struct framer_config cfg_delimiter(const char *delim, size_t max_len)
{
	struct framer_config c = { .mode = FRAME_DELIMITER, .max_len = max_len };

	set_mark(c.delim, &c.delim_len, delim);
	return c;
}

static struct framer_config cfg_start_end(const char *start, const char *end, size_t max_len)
{
	struct framer_config c = { .mode = FRAME_START_END, .max_len = max_len };

	set_mark(c.start, &c.start_len, start);
	if (end != NULL)
		set_mark(c.end, &c.end_len, end);
	return c;
}

/* NMEA 0183: "$", fields, "*", two hex digits of the xor of the bytes between, CR LF. */
static struct framer_config cfg_nmea_delimiter(void)
{
	struct framer_config c = cfg_delimiter("\\r\\n", 82);

	c.csum = CSUM_XOR8;
	c.csum_encoding = CSUM_HEX;
	c.csum_from = 1; /* the '$' is not covered */
	set_mark(c.csum_sep, &c.csum_sep_len, "*");
	return c;
}

#define GGA_FIELDS "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
#define RMC_FIELDS "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
#define GGA	   "$" GGA_FIELDS
#define RMC	   "$" RMC_FIELDS

/* ---- checksums ---- */

Test(framer, checksum_known_vectors)
{
	const uint8_t *check = (const uint8_t *)"123456789";

	cr_assert_eq(csum_sum8(check, 9), 0xdd);
	cr_assert_eq(csum_xor8(check, 9), 0x31);
	cr_assert_eq(csum_crc16_modbus(check, 9), 0x4b37);
	cr_assert_eq(csum_crc16_ccitt(check, 9), 0x29b1);
	cr_assert_eq(csum_compute(CSUM_SUM8, check, 9), 0xdd);
	cr_assert_eq(csum_compute(CSUM_XOR8, check, 9), 0x31);
	cr_assert_eq(csum_compute(CSUM_CRC16_MODBUS, check, 9), 0x4b37);
	cr_assert_eq(csum_compute(CSUM_CRC16_CCITT, check, 9), 0x29b1);
	cr_assert_eq(csum_compute(CSUM_NONE, check, 9), 0);
	/* Empty input leaves the initial value. */
	cr_assert_eq(csum_crc16_modbus(check, 0), 0xffff);
	cr_assert_eq(csum_crc16_ccitt(check, 0), 0xffff);
	cr_assert_eq(csum_sum8(check, 0), 0);
}

Test(framer, checksum_modbus_rtu_request)
{
	/* Read 10 holding registers from 0 on unit 1: the CRC goes out as C5 CD. */
	const uint8_t req[] = { 0x01, 0x03, 0x00, 0x00, 0x00, 0x0a };

	cr_assert_eq(csum_crc16_modbus(req, sizeof(req)), 0xcdc5);
}

Test(framer, checksum_nmea_sentences)
{
	cr_assert_eq(csum_xor8((const uint8_t *)GGA + 1, strlen(GGA) - 1), 0x47);
	cr_assert_eq(csum_xor8((const uint8_t *)RMC + 1, strlen(RMC) - 1), 0x6a);
}

Test(framer, checksum_widths)
{
	cr_assert_eq(csum_width(CSUM_NONE), 0);
	cr_assert_eq(csum_width(CSUM_SUM8), 1);
	cr_assert_eq(csum_width(CSUM_XOR8), 1);
	cr_assert_eq(csum_width(CSUM_CRC16_MODBUS), 2);
	cr_assert_eq(csum_width(CSUM_CRC16_CCITT), 2);
}

Test(framer, names)
{
	cr_assert_str_eq(frame_mode_names[FRAME_DELIMITER], "delimiter");
	cr_assert_str_eq(frame_mode_names[FRAME_FIXED], "fixed");
	cr_assert_str_eq(frame_mode_names[FRAME_START_END], "start_end");
	cr_assert_null(frame_mode_names[3]);
	cr_assert_str_eq(checksum_names[CSUM_NONE], "none");
	cr_assert_str_eq(checksum_names[CSUM_SUM8], "sum8");
	cr_assert_str_eq(checksum_names[CSUM_XOR8], "xor8");
	cr_assert_str_eq(checksum_names[CSUM_CRC16_MODBUS], "crc16_modbus");
	cr_assert_str_eq(checksum_names[CSUM_CRC16_CCITT], "crc16_ccitt");
	cr_assert_null(checksum_names[5]);
}

/* ---- framer_parse_bytes ---- */

Test(framer, parse_bytes_escapes)
{
	uint8_t out[8];

	cr_assert_eq(framer_parse_bytes("\\r\\n", out, sizeof(out)), 2);
	cr_assert(out[0] == '\r' && out[1] == '\n');
	cr_assert_eq(framer_parse_bytes("\\x02", out, sizeof(out)), 1);
	cr_assert_eq(out[0], 0x02);
	cr_assert_eq(framer_parse_bytes("\\xfF\\t", out, sizeof(out)), 2);
	cr_assert(out[0] == 0xff && out[1] == '\t');
	cr_assert_eq(framer_parse_bytes("a\\\\b", out, sizeof(out)), 3);
	cr_assert(out[0] == 'a' && out[1] == '\\' && out[2] == 'b');
	cr_assert_eq(framer_parse_bytes("\\x000", out, sizeof(out)), 2, "\\xHH takes two digits");
	cr_assert(out[0] == 0 && out[1] == '0');
	cr_assert_eq(framer_parse_bytes("12345678", out, 8), 8);
}

Test(framer, parse_bytes_refuses)
{
	uint8_t out[4] = { 0x55, 0x55, 0x55, 0x55 };
	const char *bad[] = { "", "\\", "\\q", "\\x", "\\x4", "\\xg0", "ab\\0", "abcde" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(framer_parse_bytes(bad[i], out, sizeof(out)), -1, "\"%s\" accepted",
			     bad[i]);
		cr_assert_eq(out[0], 0x55, "\"%s\" wrote to out", bad[i]);
	}
	cr_assert_eq(framer_parse_bytes(NULL, out, sizeof(out)), -1);
	cr_assert_eq(framer_parse_bytes("a", out, 0), -1);
}

/* ---- FRAME_DELIMITER ---- */

Test(framer, delimiter_lines)
{
	struct framer_config c = cfg_delimiter("\\r\\n", 64);

	expect_stream(&c, STREAM("hello\r\nworld\r\na\rb\nc\r\n"), "hello|world|a\\x0db\\x0ac|",
		      (struct framer_stats){ .frames = 3 });
}

Test(framer, delimiter_split_over_two_pushes)
{
	struct framer_config c = cfg_delimiter("\\r\\n", 64);
	struct framer f;
	struct got g = { .used = 0 };

	cr_assert_eq(framer_init(&f, &c, NULL), 0);
	framer_push(&f, (const uint8_t *)"abc\r", 4, collect, &g);
	cr_assert_eq(f.stats.frames, 0, "a lone CR is not the delimiter");
	framer_push(&f, (const uint8_t *)"\n", 1, collect, &g);
	cr_assert_eq(f.stats.frames, 1);
	cr_assert_str_eq(g.text, "abc|");
	framer_free(&f);
}

Test(framer, delimiter_empty_frames_skipped)
{
	struct framer_config c = cfg_delimiter("\\r\\n", 64);

	/* Blank lines are neither frames nor garbage nor errors. */
	expect_stream(&c, STREAM("\r\n\r\nA\r\n\r\n\r\nB\r\n"), "A|B|",
		      (struct framer_stats){ .frames = 2 });
}

Test(framer, delimiter_self_overlapping)
{
	struct framer_config c = cfg_delimiter("aab", 64);

	/* "xaaab": the delimiter starts one 'a' later than a naive match would try. */
	expect_stream(&c, STREAM("xaaabyaab"), "xa|y|", (struct framer_stats){ .frames = 2 });
}

Test(framer, delimiter_overlong)
{
	struct framer_config c = cfg_delimiter("\\r\\n", 8);

	/* 6 + CR LF fits max_len 8; 7 + CR LF does not; one count per overlong line however
	 * long; the CR LF that straddles the limit still ends the overlong line. */
	expect_stream(&c,
		      STREAM("123456\r\n1234567\r\nok\r\n"
			     "0123456789abcdefghijklmnopqrstuvwxyz0123456789\r\nyes\r\n"),
		      "123456|ok|yes|", (struct framer_stats){ .frames = 3, .overlong = 2 });
}

Test(framer, delimiter_overlong_long_delimiter)
{
	struct framer_config c = cfg_delimiter("END!", 6);

	/* The delimiter begins inside the bytes that made the frame overlong. */
	expect_stream(&c, STREAM("abcdEND!xEND!abcEND!a"), "x|",
		      (struct framer_stats){
			      .frames = 1,
			      .overlong = 2,
		      });
}

Test(framer, delimiter_nmea_hex_xor8)
{
	struct framer_config c = cfg_nmea_delimiter();

	expect_stream(&c, STREAM(GGA "*47\r\n" RMC "*6a\r\n"), GGA "|" RMC "|",
		      (struct framer_stats){ .frames = 2 });
}

Test(framer, delimiter_nmea_bad)
{
	struct framer_config c = cfg_nmea_delimiter();

	/* Wrong value, not hex, no '*', too short for a checksum (twice): all bad; "$*00" is
	 * a good empty sentence (the xor of nothing is 0); uppercase hex is good too. */
	expect_stream(&c,
		      STREAM(GGA "*48\r\n" GGA "*4G\r\n" GGA "47\r\n"
				 "7\r\n"
				 "*\r\n"
				 "$*00\r\n" RMC "*6A\r\n"),
		      "$|" RMC "|", (struct framer_stats){ .frames = 2, .bad_checksum = 5 });
}

Test(framer, delimiter_crc_ccitt_hex)
{
	struct framer_config c = cfg_delimiter("\\n", 32);

	c.csum = CSUM_CRC16_CCITT;
	c.csum_encoding = CSUM_HEX;
	expect_stream(&c, STREAM("12345678929B1\n12345678929b1\n12345678929B2\nab\n"),
		      "123456789|123456789|",
		      (struct framer_stats){ .frames = 2, .bad_checksum = 2 });
}

/* ---- FRAME_FIXED ---- */

Test(framer, fixed_without_start)
{
	struct framer_config c = { .mode = FRAME_FIXED, .fixed_len = 4, .max_len = 4 };

	/* The trailing "ij" is a frame not yet complete: not counted. */
	expect_stream(&c, STREAM("abcdefghij"), "abcd|efgh|", (struct framer_stats){ .frames = 2 });
}

Test(framer, fixed_modbus_rtu_crc_byte_orders)
{
	const uint8_t wire[] = { 0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd };
	const uint8_t swapped[] = { 0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xcd, 0xc5 };
	struct framer_config c = {
		.mode = FRAME_FIXED, .fixed_len = 8, .max_len = 8, .csum = CSUM_CRC16_MODBUS
	};

	expect_stream(&c, wire, sizeof(wire), "\\x01\\x03\\x00\\x00\\x00\\x0a|",
		      (struct framer_stats){ .frames = 1 });
	expect_stream(&c, swapped, sizeof(swapped), "", (struct framer_stats){ .bad_checksum = 1 });
	c.csum_big_endian = true;
	expect_stream(&c, wire, sizeof(wire), "", (struct framer_stats){ .bad_checksum = 1 });
	expect_stream(&c, swapped, sizeof(swapped), "\\x01\\x03\\x00\\x00\\x00\\x0a|",
		      (struct framer_stats){ .frames = 1 });
}

Test(framer, fixed_start_marker_resync)
{
	struct framer_config c = {
		.mode = FRAME_FIXED, .fixed_len = 6, .max_len = 6, .csum = CSUM_SUM8
	};
	/* AA 55, three data bytes, their sum. A marker inside a frame is data. */
	const uint8_t s[] = { 'x',  'y',  'z',	0xaa, 0xaa, 0x55, 0x01, 0x02, 0x03, 0x06,
			      0xaa, 0x55, 0xaa, 0x55, 0x00, 0xff, 0xaa, 0x55, 0x01, 0x01,
			      0x01, 0x00, 0xaa, 0x55, 0x07, 0x00, 0x00, 0x07, 0xaa };

	set_mark(c.start, &c.start_len, "\\xaa\\x55");
	/* Garbage: "xyz", the first of two AA; the trailing AA is a marker begun. */
	expect_stream(&c, s, sizeof(s), "\\x01\\x02\\x03|\\xaaU\\x00|\\x07\\x00\\x00|",
		      (struct framer_stats){ .frames = 3, .bad_checksum = 1, .garbage = 4 });
}

Test(framer, fixed_partial_marker_fallback)
{
	struct framer_config c = { .mode = FRAME_FIXED, .fixed_len = 5, .max_len = 5 };

	/* "ababc": after "abab" fails on 'a', "ab" may still begin the marker "abc". */
	set_mark(c.start, &c.start_len, "abc");
	expect_stream(&c, STREAM("ababcXYabzabc12"), "XY|12|",
		      (struct framer_stats){ .frames = 2, .garbage = 5 });
}

/* ---- FRAME_START_END, markers only ---- */

Test(framer, start_end_markers)
{
	struct framer_config c = cfg_start_end("\\x02", "\\x03", 16);

	expect_stream(&c, STREAM("noise\x02hello\x03--\x02world\x03\x02\x03"), "hello|world||",
		      (struct framer_stats){ .frames = 3, .garbage = 7 });
}

Test(framer, start_end_restart_on_start)
{
	struct framer_config c = cfg_start_end("<<", ">>", 32);

	/* "<<abc" never ended: garbage. In "<<<" the first two are the marker: a new one
	 * must not overlap the one that opened the frame. */
	expect_stream(&c, STREAM("<<abc<<def>><<<x>>"), "def|<x|",
		      (struct framer_stats){ .frames = 2, .garbage = 5 });
}

Test(framer, start_end_same_marker)
{
	struct framer_config c = cfg_start_end("~", "~", 16);

	/* The end marker is tried first; the 'x' after is garbage. */
	expect_stream(&c, STREAM("~ab~~cd~x"), "ab|cd|",
		      (struct framer_stats){ .frames = 2, .garbage = 1 });
}

Test(framer, start_end_overlong)
{
	struct framer_config c = cfg_start_end("\\x02", "\\x03", 8);

	/* One ended by its end marker, one by the next start marker; 6 + 2 markers fits. */
	expect_stream(&c,
		      STREAM("\x02"
			     "0123456789abcdef\x03"
			     "\x02"
			     "ok\x03"
			     "\x02"
			     "0123456789"
			     "\x02"
			     "123456\x03"),
		      "ok|123456|", (struct framer_stats){ .frames = 2, .overlong = 2 });
}

Test(framer, start_end_nmea_hex)
{
	struct framer_config c = cfg_start_end("$", "\\r\\n", 82);

	c.csum = CSUM_XOR8;
	c.csum_encoding = CSUM_HEX;
	set_mark(c.csum_sep, &c.csum_sep_len, "*");
	expect_stream(&c, STREAM("\r\n" GGA "*47\r\nxx" RMC "*6A\r\n"),
		      GGA_FIELDS "|" RMC_FIELDS "|",
		      (struct framer_stats){ .frames = 2, .garbage = 4 });
}

Test(framer, start_end_body_shorter_than_checksum)
{
	struct framer_config c = cfg_start_end("\\x02", "\\x03", 16);

	c.csum = CSUM_CRC16_MODBUS;
	/* One byte where the CRC needs two; no bytes at all. */
	expect_stream(&c, STREAM("\x02\x01\x03\x02\x03"), "",
		      (struct framer_stats){ .bad_checksum = 2 });
}

/* ---- FRAME_START_END with a length field ---- */

/* 02, payload length, payload, CRC-16/MODBUS low byte first over length and payload, 03. */
static size_t len_frame(uint8_t *out, const char *payload, size_t n)
{
	uint16_t crc;

	out[0] = 0x02;
	out[1] = (uint8_t)n;
	memcpy(out + 2, payload, n);
	crc = csum_crc16_modbus(out + 1, n + 1);
	out[2 + n] = (uint8_t)(crc & 0xff);
	out[3 + n] = (uint8_t)(crc >> 8);
	out[4 + n] = 0x03;
	return n + 5;
}

static struct framer_config cfg_len_frame(void)
{
	struct framer_config c = cfg_start_end("\\x02", "\\x03", 24);

	c.has_len_field = true;
	c.len_offset = 0;
	c.len_size = 1;
	c.len_adjust = 2; /* the CRC follows the payload */
	c.csum = CSUM_CRC16_MODBUS;
	return c;
}

Test(framer, length_field_crc_end)
{
	struct framer_config c = cfg_len_frame();
	uint8_t s[128];
	size_t n = 0;

	n += len_frame(s + n, "\x10\x20\x30", 3);
	memcpy(s + n, "zz", 2); /* garbage */
	n += 2;
	n += len_frame(s + n, "\x02\x03\x02", 3); /* markers inside: the length governs */
	n += len_frame(s + n, "", 0);
	expect_stream(&c, s, n, "\\x03\\x10 0|\\x03\\x02\\x03\\x02|\\x00|",
		      (struct framer_stats){ .frames = 3, .garbage = 2 });
}

Test(framer, length_field_bad)
{
	struct framer_config c = cfg_len_frame();
	uint8_t s[128];
	size_t n = 0;

	/* Length 200 is beyond max_len: bad_length; what follows up to the next 02 is garbage. */
	memcpy(s + n,
	       "\x02\xc8"
	       "abc",
	       5);
	n += 5;
	n += len_frame(s + n, "ok", 2);
	/* The end marker missing after the length: bad_length. */
	n += len_frame(s + n, "no", 2);
	s[n - 1] = 'X';
	n += len_frame(s + n, "go", 2);
	/* A bad CRC. */
	n += len_frame(s + n, "crc", 3);
	s[n - 2] ^= 1;
	expect_stream(&c, s, n, "\\x02ok|\\x02go|",
		      (struct framer_stats){
			      .frames = 2, .bad_length = 2, .bad_checksum = 1, .garbage = 3 });
}

Test(framer, length_field_too_short)
{
	struct framer_config c = cfg_len_frame();

	c.len_adjust = -3; /* any value below 2 leaves less than the length field itself */
	c.csum = CSUM_NONE;
	expect_stream(&c, STREAM("\x02\x01\x03\x02\x04x\x03"), "\\x04x|",
		      (struct framer_stats){ .frames = 1, .bad_length = 1, .garbage = 1 });
}

/* A5, type, 2-byte length of the whole body (type, length, data, CRC), data, CRC-CCITT high
 * byte first; no end marker. */
static size_t len16_frame(uint8_t *out, const char *data, size_t n, bool little)
{
	size_t body = 1 + 2 + n + 2;
	uint16_t crc;

	out[0] = 0xa5;
	out[1] = 0x07;
	out[2] = (uint8_t)(little ? body & 0xff : body >> 8);
	out[3] = (uint8_t)(little ? body >> 8 : body & 0xff);
	memcpy(out + 4, data, n);
	crc = csum_crc16_ccitt(out + 1, body - 2);
	out[4 + n] = (uint8_t)(crc >> 8);
	out[5 + n] = (uint8_t)(crc & 0xff);
	return 1 + body;
}

static void check_len16(bool little)
{
	struct framer_config c = cfg_start_end("\\xa5", NULL, 300);
	char data[260];
	uint8_t s[700];
	size_t n = 0;
	char want[32];

	c.has_len_field = true;
	c.len_offset = 1;
	c.len_size = 2;
	c.len_little_endian = little;
	c.len_adjust = -3; /* the length counts the type and itself */
	c.csum = CSUM_CRC16_CCITT;
	c.csum_big_endian = true;
	memset(data, 'd', sizeof(data));
	/* 260 data bytes: the length needs both of its bytes. */
	n += len16_frame(s + n, data, sizeof(data), little);
	n += len16_frame(s + n, "hi", 2, little);
	n += len16_frame(s + n, "hi", 2, !little); /* 0x0007 read the other way: beyond max_len */
	snprintf(want, sizeof(want), "\\x07\\x%02x\\x%02xhi|", little ? 7 : 0, little ? 0 : 7);
	{
		struct framer f;
		struct got g = { .used = 0 };

		cr_assert_eq(framer_init(&f, &c, NULL), 0);
		framer_push(&f, s, n, collect, &g);
		cr_assert_eq(f.stats.frames, 2);
		cr_assert_eq(f.stats.bad_length, 1);
		cr_assert_eq(f.stats.garbage, 4,
			     "garbage %llu: expected the 4 bytes after the bad header",
			     (unsigned long long)f.stats.garbage);
		cr_assert(strstr(g.text, want) != NULL, "%s not in %s", want, g.text);
		framer_free(&f);
	}
}

Test(framer, length_field_16_big_endian)
{
	check_len16(false);
}

Test(framer, length_field_16_little_endian)
{
	check_len16(true);
}

Test(framer, length_field_16_split)
{
	struct framer_config c = cfg_start_end("\\xa5", NULL, 64);
	uint8_t s[64];
	size_t n = 0;

	c.has_len_field = true;
	c.len_offset = 1;
	c.len_size = 2;
	c.len_adjust = -3;
	c.csum = CSUM_CRC16_CCITT;
	c.csum_big_endian = true;
	n += len16_frame(s + n, "ab", 2, false);
	s[n++] = '#';
	n += len16_frame(s + n, "\xa5\xa5", 2, false);
	expect_stream(&c, s, n, "\\x07\\x00\\x07ab|\\x07\\x00\\x07\\xa5\\xa5|",
		      (struct framer_stats){ .frames = 2, .garbage = 1 });
}

/* ---- life cycle ---- */

Test(framer, reset_keeps_counters)
{
	struct framer_config c = cfg_delimiter("\\n", 16);
	struct framer f;
	struct got g = { .used = 0 };

	cr_assert_eq(framer_init(&f, &c, NULL), 0);
	framer_push(&f, (const uint8_t *)"one\nhalf", 8, collect, &g);
	framer_reset(&f);
	framer_push(&f, (const uint8_t *)"two\n", 4, collect, &g);
	cr_assert_str_eq(g.text, "one|two|");
	cr_assert_eq(f.stats.frames, 2);
	cr_assert_eq(f.stats.bytes, 12);
	framer_free(&f);
	framer_free(&f); /* twice is harmless */
}

Test(framer, zeroed_framer_is_inert)
{
	struct framer f;

	memset(&f, 0, sizeof(f));
	framer_push(&f, (const uint8_t *)"x\n", 2, collect, NULL);
	cr_assert_eq(f.stats.bytes, 0);
	framer_free(&f);
}

Test(framer, no_callback_still_counts)
{
	struct framer_config c = cfg_delimiter("\\n", 16);
	struct framer f;

	cr_assert_eq(framer_init(&f, &c, NULL), 0);
	framer_push(&f, (const uint8_t *)"a\nb\n", 4, NULL, NULL);
	cr_assert_eq(f.stats.frames, 2);
	framer_free(&f);
}

/* ---- bad configs ---- */

static void expect_refused(const struct framer_config *c, const char *want_why)
{
	struct framer f;
	const char *why = NULL;

	memset(&f, 0x5a, sizeof(f));
	cr_assert_eq(framer_init(&f, c, &why), GD_EINVAL, "accepted; expected \"%s\"", want_why);
	cr_assert_not_null(why);
	cr_assert_str_eq(why, want_why);
	cr_assert_eq(f.len, (size_t)0x5a5a5a5a5a5a5a5aULL, "a failed init changed the framer");
	cr_assert_eq(framer_init(&f, c, NULL), GD_EINVAL, "why may be NULL");
}

Test(framer, config_refused_with_reason)
{
	struct framer_config c = { .mode = FRAME_DELIMITER, .max_len = 64 };

	expect_refused(&c, "delimiter is empty");
	c = cfg_delimiter("\\r\\n", 0);
	expect_refused(&c, "max_len (0) is not between 1 and 65536");
	c.max_len = 65537;
	expect_refused(&c, "max_len (65537) is not between 1 and 65536");
	c = cfg_delimiter("\\r\\n", 3);
	c.csum = CSUM_CRC16_MODBUS;
	expect_refused(&c, "max_len (3) is shorter than the delimiter and checksum (4 bytes)");
	c = cfg_delimiter("\\r\\n", 64);
	c.delim_len = 9;
	expect_refused(&c, "delimiter is longer than 8 bytes");
	c = cfg_delimiter("\\r\\n", 64);
	c.csum_from = 1;
	expect_refused(&c, "csum_from (1) is set but checksum is none");
	c.csum = CSUM_XOR8;
	c.csum_from = 70;
	expect_refused(&c, "csum_from (70) is beyond the longest body (61 bytes)");
	c = cfg_delimiter("\\r\\n", 64);
	c.fixed_len = 10;
	expect_refused(&c, "fixed_len is set but mode is delimiter (only fixed uses it)");
	c = cfg_delimiter("\\r\\n", 64);
	c.mode = (enum frame_mode)7;
	expect_refused(&c, "mode (7) is not one of delimiter, fixed, start_end");
	c.mode = FRAME_DELIMITER;
	c.csum = (enum checksum_kind)9;
	expect_refused(&c,
		       "checksum (9) is not one of none, sum8, xor8, crc16_modbus, crc16_ccitt");
	c.csum = CSUM_XOR8;
	c.csum_encoding = (enum checksum_encoding)2;
	expect_refused(&c, "checksum_encoding (2) is not binary or hex");
	c.csum_encoding = CSUM_HEX;
	c.csum_sep_len = 9;
	expect_refused(&c, "csum_sep is longer than 8 bytes");
	c.csum = CSUM_NONE;
	c.csum_sep_len = 1;
	expect_refused(&c, "csum_sep is set but checksum is none");
}

Test(framer, config_unused_settings_refused)
{
	struct framer_config c = cfg_delimiter("\\r\\n", 64);

	set_mark(c.start, &c.start_len, "$");
	expect_refused(&c, "start is set but mode is delimiter (only fixed and start_end use it)");
	c = (struct framer_config){ .mode = FRAME_FIXED, .fixed_len = 4, .max_len = 4 };
	set_mark(c.delim, &c.delim_len, "\\n");
	expect_refused(&c, "delimiter is set but mode is fixed (only delimiter uses it)");
	c = (struct framer_config){ .mode = FRAME_FIXED, .fixed_len = 4, .max_len = 4 };
	set_mark(c.end, &c.end_len, "\\n");
	expect_refused(&c, "end is set but mode is fixed (only start_end uses it)");
	c.end_len = 0;
	c.start_len = 12;
	expect_refused(&c, "start is longer than 8 bytes");
}

Test(framer, config_fixed_refused)
{
	struct framer_config c = { .mode = FRAME_FIXED, .fixed_len = 10, .max_len = 4 };

	expect_refused(&c, "max_len (4) is shorter than fixed_len (10)");
	c.fixed_len = 0;
	expect_refused(&c, "fixed_len is 0 (a fixed frame needs at least one byte)");
	c = (struct framer_config){
		.mode = FRAME_FIXED, .fixed_len = 2, .max_len = 8, .csum = CSUM_CRC16_CCITT
	};
	set_mark(c.start, &c.start_len, "\\x02");
	expect_refused(&c, "fixed_len (2) is shorter than start and checksum (3 bytes)");
	c.csum = CSUM_NONE;
	c.fixed_len = 1;
	expect_refused(&c, "fixed_len (1) leaves nothing after start");
}

Test(framer, config_start_end_refused)
{
	struct framer_config c = { .mode = FRAME_START_END, .max_len = 64 };

	expect_refused(&c, "start is empty");
	c = cfg_start_end("\\x02", NULL, 64);
	expect_refused(&c, "end is empty and there is no length field to end the frame");
	c = cfg_start_end("\\x02", "\\x03", 3);
	c.csum = CSUM_SUM8;
	c.csum_encoding = CSUM_HEX;
	expect_refused(&c, "max_len (3) is shorter than start, end and checksum (4 bytes)");
	c = cfg_start_end("\\x02", NULL, 64);
	c.has_len_field = true;
	c.len_size = 3;
	expect_refused(&c, "len_size (3) is not 1 or 2");
	c.len_size = 2;
	c.len_offset = 62;
	expect_refused(&c, "len_offset (62) puts the length field beyond max_len (64)");
	c.len_offset = 61;
	c.len_adjust = -70000;
	expect_refused(&c, "len_adjust (-70000) is not between -65536 and 65536");
	c = cfg_delimiter("\\n", 64);
	c.has_len_field = true;
	expect_refused(&c, "a length field is set but mode is delimiter (only start_end uses it)");
}
