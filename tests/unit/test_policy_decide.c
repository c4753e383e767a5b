/* test_policy_decide.c: every rule kind and outcome in both directions, at the edges, and every
 * kind of policy mistake. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../policy/policy.h"

static struct point pts[] = {
	{ .name = "plc1/temp", .id = 0, .unit = "degC", .type = VALUE_F32 },
	{ .name = "plc1/run", .id = 1, .unit = "", .type = VALUE_BOOL },
	{ .name = "plc1/setpoint", .id = 2, .unit = "kN", .type = VALUE_U16, .writable = true },
	{ .name = "plc2/temp", .id = 3, .unit = "degF", .type = VALUE_F32 },
	{ .name = "plc1/tag", .id = 4, .unit = "", .type = VALUE_STRING },
	{ .name = "plc1/a/b", .id = 5, .unit = "", .type = VALUE_U16 },
};
static const struct point *const table[] = { &pts[0], &pts[1], &pts[2], &pts[3], &pts[4], &pts[5] };
static const char *const adapters[] = { "plc1", "plc2" };
static struct conf c;

static void setup(void)
{
	conf_init(&c, "policy.json");
}

static void teardown(void)
{
	conf_release(&c);
}

TestSuite(policy, .init = setup, .fini = teardown);

/* Loads a policy whose rules are 'body' (after version and connections). */
static struct policy *load(const char *body)
{
	char text[4096];
	int n = snprintf(text, sizeof(text),
			 "{\"version\":1,\"connections\":[\"localhost:8883\"],%s}", body);

	cr_assert(n > 0 && (size_t)n < sizeof(text));
	conf_release(&c);
	conf_init(&c, "policy.json");
	return policy_load(&c, text, (size_t)n, table, 6, adapters, 2, "localhost:8883");
}

static struct policy *must_load(const char *body)
{
	struct policy *p = load(body);

	if (p == NULL)
		for (size_t i = 0; i < c.nerrors; i++)
			cr_log_error("%s", c.errors[i]);
	cr_assert_not_null(p, "policy did not load");
	return p;
}

/* Asserts the policy is refused with an error containing 'part'. */
static void must_fail(const char *body, const char *part)
{
	struct policy *p = load(body);
	bool found = false;

	cr_assert_null(p, "policy loaded; expected an error with \"%s\"", part);
	for (size_t i = 0; i < c.nerrors; i++)
		found |= c.errors[i] != NULL && strstr(c.errors[i], part) != NULL;
	cr_expect(found, "no error contains \"%s\"; first: %s", part,
		  c.nerrors ? c.errors[0] : "(none)");
}

static struct sample num(uint32_t id, double v)
{
	return (struct sample){ .point_id = id,
				.quality = QUALITY_GOOD,
				.value = { .kind = VALUE_KIND_FLOAT, .f = v } };
}

static enum policy_verdict up(struct policy *p, struct policy_state *st, uint32_t id, double v,
			      int64_t now)
{
	struct sample s = num(id, v);

	return policy_uplink_decide(p, st, &s, now);
}

Test(policy, default_deny_and_first_match_wins)
{
	struct policy *p = must_load("\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"deny\"},"
				     "{\"points\":\"plc1/*\",\"action\":\"allow\"}]");
	struct policy_state *st = policy_state_new(6);

	cr_expect_not(policy_uplink_allowed(p, 0), "the earlier deny wins");
	cr_expect(policy_uplink_allowed(p, 1));
	cr_expect_not(policy_uplink_allowed(p, 3), "plc2 matches no rule: default deny");
	cr_expect_eq(up(p, st, 0, 1, 0), POLICY_DROP_DENIED);
	cr_expect_eq(up(p, st, 3, 1, 0), POLICY_DROP_DENIED);
	cr_expect_eq(up(p, st, 2, 1, 0), POLICY_SEND);
	policy_state_free(st);
	policy_free(p);
}

Test(policy, glob_corner_cases)
{
	struct policy *p =
		must_load("\"uplink\":[{\"points\":\"plc?/te[m]p\",\"action\":\"allow\"},"
			  "{\"points\":\"plc1/*b\",\"action\":\"allow\"},"
			  "{\"points\":\"plc1/run\",\"action\":\"allow\"}]");

	cr_expect(policy_uplink_allowed(p, 0), "? and [m] match plc1/temp");
	cr_expect(policy_uplink_allowed(p, 3), "and plc2/temp");
	cr_expect(policy_uplink_allowed(p, 5), "* crosses '/' in plc1/a/b");
	cr_expect(policy_uplink_allowed(p, 1), "a literal name matches itself");
	cr_expect_not(policy_uplink_allowed(p, 2));
	policy_free(p);
}

Test(policy, adapter_and_unit_narrow_a_rule)
{
	struct policy *p =
		must_load("\"uplink\":[{\"points\":\"*\",\"adapter\":\"plc2\","
			  "\"action\":\"allow\"},{\"points\":\"*/temp\",\"unit\":\"degC\","
			  "\"action\":\"allow\"}]");

	cr_expect(policy_uplink_allowed(p, 3), "adapter plc2");
	cr_expect(policy_uplink_allowed(p, 0), "unit degC");
	cr_expect_not(policy_uplink_allowed(p, 1), "plc1/run: neither");
	policy_free(p);
}

Test(policy, range_bounds_are_inclusive_and_outside_drops_clamps_or_flags)
{
	struct policy *p = must_load(
		"\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\",\"range\":{\"min\":-40,"
		"\"max\":150}},{\"points\":\"plc2/temp\",\"action\":\"allow\",\"range\":{\"min\":0,"
		"\"max\":100,\"outside\":\"clamp\"}},{\"points\":\"plc1/a/b\",\"action\":\"allow\","
		"\"range\":{\"min\":0,\"max\":10,\"outside\":\"flag\"}}]");
	struct policy_state *st = policy_state_new(6);
	struct sample s;

	cr_expect_eq(up(p, st, 0, -40, 0), POLICY_SEND, "min is inside");
	cr_expect_eq(up(p, st, 0, 150, 1), POLICY_SEND, "max is inside");
	cr_expect_eq(up(p, st, 0, 150.0001, 2), POLICY_DROP_RANGE);
	cr_expect_eq(up(p, st, 0, -40.5, 3), POLICY_DROP_RANGE);
	s = num(3, 120);
	cr_expect_eq(policy_uplink_decide(p, st, &s, 0), POLICY_SEND_CLAMPED);
	cr_expect_eq(s.value.f, 100);
	s = (struct sample){ .point_id = 3,
			     .quality = QUALITY_GOOD,
			     .value = { .kind = VALUE_KIND_INT, .i = -7 } };
	cr_expect_eq(policy_uplink_decide(p, st, &s, 1), POLICY_SEND_CLAMPED);
	cr_expect_eq(s.value.kind, VALUE_KIND_INT,
		     "an integer clamped to an integral bound stays one");
	cr_expect_eq(s.value.i, 0);
	s = num(5, 11);
	cr_expect_eq(policy_uplink_decide(p, st, &s, 0), POLICY_SEND_FLAGGED);
	cr_expect_eq(s.value.f, 11, "flag sends the value as read");
	policy_state_free(st);
	policy_free(p);
}

Test(policy, deadband_abs_sends_exactly_at_the_threshold)
{
	struct policy *p = must_load("\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\","
				     "\"deadband\":{\"abs\":0.5}}]");
	struct policy_state *st = policy_state_new(6);

	cr_expect_eq(up(p, st, 0, 20, 0), POLICY_SEND, "the first value always goes");
	cr_expect_eq(up(p, st, 0, 20.25, 1), POLICY_DROP_DEADBAND);
	cr_expect_eq(up(p, st, 0, 19.75, 2), POLICY_DROP_DEADBAND);
	cr_expect_eq(up(p, st, 0, 20.5, 3), POLICY_SEND, "exactly 0.5 away");
	cr_expect_eq(up(p, st, 0, 20.75, 4), POLICY_DROP_DEADBAND, "measured from the last sent");
	cr_expect_eq(up(p, st, 0, 20, 5), POLICY_SEND);
	policy_state_free(st);
	policy_free(p);
}

Test(policy, deadband_pct_is_relative_to_the_last_value_sent)
{
	struct policy *p = must_load("\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\","
				     "\"deadband\":{\"pct\":10}}]");
	struct policy_state *st = policy_state_new(6);

	cr_expect_eq(up(p, st, 0, 200, 0), POLICY_SEND);
	cr_expect_eq(up(p, st, 0, 219, 1), POLICY_DROP_DEADBAND);
	cr_expect_eq(up(p, st, 0, 220, 2), POLICY_SEND, "exactly 10% of 200");
	cr_expect_eq(up(p, st, 0, 0, 3), POLICY_SEND);
	cr_expect_eq(up(p, st, 0, 0, 4), POLICY_DROP_DEADBAND, "from 0, no change is no change");
	cr_expect_eq(up(p, st, 0, 0.001, 5), POLICY_SEND, "from 0, any change goes");
	policy_state_free(st);
	policy_free(p);
}

Test(policy, rate_limit_boundary)
{
	struct policy *p = must_load("\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\","
				     "\"min_interval_ms\":1000}]");
	struct policy_state *st = policy_state_new(6);

	cr_expect_eq(up(p, st, 0, 1, 5000), POLICY_SEND);
	cr_expect_eq(up(p, st, 0, 2, 5999), POLICY_DROP_RATE, "1 ms too soon");
	cr_expect_eq(up(p, st, 0, 3, 6000), POLICY_SEND, "exactly the interval");
	policy_state_free(st);
	policy_free(p);
}

Test(policy, bad_quality_always_passes_an_allow_and_bools_and_strings_go_on_change)
{
	struct policy *p = must_load(
		"\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\",\"range\":{\"min\":0,"
		"\"max\":1},\"deadband\":{\"abs\":100}},{\"points\":\"plc1/run\",\"action\":"
		"\"allow\",\"deadband\":{\"abs\":0.5}},{\"points\":\"plc1/"
		"tag\",\"action\":\"allow\","
		"\"deadband\":{\"abs\":1}}]");
	struct policy_state *st = policy_state_new(6);
	struct sample s = { .point_id = 0, .quality = QUALITY_TIMEOUT };
	struct sample b = { .point_id = 1,
			    .quality = QUALITY_GOOD,
			    .value = { .kind = VALUE_KIND_BOOL, .b = true } };
	struct sample t = { .point_id = 4,
			    .quality = QUALITY_GOOD,
			    .value = { .kind = VALUE_KIND_STRING, .s = "A-1" } };

	cr_expect_eq(policy_uplink_decide(p, st, &s, 0), POLICY_SEND);
	cr_expect_eq(policy_uplink_decide(p, st, &s, 1), POLICY_SEND,
		     "and again: a fault stays visible");
	cr_expect_eq(policy_uplink_decide(p, st, &b, 0), POLICY_SEND);
	cr_expect_eq(policy_uplink_decide(p, st, &b, 1), POLICY_DROP_DEADBAND);
	b.value.b = false;
	cr_expect_eq(policy_uplink_decide(p, st, &b, 2), POLICY_SEND);
	cr_expect_eq(policy_uplink_decide(p, st, &t, 0), POLICY_SEND);
	cr_expect_eq(policy_uplink_decide(p, st, &t, 1), POLICY_DROP_DEADBAND);
	t.value.s = "A-2";
	cr_expect_eq(policy_uplink_decide(p, st, &t, 2), POLICY_SEND);
	policy_state_free(st);
	policy_free(p);
}

Test(policy, alias_is_the_name_that_leaves)
{
	struct policy *p = must_load("\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\","
				     "\"alias\":\"oven_temperature\"},{\"points\":\"plc1/*\","
				     "\"action\":\"allow\"}]");

	cr_expect_str_eq(policy_uplink_name(p, table, 0), "oven_temperature");
	cr_expect_str_eq(policy_uplink_name(p, table, 1), "plc1/run");
	policy_free(p);
}

static enum policy_refusal down(struct policy *p, struct policy_state *st, double v, double cur,
				bool has_cur, int64_t now, char *why)
{
	struct value req = { .kind = VALUE_KIND_FLOAT, .f = v };
	struct value current = has_cur ? (struct value){ .kind = VALUE_KIND_FLOAT, .f = cur }
				       : (struct value){ .kind = VALUE_KIND_NONE };

	return policy_downlink_decide(p, st, 2, &req, &current, now, why, 256);
}

#define SETPOINT_RULE                                                                              \
	"\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}],\"downlink\":[{\"points\":"          \
	"\"plc1/setpoint\",\"action\":\"allow\",\"range\":{\"min\":0,\"max\":1000},"               \
	"\"max_step\":50,\"min_interval_ms\":5000}]"

Test(policy, downlink_range_step_and_rate_at_their_edges)
{
	struct policy *p = must_load(SETPOINT_RULE);
	struct policy_state *st = policy_state_new(6);
	char why[256];

	cr_expect_eq(down(p, st, 1000.5, 990, true, 0, why), POLICY_REFUSE_RANGE);
	cr_expect(strstr(why, "above the maximum 1000") != NULL, "%s", why);
	cr_expect_eq(down(p, st, -1, 10, true, 0, why), POLICY_REFUSE_RANGE);
	cr_expect_eq(down(p, st, 560, 500, true, 0, why), POLICY_REFUSE_STEP);
	cr_expect(strstr(why, "max_step 50") != NULL, "%s", why);
	cr_expect_eq(down(p, st, 550, 500, true, 0, why), POLICY_ACCEPT,
		     "a step of exactly max_step is allowed (%s)", why);
	cr_expect_eq(down(p, st, 540, 550, true, 4999, why), POLICY_REFUSE_RATE, "1 ms too soon");
	cr_expect_eq(down(p, st, 540, 550, true, 5000, why), POLICY_ACCEPT, "exactly the interval");
	cr_expect_eq(down(p, st, 500, 0, false, 20000, why), POLICY_REFUSE_NO_CURRENT);
	cr_expect_eq(down(p, st, NAN, 500, true, 30000, why), POLICY_REFUSE_TYPE);
	cr_expect_eq(down(p, st, INFINITY, 500, true, 30000, why), POLICY_REFUSE_TYPE);
	policy_state_free(st);
	policy_free(p);
}

Test(policy, downlink_default_deny_and_deny_rules)
{
	struct policy *p =
		must_load("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}],"
			  "\"downlink\":[{\"points\":\"plc1/set*\",\"action\":\"deny\"}]");
	struct policy_state *st = policy_state_new(6);
	struct value v = { .kind = VALUE_KIND_INT, .i = 1 };
	char why[256];

	cr_expect_eq(policy_downlink_decide(p, st, 2, &v, &v, 0, why, sizeof(why)),
		     POLICY_REFUSE_DENIED);
	cr_expect_eq(policy_downlink_decide(p, st, 0, &v, &v, 0, why, sizeof(why)),
		     POLICY_REFUSE_NOT_WRITABLE, "the map's writable flag is checked first");
	cr_expect(strstr(why, "plc1/temp is not writable in the adapter map") != NULL, "%s", why);
	policy_state_free(st);
	policy_free(p);
	p = must_load("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]");
	st = policy_state_new(6);
	cr_expect_eq(policy_downlink_decide(p, st, 2, &v, &v, 0, why, sizeof(why)),
		     POLICY_REFUSE_NO_RULE, "writable, but no downlink rule");
	cr_expect(strstr(why, "no downlink rule allows plc1/setpoint (default deny)") != NULL, "%s",
		  why);
	policy_state_free(st);
	policy_free(p);
}

Test(policy, function_codes_default_to_reads)
{
	struct policy *p = must_load("\"function_codes\":{\"plc2\":[3,16]},"
				     "\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]");

	for (unsigned fc = 1; fc <= 4; fc++)
		cr_expect(policy_function_allowed(p, 0, fc), "plc1 reads with %u", fc);
	cr_expect_not(policy_function_allowed(p, 0, 6), "writes are not allowed by default");
	cr_expect_not(policy_function_allowed(p, 0, 8), "nor diagnostics");
	cr_expect(policy_function_allowed(p, 1, 16));
	cr_expect_not(policy_function_allowed(p, 1, 1), "a list replaces the default");
	policy_free(p);
}

Test(policy, counters_per_rule)
{
	struct policy *p = must_load("\"uplink\":[{\"points\":\"plc1/temp\",\"action\":\"allow\","
				     "\"range\":{\"min\":0,\"max\":1}},{\"points\":\"*\","
				     "\"action\":\"deny\"}]");
	struct policy_state *st = policy_state_new(6);
	struct policy_rule_stats rs[4];

	up(p, st, 0, 0.5, 0);
	up(p, st, 0, 5, 1);
	up(p, st, 3, 5, 1);
	cr_assert_eq(policy_rule_stats(p, rs, 4), 2);
	cr_expect_str_eq(rs[0].path, "uplink[0]");
	cr_expect_eq(rs[0].hits, 2);
	cr_expect_eq(rs[0].drops, 1);
	cr_expect_eq(rs[1].hits, 1);
	cr_expect_eq(rs[1].drops, 1);
	policy_state_free(st);
	policy_free(p);
}

Test(policy, mistakes_name_their_path)
{
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\",\"range\":{\"min\":5,"
		  "\"max\":1}}]",
		  "uplink[0].range.min: 5 is above max 1 (expected min <= max)");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\",\"deadband\":{\"abs\":1,"
		  "\"pct\":1}}]",
		  "uplink[0].deadband: expected exactly one of");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"deny\",\"range\":{\"min\":0,"
		  "\"max\":1}}]",
		  "uplink[0]: a deny rule takes no range");
	must_fail("\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\",\"alias\":\"x\"}]",
		  "uplink[0].points: \"plc1/*\" decides 5 points, but an alias names one");
	must_fail("\"uplink\":[{\"points\":\"*\",\"adapter\":\"plc9\",\"action\":\"allow\"}]",
		  "uplink[0].adapter: unknown adapter \"plc9\" (expected one of plc1, plc2)");
	must_fail(
		"\"function_codes\":{\"plc1\":[3,200]},\"uplink\":[{\"points\":\"*\",\"action\":"
		"\"allow\"}]",
		"function_codes.plc1[1]: not a function code (expected an integer from 1 to 127)");
	must_fail("\"function_codes\":{\"plc7\":[3]},\"uplink\":[{\"points\":\"*\",\"action\":"
		  "\"allow\"}]",
		  "function_codes.plc7: unknown adapter");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}],\"downlink\":[{\"points\":"
		  "\"plc1/temp\",\"action\":\"allow\"}]",
		  "downlink[0].points: plc1/temp is not writable in the adapter map");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\",\"min_interval_ms\":-1}]",
		  "uplink[0].min_interval_ms");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\",\"alias\":\"a/b\"}]",
		  "uplink[0].alias: invalid alias");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\",\"colour\":1}]",
		  "uplink[0].colour: unknown key");
	must_fail("\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\"},{\"points\":"
		  "\"plc1/temp\",\"action\":\"deny\"},{\"points\":\"*\",\"action\":\"allow\"}]",
		  "uplink[1].points: \"plc1/temp\" decides no point: every point it matches is "
		  "decided earlier, by uplink[0]");
	must_fail("\"uplink\":[{\"points\":\"plc1/tmep\",\"action\":\"allow\"},{\"points\":"
		  "\"*\",\"action\":\"allow\"}]",
		  "uplink[0].points: \"plc1/tmep\" decides no point: it matches none");
	must_fail("\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}],\"downlink\":[{\"points\":"
		  "\"plc1/setpoint\",\"action\":\"allow\",\"max_step\":0}]",
		  "downlink[0].max_step: 0 would refuse every write");
}
