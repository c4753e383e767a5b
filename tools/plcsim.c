/* plcsim.c: a simulated Modbus TCP/RTU PLC with a fixed, tick-driven register map, for tests. */

/*
 * Register layout, for unit u at tick k (k starts at --start, default 0, and
 * grows by one every --step-ms, default 1000; 0 freezes it). Every table is
 * recomputed when the tick changes, between two requests, so one response
 * always shows a single tick. Writes land in the table and stay until the next
 * tick recomputes it, except the setpoint (holding 120), which only clients
 * change.
 *
 * Multi-register values, with the big-endian bytes of the value A B C D
 * (E F G H for the low half of a 64-bit value):
 *   ABCD  r0=AB r1=CD                    64-bit: AB CD EF GH (most significant word first)
 *   CDAB  r0=CD r1=AB                    64-bit: GH EF CD AB (least significant word first)
 *   BADC  r0=BA r1=DC                    64-bit: BA DC FE HG (bytes swapped in each word)
 *   DCBA  r0=DC r1=BA                    64-bit: HG FE DC BA (fully little-endian)
 *
 * Holding registers (FC3; FC6, FC16, FC22 and FC23 write)
 *   0         u16  (k + 1000*(u-1)) mod 65536
 *   1         i16  -(k mod 1000) - 1
 *   2,4,6,8   u32  100000 + k              ABCD, CDAB, BADC, DCBA
 *   10,12,14,16  i32  -100000 - k          ABCD, CDAB, BADC, DCBA
 *   20,22,24,26  f32  1.5 + k*0.25         ABCD, CDAB, BADC, DCBA
 *   30,34,38,42  u64  5000000000 + k       ABCD, CDAB, BADC, DCBA
 *   50,54,58,62  i64  -5000000000 - k      ABCD, CDAB, BADC, DCBA
 *   70,74,78,82  f64  -2.5 - k*0.125       ABCD, CDAB, BADC, DCBA
 *   90-97     string "GUARDIAN-SIM-01" + NUL (16 bytes), high byte first (ABCD)
 *   98-105    the same string, low byte first in each register (BADC)
 *   110       u16  2000 + (k mod 100)
 *   111       i16  -1234 byte-swapped (BADC): 0x2EFB
 *   120       setpoint: 500 at start, then whatever a client writes
 *   1000+i    (i + k) mod 65536, for i in 0 .. --bulk - 1 (default 10000)
 *   any other address below 1000 reads 0; at and above 1000 + bulk: exception 2
 *   with --count-reads A: A and A+1 hold, as a u32 (ABCD), the number of FC3 read
 *             requests served so far whose range includes A, this one counted: the
 *             first such read returns 1, the next 2, ... (every value is served once)
 * Coils (FC1; FC5, FC15 write), 0..15
 *   0 = k odd, 1 = true, 2 = false, i in 3..15 = ((k + i) mod 3 == 0)
 * Discrete inputs (FC2), 0..15
 *   0 = k even, 1 = true, 2 = false, i in 3..15 = ((k + i) mod 2 == 0)
 * Input registers (FC4), 0..99
 *   0 u16 (2k) mod 65536;  1-2 f32 ABCD 100.0 + k;  3-4 u32 CDAB 70000 + k;  5..99: 0
 *
 * Units: only the --unit ids (default 1) answer. A request for any other id,
 * including the RTU broadcast address 0, gets no answer at all, like a dead
 * slave on an RS-485 line or a gateway whose slave is gone.
 *
 * libmodbus is used to open the port (TCP listener, serial line set-up) and to
 * build the responses (modbus_reply). Framing and the unit filter are done
 * here: libmodbus 3.1.6 filters RTU requests on the one slave id of its
 * context inside modbus_receive() and does not filter TCP at all, so it cannot
 * serve several units. Requests it would refuse (bad quantity, unknown
 * function) are answered here too: modbus_reply() sleeps for the response
 * timeout and flushes the line before such an exception.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#define NUM_UNITS	    256
#define NUM_BITS	    16
#define NUM_INPUT_REGISTERS 100
#define BULK_START	    1000
#define BULK_MAX	    10000
#define SETPOINT_ADDRESS    120
#define SETPOINT_INITIAL    500
#define MAX_CLIENTS	    128
/* Big enough for any TCP ADU, so modbus_reply never reads past a request. */
#define ADU_MAX		MODBUS_TCP_MAX_ADU_LENGTH
#define RTU_GAP_MIN_MS	20
#define SEND_TIMEOUT_MS 2000

enum word_order { ORDER_ABCD, ORDER_CDAB, ORDER_BADC, ORDER_DCBA };

static const char sim_tag[16] = "GUARDIAN-SIM-01";

struct sim_options {
	const char *tcp; /* HOST:PORT, or NULL */
	const char *rtu; /* serial device, or NULL */
	int baud;
	char parity; /* 'N', 'E' or 'O' */
	int data_bits;
	int stop_bits;
	bool served[NUM_UNITS];
	bool unit_given;
	long step_ms;
	uint64_t start_tick;
	int bulk;
	bool quiet;
	long count_reads;     /* --count-reads: the register, or -1 */
	const char *read_log; /* --read-log: a file, or NULL */
};

struct tcp_client {
	int fd;		  /* -1 when the slot is free */
	unsigned long id; /* 1 for the first connection accepted, 2 for the next, ... */
	int len;	  /* bytes buffered in buf */
	uint8_t buf[ADU_MAX];
};

struct sim {
	const struct sim_options *opt;
	modbus_t *ctx;
	modbus_mapping_t *units[NUM_UNITS]; /* NULL for units not served */
	bool ignored_seen[NUM_UNITS];	    /* an ignored unit was already logged */
	uint64_t tick;
	int64_t epoch_ms;	 /* monotonic time of tick start_tick */
	int header_length;	 /* 7 for TCP, 1 for RTU */
	int checksum_length;	 /* 0 for TCP, 2 for RTU */
	uint32_t reads;		 /* --count-reads: the last value served */
	int read_log_fd;	 /* --read-log, or -1 */
	unsigned long client_id; /* the TCP connection being served; 0 in RTU */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo)
{
	(void)signo;
	stop_requested = 1;
}

static void log_info(const struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void log_info(const struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->opt->quiet)
		return;
	fputs("plcsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void log_error(const char *fmt, ...)
{
	va_list ap;

	fputs("plcsim: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- value encoding: written out by hand, independent of adapters/codec.c --- */

/*
 * Stores the nbytes big-endian bytes in be[] into nbytes/2 registers in the
 * given order: CDAB and DCBA put the least significant word first, BADC and
 * DCBA put the low byte first within each word.
 */
static void put_be_bytes(uint16_t *regs, const uint8_t *be, int nbytes, enum word_order order)
{
	int nwords = nbytes / 2;
	bool low_word_first = order == ORDER_CDAB || order == ORDER_DCBA;
	bool low_byte_first = order == ORDER_BADC || order == ORDER_DCBA;

	for (int i = 0; i < nwords; i++) {
		int word = low_word_first ? nwords - 1 - i : i;
		uint8_t high = be[2 * word];
		uint8_t low = be[2 * word + 1];

		if (low_byte_first)
			regs[i] = (uint16_t)(low << 8 | high);
		else
			regs[i] = (uint16_t)(high << 8 | low);
	}
}

static void put_u32(uint16_t *regs, uint32_t v, enum word_order order)
{
	uint8_t be[4] = {
		(uint8_t)(v >> 24),
		(uint8_t)(v >> 16),
		(uint8_t)(v >> 8),
		(uint8_t)v,
	};

	put_be_bytes(regs, be, 4, order);
}

static void put_u64(uint16_t *regs, uint64_t v, enum word_order order)
{
	uint8_t be[8];

	for (int i = 0; i < 8; i++)
		be[i] = (uint8_t)(v >> (56 - 8 * i));
	put_be_bytes(regs, be, 8, order);
}

/* IEEE 754 binary32: the bit pattern is taken as an integer, then encoded like one. */
static void put_f32(uint16_t *regs, float f, enum word_order order)
{
	uint32_t bits;

	memcpy(&bits, &f, sizeof(bits));
	put_u32(regs, bits, order);
}

static void put_f64(uint16_t *regs, double d, enum word_order order)
{
	uint64_t bits;

	memcpy(&bits, &d, sizeof(bits));
	put_u64(regs, bits, order);
}

/* --- the register map --- */

/* Recomputes every table of one unit for tick k; keeps the setpoint. */
static void unit_compute(modbus_mapping_t *m, int unit, uint64_t k, int bulk)
{
	static const enum word_order orders[4] = { ORDER_ABCD, ORDER_CDAB, ORDER_BADC, ORDER_DCBA };
	uint16_t *hr = m->tab_registers;
	uint16_t *ir = m->tab_input_registers;
	uint16_t setpoint = hr[SETPOINT_ADDRESS];

	memset(hr, 0, BULK_START * sizeof(*hr));
	/* Unsigned arithmetic wraps modulo 2^64, and 2^16 and 2^32 divide it. */
	hr[0] = (uint16_t)(k + 1000u * (uint64_t)unit - 1000u);
	hr[1] = (uint16_t)(-(int)(k % 1000) - 1);
	for (int i = 0; i < 4; i++) {
		put_u32(hr + 2 + 2 * i, (uint32_t)(100000u + k), orders[i]);
		put_u32(hr + 10 + 2 * i, (uint32_t)(0u - 100000u - k), orders[i]);
		put_f32(hr + 20 + 2 * i, (float)(1.5 + (double)k * 0.25), orders[i]);
		put_u64(hr + 30 + 4 * i, UINT64_C(5000000000) + k, orders[i]);
		put_u64(hr + 50 + 4 * i, UINT64_C(0) - UINT64_C(5000000000) - k, orders[i]);
		put_f64(hr + 70 + 4 * i, -2.5 - (double)k * 0.125, orders[i]);
	}
	for (int i = 0; i < 8; i++) {
		uint8_t first = (uint8_t)sim_tag[2 * i];
		uint8_t second = (uint8_t)sim_tag[2 * i + 1];

		hr[90 + i] = (uint16_t)(first << 8 | second);
		hr[98 + i] = (uint16_t)(second << 8 | first);
	}
	hr[110] = (uint16_t)(2000 + k % 100);
	{
		uint16_t minus_1234 = (uint16_t)-1234; /* 0xFB2E */

		hr[111] = (uint16_t)((minus_1234 & 0xff) << 8 | minus_1234 >> 8);
	}
	hr[SETPOINT_ADDRESS] = setpoint;
	for (int i = 0; i < bulk; i++)
		hr[BULK_START + i] = (uint16_t)((uint64_t)i + k);

	m->tab_bits[0] = k % 2 == 1;
	m->tab_bits[1] = 1;
	m->tab_bits[2] = 0;
	for (int i = 3; i < NUM_BITS; i++)
		m->tab_bits[i] = (k + (uint64_t)i) % 3 == 0;

	m->tab_input_bits[0] = k % 2 == 0;
	m->tab_input_bits[1] = 1;
	m->tab_input_bits[2] = 0;
	for (int i = 3; i < NUM_BITS; i++)
		m->tab_input_bits[i] = (k + (uint64_t)i) % 2 == 0;

	memset(ir, 0, NUM_INPUT_REGISTERS * sizeof(*ir));
	ir[0] = (uint16_t)(2 * k);
	put_f32(ir + 1, (float)(100.0 + (double)k), ORDER_ABCD);
	put_u32(ir + 3, (uint32_t)(70000u + k), ORDER_CDAB);
}

/* Brings every unit to the current tick; does nothing while the tick is unchanged. */
static void sim_update(struct sim *s, bool force)
{
	uint64_t k = s->opt->start_tick;

	if (s->opt->step_ms > 0)
		k += (uint64_t)((monotonic_ms() - s->epoch_ms) / s->opt->step_ms);
	if (!force && k == s->tick)
		return;
	s->tick = k;
	for (int u = 0; u < NUM_UNITS; u++)
		if (s->units[u] != NULL)
			unit_compute(s->units[u], u, k, s->opt->bulk);
}

/* --- requests --- */

/*
 * Returns the length of the PDU that starts at pdu (function code included)
 * for the function codes libmodbus serves, 0 if the avail bytes are too few to
 * tell, -1 for any other function code (its length is unknown).
 */
static int pdu_length(const uint8_t *pdu, int avail)
{
	if (avail < 1)
		return 0;
	switch (pdu[0]) {
	case MODBUS_FC_READ_COILS:
	case MODBUS_FC_READ_DISCRETE_INPUTS:
	case MODBUS_FC_READ_HOLDING_REGISTERS:
	case MODBUS_FC_READ_INPUT_REGISTERS:
	case MODBUS_FC_WRITE_SINGLE_COIL:
	case MODBUS_FC_WRITE_SINGLE_REGISTER:
		return 5;
	case MODBUS_FC_READ_EXCEPTION_STATUS:
	case MODBUS_FC_REPORT_SLAVE_ID:
		return 1;
	case MODBUS_FC_WRITE_MULTIPLE_COILS:
	case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
		return avail < 6 ? 0 : 6 + pdu[5];
	case MODBUS_FC_MASK_WRITE_REGISTER:
		return 7;
	case MODBUS_FC_WRITE_AND_READ_REGISTERS:
		return avail < 10 ? 0 : 10 + pdu[9];
	default:
		return -1;
	}
}

/*
 * Returns the Modbus exception a well-framed request deserves, or 0 if
 * modbus_reply() may serve it. libmodbus 3.1.6 answers these cases itself,
 * but first sleeps for the response timeout and flushes the line, which would
 * stall every client and eat pipelined requests.
 */
static int request_exception(const uint8_t *pdu)
{
	int count = pdu[3] << 8 | pdu[4];

	switch (pdu[0]) {
	case MODBUS_FC_READ_COILS:
	case MODBUS_FC_READ_DISCRETE_INPUTS:
		return count >= 1 && count <= MODBUS_MAX_READ_BITS
			       ? 0
			       : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	case MODBUS_FC_READ_HOLDING_REGISTERS:
	case MODBUS_FC_READ_INPUT_REGISTERS:
		return count >= 1 && count <= MODBUS_MAX_READ_REGISTERS
			       ? 0
			       : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	case MODBUS_FC_WRITE_SINGLE_COIL:
		return count == 0 || count == 0xff00 ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	case MODBUS_FC_WRITE_MULTIPLE_COILS:
		return count >= 1 && count <= MODBUS_MAX_WRITE_BITS && pdu[5] == (count + 7) / 8
			       ? 0
			       : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
		return count >= 1 && count <= MODBUS_MAX_WRITE_REGISTERS && pdu[5] == 2 * count
			       ? 0
			       : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	case MODBUS_FC_WRITE_AND_READ_REGISTERS: {
		int write_count = pdu[7] << 8 | pdu[8];

		return count >= 1 && count <= MODBUS_MAX_WR_READ_REGISTERS && write_count >= 1 &&
				       write_count <= MODBUS_MAX_WR_WRITE_REGISTERS &&
				       pdu[9] == 2 * write_count
			       ? 0
			       : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	}
	case MODBUS_FC_WRITE_SINGLE_REGISTER:
	case MODBUS_FC_MASK_WRITE_REGISTER:
	case MODBUS_FC_REPORT_SLAVE_ID:
		return 0;
	default:
		/* read exception status (7) included: libmodbus does not implement it */
		return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
	}
}

/*
 * A read (FC3) whose range includes the --count-reads register, and which may be served
 * (request_exception said 0).
 */
static bool counts_read(const struct sim *s, const uint8_t *pdu)
{
	long first = pdu[1] << 8 | pdu[2], count = pdu[3] << 8 | pdu[4];

	if (s->opt->count_reads < 0 || pdu[0] != MODBUS_FC_READ_HOLDING_REGISTERS)
		return false;
	/* libmodbus answers exception 2 past the table: such a read serves nothing. */
	if (first + count > BULK_START + s->opt->bulk)
		return false;
	return first <= s->opt->count_reads && s->opt->count_reads < first + count;
}

/*
 * One line per counted value served, for a test's ground truth: "read N client C unit U".
 * write(2) on an O_APPEND descriptor: the line is in the file even if plcsim is killed next.
 */
static void log_read(struct sim *s, int unit)
{
	char line[96];
	int n;

	if (s->read_log_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "read %" PRIu32 " client %lu unit %d\n", s->reads,
		     s->client_id, unit);
	if (write(s->read_log_fd, line, (size_t)n) != n)
		log_error("--read-log: %s", strerror(errno));
}

/*
 * Answers one complete request of len bytes (header, PDU and, in RTU, the
 * CRC), or ignores it if its unit is not served. Returns 0, or -1 if the
 * answer could not be sent (errno set).
 */
static int sim_handle(struct sim *s, const uint8_t *frame, int len)
{
	uint8_t req[ADU_MAX];
	const uint8_t *pdu = req + s->header_length;
	int unit = frame[s->header_length - 1];
	int pdu_len = len - s->header_length - s->checksum_length;
	int expected;
	int exception;
	int rc;

	if (s->units[unit] == NULL) {
		if (!s->ignored_seen[unit]) {
			s->ignored_seen[unit] = true;
			log_info(s, "ignoring requests for unit %d (not served)", unit);
		}
		return 0;
	}
	/* A zeroed copy: libmodbus reads fixed offsets, never past ADU_MAX. */
	memset(req, 0, sizeof(req));
	memcpy(req, frame, (size_t)len);
	sim_update(s, false);
	expected = pdu_length(pdu, pdu_len);
	if (expected < 0)
		exception = MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
	else if (expected != pdu_len)
		exception = MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
	else
		exception = request_exception(pdu);
	if (exception != 0) {
		log_info(s, "unit %d: function 0x%02x, PDU of %d bytes: answering exception %d",
			 unit, pdu[0], pdu_len, exception);
		rc = modbus_reply_exception(s->ctx, req, (unsigned int)exception);
	} else {
		bool counted = counts_read(s, pdu);

		if (counted) {
			s->reads++;
			put_u32(s->units[unit]->tab_registers + s->opt->count_reads, s->reads,
				ORDER_ABCD);
		}
		rc = modbus_reply(s->ctx, req, len, s->units[unit]);
		if (counted && rc >= 0)
			log_read(s, unit);
	}
	return rc < 0 ? -1 : 0;
}

/* --- Modbus TCP --- */

static void client_close(struct sim *s, struct tcp_client *c, const char *why)
{
	log_info(s, "client %d: %s", c->fd, why);
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* Handles every complete request buffered for c; may close c. */
static void client_process(struct sim *s, struct tcp_client *c)
{
	while (c->fd >= 0 && c->len >= 7) {
		int protocol = c->buf[2] << 8 | c->buf[3];
		int length = c->buf[4] << 8 | c->buf[5];
		int total = 6 + length;

		/* length counts the unit id and the PDU: 1 + 1 .. 1 + 253 */
		if (length < 2 || total > ADU_MAX) {
			log_error("client %d: MBAP length %d out of range 2..%d: closing the "
				  "connection",
				  c->fd, length, ADU_MAX - 6);
			client_close(s, c, "closed");
			return;
		}
		if (c->len < total)
			return;
		if (protocol != 0) {
			log_info(s, "client %d: protocol id %d is not Modbus (0): request dropped",
				 c->fd, protocol);
		} else {
			modbus_set_socket(s->ctx, c->fd);
			s->client_id = c->id;
			if (sim_handle(s, c->buf, total) != 0) {
				if (errno == EPIPE || errno == ECONNRESET)
					client_close(s, c, "went away before its response");
				else {
					log_error("client %d: cannot send the response: %s", c->fd,
						  modbus_strerror(errno));
					client_close(s, c, "closed");
				}
				return;
			}
		}
		c->len -= total;
		memmove(c->buf, c->buf + total, (size_t)c->len);
	}
}

static void client_read(struct sim *s, struct tcp_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - (size_t)c->len, 0);

	if (n == 0) {
		client_close(s, c, "disconnected");
		return;
	}
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return;
		if (errno == ECONNRESET)
			client_close(s, c, "connection reset");
		else {
			log_error("client %d: recv: %s", c->fd, strerror(errno));
			client_close(s, c, "closed");
		}
		return;
	}
	c->len += (int)n;
	client_process(s, c);
}

static void server_accept(struct sim *s, int server, struct tcp_client *clients)
{
	struct sockaddr_storage addr;
	socklen_t addrlen = sizeof(addr);
	static unsigned long accepted; /* connections, for --read-log */
	struct timeval send_timeout = { .tv_sec = SEND_TIMEOUT_MS / 1000,
					.tv_usec = SEND_TIMEOUT_MS % 1000 * 1000 };
	int one = 1;
	int fd = accept4(server, (struct sockaddr *)&addr, &addrlen, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			log_error("accept: %s", strerror(errno));
		return;
	}
	if (fd >= FD_SETSIZE) {
		log_error("client %d: descriptor above FD_SETSIZE: connection refused", fd);
		close(fd);
		return;
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (clients[i].fd < 0) {
			clients[i].fd = fd;
			clients[i].id = ++accepted;
			clients[i].len = 0;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			/* A client that stops reading must not stall the others for long. */
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout,
				   sizeof(send_timeout));
			log_info(s, "client %d: connected (connection %lu)", fd, clients[i].id);
			return;
		}
	}
	log_error("client %d: already %d clients: connection refused", fd, MAX_CLIENTS);
	close(fd);
}

/* Splits "HOST:PORT" or "[V6ADDR]:PORT" into host and port. Returns 0 or -1. */
static int split_host_port(const char *spec, char *host, size_t hostsize, char *port,
			   size_t portsize)
{
	const char *colon = strrchr(spec, ':');
	const char *h = spec;
	size_t hlen;

	if (colon == NULL || colon[1] == '\0')
		return -1;
	hlen = (size_t)(colon - spec);
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		h = spec + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= hostsize || strlen(colon + 1) >= portsize)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int run_tcp(struct sim *s, const sigset_t *waitmask)
{
	static struct tcp_client clients[MAX_CLIENTS];
	char host[256], port[32];
	int server;
	int status = 0;

	if (split_host_port(s->opt->tcp, host, sizeof(host), port, sizeof(port)) != 0) {
		log_error("--tcp: expected HOST:PORT (e.g. 127.0.0.1:1502), got \"%s\"",
			  s->opt->tcp);
		return 1;
	}
	s->ctx = modbus_new_tcp_pi(host, port);
	if (s->ctx == NULL) {
		log_error("--tcp %s: %s", s->opt->tcp, modbus_strerror(errno));
		return 1;
	}
	s->header_length = modbus_get_header_length(s->ctx);
	s->checksum_length = 0;
	modbus_set_response_timeout(s->ctx, 0, 1000);
	server = modbus_tcp_pi_listen(s->ctx, 32);
	if (server < 0) {
		log_error("cannot listen on %s: %s", s->opt->tcp, modbus_strerror(errno));
		return 1;
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;
	log_info(s, "listening on %s (Modbus TCP)", s->opt->tcp);
	printf("plcsim: ready\n");
	fflush(stdout);

	while (!stop_requested) {
		fd_set readable;
		int maxfd = server;
		int n;

		FD_ZERO(&readable);
		FD_SET(server, &readable);
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (clients[i].fd >= 0) {
				FD_SET(clients[i].fd, &readable);
				if (clients[i].fd > maxfd)
					maxfd = clients[i].fd;
			}
		}
		n = pselect(maxfd + 1, &readable, NULL, NULL, NULL, waitmask);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("select: %s", strerror(errno));
			status = 1;
			break;
		}
		if (FD_ISSET(server, &readable))
			server_accept(s, server, clients);
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (clients[i].fd >= 0 && FD_ISSET(clients[i].fd, &readable))
				client_read(s, &clients[i]);
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0)
			client_close(s, &clients[i], "closed at exit");
	close(server);
	return status;
}

/* --- Modbus RTU --- */

static uint16_t crc16_modbus(const uint8_t *p, int len)
{
	uint16_t crc = 0xffff;

	for (int i = 0; i < len; i++) {
		crc ^= p[i];
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 1) ? (uint16_t)(crc >> 1 ^ 0xa001) : (uint16_t)(crc >> 1);
	}
	return crc;
}

/* Checks the CRC (sent low byte first) and answers the frame. */
static int rtu_frame(struct sim *s, const uint8_t *frame, int len)
{
	uint16_t received = (uint16_t)(frame[len - 2] | frame[len - 1] << 8);
	uint16_t computed = crc16_modbus(frame, len - 2);

	if (received != computed) {
		log_error("RTU frame of %d bytes for unit %d: bad CRC 0x%04x (expected 0x%04x): "
			  "dropped",
			  len, frame[0], received, computed);
		return 0;
	}
	if (frame[0] == 0) {
		log_info(s, "broadcast request (unit 0) ignored");
		return 0;
	}
	if (sim_handle(s, frame, len) != 0) {
		log_error("cannot send the RTU response: %s", modbus_strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Takes every complete frame off the front of buf. At a silence (the line
 * idle for the inter-frame gap) what is left is either a frame of unknown
 * length, answered as a whole, or a fragment, dropped.
 */
static void rtu_process(struct sim *s, uint8_t *buf, int *len, bool silence)
{
	while (*len >= 2) {
		int pdu = pdu_length(buf + 1, *len - 1);
		int total = 1 + pdu + 2;

		if (pdu < 0) {
			if (!silence)
				return;
			if (*len >= 4)
				rtu_frame(s, buf, *len);
			*len = 0;
			return;
		}
		if (pdu == 0 || *len < total) {
			if (silence || (pdu > 0 && total > MODBUS_RTU_MAX_ADU_LENGTH)) {
				log_info(s, "dropped %d bytes of an incomplete RTU frame", *len);
				*len = 0;
			}
			return;
		}
		rtu_frame(s, buf, total);
		*len -= total;
		memmove(buf, buf + total, (size_t)*len);
	}
	if (silence && *len > 0) {
		log_info(s, "dropped %d bytes of an incomplete RTU frame", *len);
		*len = 0;
	}
}

/*
 * A pseudo-terminal never keeps PARENB, and glibc's tcsetattr() reports
 * EINVAL when the kernel applied none of the requested changes. So
 * modbus_connect() with parity E or O fails on a pty that an earlier process
 * left in exactly libmodbus's settings (it exited without modbus_close()).
 * Clearing INPCK makes the next set-up change something. Returns 0 if done,
 * -1 if the device is not a terminal (errno set to EINVAL again).
 */
static int pty_unsettle(const struct sim *s, const char *device)
{
	struct termios tios;
	int fd = open(device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	int rc = -1;

	if (fd < 0)
		goto out;
	if (tcgetattr(fd, &tios) != 0 || !(tios.c_iflag & INPCK))
		goto out;
	tios.c_iflag &= ~(tcflag_t)INPCK;
	if (tcsetattr(fd, TCSANOW, &tios) != 0)
		goto out;
	log_info(s, "%s: reset a line left set up by an earlier process; retrying", device);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	errno = EINVAL;
	return rc;
}

static int run_rtu(struct sim *s, const sigset_t *waitmask)
{
	const struct sim_options *o = s->opt;
	uint8_t buf[ADU_MAX];
	int len = 0;
	int fd;
	int rc;
	int bits_per_char = 1 + o->data_bits + (o->parity == 'N' ? 0 : 1) + o->stop_bits;
	/* 3.5 characters, at least RTU_GAP_MIN_MS: USB adapters deliver in bursts. */
	long gap_ms = (35L * bits_per_char * 1000 / o->baud + 9) / 10 + 1;

	if (gap_ms < RTU_GAP_MIN_MS)
		gap_ms = RTU_GAP_MIN_MS;
	s->ctx = modbus_new_rtu(o->rtu, o->baud, o->parity, o->data_bits, o->stop_bits);
	if (s->ctx == NULL) {
		log_error("--rtu %s: %s", o->rtu, modbus_strerror(errno));
		return 1;
	}
	s->header_length = modbus_get_header_length(s->ctx);
	s->checksum_length = 2;
	modbus_set_response_timeout(s->ctx, 0, 1000);
	rc = modbus_connect(s->ctx);
	if (rc != 0 && errno == EINVAL && o->parity != 'N' && pty_unsettle(s, o->rtu) == 0)
		rc = modbus_connect(s->ctx);
	if (rc != 0) {
		log_error("cannot open %s at %d baud %d%c%d: %s", o->rtu, o->baud, o->data_bits,
			  o->parity, o->stop_bits, modbus_strerror(errno));
		return 1;
	}
	fd = modbus_get_socket(s->ctx);
	if (fd >= FD_SETSIZE) {
		log_error("%s: descriptor %d above FD_SETSIZE", o->rtu, fd);
		return 1;
	}
	log_info(s, "serving %s at %d baud %d%c%d (Modbus RTU)", o->rtu, o->baud, o->data_bits,
		 o->parity, o->stop_bits);
	printf("plcsim: ready\n");
	fflush(stdout);

	while (!stop_requested) {
		fd_set readable;
		struct timespec gap = { .tv_sec = gap_ms / 1000,
					.tv_nsec = gap_ms % 1000 * 1000000 };
		ssize_t n;

		FD_ZERO(&readable);
		FD_SET(fd, &readable);
		rc = pselect(fd + 1, &readable, NULL, NULL, len > 0 ? &gap : NULL, waitmask);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			log_error("select on %s: %s", o->rtu, strerror(errno));
			return 1;
		}
		if (rc == 0) {
			rtu_process(s, buf, &len, true);
			continue;
		}
		n = read(fd, buf + len, sizeof(buf) - (size_t)len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			/* A pseudo-terminal whose other end went away reads EIO or 0. */
			log_error("read from %s: %s", o->rtu,
				  n == 0 ? "line closed" : strerror(errno));
			return 1;
		}
		len += (int)n;
		rtu_process(s, buf, &len, false);
		if (len == (int)sizeof(buf)) {
			log_info(s, "dropped %d bytes: no RTU frame in them", len);
			len = 0;
		}
	}
	return 0;
}

/* --- options --- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: plcsim (--tcp HOST:PORT | --rtu DEVICE [--baud N] [--parity N|E|O]\n"
		"              [--data-bits 7|8] [--stop-bits 1|2]) [--unit ID]... [--step-ms N]\n"
		"              [--start K] [--bulk N] [--count-reads ADDR [--read-log FILE]]\n"
		"              [--quiet]\n"
		"A simulated Modbus PLC; the register map is at the top of tools/plcsim.c.\n"
		"--count-reads ADDR: holding registers ADDR, ADDR+1 hold (u32, ABCD) the\n"
		"  number of FC3 reads served that include ADDR, this one counted: each value\n"
		"  is served once. --read-log FILE appends \"read N client C unit U\" for each\n"
		"  (C: the TCP connection, 1 for the first accepted; 0 in RTU).\n");
}

/* Parses a decimal integer in [min, max]; on error says which option and exits. */
static long long parse_number(const char *option, const char *arg, long long min, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < min || v > max) {
		log_error("--%s: expected an integer from %lld to %lld, got \"%s\"", option, min,
			  max, arg);
		exit(2);
	}
	return v;
}

enum option_id {
	OPT_TCP = 't',
	OPT_RTU = 'r',
	OPT_BAUD = 'b',
	OPT_PARITY = 'p',
	OPT_DATA_BITS = 'd',
	OPT_STOP_BITS = 's',
	OPT_UNIT = 'u',
	OPT_STEP_MS = 'm',
	OPT_START = 'k',
	OPT_BULK = 'n',
	OPT_QUIET = 'q',
	OPT_HELP = 'h',
	OPT_COUNT_READS = 'c',
	OPT_READ_LOG = 'l',
};

static const struct option long_options[] = {
	{ .name = "tcp", .has_arg = required_argument, .val = OPT_TCP },
	{ .name = "rtu", .has_arg = required_argument, .val = OPT_RTU },
	{ .name = "baud", .has_arg = required_argument, .val = OPT_BAUD },
	{ .name = "parity", .has_arg = required_argument, .val = OPT_PARITY },
	{ .name = "data-bits", .has_arg = required_argument, .val = OPT_DATA_BITS },
	{ .name = "stop-bits", .has_arg = required_argument, .val = OPT_STOP_BITS },
	{ .name = "unit", .has_arg = required_argument, .val = OPT_UNIT },
	{ .name = "step-ms", .has_arg = required_argument, .val = OPT_STEP_MS },
	{ .name = "start", .has_arg = required_argument, .val = OPT_START },
	{ .name = "bulk", .has_arg = required_argument, .val = OPT_BULK },
	{ .name = "count-reads", .has_arg = required_argument, .val = OPT_COUNT_READS },
	{ .name = "read-log", .has_arg = required_argument, .val = OPT_READ_LOG },
	{ .name = "quiet", .has_arg = no_argument, .val = OPT_QUIET },
	{ .name = "help", .has_arg = no_argument, .val = OPT_HELP },
	{ .name = NULL },
};

static void parse_options(int argc, char **argv, struct sim_options *o)
{
	int c;

	*o = (struct sim_options){
		.baud = 19200,
		.parity = 'N',
		.data_bits = 8,
		.stop_bits = 1,
		.step_ms = 1000,
		.start_tick = 0,
		.bulk = BULK_MAX,
		.count_reads = -1,
	};
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_TCP:
			o->tcp = optarg;
			break;
		case OPT_RTU:
			o->rtu = optarg;
			break;
		case OPT_BAUD:
			o->baud = (int)parse_number("baud", optarg, 50, 4000000);
			break;
		case OPT_PARITY:
			if (strlen(optarg) != 1 || strchr("NEOneo", optarg[0]) == NULL) {
				log_error("--parity: expected N, E or O, got \"%s\"", optarg);
				exit(2);
			}
			o->parity = (char)(optarg[0] & ~0x20);
			break;
		case OPT_DATA_BITS:
			o->data_bits = (int)parse_number("data-bits", optarg, 7, 8);
			break;
		case OPT_STOP_BITS:
			o->stop_bits = (int)parse_number("stop-bits", optarg, 1, 2);
			break;
		case OPT_UNIT:
			o->served[parse_number("unit", optarg, 0, NUM_UNITS - 1)] = true;
			o->unit_given = true;
			break;
		case OPT_STEP_MS:
			o->step_ms = (long)parse_number("step-ms", optarg, 0, 86400000);
			break;
		case OPT_START:
			o->start_tick = (uint64_t)parse_number("start", optarg, 0, LLONG_MAX);
			break;
		case OPT_BULK:
			o->bulk = (int)parse_number("bulk", optarg, 0, BULK_MAX);
			break;
		case OPT_COUNT_READS:
			o->count_reads = (long)parse_number("count-reads", optarg, 0,
							    BULK_START + BULK_MAX - 2);
			break;
		case OPT_READ_LOG:
			o->read_log = optarg;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		exit(2);
	}
	if ((o->tcp == NULL) == (o->rtu == NULL)) {
		log_error("give exactly one of --tcp HOST:PORT and --rtu DEVICE");
		usage(stderr);
		exit(2);
	}
	if (o->count_reads >= 0 && o->count_reads + 2 > BULK_START + o->bulk) {
		log_error("--count-reads %ld: the register and the next must be in the map (below "
			  "%d with --bulk %d)",
			  o->count_reads, BULK_START + o->bulk, o->bulk);
		exit(2);
	}
	if (o->read_log != NULL && o->count_reads < 0) {
		log_error("--read-log logs the reads of --count-reads: give that too");
		exit(2);
	}
	if (!o->unit_given)
		o->served[1] = true;
	if (o->rtu != NULL) {
		for (int u = 0; u < NUM_UNITS; u++) {
			if (o->served[u] && (u < 1 || u > 247)) {
				log_error("--unit %d: an RTU unit id is 1 to 247 (0 is broadcast)",
					  u);
				exit(2);
			}
		}
	}
}

int main(int argc, char **argv)
{
	struct sim_options opt;
	struct sim s = { .opt = &opt, .read_log_fd = -1 };
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t blocked, waitmask;
	int status;

	parse_options(argc, argv, &opt);

	/* The signals are only let through inside pselect(): no lost wake-up. */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigprocmask(SIG_BLOCK, &blocked, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int u = 0; u < NUM_UNITS; u++) {
		if (!opt.served[u])
			continue;
		s.units[u] = modbus_mapping_new(NUM_BITS, NUM_BITS, BULK_START + opt.bulk,
						NUM_INPUT_REGISTERS);
		if (s.units[u] == NULL) {
			log_error("unit %d: cannot allocate the register map: %s", u,
				  modbus_strerror(errno));
			status = 1;
			goto out;
		}
		s.units[u]->tab_registers[SETPOINT_ADDRESS] = SETPOINT_INITIAL;
	}
	if (opt.read_log != NULL) {
		s.read_log_fd = open(opt.read_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (s.read_log_fd < 0) {
			log_error("--read-log %s: %s", opt.read_log, strerror(errno));
			status = 1;
			goto out;
		}
	}
	s.epoch_ms = monotonic_ms();
	sim_update(&s, true);

	status = opt.tcp != NULL ? run_tcp(&s, &waitmask) : run_rtu(&s, &waitmask);
	if (stop_requested)
		log_info(&s, "stopping on signal");
out:
	if (s.ctx != NULL) {
		/* In TCP the context holds the last client's descriptor, already closed. */
		if (opt.tcp != NULL)
			modbus_set_socket(s.ctx, -1);
		modbus_close(s.ctx);
		modbus_free(s.ctx);
	}
	for (int u = 0; u < NUM_UNITS; u++)
		modbus_mapping_free(s.units[u]);
	if (s.read_log_fd >= 0)
		close(s.read_log_fd);
	return status;
}
