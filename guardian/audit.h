/* audit.h: the keyed, hash-chained audit log of what guardian decided, and its verifier. */
#ifndef GUARDIAN_AUDIT_H
#define GUARDIAN_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The audit log: an append-only file of JSON lines in the state directory.
 * Each record carries the MAC of the record before it, so that removing,
 * reordering or changing a record breaks the chain, and its own MAC last:
 *   {"seq":1,"ts":1763744523118,"prev":"<64 hex>","event":"write_refused",...,"mac":"<64 hex>"}
 * "mac" is HMAC-SHA256 over the line without its ,"mac":"..." tail, keyed
 * with the 32 random bytes of audit.key beside the log (made 0600 at the
 * first open; refused when group or others may read it). Without the key no
 * one can recompute a chain after an edit. The first record's "prev" is 64
 * zeros.
 *
 * Records from before the key carry "hash" (plain SHA-256) instead of "mac".
 * They are checked as a plain chain and only at the start of a log: the first
 * keyed record's "prev" (under its MAC) vouches for all of them. A "hash"
 * record after a keyed one was written without the key and is reported.
 *
 * A truncated tail cannot be told from the file alone: compare with the head
 * (seq and MAC of the last record) published in health and on the audit topic.
 */
struct audit;
/*
 * Opens (creating, 0600) 'path' and the key beside it (creating it when the
 * log holds no keyed record), and reads the end of the chain: new records
 * follow the last record whose seq and MAC can be read, with one warning in
 * the log when the chain is broken. NULL with errno on failure, after a
 * warning saying why when the key is refused (EACCES: open to group or
 * others; EINVAL: not a 32-byte file; ENOKEY: the log holds keyed records but
 * the key is gone).
 */
struct audit *audit_open(const char *path);
/*
 * Appends one record: 'event' ([a-z_]+) and 'fields_json', the inner members
 * (e.g. "\"point\":\"plc1/x\""), NULL or "" for none. The record is written
 * only if it is one JSON object whose chain members (seq, ts, prev, event,
 * mac) appear once: fields that are not JSON members, hold a control
 * character, or would make the record longer than 8 KiB are refused, never
 * cut. Thread-safe; fsyncs. 0, GD_EINVAL (nothing written, no seq taken),
 * GD_ENOMEM or GD_EIO.
 */
int audit_append(struct audit *a, int64_t ts_ms, const char *event, const char *fields_json);
/* The last record appended, as written (for publishing); valid until the next append. */
const char *audit_last(struct audit *a);
/*
 * The head of the chain, for publishing: the seq of the last record and its
 * MAC as 64 lowercase hex digits and a NUL (seq 0 and 64 zeros when the log
 * is empty). After audit_open on a broken log, the record new ones follow.
 * Thread-safe.
 */
void audit_head(struct audit *a, uint64_t *seq, char mac_hex[65]);
/* Closes the log and wipes the key from memory. No operation is performed if 'a' is NULL. */
void audit_close(struct audit *a);

/* What audit_check found. */
struct audit_result {
	uint64_t records;	/* lines checked */
	uint64_t problems;	/* reported through the callback */
	uint64_t unkeyed;	/* intact records from before the key ("hash", no MAC) */
	long unkeyed_last_line; /* the last of them, 0 if none */
	bool unkeyed_anchored;	/* a keyed record follows them and vouches for them */
	uint64_t head_seq;	/* the last record of the intact chain; 0 if none */
	char head_mac[65];	/* its MAC (64 hex), or 64 zeros */
	long head_line;		/* its line, 0 if none */
};
/*
 * Checks every line of 'path' against the key beside it (audit.key) and,
 * when 'published_seq' is not 0, against the head published earlier
 * ('published_mac', 64 lowercase hex digits): a log whose intact chain ends
 * before that seq, or whose record of that seq has another MAC, was cut or
 * rewritten. Calls 'problem' (if not NULL) once per problem in file order:
 * 'line' is 1-based, 0 for the log as a whole (the head); 'why' is one
 * sentence ("line 5: MAC does not match its content (record changed)").
 * After a broken line the walk goes on from the next readable record, so a
 * later edit is found too. Fills 'out'.
 * Returns 0 when the log could be checked (out->problems says whether it is
 * intact); else GD_EIO (unreadable file or key), GD_EDENIED (key open to
 * group or others, or missing while the log holds keyed records), GD_EINVAL
 * (key not 32 bytes) or GD_ENOMEM, with a sentence in 'why'.
 */
int audit_check(const char *path, uint64_t published_seq, const char *published_mac,
		void (*problem)(void *ctx, long line, const char *why), void *ctx,
		struct audit_result *out, char *why, size_t why_len);
/*
 * audit_check without a head, for a yes or no: 0 if every record is intact,
 * else the 1-based line of the first problem with its sentence in 'why'; -1
 * with the reason in 'why' if the log cannot be checked.
 */
long audit_verify(const char *path, char *why, size_t why_len);

#endif
