/* slcansim.c: a simulated USB-CAN adapter speaking SLCAN (Lawicel) on a serial line, for tests. */

/*
 * Commands (from the host, each ended by CR; LF bytes are ignored, a command
 * longer than 63 bytes is discarded up to its CR and answered BEL):
 *   V              -> "V1013\r"
 *   N              -> "NSIM1\r"
 *   Sn (n 0..8)    -> "\r" while the channel is closed; BEL (0x07) when open or n invalid
 *   O, L           -> "\r", opens (L: listen-only); BEL if already open
 *   C              -> "\r", closes (also when already closed); frames stop
 *   F              -> "F00\r"
 *   Z0, Z1         -> "\r"; Z1 appends to every frame line 4 uppercase hex digits,
 *                     the milliseconds since the simulator started, modulo 60000
 *   tIIILDD..      -> "z\r"   transmit, standard id III <= 7FF, L 0..8, 2L hex digits
 *   TIIIIIIIILDD.. -> "Z\r"   transmit, extended id <= 1FFFFFFF
 *                     BEL when the channel is closed or listen-only, or the
 *                     command is malformed. Each accepted one is written to
 *                     stdout as "tx <id>#<data>" (id 3 or 8 uppercase hex
 *                     digits, data uppercase hex, as cansend writes it).
 *   anything else  -> BEL
 * Hex digits are accepted in either case. The line going down is a power
 * cycle: the channel comes back closed, timestamps off.
 *
 * Frames, only while the channel is open, as "tIIIL<data>\r" (standard) or
 * "TIIIIIIIIL<data>\r" (extended), uppercase hex. Opening the channel
 * schedules every frame of the set at once, in the order below, then each
 * every period. Counters belong to each frame, start at 0 with the process
 * and advance only when that frame is sent.
 *
 * Default set (DBC lines for a test's map; extended ids carry bit 31 in DBC):
 *
 * 0x123, dlc 8, every 100 ms; the k-th one sent (k = 0, 1, ...):
 *   k & 0xFF, DC 05, 06 FF, 11 22 33; k=0: "t123800DC0506FF112233", k=1: "t123801DC0506FF112233"
 *   BO_ 291 SIM123: 8 Vector__XXX
 *    SG_ counter : 0|8@1+ (1,0) [0|255] "" Vector__XXX        -> k mod 256
 *    SG_ speed : 8|16@1+ (1,0) [0|65535] "" Vector__XXX       -> 1500
 *    SG_ torque : 24|16@1- (1,0) [-32768|32767] "" Vector__XXX -> -250
 *    SG_ tail : 40|24@1+ (1,0) [0|16777215] "" Vector__XXX    -> 3351057 (0x332211)
 *
 * 0x0CF00400 extended, dlc 8, every 100 ms: J1939 EEC1, priority 3, PGN 61444
 * (0xF004), source 0. Bytes FF AF AF E0 2E FF FF FF:
 *   "T0CF004008FFAFAFE02EFFFFFF"
 *   BO_ 2364540160 EEC1: 8 Vector__XXX
 *    SG_ DriversDemandPercentTorque : 8|8@1+ (1,-125) [-125|125] "%" Vector__XXX  -> 50 (SPN 512)
 *    SG_ ActualEnginePercentTorque : 16|8@1+ (1,-125) [-125|125] "%" Vector__XXX  -> 50 (SPN 513)
 *    SG_ EngineSpeed : 24|16@1+ (0.125,0) [0|8031.875] "rpm" Vector__XXX         -> 1500 (SPN 190)
 *   The raw 175 (0x7D + 0x32) sits in byte 1, where J1939 puts SPN 512, and
 *   in byte 2 (SPN 513), so a map built from either reading decodes 50 %.
 *
 * 0x200, dlc 4, every 200 ms: F9 C0 BE EF: "t2004F9C0BEEF"
 *   BO_ 512 SIM200: 4 Vector__XXX
 *    SG_ moto12 : 7|12@0- (1,0) [-2048|2047] "" Vector__XXX    -> -100 (raw 0xF9C)
 *    SG_ moto16 : 23|16@0+ (1,0) [0|65535] "" Vector__XXX      -> 48879 (0xBEEF)
 *
 * 0x300, dlc 8, every 100 ms, multiplexed; the k-th one sent has mux k mod 2:
 *   mux 0: 00 A0 0F 00 00 00 00 00: "t300800A00F0000000000"
 *   mux 1: 01 D8 FF 00 00 00 00 00: "t300801D8FF0000000000"
 *   BO_ 768 SIM300: 8 Vector__XXX
 *    SG_ mux M : 0|8@1+ (1,0) [0|1] "" Vector__XXX             -> 0, 1, 0, ...
 *    SG_ pressure m0 : 8|16@1+ (0.1,0) [0|6553.5] "bar" Vector__XXX  -> 400.0
 *    SG_ temperature m1 : 8|16@1- (1,0) [-32768|32767] "degC" Vector__XXX -> -40
 *
 * 0x7FF, dlc 2, every 500 ms: DE AD: "t7FF2DEAD", in no map: to be counted and dropped.
 *
 * --frames FILE replaces the set with fixed frames, one per line
 * "<period_ms> <id>#<hex data>" (3 id digits: standard, 8: extended); lines
 * starting with '#', and blank lines, are skipped.
 *
 * --rate N ignores the periods: N frames per second in all, frame j of the
 * run at open + j/N s, cycling through the set in order. Frames that fell
 * due while the process was late go out together in one write; after more
 * than a second behind, the schedule restarts from now (said on stderr).
 *
 * --noise K: after every K-th frame sent (counting all frames of the set, from
 * the process start), two bad lines follow it:
 *   "t12G8\r"                                   ('G' is not hex: malformed)
 *   "t1238" + 55 characters cycling "0123456789ABCDEF" + "\r"   (60 + CR: overlong)
 * The good frames are all still sent, so after M frames a reader has seen
 * 2 floor(M / K) bad lines.
 *
 * The line is opened raw 8N1 at --baud. When it hangs up (POLLHUP, EIO, read
 * 0) or the path does not exist, it is reopened every 100 ms ("line down",
 * "line up" on stderr). Output the reader has not taken is queued up to
 * 64 KiB; a frame that does not fit is dropped whole and counted. SIGINT and
 * SIGTERM stop the simulator with a one-line summary on stderr.
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

#include "../base/base.h"
#include "lib/simline.h"

#define TAG	       "slcansim"
#define COMMAND_MAX    64
#define SET_MAX	       256
#define LINE_MAX_CHARS 32 /* "T" 8 id, 1 dlc, 16 data, 4 timestamp, CR: 31 */
#define RATE_MAX       100000
#define BATCH_MAX      512 /* frames in one write when late */
#define NS_PER_SEC     1000000000LL
#define NS_PER_MS      1000000LL
#define BEL	       0x07
#define SFF_MAX	       0x7FFu
#define EFF_MAX	       0x1FFFFFFFu

/* How a frame's data changes from one sending to the next. */
enum frame_kind {
	KIND_FIXED,
	KIND_COUNTER, /* byte 0 = times sent, mod 256 */
	KIND_MUX,     /* the 0x300 pair: mux (times sent mod 2) picks the payload */
};

struct sim_frame {
	uint32_t id;
	bool extended;
	uint8_t dlc;
	uint8_t data[8];
	long period_ms;
	enum frame_kind kind;
	uint64_t sent;	 /* times sent */
	int64_t next_ns; /* when it is next due (periodic mode) */
};

struct sim_options {
	const char *device;
	int baud;
	const char *frames_file;
	long rate; /* frames per second, 0: each frame at its period */
	long noise_every;
};

struct sim {
	const struct sim_options *opt;
	struct sim_line line;
	struct sim_frame set[SET_MAX];
	size_t nset;
	bool open;
	bool listen_only;
	bool timestamps;
	int bitrate; /* the last S argument, -1: none; only logged, a pty has no bus */
	char command[COMMAND_MAX];
	size_t command_len;
	bool command_overflow; /* discarding up to the next CR */
	int64_t start_ns;      /* process start, for timestamps */
	int64_t rate_epoch_ns; /* --rate: when frame rate_index 0 was due */
	uint64_t rate_index;   /* --rate: frames of this schedule sent */
	size_t rate_next;      /* --rate: the next frame of the set */
	uint64_t frames_sent;
	uint64_t frames_dropped;
	uint64_t noise_lines;
	uint64_t commands_seen;
	uint64_t commands_answered; /* with anything but BEL */
	uint64_t transmits;
};

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

static int64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* --- hex --- */

/* Parses exactly 'digits' hex digits at p. Returns 0 and *out, or -1. */
static int parse_hex(const char *p, size_t digits, uint32_t *out)
{
	uint32_t v = 0;

	for (size_t i = 0; i < digits; i++) {
		int d = gd_hex_digit(p[i]);

		if (d < 0)
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

/* Parses 2*n hex digits at p into n bytes. Returns 0 or -1. */
static int parse_bytes(const char *p, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t b;

		if (parse_hex(p + 2 * i, 2, &b) != 0)
			return -1;
		out[i] = (uint8_t)b;
	}
	return 0;
}

/* Writes "<id>#<data>" as cansend does into buf (at least 27 bytes). */
static void format_can(char *buf, size_t size, uint32_t id, bool extended, const uint8_t *data,
		       uint8_t dlc)
{
	int len = snprintf(buf, size, extended ? "%08" PRIX32 "#" : "%03" PRIX32 "#", id);

	for (uint8_t i = 0; i < dlc; i++)
		len += snprintf(buf + len, size - (size_t)len, "%02X", data[i]);
}

/* --- frames out --- */

static void frame_payload(const struct sim_frame *f, uint8_t *data)
{
	static const uint8_t mux_payload[2][8] = {
		{ 0x00, 0xa0, 0x0f, 0, 0, 0, 0, 0 }, /* 4000 = pressure 400.0 */
		{ 0x01, 0xd8, 0xff, 0, 0, 0, 0, 0 }, /* -40 = temperature */
	};

	memcpy(data, f->data, sizeof(f->data));
	if (f->kind == KIND_COUNTER)
		data[0] = (uint8_t)f->sent;
	else if (f->kind == KIND_MUX)
		memcpy(data, mux_payload[f->sent % 2], sizeof(mux_payload[0]));
}

/* The SLCAN line of f's next sending into buf (LINE_MAX_CHARS); returns its length. */
static size_t frame_line(const struct sim *s, const struct sim_frame *f, char *buf)
{
	uint8_t data[8];
	int len;

	frame_payload(f, data);
	if (f->extended)
		len = snprintf(buf, LINE_MAX_CHARS, "T%08" PRIX32 "%u", f->id, f->dlc);
	else
		len = snprintf(buf, LINE_MAX_CHARS, "t%03" PRIX32 "%u", f->id, f->dlc);
	for (uint8_t i = 0; i < f->dlc; i++)
		len += snprintf(buf + len, (size_t)(LINE_MAX_CHARS - len), "%02X", data[i]);
	if (s->timestamps) {
		int64_t ms = (monotonic_ns() - s->start_ns) / NS_PER_MS;

		len += snprintf(buf + len, (size_t)(LINE_MAX_CHARS - len), "%04X",
				(unsigned)(ms % 60000));
	}
	buf[len++] = '\r';
	return (size_t)len;
}

/* The two bad lines of --noise. */
static void send_noise(struct sim *s)
{
	static const char malformed[] = "t12G8\r";
	char overlong[61];

	memcpy(overlong, "t1238", 5);
	for (int i = 5; i < 60; i++)
		overlong[i] = "0123456789ABCDEF"[(i - 5) % 16];
	overlong[60] = '\r';
	if (sim_line_queue(&s->line, malformed, sizeof(malformed) - 1) == 0)
		s->noise_lines++;
	if (sim_line_queue(&s->line, overlong, sizeof(overlong)) == 0)
		s->noise_lines++;
}

static void send_frame(struct sim *s, struct sim_frame *f)
{
	char buf[LINE_MAX_CHARS];
	size_t len = frame_line(s, f, buf);

	/* Like an adapter whose host stops reading: the frame is lost, counters move on. */
	if (sim_line_queue(&s->line, buf, len) != 0)
		s->frames_dropped++;
	f->sent++;
	s->frames_sent++;
	if (s->opt->noise_every > 0 && s->frames_sent % (uint64_t)s->opt->noise_every == 0)
		send_noise(s);
}

/* Periodic mode: sends every frame due by now; returns the next deadline. */
static int64_t emit_periodic(struct sim *s, int64_t now)
{
	int64_t next = INT64_MAX;

	for (size_t i = 0; i < s->nset; i++) {
		struct sim_frame *f = &s->set[i];
		int64_t period = f->period_ms * NS_PER_MS;

		if (f->next_ns <= now) {
			send_frame(s, f);
			f->next_ns += period;
			/* After a stall, keep the period rather than burst to catch up. */
			if (f->next_ns <= now)
				f->next_ns = now + period;
		}
		if (f->next_ns < next)
			next = f->next_ns;
	}
	return next;
}

/* When frame 'index' of the --rate schedule is due: epoch + index / rate seconds. */
static int64_t rate_deadline(const struct sim *s, uint64_t index)
{
	uint64_t rate = (uint64_t)s->opt->rate;

	return s->rate_epoch_ns + (int64_t)(index / rate) * NS_PER_SEC +
	       (int64_t)((index % rate) * (uint64_t)NS_PER_SEC / rate);
}

/* Rate mode: sends every frame due by now (at most BATCH_MAX); returns the next deadline. */
static int64_t emit_rate(struct sim *s, int64_t now)
{
	int batch = 0;

	if (now - rate_deadline(s, s->rate_index) > NS_PER_SEC) {
		sim_log("more than 1 s behind the --rate schedule: restarting it from now");
		s->rate_epoch_ns = now;
		s->rate_index = 0;
	}
	while (batch < BATCH_MAX && rate_deadline(s, s->rate_index) <= now) {
		send_frame(s, &s->set[s->rate_next]);
		s->rate_next = (s->rate_next + 1) % s->nset;
		s->rate_index++;
		batch++;
	}
	return rate_deadline(s, s->rate_index);
}

/* Sends what is due; returns the next deadline (INT64_MAX: none). */
static int64_t emit_frames(struct sim *s, int64_t now)
{
	if (!s->open || s->nset == 0)
		return INT64_MAX;
	return s->opt->rate > 0 ? emit_rate(s, now) : emit_periodic(s, now);
}

static void channel_open(struct sim *s, bool listen_only)
{
	int64_t now = monotonic_ns();

	s->open = true;
	s->listen_only = listen_only;
	for (size_t i = 0; i < s->nset; i++)
		s->set[i].next_ns = now;
	s->rate_epoch_ns = now;
	s->rate_index = 0;
	if (s->bitrate < 0)
		sim_log("channel open%s, no bitrate set", listen_only ? " (listen-only)" : "");
	else
		sim_log("channel open%s, bitrate S%d", listen_only ? " (listen-only)" : "",
			s->bitrate);
}

/* --- commands in --- */

static void reply(struct sim *s, const char *text)
{
	sim_line_queue(&s->line, text, strlen(text));
	if (text[0] != BEL)
		s->commands_answered++;
}

/* tIIIL<data> or TIIIIIIIIL<data>: replies and records an accepted transmit. */
static void command_transmit(struct sim *s, const char *cmd, size_t len)
{
	bool extended = cmd[0] == 'T';
	size_t id_digits = extended ? 8 : 3;
	uint32_t id, dlc;
	uint8_t data[8];
	char text[40];

	if (!s->open || s->listen_only || len < 1 + id_digits + 1 ||
	    parse_hex(cmd + 1, id_digits, &id) != 0 || id > (extended ? EFF_MAX : SFF_MAX) ||
	    parse_hex(cmd + 1 + id_digits, 1, &dlc) != 0 || dlc > 8 ||
	    len != 1 + id_digits + 1 + 2 * dlc ||
	    parse_bytes(cmd + 2 + id_digits, dlc, data) != 0) {
		reply(s, "\a");
		return;
	}
	s->transmits++;
	format_can(text, sizeof(text), id, extended, data, (uint8_t)dlc);
	printf("tx %s\n", text);
	fflush(stdout);
	reply(s, extended ? "Z\r" : "z\r");
}

/* Handles one command (without its CR). */
static void command(struct sim *s, const char *cmd, size_t len)
{
	bool bare = len == 1;

	s->commands_seen++;
	if (len == 0) {
		reply(s, "\a");
		return;
	}
	switch (cmd[0]) {
	case 'V':
		reply(s, bare ? "V1013\r" : "\a");
		break;
	case 'N':
		reply(s, bare ? "NSIM1\r" : "\a");
		break;
	case 'S':
		if (len != 2 || cmd[1] < '0' || cmd[1] > '8' || s->open) {
			reply(s, "\a");
			break;
		}
		s->bitrate = cmd[1] - '0';
		reply(s, "\r");
		break;
	case 'O':
	case 'L':
		if (!bare || s->open) {
			reply(s, "\a");
			break;
		}
		channel_open(s, cmd[0] == 'L');
		reply(s, "\r");
		break;
	case 'C':
		if (!bare) {
			reply(s, "\a");
			break;
		}
		if (s->open)
			sim_log("channel closed");
		s->open = false;
		reply(s, "\r");
		break;
	case 'F':
		reply(s, bare ? "F00\r" : "\a");
		break;
	case 'Z':
		if (len != 2 || (cmd[1] != '0' && cmd[1] != '1')) {
			reply(s, "\a");
			break;
		}
		s->timestamps = cmd[1] == '1';
		reply(s, "\r");
		break;
	case 't':
	case 'T':
		command_transmit(s, cmd, len);
		break;
	default:
		reply(s, "\a");
	}
}

static void command_byte(struct sim *s, char c)
{
	if (c == '\n')
		return;
	if (c != '\r') {
		if (s->command_len == COMMAND_MAX - 1)
			s->command_overflow = true;
		else
			s->command[s->command_len++] = c;
		return;
	}
	if (s->command_overflow) {
		s->commands_seen++;
		reply(s, "\a");
	} else {
		s->command[s->command_len] = '\0';
		command(s, s->command, s->command_len);
	}
	s->command_len = 0;
	s->command_overflow = false;
}

/* The adapter loses its state when it loses power. */
static void power_cycle(struct sim *s)
{
	s->open = false;
	s->listen_only = false;
	s->timestamps = false;
	s->bitrate = -1;
	s->command_len = 0;
	s->command_overflow = false;
}

static void read_input(struct sim *s)
{
	char buf[512];
	ssize_t n = read(s->line.fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* A pseudo-terminal whose other end went away reads EIO or 0. */
		sim_line_down(&s->line, n == 0 ? "end of file" : strerror(errno));
		return;
	}
	for (ssize_t i = 0; i < n && s->line.fd >= 0; i++)
		command_byte(s, buf[i]);
}

/* --- the main loop --- */

static void wait_ms(int timeout_ms, const sigset_t *waitmask)
{
	struct timespec ts = { .tv_sec = timeout_ms / 1000,
			       .tv_nsec = (long)(timeout_ms % 1000) * NS_PER_MS };

	ppoll(NULL, 0, &ts, waitmask);
}

/* Waits for input, room to write, a signal or the deadline (INT64_MAX: none). */
static void wait_line(struct sim *s, int64_t deadline, const sigset_t *waitmask)
{
	struct pollfd pfd = { .fd = s->line.fd,
			      .events = POLLIN | (s->line.out_len > 0 ? POLLOUT : 0) };
	struct timespec ts;
	int64_t left = deadline - monotonic_ns();

	if (left < 0)
		left = 0;
	ts = (struct timespec){ .tv_sec = left / NS_PER_SEC, .tv_nsec = left % NS_PER_SEC };
	if (ppoll(&pfd, 1, deadline == INT64_MAX ? NULL : &ts, waitmask) <= 0)
		return;
	if (pfd.revents & POLLIN)
		read_input(s);
	else if (pfd.revents & (POLLHUP | POLLERR))
		sim_line_down(&s->line, "hang-up");
	if (s->line.fd >= 0 && (pfd.revents & POLLOUT))
		sim_line_flush(&s->line);
}

static void run(struct sim *s, const sigset_t *waitmask)
{
	while (!sim_stop_requested) {
		int64_t deadline;

		if (s->line.fd < 0) {
			power_cycle(s);
			if (sim_line_open(&s->line) != 0) {
				wait_ms(SIM_RETRY_MS, waitmask);
				continue;
			}
		}
		deadline = emit_frames(s, monotonic_ns());
		sim_line_flush(&s->line);
		if (s->line.fd >= 0)
			wait_line(s, deadline, waitmask);
	}
}

/* --- the frame set --- */

static void add_default(struct sim *s, uint32_t id, bool extended, uint8_t dlc, long period_ms,
			enum frame_kind kind, const uint8_t *data)
{
	struct sim_frame *f = &s->set[s->nset++];

	*f = (struct sim_frame){
		.id = id, .extended = extended, .dlc = dlc, .period_ms = period_ms, .kind = kind
	};
	memcpy(f->data, data, dlc);
}

static void default_set(struct sim *s)
{
	static const uint8_t f123[8] = { 0x00, 0xdc, 0x05, 0x06, 0xff, 0x11, 0x22, 0x33 };
	static const uint8_t eec1[8] = { 0xff, 0xaf, 0xaf, 0xe0, 0x2e, 0xff, 0xff, 0xff };
	static const uint8_t f200[4] = { 0xf9, 0xc0, 0xbe, 0xef };
	static const uint8_t f300[8] = { 0 };
	static const uint8_t f7ff[2] = { 0xde, 0xad };

	add_default(s, 0x123, false, 8, 100, KIND_COUNTER, f123);
	add_default(s, 0x0cf00400, true, 8, 100, KIND_FIXED, eec1);
	add_default(s, 0x200, false, 4, 200, KIND_FIXED, f200);
	add_default(s, 0x300, false, 8, 100, KIND_MUX, f300);
	add_default(s, 0x7ff, false, 2, 500, KIND_FIXED, f7ff);
}

/* Parses "<period_ms> <id>#<hex data>" into f. Returns NULL or what is wrong. */
static const char *parse_frame_line(const char *text, struct sim_frame *f)
{
	const char *p = text;
	const char *hash;
	char *end;
	size_t id_digits, data_digits;
	uint32_t id;
	long period;

	errno = 0;
	period = strtol(p, &end, 10);
	if (end == p || errno != 0 || period < 1 || period > 86400000 ||
	    (*end != ' ' && *end != '\t'))
		return "expected a period in ms (1 to 86400000), then a space";
	p = end + strspn(end, " \t");
	hash = strchr(p, '#');
	if (hash == NULL)
		return "expected <id>#<hex data> after the period";
	id_digits = (size_t)(hash - p);
	if ((id_digits != 3 && id_digits != 8) || parse_hex(p, id_digits, &id) != 0)
		return "expected an id of 3 hex digits (standard) or 8 (extended) before '#'";
	if (id > (id_digits == 8 ? EFF_MAX : SFF_MAX))
		return "id out of range (standard: up to 7FF, extended: up to 1FFFFFFF)";
	p = hash + 1;
	data_digits = strcspn(p, " \t\r\n");
	if (data_digits % 2 != 0 || data_digits > 16 || parse_bytes(p, data_digits / 2, f->data))
		return "expected 0 to 8 data bytes as pairs of hex digits after '#'";
	if (p[data_digits + strspn(p + data_digits, " \t\r\n")] != '\0')
		return "unexpected text after the data";
	f->id = id;
	f->extended = id_digits == 8;
	f->dlc = (uint8_t)(data_digits / 2);
	f->period_ms = period;
	f->kind = KIND_FIXED;
	return NULL;
}

/* Loads --frames; on error names file:line and exits. */
static void load_frames(struct sim *s, const char *path)
{
	char text[512];
	int lineno = 0;
	FILE *file = fopen(path, "r");

	if (file == NULL)
		usage_error("--frames %s: %s", path, strerror(errno));
	while (fgets(text, sizeof(text), file) != NULL) {
		const char *p = text + strspn(text, " \t");
		const char *why;

		lineno++;
		if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
			continue;
		if (strchr(text, '\n') == NULL && !feof(file))
			usage_error("%s:%d: line longer than %zu bytes", path, lineno,
				    sizeof(text) - 2);
		if (s->nset == SET_MAX)
			usage_error("%s:%d: more than %d frames", path, lineno, SET_MAX);
		s->set[s->nset] = (struct sim_frame){ 0 };
		why = parse_frame_line(p, &s->set[s->nset]);
		if (why != NULL)
			usage_error("%s:%d: %s, as in \"100 123#0102\" or \"50 18FEF100#FF\"", path,
				    lineno, why);
		s->nset++;
	}
	fclose(file);
	if (s->nset == 0)
		usage_error("%s: no frames in it", path);
}

/* --- options --- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: slcansim --device PATH [--baud N] [--frames FILE] [--rate N] [--noise K]\n"
		"A simulated SLCAN (Lawicel) USB-CAN adapter; commands and frames are described\n"
		"at the top of tools/slcansim.c. Transmitted frames are printed on stdout as\n"
		"\"tx <id>#<data>\".\n");
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

enum option_id {
	OPT_DEVICE = 'd',
	OPT_BAUD = 'b',
	OPT_FRAMES = 'f',
	OPT_RATE = 'r',
	OPT_NOISE = 'n',
	OPT_HELP = 'h',
};

static const struct option long_options[] = {
	{ .name = "device", .has_arg = required_argument, .val = OPT_DEVICE },
	{ .name = "baud", .has_arg = required_argument, .val = OPT_BAUD },
	{ .name = "frames", .has_arg = required_argument, .val = OPT_FRAMES },
	{ .name = "rate", .has_arg = required_argument, .val = OPT_RATE },
	{ .name = "noise", .has_arg = required_argument, .val = OPT_NOISE },
	{ .name = "help", .has_arg = no_argument, .val = OPT_HELP },
	{ .name = NULL },
};

static void parse_options(int argc, char **argv, struct sim_options *o)
{
	int c;

	*o = (struct sim_options){ .baud = 115200 };
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
		case OPT_FRAMES:
			o->frames_file = optarg;
			break;
		case OPT_RATE:
			o->rate = (long)parse_number("rate", optarg, 1, RATE_MAX);
			break;
		case OPT_NOISE:
			o->noise_every = (long)parse_number("noise", optarg, 1, 1000000000);
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
}

int main(int argc, char **argv)
{
	struct sim_options opt;
	static struct sim s; /* static: the output buffer and the set are large */
	sigset_t waitmask;

	sim_set_tag(TAG);
	parse_options(argc, argv, &opt);
	s.opt = &opt;
	s.line = (struct sim_line){ .path = opt.device,
				    .speed = sim_baud_speed(opt.baud),
				    .fd = -1 };
	s.start_ns = monotonic_ns();
	if (opt.frames_file != NULL)
		load_frames(&s, opt.frames_file);
	else
		default_set(&s);

	sim_catch_signals(&waitmask);

	run(&s, &waitmask);
	if (s.line.fd >= 0)
		close(s.line.fd);
	sim_log("stopped: %" PRIu64 " frames sent, %" PRIu64 " requests answered, %" PRIu64
		" commands seen (%" PRIu64 " transmits); %" PRIu64 " noise lines, %" PRIu64
		" frames dropped on a full line",
		s.frames_sent, s.commands_answered, s.commands_seen, s.transmits, s.noise_lines,
		s.frames_dropped);
	return 0;
}
