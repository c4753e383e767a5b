/* measure.c: hashes what decides guardian's behaviour (binary, config, policy, CAs) as it is
 * loaded, and builds the measurement log from those digests. */
#include <errno.h>
#include <limits.h>
#include <mbedtls/sha256.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "measure.h"

void measure_take(struct gd_measured *m, const char *path, const char *data, size_t len)
{
	char real[PATH_MAX];

	memset(m, 0, sizeof(*m));
	if (realpath(path, real) == NULL) {
		m->error = errno;
	} else if (strlen(real) >= sizeof(m->name)) {
		m->error = ENAMETOOLONG;
	} else if (data != NULL) {
		mbedtls_sha256_ret((const unsigned char *)data, len, m->sha256, 0);
	} else if (meas_hash_file(path, m->sha256) != 0) {
		m->error = errno;
	}
	/* A path too long is cut: it only names the error then. */
	snprintf(m->name, sizeof(m->name), "%.*s", (int)sizeof(m->name) - 1,
		 m->error != 0 ? path : real);
}

int measure_exe(struct gd_config *cfg, const char *exe, char *why, size_t cap)
{
	measure_take(&cfg->measured_exe, exe, NULL, 0);
	if (cfg->measured_exe.error == 0)
		return 0;
	snprintf(why, cap, "%s: %s", exe, strerror(cfg->measured_exe.error));
	return GD_EIO;
}

static bool already_measured(const struct meas_log *log, const char *real)
{
	for (size_t i = 0; i < log->n; i++) {
		if (strcmp(log->items[i].name, real) == 0)
			return true;
	}
	return false;
}

int measure_config(const struct gd_config *cfg, const struct gd_measured *policy,
		   struct meas_log *out, char *why, size_t cap)
{
	/* In the order the config names them; "" names nothing (a CA the config does not set). */
	const struct {
		const char *type;
		const struct gd_measured *m;
	} items[] = {
		{ "exe", &cfg->measured_exe },
		{ "config", &cfg->measured_config },
		{ "policy", policy != NULL ? policy : &cfg->measured_policy },
		{ "file", &cfg->measured_files[0] },
		{ "file", &cfg->measured_files[1] },
	};
	struct meas_log *log = malloc(sizeof(*log));

	if (log == NULL) {
		snprintf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	meas_init(log);
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		const struct gd_measured *m = items[i].m;

		if (m->error != 0) {
			snprintf(why, cap, "%s: %s", m->name, strerror(m->error));
			goto fail;
		}
		if (m->name[0] == '\0' && i < 3) {
			snprintf(why, cap, "the %s was not measured", items[i].type);
			goto fail;
		}
		if (m->name[0] != '\0' && !already_measured(log, m->name))
			meas_add(log, items[i].type, m->name, m->sha256); /* 5 items fit */
	}
	*out = *log;
	free(log);
	return 0;
fail:
	free(log);
	return GD_EIO;
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
