/* point.h: the point model every part shares: a point as configured, a value in engineering
 * units, why it is or is not good, and one reading of it (a sample). */
#ifndef BASE_POINT_H
#define BASE_POINT_H

#include <stdbool.h>
#include <stdint.h>

/* The type of a point as the device stores it. */
enum value_type {
	VALUE_BOOL,
	VALUE_U16,
	VALUE_I16,
	VALUE_U32,
	VALUE_I32,
	VALUE_U64,
	VALUE_I64,
	VALUE_F32,
	VALUE_F64,
	VALUE_STRING,
};

/* Names as written in configs: "bool", "u16", ... NULL-terminated. */
extern const char *const value_type_names[];

/*
 * A value in engineering units, after scale and offset. Integers stay integers
 * while scale is 1 and offset 0; otherwise the value becomes VALUE_KIND_FLOAT.
 * A string points into a buffer owned by the adapter, valid until its next poll.
 */
enum value_kind {
	VALUE_KIND_NONE,
	VALUE_KIND_BOOL,
	VALUE_KIND_INT,
	VALUE_KIND_UINT,
	VALUE_KIND_FLOAT,
	VALUE_KIND_STRING
};

struct value {
	enum value_kind kind;
	union {
		bool b;
		int64_t i;
		uint64_t u;
		double f;
		const char *s;
	};
};

/* Why a value is or is not good. */
enum quality {
	QUALITY_GOOD,
	QUALITY_TIMEOUT,      /* the device did not answer in time */
	QUALITY_EXCEPTION,    /* the device answered with an exception ('code') */
	QUALITY_BAD_FRAME,    /* a malformed answer: CRC, length, wrong unit */
	QUALITY_OFFLINE,      /* the unit is in backoff after failures */
	QUALITY_DISCONNECTED, /* the link (socket, serial port) is down */
	QUALITY_BAD_VALUE,    /* read fine, but not representable (NaN, infinity) */
};
extern const char *const quality_names[];

/* A point as configured: one value on one device, named "adapter/point". */
struct point {
	char *name;  /* full name, "adapter/point"; owned */
	uint32_t id; /* index in the gateway's point table */
	char *unit;  /* engineering unit, "" when none; owned */
	enum value_type type;
	double scale; /* engineering = raw * scale + offset */
	double offset;
	bool writable; /* may a downlink rule ever write it */
};

/* Marks the policy may set on a sample that leaves (see policy/policy.h). */
#define SAMPLE_CLAMPED	    0x01 /* the value was clamped into the rule's range */
#define SAMPLE_OUT_OF_RANGE 0x02 /* the value lies outside the rule's range, sent as it is */

/* One reading of one point. */
struct sample {
	uint32_t point_id;
	enum quality quality;
	uint32_t flags;	    /* SAMPLE_*; 0 from adapters */
	int32_t code;	    /* exception code or errno, for quality != GOOD */
	int64_t ts_ms;	    /* UTC ms when the answer arrived */
	struct value value; /* VALUE_KIND_NONE unless quality is GOOD */
};

#endif
