/* fuzz_evidence.c: libFuzzer target: any bytes as a signed evidence envelope (TPM evidence too)
 * must parse or be refused, and what parses must fold and verify without crashing or leaking. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/evidence.h"

/* A self-signed P-256 certificate (CN=press-07); its key signed the valid seed in the corpus. */
static const char test_cert[] = "-----BEGIN CERTIFICATE-----\n"
				"MIIBfTCCASOgAwIBAgIURldpyVbWwUK5hAI8mMTS026z/+YwCgYIKoZIzj0EAwIw\n"
				"EzERMA8GA1UEAwwIcHJlc3MtMDcwIBcNMjYxMTIxMjAyMjEzWhgPMjEyNjEwMjgy\n"
				"MDIyMTNaMBMxETAPBgNVBAMMCHByZXNzLTA3MFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
				"AQcDQgAE3QX8HSuvi+vKy01KyTKGSydMoVzp8IzMTFslpQrymaqLa9Z3tBQBl3/t\n"
				"5cEtnv/c67Lnn33D9XvIIIijPp2PnKNTMFEwHQYDVR0OBBYEFHCmLnqn8LB7a/vI\n"
				"7A3UPxlUDfMmMB8GA1UdIwQYMBaAFHCmLnqn8LB7a/vI7A3UPxlUDfMmMA8GA1Ud\n"
				"EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgWYvn4Pgz5zhGHjbkuzatSGTO\n"
				"8CfBp0Jblzf1VozCXBsCIQDZJ7HMAscEnmURFXlPdwsweG66umgVW25s3hRk/CZl\n"
				"tg==\n"
				"-----END CERTIFICATE-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct evidence ev; /* 23 KB: kept off the stack */
	static struct meas_log log;
	static struct tpm_quote q;
	static uint8_t quote[EVIDENCE_QUOTE_MAX];
	uint8_t sig[EVIDENCE_SIG_MAX], reg[32], ueid[UEID_LEN];
	size_t siglen = 0, quote_len = 0;
	char why[256];
	char *claims = NULL;

	if (evidence_envelope_parse_quote((const char *)data, size, &ev, &claims, sig, &siglen,
					  quote, &quote_len, why, sizeof(why)) == 0) {
		/* What the service does next: check the signature, fold, read op_pub. */
		(void)evidence_verify(claims, sig, siglen, test_cert);
		meas_fold(&ev.log, reg);
		(void)memcmp(reg, ev.log.reg, sizeof(reg));
		(void)evidence_ueid(ev.op_pub, ueid);
		if (quote_len > 0)
			(void)tpm_quote_parse(quote, quote_len, &q, why, sizeof(why));
		free(claims);
	}
	(void)meas_log_parse((const char *)data, size, &log, why, sizeof(why));
	return 0;
}
