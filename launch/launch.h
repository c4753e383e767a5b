/* launch.h: guardian-launch: measures guardian and what it loads into a TPM PCR before starting
 * it, then stays as the broker that alone holds the TPM (tpm/broker.h). */
#ifndef LAUNCH_H
#define LAUNCH_H

#include <stddef.h>
#include <stdint.h>

#include "../proto/meas_log.h"
#include "../tpm/broker.h"
#include "../tpm/tpm.h"

/* What guardian-launch takes from the site config (paths resolved as guardian/config.c does). */
struct launch_config {
	char state_dir[4096];
	char tcti[256];
	int pcr; /* attestation.tpm.pcr: 16 or 23 */
};

/* SHA-256 of everything 'fd' holds, read from offset 0 (pread: its offset is not moved). 0, or
 * GD_EIO with errno kept. */
int launch_hash_fd(int fd, uint8_t sha256[32]);

/*
 * Reads the config file 'config' and builds the log guardian's measure_config() builds when it
 * loads it: "exe" ('exe' under its real path, digest 'exe_sha256'), "config" (the bytes read),
 * "policy", then "file" for uplink.ca_file and attestation.ca_file; every path relative to the
 * config's directory, every real path once. 0, GD_ECONFIG (the config does not say what is
 * needed: no attestation.tpm, no policy, a wrong type) or GD_EIO (a file cannot be read), with
 * the reason in 'why'. 'cfg' and 'log' are filled only on success.
 */
int launch_measure(const char *config, const char *exe, const uint8_t exe_sha256[32],
		   struct launch_config *cfg, struct meas_log *log, char *why, size_t cap);

/* The attestation key's blob, <state_dir>/GD_TPM_AK_BLOB (caller frees). 0, or GD_EIO saying
 * which file and to run guardian provision. */
int launch_read_ak(const struct launch_config *cfg, uint8_t **blob, size_t *len, char *why,
		   size_t cap);

/*
 * Opens the TPM, loads the AK from 'blob', resets the PCR and extends it with each item of 'log'
 * in order, then checks that it reads back as log->reg. 0 and *out, or GD_EIO/GD_EINVAL with
 * the TPM command that failed in 'why' (nothing left open).
 */
int launch_tpm_start(const struct launch_config *cfg, const struct meas_log *log,
		     const uint8_t *blob, size_t blob_len, struct gd_tpm **out, char *why,
		     size_t cap);

/* The broker: the TPM with its AK loaded, the PCR and its event log. */
struct launch_broker {
	struct gd_tpm *tpm;
	int pcr;
	struct meas_log log;
	struct gd_broker_req req;   /* the request being answered */
	struct gd_broker_resp resp; /* its answer */
};

/*
 * Reads one request from 'fd' and answers it. 0: answered (a refused EXTEND is an answer);
 * -1: 'fd' is closed: the peer closed it, or it sent a message of another length or an unknown
 * type (logged), or the answer could not be sent.
 */
int launch_broker_answer(struct launch_broker *b, int fd);

#endif
