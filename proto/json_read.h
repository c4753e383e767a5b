/* json_read.h: strict reading of the JSON messages of proto/; private to proto/. */
#ifndef PROTO_JSON_READ_H
#define PROTO_JSON_READ_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses exactly 'len' bytes as one JSON object; trailing white space or NULs
 * are allowed (some senders count the terminator), anything else is not.
 * Returns the tree (cJSON_Delete frees it), or NULL.
 */
cJSON *jr_object(const char *json, size_t len);
/*
 * The member 'key' of 'obj', or NULL with 'why' ("<label>: missing"). A key
 * given twice is refused: two parsers could pick different copies, and the
 * signature covers both. 'why' may be NULL, here and below.
 */
const cJSON *jr_member(const cJSON *obj, const char *key, const char *label, char *why, size_t cap);
/* The string value of member 'key', or NULL with 'why'. */
const char *jr_string(const cJSON *obj, const char *key, const char *label, char *why, size_t cap);
/* A non-negative integer that JSON carries exactly (up to 2^53) into *out; false with 'why'. */
bool jr_int(const cJSON *obj, const char *key, const char *label, int64_t *out, char *why,
	    size_t cap);
/* A base64url string that decodes to exactly 'n' bytes (at most 64) into 'out'; false with 'why'.
 */
bool jr_b64(const cJSON *obj, const char *key, uint8_t *out, size_t n, char *why, size_t cap);
/* Text a person may read in a log or a report: 1 to max - 1 bytes, no control characters. */
bool jr_printable(const char *s, size_t max);

#endif
