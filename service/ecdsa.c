/* ecdsa.c: ECDSA P-256 signature checks through OpenSSL's libcrypto, for keys parsed by mbedTLS. */
#include <string.h>

#include <mbedtls/ecp.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "service.h"

/*
 * mbedTLS parses the certificate or PEM key (so what is accepted as a key stays what it was);
 * OpenSSL only checks the signature: its P-256 code (nistz256) is about twenty times faster
 * than mbedTLS 2.28's on x86-64. The point goes over as its uncompressed octets; OpenSSL checks
 * it lies on the curve again.
 */
static EVP_PKEY *openssl_pub(const mbedtls_pk_context *pk)
{
	const mbedtls_ecp_keypair *ec;
	unsigned char point[65];
	char group[] = "prime256v1";
	size_t len = 0;
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;

	if (!evidence_key_is_p256(pk))
		return NULL;
	ec = mbedtls_pk_ec(*pk);
	if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len,
					   point, sizeof(point)) != 0 ||
	    len != sizeof(point))
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, len);
	params[2] = OSSL_PARAM_construct_end();
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
		key = NULL;
	EVP_PKEY_CTX_free(ctx);
	return key;
}

bool service_ecdsa_verify(const mbedtls_pk_context *pk, const uint8_t digest[32],
			  const uint8_t *sig, size_t siglen)
{
	EVP_PKEY *key;
	EVP_PKEY_CTX *ctx = NULL;
	bool ok = false;

	if (sig == NULL || siglen == 0 || siglen > EVIDENCE_SIG_MAX)
		return false;
	key = openssl_pub(pk);
	if (key == NULL)
		return false;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	/* OpenSSL takes DER only in its one canonical encoding, as mbedTLS does. */
	ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
	     EVP_PKEY_verify(ctx, sig, siglen, digest, 32) == 1;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(key);
	return ok;
}
