/* fuzz_policy.c: libFuzzer target: any bytes as a policy must load or be refused, never crash
 * or leak. */
#include <stddef.h>
#include <stdint.h>

#include "../policy/policy.h"

static struct point pts[] = {
	{ .name = "plc1/temp", .id = 0, .unit = "degC", .type = VALUE_F32 },
	{ .name = "plc1/run", .id = 1, .unit = "", .type = VALUE_BOOL },
	{ .name = "plc1/setpoint", .id = 2, .unit = "kN", .type = VALUE_U16, .writable = true },
	{ .name = "plc2/temp", .id = 3, .unit = "degF", .type = VALUE_F32 },
};
static const struct point *const table[] = { &pts[0], &pts[1], &pts[2], &pts[3] };
static const char *const adapters[] = { "plc1", "plc2" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf c;
	struct policy *p;

	conf_init(&c, "fuzz.json");
	p = policy_load(&c, (const char *)data, size, table, 4, adapters, 2, "localhost:8883");
	if (p != NULL) {
		/* Exercise the compiled form too. */
		struct policy_state *st = policy_state_new(4);
		struct sample s = { .point_id = 0,
				    .quality = QUALITY_GOOD,
				    .value = { .kind = VALUE_KIND_FLOAT, .f = 21.5 } };
		struct value v = { .kind = VALUE_KIND_INT, .i = 500 };
		char buf[1024];

		for (uint32_t i = 0; i < 4 && st != NULL; i++) {
			s.point_id = i;
			policy_uplink_decide(p, st, &s, 1000);
			policy_downlink_decide(p, st, i, &v, &v, 1000, buf, sizeof(buf));
			policy_explain(p, table, i, &v, buf, sizeof(buf));
		}
		policy_state_free(st);
		policy_free(p);
	}
	conf_release(&c);
	return 0;
}
