/* bench_candecode.c: CAN frames decoded to scaled signal values per second, and SLCAN lines parsed
 * per second, all from memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../adapters/canbus.h"

#define NMSGS	50
#define NSIGS	8
#define NFRAMES 4096 /* frames in the replayed trace */
#define BATCH	NFRAMES

struct bench_sig {
	struct can_signal layout;
	double scale, offset;
};

/* One message as an adapter holds it after loading its points. */
struct bench_msg {
	uint32_t key; /* id, with bit 31 set when extended: one sort key for both kinds */
	struct bench_sig sigs[NSIGS];
};

static struct bench_msg msgs[NMSGS];
static struct can_msg frames[NFRAMES];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t next_random(uint32_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

static uint32_t frame_key(const struct can_msg *m)
{
	return m->id | (m->extended ? 0x80000000u : 0);
}

static int msg_cmp(const void *a, const void *b)
{
	uint32_t ka = ((const struct bench_msg *)a)->key, kb = ((const struct bench_msg *)b)->key;

	return ka < kb ? -1 : ka > kb;
}

/*
 * 8 signals tiling 64 bits, with odd lengths; odd-numbered messages are
 * Motorola, every third signal is signed, all are scaled.
 */
static void make_message(struct bench_msg *m, unsigned index, uint32_t *rng)
{
	static const unsigned lengths[NSIGS] = { 4, 12, 8, 8, 16, 6, 2, 8 };
	bool motorola = index % 2 == 1;
	unsigned pos = 0; /* Intel: the LSB; Motorola: the MSB in linear numbering */

	m->key = index % 3 == 0 ? 0x80000000u | (0x18FE0000u + index * 0x100u + 0x21u)
				: 0x100u + index * 7u;
	for (unsigned i = 0; i < NSIGS; i++) {
		struct bench_sig *s = &m->sigs[i];

		s->layout.length = (uint16_t)lengths[i];
		s->layout.big_endian = motorola;
		s->layout.is_signed = i % 3 == 2;
		s->layout.start_bit = (uint16_t)(motorola ? (pos / 8) * 8 + 7 - pos % 8 : pos);
		s->scale = 0.125 * (1 + next_random(rng) % 8);
		s->offset = (double)(next_random(rng) % 100) - 50;
		pos += lengths[i];
	}
}

static void setup(void)
{
	uint32_t rng = 0x2545F491;

	for (unsigned i = 0; i < NMSGS; i++)
		make_message(&msgs[i], i, &rng);
	for (unsigned i = 0; i < NFRAMES; i++) {
		const struct bench_msg *m = &msgs[next_random(&rng) % NMSGS];

		frames[i].extended = (m->key & 0x80000000u) != 0;
		frames[i].id = m->key & ~0x80000000u;
		frames[i].dlc = 8;
		for (unsigned b = 0; b < 8; b++)
			frames[i].data[b] = (uint8_t)next_random(&rng);
	}
	qsort(msgs, NMSGS, sizeof(msgs[0]), msg_cmp);
}

/* What an adapter does per received frame: find its message, decode every signal. */
static unsigned decode(const struct can_msg *f, double *sink)
{
	struct bench_msg key = { .key = frame_key(f) };
	const struct bench_msg *m = bsearch(&key, msgs, NMSGS, sizeof(msgs[0]), msg_cmp);
	unsigned n = 0;

	if (m == NULL)
		return 0;
	for (unsigned i = 0; i < NSIGS; i++) {
		const struct bench_sig *s = &m->sigs[i];
		uint64_t raw;
		double v;

		if (!can_signal_fits(&s->layout, f->dlc))
			continue;
		raw = can_signal_raw(&s->layout, f->data);
		v = s->layout.is_signed ? (double)can_signal_signed(&s->layout, raw) : (double)raw;
		*sink += v * s->scale + s->offset;
		n++;
	}
	return n;
}

static void bench_decode(double seconds)
{
	uint64_t nframes = 0, nsignals = 0;
	double sink = 0, start = now_s(), elapsed;

	do {
		for (unsigned i = 0; i < BATCH; i++)
			nsignals += decode(&frames[i], &sink);
		nframes += BATCH;
		elapsed = now_s() - start;
	} while (elapsed < seconds);
	printf("can decode: %.1f M frames/s (%.1f M signals/s) [checksum %g]\n",
	       (double)nframes / elapsed / 1e6, (double)nsignals / elapsed / 1e6, sink);
}

static void count_line(void *ctx, const struct slcan_event *ev)
{
	uint64_t *frames_seen = ctx;

	*frames_seen += ev->kind == SLCAN_FRAME;
}

static void bench_slcan(double seconds)
{
	static char buf[NFRAMES * SLCAN_LINE_MAX];
	struct slcan_parser p;
	uint64_t frames_seen = 0, bytes = 0;
	size_t len = 0;
	double start, elapsed;

	for (unsigned i = 0; i < NFRAMES; i++)
		len += slcan_format(&frames[i], buf + len);
	slcan_init(&p);
	start = now_s();
	do {
		slcan_push(&p, (const uint8_t *)buf, len, count_line, &frames_seen);
		bytes += len;
		elapsed = now_s() - start;
	} while (elapsed < seconds);
	if (p.malformed != 0 || frames_seen != p.lines) {
		fprintf(stderr, "bench: %llu of %llu lines malformed\n",
			(unsigned long long)p.malformed, (unsigned long long)p.lines);
		exit(1);
	}
	printf("slcan parse: %.1f M lines/s (%.0f MB/s)\n", (double)p.lines / elapsed / 1e6,
	       (double)bytes / elapsed / 1e6);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2;

	if (seconds <= 0) {
		fprintf(stderr, "usage: %s [seconds]\n", argv[0]);
		return 2;
	}
	setup();
	printf("%d messages x %d signals (Intel and Motorola, signed, scaled), %d-frame trace\n",
	       NMSGS, NSIGS, NFRAMES);
	bench_decode(seconds / 2);
	bench_slcan(seconds / 2);
	return 0;
}
