/* uplink.h: the MQTT uplink: TLS connection, telemetry payloads, the bounded send queue, health. */
#ifndef UPLINK_H
#define UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/point.h"
#include "../base/base.h"
#include "../base/conf.h"

/* What to do with a new message when the queue is full. */
enum queue_drop {
	QUEUE_DROP_OLDEST, /* drop the oldest message not yet in flight (default) */
	QUEUE_DROP_NEWEST, /* refuse the new message */
	QUEUE_WINDOW,	   /* refuse it, not counted as a drop: the queue is the window in front
			      of the spool, which keeps what the queue refuses */
};
extern const char *const queue_drop_names[];

/* When the spool syncs its records to the disk (README "Store and forward"). */
enum spool_sync {
	SPOOL_SYNC_ALWAYS, /* every record: nothing lost on power loss, one fdatasync each */
	SPOOL_SYNC_BATCH,  /* every sync_interval_ms: the power-loss window (default) */
	SPOOL_SYNC_NONE,   /* when the kernel writes back: a process crash still loses nothing */
};
extern const char *const spool_sync_names[];

/* The crash-safe spool on disk (uplink/spool.h): telemetry waits there while the broker is away. */
struct spool_config {
	bool enabled;		 /* true */
	char *dir;		 /* "<state_dir>/spool" unless given */
	int sync;		 /* enum spool_sync: batch */
	int sync_interval_ms;	 /* 100 */
	long long max_bytes;	 /* 256 MiB of segment files on disk */
	int drop;		 /* enum queue_drop: oldest */
	long long segment_bytes; /* 4 MiB per segment file (at most an eighth of max_bytes) */
	bool compress;		 /* true: sealed segments compressed with zstd */
	int compress_level;	 /* 3 */
};

struct uplink_config {
	char *host;		     /* broker host name; verified against its certificate */
	int port;		     /* 8883 */
	char *ca_file;		     /* PEM: the CA that signed the broker (pinned) */
	char *cert_file;	     /* PEM: the device's client certificate */
	char *key_file;		     /* PEM: its private key */
	char *client_id;	     /* default: the device id */
	int keepalive_s;	     /* 30 */
	int connect_timeout_s;	     /* 10 */
	int reconnect_min_ms;	     /* 250: first retry delay, doubled per failure */
	int reconnect_max_ms;	     /* 30000 */
	int max_inflight;	     /* 64 QoS 1 messages awaiting acknowledgement */
	long long queue_max_bytes;   /* 4 MiB of payload held while the broker is away */
	int queue_drop;		     /* enum queue_drop */
	long long max_message_bytes; /* 128 KiB: larger batches are split */
	int health_interval_ms;	     /* 10000 */
	bool verify_hostname;	     /* true; false only for brokers reached by IP without SAN */
	bool attested;	    /* cert_file and key_file come from attestation: made at run time */
	bool files_checked; /* set before reading: the files were checked where the config was
			       first loaded (a child of guardian's, handed the config, may not
			       reach them all), so uplink_config_read does not open them */
	struct spool_config spool;
};

struct jw;

/* The spool's counters, for health and the console. */
struct spool_stats {
	uint64_t first_seq;  /* of the oldest record held, 0 if none */
	uint64_t last_seq;   /* of the newest record ever appended (persisted), 0 if none */
	uint64_t acked_seq;  /* the cursor */
	uint64_t records;    /* held and not yet acknowledged (an upper bound: gaps count) */
	uint64_t disk_bytes; /* segment files on disk */
	uint64_t raw_bytes;  /* the same records uncompressed */
	uint64_t segments;
	uint64_t appended;	 /* records written by this process */
	uint64_t dropped;	 /* records deleted unacknowledged for the cap (drop-oldest) */
	uint64_t refused;	 /* records refused for the cap (drop-newest) */
	uint64_t write_errors;	 /* appends that failed (ENOSPC, EIO): those went to memory only */
	uint64_t torn_tails;	 /* segments cut at a torn tail at start */
	uint64_t torn_bytes;	 /* bytes cut off */
	uint64_t quarantined;	 /* segments damaged before their end, copied to quarantine/ */
	uint64_t cursor_damaged; /* a cursor file that did not read: everything is resent */
	uint64_t syncs;		 /* fdatasync calls */
	uint64_t compressed;	 /* segments compressed */
	char last_error[160];
};

/* Sets the defaults listed above (strings NULL). */
void uplink_config_defaults(struct uplink_config *cfg);
/* Reads the "uplink" object. Returns the number of errors added to 'c'. */
int uplink_config_read(struct uplink_config *cfg, struct conf *c, const void *json_obj,
		       const char *path);
/* Frees the strings. No operation is performed if 'cfg' is NULL. */
void uplink_config_release(struct uplink_config *cfg);

/* Counters, for health and the console. */
struct uplink_stats {
	bool connected;
	uint64_t connects; /* successful connections */
	uint64_t connect_failures;
	uint64_t enqueued;    /* telemetry messages accepted into the queue */
	uint64_t published;   /* acknowledged by the broker */
	uint64_t dropped;     /* dropped because the queue was full */
	uint64_t queued_msgs; /* now in the queue (in flight included) */
	uint64_t queued_bytes;
	int64_t last_publish_ms; /* UTC ms of the last acknowledgement */
	char last_error[160];
	bool spooled; /* the spool is on: 'spool' says what it holds */
	struct spool_stats spool;
};

struct uplink;

/*
 * Creates the uplink for 'device_id'. Does not connect yet. The config is
 * copied. Returns NULL on ENOMEM or if Paho refuses the parameters.
 */
struct uplink *uplink_new(const struct uplink_config *cfg, const char *device_id);
/* Starts connecting in the background (with reconnect and backoff). 0 or gd_err. */
int uplink_start(struct uplink *u);
/*
 * Queues one telemetry payload (copied) numbered 'seq' (above every one before
 * it: see uplink_last_seq) for QoS 1 delivery on guardian/<device>/telemetry,
 * in order: into the spool on disk when it is on, and into the memory queue
 * while that keeps up. Thread-safe. Returns 0; GD_EFULL when the cap refused
 * it; GD_EIO when the spool could not write it and memory could not take it.
 */
int uplink_send_telemetry(struct uplink *u, uint64_t seq, const char *payload, size_t len);
/* The newest sequence number the spool holds or has held (0 without a spool): numbering goes on
 * after it across restarts. */
uint64_t uplink_last_seq(struct uplink *u);
/*
 * Sets the retained health document (copied) published on
 * guardian/<device>/health now (if connected) and after every reconnect.
 */
void uplink_set_health(struct uplink *u, const char *json, size_t len);
void uplink_get_stats(struct uplink *u, struct uplink_stats *out);
/* The "spool":{...} member of the health document 'w' is writing (README "Store and forward"). */
void uplink_spool_health(const struct spool_stats *st, struct jw *w);
/*
 * While held, the uplink does not connect (telemetry waits in the queue): no
 * valid operational certificate yet. Holding while connected drops the
 * connection. Thread-safe.
 */
void uplink_hold(struct uplink *u, bool held);
/* Drops the connection and connects again at once (a technician's request); when waiting to
 * retry, retries now. Thread-safe. */
void uplink_reconnect(struct uplink *u);

/*
 * Called for each message on guardian/<device>/cmd (QoS 1), on the MQTT
 * client's thread: it must copy what it needs and return at once.
 */
typedef void uplink_command_fn(void *ctx, const char *payload, size_t len);
/* Subscribes to the command topic on every connection. Call before uplink_start. */
void uplink_set_command_handler(struct uplink *u, uplink_command_fn *fn, void *ctx);
/*
 * One more subscription: guardian/<device>/<subtopic> (QoS 1) on every connection, its messages
 * (retained ones too, at each subscription) to 'fn' on the MQTT client's thread, as commands go
 * to theirs: it must copy what it needs and return at once. One per uplink; call before
 * uplink_start. 0, GD_EINVAL (one is set already, or the subtopic is empty or has a wildcard)
 * or GD_ENOMEM.
 */
int uplink_subscribe_extra(struct uplink *u, const char *subtopic, uplink_command_fn *fn,
			   void *ctx);
/*
 * Queues one QoS 1 message (copied) for guardian/<device>/<subtopic>, outside
 * the telemetry queue: command results, audit records. Kept while the broker
 * is away, up to 4096 (a burst of answered commands fits); beyond that the oldest goes (GD_EFULL).
 * Thread-safe.
 */
int uplink_publish_event(struct uplink *u, const char *subtopic, const char *payload, size_t len);
/*
 * What became of one uplink_publish_event_acked message: 'acked' true once the broker
 * acknowledged it (PUBACK); false when it will not be (the connection went with it in flight,
 * or the outbox was full and it was dropped): the caller sends it again when it likes. Called
 * once per message, on Paho's thread (or the caller's, for a full outbox), without the uplink's
 * lock: it must only record what happened and return.
 */
typedef void uplink_ack_fn(void *ctx, uint64_t id, bool acked);
/*
 * uplink_publish_event, and 'fn'(ctx, id, ...) says what became of the message. A message the
 * uplink still holds when it is freed gets no call: keep it until acknowledged, and send it again
 * after a restart. Thread-safe. 0, GD_ENOMEM (no call will come), or GD_EFULL (the outbox was
 * full: its oldest message went, and got its call).
 */
int uplink_publish_event_acked(struct uplink *u, const char *subtopic, const char *payload,
			       size_t len, uplink_ack_fn *fn, void *ctx, uint64_t id);
/*
 * Waits up to 'timeout_ms' for the queue to drain, publishes health "offline"
 * (a clean stop does not fire the last will), and disconnects.
 */
void uplink_stop(struct uplink *u, int timeout_ms);
/* Frees 'u'. No operation is performed if 'u' is NULL. */
void uplink_free(struct uplink *u);

/*
 * The operational key and certificate (PEM) an attestation round kept, for the next connection.
 * The uplink of this process reads cert_file and key_file, where the round wrote them, and so
 * ignores this; a backend in another process (below) is handed them. 0 or gd_err.
 */
int uplink_use_credentials(struct uplink *u, const char *key_pem, const char *cert_pem);

/*
 * Another uplink behind the functions above, as adapters are backends: the uplink in a child
 * process (guardian/uplink_remote.c). Each gets the 'impl' given to uplink_new_with and the
 * arguments of the function of the same name, which only calls it.
 */
struct uplink_ops {
	int (*start)(void *impl);
	int (*send_telemetry)(void *impl, uint64_t seq, const char *payload, size_t len);
	uint64_t (*last_seq)(void *impl);
	void (*set_health)(void *impl, const char *json, size_t len);
	void (*get_stats)(void *impl, struct uplink_stats *out);
	void (*hold)(void *impl, bool held);
	void (*reconnect)(void *impl);
	void (*set_command_handler)(void *impl, uplink_command_fn *fn, void *ctx);
	int (*subscribe_extra)(void *impl, const char *subtopic, uplink_command_fn *fn, void *ctx);
	int (*publish_event_acked)(void *impl, const char *subtopic, const char *payload,
				   size_t len, uplink_ack_fn *fn, void *ctx, uint64_t id);
	int (*use_credentials)(void *impl, const char *key_pem, const char *cert_pem);
	void (*stop)(void *impl, int timeout_ms);
	void (*free)(void *impl); /* at uplink_free */
};

/* An uplink whose functions are 'ops' on 'impl' (taken: ops->free frees it). NULL on ENOMEM. */
struct uplink *uplink_new_with(const struct uplink_ops *ops, void *impl);
/* The 'impl' of an uplink made by uplink_new_with with 'ops', else NULL. */
void *uplink_impl(struct uplink *u, const struct uplink_ops *ops);

/*
 * Telemetry payloads. Writes samples [first, ...) as one JSON document into
 * 'buf' (at most 'cap' bytes, NUL-terminated), stopping before the document
 * would exceed 'cap'. Returns how many samples it wrote (at least one if any
 * remain and one fits), and the length in *len. 'points' is the gateway's
 * point table, indexed by sample.point_id; 'names', when not NULL, gives the
 * name each point leaves under (the policy's aliases), indexed the same way.
 * 'boot_id' names this start of the process (see gateway_start); 'seq' goes on
 * across starts when the spool is on (uplink_last_seq), and from 1 within a
 * boot without it, so (boot, seq) names one message across restarts.
 *
 *   {"device":"press-07","boot":"5f0c7e1a9b32d4c8","seq":12,"ts":1732200000000,"points":[
 *     {"name":"plc1/temp","value":21.5,"unit":"degC","quality":"good","ts":1732200000000}]}
 *
 * A bad-quality point has "value":null and "quality":"timeout" (etc.), with
 * "code" for exceptions. A sample flagged by the policy carries
 * "range":"clamped" or "range":"outside". Strings are JSON-escaped, numbers
 * written as jw_double writes them (base/json.h).
 */
size_t payload_telemetry(char *buf, size_t cap, size_t *len, const char *device_id,
			 const char *boot_id, uint64_t seq, int64_t ts_ms,
			 const struct point *const *points, const char *const *names,
			 const struct sample *samples, size_t nsamples);

/*
 * Numbering after the fact, so that threads build documents at the same time
 * and number them one at a time, in the order they queue them: build with seq
 * 0 at 'doc', leaving PAYLOAD_SEQ_ROOM bytes free in front of it (and so a cap
 * that much smaller); payload_number() then writes 'seq' in place, moving the
 * few bytes before it back by the number's extra digits. Returns where the
 * document now starts, and its length in *len.
 */
#define PAYLOAD_SEQ_ROOM 19 /* digits of UINT64_MAX, less the "0" already there */
char *payload_number(char *doc, size_t *len, uint64_t seq);

/* What the device makes of a round's end: what the rounds do next. */
enum uplink_attest_next {
	UPLINK_ATTEST_KEPT,  /* the certificate is kept: release the uplink with it; renew at 2/3 */
	UPLINK_ATTEST_RETRY, /* nothing kept (no answer, or it could not be kept): retry with
				backoff */
	UPLINK_ATTEST_AGAIN, /* what the round measured is gone (a change refused and dropped, or
				replaced): attest what is enforced now, at once */
	UPLINK_ATTEST_HOLD,  /* what is enforced was refused: hold the uplink (no telemetry, no
				commands), retry with backoff */
};

struct attest_result;

/*
 * Attestation rounds (uplink/attest.c, service/PROTOCOL.md). The keys and the
 * measurements are the device's: a round asks for them through these, on the
 * rounds' thread. Each returns 0 (or the evidence) on success, else a gd_err
 * (NULL) with a sentence in 'why'.
 *   begin: before connecting: opens the identity key, makes the round's
 *     operational key pair.
 *   evidence: the signed evidence (malloc'd) for 'nonce' (NONCE_LEN bytes,
 *     proto/evidence.h), naming the operational key; the register it measured
 *     goes to 'register_hex' (left as it is when nothing was measured).
 *   end: after every round, whatever happened, with the service's answer
 *     ('res', proto/attest.h; NULL when there was none): on res->ok, keeps the
 *     certificate and the operational key for the uplink, or declines them;
 *     always forgets the round's secrets. Says what comes next.
 *   health: optional: the device's own members of the "attestation" object.
 */
struct uplink_attest_ops {
	int (*begin)(void *ctx, char *why, size_t cap);
	char *(*evidence)(void *ctx, const uint8_t *nonce, char register_hex[65], char *why,
			  size_t cap);
	enum uplink_attest_next (*end)(void *ctx, const struct attest_result *res, char *why,
				       size_t cap);
	void (*health)(void *ctx, struct jw *w);
};

/* What the rounds need. The strings and 'ctx' are borrowed: they outlive the rounds. */
struct uplink_attest_config {
	const char *device_id;
	const char *swversion; /* said in hello */
	const char *host;      /* the broker's attestation listener */
	int port;
	const char *ca_file;   /* verifies that listener's server certificate */
	const char *cert_file; /* the identity certificate */
	const char *key_file;  /* and its key */
	int timeout_ms;	       /* to connect, for the nonce and for the result */
	int retry_min_ms, retry_max_ms;
	const struct uplink_attest_ops *ops;
	void *ctx;
};

struct uplink_attest;

/*
 * Starts the rounds on their own thread: at once, at two thirds of each
 * certificate's lifetime, on uplink_attest_trigger, after a failure with
 * backoff. A round whose certificate the device keeps releases 'u' and
 * reconnects it; an expired certificate, or a refusal of what is enforced,
 * holds it. NULL on failure.
 */
struct uplink_attest *uplink_attest_start(const struct uplink_attest_config *cfg, struct uplink *u);
/* Stops the rounds and frees 'a'. The functions below do nothing for a NULL 'a'. */
void uplink_attest_stop(struct uplink_attest *a);
/* The measurements changed (a policy reload waits for it): attest again now. */
void uplink_attest_trigger(struct uplink_attest *a);
/* UTC ms when the operational certificate expires; 0 when there is none. */
int64_t uplink_attest_cert_expiry(struct uplink_attest *a);
/* One line for people: "attested", or the state and the last refusal ("" for NULL). */
void uplink_attest_describe(struct uplink_attest *a, char *out, size_t cap);
/* The "attestation":{...} member of the health document 'w' is writing. */
void uplink_attest_health(struct uplink_attest *a, struct jw *w);

#endif
