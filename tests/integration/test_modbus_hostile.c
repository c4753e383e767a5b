/* test_modbus_hostile.c: a hostile Modbus server (TCP, and RTU over a pty) answers guardian with
 * every kind of wrong frame; none may reach the broker as a good value. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE	"press-07"
#define POINT	"hostile/v"
#define WAIT_MS 15000 /* a bound for what must arrive, not a timing assertion */
#define DRIP_MS 50    /* the slow drip: one byte every 50 ms, against timeout_ms 300 */

/* How the server answers, one kind of answer at a time. */
enum answer {
	ANSWER_GOOD,	    /* a correct answer carrying the control value */
	ANSWER_WRONG_UNIT,  /* TCP: unit id + 1 */
	ANSWER_LENGTH_0,    /* TCP: MBAP length 0 */
	ANSWER_LENGTH_MAX,  /* TCP: MBAP length 65535 */
	ANSWER_PROTOCOL_1,  /* TCP: protocol id 1 */
	ANSWER_WRONG_TID,   /* TCP: another transaction's id */
	ANSWER_BYTE_COUNT,  /* one register too many, byte count and MBAP length agreeing */
	ANSWER_DRIP,	    /* a correct frame, one byte every DRIP_MS */
	ANSWER_EXCEPTION_0, /* exception code 0 */
	ANSWER_EXCEPTION_200,
	ANSWER_WRONG_SLAVE, /* RTU: slave address + 1, CRC correct */
	ANSWER_BAD_CRC,	    /* RTU */
};

static const char *const answer_names[] = {
	[ANSWER_GOOD] = "good",
	[ANSWER_WRONG_UNIT] = "wrong unit id",
	[ANSWER_LENGTH_0] = "MBAP length 0",
	[ANSWER_LENGTH_MAX] = "MBAP length 65535",
	[ANSWER_PROTOCOL_1] = "protocol id 1",
	[ANSWER_WRONG_TID] = "wrong transaction id",
	[ANSWER_BYTE_COUNT] = "wrong byte count",
	[ANSWER_DRIP] = "slow drip",
	[ANSWER_EXCEPTION_0] = "exception code 0",
	[ANSWER_EXCEPTION_200] = "exception code 200",
	[ANSWER_WRONG_SLAVE] = "wrong slave address",
	[ANSWER_BAD_CRC] = "bad CRC",
};

/* The register value in a defective answer: were it published as good, it names its defect. */
#define POISON(kind) (0xBA00 + (unsigned)(kind))

/* The server: a thread in the test process, on a TCP listener or one end of a pty pair. */
struct server {
	bool rtu;
	int listen_fd; /* TCP */
	int fd;	       /* the client connection, or the pty */
	pthread_t thread;
	bool started;
	atomic_int answer;	   /* enum answer */
	atomic_uint control_value; /* what ANSWER_GOOD carries */
	atomic_bool stopping;
	atomic_ulong requests;
};

static struct server srv = { .listen_fd = -1, .fd = -1 };

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* CRC-16/MODBUS, written here again so that the test does not trust guardian's. */
static unsigned crc16(const uint8_t *p, size_t n)
{
	unsigned crc = 0xFFFF;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = crc & 1 ? crc >> 1 ^ 0xA001 : crc >> 1;
	}
	return crc;
}

/* The answer to one FC 3 request ('req': a TCP ADU of 12 bytes or an RTU one of 8). */
static size_t build_answer(enum answer kind, const uint8_t *req, uint8_t *out)
{
	size_t head = srv.rtu ? 1 : 7;
	unsigned count = (unsigned)(req[head + 3] << 8 | req[head + 4]);
	unsigned value = kind == ANSWER_GOOD ? atomic_load(&srv.control_value) : POISON(kind);
	unsigned nregs = kind == ANSWER_BYTE_COUNT ? count + 1 : count;
	uint8_t *pdu = out + head;
	size_t pdu_len;

	pdu[0] = req[head];
	pdu[1] = (uint8_t)(2 * nregs);
	for (unsigned i = 0; i < nregs; i++)
		put16(pdu + 2 + 2 * i, value);
	pdu_len = 2 + 2 * nregs;
	if (kind == ANSWER_EXCEPTION_0 || kind == ANSWER_EXCEPTION_200) {
		pdu[0] |= 0x80;
		pdu[1] = kind == ANSWER_EXCEPTION_0 ? 0 : 200;
		pdu_len = 2;
	}
	if (srv.rtu) {
		unsigned crc;

		out[0] = (uint8_t)(req[0] + (kind == ANSWER_WRONG_SLAVE));
		crc = crc16(out, 1 + pdu_len) ^ (kind == ANSWER_BAD_CRC ? 0x5A5A : 0);
		out[1 + pdu_len] = (uint8_t)crc;
		out[2 + pdu_len] = (uint8_t)(crc >> 8);
		return 1 + pdu_len + 2;
	}
	put16(out, (unsigned)(req[0] << 8 | req[1]) ^ (kind == ANSWER_WRONG_TID ? 0x8000 : 0));
	put16(out + 2, kind == ANSWER_PROTOCOL_1);
	put16(out + 4, kind == ANSWER_LENGTH_0	   ? 0
		       : kind == ANSWER_LENGTH_MAX ? 65535
						   : (unsigned)(1 + pdu_len));
	out[6] = (uint8_t)(req[6] + (kind == ANSWER_WRONG_UNIT));
	return 7 + pdu_len;
}

static void sleep_unless_stopping(int ms)
{
	for (int i = 0; i < ms / 10 && !atomic_load(&srv.stopping); i++)
		h_sleep_ms(10);
}

static void send_answer(const uint8_t *buf, size_t len, bool drip)
{
	for (size_t off = 0; off < len && !atomic_load(&srv.stopping);) {
		size_t n = drip ? 1 : len - off;
		ssize_t w = srv.rtu ? write(srv.fd, buf + off, n)
				    : send(srv.fd, buf + off, n, MSG_NOSIGNAL);

		if (w <= 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (w > 0)
			off += (size_t)w;
		if (drip || w <= 0)
			sleep_unless_stopping(drip ? DRIP_MS : 10);
	}
}

/* Serves until told to stop: one client at a time (a new one replaces the old). */
static void *serve(void *arg)
{
	size_t req_len = srv.rtu ? 8 : 12;
	uint8_t req[64], out[300];
	size_t have = 0;

	(void)arg;
	while (!atomic_load(&srv.stopping)) {
		struct pollfd p[2] = { { .fd = srv.fd, .events = POLLIN },
				       { .fd = srv.listen_fd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, srv.rtu ? 1 : 2, 50) <= 0)
			continue;
		if (!srv.rtu && (p[1].revents & POLLIN)) {
			int c = accept(srv.listen_fd, NULL, NULL);

			if (c >= 0) {
				if (srv.fd >= 0)
					close(srv.fd);
				srv.fd = c;
				have = 0;
			}
			continue;
		}
		if (srv.fd < 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
			continue;
		n = read(srv.fd, req + have, sizeof(req) - have);
		if (n <= 0) {
			if (!srv.rtu && n == 0) {
				close(srv.fd);
				srv.fd = -1;
			}
			if (srv.rtu)
				h_sleep_ms(10);
			continue;
		}
		have += (size_t)n;
		while (have >= req_len) {
			enum answer kind = (enum answer)atomic_load(&srv.answer);

			send_answer(out, build_answer(kind, req, out), kind == ANSWER_DRIP);
			atomic_fetch_add(&srv.requests, 1);
			memmove(req, req + req_len, have - req_len);
			have -= req_len;
		}
	}
	return NULL;
}

static void server_stop(void)
{
	atomic_store(&srv.stopping, true);
	if (srv.started)
		pthread_join(srv.thread, NULL);
	srv.started = false;
	if (srv.fd >= 0)
		close(srv.fd);
	if (srv.listen_fd >= 0)
		close(srv.listen_fd);
	srv.fd = srv.listen_fd = -1;
}

static void setup(void)
{
	it_pki(DEVICE);
}

static void teardown(void)
{
	server_stop();
	it_teardown();
}

TestSuite(modbus_hostile, .init = setup, .fini = teardown, .timeout = 240);

/* Listens on 127.0.0.1; returns the port. */
static int server_start_tcp(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int one = 1;

	srv.rtu = false;
	srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(srv.listen_fd, 0);
	setsockopt(srv.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(srv.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(srv.listen_fd, 4), 0);
	cr_assert_eq(getsockname(srv.listen_fd, (struct sockaddr *)&sa, &len), 0);
	cr_assert_eq(pthread_create(&srv.thread, NULL, serve, NULL), 0);
	srv.started = true;
	return ntohs(sa.sin_port);
}

static void server_start_rtu(const char *tty)
{
	struct termios t;

	srv.rtu = true;
	srv.fd = open(tty, O_RDWR | O_NOCTTY | O_NONBLOCK);
	cr_assert_geq(srv.fd, 0, "cannot open %s: %s", tty, strerror(errno));
	cr_assert_eq(tcgetattr(srv.fd, &t), 0);
	cfmakeraw(&t);
	cr_assert_eq(tcsetattr(srv.fd, TCSANOW, &t), 0);
	cr_assert_eq(pthread_create(&srv.thread, NULL, serve, NULL), 0);
	srv.started = true;
}

/* What the subscriber received for the point. */
struct seen {
	size_t good, timeout, exception, bad_frame;
	bool control;	    /* the control value arrived as good */
	size_t exc_code[2]; /* exceptions that carried code 0, code 200 */
	uint32_t poisoned;  /* bit 'kind': a value of an answer of that kind arrived as good */
};

/* The defects already reported as leaked, so that each is reported once. */
static uint32_t reported;

static struct seen look(unsigned control)
{
	struct h_telemetry t;
	struct seen s = { 0 };
	char want[16];

	snprintf(want, sizeof(want), "%u", control);
	h_telemetry_read(h_path("sub.out"), &t);
	for (size_t i = 0; i < t.npoints; i++) {
		const struct h_point *p = &t.points[i];
		unsigned v = (unsigned)strtoul(p->value, NULL, 10);

		if (strcmp(p->name, POINT) != 0)
			continue;
		s.good += strcmp(p->quality, "good") == 0;
		s.timeout += strcmp(p->quality, "timeout") == 0;
		s.exception += strcmp(p->quality, "exception") == 0;
		s.bad_frame += strcmp(p->quality, "bad_frame") == 0;
		if (strcmp(p->quality, "good") == 0 && strcmp(p->value, want) == 0)
			s.control = true;
		if (strcmp(p->quality, "good") == 0 && v >= POISON(0) && v < POISON(32))
			s.poisoned |= 1u << (v - POISON(0));
	}
	h_telemetry_free(&t);
	s.exc_code[0] = h_count(h_path("sub.out"),
				"\"name\":\"" POINT "\",\"value\":null,\"quality\":\"exception\","
				"\"code\":0,");
	s.exc_code[1] = h_count(h_path("sub.out"),
				"\"name\":\"" POINT "\",\"value\":null,\"quality\":\"exception\","
				"\"code\":200,");
	return s;
}

/* No value of a defective answer arrived as good; each one that did is named once. */
static void expect_no_poison(const struct seen *s, const char *when)
{
	for (unsigned k = 0; k < sizeof(answer_names) / sizeof(answer_names[0]); k++) {
		if ((s->poisoned & ~reported) & 1u << k)
			cr_expect_fail("by the end of phase '%s': a value of a '%s' answer arrived "
				       "as good (%u)",
				       when, answer_names[k], POISON(k));
	}
	reported |= s->poisoned;
}

/* Serves correct answers with a new value until it arrives as good. */
static void control_phase(unsigned value, const char *after)
{
	int64_t end = h_ms() + WAIT_MS;
	struct seen s;

	atomic_store(&srv.control_value, value);
	atomic_store(&srv.answer, ANSWER_GOOD);
	do {
		h_sleep_ms(50);
		s = look(value);
	} while (!s.control && h_ms() < end);
	cr_expect(s.control, "after '%s': the correct answer %u never arrived as good", after,
		  value);
	expect_no_poison(&s, after);
}

/*
 * Serves one kind of defective answer until the subscriber has a new sample
 * of the quality it must give (counted from the control phase before it, whose
 * good value arrived last, so it is this phase's).
 */
static void defect_phase(enum answer kind)
{
	const char *name = answer_names[kind];
	int64_t end = h_ms() + WAIT_MS;
	struct seen before = look(0), s;
	bool arrived;

	atomic_store(&srv.answer, kind);
	do {
		h_sleep_ms(50);
		s = look(0);
		switch (kind) {
		case ANSWER_DRIP:
			arrived = s.timeout > before.timeout;
			break;
		case ANSWER_EXCEPTION_0:
			arrived = s.exc_code[0] > before.exc_code[0];
			break;
		case ANSWER_EXCEPTION_200:
			arrived = s.exc_code[1] > before.exc_code[1];
			break;
		default:
			arrived = s.bad_frame > before.bad_frame;
		}
	} while (!arrived && h_ms() < end);
	cr_expect(arrived,
		  "'%s': no sample of quality %s arrived (good %zu, timeout %zu, "
		  "exception %zu, bad_frame %zu so far)",
		  name,
		  kind == ANSWER_DRIP ? "timeout"
		  : kind == ANSWER_EXCEPTION_0 || kind == ANSWER_EXCEPTION_200
			  ? "exception (with its code)"
			  : "bad_frame",
		  s.good, s.timeout, s.exception, s.bad_frame);
	expect_no_poison(&s, name);
}

/* The adapter's counters in the last health message, once bad_frames reached 'min_bad'. */
static void expect_health(size_t min_bad)
{
	int64_t end = h_ms() + WAIT_MS;
	double bad = -1, unit_bad = -1, reconnects = -1, io_errors = -1, exceptions = -1;

	do {
		cJSON *root;
		const cJSON *a = it_health_adapter(h_path("sub.out"), "hostile", &root);

		if (a != NULL) {
			bad = it_json_num(a, "bad_frames");
			unit_bad = it_json_num(a, "units.1.bad_frames");
			reconnects = it_json_num(a, "reconnects");
			io_errors = it_json_num(a, "io_errors");
			exceptions = it_json_num(a, "exceptions");
		}
		cJSON_Delete(root);
		if (bad >= (double)min_bad && unit_bad >= (double)min_bad && exceptions >= 2)
			break;
		h_sleep_ms(200);
	} while (h_ms() < end);
	cr_expect_geq(bad, (double)min_bad, "health: adapter bad_frames %.0f", bad);
	cr_expect_geq(unit_bad, (double)min_bad, "health: unit 1 bad_frames %.0f", unit_bad);
	cr_expect_geq(exceptions, 2, "health: exceptions %.0f", exceptions);
	cr_expect_eq(reconnects, 0, "health: an answer made the link reconnect (%.0f times)",
		     reconnects);
	cr_expect_eq(io_errors, 0, "health: an answer was taken for a lost link (%.0f times)",
		     io_errors);
}

/* Broker, subscriber and guardian for the adapter 'link' (its link keys). */
static void start_guardian(const char *type, const char *link)
{
	int bport = h_free_port();
	char adapters[2048];

	cr_assert_gt(h_mosquitto(bport), 0, "mosquitto did not start: %s",
		     h_read(h_path("mosquitto.log")));
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"hostile\",\"type\":\"%s\",%s,\"poll_interval_ms\":100,"
		 "\"timeout_ms\":300,\"backoff_min_ms\":50,\"backoff_max_ms\":200,"
		 "\"points\":[{\"name\":\"v\",\"address\":0}]}]",
		 type, link);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
}

Test(modbus_hostile, tcp_wrong_frames_never_arrive_as_good)
{
	static const enum answer defects[] = {
		ANSWER_WRONG_UNIT, ANSWER_LENGTH_0,    ANSWER_LENGTH_MAX,
		ANSWER_PROTOCOL_1, ANSWER_WRONG_TID,   ANSWER_BYTE_COUNT,
		ANSWER_DRIP,	   ANSWER_EXCEPTION_0, ANSWER_EXCEPTION_200,
	};
	char link[64];
	unsigned value = 1000;

	snprintf(link, sizeof(link), "\"host\":\"127.0.0.1\",\"port\":%d", server_start_tcp());
	start_guardian("modbus-tcp", link);
	control_phase(value++, "start");
	for (size_t i = 0; i < sizeof(defects) / sizeof(defects[0]); i++) {
		defect_phase(defects[i]);
		/* After the drip too: the adapter is not stalled, the next good value comes. */
		control_phase(value++, answer_names[defects[i]]);
	}
	expect_health(6);
}

Test(modbus_hostile, rtu_wrong_frames_never_arrive_as_good)
{
	static const enum answer defects[] = {
		ANSWER_WRONG_SLAVE, ANSWER_BAD_CRC,	  ANSWER_BYTE_COUNT,
		ANSWER_EXCEPTION_0, ANSWER_EXCEPTION_200,
	};
	char sim_end[256], gd_end[256], link[512];
	unsigned value = 2000;

	/* h_path's buffers rotate: keep our own copies. */
	snprintf(sim_end, sizeof(sim_end), "%s", h_path("tty-sim"));
	snprintf(gd_end, sizeof(gd_end), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(sim_end, gd_end), 0, "socat could not make a pty pair");
	server_start_rtu(sim_end);
	snprintf(link, sizeof(link), "\"device\":\"%s\",\"baud\":115200", gd_end);
	start_guardian("modbus-rtu", link);
	control_phase(value++, "start");
	for (size_t i = 0; i < sizeof(defects) / sizeof(defects[0]); i++) {
		defect_phase(defects[i]);
		control_phase(value++, answer_names[defects[i]]);
	}
	expect_health(3);
}
