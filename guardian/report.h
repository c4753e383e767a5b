/* report.h: failure reports to the cloud: crashes, refused updates and rollbacks, attestation
 * refusals, adapter faults and refused writes, each a JSON document on guardian/<device>/report,
 * kept on disk until the broker has acknowledged it. */
#ifndef GUARDIAN_REPORT_H
#define GUARDIAN_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPORT_PER_HOUR	   10  /* new reports of one kind an hour; more are counted as suppressed */
#define REPORT_MAX_PENDING 256 /* reports waiting on disk; more are counted as suppressed */
#define REPORT_WINDOW_MS   60000 /* refused writes of one point are summed over this */
#define REPORT_KIND_MAX	   32	 /* bytes of a kind, its NUL included */
#define REPORT_KEY_MAX	   128
#define REPORT_TEXT_MAX	   512
#define REPORT_DIR	   "reports"   /* in the state directory: one file per pending report */
#define REPORT_RUN_STATE   "run-state" /* in the state directory: "running ..." or "stopped ..." */
#define REPORT_LAST_EXIT   "last-exit" /* in the state directory, left by a supervisor */

struct jw;
struct adapter;
struct uplink;

/*
 * Sends one report document (a test's stand-in for the uplink). The reporter expects
 * reporter_ack(r, id, acked) for it later, from any thread. 0 or a gd_err (sent again later).
 */
typedef int report_send_fn(void *ctx, const char *doc, size_t len, uint64_t id);

struct reporter_config {
	const char *state_dir;
	const char *device_id;
	const char *boot_id;   /* this start's (16 hex digits) */
	struct uplink *uplink; /* publishes on guardian/<device>/report; NULL: 'send' */
	report_send_fn *send;  /* without an uplink; NULL: reports wait on disk */
	void *send_ctx;
	int per_hour;		 /* 0: REPORT_PER_HOUR */
	int64_t (*now_ms)(void); /* UTC ms; NULL: gd_now_ms (tests inject theirs) */
};

struct reporter;

/*
 * Opens <state_dir>/reports/ (made 0700 if missing) and takes up the reports a run before left
 * there, unacknowledged. Then looks at how the run before ended: if <state_dir>/run-state still
 * says "running", it did not stop cleanly, and a "crash" report says so (with what a supervisor
 * left in <state_dir>/last-exit, if written since that run started: its exit status or signal,
 * a core or backtrace path); and marks this run "running". NULL with 'why' on failure.
 */
struct reporter *reporter_open(const struct reporter_config *cfg, char *why, size_t cap);
/*
 * Starts the reporter's thread: it sends what is pending (again after a lost connection),
 * deletes what the broker acknowledged, watches the links of 'adapters' (borrowed; a report
 * when one goes down and when it is back, not one per poll) and closes the windows of refused
 * writes. 0 or a gd_err. The functions here do nothing for a NULL reporter.
 */
int reporter_start(struct reporter *r, struct adapter *const *adapters, size_t nadapters);
/* Stops the thread (before the uplink stops: the thread publishes through it). */
void reporter_stop(struct reporter *r);
/* Marks a clean stop in run-state and frees 'r' (after the uplink is freed: its callbacks
 * reach 'r'). */
void reporter_close(struct reporter *r);

/*
 * Reports one event: 'kind' (e.g. "update_refused", "rollback"; letters, digits and '_'),
 * 'key' (what it is about, e.g. the version refused) and 'text' (a sentence for people; cut to
 * REPORT_TEXT_MAX). While a report of the same kind and key waits for the broker, it is counted
 * there (count, last_ts and text updated) instead of a new one; at most per_hour new reports
 * of a kind are made an hour, the rest are counted into one "suppressed" report (key: the kind).
 * Thread-safe; the document is on disk when it returns. 0, GD_EINVAL (a kind that is not a name),
 * or GD_EIO (not written: logged).
 */
int report_event(struct reporter *r, const char *kind, const char *key, const char *text);
/* A write to 'point' the policy refused for 'reason': the first of a window is reported at once,
 * the rest summed and reported when the window (REPORT_WINDOW_MS) ends. Thread-safe. */
void report_write_refused(struct reporter *r, const char *point, const char *reason);

/* What the thread does once a second; tests call it themselves. */
void reporter_tick(struct reporter *r);
/* The broker acknowledged (or will not acknowledge) the send 'id'. Any thread; only records. */
void reporter_ack(void *ctx, uint64_t id, bool acked);

struct report_stats {
	uint64_t pending;    /* reports on disk, not yet acknowledged */
	uint64_t sent;	     /* acknowledged by the broker (and deleted) since the start */
	uint64_t suppressed; /* events counted into "suppressed" reports since the start */
};
void reporter_get_stats(struct reporter *r, struct report_stats *out);
/* The "reports":{"pending":N,"sent":N,"suppressed":N} member of the health document 'w' is
 * writing. */
void reporter_health(struct reporter *r, struct jw *w);

#endif
