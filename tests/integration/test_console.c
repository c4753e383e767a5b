/* test_console.c: the field console as a technician uses it: guardian with a simulated PLC, the
 * console on a pseudo-terminal, a test typing at the other end and reading the screen. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "kiln-2"
#define PIN    "4711"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(console, .init = setup, .fini = it_teardown, .timeout = 120);

/* The technician's end of the line: what was typed, and the screen since the last mark. */
struct term {
	int fd;
	char screen[262144];
	size_t len, mark;
};

static void term_open(struct term *t, const char *path)
{
	struct termios tio;

	t->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
	cr_assert_geq(t->fd, 0, "cannot open %s: %s", path, strerror(errno));
	cr_assert_eq(tcgetattr(t->fd, &tio), 0);
	cfmakeraw(&tio);
	cr_assert_eq(tcsetattr(t->fd, TCSANOW, &tio), 0);
	t->len = t->mark = 0;
}

static void term_pump(struct term *t, int ms)
{
	struct pollfd p = { .fd = t->fd, .events = POLLIN };

	if (poll(&p, 1, ms) <= 0)
		return;
	for (;;) {
		ssize_t n = read(t->fd, t->screen + t->len, sizeof(t->screen) - 1 - t->len);

		if (n <= 0)
			break;
		t->len += (size_t)n;
		if (t->len >= sizeof(t->screen) - 1) {
			/* Keep the tail: old screens do not matter. */
			memmove(t->screen, t->screen + t->len / 2, t->len - t->len / 2);
			t->len -= t->len / 2;
			t->mark = 0;
		}
	}
	t->screen[t->len] = '\0';
}

static void term_send(struct term *t, const char *text, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(t->fd, text + done, n - done);

		if (w > 0)
			done += (size_t)w;
		else
			term_pump(t, 10); /* the console echoes; read so it never blocks */
	}
}

/* Types a command and marks the screen, so term_expect looks only at its answer. */
static void term_type(struct term *t, const char *line)
{
	term_pump(t, 0);
	t->mark = t->len;
	term_send(t, line, strlen(line));
}

/* Waits until 'needle' shows after the mark; returns the screen from the mark on. */
static const char *term_expect(struct term *t, const char *needle, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	for (;;) {
		t->screen[t->len] = '\0';
		if (strstr(t->screen + t->mark, needle) != NULL)
			return t->screen + t->mark;
		if (h_ms() > end)
			break;
		term_pump(t, 50);
	}
	cr_assert_fail("the console never showed \"%s\"; screen:\n%s\nguardian log:\n%s", needle,
		       t->screen + t->mark, h_read(h_path("guardian.log")));
	return NULL;
}

static char *pin_hash(void)
{
	char cmd[512];
	char *hash;

	snprintf(cmd, sizeof(cmd), "echo %s | %s/guardian console hash-pin >%s", PIN, h_build(),
		 h_path("pin.hash"));
	cr_assert_eq(h_sh("%s", cmd), 0, "hash-pin failed");
	hash = h_read(h_path("pin.hash"));
	cr_assert_not_null(hash);
	hash[strcspn(hash, "\n")] = '\0';
	return hash;
}

struct rig {
	int bport, mport;
	pid_t plc, gd;
	char tty_gd[256], tty_tech[256];
	struct term term;
};

/*
 * plcsim on TCP, mosquitto, guardian with its console on a pty; the test holds the other end.
 * With 'trouble', the PLC's map also names a register the PLC refuses (exception 2), and a
 * second adapter reads a unit that never answers.
 */
static void rig_start_with(struct rig *r, int idle_timeout_s, bool trouble)
{
	char site[4096], args[128], adapters[2048];
	char *hash = pin_hash();
	char *text;

	r->bport = h_free_port();
	r->mport = h_free_port();
	snprintf(r->tty_tech, sizeof(r->tty_tech), "%s", h_path("tty-tech"));
	snprintf(r->tty_gd, sizeof(r->tty_gd), "%s", h_path("tty-console"));
	cr_assert_gt(h_pty_pair(r->tty_tech, r->tty_gd), 0);
	cr_assert_gt(h_mosquitto(r->bport), 0);
	cr_assert_gt(h_subscribe(r->bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --step-ms 100", r->mport);
	r->plc = h_plcsim(args, h_path("plcsim.log"));
	cr_assert_gt(r->plc, 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"press\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":200,\"timeout_ms\":300,\"backoff_min_ms\":200,"
		 "\"backoff_max_ms\":400,\"points\":[{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"temp\",\"address\":110,\"scale\":0.1,\"offset\":-40,"
		 "\"unit\":\"degC\"}%s]}]",
		 r->mport, trouble ? ",{\"name\":\"missing\",\"address\":20000}" : "");
	if (trouble) {
		size_t n = strlen(adapters) - 1; /* before the closing ] */

		snprintf(adapters + n, sizeof(adapters) - n,
			 ",{\"name\":\"dead\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
			 "\"port\":%d,\"unit_id\":9,\"poll_interval_ms\":200,\"timeout_ms\":300,"
			 "\"backoff_min_ms\":200,\"backoff_max_ms\":400,\"points\":[{\"name\":"
			 "\"level\",\"table\":\"input\",\"address\":0}]}]",
			 r->mport);
	}
	it_write_site(DEVICE, r->bport, adapters, it_allow_all, "");
	/* Add the console section to the site config it_write_site wrote. */
	text = h_read(h_path("site.json"));
	cr_assert_not_null(text);
	text[strlen(text) - 1] = '\0';
	snprintf(site, sizeof(site),
		 "%s,\"console\":{\"device\":\"%s\",\"baud\":115200,\"pin_hash\":\"%s\","
		 "\"idle_timeout_s\":%d,\"lockout_after\":3,\"lockout_base_s\":5}}",
		 text, r->tty_gd, hash, idle_timeout_s);
	h_write(h_path("site.json"), site);
	free(text);
	free(hash);
	r->gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(r->gd, 0);
	term_open(&r->term, r->tty_tech);
	it_wait_messages(h_path("sub.out"), 3, 20000);
}

static void rig_start(struct rig *r, int idle_timeout_s)
{
	rig_start_with(r, idle_timeout_s, false);
}

/* The status screen's verdict, its wrapped lines joined (static). */
static const char *verdict(const char *screen)
{
	static char text[4096];
	const char *p = strstr(screen, "OK:");
	size_t n = 0;

	if (p == NULL || (strstr(screen, "WARN:") && strstr(screen, "WARN:") < p))
		p = strstr(screen, "WARN:");
	if (p == NULL || (strstr(screen, "FAULT:") && strstr(screen, "FAULT:") < p))
		p = strstr(screen, "FAULT:");
	if (p == NULL)
		return "";
	for (; *p != '\0' && strncmp(p, "\r\ndevice:", 9) != 0 && n + 1 < sizeof(text); p++) {
		if (strncmp(p, "\r\n", 2) == 0) {
			p += 1 + strspn(p + 2, " ");
			text[n++] = ' ';
		} else {
			text[n++] = *p;
		}
	}
	text[n] = '\0';
	return text;
}

Test(console, status_shows_the_adapter_up_and_values_arriving)
{
	static struct rig r;
	const char *s;

	rig_start(&r, 300);
	term_type(&r.term, "\r");
	term_expect(&r.term, "guardian> ", 5000);
	term_type(&r.term, "status\r");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "OK") != NULL, "status verdict not OK:\n%s", s);
	cr_expect(strstr(s, "press") != NULL, "the adapter is missing:\n%s", s);
	cr_expect(strstr(s, DEVICE) != NULL, "the device name is missing:\n%s", s);
	term_type(&r.term, "points press/*\r");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "press/temp") != NULL && strstr(s, "degC") != NULL, "points table:\n%s",
		  s);
	cr_expect(strstr(s, "good") != NULL, "no good value in:\n%s", s);
	/* Every line of the answer fits 80 columns. */
	for (const char *line = s; *line != '\0';) {
		size_t len = strcspn(line, "\r\n");

		cr_expect_leq(len, 80, "a line of %zu columns: %.*s", len, (int)len, line);
		line += len;
		line += strspn(line, "\r\n");
	}
	/* LF alone and CR LF each run exactly one command. */
	term_type(&r.term, "uplink\n");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "connected") != NULL, "uplink:\n%s", s);
	term_type(&r.term, "help\r\n");
	term_expect(&r.term, "guardian> ", 5000);
	{
		size_t help = r.term.mark;

		/* The next command's answer: a second command run by the LF would show before it.
		 */
		term_type(&r.term, "uplink\r");
		term_expect(&r.term, "connected", 5000);
		term_expect(&r.term, "guardian> ", 5000);
		s = r.term.screen + help;
		cr_expect_null(strstr(s, "unknown command"), "CR LF ran a second command:\n%s", s);
		cr_expect_null(strstr(s, "guardian> guardian> "), "CR LF ran two commands:\n%s", s);
	}
}

Test(console, unplugged_plc_shows_as_a_fault_within_a_poll_interval)
{
	static struct rig r;
	const char *s;
	int64_t t0;

	rig_start(&r, 300);
	h_stop(r.plc, 2000);
	t0 = h_ms();
	/* Poll every 200 ms, timeout 300 ms: the fault is known within a second. */
	for (;;) {
		term_type(&r.term, "status\r");
		s = term_expect(&r.term, "guardian> ", 5000);
		if (strstr(s, "FAULT") != NULL || h_ms() - t0 > 10000)
			break;
		h_sleep_ms(200);
	}
	cr_expect(strstr(s, "FAULT") != NULL, "no fault shown after the PLC went away:\n%s", s);
	cr_expect_lt(h_ms() - t0, 3000, "the fault took %lld ms to show", (long long)(h_ms() - t0));
	cr_expect(strstr(s, "DOWN") != NULL || strstr(s, "press") != NULL, "status:\n%s", s);
}

Test(console, privileged_command_needs_login_and_ends_with_idle_timeout)
{
	static struct rig r;
	const char *s;

	rig_start(&r, 5);
	term_type(&r.term, "reconnect\r");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "needs login") != NULL, "refusal:\n%s", s);
	cr_expect_eq(h_count(h_path("guardian.log"), "technician:"), 0, "done without login");

	term_type(&r.term, "login\r");
	term_expect(&r.term, "PIN", 5000);
	term_type(&r.term, "0000\r");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "wrong PIN") != NULL, "wrong PIN accepted:\n%s", s);

	term_type(&r.term, "login\r");
	term_expect(&r.term, "PIN", 5000);
	term_type(&r.term, PIN "\r");
	s = term_expect(&r.term, "guardian# ", 5000);
	cr_expect(strstr(s, PIN) == NULL, "the PIN was echoed:\n%s", s);
	term_type(&r.term, "restart press\r");
	s = term_expect(&r.term, "guardian# ", 5000);
	cr_expect(strstr(s, "press") != NULL, "restart answer:\n%s", s);
	cr_expect_geq(h_wait_contains(h_path("guardian.log"), "technician:", 3000), 0,
		      "the action was not logged");
	/* The action is in the audit log, which guardian can verify. */
	cr_expect_eq(h_sh("%s/guardian audit verify -c %s >/dev/null 2>&1", h_build(),
			  h_path("site.json")),
		     0);

	/* 5 s without input ends the login. */
	term_expect(&r.term, "logged out", 10000);
	term_type(&r.term, "reconnect\r");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "needs login") != NULL, "still logged in after idle:\n%s", s);
}

Test(console, wrong_pins_lock_login_and_show_in_health)
{
	static struct rig r;
	const char *s;

	rig_start(&r, 300);
	for (int i = 0; i < 3; i++) {
		term_type(&r.term, "login\r");
		term_expect(&r.term, "PIN", 5000);
		term_type(&r.term, "9999\r");
		term_expect(&r.term, "wrong PIN", 5000);
	}
	term_type(&r.term, "login\r");
	s = term_expect(&r.term, "guardian> ", 5000);
	cr_expect(strstr(s, "locked") != NULL, "no lockout after 3 wrong PINs:\n%s", s);
	cr_expect_geq(h_wait_contains(h_path("sub.out"), "\"lockouts\":1", 5000), 0,
		      "the lockout is not in health");
}

/* Noise on the line, a 100 KB line and a vanished terminal: the console recovers and
 * telemetry never stalls. */
Test(console, garbage_and_huge_lines_neither_crash_nor_stall_telemetry)
{
	static struct rig r;
	static char big[100 * 1024 + 2];
	unsigned char noise[4096];
	size_t before;
	const char *s;

	rig_start(&r, 300);
	srand(7);
	for (size_t i = 0; i < sizeof(noise); i++)
		noise[i] = (unsigned char)rand();
	before = h_count(h_path("sub.out"), "/telemetry ");
	term_send(&r.term, (const char *)noise, sizeof(noise));
	memset(big, 'x', sizeof(big) - 2);
	big[sizeof(big) - 2] = '\r';
	term_send(&r.term, big, sizeof(big) - 1);
	term_pump(&r.term, 200);
	term_type(&r.term, "\rstatus\r");
	s = term_expect(&r.term, "press", 10000);
	(void)s;
	/* Telemetry kept flowing. */
	cr_expect_eq(h_wait_count(h_path("sub.out"), "/telemetry ", before + 5, 10000), 0,
		     "telemetry stalled while the console took noise");
	cr_expect_eq(kill(r.gd, 0), 0, "guardian died");

	/* The terminal goes away and comes back: a fresh banner and prompt. */
	close(r.term.fd);
	h_sleep_ms(500); /* away for a while: nothing to wait for */
	term_open(&r.term, r.tty_tech);
	term_type(&r.term, "\r");
	term_expect(&r.term, "guardian> ", 5000);
}

/* `guardian console -c FILE` reaches the running daemon's console from a shell on the box. */
Test(console, local_console_command_attaches_to_the_daemon)
{
	static struct rig r;
	char *out;

	rig_start(&r, 300);
	cr_assert_eq(h_sh("printf 'adapters\\r' | %s/guardian console -c %s >%s 2>&1", h_build(),
			  h_path("site.json"), h_path("local.out")),
		     0, "guardian console failed: %s", h_read(h_path("local.out")));
	out = h_read(h_path("local.out"));
	cr_assert_not_null(out);
	cr_expect(strstr(out, "press") != NULL && strstr(out, "modbus-tcp") != NULL,
		  "adapters table:\n%s", out);
	free(out);
}

/* Reads that fail are not OK: the verdict names the adapter, the unit and the point, and the
 * first exception of a point is logged once. */
Test(console, status_names_failing_reads_with_unit_and_point)
{
	static struct rig r;
	const char *s = "", *v = "";
	int64_t end;

	rig_start_with(&r, 300, true);
	end = h_ms() + 10000;
	while (h_ms() < end) {
		term_type(&r.term, "status\r");
		s = term_expect(&r.term, "guardian> ", 5000);
		v = verdict(s);
		if (strstr(v, "dead: no good read yet") != NULL &&
		    strstr(v, "press/missing") != NULL)
			break;
		h_sleep_ms(300);
	}
	cr_expect(strncmp(v, "FAULT: ", 7) == 0, "status:\n%s", s);
	cr_expect(strstr(v, "dead: no good read yet: dead/level (unit 9 input 0): ") != NULL,
		  "the adapter that never read is not named with its unit and point:\n%s", v);
	cr_expect(strstr(v, "press: 1 of 3 points not good: press/missing (unit 1 holding 20000): "
			    "exception 2 (illegal data address)") != NULL,
		  "the refused point is not named:\n%s", v);
	cr_expect(strstr(s, "OK:") == NULL, "%s", s);
	/* Logged once, however often it is polled (every 200 ms here). */
	h_sleep_ms(1000);
	cr_expect_eq(h_count(h_path("guardian.log"), "exception 2 (illegal data address)"), 1,
		     "guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"),
			     "press: unit 1: exception 2 (illegal data address) reading holding "
			     "20000-20000, point press/missing"),
		     1, "guardian log:\n%s", h_read(h_path("guardian.log")));
}

/* After login, "PIN: " is the only prompt on the line. */
Test(console, pin_prompt_is_not_mixed_with_the_prompt)
{
	static struct rig r;
	const char *s;

	rig_start(&r, 300);
	term_type(&r.term, "login\r");
	s = term_expect(&r.term, "PIN: ", 5000);
	term_pump(&r.term, 500);
	s = strstr(r.term.screen + r.term.mark, "PIN: ");
	cr_assert_not_null(s);
	cr_expect_str_eq(s, "PIN: ", "more after the PIN prompt: \"%s\"", s);
	term_type(&r.term, PIN "\r");
	term_expect(&r.term, "guardian# ", 5000);
}
