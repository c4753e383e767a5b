/* uplink_wire.c: the framing and the length rules of guardian's channel to its uplink child. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../base/base.h"
#include "uplink_wire.h"

struct bounds {
	uint16_t type;
	bool to_parent;
	size_t min, max; /* max 0: max_message plus 'extra' */
	size_t extra;
};

/* Every type: who sends it and how long it may be (uplink_wire.h says what each holds). */
static const struct bounds table[] = {
	{ .type = UW_TELEMETRY, .min = 8 + 1, .max = 0, .extra = 8 },
	{ .type = UW_HEALTH, .min = 0, .max = UW_HEALTH_MAX },
	{ .type = UW_HOLD, .min = 4, .max = 4 },
	{ .type = UW_RECONNECT, .min = 0, .max = 0 + 0, .extra = SIZE_MAX },
	{ .type = UW_SUBSCRIBE, .min = 4 + UW_SUBTOPIC_MAX, .max = 4 + UW_SUBTOPIC_MAX },
	{ .type = UW_START, .min = 0, .max = 0, .extra = SIZE_MAX },
	{ .type = UW_EVENT, .min = 8 + UW_SUBTOPIC_MAX, .max = 0, .extra = 8 + UW_SUBTOPIC_MAX },
	{ .type = UW_CREDENTIALS, .min = 4 + 2, .max = 4 + UW_CRED_MAX },
	{ .type = UW_STOP, .min = 4, .max = 4 },
	{ .type = UW_HELLO, .to_parent = true, .min = 8, .max = 8 },
	{ .type = UW_COMMAND, .to_parent = true, .min = 4, .max = 4 + UW_EXTRA_MAX },
	{ .type = UW_ACK, .to_parent = true, .min = 12, .max = 12 },
	{ .type = UW_STATS,
	  .to_parent = true,
	  .min = sizeof(struct uw_stats),
	  .max = sizeof(struct uw_stats) },
	{ .type = UW_STOPPED, .to_parent = true, .min = 0, .max = 0, .extra = SIZE_MAX },
	{ .type = UW_PROBLEM, .to_parent = true, .min = 1, .max = 512 },
	{ .type = UW_TAKEN, .to_parent = true, .min = 8, .max = 8 },
};

int uw_bounds(uint16_t type, bool to_parent, size_t max_message, size_t *min, size_t *max)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct bounds *b = &table[i];

		if (b->type != type || b->to_parent != to_parent)
			continue;
		*min = b->min;
		/* extra SIZE_MAX: exactly empty; max 0 with an extra: the uplink's bound. */
		*max = b->max != 0 || b->extra == SIZE_MAX ? b->max : max_message + b->extra;
		return 0;
	}
	return GD_EPROTO;
}

int uw_chan_init(struct uw_chan *c, int fd, bool parent, size_t max_message)
{
	*c = (struct uw_chan){ .fd = fd, .parent = parent, .max_message = max_message };
	c->frame = malloc(UW_HEADER_LEN + UW_FRAME_MAX);
	return c->frame != NULL ? 0 : GD_ENOMEM;
}

void uw_chan_release(struct uw_chan *c)
{
	free(c->buf);
	free(c->frame);
	c->buf = c->frame = NULL;
	c->cap = 0;
}

static void header_put(uint8_t *h, uint16_t type, uint16_t flags, uint32_t len, uint64_t seq)
{
	memcpy(h, &type, 2);
	memcpy(h + 2, &flags, 2);
	memcpy(h + 4, &len, 4);
	memcpy(h + 8, &seq, 8);
}

/* Sends one frame: the header and 'len' bytes gathered from 'iov' from (*at, *off) on. */
static int frame_send(struct uw_chan *c, uint16_t type, uint16_t flags, size_t len,
		      const struct iovec *iov, int niov, int *at, size_t *off)
{
	struct iovec parts[16];
	uint8_t header[UW_HEADER_LEN];
	int n = 1;
	size_t left = len;
	ssize_t sent;

	header_put(header, type, flags, (uint32_t)len, ++c->sent);
	parts[0] = (struct iovec){ .iov_base = header, .iov_len = sizeof(header) };
	while (left > 0 && *at < niov && n < 16) {
		size_t room = iov[*at].iov_len - *off, take = room < left ? room : left;

		if (take > 0)
			parts[n++] =
				(struct iovec){ .iov_base = (uint8_t *)iov[*at].iov_base + *off,
						.iov_len = take };
		left -= take;
		*off += take;
		if (*off == iov[*at].iov_len) {
			(*at)++;
			*off = 0;
		}
	}
	if (left > 0) {
		errno = EMSGSIZE;
		return GD_EINVAL;
	}
	do
		sent = sendmsg(c->fd, &(struct msghdr){ .msg_iov = parts, .msg_iovlen = (size_t)n },
			       MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent != (ssize_t)(UW_HEADER_LEN + len))
		return GD_EIO;
	return 0;
}

int uw_send(struct uw_chan *c, uint16_t type, const struct iovec *iov, int niov)
{
	size_t total = 0, min, max;
	int at = 0, rc;
	size_t off = 0;

	for (int i = 0; i < niov; i++)
		total += iov[i].iov_len;
	if (uw_bounds(type, !c->parent, c->max_message, &min, &max) != 0 || total < min ||
	    total > max)
		return GD_EINVAL;
	do {
		size_t len = total > UW_FRAME_MAX ? UW_FRAME_MAX : total;

		rc = frame_send(c, type, total > UW_FRAME_MAX ? UW_MORE : 0, len, iov, niov, &at,
				&off);
		total -= len;
	} while (rc == 0 && total > 0);
	return rc;
}

int uw_recv(struct uw_chan *c, struct uw_msg *out)
{
	size_t have = 0, min = 0, max = 0;
	uint16_t type = 0;

	for (;;) {
		uint16_t ftype, flags;
		uint32_t len;
		uint64_t seq;
		ssize_t n;

		do
			n = recv(c->fd, c->frame, UW_HEADER_LEN + UW_FRAME_MAX, MSG_TRUNC);
		while (n < 0 && errno == EINTR);
		if (n == 0)
			errno = 0;
		if (n <= 0)
			return GD_EIO;
		if (n < UW_HEADER_LEN || n > UW_HEADER_LEN + UW_FRAME_MAX)
			return GD_EPROTO;
		memcpy(&ftype, c->frame, 2);
		memcpy(&flags, c->frame + 2, 2);
		memcpy(&len, c->frame + 4, 4);
		memcpy(&seq, c->frame + 8, 8);
		if (len != (size_t)n - UW_HEADER_LEN || seq != c->got + 1 ||
		    (flags & ~UW_MORE) != 0)
			return GD_EPROTO;
		c->got = seq;
		if (have == 0 && type == 0) {
			if (uw_bounds(ftype, c->parent, c->max_message, &min, &max) != 0)
				return GD_EPROTO;
			type = ftype;
		} else if (ftype != type) {
			return GD_EPROTO;
		}
		if ((flags & UW_MORE) && len != UW_FRAME_MAX)
			return GD_EPROTO;
		if (len > max - have)
			return GD_EPROTO;
		if (have + len > c->cap) {
			size_t want = have + len + ((flags & UW_MORE) ? UW_FRAME_MAX : 0);
			uint8_t *grown = realloc(c->buf, want);

			if (grown == NULL)
				return GD_ENOMEM;
			c->buf = grown;
			c->cap = want;
		}
		if (len > 0)
			memcpy(c->buf + have, c->frame + UW_HEADER_LEN, len);
		have += len;
		if (!(flags & UW_MORE))
			break;
	}
	if (have < min)
		return GD_EPROTO;
	*out = (struct uw_msg){ .type = type, .data = c->buf, .len = have };
	return 0;
}

int uw_subtopic_put(char out[UW_SUBTOPIC_MAX], const char *subtopic)
{
	size_t n = strlen(subtopic);

	if (n >= UW_SUBTOPIC_MAX)
		return GD_EINVAL;
	memset(out, 0, UW_SUBTOPIC_MAX);
	memcpy(out, subtopic, n);
	return 0;
}

int uw_subtopic_get(const uint8_t *field, char out[UW_SUBTOPIC_MAX])
{
	const uint8_t *end = memchr(field, '\0', UW_SUBTOPIC_MAX);

	if (end == NULL)
		return GD_EPROTO;
	memcpy(out, field, (size_t)(end - field) + 1);
	if (out[0] == '\0' || strpbrk(out, "+#") != NULL)
		return GD_EPROTO;
	return 0;
}
