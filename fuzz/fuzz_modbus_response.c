/* fuzz_modbus_response.c: libFuzzer target: any request, any answer bytes in any split; the Modbus
 * answer check never crashes, gives one verdict however split, and calls valid only a match. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../adapters/modbus.h"

/*
 * Input: HEAD_BYTES choose the request and how the answer is fed, the rest is
 * the answer as a server sent it.
 *   [0] bit 0: RTU; bit 1: patch the answer's header to match the request,
 *       but for the field [13] % 8 names; bit 2: RTU, put a correct CRC after
 *       the expected frame
 *   [1] function (one of 1, 2, 3, 4, 5, 6, 16)   [2..3] address   [4..5] count
 *   [6..7] value (FC 6; FC 5 takes bit 0)        [8..9] transaction id
 *   [10] unit id   [11..12] seed of the split    [13] field left unpatched
 */
#define HEAD_BYTES 14
#define MAX_ANSWER (2 * MB_WIRE_MAX_ADU)

static void check(int ok)
{
	if (!ok)
		__builtin_trap();
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The CRC again, bit by bit as the spec draws it, so that the target trusts neither copy. */
static uint16_t crc_oracle(const uint8_t *p, size_t n)
{
	uint16_t crc = 0xFFFF;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++) {
			unsigned lsb = crc & 1u;

			crc >>= 1;
			if (lsb)
				crc ^= 0xA001;
		}
	}
	return crc;
}

static struct mb_wire_request request_from(const uint8_t *d)
{
	static const uint8_t functions[] = { 1, 2, 3, 4, 5, 6, 16 };
	struct mb_wire_request rq = {
		.rtu = d[0] & 1,
		.function = functions[d[1] % sizeof(functions)],
		.address = be16(d + 2),
		.tid = be16(d + 8),
		.unit_id = d[10],
	};
	unsigned max = rq.function <= 2	   ? MB_MAX_READ_BITS
		       : rq.function <= 4  ? MB_MAX_READ_REGISTERS
		       : rq.function == 16 ? MB_WIRE_MAX_WRITE
					   : 1;

	rq.count = (uint16_t)(1 + be16(d + 4) % max);
	if ((unsigned long)rq.address + rq.count > 65536)
		rq.address = (uint16_t)(65536 - rq.count);
	if (rq.function == 5)
		rq.value = d[6] & 1 ? 0xFF00 : 0x0000;
	else if (rq.function == 6)
		rq.value = be16(d + 6);
	return rq;
}

static bool is_read(const struct mb_wire_request *rq)
{
	return rq->function <= 4;
}

static size_t byte_count(const struct mb_wire_request *rq)
{
	return rq->function <= 2 ? (rq->count + 7u) / 8u : rq->count * 2u;
}

/* The header of a correct answer to 'rq' into 'a' (at least 9 bytes): what patching writes. */
static void patch(const struct mb_wire_request *rq, uint8_t *a, size_t n, unsigned skip)
{
	size_t head = rq->rtu ? 1 : 7;
	size_t pdu = is_read(rq) ? 2 + byte_count(rq) : 5;
	uint8_t want[9];

	if (rq->rtu) {
		want[0] = rq->unit_id;
	} else {
		want[0] = (uint8_t)(rq->tid >> 8);
		want[1] = (uint8_t)rq->tid;
		want[2] = want[3] = 0;
		want[4] = (uint8_t)((1 + pdu) >> 8);
		want[5] = (uint8_t)(1 + pdu);
		want[6] = rq->unit_id;
	}
	want[head] = rq->function;
	want[head + 1] = (uint8_t)byte_count(rq);
	for (size_t i = 0; i < head + (is_read(rq) ? 2 : 1) && i < n; i++) {
		if (i != skip)
			a[i] = want[i];
	}
}

/*
 * What a correct answer to 'rq' starting at a[0] is, checked field by field
 * from the spec without the parser: 1 a normal answer, 2 an exception, 0
 * neither; *len its length.
 */
static int oracle(const struct mb_wire_request *rq, const uint8_t *req_adu, const uint8_t *a,
		  size_t n, size_t *len)
{
	size_t head = rq->rtu ? 1 : 7;
	size_t tail = rq->rtu ? 2 : 0;
	size_t pdu_len;
	int kind;

	if (n < head + 2)
		return 0;
	if (a[head] == (rq->function | 0x80)) {
		kind = 2;
		pdu_len = 2;
	} else if (a[head] == rq->function) {
		kind = 1;
		pdu_len = is_read(rq) ? 2 + byte_count(rq) : 5;
		if (is_read(rq) && a[head + 1] != byte_count(rq))
			return 0;
		/* A write answer echoes the request's address and value or quantity. */
		if (!is_read(rq) &&
		    (n < head + 5 || memcmp(a + head + 1, req_adu + head + 1, 4) != 0))
			return 0;
	} else {
		return 0;
	}
	*len = head + pdu_len + tail;
	if (n < *len)
		return 0;
	if (rq->rtu) {
		uint16_t crc = crc_oracle(a, *len - 2);

		if (a[0] != rq->unit_id || a[*len - 2] != (crc & 0xFF) || a[*len - 1] != crc >> 8)
			return 0;
	} else if (be16(a) != rq->tid || be16(a + 2) != 0 || be16(a + 4) != pdu_len + 1 ||
		   a[6] != rq->unit_id) {
		return 0;
	}
	return kind;
}

/* The request as built: its fields where the spec puts them. */
static void check_request(const struct mb_wire_request *rq, const uint8_t *adu, size_t len)
{
	size_t head = rq->rtu ? 1 : 7;

	check(len >= head + 5);
	if (rq->rtu) {
		uint16_t crc = crc_oracle(adu, len - 2);

		check(adu[0] == rq->unit_id);
		check(adu[len - 2] == (crc & 0xFF) && adu[len - 1] == crc >> 8);
	} else {
		check(be16(adu) == rq->tid && be16(adu + 2) == 0 && be16(adu + 4) == len - 6);
		check(adu[6] == rq->unit_id);
	}
	check(adu[head] == rq->function && be16(adu + head + 1) == rq->address);
	if (rq->function == 5 || rq->function == 6)
		check(be16(adu + head + 3) == rq->value);
	else
		check(be16(adu + head + 3) == rq->count);
	check(len == head + (rq->function == 16 ? 6 + 2u * rq->count : 5) + (rq->rtu ? 2 : 0));
	check(mb_wire_answer_len(rq) > 0 && mb_wire_answer_len(rq) <= MB_WIRE_MAX_ADU);
}

/* The verdict is the same, field for field. */
static int same(const struct mb_wire_answer *x, const struct mb_wire_answer *y)
{
	return x->status == y->status && x->len == y->len && x->data_off == y->data_off &&
	       x->data_len == y->data_len && x->exception == y->exception && x->tid == y->tid &&
	       strcmp(x->why, y->why) == 0;
}

/* A valid answer's data unpacked agrees with its bytes. */
static void check_unpack(const struct mb_wire_request *rq, const struct mb_wire_answer *ans,
			 const uint8_t *a)
{
	static uint16_t regs[MB_MAX_READ_REGISTERS];
	static uint8_t bits[MB_MAX_READ_BITS];
	size_t head = rq->rtu ? 1 : 7;

	check(ans->data_off == head + 2 && ans->data_len == byte_count(rq));
	check(ans->data_off + ans->data_len + (rq->rtu ? 2 : 0) == ans->len);
	mb_wire_unpack(rq, ans, a, regs, bits);
	for (size_t i = 0; i < rq->count; i++) {
		if (rq->function <= 2)
			check(bits[i] == ((a[head + 2 + i / 8] >> (i % 8)) & 1));
		else
			check(regs[i] == be16(a + head + 2 + 2 * i));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t a[MAX_ANSWER];
	uint8_t adu[MB_WIRE_MAX_ADU];
	uint16_t wregs[MB_WIRE_MAX_WRITE] = { 0 };
	struct mb_wire_request rq;
	struct mb_wire_answer whole, part;
	size_t n, len, have = 0, oracle_len = 0;
	uint32_t x;
	int kind;

	if (size < HEAD_BYTES)
		return 0;
	rq = request_from(data);
	n = size - HEAD_BYTES < MAX_ANSWER ? size - HEAD_BYTES : MAX_ANSWER;
	memcpy(a, data + HEAD_BYTES, n);
	for (size_t i = 0; i < rq.count && rq.function == 16; i++)
		wregs[i] = (uint16_t)(i * 0x0101u + data[11]);
	len = mb_wire_build(&rq, wregs, adu);
	check_request(&rq, adu, len);
	if (data[0] & 2)
		patch(&rq, a, n, data[13] % 8);
	if ((data[0] & 4) && rq.rtu) {
		size_t frame = mb_wire_answer_len(&rq);

		if (a[1] == (rq.function | 0x80))
			frame = 5;
		if (n >= frame) {
			uint16_t crc = crc_oracle(a, frame - 2);

			a[frame - 2] = (uint8_t)crc;
			a[frame - 1] = (uint8_t)(crc >> 8);
		}
	}

	/* Valid exactly when the oracle says so, and as what it says. */
	mb_wire_parse(&rq, a, n, &whole);
	kind = oracle(&rq, adu, a, n, &oracle_len);
	check((whole.status == MB_WIRE_OK) == (kind == 1));
	check((whole.status == MB_WIRE_EXCEPTION) == (kind == 2));
	if (kind != 0)
		check(whole.len == oracle_len);
	if (whole.status == MB_WIRE_EXCEPTION)
		check(whole.exception == a[rq.rtu ? 2 : 8]);
	if (whole.status == MB_WIRE_OK && is_read(&rq))
		check_unpack(&rq, &whole, a);
	if (whole.status == MB_WIRE_OTHER_TID)
		check(!rq.rtu && whole.tid != rq.tid && whole.len >= 9 && whole.len <= 260 &&
		      be16(a) == whole.tid);
	if (whole.status == MB_WIRE_NEED)
		check(whole.need > 0);
	if (whole.status == MB_WIRE_INVALID)
		check(whole.why[0] != '\0' && strlen(whole.why) < sizeof(whole.why));

	/* Fed in random splits: NEED until the verdict, then the whole input's verdict. */
	x = ((uint32_t)data[11] << 8 | data[12]) | 1;
	part.status = MB_WIRE_NEED;
	while (have < n) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		have += 1 + x % 16;
		if (have > n)
			have = n;
		mb_wire_parse(&rq, a, have, &part);
		if (part.status == MB_WIRE_NEED) {
			check(part.need > 0);
			continue;
		}
		check(same(&part, &whole));
		break;
	}
	if (part.status == MB_WIRE_NEED)
		check(whole.status == MB_WIRE_NEED);
	return 0;
}
