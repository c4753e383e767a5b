/* conf.h: the config reader: JSON objects checked against key tables, every error collected. */
#ifndef BASE_CONF_H
#define BASE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Config helpers, shared by every module that reads part of the site config.
 *
 * A struct conf collects errors while a config is checked; nothing stops at the
 * first error, so the user sees every mistake at once. Each error names the
 * file, the JSON path and what was expected:
 *   site.json: adapters[1].points[3].type: unknown type "flaot" (expected one of ...)
 */
struct conf {
	const char *file; /* shown at the start of every error */
	char **errors;	  /* owned messages, in the order found */
	size_t nerrors;
	size_t cap;
};

void conf_init(struct conf *c, const char *file);
/* Frees the collected messages. No operation is performed if 'c' is NULL. */
void conf_release(struct conf *c);
/* Records "file: path: message". 'path' may be "" for the top level. */
void conf_error(struct conf *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Moves every error of 'src' (another file's, kept as they are) to the end of 'dst'. */
void conf_take(struct conf *dst, struct conf *src);
/* Prints every collected error on 'out', one a line. */
void conf_print_errors(const struct conf *c, FILE *out);

/* Joins a path and a key ("adapters[1]" + "type") into 'buf'. Returns 'buf'. */
char *conf_path_key(char *buf, size_t len, const char *path, const char *key);
/* Joins a path and an index ("adapters" + 1 -> "adapters[1]") into 'buf'. Returns 'buf'. */
char *conf_path_index(char *buf, size_t len, const char *path, size_t index);

/* What a key may hold. */
enum conf_kind {
	CONF_STRING, /* char *, strdup'd; the owner frees it */
	CONF_INT,    /* long long, within [min, max] */
	CONF_DOUBLE, /* double, finite, within [dmin, dmax] unless both are 0 */
	CONF_BOOL,   /* bool */
	CONF_ENUM,   /* int: index into 'choices' (a NULL-terminated list) */
	CONF_OBJECT, /* checked by the caller; the table only marks the key as known */
	CONF_ARRAY,  /* likewise */
	CONF_ANY,    /* likewise, any JSON type */
};

/*
 * One entry of a key table. The table ends with an entry whose name is NULL.
 * 'offset' is where the value goes in the output struct (offsetof). Integer
 * outputs may be int, long long, unsigned or uint16_t etc.: 'size' says which
 * width (sizeof the field); signedness follows 'min' (min < 0 means signed).
 */
struct conf_key {
	const char *name;
	enum conf_kind kind;
	bool required;
	size_t offset;
	size_t size;
	long long min, max;
	double dmin, dmax;
	const char *const *choices;
	const char *expect; /* optional words for errors, e.g. "a TCP port" */
};

/* An integer key of struct 'st' member 'f', within [lo, hi]. */
#define CONF_INT_KEY(k, st, f, lo, hi, req, what)                                                  \
	{                                                                                          \
		.name = k, .kind = CONF_INT, .required = req, .offset = offsetof(st, f),           \
		.size = sizeof(((st *)0)->f), .min = lo, .max = hi, .expect = what                 \
	}

/*
 * Checks 'obj' (which must be a JSON object) against 'keys': reports unknown
 * keys, missing required keys, wrong types and out-of-range values, and stores
 * every valid value into 'out'. Keys absent from 'obj' leave 'out' untouched,
 * so the caller sets defaults first. Returns the number of errors it added.
 * The cJSON type is not named here so that only loaders need cJSON's header.
 */
int conf_read_object(struct conf *c, const void *json_obj, const char *path,
		     const struct conf_key *keys, void *out);

/* Lists the choices of a NULL-terminated list as "a, b, c" into 'buf'. */
const char *conf_choices_text(char *buf, size_t len, const char *const *choices);

/* A name usable as part of a point name: [A-Za-z0-9_.-]+, at most 63 chars. */
bool conf_valid_name(const char *name);

#endif
