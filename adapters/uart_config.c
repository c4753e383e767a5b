/* uart_config.c: the raw serial adapter's config: link, framing, checksum, request, and points as
 * regex capture groups or byte offsets. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "uart.h"

struct uart_conf {
	struct serial_settings port;
	char *request;
	int poll_interval_ms;
	int response_timeout_ms;
	int timeout_ms;
	struct link_retry retry;
	char *regex;
};

static const struct conf_key uart_keys[] = {
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
	{ .name = "regex",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct uart_conf, regex),
	  .expect = "a POSIX extended regular expression" },
	ADAPTER_CONF_KEYS(struct uart_conf, retry),
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
	struct point_conf point;
	char *regex;
	int type, group, at, length, order;
};

static const struct conf_key point_keys[] = {
	ADAPTER_POINT_KEYS(struct upoint_conf, point),
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
	{ .name = NULL },
};

/* The bytes of 'text' ("\r\n", "\x02"), given at 'path.key': at most 'cap', into 'out'. */
static int read_bytes(struct conf *c, const char *path, const char *key, const char *text,
		      uint8_t *out, size_t cap, size_t *len)
{
	char sub[256];
	int n;

	if (text == NULL)
		return 0;
	n = framer_parse_bytes(text, out, cap);
	if (n < 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, key),
			   "\"%s\" is not 1 to %zu bytes (escapes: \\r \\n \\t \\\\ \\xHH)", text,
			   cap);
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
	errors += read_bytes(c, path, "delimiter", fc.delimiter, f->delim, FRAMER_MARK_MAX,
			     &f->delim_len);
	errors += read_bytes(c, path, "start", fc.start, f->start, FRAMER_MARK_MAX, &f->start_len);
	errors += read_bytes(c, path, "end", fc.end, f->end, FRAMER_MARK_MAX, &f->end_len);
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
	errors += read_bytes(c, path, "separator", cc.separator, b->fcfg.csum_sep, FRAMER_MARK_MAX,
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

static int read_point(struct adapter *a, struct conf *c, const void *obj, const char *path)
{
	struct uart_backend *b = a->backend_data;
	struct upoint_conf pc = {
		.type = b->text ? VALUE_F64 : -1, .at = -1, .order = -1, .point.scale = 1.0
	};
	struct uart_point up = { 0 };
	struct uart_point *grown;
	struct point *p;
	char sub[256];
	int errors = conf_read_object(c, obj, path, point_keys, &pc);

	if (errors == 0)
		errors += adapter_check_point(a, c, path, &pc.point);
	if (errors == 0 && pc.type < 0) {
		conf_error(c, conf_path_key(sub, sizeof(sub), path, "type"),
			   "missing (binary points need a type: u16, i32, f32, ...)");
		errors++;
	}
	if (errors == 0)
		errors += b->text ? check_text_point(b, c, path, &pc, &up)
				  : check_binary_point(c, path, &pc, &up, body_max(&b->fcfg));
	if (errors == 0) {
		grown = realloc(b->upoints, (a->npoints + 1) * sizeof(*grown));
		if (grown != NULL)
			b->upoints = grown;
		p = grown == NULL ? NULL
				  : adapter_add_point(a, &pc.point, (enum value_type)pc.type);
		if (p == NULL) {
			conf_error(c, path, "out of memory");
			errors++;
		} else {
			b->upoints[a->npoints - 1] = up;
		}
	}
	free(pc.point.name);
	free(pc.point.unit);
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

int uart_configure(struct adapter *a, struct conf *c, const void *json_obj, const char *path)
{
	const cJSON *obj = json_obj;
	struct uart_conf uc = { .port = SERIAL_DEFAULTS,
				.poll_interval_ms = 1000,
				.response_timeout_ms = 1000,
				.timeout_ms = 10000,
				.retry = { .backoff_min_ms = 500, .backoff_max_ms = 30000 } };
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
	errors += adapter_check_backoff(c, path, &uc.retry);
	b->link.set = uc.port;
	b->link.retry = uc.retry;
	b->regex_default = uc.regex;
	b->poll_interval_ms = uc.poll_interval_ms;
	b->response_timeout_ms = uc.response_timeout_ms;
	b->timeout_ms = uc.timeout_ms;
	errors += read_bytes(c, path, "request", uc.request, b->request, sizeof(b->request),
			     &b->request_len);
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
	b->text =
		points_are_text(cJSON_GetObjectItemCaseSensitive(obj, "points"), b->regex_default);
	errors += adapter_read_points(a, c, obj, path, read_point);
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
