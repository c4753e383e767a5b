/* gateway_private.h: private to gateway.c and command.c: the running gateway's state. */
#ifndef GUARDIAN_GATEWAY_PRIVATE_H
#define GUARDIAN_GATEWAY_PRIVATE_H

#include <pthread.h>

#include "../base/base.h"
#include "../base/json.h"
#include "command_doc.h"
#include "core.h"

struct runner {
	struct gateway *gw;
	struct adapter *a;
	pthread_t thread;
	bool started;
	bool restart; /* atomic: close and reopen the link (a technician's request) */
	struct point_sink sink;
	struct sample *allowed; /* the samples of one chunk that the policy lets out */
	size_t allowed_cap;	/* samples it holds: the adapter's point count */
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
	/* A telemetry message's number and its enqueue are one step under emit_lock: seq is the
	 * order of the queue. boot_id (16 hex digits) is new at every start. */
	pthread_mutex_t emit_lock;
	uint64_t seq; /* the last telemetry message number given out */
	char boot_id[17];
	uint64_t denied;  /* samples no rule lets out, atomic */
	uint64_t dropped; /* samples of allowed points dropped by range, deadband or rate */
	int64_t started_ms;
	/* The last good value of every point (numbers and bools), the last reading of every
	 * point whatever its quality, for the console, and the last accepted write of every
	 * point with its UTC ms: max_step's current value where the adapter cannot read. */
	pthread_mutex_t current_lock;
	struct value *current;
	struct point_last *last;
	struct value *written;
	int64_t *written_ms;
	/* The field console (gateway_console.c). */
	struct console_server *console;
	/* Attestation rounds (attest_client.c); NULL without an attestation section. */
	struct attest_client *attest;
	/* Per point, when its last range drop was audited (each point: one adapter thread). */
	int64_t *last_drop_audit_ms;
	/* The command path (command.c). */
	struct audit *audit;
	pthread_mutex_t audit_lock; /* an append and the publish of that record */
	struct command_inbox *inbox;
	pthread_t command_thread;
	bool command_started;
};

/* A point's last reading, for the console; formatted only when it asks. */
struct point_last {
	enum quality quality;
	int64_t ts_ms;	    /* UTC; 0 never read */
	struct value value; /* a string points to 'text' */
	char text[48];	    /* a string value, cut to fit */
};

/* Starts the console: the serial port of the config, if any, and the local socket. */
int console_server_start(struct gateway *gw);
/* Stops it and frees it. No operation if it never started. */
void console_server_stop(struct gateway *gw);
/* Appends ',"console":{...}' counters to a health document; returns the length. */
size_t console_server_health(struct gateway *gw, char *buf, size_t cap);

/* Attestation: rounds on their own thread; the uplink is held until the first succeeds. */
int attest_start(struct gateway *gw);
void attest_stop(struct gateway *gw);
/* The measurements changed (a policy reload): attest again now. */
void attest_trigger(struct gateway *gw);
/* UTC ms when the operational certificate expires; 0 when there is none. */
int64_t attest_cert_expiry(struct gateway *gw);
/* One line for people: "attested", or the state and the last refusal ("" without attestation). */
void attest_describe(struct gateway *gw, char *out, size_t cap);
/* Appends ',"attestation":{...}' to a health document; returns the length. */
size_t attest_health(struct gateway *gw, char *buf, size_t cap);

/* Starts the command thread and registers it with the uplink. 0 or gd_err (logged). */
int command_start(struct gateway *gw);
/*
 * Stops the command thread; commands still waiting are not carried out, and
 * new ones are dropped. The inbox stays until command_free, which must come
 * after the uplink is freed (its callbacks may still deliver).
 */
void command_stop(struct gateway *gw);
void command_free(struct gateway *gw);
/* The command counters and the audit chain's head: "commands":{...},"audit":{...} members of
 * the health document 'w' is writing. */
void command_health(struct gateway *gw, struct jw *w);
/*
 * Appends one record to the audit log and, if 'publish', sends that record on
 * guardian/<device>/audit. Thread-safe. 0 or gd_err (logged).
 */
int gateway_audit(struct gateway *gw, int64_t ts, const char *event, const char *fields,
		  bool publish);
/* A value as JSON text: gateway_value_json in command_doc.h. A string as JSON text into 'out';
 * returns its length, or 'cap' when it does not fit (then 'out' holds ""). */
size_t gateway_json_string(char *out, size_t cap, const char *text);
/* Where the point with this name (or alias) is, or -1. The caller holds policy_lock: a reload
 * frees the aliases. */
long gateway_point_by_name(const struct gateway *gw, const char *name);

#endif
