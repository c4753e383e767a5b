/* console.c: the field console: a line editor, read-only commands and a PIN login, without I/O. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#include "console.h"
#include "../base/base.h"

/*
 * Lines stop one short of the terminal's width: a line of exactly 80 leaves
 * the cursor in the "pending wrap" state, where some terminals wrap at once
 * (a blank line after every row) and xterm's ESC[K erases the last character.
 */
#define LINE_COLS	(CONSOLE_WIDTH - 1)
#define PROMPT_USER	"guardian> "
#define PROMPT_ADMIN	"guardian# "
#define PROMPT_LEN	10
#define MAX_WORDS	4
#define ADAPTERS_SHOWN	64
#define POINTS_SHOWN	100
#define WATCH_ROWS	20 /* a 24-line terminal: header, titles, rows, "... and N more" */
#define RULES_SHOWN	64
#define TEXT_MAX	(48 * 1024) /* log: 200 lines of at most 200 bytes */
#define LOG_DEFAULT	20
#define LOG_MAX		200
#define CSI_MAX		32 /* a longer escape sequence is not a key; stop swallowing */
#define WATCH_PERIOD_MS 1000
#define LOCKOUT_MAX_S	3600
#define OUT_BUF		1024
#define PIN_MIN		4
#define PIN_MAX		12
#define PIN_PREFIX	"pbkdf2-sha256$"
#define PIN_SALT_LEN	16
#define PIN_HASH_LEN	32
#define PIN_ITER_MIN	1000u
#define PIN_ITER_MAX	10000000u

enum esc_state { ESC_NONE, ESC_START, ESC_CSI, ESC_SS3 };

struct console {
	char *pin_hash; /* owned; NULL when login is impossible */
	const char *pin_problem;
	int64_t idle_timeout_ms;
	int lockout_after, lockout_base_s;
	struct console_provider prov;
	struct console_output out;
	struct console_clock clk;

	/* the line being typed */
	char line[CONSOLE_LINE_MAX];
	size_t len;
	size_t overflow; /* bytes typed past the line's end; the line is refused */
	enum esc_state esc;
	unsigned esc_len;
	uint8_t last_end; /* CR or LF that just ended a line; its partner is swallowed */

	bool reading_pin;
	bool watching;
	bool drawing; /* rows end with ESC[K: watch redraws over the old screen */
	char watch_glob[CONSOLE_LINE_MAX];
	int64_t next_draw_ms;
	int64_t last_input_ms;

	bool logged_in;
	unsigned wrong_in_row;
	struct console_stats stats;

	char outbuf[OUT_BUF];
	size_t outlen;

	/* One command runs at a time, so they share one scratch area. */
	union {
		struct console_adapter adapters[ADAPTERS_SHOWN];
		struct console_point points[POINTS_SHOWN];
		struct console_rule rules[RULES_SHOWN];
		char text[TEXT_MAX];
	} scratch;
};

struct column {
	const char *title;
	size_t width;
	bool right;
};

struct command {
	const char *name;
	const char *args;
	const char *help;
	bool privileged;
	int min_args, max_args;
	void (*run)(struct console *c, int argc, char **argv);
};

/* ---- output ------------------------------------------------------------------------------ */

static void flush(struct console *c)
{
	if (c->outlen > 0 && c->out.write != NULL)
		c->out.write(c->out.ctx, c->outbuf, c->outlen);
	c->outlen = 0;
}

static void emit(struct console *c, const char *data, size_t n)
{
	if (c->outlen + n > sizeof(c->outbuf))
		flush(c);
	if (n > sizeof(c->outbuf)) {
		if (c->out.write != NULL)
			c->out.write(c->out.ctx, data, n);
		return;
	}
	memcpy(c->outbuf + c->outlen, data, n);
	c->outlen += n;
}

static void emit_str(struct console *c, const char *s)
{
	emit(c, s, strlen(s));
}

/*
 * Copies at most 'width' columns of 'src' into 'dst' (width + 1 bytes), with
 * '~' as the last column when cut. Anything but printable ASCII becomes '?':
 * the terminal's character set is unknown, and a stray ESC or a byte 0x9b
 * (CSI to an 8-bit terminal) in a name could move the cursor or worse.
 */
static void clip(char *dst, size_t width, const char *src)
{
	size_t i;

	for (i = 0; i < width && src[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[i] = ch == '\t' ? ' ' : ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (src[i] != '\0' && i > 0)
		dst[i - 1] = '~';
	dst[i] = '\0';
}

static void end_line(struct console *c)
{
	emit_str(c, c->drawing ? "\x1b[K\r\n" : "\r\n");
}

/* Every line of text goes out here: cleaned, cut to the width, CR LF ended. */
__attribute__((format(printf, 2, 3))) static void say(struct console *c, const char *fmt, ...)
{
	char raw[512], line[LINE_COLS + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	clip(line, LINE_COLS, raw);
	emit_str(c, line);
	end_line(c);
}

/* Writes 'text' after 'label', wrapped at spaces; later lines indented under the first. */
static void say_wrapped(struct console *c, const char *label, const char *text)
{
	size_t indent = strlen(label), room = LINE_COLS - indent, n;
	bool first = true;

	do {
		n = strlen(text);
		if (n > room) {
			n = room;
			while (n > 0 && text[n] != ' ')
				n--;
			if (n == 0)
				n = room; /* one long word: break it */
		}
		say(c, "%-*s%.*s", (int)indent, first ? label : "", (int)n, text);
		first = false;
		text += n;
		while (*text == ' ')
			text++;
	} while (*text != '\0');
}

/* Splits provider text at newlines and writes each line, wrapped or cut. */
static void say_text(struct console *c, char *text, bool wrap)
{
	char *line = text, *nl;

	while (*line != '\0') {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		line[strcspn(line, "\r")] = '\0';
		if (wrap)
			say_wrapped(c, "", line);
		else
			say(c, "%s", line);
		if (nl == NULL)
			break;
		line = nl + 1;
	}
}

static void prompt(struct console *c)
{
	emit_str(c, c->logged_in ? PROMPT_ADMIN : PROMPT_USER);
}

/* A table row: each cell cut to its column, columns one space apart. */
static void table_row(struct console *c, const struct column *cols, size_t ncols,
		      const char *const *cells)
{
	char line[LINE_COLS + 2], cell[LINE_COLS + 1];
	size_t used = 0;

	for (size_t i = 0; i < ncols && used < LINE_COLS; i++) {
		size_t w = cols[i].width, n, pad;

		if (w > LINE_COLS - used)
			w = LINE_COLS - used;
		clip(cell, w, cells[i]);
		n = strlen(cell);
		pad = w - n;
		if (cols[i].right) {
			memset(line + used, ' ', pad);
			memcpy(line + used + pad, cell, n);
		} else {
			memcpy(line + used, cell, n);
			memset(line + used + n, ' ', pad);
		}
		used += w;
		if (i + 1 < ncols && used < LINE_COLS)
			line[used++] = ' ';
	}
	while (used > 0 && line[used - 1] == ' ')
		used--;
	line[used] = '\0';
	say(c, "%s", line);
}

static void table_head(struct console *c, const struct column *cols, size_t ncols)
{
	const char *titles[16];

	for (size_t i = 0; i < ncols && i < 16; i++)
		titles[i] = cols[i].title;
	table_row(c, cols, ncols < 16 ? ncols : 16, titles);
}

/* ---- numbers and ages -------------------------------------------------------------------- */

static void duration_text(char *buf, size_t cap, int64_t ms)
{
	long long s = ms < 0 ? 0 : (long long)(ms / 1000);

	if (s < 60)
		snprintf(buf, cap, "%llds", s);
	else if (s < 3600)
		snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, cap, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, cap, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* a - b, saturated: the stamps come from the gateway and a broken clock must not overflow. */
static int64_t diff_ms(int64_t a, int64_t b)
{
	int64_t d;

	if (__builtin_sub_overflow(a, b, &d))
		return a > b ? INT64_MAX : INT64_MIN;
	return d;
}

/* The age of a UTC stamp; "never" for 0. A stamp from the future reads as 0s. */
static const char *age_text(char *buf, size_t cap, int64_t now_ms, int64_t then_ms)
{
	if (then_ms == 0) {
		snprintf(buf, cap, "never");
		return buf;
	}
	duration_text(buf, cap, diff_ms(now_ms, then_ms));
	return buf;
}

/* A counter in at most 'width' characters: exact when it fits, else 12k, 340M, ... */
static const char *count_text(char *buf, size_t cap, size_t width, uint64_t v)
{
	static const char units[] = "kMGTPE";
	int unit = -1;

	snprintf(buf, cap, "%llu", (unsigned long long)v);
	while (strlen(buf) > width && unit < 5) {
		v /= 1000;
		unit++;
		snprintf(buf, cap, "%llu%c", (unsigned long long)v, units[unit]);
	}
	return buf;
}

/* ---- the provider, defended: a missing callback shows nothing, strings always end -------- */

#define TERMINATE(field) ((field)[sizeof(field) - 1] = '\0')

static void get_status(struct console *c, struct console_status *st)
{
	memset(st, 0, sizeof(*st));
	if (c->prov.status != NULL)
		c->prov.status(c->prov.ctx, st);
	TERMINATE(st->device);
	TERMINATE(st->version);
	TERMINATE(st->broker);
	TERMINATE(st->uplink_error);
	TERMINATE(st->last_error);
}

/* Fills the scratch adapters; returns how many exist; '*shown' how many are there. */
static size_t get_adapters(struct console *c, size_t *shown)
{
	struct console_adapter *a = c->scratch.adapters;
	size_t n = 0;

	memset(a, 0, sizeof(c->scratch.adapters));
	if (c->prov.adapters != NULL)
		n = c->prov.adapters(c->prov.ctx, a, ADAPTERS_SHOWN);
	*shown = n < ADAPTERS_SHOWN ? n : ADAPTERS_SHOWN;
	for (size_t i = 0; i < *shown; i++) {
		TERMINATE(a[i].name);
		TERMINATE(a[i].type);
		TERMINATE(a[i].fault);
		TERMINATE(a[i].extra);
	}
	return n;
}

static size_t get_points(struct console *c, const char *glob, size_t cap, size_t *shown)
{
	struct console_point *p = c->scratch.points;
	size_t n = 0;

	memset(p, 0, sizeof(c->scratch.points));
	if (c->prov.points != NULL)
		n = c->prov.points(c->prov.ctx, glob, p, cap);
	*shown = n < cap ? n : cap;
	for (size_t i = 0; i < *shown; i++) {
		TERMINATE(p[i].name);
		TERMINATE(p[i].value);
		TERMINATE(p[i].unit);
		TERMINATE(p[i].quality);
	}
	return n;
}

static int64_t mono_now(struct console *c)
{
	return c->clk.now_ms != NULL ? c->clk.now_ms(c->clk.ctx) : 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

static void cmd_help(struct console *c, int argc, char **argv);

static void banner(struct console *c)
{
	struct console_status st;

	get_status(c, &st);
	say(c, "guardian %s on %s - type help", st.version[0] ? st.version : "?",
	    st.device[0] ? st.device : "?");
}

/* The verdict's list of what is wrong, "; "-separated, into 'out'. Returns how many. */
static int status_faults(struct console *c, const struct console_status *st, size_t shown,
			 char *out, size_t cap)
{
	const struct console_adapter *a = c->scratch.adapters;
	char age[24];
	size_t used = 0;
	int n = 0;

#define ADD(...)                                                                                   \
	do {                                                                                       \
		if (used < cap)                                                                    \
			used += (size_t)snprintf(out + used, cap - used, "%s", n++ ? "; " : "");   \
		if (used < cap)                                                                    \
			used += (size_t)snprintf(out + used, cap - used, __VA_ARGS__);             \
	} while (0)

	out[0] = '\0';
	for (size_t i = 0; i < shown; i++) {
		if (a[i].link_up)
			continue;
		if (a[i].fault[0] != '\0')
			ADD("%s down (%s)", a[i].name, a[i].fault);
		else
			ADD("%s down", a[i].name);
	}
	if (!st->uplink_connected && st->uplink_error[0] != '\0')
		ADD("uplink disconnected (%s)", st->uplink_error);
	else if (!st->uplink_connected)
		ADD("uplink disconnected");
	if (st->cert_expiry_ms != 0 && st->cert_expiry_ms <= st->now_ms) {
		ADD("certificate expired %s ago",
		    age_text(age, sizeof(age), st->now_ms, st->cert_expiry_ms));
	} else if (st->cert_expiry_ms != 0 &&
		   diff_ms(st->cert_expiry_ms, st->now_ms) < 3600 * 1000) {
		duration_text(age, sizeof(age), diff_ms(st->cert_expiry_ms, st->now_ms));
		ADD("certificate expires in %s", age);
	}
	if (st->dropped > 0)
		ADD("uplink queue dropped %llu msgs", (unsigned long long)st->dropped);
#undef ADD
	return n;
}

static void status_adapters(struct console *c, const struct console_status *st, size_t shown)
{
	static const struct column cols[] = {
		{ .title = "ADAPTER", .width = 16 }, { .title = "TYPE", .width = 10 },
		{ .title = "LINK", .width = 4 },     { .title = "LAST OK", .width = 7 },
		{ .title = "FAULT", .width = 38 },
	};
	const struct console_adapter *a = c->scratch.adapters;
	char age[24];

	table_head(c, cols, 5);
	for (size_t i = 0; i < shown; i++) {
		const char *cells[] = { a[i].name, a[i].type, a[i].link_up ? "up" : "DOWN",
					age_text(age, sizeof(age), st->now_ms, a[i].last_ok_ms),
					a[i].fault };

		table_row(c, cols, 5, cells);
	}
}

static void status_tail(struct console *c, const struct console_status *st)
{
	char broker[48], age[24], age2[24];

	clip(broker, 40, st->broker[0] ? st->broker : "(none)");
	say(c, "uplink:  %s %s, %llu queued, last publish %s%s", broker,
	    st->uplink_connected ? "connected" : "DISCONNECTED",
	    (unsigned long long)st->queued_msgs,
	    age_text(age, sizeof(age), st->now_ms, st->last_publish_ms),
	    st->last_publish_ms ? " ago" : "");
	if (st->cert_expiry_ms != 0 && st->cert_expiry_ms <= st->now_ms)
		say(c, "cert:    EXPIRED %s ago",
		    age_text(age, sizeof(age), st->now_ms, st->cert_expiry_ms));
	else if (st->cert_expiry_ms != 0) {
		duration_text(age2, sizeof(age2), diff_ms(st->cert_expiry_ms, st->now_ms));
		say(c, "cert:    expires in %s", age2);
	}
	if (st->last_error[0] != '\0')
		say(c, "last error %s ago: %s",
		    age_text(age, sizeof(age), st->now_ms, st->last_error_ms), st->last_error);
	else
		say(c, "last error: none");
}

static void cmd_status(struct console *c, int argc, char **argv)
{
	struct console_status st;
	char faults[1024], up[24];
	size_t shown, total;

	(void)argc;
	(void)argv;
	get_status(c, &st);
	total = get_adapters(c, &shown);
	if (status_faults(c, &st, shown, faults, sizeof(faults)) == 0)
		say(c, "OK: all adapters up, uplink connected");
	else
		say_wrapped(c, "FAULT: ", faults);
	duration_text(up, sizeof(up),
		      st.uptime_s > INT64_MAX / 1000 ? INT64_MAX : st.uptime_s * 1000);
	say(c, "device:  %s  version %s  up %s", st.device, st.version, up);
	status_adapters(c, &st, shown);
	if (total > shown)
		say(c, "... and %zu more adapters", total - shown);
	status_tail(c, &st);
}

static void cmd_adapters(struct console *c, int argc, char **argv)
{
	static const struct column cols[] = {
		{ .title = "ADAPTER", .width = 14 },
		{ .title = "TYPE", .width = 10 },
		{ .title = "LINK", .width = 4 },
		{ .title = "POLLS", .width = 8, .right = true },
		{ .title = "OK", .width = 8, .right = true },
		{ .title = "TIMEOUT", .width = 7, .right = true },
		{ .title = "ERRORS", .width = 6, .right = true },
		{ .title = "RECONN", .width = 6, .right = true },
		{ .title = "LAST OK", .width = 7, .right = true },
	};
	const struct console_adapter *a = c->scratch.adapters;
	struct console_status st;
	char n[5][24], age[24];
	size_t shown, total;

	(void)argc;
	(void)argv;
	get_status(c, &st);
	total = get_adapters(c, &shown);
	if (total == 0) {
		say(c, "no adapters configured");
		return;
	}
	table_head(c, cols, 9);
	for (size_t i = 0; i < shown; i++) {
		const char *cells[] = {
			a[i].name,
			a[i].type,
			a[i].link_up ? "up" : "DOWN",
			count_text(n[0], sizeof(n[0]), 8, a[i].polls),
			count_text(n[1], sizeof(n[1]), 8, a[i].polls_ok),
			count_text(n[2], sizeof(n[2]), 7, a[i].timeouts),
			count_text(n[3], sizeof(n[3]), 6,
				   a[i].exceptions + a[i].bad_frames + a[i].io_errors),
			count_text(n[4], sizeof(n[4]), 6, a[i].reconnects),
			age_text(age, sizeof(age), st.now_ms, a[i].last_ok_ms),
		};

		table_row(c, cols, 9, cells);
	}
	if (total > shown)
		say(c, "... and %zu more", total - shown);
}

/* "no adapter "x"; adapters: a, b", the list cut to the line. */
static void no_adapter(struct console *c, const char *name, size_t shown)
{
	char quoted[40], list[LINE_COLS * 2];
	size_t used = 0;

	list[0] = '\0';
	for (size_t i = 0; i < shown && used < LINE_COLS; i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
					 c->scratch.adapters[i].name);
	clip(quoted, 32, name);
	say(c, "no adapter \"%s\"; adapters: %s", quoted, shown ? list : "(none)");
}

static void cmd_adapter(struct console *c, int argc, char **argv)
{
	const struct console_adapter *a = NULL;
	struct console_status st;
	char age[24], label[24];
	size_t shown;

	(void)argc;
	get_status(c, &st);
	get_adapters(c, &shown);
	for (size_t i = 0; i < shown && a == NULL; i++) {
		if (strcmp(c->scratch.adapters[i].name, argv[1]) == 0)
			a = &c->scratch.adapters[i];
	}
	if (a == NULL) {
		no_adapter(c, argv[1], shown);
		return;
	}
	say(c, "name:         %s", a->name);
	say(c, "type:         %s", a->type);
	say(c, "link:         %s", a->link_up ? "up" : "DOWN");
	say(c, "polls:        %llu", (unsigned long long)a->polls);
	say(c, "polls ok:     %llu", (unsigned long long)a->polls_ok);
	say(c, "timeouts:     %llu", (unsigned long long)a->timeouts);
	say(c, "exceptions:   %llu", (unsigned long long)a->exceptions);
	say(c, "bad frames:   %llu", (unsigned long long)a->bad_frames);
	say(c, "io errors:    %llu", (unsigned long long)a->io_errors);
	say(c, "reconnects:   %llu", (unsigned long long)a->reconnects);
	say(c, "samples:      %llu", (unsigned long long)a->samples);
	age_text(age, sizeof(age), st.now_ms, a->last_ok_ms);
	say(c, "last ok:      %s%s", age, a->last_ok_ms ? " ago" : "");
	say_wrapped(c, "fault:        ", a->fault[0] ? a->fault : "none");
	if (a->fault[0] != '\0') {
		age_text(age, sizeof(age), st.now_ms, a->fault_since_ms);
		say(c, "fault since:  %s%s", age, a->fault_since_ms ? " ago" : "");
	}
	snprintf(label, sizeof(label), "%-14s", "extra:");
	say_wrapped(c, label, a->extra[0] ? a->extra : "none");
}

/* The points table, at most 'cap' rows; used by `points` and `watch`. */
static void points_table(struct console *c, const char *glob, size_t cap, const char *more)
{
	static const struct column cols[] = {
		{ .title = "POINT", .width = 32 },
		{ .title = "VALUE", .width = 16, .right = true },
		{ .title = "UNIT", .width = 8 },
		{ .title = "QUALITY", .width = 10 },
		{ .title = "AGE", .width = 7, .right = true },
	};
	const struct console_point *p = c->scratch.points;
	struct console_status st;
	char age[24], quoted[40];
	size_t shown, total;

	get_status(c, &st);
	total = get_points(c, glob, cap, &shown);
	if (total == 0) {
		clip(quoted, 32, glob != NULL ? glob : "*");
		say(c, "no point matches \"%s\"", quoted);
		return;
	}
	table_head(c, cols, 5);
	for (size_t i = 0; i < shown; i++) {
		const char *cells[] = { p[i].name, p[i].value, p[i].unit, p[i].quality,
					age_text(age, sizeof(age), st.now_ms, p[i].ts_ms) };

		table_row(c, cols, 5, cells);
	}
	if (total > shown)
		say(c, "... and %zu more %s", total - shown, more);
}

static void cmd_points(struct console *c, int argc, char **argv)
{
	points_table(c, argc > 1 ? argv[1] : NULL, POINTS_SHOWN, "(narrow it with a glob)");
}

static void cmd_policy(struct console *c, int argc, char **argv)
{
	static const struct column cols[] = {
		{ .title = "RULE", .width = 32 },
		{ .title = "HITS", .width = 14, .right = true },
		{ .title = "DROPS", .width = 14, .right = true },
		{ .title = "REFUSALS", .width = 14, .right = true },
	};
	struct console_rule *r = c->scratch.rules;
	char n[3][24];
	size_t total = 0, shown;

	(void)argc;
	(void)argv;
	memset(r, 0, sizeof(c->scratch.rules));
	if (c->prov.rules != NULL)
		total = c->prov.rules(c->prov.ctx, r, RULES_SHOWN);
	shown = total < RULES_SHOWN ? total : RULES_SHOWN;
	if (total == 0) {
		say(c, "no policy rules");
		return;
	}
	table_head(c, cols, 4);
	for (size_t i = 0; i < shown; i++) {
		const char *cells[] = { r[i].rule, count_text(n[0], sizeof(n[0]), 14, r[i].hits),
					count_text(n[1], sizeof(n[1]), 14, r[i].drops),
					count_text(n[2], sizeof(n[2]), 14, r[i].refusals) };

		TERMINATE(r[i].rule);
		table_row(c, cols, 4, cells);
	}
	if (total > shown)
		say(c, "... and %zu more", total - shown);
}

static void cmd_why(struct console *c, int argc, char **argv)
{
	char *text = c->scratch.text, quoted[40];
	int rc = -1;

	(void)argc;
	text[0] = '\0';
	if (c->prov.why != NULL)
		rc = c->prov.why(c->prov.ctx, argv[1], text, TEXT_MAX);
	text[TEXT_MAX - 1] = '\0';
	if (rc < 0) {
		clip(quoted, 32, argv[1]);
		say(c, "no point \"%s\"", quoted);
		return;
	}
	say_text(c, text, true);
}

static void cmd_uplink(struct console *c, int argc, char **argv)
{
	struct console_status st;
	char age[24];

	(void)argc;
	(void)argv;
	get_status(c, &st);
	say_wrapped(c, "broker:        ", st.broker[0] ? st.broker : "(none)");
	say(c, "state:         %s", st.uplink_connected ? "connected" : "DISCONNECTED");
	say(c, "connects:      %llu", (unsigned long long)st.connects);
	say(c, "queued:        %llu msgs, %llu bytes", (unsigned long long)st.queued_msgs,
	    (unsigned long long)st.queued_bytes);
	say(c, "published:     %llu", (unsigned long long)st.published);
	say(c, "dropped:       %llu", (unsigned long long)st.dropped);
	age_text(age, sizeof(age), st.now_ms, st.last_publish_ms);
	say(c, "last publish:  %s%s", age, st.last_publish_ms ? " ago" : "");
	say_wrapped(c, "last error:    ", st.uplink_error[0] ? st.uplink_error : "none");
}

/* Parses a count of decimal digits only; -1 if it is not one. */
static long parse_count(const char *s)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 6)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static void cmd_log(struct console *c, int argc, char **argv)
{
	char *text = c->scratch.text;
	long n = LOG_DEFAULT;

	if (argc > 1) {
		n = parse_count(argv[1]);
		if (n < 1) {
			say(c, "usage: log [N] (N from 1 to %d)", LOG_MAX);
			return;
		}
	}
	if (n > LOG_MAX)
		n = LOG_MAX;
	text[0] = '\0';
	if (c->prov.log != NULL)
		c->prov.log(c->prov.ctx, (size_t)n, text, TEXT_MAX);
	text[TEXT_MAX - 1] = '\0';
	if (text[0] == '\0') {
		say(c, "the log is empty");
		return;
	}
	say_text(c, text, false);
}

/* One frame of `watch`: from the top left, each line erasing what was there. */
static void watch_draw(struct console *c)
{
	char glob[40];

	clip(glob, 32, c->watch_glob[0] ? c->watch_glob : "*");
	emit_str(c, "\x1b[H");
	c->drawing = true;
	say(c, "watch %s (any key to stop)", glob);
	points_table(c, c->watch_glob[0] ? c->watch_glob : NULL, WATCH_ROWS, "(narrow the glob)");
	c->drawing = false;
	emit_str(c, "\x1b[J");
	c->next_draw_ms = mono_now(c) + WATCH_PERIOD_MS;
}

static void cmd_watch(struct console *c, int argc, char **argv)
{
	snprintf(c->watch_glob, sizeof(c->watch_glob), "%s", argc > 1 ? argv[1] : "");
	c->watching = true;
	emit_str(c, "\x1b[H\x1b[2J");
	watch_draw(c);
}

static void watch_stop(struct console *c)
{
	c->watching = false;
	prompt(c);
}

static int64_t lock_left_ms(struct console *c)
{
	int64_t left = c->stats.locked_until_ms - mono_now(c);

	if (c->stats.locked_until_ms == 0 || left <= 0) {
		c->stats.locked_until_ms = 0;
		return 0;
	}
	return left;
}

static void cmd_login(struct console *c, int argc, char **argv)
{
	int64_t left;

	(void)argc;
	(void)argv;
	if (c->pin_hash == NULL && c->pin_problem != NULL) {
		say(c, "login is not configured (console.pin_hash: %s)", c->pin_problem);
		return;
	}
	if (c->pin_hash == NULL) {
		say(c, "login is not configured (set console.pin_hash)");
		return;
	}
	if (c->logged_in) {
		say(c, "already logged in");
		return;
	}
	left = lock_left_ms(c);
	if (left > 0) {
		say(c, "login locked for another %llds after %u wrong PINs",
		    (long long)((left + 999) / 1000), c->wrong_in_row);
		return;
	}
	emit_str(c, "PIN: ");
	c->reading_pin = true;
}

/* Each wrong PIN from the 'lockout_after'th on locks, twice as long as the one before. */
static void pin_wrong(struct console *c)
{
	unsigned extra;
	int64_t lock_s;

	c->wrong_in_row++;
	c->stats.login_failures++;
	say(c, "wrong PIN");
	if (c->wrong_in_row < (unsigned)c->lockout_after)
		return;
	extra = c->wrong_in_row - (unsigned)c->lockout_after;
	lock_s = (int64_t)c->lockout_base_s << (extra < 12 ? extra : 12);
	if (lock_s > LOCKOUT_MAX_S)
		lock_s = LOCKOUT_MAX_S;
	c->stats.locked_until_ms = mono_now(c) + lock_s * 1000;
	c->stats.lockouts++;
}

static void pin_entered(struct console *c)
{
	int64_t minutes = c->idle_timeout_ms / 60000;

	c->reading_pin = false;
	if (c->len == 0) {
		say(c, "login cancelled");
		return;
	}
	if (!console_pin_verify(c->line, c->pin_hash)) {
		pin_wrong(c);
		return;
	}
	c->logged_in = true;
	c->wrong_in_row = 0;
	c->stats.locked_until_ms = 0;
	c->stats.logins++;
	if (c->idle_timeout_ms % 60000 == 0)
		say(c, "logged in; privileged commands enabled for %lld minute%s of inactivity",
		    (long long)minutes, minutes == 1 ? "" : "s");
	else
		say(c, "logged in; privileged commands enabled for %lld seconds of inactivity",
		    (long long)(c->idle_timeout_ms / 1000));
}

static void cmd_logout(struct console *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	say(c, c->logged_in ? "logged out" : "not logged in");
	c->logged_in = false;
}

static void run_action(struct console *c, enum console_action act, const char *arg)
{
	char msg[160];
	int rc = -1;

	msg[0] = '\0';
	if (c->prov.action != NULL)
		rc = c->prov.action(c->prov.ctx, act, arg, msg, sizeof(msg));
	msg[sizeof(msg) - 1] = '\0';
	if (msg[0] != '\0')
		say_wrapped(c, "", msg);
	else
		say(c, rc == 0 ? "done" : "failed");
}

static void cmd_restart(struct console *c, int argc, char **argv)
{
	(void)argc;
	run_action(c, CONSOLE_RESTART_ADAPTER, argv[1]);
}

static void cmd_reconnect(struct console *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	run_action(c, CONSOLE_RECONNECT_UPLINK, NULL);
}

static void cmd_ack(struct console *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	run_action(c, CONSOLE_ACK_FAULTS, NULL);
}

/*
 * Every command. None writes to the machine: the console reads, and the few
 * privileged commands only restart the gateway's own connections.
 */
static const struct command commands[] = {
	{ "help", "", "this list", false, 0, 0, cmd_help },
	{ "status", "", "is everything fine? verdict, adapters, uplink", false, 0, 0, cmd_status },
	{ "adapters", "", "counters of every adapter", false, 0, 0, cmd_adapters },
	{ "adapter", "NAME", "everything about one adapter", false, 1, 1, cmd_adapter },
	{ "points", "[GLOB]", "point values, e.g. points 'boiler*'", false, 0, 1, cmd_points },
	{ "policy", "", "policy rule counters", false, 0, 0, cmd_policy },
	{ "why", "POINT", "why the policy lets a point through or not", false, 1, 1, cmd_why },
	{ "uplink", "", "the cloud connection", false, 0, 0, cmd_uplink },
	{ "log", "[N]", "the last N log lines (20, at most 200)", false, 0, 1, cmd_log },
	{ "watch", "[GLOB]", "points, redrawn every second (any key stops)", false, 0, 1,
	  cmd_watch },
	{ "login", "", "enter the PIN for the commands below", false, 0, 0, cmd_login },
	{ "logout", "", "end the login (also exit, quit)", false, 0, 0, cmd_logout },
	{ "exit", NULL, NULL, false, 0, 0, cmd_logout },
	{ "quit", NULL, NULL, false, 0, 0, cmd_logout },
	{ "restart", "ADAPTER", "reconnect one adapter", true, 1, 1, cmd_restart },
	{ "reconnect", "", "reconnect the uplink", true, 0, 0, cmd_reconnect },
	{ "ack", "", "acknowledge shown faults, clear the last error", true, 0, 0, cmd_ack },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void cmd_help(struct console *c, int argc, char **argv)
{
	char usage[32];

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const struct command *cmd = &commands[i];

		if (cmd->help == NULL)
			continue;
		snprintf(usage, sizeof(usage), "%s %s", cmd->name, cmd->args);
		say(c, "  %-18s %s%s", usage, cmd->help, cmd->privileged ? " (login)" : "");
	}
	say(c, "Nothing here writes to the machine. (login): needs the PIN.");
}

static const struct command *find_command(const char *word)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcasecmp(commands[i].name, word) == 0)
			return &commands[i];
	}
	return NULL;
}

static void run_line(struct console *c)
{
	char *argv[MAX_WORDS];
	const struct command *cmd;
	char quoted[40];
	int argc;

	argc = (int)console_split(c->line, argv, MAX_WORDS);
	if (argc == 0)
		return;
	c->stats.lines++;
	cmd = find_command(argv[0]);
	if (cmd == NULL) {
		clip(quoted, 32, argv[0]);
		say(c, "unknown command \"%s\"; type help", quoted);
	} else if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args) {
		say(c, "usage: %s %s", cmd->name, cmd->args != NULL ? cmd->args : "");
	} else if (cmd->privileged && !c->logged_in) {
		say(c, "\"%s\" needs login (type login)", cmd->name);
	} else {
		cmd->run(c, argc, argv);
	}
}

/* ---- the line editor --------------------------------------------------------------------- */

static void clear_line(struct console *c)
{
	mbedtls_platform_zeroize(c->line, sizeof(c->line)); /* it may have held a PIN */
	c->len = 0;
	c->overflow = 0;
}

static void line_end(struct console *c)
{
	emit_str(c, "\r\n");
	c->line[c->len] = '\0';
	if (c->overflow > 0) {
		c->reading_pin = false;
		say(c, "line too long (%zu bytes); ignored", c->len + c->overflow);
	} else if (c->reading_pin) {
		pin_entered(c);
	} else {
		run_line(c);
	}
	clear_line(c);
	if (!c->watching)
		prompt(c);
}

static void erase_char(struct console *c)
{
	if (c->len == 0 || c->overflow > 0)
		return; /* an overlong line is lost anyway; the notice says so */
	c->len--;
	emit_str(c, "\b \b");
}

/* ^U: erase on screen while the line fits one row; else start a fresh one. */
static void erase_line(struct console *c)
{
	if (c->overflow == 0 && PROMPT_LEN + c->len < LINE_COLS) {
		while (c->len > 0)
			erase_char(c);
	} else {
		emit_str(c, "\r\n");
		prompt(c);
	}
	clear_line(c);
}

static void abandon_line(struct console *c)
{
	emit_str(c, "^C\r\n");
	if (c->reading_pin)
		say(c, "login cancelled");
	c->reading_pin = false;
	clear_line(c);
	prompt(c);
}

static void add_char(struct console *c, uint8_t ch)
{
	if (c->len + 1 >= CONSOLE_LINE_MAX || c->overflow > 0) {
		c->overflow++;
		c->stats.dropped_bytes++;
		return;
	}
	c->line[c->len++] = (char)ch;
	emit(c, c->reading_pin ? "*" : (const char *)&ch, 1);
}

/* Swallows the bytes of an escape sequence; returns false when 'ch' is not part of one. */
static bool in_escape(struct console *c, uint8_t ch)
{
	if (c->esc == ESC_NONE)
		return false;
	if (ch < 0x20 || ch >= 0x7f) {
		c->esc = ESC_NONE; /* not a key after all: handle the byte as typed */
		return false;
	}
	if (c->esc == ESC_START && (ch == '[' || ch == 'O')) {
		c->esc = ch == '[' ? ESC_CSI : ESC_SS3;
		c->esc_len = 0;
		return true;
	}
	if (c->esc == ESC_CSI && ch < 0x40 && ++c->esc_len < CSI_MAX)
		return true; /* parameter and intermediate bytes */
	c->esc = ESC_NONE;   /* the final byte, or the one after ESC or ESC O */
	return true;
}

static void input_byte(struct console *c, uint8_t ch)
{
	uint8_t pair = c->last_end;

	c->last_end = 0;
	if (in_escape(c, ch))
		return;
	if (ch == '\r' || ch == '\n') {
		if (pair != 0 && pair != ch)
			return; /* CR LF or LF CR: one line end */
		c->last_end = ch;
		line_end(c);
	} else if (ch == 0x08 || ch == 0x7f) {
		erase_char(c);
	} else if (ch == 0x15) {
		erase_line(c);
	} else if (ch == 0x03) {
		abandon_line(c);
	} else if (ch == 0x1b) {
		c->esc = ESC_START;
	} else if (ch >= 0x20 && ch < 0x7f) {
		add_char(c, ch);
	} else {
		c->stats.dropped_bytes++;
	}
}

/* The key that stops `watch` is used up, but an arrow key's tail or CR's LF must not be typed. */
static void watch_key(struct console *c, uint8_t ch)
{
	watch_stop(c);
	c->esc = ch == 0x1b ? ESC_START : ESC_NONE;
	c->last_end = ch == '\r' || ch == '\n' ? ch : 0;
}

/* ---- the public interface ---------------------------------------------------------------- */

struct console *console_new(const struct console_config *cfg, const struct console_provider *p,
			    const struct console_output *out, const struct console_clock *clk)
{
	struct console *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if (cfg != NULL && cfg->pin_hash != NULL) {
		c->pin_problem = console_pin_hash_check(cfg->pin_hash);
		c->pin_hash = c->pin_problem == NULL ? strdup(cfg->pin_hash) : NULL;
		if (c->pin_problem == NULL && c->pin_hash == NULL) {
			free(c);
			return NULL;
		}
	}
	c->idle_timeout_ms = (cfg != NULL && cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : 300) *
			     (int64_t)1000;
	c->lockout_after = cfg != NULL && cfg->lockout_after > 0 ? cfg->lockout_after : 5;
	c->lockout_base_s = cfg != NULL && cfg->lockout_base_s > 0 ? cfg->lockout_base_s : 30;
	if (c->lockout_base_s > LOCKOUT_MAX_S)
		c->lockout_base_s = LOCKOUT_MAX_S;
	if (p != NULL)
		c->prov = *p;
	if (out != NULL)
		c->out = *out;
	if (clk != NULL)
		c->clk = *clk;
	console_reset(c);
	return c;
}

void console_free(struct console *c)
{
	if (c == NULL)
		return;
	flush(c);
	free(c->pin_hash);
	mbedtls_platform_zeroize(c, sizeof(*c));
	free(c);
}

void console_input(struct console *c, const uint8_t *data, size_t n)
{
	if (n == 0)
		return;
	c->last_input_ms = mono_now(c);
	for (size_t i = 0; i < n; i++) {
		if (c->watching)
			watch_key(c, data[i]);
		else
			input_byte(c, data[i]);
	}
	flush(c);
}

void console_tick(struct console *c)
{
	int64_t now = mono_now(c);

	if (c->watching) {
		if (now >= c->next_draw_ms)
			watch_draw(c);
	} else if (c->reading_pin && now - c->last_input_ms >= c->idle_timeout_ms) {
		emit_str(c, "\r\n");
		say(c, "PIN entry timed out");
		c->reading_pin = false;
		clear_line(c);
		prompt(c);
	} else if (c->logged_in && now - c->last_input_ms >= c->idle_timeout_ms) {
		emit_str(c, "\r\n");
		say(c, "session ended after %lld s idle; logged out",
		    (long long)(c->idle_timeout_ms / 1000));
		c->logged_in = false;
		prompt(c);
		emit(c, c->line, c->len); /* what was typed so far stays on the new line */
	}
	flush(c);
}

/* A new connection may be a new person: the login ends; the lockout stays. */
void console_reset(struct console *c)
{
	c->watching = false;
	c->reading_pin = false;
	c->logged_in = false;
	c->esc = ESC_NONE;
	c->last_end = 0;
	clear_line(c);
	c->last_input_ms = mono_now(c);
	emit_str(c, "\r\n");
	banner(c);
	prompt(c);
	flush(c);
}

void console_get_stats(const struct console *c, struct console_stats *out)
{
	int64_t now = c->clk.now_ms != NULL ? c->clk.now_ms(c->clk.ctx) : 0;

	*out = c->stats;
	out->logged_in = c->logged_in;
	if (out->locked_until_ms != 0 && out->locked_until_ms <= now)
		out->locked_until_ms =
			0; /* a lock that ran out is only cleared at the next login */
}

size_t console_split(char *line, char **words, size_t max)
{
	size_t n = 0;
	char *s = line;

	while (n < max) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		words[n++] = s;
		while (*s != '\0' && *s != ' ' && *s != '\t')
			s++;
		if (*s == '\0')
			break;
		*s++ = '\0';
	}
	return n;
}

/* ---- PIN hashing ------------------------------------------------------------------------- */

static bool pin_valid(const char *pin)
{
	size_t n = strlen(pin);

	if (n < PIN_MIN || n > PIN_MAX)
		return false;
	return strspn(pin, "0123456789") == n;
}

static int pbkdf2(const char *pin, const uint8_t *salt, unsigned iterations,
		  uint8_t out[PIN_HASH_LEN])
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	mbedtls_md_context_t ctx;
	int rc = -1;

	mbedtls_md_init(&ctx);
	if (md == NULL || mbedtls_md_setup(&ctx, md, 1) != 0)
		goto out;
	if (mbedtls_pkcs5_pbkdf2_hmac(&ctx, (const unsigned char *)pin, strlen(pin), salt,
				      PIN_SALT_LEN, iterations, PIN_HASH_LEN, out) != 0)
		goto out;
	rc = 0;
out:
	mbedtls_md_free(&ctx);
	return rc;
}

struct pin_record {
	unsigned iterations;
	uint8_t salt[PIN_SALT_LEN];
	uint8_t hash[PIN_HASH_LEN];
};

static const char *pin_parse(const char *text, struct pin_record *r)
{
	const char *s;
	unsigned long v = 0;
	size_t digits;

	if (text == NULL || text[0] == '\0')
		return "empty";
	if (strncmp(text, PIN_PREFIX, strlen(PIN_PREFIX)) != 0)
		return "does not start with \"" PIN_PREFIX "\"";
	s = text + strlen(PIN_PREFIX);
	digits = strspn(s, "0123456789");
	if (digits == 0 || digits > 8 || s[digits] != '$')
		return "iterations are not a number followed by '$'";
	for (size_t i = 0; i < digits; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	if (v < PIN_ITER_MIN || v > PIN_ITER_MAX)
		return "iterations are not between 1000 and 10000000";
	r->iterations = (unsigned)v;
	s += digits + 1;
	if (strnlen(s, 2 * PIN_SALT_LEN + 1) < 2 * PIN_SALT_LEN + 1 ||
	    !gd_hex_decode(s, r->salt, PIN_SALT_LEN, '$'))
		return "the salt is not 32 hex digits (16 bytes) followed by '$'";
	s += 2 * PIN_SALT_LEN + 1;
	if (strnlen(s, 2 * PIN_HASH_LEN + 1) != 2 * PIN_HASH_LEN ||
	    !gd_hex_decode(s, r->hash, PIN_HASH_LEN, '\0'))
		return "the hash is not 64 hex digits (32 bytes)";
	return NULL;
}

int console_pin_hash(const char *pin, unsigned iterations, char *out, size_t cap)
{
	uint8_t salt[PIN_SALT_LEN], hash[PIN_HASH_LEN];
	char salt_hex[2 * PIN_SALT_LEN + 1], hash_hex[2 * PIN_HASH_LEN + 1];
	ssize_t got;
	int rc = -1, n;

	if (pin == NULL || out == NULL || !pin_valid(pin) || iterations < PIN_ITER_MIN ||
	    iterations > PIN_ITER_MAX)
		return -1;
	do
		got = getrandom(salt, sizeof(salt), 0);
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)sizeof(salt) || pbkdf2(pin, salt, iterations, hash) != 0)
		goto out;
	gd_hex_encode(salt, sizeof(salt), salt_hex);
	gd_hex_encode(hash, sizeof(hash), hash_hex);
	n = snprintf(out, cap, PIN_PREFIX "%u$%s$%s", iterations, salt_hex, hash_hex);
	if (n > 0 && (size_t)n < cap)
		rc = 0;
	else if (cap > 0)
		out[0] = '\0';
out:
	mbedtls_platform_zeroize(hash, sizeof(hash));
	return rc;
}

bool console_pin_verify(const char *pin, const char *hash)
{
	struct pin_record r;
	uint8_t got[PIN_HASH_LEN], diff = 0;

	if (pin == NULL || !pin_valid(pin) || pin_parse(hash, &r) != NULL)
		return false;
	if (pbkdf2(pin, r.salt, r.iterations, got) != 0)
		return false;
	for (size_t i = 0; i < PIN_HASH_LEN; i++) /* constant time: no early exit */
		diff |= (uint8_t)(got[i] ^ r.hash[i]);
	mbedtls_platform_zeroize(got, sizeof(got));
	return diff == 0;
}

const char *console_pin_hash_check(const char *hash)
{
	struct pin_record r;

	return pin_parse(hash, &r);
}
