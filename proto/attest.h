/* attest.h: the service's answers of service/PROTOCOL.md, built by the service and parsed by the
 * device: the nonce for a hello, and the result for evidence. */
#ifndef PROTO_ATTEST_H
#define PROTO_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NONCE_LEN 40 /* ts(8) || random(16) || mac(16) */

/* {"nonce":"...","expires":ms}. Returns a malloc'd string, NULL on ENOMEM. */
char *attest_nonce_build(const uint8_t nonce[NONCE_LEN], int64_t expires_ms);
/* Parses a nonce message; never crashes on any input (fuzzed). 0 or GD_EPROTO. */
int attest_nonce_parse(const char *json, size_t len, uint8_t nonce[NONCE_LEN], int64_t *expires_ms);

struct attest_result {
	bool ok;
	char reason[32];   /* when !ok: a code of PROTOCOL.md */
	char detail[512];  /* when !ok: a sentence */
	char *cert_pem;	   /* when ok: malloc'd; attest_result_free frees it */
	int64_t not_after; /* when ok: UTC ms */
};

/* Builds {"ok":true,...} when cert_pem is not NULL, else {"ok":false,...}. Caller frees. */
char *attest_result_build(const struct attest_result *r);
/* Parses a result; never crashes on any input (fuzzed). 0 or GD_EPROTO; on failure *out is left
 * empty (not ok, no certificate), so attest_result_free is always safe. */
int attest_result_parse(const char *json, size_t len, struct attest_result *out);
/* Frees the certificate and empties 'r'. No operation is performed if 'r' is NULL. */
void attest_result_free(struct attest_result *r);

#endif
