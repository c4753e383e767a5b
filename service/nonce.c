/* nonce.c: stateless nonces (a MAC under nonce.key), single use through the store, which every
 * instance on it sees (store_nonce_consume). */
#include <stdio.h>
#include <string.h>

#include <mbedtls/constant_time.h>
#include <mbedtls/md.h>

#include "service.h"

#define NONCE_TS_LEN   8
#define NONCE_RAND_LEN 16
#define NONCE_MAC_LEN  16

/* HMAC-SHA256(nonce.key, dev || ts || r), truncated. */
static int nonce_mac(const struct service *s, const char *dev, const uint8_t *ts_r,
		     uint8_t mac[NONCE_MAC_LEN])
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	mbedtls_md_context_t ctx;
	uint8_t full[32];
	int rc = GD_EINVAL;

	mbedtls_md_init(&ctx);
	if (mbedtls_md_setup(&ctx, md, 1) != 0 ||
	    mbedtls_md_hmac_starts(&ctx, s->nonce_key, sizeof(s->nonce_key)) != 0 ||
	    mbedtls_md_hmac_update(&ctx, (const unsigned char *)dev, strlen(dev)) != 0 ||
	    mbedtls_md_hmac_update(&ctx, ts_r, NONCE_TS_LEN + NONCE_RAND_LEN) != 0 ||
	    mbedtls_md_hmac_finish(&ctx, full) != 0)
		goto out;
	memcpy(mac, full, NONCE_MAC_LEN);
	rc = 0;
out:
	mbedtls_md_free(&ctx);
	return rc;
}

int64_t nonce_time_ms(const uint8_t nonce[NONCE_LEN])
{
	uint64_t ts = 0;

	for (int i = 0; i < NONCE_TS_LEN; i++)
		ts = ts << 8 | nonce[i];
	return (int64_t)ts;
}

int nonce_make(struct service *s, const char *dev, int64_t now_ms, uint8_t nonce[NONCE_LEN])
{
	uint64_t ts = (uint64_t)now_ms;

	for (int i = NONCE_TS_LEN - 1; i >= 0; i--) {
		nonce[i] = (uint8_t)ts;
		ts >>= 8;
	}
	if (mbedtls_ctr_drbg_random(&s->drbg, nonce + NONCE_TS_LEN, NONCE_RAND_LEN) != 0)
		return GD_EIO;
	return nonce_mac(s, dev, nonce, nonce + NONCE_TS_LEN + NONCE_RAND_LEN);
}

int nonce_verify(struct service *s, const char *dev, const uint8_t nonce[NONCE_LEN], int64_t now_ms)
{
	uint8_t mac[NONCE_MAC_LEN];

	if (nonce_mac(s, dev, nonce, mac) != 0)
		return GD_EINVAL;
	if (mbedtls_ct_memcmp(mac, nonce + NONCE_TS_LEN + NONCE_RAND_LEN, NONCE_MAC_LEN) != 0)
		return REASON_BAD_NONCE;
	if (now_ms - nonce_time_ms(nonce) > (int64_t)s->cfg.nonce_ttl_s * 1000)
		return REASON_STALE_NONCE;
	return REASON_OK;
}

int nonce_check(struct service *s, const char *dev, const uint8_t nonce[NONCE_LEN], int64_t now_ms,
		const uint8_t tag[16], bool *duplicate)
{
	char why[512];
	int64_t ts = nonce_time_ms(nonce);
	int rc;

	*duplicate = false;
	rc = nonce_verify(s, dev, nonce, now_ms);
	if (rc != REASON_OK)
		return rc;
	rc = store_nonce_consume(s->store, nonce, ts, tag, duplicate, why, sizeof(why));
	if (rc < 0) {
		log_warnx(SERVICE_SUBSYS, "%s: cannot mark the nonce used: %s", dev, why);
		return rc;
	}
	return rc == STORE_USED ? REASON_REPLAYED_NONCE : REASON_OK;
}

int nonce_sweep(struct service *s, int64_t now_ms)
{
	int64_t keep_ms = ((int64_t)s->cfg.nonce_ttl_s + SERVICE_NONCE_MARGIN_S) * 1000;
	char why[512];
	int rc = store_nonce_sweep(s->store, now_ms - keep_ms, why, sizeof(why));

	if (rc < 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		return 0;
	}
	return rc;
}
