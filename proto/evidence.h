/* evidence.h: the signed evidence of service/PROTOCOL.md (EAT claim names) and the keys it names;
 * it includes the rest of proto/'s attestation messages: meas_log.h, attest.h, b64url.h and
 * tpm_quote.h (TPM evidence). */
#ifndef PROTO_EVIDENCE_H
#define PROTO_EVIDENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/pk.h>

#include "attest.h"
#include "b64url.h"
#include "meas_log.h"
#include "tpm_quote.h"

#define UEID_LEN	   33 /* 0x01 || SHA-256 of the identity public key */
#define ATTEST_PEM_MAX	   4096
#define EVIDENCE_SIG_MAX   80			/* bytes of a DER signature in an envelope */
#define EVIDENCE_QUOTE_MAX TPM_QUOTE_ATTEST_MAX /* bytes of a quote in an envelope */

/* The claims of one round (PROTOCOL.md, "Evidence"). */
struct evidence {
	uint8_t nonce[NONCE_LEN];
	uint8_t ueid[UEID_LEN];
	char name[64];
	char swversion[32];
	int64_t iat; /* UTC seconds */
	struct meas_log log;
	char op_pub[ATTEST_PEM_MAX]; /* PEM public key of the round's operational key */
	bool tpm;		     /* TPM evidence: the claims say "tpm":{"pcr":tpm_pcr} */
	int tpm_pcr;		     /* 0 to TPM_QUOTE_PCR_MAX: the PCR the quote covers */
};

/*
 * The signer: ECDSA P-256 over a SHA-256 digest, DER signature into 'sig'
 * (at most 'cap' bytes, 72 suffice); sets *len. 0 or a negative gd_err.
 * The keystore provides one; tests may use a key of their own.
 */
typedef int evidence_sign_fn(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap,
			     size_t *len);

/*
 * Builds the claims JSON from 'ev' and the signed envelope around it (caller
 * frees). NULL on ENOMEM or a signer failure. Without ev->tpm the bytes are
 * those of file mode, as they always were.
 */
char *evidence_envelope_build(const struct evidence *ev, evidence_sign_fn *sign, void *ctx);

/*
 * The quoter of TPM evidence: TPM2_Quote by the attestation key with
 * 'qualifying' as extraData. On entry *attest_len and *sig_len are the
 * capacities of 'attest' (EVIDENCE_QUOTE_MAX) and 'sig' (EVIDENCE_SIG_MAX); it
 * writes the TPMS_ATTEST bytes and the DER ECDSA signature over SHA-256 of them
 * and sets both lengths. 0 or a negative gd_err. guardian asks its broker.
 */
typedef int evidence_quote_fn(void *ctx, const uint8_t qualifying[32], uint8_t *attest,
			      size_t *attest_len, uint8_t *sig, size_t *sig_len);

/*
 * TPM evidence (PROTOCOL.md, "TPM evidence"): the claims of 'ev' with
 * "tpm":{"pcr":ev->tpm_pcr}, then quote(ctx, SHA-256(claims text), ...), then
 * {"evidence":claims,"alg":"ES256","sig":<the quote's signature>,"quote":<the
 * TPMS_ATTEST>} (caller frees). NULL if ev->tpm is not set, the PCR is out of
 * range, on ENOMEM, or if the quoter fails or returns an empty or oversized answer.
 */
char *evidence_envelope_build_tpm(const struct evidence *ev, evidence_quote_fn *quote, void *ctx);

/*
 * Parses an envelope: the claims into 'ev', the exact signed text into
 * *claims (caller frees), the signature into sig/siglen (at most 80 bytes).
 * Any missing or malformed field: GD_EPROTO with a sentence in 'why'. Never
 * trusts lengths it reads; never crashes on any input (fuzzed).
 */
int evidence_envelope_parse(const char *json, size_t len, struct evidence *ev, char **claims,
			    uint8_t *sig, size_t *siglen, char *why, size_t cap);
/*
 * The same, and the envelope's "quote" (TPM evidence) into 'quote' (at most
 * EVIDENCE_QUOTE_MAX bytes), its length into *quote_len: 0 when the envelope
 * has none. A "quote" that is not base64url of 1 to EVIDENCE_QUOTE_MAX bytes:
 * GD_EPROTO. The quote's contents are not looked at (tpm_quote_check does).
 */
int evidence_envelope_parse_quote(const char *json, size_t len, struct evidence *ev, char **claims,
				  uint8_t *sig, size_t *siglen, uint8_t *quote, size_t *quote_len,
				  char *why, size_t cap);

/* Verifies 'sig' over SHA-256(claims) with the public key of 'cert_pem' (an X.509 PEM). */
bool evidence_verify(const char *claims, const uint8_t *sig, size_t siglen, const char *cert_pem);

/* The UEID of a public key: 0x01 || SHA-256(DER SubjectPublicKeyInfo). 0 or GD_EINVAL. */
int evidence_ueid(const char *pub_or_cert_pem, uint8_t ueid[UEID_LEN]);
/* The same of a loaded key. 0 or GD_EINVAL. */
int evidence_ueid_of_key(mbedtls_pk_context *pk, uint8_t ueid[UEID_LEN]);
/* True if 'pk' is an EC key on P-256, the only key ES256 signs with. */
bool evidence_key_is_p256(const mbedtls_pk_context *pk);

#endif
