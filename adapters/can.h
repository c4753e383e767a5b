/* can.h: private to the CAN adapter: the frame layouts and signals its config (can_config.c) builds
 * and its links and decoding (can.c) use. */
#ifndef ADAPTERS_CAN_H
#define ADAPTERS_CAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "canbus.h"

#define CAN_BATCH_MAX 1024  /* samples sent in one batch at most */
#define J1939_ANY     0x100 /* a J1939 message that takes any source address */

enum can_transport { CAN_SLCAN, CAN_SOCKETCAN };

/* A signal; same index as a->points. */
struct can_point {
	struct can_signal sig;
	int msg;     /* index into the message table */
	int mux;     /* -1, or the multiplexor value this signal is valid for */
	int fl;	     /* 0 integer, 1 f32, 2 f64 */
	bool is_mux; /* this signal is its message's multiplexor */
};

/* One frame layout: its match key and its signals. */
struct can_message {
	uint64_t key;  /* see can_key_id */
	int mux_point; /* -1, or the point holding the multiplexor */
	size_t *points;
	size_t npoints;
	uint8_t need_dlc; /* bytes the longest signal needs */
};

struct can_backend {
	int transport;
	struct serial_link link; /* SLCAN */
	char *interface;	 /* SocketCAN */
	int sock;
	bool adopted; /* the socket came from another process (adopt): never reopened here */
	struct link_retry sock_retry;
	int bitrate;
	bool listen_only;
	int timeout_ms;
	int batch_ms; /* samples are sent together for this long (0: after every read) */

	struct can_point *cpoints;
	struct can_message *msgs; /* sorted by key */
	size_t nmsgs;

	/* state, owned by the adapter's thread */
	struct slcan_parser parser;
	struct point_sink *out;
	struct adapter *a;
	struct sample *batch;
	size_t nbatch;
	int64_t batch_started_ms; /* monotonic: when the first sample of the batch came */
	int64_t last_frame_ms;
	bool timed_out, down_reported, opened;
	enum slcan_kind reply; /* the last reply to a command, SLCAN_MALFORMED if none */
	uint8_t rbuf[4096];

	/* counters beyond struct adapter_stats, written by the adapter thread only */
	uint64_t frames, bytes, unmapped, short_frames, malformed, adapter_errors, rtr;
};

/*
 * Match keys, one number per frame layout: bit 40 marks a J1939 key, whose
 * bits 8..25 hold the PGN and bits 0..8 the source (J1939_ANY for any);
 * otherwise bit 32 marks an extended identifier and bits 0..28 hold it.
 */
static inline uint64_t can_key_id(uint32_t id, bool extended)
{
	return (uint64_t)id | (extended ? 1ull << 32 : 0);
}

static inline uint64_t can_key_j1939(uint32_t pgn, unsigned source)
{
	return 1ull << 40 | (uint64_t)pgn << 9 | source;
}

/*
 * The configure op: transport and link keys, then the points into signals
 * grouped by frame layout (sorted by key), checked for multiplexing. Returns
 * the number of errors added to 'c'.
 */
int can_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path);

#endif
