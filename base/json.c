/* json.c: the bounded JSON writer: escaped strings, exact numbers, all or nothing. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "json.h"

void jw_init(struct jw *w, char *buf, size_t cap)
{
	*w = (struct jw){ .buf = buf, .cap = cap, .failed = cap == 0 };
	if (cap > 0)
		buf[0] = '\0';
}

/* Appends 'n' bytes, keeping room for the NUL; the first that does not fit fails the document. */
static void put(struct jw *w, const char *s, size_t n)
{
	if (w->failed)
		return;
	if (n >= w->cap - w->len) {
		w->failed = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

/* Before a value or a member: the comma that separates it from the one before. */
static void separate(struct jw *w)
{
	if (w->comma)
		put(w, ",", 1);
	w->comma = false;
}

static void open_container(struct jw *w, char open, char close)
{
	separate(w);
	if (w->depth >= sizeof(w->stack)) {
		w->failed = true;
		return;
	}
	w->stack[w->depth++] = close;
	put(w, &open, 1);
}

void jw_object(struct jw *w)
{
	open_container(w, '{', '}');
}

void jw_array(struct jw *w)
{
	open_container(w, '[', ']');
}

void jw_end(struct jw *w)
{
	if (w->depth == 0) {
		w->failed = true;
		return;
	}
	put(w, &w->stack[--w->depth], 1);
	w->comma = true;
}

/* 1 for the bytes a string holds as they are: printable ASCII but the quote and the backslash. */
static const unsigned char plain[256] = { [0x20 ... 0x21] = 1,
					  [0x23 ... 0x5b] = 1,
					  [0x5d ... 0x7f] = 1 };

/* 's' quoted and escaped. */
static void put_string(struct jw *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	put(w, "\"", 1);
	while (*p != '\0' && !w->failed) {
		const unsigned char *run = p;
		size_t n;

		/* The longest run that needs no escaping, in one go. */
		while (plain[*p])
			p++;
		put(w, (const char *)run, (size_t)(p - run));
		if (*p == '\0')
			break;
		if (*p == '"' || *p == '\\') {
			char esc[2] = { '\\', (char)*p };

			put(w, esc, 2);
			p++;
		} else if (*p < 0x20) {
			char esc[6] = {
				'\\', 'u', '0', '0', gd_hex_digits[*p >> 4], gd_hex_digits[*p & 15]
			};

			put(w, esc, sizeof(esc));
			p++;
		} else if ((n = utf8_seq_len(p)) != 0) {
			put(w, (const char *)p, n);
			p += n;
		} else {
			put(w, "\\ufffd", 6);
			p++;
		}
	}
	put(w, "\"", 1);
}

void jw_key(struct jw *w, const char *key)
{
	separate(w);
	put_string(w, key);
	put(w, ":", 1);
}

void jw_string(struct jw *w, const char *s)
{
	if (s == NULL) {
		jw_null(w);
		return;
	}
	separate(w);
	put_string(w, s);
	w->comma = true;
}

/* A token made with snprintf, whole or not at all. */
static void put_token(struct jw *w, const char *tmp, int n)
{
	separate(w);
	if (n < 0)
		w->failed = true;
	else
		put(w, tmp, (size_t)n);
	w->comma = true;
}

void jw_int(struct jw *w, int64_t v)
{
	char tmp[24];

	put_token(w, tmp, snprintf(tmp, sizeof(tmp), "%" PRId64, v));
}

void jw_uint(struct jw *w, uint64_t v)
{
	char tmp[24];

	put_token(w, tmp, snprintf(tmp, sizeof(tmp), "%" PRIu64, v));
}

void jw_format_double(char *out, size_t cap, double d)
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

void jw_double(struct jw *w, double d)
{
	char tmp[32];

	jw_format_double(tmp, sizeof(tmp), d);
	put_token(w, tmp, (int)strlen(tmp));
}

void jw_bool(struct jw *w, bool b)
{
	put_token(w, b ? "true" : "false", b ? 4 : 5);
}

void jw_null(struct jw *w)
{
	put_token(w, "null", 4);
}

void jw_raw(struct jw *w, const char *json, size_t len)
{
	separate(w);
	put(w, json, len);
	w->comma = true;
}

size_t jw_finish(struct jw *w)
{
	if (w->failed || w->depth != 0) {
		w->failed = true;
		if (w->cap > 0)
			w->buf[0] = '\0';
		return 0;
	}
	w->buf[w->len] = '\0';
	return w->len;
}

struct jw_mark jw_save(const struct jw *w)
{
	struct jw_mark m = {
		.len = w->len, .comma = w->comma, .failed = w->failed, .depth = w->depth
	};

	memcpy(m.stack, w->stack, sizeof(m.stack));
	return m;
}

void jw_rewind(struct jw *w, struct jw_mark m)
{
	w->len = m.len;
	w->comma = m.comma;
	w->depth = m.depth;
	memcpy(w->stack, m.stack, sizeof(w->stack));
	w->failed = m.failed;
}
