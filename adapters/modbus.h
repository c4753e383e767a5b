/* modbus.h: private to the Modbus adapter: point map entries, the request planner, the wire format
 * (request building, answer validation), and the backend its config (modbus_config.c) fills and its
 * link (modbus.c) runs. */
#ifndef ADAPTERS_MODBUS_H
#define ADAPTERS_MODBUS_H

#include <pthread.h>
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
	uint16_t length;       /* string bytes */
	size_t group;	       /* index of its poll group */
	char *strbuf;	       /* length + 1 bytes for strings, else NULL */
	bool exception_logged; /* its first exception answer was logged (adapter thread) */
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

/* ---- the wire (modbus_wire.c): requests built and answers checked by our own code ---- */

#define MB_WIRE_TCP_HEADER 7   /* MBAP: transaction id, protocol id, length, unit id */
#define MB_WIRE_MAX_ADU	   260 /* a TCP ADU: MBAP header and the largest PDU; RTU needs 256 */
#define MB_WIRE_MAX_WRITE  123 /* registers one FC 16 may write (6.12) */

/*
 * One request as sent, and so everything its answer must match.
 * function: 1, 2, 3 or 4 (reads 'count' bits or registers from 'address'),
 *   5 (writes coil 'address': 'value' 0xFF00 on, 0x0000 off), 6 (writes
 *   register 'address' with 'value'), 16 ('count' registers from 'address').
 */
struct mb_wire_request {
	bool rtu;
	uint16_t tid;	  /* TCP transaction id; unused on RTU */
	uint8_t unit_id;  /* TCP unit id, RTU slave address */
	uint8_t function; /* 1, 2, 3, 4, 5, 6 or 16 */
	uint16_t address;
	uint16_t count; /* bits or registers read, registers written by FC 16; 1 for FC 5 and 6 */
	uint16_t value; /* FC 5 and 6: the value written */
};

/*
 * Builds the ADU of 'rq' into 'out' (MB_WIRE_MAX_ADU bytes): MBAP header on
 * TCP, CRC on RTU. 'regs' holds FC 16's 'count' registers (host order), else
 * it may be NULL. Returns the ADU's length, or 0 when 'rq' is no request we
 * send (unknown function, count 0 or above the limit of 6.1 to 6.12, a FC 5
 * value other than 0xFF00 and 0, a range past address 65535).
 */
size_t mb_wire_build(const struct mb_wire_request *rq, const uint16_t *regs, uint8_t *out);

/* The length of the ADU of a correct, non-exception answer to 'rq' (0 if 'rq' is invalid). */
size_t mb_wire_answer_len(const struct mb_wire_request *rq);

/* What the bytes received so far are, see mb_wire_parse. */
enum mb_wire_status {
	MB_WIRE_NEED,	   /* a valid start: at least 'need' more bytes before a verdict */
	MB_WIRE_OK,	   /* the answer to the request, valid, 'len' bytes */
	MB_WIRE_EXCEPTION, /* a valid exception answer, 'len' bytes; its code in 'exception' */
	MB_WIRE_OTHER_TID, /* TCP: a sound MBAP header of another transaction 'tid', 'len' bytes
			    * in all; 'why' says so, for a caller that refuses it */
	MB_WIRE_INVALID,   /* does not match the request; 'why' says how */
};

struct mb_wire_answer {
	enum mb_wire_status status;
	size_t need;	   /* MB_WIRE_NEED */
	size_t len;	   /* the frame's length in bytes (OK, EXCEPTION, OTHER_TID) */
	size_t data_off;   /* OK, FC 1 to 4: the data bytes' offset in the frame */
	size_t data_len;   /* and their number (the byte count) */
	uint8_t exception; /* MB_WIRE_EXCEPTION: the code, any value 0 to 255 */
	uint16_t tid;	   /* MB_WIRE_OTHER_TID: the transaction it belongs to */
	char why[112];	   /* MB_WIRE_INVALID: "unit id 7 (expected 1)" */
};

/*
 * Judges the 'len' bytes received so far (from the frame's first byte) as
 * the answer to 'rq'. Checks run in the order the bytes that decide them
 * arrive, so a prefix gives MB_WIRE_NEED or the verdict the whole frame
 * gives, however the bytes are split; on RTU, a complete frame's CRC is
 * checked before its address and echo, since a corrupted byte is the likelier
 * cause. Bytes past the frame are not looked at. TCP: transaction id (another
 * one is MB_WIRE_OTHER_TID, for the caller to skip or refuse), protocol id 0,
 * MBAP length 3 to 254 and equal to the PDU's, unit id. RTU: slave address,
 * CRC. Both: function code or function code | 0x80 with one exception code;
 * byte count ceil(count / 8) for bits, 2 * count for registers; FC 5, 6 and
 * 16 echo address and value or quantity. No allocation; fills *ans and
 * returns ans->status.
 */
enum mb_wire_status mb_wire_parse(const struct mb_wire_request *rq, const uint8_t *buf, size_t len,
				  struct mb_wire_answer *ans);

/*
 * Unpacks the data of a valid FC 1 to 4 answer ('frame' as given to
 * mb_wire_parse): registers into 'regs' (host order), or bits into 'bits'
 * (one byte, 0 or 1, per bit); rq->count of them.
 */
void mb_wire_unpack(const struct mb_wire_request *rq, const struct mb_wire_answer *ans,
		    const uint8_t *frame, uint16_t *regs, uint8_t *bits);

/* ---- the backend: read by modbus_config.c, run by modbus.c ---- */

/* "rs485": leave the port as it is, ask the driver for RS-485 mode, or ask if it has one. */
enum mb_rs485 { MB_RS485_OFF, MB_RS485_ON, MB_RS485_AUTO };
/* "rts": libmodbus raises (up) or lowers (down) RTS while a request is sent. */
enum mb_rts { MB_RTS_NONE, MB_RTS_UP, MB_RTS_DOWN };
extern const char *const mb_rts_names[]; /* "none", "up", "down" */

#define MB_STALE_TIDS 8 /* TCP requests given up on whose late answers are still recognised */

typedef struct _modbus modbus_t; /* libmodbus's context, as <modbus.h> declares it */

struct mb_unit {
	uint8_t id;
	int timeout_ms;	     /* bounds a whole transaction, request sent to last answer byte */
	int failures;	     /* consecutive failed transactions (adapter thread only) */
	int64_t retry_at_ms; /* monotonic; while in the future, the unit is skipped */
	/* Counted under the backend's lock, read by health without it (relaxed atomics). */
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
	int parity; /* enum serial_parity */
	int data_bits;
	int stop_bits;
	int frame_gap_us; /* silence between frames on the bus; 0: from the baud rate */
	int rs485;	  /* enum mb_rs485: the driver's RS-485 mode (TIOCSRS485) */
	int rts;	  /* enum mb_rts: guardian switches RTS around each request */
	int rts_delay_us; /* before and after the request; -1: libmodbus's (a character time) */
	bool rs485_noted; /* "auto" on a port without the RS-485 ioctl: said once */
	/* common */
	char where[300]; /* for messages: "host:port" (TCP) or the device (RTU) */
	int timeout_ms;
	struct link_retry retry; /* the link's reopening; its backoff also paces silent units */
	int max_gap;
	int max_registers;
	int max_bits;
	int poll_interval_ms;
	int default_unit_id;
	bool implicit_units; /* no "units" list: the points' unit ids make the units */

	struct mb_unit *units;
	size_t nunits;
	struct mb_group *groups;
	size_t ngroups;
	struct mb_point *mpoints; /* sorted by mb_point_compare */
	size_t nmpoints;

	/*
	 * The link. libmodbus connects, closes and sets the serial port up, and
	 * sends on RTU; requests are built and answers read and checked here
	 * (modbus_wire.c). Everything from ctx to why is under 'lock': the
	 * adapter thread polls, the command thread writes and reads, either may
	 * close.
	 */
	pthread_mutex_t lock;
	modbus_t *ctx;
	int fd; /* modbus_get_socket(ctx), non-blocking; -1 when closed */
	bool connected;
	bool adopted;	   /* the descriptor came from another process (adopt): never reopened */
	bool dirty;	   /* stray bytes may come: drain before the next request */
	uint16_t next_tid; /* TCP transaction ids, ours */
	uint16_t stale_tids[MB_STALE_TIDS];
	size_t nstale;
	int64_t last_frame_end_us; /* monotonic us; RTU inter-frame gap */
	char why[128];		   /* what the last bad frame or timeout was */
	char open_why[256];	   /* why the last open failed after connecting ("" : errno) */
	uint8_t tx[MB_WIRE_MAX_ADU];
	uint8_t rx[2 * MB_WIRE_MAX_ADU]; /* room for a late answer and ours behind it */
	uint64_t late_answers;		 /* skipped answers to requests given up on (relaxed) */

	/* The adapter thread's own. */
	struct sample *samples; /* one group's batch */
	uint16_t regs[MB_MAX_READ_REGISTERS];
	uint8_t bits[MB_MAX_READ_BITS];
};

extern const struct adapter_ops adapter_modbus_rtu_ops;

/*
 * The configure op of both transports (RTU when 'a' was made with
 * adapter_modbus_rtu_ops): the link, units, poll groups and points into a new
 * struct mb_backend, each group's requests planned. Returns the number of
 * errors added to 'c'.
 */
int mb_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path);

#endif
