/* text.c: helpers every part uses: hex digits, UTF-8 sequences, "why" sentences, backoff. */
#include <stdarg.h>
#include <stdio.h>

#include "base.h"

const char gd_hex_digits[] = "0123456789abcdef";

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
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = gd_hex_digits[in[i] >> 4];
		out[2 * i + 1] = gd_hex_digits[in[i] & 15];
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

size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		/* No overlong forms (e0 a0..), no surrogates (ed 80..9f). */
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
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
