/* evidence.h: the attestation messages of service/PROTOCOL.md: measurement logs, signed
 * evidence with EAT claim names, nonces and results; shared by the device and the service. */
#ifndef UPLINK_EVIDENCE_H
#define UPLINK_EVIDENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEAS_MAX       64 /* items in one measurement log */
#define MEAS_NAME_MAX  256
#define NONCE_LEN      40 /* ts(8) || random(16) || mac(16) */
#define UEID_LEN       33 /* 0x01 || SHA-256 of the identity public key */
#define ATTEST_PEM_MAX 4096

/* One measured item. */
struct measurement {
	char type[8]; /* "exe", "config", "policy", "file" */
	char name[MEAS_NAME_MAX];
	uint8_t sha256[32];
};

struct meas_log {
	struct measurement items[MEAS_MAX];
	size_t n;
	uint8_t reg[32]; /* the fold of every item, see meas_fold */
};

/* Empties the log; the register becomes 32 zero bytes. */
void meas_init(struct meas_log *log);
/* Appends an item and extends the register: reg = SHA-256(reg || sha256). GD_EFULL when full. */
int meas_add(struct meas_log *log, const char *type, const char *name, const uint8_t sha256[32]);
/* Hashes a file's contents into 'sha256'. 0, or GD_EIO (errno kept). */
int meas_hash_file(const char *path, uint8_t sha256[32]);
/* Folds items[0..n) from zero into 'reg' (to check a log that arrived). */
void meas_fold(const struct meas_log *log, uint8_t reg[32]);
/* The log as JSON: {"measurements":[...],"register":"<hex>"} (caller frees), NULL on ENOMEM. */
char *meas_log_json(const struct meas_log *log);
/* Parses meas_log_json's output (or a claims object: reads its "measurements" and "register"). */
int meas_log_parse(const char *json, size_t len, struct meas_log *out, char *why, size_t cap);

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

/* base64url without padding; the output is NUL-terminated. Return the length, or -1. */
int b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap);
int b64url_decode(const char *in, uint8_t *out, size_t cap);

/* ---- the service's answers (built by the service, parsed by the device) ------------------ */

/* {"nonce":"...","expires":ms}. Returns a malloc'd string, NULL on ENOMEM. */
char *attest_nonce_build(const uint8_t nonce[NONCE_LEN], int64_t expires_ms);
int attest_nonce_parse(const char *json, size_t len, uint8_t nonce[NONCE_LEN],
		       int64_t *expires_ms);

struct attest_result {
	bool ok;
	char reason[32];   /* when !ok: a code of PROTOCOL.md */
	char detail[512];  /* when !ok: a sentence */
	char *cert_pem;	   /* when ok: malloc'd; attest_result_free frees it */
	int64_t not_after; /* when ok: UTC ms */
};

/* Builds {"ok":true,...} when cert_pem is not NULL, else {"ok":false,...}. Caller frees. */
char *attest_result_build(const struct attest_result *r);
/* Parses a result; never crashes on any input (fuzzed). 0 or GD_EPROTO. */
int attest_result_parse(const char *json, size_t len, struct attest_result *out);
void attest_result_free(struct attest_result *r);

#endif
