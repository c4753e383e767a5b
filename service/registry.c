/* registry.c: enrollment: a device's CSR becomes its identity certificate and devices/<name>.crt;
 * a TPM attestation key enrolled with it is devices/<name>.ak.pem. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_csr.h>

#include "service.h"

/* devices/<name><suffix> of 'dir' into 'path' (4096 bytes); false with errno if it cannot be. */
static bool device_path(char *path, const char *dir, const char *name, const char *suffix)
{
	if (!conf_valid_name(name)) {
		errno = EINVAL;
		return false;
	}
	if (snprintf(path, 4096, "%s/devices/%s%s", dir, name, suffix) >= 4096) {
		errno = ENAMETOOLONG;
		return false;
	}
	return true;
}

char *registry_lookup(const char *dir, const char *name)
{
	char path[4096];

	return device_path(path, dir, name, ".crt") ? gd_read_file(path) : NULL;
}

char *registry_lookup_ak(const char *dir, const char *name)
{
	char path[4096];

	return device_path(path, dir, name, ".ak.pem") ? gd_read_file(path) : NULL;
}

/* The CN of 'name' into 'out' (64 bytes); false if there is none or it is too long. */
static bool subject_cn(const mbedtls_x509_name *name, char out[64])
{
	for (; name != NULL; name = name->next) {
		if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &name->oid) != 0)
			continue;
		if (name->val.len == 0 || name->val.len > 63)
			return false;
		memcpy(out, name->val.p, name->val.len);
		out[name->val.len] = '\0';
		return strlen(out) == name->val.len;
	}
	return false;
}

/* Whether the key of 'cert_pem' equals 'pk': the same UEID, the hash of the same public key. */
static bool same_key(const char *cert_pem, mbedtls_pk_context *pk)
{
	uint8_t a[UEID_LEN], b[UEID_LEN];

	return evidence_ueid(cert_pem, a) == 0 && evidence_ueid_of_key(pk, b) == 0 &&
	       memcmp(a, b, UEID_LEN) == 0;
}

/* Whether two PEM public keys are the same key (their UEIDs: the hash of the DER). */
static bool same_pub(const char *a_pem, const char *b_pem)
{
	uint8_t a[UEID_LEN], b[UEID_LEN];

	return evidence_ueid(a_pem, a) == 0 && evidence_ueid(b_pem, b) == 0 &&
	       memcmp(a, b, UEID_LEN) == 0;
}

/*
 * The attestation key part of enrolling 'name': 'ak_pem' (or none) against what is enrolled.
 * Another AK than the enrolled one needs 'replace'. A replacement without an AK is refused: it
 * would quietly take the device out of TPM mode. 0, or GD_EDENIED / GD_EIO with 'why'.
 */
static int ak_allowed(struct service *s, const char *name, const char *ak_pem, bool replace,
		      char *why, size_t cap)
{
	char *old = registry_lookup_ak(s->dir, name);
	int rc = 0;

	if (old == NULL && errno != ENOENT) {
		snprintf(why, cap, "%s/devices/%s.ak.pem: cannot read: %s", s->dir, name,
			 strerror(errno));
		return GD_EIO;
	}
	if (old != NULL && ak_pem != NULL && !same_pub(old, ak_pem) && !replace) {
		snprintf(why, cap,
			 "%s is already enrolled with another attestation key (devices/%s.ak.pem); "
			 "use --replace to enroll the new one instead",
			 name, name);
		rc = GD_EDENIED;
	}
	if (old != NULL && ak_pem == NULL && replace) {
		snprintf(why, cap,
			 "%s is enrolled with a TPM attestation key (devices/%s.ak.pem); give the "
			 "new one with --ak, or remove that file first to enroll %s without one",
			 name, name, name);
		rc = GD_EDENIED;
	}
	free(old);
	return rc;
}

int registry_enroll(struct service *s, const char *csr_pem, bool replace, char name[64],
		    char **cert_pem, char *why, size_t cap)
{
	return registry_enroll_ak(s, csr_pem, NULL, replace, name, cert_pem, why, cap);
}

int registry_enroll_ak(struct service *s, const char *csr_pem, const char *ak_pem, bool replace,
		       char name[64], char **cert_pem, char *why, size_t cap)
{
	mbedtls_x509_csr csr;
	const mbedtls_md_info_t *md;
	unsigned char hash[MBEDTLS_MD_MAX_SIZE];
	char pem[SERVICE_PEM_MAX], path[4096], msg[128];
	char *old = NULL;
	int64_t now = s->now_ms() / 1000;
	int err, rc = GD_EINVAL;

	*cert_pem = NULL;
	name[0] = '\0';
	mbedtls_x509_csr_init(&csr);
	if (ak_pem != NULL && !tpm_quote_ak_valid(ak_pem, msg, sizeof(msg))) {
		snprintf(why, cap, "%s (expected the device's identity-ak.pem)", msg);
		goto out;
	}
	err = mbedtls_x509_csr_parse(&csr, (const unsigned char *)csr_pem, strlen(csr_pem) + 1);
	if (err != 0) {
		mbedtls_strerror(err, msg, sizeof(msg));
		snprintf(why, cap, "not a PKCS#10 certificate request: %s", msg);
		goto out;
	}
	md = mbedtls_md_info_from_type(csr.sig_md);
	if (md == NULL || mbedtls_md(md, csr.cri.p, csr.cri.len, hash) != 0 ||
	    mbedtls_pk_verify_ext(csr.sig_pk, csr.sig_opts, &csr.pk, csr.sig_md, hash,
				  mbedtls_md_get_size(md), csr.sig.p, csr.sig.len) != 0) {
		snprintf(why, cap, "the request's signature does not verify with its own key");
		goto out;
	}
	if (!subject_cn(&csr.subject, name) || !conf_valid_name(name)) {
		snprintf(why, cap,
			 "the request's subject CN is missing or not a device name (expected 1 to "
			 "63 of A-Z a-z 0-9 _ . -)");
		name[0] = '\0';
		goto out;
	}
	if (!evidence_key_is_p256(&csr.pk)) {
		snprintf(why, cap, "%s: the request's key is %s, expected an EC P-256 key", name,
			 mbedtls_pk_get_name(&csr.pk));
		goto out;
	}
	old = registry_lookup(s->dir, name);
	if (old != NULL && !same_key(old, &csr.pk) && !replace) {
		snprintf(why, cap,
			 "%s is already enrolled with another key (devices/%s.crt); use --replace "
			 "to enroll the new key instead",
			 name, name);
		rc = GD_EDENIED;
		goto out;
	}
	rc = ak_allowed(s, name, ak_pem, replace, why, cap);
	if (rc != 0)
		goto out;
	/* The key first: a failure after it leaves the device stricter, never laxer. */
	if (ak_pem != NULL) {
		snprintf(path, sizeof(path), "%s/devices/%s.ak.pem", s->dir, name);
		rc = gd_write_file_atomic(path, ak_pem, strlen(ak_pem), 0644);
		if (rc != 0) {
			snprintf(why, cap, "%s: cannot write: %s", path, strerror(errno));
			goto out;
		}
	}
	rc = issue_cert(
		&csr.pk,
		&(struct cert_spec){ .cn = name,
				     .not_before_s = now - SERVICE_SKEW_S,
				     .not_after_s = now + (int64_t)SERVICE_IDENTITY_DAYS * 86400,
				     .client_auth = true },
		&s->mfg_ca.key, &s->mfg_ca.crt, &s->drbg, pem, sizeof(pem), NULL);
	if (rc != 0) {
		snprintf(why, cap, "%s: cannot sign the identity certificate: %s", name,
			 gd_strerror(rc));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/devices/%s.crt", s->dir, name);
	rc = gd_write_file_atomic(path, pem, strlen(pem), 0644);
	if (rc != 0) {
		snprintf(why, cap, "%s: cannot write: %s", path, strerror(errno));
		goto out;
	}
	*cert_pem = strdup(pem);
	if (*cert_pem == NULL) {
		snprintf(why, cap, "out of memory");
		rc = GD_ENOMEM;
	}
out:
	free(old);
	mbedtls_x509_csr_free(&csr);
	return rc;
}
