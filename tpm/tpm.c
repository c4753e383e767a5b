/* tpm.c: the TPM 2.0 through tpm2-tss ESAPI: the storage primary, the attestation key, one
 * SHA-256 PCR and quotes over it. */
#include <errno.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "../base/base.h"
#include "tpm.h"

/* Longest TCTI string kept to name the TPM in errors. */
#define TCTI_NAME_MAX 128

struct gd_tpm {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *esys;
	char tcti_name[TCTI_NAME_MAX];
	bool ak_loaded;
	ESYS_TR ak;
	TPM2B_PUBLIC ak_public;
};

/* The storage primary: the TCG's ECC NIST P-256 SRK template (TPM v2.0 Provisioning Guidance),
 * made again under the owner hierarchy each time; the same template gives the same key. */
static const TPM2B_PUBLIC srk_template = {
	.publicArea = {
		.type = TPM2_ALG_ECC,
		.nameAlg = TPM2_ALG_SHA256,
		.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
				    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
				    TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
		.parameters.eccDetail = {
			.symmetric = { .algorithm = TPM2_ALG_AES,
				       .keyBits.aes = 128,
				       .mode.aes = TPM2_ALG_CFB },
			.scheme = { .scheme = TPM2_ALG_NULL },
			.curveID = TPM2_ECC_NIST_P256,
			.kdf = { .scheme = TPM2_ALG_NULL },
		},
		.unique.ecc = { .x = { .size = 32 }, .y = { .size = 32 } },
	},
};

#define AK_ATTRIBUTES                                                                              \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |        \
	 TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT)

/* The attestation key: restricted ECDSA-SHA256 signing on NIST P-256, empty auth. */
static const TPM2B_PUBLIC ak_template = {
	.publicArea = {
		.type = TPM2_ALG_ECC,
		.nameAlg = TPM2_ALG_SHA256,
		.objectAttributes = AK_ATTRIBUTES,
		.parameters.eccDetail = {
			.symmetric = { .algorithm = TPM2_ALG_NULL },
			.scheme = { .scheme = TPM2_ALG_ECDSA,
				    .details.ecdsa.hashAlg = TPM2_ALG_SHA256 },
			.curveID = TPM2_ECC_NIST_P256,
			.kdf = { .scheme = TPM2_ALG_NULL },
		},
	},
};

/* "TPM2_Quote on swtpm:...: tpm:handle(1):..." into 'why'; always GD_EIO. */
static int tpm_fail(const struct gd_tpm *t, const char *command, TSS2_RC rc, char *why, size_t cap)
{
	gd_whyf(why, cap, "%s on %s: %s (0x%x)", command, t->tcti_name, Tss2_RC_Decode(rc),
		(unsigned)rc);
	return GD_EIO;
}

int gd_tpm_open(const char *tcti, struct gd_tpm **out, char *why, size_t cap)
{
	struct gd_tpm *t = calloc(1, sizeof(*t));
	TSS2_RC rc;

	*out = NULL;
	if (t == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	snprintf(t->tcti_name, sizeof(t->tcti_name), "%s", tcti);
	rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
	if (rc != TSS2_RC_SUCCESS) {
		gd_whyf(why, cap, "cannot reach the TPM at \"%s\": %s (0x%x)", tcti,
			Tss2_RC_Decode(rc), (unsigned)rc);
		t->tcti = NULL;
		goto fail;
	}
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tpm_fail(t, "Esys_Initialize", rc, why, cap);
		t->esys = NULL;
		goto fail;
	}
	/* A TPM the platform started already answers TPM2_RC_INITIALIZE: that is fine. */
	rc = Esys_Startup(t->esys, TPM2_SU_CLEAR);
	if (rc != TSS2_RC_SUCCESS && (rc & ~TSS2_RC_LAYER_MASK) != TPM2_RC_INITIALIZE) {
		tpm_fail(t, "TPM2_Startup", rc, why, cap);
		goto fail;
	}
	*out = t;
	return 0;
fail:
	gd_tpm_close(t);
	return GD_EIO;
}

void gd_tpm_close(struct gd_tpm *t)
{
	if (t == NULL)
		return;
	if (t->ak_loaded)
		Esys_FlushContext(t->esys, t->ak);
	if (t->esys != NULL)
		Esys_Finalize(&t->esys);
	if (t->tcti != NULL)
		Tss2_TctiLdr_Finalize(&t->tcti);
	free(t);
}

/* Makes the SRK (transient: the caller flushes it). 0 or GD_EIO. */
static int srk_create(struct gd_tpm *t, ESYS_TR *srk, char *why, size_t cap)
{
	const TPM2B_SENSITIVE_CREATE sensitive = { .size = 0 };
	const TPM2B_DATA outside = { .size = 0 };
	const TPML_PCR_SELECTION creation_pcr = { .count = 0 };
	TSS2_RC rc;

	rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				ESYS_TR_NONE, &sensitive, &srk_template, &outside, &creation_pcr,
				srk, NULL, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tpm_fail(t, "TPM2_CreatePrimary (storage key, owner hierarchy)", rc, why,
				cap);
	return 0;
}

/* Makes 'handle' (with public part 'pub') the loaded AK, flushing the one before. */
static void ak_replace(struct gd_tpm *t, ESYS_TR handle, const TPM2B_PUBLIC *pub)
{
	if (t->ak_loaded)
		Esys_FlushContext(t->esys, t->ak);
	t->ak = handle;
	t->ak_public = *pub;
	t->ak_loaded = true;
}

/* Loads pub/priv under a fresh SRK into *ak. 0 or GD_EIO. */
static int ak_load_parts(struct gd_tpm *t, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv,
			 ESYS_TR *ak, char *why, size_t cap)
{
	ESYS_TR srk = ESYS_TR_NONE;
	TSS2_RC rc;
	int err;

	err = srk_create(t, &srk, why, cap);
	if (err != 0)
		return err;
	rc = Esys_Load(t->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, ak);
	Esys_FlushContext(t->esys, srk);
	if (rc != TSS2_RC_SUCCESS) {
		gd_whyf(why, cap,
			"TPM2_Load of the attestation key on %s: %s (0x%x): the key was not made "
			"under this TPM's storage key (another TPM, or the TPM was cleared)",
			t->tcti_name, Tss2_RC_Decode(rc), (unsigned)rc);
		return GD_EIO;
	}
	return 0;
}

int gd_tpm_ak_create(struct gd_tpm *t, uint8_t **blob, size_t *len, char *why, size_t cap)
{
	const TPM2B_SENSITIVE_CREATE sensitive = { .size = 0 };
	const TPM2B_DATA outside = { .size = 0 };
	const TPML_PCR_SELECTION creation_pcr = { .count = 0 };
	ESYS_TR srk = ESYS_TR_NONE, ak = ESYS_TR_NONE;
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *pub = NULL;
	size_t off = 0, max = sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE);
	uint8_t *out = NULL;
	TSS2_RC rc;
	int err;

	*blob = NULL;
	*len = 0;
	err = srk_create(t, &srk, why, cap);
	if (err != 0)
		return err;
	rc = Esys_Create(t->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
			 &ak_template, &outside, &creation_pcr, &priv, &pub, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		err = tpm_fail(t, "TPM2_Create (attestation key)", rc, why, cap);
		goto out;
	}
	rc = Esys_Load(t->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &ak);
	if (rc != TSS2_RC_SUCCESS) {
		err = tpm_fail(t, "TPM2_Load (attestation key)", rc, why, cap);
		goto out;
	}
	out = malloc(max);
	if (out == NULL) {
		gd_whyf(why, cap, "out of memory");
		err = GD_ENOMEM;
		goto out;
	}
	rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, out, max, &off);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, out, max, &off);
	if (rc != TSS2_RC_SUCCESS) {
		gd_whyf(why, cap, "cannot marshal the attestation key: %s", Tss2_RC_Decode(rc));
		err = GD_EIO;
		goto out;
	}
	ak_replace(t, ak, pub);
	ak = ESYS_TR_NONE;
	*blob = out;
	*len = off;
	out = NULL;
out:
	if (ak != ESYS_TR_NONE)
		Esys_FlushContext(t->esys, ak);
	Esys_FlushContext(t->esys, srk);
	free(out);
	Esys_Free(priv);
	Esys_Free(pub);
	return err;
}

/* The public area is the AK of ak_template (another key, even a TPM's, is no attestation key). */
static bool is_ak(const TPMT_PUBLIC *p)
{
	const TPMS_ECC_PARMS *ecc = &p->parameters.eccDetail;

	return p->type == TPM2_ALG_ECC && p->nameAlg == TPM2_ALG_SHA256 &&
	       p->objectAttributes == AK_ATTRIBUTES && ecc->curveID == TPM2_ECC_NIST_P256 &&
	       ecc->scheme.scheme == TPM2_ALG_ECDSA &&
	       ecc->scheme.details.ecdsa.hashAlg == TPM2_ALG_SHA256 &&
	       ecc->symmetric.algorithm == TPM2_ALG_NULL && p->authPolicy.size == 0;
}

int gd_tpm_ak_load(struct gd_tpm *t, const uint8_t *blob, size_t len, char *why, size_t cap)
{
	TPM2B_PUBLIC pub = { .size = 0 };
	TPM2B_PRIVATE priv = { .size = 0 };
	ESYS_TR ak = ESYS_TR_NONE;
	size_t off = 0;
	int err;

	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob, len, &off, &pub) != TSS2_RC_SUCCESS ||
	    Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob, len, &off, &priv) != TSS2_RC_SUCCESS ||
	    off != len) {
		gd_whyf(why, cap,
			"not an attestation key blob (%zu bytes; expected a TPM2B_PUBLIC and a "
			"TPM2B_PRIVATE as guardian provision writes them)",
			len);
		return GD_EINVAL;
	}
	if (!is_ak(&pub.publicArea)) {
		gd_whyf(why, cap,
			"the blob holds another kind of key (expected a restricted ECDSA-SHA256 "
			"P-256 signing key)");
		return GD_EINVAL;
	}
	err = ak_load_parts(t, &pub, &priv, &ak, why, cap);
	if (err != 0)
		return err;
	ak_replace(t, ak, &pub);
	return 0;
}

/* A TPM2B_ECC_PARAMETER as 32 big-endian bytes (the TPM may drop leading zeros). */
static bool ecc_coord(const TPM2B_ECC_PARAMETER *p, uint8_t out[32])
{
	if (p->size > 32)
		return false;
	memset(out, 0, 32);
	memcpy(out + 32 - p->size, p->buffer, p->size);
	return true;
}

int gd_tpm_ak_public_pem(struct gd_tpm *t, char *pem, size_t cap)
{
	const TPMS_ECC_POINT *q = &t->ak_public.publicArea.unique.ecc;
	uint8_t point[65] = { 0x04 };
	mbedtls_pk_context pk;
	mbedtls_ecp_keypair *ec;
	int err = GD_EINVAL;

	if (!t->ak_loaded || !ecc_coord(&q->x, point + 1) || !ecc_coord(&q->y, point + 33))
		return GD_EINVAL;
	mbedtls_pk_init(&pk);
	if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0)
		goto out;
	ec = mbedtls_pk_ec(pk);
	if (mbedtls_ecp_group_load(&ec->grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
	    mbedtls_ecp_point_read_binary(&ec->grp, &ec->Q, point, sizeof(point)) != 0 ||
	    mbedtls_ecp_check_pubkey(&ec->grp, &ec->Q) != 0)
		goto out;
	if (mbedtls_pk_write_pubkey_pem(&pk, (unsigned char *)pem, cap) != 0)
		goto out;
	err = 0;
out:
	mbedtls_pk_free(&pk);
	return err;
}

/* A selection of PCR 'pcr' in the SHA-256 bank. */
static void pcr_select(int pcr, TPML_PCR_SELECTION *sel)
{
	memset(sel, 0, sizeof(*sel));
	sel->count = 1;
	sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel->pcrSelections[0].sizeofSelect = 3;
	sel->pcrSelections[0].pcrSelect[pcr / 8] = (uint8_t)(1u << (pcr % 8));
}

static int pcr_check(const struct gd_tpm *t, int pcr, char *why, size_t cap)
{
	if (pcr >= 0 && pcr < 24)
		return 0;
	gd_whyf(why, cap, "PCR %d on %s: no such PCR (expected 0 to 23)", pcr, t->tcti_name);
	return GD_EINVAL;
}

int gd_tpm_pcr_reset(struct gd_tpm *t, int pcr, char *why, size_t cap)
{
	TSS2_RC rc;
	int err = pcr_check(t, pcr, why, cap);

	if (err != 0)
		return err;
	rc = Esys_PCR_Reset(t->esys, ESYS_TR_PCR0 + (ESYS_TR)pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			    ESYS_TR_NONE);
	if (rc != TSS2_RC_SUCCESS) {
		gd_whyf(why, cap,
			"TPM2_PCR_Reset of PCR %d on %s: %s (0x%x) (only PCRs 16 and 23 can be "
			"reset at locality 0)",
			pcr, t->tcti_name, Tss2_RC_Decode(rc), (unsigned)rc);
		return GD_EIO;
	}
	return 0;
}

int gd_tpm_pcr_extend(struct gd_tpm *t, int pcr, const uint8_t sha256[32], char *why, size_t cap)
{
	TPML_DIGEST_VALUES digests = { .count = 1 };
	TSS2_RC rc;
	int err = pcr_check(t, pcr, why, cap);

	if (err != 0)
		return err;
	digests.digests[0].hashAlg = TPM2_ALG_SHA256;
	memcpy(digests.digests[0].digest.sha256, sha256, 32);
	rc = Esys_PCR_Extend(t->esys, ESYS_TR_PCR0 + (ESYS_TR)pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			     ESYS_TR_NONE, &digests);
	if (rc != TSS2_RC_SUCCESS) {
		gd_whyf(why, cap, "TPM2_PCR_Extend of PCR %d on %s: %s (0x%x)", pcr, t->tcti_name,
			Tss2_RC_Decode(rc), (unsigned)rc);
		return GD_EIO;
	}
	return 0;
}

int gd_tpm_pcr_read(struct gd_tpm *t, int pcr, uint8_t value[32], char *why, size_t cap)
{
	TPML_PCR_SELECTION sel;
	TPML_DIGEST *values = NULL;
	TSS2_RC rc;
	int err = pcr_check(t, pcr, why, cap);

	if (err != 0)
		return err;
	pcr_select(pcr, &sel);
	rc = Esys_PCR_Read(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL, NULL,
			   &values);
	if (rc != TSS2_RC_SUCCESS)
		return tpm_fail(t, "TPM2_PCR_Read", rc, why, cap);
	if (values->count != 1 || values->digests[0].size != 32) {
		gd_whyf(why, cap,
			"TPM2_PCR_Read on %s: no SHA-256 value for PCR %d (is the "
			"SHA-256 bank allocated?)",
			t->tcti_name, pcr);
		err = GD_EIO;
	} else {
		memcpy(value, values->digests[0].buffer, 32);
	}
	Esys_Free(values);
	return err;
}

/* An ECDSA signature (r, s) as DER SEQUENCE { INTEGER r, INTEGER s } into sig (at most 'cap'
 * bytes). 0 or -1. */
static int ecdsa_der(const TPMS_SIGNATURE_ECC *ecc, uint8_t *sig, size_t cap, size_t *sig_len)
{
	unsigned char buf[GD_TPM_SIG_MAX + 16];
	unsigned char *p = buf + sizeof(buf);
	mbedtls_mpi r, s;
	int parts[4] = { -1, -1, -1, -1 };
	size_t len = 0;
	int err = -1;

	mbedtls_mpi_init(&r);
	mbedtls_mpi_init(&s);
	if (mbedtls_mpi_read_binary(&r, ecc->signatureR.buffer, ecc->signatureR.size) != 0 ||
	    mbedtls_mpi_read_binary(&s, ecc->signatureS.buffer, ecc->signatureS.size) != 0)
		goto out;
	/* mbedtls writes DER backwards, from the end of 'buf'. */
	parts[0] = mbedtls_asn1_write_mpi(&p, buf, &s);
	if (parts[0] >= 0)
		parts[1] = mbedtls_asn1_write_mpi(&p, buf, &r);
	if (parts[1] >= 0)
		parts[2] = mbedtls_asn1_write_len(&p, buf, (size_t)(parts[0] + parts[1]));
	if (parts[2] >= 0)
		parts[3] = mbedtls_asn1_write_tag(&p, buf,
						  MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
	if (parts[3] < 0)
		goto out;
	len = (size_t)(parts[0] + parts[1] + parts[2] + parts[3]);
	if (len > cap)
		goto out;
	memcpy(sig, p, len);
	*sig_len = len;
	err = 0;
out:
	mbedtls_mpi_free(&r);
	mbedtls_mpi_free(&s);
	return err;
}

int gd_tpm_quote(struct gd_tpm *t, int pcr, const uint8_t qualifying[32], uint8_t *attest,
		 size_t *attest_len, uint8_t *sig, size_t *sig_len, char *why, size_t cap)
{
	const TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_ECDSA,
					 .details.ecdsa.hashAlg = TPM2_ALG_SHA256 };
	TPM2B_DATA extra = { .size = 32 };
	TPML_PCR_SELECTION sel;
	TPM2B_ATTEST *quoted = NULL;
	TPMT_SIGNATURE *signature = NULL;
	TSS2_RC rc;
	int err = pcr_check(t, pcr, why, cap);

	if (err != 0)
		return err;
	if (!t->ak_loaded) {
		gd_whyf(why, cap, "TPM2_Quote on %s: no attestation key loaded", t->tcti_name);
		return GD_EINVAL;
	}
	memcpy(extra.buffer, qualifying, 32);
	pcr_select(pcr, &sel);
	rc = Esys_Quote(t->esys, t->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &extra,
			&scheme, &sel, &quoted, &signature);
	if (rc != TSS2_RC_SUCCESS)
		return tpm_fail(t, "TPM2_Quote", rc, why, cap);
	if (quoted->size > GD_TPM_ATTEST_MAX) {
		gd_whyf(why, cap, "TPM2_Quote on %s: %u bytes of attestation (at most %d expected)",
			t->tcti_name, (unsigned)quoted->size, GD_TPM_ATTEST_MAX);
		err = GD_EIO;
		goto out;
	}
	if (signature->sigAlg != TPM2_ALG_ECDSA ||
	    ecdsa_der(&signature->signature.ecdsa, sig, GD_TPM_SIG_MAX, sig_len) != 0) {
		gd_whyf(why, cap, "TPM2_Quote on %s: not an ECDSA P-256 signature (algorithm 0x%x)",
			t->tcti_name, (unsigned)signature->sigAlg);
		err = GD_EIO;
		goto out;
	}
	memcpy(attest, quoted->attestationData, quoted->size);
	*attest_len = quoted->size;
out:
	Esys_Free(quoted);
	Esys_Free(signature);
	return err;
}
