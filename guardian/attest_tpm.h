/* attest_tpm.h: attestation with the key in a TPM 2.0, reached only through guardian-launch. */
#ifndef GUARDIAN_ATTEST_TPM_H
#define GUARDIAN_ATTEST_TPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#define ATTEST_TPM_BLOB "identity-ak.tpm" /* the AK, wrapped by the TPM: useless elsewhere */
#define ATTEST_TPM_PUB	"identity-ak.pem" /* its public key, for guardian-service enroll --ak */

/* `guardian provision`: makes the attestation key in the TPM unless state_dir holds one this
 * TPM takes, and writes its public key. *made tells which. 0 or GD_EIO with 'why'. */
int attest_tpm_provision(const struct gd_config *cfg, bool *made, char *why, size_t cap);

/* At start: guardian-launch's broker must be there, and what it measured must be what guardian
 * loaded, item by item. The broker's fd in *broker_fd; GD_EDENIED/GD_EIO with 'why'. */
int attest_tpm_check_launch(const struct gd_config *cfg, int *broker_fd, char *why, size_t cap);

/* The broker's event log, now. */
int attest_tpm_broker_log(int fd, struct meas_log *log, char *why, size_t cap);
/* The log a round sends: the broker's, with 'policy' extended first unless it is already the
 * last policy measured (a reload waiting for this round, or the enforced one after a refusal). */
int attest_tpm_round_log(int fd, const struct gd_measured *policy, struct meas_log *log, char *why,
			 size_t cap);
/* A quote over the PCR with 'qualifying' as extraData, and the AK's signature over it. */
int attest_tpm_quote(int fd, const uint8_t qualifying[32], uint8_t *attest, size_t *attest_len,
		     uint8_t *sig, size_t *sig_len, char *why, size_t cap);

#endif
