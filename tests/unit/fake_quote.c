/* fake_quote.c: quotes marshalled and signed by the tests (see fake_quote.h). */
#include <string.h>

#include <mbedtls/sha256.h>

#include "fake_quote.h"

void fake_quote_init(struct fake_quote *q, const uint8_t extra[32], int pcr,
		     const uint8_t pcr_value[32])
{
	memset(q, 0, sizeof(*q));
	q->magic = 0xff544347u;
	q->type = 0x8018;
	q->signer_len = 34; /* nameAlg SHA-256 || digest, as a TPM names a key */
	q->signer[0] = 0x00;
	q->signer[1] = 0x0b;
	for (int i = 2; i < 34; i++)
		q->signer[i] = (uint8_t)(0xa0 + i);
	q->extra_len = 32;
	memcpy(q->extra, extra, 32);
	q->clock = 0x0000018b50d8ae6aull;
	q->reset_count = 3;
	q->restart_count = 1;
	q->safe = 1;
	q->firmware_version = 0x2019100600163636ull;
	q->nbanks = 1;
	q->banks[0].alg = 0x000b;
	q->banks[0].size = 3;
	q->banks[0].select[pcr / 8] = (uint8_t)(1u << (pcr % 8));
	q->digest_len = 32;
	mbedtls_sha256_ret(pcr_value, 32, q->digest, 0);
}

struct writer {
	uint8_t *p;
	size_t cap, at;
	int short_of_room;
};

static void put_be(struct writer *w, uint64_t v, size_t n)
{
	if (w->at + n > w->cap) {
		w->short_of_room = 1;
		return;
	}
	for (size_t i = 0; i < n; i++)
		w->p[w->at + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	w->at += n;
}

static void put(struct writer *w, const uint8_t *b, size_t n)
{
	if (w->at + n > w->cap) {
		w->short_of_room = 1;
		return;
	}
	memcpy(w->p + w->at, b, n);
	w->at += n;
}

size_t fake_quote_marshal(const struct fake_quote *q, uint8_t *out, size_t cap)
{
	struct writer w = { .p = out, .cap = cap };

	put_be(&w, q->magic, 4);
	put_be(&w, q->type, 2);
	put_be(&w, q->signer_len, 2);
	put(&w, q->signer, q->signer_len < sizeof(q->signer) ? q->signer_len : sizeof(q->signer));
	put_be(&w, q->extra_len, 2);
	put(&w, q->extra, q->extra_len < sizeof(q->extra) ? q->extra_len : sizeof(q->extra));
	put_be(&w, q->clock, 8);
	put_be(&w, q->reset_count, 4);
	put_be(&w, q->restart_count, 4);
	put_be(&w, q->safe, 1);
	put_be(&w, q->firmware_version, 8);
	put_be(&w, q->nbanks, 4);
	for (uint32_t i = 0; i < q->nbanks && i < sizeof(q->banks) / sizeof(q->banks[0]); i++) {
		put_be(&w, q->banks[i].alg, 2);
		put_be(&w, q->banks[i].size, 1);
		put(&w, q->banks[i].select,
		    q->banks[i].size < sizeof(q->banks[i].select) ? q->banks[i].size
								  : sizeof(q->banks[i].select));
	}
	put_be(&w, q->digest_len, 2);
	put(&w, q->digest, q->digest_len < sizeof(q->digest) ? q->digest_len : sizeof(q->digest));
	return w.short_of_room ? 0 : w.at;
}

int fake_quote_sign(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg, const uint8_t *data,
		    size_t n, uint8_t *sig, size_t *siglen)
{
	uint8_t digest[32];

	mbedtls_sha256_ret(data, n, digest, 0);
	return mbedtls_pk_sign(key, MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, siglen,
			       mbedtls_ctr_drbg_random, drbg) == 0
		       ? 0
		       : -1;
}
