/* text.c: small helpers every part uses: hex digits, "why" sentences and backoff. */
#include <stdarg.h>
#include <stdio.h>

#include "base.h"

int gd_hex_digit(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

void gd_hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

bool gd_hex_decode(const char *in, uint8_t *out, size_t n, char end)
{
	for (size_t i = 0; i < n; i++) {
		int hi = gd_hex_digit(in[2 * i]), lo = hi < 0 ? -1 : gd_hex_digit(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return in[2 * n] == end;
}

void gd_whyf(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

int gd_backoff_ms(int min_ms, int max_ms, int failures)
{
	long long d = min_ms;

	for (int i = 1; i < failures && d < max_ms; i++)
		d *= 2;
	return d > max_ms ? max_ms : (int)d;
}
