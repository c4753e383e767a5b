/* fuzz_attest_result.c: libFuzzer target: any bytes as the service's result or nonce message must
 * parse or be refused, never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../proto/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_result r;
	uint8_t nonce[NONCE_LEN];
	int64_t expires = 0;

	/* attest_result_free is safe after a failed parse too: it leaves no certificate. */
	if (attest_result_parse((const char *)data, size, &r) == 0 && r.ok) {
		char *again = attest_result_build(&r);

		free(again);
	}
	attest_result_free(&r);
	(void)attest_nonce_parse((const char *)data, size, nonce, &expires);
	return 0;
}
