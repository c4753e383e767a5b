/* bench_attest_recovery.c: how soon attested telemetry flows again after the broker restarts:
 * mosquitto with its two listeners is stopped and started again on the same ports, measured from
 * the moment the telemetry listener accepts connections again to the first telemetry message at
 * a subscriber. Two cases: guardian keeps running (its operational certificate stays valid: only
 * the uplink reconnects), and guardian restarts with the broker (a site power cycle, or a unit
 * bound to the broker's: it attests again at start while guardian-service is still reconnecting).
 * guardian polls a PLC every 100 ms, with the default reconnect and attestation settings.
 *
 * usage: bench_attest_recovery [RESTARTS [BUILD_DIR ...]]
 *   Each BUILD_DIR (default: $GUARDIAN_BUILD, else build) is measured in turn, with the tools of
 *   the source tree it lies in: an old worktree's build and this one's give before and after on
 *   the same machine in the same run. */
#include <MQTTAsync.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/harness/harness.h"

#define DEVICE		"bench-recovery"
#define MAX_RESTARTS	100
#define MAX_BUILDS	4
#define RECOVERY_MAX_MS 30000 /* beyond this a restart counts as not recovered */
#define SETTLE_MS	1500  /* between restarts: the uplink back to its steady state */

/* The subscriber: a backend on the telemetry listener, in this process. */
struct sub {
	MQTTAsync client;
	pthread_mutex_t lock;
	bool subscribed, failed;
	int64_t first_ms; /* monotonic ms of the first telemetry message; 0: none yet */
	uint64_t messages;
};

/* One case's restarts. */
struct series {
	long recovery_ms[MAX_RESTARTS]; /* broker back to the first telemetry at the subscriber */
	long ready_ms[MAX_RESTARTS];	/* broker back to the subscriber subscribed */
	int n, lost; /* measured restarts; restarts with no telemetry within RECOVERY_MAX_MS */
	size_t rounds, hellos_again; /* attestation rounds and repeated hellos they cost */
};

struct result {
	const char *build;
	struct series alone, with_guardian;
};

static void on_subscribed(void *ctx, MQTTAsync_successData *resp)
{
	struct sub *s = ctx;

	(void)resp;
	pthread_mutex_lock(&s->lock);
	s->subscribed = true;
	pthread_mutex_unlock(&s->lock);
}

static void on_failed(void *ctx, MQTTAsync_failureData *resp)
{
	struct sub *s = ctx;

	(void)resp;
	pthread_mutex_lock(&s->lock);
	s->failed = true;
	pthread_mutex_unlock(&s->lock);
}

static void on_connected(void *ctx, MQTTAsync_successData *resp)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	struct sub *s = ctx;

	(void)resp;
	ro.onSuccess = on_subscribed;
	ro.onFailure = on_failed;
	ro.context = s;
	if (MQTTAsync_subscribe(s->client, "guardian/" DEVICE "/telemetry", 1, &ro) !=
	    MQTTASYNC_SUCCESS)
		on_failed(s, NULL);
}

static int on_message(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
	struct sub *s = ctx;
	int64_t now = h_ms();

	(void)tlen;
	pthread_mutex_lock(&s->lock);
	if (s->first_ms == 0)
		s->first_ms = now;
	s->messages++;
	pthread_mutex_unlock(&s->lock);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/*
 * Connects as the viewer and subscribes to the device's telemetry; 0 once subscribed. Paho's
 * threads start with this process's only client, so its first connection is not held up by
 * their one-second cycle.
 */
static int sub_open(struct sub *s, const struct h_attest *b)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	char uri[64], ca[300], crt[300], key[300];
	int64_t end = h_ms() + 10000;
	bool done = false, ok = false;

	snprintf(uri, sizeof(uri), "ssl://localhost:%d", b->tport);
	snprintf(ca, sizeof(ca), "%s", h_path("pki/ca.crt"));
	snprintf(crt, sizeof(crt), "%s/viewer.crt", b->brk);
	snprintf(key, sizeof(key), "%s/viewer.key", b->brk);
	pthread_mutex_lock(&s->lock);
	s->subscribed = s->failed = false;
	s->first_ms = 0;
	pthread_mutex_unlock(&s->lock);
	if (MQTTAsync_create(&s->client, uri, "bench-viewer", MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
		    MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(s->client, s, NULL, on_message, NULL) != MQTTASYNC_SUCCESS)
		return -1;
	ssl.trustStore = ca;
	ssl.keyStore = crt;
	ssl.privateKey = key;
	ssl.enableServerCertAuth = 1;
	co.ssl = &ssl;
	co.cleansession = 1;
	co.connectTimeout = 5;
	co.onSuccess = on_connected;
	co.onFailure = on_failed;
	co.context = s;
	if (MQTTAsync_connect(s->client, &co) != MQTTASYNC_SUCCESS)
		return -1;
	while (!done && h_ms() < end) {
		h_sleep_ms(1);
		pthread_mutex_lock(&s->lock);
		done = s->subscribed || s->failed;
		ok = s->subscribed;
		pthread_mutex_unlock(&s->lock);
	}
	return ok ? 0 : -1;
}

static void sub_close(struct sub *s)
{
	if (s->client != NULL)
		MQTTAsync_destroy(&s->client);
}

static int64_t sub_first(struct sub *s)
{
	int64_t t;

	pthread_mutex_lock(&s->lock);
	t = s->first_ms;
	pthread_mutex_unlock(&s->lock);
	return t;
}

static int compare(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static long median(long *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), compare);
	return n > 0 ? v[(n - 1) / 2] : -1;
}

static long maximum(const long *v, int n)
{
	long m = -1;

	for (int i = 0; i < n; i++)
		if (v[i] > m)
			m = v[i];
	return m;
}

/* The source tree a build directory lies in: the nearest parent with tools/attest-broker.sh. */
static void source_of(const char *build, char *out, size_t cap)
{
	char dir[PATH_MAX], probe[PATH_MAX + 32];

	if (realpath(build, dir) != NULL) {
		for (char *slash; (slash = strrchr(dir, '/')) != NULL && slash != dir;) {
			*slash = '\0';
			snprintf(probe, sizeof(probe), "%s/tools/attest-broker.sh", dir);
			if (access(probe, R_OK) == 0) {
				snprintf(out, cap, "%s", dir);
				return;
			}
		}
	}
	snprintf(out, cap, "%s", h_src());
}

/* The broker as h_attest_up started it, on the same ports. */
static pid_t broker_start(const struct h_attest *b)
{
	char conf[300];
	const char *argv[] = { "mosquitto", "-c", conf, NULL };

	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->brk);
	return h_spawn(h_path("mosquitto.log"), argv);
}

/* Polls the telemetry listener every 2 ms; the time it first accepts, or -1. */
static int64_t broker_back(int port)
{
	int64_t end = h_ms() + 10000;

	while (h_ms() < end) {
		if (h_wait_port(port, 0) == 0)
			return h_ms();
		h_sleep_ms(2);
	}
	return -1;
}

/* Attestation rounds guardian has ended so far, by its log. */
static size_t rounds_in_log(void)
{
	return h_count(h_path("guardian.log"), "attested; certificate valid") +
	       h_count(h_path("guardian.log"), "attestation failed");
}

/* Waits until telemetry flows, then closes the subscriber: a fresh one after the restart. */
static void sub_settle(struct sub *s)
{
	int64_t end = h_ms() + 10000;

	while (sub_first(s) == 0 && h_ms() < end)
		h_sleep_ms(10);
	sub_close(s);
}

/*
 * One restart of the broker (and of guardian with it if 'with_guardian'); adds its recovery to
 * 'ser'. -1 if the broker or the subscriber did not come back.
 */
static int restart_once(struct h_attest *b, struct sub *s, bool with_guardian, struct series *ser)
{
	int64_t back, ready;

	sub_settle(s);
	if (with_guardian)
		h_stop(b->gd, 10000);
	h_stop(b->broker, 5000);
	b->broker = broker_start(b);
	back = b->broker > 0 ? broker_back(b->tport) : -1;
	if (back < 0)
		return -1;
	if (with_guardian && (b->gd = h_guardian(b->site, h_path("guardian.log"))) <= 0)
		return -1;
	if (sub_open(s, b) != 0)
		return -1;
	ready = h_ms();
	while (sub_first(s) == 0 && h_ms() < back + RECOVERY_MAX_MS)
		h_sleep_ms(1);
	if (sub_first(s) == 0) {
		ser->lost++;
		return 0;
	}
	ser->recovery_ms[ser->n] = (long)(sub_first(s) - back);
	ser->ready_ms[ser->n++] = (long)(ready - back);
	h_sleep_ms(SETTLE_MS);
	return 0;
}

static int run_series(struct h_attest *b, struct sub *s, bool with_guardian, int restarts,
		      struct series *ser)
{
	size_t rounds = rounds_in_log(), hellos = h_count(h_path("guardian.log"), "hello again");

	for (int i = 0; i < restarts; i++)
		if (restart_once(b, s, with_guardian, ser) != 0) {
			fprintf(stderr,
				"bench: the broker or the subscriber did not come back; see %s\n",
				h_path("mosquitto.log"));
			return -1;
		}
	ser->rounds = rounds_in_log() - rounds;
	ser->hellos_again = h_count(h_path("guardian.log"), "hello again") - hellos;
	return 0;
}

static int measure(const char *build, int restarts, struct result *r)
{
	char src[PATH_MAX];
	struct h_attest b;
	struct sub s = { .lock = PTHREAD_MUTEX_INITIALIZER };
	int rc = -1;

	memset(r, 0, sizeof(*r));
	r->build = build;
	source_of(build, src, sizeof(src));
	setenv("GUARDIAN_BUILD", build, 1);
	setenv("GUARDIAN_SRC", src, 1);
	if (h_pki(DEVICE) != 0 || h_attest_up(&b, 86400) != 0) {
		fprintf(stderr, "bench: setup failed for %s; see %s\n", build, h_path("steps.log"));
		goto out;
	}
	h_attest_site(&b, DEVICE, "");
	/* What a site gets: the default delays and timeouts, not the tests' short ones. */
	if (h_sh("sed -i -e 's/\"reconnect_min_ms\":[0-9]*,\"reconnect_max_ms\":[0-9]*,//' "
		 "-e 's/,\"timeout_ms\":[0-9]*,\"retry_min_ms\":[0-9]*,\"retry_max_ms\":[0-9]*//' "
		 "%s",
		 b.site) != 0 ||
	    h_sh("! grep -q -e reconnect_min_ms -e timeout_ms %s", b.site) != 0 ||
	    h_attest_enroll(&b) != 0 || h_attest_serve(&b) != 0 ||
	    (b.gd = h_guardian(b.site, h_path("guardian.log"))) <= 0 ||
	    h_wait_contains(h_path("guardian.log"), "attested; certificate valid", 30000) != 0 ||
	    sub_open(&s, &b) != 0) {
		fprintf(stderr, "bench: no attested telemetry with %s; see %s and %s\n", build,
			h_path("steps.log"), h_path("guardian.log"));
		goto out;
	}
	if (run_series(&b, &s, false, restarts, &r->alone) != 0 ||
	    run_series(&b, &s, true, restarts, &r->with_guardian) != 0)
		goto out;
	rc = 0;
out:
	sub_close(&s);
	h_cleanup();
	return rc;
}

static void report(const char *what, struct series *ser)
{
	long max = maximum(ser->recovery_ms, ser->n);

	printf("    %-28s median %5ld ms, max %5ld ms over %d restarts%s; subscriber ready after "
	       "%ld ms; attestation rounds %zu, hellos repeated %zu\n",
	       what, median(ser->recovery_ms, ser->n), max, ser->n,
	       ser->lost ? " (some never recovered)" : "", median(ser->ready_ms, ser->n),
	       ser->rounds, ser->hellos_again);
}

/* "median / max ms" of a series, for the table row. */
static const char *cell(struct series *ser, char *buf, size_t cap)
{
	snprintf(buf, cap, "%ld / %ld ms", median(ser->recovery_ms, ser->n),
		 maximum(ser->recovery_ms, ser->n));
	return buf;
}

int main(int argc, char **argv)
{
	int restarts = argc > 1 ? atoi(argv[1]) : 10;
	static struct result results[MAX_BUILDS];
	const char *builds[MAX_BUILDS];
	char c1[64], c2[64];
	int nbuilds = 0, failed = 0;

	if (restarts < 1 || restarts > MAX_RESTARTS)
		restarts = 10;
	for (int i = 2; i < argc && nbuilds < MAX_BUILDS; i++)
		builds[nbuilds++] = argv[i];
	if (nbuilds == 0)
		builds[nbuilds++] = h_build();
	signal(SIGPIPE, SIG_IGN);
	printf("broker restart (stopped, started on the same ports) to the first telemetry at a "
	       "subscriber:\n");
	fflush(stdout);
	for (int i = 0; i < nbuilds; i++) {
		if (measure(builds[i], restarts, &results[i]) != 0) {
			failed = 1;
			continue;
		}
		printf("  %s:\n", builds[i]);
		report("guardian kept running:", &results[i].alone);
		report("guardian restarted with it:", &results[i].with_guardian);
		fflush(stdout);
	}
	if (failed)
		return 1;
	/* Rows for BENCHMARKS.md: median / max for each build, the first build first. */
	printf("| broker restart to telemetry (median / max of %d) |", restarts);
	for (int i = 0; i < nbuilds; i++)
		printf(" %s |", builds[i]);
	printf("\n| guardian kept running (certificate valid) |");
	for (int i = 0; i < nbuilds; i++)
		printf(" %s |", cell(&results[i].alone, c1, sizeof(c1)));
	printf("\n| guardian restarted with the broker (attests again) |");
	for (int i = 0; i < nbuilds; i++)
		printf(" %s |", cell(&results[i].with_guardian, c2, sizeof(c2)));
	printf("\n");
	return 0;
}
