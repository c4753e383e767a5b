/* attest.c: this device's part of attestation: the identity key signs the measurements for the
 * rounds uplink/attest.c runs, and what the service issues becomes op.key and op.crt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"
#include "gateway_private.h"
#include "attest_tpm.h"
#include "keystore.h"
#include "measure.h"
#include "report.h"

/* One round's keys and what it measured, between begin and end. */
struct attest_device {
	struct gateway *gw;
	const struct gd_config *cfg;
	char key_file[512]; /* the identity key, for the TLS connection */
	struct keystore *ks;
	char priv[ATTEST_PEM_MAX], pub[ATTEST_PEM_MAX]; /* the operational key pair */
	bool measured;		   /* the evidence was made: 'gen' names its policy */
	uint64_t gen;		   /* see enforce_round_policy */
	struct gd_measured policy; /* the policy measurement the evidence holds */
	const char *cert;	   /* the issued certificate, for keep() */
	char why[256];		   /* why the broker did not quote */
};

static int begin(void *ctx, char *why, size_t cap)
{
	struct attest_device *d = ctx;

	d->measured = false;
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

/* The broker's quote: guardian never holds the TPM itself. */
static int quote_with(void *ctx, const uint8_t qualifying[32], uint8_t *attest, size_t *attest_len,
		      uint8_t *sig, size_t *sig_len)
{
	struct attest_device *d = ctx;

	return attest_tpm_quote(d->gw->broker_fd, qualifying, attest, attest_len, sig, sig_len,
				d->why, sizeof(d->why));
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
	/* What was loaded, as it was loaded: a pending policy if a reload waits for this round. */
	enforce_round_policy(d->gw, &d->policy, &d->gen);
	if (d->cfg->attest.tpm) {
		/* What guardian-launch and the broker measured into the PCR, not what we say. */
		if (attest_tpm_round_log(d->gw->broker_fd, &d->policy, &ev->log, why, cap) != 0)
			goto out;
		ev->tpm = true;
		ev->tpm_pcr = d->cfg->attest.tpm_pcr;
	} else if (measure_config(d->cfg, &d->policy, &ev->log, why, cap) != 0) {
		goto out;
	}
	if (keystore_public_pem(d->ks, pub, sizeof(pub)) != 0 ||
	    evidence_ueid(pub, ev->ueid) != 0) {
		snprintf(why, cap, "cannot read the identity public key");
		goto out;
	}
	snprintf(ev->name, sizeof(ev->name), "%s", d->cfg->device_id);
	snprintf(ev->swversion, sizeof(ev->swversion), "%s", d->gw->swversion);
	snprintf(ev->op_pub, sizeof(ev->op_pub), "%s", d->pub);
	ev->iat = gd_now_ms() / 1000;
	gd_hex_encode(ev->log.reg, sizeof(ev->log.reg), register_hex);
	d->why[0] = '\0';
	out = ev->tpm ? evidence_envelope_build_tpm(ev, quote_with, d)
		      : evidence_envelope_build(ev, sign_with, d->ks);
	if (out == NULL && ev->tpm)
		snprintf(why, cap, "cannot quote the evidence with the TPM's attestation key%s%s",
			 d->why[0] ? ": " : "", d->why);
	else if (out == NULL)
		snprintf(why, cap, "cannot sign the evidence with the identity key");
	d->measured = out != NULL;
out:
	free(ev);
	return out;
}

/* Writes op.key then op.crt; the uplink reads both at its next connection. */
static int keep(void *ctx, char *why, size_t cap)
{
	const struct attest_device *d = ctx;
	char path[512];

	snprintf(path, sizeof(path), "%s/op.key", d->cfg->state_dir);
	if (gd_write_file_atomic(path, d->priv, strlen(d->priv), 0600) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/op.crt", d->cfg->state_dir);
	if (gd_write_file_atomic(path, d->cert, strlen(d->cert), 0600) != 0)
		goto fail;
	/* An uplink in a child process is handed them: it cannot read the state directory. */
	if (uplink_use_credentials(d->gw->uplink, d->priv, d->cert) != 0) {
		snprintf(why, cap, "cannot hand the operational certificate to the uplink");
		return GD_EIO;
	}
	return 0;
fail:
	snprintf(why, cap, "cannot write %.300s: %s", path, strerror(errno));
	return GD_EIO;
}

/* A certificate goes in with the policy its round measured; a refusal drops a pending policy
 * (attest what is enforced, at once) or holds the uplink (what is enforced was refused). */
static enum uplink_attest_next end(void *ctx, const struct attest_result *res, char *why,
				   size_t cap)
{
	struct attest_device *d = ctx;
	enum uplink_attest_next next = UPLINK_ATTEST_RETRY;

	if (res != NULL && d->measured && res->ok) {
		d->cert = res->cert_pem;
		next = enforce_round_accepted(d->gw, d->gen, keep, d, why, cap);
	} else if (res != NULL && d->measured) {
		char text[REPORT_TEXT_MAX];

		next = enforce_round_refused(d->gw, d->gen, res->reason, res->detail);
		/* Waits on disk while the uplink is held: sent once a round succeeds again. */
		snprintf(text, sizeof(text), "the attestation service refused: %.31s: %.400s; %s",
			 res->reason, res->detail,
			 next == UPLINK_ATTEST_HOLD ? "telemetry and commands held"
						    : "the pending policy was dropped");
		report_event(d->gw->reporter, "attest_refused", res->reason, text);
	}
	explicit_bzero(d->priv, sizeof(d->priv));
	keystore_close(d->ks);
	d->ks = NULL;
	d->cert = NULL;
	d->measured = false;
	return next;
}

static void health(void *ctx, struct jw *w)
{
	const struct attest_device *d = ctx;

	enforce_health(d->gw, w);
}

static const struct uplink_attest_ops device_ops = {
	.begin = begin,
	.evidence = evidence,
	.end = end,
	.health = health,
};

int attest_device_prepare(struct gateway *gw)
{
	struct gd_config *cfg = gw->cfg;
	char why[512];

	gw->broker_fd = -1;
	if (!cfg->attest.enabled)
		return 0;
	/* The image that runs, once: an update that replaces the file changes nothing here. */
	if (measure_exe(cfg, "/proc/self/exe", why, sizeof(why)) != 0) {
		log_warnx("attest", "cannot measure the executable: %s", why);
		return GD_EIO;
	}
	if (cfg->attest.tpm &&
	    attest_tpm_check_launch(cfg, &gw->broker_fd, why, sizeof(why)) != 0) {
		log_error("attest", "refusing to start: attestation.tpm: %s", why);
		return GD_EDENIED;
	}
	return 0;
}

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
	d->gw = gw;
	d->cfg = cfg;
	snprintf(d->key_file, sizeof(d->key_file), "%s/identity.key", cfg->state_dir);
	gw->attest = uplink_attest_start(
		&(struct uplink_attest_config){ .device_id = cfg->device_id,
						.swversion = gw->swversion,
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
