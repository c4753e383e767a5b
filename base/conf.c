/* conf.c: table-driven reading of config objects, with errors that name file, path and expectation.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "conf.h"

void conf_init(struct conf *c, const char *file)
{
	*c = (struct conf){ .file = file };
}

void conf_release(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nerrors; i++)
		free(c->errors[i]);
	free(c->errors);
	c->errors = NULL;
	c->nerrors = 0;
	c->cap = 0;
}

void conf_error(struct conf *c, const char *path, const char *fmt, ...)
{
	char msg[768];
	char *line = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path != NULL && path[0] != '\0')
		n = asprintf(&line, "%s: %s: %s", c->file, path, msg);
	else
		n = asprintf(&line, "%s: %s", c->file, msg);
	if (n < 0)
		line = NULL;
	if (c->nerrors == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		char **grown = realloc(c->errors, cap * sizeof(*grown));

		if (grown == NULL) {
			free(line);
			return;
		}
		c->errors = grown;
		c->cap = cap;
	}
	/* Even out of memory, the count must say that the config is bad. */
	c->errors[c->nerrors++] = line;
}

void conf_take(struct conf *dst, struct conf *src)
{
	for (size_t i = 0; i < src->nerrors; i++) {
		conf_error(dst, NULL, "-");
		free(dst->errors[dst->nerrors - 1]);
		dst->errors[dst->nerrors - 1] = src->errors[i];
		src->errors[i] = NULL;
	}
	conf_release(src);
}

void conf_print_errors(const struct conf *c, FILE *out)
{
	for (size_t i = 0; i < c->nerrors; i++)
		fprintf(out, "%s\n", c->errors[i] ? c->errors[i] : "(out of memory)");
}

char *conf_path_key(char *buf, size_t len, const char *path, const char *key)
{
	if (path == NULL || path[0] == '\0')
		snprintf(buf, len, "%s", key);
	else
		snprintf(buf, len, "%s.%s", path, key);
	return buf;
}

char *conf_path_index(char *buf, size_t len, const char *path, size_t index)
{
	snprintf(buf, len, "%s[%zu]", path, index);
	return buf;
}

const char *conf_choices_text(char *buf, size_t len, const char *const *choices)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; choices[i] != NULL && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", choices[i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
	return buf;
}

bool conf_valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (!isalnum(ch) && ch != '_' && ch != '-' && ch != '.')
			return false;
	}
	return true;
}

static const char *json_type_name(const cJSON *item)
{
	if (cJSON_IsString(item))
		return "a string";
	if (cJSON_IsNumber(item))
		return "a number";
	if (cJSON_IsBool(item))
		return "a boolean";
	if (cJSON_IsNull(item))
		return "null";
	if (cJSON_IsArray(item))
		return "an array";
	if (cJSON_IsObject(item))
		return "an object";
	return "an invalid value";
}

/* Stores 'v' into a field of 'size' bytes; signed if 'is_signed'. */
static void store_int(void *field, size_t size, bool is_signed, long long v)
{
	switch (size) {
	case 1:
		if (is_signed)
			*(int8_t *)field = (int8_t)v;
		else
			*(uint8_t *)field = (uint8_t)v;
		break;
	case 2:
		if (is_signed)
			*(int16_t *)field = (int16_t)v;
		else
			*(uint16_t *)field = (uint16_t)v;
		break;
	case 4:
		if (is_signed)
			*(int32_t *)field = (int32_t)v;
		else
			*(uint32_t *)field = (uint32_t)v;
		break;
	default:
		*(long long *)field = v;
		break;
	}
}

static int read_key(struct conf *c, const cJSON *item, const char *path, const struct conf_key *k,
		    void *out)
{
	void *field = (char *)out + k->offset;
	char choices[512];

	switch (k->kind) {
	case CONF_STRING: {
		char *copy;

		if (!cJSON_IsString(item)) {
			conf_error(c, path, "expected %s, got %s",
				   k->expect ? k->expect : "a string", json_type_name(item));
			return 1;
		}
		copy = strdup(item->valuestring);
		if (copy == NULL) {
			conf_error(c, path, "out of memory");
			return 1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	case CONF_INT: {
		double d;

		if (!cJSON_IsNumber(item)) {
			conf_error(c, path, "expected %s, got %s",
				   k->expect ? k->expect : "an integer", json_type_name(item));
			return 1;
		}
		d = item->valuedouble;
		if (d != floor(d) || d < (double)k->min || d > (double)k->max) {
			if (d == floor(d) && fabs(d) < 1e18)
				conf_error(c, path,
					   "%.0f is out of range (expected %s from %lld to %lld)",
					   d, k->expect ? k->expect : "an integer", k->min, k->max);
			else
				conf_error(
					c, path,
					"%g is not a whole number (expected %s from %lld to %lld)",
					d, k->expect ? k->expect : "an integer", k->min, k->max);
			return 1;
		}
		store_int(field, k->size, k->min < 0, (long long)d);
		return 0;
	}
	case CONF_DOUBLE: {
		double d;

		if (!cJSON_IsNumber(item)) {
			conf_error(c, path, "expected %s, got %s",
				   k->expect ? k->expect : "a number", json_type_name(item));
			return 1;
		}
		d = item->valuedouble;
		if (!isfinite(d) ||
		    ((k->dmin != 0 || k->dmax != 0) && (d < k->dmin || d > k->dmax))) {
			conf_error(c, path, "%g is out of range (expected %s from %g to %g)", d,
				   k->expect ? k->expect : "a number", k->dmin, k->dmax);
			return 1;
		}
		*(double *)field = d;
		return 0;
	}
	case CONF_BOOL:
		if (!cJSON_IsBool(item)) {
			conf_error(c, path, "expected true or false, got %s", json_type_name(item));
			return 1;
		}
		*(bool *)field = cJSON_IsTrue(item);
		return 0;
	case CONF_ENUM:
		if (cJSON_IsString(item)) {
			for (int i = 0; k->choices[i] != NULL; i++) {
				if (strcmp(item->valuestring, k->choices[i]) == 0) {
					*(int *)field = i;
					return 0;
				}
			}
			conf_error(c, path, "unknown %s \"%s\" (expected one of %s)",
				   k->expect ? k->expect : "value", item->valuestring,
				   conf_choices_text(choices, sizeof(choices), k->choices));
			return 1;
		}
		conf_error(c, path, "expected one of %s, got %s",
			   conf_choices_text(choices, sizeof(choices), k->choices),
			   json_type_name(item));
		return 1;
	case CONF_OBJECT:
		if (!cJSON_IsObject(item)) {
			conf_error(c, path, "expected %s, got %s",
				   k->expect ? k->expect : "an object", json_type_name(item));
			return 1;
		}
		return 0;
	case CONF_ARRAY:
		if (!cJSON_IsArray(item)) {
			conf_error(c, path, "expected %s, got %s",
				   k->expect ? k->expect : "an array", json_type_name(item));
			return 1;
		}
		return 0;
	case CONF_ANY:
		return 0;
	}
	return 0;
}

int conf_read_object(struct conf *c, const void *json_obj, const char *path,
		     const struct conf_key *keys, void *out)
{
	const cJSON *obj = json_obj;
	const cJSON *item;
	char sub[256];
	int errors = 0;

	if (!cJSON_IsObject(obj)) {
		conf_error(c, path, "expected an object, got %s", json_type_name(obj));
		return 1;
	}
	cJSON_ArrayForEach (item, obj) {
		const struct conf_key *k = NULL;

		for (size_t i = 0; keys[i].name != NULL; i++) {
			if (strcmp(keys[i].name, item->string) == 0) {
				k = &keys[i];
				break;
			}
		}
		conf_path_key(sub, sizeof(sub), path, item->string);
		if (k == NULL) {
			char known[512];
			size_t used = 0;

			known[0] = '\0';
			for (size_t i = 0; keys[i].name != NULL && used < sizeof(known); i++) {
				int n = snprintf(known + used, sizeof(known) - used, "%s%s",
						 i ? ", " : "", keys[i].name);
				if (n < 0)
					break;
				used += (size_t)n;
			}
			conf_error(c, sub, "unknown key (expected one of %s)", known);
			errors++;
			continue;
		}
		/* Duplicate keys are legal JSON but ambiguous in a config. */
		for (const cJSON *prev = obj->child; prev != item; prev = prev->next) {
			if (strcmp(prev->string, item->string) == 0) {
				conf_error(c, sub, "duplicate key");
				errors++;
				break;
			}
		}
		errors += read_key(c, item, sub, k, out);
	}
	for (size_t i = 0; keys[i].name != NULL; i++) {
		if (keys[i].required &&
		    cJSON_GetObjectItemCaseSensitive(obj, keys[i].name) == NULL) {
			conf_error(c, conf_path_key(sub, sizeof(sub), path, keys[i].name),
				   "missing (expected %s)",
				   keys[i].expect ? keys[i].expect : "this key");
			errors++;
		}
	}
	return errors;
}
