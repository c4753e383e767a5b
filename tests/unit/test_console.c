/* test_console.c: the field console against a fake gateway: line editing, every command's output
 * and width, login with lockout and idle timeout, PIN hashes, and watch. */
#include <criterion/criterion.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../guardian/console.h"

#define NOW_UTC_MS 1700000000000LL
#define ITER	   1000
#define GOOD_PIN   "4711"

/* The gateway's state, fixed; tests change a field or two. */
struct fake {
	struct console_status st;
	struct console_adapter ad[2];
	struct console_rule rules[2];
	size_t many; /* points named many.NNN, for the row limit */
	int actions;
	enum console_action last_act;
	char last_arg[64];
};

static const struct console_point fixed_points[] = {
	{ .name = "boiler.temp", .value = "81.5", .unit = "degC", .quality = "good" },
	{ .name = "boiler.pressure", .value = "2.31", .unit = "bar", .quality = "good" },
	{ .name = "pump.speed", .value = "-", .unit = "rpm", .quality = "timeout" },
	{ .name = "line3.a.very.long.point.name.that.will.not.fit.in.its.column",
	  .value = "123456789012345678901234567890",
	  .unit = "kWh",
	  .quality = "good" },
};
#define NFIXED (sizeof(fixed_points) / sizeof(fixed_points[0]))

static struct fake fk;
static char out[1 << 20];
static size_t out_len;
static int64_t mono_ms;
static struct console *con;
static char pin_hash[160];

static void fake_status(void *ctx, struct console_status *st)
{
	*st = ((struct fake *)ctx)->st;
}

static size_t fake_adapters(void *ctx, struct console_adapter *a, size_t cap)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < 2 && i < cap; i++)
		a[i] = f->ad[i];
	return 2;
}

static size_t fake_points(void *ctx, const char *glob, struct console_point *p, size_t cap)
{
	struct fake *f = ctx;
	size_t n = 0;

	for (size_t i = 0; i < NFIXED; i++) {
		if (glob != NULL && fnmatch(glob, fixed_points[i].name, 0) != 0)
			continue;
		if (n < cap) {
			p[n] = fixed_points[i];
			p[n].ts_ms = f->st.now_ms - 3000;
		}
		n++;
	}
	for (size_t i = 0; i < f->many; i++) {
		char name[32];

		snprintf(name, sizeof(name), "many.%03zu", i);
		if (glob != NULL && fnmatch(glob, name, 0) != 0)
			continue;
		if (n < cap) {
			memset(&p[n], 0, sizeof(p[n]));
			snprintf(p[n].name, sizeof(p[n].name), "%s", name);
			snprintf(p[n].value, sizeof(p[n].value), "%zu", i);
			snprintf(p[n].quality, sizeof(p[n].quality), "good");
		}
		n++;
	}
	return n;
}

static size_t fake_rules(void *ctx, struct console_rule *r, size_t cap)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < 2 && i < cap; i++)
		r[i] = f->rules[i];
	return 2;
}

static int fake_why(void *ctx, const char *point, char *o, size_t cap)
{
	(void)ctx;
	if (strcmp(point, "boiler.temp") != 0)
		return -1;
	snprintf(o, cap,
		 "boiler.temp: allowed by uplink[0] (match \"boiler.*\", rate 1/s); this is a long "
		 "explanation that has to be wrapped because it is far wider than any terminal\n"
		 "  denied by nothing\n");
	return 0;
}

/* The last n lines; line 7 is too wide for the screen. */
static size_t fake_log(void *ctx, size_t n, char *o, size_t cap)
{
	size_t used = 0;

	(void)ctx;
	o[0] = '\0';
	for (size_t i = 0; i < n && used < cap; i++)
		used += (size_t)snprintf(o + used, cap - used, "log line %zu%s\n", i,
					 i == 7 ? " and a great deal more text to push this line "
						  "well beyond eighty columns of the terminal"
						: "");
	return n;
}

static int fake_action(void *ctx, enum console_action act, const char *arg, char *msg, size_t cap)
{
	struct fake *f = ctx;

	f->actions++;
	f->last_act = act;
	snprintf(f->last_arg, sizeof(f->last_arg), "%s", arg != NULL ? arg : "");
	snprintf(msg, cap, "action %d on %s done", (int)act, arg != NULL ? arg : "-");
	return 0;
}

static void collect(void *ctx, const char *data, size_t n)
{
	(void)ctx;
	cr_assert(out_len + n < sizeof(out), "output buffer full");
	memcpy(out + out_len, data, n);
	out_len += n;
	out[out_len] = '\0';
}

static int64_t fake_clock(void *ctx)
{
	(void)ctx;
	return mono_ms;
}

static void fake_init(void)
{
	memset(&fk, 0, sizeof(fk));
	snprintf(fk.st.device, sizeof(fk.st.device), "plant-gw-01");
	snprintf(fk.st.version, sizeof(fk.st.version), "1.2.3");
	fk.st.now_ms = NOW_UTC_MS;
	fk.st.uptime_s = 3 * 86400 + 4 * 3600 + 5;
	snprintf(fk.st.broker, sizeof(fk.st.broker), "mqtt.example.com:8883");
	fk.st.uplink_connected = true;
	fk.st.queued_msgs = 3;
	fk.st.queued_bytes = 1200;
	fk.st.published = 9876;
	fk.st.connects = 2;
	fk.st.last_publish_ms = NOW_UTC_MS - 1000;
	snprintf(fk.st.last_error, sizeof(fk.st.last_error), "modbus: plc2: connect: refused");
	fk.st.last_error_ms = NOW_UTC_MS - 252000;

	snprintf(fk.ad[0].name, sizeof(fk.ad[0].name), "plc1");
	snprintf(fk.ad[0].type, sizeof(fk.ad[0].type), "modbus-tcp");
	fk.ad[0].link_up = true;
	fk.ad[0].polls = 1000;
	fk.ad[0].polls_ok = 990;
	fk.ad[0].timeouts = 4;
	fk.ad[0].exceptions = 3;
	fk.ad[0].bad_frames = 2;
	fk.ad[0].io_errors = 1;
	fk.ad[0].reconnects = 7;
	fk.ad[0].last_ok_ms = NOW_UTC_MS - 2000;

	snprintf(fk.ad[1].name, sizeof(fk.ad[1].name), "plc2-in-the-basement-by-the-boilers");
	snprintf(fk.ad[1].type, sizeof(fk.ad[1].type), "modbus-rtu");
	fk.ad[1].link_up = false;
	fk.ad[1].polls = 50;
	fk.ad[1].last_ok_ms = NOW_UTC_MS - 7500000;
	snprintf(fk.ad[1].fault, sizeof(fk.ad[1].fault),
		 "no answer from unit 3 on /dev/ttyUSB0 at 19200 8N1 for the last 40 polls");
	fk.ad[1].fault_since_ms = NOW_UTC_MS - 252000;
	snprintf(fk.ad[1].extra, sizeof(fk.ad[1].extra),
		 "frames=12 checksum=0 short=1 parity=0 framing=2 overrun=0 noise=3 break=0 "
		 "gap_violations=5 bytes_in=123456 bytes_out=654321 echo_mismatch=0 last_tail=EOT");

	snprintf(fk.rules[0].rule, sizeof(fk.rules[0].rule), "uplink[0]");
	fk.rules[0].hits = 500;
	fk.rules[0].drops = 2;
	snprintf(fk.rules[1].rule, sizeof(fk.rules[1].rule), "uplink[1]");
	fk.rules[1].hits = 12;
	fk.rules[1].refusals = 12;
}

static struct console *make_console(const char *hash)
{
	struct console_config cfg = { .pin_hash = hash };
	struct console_provider prov = {
		.ctx = &fk,
		.status = fake_status,
		.adapters = fake_adapters,
		.points = fake_points,
		.rules = fake_rules,
		.why = fake_why,
		.log = fake_log,
		.action = fake_action,
	};
	struct console_output o = { .write = collect };
	struct console_clock clk = { .now_ms = fake_clock };

	return console_new(&cfg, &prov, &o, &clk);
}

static void setup(void)
{
	fake_init();
	out_len = 0;
	out[0] = '\0';
	mono_ms = 5000000;
	if (pin_hash[0] == '\0')
		cr_assert_eq(console_pin_hash(GOOD_PIN, ITER, pin_hash, sizeof(pin_hash)), 0);
	con = make_console(pin_hash);
	cr_assert_not_null(con);
}

static void teardown(void)
{
	console_free(con);
}

TestSuite(console, .init = setup, .fini = teardown);

static void clear(void)
{
	out_len = 0;
	out[0] = '\0';
}

static void feed(const char *s, size_t n)
{
	console_input(con, (const uint8_t *)s, n);
}

static void type(const char *s)
{
	feed(s, strlen(s));
}

/* Types a line and returns what came back, echo included. */
static const char *run(const char *line)
{
	clear();
	type(line);
	type("\r");
	return out;
}

static struct console_stats stats(void)
{
	struct console_stats s;

	console_get_stats(con, &s);
	return s;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/*
 * The widest line as a terminal shows it: escape sequences take no room, BS
 * steps back, CR returns. Fails on any byte a terminal would not print.
 */
static size_t widest(const char *s)
{
	size_t col = 0, max = 0;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == 0x1b && s[1] == '[') {
			s += 2;
			while (*s != '\0' && !(*s >= 0x40 && *s <= 0x7e))
				s++;
			if (*s == '\0')
				break;
			continue;
		}
		cr_assert(ch >= 0x20 || ch == '\r' || ch == '\n' || ch == '\b',
			  "control byte 0x%02x in the output", ch);
		cr_assert(ch < 0x7f, "byte 0x%02x in the output", ch);
		if (ch == '\n')
			cr_assert(s > out && s[-1] == '\r', "LF without CR");
		if (ch == '\r')
			col = 0;
		else if (ch == '\b')
			col = col > 0 ? col - 1 : 0;
		else if (ch != '\n' && ++col > max)
			max = col;
	}
	return max;
}

static void assert_fits(const char *what)
{
	size_t w = widest(out);

	cr_assert(w <= 80, "%s: a line of %zu columns:\n%s", what, w, out);
}

/* The output line that starts with 'prefix' (after any prompt echo), or NULL. */
static const char *line_with(const char *prefix)
{
	static char line[512];
	const char *p = out;

	while (p != NULL && *p != '\0') {
		const char *end = strstr(p, "\r\n");
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);

		if (strncmp(p, prefix, strlen(prefix)) == 0 && n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			return line;
		}
		p = end != NULL ? end + 2 : NULL;
	}
	return NULL;
}

static void login(void)
{
	run("login");
	cr_assert(strstr(out, "PIN: ") != NULL, "%s", out);
	run(GOOD_PIN);
	cr_assert(strstr(out, "logged in; privileged commands enabled for 5 minutes of inactivity"),
		  "%s", out);
	cr_assert(strstr(out, "****") != NULL && strstr(out, GOOD_PIN) == NULL,
		  "the PIN must not be echoed: %s", out);
}

/* ---- the line editor --------------------------------------------------------------------- */

Test(console, banner_and_prompt)
{
	cr_assert(strstr(out, "guardian 1.2.3 on plant-gw-01 - type help\r\nguardian> ") != NULL,
		  "%s", out);
	clear();
	console_reset(con);
	cr_assert(strstr(out, "guardian 1.2.3 on plant-gw-01 - type help\r\nguardian> ") != NULL,
		  "%s", out);
}

Test(console, each_line_end_runs_one_command)
{
	const char *ends[] = { "\r", "\n", "\r\n", "\n\r" };

	for (size_t i = 0; i < 4; i++) {
		uint64_t before = stats().lines;

		clear();
		type("uplink");
		type(ends[i]);
		cr_assert_eq(stats().lines, before + 1, "end %zu", i);
		cr_assert_eq(count(out, "guardian> "), 1, "end %zu ran more than one line:\n%s", i,
			     out);
		cr_assert_eq(count(out, "state:"), 1);
	}
	/* Two CRs are two lines; CR LF CR LF is two, not three. */
	clear();
	type("\r\r");
	cr_assert_eq(count(out, "guardian> "), 2);
	clear();
	type("\r\n\r\n");
	cr_assert_eq(count(out, "guardian> "), 2);
	cr_assert_eq(stats().lines, 4, "empty lines are not commands");
}

Test(console, line_end_split_across_calls)
{
	clear();
	type("uplink\r");
	type("\n");
	cr_assert_eq(count(out, "guardian> "), 1, "%s", out);
}

Test(console, echo_and_backspace)
{
	run("uplinx\bk");
	cr_assert(strstr(out, "uplinx\b \bk\r\n") != NULL, "%s", out);
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
	run("uplinkq\x7f");
	cr_assert(strstr(out, "state:") != NULL, "DEL erases: %s", out);
	run("\b\b\bhelp");
	cr_assert(strstr(out, "\b \b") == NULL, "nothing to erase at the prompt: %s", out);
	cr_assert(strstr(out, "uplink") != NULL);
}

Test(console, ctrl_u_and_ctrl_c)
{
	run("junk\x15uplink");
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
	cr_assert(strstr(out, "unknown") == NULL, "%s", out);
	clear();
	type("junk\x03");
	cr_assert(strstr(out, "^C\r\nguardian> ") != NULL, "%s", out);
	run("");
	cr_assert(strstr(out, "unknown") == NULL, "the abandoned line ran: %s", out);
	cr_assert_eq(stats().lines, 1);
}

Test(console, escape_sequences_ignored)
{
	run("\x1b[A\x1b[B\x1bOAup\x1b[Dlink\x1b[1;5C\x1b[3~");
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
	cr_assert(strstr(out, "[") == NULL, "escape bytes were echoed: %s", out);
	cr_assert_eq(stats().dropped_bytes, 0);
	/* ESC then Enter: the Enter still ends the line. */
	run("uplink\x1b");
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
}

Test(console, binary_garbage_dropped)
{
	uint8_t junk[256];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0x80 + i % 128);
	clear();
	console_input(con, junk, sizeof(junk));
	cr_assert_eq(stats().dropped_bytes, 256);
	type("\x01\x02\x04\x07\t\x0b\x0c\x0e\x1f\xff\xfe");
	cr_assert_eq(stats().dropped_bytes, 256 + 11);
	cr_assert_eq(out_len, 0, "garbage was echoed: %s", out);
	run("uplink");
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
	assert_fits("garbage");
}

Test(console, huge_line_refused)
{
	static char big[100001];

	memset(big, 'a', sizeof(big) - 1);
	run(big);
	cr_assert(strstr(out, "line too long (100000 bytes); ignored\r\nguardian> ") != NULL,
		  "%.300s", out);
	cr_assert(strstr(out, "unknown") == NULL, "a cut line ran");
	cr_assert_eq(stats().lines, 0);
	cr_assert_eq(stats().dropped_bytes, 100000 - (CONSOLE_LINE_MAX - 1));
	cr_assert(out_len < 2 * CONSOLE_LINE_MAX, "the dropped bytes were echoed");
	run("uplink");
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
}

Test(console, longest_line_kept)
{
	char line[CONSOLE_LINE_MAX + 1];

	memset(line, 'x', CONSOLE_LINE_MAX - 1);
	line[CONSOLE_LINE_MAX - 1] = '\0';
	run(line);
	cr_assert(strstr(out, "unknown command \"xxx") != NULL, "255 bytes fit: %.400s", out);
	cr_assert_leq(widest(strstr(out, "\r\n") + 2), 80, "the answer, past the echo, fits");
	strcat(line, "y");
	run(line);
	cr_assert(strstr(out, "line too long (256 bytes); ignored") != NULL, "%.400s", out);
	cr_assert_eq(stats().dropped_bytes, 1);
}

Test(console, split)
{
	char line[] = "  adapter   plc1 \t extra  ";
	char *w[4];

	cr_assert_eq(console_split(line, w, 4), 3);
	cr_assert_str_eq(w[0], "adapter");
	cr_assert_str_eq(w[1], "plc1");
	cr_assert_str_eq(w[2], "extra");
	char line2[] = "a b c d e f";
	cr_assert_eq(console_split(line2, w, 2), 2);
	char line3[] = "   ";
	cr_assert_eq(console_split(line3, w, 4), 0);
}

/* ---- commands ---------------------------------------------------------------------------- */

Test(console, unknown_and_case)
{
	run("frobnicate now");
	cr_assert(strstr(out, "unknown command \"frobnicate\"; type help\r\n") != NULL, "%s", out);
	run("UpLiNk");
	cr_assert(strstr(out, "state:") != NULL, "%s", out);
	run("adapter");
	cr_assert(strstr(out, "usage: adapter NAME") != NULL, "%s", out);
	run("status extra words");
	cr_assert(strstr(out, "usage: status") != NULL, "%s", out);
}

Test(console, help)
{
	static const char *const names[] = {
		"help",	  "status",    "adapters",	  "adapter NAME", "points [GLOB]",
		"policy", "why POINT", "uplink",	  "log [N]",	  "watch [GLOB]",
		"login",  "logout",    "restart ADAPTER", "reconnect",	  "ack"
	};

	run("help");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_assert(strstr(out, names[i]) != NULL, "help lacks %s", names[i]);
	cr_assert_eq(count(out, "(login)"), 3 + 1, "%s", out);
	cr_assert(strstr(line_with("  restart ADAPTER"), "(login)") != NULL);
	cr_assert(strstr(line_with("  status"), "(login)") == NULL);
	assert_fits("help");
}

Test(console, status_fault)
{
	fk.st.uplink_connected = false;
	snprintf(fk.st.uplink_error, sizeof(fk.st.uplink_error), "TLS handshake failed");
	run("status");
	cr_assert_not_null(line_with("FAULT: plc2-in-the-basement-by-the-boilers down (no answer"),
			   "%s", out);
	cr_assert(strstr(out, "; uplink disconnected\r\n       (TLS handshake failed)\r\n") != NULL,
		  "the verdict is wrapped under itself: %s", out);
	cr_assert_not_null(line_with("device:  plant-gw-01  version 1.2.3  up 3d04h"), "%s", out);
	cr_assert_not_null(line_with("ADAPTER          TYPE       LINK LAST OK FAULT"), "%s", out);
	cr_assert_not_null(line_with("plc1             modbus-tcp up   2s"), "%s", out);
	cr_assert_not_null(
		line_with("plc2-in-the-bas~ modbus-rtu DOWN 2h05m   no answer from unit 3"), "%s",
		out);
	cr_assert(strstr(line_with("plc2-in"), "~") != NULL, "fault not cut");
	cr_assert_not_null(line_with("uplink:  mqtt.example.com:8883 DISCONNECTED, 3 queued, "
				     "last publish 1s ago"),
			   "%s", out);
	cr_assert_not_null(line_with("last error 4m12s ago: modbus: plc2: connect: refused"), "%s",
			   out);
	assert_fits("status");
}

Test(console, status_ok)
{
	fk.ad[1].link_up = true;
	fk.ad[1].fault[0] = '\0';
	fk.st.last_error[0] = '\0';
	fk.st.cert_expiry_ms = NOW_UTC_MS + 30LL * 86400000;
	run("status");
	cr_assert(strstr(out, "\r\nOK: all adapters up, uplink connected\r\n") != NULL, "%s", out);
	cr_assert(strstr(out, "FAULT:") == NULL);
	cr_assert_not_null(line_with("cert:    expires in 30d00h"), "%s", out);
	cr_assert_not_null(line_with("last error: none"), "%s", out);
}

/* The verdict with the wrapped continuation lines joined, for substring checks. */
static const char *verdict_text(void)
{
	static char text[4096];
	const char *p = out, *end;
	size_t n = 0;

	while ((p = strstr(p, "\r\n")) != NULL && strncmp(p + 2, "OK", 2) != 0 &&
	       strncmp(p + 2, "WARN", 4) != 0 && strncmp(p + 2, "FAULT", 5) != 0)
		p += 2;
	if (p == NULL)
		return "";
	p += 2;
	end = strstr(p, "\r\ndevice:");
	for (; p < end && n + 1 < sizeof(text); p++) {
		if (strncmp(p, "\r\n", 2) == 0) {
			p += 1 + strspn(p + 2, " ");
			text[n++] = ' ';
			continue;
		}
		text[n++] = *p;
	}
	text[n] = '\0';
	return text;
}

/* An adapter up whose reads of some points fail: a warning with the unit and the point. */
Test(console, status_warns_of_points_not_good_with_unit_and_point)
{
	fk.ad[1].link_up = true;
	fk.ad[1].fault[0] = '\0';
	fk.ad[1].points = 3;
	fk.ad[1].points_bad = 1;
	snprintf(fk.ad[1].problem, sizeof(fk.ad[1].problem), "%s",
		 "plc2/speed (unit 3 holding 16): exception 2 (illegal data address)");
	run("status");
	cr_assert(strncmp(verdict_text(), "WARN: ", 6) == 0, "%s", out);
	cr_assert(strstr(verdict_text(),
			 "plc2-in-the-basement-by-the-boilers: 1 of 3 points not good: "
			 "plc2/speed (unit 3 holding 16): exception 2 (illegal "
			 "data address)") != NULL,
		  "%s", verdict_text());
	cr_assert(strstr(out, "OK:") == NULL && strstr(out, "FAULT:") == NULL, "%s", out);
	cr_assert_not_null(line_with("plc2-in-the-bas~ modbus-rtu up   2h05m   plc2/speed (unit 3"),
			   "the table shows why: %s", out);
	assert_fits("status with a warning");
	/* Every point it read fails: a fault. */
	fk.ad[1].points_bad = 3;
	run("status");
	cr_assert(strncmp(verdict_text(), "FAULT: ", 7) == 0, "%s", out);
	cr_assert(strstr(verdict_text(), "3 of 3 points not good") != NULL, "%s", verdict_text());
	/* The detail names it too. */
	run("adapter plc2-in-the-basement-by-the-boilers");
	cr_assert_not_null(line_with("points:       3, 3 not good, 0 not read yet"), "%s", out);
	cr_assert_not_null(line_with("not good:     plc2/speed (unit 3 holding 16)"), "%s", out);
}

/* Up, but never a good read: a fault once it has failed, a warning while it has not tried. */
Test(console, status_never_a_good_read_is_not_ok)
{
	fk.ad[1].link_up = true;
	fk.ad[1].fault[0] = '\0';
	fk.ad[1].last_ok_ms = 0;
	fk.ad[1].polls = 12;
	fk.ad[1].timeouts = 12;
	fk.ad[1].points = 2;
	fk.ad[1].points_bad = 2;
	snprintf(fk.ad[1].problem, sizeof(fk.ad[1].problem), "%s",
		 "plc2/level (unit 9 input 0): timeout");
	run("status");
	cr_assert(strncmp(verdict_text(), "FAULT: ", 7) == 0, "%s", out);
	cr_assert(strstr(verdict_text(), "plc2-in-the-basement-by-the-boilers: no good read yet: "
					 "plc2/level (unit 9 input 0): timeout") != NULL,
		  "%s", verdict_text());
	fk.ad[1].polls = fk.ad[1].timeouts = 0;
	fk.ad[1].points_bad = 0;
	fk.ad[1].points_unread = 2;
	fk.ad[1].problem[0] = '\0';
	run("status");
	cr_assert(strcmp(verdict_text(),
			 "WARN: plc2-in-the-basement-by-the-boilers: no good read yet") == 0,
		  "%s", out);
}

Test(console, status_cert_and_queue)
{
	fk.ad[1].link_up = true;
	fk.st.cert_expiry_ms = NOW_UTC_MS + 30 * 60000;
	fk.st.dropped = 17;
	run("status");
	cr_assert_not_null(
		line_with("FAULT: certificate expires in 30m00s; uplink queue dropped 17 msgs"),
		"%s", out);
	fk.st.cert_expiry_ms = NOW_UTC_MS - 2 * 3600000;
	fk.st.dropped = 0;
	run("status");
	cr_assert_not_null(line_with("FAULT: certificate expired 2h00m ago"), "%s", out);
	cr_assert_not_null(line_with("cert:    EXPIRED 2h00m ago"), "%s", out);
}

Test(console, status_many_faults_wrap)
{
	for (size_t i = 0; i < sizeof(fk.st.uplink_error) - 1; i++)
		fk.st.uplink_error[i] = (char)('a' + i % 26);
	fk.ad[0].link_up = false;
	snprintf(fk.ad[0].fault, sizeof(fk.ad[0].fault), "\x1b[2Jevil\x9b");
	run("status");
	cr_assert(strstr(out, "?[2Jevil?") != NULL, "control bytes not neutralised: %s", out);
	cr_assert(strstr(out, "\r\n       ") != NULL, "verdict not wrapped: %s", out);
	assert_fits("status with many faults");
}

Test(console, adapters_table)
{
	run("adapters");
	cr_assert_not_null(line_with("ADAPTER        TYPE       LINK    POLLS       OK TIMEOUT "
				     "ERRORS RECONN LAST OK"),
			   "%s", out);
	cr_assert_not_null(line_with("plc1           modbus-tcp up       1000      990       4     "
				     " 6      7      2s"),
			   "%s", out);
	cr_assert_not_null(line_with("plc2-in-the-b~ modbus-rtu DOWN"), "%s", out);
	fk.ad[0].polls = 123456789012ULL;
	run("adapters");
	cr_assert(strstr(line_with("plc1"), " 123456M ") != NULL, "%s", out);
	assert_fits("adapters");
}

Test(console, adapter_detail)
{
	run("adapter plc2-in-the-basement-by-the-boilers");
	cr_assert_not_null(line_with("name:         plc2-in-the-basement-by-the-boilers"), "%s",
			   out);
	cr_assert_not_null(line_with("link:         DOWN"));
	cr_assert_not_null(line_with("polls:        50"));
	cr_assert_not_null(line_with("last ok:      2h05m ago"), "%s", out);
	cr_assert_not_null(line_with("fault:        no answer from unit 3"), "%s", out);
	cr_assert_not_null(line_with("fault since:  4m12s ago"), "%s", out);
	cr_assert_not_null(line_with("extra:        frames=12 checksum=0"), "%s", out);
	cr_assert(strstr(out, "\r\n              gap_violations") != NULL ||
			  strstr(out, "last_tail=EOT") != NULL,
		  "%s", out);
	/* The wrapped extra loses no word. */
	cr_assert(strstr(out, "last_tail=EOT") != NULL, "%s", out);
	cr_assert(strstr(out, "bytes_out=654321") != NULL, "%s", out);
	assert_fits("adapter");
	run("adapter plc1");
	cr_assert_not_null(line_with("fault:        none"), "%s", out);
	cr_assert_not_null(line_with("exceptions:   3"), "%s", out);
	cr_assert_not_null(line_with("extra:        none"), "%s", out);
	run("adapter nope");
	cr_assert(strstr(out, "no adapter \"nope\"; adapters: plc1, plc2-in-the-basement") != NULL,
		  "%s", out);
}

Test(console, points_table)
{
	run("points");
	cr_assert_not_null(line_with("POINT                                       VALUE UNIT     "
				     "QUALITY        AGE"),
			   "%s", out);
	cr_assert_not_null(line_with("boiler.temp                                  81.5 degC     "
				     "good            3s"),
			   "%s", out);
	cr_assert_not_null(line_with("line3.a.very.long.point.name.th~"), "%s", out);
	assert_fits("points");
	run("points boiler.*");
	cr_assert_not_null(line_with("boiler.pressure"));
	cr_assert_null(line_with("pump.speed"));
	run("points nothing*");
	cr_assert(strstr(out, "no point matches \"nothing*\"") != NULL, "%s", out);
}

Test(console, points_limit)
{
	fk.many = 130;
	run("points many.*");
	cr_assert_eq(count(out, "\r\nmany."), 100, "%s", out);
	cr_assert(strstr(out, "... and 30 more (narrow it with a glob)") != NULL, "%s", out);
	fk.many = 50;
	run("points many.*");
	cr_assert_eq(count(out, "\r\nmany."), 50);
	cr_assert(strstr(out, "more") == NULL);
}

Test(console, policy_table)
{
	run("policy");
	cr_assert_not_null(line_with("RULE                                       HITS          "
				     "DROPS       REFUSALS"),
			   "%s", out);
	cr_assert_not_null(line_with("uplink[1]                                    12              "
				     "0             12"),
			   "%s", out);
	assert_fits("policy");
}

Test(console, why)
{
	run("why boiler.temp");
	cr_assert_not_null(line_with("boiler.temp: allowed by uplink[0]"), "%s", out);
	cr_assert(strstr(out, "terminal\r\n") != NULL, "%s", out);
	cr_assert_not_null(line_with("  denied by nothing"), "%s", out);
	assert_fits("why");
	run("why nope");
	cr_assert(strstr(out, "no point \"nope\"") != NULL, "%s", out);
}

Test(console, uplink)
{
	fk.st.uplink_connected = false;
	snprintf(fk.st.uplink_error, sizeof(fk.st.uplink_error), "connection refused");
	run("uplink");
	cr_assert_not_null(line_with("broker:        mqtt.example.com:8883"), "%s", out);
	cr_assert_not_null(line_with("state:         DISCONNECTED"));
	cr_assert_not_null(line_with("connects:      2"));
	cr_assert_not_null(line_with("queued:        3 msgs, 1200 bytes"));
	cr_assert_not_null(line_with("published:     9876"));
	cr_assert_not_null(line_with("dropped:       0"));
	cr_assert_not_null(line_with("last publish:  1s ago"));
	cr_assert_not_null(line_with("last error:    connection refused"));
	assert_fits("uplink");
}

Test(console, log)
{
	run("log");
	cr_assert_eq(count(out, "\r\nlog line "), 20, "%s", out);
	cr_assert(strstr(out, "log line 7 and a great deal") != NULL);
	assert_fits("log");
	run("log 3");
	cr_assert_eq(count(out, "\r\nlog line "), 3);
	run("log 5000");
	cr_assert_eq(count(out, "\r\nlog line "), 200);
	run("log x");
	cr_assert(strstr(out, "usage: log [N]") != NULL, "%s", out);
	run("log 0");
	cr_assert(strstr(out, "usage: log [N]") != NULL, "%s", out);
}

Test(console, every_command_fits)
{
	static const char *const lines[] = { "help",	"status", "adapters",	     "adapter plc1",
					     "points",	"policy", "why boiler.temp", "uplink",
					     "log 200", "login",  "restart plc1",    "logout" };

	fk.many = 200;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		run(lines[i]);
		assert_fits(lines[i]);
	}
}

/* ---- login ------------------------------------------------------------------------------- */

Test(console, privileged_needs_login)
{
	run("restart plc1");
	cr_assert(strstr(out, "\"restart\" needs login (type login)") != NULL, "%s", out);
	run("ack");
	cr_assert(strstr(out, "\"ack\" needs login") != NULL, "%s", out);
	cr_assert_eq(fk.actions, 0);
	login();
	cr_assert(stats().logged_in);
	cr_assert(strstr(out, "guardian# ") != NULL, "%s", out);
	run("restart plc1");
	cr_assert_eq(fk.actions, 1);
	cr_assert_eq(fk.last_act, CONSOLE_RESTART_ADAPTER);
	cr_assert_str_eq(fk.last_arg, "plc1");
	cr_assert(strstr(out, "action 0 on plc1 done") != NULL, "%s", out);
	run("reconnect");
	cr_assert_eq(fk.last_act, CONSOLE_RECONNECT_UPLINK);
	run("ACK");
	cr_assert_eq(fk.last_act, CONSOLE_ACK_FAULTS);
	cr_assert_eq(fk.actions, 3);

	/* Idle: just short of the timeout the login holds; at it, it ends. */
	mono_ms += 299999;
	clear();
	console_tick(con);
	cr_assert(stats().logged_in);
	cr_assert_eq(out_len, 0);
	mono_ms += 1;
	console_tick(con);
	cr_assert(!stats().logged_in);
	cr_assert(strstr(out, "session ended after 300 s idle; logged out\r\nguardian> ") != NULL,
		  "%s", out);
	run("restart plc1");
	cr_assert(strstr(out, "needs login") != NULL, "%s", out);
	cr_assert_eq(fk.actions, 3);
}

Test(console, input_keeps_login_alive)
{
	login();
	for (int i = 0; i < 5; i++) {
		mono_ms += 200000;
		type(" ");
		console_tick(con);
	}
	cr_assert(stats().logged_in);
}

Test(console, logout_and_reset)
{
	login();
	run("logout");
	cr_assert(strstr(out, "logged out\r\nguardian> ") != NULL, "%s", out);
	cr_assert(!stats().logged_in);
	login();
	run("QUIT");
	cr_assert(!stats().logged_in);
	login();
	console_reset(con);
	cr_assert(!stats().logged_in, "a new connection must log in again");
}

Test(console, wrong_pin_and_cancel)
{
	run("login");
	run("1234");
	cr_assert(strstr(out, "wrong PIN\r\nguardian> ") != NULL, "%s", out);
	cr_assert(strstr(out, "1234") == NULL, "PIN echoed");
	run("login");
	clear();
	type("12\x03");
	cr_assert(strstr(out, "login cancelled") != NULL, "%s", out);
	run("login");
	run("47x1\b\b11");
	cr_assert(strstr(out, "logged in;") != NULL, "backspace in the PIN: %s", out);
	struct console_stats s = stats();
	cr_assert_eq(s.login_failures, 1);
	cr_assert_eq(s.logins, 1);
}

/* "PIN: " is the prompt while the PIN is typed: no "guardian> " after it. */
Test(console, pin_prompt_stands_alone)
{
	run("login");
	cr_assert(out_len >= 5 && strcmp(out + out_len - 5, "PIN: ") == 0,
		  "login must end with the PIN prompt: %s", out);
	cr_assert(strstr(out, "guardian> ") == NULL, "two prompts: %s", out);
	run(GOOD_PIN);
	cr_assert(strstr(out, "guardian# ") != NULL, "%s", out);
}

static void wrong_pin(void)
{
	run("login");
	cr_assert(strstr(out, "PIN: ") != NULL, "login did not ask: %s", out);
	run("0000");
	cr_assert(strstr(out, "wrong PIN") != NULL, "%s", out);
}

static void assert_locked(long secs, unsigned wrong)
{
	char want[96];

	snprintf(want, sizeof(want), "login locked for another %lds after %u wrong PINs", secs,
		 wrong);
	run("login");
	cr_assert(strstr(out, want) != NULL, "expected \"%s\":\n%s", want, out);
	cr_assert(strstr(out, "PIN:") == NULL);
}

Test(console, lockout_timing)
{
	int64_t t0;

	for (int i = 0; i < 4; i++)
		wrong_pin();
	cr_assert_eq(stats().locked_until_ms, 0);
	wrong_pin();
	t0 = mono_ms;
	cr_assert_eq(stats().locked_until_ms, t0 + 30000);
	cr_assert_eq(stats().lockouts, 1);
	assert_locked(30, 5);
	mono_ms = t0 + 29000;
	assert_locked(1, 5);
	mono_ms = t0 + 30000;
	cr_assert_eq(stats().locked_until_ms, 0, "the lock is over at 30 s");
	wrong_pin(); /* open at 30 s; a sixth wrong PIN locks for 60 s */
	t0 = mono_ms;
	assert_locked(60, 6);
	mono_ms = t0 + 59999;
	assert_locked(1, 6);
	mono_ms = t0 + 60000;
	wrong_pin();
	t0 = mono_ms;
	assert_locked(120, 7);
	/* Doubling stops at an hour. */
	for (int i = 0; i < 8; i++) {
		mono_ms += 3600000;
		wrong_pin();
	}
	assert_locked(3600, 15);
	/* A lockout survives a new connection; a right PIN clears the count. */
	console_reset(con);
	assert_locked(3600, 15);
	mono_ms += 3600000;
	login();
	run("logout");
	for (int i = 0; i < 4; i++)
		wrong_pin();
	cr_assert_eq(stats().locked_until_ms, 0, "the count was not reset by the right PIN");
	cr_assert_eq(stats().lockouts, 11);
	cr_assert_eq(stats().login_failures, 19);
}

Test(console, login_not_configured)
{
	console_free(con);
	con = make_console(NULL);
	run("login");
	cr_assert(strstr(out, "login is not configured (set console.pin_hash)") != NULL, "%s", out);
	console_free(con);
	con = make_console("pbkdf2-sha256$10$00$00");
	run("login");
	cr_assert(strstr(out, "login is not configured (console.pin_hash: iterations") != NULL,
		  "%s", out);
	cr_assert(strstr(out, "PIN:") == NULL);
}

/* ---- PIN hashes -------------------------------------------------------------------------- */

Test(console, pin_hash_round_trip)
{
	char h1[160], h2[160];

	cr_assert_eq(console_pin_hash("123456", ITER, h1, sizeof(h1)), 0);
	cr_assert_eq(strncmp(h1, "pbkdf2-sha256$1000$", 19), 0, "%s", h1);
	cr_assert_eq(strlen(h1), 19 + 32 + 1 + 64, "%s", h1);
	cr_assert_null(console_pin_hash_check(h1));
	cr_assert(console_pin_verify("123456", h1));
	cr_assert(!console_pin_verify("123457", h1));
	cr_assert(!console_pin_verify("12345", h1));
	cr_assert(!console_pin_verify("", h1));
	cr_assert_eq(console_pin_hash("123456", ITER, h2, sizeof(h2)), 0);
	cr_assert_str_neq(h1, h2, "the salt must differ");
	cr_assert(console_pin_verify("123456", h2));

	/* Tampered: one hex digit of the hash, then of the salt, then the iterations. */
	strcpy(h2, h1);
	h2[strlen(h2) - 1] = h2[strlen(h2) - 1] == '0' ? '1' : '0';
	cr_assert(!console_pin_verify("123456", h2));
	strcpy(h2, h1);
	h2[20] = h2[20] == '0' ? '1' : '0';
	cr_assert(!console_pin_verify("123456", h2));
	strcpy(h2, h1);
	h2[17] = '1'; /* 1000 -> 1010 */
	cr_assert(!console_pin_verify("123456", h2));
	cr_assert(!console_pin_verify("123456", NULL));
}

Test(console, pin_rules)
{
	char h[160];

	cr_assert_eq(console_pin_hash("123", ITER, h, sizeof(h)), -1);
	cr_assert_eq(console_pin_hash("1234567890123", ITER, h, sizeof(h)), -1);
	cr_assert_eq(console_pin_hash("12a4", ITER, h, sizeof(h)), -1);
	cr_assert_eq(console_pin_hash("1234", 999, h, sizeof(h)), -1);
	cr_assert_eq(console_pin_hash("1234", ITER, h, 50), -1, "too small a buffer");
	cr_assert_eq(console_pin_hash("123456789012", ITER, h, sizeof(h)), 0);
	cr_assert(console_pin_verify("123456789012", h));
}

Test(console, pin_hash_formats)
{
	char good[160], bad[200];
	const char *why;

	cr_assert_eq(console_pin_hash("2468", ITER, good, sizeof(good)), 0);
	cr_assert_str_eq(console_pin_hash_check(""), "empty");
	cr_assert_not_null(strstr(console_pin_hash_check("sha1$1000$aa$bb"), "pbkdf2-sha256$"));
	snprintf(bad, sizeof(bad), "pbkdf2-sha256$999%s", good + 18);
	why = console_pin_hash_check(bad);
	cr_assert(why != NULL && strstr(why, "iterations") != NULL, "%s", why);
	snprintf(bad, sizeof(bad), "pbkdf2-sha256$10000001%s", good + 18);
	why = console_pin_hash_check(bad);
	cr_assert(why != NULL && strstr(why, "iterations") != NULL, "%s", why);
	snprintf(bad, sizeof(bad), "pbkdf2-sha256$x%s", good + 18);
	cr_assert_not_null(console_pin_hash_check(bad));
	snprintf(bad, sizeof(bad), "%.20s%s", good, good + 21); /* salt one digit short */
	why = console_pin_hash_check(bad);
	cr_assert(why != NULL && strstr(why, "salt") != NULL, "%s", why);
	snprintf(bad, sizeof(bad), "%sg", good);
	bad[strlen(bad) - 2] = 'g';
	bad[strlen(bad) - 1] = '\0'; /* a non-hex digit in the hash */
	why = console_pin_hash_check(bad);
	cr_assert(why != NULL && strstr(why, "hash") != NULL, "%s", why);
	snprintf(bad, sizeof(bad), "%s00", good);
	why = console_pin_hash_check(bad);
	cr_assert(why != NULL && strstr(why, "hash") != NULL, "%s", why);
	snprintf(bad, sizeof(bad), "%.*s", (int)strlen(good) - 1, good);
	cr_assert_not_null(console_pin_hash_check(bad));
	cr_assert(!console_pin_verify("2468", bad));
	for (size_t i = 0; i < strlen(good); i++) {
		snprintf(bad, sizeof(bad), "%.*s", (int)i, good);
		cr_assert_not_null(console_pin_hash_check(bad), "prefix of %zu accepted", i);
	}
}

/* ---- watch ------------------------------------------------------------------------------- */

Test(console, watch_redraw_and_stop)
{
	login();
	run("watch boiler.*");
	cr_assert(strstr(out, "\x1b[H\x1b[2J\x1b[Hwatch boiler.* (any key to stop)\x1b[K\r\n") !=
			  NULL,
		  "%s", out);
	cr_assert(strstr(out, "boiler.temp") != NULL);
	cr_assert(strstr(out, "pump.speed") == NULL);
	cr_assert(strstr(out, "\x1b[J") != NULL);
	cr_assert(strstr(out, "guardian") == NULL ||
			  strstr(out, "guardian#") < strstr(out, "watch"),
		  "a prompt after the table: %s", out);
	assert_fits("watch");

	clear();
	mono_ms += 500;
	console_tick(con);
	cr_assert_eq(out_len, 0, "redrawn too soon");
	mono_ms += 500;
	snprintf(fk.st.version, sizeof(fk.st.version), "x"); /* any state change */
	console_tick(con);
	cr_assert(strncmp(out, "\x1b[Hwatch boiler.*", 17) == 0, "%s", out);
	cr_assert(strstr(out, "boiler.temp") != NULL);
	cr_assert(strstr(out, "\x1b[2J") == NULL, "redraw must not flash the screen");
	cr_assert_eq(count(out, "\x1b[K\r\n"), count(out, "\r\n"), "a line without ESC[K: %s", out);
	cr_assert(strstr(out, "\x1b[J") != NULL);

	/* Watching for longer than the idle timeout keeps the login. */
	for (int i = 0; i < 400; i++) {
		mono_ms += 1000;
		console_tick(con);
	}
	cr_assert(stats().logged_in);

	/* A key stops it and is used up: 'x' is not typed. */
	clear();
	type("x");
	cr_assert_str_eq(out, "guardian# ");
	run("");
	cr_assert(strstr(out, "unknown") == NULL, "%s", out);
	clear();
	mono_ms += 5000;
	console_tick(con);
	cr_assert(strstr(out, "watch") == NULL, "still redrawing: %s", out);
}

Test(console, watch_stopped_by_arrow_and_enter)
{
	run("watch");
	cr_assert(strstr(out, "watch * (any key to stop)") != NULL, "%s", out);
	clear();
	type("\x1b[A");
	cr_assert_str_eq(out, "guardian> ", "the arrow's tail was typed: %s", out);
	run("watch");
	clear();
	type("\r\n");
	cr_assert_str_eq(out, "guardian> ", "CR LF made two prompts: %s", out);
	fk.many = 100;
	run("watch");
	cr_assert(strstr(out, "... and 84 more (narrow the glob)") != NULL, "%s", out);
	cr_assert(count(strstr(out, "\x1b[2J"), "\r\n") <= 23, "watch must fit a 24-line screen");
	clear();
	type("\x03");
	cr_assert_str_eq(out, "guardian> ");
}
