/* gateway_private.h: private to gateway.c and command.c: the running gateway's state. */
#ifndef GUARDIAN_GATEWAY_PRIVATE_H
#define GUARDIAN_GATEWAY_PRIVATE_H

#include <pthread.h>

#include "core.h"

struct runner {
	struct gateway *gw;
	struct adapter *a;
	pthread_t thread;
	bool started;
	struct point_sink sink;
	struct sample *allowed; /* the samples of one batch that the policy lets out */
	char *buf;		/* one payload */
	size_t cap;
};

struct gateway {
	struct gd_config *cfg;
	struct uplink *uplink;
	/*
	 * The policy in force (cfg->policy) and the names points leave under.
	 * Decisions hold the read lock; a reload swaps both under the write lock.
	 */
	pthread_rwlock_t policy_lock;
	const char **names;
	struct policy_state *pstate;
	struct runner *runners;
	size_t nrunners;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	uint64_t seq;	  /* telemetry message sequence, atomic */
	uint64_t denied;  /* samples no rule lets out, atomic */
	uint64_t dropped; /* samples of allowed points dropped by range, deadband or rate */
	int64_t started_ms;
	/* The last good value of every point (numbers and bools), for max_step. */
	pthread_mutex_t current_lock;
	struct value *current;
	/* Per point, when its last range drop was audited (each point: one adapter thread). */
	int64_t *last_drop_audit_ms;
	/* The command path (command.c). */
	struct audit *audit;
	pthread_mutex_t audit_lock; /* an append and the publish of that record */
	struct command_inbox *inbox;
	pthread_t command_thread;
	bool command_started;
};

/* Starts the command thread and registers it with the uplink. 0 or gd_err (logged). */
int command_start(struct gateway *gw);
/*
 * Stops the command thread; commands still waiting are not carried out, and
 * new ones are dropped. The inbox stays until command_free, which must come
 * after the uplink is freed (its callbacks may still deliver).
 */
void command_stop(struct gateway *gw);
void command_free(struct gateway *gw);
/*
 * Appends one record to the audit log and, if 'publish', sends that record on
 * guardian/<device>/audit. Thread-safe. 0 or gd_err (logged).
 */
int gateway_audit(struct gateway *gw, int64_t ts, const char *event, const char *fields,
		  bool publish);
/* A value, or a string, as JSON text into 'out' (NUL-terminated, truncated to 'cap'). */
void gateway_value_json(char *out, size_t cap, const struct value *v);
size_t gateway_json_string(char *out, size_t cap, const char *text);
/* Where the point with this name (or alias) is, or -1. */
long gateway_point_by_name(const struct gateway *gw, const char *name);

#endif
