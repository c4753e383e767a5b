/* modbus.c: the Modbus TCP and RTU adapter on libmodbus: map, poll groups, backoff, reconnect. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <modbus.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "modbus.h"

#define SUBSYS "modbus"

enum mb_parity { PARITY_NONE, PARITY_EVEN, PARITY_ODD };
static const char *const parity_names[] = { "none", "even", "odd", NULL };

struct mb_unit {
	uint8_t id;
	int timeout_ms;
	int failures;	     /* consecutive failed transactions */
	int64_t retry_at_ms; /* monotonic; while in the future, the unit is skipped */
	uint64_t polls, polls_ok, timeouts, exceptions, bad_frames;
	int64_t last_ok_ms; /* UTC */
};

struct mb_group {
	char *name;
	int interval_ms;
	int64_t next_due_ms;   /* monotonic */
	size_t first, npoints; /* range in the sorted point array */
	struct mb_request *requests;
	size_t nrequests;
	uint64_t overruns; /* cycles that started more than one interval late */
};

struct mb_backend {
	bool rtu;
	/* TCP */
	char *host;
	int port;
	/* RTU */
	char *device;
	int baud;
	int parity;
	int data_bits;
	int stop_bits;
	int frame_gap_us; /* silence between frames on the bus; 0: from the baud rate */
	/* common */
	int timeout_ms;
	int backoff_min_ms;
	int backoff_max_ms;
	int max_gap;
	int max_registers;
	int max_bits;
	int poll_interval_ms;
	int default_unit_id;

	struct mb_unit *units;
	size_t nunits;
	struct mb_group *groups;
	size_t ngroups;
	struct mb_point *mpoints; /* sorted by mb_point_compare */
	size_t nmpoints;

	modbus_t *ctx;
	bool connected;
	bool was_connected; /* a later successful open counts as a reconnect */
	int link_failures;
	int64_t reconnect_at_ms;
	int64_t last_frame_end_us; /* monotonic us; RTU inter-frame gap */
	pthread_mutex_t lock;	   /* one transaction at a time on the link */

	struct sample *samples; /* one group's batch */
	uint16_t regs[MB_MAX_READ_REGISTERS];
	uint8_t bits[MB_MAX_READ_BITS];
};

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- configuration ---- */

struct mb_unit_conf {
	long long id;
	int timeout_ms;
};

struct mb_group_conf {
	char *name;
	int interval_ms;
};

struct mb_point_conf {
	char *name;
	int unit_id;
	int table;
	int address;
	int type;
	int order;
	int length;
	double scale;
	double offset;
	char *unit;
	char *group;
	bool writable;
};

static const struct conf_key unit_keys[] = {
	CONF_INT_KEY("id", struct mb_unit_conf, id, 0, 255, true, "a unit id"),
	CONF_INT_KEY("timeout_ms", struct mb_unit_conf, timeout_ms, 10, 60000, false,
		     "a timeout in ms"),
	{ .name = NULL },
};

static const struct conf_key group_keys[] = {
	{ .name = "name",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct mb_group_conf, name) },
	CONF_INT_KEY("interval_ms", struct mb_group_conf, interval_ms, 0, 86400000, true,
		     "an interval in ms"),
	{ .name = NULL },
};

static const char *const table_choices[] = { "coil", "discrete", "holding", "input", NULL };

static const struct conf_key point_keys[] = {
	{ .name = "name",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct mb_point_conf, name) },
	CONF_INT_KEY("unit_id", struct mb_point_conf, unit_id, 0, 255, false, "a unit id"),
	{ .name = "table",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct mb_point_conf, table),
	  .choices = table_choices,
	  .expect = "table" },
	CONF_INT_KEY("address", struct mb_point_conf, address, 0, 65535, true,
		     "a register address"),
	{ .name = "type",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct mb_point_conf, type),
	  .choices = value_type_names,
	  .expect = "type" },
	{ .name = "order",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct mb_point_conf, order),
	  .choices = byte_order_names,
	  .expect = "order" },
	CONF_INT_KEY("length", struct mb_point_conf, length, 1, 2 * MB_MAX_READ_REGISTERS, false,
		     "a string length in bytes"),
	{ .name = "scale", .kind = CONF_DOUBLE, .offset = offsetof(struct mb_point_conf, scale) },
	{ .name = "offset", .kind = CONF_DOUBLE, .offset = offsetof(struct mb_point_conf, offset) },
	{ .name = "unit",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct mb_point_conf, unit),
	  .expect = "an engineering unit" },
	{ .name = "group",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct mb_point_conf, group),
	  .expect = "a poll group name" },
	{ .name = "writable",
	  .kind = CONF_BOOL,
	  .offset = offsetof(struct mb_point_conf, writable) },
	{ .name = NULL },
};

/* Keys both transports take, after the link keys of each. */
#define MB_COMMON_KEYS                                                                             \
	{ .name = "name", .kind = CONF_ANY }, { .name = "type", .kind = CONF_ANY },                \
		CONF_INT_KEY("timeout_ms", struct mb_backend, timeout_ms, 10, 60000, false,        \
			     "a timeout in ms"),                                                   \
		CONF_INT_KEY("backoff_min_ms", struct mb_backend, backoff_min_ms, 10, 3600000,     \
			     false, "a delay in ms"),                                              \
		CONF_INT_KEY("backoff_max_ms", struct mb_backend, backoff_max_ms, 10, 3600000,     \
			     false, "a delay in ms"),                                              \
		CONF_INT_KEY("max_gap", struct mb_backend, max_gap, 0, 124, false,                 \
			     "a register count"),                                                  \
		CONF_INT_KEY("max_registers", struct mb_backend, max_registers, 1,                 \
			     MB_MAX_READ_REGISTERS, false, "registers per request"),               \
		CONF_INT_KEY("max_bits", struct mb_backend, max_bits, 1, MB_MAX_READ_BITS, false,  \
			     "bits per request"),                                                  \
		CONF_INT_KEY("poll_interval_ms", struct mb_backend, poll_interval_ms, 0, 86400000, \
			     false, "an interval in ms"),                                          \
		CONF_INT_KEY("unit_id", struct mb_backend, default_unit_id, 0, 255, false,         \
			     "a unit id"),                                                         \
		{ .name = "units", .kind = CONF_ARRAY },                                           \
		{ .name = "poll_groups", .kind = CONF_ARRAY },                                     \
	{                                                                                          \
		.name = "points", .kind = CONF_ARRAY, .required = true,                            \
		.expect = "an array of points"                                                     \
	}

static const struct conf_key tcp_keys[] = {
	{ .name = "host",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct mb_backend, host),
	  .expect = "a host name or address" },
	CONF_INT_KEY("port", struct mb_backend, port, 1, 65535, false, "a TCP port"),
	MB_COMMON_KEYS,
	{ .name = NULL },
};

static const struct conf_key rtu_keys[] = {
	{ .name = "device",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct mb_backend, device),
	  .expect = "a serial device path" },
	CONF_INT_KEY("baud", struct mb_backend, baud, 50, 4000000, false, "a baud rate"),
	{ .name = "parity",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct mb_backend, parity),
	  .choices = parity_names,
	  .expect = "parity" },
	CONF_INT_KEY("data_bits", struct mb_backend, data_bits, 7, 8, false, "7 or 8"),
	CONF_INT_KEY("stop_bits", struct mb_backend, stop_bits, 1, 2, false, "1 or 2"),
	CONF_INT_KEY("frame_gap_us", struct mb_backend, frame_gap_us, 0, 1000000, false,
		     "a gap in microseconds"),
	MB_COMMON_KEYS,
	{ .name = NULL },
};

static struct mb_unit *unit_find(struct mb_backend *b, uint8_t id)
{
	for (size_t i = 0; i < b->nunits; i++) {
		if (b->units[i].id == id)
			return &b->units[i];
	}
	return NULL;
}

static struct mb_unit *unit_add(struct mb_backend *b, uint8_t id, int timeout_ms)
{
	struct mb_unit *grown = realloc(b->units, (b->nunits + 1) * sizeof(*grown));

	if (grown == NULL)
		return NULL;
	b->units = grown;
	b->units[b->nunits] = (struct mb_unit){ .id = id, .timeout_ms = timeout_ms };
	return &b->units[b->nunits++];
}

static int read_units(struct mb_backend *b, struct conf *c, const cJSON *arr, const char *path)
{
	const cJSON *item;
	char sub[256];
	size_t i = 0;
	int errors = 0;

	cJSON_ArrayForEach (item, arr) {
		struct mb_unit_conf u = { .id = -1, .timeout_ms = b->timeout_ms };

		conf_path_index(sub, sizeof(sub), path, i++);
		if (conf_read_object(c, item, sub, unit_keys, &u) != 0) {
			errors++;
			continue;
		}
		if (unit_find(b, (uint8_t)u.id) != NULL) {
			conf_error(c, sub, "unit %lld is listed twice", u.id);
			errors++;
			continue;
		}
		if (unit_add(b, (uint8_t)u.id, u.timeout_ms) == NULL) {
			conf_error(c, sub, "out of memory");
			errors++;
		}
	}
	return errors;
}

static int read_groups(struct mb_backend *b, struct conf *c, const cJSON *arr, const char *path)
{
	const cJSON *item;
	char sub[256];
	size_t i = 0;
	int errors = 0;

	cJSON_ArrayForEach (item, arr) {
		struct mb_group_conf g = { 0 };
		struct mb_group *grown;

		conf_path_index(sub, sizeof(sub), path, i++);
		if (conf_read_object(c, item, sub, group_keys, &g) != 0) {
			free(g.name);
			errors++;
			continue;
		}
		for (size_t j = 0; j < b->ngroups; j++) {
			if (strcmp(b->groups[j].name, g.name) == 0) {
				conf_error(c, sub, "poll group \"%s\" is defined twice", g.name);
				free(g.name);
				g.name = NULL;
				errors++;
				break;
			}
		}
		if (g.name == NULL)
			continue;
		grown = realloc(b->groups, (b->ngroups + 1) * sizeof(*grown));
		if (grown == NULL) {
			free(g.name);
			conf_error(c, sub, "out of memory");
			return errors + 1;
		}
		b->groups = grown;
		b->groups[b->ngroups++] =
			(struct mb_group){ .name = g.name, .interval_ms = g.interval_ms };
	}
	return errors;
}

/* The group a point without "group" belongs to, made on first use. */
static long default_group(struct mb_backend *b)
{
	struct mb_group *grown;

	for (size_t j = 0; j < b->ngroups; j++) {
		if (strcmp(b->groups[j].name, "default") == 0)
			return (long)j;
	}
	grown = realloc(b->groups, (b->ngroups + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	b->groups = grown;
	b->groups[b->ngroups] =
		(struct mb_group){ .name = strdup("default"), .interval_ms = b->poll_interval_ms };
	if (b->groups[b->ngroups].name == NULL)
		return -1;
	return (long)b->ngroups++;
}

static int read_point(struct adapter *a, struct mb_backend *b, struct conf *c, const cJSON *obj,
		      const char *path, bool implicit_units)
{
	struct mb_point_conf pc = {
		.unit_id = b->default_unit_id,
		.table = MB_HOLDING,
		.type = VALUE_U16,
		.order = ORDER_ABCD,
		.length = 0,
		.scale = 1.0,
	};
	struct mb_point *grown;
	struct mb_point mp;
	struct mb_unit *unit;
	struct point *p;
	char sub[256];
	long group = -1;
	int errors;

	errors = conf_read_object(c, obj, path, point_keys, &pc);
	if (errors != 0)
		goto out;
	errors += adapter_check_point_name(a, c, path, pc.name);
	if ((pc.table == MB_COIL || pc.table == MB_DISCRETE) && pc.type != VALUE_BOOL) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "type"),
			   "%s points hold one bit (expected type bool, got %s)",
			   mb_table_names[pc.table], value_type_names[pc.type]);
		errors++;
	}
	if (pc.type == VALUE_STRING && pc.length == 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "length"),
			   "missing (expected the string's length in bytes, 1 to %d)",
			   2 * MB_MAX_READ_REGISTERS);
		errors++;
	} else if (pc.type != VALUE_STRING && pc.length != 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "length"),
			   "only string points have a length (type is %s)",
			   value_type_names[pc.type]);
		errors++;
	}
	if (pc.scale == 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "scale"),
			   "0 would erase every value (expected a non-zero number)");
		errors++;
	}
	if (pc.writable && (pc.table == MB_DISCRETE || pc.table == MB_INPUT)) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "writable"),
			   "%s points are read-only in Modbus", mb_table_names[pc.table]);
		errors++;
	}
	mp = (struct mb_point){
		.unit_id = (uint8_t)pc.unit_id,
		.table = (enum mb_table)pc.table,
		.address = (uint16_t)pc.address,
		.type = (enum value_type)pc.type,
		.order = (enum byte_order)pc.order,
		.length = (uint16_t)pc.length,
	};
	mp.width = (pc.table == MB_COIL || pc.table == MB_DISCRETE)
			   ? 1
			   : (uint16_t)codec_registers(mp.type, mp.length);
	if ((long)pc.address + mp.width > 65536) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "address"),
			   "%d + %u registers runs past the last address 65535", pc.address,
			   mp.width);
		errors++;
	}
	if (pc.group != NULL) {
		for (size_t j = 0; j < b->ngroups; j++) {
			if (strcmp(b->groups[j].name, pc.group) == 0)
				group = (long)j;
		}
		if (group < 0) {
			conf_error(c, conf_path_key(sub, sizeof(sub), path, "group"),
				   "unknown poll group \"%s\" (define it in poll_groups)",
				   pc.group);
			errors++;
		}
	}
	if (b->rtu && (pc.unit_id < 1 || pc.unit_id > 247)) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "unit_id"),
			   "unit %d cannot answer on a serial line (expected 1 to 247; 0 is "
			   "broadcast)",
			   pc.unit_id);
		errors++;
	}
	unit = unit_find(b, mp.unit_id);
	if (unit == NULL && !implicit_units) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "unit_id"),
			   "unit %d is not listed in units", pc.unit_id);
		errors++;
	}
	if (errors != 0)
		goto out;
	if (unit == NULL)
		unit = unit_add(b, mp.unit_id, b->timeout_ms);
	if (group < 0)
		group = default_group(b);
	p = unit == NULL || group < 0 ? NULL : adapter_add_point(a, pc.name);
	grown = p == NULL ? NULL : realloc(b->mpoints, (b->nmpoints + 1) * sizeof(*grown));
	if (grown == NULL) {
		conf_error(c, path, "out of memory");
		errors++;
		goto out;
	}
	b->mpoints = grown;
	p->type = mp.type;
	p->scale = pc.scale;
	p->offset = pc.offset;
	p->writable = pc.writable;
	if (pc.unit != NULL) {
		free(p->unit);
		p->unit = pc.unit;
		pc.unit = NULL;
	}
	mp.point_index = a->npoints - 1;
	mp.unit_index = (size_t)(unit - b->units);
	mp.group = (size_t)group;
	if (mp.type == VALUE_STRING) {
		mp.strbuf = calloc(1, (size_t)mp.length + 1);
		if (mp.strbuf == NULL) {
			conf_error(c, path, "out of memory");
			errors++;
			goto out;
		}
	}
	b->mpoints[b->nmpoints++] = mp;
out:
	free(pc.name);
	free(pc.unit);
	free(pc.group);
	return errors;
}

/* Sorts the map and plans each group's requests. */
static int plan_groups(struct mb_backend *b, struct conf *c, const char *path)
{
	size_t i = 0;

	qsort(b->mpoints, b->nmpoints, sizeof(*b->mpoints), mb_point_compare);
	for (size_t g = 0; g < b->ngroups; g++) {
		struct mb_group *grp = &b->groups[g];

		grp->first = i;
		while (i < b->nmpoints && b->mpoints[i].group == g)
			i++;
		grp->npoints = i - grp->first;
		if (grp->npoints == 0)
			continue;
		grp->requests = calloc(grp->npoints, sizeof(*grp->requests));
		if (grp->requests == NULL) {
			conf_error(c, path, "out of memory");
			return 1;
		}
		grp->nrequests =
			mb_plan(b->mpoints + grp->first, grp->npoints, (unsigned)b->max_gap,
				(unsigned)b->max_registers, (unsigned)b->max_bits, grp->requests);
		for (size_t r = 0; r < grp->nrequests; r++)
			grp->requests[r].first += grp->first;
	}
	b->samples = calloc(b->nmpoints ? b->nmpoints : 1, sizeof(*b->samples));
	if (b->samples == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	return 0;
}

static int mb_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path,
			bool rtu)
{
	const cJSON *obj = json_obj;
	const cJSON *units, *groups, *points, *item;
	struct mb_backend *b = calloc(1, sizeof(*b));
	char sub[256], isub[256];
	int errors;
	size_t i = 0;

	if (b == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	*b = (struct mb_backend){
		.rtu = rtu,
		.port = 502,
		.baud = 19200,
		.parity = PARITY_NONE,
		.data_bits = 8,
		.stop_bits = 1,
		.timeout_ms = 500,
		.backoff_min_ms = 1000,
		.backoff_max_ms = 60000,
		.max_gap = 0,
		.max_registers = MB_MAX_READ_REGISTERS,
		.max_bits = MB_MAX_READ_BITS,
		.poll_interval_ms = 1000,
		.default_unit_id = 1,
	};
	pthread_mutex_init(&b->lock, NULL);
	a->backend_data = b;
	errors = conf_read_object(c, obj, path, rtu ? rtu_keys : tcp_keys, b);
	if (b->backoff_max_ms < b->backoff_min_ms) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "backoff_max_ms"),
			   "%d is below backoff_min_ms %d", b->backoff_max_ms, b->backoff_min_ms);
		errors++;
	}
	if (!cJSON_IsObject(obj))
		return errors;
	units = cJSON_GetObjectItemCaseSensitive(obj, "units");
	if (cJSON_IsArray(units))
		errors += read_units(b, c, units, conf_path_key(sub, sizeof(sub), path, "units"));
	groups = cJSON_GetObjectItemCaseSensitive(obj, "poll_groups");
	if (cJSON_IsArray(groups))
		errors += read_groups(b, c, groups,
				      conf_path_key(sub, sizeof(sub), path, "poll_groups"));
	points = cJSON_GetObjectItemCaseSensitive(obj, "points");
	if (cJSON_IsArray(points)) {
		conf_path_key(sub, sizeof(sub), path, "points");
		if (cJSON_GetArraySize(points) == 0) {
			conf_error(c, sub, "empty (expected at least one point)");
			errors++;
		}
		cJSON_ArrayForEach (item, points) {
			conf_path_index(isub, sizeof(isub), sub, i++);
			errors += read_point(a, b, c, item, isub, units == NULL);
		}
	}
	if (errors == 0)
		errors += plan_groups(b, c, path);
	return errors;
}

static int mb_configure_tcp(struct adapter *a, struct conf *c, const void *obj, const char *path)
{
	return mb_configure(a, c, obj, path, false);
}

static int mb_configure_rtu(struct adapter *a, struct conf *c, const void *obj, const char *path)
{
	return mb_configure(a, c, obj, path, true);
}

/* ---- the link ---- */

static void mb_close(struct adapter *a)
{
	struct mb_backend *b = a->backend_data;

	if (b->ctx != NULL) {
		modbus_close(b->ctx);
		modbus_free(b->ctx);
		b->ctx = NULL;
	}
	b->connected = false;
	__atomic_store_n(&a->stats.link_up, 0, __ATOMIC_RELAXED);
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
	return mb_rtu_gap_us(b->baud, b->data_bits, b->parity != PARITY_NONE, b->stop_bits);
}

static int mb_open(struct adapter *a)
{
	struct mb_backend *b = a->backend_data;
	static const char parity_chars[] = { 'N', 'E', 'O' };
	int saved;

	if (b->connected)
		return 0;
	if (b->ctx == NULL) {
		char port[16];

		snprintf(port, sizeof(port), "%d", b->port);
		if (b->rtu)
			b->ctx = modbus_new_rtu(b->device, b->baud, parity_chars[b->parity],
						b->data_bits, b->stop_bits);
		else
			b->ctx = modbus_new_tcp_pi(b->host, port);
		if (b->ctx == NULL)
			return GD_ENOMEM;
		/* Protocol recovery: flush stray bytes after an error; never sleep or reconnect
		 * inside libmodbus. */
		modbus_set_error_recovery(b->ctx, MODBUS_ERROR_RECOVERY_PROTOCOL);
	}
	if (modbus_connect(b->ctx) != 0) {
		saved = errno;
		modbus_free(b->ctx);
		b->ctx = NULL;
		errno = saved;
		return GD_EIO;
	}
	b->connected = true;
	b->last_frame_end_us = mono_us();
	__atomic_store_n(&a->stats.link_up, 1, __ATOMIC_RELAXED);
	return 0;
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

/* How a failed libmodbus call is counted; sets *code for exceptions. */
static enum quality classify(int err, int32_t *code)
{
	*code = err;
	if (err == ETIMEDOUT)
		return QUALITY_TIMEOUT;
	if (err > MODBUS_ENOBASE && err <= EMBXGTAR) {
		*code = err - MODBUS_ENOBASE;
		return QUALITY_EXCEPTION;
	}
	if (err >= EMBBADCRC && err <= EMBBADSLAVE)
		return QUALITY_BAD_FRAME;
	return QUALITY_DISCONNECTED;
}

/* One read transaction. Returns the quality of its answer. */
static enum quality do_request(struct adapter *a, struct mb_backend *b, const struct mb_request *r,
			       struct mb_unit *unit, int32_t *code)
{
	int n = -1;
	int err;

	modbus_set_slave(b->ctx, r->unit_id);
	modbus_set_response_timeout(b->ctx, (uint32_t)(unit->timeout_ms / 1000),
				    (uint32_t)(unit->timeout_ms % 1000) * 1000);
	if (b->rtu)
		rtu_wait_gap(b);
	switch (r->table) {
	case MB_COIL:
		n = modbus_read_bits(b->ctx, r->address, r->count, b->bits);
		break;
	case MB_DISCRETE:
		n = modbus_read_input_bits(b->ctx, r->address, r->count, b->bits);
		break;
	case MB_HOLDING:
		n = modbus_read_registers(b->ctx, r->address, r->count, b->regs);
		break;
	case MB_INPUT:
		n = modbus_read_input_registers(b->ctx, r->address, r->count, b->regs);
		break;
	}
	err = errno;
	b->last_frame_end_us = mono_us();
	unit->polls++;
	__atomic_add_fetch(&a->stats.polls, 1, __ATOMIC_RELAXED);
	if (n == r->count) {
		unit->polls_ok++;
		__atomic_add_fetch(&a->stats.polls_ok, 1, __ATOMIC_RELAXED);
		*code = 0;
		return QUALITY_GOOD;
	}
	if (n >= 0)
		err = EMBBADDATA;
	switch (classify(err, code)) {
	case QUALITY_TIMEOUT:
		unit->timeouts++;
		__atomic_add_fetch(&a->stats.timeouts, 1, __ATOMIC_RELAXED);
		return QUALITY_TIMEOUT;
	case QUALITY_EXCEPTION:
		unit->exceptions++;
		__atomic_add_fetch(&a->stats.exceptions, 1, __ATOMIC_RELAXED);
		return QUALITY_EXCEPTION;
	case QUALITY_BAD_FRAME:
		unit->bad_frames++;
		__atomic_add_fetch(&a->stats.bad_frames, 1, __ATOMIC_RELAXED);
		modbus_flush(b->ctx);
		return QUALITY_BAD_FRAME;
	default:
		__atomic_add_fetch(&a->stats.io_errors, 1, __ATOMIC_RELAXED);
		errno = err;
		log_warn(SUBSYS, "%s: link lost", a->name);
		adapter_set_fault(a, "link to %s lost: %s", b->rtu ? b->device : b->host,
				  strerror(err));
		return QUALITY_DISCONNECTED;
	}
}

static void decode_point(struct adapter *a, struct mb_backend *b, const struct mb_request *r,
			 const struct mb_point *mp, struct sample *s)
{
	const struct point *p = &a->points[mp->point_index];
	size_t off = (size_t)(mp->address - r->address);

	if (r->table == MB_COIL || r->table == MB_DISCRETE) {
		s->value = (struct value){ .kind = VALUE_KIND_BOOL, .b = b->bits[off] != 0 };
	} else if (codec_decode_regs(mp->type, mp->order, mp->length, b->regs + off, &s->value,
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

/* Polls one group: every request once, one batch to the sink. */
static void poll_group(struct adapter *a, struct mb_backend *b, struct mb_group *g, int64_t now_ms,
		       struct point_sink *out)
{
	size_t ns = 0;

	for (size_t ri = 0; ri < g->nrequests; ri++) {
		const struct mb_request *r = &g->requests[ri];
		struct mb_unit *unit = &b->units[r->unit_index];
		struct sample *batch = b->samples + ns;
		enum quality q;
		int32_t code = 0;

		if (!b->connected) {
			fill_bad(a, b, r, batch, QUALITY_DISCONNECTED, 0, gd_now_ms());
			ns += r->npoints;
			continue;
		}
		if (unit->retry_at_ms > now_ms) {
			fill_bad(a, b, r, batch, QUALITY_OFFLINE, 0, gd_now_ms());
			ns += r->npoints;
			continue;
		}
		pthread_mutex_lock(&b->lock);
		q = do_request(a, b, r, unit, &code);
		pthread_mutex_unlock(&b->lock);
		if (q == QUALITY_GOOD) {
			int64_t ts = gd_now_ms();

			if (unit->failures > 0)
				log_info(SUBSYS, "%s: unit %u answers again", a->name, unit->id);
			unit->failures = 0;
			unit->retry_at_ms = 0;
			unit->last_ok_ms = ts;
			__atomic_store_n(&a->stats.last_ok_ms, ts, __ATOMIC_RELAXED);
			for (size_t k = 0; k < r->npoints; k++) {
				const struct mb_point *mp = &b->mpoints[r->first + k];

				batch[k] = (struct sample){
					.point_id = a->points[mp->point_index].id,
					.quality = QUALITY_GOOD,
					.ts_ms = ts,
				};
				decode_point(a, b, r, mp, &batch[k]);
			}
		} else {
			fill_bad(a, b, r, batch, q, code, gd_now_ms());
			if (q == QUALITY_DISCONNECTED) {
				mb_close(a);
			} else if (q != QUALITY_EXCEPTION) {
				/* Silence or garbage: back off so this unit cannot starve the bus.
				 */
				unit->failures++;
				unit->retry_at_ms =
					gd_mono_ms() + adapter_backoff_ms(b->backoff_min_ms,
									  b->backoff_max_ms,
									  unit->failures);
				if (unit->failures == 1)
					log_warnx(SUBSYS, "%s: unit %u: %s; retrying with backoff",
						  a->name, unit->id, quality_names[q]);
			}
		}
		ns += r->npoints;
	}
	__atomic_add_fetch(&a->stats.samples, ns, __ATOMIC_RELAXED);
	if (ns > 0)
		out->emit(out, a, b->samples, ns);
}

static int mb_poll(struct adapter *a, int64_t now_ms, struct point_sink *out)
{
	struct mb_backend *b = a->backend_data;
	int64_t next = INT64_MAX;
	int rc = 0;

	if (!b->connected && now_ms >= b->reconnect_at_ms) {
		pthread_mutex_lock(&b->lock);
		rc = mb_open(a);
		pthread_mutex_unlock(&b->lock);
		if (rc == 0) {
			if (b->was_connected)
				__atomic_add_fetch(&a->stats.reconnects, 1, __ATOMIC_RELAXED);
			b->was_connected = true;
			log_info(SUBSYS, "%s: connected to %s", a->name,
				 b->rtu ? b->device : b->host);
			adapter_clear_fault(a);
			b->link_failures = 0;
		} else {
			b->link_failures++;
			b->reconnect_at_ms =
				now_ms + adapter_backoff_ms(b->backoff_min_ms, b->backoff_max_ms,
							    b->link_failures);
			if (adapter_set_fault(a, "cannot open %s: %s", b->rtu ? b->device : b->host,
					      strerror(errno)))
				log_warnx(SUBSYS, "%s: cannot open %s: %s", a->name,
					  b->rtu ? b->device : b->host, strerror(errno));
		}
	}
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
	if (!b->connected && b->reconnect_at_ms < next)
		next = b->reconnect_at_ms;
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

static int mb_write(struct adapter *a, const struct point *p, const struct value *v)
{
	struct mb_backend *b = a->backend_data;
	const struct mb_point *mp = mb_point_of(a, p);
	uint16_t regs[MB_MAX_READ_REGISTERS];
	struct value raw;
	int rc, n = -1;

	if (mp == NULL || !p->writable)
		return GD_EDENIED;
	rc = codec_unscale(v, p->type, p->scale, p->offset, &raw);
	if (rc != 0)
		return rc;
	if (mp->table == MB_HOLDING) {
		rc = codec_encode_regs(mp->type, mp->order, mp->length, &raw, regs);
		if (rc != 0)
			return rc;
	}
	pthread_mutex_lock(&b->lock);
	if (!b->connected) {
		pthread_mutex_unlock(&b->lock);
		return GD_ENOTCONN;
	}
	modbus_set_slave(b->ctx, mp->unit_id);
	if (b->rtu)
		rtu_wait_gap(b);
	if (mp->table == MB_COIL)
		n = modbus_write_bit(b->ctx, mp->address, raw.b ? 1 : 0) == 1 ? 0 : -1;
	else if (mp->width == 1)
		n = modbus_write_register(b->ctx, mp->address, regs[0]) == 1 ? 0 : -1;
	else
		n = modbus_write_registers(b->ctx, mp->address, mp->width, regs) == mp->width ? 0
											      : -1;
	b->last_frame_end_us = mono_us();
	pthread_mutex_unlock(&b->lock);
	if (n != 0) {
		int32_t code;

		switch (classify(errno, &code)) {
		case QUALITY_TIMEOUT:
			return GD_ETIMEDOUT;
		case QUALITY_EXCEPTION:
			return GD_EDEVICE;
		case QUALITY_BAD_FRAME:
			return GD_EPROTO;
		default:
			return GD_EIO;
		}
	}
	return 0;
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

const struct adapter_ops adapter_modbus_tcp_ops = {
	.type = "modbus-tcp",
	.configure = mb_configure_tcp,
	.open = mb_open,
	.poll = mb_poll,
	.write = mb_write,
	.write_function = mb_write_function,
	.read_functions = mb_read_functions,
	.close = mb_close,
	.destroy = mb_destroy,
};

const struct adapter_ops adapter_modbus_rtu_ops = {
	.type = "modbus-rtu",
	.configure = mb_configure_rtu,
	.open = mb_open,
	.poll = mb_poll,
	.write = mb_write,
	.write_function = mb_write_function,
	.read_functions = mb_read_functions,
	.close = mb_close,
	.destroy = mb_destroy,
};
