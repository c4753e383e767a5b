/* publish.c: `guardian-service release publish` and `release status`: signed bundles delivered to
 * devices as retained messages on guardian/<id>/update/bundle, recorded in the store once the
 * broker acknowledged each (store_release_put), and the version each device said it runs in its
 * last accepted evidence (store_installed_put). */
#include <MQTTAsync.h>
#include <cjson/cJSON.h>
#include <mbedtls/sha256.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/json.h"
#include "../proto/bundle.h"
#include "../proto/mqtt_tls.h"
#include "service.h"

#define EXIT_USAGE	   2
#define PUBLISH_TIMEOUT_MS 15000 /* to connect, and for the broker's acknowledgements */
#define MAX_DEVICES	   4096

static const char publish_usage_text[] =
	"usage: guardian-service release publish -d DIR BUNDLE (--device ID [--device ID ...] | "
	"--all)\n"
	"       guardian-service release publish -d DIR --withdraw (--device ID ... | --all)\n"
	"       guardian-service release status -d DIR [--json]\n";

static int publish_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int publish_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "guardian-service: release ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fputs(publish_usage_text, stderr);
	return EXIT_USAGE;
}

/* ---- what a device runs ------------------------------------------------------------------- */

int registry_installed_json(const char *dev, const char *swversion, int64_t now_ms, char *buf,
			    size_t cap)
{
	const char *u = strstr(swversion, "+u");
	unsigned long long v = 0;
	struct jw w;
	size_t n;

	if (!conf_valid_name(dev) || dev[0] == '.')
		return GD_EINVAL;
	/* "0.1.0+u7": bundle version 7 (guardian/update.h); without the suffix, none installed. */
	if (u != NULL && u[2] >= '1' && u[2] <= '9' && strspn(u + 2, "0123456789") == strlen(u + 2))
		v = strtoull(u + 2, NULL, 10);
	jw_init(&w, buf, cap);
	jw_object(&w);
	jw_key(&w, "swversion");
	jw_string(&w, swversion);
	jw_key(&w, "update_version");
	if (v > 0)
		jw_uint(&w, v);
	else
		jw_null(&w);
	jw_key(&w, "ts");
	jw_int(&w, now_ms);
	jw_end(&w);
	n = jw_finish(&w);
	if (n == 0 || n + 1 >= cap)
		return GD_EINVAL;
	buf[n++] = '\n';
	buf[n] = '\0';
	return 0;
}

int registry_record_installed(struct store *st, const char *dev, const char *swversion,
			      int64_t now_ms)
{
	char buf[256], why[512];

	if (registry_installed_json(dev, swversion, now_ms, buf, sizeof(buf)) != 0)
		return GD_EINVAL;
	/* On the answer's path, and said again at the device's next round: the files store does
	 * not sync it; `release status` reads a lost or empty one as "never". */
	if (store_installed_put(st, dev, buf, why, sizeof(why)) != 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		return GD_EIO;
	}
	return 0;
}

/* The enrolled devices, sorted; malloc'd names into *out (at most MAX_DEVICES). How many, or -1
 * (said on stderr). */
static int enrolled(struct store *st, char ***out)
{
	char why[512];
	size_t n = 0;

	*out = NULL;
	if (store_device_list(st, out, &n, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: release: cannot list the devices: %s\n", why);
		return -1;
	}
	for (size_t i = MAX_DEVICES; i < n; i++)
		free((*out)[i]);
	return n > MAX_DEVICES ? MAX_DEVICES : (int)n;
}

static void free_names(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- publish --------------------------------------------------------------------------------- */

struct publisher {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int connect; /* 0 waiting, 1 connected, -1 failed */
	int outstanding;
	int failed;
	char fail_msg[256];
};

/* One device's message: the context of its callbacks. */
struct delivery {
	struct publisher *p;
	bool acked; /* the broker acknowledged it (and did not refuse it) */
};

static void on_connect_ok(void *context, MQTTAsync_successData5 *response)
{
	struct publisher *p = context;

	(void)response;
	pthread_mutex_lock(&p->lock);
	p->connect = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void on_connect_failed(void *context, MQTTAsync_failureData5 *response)
{
	struct publisher *p = context;

	pthread_mutex_lock(&p->lock);
	p->connect = -1;
	snprintf(p->fail_msg, sizeof(p->fail_msg), "%s (code %d)",
		 response && response->message ? response->message : "refused or failed",
		 response ? response->code : 0);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* MQTT 5: the broker says in its PUBACK when its ACL refused the message (3.1.1 would not). */
static void on_published(void *context, MQTTAsync_successData5 *response)
{
	struct delivery *d = context;
	struct publisher *p = d->p;

	pthread_mutex_lock(&p->lock);
	p->outstanding--;
	d->acked = response == NULL || response->reasonCode < 0x80;
	if (!d->acked) {
		p->failed++;
		snprintf(p->fail_msg, sizeof(p->fail_msg),
			 "the broker refused it: %s (reason 0x%02x; does its ACL let the service "
			 "write guardian/+/update/#? tools/attest-broker.sh)",
			 MQTTReasonCode_toString(response->reasonCode),
			 (unsigned)response->reasonCode);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void on_publish_failed(void *context, MQTTAsync_failureData5 *response)
{
	struct delivery *d = context;
	struct publisher *p = d->p;

	pthread_mutex_lock(&p->lock);
	p->outstanding--;
	p->failed++;
	snprintf(p->fail_msg, sizeof(p->fail_msg), "%s (reason 0x%02x)",
		 response && response->message ? response->message : "not acknowledged",
		 response ? (unsigned)response->reasonCode : 0u);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Waits until 'done' says so or the deadline passes; with p->lock held. False on timeout. */
static bool wait_until(struct publisher *p, int64_t deadline_ms, bool (*done)(struct publisher *))
{
	while (!done(p)) {
		int64_t left = deadline_ms - gd_mono_ms();
		struct timespec ts;

		if (left <= 0)
			return false;
		ts = (struct timespec){ .tv_sec = deadline_ms / 1000,
					.tv_nsec = (deadline_ms % 1000) * 1000000 };
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	return true;
}

static bool connect_done(struct publisher *p)
{
	return p->connect != 0;
}

static bool all_acked(struct publisher *p)
{
	return p->outstanding == 0;
}

/* The whole bundle file (binary) into *out; 0 or -1 with 'why'. */
static int read_bundle(const char *path, char **out, size_t *len, char *why, size_t cap)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;

	if (f == NULL || fstat(fileno(f), &st) != 0) {
		gd_whyf(why, cap, "cannot read %s: %s", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > (uint64_t)BUNDLE_MAX_FILE +
							      BUNDLE_MAX_MANIFEST +
							      BUNDLE_MAX_SIGS_TEXT + 4096) {
		gd_whyf(why, cap, "%s is %lld bytes: not a bundle MQTT can carry", path,
			(long long)st.st_size);
		fclose(f);
		return -1;
	}
	buf = malloc((size_t)st.st_size);
	if (buf == NULL || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		gd_whyf(why, cap, "cannot read %s: %s", path, buf ? "short read" : "out of memory");
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	*out = buf;
	*len = (size_t)st.st_size;
	return 0;
}

/* Connects to the attestation listener as the service and publishes 'payload' retained, QoS 1,
 * on guardian/<id>/update/bundle of each device; acked[i] tells whether the broker acknowledged
 * device i's. 0 when it acknowledged all, or 1 (said on stderr). */
static int publish_to(struct service *s, char *const *devs, int ndevs, const char *payload,
		      size_t len, bool *acked)
{
	struct delivery *deliveries = NULL;
	MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions ssl;
	struct publisher p = { .connect = 0 };
	char uri[512], client_id[128], host[64], cert[PATH_MAX], key[PATH_MAX];
	MQTTAsync client = NULL;
	pthread_condattr_t attr;
	int rc, status = 1;

	if (!service_path(cert, sizeof(cert), s->dir, "service.crt") ||
	    !service_path(key, sizeof(key), s->dir, "service.key")) {
		fprintf(stderr, "guardian-service: release publish: %s: path too long\n", s->dir);
		return 1;
	}
	snprintf(uri, sizeof(uri), "ssl://%s:%d", s->cfg.broker_host, s->cfg.broker_port);
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	snprintf(client_id, sizeof(client_id), "guardian-release-%s-%ld", host, (long)getpid());
	pthread_mutex_init(&p.lock, NULL);
	deliveries = calloc((size_t)ndevs, sizeof(*deliveries));
	for (int i = 0; i < ndevs; i++) {
		acked[i] = false;
		if (deliveries != NULL)
			deliveries[i].p = &p;
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p.cond, &attr);
	pthread_condattr_destroy(&attr);
	create.MQTTVersion = MQTTVERSION_5;
	if (deliveries == NULL) {
		fprintf(stderr, "guardian-service: release publish: out of memory\n");
		goto out;
	}
	rc = MQTTAsync_createWithOptions(&client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
					 &create);
	if (rc != MQTTASYNC_SUCCESS) {
		fprintf(stderr,
			"guardian-service: release publish: cannot create a client for %s: %s\n",
			uri, MQTTAsync_strerror(rc));
		client = NULL;
		goto out;
	}
	mqtt_tls_options(&ssl, &(struct mqtt_tls){ .ca_file = s->cfg.broker_ca_file,
						   .cert_file = cert,
						   .key_file = key });
	opts.keepAliveInterval = 30;
	opts.cleanstart = 1;
	opts.connectTimeout = PUBLISH_TIMEOUT_MS / 1000;
	opts.MQTTVersion = MQTTVERSION_5;
	opts.ssl = &ssl;
	opts.onSuccess5 = on_connect_ok;
	opts.onFailure5 = on_connect_failed;
	opts.context = &p;
	rc = MQTTAsync_connect(client, &opts);
	pthread_mutex_lock(&p.lock);
	if (rc != MQTTASYNC_SUCCESS) {
		p.connect = -1;
		snprintf(p.fail_msg, sizeof(p.fail_msg), "%s", MQTTAsync_strerror(rc));
	}
	if (!wait_until(&p, gd_mono_ms() + PUBLISH_TIMEOUT_MS + 2000, connect_done))
		snprintf(p.fail_msg, sizeof(p.fail_msg), "no answer in %d s",
			 PUBLISH_TIMEOUT_MS / 1000);
	if (p.connect != 1) {
		pthread_mutex_unlock(&p.lock);
		fprintf(stderr,
			"guardian-service: release publish: cannot connect to %s as %s (the "
			"service's "
			"certificate, on the attestation listener): %s\n",
			uri, client_id, p.fail_msg);
		goto out;
	}
	pthread_mutex_unlock(&p.lock);
	for (int i = 0; i < ndevs; i++) {
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		MQTTAsync_message msg = MQTTAsync_message_initializer;
		union {
			const char *in;
			void *out;
		} data = { .in = payload }; /* Paho copies it and does not write to it */
		char topic[160];

		snprintf(topic, sizeof(topic), "guardian/%s/update/bundle", devs[i]);
		msg.payload = len > 0 ? data.out : NULL;
		msg.payloadlen = (int)len;
		msg.qos = 1;
		msg.retained = 1;
		ro.onSuccess5 = on_published;
		ro.onFailure5 = on_publish_failed;
		ro.context = &deliveries[i];
		pthread_mutex_lock(&p.lock);
		p.outstanding++;
		pthread_mutex_unlock(&p.lock);
		rc = MQTTAsync_sendMessage(client, topic, &msg, &ro);
		if (rc != MQTTASYNC_SUCCESS) {
			pthread_mutex_lock(&p.lock);
			p.outstanding--;
			p.failed++;
			snprintf(p.fail_msg, sizeof(p.fail_msg), "cannot publish on %s: %s", topic,
				 MQTTAsync_strerror(rc));
			pthread_mutex_unlock(&p.lock);
		}
	}
	pthread_mutex_lock(&p.lock);
	if (!wait_until(&p, gd_mono_ms() + PUBLISH_TIMEOUT_MS, all_acked)) {
		p.failed += p.outstanding;
		snprintf(p.fail_msg, sizeof(p.fail_msg),
			 "%d not acknowledged by the broker in %d s", p.outstanding,
			 PUBLISH_TIMEOUT_MS / 1000);
	}
	if (p.failed > 0)
		fprintf(stderr, "guardian-service: release publish: %d of %d not published: %s\n",
			p.failed, ndevs, p.fail_msg);
	else
		status = 0;
	pthread_mutex_unlock(&p.lock);
	{
		MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;

		d.timeout = 1000;
		MQTTAsync_disconnect(client, &d);
		/* The disconnect is asynchronous: give it its moment before the client goes. */
		for (int i = 0; i < 20 && MQTTAsync_isConnected(client); i++)
			usleep(50000);
	}
out:
	/* No callback runs after the client is destroyed: the acknowledgements are final. */
	if (client != NULL)
		MQTTAsync_destroy(&client);
	for (int i = 0; deliveries != NULL && i < ndevs; i++)
		acked[i] = deliveries[i].acked;
	free(deliveries);
	pthread_cond_destroy(&p.cond);
	pthread_mutex_destroy(&p.lock);
	return status;
}

/*
 * Records in the store what the broker acknowledged: 'version' and 'sha256' published to each
 * device with acked[i], at 'now_ms'; with 'withdraw', its withdrawal, keeping the version and
 * hash of its record (none: version 0). 0, or 1 when a record failed (said on stderr).
 */
static int record_releases(struct store *st, char *const *devs, int ndevs, const bool *acked,
			   bool withdraw, uint64_t version, const char *sha256, int64_t now_ms)
{
	char why[512];
	int status = 0;

	for (int i = 0; i < ndevs; i++) {
		struct store_release r = { .version = version, .ts_ms = now_ms };
		int rc = 0;

		if (!acked[i])
			continue;
		if (withdraw) {
			rc = store_release_get(st, devs[i], &r, why, sizeof(why));
			if (rc == STORE_NOTFOUND)
				memset(&r, 0, sizeof(r));
			r.withdrawn = true;
			r.ts_ms = now_ms;
		} else {
			snprintf(r.sha256, sizeof(r.sha256), "%s", sha256);
		}
		if (rc >= 0)
			rc = store_release_put(st, devs[i], &r, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr,
				"guardian-service: release publish: %s: %s, but not recorded: %s\n",
				devs[i], withdraw ? "withdrawn" : "published", why);
			status = 1;
		}
	}
	return status;
}

int release_publish_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' }, { "device", required_argument, NULL, 'D' },
		{ "all", no_argument, NULL, 'a' },	 { "withdraw", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },	 { NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *bundle = NULL;
	char **devs = NULL, **all = NULL, *payload = NULL, why[512], sha256[65] = "";
	int ndevs = 0, nall = 0, ch, status = 1;
	uint64_t version = 0;
	bool *acked = NULL;
	bool every = false, withdraw = false;
	struct service *s = NULL;
	size_t len = 0;

	optind = 1;
	opterr = 0;
	devs = calloc(MAX_DEVICES, sizeof(*devs));
	if (devs == NULL)
		return 1;
	while ((ch = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'D':
			if (!conf_valid_name(optarg) || optarg[0] == '.') {
				status =
					publish_usage("publish: --device \"%s\" is not a device id "
						      "(1 to 63 of A-Z a-z 0-9 _ . -)",
						      optarg);
				goto out;
			}
			if (ndevs == MAX_DEVICES) {
				status = publish_usage("publish: more than %d --device",
						       MAX_DEVICES);
				goto out;
			}
			devs[ndevs++] = optarg;
			break;
		case 'a':
			every = true;
			break;
		case 'w':
			withdraw = true;
			break;
		case 'h':
			fputs(publish_usage_text, stdout);
			status = 0;
			goto out;
		case ':':
			status = publish_usage("publish: %s needs an argument", argv[optind - 1]);
			goto out;
		default:
			status = publish_usage("publish: %s: unknown option", argv[optind - 1]);
			goto out;
		}
	}
	if (dir == NULL) {
		status = publish_usage("publish: -d DIR (the service directory) is required");
		goto out;
	}
	if (withdraw ? optind != argc : optind + 1 != argc) {
		status = publish_usage(withdraw ? "publish --withdraw: takes no BUNDLE"
						: "publish: expected one BUNDLE");
		goto out;
	}
	if (every == (ndevs > 0)) {
		status = publish_usage("publish: expected --device ID (one or more) or --all");
		goto out;
	}
	if (!withdraw) {
		struct bundle_info info = { .manifest = NULL };
		enum bundle_refusal r;

		bundle = argv[optind];
		/* Its form only: the devices check the signatures (they hold the trust). */
		r = bundle_inspect(bundle, &info, why, sizeof(why));
		if (r != BUNDLE_OK) {
			fprintf(stderr,
				"guardian-service: release publish: %s: not a bundle (%s): %s\n",
				bundle, bundle_refusal_names[r], why);
			bundle_info_free(&info);
			goto out;
		}
		printf("bundle %s: version %llu for class %s, %zu file%s, %zu signature%s\n",
		       bundle, (unsigned long long)info.m.version, info.m.device_class,
		       info.m.nfiles, info.m.nfiles == 1 ? "" : "s", info.nsigs,
		       info.nsigs == 1 ? "" : "s");
		version = info.m.version;
		bundle_info_free(&info);
		if (read_bundle(bundle, &payload, &len, why, sizeof(why)) != 0) {
			fprintf(stderr, "guardian-service: release publish: %s\n", why);
			goto out;
		}
		{
			uint8_t digest[32];

			mbedtls_sha256_ret((const uint8_t *)payload, len, digest, 0);
			gd_hex_encode(digest, sizeof(digest), sha256);
		}
	}
	if (service_open(dir, &s, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: release publish: %s\n", why);
		goto out;
	}
	if (every) {
		nall = enrolled(s->store, &all);
		if (nall < 0)
			goto out;
		if (nall == 0) {
			fprintf(stderr,
				"guardian-service: release publish: --all: no device is enrolled "
				"in %s\n",
				dir);
			goto out;
		}
	} else {
		for (int i = 0; i < ndevs; i++) {
			char *cert = registry_lookup(s->store, devs[i]);

			/* Published all the same: the topic is the device's, enrolled later or not.
			 */
			if (cert == NULL)
				fprintf(stderr,
					"guardian-service: release publish: warning: %s is not "
					"enrolled in %s\n",
					devs[i], dir);
			free(cert);
		}
	}
	{
		char **to = every ? all : devs;
		int n = every ? nall : ndevs;

		acked = calloc((size_t)n, sizeof(*acked));
		if (acked == NULL) {
			fprintf(stderr, "guardian-service: release publish: out of memory\n");
			goto out;
		}
		status = publish_to(s, to, n, payload, len, acked);
		/* After the broker's acknowledgement, never before: a record claims a delivery. */
		if (record_releases(s->store, to, n, acked, withdraw, version, sha256,
				    gd_now_ms()) != 0)
			status = 1;
		for (int i = 0; i < n; i++)
			if (acked[i])
				printf("%s guardian/%s/update/bundle (retained)\n",
				       withdraw ? "withdrawn from" : "published on", to[i]);
	}
out:
	free(acked);
	service_free(s);
	free_names(all, nall);
	free(payload);
	free(devs);
	return status;
}

/* ---- status ---------------------------------------------------------------------------------- */

int release_status_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool json = false;
	char **names = NULL, why[512];
	struct store *st = NULL;
	cJSON *list = NULL;
	int n, ch;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(publish_usage_text, stdout);
			return 0;
		case ':':
			return publish_usage("status: %s needs an argument", argv[optind - 1]);
		default:
			return publish_usage("status: %s: unknown option", argv[optind - 1]);
		}
	}
	if (dir == NULL)
		return publish_usage("status: -d DIR (the service directory) is required");
	if (optind != argc)
		return publish_usage("status: unexpected argument \"%s\"", argv[optind]);
	if (service_store_open(dir, false, &st, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: release status: %s\n", why);
		return 1;
	}
	n = enrolled(st, &names);
	if (n < 0) {
		store_close(st);
		return 1;
	}
	if (json)
		list = cJSON_CreateArray();
	else
		printf("%-24s %-10s %-20s %-20s %-10s %s\n", "DEVICE", "INSTALLED", "SWVERSION",
		       "ATTESTED", "PUBLISHED", "STATE");
	for (int i = 0; i < n; i++) {
		char when[32] = "never";
		char *text = NULL;
		cJSON *doc;
		const cJSON *sw, *uv, *ts;
		struct store_release rel;
		bool published, pending;
		int rc;

		/* What was published to it: none, or not readable (said on stderr): "-". */
		rc = store_release_get(st, names[i], &rel, why, sizeof(why));
		if (rc < 0)
			fprintf(stderr, "guardian-service: release status: %s\n", why);
		published = rc == 0;

		/* Not there, or not readable: "never" (a failure said on stderr). */
		if (store_installed_get(st, names[i], &text, why, sizeof(why)) < 0)
			fprintf(stderr, "guardian-service: release status: %s\n", why);
		doc = text != NULL ? cJSON_Parse(text) : NULL;
		free(text);
		sw = cJSON_GetObjectItemCaseSensitive(doc, "swversion");
		uv = cJSON_GetObjectItemCaseSensitive(doc, "update_version");
		ts = cJSON_GetObjectItemCaseSensitive(doc, "ts");
		/* A bundle in force that the device has not said it runs (yet). */
		pending = published && !rel.withdrawn &&
			  !(cJSON_IsNumber(uv) && uv->valuedouble == (double)rel.version);
		if (cJSON_IsNumber(ts)) {
			time_t t = (time_t)(ts->valuedouble / 1000);
			struct tm tm;

			if (gmtime_r(&t, &tm) != NULL)
				strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
		if (json) {
			cJSON *o = cJSON_CreateObject();

			cJSON_AddStringToObject(o, "device", names[i]);
			if (cJSON_IsNumber(uv))
				cJSON_AddNumberToObject(o, "update_version", uv->valuedouble);
			else
				cJSON_AddNullToObject(o, "update_version");
			if (cJSON_IsString(sw))
				cJSON_AddStringToObject(o, "swversion", sw->valuestring);
			else
				cJSON_AddNullToObject(o, "swversion");
			if (cJSON_IsNumber(ts))
				cJSON_AddNumberToObject(o, "ts", ts->valuedouble);
			else
				cJSON_AddNullToObject(o, "ts");
			if (published) {
				cJSON_AddNumberToObject(o, "published_version",
							(double)rel.version);
				cJSON_AddStringToObject(o, "published_sha256", rel.sha256);
				cJSON_AddNumberToObject(o, "published_ts", (double)rel.ts_ms);
			} else {
				cJSON_AddNullToObject(o, "published_version");
				cJSON_AddNullToObject(o, "published_sha256");
				cJSON_AddNullToObject(o, "published_ts");
			}
			cJSON_AddBoolToObject(o, "withdrawn", published && rel.withdrawn);
			cJSON_AddBoolToObject(o, "pending", pending);
			cJSON_AddItemToArray(list, o);
		} else {
			char installed[24] = "-", pub[24] = "-";

			if (cJSON_IsNumber(uv))
				snprintf(installed, sizeof(installed), "%.0f", uv->valuedouble);
			else if (cJSON_IsString(sw))
				snprintf(installed, sizeof(installed), "none");
			if (published && rel.withdrawn)
				snprintf(pub, sizeof(pub), "withdrawn");
			else if (published)
				snprintf(pub, sizeof(pub), "%llu", (unsigned long long)rel.version);
			printf("%-24s %-10s %-20s %-20s %-10s %s\n", names[i], installed,
			       cJSON_IsString(sw) ? sw->valuestring : "-", when, pub,
			       pending			     ? "pending"
			       : published && !rel.withdrawn ? "current"
							     : "-");
		}
		cJSON_Delete(doc);
	}
	if (json) {
		char *out = cJSON_PrintUnformatted(list);

		if (out != NULL)
			printf("%s\n", out);
		free(out);
		cJSON_Delete(list);
	}
	free_names(names, n);
	store_close(st);
	return 0;
}
