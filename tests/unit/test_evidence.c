/* test_evidence.c: measurement folds, signed evidence round trips, every malformed field, nonces.
 */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "../../guardian/version.h"
#include "../../base/base.h"
#include "../../proto/evidence.h"

/* A P-256 key with a self-signed certificate, made fresh for the test. */
struct test_key {
	mbedtls_pk_context pk;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	char cert_pem[4096];
	char pub_pem[1024];
};

static void key_make(struct test_key *k, const char *cn)
{
	mbedtls_x509write_cert crt;
	mbedtls_mpi serial;
	char subject[96];

	mbedtls_pk_init(&k->pk);
	mbedtls_entropy_init(&k->entropy);
	mbedtls_ctr_drbg_init(&k->drbg);
	cr_assert_eq(mbedtls_ctr_drbg_seed(&k->drbg, mbedtls_entropy_func, &k->entropy,
					   (const uint8_t *)"test_evidence", 13),
		     0);
	cr_assert_eq(mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
	cr_assert_eq(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(k->pk),
					 mbedtls_ctr_drbg_random, &k->drbg),
		     0);
	cr_assert_eq(mbedtls_pk_write_pubkey_pem(&k->pk, (uint8_t *)k->pub_pem, sizeof(k->pub_pem)),
		     0);

	snprintf(subject, sizeof(subject), "CN=%s", cn);
	mbedtls_x509write_crt_init(&crt);
	mbedtls_mpi_init(&serial);
	cr_assert_eq(mbedtls_mpi_lset(&serial, 7), 0);
	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	cr_assert_eq(mbedtls_x509write_crt_set_serial(&crt, &serial), 0);
	cr_assert_eq(mbedtls_x509write_crt_set_validity(&crt, "20200101000000", "20400101000000"),
		     0);
	cr_assert_eq(mbedtls_x509write_crt_set_subject_name(&crt, subject), 0);
	cr_assert_eq(mbedtls_x509write_crt_set_issuer_name(&crt, subject), 0);
	mbedtls_x509write_crt_set_subject_key(&crt, &k->pk);
	mbedtls_x509write_crt_set_issuer_key(&crt, &k->pk);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	cr_assert_eq(mbedtls_x509write_crt_pem(&crt, (uint8_t *)k->cert_pem, sizeof(k->cert_pem),
					       mbedtls_ctr_drbg_random, &k->drbg),
		     0);
	mbedtls_mpi_free(&serial);
	mbedtls_x509write_crt_free(&crt);
}

static void key_free(struct test_key *k)
{
	mbedtls_pk_free(&k->pk);
	mbedtls_ctr_drbg_free(&k->drbg);
	mbedtls_entropy_free(&k->entropy);
}

static int key_sign(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	struct test_key *k = ctx;
	uint8_t buf[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	size_t n = 0;

	if (mbedtls_pk_sign(&k->pk, MBEDTLS_MD_SHA256, digest, 32, buf, &n, mbedtls_ctr_drbg_random,
			    &k->drbg) != 0 ||
	    n > cap)
		return GD_EINVAL;
	memcpy(sig, buf, n);
	*len = n;
	return 0;
}

static int failing_sign(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	(void)ctx, (void)digest, (void)sig, (void)cap, (void)len;
	return GD_EIO;
}

static void digest_of(const char *text, uint8_t out[32])
{
	mbedtls_sha256_ret((const uint8_t *)text, strlen(text), out, 0);
}

/* ---- measurement log ---------------------------------------------------------------------- */

/*
 * The fold, derived independently with the shell (not with the code under test):
 *   d1=$(printf 'abc' | sha256sum | cut -c1-64)
 *   d2=$(printf ''    | sha256sum | cut -c1-64)
 *   r1=$({ head -c32 /dev/zero; echo $d1 | xxd -r -p; } | sha256sum | cut -c1-64)
 *   r2=$({ echo $r1 | xxd -r -p;  echo $d2 | xxd -r -p; } | sha256sum | cut -c1-64)
 */
#define SHA_ABC	  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define FOLD_R1	  "589f9ffed4c477966bfb8d41f37895b08c69047df8f911d6f3b57fbe08faee8d"
#define FOLD_R2	  "ef6a5fdbba9e14e07fa74d23b7ae639d146ce41635cf3fe44315988c4cbd0caf"

Test(evidence, fold_matches_shell_vector)
{
	struct meas_log log;
	uint8_t d[32], reg[32];
	char hex[65];

	meas_init(&log);
	gd_hex_encode(log.reg, 32, hex);
	cr_assert_str_eq(hex, "0000000000000000000000000000000000000000000000000000000000000000");
	digest_of("abc", d);
	gd_hex_encode(d, 32, hex);
	cr_assert_str_eq(hex, SHA_ABC);
	cr_assert_eq(meas_add(&log, "exe", "/usr/bin/guardian", d), 0);
	gd_hex_encode(log.reg, 32, hex);
	cr_assert_str_eq(hex, FOLD_R1);
	digest_of("", d);
	cr_assert_eq(meas_add(&log, "config", "/etc/guardian/site.json", d), 0);
	gd_hex_encode(log.reg, 32, hex);
	cr_assert_str_eq(hex, FOLD_R2);
	meas_fold(&log, reg);
	cr_assert_arr_eq(reg, log.reg, 32);
	cr_assert_eq(log.n, 2);
	cr_assert_str_eq(log.items[1].type, "config");
	cr_assert_str_eq(log.items[1].name, "/etc/guardian/site.json");
}

/* The same fold computed here with mbedtls over three known byte strings. */
Test(evidence, fold_matches_direct_computation)
{
	static const char *const texts[] = { "one", "two", "three" };
	uint8_t want[32] = { 0 }, d[32], buf[64], reg[32];
	struct meas_log log;

	meas_init(&log);
	for (size_t i = 0; i < 3; i++) {
		digest_of(texts[i], d);
		memcpy(buf, want, 32);
		memcpy(buf + 32, d, 32);
		mbedtls_sha256_ret(buf, 64, want, 0);
		cr_assert_eq(meas_add(&log, "file", texts[i], d), 0);
	}
	cr_assert_arr_eq(log.reg, want, 32);
	meas_fold(&log, reg);
	cr_assert_arr_eq(reg, want, 32);
	/* Order matters, as in a PCR: swapping two items changes the register. */
	struct measurement tmp = log.items[0];
	log.items[0] = log.items[1];
	log.items[1] = tmp;
	meas_fold(&log, reg);
	cr_assert(memcmp(reg, want, 32) != 0);
}

Test(evidence, meas_add_limits)
{
	struct meas_log log;
	uint8_t d[32] = { 1 };
	char long_name[MEAS_NAME_MAX + 1];

	meas_init(&log);
	cr_assert_eq(meas_add(&log, "binary", "/x", d), GD_EINVAL);
	memset(long_name, 'a', MEAS_NAME_MAX);
	long_name[MEAS_NAME_MAX] = '\0';
	cr_assert_eq(meas_add(&log, "file", long_name, d), GD_EINVAL);
	cr_assert_eq(log.n, 0);
	for (int i = 0; i < MEAS_MAX; i++)
		cr_assert_eq(meas_add(&log, "file", "/x", d), 0);
	cr_assert_eq(meas_add(&log, "file", "/x", d), GD_EFULL);
	cr_assert_eq(log.n, MEAS_MAX);
}

Test(evidence, hash_file)
{
	char path[] = "/tmp/gd-evidence-XXXXXX";
	uint8_t d[32];
	char hex[65];
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "abc", 3), 3);
	close(fd);
	cr_assert_eq(meas_hash_file(path, d), 0);
	gd_hex_encode(d, 32, hex);
	cr_assert_str_eq(hex, SHA_ABC);
	unlink(path);
	cr_assert_eq(meas_hash_file(path, d), GD_EIO);
}

Test(evidence, log_json_round_trip)
{
	struct meas_log log, back;
	uint8_t d[32];
	char why[256] = "";
	char *json;

	meas_init(&log);
	digest_of("abc", d);
	meas_add(&log, "exe", "/usr/bin/guardian", d);
	digest_of("x", d);
	meas_add(&log, "policy", "/etc/guardian/policy \"q\".json", d);
	json = meas_log_json(&log);
	cr_assert_not_null(json);
	cr_assert_not_null(strstr(json, "{\"type\":\"exe\",\"name\":\"/usr/bin/guardian\","
					"\"sha256\":\"" SHA_ABC "\"}"),
			   "%s", json);
	cr_assert_eq(meas_log_parse(json, strlen(json), &back, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(back.n, 2);
	cr_assert_str_eq(back.items[1].name, log.items[1].name);
	cr_assert_str_eq(back.items[0].type, "exe");
	cr_assert_arr_eq(back.items[1].sha256, log.items[1].sha256, 32);
	cr_assert_arr_eq(back.reg, log.reg, 32);
	free(json);
	cr_assert_eq(meas_log_parse("{\"measurements\":[]}", 19, &back, why, sizeof(why)),
		     GD_EPROTO);
	cr_assert_not_null(strstr(why, "register"), "%s", why);
}

/* ---- evidence ----------------------------------------------------------------------------- */

static void sample_evidence(struct evidence *ev, struct test_key *k)
{
	uint8_t d[32];

	memset(ev, 0, sizeof(*ev));
	for (size_t i = 0; i < NONCE_LEN; i++)
		ev->nonce[i] = (uint8_t)(i * 7 + 3);
	cr_assert_eq(evidence_ueid(k->pub_pem, ev->ueid), 0);
	strcpy(ev->name, "press-07");
	strcpy(ev->swversion, GD_VERSION);
	ev->iat = 1763744523;
	meas_init(&ev->log);
	digest_of("exe", d);
	meas_add(&ev->log, "exe", "/usr/bin/guardian", d);
	digest_of("site", d);
	meas_add(&ev->log, "config", "/etc/guardian/site.json", d);
	digest_of("policy", d);
	meas_add(&ev->log, "policy", "/etc/guardian/policy.json", d);
	digest_of("ca", d);
	meas_add(&ev->log, "file", "/etc/guardian/ca.crt", d);
	strcpy(ev->op_pub, k->pub_pem); /* any PEM public key will do here */
}

Test(evidence, envelope_round_trip_and_verify)
{
	struct test_key k, other;
	struct evidence ev, back;
	uint8_t sig[80], ueid[UEID_LEN], reg[32];
	size_t siglen = 0;
	char why[256] = "";
	char *env, *claims = NULL;

	key_make(&k, "press-07");
	key_make(&other, "press-08");
	sample_evidence(&ev, &k);
	env = evidence_envelope_build(&ev, key_sign, &k);
	cr_assert_not_null(env);
	cr_assert_eq(evidence_envelope_parse(env, strlen(env), &back, &claims, sig, &siglen, why,
					     sizeof(why)),
		     0, "%s", why);
	cr_assert_arr_eq(back.nonce, ev.nonce, NONCE_LEN);
	cr_assert_arr_eq(back.ueid, ev.ueid, UEID_LEN);
	cr_assert_str_eq(back.name, "press-07");
	cr_assert_str_eq(back.swversion, GD_VERSION);
	cr_assert_eq(back.iat, 1763744523);
	cr_assert_eq(back.log.n, 4);
	cr_assert_str_eq(back.log.items[3].type, "file");
	cr_assert_str_eq(back.log.items[3].name, "/etc/guardian/ca.crt");
	cr_assert_arr_eq(back.log.reg, ev.log.reg, 32);
	meas_fold(&back.log, reg);
	cr_assert_arr_eq(reg, back.log.reg, 32);
	cr_assert_str_eq(back.op_pub, k.pub_pem);

	cr_assert(evidence_verify(claims, sig, siglen, k.cert_pem));
	cr_assert_not(evidence_verify(claims, sig, siglen, other.cert_pem), "wrong key verified");
	cr_assert_not(evidence_verify(claims, sig, siglen, "not a certificate"));
	cr_assert_not(evidence_verify(claims, sig, siglen - 1, k.cert_pem));

	/* The UEID from the certificate, from the public key, and in the claims all agree. */
	cr_assert_eq(evidence_ueid(k.cert_pem, ueid), 0);
	cr_assert_arr_eq(ueid, back.ueid, UEID_LEN);
	cr_assert_eq(ueid[0], 0x01);
	cr_assert_eq(evidence_ueid(other.cert_pem, ueid), 0);
	cr_assert(memcmp(ueid, back.ueid, UEID_LEN) != 0);
	cr_assert_eq(evidence_ueid("garbage", ueid), GD_EINVAL);

	free(claims);
	free(env);
	key_free(&k);
	key_free(&other);
}

Test(evidence, any_tampered_byte_fails_verify)
{
	struct test_key k;
	struct evidence ev, back;
	uint8_t sig[80];
	size_t siglen = 0, n;
	char why[256] = "";
	char *env, *claims = NULL;

	key_make(&k, "press-07");
	sample_evidence(&ev, &k);
	env = evidence_envelope_build(&ev, key_sign, &k);
	cr_assert_not_null(env);
	cr_assert_eq(evidence_envelope_parse(env, strlen(env), &back, &claims, sig, &siglen, why,
					     sizeof(why)),
		     0, "%s", why);
	n = strlen(claims);
	cr_assert_gt(n, 100);
	for (size_t i = 0; i < n; i++) {
		claims[i] ^= 0x01;
		cr_assert_not(evidence_verify(claims, sig, siglen, k.cert_pem),
			      "byte %zu changed and still verified", i);
		claims[i] ^= 0x01;
	}
	cr_assert(evidence_verify(claims, sig, siglen, k.cert_pem));
	sig[siglen / 2] ^= 0x40;
	cr_assert_not(evidence_verify(claims, sig, siglen, k.cert_pem));
	free(claims);
	free(env);
	key_free(&k);
}

Test(evidence, signer_failure_builds_nothing)
{
	struct test_key k;
	struct evidence ev;

	key_make(&k, "press-07");
	sample_evidence(&ev, &k);
	cr_assert_null(evidence_envelope_build(&ev, failing_sign, NULL));
	key_free(&k);
}

/*
 * An envelope whose claims are the sample's with 'key' replaced by the raw
 * JSON 'value' (NULL: removed). The signature is irrelevant to parsing.
 */
static char *envelope_with(const char *key, const char *value)
{
	static struct test_key k;
	static bool made;
	struct evidence ev;
	cJSON *claims, *env;
	char *text, *out;

	if (!made) {
		key_make(&k, "press-07");
		made = true;
	}
	sample_evidence(&ev, &k);
	text = evidence_envelope_build(&ev, key_sign, &k);
	env = cJSON_Parse(text);
	free(text);
	claims = cJSON_Parse(cJSON_GetObjectItem(env, "evidence")->valuestring);
	cr_assert_not_null(claims);
	cJSON_DeleteItemFromObjectCaseSensitive(claims, key);
	if (value != NULL) {
		cJSON *v = cJSON_Parse(value);

		cr_assert_not_null(v, "test value %s is not JSON", value);
		cJSON_AddItemToObject(claims, key, v);
	}
	text = cJSON_PrintUnformatted(claims);
	cJSON_ReplaceItemInObjectCaseSensitive(env, "evidence", cJSON_CreateString(text));
	out = cJSON_PrintUnformatted(env);
	free(text);
	cJSON_Delete(claims);
	cJSON_Delete(env);
	return out;
}

static void expect_malformed(const char *env, const char *want)
{
	struct evidence ev;
	uint8_t sig[80];
	size_t siglen = 0;
	char why[256] = "";
	char *claims = (char *)"untouched";

	cr_assert_eq(evidence_envelope_parse(env, strlen(env), &ev, &claims, sig, &siglen, why,
					     sizeof(why)),
		     GD_EPROTO, "accepted: %s", env);
	cr_assert_null(claims);
	cr_assert_not_null(strstr(why, want), "why \"%s\" does not say \"%s\"", why, want);
}

struct bad_field {
	const char *key;
	const char *value; /* raw JSON, NULL: the key is missing */
	const char *why;   /* what the reason must say */
};

Test(evidence, every_malformed_claim_is_named)
{
	char many[8192], big[ATTEST_PEM_MAX + 64];
	size_t o;

	o = (size_t)snprintf(many, sizeof(many), "[");
	for (int i = 0; i <= MEAS_MAX; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o,
				      "%s{\"type\":\"file\",\"name\":\"/x\",\"sha256\":\"%064d\"}",
				      i ? "," : "", 0);
	snprintf(many + o, sizeof(many) - o, "]");
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "\"-----BEGIN PUBLIC KEY-----", 27);
	big[sizeof(big) - 2] = '"';

	const struct bad_field cases[] = {
		{ "eat_nonce", NULL, "eat_nonce: missing" },
		{ "eat_nonce", "42", "eat_nonce: not a string" },
		{ "eat_nonce", "\"AAAA\"", "eat_nonce: not 40 bytes of base64url" },
		{ "eat_nonce", "\"AAAA+AAA\"", "eat_nonce: not 40 bytes" },
		{ "ueid", NULL, "ueid: missing" },
		{ "ueid", "\"AQID\"", "ueid: not 33 bytes of base64url" },
		{ "ueid", "\"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"", "ueid: type 0x02" },
		{ "name", NULL, "name: missing" },
		{ "name", "\"press 07\"", "name: not a device name" },
		{ "name", "\"\"", "name: not a device name" },
		{ "swname", NULL, "swname: missing" },
		{ "swversion", NULL, "swversion: missing" },
		{ "swversion", "[]", "swversion: not a string" },
		{ "iat", NULL, "iat: missing" },
		{ "iat", "\"1763744523\"", "iat: not a whole number" },
		{ "iat", "-5", "iat: not a whole number" },
		{ "iat", "1.5", "iat: not a whole number" },
		{ "measurements", NULL, "measurements: missing" },
		{ "measurements", "{}", "measurements: not an array" },
		{ "measurements", many, "measurements: 65 items, more than 64" },
		{ "measurements", "[1]", "measurements[0]: not an object" },
		{ "measurements", "[{\"name\":\"/x\",\"sha256\":\"" SHA_ABC "\"}]",
		  "measurements[0].type: missing" },
		{ "measurements",
		  "[{\"type\":\"binary\",\"name\":\"/x\",\"sha256\":\"" SHA_ABC "\"}]",
		  "measurements[0].type: not one of exe, config, policy, file" },
		{ "measurements",
		  "[{\"type\":\"exe\",\"name\":\"/x\",\"sha256\":\"" SHA_ABC "\"},"
		  "{\"type\":\"file\",\"sha256\":\"" SHA_ABC "\"}]",
		  "measurements[1].name: missing" },
		{ "measurements", "[{\"type\":\"file\",\"name\":\"\",\"sha256\":\"" SHA_ABC "\"}]",
		  "measurements[0].name: not a name" },
		{ "measurements",
		  "[{\"type\":\"file\",\"name\":\"/x\\n\",\"sha256\":\"" SHA_ABC "\"}]",
		  "measurements[0].name: not a name" },
		{ "measurements", "[{\"type\":\"file\",\"name\":\"/x\",\"sha256\":\"abc\"}]",
		  "measurements[0].sha256: not 64 hex digits" },
		{ "measurements",
		  "[{\"type\":\"file\",\"name\":\"/x\",\"sha256\":\"" SHA_ABC "00\"}]",
		  "measurements[0].sha256: not 64 hex digits" },
		{ "measurements",
		  "[{\"type\":\"file\",\"name\":\"/x\",\"sha256\":"
		  "\"zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]",
		  "measurements[0].sha256: not 64 hex digits" },
		{ "register", NULL, "register: missing" },
		{ "register", "\"00\"", "register: not 64 hex digits" },
		{ "op_pub", NULL, "op_pub: missing" },
		{ "op_pub", "\"hello\"", "op_pub: not a PEM public key" },
		{ "op_pub", big, "op_pub: not a PEM public key under 4096 bytes" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *env = envelope_with(cases[i].key, cases[i].value);

		expect_malformed(env, cases[i].why);
		free(env);
	}
}

Test(evidence, malformed_envelopes_are_named)
{
	char *good = envelope_with("iat", "1"), *dup;
	cJSON *env = cJSON_Parse(good);
	char text[512];

	expect_malformed("", "envelope: not a JSON object");
	expect_malformed("[1,2]", "envelope: not a JSON object");
	expect_malformed("{\"alg\":\"ES256\",\"sig\":\"AAAA\"}", "evidence: missing");
	expect_malformed("{\"evidence\":5,\"alg\":\"ES256\",\"sig\":\"AAAA\"}",
			 "evidence: not a string");
	expect_malformed("{\"evidence\":\"[1]\",\"alg\":\"ES256\",\"sig\":\"AAAA\"}",
			 "evidence: not a JSON object");
	expect_malformed("{\"evidence\":\"{} x\",\"alg\":\"ES256\",\"sig\":\"AAAA\"}",
			 "evidence: not a JSON object");
	snprintf(text, sizeof(text), "{\"evidence\":\"{}\",\"alg\":\"RS256\",\"sig\":\"AAAA\"}");
	expect_malformed(text, "alg: not \"ES256\"");
	expect_malformed("{\"evidence\":\"{}\",\"sig\":\"AAAA\"}", "alg: missing");
	expect_malformed("{\"evidence\":\"{}\",\"alg\":\"ES256\"}", "sig: missing");
	expect_malformed("{\"evidence\":\"{}\",\"alg\":\"ES256\",\"sig\":\"AA==\"}",
			 "sig: not base64url");
	expect_malformed("{\"evidence\":\"{}\",\"alg\":\"ES256\",\"sig\":\"\"}",
			 "sig: not base64url");
	/* Valid except for trailing bytes after the object. */
	snprintf(text, sizeof(text), "%s",
		 "{\"evidence\":\"{}\",\"alg\":\"ES256\",\"sig\":\"AAAA\"}x");
	expect_malformed(text, "envelope: not a JSON object");

	/* A key given twice is refused, in the envelope and in the claims. */
	cJSON_AddStringToObject(env, "alg", "ES256");
	dup = cJSON_PrintUnformatted(env);
	expect_malformed(dup, "alg: given twice");
	free(dup);
	cJSON_Delete(env);
	free(good);
}

Test(evidence, duplicate_claim_is_refused)
{
	char *env = envelope_with("name", NULL);
	cJSON *root = cJSON_Parse(env);
	cJSON *claims = cJSON_Parse(cJSON_GetObjectItem(root, "evidence")->valuestring);
	char *text, *out;

	cJSON_AddStringToObject(claims, "name", "press-07");
	cJSON_AddStringToObject(claims, "name", "press-08");
	text = cJSON_PrintUnformatted(claims);
	cJSON_ReplaceItemInObjectCaseSensitive(root, "evidence", cJSON_CreateString(text));
	out = cJSON_PrintUnformatted(root);
	expect_malformed(out, "name: given twice");
	free(out);
	free(text);
	cJSON_Delete(claims);
	cJSON_Delete(root);
	free(env);
}

/* ---- encodings, nonces and results -------------------------------------------------------- */

Test(evidence, b64url)
{
	uint8_t in[5] = { 0xfb, 0xff, 0xbf, 0x00, 0x01 }, out[8];
	char text[16];

	cr_assert_eq(b64url_encode(in, 5, text, sizeof(text)), 7);
	cr_assert_str_eq(text, "-_-_AAE");
	cr_assert_eq(b64url_decode(text, out, sizeof(out)), 5);
	cr_assert_arr_eq(out, in, 5);
	cr_assert_eq(b64url_encode(in, 5, text, 7), -1, "no room for the NUL");
	cr_assert_eq(b64url_decode("-_-_AAE", out, 4), -1, "output cap");
	cr_assert_eq(b64url_decode("-_-_AAF", out, sizeof(out)), -1, "non-zero spare bits");
	cr_assert_eq(b64url_decode("+/", out, sizeof(out)), -1, "standard alphabet");
	cr_assert_eq(b64url_decode("AAE=", out, sizeof(out)), -1, "padding");
	cr_assert_eq(b64url_decode("A", out, sizeof(out)), -1, "lone character");
	cr_assert_eq(b64url_decode("", out, sizeof(out)), 0);
}

Test(evidence, nonce_round_trip)
{
	uint8_t nonce[NONCE_LEN], back[NONCE_LEN];
	int64_t expires = 0;
	char *json;

	for (size_t i = 0; i < NONCE_LEN; i++)
		nonce[i] = (uint8_t)(255 - i);
	json = attest_nonce_build(nonce, 1763744523123);
	cr_assert_not_null(json);
	cr_assert_eq(attest_nonce_parse(json, strlen(json), back, &expires), 0, "%s", json);
	cr_assert_arr_eq(back, nonce, NONCE_LEN);
	cr_assert_eq(expires, 1763744523123);
	/* The length is honoured: a cut message is not a nonce. */
	cr_assert_eq(attest_nonce_parse(json, strlen(json) - 1, back, &expires), GD_EPROTO);
	free(json);
	cr_assert_eq(attest_nonce_parse("{\"nonce\":\"AAAA\",\"expires\":1}", 29, back, &expires),
		     GD_EPROTO);
	cr_assert_eq(attest_nonce_parse("{\"expires\":1}", 13, back, &expires), GD_EPROTO);
	cr_assert_eq(attest_nonce_parse("nonsense", 8, back, &expires), GD_EPROTO);
}

Test(evidence, result_round_trips)
{
	struct attest_result ok = { .ok = true,
				    .cert_pem = (char *)"-----BEGIN CERTIFICATE-----\nMIIB\n"
							"-----END CERTIFICATE-----\n",
				    .not_after = 1763830923000 };
	struct attest_result no = { .ok = false,
				    .reason = "measurement_mismatch",
				    .detail = "config /etc/guardian/site.json: sha256 3f2a... "
					      "is not the reference's 9c41..." };
	struct attest_result back;
	char *json;

	json = attest_result_build(&ok);
	cr_assert_not_null(json);
	cr_assert_eq(attest_result_parse(json, strlen(json), &back), 0, "%s", json);
	cr_assert(back.ok);
	cr_assert_str_eq(back.cert_pem, ok.cert_pem);
	cr_assert_eq(back.not_after, 1763830923000);
	attest_result_free(&back);
	cr_assert_null(back.cert_pem);
	free(json);

	json = attest_result_build(&no);
	cr_assert_not_null(json);
	cr_assert_eq(attest_result_parse(json, strlen(json), &back), 0, "%s", json);
	cr_assert_not(back.ok);
	cr_assert_null(back.cert_pem);
	cr_assert_str_eq(back.reason, "measurement_mismatch");
	cr_assert_str_eq(back.detail, no.detail);
	attest_result_free(&back);
	free(json);
}

Test(evidence, result_parse_refuses_garbage)
{
	static const char *const bad[] = {
		"",
		"garbage",
		"{}",
		"[true]",
		"{\"ok\":1}",
		"{\"ok\":true}",
		"{\"ok\":true,\"cert\":\"x\",\"not_after\":1}",
		"{\"ok\":true,\"cert\":\"-----BEGIN CERTIFICATE-----\",\"not_after\":-1}",
		"{\"ok\":true,\"cert\":\"-----BEGIN CERTIFICATE-----\"}",
		"{\"ok\":false}",
		"{\"ok\":false,\"reason\":\"bad_nonce\"}",
		"{\"ok\":false,\"reason\":\"Bad Nonce\",\"detail\":\"x\"}",
		"{\"ok\":false,\"reason\":\"a_reason_code_that_is_far_too_long\",\"detail\":\"x\"}",
		"{\"ok\":false,\"ok\":true,\"reason\":\"bad_nonce\",\"detail\":\"x\"}",
	};
	struct attest_result r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(attest_result_parse(bad[i], strlen(bad[i]), &r), GD_EPROTO,
			     "accepted %s", bad[i]);
		cr_assert_null(r.cert_pem);
		attest_result_free(&r);
	}
	/* Bytes that are not even text; the length is all there is. */
	uint8_t noise[64];
	for (size_t i = 0; i < sizeof(noise); i++)
		noise[i] = (uint8_t)(i * 37 + 11);
	cr_assert_eq(attest_result_parse((const char *)noise, sizeof(noise), &r), GD_EPROTO);
	attest_result_free(&r);
}

Test(evidence, result_detail_is_made_safe)
{
	static const char json[] = "{\"ok\":false,\"reason\":\"bad_nonce\",\"detail\":\"a\\nb\"}";
	struct attest_result r;

	cr_assert_eq(attest_result_parse(json, strlen(json), &r), 0);
	cr_assert_str_eq(r.detail, "a?b", "a control character must not reach the log");
	attest_result_free(&r);
}
