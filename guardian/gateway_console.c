/* gateway_console.c: the field console served by the running gateway: on the serial port the
 * config names, and on a local socket in the state directory for `guardian console`. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "version.h"
#include "../base/serial.h"
#include "command_doc.h"
#include "console.h"
#include "gateway_private.h"

#define SUBSYS		 "console"
#define MAX_CLIENTS	 4
#define TICK_MS		 500
#define SERIAL_RETRY_MS	 2000
#define WRITE_TIMEOUT_MS 200

struct console_client {
	int fd; /* -1: free */
	struct console *con;
};

struct console_server {
	struct gateway *gw;
	pthread_t thread;
	bool started;
	int wake[2]; /* a byte here stops the thread */
	/* the serial console */
	struct serial_port *port;
	struct console *serial_con;
	/* Its counters as of its last input or tick, for health on another thread: the session
	 * itself belongs to the console thread. */
	pthread_mutex_t stats_lock;
	struct console_stats serial_stats;
	int64_t serial_retry_ms;
	bool serial_warned;
	/* the local socket */
	char *sock_path;
	int listen_fd;
	struct console_client clients[MAX_CLIENTS];
};

/* ---- what the console shows --------------------------------------------------------------- */

static void p_status(void *ctx, struct console_status *out)
{
	struct gateway *gw = ctx;
	struct uplink_stats us = { 0 };

	memset(out, 0, sizeof(*out));
	snprintf(out->device, sizeof(out->device), "%s", gw->cfg->device_id);
	snprintf(out->version, sizeof(out->version), "%s", GD_VERSION);
	out->now_ms = gd_now_ms();
	out->uptime_s = (out->now_ms - gw->started_ms) / 1000;
	snprintf(out->broker, sizeof(out->broker), "%s:%d", gw->cfg->uplink.host,
		 gw->cfg->uplink.port);
	if (gw->uplink != NULL)
		uplink_get_stats(gw->uplink, &us);
	out->uplink_connected = us.connected;
	out->queued_msgs = us.queued_msgs;
	out->queued_bytes = us.queued_bytes;
	out->published = us.published;
	out->dropped = us.dropped;
	out->connects = us.connects;
	out->spooled = us.spooled;
	out->spool_records = us.spool.records;
	out->spool_disk_bytes = us.spool.disk_bytes;
	out->spool_dropped = us.spool.dropped + us.spool.refused;
	out->spool_damaged = us.spool.torn_tails + us.spool.quarantined + us.spool.cursor_damaged;
	out->spool_write_errors = us.spool.write_errors;
	out->last_publish_ms = us.last_publish_ms;
	snprintf(out->uplink_error, sizeof(out->uplink_error), "%s",
		 us.connected ? "" : us.last_error);
	/* Held for attestation: that, not a network error, is why it is not connected. */
	if (!us.connected && gw->attest != NULL) {
		char what[160];

		uplink_attest_describe(gw->attest, what, sizeof(what));
		if (strcmp(what, "attested") != 0)
			snprintf(out->uplink_error, sizeof(out->uplink_error), "%s", what);
	}
	out->last_error_ms = log_last_problem(out->last_error, sizeof(out->last_error));
	out->cert_expiry_ms = uplink_attest_cert_expiry(gw->attest);
}

/* A transport's health counters (',"frames":1,"errors":{"checksum":0}') as "frames=1 checksum=0".
 */
static void counters_text(const char *json, char *out, size_t cap)
{
	size_t n = 0;
	bool in_key = false;

	for (const char *p = json; *p != '\0' && n + 1 < cap; p++) {
		switch (*p) {
		case '"':
			in_key = !in_key;
			break;
		case '{':
		case '}':
			break;
		case ':':
			/* "errors":{ opens a group: its name adds nothing on one line. */
			if (p[1] == '{') {
				while (n > 0 && out[n - 1] != ' ')
					n--;
			} else {
				out[n++] = '=';
			}
			break;
		case ',':
			if (n > 0 && out[n - 1] != ' ')
				out[n++] = ' ';
			break;
		default:
			out[n++] = *p;
		}
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/*
 * The points of 'a' as last read, into o: counted, and the first not good described with where
 * it is read and why ("press/speed (unit 3 holding 16): exception 2 (illegal data address)").
 * A point of a link that is down says nothing the link's fault does not.
 */
static void adapter_points(struct gateway *gw, struct adapter *a, struct console_adapter *o)
{
	const struct point *first = NULL;
	struct point_last bad = { .quality = QUALITY_GOOD };
	char where[96] = "", why[96];

	o->points = (uint32_t)a->npoints;
	pthread_mutex_lock(&gw->current_lock);
	for (size_t j = 0; j < a->npoints; j++) {
		const struct point_last *l = &gw->last[a->points[j].id];

		if (l->ts_ms == 0) {
			o->points_unread++;
		} else if (l->quality != QUALITY_GOOD && l->quality != QUALITY_DISCONNECTED) {
			if (o->points_bad++ == 0) {
				first = &a->points[j];
				bad = *l;
			}
		}
	}
	pthread_mutex_unlock(&gw->current_lock);
	if (first == NULL)
		return;
	if (a->ops->describe_point != NULL)
		a->ops->describe_point(a, first, where, sizeof(where));
	if (bad.quality == QUALITY_EXCEPTION)
		snprintf(why, sizeof(why), "exception %d (%s)", (int)bad.code,
			 adapter_exception_text((int)bad.code));
	else if (bad.quality == QUALITY_OFFLINE)
		snprintf(why, sizeof(why), "offline (its unit is skipped after timeouts)");
	else
		snprintf(why, sizeof(why), "%s", quality_names[bad.quality]);
	/* A long name is cut here and clipped to the screen later: either way it stays one line. */
	if (snprintf(o->problem, sizeof(o->problem), "%s%s%s%s: %s", first->name,
		     where[0] ? " (" : "", where, where[0] ? ")" : "", why) < 0)
		o->problem[0] = '\0';
}

static size_t p_adapters(void *ctx, struct console_adapter *out, size_t cap)
{
	struct gateway *gw = ctx;

	for (size_t i = 0; i < gw->cfg->nadapters && i < cap; i++) {
		struct adapter *a = gw->cfg->adapters[i];
		struct console_adapter *o = &out[i];
		char json[512];

		memset(o, 0, sizeof(*o));
		snprintf(o->name, sizeof(o->name), "%s", a->name);
		snprintf(o->type, sizeof(o->type), "%s", a->ops->type);
		o->link_up = LOAD(a->stats.link_up) != 0;
		o->polls = LOAD(a->stats.polls);
		o->polls_ok = LOAD(a->stats.polls_ok);
		o->timeouts = LOAD(a->stats.timeouts);
		o->exceptions = LOAD(a->stats.exceptions);
		o->bad_frames = LOAD(a->stats.bad_frames);
		o->io_errors = LOAD(a->stats.io_errors);
		o->reconnects = LOAD(a->stats.reconnects);
		o->samples = LOAD(a->stats.samples);
		o->last_ok_ms = LOAD(a->stats.last_ok_ms);
		o->fault_since_ms = adapter_get_fault(a, o->fault, sizeof(o->fault));
		adapter_points(gw, a, o);
		if (a->ops->stats_json != NULL) {
			a->ops->stats_json(a, json, sizeof(json));
			counters_text(json, o->extra, sizeof(o->extra));
		}
	}
	return gw->cfg->nadapters;
}

static size_t p_points(void *ctx, const char *glob, struct console_point *out, size_t cap)
{
	struct gateway *gw = ctx;
	size_t n = 0;

	pthread_mutex_lock(&gw->current_lock);
	for (size_t i = 0; i < gw->cfg->npoints; i++) {
		const struct point *p = gw->cfg->points[i];
		const struct point_last *l = &gw->last[i];
		struct console_point *o;

		if (glob != NULL && fnmatch(glob, p->name, 0) != 0)
			continue;
		if (n++ >= cap)
			continue;
		o = &out[n - 1];
		snprintf(o->name, sizeof(o->name), "%s", p->name);
		snprintf(o->unit, sizeof(o->unit), "%s", p->unit);
		o->ts_ms = l->ts_ms;
		snprintf(o->quality, sizeof(o->quality), "%s",
			 l->ts_ms == 0 ? "-" : quality_names[l->quality]);
		if (l->ts_ms == 0 || l->value.kind == VALUE_KIND_NONE)
			snprintf(o->value, sizeof(o->value), "-");
		else
			gd_value_json(o->value, sizeof(o->value), &l->value);
	}
	pthread_mutex_unlock(&gw->current_lock);
	return n;
}

static size_t p_rules(void *ctx, struct console_rule *out, size_t cap)
{
	struct gateway *gw = ctx;
	struct policy_rule_stats rs[64];
	size_t nr;

	pthread_rwlock_rdlock(&gw->policy_lock);
	nr = policy_rule_stats(gw->cfg->policy, rs, 64);
	pthread_rwlock_unlock(&gw->policy_lock);
	for (size_t i = 0; i < nr && i < 64 && i < cap; i++) {
		snprintf(out[i].rule, sizeof(out[i].rule), "%.*s", (int)sizeof(rs[i].path) - 1,
			 rs[i].path);
		out[i].hits = rs[i].hits;
		out[i].drops = rs[i].drops;
		out[i].refusals = rs[i].refusals;
	}
	return nr < 64 ? nr : 64;
}

/* The aliases (gw->names) and the policy are one snapshot: a reload swaps and frees both. */
static int p_why(void *ctx, const char *point, char *out, size_t cap)
{
	struct gateway *gw = ctx;
	long id;

	pthread_rwlock_rdlock(&gw->policy_lock);
	id = points_find(gw->cfg, gw->names, point);
	if (id >= 0)
		policy_explain(gw->cfg->policy, gw->cfg->points, (uint32_t)id, NULL, out, cap);
	pthread_rwlock_unlock(&gw->policy_lock);
	return id >= 0 ? 0 : -1;
}

static size_t p_log(void *ctx, size_t n, char *out, size_t cap)
{
	(void)ctx;
	return log_recent(n, out, cap);
}

/* A privileged action: done, logged, and kept in the audit log with what was asked. */
static int p_action(void *ctx, enum console_action act, const char *arg, char *msg, size_t cap)
{
	static const char *const names[] = { "restart_adapter", "reconnect_uplink", "ack_faults" };
	struct gateway *gw = ctx;
	char fields[256];
	struct jw w;
	int rc = -1;

	switch (act) {
	case CONSOLE_RESTART_ADAPTER:
		for (size_t i = 0; i < gw->nrunners; i++) {
			if (strcmp(gw->runners[i].a->name, arg) != 0)
				continue;
			__atomic_store_n(&gw->runners[i].restart, true, __ATOMIC_RELAXED);
			pthread_mutex_lock(&gw->lock);
			pthread_cond_broadcast(&gw->wake);
			pthread_mutex_unlock(&gw->lock);
			snprintf(msg, cap, "adapter %s: link closed; it reopens now", arg);
			rc = 0;
		}
		if (rc != 0)
			snprintf(msg, cap, "no adapter \"%s\"", arg);
		break;
	case CONSOLE_RECONNECT_UPLINK:
		uplink_reconnect(gw->uplink);
		snprintf(msg, cap, "uplink: reconnecting to %s:%d", gw->cfg->uplink.host,
			 gw->cfg->uplink.port);
		rc = 0;
		break;
	case CONSOLE_ACK_FAULTS:
		for (size_t i = 0; i < gw->cfg->nadapters; i++)
			adapter_clear_fault(gw->cfg->adapters[i]);
		log_clear_last_problem();
		snprintf(msg, cap, "faults acknowledged; a fault still present shows again");
		rc = 0;
		break;
	}
	if (rc != 0)
		return rc;
	log_info(SUBSYS, "technician: %s", msg);
	jw_init(&w, fields, sizeof(fields));
	jw_key(&w, "action");
	jw_string(&w, names[act]);
	jw_key(&w, "target");
	jw_string(&w, arg != NULL ? arg : "");
	if (jw_finish(&w) > 0)
		audit_sink_record(gw->audit, gd_now_ms(), "console_action", fields);
	return 0;
}

static int64_t mono_now(void *ctx)
{
	(void)ctx;
	return gd_mono_ms();
}

/* ---- sessions ----------------------------------------------------------------------------- */

static void write_serial(void *ctx, const char *data, size_t n)
{
	struct console_server *s = ctx;

	/* A terminal that does not read (or no cable) costs at most the timeout; never blocks
	 * telemetry, which runs on other threads. */
	if (s->port != NULL)
		serial_write(s->port, data, n, WRITE_TIMEOUT_MS);
}

static void write_client(void *ctx, const char *data, size_t n)
{
	struct console_client *c = ctx;

	while (c->fd >= 0 && n > 0) {
		ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		data += w;
		n -= (size_t)w;
	}
}

static struct console *session_new(struct console_server *s, const struct console_output *out)
{
	const struct gd_console *cc = &s->gw->cfg->console;
	struct console_config cfg = { .pin_hash = cc->pin_hash,
				      .idle_timeout_s = cc->idle_timeout_s,
				      .lockout_after = cc->lockout_after,
				      .lockout_base_s = cc->lockout_base_s };
	struct console_provider p = { .ctx = s->gw,
				      .status = p_status,
				      .adapters = p_adapters,
				      .points = p_points,
				      .rules = p_rules,
				      .why = p_why,
				      .log = p_log,
				      .action = p_action };
	struct console_clock clk = { .now_ms = mono_now };

	return console_new(&cfg, &p, out, &clk);
}

static void serial_try_open(struct console_server *s)
{
	const struct serial_settings *set = &s->gw->cfg->console.port;
	char why[192];

	if (set->device == NULL || s->port != NULL || gd_mono_ms() < s->serial_retry_ms)
		return;
	if (serial_open(&s->port, set, why, sizeof(why)) != 0) {
		s->serial_retry_ms = gd_mono_ms() + SERIAL_RETRY_MS;
		if (!s->serial_warned)
			log_warnx(SUBSYS, "%s; retrying every %d s", why, SERIAL_RETRY_MS / 1000);
		s->serial_warned = true;
		return;
	}
	s->serial_warned = false;
	log_info(SUBSYS, "serving the console on %s, %d %d%c%d", set->device, set->baud,
		 set->data_bits, "NEO"[set->parity], set -> stop_bits);
	console_reset(s->serial_con);
}

static void serial_readable(struct console_server *s)
{
	uint8_t buf[512];
	ssize_t n = serial_read(s->port, buf, sizeof(buf), 0);

	if (n > 0) {
		console_input(s->serial_con, buf, (size_t)n);
		return;
	}
	if (n < 0) {
		/* The far end went away (a pseudo-terminal closed, a USB adapter pulled). */
		log_info(SUBSYS, "%s: the line went down; reopening",
			 s->gw->cfg->console.port.device);
		serial_close(s->port);
		s->port = NULL;
		s->serial_retry_ms = gd_mono_ms() + SERIAL_RETRY_MS / 4;
	}
}

/* Publishes the serial session's counters for console_server_health. */
static void serial_stats_update(struct console_server *s)
{
	struct console_stats st;

	console_get_stats(s->serial_con, &st);
	pthread_mutex_lock(&s->stats_lock);
	s->serial_stats = st;
	pthread_mutex_unlock(&s->stats_lock);
}

static void client_close(struct console_client *c)
{
	console_free(c->con);
	c->con = NULL;
	close(c->fd);
	c->fd = -1;
}

static void client_accept(struct console_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (size_t i = 0; i < MAX_CLIENTS; i++) {
		struct console_client *c = &s->clients[i];
		struct console_output out = { .ctx = c, .write = write_client };

		if (c->fd >= 0)
			continue;
		c->fd = fd;
		c->con = session_new(s, &out);
		if (c->con == NULL)
			client_close(c);
		return;
	}
	(void)!write(fd, "console busy: too many sessions\r\n", 33);
	close(fd);
}

static void client_readable(struct console_client *c)
{
	uint8_t buf[512];
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

	if (n > 0)
		console_input(c->con, buf, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		client_close(c);
}

static void *console_main(void *arg)
{
	struct console_server *s = arg;
	int64_t next_tick = gd_mono_ms() + TICK_MS;

	for (;;) {
		struct pollfd pfd[3 + MAX_CLIENTS];
		nfds_t n = 0;
		int64_t wait = next_tick - gd_mono_ms();

		serial_try_open(s);
		pfd[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->port ? serial_fd(s->port) : -1,
					    .events = POLLIN };
		for (size_t i = 0; i < MAX_CLIENTS; i++)
			pfd[n++] = (struct pollfd){ .fd = s->clients[i].fd, .events = POLLIN };
		if (poll(pfd, n, wait > 0 ? (int)wait : 0) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			client_accept(s);
		if (s->port != NULL && pfd[2].revents)
			serial_readable(s);
		for (size_t i = 0; i < MAX_CLIENTS; i++) {
			if (s->clients[i].fd >= 0 && pfd[3 + i].revents)
				client_readable(&s->clients[i]);
		}
		if (gd_mono_ms() >= next_tick) {
			next_tick = gd_mono_ms() + TICK_MS;
			console_tick(s->serial_con);
			for (size_t i = 0; i < MAX_CLIENTS; i++) {
				if (s->clients[i].fd >= 0)
					console_tick(s->clients[i].con);
			}
		}
		serial_stats_update(s);
	}
	return NULL;
}

/* ---- start and stop ----------------------------------------------------------------------- */

/* The local socket, reachable only by the user guardian runs as (the state directory is 0700). */
static int listen_local(struct console_server *s)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (asprintf(&s->sock_path, "%s/console.sock", s->gw->cfg->state_dir) < 0) {
		s->sock_path = NULL;
		return GD_ENOMEM;
	}
	if (strlen(s->sock_path) >= sizeof(addr.sun_path)) {
		log_warnx(SUBSYS, "%s: path too long for a socket; no local console", s->sock_path);
		return 0;
	}
	strcpy(addr.sun_path, s->sock_path);
	unlink(s->sock_path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    chmod(s->sock_path, 0600) != 0 || listen(s->listen_fd, 4) != 0) {
		log_warn(SUBSYS, "cannot serve the local console on %s", s->sock_path);
		return GD_EIO;
	}
	return 0;
}

int console_server_start(struct gateway *gw)
{
	struct console_server *s = calloc(1, sizeof(*s));
	struct console_output out;

	if (s == NULL)
		return GD_ENOMEM;
	pthread_mutex_init(&s->stats_lock, NULL);
	gw->console = s;
	s->gw = gw;
	s->listen_fd = -1;
	s->wake[0] = s->wake[1] = -1;
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		s->clients[i].fd = -1;
	out = (struct console_output){ .ctx = s, .write = write_serial };
	s->serial_con = session_new(s, &out);
	if (s->serial_con == NULL || pipe2(s->wake, O_CLOEXEC) != 0 || listen_local(s) != 0)
		return GD_EIO;
	serial_stats_update(s);
	if (pthread_create(&s->thread, NULL, console_main, s) != 0)
		return GD_EIO;
	s->started = true;
	return 0;
}

void console_server_stop(struct gateway *gw)
{
	struct console_server *s = gw->console;

	if (s == NULL)
		return;
	if (s->started) {
		(void)!write(s->wake[1], "x", 1);
		pthread_join(s->thread, NULL);
	}
	for (size_t i = 0; i < MAX_CLIENTS; i++) {
		if (s->clients[i].fd >= 0)
			client_close(&s->clients[i]);
	}
	console_free(s->serial_con);
	serial_close(s->port);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->sock_path);
	}
	free(s->sock_path);
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	pthread_mutex_destroy(&s->stats_lock);
	free(s);
	gw->console = NULL;
}

void console_server_health(struct gateway *gw, struct jw *w)
{
	struct console_server *s = gw->console;
	struct console_stats st;

	if (s == NULL || s->serial_con == NULL)
		return;
	/* The serial console is the one a stranger at the box can reach; its lockouts matter. */
	pthread_mutex_lock(&s->stats_lock);
	st = s->serial_stats;
	pthread_mutex_unlock(&s->stats_lock);
	jw_key(w, "console");
	jw_object(w);
	jw_key(w, "logins");
	jw_uint(w, st.logins);
	jw_key(w, "login_failures");
	jw_uint(w, st.login_failures);
	jw_key(w, "lockouts");
	jw_uint(w, st.lockouts);
	jw_key(w, "locked");
	jw_bool(w, st.locked_until_ms > gd_mono_ms());
	jw_end(w);
}
