/* update_delivery.c: in the running program: bundles that arrive on guardian/<device>/update/bundle
 * installed by a thread of their own, refusals and rollbacks reported to the cloud, and the exit
 * that has the supervisor start the new slot. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "gateway_private.h"
#include "report.h"
#include "update.h"

#define SUBSYS	       "update"
#define DELIVERY_TOPIC "update/bundle"
#define INCOMING       "incoming.bundle"
#define REFUSED_DIGEST "incoming.refused" /* SHA-256 (hex) of the last bundle refused */
#define BUSY_RETRY_MS  5000		  /* a bundle that waits for a trial to end */
#define ROLLBACK_FILE  "rollback.json"
#define ROLLBACK_DONE  "rollback.reported.json"

struct update_delivery {
	struct gateway *gw;
	pthread_t thread;
	pthread_mutex_t lock; /* the members up to 'stop' */
	pthread_cond_t wake;
	char *pending; /* the newest bundle delivered, not yet looked at (malloc'd); NULL: none */
	size_t pending_len;
	bool have_pending; /* an empty payload (a withdrawal) is pending too */
	bool stop;
	/* The thread's own. */
	uint8_t refused[32]; /* digest of the last refused bundle: a retained one is not reported
				again at every connection */
	bool have_refused;
	uint64_t passed_over; /* the version last said to be installed already, 0: none */
	uint64_t busy_said;   /* the version last said to wait for a trial */
};

/* On Paho's thread: the copy is handed to the thread, a newer one replacing an older. */
static void on_bundle(void *ctx, const char *payload, size_t len)
{
	struct update_delivery *d = ctx;
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		log_warnx(SUBSYS,
			  "a bundle of %zu bytes arrived but memory is short: dropped (it "
			  "comes again at the next connection, being retained)",
			  len);
		return;
	}
	memcpy(copy, payload, len);
	copy[len] = '\0';
	pthread_mutex_lock(&d->lock);
	free(d->pending);
	d->pending = copy;
	d->pending_len = len;
	d->have_pending = true;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
}

static void state_path(const struct update_delivery *d, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", d->gw->cfg->state_dir, name);
}

static void refused_load(struct update_delivery *d)
{
	char path[PATH_MAX], *hex;

	state_path(d, REFUSED_DIGEST, path, sizeof(path));
	hex = gd_read_file(path);
	if (hex != NULL && gd_hex_decode(hex, d->refused, 32, '\n'))
		d->have_refused = true;
	free(hex);
}

static void refused_save(struct update_delivery *d, const uint8_t digest[32])
{
	char path[PATH_MAX], hex[66];

	memcpy(d->refused, digest, 32);
	d->have_refused = true;
	gd_hex_encode(digest, 32, hex);
	hex[64] = '\n';
	state_path(d, REFUSED_DIGEST, path, sizeof(path));
	if (gd_write_file_atomic(path, hex, 65, 0600) != 0)
		log_warn(SUBSYS, "cannot write %s (a restart reports the same refusal again)",
			 path);
}

/*
 * Whether the bundle at 'path' is installed already or below the floor, by its manifest as it
 * says (unverified: passing a bundle over is all it decides). 1: passed over; 2: waits for the
 * trial to end; 0: to install.
 */
static int look_at(struct update_delivery *d, const char *path)
{
	struct bundle_info *info = calloc(1, sizeof(*info));
	struct update_state st;
	char why[512];
	uint64_t v, floor;
	int rc = 0;

	if (info == NULL)
		return 0;
	if (bundle_inspect(path, info, why, sizeof(why)) != BUNDLE_OK ||
	    update_state_read(d->gw->cfg->state_dir, &st, why, sizeof(why)) != 0)
		goto out; /* the install says what is wrong */
	v = info->m.version;
	floor = st.floor > st.good_version ? st.floor : st.good_version;
	if ((st.trial && v == st.trial_version) || v <= floor) {
		if (d->passed_over != v)
			log_info(SUBSYS,
				 "the bundle delivered is version %llu: %s (good %llu, floor "
				 "%llu): nothing to install",
				 (unsigned long long)v,
				 st.trial && v == st.trial_version ? "the version on trial"
				 : v == st.good_version		   ? "the version installed"
								   : "not above the floor",
				 (unsigned long long)st.good_version, (unsigned long long)st.floor);
		d->passed_over = v;
		rc = 1;
	} else if (st.trial) {
		if (d->busy_said != v)
			log_info(SUBSYS,
				 "the bundle delivered is version %llu; version %llu is on trial: "
				 "installed once the trial has ended",
				 (unsigned long long)v, (unsigned long long)st.trial_version);
		d->busy_said = v;
		rc = 2;
	}
out:
	bundle_info_free(info);
	free(info);
	return rc;
}

/* The program stops, and exits UPDATE_EXIT_RESTART: the supervisor starts the new slot. */
static void restart_into(struct update_delivery *d, const struct update_install_result *res)
{
	log_info(SUBSYS,
		 "version %llu installed into slot %s (on trial: %d start%s to pass its health "
		 "gate, else back to slot %s): stopping, exit %d, to be started in it",
		 (unsigned long long)res->version, res->slot, res->max_attempts,
		 res->max_attempts == 1 ? "" : "s", res->previous, UPDATE_EXIT_RESTART);
	__atomic_store_n(&d->gw->exit_status, UPDATE_EXIT_RESTART, __ATOMIC_RELAXED);
	/* The main thread takes SIGTERM and stops everything in order, as for systemctl stop. */
	kill(getpid(), SIGTERM);
}

/* One delivered bundle, 'buf' of 'len' bytes. True when it waits for a trial to end. */
static bool handle(struct update_delivery *d, const char *buf, size_t len)
{
	struct update_install_result *res;
	char path[PATH_MAX], text[REPORT_TEXT_MAX];
	uint8_t digest[32];
	bool busy = false;
	int look;

	if (len == 0) {
		log_info(SUBSYS,
			 "the bundle on guardian/%s/" DELIVERY_TOPIC
			 " was withdrawn: nothing to install",
			 d->gw->cfg->device_id);
		return false;
	}
	mbedtls_sha256_ret((const unsigned char *)buf, len, digest, 0);
	if (d->have_refused && memcmp(digest, d->refused, 32) == 0) {
		log_debug(SUBSYS, "the bundle delivered was refused before: passed over");
		return false;
	}
	state_path(d, INCOMING, path, sizeof(path));
	if (gd_write_file_atomic(path, buf, len, 0600) != 0) {
		log_warn(SUBSYS, "cannot write %s: the bundle delivered (%zu bytes) is dropped",
			 path, len);
		report_event(d->gw->reporter, "update_failed", "io",
			     "cannot write the delivered bundle to the state directory");
		return false;
	}
	look = look_at(d, path);
	if (look != 0) {
		if (look == 1)
			unlink(path);
		return look == 2;
	}
	res = calloc(1, sizeof(*res));
	if (res == NULL)
		return true;
	switch (update_install(d->gw->cfg, d->gw->cfg->state_dir, path, res)) {
	case UPDATE_INSTALLED:
		unlink(path);
		restart_into(d, res);
		break;
	case UPDATE_REFUSED:
		log_warnx(SUBSYS, "the bundle delivered (version %llu) was refused (%s): %s",
			  (unsigned long long)res->version, bundle_refusal_names[res->refusal],
			  res->why);
		snprintf(text, sizeof(text), "version %llu refused: %.*s",
			 (unsigned long long)res->version, REPORT_TEXT_MAX - 48, res->why);
		report_event(d->gw->reporter, "update_refused", bundle_refusal_names[res->refusal],
			     text);
		refused_save(d, digest);
		unlink(path);
		break;
	case UPDATE_BUSY:
		busy = true;
		break;
	case UPDATE_FAILED:
		log_warnx(SUBSYS, "the bundle delivered (version %llu) could not be installed: %s",
			  (unsigned long long)res->version, res->why);
		report_event(d->gw->reporter, "update_failed", "install", res->why);
		unlink(path);
		break;
	}
	free(res);
	return busy;
}

static void *delivery_main(void *arg)
{
	struct update_delivery *d = arg;
	char *buf = NULL;
	size_t len = 0;
	bool have = false;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		if (d->have_pending) {
			free(buf);
			buf = d->pending;
			len = d->pending_len;
			have = true;
			d->pending = NULL;
			d->have_pending = false;
		}
		if (have) {
			bool busy;

			pthread_mutex_unlock(&d->lock);
			busy = handle(d, buf, len);
			pthread_mutex_lock(&d->lock);
			if (!busy) {
				free(buf);
				buf = NULL;
				have = false;
			} else if (!d->have_pending && !d->stop) {
				int64_t until = gd_mono_ms() + BUSY_RETRY_MS;
				struct timespec ts = { .tv_sec = until / 1000,
						       .tv_nsec = (until % 1000) * 1000000 };

				pthread_cond_timedwait(&d->wake, &d->lock, &ts);
			}
			continue;
		}
		pthread_cond_wait(&d->wake, &d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	free(buf);
	return NULL;
}

/* A rollback.json not reported yet: a "rollback" report, then renamed so it is not sent again. */
static void report_rollback(struct gateway *gw)
{
	char path[PATH_MAX], done[PATH_MAX], key[32] = "unknown", text[REPORT_TEXT_MAX];
	const char *v;
	char *doc;
	size_t n;

	snprintf(path, sizeof(path), "%s/" ROLLBACK_FILE, gw->cfg->state_dir);
	doc = gd_read_file(path);
	if (doc == NULL)
		return;
	if (gw->reporter == NULL) {
		log_warnx(SUBSYS, "%s is not reported: failure reports are off", path);
		free(doc);
		return;
	}
	/* The key: the version rolled back (its first number after "version":). */
	v = strstr(doc, "\"version\":");
	if (v != NULL)
		snprintf(key, sizeof(key), "%.*s", (int)strspn(v + 10, "0123456789"), v + 10);
	if (key[0] == '\0')
		snprintf(key, sizeof(key), "unknown");
	n = strcspn(doc, "\n");
	snprintf(text, sizeof(text), "%.*s", (int)n, doc);
	free(doc);
	/* On disk when it returns 0: only then is the file marked, so a crash reports it again. */
	if (report_event(gw->reporter, "rollback", key, text) != 0) {
		log_warnx(SUBSYS,
			  "the rollback in %s could not be reported: tried again at the "
			  "next start",
			  path);
		return;
	}
	snprintf(done, sizeof(done), "%s/" ROLLBACK_DONE, gw->cfg->state_dir);
	if (rename(path, done) != 0)
		log_warn(SUBSYS, "cannot rename %s to %s (it is reported again at the next start)",
			 path, done);
	else
		log_info(SUBSYS, "the rollback of version %s is reported (%s)", key, done);
}

int update_delivery_start(struct gateway *gw)
{
	struct update_delivery *d;
	pthread_condattr_t attr;
	int rc;

	report_rollback(gw);
	if (!gw->cfg->update.enabled)
		return 0;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return GD_ENOMEM;
	d->gw = gw;
	refused_load(d);
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &attr);
	pthread_condattr_destroy(&attr);
	rc = uplink_subscribe_extra(gw->uplink, DELIVERY_TOPIC, on_bundle, d);
	if (rc != 0) {
		log_warnx(SUBSYS, "cannot subscribe to guardian/%s/" DELIVERY_TOPIC ": %s",
			  gw->cfg->device_id, gd_strerror(rc));
		goto fail;
	}
	if (pthread_create(&d->thread, NULL, delivery_main, d) != 0) {
		log_warn(SUBSYS, "cannot start the thread that installs delivered bundles");
		rc = GD_EIO;
		goto fail;
	}
	gw->delivery = d;
	return 0;
fail:
	/* The uplink may hold 'd' as the handler's context: it must outlive the uplink. */
	gw->delivery = d;
	d->stop = true;
	return rc;
}

void update_delivery_stop(struct gateway *gw)
{
	struct update_delivery *d = gw->delivery;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	if (!d->stop) {
		d->stop = true;
		pthread_cond_broadcast(&d->wake);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->thread, NULL);
	} else {
		pthread_mutex_unlock(&d->lock);
	}
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d->pending);
	free(d);
	gw->delivery = NULL;
}

int gateway_exit_status(struct gateway *gw)
{
	return __atomic_load_n(&gw->exit_status, __ATOMIC_RELAXED);
}
