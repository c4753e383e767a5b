/* tpm_quote.c: TPM 2.0 quotes verified: TPMS_ATTEST parsed, the AK's signature, extraData and PCR.
 */
#include <stdio.h>
#include <string.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "../base/base.h"
#include "tpm_quote.h"

/* A reader over the marshalled bytes: big-endian, bounded, and sticky on the first shortage. */
struct reader {
	const uint8_t *p;
	size_t len, at;
	const char *short_in; /* the field that ran past the end, or NULL */
};

static bool take(struct reader *r, size_t n, const char *field, const uint8_t **out)
{
	if (r->short_in != NULL)
		return false;
	if (n > r->len - r->at) {
		r->short_in = field;
		return false;
	}
	*out = r->p + r->at;
	r->at += n;
	return true;
}

static uint64_t read_be(struct reader *r, size_t n, const char *field)
{
	const uint8_t *b;
	uint64_t v = 0;

	if (!take(r, n, field, &b))
		return 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | b[i];
	return v;
}

/* A TPM2B: a u16 size, at most 'max', then that many bytes into 'buf'. False on a bad size. */
static bool read_2b(struct reader *r, const char *field, uint8_t *buf, size_t max, uint16_t *len,
		    char *why, size_t cap)
{
	const uint8_t *b;
	uint16_t n = (uint16_t)read_be(r, 2, field);

	if (r->short_in != NULL)
		return true; /* reported by the caller */
	if (n > max) {
		gd_whyf(why, cap, "quote: %s of %u bytes, more than %zu", field, n, max);
		return false;
	}
	if (take(r, n, field, &b)) {
		memcpy(buf, b, n);
		*len = n;
	}
	return true;
}

static bool read_selection(struct reader *r, struct tpm_quote *q, char *why, size_t cap)
{
	uint32_t n = (uint32_t)read_be(r, 4, "pcrSelect.count");

	if (r->short_in != NULL)
		return true;
	if (n > TPM_QUOTE_BANKS_MAX) {
		gd_whyf(why, cap, "quote: pcrSelect.count %u, more than %d", n,
			TPM_QUOTE_BANKS_MAX);
		return false;
	}
	q->nbanks = n;
	for (uint32_t i = 0; i < n && r->short_in == NULL; i++) {
		struct tpm_pcr_bank *b = &q->banks[i];
		const uint8_t *bits;

		b->hash_alg = (uint16_t)read_be(r, 2, "pcrSelect.hash");
		b->size_of_select = (uint8_t)read_be(r, 1, "pcrSelect.sizeofSelect");
		if (r->short_in != NULL)
			break;
		if (b->size_of_select > TPM_QUOTE_SELECT_MAX) {
			gd_whyf(why, cap, "quote: pcrSelect[%u].sizeofSelect %u, more than %d", i,
				b->size_of_select, TPM_QUOTE_SELECT_MAX);
			return false;
		}
		if (take(r, b->size_of_select, "pcrSelect.pcrSelect", &bits))
			memcpy(b->select, bits, b->size_of_select);
	}
	return true;
}

int tpm_quote_parse(const uint8_t *attest, size_t len, struct tpm_quote *out, char *why, size_t cap)
{
	struct reader r = { .p = attest, .len = len };
	struct tpm_quote q;

	memset(&q, 0, sizeof(q));
	if (attest == NULL || len == 0 || len > TPM_QUOTE_ATTEST_MAX) {
		gd_whyf(why, cap, "quote: %zu bytes, expected 1 to %d", attest == NULL ? 0 : len,
			TPM_QUOTE_ATTEST_MAX);
		return GD_EPROTO;
	}
	q.magic = (uint32_t)read_be(&r, 4, "magic");
	if (r.short_in == NULL && q.magic != TPM_GENERATED_VALUE) {
		gd_whyf(why, cap, "quote: magic 0x%08x, not TPM_GENERATED_VALUE 0x%08x", q.magic,
			TPM_GENERATED_VALUE);
		return GD_EPROTO;
	}
	q.type = (uint16_t)read_be(&r, 2, "type");
	if (r.short_in == NULL && q.type != TPM_ST_ATTEST_QUOTE) {
		gd_whyf(why, cap, "quote: type 0x%04x, not TPM_ST_ATTEST_QUOTE 0x%04x", q.type,
			TPM_ST_ATTEST_QUOTE);
		return GD_EPROTO;
	}
	if (!read_2b(&r, "qualifiedSigner", q.signer, sizeof(q.signer), &q.signer_len, why, cap) ||
	    !read_2b(&r, "extraData", q.extra, sizeof(q.extra), &q.extra_len, why, cap))
		return GD_EPROTO;
	q.clock = read_be(&r, 8, "clockInfo.clock");
	q.reset_count = (uint32_t)read_be(&r, 4, "clockInfo.resetCount");
	q.restart_count = (uint32_t)read_be(&r, 4, "clockInfo.restartCount");
	q.safe = (uint8_t)read_be(&r, 1, "clockInfo.safe");
	q.firmware_version = read_be(&r, 8, "firmwareVersion");
	if (!read_selection(&r, &q, why, cap) ||
	    !read_2b(&r, "pcrDigest", q.pcr_digest, sizeof(q.pcr_digest), &q.pcr_digest_len, why,
		     cap))
		return GD_EPROTO;
	if (r.short_in != NULL) {
		gd_whyf(why, cap, "quote: %zu bytes end inside %s", len, r.short_in);
		return GD_EPROTO;
	}
	if (r.at != len) {
		gd_whyf(why, cap, "quote: %zu bytes after the end of the TPMS_ATTEST", len - r.at);
		return GD_EPROTO;
	}
	*out = q;
	return 0;
}

/* 'pk' from 'pem' if it is an EC P-256 public key; else false with 'why'. 'pk' initialised. */
static bool load_ak(mbedtls_pk_context *pk, const char *pem, char *why, size_t cap)
{
	if (pem == NULL ||
	    mbedtls_pk_parse_public_key(pk, (const uint8_t *)pem, strlen(pem) + 1) != 0) {
		gd_whyf(why, cap, "the attestation key is not a PEM public key");
		return false;
	}
	if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY) {
		gd_whyf(why, cap, "the attestation key is an %s key, expected EC P-256",
			mbedtls_pk_get_name(pk));
		return false;
	}
	if (mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
		gd_whyf(why, cap,
			"the attestation key is an EC key on another curve, expected P-256");
		return false;
	}
	return true;
}

bool tpm_quote_ak_valid(const char *pem, char *why, size_t cap)
{
	mbedtls_pk_context pk;
	bool ok;

	mbedtls_pk_init(&pk);
	ok = load_ak(&pk, pem, why, cap);
	mbedtls_pk_free(&pk);
	return ok;
}

static bool mbedtls_verify(mbedtls_pk_context *pk, const uint8_t digest[32], const uint8_t *sig,
			   size_t siglen)
{
	return mbedtls_pk_verify(pk, MBEDTLS_MD_SHA256, digest, 32, sig, siglen) == 0;
}

static bool verify_with(mbedtls_pk_context *pk, const uint8_t *attest, size_t len,
			const uint8_t *sig, size_t siglen, tpm_quote_verify_fn *verify)
{
	uint8_t digest[32];

	if (attest == NULL || sig == NULL || siglen == 0 || siglen > TPM_QUOTE_SIG_MAX)
		return false;
	mbedtls_sha256_ret(attest, len, digest, 0);
	return (verify != NULL ? verify : mbedtls_verify)(pk, digest, sig, siglen);
}

bool tpm_quote_verify_sig(const uint8_t *attest, size_t len, const uint8_t *sig, size_t siglen,
			  const char *ak_pem)
{
	mbedtls_pk_context pk;
	bool ok;

	mbedtls_pk_init(&pk);
	ok = load_ak(&pk, ak_pem, NULL, 0) && verify_with(&pk, attest, len, sig, siglen, NULL);
	mbedtls_pk_free(&pk);
	return ok;
}

bool tpm_quote_fault_is_pcr(enum tpm_quote_fault f)
{
	return f == TPM_QUOTE_BAD_PCR_SELECTION || f == TPM_QUOTE_BAD_PCR_DIGEST;
}

static const char *alg_name(uint16_t alg, char buf[16])
{
	switch (alg) {
	case TPM_ALG_SHA1:
		return "SHA-1";
	case TPM_ALG_SHA256:
		return "SHA-256";
	case 0x000c:
		return "SHA-384";
	case 0x000d:
		return "SHA-512";
	default:
		snprintf(buf, 16, "alg 0x%04x", alg);
		return buf;
	}
}

/* What the selection covers, for a sentence: "SHA-256 PCRs 16, 23; SHA-1 PCR 23". */
static void describe_selection(const struct tpm_quote *q, char *out, size_t cap)
{
	size_t o = 0;
	int n;

	out[0] = '\0';
	for (uint32_t i = 0; i < q->nbanks && o < cap; i++) {
		const struct tpm_pcr_bank *b = &q->banks[i];
		char alg[16];
		int count = 0;

		for (int pcr = 0; pcr < 8 * b->size_of_select; pcr++)
			count += (b->select[pcr / 8] >> (pcr % 8)) & 1;
		n = snprintf(out + o, cap - o, "%s%s PCR%s", i ? "; " : "",
			     alg_name(b->hash_alg, alg), count == 1 ? "" : "s");
		o += n > 0 ? (size_t)n : 0;
		for (int pcr = 0, k = 0; pcr < 8 * b->size_of_select && o < cap; pcr++) {
			if (((b->select[pcr / 8] >> (pcr % 8)) & 1) == 0)
				continue;
			n = snprintf(out + o, cap - o, "%s %d", k++ ? "," : "", pcr);
			o += n > 0 ? (size_t)n : 0;
		}
		if (count == 0 && o < cap) {
			n = snprintf(out + o, cap - o, " (none)");
			o += n > 0 ? (size_t)n : 0;
		}
	}
	if (q->nbanks == 0)
		snprintf(out, cap, "no PCR");
}

/* Exactly bit 'pcr' of one SHA-256 bank. */
static bool selects_only(const struct tpm_quote *q, int pcr)
{
	const struct tpm_pcr_bank *b = &q->banks[0];

	if (q->nbanks != 1 || b->hash_alg != TPM_ALG_SHA256 || pcr / 8 >= b->size_of_select)
		return false;
	for (int i = 0; i < b->size_of_select; i++) {
		uint8_t want = i == pcr / 8 ? (uint8_t)(1u << (pcr % 8)) : 0;

		if (b->select[i] != want)
			return false;
	}
	return true;
}

enum tpm_quote_fault tpm_quote_match(const struct tpm_quote *q, const uint8_t extra_data[32],
				     int pcr, const uint8_t pcr_value[32], char *why, size_t cap)
{
	char got[2 * TPM_QUOTE_DIGEST_MAX + 1], want[65], sel[160];
	uint8_t digest[32];

	if (q->extra_len != 32) {
		gd_whyf(why, cap,
			"the quote's extraData is %u bytes, not the 32 of SHA-256 of the claims",
			q->extra_len);
		return TPM_QUOTE_BAD_EXTRA_DATA;
	}
	if (memcmp(q->extra, extra_data, 32) != 0) {
		gd_hex_encode(q->extra, 32, got);
		gd_hex_encode(extra_data, 32, want);
		gd_whyf(why, cap,
			"the quote's extraData %.16s... is not SHA-256 of the claims %.16s... (a "
			"quote of other evidence)",
			got, want);
		return TPM_QUOTE_BAD_EXTRA_DATA;
	}
	if (pcr < 0 || pcr > TPM_QUOTE_PCR_MAX || !selects_only(q, pcr)) {
		describe_selection(q, sel, sizeof(sel));
		gd_whyf(why, cap, "the quote covers %s, not PCR %d of the SHA-256 bank alone", sel,
			pcr);
		return TPM_QUOTE_BAD_PCR_SELECTION;
	}
	/* pcrDigest is the hash of the selected PCRs' values concatenated: here the one value. */
	mbedtls_sha256_ret(pcr_value, 32, digest, 0);
	if (q->pcr_digest_len != 32 || memcmp(q->pcr_digest, digest, 32) != 0) {
		gd_hex_encode(q->pcr_digest, q->pcr_digest_len, got);
		gd_hex_encode(digest, 32, want);
		gd_whyf(why, cap,
			"the TPM's PCR %d does not hold the reported measurements (quote's PCR "
			"digest %.16s%s, the log's %.16s...)",
			pcr, got, q->pcr_digest_len > 8 ? "..." : "", want);
		return TPM_QUOTE_BAD_PCR_DIGEST;
	}
	return TPM_QUOTE_OK;
}

enum tpm_quote_fault tpm_quote_check(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
				     size_t siglen, const char *ak_pem,
				     const uint8_t extra_data[32], int pcr,
				     const uint8_t pcr_value[32], char *why, size_t cap)
{
	return tpm_quote_check_with(attest, attest_len, sig, siglen, ak_pem, extra_data, pcr,
				    pcr_value, NULL, why, cap);
}

enum tpm_quote_fault tpm_quote_check_with(const uint8_t *attest, size_t attest_len,
					  const uint8_t *sig, size_t siglen, const char *ak_pem,
					  const uint8_t extra_data[32], int pcr,
					  const uint8_t pcr_value[32], tpm_quote_verify_fn *verify,
					  char *why, size_t cap)
{
	mbedtls_pk_context pk;
	struct tpm_quote q;
	enum tpm_quote_fault f = TPM_QUOTE_OK;

	mbedtls_pk_init(&pk);
	if (!load_ak(&pk, ak_pem, why, cap)) {
		f = TPM_QUOTE_BAD_KEY;
		goto out;
	}
	if (!verify_with(&pk, attest, attest_len, sig, siglen, verify)) {
		gd_whyf(why, cap, "the quote's signature does not verify with the attestation key");
		f = TPM_QUOTE_BAD_SIGNATURE;
		goto out;
	}
	if (tpm_quote_parse(attest, attest_len, &q, why, cap) != 0) {
		f = TPM_QUOTE_BAD_FORM;
		goto out;
	}
	f = tpm_quote_match(&q, extra_data, pcr, pcr_value, why, cap);
out:
	mbedtls_pk_free(&pk);
	return f;
}
