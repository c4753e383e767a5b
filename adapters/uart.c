/* uart.c: the raw serial adapter at run time: framed text or binary from an instrument,
 * free-running or request-response, fields decoded into points. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "uart.h"

#define SUBSYS	     "uart"
#define READ_WAIT_MS 100 /* longest wait in one read, so a stop is seen quickly */

static int uart_open(struct adapter *a)
{
	struct uart_backend *b = a->backend_data;

	b->link.retry.retry_at_ms = 0;
	return serial_link_up(&b->link, a, gd_mono_ms(), SUBSYS) ? 0 : GD_EIO;
}

/* Parses captured text as the point's type. */
static int parse_text(const char *text, enum value_type t, struct value *v, char *strbuf)
{
	char *end;

	errno = 0;
	switch (t) {
	case VALUE_STRING:
		snprintf(strbuf, TEXT_MAX, "%s", text);
		*v = (struct value){ .kind = VALUE_KIND_STRING, .s = strbuf };
		return 0;
	case VALUE_BOOL:
		if (strcmp(text, "1") == 0 || strcasecmp(text, "true") == 0 ||
		    strcasecmp(text, "on") == 0)
			*v = (struct value){ .kind = VALUE_KIND_BOOL, .b = true };
		else if (strcmp(text, "0") == 0 || strcasecmp(text, "false") == 0 ||
			 strcasecmp(text, "off") == 0)
			*v = (struct value){ .kind = VALUE_KIND_BOOL, .b = false };
		else
			return GD_EINVAL;
		return 0;
	case VALUE_F32:
	case VALUE_F64:
		*v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = strtod(text, &end) };
		return (end == text || *end != '\0' || errno != 0 || !isfinite(v->f)) ? GD_EINVAL
										      : 0;
	case VALUE_U16:
	case VALUE_U32:
	case VALUE_U64:
		if (strchr(text, '-') != NULL)
			return GD_ERANGE;
		*v = (struct value){ .kind = VALUE_KIND_UINT, .u = strtoull(text, &end, 10) };
		break;
	default:
		*v = (struct value){ .kind = VALUE_KIND_INT, .i = strtoll(text, &end, 10) };
		break;
	}
	if (end == text || *end != '\0' || errno != 0)
		return GD_EINVAL;
	/* The type's range: a u16 point that reads 70000 is a bad value, not a wrapped one. */
	if ((t == VALUE_U16 && v->u > UINT16_MAX) || (t == VALUE_U32 && v->u > UINT32_MAX) ||
	    (t == VALUE_I16 && (v->i < INT16_MIN || v->i > INT16_MAX)) ||
	    (t == VALUE_I32 && (v->i < INT32_MIN || v->i > INT32_MAX)))
		return GD_ERANGE;
	return 0;
}

static void set_good_or_bad(struct uart_backend *b, struct sample *s, const struct point *p, int rc)
{
	if (rc == 0)
		rc = codec_scale(&s->value, p->scale, p->offset);
	if (rc != 0) {
		s->quality = QUALITY_BAD_VALUE;
		s->code = rc;
		s->value.kind = VALUE_KIND_NONE;
		__atomic_add_fetch(&b->bad_values, 1, __ATOMIC_RELAXED);
	}
}

/* Fills b->samples from a text frame; returns how many points had a value. */
static size_t decode_text(struct adapter *a, struct uart_backend *b, const uint8_t *body,
			  size_t len, int64_t ts)
{
	regmatch_t m[10];
	size_t n = 0;

	memcpy(b->body, body, len);
	b->body[len] = '\0';
	for (size_t r = 0; r < b->nregexes; r++) {
		if (regexec(&b->regexes[r].re, b->body, 10, m, 0) != 0)
			continue;
		for (size_t i = 0; i < a->npoints; i++) {
			struct uart_point *up = &b->upoints[i];
			struct sample *s = &b->samples[n];
			char text[TEXT_MAX];
			size_t tl;

			if (up->regex != (int)r || m[up->group].rm_so < 0)
				continue;
			tl = (size_t)(m[up->group].rm_eo - m[up->group].rm_so);
			if (tl >= sizeof(text))
				tl = sizeof(text) - 1;
			memcpy(text, b->body + m[up->group].rm_so, tl);
			text[tl] = '\0';
			*s = (struct sample){ .point_id = a->points[i].id, .ts_ms = ts };
			set_good_or_bad(
				b, s, &a->points[i],
				parse_text(text, a->points[i].type, &s->value, b->texts[i]));
			n++;
		}
	}
	return n;
}

static size_t decode_binary(struct adapter *a, struct uart_backend *b, const uint8_t *body,
			    size_t len, int64_t ts)
{
	size_t n = 0;

	for (size_t i = 0; i < a->npoints; i++) {
		const struct uart_point *up = &b->upoints[i];
		const struct point *p = &a->points[i];
		size_t width = codec_bytes(p->type, (size_t)up->length);
		struct sample *s = &b->samples[n];

		if ((size_t)up->at + width > len)
			continue;
		*s = (struct sample){ .point_id = p->id, .ts_ms = ts };
		set_good_or_bad(b, s, p,
				codec_decode_bytes(p->type, (enum byte_order)up->order,
						   (size_t)up->length, body + up->at, &s->value,
						   b->texts[i]));
		n++;
	}
	return n;
}

static void on_frame(void *ctx, const uint8_t *body, size_t len)
{
	struct uart_backend *b = ctx;
	struct adapter *a = b->a;
	int64_t ts = gd_now_ms();
	size_t n = b->text ? decode_text(a, b, body, len, ts) : decode_binary(a, b, body, len, ts);

	if (n == 0) {
		/* Default deny for frames too: one nobody described is counted, never forwarded. */
		__atomic_add_fetch(b->text ? &b->unmatched : &b->short_frames, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&a->stats.bad_frames, 1, __ATOMIC_RELAXED);
		return;
	}
	if (b->awaiting) {
		b->awaiting = false;
		__atomic_add_fetch(&a->stats.polls_ok, 1, __ATOMIC_RELAXED);
	}
	b->last_frame_ms = gd_mono_ms();
	if (b->timed_out) {
		b->timed_out = false;
		adapter_clear_fault(a);
	}
	__atomic_store_n(&a->stats.last_ok_ms, ts, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a->stats.samples, n, __ATOMIC_RELAXED);
	b->out->emit(b->out, a, b->samples, n);
}

/* Every point with the same bad quality: the link is down, or the instrument is silent. */
static void emit_all(struct adapter *a, struct uart_backend *b, enum quality q, int code)
{
	int64_t ts = gd_now_ms();

	for (size_t i = 0; i < a->npoints; i++)
		b->samples[i] = (struct sample){
			.point_id = a->points[i].id, .quality = q, .code = code, .ts_ms = ts
		};
	b->out->emit(b->out, a, b->samples, a->npoints);
}

static void check_silence(struct adapter *a, struct uart_backend *b, int64_t now)
{
	if (b->request_len > 0) {
		if (!b->awaiting || now < b->deadline_ms)
			return;
		b->awaiting = false;
		__atomic_add_fetch(&a->stats.timeouts, 1, __ATOMIC_RELAXED);
		if (adapter_set_fault(a, "no answer to the request within %d ms",
				      b->response_timeout_ms))
			log_warnx(SUBSYS, "%s: no answer to the request within %d ms", a->name,
				  b->response_timeout_ms);
		b->timed_out = true;
		emit_all(a, b, QUALITY_TIMEOUT, 0);
		return;
	}
	if (b->timeout_ms == 0 || b->timed_out || now - b->last_frame_ms < b->timeout_ms)
		return;
	b->timed_out = true;
	__atomic_add_fetch(&a->stats.timeouts, 1, __ATOMIC_RELAXED);
	if (adapter_set_fault(a, "no frame for %d ms", b->timeout_ms))
		log_warnx(SUBSYS, "%s: no frame for %d ms", a->name, b->timeout_ms);
	emit_all(a, b, QUALITY_TIMEOUT, 0);
}

static void send_request(struct adapter *a, struct uart_backend *b, int64_t now)
{
	int rc;

	b->next_request_ms = now + b->poll_interval_ms;
	__atomic_add_fetch(&a->stats.polls, 1, __ATOMIC_RELAXED);
	rc = serial_write(b->link.port, b->request, b->request_len, b->response_timeout_ms);
	if (rc == GD_EIO) {
		serial_link_down(&b->link, a, now, SUBSYS, strerror(errno));
		return;
	}
	b->awaiting = rc == 0;
	b->deadline_ms = now + b->response_timeout_ms;
}

static void copy_framer_stats(struct adapter *a, struct uart_backend *b)
{
	const struct framer_stats *f = &b->framer.stats;
	uint64_t bad_before = b->fstats.overlong + b->fstats.bad_checksum + b->fstats.bad_length;
	uint64_t bad_now = f->overlong + f->bad_checksum + f->bad_length;

	if (bad_now > bad_before)
		__atomic_add_fetch(&a->stats.bad_frames, bad_now - bad_before, __ATOMIC_RELAXED);
	__atomic_store_n(&b->fstats.bytes, f->bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&b->fstats.frames, f->frames, __ATOMIC_RELAXED);
	__atomic_store_n(&b->fstats.overlong, f->overlong, __ATOMIC_RELAXED);
	__atomic_store_n(&b->fstats.bad_checksum, f->bad_checksum, __ATOMIC_RELAXED);
	__atomic_store_n(&b->fstats.bad_length, f->bad_length, __ATOMIC_RELAXED);
	__atomic_store_n(&b->fstats.garbage, f->garbage, __ATOMIC_RELAXED);
}

static int uart_poll(struct adapter *a, int64_t now, struct point_sink *out)
{
	struct uart_backend *b = a->backend_data;
	bool was_down = b->link.port == NULL;
	int64_t wait;
	ssize_t got;

	b->out = out;
	if (!serial_link_up(&b->link, a, now, SUBSYS))
		goto down;
	if (was_down) {
		b->down_reported = false;
		framer_reset(&b->framer);
		b->awaiting = false;
		b->timed_out = false;
		b->last_frame_ms = now;
		b->next_request_ms = now;
	}
	if (b->request_len > 0 && !b->awaiting && now >= b->next_request_ms)
		send_request(a, b, now);
	if (b->link.port == NULL)
		goto down;
	wait = READ_WAIT_MS;
	if (b->awaiting && b->deadline_ms - now < wait)
		wait = b->deadline_ms - now;
	if (!b->awaiting && b->request_len > 0 && b->next_request_ms - now < wait)
		wait = b->next_request_ms - now;
	got = serial_read(b->link.port, b->rbuf, sizeof(b->rbuf), wait > 0 ? (int)wait : 0);
	if (got < 0) {
		serial_link_down(&b->link, a, gd_mono_ms(), SUBSYS, strerror(errno));
		goto down;
	}
	if (got > 0) {
		framer_push(&b->framer, b->rbuf, (size_t)got, on_frame, b);
		copy_framer_stats(a, b);
	}
	check_silence(a, b, gd_mono_ms());
	a->next_due_ms = gd_mono_ms();
	return 0;
down:
	if (!b->down_reported) {
		b->down_reported = true;
		emit_all(a, b, QUALITY_DISCONNECTED, 0);
	}
	a->next_due_ms = b->link.retry.retry_at_ms;
	return GD_ENOTCONN;
}

static void uart_close(struct adapter *a)
{
	struct uart_backend *b = a->backend_data;

	serial_close(b->link.port);
	b->link.port = NULL;
	__atomic_store_n(&a->stats.link_up, 0, __ATOMIC_RELAXED);
}

static void uart_destroy(struct adapter *a)
{
	struct uart_backend *b = a->backend_data;

	if (b == NULL)
		return;
	serial_close(b->link.port);
	framer_free(&b->framer);
	for (size_t i = 0; i < b->nregexes; i++) {
		regfree(&b->regexes[i].re);
		free(b->regexes[i].src);
	}
	free(b->regexes);
	free(b->regex_default);
	free(b->link.set.device);
	free(b->upoints);
	free(b->samples);
	free(b->texts);
	free(b->body);
	free(b);
	a->backend_data = NULL;
}

static const char *uart_serial_device(const struct adapter *a)
{
	const struct uart_backend *b = a->backend_data;

	return b != NULL ? b->link.set.device : NULL;
}

static size_t uart_stats_json(const struct adapter *a, char *buf, size_t cap)
{
	struct uart_backend *b = a->backend_data;
	int n = snprintf(buf, cap,
			 ",\"frames\":%llu,\"bytes\":%llu,\"errors\":{\"checksum\":%llu,"
			 "\"overlong\":%llu,\"bad_length\":%llu,\"garbage_bytes\":%llu,"
			 "\"unmatched\":%llu,\"short\":%llu,\"bad_values\":%llu}",
			 ADAPTER_LD(b->fstats.frames), ADAPTER_LD(b->fstats.bytes),
			 ADAPTER_LD(b->fstats.bad_checksum), ADAPTER_LD(b->fstats.overlong),
			 ADAPTER_LD(b->fstats.bad_length), ADAPTER_LD(b->fstats.garbage),
			 ADAPTER_LD(b->unmatched), ADAPTER_LD(b->short_frames),
			 ADAPTER_LD(b->bad_values));

	return n > 0 ? (size_t)n : 0;
}

static int uart_link_take(struct adapter *a, int64_t now_ms)
{
	struct uart_backend *b = a->backend_data;

	if (!serial_link_up(&b->link, a, now_ms, SUBSYS)) {
		a->next_due_ms = b->link.retry.retry_at_ms;
		return GD_ENOTCONN;
	}
	return serial_link_take(&b->link);
}

static int uart_adopt(struct adapter *a, int fd)
{
	struct uart_backend *b = a->backend_data;
	int64_t now = gd_mono_ms();
	int rc = serial_link_adopt(&b->link, a, fd);

	if (rc != 0)
		return rc;
	/* What uart_poll does for a link that just came up. */
	b->down_reported = false;
	framer_reset(&b->framer);
	b->awaiting = false;
	b->timed_out = false;
	b->last_frame_ms = now;
	b->next_request_ms = now;
	return 0;
}

const struct adapter_ops adapter_uart_ops = {
	.type = "uart",
	.configure = uart_configure,
	.open = uart_open,
	.poll = uart_poll,
	.close = uart_close,
	.destroy = uart_destroy,
	.stats_json = uart_stats_json,
	.serial_device = uart_serial_device,
	.link_take = uart_link_take,
	.adopt = uart_adopt,
};
