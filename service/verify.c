/* verify.c: the attestation protocol without MQTT: a nonce for a hello; for evidence, the checks
 * of PROTOCOL.md in order (TPM evidence for a device enrolled with an attestation key) and, when
 * all pass, the operational certificate. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "service.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int service_handle_hello(struct service *s, const char *dev, const char *json, size_t len,
			 char **nonce_json)
{
	uint8_t nonce[NONCE_LEN];
	int64_t now = s->now_ms();
	int rc;

	(void)json; /* {"swversion":...}: nothing in it changes the answer */
	(void)len;
	*nonce_json = NULL;
	if (!conf_valid_name(dev))
		return GD_EINVAL;
	rc = nonce_make(s, dev, now, nonce);
	if (rc != 0)
		return rc;
	*nonce_json = attest_nonce_build(nonce, now + (int64_t)s->cfg.nonce_ttl_s * 1000);
	if (*nonce_json == NULL)
		return GD_ENOMEM;
	log_debug(SERVICE_SUBSYS, "%s: hello: nonce sent", dev);
	return 0;
}

/* Loads the references again when the store's generation moved (one added or removed). */
static void refresh_references(struct service *s)
{
	struct service_reference *refs;
	char why[512];
	uint64_t gen;
	size_t n;

	if (store_reference_generation(s->store, &gen, why, sizeof(why)) != 0) {
		log_warnx(SERVICE_SUBSYS, "%s; keeping the references loaded", why);
		return;
	}
	if (s->refs_loaded && gen == s->refs_gen)
		return;
	if (reference_load_all(s->store, &refs, &n) != 0) {
		log_warnx(SERVICE_SUBSYS, "cannot load the references; keeping the old ones");
		return;
	}
	free(s->refs);
	s->refs = refs;
	s->nrefs = n;
	s->refs_gen = gen;
	s->refs_loaded = true;
}

/* Records a refusal in 'res'. */
static void refuse(struct attest_result *res, enum service_reason r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void refuse(struct attest_result *res, enum service_reason r, const char *fmt, ...)
{
	va_list ap;

	res->ok = false;
	snprintf(res->reason, sizeof(res->reason), "%s", service_reason_name(r));
	va_start(ap, fmt);
	vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
	va_end(ap);
}

/* The refusal of a nonce used before ('dup': by this very evidence). */
static void refuse_replayed(struct attest_result *res, bool dup)
{
	refuse(res, REASON_REPLAYED_NONCE, "the nonce was used before%s",
	       dup ? " (by this very evidence, delivered again)" : "");
}

/* The 16-byte tag of one evidence message: SHA-256 of its signature, cut. */
static void delivery_tag(const uint8_t *sig, size_t siglen, uint8_t tag[16])
{
	uint8_t full[32];

	mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), sig, siglen, full);
	memcpy(tag, full, 16);
}

/*
 * Whether a refusal revokes the device's certificates: not for evidence that does not parse
 * or names no enrolled device (it proves nothing about a device), nor for evidence already
 * answered, delivered again (the transport's doing, not the device's).
 */
static bool refusal_revokes(const struct attest_result *res, bool dup)
{
	return !res->ok && !dup &&
	       strcmp(res->reason, service_reason_name(REASON_MALFORMED)) != 0 &&
	       strcmp(res->reason, service_reason_name(REASON_UNKNOWN_DEVICE)) != 0;
}

/* The quote's signature, checked as every signature here is (ecdsa.c). */
static bool quote_sig(mbedtls_pk_context *pk, const uint8_t digest[32], const uint8_t *sig,
		      size_t siglen)
{
	return service_ecdsa_verify(pk, digest, sig, siglen);
}

/* Check 3 in file mode: 'sig' over SHA-256(claims) by the key of the enrolled certificate. */
static bool identity_signed(mbedtls_x509_crt *crt, const char *claims, const uint8_t *sig,
			    size_t siglen)
{
	uint8_t digest[32];

	/* ES256 means P-256: a certificate with another key is not the device's. */
	if (!evidence_key_is_p256(&crt->pk))
		return false;
	mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const uint8_t *)claims,
		   strlen(claims), digest);
	return service_ecdsa_verify(&crt->pk, digest, sig, siglen);
}

/*
 * Check 3 for a device enrolled with an attestation key: a quote, by that key, of these claims.
 * Returns false with the refusal in 'res'; a fault of the PCR is for after check 5, so it goes
 * to *pcr_fault with its sentence in 'pcr_why' (TPM_QUOTE_OK if none).
 */
static bool tpm_signed(struct attest_result *res, const char *dev, const struct evidence *ev,
		       const char *claims, const uint8_t *quote, size_t quote_len,
		       const uint8_t *sig, size_t siglen, const char *ak,
		       enum tpm_quote_fault *pcr_fault, char *pcr_why, size_t cap)
{
	uint8_t digest[32];
	char why[256] = "";
	enum tpm_quote_fault f;

	*pcr_fault = TPM_QUOTE_OK;
	if (quote_len == 0) {
		refuse(res, REASON_BAD_SIGNATURE,
		       "enrolled with a TPM attestation key; evidence must carry a quote");
		return false;
	}
	if (!ev->tpm) {
		refuse(res, REASON_BAD_SIGNATURE,
		       "enrolled with a TPM attestation key; the claims must name the quoted PCR "
		       "(\"tpm\":{\"pcr\":N})");
		return false;
	}
	mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const uint8_t *)claims,
		   strlen(claims), digest);
	f = tpm_quote_check_with(quote, quote_len, sig, siglen, ak, digest, ev->tpm_pcr,
				 ev->log.reg, quote_sig, why, sizeof(why));
	if (f == TPM_QUOTE_BAD_SIGNATURE) {
		refuse(res, REASON_BAD_SIGNATURE,
		       "the quote's signature does not verify with the attestation key enrolled "
		       "for %s",
		       dev);
		return false;
	}
	if (f == TPM_QUOTE_BAD_KEY) {
		refuse(res, REASON_BAD_SIGNATURE, "devices/%s.ak.pem: %s", dev, why);
		return false;
	}
	if (f != TPM_QUOTE_OK && !tpm_quote_fault_is_pcr(f)) {
		refuse(res, REASON_BAD_SIGNATURE, "%s", why);
		return false;
	}
	*pcr_fault = f;
	snprintf(pcr_why, cap, "%s", why);
	return true;
}

int service_verify(struct service *s, const char *dev, const char *json, size_t len,
		   struct attest_result *res, bool *duplicate)
{
	struct evidence *ev = malloc(sizeof(*ev));
	struct meas_log *effective = malloc(sizeof(*effective));
	uint8_t *quote = malloc(EVIDENCE_QUOTE_MAX);
	mbedtls_pk_context op_key;
	mbedtls_x509_crt id_crt; /* the enrolled identity certificate, parsed once */
	bool id_parsed = false;
	uint8_t sig[EVIDENCE_SIG_MAX], tag[16], ueid[UEID_LEN], reg[32];
	uint8_t serial[SERVICE_SERIAL_LEN];
	char why[256], pcr_why[256], pem[SERVICE_PEM_MAX], hex_a[65], hex_b[65];
	char *claims = NULL, *cert = NULL, *ak = NULL;
	size_t siglen = 0, quote_len = 0;
	enum tpm_quote_fault pcr_fault = TPM_QUOTE_OK;
	bool dup = false, nonce_fresh = false, recorded = false;
	struct store_attest rec = { .dev = dev, .tag = tag };
	char installed[256];
	int64_t now_ms = s->now_ms(), now_s = now_ms / 1000;
	uint64_t t0 = mono_ns(), t1;
	int rc = 0, nonce_rc, found;

	*res = (struct attest_result){ .ok = false };
	mbedtls_pk_init(&op_key);
	mbedtls_x509_crt_init(&id_crt);
	if (ev == NULL || effective == NULL || quote == NULL) {
		rc = GD_ENOMEM;
		goto out;
	}
	/* 1. the envelope and the claims */
	why[0] = '\0';
	if (evidence_envelope_parse_quote(json, len, ev, &claims, sig, &siglen, quote, &quote_len,
					  why, sizeof(why)) != 0) {
		refuse(res, REASON_MALFORMED, "%s", why[0] ? why : "the evidence does not parse");
		goto decided;
	}
	if (strcmp(ev->name, dev) != 0) {
		refuse(res, REASON_MALFORMED,
		       "the evidence names \"%s\" but arrived on the topic of \"%s\"", ev->name,
		       dev);
		goto decided;
	}
	/* 2. enrolled: its certificate and attestation key, in one read of the store */
	found = conf_valid_name(dev) && dev[0] != '.'
			? store_device_get(s->store, dev, &cert, &ak, why, sizeof(why))
			: STORE_NOTFOUND;
	if (found < 0) {
		log_warnx(SERVICE_SUBSYS, "%s: cannot read its enrollment: %s", dev, why);
		rc = GD_EIO;
		goto out;
	}
	if (found == STORE_NOTFOUND) {
		refuse(res, REASON_UNKNOWN_DEVICE, "%s is not enrolled (guardian-service enroll)",
		       dev);
		goto decided;
	}
	/* 3. signed by the enrolled identity key, which the ueid names; with an attestation key,
	 * quoted by it over these claims (the identity key then signs no evidence). A certificate
	 * that does not parse verifies nothing and names no key. */
	id_parsed = mbedtls_x509_crt_parse(&id_crt, (const uint8_t *)cert, strlen(cert) + 1) == 0;
	if (ak != NULL) {
		if (!tpm_signed(res, dev, ev, claims, quote, quote_len, sig, siglen, ak, &pcr_fault,
				pcr_why, sizeof(pcr_why)))
			goto decided;
	} else if (!id_parsed || !identity_signed(&id_crt, claims, sig, siglen)) {
		refuse(res, REASON_BAD_SIGNATURE,
		       "the signature does not verify with the identity key enrolled for %s", dev);
		goto decided;
	}
	if (!id_parsed || evidence_ueid_of_key(&id_crt.pk, ueid) != 0 ||
	    memcmp(ueid, ev->ueid, UEID_LEN) != 0) {
		refuse(res, REASON_BAD_SIGNATURE,
		       "the ueid is not that of the identity key enrolled for %s", dev);
		goto decided;
	}
	/* 4. the nonce: ours, for this device, fresh; unused is decided where it is marked used,
	 * with the decision, in one transaction (revoke_record_decision, below) */
	delivery_tag(sig, siglen, tag);
	nonce_rc = nonce_verify(s, dev, ev->nonce, now_ms);
	if (nonce_rc < 0) {
		rc = nonce_rc;
		goto out;
	}
	if (nonce_rc == REASON_BAD_NONCE) {
		refuse(res, REASON_BAD_NONCE, "the nonce was not issued by this service for %s",
		       dev);
		goto decided;
	}
	if (nonce_rc == REASON_STALE_NONCE) {
		refuse(res, REASON_STALE_NONCE, "the nonce is older than %d s", s->cfg.nonce_ttl_s);
		goto decided;
	}
	nonce_fresh = true;
	rec.nonce = ev->nonce;
	rec.nonce_ts_ms = nonce_time_ms(ev->nonce);
	rec.now_s = now_s;
	/* 5. the measurements fold into the register */
	meas_fold(&ev->log, reg);
	if (memcmp(reg, ev->log.reg, sizeof(reg)) != 0) {
		gd_hex_encode(reg, sizeof(reg), hex_a);
		gd_hex_encode(ev->log.reg, sizeof(ev->log.reg), hex_b);
		refuse(res, REASON_REGISTER_MISMATCH,
		       "the %zu measurements fold into %.16s..., not into the register %.16s...",
		       ev->log.n, hex_a, hex_b);
		goto decided;
	}
	/* 5b. with a quote: the TPM's PCR holds that register (the quote's PCR digest) */
	if (pcr_fault != TPM_QUOTE_OK) {
		refuse(res, REASON_MEASUREMENT_MISMATCH, "%s", pcr_why);
		goto decided;
	}
	/* 6. the effective log (the last policy in force) equals a reference */
	refresh_references(s);
	reference_effective_log(&ev->log, effective);
	{
		enum service_reason r = reference_match(s->refs, s->nrefs, effective, res->detail,
							sizeof(res->detail));

		if (r != REASON_OK) {
			res->ok = false;
			snprintf(res->reason, sizeof(res->reason), "%s", service_reason_name(r));
			goto decided;
		}
	}
	/* 7. the operational key */
	if (mbedtls_pk_parse_public_key(&op_key, (const unsigned char *)ev->op_pub,
					strnlen(ev->op_pub, sizeof(ev->op_pub) - 1) + 1) != 0) {
		refuse(res, REASON_BAD_KEY, "op_pub is not a PEM public key");
		goto decided;
	}
	if (!evidence_key_is_p256(&op_key)) {
		refuse(res, REASON_BAD_KEY, "op_pub is a %s key, expected EC P-256",
		       mbedtls_pk_get_name(&op_key));
		goto decided;
	}
	/* all passed: the operational certificate */
	t1 = mono_ns();
	s->stats.verify_ns += t1 - t0;
	rc = issue_op_cert(&op_key,
			   &(struct cert_spec){ .cn = dev,
						.not_before_s = now_s - SERVICE_SKEW_S,
						.not_after_s = now_s + s->cfg.lifetime_s,
						.client_auth = true },
			   &s->op_ca, &s->drbg, pem, sizeof(pem), serial);
	s->stats.issue_ns += mono_ns() - t1;
	if (rc != 0) {
		log_warnx(SERVICE_SUBSYS, "%s: cannot sign the operational certificate: %s", dev,
			  gd_strerror(rc));
		goto out;
	}
	/* Not handed out unless recorded: a certificate the service forgot it cannot revoke. The
	 * nonce is marked used in the same transaction: of instances that got this evidence at
	 * once, one records its certificate; the others' are discarded, never answered. What the
	 * device runs (for `release status`) goes with it. */
	rec.issued = true;
	memcpy(rec.serial, serial, sizeof(rec.serial));
	rec.not_after_s = now_s + s->cfg.lifetime_s;
	if (registry_installed_json(dev, ev->swversion, now_ms, installed, sizeof(installed)) == 0)
		rec.installed_json = installed;
	else
		log_warnx(SERVICE_SUBSYS, "%s: cannot record its version (%s)", dev, ev->swversion);
	t1 = mono_ns();
	rc = revoke_record_decision(s, &rec, &dup, why, sizeof(why));
	s->stats.record_ns += mono_ns() - t1;
	if (rc < 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		log_warnx(SERVICE_SUBSYS, "%s: cannot record the operational certificate: %s", dev,
			  gd_strerror(rc));
		goto out;
	}
	if (rc == STORE_USED) {
		rc = 0;
		refuse_replayed(res, dup);
		goto counted;
	}
	res->cert_pem = strdup(pem);
	if (res->cert_pem == NULL) {
		rc = GD_ENOMEM;
		goto out;
	}
	res->ok = true;
	res->not_after = (now_s + s->cfg.lifetime_s) * 1000;
	s->stats.issued++;
	s->stats.decisions++;
	goto out;
decided:
	s->stats.verify_ns += mono_ns() - t0;
	/* Refused after the nonce's check: marked used with the refusal, which revokes (every
	 * reason after step 4 does), in one transaction; used before, the refusal is the replay. */
	if (nonce_fresh) {
		rec.revoke_refused = refusal_revokes(res, false);
		t1 = mono_ns();
		rc = revoke_record_decision(s, &rec, &dup, why, sizeof(why));
		s->stats.record_ns += mono_ns() - t1;
		if (rc < 0) {
			log_warnx(SERVICE_SUBSYS, "%s: cannot mark the nonce used: %s", dev, why);
			goto out;
		}
		recorded = rc == 0;
		if (rc == STORE_USED)
			refuse_replayed(res, dup);
		rc = 0;
	}
counted:
	s->stats.decisions++;
	if (!recorded && refusal_revokes(res, dup) && revoke_device(s, dev, REVOKE_REFUSED) < 0)
		log_warnx(SERVICE_SUBSYS, "%s: refused, but its certificates could not be revoked",
			  dev);
out:
	if (duplicate != NULL)
		*duplicate = dup;
	mbedtls_pk_free(&op_key);
	mbedtls_x509_crt_free(&id_crt);
	free(ak);
	free(cert);
	free(claims);
	free(quote);
	free(effective);
	free(ev);
	return rc;
}

int service_handle_evidence(struct service *s, const char *dev, const char *json, size_t len,
			    char **result_json)
{
	struct attest_result res;
	bool dup = false;
	int rc;

	*result_json = NULL;
	rc = service_verify(s, dev, json, len, &res, &dup);
	if (rc != 0) {
		log_warnx(SERVICE_SUBSYS, "%s: no decision: %s", dev, gd_strerror(rc));
		return rc;
	}
	if (dup && s->once_per_request) {
		log_info(SERVICE_SUBSYS, "%s: evidence delivered again; answered before, ignored",
			 dev);
		return 1;
	}
	if (res.ok) {
		time_t until = (time_t)(res.not_after / 1000);
		struct tm tm;
		char when[32] = "?";

		if (gmtime_r(&until, &tm) != NULL)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		log_info(SERVICE_SUBSYS, "%s: ok: operational certificate issued, valid until %s",
			 dev, when);
	} else
		log_info(SERVICE_SUBSYS, "%s: refused: %s: %s", dev, res.reason, res.detail);
	*result_json = attest_result_build(&res);
	attest_result_free(&res);
	return *result_json == NULL ? GD_ENOMEM : 0;
}
