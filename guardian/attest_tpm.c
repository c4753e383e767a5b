/* attest_tpm.c: attestation with the key in a TPM 2.0: `guardian provision` makes the key, and at
 * run time guardian reaches the TPM only through guardian-launch's broker (tpm/broker.h), which
 * measured this very binary, the config and the policy into a PCR before it started it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tpm/broker.h"
#include "../tpm/tpm.h"
#include "attest_tpm.h"
#include "measure.h"

static void path_in(const struct gd_config *cfg, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", cfg->state_dir, name);
}

/* Writes the AK's public key next to its blob, for enrollment (--ak). */
static int write_public(struct gd_tpm *t, const struct gd_config *cfg, char *why, size_t cap)
{
	char pem[GD_TPM_PEM_MAX], path[512];

	path_in(cfg, ATTEST_TPM_PUB, path, sizeof(path));
	if (gd_tpm_ak_public_pem(t, pem, sizeof(pem)) != 0) {
		snprintf(why, cap, "cannot read the attestation key's public part from the TPM");
		return GD_EIO;
	}
	if (gd_write_file_atomic(path, pem, strlen(pem), 0644) != 0) {
		snprintf(why, cap, "cannot write %s: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

int attest_tpm_provision(const struct gd_config *cfg, bool *made, char *why, size_t cap)
{
	char path[512];
	struct gd_tpm *t = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	*made = false;
	path_in(cfg, ATTEST_TPM_BLOB, path, sizeof(path));
	if (gd_tpm_open(cfg->attest.tpm_tcti, &t, why, cap) != 0)
		return GD_EIO;
	if ((blob = (uint8_t *)gd_read_file_len(path, &len)) != NULL) {
		/* Kept, but only if this TPM still takes it: a blob of another TPM is useless. */
		rc = gd_tpm_ak_load(t, blob, len, why, cap);
	} else if (errno != ENOENT) {
		snprintf(why, cap, "cannot read %s: %s", path, strerror(errno));
		rc = GD_EIO;
	} else if ((rc = gd_tpm_ak_create(t, &blob, &len, why, cap)) == 0) {
		rc = gd_write_file_atomic(path, (const char *)blob, len, 0600);
		if (rc != 0)
			snprintf(why, cap, "cannot write %s: %s", path, strerror(errno));
		*made = rc == 0;
	}
	if (rc == 0)
		rc = write_public(t, cfg, why, cap);
	free(blob);
	gd_tpm_close(t);
	return rc;
}

/* "3f2a0c1d..." for a detail: the first 8 bytes in hex. */
static void short_hex(const uint8_t sha[32], char out[17])
{
	char full[65];

	gd_hex_encode(sha, 32, full);
	memcpy(out, full, 16);
	out[16] = '\0';
}

int attest_tpm_broker_log(int fd, struct meas_log *log, char *why, size_t cap)
{
	struct gd_broker_req req = { .type = GD_BROKER_LOG };
	struct gd_broker_resp *resp = malloc(sizeof(*resp));
	int rc;

	if (resp == NULL) {
		snprintf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	rc = gd_broker_call(fd, &req, resp, why, cap);
	if (rc == 0)
		*log = resp->log;
	free(resp);
	return rc;
}

int attest_tpm_check_launch(const struct gd_config *cfg, int *broker_fd, char *why, size_t cap)
{
	struct meas_log *mine = malloc(sizeof(*mine)), *launch = malloc(sizeof(*launch));
	char a[17], b[17];
	int fd = gd_broker_fd_from_env(), rc = GD_EDENIED;

	*broker_fd = -1;
	if (mine == NULL || launch == NULL) {
		snprintf(why, cap, "out of memory");
		rc = GD_ENOMEM;
		goto out;
	}
	if (fd < 0) {
		snprintf(why, cap,
			 "attestation.tpm is set: start guardian through guardian-launch, which "
			 "measures it into the TPM (guardian-launch -- guardian run -c %s)",
			 cfg->file);
		goto out;
	}
	if (measure_config(cfg, NULL, mine, why, cap) != 0 ||
	    attest_tpm_broker_log(fd, launch, why, cap) != 0) {
		rc = GD_EIO;
		goto out;
	}
	for (size_t i = 0; i < mine->n || i < launch->n; i++) {
		const struct measurement *m = i < mine->n ? &mine->items[i] : NULL;
		const struct measurement *l = i < launch->n ? &launch->items[i] : NULL;

		if (m == NULL || l == NULL) {
			snprintf(why, cap,
				 "guardian-launch measured %zu items and guardian %zu: %s %s is in "
				 "one log only",
				 launch->n, mine->n, (m != NULL ? m : l)->type,
				 (m != NULL ? m : l)->name);
			goto out;
		}
#ifdef GUARDIAN_TEST_LIAR
		if (strcmp(m->type, "exe") == 0)
			continue; /* it measured itself as another binary: see lie() */
#endif
		if (strcmp(m->type, l->type) != 0 || strcmp(m->name, l->name) != 0) {
			snprintf(why, cap,
				 "item %zu: guardian-launch measured %s %s, guardian loaded %s %s",
				 i, l->type, l->name, m->type, m->name);
			goto out;
		}
		if (memcmp(m->sha256, l->sha256, 32) != 0) {
			short_hex(l->sha256, a);
			short_hex(m->sha256, b);
			snprintf(why, cap,
				 "%s %s changed between guardian-launch and load (launch measured "
				 "%s..., guardian loaded %s...): start it again",
				 m->type, m->name, a, b);
			goto out;
		}
	}
	*broker_fd = fd;
	rc = 0;
out:
	free(mine);
	free(launch);
	return rc;
}

#ifdef GUARDIAN_TEST_LIAR
/*
 * Only in build/guardian-liar, a test program (tests/integration/test_attest_tpm.c): the attack
 * the TPM is there to stop. It reports the digest of $GUARDIAN_LIE_EXE (the released binary) as
 * its own, with a register that agrees with the lie. The product is never built with this.
 */
static int lie(struct meas_log *log)
{
	const char *released = getenv("GUARDIAN_LIE_EXE");

	for (size_t i = 0; released != NULL && i < log->n; i++) {
		if (strcmp(log->items[i].type, "exe") == 0 &&
		    meas_hash_file(released, log->items[i].sha256) != 0)
			return GD_EIO;
	}
	meas_fold(log, log->reg);
	return 0;
}
#endif

static int round_log(int fd, const struct gd_measured *policy, struct meas_log *log, char *why,
		     size_t cap);

int attest_tpm_round_log(int fd, const struct gd_measured *policy, struct meas_log *log, char *why,
			 size_t cap)
{
	int rc = round_log(fd, policy, log, why, cap);

#ifdef GUARDIAN_TEST_LIAR
	if (rc == 0)
		rc = lie(log);
#endif
	return rc;
}

static int round_log(int fd, const struct gd_measured *policy, struct meas_log *log, char *why,
		     size_t cap)
{
	const struct measurement *last = NULL;

	if (attest_tpm_broker_log(fd, log, why, cap) != 0)
		return GD_EIO;
	for (size_t i = 0; i < log->n; i++) {
		if (strcmp(log->items[i].type, "policy") == 0)
			last = &log->items[i];
	}
	if (last != NULL && strcmp(last->name, policy->name) == 0 &&
	    memcmp(last->sha256, policy->sha256, 32) == 0)
		return 0;
	/* A reload waiting for this round, or the enforced policy back after a refusal: the PCR
	 * is extended, never reset, so the last policy in the log is the one this round vouches
	 * for. */
	{
		struct gd_broker_req req = { .type = GD_BROKER_EXTEND };
		struct gd_broker_resp *resp = malloc(sizeof(*resp));
		int rc;

		if (resp == NULL) {
			snprintf(why, cap, "out of memory");
			return GD_ENOMEM;
		}
		snprintf(req.kind, sizeof(req.kind), "policy");
		snprintf(req.name, sizeof(req.name), "%s", policy->name);
		memcpy(req.sha256, policy->sha256, 32);
		rc = gd_broker_call(fd, &req, resp, why, cap);
		free(resp);
		if (rc != 0)
			return rc;
	}
	return attest_tpm_broker_log(fd, log, why, cap);
}

int attest_tpm_quote(int fd, const uint8_t qualifying[32], uint8_t *attest, size_t *attest_len,
		     uint8_t *sig, size_t *sig_len, char *why, size_t cap)
{
	struct gd_broker_req req = { .type = GD_BROKER_QUOTE };
	struct gd_broker_resp *resp = malloc(sizeof(*resp));
	int rc;

	if (resp == NULL) {
		snprintf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	memcpy(req.qualifying, qualifying, 32);
	rc = gd_broker_call(fd, &req, resp, why, cap);
	if (rc == 0 && (resp->attest_len > GD_TPM_ATTEST_MAX || resp->sig_len > GD_TPM_SIG_MAX ||
			resp->attest_len > *attest_len || resp->sig_len > *sig_len)) {
		snprintf(why, cap, "the broker's quote does not fit");
		rc = GD_EPROTO;
	}
	if (rc == 0) {
		memcpy(attest, resp->attest, resp->attest_len);
		*attest_len = resp->attest_len;
		memcpy(sig, resp->sig, resp->sig_len);
		*sig_len = resp->sig_len;
	}
	free(resp);
	return rc;
}
