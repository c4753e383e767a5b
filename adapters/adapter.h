/* adapter.h: points, values, samples, and the adapter interface every transport implements. */
#ifndef ADAPTER_H
#define ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "../base/point.h"
#include "../base/serial.h"

/* Word and byte order of multi-byte values (see adapters/codec.h). */
enum byte_order {
	ORDER_ABCD, /* big-endian words, big-endian bytes (Modbus default) */
	ORDER_CDAB, /* little-endian words, big-endian bytes ("word swap") */
	ORDER_BADC, /* big-endian words, bytes swapped in each word */
	ORDER_DCBA, /* fully little-endian */
};
extern const char *const byte_order_names[];

struct adapter;

/*
 * Where an adapter delivers what it read. 'emit' is called once per poll
 * cycle with every sample of that cycle, from the adapter's own thread; the
 * samples are valid only during the call. A batch may hold any number of
 * samples, several of the same point among them (frames that came together).
 */
struct point_sink {
	void (*emit)(struct point_sink *sink, struct adapter *a, const struct sample *samples,
		     size_t nsamples);
	void *ctx;
};

/* A counter read from another thread without a lock (relaxed), for stats_json's "%llu". */
#define ADAPTER_LD(x) ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

/* Counters every adapter keeps; read from other threads without locks (relaxed). */
struct adapter_stats {
	uint64_t polls; /* transactions attempted */
	uint64_t polls_ok;
	uint64_t timeouts;
	uint64_t exceptions;
	uint64_t bad_frames; /* CRC, length, unexpected answer */
	uint64_t io_errors;
	uint64_t reconnects;
	uint64_t samples;
	int64_t last_ok_ms; /* UTC ms of the last good answer, 0 if none */
	int link_up;	    /* 1 while the link is open */
};

/* Why an adapter is not well, for health and the console; see adapter_set_fault. */
struct adapter_fault {
	pthread_mutex_t lock;
	char text[192];	  /* "" when all is well */
	int64_t since_ms; /* UTC */
};

/*
 * One transport. Filled with designated initialisers; one per file.
 * configure: reads the adapter's JSON object (a cJSON node, const void * so
 *   this header does not need cJSON) into a->points / a->backend_data. Returns
 *   the number of errors it added to 'c'. Called before anything starts.
 * open: opens the link. 0 or a negative enum gd_err (errno kept).
 * poll: does the transactions that are due at 'now_ms' (monotonic), emits one
 *   batch to 'out', and sets a->next_due_ms. 0 or a negative enum gd_err.
 * write: writes one value to one point. 0 or a negative enum gd_err.
 * read: reads the value 'p' holds on the device now, in one fresh transaction
 *   (scaled like a poll's), into *out; strings are not read. The command path
 *   judges max_step against it. 0 or a negative enum gd_err; NULL for
 *   read-only transports.
 * write_function: the Modbus function code a write of 'p' would use (5, 6
 *   or 16), so that the policy can allow or refuse it; NULL for transports
 *   without function codes.
 * read_functions: marks in used[fc] every Modbus function code its polls
 *   send, so that a policy that does not allow one is refused at load; NULL
 *   for transports without function codes.
 * close: closes the link; the adapter may be opened again.
 * destroy: frees backend_data. No operation if it is NULL.
 * stats_json: appends the transport's own counters to the adapter's health
 *   object as ',"key":value...' into buf (at most cap bytes, snprintf rules);
 *   returns the length it would have written. NULL when it has none.
 * serial_device: the serial device the adapter opens ("/dev/ttyUSB0"), for the
 *   pre-flight check; NULL when it opens none. NULL for transports without one.
 * describe_point: where 'p' is read, for people ("unit 3 holding 16"), into
 *   buf (snprintf rules). NULL when the point's name says enough.
 * link_take: for a compartment's privileged parent: opens the link when it is
 *   down and a retry is due, as a poll would (same backoff, fault and log),
 *   and hands its descriptor to the caller: the adapter forgets it without
 *   closing it or ending the session on the device. The descriptor (>= 0), or
 *   a negative gd_err with a->next_due_ms saying when to try again.
 * adopt: for a compartment's child: takes 'fd', a link another process opened
 *   and set up (link_take), as its open link, and never opens one itself: once
 *   that link is lost, link_up stays 0. 0 or a negative gd_err ('fd' may then be
 *   closed). NULL for both where a transport has no compartment support.
 */
struct adapter_ops {
	const char *type;
	int (*configure)(struct adapter *a, struct conf *c, const void *json_obj, const char *path);
	int (*open)(struct adapter *a);
	int (*poll)(struct adapter *a, int64_t now_ms, struct point_sink *out);
	int (*write)(struct adapter *a, const struct point *p, const struct value *v);
	int (*read)(struct adapter *a, const struct point *p, struct value *out);
	unsigned (*write_function)(const struct adapter *a, const struct point *p);
	void (*read_functions)(const struct adapter *a, uint8_t used[128]);
	void (*close)(struct adapter *a);
	void (*destroy)(struct adapter *a);
	size_t (*stats_json)(const struct adapter *a, char *buf, size_t cap);
	const char *(*serial_device)(const struct adapter *a);
	void (*describe_point)(const struct adapter *a, const struct point *p, char *buf,
			       size_t cap);
	int (*link_take)(struct adapter *a, int64_t now_ms);
	int (*adopt)(struct adapter *a, int fd);
};

struct adapter {
	char *name; /* owned */
	const struct adapter_ops *ops;
	void *backend_data;   /* the transport's own state */
	struct point *points; /* owned array */
	size_t npoints;
	int64_t next_due_ms; /* monotonic; set by poll */
	struct adapter_stats stats;
	struct adapter_fault fault;
};

/* The transports, by their config "type". Returns NULL if unknown. */
const struct adapter_ops *adapter_ops_find(const char *type);
/* Lists the known types as "a, b, c" into 'buf' for error messages. */
const char *adapter_types_text(char *buf, size_t len);

/*
 * What a device's exception code means, as the Modbus application protocol
 * names it (2: "illegal data address"); "unknown exception" for codes it does
 * not define. The quality "exception" carries such a code.
 */
const char *adapter_exception_text(int code);

/* Creates an adapter from its JSON object (the core checked "name" and "type"). */
struct adapter *adapter_new(const char *name, const struct adapter_ops *ops);
/* Frees 'a' and its points. No operation is performed if 'a' is NULL. */
void adapter_free(struct adapter *a);

/* What every transport's point has in its config, read with ADAPTER_POINT_KEYS. */
struct point_conf {
	char *name, *unit; /* owned */
	double scale, offset;
};

/* The keys of struct point_conf member 'm' of struct 'st': "name" (required), "scale", "offset"
 * and "unit". */
#define ADAPTER_POINT_KEYS(st, m)                                                                  \
	{ .name = "name", .kind = CONF_STRING, .required = true, .offset = offsetof(st, m.name) }, \
		{ .name = "scale", .kind = CONF_DOUBLE, .offset = offsetof(st, m.scale) },         \
		{ .name = "offset", .kind = CONF_DOUBLE, .offset = offsetof(st, m.offset) },       \
	{                                                                                          \
		.name = "unit", .kind = CONF_STRING, .offset = offsetof(st, m.unit),               \
		.expect = "an engineering unit"                                                    \
	}

/*
 * Checks what every point read at config 'path' must be: a valid name, not
 * twice in 'a', and a scale that is not 0. Returns the number of errors added
 * to 'c'.
 */
int adapter_check_point(const struct adapter *a, struct conf *c, const char *path,
			const struct point_conf *pc);

/*
 * Adds point "<adapter>/<pc->name>" of type 't' to 'a', scaled as 'pc' says,
 * taking pc->unit ("" if NULL). Returns it, or NULL on ENOMEM; the caller
 * frees what 'pc' still holds either way.
 */
struct point *adapter_add_point(struct adapter *a, struct point_conf *pc, enum value_type t);

/*
 * The keys every transport's table has, for struct 'st': "name" and "type"
 * (the core's), "backoff_min_ms" and "backoff_max_ms" into its struct
 * link_retry member 'retry', and "points" (see adapter_read_points).
 */
#define ADAPTER_CONF_KEYS(st, retry)                                                               \
	{ .name = "name", .kind = CONF_ANY }, { .name = "type", .kind = CONF_ANY },                \
		CONF_INT_KEY("backoff_min_ms", st, retry.backoff_min_ms, 10, 3600000, false,       \
			     "a delay in ms"),                                                     \
		CONF_INT_KEY("backoff_max_ms", st, retry.backoff_max_ms, 10, 3600000, false,       \
			     "a delay in ms"),                                                     \
	{                                                                                          \
		.name = "points", .kind = CONF_ARRAY, .required = true,                            \
		.expect = "an array of points"                                                     \
	}

struct link_retry;

/* Checks that backoff_max_ms, read at 'path', is not below backoff_min_ms. Returns the errors. */
int adapter_check_backoff(struct conf *c, const char *path, const struct link_retry *r);

/* Reads one element of "points" (a cJSON node) at 'path' into 'a'. Returns the errors. */
typedef int adapter_point_reader(struct adapter *a, struct conf *c, const void *json_point,
				 const char *path);

/*
 * Reads every element of the "points" array of 'json_obj' (the adapter's
 * object at 'path') with 'read_point', at "<path>.points[i]"; an empty array
 * is an error. A "points" that is not an array was reported by
 * conf_read_object: nothing is read. Returns the number of errors added.
 */
int adapter_read_points(struct adapter *a, struct conf *c, const void *json_obj, const char *path,
			adapter_point_reader *read_point);

/*
 * Records why the adapter is not well ("cannot open /dev/ttyUSB0: No such
 * file or directory"), shown in health until cleared. Thread-safe. Returns
 * true when the text changed, so the caller logs a fault once, not per retry.
 */
bool adapter_set_fault(struct adapter *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clears the fault; returns true if there was one. */
bool adapter_clear_fault(struct adapter *a);
/* Copies the fault text ("" if none) into buf; returns its start time (UTC ms) or 0. */
int64_t adapter_get_fault(struct adapter *a, char *buf, size_t cap);

/*
 * A link an adapter keeps open (a serial port, a CAN socket): when to try
 * again after a failure, with doubling backoff; the fault shown in health and
 * logged once per change; link_up, reconnects and io_errors counted.
 */
struct link_retry {
	int backoff_min_ms, backoff_max_ms;
	int failures;
	int64_t retry_at_ms; /* monotonic; no attempt before */
	bool was_up;	     /* a later open counts as a reconnect */
};

/* Whether an attempt to open is due at 'now_ms'. */
bool link_retry_due(const struct link_retry *r, int64_t now_ms);
/* An attempt failed ('why', shown as the fault): the next waits longer. */
void link_retry_failed(struct link_retry *r, struct adapter *a, int64_t now_ms, const char *subsys,
		       const char *why);
/* The link opened: counted, fault cleared. */
void link_retry_opened(struct link_retry *r, struct adapter *a);
/* An open link failed ("<what>: <why>" as the fault); retried after backoff_min_ms. */
void link_retry_lost(struct link_retry *r, struct adapter *a, int64_t now_ms, const char *subsys,
		     const char *what, const char *why);

/*
 * A serial link that an adapter keeps open: opened when due, closed when the
 * line hangs up, reopened with backoff (struct link_retry). Used by the UART
 * and SLCAN transports.
 */

struct serial_link {
	struct serial_settings set;
	struct serial_port *port; /* NULL while down */
	struct link_retry retry;
	bool adopted; /* the port came from another process (adopt): never reopened here */
};

/*
 * Opens the link if it is down and its retry time has come. Returns true
 * if the link is up. 'subsys' names the log subsystem.
 */
bool serial_link_up(struct serial_link *l, struct adapter *a, int64_t now_ms, const char *subsys);
/* Hands the open port's descriptor to the caller (link_take): -1 if the link is down. */
int serial_link_take(struct serial_link *l);
/* Takes 'fd', a port another process opened and set up, as the open link (adopt). 0 or
 * GD_ENOMEM. */
int serial_link_adopt(struct serial_link *l, struct adapter *a, int fd);
/* Closes the link after an error; 'why' goes to the log and health. */
void serial_link_down(struct serial_link *l, struct adapter *a, int64_t now_ms, const char *subsys,
		      const char *why);

#endif
