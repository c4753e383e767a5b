/* attest.c: attestation rounds over MQTT (service/PROTOCOL.md): hello, nonce, evidence, result on
 * the attestation listener; the uplink held until a certificate comes, renewed at two thirds of its
 * lifetime, on request, and after a failure with backoff. */
#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/json.h"
#include "../proto/evidence.h"
#include "../proto/mqtt_tls.h"
#include "diagnose.h"
#include "uplink.h"

#define SUBSYS "attest"

struct conv;

struct uplink_attest {
	struct uplink_attest_config cfg;
	struct uplink *uplink;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	bool stop, trigger;
	/* for health and the console, under 'lock' */
	int64_t not_after_ms; /* UTC; 0: no certificate */
	char state[16];	      /* "attesting", "attested", "refused", "expired" */
	char last_reason[32];
	char last_detail[256];
	uint64_t rounds, refusals;
	char register_hex[65]; /* written by the rounds' thread only */
	struct conv *conv;     /* the attestation listener, kept between rounds (rounds' thread) */
};

/* ---- one MQTT conversation with the service ----------------------------------------------- */

/*
 * A question to the service, and how it goes again while unanswered: one sent while no service
 * instance listened (reconnecting, or starting) is lost, not kept. The wait before each copy
 * doubles from repeat_min_ms to repeat_max_ms (gd_backoff_ms; 0: the timeout).
 */
struct conv_question {
	const char *what;   /* the last level of its topic: "hello" */
	const char *answer; /* the last level of the answer's topic: "nonce" */
	int repeat_min_ms, repeat_max_ms;
};

/* A hello costs the service a nonce: a service back from a reconnect hears one within 2 s. */
static const struct conv_question conv_hello = {
	.what = "hello", .answer = "nonce", .repeat_min_ms = 250, .repeat_max_ms = 2000
};
/* An evidence costs it a signature check, and is checked again for every copy. */
static const struct conv_question conv_evidence = {
	.what = "evidence", .answer = "result", .repeat_min_ms = 1000, .repeat_max_ms = 0
};

struct conv {
	MQTTAsync client;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
	bool lost;	    /* the connection to the listener went (or never came) */
	int copies;	    /* of the question being asked */
	char fail_msg[160]; /* Paho's words for the last failure */
	char topic_nonce[160], topic_result[160];
	char *nonce, *result; /* payloads that arrived, malloc'd */
};

static void cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

/* A monotonic time in ms as the deadline of pthread_cond_timedwait. */
static struct timespec mono_ts(int64_t ms)
{
	return (struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
}

static void conv_signal(struct conv *cv, int rc)
{
	pthread_mutex_lock(&cv->lock);
	cv->done = true;
	cv->rc = rc;
	pthread_cond_broadcast(&cv->cond);
	pthread_mutex_unlock(&cv->lock);
}

static void on_ok(void *ctx, MQTTAsync_successData *resp)
{
	(void)resp;
	conv_signal(ctx, 0);
}

static void on_fail(void *ctx, MQTTAsync_failureData *resp)
{
	struct conv *cv = ctx;

	pthread_mutex_lock(&cv->lock);
	snprintf(cv->fail_msg, sizeof(cv->fail_msg), "%s",
		 resp != NULL && resp->message != NULL ? resp->message : "no reason given");
	pthread_mutex_unlock(&cv->lock);
	conv_signal(ctx, resp != NULL && resp->code != 0 ? resp->code : -1);
}

static void on_lost(void *ctx, char *cause)
{
	struct conv *cv = ctx;

	pthread_mutex_lock(&cv->lock);
	cv->lost = true;
	snprintf(cv->fail_msg, sizeof(cv->fail_msg), "%s",
		 cause != NULL ? cause : "the broker closed the connection or the network failed");
	pthread_cond_broadcast(&cv->cond);
	pthread_mutex_unlock(&cv->lock);
}

/*
 * An evidence sent more than once is answered with what the service decided, once, and with
 * "replayed_nonce" for every further copy, its nonce being used by then: not an answer to wait
 * for. Called with 'lock' held.
 */
static bool conv_is_echo(const struct conv *cv, const char *payload, size_t len)
{
	struct attest_result r;
	bool echo;

	if (cv->copies < 2 || attest_result_parse(payload, len, &r) != 0)
		return false;
	echo = !r.ok && strcmp(r.reason, "replayed_nonce") == 0;
	attest_result_free(&r);
	return echo;
}

static int on_message(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
	struct conv *cv = ctx;
	char **slot = NULL;

	(void)tlen;
	if (strcmp(topic, cv->topic_nonce) == 0)
		slot = &cv->nonce;
	else if (strcmp(topic, cv->topic_result) == 0)
		slot = &cv->result;
	pthread_mutex_lock(&cv->lock);
	/* The first answer counts; those to further copies of the question come too late. */
	if (slot != NULL && *slot == NULL &&
	    !(slot == &cv->result && conv_is_echo(cv, m->payload, (size_t)m->payloadlen))) {
		*slot = strndup(m->payload, (size_t)m->payloadlen);
		pthread_cond_broadcast(&cv->cond);
	}
	pthread_mutex_unlock(&cv->lock);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* Waits for the pending operation; 0, its failure code, GD_EIO when the connection went, or
 * GD_ETIMEDOUT. */
static int conv_wait(struct conv *cv, int ms)
{
	struct timespec ts = mono_ts(gd_mono_ms() + ms);
	int rc;

	pthread_mutex_lock(&cv->lock);
	while (!cv->done && !cv->lost &&
	       pthread_cond_timedwait(&cv->cond, &cv->lock, &ts) != ETIMEDOUT)
		;
	rc = cv->done ? cv->rc : cv->lost ? GD_EIO : GD_ETIMEDOUT;
	cv->done = false;
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/*
 * Waits until *slot holds a message, the connection is lost, or the monotonic clock reads
 * 'deadline_ms'. Returns the message (owned by the caller) or NULL.
 */
static char *conv_take(struct conv *cv, char **slot, int64_t deadline_ms)
{
	struct timespec ts = mono_ts(deadline_ms);
	char *msg;

	pthread_mutex_lock(&cv->lock);
	while (*slot == NULL && !cv->lost &&
	       pthread_cond_timedwait(&cv->cond, &cv->lock, &ts) != ETIMEDOUT)
		;
	msg = *slot;
	*slot = NULL;
	pthread_mutex_unlock(&cv->lock);
	return msg;
}

static int64_t earlier(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static bool conv_lost(struct conv *cv)
{
	bool lost;

	pthread_mutex_lock(&cv->lock);
	lost = cv->lost;
	pthread_mutex_unlock(&cv->lock);
	return lost;
}

/*
 * Hands one QoS 1 message to Paho, which copies it. No wait for the broker's acknowledgement:
 * the service's answer is the one that counts. A refusal marks the connection lost.
 */
static int conv_send(struct conv *cv, const char *topic, const char *payload)
{
	MQTTAsync_message m = MQTTAsync_message_initializer;

	m.payload = (void *)(uintptr_t)payload;
	m.payloadlen = (int)strlen(payload);
	m.qos = 1;
	if (MQTTAsync_sendMessage(cv->client, topic, &m, NULL) == MQTTASYNC_SUCCESS)
		return 0;
	pthread_mutex_lock(&cv->lock);
	cv->lost = true;
	pthread_mutex_unlock(&cv->lock);
	return GD_EIO;
}

/*
 * Connects to the attestation listener with the identity certificate, and subscribes; waits up
 * to 'wait_ms' for each. On failure the connection counts as lost (conv_lost).
 */
static int conv_open(struct conv *cv, const struct uplink_attest_config *at, int wait_ms, char *why,
		     size_t cap)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char uri[300], id[96], scratch[8];
	char *topics[2] = { cv->topic_nonce, cv->topic_result };
	int qos[2] = { 1, 1 }, rc = GD_EIO;

	snprintf(uri, sizeof(uri), "ssl://%s:%d", at->host, at->port);
	snprintf(id, sizeof(id), "%s-attest", at->device_id);
	snprintf(cv->topic_nonce, sizeof(cv->topic_nonce), "guardian/%s/attest/nonce",
		 at->device_id);
	snprintf(cv->topic_result, sizeof(cv->topic_result), "guardian/%s/attest/result",
		 at->device_id);
	pthread_mutex_lock(&cv->lock);
	cv->lost = false;
	cv->fail_msg[0] = '\0';
	pthread_mutex_unlock(&cv->lock);
	if (MQTTAsync_create(&cv->client, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
		    MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(cv->client, cv, on_lost, on_message, NULL) !=
		    MQTTASYNC_SUCCESS) {
		snprintf(why, cap, "cannot create an MQTT client for %s", uri);
		goto out;
	}
	mqtt_tls_options(&ssl, &(struct mqtt_tls){ .ca_file = at->ca_file,
						   .cert_file = at->cert_file,
						   .key_file = at->key_file });
	co.ssl = &ssl;
	co.cleansession = 1;
	co.keepAliveInterval = 30;
	co.connectTimeout = (wait_ms + 999) / 1000;
	co.onSuccess = on_ok;
	co.onFailure = on_fail;
	co.context = cv;
	diagnose_begin(); /* and with it TCP_NODELAY on the socket Paho makes */
	rc = MQTTAsync_connect(cv->client, &co);
	if (rc != MQTTASYNC_SUCCESS)
		snprintf(cv->fail_msg, sizeof(cv->fail_msg), "%s", MQTTAsync_strerror(rc));
	else
		rc = conv_wait(cv, wait_ms + 2000);
	diagnose_end(scratch, sizeof(scratch));
	if (rc != 0) {
		snprintf(why, cap, "cannot connect to the attestation listener %s with %s: %s", uri,
			 at->cert_file, cv->fail_msg[0] ? cv->fail_msg : "no answer");
		rc = GD_EIO;
		goto out;
	}
	ro.onSuccess = on_ok;
	ro.onFailure = on_fail;
	ro.context = cv;
	rc = GD_EIO;
	if (MQTTAsync_subscribeMany(cv->client, 2, topics, qos, &ro) != MQTTASYNC_SUCCESS ||
	    conv_wait(cv, wait_ms) != 0) {
		snprintf(why, cap, "cannot subscribe to guardian/%s/attest/# on %s", at->device_id,
			 uri);
		goto out;
	}
	rc = 0;
out:
	if (rc != 0) {
		pthread_mutex_lock(&cv->lock);
		cv->lost = true;
		pthread_mutex_unlock(&cv->lock);
	}
	return rc;
}

/* Disconnects (if connected) and destroys the client; what arrived stays. */
static void conv_drop(struct conv *cv)
{
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;

	if (cv->client == NULL)
		return;
	d.timeout = 1000;
	d.onSuccess = on_ok;
	d.onFailure = on_fail;
	d.context = cv;
	if (MQTTAsync_isConnected(cv->client) &&
	    MQTTAsync_disconnect(cv->client, &d) == MQTTASYNC_SUCCESS)
		conv_wait(cv, 2000);
	MQTTAsync_destroy(&cv->client);
	/* What the old client's last callbacks said is no news for the next one. */
	pthread_mutex_lock(&cv->lock);
	cv->done = false;
	pthread_mutex_unlock(&cv->lock);
}

static void conv_close(struct conv *cv)
{
	conv_drop(cv);
	free(cv->nonce);
	free(cv->result);
}

/*
 * Asks the service question 'q': publishes 'payload' on guardian/<device>/attest/<q->what> and
 * waits for the answer in *slot, at most at->timeout_ms, asking again while there is none
 * (struct conv_question); an answer to any copy counts. A connection to the listener lost
 * meanwhile (the broker restarting) is made again, and the question asked again on it. Returns
 * the answer (the caller frees it), or NULL with the reason in 'why'.
 */
static char *conv_ask(struct conv *cv, const struct uplink_attest_config *at,
		      const struct conv_question *q, const char *payload, char **slot, char *why,
		      size_t cap)
{
	int64_t start = gd_mono_ms(), deadline = start + at->timeout_ms;
	int repeat_max_ms = q->repeat_max_ms > 0 ? q->repeat_max_ms : at->timeout_ms;
	const char *what = q->what, *answer = q->answer;
	char topic[160], reason[160];
	char *msg = NULL;
	int copies = 0;
	bool reconnecting = false;

	snprintf(topic, sizeof(topic), "guardian/%s/attest/%s", at->device_id, what);
	pthread_mutex_lock(&cv->lock);
	cv->copies = 0;
	/* Left from an earlier round (an answer to a further copy): not for this question. */
	free(*slot);
	*slot = NULL;
	pthread_mutex_unlock(&cv->lock);
	why[0] = '\0'; /* from here on: why the connection could not be made again */
	for (int turn = 1; msg == NULL; turn++) {
		int64_t now = gd_mono_ms();
		int wait_ms = gd_backoff_ms(q->repeat_min_ms, repeat_max_ms, turn);

		if (now >= deadline)
			break;
		if (conv_lost(cv)) {
			if (!reconnecting) {
				pthread_mutex_lock(&cv->lock);
				snprintf(reason, sizeof(reason), "%s", cv->fail_msg);
				pthread_mutex_unlock(&cv->lock);
				log_info(SUBSYS,
					 "lost the attestation listener (%s): connecting again",
					 reason);
			}
			reconnecting = true;
			conv_drop(cv);
			if (conv_open(cv, at, (int)(deadline - now), why, cap) != 0) {
				/* The broker may be on its way back. */
				gd_sleep_until_ms(earlier(now + wait_ms, deadline));
				continue;
			}
			reconnecting = false;
			why[0] = '\0';
		}
		if (copies > 0)
			log_info(SUBSYS, "no %s %lld ms after the first %s: %s again (copy %d)",
				 answer, (long long)(gd_mono_ms() - start), what, what, copies + 1);
		if (conv_send(cv, topic, payload) == 0) {
			pthread_mutex_lock(&cv->lock);
			cv->copies = ++copies;
			pthread_mutex_unlock(&cv->lock);
		}
		msg = conv_take(cv, slot, earlier(gd_mono_ms() + wait_ms, deadline));
	}
	if (msg == NULL && why[0] == '\0')
		snprintf(why, cap, "no %s from the attestation service within %d ms (%d %s sent)",
			 answer, at->timeout_ms, copies, what);
	return msg;
}

/* ---- one round ---------------------------------------------------------------------------- */

/* The device's signed evidence for the nonce message 'msg'; NULL with the reason in 'why'. */
static char *evidence_for(struct uplink_attest *ac, const char *msg, char *why, size_t cap)
{
	uint8_t nonce[NONCE_LEN];
	char reg[sizeof(ac->register_hex)];
	int64_t expires;
	char *ev;

	if (attest_nonce_parse(msg, strlen(msg), nonce, &expires) != 0) {
		snprintf(why, cap, "the service's nonce message is malformed");
		return NULL;
	}
	memcpy(reg, ac->register_hex, sizeof(reg)); /* this thread is its only writer */
	ev = ac->cfg.ops->evidence(ac->cfg.ctx, nonce, reg, why, cap);
	pthread_mutex_lock(&ac->lock);
	memcpy(ac->register_hex, reg, sizeof(reg));
	pthread_mutex_unlock(&ac->lock);
	return ev;
}

/*
 * hello -> nonce -> evidence -> result, each question asked again while it goes unanswered
 * (conv_ask). Returns 0 with *res filled (ok or a refusal), or a negative gd_err with 'why'
 * when the round could not be had.
 */
static int converse(struct uplink_attest *ac, struct attest_result *res, char *why, size_t cap,
		    int64_t *exchange_ms)
{
	const struct uplink_attest_config *at = &ac->cfg;
	struct conv *cv = ac->conv;
	char hello[64];
	char *msg = NULL, *ev = NULL;
	int rc;

	/*
	 * The last round's connection, while it is up. A new one costs up to a second with Paho
	 * 1.3 once another client (the uplink) is running: Paho's receive thread, in poll() for
	 * reading with a 1 s timeout, does not see a new socket's connect complete until then.
	 */
	if (cv->client == NULL || conv_lost(cv)) {
		if (cv->client != NULL)
			log_debug(SUBSYS, "the attestation listener went since the last round: "
					  "connecting again");
		conv_drop(cv);
		if ((rc = conv_open(cv, at, at->timeout_ms, why, cap)) != 0)
			goto out;
	}
	snprintf(hello, sizeof(hello), "{\"swversion\":\"%s\"}", at->swversion);
	*exchange_ms = gd_mono_ms();
	rc = GD_ETIMEDOUT;
	msg = conv_ask(cv, at, &conv_hello, hello, &cv->nonce, why, cap);
	if (msg == NULL)
		goto out;
	ev = evidence_for(ac, msg, why, cap);
	free(msg);
	msg = NULL;
	rc = GD_EIO;
	if (ev == NULL)
		goto out;
	rc = GD_ETIMEDOUT;
	msg = conv_ask(cv, at, &conv_evidence, ev, &cv->result, why, cap);
	if (msg == NULL)
		goto out;
	*exchange_ms = gd_mono_ms() - *exchange_ms;
	rc = attest_result_parse(msg, strlen(msg), res);
	if (rc != 0)
		snprintf(why, cap, "the service's result message is malformed");
out:
	free(msg);
	free(ev);
	/* A round without its answer: the next one starts on a fresh connection. */
	if (rc != 0)
		conv_drop(cv);
	return rc;
}

static void set_state(struct uplink_attest *ac, const char *state, const char *reason,
		      const char *detail)
{
	pthread_mutex_lock(&ac->lock);
	snprintf(ac->state, sizeof(ac->state), "%s", state);
	if (reason != NULL) {
		snprintf(ac->last_reason, sizeof(ac->last_reason), "%s", reason);
		snprintf(ac->last_detail, sizeof(ac->last_detail), "%.255s", detail ? detail : "");
	}
	pthread_mutex_unlock(&ac->lock);
}

/* One round; returns the monotonic time of the next one. */
static int64_t round_once(struct uplink_attest *ac, int *failures)
{
	const struct uplink_attest_config *at = &ac->cfg;
	struct attest_result res = { 0 };
	char why[768];
	int64_t now = gd_now_ms(), started = gd_mono_ms(), exchange = 0, retry;
	bool answered = false;
	enum uplink_attest_next next;

	__atomic_add_fetch(&ac->rounds, 1, __ATOMIC_RELAXED);
	set_state(ac, "attesting", NULL, NULL);
	why[0] = '\0';
	if (at->ops->begin(at->ctx, why, sizeof(why)) == 0 &&
	    converse(ac, &res, why, sizeof(why), &exchange) == 0) {
		answered = true;
		if (!res.ok) {
			__atomic_add_fetch(&ac->refusals, 1, __ATOMIC_RELAXED);
			snprintf(why, sizeof(why), "refused: %s: %.400s", res.reason, res.detail);
			set_state(ac, "refused", res.reason, res.detail);
		}
	}
	/* The device knows what the round measured, and so what its answer means. */
	next = at->ops->end(at->ctx, answered ? &res : NULL, why, sizeof(why));
	if (next == UPLINK_ATTEST_KEPT && res.ok) {
		int64_t life = res.not_after - now;

		pthread_mutex_lock(&ac->lock);
		ac->not_after_ms = res.not_after;
		pthread_mutex_unlock(&ac->lock);
		set_state(ac, "attested", "", "");
		log_info(SUBSYS,
			 "attested; certificate valid for %lld s; next round in %lld s; round trip "
			 "%lld ms (hello to certificate %lld ms)",
			 (long long)(life / 1000), (long long)(life * 2 / 3 / 1000),
			 (long long)(gd_mono_ms() - started), (long long)exchange);
		*failures = 0;
		attest_result_free(&res);
		/* A renewal while connected: the next connection uses the new certificate. */
		uplink_hold(ac->uplink, false);
		uplink_reconnect(ac->uplink);
		return gd_mono_ms() + (life > 3000 ? life * 2 / 3 : 1000);
	}
	attest_result_free(&res);
	if (next == UPLINK_ATTEST_AGAIN) {
		log_warnx(SUBSYS, "attestation of a change: %s; attesting what is enforced now",
			  why);
		return gd_mono_ms();
	}
	(*failures)++;
	retry = gd_backoff_ms(at->retry_min_ms, at->retry_max_ms, *failures);
	if (strcmp(ac->state, "refused") != 0)
		set_state(ac, "failed", "unreachable", why);
	/* No telemetry and no commands on a state the service refused. */
	if (next == UPLINK_ATTEST_HOLD)
		uplink_hold(ac->uplink, true);
	log_warnx(SUBSYS, "attestation failed: %s; %sretrying in %lld s", why,
		  next == UPLINK_ATTEST_HOLD ? "telemetry and commands held; " : "",
		  (long long)(retry / 1000));
	return gd_mono_ms() + retry;
}

static void *attest_main(void *arg)
{
	struct uplink_attest *ac = arg;
	int64_t next = 0;
	int failures = 0;

	pthread_mutex_lock(&ac->lock);
	while (!ac->stop) {
		struct timespec ts;
		int64_t wake;

		if (ac->trigger || gd_mono_ms() >= next) {
			ac->trigger = false;
			pthread_mutex_unlock(&ac->lock);
			next = round_once(ac, &failures);
			pthread_mutex_lock(&ac->lock);
		}
		/* An expired certificate must not carry telemetry: hold until a round succeeds. */
		if (ac->not_after_ms != 0 && gd_now_ms() >= ac->not_after_ms &&
		    strcmp(ac->state, "expired") != 0) {
			snprintf(ac->state, sizeof(ac->state), "expired");
			pthread_mutex_unlock(&ac->lock);
			log_warnx(SUBSYS, "the operational certificate expired; telemetry waits");
			uplink_hold(ac->uplink, true);
			pthread_mutex_lock(&ac->lock);
		}
		wake = next;
		if (ac->not_after_ms != 0 && strcmp(ac->state, "expired") != 0) {
			int64_t exp = gd_mono_ms() + (ac->not_after_ms - gd_now_ms());

			if (exp < wake)
				wake = exp;
		}
		ts = mono_ts(wake);
		if (!ac->stop && !ac->trigger)
			pthread_cond_timedwait(&ac->cond, &ac->lock, &ts);
	}
	pthread_mutex_unlock(&ac->lock);
	return NULL;
}

/* ---- the interface ------------------------------------------------------------------------ */

struct uplink_attest *uplink_attest_start(const struct uplink_attest_config *cfg, struct uplink *u)
{
	struct uplink_attest *ac = calloc(1, sizeof(*ac));

	if (ac == NULL)
		return NULL;
	ac->cfg = *cfg;
	ac->uplink = u;
	snprintf(ac->state, sizeof(ac->state), "attesting");
	pthread_mutex_init(&ac->lock, NULL);
	cond_init_monotonic(&ac->cond);
	ac->conv = calloc(1, sizeof(*ac->conv));
	if (ac->conv != NULL) {
		pthread_mutex_init(&ac->conv->lock, NULL);
		cond_init_monotonic(&ac->conv->cond); /* its waits count on the monotonic clock */
	}
	if (ac->conv == NULL || pthread_create(&ac->thread, NULL, attest_main, ac) != 0) {
		uplink_attest_stop(ac);
		return NULL;
	}
	ac->started = true;
	return ac;
}

void uplink_attest_stop(struct uplink_attest *ac)
{
	if (ac == NULL)
		return;
	pthread_mutex_lock(&ac->lock);
	ac->stop = true;
	pthread_cond_broadcast(&ac->cond);
	pthread_mutex_unlock(&ac->lock);
	if (ac->started)
		pthread_join(ac->thread, NULL);
	if (ac->conv != NULL) {
		conv_close(ac->conv);
		pthread_cond_destroy(&ac->conv->cond);
		pthread_mutex_destroy(&ac->conv->lock);
		free(ac->conv);
	}
	pthread_cond_destroy(&ac->cond);
	pthread_mutex_destroy(&ac->lock);
	free(ac);
}

void uplink_attest_trigger(struct uplink_attest *ac)
{
	if (ac == NULL)
		return;
	pthread_mutex_lock(&ac->lock);
	ac->trigger = true;
	pthread_cond_broadcast(&ac->cond);
	pthread_mutex_unlock(&ac->lock);
}

int64_t uplink_attest_cert_expiry(struct uplink_attest *ac)
{
	int64_t t;

	if (ac == NULL)
		return 0;
	pthread_mutex_lock(&ac->lock);
	t = ac->not_after_ms;
	pthread_mutex_unlock(&ac->lock);
	return t;
}

void uplink_attest_health(struct uplink_attest *ac, struct jw *w)
{
	if (ac == NULL)
		return;
	pthread_mutex_lock(&ac->lock);
	jw_key(w, "attestation");
	jw_object(w);
	jw_key(w, "state");
	jw_string(w, ac->state);
	jw_key(w, "not_after");
	jw_int(w, ac->not_after_ms);
	jw_key(w, "rounds");
	jw_uint(w, __atomic_load_n(&ac->rounds, __ATOMIC_RELAXED)); /* counted without the lock */
	jw_key(w, "refusals");
	jw_uint(w, __atomic_load_n(&ac->refusals, __ATOMIC_RELAXED));
	jw_key(w, "register");
	jw_string(w, ac->register_hex);
	jw_key(w, "last_reason");
	jw_string(w, ac->last_reason);
	jw_key(w, "last_detail");
	jw_string(w, ac->last_detail);
	pthread_mutex_unlock(&ac->lock);
	/* Without the lock: the device takes its own. */
	if (ac->cfg.ops->health != NULL)
		ac->cfg.ops->health(ac->cfg.ctx, w);
	jw_end(w);
}

void uplink_attest_describe(struct uplink_attest *ac, char *out, size_t cap)
{
	if (ac == NULL) {
		snprintf(out, cap, "%s", "");
		return;
	}
	pthread_mutex_lock(&ac->lock);
	if (strcmp(ac->state, "attested") == 0)
		snprintf(out, cap, "attested");
	else if (ac->last_reason[0] != '\0')
		snprintf(out, cap, "attestation %s: %s: %s", ac->state, ac->last_reason,
			 ac->last_detail);
	else
		snprintf(out, cap, "attestation %s", ac->state);
	pthread_mutex_unlock(&ac->lock);
}
