/* registry.c: enrollment: a device's CSR becomes its identity certificate and devices/<name>.crt.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_csr.h>

#include "service.h"

char *registry_lookup(const char *dir, const char *name)
{
	char path[4096];

	if (!conf_valid_name(name)) {
		errno = EINVAL;
		return NULL;
	}
	if (snprintf(path, sizeof(path), "%s/devices/%s.crt", dir, name) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	return gd_read_file(path);
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

int registry_enroll(struct service *s, const char *csr_pem, bool replace, char name[64],
		    char **cert_pem, char *why, size_t cap)
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
