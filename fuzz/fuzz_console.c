/* fuzz_console.c: libFuzzer target: any bytes typed at the console, in chunks with time passing
 * between them, never crash it, and what it writes is always text a terminal shows safely. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../guardian/console.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The echo of a full line after the prompt is the widest thing the console writes. */
#define WIDEST (10 + CONSOLE_LINE_MAX)

/* How the terminal would see the output so far. */
struct screen {
	size_t col;
	int esc; /* 0 text, 1 after ESC, 2 inside ESC [ */
	char prev;
	uint64_t bytes;
};

static struct screen screen;
static int64_t mono_ms;
static char pin_hash[160];

static void check_byte(struct screen *s, char ch)
{
	unsigned char u = (unsigned char)ch;

	if (s->esc == 1) {
		if (ch != '[')
			abort(); /* the console only writes CSI sequences */
		s->esc = 2;
	} else if (s->esc == 2) {
		if (u >= 0x40 && u <= 0x7e)
			s->esc = 0;
		else if (u < 0x30 || u > 0x3f)
			abort();
	} else if (u == 0x1b) {
		s->esc = 1;
	} else if (ch == '\r') {
		s->col = 0;
	} else if (ch == '\n') {
		if (s->prev != '\r')
			abort(); /* a bare LF: the next line would start mid-screen */
	} else if (ch == '\b') {
		if (s->col > 0)
			s->col--;
	} else if (u < 0x20 || u >= 0x7f) {
		abort(); /* provider or input bytes leaked to the terminal */
	} else if (++s->col > WIDEST) {
		abort();
	}
	s->prev = ch;
}

static void collect(void *ctx, const char *data, size_t n)
{
	struct screen *s = ctx;

	if (n == 0)
		abort(); /* an empty write is a wasted system call on a serial port */
	for (size_t i = 0; i < n; i++)
		check_byte(s, data[i]);
	s->bytes += n;
}

static int64_t fake_clock(void *ctx)
{
	(void)ctx;
	return mono_ms;
}

/* A small gateway whose strings are as hostile as a misbehaving one could make them. */
static void fake_status(void *ctx, struct console_status *st)
{
	(void)ctx;
	memset(st->device, 'D', sizeof(st->device)); /* no NUL */
	strcpy(st->version, "1.0\x1b[2J");
	st->now_ms = INT64_MAX - 5;
	st->uptime_s = INT64_MAX;
	strcpy(st->broker, "broker:8883");
	st->uplink_connected = false;
	st->dropped = UINT64_MAX;
	strcpy(st->uplink_error, "tls: \xc3\xa9\x9b\x07 bad\r\nline");
	st->cert_expiry_ms = INT64_MIN;
	st->last_publish_ms = INT64_MIN;
	strcpy(st->last_error, "x");
	st->last_error_ms = INT64_MAX;
}

static size_t fake_adapters(void *ctx, struct console_adapter *a, size_t cap)
{
	(void)ctx;
	for (size_t i = 0; i < cap && i < 3; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].name[0] = (char)('a' + i);
		strcpy(a[i].type, "modbus-tcp");
		a[i].link_up = i == 0;
		a[i].polls = UINT64_MAX;
		a[i].exceptions = UINT64_MAX;
		a[i].bad_frames = 2;
		a[i].last_ok_ms = i == 2 ? 0 : 1;
		memset(a[i].fault, i == 1 ? 'F' : 0, sizeof(a[i].fault));
		memset(a[i].extra, 'e', sizeof(a[i].extra) - 1);
	}
	return 70; /* more than the console can show */
}

static size_t fake_points(void *ctx, const char *glob, struct console_point *p, size_t cap)
{
	(void)ctx;
	for (size_t i = 0; i < cap && i < 150; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		memset(p[i].name, 'p', sizeof(p[i].name));
		strcpy(p[i].value, glob != NULL && glob[0] == 'x' ? "\x1b]0;pwned\x07" : "1.5");
		p[i].ts_ms = (int64_t)i * 1000000007;
	}
	return glob != NULL && glob[0] == 'n' ? 0 : 150;
}

static size_t fake_rules(void *ctx, struct console_rule *r, size_t cap)
{
	(void)ctx;
	for (size_t i = 0; i < cap && i < 2; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		memset(r[i].rule, 'r', sizeof(r[i].rule));
		r[i].hits = UINT64_MAX;
	}
	return 2;
}

static int fake_why(void *ctx, const char *point, char *out, size_t cap)
{
	(void)ctx;
	if (point[0] == 'n')
		return -1;
	for (size_t i = 0; i + 1 < cap && i < 3000; i++)
		out[i] = i % 97 == 0 ? '\n' : i % 13 == 0 ? ' ' : (char)(i % 251 + 1);
	if (cap > 0)
		out[cap < 3001 ? cap - 1 : 3000] = '\0';
	return 0;
}

static size_t fake_log(void *ctx, size_t n, char *out, size_t cap)
{
	size_t used = 0;

	(void)ctx;
	for (size_t i = 0; i < n && used + 300 < cap; i++) {
		memset(out + used, 'L', 250);
		used += 250;
		out[used++] = '\n';
	}
	out[used] = '\0';
	return n;
}

static int fake_action(void *ctx, enum console_action act, const char *arg, char *msg, size_t cap)
{
	(void)ctx;
	(void)act;
	(void)arg;
	memset(msg, 'm', cap); /* a message as long as it may be, not terminated */
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t steps_ms[] = { 0, 700, 31000, 301000 };
	struct console_config cfg = { .pin_hash = pin_hash,
				      .idle_timeout_s = 300,
				      .lockout_after = 3,
				      .lockout_base_s = 30 };
	struct console_provider prov = {
		.status = fake_status,
		.adapters = fake_adapters,
		.points = fake_points,
		.rules = fake_rules,
		.why = fake_why,
		.log = fake_log,
		.action = fake_action,
	};
	struct console_output out = { .ctx = &screen, .write = collect };
	struct console_clock clk = { .now_ms = fake_clock };
	struct console_stats st;
	struct console *c;
	size_t chunk;

	/* 1000 iterations: every wrong PIN costs a PBKDF2 run. */
	if (pin_hash[0] == '\0' && console_pin_hash("1234", 1000, pin_hash, sizeof(pin_hash)) != 0)
		abort();
	memset(&screen, 0, sizeof(screen));
	mono_ms = 1000;
	c = console_new(&cfg, &prov, &out, &clk);
	if (c == NULL)
		return 0;
	/* Each chunk: a header byte (length 1..64, and how much time passes after), then bytes. */
	while (size > 0) {
		chunk = (size_t)(data[0] & 63) + 1;
		mono_ms += steps_ms[data[0] >> 6];
		data++;
		size--;
		if (chunk > size)
			chunk = size;
		console_input(c, data, chunk);
		console_tick(c);
		data += chunk;
		size -= chunk;
	}
	console_get_stats(c, &st);
	if (st.logged_in && st.logins == 0)
		abort();
	console_reset(c);
	console_free(c);
	return 0;
}
