/* test_sims.c: the equipment simulators (serialsim, slcansim) byte for byte on a pty pair, read
 * directly, without guardian. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

TestSuite(sims, .fini = it_teardown, .timeout = 60);

/* A pty pair with a simulator on end 'sim' and the test reading end 'peer' (fd). */
struct rig {
	char sim[256], peer[256], log[256];
	pid_t socat;
	pid_t pid;
	int fd;
};

/* Opens the test's end raw and drops anything already in it. */
static int open_peer(const char *path)
{
	struct termios tios;
	int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(tcgetattr(fd, &tios), 0);
	cfmakeraw(&tios);
	cr_assert_eq(tcsetattr(fd, TCSANOW, &tios), 0);
	tcflush(fd, TCIOFLUSH);
	return fd;
}

static void rig_plug(struct rig *r)
{
	if (r->sim[0] == '\0') {
		snprintf(r->sim, sizeof(r->sim), "%s", h_path("tty-sim"));
		snprintf(r->peer, sizeof(r->peer), "%s", h_path("tty-peer"));
		snprintf(r->log, sizeof(r->log), "%s", h_path("sim.log"));
	}
	r->socat = h_pty_pair(r->sim, r->peer);
	cr_assert_gt(r->socat, 0, "socat could not make a pty pair");
	r->fd = open_peer(r->peer);
}

/* The cable is pulled: the pair goes away with both links. */
static void rig_unplug(struct rig *r)
{
	close(r->fd);
	r->fd = -1;
	h_stop(r->socat, 2000);
	unlink(r->sim);
	unlink(r->peer);
}

/* Starts build/<tool> --device <sim end> and the NULL-terminated extra arguments. */
static void rig_start(struct rig *r, const char *tool, const char *const *args)
{
	char bin[256];
	const char *argv[32] = { bin, "--device", r->sim };
	size_t n = 3;

	snprintf(bin, sizeof(bin), "%s/%s", h_build(), tool);
	while (*args != NULL && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	r->pid = h_spawn(r->log, argv);
	cr_assert_gt(r->pid, 0);
	cr_assert_eq(h_wait_contains(r->log, "line up", 5000), 0, "%s never opened %s; log:\n%s",
		     tool, r->sim, h_read(r->log));
}

/* Reads until 'want' bytes arrived or timeout_ms passed; returns the count. */
static size_t read_bytes(int fd, void *buf, size_t want, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;
	size_t got = 0;

	while (got < want) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = end - h_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = read(fd, (char *)buf + got, want - got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
	}
	return got;
}

/* Reads everything that arrives within ms into buf (NUL-terminated); returns the count. */
static size_t read_for(int fd, char *buf, size_t size, int ms)
{
	size_t got = read_bytes(fd, buf, size - 1, ms);

	buf[got] = '\0';
	return got;
}

static void send_text(int fd, const char *text)
{
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

static void expect_bytes(const void *got, const void *want, size_t len, const char *what)
{
	const uint8_t *g = got, *w = want;

	for (size_t i = 0; i < len; i++)
		cr_assert_eq(g[i], w[i], "%s: byte %zu is 0x%02X, expected 0x%02X", what, i, g[i],
			     w[i]);
}

/* --- serialsim --- */

static const char line0[] = "ST,OK,+00012.34,kg,-005.5,C,0\r\n";
static const char line1[] = "ST,OK,+00012.35,kg,-004.5,C,1\r\n";

Test(sims, serialsim_text_lines_are_exact_and_it_stops_with_a_summary)
{
	static const char *const args[] = { "--interval-ms", "20", NULL };
	struct rig r = { 0 };
	char buf[128];
	int status;

	rig_plug(&r);
	rig_start(&r, "serialsim", args);
	cr_assert_eq(read_bytes(r.fd, buf, 62, 3000), 62);
	expect_bytes(buf, line0, 31, "line n=0");
	expect_bytes(buf + 31, line1, 31, "line n=1");
	status = h_stop(r.pid, 3000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status 0x%x", status);
	cr_expect_eq(h_wait_contains(r.log, "serialsim: stopped: ", 1000), 0, "no summary in:\n%s",
		     h_read(r.log));
	cr_expect_eq(h_count(r.log, " frames sent, 0 requests answered, 0 commands seen"), 1);
	close(r.fd);
}

static uint8_t xor8(const char *p, size_t len)
{
	uint8_t x = 0;

	while (len-- > 0)
		x ^= (uint8_t)*p++;
	return x;
}

Test(sims, serialsim_xor8_checksum_is_exact)
{
	static const char *const args[] = { "--checksum", "xor8", "--interval-ms", "20", NULL };
	struct rig r = { 0 };
	char want[64];
	char buf[128];

	rig_plug(&r);
	rig_start(&r, "serialsim", args);
	cr_assert_eq(read_bytes(r.fd, buf, 68, 3000), 68);
	/* Fixed by hand from the layout in tools/serialsim.c, then recomputed here. */
	expect_bytes(buf, "ST,OK,+00012.34,kg,-005.5,C,0*4E\r\n", 34, "line n=0");
	expect_bytes(buf + 34, "ST,OK,+00012.35,kg,-004.5,C,1*4F\r\n", 34, "line n=1");
	snprintf(want, sizeof(want), "*%02X\r\n", xor8(line1, 29));
	expect_bytes(buf + 34 + 29, want, 5, "computed checksum of n=1");
	close(r.fd);
}

/* CRC-16/MODBUS, bit by bit. */
static uint16_t crc16_modbus(const uint8_t *p, size_t len)
{
	uint16_t crc = 0xffff;

	while (len-- > 0) {
		crc ^= *p++;
		for (int i = 0; i < 8; i++)
			crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xa001) : (uint16_t)(crc >> 1);
	}
	return crc;
}

Test(sims, serialsim_binary_frames_are_exact)
{
	static const char *const args[] = { "--mode", "binary", "--interval-ms", "20", NULL };
	/* n=0: -5.5f = C0 B0 00 00; n=1: -4.5f = C0 90 00 00. CRCs worked out by hand. */
	static const uint8_t want[2][17] = {
		{ 0x02, 0x0c, 0x00, 0x00, 0xd2, 0x04, 0x00, 0x00, 0xc0, 0xb0, 0x00, 0x00, 0x00,
		  0x00, 0xd5, 0x5e, 0x03 },
		{ 0x02, 0x0c, 0x00, 0x01, 0xd3, 0x04, 0x00, 0x00, 0xc0, 0x90, 0x00, 0x00, 0x00,
		  0x00, 0x01, 0xa0, 0x03 },
	};
	struct rig r = { 0 };
	uint8_t buf[34];

	rig_plug(&r);
	rig_start(&r, "serialsim", args);
	cr_assert_eq(read_bytes(r.fd, buf, sizeof(buf), 3000), sizeof(buf));
	for (int n = 0; n < 2; n++) {
		const uint8_t *f = buf + 17 * n;
		uint16_t crc = crc16_modbus(want[n] + 1, 13);

		cr_assert_eq(crc, (uint16_t)(want[n][14] | want[n][15] << 8),
			     "the hand-made vector of n=%d disagrees with the CRC", n);
		expect_bytes(f, want[n], 17, n == 0 ? "frame n=0" : "frame n=1");
	}
	close(r.fd);
}

Test(sims, serialsim_answers_only_a_complete_request)
{
	static const char *const args[] = { "--request", "W\\r\\n", NULL };
	struct rig r = { 0 };
	char buf[128], unasked[128], partial[128], junk[128];

	rig_plug(&r);
	rig_start(&r, "serialsim", args);
	read_for(r.fd, unasked, sizeof(unasked), 300);
	send_text(r.fd, "W");
	read_for(r.fd, partial, sizeof(partial), 200);
	/* "WW\r\n" ends in the request: the matcher must not lose it to the first W. */
	send_text(r.fd, "W\r\n");
	cr_assert_eq(read_for(r.fd, buf, sizeof(buf), 400), 31, "got \"%s\"", buf);
	expect_bytes(buf, line0, 31, "answer 1");
	/* An answer came after them on the line: what was sent before it is in. */
	cr_assert_str_empty(unasked, "sent unasked: \"%s\"", unasked);
	cr_assert_str_empty(partial, "answered a partial request: \"%s\"", partial);
	send_text(r.fd, "xyz\r\nW\r");
	read_for(r.fd, junk, sizeof(junk), 200);
	send_text(r.fd, "\n");
	cr_assert_eq(read_for(r.fd, buf, sizeof(buf), 400), 31, "got \"%s\"", buf);
	expect_bytes(buf, line1, 31, "answer 2");
	cr_assert_str_empty(junk, "answered junk: \"%s\"", junk);
	close(r.fd);
}

/* Checks one noise burst: 5 bytes, printable, no CR, LF, '*', ',' or 'S'. */
static void expect_junk(const char *p)
{
	for (int i = 0; i < 5; i++)
		cr_assert(p[i] >= 0x21 && p[i] <= 0x7e && strchr("*,S", p[i]) == NULL,
			  "junk byte %d is 0x%02X", i, (uint8_t)p[i]);
}

Test(sims, serialsim_noise_is_as_documented)
{
	static const char *const args[] = { "--checksum",    "xor8", "--noise", "2", "--count", "4",
					    "--interval-ms", "20",   NULL };
	struct rig r = { 0 };
	char buf[512];
	char good[4][64];
	char bad3[40];
	size_t at = 0;

	for (int n = 0; n < 4; n++) {
		snprintf(good[n], sizeof(good[n]), "ST,OK,+00012.3%d,kg,-00%d.5,C,%d", 4 + n, 5 - n,
			 n);
		snprintf(good[n] + 29, sizeof(good[n]) - 29, "*%02X\r\n", xor8(good[n], 29));
	}
	memcpy(bad3, good[3], sizeof(bad3));
	snprintf(bad3 + 29, sizeof(bad3) - 29, "*%02X\r\n", xor8(good[3], 29) ^ 0xff);

	rig_plug(&r);
	rig_start(&r, "serialsim", args);
	/* K=2, 4 frames: L0 L1 junk L2 L3 bad-L3 junk, then nothing (--count 4). */
	cr_assert_eq(read_for(r.fd, buf, sizeof(buf), 1000), 4 * 34 + 34 + 2 * 5, "got \"%s\"",
		     buf);
	expect_bytes(buf + at, good[0], 34, "L0");
	at += 34;
	expect_bytes(buf + at, good[1], 34, "L1");
	at += 34;
	expect_junk(buf + at);
	at += 5;
	expect_bytes(buf + at, good[2], 34, "L2 after the junk");
	at += 34;
	expect_bytes(buf + at, good[3], 34, "L3");
	at += 34;
	expect_bytes(buf + at, bad3, 34, "corrupted copy of L3");
	at += 34;
	expect_junk(buf + at);
	close(r.fd);
}

/* Parses the counter at the end of a text line. */
static long line_counter(const char *line)
{
	const char *comma = strrchr(line, ',');

	return comma ? strtol(comma + 1, NULL, 10) : -1;
}

Test(sims, serialsim_resumes_after_unplug)
{
	static const char *const args[] = { "--interval-ms", "20", NULL };
	struct rig r = { 0 };
	char buf[64];
	long before, after;

	rig_plug(&r);
	rig_start(&r, "serialsim", args);
	cr_assert_eq(read_bytes(r.fd, buf, 31, 3000), 31);
	buf[31] = '\0';
	before = line_counter(buf);
	rig_unplug(&r);
	cr_assert_eq(h_wait_contains(r.log, "line down", 3000), 0, "log:\n%s", h_read(r.log));
	h_sleep_ms(300); /* unplugged for a while: a few retries against a missing path */
	rig_plug(&r);
	for (int i = 0; i < 100 && h_count(r.log, "line up") < 2; i++)
		h_sleep_ms(50);
	cr_assert_eq(h_count(r.log, "line up"), 2, "log:\n%s", h_read(r.log));
	/* The first bytes may be the tail of a line cut by the replug: take a whole one. */
	tcflush(r.fd, TCIFLUSH);
	{
		char stream[256];
		size_t got = read_for(r.fd, stream, sizeof(stream), 300);
		char *start = strstr(stream, "\nST,");

		cr_assert(got > 0 && start != NULL, "nothing after the replug: \"%s\"", stream);
		after = line_counter(strtok(start + 1, "*\r"));
	}
	cr_expect_gt(after, before, "counter %ld after the replug, %ld before", after, before);
	cr_expect_eq(h_count(r.log, "serialsim: stopped"), 0, "the simulator exited");
	close(r.fd);
}

/* --- slcansim --- */

/* The reply to O with the first sending of every frame of the default set, in its order. */
static const char open_and_first_frames[] = "\r"
					    "t123800DC0506FF112233\r"
					    "T0CF004008FFAFAFE02EFFFFFF\r"
					    "t2004F9C0BEEF\r"
					    "t300800A00F0000000000\r"
					    "t7FF2DEAD\r";

/* Sends O and expects the reply, then the first frames (more follow: not read here). */
static void expect_open(int fd)
{
	char buf[sizeof(open_and_first_frames)] = { 0 };

	send_text(fd, "O\r");
	read_bytes(fd, buf, sizeof(buf) - 1, 1000);
	cr_assert_str_eq(buf, open_and_first_frames, "reply to O and the first frames");
}

/* Sends cmd and expects exactly 'want' back (nothing else is on the line). */
static void expect_reply(int fd, const char *cmd, const char *want)
{
	char buf[256];

	send_text(fd, cmd);
	read_for(fd, buf, strlen(want) + 1, 300);
	cr_assert_str_eq(buf, want, "reply to \"%s\"", cmd);
}

Test(sims, slcansim_answers_commands_and_emits_the_default_set)
{
	static const char *const args[] = { NULL };
	struct rig r = { 0 };
	char buf[4096], closed[4096];

	rig_plug(&r);
	rig_start(&r, "slcansim", args);
	expect_reply(r.fd, "V\r", "V1013\r");
	expect_reply(r.fd, "N\r", "NSIM1\r");
	expect_reply(r.fd, "F\r", "F00\r");
	expect_reply(r.fd, "S9\r", "\a");
	expect_reply(r.fd, "S6\r", "\r");
	expect_reply(r.fd, "X\r", "\a");
	read_for(r.fd, closed, sizeof(closed), 300);

	send_text(r.fd, "O\r");
	/* 350 ms: 0x123 and 0x300 go out at 0, 100, 200 and 300 ms. */
	read_for(r.fd, buf, sizeof(buf), 350);
	cr_assert_eq(strncmp(buf, open_and_first_frames, strlen(open_and_first_frames)), 0,
		     "after O: expected \"%s\", got \"%s\"", open_and_first_frames, buf);
	/* The reply to O came after: frames sent while closed would have come before it. */
	cr_assert_str_empty(closed, "frames while closed: \"%s\"", closed);
	cr_expect_not_null(strstr(buf, "\rt123801DC0506FF112233\r"), "no counter 1 in \"%s\"", buf);
	cr_expect_not_null(strstr(buf, "\rt300801D8FF0000000000\r"), "no mux 1 in \"%s\"", buf);
	cr_expect_null(memchr(buf, '\a', strlen(buf)), "an error in \"%s\"", buf);

	send_text(r.fd, "S6\r");
	read_for(r.fd, buf, sizeof(buf), 200);
	cr_expect_not_null(memchr(buf, '\a', strlen(buf)), "S6 while open was not refused");
	send_text(r.fd, "O\r");
	read_for(r.fd, buf, sizeof(buf), 200);
	cr_expect_not_null(memchr(buf, '\a', strlen(buf)), "O while open was not refused");
	close(r.fd);
}

Test(sims, slcansim_records_transmits_and_close_stops_frames)
{
	static const char *const args[] = { NULL };
	struct rig r = { 0 };
	char buf[4096];

	rig_plug(&r);
	rig_start(&r, "slcansim", args);
	expect_reply(r.fd, "t1232AABB\r", "\a"); /* closed: refused */
	expect_open(r.fd);
	send_text(r.fd, "t1232AABB\r");
	send_text(r.fd, "T18FEF1000\r");
	send_text(r.fd, "t1232AAB\r"); /* one digit short */
	read_for(r.fd, buf, sizeof(buf), 200);
	cr_expect_not_null(strstr(buf, "z\r"), "no z for the transmit in \"%s\"", buf);
	cr_expect_not_null(strstr(buf, "Z\r"), "no Z for the extended one in \"%s\"", buf);
	cr_expect_not_null(memchr(buf, '\a', strlen(buf)), "the short one was accepted");
	cr_assert_eq(h_wait_contains(r.log, "tx 123#AABB\n", 2000), 0, "log:\n%s", h_read(r.log));
	cr_assert_eq(h_wait_contains(r.log, "tx 18FEF100#\n", 2000), 0, "log:\n%s", h_read(r.log));
	cr_expect_eq(h_count(r.log, "tx "), 2);

	send_text(r.fd, "C\r");
	read_for(r.fd, buf, sizeof(buf), 150); /* the reply, and frames already on their way */
	read_for(r.fd, buf, sizeof(buf), 500);
	/* A reply after the quiet time: frames sent in it would have come before. */
	expect_reply(r.fd, "V\r", "V1013\r");
	cr_assert_str_empty(buf, "frames after C: \"%s\"", buf);
	close(r.fd);
}

Test(sims, slcansim_resumes_after_unplug_as_after_a_power_cycle)
{
	static const char *const args[] = { NULL };
	struct rig r = { 0 };
	char buf[4096];

	rig_plug(&r);
	rig_start(&r, "slcansim", args);
	expect_open(r.fd);
	rig_unplug(&r);
	cr_assert_eq(h_wait_contains(r.log, "line down", 3000), 0, "log:\n%s", h_read(r.log));
	h_sleep_ms(300); /* unplugged for a while: a few retries against a missing path */
	rig_plug(&r);
	for (int i = 0; i < 100 && h_count(r.log, "line up") < 2; i++)
		h_sleep_ms(50);
	cr_assert_eq(h_count(r.log, "line up"), 2, "log:\n%s", h_read(r.log));
	/* Back closed: silent until opened again (the reply to V comes after the quiet time). */
	read_for(r.fd, buf, sizeof(buf), 300);
	expect_reply(r.fd, "V\r", "V1013\r");
	cr_assert_str_empty(buf, "frames while closed: \"%s\"", buf);
	send_text(r.fd, "O\r");
	read_for(r.fd, buf, sizeof(buf), 300);
	cr_expect_eq(buf[0], '\r', "reply to O: \"%s\"", buf);
	cr_expect_not_null(strstr(buf, "\rt2004F9C0BEEF\r"), "no frames after O: \"%s\"", buf);
	close(r.fd);
}
