/* modbus_plan.c: coalesces neighbouring Modbus points into as few read requests as the limits
 * allow. */
#include "modbus.h"

const char *const mb_table_names[] = {
	[MB_COIL] = "coil",
	[MB_DISCRETE] = "discrete",
	[MB_HOLDING] = "holding",
	[MB_INPUT] = "input",
	NULL,
};

int mb_point_compare(const void *a, const void *b)
{
	const struct mb_point *x = a;
	const struct mb_point *y = b;

	if (x->group != y->group)
		return x->group < y->group ? -1 : 1;
	if (x->unit_id != y->unit_id)
		return x->unit_id < y->unit_id ? -1 : 1;
	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	if (x->address != y->address)
		return x->address < y->address ? -1 : 1;
	if (x->width != y->width)
		return x->width > y->width ? -1 : 1;
	return x->point_index < y->point_index ? -1 : (x->point_index > y->point_index);
}

size_t mb_plan(const struct mb_point *pts, size_t n, unsigned max_gap, unsigned max_regs,
	       unsigned max_bits, struct mb_request *out)
{
	size_t nreq = 0;
	uint32_t end = 0; /* one past the last address covered by the open request */

	for (size_t i = 0; i < n; i++) {
		const struct mb_point *p = &pts[i];
		struct mb_request *r = nreq ? &out[nreq - 1] : NULL;
		unsigned limit =
			(p->table == MB_COIL || p->table == MB_DISCRETE) ? max_bits : max_regs;
		uint32_t p_end = (uint32_t)p->address + p->width;

		if (r != NULL && r->unit_id == p->unit_id && r->table == p->table &&
		    p->address <= end + max_gap) {
			uint32_t new_end = p_end > end ? p_end : end;

			if (new_end - r->address <= limit) {
				end = new_end;
				r->count = (uint16_t)(end - r->address);
				r->npoints++;
				continue;
			}
		}
		out[nreq++] = (struct mb_request){
			.unit_index = p->unit_index,
			.unit_id = p->unit_id,
			.table = p->table,
			.address = p->address,
			.count = p->width,
			.first = i,
			.npoints = 1,
		};
		end = p_end;
	}
	return nreq;
}
