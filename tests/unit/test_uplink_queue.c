/* test_uplink_queue.c: the send queue keeps order, leaves only on acknowledgement, drops by policy.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../uplink/queue.h"

/* Pushes a 'len'-byte message whose bytes all read 'fill'; returns its sequence number. */
static uint64_t push_fill(struct uplink_queue *q, size_t len, char fill)
{
	char buf[256];
	uint64_t seq = 0;

	cr_assert_leq(len, sizeof(buf));
	memset(buf, fill, len);
	cr_assert_eq(queue_push(q, buf, len, &seq), 0, "push of %zu bytes refused", len);
	return seq;
}

static struct queue_item take(struct uplink_queue *q, size_t max_inflight)
{
	struct queue_item it;

	cr_assert(queue_take(q, max_inflight, &it), "nothing to take");
	queue_release(q, it.seq);
	return it;
}

static struct queue_stats stats(struct uplink_queue *q)
{
	struct queue_stats s;

	queue_get_stats(q, &s);
	return s;
}

Test(uplink_queue, keeps_order_and_copies_payloads)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);
	char msg[16];

	for (int i = 1; i <= 5; i++) {
		uint64_t seq;

		snprintf(msg, sizeof(msg), "m%d", i);
		cr_assert_eq(queue_push(q, msg, strlen(msg), &seq), 0);
		cr_assert_eq(seq, (uint64_t)i);
	}
	strcpy(msg, "clobbered"); /* the queue holds copies */
	for (int i = 1; i <= 5; i++) {
		struct queue_item it;

		cr_assert(queue_take(q, 10, &it));
		snprintf(msg, sizeof(msg), "m%d", i);
		cr_assert_eq(it.seq, (uint64_t)i);
		cr_assert_eq(it.len, strlen(msg));
		cr_assert_eq(memcmp(it.data, msg, it.len), 0);
		cr_assert_eq(it.sends, 1);
		queue_release(q, it.seq);
	}
	cr_assert_not(queue_take(q, 10, &(struct queue_item){ 0 }), "all five are in flight");
	cr_assert_eq(stats(q).msgs, 5, "nothing leaves before it is acknowledged");
	cr_assert_eq(stats(q).inflight, 5);
	queue_free(q);
}

Test(uplink_queue, max_inflight_limits_takes)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_item it;

	for (int i = 0; i < 4; i++)
		push_fill(q, 8, 'a');
	cr_assert_eq(take(q, 2).seq, 1);
	cr_assert_eq(take(q, 2).seq, 2);
	cr_assert_not(queue_take(q, 2, &it), "a third message with max_inflight 2");
	cr_assert(queue_ack(q, 1));
	cr_assert_eq(take(q, 2).seq, 3, "an acknowledgement makes room");
	queue_free(q);
}

Test(uplink_queue, acked_messages_leave_from_the_head_only)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_stats s;

	for (int i = 0; i < 3; i++)
		push_fill(q, 10, 'x');
	for (int i = 0; i < 3; i++)
		take(q, 8);
	cr_assert(queue_ack(q, 2));
	s = stats(q);
	cr_assert_eq(s.msgs, 2);
	cr_assert_eq(s.bytes, 20);
	cr_assert_eq(s.oldest, 1, "message 1 still holds the head");
	cr_assert_eq(s.inflight, 2);
	cr_assert_not(queue_ack(q, 2), "a second acknowledgement changes nothing");
	cr_assert_not(queue_ack(q, 99), "nor does an unknown one");
	cr_assert(queue_ack(q, 1));
	s = stats(q);
	cr_assert_eq(s.oldest, 3);
	cr_assert_eq(s.msgs, 1);
	cr_assert(queue_ack(q, 3));
	s = stats(q);
	cr_assert_eq(s.msgs, 0);
	cr_assert_eq(s.bytes, 0);
	cr_assert_eq(s.oldest, 0);
	cr_assert_eq(s.acked, 3);
	cr_assert_eq(s.last, 3);
	queue_free(q);
}

Test(uplink_queue, requeue_resends_from_the_head_in_order)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_item it;

	for (int i = 0; i < 5; i++)
		push_fill(q, 4, 'r');
	for (int i = 0; i < 3; i++)
		take(q, 8); /* 1, 2, 3 in flight */
	cr_assert(queue_ack(q, 1));
	queue_requeue(q); /* the connection went */
	cr_assert_eq(stats(q).inflight, 0);
	cr_assert_eq(stats(q).msgs, 4);
	it = take(q, 8);
	cr_assert_eq(it.seq, 2, "resending starts at the oldest unacknowledged message");
	cr_assert_eq(it.sends, 2);
	it = take(q, 8);
	cr_assert_eq(it.seq, 3);
	cr_assert_eq(it.sends, 2);
	it = take(q, 8);
	cr_assert_eq(it.seq, 4);
	cr_assert_eq(it.sends, 1);
	it = take(q, 8);
	cr_assert_eq(it.seq, 5);
	cr_assert_not(queue_take(q, 8, &it));
	queue_free(q);
}

Test(uplink_queue, late_acknowledgement_of_a_requeued_message_delivers_it)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);

	push_fill(q, 4, 'a');
	push_fill(q, 4, 'b');
	take(q, 8);
	take(q, 8);
	queue_requeue(q);
	/* The broker had it: the acknowledgement of the first send still counts. */
	cr_assert(queue_ack(q, 1));
	cr_assert_eq(take(q, 8).seq, 2, "message 1 is not sent again");
	queue_free(q);
}

Test(uplink_queue, failure_counts_only_for_the_current_send)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_item first, second;

	push_fill(q, 4, 'f');
	first = take(q, 8);
	cr_assert(queue_failed(q, first.seq, first.sends));
	queue_requeue(q);
	cr_assert_not(queue_failed(q, first.seq, first.sends), "unsent now");
	second = take(q, 8);
	cr_assert_eq(second.sends, 2);
	cr_assert_not(queue_failed(q, first.seq, first.sends), "a stale failure of send 1");
	cr_assert(queue_failed(q, second.seq, second.sends));
	cr_assert(queue_ack(q, second.seq));
	cr_assert_not(queue_failed(q, second.seq, second.sends), "delivered");
	queue_free(q);
}

Test(uplink_queue, drop_oldest_drops_exactly_what_makes_room)
{
	struct uplink_queue *q = queue_new(100, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_stats s;

	for (int i = 0; i < 10; i++)
		push_fill(q, 10, (char)('0' + i)); /* seq 1..10, full */
	cr_assert_eq(push_fill(q, 10, 'A'), 11);
	s = stats(q);
	cr_assert_eq(s.dropped, 1);
	cr_assert_eq(s.oldest, 2, "the oldest went");
	cr_assert_eq(s.msgs, 10);
	cr_assert_eq(s.bytes, 100);
	cr_assert_eq(push_fill(q, 25, 'B'), 12); /* needs 25: drops 2, 3, 4 */
	s = stats(q);
	cr_assert_eq(s.dropped, 4);
	cr_assert_eq(s.oldest, 5);
	cr_assert_eq(s.bytes, 95);
	cr_assert_eq(s.enqueued, 12);
	queue_free(q);
}

Test(uplink_queue, drop_oldest_spares_messages_in_flight)
{
	struct uplink_queue *q = queue_new(100, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_item it;
	struct queue_stats s;

	for (int i = 0; i < 10; i++)
		push_fill(q, 10, 'z');
	take(q, 2); /* 1 and 2 in flight */
	take(q, 2);
	for (int i = 0; i < 3; i++)
		push_fill(q, 10, 'n'); /* drops 3, 4, 5 */
	s = stats(q);
	cr_assert_eq(s.dropped, 3);
	cr_assert_eq(s.oldest, 1);
	cr_assert_eq(s.inflight, 2);
	cr_assert(queue_ack(q, 1));
	cr_assert(queue_ack(q, 2));
	cr_assert(queue_take(q, 2, &it));
	cr_assert_eq(it.seq, 6, "3, 4 and 5 were dropped");
	queue_release(q, it.seq);
	queue_free(q);
}

Test(uplink_queue, drop_oldest_refuses_when_only_messages_in_flight_remain)
{
	struct uplink_queue *q = queue_new(100, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_stats s;

	for (int i = 0; i < 9; i++)
		push_fill(q, 10, 'i');
	for (int i = 0; i < 9; i++)
		take(q, 16); /* 90 bytes in flight, 10 free */
	cr_assert_eq(queue_push(q, "0123456789abcdef", 16, NULL), GD_EFULL);
	s = stats(q);
	cr_assert_eq(s.dropped, 1, "only the new message");
	cr_assert_eq(s.msgs, 9);
	cr_assert_eq(s.enqueued, 9);
	cr_assert_eq(queue_push(q, "0123456789", 10, NULL), 0, "what fits still goes in");
	queue_free(q);
}

Test(uplink_queue, drop_newest_refuses_the_new_message)
{
	struct uplink_queue *q = queue_new(100, QUEUE_DROP_NEWEST, NULL, NULL);
	struct queue_stats s;
	uint64_t seq = 0;

	for (int i = 0; i < 10; i++)
		push_fill(q, 10, 'o');
	cr_assert_eq(queue_push(q, "x", 1, NULL), GD_EFULL);
	cr_assert_eq(queue_push(q, "y", 1, NULL), GD_EFULL);
	s = stats(q);
	cr_assert_eq(s.dropped, 2);
	cr_assert_eq(s.oldest, 1, "the old ones stay");
	cr_assert_eq(s.msgs, 10);
	take(q, 1);
	cr_assert(queue_ack(q, 1));
	cr_assert_eq(queue_push(q, "z", 1, &seq), 0, "room again");
	cr_assert_eq(seq, 11, "refused messages use no sequence number");
	queue_free(q);
}

Test(uplink_queue, refuses_a_message_larger_than_the_bound)
{
	enum queue_drop policies[] = { QUEUE_DROP_OLDEST, QUEUE_DROP_NEWEST };

	for (size_t p = 0; p < 2; p++) {
		struct uplink_queue *q = queue_new(100, policies[p], NULL, NULL);
		char big[101];

		memset(big, 'b', sizeof(big));
		push_fill(q, 10, 'k');
		cr_assert_eq(queue_push(q, big, 101, NULL), GD_EFULL);
		cr_assert_eq(stats(q).dropped, 1);
		cr_assert_eq(stats(q).msgs, 1, "nothing dropped for a message that can never fit");
		take(q, 1);
		cr_assert(queue_ack(q, 1));
		cr_assert_eq(queue_push(q, big, 100, NULL), 0, "exactly the bound fits");
		cr_assert_eq(queue_push(q, big, 0, NULL), GD_EINVAL);
		queue_free(q);
	}
}

Test(uplink_queue, payload_stays_valid_while_pinned)
{
	struct uplink_queue *q = queue_new(1024, QUEUE_DROP_OLDEST, NULL, NULL);
	struct queue_item it;

	cr_assert_eq(queue_push(q, "pinned!", 7, NULL), 0);
	cr_assert(queue_take(q, 1, &it));
	cr_assert(queue_ack(q, it.seq), "acknowledged before the sender let go");
	cr_assert_eq(memcmp(it.data, "pinned!", 7), 0, "still readable (ASan would object)");
	cr_assert_eq(stats(q).msgs, 0);
	queue_release(q, it.seq);
	queue_free(q);
}

Test(uplink_queue, long_run_through_ring_growth_and_shrink)
{
	struct uplink_queue *q = queue_new(1 << 20, QUEUE_DROP_OLDEST, NULL, NULL);
	uint64_t expect = 1, window[7];
	size_t n = 0;

	for (int round = 0; round < 20; round++) {
		struct queue_item it;

		for (int i = 0; i < 300; i++)
			push_fill(q, 16, (char)(expect + (uint64_t)i));
		while (queue_take(q, 7, &it)) {
			cr_assert_eq(it.seq, expect, "round %d", round);
			cr_assert_eq(it.data[0], (char)it.seq);
			expect++;
			queue_release(q, it.seq);
			window[n++] = it.seq;
			if (n == 7 || expect % 300 == 1) {
				while (n > 0) /* acknowledged backwards: out of order */
					cr_assert(queue_ack(q, window[--n]));
			}
		}
		cr_assert_eq(stats(q).msgs, 0, "round %d", round);
	}
	cr_assert_eq(expect, 6001);
	cr_assert_eq(stats(q).acked, 6000);
	queue_free(q);
}

static void count_wake(void *ctx)
{
	(*(int *)ctx)++;
}

Test(uplink_queue, push_wakes_the_sender)
{
	int wakes = 0;
	struct uplink_queue *q = queue_new(16, QUEUE_DROP_NEWEST, count_wake, &wakes);

	push_fill(q, 8, 'w');
	cr_assert_eq(wakes, 1);
	cr_assert_eq(queue_push(q, "0123456789", 10, NULL), GD_EFULL);
	cr_assert_eq(wakes, 2, "a drop wakes it too (it logs drops)");
	queue_free(q);
}

struct producer {
	struct uplink_queue *q;
	int n;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	char msg[32];

	for (int i = 1; i <= p->n; i++) {
		int len = snprintf(msg, sizeof(msg), "%d", i);

		cr_assert_eq(queue_push(p->q, msg, (size_t)len, NULL), 0);
	}
	return NULL;
}

Test(uplink_queue, one_producer_one_sender_across_threads)
{
	struct producer p = { .q = queue_new(1 << 20, QUEUE_DROP_OLDEST, NULL, NULL), .n = 20000 };
	pthread_t thread;
	int got = 0;

	cr_assert_eq(pthread_create(&thread, NULL, produce, &p), 0);
	while (got < p.n) {
		struct queue_item it;
		char expect[32];

		if (!queue_take(p.q, 32, &it))
			continue;
		got++;
		snprintf(expect, sizeof(expect), "%d", got);
		cr_assert_eq(it.seq, (uint64_t)got);
		cr_assert_eq(it.len, strlen(expect));
		cr_assert_eq(memcmp(it.data, expect, it.len), 0);
		queue_release(p.q, it.seq);
		cr_assert(queue_ack(p.q, it.seq));
	}
	pthread_join(thread, NULL);
	cr_assert_eq(stats(p.q).msgs, 0);
	cr_assert_eq(stats(p.q).dropped, 0);
	queue_free(p.q);
}
