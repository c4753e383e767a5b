/* policy.h: the declarative, default-deny policy: load, compile to a per-point table, decide. */
#ifndef POLICY_H
#define POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../adapters/adapter.h"
#include "../guardian/guardian.h"

/*
 * The policy file (JSON):
 *   {"version": 1,
 *    "uplink": [ {"points": "plc1/t*", "action": "allow"},
 *                {"points": "plc1/secret*", "action": "deny"} ] }
 * Rules are read top to bottom, first match wins; a point no rule matches is
 * denied. "points" is a glob (fnmatch(3): * ? [...]; '*' also matches '/').
 */

enum policy_action { POLICY_DENY = 0, POLICY_ALLOW = 1 };

struct policy;

/*
 * Loads and compiles 'file' against the gateway's point table. Every error is
 * added to 'c' (with the rule's path, e.g. uplink[2].points); returns NULL if
 * there was any. A rule that matches no point is an error: it is almost
 * always a typo, and a typo in a policy must not pass silently.
 */
struct policy *policy_load(struct conf *c, const char *file, const struct point *const *points,
			   size_t npoints);
/* Frees 'p'. No operation is performed if 'p' is NULL. */
void policy_free(struct policy *p);

/* The hot path: may this point leave the appliance? A table lookup. */
bool policy_uplink_allowed(const struct policy *p, uint32_t point_id);

/* Index of the rule that decides 'point_id' uplink, or -1 for the default (deny). */
int policy_uplink_rule(const struct policy *p, uint32_t point_id);
size_t policy_rule_count(const struct policy *p);

#endif
