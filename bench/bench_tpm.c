/* bench_tpm.c: what the device pays per attestation round for its evidence: a TPM quote by the
 * attestation key in swtpm (on loopback) against an ECDSA signature by the file identity key, in
 * the same run; and what guardian-launch's measurements cost at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../guardian/keystore.h"
#include "../tests/harness/harness.h"
#include "../tpm/tpm.h"

#define ROUNDS 100

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void report(const char *what, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), compare);
	printf("  %-44s median %7.3f ms, p95 %7.3f ms (%d)\n", what, v[n / 2], v[n * 95 / 100], n);
}

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "bench_tpm: %s: %s\n", what, why);
	h_cleanup();
	return 1;
}

int main(void)
{
	static double quote_ms[ROUNDS], sign_ms[ROUNDS], extend_ms[ROUNDS];
	uint8_t q[32] = { 1 }, attest[GD_TPM_ATTEST_MAX], sig[GD_TPM_SIG_MAX], *blob = NULL;
	size_t alen, slen, blen = 0;
	struct keystore *ks = NULL;
	struct gd_tpm *t = NULL;
	char why[512], state[300];
	double t0;
	int port = 0;

	if (h_swtpm(&port) <= 0)
		return fail("swtpm", h_have_swtpm() ? "did not start" : h_swtpm_missing());
	if (gd_tpm_open(h_swtpm_tcti(port), &t, why, sizeof(why)) != 0 ||
	    gd_tpm_ak_create(t, &blob, &blen, why, sizeof(why)) != 0)
		return fail("TPM", why);
	snprintf(state, sizeof(state), "%s", h_path("state"));
	if (keystore_open(state, true, &ks, why, sizeof(why)) != 0)
		return fail("file keystore", why);
	/* Interleaved, so that whatever else the machine does hits both alike. */
	for (int i = 0; i < ROUNDS; i++) {
		q[1] = (uint8_t)i;
		alen = sizeof(attest);
		slen = sizeof(sig);
		t0 = now_ms();
		if (gd_tpm_quote(t, GD_TPM_PCR_DEFAULT, q, attest, &alen, sig, &slen, why,
				 sizeof(why)) != 0)
			return fail("quote", why);
		quote_ms[i] = now_ms() - t0;
		t0 = now_ms();
		if (keystore_sign(ks, q, sig, sizeof(sig), &slen) != 0)
			return fail("sign", "the file key did not sign");
		sign_ms[i] = now_ms() - t0;
		t0 = now_ms();
		if (gd_tpm_pcr_extend(t, GD_TPM_PCR_DEFAULT, q, why, sizeof(why)) != 0)
			return fail("extend", why);
		extend_ms[i] = now_ms() - t0;
	}
	printf("evidence on the device, %d rounds each, interleaved (swtpm on loopback):\n",
	       ROUNDS);
	report("TPM quote by the attestation key", quote_ms, ROUNDS);
	report("ECDSA signature by the file identity key", sign_ms, ROUNDS);
	report("PCR extend (one item of guardian-launch)", extend_ms, ROUNDS);
	printf("  quote / file signature: %.1fx\n", quote_ms[ROUNDS / 2] / sign_ms[ROUNDS / 2]);
	free(blob);
	keystore_close(ks);
	gd_tpm_close(t);
	h_cleanup();
	return 0;
}
