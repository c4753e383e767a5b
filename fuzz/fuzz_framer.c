/* fuzz_framer.c: libFuzzer target: any config the framer accepts, fed any bytes in any chunks,
 * never crashes, never hands out more than max_len, and cuts the same frames however split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../adapters/framer.h"

#define CONFIG_BYTES 10
#define MARK_BYTES   7 /* start or delimiter (3), end (3), checksum separator (1) */

/* What one run saw: a hash of every body in order, and how many. */
struct seen {
	const struct framer *f;
	uint64_t hash;
	uint64_t frames;
	uint64_t body_bytes;
};

static void check(int ok)
{
	if (!ok)
		__builtin_trap();
}

static void on_frame(void *ctx, const uint8_t *body, size_t len)
{
	struct seen *s = ctx;

	check(len <= s->f->cfg.max_len);
	check(len == 0 || body != NULL);
	s->hash = (s->hash ^ len) * 0x100000001b3ULL;
	for (size_t i = 0; i < len; i++) /* every byte read, so ASan sees a bad body */
		s->hash = (s->hash ^ body[i]) * 0x100000001b3ULL;
	s->frames++;
	s->body_bytes += len;
}

static size_t take_mark(uint8_t *mark, const uint8_t *src, size_t want)
{
	memcpy(mark, src, want);
	return want;
}

/* The first CONFIG_BYTES + MARK_BYTES bytes choose the config. */
static void config_from(struct framer_config *c, const uint8_t *d)
{
	uint8_t flags = d[1];
	size_t first_len = d[4] & 3, end_len = d[4] >> 2 & 3;

	memset(c, 0, sizeof(*c));
	c->mode = (enum frame_mode)(d[0] % 3);
	c->csum = (enum checksum_kind)(d[2] % 5);
	c->max_len = (size_t)d[3] % 96 + 1;
	if (c->mode == FRAME_DELIMITER)
		c->delim_len = take_mark(c->delim, d + CONFIG_BYTES, first_len);
	else if (c->mode == FRAME_START_END || flags & 1)
		c->start_len = take_mark(c->start, d + CONFIG_BYTES, first_len);
	if (c->mode == FRAME_START_END)
		c->end_len = take_mark(c->end, d + CONFIG_BYTES + 3, end_len);
	if (c->mode == FRAME_FIXED)
		c->fixed_len = d[5] % 40;
	c->has_len_field = c->mode == FRAME_START_END && flags & 4;
	if (c->has_len_field) {
		c->len_little_endian = flags & 8;
		c->len_size = flags & 128 ? 2 : 1;
		c->len_offset = d[6] % 4;
		c->len_adjust = (int8_t)d[7];
	}
	if (c->csum != CSUM_NONE) {
		c->csum_encoding = flags & 16 ? CSUM_HEX : CSUM_BINARY;
		c->csum_big_endian = flags & 32;
		c->csum_from = d[8] % 4;
		if (flags & 64)
			c->csum_sep_len = take_mark(c->csum_sep, d + CONFIG_BYTES + 6, 1);
	}
}

/* Pushes data in chunks of 0..31 bytes drawn from 'seed' (xorshift). */
static void push_chunked(struct framer *f, const uint8_t *data, size_t n, uint32_t seed,
			 struct seen *s)
{
	uint32_t x = seed | 1;

	while (n > 0) {
		size_t chunk;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		chunk = x % 32;
		if (chunk > n)
			chunk = n;
		framer_push(f, data, chunk, on_frame, s);
		data += chunk;
		n -= chunk;
	}
}

static int same_stats(const struct framer_stats *a, const struct framer_stats *b)
{
	return a->bytes == b->bytes && a->frames == b->frames && a->overlong == b->overlong &&
	       a->bad_checksum == b->bad_checksum && a->bad_length == b->bad_length &&
	       a->garbage == b->garbage;
}

/* Bytes a delivered frame has besides its body: markers, separator, checksum. */
static size_t overhead(const struct framer_config *c)
{
	size_t width = csum_width(c->csum) * (c->csum_encoding == CSUM_HEX ? 2 : 1);

	return c->delim_len + c->start_len + c->end_len + c->csum_sep_len + width;
}

/* Counters agree with what was handed out and with each other. */
static void check_counters(const struct framer *f, const struct seen *s, size_t n)
{
	const struct framer_config *c = &f->cfg;
	const struct framer_stats *st = &f->stats;
	uint64_t dropped = st->overlong + st->bad_checksum + st->bad_length;

	check(st->bytes == n);
	check(st->frames == s->frames);
	/* Every frame takes its bytes, every dropped one at least one, garbage its own. */
	check(s->body_bytes + st->frames * overhead(c) + dropped + st->garbage <= st->bytes);
	if (c->mode == FRAME_DELIMITER || (c->mode == FRAME_FIXED && c->start_len == 0))
		check(st->garbage == 0);
	if (c->mode == FRAME_FIXED && c->start_len == 0)
		check(st->frames + dropped == n / c->fixed_len);
	if (c->mode == FRAME_FIXED || c->has_len_field)
		check(st->overlong == 0);
	if (!c->has_len_field)
		check(st->bad_length == 0);
	if (c->csum == CSUM_NONE)
		check(st->bad_checksum == 0);
}

static void parse_some(const uint8_t *data, size_t size)
{
	char text[24];
	uint8_t out[FRAMER_MARK_MAX];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	int got;

	memcpy(text, data, n);
	text[n] = '\0';
	got = framer_parse_bytes(text, out, sizeof(out));
	check(got == -1 || (got >= 1 && got <= (int)sizeof(out)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct framer_config cfg;
	struct framer chunked, whole;
	struct seen a = { .hash = 0 }, b = { .hash = 0 };
	const uint8_t *stream = data + CONFIG_BYTES + MARK_BYTES;
	size_t n;

	parse_some(data, size);
	if (size < CONFIG_BYTES + MARK_BYTES)
		return 0;
	n = size - CONFIG_BYTES - MARK_BYTES;
	config_from(&cfg, data);
	if (framer_init(&chunked, &cfg, NULL) != 0)
		return 0;
	if (framer_init(&whole, &cfg, NULL) != 0) {
		framer_free(&chunked);
		return 0;
	}
	a.f = &chunked;
	b.f = &whole;
	push_chunked(&chunked, stream, n, (uint32_t)data[9] << 8 | data[5], &a);
	framer_push(&whole, stream, n, on_frame, &b);
	check_counters(&chunked, &a, n);
	check(same_stats(&chunked.stats, &whole.stats) && a.hash == b.hash);
	/* A reset mid-stream must leave a framer that still works. */
	framer_reset(&whole);
	framer_push(&whole, stream, n / 2, on_frame, &b);
	framer_free(&chunked);
	framer_free(&whole);
	return 0;
}
