/* test_modbus_plan.c: the Modbus request planner merges neighbours and respects the protocol
 * limits. */
#include <criterion/criterion.h>

#include "../../adapters/modbus.h"

static struct mb_point pt(uint8_t unit, enum mb_table table, uint16_t address, uint16_t width)
{
	return (struct mb_point){
		.unit_id = unit, .table = table, .address = address, .width = width
	};
}

static size_t plan(struct mb_point *pts, size_t n, unsigned gap, struct mb_request *out)
{
	qsort(pts, n, sizeof(*pts), mb_point_compare);
	return mb_plan(pts, n, gap, MB_MAX_READ_REGISTERS, MB_MAX_READ_BITS, out);
}

Test(modbus_plan, hundred_neighbours_cost_one_request)
{
	struct mb_point pts[100];
	struct mb_request req[100];

	for (int i = 0; i < 100; i++)
		pts[i] = pt(1, MB_HOLDING, (uint16_t)(99 - i), 1); /* unsorted on purpose */
	cr_assert_eq(plan(pts, 100, 0, req), 1);
	cr_assert_eq(req[0].address, 0);
	cr_assert_eq(req[0].count, 100);
	cr_assert_eq(req[0].npoints, 100);
	cr_assert_eq(pts[0].address, 0, "points are sorted by address");
}

Test(modbus_plan, splits_at_125_registers)
{
	struct mb_point pts[300];
	struct mb_request req[300];

	for (int i = 0; i < 300; i++)
		pts[i] = pt(1, MB_HOLDING, (uint16_t)i, 1);
	cr_assert_eq(plan(pts, 300, 0, req), 3);
	cr_assert_eq(req[0].address, 0);
	cr_assert_eq(req[0].count, 125);
	cr_assert_eq(req[1].address, 125);
	cr_assert_eq(req[1].count, 125);
	cr_assert_eq(req[2].address, 250);
	cr_assert_eq(req[2].count, 50);
	cr_assert_eq(req[2].first, 250);
}

Test(modbus_plan, multi_register_value_never_straddles_requests)
{
	/* 62 u32 (124 registers) then one more u32: 126 registers would break the limit. */
	struct mb_point pts[63];
	struct mb_request req[63];

	for (int i = 0; i < 63; i++)
		pts[i] = pt(1, MB_HOLDING, (uint16_t)(2 * i), 2);
	cr_assert_eq(plan(pts, 63, 0, req), 2);
	cr_assert_eq(req[0].count, 124);
	cr_assert_eq(req[1].address, 124);
	cr_assert_eq(req[1].count, 2);
}

Test(modbus_plan, bits_limit_is_2000)
{
	struct mb_point pts[2001];
	struct mb_request req[2001];

	for (int i = 0; i < 2001; i++)
		pts[i] = pt(1, MB_COIL, (uint16_t)i, 1);
	cr_assert_eq(plan(pts, 2001, 0, req), 2);
	cr_assert_eq(req[0].count, 2000);
	cr_assert_eq(req[1].address, 2000);
	cr_assert_eq(req[1].count, 1);
}

Test(modbus_plan, units_and_tables_never_merge)
{
	struct mb_point pts[] = {
		pt(1, MB_HOLDING, 0, 1), pt(1, MB_HOLDING, 1, 1), pt(2, MB_HOLDING, 2, 1),
		pt(1, MB_INPUT, 2, 1),	 pt(1, MB_COIL, 3, 1),	  pt(1, MB_DISCRETE, 4, 1),
	};
	struct mb_request req[6];
	size_t n = plan(pts, 6, 10, req);

	cr_assert_eq(n, 5);
	/* Sorted: unit 1 coil, discrete, holding(2 points), input; then unit 2 holding. */
	cr_assert_eq(req[0].table, MB_COIL);
	cr_assert_eq(req[1].table, MB_DISCRETE);
	cr_assert_eq(req[2].table, MB_HOLDING);
	cr_assert_eq(req[2].count, 2);
	cr_assert_eq(req[3].table, MB_INPUT);
	cr_assert_eq(req[4].unit_id, 2);
}

Test(modbus_plan, gaps_split_unless_allowed)
{
	struct mb_point a[] = { pt(1, MB_HOLDING, 0, 2), pt(1, MB_HOLDING, 5, 1) };
	struct mb_point b[] = { pt(1, MB_HOLDING, 0, 2), pt(1, MB_HOLDING, 5, 1) };
	struct mb_request req[2];

	cr_assert_eq(plan(a, 2, 0, req), 2, "gap of 3 with max_gap 0 splits");
	cr_assert_eq(plan(a, 2, 2, req), 2, "gap of 3 with max_gap 2 splits");
	cr_assert_eq(plan(b, 2, 3, req), 1, "gap of 3 with max_gap 3 merges");
	cr_assert_eq(req[0].count, 6);
}

Test(modbus_plan, overlapping_points_share_registers)
{
	/* A u32 at 10 and a u16 view of its low word at 11. */
	struct mb_point pts[] = { pt(1, MB_HOLDING, 11, 1), pt(1, MB_HOLDING, 10, 2),
				  pt(1, MB_HOLDING, 12, 4) };
	struct mb_request req[3];

	cr_assert_eq(plan(pts, 3, 0, req), 1);
	cr_assert_eq(req[0].address, 10);
	cr_assert_eq(req[0].count, 6);
	cr_assert_eq(req[0].npoints, 3);
}

Test(modbus_plan, lower_device_limit_is_respected)
{
	struct mb_point pts[40];
	struct mb_request req[40];

	for (int i = 0; i < 40; i++)
		pts[i] = pt(1, MB_INPUT, (uint16_t)i, 1);
	qsort(pts, 40, sizeof(*pts), mb_point_compare);
	cr_assert_eq(mb_plan(pts, 40, 0, 16, MB_MAX_READ_BITS, req), 3);
	cr_assert_eq(req[0].count, 16);
	cr_assert_eq(req[2].count, 8);
}

Test(modbus_plan, last_address_65535)
{
	struct mb_point pts[] = { pt(1, MB_HOLDING, 65534, 2) };
	struct mb_request req[1];

	cr_assert_eq(plan(pts, 1, 0, req), 1);
	cr_assert_eq(req[0].address, 65534);
	cr_assert_eq(req[0].count, 2);
}

Test(modbus_rtu, inter_frame_gap_is_three_and_a_half_characters)
{
	/* 8N1 = 10 bits a character: 3.5 * 10 / 9600 s = 3645.83 us. */
	cr_expect_eq(mb_rtu_gap_us(9600, 8, false, 1), 3646);
	/* 8E1 = 11 bits: 3.5 * 11 / 19200 s = 2005.2 us. */
	cr_expect_eq(mb_rtu_gap_us(19200, 8, true, 1), 2006);
	/* 7E2 = 11 bits at 1200 baud: 32083.3 us. */
	cr_expect_eq(mb_rtu_gap_us(1200, 7, true, 2), 32084);
	/* Above 19200 baud the spec fixes 1.75 ms. */
	cr_expect_eq(mb_rtu_gap_us(38400, 8, true, 1), 1750);
	cr_expect_eq(mb_rtu_gap_us(115200, 8, false, 1), 1750);
}
