/* gateway.c: wires adapters to the policy and the uplink: one thread per adapter, health reports.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

#define SUBSYS "gateway"

struct runner {
	struct gateway *gw;
	struct adapter *a;
	pthread_t thread;
	bool started;
	struct point_sink sink;
	struct sample *allowed; /* the samples of one batch that the policy lets out */
	char *buf;		/* one payload */
	size_t cap;
};

struct gateway {
	struct gd_config *cfg;
	struct uplink *uplink;
	struct runner *runners;
	size_t nrunners;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	uint64_t seq;	 /* telemetry message sequence, atomic */
	uint64_t denied; /* samples the policy kept in, atomic */
	int64_t started_ms;
};

/* The sink: policy first, then payloads of at most max_message_bytes, then the queue. */
static void runner_emit(struct point_sink *sink, struct adapter *a, const struct sample *samples,
			size_t nsamples)
{
	struct runner *r = sink->ctx;
	struct gateway *gw = r->gw;
	const struct policy *pol = gw->cfg->policy;
	size_t n = 0, done = 0;
	int64_t ts = gd_now_ms();

	(void)a;
	for (size_t i = 0; i < nsamples; i++) {
		if (policy_uplink_allowed(pol, samples[i].point_id))
			r->allowed[n++] = samples[i];
	}
	if (n < nsamples)
		__atomic_add_fetch(&gw->denied, nsamples - n, __ATOMIC_RELAXED);
	while (done < n) {
		uint64_t seq = __atomic_add_fetch(&gw->seq, 1, __ATOMIC_RELAXED);
		size_t len = 0;
		size_t wrote = payload_telemetry(r->buf, r->cap, &len, gw->cfg->device_id, seq, ts,
						 gw->cfg->points, r->allowed + done, n - done);

		if (wrote == 0) {
			/* One point larger than a whole message: counted and skipped, never a
			 * crash. */
			log_warnx(SUBSYS, "%s: point %s does not fit in max_message_bytes %zu",
				  r->a->name, gw->cfg->points[r->allowed[done].point_id]->name,
				  r->cap);
			done++;
			continue;
		}
		uplink_send_telemetry(gw->uplink, r->buf, len);
		done += wrote;
	}
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	struct gateway *gw = r->gw;
	struct adapter *a = r->a;

	a->next_due_ms = 0;
	pthread_mutex_lock(&gw->lock);
	while (!gw->stopping) {
		int64_t now = gd_mono_ms();

		if (now >= a->next_due_ms) {
			pthread_mutex_unlock(&gw->lock);
			a->ops->poll(a, now, &r->sink);
			pthread_mutex_lock(&gw->lock);
			continue;
		}
		struct timespec ts = { .tv_sec = a->next_due_ms / 1000,
				       .tv_nsec = (a->next_due_ms % 1000) * 1000000 };
		pthread_cond_timedwait(&gw->wake, &gw->lock, &ts);
	}
	pthread_mutex_unlock(&gw->lock);
	a->ops->close(a);
	return NULL;
}

struct gateway *gateway_start(struct gd_config *cfg)
{
	struct gateway *gw = calloc(1, sizeof(*gw));
	pthread_condattr_t attr;

	if (gw == NULL)
		return NULL;
	gw->cfg = cfg;
	gw->started_ms = gd_now_ms();
	pthread_mutex_init(&gw->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&gw->wake, &attr);
	pthread_condattr_destroy(&attr);
	gw->uplink = uplink_new(&cfg->uplink, cfg->device_id);
	if (gw->uplink == NULL) {
		log_warnx(SUBSYS, "cannot create the uplink");
		goto fail;
	}
	gateway_publish_health(gw);
	if (uplink_start(gw->uplink) != 0) {
		log_warnx(SUBSYS, "cannot start the uplink");
		goto fail;
	}
	gw->runners = calloc(cfg->nadapters, sizeof(*gw->runners));
	if (gw->runners == NULL)
		goto fail;
	gw->nrunners = cfg->nadapters;
	for (size_t i = 0; i < cfg->nadapters; i++) {
		struct runner *r = &gw->runners[i];

		r->gw = gw;
		r->a = cfg->adapters[i];
		r->sink = (struct point_sink){ .emit = runner_emit, .ctx = r };
		r->cap = (size_t)cfg->uplink.max_message_bytes;
		r->buf = malloc(r->cap);
		r->allowed = calloc(r->a->npoints ? r->a->npoints : 1, sizeof(*r->allowed));
		if (r->buf == NULL || r->allowed == NULL)
			goto fail;
		if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
			log_warn(SUBSYS, "cannot start the thread of adapter %s", r->a->name);
			goto fail;
		}
		r->started = true;
		log_info(SUBSYS, "adapter %s (%s) started with %zu points", r->a->name,
			 r->a->ops->type, r->a->npoints);
	}
	return gw;
fail:
	gateway_stop(gw, 0);
	return NULL;
}

void gateway_stop(struct gateway *gw, int drain_ms)
{
	if (gw == NULL)
		return;
	pthread_mutex_lock(&gw->lock);
	gw->stopping = true;
	pthread_cond_broadcast(&gw->wake);
	pthread_mutex_unlock(&gw->lock);
	for (size_t i = 0; i < gw->nrunners; i++) {
		if (gw->runners[i].started)
			pthread_join(gw->runners[i].thread, NULL);
		free(gw->runners[i].buf);
		free(gw->runners[i].allowed);
	}
	free(gw->runners);
	if (gw->uplink != NULL) {
		uplink_stop(gw->uplink, drain_ms);
		uplink_free(gw->uplink);
	}
	pthread_cond_destroy(&gw->wake);
	pthread_mutex_destroy(&gw->lock);
	free(gw);
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

size_t gateway_health_json(struct gateway *gw, char *buf, size_t cap)
{
	struct uplink_stats us = { 0 };
	size_t n = 0;
	int r;

#define PUT(...)                                                                                   \
	do {                                                                                       \
		r = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__);                         \
		if (r > 0)                                                                         \
			n += (size_t)r;                                                            \
	} while (0)

	if (gw->uplink != NULL)
		uplink_get_stats(gw->uplink, &us);
	PUT("{\"device\":\"%s\",\"state\":\"online\",\"version\":\"%s\",\"ts\":%lld,"
	    "\"uptime_s\":%lld,\"adapters\":[",
	    gw->cfg->device_id, GD_VERSION, (long long)gd_now_ms(),
	    (long long)((gd_now_ms() - gw->started_ms) / 1000));
	for (size_t i = 0; i < gw->cfg->nadapters; i++) {
		struct adapter *a = gw->cfg->adapters[i];

		PUT("%s{\"name\":\"%s\",\"type\":\"%s\",\"link\":\"%s\",\"polls\":%llu,"
		    "\"polls_ok\":%llu,\"timeouts\":%llu,\"exceptions\":%llu,\"bad_frames\":%llu,"
		    "\"io_errors\":%llu,\"reconnects\":%llu,\"last_ok_ts\":%lld}",
		    i ? "," : "", a->name, a->ops->type, LOAD(a->stats.link_up) ? "up" : "down",
		    (unsigned long long)LOAD(a->stats.polls),
		    (unsigned long long)LOAD(a->stats.polls_ok),
		    (unsigned long long)LOAD(a->stats.timeouts),
		    (unsigned long long)LOAD(a->stats.exceptions),
		    (unsigned long long)LOAD(a->stats.bad_frames),
		    (unsigned long long)LOAD(a->stats.io_errors),
		    (unsigned long long)LOAD(a->stats.reconnects),
		    (long long)LOAD(a->stats.last_ok_ms));
	}
	PUT("],\"uplink\":{\"queued\":%llu,\"queued_bytes\":%llu,\"published\":%llu,"
	    "\"dropped\":%llu,\"connects\":%llu},\"policy\":{\"uplink_denied\":%llu}}",
	    (unsigned long long)us.queued_msgs, (unsigned long long)us.queued_bytes,
	    (unsigned long long)us.published, (unsigned long long)us.dropped,
	    (unsigned long long)us.connects, (unsigned long long)LOAD(gw->denied));
#undef PUT
	if (n >= cap)
		n = cap ? cap - 1 : 0;
	return n;
}

void gateway_publish_health(struct gateway *gw)
{
	char buf[16384];
	size_t n = gateway_health_json(gw, buf, sizeof(buf));

	uplink_set_health(gw->uplink, buf, n);
}
