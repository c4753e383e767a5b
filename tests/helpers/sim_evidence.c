/* sim_evidence.c: the sample measurement log and OpenSSL signer of simulated devices. */
#include <string.h>

#include <openssl/evp.h>

#include "../../base/base.h"
#include "sim_evidence.h"

int sim_sample_log(struct meas_log *log, int step)
{
	static const char *const items[][2] = { { "exe", "/usr/bin/guardian" },
						{ "config", "/etc/guardian/site.json" },
						{ "policy", "/etc/guardian/policy.json" },
						{ "file", "/etc/guardian/ca.crt" } };
	uint8_t digest[32];

	meas_init(log);
	for (size_t i = 0; i < 4; i++) {
		int rc;

		memset(digest, (int)((size_t)step * (i + 1)), sizeof(digest));
		rc = meas_add(log, items[i][0], items[i][1], digest);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int sim_sign_with(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(ctx, NULL);
	size_t n = cap;
	int rc = GD_EINVAL;

	if (pctx != NULL && EVP_PKEY_sign_init(pctx) > 0 &&
	    EVP_PKEY_sign(pctx, sig, &n, digest, 32) > 0) {
		*len = n;
		rc = 0;
	}
	EVP_PKEY_CTX_free(pctx);
	return rc;
}
