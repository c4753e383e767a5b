/* nonce.c: stateless nonces (a MAC under nonce.key), single use through marker files any
 * instance on the same directory sees. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int64_t nonce_ts(const uint8_t nonce[NONCE_LEN])
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

/* Creates the marker of a used nonce. 0, or -1 with errno (EEXIST: used before). */
static int mark_used(const char *path, const uint8_t tag[16])
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ssize_t w;

	if (fd < 0)
		return -1;
	w = write(fd, tag, 16);
	close(fd);
	return w == 16 ? 0 : -1;
}

/* Whether the marker at 'path' holds 'tag'. */
static bool marker_holds(const char *path, const uint8_t tag[16])
{
	uint8_t held[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, held, sizeof(held));
	close(fd);
	return n == (ssize_t)sizeof(held) && memcmp(held, tag, sizeof(held)) == 0;
}

int nonce_check(struct service *s, const char *dev, const uint8_t nonce[NONCE_LEN], int64_t now_ms,
		const uint8_t tag[16], bool *duplicate)
{
	uint8_t mac[NONCE_MAC_LEN];
	char hex[2 * NONCE_LEN + 1], path[4096];
	int64_t ts = nonce_ts(nonce);

	*duplicate = false;
	if (nonce_mac(s, dev, nonce, mac) != 0)
		return GD_EINVAL;
	if (mbedtls_ct_memcmp(mac, nonce + NONCE_TS_LEN + NONCE_RAND_LEN, NONCE_MAC_LEN) != 0)
		return REASON_BAD_NONCE;
	if (now_ms - ts > (int64_t)s->cfg.nonce_ttl_s * 1000)
		return REASON_STALE_NONCE;
	gd_hex_encode(nonce, NONCE_LEN, hex);
	if (snprintf(path, sizeof(path), "%s/nonces/%s", s->dir, hex) >= (int)sizeof(path))
		return GD_EINVAL;
	if (mark_used(path, tag) == 0)
		return REASON_OK;
	if (errno == ENOENT) { /* a directory from before nonces/ existed */
		char sub[4096];

		snprintf(sub, sizeof(sub), "%s/nonces", s->dir);
		if (mkdir(sub, 0700) == 0 || errno == EEXIST) {
			if (mark_used(path, tag) == 0)
				return REASON_OK;
		}
	}
	if (errno != EEXIST) {
		log_warn(SERVICE_SUBSYS, "%s: cannot mark the nonce used", path);
		return GD_EIO;
	}
	*duplicate = marker_holds(path, tag);
	return REASON_REPLAYED_NONCE;
}

int nonce_sweep(struct service *s, int64_t now_ms)
{
	char dir[4096], path[4400];
	struct dirent *e;
	DIR *d;
	int removed = 0;
	int64_t keep_ms = ((int64_t)s->cfg.nonce_ttl_s + SERVICE_NONCE_MARGIN_S) * 1000;

	if (snprintf(dir, sizeof(dir), "%s/nonces", s->dir) >= (int)sizeof(dir))
		return 0;
	d = opendir(dir);
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		uint8_t nonce[NONCE_LEN];

		if (strlen(e->d_name) != 2 * NONCE_LEN ||
		    !gd_hex_decode(e->d_name, nonce, NONCE_LEN, '\0'))
			continue;
		if (now_ms - nonce_ts(nonce) <= keep_ms)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
