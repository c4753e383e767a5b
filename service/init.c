/* init.c: `guardian-service init`: a new service directory with its CAs, keys, config, the
 * store's schema and an empty CRL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>

#include "service.h"

static const char *const ca_files[] = { "mfg-ca.key", "mfg-ca.crt", "op-ca.key", "op-ca.crt",
					NULL };

/* Writes 'n' bytes to <dir>/<name> with 'mode', never over an existing file. */
static int write_new(const char *dir, const char *name, const void *data, size_t n, unsigned mode,
		     char *why, size_t cap)
{
	char path[4096];
	int rc;

	if (!service_path(path, sizeof(path), dir, name)) {
		snprintf(why, cap, "%s: path too long", dir);
		return GD_EINVAL;
	}
	rc = gd_create_file(path, data, n, mode);
	if (rc != 0)
		snprintf(why, cap, "%s: %s", path, strerror(errno));
	return rc;
}

/* The PEM of 'key' as a new <dir>/<name>, 0600. */
static int write_key(const char *dir, const char *name, mbedtls_pk_context *key, char *why,
		     size_t cap)
{
	unsigned char pem[1024];
	int rc;

	if (mbedtls_pk_write_key_pem(key, pem, sizeof(pem)) != 0) {
		snprintf(why, cap, "%s: cannot encode the key", name);
		return GD_EINVAL;
	}
	rc = write_new(dir, name, pem, strlen((char *)pem), 0600, why, cap);
	mbedtls_platform_zeroize(pem, sizeof(pem));
	return rc;
}

static int make_subdir(const char *dir, const char *name, char *why, size_t cap)
{
	char path[4096];

	if (!service_path(path, sizeof(path), dir, name)) {
		snprintf(why, cap, "%s: path too long", dir);
		return GD_EINVAL;
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(why, cap, "%s: cannot create: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

/*
 * Makes a key and its certificate: self-signed when 'issuer' is NULL. The
 * certificate is parsed into 'out_crt' when not NULL (to sign with it next).
 */
static int make_pair(const char *dir, const char *base, const struct cert_spec *spec,
		     mbedtls_pk_context *key, mbedtls_pk_context *issuer_key,
		     const mbedtls_x509_crt *issuer, mbedtls_ctr_drbg_context *drbg,
		     mbedtls_x509_crt *out_crt, char *why, size_t cap)
{
	char pem[SERVICE_PEM_MAX], name[64];
	int rc;

	rc = issue_new_key(key, drbg);
	if (rc != 0) {
		snprintf(why, cap, "%s: cannot make a key", base);
		return rc;
	}
	rc = issue_cert(key, spec, issuer_key ? issuer_key : key, issuer, drbg, pem, sizeof(pem),
			NULL);
	if (rc != 0) {
		snprintf(why, cap, "%s: cannot sign the certificate: %s", base, gd_strerror(rc));
		return rc;
	}
	snprintf(name, sizeof(name), "%s.key", base);
	rc = write_key(dir, name, key, why, cap);
	if (rc != 0)
		return rc;
	snprintf(name, sizeof(name), "%s.crt", base);
	rc = write_new(dir, name, pem, strlen(pem), 0644, why, cap);
	if (rc != 0)
		return rc;
	if (out_crt != NULL &&
	    mbedtls_x509_crt_parse(out_crt, (const unsigned char *)pem, strlen(pem) + 1) != 0) {
		snprintf(why, cap, "%s.crt: cannot parse what was just written", base);
		return GD_EINVAL;
	}
	return 0;
}

int service_init_dir(const char *dir, const struct service_init_opts *opts, char *why, size_t cap)
{
	static const char pers[] = "guardian-service init";
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context mfg_key, op_key, svc_key;
	mbedtls_x509_crt mfg_crt, op_crt;
	struct service_config cfg;
	uint8_t secret[32];
	int64_t now = gd_now_ms() / 1000;
	int days = opts->days > 0 ? opts->days : SERVICE_CA_DAYS;
	char path[4096];
	int rc;

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_pk_init(&mfg_key);
	mbedtls_pk_init(&op_key);
	mbedtls_pk_init(&svc_key);
	mbedtls_x509_crt_init(&mfg_crt);
	mbedtls_x509_crt_init(&op_crt);

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(why, cap, "%s: cannot create: %s", dir, strerror(errno));
		rc = GD_EIO;
		goto out;
	}
	if (chmod(dir, 0700) != 0) {
		snprintf(why, cap, "%s: cannot set mode 0700: %s", dir, strerror(errno));
		rc = GD_EIO;
		goto out;
	}
	for (size_t i = 0; ca_files[i] != NULL; i++) {
		if (service_path(path, sizeof(path), dir, ca_files[i]) && access(path, F_OK) == 0) {
			snprintf(why, cap,
				 "%s already exists: refusing to overwrite a CA (use another "
				 "directory, or remove the old one on purpose)",
				 path);
			rc = GD_EINVAL;
			goto out;
		}
	}
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const unsigned char *)pers, sizeof(pers) - 1) != 0) {
		snprintf(why, cap, "cannot seed the random generator");
		rc = GD_EIO;
		goto out;
	}

	rc = make_pair(dir, "mfg-ca",
		       &(struct cert_spec){ .cn = "guardian manufacturer CA",
					    .not_before_s = now - SERVICE_SKEW_S,
					    .not_after_s = now + (int64_t)days * 86400,
					    .is_ca = true },
		       &mfg_key, NULL, NULL, &drbg, &mfg_crt, why, cap);
	if (rc != 0)
		goto out;
	rc = make_pair(dir, "op-ca",
		       &(struct cert_spec){ .cn = "guardian operational CA",
					    .not_before_s = now - SERVICE_SKEW_S,
					    .not_after_s = now + (int64_t)days * 86400,
					    .is_ca = true },
		       &op_key, NULL, NULL, &drbg, &op_crt, why, cap);
	if (rc != 0)
		goto out;
	rc = make_pair(dir, "service",
		       &(struct cert_spec){ .cn = "guardian-attest",
					    .not_before_s = now - SERVICE_SKEW_S,
					    .not_after_s = now + (int64_t)days * 86400,
					    .client_auth = true },
		       &svc_key, &mfg_key, &mfg_crt, &drbg, NULL, why, cap);
	if (rc != 0)
		goto out;

	rc = GD_EIO;
	if (mbedtls_ctr_drbg_random(&drbg, secret, sizeof(secret)) != 0) {
		snprintf(why, cap, "cannot make the nonce secret");
		goto out;
	}
	rc = write_new(dir, "nonce.key", secret, sizeof(secret), 0600, why, cap);
	mbedtls_platform_zeroize(secret, sizeof(secret));
	if (rc != 0)
		goto out;
	if ((rc = make_subdir(dir, "devices", why, cap)) != 0 ||
	    (rc = make_subdir(dir, "references", why, cap)) != 0 ||
	    (rc = make_subdir(dir, "nonces", why, cap)) != 0 ||
	    (rc = make_subdir(dir, "certs", why, cap)) != 0)
		goto out;
	/* The broker's telemetry listener needs a CRL from the start: an empty one. */
	if (!service_path(path, sizeof(path), dir, SERVICE_CRL_FILE)) {
		snprintf(why, cap, "%s: path too long", dir);
		rc = GD_EINVAL;
		goto out;
	}
	rc = crl_write(path, &op_crt, &op_key, &drbg, NULL, 0, gd_now_ms(), why, cap);
	if (rc != 0)
		goto out;

	cfg = (struct service_config){
		.broker_host =
			(char *)(uintptr_t)(opts->broker_host ? opts->broker_host : "localhost"),
		.broker_port = opts->broker_port > 0 ? opts->broker_port : 8884,
		.broker_ca_file =
			(char *)(uintptr_t)(opts->broker_ca ? opts->broker_ca : "broker-ca.crt"),
		.lifetime_s = opts->lifetime_s > 0 ? opts->lifetime_s : 86400,
		.nonce_ttl_s = opts->nonce_ttl_s > 0 ? opts->nonce_ttl_s : 30,
		.store = { .backend = opts->store, .conninfo = (char *)(uintptr_t)opts->conninfo },
	};
	rc = service_config_write(dir, &cfg);
	if (rc != 0) {
		snprintf(why, cap, "%s/%s: cannot write: %s", dir, SERVICE_CONFIG_FILE,
			 strerror(errno));
		goto out;
	}
	/* The store's schema, as service.json names it (and resolves the SQLite file). */
	{
		struct store *st = NULL;

		rc = service_store_open(dir, true, &st, why, cap);
		store_close(st);
		if (rc != 0)
			goto out;
	}
out:
	mbedtls_x509_crt_free(&op_crt);
	mbedtls_x509_crt_free(&mfg_crt);
	mbedtls_pk_free(&svc_key);
	mbedtls_pk_free(&op_key);
	mbedtls_pk_free(&mfg_key);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return rc;
}
