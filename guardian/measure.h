/* measure.h: measured boot: what determines guardian's behaviour, hashed into a log and one
 * register (service/PROTOCOL.md). */
#ifndef GUARDIAN_MEASURE_H
#define GUARDIAN_MEASURE_H

#include <stdio.h>

#include "../proto/evidence.h"

struct gd_config;

/*
 * Measures, in this order: the executable ('exe', normally "/proc/self/exe",
 * recorded under its real path), the config file, the policy file, then every
 * other file the config names that shapes behaviour (the uplink's CA file,
 * the attestation CA file), each once, in the order the config names them.
 * Files that change at run time (certificates and keys guardian writes) are
 * not measured. 0, or GD_EIO with the file in 'why'.
 */
int measure_config(const struct gd_config *cfg, const char *exe, struct meas_log *out, char *why,
		   size_t cap);

/* For `guardian measure`: one line per item ("<type> <sha256> <name>"), then the register. */
void measure_print(const struct meas_log *log, FILE *out);

#endif
