/* sim_evidence.h: what a simulated device puts in its evidence, shared by fleetsim and the
 * attestation benchmarks: the sample measurement log and an OpenSSL signer. Test and benchmark
 * only. */
#ifndef TESTS_HELPERS_SIM_EVIDENCE_H
#define TESTS_HELPERS_SIM_EVIDENCE_H

#include <stddef.h>
#include <stdint.h>

#include "../../proto/meas_log.h"

/*
 * The sample log every simulated device reports: exe, config, policy and a file, the i-th digest
 * (from 0) every byte 'step' * (i + 1). 0, or the failing meas_add's return.
 */
int sim_sample_log(struct meas_log *log, int step);

/* An evidence_sign_fn: signs 'digest' with the EVP_PKEY 'ctx' (ECDSA, DER into 'sig').
 * 0 or GD_EINVAL. */
int sim_sign_with(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len);

#endif
