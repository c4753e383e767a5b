/* test_codec.c: hand-written register and byte images decode to known values in every order, and
 * back. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../adapters/codec.h"

#define SENTINEL16 0xa5a5
#define SENTINEL8  0xa5

static const char *const order_names[] = { "ABCD", "CDAB", "BADC", "DCBA" };
static const enum byte_order all_orders[] = { ORDER_ABCD, ORDER_CDAB, ORDER_BADC, ORDER_DCBA };

static struct value v_bool(bool b)
{
	return (struct value){ .kind = VALUE_KIND_BOOL, .b = b };
}

static struct value v_int(int64_t i)
{
	return (struct value){ .kind = VALUE_KIND_INT, .i = i };
}

static struct value v_uint(uint64_t u)
{
	return (struct value){ .kind = VALUE_KIND_UINT, .u = u };
}

static struct value v_float(double f)
{
	return (struct value){ .kind = VALUE_KIND_FLOAT, .f = f };
}

static struct value v_str(const char *s)
{
	return (struct value){ .kind = VALUE_KIND_STRING, .s = s };
}

static void assert_value(const struct value *got, const struct value *want, const char *what)
{
	cr_assert_eq(got->kind, want->kind, "%s: kind %d, expected %d", what, (int)got->kind,
		     (int)want->kind);
	switch (want->kind) {
	case VALUE_KIND_BOOL:
		cr_assert_eq(got->b, want->b, "%s: %d, expected %d", what, got->b, want->b);
		break;
	case VALUE_KIND_INT:
		cr_assert_eq(got->i, want->i, "%s: %lld, expected %lld", what, (long long)got->i,
			     (long long)want->i);
		break;
	case VALUE_KIND_UINT:
		cr_assert_eq(got->u, want->u, "%s: %llu, expected %llu", what,
			     (unsigned long long)got->u, (unsigned long long)want->u);
		break;
	case VALUE_KIND_FLOAT:
		cr_assert(got->f == want->f, "%s: %.17g, expected %.17g", what, got->f, want->f);
		break;
	case VALUE_KIND_STRING:
		cr_assert_str_eq(got->s, want->s, "%s: \"%s\", expected \"%s\"", what, got->s,
				 want->s);
		break;
	default:
		cr_assert_fail("%s: unexpected kind", what);
	}
}

/* One value in one order, its registers and its bytes written out by hand. */
struct image {
	enum byte_order order;
	uint16_t regs[4];
	uint8_t bytes[8];
};

/*
 * Decodes every image to 'want' and encodes 'want' back to every image, over
 * registers and over bytes; the encoders must write nothing past the value.
 */
static void check_images(const char *label, enum value_type t, struct value want,
			 const struct image img[4])
{
	size_t nregs = codec_registers(t, 0), nbytes = codec_bytes(t, 0);

	for (int n = 0; n < 4; n++) {
		enum byte_order o = img[n].order;
		uint16_t regs[5];
		uint8_t bytes[9];
		struct value got;
		char what[64];

		snprintf(what, sizeof(what), "%s %s regs", label, order_names[o]);
		memset(&got, 0, sizeof(got));
		cr_assert_eq(codec_decode_regs(t, o, 0, img[n].regs, &got, NULL), 0, "%s", what);
		assert_value(&got, &want, what);
		for (size_t k = 0; k < 5; k++)
			regs[k] = SENTINEL16;
		cr_assert_eq(codec_encode_regs(t, o, 0, &want, regs), 0, "%s", what);
		for (size_t k = 0; k < nregs; k++)
			cr_assert_eq(regs[k], img[n].regs[k],
				     "%s: encoded r%zu = 0x%04x, expected 0x%04x", what, k, regs[k],
				     img[n].regs[k]);
		cr_assert_eq(regs[nregs], SENTINEL16, "%s: wrote past its registers", what);

		snprintf(what, sizeof(what), "%s %s bytes", label, order_names[o]);
		memset(&got, 0, sizeof(got));
		cr_assert_eq(codec_decode_bytes(t, o, 0, img[n].bytes, &got, NULL), 0, "%s", what);
		assert_value(&got, &want, what);
		memset(bytes, SENTINEL8, sizeof(bytes));
		cr_assert_eq(codec_encode_bytes(t, o, 0, &want, bytes), 0, "%s", what);
		for (size_t k = 0; k < nbytes; k++)
			cr_assert_eq(bytes[k], img[n].bytes[k],
				     "%s: encoded b%zu = 0x%02x, expected 0x%02x", what, k,
				     bytes[k], img[n].bytes[k]);
		cr_assert_eq(bytes[nbytes], SENTINEL8, "%s: wrote past its bytes", what);
	}
}

/* Encodes 'in' as 't' in ABCD and compares the registers with 'want' (nwant of them). */
static void check_encode(enum value_type t, struct value in, const uint16_t *want, size_t nwant)
{
	uint16_t regs[4] = { SENTINEL16, SENTINEL16, SENTINEL16, SENTINEL16 };

	cr_assert_eq(codec_encode_regs(t, ORDER_ABCD, 0, &in, regs), 0);
	for (size_t k = 0; k < nwant; k++)
		cr_assert_eq(regs[k], want[k], "r%zu = 0x%04x, expected 0x%04x", k, regs[k],
			     want[k]);
}

/* Encoding 'in' as 't' fails with 'err' in every order and leaves the registers and bytes alone. */
static void check_encode_fails(enum value_type t, struct value in, int err)
{
	for (int n = 0; n < 4; n++) {
		uint16_t regs[4] = { SENTINEL16, SENTINEL16, SENTINEL16, SENTINEL16 };
		uint8_t bytes[8];

		memset(bytes, SENTINEL8, sizeof(bytes));
		cr_assert_eq(codec_encode_regs(t, all_orders[n], 0, &in, regs), err,
			     "%s: expected %d", order_names[n], err);
		cr_assert_eq(codec_encode_bytes(t, all_orders[n], 0, &in, bytes), err,
			     "%s bytes: expected %d", order_names[n], err);
		for (size_t k = 0; k < 4; k++)
			cr_assert_eq(regs[k], SENTINEL16, "a failed encode wrote r%zu", k);
		for (size_t k = 0; k < 8; k++)
			cr_assert_eq(bytes[k], SENTINEL8, "a failed encode wrote b%zu", k);
	}
}

/* Sizes */

Test(codec, registers_and_bytes_per_type)
{
	cr_assert_eq(codec_registers(VALUE_BOOL, 0), 1);
	cr_assert_eq(codec_registers(VALUE_U16, 0), 1);
	cr_assert_eq(codec_registers(VALUE_I16, 0), 1);
	cr_assert_eq(codec_registers(VALUE_U32, 0), 2);
	cr_assert_eq(codec_registers(VALUE_I32, 0), 2);
	cr_assert_eq(codec_registers(VALUE_F32, 0), 2);
	cr_assert_eq(codec_registers(VALUE_U64, 0), 4);
	cr_assert_eq(codec_registers(VALUE_I64, 0), 4);
	cr_assert_eq(codec_registers(VALUE_F64, 0), 4);
	cr_assert_eq(codec_registers(VALUE_STRING, 0), 0);
	cr_assert_eq(codec_registers(VALUE_STRING, 1), 1);
	cr_assert_eq(codec_registers(VALUE_STRING, 7), 4);
	cr_assert_eq(codec_registers(VALUE_STRING, 8), 4);
	cr_assert_eq(codec_registers(VALUE_U32, 99), 2, "length counts only for strings");

	cr_assert_eq(codec_bytes(VALUE_BOOL, 0), 1);
	cr_assert_eq(codec_bytes(VALUE_U16, 0), 2);
	cr_assert_eq(codec_bytes(VALUE_I16, 0), 2);
	cr_assert_eq(codec_bytes(VALUE_U32, 0), 4);
	cr_assert_eq(codec_bytes(VALUE_I32, 0), 4);
	cr_assert_eq(codec_bytes(VALUE_F32, 0), 4);
	cr_assert_eq(codec_bytes(VALUE_U64, 0), 8);
	cr_assert_eq(codec_bytes(VALUE_I64, 0), 8);
	cr_assert_eq(codec_bytes(VALUE_F64, 0), 8);
	cr_assert_eq(codec_bytes(VALUE_STRING, 7), 7);
}

Test(codec, unknown_type_has_no_size)
{
	cr_assert_eq(codec_registers((enum value_type)99, 4), 0);
	cr_assert_eq(codec_bytes((enum value_type)99, 4), 0);
}

/* Every type in every order */

Test(codec, u16_every_order)
{
	const struct image img[4] = {
		{ ORDER_ABCD, { 0x1234 }, { 0x12, 0x34 } },
		{ ORDER_CDAB, { 0x1234 }, { 0x12, 0x34 } },
		{ ORDER_BADC, { 0x3412 }, { 0x34, 0x12 } },
		{ ORDER_DCBA, { 0x3412 }, { 0x34, 0x12 } },
	};

	check_images("u16 0x1234", VALUE_U16, v_uint(0x1234), img);
}

Test(codec, i16_every_order)
{
	/* -12345 = 0x10000 - 12345 = 0xcfc7 */
	const struct image img[4] = {
		{ ORDER_ABCD, { 0xcfc7 }, { 0xcf, 0xc7 } },
		{ ORDER_CDAB, { 0xcfc7 }, { 0xcf, 0xc7 } },
		{ ORDER_BADC, { 0xc7cf }, { 0xc7, 0xcf } },
		{ ORDER_DCBA, { 0xc7cf }, { 0xc7, 0xcf } },
	};

	check_images("i16 -12345", VALUE_I16, v_int(-12345), img);
}

Test(codec, u32_every_order)
{
	const struct image img[4] = {
		{ ORDER_ABCD, { 0x1234, 0x5678 }, { 0x12, 0x34, 0x56, 0x78 } },
		{ ORDER_CDAB, { 0x5678, 0x1234 }, { 0x56, 0x78, 0x12, 0x34 } },
		{ ORDER_BADC, { 0x3412, 0x7856 }, { 0x34, 0x12, 0x78, 0x56 } },
		{ ORDER_DCBA, { 0x7856, 0x3412 }, { 0x78, 0x56, 0x34, 0x12 } },
	};

	check_images("u32 0x12345678", VALUE_U32, v_uint(0x12345678), img);
}

Test(codec, i32_every_order)
{
	/* -123456789: 123456789 = 0x075bcd15, ~ = 0xf8a432ea, + 1 = 0xf8a432eb */
	const struct image img[4] = {
		{ ORDER_ABCD, { 0xf8a4, 0x32eb }, { 0xf8, 0xa4, 0x32, 0xeb } },
		{ ORDER_CDAB, { 0x32eb, 0xf8a4 }, { 0x32, 0xeb, 0xf8, 0xa4 } },
		{ ORDER_BADC, { 0xa4f8, 0xeb32 }, { 0xa4, 0xf8, 0xeb, 0x32 } },
		{ ORDER_DCBA, { 0xeb32, 0xa4f8 }, { 0xeb, 0x32, 0xa4, 0xf8 } },
	};

	check_images("i32 -123456789", VALUE_I32, v_int(-123456789), img);
}

Test(codec, u64_every_order)
{
	const struct image img[4] = {
		{ ORDER_ABCD,
		  { 0x0123, 0x4567, 0x89ab, 0xcdef },
		  { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef } },
		{ ORDER_CDAB,
		  { 0xcdef, 0x89ab, 0x4567, 0x0123 },
		  { 0xcd, 0xef, 0x89, 0xab, 0x45, 0x67, 0x01, 0x23 } },
		{ ORDER_BADC,
		  { 0x2301, 0x6745, 0xab89, 0xefcd },
		  { 0x23, 0x01, 0x67, 0x45, 0xab, 0x89, 0xef, 0xcd } },
		{ ORDER_DCBA,
		  { 0xefcd, 0xab89, 0x6745, 0x2301 },
		  { 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01 } },
	};

	check_images("u64 0x0123456789abcdef", VALUE_U64, v_uint(0x0123456789abcdefULL), img);
}

Test(codec, i64_every_order)
{
	/* -0x0123456789abcdef: ~ = 0xfedcba9876543210, + 1 = 0xfedcba9876543211 */
	const struct image img[4] = {
		{ ORDER_ABCD,
		  { 0xfedc, 0xba98, 0x7654, 0x3211 },
		  { 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x11 } },
		{ ORDER_CDAB,
		  { 0x3211, 0x7654, 0xba98, 0xfedc },
		  { 0x32, 0x11, 0x76, 0x54, 0xba, 0x98, 0xfe, 0xdc } },
		{ ORDER_BADC,
		  { 0xdcfe, 0x98ba, 0x5476, 0x1132 },
		  { 0xdc, 0xfe, 0x98, 0xba, 0x54, 0x76, 0x11, 0x32 } },
		{ ORDER_DCBA,
		  { 0x1132, 0x5476, 0x98ba, 0xdcfe },
		  { 0x11, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe } },
	};

	check_images("i64 -0x0123456789abcdef", VALUE_I64, v_int(-0x0123456789abcdefLL), img);
}

Test(codec, f32_one_and_a_half_every_order)
{
	/* 1.5 = 1.1b x 2^0: sign 0, exponent 127 = 0x7f, fraction 0x400000 -> 0x3fc00000 */
	const struct image img[4] = {
		{ ORDER_ABCD, { 0x3fc0, 0x0000 }, { 0x3f, 0xc0, 0x00, 0x00 } },
		{ ORDER_CDAB, { 0x0000, 0x3fc0 }, { 0x00, 0x00, 0x3f, 0xc0 } },
		{ ORDER_BADC, { 0xc03f, 0x0000 }, { 0xc0, 0x3f, 0x00, 0x00 } },
		{ ORDER_DCBA, { 0x0000, 0xc03f }, { 0x00, 0x00, 0xc0, 0x3f } },
	};

	check_images("f32 1.5", VALUE_F32, v_float(1.5), img);
}

Test(codec, f32_negative_every_order)
{
	/* -1234.5 = -1.00110100101b x 2^10: sign 1, exponent 137 = 0x89 -> 0xc49a5000 */
	const struct image img[4] = {
		{ ORDER_ABCD, { 0xc49a, 0x5000 }, { 0xc4, 0x9a, 0x50, 0x00 } },
		{ ORDER_CDAB, { 0x5000, 0xc49a }, { 0x50, 0x00, 0xc4, 0x9a } },
		{ ORDER_BADC, { 0x9ac4, 0x0050 }, { 0x9a, 0xc4, 0x00, 0x50 } },
		{ ORDER_DCBA, { 0x0050, 0x9ac4 }, { 0x00, 0x50, 0x9a, 0xc4 } },
	};

	check_images("f32 -1234.5", VALUE_F32, v_float(-1234.5), img);
}

Test(codec, f32_pi_every_order)
{
	/* the float nearest pi is 0x40490fdb; decoded it widens exactly to double */
	const struct image img[4] = {
		{ ORDER_ABCD, { 0x4049, 0x0fdb }, { 0x40, 0x49, 0x0f, 0xdb } },
		{ ORDER_CDAB, { 0x0fdb, 0x4049 }, { 0x0f, 0xdb, 0x40, 0x49 } },
		{ ORDER_BADC, { 0x4940, 0xdb0f }, { 0x49, 0x40, 0xdb, 0x0f } },
		{ ORDER_DCBA, { 0xdb0f, 0x4940 }, { 0xdb, 0x0f, 0x49, 0x40 } },
	};

	check_images("f32 pi", VALUE_F32, v_float((double)3.14159265f), img);
}

Test(codec, f64_pi_every_order)
{
	/* the double nearest pi is 0x400921fb54442d18 */
	const struct image img[4] = {
		{ ORDER_ABCD,
		  { 0x4009, 0x21fb, 0x5444, 0x2d18 },
		  { 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18 } },
		{ ORDER_CDAB,
		  { 0x2d18, 0x5444, 0x21fb, 0x4009 },
		  { 0x2d, 0x18, 0x54, 0x44, 0x21, 0xfb, 0x40, 0x09 } },
		{ ORDER_BADC,
		  { 0x0940, 0xfb21, 0x4454, 0x182d },
		  { 0x09, 0x40, 0xfb, 0x21, 0x44, 0x54, 0x18, 0x2d } },
		{ ORDER_DCBA,
		  { 0x182d, 0x4454, 0xfb21, 0x0940 },
		  { 0x18, 0x2d, 0x44, 0x54, 0xfb, 0x21, 0x09, 0x40 } },
	};

	check_images("f64 pi", VALUE_F64, v_float(3.141592653589793), img);
}

Test(codec, f64_negative_every_order)
{
	/* -1234.5: sign 1, exponent 1023 + 10 = 0x409, fraction 0x34a0000000000 */
	const struct image img[4] = {
		{ ORDER_ABCD,
		  { 0xc093, 0x4a00, 0x0000, 0x0000 },
		  { 0xc0, 0x93, 0x4a, 0x00, 0x00, 0x00, 0x00, 0x00 } },
		{ ORDER_CDAB,
		  { 0x0000, 0x0000, 0x4a00, 0xc093 },
		  { 0x00, 0x00, 0x00, 0x00, 0x4a, 0x00, 0xc0, 0x93 } },
		{ ORDER_BADC,
		  { 0x93c0, 0x004a, 0x0000, 0x0000 },
		  { 0x93, 0xc0, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x00 } },
		{ ORDER_DCBA,
		  { 0x0000, 0x0000, 0x004a, 0x93c0 },
		  { 0x00, 0x00, 0x00, 0x00, 0x00, 0x4a, 0x93, 0xc0 } },
	};

	check_images("f64 -1234.5", VALUE_F64, v_float(-1234.5), img);
}

Test(codec, bool_every_order)
{
	const struct image on[4] = {
		{ ORDER_ABCD, { 0x0001 }, { 0x01 } },
		{ ORDER_CDAB, { 0x0001 }, { 0x01 } },
		{ ORDER_BADC, { 0x0001 }, { 0x01 } },
		{ ORDER_DCBA, { 0x0001 }, { 0x01 } },
	};
	const struct image off[4] = {
		{ ORDER_ABCD, { 0x0000 }, { 0x00 } },
		{ ORDER_CDAB, { 0x0000 }, { 0x00 } },
		{ ORDER_BADC, { 0x0000 }, { 0x00 } },
		{ ORDER_DCBA, { 0x0000 }, { 0x00 } },
	};

	check_images("bool true", VALUE_BOOL, v_bool(true), on);
	check_images("bool false", VALUE_BOOL, v_bool(false), off);
}

Test(codec, bool_any_nonzero_is_true)
{
	const uint16_t regs[] = { 0x0100, 0x8000, 0xffff, 0x0002 };
	const uint8_t bytes[] = { 0x02, 0x80, 0xff };
	struct value v;

	for (size_t n = 0; n < 4; n++) {
		for (size_t k = 0; k < sizeof(regs) / sizeof(regs[0]); k++) {
			v = v_bool(false);
			cr_assert_eq(
				codec_decode_regs(VALUE_BOOL, all_orders[n], 0, &regs[k], &v, NULL),
				0);
			assert_value(&v, &(struct value){ .kind = VALUE_KIND_BOOL, .b = true },
				     "bool register");
		}
		for (size_t k = 0; k < sizeof(bytes); k++) {
			v = v_bool(false);
			cr_assert_eq(codec_decode_bytes(VALUE_BOOL, all_orders[n], 0, &bytes[k], &v,
							NULL),
				     0);
			cr_assert(v.b, "byte 0x%02x is true", bytes[k]);
		}
	}
}

Test(codec, bool_encodes_from_numbers_zero_or_one)
{
	const uint16_t one = 1, zero = 0;

	check_encode(VALUE_BOOL, v_int(1), &one, 1);
	check_encode(VALUE_BOOL, v_uint(0), &zero, 1);
	check_encode(VALUE_BOOL, v_float(1.0), &one, 1);
	check_encode(VALUE_BOOL, v_float(0.0), &zero, 1);
	check_encode_fails(VALUE_BOOL, v_int(2), GD_ERANGE);
	check_encode_fails(VALUE_BOOL, v_int(-1), GD_ERANGE);
	check_encode_fails(VALUE_BOOL, v_float(0.5), GD_ERANGE);
	check_encode_fails(VALUE_BOOL, v_float(NAN), GD_ERANGE);
	check_encode_fails(VALUE_BOOL, v_str("1"), GD_EINVAL);
}

/* The top bit: unsigned stays unsigned, signed extends */

Test(codec, top_bit_set_decodes_by_signedness)
{
	const uint16_t ones[4] = { 0xffff, 0xffff, 0xffff, 0xffff };
	const uint16_t top[4] = { 0x8000, 0x0000, 0x0000, 0x0000 };
	struct value v;

	cr_assert_eq(codec_decode_regs(VALUE_U16, ORDER_ABCD, 0, ones, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_UINT, .u = 65535 }, "u16 0xffff");
	cr_assert_eq(codec_decode_regs(VALUE_I16, ORDER_ABCD, 0, ones, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = -1 }, "i16 0xffff");
	cr_assert_eq(codec_decode_regs(VALUE_I16, ORDER_ABCD, 0, top, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = -32768 }, "i16 0x8000");
	cr_assert_eq(codec_decode_regs(VALUE_U32, ORDER_ABCD, 0, top, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_UINT, .u = 2147483648u },
		     "u32 0x80000000");
	cr_assert_eq(codec_decode_regs(VALUE_I32, ORDER_ABCD, 0, top, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = INT32_MIN },
		     "i32 0x80000000");
	cr_assert_eq(codec_decode_regs(VALUE_I32, ORDER_ABCD, 0, ones, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = -1 }, "i32 0xffffffff");
	cr_assert_eq(codec_decode_regs(VALUE_U64, ORDER_ABCD, 0, ones, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_UINT, .u = UINT64_MAX },
		     "u64 all ones");
	cr_assert_eq(codec_decode_regs(VALUE_I64, ORDER_ABCD, 0, ones, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = -1 }, "i64 all ones");
	cr_assert_eq(codec_decode_regs(VALUE_I64, ORDER_ABCD, 0, top, &v, NULL), 0);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = INT64_MIN },
		     "i64 0x8000...");
}

Test(codec, float_special_values_decode)
{
	const uint16_t nan32[2] = { 0x7fc0, 0x0000 }, inf32[2] = { 0x7f80, 0x0000 };
	const uint16_t ninf32[2] = { 0xff80, 0x0000 }, negzero32[2] = { 0x8000, 0x0000 };
	const uint16_t tiny32[2] = { 0x0000, 0x0001 };
	const uint16_t nan64[4] = { 0x7ff8, 0x0000, 0x0000, 0x0000 };
	struct value v;

	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, nan32, &v, NULL), 0);
	cr_assert_eq(v.kind, VALUE_KIND_FLOAT);
	cr_assert(isnan(v.f));
	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, inf32, &v, NULL), 0);
	cr_assert(isinf(v.f) && v.f > 0);
	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, ninf32, &v, NULL), 0);
	cr_assert(isinf(v.f) && v.f < 0);
	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, negzero32, &v, NULL), 0);
	cr_assert(v.f == 0 && signbit(v.f), "0x80000000 is -0.0");
	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, tiny32, &v, NULL), 0);
	cr_assert(v.f == (double)FLT_TRUE_MIN, "0x00000001 is the smallest subnormal");
	cr_assert_eq(codec_decode_regs(VALUE_F64, ORDER_ABCD, 0, nan64, &v, NULL), 0);
	cr_assert(isnan(v.f));
}

/* Strings */

Test(codec, string_odd_length_every_order)
{
	/* "ABC" in 2 registers; the pad byte of the last one is NUL */
	const uint16_t high_first[2] = { 0x4142, 0x4300 }, low_first[2] = { 0x4241, 0x0043 };

	for (int n = 0; n < 4; n++) {
		enum byte_order o = all_orders[n];
		const uint16_t *want = o == ORDER_BADC || o == ORDER_DCBA ? low_first : high_first;
		char buf[4];
		uint16_t regs[3] = { SENTINEL16, SENTINEL16, SENTINEL16 };
		struct value v, in = v_str("ABC");

		memset(buf, 'x', sizeof(buf));
		cr_assert_eq(codec_decode_regs(VALUE_STRING, o, 3, want, &v, buf), 0);
		cr_assert_eq(v.kind, VALUE_KIND_STRING);
		cr_assert_eq(v.s, buf, "the string is in strbuf");
		cr_assert_str_eq(buf, "ABC", "%s", order_names[o]);

		cr_assert_eq(codec_encode_regs(VALUE_STRING, o, 3, &in, regs), 0);
		cr_assert_eq(regs[0], want[0], "%s r0 0x%04x", order_names[o], regs[0]);
		cr_assert_eq(regs[1], want[1], "%s r1 0x%04x", order_names[o], regs[1]);
		cr_assert_eq(regs[2], SENTINEL16, "wrote past the string's registers");
	}
}

Test(codec, string_even_length_every_order)
{
	/* 'P' 0x50, 'u' 0x75, 'm' 0x6d, 'p' 0x70 */
	const uint16_t high_first[2] = { 0x5075, 0x6d70 }, low_first[2] = { 0x7550, 0x706d };

	for (int n = 0; n < 4; n++) {
		enum byte_order o = all_orders[n];
		const uint16_t *want = o == ORDER_BADC || o == ORDER_DCBA ? low_first : high_first;
		char buf[5];
		uint16_t regs[2];
		struct value v, in = v_str("Pump");

		memset(buf, 'x', sizeof(buf));
		cr_assert_eq(codec_decode_regs(VALUE_STRING, o, 4, want, &v, buf), 0);
		cr_assert_str_eq(v.s, "Pump", "%s", order_names[o]);
		cr_assert_eq(buf[4], '\0', "strbuf is terminated after 'length' characters");
		cr_assert_eq(codec_encode_regs(VALUE_STRING, o, 4, &in, regs), 0);
		cr_assert_eq(regs[0], want[0]);
		cr_assert_eq(regs[1], want[1]);
	}
}

Test(codec, string_odd_length_ignores_pad_byte)
{
	const uint16_t high_first[2] = { 0x4142, 0x43ff }, low_first[2] = { 0x4241, 0xff43 };
	char buf[4];
	struct value v;

	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 3, high_first, &v, buf), 0);
	cr_assert_str_eq(v.s, "ABC");
	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_DCBA, 3, low_first, &v, buf), 0);
	cr_assert_str_eq(v.s, "ABC");
}

Test(codec, string_stops_at_first_nul)
{
	/* "AB" NUL "CDE" */
	const uint16_t regs[3] = { 0x4142, 0x0043, 0x4445 };
	const uint8_t bytes[4] = { 'A', 'B', 0, 'C' };
	char buf[7];
	struct value v;

	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 6, regs, &v, buf), 0);
	cr_assert_str_eq(v.s, "AB");
	cr_assert_eq(codec_decode_bytes(VALUE_STRING, ORDER_ABCD, 4, bytes, &v, buf), 0);
	cr_assert_str_eq(v.s, "AB");
}

Test(codec, string_drops_trailing_spaces_only)
{
	const uint16_t trailing[2] = { 0x4142, 0x2020 };	   /* "AB  " */
	const uint16_t inner[3] = { 0x2041, 0x2042, 0x2020 };	   /* " A B  " */
	const uint16_t blank[2] = { 0x2020, 0x2020 };		   /* "    " */
	const uint16_t before_nul[3] = { 0x4120, 0x0042, 0x2020 }; /* "A " NUL "B  " */
	char buf[7];
	struct value v;

	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 4, trailing, &v, buf), 0);
	cr_assert_str_eq(v.s, "AB");
	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 6, inner, &v, buf), 0);
	cr_assert_str_eq(v.s, " A B");
	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 4, blank, &v, buf), 0);
	cr_assert_str_eq(v.s, "");
	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 6, before_nul, &v, buf), 0);
	cr_assert_str_eq(v.s, "A");
}

Test(codec, string_non_printable_becomes_question_mark)
{
	/* 'A' 0x01, 0x7f 'B', 0xc3 0xa9 (UTF-8 e acute), 0x09 (tab) 'C' */
	const uint16_t regs[4] = { 0x4101, 0x7f42, 0xc3a9, 0x0943 };
	const uint8_t bytes[5] = { 'H', 'i', ' ', ' ', 0x07 };
	char buf[9];
	struct value v;

	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 8, regs, &v, buf), 0);
	cr_assert_str_eq(v.s, "A??B???C");
	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_BADC, 8, regs, &v, buf), 0);
	cr_assert_str_eq(v.s, "?AB???C?");
	/* the spaces are not trailing: a masked byte follows them */
	cr_assert_eq(codec_decode_bytes(VALUE_STRING, ORDER_ABCD, 5, bytes, &v, buf), 0);
	cr_assert_str_eq(v.s, "Hi  ?");
	cr_assert_str_eq("Hi  ?", buf);
}

Test(codec, string_of_length_zero)
{
	const uint16_t regs[1] = { 0x4142 };
	uint16_t out[1] = { SENTINEL16 };
	char buf[1] = { 'x' };
	struct value v, empty = v_str(""), one = v_str("A");

	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 0, regs, &v, buf), 0);
	cr_assert_str_eq(v.s, "");
	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 0, &empty, out), 0);
	cr_assert_eq(out[0], SENTINEL16, "no registers to write");
	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 0, &one, out), GD_ERANGE);
}

Test(codec, string_encode_pads_with_nul)
{
	const struct value ab = v_str("AB"), a = v_str("A");
	uint16_t regs[4] = { SENTINEL16, SENTINEL16, SENTINEL16, SENTINEL16 };

	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 5, &ab, regs), 0);
	cr_assert_eq(regs[0], 0x4142);
	cr_assert_eq(regs[1], 0x0000);
	cr_assert_eq(regs[2], 0x0000);
	cr_assert_eq(regs[3], SENTINEL16, "5 characters are 3 registers");

	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_DCBA, 4, &a, regs), 0);
	cr_assert_eq(regs[0], 0x0041);
	cr_assert_eq(regs[1], 0x0000);
}

Test(codec, string_too_long_is_erange)
{
	const struct value exact = v_str("ABCD"), longer = v_str("ABCDE");
	uint16_t regs[3] = { SENTINEL16, SENTINEL16, SENTINEL16 };
	uint8_t bytes[5];

	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 4, &longer, regs), GD_ERANGE);
	cr_assert_eq(regs[0], SENTINEL16, "a failed encode writes nothing");
	cr_assert_eq(regs[1], SENTINEL16);
	memset(bytes, SENTINEL8, sizeof(bytes));
	cr_assert_eq(codec_encode_bytes(VALUE_STRING, ORDER_ABCD, 4, &longer, bytes), GD_ERANGE);
	cr_assert_eq(bytes[0], SENTINEL8);
	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 4, &exact, regs), 0);
	cr_assert_eq(regs[1], 0x4344);
}

Test(codec, string_bytes_keep_character_order)
{
	/* over bytes the order applies to numbers only */
	const uint8_t want[5] = { 'H', 'i', '!', 0, 0 };
	const struct value in = v_str("Hi!");

	for (int n = 0; n < 4; n++) {
		uint8_t bytes[6];
		char buf[6];
		struct value v;

		memset(bytes, SENTINEL8, sizeof(bytes));
		cr_assert_eq(codec_encode_bytes(VALUE_STRING, all_orders[n], 5, &in, bytes), 0);
		cr_assert_eq(memcmp(bytes, want, 5), 0, "%s", order_names[n]);
		cr_assert_eq(bytes[5], SENTINEL8, "wrote past 'length' bytes");
		cr_assert_eq(codec_decode_bytes(VALUE_STRING, all_orders[n], 5, want, &v, buf), 0);
		cr_assert_str_eq(v.s, "Hi!", "%s", order_names[n]);
		cr_assert_eq(v.s, buf);
	}
}

Test(codec, string_errors)
{
	const uint16_t regs[2] = { 0x4142, 0x4344 };
	const uint8_t bytes[4] = { 'A', 'B', 'C', 'D' };
	struct value v = v_int(7), null_string = v_str(NULL), number = v_uint(1);
	uint16_t out[2] = { SENTINEL16, SENTINEL16 };
	uint8_t bout[4];

	cr_assert_eq(codec_decode_regs(VALUE_STRING, ORDER_ABCD, 4, regs, &v, NULL), GD_EINVAL);
	cr_assert_eq(codec_decode_bytes(VALUE_STRING, ORDER_ABCD, 4, bytes, &v, NULL), GD_EINVAL);
	cr_assert_eq(v.kind, VALUE_KIND_INT, "a failed decode leaves 'out' alone");
	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 4, &number, out), GD_EINVAL);
	cr_assert_eq(codec_encode_regs(VALUE_STRING, ORDER_ABCD, 4, &null_string, out), GD_EINVAL);
	cr_assert_eq(codec_encode_bytes(VALUE_STRING, ORDER_ABCD, 4, &number, bout), GD_EINVAL);
	cr_assert_eq(out[0], SENTINEL16);
}

/* Encoding: does the value fit the type? */

Test(codec, encode_u16_range)
{
	const uint16_t max[1] = { 0xffff }, zero[1] = { 0 }, one[1] = { 1 };

	check_encode(VALUE_U16, v_int(65535), max, 1);
	check_encode(VALUE_U16, v_uint(65535), max, 1);
	check_encode(VALUE_U16, v_float(65535.0), max, 1);
	check_encode(VALUE_U16, v_float(-0.0), zero, 1);
	check_encode(VALUE_U16, v_bool(true), one, 1);
	check_encode_fails(VALUE_U16, v_int(65536), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_uint(65536), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_int(-1), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_float(65536.0), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_float(3.5), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_float(-1.0), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_float(NAN), GD_ERANGE);
	check_encode_fails(VALUE_U16, v_float(INFINITY), GD_ERANGE);
}

Test(codec, encode_i16_range)
{
	const uint16_t min[1] = { 0x8000 }, max[1] = { 0x7fff }, minus_one[1] = { 0xffff };

	check_encode(VALUE_I16, v_int(-32768), min, 1);
	check_encode(VALUE_I16, v_float(-32768.0), min, 1);
	check_encode(VALUE_I16, v_int(32767), max, 1);
	check_encode(VALUE_I16, v_uint(32767), max, 1);
	check_encode(VALUE_I16, v_int(-1), minus_one, 1);
	check_encode_fails(VALUE_I16, v_int(-32769), GD_ERANGE);
	check_encode_fails(VALUE_I16, v_int(32768), GD_ERANGE);
	check_encode_fails(VALUE_I16, v_uint(32768), GD_ERANGE);
	check_encode_fails(VALUE_I16, v_float(-0.5), GD_ERANGE);
}

Test(codec, encode_32_bit_ranges)
{
	const uint16_t umax[2] = { 0xffff, 0xffff }, imin[2] = { 0x8000, 0x0000 };
	const uint16_t imax[2] = { 0x7fff, 0xffff };

	check_encode(VALUE_U32, v_uint(4294967295u), umax, 2);
	check_encode(VALUE_U32, v_float(4294967295.0), umax, 2);
	check_encode(VALUE_I32, v_int(INT32_MIN), imin, 2);
	check_encode(VALUE_I32, v_uint(INT32_MAX), imax, 2);
	check_encode_fails(VALUE_U32, v_uint(4294967296u), GD_ERANGE);
	check_encode_fails(VALUE_U32, v_float(4294967296.0), GD_ERANGE);
	check_encode_fails(VALUE_U32, v_int(-1), GD_ERANGE);
	check_encode_fails(VALUE_I32, v_uint(2147483648u), GD_ERANGE);
	check_encode_fails(VALUE_I32, v_int(-2147483649LL), GD_ERANGE);
	check_encode_fails(VALUE_I32, v_float(2147483648.0), GD_ERANGE);
}

Test(codec, encode_64_bit_ranges)
{
	const uint16_t ones[4] = { 0xffff, 0xffff, 0xffff, 0xffff };
	const uint16_t top[4] = { 0x8000, 0x0000, 0x0000, 0x0000 };
	const uint16_t imax[4] = { 0x7fff, 0xffff, 0xffff, 0xffff };

	check_encode(VALUE_U64, v_uint(UINT64_MAX), ones, 4);
	check_encode(VALUE_U64, v_float(9223372036854775808.0), top, 4); /* 2^63 */
	check_encode(VALUE_U64, v_int(INT64_MAX), imax, 4);
	check_encode(VALUE_I64, v_int(INT64_MIN), top, 4);
	check_encode(VALUE_I64, v_float(-9223372036854775808.0), top, 4);
	check_encode(VALUE_I64, v_uint(INT64_MAX), imax, 4);
	check_encode(VALUE_I64, v_int(-1), ones, 4);
	check_encode_fails(VALUE_U64, v_int(-1), GD_ERANGE);
	check_encode_fails(VALUE_U64, v_float(18446744073709551616.0), GD_ERANGE); /* 2^64 */
	check_encode_fails(VALUE_I64, v_uint((uint64_t)INT64_MAX + 1), GD_ERANGE);
	check_encode_fails(VALUE_I64, v_float(9223372036854775808.0), GD_ERANGE);
	check_encode_fails(VALUE_I64, v_float(-1e19), GD_ERANGE);
}

Test(codec, encode_f32_from_any_number)
{
	const uint16_t three[2] = { 0x4040, 0x0000 }, one[2] = { 0x3f80, 0x0000 };
	const uint16_t max[2] = { 0x7f7f, 0xffff }, inf[2] = { 0x7f80, 0x0000 };
	const uint16_t tenth[2] = { 0x3dcc, 0xcccd }; /* 0.1 rounded to float */
	uint16_t regs[2];
	struct value nan = v_float(NAN);

	check_encode(VALUE_F32, v_int(3), three, 2);
	check_encode(VALUE_F32, v_uint(3), three, 2);
	check_encode(VALUE_F32, v_bool(true), one, 2);
	check_encode(VALUE_F32, v_float(FLT_MAX), max, 2);
	check_encode(VALUE_F32, v_float(INFINITY), inf, 2);
	check_encode(VALUE_F32, v_float(0.1), tenth, 2);
	cr_assert_eq(codec_encode_regs(VALUE_F32, ORDER_ABCD, 0, &nan, regs), 0, "NaN is allowed");
	cr_assert_eq(regs[0] & 0x7f80, 0x7f80, "NaN has an all-ones exponent");
	cr_assert((regs[0] & 0x007f) != 0 || regs[1] != 0, "and a non-zero fraction");
	check_encode_fails(VALUE_F32, v_float(1e39), GD_ERANGE);
	check_encode_fails(VALUE_F32, v_float(-1e39), GD_ERANGE);
	check_encode_fails(VALUE_F32, v_float(DBL_MAX), GD_ERANGE);
}

Test(codec, encode_f64_from_any_number)
{
	const uint16_t one[4] = { 0x3ff0, 0, 0, 0 }, minus_one[4] = { 0xbff0, 0, 0, 0 };
	uint16_t regs[4];
	struct value nan = v_float(NAN), large = v_float(1e39);

	check_encode(VALUE_F64, v_uint(1), one, 4);
	check_encode(VALUE_F64, v_int(-1), minus_one, 4);
	check_encode(VALUE_F64, v_bool(true), one, 4);
	cr_assert_eq(codec_encode_regs(VALUE_F64, ORDER_ABCD, 0, &large, regs), 0,
		     "1e39 fits a double");
	cr_assert_eq(regs[0] >> 4, 0x480, "exponent 1023 + 129");
	cr_assert_eq(codec_encode_regs(VALUE_F64, ORDER_ABCD, 0, &nan, regs), 0, "NaN is allowed");
	cr_assert_eq(regs[0] & 0x7ff0, 0x7ff0);
}

Test(codec, string_value_for_a_number_is_einval)
{
	const enum value_type numeric[] = { VALUE_BOOL, VALUE_U16, VALUE_I16, VALUE_U32, VALUE_I32,
					    VALUE_U64,	VALUE_I64, VALUE_F32, VALUE_F64 };

	for (size_t k = 0; k < sizeof(numeric) / sizeof(numeric[0]); k++) {
		check_encode_fails(numeric[k], v_str("12"), GD_EINVAL);
		check_encode_fails(numeric[k], (struct value){ .kind = VALUE_KIND_NONE },
				   GD_EINVAL);
	}
}

Test(codec, bad_arguments_are_einval)
{
	const uint16_t regs[4] = { 0 };
	const uint8_t bytes[8] = { 0 };
	struct value v = v_int(42), in = v_uint(1);
	uint16_t out[4] = { SENTINEL16 };
	uint8_t bout[8];
	char buf[8];

	cr_assert_eq(codec_decode_regs((enum value_type)99, ORDER_ABCD, 0, regs, &v, buf),
		     GD_EINVAL);
	cr_assert_eq(codec_decode_regs(VALUE_U16, (enum byte_order)7, 0, regs, &v, buf), GD_EINVAL);
	cr_assert_eq(codec_decode_regs(VALUE_U16, ORDER_ABCD, 0, NULL, &v, buf), GD_EINVAL);
	cr_assert_eq(codec_decode_regs(VALUE_U16, ORDER_ABCD, 0, regs, NULL, buf), GD_EINVAL);
	cr_assert_eq(codec_decode_bytes((enum value_type)99, ORDER_ABCD, 0, bytes, &v, buf),
		     GD_EINVAL);
	cr_assert_eq(codec_decode_bytes(VALUE_U16, (enum byte_order)7, 0, bytes, &v, buf),
		     GD_EINVAL);
	cr_assert_eq(codec_decode_bytes(VALUE_U16, ORDER_ABCD, 0, NULL, &v, buf), GD_EINVAL);
	assert_value(&v, &(struct value){ .kind = VALUE_KIND_INT, .i = 42 },
		     "a failed decode leaves 'out' alone");

	cr_assert_eq(codec_encode_regs((enum value_type)99, ORDER_ABCD, 0, &in, out), GD_EINVAL);
	cr_assert_eq(codec_encode_regs(VALUE_U16, (enum byte_order)7, 0, &in, out), GD_EINVAL);
	cr_assert_eq(codec_encode_regs(VALUE_U16, ORDER_ABCD, 0, NULL, out), GD_EINVAL);
	cr_assert_eq(codec_encode_regs(VALUE_U16, ORDER_ABCD, 0, &in, NULL), GD_EINVAL);
	cr_assert_eq(codec_encode_bytes((enum value_type)99, ORDER_ABCD, 0, &in, bout), GD_EINVAL);
	cr_assert_eq(codec_encode_bytes(VALUE_U16, (enum byte_order)7, 0, &in, bout), GD_EINVAL);
	cr_assert_eq(codec_encode_bytes(VALUE_U16, ORDER_ABCD, 0, &in, NULL), GD_EINVAL);
	cr_assert_eq(out[0], SENTINEL16);
}

/* Scale and offset */

Test(codec, scale_identity_keeps_integers_exact)
{
	struct value i = v_int(-5), u = v_uint(UINT64_MAX);

	cr_assert_eq(codec_scale(&i, 1, 0), 0);
	assert_value(&i, &(struct value){ .kind = VALUE_KIND_INT, .i = -5 }, "int");
	cr_assert_eq(codec_scale(&u, 1, 0), 0);
	assert_value(&u, &(struct value){ .kind = VALUE_KIND_UINT, .u = UINT64_MAX },
		     "u64 max is not rounded through a double");
}

Test(codec, scale_turns_integers_into_floats)
{
	struct value a = v_int(-5), b = v_uint(1000), c = v_int(10), d = v_int(10);

	cr_assert_eq(codec_scale(&a, 0.1, 2), 0);
	cr_assert_eq(a.kind, VALUE_KIND_FLOAT);
	cr_assert_float_eq(a.f, 1.5, 1e-12);
	cr_assert_eq(codec_scale(&b, 0.5, 0), 0);
	assert_value(&b, &(struct value){ .kind = VALUE_KIND_FLOAT, .f = 500.0 }, "scale only");
	cr_assert_eq(codec_scale(&c, 1, 0.5), 0);
	assert_value(&c, &(struct value){ .kind = VALUE_KIND_FLOAT, .f = 10.5 }, "offset only");
	cr_assert_eq(codec_scale(&d, 2, 0), 0);
	assert_value(&d, &(struct value){ .kind = VALUE_KIND_FLOAT, .f = 20.0 },
		     "an integral result is still a float");
}

Test(codec, scale_floats)
{
	struct value a = v_float(2.5), b = v_float(2.5);

	cr_assert_eq(codec_scale(&a, 2, -1), 0);
	assert_value(&a, &(struct value){ .kind = VALUE_KIND_FLOAT, .f = 4.0 }, "2.5 * 2 - 1");
	cr_assert_eq(codec_scale(&b, 1, 0), 0);
	assert_value(&b, &(struct value){ .kind = VALUE_KIND_FLOAT, .f = 2.5 }, "identity");
}

Test(codec, scale_nan_and_infinity_are_erange)
{
	const uint16_t nan32[2] = { 0x7fc0, 0x0000 }, inf32[2] = { 0x7f80, 0x0000 };
	struct value nan = v_float(NAN), inf = v_float(-INFINITY), big = v_float(1e308);
	struct value huge = v_uint(UINT64_MAX), raw;

	cr_assert_eq(codec_scale(&nan, 1, 0), GD_ERANGE);
	cr_assert_eq(nan.kind, VALUE_KIND_FLOAT, "the value is left a float");
	cr_assert_eq(codec_scale(&inf, 1, 0), GD_ERANGE);
	cr_assert_eq(codec_scale(&big, 10, 0), GD_ERANGE, "1e308 * 10 overflows");
	cr_assert(isinf(big.f));
	cr_assert_eq(codec_scale(&huge, 1e300, 0), GD_ERANGE);
	cr_assert_eq(huge.kind, VALUE_KIND_FLOAT);

	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, nan32, &raw, NULL), 0);
	cr_assert_eq(codec_scale(&raw, 1, 0), GD_ERANGE, "a raw NaN f32 is a bad value");
	cr_assert_eq(codec_decode_regs(VALUE_F32, ORDER_ABCD, 0, inf32, &raw, NULL), 0);
	cr_assert_eq(codec_scale(&raw, 1, 0), GD_ERANGE, "a raw infinite f32 is a bad value");
}

Test(codec, scale_passes_bools_and_strings)
{
	struct value b = v_bool(true), s = v_str("x");
	const char *p = s.s;

	cr_assert_eq(codec_scale(&b, 10, 5), 0);
	assert_value(&b, &(struct value){ .kind = VALUE_KIND_BOOL, .b = true }, "bool");
	cr_assert_eq(codec_scale(&s, 10, 5), 0);
	cr_assert_eq(s.kind, VALUE_KIND_STRING);
	cr_assert_eq(s.s, p);
}

Test(codec, scale_errors)
{
	struct value none = { .kind = VALUE_KIND_NONE };

	cr_assert_eq(codec_scale(&none, 2, 0), GD_EINVAL);
	cr_assert_eq(none.kind, VALUE_KIND_NONE);
	cr_assert_eq(codec_scale(NULL, 2, 0), GD_EINVAL);
}

/* Unscale: engineering value to raw */

static void check_unscale(struct value eng, enum value_type t, double scale, double offset,
			  struct value want)
{
	struct value raw = { .kind = VALUE_KIND_NONE };

	cr_assert_eq(codec_unscale(&eng, t, scale, offset, &raw), 0);
	assert_value(&raw, &want, "unscale");
}

static void check_unscale_fails(struct value eng, enum value_type t, double scale, double offset,
				int err)
{
	struct value raw = { .kind = VALUE_KIND_NONE };

	cr_assert_eq(codec_unscale(&eng, t, scale, offset, &raw), err, "expected %d", err);
	cr_assert_eq(raw.kind, VALUE_KIND_NONE, "a failed unscale leaves 'raw' alone");
}

Test(codec, unscale_rounds_to_nearest)
{
	/* 4.35 / 0.01 is 434.99999999999994 in doubles: truncating would give 434 */
	check_unscale(v_float(4.35), VALUE_U16, 0.01, 0, v_uint(435));
	check_unscale(v_float(0.3), VALUE_U16, 0.1, 0, v_uint(3));
	check_unscale(v_float(25.0), VALUE_I16, 0.1, -40, v_int(650));
	check_unscale(v_int(100), VALUE_U16, 0.5, 0, v_uint(200));
	check_unscale(v_float(0.49), VALUE_U16, 1, 0, v_uint(0));
	check_unscale(v_float(1.4), VALUE_U32, 1, 0, v_uint(1));
	check_unscale(v_float(1.6), VALUE_U32, 1, 0, v_uint(2));
	check_unscale(v_float(-1.6), VALUE_I32, 1, 0, v_int(-2));
}

Test(codec, unscale_ties_away_from_zero)
{
	check_unscale(v_float(0.5), VALUE_U16, 1, 0, v_uint(1));
	check_unscale(v_float(2.5), VALUE_I16, 1, 0, v_int(3));
	check_unscale(v_float(-2.5), VALUE_I16, 1, 0, v_int(-3));
	check_unscale(v_float(-0.5), VALUE_I64, 1, 0, v_int(-1));
	check_unscale(v_float(1.25), VALUE_U16, 0.5, 0, v_uint(3)); /* 2.5 */
}

Test(codec, unscale_u16_range)
{
	check_unscale(v_float(65535.0), VALUE_U16, 1, 0, v_uint(65535));
	check_unscale(v_int(65535), VALUE_U16, 1, 0, v_uint(65535));
	check_unscale(v_float(65535.4), VALUE_U16, 1, 0, v_uint(65535));
	check_unscale(v_float(-0.4), VALUE_U16, 1, 0, v_uint(0));
	check_unscale_fails(v_float(65536.0), VALUE_U16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_int(65536), VALUE_U16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(65535.5), VALUE_U16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(-0.6), VALUE_U16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_int(-1), VALUE_U16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(6553.6), VALUE_U16, 0.1, 0, GD_ERANGE);
}

Test(codec, unscale_signed_ranges)
{
	check_unscale(v_int(-32768), VALUE_I16, 1, 0, v_int(-32768));
	check_unscale(v_float(-32768.4), VALUE_I16, 1, 0, v_int(-32768));
	check_unscale(v_int(32767), VALUE_I16, 1, 0, v_int(32767));
	check_unscale_fails(v_float(-32768.5), VALUE_I16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_int(32768), VALUE_I16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_uint(32768), VALUE_I16, 1, 0, GD_ERANGE);
	check_unscale(v_int(INT32_MIN), VALUE_I32, 1, 0, v_int(INT32_MIN));
	check_unscale_fails(v_float(2147483647.5), VALUE_I32, 1, 0, GD_ERANGE);
}

Test(codec, unscale_64_bit_integers_are_exact)
{
	check_unscale(v_uint(UINT64_MAX), VALUE_U64, 1, 0, v_uint(UINT64_MAX));
	check_unscale(v_uint(UINT64_MAX - 1), VALUE_U64, 1, 0, v_uint(UINT64_MAX - 1));
	check_unscale(v_int(INT64_MIN), VALUE_I64, 1, 0, v_int(INT64_MIN));
	check_unscale(v_int(INT64_MAX), VALUE_I64, 1, 0, v_int(INT64_MAX));
	check_unscale(v_int(INT64_MAX), VALUE_U64, 1, 0, v_uint(INT64_MAX));
	check_unscale_fails(v_uint((uint64_t)INT64_MAX + 1), VALUE_I64, 1, 0, GD_ERANGE);
	check_unscale_fails(v_int(-1), VALUE_U64, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(1e20), VALUE_U64, 1, 0, GD_ERANGE);
}

Test(codec, unscale_nan_and_infinity)
{
	struct value raw;
	struct value nan = v_float(NAN);

	check_unscale_fails(v_float(NAN), VALUE_U16, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(INFINITY), VALUE_I32, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(-INFINITY), VALUE_I64, 1, 0, GD_ERANGE);
	cr_assert_eq(codec_unscale(&nan, VALUE_F32, 2, 1, &raw), 0, "NaN is a float");
	cr_assert_eq(raw.kind, VALUE_KIND_FLOAT);
	cr_assert(isnan(raw.f));
	check_unscale(v_float(INFINITY), VALUE_F64, 1, 0, v_float(INFINITY));
}

Test(codec, unscale_floats)
{
	check_unscale(v_float(20.5), VALUE_F32, 0.5, 0.5, v_float(40.0));
	check_unscale(v_int(7), VALUE_F32, 1, 0, v_float(7.0));
	check_unscale(v_uint(7), VALUE_F64, 2, 0, v_float(3.5));
	check_unscale(v_float(1e39), VALUE_F64, 1, 0, v_float(1e39));
	check_unscale(v_float(-FLT_MAX), VALUE_F32, 1, 0, v_float(-FLT_MAX));
	check_unscale_fails(v_float(1e39), VALUE_F32, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(1e38), VALUE_F32, 0.01, 0, GD_ERANGE);
}

Test(codec, unscale_bool)
{
	check_unscale(v_bool(true), VALUE_BOOL, 1, 0, v_bool(true));
	check_unscale(v_bool(false), VALUE_BOOL, 1, 0, v_bool(false));
	check_unscale(v_int(1), VALUE_BOOL, 1, 0, v_bool(true));
	check_unscale(v_uint(0), VALUE_BOOL, 1, 0, v_bool(false));
	check_unscale(v_float(1.0), VALUE_BOOL, 1, 0, v_bool(true));
	check_unscale(v_bool(true), VALUE_BOOL, 10, 5, v_bool(true));
	check_unscale_fails(v_int(2), VALUE_BOOL, 1, 0, GD_ERANGE);
	check_unscale_fails(v_int(-1), VALUE_BOOL, 1, 0, GD_ERANGE);
	check_unscale_fails(v_float(0.5), VALUE_BOOL, 1, 0, GD_ERANGE);
	check_unscale_fails(v_str("on"), VALUE_BOOL, 1, 0, GD_EINVAL);
}

Test(codec, unscale_strings)
{
	const char *text = "hello";
	struct value raw = { .kind = VALUE_KIND_NONE }, eng = v_str(text);

	cr_assert_eq(codec_unscale(&eng, VALUE_STRING, 1, 0, &raw), 0);
	cr_assert_eq(raw.kind, VALUE_KIND_STRING);
	cr_assert_eq(raw.s, text, "a string passes through");
	check_unscale_fails(v_int(5), VALUE_STRING, 1, 0, GD_EINVAL);
	check_unscale_fails(v_float(5), VALUE_STRING, 1, 0, GD_EINVAL);
	check_unscale_fails(v_str("5"), VALUE_U16, 1, 0, GD_EINVAL);
	check_unscale_fails(v_str("5"), VALUE_F64, 1, 0, GD_EINVAL);
}

Test(codec, unscale_errors)
{
	struct value raw = { .kind = VALUE_KIND_NONE }, one = v_int(1);

	check_unscale_fails(v_int(1), VALUE_U16, 0, 0, GD_EINVAL);
	check_unscale_fails(v_float(1), VALUE_F32, 0, 0, GD_EINVAL);
	check_unscale_fails(v_int(1), VALUE_U16, NAN, 0, GD_EINVAL);
	check_unscale_fails((struct value){ .kind = VALUE_KIND_NONE }, VALUE_U16, 1, 0, GD_EINVAL);
	check_unscale_fails(v_int(1), (enum value_type)99, 1, 0, GD_EINVAL);
	cr_assert_eq(codec_unscale(NULL, VALUE_U16, 1, 0, &raw), GD_EINVAL);
	cr_assert_eq(codec_unscale(&one, VALUE_U16, 1, 0, NULL), GD_EINVAL);
}

/* The whole write and read path */

Test(codec, write_path_round_trip)
{
	/* 21.7 degrees in a u16 of tenths: 217 = 0x00d9, then back */
	struct value eng = v_float(21.7), raw, back;
	uint16_t regs[1];

	cr_assert_eq(codec_unscale(&eng, VALUE_U16, 0.1, 0, &raw), 0);
	cr_assert_eq(codec_encode_regs(VALUE_U16, ORDER_ABCD, 0, &raw, regs), 0);
	cr_assert_eq(regs[0], 0x00d9);
	cr_assert_eq(codec_decode_regs(VALUE_U16, ORDER_ABCD, 0, regs, &back, NULL), 0);
	cr_assert_eq(codec_scale(&back, 0.1, 0), 0);
	cr_assert_eq(back.kind, VALUE_KIND_FLOAT);
	cr_assert_float_eq(back.f, 21.7, 1e-9);
}

Test(codec, write_path_round_trip_signed_word_swapped)
{
	/* -40.5 with scale 0.5, offset 0 in an i32 CDAB: -81 = 0xffffffaf */
	struct value eng = v_float(-40.5), raw, back;
	uint16_t regs[2];

	cr_assert_eq(codec_unscale(&eng, VALUE_I32, 0.5, 0, &raw), 0);
	cr_assert_eq(codec_encode_regs(VALUE_I32, ORDER_CDAB, 0, &raw, regs), 0);
	cr_assert_eq(regs[0], 0xffaf);
	cr_assert_eq(regs[1], 0xffff);
	cr_assert_eq(codec_decode_regs(VALUE_I32, ORDER_CDAB, 0, regs, &back, NULL), 0);
	cr_assert_eq(codec_scale(&back, 0.5, 0), 0);
	assert_value(&back, &(struct value){ .kind = VALUE_KIND_FLOAT, .f = -40.5 }, "back");
}

/* Scaled values carry no binary noise: what an operator reads is the decimal the scale implies. */
Test(codec_scale, scaled_values_are_the_nearest_decimal)
{
	static const struct {
		int64_t raw;
		double scale, offset;
		const char *want;
	} cases[] = {
		{ 2006, 0.1, -40, "160.6" }, /* plain arithmetic gives 160.60000000000002 */
		{ 3, 0.1, 0, "0.3" },	     /* 0.30000000000000004 */
		{ 123456789, 0.001, 0, "123456.789" },
		{ -7, 0.01, 0, "-0.07" },
		{ 65535, 0.0001, -3.2768, "3.2767" },
		{ 1, 1e-9, 0, "1e-09" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct value v = { .kind = VALUE_KIND_INT, .i = cases[i].raw };
		char text[64];

		cr_assert_eq(codec_scale(&v, cases[i].scale, cases[i].offset), 0);
		cr_assert_eq(v.kind, VALUE_KIND_FLOAT);
		snprintf(text, sizeof(text), "%.17g", v.f);
		cr_expect_eq(strtod(cases[i].want, NULL), v.f, "case %zu: got %s, want %s", i, text,
			     cases[i].want);
	}
}

Test(codec_scale, large_and_exact_values_keep_their_precision)
{
	/* 15 digits would cut a u64 counter scaled by 1 with an offset: beyond 2^53 it is left
	 * alone. */
	struct value v = { .kind = VALUE_KIND_UINT, .u = 9007199254740993ULL };

	volatile double plain = (double)9007199254740993ULL * 1.0 + 1.0;

	cr_assert_eq(codec_scale(&v, 1, 1), 0);
	cr_expect_eq(v.f, plain, "beyond 15 digits the value is the plain formula's");
	v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = 0.1 + 0.2 };
	cr_assert_eq(codec_scale(&v, 1, 0), 0, "unscaled floats are not touched");
	cr_expect_eq(v.f, 0.1 + 0.2);
}
