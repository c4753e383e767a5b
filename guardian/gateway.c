/* gateway.c: wires adapters to the policy and the uplink: one thread per adapter, health reports.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "version.h"
#include "../base/base.h"
#include "../base/json.h"
#include "../base/sandbox.h"
#include "audit.h"
#include "compartment.h"
#include "core.h"
#include "gateway_private.h"
#include "preflight.h"
#include "update.h"
#include "report.h"
#include "uplink_remote.h"

#define SUBSYS "gateway"

/* Policy first, then payloads of at most max_message_bytes, then the queue; at most
 * r->allowed_cap samples. */
static void emit_chunk(struct runner *r, const struct sample *samples, size_t nsamples)
{
	struct gateway *gw = r->gw;
	size_t n = 0, done = 0, denied = 0, dropped = 0;
	int64_t ts = gd_now_ms();

	/* The current value of each point, for max_step of later writes. */
	pthread_mutex_lock(&gw->current_lock);
	for (size_t i = 0; i < nsamples; i++) {
		struct point_last *last = &gw->last[samples[i].point_id];

		if (samples[i].quality == QUALITY_GOOD &&
		    samples[i].value.kind != VALUE_KIND_STRING)
			gw->current[samples[i].point_id] = samples[i].value;
		else
			gw->current[samples[i].point_id].kind = VALUE_KIND_NONE;
		last->quality = samples[i].quality;
		last->code = samples[i].code;
		last->ts_ms = samples[i].ts_ms;
		last->value = samples[i].value;
		/* The adapter's string lives only during this call: keep a copy. */
		if (last->value.kind == VALUE_KIND_STRING) {
			snprintf(last->text, sizeof(last->text), "%s", last->value.s);
			last->value.s = last->text;
		}
	}
	pthread_mutex_unlock(&gw->current_lock);
	pthread_rwlock_rdlock(&gw->policy_lock);
	for (size_t i = 0; i < nsamples; i++) {
		r->allowed[n] = samples[i];
		switch (policy_uplink_decide(gw->cfg->policy, gw->pstate, &r->allowed[n], ts)) {
		case POLICY_SEND:
			n++;
			break;
		case POLICY_SEND_CLAMPED:
			r->allowed[n++].flags |= SAMPLE_CLAMPED;
			break;
		case POLICY_SEND_FLAGGED:
			r->allowed[n++].flags |= SAMPLE_OUT_OF_RANGE;
			break;
		case POLICY_DROP_DENIED:
			denied++;
			break;
		case POLICY_DROP_RANGE:
			dropped++;
			audit_sink_range_drop(gw->audit, &samples[i],
					      gw->cfg->points[samples[i].point_id]->name, ts);
			break;
		default:
			dropped++;
			break;
		}
	}
	if (denied > 0)
		__atomic_add_fetch(&gw->denied, denied, __ATOMIC_RELAXED);
	if (dropped > 0)
		__atomic_add_fetch(&gw->dropped, dropped, __ATOMIC_RELAXED);
	while (done < n) {
		size_t len = 0;
		size_t wrote =
			payload_telemetry(r->buf + PAYLOAD_SEQ_ROOM, r->cap - PAYLOAD_SEQ_ROOM,
					  &len, gw->cfg->device_id, gw->boot_id, 0, ts,
					  gw->cfg->points, gw->names, r->allowed + done, n - done);

		if (wrote > 0) {
			char *doc;

			/*
			 * Number and enqueue as one step: a message's seq is the order in which it
			 * enters the queue, whichever adapter's thread built it. A message the
			 * queue refuses keeps its number, so the gap tells the cloud.
			 */
			pthread_mutex_lock(&gw->emit_lock);
			doc = payload_number(r->buf + PAYLOAD_SEQ_ROOM, &len, ++gw->seq);
			uplink_send_telemetry(gw->uplink, gw->seq, doc, len);
			pthread_mutex_unlock(&gw->emit_lock);
		} else {
			/* One point larger than a whole message: counted and skipped, never a
			 * crash. */
			log_warnx(SUBSYS, "%s: point %s does not fit in max_message_bytes %zu",
				  r->a->name, gw->cfg->points[r->allowed[done].point_id]->name,
				  r->cap);
			wrote = 1;
		}
		done += wrote;
	}
	pthread_rwlock_unlock(&gw->policy_lock);
}

/* The sink. A batch may hold any number of samples, several of one point too (CAN frames that
 * came together): it goes through in chunks the runner's buffer holds. */
static void runner_emit(struct point_sink *sink, struct adapter *a, const struct sample *samples,
			size_t nsamples)
{
	struct runner *r = sink->ctx;

	(void)a;
	for (size_t done = 0; done < nsamples; done += r->allowed_cap) {
		size_t n = nsamples - done < r->allowed_cap ? nsamples - done : r->allowed_cap;

		emit_chunk(r, samples + done, n);
	}
}

int gateway_reload_policy(struct gateway *gw)
{
	struct gd_measured measured;
	struct policy *fresh;
	const char **names;
	struct conf c;

	conf_init(&c, gw->cfg->policy_file);
	fresh = gd_policy_load(gw->cfg, &c, &measured);
	if (fresh == NULL) {
		for (size_t i = 0; i < c.nerrors; i++)
			log_error(SUBSYS, "reload: %s",
				  c.errors[i] ? c.errors[i] : "out of memory");
		log_warnx(SUBSYS, "reload refused: %zu error%s in %s; the policy in force stays",
			  c.nerrors, c.nerrors == 1 ? "" : "s", gw->cfg->policy_file);
		conf_release(&c);
		return GD_ECONFIG;
	}
	conf_release(&c);
	names = points_names_new(gw->cfg, fresh);
	if (names == NULL) {
		policy_free(fresh);
		log_warnx(SUBSYS, "reload refused: out of memory; the policy in force stays");
		return GD_ENOMEM;
	}
	/* In force now, or, with attestation, once the service has accepted it. */
	enforce_reload(gw, fresh, names, &measured);
	return 0;
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	struct gateway *gw = r->gw;
	struct adapter *a = r->a;

	if (r->cp != NULL) {
		compartment_run(r); /* the adapter polls in a child of its own */
		return NULL;
	}
	a->next_due_ms = 0;
	pthread_mutex_lock(&gw->lock);
	while (!gw->stopping) {
		int64_t now = gd_mono_ms();

		if (__atomic_exchange_n(&r->restart, false, __ATOMIC_RELAXED)) {
			pthread_mutex_unlock(&gw->lock);
			log_info(SUBSYS, "adapter %s: restarting its link", a->name);
			a->ops->close(a);
			a->next_due_ms = 0;
			pthread_mutex_lock(&gw->lock);
			continue;
		}
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

/* A finding of the checks before the start (preflight.h), in the log: errors refuse the start. */
static void log_finding(void *ctx, enum preflight_level level, const char *key, const char *text)
{
	const struct gd_config *cfg = ctx;

	if (level == PREFLIGHT_ERROR)
		log_error(SUBSYS, "refusing to start: %s: %s: %s", cfg->file, key, text);
	else
		log_warnx(SUBSYS, "%s: %s: %s", cfg->file, key, text);
}

/*
 * A new boot id in 'out' (16 hex digits): random per start, so that the cloud tells a restart
 * (seq from 1 under a new boot id) from a replay. It needs to be unique, not secret: when the
 * kernel has no randomness yet (early boot), the clocks and the pid stand in.
 */
static void boot_id_new(char out[static 17])
{
	uint64_t id;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
		struct timespec rt, mono;

		clock_gettime(CLOCK_REALTIME, &rt);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		/* splitmix64's finaliser spreads the inputs over every bit. */
		id = ((uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec) ^
		     ((uint64_t)mono.tv_nsec << 20) ^ (uint64_t)getpid();
		id = (id ^ (id >> 30)) * 0xbf58476d1ce4e5b9u;
		id = (id ^ (id >> 27)) * 0x94d049bb133111ebu;
		id ^= id >> 31;
		log_warn(SUBSYS, "no random boot id yet; one from the clocks instead");
	}
	snprintf(out, 17, "%016llx", (unsigned long long)id);
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
	pthread_rwlock_init(&gw->policy_lock, NULL);
	pthread_mutex_init(&gw->pending_lock, NULL);
	pthread_mutex_init(&gw->current_lock, NULL);
	pthread_mutex_init(&gw->emit_lock, NULL);
	boot_id_new(gw->boot_id);
	log_info(SUBSYS, "boot id %s", gw->boot_id);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&gw->wake, &attr);
	pthread_condattr_destroy(&attr);
	/* Everything gateway_stop tears down is initialised above this line. */
	gw->names = points_names_new(cfg, cfg->policy);
	gw->pstate = policy_state_new(cfg->npoints);
	gw->current = calloc(cfg->npoints ? cfg->npoints : 1, sizeof(*gw->current));
	gw->written = calloc(cfg->npoints ? cfg->npoints : 1, sizeof(*gw->written));
	gw->written_ms = calloc(cfg->npoints ? cfg->npoints : 1, sizeof(*gw->written_ms));
	gw->last = calloc(cfg->npoints ? cfg->npoints : 1, sizeof(*gw->last));
	if (gw->names == NULL || gw->pstate == NULL || gw->current == NULL || gw->last == NULL ||
	    gw->written == NULL || gw->written_ms == NULL)
		goto fail;
	/* What guardian check says first: the same function, the same words (preflight.h). */
	if (preflight(cfg, PREFLIGHT_RUN, log_finding, cfg) != 0 || attest_device_prepare(gw) != 0)
		goto fail;
	/* With compartments, in a child process of its own that never sees the identity key. */
	gw->uplink = cfg->sandbox.enabled && cfg->sandbox.compartments
			     ? uplink_remote_new(cfg)
			     : uplink_new(&cfg->uplink, cfg->device_id);
	if (gw->uplink == NULL) {
		log_warnx(SUBSYS, "cannot create the uplink");
		goto fail;
	}
	/* Numbering goes on from what the spool holds, so (boot, seq) and seq alone both order. */
	gw->seq = uplink_last_seq(gw->uplink);
	/* No telemetry connection before attestation has produced a certificate. */
	if (cfg->attest.enabled)
		uplink_hold(gw->uplink, true);
	/* Failure reports, a crash of the run before among them. Without them the plant runs on. */
	{
		char why[512];

		gw->reporter = reporter_open(&(struct reporter_config){ .state_dir = cfg->state_dir,
									.device_id = cfg->device_id,
									.boot_id = gw->boot_id,
									.uplink = gw->uplink },
					     why, sizeof(why));
		if (gw->reporter == NULL)
			log_warnx(SUBSYS, "failure reports are off: %s", why);
		else if (reporter_start(gw->reporter, cfg->adapters, cfg->nadapters) != 0)
			log_warnx(SUBSYS, "failure reports wait on disk: no report thread");
	}
	/* Bundles over MQTT, subscribed from the first connection, and a rollback to report. */
	update_swversion(cfg, gw->swversion, sizeof(gw->swversion));
	if (update_delivery_start(gw) != 0)
		log_warnx(SUBSYS, "bundles cannot arrive over MQTT (guardian update install still "
				  "installs them)");
	gateway_publish_health(gw);
	gw->audit = audit_sink_open(cfg->state_dir, gw->uplink, cfg->npoints);
	/* Before the uplink connects, so that it subscribes to commands from the first connection.
	 */
	if (gw->audit == NULL || command_start(gw) != 0)
		goto fail;
	if (uplink_start(gw->uplink) != 0) {
		log_warnx(SUBSYS, "cannot start the uplink");
		goto fail;
	}
	if (attest_device_start(gw) != 0) {
		log_warnx(SUBSYS, "cannot start attestation");
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
		/* At least a CAN adapter's batch, so its frames leave in one message. */
		r->allowed_cap = r->a->npoints > 1024 ? r->a->npoints : 1024;
		r->allowed = calloc(r->allowed_cap, sizeof(*r->allowed));
		if (r->buf == NULL || r->allowed == NULL || compartment_attach(r) != 0)
			goto fail;
		if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
			log_warn(SUBSYS, "cannot start the thread of adapter %s", r->a->name);
			goto fail;
		}
		r->started = true;
		log_info(SUBSYS, "adapter %s (%s) started with %zu points%s", r->a->name,
			 r->a->ops->type, r->a->npoints,
			 r->cp != NULL ? ", in a child process of its own" : "");
	}
	/* Last: the console reads what the rest keeps. */
	if (console_server_start(gw) != 0)
		goto fail;
	/* Started: READY=1, and a version on trial begins its health gate. */
	if (update_gate_start(gw) != 0)
		goto fail;
	return gw;
fail:
	gateway_stop(gw, 0);
	return NULL;
}

void gateway_stop(struct gateway *gw, int drain_ms)
{
	if (gw == NULL)
		return;
	update_gate_stop(gw);
	console_server_stop(gw);
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
	command_stop(gw);
	/* After the command thread: its writes and reads go through a compartment's table. */
	for (size_t i = 0; i < gw->nrunners; i++)
		compartment_detach(&gw->runners[i]);
	free(gw->runners);
	attest_device_stop(gw);
	reporter_stop(gw->reporter); /* it publishes through the uplink */
	if (gw->uplink != NULL) {
		uplink_stop(gw->uplink, drain_ms);
		uplink_free(gw->uplink);
	}
	update_delivery_stop(gw);     /* after the uplink's callbacks, before the reporter goes */
	reporter_close(gw->reporter); /* after the uplink's callbacks; marks the clean stop */
	command_free(gw);
	audit_sink_close(gw->audit);
	pthread_cond_destroy(&gw->wake);
	pthread_mutex_destroy(&gw->lock);
	pthread_rwlock_destroy(&gw->policy_lock);
	enforce_free(gw);
	pthread_mutex_destroy(&gw->pending_lock);
	pthread_mutex_destroy(&gw->current_lock);
	pthread_mutex_destroy(&gw->emit_lock);
	free(gw->current);
	free(gw->written);
	free(gw->written_ms);
	free(gw->last);
	free(gw->names);
	policy_state_free(gw->pstate);
	free(gw);
}

static void health_adapter(struct jw *w, struct adapter *a)
{
	char fault[sizeof(a->fault.text)];
	int64_t since = adapter_get_fault(a, fault, sizeof(fault));

	jw_object(w);
	jw_key(w, "name");
	jw_string(w, a->name);
	jw_key(w, "type");
	jw_string(w, a->ops->type);
	jw_key(w, "link");
	jw_string(w, LOAD(a->stats.link_up) ? "up" : "down");
	jw_key(w, "polls");
	jw_uint(w, LOAD(a->stats.polls));
	jw_key(w, "polls_ok");
	jw_uint(w, LOAD(a->stats.polls_ok));
	jw_key(w, "timeouts");
	jw_uint(w, LOAD(a->stats.timeouts));
	jw_key(w, "exceptions");
	jw_uint(w, LOAD(a->stats.exceptions));
	jw_key(w, "bad_frames");
	jw_uint(w, LOAD(a->stats.bad_frames));
	jw_key(w, "io_errors");
	jw_uint(w, LOAD(a->stats.io_errors));
	jw_key(w, "reconnects");
	jw_uint(w, LOAD(a->stats.reconnects));
	jw_key(w, "last_ok_ts");
	jw_int(w, LOAD(a->stats.last_ok_ms));
	/* The transport's own members (',"key":value...', snprintf rules), or a failed document. */
	if (a->ops->stats_json != NULL && !w->failed) {
		size_t room = w->cap - w->len;
		size_t n = room > 0 ? a->ops->stats_json(a, w->buf + w->len, room) : 0;

		if (n >= room)
			w->failed = true;
		else
			w->len += n;
	}
	if (fault[0] != '\0') {
		jw_key(w, "fault");
		jw_string(w, fault);
		jw_key(w, "fault_since");
		jw_int(w, since);
	}
	jw_end(w);
}

size_t gateway_health_json(struct gateway *gw, char *buf, size_t cap)
{
	struct uplink_stats us = { 0 };
	struct policy_rule_stats rs[64];
	int64_t now = gd_now_ms();
	struct jw w;
	size_t nr, n;

	if (gw->uplink != NULL)
		uplink_get_stats(gw->uplink, &us);
	jw_init(&w, buf, cap);
	jw_object(&w);
	jw_key(&w, "device");
	jw_string(&w, gw->cfg->device_id);
	jw_key(&w, "boot");
	jw_string(&w, gw->boot_id);
	jw_key(&w, "state");
	jw_string(&w, "online");
	jw_key(&w, "version");
	jw_string(&w, GD_VERSION);
	jw_key(&w, "ts");
	jw_int(&w, now);
	jw_key(&w, "uptime_s");
	jw_int(&w, (now - gw->started_ms) / 1000);
	/* Whether `guardian run` confined itself (main.c, base/sandbox.h). */
	jw_key(&w, "sandbox");
	jw_string(&w, gd_sandbox_active() != NULL ? "seccomp" : "off");
	jw_key(&w, "adapters");
	jw_array(&w);
	for (size_t i = 0; i < gw->cfg->nadapters; i++)
		health_adapter(&w, gw->cfg->adapters[i]);
	jw_end(&w);
	console_server_health(gw, &w);
	uplink_attest_health(gw->attest, &w);
	command_health(gw, &w);
	audit_sink_health(gw->audit, &w);
	reporter_health(gw->reporter, &w);
	jw_key(&w, "uplink");
	jw_object(&w);
	jw_key(&w, "queued");
	jw_uint(&w, us.queued_msgs);
	jw_key(&w, "queued_bytes");
	jw_uint(&w, us.queued_bytes);
	jw_key(&w, "published");
	jw_uint(&w, us.published);
	jw_key(&w, "dropped");
	jw_uint(&w, us.dropped);
	jw_key(&w, "connects");
	jw_uint(&w, us.connects);
	if (us.spooled)
		uplink_spool_health(&us.spool, &w);
	jw_end(&w);
	jw_key(&w, "policy");
	jw_object(&w);
	jw_key(&w, "uplink_denied");
	jw_uint(&w, LOAD(gw->denied));
	jw_key(&w, "uplink_dropped");
	jw_uint(&w, LOAD(gw->dropped));
	jw_key(&w, "rules");
	jw_array(&w);
	pthread_rwlock_rdlock(&gw->policy_lock);
	nr = policy_rule_stats(gw->cfg->policy, rs, 64);
	pthread_rwlock_unlock(&gw->policy_lock);
	for (size_t i = 0; i < nr && i < 64; i++) {
		jw_object(&w);
		jw_key(&w, "rule");
		jw_string(&w, rs[i].path);
		jw_key(&w, "hits");
		jw_uint(&w, rs[i].hits);
		jw_key(&w, "drops");
		jw_uint(&w, rs[i].drops);
		jw_key(&w, "refusals");
		jw_uint(&w, rs[i].refusals);
		jw_end(&w);
	}
	if (nr > 64) {
		jw_object(&w);
		jw_key(&w, "rule");
		jw_string(&w, "...");
		jw_key(&w, "more");
		jw_uint(&w, nr - 64);
		jw_end(&w);
	}
	jw_end(&w);
	jw_end(&w);
	jw_end(&w);
	n = jw_finish(&w);
	if (n == 0) {
		/* Too large for one document: a short one that says so, never a cut one. */
		jw_init(&w, buf, cap);
		jw_object(&w);
		jw_key(&w, "device");
		jw_string(&w, gw->cfg->device_id);
		jw_key(&w, "state");
		jw_string(&w, "online");
		jw_key(&w, "ts");
		jw_int(&w, now);
		jw_key(&w, "error");
		jw_string(&w, "the health document is larger than its buffer");
		jw_end(&w);
		n = jw_finish(&w);
	}
	return n;
}

void gateway_publish_health(struct gateway *gw)
{
	static char buf[65536]; /* only the main thread publishes health */
	size_t n = gateway_health_json(gw, buf, sizeof(buf));

	uplink_set_health(gw->uplink, buf, n);
}
