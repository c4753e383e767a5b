/* dbc.c: turns a DBC file's messages and signals into a guardian CAN point list (JSON). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "canbus.h"

#define DBC_EXT_FLAG  0x80000000u /* bit 31 of a BO_ id: the frame is extended */
#define DBC_NAME_MAX  63	  /* conf_valid_name's limit */
#define DBC_INDEP_MSG "VECTOR__INDEPENDENT_SIG_MSG"
#define DBC_FLOAT_F32 1 /* SIG_VALTYPE_ codes */
#define DBC_FLOAT_F64 2

struct dbc_point {
	char name[DBC_NAME_MAX + 1];
	char *signal; /* the DBC signal name, for SIG_VALTYPE_ */
	char *unit;
	uint32_t dbc_id; /* the BO_ id as written, bit 31 and all */
	struct can_signal sig;
	double scale, offset, min, max;
	int mux; /* the multiplexor value this signal needs, or -1 */
	bool multiplexor;
	int float_bits; /* 0, 32 or 64 */
};

/* The message whose SG_ lines are being read. */
struct dbc_msg {
	bool open;
	char name[DBC_NAME_MAX + 1];
	uint32_t dbc_id;
	uint8_t dlc;
	unsigned line;
	const char *skip_why; /* not NULL: the message and its signals are skipped */
	unsigned skipped_signals;
	size_t first_point; /* its points are [first_point, npoints) */
};

struct dbc {
	FILE *in, *err;
	const char *file;
	const struct dbc_options *opt;
	char *buf; /* the current line, without CR/LF */
	size_t cap;
	unsigned line;
	struct dbc_msg msg;
	struct dbc_point *points;
	size_t npoints, points_cap;
	unsigned counts[48]; /* statements per entry of 'sections' */
	bool in_ns;	     /* inside the NS_ symbol list */
};

struct section {
	const char *keyword;
	const char *what; /* for the summary */
	int (*parse)(struct dbc *d, const char *rest);
};

static int parse_bo(struct dbc *d, const char *rest);
static int parse_sg(struct dbc *d, const char *rest);
static int parse_valtype(struct dbc *d, const char *rest);

/* Every keyword a DBC file may hold; those without a parser are counted and skipped. */
static const struct section sections[] = {
	{ "BO_", NULL, parse_bo },
	{ "SG_", NULL, parse_sg },
	{ "SIG_VALTYPE_", NULL, parse_valtype },
	{ "VERSION", "version", NULL },
	{ "NS_", "new-symbol lists", NULL },
	{ "BS_", "bit timing", NULL },
	{ "BU_", "node lists", NULL },
	{ "VAL_TABLE_", "value tables", NULL },
	{ "BO_TX_BU_", "message transmitters", NULL },
	{ "EV_", "environment variables", NULL },
	{ "ENVVAR_DATA_", "environment variable data", NULL },
	{ "SGTYPE_", "signal types", NULL },
	{ "SGTYPE_VAL_", "signal type values", NULL },
	{ "SIG_TYPE_REF_", "signal type references", NULL },
	{ "CM_", "comments", NULL },
	{ "BA_DEF_", "attribute definitions", NULL },
	{ "BA_DEF_DEF_", "attribute defaults", NULL },
	{ "BA_", "attributes", NULL },
	{ "BA_DEF_REL_", "relation attribute definitions", NULL },
	{ "BA_DEF_DEF_REL_", "relation attribute defaults", NULL },
	{ "BA_REL_", "relation attributes", NULL },
	{ "BA_DEF_SGTYPE_", "signal type attribute definitions", NULL },
	{ "BA_SGTYPE_", "signal type attributes", NULL },
	{ "BU_SG_REL_", "node-signal relations", NULL },
	{ "BU_EV_REL_", "node-variable relations", NULL },
	{ "BU_BO_REL_", "node-message relations", NULL },
	{ "SIGTYPE_VALTYPE_", "signal type value types", NULL },
	{ "EV_DATA_", "environment variable data", NULL },
	{ "VAL_", "value descriptions", NULL },
	{ "SIG_GROUP_", "signal groups", NULL },
	{ "SG_MUL_VAL_", "extended multiplexing, not supported", NULL },
	{ "CAT_DEF_", "categories", NULL },
	{ "CAT_", "categories", NULL },
	{ "FILTER", "filters", NULL },
};

#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))
_Static_assert(NSECTIONS <= sizeof(((struct dbc *)0)->counts) / sizeof(unsigned),
	       "dbc.counts holds one count per section");

static void report(struct dbc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One message on 'err' as "FILE:LINE: ...". */
static void report(struct dbc *d, const char *fmt, ...)
{
	va_list ap;

	fprintf(d->err, "%s:%u: ", d->file, d->line);
	va_start(ap, fmt);
	vfprintf(d->err, fmt, ap);
	va_end(ap);
	fputc('\n', d->err);
}

/* ---- lines -------------------------------------------------------------------------------- */

/* Reads the next line into d->buf without its line end; false at end of file. */
static bool next_line(struct dbc *d)
{
	ssize_t n = getline(&d->buf, &d->cap, d->in);

	if (n < 0)
		return false;
	while (n > 0 && (d->buf[n - 1] == '\n' || d->buf[n - 1] == '\r'))
		d->buf[--n] = '\0';
	d->line++;
	if (d->line == 1 && strncmp(d->buf, "\xEF\xBB\xBF", 3) == 0)
		memmove(d->buf, d->buf + 3, (size_t)n - 2);
	return true;
}

/* True if a string opened on 'line' (or before it, when 'open') is still open at its end. */
static bool quote_open(const char *line, bool open)
{
	for (const char *p = line; *p != '\0'; p++) {
		if (open && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			open = !open;
	}
	return open;
}

/*
 * Consumes the lines a statement's open string runs over (a multi-line CM_),
 * so that their text is never read as statements.
 */
static void skip_string_lines(struct dbc *d)
{
	unsigned start = d->line;
	bool open = quote_open(d->buf, false);

	while (open && next_line(d))
		open = quote_open(d->buf, true);
	if (open)
		report(d, "skipped: the string opened on line %u never ends", start);
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* The length of the keyword or name at 'p': up to white space or ':'. */
static size_t token_len(const char *p)
{
	size_t n = 0;

	while (p[n] != '\0' && p[n] != ' ' && p[n] != '\t' && p[n] != ':')
		n++;
	return n;
}

static const struct section *section_find(const char *word, size_t n)
{
	for (size_t i = 0; i < NSECTIONS; i++) {
		if (strlen(sections[i].keyword) == n && memcmp(sections[i].keyword, word, n) == 0)
			return &sections[i];
	}
	return NULL;
}

/* ---- fields ------------------------------------------------------------------------------- */

/* Reads an unsigned decimal number up to 'max'; returns the end or NULL. */
static const char *read_uint(const char *p, unsigned long max, unsigned long *out)
{
	char *end;

	p = skip_ws(p);
	if (*p < '0' || *p > '9')
		return NULL;
	errno = 0;
	*out = strtoul(p, &end, 10);
	if (errno != 0 || *out > max)
		return NULL;
	return end;
}

/* Reads a finite decimal number; returns the end or NULL. */
static const char *read_double(const char *p, double *out)
{
	char *end;

	p = skip_ws(p);
	if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.'))
		return NULL;
	*out = strtod(p, &end);
	if (end == p || !isfinite(*out))
		return NULL;
	return end;
}

/* Expects 'c' after optional white space; returns what follows or NULL. */
static const char *read_char(const char *p, char c)
{
	p = skip_ws(p);
	return *p == c ? p + 1 : NULL;
}

/* Whether s[0..n) is UTF-8 throughout (s[n] is the closing quote: no sequence runs past it). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	for (size_t i = 0, len; i < n; i += len) {
		len = utf8_seq_len(s + i);
		if (len == 0 || len > n - i)
			return false;
	}
	return true;
}

/*
 * Copies a quoted string's text as UTF-8. DBC tools often write Windows-1252
 * ("°C" as one 0xB0 byte); text that is not UTF-8 is read as Latin-1.
 */
static char *string_dup(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	bool utf8 = utf8_valid(u, n);
	char *out = malloc(2 * n + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (utf8 || u[i] < 0x80) {
			*o++ = (char)u[i];
		} else {
			*o++ = (char)(0xC0 | u[i] >> 6);
			*o++ = (char)(0x80 | (u[i] & 0x3F));
		}
	}
	*o = '\0';
	return out;
}

/* Reads "text" (with \" escapes); returns the end or NULL. */
static const char *read_string(const char *p, char **out)
{
	const char *start;

	p = read_char(p, '"');
	if (p == NULL)
		return NULL;
	start = p;
	while (*p != '\0' && *p != '"')
		p += (*p == '\\' && p[1] != '\0') ? 2 : 1;
	if (*p != '"')
		return NULL;
	*out = string_dup(start, (size_t)(p - start));
	return *out == NULL ? NULL : p + 1;
}

/* ---- BO_ ---------------------------------------------------------------------------------- */

/* Ends the current message: reports it if skipped, checks its multiplexing. */
static int msg_close(struct dbc *d)
{
	struct dbc_msg *m = &d->msg;
	int plain_mux = 0;
	bool any_mux = false, muxed = false;

	if (!m->open)
		return 0;
	m->open = false;
	if (m->skip_why != NULL) {
		fprintf(d->err, "%s:%u: skipped: message %s (%u signal%s): %s\n", d->file, m->line,
			m->name, m->skipped_signals, m->skipped_signals == 1 ? "" : "s",
			m->skip_why);
		return 0;
	}
	for (size_t i = m->first_point; i < d->npoints; i++) {
		const struct dbc_point *pt = &d->points[i];

		plain_mux += pt->multiplexor && pt->mux < 0;
		any_mux |= pt->multiplexor;
		muxed |= pt->mux >= 0;
	}
	if (plain_mux > 1 || (muxed && !any_mux)) {
		fprintf(d->err, "%s:%u: message %s: %s\n", d->file, m->line, m->name,
			plain_mux > 1 ? "more than one multiplexor signal (M)"
				      : "multiplexed signals (mN) but no multiplexor signal (M)");
		return -1;
	}
	return 0;
}

/* BO_ <id> <name>: <dlc> <transmitter> */
static int parse_bo(struct dbc *d, const char *p)
{
	struct dbc_msg *m = &d->msg;
	unsigned long id, dlc;
	size_t n;

	memset(m, 0, sizeof(*m));
	p = read_uint(p, 0xFFFFFFFFul, &id);
	if (p == NULL || (*p != ' ' && *p != '\t')) {
		report(d, "BO_: expected the message id (a decimal number)");
		return -1;
	}
	p = skip_ws(p);
	n = token_len(p);
	if (n == 0) {
		report(d, "BO_: expected the message name after the id");
		return -1;
	}
	snprintf(m->name, sizeof(m->name), "%.*s", (int)n, p);
	p = read_char(p + n, ':');
	if (p == NULL) {
		report(d, "BO_ %s: expected ':' after the name", m->name);
		return -1;
	}
	p = read_uint(p, 0xFFFF, &dlc);
	if (p == NULL) {
		report(d, "BO_ %s: expected the length in bytes (DLC) after ':'", m->name);
		return -1;
	}
	m->open = true;
	m->dbc_id = (uint32_t)id;
	m->dlc = dlc > CAN_MAX_DLEN ? CAN_MAX_DLEN : (uint8_t)dlc;
	m->line = d->line;
	m->first_point = d->npoints;
	if (strcmp(m->name, DBC_INDEP_MSG) == 0) {
		m->skip_why = "its signals belong to no message";
	} else if (dlc > CAN_MAX_DLEN) {
		m->skip_why = "longer than 8 bytes (CAN FD is not supported)";
	} else if ((id & DBC_EXT_FLAG) != 0 && (id & ~DBC_EXT_FLAG) > CAN_EFF_MAX) {
		report(d, "BO_ %s: id %lu is above 0x%X with the extended flag (bit 31) cleared",
		       m->name, id, CAN_EFF_MAX);
		return -1;
	} else if ((id & DBC_EXT_FLAG) == 0 && id > CAN_SFF_MAX) {
		report(d, "BO_ %s: id %lu is above 0x%X and not marked extended (bit 31)", m->name,
		       id, CAN_SFF_MAX);
		return -1;
	}
	return 0;
}

/* ---- SG_ ---------------------------------------------------------------------------------- */

/* Makes room for one more point; NULL when memory runs out. */
static struct dbc_point *point_add(struct dbc *d)
{
	struct dbc_point *pt;

	if (d->npoints == d->points_cap) {
		size_t cap = d->points_cap ? 2 * d->points_cap : 64;

		pt = realloc(d->points, cap * sizeof(*pt));
		if (pt == NULL)
			return NULL;
		d->points = pt;
		d->points_cap = cap;
	}
	pt = &d->points[d->npoints];
	memset(pt, 0, sizeof(*pt));
	pt->mux = -1;
	return pt;
}

static bool name_taken(const struct dbc *d, const char *name)
{
	for (size_t i = 0; i < d->npoints; i++) {
		if (strcmp(d->points[i].name, name) == 0)
			return true;
	}
	return false;
}

/* Names the point '<message>.<signal>' (or '<signal>'), valid and unique, saying so if it had to
 * change it. */
static void point_name(struct dbc *d, struct dbc_point *pt)
{
	char want[2 * 256 + 2], *o = pt->name;
	size_t n;

	if (d->opt->short_names)
		snprintf(want, sizeof(want), "%s", pt->signal);
	else
		snprintf(want, sizeof(want), "%s.%s", d->msg.name, pt->signal);
	for (n = 0; want[n] != '\0' && n < DBC_NAME_MAX; n++) {
		char c = want[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';

		o[n] = ok ? c : '_';
	}
	o[n] = '\0';
	for (unsigned k = 2; name_taken(d, o) && k < 100000; k++) {
		char suffix[8];
		size_t sl = (size_t)snprintf(suffix, sizeof(suffix), "_%u", k);
		size_t keep = n + sl > DBC_NAME_MAX ? DBC_NAME_MAX - sl : n;

		o[keep] = '\0';
		strcat(o, suffix);
		if (!name_taken(d, o))
			break;
	}
	if (strcmp(o, want) != 0)
		report(d, "point name \"%s\" is %s; using \"%s\"", want,
		       conf_valid_name(want)
			       ? "already used"
			       : "not a valid point name (letters, digits, _ - .; at most 63)",
		       o);
}

/* The multiplexer indicator, if any, between the name and ':': "M", "mN" or "mNM". */
static const char *read_mux(struct dbc *d, const char *p, struct dbc_point *pt)
{
	unsigned long v;

	p = skip_ws(p);
	if (*p == 'M') {
		pt->multiplexor = true;
		return p + 1;
	}
	if (*p != 'm')
		return p;
	p = read_uint(p + 1, 0xFFFFFFul, &v);
	if (p == NULL)
		return NULL;
	pt->mux = (int)v;
	if (*p == 'M') {
		pt->multiplexor = true;
		report(d,
		       "signal %s: extended multiplexing (m%luM) is not supported; imported as "
		       "a multiplexor shown when the multiplexor reads %lu",
		       pt->signal, v, v);
		p++;
	}
	return p;
}

/* "start|length@order sign" */
static const char *read_layout(const char *p, struct can_signal *s)
{
	unsigned long start, length;

	p = read_uint(p, 63, &start);
	if (p == NULL || *p != '|')
		return NULL;
	p = read_uint(p + 1, 64, &length);
	if (p == NULL || length == 0 || *p != '@' || (p[1] != '0' && p[1] != '1') ||
	    (p[2] != '+' && p[2] != '-'))
		return NULL;
	s->start_bit = (uint16_t)start;
	s->length = (uint16_t)length;
	s->big_endian = p[1] == '0';
	s->is_signed = p[2] == '-';
	return p + 3;
}

/* "(scale,offset) [min|max]" */
static const char *read_scaling(const char *p, struct dbc_point *pt)
{
	p = read_char(p, '(');
	if (p != NULL)
		p = read_double(p, &pt->scale);
	if (p != NULL)
		p = read_char(p, ',');
	if (p != NULL)
		p = read_double(p, &pt->offset);
	if (p != NULL)
		p = read_char(p, ')');
	if (p == NULL)
		return NULL;
	p = read_char(p, '[');
	if (p != NULL)
		p = read_double(p, &pt->min);
	if (p != NULL)
		p = read_char(p, '|');
	if (p != NULL)
		p = read_double(p, &pt->max);
	if (p != NULL)
		p = read_char(p, ']');
	return p;
}

static void point_release(struct dbc_point *pt)
{
	free(pt->signal);
	free(pt->unit);
}

static int sg_fail(struct dbc *d, struct dbc_point *pt, const char *what)
{
	report(d, "SG_ %s: %s", pt->signal != NULL ? pt->signal : "", what);
	point_release(pt);
	return -1;
}

/* SG_ <name> [M|mN] : <start>|<length>@<order><sign> (<scale>,<offset>) [<min>|<max>] "<unit>"
 * <receivers> */
static int parse_sg(struct dbc *d, const char *p)
{
	struct dbc_point *pt;
	size_t n;

	if (!d->msg.open) {
		report(d, "SG_: a signal outside a message (no BO_ line before it)");
		return -1;
	}
	pt = point_add(d);
	if (pt == NULL) {
		report(d, "out of memory");
		return -1;
	}
	p = skip_ws(p);
	n = token_len(p);
	pt->signal = n > 0 ? strndup(p, n) : NULL;
	if (pt->signal == NULL)
		return sg_fail(d, pt, n > 0 ? "out of memory" : "expected the signal name");
	p = read_mux(d, p + n, pt);
	if (p == NULL)
		return sg_fail(d, pt, "expected a number after 'm' (multiplexed signal)");
	p = read_char(p, ':');
	if (p == NULL)
		return sg_fail(d, pt, "expected ':' after the name (and M or mN)");
	p = read_layout(p, &pt->sig);
	if (p == NULL)
		return sg_fail(d, pt, "expected <start 0..63>|<length 1..64>@<0|1><+|->");
	p = read_scaling(p, pt);
	if (p == NULL)
		return sg_fail(d, pt, "expected (<scale>,<offset>) [<min>|<max>]");
	p = read_string(p, &pt->unit);
	if (p == NULL)
		return sg_fail(d, pt, "expected the unit in double quotes");
	if (d->msg.skip_why != NULL) {
		d->msg.skipped_signals++;
		point_release(pt);
		return 0;
	}
	if (!can_signal_fits(&pt->sig, d->msg.dlc)) {
		report(d,
		       "skipped: signal %s.%s (start bit %u, length %u, %s) does not fit the "
		       "message's %u bytes",
		       d->msg.name, pt->signal, pt->sig.start_bit, pt->sig.length,
		       pt->sig.big_endian ? "big-endian" : "little-endian", d->msg.dlc);
		point_release(pt);
		return 0;
	}
	pt->dbc_id = d->msg.dbc_id;
	point_name(d, pt);
	d->npoints++;
	return 0;
}

/* ---- SIG_VALTYPE_ ------------------------------------------------------------------------- */

/* SIG_VALTYPE_ <message id> <signal> : <0|1|2> ; */
static int parse_valtype(struct dbc *d, const char *p)
{
	unsigned long id, type;
	size_t n;
	struct dbc_point *pt = NULL;

	p = read_uint(p, 0xFFFFFFFFul, &id);
	if (p != NULL) {
		p = skip_ws(p);
		n = token_len(p);
		for (size_t i = 0; i < d->npoints && pt == NULL; i++) {
			struct dbc_point *q = &d->points[i];

			if (q->dbc_id == id && strlen(q->signal) == n &&
			    memcmp(q->signal, p, n) == 0)
				pt = q;
		}
		p = read_char(p + n, ':');
	}
	if (p != NULL)
		p = read_uint(p, 2, &type);
	if (p == NULL) {
		report(d, "skipped: SIG_VALTYPE_ is not '<id> <signal> : <0|1|2> ;'");
		return 0;
	}
	if (pt == NULL) {
		report(d, "skipped: SIG_VALTYPE_ for a signal of message %lu that was not imported",
		       id);
		return 0;
	}
	if (type != 0 && pt->sig.length != (type == DBC_FLOAT_F32 ? 32 : 64)) {
		report(d, "skipped: SIG_VALTYPE_ %lu for %s, whose length is %u, not %d", type,
		       pt->name, pt->sig.length, type == DBC_FLOAT_F32 ? 32 : 64);
		return 0;
	}
	pt->float_bits = type == DBC_FLOAT_F32 ? 32 : type == DBC_FLOAT_F64 ? 64 : 0;
	return 0;
}

/* ---- the file ----------------------------------------------------------------------------- */

/* Handles one line (and any lines its open string runs over). */
static int statement(struct dbc *d)
{
	const char *p = skip_ws(d->buf);
	bool indented = p != d->buf;
	const struct section *s;
	size_t n;

	if (*p == '\0') {
		d->in_ns = false;
		return 0;
	}
	n = token_len(p);
	if (d->in_ns && indented && *skip_ws(p + n) == '\0')
		return 0; /* a symbol of the NS_ list */
	d->in_ns = false;
	s = section_find(p, n);
	if (s == NULL) {
		report(d, "skipped: unknown line starting \"%.*s\"", n > 40 ? 40 : (int)n, p);
		skip_string_lines(d);
		return 0;
	}
	if (s->parse == parse_sg)
		return parse_sg(d, p + n);
	/* Anything else ends the current message's list of signals. */
	if (msg_close(d) != 0)
		return -1;
	if (s->parse != NULL)
		return s->parse(d, p + n);
	d->counts[s - sections]++;
	d->in_ns = strcmp(s->keyword, "NS_") == 0;
	skip_string_lines(d);
	return 0;
}

static void summarise(const struct dbc *d)
{
	for (size_t i = 0; i < NSECTIONS; i++) {
		if (d->counts[i] == 0)
			continue;
		fprintf(d->err, "%s: skipped %u %s line%s (%s)\n", d->file, d->counts[i],
			sections[i].keyword, d->counts[i] == 1 ? "" : "s", sections[i].what);
	}
}

/* The "id"/"extended" or "j1939" keys of a point. */
static bool json_id(const struct dbc *d, const struct dbc_point *pt, cJSON *o)
{
	bool ext = (pt->dbc_id & DBC_EXT_FLAG) != 0;
	uint32_t id = pt->dbc_id & ~DBC_EXT_FLAG;
	char hex[16];

	if (ext && d->opt->j1939) {
		struct j1939_id j;
		cJSON *jo = cJSON_AddObjectToObject(o, "j1939");

		j1939_decode(id, &j);
		return jo != NULL && cJSON_AddNumberToObject(jo, "pgn", j.pgn) != NULL &&
		       cJSON_AddNumberToObject(jo, "source", j.source) != NULL;
	}
	snprintf(hex, sizeof(hex), ext ? "0x%08X" : "0x%03X", id);
	return cJSON_AddStringToObject(o, "id", hex) != NULL &&
	       cJSON_AddBoolToObject(o, "extended", ext) != NULL;
}

/* One point as JSON; keys at their default are left out. */
static cJSON *json_point(const struct dbc *d, const struct dbc_point *pt)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL && cJSON_AddStringToObject(o, "name", pt->name) != NULL &&
		  json_id(d, pt, o) &&
		  cJSON_AddNumberToObject(o, "start_bit", pt->sig.start_bit) != NULL &&
		  cJSON_AddNumberToObject(o, "length", pt->sig.length) != NULL &&
		  cJSON_AddStringToObject(o, "byte_order",
					  pt->sig.big_endian ? "big_endian" : "little_endian") !=
			  NULL;

	if (ok && pt->sig.is_signed)
		ok = cJSON_AddBoolToObject(o, "signed", true) != NULL;
	if (ok && pt->scale != 1)
		ok = cJSON_AddNumberToObject(o, "scale", pt->scale) != NULL;
	if (ok && pt->offset != 0)
		ok = cJSON_AddNumberToObject(o, "offset", pt->offset) != NULL;
	if (ok && pt->unit[0] != '\0')
		ok = cJSON_AddStringToObject(o, "unit", pt->unit) != NULL;
	if (ok && (pt->min != 0 || pt->max != 0))
		ok = cJSON_AddNumberToObject(o, "min", pt->min) != NULL &&
		     cJSON_AddNumberToObject(o, "max", pt->max) != NULL;
	if (ok && pt->multiplexor)
		ok = cJSON_AddBoolToObject(o, "multiplexor", true) != NULL;
	if (ok && pt->mux >= 0)
		ok = cJSON_AddNumberToObject(o, "mux", pt->mux) != NULL;
	if (ok && pt->float_bits != 0)
		ok = cJSON_AddStringToObject(o, "float", pt->float_bits == 32 ? "f32" : "f64") !=
		     NULL;
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static int write_points(const struct dbc *d, FILE *out)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = root != NULL ? cJSON_AddArrayToObject(root, "points") : NULL;
	char *text = NULL;
	int rc = -1;

	if (arr == NULL)
		goto out;
	for (size_t i = 0; i < d->npoints; i++) {
		cJSON *o = json_point(d, &d->points[i]);

		if (o == NULL)
			goto out;
		cJSON_AddItemToArray(arr, o);
	}
	text = cJSON_Print(root);
	if (text == NULL)
		goto out;
	fputs(text, out);
	fputc('\n', out);
	rc = 0;
out:
	if (rc != 0)
		fprintf(d->err, "%s: out of memory writing the points\n", d->file);
	free(text);
	cJSON_Delete(root);
	return rc;
}

int dbc_import(FILE *in, const char *file, FILE *out, FILE *err, const struct dbc_options *opt)
{
	static const struct dbc_options defaults = { 0 };
	struct dbc d = { .in = in, .err = err != NULL ? err : stderr, .file = file, .opt = opt };
	int rc = 0;

	if (d.opt == NULL)
		d.opt = &defaults;
	if (d.file == NULL)
		d.file = "<dbc>";
	if (in == NULL || out == NULL)
		return -1;
	while (rc == 0 && next_line(&d))
		rc = statement(&d);
	if (rc == 0)
		rc = msg_close(&d);
	if (rc == 0) {
		summarise(&d);
		rc = write_points(&d, out) == 0 ? (int)d.npoints : -1;
	}
	for (size_t i = 0; i < d.npoints; i++)
		point_release(&d.points[i]);
	free(d.points);
	free(d.buf);
	return rc;
}
