/* tpm_quote.h: a TPM 2.0 quote as its verifier sees it: the TPMS_ATTEST bytes parsed, the
 * attestation key's signature over them, and the checks of service/PROTOCOL.md ("TPM evidence").
 * Parsing and mbedTLS only: no TPM library, no TPM. */
#ifndef PROTO_TPM_QUOTE_H
#define PROTO_TPM_QUOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TPM_QUOTE_ATTEST_MAX 1024 /* bytes of a TPMS_ATTEST accepted (tpm/'s GD_TPM_ATTEST_MAX) */
#define TPM_QUOTE_SIG_MAX    80	  /* a DER ECDSA P-256 signature (72 suffice) */
#define TPM_QUOTE_NAME_MAX   66	  /* TPM2B_NAME: sizeof(TPMU_NAME), a TPMT_HA of SHA-512 */
#define TPM_QUOTE_DATA_MAX   66	  /* TPM2B_DATA: sizeof(TPMT_HA) */
#define TPM_QUOTE_DIGEST_MAX 64	  /* TPM2B_DIGEST: sizeof(TPMU_HA) */
#define TPM_QUOTE_BANKS_MAX  16	  /* entries of a TPML_PCR_SELECTION */
#define TPM_QUOTE_SELECT_MAX 8	  /* sizeofSelect: a bitmap of up to 64 PCRs */
#define TPM_QUOTE_PCR_MAX    23	  /* the highest PCR a claim's "tpm":{"pcr":N} may name */

#define TPM_GENERATED_VALUE 0xff544347u /* TPMS_ATTEST.magic: the TPM made these bytes */
#define TPM_ST_ATTEST_QUOTE 0x8018	/* TPMS_ATTEST.type of a TPM2_Quote */
#define TPM_ALG_SHA1	    0x0004
#define TPM_ALG_SHA256	    0x000b

/* One entry of the quote's TPML_PCR_SELECTION: a bank and the PCRs selected in it. */
struct tpm_pcr_bank {
	uint16_t hash_alg;
	uint8_t size_of_select;
	uint8_t select[TPM_QUOTE_SELECT_MAX]; /* bit (n % 8) of byte n / 8: PCR n */
};

/* A TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, every field as marshalled (TPM 2.0 Part 2). */
struct tpm_quote {
	uint32_t magic;
	uint16_t type;
	uint16_t signer_len; /* qualifiedSigner, a TPM2B_NAME */
	uint8_t signer[TPM_QUOTE_NAME_MAX];
	uint16_t extra_len; /* extraData, a TPM2B_DATA: the verifier's qualifying data */
	uint8_t extra[TPM_QUOTE_DATA_MAX];
	uint64_t clock; /* clockInfo */
	uint32_t reset_count, restart_count;
	uint8_t safe;
	uint64_t firmware_version;
	uint32_t nbanks; /* TPMS_QUOTE_INFO: pcrSelect */
	struct tpm_pcr_bank banks[TPM_QUOTE_BANKS_MAX];
	uint16_t pcr_digest_len; /* and pcrDigest, a TPM2B_DIGEST */
	uint8_t pcr_digest[TPM_QUOTE_DIGEST_MAX];
};

/*
 * Parses exactly 'len' bytes (at most TPM_QUOTE_ATTEST_MAX) as a marshalled TPMS_ATTEST of a
 * quote into 'out': magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE, every size within its
 * type's bound, nothing after the last field. 0, or GD_EPROTO with a sentence in 'why' naming
 * the field. Trusts no length it reads; never crashes on any input (fuzzed).
 */
int tpm_quote_parse(const uint8_t *attest, size_t len, struct tpm_quote *out, char *why,
		    size_t cap);

/* True if 'sig' (DER ECDSA) verifies over SHA-256(attest) with 'ak_pem', an EC P-256 public
 * key (SubjectPublicKeyInfo PEM). False for any other key. */
bool tpm_quote_verify_sig(const uint8_t *attest, size_t len, const uint8_t *sig, size_t siglen,
			  const char *ak_pem);

/* True if 'pem' is an EC P-256 public key, the only kind of attestation key accepted; else a
 * sentence in 'why' ("not a PEM public key", "an RSA key, expected EC P-256"). */
bool tpm_quote_ak_valid(const char *pem, char *why, size_t cap);

/* Which check of a quote failed, in the order they are made. */
enum tpm_quote_fault {
	TPM_QUOTE_OK = 0,
	TPM_QUOTE_BAD_KEY,	     /* the attestation key is not an EC P-256 public key */
	TPM_QUOTE_BAD_SIGNATURE,     /* the signature does not verify with it */
	TPM_QUOTE_BAD_FORM,	     /* not a TPMS_ATTEST of a quote (tpm_quote_parse) */
	TPM_QUOTE_BAD_EXTRA_DATA,    /* extraData is not the expected qualifying data */
	TPM_QUOTE_BAD_PCR_SELECTION, /* not exactly the one PCR of the SHA-256 bank */
	TPM_QUOTE_BAD_PCR_DIGEST,    /* pcrDigest is not SHA-256 of the expected PCR value */
};

/* True for the faults of the PCR (the service's measurement_mismatch); the others say the quote
 * does not come, unaltered and fresh, from the attestation key (its bad_signature). */
bool tpm_quote_fault_is_pcr(enum tpm_quote_fault f);

/*
 * The checks after the signature, on a parsed quote: extraData equals 'extra_data'; the
 * selection is exactly PCR 'pcr' (0 to TPM_QUOTE_PCR_MAX) of the SHA-256 bank; pcrDigest
 * equals SHA-256('pcr_value'), the digest of that one PCR's value. The first fault, with a
 * sentence in 'why' (digests in hex cut to 16 digits), or TPM_QUOTE_OK.
 */
enum tpm_quote_fault tpm_quote_match(const struct tpm_quote *q, const uint8_t extra_data[32],
				     int pcr, const uint8_t pcr_value[32], char *why, size_t cap);

/*
 * Every check, in order: 'ak_pem' is an EC P-256 key; 'sig' verifies over SHA-256(attest) with
 * it; 'attest' parses (tpm_quote_parse); then tpm_quote_match. The first fault with a sentence
 * in 'why', or TPM_QUOTE_OK.
 */
enum tpm_quote_fault tpm_quote_check(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
				     size_t siglen, const char *ak_pem,
				     const uint8_t extra_data[32], int pcr,
				     const uint8_t pcr_value[32], char *why, size_t cap);

/* A check of a DER ECDSA signature over a SHA-256 digest by a parsed P-256 key: true if good. */
struct mbedtls_pk_context;
typedef bool tpm_quote_verify_fn(struct mbedtls_pk_context *pk, const uint8_t digest[32],
				 const uint8_t *sig, size_t siglen);

/* tpm_quote_check with the signature checked by 'verify' (the service's faster one); NULL is
 * mbedTLS's, as tpm_quote_check uses. */
enum tpm_quote_fault tpm_quote_check_with(const uint8_t *attest, size_t attest_len,
					  const uint8_t *sig, size_t siglen, const char *ak_pem,
					  const uint8_t extra_data[32], int pcr,
					  const uint8_t pcr_value[32], tpm_quote_verify_fn *verify,
					  char *why, size_t cap);

#endif
