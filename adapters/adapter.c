/* adapter.c: the adapter registry, point bookkeeping and the names of types, orders and qualities.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"

const char *const value_type_names[] = {
	[VALUE_BOOL] = "bool",
	[VALUE_U16] = "u16",
	[VALUE_I16] = "i16",
	[VALUE_U32] = "u32",
	[VALUE_I32] = "i32",
	[VALUE_U64] = "u64",
	[VALUE_I64] = "i64",
	[VALUE_F32] = "f32",
	[VALUE_F64] = "f64",
	[VALUE_STRING] = "string",
	NULL,
};

const char *const byte_order_names[] = {
	[ORDER_ABCD] = "ABCD",
	[ORDER_CDAB] = "CDAB",
	[ORDER_BADC] = "BADC",
	[ORDER_DCBA] = "DCBA",
	NULL,
};

const char *const quality_names[] = {
	[QUALITY_GOOD] = "good",	   [QUALITY_TIMEOUT] = "timeout",
	[QUALITY_EXCEPTION] = "exception", [QUALITY_BAD_FRAME] = "bad_frame",
	[QUALITY_OFFLINE] = "offline",	   [QUALITY_DISCONNECTED] = "disconnected",
	[QUALITY_BAD_VALUE] = "bad_value", NULL,
};

extern const struct adapter_ops adapter_modbus_tcp_ops;
extern const struct adapter_ops adapter_modbus_rtu_ops;

/* Adding a transport is adding its file and one line here. */
static const struct adapter_ops *const transports[] = {
	&adapter_modbus_tcp_ops,
	&adapter_modbus_rtu_ops,
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
	free(a);
}

struct point *adapter_add_point(struct adapter *a, const char *point_name)
{
	struct point *grown;
	struct point *p;
	char *full = NULL;

	if (asprintf(&full, "%s/%s", a->name, point_name) < 0)
		return NULL;
	grown = realloc(a->points, (a->npoints + 1) * sizeof(*grown));
	if (grown == NULL) {
		free(full);
		return NULL;
	}
	a->points = grown;
	p = &a->points[a->npoints];
	*p = (struct point){ .name = full, .unit = strdup(""), .scale = 1.0, .type = VALUE_U16 };
	if (p->unit == NULL) {
		free(full);
		return NULL;
	}
	a->npoints++;
	return p;
}
