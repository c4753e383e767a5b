/* fuzz_command.c: libFuzzer target: any command payload from the cloud is read into bounded
 * parts, and every answer to it, whatever its status, is one valid JSON document that an audit
 * record holds. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../guardian/command_doc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 'text' is one JSON value of the expected type; abort (a finding) otherwise. */
static cJSON *must_parse(const char *text, size_t len)
{
	cJSON *doc = cJSON_ParseWithLength(text, len);

	if (doc == NULL)
		abort();
	return doc;
}

static void check_answer(const struct cmd_answer *a)
{
	static char fields[CMD_FIELDS_BYTES], doc[CMD_FIELDS_BYTES + 64],
		wrapped[CMD_FIELDS_BYTES + 2];
	size_t n = cmd_answer_format(a, 1764547200000, fields, doc, sizeof(doc));
	const cJSON *status;
	cJSON *root;

	if (n == 0 || n != strlen(doc) || strlen(fields) >= CMD_FIELDS_BYTES)
		abort();
	root = must_parse(doc, n);
	status = cJSON_GetObjectItemCaseSensitive(root, "status");
	if (!cJSON_IsString(status) || strcmp(status->valuestring, a->status) != 0 ||
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "ts")))
		abort();
	cJSON_Delete(root);
	/* The members alone become an audit record's members. */
	snprintf(wrapped, sizeof(wrapped), "{%s}", fields);
	cJSON_Delete(must_parse(wrapped, strlen(wrapped)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cmd_parsed cmd;
	char reason[1024], id[CMD_ID_BYTES];
	static const char *const statuses[] = { "accepted", "refused", "failed", "busy" };
	bool ok = cmd_parse((const char *)data, size, &cmd, reason, sizeof(reason));

	cJSON_Delete(must_parse(cmd.id, strlen(cmd.id)));
	cJSON_Delete(must_parse(cmd.value_text, strlen(cmd.value_text)));
	if (strlen(cmd.point) >= CMD_POINT_BYTES)
		abort();
	cmd_parse_id((const char *)data, size, id);
	if (strcmp(id, cmd.id) != 0)
		abort(); /* a busy answer names the same id the full answer would */
	if (ok)		 /* the reasons that quote what the cloud sent */
		snprintf(reason, sizeof(reason), "unknown point \"%s\"", cmd.point);
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		check_answer(&(struct cmd_answer){ .id = cmd.id,
						   .point = cmd.point[0] ? cmd.point : NULL,
						   .value = cmd.value_text,
						   .status = statuses[i],
						   .reason = reason });
	return 0;
}
