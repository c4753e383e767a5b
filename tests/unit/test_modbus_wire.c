/* test_modbus_wire.c: Modbus requests are built to the byte, and an answer counts only when every
 * field matches its request, however its bytes arrive. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../adapters/framer.h"
#include "../../adapters/modbus.h"

/* An answer as a test writes it: MBAP fields (TCP) around a PDU, or address, PDU and CRC (RTU). */
struct frame {
	uint8_t b[MB_WIRE_MAX_ADU + 16];
	size_t len;
};

/* A TCP answer; 'length' < 0 puts the right MBAP length. */
static struct frame tcp(uint16_t tid, uint16_t proto, long length, uint8_t unit, const uint8_t *pdu,
			size_t pdu_len)
{
	struct frame f = { .len = 7 + pdu_len };
	uint16_t l = length < 0 ? (uint16_t)(pdu_len + 1) : (uint16_t)length;

	f.b[0] = (uint8_t)(tid >> 8);
	f.b[1] = (uint8_t)tid;
	f.b[2] = (uint8_t)(proto >> 8);
	f.b[3] = (uint8_t)proto;
	f.b[4] = (uint8_t)(l >> 8);
	f.b[5] = (uint8_t)l;
	f.b[6] = unit;
	memcpy(f.b + 7, pdu, pdu_len);
	return f;
}

/* An RTU answer with a correct CRC. */
static struct frame rtu(uint8_t slave, const uint8_t *pdu, size_t pdu_len)
{
	struct frame f = { .len = 1 + pdu_len + 2 };
	uint16_t crc;

	f.b[0] = slave;
	memcpy(f.b + 1, pdu, pdu_len);
	crc = csum_crc16_modbus(f.b, 1 + pdu_len);
	f.b[1 + pdu_len] = (uint8_t)crc;
	f.b[2 + pdu_len] = (uint8_t)(crc >> 8);
	return f;
}

#define PDU(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

/* FC 3, unit 1, two registers from 100, transaction 0x1234 (TCP) */
static const struct mb_wire_request read2 = {
	.tid = 0x1234, .unit_id = 1, .function = 3, .address = 100, .count = 2
};

static struct mb_wire_request on_rtu(struct mb_wire_request rq)
{
	rq.rtu = true;
	return rq;
}

/* Parses the whole frame. */
static enum mb_wire_status parse(const struct mb_wire_request *rq, const struct frame *f,
				 struct mb_wire_answer *ans)
{
	return mb_wire_parse(rq, f->b, f->len, ans);
}

/*
 * Feeds the frame one byte more at a time: every prefix before the verdict
 * says NEED (with need > 0 and not past the frame for a good one), and the
 * verdict equals the whole frame's. Returns that verdict.
 */
static enum mb_wire_status parse_bytewise(const struct mb_wire_request *rq, const struct frame *f,
					  struct mb_wire_answer *ans)
{
	struct mb_wire_answer whole, part;
	enum mb_wire_status want = parse(rq, f, &whole);

	for (size_t n = 0; n <= f->len; n++) {
		enum mb_wire_status got = mb_wire_parse(rq, f->b, n, &part);

		if (got == MB_WIRE_NEED) {
			cr_assert_lt(n, f->len, "the whole frame still needs bytes");
			cr_assert_gt(part.need, 0);
			continue;
		}
		cr_assert_eq(got, want, "after %zu of %zu bytes: verdict %d, the whole frame's %d",
			     n, f->len, got, want);
		cr_assert_str_eq(part.why, whole.why);
		cr_assert_eq(part.len, whole.len);
		break;
	}
	*ans = whole;
	return want;
}

/* ---- building ---- */

Test(modbus_wire, builds_a_tcp_read_to_the_byte)
{
	static const uint8_t want[] = { 0x12, 0x34, 0, 0, 0, 6, 1, 3, 0, 100, 0, 2 };
	uint8_t out[MB_WIRE_MAX_ADU];

	cr_assert_eq(mb_wire_build(&read2, NULL, out), sizeof(want));
	cr_assert_arr_eq(out, want, sizeof(want));
	cr_assert_eq(mb_wire_answer_len(&read2), 7 + 2 + 4);
}

Test(modbus_wire, builds_an_rtu_read_with_the_crc_of_the_spec_example)
{
	/* Modbus over serial line, 6.2.2: slave 0x11 reads 3 registers from 0x6B. */
	static const uint8_t want[] = { 0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87 };
	struct mb_wire_request rq = {
		.rtu = true, .unit_id = 0x11, .function = 3, .address = 0x6B, .count = 3
	};
	uint8_t out[MB_WIRE_MAX_ADU];

	cr_assert_eq(mb_wire_build(&rq, NULL, out), sizeof(want));
	cr_assert_arr_eq(out, want, sizeof(want));
	cr_assert_eq(mb_wire_answer_len(&rq), 1 + 2 + 6 + 2);
}

Test(modbus_wire, crc16_of_the_check_string)
{
	/* CRC-16/MODBUS of "123456789" is 0x4B37 (the CRC catalogue's check value). */
	cr_assert_eq(csum_crc16_modbus((const uint8_t *)"123456789", 9), 0x4B37);
	cr_assert_eq(csum_crc16_modbus(NULL, 0), 0xFFFF);
}

Test(modbus_wire, builds_writes_of_one_coil_one_register_and_several)
{
	static const uint8_t coil[] = { 0, 7, 0, 0, 0, 6, 9, 5, 0x00, 0x10, 0xFF, 0x00 };
	static const uint8_t reg[] = { 0, 8, 0, 0, 0, 6, 9, 6, 0x01, 0x00, 0xAB, 0xCD };
	static const uint8_t regs[] = { 0,    9, 0, 0, 0,    11,   9,	 16,  0x01,
					0x00, 0, 2, 4, 0x12, 0x34, 0x56, 0x78 };
	struct mb_wire_request rq = {
		.tid = 7, .unit_id = 9, .function = 5, .address = 0x10, .count = 1, .value = 0xFF00
	};
	const uint16_t values[] = { 0x1234, 0x5678 };
	uint8_t out[MB_WIRE_MAX_ADU];

	cr_assert_eq(mb_wire_build(&rq, NULL, out), sizeof(coil));
	cr_assert_arr_eq(out, coil, sizeof(coil));
	rq = (struct mb_wire_request){
		.tid = 8, .unit_id = 9, .function = 6, .address = 0x100, .count = 1, .value = 0xABCD
	};
	cr_assert_eq(mb_wire_build(&rq, NULL, out), sizeof(reg));
	cr_assert_arr_eq(out, reg, sizeof(reg));
	rq = (struct mb_wire_request){
		.tid = 9, .unit_id = 9, .function = 16, .address = 0x100, .count = 2
	};
	cr_assert_eq(mb_wire_build(&rq, values, out), sizeof(regs));
	cr_assert_arr_eq(out, regs, sizeof(regs));
	cr_assert_eq(mb_wire_answer_len(&rq), 12, "a write's answer is its echo");
	rq.rtu = true;
	cr_assert_eq(mb_wire_build(&rq, values, out), 1 + 10 + 2);
	cr_assert_eq(csum_crc16_modbus(out, 13), 0, "a frame with its CRC checks to 0");
}

Test(modbus_wire, refuses_to_build_what_the_spec_does_not_allow)
{
	const struct mb_wire_request bad[] = {
		{ .unit_id = 1, .function = 3, .count = 0 },
		{ .unit_id = 1, .function = 3, .count = 126 },
		{ .unit_id = 1, .function = 1, .count = 2001 },
		{ .unit_id = 1, .function = 16, .count = 124 },
		{ .unit_id = 1, .function = 3, .address = 65535, .count = 2 },
		{ .unit_id = 1, .function = 5, .count = 1, .value = 0x1234 },
		{ .unit_id = 1, .function = 7, .count = 1 },
		{ .unit_id = 1, .function = 0x83, .count = 1 },
	};
	uint8_t out[MB_WIRE_MAX_ADU];
	struct mb_wire_answer ans;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(mb_wire_build(&bad[i], NULL, out), 0, "request %zu", i);
		cr_expect_eq(mb_wire_answer_len(&bad[i]), 0, "request %zu", i);
		cr_expect_eq(mb_wire_parse(&bad[i], out, 0, &ans), MB_WIRE_INVALID);
	}
	cr_assert_eq(mb_wire_build(
			     &(struct mb_wire_request){
				     .unit_id = 1, .function = 3, .address = 65534, .count = 2 },
			     NULL, out),
		     12, "the last two registers");
}

/* ---- good answers ---- */

Test(modbus_wire, takes_a_correct_register_answer_and_unpacks_it)
{
	struct frame f = tcp(0x1234, 0, -1, 1, PDU(3, 4, 0x12, 0x34, 0xFF, 0xFE));
	struct mb_wire_answer ans;
	uint16_t regs[2];

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_OK);
	cr_assert_eq(ans.len, f.len);
	cr_assert_eq(ans.data_len, 4);
	mb_wire_unpack(&read2, &ans, f.b, regs, NULL);
	cr_assert_eq(regs[0], 0x1234);
	cr_assert_eq(regs[1], 0xFFFE);
}

Test(modbus_wire, takes_a_correct_bit_answer_and_unpacks_it_lsb_first)
{
	struct mb_wire_request rq = {
		.tid = 5, .unit_id = 2, .function = 1, .address = 0, .count = 10
	};
	struct frame f = tcp(5, 0, -1, 2, PDU(1, 2, 0xCD, 0x01));
	struct mb_wire_answer ans;
	uint8_t bits[10];
	static const uint8_t want[10] = { 1, 0, 1, 1, 0, 0, 1, 1, 1, 0 };

	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_OK);
	mb_wire_unpack(&rq, &ans, f.b, NULL, bits);
	cr_assert_arr_eq(bits, want, sizeof(want));
	rq = on_rtu(rq);
	f = rtu(2, PDU(1, 2, 0xCD, 0x01));
	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_OK);
	mb_wire_unpack(&rq, &ans, f.b, NULL, bits);
	cr_assert_arr_eq(bits, want, sizeof(want));
}

Test(modbus_wire, takes_correct_write_echoes)
{
	struct mb_wire_request rq = {
		.tid = 3, .unit_id = 1, .function = 16, .address = 40, .count = 4
	};
	struct frame f = tcp(3, 0, -1, 1, PDU(16, 0, 40, 0, 4));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_OK);
	rq = (struct mb_wire_request){
		.rtu = true, .unit_id = 1, .function = 5, .address = 3, .count = 1, .value = 0xFF00
	};
	f = rtu(1, PDU(5, 0, 3, 0xFF, 0x00));
	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_OK);
	rq.function = 6;
	rq.value = 0x0102;
	f = rtu(1, PDU(6, 0, 3, 0x01, 0x02));
	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_OK);
}

Test(modbus_wire, bytes_after_the_answer_are_not_part_of_it)
{
	struct frame f = tcp(0x1234, 0, -1, 1, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;

	f.b[f.len++] = 0xEE;
	f.b[f.len++] = 0xEE;
	cr_assert_eq(parse(&read2, &f, &ans), MB_WIRE_OK);
	cr_assert_eq(ans.len, f.len - 2);
}

/* ---- exceptions: any code ---- */

Test(modbus_wire, an_exception_is_an_exception_whatever_its_code)
{
	const uint8_t codes[] = { 0, 1, 2, 4, 11, 12, 200, 255 };
	struct mb_wire_request rq_rtu = on_rtu(read2);
	struct mb_wire_answer ans;

	for (size_t i = 0; i < sizeof(codes); i++) {
		struct frame f = tcp(0x1234, 0, -1, 1, PDU(0x83, codes[i]));

		cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_EXCEPTION, "code %u",
			     codes[i]);
		cr_assert_eq(ans.exception, codes[i]);
		cr_assert_eq(ans.len, 9);
		f = rtu(1, PDU(0x83, codes[i]));
		cr_assert_eq(parse_bytewise(&rq_rtu, &f, &ans), MB_WIRE_EXCEPTION, "code %u",
			     codes[i]);
		cr_assert_eq(ans.exception, codes[i]);
		cr_assert_eq(ans.len, 5);
	}
}

Test(modbus_wire, an_exception_with_a_longer_mbap_length_is_refused)
{
	struct frame f = tcp(0x1234, 0, 4, 1, PDU(0x83, 0, 0));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	cr_assert(strstr(ans.why, "exception") != NULL, "%s", ans.why);
}

Test(modbus_wire, an_exception_to_another_function_is_refused)
{
	struct frame f = tcp(0x1234, 0, -1, 1, PDU(0x84, 2));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "function code 132 (expected 3, or 131 for an exception)");
}

/* ---- TCP: every MBAP field ---- */

Test(modbus_wire, tcp_protocol_id_must_be_0)
{
	struct frame f = tcp(0x1234, 1, -1, 1, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "protocol id 1 (expected 0)");
	f = tcp(0x1234, 0x0100, -1, 1, PDU(3, 4, 0, 1, 0, 2));
	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID, "high byte too");
}

Test(modbus_wire, tcp_mbap_length_must_be_within_the_spec)
{
	const long lengths[] = { 0, 1, 2, 255, 65535 };
	struct mb_wire_answer ans;

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		struct frame f = tcp(0x1234, 0, lengths[i], 1, PDU(3, 4, 0, 1, 0, 2));

		cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID, "length %ld",
			     lengths[i]);
		cr_assert(strstr(ans.why, "MBAP length") != NULL, "%s", ans.why);
	}
}

Test(modbus_wire, tcp_mbap_length_must_match_the_pdu)
{
	struct mb_wire_answer ans;
	struct frame f = tcp(0x1234, 0, 8, 1, PDU(3, 4, 0, 1, 0, 2, 0, 0));

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "MBAP length 8 (expected 7 for 4 data bytes)");
	f = tcp(0x1234, 0, 6, 1, PDU(3, 4, 0, 1, 0, 2));
	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID, "one short");
	f = tcp(3, 0, 7, 1, PDU(16, 0, 40, 0, 4, 0));
	cr_assert_eq(
		parse_bytewise(
			&(struct mb_wire_request){
				.tid = 3, .unit_id = 1, .function = 16, .address = 40, .count = 4 },
			&f, &ans),
		MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "MBAP length 7 (expected 6 for a write echo)");
}

Test(modbus_wire, tcp_unit_id_must_be_the_requests)
{
	struct frame f = tcp(0x1234, 0, -1, 2, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "unit id 2 (expected 1)");
	f = tcp(0x1234, 0, -1, 255, PDU(3, 4, 0, 1, 0, 2));
	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID, "255 is no wildcard");
}

Test(modbus_wire, tcp_another_transaction_is_reported_with_its_length)
{
	struct frame f = tcp(0x1233, 0, -1, 1, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_OTHER_TID);
	cr_assert_eq(ans.tid, 0x1233);
	cr_assert_eq(ans.len, f.len, "so that the caller can skip it whole");
	cr_assert_str_eq(ans.why, "transaction id 4659 (expected 4660)");
	/* An unsound header is refused before its transaction id is looked at. */
	f = tcp(0x1233, 0, 0, 1, PDU(3, 4, 0, 1, 0, 2));
	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
}

/* ---- both: function code, byte count, echoes ---- */

Test(modbus_wire, function_code_must_be_the_requests)
{
	struct frame f = tcp(0x1234, 0, -1, 1, PDU(4, 4, 0, 1, 0, 2));
	struct mb_wire_request rq_rtu = on_rtu(read2);
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	f = rtu(1, PDU(4, 4, 0, 1, 0, 2));
	cr_assert_eq(parse_bytewise(&rq_rtu, &f, &ans), MB_WIRE_INVALID);
	cr_assert(strstr(ans.why, "function code 4") != NULL, "%s", ans.why);
}

Test(modbus_wire, byte_count_must_be_what_the_request_implies)
{
	struct mb_wire_request bits = { .tid = 1, .unit_id = 1, .function = 2, .count = 9 };
	struct mb_wire_answer ans;
	struct frame f = tcp(0x1234, 0, -1, 1, PDU(3, 6, 0, 1, 0, 2, 0, 3));

	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "byte count 6 (expected 4 for 2 registers)");
	f = tcp(0x1234, 0, -1, 1, PDU(3, 2, 0, 1));
	cr_assert_eq(parse_bytewise(&read2, &f, &ans), MB_WIRE_INVALID, "short");
	f = tcp(1, 0, -1, 1, PDU(2, 1, 0xFF));
	cr_assert_eq(parse_bytewise(&bits, &f, &ans), MB_WIRE_INVALID, "9 bits need 2 bytes");
	cr_assert_str_eq(ans.why, "byte count 1 (expected 2 for 9 bits)");
	f = tcp(1, 0, -1, 1, PDU(2, 2, 0xFF, 0x01));
	cr_assert_eq(parse_bytewise(&bits, &f, &ans), MB_WIRE_OK);
	bits = on_rtu(bits);
	f = rtu(1, PDU(2, 3, 0xFF, 0x01, 0));
	cr_assert_eq(parse_bytewise(&bits, &f, &ans), MB_WIRE_INVALID);
}

Test(modbus_wire, write_echoes_must_match)
{
	struct mb_wire_request coil = {
		.tid = 2, .unit_id = 1, .function = 5, .address = 3, .count = 1, .value = 0xFF00
	};
	struct mb_wire_request reg = {
		.tid = 2, .unit_id = 1, .function = 6, .address = 3, .count = 1, .value = 500
	};
	struct mb_wire_request regs = {
		.tid = 2, .unit_id = 1, .function = 16, .address = 3, .count = 2
	};
	struct mb_wire_answer ans;
	struct frame f;

	f = tcp(2, 0, -1, 1, PDU(5, 0, 3, 0x00, 0x00));
	cr_assert_eq(parse_bytewise(&coil, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "echoed value 0x0000 (expected 0xff00)");
	f = tcp(2, 0, -1, 1, PDU(5, 0, 4, 0xFF, 0x00));
	cr_assert_eq(parse_bytewise(&coil, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "echoed address 4 (expected 3)");
	f = tcp(2, 0, -1, 1, PDU(6, 0, 3, 0x01, 0xF5));
	cr_assert_eq(parse_bytewise(&reg, &f, &ans), MB_WIRE_INVALID);
	f = tcp(2, 0, -1, 1, PDU(6, 0, 3, 0x01, 0xF4));
	cr_assert_eq(parse_bytewise(&reg, &f, &ans), MB_WIRE_OK);
	f = tcp(2, 0, -1, 1, PDU(16, 0, 3, 0, 3));
	cr_assert_eq(parse_bytewise(&regs, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "echoed quantity 0x0003 (expected 0x0002)");
	regs = on_rtu(regs);
	f = rtu(1, PDU(16, 0, 3, 0, 3));
	cr_assert_eq(parse_bytewise(&regs, &f, &ans), MB_WIRE_INVALID);
}

/* ---- RTU: address and CRC ---- */

Test(modbus_wire, rtu_slave_address_must_be_the_requests)
{
	struct mb_wire_request rq = on_rtu(read2);
	struct frame f = rtu(2, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;

	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_INVALID);
	cr_assert_str_eq(ans.why, "slave address 2 (expected 1)");
	f = rtu(2, PDU(0x83, 0));
	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_INVALID, "exceptions too");
	f = rtu(1, PDU(3, 4, 0, 1, 0, 2));
	cr_assert_eq(parse_bytewise(&rq, &f, &ans), MB_WIRE_OK);
	cr_assert_eq(ans.data_off, 3);
}

Test(modbus_wire, rtu_crc_must_check)
{
	struct mb_wire_request rq = on_rtu(read2);
	struct frame good = rtu(1, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;

	for (size_t i = 0; i < good.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			struct frame f = good;

			f.b[i] ^= (uint8_t)(1 << bit);
			cr_assert_eq(parse(&rq, &f, &ans), MB_WIRE_INVALID, "byte %zu bit %d", i,
				     bit);
		}
	}
	good.b[good.len - 1] ^= 0xFF;
	cr_assert_eq(parse_bytewise(&rq, &good, &ans), MB_WIRE_INVALID);
	cr_assert(strncmp(ans.why, "CRC 0x", 6) == 0, "%s", ans.why);
	good = rtu(1, PDU(0x83, 200));
	good.b[3] ^= 1;
	cr_assert_eq(parse_bytewise(&rq, &good, &ans), MB_WIRE_INVALID, "an exception's CRC too");
}

/* ---- arrival ---- */

Test(modbus_wire, one_byte_at_a_time_needs_exactly_the_rest)
{
	struct frame f = tcp(0x1234, 0, -1, 1, PDU(3, 4, 0, 1, 0, 2));
	struct mb_wire_answer ans;
	size_t n = 0;

	/* Never asks for a byte past the frame: a reader may read exactly 'need'. */
	while (mb_wire_parse(&read2, f.b, n, &ans) == MB_WIRE_NEED) {
		cr_assert_leq(n + ans.need, f.len);
		n += ans.need;
	}
	cr_assert_eq(ans.status, MB_WIRE_OK);
	cr_assert_eq(n, f.len);
}

Test(modbus_wire, every_split_of_good_and_bad_frames_gives_one_verdict)
{
	struct mb_wire_request rq_rtu = on_rtu(read2);
	const struct frame frames[] = {
		tcp(0x1234, 0, -1, 1, PDU(3, 4, 0, 1, 0, 2)),
		tcp(0x1234, 0, -1, 7, PDU(3, 4, 0, 1, 0, 2)),
		tcp(0x1234, 0, 0, 1, PDU(3, 4, 0, 1, 0, 2)),
		tcp(0x1234, 0, 65535, 1, PDU(3, 4, 0, 1, 0, 2)),
		tcp(0x1234, 1, -1, 1, PDU(3, 4, 0, 1, 0, 2)),
		tcp(0x9999, 0, -1, 1, PDU(3, 4, 0, 1, 0, 2)),
		tcp(0x1234, 0, -1, 1, PDU(3, 2, 0, 1)),
		tcp(0x1234, 0, -1, 1, PDU(0x83, 0)),
	};
	struct mb_wire_answer ans;

	for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
		struct frame r = rtu(frames[i].b[6], frames[i].b + 7, frames[i].len - 7);

		parse_bytewise(&read2, &frames[i], &ans);
		parse_bytewise(&rq_rtu, &r, &ans);
	}
}

/* ---- the adapter's own transactions: mb_read, and a link closed under a write ---- */

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#define PLC_REGISTER 2006 /* every holding register: 2006 * 0.1 - 40 = 160.6 */

/* A small Modbus TCP server (FC 1, 3, 5, 6) in a thread, for as many connections as come. */
static int plc_listen = -1;
static atomic_bool plc_stopping;
/* Set: the first request is answered (with 111) only when the second comes, before its answer. */
static atomic_bool plc_hold_first;
static uint8_t plc_held[12];
static bool plc_holding;

static void plc_answer(int fd, const uint8_t *req, unsigned value)
{
	uint8_t out[9 + 2 * MB_MAX_READ_REGISTERS];
	unsigned count = (unsigned)(req[10] << 8 | req[11]);
	size_t len;

	if (count > MB_MAX_READ_REGISTERS)
		count = MB_MAX_READ_REGISTERS; /* a wrong answer, but within 'out' */
	memcpy(out, req, 8);
	if (req[7] == 5 || req[7] == 6) {
		memcpy(out, req, 12); /* the echo */
		len = 12;
	} else if (req[7] == 1) {
		out[8] = 1;
		out[9] = 0x01; /* the first coil asked for (coil 1) is on */
		len = 10;
	} else {
		out[8] = (uint8_t)(2 * count);
		for (unsigned i = 0; i < count; i++) {
			out[9 + 2 * i] = (uint8_t)(value >> 8);
			out[10 + 2 * i] = (uint8_t)value;
		}
		len = 9 + 2 * count;
	}
	out[4] = 0;
	out[5] = (uint8_t)(len - 6);
	send(fd, out, len, MSG_NOSIGNAL);
}

static void *plc_serve(void *arg)
{
	struct pollfd p[9] = { { .fd = plc_listen, .events = POLLIN } };
	uint8_t buf[8][64];
	size_t have[8] = { 0 };

	(void)arg;
	for (size_t i = 1; i < 9; i++)
		p[i] = (struct pollfd){ .fd = -1, .events = POLLIN };
	while (!atomic_load(&plc_stopping)) {
		if (poll(p, 9, 20) <= 0)
			continue;
		for (size_t i = 1; i < 9; i++) {
			ssize_t n;

			if (p[i].fd < 0 || p[i].revents == 0)
				continue;
			n = read(p[i].fd, buf[i - 1] + have[i - 1], 64 - have[i - 1]);
			if (n <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				continue;
			}
			have[i - 1] += (size_t)n;
			while (have[i - 1] >= 12) {
				if (atomic_exchange(&plc_hold_first, false)) {
					memcpy(plc_held, buf[i - 1], 12);
					plc_holding = true;
				} else {
					if (plc_holding)
						plc_answer(p[i].fd, plc_held, 111);
					plc_holding = false;
					plc_answer(p[i].fd, buf[i - 1], PLC_REGISTER);
				}
				memmove(buf[i - 1], buf[i - 1] + 12, have[i - 1] - 12);
				have[i - 1] -= 12;
			}
		}
		if (p[0].revents & POLLIN) {
			int c = accept(plc_listen, NULL, NULL);

			for (size_t i = 1; i < 9 && c >= 0; i++) {
				if (p[i].fd < 0) {
					p[i].fd = c;
					have[i - 1] = 0;
					c = -1;
				}
			}
			if (c >= 0)
				close(c);
		}
	}
	for (size_t i = 1; i < 9; i++) {
		if (p[i].fd >= 0)
			close(p[i].fd);
	}
	return NULL;
}

static pthread_t plc_thread;

/* Starts the server; returns its port on 127.0.0.1. */
static int plc_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	plc_listen = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(plc_listen, 0);
	cr_assert_eq(bind(plc_listen, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(plc_listen, 16), 0);
	cr_assert_eq(getsockname(plc_listen, (struct sockaddr *)&sa, &len), 0);
	cr_assert_eq(pthread_create(&plc_thread, NULL, plc_serve, NULL), 0);
	return ntohs(sa.sin_port);
}

static void plc_stop(void)
{
	if (plc_listen < 0)
		return;
	atomic_store(&plc_stopping, true);
	pthread_join(plc_thread, NULL);
	close(plc_listen);
	plc_listen = -1;
}

TestSuite(modbus_link, .fini = plc_stop, .timeout = 60);

/* A modbus-tcp adapter on the server: temp (holding 5, scaled), run (coil 1), tag (a string). */
static struct adapter *plc_adapter(int port, int timeout_ms)
{
	const struct adapter_ops *ops = adapter_ops_find("modbus-tcp");
	struct adapter *a;
	char text[1024];
	cJSON *obj;
	struct conf c;

	cr_assert_not_null(ops);
	a = adapter_new("plc", ops);
	snprintf(text, sizeof(text),
		 "{\"name\":\"plc\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"timeout_ms\":%d,\"points\":["
		 "{\"name\":\"temp\",\"address\":5,\"scale\":0.1,\"offset\":-40,\"writable\":true},"
		 "{\"name\":\"run\",\"table\":\"coil\",\"address\":1,\"type\":\"bool\","
		 "\"writable\":true},"
		 "{\"name\":\"tag\",\"address\":10,\"type\":\"string\",\"length\":4}]}",
		 port, timeout_ms);
	obj = cJSON_Parse(text);
	conf_init(&c, "test");
	cr_assert_eq(ops->configure(a, &c, obj, "adapters[0]"), 0);
	conf_release(&c);
	cJSON_Delete(obj);
	return a;
}

static const struct point *point_named(const struct adapter *a, const char *name)
{
	for (size_t i = 0; i < a->npoints; i++) {
		if (strcmp(a->points[i].name, name) == 0)
			return &a->points[i];
	}
	cr_assert_fail("no point %s", name);
	return NULL;
}

Test(modbus_link, read_is_a_fresh_transaction_decoded_and_scaled_like_a_poll)
{
	struct adapter *a = plc_adapter(plc_start(), 2000);
	struct value v = { .kind = VALUE_KIND_NONE };
	uint64_t polls;

	cr_assert_not_null(a->ops->read, "modbus-tcp has no read op");
	cr_assert_eq(a->ops->read(a, point_named(a, "plc/temp"), &v), GD_ENOTCONN,
		     "the link is not open yet");
	cr_assert_eq(a->ops->open(a), 0);
	polls = a->stats.polls;
	cr_assert_eq(a->ops->read(a, point_named(a, "plc/temp"), &v), 0);
	cr_assert_eq(v.kind, VALUE_KIND_FLOAT);
	cr_assert_float_eq(v.f, 160.6, 1e-9);
	cr_assert_eq(a->stats.polls, polls + 1, "one transaction");
	cr_assert_eq(a->ops->read(a, point_named(a, "plc/run"), &v), 0);
	cr_assert_eq(v.kind, VALUE_KIND_BOOL);
	cr_assert(v.b);
	cr_assert_eq(a->ops->read(a, point_named(a, "plc/tag"), &v), GD_EINVAL,
		     "strings are not read");
	cr_assert_eq(a->ops->write(a, point_named(a, "plc/temp"),
				   &(struct value){ .kind = VALUE_KIND_FLOAT, .f = 20.5 }),
		     0, "FC 6 and its echo");
	cr_assert_eq(a->ops->write(a, point_named(a, "plc/run"),
				   &(struct value){ .kind = VALUE_KIND_BOOL, .b = false }),
		     0, "FC 5 and its echo");
	cr_assert_eq(a->stats.bad_frames, 0);
	a->ops->close(a);
	adapter_free(a);
}

Test(modbus_link, a_late_answer_to_a_request_given_up_on_is_skipped)
{
	struct adapter *a = plc_adapter(plc_start(), 200);
	struct value v = { .kind = VALUE_KIND_NONE };
	char stats[512];

	cr_assert_eq(a->ops->open(a), 0);
	atomic_store(&plc_hold_first, true);
	cr_assert_eq(a->ops->read(a, point_named(a, "plc/temp"), &v), GD_ETIMEDOUT);
	/* Now the first answer comes, right before the second's: it must not pass for it. */
	cr_assert_eq(a->ops->read(a, point_named(a, "plc/temp"), &v), 0);
	cr_assert_float_eq(v.f, 160.6, 1e-9);
	cr_assert_eq(a->stats.bad_frames, 0, "a late answer is no bad frame");
	cr_assert_not_null(a->ops->stats_json);
	a->ops->stats_json(a, stats, sizeof(stats));
	cr_assert(strstr(stats, "\"late_answers\":1,") != NULL, "%s", stats);
	a->ops->close(a);
	adapter_free(a);
}

/* Writes and reads on one thread, closes and reopens on another, as a technician's restart does. */
struct race {
	struct adapter *a;
	atomic_bool done;
	atomic_int bad_rc;
	atomic_int ops; /* commands carried out so far */
};

static void *race_commands(void *arg)
{
	struct race *r = arg;
	const struct point *temp = point_named(r->a, "plc/temp");

	for (int i = 0; i < 3000; i++) {
		struct value v = { .kind = VALUE_KIND_FLOAT, .f = 20 };
		int rc;

		/* Reads too, where the transport has them. */
		if (i % 2 == 0 && r->a->ops->read != NULL)
			rc = r->a->ops->read(r->a, temp, &v);
		else
			rc = r->a->ops->write(r->a, temp, &v);
		if (rc != 0 && rc != GD_ENOTCONN && rc != GD_EIO)
			atomic_store(&r->bad_rc, rc);
		atomic_fetch_add(&r->ops, 1);
	}
	atomic_store(&r->done, true);
	return NULL;
}

Test(modbus_link, closing_while_a_command_writes_frees_nothing_in_use)
{
	struct race r = { .a = plc_adapter(plc_start(), 2000) };
	pthread_t t;

	cr_assert_eq(r.a->ops->open(r.a), 0);
	cr_assert_eq(pthread_create(&t, NULL, race_commands, &r), 0);
	while (!atomic_load(&r.done)) {
		int ops = atomic_load(&r.ops);

		r.a->ops->open(r.a);
		/* Closed once the command thread is past one command: likely inside the next. */
		while (atomic_load(&r.ops) == ops && !atomic_load(&r.done))
			;
		r.a->ops->close(r.a);
	}
	pthread_join(t, NULL);
	r.a->ops->close(r.a);
	adapter_free(r.a);
	/* Before the lock, a write's link was closed (and reopened) under it: it timed out. */
	cr_assert_eq(atomic_load(&r.bad_rc), 0, "a command failed with %d (%s)",
		     atomic_load(&r.bad_rc), gd_strerror(atomic_load(&r.bad_rc)));
}
