/* uart.c: the raw serial adapter: framed text or binary from an instrument, free-running or
 * request-response, fields to points by regex capture groups or by byte offsets. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "framer.h"

#define SUBSYS	     "uart"
#define TEXT_MAX     128 /* longest captured text value */
#define READ_WAIT_MS 100 /* longest wait in one read, so a stop is seen quickly */

struct uart_regex {
	char *src;
	regex_t re;
	size_t ngroups;
};

/* Where a point's value sits in a frame; same index as a->points. */
struct uart_point {
	int regex;  /* text: index into b->regexes */
	int group;  /* text: capture group, 1.. */
	int at;	    /* binary: first byte in the body */
	int length; /* binary strings: bytes */
	int order;  /* binary: enum byte_order */
	bool seen;  /* had a value in the frame being decoded */
};

struct uart_backend {
	struct serial_link link;
	struct framer_config fcfg;
	struct framer framer;
	bool text; /* fields by regex; else by byte offset */
	char *regex_default;
	struct uart_regex *regexes;
	size_t nregexes;
	struct uart_point *upoints;
	uint8_t request[256];
	int request_len; /* 0: free-running */
	int poll_interval_ms;
	int response_timeout_ms;
	int timeout_ms; /* free-running: silence after which values are marked timed out */

	/* state, owned by the adapter's thread */
	bool awaiting;
	int64_t next_request_ms, deadline_ms, last_frame_ms;
	bool timed_out;
	bool down_reported; /* the points were marked disconnected since the link went down */
	struct point_sink *out;
	struct adapter *a;
	struct sample *samples;
	char (*texts)[TEXT_MAX]; /* one per point, for string values */
	char *body;		 /* a NUL-terminated copy of a text frame */
	uint8_t rbuf[4096];

	/* counters beyond struct adapter_stats; written by the adapter thread only */
	struct framer_stats fstats;
	uint64_t unmatched, short_frames, bad_values;
};

struct uart_conf {
	struct serial_settings port;
	char *request;
	int poll_interval_ms;
	int response_timeout_ms;
	int timeout_ms;
	int backoff_min_ms, backoff_max_ms;
	char *regex;
};

static const struct conf_key uart_keys[] = {
	{ .name = "name", .kind = CONF_ANY },
	{ .name = "type", .kind = CONF_ANY },
	SERIAL_CONF_KEYS(struct uart_conf, port, true),
	{ .name = "framing", .kind = CONF_OBJECT, .required = true, .expect = "an object" },
	{ .name = "checksum", .kind = CONF_OBJECT, .expect = "an object" },
	{ .name = "request",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct uart_conf, request),
	  .expect = "the bytes to send, with \\r \\n \\xHH escapes" },
	CONF_INT_KEY("poll_interval_ms", struct uart_conf, poll_interval_ms, 10, 86400000, false,
		     "an interval in ms"),
	CONF_INT_KEY("response_timeout_ms", struct uart_conf, response_timeout_ms, 10, 60000, false,
		     "a timeout in ms"),
	CONF_INT_KEY("timeout_ms", struct uart_conf, timeout_ms, 0, 86400000, false,
		     "a timeout in ms, 0 for none"),
	CONF_INT_KEY("backoff_min_ms", struct uart_conf, backoff_min_ms, 10, 3600000, false,
		     "a delay in ms"),
	CONF_INT_KEY("backoff_max_ms", struct uart_conf, backoff_max_ms, 10, 3600000, false,
		     "a delay in ms"),
	{ .name = "regex",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct uart_conf, regex),
	  .expect = "a POSIX extended regular expression" },
	{ .name = "points", .kind = CONF_ARRAY, .required = true, .expect = "an array of points" },
	{ .name = NULL },
};

struct framing_conf {
	int mode;
	char *delimiter, *start, *end;
	int length, max_len;
};

static const struct conf_key framing_keys[] = {
	{ .name = "mode",
	  .kind = CONF_ENUM,
	  .required = true,
	  .offset = offsetof(struct framing_conf, mode),
	  .choices = frame_mode_names,
	  .expect = "a framing mode" },
	{ .name = "delimiter",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct framing_conf, delimiter),
	  .expect = "bytes, e.g. \"\\r\\n\"" },
	{ .name = "start",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct framing_conf, start),
	  .expect = "bytes, e.g. \"\\x02\"" },
	{ .name = "end",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct framing_conf, end),
	  .expect = "bytes, e.g. \"\\x03\"" },
	CONF_INT_KEY("length", struct framing_conf, length, 1, FRAMER_MAX_LEN, false,
		     "a frame length in bytes"),
	CONF_INT_KEY("max_len", struct framing_conf, max_len, 1, FRAMER_MAX_LEN, false,
		     "a frame length in bytes"),
	{ .name = "length_field", .kind = CONF_OBJECT, .expect = "an object" },
	{ .name = NULL },
};

static const char *const endian_names[] = { "big", "little", NULL };

struct lenfield_conf {
	int offset, size, order, adjust;
};

static const struct conf_key lenfield_keys[] = {
	CONF_INT_KEY("offset", struct lenfield_conf, offset, 0, FRAMER_MAX_LEN, true,
		     "a byte offset in the body"),
	CONF_INT_KEY("size", struct lenfield_conf, size, 1, 2, false, "1 or 2 bytes"),
	{ .name = "order",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct lenfield_conf, order),
	  .choices = endian_names,
	  .expect = "a byte order" },
	CONF_INT_KEY("adjust", struct lenfield_conf, adjust, -FRAMER_MAX_LEN, FRAMER_MAX_LEN, false,
		     "a byte count"),
	{ .name = NULL },
};

static const char *const encoding_names[] = { "binary", "hex", NULL };

struct csum_conf {
	int type, encoding, order, from;
	char *separator;
};

static const struct conf_key csum_keys[] = {
	{ .name = "type",
	  .kind = CONF_ENUM,
	  .required = true,
	  .offset = offsetof(struct csum_conf, type),
	  .choices = checksum_names,
	  .expect = "a checksum" },
	{ .name = "encoding",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct csum_conf, encoding),
	  .choices = encoding_names,
	  .expect = "an encoding" },
	{ .name = "order",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct csum_conf, order),
	  .choices = endian_names,
	  .expect = "a byte order" },
	CONF_INT_KEY("from", struct csum_conf, from, 0, FRAMER_MAX_LEN, false,
		     "a byte offset in the body"),
	{ .name = "separator",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct csum_conf, separator),
	  .expect = "bytes between the body and the checksum, e.g. \"*\"" },
	{ .name = NULL },
};

struct upoint_conf {
	char *name, *unit, *regex;
	int type, group, at, length, order;
	double scale, offset;
};

static const struct conf_key point_keys[] = {
	{ .name = "name",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct upoint_conf, name) },
	{ .name = "type",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct upoint_conf, type),
	  .choices = value_type_names,
	  .expect = "type" },
	{ .name = "regex",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct upoint_conf, regex),
	  .expect = "a POSIX extended regular expression" },
	CONF_INT_KEY("group", struct upoint_conf, group, 1, 9, false, "a capture group, 1 to 9"),
	CONF_INT_KEY("byte_offset", struct upoint_conf, at, 0, FRAMER_MAX_LEN - 1, false,
		     "a byte offset in the frame body"),
	CONF_INT_KEY("length", struct upoint_conf, length, 1, TEXT_MAX - 1, false,
		     "a string length in bytes"),
	{ .name = "order",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct upoint_conf, order),
	  .choices = byte_order_names,
	  .expect = "order" },
	{ .name = "scale", .kind = CONF_DOUBLE, .offset = offsetof(struct upoint_conf, scale) },
	{ .name = "offset", .kind = CONF_DOUBLE, .offset = offsetof(struct upoint_conf, offset) },
	{ .name = "unit",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct upoint_conf, unit),
	  .expect = "an engineering unit" },
	{ .name = NULL },
};

static int read_marker(struct conf *c, const char *path, const char *key, const char *text,
		       uint8_t *out, size_t *len)
{
	char sub[256];
	int n;

	if (text == NULL)
		return 0;
	n = framer_parse_bytes(text, out, FRAMER_MARK_MAX);
	if (n < 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, key),
			   "\"%s\" is not 1 to %d bytes (escapes: \\r \\n \\t \\\\ \\xHH)", text,
			   FRAMER_MARK_MAX);
		return 1;
	}
	*len = (size_t)n;
	return 0;
}

static int read_framing(struct uart_backend *b, struct conf *c, const cJSON *obj, const char *path)
{
	struct framing_conf fc = { .max_len = 256 };
	struct framer_config *f = &b->fcfg;
	const cJSON *lf = cJSON_GetObjectItemCaseSensitive(obj, "length_field");
	char sub[256];
	int errors = conf_read_object(c, obj, path, framing_keys, &fc);

	f->mode = (enum frame_mode)fc.mode;
	errors += read_marker(c, path, "delimiter", fc.delimiter, f->delim, &f->delim_len);
	errors += read_marker(c, path, "start", fc.start, f->start, &f->start_len);
	errors += read_marker(c, path, "end", fc.end, f->end, &f->end_len);
	f->fixed_len = (size_t)fc.length;
	f->max_len = (size_t)fc.max_len;
	if (f->mode == FRAME_FIXED && fc.max_len < fc.length)
		f->max_len = (size_t)fc.length;
	if (lf != NULL) {
		struct lenfield_conf lc = { .size = 1 };

		errors += conf_read_object(c, lf,
					   conf_path_key(sub, sizeof(sub), path, "length_field"),
					   lenfield_keys, &lc);
		f->has_len_field = true;
		f->len_offset = (size_t)lc.offset;
		f->len_size = (size_t)lc.size;
		f->len_little_endian = lc.order == 1;
		f->len_adjust = lc.adjust;
	}
	free(fc.delimiter);
	free(fc.start);
	free(fc.end);
	return errors;
}

static int read_checksum(struct uart_backend *b, struct conf *c, const cJSON *obj, const char *path)
{
	struct csum_conf cc = { .order = -1 };
	int errors = conf_read_object(c, obj, path, csum_keys, &cc);

	b->fcfg.csum = (enum checksum_kind)cc.type;
	b->fcfg.csum_encoding = cc.encoding == 1 ? CSUM_HEX : CSUM_BINARY;
	/* Modbus RTU sends its CRC low byte first; everything else defaults to high first. */
	if (cc.order < 0)
		b->fcfg.csum_big_endian = b->fcfg.csum != CSUM_CRC16_MODBUS;
	else
		b->fcfg.csum_big_endian = cc.order == 0;
	b->fcfg.csum_from = (size_t)cc.from;
	errors += read_marker(c, path, "separator", cc.separator, b->fcfg.csum_sep,
			      &b->fcfg.csum_sep_len);
	free(cc.separator);
	return errors;
}

/* The index of regex 'src' among the compiled ones, compiling it on first use; -1 on error. */
static int regex_index(struct uart_backend *b, struct conf *c, const char *path, const char *src)
{
	struct uart_regex *grown;
	char msg[128];
	int rc;

	for (size_t i = 0; i < b->nregexes; i++) {
		if (strcmp(b->regexes[i].src, src) == 0)
			return (int)i;
	}
	grown = realloc(b->regexes, (b->nregexes + 1) * sizeof(*grown));
	if (grown == NULL) {
		conf_error(c, path, "out of memory");
		return -1;
	}
	b->regexes = grown;
	rc = regcomp(&grown[b->nregexes].re, src, REG_EXTENDED);
	if (rc != 0) {
		regerror(rc, &grown[b->nregexes].re, msg, sizeof(msg));
		conf_error(c, path, "bad regular expression \"%s\": %s", src, msg);
		return -1;
	}
	grown[b->nregexes].src = strdup(src);
	grown[b->nregexes].ngroups = grown[b->nregexes].re.re_nsub;
	if (grown[b->nregexes].src == NULL) {
		regfree(&grown[b->nregexes].re);
		conf_error(c, path, "out of memory");
		return -1;
	}
	return (int)b->nregexes++;
}

static int check_text_point(struct uart_backend *b, struct conf *c, const char *path,
			    const struct upoint_conf *pc, struct uart_point *up)
{
	const char *src = pc->regex != NULL ? pc->regex : b->regex_default;
	char sub[256];

	if (pc->at >= 0 || pc->order >= 0) {
		conf_error(c,
			   conf_path_key(sub, sizeof(sub), path,
					 pc->at >= 0 ? "byte_offset" : "order"),
			   "text points take their value from a regex group, not a byte position");
		return 1;
	}
	if (src == NULL) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "regex"),
			   "missing (set \"regex\" here or on the adapter)");
		return 1;
	}
	up->regex = regex_index(
		b, c, conf_path_key(sub, sizeof(sub), path, pc->regex != NULL ? "regex" : "name"),
		src);
	if (up->regex < 0)
		return 1;
	if (pc->group == 0 || (size_t)pc->group > b->regexes[up->regex].ngroups) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "group"),
			   "%s (the regex has %zu capture groups)",
			   pc->group == 0 ? "missing" : "no such group",
			   b->regexes[up->regex].ngroups);
		return 1;
	}
	up->group = pc->group;
	return 0;
}

static int check_binary_point(struct conf *c, const char *path, const struct upoint_conf *pc,
			      struct uart_point *up, size_t max_len)
{
	size_t width = codec_bytes((enum value_type)pc->type, (size_t)pc->length);
	char sub[256];

	if (pc->regex != NULL || pc->group != 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, pc->regex ? "regex" : "group"),
			   "binary points take their value from byte_offset, not a regex");
		return 1;
	}
	if (pc->at < 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "byte_offset"),
			   "missing (expected the value's first byte in the frame body)");
		return 1;
	}
	if (((enum value_type)pc->type == VALUE_STRING) != (pc->length != 0)) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "length"),
			   pc->length ? "only string points have a length"
				      : "missing (expected the string's length in bytes)");
		return 1;
	}
	if ((size_t)pc->at + width > max_len) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "byte_offset"),
			   "%d + %zu bytes runs past the longest frame body (%zu bytes)", pc->at,
			   width, max_len);
		return 1;
	}
	up->at = pc->at;
	up->length = pc->length;
	up->order = pc->order < 0 ? ORDER_ABCD : pc->order;
	return 0;
}

/* The longest body a frame can have: the frame without its markers and checksum. */
static size_t body_max(const struct framer_config *f)
{
	size_t whole = f->mode == FRAME_FIXED ? f->fixed_len : f->max_len;
	size_t around = f->start_len + (f->mode == FRAME_DELIMITER ? f->delim_len : f->end_len) +
			csum_width(f->csum) * (f->csum_encoding == CSUM_HEX ? 2 : 1) +
			f->csum_sep_len;

	return whole > around ? whole - around : 0;
}

static int read_point(struct adapter *a, struct uart_backend *b, struct conf *c, const cJSON *obj,
		      const char *path)
{
	struct upoint_conf pc = {
		.type = b->text ? VALUE_F64 : -1, .at = -1, .order = -1, .scale = 1.0
	};
	struct uart_point up = { 0 };
	struct uart_point *grown;
	struct point *p;
	char sub[256];
	int errors = conf_read_object(c, obj, path, point_keys, &pc);

	if (errors == 0)
		errors += adapter_check_point_name(a, c, path, pc.name);
	if (errors == 0 && pc.type < 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "type"),
			   "missing (binary points need a type: u16, i32, f32, ...)");
		errors++;
	}
	if (errors == 0 && pc.scale == 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "scale"),
			   "0 would erase every value (expected a non-zero number)");
		errors++;
	}
	if (errors == 0)
		errors += b->text ? check_text_point(b, c, path, &pc, &up)
				  : check_binary_point(c, path, &pc, &up, body_max(&b->fcfg));
	if (errors == 0) {
		grown = realloc(b->upoints, (a->npoints + 1) * sizeof(*grown));
		if (grown != NULL)
			b->upoints = grown;
		p = grown == NULL ? NULL : adapter_add_point(a, pc.name);
		if (p == NULL) {
			conf_error(c, path, "out of memory");
			errors++;
		} else {
			b->upoints[a->npoints - 1] = up;
			p->type = (enum value_type)pc.type;
			p->scale = pc.scale;
			p->offset = pc.offset;
			if (pc.unit != NULL) {
				free(p->unit);
				p->unit = pc.unit;
				pc.unit = NULL;
			}
		}
	}
	free(pc.name);
	free(pc.unit);
	free(pc.regex);
	return errors;
}

/* Whether the points are text: a regex anywhere says so; byte_offset says binary. */
static bool points_are_text(const cJSON *points, const char *regex_default)
{
	const cJSON *p;

	if (regex_default != NULL)
		return true;
	cJSON_ArrayForEach (p, points) {
		if (cJSON_GetObjectItemCaseSensitive(p, "regex") != NULL)
			return true;
		if (cJSON_GetObjectItemCaseSensitive(p, "byte_offset") != NULL)
			return false;
	}
	return false;
}

static int read_request(struct uart_backend *b, struct conf *c, const char *path, const char *text)
{
	char sub[256];
	int n;

	if (text == NULL)
		return 0;
	n = framer_parse_bytes(text, b->request, sizeof(b->request));
	if (n <= 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "request"),
			   "\"%s\" is not 1 to %zu bytes (escapes: \\r \\n \\t \\\\ \\xHH)", text,
			   sizeof(b->request));
		return 1;
	}
	b->request_len = n;
	return 0;
}

static int read_points(struct adapter *a, struct uart_backend *b, struct conf *c,
		       const cJSON *points, const char *path)
{
	char sub[256];
	int errors = 0;
	size_t i = 0;
	const cJSON *p;

	cJSON_ArrayForEach (p, points) {
		errors += read_point(a, b, c, p, conf_path_index(sub, sizeof(sub), path, i++));
	}
	if (i == 0) {
		conf_error(c, path, "empty (an adapter needs at least one point)");
		errors++;
	}
	return errors;
}

/* The framer names its settings as its struct does; say them as the config spells them. */
static const char *config_words(const char *why, char *out, size_t cap)
{
	static const char *const words[][2] = {
		{ "fixed_len", "length" },
		{ "len_offset", "length_field.offset" },
		{ "len_size", "length_field.size" },
		{ "len_adjust", "length_field.adjust" },
		{ "checksum_encoding", "checksum.encoding" },
		{ "csum_from", "checksum.from" },
		{ "csum_sep", "checksum.separator" },
	};
	size_t n = 0;

	while (*why != '\0' && n + 1 < cap) {
		size_t w;

		for (w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
			size_t len = strlen(words[w][0]);

			if (strncmp(why, words[w][0], len) == 0) {
				n += (size_t)snprintf(out + n, cap - n, "%s", words[w][1]);
				why += len;
				break;
			}
		}
		if (w == sizeof(words) / sizeof(words[0]))
			out[n++] = *why++;
		if (n >= cap)
			n = cap - 1;
	}
	out[n] = '\0';
	return out;
}

static int uart_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path)
{
	const cJSON *obj = json_obj;
	struct uart_conf uc = { .port = SERIAL_DEFAULTS,
				.poll_interval_ms = 1000,
				.response_timeout_ms = 1000,
				.timeout_ms = 10000,
				.backoff_min_ms = 500,
				.backoff_max_ms = 30000 };
	struct uart_backend *b = calloc(1, sizeof(*b));
	const cJSON *sect;
	const char *why = NULL;
	char sub[256];
	int errors;

	if (b == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	a->backend_data = b;
	errors = conf_read_object(c, obj, path, uart_keys, &uc);
	b->link.set = uc.port;
	b->link.retry.backoff_min_ms = uc.backoff_min_ms;
	b->link.retry.backoff_max_ms = uc.backoff_max_ms;
	b->regex_default = uc.regex;
	b->poll_interval_ms = uc.poll_interval_ms;
	b->response_timeout_ms = uc.response_timeout_ms;
	b->timeout_ms = uc.timeout_ms;
	errors += read_request(b, c, path, uc.request);
	free(uc.request);
	if (errors != 0)
		return errors;
	sect = cJSON_GetObjectItemCaseSensitive(obj, "framing");
	errors += read_framing(b, c, sect, conf_path_key(sub, sizeof(sub), path, "framing"));
	sect = cJSON_GetObjectItemCaseSensitive(obj, "checksum");
	if (sect != NULL)
		errors += read_checksum(b, c, sect,
					conf_path_key(sub, sizeof(sub), path, "checksum"));
	if (errors == 0 && framer_init(&b->framer, &b->fcfg, &why) != 0) {
		char text[256];

		conf_error(c, conf_path_key(sub, sizeof(sub), path, "framing"), "%s",
			   config_words(why != NULL ? why : "out of memory", text, sizeof(text)));
		errors++;
	}
	if (errors != 0)
		return errors;
	/* The adapter's own pattern is checked where it is written, used or not. */
	if (b->regex_default != NULL &&
	    regex_index(b, c, conf_path_key(sub, sizeof(sub), path, "regex"), b->regex_default) < 0)
		return 1;
	sect = cJSON_GetObjectItemCaseSensitive(obj, "points");
	b->text = points_are_text(sect, b->regex_default);
	errors += read_points(a, b, c, sect, conf_path_key(sub, sizeof(sub), path, "points"));
	if (errors != 0)
		return errors;
	b->samples = calloc(a->npoints, sizeof(*b->samples));
	b->texts = calloc(a->npoints, sizeof(*b->texts));
	b->body = malloc(b->fcfg.max_len + 1);
	if (b->samples == NULL || b->texts == NULL || b->body == NULL) {
		conf_error(c, path, "out of memory");
		return 1;
	}
	b->a = a;
	return 0;
}

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
	rc = serial_write(b->link.port, b->request, (size_t)b->request_len, b->response_timeout_ms);
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

#define LD(x) ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

static size_t uart_stats_json(const struct adapter *a, char *buf, size_t cap)
{
	struct uart_backend *b = a->backend_data;
	int n = snprintf(buf, cap,
			 ",\"frames\":%llu,\"bytes\":%llu,\"errors\":{\"checksum\":%llu,"
			 "\"overlong\":%llu,\"bad_length\":%llu,\"garbage_bytes\":%llu,"
			 "\"unmatched\":%llu,\"short\":%llu,\"bad_values\":%llu}",
			 LD(b->fstats.frames), LD(b->fstats.bytes), LD(b->fstats.bad_checksum),
			 LD(b->fstats.overlong), LD(b->fstats.bad_length), LD(b->fstats.garbage),
			 LD(b->unmatched), LD(b->short_frames), LD(b->bad_values));

	return n > 0 ? (size_t)n : 0;
}

const struct adapter_ops adapter_uart_ops = {
	.type = "uart",
	.configure = uart_configure,
	.open = uart_open,
	.poll = uart_poll,
	.close = uart_close,
	.destroy = uart_destroy,
	.stats_json = uart_stats_json,
};
