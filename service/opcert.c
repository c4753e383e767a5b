/* opcert.c: operational certificates signed through OpenSSL's libcrypto, as issue_cert writes
 * them with mbedTLS. */
#include <string.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "service.h"

/*
 * The OpenSSL forms of the CA's certificate and key, made on first use from the ones mbedTLS
 * loaded (and checked to be a pair) in issue_ca_load. 0 or GD_EINVAL.
 */
static int ca_openssl(struct service_ca *ca)
{
	unsigned char der[1024];
	const unsigned char *p;
	int n;

	if (ca->evp_crt == NULL) {
		p = ca->crt.raw.p;
		ca->evp_crt = d2i_X509(NULL, &p, (long)ca->crt.raw.len);
	}
	if (ca->evp_key != NULL)
		return ca->evp_crt != NULL ? 0 : GD_EINVAL;
	/* mbedtls writes DER at the end of the buffer. */
	n = mbedtls_pk_write_key_der(&ca->key, der, sizeof(der));
	if (n > 0) {
		p = der + sizeof(der) - n;
		ca->evp_key = d2i_AutoPrivateKey(NULL, &p, n);
	}
	OPENSSL_cleanse(der, sizeof(der));
	return ca->evp_crt != NULL && ca->evp_key != NULL ? 0 : GD_EINVAL;
}

/* A UTC time as X.509 wants it (UTCTime before 2050, GeneralizedTime after), in 1950..9999. */
static bool set_time(ASN1_TIME *t, int64_t utc_s)
{
	time_t tt = (time_t)utc_s;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1950)
		return false;
	return ASN1_TIME_set(t, tt) != NULL;
}

/*
 * The subject's EC P-256 public key as the certificate's SubjectPublicKeyInfo: id-ecPublicKey,
 * namedCurve prime256v1, the uncompressed point (what mbedTLS writes). Set directly, because
 * X509_set_pubkey goes through OpenSSL 3's encoders, which cost more than the signature.
 */
static bool set_pubkey(X509 *x, const mbedtls_pk_context *pk)
{
	const mbedtls_ecp_keypair *ec;
	unsigned char *point;
	size_t len = 0;

	if (!evidence_key_is_p256(pk))
		return false;
	point = OPENSSL_malloc(65);
	if (point == NULL)
		return false;
	ec = mbedtls_pk_ec(*pk);
	if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len,
					   point, 65) != 0 ||
	    len != 65 ||
	    X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
				   V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), point,
				   (int)len) != 1) {
		OPENSSL_free(point);
		return false;
	}
	return true; /* 'point' is the certificate's now */
}

/* The extensions issue_cert gives a certificate that is not a CA's. */
static bool add_extensions(X509 *x, X509 *issuer, bool client_auth)
{
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int hash_len = 0;
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	bool ok = false;

	if (bc == NULL || ski == NULL || akid == NULL || ku == NULL || eku == NULL)
		goto out;
	/* basicConstraints: cA FALSE, not critical (mbedTLS marks it critical only for a CA) */
	bc->ca = 0;
	if (X509_add1_ext_i2d(x, NID_basic_constraints, bc, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	/* subjectKeyIdentifier and authorityKeyIdentifier: SHA-1 of each public key's bits */
	if (X509_pubkey_digest(x, EVP_sha1(), hash, &hash_len) != 1 ||
	    ASN1_OCTET_STRING_set(ski, hash, (int)hash_len) != 1 ||
	    X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	akid->keyid = ASN1_OCTET_STRING_new();
	if (akid->keyid == NULL || X509_pubkey_digest(issuer, EVP_sha1(), hash, &hash_len) != 1 ||
	    ASN1_OCTET_STRING_set(akid->keyid, hash, (int)hash_len) != 1 ||
	    X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	/* keyUsage digitalSignature, critical */
	if (ASN1_BIT_STRING_set_bit(ku, 0, 1) != 1 ||
	    X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) != 1)
		goto out;
	if (client_auth &&
	    (sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) <= 0 ||
	     X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) != 1))
		goto out;
	ok = true;
out:
	BASIC_CONSTRAINTS_free(bc);
	ASN1_OCTET_STRING_free(ski);
	AUTHORITY_KEYID_free(akid);
	ASN1_BIT_STRING_free(ku);
	sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj's objects are static */
	return ok;
}

int issue_op_cert(mbedtls_pk_context *subject, const struct cert_spec *spec, struct service_ca *ca,
		  mbedtls_ctr_drbg_context *drbg, char *pem, size_t cap,
		  uint8_t serial_out[SERVICE_SERIAL_LEN])
{
	unsigned char serial_bytes[SERVICE_SERIAL_LEN];
	X509 *x = NULL;
	X509_NAME *name = NULL;
	BIGNUM *bn = NULL;
	ASN1_INTEGER *serial = NULL;
	BIO *bio = NULL;
	char *text;
	long len;
	int rc = GD_EINVAL;

	if (spec->is_ca || ca_openssl(ca) != 0)
		goto out;
	x = X509_new();
	name = X509_NAME_new();
	if (x == NULL || name == NULL)
		goto out;
	if (mbedtls_ctr_drbg_random(drbg, serial_bytes, sizeof(serial_bytes)) != 0)
		goto out;
	serial_bytes[0] &= 0x7f; /* positive */
	serial_bytes[0] |= 0x40; /* and 16 bytes long, always */
	bn = BN_bin2bn(serial_bytes, sizeof(serial_bytes), NULL);
	serial = bn == NULL ? NULL : BN_to_ASN1_INTEGER(bn, NULL);
	if (serial == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_set_serialNumber(x, serial) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca->evp_crt)) != 1 ||
	    !set_time(X509_getm_notBefore(x), spec->not_before_s) ||
	    !set_time(X509_getm_notAfter(x), spec->not_after_s) ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)spec->cn,
				       -1, -1, 0) != 1 ||
	    X509_set_subject_name(x, name) != 1 || !set_pubkey(x, subject) ||
	    !add_extensions(x, ca->evp_crt, spec->client_auth))
		goto out;
	if (X509_sign(x, ca->evp_key, EVP_sha256()) <= 0)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_X509(bio, x) != 1)
		goto out;
	len = BIO_get_mem_data(bio, &text);
	if (len <= 0 || (size_t)len >= cap) {
		rc = GD_EFULL;
		goto out;
	}
	memcpy(pem, text, (size_t)len);
	pem[len] = '\0';
	if (serial_out != NULL)
		memcpy(serial_out, serial_bytes, sizeof(serial_bytes));
	rc = 0;
out:
	BIO_free(bio);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	X509_NAME_free(name);
	X509_free(x);
	return rc;
}
