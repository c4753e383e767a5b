/* update.h: private to guardian/: signed updates on the device: two slots, the atomic switch, the
 * trial of a new version, its health gate and its rollback (README "Updates"). */
#ifndef GUARDIAN_UPDATE_H
#define GUARDIAN_UPDATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../proto/bundle.h"
#include "core.h"

/*
 * The state directory holds:
 *
 *   slots/a, slots/b   each a complete set: the program "guardian", site.json and the files it
 *                      names (policy, maps, keys) by paths relative to it
 *   current            a relative symlink to "slots/a" or "slots/b": what the supervisor starts
 *   update.json        {"floor":N,"good":{"slot":"a","version":N},
 *                       "trial":{"slot":"b","version":M,"previous":"a","attempts":k,
 *                                "max_attempts":3}|null}
 *   rollback.json      why the last trial was rolled back (for the failure report)
 *
 * update.json is written before 'current' is switched, and a trial whose slot 'current' does not
 * name is void: whatever step a crash interrupts, 'current' names a complete slot and the state
 * says what it is.
 */
#define UPDATE_EXIT_RESTART 3 /* "restart me into the new slot": RestartForceExitStatus= */
#define UPDATE_EXIT_GATE    4 /* the health gate was not passed in time: a failed attempt */

struct update_state {
	uint64_t floor; /* a bundle's version must be above it */
	char good[2];	/* the slot last marked good ("a" or "b") */
	uint64_t good_version;
	bool trial; /* a new version is on trial: the members below hold */
	char trial_slot[2];
	uint64_t trial_version;
	char previous[2]; /* where a rollback goes */
	int attempts;	  /* starts so far, counted by prestart */
	int max_attempts; /* update.trial_attempts of the config that installed it */
};

/* Reads the "update" object of a site config ('obj', a cJSON object; file paths relative to
 * 'dir') into 'u'. Errors go to 'c' under "update.". Returns how many it added. */
int update_config_read(struct gd_update *u, struct conf *c, const void *obj, const char *dir);
/* Frees what 'u' holds. */
void update_config_release(struct gd_update *u);

/* state_dir/update.json into 'st'. 0; GD_EIO (errno ENOENT when there is none) or GD_EPROTO,
 * with a sentence in 'why'. */
int update_state_read(const char *state_dir, struct update_state *st, char *why, size_t cap);
/* 'st' into state_dir/update.json, atomically. 0 or GD_EIO with 'why'. */
int update_state_write(const char *state_dir, const struct update_state *st, char *why, size_t cap);
/* The slot state_dir/current names, into 'slot' ("a" or "b"). 0, or GD_EIO/GD_EPROTO with 'why'.
 */
int update_current(const char *state_dir, char slot[2], char *why, size_t cap);
/* Points state_dir/current at 'slot': a new symlink beside it renamed over it, the directory
 * synced. 0 or GD_EIO with 'why'. */
int update_switch(const char *state_dir, const char *slot, char *why, size_t cap);

/*
 * What the supervisor runs before every start: a trial whose switch never happened is void; else
 * its start is counted and, past max_attempts, 'current' goes back to the previous slot, the trial
 * ends and rollback.json says why (also printed on 'out'). 0, or a gd_err with 'why'.
 */
int update_prestart(const char *state_dir, FILE *out, char *why, size_t cap);

/* What became of an install. */
enum update_outcome {
	UPDATE_INSTALLED, /* in the other slot, on trial, current switched: restart to run it */
	UPDATE_REFUSED,	  /* the bundle was refused ('refusal'): nothing changed */
	UPDATE_BUSY,	  /* a version is on trial: nothing changed, try again once it ended */
	UPDATE_FAILED,	  /* the state, the keys or the slots could not be read or written */
};

struct update_install_result {
	enum bundle_refusal refusal; /* for UPDATE_REFUSED */
	uint64_t version;	     /* the bundle's, once its manifest was read */
	char slot[2];		     /* installed into (UPDATE_INSTALLED); current otherwise */
	char previous[2];	     /* where a rollback goes (UPDATE_INSTALLED) */
	size_t nfiles;		     /* the bundle carried */
	int max_attempts;	     /* starts the trial gets */
	char why[1024];		     /* a sentence, unless UPDATE_INSTALLED */
};

/*
 * The install of `guardian update install`: verifies 'bundle' against the trust of 'cfg' (its
 * update section) and the state in 'state_dir', stages it into the inactive slot with what the
 * current slot holds beside it, and switches to it, on trial. Prints nothing. Any thread, one
 * install at a time per state directory.
 */
enum update_outcome update_install(const struct gd_config *cfg, const char *state_dir,
				   const char *bundle, struct update_install_result *res);

/*
 * The version string this program reports (hello and evidence): GD_VERSION, and "+u<N>" when its
 * config is in a slot of its state directory, N being the bundle version installed there (the
 * good one, or the one on trial). 'out' holds at least 32 bytes.
 */
void update_swversion(const struct gd_config *cfg, char *out, size_t cap);

/* "guardian update init|install|status|prestart ...": argv[0] is "update". An exit status. */
int update_main(int argc, char **argv);

/* The steps of an install, in order, where GUARDIAN_UPDATE_CRASH_AT=<step> kills it (tests). */
extern const char *const update_install_steps[];

struct gateway;

/*
 * In the running program: READY=1 and WATCHDOG=1 to $NOTIFY_SOCKET, and, when this program is a
 * version on trial, its health gate: config and policy loaded, attestation passed (if on), the
 * broker has acknowledged telemetry; then it is marked good. Not passed within
 * update.gate_timeout_s: the process exits UPDATE_EXIT_GATE. 0 or a gd_err (logged).
 */
int update_gate_start(struct gateway *gw);
/* Stops it. No operation is performed if it never started. */
void update_gate_stop(struct gateway *gw);

/*
 * Bundles delivered over MQTT (update_delivery.c), when the config has an "update" section:
 * subscribes to guardian/<device>/update/bundle (call before uplink_start); each bundle is
 * written to state_dir/incoming.bundle and installed by a thread of its own, as `guardian
 * update install` does. One already installed (the good or the trial version, or one not above
 * the floor) is passed over, said once at info; a refused one is a failure report
 * ("update_refused", key: the refusal); an installed one stops the program, which then exits
 * UPDATE_EXIT_RESTART (gateway_exit_status). Also, once at start: a rollback.json not reported yet
 * becomes a "rollback" report, and is renamed rollback.reported.json once the report is on disk.
 * 0 or a gd_err (logged).
 */
int update_delivery_start(struct gateway *gw);
/* Stops the thread and frees what it holds: after the uplink is freed (its callback reaches it),
 * before the reporter is closed (the thread reports). No operation if it never started. */
void update_delivery_stop(struct gateway *gw);

#endif
