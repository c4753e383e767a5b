/* guardian.h: the core's public interface: errors, logging, clocks and config helpers. */
#ifndef GUARDIAN_H
#define GUARDIAN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GD_VERSION "0.1.0"

/* One error enum for the whole program. Functions return 0 or one of these. */
enum gd_err {
	GD_OK = 0,
	GD_ENOMEM = -1,	   /* out of memory */
	GD_EINVAL = -2,	   /* invalid argument or value */
	GD_EIO = -3,	   /* I/O error; errno has the system's reason */
	GD_ETIMEDOUT = -4, /* no answer in time */
	GD_EPROTO = -5,	   /* malformed frame or protocol violation */
	GD_EDENIED = -6,   /* refused by policy */
	GD_EFULL = -7,	   /* buffer full */
	GD_ECONFIG = -8,   /* invalid configuration */
	GD_ETLS = -9,	   /* TLS set-up or verification failed */
	GD_ENOTCONN = -10, /* link is down */
	GD_EDEVICE = -11,  /* the device answered with an exception */
	GD_ERANGE = -12,   /* value does not fit the type */
};

/* Returns a static string that describes 'err' (one of enum gd_err). */
const char *gd_strerror(int err);

/* Logging: one line per event on stderr: time, level, subsystem, message. */
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or GD_EINVAL. */
int log_level_parse(const char *name, enum log_level *out);

/*
 * The last log lines kept in memory (256, each cut to 200 bytes), for the
 * field console: the last 'n', oldest first, newline-ended, into 'out'.
 * Returns how many. Lines below the log level are not kept.
 */
size_t log_recent(size_t n, char *out, size_t cap);
/* The last warning or error line ("" if none since the last clear); returns its UTC ms or 0. */
int64_t log_last_problem(char *out, size_t cap);
void log_clear_last_problem(void);

/* log_warn appends strerror(errno); log_warnx does not. fatal/fatalx exit(1). */
void log_warn(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warnx(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_error(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_info(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_debug(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void fatal(const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
_Noreturn void fatalx(const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reads a whole file into a NUL-terminated buffer (caller frees). NULL with errno on failure. */
char *gd_read_file(const char *path);

/* Clocks. gd_now_ms: UTC milliseconds since the epoch. gd_mono_ms: monotonic ms. */
int64_t gd_now_ms(void);
int64_t gd_mono_ms(void);
/* Sleeps until the monotonic clock reads 'deadline_ms' (returns at once if past). */
void gd_sleep_until_ms(int64_t deadline_ms);

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

/* A hex digit's value (either case), or -1. */
int gd_hex_digit(int ch);
/* Lower-case hex of 'n' bytes into 'out' (2n + 1 bytes, NUL-terminated). */
void gd_hex_encode(const uint8_t *in, size_t n, char *out);
/* Exactly 2n hex digits of 'in' into 'out', followed by the character 'end' ('\0' for the end
 * of the string). False if not. */
bool gd_hex_decode(const char *in, uint8_t *out, size_t n, char end);
/* vsnprintf into 'why' when it is not NULL: the sentence a caller shows for a failure. */
void gd_whyf(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
