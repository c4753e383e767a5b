/* console.h: the field console: line editing, commands and PIN login for a technician on a
 * serial port; no I/O of its own, so it can be tested and fuzzed from memory. */
#ifndef GUARDIAN_CONSOLE_H
#define GUARDIAN_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_LINE_MAX 256 /* longest command line kept; the rest is dropped with a notice */
#define CONSOLE_WIDTH	 80  /* every table fits this many columns */

/* ---- what the console shows: filled by the gateway, or by a test -------------------------- */

struct console_status {
	char device[64];
	char version[32];
	int64_t now_ms; /* UTC, for ages */
	int64_t uptime_s;
	char broker[128]; /* "host:port" */
	bool uplink_connected;
	uint64_t queued_msgs, queued_bytes, published, dropped, connects;
	bool spooled; /* the spool is on: what it holds */
	uint64_t spool_records, spool_disk_bytes, spool_dropped, spool_damaged, spool_write_errors;
	int64_t last_publish_ms; /* UTC, 0 never */
	char uplink_error[160];	 /* "" when none */
	int64_t cert_expiry_ms;	 /* UTC; 0 when there is no attestation certificate */
	char last_error[192];	 /* the last warning or error logged, "" if none */
	int64_t last_error_ms;
};

struct console_adapter {
	char name[64];
	char type[16];
	bool link_up;
	uint64_t polls, polls_ok, timeouts, exceptions, bad_frames, io_errors, reconnects, samples;
	int64_t last_ok_ms; /* UTC, 0 never */
	char fault[192];    /* "" when well */
	int64_t fault_since_ms;
	char extra[256]; /* transport counters, "frames=12 checksum=0 ..." ("" if none) */
	/* Its points as last read: how many there are, how many were never read, how many read
	 * anything but good (timeout, exception, offline, ...), and the first of those, where it is
	 * read and why: "press/speed (unit 3 holding 16): exception 2 (illegal data address)". */
	uint32_t points, points_unread, points_bad;
	char problem[192];
};

struct console_point {
	char name[96];
	char value[48]; /* as text; "-" when there is none */
	char unit[16];
	char quality[16]; /* "good", "timeout", ... */
	int64_t ts_ms;	  /* UTC of the reading, 0 never read */
};

struct console_rule {
	char rule[32]; /* "uplink[0]" */
	uint64_t hits, drops, refusals;
};

/* What a privileged command asks for. */
enum console_action {
	CONSOLE_RESTART_ADAPTER, /* arg: the adapter's name */
	CONSOLE_RECONNECT_UPLINK,
	CONSOLE_ACK_FAULTS, /* clears shown faults and the last error */
};

/*
 * The gateway's side. Every callback may be called from the console's thread
 * at any time; each copies what it needs under its own locks.
 *   adapters, points, rules: fill at most 'cap' entries, return how many
 *     exist in all (so the console can say "and 12 more").
 *   points: those whose name matches the shell glob 'glob' (NULL: all).
 *   why: the policy's explanation for 'point' (as `guardian policy explain`
 *     prints it) into 'out'; returns -1 if there is no such point.
 *   log: the last 'n' log lines, oldest first, newline-separated, into 'out'.
 *   action: carries out a privileged command; returns 0 or -1, with a
 *     one-line message for the technician in 'msg' either way.
 */
struct console_provider {
	void *ctx;
	void (*status)(void *ctx, struct console_status *out);
	size_t (*adapters)(void *ctx, struct console_adapter *out, size_t cap);
	size_t (*points)(void *ctx, const char *glob, struct console_point *out, size_t cap);
	size_t (*rules)(void *ctx, struct console_rule *out, size_t cap);
	int (*why)(void *ctx, const char *point, char *out, size_t cap);
	size_t (*log)(void *ctx, size_t n, char *out, size_t cap);
	int (*action)(void *ctx, enum console_action act, const char *arg, char *msg, size_t cap);
};

/* Where the console's output goes (the serial port, a socket, a test's buffer). */
struct console_output {
	void *ctx;
	void (*write)(void *ctx, const char *data, size_t n);
};

/* Monotonic milliseconds; tests inject their own. */
struct console_clock {
	void *ctx;
	int64_t (*now_ms)(void *ctx);
};

struct console_config {
	const char *pin_hash; /* console_pin_hash's output; NULL: login is impossible */
	int idle_timeout_s;   /* a login ends after this long without input (default 300) */
	int lockout_after;    /* wrong PINs in a row before a lockout (5) */
	int lockout_base_s;   /* first lockout; doubles per further wrong PIN (30), max 1 h */
};

/* Counters for health. */
struct console_stats {
	uint64_t logins, login_failures, lockouts;
	int64_t locked_until_ms; /* monotonic; 0 when not locked */
	bool logged_in;
	uint64_t lines, dropped_bytes; /* commands read; bytes dropped (overlong lines, noise) */
};

struct console;

/*
 * A console session. Writes the banner and prompt at once. NULL on ENOMEM.
 * The console copies 'cfg->pin_hash'.
 */
struct console *console_new(const struct console_config *cfg, const struct console_provider *p,
			    const struct console_output *out, const struct console_clock *clk);
void console_free(struct console *c);
/*
 * Feeds what the technician typed: any bytes at all. Lines end with CR, LF or
 * CR LF (one command either way); backspace (0x08) and DEL (0x7f) erase, ^U
 * erases the line, ^C abandons it (and stops `watch`); ANSI escape sequences
 * (arrow keys) and other control bytes are ignored; bytes are echoed as a
 * terminal program expects. A line beyond CONSOLE_LINE_MAX is cut there and
 * the rest dropped up to its end, with a notice. Never fails, never blocks.
 */
void console_input(struct console *c, const uint8_t *data, size_t n);
/* Called a few times a second: redraws `watch`, ends an idle login. */
void console_tick(struct console *c);
/* A connection (re)appeared, e.g. the cable was plugged in: banner and prompt again. */
void console_reset(struct console *c);
void console_get_stats(const struct console *c, struct console_stats *out);

/*
 * Splits one command line into words (whitespace-separated, at most 'max'),
 * in place. Returns the number of words. Exposed for tests and the fuzzer.
 */
size_t console_split(char *line, char **words, size_t max);

/*
 * PIN hashing: PBKDF2-HMAC-SHA256 (mbedTLS) with a random 16-byte salt,
 * written as "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>". A PIN is 4
 * to 12 digits. Returns 0, or -1 (bad PIN, or no randomness).
 */
int console_pin_hash(const char *pin, unsigned iterations, char *out, size_t cap);
/* Checks 'pin' against such a string in constant time. Returns true on a match. */
bool console_pin_verify(const char *pin, const char *hash);
/* Checks the format of a stored hash (for config validation); NULL, or what is wrong. */
const char *console_pin_hash_check(const char *hash);

#endif
