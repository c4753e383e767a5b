/* modbus_wire.c: Modbus TCP and RTU requests built, and answers checked against them, byte by byte.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "framer.h"
#include "modbus.h"

#define TCP_MAX_LENGTH 254 /* MBAP length: unit id and the largest PDU */
#define EXCEPTION_BIT  0x80

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static bool is_read(uint8_t fc)
{
	return fc >= 1 && fc <= 4;
}

static bool is_bits(uint8_t fc)
{
	return fc == 1 || fc == 2;
}

/* The byte count a read answer must carry: ceil(count / 8) for bits, 2 * count for registers. */
static size_t read_byte_count(const struct mb_wire_request *rq)
{
	return is_bits(rq->function) ? ((size_t)rq->count + 7) / 8 : (size_t)rq->count * 2;
}

/* Whether 'rq' is a request we send (the limits of Modbus application protocol 6.1 to 6.12). */
static bool request_valid(const struct mb_wire_request *rq)
{
	unsigned max;

	switch (rq->function) {
	case 1:
	case 2:
		max = MB_MAX_READ_BITS;
		break;
	case 3:
	case 4:
		max = MB_MAX_READ_REGISTERS;
		break;
	case 5:
		return rq->count == 1 && (rq->value == 0xFF00 || rq->value == 0);
	case 6:
		return rq->count == 1;
	case 16:
		max = MB_WIRE_MAX_WRITE;
		break;
	default:
		return false;
	}
	return rq->count >= 1 && rq->count <= max &&
	       (unsigned long)rq->address + rq->count <= 65536;
}

/* The length of the PDU of a correct, non-exception answer to a valid 'rq'. */
static size_t answer_pdu_len(const struct mb_wire_request *rq)
{
	if (is_read(rq->function))
		return 2 + read_byte_count(rq);
	return 5; /* FC 5, 6, 16: function, address, value or quantity */
}

size_t mb_wire_answer_len(const struct mb_wire_request *rq)
{
	if (!request_valid(rq))
		return 0;
	return rq->rtu ? 1 + answer_pdu_len(rq) + 2 : MB_WIRE_TCP_HEADER + answer_pdu_len(rq);
}

size_t mb_wire_build(const struct mb_wire_request *rq, const uint16_t *regs, uint8_t *out)
{
	size_t head = rq->rtu ? 1 : MB_WIRE_TCP_HEADER;
	uint8_t *pdu = out + head;
	size_t pdu_len = 5;

	if (!request_valid(rq) || (rq->function == 16 && regs == NULL))
		return 0;
	pdu[0] = rq->function;
	put_be16(pdu + 1, rq->address);
	if (rq->function == 5 || rq->function == 6) {
		put_be16(pdu + 3, rq->value);
	} else {
		put_be16(pdu + 3, rq->count);
	}
	if (rq->function == 16) {
		pdu[5] = (uint8_t)(rq->count * 2);
		for (size_t i = 0; i < rq->count; i++)
			put_be16(pdu + 6 + 2 * i, regs[i]);
		pdu_len = 6 + (size_t)rq->count * 2;
	}
	if (rq->rtu) {
		uint16_t crc;

		out[0] = rq->unit_id;
		crc = csum_crc16_modbus(out, 1 + pdu_len);
		out[1 + pdu_len] = (uint8_t)crc; /* low byte first (serial line 2.5.1.2) */
		out[2 + pdu_len] = (uint8_t)(crc >> 8);
		return 1 + pdu_len + 2;
	}
	put_be16(out, rq->tid);
	put_be16(out + 2, 0);
	put_be16(out + 4, (uint16_t)(1 + pdu_len));
	out[6] = rq->unit_id;
	return MB_WIRE_TCP_HEADER + pdu_len;
}

/* A verdict waits for 'want' bytes in all, 'have' being there. Returns MB_WIRE_NEED. */
static enum mb_wire_status need(struct mb_wire_answer *ans, size_t have, size_t want)
{
	ans->status = MB_WIRE_NEED;
	ans->need = want - have;
	return MB_WIRE_NEED;
}

/* The frame does not match, for the reason 'fmt' says. Returns MB_WIRE_INVALID. */
static enum mb_wire_status invalid(struct mb_wire_answer *ans, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static enum mb_wire_status invalid(struct mb_wire_answer *ans, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ans->why, sizeof(ans->why), fmt, ap);
	va_end(ap);
	ans->status = MB_WIRE_INVALID;
	return MB_WIRE_INVALID;
}

/*
 * The PDU checks both transports share, on 'pdu' (the 'have' bytes after the
 * address or MBAP header). 'pdu_len' is the PDU length the header promises
 * (TCP) or 0 (RTU: not known before the function code). Returns
 * MB_WIRE_NEED when 'have' is too short to judge a byte that decides the
 * length (*want: the PDU bytes to wait for); MB_WIRE_OK or MB_WIRE_EXCEPTION
 * once the length is known and agrees (*want: the PDU's length; the data,
 * echo and CRC are the caller's to wait for and check); or MB_WIRE_INVALID.
 */
static enum mb_wire_status check_pdu(const struct mb_wire_request *rq, const uint8_t *pdu,
				     size_t have, size_t pdu_len, size_t *want,
				     struct mb_wire_answer *ans)
{
	uint8_t fc;

	*want = 1;
	if (have < 1)
		return MB_WIRE_NEED;
	fc = pdu[0];
	if (fc == (rq->function | EXCEPTION_BIT)) {
		if (pdu_len != 0 && pdu_len != 2)
			return invalid(ans, "MBAP length %zu for an exception answer (expected 3)",
				       pdu_len + 1);
		*want = 2;
		return MB_WIRE_EXCEPTION;
	}
	if (fc != rq->function)
		return invalid(ans, "function code %u (expected %u, or %u for an exception)", fc,
			       rq->function, rq->function | EXCEPTION_BIT);
	if (is_read(fc)) {
		size_t count = read_byte_count(rq);

		*want = 2;
		if (have < 2)
			return MB_WIRE_NEED;
		if (pdu[1] != count)
			return invalid(ans, "byte count %u (expected %zu for %u %s%s)", pdu[1],
				       count, rq->count, is_bits(fc) ? "bit" : "register",
				       rq->count == 1 ? "" : "s");
		if (pdu_len != 0 && pdu_len != 2 + count)
			return invalid(ans, "MBAP length %zu (expected %zu for %zu data bytes)",
				       pdu_len + 1, 3 + count, count);
		*want = 2 + count;
		return MB_WIRE_OK;
	}
	/* FC 5, 6, 16: the answer echoes address, and value (5, 6) or quantity (16). */
	if (pdu_len != 0 && pdu_len != 5)
		return invalid(ans, "MBAP length %zu (expected 6 for a write echo)", pdu_len + 1);
	*want = 5;
	return MB_WIRE_OK;
}

/* The echo of a write answer, whole in 'pdu'. Returns MB_WIRE_OK or MB_WIRE_INVALID. */
static enum mb_wire_status check_echo(const struct mb_wire_request *rq, const uint8_t *pdu,
				      struct mb_wire_answer *ans)
{
	uint16_t want_value = rq->function == 16 ? rq->count : rq->value;

	if (be16(pdu + 1) != rq->address)
		return invalid(ans, "echoed address %u (expected %u)", be16(pdu + 1), rq->address);
	if (be16(pdu + 3) != want_value)
		return invalid(ans, "echoed %s 0x%04x (expected 0x%04x)",
			       rq->function == 16 ? "quantity" : "value", be16(pdu + 3),
			       want_value);
	return MB_WIRE_OK;
}

/*
 * The verdict on a whole frame whose length is known to agree: 'len' bytes,
 * the PDU at 'pdu_off'. Returns MB_WIRE_EXCEPTION, MB_WIRE_OK, or
 * MB_WIRE_INVALID for a write echo that differs.
 */
static enum mb_wire_status done(const struct mb_wire_request *rq, const uint8_t *buf,
				size_t pdu_off, size_t len, struct mb_wire_answer *ans)
{
	const uint8_t *pdu = buf + pdu_off;

	ans->len = len;
	if (pdu[0] & EXCEPTION_BIT) {
		ans->exception = pdu[1];
		ans->status = MB_WIRE_EXCEPTION;
		return MB_WIRE_EXCEPTION;
	}
	if (is_read(rq->function)) {
		ans->data_off = pdu_off + 2;
		ans->data_len = pdu[1];
	} else if (check_echo(rq, pdu, ans) != MB_WIRE_OK) {
		return MB_WIRE_INVALID;
	}
	ans->status = MB_WIRE_OK;
	return MB_WIRE_OK;
}

/* mb_wire_parse on TCP: MBAP header, then the PDU. */
static enum mb_wire_status parse_tcp(const struct mb_wire_request *rq, const uint8_t *buf,
				     size_t len, struct mb_wire_answer *ans)
{
	size_t length, want;
	enum mb_wire_status st;

	if (len < 4)
		return need(ans, len, 4);
	if (be16(buf + 2) != 0)
		return invalid(ans, "protocol id %u (expected 0)", be16(buf + 2));
	if (len < 6)
		return need(ans, len, 6);
	length = be16(buf + 4);
	if (length < 3 || length > TCP_MAX_LENGTH)
		return invalid(ans, "MBAP length %zu (expected 3 to %d)", length, TCP_MAX_LENGTH);
	if (be16(buf) != rq->tid) {
		invalid(ans, "transaction id %u (expected %u)", be16(buf), rq->tid);
		ans->status = MB_WIRE_OTHER_TID;
		ans->tid = be16(buf);
		ans->len = 6 + length;
		return MB_WIRE_OTHER_TID;
	}
	if (len < MB_WIRE_TCP_HEADER)
		return need(ans, len, MB_WIRE_TCP_HEADER);
	if (buf[6] != rq->unit_id)
		return invalid(ans, "unit id %u (expected %u)", buf[6], rq->unit_id);
	st = check_pdu(rq, buf + MB_WIRE_TCP_HEADER, len - MB_WIRE_TCP_HEADER, length - 1, &want,
		       ans);
	if (st == MB_WIRE_INVALID)
		return st;
	if (st == MB_WIRE_NEED || len < MB_WIRE_TCP_HEADER + want)
		return need(ans, len, MB_WIRE_TCP_HEADER + want);
	/* Everything that decides the frame's length agrees with the MBAP length now. */
	return done(rq, buf, MB_WIRE_TCP_HEADER, MB_WIRE_TCP_HEADER + want, ans);
}

/* mb_wire_parse on RTU: address, PDU, CRC (checked before the address and the echo). */
static enum mb_wire_status parse_rtu(const struct mb_wire_request *rq, const uint8_t *buf,
				     size_t len, struct mb_wire_answer *ans)
{
	size_t want, frame;
	uint16_t crc, got;
	enum mb_wire_status st;

	if (len < 1)
		return need(ans, len, 1);
	st = check_pdu(rq, buf + 1, len - 1, 0, &want, ans);
	if (st == MB_WIRE_INVALID)
		return st;
	frame = 1 + want + 2;
	if (st == MB_WIRE_NEED || len < frame)
		return need(ans, len, st == MB_WIRE_NEED ? 1 + want : frame);
	crc = csum_crc16_modbus(buf, frame - 2);
	got = (uint16_t)(buf[frame - 2] | buf[frame - 1] << 8);
	if (got != crc)
		return invalid(ans, "CRC 0x%04x (expected 0x%04x)", got, crc);
	if (buf[0] != rq->unit_id)
		return invalid(ans, "slave address %u (expected %u)", buf[0], rq->unit_id);
	return done(rq, buf, 1, frame, ans);
}

enum mb_wire_status mb_wire_parse(const struct mb_wire_request *rq, const uint8_t *buf, size_t len,
				  struct mb_wire_answer *ans)
{
	memset(ans, 0, offsetof(struct mb_wire_answer, why));
	ans->why[0] = '\0';
	if (!request_valid(rq))
		return invalid(ans, "no answer can match an invalid request (function %u)",
			       rq->function);
	return rq->rtu ? parse_rtu(rq, buf, len, ans) : parse_tcp(rq, buf, len, ans);
}

void mb_wire_unpack(const struct mb_wire_request *rq, const struct mb_wire_answer *ans,
		    const uint8_t *frame, uint16_t *regs, uint8_t *bits)
{
	const uint8_t *data = frame + ans->data_off;

	if (is_bits(rq->function)) {
		for (size_t i = 0; i < rq->count; i++)
			bits[i] = (uint8_t)(data[i / 8] >> (i % 8) & 1);
	} else {
		for (size_t i = 0; i < rq->count; i++)
			regs[i] = be16(data + 2 * i);
	}
}
