/* command_doc.c: a command's JSON read into bounded parts, and its answer written whole. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"
#include "command_doc.h"

void gd_value_json(char *out, size_t cap, const struct value *v)
{
	struct jw w;

	jw_init(&w, out, cap);
	switch (v->kind) {
	case VALUE_KIND_BOOL:
		jw_bool(&w, v->b);
		break;
	case VALUE_KIND_INT:
		jw_int(&w, v->i);
		break;
	case VALUE_KIND_UINT:
		jw_uint(&w, v->u);
		break;
	case VALUE_KIND_FLOAT:
		jw_double(&w, v->f);
		break;
	case VALUE_KIND_STRING:
		jw_string(&w, v->s);
		break;
	default:
		jw_null(&w);
		break;
	}
	if (jw_finish(&w) == 0 && cap >= 5)
		memcpy(out, "null", 5);
}

/* The id as JSON text: a string of at most CMD_ID_CHARS bytes, or a finite number. */
static bool id_json(const cJSON *id, char out[CMD_ID_BYTES])
{
	struct jw w;

	jw_init(&w, out, CMD_ID_BYTES);
	if (cJSON_IsString(id) && strlen(id->valuestring) <= CMD_ID_CHARS)
		jw_string(&w, id->valuestring);
	else if (cJSON_IsNumber(id) && isfinite(id->valuedouble))
		jw_double(&w, id->valuedouble);
	else
		w.failed = true;
	if (jw_finish(&w) == 0) {
		snprintf(out, CMD_ID_BYTES, "null");
		return false;
	}
	return true;
}

void cmd_parse_id(const char *text, size_t len, char id[CMD_ID_BYTES])
{
	cJSON *doc = len <= CMD_BYTES ? cJSON_ParseWithLength(text, len) : NULL;

	id_json(cJSON_GetObjectItemCaseSensitive(doc, "id"), id);
	cJSON_Delete(doc);
}

/* The value to write, or false if it is none a point could take. */
static bool requested_value(const cJSON *value, struct cmd_parsed *out)
{
	struct value *v = &out->value;

	if (cJSON_IsBool(value)) {
		*v = (struct value){ .kind = VALUE_KIND_BOOL, .b = cJSON_IsTrue(value) };
	} else if (cJSON_IsNumber(value)) {
		*v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = value->valuedouble };
		/* Integral numbers stay exact integers for integer registers. */
		if (v->f == floor(v->f) && fabs(v->f) < 9007199254740992.0)
			*v = (struct value){ .kind = VALUE_KIND_INT, .i = (int64_t)v->f };
	} else if (cJSON_IsString(value) && strlen(value->valuestring) <= CMD_STRING_BYTES) {
		snprintf(out->text, sizeof(out->text), "%s", value->valuestring);
		*v = (struct value){ .kind = VALUE_KIND_STRING, .s = out->text };
	} else {
		return false;
	}
	gd_value_json(out->value_text, sizeof(out->value_text), v);
	return true;
}

bool cmd_parse(const char *text, size_t len, struct cmd_parsed *out, char *reason, size_t cap)
{
	const cJSON *point, *value;
	cJSON *doc = NULL;
	bool ok = false, id_ok;

	snprintf(out->id, sizeof(out->id), "null");
	out->point[0] = '\0';
	out->value = (struct value){ .kind = VALUE_KIND_NONE };
	snprintf(out->value_text, sizeof(out->value_text), "null");
	if (len > CMD_BYTES) {
		snprintf(reason, cap, "malformed command: larger than %d bytes", CMD_BYTES);
		goto out;
	}
	doc = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(doc)) {
		snprintf(reason, cap,
			 "malformed command: not a JSON object (expected {\"id\":..., "
			 "\"point\":..., \"value\":...})");
		goto out;
	}
	id_ok = id_json(cJSON_GetObjectItemCaseSensitive(doc, "id"), out->id);
	point = cJSON_GetObjectItemCaseSensitive(doc, "point");
	value = cJSON_GetObjectItemCaseSensitive(doc, "value");
	if (cJSON_IsString(point) && strlen(point->valuestring) < sizeof(out->point))
		snprintf(out->point, sizeof(out->point), "%s", point->valuestring);
	if (!id_ok || out->point[0] == '\0' || value == NULL) {
		snprintf(reason, cap,
			 "malformed command: expected \"id\" (a string of at most %d bytes or a "
			 "finite number), \"point\" (a string of 1 to %d bytes) and \"value\"",
			 CMD_ID_CHARS, CMD_POINT_BYTES - 1);
		goto out;
	}
	if (!requested_value(value, out)) {
		snprintf(reason, cap,
			 "malformed command: \"value\" must be a number, true/false or a string "
			 "of at most %d bytes",
			 CMD_STRING_BYTES);
		goto out;
	}
	ok = true;
out:
	cJSON_Delete(doc);
	return ok;
}

size_t cmd_answer_format(const struct cmd_answer *a, int64_t ts, char *fields, char *doc,
			 size_t doc_cap)
{
	bool done = strcmp(a->status, "accepted") == 0;
	struct jw w;

	jw_init(&w, fields, CMD_FIELDS_BYTES);
	jw_key(&w, "id");
	jw_raw(&w, a->id, strlen(a->id));
	jw_key(&w, "point");
	jw_string(&w, a->point);
	jw_key(&w, "value");
	jw_raw(&w, a->value, strlen(a->value));
	jw_key(&w, "status");
	jw_string(&w, a->status);
	jw_key(&w, "reason");
	jw_string(&w, a->reason);
	if (jw_finish(&w) == 0) {
		jw_init(&w, fields, CMD_FIELDS_BYTES);
		jw_key(&w, "id");
		jw_null(&w);
		jw_key(&w, "point");
		jw_null(&w);
		jw_key(&w, "value");
		jw_null(&w);
		jw_key(&w, "status");
		jw_string(&w, a->status);
		jw_key(&w, "reason");
		jw_string(&w, done ? "written (the command's fields are too large to repeat)"
				   : "the command's fields are too large to answer");
		jw_finish(&w);
	}
	jw_init(&w, doc, doc_cap);
	jw_object(&w);
	jw_raw(&w, fields, strlen(fields));
	jw_key(&w, "ts");
	jw_int(&w, ts);
	jw_end(&w);
	return jw_finish(&w);
}
