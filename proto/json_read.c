/* json_read.c: strict reading of the JSON messages of proto/: exact documents, single members. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "b64url.h"
#include "json_read.h"

#define INT_JSON_MAX 9007199254740992.0 /* 2^53: larger integers are not exact in JSON */

/* The copy gives cJSON a terminated buffer whatever the caller passed. */
cJSON *jr_object(const char *json, size_t len)
{
	const char *end = NULL;
	char *copy;
	cJSON *root;
	size_t n;

	if (json == NULL)
		return NULL;
	n = strnlen(json, len);
	for (size_t i = n; i < len; i++) {
		if (json[i] != '\0')
			return NULL;
	}
	copy = malloc(n + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, json, n);
	copy[n] = '\0';
	root = cJSON_ParseWithOpts(copy, &end, true);
	free(copy);
	if (root != NULL && !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		root = NULL;
	}
	return root;
}

const cJSON *jr_member(const cJSON *obj, const char *key, const char *label, char *why, size_t cap)
{
	const cJSON *found = NULL, *it;

	cJSON_ArrayForEach (it, obj) {
		if (it->string == NULL || strcmp(it->string, key) != 0)
			continue;
		if (found != NULL) {
			gd_whyf(why, cap, "%s: given twice", label);
			return NULL;
		}
		found = it;
	}
	if (found == NULL)
		gd_whyf(why, cap, "%s: missing", label);
	return found;
}

const char *jr_string(const cJSON *obj, const char *key, const char *label, char *why, size_t cap)
{
	const cJSON *it = jr_member(obj, key, label, why, cap);

	if (it == NULL)
		return NULL;
	if (!cJSON_IsString(it) || it->valuestring == NULL) {
		gd_whyf(why, cap, "%s: not a string", label);
		return NULL;
	}
	return it->valuestring;
}

bool jr_int(const cJSON *obj, const char *key, const char *label, int64_t *out, char *why,
	    size_t cap)
{
	const cJSON *it = jr_member(obj, key, label, why, cap);
	double v;

	if (it == NULL)
		return false;
	v = it->valuedouble;
	if (!cJSON_IsNumber(it) || !isfinite(v) || v < 0 || v > INT_JSON_MAX || floor(v) != v) {
		gd_whyf(why, cap, "%s: not a whole number from 0 to 2^53", label);
		return false;
	}
	*out = (int64_t)v;
	return true;
}

bool jr_b64(const cJSON *obj, const char *key, uint8_t *out, size_t n, char *why, size_t cap)
{
	const char *s = jr_string(obj, key, key, why, cap);
	uint8_t buf[64];

	if (s == NULL)
		return false;
	if (n > sizeof(buf) || b64url_decode(s, buf, n) != (int)n) {
		gd_whyf(why, cap, "%s: not %zu bytes of base64url", key, n);
		return false;
	}
	memcpy(out, buf, n);
	return true;
}

bool jr_printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	}
	return true;
}
