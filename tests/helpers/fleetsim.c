/* fleetsim.c: a fleet of simulated devices attesting over MQTT against real `guardian-service
 * serve` instances: enrolls them, then keeps a window of rounds outstanding (hello, nonce,
 * evidence, result) and reports rounds, refusals, time-outs, latency and attestations/s.
 *
 *   fleetsim -d SVC_DIR --broker HOST:PORT --ca BROKER_CA --work DIR [--service-bin PATH]
 *            [--devices N] [--connections C] [--window W] [--rounds R | --seconds S]
 *            [--timeout-ms T] [--replay K] [--race K] [--prefix NAME] [--hello-retry-ms MS]
 *
 * Test and benchmark only. The simulated devices share C MQTT connections, each made with the
 * identity certificate of one of them, so the broker's listener must not have per-device ACLs
 * (tests/harness/fleet.c writes such a listener, loopback only): the attestation listener's ACLs
 * are tested elsewhere (tests/integration/test_attest.c,
 * devices_cannot_touch_each_others_topics). Identity keys, CSRs, evidence signatures and the
 * operational keys are made in process with OpenSSL's libcrypto (the fleet's cost must stay
 * small beside the service's on a shared machine); devices are enrolled through
 * `guardian-service enroll`, the reference through `guardian-service reference add`, so the
 * service's own code writes its store, whichever backend it is.
 *
 * --replay K: after the rounds, K accepted evidence envelopes are published again as they were;
 * each must be refused replayed_nonce. --race K: K more rounds send two evidence envelopes for
 * one nonce (different iat, so two signatures) at once; exactly one may be accepted.
 *
 * --hello-retry-ms MS: a hello without a nonce after MS goes again, the wait doubling to 2 s, as
 * guardian's does (off by default: then a lost message shows as a round timed out).
 *
 * The last line of the output is "fleetsim-result: key=value ..." for scripts; exit status 0
 * when the run completed (whatever the service decided), 1 when it could not run.
 */
#include <MQTTAsync.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../../base/base.h"
#include "../../proto/evidence.h"
#include "../../proto/mqtt_tls.h"
#include "sim_evidence.h"

#define FLEET_SUBSCRIBE_CHUNK 64 /* topics per SUBSCRIBE */
#define FLEET_REASONS	      16
#define FLEET_ENROLL_JOBS     3 /* `guardian-service enroll` processes at a time */

enum dev_state {
	DEV_IDLE,
	DEV_HELLO,    /* hello sent, waiting for the nonce */
	DEV_EVIDENCE, /* evidence sent, waiting for 'pending' results */
	DEV_BURNED,   /* timed out: late answers could be taken for a later round's */
};

enum round_kind { ROUND_NORMAL, ROUND_RACE, ROUND_REPLAY };

struct device {
	char name[64];
	EVP_PKEY *identity;
	uint8_t ueid[UEID_LEN];
	int conn;
	enum dev_state state;
	enum round_kind kind;
	int64_t started_us, deadline_ms;
	uint8_t nonce[NONCE_LEN];
	char *accepted;	       /* the envelope of its last accepted round (for --replay) */
	int pending;	       /* results still expected */
	int64_t next_hello_ms; /* --hello-retry-ms: when the hello goes again without a nonce */
	int retry_ms, unanswered_hellos;
	int round_ok, round_replayed, round_other;
};

/* One message that arrived, waiting for the main thread. */
struct msg {
	struct msg *next;
	int dev;
	bool is_result; /* else a nonce */
	char *payload;
	size_t len;
};

struct conn {
	MQTTAsync client;
	char cert_file[600], key_file[700];
	int index;
};

static struct {
	const char *svc, *work, *ca, *service_bin, *prefix;
	char host[256];
	int port;
	int ndevices, nconns, window, timeout_ms, replay, race, hello_retry_ms;
	long max_rounds;
	double seconds;
} opt = { .prefix = "fleet",
	  .ndevices = 100,
	  .nconns = 4,
	  .window = 32,
	  .timeout_ms = 10000,
	  .seconds = 5 };

static struct device *devs;
static struct conn *conns;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the queue and the counters below */
static pthread_cond_t cond;
static struct msg *q_head, *q_tail;
static int connected, connect_failed, subscribed, subscribe_failed, lost;

/* What the run counted. */
static struct {
	long started, ok, refused, timed_out, stray, hello_retries, extra_nonces;
	long replay_sent, replay_refused, replay_accepted, replay_other;
	long race_sent, race_one_ok, race_two_ok, race_none_ok;
	char reasons[FLEET_REASONS][32];
	long reason_n[FLEET_REASONS];
	int64_t *lat_us;
	size_t nlat, cap_lat;
	uint8_t (*nonces)[NONCE_LEN]; /* of every accepted round, to find one accepted twice */
	size_t nnonces, cap_nonces;
	int64_t t0_us, t1_us, last_ok_us; /* the rate counts to the last accepted round */
} st;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("fleetsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* ---- keys and enrollment ---------------------------------------------------------------- */

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	if (k == NULL)
		die("cannot make a P-256 key");
	return k;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	size_t len = strlen(text);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len || close(fd) != 0)
		die("%s: %s", path, strerror(errno));
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = xcalloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* Starts the service binary with 'args' (NULL-terminated); output to <work>/setup.log. Its pid,
 * or -1. */
static pid_t spawn_service(const char *const args[])
{
	char log[600];
	pid_t pid;

	snprintf(log, sizeof(log), "%s/setup.log", opt.work);
	pid = fork();
	if (pid == 0) {
		char *argv[16];
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		size_t n = 0;

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		argv[n++] = strdup(opt.service_bin);
		while (args[n - 1] != NULL && n < 15) {
			argv[n] = strdup(args[n - 1]);
			n++;
		}
		argv[n] = NULL;
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* spawn_service, and its exit status (-1: it could not run or died of a signal). */
static int run_service(const char *const args[])
{
	pid_t pid = spawn_service(args);
	int status;

	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The device's key and CSR made here; `guardian-service enroll` started on them. Its pid. */
static pid_t enroll_start(struct device *d)
{
	char csr_path[600], crt_path[600], subject_cn[64];
	X509_REQ *req = X509_REQ_new();
	pid_t pid;
	X509_NAME *subject = X509_NAME_new();
	FILE *f;

	d->identity = new_key();
	snprintf(subject_cn, sizeof(subject_cn), "%s", d->name);
	if (req == NULL || subject == NULL ||
	    !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
					(const unsigned char *)subject_cn, -1, -1, 0) ||
	    !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, d->identity) ||
	    X509_REQ_sign(req, d->identity, EVP_sha256()) <= 0)
		die("%s: cannot make a CSR", d->name);
	snprintf(csr_path, sizeof(csr_path), "%s/%s.csr", opt.work, d->name);
	snprintf(crt_path, sizeof(crt_path), "%s/%s.crt", opt.work, d->name);
	f = fopen(csr_path, "w");
	if (f == NULL || !PEM_write_X509_REQ(f, req) || fclose(f) != 0)
		die("%s: %s", csr_path, strerror(errno));
	X509_REQ_free(req);
	X509_NAME_free(subject);
	pid = spawn_service(
		(const char *const[]){ "enroll", "-d", opt.svc, csr_path, "-o", crt_path, NULL });
	if (pid < 0)
		die("%s: cannot start guardian-service: %s", d->name, strerror(errno));
	return pid;
}

/* After enroll_start's process ended with 'status': the identity certificate read back. */
static void enroll_finish(struct device *d, int status)
{
	char csr_path[600], crt_path[600], *cert;
	FILE *f;

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("%s: guardian-service enroll failed; see %s/setup.log", d->name, opt.work);
	snprintf(csr_path, sizeof(csr_path), "%s/%s.csr", opt.work, d->name);
	snprintf(crt_path, sizeof(crt_path), "%s/%s.crt", opt.work, d->name);
	cert = read_file(crt_path);
	if (cert == NULL || evidence_ueid(cert, d->ueid) != 0)
		die("%s: cannot read the identity certificate %s", d->name, crt_path);
	free(cert);
	unlink(csr_path);
	if (d->conn >= 0 && d - devs == d->conn) {
		/* This device's identity also opens connection d->conn (see the top of the file).
		 */
		struct conn *c = &conns[d->conn];

		snprintf(c->cert_file, sizeof(c->cert_file), "%s", crt_path);
		snprintf(c->key_file, sizeof(c->key_file), "%s/%s.key", opt.work, d->name);
		f = fopen(c->key_file, "w");
		if (f == NULL || fchmod(fileno(f), 0600) != 0 ||
		    !PEM_write_PrivateKey(f, d->identity, NULL, NULL, 0, NULL, NULL) ||
		    fclose(f) != 0)
			die("%s: %s", c->key_file, strerror(errno));
	} else {
		unlink(crt_path);
	}
}

/* Enrolls every device, FLEET_ENROLL_JOBS `enroll` processes at a time. */
static void enroll_all(void)
{
	pid_t pids[FLEET_ENROLL_JOBS] = { 0 };
	int who[FLEET_ENROLL_JOBS], running = 0;

	for (int i = 0; i < opt.ndevices || running > 0;) {
		if (i < opt.ndevices && running < FLEET_ENROLL_JOBS) {
			struct device *d = &devs[i];
			int slot = 0;

			snprintf(d->name, sizeof(d->name), "%s-%05d", opt.prefix, i);
			d->conn = i % opt.nconns;
			if (i < opt.nconns)
				conns[i].index = i;
			while (pids[slot] != 0)
				slot++;
			pids[slot] = enroll_start(d);
			who[slot] = i++;
			running++;
			continue;
		}
		{
			int status;
			pid_t pid = wait(&status);

			if (pid < 0)
				die("wait: %s", strerror(errno));
			for (int slot = 0; slot < FLEET_ENROLL_JOBS; slot++) {
				if (pids[slot] == pid) {
					pids[slot] = 0;
					running--;
					enroll_finish(&devs[who[slot]], status);
				}
			}
		}
	}
}

static void add_reference(const struct meas_log *log)
{
	char path[600], *json = meas_log_json(log);

	if (json == NULL)
		die("out of memory");
	snprintf(path, sizeof(path), "%s/reference.json", opt.work);
	write_file(path, json, 0644);
	free(json);
	/* Already there from an earlier run on this directory: that is the same reference. */
	if (run_service((const char *const[]){ "reference", "add", "-d", opt.svc, path, NULL }) !=
	    0)
		fprintf(stderr, "fleetsim: reference add failed (see %s/setup.log); going on\n",
			opt.work);
}

/* ---- evidence --------------------------------------------------------------------------- */

/* A fresh operational key's public half, PEM, into 'out'. */
static void op_public_pem(char *out, size_t cap)
{
	EVP_PKEY *op = new_key();
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long n;

	if (bio == NULL || !PEM_write_bio_PUBKEY(bio, op))
		die("cannot write a public key");
	n = BIO_get_mem_data(bio, &data);
	if (n <= 0 || (size_t)n >= cap)
		die("public key too long");
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	BIO_free(bio);
	EVP_PKEY_free(op);
}

static char *build_evidence(struct device *d, const struct meas_log *log, int64_t iat_s)
{
	static struct evidence ev; /* the main thread's only */
	char *env;

	memset(&ev, 0, sizeof(ev));
	memcpy(ev.nonce, d->nonce, NONCE_LEN);
	memcpy(ev.ueid, d->ueid, UEID_LEN);
	snprintf(ev.name, sizeof(ev.name), "%s", d->name);
	snprintf(ev.swversion, sizeof(ev.swversion), "0.1.0");
	ev.iat = iat_s;
	ev.log = *log;
	op_public_pem(ev.op_pub, sizeof(ev.op_pub));
	env = evidence_envelope_build(&ev, sim_sign_with, d->identity);
	if (env == NULL)
		die("%s: cannot build the evidence", d->name);
	return env;
}

/* ---- MQTT ------------------------------------------------------------------------------- */

static void on_trace(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
	(void)level;
	mqtt_trace_nodelay(message); /* TCP_NODELAY on each new socket, as guardian does */
}

static void on_connect_ok(void *context, MQTTAsync_successData *response)
{
	(void)context;
	(void)response;
	pthread_mutex_lock(&lock);
	connected++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void on_connect_failed(void *context, MQTTAsync_failureData *response)
{
	struct conn *c = context;

	fprintf(stderr, "fleetsim: connection %d: cannot connect: %s (code %d)\n", c->index,
		response && response->message ? response->message : "refused or failed",
		response ? response->code : 0);
	pthread_mutex_lock(&lock);
	connect_failed++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void on_lost(void *context, char *cause)
{
	struct conn *c = context;

	fprintf(stderr, "fleetsim: connection %d lost: %s\n", c->index, cause ? cause : "?");
	pthread_mutex_lock(&lock);
	lost++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void on_subscribe_ok(void *context, MQTTAsync_successData *response)
{
	(void)context;
	(void)response;
	pthread_mutex_lock(&lock);
	subscribed++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *response)
{
	(void)context;
	(void)response;
	pthread_mutex_lock(&lock);
	subscribe_failed++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

/* "guardian/<prefix>-<index>/attest/<kind>": the device's index, or -1. */
static int topic_device(const char *topic, size_t len, bool *is_result)
{
	size_t plen = strlen(opt.prefix);
	const char *p = topic + 9, *end = topic + len;
	long index = 0;

	if (len < 9 + plen + 2 || strncmp(topic, "guardian/", 9) != 0 ||
	    strncmp(p, opt.prefix, plen) != 0 || p[plen] != '-')
		return -1;
	for (p += plen + 1; p < end && *p >= '0' && *p <= '9'; p++)
		index = index * 10 + (*p - '0');
	if (index >= opt.ndevices || (size_t)(end - p) < 8 || strncmp(p, "/attest/", 8) != 0)
		return -1;
	p += 8;
	if ((size_t)(end - p) == 6 && strncmp(p, "result", 6) == 0)
		*is_result = true;
	else if ((size_t)(end - p) == 5 && strncmp(p, "nonce", 5) == 0)
		*is_result = false;
	else
		return -1;
	return (int)index;
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
	size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
	struct msg *msg = xcalloc(1, sizeof(*msg));
	bool is_result = false;
	int dev = topic_device(topic, tlen, &is_result);

	(void)context;
	msg->dev = dev;
	msg->is_result = is_result;
	msg->len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	msg->payload = xcalloc(1, msg->len + 1);
	memcpy(msg->payload, m->payload, msg->len);
	pthread_mutex_lock(&lock);
	if (q_tail != NULL)
		q_tail->next = msg;
	else
		q_head = msg;
	q_tail = msg;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void publish(struct device *d, const char *what, const char *payload)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	char topic[160];
	int rc;

	snprintf(topic, sizeof(topic), "guardian/%s/attest/%s", d->name, what);
	msg.payload = (void *)(uintptr_t)payload; /* Paho copies it, never writes it */
	msg.payloadlen = (int)strlen(payload);
	msg.qos = 1;
	rc = MQTTAsync_sendMessage(conns[d->conn].client, topic, &msg, NULL);
	if (rc != MQTTASYNC_SUCCESS)
		fprintf(stderr, "fleetsim: %s: cannot publish: %s\n", topic,
			MQTTAsync_strerror(rc));
}

/* Waits until counter() reaches 'want' (or a failure counter moves); false on failure. */
static bool wait_for(int *counter, int want, int *failures, int timeout_ms)
{
	int64_t end = mono_us() / 1000 + timeout_ms;
	bool ok;

	pthread_mutex_lock(&lock);
	while (*counter < want && *failures == 0 && mono_us() / 1000 < end && !stop_signal) {
		int64_t ms = mono_us() / 1000 + 100;
		struct timespec until = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

		pthread_cond_timedwait(&cond, &lock, &until);
	}
	ok = *counter >= want && *failures == 0;
	pthread_mutex_unlock(&lock);
	return ok;
}

static void connect_all(void)
{
	char uri[300];
	int nsubs = 0;

	snprintf(uri, sizeof(uri), "ssl://%s:%d", opt.host, opt.port);
	MQTTAsync_setTraceCallback(on_trace);
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_MINIMUM); /* for the new-socket line only */
	for (int k = 0; k < opt.nconns; k++) {
		struct conn *c = &conns[k];
		MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
		MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
		MQTTAsync_SSLOptions ssl;
		char id[64];

		snprintf(id, sizeof(id), "fleetsim-%ld-%d", (long)getpid(), k);
		create.MQTTVersion = MQTTVERSION_3_1_1;
		/* Paho refuses a publish while this many wait to be sent (100 by default). */
		create.maxBufferedMessages = 100000;
		if (MQTTAsync_createWithOptions(&c->client, uri, id, MQTTCLIENT_PERSISTENCE_NONE,
						NULL, &create) != MQTTASYNC_SUCCESS ||
		    MQTTAsync_setCallbacks(c->client, c, on_lost, on_message, NULL) !=
			    MQTTASYNC_SUCCESS)
			die("cannot create an MQTT client for %s", uri);
		mqtt_tls_options(&ssl, &(struct mqtt_tls){ .ca_file = opt.ca,
							   .cert_file = c->cert_file,
							   .key_file = c->key_file });
		co.keepAliveInterval = 30;
		co.cleansession = 1;
		co.connectTimeout = 10;
		co.MQTTVersion = MQTTVERSION_3_1_1;
		co.ssl = &ssl;
		co.onSuccess = on_connect_ok;
		co.onFailure = on_connect_failed;
		co.context = c;
		if (MQTTAsync_connect(c->client, &co) != MQTTASYNC_SUCCESS)
			die("cannot start connecting to %s", uri);
		/* One at a time: the SSL options live on this stack frame. */
		if (!wait_for(&connected, k + 1, &connect_failed, 15000))
			die("connection %d to %s failed", k, uri);
	}
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
	/* Each connection listens for its own devices' nonce and result topics. */
	for (int k = 0; k < opt.nconns; k++) {
		char *topics[FLEET_SUBSCRIBE_CHUNK];
		int qos[FLEET_SUBSCRIBE_CHUNK], n = 0;

		for (int i = k; i < opt.ndevices; i += opt.nconns) {
			for (int j = 0; j < 2; j++) {
				topics[n] = xcalloc(1, 160);
				snprintf(topics[n], 160, "guardian/%s/attest/%s", devs[i].name,
					 j == 0 ? "nonce" : "result");
				qos[n++] = 1;
			}
			if (n == FLEET_SUBSCRIBE_CHUNK || i + opt.nconns >= opt.ndevices) {
				MQTTAsync_responseOptions ro =
					MQTTAsync_responseOptions_initializer;

				ro.onSuccess = on_subscribe_ok;
				ro.onFailure = on_subscribe_failed;
				ro.context = &conns[k];
				if (MQTTAsync_subscribeMany(conns[k].client, n, topics, qos, &ro) !=
				    MQTTASYNC_SUCCESS)
					die("cannot subscribe");
				nsubs++;
				for (int t = 0; t < n; t++)
					free(topics[t]);
				n = 0;
			}
		}
	}
	if (!wait_for(&subscribed, nsubs, &subscribe_failed, 30000))
		die("the broker did not acknowledge every subscription");
}

/* ---- the rounds ------------------------------------------------------------------------- */

static void count_reason(const char *reason)
{
	for (int i = 0; i < FLEET_REASONS; i++) {
		if (st.reasons[i][0] == '\0')
			snprintf(st.reasons[i], sizeof(st.reasons[i]), "%s", reason);
		if (strcmp(st.reasons[i], reason) == 0) {
			st.reason_n[i]++;
			return;
		}
	}
}

static void push_latency(int64_t us)
{
	if (st.nlat == st.cap_lat) {
		st.cap_lat = st.cap_lat ? st.cap_lat * 2 : 4096;
		st.lat_us = realloc(st.lat_us, st.cap_lat * sizeof(*st.lat_us));
		if (st.lat_us == NULL)
			die("out of memory");
	}
	st.lat_us[st.nlat++] = us;
}

static void push_nonce(const uint8_t nonce[NONCE_LEN])
{
	if (st.nnonces == st.cap_nonces) {
		st.cap_nonces = st.cap_nonces ? st.cap_nonces * 2 : 4096;
		st.nonces = realloc(st.nonces, st.cap_nonces * sizeof(*st.nonces));
		if (st.nonces == NULL)
			die("out of memory");
	}
	memcpy(st.nonces[st.nnonces++], nonce, NONCE_LEN);
}

static int outstanding;

static void start_round(struct device *d, enum round_kind kind, int64_t now_ms)
{
	d->kind = kind;
	d->state = DEV_HELLO;
	d->started_us = mono_us();
	d->deadline_ms = now_ms + opt.timeout_ms;
	d->round_ok = d->round_replayed = d->round_other = 0;
	outstanding++;
	if (kind == ROUND_REPLAY) {
		/* The accepted envelope again, as it was. */
		d->state = DEV_EVIDENCE;
		d->pending = 1;
		st.replay_sent++;
		publish(d, "evidence", d->accepted);
		return;
	}
	st.started++;
	d->retry_ms = opt.hello_retry_ms;
	d->next_hello_ms = now_ms + d->retry_ms; /* unanswered_hellos carry over: late nonces */
	publish(d, "hello", "{\"swversion\":\"0.1.0\"}");
}

static void end_round(struct device *d)
{
	if (d->kind == ROUND_RACE) {
		if (d->round_ok == 1)
			st.race_one_ok++;
		else if (d->round_ok > 1)
			st.race_two_ok++;
		else
			st.race_none_ok++;
	}
	d->state = DEV_IDLE;
	outstanding--;
}

static void on_nonce(struct device *d, const struct msg *m, const struct meas_log *log)
{
	int64_t expires;
	char *env;

	if (d->state != DEV_HELLO && d->unanswered_hellos > 0) {
		/* The answer to a hello sent again: the round goes on with the first nonce. */
		d->unanswered_hellos--;
		st.extra_nonces++;
		return;
	}
	if (d->state != DEV_HELLO ||
	    attest_nonce_parse(m->payload, m->len, d->nonce, &expires) != 0) {
		st.stray++;
		return;
	}
	env = build_evidence(d, log, gd_now_ms() / 1000);
	d->state = DEV_EVIDENCE;
	d->pending = 1;
	publish(d, "evidence", env);
	if (d->kind == ROUND_RACE) {
		/* The same nonce in other claims (iat one second on): a second signature, at once.
		 */
		char *second = build_evidence(d, log, gd_now_ms() / 1000 + 1);

		d->pending = 2;
		st.race_sent++;
		publish(d, "evidence", second);
		free(second);
		free(env);
		return;
	}
	free(d->accepted);
	d->accepted = env; /* kept until the result says whether it was accepted */
}

static void on_result(struct device *d, const struct msg *m)
{
	struct attest_result res;

	if (d->state != DEV_EVIDENCE || d->pending <= 0) {
		st.stray++;
		return;
	}
	attest_result_parse(m->payload, m->len, &res);
	if (d->kind == ROUND_REPLAY) {
		if (res.ok)
			st.replay_accepted++;
		else if (strcmp(res.reason, "replayed_nonce") == 0)
			st.replay_refused++;
		else
			st.replay_other++;
		free(d->accepted);
		d->accepted = NULL; /* replayed once */
	} else if (res.ok) {
		st.ok++;
		d->round_ok++;
		push_nonce(d->nonce);
		if (d->kind == ROUND_NORMAL) {
			st.last_ok_us = mono_us();
			push_latency(st.last_ok_us - d->started_us);
		}
	} else {
		st.refused++;
		count_reason(res.reason[0] ? res.reason : "unparsable");
		if (d->kind == ROUND_NORMAL) {
			free(d->accepted);
			d->accepted = NULL;
		}
	}
	attest_result_free(&res);
	if (--d->pending == 0)
		end_round(d);
}

static void check_timeouts(int64_t now_ms)
{
	for (int i = 0; i < opt.ndevices; i++) {
		struct device *d = &devs[i];

		if (d->state == DEV_HELLO && opt.hello_retry_ms > 0 && now_ms >= d->next_hello_ms &&
		    now_ms <= d->deadline_ms) {
			/* As guardian does: the hello again, with backoff, until a nonce comes. */
			d->unanswered_hellos++;
			st.hello_retries++;
			d->retry_ms = d->retry_ms * 2 > 2000 ? 2000 : d->retry_ms * 2;
			d->next_hello_ms = now_ms + d->retry_ms;
			publish(d, "hello", "{\"swversion\":\"0.1.0\"}");
		}
		if ((d->state == DEV_HELLO || d->state == DEV_EVIDENCE) &&
		    now_ms > d->deadline_ms) {
			st.timed_out++;
			if (st.timed_out <= 20)
				fprintf(stderr, "fleetsim: %s: no %s within %d ms\n", d->name,
					d->state == DEV_HELLO ? "nonce" : "result", opt.timeout_ms);
			if (d->kind == ROUND_RACE && d->round_ok > 0)
				end_round(d); /* one answer came; the other is counted lost */
			else
				outstanding--;
			d->state = DEV_BURNED;
		}
	}
}

/* Drains the queue, waiting up to 'wait_ms' for something to arrive. */
static void pump(const struct meas_log *log, int wait_ms)
{
	struct msg *m;

	pthread_mutex_lock(&lock);
	if (q_head == NULL && wait_ms > 0) {
		int64_t ms = mono_us() / 1000 + wait_ms;
		struct timespec until = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

		pthread_cond_timedwait(&cond, &lock, &until);
	}
	m = q_head;
	q_head = q_tail = NULL;
	pthread_mutex_unlock(&lock);
	while (m != NULL) {
		struct msg *next = m->next;

		if (m->dev < 0)
			st.stray++;
		else if (m->is_result)
			on_result(&devs[m->dev], m);
		else
			on_nonce(&devs[m->dev], m, log);
		free(m->payload);
		free(m);
		m = next;
	}
}

/*
 * Keeps 'window' rounds of 'kind' outstanding on idle devices until 'total' were started (or,
 * with total < 0, until 'seconds' passed), then waits for the last ones.
 */
static void run_rounds(enum round_kind kind, long total, double seconds, const struct meas_log *log)
{
	int64_t end_ms = gd_mono_ms() + (int64_t)(seconds * 1000), last_scan = 0;
	long begun = 0;
	int cursor = 0;

	for (;;) {
		int64_t now = gd_mono_ms();
		bool more = !stop_signal && (total >= 0 ? begun < total : now < end_ms);

		while (more && outstanding < opt.window) {
			struct device *d = NULL;

			for (int tries = 0; tries < opt.ndevices && d == NULL; tries++) {
				struct device *c = &devs[cursor];

				cursor = (cursor + 1) % opt.ndevices;
				if (c->state == DEV_IDLE && (kind != ROUND_REPLAY || c->accepted))
					d = c;
			}
			if (d == NULL) {
				if (outstanding == 0)
					more = false; /* no device left to start one on */
				break;
			}
			start_round(d, kind, now);
			begun++;
			more = total >= 0 ? begun < total : now < end_ms;
		}
		if (!more && outstanding == 0)
			break;
		if (stop_signal && outstanding == 0)
			break;
		pump(log, 20);
		now = gd_mono_ms();
		if (now - last_scan >= 100) {
			check_timeouts(now);
			last_scan = now;
		}
		if (!more && lost > 0)
			break;
	}
}

static int compare_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int compare_nonce(const void *a, const void *b)
{
	return memcmp(a, b, NONCE_LEN);
}

static double percentile_ms(double p)
{
	size_t i;

	if (st.nlat == 0)
		return 0;
	i = (size_t)(p * (double)(st.nlat - 1) + 0.5);
	return (double)st.lat_us[i] / 1000.0;
}

static void report(void)
{
	double secs = (double)(st.t1_us - st.t0_us) / 1e6;
	/* Rounds that time out at the end would otherwise count their wait as work time. */
	double rate_secs = (double)((st.last_ok_us ? st.last_ok_us : st.t1_us) - st.t0_us) / 1e6;
	long twice = 0;

	qsort(st.lat_us, st.nlat, sizeof(*st.lat_us), compare_i64);
	qsort(st.nonces, st.nnonces, sizeof(*st.nonces), compare_nonce);
	for (size_t i = 1; i < st.nnonces; i++)
		twice += memcmp(st.nonces[i - 1], st.nonces[i], NONCE_LEN) == 0;
	printf("fleetsim: %d devices on %d connections, window %d, %.2f s of rounds\n",
	       opt.ndevices, opt.nconns, opt.window, secs);
	printf("fleetsim: %ld rounds started, %ld accepted, %ld refused, %ld timed out, %ld stray "
	       "messages\n",
	       st.started, st.ok, st.refused, st.timed_out, st.stray);
	if (opt.hello_retry_ms > 0)
		printf("fleetsim: %ld hellos sent again (no nonce within the backoff), %ld nonces "
		       "that answered one\n",
		       st.hello_retries, st.extra_nonces);
	for (int i = 0; i < FLEET_REASONS && st.reasons[i][0]; i++)
		printf("fleetsim:   refused %s: %ld\n", st.reasons[i], st.reason_n[i]);
	printf("fleetsim: hello to certificate: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f "
	       "ms (%zu rounds)\n",
	       percentile_ms(0.5), percentile_ms(0.9), percentile_ms(0.99), percentile_ms(1.0),
	       st.nlat);
	printf("fleetsim: %.1f attestations/s (to the last accepted round, %.2f s)\n",
	       rate_secs > 0 ? (double)st.nlat / rate_secs : 0, rate_secs);
	if (opt.replay > 0)
		printf("fleetsim: %ld accepted evidences replayed: %ld refused replayed_nonce, %ld "
		       "accepted, %ld refused otherwise\n",
		       st.replay_sent, st.replay_refused, st.replay_accepted, st.replay_other);
	if (opt.race > 0)
		printf("fleetsim: %ld rounds with two evidences for one nonce: one accepted in "
		       "%ld, "
		       "both in %ld, none in %ld\n",
		       st.race_sent, st.race_one_ok, st.race_two_ok, st.race_none_ok);
	printf("fleetsim-result: started=%ld ok=%ld refused=%ld timed_out=%ld stray=%ld "
	       "rounds=%zu seconds=%.3f rate=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f "
	       "max_ms=%.1f nonce_twice=%ld replay_sent=%ld replay_refused=%ld "
	       "replay_accepted=%ld replay_other=%ld race_sent=%ld race_one_ok=%ld "
	       "race_two_ok=%ld race_none_ok=%ld hello_retries=%ld\n",
	       st.started, st.ok, st.refused, st.timed_out, st.stray, st.nlat, secs,
	       rate_secs > 0 ? (double)st.nlat / rate_secs : 0, percentile_ms(0.5),
	       percentile_ms(0.9), percentile_ms(0.99), percentile_ms(1.0), twice, st.replay_sent,
	       st.replay_refused, st.replay_accepted, st.replay_other, st.race_sent, st.race_one_ok,
	       st.race_two_ok, st.race_none_ok, st.hello_retries);
	fflush(stdout);
}

static void usage(void)
{
	fputs("usage: fleetsim -d SVC_DIR --broker HOST:PORT --ca BROKER_CA --work DIR\n"
	      "                [--service-bin PATH] [--devices N] [--connections C] [--window W]\n"
	      "                [--rounds R | --seconds S] [--timeout-ms T] [--replay K] [--race "
	      "K]\n"
	      "                [--prefix NAME] [--hello-retry-ms MS]\n",
	      stderr);
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "broker", required_argument, NULL, 'b' },
		{ "ca", required_argument, NULL, 'a' },
		{ "work", required_argument, NULL, 'w' },
		{ "service-bin", required_argument, NULL, 's' },
		{ "devices", required_argument, NULL, 'n' },
		{ "connections", required_argument, NULL, 'c' },
		{ "window", required_argument, NULL, 'W' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "replay", required_argument, NULL, 'R' },
		{ "race", required_argument, NULL, 'X' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "hello-retry-ms", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	static char bin[600];
	const char *broker = NULL, *colon;
	int ch;

	opt.max_rounds = -1;
	while ((ch = getopt_long(argc, argv, "d:", longs, NULL)) != -1) {
		switch (ch) {
		case 'd':
			opt.svc = optarg;
			break;
		case 'b':
			broker = optarg;
			break;
		case 'a':
			opt.ca = optarg;
			break;
		case 'w':
			opt.work = optarg;
			break;
		case 's':
			opt.service_bin = optarg;
			break;
		case 'n':
			opt.ndevices = atoi(optarg);
			break;
		case 'c':
			opt.nconns = atoi(optarg);
			break;
		case 'W':
			opt.window = atoi(optarg);
			break;
		case 'r':
			opt.max_rounds = atol(optarg);
			break;
		case 'S':
			opt.seconds = atof(optarg);
			break;
		case 't':
			opt.timeout_ms = atoi(optarg);
			break;
		case 'R':
			opt.replay = atoi(optarg);
			break;
		case 'X':
			opt.race = atoi(optarg);
			break;
		case 'p':
			opt.prefix = optarg;
			break;
		case 'H':
			opt.hello_retry_ms = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (opt.svc == NULL || broker == NULL || opt.ca == NULL || opt.work == NULL ||
	    optind != argc || (colon = strrchr(broker, ':')) == NULL ||
	    (size_t)(colon - broker) >= sizeof(opt.host) || opt.ndevices < 1 || opt.nconns < 1 ||
	    opt.window < 1 || opt.timeout_ms < 1)
		usage();
	memcpy(opt.host, broker, (size_t)(colon - broker));
	opt.port = atoi(colon + 1);
	if (opt.nconns > opt.ndevices)
		opt.nconns = opt.ndevices;
	if (opt.service_bin == NULL) {
		const char *b = getenv("GUARDIAN_BUILD");

		snprintf(bin, sizeof(bin), "%s/guardian-service", b && *b ? b : "build");
		opt.service_bin = bin;
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	pthread_condattr_t attr;
	struct meas_log log;
	int64_t t;

	mqtt_tls_init();
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&cond, &attr);
	if (mkdir(opt.work, 0700) != 0 && errno != EEXIST)
		die("%s: %s", opt.work, strerror(errno));

	devs = xcalloc((size_t)opt.ndevices, sizeof(*devs));
	conns = xcalloc((size_t)opt.nconns, sizeof(*conns));
	t = mono_us();
	enroll_all();
	/* The log every device reports and the reference recorded for it. */
	if (sim_sample_log(&log, 0x21) != 0)
		die("meas_add");
	add_reference(&log);
	printf("fleetsim: %d devices enrolled in %.1f s\n", opt.ndevices,
	       (double)(mono_us() - t) / 1e6);
	connect_all();
	printf("fleetsim: %d connections up, %d devices subscribed\n", opt.nconns, opt.ndevices);

	st.t0_us = mono_us();
	run_rounds(ROUND_NORMAL, opt.max_rounds, opt.seconds, &log);
	st.t1_us = mono_us();
	if (opt.replay > 0 && !stop_signal)
		run_rounds(ROUND_REPLAY, opt.replay, 0, &log);
	if (opt.race > 0 && !stop_signal)
		run_rounds(ROUND_RACE, opt.race, 0, &log);
	report();

	for (int k = 0; k < opt.nconns; k++) {
		MQTTAsync_disconnectOptions dopts = MQTTAsync_disconnectOptions_initializer;

		dopts.timeout = 1000;
		MQTTAsync_disconnect(conns[k].client, &dopts);
	}
	usleep(200 * 1000); /* the DISCONNECTs on their way */
	for (int k = 0; k < opt.nconns; k++)
		MQTTAsync_destroy(&conns[k].client);
	for (int i = 0; i < opt.ndevices; i++) {
		EVP_PKEY_free(devs[i].identity);
		free(devs[i].accepted);
	}
	free(devs);
	free(conns);
	free(st.lat_us);
	free(st.nonces);
	return 0;
}
