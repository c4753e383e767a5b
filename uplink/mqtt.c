/* mqtt.c: the MQTT uplink over TLS with Paho (async): reconnects, publishes queue and health. */
#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../proto/mqtt_tls.h"
#include "diagnose.h"
#include "queue.h"
#include "spool.h"
#include "uplink.h"

#define SUBSYS		     "uplink"
#define DROP_LOG_INTERVAL_MS 10000 /* at most one "dropped" line per interval */
#define TICK_MS		     1000  /* the thread looks around at least this often */
#define PUMP_RETRY_MS	     1000  /* after Paho refused a publish */
#define STOP_STEP_MS	     2000  /* for each of: offline health, disconnect */

/*
 * One background thread owns the connection. It runs this state machine:
 *
 *   WAITING --(time for an attempt)--> CONNECTING --(onSuccess)--> CONNECTED
 *      ^                                   |                          |
 *      +------(onFailure: backoff)---------+                          |
 *      +------(connection lost: new Paho client, backoff)-------------+
 *
 * Paho's callbacks only record what happened (under 'lock') and wake the
 * thread; the thread acts on it. Paho calls its callbacks with its own mutex
 * held, so nothing here calls into Paho while holding 'lock'.
 *
 * Every publish carries a heap context that names the queue message it is
 * for. Paho calls onSuccess or onFailure exactly once for each accepted
 * publish (MQTTAsync_destroy fails what is left), and the callback frees the
 * context; the list 'sends' lets uplink_free() reclaim any it did not.
 *
 * After a lost connection the Paho client is replaced by a fresh one, so that
 * publishes Paho still held in its own command list cannot go out later, ahead
 * of the resent messages.
 */
enum link_state {
	LINK_IDLE,    /* not started */
	LINK_WAITING, /* until next_attempt_ms */
	LINK_CONNECTING,
	LINK_CONNECTED,
	LINK_STOPPED,
};

/* A message for guardian/<device>/<subtopic> outside the telemetry queue (command results, audit).
 */
struct event {
	struct event *next;
	char *topic;
	uplink_ack_fn *ack_fn; /* uplink_publish_event_acked: told what became of it */
	void *ack_ctx;
	uint64_t ack_id;
	size_t len;
	char payload[]; /* len bytes */
};

#define EVENT_SEQ  UINT64_MAX /* send_ctx.seq of an event message */
#define MAX_EVENTS 4096	      /* held while disconnected; the oldest go first */

struct send_ctx {
	struct uplink *u;
	uint64_t seq;	/* queue sequence number; 0 for a health document */
	uint32_t sends; /* which send of that message */
	struct send_ctx *prev, *next;
	uplink_ack_fn *ack_fn; /* an acknowledged event: called, without 'lock', when it ends */
	void *ack_ctx;
	uint64_t ack_id;
};

struct uplink {
	/* uplink_new_with: every function is ops->...(impl); nothing below is used */
	const struct uplink_ops *ops;
	void *impl;
	struct uplink_config cfg; /* a copy; strings owned */
	char *device_id;
	const char *client_id; /* cfg.client_id or device_id */
	char *uri;	       /* ssl://host:port */
	char *topic_telemetry;
	char *topic_health;
	char *topic_cmd;
	char *topic_prefix;	   /* guardian/<device>/ */
	uplink_command_fn *cmd_fn; /* set before start; called on Paho's thread */
	void *cmd_ctx;
	char *topic_extra; /* uplink_subscribe_extra: set before start, NULL if none */
	uplink_command_fn *extra_fn;
	void *extra_ctx;
	char *will_doc;
	struct uplink_queue *queue;
	/*
	 * With a spool, every telemetry message goes to disk first and the memory queue is only the
	 * window being sent: while it keeps up, producers put each message into it as well; once it
	 * refuses one, 'behind' is set and the uplink thread loads from the spool, after 'loaded',
	 * until it has caught up. feed_lock orders the two; it is taken before 'lock' (the queue's
	 * wake takes that), never after.
	 */
	struct spool *spool;
	pthread_mutex_t feed_lock;
	bool behind;	 /* the spool holds messages after 'loaded' not in the queue (written under
			    feed_lock, atomically, so a look without it is allowed) */
	uint64_t loaded; /* the newest seq put into the queue */
	uint64_t spool_acked; /* told to the spool */
	uint64_t lost;	      /* neither the spool nor memory took them (atomic) */
	MQTTAsync client;     /* used by the thread only (by stop/free once it has ended) */
	pthread_t thread;
	bool thread_running;

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;  /* CLOCK_MONOTONIC; broadcast on every change */
	enum link_state state;
	bool held; /* uplink_hold: no connection attempts */
	bool stop_thread;
	bool kick; /* something changed: look again before sleeping */
	bool ev_connected, ev_connect_failed, ev_lost, ev_send_failed;
	int fail_code;
	char fail_msg[96];
	char tls_reason[160]; /* OpenSSL's reasons, from ssl_error_cb */
	bool diagnosing;      /* between diagnose_begin() and diagnose_end() */
	int64_t attempt_ms;   /* when the attempt started (monotonic) */
	int64_t next_attempt_ms;
	int failures; /* consecutive failed attempts */
	int64_t pump_paused_until_ms;
	char *health;	   /* the current health document, NUL-terminated */
	bool health_dirty; /* to publish on the next chance */
	uint64_t health_acks;
	bool disconnect_done;
	bool subscribe_pending; /* the command topic, after each connect */
	bool extra_pending;	/* the extra topic, after each connect */
	struct event *events;	/* outbox of event messages, oldest first */
	struct event *events_tail;
	size_t nevents;
	uint64_t events_dropped;
	struct send_ctx *sends;

	uint64_t connects, connect_failures, published;
	int64_t last_publish_ms;
	char last_error[160];
	uint64_t drops_logged;
	int64_t drop_log_ms;
	bool backlog_pending; /* messages queued at connect time not all delivered yet */
	uint64_t backlog_last_seq;
	size_t backlog_msgs;
	int64_t backlog_start_ms;
	uint32_t rng;
};

/* --- small helpers ------------------------------------------------------ */

static void wake_locked(struct uplink *u)
{
	u->kick = true;
	pthread_cond_broadcast(&u->cond);
}

/* The queue's wake callback: runs without the queue's lock. */
static void queue_wake(void *ctx)
{
	struct uplink *u = ctx;

	pthread_mutex_lock(&u->lock);
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

/* Waits on u->cond until the monotonic 'deadline_ms'. */
static void wait_until(struct uplink *u, int64_t deadline_ms)
{
	struct timespec ts = { .tv_sec = deadline_ms / 1000,
			       .tv_nsec = (deadline_ms % 1000) * 1000000 };

	pthread_cond_timedwait(&u->cond, &u->lock, &ts);
}

static uint32_t next_random(struct uplink *u)
{
	/* xorshift32: enough to spread a fleet's reconnects apart */
	u->rng ^= u->rng << 13;
	u->rng ^= u->rng >> 17;
	u->rng ^= u->rng << 5;
	return u->rng;
}

/* reconnect_min_ms doubled per consecutive failure, up to reconnect_max_ms, +-20%. */
static int64_t backoff_ms(struct uplink *u)
{
	int64_t base = gd_backoff_ms(u->cfg.reconnect_min_ms, u->cfg.reconnect_max_ms, u->failures);
	int64_t span = base / 5;
	int64_t delay = base - span + (int64_t)(next_random(u) % (uint32_t)(2 * span + 1));

	return delay > u->cfg.reconnect_max_ms ? u->cfg.reconnect_max_ms : delay;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static const char *connack_text(int code)
{
	switch (code) {
	case 1:
		return "the broker refused the protocol version";
	case 2:
		return "the broker refused the client id";
	case 3:
		return "the broker is unavailable";
	case 4:
		return "the broker refused the user name or password";
	case 5:
		return "the broker refused to authorise this client";
	}
	return NULL;
}

/* --- Paho callbacks: record and wake, nothing more ---------------------- */

static void on_connect_ok(void *context, MQTTAsync_successData *response)
{
	struct uplink *u = context;

	(void)response;
	pthread_mutex_lock(&u->lock);
	u->ev_connected = true;
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void on_connect_failed(void *context, MQTTAsync_failureData *response)
{
	struct uplink *u = context;

	pthread_mutex_lock(&u->lock);
	u->ev_connect_failed = true;
	u->fail_code = response ? response->code : MQTTASYNC_FAILURE;
	snprintf(u->fail_msg, sizeof(u->fail_msg), "%s",
		 response && response->message ? response->message : "");
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

void uplink_hold(struct uplink *u, bool held)
{
	if (u->ops != NULL) {
		u->ops->hold(u->impl, held);
		return;
	}
	pthread_mutex_lock(&u->lock);
	u->held = held;
	if (held && u->state == LINK_CONNECTED) {
		u->ev_lost = true;
		snprintf(u->fail_msg, sizeof(u->fail_msg), "no valid operational certificate");
	}
	if (!held && u->state == LINK_WAITING) {
		u->failures = 0;
		u->next_attempt_ms = gd_mono_ms();
	}
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

void uplink_reconnect(struct uplink *u)
{
	if (u->ops != NULL) {
		u->ops->reconnect(u->impl);
		return;
	}
	pthread_mutex_lock(&u->lock);
	if (u->state == LINK_CONNECTED) {
		/* Handled like a lost connection: a fresh client, in-flight messages resent. */
		u->ev_lost = true;
		snprintf(u->fail_msg, sizeof(u->fail_msg), "reconnect requested at the console");
	} else if (u->state == LINK_WAITING) {
		u->failures = 0;
		u->next_attempt_ms = gd_mono_ms();
	}
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void on_connection_lost(void *context, char *cause)
{
	struct uplink *u = context;

	pthread_mutex_lock(&u->lock);
	u->ev_lost = true;
	snprintf(u->fail_msg, sizeof(u->fail_msg), "%s",
		 cause ? cause : "the broker closed the connection or the network failed");
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

/*
 * OpenSSL's error lines, through ERR_print_errors_cb:
 *   <thread>:error:0A000086:SSL routines:<function>:certificate verify failed:<file>:<line>:<data>
 * Keeps the reason (and the data, if any) of each line.
 */
static int on_ssl_error(const char *str, size_t len, void *context)
{
	struct uplink *u = context;
	char line[512], *p, *reason, *data = NULL;
	size_t used;

	snprintf(line, sizeof(line), "%.*s", (int)len, str);
	line[strcspn(line, "\r\n")] = '\0';
	reason = line;
	p = strstr(line, "error:");
	if (p != NULL) {
		p += strlen("error:");
		for (int field = 0; field < 3 && p != NULL; field++) { /* code, library, function */
			p = strchr(p, ':');
			if (p != NULL)
				p++;
		}
		if (p != NULL) {
			reason = p;
			p = strchr(p, ':');
			if (p != NULL) {
				*p++ = '\0';
				for (int field = 0; field < 2 && p != NULL;
				     field++) { /* file, line */
					p = strchr(p, ':');
					if (p != NULL)
						p++;
				}
				if (p != NULL && *p != '\0')
					data = p;
			}
		}
	}
	pthread_mutex_lock(&u->lock);
	used = strlen(u->tls_reason);
	if (strstr(u->tls_reason, reason) == NULL)
		snprintf(u->tls_reason + used, sizeof(u->tls_reason) - used, "%s%s%s%s",
			 used ? "; " : "", reason, data ? ": " : "", data ? data : "");
	pthread_mutex_unlock(&u->lock);
	return 1;
}

static void forget_send(struct uplink *u, struct send_ctx *ctx)
{
	if (ctx->prev != NULL)
		ctx->prev->next = ctx->next;
	else
		u->sends = ctx->next;
	if (ctx->next != NULL)
		ctx->next->prev = ctx->prev;
	free(ctx);
}

static void on_publish_ok(void *context, MQTTAsync_successData *response)
{
	struct send_ctx *ctx = context;
	struct uplink *u = ctx->u;
	uplink_ack_fn *ack_fn = ctx->ack_fn; /* ctx is freed below */
	void *ack_ctx = ctx->ack_ctx;
	uint64_t ack_id = ctx->ack_id;

	(void)response;
	pthread_mutex_lock(&u->lock);
	if (ctx->seq == 0) {
		u->health_acks++;
	} else if (ctx->seq == EVENT_SEQ) {
		/* best effort: nothing to account */
	} else if (queue_ack(u->queue, ctx->seq)) {
		u->published++;
		u->last_publish_ms = gd_now_ms();
	}
	forget_send(u, ctx);
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
	/* Without 'lock': the owner takes its own lock, and may publish again from another. */
	if (ack_fn != NULL)
		ack_fn(ack_ctx, ack_id, true);
}

static void on_publish_failed(void *context, MQTTAsync_failureData *response)
{
	struct send_ctx *ctx = context;
	struct uplink *u = ctx->u;
	uplink_ack_fn *ack_fn = ctx->ack_fn;
	void *ack_ctx = ctx->ack_ctx;
	uint64_t ack_id = ctx->ack_id;

	(void)response;
	pthread_mutex_lock(&u->lock);
	/* Only the current send matters; resend from the head to keep the order. */
	if (ctx->seq != 0 && ctx->seq != EVENT_SEQ && queue_failed(u->queue, ctx->seq, ctx->sends))
		u->ev_send_failed = true;
	forget_send(u, ctx);
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
	/* An acknowledged event that will not be: its owner sends it again. */
	if (ack_fn != NULL)
		ack_fn(ack_ctx, ack_id, false);
}

static void on_disconnected(void *context, MQTTAsync_successData *response)
{
	struct uplink *u = context;

	(void)response;
	pthread_mutex_lock(&u->lock);
	u->disconnect_done = true;
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void on_disconnect_failed(void *context, MQTTAsync_failureData *response)
{
	on_disconnected(context, NULL);
	(void)response;
}

/* Paho's message callback: commands go to the handler; the rest is ignored. */
static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct uplink *u = context;
	size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);

	if (u->cmd_fn != NULL && tlen == strlen(u->topic_cmd) &&
	    memcmp(topic, u->topic_cmd, tlen) == 0 && m->payloadlen >= 0)
		u->cmd_fn(u->cmd_ctx, m->payload, (size_t)m->payloadlen);
	else if (u->extra_fn != NULL && tlen == strlen(u->topic_extra) &&
		 memcmp(topic, u->topic_extra, tlen) == 0 && m->payloadlen >= 0)
		u->extra_fn(u->extra_ctx, m->payload, (size_t)m->payloadlen);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
	struct uplink *u = context;

	log_warnx(SUBSYS, "cannot subscribe to %s (code %d); commands cannot arrive", u->topic_cmd,
		  response ? response->code : 0);
}

/* The broker granted the subscription: commands can arrive from now on (tests wait for this). */
static void on_subscribed(void *context, MQTTAsync_successData *response)
{
	struct uplink *u = context;

	(void)response;
	log_info(SUBSYS, "subscribed to %s", u->topic_cmd);
}

static void on_extra_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
	struct uplink *u = context;

	log_warnx(SUBSYS, "cannot subscribe to %s (code %d); nothing can arrive there",
		  u->topic_extra, response ? response->code : 0);
}

static void on_extra_subscribed(void *context, MQTTAsync_successData *response)
{
	struct uplink *u = context;

	(void)response;
	log_info(SUBSYS, "subscribed to %s", u->topic_extra);
}

/* --- Paho calls, made without 'lock' ------------------------------------ */

static MQTTAsync client_create(struct uplink *u)
{
	MQTTAsync_createOptions opts = MQTTAsync_createOptions_initializer;
	MQTTAsync client = NULL;
	int rc;

	opts.sendWhileDisconnected = 0; /* our queue does the buffering */
	opts.maxBufferedMessages = u->cfg.max_inflight + 16;
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	rc = MQTTAsync_createWithOptions(&client, u->uri, u->client_id, MQTTCLIENT_PERSISTENCE_NONE,
					 NULL, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx(SUBSYS, "cannot create an MQTT client for %s: %s", u->uri,
			  MQTTAsync_strerror(rc));
		return NULL;
	}
	rc = MQTTAsync_setCallbacks(client, u, on_connection_lost, on_message, NULL);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx(SUBSYS, "cannot set the client's callbacks: %s", MQTTAsync_strerror(rc));
		MQTTAsync_destroy(&client);
		return NULL;
	}
	return client;
}

/*
 * Publishes one QoS 1 message. Called with 'lock' held; releases it around
 * the Paho call. 'seq' 0 marks a health document. 'ack', when not NULL, is
 * the acknowledged event it sends: its callback goes with the send.
 */
static int publish_acked_locked(struct uplink *u, const char *topic, const char *data, size_t len,
				bool retained, uint64_t seq, uint32_t sends,
				const struct event *ack)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	union {
		const char *in;
		void *out;
	} payload = { .in = data }; /* Paho does not write to it */
	struct send_ctx *ctx = calloc(1, sizeof(*ctx));
	MQTTAsync client = u->client;
	int rc;

	if (ctx == NULL || client == NULL) {
		free(ctx);
		return ctx == NULL ? MQTTASYNC_FAILURE : MQTTASYNC_DISCONNECTED;
	}
	*ctx = (struct send_ctx){ .u = u, .seq = seq, .sends = sends, .next = u->sends };
	if (ack != NULL) {
		ctx->ack_fn = ack->ack_fn;
		ctx->ack_ctx = ack->ack_ctx;
		ctx->ack_id = ack->ack_id;
	}
	if (u->sends != NULL)
		u->sends->prev = ctx;
	u->sends = ctx;
	msg.payload = payload.out;
	msg.payloadlen = (int)len;
	msg.qos = 1;
	msg.retained = retained;
	opts.onSuccess = on_publish_ok;
	opts.onFailure = on_publish_failed;
	opts.context = ctx;
	pthread_mutex_unlock(&u->lock);
	rc = MQTTAsync_sendMessage(client, topic, &msg, &opts);
	pthread_mutex_lock(&u->lock);
	if (rc != MQTTASYNC_SUCCESS)
		forget_send(u, ctx); /* Paho did not take it: no callback will come */
	return rc;
}

static int publish_locked(struct uplink *u, const char *topic, const char *data, size_t len,
			  bool retained, uint64_t seq, uint32_t sends)
{
	return publish_acked_locked(u, topic, data, len, retained, seq, sends, NULL);
}

/* Starts one connection attempt. Called with 'lock' held; releases it around Paho. */
static void connect_start(struct uplink *u, int64_t now)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl;
	MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
	MQTTAsync client;
	int rc;

	/* TLS: the broker's CA pinned, its certificate and host name verified, our certificate. */
	mqtt_tls_options(&ssl, &(struct mqtt_tls){ .ca_file = u->cfg.ca_file,
						   .cert_file = u->cfg.cert_file,
						   .key_file = u->cfg.key_file,
						   .no_hostname_check = !u->cfg.verify_hostname,
						   .on_error = on_ssl_error,
						   .error_context = u });

	will.topicName = u->topic_health;
	will.message = u->will_doc;
	will.retained = 1;
	will.qos = 1;

	opts.keepAliveInterval = u->cfg.keepalive_s;
	opts.cleansession = 1;
	opts.maxInflight = u->cfg.max_inflight;
	opts.will = &will;
	opts.ssl = &ssl;
	opts.connectTimeout = u->cfg.connect_timeout_s;
	opts.onSuccess = on_connect_ok;
	opts.onFailure = on_connect_failed;
	opts.context = u;
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	opts.automaticReconnect = 0; /* the thread reconnects, with its own backoff */

	u->state = LINK_CONNECTING;
	u->attempt_ms = now;
	u->tls_reason[0] = '\0';
	u->ev_connected = u->ev_connect_failed = false;
	u->diagnosing = true;
	pthread_mutex_unlock(&u->lock);
	diagnose_begin();
	if (u->client == NULL)
		u->client = client_create(u);
	client = u->client;
	rc = client ? MQTTAsync_connect(client, &opts) : MQTTASYNC_FAILURE;
	pthread_mutex_lock(&u->lock);
	if (rc != MQTTASYNC_SUCCESS) {
		u->ev_connect_failed = true;
		u->fail_code = rc;
		snprintf(u->fail_msg, sizeof(u->fail_msg), "%s",
			 client ? MQTTAsync_strerror(rc) : "cannot create the client");
	}
}

/* Drops the Paho client (failing what it still holds) for a fresh one. Releases 'lock'. */
static void client_replace_locked(struct uplink *u)
{
	MQTTAsync old = u->client, fresh;

	pthread_mutex_unlock(&u->lock);
	/* The new client first, so that Paho's threads keep running. */
	fresh = client_create(u);
	if (old != NULL)
		MQTTAsync_destroy(&old);
	u->client = fresh;
	pthread_mutex_lock(&u->lock);
}

/* --- the thread --------------------------------------------------------- */

/* Ends the diagnosis of the last attempt; what Paho's trace told goes to 'out'. */
static void diagnosis_finish(struct uplink *u, char *out, size_t len)
{
	char scratch[8];

	if (out == NULL) {
		out = scratch;
		len = sizeof(scratch);
	}
	out[0] = '\0';
	if (u->diagnosing)
		diagnose_end(out, len);
	u->diagnosing = false;
}

static void handle_connected(struct uplink *u, int64_t now)
{
	struct queue_stats qs;

	diagnosis_finish(u, NULL, 0);
	u->state = LINK_CONNECTED;
	u->connects++;
	u->failures = 0;
	u->health_dirty = true; /* every connection starts with the current health */
	u->subscribe_pending = u->cmd_fn != NULL; /* a clean session forgets subscriptions */
	u->extra_pending = u->extra_fn != NULL;
	u->pump_paused_until_ms = 0;
	queue_requeue(u->queue);
	queue_get_stats(u->queue, &qs);
	u->backlog_pending = qs.msgs > 0;
	u->backlog_last_seq = qs.last;
	u->backlog_msgs = qs.msgs;
	u->backlog_start_ms = now;
	if (qs.msgs > 0)
		log_info(SUBSYS,
			 "connected to %s as %s in %lld ms; sending a backlog of %zu messages "
			 "(%zu bytes)",
			 u->uri, u->client_id, (long long)(now - u->attempt_ms), qs.msgs, qs.bytes);
	else
		log_info(SUBSYS, "connected to %s as %s in %lld ms", u->uri, u->client_id,
			 (long long)(now - u->attempt_ms));
}

static void schedule_retry(struct uplink *u, int64_t now, int64_t *delay)
{
	*delay = backoff_ms(u);
	u->next_attempt_ms = now + *delay;
	u->state = LINK_WAITING;
}

/*
 * Logs one line: the broker, Paho's code and message, and the best reason we
 * have: OpenSSL's, Paho's trace, or else a plain TCP probe. Releases and
 * retakes 'lock' around the probe.
 */
static void handle_connect_failed(struct uplink *u, int64_t now)
{
	const char *text = connack_text(u->fail_code);
	char trace[256], why[448], line[640];
	int code = u->fail_code;
	int64_t delay;

	diagnosis_finish(u, trace, sizeof(trace));
	if (text == NULL)
		text = u->fail_msg[0] ? u->fail_msg : MQTTAsync_strerror(code);
	if (snprintf(line, sizeof(line), "connect to %s failed: %s (code %d)", u->uri, text, code) <
	    0)
		line[0] = '\0';
	if (u->tls_reason[0] != '\0' || trace[0] != '\0') {
		if (snprintf(why, sizeof(why), "TLS: %s%s%s", u->tls_reason,
			     u->tls_reason[0] && trace[0] ? "; " : "", trace) < 0)
			why[0] = '\0';
	} else if (strstr(u->fail_msg, "timeout") != NULL) {
		snprintf(why, sizeof(why), "no answer to the TLS or MQTT handshake in %d s",
			 u->cfg.connect_timeout_s);
	} else if (code == MQTTASYNC_FAILURE) {
		pthread_mutex_unlock(&u->lock);
		if (diagnose_tcp(u->cfg.host, u->cfg.port, 1000, why, sizeof(why)) == 0)
			snprintf(why, sizeof(why),
				 "TCP connects; the TLS session failed for a reason "
				 "Paho does not report");
		pthread_mutex_lock(&u->lock);
	} else {
		why[0] = '\0';
	}
	u->connect_failures++;
	u->failures++;
	schedule_retry(u, now, &delay);
	if (why[0] != '\0') {
		size_t used = strlen(line);

		snprintf(line + used, sizeof(line) - used, "; %s", why);
	}
	/* the start; the log has all */
	snprintf(u->last_error, sizeof(u->last_error), "%.*s", (int)sizeof(u->last_error) - 1,
		 line);
	log_warnx(SUBSYS, "%s; attempt %d, next in %lld ms", line, u->failures, (long long)delay);
}

/* Releases and retakes 'lock'. */
static void handle_lost(struct uplink *u, int64_t now)
{
	struct queue_stats qs;
	char line[256];
	int64_t delay;

	if (u->state != LINK_CONNECTED)
		return;
	queue_get_stats(u->queue, &qs);
	u->failures = 1;
	schedule_retry(u, now, &delay);
	if (snprintf(line, sizeof(line), "connection to %s lost: %s", u->uri, u->fail_msg) < 0)
		line[0] = '\0';
	snprintf(u->last_error, sizeof(u->last_error), "%.*s", (int)sizeof(u->last_error) - 1,
		 line);
	log_warnx(SUBSYS, "%s; %zu messages in flight will be resent; reconnecting in %lld ms",
		  line, qs.inflight, (long long)delay);
	client_replace_locked(u);
	queue_requeue(u->queue);
	u->ev_send_failed = false;
}

/* Stops an attempt Paho never answered (it should time out by itself). Releases 'lock'. */
static void handle_hung_attempt(struct uplink *u, int64_t now)
{
	int64_t delay;

	diagnosis_finish(u, NULL, 0);
	u->connect_failures++;
	u->failures++;
	schedule_retry(u, now, &delay);
	snprintf(u->last_error, sizeof(u->last_error), "connect to %s failed: no answer in %d s",
		 u->uri, u->cfg.connect_timeout_s);
	log_warnx(SUBSYS, "%s; attempt %d, next in %lld ms", u->last_error, u->failures,
		  (long long)delay);
	client_replace_locked(u);
	u->ev_connected = u->ev_connect_failed = false;
}

/*
 * Subscribes to 'topic' (QoS 1); '*pending' is set again if Paho refuses, for the next pass.
 * Called with 'lock' held; releases it around Paho.
 */
static void subscribe_topic_locked(struct uplink *u, const char *topic, bool *pending,
				   MQTTAsync_onSuccess *on_ok, MQTTAsync_onFailure *on_fail)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	MQTTAsync client = u->client;
	int rc;

	opts.onFailure = on_fail;
	opts.onSuccess = on_ok;
	opts.context = u;
	*pending = false;
	pthread_mutex_unlock(&u->lock);
	rc = MQTTAsync_subscribe(client, topic, 1, &opts);
	pthread_mutex_lock(&u->lock);
	if (rc != MQTTASYNC_SUCCESS) {
		*pending = true;
		u->pump_paused_until_ms = gd_mono_ms() + PUMP_RETRY_MS;
	}
}

/* The command topic. */
static void subscribe_locked(struct uplink *u)
{
	subscribe_topic_locked(u, u->topic_cmd, &u->subscribe_pending, on_subscribed,
			       on_subscribe_failed);
}

/* The extra topic (uplink_subscribe_extra). */
static void subscribe_extra_locked(struct uplink *u)
{
	subscribe_topic_locked(u, u->topic_extra, &u->extra_pending, on_extra_subscribed,
			       on_extra_subscribe_failed);
}

/* Hands the outbox to Paho, oldest first. Called with 'lock' held. */
static void publish_events_locked(struct uplink *u)
{
	while (u->events != NULL && u->state == LINK_CONNECTED) {
		struct event *e = u->events;

		u->events = e->next;
		if (u->events == NULL)
			u->events_tail = NULL;
		u->nevents--;
		if (publish_acked_locked(u, e->topic, e->payload, e->len, false, EVENT_SEQ, 0, e) !=
		    MQTTASYNC_SUCCESS) {
			/* Put it back at the head and try again later. */
			e->next = u->events;
			u->events = e;
			if (u->events_tail == NULL)
				u->events_tail = e;
			u->nevents++;
			u->pump_paused_until_ms = gd_mono_ms() + PUMP_RETRY_MS;
			return;
		}
		free(e->topic);
		free(e);
	}
}

static void publish_health_locked(struct uplink *u)
{
	char *doc = u->health ? strdup(u->health) : NULL;
	int rc;

	if (doc == NULL)
		doc = dup_printf("{\"device\":\"%s\",\"state\":\"online\"}", u->device_id);
	if (doc == NULL)
		return; /* out of memory: tried again on the next pass */
	u->health_dirty = false;
	rc = publish_locked(u, u->topic_health, doc, strlen(doc), true, 0, 0);
	free(doc);
	if (rc != MQTTASYNC_SUCCESS) {
		u->health_dirty = true;
		u->pump_paused_until_ms = gd_mono_ms() + PUMP_RETRY_MS;
	}
}

/* Hands queued messages to Paho, in order, while there is room in flight. */
static void pump_locked(struct uplink *u)
{
	struct queue_item item;

	while (u->state == LINK_CONNECTED && !u->ev_lost && !u->stop_thread &&
	       queue_take(u->queue, (size_t)u->cfg.max_inflight, &item)) {
		int rc = publish_locked(u, u->topic_telemetry, item.data, item.len, false, item.seq,
					item.sends);

		queue_release(u->queue, item.seq);
		if (rc != MQTTASYNC_SUCCESS) {
			/*
			 * Usually the connection just went and the lost event
			 * follows; either way the resend starts from the head.
			 */
			log_debug(SUBSYS, "publish of message %llu refused: %s",
				  (unsigned long long)item.seq, MQTTAsync_strerror(rc));
			u->ev_send_failed = true;
			u->pump_paused_until_ms = gd_mono_ms() + PUMP_RETRY_MS;
			break;
		}
	}
}

static void log_queue_events(struct uplink *u, int64_t now, const struct queue_stats *qs)
{
	/* A window in front of the spool counts no refusals: what is lost is counted here. */
	uint64_t n = qs->dropped + __atomic_load_n(&u->lost, __ATOMIC_RELAXED);

	if (n > u->drops_logged && now - u->drop_log_ms >= DROP_LOG_INTERVAL_MS) {
		if (u->spool != NULL)
			log_warnx(SUBSYS,
				  "the spool could not write %llu messages and memory was "
				  "full: lost (%llu in total; see spool.last_error)",
				  (unsigned long long)(n - u->drops_logged), (unsigned long long)n);
		else
			log_warnx(
				SUBSYS,
				"queue full (%lld bytes): dropped %llu %s messages (%llu in total)",
				u->cfg.queue_max_bytes, (unsigned long long)(n - u->drops_logged),
				u->cfg.queue_drop == QUEUE_DROP_NEWEST ? "new" : "old",
				(unsigned long long)n);
		u->drops_logged = n;
		u->drop_log_ms = now;
	}
	if (u->backlog_pending && u->state == LINK_CONNECTED &&
	    (qs->oldest == 0 || qs->oldest > u->backlog_last_seq)) {
		log_info(SUBSYS, "backlog delivered: %zu messages in %lld ms", u->backlog_msgs,
			 (long long)(now - u->backlog_start_ms));
		u->backlog_pending = false;
	}
}

#define REFILL_BATCH 256 /* records loaded from the spool per pass, between looks at the link */

/*
 * Loads the next records from the spool into the queue's free half, and tells the spool what the
 * broker has acknowledged: everything before the oldest message the queue still holds. Runs on
 * the uplink thread without 'lock' (it reads and writes files).
 */
static void spool_work(struct uplink *u)
{
	struct queue_stats qs;
	uint64_t acked;

	if (u->spool == NULL)
		return;
	/*
	 * Reads without feed_lock (a compressed segment is read and decompressed whole): while
	 * 'behind' is set only this thread puts messages into the queue and moves 'loaded', and
	 * only this thread clears it. feed_lock is taken to push, and to decide "caught up" (so a
	 * producer's append cannot slip between the last read and the clearing).
	 */
	for (int n = 0; n < REFILL_BATCH; n++) {
		void *data = NULL;
		size_t len = 0;
		uint64_t seq = 0, after;
		int r;

		queue_get_stats(u->queue, &qs);
		if (!__atomic_load_n(&u->behind, __ATOMIC_ACQUIRE) ||
		    qs.bytes > (size_t)u->cfg.queue_max_bytes / 2)
			break;
		pthread_mutex_lock(&u->feed_lock);
		after = u->loaded;
		pthread_mutex_unlock(&u->feed_lock);
		r = spool_next(u->spool, after, &data, &len, &seq);
		pthread_mutex_lock(&u->feed_lock);
		if (r == 0) {
			r = spool_next(u->spool, after, &data, &len, &seq);
			if (r == 0) /* caught up */
				__atomic_store_n(&u->behind, false, __ATOMIC_RELEASE);
		}
		if (r > 0 && queue_push_seq(u->queue, seq, data, len, NULL) == 0)
			u->loaded = seq;
		else if (r > 0)
			r = 0; /* no room after all: next pass */
		pthread_mutex_unlock(&u->feed_lock);
		free(data);
		if (r <= 0)
			break;
	}
	pthread_mutex_lock(&u->feed_lock);
	queue_get_stats(u->queue, &qs);
	acked = qs.oldest != 0 ? qs.oldest - 1 : u->loaded;
	pthread_mutex_unlock(&u->feed_lock);
	if (acked > u->spool_acked) {
		spool_ack(u->spool, acked);
		u->spool_acked = acked;
	}
}

static void *uplink_main(void *arg)
{
	struct uplink *u = arg;
	struct queue_stats qs_last;

	pthread_mutex_lock(&u->lock);
	while (!u->stop_thread) {
		int64_t now = gd_mono_ms(), deadline = now + TICK_MS;
		struct queue_stats qs;

		u->kick = false;
		if (u->spool != NULL) {
			pthread_mutex_unlock(&u->lock);
			spool_work(u);
			pthread_mutex_lock(&u->lock);
		}
		if (u->ev_connected) {
			u->ev_connected = false;
			handle_connected(u, now);
		}
		if (u->ev_connect_failed) {
			u->ev_connect_failed = false;
			handle_connect_failed(u, now);
		}
		if (u->ev_lost) {
			u->ev_lost = false;
			handle_lost(u, now);
			continue;
		}
		if (u->ev_send_failed) {
			u->ev_send_failed = false;
			if (u->state == LINK_CONNECTED)
				queue_requeue(u->queue);
		}
		if (u->state == LINK_WAITING && !u->held && now >= u->next_attempt_ms) {
			connect_start(u, now);
			continue;
		}
		if (u->state == LINK_CONNECTING &&
		    now - u->attempt_ms > u->cfg.connect_timeout_s * 1000LL + 10000) {
			handle_hung_attempt(u, now);
			continue;
		}
		if (u->state == LINK_CONNECTED && now >= u->pump_paused_until_ms) {
			if (u->health_dirty)
				publish_health_locked(u);
			if (u->subscribe_pending)
				subscribe_locked(u);
			if (u->extra_pending && u->state == LINK_CONNECTED)
				subscribe_extra_locked(u);
			if (u->events != NULL)
				publish_events_locked(u);
			pump_locked(u);
		}
		queue_get_stats(u->queue, &qs);
		log_queue_events(u, now, &qs);
		if (u->kick || u->stop_thread)
			continue;
		if (u->state == LINK_WAITING && u->next_attempt_ms < deadline)
			deadline = u->next_attempt_ms;
		if (u->state == LINK_CONNECTED && u->pump_paused_until_ms > now &&
		    u->pump_paused_until_ms < deadline)
			deadline = u->pump_paused_until_ms;
		if (qs.dropped + __atomic_load_n(&u->lost, __ATOMIC_RELAXED) > u->drops_logged &&
		    u->drop_log_ms + DROP_LOG_INTERVAL_MS < deadline)
			deadline = u->drop_log_ms + DROP_LOG_INTERVAL_MS;
		wait_until(u, deadline);
	}
	/* The last word on drops and the backlog, which a stop may have hurried. */
	pthread_mutex_unlock(&u->lock);
	spool_work(u);
	pthread_mutex_lock(&u->lock);
	queue_get_stats(u->queue, &qs_last);
	u->drop_log_ms = INT64_MIN / 2;
	log_queue_events(u, gd_mono_ms(), &qs_last);
	pthread_mutex_unlock(&u->lock);
	return NULL;
}

/* --- the public interface ----------------------------------------------- */

static int copy_config(struct uplink_config *dst, const struct uplink_config *src)
{
	*dst = *src;
	dst->host = strdup(src->host);
	dst->ca_file = strdup(src->ca_file);
	dst->cert_file = strdup(src->cert_file);
	dst->key_file = strdup(src->key_file);
	dst->client_id = src->client_id ? strdup(src->client_id) : NULL;
	dst->spool.dir = src->spool.dir ? strdup(src->spool.dir) : NULL;
	if (dst->host == NULL || dst->ca_file == NULL || dst->cert_file == NULL ||
	    dst->key_file == NULL || (src->client_id != NULL && dst->client_id == NULL) ||
	    (src->spool.dir != NULL && dst->spool.dir == NULL))
		return GD_ENOMEM;
	return 0;
}

struct uplink *uplink_new(const struct uplink_config *cfg, const char *device_id)
{
	struct uplink *u;
	pthread_condattr_t attr;

	if (cfg == NULL || device_id == NULL || !conf_valid_name(device_id) || cfg->host == NULL ||
	    cfg->ca_file == NULL || cfg->cert_file == NULL || cfg->key_file == NULL ||
	    cfg->max_inflight < 1 || cfg->queue_max_bytes < 1 || cfg->reconnect_min_ms < 1 ||
	    cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
		errno = EINVAL;
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return NULL;
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_init(&u->feed_lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&u->cond, &attr);
	pthread_condattr_destroy(&attr);
	u->drop_log_ms = INT64_MIN / 2;
	u->rng = (uint32_t)gd_now_ms() ^ (uint32_t)(uintptr_t)u ^ 0x9e3779b9u;
	if (u->rng == 0)
		u->rng = 1;
	if (copy_config(&u->cfg, cfg) != 0)
		goto fail;
	u->device_id = strdup(device_id);
	u->client_id = u->cfg.client_id ? u->cfg.client_id : u->device_id;
	u->uri = strchr(cfg->host, ':') ? dup_printf("ssl://[%s]:%d", cfg->host, cfg->port)
					: dup_printf("ssl://%s:%d", cfg->host, cfg->port);
	u->topic_telemetry = dup_printf("guardian/%s/telemetry", device_id);
	u->topic_health = dup_printf("guardian/%s/health", device_id);
	u->topic_cmd = dup_printf("guardian/%s/cmd", device_id);
	u->topic_prefix = dup_printf("guardian/%s/", device_id);
	u->will_doc = dup_printf(
		"{\"device\":\"%s\",\"state\":\"offline\",\"reason\":\"connection lost\"}",
		device_id);
	/* With a spool the queue is the window being sent: full means "load later", never a drop.
	 */
	u->queue = queue_new((size_t)cfg->queue_max_bytes,
			     cfg->spool.enabled ? QUEUE_WINDOW : (enum queue_drop)cfg->queue_drop,
			     queue_wake, u);
	if (cfg->spool.enabled && cfg->spool.dir != NULL) {
		char why[300];

		u->spool = spool_open(&cfg->spool, NULL, why, sizeof(why));
		if (u->spool == NULL) {
			log_warnx(SUBSYS, "%s", why);
			goto fail;
		}
		u->loaded = spool_last_seq(u->spool);
		u->spool_acked = u->loaded;
		{
			struct spool_stats ss;

			spool_get_stats(u->spool, &ss);
			if (ss.records > 0) {
				u->behind = true;
				u->loaded = ss.acked_seq;
				u->spool_acked = ss.acked_seq;
				log_info(SUBSYS,
					 "spool %s: %llu messages from before (seq %llu to "
					 "%llu) to send first",
					 cfg->spool.dir, (unsigned long long)ss.records,
					 (unsigned long long)ss.acked_seq + 1,
					 (unsigned long long)ss.last_seq);
			}
		}
	}
	if (u->device_id == NULL || u->uri == NULL || u->topic_telemetry == NULL ||
	    u->topic_health == NULL || u->topic_cmd == NULL || u->topic_prefix == NULL ||
	    u->will_doc == NULL || u->queue == NULL)
		goto fail;
	/* Created now so that bad parameters show at once. */
	u->client = client_create(u);
	if (u->client == NULL)
		goto fail;
	return u;
fail:
	uplink_free(u);
	return NULL;
}

int uplink_start(struct uplink *u)
{
	int rc = 0;

	if (u->ops != NULL)
		return u->ops->start(u->impl);
	pthread_mutex_lock(&u->lock);
	if (u->state != LINK_IDLE) {
		rc = GD_EINVAL;
		goto out;
	}
	u->state = LINK_WAITING;
	u->next_attempt_ms = gd_mono_ms();
	rc = pthread_create(&u->thread, NULL, uplink_main, u);
	if (rc != 0) {
		errno = rc;
		u->state = LINK_IDLE;
		rc = GD_EIO;
		goto out;
	}
	u->thread_running = true;
out:
	pthread_mutex_unlock(&u->lock);
	return rc;
}

void uplink_set_command_handler(struct uplink *u, uplink_command_fn *fn, void *ctx)
{
	if (u->ops != NULL) {
		u->ops->set_command_handler(u->impl, fn, ctx);
		return;
	}
	pthread_mutex_lock(&u->lock);
	u->cmd_fn = fn;
	u->cmd_ctx = ctx;
	pthread_mutex_unlock(&u->lock);
}

int uplink_subscribe_extra(struct uplink *u, const char *subtopic, uplink_command_fn *fn, void *ctx)
{
	char *topic;
	int rc = 0;

	if (u->ops != NULL)
		return u->ops->subscribe_extra(u->impl, subtopic, fn, ctx);
	if (subtopic[0] == '\0' || strpbrk(subtopic, "+#") != NULL)
		return GD_EINVAL;
	topic = dup_printf("guardian/%s/%s", u->device_id, subtopic);
	if (topic == NULL)
		return GD_ENOMEM;
	pthread_mutex_lock(&u->lock);
	if (u->topic_extra != NULL) {
		rc = GD_EINVAL;
	} else {
		u->topic_extra = topic;
		u->extra_fn = fn;
		u->extra_ctx = ctx;
		topic = NULL;
	}
	pthread_mutex_unlock(&u->lock);
	free(topic);
	return rc;
}

int uplink_publish_event(struct uplink *u, const char *subtopic, const char *payload, size_t len)
{
	return uplink_publish_event_acked(u, subtopic, payload, len, NULL, NULL, 0);
}

int uplink_publish_event_acked(struct uplink *u, const char *subtopic, const char *payload,
			       size_t len, uplink_ack_fn *fn, void *ctx, uint64_t id)
{
	struct event *e;
	uplink_ack_fn *dropped_fn = NULL;
	void *dropped_ctx = NULL;
	uint64_t dropped_id = 0;
	int rc = 0;

	if (u->ops != NULL)
		return u->ops->publish_event_acked(u->impl, subtopic, payload, len, fn, ctx, id);
	e = malloc(sizeof(*e) + len);
	if (e == NULL)
		return GD_ENOMEM;
	e->next = NULL;
	e->ack_fn = fn;
	e->ack_ctx = ctx;
	e->ack_id = id;
	e->len = len;
	memcpy(e->payload, payload, len);
	e->topic = dup_printf("%s%s", u->topic_prefix, subtopic);
	if (e->topic == NULL) {
		free(e);
		return GD_ENOMEM;
	}
	pthread_mutex_lock(&u->lock);
	if (u->nevents == MAX_EVENTS) {
		struct event *old = u->events;

		u->events = old->next;
		u->nevents--;
		u->events_dropped++;
		dropped_fn = old->ack_fn;
		dropped_ctx = old->ack_ctx;
		dropped_id = old->ack_id;
		free(old->topic);
		free(old);
		rc = GD_EFULL;
	}
	if (u->events_tail != NULL)
		u->events_tail->next = e;
	else
		u->events = e;
	u->events_tail = e;
	u->nevents++;
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
	if (dropped_fn != NULL)
		dropped_fn(dropped_ctx, dropped_id, false);
	return rc;
}

int uplink_send_telemetry(struct uplink *u, uint64_t seq, const char *payload, size_t len)
{
	int rc, spooled;
	bool behind;

	if (u->ops != NULL)
		return u->ops->send_telemetry(u->impl, seq, payload, len);
	if (len > (size_t)u->cfg.max_message_bytes)
		return GD_EINVAL; /* the caller splits batches at max_message_bytes */
	if (u->spool == NULL)
		return queue_push_seq(u->queue, seq, payload, len, NULL);
	pthread_mutex_lock(&u->feed_lock);
	spooled = spool_append(u->spool, seq, payload, len);
	if (spooled == GD_EFULL || spooled == GD_EINVAL) {
		rc = spooled; /* refused by the cap (counted), or out of order */
	} else if (!u->behind) {
		rc = queue_push_seq(u->queue, seq, payload, len, NULL);
		if (rc == 0)
			u->loaded = seq;
		else if (spooled == 0)
			rc = 0, __atomic_store_n(&u->behind, true, __ATOMIC_RELEASE);
		else
			rc = GD_EIO; /* neither disk nor memory took it */
	} else {
		rc = spooled; /* on disk, loaded when the queue has room; or lost to a write error
			       */
	}
	if (rc == GD_EIO)
		__atomic_add_fetch(&u->lost, 1, __ATOMIC_RELAXED);
	behind = u->behind;
	pthread_mutex_unlock(&u->feed_lock);
	if (behind)
		queue_wake(u);
	return rc;
}

uint64_t uplink_last_seq(struct uplink *u)
{
	if (u->ops != NULL)
		return u->ops->last_seq(u->impl);
	return u->spool != NULL ? spool_last_seq(u->spool) : 0;
}

void uplink_set_health(struct uplink *u, const char *json, size_t len)
{
	char *copy;

	if (u->ops != NULL) {
		u->ops->set_health(u->impl, json, len);
		return;
	}
	copy = malloc(len + 1);
	if (copy == NULL) {
		log_warnx(SUBSYS, "out of memory for the health document");
		return;
	}
	memcpy(copy, json, len);
	copy[len] = '\0';
	pthread_mutex_lock(&u->lock);
	free(u->health);
	u->health = copy;
	u->health_dirty = true;
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
}

void uplink_get_stats(struct uplink *u, struct uplink_stats *out)
{
	struct queue_stats qs;

	if (u->ops != NULL) {
		u->ops->get_stats(u->impl, out);
		return;
	}
	pthread_mutex_lock(&u->lock);
	queue_get_stats(u->queue, &qs);
	*out = (struct uplink_stats){
		.connected = u->state == LINK_CONNECTED,
		.connects = u->connects,
		.connect_failures = u->connect_failures,
		.enqueued = qs.enqueued,
		.published = u->published,
		.dropped = qs.dropped + __atomic_load_n(&u->lost, __ATOMIC_RELAXED),
		.queued_msgs = qs.msgs,
		.queued_bytes = qs.bytes,
		.last_publish_ms = u->last_publish_ms,
	};
	snprintf(out->last_error, sizeof(out->last_error), "%s", u->last_error);
	pthread_mutex_unlock(&u->lock);
	if (u->spool != NULL) {
		out->spooled = true;
		spool_get_stats(u->spool, &out->spool);
	}
}

/* Waits (with 'lock' held) until 'done' says so or 'deadline_ms' passes. */
static bool wait_for(struct uplink *u, bool (*done)(struct uplink *u, uint64_t arg), uint64_t arg,
		     int64_t deadline_ms)
{
	while (!done(u, arg)) {
		if (gd_mono_ms() >= deadline_ms)
			return false;
		wait_until(u, deadline_ms);
	}
	return true;
}

/* Drained, or nothing will drain it: waiting while disconnected only delays the stop. */
static bool queue_drained(struct uplink *u, uint64_t arg)
{
	struct queue_stats qs;

	(void)arg;
	queue_get_stats(u->queue, &qs);
	/* Not feed_lock: it is taken before 'lock', never after. */
	return (qs.msgs == 0 && !__atomic_load_n(&u->behind, __ATOMIC_ACQUIRE)) ||
	       u->state != LINK_CONNECTED;
}

static bool attempt_over(struct uplink *u, uint64_t arg)
{
	(void)arg;
	return u->ev_connected || u->ev_connect_failed;
}

static bool health_acked(struct uplink *u, uint64_t acks_before)
{
	return u->health_acks > acks_before;
}

static bool disconnect_over(struct uplink *u, uint64_t arg)
{
	(void)arg;
	return u->disconnect_done;
}

void uplink_stop(struct uplink *u, int timeout_ms)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
	struct queue_stats qs;
	char *doc = NULL;
	int rc;

	if (u->ops != NULL) {
		u->ops->stop(u->impl, timeout_ms);
		return;
	}
	pthread_mutex_lock(&u->lock);
	if (!u->thread_running) {
		pthread_mutex_unlock(&u->lock);
		return;
	}
	wait_for(u, queue_drained, 0, gd_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0));
	u->stop_thread = true;
	wake_locked(u);
	pthread_mutex_unlock(&u->lock);
	pthread_join(u->thread, NULL);
	u->thread_running = false;

	/* The thread has ended: Paho is ours alone now. */
	pthread_mutex_lock(&u->lock);
	queue_get_stats(u->queue, &qs);
	if (u->spool != NULL) {
		struct spool_stats ss;

		spool_get_stats(u->spool, &ss);
		if (ss.records > 0)
			log_info(SUBSYS,
				 "stopping with %llu messages in the spool, sent at the next "
				 "start",
				 (unsigned long long)ss.records);
	} else if (qs.msgs > 0) {
		log_warnx(SUBSYS, "stopping with %zu messages (%zu bytes) not delivered", qs.msgs,
			  qs.bytes);
	}
	if (u->state == LINK_CONNECTING) {
		/*
		 * An attempt that succeeds after the stop would leave "online"
		 * behind: give it a moment to end, else cancel it.
		 */
		int64_t end = u->attempt_ms + u->cfg.connect_timeout_s * 1000LL;

		if (end > gd_mono_ms() + STOP_STEP_MS)
			end = gd_mono_ms() + STOP_STEP_MS;
		wait_for(u, attempt_over, 0, end);
		if (u->ev_connected) {
			u->state = LINK_CONNECTED;
		} else if (!u->ev_connect_failed) {
			MQTTAsync client = u->client;

			u->client = NULL;
			pthread_mutex_unlock(&u->lock);
			MQTTAsync_destroy(&client);
			pthread_mutex_lock(&u->lock);
		}
	}
	diagnosis_finish(u, NULL, 0);
	if (u->state == LINK_CONNECTED && !u->ev_lost) {
		uint64_t acks = u->health_acks;

		doc = dup_printf("{\"device\":\"%s\",\"state\":\"offline\",\"reason\":\"stopped\"}",
				 u->device_id);
		if (doc != NULL &&
		    publish_locked(u, u->topic_health, doc, strlen(doc), true, 0, 0) == 0 &&
		    !wait_for(u, health_acked, acks, gd_mono_ms() + STOP_STEP_MS))
			log_warnx(SUBSYS,
				  "the broker did not acknowledge the offline health in %d ms",
				  STOP_STEP_MS);
		opts.timeout = 1000;
		opts.onSuccess = on_disconnected;
		opts.onFailure = on_disconnect_failed;
		opts.context = u;
		u->disconnect_done = false;
		pthread_mutex_unlock(&u->lock);
		rc = MQTTAsync_disconnect(u->client, &opts);
		pthread_mutex_lock(&u->lock);
		if (rc == MQTTASYNC_SUCCESS)
			wait_for(u, disconnect_over, 0, gd_mono_ms() + STOP_STEP_MS);
		log_info(SUBSYS, "disconnected from %s", u->uri);
	}
	u->state = LINK_STOPPED;
	pthread_mutex_unlock(&u->lock);
	free(doc);
}

void uplink_free(struct uplink *u)
{
	if (u == NULL)
		return;
	if (u->ops != NULL) {
		u->ops->free(u->impl);
		free(u);
		return;
	}
	if (u->thread_running)
		uplink_stop(u, 0);
	if (u->client != NULL)
		MQTTAsync_destroy(&u->client); /* fails, and so frees, what it still held */
	while (u->sends != NULL)
		forget_send(u, u->sends);
	queue_free(u->queue);
	spool_close(u->spool);
	pthread_mutex_destroy(&u->feed_lock);
	free(u->health);
	free(u->will_doc);
	while (u->events != NULL) {
		struct event *e = u->events;

		u->events = e->next;
		free(e->topic);
		free(e);
	}
	free(u->topic_health);
	free(u->topic_cmd);
	free(u->topic_extra);
	free(u->topic_prefix);
	free(u->topic_telemetry);
	free(u->uri);
	free(u->device_id);
	uplink_config_release(&u->cfg);
	pthread_cond_destroy(&u->cond);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

int uplink_use_credentials(struct uplink *u, const char *key_pem, const char *cert_pem)
{
	if (u->ops != NULL)
		return u->ops->use_credentials(u->impl, key_pem, cert_pem);
	return 0; /* read from cert_file and key_file at the next connection */
}

struct uplink *uplink_new_with(const struct uplink_ops *ops, void *impl)
{
	struct uplink *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NULL;
	u->ops = ops;
	u->impl = impl;
	return u;
}

void *uplink_impl(struct uplink *u, const struct uplink_ops *ops)
{
	return u->ops == ops ? u->impl : NULL;
}
