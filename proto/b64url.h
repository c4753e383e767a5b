/* b64url.h: base64url (RFC 4648, section 5) without padding, with one spelling per byte string. */
#ifndef PROTO_B64URL_H
#define PROTO_B64URL_H

#include <stddef.h>
#include <stdint.h>

/* 'n' bytes as base64url into 'out', NUL-terminated. Returns the length, or -1 if 'cap' is short.
 */
int b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap);
/*
 * Decodes the NUL-terminated 'in' into 'out' (at most 'cap' bytes). Strict: no
 * padding, no white space, the unused low bits of the last character zero, so
 * that a nonce, remembered by its bytes, cannot be replayed re-spelt. Returns
 * the length, or -1.
 */
int b64url_decode(const char *in, uint8_t *out, size_t cap);

#endif
