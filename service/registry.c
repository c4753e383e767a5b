/* registry.c: enrollment: a device's CSR becomes its identity certificate, registered in the
 * store with the TPM attestation key enrolled with it, if any. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_csr.h>

#include "service.h"

/* The certificate (want_ak false) or the attestation key of 'name', errno as registry_lookup. */
static char *lookup(struct store *st, const char *name, bool want_ak)
{
	char why[512], *cert = NULL, *ak = NULL;
	int rc;

	if (name == NULL || !conf_valid_name(name) || name[0] == '.') {
		errno = EINVAL;
		return NULL;
	}
	rc = store_device_get(st, name, want_ak ? NULL : &cert, want_ak ? &ak : NULL, why,
			      sizeof(why));
	if (rc < 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		errno = rc == GD_EINVAL ? EINVAL : EIO;
		return NULL;
	}
	if (rc == STORE_NOTFOUND || (want_ak && ak == NULL)) {
		errno = ENOENT;
		return NULL;
	}
	return want_ak ? ak : cert;
}

char *registry_lookup(struct store *st, const char *name)
{
	return lookup(st, name, false);
}

char *registry_lookup_ak(struct store *st, const char *name)
{
	return lookup(st, name, true);
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
	char *old = registry_lookup_ak(s->store, name);
	int rc = 0;

	if (old == NULL && errno != ENOENT) {
		snprintf(why, cap, "%s: cannot read its attestation key from the store (%s)", name,
			 store_backend_name(s->cfg.store.backend));
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
	char pem[SERVICE_PEM_MAX], msg[128];
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
	old = registry_lookup(s->store, name);
	if (old == NULL && errno != ENOENT) {
		snprintf(why, cap, "%s: cannot read its certificate from the store (%s)", name,
			 store_backend_name(s->cfg.store.backend));
		rc = GD_EIO;
		goto out;
	}
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
	/* The store writes the key first: a failure between leaves the device stricter. */
	rc = store_device_put(s->store, name, pem, ak_pem, why, cap);
	if (rc != 0)
		goto out;
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
