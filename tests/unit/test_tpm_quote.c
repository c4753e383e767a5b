/* test_tpm_quote.c: TPM quotes verified: a good one passes, every wrong field fails with its
 * fault, every truncation is refused, and a quote made by a real TPM (swtpm) verifies. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "../../base/base.h"
#include "../../proto/evidence.h"
#include "../../proto/tpm_quote.h"
#include "fake_quote.h"

#define PCR 23

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_pk_context ak, other_ak;
static char ak_pem[512], other_pem[512];
static uint8_t extra[32], pcr_value[32];

static void new_key(mbedtls_pk_context *key, mbedtls_ecp_group_id curve, char *pem, size_t cap)
{
	mbedtls_pk_init(key);
	cr_assert_eq(mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
	cr_assert_eq(
		mbedtls_ecp_gen_key(curve, mbedtls_pk_ec(*key), mbedtls_ctr_drbg_random, &drbg), 0);
	cr_assert_eq(mbedtls_pk_write_pubkey_pem(key, (unsigned char *)pem, cap), 0);
}

static void setup(void)
{
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	cr_assert_eq(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
					   (const uint8_t *)"test_tpm_quote", 14),
		     0);
	new_key(&ak, MBEDTLS_ECP_DP_SECP256R1, ak_pem, sizeof(ak_pem));
	new_key(&other_ak, MBEDTLS_ECP_DP_SECP256R1, other_pem, sizeof(other_pem));
	mbedtls_sha256_ret((const uint8_t *)"the claims", 10, extra, 0);
	mbedtls_sha256_ret((const uint8_t *)"the register", 12, pcr_value, 0);
}

static void teardown(void)
{
	mbedtls_pk_free(&other_ak);
	mbedtls_pk_free(&ak);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
}

TestSuite(tpm_quote, .init = setup, .fini = teardown);

/* A marshalled, signed quote. */
struct signed_quote {
	uint8_t attest[TPM_QUOTE_ATTEST_MAX + 64];
	size_t len;
	uint8_t sig[TPM_QUOTE_SIG_MAX];
	size_t siglen;
};

static void sign_bytes(struct signed_quote *s, mbedtls_pk_context *key)
{
	cr_assert_eq(fake_quote_sign(key, &drbg, s->attest, s->len, s->sig, &s->siglen), 0);
}

static void make(struct signed_quote *s, const struct fake_quote *q)
{
	s->len = fake_quote_marshal(q, s->attest, sizeof(s->attest));
	cr_assert_gt(s->len, 0);
	sign_bytes(s, &ak);
}

static enum tpm_quote_fault check(const struct signed_quote *s, char *why, size_t cap)
{
	why[0] = '\0';
	return tpm_quote_check(s->attest, s->len, s->sig, s->siglen, ak_pem, extra, PCR, pcr_value,
			       why, cap);
}

/* 'q' signed by the AK fails with 'want', and the sentence says 'says'. */
static void expect_fault(const struct fake_quote *q, enum tpm_quote_fault want, const char *says)
{
	struct signed_quote s;
	char why[512];
	enum tpm_quote_fault got;

	make(&s, q);
	got = check(&s, why, sizeof(why));
	cr_assert_eq(got, want, "fault %d, expected %d (%s)", got, want, why);
	cr_assert(strstr(why, says) != NULL, "\"%s\" does not say \"%s\"", why, says);
}

Test(tpm_quote, good_quote_passes_and_parses)
{
	struct fake_quote q;
	struct signed_quote s;
	struct tpm_quote parsed;
	char why[512];

	fake_quote_init(&q, extra, PCR, pcr_value);
	make(&s, &q);
	cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_OK, "%s", why);
	cr_assert(tpm_quote_verify_sig(s.attest, s.len, s.sig, s.siglen, ak_pem));
	cr_assert_eq(tpm_quote_parse(s.attest, s.len, &parsed, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(parsed.magic, TPM_GENERATED_VALUE);
	cr_assert_eq(parsed.type, TPM_ST_ATTEST_QUOTE);
	cr_assert_eq(parsed.signer_len, 34);
	cr_assert_arr_eq(parsed.signer, q.signer, 34);
	cr_assert_eq(parsed.extra_len, 32);
	cr_assert_arr_eq(parsed.extra, extra, 32);
	cr_assert_eq(parsed.clock, q.clock);
	cr_assert_eq(parsed.reset_count, 3);
	cr_assert_eq(parsed.restart_count, 1);
	cr_assert_eq(parsed.safe, 1);
	cr_assert_eq(parsed.firmware_version, q.firmware_version);
	cr_assert_eq(parsed.nbanks, 1);
	cr_assert_eq(parsed.banks[0].hash_alg, TPM_ALG_SHA256);
	cr_assert_eq(parsed.banks[0].size_of_select, 3);
	cr_assert_eq(parsed.banks[0].select[2], 0x80);
	cr_assert_eq(parsed.pcr_digest_len, 32);
	cr_assert_arr_eq(parsed.pcr_digest, q.digest, 32);
	/* Every PCR from 0 to 23 is a PCR one may quote. */
	for (int pcr = 0; pcr <= TPM_QUOTE_PCR_MAX; pcr++) {
		fake_quote_init(&q, extra, pcr, pcr_value);
		make(&s, &q);
		cr_assert_eq(tpm_quote_check(s.attest, s.len, s.sig, s.siglen, ak_pem, extra, pcr,
					     pcr_value, why, sizeof(why)),
			     TPM_QUOTE_OK, "PCR %d: %s", pcr, why);
	}
}

Test(tpm_quote, wrong_magic_or_type_is_not_a_quote)
{
	struct fake_quote q;

	fake_quote_init(&q, extra, PCR, pcr_value);
	q.magic = 0xff544348u;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "magic 0xff544348, not TPM_GENERATED_VALUE");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.type = 0x8017; /* TPM_ST_ATTEST_CERTIFY: the AK signs those too */
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "type 0x8017, not TPM_ST_ATTEST_QUOTE");
}

Test(tpm_quote, wrong_extra_data_is_a_quote_of_something_else)
{
	struct fake_quote q;

	fake_quote_init(&q, extra, PCR, pcr_value);
	q.extra[31] ^= 1;
	expect_fault(&q, TPM_QUOTE_BAD_EXTRA_DATA, "is not SHA-256 of the claims");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.extra_len = 20;
	expect_fault(&q, TPM_QUOTE_BAD_EXTRA_DATA, "extraData is 20 bytes");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.extra_len = 0;
	expect_fault(&q, TPM_QUOTE_BAD_EXTRA_DATA, "extraData is 0 bytes");
}

Test(tpm_quote, a_selection_other_than_the_one_pcr_fails)
{
	struct fake_quote q;

	/* two PCRs of the SHA-256 bank */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.banks[0].select[2] |= 0x01; /* PCR 16 */
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "covers SHA-256 PCRs 16, 23, not PCR 23");
	/* the SHA-1 bank */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.banks[0].alg = 0x0004;
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "covers SHA-1 PCR 23, not PCR 23");
	/* both banks */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.nbanks = 2;
	q.banks[1] = q.banks[0];
	q.banks[1].alg = 0x0004;
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "SHA-256 PCR 23; SHA-1 PCR 23");
	/* another PCR */
	fake_quote_init(&q, extra, 16, pcr_value);
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "covers SHA-256 PCR 16, not PCR 23");
	/* nothing */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.nbanks = 0;
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "covers no PCR");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.banks[0].select[2] = 0;
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "SHA-256 PCRs (none)");
	/* a bitmap too short to hold PCR 23 */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.banks[0].size = 2;
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "not PCR 23 of the SHA-256 bank alone");
	/* a longer bitmap is fine as long as only PCR 23 is set */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.banks[0].size = 4;
	expect_fault(&q, TPM_QUOTE_OK, "");
	q.banks[0].select[3] = 0x01; /* PCR 24 */
	expect_fault(&q, TPM_QUOTE_BAD_PCR_SELECTION, "PCRs 23, 24");
}

Test(tpm_quote, a_wrong_pcr_digest_says_both_digests)
{
	struct fake_quote q;
	uint8_t want[32];
	char want_hex[65], got_hex[65], says[200];

	fake_quote_init(&q, extra, PCR, pcr_value);
	q.digest[0] ^= 0xff;
	mbedtls_sha256_ret(pcr_value, 32, want, 0);
	gd_hex_encode(want, 32, want_hex);
	gd_hex_encode(q.digest, 32, got_hex);
	snprintf(says, sizeof(says),
		 "the TPM's PCR 23 does not hold the reported measurements (quote's PCR digest "
		 "%.16s..., the log's %.16s...)",
		 got_hex, want_hex);
	expect_fault(&q, TPM_QUOTE_BAD_PCR_DIGEST, says);
	/* a SHA-1 sized digest */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.digest_len = 20;
	expect_fault(&q, TPM_QUOTE_BAD_PCR_DIGEST, "does not hold the reported measurements");
	cr_assert(tpm_quote_fault_is_pcr(TPM_QUOTE_BAD_PCR_DIGEST));
	cr_assert(tpm_quote_fault_is_pcr(TPM_QUOTE_BAD_PCR_SELECTION));
	cr_assert_not(tpm_quote_fault_is_pcr(TPM_QUOTE_BAD_EXTRA_DATA));
	cr_assert_not(tpm_quote_fault_is_pcr(TPM_QUOTE_BAD_FORM));
	cr_assert_not(tpm_quote_fault_is_pcr(TPM_QUOTE_BAD_SIGNATURE));
	cr_assert_not(tpm_quote_fault_is_pcr(TPM_QUOTE_BAD_KEY));
	cr_assert_not(tpm_quote_fault_is_pcr(TPM_QUOTE_OK));
}

Test(tpm_quote, a_trailing_byte_is_refused)
{
	struct fake_quote q;
	struct signed_quote s;
	struct tpm_quote parsed;
	char why[512];

	fake_quote_init(&q, extra, PCR, pcr_value);
	s.len = fake_quote_marshal(&q, s.attest, sizeof(s.attest));
	s.attest[s.len++] = 0;
	sign_bytes(&s, &ak);
	cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_BAD_FORM);
	cr_assert(strstr(why, "1 bytes after the end") != NULL, "%s", why);
	cr_assert_eq(tpm_quote_parse(s.attest, s.len, &parsed, why, sizeof(why)), GD_EPROTO);
}

/* Cut anywhere, a quote (signed as cut, so only its form is wrong) is refused. */
Test(tpm_quote, every_truncation_is_refused)
{
	struct fake_quote q;
	struct signed_quote s;
	struct tpm_quote parsed;
	size_t full;
	char why[512];

	fake_quote_init(&q, extra, PCR, pcr_value);
	full = fake_quote_marshal(&q, s.attest, sizeof(s.attest));
	cr_assert_eq(full, 4 + 2 + 2 + 34 + 2 + 32 + 17 + 8 + 4 + 2 + 1 + 3 + 2 + 32);
	for (size_t n = 0; n < full; n++) {
		memset(&parsed, 0x5a, sizeof(parsed));
		cr_assert_eq(tpm_quote_parse(s.attest, n, &parsed, why, sizeof(why)), GD_EPROTO,
			     "%zu of %zu bytes parsed", n, full);
		cr_assert_eq(parsed.magic, 0x5a5a5a5au, "a failed parse wrote its output");
		if (n == 0)
			continue; /* nothing to sign */
		s.len = n;
		sign_bytes(&s, &ak);
		cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_BAD_FORM, "%zu bytes: %s", n,
			     why);
		if (n >= 6) /* past magic and type: the sentence names where it ended */
			cr_assert(strstr(why, "end inside") != NULL, "%zu bytes: %s", n, why);
	}
	cr_assert_eq(tpm_quote_parse(s.attest, full, &parsed, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(tpm_quote_parse(NULL, 10, &parsed, why, sizeof(why)), GD_EPROTO);
}

Test(tpm_quote, sizes_past_their_bounds_are_refused)
{
	struct fake_quote q;

	fake_quote_init(&q, extra, PCR, pcr_value);
	q.signer_len = 67;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "qualifiedSigner of 67 bytes, more than 66");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.extra_len = 67;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "extraData of 67 bytes, more than 66");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.digest_len = 65;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "pcrDigest of 65 bytes, more than 64");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.nbanks = 17;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "pcrSelect.count 17, more than 16");
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.banks[0].size = 9;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "sizeofSelect 9, more than 8");
	/* A length that claims more than there is. */
	fake_quote_init(&q, extra, PCR, pcr_value);
	q.nbanks = 0xffffffffu;
	expect_fault(&q, TPM_QUOTE_BAD_FORM, "pcrSelect.count 4294967295");
}

Test(tpm_quote, more_than_the_maximum_is_refused)
{
	struct signed_quote s;
	struct tpm_quote parsed;
	char why[512];

	memset(s.attest, 0, sizeof(s.attest));
	s.len = TPM_QUOTE_ATTEST_MAX + 1;
	sign_bytes(&s, &ak);
	cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_BAD_FORM);
	cr_assert(strstr(why, "1025 bytes, expected 1 to 1024") != NULL, "%s", why);
	cr_assert_eq(tpm_quote_parse(s.attest, s.len, &parsed, why, sizeof(why)), GD_EPROTO);
}

Test(tpm_quote, a_bad_signature_or_another_key_fails)
{
	struct fake_quote q;
	struct signed_quote s;
	char why[512], p384_pem[512];
	mbedtls_pk_context p384;

	fake_quote_init(&q, extra, PCR, pcr_value);
	make(&s, &q);
	/* one bit of the signature */
	s.sig[s.siglen - 1] ^= 1;
	cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_BAD_SIGNATURE, "%s", why);
	cr_assert(strstr(why, "signature does not verify") != NULL, "%s", why);
	s.sig[s.siglen - 1] ^= 1;
	/* one bit of any byte of the quote */
	for (size_t i = 0; i < s.len; i++) {
		s.attest[i] ^= 0x10;
		cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_BAD_SIGNATURE,
			     "byte %zu changed: %s", i, why);
		s.attest[i] ^= 0x10;
	}
	/* a signature with a byte more or less */
	cr_assert_eq(tpm_quote_check(s.attest, s.len, s.sig, s.siglen - 1, ak_pem, extra, PCR,
				     pcr_value, why, sizeof(why)),
		     TPM_QUOTE_BAD_SIGNATURE);
	cr_assert_eq(tpm_quote_check(s.attest, s.len, s.sig, 0, ak_pem, extra, PCR, pcr_value, why,
				     sizeof(why)),
		     TPM_QUOTE_BAD_SIGNATURE);
	cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_OK, "%s", why);
	/* signed by another key */
	sign_bytes(&s, &other_ak);
	cr_assert_eq(check(&s, why, sizeof(why)), TPM_QUOTE_BAD_SIGNATURE, "%s", why);
	cr_assert_not(tpm_quote_verify_sig(s.attest, s.len, s.sig, s.siglen, ak_pem));
	cr_assert(tpm_quote_verify_sig(s.attest, s.len, s.sig, s.siglen, other_pem));
	/* an attestation key that is not P-256, or not a key */
	new_key(&p384, MBEDTLS_ECP_DP_SECP384R1, p384_pem, sizeof(p384_pem));
	cr_assert_eq(tpm_quote_check(s.attest, s.len, s.sig, s.siglen, p384_pem, extra, PCR,
				     pcr_value, why, sizeof(why)),
		     TPM_QUOTE_BAD_KEY);
	cr_assert(strstr(why, "another curve") != NULL, "%s", why);
	cr_assert_not(tpm_quote_ak_valid(p384_pem, why, sizeof(why)));
	cr_assert_eq(tpm_quote_check(s.attest, s.len, s.sig, s.siglen, "not a key", extra, PCR,
				     pcr_value, why, sizeof(why)),
		     TPM_QUOTE_BAD_KEY);
	cr_assert(strstr(why, "not a PEM public key") != NULL, "%s", why);
	cr_assert(tpm_quote_ak_valid(ak_pem, why, sizeof(why)));
	mbedtls_pk_free(&p384);
}

/* ---- a quote made by a real TPM (swtpm; see fixtures/tpm/README) ------------------------- */

static uint8_t *fixture(const char *name, size_t *len)
{
	char path[512];
	const char *slash = strrchr(__FILE__, '/');
	int dir = slash != NULL ? (int)(slash - __FILE__) : 1;
	char *data;

	snprintf(path, sizeof(path), "%.*s/fixtures/tpm/%s", dir, slash != NULL ? __FILE__ : ".",
		 name);
	data = gd_read_file_len(path, len);
	cr_assert_not_null(data, "%s: cannot read", path);
	return (uint8_t *)data;
}

Test(tpm_quote, a_quote_of_swtpm_verifies)
{
	static const char *const items[] = { "exe", "config", "policy", "file" };
	size_t attest_len, sig_len, pem_len, pcr_len;
	uint8_t *attest = fixture("attest.bin", &attest_len);
	uint8_t *sig = fixture("sig.der", &sig_len);
	char *pem = (char *)fixture("ak.pem", &pem_len);
	uint8_t *pcr = fixture("pcr23.bin", &pcr_len);
	uint8_t qualifying[32], d[32];
	struct meas_log log;
	struct tpm_quote q;
	char text[64], why[512] = "";

	cr_assert_eq(pcr_len, 32);
	/* PCR 23 holds the fold of the four digests the fixture extended, as meas_fold makes it. */
	meas_init(&log);
	for (size_t i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "guardian fixture %s", items[i]);
		mbedtls_sha256_ret((const uint8_t *)text, strlen(text), d, 0);
		cr_assert_eq(meas_add(&log, items[i], "/fixture", d), 0);
	}
	cr_assert_arr_eq(log.reg, pcr, 32);
	mbedtls_sha256_ret((const uint8_t *)"guardian fixture claims", 23, qualifying, 0);

	cr_assert(tpm_quote_ak_valid(pem, why, sizeof(why)), "%s", why);
	cr_assert(tpm_quote_verify_sig(attest, attest_len, sig, sig_len, pem));
	cr_assert_eq(tpm_quote_check(attest, attest_len, sig, sig_len, pem, qualifying, 23, log.reg,
				     why, sizeof(why)),
		     TPM_QUOTE_OK, "%s", why);
	cr_assert_eq(tpm_quote_parse(attest, attest_len, &q, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(q.signer_len, 34, "a key's name: nameAlg SHA-256 and its digest");
	cr_assert_eq(q.nbanks, 1);
	cr_assert_eq(q.banks[0].hash_alg, TPM_ALG_SHA256);
	cr_assert_eq(q.banks[0].size_of_select, 3);

	/* Each check still bites on the real thing. */
	cr_assert_eq(tpm_quote_check(attest, attest_len, sig, sig_len, pem, qualifying, 16, log.reg,
				     why, sizeof(why)),
		     TPM_QUOTE_BAD_PCR_SELECTION, "%s", why);
	log.reg[0] ^= 1;
	cr_assert_eq(tpm_quote_check(attest, attest_len, sig, sig_len, pem, qualifying, 23, log.reg,
				     why, sizeof(why)),
		     TPM_QUOTE_BAD_PCR_DIGEST, "%s", why);
	log.reg[0] ^= 1;
	qualifying[0] ^= 1;
	cr_assert_eq(tpm_quote_check(attest, attest_len, sig, sig_len, pem, qualifying, 23, log.reg,
				     why, sizeof(why)),
		     TPM_QUOTE_BAD_EXTRA_DATA, "%s", why);
	qualifying[0] ^= 1;
	attest[attest_len - 1] ^= 1;
	cr_assert_eq(tpm_quote_check(attest, attest_len, sig, sig_len, pem, qualifying, 23, log.reg,
				     why, sizeof(why)),
		     TPM_QUOTE_BAD_SIGNATURE, "%s", why);
	cr_assert_eq(tpm_quote_check(attest, attest_len, sig, sig_len, ak_pem, qualifying, 23,
				     log.reg, why, sizeof(why)),
		     TPM_QUOTE_BAD_SIGNATURE, "%s", why);
	free(pcr);
	free(pem);
	free(sig);
	free(attest);
}

/* ---- file mode is untouched --------------------------------------------------------------- */

static int fixed_sign(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	(void)ctx;
	(void)cap;
	memcpy(sig, digest, 32); /* not a signature: only the bytes around it matter here */
	*len = 32;
	return 0;
}

/* The envelope of file mode, byte for byte as the code before TPM evidence built it (this
 * literal is that code's output for the same evidence and signer). */
Test(tpm_quote, file_mode_envelope_is_byte_identical)
{
	static const char golden[] =
		"{\"evidence\":\"{\\\"eat_nonce\\\":"
		"\\\"AwoRGB8mLTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dzj6"
		"vH4_wYNFA\\\",\\\"ueid\\\":\\\"AQYLEBUaHyQpLjM4PUJHTFFWW2Blam90eX6DiI2Sl5yh\\\","
		"\\\""
		"name\\\":\\\"press-07\\\",\\\"swname\\\":\\\"guardian\\\",\\\"swversion\\\":\\\"0."
		"1."
		"0+u7\\\",\\\"iat\\\":1763744523,\\\"measurements\\\":[{\\\"type\\\":\\\"exe\\\","
		"\\\""
		"name\\\":\\\"/usr/bin/"
		"guardian\\\",\\\"sha256\\\":\\\"111111111111111111111111111111"
		"1111111111111111111111111111111111\\\"},{\\\"type\\\":\\\"config\\\",\\\"name\\\":"
		"\\\"/etc/guardian/site "
		"\\\\\\\"x\\\\\\\".json\\\",\\\"sha256\\\":\\\"222222222222222"
		"2222222222222222222222222222222222222222222222222\\\"},{\\\"type\\\":"
		"\\\"policy\\\","
		"\\\"name\\\":\\\"/etc/guardian/"
		"policy.json\\\",\\\"sha256\\\":\\\"333333333333333333"
		"3333333333333333333333333333333333333333333333\\\"}],\\\"register\\\":"
		"\\\"7f93e1b3c8"
		"924dc991f8ee856643bc599272e1c945fd05ab6adb5e48682d7857\\\",\\\"op_pub\\\":\\\"----"
		"-B"
		"EGIN PUBLIC KEY-----\\\\nABC\\\\n-----END PUBLIC "
		"KEY-----\\\\n\\\"}\",\"alg\":\"ES25"
		"6\",\"sig\":\"8BS_gKRxM3dUgi-ODzRLKArJwfumgNDM1_CpNLk9PHw\"}";
	static struct evidence ev;
	uint8_t d[32];
	char *env;

	for (int i = 0; i < NONCE_LEN; i++)
		ev.nonce[i] = (uint8_t)(i * 7 + 3);
	for (int i = 0; i < UEID_LEN; i++)
		ev.ueid[i] = (uint8_t)(i * 5 + 1);
	ev.ueid[0] = 1;
	strcpy(ev.name, "press-07");
	strcpy(ev.swversion, "0.1.0+u7");
	ev.iat = 1763744523;
	meas_init(&ev.log);
	memset(d, 0x11, 32);
	meas_add(&ev.log, "exe", "/usr/bin/guardian", d);
	memset(d, 0x22, 32);
	meas_add(&ev.log, "config", "/etc/guardian/site \"x\".json", d);
	memset(d, 0x33, 32);
	meas_add(&ev.log, "policy", "/etc/guardian/policy.json", d);
	strcpy(ev.op_pub, "-----BEGIN PUBLIC KEY-----\nABC\n-----END PUBLIC KEY-----\n");
	env = evidence_envelope_build(&ev, fixed_sign, NULL);
	cr_assert_not_null(env);
	cr_assert_str_eq(env, golden);
	free(env);
	/* the same evidence as TPM evidence differs only by the "tpm" member and the quote */
	ev.tpm = true;
	ev.tpm_pcr = 23;
	env = evidence_envelope_build(&ev, fixed_sign, NULL);
	cr_assert_not_null(strstr(env, ",\\\"tpm\\\":{\\\"pcr\\\":23}}\""), "%s", env);
	free(env);
}

/* ---- TPM evidence envelopes --------------------------------------------------------------- */

/* The quoter a device gets from its broker, here the test's AK over a fake quote of PCR 23. */
struct quoter {
	uint8_t pcr_value[32];
	uint8_t qualifying[32]; /* what it was asked to quote */
	int calls;
	int fail; /* 1: an error; 2: an oversized answer */
};

static int quote_with_ak(void *ctx, const uint8_t qualifying[32], uint8_t *attest,
			 size_t *attest_len, uint8_t *sig, size_t *sig_len)
{
	struct quoter *qt = ctx;
	struct fake_quote q;
	size_t n;

	cr_assert_eq(*attest_len, EVIDENCE_QUOTE_MAX, "the capacity comes in *attest_len");
	cr_assert_eq(*sig_len, EVIDENCE_SIG_MAX, "the capacity comes in *sig_len");
	qt->calls++;
	memcpy(qt->qualifying, qualifying, 32);
	if (qt->fail == 1)
		return GD_EIO;
	fake_quote_init(&q, qualifying, PCR, qt->pcr_value);
	n = fake_quote_marshal(&q, attest, *attest_len);
	cr_assert_gt(n, 0);
	*attest_len = qt->fail == 2 ? EVIDENCE_QUOTE_MAX + 1 : n;
	return fake_quote_sign(&ak, &drbg, attest, n, sig, sig_len) == 0 ? 0 : GD_EINVAL;
}

static void tpm_evidence(struct evidence *ev)
{
	uint8_t d[32];

	memset(ev, 0, sizeof(*ev));
	ev->ueid[0] = 0x01;
	strcpy(ev->name, "press-07");
	strcpy(ev->swversion, "0.1.0");
	ev->iat = 1763744523;
	meas_init(&ev->log);
	memset(d, 0x11, sizeof(d));
	meas_add(&ev->log, "exe", "/usr/bin/guardian", d);
	strcpy(ev->op_pub, ak_pem);
	ev->tpm = true;
	ev->tpm_pcr = PCR;
}

Test(tpm_quote, envelope_round_trip_and_check)
{
	struct evidence ev, back;
	struct quoter qt = { .calls = 0 };
	uint8_t sig[EVIDENCE_SIG_MAX], quote[EVIDENCE_QUOTE_MAX], digest[32];
	size_t siglen = 0, quote_len = 0;
	char why[512] = "", *env, *claims = NULL;

	tpm_evidence(&ev);
	memcpy(qt.pcr_value, ev.log.reg, 32);
	env = evidence_envelope_build_tpm(&ev, quote_with_ak, &qt);
	cr_assert_not_null(env);
	cr_assert_eq(qt.calls, 1);
	cr_assert(strstr(env, "\"quote\":\"") != NULL, "%s", env);
	cr_assert_eq(evidence_envelope_parse_quote(env, strlen(env), &back, &claims, sig, &siglen,
						   quote, &quote_len, why, sizeof(why)),
		     0, "%s", why);
	cr_assert(back.tpm);
	cr_assert_eq(back.tpm_pcr, PCR);
	cr_assert(strstr(claims, ",\"tpm\":{\"pcr\":23}}") != NULL, "%s", claims);
	/* The quote's qualifying data is SHA-256 of the claims text as sent. */
	mbedtls_sha256_ret((const uint8_t *)claims, strlen(claims), digest, 0);
	cr_assert_arr_eq(qt.qualifying, digest, 32);
	cr_assert_eq(tpm_quote_check(quote, quote_len, sig, siglen, ak_pem, digest, back.tpm_pcr,
				     back.log.reg, why, sizeof(why)),
		     TPM_QUOTE_OK, "%s", why);
	free(claims);
	/* The plain parser reads the same claims and leaves the quote alone. */
	cr_assert_eq(evidence_envelope_parse(env, strlen(env), &back, &claims, sig, &siglen, why,
					     sizeof(why)),
		     0, "%s", why);
	free(claims);
	free(env);

	/* No envelope without a quote, or with a bad one. */
	qt.fail = 1;
	cr_assert_null(evidence_envelope_build_tpm(&ev, quote_with_ak, &qt));
	qt.fail = 2;
	cr_assert_null(evidence_envelope_build_tpm(&ev, quote_with_ak, &qt));
	qt.fail = 0;
	ev.tpm_pcr = 24;
	cr_assert_null(evidence_envelope_build_tpm(&ev, quote_with_ak, &qt));
	ev.tpm = false;
	ev.tpm_pcr = PCR;
	cr_assert_null(evidence_envelope_build_tpm(&ev, quote_with_ak, &qt));
}

static void expect_refused(const char *env, const char *says)
{
	struct evidence ev;
	uint8_t sig[EVIDENCE_SIG_MAX], quote[EVIDENCE_QUOTE_MAX];
	size_t siglen = 0, quote_len = 7;
	char why[512] = "", *claims = NULL;

	cr_assert_eq(evidence_envelope_parse_quote(env, strlen(env), &ev, &claims, sig, &siglen,
						   quote, &quote_len, why, sizeof(why)),
		     GD_EPROTO, "accepted %s", env);
	cr_assert_null(claims);
	cr_assert_eq(quote_len, 0);
	cr_assert(strstr(why, says) != NULL, "\"%s\" does not say \"%s\"", why, says);
}

/*
 * A TPM envelope with its "quote" (quote_json != NULL: that raw JSON, given 'times' times) and
 * its claims' "tpm" (tpm_json != NULL: that raw JSON) replaced. Signatures do not matter here.
 */
static char *tpm_envelope_with(const char *quote_json, int times, const char *tpm_json)
{
	struct evidence ev;
	struct quoter qt = { .calls = 0 };
	cJSON *env, *claims;
	char *text, *out;

	tpm_evidence(&ev);
	text = evidence_envelope_build_tpm(&ev, quote_with_ak, &qt);
	cr_assert_not_null(text);
	env = cJSON_Parse(text);
	free(text);
	if (quote_json != NULL) {
		cJSON_DeleteItemFromObjectCaseSensitive(env, "quote");
		for (int i = 0; i < times; i++)
			cJSON_AddItemToObject(env, "quote", cJSON_Parse(quote_json));
	}
	if (tpm_json != NULL) {
		claims = cJSON_Parse(cJSON_GetObjectItem(env, "evidence")->valuestring);
		cJSON_ReplaceItemInObjectCaseSensitive(claims, "tpm", cJSON_Parse(tpm_json));
		text = cJSON_PrintUnformatted(claims);
		cJSON_ReplaceItemInObjectCaseSensitive(env, "evidence", cJSON_CreateString(text));
		free(text);
		cJSON_Delete(claims);
	}
	out = cJSON_PrintUnformatted(env);
	cJSON_Delete(env);
	return out;
}

Test(tpm_quote, malformed_tpm_members_are_named)
{
	static const char *const bad[][4] = {
		/* quote, times, tpm, what the reason says */
		{ "\"A\"", "1", NULL, "quote: not base64url of 1 to 1024 bytes" },
		{ "\"\"", "1", NULL, "quote: not base64url of 1 to 1024 bytes" },
		{ "\"AA==\"", "1", NULL, "quote: not base64url of 1 to 1024 bytes" },
		{ "7", "1", NULL, "quote: not a string" },
		{ "\"AAAA\"", "2", NULL, "quote: given twice" },
		{ NULL, "0", "7", "tpm: not an object" },
		{ NULL, "0", "{}", "tpm.pcr: missing" },
		{ NULL, "0", "{\"pcr\":24}", "tpm.pcr: 24 is not a PCR from 0 to 23" },
		{ NULL, "0", "{\"pcr\":-1}", "tpm.pcr: not a whole number" },
		{ NULL, "0", "{\"pcr\":1.5}", "tpm.pcr: not a whole number" },
		{ NULL, "0", "{\"pcr\":\"23\"}", "tpm.pcr: not a whole number" },
	};
	char big[1372 + 3];
	char *env;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env = tpm_envelope_with(bad[i][0], atoi(bad[i][1]), bad[i][2]);
		expect_refused(env, bad[i][3]);
		free(env);
	}
	/* 1025 bytes: one more than a quote may have */
	big[0] = '"';
	memset(big + 1, 'A', 1367);
	memcpy(big + 1368, "\"", 2);
	env = tpm_envelope_with(big, 1, NULL);
	expect_refused(env, "quote: not base64url of 1 to 1024 bytes");
	free(env);
	/* 1024 bytes, and PCR 0: they parse */
	memcpy(big + 1367, "\"", 2);
	env = tpm_envelope_with(big, 1, "{\"pcr\":0}");
	{
		struct evidence ev;
		uint8_t sig[EVIDENCE_SIG_MAX], quote[EVIDENCE_QUOTE_MAX];
		size_t siglen = 0, quote_len = 0;
		char why[512] = "", *claims = NULL;

		cr_assert_eq(evidence_envelope_parse_quote(env, strlen(env), &ev, &claims, sig,
							   &siglen, quote, &quote_len, why,
							   sizeof(why)),
			     0, "%s", why);
		cr_assert_eq(quote_len, EVIDENCE_QUOTE_MAX);
		cr_assert(ev.tpm);
		cr_assert_eq(ev.tpm_pcr, 0);
		free(claims);
	}
	free(env);
}
