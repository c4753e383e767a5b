/* crl.c: the operational CA's certificate revocation list (X.509 v2, RFC 5280 section 5) in DER,
 * signed with ECDSA SHA-256 and written as PEM: mbedTLS parses CRLs but cannot write them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>

#include "service.h"

#define CRL_OID_REASON	      MBEDTLS_OID_ID_CE "\x15" /* id-ce-cRLReasons (2.5.29.21) */
#define CRL_REASON_SUPERSEDED 4
#define CRL_REASON_WITHDRAWN  9	 /* privilegeWithdrawn */
#define CRL_ENTRY_MAX	      64 /* DER bytes of one revoked certificate, at most */
#define CRL_PEM_BEGIN	      "-----BEGIN X509 CRL-----\n"
#define CRL_PEM_END	      "-----END X509 CRL-----\n"

/* Most functions below write backwards, as mbedtls_asn1_write_* do, and return the bytes
 * written or a negative mbedTLS error (MBEDTLS_ASN1_CHK_ADD returns it). */

/* The tag and length in front of 'len' bytes already written. Returns the bytes of both. */
static int wrap(unsigned char **p, unsigned char *start, size_t len, unsigned char tag)
{
	int ret;
	size_t n = 0;

	MBEDTLS_ASN1_CHK_ADD(n, mbedtls_asn1_write_len(p, start, len));
	MBEDTLS_ASN1_CHK_ADD(n, mbedtls_asn1_write_tag(p, start, tag));
	return (int)n;
}

#define SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

/* An INTEGER of the unsigned big-endian 'bytes' (a 0 in front when the top bit is set). */
static int write_uint_bytes(unsigned char **p, unsigned char *start, const uint8_t *bytes, size_t n)
{
	int ret;
	size_t len = 0;

	while (n > 1 && bytes[0] == 0) {
		bytes++;
		n--;
	}
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(p, start, bytes, n));
	if (bytes[0] & 0x80)
		MBEDTLS_ASN1_CHK_ADD(
			len, mbedtls_asn1_write_raw_buffer(p, start, (const uint8_t *)"", 1));
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, MBEDTLS_ASN1_INTEGER));
	return (int)len;
}

static int write_uint64(unsigned char **p, unsigned char *start, uint64_t v)
{
	uint8_t be[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		be[i] = (uint8_t)v;
	return write_uint_bytes(p, start, be, sizeof(be));
}

/* UTCTime for 1950 to 2049, GeneralizedTime after, as RFC 5280 4.1.2.5 says. */
static int write_time(unsigned char **p, unsigned char *start, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char text[20];
	bool utc;
	size_t n;

	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 < 1950 || tm.tm_year + 1900 > 9999)
		return MBEDTLS_ERR_ASN1_INVALID_DATA;
	utc = tm.tm_year + 1900 < 2050;
	n = strftime(text, sizeof(text), "%Y%m%d%H%M%SZ", &tm);
	if (n != 15)
		return MBEDTLS_ERR_ASN1_INVALID_DATA;
	/* UTCTime is the same without the century */
	return mbedtls_asn1_write_tagged_string(
		p, start, utc ? MBEDTLS_ASN1_UTC_TIME : MBEDTLS_ASN1_GENERALIZED_TIME,
		utc ? text + 2 : text, utc ? n - 2 : n);
}

/* Extension ::= SEQUENCE { extnID, extnValue OCTET STRING } around the 'len' bytes written.
 * Returns the bytes of the whole extension. */
static int write_extension(unsigned char **p, unsigned char *start, const char *oid, size_t oid_len,
			   size_t len)
{
	int ret;

	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, MBEDTLS_ASN1_OCTET_STRING));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(p, start, oid, oid_len));
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	return (int)len;
}

/* SEQUENCE { userCertificate, revocationDate, crlEntryExtensions { reasonCode } } */
static int write_entry(unsigned char **p, unsigned char *start, const struct crl_entry *e)
{
	int ret;
	size_t len = 0, ext = 0;

	MBEDTLS_ASN1_CHK_ADD(ext, mbedtls_asn1_write_enum(p, start,
							  e->reason == REVOKE_SUPERSEDED
								  ? CRL_REASON_SUPERSEDED
								  : CRL_REASON_WITHDRAWN));
	MBEDTLS_ASN1_CHK_ADD(len, write_extension(p, start, CRL_OID_REASON,
						  MBEDTLS_OID_SIZE(CRL_OID_REASON), ext));
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	MBEDTLS_ASN1_CHK_ADD(len, write_time(p, start, e->revoked_s));
	MBEDTLS_ASN1_CHK_ADD(len, write_uint_bytes(p, start, e->serial, sizeof(e->serial)));
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	return (int)len;
}

/* The issuer's key identifier as RFC 5280 4.2.1.2 (1) and mbedTLS make it: SHA-1 of its key. */
static int key_id(const mbedtls_x509_crt *issuer, uint8_t id[20])
{
	unsigned char buf[200], *c = buf + sizeof(buf);
	int n = mbedtls_pk_write_pubkey(&c, buf, &issuer->pk);

	if (n <= 0)
		return n < 0 ? n : MBEDTLS_ERR_ASN1_INVALID_DATA;
	return mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1), c, (size_t)n, id);
}

/* crlExtensions [0] { authorityKeyIdentifier { [0] keyIdentifier }, cRLNumber } */
static int write_crl_extensions(unsigned char **p, unsigned char *start,
				const mbedtls_x509_crt *issuer, uint64_t number)
{
	uint8_t id[20];
	int ret;
	size_t len = 0, ext = 0;

	MBEDTLS_ASN1_CHK_ADD(ext, write_uint64(p, start, number));
	MBEDTLS_ASN1_CHK_ADD(len, write_extension(p, start, MBEDTLS_OID_CRL_NUMBER,
						  MBEDTLS_OID_SIZE(MBEDTLS_OID_CRL_NUMBER), ext));
	if (key_id(issuer, id) == 0) {
		ext = 0;
		MBEDTLS_ASN1_CHK_ADD(ext, mbedtls_asn1_write_raw_buffer(p, start, id, sizeof(id)));
		MBEDTLS_ASN1_CHK_ADD(ext, wrap(p, start, ext, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0));
		MBEDTLS_ASN1_CHK_ADD(ext, wrap(p, start, ext, SEQ));
		MBEDTLS_ASN1_CHK_ADD(
			len, write_extension(p, start, MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER,
					     MBEDTLS_OID_SIZE(MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER),
					     ext));
	}
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	MBEDTLS_ASN1_CHK_ADD(
		len,
		wrap(p, start, len, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0));
	return (int)len;
}

/* AlgorithmIdentifier { ecdsa-with-SHA256 }, parameters absent (RFC 5758 3.2). */
static int write_sig_alg(unsigned char **p, unsigned char *start)
{
	int ret;
	size_t len = 0;

	MBEDTLS_ASN1_CHK_ADD(len,
			     mbedtls_asn1_write_oid(p, start, MBEDTLS_OID_ECDSA_SHA256,
						    MBEDTLS_OID_SIZE(MBEDTLS_OID_ECDSA_SHA256)));
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	return (int)len;
}

/* TBSCertList: version v2, signature, issuer, thisUpdate, nextUpdate, revoked, extensions. */
static int write_tbs(unsigned char **p, unsigned char *start, const mbedtls_x509_crt *issuer,
		     const struct crl_entry *entries, size_t n, int64_t now_ms)
{
	int64_t now_s = now_ms / 1000;
	int ret;
	size_t len = 0;

	MBEDTLS_ASN1_CHK_ADD(len, write_crl_extensions(p, start, issuer, (uint64_t)now_ms));
	if (n > 0) { /* absent, not empty, when nothing is revoked (5.1.2.6) */
		size_t list = 0;

		for (size_t i = n; i-- > 0;)
			MBEDTLS_ASN1_CHK_ADD(list, write_entry(p, start, &entries[i]));
		MBEDTLS_ASN1_CHK_ADD(list, wrap(p, start, list, SEQ));
		len += list;
	}
	MBEDTLS_ASN1_CHK_ADD(len, write_time(p, start, now_s + SERVICE_CRL_VALID_S));
	MBEDTLS_ASN1_CHK_ADD(len, write_time(p, start, now_s - SERVICE_SKEW_S));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(p, start, issuer->subject_raw.p,
								issuer->subject_raw.len));
	MBEDTLS_ASN1_CHK_ADD(len, write_sig_alg(p, start));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_int(p, start, 1)); /* v2 */
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	return (int)len;
}

/* CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue } */
static int write_signed(unsigned char **p, unsigned char *start, const unsigned char *tbs,
			size_t tbs_len, const unsigned char *sig, size_t sig_len)
{
	int ret;
	size_t len = 0;

	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_bitstring(p, start, sig, sig_len * 8));
	MBEDTLS_ASN1_CHK_ADD(len, write_sig_alg(p, start));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(p, start, tbs, tbs_len));
	MBEDTLS_ASN1_CHK_ADD(len, wrap(p, start, len, SEQ));
	return (int)len;
}

int crl_write(const char *path, const mbedtls_x509_crt *issuer, mbedtls_pk_context *key,
	      mbedtls_ctr_drbg_context *drbg, const struct crl_entry *entries, size_t n,
	      int64_t now_ms, char *why, size_t cap)
{
	size_t der_cap = 1024 + issuer->subject_raw.len + n * CRL_ENTRY_MAX;
	size_t pem_cap = der_cap * 2 + 64, sig_len = 0, olen;
	unsigned char *tbs_buf = malloc(der_cap), *der_buf = malloc(der_cap + 256);
	unsigned char *pem = malloc(pem_cap), *p;
	unsigned char hash[32], sig[MBEDTLS_ECDSA_MAX_LEN];
	int tbs_len, der_len, rc = GD_ENOMEM;

	if (tbs_buf == NULL || der_buf == NULL || pem == NULL) {
		snprintf(why, cap, "out of memory for a CRL of %zu entries", n);
		goto out;
	}
	rc = GD_EINVAL;
	if (!mbedtls_pk_can_do(key, MBEDTLS_PK_ECDSA)) {
		snprintf(why, cap, "the CRL is signed with ECDSA: the CA's key is %s",
			 mbedtls_pk_get_name(key));
		goto out;
	}
	p = tbs_buf + der_cap;
	tbs_len = write_tbs(&p, tbs_buf, issuer, entries, n, now_ms);
	if (tbs_len < 0) {
		snprintf(why, cap, "cannot encode the CRL (-0x%04x)", (unsigned)-tbs_len);
		goto out;
	}
	if (mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), p, (size_t)tbs_len, hash) !=
		    0 ||
	    mbedtls_pk_sign(key, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len,
			    mbedtls_ctr_drbg_random, drbg) != 0) {
		snprintf(why, cap, "cannot sign the CRL with the operational CA's key");
		goto out;
	}
	{
		unsigned char *q = der_buf + der_cap + 256;

		der_len = write_signed(&q, der_buf, p, (size_t)tbs_len, sig, sig_len);
		if (der_len < 0 ||
		    mbedtls_pem_write_buffer(CRL_PEM_BEGIN, CRL_PEM_END, q, (size_t)der_len, pem,
					     pem_cap, &olen) != 0) {
			snprintf(why, cap, "cannot encode the signed CRL");
			goto out;
		}
	}
	rc = gd_write_file_atomic(path, pem, strlen((char *)pem), 0644);
	if (rc != 0)
		snprintf(why, cap, "%s: cannot write: %s", path, strerror(errno));
out:
	free(pem);
	free(der_buf);
	free(tbs_buf);
	return rc;
}
