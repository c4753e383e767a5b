/* codec.c: turns registers and bytes into typed values and back, and applies scale and offset. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "codec.h"

/*
 * What each type is on the wire. 'bytes' is the canonical (big-endian) size;
 * 'min' and 'max' bound the integer types, bool included (0 and 1).
 */
struct type_info {
	size_t bytes;
	enum value_kind kind;
	int64_t min;
	uint64_t max;
};

static const struct type_info type_infos[] = {
	[VALUE_BOOL] = { .bytes = 1, .kind = VALUE_KIND_BOOL, .min = 0, .max = 1 },
	[VALUE_U16] = { .bytes = 2, .kind = VALUE_KIND_UINT, .min = 0, .max = UINT16_MAX },
	[VALUE_I16] = { .bytes = 2, .kind = VALUE_KIND_INT, .min = INT16_MIN, .max = INT16_MAX },
	[VALUE_U32] = { .bytes = 4, .kind = VALUE_KIND_UINT, .min = 0, .max = UINT32_MAX },
	[VALUE_I32] = { .bytes = 4, .kind = VALUE_KIND_INT, .min = INT32_MIN, .max = INT32_MAX },
	[VALUE_U64] = { .bytes = 8, .kind = VALUE_KIND_UINT, .min = 0, .max = UINT64_MAX },
	[VALUE_I64] = { .bytes = 8, .kind = VALUE_KIND_INT, .min = INT64_MIN, .max = INT64_MAX },
	[VALUE_F32] = { .bytes = 4, .kind = VALUE_KIND_FLOAT },
	[VALUE_F64] = { .bytes = 8, .kind = VALUE_KIND_FLOAT },
	[VALUE_STRING] = { .bytes = 0, .kind = VALUE_KIND_STRING },
};

#define NTYPES	  (sizeof(type_infos) / sizeof(type_infos[0]))
#define MAX_BYTES 8 /* the widest numeric type */

static int type_valid(enum value_type t)
{
	return (size_t)t < NTYPES;
}

static int order_valid(enum byte_order o)
{
	return o == ORDER_ABCD || o == ORDER_CDAB || o == ORDER_BADC || o == ORDER_DCBA;
}

static int is_integer_type(enum value_type t)
{
	return type_infos[t].kind == VALUE_KIND_INT || type_infos[t].kind == VALUE_KIND_UINT;
}

size_t codec_registers(enum value_type t, size_t length)
{
	if (!type_valid(t))
		return 0;
	if (t == VALUE_STRING)
		return (length + 1) / 2;
	if (t == VALUE_BOOL)
		return 1;
	return type_infos[t].bytes / 2;
}

size_t codec_bytes(enum value_type t, size_t length)
{
	if (!type_valid(t))
		return 0;
	if (t == VALUE_STRING)
		return length;
	return type_infos[t].bytes;
}

/*
 * Where canonical byte 'k' (0 = most significant) of an 'n'-byte value sits
 * on the wire, the wire being the registers' bytes high byte first. CDAB and
 * DCBA reverse the order of the 16-bit words; BADC and DCBA swap the two bytes
 * inside each word.
 */
static size_t wire_index(enum byte_order o, size_t n, size_t k)
{
	size_t word = k / 2, byte = k % 2;

	if (o == ORDER_CDAB || o == ORDER_DCBA)
		word = n / 2 - 1 - word;
	if (o == ORDER_BADC || o == ORDER_DCBA)
		byte = 1 - byte;
	return word * 2 + byte;
}

static uint64_t get_be(const uint8_t *b, size_t n)
{
	uint64_t x = 0;

	for (size_t k = 0; k < n; k++)
		x = (x << 8) | b[k];
	return x;
}

static void put_be(uint8_t *b, size_t n, uint64_t x)
{
	for (size_t k = n; k-- > 0;) {
		b[k] = (uint8_t)(x & 0xff);
		x >>= 8;
	}
}

/* The two's complement number in the low 'bits' bits of 'x'. */
static int64_t sign_extend(uint64_t x, unsigned bits)
{
	uint64_t mask = bits >= 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;

	x &= mask;
	if ((x >> (bits - 1)) & 1)
		return -(int64_t)(~x & mask) - 1;
	return (int64_t)x;
}

/* The value of integer type 't' (bool included) whose two's complement bits are 'x'. */
static struct value integer_value(enum value_type t, uint64_t x)
{
	const struct type_info *ti = &type_infos[t];

	if (ti->kind == VALUE_KIND_BOOL)
		return (struct value){ .kind = VALUE_KIND_BOOL, .b = x != 0 };
	if (ti->kind == VALUE_KIND_INT)
		return (struct value){ .kind = VALUE_KIND_INT,
				       .i = sign_extend(x, (unsigned)(ti->bytes * 8)) };
	return (struct value){ .kind = VALUE_KIND_UINT, .u = x };
}

/* Decodes a numeric type from its canonical big-endian bytes. */
static void decode_canonical(enum value_type t, const uint8_t *canon, struct value *out)
{
	uint64_t x = get_be(canon, type_infos[t].bytes);

	if (t == VALUE_F32) {
		uint32_t w = (uint32_t)x;
		float f;

		memcpy(&f, &w, sizeof(f));
		*out = (struct value){ .kind = VALUE_KIND_FLOAT, .f = f };
	} else if (t == VALUE_F64) {
		double d;

		memcpy(&d, &x, sizeof(d));
		*out = (struct value){ .kind = VALUE_KIND_FLOAT, .f = d };
	} else {
		*out = integer_value(t, x);
	}
}

/*
 * Checks that the numeric value 'v' is an integer in [min, max] and stores it,
 * two's complement, in 'bits'. Returns 0, GD_ERANGE, or GD_EINVAL for a kind
 * that is not a number.
 */
static int fit_integer(const struct value *v, int64_t min, uint64_t max, uint64_t *bits)
{
	switch (v->kind) {
	case VALUE_KIND_BOOL: /* 0 or 1 fits every integer type */
		*bits = v->b ? 1 : 0;
		return 0;
	case VALUE_KIND_INT:
		if (v->i < min || (v->i > 0 && (uint64_t)v->i > max))
			return GD_ERANGE;
		*bits = (uint64_t)v->i;
		return 0;
	case VALUE_KIND_UINT:
		if (v->u > max)
			return GD_ERANGE;
		*bits = v->u;
		return 0;
	case VALUE_KIND_FLOAT:
		/*
		 * max + 1 is a power of two, exact as a double even where max
		 * itself is not (2^63 - 1, 2^64 - 1); NaN fails both tests.
		 */
		if (!(v->f >= (double)min && v->f < (double)max + 1.0))
			return GD_ERANGE;
		if (v->f != trunc(v->f))
			return GD_ERANGE;
		*bits = v->f < 0 ? (uint64_t)(int64_t)v->f : (uint64_t)v->f;
		return 0;
	default:
		return GD_EINVAL;
	}
}

/* The numeric value 'v' as a double. Returns 0, or GD_EINVAL if it is not a number. */
static int as_double(const struct value *v, double *d)
{
	switch (v->kind) {
	case VALUE_KIND_BOOL:
		*d = v->b ? 1.0 : 0.0;
		return 0;
	case VALUE_KIND_INT:
		*d = (double)v->i;
		return 0;
	case VALUE_KIND_UINT:
		*d = (double)v->u;
		return 0;
	case VALUE_KIND_FLOAT:
		*d = v->f;
		return 0;
	default:
		return GD_EINVAL;
	}
}

/*
 * The numeric value 'v' as a double for float type 't'. f32 refuses finite
 * values beyond FLT_MAX with GD_ERANGE; NaN and infinities pass.
 */
static int fit_float(const struct value *v, enum value_type t, double *d)
{
	if (as_double(v, d) != 0)
		return GD_EINVAL;
	if (t == VALUE_F32 && isfinite(*d) && fabs(*d) > FLT_MAX)
		return GD_ERANGE;
	return 0;
}

/* Encodes 'in' as numeric type 't' (bool included) into its canonical big-endian bytes. */
static int encode_canonical(enum value_type t, const struct value *in, uint8_t *canon)
{
	const struct type_info *ti = &type_infos[t];
	uint64_t bits;
	double d;
	int rc;

	if (t == VALUE_F32) {
		float f;
		uint32_t w;

		rc = fit_float(in, t, &d);
		if (rc != 0)
			return rc;
		f = (float)d;
		memcpy(&w, &f, sizeof(w));
		bits = w;
	} else if (t == VALUE_F64) {
		rc = fit_float(in, t, &d);
		if (rc != 0)
			return rc;
		memcpy(&bits, &d, sizeof(bits));
	} else {
		rc = fit_integer(in, ti->min, ti->max, &bits);
		if (rc != 0)
			return rc;
	}
	put_be(canon, ti->bytes, bits);
	return 0;
}

/* Ends a decoded string: cuts at the first NUL, masks unprintable bytes, drops trailing spaces. */
static void string_finish(char *s, size_t length, struct value *out)
{
	size_t n = 0;

	while (n < length && s[n] != '\0') {
		unsigned char c = (unsigned char)s[n];

		if (c < 0x20 || c > 0x7e)
			s[n] = '?';
		n++;
	}
	while (n > 0 && s[n - 1] == ' ')
		n--;
	s[n] = '\0';
	*out = (struct value){ .kind = VALUE_KIND_STRING, .s = s };
}

/* Checks that 'in' is a string of at most 'length' characters; stores its length in 'n'. */
static int string_fits(const struct value *in, size_t length, size_t *n)
{
	if (in->kind != VALUE_KIND_STRING || in->s == NULL)
		return GD_EINVAL;
	*n = strnlen(in->s, length + 1);
	if (*n > length)
		return GD_ERANGE;
	return 0;
}

/* Strings in registers: two characters per register, low byte first for BADC and DCBA. */
static int string_low_first(enum byte_order o)
{
	return o == ORDER_BADC || o == ORDER_DCBA;
}

/*
 * Over bytes, the order applies to numbers only: a string is its characters
 * in order, whatever 'o' says.
 */
int codec_decode_bytes(enum value_type t, enum byte_order o, size_t length, const uint8_t *bytes,
		       struct value *out, char *strbuf)
{
	uint8_t canon[MAX_BYTES];
	size_t n;

	if (!type_valid(t) || !order_valid(o) || bytes == NULL || out == NULL)
		return GD_EINVAL;
	if (t == VALUE_STRING) {
		if (strbuf == NULL)
			return GD_EINVAL;
		memcpy(strbuf, bytes, length);
		string_finish(strbuf, length, out);
		return 0;
	}
	if (t == VALUE_BOOL) {
		*out = (struct value){ .kind = VALUE_KIND_BOOL, .b = bytes[0] != 0 };
		return 0;
	}
	n = type_infos[t].bytes;
	for (size_t k = 0; k < n; k++)
		canon[k] = bytes[wire_index(o, n, k)];
	decode_canonical(t, canon, out);
	return 0;
}

int codec_encode_bytes(enum value_type t, enum byte_order o, size_t length, const struct value *in,
		       uint8_t *bytes)
{
	uint8_t canon[MAX_BYTES];
	size_t n;
	int rc;

	if (!type_valid(t) || !order_valid(o) || in == NULL || bytes == NULL)
		return GD_EINVAL;
	if (t == VALUE_STRING) {
		rc = string_fits(in, length, &n);
		if (rc != 0)
			return rc;
		memset(bytes, 0, length);
		memcpy(bytes, in->s, n);
		return 0;
	}
	rc = encode_canonical(t, in, canon);
	if (rc != 0)
		return rc;
	if (t == VALUE_BOOL) {
		bytes[0] = canon[0];
		return 0;
	}
	n = type_infos[t].bytes;
	for (size_t k = 0; k < n; k++)
		bytes[wire_index(o, n, k)] = canon[k];
	return 0;
}

int codec_decode_regs(enum value_type t, enum byte_order o, size_t length, const uint16_t *regs,
		      struct value *out, char *strbuf)
{
	uint8_t wire[MAX_BYTES];
	size_t nregs;

	if (!type_valid(t) || !order_valid(o) || regs == NULL || out == NULL)
		return GD_EINVAL;
	if (t == VALUE_STRING) {
		if (strbuf == NULL)
			return GD_EINVAL;
		for (size_t k = 0; k < length; k++) {
			uint16_t r = regs[k / 2];
			int high = (k % 2 == 0) != string_low_first(o);

			strbuf[k] = (char)(high ? r >> 8 : r & 0xff);
		}
		string_finish(strbuf, length, out);
		return 0;
	}
	if (t == VALUE_BOOL) {
		*out = (struct value){ .kind = VALUE_KIND_BOOL, .b = regs[0] != 0 };
		return 0;
	}
	nregs = codec_registers(t, length);
	for (size_t i = 0; i < nregs; i++) {
		wire[2 * i] = (uint8_t)(regs[i] >> 8);
		wire[2 * i + 1] = (uint8_t)(regs[i] & 0xff);
	}
	return codec_decode_bytes(t, o, length, wire, out, NULL);
}

int codec_encode_regs(enum value_type t, enum byte_order o, size_t length, const struct value *in,
		      uint16_t *regs)
{
	uint8_t wire[MAX_BYTES];
	size_t nregs, n;
	int rc;

	if (!type_valid(t) || !order_valid(o) || in == NULL || regs == NULL)
		return GD_EINVAL;
	if (t == VALUE_STRING) {
		rc = string_fits(in, length, &n);
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < codec_registers(t, length); i++) {
			uint8_t first = 2 * i < n ? (uint8_t)in->s[2 * i] : 0;
			uint8_t second = 2 * i + 1 < n ? (uint8_t)in->s[2 * i + 1] : 0;

			if (string_low_first(o))
				regs[i] = (uint16_t)(second << 8 | first);
			else
				regs[i] = (uint16_t)(first << 8 | second);
		}
		return 0;
	}
	rc = codec_encode_bytes(t, o, length, in, wire);
	if (rc != 0)
		return rc;
	if (t == VALUE_BOOL) {
		regs[0] = wire[0];
		return 0;
	}
	nregs = codec_registers(t, length);
	for (size_t i = 0; i < nregs; i++)
		regs[i] = (uint16_t)(wire[2 * i] << 8 | wire[2 * i + 1]);
	return 0;
}

/*
 * Rounds 'v' to 15 significant digits, the precision a double holds for any
 * decimal. raw * 0.1 - 40 gives 160.60000000000002 for raw 2006; an operator
 * must see 160.6. round(v * 10^k) is an exact integer and dividing it by an
 * exact power of ten is correctly rounded, so the result is the double
 * nearest the 15-digit decimal. Values too large or small are left as they are.
 */
static double round_significant(double v)
{
	static const double pow10[] = { 1e0,  1e1,  1e2,  1e3,	1e4,  1e5,  1e6,  1e7,
					1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
					1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
	double scaled;
	int k;

	if (v == 0 || !isfinite(v))
		return v;
	k = 14 - (int)floor(log10(fabs(v)));
	if (k < 0 || k > 22)
		return v;
	scaled = round(v * pow10[k]);
	if (fabs(scaled) >= 9007199254740992.0) /* 2^53: no longer exact */
		return v;
	return scaled / pow10[k];
}

int codec_scale(struct value *v, double scale, double offset)
{
	double d;

	if (v == NULL)
		return GD_EINVAL;
	switch (v->kind) {
	case VALUE_KIND_BOOL:
	case VALUE_KIND_STRING:
		return 0;
	case VALUE_KIND_INT:
	case VALUE_KIND_UINT:
		if (scale == 1 && offset == 0)
			return 0;
		break;
	case VALUE_KIND_FLOAT:
		break;
	default:
		return GD_EINVAL;
	}
	(void)as_double(v, &d); /* a number: checked above */
	if (scale != 1 || offset != 0)
		d = round_significant(d * scale + offset);
	*v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = d };
	return isfinite(d) ? 0 : GD_ERANGE;
}

/*
 * Bools are not scaled (codec_scale passes them unchanged): a bool point takes
 * a bool, or a number that is 0 or 1. Integers given to an integer type with
 * scale 1 and offset 0 are taken exactly, not through a double.
 */
int codec_unscale(const struct value *eng, enum value_type t, double scale, double offset,
		  struct value *raw)
{
	const struct type_info *ti;
	struct value v;
	uint64_t bits;
	double d;
	int rc;

	if (eng == NULL || raw == NULL || !type_valid(t) || scale == 0 || !isfinite(scale) ||
	    !isfinite(offset))
		return GD_EINVAL;
	ti = &type_infos[t];
	if (t == VALUE_STRING) {
		if (eng->kind != VALUE_KIND_STRING)
			return GD_EINVAL;
		*raw = *eng;
		return 0;
	}
	if (as_double(eng, &d) != 0)
		return GD_EINVAL;
	if (t == VALUE_BOOL) {
		rc = fit_integer(eng, ti->min, ti->max, &bits);
		if (rc != 0)
			return rc;
		*raw = integer_value(t, bits);
		return 0;
	}
	if (eng->kind != VALUE_KIND_FLOAT && scale == 1 && offset == 0) {
		v = *eng;
	} else {
		d = (d - offset) / scale;
		if (is_integer_type(t))
			d = round(d); /* ties away from zero */
		v = (struct value){ .kind = VALUE_KIND_FLOAT, .f = d };
	}
	if (is_integer_type(t)) {
		rc = fit_integer(&v, ti->min, ti->max, &bits);
		if (rc != 0)
			return rc;
		*raw = integer_value(t, bits);
		return 0;
	}
	rc = fit_float(&v, t, &d);
	if (rc != 0)
		return rc;
	*raw = (struct value){ .kind = VALUE_KIND_FLOAT, .f = d };
	return 0;
}
