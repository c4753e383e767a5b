/* codec.h: value codecs: raw bytes and 16-bit registers to typed values and back, scale and offset.
 */
#ifndef CODEC_H
#define CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

/*
 * Byte orders, for a 32-bit value whose big-endian bytes are A B C D
 * (A most significant), as they appear in registers r0, r1:
 *   ABCD: r0 = AB, r1 = CD   (Modbus standard; big-endian words and bytes)
 *   CDAB: r0 = CD, r1 = AB   (word swap)
 *   BADC: r0 = BA, r1 = DC   (byte swap within each word)
 *   DCBA: r0 = DC, r1 = BA   (little-endian)
 * 64-bit values extend the same rule over four registers (ABCD: r0 holds the
 * most significant word; CDAB: r0 holds the least significant word). 16-bit
 * values use only the byte rule: ABCD and CDAB read r0 as is, BADC and DCBA
 * swap its bytes. Registers are host-order uint16_t as libmodbus returns them.
 *
 * Strings: 'length' characters, two per register, high byte first for ABCD and
 * CDAB, low byte first for BADC and DCBA. Decoding stops at the first NUL and
 * drops trailing spaces; bytes outside printable ASCII become '?'. Over bytes
 * (codec_*_bytes) the order applies to numbers only: strings keep their
 * character order. NaN and infinities encode into f32/f64 as they are; bools
 * are never scaled.
 */

/* Registers a value of type 't' occupies; for strings, (length + 1) / 2. */
size_t codec_registers(enum value_type t, size_t length);
/* Bytes a value of type 't' occupies; for strings, 'length'; bool: 1. */
size_t codec_bytes(enum value_type t, size_t length);

/*
 * Decodes the raw (unscaled) value of type 't' from 'regs' (at least
 * codec_registers(t, length) of them). Strings are written to 'strbuf'
 * (NUL-terminated, at least length + 1 bytes) and out->s points to it.
 * bool from a register: non-zero is true. Returns 0, or GD_EINVAL.
 */
int codec_decode_regs(enum value_type t, enum byte_order o, size_t length, const uint16_t *regs,
		      struct value *out, char *strbuf);

/* The reverse: writes codec_registers(t, length) registers. Returns 0, GD_EINVAL or GD_ERANGE. */
int codec_encode_regs(enum value_type t, enum byte_order o, size_t length, const struct value *in,
		      uint16_t *regs);

/* The same over bytes (CAN payloads, binary serial frames): ABCD is big-endian. */
int codec_decode_bytes(enum value_type t, enum byte_order o, size_t length, const uint8_t *bytes,
		       struct value *out, char *strbuf);
int codec_encode_bytes(enum value_type t, enum byte_order o, size_t length, const struct value *in,
		       uint8_t *bytes);

/*
 * Applies 'scale' and 'offset' to a raw value in place: integers stay integers
 * when scale == 1 and offset == 0, otherwise the value becomes a float. Float
 * results that are NaN or infinite make it return GD_ERANGE (the caller marks
 * the sample QUALITY_BAD_VALUE). Strings and bools pass unchanged. A scaled
 * result is rounded to 15 significant digits, so 2006 * 0.1 - 40 is 160.6 and
 * not 160.60000000000002.
 */
int codec_scale(struct value *v, double scale, double offset);

/*
 * The reverse, for writes: turns an engineering value into the raw value of
 * type 't' ((v - offset) / scale, rounded to nearest for integer types).
 * Returns GD_ERANGE when the result does not fit 't', GD_EINVAL for a kind
 * that cannot become 't' (a string for a number).
 */
int codec_unscale(const struct value *eng, enum value_type t, double scale, double offset,
		  struct value *raw);

#endif
