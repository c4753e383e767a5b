/* queue.c: the uplink's bounded, ordered send queue: a ring of messages with in-flight tracking. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

/*
 * The ring holds messages in sequence order. Delivered and dropped messages
 * become tombstones (their payload is freed at once) and leave the ring when
 * they reach the head, so removal is O(1) amortised and lookups by sequence
 * number are a binary search.
 *
 * 'next' is the offset (from the head) of the next message to send. Every
 * entry before it is in flight or a tombstone; every entry from it on is
 * unsent or a tombstone.
 */
enum msg_state {
	MSG_UNSENT,
	MSG_INFLIGHT,
	MSG_ACKED,   /* tombstone: delivered */
	MSG_DROPPED, /* tombstone: dropped for room */
};

struct queue_msg {
	uint64_t seq;
	char *data; /* NULL once a tombstone and unpinned */
	size_t len;
	uint32_t sends;
	uint8_t state; /* enum msg_state */
	bool pinned;   /* the sender is handing the payload to the broker */
};

struct uplink_queue {
	pthread_mutex_t lock;
	struct queue_msg *ring;
	size_t cap;   /* a power of two, or 0 */
	size_t head;  /* index of the oldest entry */
	size_t count; /* entries, tombstones included */
	size_t next;  /* offset from head of the next entry to send */

	size_t max_bytes;
	enum queue_drop drop;
	size_t live;  /* unsent + in flight */
	size_t bytes; /* payload bytes of live messages */
	size_t inflight;
	size_t inflight_bytes;
	uint64_t last_seq;
	uint64_t enqueued, acked, dropped;

	void (*wake)(void *ctx);
	void *wake_ctx;
};

#define RING_MIN 16

static struct queue_msg *at(struct uplink_queue *q, size_t offset)
{
	return &q->ring[(q->head + offset) & (q->cap - 1)];
}

static bool is_tombstone(const struct queue_msg *m)
{
	return m->state == MSG_ACKED || m->state == MSG_DROPPED;
}

/* Moves the entries into a ring of 'cap' slots (a power of two >= count). */
static int resize(struct uplink_queue *q, size_t cap)
{
	struct queue_msg *ring = malloc(cap * sizeof(*ring));

	if (ring == NULL)
		return GD_ENOMEM;
	for (size_t i = 0; i < q->count; i++)
		ring[i] = *at(q, i);
	free(q->ring);
	q->ring = ring;
	q->cap = cap;
	q->head = 0;
	return 0;
}

/* Removes tombstones from the head (not pinned ones), and shrinks a mostly empty ring. */
static void pop_head(struct uplink_queue *q)
{
	while (q->count > 0) {
		struct queue_msg *m = at(q, 0);

		if (!is_tombstone(m) || m->pinned)
			break;
		free(m->data);
		q->head = (q->head + 1) & (q->cap - 1);
		q->count--;
		if (q->next > 0)
			q->next--;
	}
	if (q->cap > RING_MIN && q->count < q->cap / 4)
		resize(q, q->cap / 2); /* on ENOMEM the larger ring simply stays */
}

/* Offset of the entry with sequence number 'seq', or -1. */
static long find(struct uplink_queue *q, uint64_t seq)
{
	size_t lo = 0, hi = q->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t s = at(q, mid)->seq;

		if (s == seq)
			return (long)mid;
		if (s < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Skips tombstones at 'next'. */
static void skip_tombstones(struct uplink_queue *q)
{
	while (q->next < q->count && is_tombstone(at(q, q->next)))
		q->next++;
}

/* Turns 'm' into a tombstone of 'state'; its payload goes unless pinned. */
static void retire(struct uplink_queue *q, struct queue_msg *m, enum msg_state state)
{
	if (m->state == MSG_INFLIGHT) {
		q->inflight--;
		q->inflight_bytes -= m->len;
	}
	q->live--;
	q->bytes -= m->len;
	m->state = (uint8_t)state;
	if (!m->pinned) {
		free(m->data);
		m->data = NULL;
	}
}

struct uplink_queue *queue_new(size_t max_bytes, enum queue_drop drop, void (*wake)(void *ctx),
			       void *wake_ctx)
{
	struct uplink_queue *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	if (pthread_mutex_init(&q->lock, NULL) != 0) {
		free(q);
		return NULL;
	}
	q->max_bytes = max_bytes;
	q->drop = drop;
	q->wake = wake;
	q->wake_ctx = wake_ctx;
	return q;
}

void queue_free(struct uplink_queue *q)
{
	if (q == NULL)
		return;
	for (size_t i = 0; i < q->count; i++)
		free(at(q, i)->data);
	free(q->ring);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int queue_push(struct uplink_queue *q, const void *data, size_t len, uint64_t *seq)
{
	return queue_push_seq(q, 0, data, len, seq);
}

int queue_push_seq(struct uplink_queue *q, uint64_t want, const void *data, size_t len,
		   uint64_t *seq)
{
	struct queue_msg *m;
	char *copy = NULL;
	int rc = 0;

	if (len == 0)
		return GD_EINVAL;
	pthread_mutex_lock(&q->lock);
	if (want != 0 && want <= q->last_seq) {
		rc = GD_EINVAL;
		goto out;
	}
	/* Only messages not in flight can make room. */
	if (len > q->max_bytes ||
	    (q->bytes + len > q->max_bytes &&
	     (q->drop != QUEUE_DROP_OLDEST || q->inflight_bytes + len > q->max_bytes))) {
		if (q->drop != QUEUE_WINDOW)
			q->dropped++;
		rc = GD_EFULL;
		goto out;
	}
	copy = malloc(len);
	if (copy == NULL) {
		rc = GD_ENOMEM;
		goto out;
	}
	if (q->count == q->cap && resize(q, q->cap ? q->cap * 2 : RING_MIN) != 0) {
		free(copy);
		rc = GD_ENOMEM;
		goto out;
	}
	while (q->bytes + len > q->max_bytes) {
		skip_tombstones(q);
		/* Cannot run dry: the check above proved the unsent bytes suffice. */
		m = at(q, q->next);
		retire(q, m, MSG_DROPPED);
		q->next++;
		q->dropped++;
	}
	memcpy(copy, data, len);
	m = at(q, q->count);
	*m = (struct queue_msg){ .seq = want != 0 ? want : q->last_seq + 1,
				 .data = copy,
				 .len = len,
				 .state = MSG_UNSENT };
	q->last_seq = m->seq;
	q->count++;
	q->live++;
	q->bytes += len;
	q->enqueued++;
	if (seq != NULL)
		*seq = m->seq;
	pop_head(q);
out:
	pthread_mutex_unlock(&q->lock);
	if (q->wake != NULL && rc != GD_ENOMEM && rc != GD_EINVAL)
		q->wake(q->wake_ctx);
	return rc;
}

bool queue_take(struct uplink_queue *q, size_t max_inflight, struct queue_item *out)
{
	struct queue_msg *m;
	bool taken = false;

	pthread_mutex_lock(&q->lock);
	if (q->inflight >= max_inflight)
		goto out;
	skip_tombstones(q);
	if (q->next == q->count)
		goto out;
	m = at(q, q->next++);
	m->state = MSG_INFLIGHT;
	m->pinned = true;
	m->sends++;
	q->inflight++;
	q->inflight_bytes += m->len;
	*out = (struct queue_item){
		.seq = m->seq, .data = m->data, .len = m->len, .sends = m->sends
	};
	taken = true;
out:
	pthread_mutex_unlock(&q->lock);
	return taken;
}

void queue_release(struct uplink_queue *q, uint64_t seq)
{
	long i;

	pthread_mutex_lock(&q->lock);
	i = find(q, seq);
	if (i >= 0) {
		struct queue_msg *m = at(q, (size_t)i);

		m->pinned = false;
		if (is_tombstone(m)) {
			free(m->data);
			m->data = NULL;
			pop_head(q);
		}
	}
	pthread_mutex_unlock(&q->lock);
}

bool queue_ack(struct uplink_queue *q, uint64_t seq)
{
	bool delivered = false;
	long i;

	pthread_mutex_lock(&q->lock);
	i = find(q, seq);
	if (i >= 0 && !is_tombstone(at(q, (size_t)i))) {
		retire(q, at(q, (size_t)i), MSG_ACKED);
		q->acked++;
		delivered = true;
		pop_head(q);
	}
	pthread_mutex_unlock(&q->lock);
	return delivered;
}

bool queue_failed(struct uplink_queue *q, uint64_t seq, uint32_t sends)
{
	bool current = false;
	long i;

	pthread_mutex_lock(&q->lock);
	i = find(q, seq);
	if (i >= 0) {
		const struct queue_msg *m = at(q, (size_t)i);

		current = m->state == MSG_INFLIGHT && m->sends == sends;
	}
	pthread_mutex_unlock(&q->lock);
	return current;
}

void queue_requeue(struct uplink_queue *q)
{
	pthread_mutex_lock(&q->lock);
	for (size_t i = 0; i < q->next; i++) {
		struct queue_msg *m = at(q, i);

		if (m->state == MSG_INFLIGHT)
			m->state = MSG_UNSENT;
	}
	q->inflight = 0;
	q->inflight_bytes = 0;
	q->next = 0;
	pthread_mutex_unlock(&q->lock);
}

void queue_get_stats(struct uplink_queue *q, struct queue_stats *out)
{
	uint64_t oldest = 0;

	pthread_mutex_lock(&q->lock);
	/* The head is live unless pinned: a scan of one or two entries. */
	for (size_t i = 0; q->live > 0 && i < q->count && oldest == 0; i++) {
		if (!is_tombstone(at(q, i)))
			oldest = at(q, i)->seq;
	}
	*out = (struct queue_stats){ .enqueued = q->enqueued,
				     .acked = q->acked,
				     .dropped = q->dropped,
				     .msgs = q->live,
				     .bytes = q->bytes,
				     .inflight = q->inflight,
				     .oldest = oldest,
				     .last = q->last_seq };
	pthread_mutex_unlock(&q->lock);
}
