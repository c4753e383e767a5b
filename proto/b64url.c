/* b64url.c: base64url without padding, strict when decoding. */
#include "b64url.h"

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
	size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	size_t o = 0;

	if (out == NULL || need >= cap || need > INT32_MAX)
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		if (left > 1)
			out[o++] = b64url_alphabet[(v >> 6) & 63];
		if (left > 2)
			out[o++] = b64url_alphabet[v & 63];
	}
	out[o] = '\0';
	return (int)o;
}

static int b64url_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

int b64url_decode(const char *in, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0, i;

	if (in == NULL)
		return -1;
	for (i = 0; in[i] != '\0'; i++) {
		int v = b64url_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap || o >= INT32_MAX)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* A lone last character (6 bits) cannot end a byte; leftover bits must be zero. */
	if (i % 4 == 1 || (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (int)o;
}
