/* test_tpm.c: tpm/tpm.c against swtpm: the attestation key survives a reconnect as its blob, its
 * public key is P-256, the PCR folds as the measurement log does, and a quote is what the
 * service checks (magic, type, extraData, PCR digest, a signature by the AK). */
#include <criterion/criterion.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "../../proto/meas_log.h"
#include "../../tpm/tpm.h"
#include "../harness/harness.h"

static void setup(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	/* tpm2-tss logs the TPM errors provoked below on stderr; the tests read them in 'why'. */
	setenv("TSS2_LOG", "all+NONE", 1);
}

static void teardown(void)
{
	h_cleanup();
}

TestSuite(tpm, .init = setup, .fini = teardown, .timeout = 60);

/* A fresh swtpm and a connection to it. */
static struct gd_tpm *tpm_up(int *port_out)
{
	struct gd_tpm *t = NULL;
	char why[512] = "";
	int port = 0;

	H_NEED_SWTPM();
	cr_assert_gt(h_swtpm(&port), 0, "swtpm did not start (see %s)", h_dir());
	cr_assert_eq(gd_tpm_open(h_swtpm_tcti(port), &t, why, sizeof(why)), 0, "%s", why);
	if (port_out != NULL)
		*port_out = port;
	return t;
}

static void digest_of(const char *text, uint8_t out[32])
{
	mbedtls_sha256_ret((const unsigned char *)text, strlen(text), out, 0);
}

/* The parts of a TPMS_ATTEST (a quote) the service reads. */
struct quote_view {
	uint32_t magic;
	uint16_t type;
	const uint8_t *extra;
	size_t extra_len;
	uint32_t nbanks;
	uint16_t bank_alg;
	uint8_t select[3];
	const uint8_t *pcr_digest;
	size_t pcr_digest_len;
};

static uint32_t be(const uint8_t *p, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Parses the quote by hand, as an independent reader; false if it runs out of bytes. */
static bool quote_parse(const uint8_t *a, size_t n, struct quote_view *q)
{
	size_t off = 0, len;

	memset(q, 0, sizeof(*q));
	if (n < 8)
		return false;
	q->magic = be(a, 4);
	q->type = (uint16_t)be(a + 4, 2);
	off = 6;
	len = be(a + off, 2); /* qualifiedSigner */
	off += 2 + len;
	if (off + 2 > n)
		return false;
	q->extra_len = be(a + off, 2);
	q->extra = a + off + 2;
	off += 2 + q->extra_len;
	off += 17 + 8; /* clockInfo, firmwareVersion */
	if (off + 4 + 2 + 1 + 3 > n)
		return false;
	q->nbanks = be(a + off, 4);
	q->bank_alg = (uint16_t)be(a + off + 4, 2);
	if (a[off + 6] != 3)
		return false;
	memcpy(q->select, a + off + 7, 3);
	off += 10;
	if (off + 2 > n)
		return false;
	q->pcr_digest_len = be(a + off, 2);
	q->pcr_digest = a + off + 2;
	return off + 2 + q->pcr_digest_len == n;
}

/* 0 when 'sig' verifies over SHA-256(data) with the PEM public key. */
static int verify(const char *pem, const uint8_t *data, size_t n, const uint8_t *sig,
		  size_t sig_len)
{
	mbedtls_pk_context pk;
	uint8_t hash[32];
	int rc;

	mbedtls_pk_init(&pk);
	rc = mbedtls_pk_parse_public_key(&pk, (const unsigned char *)pem, strlen(pem) + 1);
	if (rc == 0) {
		mbedtls_sha256_ret(data, n, hash, 0);
		rc = mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, 32, sig, sig_len);
	}
	mbedtls_pk_free(&pk);
	return rc;
}

Test(tpm, ak_blob_reloads_after_reconnect_as_the_same_key)
{
	char why[512] = "", pem1[GD_TPM_PEM_MAX], pem2[GD_TPM_PEM_MAX];
	uint8_t *blob = NULL;
	size_t len = 0;
	int port;
	struct gd_tpm *t = tpm_up(&port);

	cr_assert_eq(gd_tpm_ak_public_pem(t, pem1, sizeof(pem1)), GD_EINVAL,
		     "a public key before any AK was loaded");
	cr_assert_eq(gd_tpm_ak_create(t, &blob, &len, why, sizeof(why)), 0, "%s", why);
	cr_assert_gt(len, 100, "a blob of %zu bytes", len);
	cr_assert_eq(gd_tpm_ak_public_pem(t, pem1, sizeof(pem1)), 0);
	gd_tpm_close(t);

	cr_assert_eq(gd_tpm_open(h_swtpm_tcti(port), &t, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_ak_load(t, blob, len, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_ak_public_pem(t, pem2, sizeof(pem2)), 0);
	cr_expect_str_eq(pem1, pem2);
	/* A second key is another key. */
	free(blob);
	cr_assert_eq(gd_tpm_ak_create(t, &blob, &len, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_ak_public_pem(t, pem2, sizeof(pem2)), 0);
	cr_expect_str_neq(pem1, pem2);
	free(blob);
	gd_tpm_close(t);
}

Test(tpm, public_key_is_p256_subject_public_key_info)
{
	char why[512] = "", pem[GD_TPM_PEM_MAX];
	mbedtls_pk_context pk;
	uint8_t *blob = NULL;
	size_t len = 0;
	struct gd_tpm *t = tpm_up(NULL);

	cr_assert_eq(gd_tpm_ak_create(t, &blob, &len, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_ak_public_pem(t, pem, sizeof(pem)), 0);
	cr_expect_not_null(strstr(pem, "-----BEGIN PUBLIC KEY-----"), "%s", pem);
	mbedtls_pk_init(&pk);
	cr_assert_eq(mbedtls_pk_parse_public_key(&pk, (const unsigned char *)pem, strlen(pem) + 1),
		     0, "mbedTLS cannot read %s", pem);
	cr_expect_eq(mbedtls_pk_get_type(&pk), MBEDTLS_PK_ECKEY);
	cr_expect_eq(mbedtls_pk_ec(pk)->grp.id, MBEDTLS_ECP_DP_SECP256R1);
	cr_expect_eq(mbedtls_pk_get_bitlen(&pk), 256);
	/* Too small a buffer is refused, not cut. */
	cr_expect_neq(gd_tpm_ak_public_pem(t, pem, 40), 0);
	mbedtls_pk_free(&pk);
	free(blob);
	gd_tpm_close(t);
}

Test(tpm, pcr_reset_extend_read_equals_the_logs_fold)
{
	static const char *const items[] = { "exe bytes", "config bytes", "policy bytes" };
	struct meas_log *log = malloc(sizeof(*log));
	uint8_t value[32], zero[32] = { 0 }, fold[32], d[32];
	char why[512] = "";
	struct gd_tpm *t = tpm_up(NULL);

	meas_init(log);
	cr_assert_eq(gd_tpm_pcr_reset(t, 23, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_pcr_read(t, 23, value, why, sizeof(why)), 0, "%s", why);
	cr_expect_arr_eq(value, zero, 32, "PCR 23 is not zero after a reset");
	for (size_t i = 0; i < 3; i++) {
		digest_of(items[i], d);
		meas_add(log, "file", items[i], d);
		cr_assert_eq(gd_tpm_pcr_extend(t, 23, d, why, sizeof(why)), 0, "%s", why);
	}
	cr_assert_eq(gd_tpm_pcr_read(t, 23, value, why, sizeof(why)), 0, "%s", why);
	meas_fold(log, fold);
	cr_expect_arr_eq(value, fold, 32, "PCR 23 is not the fold of what was extended");
	cr_expect_arr_eq(value, log->reg, 32);
	cr_expect_arr_neq(value, zero, 32);
	/* PCR 15 cannot be reset at locality 0: the error names the command. */
	cr_expect_eq(gd_tpm_pcr_reset(t, 15, why, sizeof(why)), GD_EIO);
	cr_expect_not_null(strstr(why, "TPM2_PCR_Reset"), "%s", why);
	free(log);
	gd_tpm_close(t);
}

Test(tpm, quote_carries_qualifying_data_and_pcr_digest_and_verifies_with_the_ak)
{
	uint8_t attest[GD_TPM_ATTEST_MAX], sig[GD_TPM_SIG_MAX], q[32] = { 0 }, d[32], value[32];
	uint8_t want[32];
	size_t attest_len = 0, sig_len = 0, len = 0;
	char why[512] = "", pem[GD_TPM_PEM_MAX];
	struct quote_view v;
	uint8_t *blob = NULL;
	struct gd_tpm *t = tpm_up(NULL);

	cr_assert_eq(gd_tpm_quote(t, 23, q, attest, &attest_len, sig, &sig_len, why, sizeof(why)),
		     GD_EINVAL, "a quote without an AK");
	cr_assert_eq(gd_tpm_ak_create(t, &blob, &len, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_ak_public_pem(t, pem, sizeof(pem)), 0);
	digest_of("the claims", q);
	digest_of("an item", d);
	cr_assert_eq(gd_tpm_pcr_reset(t, 23, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_pcr_extend(t, 23, d, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_pcr_read(t, 23, value, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_quote(t, 23, q, attest, &attest_len, sig, &sig_len, why, sizeof(why)),
		     0, "%s", why);

	cr_assert(quote_parse(attest, attest_len, &v), "the quote does not parse (%zu bytes)",
		  attest_len);
	cr_expect_eq(v.magic, 0xFF544347u, "magic %08x", v.magic);
	cr_expect_eq(v.type, 0x8018, "type %04x", v.type);
	cr_assert_eq(v.extra_len, 32);
	cr_expect_arr_eq(v.extra, q, 32, "extraData is not the qualifying bytes");
	cr_expect_eq(v.nbanks, 1);
	cr_expect_eq(v.bank_alg, 0x000B);
	cr_expect_eq(v.select[0], 0);
	cr_expect_eq(v.select[1], 0);
	cr_expect_eq(v.select[2], 0x80, "PCR 23 only");
	cr_assert_eq(v.pcr_digest_len, 32);
	mbedtls_sha256_ret(value, 32, want, 0);
	cr_expect_arr_eq(v.pcr_digest, want, 32, "pcrDigest is not SHA-256 of PCR 23");

	cr_assert_leq(sig_len, GD_TPM_SIG_MAX);
	cr_expect_eq(sig[0], 0x30, "not a DER SEQUENCE");
	cr_expect_eq(verify(pem, attest, attest_len, sig, sig_len), 0,
		     "the signature does not verify over SHA-256(attest) with the AK");
	attest[attest_len - 1] ^= 1;
	cr_expect_neq(verify(pem, attest, attest_len, sig, sig_len), 0,
		      "a changed quote still verifies");
	free(blob);
	gd_tpm_close(t);
}

Test(tpm, blob_of_another_tpm_or_no_blob_is_refused)
{
	char why[512] = "", pem[GD_TPM_PEM_MAX];
	uint8_t *blob = NULL, junk[64];
	size_t len = 0;
	struct gd_tpm *a = tpm_up(NULL);
	struct gd_tpm *b = tpm_up(NULL);

	cr_assert_eq(gd_tpm_ak_create(a, &blob, &len, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(gd_tpm_ak_load(b, blob, len, why, sizeof(why)), GD_EIO,
		     "another TPM took the key");
	cr_expect_not_null(strstr(why, "TPM2_Load"), "%s", why);
	cr_expect_not_null(strstr(why, "not made under this TPM"), "%s", why);
	cr_expect_eq(gd_tpm_ak_public_pem(b, pem, sizeof(pem)), GD_EINVAL,
		     "a refused blob left a key loaded");

	memset(junk, 0x5a, sizeof(junk));
	cr_expect_eq(gd_tpm_ak_load(b, junk, sizeof(junk), why, sizeof(why)), GD_EINVAL);
	cr_expect_not_null(strstr(why, "not an attestation key blob"), "%s", why);
	cr_expect_eq(gd_tpm_ak_load(b, blob, len - 1, why, sizeof(why)), GD_EINVAL, "a cut blob");
	free(blob);
	gd_tpm_close(a);
	gd_tpm_close(b);
}

Test(tpm, open_on_a_dead_port_names_the_tcti)
{
	char tcti[64], why[512] = "";
	struct gd_tpm *t = (struct gd_tpm *)(uintptr_t)1; /* must become NULL */
	int port = h_free_port();

	snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", port);
	cr_expect_eq(gd_tpm_open(tcti, &t, why, sizeof(why)), GD_EIO);
	cr_expect_null(t);
	cr_expect_not_null(strstr(why, tcti), "the error does not name the TCTI: %s", why);
}
