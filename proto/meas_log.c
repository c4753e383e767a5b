/* meas_log.c: the measurement log: items, their fold into a register, and the log as JSON. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "../base/base.h"
#include "json_read.h"
#include "meas_log.h"

static const char *const meas_types[] = { "exe", "config", "policy", "file", NULL };

void meas_init(struct meas_log *log)
{
	memset(log, 0, sizeof(*log));
}

static void extend(uint8_t reg[32], const uint8_t sha256[32])
{
	uint8_t buf[64];

	memcpy(buf, reg, 32);
	memcpy(buf + 32, sha256, 32);
	mbedtls_sha256_ret(buf, sizeof(buf), reg, 0);
}

static bool meas_type_known(const char *type)
{
	for (size_t i = 0; meas_types[i] != NULL; i++) {
		if (strcmp(type, meas_types[i]) == 0)
			return true;
	}
	return false;
}

int meas_add(struct meas_log *log, const char *type, const char *name, const uint8_t sha256[32])
{
	struct measurement *m;

	if (log->n >= MEAS_MAX)
		return GD_EFULL;
	/* A cut name would name another file; refuse rather than record something untrue. */
	if (!meas_type_known(type) || name[0] == '\0' || strlen(name) >= MEAS_NAME_MAX)
		return GD_EINVAL;
	m = &log->items[log->n++];
	memset(m, 0, sizeof(*m));
	strcpy(m->type, type);
	strcpy(m->name, name);
	memcpy(m->sha256, sha256, 32);
	extend(log->reg, sha256);
	return 0;
}

void meas_fold(const struct meas_log *log, uint8_t reg[32])
{
	size_t n = log->n < MEAS_MAX ? log->n : MEAS_MAX;

	memset(reg, 0, 32);
	for (size_t i = 0; i < n; i++)
		extend(reg, log->items[i].sha256);
}

int meas_hash_file(const char *path, uint8_t sha256[32])
{
	mbedtls_sha256_context ctx;
	uint8_t buf[16384];
	int fd, err = 0, saved;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return GD_EIO;
	mbedtls_sha256_init(&ctx);
	mbedtls_sha256_starts_ret(&ctx, 0);
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		mbedtls_sha256_update_ret(&ctx, buf, (size_t)n);
	}
	if (n < 0)
		err = GD_EIO;
	else
		mbedtls_sha256_finish_ret(&ctx, sha256);
	saved = errno;
	mbedtls_sha256_free(&ctx);
	close(fd);
	errno = saved;
	return err;
}

bool meas_log_add_members(cJSON *obj, const struct meas_log *log)
{
	cJSON *arr = cJSON_AddArrayToObject(obj, "measurements");
	char hex[65];
	size_t n = log->n < MEAS_MAX ? log->n : MEAS_MAX;

	if (arr == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct measurement *m = &log->items[i];
		cJSON *item = cJSON_CreateObject();

		if (!cJSON_AddItemToArray(arr, item))
			return false;
		/* Items come from meas_add or a parse; still, never read past an unterminated
		 * field. */
		if (memchr(m->type, 0, sizeof(m->type)) == NULL ||
		    memchr(m->name, 0, sizeof(m->name)) == NULL)
			return false;
		gd_hex_encode(m->sha256, 32, hex);
		if (cJSON_AddStringToObject(item, "type", m->type) == NULL ||
		    cJSON_AddStringToObject(item, "name", m->name) == NULL ||
		    cJSON_AddStringToObject(item, "sha256", hex) == NULL)
			return false;
	}
	gd_hex_encode(log->reg, 32, hex);
	return cJSON_AddStringToObject(obj, "register", hex) != NULL;
}

char *meas_log_json(const struct meas_log *log)
{
	cJSON *obj = cJSON_CreateObject();
	char *text = NULL;

	if (obj != NULL && meas_log_add_members(obj, log))
		text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return text;
}

static bool parse_item(const cJSON *obj, size_t i, struct measurement *m, char *why, size_t cap)
{
	char label[48];
	const char *type, *name, *hex;

	snprintf(label, sizeof(label), "measurements[%zu]", i);
	if (!cJSON_IsObject(obj)) {
		gd_whyf(why, cap, "%s: not an object", label);
		return false;
	}
	snprintf(label, sizeof(label), "measurements[%zu].type", i);
	type = jr_string(obj, "type", label, why, cap);
	if (type == NULL)
		return false;
	if (!meas_type_known(type)) {
		gd_whyf(why, cap, "%s: not one of exe, config, policy, file", label);
		return false;
	}
	snprintf(label, sizeof(label), "measurements[%zu].name", i);
	name = jr_string(obj, "name", label, why, cap);
	if (name == NULL)
		return false;
	if (!jr_printable(name, MEAS_NAME_MAX)) {
		gd_whyf(why, cap, "%s: not a name of 1 to %d printable characters", label,
			MEAS_NAME_MAX - 1);
		return false;
	}
	snprintf(label, sizeof(label), "measurements[%zu].sha256", i);
	hex = jr_string(obj, "sha256", label, why, cap);
	if (hex == NULL)
		return false;
	if (!gd_hex_decode(hex, m->sha256, 32, '\0')) {
		gd_whyf(why, cap, "%s: not 64 hex digits", label);
		return false;
	}
	strcpy(m->type, type);
	strcpy(m->name, name);
	return true;
}

bool meas_log_read_members(const cJSON *obj, struct meas_log *out, char *why, size_t cap)
{
	const cJSON *arr = jr_member(obj, "measurements", "measurements", why, cap), *it;
	const char *hex;
	int n;

	if (arr == NULL)
		return false;
	if (!cJSON_IsArray(arr)) {
		gd_whyf(why, cap, "measurements: not an array");
		return false;
	}
	n = cJSON_GetArraySize(arr);
	if (n > MEAS_MAX) {
		gd_whyf(why, cap, "measurements: %d items, more than %d", n, MEAS_MAX);
		return false;
	}
	cJSON_ArrayForEach (it, arr) {
		if (!parse_item(it, out->n, &out->items[out->n], why, cap))
			return false;
		out->n++;
	}
	hex = jr_string(obj, "register", "register", why, cap);
	if (hex == NULL)
		return false;
	if (!gd_hex_decode(hex, out->reg, 32, '\0')) {
		gd_whyf(why, cap, "register: not 64 hex digits");
		return false;
	}
	return true;
}

int meas_log_parse(const char *json, size_t len, struct meas_log *out, char *why, size_t cap)
{
	struct meas_log *log = calloc(1, sizeof(*log));
	cJSON *root = NULL;
	int err = GD_EPROTO;

	if (log == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	root = jr_object(json, len);
	if (root == NULL) {
		gd_whyf(why, cap, "not a JSON object");
		goto out;
	}
	if (!meas_log_read_members(root, log, why, cap))
		goto out;
	*out = *log;
	err = 0;
out:
	cJSON_Delete(root);
	free(log);
	return err;
}
