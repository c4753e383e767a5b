/* can_config.c: the CAN adapter's config: SLCAN or SocketCAN link, and points as DBC-style signals
 * matched by identifier or J1939 PGN. */
#include <cjson/cJSON.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "can.h"

static const char *const transport_names[] = { "slcan", "socketcan", NULL };
static const char *const sig_order_names[] = { "little_endian", "big_endian", NULL };
static const char *const float_names[] = { "none", "f32", "f64", NULL };

struct can_conf {
	struct serial_settings port;
	int transport;
	char *interface;
	int bitrate;
	bool listen_only;
	int timeout_ms;
	int batch_ms;
	struct link_retry retry;
};

#define CAN_COMMON_KEYS                                                                            \
	{ .name = "transport",                                                                     \
	  .kind = CONF_ENUM,                                                                       \
	  .required = true,                                                                        \
	  .offset = offsetof(struct can_conf, transport),                                          \
	  .choices = transport_names,                                                              \
	  .expect = "a CAN transport" },                                                           \
		{ .name = "listen_only",                                                           \
		  .kind = CONF_BOOL,                                                               \
		  .offset = offsetof(struct can_conf, listen_only) },                              \
		CONF_INT_KEY("batch_ms", struct can_conf, batch_ms, 0, 10000, false,               \
			     "a time in ms, 0 to send after every read"),                          \
		CONF_INT_KEY("timeout_ms", struct can_conf, timeout_ms, 0, 86400000, false,        \
			     "a timeout in ms, 0 for none"),                                       \
		ADAPTER_CONF_KEYS(struct can_conf, retry)

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
	struct point_conf point;
	int start_bit, length, order, fl, mux;
	bool is_signed, multiplexor, extended, extended_set;
	double min, max;
};

static const struct conf_key point_keys[] = {
	ADAPTER_POINT_KEYS(struct cpoint_conf, point),
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
	/* DBC's physical range: kept for the integrator's reference; the policy's ranges act. */
	{ .name = "min", .kind = CONF_DOUBLE, .offset = offsetof(struct cpoint_conf, min) },
	{ .name = "max", .kind = CONF_DOUBLE, .offset = offsetof(struct cpoint_conf, max) },
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
		*key = can_key_j1939((uint32_t)jc.pgn,
				     jc.source < 0 ? J1939_ANY : (unsigned)jc.source);
		return 0;
	}
	if (read_id(c, path, id, &v) != 0)
		return 1;
	if (pc->extended_set && !pc->extended && v > CAN_SFF_MAX) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "id"),
			   "0x%X does not fit 11 bits (set \"extended\": true)", (unsigned)v);
		return 1;
	}
	*key = can_key_id(v, pc->extended_set ? pc->extended : v > CAN_SFF_MAX);
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
	if (pc->length == 1 && pc->point.scale == 1 && pc->point.offset == 0)
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
	p = m < 0 ? NULL : adapter_add_point(a, &pc->point, point_type(pc));
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
	return 0;
}

static int read_point(struct adapter *a, struct conf *c, const void *obj, const char *path)
{
	struct can_backend *b = a->backend_data;
	struct cpoint_conf pc = { .point.scale = 1.0, .mux = -1 };
	uint64_t key = 0;
	int errors;

	pc.extended_set = cJSON_GetObjectItemCaseSensitive(obj, "extended") != NULL;
	errors = conf_read_object(c, obj, path, point_keys, &pc);
	if (errors == 0)
		errors += adapter_check_point(a, c, path, &pc.point);
	if (errors == 0)
		errors += read_match(c, obj, path, &pc, &key);
	if (errors == 0)
		errors += check_signal(c, path, &pc);
	if (errors == 0)
		errors += add_point(a, b, c, path, &pc, key);
	free(pc.point.name);
	free(pc.point.unit);
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

/* Sorts the messages and re-points each signal at its message's new place. */
static void sort_messages(struct can_backend *b)
{
	qsort(b->msgs, b->nmsgs, sizeof(*b->msgs), compare_messages);
	for (size_t m = 0; m < b->nmsgs; m++) {
		for (size_t k = 0; k < b->msgs[m].npoints; k++)
			b->cpoints[b->msgs[m].points[k]].msg = (int)m;
	}
}

int can_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path)
{
	const cJSON *obj = json_obj;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "transport");
	struct can_conf cc = { .port = SERIAL_DEFAULTS,
			       .bitrate = 500000,
			       .timeout_ms = 5000,
			       .batch_ms = 100,
			       .retry = { .backoff_min_ms = 500, .backoff_max_ms = 30000 } };
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
	errors += adapter_check_backoff(c, path, &cc.retry);
	b->transport = cc.transport;
	b->link.set = cc.port;
	b->link.retry = b->sock_retry = cc.retry;
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
	errors = adapter_read_points(a, c, obj, path, read_point);
	if (errors == 0)
		errors = check_messages(a, b, c, conf_path_key(sub, sizeof(sub), path, "points"));
	if (errors != 0)
		return errors;
	sort_messages(b);
	b->batch = calloc(CAN_BATCH_MAX, sizeof(*b->batch));
	if (b->batch == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	b->a = a;
	return 0;
}
