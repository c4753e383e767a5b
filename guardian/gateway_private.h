/* gateway_private.h: private to guardian/: the running gateway's state, and the parts gateway.c
 * starts and calls: the console server, what is enforced, attestation, commands and the audit
 * sink. None of them calls gateway.c. */
#ifndef GUARDIAN_GATEWAY_PRIVATE_H
#define GUARDIAN_GATEWAY_PRIVATE_H

#include <pthread.h>

#include "../base/base.h"
#include "../base/json.h"
#include "core.h"

/* A counter another thread writes. */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

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
	struct compartment *cp; /* the adapter's child (compartment.h); NULL: this thread polls */
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
	/*
	 * A reloaded policy that waits for attestation (enforce.c). pending_lock guards it, the
	 * refusal and cfg->measured_policy; a swap takes policy_lock inside it.
	 */
	pthread_mutex_t pending_lock;
	struct {
		struct policy *policy; /* NULL: none */
		const char **names;
		struct gd_measured measured;
		uint64_t gen; /* counts reloads: names what a round measured */
	} pending;
	char reload_reason[32], reload_detail[256]; /* the last reload the service refused */
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
	/* Attestation rounds (uplink/attest.c) and this device's part (attest.c); NULL without an
	 * attestation section. */
	struct uplink_attest *attest;
	struct attest_device *attest_device;
	int broker_fd; /* attestation.tpm: guardian-launch's broker (attest_tpm.h), else -1 */
	struct audit_sink *audit; /* the audit log and its topic (audit_sink.c) */
	/* Notifications to the service manager and a trial's health gate (update.h). */
	struct update_gate *update_gate;
	/* Failure reports (report.h); NULL if they could not start. */
	struct reporter *reporter;
	/* Bundles delivered over MQTT (update_delivery.c); NULL without an update section. */
	struct update_delivery *delivery;
	int exit_status;    /* what guardian run exits with once stopped (atomic): 0, or
			       UPDATE_EXIT_RESTART after an install */
	char swversion[32]; /* said in hello and evidence: GD_VERSION and the bundle installed */
	/* The command path (command.c). */
	struct command_inbox *inbox;
	pthread_t command_thread;
	bool command_started;
};

/* A point's last reading, for the console; formatted only when it asks. */
struct point_last {
	enum quality quality;
	int32_t code;	    /* the exception code of QUALITY_EXCEPTION */
	int64_t ts_ms;	    /* UTC; 0 never read */
	struct value value; /* a string points to 'text' */
	char text[48];	    /* a string value, cut to fit */
};

/* Starts the console: the serial port of the config, if any, and the local socket. */
int console_server_start(struct gateway *gw);
/* Stops it and frees it. No operation if it never started. */
void console_server_stop(struct gateway *gw);
/* The "console":{...} member of the health document 'w' is writing. */
void console_server_health(struct gateway *gw, struct jw *w);

/*
 * What is enforced (enforce.c). A reloaded policy 'p' (taken), measured 'm', with the names
 * points leave under ('names', taken): without attestation it goes into force now; with it, it
 * becomes the pending policy (replacing one) and a round is asked for.
 */
void enforce_reload(struct gateway *gw, struct policy *p, const char **names,
		    const struct gd_measured *m);
/* For a round: the policy measurement to attest, the pending one if any, else the one in force;
 * *gen names it for the two calls below (0: the one in force). */
void enforce_round_policy(struct gateway *gw, struct gd_measured *out, uint64_t *gen);
/*
 * The service issued a certificate for round 'gen'. Unless a newer reload came since the round
 * measured (UPLINK_ATTEST_AGAIN, nothing kept), calls keep(ctx) to install the certificate and,
 * when it succeeds, puts the policy the round measured in force, all under pending_lock so that
 * no reload slips between. UPLINK_ATTEST_KEPT, or UPLINK_ATTEST_RETRY when keep failed ('why').
 */
enum uplink_attest_next enforce_round_accepted(struct gateway *gw, uint64_t gen,
					       int (*keep)(void *ctx, char *why, size_t cap),
					       void *ctx, char *why, size_t cap);
/* The service refused round 'gen': a pending policy it measured is dropped and the refusal
 * logged (UPLINK_ATTEST_AGAIN: attest what is in force now); if it measured the policy in force,
 * UPLINK_ATTEST_HOLD. */
enum uplink_attest_next enforce_round_refused(struct gateway *gw, uint64_t gen, const char *reason,
					      const char *detail);
/* The members "policy", "policy_sha256", "reload_reason", "reload_detail" of the object 'w' is
 * writing. */
void enforce_health(struct gateway *gw, struct jw *w);
/* Frees the pending policy, if any (at stop). */
void enforce_free(struct gateway *gw);

/* Starts attestation rounds with this device's keys (gw->attest); none without an attestation
 * section. 0 or gd_err. */
/* Before anything starts: measures the executable and, with attestation.tpm, checks that
 * guardian-launch measured what was loaded. 0, or an error already logged. */
int attest_device_prepare(struct gateway *gw);
int attest_device_start(struct gateway *gw);
void attest_device_stop(struct gateway *gw);

/* Starts the command thread and registers it with the uplink. 0 or gd_err (logged). */
int command_start(struct gateway *gw);
/*
 * Stops the command thread; commands still waiting are not carried out, and
 * new ones are dropped. The inbox stays until command_free, which must come
 * after the uplink is freed (its callbacks may still deliver).
 */
void command_stop(struct gateway *gw);
void command_free(struct gateway *gw);
/* The command counters: the "commands":{...} member of the health document 'w' is writing. */
void command_health(struct gateway *gw, struct jw *w);

/* Opens <state_dir>/audit.log for records 'u' publishes, for 'npoints' points. NULL on failure
 * (logged). */
struct audit_sink *audit_sink_open(const char *state_dir, struct uplink *u, size_t npoints);
/* Closes it. No operation is performed if 's' is NULL. */
void audit_sink_close(struct audit_sink *s);
/*
 * Appends one record ('fields': its JSON members) to the audit log and sends
 * that record on guardian/<device>/audit. Thread-safe. 0 or gd_err (logged).
 */
int audit_sink_record(struct audit_sink *s, int64_t ts, const char *event, const char *fields);
/* A sample the policy dropped as outside its range: the first of a point per minute becomes a
 * record. Each point's drops come from one thread. */
void audit_sink_range_drop(struct audit_sink *s, const struct sample *sample, const char *point,
			   int64_t ts);
/* The chain's head: the "audit":{...} member of the health document 'w' is writing. */
void audit_sink_health(struct audit_sink *s, struct jw *w);

#endif
