/* point.c: the names of value types and qualities, as configs and payloads write them. */
#include <stddef.h>

#include "point.h"

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

const char *const quality_names[] = {
	[QUALITY_GOOD] = "good",	   [QUALITY_TIMEOUT] = "timeout",
	[QUALITY_EXCEPTION] = "exception", [QUALITY_BAD_FRAME] = "bad_frame",
	[QUALITY_OFFLINE] = "offline",	   [QUALITY_DISCONNECTED] = "disconnected",
	[QUALITY_BAD_VALUE] = "bad_value", NULL,
};
