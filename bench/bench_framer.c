/* bench_framer.c: frames per second and MB/s through framer_push from memory, in 64-byte reads,
 * against a plain memchr line split of the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../adapters/framer.h"

#define BUF_BYTES (4u << 20) /* big enough to leave the caches, small enough to build fast */
#define READ_SIZE 64	     /* what one serial read typically delivers */

struct stream {
	uint8_t *data;
	size_t len;
	uint64_t frames; /* frames in one pass */
};

struct count {
	uint64_t frames;
	uint64_t body_bytes;
};

struct result {
	double seconds;
	uint64_t frames;
	uint64_t bytes;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_frame(void *ctx, const uint8_t *body, size_t len)
{
	struct count *c = ctx;

	(void)body;
	c->frames++;
	c->body_bytes += len;
}

/* Text lines of 40 bytes with CR LF, or 43 with "*hh" (xor8 of the line in hex) before it. */
static struct stream make_lines(bool with_xor8)
{
	struct stream s = { .data = malloc(BUF_BYTES + 64) };
	char line[80];

	if (s.data == NULL)
		exit(1);
	while (s.len < BUF_BYTES) {
		int n = snprintf(line, sizeof(line), "pt=%03u temp=%5.2f hum=%4.1f seq=%07u",
				 (unsigned)(s.frames % 500), 15.0 + (double)(s.frames % 1000) / 100,
				 40.0 + (double)(s.frames % 200) / 10,
				 (unsigned)(s.frames % 10000000));

		if (with_xor8)
			n += snprintf(line + n, sizeof(line) - (size_t)n, "*%02X",
				      csum_xor8((const uint8_t *)line, (size_t)n));
		memcpy(line + n, "\r\n", 2);
		memcpy(s.data + s.len, line, (size_t)n + 2);
		s.len += (size_t)n + 2;
		s.frames++;
	}
	return s;
}

/* 02, length 14, 14 payload bytes, CRC-16/MODBUS low byte first, 03: 19 bytes. */
static struct stream make_binary(void)
{
	struct stream s = { .data = malloc(BUF_BYTES + 64) };

	if (s.data == NULL)
		exit(1);
	while (s.len < BUF_BYTES) {
		uint8_t *f = s.data + s.len;
		uint16_t crc;

		f[0] = 0x02;
		f[1] = 14;
		for (int i = 0; i < 14; i++)
			f[2 + i] = (uint8_t)(s.frames * 7 + (uint64_t)i * 13);
		crc = csum_crc16_modbus(f + 1, 15);
		f[16] = (uint8_t)(crc & 0xff);
		f[17] = (uint8_t)(crc >> 8);
		f[18] = 0x03;
		s.len += 19;
		s.frames++;
	}
	return s;
}

/* Pushes the stream in READ_SIZE reads, pass after pass, for about 'window' seconds. */
static struct result run_framer(const struct framer_config *cfg, const struct stream *s,
				double window)
{
	struct framer f;
	struct count c = { 0 };
	struct result r = { 0 };
	const char *why = NULL;
	double t0 = now_s(), end = t0 + window;

	if (framer_init(&f, cfg, &why) != 0) {
		fprintf(stderr, "bench_framer: config refused: %s\n", why);
		exit(1);
	}
	do {
		for (size_t off = 0; off < s->len; off += READ_SIZE) {
			size_t n = s->len - off < READ_SIZE ? s->len - off : READ_SIZE;

			framer_push(&f, s->data + off, n, on_frame, &c);
		}
		r.bytes += s->len;
	} while (now_s() < end);
	r.seconds = now_s() - t0;
	r.frames = c.frames;
	if (c.frames != r.bytes / s->len * s->frames || f.stats.bad_checksum != 0) {
		fprintf(stderr, "bench_framer: %llu frames, expected %llu\n",
			(unsigned long long)c.frames,
			(unsigned long long)(r.bytes / s->len * s->frames));
		exit(1);
	}
	framer_free(&f);
	return r;
}

/* The floor to compare with: find each LF with memchr over the whole buffer, nothing else. */
static struct result run_memchr(const struct stream *s, double window)
{
	struct result r = { 0 };
	double t0 = now_s(), end = t0 + window;
	volatile size_t sink = 0;

	do {
		const uint8_t *p = s->data, *stop = s->data + s->len, *lf;

		while ((size_t)(stop - p) > 0) {
			lf = memchr(p, '\n', (size_t)(stop - p));
			if (lf == NULL)
				break;
			sink += (size_t)(lf - p);
			r.frames++;
			p = lf + 1;
		}
		r.bytes += s->len;
	} while (now_s() < end);
	r.seconds = now_s() - t0;
	(void)sink;
	return r;
}

static double print_result(const char *name, const char *unit, struct result r)
{
	double mb_s = (double)r.bytes / r.seconds / 1e6;

	printf("%s: %.1f M %s/s, %.0f MB/s\n", name, (double)r.frames / r.seconds / 1e6, unit,
	       mb_s);
	return mb_s;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2;
	double window;
	struct stream lines = make_lines(false), checked = make_lines(true), binary = make_binary();
	struct framer_config delim = {
		.mode = FRAME_DELIMITER, .delim = "\r\n", .delim_len = 2, .max_len = 128
	};
	struct framer_config nmea = delim;
	struct framer_config bin = { .mode = FRAME_START_END,
				     .start = { 0x02 },
				     .start_len = 1,
				     .end = { 0x03 },
				     .end_len = 1,
				     .has_len_field = true,
				     .len_size = 1,
				     .len_adjust = 2,
				     .max_len = 64,
				     .csum = CSUM_CRC16_MODBUS };
	double framer_mb, base_mb;

	if (seconds <= 0)
		seconds = 2;
	window = seconds / 4; /* four measurements share the time asked for */
	nmea.csum = CSUM_XOR8;
	nmea.csum_encoding = CSUM_HEX;
	nmea.csum_sep[0] = '*';
	nmea.csum_sep_len = 1;
	printf("framer: %u-byte reads from memory, %.2f s per measurement\n", READ_SIZE, window);
	framer_mb =
		print_result("framer delimiter/none", "frames", run_framer(&delim, &lines, window));
	print_result("framer delimiter/xor8-hex", "frames", run_framer(&nmea, &checked, window));
	print_result("framer start-len-end/crc16_modbus", "frames",
		     run_framer(&bin, &binary, window));
	base_mb = print_result("baseline memchr split", "lines", run_memchr(&lines, window));
	printf("ratio framer delimiter/none to baseline: %.2f\n", framer_mb / base_mb);
	free(lines.data);
	free(checked.data);
	free(binary.data);
	return 0;
}
