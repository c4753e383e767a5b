/* serve.c: `guardian-service serve`: the MQTT side: shared subscriptions on the attestation
 * topics, answers published back, the CRL kept fresh, reconnection with backoff, a clean stop on
 * SIGTERM/SIGINT. */
#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../proto/mqtt_tls.h"
#include "report.h"
#include "service.h"

#define SERVE_QUEUE_MAX	   10000 /* messages waiting; beyond, new ones are dropped */
#define SERVE_BACKOFF_MIN  250
#define SERVE_BACKOFF_MAX  30000
#define SERVE_SWEEP_MS	   10000
#define SERVE_CRL_CHECK_MS 600000 /* how often the CRL's nextUpdate is looked at */
#define SERVE_CRL_GAP_MS   1000	  /* revocations within this are written (and reloaded) together */
#define SERVE_PREFIX	   "guardian/"

static const char *const sub_topics[] = {
	"$share/guardian-attest/guardian/+/attest/hello",
	"$share/guardian-attest/guardian/+/attest/evidence",
	SERVICE_REPORT_TOPIC, /* failure reports (report.c): refused, attestation still runs */
};
#define SUB_COUNT ((int)(sizeof(sub_topics) / sizeof(sub_topics[0])))

/* One message that arrived, waiting for the main thread. */
struct serve_msg {
	struct serve_msg *next;
	char *topic;
	char *payload; /* NUL-terminated copy */
	size_t len;
};

enum serve_state { SERVE_DOWN, SERVE_CONNECTING, SERVE_UP };

struct server {
	struct service *svc;
	MQTTAsync client;
	char uri[512];
	char client_id[128];
	char cert_file[4096], key_file[4096];

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	struct serve_msg *head, *tail;
	size_t queued;
	uint64_t dropped;
	bool ev_connected, ev_connect_failed, ev_lost, ev_subscribed, ev_subscribe_failed;
	bool disconnected; /* the final disconnect is done */
	/* The broker's ACL refused the report topic (an old ACL): attestation goes on. */
	bool reports_refused;
	char fail_msg[192];
};

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void wake(struct server *sv)
{
	pthread_cond_broadcast(&sv->cond);
}

/* No operation is performed if 'msg' is NULL. */
static void msg_free(struct serve_msg *msg)
{
	if (msg == NULL)
		return;
	free(msg->topic);
	free(msg->payload);
	free(msg);
}

/* The monotonic time 'ms' as pthread_cond_timedwait wants it (the condition uses that clock). */
static struct timespec mono_timespec(int64_t ms)
{
	return (struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
}

/* --- Paho callbacks: record and wake ------------------------------------- */

static void on_connect_ok(void *context, MQTTAsync_successData *response)
{
	struct server *sv = context;

	(void)response;
	pthread_mutex_lock(&sv->lock);
	sv->ev_connected = true;
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
}

static void on_connect_failed(void *context, MQTTAsync_failureData *response)
{
	struct server *sv = context;

	pthread_mutex_lock(&sv->lock);
	sv->ev_connect_failed = true;
	snprintf(sv->fail_msg, sizeof(sv->fail_msg), "%s (code %d)",
		 response && response->message ? response->message : "connection refused or failed",
		 response ? response->code : 0);
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
}

static void on_connection_lost(void *context, char *cause)
{
	struct server *sv = context;

	pthread_mutex_lock(&sv->lock);
	sv->ev_lost = true;
	snprintf(sv->fail_msg, sizeof(sv->fail_msg), "%s",
		 cause ? cause : "the broker closed the connection or the network failed");
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
}

static void on_subscribe_ok(void *context, MQTTAsync_successData *response)
{
	struct server *sv = context;
	bool refused = false;

	/* 0x80 in a SUBACK: the broker refused that filter (its ACL). */
	if (response != NULL && response->alt.qosList != NULL) {
		for (int i = 0; i < SUB_COUNT; i++)
			if (strcmp(sub_topics[i], SERVICE_REPORT_TOPIC) != 0)
				refused |= response->alt.qosList[i] == 0x80;
	} else if (response != NULL) {
		refused = response->alt.qos == 0x80;
	}
	pthread_mutex_lock(&sv->lock);
	/* A broker whose ACL predates reports: attestation goes on, without them. */
	for (int i = 0; response != NULL && response->alt.qosList != NULL && i < SUB_COUNT; i++)
		if (strcmp(sub_topics[i], SERVICE_REPORT_TOPIC) == 0)
			sv->reports_refused = response->alt.qosList[i] == 0x80;
	if (refused) {
		sv->ev_subscribe_failed = true;
		snprintf(sv->fail_msg, sizeof(sv->fail_msg),
			 "the broker refused the subscription (check its ACL for guardian-attest)");
	} else {
		sv->ev_subscribed = true;
	}
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
	struct server *sv = context;

	pthread_mutex_lock(&sv->lock);
	sv->ev_subscribe_failed = true;
	snprintf(sv->fail_msg, sizeof(sv->fail_msg), "cannot subscribe (code %d)",
		 response ? response->code : 0);
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct server *sv = context;
	size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
	size_t plen = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	struct serve_msg *msg = calloc(1, sizeof(*msg));

	if (msg != NULL) {
		msg->topic = strndup(topic, tlen);
		msg->payload = malloc(plen + 1);
		msg->len = plen;
	}
	if (msg == NULL || msg->topic == NULL || msg->payload == NULL) {
		log_warnx(SERVICE_SUBSYS, "out of memory: a message on %.*s is dropped", (int)tlen,
			  topic);
		msg_free(msg);
		goto out;
	}
	if (plen > 0)
		memcpy(msg->payload, m->payload, plen);
	msg->payload[plen] = '\0';
	pthread_mutex_lock(&sv->lock);
	if (sv->queued >= SERVE_QUEUE_MAX) {
		sv->dropped++;
		pthread_mutex_unlock(&sv->lock);
		msg_free(msg);
		goto out;
	}
	if (sv->tail != NULL)
		sv->tail->next = msg;
	else
		sv->head = msg;
	sv->tail = msg;
	sv->queued++;
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
out:
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void on_disconnected(void *context, MQTTAsync_successData *response)
{
	struct server *sv = context;

	(void)response;
	pthread_mutex_lock(&sv->lock);
	sv->disconnected = true;
	wake(sv);
	pthread_mutex_unlock(&sv->lock);
}

static void on_disconnect_failed(void *context, MQTTAsync_failureData *response)
{
	(void)response;
	on_disconnected(context, NULL);
}

/*
 * Paho's trace, at MQTTASYNC_TRACE_MINIMUM while connecting (for the line that announces the new
 * socket: TCP_NODELAY, see mqtt_trace_nodelay), at MQTTASYNC_TRACE_ERROR otherwise.
 */
static void on_trace(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
	if (!mqtt_trace_nodelay(message) && level >= MQTTASYNC_TRACE_ERROR)
		log_debug(SERVICE_SUBSYS, "paho: %s", message);
}

/* --- the main thread ------------------------------------------------------ */

static void connect_start(struct server *sv)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl;
	int rc;

	mqtt_tls_options(&ssl, &(struct mqtt_tls){ .ca_file = sv->svc->cfg.broker_ca_file,
						   .cert_file = sv->cert_file,
						   .key_file = sv->key_file });
	opts.keepAliveInterval = 30;
	opts.cleansession = 1;
	opts.connectTimeout = 10;
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	opts.ssl = &ssl;
	opts.onSuccess = on_connect_ok;
	opts.onFailure = on_connect_failed;
	opts.context = sv;
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_MINIMUM); /* lowered when it succeeded or failed */
	rc = MQTTAsync_connect(sv->client, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		pthread_mutex_lock(&sv->lock);
		sv->ev_connect_failed = true;
		snprintf(sv->fail_msg, sizeof(sv->fail_msg), "%s", MQTTAsync_strerror(rc));
		pthread_mutex_unlock(&sv->lock);
	}
}

static void subscribe_start(struct server *sv)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	char *topics[SUB_COUNT];
	int qos[SUB_COUNT];
	int rc;

	memcpy(topics, sub_topics, sizeof(topics)); /* Paho's prototype is not const */
	for (int i = 0; i < SUB_COUNT; i++)
		qos[i] = 1;
	opts.onSuccess = on_subscribe_ok;
	opts.onFailure = on_subscribe_failed;
	opts.context = sv;
	rc = MQTTAsync_subscribeMany(sv->client, SUB_COUNT, topics, qos, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		pthread_mutex_lock(&sv->lock);
		sv->ev_subscribe_failed = true;
		snprintf(sv->fail_msg, sizeof(sv->fail_msg), "cannot subscribe: %s",
			 MQTTAsync_strerror(rc));
		pthread_mutex_unlock(&sv->lock);
	}
}

static void publish(struct server *sv, const char *dev, const char *what, const char *payload)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	union {
		const char *in;
		void *out;
	} data = { .in = payload }; /* Paho copies it and does not write to it */
	char topic[160];
	int rc;

	snprintf(topic, sizeof(topic), SERVE_PREFIX "%s/attest/%s", dev, what);
	msg.payload = data.out;
	msg.payloadlen = (int)strlen(payload);
	msg.qos = 1;
	msg.retained = 0;
	rc = MQTTAsync_sendMessage(sv->client, topic, &msg, NULL);
	if (rc != MQTTASYNC_SUCCESS)
		log_warnx(SERVICE_SUBSYS, "%s: cannot publish on %s: %s", dev, topic,
			  MQTTAsync_strerror(rc));
}

/*
 * Splits "guardian/<dev>/attest/<kind>" into 'dev' (64 bytes) and the kind.
 * Returns the kind ("hello", "evidence"), or NULL.
 */
static const char *topic_split(const char *topic, char dev[64])
{
	const char *p, *slash;
	size_t n;

	if (strncmp(topic, SERVE_PREFIX, strlen(SERVE_PREFIX)) != 0)
		return NULL;
	p = topic + strlen(SERVE_PREFIX);
	slash = strchr(p, '/');
	if (slash == NULL)
		return NULL;
	n = (size_t)(slash - p);
	if (n == 0 || n > 63)
		return NULL;
	memcpy(dev, p, n);
	dev[n] = '\0';
	if (!conf_valid_name(dev) || strncmp(slash, "/attest/", 8) != 0)
		return NULL;
	return slash + 8;
}

static void handle(struct server *sv, const struct serve_msg *msg)
{
	char dev[64];
	const char *kind = topic_split(msg->topic, dev);
	char *answer = NULL;

	if (kind == NULL && service_report_topic(msg->topic, dev)) {
		char why[512];

		if (service_report_store(sv->svc->store, dev, msg->payload, msg->len,
					 sv->svc->now_ms(), why, sizeof(why)) != 0)
			log_warnx(SERVICE_SUBSYS, "%s", why);
		return;
	}
	if (kind == NULL) {
		log_debug(SERVICE_SUBSYS, "ignored a message on %s", msg->topic);
		return;
	}
	if (strcmp(kind, "hello") == 0) {
		if (service_handle_hello(sv->svc, dev, msg->payload, msg->len, &answer) == 0)
			publish(sv, dev, "nonce", answer);
	} else if (strcmp(kind, "evidence") == 0) {
		if (service_handle_evidence(sv->svc, dev, msg->payload, msg->len, &answer) == 0)
			publish(sv, dev, "result", answer);
	} else {
		log_debug(SERVICE_SUBSYS, "ignored a message on %s", msg->topic);
	}
	free(answer);
}

/* The loop: events from Paho, messages, reconnection, sweeping, until a signal. */
static void serve_loop(struct server *sv)
{
	enum serve_state state = SERVE_DOWN;
	int64_t next_attempt = 0, next_sweep = 0, next_crl_check = 0, last_crl = INT64_MIN / 2;
	int failures = 0;
	bool ready = false;

	while (!stop_signal) {
		int64_t now = gd_mono_ms(), wait_ms;
		struct serve_msg *msgs;
		bool connected, connect_failed, lost, subscribed, subscribe_failed;
		bool reports_refused;
		char why[192];

		if (state == SERVE_DOWN && now >= next_attempt) {
			log_info(SERVICE_SUBSYS, "connecting to %s", sv->uri);
			state = SERVE_CONNECTING;
			connect_start(sv);
		}
		if (now >= next_sweep) {
			int removed = nonce_sweep(sv->svc, sv->svc->now_ms());

			if (removed > 0)
				log_debug(SERVICE_SUBSYS, "swept %d used-nonce markers", removed);
			next_sweep = now + SERVE_SWEEP_MS;
		}
		if (now >= next_crl_check) {
			if (revoke_refresh(sv->svc) == 1)
				last_crl = now;
			next_crl_check = now + SERVE_CRL_CHECK_MS;
		}

		pthread_mutex_lock(&sv->lock);
		if (sv->head == NULL && !sv->ev_connected && !sv->ev_connect_failed &&
		    !sv->ev_lost && !sv->ev_subscribed && !sv->ev_subscribe_failed) {
			struct timespec until = mono_timespec(gd_mono_ms() + 200);

			pthread_cond_timedwait(&sv->cond, &sv->lock, &until);
		}
		msgs = sv->head;
		sv->head = sv->tail = NULL;
		sv->queued = 0;
		connected = sv->ev_connected;
		connect_failed = sv->ev_connect_failed;
		lost = sv->ev_lost;
		subscribed = sv->ev_subscribed;
		subscribe_failed = sv->ev_subscribe_failed;
		reports_refused = sv->reports_refused;
		sv->ev_connected = sv->ev_connect_failed = sv->ev_lost = false;
		sv->ev_subscribed = sv->ev_subscribe_failed = false;
		snprintf(why, sizeof(why), "%s", sv->fail_msg);
		if (sv->dropped > 0) {
			log_warnx(SERVICE_SUBSYS, "%llu messages dropped: more than %d waiting",
				  (unsigned long long)sv->dropped, SERVE_QUEUE_MAX);
			sv->dropped = 0;
		}
		pthread_mutex_unlock(&sv->lock);

		if (connected || connect_failed)
			MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
		if (connected) {
			log_info(SERVICE_SUBSYS, "connected to %s; subscribing", sv->uri);
			subscribe_start(sv);
		}
		if (subscribed) {
			state = SERVE_UP;
			failures = 0;
			log_info(SERVICE_SUBSYS, "subscribed to %s, %s and %s", sub_topics[0],
				 sub_topics[1], sub_topics[2]);
			if (reports_refused)
				log_warnx(
					SERVICE_SUBSYS,
					"the broker refused %s: failure reports will not arrive "
					"(its ACL must let guardian-attest read guardian/+/report: "
					"tools/attest-broker.sh)",
					SERVICE_REPORT_TOPIC);
			if (!ready) {
				printf("guardian-service: ready\n");
				fflush(stdout);
				ready = true;
			}
		}
		if (connect_failed || lost || subscribe_failed) {
			if (subscribe_failed)
				MQTTAsync_disconnect(sv->client, NULL);
			wait_ms = gd_backoff_ms(SERVE_BACKOFF_MIN, SERVE_BACKOFF_MAX, ++failures);
			next_attempt = gd_mono_ms() + wait_ms;
			log_warnx(SERVICE_SUBSYS, "%s %s: %s; trying again in %lld ms",
				  lost ? "lost the connection to" : "cannot connect to", sv->uri,
				  why, (long long)wait_ms);
			state = SERVE_DOWN;
		}
		while (msgs != NULL) {
			struct serve_msg *next = msgs->next;

			if (!stop_signal)
				handle(sv, msgs);
			msg_free(msgs);
			msgs = next;
		}
		/* After the batch: its revocations reach the broker in one CRL, one reload. */
		if (sv->svc->crl_stale && gd_mono_ms() - last_crl >= SERVE_CRL_GAP_MS) {
			revoke_publish(sv->svc);
			last_crl = gd_mono_ms();
		}
	}
	if (sv->svc->crl_stale)
		revoke_publish(sv->svc);
	log_info(SERVICE_SUBSYS, "%s: stopping", strsignal(stop_signal));
	if (MQTTAsync_isConnected(sv->client)) {
		MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
		int64_t deadline = gd_mono_ms() + 2000;

		opts.timeout = 1000; /* for answers still in flight */
		opts.onSuccess = on_disconnected;
		opts.onFailure = on_disconnect_failed;
		opts.context = sv;
		if (MQTTAsync_disconnect(sv->client, &opts) == MQTTASYNC_SUCCESS) {
			pthread_mutex_lock(&sv->lock);
			while (!sv->disconnected && gd_mono_ms() < deadline) {
				struct timespec until = mono_timespec(deadline);

				pthread_cond_timedwait(&sv->cond, &sv->lock, &until);
			}
			pthread_mutex_unlock(&sv->lock);
		}
	}
}

int service_serve(const char *dir, const struct serve_opts *opts)
{
	struct server sv = { .client = NULL };
	MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
	struct sigaction sa = { .sa_handler = on_stop_signal };
	pthread_condattr_t attr;
	char why[512], host[64];
	int rc, status = 1;

	if (opts->verbose)
		log_set_level(LOG_LEVEL_DEBUG);
	rc = service_open(dir, &sv.svc, why, sizeof(why));
	if (rc != 0) {
		log_error(SERVICE_SUBSYS, "%s", why);
		return 1;
	}
	sv.svc->once_per_request = opts->once_per_request;
	if (access(sv.svc->cfg.broker_ca_file, R_OK) != 0) {
		log_error(SERVICE_SUBSYS,
			  "%s/%s: broker.ca_file: cannot read %s: %s (expected the CA of the "
			  "broker's server certificate; set it with init --broker-ca or edit the "
			  "file)",
			  dir, SERVICE_CONFIG_FILE, sv.svc->cfg.broker_ca_file, strerror(errno));
		goto out;
	}
	if (!service_path(sv.cert_file, sizeof(sv.cert_file), dir, "service.crt") ||
	    !service_path(sv.key_file, sizeof(sv.key_file), dir, "service.key")) {
		log_error(SERVICE_SUBSYS, "%s: path too long", dir);
		goto out;
	}
	snprintf(sv.uri, sizeof(sv.uri), "ssl://%s:%d", sv.svc->cfg.broker_host,
		 sv.svc->cfg.broker_port);
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	snprintf(sv.client_id, sizeof(sv.client_id), "guardian-attest-%s-%ld", host,
		 (long)getpid());

	pthread_mutex_init(&sv.lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sv.cond, &attr);
	pthread_condattr_destroy(&attr);

	MQTTAsync_setTraceCallback(on_trace);
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
	create.MQTTVersion = MQTTVERSION_3_1_1;
	create.sendWhileDisconnected = 0;
	/* Paho refuses a publish while this many wait to be sent (100 by default): a batch of
	 * answers to a burst of devices would lose the rest (tests/integration/test_fleet.c). */
	create.maxBufferedMessages = SERVE_QUEUE_MAX;
	rc = MQTTAsync_createWithOptions(&sv.client, sv.uri, sv.client_id,
					 MQTTCLIENT_PERSISTENCE_NONE, NULL, &create);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error(SERVICE_SUBSYS, "cannot create an MQTT client for %s: %s", sv.uri,
			  MQTTAsync_strerror(rc));
		goto destroy;
	}
	rc = MQTTAsync_setCallbacks(sv.client, &sv, on_connection_lost, on_message, NULL);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error(SERVICE_SUBSYS, "cannot set the client's callbacks: %s",
			  MQTTAsync_strerror(rc));
		goto destroy;
	}

	stop_signal = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_info(SERVICE_SUBSYS,
		 "serving %s as %s (store %s, certificates for %lld s, nonces for %d s)", dir,
		 sv.client_id, store_backend_name(sv.svc->cfg.store.backend),
		 sv.svc->cfg.lifetime_s, sv.svc->cfg.nonce_ttl_s);
	if (sv.svc->cfg.broker_pid_file == NULL)
		log_info(SERVICE_SUBSYS,
			 "no broker_pid_file in %s: the broker must reload %s/%s "
			 "itself when it changes (PROTOCOL.md)",
			 SERVICE_CONFIG_FILE, dir, SERVICE_CRL_FILE);
	serve_loop(&sv);
	log_info(SERVICE_SUBSYS, "stopped");
	status = 0;
destroy:
	if (sv.client != NULL)
		MQTTAsync_destroy(&sv.client);
	while (sv.head != NULL) {
		struct serve_msg *next = sv.head->next;

		msg_free(sv.head);
		sv.head = next;
	}
	pthread_cond_destroy(&sv.cond);
	pthread_mutex_destroy(&sv.lock);
out:
	service_free(sv.svc);
	return status;
}
