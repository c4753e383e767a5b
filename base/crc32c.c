/* crc32c.c: CRC-32C (Castagnoli), the checksum of the spool's records (as in iSCSI, ext4, LevelDB).
 */
#include <pthread.h>

#include "base.h"

/* Reflected polynomial 0x1EDC6F41. Eight tables: one byte at a time would cost the spool a
 * measurable share of a core at the top rate; slicing by eight does not. */
static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++) {
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The SSE 4.2 instruction computes this very CRC, eight bytes a cycle or so: several times the
 * tables' speed, which the spool's writer (on the polling threads) feels at the top rate. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = ~crc;

	while (n >= 8) {
		uint64_t v;

		__builtin_memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

static int hw_state; /* 0 unknown, 1 yes, -1 no */
#endif

uint32_t gd_crc32c(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;

#if defined(__x86_64__) && defined(__GNUC__)
	int hw = __atomic_load_n(&hw_state, __ATOMIC_RELAXED);

	if (hw == 0) {
		__builtin_cpu_init();
		hw = __builtin_cpu_supports("sse4.2") ? 1 : -1;
		__atomic_store_n(&hw_state, hw, __ATOMIC_RELAXED);
	}
	if (hw > 0)
		return crc_hw(crc, p, n);
#endif
	return gd_crc32c_portable(crc, data, n);
}

uint32_t gd_crc32c_portable(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;

	pthread_once(&table_once, make_table);
	crc = ~crc;
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);

		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
		      table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^ table[3][p[4]] ^
		      table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}
