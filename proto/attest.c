/* attest.c: the nonce and result messages the service answers with (service/PROTOCOL.md). */
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "attest.h"
#include "b64url.h"
#include "json_read.h"

#define RESULT_CERT_MAX 16384 /* an operational certificate, perhaps with its CA */

char *attest_nonce_build(const uint8_t nonce[NONCE_LEN], int64_t expires_ms)
{
	char text[2 * NONCE_LEN];
	cJSON *obj = NULL;
	char *out = NULL;

	if (b64url_encode(nonce, NONCE_LEN, text, sizeof(text)) < 0)
		return NULL;
	obj = cJSON_CreateObject();
	if (obj != NULL && cJSON_AddStringToObject(obj, "nonce", text) != NULL &&
	    cJSON_AddNumberToObject(obj, "expires", (double)expires_ms) != NULL)
		out = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return out;
}

int attest_nonce_parse(const char *json, size_t len, uint8_t nonce[NONCE_LEN], int64_t *expires_ms)
{
	uint8_t buf[NONCE_LEN];
	int64_t expires;
	cJSON *obj = jr_object(json, len);
	int err = GD_EPROTO;

	if (obj == NULL)
		return GD_EPROTO;
	if (!jr_b64(obj, "nonce", buf, NONCE_LEN, NULL, 0) ||
	    !jr_int(obj, "expires", "expires", &expires, NULL, 0))
		goto out;
	memcpy(nonce, buf, NONCE_LEN);
	*expires_ms = expires;
	err = 0;
out:
	cJSON_Delete(obj);
	return err;
}

char *attest_result_build(const struct attest_result *r)
{
	cJSON *obj = cJSON_CreateObject();
	char *out = NULL;
	bool ok;

	if (obj == NULL)
		return NULL;
	if (r->cert_pem != NULL)
		ok = cJSON_AddTrueToObject(obj, "ok") != NULL &&
		     cJSON_AddStringToObject(obj, "cert", r->cert_pem) != NULL &&
		     cJSON_AddNumberToObject(obj, "not_after", (double)r->not_after) != NULL;
	else
		ok = memchr(r->reason, 0, sizeof(r->reason)) != NULL &&
		     memchr(r->detail, 0, sizeof(r->detail)) != NULL &&
		     cJSON_AddFalseToObject(obj, "ok") != NULL &&
		     cJSON_AddStringToObject(obj, "reason", r->reason) != NULL &&
		     cJSON_AddStringToObject(obj, "detail", r->detail) != NULL;
	if (ok)
		out = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return out;
}

/* A reason code: [a-z_]+ that fits. */
static bool valid_reason(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == 0 || n >= cap)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz_") == n;
}

/* The detail is the service's sentence, for our log: cut to fit, control characters made '?'. */
static void copy_detail(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	dst[n] = '\0';
}

static bool result_ok(const cJSON *obj, struct attest_result *r)
{
	static const char head[] = "-----BEGIN CERTIFICATE-----";
	const char *cert = jr_string(obj, "cert", "cert", NULL, 0);

	if (cert == NULL || strnlen(cert, RESULT_CERT_MAX) >= RESULT_CERT_MAX ||
	    strncmp(cert, head, strlen(head)) != 0)
		return false;
	if (!jr_int(obj, "not_after", "not_after", &r->not_after, NULL, 0))
		return false;
	r->cert_pem = strdup(cert);
	return r->cert_pem != NULL;
}

static bool result_refused(const cJSON *obj, struct attest_result *r)
{
	const char *reason = jr_string(obj, "reason", "reason", NULL, 0);
	const char *detail = jr_string(obj, "detail", "detail", NULL, 0);

	if (reason == NULL || detail == NULL || !valid_reason(reason, sizeof(r->reason)))
		return false;
	strcpy(r->reason, reason);
	copy_detail(r->detail, sizeof(r->detail), detail);
	return true;
}

int attest_result_parse(const char *json, size_t len, struct attest_result *out)
{
	cJSON *obj = jr_object(json, len);
	const cJSON *ok;
	bool good = false;

	memset(out, 0, sizeof(*out));
	if (obj == NULL)
		return GD_EPROTO;
	ok = jr_member(obj, "ok", "ok", NULL, 0);
	if (ok == NULL || !cJSON_IsBool(ok))
		goto out;
	out->ok = cJSON_IsTrue(ok);
	good = out->ok ? result_ok(obj, out) : result_refused(obj, out);
out:
	cJSON_Delete(obj);
	if (!good)
		attest_result_free(out);
	return good ? 0 : GD_EPROTO;
}

void attest_result_free(struct attest_result *r)
{
	if (r == NULL)
		return;
	free(r->cert_pem);
	memset(r, 0, sizeof(*r));
}
