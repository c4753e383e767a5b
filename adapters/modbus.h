/* modbus.h: private to the Modbus adapter: point map entries and the request planner. */
#ifndef ADAPTERS_MODBUS_H
#define ADAPTERS_MODBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

/* The four Modbus tables, in the order of their read function codes 1..4. */
enum mb_table { MB_COIL, MB_DISCRETE, MB_HOLDING, MB_INPUT };
extern const char *const mb_table_names[];

#define MB_MAX_READ_REGISTERS 125  /* FC 3 and 4, Modbus spec 6.3 */
#define MB_MAX_READ_BITS      2000 /* FC 1 and 2, Modbus spec 6.1 */

/* One configured point, as the planner and the decoder see it. */
struct mb_point {
	size_t point_index; /* into adapter->points */
	size_t unit_index;  /* into the backend's units */
	uint8_t unit_id;
	enum mb_table table;
	uint16_t address;
	uint16_t width; /* registers (or 1 bit) it occupies */
	enum value_type type;
	enum byte_order order;
	uint16_t length; /* string bytes */
	size_t group;	 /* index of its poll group */
	char *strbuf;	 /* length + 1 bytes for strings, else NULL */
};

/* One read transaction: 'count' registers or bits from 'address'. */
struct mb_request {
	size_t unit_index;
	uint8_t unit_id;
	enum mb_table table;
	uint16_t address;
	uint16_t count;
	size_t first; /* first point (index into the sorted point array) */
	size_t npoints;
};

/* Orders points by group, unit, table, address, then width (widest first). */
int mb_point_compare(const void *a, const void *b);

/*
 * Plans the reads for 'n' points of one group, sorted with mb_point_compare.
 * Points of one unit and table are merged into one request while the request
 * stays within 'max_regs' registers (or 'max_bits' bits) and the hole between
 * neighbours is at most 'max_gap' addresses (0: only adjacent or overlapping
 * points merge, so no unmapped register is ever read). Writes at most 'n'
 * requests to 'out' and returns how many.
 */
size_t mb_plan(const struct mb_point *pts, size_t n, unsigned max_gap, unsigned max_regs,
	       unsigned max_bits, struct mb_request *out);

/*
 * The silence the Modbus serial line spec (2.5.1.1) requires between frames:
 * 3.5 character times at this framing, in microseconds, rounded up; a fixed
 * 1750 us above 19200 baud.
 */
int64_t mb_rtu_gap_us(int baud, int data_bits, bool parity, int stop_bits);

#endif
