/* fuzz_tpm_quote.c: libFuzzer target: any bytes as a TPM quote (TPMS_ATTEST) parse or are refused,
 * and what parses goes through every check after the signature, never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../proto/tpm_quote.h"

/*
 * The attestation key and signature of the real quote in tests/unit/fixtures/tpm (swtpm; its
 * README says how it was made); the seed fuzz/corpus/tpm_quote/swtpm.bin is that quote, so the
 * seed passes the signature and mutations of it are refused there.
 */
static const char ak_pem[] = "-----BEGIN PUBLIC KEY-----\n"
			     "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYpGS/GfMd1d6wDs0eofNvrt9Lp6g\n"
			     "sq14llzMeYsO4xBHIWyZ6SgeTCkyi4ekPZ5SPhv8I/ffWuDUNk2xOoU/tA==\n"
			     "-----END PUBLIC KEY-----\n";
static const uint8_t ak_sig[] = {
	0x30, 0x45, 0x02, 0x21, 0x00, 0xa7, 0x91, 0xc5, 0xe6, 0xfc, 0x49, 0xac, 0xa8, 0x0d, 0x45,
	0xd0, 0x83, 0x45, 0x0a, 0xe2, 0x2d, 0xc7, 0x30, 0x15, 0xa5, 0x43, 0x8d, 0xde, 0x78, 0xec,
	0xb1, 0x8b, 0xf9, 0x63, 0x1c, 0x18, 0x73, 0x02, 0x20, 0x5e, 0xd4, 0x1d, 0x9d, 0xde, 0xe2,
	0x42, 0x2b, 0x88, 0x23, 0x5f, 0x2d, 0xaf, 0xa4, 0x00, 0xf6, 0xdc, 0x27, 0x80, 0xa3, 0x5c,
	0xc6, 0x52, 0xf6, 0xf7, 0xf1, 0xa6, 0x96, 0x27, 0x10, 0xd6, 0xd3,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t zero[32];
	struct tpm_quote q;
	uint8_t extra[32];
	char why[256];
	int pcr;

	if (tpm_quote_parse(data, size, &q, why, sizeof(why)) != 0)
		return 0;
	/* Past extraData (the quote's own, when it has 32 bytes) to the selection and digest,
	 * for a PCR the input picks (out of range too). */
	memcpy(extra, q.extra_len == 32 ? q.extra : zero, 32);
	pcr = (int)(q.clock % 26) - 1;
	(void)tpm_quote_match(&q, zero, 23, zero, why, sizeof(why));
	(void)tpm_quote_match(&q, extra, pcr, zero, why, sizeof(why));
	(void)tpm_quote_match(&q, extra, 23, q.pcr_digest, why, sizeof(why));
	/* The whole check, as the service makes it: the signature first. Only what parses pays for
	 * an ECDSA verification. */
	(void)tpm_quote_check(data, size, ak_sig, sizeof(ak_sig), ak_pem, extra, 23, zero, why,
			      sizeof(why));
	return 0;
}
