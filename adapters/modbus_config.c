/* modbus_config.c: the Modbus adapters' config: link keys, units, poll groups and the point map,
 * checked and planned into requests. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "modbus.h"

struct mb_unit_conf {
	long long id;
	int timeout_ms;
};

struct mb_group_conf {
	char *name;
	int interval_ms;
};

struct mb_point_conf {
	struct point_conf point;
	int unit_id;
	int table;
	int address;
	int type;
	int order;
	int length;
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

static const struct conf_key point_keys[] = {
	ADAPTER_POINT_KEYS(struct mb_point_conf, point),
	CONF_INT_KEY("unit_id", struct mb_point_conf, unit_id, 0, 255, false, "a unit id"),
	{ .name = "table",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct mb_point_conf, table),
	  .choices = mb_table_names,
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
	CONF_INT_KEY("timeout_ms", struct mb_backend, timeout_ms, 10, 60000, false,                \
		     "a timeout in ms"),                                                           \
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
		ADAPTER_CONF_KEYS(struct mb_backend, retry)

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
	  .choices = serial_parity_names,
	  .expect = "parity" },
	CONF_INT_KEY("data_bits", struct mb_backend, data_bits, 7, 8, false, "7 or 8"),
	CONF_INT_KEY("stop_bits", struct mb_backend, stop_bits, 1, 2, false, "1 or 2"),
	CONF_INT_KEY("frame_gap_us", struct mb_backend, frame_gap_us, 0, 1000000, false,
		     "a gap in microseconds"),
	{ .name = "rs485", .kind = CONF_ANY },
	{ .name = "rts",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct mb_backend, rts),
	  .choices = mb_rts_names,
	  .expect = "RTS mode" },
	CONF_INT_KEY("rts_delay_us", struct mb_backend, rts_delay_us, 0, 1000000, false,
		     "a delay in microseconds"),
	MB_COMMON_KEYS,
	{ .name = NULL },
};

const char *const mb_rts_names[] = { "none", "up", "down", NULL };

/*
 * The RS-485 keys of an RTU adapter: "rs485" true, false or "auto"; "rts" and
 * "rts_delay_us" only for adapters whose driver does not switch direction
 * itself. Returns the errors added.
 */
static int read_rs485(struct mb_backend *b, struct conf *c, const cJSON *obj, const char *path)
{
	const cJSON *mode = cJSON_GetObjectItemCaseSensitive(obj, "rs485");
	char sub[256];
	int errors = 0;

	if (cJSON_IsTrue(mode))
		b->rs485 = MB_RS485_ON;
	else if (cJSON_IsString(mode) && strcmp(mode->valuestring, "auto") == 0)
		b->rs485 = MB_RS485_AUTO;
	else if (mode != NULL && !cJSON_IsFalse(mode)) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "rs485"),
			   "expected true (the port's driver switches the RS-485 direction), "
			   "false or \"auto\" (when the driver can)");
		errors++;
	}
	if (b->rts != MB_RTS_NONE && b->rs485 != MB_RS485_OFF) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "rts"),
			   "\"%s\" is not for a port in RS-485 mode, whose driver switches RTS "
			   "itself (expected rs485 or rts, not both)",
			   mb_rts_names[b->rts]);
		errors++;
	}
	if (b->rts_delay_us >= 0 && b->rts == MB_RTS_NONE) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "rts_delay_us"),
			   "is the delay around RTS switching: only with \"rts\": \"up\" or "
			   "\"down\"");
		errors++;
	}
	return errors;
}

/* "host:port" ("[::1]:502" for an IPv6 address), or the serial device, for messages. */
static void set_where(struct mb_backend *b)
{
	if (b->rtu)
		snprintf(b->where, sizeof(b->where), "%s", b->device ? b->device : "?");
	else if (b->host != NULL && strchr(b->host, ':') != NULL)
		snprintf(b->where, sizeof(b->where), "[%s]:%d", b->host, b->port);
	else
		snprintf(b->where, sizeof(b->where), "%s:%d", b->host ? b->host : "?", b->port);
}

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

/* The index of poll group 'name', or -1. */
static long group_find(const struct mb_backend *b, const char *name)
{
	for (size_t j = 0; j < b->ngroups; j++) {
		if (strcmp(b->groups[j].name, name) == 0)
			return (long)j;
	}
	return -1;
}

/* Adds a poll group, taking 'name' (freed on failure). Returns its index, or -1 (ENOMEM). */
static long group_add(struct mb_backend *b, char *name, int interval_ms)
{
	struct mb_group *grown =
		name == NULL ? NULL : realloc(b->groups, (b->ngroups + 1) * sizeof(*grown));

	if (grown == NULL) {
		free(name);
		return -1;
	}
	b->groups = grown;
	b->groups[b->ngroups] = (struct mb_group){ .name = name, .interval_ms = interval_ms };
	return (long)b->ngroups++;
}

static int read_groups(struct mb_backend *b, struct conf *c, const cJSON *arr, const char *path)
{
	const cJSON *item;
	char sub[256];
	size_t i = 0;
	int errors = 0;

	cJSON_ArrayForEach (item, arr) {
		struct mb_group_conf g = { 0 };

		conf_path_index(sub, sizeof(sub), path, i++);
		if (conf_read_object(c, item, sub, group_keys, &g) != 0) {
			free(g.name);
			errors++;
		} else if (group_find(b, g.name) >= 0) {
			conf_error(c, sub, "poll group \"%s\" is defined twice", g.name);
			free(g.name);
			errors++;
		} else if (group_add(b, g.name, g.interval_ms) < 0) {
			conf_error(c, sub, "out of memory");
			return errors + 1;
		}
	}
	return errors;
}

static int read_point(struct adapter *a, struct conf *c, const void *obj, const char *path)
{
	struct mb_backend *b = a->backend_data;
	struct mb_point_conf pc = {
		.unit_id = b->default_unit_id,
		.table = MB_HOLDING,
		.type = VALUE_U16,
		.order = ORDER_ABCD,
		.point.scale = 1.0,
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
	errors += adapter_check_point(a, c, path, &pc.point);
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
		group = group_find(b, pc.group);
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
	if (unit == NULL && !b->implicit_units) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "unit_id"),
			   "unit %d is not listed in units", pc.unit_id);
		errors++;
	}
	if (errors != 0)
		goto out;
	if (unit == NULL)
		unit = unit_add(b, mp.unit_id, b->timeout_ms);
	if (group < 0) /* no "group": the default one, made on first use */
		group = group_find(b, "default");
	if (group < 0)
		group = group_add(b, strdup("default"), b->poll_interval_ms);
	p = unit == NULL || group < 0 ? NULL : adapter_add_point(a, &pc.point, mp.type);
	grown = p == NULL ? NULL : realloc(b->mpoints, (b->nmpoints + 1) * sizeof(*grown));
	if (grown == NULL) {
		conf_error(c, path, "out of memory");
		errors++;
		goto out;
	}
	b->mpoints = grown;
	p->writable = pc.writable;
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
	free(pc.point.name);
	free(pc.point.unit);
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

int mb_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path)
{
	const cJSON *obj = json_obj;
	const cJSON *units, *groups;
	struct mb_backend *b = calloc(1, sizeof(*b));
	char sub[256];
	int errors;

	if (b == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	*b = (struct mb_backend){
		.rtu = a->ops == &adapter_modbus_rtu_ops,
		.port = 502,
		.baud = 19200,
		.parity = SERIAL_PARITY_NONE,
		.data_bits = 8,
		.stop_bits = 1,
		.timeout_ms = 500,
		.retry = { .backoff_min_ms = 1000, .backoff_max_ms = 60000 },
		.max_gap = 0,
		.max_registers = MB_MAX_READ_REGISTERS,
		.max_bits = MB_MAX_READ_BITS,
		.poll_interval_ms = 1000,
		.default_unit_id = 1,
		.rts_delay_us = -1,
		.fd = -1,
	};
	pthread_mutex_init(&b->lock, NULL);
	a->backend_data = b;
	errors = conf_read_object(c, obj, path, b->rtu ? rtu_keys : tcp_keys, b);
	errors += adapter_check_backoff(c, path, &b->retry);
	if (!cJSON_IsObject(obj))
		return errors;
	set_where(b);
	if (b->rtu)
		errors += read_rs485(b, c, obj, path);
	units = cJSON_GetObjectItemCaseSensitive(obj, "units");
	if (cJSON_IsArray(units))
		errors += read_units(b, c, units, conf_path_key(sub, sizeof(sub), path, "units"));
	b->implicit_units = units == NULL;
	groups = cJSON_GetObjectItemCaseSensitive(obj, "poll_groups");
	if (cJSON_IsArray(groups))
		errors += read_groups(b, c, groups,
				      conf_path_key(sub, sizeof(sub), path, "poll_groups"));
	errors += adapter_read_points(a, c, obj, path, read_point);
	if (errors == 0)
		errors += plan_groups(b, c, path);
	return errors;
}
