/* launch.c: what guardian-launch measures (read from the site config exactly as guardian reads
 * it) and how it puts that into the TPM's PCR. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/base.h"
#include "launch.h"

int launch_hash_fd(int fd, uint8_t sha256[32])
{
	mbedtls_sha256_context ctx;
	unsigned char buf[65536];
	off_t off = 0;
	int err = 0;

	mbedtls_sha256_init(&ctx);
	mbedtls_sha256_starts_ret(&ctx, 0);
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = GD_EIO;
			break;
		}
		if (n == 0)
			break;
		mbedtls_sha256_update_ret(&ctx, buf, (size_t)n);
		off += n;
	}
	if (err == 0)
		mbedtls_sha256_finish_ret(&ctx, sha256);
	mbedtls_sha256_free(&ctx);
	return err;
}

/* The string at 'key' of 'obj': NULL when absent; GD_ECONFIG when it is not a string. */
static int get_string(const cJSON *obj, const char *key, const char *where, const char **out,
		      char *why, size_t cap)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	*out = NULL;
	if (item == NULL)
		return 0;
	if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
		gd_whyf(why, cap, "%s%s: expected a non-empty string", where, key);
		return GD_ECONFIG;
	}
	*out = item->valuestring;
	return 0;
}

/* Adds 'path' (hashing 'data' when given, else the file) under its real path unless that real
 * path is in the log already: guardian's measure_take and measure_config. */
static int measure_add(struct meas_log *log, const char *type, const char *path, const char *data,
		       char *why, size_t cap)
{
	char real[PATH_MAX];
	uint8_t sha256[32];

	if (realpath(path, real) == NULL) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	if (strlen(real) >= MEAS_NAME_MAX) {
		gd_whyf(why, cap, "%s: %s", path, strerror(ENAMETOOLONG));
		return GD_EIO;
	}
	if (data != NULL) {
		mbedtls_sha256_ret((const unsigned char *)data, strlen(data), sha256, 0);
	} else if (meas_hash_file(path, sha256) != 0) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	for (size_t i = 0; i < log->n; i++) {
		if (strcmp(log->items[i].name, real) == 0)
			return 0;
	}
	return meas_add(log, type, real, sha256);
}

/* attestation.tpm: the TCTI and the PCR (16 or 23, guardian/config.c's rule). */
static int read_tpm(const cJSON *root, const char *config, struct launch_config *cfg, char *why,
		    size_t cap)
{
	const cJSON *attest = cJSON_GetObjectItemCaseSensitive(root, "attestation");
	const cJSON *tpm = cJSON_GetObjectItemCaseSensitive(attest, "tpm");
	const cJSON *pcr = cJSON_GetObjectItemCaseSensitive(tpm, "pcr");
	const char *tcti = NULL;
	int err;

	if (!cJSON_IsObject(attest) || !cJSON_IsObject(tpm)) {
		gd_whyf(why, cap,
			"%s: attestation.tpm: missing: guardian-launch is for a device whose "
			"attestation key is in a TPM (set attestation.tpm.tcti, e.g. "
			"\"device:/dev/tpmrm0\", and run guardian provision)",
			config);
		return GD_ECONFIG;
	}
	err = get_string(tpm, "tcti", "attestation.tpm.", &tcti, why, cap);
	if (err == 0 && tcti == NULL) {
		gd_whyf(why, cap,
			"attestation.tpm.tcti: missing (a TCTI string such as "
			"device:/dev/tpmrm0)");
		err = GD_ECONFIG;
	}
	if (err == 0 && strlen(tcti) >= sizeof(cfg->tcti)) {
		gd_whyf(why, cap, "attestation.tpm.tcti: longer than %zu bytes",
			sizeof(cfg->tcti) - 1);
		err = GD_ECONFIG;
	}
	if (err != 0)
		return err;
	snprintf(cfg->tcti, sizeof(cfg->tcti), "%s", tcti);
	cfg->pcr = GD_TPM_PCR_DEFAULT;
	if (pcr != NULL) {
		if (!cJSON_IsNumber(pcr) || (pcr->valuedouble != 16 && pcr->valuedouble != 23)) {
			gd_whyf(why, cap,
				"attestation.tpm.pcr: expected 23 (application) or 16 (debug): "
				"the PCR is reset at each launch");
			return GD_ECONFIG;
		}
		cfg->pcr = pcr->valueint;
	}
	return 0;
}

/* The CA file at 'key' of 'obj' (resolved), measured when named. */
static int measure_ca(struct meas_log *log, const cJSON *obj, const char *where, const char *dir,
		      char *why, size_t cap)
{
	const char *name = NULL;
	char *path;
	int err = get_string(obj, "ca_file", where, &name, why, cap);

	if (err != 0 || name == NULL)
		return err;
	path = gd_path_resolve(dir, name);
	if (path == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	err = measure_add(log, "file", path, NULL, why, cap);
	free(path);
	return err;
}

int launch_measure(const char *config, const char *exe, const uint8_t exe_sha256[32],
		   struct launch_config *cfg, struct meas_log *log, char *why, size_t cap)
{
	struct launch_config *c = calloc(1, sizeof(*c));
	struct meas_log *m = malloc(sizeof(*m));
	char *copy = strdup(config);
	char *dir = copy != NULL ? strdup(dirname(copy)) : NULL;
	char *text = NULL, *policy_text = NULL, *policy = NULL, *state = NULL;
	const char *state_name = NULL, *policy_name = NULL;
	char real[PATH_MAX];
	cJSON *root = NULL;
	int err = GD_ENOMEM;

	if (c == NULL || m == NULL || dir == NULL) {
		gd_whyf(why, cap, "out of memory");
		goto out;
	}
	meas_init(m);
	text = gd_read_file(config);
	if (text == NULL) {
		gd_whyf(why, cap, "%s: cannot read: %s", config, strerror(errno));
		err = GD_EIO;
		goto out;
	}
	root = cJSON_ParseWithOpts(text, NULL, 1);
	if (!cJSON_IsObject(root)) {
		gd_whyf(why, cap, "%s: not a JSON object (guardian check -c %s says where)", config,
			config);
		err = GD_ECONFIG;
		goto out;
	}
	err = read_tpm(root, config, c, why, cap);
	if (err == 0)
		err = get_string(root, "state_dir", "", &state_name, why, cap);
	if (err == 0)
		err = get_string(root, "policy", "", &policy_name, why, cap);
	if (err == 0 && policy_name == NULL) {
		gd_whyf(why, cap, "%s: policy: missing (the policy file)", config);
		err = GD_ECONFIG;
	}
	if (err != 0)
		goto out;
	state = gd_path_resolve(dir, state_name != NULL ? state_name : "/var/lib/guardian");
	policy = gd_path_resolve(dir, policy_name);
	if (state == NULL || policy == NULL || strlen(state) >= sizeof(c->state_dir)) {
		gd_whyf(why, cap, "state_dir: out of memory or too long");
		err = GD_ENOMEM;
		goto out;
	}
	snprintf(c->state_dir, sizeof(c->state_dir), "%s", state);
	/* guardian measures the policy text it parsed; a policy that cannot be read fails it. */
	policy_text = gd_read_file(policy);
	if (policy_text == NULL) {
		gd_whyf(why, cap, "%s: cannot read the policy: %s", policy, strerror(errno));
		err = GD_EIO;
		goto out;
	}
	/* The executable under its real path (what /proc/self/exe names in guardian). */
	if (realpath(exe, real) == NULL) {
		gd_whyf(why, cap, "%s: %s", exe, strerror(errno));
		err = GD_EIO;
		goto out;
	}
	if (strlen(real) >= MEAS_NAME_MAX) {
		gd_whyf(why, cap, "%s: %s", exe, strerror(ENAMETOOLONG));
		err = GD_EIO;
		goto out;
	}
	meas_add(m, "exe", real, exe_sha256);
	err = measure_add(m, "config", config, text, why, cap);
	if (err == 0)
		err = measure_add(m, "policy", policy, policy_text, why, cap);
	if (err == 0)
		err = measure_ca(m, cJSON_GetObjectItemCaseSensitive(root, "uplink"), "uplink.",
				 dir, why, cap);
	if (err == 0)
		err = measure_ca(m, cJSON_GetObjectItemCaseSensitive(root, "attestation"),
				 "attestation.", dir, why, cap);
	if (err != 0)
		goto out;
	*cfg = *c;
	*log = *m;
out:
	cJSON_Delete(root);
	free(text);
	free(policy_text);
	free(policy);
	free(state);
	free(dir);
	free(copy);
	free(m);
	free(c);
	return err;
}

int launch_read_ak(const struct launch_config *cfg, uint8_t **blob, size_t *len, char *why,
		   size_t cap)
{
	char path[sizeof(cfg->state_dir) + sizeof(GD_TPM_AK_BLOB) + 1];
	FILE *f;
	long size;
	uint8_t *buf = NULL;

	*blob = NULL;
	*len = 0;
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, GD_TPM_AK_BLOB);
	f = fopen(path, "rb");
	if (f == NULL) {
		gd_whyf(why, cap,
			"%s: cannot read the attestation key: %s (run guardian provision -c CONFIG "
			"first: it makes the key in the TPM)",
			path, strerror(errno));
		return GD_EIO;
	}
	errno = 0;
	size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	if (size >= 0 && size <= 65536 && fseek(f, 0, SEEK_SET) == 0)
		buf = malloc((size_t)size + 1);
	if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
		gd_whyf(why, cap, "%s: cannot read the attestation key: %s", path,
			errno != 0 ? strerror(errno) : "too large");
		free(buf);
		fclose(f);
		return GD_EIO;
	}
	fclose(f);
	*blob = buf;
	*len = (size_t)size;
	return 0;
}

int launch_tpm_start(const struct launch_config *cfg, const struct meas_log *log,
		     const uint8_t *blob, size_t blob_len, struct gd_tpm **out, char *why,
		     size_t cap)
{
	struct gd_tpm *t = NULL;
	uint8_t value[32];
	char what[512];
	int err;

	*out = NULL;
	err = gd_tpm_open(cfg->tcti, &t, why, cap);
	if (err != 0)
		return err;
	err = gd_tpm_ak_load(t, blob, blob_len, what, sizeof(what));
	if (err != 0) {
		gd_whyf(why, cap, "%s/%s: %s", cfg->state_dir, GD_TPM_AK_BLOB, what);
		goto fail;
	}
	err = gd_tpm_pcr_reset(t, cfg->pcr, why, cap);
	for (size_t i = 0; err == 0 && i < log->n; i++)
		err = gd_tpm_pcr_extend(t, cfg->pcr, log->items[i].sha256, why, cap);
	if (err == 0)
		err = gd_tpm_pcr_read(t, cfg->pcr, value, why, cap);
	if (err != 0)
		goto fail;
	/* Only if another process extends the PCR between our commands (or a TPM that does not
	 * extend as the specification says). */
	if (memcmp(value, log->reg, 32) != 0) {
		gd_whyf(why, cap,
			"PCR %d of %s does not equal the log's fold after extending it: is another "
			"process using this PCR?",
			cfg->pcr, cfg->tcti);
		err = GD_EIO;
		goto fail;
	}
	*out = t;
	return 0;
fail:
	gd_tpm_close(t);
	return err;
}
