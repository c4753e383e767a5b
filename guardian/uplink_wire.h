/* uplink_wire.h: the messages between guardian and its uplink child (uplink_remote.c,
 * uplink_child.c) over a SOCK_SEQPACKET socketpair: typed, numbered, each length checked against
 * its type's exact size or bound. */
#ifndef GUARDIAN_UPLINK_WIRE_H
#define GUARDIAN_UPLINK_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../uplink/uplink.h"

/*
 * One message is one or more frames. A frame is a 16-byte header (type u16, flags u16, len u32:
 * this frame's payload bytes, seq u64: the sender's frame count from 1, each one more than the
 * last) and 'len' bytes. Every frame but the last of a message is flagged UW_MORE and carries
 * exactly UW_FRAME_MAX bytes; the frames of one message share its type. Integers are in the
 * host's order: both ends are the same binary.
 */
#define UW_HEADER_LEN 16
#define UW_FRAME_MAX  32768
#define UW_MORE	      0x1

#define UW_SUBTOPIC_MAX 64	    /* an event's or a subscription's subtopic, NUL padded */
#define UW_HEALTH_MAX	65536	    /* the health document */
#define UW_CRED_MAX	32768	    /* the operational key and certificate, PEM */
#define UW_EXTRA_MAX	(64u << 20) /* a message of the extra subscription (bundles) */
#define UW_PATH_MAX	4096

enum uw_type {
	/* guardian to the child */
	UW_TELEMETRY = 1, /* u64 seq, the document: 8 + 1..max_message */
	UW_HEALTH = 2,	  /* the document: 0..UW_HEALTH_MAX */
	UW_HOLD = 3,	  /* u32 held: exactly 4 */
	UW_RECONNECT = 4, /* exactly 0 */
	UW_SUBSCRIBE = 5, /* u32 which (UW_TOPIC_*), subtopic[UW_SUBTOPIC_MAX]: exactly 68 */
	UW_START = 6,	  /* exactly 0 */
	UW_EVENT = 7,	  /* u64 token (0: no acknowledgement wanted), subtopic[UW_SUBTOPIC_MAX],
			     payload: 72 + 0..max_message */
	UW_CREDENTIALS =
		8,   /* u32 key bytes, the key PEM, the certificate PEM: 4 + 2..UW_CRED_MAX */
	UW_STOP = 9, /* u32 drain ms: exactly 4 */
	/* the child to guardian */
	UW_HELLO = 64,	 /* u64 last_seq: exactly 8 */
	UW_COMMAND = 65, /* u32 which (UW_TOPIC_*), payload: 4 + 0..UW_EXTRA_MAX */
	UW_ACK = 66,	 /* u64 token, u32 acked: exactly 12 */
	UW_STATS = 67,	 /* struct uw_stats: exactly its size */
	UW_STOPPED = 68, /* exactly 0 */
	UW_PROBLEM = 69, /* a line for the parent's log: 1..512 */
	UW_TAKEN = 70,	 /* u64 seq: that telemetry message is the child's (in its spool, the
			    durability point of one process): exactly 8 */
};

enum { UW_TOPIC_COMMANDS = 0, UW_TOPIC_EXTRA = 1 };

/* What the child says of itself, pushed often. */
struct uw_stats {
	struct uplink_stats uplink;
	uint64_t durable_seq; /* telemetry up to here is the child's to keep (in its spool, or
				 taken, without one): guardian forgets its copies */
};

/* One end of the channel. 'buf' holds the message uw_recv returns until the next call. */
struct uw_chan {
	int fd;
	bool parent;	    /* this end is guardian: it receives the child's types */
	size_t max_message; /* the uplink's max_message_bytes */
	uint64_t sent, got; /* frames */
	uint8_t *buf;
	size_t cap;
	uint8_t *frame; /* UW_HEADER_LEN + UW_FRAME_MAX */
};

struct uw_msg {
	uint16_t type;
	const uint8_t *data;
	size_t len;
};

/* Sets up 'c' on 'fd' (not taken). 0 or GD_ENOMEM. */
int uw_chan_init(struct uw_chan *c, int fd, bool parent, size_t max_message);
/* Frees the buffers; does not close the descriptor. No operation on a zeroed 'c'. */
void uw_chan_release(struct uw_chan *c);

/* The payload bounds of 'type' sent toward 'to_parent' (min..max bytes). 0, or GD_EPROTO when
 * there is no such type in that direction. */
int uw_bounds(uint16_t type, bool to_parent, size_t max_message, size_t *min, size_t *max);

/* Sends one message made of 'iov' (its parts, concatenated), in frames; blocks. 0, GD_EINVAL
 * (a length its type does not allow: nothing sent), or GD_EIO (errno: the channel is broken). */
int uw_send(struct uw_chan *c, uint16_t type, const struct iovec *iov, int niov);

/*
 * Receives one message into *out (valid until the next call); blocks. 0; GD_EIO at the end of
 * the channel (errno 0) or on an error; GD_EPROTO for anything out of the rules: an unknown type
 * or one of the wrong direction, a length its type does not allow, a frame out of sequence or
 * cut short. After GD_EPROTO the channel is not to be read again.
 */
int uw_recv(struct uw_chan *c, struct uw_msg *out);

/* A subtopic into its fixed field (NUL padded). GD_EINVAL when it does not fit. */
int uw_subtopic_put(char out[UW_SUBTOPIC_MAX], const char *subtopic);
/* The subtopic of a fixed field: GD_EPROTO unless NUL terminated, non-empty, without wildcards. */
int uw_subtopic_get(const uint8_t *field, char out[UW_SUBTOPIC_MAX]);

#endif
