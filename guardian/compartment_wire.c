/* compartment_wire.c: the messages between the gateway and an adapter's child, field by field,
 * with exact lengths (compartment.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "compartment.h"

/* ---- writing ------------------------------------------------------------------------------- */

struct out {
	uint8_t *buf;
	size_t cap, len;
	bool full;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->full || o->cap - o->len < n) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void put_u8(struct out *o, uint8_t v)
{
	put(o, &v, 1);
}

static void put_u16(struct out *o, uint16_t v)
{
	put(o, &v, 2);
}

static void put_u32(struct out *o, uint32_t v)
{
	put(o, &v, 4);
}

static void put_u64(struct out *o, uint64_t v)
{
	put(o, &v, 8);
}

/* A string by its length (u16), at most 'max' bytes. */
static void put_text(struct out *o, const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n > max) {
		o->full = true;
		return;
	}
	put_u16(o, (uint16_t)n);
	put(o, s, n);
}

static void put_value(struct out *o, const struct value *v)
{
	put_u8(o, (uint8_t)v->kind);
	switch (v->kind) {
	case VALUE_KIND_BOOL:
		put_u8(o, v->b ? 1 : 0);
		break;
	case VALUE_KIND_INT:
		put_u64(o, (uint64_t)v->i);
		break;
	case VALUE_KIND_UINT:
		put_u64(o, v->u);
		break;
	case VALUE_KIND_FLOAT:
		put(o, &v->f, 8);
		break;
	case VALUE_KIND_STRING:
		put_text(o, v->s, CM_TEXT_MAX);
		break;
	default:
		break;
	}
}

static struct out begin(uint8_t *buf, size_t cap, enum cm_type type, uint32_t seq)
{
	struct out o = { .buf = buf, .cap = cap < CM_MSG_MAX ? cap : CM_MSG_MAX };

	put_u16(&o, (uint16_t)type);
	put_u16(&o, 0);
	put_u32(&o, seq);
	put_u32(&o, 0); /* the length, once known */
	return o;
}

static size_t finish(struct out *o)
{
	uint32_t len = (uint32_t)o->len;

	if (o->full)
		return 0;
	memcpy(o->buf + 8, &len, 4);
	return o->len;
}

long cm_point_index(const struct point *points, size_t npoints, uint32_t id)
{
	/* Points of one adapter are numbered in a row: the first guess is nearly always right. */
	if (npoints > 0 && id >= points[0].id && id - points[0].id < npoints &&
	    points[id - points[0].id].id == id)
		return (long)(id - points[0].id);
	for (size_t i = 0; i < npoints; i++)
		if (points[i].id == id)
			return (long)i;
	return -1;
}

size_t cm_encode_batch(uint8_t *buf, size_t cap, uint32_t seq, const struct sample *samples,
		       size_t n, const struct point *points, size_t npoints, size_t *taken)
{
	struct out o = begin(buf, cap, CM_BATCH, seq);
	size_t count_at = o.len, count = 0, i;

	put_u32(&o, 0);
	put_u8(&o, 0); /* more: set below */
	for (i = 0; i < n && !o.full; i++) {
		const struct sample *s = &samples[i];
		long index = cm_point_index(points, npoints, s->point_id);
		size_t before = o.len;

		if (index < 0)
			continue;
		put_u32(&o, (uint32_t)index);
		put_u8(&o, (uint8_t)s->quality);
		put_u32(&o, s->flags);
		put_u32(&o, (uint32_t)s->code);
		put_u64(&o, (uint64_t)s->ts_ms);
		put_value(&o, &s->value);
		if (o.full) {
			/* This one does not fit: it goes in the next message. */
			o.len = before;
			o.full = false;
			break;
		}
		count++;
	}
	*taken = i;
	if (count == 0 && i < n)
		return 0; /* not even one sample fits */
	memcpy(o.buf + count_at, &(uint32_t){ (uint32_t)count }, 4);
	o.buf[count_at + 4] = i < n ? 1 : 0; /* more of this poll's samples follow */
	return finish(&o);
}

size_t cm_encode_stats(uint8_t *buf, size_t cap, uint32_t seq, const struct adapter_stats *st,
		       const char *fault, const char *json)
{
	struct out o = begin(buf, cap, CM_STATS, seq);

	put_u64(&o, st->polls);
	put_u64(&o, st->polls_ok);
	put_u64(&o, st->timeouts);
	put_u64(&o, st->exceptions);
	put_u64(&o, st->bad_frames);
	put_u64(&o, st->io_errors);
	put_u64(&o, st->reconnects);
	put_u64(&o, st->samples);
	put_u64(&o, (uint64_t)st->last_ok_ms);
	put_u8(&o, st->link_up ? 1 : 0);
	put_text(&o, fault, CM_FAULT_MAX - 1);
	put_text(&o, json, CM_JSON_MAX);
	return finish(&o);
}

size_t cm_encode_answer(uint8_t *buf, size_t cap, uint32_t seq, uint32_t answers, int32_t rc,
			const struct value *v)
{
	struct out o = begin(buf, cap, CM_ANSWER, seq);

	put_u32(&o, answers);
	put_u32(&o, (uint32_t)rc);
	put_value(&o, v);
	return finish(&o);
}

size_t cm_encode_write(uint8_t *buf, size_t cap, uint32_t seq, uint32_t index, int64_t deadline_ms,
		       const struct value *v)
{
	struct out o = begin(buf, cap, CM_WRITE, seq);

	put_u32(&o, index);
	put_u64(&o, (uint64_t)deadline_ms);
	put_value(&o, v);
	return finish(&o);
}

size_t cm_encode_read(uint8_t *buf, size_t cap, uint32_t seq, uint32_t index, int64_t deadline_ms)
{
	struct out o = begin(buf, cap, CM_READ, seq);

	put_u32(&o, index);
	put_u64(&o, (uint64_t)deadline_ms);
	return finish(&o);
}

size_t cm_encode_stop(uint8_t *buf, size_t cap, uint32_t seq)
{
	struct out o = begin(buf, cap, CM_STOP, seq);

	return finish(&o);
}

/* ---- reading ------------------------------------------------------------------------------- */

struct in {
	const uint8_t *buf;
	size_t len, at;
	char *text; /* where strings go */
	size_t text_cap, text_len;
	char *why;
	size_t why_cap;
	bool bad;
};

static bool fail(struct in *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(struct in *in, const char *fmt, ...)
{
	va_list ap;

	if (!in->bad) {
		va_start(ap, fmt);
		vsnprintf(in->why, in->why_cap, fmt, ap);
		va_end(ap);
	}
	in->bad = true;
	return false;
}

static bool get(struct in *in, void *p, size_t n)
{
	if (in->bad)
		return false;
	if (in->len - in->at < n)
		return fail(in, "%s: the message ends early (%lu bytes)", "length",
			    (unsigned long)in->len);
	memcpy(p, in->buf + in->at, n);
	in->at += n;
	return true;
}

static uint8_t get_u8(struct in *in)
{
	uint8_t v = 0;

	get(in, &v, 1);
	return v;
}

static uint16_t get_u16(struct in *in)
{
	uint16_t v = 0;

	get(in, &v, 2);
	return v;
}

static uint32_t get_u32(struct in *in)
{
	uint32_t v = 0;

	get(in, &v, 4);
	return v;
}

static uint64_t get_u64(struct in *in)
{
	uint64_t v = 0;

	get(in, &v, 8);
	return v;
}

/* A string of at most 'max' bytes, without NUL, copied into the text buffer. */
static const char *get_text(struct in *in, size_t max)
{
	size_t n = get_u16(in);
	char *at;

	if (in->bad)
		return "";
	if (n > max) {
		fail(in, "%s: a string of %lu bytes is too long", "text", (unsigned long)n);
		return "";
	}
	if (in->len - in->at < n) {
		fail(in, "%s: the message ends early (%lu bytes)", "length",
		     (unsigned long)in->len);
		return "";
	}
	if (memchr(in->buf + in->at, '\0', n) != NULL) {
		fail(in, "%s: a string holds NUL (%lu bytes)", "text", (unsigned long)n);
		return "";
	}
	if (in->text_cap - in->text_len < n + 1) {
		fail(in, "%s: more strings than the buffer holds (%lu bytes)", "text",
		     (unsigned long)n);
		return "";
	}
	at = in->text + in->text_len;
	memcpy(at, in->buf + in->at, n);
	at[n] = '\0';
	in->at += n;
	in->text_len += n + 1;
	return at;
}

static struct value get_value(struct in *in)
{
	struct value v = { .kind = VALUE_KIND_NONE };
	uint8_t kind = get_u8(in), b;

	switch (kind) {
	case VALUE_KIND_NONE:
		break;
	case VALUE_KIND_BOOL:
		b = get_u8(in);
		if (b > 1)
			fail(in, "%s: a bool of %lu", "value", (unsigned long)b);
		v = (struct value){ .kind = VALUE_KIND_BOOL, .b = b == 1 };
		break;
	case VALUE_KIND_INT:
		v = (struct value){ .kind = VALUE_KIND_INT, .i = (int64_t)get_u64(in) };
		break;
	case VALUE_KIND_UINT:
		v = (struct value){ .kind = VALUE_KIND_UINT, .u = get_u64(in) };
		break;
	case VALUE_KIND_FLOAT:
		v.kind = VALUE_KIND_FLOAT;
		get(in, &v.f, 8);
		break;
	case VALUE_KIND_STRING:
		v = (struct value){ .kind = VALUE_KIND_STRING, .s = get_text(in, CM_TEXT_MAX) };
		break;
	default:
		fail(in, "%s: unknown value kind %lu", "value", (unsigned long)kind);
		break;
	}
	return v;
}

static uint32_t get_index(struct in *in, size_t npoints)
{
	uint32_t index = get_u32(in);

	if (!in->bad && index >= npoints)
		fail(in, "%s: point index %lu out of range", "index", (unsigned long)index);
	return index;
}

static void decode_batch(struct in *in, size_t npoints, struct cm_msg *m, struct sample *samples,
			 size_t cap)
{
	uint32_t n = get_u32(in);
	uint8_t more = get_u8(in);

	if (!in->bad && more > 1)
		fail(in, "%s: a 'more' of %lu", "batch", (unsigned long)more);
	m->more = more == 1;
	if (!in->bad && n > cap) {
		fail(in, "%s: %lu samples in one message", "batch", (unsigned long)n);
		return;
	}
	for (uint32_t i = 0; i < n && !in->bad; i++) {
		struct sample *s = &samples[i];
		uint8_t q;

		s->point_id = get_index(in, npoints);
		q = get_u8(in);
		if (!in->bad && q > QUALITY_BAD_VALUE)
			fail(in, "%s: unknown quality %lu", "quality", (unsigned long)q);
		s->quality = (enum quality)q;
		s->flags = get_u32(in);
		s->code = (int32_t)get_u32(in);
		s->ts_ms = (int64_t)get_u64(in);
		s->value = get_value(in);
	}
	m->nsamples = n;
}

static void decode_stats(struct in *in, struct cm_msg *m)
{
	uint8_t up;

	m->stats.polls = get_u64(in);
	m->stats.polls_ok = get_u64(in);
	m->stats.timeouts = get_u64(in);
	m->stats.exceptions = get_u64(in);
	m->stats.bad_frames = get_u64(in);
	m->stats.io_errors = get_u64(in);
	m->stats.reconnects = get_u64(in);
	m->stats.samples = get_u64(in);
	m->stats.last_ok_ms = (int64_t)get_u64(in);
	up = get_u8(in);
	if (!in->bad && up > 1)
		fail(in, "%s: link_up of %lu", "stats", (unsigned long)up);
	m->stats.link_up = up;
	m->fault = get_text(in, CM_FAULT_MAX - 1);
	m->json = get_text(in, CM_JSON_MAX);
}

int cm_decode(const uint8_t *buf, size_t len, uint32_t seq, bool from_child, size_t npoints,
	      struct cm_msg *m, struct sample *samples, size_t cap, char *text, size_t text_cap,
	      char *why, size_t why_cap)
{
	struct in in = { .buf = buf,
			 .len = len,
			 .text = text,
			 .text_cap = text_cap,
			 .why = why,
			 .why_cap = why_cap };
	uint16_t type, zero;
	uint32_t total;

	*m = (struct cm_msg){ .fault = "", .json = "" };
	why[0] = '\0';
	if (len < CM_HDR_LEN || len > CM_MSG_MAX) {
		snprintf(why, why_cap, "a message of %zu bytes (%d to %d)", len, CM_HDR_LEN,
			 CM_MSG_MAX);
		return GD_EPROTO;
	}
	type = get_u16(&in);
	zero = get_u16(&in);
	m->seq = get_u32(&in);
	total = get_u32(&in);
	if (total != len || zero != 0) {
		snprintf(why, why_cap, "a header that says %u bytes in a message of %zu", total,
			 len);
		return GD_EPROTO;
	}
	if (m->seq != seq) {
		snprintf(why, why_cap, "message %u where %u was due", m->seq, seq);
		return GD_EPROTO;
	}
	m->type = (enum cm_type)type;
	if (from_child ? (type < CM_BATCH || type > CM_ANSWER)
		       : (type < CM_WRITE || type > CM_STOP)) {
		snprintf(why, why_cap, "a message of unknown type %u", type);
		return GD_EPROTO;
	}
	switch (m->type) {
	case CM_BATCH:
		decode_batch(&in, npoints, m, samples, cap);
		break;
	case CM_STATS:
		decode_stats(&in, m);
		break;
	case CM_ANSWER:
		m->answers = get_u32(&in);
		m->rc = (int32_t)get_u32(&in);
		m->value = get_value(&in);
		break;
	case CM_WRITE:
		m->index = get_index(&in, npoints);
		m->deadline_ms = (int64_t)get_u64(&in);
		m->value = get_value(&in);
		break;
	case CM_READ:
		m->index = get_index(&in, npoints);
		m->deadline_ms = (int64_t)get_u64(&in);
		break;
	case CM_STOP:
		break;
	}
	if (!in.bad && in.at != len)
		fail(&in, "%s: %lu bytes more than the message holds", "length",
		     (unsigned long)(len - in.at));
	return in.bad ? GD_EPROTO : 0;
}
