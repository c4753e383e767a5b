/* update_gate.c: in the running program: the service manager's notifications (READY=1,
 * WATCHDOG=1) and, for a version on trial, its health gate and the mark-good. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway_private.h"
#include "update.h"

#define SUBSYS	"update"
#define TICK_MS 200

struct update_gate {
	struct gateway *gw;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	/* $NOTIFY_SOCKET; fd -1 without one. */
	int notify_fd;
	struct sockaddr_un addr;
	socklen_t addr_len;
	int64_t watchdog_ms; /* half of $WATCHDOG_USEC; 0: no watchdog */
	/* The trial this program is, if it is one. */
	bool trial;
	char slot[2];
	uint64_t version;
	int attempt, max_attempts;
	int64_t deadline_ms; /* monotonic */
	bool announced_uplink, announced_attest;
};

/* One datagram to the service manager, as sd_notify sends it; nothing without $NOTIFY_SOCKET. */
static void notify(struct update_gate *g, const char *msg)
{
	if (g->notify_fd < 0)
		return;
	if (sendto(g->notify_fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&g->addr,
		   g->addr_len) < 0)
		log_warn(SUBSYS, "cannot notify %s", g->addr.sun_path[0] ? g->addr.sun_path : "@");
}

/* $NOTIFY_SOCKET: a path, or "@name" for an abstract socket. */
static void notify_open(struct update_gate *g)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	size_t len;

	g->notify_fd = -1;
	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(g->addr.sun_path)) {
		log_warnx(SUBSYS, "NOTIFY_SOCKET %s is too long: no notifications", path);
		return;
	}
	g->addr.sun_family = AF_UNIX;
	memcpy(g->addr.sun_path, path, len);
	if (path[0] == '@')
		g->addr.sun_path[0] = '\0';
	g->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	g->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (g->notify_fd < 0) {
		log_warn(SUBSYS, "cannot open a socket for NOTIFY_SOCKET");
		return;
	}
	/* WATCHDOG_PID, when set, names the process the watchdog is for. */
	if (usec != NULL && (pid == NULL || atol(pid) == (long)getpid())) {
		long long us = atoll(usec);

		if (us > 0)
			g->watchdog_ms = us / 2000 > 0 ? us / 2000 : 1;
	}
}

/* Whether this process runs the slot a trial is about: current names it and our config is in
 * it (a guardian run from another config is not the version on trial). */
static bool trial_is_me(const struct gd_config *cfg, const struct update_state *st)
{
	char slot_dir[PATH_MAX], real_slot[PATH_MAX], real_cfg[PATH_MAX], cur[2], why[256];
	char *end;

	if (update_current(cfg->state_dir, cur, why, sizeof(why)) != 0 ||
	    strcmp(cur, st->trial_slot) != 0)
		return false;
	snprintf(slot_dir, sizeof(slot_dir), "%s/slots/%s", cfg->state_dir, st->trial_slot);
	if (realpath(slot_dir, real_slot) == NULL || realpath(cfg->file, real_cfg) == NULL)
		return false;
	end = strrchr(real_cfg, '/');
	if (end == NULL)
		return false;
	*end = '\0';
	return strcmp(real_cfg, real_slot) == 0;
}

/* The gate: what this version must have done. NULL when passed, else what it still waits for. */
static const char *gate_waits_for(struct update_gate *g)
{
	struct gateway *gw = g->gw;
	struct uplink_stats us = { 0 };

	/* Config and policy loaded: the gateway would not have started otherwise. */
	if (gw->cfg->attest.enabled && uplink_attest_cert_expiry(gw->attest) == 0)
		return "attestation of this version's measurements";
	if (gw->cfg->attest.enabled && !g->announced_attest) {
		log_info(SUBSYS,
			 "health gate: attestation passed with this version's measurements");
		g->announced_attest = true;
	}
	uplink_get_stats(gw->uplink, &us);
	if (us.published == 0)
		return "the broker's acknowledgement of telemetry";
	return NULL;
}

/* floor = the trial's version, good = the trial, no trial: this version stays. */
static int mark_good(struct update_gate *g)
{
	const char *sd = g->gw->cfg->state_dir;
	struct update_state st;
	char why[1024];

	if (update_state_read(sd, &st, why, sizeof(why)) != 0)
		goto fail;
	if (!st.trial || strcmp(st.trial_slot, g->slot) != 0 || st.trial_version != g->version) {
		log_warnx(SUBSYS,
			  "the trial of version %llu in slot %s ended elsewhere: not marked",
			  (unsigned long long)g->version, g->slot);
		return 0;
	}
	st.floor = st.trial_version;
	memcpy(st.good, st.trial_slot, 2);
	st.good_version = st.trial_version;
	st.trial = false;
	if (update_state_write(sd, &st, why, sizeof(why)) != 0)
		goto fail;
	log_info(SUBSYS,
		 "version %llu in slot %s passed its health gate: marked good (floor %llu; slot "
		 "%s is the next install's)",
		 (unsigned long long)g->version, g->slot, (unsigned long long)st.floor,
		 strcmp(g->slot, "a") == 0 ? "b" : "a");
	notify(g, "STATUS=update marked good");
	return 0;
fail:
	log_warnx(SUBSYS, "cannot mark version %llu good: %s (retrying)",
		  (unsigned long long)g->version, why);
	return GD_EIO;
}

/* Whether the gateway's locks can be taken: a deadlocked program stops feeding the watchdog. */
static void watchdog_feed(struct update_gate *g)
{
	struct gateway *gw = g->gw;

	pthread_rwlock_rdlock(&gw->policy_lock);
	pthread_rwlock_unlock(&gw->policy_lock);
	pthread_mutex_lock(&gw->current_lock);
	pthread_mutex_unlock(&gw->current_lock);
	notify(g, "WATCHDOG=1");
}

static void *gate_main(void *arg)
{
	struct update_gate *g = arg;
	int64_t next_feed = gd_mono_ms();
	const char *waiting = NULL, *said = NULL;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		int64_t now = gd_mono_ms(), until = now + TICK_MS;
		struct timespec ts;

		pthread_mutex_unlock(&g->lock);
		if (g->watchdog_ms > 0 && now >= next_feed) {
			watchdog_feed(g);
			next_feed = now + g->watchdog_ms;
		}
		if (g->trial) {
			waiting = gate_waits_for(g);
			if (waiting == NULL && mark_good(g) == 0) {
				g->trial = false;
			} else if (waiting != NULL && waiting != said) {
				log_info(SUBSYS, "health gate of version %llu: waiting for %s",
					 (unsigned long long)g->version, waiting);
				said = waiting;
			}
			if (g->trial && now >= g->deadline_ms) {
				log_error(SUBSYS,
					  "version %llu in slot %s did not pass its health gate "
					  "within %d s (still waiting for %s): exiting %d, a "
					  "failed start (%d of %d)",
					  (unsigned long long)g->version, g->slot,
					  g->gw->cfg->update.gate_timeout_s,
					  waiting != NULL ? waiting : "the mark-good",
					  UPDATE_EXIT_GATE, g->attempt, g->max_attempts);
				notify(g, "STATUS=health gate failed");
				/* At once, from this thread: the next start decides, and the spool
				 * keeps what was not sent. */
				_exit(UPDATE_EXIT_GATE);
			}
		}
		if (g->watchdog_ms > 0 && next_feed < until)
			until = next_feed;
		ts = (struct timespec){ .tv_sec = until / 1000,
					.tv_nsec = (until % 1000) * 1000000 };
		pthread_mutex_lock(&g->lock);
		if (!g->stop)
			pthread_cond_timedwait(&g->wake, &g->lock, &ts);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int update_gate_start(struct gateway *gw)
{
	const struct gd_config *cfg = gw->cfg;
	struct update_gate *g = calloc(1, sizeof(*g));
	struct update_state st;
	pthread_condattr_t attr;
	char why[1024];

	if (g == NULL)
		return GD_ENOMEM;
	g->gw = gw;
	notify_open(g);
	if (update_state_read(cfg->state_dir, &st, why, sizeof(why)) == 0 && st.trial &&
	    trial_is_me(cfg, &st)) {
		g->trial = true;
		memcpy(g->slot, st.trial_slot, 2);
		g->version = st.trial_version;
		g->attempt = st.attempts;
		g->max_attempts = st.max_attempts;
		g->deadline_ms = gd_mono_ms() + (int64_t)cfg->update.gate_timeout_s * 1000;
		log_info(SUBSYS,
			 "version %llu in slot %s is on trial (start %d of %d): health gate "
			 "within %d s: config and policy loaded%s, telemetry acknowledged",
			 (unsigned long long)g->version, g->slot, g->attempt, g->max_attempts,
			 cfg->update.gate_timeout_s,
			 cfg->attest.enabled ? ", attestation passed" : "");
	}
	notify(g, "READY=1");
	if (!g->trial && g->watchdog_ms == 0) {
		/* Nothing to watch: no thread. */
		if (g->notify_fd >= 0)
			close(g->notify_fd);
		free(g);
		return 0;
	}
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&g->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&g->thread, NULL, gate_main, g) != 0) {
		log_warn(SUBSYS, "cannot start the update gate's thread");
		pthread_cond_destroy(&g->wake);
		pthread_mutex_destroy(&g->lock);
		if (g->notify_fd >= 0)
			close(g->notify_fd);
		free(g);
		return GD_EIO;
	}
	gw->update_gate = g;
	return 0;
}

void update_gate_stop(struct gateway *gw)
{
	struct update_gate *g = gw->update_gate;

	if (g == NULL)
		return;
	notify(g, "STOPPING=1");
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_broadcast(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	if (g->notify_fd >= 0)
		close(g->notify_fd);
	free(g);
	gw->update_gate = NULL;
}
