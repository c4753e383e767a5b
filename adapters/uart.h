/* uart.h: private to the raw serial adapter: the backend its config (uart_config.c) fills and its
 * polling and decoding (uart.c) use. */
#ifndef ADAPTERS_UART_H
#define ADAPTERS_UART_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "framer.h"

#define TEXT_MAX 128 /* longest captured text value */

struct uart_regex {
	char *src;
	regex_t re;
	size_t ngroups;
};

/* Where a point's value sits in a frame; same index as a->points. */
struct uart_point {
	int regex;  /* text: index into b->regexes */
	int group;  /* text: capture group, 1.. */
	int at;	    /* binary: first byte in the body */
	int length; /* binary strings: bytes */
	int order;  /* binary: enum byte_order */
};

struct uart_backend {
	struct serial_link link;
	struct framer_config fcfg;
	struct framer framer;
	bool text; /* fields by regex; else by byte offset */
	char *regex_default;
	struct uart_regex *regexes;
	size_t nregexes;
	struct uart_point *upoints;
	uint8_t request[256];
	size_t request_len; /* 0: free-running */
	int poll_interval_ms;
	int response_timeout_ms;
	int timeout_ms; /* free-running: silence after which values are marked timed out */

	/* state, owned by the adapter's thread */
	bool awaiting;
	int64_t next_request_ms, deadline_ms, last_frame_ms;
	bool timed_out;
	bool down_reported; /* the points were marked disconnected since the link went down */
	struct point_sink *out;
	struct adapter *a;
	struct sample *samples;
	char (*texts)[TEXT_MAX]; /* one per point, for string values */
	char *body;		 /* a NUL-terminated copy of a text frame */
	uint8_t rbuf[4096];

	/* counters beyond struct adapter_stats; written by the adapter thread only */
	struct framer_stats fstats;
	uint64_t unmatched, short_frames, bad_values;
};

/*
 * The configure op: the serial link, framing and checksum, the request, and
 * the points, as text fields (regex groups) or binary ones (byte offsets).
 * Returns the number of errors added to 'c'.
 */
int uart_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path);

#endif
