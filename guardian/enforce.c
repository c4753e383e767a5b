/* enforce.c: what guardian enforces: the policy in force, and a reloaded one that waits until the
 * attestation service has accepted a round that measured it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/json.h"
#include "gateway_private.h"

#define SUBSYS "gateway"

/* Puts 'p' in force for every following decision; frees what it replaces. With pending_lock. */
static void put_in_force(struct gateway *gw, struct policy *p, const char **names,
			 const struct gd_measured *m, const char *how)
{
	struct policy *old;
	const char **old_names;

	pthread_rwlock_wrlock(&gw->policy_lock);
	old = gw->cfg->policy;
	old_names = gw->names;
	gw->cfg->policy = p;
	gw->names = names;
	gw->cfg->measured_policy = *m;
	pthread_rwlock_unlock(&gw->policy_lock);
	policy_free(old);
	free(old_names);
	log_info(SUBSYS, "policy reloaded from %s: %zu rules in force%s", gw->cfg->policy_file,
		 policy_rule_count(p), how);
}

static void drop_pending(struct gateway *gw)
{
	policy_free(gw->pending.policy);
	free(gw->pending.names);
	gw->pending.policy = NULL;
	gw->pending.names = NULL;
}

void enforce_reload(struct gateway *gw, struct policy *p, const char **names,
		    const struct gd_measured *m)
{
	bool replaced;

	pthread_mutex_lock(&gw->pending_lock);
	if (gw->attest == NULL) {
		put_in_force(gw, p, names, m, "");
		pthread_mutex_unlock(&gw->pending_lock);
		return;
	}
	replaced = gw->pending.policy != NULL;
	drop_pending(gw);
	gw->pending.policy = p;
	gw->pending.names = names;
	gw->pending.measured = *m;
	gw->pending.gen++;
	pthread_mutex_unlock(&gw->pending_lock);
	log_info(SUBSYS,
		 "policy from %s (%zu rules) is pending%s: it goes into force once the "
		 "attestation service accepts it; until then the policy in force stays",
		 gw->cfg->policy_file, policy_rule_count(p),
		 replaced ? ", replacing the one that was" : "");
	uplink_attest_trigger(gw->attest);
}

void enforce_round_policy(struct gateway *gw, struct gd_measured *out, uint64_t *gen)
{
	pthread_mutex_lock(&gw->pending_lock);
	*out = gw->pending.policy != NULL ? gw->pending.measured : gw->cfg->measured_policy;
	*gen = gw->pending.policy != NULL ? gw->pending.gen : 0;
	pthread_mutex_unlock(&gw->pending_lock);
}

enum uplink_attest_next enforce_round_accepted(struct gateway *gw, uint64_t gen,
					       int (*keep)(void *ctx, char *why, size_t cap),
					       void *ctx, char *why, size_t cap)
{
	enum uplink_attest_next next = UPLINK_ATTEST_KEPT;

	pthread_mutex_lock(&gw->pending_lock);
	if (gen != 0 && (gw->pending.policy == NULL || gw->pending.gen != gen)) {
		/* It vouches for a policy that is no longer pending: keep nothing. */
		snprintf(why, cap, "a newer policy reload came during the round");
		next = UPLINK_ATTEST_AGAIN;
	} else if (keep(ctx, why, cap) != 0) {
		next = UPLINK_ATTEST_RETRY;
	} else if (gen != 0) {
		put_in_force(gw, gw->pending.policy, gw->pending.names, &gw->pending.measured,
			     " (attested)");
		gw->pending.policy = NULL;
		gw->pending.names = NULL;
		gw->reload_reason[0] = gw->reload_detail[0] = '\0';
	}
	pthread_mutex_unlock(&gw->pending_lock);
	return next;
}

enum uplink_attest_next enforce_round_refused(struct gateway *gw, uint64_t gen, const char *reason,
					      const char *detail)
{
	bool dropped;

	if (gen == 0)
		return UPLINK_ATTEST_HOLD;
	pthread_mutex_lock(&gw->pending_lock);
	/* A newer reload may have replaced it already: it is the one refused, not the newer. */
	dropped = gw->pending.policy != NULL && gw->pending.gen == gen;
	if (dropped)
		drop_pending(gw);
	snprintf(gw->reload_reason, sizeof(gw->reload_reason), "%s", reason);
	snprintf(gw->reload_detail, sizeof(gw->reload_detail), "%s", detail);
	pthread_mutex_unlock(&gw->pending_lock);
	log_error(SUBSYS, "reload refused by the attestation service: %s: %s; %s", reason, detail,
		  dropped ? "the policy in force stays"
			  : "a newer reload waits; the policy in force stays until then");
	return UPLINK_ATTEST_AGAIN;
}

void enforce_health(struct gateway *gw, struct jw *w)
{
	char hex[65];

	pthread_mutex_lock(&gw->pending_lock);
	jw_key(w, "policy");
	jw_string(w, gw->pending.policy != NULL ? "pending" : "in_force");
	gd_hex_encode(gw->cfg->measured_policy.sha256, 32, hex);
	jw_key(w, "policy_sha256");
	jw_string(w, hex);
	if (gw->pending.policy != NULL) {
		gd_hex_encode(gw->pending.measured.sha256, 32, hex);
		jw_key(w, "pending_sha256");
		jw_string(w, hex);
	}
	jw_key(w, "reload_reason");
	jw_string(w, gw->reload_reason);
	jw_key(w, "reload_detail");
	jw_string(w, gw->reload_detail);
	pthread_mutex_unlock(&gw->pending_lock);
}

void enforce_free(struct gateway *gw)
{
	drop_pending(gw);
}
