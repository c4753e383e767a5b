/* adapter.c: the adapter registry, point bookkeeping, what every transport's config reads, link
 * retries and the names of byte orders. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"

const char *const byte_order_names[] = {
	[ORDER_ABCD] = "ABCD",
	[ORDER_CDAB] = "CDAB",
	[ORDER_BADC] = "BADC",
	[ORDER_DCBA] = "DCBA",
	NULL,
};

extern const struct adapter_ops adapter_modbus_tcp_ops;
extern const struct adapter_ops adapter_modbus_rtu_ops;
extern const struct adapter_ops adapter_uart_ops;
extern const struct adapter_ops adapter_can_ops;

/* Adding a transport is adding its file and one line here. */
static const struct adapter_ops *const transports[] = {
	&adapter_modbus_tcp_ops,
	&adapter_modbus_rtu_ops,
	&adapter_uart_ops,
	&adapter_can_ops,
};

const struct adapter_ops *adapter_ops_find(const char *type)
{
	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
		if (strcmp(transports[i]->type, type) == 0)
			return transports[i];
	}
	return NULL;
}

const char *adapter_types_text(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]) && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
				 transports[i]->type);

		if (n < 0)
			break;
		used += (size_t)n;
	}
	return buf;
}

const char *adapter_exception_text(int code)
{
	/* Modbus application protocol 1.1b, section 7. */
	static const char *const names[] = {
		[1] = "illegal function",
		[2] = "illegal data address",
		[3] = "illegal data value",
		[4] = "server device failure",
		[5] = "acknowledge",
		[6] = "server device busy",
		[8] = "memory parity error",
		[10] = "gateway path unavailable",
		[11] = "gateway target device failed to respond",
	};

	if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0]) || names[code] == NULL)
		return "unknown exception";
	return names[code];
}

struct adapter *adapter_new(const char *name, const struct adapter_ops *ops)
{
	struct adapter *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->name = strdup(name);
	if (a->name == NULL) {
		free(a);
		return NULL;
	}
	a->ops = ops;
	pthread_mutex_init(&a->fault.lock, NULL);
	return a;
}

void adapter_free(struct adapter *a)
{
	if (a == NULL)
		return;
	if (a->ops != NULL && a->ops->destroy != NULL)
		a->ops->destroy(a);
	for (size_t i = 0; i < a->npoints; i++) {
		free(a->points[i].name);
		free(a->points[i].unit);
	}
	free(a->points);
	free(a->name);
	pthread_mutex_destroy(&a->fault.lock);
	free(a);
}

struct point *adapter_add_point(struct adapter *a, struct point_conf *pc, enum value_type t)
{
	struct point *grown = realloc(a->points, (a->npoints + 1) * sizeof(*grown));
	char *full = NULL;

	if (grown == NULL)
		return NULL;
	a->points = grown; /* room for one more; the points are as they were */
	if (pc->unit == NULL)
		pc->unit = strdup("");
	if (pc->unit == NULL || asprintf(&full, "%s/%s", a->name, pc->name) < 0)
		return NULL;
	grown[a->npoints] = (struct point){
		.name = full, .unit = pc->unit, .scale = pc->scale, .offset = pc->offset, .type = t
	};
	pc->unit = NULL;
	return &grown[a->npoints++];
}

int adapter_check_point(const struct adapter *a, struct conf *c, const char *path,
			const struct point_conf *pc)
{
	size_t prefix = strlen(a->name) + 1;
	char sub[256];
	int errors = 0;

	conf_path_key(sub, sizeof(sub), path, "name");
	if (!conf_valid_name(pc->name)) {
		conf_error(c, sub,
			   "invalid point name \"%s\" (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
			   pc->name);
		errors++;
	}
	for (size_t i = 0; i < a->npoints && errors == 0; i++) {
		if (strcmp(a->points[i].name + prefix, pc->name) == 0) {
			conf_error(c, sub, "point \"%s\" is defined twice in adapter \"%s\"",
				   pc->name, a->name);
			errors++;
		}
	}
	if (pc->scale == 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "scale"),
			   "0 would erase every value (expected a non-zero number)");
		errors++;
	}
	return errors;
}

int adapter_check_backoff(struct conf *c, const char *path, const struct link_retry *r)
{
	char sub[256];

	if (r->backoff_max_ms >= r->backoff_min_ms)
		return 0;
	conf_error(c, conf_path_key(sub, sizeof(sub), path, "backoff_max_ms"),
		   "%d is below backoff_min_ms %d", r->backoff_max_ms, r->backoff_min_ms);
	return 1;
}

int adapter_read_points(struct adapter *a, struct conf *c, const void *json_obj, const char *path,
			adapter_point_reader *read_point)
{
	const cJSON *points = cJSON_GetObjectItemCaseSensitive(json_obj, "points"), *item;
	char sub[256], isub[256];
	int errors = 0;
	size_t i = 0;

	if (!cJSON_IsArray(points))
		return 0;
	conf_path_key(sub, sizeof(sub), path, "points");
	cJSON_ArrayForEach (item, points)
		errors += read_point(a, c, item, conf_path_index(isub, sizeof(isub), sub, i++));
	if (i == 0) {
		conf_error(c, sub, "empty (expected at least one point)");
		errors++;
	}
	return errors;
}

bool adapter_set_fault(struct adapter *a, const char *fmt, ...)
{
	char text[sizeof(a->fault.text)];
	bool changed;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&a->fault.lock);
	changed = strcmp(text, a->fault.text) != 0;
	if (changed) {
		memcpy(a->fault.text, text, sizeof(text));
		a->fault.since_ms = gd_now_ms();
	}
	pthread_mutex_unlock(&a->fault.lock);
	return changed;
}

bool adapter_clear_fault(struct adapter *a)
{
	bool had;

	pthread_mutex_lock(&a->fault.lock);
	had = a->fault.text[0] != '\0';
	a->fault.text[0] = '\0';
	a->fault.since_ms = 0;
	pthread_mutex_unlock(&a->fault.lock);
	return had;
}

int64_t adapter_get_fault(struct adapter *a, char *buf, size_t cap)
{
	int64_t since;

	pthread_mutex_lock(&a->fault.lock);
	snprintf(buf, cap, "%s", a->fault.text);
	since = a->fault.since_ms;
	pthread_mutex_unlock(&a->fault.lock);
	return since;
}

bool link_retry_due(const struct link_retry *r, int64_t now_ms)
{
	return now_ms >= r->retry_at_ms;
}

void link_retry_failed(struct link_retry *r, struct adapter *a, int64_t now_ms, const char *subsys,
		       const char *why)
{
	r->failures++;
	r->retry_at_ms = now_ms + gd_backoff_ms(r->backoff_min_ms, r->backoff_max_ms, r->failures);
	__atomic_store_n(&a->stats.link_up, 0, __ATOMIC_RELAXED);
	if (adapter_set_fault(a, "%s", why))
		log_warnx(subsys, "%s: %s; retrying with backoff", a->name, why);
}

void link_retry_opened(struct link_retry *r, struct adapter *a)
{
	if (r->was_up)
		__atomic_add_fetch(&a->stats.reconnects, 1, __ATOMIC_RELAXED);
	r->was_up = true;
	r->failures = 0;
	__atomic_store_n(&a->stats.link_up, 1, __ATOMIC_RELAXED);
	adapter_clear_fault(a);
}

void link_retry_lost(struct link_retry *r, struct adapter *a, int64_t now_ms, const char *subsys,
		     const char *what, const char *why)
{
	r->failures = 1;
	r->retry_at_ms = now_ms + r->backoff_min_ms;
	__atomic_store_n(&a->stats.link_up, 0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a->stats.io_errors, 1, __ATOMIC_RELAXED);
	if (adapter_set_fault(a, "%s: %s", what, why))
		log_warnx(subsys, "%s: %s: %s; reopening with backoff", a->name, what, why);
}

bool serial_link_up(struct serial_link *l, struct adapter *a, int64_t now_ms, const char *subsys)
{
	char why[192];

	if (l->port != NULL)
		return true;
	/* An adopted port is the parent's to reopen: this process may not open anything. */
	if (l->adopted || !link_retry_due(&l->retry, now_ms))
		return false;
	if (serial_open(&l->port, &l->set, why, sizeof(why)) != 0) {
		link_retry_failed(&l->retry, a, now_ms, subsys, why);
		return false;
	}
	link_retry_opened(&l->retry, a);
	log_info(subsys, "%s: %s open, %d %d%c%d (%s)", a->name, l->set.device, l->set.baud,
		 l->set.data_bits, "NEO"[l->set.parity], l -> set.stop_bits,
		 serial_backend(l->port));
	return true;
}

void serial_link_down(struct serial_link *l, struct adapter *a, int64_t now_ms, const char *subsys,
		      const char *why)
{
	serial_close(l->port);
	l->port = NULL;
	link_retry_lost(&l->retry, a, now_ms, subsys, l->set.device, why);
}

int serial_link_take(struct serial_link *l)
{
	int fd = l->port != NULL ? serial_release(l->port) : -1;

	l->port = NULL;
	return fd;
}

int serial_link_adopt(struct serial_link *l, struct adapter *a, int fd)
{
	int rc = serial_adopt(&l->port, fd);

	if (rc != 0)
		return rc;
	l->adopted = true;
	l->retry.was_up = true;
	__atomic_store_n(&a->stats.link_up, 1, __ATOMIC_RELAXED);
	return 0;
}
