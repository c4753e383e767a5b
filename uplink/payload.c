/* payload.c: telemetry JSON documents, written with base's JSON writer into the caller's buffer. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../base/json.h"
#include "uplink.h"

static void put_value(struct jw *w, const struct sample *s)
{
	if (s->quality != QUALITY_GOOD) {
		jw_null(w);
		return;
	}
	switch (s->value.kind) {
	case VALUE_KIND_BOOL:
		jw_bool(w, s->value.b);
		return;
	case VALUE_KIND_INT:
		jw_int(w, s->value.i);
		return;
	case VALUE_KIND_UINT:
		jw_uint(w, s->value.u);
		return;
	case VALUE_KIND_FLOAT:
		jw_double(w, s->value.f);
		return;
	case VALUE_KIND_STRING:
		jw_string(w, s->value.s); /* NULL: null */
		return;
	case VALUE_KIND_NONE:
		break;
	}
	jw_null(w);
}

static void put_sample(struct jw *w, const struct point *p, const char *name,
		       const struct sample *s)
{
	unsigned q = (unsigned)s->quality;
	char other[24];

	jw_object(w);
	jw_key(w, "name");
	jw_string(w, name != NULL ? name : p->name);
	jw_key(w, "value");
	put_value(w, s);
	if (p->unit != NULL && p->unit[0] != '\0') {
		jw_key(w, "unit");
		jw_string(w, p->unit);
	}
	jw_key(w, "quality");
	if (q <= QUALITY_BAD_VALUE) {
		jw_string(w, quality_names[q]);
	} else {
		snprintf(other, sizeof(other), "quality_%u", q);
		jw_string(w, other);
	}
	if (s->quality == QUALITY_EXCEPTION) {
		jw_key(w, "code");
		jw_int(w, s->code);
	}
	if (s->flags & (SAMPLE_CLAMPED | SAMPLE_OUT_OF_RANGE)) {
		jw_key(w, "range");
		jw_string(w, s->flags & SAMPLE_CLAMPED ? "clamped" : "outside");
	}
	jw_key(w, "ts");
	jw_int(w, s->ts_ms);
	jw_end(w);
}

size_t payload_telemetry(char *buf, size_t cap, size_t *len, const char *device_id,
			 const char *boot_id, uint64_t seq, int64_t ts_ms,
			 const struct point *const *points, const char *const *names,
			 const struct sample *samples, size_t nsamples)
{
	size_t written = 0;
	struct jw w;

	jw_init(&w, buf, cap);
	jw_object(&w);
	jw_key(&w, "device");
	jw_string(&w, device_id);
	jw_key(&w, "boot");
	jw_string(&w, boot_id);
	jw_key(&w, "seq");
	jw_uint(&w, seq);
	jw_key(&w, "ts");
	jw_int(&w, ts_ms);
	jw_key(&w, "points");
	jw_array(&w);
	for (size_t i = 0; i < nsamples && !w.failed; i++) {
		struct jw_mark mark = jw_save(&w);

		put_sample(&w, points[samples[i].point_id],
			   names != NULL ? names[samples[i].point_id] : NULL, &samples[i]);
		/* The sample counts only if the closing "]}" still fits after it. */
		if (w.failed || w.cap - w.len <= 2) {
			jw_rewind(&w, mark);
			break;
		}
		written++;
	}
	jw_end(&w);
	jw_end(&w);
	*len = written == 0 && nsamples > 0 ? 0 : jw_finish(&w);
	if (*len == 0 && cap > 0)
		buf[0] = '\0'; /* not even one sample fits */
	return *len == 0 ? 0 : written;
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
