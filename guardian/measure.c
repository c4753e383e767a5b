/* measure.c: hashes what decides guardian's behaviour (binary, config, policy, CAs) into a log. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "measure.h"

static bool already_measured(const struct meas_log *log, const char *real)
{
	for (size_t i = 0; i < log->n; i++) {
		if (strcmp(log->items[i].name, real) == 0)
			return true;
	}
	return false;
}

/*
 * Measures 'path' under its real path, unless that file is in the log already.
 * 'hash_path' is what is read: normally 'path', but for the executable
 * /proc/self/exe, the image that runs even if an update replaced the file.
 */
static int measure_one(struct meas_log *log, const char *type, const char *path,
		       const char *hash_path, char *why, size_t cap)
{
	char real[PATH_MAX];
	uint8_t digest[32];
	int err;

	if (realpath(path, real) == NULL) {
		snprintf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	if (already_measured(log, real))
		return 0;
	if (meas_hash_file(hash_path, digest) != 0) {
		snprintf(why, cap, "%s: %s", real, strerror(errno));
		return GD_EIO;
	}
	err = meas_add(log, type, real, digest);
	if (err == GD_EINVAL)
		snprintf(why, cap, "%s: path longer than %d bytes", real, MEAS_NAME_MAX - 1);
	else if (err != 0)
		snprintf(why, cap, "%s: more than %d measurements", real, MEAS_MAX);
	return err != 0 ? GD_EIO : 0;
}

int measure_config(const struct gd_config *cfg, const char *exe, struct meas_log *out, char *why,
		   size_t cap)
{
	/* Everything after the executable, in the order the config names it; NULL: not set. */
	const struct {
		const char *type;
		const char *path;
	} files[] = {
		{ "config", cfg->file },
		{ "policy", cfg->policy_file },
		{ "file", cfg->uplink.ca_file },
		{ "file", cfg->attest.enabled ? cfg->attest.ca_file : NULL },
	};
	struct meas_log *log = malloc(sizeof(*log));
	int err;

	if (log == NULL) {
		snprintf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	meas_init(log);
	err = measure_one(log, "exe", exe, exe, why, cap);
	for (size_t i = 0; err == 0 && i < sizeof(files) / sizeof(files[0]); i++) {
		if (files[i].path != NULL)
			err = measure_one(log, files[i].type, files[i].path, files[i].path, why,
					  cap);
	}
	if (err == 0)
		*out = *log;
	free(log);
	return err;
}

void measure_print(const struct meas_log *log, FILE *out)
{
	char hex[65];

	for (size_t i = 0; i < log->n; i++) {
		gd_hex_encode(log->items[i].sha256, 32, hex);
		fprintf(out, "%s %s %s\n", log->items[i].type, hex, log->items[i].name);
	}
	gd_hex_encode(log->reg, 32, hex);
	fprintf(out, "register %s\n", hex);
}
