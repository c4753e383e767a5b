/* modbus.c: the Modbus TCP and RTU adapter at run time: the link, checked transactions, poll
 * groups, backoff and reconnect, writes and fresh reads. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <modbus.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "modbus.h"

#define SUBSYS "modbus"

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void count(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* Closes the link; b->lock held (or no other thread left). */
static void link_close(struct adapter *a, struct mb_backend *b)
{
	if (b->ctx != NULL && b->adopted) {
		/* Not libmodbus's close: it would restore serial settings it never saved here. */
		modbus_set_socket(b->ctx, -1);
		if (b->fd >= 0)
			close(b->fd);
		modbus_free(b->ctx);
		b->ctx = NULL;
	} else if (b->ctx != NULL) {
		modbus_close(b->ctx);
		modbus_free(b->ctx);
		b->ctx = NULL;
	}
	b->fd = -1;
	b->connected = false;
	__atomic_store_n(&a->stats.link_up, 0, __ATOMIC_RELAXED);
}

/*
 * The adapter thread (a lost link, a technician's restart) and the command
 * thread (mb_write, mb_read) share the context: it is freed only under b->lock.
 */
static void mb_close(struct adapter *a)
{
	struct mb_backend *b = a->backend_data;

	pthread_mutex_lock(&b->lock);
	link_close(a, b);
	pthread_mutex_unlock(&b->lock);
}

/* 3.5 character times of silence (Modbus over serial line, 2.5.1.1); 1750 us above 19200 baud. */
int64_t mb_rtu_gap_us(int baud, int data_bits, bool parity, int stop_bits)
{
	int bits = 1 + data_bits + (parity ? 1 : 0) + stop_bits;

	if (baud > 19200)
		return 1750;
	/* Rounded up: the gap is a minimum. */
	return (int64_t)ceil(3.5 * bits * 1000000.0 / baud);
}

static int64_t rtu_gap_us(const struct mb_backend *b)
{
	if (b->frame_gap_us > 0)
		return b->frame_gap_us;
	return mb_rtu_gap_us(b->baud, b->data_bits, b->parity != SERIAL_PARITY_NONE, b->stop_bits);
}

/*
 * The RS-485 settings of an RTU port that just opened; b->lock held. "rs485"
 * asks the driver to switch the transceiver's direction itself (TIOCSRS485);
 * "rts" has libmodbus raise or lower RTS around each request it sends. 0, or
 * -1 with errno and b->open_why saying why.
 */
static int rtu_setup(struct adapter *a, struct mb_backend *b)
{
	static const int rts_modes[] = { MODBUS_RTU_RTS_NONE, MODBUS_RTU_RTS_UP,
					 MODBUS_RTU_RTS_DOWN }; /* enum mb_rts */
	int err;

	if (b->rs485 != MB_RS485_OFF && modbus_rtu_set_serial_mode(b->ctx, MODBUS_RTU_RS485) != 0) {
		err = errno;
		if (b->rs485 == MB_RS485_ON) {
			snprintf(b->open_why, sizeof(b->open_why),
				 "RS-485 mode: the port's driver does not take the RS-485 ioctl "
				 "(TIOCSRS485: %s); an adapter that switches direction by itself "
				 "needs no \"rs485\" (or \"rs485\": \"auto\")",
				 strerror(err));
			errno = err;
			return -1;
		}
		if (!b->rs485_noted)
			log_info(SUBSYS,
				 "%s: %s has no RS-485 mode in its driver (TIOCSRS485: %s); "
				 "\"rs485\": \"auto\" leaves the direction to the adapter",
				 a->name, b->device, strerror(err));
		b->rs485_noted = true;
	}
	if (b->rts != MB_RTS_NONE) {
		if (modbus_rtu_set_rts(b->ctx, rts_modes[b->rts]) != 0 ||
		    (b->rts_delay_us >= 0 &&
		     modbus_rtu_set_rts_delay(b->ctx, b->rts_delay_us) != 0)) {
			err = errno;
			snprintf(b->open_why, sizeof(b->open_why), "RTS %s: %s",
				 mb_rts_names[b->rts], modbus_strerror(err));
			errno = err;
			return -1;
		}
	}
	return 0;
}

/* A libmodbus context for this link, not connected; b->lock held. 0 or GD_ENOMEM. */
static int ctx_new(struct mb_backend *b)
{
	static const char parity_chars[] = { 'N', 'E', 'O' }; /* enum serial_parity */
	char port[16];

	if (b->ctx != NULL)
		return 0;
	snprintf(port, sizeof(port), "%d", b->port);
	if (b->rtu)
		b->ctx = modbus_new_rtu(b->device, b->baud, parity_chars[b->parity], b->data_bits,
					b->stop_bits);
	else
		b->ctx = modbus_new_tcp_pi(b->host, port);
	if (b->ctx == NULL)
		return GD_ENOMEM;
	/* libmodbus only sends (RTU); it must never sleep or reconnect on its own. */
	modbus_set_error_recovery(b->ctx, MODBUS_ERROR_RECOVERY_NONE);
	return 0;
}

static int link_ready(struct adapter *a, struct mb_backend *b);

/* Opens the link; b->lock held. 0, GD_ENOMEM, or GD_EIO with errno kept (and b->open_why set
 * when the port opened but its RS-485 settings did not take). */
static int link_open(struct adapter *a, struct mb_backend *b)
{
	int saved;

	b->open_why[0] = '\0';
	if (b->connected)
		return 0;
	if (b->adopted) {
		/* The parent reopens an adopted link; this process may not open anything. */
		errno = ENOTCONN;
		return GD_EIO;
	}
	if (ctx_new(b) != 0)
		return GD_ENOMEM;
	if (modbus_connect(b->ctx) != 0) {
		saved = errno;
		modbus_free(b->ctx);
		b->ctx = NULL;
		errno = saved;
		return GD_EIO;
	}
	b->fd = modbus_get_socket(b->ctx);
	return link_ready(a, b);
}

/* The link's descriptor is open (connected here, or adopted): its RS-485 settings, non-blocking
 * reads, and the state of a fresh link; b->lock held. 0 or GD_EIO with errno kept. */
static int link_ready(struct adapter *a, struct mb_backend *b)
{
	int saved, flags;

	if (b->rtu && rtu_setup(a, b) != 0) {
		saved = errno;
		link_close(a, b);
		errno = saved;
		return GD_EIO;
	}
	/* Our own reads wait in ppoll() against one deadline: the descriptor must not block. */
	flags = fcntl(b->fd, F_GETFL);
	if (flags < 0 || fcntl(b->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		saved = errno;
		link_close(a, b);
		errno = saved;
		return GD_EIO;
	}
	b->connected = true;
	b->dirty = true; /* whatever a port held before it was ours */
	b->nstale = 0;
	b->last_frame_end_us = mono_us();
	__atomic_store_n(&a->stats.link_up, 1, __ATOMIC_RELAXED);
	return 0;
}

static int mb_open(struct adapter *a)
{
	struct mb_backend *b = a->backend_data;
	int rc;

	pthread_mutex_lock(&b->lock);
	rc = link_open(a, b);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

/* Waits for the bus to have been silent for the inter-frame gap (RTU only). */
static void rtu_wait_gap(struct mb_backend *b)
{
	int64_t ready = b->last_frame_end_us + rtu_gap_us(b);
	int64_t now = mono_us();

	if (now < ready) {
		struct timespec ts = { .tv_sec = (ready - now) / 1000000,
				       .tv_nsec = ((ready - now) % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}

/*
 * Waits until the link's descriptor is ready for 'events' or the monotonic
 * 'deadline_us' passes. Returns the revents (> 0), 0 at the deadline, or -1
 * with errno.
 */
static int wait_fd(int fd, short events, int64_t deadline_us)
{
	for (;;) {
		int64_t left = deadline_us - mono_us();
		struct pollfd pfd = { .fd = fd, .events = events };
		struct timespec ts;
		int rc;

		if (left <= 0)
			return 0;
		ts = (struct timespec){ .tv_sec = left / 1000000,
					.tv_nsec = left % 1000000 * 1000 };
		rc = ppoll(&pfd, 1, &ts, NULL);
		if (rc > 0)
			return pfd.revents;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/*
 * Reads what has arrived, waiting for it until 'deadline_us'. Returns the
 * bytes read (> 0), 0 at the deadline, or -1 on a lost link (errno set).
 * A serial port in raw mode (VMIN 0) reads 0 when it has nothing; a socket,
 * only when the peer closed.
 */
static ssize_t link_read(struct mb_backend *b, uint8_t *buf, size_t cap, int64_t deadline_us)
{
	for (;;) {
		int ev = wait_fd(b->fd, POLLIN, deadline_us);
		ssize_t n;

		if (ev <= 0)
			return ev;
		n = b->rtu ? read(b->fd, buf, cap) : recv(b->fd, buf, cap, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n == 0 && (!b->rtu || (ev & (POLLHUP | POLLERR)) != 0)) {
			errno = ECONNRESET;
			return -1;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
	}
}

/* Discards whatever bytes wait on the link now. */
static void link_drain(struct mb_backend *b)
{
	uint8_t junk[256];
	ssize_t n;

	do {
		n = b->rtu ? read(b->fd, junk, sizeof(junk))
			   : recv(b->fd, junk, sizeof(junk), MSG_DONTWAIT);
	} while (n > 0);
}

/*
 * After a bad frame: on RTU the rest of it may still be on the wire, so bytes
 * are discarded until the line has been quiet for the frame gap (at least
 * 2 ms) or 'deadline_us'; on TCP what waits is discarded. Bytes that come
 * later are drained before the next request (b->dirty).
 */
static void link_flush(struct mb_backend *b, int64_t deadline_us)
{
	int64_t quiet_us = rtu_gap_us(b) > 2000 ? rtu_gap_us(b) : 2000;
	uint8_t junk[256];

	link_drain(b);
	if (!b->rtu)
		return;
	for (;;) {
		int64_t until = mono_us() + quiet_us;

		if (until > deadline_us)
			until = deadline_us;
		if (link_read(b, junk, sizeof(junk), until) <= 0)
			break;
	}
}

/* Sends the ADU. Returns 1, 0 when the deadline passed before any byte left, or -1 (errno). */
static int link_send(struct mb_backend *b, const uint8_t *adu, size_t len, int64_t deadline_us)
{
	size_t off = 0;

	if (b->rtu) {
		/*
		 * Through libmodbus, without our CRC (it appends the same one): its send
		 * path is where RTS is driven for RS-485 transceivers that need it
		 * (modbus_rtu_set_rts), so that stays usable. Reading stays ours.
		 */
		if (modbus_send_raw_request(b->ctx, adu, (int)len - 2) != (int)len) {
			if (errno >= MODBUS_ENOBASE)
				errno = EIO; /* a short write, in libmodbus's words */
			return -1;
		}
		return 1;
	}
	while (off < len) {
		ssize_t n = send(b->fd, adu + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		int ev;

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		ev = wait_fd(b->fd, POLLOUT, deadline_us);
		if (ev < 0)
			return -1;
		if (ev == 0) {
			if (off == 0)
				return 0;
			/* Half a request on the stream: nothing after it could be understood. */
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return 1;
}

static bool stale_has(const struct mb_backend *b, uint16_t tid)
{
	for (size_t i = 0; i < b->nstale && i < MB_STALE_TIDS; i++) {
		if (b->stale_tids[i] == tid)
			return true;
	}
	return false;
}

/* A TCP request given up on: its answer, should it come late, is skipped, not taken. */
static void stale_add(struct mb_backend *b, uint16_t tid)
{
	b->stale_tids[b->nstale % MB_STALE_TIDS] = tid;
	b->nstale++;
}

/*
 * One transaction on the open link, b->lock held: sends 'rq' ('wregs' are
 * FC 16's registers), and reads its answer until unit->timeout_ms after the
 * send, first byte to last. The answer is checked against the request
 * (mb_wire_parse); a late answer to a request given up on (TCP: its
 * transaction id) is skipped. A good read is unpacked into 'regs' or 'bits'.
 * Counts the transaction in the adapter's and the unit's counters. Returns
 * the answer's quality: GOOD; EXCEPTION (*code: its code, whatever it is);
 * BAD_FRAME (the link flushed; b->why says why); TIMEOUT; DISCONNECTED
 * (*code: errno; the link is closed).
 */
static enum quality transact(struct adapter *a, struct mb_backend *b, struct mb_unit *unit,
			     struct mb_wire_request *rq, const uint16_t *wregs, uint16_t *regs,
			     uint8_t *bits, int32_t *code)
{
	struct mb_wire_answer ans;
	size_t len, start = 0, have = 0;
	int64_t deadline = 0;
	enum quality q;
	int rc;

	*code = 0;
	if (b->dirty) {
		link_drain(b);
		b->dirty = false;
	}
	if (b->rtu)
		rtu_wait_gap(b);
	else
		rq->tid = b->next_tid++;
	len = mb_wire_build(rq, wregs, b->tx);
	if (len == 0) {
		/* The planner and mb_write keep within the limits: not reached. */
		snprintf(b->why, sizeof(b->why), "function %u of %u items cannot be sent",
			 rq->function, rq->count);
		*code = EINVAL;
		q = QUALITY_BAD_VALUE;
		goto out;
	}
	count(&unit->polls);
	count(&a->stats.polls);
	deadline = mono_us() + (int64_t)unit->timeout_ms * 1000;
	rc = link_send(b, b->tx, len, deadline);
	if (rc <= 0) {
		if (rc == 0)
			snprintf(b->why, sizeof(b->why), "the request could not be sent in %d ms",
				 unit->timeout_ms);
		q = rc == 0 ? QUALITY_TIMEOUT : QUALITY_DISCONNECTED;
		goto out;
	}
	if (b->rtu && rq->unit_id == 0 && rq->function > 4) {
		q = QUALITY_GOOD; /* a broadcast write: no slave answers (serial line 2.1) */
		goto out;
	}
	for (;;) {
		ssize_t n;

		switch (mb_wire_parse(rq, b->rx + start, have - start, &ans)) {
		case MB_WIRE_OK:
			if (regs != NULL || bits != NULL)
				mb_wire_unpack(rq, &ans, b->rx + start, regs, bits);
			q = QUALITY_GOOD;
			goto answered;
		case MB_WIRE_EXCEPTION:
			*code = ans.exception;
			q = QUALITY_EXCEPTION;
			goto answered;
		case MB_WIRE_OTHER_TID:
			if (!stale_has(b, ans.tid)) {
				snprintf(b->why, sizeof(b->why), "%s", ans.why);
				q = QUALITY_BAD_FRAME;
				goto out;
			}
			if (have - start >= ans.len) {
				start += ans.len;
				count(&b->late_answers);
				continue;
			}
			break;
		case MB_WIRE_INVALID:
			snprintf(b->why, sizeof(b->why), "%s", ans.why);
			q = QUALITY_BAD_FRAME;
			goto out;
		case MB_WIRE_NEED:
			break;
		}
		if (start > 0) {
			memmove(b->rx, b->rx + start, have - start);
			have -= start;
			start = 0;
		}
		n = have < sizeof(b->rx)
			    ? link_read(b, b->rx + have, sizeof(b->rx) - have, deadline)
			    : 0;
		if (n <= 0) {
			if (n == 0)
				snprintf(b->why, sizeof(b->why),
					 "no complete answer in %d ms (%zu bytes came)",
					 unit->timeout_ms, have);
			q = n == 0 ? QUALITY_TIMEOUT : QUALITY_DISCONNECTED;
			goto out;
		}
		have += (size_t)n;
	}
answered:
	/* Bytes after the answer belong to nothing we asked: gone before the next request. */
	if (have - start > ans.len)
		b->dirty = true;
out:
	switch (q) {
	case QUALITY_BAD_VALUE: /* nothing was sent */
		break;
	case QUALITY_GOOD:
		count(&unit->polls_ok);
		count(&a->stats.polls_ok);
		break;
	case QUALITY_EXCEPTION:
		count(&unit->exceptions);
		count(&a->stats.exceptions);
		break;
	case QUALITY_TIMEOUT:
		count(&unit->timeouts);
		count(&a->stats.timeouts);
		b->dirty = true;
		if (!b->rtu)
			stale_add(b, rq->tid);
		break;
	case QUALITY_BAD_FRAME:
		count(&unit->bad_frames);
		count(&a->stats.bad_frames);
		log_debug(SUBSYS, "%s: unit %u: bad frame: %s", a->name, unit->id, b->why);
		link_flush(b, deadline);
		b->dirty = true;
		if (!b->rtu)
			stale_add(b, rq->tid);
		break;
	default:
		*code = errno;
		count(&a->stats.io_errors);
		log_warn(SUBSYS, "%s: link to %s lost", a->name, b->where);
		adapter_set_fault(a, "link to %s lost: %s", b->where, strerror(*code));
		link_close(a, b);
		q = QUALITY_DISCONNECTED;
		break;
	}
	if (b->rtu)
		b->last_frame_end_us = mono_us();
	return q;
}

/* The wire request of one planned read. */
static struct mb_wire_request read_request(const struct mb_backend *b, const struct mb_request *r)
{
	return (struct mb_wire_request){
		.rtu = b->rtu,
		.unit_id = r->unit_id,
		.function = (uint8_t)(r->table + 1), /* tables 1..4 are read with FC 1..4 */
		.address = r->address,
		.count = r->count,
	};
}

/* A gd_err for a failed transaction's quality. */
static int quality_error(enum quality q)
{
	switch (q) {
	case QUALITY_GOOD:
		return 0;
	case QUALITY_TIMEOUT:
		return GD_ETIMEDOUT;
	case QUALITY_EXCEPTION:
		return GD_EDEVICE;
	case QUALITY_BAD_FRAME:
		return GD_EPROTO;
	case QUALITY_BAD_VALUE:
		return GD_ERANGE;
	default:
		return GD_EIO;
	}
}

/* Decodes one point of a good answer to 'r' (registers or bits as read) into s->value. */
static void decode_point(struct adapter *a, const struct mb_request *r, const struct mb_point *mp,
			 const uint16_t *regs, const uint8_t *bits, struct sample *s)
{
	const struct point *p = &a->points[mp->point_index];
	size_t off = (size_t)(mp->address - r->address);

	if (r->table == MB_COIL || r->table == MB_DISCRETE) {
		s->value = (struct value){ .kind = VALUE_KIND_BOOL, .b = bits[off] != 0 };
	} else if (codec_decode_regs(mp->type, mp->order, mp->length, regs + off, &s->value,
				     mp->strbuf) != 0) {
		s->quality = QUALITY_BAD_VALUE;
		s->value.kind = VALUE_KIND_NONE;
		return;
	}
	if (codec_scale(&s->value, p->scale, p->offset) != 0) {
		s->quality = QUALITY_BAD_VALUE;
		s->value.kind = VALUE_KIND_NONE;
	}
}

static void fill_bad(struct adapter *a, struct mb_backend *b, const struct mb_request *r,
		     struct sample *out, enum quality q, int32_t code, int64_t ts)
{
	for (size_t k = 0; k < r->npoints; k++) {
		const struct mb_point *mp = &b->mpoints[r->first + k];

		out[k] = (struct sample){
			.point_id = a->points[mp->point_index].id,
			.quality = q,
			.code = code,
			.ts_ms = ts,
		};
	}
}

/*
 * An exception answer to request 'r': logged for the points whose first exception it is, so a
 * device that refuses an address is named once, not at every poll.
 */
static void log_first_exception(struct adapter *a, struct mb_backend *b, const struct mb_request *r,
				int32_t code)
{
	char names[200];
	size_t used = 0, fresh = 0;

	names[0] = '\0';
	for (size_t k = 0; k < r->npoints; k++) {
		struct mb_point *mp = &b->mpoints[r->first + k];

		if (mp->exception_logged)
			continue;
		mp->exception_logged = true;
		if (fresh++ < 4 && used < sizeof(names))
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
						 fresh > 1 ? ", " : "",
						 a->points[mp->point_index].name);
	}
	if (fresh == 0)
		return;
	if (fresh > 4 && used < sizeof(names))
		snprintf(names + used, sizeof(names) - used, " and %zu more", fresh - 4);
	log_warnx(
		SUBSYS,
		"%s: unit %u: exception %d (%s) reading %s %u-%u, point%s %s; said once per point",
		a->name, r->unit_id, (int)code, adapter_exception_text((int)code),
		mb_table_names[r->table], r->address, r->address + r->count - 1,
		fresh == 1 ? "" : "s", names);
}

/* Polls one group: every request once, one batch to the sink. */
static void poll_group(struct adapter *a, struct mb_backend *b, struct mb_group *g, int64_t now_ms,
		       struct point_sink *out)
{
	size_t ns = 0;

	for (size_t ri = 0; ri < g->nrequests; ri++) {
		const struct mb_request *r = &g->requests[ri];
		struct mb_unit *unit = &b->units[r->unit_index];
		struct sample *batch = b->samples + ns;
		struct mb_wire_request rq = read_request(b, r);
		char why[sizeof(b->why)];
		enum quality q;
		int32_t code = 0;

		pthread_mutex_lock(&b->lock);
		if (!b->connected)
			q = QUALITY_DISCONNECTED;
		else if (unit->retry_at_ms > now_ms)
			q = QUALITY_OFFLINE;
		else
			q = transact(a, b, unit, &rq, NULL, b->regs, b->bits, &code);
		if (q == QUALITY_TIMEOUT || q == QUALITY_BAD_FRAME)
			memcpy(why, b->why, sizeof(why));
		pthread_mutex_unlock(&b->lock);
		if (q == QUALITY_GOOD) {
			int64_t ts = gd_now_ms();

			if (unit->failures > 0)
				log_info(SUBSYS, "%s: unit %u answers again", a->name, unit->id);
			unit->failures = 0;
			unit->retry_at_ms = 0;
			__atomic_store_n(&unit->last_ok_ms, ts, __ATOMIC_RELAXED);
			__atomic_store_n(&a->stats.last_ok_ms, ts, __ATOMIC_RELAXED);
			/* b->regs and b->bits are this thread's: mb_read reads into its own. */
			for (size_t k = 0; k < r->npoints; k++) {
				const struct mb_point *mp = &b->mpoints[r->first + k];

				batch[k] = (struct sample){
					.point_id = a->points[mp->point_index].id,
					.quality = QUALITY_GOOD,
					.ts_ms = ts,
				};
				decode_point(a, r, mp, b->regs, b->bits, &batch[k]);
			}
		} else {
			fill_bad(a, b, r, batch, q, code, gd_now_ms());
			if (q == QUALITY_EXCEPTION)
				log_first_exception(a, b, r, code);
			if (q == QUALITY_TIMEOUT || q == QUALITY_BAD_FRAME) {
				/* Silence or garbage: back off so this unit cannot starve the bus.
				 */
				unit->failures++;
				unit->retry_at_ms =
					gd_mono_ms() + gd_backoff_ms(b->retry.backoff_min_ms,
								     b->retry.backoff_max_ms,
								     unit->failures);
				if (unit->failures == 1)
					log_warnx(SUBSYS,
						  "%s: unit %u: %s (%s); retrying with backoff",
						  a->name, unit->id, quality_names[q], why);
			}
		}
		ns += r->npoints;
	}
	__atomic_add_fetch(&a->stats.samples, ns, __ATOMIC_RELAXED);
	if (ns > 0)
		out->emit(out, a, b->samples, ns);
}

/* Opens the link when it is down and a retry is due. Returns 0 or the open's gd_err. */
static int reconnect(struct adapter *a, struct mb_backend *b, int64_t now_ms)
{
	char why[sizeof(b->open_why) + 320], hint[160] = "";
	bool due;
	int rc = 0, err;

	pthread_mutex_lock(&b->lock);
	/* An adopted link is the parent's to reopen. */
	due = !b->connected && !b->adopted && link_retry_due(&b->retry, now_ms);
	if (due)
		rc = link_open(a, b);
	err = errno;
	if (due && rc != 0 && b->open_why[0] != '\0')
		snprintf(why, sizeof(why), "%s: %s", b->where, b->open_why);
	else if (due && rc != 0 && b->rtu)
		snprintf(why, sizeof(why), "cannot open %s: %s%s", b->where, strerror(err),
			 serial_access_hint(b->device, err, hint, sizeof(hint)));
	else if (due && rc != 0)
		snprintf(why, sizeof(why), "cannot connect to %s: %s", b->where, strerror(err));
	pthread_mutex_unlock(&b->lock);
	if (!due)
		return 0;
	if (rc == 0) {
		log_info(SUBSYS, "%s: connected to %s", a->name, b->where);
		link_retry_opened(&b->retry, a);
	} else {
		link_retry_failed(&b->retry, a, now_ms, SUBSYS, why);
	}
	return rc;
}

static int mb_poll(struct adapter *a, int64_t now_ms, struct point_sink *out)
{
	struct mb_backend *b = a->backend_data;
	int64_t next = INT64_MAX;
	bool connected;
	int rc;

	rc = reconnect(a, b, now_ms);
	for (size_t g = 0; g < b->ngroups; g++) {
		struct mb_group *grp = &b->groups[g];

		if (grp->nrequests == 0)
			continue;
		if (grp->next_due_ms <= now_ms) {
			poll_group(a, b, grp, now_ms, out);
			grp->next_due_ms += grp->interval_ms;
			if (grp->next_due_ms <= now_ms) {
				/* Late by a whole interval: skip, do not burst to catch up. */
				if (grp->next_due_ms != grp->interval_ms)
					grp->overruns++;
				grp->next_due_ms = now_ms + grp->interval_ms;
			}
			/* A group with interval 0 polls back to back (benchmarks). */
			if (grp->interval_ms == 0)
				grp->next_due_ms = now_ms;
		}
		if (grp->next_due_ms < next)
			next = grp->next_due_ms;
	}
	pthread_mutex_lock(&b->lock);
	connected = b->connected;
	pthread_mutex_unlock(&b->lock);
	if (!connected && b->retry.retry_at_ms < next)
		next = b->retry.retry_at_ms;
	a->next_due_ms = next;
	return rc;
}

static const struct mb_point *mb_point_of(const struct adapter *a, const struct point *p)
{
	const struct mb_backend *b = a->backend_data;

	for (size_t i = 0; i < b->nmpoints; i++) {
		if (&a->points[b->mpoints[i].point_index] == p)
			return &b->mpoints[i];
	}
	return NULL;
}

/* FC 5 for a coil, 6 for one register, 16 for several (Modbus application protocol 6.5, 6.6, 6.12).
 */
static unsigned mb_write_function(const struct adapter *a, const struct point *p)
{
	const struct mb_point *mp = mb_point_of(a, p);

	if (mp == NULL)
		return 0;
	if (mp->table == MB_COIL)
		return 5;
	return mp->width == 1 ? 6 : 16;
}

/* Tables 1..4 are read with the function code of the same number (mb_table + 1). */
static void mb_read_functions(const struct adapter *a, uint8_t used[128])
{
	const struct mb_backend *b = a->backend_data;

	for (size_t i = 0; i < b->nmpoints; i++)
		used[b->mpoints[i].table + 1] = 1;
}

/*
 * One transaction for the command thread, under b->lock. Returns 0 or a
 * gd_err: GD_ENOTCONN while the link is down (the adapter thread reopens it).
 */
static int command_transact(struct adapter *a, struct mb_backend *b, const struct mb_point *mp,
			    struct mb_wire_request *rq, const uint16_t *wregs, uint16_t *regs,
			    uint8_t *bits)
{
	int32_t code;
	enum quality q;
	int rc;

	pthread_mutex_lock(&b->lock);
	if (!b->connected) {
		rc = GD_ENOTCONN;
		goto out;
	}
	q = transact(a, b, &b->units[mp->unit_index], rq, wregs, regs, bits, &code);
	rc = quality_error(q);
	if (q == QUALITY_DISCONNECTED)
		errno = code;
	else if (q == QUALITY_EXCEPTION)
		log_warnx(SUBSYS, "%s: unit %u: function %u at %u: exception %d (%s)", a->name,
			  mp->unit_id, rq->function, rq->address, (int)code,
			  adapter_exception_text((int)code));
	else if (q != QUALITY_GOOD)
		log_warnx(SUBSYS, "%s: unit %u: function %u at %u: %s: %s", a->name, mp->unit_id,
			  rq->function, rq->address, quality_names[q], b->why);
out:
	pthread_mutex_unlock(&b->lock);
	return rc;
}

/*
 * Writes one value with FC 5, 6 or 16; the device's echo must match. Returns
 * 0, GD_EDENIED (not a writable point of ours), the codec's GD_ERANGE or
 * GD_EINVAL, or command_transact's error.
 */
static int mb_write(struct adapter *a, const struct point *p, const struct value *v)
{
	struct mb_backend *b = a->backend_data;
	const struct mb_point *mp = mb_point_of(a, p);
	uint16_t regs[MB_MAX_READ_REGISTERS];
	struct mb_wire_request rq;
	struct value raw;
	int rc;

	if (mp == NULL || !p->writable)
		return GD_EDENIED;
	rc = codec_unscale(v, p->type, p->scale, p->offset, &raw);
	if (rc != 0)
		return rc;
	rq = (struct mb_wire_request){
		.rtu = b->rtu,
		.unit_id = mp->unit_id,
		.function = (uint8_t)mb_write_function(a, p),
		.address = mp->address,
		.count = mp->width,
	};
	if (mp->table == MB_COIL) {
		rq.value = raw.b ? 0xFF00 : 0x0000;
	} else {
		if (mp->width > MB_WIRE_MAX_WRITE)
			return GD_ERANGE; /* a string longer than one FC 16 can carry */
		rc = codec_encode_regs(mp->type, mp->order, mp->length, &raw, regs);
		if (rc != 0)
			return rc;
		rq.value = regs[0];
	}
	return command_transact(a, b, mp, &rq, regs, NULL, NULL);
}

/*
 * A fresh read of one point, decoded and scaled as a poll would, checked as a
 * poll's answer is. Returns 0, GD_EINVAL (not ours, or a string: not read),
 * GD_ERANGE (a value a poll would mark bad_value), or command_transact's error.
 */
static int mb_read(struct adapter *a, const struct point *p, struct value *out)
{
	struct mb_backend *b = a->backend_data;
	const struct mb_point *mp = mb_point_of(a, p);
	uint16_t regs[MB_MAX_READ_REGISTERS];
	uint8_t bits[1];
	struct mb_request r;
	struct mb_wire_request rq;
	struct sample s = { .quality = QUALITY_GOOD };
	int rc;

	if (mp == NULL || mp->type == VALUE_STRING)
		return GD_EINVAL;
	r = (struct mb_request){
		.unit_index = mp->unit_index,
		.unit_id = mp->unit_id,
		.table = mp->table,
		.address = mp->address,
		.count = mp->width,
		.npoints = 1,
	};
	rq = read_request(b, &r);
	rc = command_transact(a, b, mp, &rq, NULL, regs, bits);
	if (rc != 0)
		return rc;
	decode_point(a, &r, mp, regs, bits, &s);
	if (s.quality != QUALITY_GOOD)
		return GD_ERANGE;
	*out = s.value;
	return 0;
}

/* The transport's own counters for health: late answers skipped, and each unit's. */
static size_t mb_stats_json(const struct adapter *a, char *buf, size_t cap)
{
	const struct mb_backend *b = a->backend_data;
	size_t n = 0;
	int r;

#define PUT(...)                                                                                   \
	do {                                                                                       \
		r = snprintf(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, __VA_ARGS__);        \
		if (r > 0)                                                                         \
			n += (size_t)r;                                                            \
	} while (0)

	PUT(",\"late_answers\":%llu,\"units\":{", ADAPTER_LD(b->late_answers));
	for (size_t i = 0; i < b->nunits; i++) {
		const struct mb_unit *u = &b->units[i];

		PUT("%s\"%u\":{\"polls\":%llu,\"polls_ok\":%llu,\"timeouts\":%llu,"
		    "\"exceptions\":%llu,\"bad_frames\":%llu,\"last_ok_ts\":%lld}",
		    i ? "," : "", u->id, ADAPTER_LD(u->polls), ADAPTER_LD(u->polls_ok),
		    ADAPTER_LD(u->timeouts), ADAPTER_LD(u->exceptions), ADAPTER_LD(u->bad_frames),
		    (long long)ADAPTER_LD(u->last_ok_ms));
	}
	PUT("}");
#undef PUT
	return n;
}

static const char *mb_serial_device(const struct adapter *a)
{
	const struct mb_backend *b = a->backend_data;

	return b != NULL && b->rtu ? b->device : NULL;
}

/* "unit 3 holding 16": what a technician compares with the device's register map. */
static void mb_describe_point(const struct adapter *a, const struct point *p, char *buf, size_t cap)
{
	const struct mb_point *mp = mb_point_of(a, p);

	if (mp != NULL)
		snprintf(buf, cap, "unit %u %s %u", mp->unit_id, mb_table_names[mp->table],
			 mp->address);
	else if (cap > 0)
		buf[0] = '\0';
}

static void mb_destroy(struct adapter *a)
{
	struct mb_backend *b = a->backend_data;

	if (b == NULL)
		return;
	mb_close(a);
	for (size_t g = 0; g < b->ngroups; g++) {
		free(b->groups[g].name);
		free(b->groups[g].requests);
	}
	for (size_t i = 0; i < b->nmpoints; i++)
		free(b->mpoints[i].strbuf);
	free(b->groups);
	free(b->mpoints);
	free(b->units);
	free(b->samples);
	free(b->host);
	free(b->device);
	pthread_mutex_destroy(&b->lock);
	free(b);
	a->backend_data = NULL;
}

/* The parent of a compartment: opens the link as a poll would and hands its descriptor over;
 * the context is freed without closing it. */
static int mb_link_take(struct adapter *a, int64_t now_ms)
{
	struct mb_backend *b = a->backend_data;
	int fd = -1;

	reconnect(a, b, now_ms);
	pthread_mutex_lock(&b->lock);
	if (b->connected) {
		fd = b->fd;
		modbus_set_socket(b->ctx, -1);
		modbus_free(b->ctx);
		b->ctx = NULL;
		b->fd = -1;
		b->connected = false;
	}
	pthread_mutex_unlock(&b->lock);
	if (fd < 0) {
		a->next_due_ms = b->retry.retry_at_ms;
		return GD_ENOTCONN;
	}
	return fd;
}

/* The child of a compartment: 'fd' is the link the parent connected (or opened and set up). */
static int mb_adopt(struct adapter *a, int fd)
{
	struct mb_backend *b = a->backend_data;
	int rc;

	pthread_mutex_lock(&b->lock);
	b->adopted = true;
	b->rs485_noted = true; /* the parent said it when it opened the port */
	rc = ctx_new(b);
	if (rc == 0 && modbus_set_socket(b->ctx, fd) != 0)
		rc = GD_EIO;
	if (rc == 0) {
		b->fd = fd;
		rc = link_ready(a, b);
	} else {
		b->fd = -1;
	}
	pthread_mutex_unlock(&b->lock);
	if (rc == 0)
		b->retry.was_up = true;
	return rc;
}

const struct adapter_ops adapter_modbus_tcp_ops = {
	.type = "modbus-tcp",
	.configure = mb_configure,
	.open = mb_open,
	.poll = mb_poll,
	.write = mb_write,
	.read = mb_read,
	.write_function = mb_write_function,
	.read_functions = mb_read_functions,
	.close = mb_close,
	.destroy = mb_destroy,
	.stats_json = mb_stats_json,
	.serial_device = mb_serial_device,
	.describe_point = mb_describe_point,
	.link_take = mb_link_take,
	.adopt = mb_adopt,
};

const struct adapter_ops adapter_modbus_rtu_ops = {
	.type = "modbus-rtu",
	.configure = mb_configure,
	.open = mb_open,
	.poll = mb_poll,
	.write = mb_write,
	.read = mb_read,
	.write_function = mb_write_function,
	.read_functions = mb_read_functions,
	.close = mb_close,
	.destroy = mb_destroy,
	.stats_json = mb_stats_json,
	.serial_device = mb_serial_device,
	.describe_point = mb_describe_point,
	.link_take = mb_link_take,
	.adopt = mb_adopt,
};
