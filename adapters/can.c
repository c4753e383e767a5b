/* can.c: the CAN adapter: frames from an SLCAN (Lawicel) interface on a serial port or from a
 * SocketCAN interface, signals to points as a DBC file describes them; frames not in the map
 * are counted and dropped. */
#include <cjson/cJSON.h>
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

#include "canbus.h"
#include "codec.h"

#define SUBSYS	     "can"
#define READ_WAIT_MS 100 /* longest wait in one read, so a stop is seen quickly */
#define BATCH_MAX    1024
#define PACE_MS	     10	   /* see pace() */
#define J1939_ANY    0x100 /* a J1939 message that takes any source address */

enum can_transport { CAN_SLCAN, CAN_SOCKETCAN };
static const char *const transport_names[] = { "slcan", "socketcan", NULL };
static const char *const sig_order_names[] = { "little_endian", "big_endian", NULL };
static const char *const float_names[] = { "none", "f32", "f64", NULL };

/* A signal; same index as a->points. */
struct can_point {
	struct can_signal sig;
	int msg;     /* index into the message table */
	int mux;     /* -1, or the multiplexor value this signal is valid for */
	int fl;	     /* 0 integer, 1 f32, 2 f64 */
	bool is_mux; /* this signal is its message's multiplexor */
};

/* One frame layout: its match key and its signals. */
struct can_message {
	uint64_t key;  /* see message_key */
	int mux_point; /* -1, or the point holding the multiplexor */
	size_t *points;
	size_t npoints;
	uint8_t need_dlc; /* bytes the longest signal needs */
};

struct can_backend {
	int transport;
	struct serial_link link; /* SLCAN */
	char *interface;	 /* SocketCAN */
	int sock;
	struct link_retry sock_retry;
	int bitrate;
	bool listen_only;
	int timeout_ms;
	int batch_ms; /* samples are sent together for this long (0: after every read) */

	struct can_point *cpoints;
	struct can_message *msgs; /* sorted by key */
	size_t nmsgs;

	/* state, owned by the adapter's thread */
	struct slcan_parser parser;
	struct point_sink *out;
	struct adapter *a;
	struct sample *batch;
	size_t nbatch;
	int64_t batch_started_ms; /* monotonic: when the first sample of the batch came */
	int64_t last_frame_ms;
	bool timed_out, down_reported, opened;
	enum slcan_kind reply; /* the last reply to a command, SLCAN_MALFORMED if none */
	uint8_t rbuf[4096];

	/* counters beyond struct adapter_stats, written by the adapter thread only */
	uint64_t frames, bytes, unmapped, short_frames, malformed, adapter_errors, rtr;
};

struct can_conf {
	struct serial_settings port;
	int transport;
	char *interface;
	int bitrate;
	bool listen_only;
	int timeout_ms;
	int batch_ms;
	int backoff_min_ms, backoff_max_ms;
};

#define CAN_COMMON_KEYS                                                                            \
	{ .name = "name", .kind = CONF_ANY }, { .name = "type", .kind = CONF_ANY },                \
		{ .name = "transport",                                                             \
		  .kind = CONF_ENUM,                                                               \
		  .required = true,                                                                \
		  .offset = offsetof(struct can_conf, transport),                                  \
		  .choices = transport_names,                                                      \
		  .expect = "a CAN transport" },                                                   \
		{ .name = "listen_only",                                                           \
		  .kind = CONF_BOOL,                                                               \
		  .offset = offsetof(struct can_conf, listen_only) },                              \
		CONF_INT_KEY("batch_ms", struct can_conf, batch_ms, 0, 10000, false,               \
			     "a time in ms, 0 to send after every read"),                          \
		CONF_INT_KEY("timeout_ms", struct can_conf, timeout_ms, 0, 86400000, false,        \
			     "a timeout in ms, 0 for none"),                                       \
		CONF_INT_KEY("backoff_min_ms", struct can_conf, backoff_min_ms, 10, 3600000,       \
			     false, "a delay in ms"),                                              \
		CONF_INT_KEY("backoff_max_ms", struct can_conf, backoff_max_ms, 10, 3600000,       \
			     false, "a delay in ms"),                                              \
	{                                                                                          \
		.name = "points", .kind = CONF_ARRAY, .required = true,                            \
		.expect = "an array of points"                                                     \
	}

static const struct conf_key slcan_keys[] = {
	SERIAL_CONF_KEYS(struct can_conf, port, true),
	CONF_INT_KEY("bitrate", struct can_conf, bitrate, 10000, 1000000, false,
		     "a CAN bitrate in bit/s"),
	CAN_COMMON_KEYS,
	{ .name = NULL },
};

static const struct conf_key socketcan_keys[] = {
	{ .name = "interface",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct can_conf, interface),
	  .expect = "a network interface name, e.g. can0" },
	CAN_COMMON_KEYS,
	{ .name = NULL },
};

struct cpoint_conf {
	char *name, *unit;
	int start_bit, length, order, fl, mux;
	bool is_signed, multiplexor, extended, extended_set;
	double scale, offset, min, max;
};

static const struct conf_key point_keys[] = {
	{ .name = "name",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct cpoint_conf, name) },
	{ .name = "id", .kind = CONF_ANY },
	{ .name = "extended", .kind = CONF_BOOL, .offset = offsetof(struct cpoint_conf, extended) },
	{ .name = "j1939", .kind = CONF_OBJECT, .expect = "an object" },
	CONF_INT_KEY("start_bit", struct cpoint_conf, start_bit, 0, 63, true, "a bit, 0 to 63"),
	CONF_INT_KEY("length", struct cpoint_conf, length, 1, 64, true,
		     "a length in bits, 1 to 64"),
	{ .name = "byte_order",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct cpoint_conf, order),
	  .choices = sig_order_names,
	  .expect = "a byte order" },
	{ .name = "signed", .kind = CONF_BOOL, .offset = offsetof(struct cpoint_conf, is_signed) },
	{ .name = "float",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct cpoint_conf, fl),
	  .choices = float_names,
	  .expect = "a float type" },
	{ .name = "scale", .kind = CONF_DOUBLE, .offset = offsetof(struct cpoint_conf, scale) },
	{ .name = "offset", .kind = CONF_DOUBLE, .offset = offsetof(struct cpoint_conf, offset) },
	/* DBC's physical range: kept for the integrator's reference; the policy's ranges act. */
	{ .name = "min", .kind = CONF_DOUBLE, .offset = offsetof(struct cpoint_conf, min) },
	{ .name = "max", .kind = CONF_DOUBLE, .offset = offsetof(struct cpoint_conf, max) },
	{ .name = "unit",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct cpoint_conf, unit),
	  .expect = "an engineering unit" },
	{ .name = "multiplexor",
	  .kind = CONF_BOOL,
	  .offset = offsetof(struct cpoint_conf, multiplexor) },
	CONF_INT_KEY("mux", struct cpoint_conf, mux, 0, 0x7fffffff, false, "a multiplexor value"),
	{ .name = NULL },
};

struct j1939_conf {
	int pgn, source;
};

static const struct conf_key j1939_keys[] = {
	CONF_INT_KEY("pgn", struct j1939_conf, pgn, 0, 0x3FFFF, true, "a PGN, 0 to 262143"),
	CONF_INT_KEY("source", struct j1939_conf, source, 0, 255, false,
		     "a source address, 0 to 255"),
	{ .name = NULL },
};

/*
 * Match keys, one number per frame layout: bit 40 marks a J1939 key, whose
 * bits 8..25 hold the PGN and bits 0..8 the source (J1939_ANY for any);
 * otherwise bit 32 marks an extended identifier and bits 0..28 hold it.
 */
static uint64_t key_id(uint32_t id, bool extended)
{
	return (uint64_t)id | (extended ? 1ull << 32 : 0);
}

static uint64_t key_j1939(uint32_t pgn, unsigned source)
{
	return 1ull << 40 | (uint64_t)pgn << 9 | source;
}

/* Reads "id": a number, or a string in hex ("0x123") or decimal. */
static int read_id(struct conf *c, const char *path, const cJSON *v, uint32_t *id)
{
	char sub[256];
	char *end = NULL;
	double d = -1;

	conf_path_key(sub, sizeof(sub), path, "id");
	if (cJSON_IsNumber(v))
		d = v->valuedouble;
	else if (cJSON_IsString(v) && v->valuestring[0] != '\0')
		d = (double)strtoull(v->valuestring, &end, 0);
	if (d < 0 || d > CAN_EFF_MAX || d != (double)(uint32_t)d || (end != NULL && *end != '\0')) {
		conf_error(c, sub,
			   "expected a CAN identifier, 0 to 0x1FFFFFFF (a number or \"0x...\")");
		return 1;
	}
	*id = (uint32_t)d;
	return 0;
}

static int message_index(struct can_backend *b, uint64_t key)
{
	struct can_message *grown;

	for (size_t i = 0; i < b->nmsgs; i++) {
		if (b->msgs[i].key == key)
			return (int)i;
	}
	grown = realloc(b->msgs, (b->nmsgs + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	b->msgs = grown;
	b->msgs[b->nmsgs] = (struct can_message){ .key = key, .mux_point = -1 };
	return (int)b->nmsgs++;
}

/* The match key of a point: "id" (+ "extended") or "j1939". */
static int read_match(struct conf *c, const cJSON *obj, const char *path,
		      const struct cpoint_conf *pc, uint64_t *key)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "j1939");
	char sub[256];
	uint32_t v;

	if ((id == NULL) == (j == NULL)) {
		conf_error(c, path, "%s",
			   id == NULL ? "missing \"id\" (or \"j1939\")"
				      : "\"id\" and \"j1939\" both given; use one");
		return 1;
	}
	if (j != NULL) {
		struct j1939_conf jc = { .source = -1 };

		if (conf_read_object(c, j, conf_path_key(sub, sizeof(sub), path, "j1939"),
				     j1939_keys, &jc) != 0)
			return 1;
		*key = key_j1939((uint32_t)jc.pgn, jc.source < 0 ? J1939_ANY : (unsigned)jc.source);
		return 0;
	}
	if (read_id(c, path, id, &v) != 0)
		return 1;
	if (pc->extended_set && !pc->extended && v > CAN_SFF_MAX) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "id"),
			   "0x%X does not fit 11 bits (set \"extended\": true)", (unsigned)v);
		return 1;
	}
	*key = key_id(v, pc->extended_set ? pc->extended : v > CAN_SFF_MAX);
	return 0;
}

static int check_signal(struct conf *c, const char *path, const struct cpoint_conf *pc)
{
	struct can_signal s = { .start_bit = (uint16_t)pc->start_bit,
				.length = (uint16_t)pc->length,
				.big_endian = pc->order == 1 };
	char sub[256];

	if (!can_signal_fits(&s, CAN_MAX_DLEN)) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "start_bit"),
			   "a %s signal of %d bits at bit %d does not fit 8 bytes",
			   sig_order_names[pc->order], pc->length, pc->start_bit);
		return 1;
	}
	if (pc->fl != 0 && pc->length != (pc->fl == 1 ? 32 : 64)) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "length"),
			   "a %s signal is %d bits long", float_names[pc->fl],
			   pc->fl == 1 ? 32 : 64);
		return 1;
	}
	if (pc->scale == 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "scale"),
			   "0 would erase every value (expected a non-zero number)");
		return 1;
	}
	if (pc->multiplexor && pc->mux >= 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "mux"),
			   "a multiplexor cannot itself be multiplexed");
		return 1;
	}
	return 0;
}

static enum value_type point_type(const struct cpoint_conf *pc)
{
	if (pc->fl != 0)
		return pc->fl == 1 ? VALUE_F32 : VALUE_F64;
	if (pc->length == 1 && pc->scale == 1 && pc->offset == 0)
		return VALUE_BOOL;
	return pc->is_signed ? VALUE_I64 : VALUE_U64;
}

static int add_point(struct adapter *a, struct can_backend *b, struct conf *c, const char *path,
		     struct cpoint_conf *pc, uint64_t key)
{
	struct can_point *grown = realloc(b->cpoints, (a->npoints + 1) * sizeof(*grown));
	int m = grown == NULL ? -1 : message_index(b, key);
	struct point *p;
	size_t *idx;

	if (grown != NULL)
		b->cpoints = grown;
	p = m < 0 ? NULL : adapter_add_point(a, pc->name);
	idx = p == NULL ? NULL
			: realloc(b->msgs[m].points, (b->msgs[m].npoints + 1) * sizeof(*idx));
	if (idx == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	b->msgs[m].points = idx;
	idx[b->msgs[m].npoints++] = a->npoints - 1;
	b->cpoints[a->npoints - 1] = (struct can_point){
		.sig = { .start_bit = (uint16_t)pc->start_bit,
			 .length = (uint16_t)pc->length,
			 .big_endian = pc->order == 1,
			 .is_signed = pc->is_signed },
		.msg = m,
		.mux = pc->mux,
		.fl = pc->fl,
		.is_mux = pc->multiplexor,
	};
	p->type = point_type(pc);
	p->scale = pc->scale;
	p->offset = pc->offset;
	if (pc->unit != NULL) {
		free(p->unit);
		p->unit = pc->unit;
		pc->unit = NULL;
	}
	return 0;
}

static int read_point(struct adapter *a, struct can_backend *b, struct conf *c, const cJSON *obj,
		      const char *path)
{
	struct cpoint_conf pc = { .scale = 1.0, .mux = -1 };
	uint64_t key = 0;
	int errors;

	pc.extended_set = cJSON_GetObjectItemCaseSensitive(obj, "extended") != NULL;
	errors = conf_read_object(c, obj, path, point_keys, &pc);
	if (errors == 0)
		errors += adapter_check_point_name(a, c, path, pc.name);
	if (errors == 0)
		errors += read_match(c, obj, path, &pc, &key);
	if (errors == 0)
		errors += check_signal(c, path, &pc);
	if (errors == 0)
		errors += add_point(a, b, c, path, &pc, key);
	free(pc.name);
	free(pc.unit);
	return errors;
}

static void describe_key(uint64_t key, char *buf, size_t cap)
{
	if (key & 1ull << 40)
		snprintf(buf, cap, "J1939 PGN %u", (unsigned)((key >> 9) & 0x3FFFF));
	else
		snprintf(buf, cap, "frame 0x%X", (unsigned)(key & CAN_EFF_MAX));
}

/* Per message: at most one multiplexor, multiplexed signals need one, and the bytes needed. */
static int check_messages(struct adapter *a, struct can_backend *b, struct conf *c,
			  const char *path)
{
	int errors = 0;
	char what[48];

	for (size_t m = 0; m < b->nmsgs; m++) {
		struct can_message *msg = &b->msgs[m];
		bool muxed = false;

		describe_key(msg->key, what, sizeof(what));
		for (size_t i = 0; i < msg->npoints; i++) {
			const struct can_point *cp = &b->cpoints[msg->points[i]];

			for (uint8_t d = 1; d <= CAN_MAX_DLEN; d++) {
				if (can_signal_fits(&cp->sig, d)) {
					if (d > msg->need_dlc)
						msg->need_dlc = d;
					break;
				}
			}
			muxed |= cp->mux >= 0;
			if (!cp->is_mux)
				continue;
			if (msg->mux_point >= 0) {
				conf_error(c, path, "%s has two multiplexors: %s and %s", what,
					   a->points[msg->mux_point].name,
					   a->points[msg->points[i]].name);
				errors++;
			}
			msg->mux_point = (int)msg->points[i];
		}
		if (muxed && msg->mux_point < 0) {
			conf_error(c, path,
				   "%s has signals with \"mux\" but no signal with "
				   "\"multiplexor\": true",
				   what);
			errors++;
		}
	}
	return errors;
}

static int compare_messages(const void *x, const void *y)
{
	const struct can_message *a = x, *b = y;

	return a->key < b->key ? -1 : a->key > b->key;
}

static int read_points(struct adapter *a, struct can_backend *b, struct conf *c,
		       const cJSON *points, const char *path)
{
	char sub[256];
	int errors = 0;
	size_t i = 0;
	const cJSON *p;

	cJSON_ArrayForEach (p, points) {
		errors += read_point(a, b, c, p, conf_path_index(sub, sizeof(sub), path, i++));
	}
	if (i == 0) {
		conf_error(c, path, "empty (an adapter needs at least one point)");
		return errors + 1;
	}
	if (errors == 0)
		errors += check_messages(a, b, c, path);
	if (errors != 0)
		return errors;
	/* Sort the messages and re-point each signal at its message's new place. */
	qsort(b->msgs, b->nmsgs, sizeof(*b->msgs), compare_messages);
	for (size_t m = 0; m < b->nmsgs; m++) {
		for (size_t k = 0; k < b->msgs[m].npoints; k++)
			b->cpoints[b->msgs[m].points[k]].msg = (int)m;
	}
	return 0;
}

static int can_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path)
{
	const cJSON *obj = json_obj;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "transport");
	struct can_conf cc = { .port = SERIAL_DEFAULTS,
			       .bitrate = 500000,
			       .timeout_ms = 5000,
			       .batch_ms = 100,
			       .backoff_min_ms = 500,
			       .backoff_max_ms = 30000 };
	struct can_backend *b = calloc(1, sizeof(*b));
	bool socketcan = cJSON_IsString(t) && strcmp(t->valuestring, "socketcan") == 0;
	char sub[256], cmd[8];
	int errors;

	if (b == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	a->backend_data = b;
	b->sock = -1;
	errors = conf_read_object(c, obj, path, socketcan ? socketcan_keys : slcan_keys, &cc);
	b->transport = cc.transport;
	b->link.set = cc.port;
	b->link.retry.backoff_min_ms = b->sock_retry.backoff_min_ms = cc.backoff_min_ms;
	b->link.retry.backoff_max_ms = b->sock_retry.backoff_max_ms = cc.backoff_max_ms;
	b->interface = cc.interface;
	b->bitrate = cc.bitrate;
	b->listen_only = cc.listen_only;
	b->timeout_ms = cc.timeout_ms;
	b->batch_ms = cc.batch_ms;
	if (errors == 0 && !socketcan && slcan_bitrate_cmd(cc.bitrate, cmd, sizeof(cmd)) < 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "bitrate"),
			   "%d has no SLCAN code (expected 10000, 20000, 50000, 100000, 125000, "
			   "250000, 500000, 800000 or 1000000)",
			   cc.bitrate);
		errors++;
	}
	if (errors == 0 && socketcan && strlen(cc.interface) >= IFNAMSIZ) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "interface"),
			   "\"%s\" is longer than %d characters", cc.interface, IFNAMSIZ - 1);
		errors++;
	}
	if (errors != 0)
		return errors;
	errors = read_points(a, b, c, cJSON_GetObjectItemCaseSensitive(obj, "points"),
			     conf_path_key(sub, sizeof(sub), path, "points"));
	if (errors != 0)
		return errors;
	b->batch = calloc(BATCH_MAX, sizeof(*b->batch));
	if (b->batch == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	b->a = a;
	return 0;
}

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
	const struct can_message *msg = find_message(b, key_id(m->id, m->extended));
	struct j1939_id j;
	size_t n = 0;

	if (msg != NULL)
		found[n++] = msg;
	if (!m->extended)
		return n;
	j1939_decode(m->id, &j);
	if ((msg = find_message(b, key_j1939(j.pgn, j.source))) != NULL)
		found[n++] = msg;
	if ((msg = find_message(b, key_j1939(j.pgn, J1939_ANY))) != NULL)
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
		if (b->nbatch == BATCH_MAX)
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
	if (!link_retry_due(&b->sock_retry, now))
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
		b->link.retry.retry_at_ms =
			now + gd_backoff_ms(b->link.retry.backoff_min_ms,
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
		if (b->nbatch == BATCH_MAX)
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

#define LD(x) ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

static size_t can_stats_json(const struct adapter *a, char *buf, size_t cap)
{
	struct can_backend *b = a->backend_data;
	int n = snprintf(buf, cap,
			 ",\"frames\":%llu,\"bytes\":%llu,\"errors\":{\"unmapped\":%llu,"
			 "\"short\":%llu,\"malformed\":%llu,\"adapter\":%llu,\"rtr\":%llu}",
			 LD(b->frames), LD(b->bytes), LD(b->unmapped), LD(b->short_frames),
			 LD(b->malformed), LD(b->adapter_errors), LD(b->rtr));

	return n > 0 ? (size_t)n : 0;
}

const struct adapter_ops adapter_can_ops = {
	.type = "can",
	.configure = can_configure,
	.open = can_open,
	.poll = can_poll,
	.close = can_close,
	.destroy = can_destroy,
	.stats_json = can_stats_json,
};
