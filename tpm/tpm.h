/* tpm.h: the TPM 2.0 the device's attestation key lives in (tpm2-tss ESAPI): the key, one PCR, and
 * quotes over it. Only guardian-launch (the broker) and `guardian provision` open a TPM. */
#ifndef GD_TPM_H
#define GD_TPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GD_TPM_ATTEST_MAX  1024 /* a marshalled TPMS_ATTEST */
#define GD_TPM_SIG_MAX	   80	/* a DER ECDSA P-256 signature */
#define GD_TPM_PEM_MAX	   512	/* a P-256 public key, PEM */
#define GD_TPM_PCR_DEFAULT 23	/* the TCG's application PCR */

/* In the state directory: the AK's wrapped blob (0600) and its public key (PEM). */
#define GD_TPM_AK_BLOB "identity-ak.tpm"
#define GD_TPM_AK_PEM  "identity-ak.pem"

struct gd_tpm;

/* Opens the TPM named by a TCTI string ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=N")
 * and starts it if the platform has not (TPM2_Startup). 0, or GD_EIO with the TCTI and the TPM's
 * answer in 'why' (*out NULL). */
int gd_tpm_open(const char *tcti, struct gd_tpm **out, char *why, size_t cap);
/* Flushes the loaded AK and closes the connection. Nothing happens if 't' is NULL. */
void gd_tpm_close(struct gd_tpm *t);

/* Makes a new attestation key (restricted ECC P-256 ECDSA-SHA256 signing key under the SRK) and
 * loads it in place of the one before; its wrapped blob (TPM2B_PUBLIC || TPM2B_PRIVATE,
 * marshalled) into *blob (caller frees). 0 or GD_EIO with 'why' (the AK before stays). */
int gd_tpm_ak_create(struct gd_tpm *t, uint8_t **blob, size_t *len, char *why, size_t cap);
/* Loads a blob gd_tpm_ak_create wrote (under the same TPM's SRK). 0, GD_EINVAL (not a blob, or
 * not of an AK) or GD_EIO (this TPM does not take it: another TPM, or it was cleared) with
 * 'why'; on failure the AK before stays loaded. */
int gd_tpm_ak_load(struct gd_tpm *t, const uint8_t *blob, size_t len, char *why, size_t cap);
/* The loaded AK's public key, SubjectPublicKeyInfo PEM (about 180 bytes; GD_TPM_PEM_MAX is
 * enough). 0 or GD_EINVAL (no AK loaded, or 'cap' too small). */
int gd_tpm_ak_public_pem(struct gd_tpm *t, char *pem, size_t cap);

/* PCR 'pcr' of the SHA-256 bank: reset (locality 0: 16 and 23 only), extend, read. 0, GD_EINVAL
 * (no PCR 'pcr': 0 to 23) or GD_EIO, with the TPM command that failed in 'why'. */
int gd_tpm_pcr_reset(struct gd_tpm *t, int pcr, char *why, size_t cap);
int gd_tpm_pcr_extend(struct gd_tpm *t, int pcr, const uint8_t sha256[32], char *why, size_t cap);
int gd_tpm_pcr_read(struct gd_tpm *t, int pcr, uint8_t value[32], char *why, size_t cap);

/* TPM2_Quote by the AK over SHA-256 PCR 'pcr' with 'qualifying' as extraData: the TPMS_ATTEST
 * bytes into 'attest' (room for GD_TPM_ATTEST_MAX) and the DER ECDSA signature over SHA-256 of
 * them into 'sig' (room for GD_TPM_SIG_MAX). 0, GD_EINVAL (no AK loaded) or GD_EIO with 'why'. */
int gd_tpm_quote(struct gd_tpm *t, int pcr, const uint8_t qualifying[32], uint8_t *attest,
		 size_t *attest_len, uint8_t *sig, size_t *sig_len, char *why, size_t cap);

#endif
