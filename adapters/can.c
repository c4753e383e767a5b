/* can.c: the CAN adapter at run time: frames from an SLCAN (Lawicel) interface on a serial port or
 * from a SocketCAN interface, signals to points; frames not in the map are counted and dropped. */
#include <errno.h>
#include <fcntl.h>
#include <linux/can.h>
#include <linux/can/raw.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "can.h"
#include "codec.h"

#define SUBSYS	     "can"
#define READ_WAIT_MS 100 /* longest wait in one read, so a stop is seen quickly */
#define PACE_MS	     10	 /* see pace() */

/* ---- decoding ------------------------------------------------------------------------------ */

static const struct can_message *find_message(const struct can_backend *b, uint64_t key)
{
	size_t lo = 0, hi = b->nmsgs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (b->msgs[mid].key == key)
			return &b->msgs[mid];
		if (b->msgs[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * The layouts a frame matches, at most three: its identifier, and for an
 * extended frame its J1939 PGN from this source and from any source.
 */
static size_t lookup(const struct can_backend *b, const struct can_msg *m,
		     const struct can_message *found[3])
{
	const struct can_message *msg = find_message(b, can_key_id(m->id, m->extended));
	struct j1939_id j;
	size_t n = 0;

	if (msg != NULL)
		found[n++] = msg;
	if (!m->extended)
		return n;
	j1939_decode(m->id, &j);
	if ((msg = find_message(b, can_key_j1939(j.pgn, j.source))) != NULL)
		found[n++] = msg;
	if ((msg = find_message(b, can_key_j1939(j.pgn, J1939_ANY))) != NULL)
		found[n++] = msg;
	return n;
}

static void flush_batch(struct adapter *a, struct can_backend *b)
{
	if (b->nbatch == 0)
		return;
	__atomic_add_fetch(&a->stats.samples, b->nbatch, __ATOMIC_RELAXED);
	b->out->emit(b->out, a, b->batch, b->nbatch);
	b->nbatch = 0;
}

static void signal_value(const struct can_point *cp, const uint8_t *data, struct value *v)
{
	uint64_t raw = can_signal_raw(&cp->sig, data);

	if (cp->fl == 1) {
		uint32_t bits = (uint32_t)raw;
		float f;

		memcpy(&f, &bits, sizeof(f));
		*v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = f };
	} else if (cp->fl == 2) {
		double d;

		memcpy(&d, &raw, sizeof(d));
		*v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = d };
	} else if (cp->sig.is_signed) {
		*v = (struct value){ .kind = VALUE_KIND_INT,
				     .i = can_signal_signed(&cp->sig, raw) };
	} else {
		*v = (struct value){ .kind = VALUE_KIND_UINT, .u = raw };
	}
}

/* Adds the signals of layout 'msg' that frame 'm' carries to the batch. */
static void decode_signals(struct adapter *a, struct can_backend *b, const struct can_message *msg,
			   const struct can_msg *m, int64_t ts)
{
	int64_t mux = -1;

	if (msg->mux_point >= 0)
		mux = (int64_t)can_signal_raw(&b->cpoints[msg->mux_point].sig, m->data);
	for (size_t i = 0; i < msg->npoints; i++) {
		size_t pi = msg->points[i];
		const struct can_point *cp = &b->cpoints[pi];
		const struct point *p = &a->points[pi];
		struct sample *s;

		if (cp->mux >= 0 && cp->mux != mux)
			continue;
		if (b->nbatch == CAN_BATCH_MAX)
			flush_batch(a, b);
		if (b->nbatch == 0)
			b->batch_started_ms = gd_mono_ms();
		s = &b->batch[b->nbatch++];
		*s = (struct sample){ .point_id = p->id, .ts_ms = ts };
		signal_value(cp, m->data, &s->value);
		if (p->type == VALUE_BOOL)
			s->value = (struct value){ .kind = VALUE_KIND_BOOL, .b = s->value.u != 0 };
		if (codec_scale(&s->value, p->scale, p->offset) != 0) {
			s->quality = QUALITY_BAD_VALUE;
			s->value.kind = VALUE_KIND_NONE;
		}
	}
}

/* Decodes one frame into the batch: the signals of every layout it matches. */
static void decode_frame(struct adapter *a, struct can_backend *b, const struct can_msg *m,
			 int64_t ts)
{
	const struct can_message *found[3];
	size_t n, used = 0;

	__atomic_add_fetch(&b->frames, 1, __ATOMIC_RELAXED);
	if (m->rtr) {
		__atomic_add_fetch(&b->rtr, 1, __ATOMIC_RELAXED);
		return;
	}
	n = lookup(b, m, found);
	if (n == 0) {
		__atomic_add_fetch(&b->unmapped, 1, __ATOMIC_RELAXED);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (m->dlc < found[i]->need_dlc)
			continue;
		decode_signals(a, b, found[i], m, ts);
		used++;
	}
	if (used == 0) {
		__atomic_add_fetch(&b->short_frames, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&a->stats.bad_frames, 1, __ATOMIC_RELAXED);
		return;
	}
	b->last_frame_ms = gd_mono_ms();
	__atomic_store_n(&a->stats.last_ok_ms, ts, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a->stats.polls_ok, 1, __ATOMIC_RELAXED);
	if (b->timed_out) {
		b->timed_out = false;
		adapter_clear_fault(a);
	}
}

static void on_slcan(void *ctx, const struct slcan_event *ev)
{
	struct can_backend *b = ctx;

	switch (ev->kind) {
	case SLCAN_FRAME:
		if (b->opened)
			decode_frame(b->a, b, &ev->msg, gd_now_ms());
		break;
	case SLCAN_MALFORMED:
		__atomic_add_fetch(&b->malformed, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&b->a->stats.bad_frames, 1, __ATOMIC_RELAXED);
		break;
	case SLCAN_ERROR:
		if (b->opened)
			__atomic_add_fetch(&b->adapter_errors, 1, __ATOMIC_RELAXED);
		b->reply = ev->kind;
		break;
	case SLCAN_OK:
		b->reply = ev->kind;
		break;
	default:
		break;
	}
}

/* ---- links --------------------------------------------------------------------------------- */

/* Sends an SLCAN command and waits for its answer: 0, GD_EDEVICE (BEL), GD_ETIMEDOUT or GD_EIO. */
static int slcan_command(struct can_backend *b, const char *cmd, int timeout_ms)
{
	int64_t deadline = gd_mono_ms() + timeout_ms;
	ssize_t got;

	b->reply = SLCAN_MALFORMED;
	if (serial_write(b->link.port, cmd, strlen(cmd), timeout_ms) != 0)
		return GD_EIO;
	while (b->reply != SLCAN_OK && b->reply != SLCAN_ERROR) {
		int64_t left = deadline - gd_mono_ms();

		if (left <= 0)
			return GD_ETIMEDOUT;
		got = serial_read(b->link.port, b->rbuf, sizeof(b->rbuf), (int)left);
		if (got < 0)
			return GD_EIO;
		slcan_push(&b->parser, b->rbuf, (size_t)got, on_slcan, b);
	}
	return b->reply == SLCAN_OK ? 0 : GD_EDEVICE;
}

/* Brings an SLCAN interface from any state to open at the configured bitrate. */
static int slcan_start(struct can_backend *b, char *why, size_t cap)
{
	char cmd[8];
	int rc;

	slcan_init(&b->parser);
	b->opened = false;
	/* Ends any half-typed command, then closes the channel; either may answer BEL. */
	serial_write(b->link.port, "\r\r\r", 3, 200);
	slcan_command(b, "C\r", 200);
	slcan_bitrate_cmd(b->bitrate, cmd, sizeof(cmd));
	rc = slcan_command(b, cmd, 1000);
	if (rc == 0)
		rc = slcan_command(b, b->listen_only ? "L\r" : "O\r", 1000);
	if (rc == 0) {
		b->opened = true;
		return 0;
	}
	if (rc == GD_EDEVICE)
		snprintf(why, cap, "the SLCAN interface refused %s (bitrate %d)",
			 b->reply == SLCAN_ERROR ? "to open the channel" : "the command",
			 b->bitrate);
	else if (rc == GD_ETIMEDOUT)
		snprintf(why, cap, "no answer from the SLCAN interface (is it an SLCAN adapter?)");
	else
		snprintf(why, cap, "%s", strerror(errno));
	return rc;
}

static int socketcan_filters(struct can_backend *b)
{
	struct can_filter *f = calloc(b->nmsgs ? b->nmsgs : 1, sizeof(*f));
	int rc;

	if (f == NULL)
		return -1;
	for (size_t i = 0; i < b->nmsgs; i++) {
		uint64_t k = b->msgs[i].key;

		if (k & 1ull << 40) {
			unsigned pgn = (unsigned)((k >> 9) & 0x3FFFF), sa = (unsigned)(k & 0x1FF);
			canid_t mask = CAN_EFF_FLAG | CAN_RTR_FLAG | 0x03FFFF00u;

			if (sa != J1939_ANY)
				mask |= 0xFF;
			/* PDU1 PGNs carry a destination in PS: leave it out of the match. */
			if (((pgn >> 8) & 0xFF) < 240)
				mask &= ~0xFF00u;
			f[i].can_id = CAN_EFF_FLAG | (canid_t)pgn << 8 | (sa & 0xFF);
			f[i].can_mask = mask;
		} else if (k & 1ull << 32) {
			f[i].can_id = CAN_EFF_FLAG | (canid_t)(k & CAN_EFF_MASK);
			f[i].can_mask = CAN_EFF_FLAG | CAN_RTR_FLAG | CAN_EFF_MASK;
		} else {
			f[i].can_id = (canid_t)(k & CAN_SFF_MASK);
			f[i].can_mask = CAN_EFF_FLAG | CAN_RTR_FLAG | CAN_SFF_MASK;
		}
	}
	rc = setsockopt(b->sock, SOL_CAN_RAW, CAN_RAW_FILTER, f,
			(socklen_t)(b->nmsgs * sizeof(*f)));
	free(f);
	return rc;
}

static int socketcan_open(struct can_backend *b, char *why, size_t cap)
{
	struct sockaddr_can addr = { .can_family = AF_CAN };
	int saved;

	b->sock = socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
	if (b->sock < 0) {
		snprintf(why, cap, "no SocketCAN in this kernel: %s", strerror(errno));
		return GD_EIO;
	}
	addr.can_ifindex = (int)if_nametoindex(b->interface);
	if (addr.can_ifindex == 0) {
		snprintf(why, cap, "no CAN interface %s: %s", b->interface, strerror(errno));
		goto fail;
	}
	/* The kernel drops what no configured frame matches: unmapped ids never wake us. */
	if (socketcan_filters(b) != 0) {
		snprintf(why, cap, "%s: cannot set the frame filters: %s", b->interface,
			 strerror(errno));
		goto fail;
	}
	if (bind(b->sock, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		snprintf(why, cap, "cannot bind to %s: %s", b->interface, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	saved = errno;
	close(b->sock);
	b->sock = -1;
	errno = saved;
	return GD_EIO;
}

static void link_lost(struct adapter *a, struct can_backend *b, int64_t now, const char *why)
{
	b->opened = false;
	if (b->transport == CAN_SLCAN) {
		serial_link_down(&b->link, a, now, SUBSYS, why);
		return;
	}
	close(b->sock);
	b->sock = -1;
	link_retry_lost(&b->sock_retry, a, now, SUBSYS, b->interface, why);
}

static bool socketcan_up(struct adapter *a, struct can_backend *b, int64_t now)
{
	char why[192];

	if (b->sock >= 0)
		return true;
	/* An adopted socket is the parent's to reopen. */
	if (b->adopted || !link_retry_due(&b->sock_retry, now))
		return false;
	if (socketcan_open(b, why, sizeof(why)) != 0) {
		link_retry_failed(&b->sock_retry, a, now, SUBSYS, why);
		return false;
	}
	link_retry_opened(&b->sock_retry, a);
	b->opened = true;
	log_info(SUBSYS, "%s: SocketCAN %s open, %zu frame filters", a->name, b->interface,
		 b->nmsgs);
	return true;
}

/* Opens whichever link is configured; for SLCAN also the CAN channel. */
static bool link_up(struct adapter *a, struct can_backend *b, int64_t now)
{
	char why[192];

	if (b->transport == CAN_SOCKETCAN)
		return socketcan_up(a, b, now);
	if (b->link.port != NULL && b->opened)
		return true;
	if (!serial_link_up(&b->link, a, now, SUBSYS))
		return false;
	if (slcan_start(b, why, sizeof(why)) != 0) {
		serial_link_down(&b->link, a, now, SUBSYS, why);
		/* Not a hang-up: back off like a failed open. */
		b->link.retry.failures = 2;
		b->link.retry.retry_at_ms = now + gd_backoff_ms(b->link.retry.backoff_min_ms,
								b->link.retry.backoff_max_ms, 2);
		return false;
	}
	log_info(SUBSYS, "%s: SLCAN channel open at %d bit/s%s", a->name, b->bitrate,
		 b->listen_only ? ", listen-only" : "");
	return true;
}

static int64_t retry_at(const struct can_backend *b)
{
	return b->transport == CAN_SLCAN ? b->link.retry.retry_at_ms : b->sock_retry.retry_at_ms;
}

/* ---- polling ------------------------------------------------------------------------------- */

/*
 * While batching, let frames gather for a few ms between reads: one read of
 * many frames instead of a wake-up per frame. The kernel's buffer holds far
 * more than a saturated bus brings in that time.
 */
static void pace(const struct can_backend *b, ssize_t got)
{
	struct timespec ts = { .tv_nsec = PACE_MS * 1000000L };

	if (got > 0 && b->batch_ms >= 2 * PACE_MS)
		nanosleep(&ts, NULL);
}

static int read_slcan(struct can_backend *b, int wait_ms)
{
	ssize_t got = serial_read(b->link.port, b->rbuf, sizeof(b->rbuf), wait_ms);

	if (got < 0)
		return GD_EIO;
	__atomic_add_fetch(&b->bytes, (uint64_t)got, __ATOMIC_RELAXED);
	slcan_push(&b->parser, b->rbuf, (size_t)got, on_slcan, b);
	pace(b, got); /* after decoding, so samples keep the time they arrived */
	return 0;
}

static int read_socketcan(struct adapter *a, struct can_backend *b, int wait_ms)
{
	struct pollfd pfd = { .fd = b->sock, .events = POLLIN };
	int64_t ts = gd_now_ms();
	struct can_frame f;

	if (poll(&pfd, 1, wait_ms) <= 0)
		return 0;
	for (int i = 0; i < 256; i++) {
		ssize_t n = read(b->sock, &f, sizeof(f));
		struct can_msg m;

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			pace(b, i); /* the queue is empty: let the next frames gather */
			return 0;
		}
		if (n < 0)
			return GD_EIO;
		if (n != (ssize_t)sizeof(f) || (f.can_id & CAN_ERR_FLAG))
			continue;
		__atomic_add_fetch(&b->bytes, (uint64_t)n, __ATOMIC_RELAXED);
		m = (struct can_msg){
			.extended = (f.can_id & CAN_EFF_FLAG) != 0,
			.rtr = (f.can_id & CAN_RTR_FLAG) != 0,
			.dlc = f.can_dlc > CAN_MAX_DLEN ? CAN_MAX_DLEN : f.can_dlc,
		};
		m.id = f.can_id & (m.extended ? CAN_EFF_MASK : CAN_SFF_MASK);
		memcpy(m.data, f.data, m.dlc);
		decode_frame(a, b, &m, ts);
	}
	return 0;
}

static void emit_all(struct adapter *a, struct can_backend *b, enum quality q)
{
	int64_t ts = gd_now_ms();

	flush_batch(a, b); /* what was read before comes first */
	for (size_t i = 0; i < a->npoints; i++) {
		if (b->nbatch == CAN_BATCH_MAX)
			flush_batch(a, b);
		b->batch[b->nbatch++] =
			(struct sample){ .point_id = a->points[i].id, .quality = q, .ts_ms = ts };
	}
	flush_batch(a, b);
}

static void check_silence(struct adapter *a, struct can_backend *b, int64_t now)
{
	if (b->timeout_ms == 0 || b->timed_out || now - b->last_frame_ms < b->timeout_ms)
		return;
	b->timed_out = true;
	__atomic_add_fetch(&a->stats.timeouts, 1, __ATOMIC_RELAXED);
	if (adapter_set_fault(a, "no mapped CAN frame for %d ms", b->timeout_ms))
		log_warnx(SUBSYS, "%s: no mapped CAN frame for %d ms", a->name, b->timeout_ms);
	emit_all(a, b, QUALITY_TIMEOUT);
}

/* How long one read may wait: a pending batch is due at batch_started + batch_ms. */
static int read_wait(const struct can_backend *b)
{
	int64_t left;

	if (b->nbatch == 0)
		return READ_WAIT_MS;
	left = b->batch_started_ms + b->batch_ms - gd_mono_ms();
	return left <= 0 ? 0 : left < READ_WAIT_MS ? (int)left : READ_WAIT_MS;
}

static int can_poll(struct adapter *a, int64_t now, struct point_sink *out)
{
	struct can_backend *b = a->backend_data;
	bool was_up = b->opened;
	int rc;

	b->out = out;
	if (!link_up(a, b, now))
		goto down;
	if (!was_up) {
		b->down_reported = false;
		b->timed_out = false;
		b->last_frame_ms = now;
	}
	__atomic_add_fetch(&a->stats.polls, 1, __ATOMIC_RELAXED);
	rc = b->transport == CAN_SLCAN ? read_slcan(b, read_wait(b))
				       : read_socketcan(a, b, read_wait(b));
	/* Frames come one by one: sending them together saves a message per frame. */
	if (b->nbatch > 0 && gd_mono_ms() - b->batch_started_ms >= b->batch_ms)
		flush_batch(a, b);
	if (rc != 0) {
		flush_batch(a, b);
		link_lost(a, b, gd_mono_ms(), strerror(errno));
		goto down;
	}
	check_silence(a, b, gd_mono_ms());
	a->next_due_ms = gd_mono_ms();
	return 0;
down:
	if (!b->down_reported) {
		b->down_reported = true;
		emit_all(a, b, QUALITY_DISCONNECTED);
	}
	a->next_due_ms = retry_at(b);
	return GD_ENOTCONN;
}

static int can_open(struct adapter *a)
{
	struct can_backend *b = a->backend_data;

	b->link.retry.retry_at_ms = b->sock_retry.retry_at_ms = 0;
	return link_up(a, b, gd_mono_ms()) ? 0 : GD_EIO;
}

static void can_close(struct adapter *a)
{
	struct can_backend *b = a->backend_data;

	/* What was read is sent, even at a stop; then the sink may go away. */
	if (b->out != NULL)
		flush_batch(a, b);
	b->out = NULL;
	if (b->transport == CAN_SLCAN && b->link.port != NULL) {
		/* Leave the interface closed, as an integrator's next tool expects to find it. */
		if (b->opened)
			serial_write(b->link.port, "C\r", 2, 100);
		serial_close(b->link.port);
		b->link.port = NULL;
	}
	if (b->sock >= 0)
		close(b->sock);
	b->sock = -1;
	b->opened = false;
	__atomic_store_n(&a->stats.link_up, 0, __ATOMIC_RELAXED);
}

static void can_destroy(struct adapter *a)
{
	struct can_backend *b = a->backend_data;

	if (b == NULL)
		return;
	can_close(a);
	for (size_t m = 0; m < b->nmsgs; m++)
		free(b->msgs[m].points);
	free(b->msgs);
	free(b->cpoints);
	free(b->batch);
	free(b->link.set.device);
	free(b->interface);
	free(b);
	a->backend_data = NULL;
}

/* SLCAN's serial port; SocketCAN opens a network interface, not a device file. */
static const char *can_serial_device(const struct adapter *a)
{
	const struct can_backend *b = a->backend_data;

	return b != NULL && b->transport == CAN_SLCAN ? b->link.set.device : NULL;
}

static size_t can_stats_json(const struct adapter *a, char *buf, size_t cap)
{
	struct can_backend *b = a->backend_data;
	int n = snprintf(buf, cap,
			 ",\"frames\":%llu,\"bytes\":%llu,\"errors\":{\"unmapped\":%llu,"
			 "\"short\":%llu,\"malformed\":%llu,\"adapter\":%llu,\"rtr\":%llu}",
			 ADAPTER_LD(b->frames), ADAPTER_LD(b->bytes), ADAPTER_LD(b->unmapped),
			 ADAPTER_LD(b->short_frames), ADAPTER_LD(b->malformed),
			 ADAPTER_LD(b->adapter_errors), ADAPTER_LD(b->rtr));

	return n > 0 ? (size_t)n : 0;
}

/* The parent of a compartment: the link opened (for SLCAN with its channel), its descriptor
 * handed over; nothing is said to the interface. */
static int can_link_take(struct adapter *a, int64_t now)
{
	struct can_backend *b = a->backend_data;
	int fd;

	if (!link_up(a, b, now)) {
		a->next_due_ms = retry_at(b);
		return GD_ENOTCONN;
	}
	b->opened = false;
	if (b->transport == CAN_SLCAN)
		return serial_link_take(&b->link);
	fd = b->sock;
	b->sock = -1;
	return fd;
}

static int can_adopt(struct adapter *a, int fd)
{
	struct can_backend *b = a->backend_data;
	int rc = 0;

	if (b->transport == CAN_SLCAN) {
		rc = serial_link_adopt(&b->link, a, fd);
	} else {
		b->sock = fd;
		b->adopted = true;
		__atomic_store_n(&a->stats.link_up, 1, __ATOMIC_RELAXED);
	}
	if (rc != 0)
		return rc;
	/* What can_poll does for a link that just came up. */
	b->opened = true;
	b->down_reported = false;
	b->timed_out = false;
	b->last_frame_ms = gd_mono_ms();
	return 0;
}

const struct adapter_ops adapter_can_ops = {
	.type = "can",
	.configure = can_configure,
	.open = can_open,
	.poll = can_poll,
	.close = can_close,
	.destroy = can_destroy,
	.stats_json = can_stats_json,
	.serial_device = can_serial_device,
	.link_take = can_link_take,
	.adopt = can_adopt,
};
