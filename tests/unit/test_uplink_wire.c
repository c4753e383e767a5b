/* test_uplink_wire.c: the channel between guardian and its uplink child (guardian/uplink_wire.h):
 * every type goes and comes back whole, long messages in frames; a wrong length, an unknown type,
 * a type of the other direction, a frame out of sequence or cut short are refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../base/base.h"
#include "../../guardian/uplink_wire.h"

#define MAX_MESSAGE 131072

static int sv[2];
static struct uw_chan parent, child;

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	cr_assert_eq(uw_chan_init(&parent, sv[0], true, MAX_MESSAGE), 0);
	cr_assert_eq(uw_chan_init(&child, sv[1], false, MAX_MESSAGE), 0);
}

static void teardown(void)
{
	uw_chan_release(&parent);
	uw_chan_release(&child);
	close(sv[0]);
	close(sv[1]);
}

TestSuite(uplink_wire, .init = setup, .fini = teardown);

/* Sends 'len' bytes of 'data' as 'type' from 'from' and expects them whole at 'to'. */
static void round_trip(struct uw_chan *from, struct uw_chan *to, uint16_t type, const void *data,
		       size_t len)
{
	struct uw_msg m;

	cr_assert_eq(uw_send(from, type, (struct iovec[]){ { (void *)(uintptr_t)data, len } },
			     len > 0 ? 1 : 0),
		     0, "type %u, %zu bytes not sent", type, len);
	cr_assert_eq(uw_recv(to, &m), 0, "type %u, %zu bytes not received", type, len);
	cr_expect_eq(m.type, type);
	cr_assert_eq(m.len, len);
	if (len > 0)
		cr_expect_eq(memcmp(m.data, data, len), 0);
}

Test(uplink_wire, every_type_goes_and_comes_back_whole)
{
	uint8_t buf[256] = { 0 };
	struct uw_stats st;
	uint64_t seq = 42;

	memcpy(buf, &seq, 8);
	memcpy(buf + 8, "{\"seq\":42}", 10);
	round_trip(&parent, &child, UW_TELEMETRY, buf, 18);
	round_trip(&parent, &child, UW_HEALTH, "{\"state\":\"online\"}", 18);
	round_trip(&parent, &child, UW_HEALTH, "", 0);
	round_trip(&parent, &child, UW_HOLD, "\1\0\0\0", 4);
	round_trip(&parent, &child, UW_RECONNECT, NULL, 0);
	round_trip(&parent, &child, UW_START, NULL, 0);
	round_trip(&parent, &child, UW_SUBSCRIBE, buf, 4 + UW_SUBTOPIC_MAX);
	round_trip(&parent, &child, UW_EVENT, buf, 8 + UW_SUBTOPIC_MAX + 5);
	round_trip(&parent, &child, UW_CREDENTIALS, "\3\0\0\0keycert", 11);
	round_trip(&parent, &child, UW_STOP, "\xe8\3\0\0", 4);
	round_trip(&child, &parent, UW_HELLO, &seq, 8);
	round_trip(&child, &parent, UW_COMMAND, "\0\0\0\0{}", 6);
	round_trip(&child, &parent, UW_ACK, buf, 12);
	memset(&st, 0x5a, sizeof(st));
	round_trip(&child, &parent, UW_STATS, &st, sizeof(st));
	round_trip(&child, &parent, UW_STOPPED, NULL, 0);
	round_trip(&child, &parent, UW_TAKEN, &seq, 8);
	round_trip(&child, &parent, UW_PROBLEM, "a line", 6);
}

Test(uplink_wire, a_long_message_goes_in_frames_and_comes_back_whole)
{
	size_t len = 2 * UW_FRAME_MAX + 100; /* three frames: within one socket buffer */
	uint8_t *big = malloc(len);

	cr_assert_not_null(big);
	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)(i * 7);
	/* Two whole frames and a part; the reader takes them as one. */
	round_trip(&parent, &child, UW_TELEMETRY, big, len);
	cr_expect_eq(parent.sent, 3);
	cr_expect_eq(child.got, 3);
	/* And the numbering goes on across messages. */
	round_trip(&parent, &child, UW_RECONNECT, NULL, 0);
	cr_expect_eq(child.got, 4);
	free(big);
}

Test(uplink_wire, a_length_its_type_does_not_allow_is_not_sent)
{
	uint8_t buf[16] = { 0 };
	size_t len = 8 + MAX_MESSAGE + 1;
	uint8_t *big = calloc(1, len);

	cr_assert_not_null(big);
	cr_expect_eq(uw_send(&parent, UW_HOLD, (struct iovec[]){ { buf, 3 } }, 1), GD_EINVAL);
	cr_expect_eq(uw_send(&parent, UW_HOLD, (struct iovec[]){ { buf, 5 } }, 1), GD_EINVAL);
	cr_expect_eq(uw_send(&parent, UW_RECONNECT, (struct iovec[]){ { buf, 1 } }, 1), GD_EINVAL);
	cr_expect_eq(uw_send(&parent, UW_TELEMETRY, (struct iovec[]){ { buf, 8 } }, 1), GD_EINVAL);
	cr_expect_eq(uw_send(&parent, UW_TELEMETRY, (struct iovec[]){ { big, len } }, 1),
		     GD_EINVAL);
	/* A type of the other direction. */
	cr_expect_eq(uw_send(&parent, UW_HELLO, (struct iovec[]){ { buf, 8 } }, 1), GD_EINVAL);
	cr_expect_eq(uw_send(&child, UW_HOLD, (struct iovec[]){ { buf, 4 } }, 1), GD_EINVAL);
	cr_expect_eq(parent.sent, 0, "a refused message went out in part");
	free(big);
}

/* Writes one raw frame on the parent's socket, for the child to read. */
static void raw(uint16_t type, uint16_t flags, uint32_t len, uint64_t seq, const void *payload,
		size_t n)
{
	uint8_t frame[UW_HEADER_LEN + 64] = { 0 };

	memcpy(frame, &type, 2);
	memcpy(frame + 2, &flags, 2);
	memcpy(frame + 4, &len, 4);
	memcpy(frame + 8, &seq, 8);
	if (n > 0)
		memcpy(frame + UW_HEADER_LEN, payload, n);
	cr_assert_eq(send(sv[0], frame, UW_HEADER_LEN + n, 0), (ssize_t)(UW_HEADER_LEN + n));
}

static int child_reads(void)
{
	struct uw_msg m;

	return uw_recv(&child, &m);
}

Test(uplink_wire, an_unknown_type_is_refused)
{
	raw(999, 0, 0, 1, NULL, 0);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, a_type_of_the_other_direction_is_refused)
{
	uint64_t seq = 1;

	raw(UW_HELLO, 0, 8, 1, &seq, 8);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, a_wrong_exact_length_is_refused)
{
	raw(UW_HOLD, 0, 3, 1, "\1\0\0", 3);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, a_header_that_lies_about_its_length_is_refused)
{
	raw(UW_HOLD, 0, 8, 1, "\1\0\0\0", 4);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, a_frame_out_of_sequence_is_refused)
{
	raw(UW_RECONNECT, 0, 0, 1, NULL, 0);
	cr_expect_eq(child_reads(), 0);
	raw(UW_RECONNECT, 0, 0, 3, NULL, 0); /* 2 is missing */
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, a_short_frame_flagged_more_is_refused)
{
	raw(UW_HEALTH, UW_MORE, 4, 1, "{\"a\"", 4);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, a_frame_shorter_than_a_header_is_refused)
{
	cr_assert_eq(send(sv[0], "abc", 3, 0), 3);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, unknown_flags_are_refused)
{
	raw(UW_RECONNECT, 0x80, 0, 1, NULL, 0);
	cr_expect_eq(child_reads(), GD_EPROTO);
}

Test(uplink_wire, the_end_of_the_channel_is_not_a_message)
{
	close(sv[0]);
	sv[0] = -1;
	cr_expect_eq(child_reads(), GD_EIO);
	cr_expect_eq(errno, 0);
}

Test(uplink_wire, subtopics_in_their_fixed_field)
{
	char field[UW_SUBTOPIC_MAX], out[UW_SUBTOPIC_MAX];
	uint8_t raw_field[UW_SUBTOPIC_MAX];

	cr_expect_eq(uw_subtopic_put(field, "cmd/result"), 0);
	cr_expect_eq(uw_subtopic_get((const uint8_t *)field, out), 0);
	cr_expect_str_eq(out, "cmd/result");
	cr_expect_eq(uw_subtopic_put(field, "this/one/is/far/too/long/to/fit/in/sixty/four/bytes/"
					    "of/a/field/yes"),
		     GD_EINVAL);
	memset(raw_field, 'a', sizeof(raw_field)); /* no NUL */
	cr_expect_eq(uw_subtopic_get(raw_field, out), GD_EPROTO);
	memset(raw_field, 0, sizeof(raw_field));
	cr_expect_eq(uw_subtopic_get(raw_field, out), GD_EPROTO); /* empty */
	memcpy(raw_field, "a/#", 4);
	cr_expect_eq(uw_subtopic_get(raw_field, out), GD_EPROTO); /* a wildcard */
}
