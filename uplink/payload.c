/* payload.c: telemetry JSON documents, written by hand into the caller's buffer (no allocation). */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "uplink.h"

/* A bounded writer: once something does not fit, 'full' is set and nothing more is written. */
struct writer {
	char *buf;
	size_t cap; /* bytes available, the terminating NUL included */
	size_t len;
	bool full;
};

static void put(struct writer *w, const char *s, size_t n)
{
	if (w->full)
		return;
	if (n >= w->cap - w->len) {
		w->full = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void put_str(struct writer *w, const char *s)
{
	put(w, s, strlen(s));
}

static void put_fmt(struct writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_fmt(struct writer *w, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		w->full = true;
		return;
	}
	put(w, tmp, (size_t)n);
}


/*
 * Writes 's' as a JSON string: quotes and backslashes escaped, control
 * characters as \u00XX, bytes that are not UTF-8 as U+FFFD.
 */
static void put_json_string(struct writer *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	put(w, "\"", 1);
	while (*p != '\0' && !w->full) {
		const unsigned char *run = p;
		size_t n;

		/* Copy the longest run that needs no escaping in one go. */
		while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		put(w, (const char *)run, (size_t)(p - run));
		if (*p == '\0')
			break;
		if (*p == '"' || *p == '\\') {
			char esc[2] = { '\\', (char)*p };

			put(w, esc, 2);
			p++;
		} else if (*p < 0x20) {
			put_fmt(w, "\\u%04x", *p);
			p++;
		} else if ((n = utf8_seq_len(p)) != 0) {
			put(w, (const char *)p, n);
			p += n;
		} else {
			put_str(w, "\\ufffd");
			p++;
		}
	}
	put(w, "\"", 1);
}

void payload_format_double(char *out, size_t cap, double d)
{
	if (!isfinite(d)) {
		snprintf(out, cap, "null"); /* JSON has no NaN or infinity */
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, cap, "%.*g", prec, d);
		if (prec == 17 || strtod(out, NULL) == d)
			break;
	}
}

static void put_double(struct writer *w, double d)
{
	char tmp[40];

	payload_format_double(tmp, sizeof(tmp), d);
	put_str(w, tmp);
}

static void put_value(struct writer *w, const struct sample *s)
{
	if (s->quality != QUALITY_GOOD) {
		put_str(w, "null");
		return;
	}
	switch (s->value.kind) {
	case VALUE_KIND_BOOL:
		put_str(w, s->value.b ? "true" : "false");
		return;
	case VALUE_KIND_INT:
		put_fmt(w, "%lld", (long long)s->value.i);
		return;
	case VALUE_KIND_UINT:
		put_fmt(w, "%llu", (unsigned long long)s->value.u);
		return;
	case VALUE_KIND_FLOAT:
		put_double(w, s->value.f);
		return;
	case VALUE_KIND_STRING:
		if (s->value.s != NULL) {
			put_json_string(w, s->value.s);
			return;
		}
		break;
	case VALUE_KIND_NONE:
		break;
	}
	put_str(w, "null");
}

static void put_sample(struct writer *w, const struct point *p, const char *name,
		       const struct sample *s)
{
	unsigned q = (unsigned)s->quality;

	put_str(w, "{\"name\":");
	put_json_string(w, name != NULL ? name : p->name);
	put_str(w, ",\"value\":");
	put_value(w, s);
	if (p->unit != NULL && p->unit[0] != '\0') {
		put_str(w, ",\"unit\":");
		put_json_string(w, p->unit);
	}
	put_str(w, ",\"quality\":");
	if (q <= QUALITY_BAD_VALUE)
		put_json_string(w, quality_names[q]);
	else
		put_fmt(w, "\"quality_%u\"", q);
	if (s->quality == QUALITY_EXCEPTION)
		put_fmt(w, ",\"code\":%" PRId32, s->code);
	if (s->flags & SAMPLE_CLAMPED)
		put_str(w, ",\"range\":\"clamped\"");
	else if (s->flags & SAMPLE_OUT_OF_RANGE)
		put_str(w, ",\"range\":\"outside\"");
	put_fmt(w, ",\"ts\":%" PRId64 "}", s->ts_ms);
}

size_t payload_telemetry(char *buf, size_t cap, size_t *len, const char *device_id,
			 const char *boot_id, uint64_t seq, int64_t ts_ms,
			 const struct point *const *points, const char *const *names,
			 const struct sample *samples, size_t nsamples)
{
	static const char tail[] = "]}";
	struct writer w = { .buf = buf, .cap = cap };
	size_t written = 0;

	*len = 0;
	if (cap == 0)
		return 0;
	buf[0] = '\0';
	put_str(&w, "{\"device\":");
	put_json_string(&w, device_id);
	put_str(&w, ",\"boot\":");
	put_json_string(&w, boot_id);
	put_fmt(&w, ",\"seq\":%" PRIu64 ",\"ts\":%" PRId64 ",\"points\":[", seq, ts_ms);
	for (size_t i = 0; i < nsamples && !w.full; i++) {
		size_t mark = w.len;

		if (i > 0)
			put(&w, ",", 1);
		put_sample(&w, points[samples[i].point_id],
			   names != NULL ? names[samples[i].point_id] : NULL, &samples[i]);
		/* The sample counts only if the closing brackets still fit after it. */
		if (w.full || w.cap - w.len <= sizeof(tail) - 1) {
			w.len = mark;
			w.full = true;
			break;
		}
		written++;
	}
	w.full = written == 0 && nsamples > 0;
	put(&w, tail, sizeof(tail) - 1);
	if (w.full) {
		buf[0] = '\0'; /* not even one sample fits */
		return 0;
	}
	buf[w.len] = '\0';
	*len = w.len;
	return written;
}

char *payload_number(char *doc, size_t *len, uint64_t seq)
{
	/* ',"seq":' is not in the device id: inside a JSON string every '"' is escaped. */
	char *zero = strstr(doc, ",\"seq\":0,") + strlen(",\"seq\":");
	char digits[24];
	size_t n = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64, seq);
	char *start = doc - (n - 1);

	memmove(start, doc, (size_t)(zero - doc));
	memcpy(zero - (n - 1), digits, n);
	*len += n - 1;
	return start;
}
