/* evidence.c: measurement logs, signed evidence, nonces and results of service/PROTOCOL.md. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "evidence.h"

#define SIG_MAX		80		   /* what evidence_envelope_parse may write into 'sig' */
#define RESULT_CERT_MAX 16384		   /* an operational certificate, perhaps with its CA */
#define INT_JSON_MAX	9007199254740992.0 /* 2^53: larger integers are not exact in JSON */

static const char *const meas_types[] = { "exe", "config", "policy", "file", NULL };

/* ---- small encodings ---------------------------------------------------------------------- */

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
	size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	size_t o = 0;

	if (out == NULL || need >= cap || need > INT32_MAX)
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		if (left > 1)
			out[o++] = b64url_alphabet[(v >> 6) & 63];
		if (left > 2)
			out[o++] = b64url_alphabet[v & 63];
	}
	out[o] = '\0';
	return (int)o;
}

static int b64url_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

/*
 * Strict: no padding, no white space, and the unused low bits of the last
 * character must be zero, so that each byte string has exactly one spelling
 * (a nonce is remembered by its bytes, and must not be replayable re-spelt).
 */
int b64url_decode(const char *in, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0, i;

	if (in == NULL)
		return -1;
	for (i = 0; in[i] != '\0'; i++) {
		int v = b64url_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap || o >= INT32_MAX)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* A lone last character (6 bits) cannot end a byte; leftover bits must be zero. */
	if (i % 4 == 1 || (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (int)o;
}

/* ---- measurement log ---------------------------------------------------------------------- */

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

/* The log's items and register added to 'obj' as "measurements" and "register". */
static bool add_log(cJSON *obj, const struct meas_log *log)
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

	if (obj != NULL && add_log(obj, log))
		text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return text;
}

/* ---- reading JSON ------------------------------------------------------------------------- */

/*
 * Parses exactly 'len' bytes as one JSON document; trailing white space or
 * NULs are allowed (some senders count the terminator), anything else is not.
 * The copy gives cJSON a terminated buffer whatever the caller passed.
 */
static cJSON *parse_exact(const char *json, size_t len)
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

/*
 * The member 'key' of 'obj', or NULL with 'why' ("<label>: missing"). A key
 * given twice is refused: two parsers could pick different copies, and the
 * signature covers both.
 */
static const cJSON *member(const cJSON *obj, const char *key, const char *label, char *why,
			   size_t cap)
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

static const char *member_string(const cJSON *obj, const char *key, const char *label, char *why,
				 size_t cap)
{
	const cJSON *it = member(obj, key, label, why, cap);

	if (it == NULL)
		return NULL;
	if (!cJSON_IsString(it) || it->valuestring == NULL) {
		gd_whyf(why, cap, "%s: not a string", label);
		return NULL;
	}
	return it->valuestring;
}

/* A non-negative integer that JSON carries exactly (seconds or milliseconds). */
static bool member_int(const cJSON *obj, const char *key, const char *label, int64_t *out,
		       char *why, size_t cap)
{
	const cJSON *it = member(obj, key, label, why, cap);
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

/* A base64url string that decodes to exactly 'n' bytes. */
static bool member_b64(const cJSON *obj, const char *key, uint8_t *out, size_t n, char *why,
		       size_t cap)
{
	const char *s = member_string(obj, key, key, why, cap);
	uint8_t buf[UEID_LEN > NONCE_LEN ? UEID_LEN : NONCE_LEN];

	if (s == NULL)
		return false;
	if (n > sizeof(buf) || b64url_decode(s, buf, n) != (int)n) {
		gd_whyf(why, cap, "%s: not %zu bytes of base64url", key, n);
		return false;
	}
	memcpy(out, buf, n);
	return true;
}

/* Text a person may read in a log or a report: bounded, no control characters. */
static bool printable(const char *s, size_t max)
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
	type = member_string(obj, "type", label, why, cap);
	if (type == NULL)
		return false;
	if (!meas_type_known(type)) {
		gd_whyf(why, cap, "%s: not one of exe, config, policy, file", label);
		return false;
	}
	snprintf(label, sizeof(label), "measurements[%zu].name", i);
	name = member_string(obj, "name", label, why, cap);
	if (name == NULL)
		return false;
	if (!printable(name, MEAS_NAME_MAX)) {
		gd_whyf(why, cap, "%s: not a name of 1 to %d printable characters", label,
		     MEAS_NAME_MAX - 1);
		return false;
	}
	snprintf(label, sizeof(label), "measurements[%zu].sha256", i);
	hex = member_string(obj, "sha256", label, why, cap);
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

/* Reads "measurements" and "register" of 'obj' into 'out' (already zeroed). */
static bool parse_log(const cJSON *obj, struct meas_log *out, char *why, size_t cap)
{
	const cJSON *arr = member(obj, "measurements", "measurements", why, cap), *it;
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
	hex = member_string(obj, "register", "register", why, cap);
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
	root = parse_exact(json, len);
	if (root == NULL) {
		gd_whyf(why, cap, "not a JSON object");
		goto out;
	}
	if (!parse_log(root, log, why, cap))
		goto out;
	*out = *log;
	err = 0;
out:
	cJSON_Delete(root);
	free(log);
	return err;
}

/* ---- claims and envelope ------------------------------------------------------------------ */

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
	    !add_log(obj, &ev->log) || cJSON_AddStringToObject(obj, "op_pub", ev->op_pub) == NULL)
		goto out;
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

static bool parse_name(const cJSON *obj, struct evidence *ev, char *why, size_t cap)
{
	const char *s = member_string(obj, "name", "name", why, cap);

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
	const char *s = member_string(obj, "swname", "swname", why, cap);

	if (s == NULL)
		return false;
	if (!printable(s, 64)) {
		gd_whyf(why, cap, "swname: not a name of 1 to 63 printable characters");
		return false;
	}
	s = member_string(obj, "swversion", "swversion", why, cap);
	if (s == NULL)
		return false;
	if (!printable(s, sizeof(ev->swversion))) {
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
	const char *s = member_string(obj, "op_pub", "op_pub", why, cap);

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

/* The claims object, in the order of PROTOCOL.md, so 'why' names the first bad field. */
static bool claims_parse(const char *claims, struct evidence *ev, char *why, size_t cap)
{
	cJSON *obj = cJSON_ParseWithOpts(claims, NULL, true);
	bool ok = false;

	if (obj == NULL || !cJSON_IsObject(obj)) {
		gd_whyf(why, cap, "evidence: not a JSON object");
		goto out;
	}
	ok = member_b64(obj, "eat_nonce", ev->nonce, NONCE_LEN, why, cap) &&
	     member_b64(obj, "ueid", ev->ueid, UEID_LEN, why, cap) &&
	     parse_name(obj, ev, why, cap) && parse_sw(obj, ev, why, cap) &&
	     member_int(obj, "iat", "iat", &ev->iat, why, cap) &&
	     parse_log(obj, &ev->log, why, cap) && parse_op_pub(obj, ev, why, cap);
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

	*claims = member_string(env, "evidence", "evidence", why, cap);
	if (*claims == NULL)
		return false;
	alg = member_string(env, "alg", "alg", why, cap);
	if (alg == NULL)
		return false;
	if (strcmp(alg, "ES256") != 0) {
		gd_whyf(why, cap, "alg: not \"ES256\"");
		return false;
	}
	sig64 = member_string(env, "sig", "sig", why, cap);
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

int evidence_envelope_parse(const char *json, size_t len, struct evidence *ev, char **claims,
			    uint8_t *sig, size_t *siglen, char *why, size_t cap)
{
	struct evidence *tmp = calloc(1, sizeof(*tmp));
	uint8_t sigbuf[SIG_MAX];
	size_t n = 0;
	const char *text;
	char *copy = NULL;
	cJSON *env = NULL;
	int err = GD_EPROTO;

	*claims = NULL;
	if (tmp == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	env = parse_exact(json, len);
	if (env == NULL) {
		gd_whyf(why, cap, "envelope: not a JSON object");
		goto out;
	}
	if (!envelope_members(env, &text, sigbuf, &n, why, cap) ||
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
	err = 0;
out:
	cJSON_Delete(env);
	free(tmp);
	return err;
}

/* ---- keys --------------------------------------------------------------------------------- */

static bool is_p256(mbedtls_pk_context *pk)
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
	if (!is_p256(&crt.pk))
		goto out;
	mbedtls_sha256_ret((const uint8_t *)claims, strlen(claims), digest, 0);
	ok = mbedtls_pk_verify(&crt.pk, MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, siglen) ==
	     0;
out:
	mbedtls_x509_crt_free(&crt);
	return ok;
}

/* The UEID of a loaded key: 0x01 || SHA-256 of its DER SubjectPublicKeyInfo. */
static int ueid_of(mbedtls_pk_context *pk, uint8_t ueid[UEID_LEN])
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
		err = ueid_of(&pk, ueid);
	else if (mbedtls_x509_crt_parse(&crt, pem, len) == 0)
		err = ueid_of(&crt.pk, ueid);
	mbedtls_x509_crt_free(&crt);
	mbedtls_pk_free(&pk);
	return err;
}

/* ---- nonce and result --------------------------------------------------------------------- */

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
	cJSON *obj = parse_exact(json, len);
	int err = GD_EPROTO;

	if (obj == NULL)
		return GD_EPROTO;
	if (!member_b64(obj, "nonce", buf, NONCE_LEN, NULL, 0) ||
	    !member_int(obj, "expires", "expires", &expires, NULL, 0))
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
		ok = terminated(r->reason, sizeof(r->reason)) &&
		     terminated(r->detail, sizeof(r->detail)) &&
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
	const char *cert = member_string(obj, "cert", "cert", NULL, 0);

	if (cert == NULL || strnlen(cert, RESULT_CERT_MAX) >= RESULT_CERT_MAX ||
	    strncmp(cert, head, strlen(head)) != 0)
		return false;
	if (!member_int(obj, "not_after", "not_after", &r->not_after, NULL, 0))
		return false;
	r->cert_pem = strdup(cert);
	return r->cert_pem != NULL;
}

static bool result_refused(const cJSON *obj, struct attest_result *r)
{
	const char *reason = member_string(obj, "reason", "reason", NULL, 0);
	const char *detail = member_string(obj, "detail", "detail", NULL, 0);

	if (reason == NULL || detail == NULL || !valid_reason(reason, sizeof(r->reason)))
		return false;
	strcpy(r->reason, reason);
	copy_detail(r->detail, sizeof(r->detail), detail);
	return true;
}

/* On failure *out is left empty (not ok, no certificate), so attest_result_free is always safe. */
int attest_result_parse(const char *json, size_t len, struct attest_result *out)
{
	cJSON *obj = parse_exact(json, len);
	const cJSON *ok;
	bool good = false;

	memset(out, 0, sizeof(*out));
	if (obj == NULL)
		return GD_EPROTO;
	ok = member(obj, "ok", "ok", NULL, 0);
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
