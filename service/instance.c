/* instance.c: one service instance on a directory: its config, store, CAs, nonce secret and
 * randomness. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>

#include "service.h"

static const char *const reason_names[] = {
	[REASON_OK] = "ok",
	[REASON_MALFORMED] = "malformed",
	[REASON_UNKNOWN_DEVICE] = "unknown_device",
	[REASON_BAD_SIGNATURE] = "bad_signature",
	[REASON_BAD_NONCE] = "bad_nonce",
	[REASON_STALE_NONCE] = "stale_nonce",
	[REASON_REPLAYED_NONCE] = "replayed_nonce",
	[REASON_REGISTER_MISMATCH] = "register_mismatch",
	[REASON_MEASUREMENT_MISMATCH] = "measurement_mismatch",
	[REASON_NO_REFERENCE] = "no_reference",
	[REASON_BAD_KEY] = "bad_key",
};

const char *service_reason_name(enum service_reason r)
{
	if ((size_t)r >= sizeof(reason_names) / sizeof(reason_names[0]))
		return "?";
	return reason_names[r];
}

/* Reads the 32-byte nonce secret. */
static int load_nonce_key(struct service *s, char *why, size_t cap)
{
	char path[4096];
	FILE *f;
	size_t n;
	int extra;

	if (!service_path(path, sizeof(path), s->dir, "nonce.key")) {
		snprintf(why, cap, "%s: path too long", s->dir);
		return GD_EINVAL;
	}
	f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(why, cap, "%s: cannot open: %s", path, strerror(errno));
		return GD_EIO;
	}
	n = fread(s->nonce_key, 1, sizeof(s->nonce_key), f);
	extra = fgetc(f);
	fclose(f);
	if (n != sizeof(s->nonce_key) || extra != EOF) {
		snprintf(why, cap, "%s: expected exactly 32 bytes", path);
		return GD_EINVAL;
	}
	return 0;
}

int service_open(const char *dir, struct service **out, char *why, size_t cap)
{
	static const char pers[] = "guardian-service";
	struct service *s = calloc(1, sizeof(*s));
	struct conf c;
	int rc = GD_ENOMEM;

	*out = NULL;
	conf_init(&c, SERVICE_CONFIG_FILE);
	if (s == NULL) {
		snprintf(why, cap, "out of memory");
		goto out;
	}
	mbedtls_entropy_init(&s->entropy);
	mbedtls_ctr_drbg_init(&s->drbg);
	mbedtls_x509_crt_init(&s->mfg_ca.crt);
	mbedtls_pk_init(&s->mfg_ca.key);
	mbedtls_x509_crt_init(&s->op_ca.crt);
	mbedtls_pk_init(&s->op_ca.key);
	s->now_ms = gd_now_ms;
	s->dir = strdup(dir);
	if (s->dir == NULL) {
		snprintf(why, cap, "out of memory");
		goto out;
	}
	if (service_config_load(dir, &s->cfg, &c) != 0) {
		snprintf(why, cap, "%s/%s", dir,
			 c.nerrors > 0 && c.errors[0] ? c.errors[0] : "invalid configuration");
		rc = GD_ECONFIG;
		goto out;
	}
	rc = store_open(dir, &s->cfg.store, false, &s->store, why, cap);
	if (rc != 0)
		goto out;
	rc = issue_ca_load(&s->mfg_ca, dir, "mfg-ca", why, cap);
	if (rc != 0)
		goto out;
	rc = issue_ca_load(&s->op_ca, dir, "op-ca", why, cap);
	if (rc != 0)
		goto out;
	rc = load_nonce_key(s, why, cap);
	if (rc != 0)
		goto out;
	if (mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy,
				  (const unsigned char *)pers, sizeof(pers) - 1) != 0) {
		snprintf(why, cap, "cannot seed the random generator");
		rc = GD_EIO;
		goto out;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	conf_release(&c);
	service_free(s);
	return rc;
}

int service_store_open(const char *dir, bool create, struct store **out, char *why, size_t cap)
{
	struct service_config cfg;
	struct conf c;
	int rc;

	*out = NULL;
	conf_init(&c, SERVICE_CONFIG_FILE);
	if (service_config_load(dir, &cfg, &c) != 0) {
		snprintf(why, cap, "%s/%s", dir,
			 c.nerrors > 0 && c.errors[0] ? c.errors[0] : "invalid configuration");
		conf_release(&c);
		return GD_ECONFIG;
	}
	conf_release(&c);
	rc = store_open(dir, &cfg.store, create, out, why, cap);
	service_config_release(&cfg);
	return rc;
}

void service_free(struct service *s)
{
	if (s == NULL)
		return;
	store_close(s->store);
	issue_ca_free(&s->mfg_ca);
	issue_ca_free(&s->op_ca);
	mbedtls_ctr_drbg_free(&s->drbg);
	mbedtls_entropy_free(&s->entropy);
	mbedtls_platform_zeroize(s->nonce_key, sizeof(s->nonce_key));
	service_config_release(&s->cfg);
	free(s->refs);
	free(s->dir);
	free(s);
}
