/* json.h: the bounded JSON writer every JSON document guardian sends or stores goes through. */
#ifndef BASE_JSON_H
#define BASE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The bounded JSON writer. Every JSON document guardian sends or stores is
 * built through it: strings are escaped (control characters as \u00XX, bytes
 * that are not UTF-8 as U+FFFD), numbers that JSON cannot hold (NaN,
 * infinities) are written as null, and commas come by themselves.
 *
 * It never truncates: the first thing that does not fit fails the whole
 * document (jw_finish returns 0 and leaves "" in the buffer), so a caller
 * sends a short, valid document instead of a cut one. The writer allocates
 * nothing; the caller owns the buffer.
 *
 *   struct jw w;
 *   jw_init(&w, buf, sizeof(buf));
 *   jw_object(&w);
 *   jw_key(&w, "id"); jw_string(&w, id);
 *   jw_key(&w, "ts"); jw_int(&w, ts);
 *   jw_end(&w);
 *   if (jw_finish(&w) == 0) ... did not fit ...
 *
 * A document may also be a list of members without braces (a fragment to be
 * placed inside another object): start with jw_key.
 */
struct jw {
	char *buf;
	size_t cap; /* bytes usable, the terminating NUL included */
	size_t len;
	bool failed;
	bool comma;	/* a value was written: the next member or element needs a ',' */
	char stack[32]; /* '}' or ']' for each open object or array */
	unsigned depth;
};

/* Starts a document in 'buf' ('cap' bytes, at least 1). */
void jw_init(struct jw *w, char *buf, size_t cap);
/* Opens an object or an array; jw_end closes the innermost one. */
void jw_object(struct jw *w);
void jw_array(struct jw *w);
void jw_end(struct jw *w);
/* A member's name (escaped like a string); the value follows. */
void jw_key(struct jw *w, const char *key);
/* A string value; NULL writes null. */
void jw_string(struct jw *w, const char *s);
void jw_int(struct jw *w, int64_t v);
void jw_uint(struct jw *w, uint64_t v);
/* The shortest of %.15g, %.16g and %.17g that reads back as 'd'; null when not finite. */
void jw_double(struct jw *w, double d);
void jw_bool(struct jw *w, bool b);
void jw_null(struct jw *w);
/* A value that is already JSON text (the caller vouches for it): copied as it is. */
void jw_raw(struct jw *w, const char *json, size_t len);
/*
 * Ends the document: NUL-terminates it and returns its length, or 0 (with ""
 * in the buffer) if anything did not fit or an object or array is still open.
 */
size_t jw_finish(struct jw *w);

/* Where a document stands, to take back what was written after it (jw_rewind). */
struct jw_mark {
	size_t len;
	bool comma, failed;
	unsigned depth;
	char stack[32];
};
struct jw_mark jw_save(const struct jw *w);
/* Returns to 'm': what came after it is gone, and so is a failure that came after it. */
void jw_rewind(struct jw *w, struct jw_mark m);

/* 'd' as jw_double writes it, into 'out' (NUL-terminated; 32 bytes hold any). */
void jw_format_double(char *out, size_t cap, double d);

#endif
