/* canbus.c: DBC signal extraction, J1939 identifiers and the SLCAN (Lawicel) line protocol. */
#include <string.h>

#include "../base/base.h"
#include "canbus.h"

/* ---- signals ------------------------------------------------------------------------------ */

/*
 * Both byte orders become a run of bits [first, first + length) in a linear
 * numbering of the 64-bit frame, so that one shift and one mask extract them.
 * Intel numbers bits as DBC does (LSB of byte 0 is 0) and the run starts at
 * the signal's LSB. Motorola numbers bits from the MSB of byte 0 (which is 0)
 * and the run starts at the signal's MSB: the "sawtooth" of DBC becomes a
 * straight line there.
 */
static unsigned signal_first_bit(const struct can_signal *s)
{
	if (!s->big_endian)
		return s->start_bit;
	return (s->start_bit / 8u) * 8u + (7u - s->start_bit % 8u);
}

/* True if the signal is well formed and lies in the first 'nbytes' bytes. */
static bool signal_in(const struct can_signal *s, unsigned nbytes)
{
	if (s->length < 1 || s->length > 64 || s->start_bit > 63)
		return false;
	return signal_first_bit(s) + s->length <= nbytes * 8u;
}

bool can_signal_fits(const struct can_signal *s, uint8_t dlc)
{
	return dlc <= CAN_MAX_DLEN && signal_in(s, dlc);
}

static uint64_t low_mask(unsigned length)
{
	return length >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << length) - 1;
}

/*
 * The bytes a signal spans, [*lo, *hi], and how far right of the last one its
 * lowest bit sits once those bytes are read as one integer in the signal's
 * byte order. A signal that fits 8 bytes spans at most 8, so that integer
 * never exceeds 64 bits.
 */
static unsigned signal_span(const struct can_signal *s, unsigned *lo, unsigned *hi)
{
	unsigned first = signal_first_bit(s);
	unsigned end = first + s->length; /* one past the last bit, linear numbering */

	*lo = first / 8u;
	*hi = (end - 1) / 8u;
	if (!s->big_endian)
		return first % 8u;
	return (*hi + 1) * 8u - end;
}

uint64_t can_signal_raw(const struct can_signal *s, const uint8_t *data)
{
	unsigned lo, hi, shift;
	uint64_t acc = 0;

	/* A signal outside any frame reads as 0 rather than past the buffer. */
	if (!signal_in(s, CAN_MAX_DLEN))
		return 0;
	shift = signal_span(s, &lo, &hi);
	if (s->big_endian) {
		for (unsigned i = lo; i <= hi; i++)
			acc = acc << 8 | data[i];
	} else {
		for (unsigned i = hi + 1; i-- > lo;)
			acc = acc << 8 | data[i];
	}
	return (acc >> shift) & low_mask(s->length);
}

int64_t can_signal_signed(const struct can_signal *s, uint64_t raw)
{
	uint64_t sign;

	if (!s->is_signed || s->length < 1 || s->length >= 64)
		return (int64_t)raw;
	sign = (uint64_t)1 << (s->length - 1);
	raw &= low_mask(s->length);
	/* (raw ^ sign) - sign sets every bit above the sign bit to the sign bit. */
	return (int64_t)((raw ^ sign) - sign);
}

void can_signal_put(const struct can_signal *s, uint8_t *data, uint64_t raw)
{
	unsigned lo, hi, shift;
	uint64_t acc = 0, mask;

	if (!signal_in(s, CAN_MAX_DLEN))
		return;
	shift = signal_span(s, &lo, &hi);
	mask = low_mask(s->length) << shift;
	raw = (raw << shift) & mask;
	if (s->big_endian) {
		for (unsigned i = lo; i <= hi; i++)
			acc = acc << 8 | data[i];
		acc = (acc & ~mask) | raw;
		for (unsigned i = hi + 1; i-- > lo; acc >>= 8)
			data[i] = (uint8_t)acc;
	} else {
		for (unsigned i = hi + 1; i-- > lo;)
			acc = acc << 8 | data[i];
		acc = (acc & ~mask) | raw;
		for (unsigned i = lo; i <= hi; i++, acc >>= 8)
			data[i] = (uint8_t)acc;
	}
}

/* ---- J1939 -------------------------------------------------------------------------------- */

#define J1939_PDU2_MIN 240 /* PF from which PS is a group extension */

void j1939_decode(uint32_t id29, struct j1939_id *out)
{
	uint32_t dp = (id29 >> 24) & 0x3u; /* EDP and DP */
	uint32_t pf = (id29 >> 16) & 0xFFu;
	uint32_t ps = (id29 >> 8) & 0xFFu;

	out->priority = (uint8_t)((id29 >> 26) & 0x7u);
	out->source = (uint8_t)(id29 & 0xFFu);
	if (pf < J1939_PDU2_MIN) {
		out->pgn = dp << 16 | pf << 8;
		out->dest = (uint8_t)ps;
	} else {
		out->pgn = dp << 16 | pf << 8 | ps;
		out->dest = 0xFF;
	}
}

uint32_t j1939_encode(const struct j1939_id *in)
{
	uint32_t dp = (in->pgn >> 16) & 0x3u;
	uint32_t pf = (in->pgn >> 8) & 0xFFu;
	uint32_t ps = pf < J1939_PDU2_MIN ? in->dest : (in->pgn & 0xFFu);

	return (uint32_t)(in->priority & 0x7u) << 26 | dp << 24 | pf << 16 | ps << 8 | in->source;
}

/* ---- SLCAN -------------------------------------------------------------------------------- */

#define SLCAN_BEL	  0x07
#define SLCAN_TS_DIGITS	  4
#define SLCAN_TS_MAX	  59999 /* the timestamp wraps at 60 s */
#define SLCAN_ID_STD_LEN  3
#define SLCAN_ID_EXT_LEN  8
#define SLCAN_INFO_DIGITS 4 /* "Vhhss", "Nxxxx" */

static const char hex_upper[] = "0123456789ABCDEF";

/* Reads 'n' (at most 8) hex digits; false if one is not a hex digit. */
static bool hex_read(const char *s, size_t n, uint32_t *out)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++) {
		int d = gd_hex_digit(s[i]);

		if (d < 0)
			return false;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return true;
}

/* Copies the start of a line into ev->text, non-printable bytes as '?'. */
static void text_set(struct slcan_event *ev, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < sizeof(ev->text) - 1; i++) {
		unsigned char c = (unsigned char)s[i];

		ev->text[i] = c >= 0x20 && c < 0x7F ? (char)c : '?';
	}
	ev->text[i] = '\0';
}

static bool alnum_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return false;
	}
	return true;
}

/* "tIIIL", "TIIIIIIIIL", "r..", "R.." with data (not for r/R) and an optional timestamp. */
static bool parse_frame(const char *line, size_t len, struct slcan_event *ev)
{
	struct can_msg *m = &ev->msg;
	char kind = line[0];
	size_t idlen, pos, rest;
	uint32_t v;

	m->extended = kind == 'T' || kind == 'R';
	m->rtr = kind == 'r' || kind == 'R';
	idlen = m->extended ? SLCAN_ID_EXT_LEN : SLCAN_ID_STD_LEN;
	if (len < 1 + idlen + 1 || !hex_read(line + 1, idlen, &v))
		return false;
	if (v > (m->extended ? CAN_EFF_MAX : CAN_SFF_MAX))
		return false;
	m->id = v;
	pos = 1 + idlen;
	if (line[pos] < '0' || line[pos] > '8')
		return false;
	m->dlc = (uint8_t)(line[pos++] - '0');
	if (!m->rtr) {
		if (len - pos < 2u * m->dlc)
			return false;
		for (unsigned i = 0; i < m->dlc; i++, pos += 2) {
			if (!hex_read(line + pos, 2, &v))
				return false;
			m->data[i] = (uint8_t)v;
		}
	}
	rest = len - pos;
	if (rest == 0)
		return true;
	if (rest != SLCAN_TS_DIGITS || !hex_read(line + pos, SLCAN_TS_DIGITS, &v) ||
	    v > SLCAN_TS_MAX)
		return false;
	ev->timestamp_ms = (int)v;
	return true;
}

static enum slcan_kind parse_kind(const char *line, size_t len, struct slcan_event *ev)
{
	uint32_t v;

	if (len == 0)
		return SLCAN_OK;
	switch (line[0]) {
	case SLCAN_BEL:
		return len == 1 ? SLCAN_ERROR : SLCAN_MALFORMED;
	case 'z':
	case 'Z':
		return len == 1 ? SLCAN_TX_ACK : SLCAN_MALFORMED;
	case 't':
	case 'T':
	case 'r':
	case 'R':
		return parse_frame(line, len, ev) ? SLCAN_FRAME : SLCAN_MALFORMED;
	case 'V':
	case 'N':
		if (len != 1 + SLCAN_INFO_DIGITS || !alnum_run(line + 1, SLCAN_INFO_DIGITS))
			return SLCAN_MALFORMED;
		text_set(ev, line + 1, SLCAN_INFO_DIGITS);
		return line[0] == 'V' ? SLCAN_VERSION : SLCAN_SERIAL;
	case 'F':
		if (len != 3 || !hex_read(line + 1, 2, &v))
			return SLCAN_MALFORMED;
		ev->status = (uint8_t)v;
		return SLCAN_STATUS;
	default:
		return SLCAN_MALFORMED;
	}
}

enum slcan_kind slcan_parse_line(const char *line, size_t len, struct slcan_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->timestamp_ms = -1;
	if (line == NULL)
		len = 0;
	ev->kind = parse_kind(line, len, ev);
	if (ev->kind == SLCAN_MALFORMED) {
		/* A half-parsed frame must not look like data. */
		memset(&ev->msg, 0, sizeof(ev->msg));
		ev->timestamp_ms = -1;
		text_set(ev, line, len);
	}
	return ev->kind;
}

void slcan_init(struct slcan_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static void emit(struct slcan_parser *p, const struct slcan_event *ev, slcan_cb cb, void *ctx)
{
	p->lines++;
	if (ev->kind == SLCAN_MALFORMED)
		p->malformed++;
	if (cb != NULL)
		cb(ctx, ev);
}

/* Ends the line being collected; an overlong one is malformed whatever it holds. */
static void line_end(struct slcan_parser *p, slcan_cb cb, void *ctx)
{
	struct slcan_event ev;

	if (p->overflow) {
		memset(&ev, 0, sizeof(ev));
		ev.kind = SLCAN_MALFORMED;
		ev.timestamp_ms = -1;
		text_set(&ev, p->line, p->len);
	} else {
		slcan_parse_line(p->line, p->len, &ev);
	}
	p->len = 0;
	p->overflow = false;
	emit(p, &ev, cb, ctx);
}

void slcan_push(struct slcan_parser *p, const uint8_t *data, size_t n, slcan_cb cb, void *ctx)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = data[i];

		if (c == '\r') {
			line_end(p, cb, ctx);
		} else if (c == SLCAN_BEL) {
			/* BEL answers a command on its own; bytes before it are a torn line. */
			if (p->len > 0 || p->overflow) {
				p->overflow = true;
				line_end(p, cb, ctx);
			}
			p->line[0] = (char)c;
			p->len = 1;
			line_end(p, cb, ctx);
		} else if (c == '\n') {
			continue;
		} else if (p->len < sizeof(p->line)) {
			p->line[p->len++] = (char)c;
		} else {
			p->overflow = true;
		}
	}
}

static char *hex_put(char *out, uint32_t v, unsigned digits)
{
	for (unsigned i = digits; i-- > 0; v >>= 4)
		out[i] = hex_upper[v & 0xFu];
	return out + digits;
}

size_t slcan_format(const struct can_msg *m, char *out)
{
	char *o = out;
	unsigned dlc = m->dlc > CAN_MAX_DLEN ? CAN_MAX_DLEN : m->dlc;

	if (m->extended) {
		*o++ = m->rtr ? 'R' : 'T';
		o = hex_put(o, m->id & CAN_EFF_MAX, SLCAN_ID_EXT_LEN);
	} else {
		*o++ = m->rtr ? 'r' : 't';
		o = hex_put(o, m->id & CAN_SFF_MAX, SLCAN_ID_STD_LEN);
	}
	*o++ = (char)('0' + dlc);
	for (unsigned i = 0; i < dlc && !m->rtr; i++)
		o = hex_put(o, m->data[i], 2);
	*o++ = '\r';
	*o = '\0';
	return (size_t)(o - out);
}

int slcan_bitrate_cmd(int bitrate, char *out, size_t cap)
{
	static const int rates[] = { 10000,  20000,  50000,  100000, 125000,
				     250000, 500000, 800000, 1000000 };

	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		if (rates[i] != bitrate)
			continue;
		if (out == NULL || cap < 4)
			return -1;
		out[0] = 'S';
		out[1] = (char)('0' + i);
		out[2] = '\r';
		out[3] = '\0';
		return 3;
	}
	return -1;
}
