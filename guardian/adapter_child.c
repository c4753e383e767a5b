/* adapter_child.c: `guardian adapter-child`, one adapter in a process of its own: it adopts the
 * link its parent opened, confines itself, polls, and writes or reads only when asked
 * (compartment.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "../base/sandbox.h"
#include "compartment.h"
#include "core.h"

#define SUBSYS	 "adapter-child"
#define STATS_MS 250 /* counters go to the parent at most this often, and when the link changes */

struct child {
	struct adapter *a;
	uint32_t send_seq, recv_seq;
	int64_t stats_at;
	struct adapter_stats sent;
	char sent_fault[CM_FAULT_MAX], sent_json[CM_JSON_MAX + 1];
	uint8_t msg[CM_MSG_MAX];
	char text[CM_MSG_MAX];
};

/* Sends one message; a parent that is gone ends the child. */
static void send_msg(struct child *ch, size_t len)
{
	ssize_t n;

	if (len == 0)
		return;
	do
		n = send(CM_FD_CHANNEL, ch->msg, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		_exit(1);
	ch->send_seq++;
}

static void stats_now(struct adapter *a, struct adapter_stats *st)
{
#define L(f) st->f = __atomic_load_n(&a->stats.f, __ATOMIC_RELAXED)
	L(polls);
	L(polls_ok);
	L(timeouts);
	L(exceptions);
	L(bad_frames);
	L(io_errors);
	L(reconnects);
	L(samples);
	L(last_ok_ms);
	L(link_up);
#undef L
}

/* The counters, the fault and the transport's counters, when they changed ('force': even
 * within STATS_MS of the last). */
static void send_stats(struct child *ch, bool force)
{
	struct adapter *a = ch->a;
	struct adapter_stats st = { 0 };
	char fault[CM_FAULT_MAX], json[CM_JSON_MAX + 1] = "";
	int64_t now = gd_mono_ms();

	if (!force && now - ch->stats_at < STATS_MS)
		return;
	stats_now(a, &st);
	adapter_get_fault(a, fault, sizeof(fault));
	if (a->ops->stats_json != NULL && a->ops->stats_json(a, json, sizeof(json)) >= sizeof(json))
		json[0] = '\0'; /* too long for a message: none rather than a cut one */
	if (memcmp(&st, &ch->sent, sizeof(st)) == 0 && strcmp(fault, ch->sent_fault) == 0 &&
	    strcmp(json, ch->sent_json) == 0)
		return;
	ch->stats_at = now;
	ch->sent = st;
	snprintf(ch->sent_fault, sizeof(ch->sent_fault), "%s", fault);
	snprintf(ch->sent_json, sizeof(ch->sent_json), "%s", json);
	send_msg(ch, cm_encode_stats(ch->msg, sizeof(ch->msg), ch->send_seq, &st, fault, json));
}

/* The sink: a poll's samples, in as many messages as they need. */
static void child_emit(struct point_sink *sink, struct adapter *a, const struct sample *samples,
		       size_t nsamples)
{
	struct child *ch = sink->ctx;
	size_t done = 0;

	while (done < nsamples) {
		size_t taken = 0;
		size_t len = cm_encode_batch(ch->msg, sizeof(ch->msg), ch->send_seq, samples + done,
					     nsamples - done, a->points, a->npoints, &taken);

		send_msg(ch, len);
		if (taken == 0)
			break;
		done += taken;
	}
}

static void answer(struct child *ch, uint32_t seq, int rc, const struct value *v)
{
	struct value none = { .kind = VALUE_KIND_NONE };

	if (v == NULL || v->kind == VALUE_KIND_STRING)
		v = &none;
	send_msg(ch, cm_encode_answer(ch->msg, sizeof(ch->msg), ch->send_seq, seq, rc, v));
}

/* One request of the parent. */
static void on_request(struct child *ch)
{
	struct adapter *a = ch->a;
	struct cm_msg m;
	struct value got = { .kind = VALUE_KIND_NONE };
	uint8_t buf[CM_HDR_LEN + 32 + CM_TEXT_MAX];
	char why[256];
	ssize_t n;
	int rc;

	do
		n = recv(CM_FD_CHANNEL, buf, sizeof(buf), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0)
		_exit(0); /* the parent is gone */
	if ((size_t)n > sizeof(buf) ||
	    cm_decode(buf, (size_t)n, ch->recv_seq, false, a->npoints, &m, NULL, 0, ch->text,
		      sizeof(ch->text), why, sizeof(why)) != 0) {
		log_warnx(SUBSYS, "%s: a bad message from the parent: %s", a->name,
			  (size_t)n > sizeof(buf) ? "too long" : why);
		_exit(1);
	}
	ch->recv_seq++;
	if ((m.type == CM_WRITE || m.type == CM_READ) && gd_mono_ms() > m.deadline_ms) {
		/* The parent has given up on it: too late to touch the device. */
		answer(ch, m.seq, GD_ETIMEDOUT, NULL);
		return;
	}
	switch (m.type) {
	case CM_WRITE:
		rc = a->ops->write != NULL ? a->ops->write(a, &a->points[m.index], &m.value)
					   : GD_EINVAL;
		answer(ch, m.seq, rc, NULL);
		break;
	case CM_READ:
		rc = a->ops->read != NULL ? a->ops->read(a, &a->points[m.index], &got) : GD_EINVAL;
		answer(ch, m.seq, rc, &got);
		break;
	case CM_STOP:
		/* As a thread does at a stop: what was read is sent, the link closed. */
		a->ops->close(a);
		send_stats(ch, true);
		exit(0);
	default:
		_exit(1);
	}
}

#ifdef GUARDIAN_TEST_PROBE
/*
 * A test-only build (build/guardian-probe, never installed): right after the sandbox, what a
 * compromised adapter would try first, one line each on stderr.
 */
static void probe_say(const char *what, int rc)
{
	fprintf(stderr, "probe: %s: %s\n", what, rc < 0 ? strerror(errno) : "succeeded");
}

/* With GUARDIAN_PROBE_BAD_INDEX=<adapter name>, that adapter's child then sends a batch that
 * names a point it does not have: the parent must kill it. */
static void probe_bad_index(struct child *ch)
{
	const char *target = getenv("GUARDIAN_PROBE_BAD_INDEX");
	struct sample s = { .point_id = ch->a->points[0].id };
	uint32_t bad = (uint32_t)ch->a->npoints;
	size_t taken, len;

	if (target == NULL || strcmp(target, ch->a->name) != 0)
		return;
	len = cm_encode_batch(ch->msg, sizeof(ch->msg), ch->send_seq, &s, 1, ch->a->points,
			      ch->a->npoints, &taken);
	memcpy(ch->msg + CM_HDR_LEN + 5, &bad, sizeof(bad));
	fprintf(stderr, "probe: a batch with point index %u of %zu\n", bad, ch->a->npoints);
	send_msg(ch, len);
}

static void probe(const struct gd_config *cfg)
{
	char path[4096], what[4200];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	fprintf(stderr, "probe: a sanitizer build: read-only opens are allowed for its runtime\n");
#endif
	snprintf(path, sizeof(path), "%s/identity.key", cfg->state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(what, sizeof(what), "open(%s)", path);
	probe_say(what, fd);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	probe_say("socket(AF_INET)", fd);
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	probe_say("socket(AF_INET6)", fd);
	probe_say("execve(/bin/true)",
		  execve("/bin/true", (char *const[]){ (char *)"true", NULL }, NULL));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/console.sock", cfg->state_dir);
	probe_say("connect(AF_UNIX)",
		  fd < 0 ? fd : connect(fd, (struct sockaddr *)&sun, sizeof(sun)));
	fflush(stderr);
}
#endif

static int child_loop(struct child *ch)
{
	struct adapter *a = ch->a;
	struct point_sink sink = { .emit = child_emit, .ctx = ch };

	a->next_due_ms = 0;
	for (;;) {
		struct pollfd pfd = { .fd = CM_FD_CHANNEL, .events = POLLIN };
		int64_t now = gd_mono_ms();
		int wait = 0, rc;

		if (now >= a->next_due_ms) {
			bool was_up = __atomic_load_n(&a->stats.link_up, __ATOMIC_RELAXED);

			a->ops->poll(a, now, &sink);
			if (!__atomic_load_n(&a->stats.link_up, __ATOMIC_RELAXED)) {
				/* Lost: one more poll says so for every point, then the parent
				 * reopens it. */
				send_stats(ch, true);
				if (!was_up)
					return CM_EXIT_LINK;
				a->next_due_ms = now;
			} else {
				send_stats(ch, false);
			}
		} else {
			int64_t left = a->next_due_ms - now;

			wait = left > 1000 ? 1000 : (int)left;
		}
		rc = poll(&pfd, 1, wait);
		if (rc > 0)
			on_request(ch);
		else if (rc < 0 && errno != EINTR)
			return 1;
	}
}

int adapter_child_main(int argc, char **argv)
{
	struct gd_sandbox sb = { .profile = "adapter" };
	struct gd_config *cfg = NULL;
	struct child *ch = NULL;
	struct adapter *a;
	char why[512], sha[65];
	unsigned long index;
	sigset_t none;
	struct conf c;
	char *end;
	int rc;

	compartment_child_signals();
	/* The runner thread's mask came across the exec: this process takes its signals. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_NAME, "guardian-adapt", 0, 0, 0);
	if (argc != 6 || fcntl(CM_FD_CHANNEL, F_GETFD) < 0 || fcntl(CM_FD_LINK, F_GETFD) < 0 ||
	    fcntl(CM_FD_CONFIG, F_GETFD) < 0) {
		fprintf(stderr, "guardian adapter-child: started by guardian run only, with a "
				"channel on fd 3, a link on fd 4 and the config on fd 5\n");
		return 2;
	}
	/* The bytes of the config the parent loaded and measured (a sealed memfd: the file may be
	 * out of this user's reach), parsed before the sandbox; the digest in argv checks that
	 * they are the config guardian runs, should a descriptor ever be mixed up. */
	conf_init(&c, argv[2]);
	rc = compartment_config_load(argv[2], NULL, &c, &cfg);
	if (rc != 0) {
		log_error(SUBSYS, "%s: cannot load the config of %s: %s", argv[4], argv[2],
			  c.nerrors > 0 && c.errors[0] != NULL ? c.errors[0] : "out of memory");
		conf_release(&c);
		return CM_EXIT_SETUP;
	}
	conf_release(&c);
	log_set_level((enum log_level)cfg->log_level);
	errno = 0;
	index = strtoul(argv[3], &end, 10);
	gd_hex_encode(cfg->measured_config.sha256, 32, sha);
	if (errno != 0 || *end != '\0' || index >= cfg->nadapters ||
	    strcmp(cfg->adapters[index]->name, argv[4]) != 0 || strcmp(sha, argv[5]) != 0) {
		log_error(SUBSYS, "%s: the config handed over is not the one guardian runs",
			  argv[4]);
		rc = CM_EXIT_SETUP;
		goto out;
	}
	a = cfg->adapters[index];
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL || a->ops->adopt == NULL || a->ops->adopt(a, CM_FD_LINK) != 0) {
		log_warn(SUBSYS, "%s: cannot take the link over", a->name);
		rc = CM_EXIT_SETUP;
		goto out;
	}
	ch->a = a;
	if (gd_sandbox_enter(&sb, why, sizeof(why)) != 0) {
		log_error(SUBSYS, "%s: sandbox: %s", a->name, why);
		rc = CM_EXIT_SETUP;
		goto out;
	}
#ifdef GUARDIAN_TEST_PROBE
	probe(cfg);
	probe_bad_index(ch);
#endif
	log_debug(SUBSYS, "%s: polling in pid %d, profile adapter", a->name, (int)getpid());
	rc = child_loop(ch);
out:
	free(ch);
	gd_config_free(cfg);
	return rc;
}
