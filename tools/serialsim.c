/* serialsim.c: a simulated weighing instrument on a serial line (text or binary frames), for tests.
 */

/*
 * What goes on the wire. Frame n (n = 0, 1, 2, ...) is the n-th good frame
 * this process sends; the counter never resets, not even across a line
 * down/up, and frames are only made while the line is up.
 *
 *   weight  = 12.34 + 0.01 n kg       (hundredths: 1234 + n, exact)
 *   temp    = -5.5 + (n mod 10) degC  (-5.5, -4.5, ... 3.5: exact in binary)
 *   status  = "OVL" (code 1) when n mod 7 == 6, else "OK" (code 0)
 *
 * --mode text (default): one line, then CR LF:
 *   ST,<status>,<weight %+09.2f>,kg,<temp %+06.1f>,C,<n decimal>
 * With --checksum xor8 the line is followed by '*' and two uppercase hex
 * digits, the xor of every byte before the '*', then CR LF. Examples:
 *   n=0  "ST,OK,+00012.34,kg,-005.5,C,0\r\n"       with xor8: "...,C,0*4E\r\n"
 *   n=1  "ST,OK,+00012.35,kg,-004.5,C,1\r\n"       with xor8: "...,C,1*4F\r\n"
 *   n=6  "ST,OVL,+00012.40,kg,+000.5,C,6\r\n"      with xor8: "...,C,6*19\r\n"
 *
 * --mode binary: 17 bytes:
 *   0x02 (STX), L = 0x0C (the 12 payload bytes that follow it, CRC and ETX
 *   excluded), payload:
 *     [0..1]   u16 big-endian     n mod 65536
 *     [2..5]   i32 little-endian  weight in hundredths, 1234 + n (mod 2^32)
 *     [6..9]   f32 big-endian     temp, IEEE 754 binary32
 *     [10..11] u16 big-endian     status code, 0 OK, 1 OVL
 *   then CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF) over L and the
 *   payload (13 bytes), low byte first, then 0x03 (ETX). Examples:
 *     n=0  02 0C 00 00 D2 04 00 00 C0 B0 00 00 00 00 D5 5E 03
 *     n=1  02 0C 00 01 D3 04 00 00 C0 90 00 00 00 00 01 A0 03
 *     n=6  02 0C 00 06 D8 04 00 00 3F 00 00 00 00 01 7F E3 03
 *
 * Pacing: free-running, frame n+1 follows frame n by --interval-ms (default
 * 100); the first frame goes out as soon as the line is up. With --request
 * STR the instrument instead sends one frame each time the bytes STR arrive
 * (a byte-wise match against the last bytes received: "WW\r\n" answers
 * "W\r\n" once; other bytes are ignored). --count N stops making frames after
 * N good frames; the line stays open until the process is killed.
 *
 * --noise K: let m = n + 1 be the number of good frames sent so far. Right
 * after good frame n, when m is a multiple of K, in this order:
 *   (b) only when m is a multiple of 2K: a second copy of frame n whose
 *       checksum is wrong: text with --checksum xor8: the two hex digits are
 *       those of (xor ^ 0xFF); binary: the CRC is (crc ^ 0xFFFF). Text without
 *       a checksum has nothing to corrupt: no copy is sent.
 *   (a) always: 5 junk bytes from a fixed-seed generator (the same every
 *       run). Text: printable 0x21..0x7E except '*', ',' and 'S', never CR
 *       or LF, so they prefix the next line, "<junk>ST,...": that line is
 *       malformed as a whole. Binary: any byte except 0x02 and 0x03, between
 *       two frames; the next frame is intact.
 * So after M good frames a parser has seen M good frames, floor(M / 2K)
 * corrupted copies (0 in text without a checksum) and floor(M / K) junk
 * bursts; in text mode the good line after each burst is malformed.
 *
 * The line is opened raw 8N1 at --baud. When it hangs up (POLLHUP, EIO, read
 * 0) or the path does not exist, it is reopened every 100 ms ("line down",
 * "line up" on stderr); bytes not yet written are lost with it. SIGINT and
 * SIGTERM stop the simulator with a one-line summary on stderr. stdout stays
 * empty except, with --verbose, one line per good frame sent.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "lib/simline.h"

#define TAG		 "serialsim"
#define REQUEST_MAX	 64
#define FRAME_MAX	 128
#define JUNK_LEN	 5
#define BINARY_PAYLOAD	 12
#define BINARY_FRAME_LEN (2 + BINARY_PAYLOAD + 2 + 1)
#define STX		 0x02
#define ETX		 0x03

enum frame_format { FORMAT_TEXT, FORMAT_BINARY };

struct sim_options {
	const char *device;
	int baud;
	enum frame_format format;
	bool checksum;	  /* text: append *HH */
	long interval_ms; /* free-running period */
	uint8_t request[REQUEST_MAX];
	size_t request_len; /* 0: free-running */
	long noise_every;   /* K, 0: no noise */
	uint64_t count;	    /* frames to send, 0: no limit */
	bool verbose;
};

struct sim {
	const struct sim_options *opt;
	struct sim_line line;
	int64_t next_frame_ms;
	uint8_t window[REQUEST_MAX]; /* the last bytes received, for --request */
	size_t window_len;
	uint32_t rng;
	uint64_t frames_sent; /* good frames; also the next n */
	uint64_t junk_bursts;
	uint64_t bad_copies;
	uint64_t requests_seen;
	uint64_t requests_answered;
};

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- frames: encoded by hand, independent of adapters/ --- */

static uint16_t crc16_modbus(const uint8_t *p, size_t len)
{
	uint16_t crc = 0xffff;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 1) ? (uint16_t)(crc >> 1 ^ 0xa001) : (uint16_t)(crc >> 1);
	}
	return crc;
}

static bool is_overload(uint64_t n)
{
	return n % 7 == 6;
}

/* temp_c in tenths: -55 + 10 (n mod 10). */
static int temp_tenths(uint64_t n)
{
	return -55 + 10 * (int)(n % 10);
}

/*
 * The text line of frame n with CR LF into buf (FRAME_MAX bytes); returns its
 * length. Numbers are printed from integers, so no rounding can creep in.
 */
static size_t text_frame(uint64_t n, bool checksum, bool corrupt, char *buf)
{
	uint64_t weight = 1234 + n;
	int temp = temp_tenths(n);
	int len;

	len = snprintf(buf, FRAME_MAX, "ST,%s,+%05" PRIu64 ".%02u,kg,%c%03d.%d,C,%" PRIu64,
		       is_overload(n) ? "OVL" : "OK", weight / 100, (unsigned)(weight % 100),
		       temp < 0 ? '-' : '+', abs(temp) / 10, abs(temp) % 10, n);
	if (checksum) {
		uint8_t x = 0;

		for (int i = 0; i < len; i++)
			x ^= (uint8_t)buf[i];
		if (corrupt)
			x ^= 0xff;
		len += snprintf(buf + len, (size_t)(FRAME_MAX - len), "*%02X", x);
	}
	buf[len++] = '\r';
	buf[len++] = '\n';
	return (size_t)len;
}

/* The binary frame of n into buf (BINARY_FRAME_LEN bytes); returns its length. */
static size_t binary_frame(uint64_t n, bool corrupt, uint8_t *buf)
{
	uint32_t weight = (uint32_t)(1234 + n);
	float temp = (float)temp_tenths(n) / 10.0f;
	uint32_t temp_bits;
	uint16_t crc;

	memcpy(&temp_bits, &temp, sizeof(temp_bits));
	buf[0] = STX;
	buf[1] = BINARY_PAYLOAD;
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	for (int i = 0; i < 4; i++) {
		buf[4 + i] = (uint8_t)(weight >> (8 * i));
		buf[8 + i] = (uint8_t)(temp_bits >> (24 - 8 * i));
	}
	buf[12] = 0;
	buf[13] = is_overload(n) ? 1 : 0;
	crc = crc16_modbus(buf + 1, 1 + BINARY_PAYLOAD);
	if (corrupt)
		crc ^= 0xffff;
	buf[14] = (uint8_t)crc;
	buf[15] = (uint8_t)(crc >> 8);
	buf[16] = ETX;
	return BINARY_FRAME_LEN;
}

static size_t make_frame(const struct sim *s, uint64_t n, bool corrupt, uint8_t *buf)
{
	if (s->opt->format == FORMAT_BINARY)
		return binary_frame(n, corrupt, buf);
	return text_frame(n, s->opt->checksum, corrupt, (char *)buf);
}

static void print_frame(uint64_t n, const uint8_t *buf, size_t len, enum frame_format format)
{
	printf("frame %" PRIu64 " ", n);
	if (format == FORMAT_TEXT)
		fwrite(buf, 1, len - 2, stdout);
	else
		for (size_t i = 0; i < len; i++)
			printf("%s%02X", i ? " " : "", buf[i]);
	putchar('\n');
	fflush(stdout);
}

/* xorshift32 from a fixed seed: the same junk every run. */
static uint32_t next_random(struct sim *s)
{
	uint32_t x = s->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	s->rng = x;
	return x;
}

static uint8_t junk_byte(struct sim *s)
{
	for (;;) {
		uint8_t b = (uint8_t)next_random(s);

		if (s->opt->format == FORMAT_BINARY) {
			if (b != STX && b != ETX)
				return b;
		} else if (b >= 0x21 && b <= 0x7e && b != '*' && b != ',' && b != 'S') {
			return b;
		}
	}
}

/* The noise that follows good frame n (see the top of the file). */
static void send_noise(struct sim *s, uint64_t n)
{
	uint64_t m = s->frames_sent;
	uint64_t k = (uint64_t)s->opt->noise_every;
	bool has_checksum = s->opt->format == FORMAT_BINARY || s->opt->checksum;
	uint8_t buf[FRAME_MAX];

	if (k == 0 || m % k != 0)
		return;
	if (m % (2 * k) == 0 && has_checksum) {
		size_t len = make_frame(s, n, true, buf);

		if (sim_line_queue(&s->line, buf, len) == 0)
			s->bad_copies++;
	}
	for (int i = 0; i < JUNK_LEN; i++)
		buf[i] = junk_byte(s);
	if (sim_line_queue(&s->line, buf, JUNK_LEN) == 0)
		s->junk_bursts++;
}

/* Sends the next good frame and its noise. */
static void send_frame(struct sim *s)
{
	uint64_t n = s->frames_sent;
	uint8_t buf[FRAME_MAX];
	size_t len = make_frame(s, n, false, buf);

	/* A frame that does not fit is lost, like bytes into an unread wire; n moves on. */
	sim_line_queue(&s->line, buf, len);
	s->frames_sent++;
	if (s->opt->verbose)
		print_frame(n, buf, len, s->opt->format);
	send_noise(s, n);
}

static bool count_reached(const struct sim *s)
{
	return s->opt->count > 0 && s->frames_sent >= s->opt->count;
}

/* --- requests --- */

/* Feeds one received byte to the --request matcher; answers a complete request. */
static void request_byte(struct sim *s, uint8_t b)
{
	size_t want = s->opt->request_len;

	if (s->window_len == want) {
		memmove(s->window, s->window + 1, want - 1);
		s->window_len--;
	}
	s->window[s->window_len++] = b;
	if (s->window_len < want || memcmp(s->window, s->opt->request, want) != 0)
		return;
	/* Consumed: the bytes of one request never count towards the next. */
	s->window_len = 0;
	s->requests_seen++;
	if (count_reached(s))
		return;
	send_frame(s);
	s->requests_answered++;
}

static void read_input(struct sim *s)
{
	uint8_t buf[512];
	ssize_t n = read(s->line.fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* A pseudo-terminal whose other end went away reads EIO or 0. */
		sim_line_down(&s->line, n == 0 ? "end of file" : strerror(errno));
		return;
	}
	if (s->opt->request_len == 0)
		return;
	for (ssize_t i = 0; i < n; i++)
		request_byte(s, buf[i]);
}

/* --- the main loop --- */

/* Sends the free-running frame when due; returns ms until the next one (-1: none). */
static int free_run(struct sim *s, int64_t now)
{
	if (s->opt->request_len > 0 || count_reached(s))
		return -1;
	if (now >= s->next_frame_ms) {
		send_frame(s);
		s->next_frame_ms += s->opt->interval_ms;
		/* After a stall, carry on at the period instead of bursting to catch up. */
		if (s->next_frame_ms <= now)
			s->next_frame_ms = now + s->opt->interval_ms;
	}
	return (int)(s->next_frame_ms - now);
}

static void wait_ms(int timeout_ms, const sigset_t *waitmask)
{
	struct timespec ts = { .tv_sec = timeout_ms / 1000,
			       .tv_nsec = (long)(timeout_ms % 1000) * 1000000L };

	ppoll(NULL, 0, &ts, waitmask);
}

static void run(struct sim *s, const sigset_t *waitmask)
{
	while (!sim_stop_requested) {
		struct pollfd pfd;
		struct timespec ts;
		int timeout_ms;

		if (s->line.fd < 0) {
			if (sim_line_open(&s->line) != 0) {
				wait_ms(SIM_RETRY_MS, waitmask);
				continue;
			}
			s->next_frame_ms = monotonic_ms();
			s->window_len = 0;
		}
		timeout_ms = free_run(s, monotonic_ms());
		sim_line_flush(&s->line);
		if (s->line.fd < 0)
			continue;
		pfd = (struct pollfd){ .fd = s->line.fd,
				       .events = POLLIN | (s->line.out_len > 0 ? POLLOUT : 0) };
		ts = (struct timespec){ .tv_sec = timeout_ms / 1000,
					.tv_nsec = (long)(timeout_ms % 1000) * 1000000L };
		if (ppoll(&pfd, 1, timeout_ms < 0 ? NULL : &ts, waitmask) <= 0)
			continue;
		if (pfd.revents & POLLIN)
			read_input(s);
		else if (pfd.revents & (POLLHUP | POLLERR))
			sim_line_down(&s->line, "hang-up");
		if (s->line.fd >= 0 && (pfd.revents & POLLOUT))
			sim_line_flush(&s->line);
	}
}

/* --- options --- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: serialsim --device PATH [--baud N] [--mode text|binary] [--checksum xor8]\n"
		"                 [--interval-ms N | --request STR] [--noise K] [--count N]\n"
		"                 [--verbose]\n"
		"A simulated weighing instrument; the frames are described at the top of\n"
		"tools/serialsim.c. STR takes the escapes \\r \\n \\t \\\\ and \\xHH.\n");
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(TAG ": error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* Parses a decimal integer in [min, max]; on error says which option and exits. */
static long long parse_number(const char *option, const char *arg, long long min, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < min || v > max)
		usage_error("--%s: expected an integer from %lld to %lld, got \"%s\"", option, min,
			    max, arg);
	return v;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes STR with C escapes into o->request; exits on a bad escape or length. */
static void parse_request(const char *arg, struct sim_options *o)
{
	size_t len = 0;

	for (const char *p = arg; *p != '\0'; p++) {
		uint8_t b = (uint8_t)*p;

		if (*p == '\\') {
			p++;
			switch (*p) {
			case 'r':
				b = '\r';
				break;
			case 'n':
				b = '\n';
				break;
			case 't':
				b = '\t';
				break;
			case '\\':
				b = '\\';
				break;
			case 'x':
				if (hex_digit(p[1]) < 0)
					usage_error("--request: \\x needs hex digits in \"%s\"",
						    arg);
				b = (uint8_t)hex_digit(*++p);
				if (hex_digit(p[1]) >= 0)
					b = (uint8_t)(b << 4 | hex_digit(*++p));
				break;
			default:
				usage_error(
					"--request: unknown escape in \"%s\" (expected \\r, \\n, "
					"\\t, \\\\ or \\xHH)",
					arg);
			}
		}
		if (len == REQUEST_MAX)
			usage_error("--request: longer than %d bytes", REQUEST_MAX);
		o->request[len++] = b;
	}
	if (len == 0)
		usage_error("--request: empty");
	o->request_len = len;
}

enum option_id {
	OPT_DEVICE = 'd',
	OPT_BAUD = 'b',
	OPT_MODE = 'm',
	OPT_CHECKSUM = 'c',
	OPT_INTERVAL = 'i',
	OPT_REQUEST = 'r',
	OPT_NOISE = 'n',
	OPT_COUNT = 'k',
	OPT_VERBOSE = 'v',
	OPT_HELP = 'h',
};

static const struct option long_options[] = {
	{ .name = "device", .has_arg = required_argument, .val = OPT_DEVICE },
	{ .name = "baud", .has_arg = required_argument, .val = OPT_BAUD },
	{ .name = "mode", .has_arg = required_argument, .val = OPT_MODE },
	{ .name = "checksum", .has_arg = required_argument, .val = OPT_CHECKSUM },
	{ .name = "interval-ms", .has_arg = required_argument, .val = OPT_INTERVAL },
	{ .name = "request", .has_arg = required_argument, .val = OPT_REQUEST },
	{ .name = "noise", .has_arg = required_argument, .val = OPT_NOISE },
	{ .name = "count", .has_arg = required_argument, .val = OPT_COUNT },
	{ .name = "verbose", .has_arg = no_argument, .val = OPT_VERBOSE },
	{ .name = "help", .has_arg = no_argument, .val = OPT_HELP },
	{ .name = NULL },
};

static void parse_options(int argc, char **argv, struct sim_options *o)
{
	bool interval_given = false;
	int c;

	*o = (struct sim_options){ .baud = 115200, .interval_ms = 100 };
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_DEVICE:
			o->device = optarg;
			break;
		case OPT_BAUD:
			o->baud = (int)parse_number("baud", optarg, 1, 4000000);
			if (sim_baud_speed(o->baud) == B0)
				usage_error("--baud %d: not a standard rate (e.g. 9600, 115200)",
					    o->baud);
			break;
		case OPT_MODE:
			if (strcmp(optarg, "text") == 0)
				o->format = FORMAT_TEXT;
			else if (strcmp(optarg, "binary") == 0)
				o->format = FORMAT_BINARY;
			else
				usage_error("--mode: expected text or binary, got \"%s\"", optarg);
			break;
		case OPT_CHECKSUM:
			if (strcmp(optarg, "xor8") == 0)
				o->checksum = true;
			else if (strcmp(optarg, "none") == 0)
				o->checksum = false;
			else
				usage_error("--checksum: expected xor8 or none, got \"%s\"",
					    optarg);
			break;
		case OPT_INTERVAL:
			o->interval_ms = (long)parse_number("interval-ms", optarg, 1, 86400000);
			interval_given = true;
			break;
		case OPT_REQUEST:
			parse_request(optarg, o);
			break;
		case OPT_NOISE:
			o->noise_every = (long)parse_number("noise", optarg, 1, 1000000000);
			break;
		case OPT_COUNT:
			o->count = (uint64_t)parse_number("count", optarg, 1, INT64_MAX);
			break;
		case OPT_VERBOSE:
			o->verbose = true;
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);
	if (o->device == NULL) {
		usage(stderr);
		usage_error("--device PATH is required");
	}
	if (interval_given && o->request_len > 0)
		usage_error("--interval-ms and --request exclude each other");
	if (o->checksum && o->format == FORMAT_BINARY)
		usage_error("--checksum applies to --mode text (binary frames always carry a CRC)");
}

int main(int argc, char **argv)
{
	struct sim_options opt;
	static struct sim s; /* static: the output buffer is large */
	sigset_t waitmask;

	sim_set_tag(TAG);
	parse_options(argc, argv, &opt);
	s.opt = &opt;
	s.rng = 0x2545f491;
	s.line = (struct sim_line){ .path = opt.device,
				    .speed = sim_baud_speed(opt.baud),
				    .fd = -1 };

	sim_catch_signals(&waitmask);

	run(&s, &waitmask);
	if (s.line.fd >= 0)
		close(s.line.fd);
	sim_log("stopped: %" PRIu64 " frames sent, %" PRIu64 " requests answered, %" PRIu64
		" commands seen; noise: %" PRIu64 " junk bursts, %" PRIu64
		" corrupted copies; %" PRIu64 " bytes dropped on a full line",
		s.frames_sent, s.requests_answered, s.requests_seen, s.junk_bursts, s.bad_copies,
		s.line.bytes_dropped);
	return 0;
}
