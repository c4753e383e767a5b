/* test_json_writer.c: the bounded JSON writer: escaping, numbers, commas, all or nothing. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "../../base/json.h"

/* 'text' parses as JSON (cJSON, which is strict about control characters in strings). */
static bool valid_json(const char *text)
{
	cJSON *doc = cJSON_Parse(text);
	bool ok = doc != NULL;

	cJSON_Delete(doc);
	return ok;
}

Test(json_writer, object_with_every_kind)
{
	char buf[256];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_object(&w);
	jw_key(&w, "s");
	jw_string(&w, "a\"b\\c\n\x01");
	jw_key(&w, "i");
	jw_int(&w, -42);
	jw_key(&w, "u");
	jw_uint(&w, UINT64_MAX);
	jw_key(&w, "d");
	jw_double(&w, 0.1);
	jw_key(&w, "b");
	jw_bool(&w, true);
	jw_key(&w, "n");
	jw_null(&w);
	jw_key(&w, "a");
	jw_array(&w);
	jw_int(&w, 1);
	jw_object(&w);
	jw_end(&w);
	jw_string(&w, NULL);
	jw_end(&w);
	jw_end(&w);
	cr_assert_gt(jw_finish(&w), 0);
	cr_assert_str_eq(buf, "{\"s\":\"a\\\"b\\\\c\\u000a\\u0001\",\"i\":-42,"
			      "\"u\":18446744073709551615,\"d\":0.1,\"b\":true,\"n\":null,"
			      "\"a\":[1,{},null]}");
	cr_assert(valid_json(buf));
}

Test(json_writer, numbers_json_cannot_hold_are_null)
{
	char buf[64];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_array(&w);
	jw_double(&w, INFINITY);
	jw_double(&w, -INFINITY);
	jw_double(&w, NAN);
	jw_double(&w, 1e300 * 1e10);
	jw_end(&w);
	cr_assert_gt(jw_finish(&w), 0);
	cr_assert_str_eq(buf, "[null,null,null,null]");
}

Test(json_writer, doubles_read_back_exactly)
{
	const double values[] = { 0.1, 1.0 / 3.0, 1e-300, 123456789.123456789, -0.0, 5e-324 };
	char buf[64];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		jw_format_double(buf, sizeof(buf), values[i]);
		cr_assert_eq(strtod(buf, NULL), values[i], "%s", buf);
	}
}

Test(json_writer, invalid_utf8_becomes_replacement_character)
{
	char buf[64];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_string(&w, "\xc3\xa9\xff\xed\xa0\x80ok");
	cr_assert_gt(jw_finish(&w), 0);
	cr_assert_str_eq(buf, "\"\xc3\xa9\\ufffd\\ufffd\\ufffd\\ufffdok\"");
	cr_assert(valid_json(buf));
}

/* Every buffer size from 1 to the whole: either the whole document or nothing, never a cut. */
Test(json_writer, never_cut_inside_a_token)
{
	char whole[512], buf[512];
	size_t full_len;
	struct jw w;

	for (size_t cap = 1; cap <= sizeof(buf); cap++) {
		jw_init(&w, cap == sizeof(buf) ? whole : buf, cap);
		jw_object(&w);
		jw_key(&w, "id");
		jw_string(&w, "a long id with \"quotes\" and \x02 control characters, repeated "
			      "to be long enough to be cut anywhere");
		jw_key(&w, "value");
		jw_double(&w, strtod("1e999", NULL));
		jw_key(&w, "n");
		jw_int(&w, INT64_MIN);
		jw_end(&w);
		full_len = jw_finish(&w);
		if (cap == sizeof(buf)) {
			cr_assert_gt(full_len, 0);
			cr_assert(valid_json(whole));
			break;
		}
		if (full_len == 0) {
			cr_assert_str_eq(buf, "", "cap %zu left \"%s\"", cap, buf);
		} else {
			cr_assert(valid_json(buf), "cap %zu: %s", cap, buf);
			cr_assert_eq(full_len, strlen(buf));
		}
	}
}

Test(json_writer, an_open_object_fails_the_document)
{
	char buf[64];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_object(&w);
	jw_key(&w, "a");
	jw_int(&w, 1);
	cr_assert_eq(jw_finish(&w), 0);
	cr_assert_str_eq(buf, "");
	jw_init(&w, buf, sizeof(buf));
	jw_end(&w);
	cr_assert_eq(jw_finish(&w), 0);
}

Test(json_writer, fragment_of_members)
{
	char buf[64];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_key(&w, "a");
	jw_int(&w, 1);
	jw_key(&w, "b");
	jw_raw(&w, "[true]", 6);
	cr_assert_gt(jw_finish(&w), 0);
	cr_assert_str_eq(buf, "\"a\":1,\"b\":[true]");
}

Test(json_writer, rewind_takes_back_a_failure)
{
	char buf[24];
	struct jw w;
	struct jw_mark m;

	jw_init(&w, buf, sizeof(buf));
	jw_array(&w);
	jw_int(&w, 1);
	m = jw_save(&w);
	jw_string(&w, "far too long to fit in this buffer");
	cr_assert(w.failed);
	jw_rewind(&w, m);
	jw_int(&w, 2);
	jw_end(&w);
	cr_assert_gt(jw_finish(&w), 0);
	cr_assert_str_eq(buf, "[1,2]");
}
