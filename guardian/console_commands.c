/* console_commands.c: the field console's commands: status, adapters, points, policy, why,
 * uplink, log and watch, which only read, and the few privileged ones, which restart the gateway's
 * own connections; their tables cut to the terminal's width. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "console_private.h"

#define MAX_WORDS	4
#define WATCH_ROWS	20 /* a 24-line terminal: header, titles, rows, "... and N more" */
#define LOG_DEFAULT	20
#define LOG_MAX		200
#define WATCH_PERIOD_MS 1000

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
	int min_args, max_args;				 /* 0 or 1 */
	void (*run)(struct console *c, const char *arg); /* the argument, or NULL */
};

/* ---- output ------------------------------------------------------------------------------ */

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
		console_say(c, "%-*s%.*s", (int)indent, first ? label : "", (int)n, text);
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
			console_say(c, "%s", line);
		if (nl == NULL)
			break;
		line = nl + 1;
	}
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
		console_clip(cell, w, cells[i]);
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
	console_say(c, "%s", line);
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
		TERMINATE(a[i].problem);
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

/* ---- commands ---------------------------------------------------------------------------- */

static void cmd_help(struct console *c, const char *arg);

void console_banner(struct console *c)
{
	struct console_status st;

	get_status(c, &st);
	console_say(c, "guardian %s on %s - type help", st.version[0] ? st.version : "?",
		    st.device[0] ? st.device : "?");
}

enum verdict { VERDICT_OK, VERDICT_WARN, VERDICT_FAULT };

/* A "; "-separated list of what is wrong, cut at its end. */
struct wrongs {
	char text[1024];
	size_t used;
	int n;
};

static void wrong_add(struct wrongs *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void wrong_add(struct wrongs *w, const char *fmt, ...)
{
	va_list ap;

	if (w->used < sizeof(w->text))
		w->used += (size_t)snprintf(w->text + w->used, sizeof(w->text) - w->used, "%s",
					    w->n > 0 ? "; " : "");
	va_start(ap, fmt);
	if (w->used < sizeof(w->text))
		w->used += (size_t)vsnprintf(w->text + w->used, sizeof(w->text) - w->used, fmt, ap);
	va_end(ap);
	w->n++;
}

/*
 * One adapter's part of the verdict. Down is a fault. Up, it is judged by what it read: never a
 * good read after failures, or every point it read not good, is a fault; some points not good,
 * or no read yet, a warning; each named with the point, where it is read and why.
 */
static void adapter_verdict(const struct console_adapter *a, struct wrongs *faults,
			    struct wrongs *warnings)
{
	uint64_t failures = a->timeouts + a->exceptions + a->bad_frames + a->io_errors;
	uint32_t read = a->points - (a->points_unread < a->points ? a->points_unread : a->points);

	if (!a->link_up) {
		if (a->fault[0] != '\0')
			wrong_add(faults, "%s down (%s)", a->name, a->fault);
		else
			wrong_add(faults, "%s down", a->name);
	} else if (a->last_ok_ms == 0 && (failures > 0 || a->points_bad > 0)) {
		if (a->problem[0] != '\0')
			wrong_add(faults, "%s: no good read yet: %s", a->name, a->problem);
		else
			wrong_add(faults, "%s: no good read yet (%llu timeouts, %llu errors)",
				  a->name, (unsigned long long)a->timeouts,
				  (unsigned long long)(failures - a->timeouts));
	} else if (a->last_ok_ms == 0) {
		wrong_add(warnings, "%s: no good read yet", a->name);
	} else if (a->points_bad > 0) {
		wrong_add(a->points_bad >= read ? faults : warnings,
			  "%s: %u of %u points not good: %s", a->name, a->points_bad, read,
			  a->problem);
	}
}

/* The verdict and its list of what is wrong, faults first, into 'out'. */
static enum verdict status_verdict(struct console *c, const struct console_status *st, size_t shown,
				   char *out, size_t cap)
{
	struct wrongs faults = { .n = 0 }, warnings = { .n = 0 };
	char age[24];

	faults.text[0] = warnings.text[0] = '\0';
	for (size_t i = 0; i < shown; i++)
		adapter_verdict(&c->scratch.adapters[i], &faults, &warnings);
	if (!st->uplink_connected && st->uplink_error[0] != '\0')
		wrong_add(&faults, "uplink disconnected (%s)", st->uplink_error);
	else if (!st->uplink_connected)
		wrong_add(&faults, "uplink disconnected");
	if (st->cert_expiry_ms != 0 && st->cert_expiry_ms <= st->now_ms) {
		wrong_add(&faults, "certificate expired %s ago",
			  age_text(age, sizeof(age), st->now_ms, st->cert_expiry_ms));
	} else if (st->cert_expiry_ms != 0 &&
		   diff_ms(st->cert_expiry_ms, st->now_ms) < 3600 * 1000) {
		duration_text(age, sizeof(age), diff_ms(st->cert_expiry_ms, st->now_ms));
		wrong_add(&faults, "certificate expires in %s", age);
	}
	if (st->dropped > 0)
		wrong_add(&faults, "uplink queue dropped %llu msgs",
			  (unsigned long long)st->dropped);
	if (st->spooled && st->spool_dropped > 0)
		wrong_add(&faults, "spool full: dropped %llu msgs",
			  (unsigned long long)st->spool_dropped);
	if (st->spooled && st->spool_write_errors > 0)
		wrong_add(&faults, "spool: %llu failed writes (disk full or failing?)",
			  (unsigned long long)st->spool_write_errors);
	/* Cut to 'cap' when both lists are long: the wrapped verdict stays a few lines. */
	if (snprintf(out, cap, "%s%s%s", faults.text, faults.n > 0 && warnings.n > 0 ? "; " : "",
		     warnings.text) < 0 &&
	    cap > 0)
		out[0] = '\0';
	return faults.n > 0 ? VERDICT_FAULT : warnings.n > 0 ? VERDICT_WARN : VERDICT_OK;
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
					a[i].fault[0] != '\0' ? a[i].fault : a[i].problem };

		table_row(c, cols, 5, cells);
	}
}

static void status_tail(struct console *c, const struct console_status *st)
{
	char broker[48], age[24], age2[24];

	console_clip(broker, 40, st->broker[0] ? st->broker : "(none)");
	console_say(c, "uplink:  %s %s, %llu queued, last publish %s%s", broker,
		    st->uplink_connected ? "connected" : "DISCONNECTED",
		    (unsigned long long)st->queued_msgs,
		    age_text(age, sizeof(age), st->now_ms, st->last_publish_ms),
		    st->last_publish_ms ? " ago" : "");
	if (st->cert_expiry_ms != 0 && st->cert_expiry_ms <= st->now_ms)
		console_say(c, "cert:    EXPIRED %s ago",
			    age_text(age, sizeof(age), st->now_ms, st->cert_expiry_ms));
	else if (st->cert_expiry_ms != 0) {
		duration_text(age2, sizeof(age2), diff_ms(st->cert_expiry_ms, st->now_ms));
		console_say(c, "cert:    expires in %s", age2);
	}
	if (st->last_error[0] != '\0')
		console_say(c, "last error %s ago: %s",
			    age_text(age, sizeof(age), st->now_ms, st->last_error_ms),
			    st->last_error);
	else
		console_say(c, "last error: none");
}

static void cmd_status(struct console *c, const char *arg)
{
	struct console_status st;
	char wrong[2048], up[24];
	size_t shown, total;

	(void)arg;
	get_status(c, &st);
	total = get_adapters(c, &shown);
	switch (status_verdict(c, &st, shown, wrong, sizeof(wrong))) {
	case VERDICT_OK:
		console_say(c, "OK: all adapters up, uplink connected");
		break;
	case VERDICT_WARN:
		say_wrapped(c, "WARN: ", wrong);
		break;
	case VERDICT_FAULT:
		say_wrapped(c, "FAULT: ", wrong);
		break;
	}
	duration_text(up, sizeof(up),
		      st.uptime_s > INT64_MAX / 1000 ? INT64_MAX : st.uptime_s * 1000);
	console_say(c, "device:  %s  version %s  up %s", st.device, st.version, up);
	status_adapters(c, &st, shown);
	if (total > shown)
		console_say(c, "... and %zu more adapters", total - shown);
	status_tail(c, &st);
}

static void cmd_adapters(struct console *c, const char *arg)
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

	(void)arg;
	get_status(c, &st);
	total = get_adapters(c, &shown);
	if (total == 0) {
		console_say(c, "no adapters configured");
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
		console_say(c, "... and %zu more", total - shown);
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
	console_clip(quoted, 32, name);
	console_say(c, "no adapter \"%s\"; adapters: %s", quoted, shown ? list : "(none)");
}

static void cmd_adapter(struct console *c, const char *arg)
{
	const struct console_adapter *a = NULL;
	struct console_status st;
	char age[24], label[24];
	size_t shown;

	get_status(c, &st);
	get_adapters(c, &shown);
	for (size_t i = 0; i < shown && a == NULL; i++) {
		if (strcmp(c->scratch.adapters[i].name, arg) == 0)
			a = &c->scratch.adapters[i];
	}
	if (a == NULL) {
		no_adapter(c, arg, shown);
		return;
	}
	console_say(c, "name:         %s", a->name);
	console_say(c, "type:         %s", a->type);
	console_say(c, "link:         %s", a->link_up ? "up" : "DOWN");
	console_say(c, "polls:        %llu", (unsigned long long)a->polls);
	console_say(c, "polls ok:     %llu", (unsigned long long)a->polls_ok);
	console_say(c, "timeouts:     %llu", (unsigned long long)a->timeouts);
	console_say(c, "exceptions:   %llu", (unsigned long long)a->exceptions);
	console_say(c, "bad frames:   %llu", (unsigned long long)a->bad_frames);
	console_say(c, "io errors:    %llu", (unsigned long long)a->io_errors);
	console_say(c, "reconnects:   %llu", (unsigned long long)a->reconnects);
	console_say(c, "samples:      %llu", (unsigned long long)a->samples);
	age_text(age, sizeof(age), st.now_ms, a->last_ok_ms);
	console_say(c, "last ok:      %s%s", age, a->last_ok_ms ? " ago" : "");
	console_say(c, "points:       %u, %u not good, %u not read yet", a->points, a->points_bad,
		    a->points_unread);
	if (a->problem[0] != '\0')
		say_wrapped(c, "not good:     ", a->problem);
	say_wrapped(c, "fault:        ", a->fault[0] ? a->fault : "none");
	if (a->fault[0] != '\0') {
		age_text(age, sizeof(age), st.now_ms, a->fault_since_ms);
		console_say(c, "fault since:  %s%s", age, a->fault_since_ms ? " ago" : "");
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
		console_clip(quoted, 32, glob != NULL ? glob : "*");
		console_say(c, "no point matches \"%s\"", quoted);
		return;
	}
	table_head(c, cols, 5);
	for (size_t i = 0; i < shown; i++) {
		const char *cells[] = { p[i].name, p[i].value, p[i].unit, p[i].quality,
					age_text(age, sizeof(age), st.now_ms, p[i].ts_ms) };

		table_row(c, cols, 5, cells);
	}
	if (total > shown)
		console_say(c, "... and %zu more %s", total - shown, more);
}

static void cmd_points(struct console *c, const char *arg)
{
	points_table(c, arg, POINTS_SHOWN, "(narrow it with a glob)");
}

static void cmd_policy(struct console *c, const char *arg)
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

	(void)arg;
	memset(r, 0, sizeof(c->scratch.rules));
	if (c->prov.rules != NULL)
		total = c->prov.rules(c->prov.ctx, r, RULES_SHOWN);
	shown = total < RULES_SHOWN ? total : RULES_SHOWN;
	if (total == 0) {
		console_say(c, "no policy rules");
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
		console_say(c, "... and %zu more", total - shown);
}

static void cmd_why(struct console *c, const char *arg)
{
	char *text = c->scratch.text, quoted[40];
	int rc = -1;

	text[0] = '\0';
	if (c->prov.why != NULL)
		rc = c->prov.why(c->prov.ctx, arg, text, TEXT_MAX);
	text[TEXT_MAX - 1] = '\0';
	if (rc < 0) {
		console_clip(quoted, 32, arg);
		console_say(c, "no point \"%s\"", quoted);
		return;
	}
	say_text(c, text, true);
}

static void cmd_uplink(struct console *c, const char *arg)
{
	struct console_status st;
	char age[24];

	(void)arg;
	get_status(c, &st);
	say_wrapped(c, "broker:        ", st.broker[0] ? st.broker : "(none)");
	console_say(c, "state:         %s", st.uplink_connected ? "connected" : "DISCONNECTED");
	console_say(c, "connects:      %llu", (unsigned long long)st.connects);
	console_say(c, "queued:        %llu msgs, %llu bytes", (unsigned long long)st.queued_msgs,
		    (unsigned long long)st.queued_bytes);
	if (st.spooled) {
		console_say(c, "spool:         %llu msgs, %llu bytes on disk",
			    (unsigned long long)st.spool_records,
			    (unsigned long long)st.spool_disk_bytes);
		console_say(
			c, "spool faults:  %llu dropped, %llu repaired at start, %llu write errors",
			(unsigned long long)st.spool_dropped, (unsigned long long)st.spool_damaged,
			(unsigned long long)st.spool_write_errors);
	} else {
		console_say(c, "spool:         off (a crash loses what is queued)");
	}
	console_say(c, "published:     %llu", (unsigned long long)st.published);
	console_say(c, "dropped:       %llu", (unsigned long long)st.dropped);
	age_text(age, sizeof(age), st.now_ms, st.last_publish_ms);
	console_say(c, "last publish:  %s%s", age, st.last_publish_ms ? " ago" : "");
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

static void cmd_log(struct console *c, const char *arg)
{
	char *text = c->scratch.text;
	long n = LOG_DEFAULT;

	if (arg != NULL) {
		n = parse_count(arg);
		if (n < 1) {
			console_say(c, "usage: log [N] (N from 1 to %d)", LOG_MAX);
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
		console_say(c, "the log is empty");
		return;
	}
	say_text(c, text, false);
}

/* One frame of `watch`: from the top left, each line erasing what was there. */
void console_watch_draw(struct console *c)
{
	char glob[40];

	console_clip(glob, 32, c->watch_glob[0] ? c->watch_glob : "*");
	console_emit_str(c, "\x1b[H");
	c->drawing = true;
	console_say(c, "watch %s (any key to stop)", glob);
	points_table(c, c->watch_glob[0] ? c->watch_glob : NULL, WATCH_ROWS, "(narrow the glob)");
	c->drawing = false;
	console_emit_str(c, "\x1b[J");
	c->next_draw_ms = console_now(c) + WATCH_PERIOD_MS;
}

static void cmd_watch(struct console *c, const char *arg)
{
	snprintf(c->watch_glob, sizeof(c->watch_glob), "%s", arg != NULL ? arg : "");
	c->watching = true;
	console_emit_str(c, "\x1b[H\x1b[2J");
	console_watch_draw(c);
}

static void cmd_logout(struct console *c, const char *arg)
{
	(void)arg;
	console_say(c, c->logged_in ? "logged out" : "not logged in");
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
		console_say(c, rc == 0 ? "done" : "failed");
}

static void cmd_restart(struct console *c, const char *arg)
{
	run_action(c, CONSOLE_RESTART_ADAPTER, arg);
}

static void cmd_reconnect(struct console *c, const char *arg)
{
	(void)arg;
	run_action(c, CONSOLE_RECONNECT_UPLINK, NULL);
}

static void cmd_ack(struct console *c, const char *arg)
{
	(void)arg;
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
	{ "login", "", "enter the PIN for the commands below", false, 0, 0, console_cmd_login },
	{ "logout", "", "end the login (also exit, quit)", false, 0, 0, cmd_logout },
	{ "exit", NULL, NULL, false, 0, 0, cmd_logout },
	{ "quit", NULL, NULL, false, 0, 0, cmd_logout },
	{ "restart", "ADAPTER", "reconnect one adapter", true, 1, 1, cmd_restart },
	{ "reconnect", "", "reconnect the uplink", true, 0, 0, cmd_reconnect },
	{ "ack", "", "acknowledge shown faults, clear the last error", true, 0, 0, cmd_ack },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void cmd_help(struct console *c, const char *arg)
{
	char usage[32];

	(void)arg;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const struct command *cmd = &commands[i];

		if (cmd->help == NULL)
			continue;
		snprintf(usage, sizeof(usage), "%s %s", cmd->name, cmd->args);
		console_say(c, "  %-18s %s%s", usage, cmd->help, cmd->privileged ? " (login)" : "");
	}
	console_say(c, "Nothing here writes to the machine. (login): needs the PIN.");
}

static const struct command *find_command(const char *word)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcasecmp(commands[i].name, word) == 0)
			return &commands[i];
	}
	return NULL;
}

void console_run_line(struct console *c)
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
		console_clip(quoted, 32, argv[0]);
		console_say(c, "unknown command \"%s\"; type help", quoted);
	} else if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args) {
		console_say(c, "usage: %s %s", cmd->name, cmd->args != NULL ? cmd->args : "");
	} else if (cmd->privileged && !c->logged_in) {
		console_say(c, "\"%s\" needs login (type login)", cmd->name);
	} else {
		cmd->run(c, argc > 1 ? argv[1] : NULL);
	}
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
