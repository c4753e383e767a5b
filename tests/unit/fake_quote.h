/* fake_quote.h: TPMS_ATTEST bytes of a quote marshalled by the tests, as a TPM would, and signed
 * with an mbedTLS key standing in for the attestation key. */
#ifndef TESTS_UNIT_FAKE_QUOTE_H
#define TESTS_UNIT_FAKE_QUOTE_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>

/* Every field of a quote, free to be wrong. */
struct fake_quote {
	uint32_t magic;
	uint16_t type;
	uint16_t signer_len;
	uint8_t signer[80];
	uint16_t extra_len;
	uint8_t extra[80];
	uint64_t clock;
	uint32_t reset_count, restart_count;
	uint8_t safe;
	uint64_t firmware_version;
	uint32_t nbanks;
	struct {
		uint16_t alg;
		uint8_t size;
		uint8_t select[16];
	} banks[20];
	uint16_t digest_len;
	uint8_t digest[80];
};

/* A good quote: 'extra' as extraData, SHA-256 PCR 'pcr' selected (sizeofSelect 3), pcrDigest
 * SHA-256('pcr_value'), a plausible signer name and clock. */
void fake_quote_init(struct fake_quote *q, const uint8_t extra[32], int pcr,
		     const uint8_t pcr_value[32]);
/* Marshals 'q' big-endian into 'out' (fields' sizes as they are, even when wrong). The length,
 * or 0 if 'cap' is short. */
size_t fake_quote_marshal(const struct fake_quote *q, uint8_t *out, size_t cap);
/* DER ECDSA by 'key' over SHA-256 of 'n' bytes. 0 or -1. */
int fake_quote_sign(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg, const uint8_t *data,
		    size_t n, uint8_t *sig, size_t *siglen);

#endif
