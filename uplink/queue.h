/* queue.h: the uplink's bounded, ordered send queue with in-flight tracking (private to uplink/).
 */
#ifndef UPLINK_QUEUE_H
#define UPLINK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uplink.h"

/*
 * A FIFO of copied payloads, bounded by the sum of their lengths. Every message
 * gets a sequence number (1, 2, ...) when it is accepted.
 *
 * The sender takes messages in order with queue_take() (at most 'max_inflight'
 * outstanding); each take marks the message in flight. queue_ack() marks a
 * message delivered; messages leave the queue only from the head and only once
 * delivered (or dropped), so nothing is lost while the broker is away.
 * queue_requeue() turns every in-flight message back into an unsent one, so the
 * sender starts again from the head after a reconnect.
 *
 * When a new message does not fit, QUEUE_DROP_OLDEST drops the oldest messages
 * that are not in flight until it fits (if even that cannot make room, the new
 * message is refused instead and nothing else is dropped); QUEUE_DROP_NEWEST
 * refuses the new message. A message larger than the whole bound is refused.
 * Every message dropped or refused counts in 'dropped', except under
 * QUEUE_WINDOW, which refuses like QUEUE_DROP_NEWEST without counting: the
 * spool behind it keeps what it refuses.
 *
 * Every function takes the queue's own mutex; the wake callback runs after the
 * mutex is released, so it may take the caller's locks.
 */
struct uplink_queue;

/* One message handed to the sender. 'data' stays valid until queue_release(). */
struct queue_item {
	uint64_t seq;
	const char *data;
	size_t len;
	uint32_t sends; /* 1 on the first send, 2 on the first resend, ... */
};

struct queue_stats {
	uint64_t enqueued; /* accepted */
	uint64_t acked;	   /* delivered and acknowledged */
	uint64_t dropped;  /* dropped or refused for room */
	size_t msgs;	   /* waiting or in flight */
	size_t bytes;	   /* their payload bytes */
	size_t inflight;   /* in flight */
	uint64_t oldest;   /* sequence number of the oldest message held, 0 if none */
	uint64_t last;	   /* the last sequence number given out, 0 if none */
};

/*
 * Creates a queue holding at most 'max_bytes' payload bytes. 'wake' (may be
 * NULL) is called with 'wake_ctx' after every push. Returns NULL on ENOMEM.
 */
struct uplink_queue *queue_new(size_t max_bytes, enum queue_drop drop, void (*wake)(void *ctx),
			       void *wake_ctx);
/* Frees 'q' and every message. No operation is performed if 'q' is NULL. */
void queue_free(struct uplink_queue *q);

/*
 * Copies 'len' bytes of 'data' to the tail. Returns 0 (and the sequence number
 * in *seq if 'seq' is not NULL), GD_EFULL if the message was refused for room,
 * GD_EINVAL for an empty message, or GD_ENOMEM.
 */
int queue_push(struct uplink_queue *q, const void *data, size_t len, uint64_t *seq);
/* queue_push with the sequence number 'want' given by the caller (the spool's), above every one
 * before it (else GD_EINVAL); 0 means the next one. */
int queue_push_seq(struct uplink_queue *q, uint64_t want, const void *data, size_t len,
		   uint64_t *seq);

/*
 * Takes the oldest unsent message if fewer than 'max_inflight' are in flight,
 * marks it in flight and pins its payload. Returns true and fills 'out', or
 * false when there is nothing to send or no room in flight.
 */
bool queue_take(struct uplink_queue *q, size_t max_inflight, struct queue_item *out);
/* Unpins the payload of a taken message (the sender has handed it over). */
void queue_release(struct uplink_queue *q, uint64_t seq);

/*
 * The broker acknowledged message 'seq' (from any send of it). Returns true if
 * that delivered a message still held, false for an unknown or already
 * acknowledged one.
 */
bool queue_ack(struct uplink_queue *q, uint64_t seq);
/*
 * Send number 'sends' of message 'seq' failed. Returns true if that message is
 * still in flight from that very send, so the caller should requeue.
 */
bool queue_failed(struct uplink_queue *q, uint64_t seq, uint32_t sends);
/* Every in-flight message becomes unsent again; sending restarts at the head. */
void queue_requeue(struct uplink_queue *q);

void queue_get_stats(struct uplink_queue *q, struct queue_stats *out);

#endif
