/* policy.h: the declarative, default-deny policy: compile its text to a per-point table, decide,
 * explain. It does no I/O: the caller reads the policy file and hands over its bytes. */
#ifndef POLICY_H
#define POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/point.h"
#include "../base/conf.h"

/*
 * The policy file (JSON), version 1. Default deny in both directions; rules
 * are read top to bottom and the first rule that matches a point decides it.
 *
 * {
 *   "version": 1,
 *   "connections": ["localhost:8883"],          broker endpoints the uplink may use
 *   "function_codes": {"plc1": [1, 2, 3, 4, 6]}, Modbus codes per adapter (default 1-4)
 *   "uplink": [
 *     {"points": "plc1/recipe_*", "action": "deny"},
 *     {"adapter": "plc1", "points": "plc1/t*", "unit": "degC", "action": "allow",
 *      "range": {"min": -40, "max": 150, "outside": "drop" | "clamp" | "flag"},
 *      "deadband": {"abs": 0.5} | {"pct": 2.0},
 *      "min_interval_ms": 1000,
 *      "alias": "oven_temperature"}
 *   ],
 *   "downlink": [
 *     {"points": "plc1/setpoint", "action": "allow",
 *      "range": {"min": 0, "max": 1000}, "max_step": 50, "min_interval_ms": 5000}
 *   ]
 * }
 *
 * Matching: "points" is a glob (fnmatch(3), '*' also matches '/'); "adapter"
 * and "unit" (engineering unit), when present, must also equal the point's.
 * A rule with "alias" must match exactly one point. Every rule must decide at
 * least one point (else it is a typo or shadowed: an error). "connections"
 * is required: the uplink's host:port must be listed. Every error names the
 * rule's path (uplink[2].range.min) and what was expected.
 */

enum policy_action { POLICY_DENY = 0, POLICY_ALLOW = 1 };

/* What happens to a value outside an uplink rule's range. */
enum policy_outside { POLICY_OUTSIDE_DROP, POLICY_OUTSIDE_CLAMP, POLICY_OUTSIDE_FLAG };

/* The outcome of one uplink decision. */
enum policy_verdict {
	POLICY_SEND,	      /* leaves as it is */
	POLICY_SEND_CLAMPED,  /* leaves, value clamped into the range */
	POLICY_SEND_FLAGGED,  /* leaves, marked out of range */
	POLICY_DROP_DENIED,   /* no rule allows it, or a deny rule matched */
	POLICY_DROP_RANGE,    /* outside the range, "outside": "drop" */
	POLICY_DROP_DEADBAND, /* changed less than the deadband since the last value sent */
	POLICY_DROP_RATE,     /* sooner than min_interval_ms after the last value sent */
};
extern const char *const policy_verdict_names[];

/* Why a write was refused (0 = accepted). */
enum policy_refusal {
	POLICY_ACCEPT = 0,
	POLICY_REFUSE_NO_RULE,	    /* default deny */
	POLICY_REFUSE_DENIED,	    /* a deny rule matched */
	POLICY_REFUSE_NOT_WRITABLE, /* the adapter map does not mark it writable */
	POLICY_REFUSE_RANGE,	    /* outside the rule's range */
	POLICY_REFUSE_STEP,	    /* too far from the current value (max_step) */
	POLICY_REFUSE_RATE,	    /* sooner than min_interval_ms after the last write */
	POLICY_REFUSE_TYPE,	    /* not a number where the rule needs one (or NaN/inf) */
	POLICY_REFUSE_NO_CURRENT,   /* max_step set but the current value is unknown */
};
extern const char *const policy_refusal_names[];

struct policy;

/* Per-point run-time state of the decisions (last value sent, last write). Owned by the caller. */
struct policy_state;

/*
 * Compiles the policy 'text' ('len' bytes of JSON) against the gateway's point
 * table ('points[i]->id == i'). 'adapter_names' lists the adapters (for
 * "adapter" and "function_codes"). 'endpoint' is the uplink's "host:port"
 * (checked against "connections"). Every error goes to 'c', whose file names
 * the policy in the messages; returns NULL if there was any.
 */
struct policy *policy_load(struct conf *c, const char *text, size_t len,
			   const struct point *const *points, size_t npoints,
			   const char *const *adapter_names, size_t nadapters,
			   const char *endpoint);
/* Frees 'p'. No operation is performed if 'p' is NULL. */
void policy_free(struct policy *p);
size_t policy_rule_count(const struct policy *p); /* uplink + downlink rules */

/* Fresh state for 'npoints' points (nothing sent, nothing written yet). NULL on ENOMEM. */
struct policy_state *policy_state_new(size_t npoints);
void policy_state_free(struct policy_state *st);

/* The hot path, without state: may this point leave at all? A table lookup. */
bool policy_uplink_allowed(const struct policy *p, uint32_t point_id);

/*
 * Decides one sample: default deny, then the deciding rule's range, deadband
 * and rate. May change s->value (clamp). Bad-quality samples of an allowed
 * point always pass (a change of quality must be visible) and do not count
 * as a value sent. Non-numeric values: range does not apply, deadband means
 * "only on change". Updates 'st' when the sample is sent, and the rule's
 * counters. No allocation.
 */
enum policy_verdict policy_uplink_decide(const struct policy *p, struct policy_state *st,
					 struct sample *s, int64_t now_ms);

/* The name under which the point leaves ("alias" or its own). */
const char *policy_uplink_name(const struct policy *p, const struct point *const *points,
			       uint32_t point_id);

/*
 * Decides a write of 'requested' to 'point_id'. 'current' is the point's last
 * good value (kind VALUE_KIND_NONE if unknown). Accepting records the write
 * time in 'st' (for min_interval_ms). On refusal writes a sentence for a
 * person into 'reason' ("value 1200 is above the rule's maximum 1000 (downlink[0].range.max)").
 */
enum policy_refusal policy_downlink_decide(const struct policy *p, struct policy_state *st,
					   uint32_t point_id, const struct value *requested,
					   const struct value *current, int64_t now_ms,
					   char *reason, size_t reason_len);

/*
 * Whether a write to 'point_id' would be judged against the value the machine
 * holds (its deciding downlink rule allows writes and has max_step), so that
 * the caller reads that value fresh before deciding.
 */
bool policy_downlink_needs_current(const struct policy *p, uint32_t point_id);

/* Is Modbus function code 'fc' allowed for adapter 'adapter_index'? */
bool policy_function_allowed(const struct policy *p, size_t adapter_index, unsigned fc);

/*
 * Writes, for people, which rule decides 'point_id' in each direction (or the
 * default) and, if 'value' is not NULL, the decision for that value as if it
 * were the first value sent / the requested write with no current value.
 * Returns the length written (snprintf-like).
 */
size_t policy_explain(const struct policy *p, const struct point *const *points, uint32_t point_id,
		      const struct value *value, char *buf, size_t cap);

/* Per-rule counters, for health: "uplink[0]" etc., hits, drops, refusals. */
struct policy_rule_stats {
	char path[24];
	uint64_t hits;	   /* samples or writes the rule decided */
	uint64_t drops;	   /* uplink samples it dropped */
	uint64_t refusals; /* writes it refused */
};
/* Fills up to 'cap' entries; returns the number of rules. */
size_t policy_rule_stats(const struct policy *p, struct policy_rule_stats *out, size_t cap);

#endif
