/* issue.c: EC P-256 keys and X.509 v3 certificates (CAs, identity and operational), with mbedTLS.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "service.h"

/*
 * extendedKeyUsage = SEQUENCE { id-kp-clientAuth (1.3.6.1.5.5.7.3.2) }, DER.
 * mbedTLS 2.28 has no mbedtls_x509write_crt_set_ext_key_usage (3.x does), so
 * the extension is written with mbedtls_x509write_crt_set_extension.
 */
static const unsigned char eku_client_auth[] = { 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
						 0x01, 0x05, 0x05, 0x07, 0x03, 0x02 };

int issue_new_key(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg)
{
	if (mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0)
		return GD_ENOMEM;
	if (mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key),
				mbedtls_ctr_drbg_random, drbg) != 0)
		return GD_EINVAL;
	return 0;
}

/* "YYYYMMDDhhmmss" of UTC seconds 't', as mbedtls_x509write_crt_set_validity wants. */
static bool x509_time(int64_t t, char out[16])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1950)
		return false;
	return strftime(out, 16, "%Y%m%d%H%M%S", &tm) == 14;
}

int issue_cert(mbedtls_pk_context *subject, const struct cert_spec *spec,
	       mbedtls_pk_context *issuer_key, const mbedtls_x509_crt *issuer,
	       mbedtls_ctr_drbg_context *drbg, char *pem, size_t cap,
	       uint8_t serial_out[SERVICE_SERIAL_LEN])
{
	mbedtls_x509write_cert crt;
	mbedtls_mpi serial;
	unsigned char serial_bytes[SERVICE_SERIAL_LEN];
	char subject_name[128], issuer_name[256], from[16], to[16];
	int rc = GD_EINVAL;

	mbedtls_x509write_crt_init(&crt);
	mbedtls_mpi_init(&serial);
	if (snprintf(subject_name, sizeof(subject_name), "CN=%s", spec->cn) >=
	    (int)sizeof(subject_name))
		goto out;
	if (issuer == NULL)
		snprintf(issuer_name, sizeof(issuer_name), "%s", subject_name);
	else if (mbedtls_x509_dn_gets(issuer_name, sizeof(issuer_name), &issuer->subject) < 0)
		goto out;
	if (!x509_time(spec->not_before_s, from) || !x509_time(spec->not_after_s, to))
		goto out;
	if (mbedtls_ctr_drbg_random(drbg, serial_bytes, sizeof(serial_bytes)) != 0)
		goto out;
	serial_bytes[0] &= 0x7f; /* positive */
	serial_bytes[0] |= 0x40; /* and 16 bytes long, always */
	if (mbedtls_mpi_read_binary(&serial, serial_bytes, sizeof(serial_bytes)) != 0)
		goto out;

	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, subject);
	mbedtls_x509write_crt_set_issuer_key(&crt, issuer_key);
	if (mbedtls_x509write_crt_set_serial(&crt, &serial) != 0 ||
	    mbedtls_x509write_crt_set_subject_name(&crt, subject_name) != 0 ||
	    mbedtls_x509write_crt_set_issuer_name(&crt, issuer_name) != 0 ||
	    mbedtls_x509write_crt_set_validity(&crt, from, to) != 0 ||
	    mbedtls_x509write_crt_set_basic_constraints(&crt, spec->is_ca ? 1 : 0,
							spec->is_ca ? 0 : -1) != 0 ||
	    mbedtls_x509write_crt_set_subject_key_identifier(&crt) != 0 ||
	    mbedtls_x509write_crt_set_authority_key_identifier(&crt) != 0)
		goto out;
	if (spec->is_ca) {
		if (mbedtls_x509write_crt_set_key_usage(
			    &crt, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN) != 0)
			goto out;
	} else {
		if (mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) !=
		    0)
			goto out;
		if (spec->client_auth && mbedtls_x509write_crt_set_extension(
						 &crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
						 MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE),
						 0, eku_client_auth, sizeof(eku_client_auth)) != 0)
			goto out;
	}
	if (mbedtls_x509write_crt_pem(&crt, (unsigned char *)pem, cap, mbedtls_ctr_drbg_random,
				      drbg) != 0) {
		rc = GD_EFULL;
		goto out;
	}
	if (serial_out != NULL)
		memcpy(serial_out, serial_bytes, sizeof(serial_bytes));
	rc = 0;
out:
	mbedtls_mpi_free(&serial);
	mbedtls_x509write_crt_free(&crt);
	return rc;
}

int issue_ca_load(struct service_ca *ca, const char *dir, const char *base, char *why, size_t cap)
{
	char crt_path[4096], key_path[4096];
	int err;

	mbedtls_x509_crt_init(&ca->crt);
	mbedtls_pk_init(&ca->key);
	ca->evp_crt = NULL;
	ca->evp_key = NULL;
	if (snprintf(crt_path, sizeof(crt_path), "%s/%s.crt", dir, base) >= (int)sizeof(crt_path) ||
	    snprintf(key_path, sizeof(key_path), "%s/%s.key", dir, base) >= (int)sizeof(key_path)) {
		snprintf(why, cap, "%s: path too long", dir);
		return GD_EINVAL;
	}
	err = mbedtls_x509_crt_parse_file(&ca->crt, crt_path);
	if (err != 0) {
		char msg[128];

		mbedtls_strerror(err, msg, sizeof(msg));
		snprintf(why, cap, "%s: cannot load the certificate: %s", crt_path, msg);
		return GD_EIO;
	}
	err = mbedtls_pk_parse_keyfile(&ca->key, key_path, NULL);
	if (err != 0) {
		char msg[128];

		mbedtls_strerror(err, msg, sizeof(msg));
		snprintf(why, cap, "%s: cannot load the key: %s", key_path, msg);
		return GD_EIO;
	}
	if (mbedtls_pk_check_pair(&ca->crt.pk, &ca->key) != 0) {
		snprintf(why, cap, "%s: the key does not belong to %s", key_path, crt_path);
		return GD_EINVAL;
	}
	return 0;
}

void issue_ca_free(struct service_ca *ca)
{
	mbedtls_x509_crt_free(&ca->crt);
	mbedtls_pk_free(&ca->key);
	X509_free(ca->evp_crt);
	EVP_PKEY_free(ca->evp_key);
	ca->evp_crt = NULL;
	ca->evp_key = NULL;
}
