/* evidence.c: signed evidence: claims built and signed, envelopes parsed, signatures checked. */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecp.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "evidence.h"
#include "json_read.h"

#define SIG_MAX EVIDENCE_SIG_MAX /* what evidence_envelope_parse may write into 'sig' */

/* 's' ends inside its 'size' bytes. */
static bool terminated(const char *s, size_t size)
{
	return memchr(s, 0, size) != NULL;
}

static char *claims_build(const struct evidence *ev)
{
	char nonce[2 * NONCE_LEN], ueid[2 * UEID_LEN];
	cJSON *obj = NULL;
	char *text = NULL;

	if (!terminated(ev->name, sizeof(ev->name)) ||
	    !terminated(ev->swversion, sizeof(ev->swversion)) ||
	    !terminated(ev->op_pub, sizeof(ev->op_pub)))
		return NULL;
	if (b64url_encode(ev->nonce, NONCE_LEN, nonce, sizeof(nonce)) < 0 ||
	    b64url_encode(ev->ueid, UEID_LEN, ueid, sizeof(ueid)) < 0)
		return NULL;
	obj = cJSON_CreateObject();
	if (obj == NULL)
		return NULL;
	if (cJSON_AddStringToObject(obj, "eat_nonce", nonce) == NULL ||
	    cJSON_AddStringToObject(obj, "ueid", ueid) == NULL ||
	    cJSON_AddStringToObject(obj, "name", ev->name) == NULL ||
	    cJSON_AddStringToObject(obj, "swname", "guardian") == NULL ||
	    cJSON_AddStringToObject(obj, "swversion", ev->swversion) == NULL ||
	    cJSON_AddNumberToObject(obj, "iat", (double)ev->iat) == NULL ||
	    !meas_log_add_members(obj, &ev->log) ||
	    cJSON_AddStringToObject(obj, "op_pub", ev->op_pub) == NULL)
		goto out;
	if (ev->tpm) {
		cJSON *tpm = cJSON_AddObjectToObject(obj, "tpm");

		if (ev->tpm_pcr < 0 || ev->tpm_pcr > TPM_QUOTE_PCR_MAX || tpm == NULL ||
		    cJSON_AddNumberToObject(tpm, "pcr", ev->tpm_pcr) == NULL)
			goto out;
	}
	text = cJSON_PrintUnformatted(obj);
out:
	cJSON_Delete(obj);
	return text;
}

char *evidence_envelope_build(const struct evidence *ev, evidence_sign_fn *sign, void *ctx)
{
	uint8_t digest[32], sig[SIG_MAX];
	char sig64[2 * SIG_MAX];
	size_t siglen = 0;
	char *claims, *text = NULL;
	cJSON *env = NULL;

	claims = claims_build(ev);
	if (claims == NULL)
		return NULL;
	mbedtls_sha256_ret((const uint8_t *)claims, strlen(claims), digest, 0);
	if (sign(ctx, digest, sig, sizeof(sig), &siglen) != 0 || siglen == 0 ||
	    siglen > sizeof(sig) || b64url_encode(sig, siglen, sig64, sizeof(sig64)) < 0)
		goto out;
	env = cJSON_CreateObject();
	if (env == NULL || cJSON_AddStringToObject(env, "evidence", claims) == NULL ||
	    cJSON_AddStringToObject(env, "alg", "ES256") == NULL ||
	    cJSON_AddStringToObject(env, "sig", sig64) == NULL)
		goto out;
	text = cJSON_PrintUnformatted(env);
out:
	cJSON_Delete(env);
	free(claims);
	return text;
}

char *evidence_envelope_build_tpm(const struct evidence *ev, evidence_quote_fn *quote, void *ctx)
{
	uint8_t digest[32], sig[SIG_MAX];
	uint8_t *attest = NULL;
	char sig64[2 * SIG_MAX], *quote64 = NULL;
	size_t siglen = sizeof(sig), attest_len = EVIDENCE_QUOTE_MAX;
	char *claims = NULL, *text = NULL;
	cJSON *env = NULL;

	if (!ev->tpm)
		return NULL;
	claims = claims_build(ev);
	attest = malloc(EVIDENCE_QUOTE_MAX);
	quote64 = malloc(2 * EVIDENCE_QUOTE_MAX);
	if (claims == NULL || attest == NULL || quote64 == NULL)
		goto out;
	/* The claims' digest is the quote's qualifying data: the TPM signs over the claims. */
	mbedtls_sha256_ret((const uint8_t *)claims, strlen(claims), digest, 0);
	if (quote(ctx, digest, attest, &attest_len, sig, &siglen) != 0 || attest_len == 0 ||
	    attest_len > EVIDENCE_QUOTE_MAX || siglen == 0 || siglen > sizeof(sig) ||
	    b64url_encode(attest, attest_len, quote64, 2 * EVIDENCE_QUOTE_MAX) < 0 ||
	    b64url_encode(sig, siglen, sig64, sizeof(sig64)) < 0)
		goto out;
	env = cJSON_CreateObject();
	if (env == NULL || cJSON_AddStringToObject(env, "evidence", claims) == NULL ||
	    cJSON_AddStringToObject(env, "alg", "ES256") == NULL ||
	    cJSON_AddStringToObject(env, "sig", sig64) == NULL ||
	    cJSON_AddStringToObject(env, "quote", quote64) == NULL)
		goto out;
	text = cJSON_PrintUnformatted(env);
out:
	cJSON_Delete(env);
	free(quote64);
	free(attest);
	free(claims);
	return text;
}

static bool parse_name(const cJSON *obj, struct evidence *ev, char *why, size_t cap)
{
	const char *s = jr_string(obj, "name", "name", why, cap);

	if (s == NULL)
		return false;
	if (!conf_valid_name(s)) {
		gd_whyf(why, cap, "name: not a device name (1 to 63 of A-Z a-z 0-9 _ . -)");
		return false;
	}
	strcpy(ev->name, s);
	return true;
}

static bool parse_sw(const cJSON *obj, struct evidence *ev, char *why, size_t cap)
{
	const char *s = jr_string(obj, "swname", "swname", why, cap);

	if (s == NULL)
		return false;
	if (!jr_printable(s, 64)) {
		gd_whyf(why, cap, "swname: not a name of 1 to 63 printable characters");
		return false;
	}
	s = jr_string(obj, "swversion", "swversion", why, cap);
	if (s == NULL)
		return false;
	if (!jr_printable(s, sizeof(ev->swversion))) {
		gd_whyf(why, cap, "swversion: not a version of 1 to %zu printable characters",
			sizeof(ev->swversion) - 1);
		return false;
	}
	strcpy(ev->swversion, s);
	return true;
}

static bool parse_op_pub(const cJSON *obj, struct evidence *ev, char *why, size_t cap)
{
	static const char head[] = "-----BEGIN PUBLIC KEY-----";
	const char *s = jr_string(obj, "op_pub", "op_pub", why, cap);

	if (s == NULL)
		return false;
	/* Only the form here; whether it is a P-256 key is the service's step 7 (bad_key). */
	if (strnlen(s, ATTEST_PEM_MAX) >= ATTEST_PEM_MAX || strncmp(s, head, strlen(head)) != 0) {
		gd_whyf(why, cap, "op_pub: not a PEM public key under %d bytes", ATTEST_PEM_MAX);
		return false;
	}
	strcpy(ev->op_pub, s);
	return true;
}

/* "tpm":{"pcr":N}, when present: TPM evidence, the quote covering PCR N (0 to 23). */
static bool parse_tpm(const cJSON *obj, struct evidence *ev, char *why, size_t cap)
{
	const cJSON *tpm;
	int64_t pcr;

	ev->tpm = false;
	ev->tpm_pcr = 0;
	if (cJSON_GetObjectItemCaseSensitive(obj, "tpm") == NULL)
		return true;
	tpm = jr_member(obj, "tpm", "tpm", why, cap);
	if (tpm == NULL)
		return false;
	if (!cJSON_IsObject(tpm)) {
		gd_whyf(why, cap, "tpm: not an object");
		return false;
	}
	if (!jr_int(tpm, "pcr", "tpm.pcr", &pcr, why, cap))
		return false;
	if (pcr > TPM_QUOTE_PCR_MAX) {
		gd_whyf(why, cap, "tpm.pcr: %lld is not a PCR from 0 to %d", (long long)pcr,
			TPM_QUOTE_PCR_MAX);
		return false;
	}
	ev->tpm = true;
	ev->tpm_pcr = (int)pcr;
	return true;
}

/* The claims object, in the order of PROTOCOL.md, so 'why' names the first bad field. */
static bool claims_parse(const char *claims, struct evidence *ev, char *why, size_t cap)
{
	cJSON *obj = cJSON_ParseWithOpts(claims, NULL, true);
	bool ok = false;

	if (obj == NULL || !cJSON_IsObject(obj)) {
		gd_whyf(why, cap, "evidence: not a JSON object");
		goto out;
	}
	ok = jr_b64(obj, "eat_nonce", ev->nonce, NONCE_LEN, why, cap) &&
	     jr_b64(obj, "ueid", ev->ueid, UEID_LEN, why, cap) && parse_name(obj, ev, why, cap) &&
	     parse_sw(obj, ev, why, cap) && jr_int(obj, "iat", "iat", &ev->iat, why, cap) &&
	     meas_log_read_members(obj, &ev->log, why, cap) && parse_op_pub(obj, ev, why, cap) &&
	     parse_tpm(obj, ev, why, cap);
	/* The UEID's first byte is its type: 0x01, RAND (RFC 9711), the only one we issue. */
	if (ok && ev->ueid[0] != 0x01) {
		gd_whyf(why, cap, "ueid: type 0x%02x, expected 0x01", ev->ueid[0]);
		ok = false;
	}
out:
	cJSON_Delete(obj);
	return ok;
}

/* The envelope's three members: the claims text, "ES256", and the signature. */
static bool envelope_members(const cJSON *env, const char **claims, uint8_t *sig, size_t *siglen,
			     char *why, size_t cap)
{
	const char *alg, *sig64;
	int n;

	*claims = jr_string(env, "evidence", "evidence", why, cap);
	if (*claims == NULL)
		return false;
	alg = jr_string(env, "alg", "alg", why, cap);
	if (alg == NULL)
		return false;
	if (strcmp(alg, "ES256") != 0) {
		gd_whyf(why, cap, "alg: not \"ES256\"");
		return false;
	}
	sig64 = jr_string(env, "sig", "sig", why, cap);
	if (sig64 == NULL)
		return false;
	n = b64url_decode(sig64, sig, SIG_MAX);
	if (n <= 0) {
		gd_whyf(why, cap, "sig: not base64url of 1 to %d bytes", SIG_MAX);
		return false;
	}
	*siglen = (size_t)n;
	return true;
}

/* The envelope's "quote" of TPM evidence, when there is one (else *len is 0). */
static bool envelope_quote(const cJSON *env, uint8_t *quote, size_t *len, char *why, size_t cap)
{
	const char *quote64;
	int n;

	*len = 0;
	if (cJSON_GetObjectItemCaseSensitive(env, "quote") == NULL)
		return true;
	quote64 = jr_string(env, "quote", "quote", why, cap);
	if (quote64 == NULL)
		return false;
	n = b64url_decode(quote64, quote, EVIDENCE_QUOTE_MAX);
	if (n <= 0) {
		gd_whyf(why, cap, "quote: not base64url of 1 to %d bytes", EVIDENCE_QUOTE_MAX);
		return false;
	}
	*len = (size_t)n;
	return true;
}

int evidence_envelope_parse(const char *json, size_t len, struct evidence *ev, char **claims,
			    uint8_t *sig, size_t *siglen, char *why, size_t cap)
{
	return evidence_envelope_parse_quote(json, len, ev, claims, sig, siglen, NULL, NULL, why,
					     cap);
}

int evidence_envelope_parse_quote(const char *json, size_t len, struct evidence *ev, char **claims,
				  uint8_t *sig, size_t *siglen, uint8_t *quote, size_t *quote_len,
				  char *why, size_t cap)
{
	struct evidence *tmp = calloc(1, sizeof(*tmp));
	uint8_t sigbuf[SIG_MAX];
	uint8_t *qbuf = NULL;
	size_t n = 0, qlen = 0;
	const char *text;
	char *copy = NULL;
	cJSON *env = NULL;
	int err = GD_EPROTO;

	*claims = NULL;
	if (quote_len != NULL)
		*quote_len = 0;
	if (quote != NULL)
		qbuf = malloc(EVIDENCE_QUOTE_MAX);
	if (tmp == NULL || (quote != NULL && qbuf == NULL)) {
		gd_whyf(why, cap, "out of memory");
		err = GD_ENOMEM;
		goto out;
	}
	env = jr_object(json, len);
	if (env == NULL) {
		gd_whyf(why, cap, "envelope: not a JSON object");
		goto out;
	}
	/* Read only when asked for: evidence_envelope_parse ignores a "quote", as it always did. */
	if (!envelope_members(env, &text, sigbuf, &n, why, cap) ||
	    (qbuf != NULL && !envelope_quote(env, qbuf, &qlen, why, cap)) ||
	    !claims_parse(text, tmp, why, cap))
		goto out;
	copy = strdup(text);
	if (copy == NULL) {
		gd_whyf(why, cap, "out of memory");
		err = GD_ENOMEM;
		goto out;
	}
	*ev = *tmp;
	*claims = copy;
	memcpy(sig, sigbuf, n);
	*siglen = n;
	if (qbuf != NULL) {
		memcpy(quote, qbuf, qlen);
		*quote_len = qlen;
	}
	err = 0;
out:
	cJSON_Delete(env);
	free(qbuf);
	free(tmp);
	return err;
}

bool evidence_key_is_p256(const mbedtls_pk_context *pk)
{
	return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
	       mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

bool evidence_verify(const char *claims, const uint8_t *sig, size_t siglen, const char *cert_pem)
{
	mbedtls_x509_crt crt;
	uint8_t digest[32];
	bool ok = false;

	if (claims == NULL || sig == NULL || siglen == 0 || cert_pem == NULL)
		return false;
	mbedtls_x509_crt_init(&crt);
	/* PEM input must include its terminating NUL in the length. */
	if (mbedtls_x509_crt_parse(&crt, (const uint8_t *)cert_pem, strlen(cert_pem) + 1) != 0)
		goto out;
	/* ES256 means P-256: a certificate with another key is not the device's. */
	if (!evidence_key_is_p256(&crt.pk))
		goto out;
	mbedtls_sha256_ret((const uint8_t *)claims, strlen(claims), digest, 0);
	ok = mbedtls_pk_verify(&crt.pk, MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, siglen) ==
	     0;
out:
	mbedtls_x509_crt_free(&crt);
	return ok;
}

int evidence_ueid_of_key(mbedtls_pk_context *pk, uint8_t ueid[UEID_LEN])
{
	uint8_t der[1024];
	int n;

	/* mbedtls writes DER at the end of the buffer. */
	n = mbedtls_pk_write_pubkey_der(pk, der, sizeof(der));
	if (n <= 0)
		return GD_EINVAL;
	ueid[0] = 0x01;
	mbedtls_sha256_ret(der + sizeof(der) - n, (size_t)n, ueid + 1, 0);
	return 0;
}

int evidence_ueid(const char *pub_or_cert_pem, uint8_t ueid[UEID_LEN])
{
	const uint8_t *pem = (const uint8_t *)pub_or_cert_pem;
	mbedtls_pk_context pk;
	mbedtls_x509_crt crt;
	size_t len;
	int err = GD_EINVAL;

	if (pub_or_cert_pem == NULL)
		return GD_EINVAL;
	len = strlen(pub_or_cert_pem) + 1;
	mbedtls_pk_init(&pk);
	mbedtls_x509_crt_init(&crt);
	if (mbedtls_pk_parse_public_key(&pk, pem, len) == 0)
		err = evidence_ueid_of_key(&pk, ueid);
	else if (mbedtls_x509_crt_parse(&crt, pem, len) == 0)
		err = evidence_ueid_of_key(&crt.pk, ueid);
	mbedtls_x509_crt_free(&crt);
	mbedtls_pk_free(&pk);
	return err;
}
