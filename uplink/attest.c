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
#include "uplink.h"

#define SUBSYS "attest"

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
};

/* ---- one MQTT conversation with the service ----------------------------------------------- */

struct conv {
	MQTTAsync client;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
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
	if (slot != NULL && *slot == NULL) {
		*slot = strndup(m->payload, (size_t)m->payloadlen);
		pthread_cond_broadcast(&cv->cond);
	}
	pthread_mutex_unlock(&cv->lock);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* Waits for the pending operation; 0, its failure code, or GD_ETIMEDOUT. */
static int conv_wait(struct conv *cv, int ms)
{
	struct timespec ts = mono_ts(gd_mono_ms() + ms);
	int rc;

	pthread_mutex_lock(&cv->lock);
	while (!cv->done && pthread_cond_timedwait(&cv->cond, &cv->lock, &ts) != ETIMEDOUT)
		;
	rc = cv->done ? cv->rc : GD_ETIMEDOUT;
	cv->done = false;
	pthread_mutex_unlock(&cv->lock);
	return rc;
}

/* Waits until *slot holds a message; returns it (owned by the caller) or NULL on timeout. */
static char *conv_take(struct conv *cv, char **slot, int ms)
{
	struct timespec ts = mono_ts(gd_mono_ms() + ms);
	char *msg;

	pthread_mutex_lock(&cv->lock);
	while (*slot == NULL && pthread_cond_timedwait(&cv->cond, &cv->lock, &ts) != ETIMEDOUT)
		;
	msg = *slot;
	*slot = NULL;
	pthread_mutex_unlock(&cv->lock);
	return msg;
}

static int conv_publish(struct conv *cv, const char *topic, const char *payload, int ms)
{
	MQTTAsync_message m = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;

	m.payload = (void *)(uintptr_t)payload;
	m.payloadlen = (int)strlen(payload);
	m.qos = 1;
	ro.onSuccess = on_ok;
	ro.onFailure = on_fail;
	ro.context = cv;
	if (MQTTAsync_sendMessage(cv->client, topic, &m, &ro) != MQTTASYNC_SUCCESS)
		return GD_EIO;
	return conv_wait(cv, ms);
}

/* Connects to the attestation listener with the identity certificate, and subscribes. */
static int conv_open(struct conv *cv, const struct uplink_attest_config *at, char *why, size_t cap)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char uri[300], id[96];
	char *topics[2] = { cv->topic_nonce, cv->topic_result };
	int qos[2] = { 1, 1 }, rc;

	snprintf(uri, sizeof(uri), "ssl://%s:%d", at->host, at->port);
	snprintf(id, sizeof(id), "%s-attest", at->device_id);
	snprintf(cv->topic_nonce, sizeof(cv->topic_nonce), "guardian/%s/attest/nonce",
		 at->device_id);
	snprintf(cv->topic_result, sizeof(cv->topic_result), "guardian/%s/attest/result",
		 at->device_id);
	if (MQTTAsync_create(&cv->client, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
		    MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(cv->client, cv, NULL, on_message, NULL) != MQTTASYNC_SUCCESS) {
		snprintf(why, cap, "cannot create an MQTT client for %s", uri);
		return GD_EIO;
	}
	mqtt_tls_options(&ssl, &(struct mqtt_tls){ .ca_file = at->ca_file,
						   .cert_file = at->cert_file,
						   .key_file = at->key_file });
	co.ssl = &ssl;
	co.cleansession = 1;
	co.keepAliveInterval = 30;
	co.connectTimeout = (at->timeout_ms + 999) / 1000;
	co.onSuccess = on_ok;
	co.onFailure = on_fail;
	co.context = cv;
	rc = MQTTAsync_connect(cv->client, &co);
	if (rc != MQTTASYNC_SUCCESS)
		snprintf(cv->fail_msg, sizeof(cv->fail_msg), "%s", MQTTAsync_strerror(rc));
	if (rc != MQTTASYNC_SUCCESS || (rc = conv_wait(cv, at->timeout_ms + 2000)) != 0) {
		snprintf(why, cap, "cannot connect to the attestation listener %s with %s: %s", uri,
			 at->cert_file, cv->fail_msg[0] ? cv->fail_msg : "no answer");
		return GD_EIO;
	}
	ro.onSuccess = on_ok;
	ro.onFailure = on_fail;
	ro.context = cv;
	if (MQTTAsync_subscribeMany(cv->client, 2, topics, qos, &ro) != MQTTASYNC_SUCCESS ||
	    conv_wait(cv, at->timeout_ms) != 0) {
		snprintf(why, cap, "cannot subscribe to guardian/%s/attest/# on %s", at->device_id,
			 uri);
		return GD_EIO;
	}
	return 0;
}

static void conv_close(struct conv *cv)
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
	free(cv->nonce);
	free(cv->result);
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
 * hello -> nonce -> evidence -> result. Returns 0 with *res filled (ok or a
 * refusal), or a negative gd_err with 'why' when the round could not be had.
 */
static int converse(struct uplink_attest *ac, struct attest_result *res, char *why, size_t cap,
		    int64_t *exchange_ms)
{
	const struct uplink_attest_config *at = &ac->cfg;
	struct conv cv = { 0 };
	char topic[160], hello[64];
	char *msg = NULL, *ev = NULL;
	int rc = GD_ETIMEDOUT;

	pthread_mutex_init(&cv.lock, NULL);
	cond_init_monotonic(&cv.cond); /* the waits below count on the monotonic clock */
	if ((rc = conv_open(&cv, at, why, cap)) != 0)
		goto out;
	snprintf(topic, sizeof(topic), "guardian/%s/attest/hello", at->device_id);
	snprintf(hello, sizeof(hello), "{\"swversion\":\"%s\"}", at->swversion);
	*exchange_ms = gd_mono_ms();
	if (conv_publish(&cv, topic, hello, at->timeout_ms) != 0 ||
	    (msg = conv_take(&cv, &cv.nonce, at->timeout_ms)) == NULL) {
		snprintf(why, cap, "no nonce from the attestation service within %d ms",
			 at->timeout_ms);
		rc = GD_ETIMEDOUT;
		goto out;
	}
	ev = evidence_for(ac, msg, why, cap);
	free(msg);
	msg = NULL;
	rc = GD_EIO;
	if (ev == NULL)
		goto out;
	snprintf(topic, sizeof(topic), "guardian/%s/attest/evidence", at->device_id);
	if (conv_publish(&cv, topic, ev, at->timeout_ms) != 0 ||
	    (msg = conv_take(&cv, &cv.result, at->timeout_ms)) == NULL) {
		snprintf(why, cap, "no result from the attestation service within %d ms",
			 at->timeout_ms);
		rc = GD_ETIMEDOUT;
		goto out;
	}
	*exchange_ms = gd_mono_ms() - *exchange_ms;
	rc = attest_result_parse(msg, strlen(msg), res);
	if (rc != 0)
		snprintf(why, cap, "the service's result message is malformed");
out:
	free(msg);
	free(ev);
	conv_close(&cv);
	pthread_cond_destroy(&cv.cond);
	pthread_mutex_destroy(&cv.lock);
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
	bool issued = false, ok;

	__atomic_add_fetch(&ac->rounds, 1, __ATOMIC_RELAXED);
	set_state(ac, "attesting", NULL, NULL);
	why[0] = '\0';
	if (at->ops->begin(at->ctx, why, sizeof(why)) == 0 &&
	    converse(ac, &res, why, sizeof(why), &exchange) == 0) {
		issued = res.ok;
		if (!res.ok) {
			__atomic_add_fetch(&ac->refusals, 1, __ATOMIC_RELAXED);
			snprintf(why, sizeof(why), "refused: %s: %.400s", res.reason, res.detail);
			set_state(ac, "refused", res.reason, res.detail);
		}
	}
	ok = at->ops->end(at->ctx, issued ? res.cert_pem : NULL, why, sizeof(why)) == 0 && issued;
	if (ok) {
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
	(*failures)++;
	retry = gd_backoff_ms(at->retry_min_ms, at->retry_max_ms, *failures);
	if (strcmp(ac->state, "refused") != 0)
		set_state(ac, "failed", "unreachable", why);
	log_warnx(SUBSYS, "attestation failed: %s; retrying in %lld s", why,
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
	if (pthread_create(&ac->thread, NULL, attest_main, ac) != 0) {
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
	jw_uint(w, ac->rounds);
	jw_key(w, "refusals");
	jw_uint(w, ac->refusals);
	jw_key(w, "register");
	jw_string(w, ac->register_hex);
	jw_key(w, "last_reason");
	jw_string(w, ac->last_reason);
	jw_key(w, "last_detail");
	jw_string(w, ac->last_detail);
	jw_end(w);
	pthread_mutex_unlock(&ac->lock);
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
