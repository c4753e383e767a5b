/* measure.h: measured boot: what determines guardian's behaviour, hashed as it is loaded into a
 * log and one register (service/PROTOCOL.md). */
#ifndef GUARDIAN_MEASURE_H
#define GUARDIAN_MEASURE_H

#include <stdio.h>

#include "../proto/evidence.h"

struct gd_config;
struct gd_measured;

/*
 * Fills 'm' for 'path': its real path and the SHA-256 of the 'len' bytes at
 * 'data' (what the loader parsed), or of the file itself when 'data' is NULL.
 * A failure is kept in m->error (an errno) with the path as named, for
 * measure_config to report.
 */
void measure_take(struct gd_measured *m, const char *path, const char *data, size_t len);

/* Measures the executable 'exe' (normally "/proc/self/exe", recorded under its real path) into
 * cfg->measured_exe, once at start. 0, or GD_EIO with the reason in 'why'. */
int measure_exe(struct gd_config *cfg, const char *exe, char *why, size_t cap);

/*
 * The log of what was measured when it was loaded, never reading a file: the
 * executable, the config, the policy ('policy', or cfg->measured_policy when
 * NULL), then the uplink's and the attestation's CA files, each real path
 * once. Certificates and keys guardian writes are not measured. 0, or GD_EIO
 * with the item that could not be measured in 'why' ('out' unchanged).
 */
int measure_config(const struct gd_config *cfg, const struct gd_measured *policy,
		   struct meas_log *out, char *why, size_t cap);

/* For `guardian measure`: one line per item ("<type> <sha256> <name>"), then the register. */
void measure_print(const struct meas_log *log, FILE *out);

#endif
