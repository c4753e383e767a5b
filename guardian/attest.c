/* attest.c: this device's part of attestation: the identity key signs the measurements for the
 * rounds uplink/attest.c runs, and what the service issues becomes op.key and op.crt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"
#include "gateway_private.h"
#include "keystore.h"
#include "measure.h"

/* One round's keys, between begin and end. */
struct attest_device {
	const struct gd_config *cfg;
	char key_file[512]; /* the identity key, for the TLS connection */
	struct keystore *ks;
	char priv[ATTEST_PEM_MAX], pub[ATTEST_PEM_MAX]; /* the operational key pair */
};

static int begin(void *ctx, char *why, size_t cap)
{
	struct attest_device *d = ctx;

	if (keystore_open(d->cfg->state_dir, false, &d->ks, why, cap) != 0 ||
	    keystore_new_operational_key(d->priv, sizeof(d->priv), d->pub, sizeof(d->pub)) != 0) {
		if (why[0] == '\0')
			snprintf(why, cap, "cannot make an operational key");
		return GD_EIO;
	}
	return 0;
}

static int sign_with(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	return keystore_sign(ctx, digest, sig, cap, len);
}

static char *evidence(void *ctx, const uint8_t *nonce, char register_hex[65], char *why, size_t cap)
{
	struct attest_device *d = ctx;
	struct evidence *ev = calloc(1, sizeof(*ev));
	char pub[ATTEST_PEM_MAX];
	char *out = NULL;

	if (ev == NULL)
		return NULL;
	memcpy(ev->nonce, nonce, NONCE_LEN);
	if (measure_config(d->cfg, "/proc/self/exe", &ev->log, why, cap) != 0)
		goto out;
	if (keystore_public_pem(d->ks, pub, sizeof(pub)) != 0 ||
	    evidence_ueid(pub, ev->ueid) != 0) {
		snprintf(why, cap, "cannot read the identity public key");
		goto out;
	}
	snprintf(ev->name, sizeof(ev->name), "%s", d->cfg->device_id);
	snprintf(ev->swversion, sizeof(ev->swversion), "%s", GD_VERSION);
	snprintf(ev->op_pub, sizeof(ev->op_pub), "%s", d->pub);
	ev->iat = gd_now_ms() / 1000;
	gd_hex_encode(ev->log.reg, sizeof(ev->log.reg), register_hex);
	out = evidence_envelope_build(ev, sign_with, d->ks);
	if (out == NULL)
		snprintf(why, cap, "cannot sign the evidence with the identity key");
out:
	free(ev);
	return out;
}

/* Writes op.key then op.crt; the uplink reads both at its next connection. */
static int install(const struct attest_device *d, const char *cert, char *why, size_t cap)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/op.key", d->cfg->state_dir);
	if (gd_write_file_atomic(path, d->priv, strlen(d->priv), 0600) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/op.crt", d->cfg->state_dir);
	if (gd_write_file_atomic(path, cert, strlen(cert), 0600) != 0)
		goto fail;
	return 0;
fail:
	snprintf(why, cap, "cannot write %.300s: %s", path, strerror(errno));
	return GD_EIO;
}

static int end(void *ctx, const char *cert_pem, char *why, size_t cap)
{
	struct attest_device *d = ctx;
	int rc = cert_pem != NULL ? install(d, cert_pem, why, cap) : 0;

	explicit_bzero(d->priv, sizeof(d->priv));
	keystore_close(d->ks);
	d->ks = NULL;
	return rc;
}

static const struct uplink_attest_ops device_ops = {
	.begin = begin,
	.evidence = evidence,
	.end = end,
};

int attest_device_start(struct gateway *gw)
{
	const struct gd_config *cfg = gw->cfg;
	const struct gd_attestation *at = &cfg->attest;
	struct attest_device *d;

	if (!at->enabled)
		return 0;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return GD_ENOMEM;
	gw->attest_device = d;
	d->cfg = cfg;
	snprintf(d->key_file, sizeof(d->key_file), "%s/identity.key", cfg->state_dir);
	gw->attest = uplink_attest_start(
		&(struct uplink_attest_config){ .device_id = cfg->device_id,
						.swversion = GD_VERSION,
						.host = at->host,
						.port = at->port,
						.ca_file = at->ca_file,
						.cert_file = at->cert_file,
						.key_file = d->key_file,
						.timeout_ms = at->timeout_ms,
						.retry_min_ms = at->retry_min_ms,
						.retry_max_ms = at->retry_max_ms,
						.ops = &device_ops,
						.ctx = d },
		gw->uplink);
	return gw->attest != NULL ? 0 : GD_EIO;
}

void attest_device_stop(struct gateway *gw)
{
	uplink_attest_stop(gw->attest);
	gw->attest = NULL;
	free(gw->attest_device);
	gw->attest_device = NULL;
}
