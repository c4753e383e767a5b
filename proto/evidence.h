/* evidence.h: the signed evidence of service/PROTOCOL.md (EAT claim names) and the keys it names;
 * it includes the rest of proto/'s attestation messages: meas_log.h, attest.h, b64url.h. */
#ifndef PROTO_EVIDENCE_H
#define PROTO_EVIDENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/pk.h>

#include "attest.h"
#include "b64url.h"
#include "meas_log.h"

#define UEID_LEN       33 /* 0x01 || SHA-256 of the identity public key */
#define ATTEST_PEM_MAX 4096

/* The claims of one round (PROTOCOL.md, "Evidence"). */
struct evidence {
	uint8_t nonce[NONCE_LEN];
	uint8_t ueid[UEID_LEN];
	char name[64];
	char swversion[32];
	int64_t iat; /* UTC seconds */
	struct meas_log log;
	char op_pub[ATTEST_PEM_MAX]; /* PEM public key of the round's operational key */
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
 * frees). NULL on ENOMEM or a signer failure.
 */
char *evidence_envelope_build(const struct evidence *ev, evidence_sign_fn *sign, void *ctx);

/*
 * Parses an envelope: the claims into 'ev', the exact signed text into
 * *claims (caller frees), the signature into sig/siglen (at most 80 bytes).
 * Any missing or malformed field: GD_EPROTO with a sentence in 'why'. Never
 * trusts lengths it reads; never crashes on any input (fuzzed).
 */
int evidence_envelope_parse(const char *json, size_t len, struct evidence *ev, char **claims,
			    uint8_t *sig, size_t *siglen, char *why, size_t cap);

/* Verifies 'sig' over SHA-256(claims) with the public key of 'cert_pem' (an X.509 PEM). */
bool evidence_verify(const char *claims, const uint8_t *sig, size_t siglen, const char *cert_pem);

/* The UEID of a public key: 0x01 || SHA-256(DER SubjectPublicKeyInfo). 0 or GD_EINVAL. */
int evidence_ueid(const char *pub_or_cert_pem, uint8_t ueid[UEID_LEN]);
/* The same of a loaded key. 0 or GD_EINVAL. */
int evidence_ueid_of_key(mbedtls_pk_context *pk, uint8_t ueid[UEID_LEN]);
/* True if 'pk' is an EC key on P-256, the only key ES256 signs with. */
bool evidence_key_is_p256(const mbedtls_pk_context *pk);

#endif
