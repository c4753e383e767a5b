/* uplink_remote.c: guardian's side of the uplink in a child process: the uplink.h functions the
 * gateway calls, carried over a socketpair to `guardian uplink-child`, which it starts, watches
 * and starts again (uplink_remote.h). */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "compartment.h"
#include "uplink_remote.h"
#include "uplink_wire.h"

#define SUBSYS "uplink"

#define FIRST_WORD_MS  15000 /* for the child's HELLO at the first start */
#define RESPAWN_MIN_MS 250
#define RESPAWN_MAX_MS 30000
#define STOP_EXTRA_MS  5000  /* the child's stop beyond the drain it was given */
#define TAKEN_WAIT_MS  2000  /* at most, for the child to take a telemetry message */
#define LASTED_MS      10000 /* a child that lived this long starts the backoff over */

/* A telemetry message the child has not yet made its own (uw_stats.durable_seq). */
struct tele {
	struct tele *next;
	uint64_t seq;
	size_t len;
	char data[];
};

/* An event waiting to go to the child. */
struct outev {
	struct outev *next;
	uint64_t token; /* 0: no acknowledgement wanted */
	char subtopic[UW_SUBTOPIC_MAX];
	size_t len;
	char data[];
};

/* An event the child has, whose fate its caller waits for. */
struct pending_ack {
	struct pending_ack *next;
	uint64_t token, gen; /* gen: the child it went to (0: not sent yet) */
	uplink_ack_fn *fn;
	void *ctx;
	uint64_t id;
};

struct remote {
	const struct gd_config *cfg;
	size_t max_message;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast on every change */
	/* the child of generation 'gen' */
	pid_t pid;
	int pidfd;
	int sock;
	uint64_t gen;
	bool ready;	 /* its HELLO came: the writer may talk to it */
	bool setup_sent; /* the replayed state went to it */
	bool start_sent;
	bool broken; /* the writer failed on it */
	/* what every child is told at its start */
	uplink_command_fn *cmd_fn;
	void *cmd_ctx;
	char extra[UW_SUBTOPIC_MAX];
	uplink_command_fn *extra_fn;
	void *extra_ctx;
	bool started, held, hold_dirty;
	char *health;
	size_t health_len;
	bool health_dirty;
	char *cred_key, *cred_cert;
	bool cred_dirty;
	bool reconnect;
	/* telemetry, oldest first; 'tele_next' the first the current child has not been sent */
	struct tele *tele_head, *tele_tail, *tele_next;
	size_t tele_bytes, tele_count, tele_max;
	uint64_t tele_dropped, tele_last_seq;
	uint64_t taken; /* the newest the child said it took (UW_TAKEN) */
	int64_t drop_logged_ms;
	/* events */
	struct outev *ev_head, *ev_tail;
	size_t nev;
	uint64_t ev_dropped;
	struct pending_ack *acks;
	uint64_t next_token;
	/* what the child says */
	struct uw_stats stats;
	bool have_hello;
	uint64_t first_last_seq;
	/* the end */
	bool stopping, stop_sent, stopped, quit;
	bool child_gone; /* the last child was reaped */
	int stop_ms;
	int restarts; /* since the last child that came up */
	bool down_logged;
	pthread_t supervisor, writer;
	bool supervisor_started, writer_started;
};

static struct timespec mono_deadline(int64_t mono_ms)
{
	return (struct timespec){ .tv_sec = mono_ms / 1000, .tv_nsec = (mono_ms % 1000) * 1000000 };
}

/* ---- the child's directories, under a user of its own -------------------------------------- */

/* With sandbox.uplink_user: its spool and credentials directories, at CM_FD_SPOOL and
 * CM_FD_CREDS in the child (which cannot walk the state directory to them). */
static int spool_dir_fd = -1, creds_dir_fd = -1;

/* 'dir' made (0700) when it is missing and, when this process may (root), given to uid:gid,
 * with what it holds (one level: the spool's segments, the credentials); else it must belong to
 * uid already. Its descriptor (O_PATH), or -1 with 'why'. */
static int own_dir(const char *dir, const char *key, const char *user, uid_t uid, gid_t gid,
		   char *why, size_t cap)
{
	bool may_chown = geteuid() == 0;
	struct stat st;
	int fd;

	if (may_chown && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		gd_whyf(why, cap, "%s: cannot make %s: %s", key, dir, strerror(errno));
		return -1;
	}
	fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || (!may_chown && st.st_uid != uid)) {
		gd_whyf(why, cap,
			"%s: the uplink's directory %s must belong to its user %s (uid %u)%s%s; as "
			"root: mkdir -p %s && chown -R %s: %s && chmod 700 %s (or start guardian "
			"as "
			"root, which does it)",
			key, dir, user, (unsigned)uid, fd < 0 ? ": " : "",
			fd < 0 ? strerror(errno) : "", dir, user, dir, dir);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (may_chown) {
		int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *e;

		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) != 0 || d == NULL) {
			gd_whyf(why, cap, "%s: cannot give %s to %s: %s", key, dir, user,
				strerror(errno));
			if (d != NULL)
				closedir(d);
			else if (dfd >= 0)
				close(dfd);
			close(fd);
			return -1;
		}
		int failed = fchmod(dfd, 0700) != 0 ? errno : 0;

		while (failed == 0 && (e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
			    fchownat(dfd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
				failed = errno;
		closedir(d);
		if (failed != 0) {
			gd_whyf(why, cap, "%s: cannot give what %s holds to %s: %s", key, dir, user,
				strerror(failed));
			close(fd);
			return -1;
		}
	}
	return fd;
}

int uplink_remote_prepare(const struct gd_config *cfg, char *why, size_t cap)
{
	const struct gd_sandbox_config *sb = &cfg->sandbox;
	const struct spool_config *sp = &cfg->uplink.spool;
	char creds[4096];

	if (sb->uplink_user == NULL)
		return 0;
	/* The state directory, as preflight would make it, but as guardian's user (root makes it
	 * now, before it becomes that user). */
	if (geteuid() == 0 && mkdir(cfg->state_dir, 0700) == 0 && sb->user != NULL) {
		struct passwd *pw = getpwnam(sb->user);

		if (pw != NULL && chown(cfg->state_dir, pw->pw_uid, pw->pw_gid) != 0) {
			gd_whyf(why, cap, "state_dir: cannot give %s to %s: %s", cfg->state_dir,
				sb->user, strerror(errno));
			return GD_EDENIED;
		}
	}
	snprintf(creds, sizeof(creds), "%s/uplink", cfg->state_dir);
	creds_dir_fd = own_dir(creds, "sandbox.uplink_user", sb->uplink_user, sb->uplink_uid,
			       sb->uplink_gid, why, cap);
	if (creds_dir_fd < 0)
		return GD_EDENIED;
	if (sp->enabled && sp->dir != NULL) {
		spool_dir_fd = own_dir(sp->dir, "uplink.spool.dir", sb->uplink_user, sb->uplink_uid,
				       sb->uplink_gid, why, cap);
		if (spool_dir_fd < 0) {
			close(creds_dir_fd);
			creds_dir_fd = -1;
			return GD_EDENIED;
		}
	}
	return 0;
}

/* ---- the child: start, kill, reap --------------------------------------------------------- */

/*
 * Starts `guardian uplink-child FILE STATE_DIR SHA256` with its end of a socketpair on fd 3 and
 * the config's bytes on CM_FD_CONFIG (compartment_spawn); with sandbox.uplink_user, as that
 * user, with its directories on CM_FD_SPOOL and CM_FD_CREDS. The child checks that the digest of
 * the bytes is the one guardian runs.
 */
static int spawn(struct remote *r, pid_t *pid_out, int *pidfd_out, int *sock_out)
{
	char sha[65];
	char *argv[] = { (char *)"guardian",
			 (char *)"uplink-child",
			 r->cfg->file,
			 r->cfg->state_dir,
			 sha,
			 NULL };

	const struct gd_sandbox_config *sb = &r->cfg->sandbox;
	struct cm_spawn sp = { .argv = argv,
			       .link = -1,
			       .spool_dir = sb->uplink_user != NULL ? spool_dir_fd : -1,
			       .creds_dir = sb->uplink_user != NULL ? creds_dir_fd : -1,
			       .as_user = sb->uplink_user != NULL,
			       .uid = sb->uplink_uid,
			       .gid = sb->uplink_gid };

	gd_hex_encode(r->cfg->measured_config.sha256, 32, sha);
	if (compartment_spawn(&sp, pid_out, pidfd_out, sock_out) != 0) {
		log_warn(SUBSYS, "cannot start the uplink child");
		return GD_EIO;
	}
	return 0;
}

/* Kills (SIGKILL) and reaps the child; one told to stop gets STOP_EXTRA_MS to exit by itself
 * first (it closes its spool on the way). 'why' says how it ended, for the log. */
static void reap(struct remote *r, pid_t pid, int pidfd, bool kill_it, char *why, size_t cap)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	int status = 0;

	if (!kill_it && pidfd >= 0 && poll(&pfd, 1, STOP_EXTRA_MS) == 0)
		kill_it = true;
	if (kill_it && compartment_kill(pidfd, pid) != 0)
		log_warn(SUBSYS, "cannot kill the uplink child (pid %d)", (int)pid);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (pidfd >= 0)
		close(pidfd);
	if (WIFSIGNALED(status))
		snprintf(why, cap, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(why, cap, "exit status %d", WEXITSTATUS(status));
	(void)r;
}

/* ---- telemetry kept for the child --------------------------------------------------------- */

/* Forgets what the child holds now: everything up to 'seq'. Under 'lock'. */
static void tele_trim(struct remote *r, uint64_t seq)
{
	while (r->tele_head != NULL && r->tele_head->seq <= seq) {
		struct tele *t = r->tele_head;

		if (r->tele_next == t)
			r->tele_next = t->next;
		r->tele_head = t->next;
		if (r->tele_head == NULL)
			r->tele_tail = NULL;
		r->tele_bytes -= t->len;
		r->tele_count--;
		free(t);
	}
}

/* ---- messages from the child -------------------------------------------------------------- */

static struct pending_ack *ack_take(struct remote *r, uint64_t token)
{
	for (struct pending_ack **p = &r->acks; *p != NULL; p = &(*p)->next) {
		if ((*p)->token == token) {
			struct pending_ack *a = *p;

			*p = a->next;
			return a;
		}
	}
	return NULL;
}

/* One message from the child of generation 'gen'. 0, or GD_EPROTO for one out of the rules. */
static int dispatch(struct remote *r, uint64_t gen, const struct uw_msg *m)
{
	uint64_t u64;
	uint32_t u32;

	switch (m->type) {
	case UW_HELLO:
		memcpy(&u64, m->data, 8);
		pthread_mutex_lock(&r->lock);
		if (r->ready) {
			pthread_mutex_unlock(&r->lock);
			return GD_EPROTO; /* once */
		}
		if (!r->have_hello) {
			r->have_hello = true;
			r->first_last_seq = u64;
		} else if (r->restarts > 0 || r->down_logged) {
			log_info(SUBSYS,
				 "the uplink child is back (pid %d); its spool holds up to "
				 "seq %llu; %zu messages kept for it",
				 (int)r->pid, (unsigned long long)u64, r->tele_count);
		}
		/* What its spool has is its own; the rest goes to it again. */
		tele_trim(r, u64);
		if (u64 > r->taken)
			r->taken = u64;
		r->tele_next = r->tele_head;
		r->ready = true;
		r->setup_sent = r->start_sent = false;
		r->down_logged = false;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		return 0;
	case UW_COMMAND: {
		uplink_command_fn *fn;
		void *ctx;

		memcpy(&u32, m->data, 4);
		pthread_mutex_lock(&r->lock);
		fn = u32 == UW_TOPIC_COMMANDS ? r->cmd_fn
		     : u32 == UW_TOPIC_EXTRA  ? r->extra_fn
					      : NULL;
		ctx = u32 == UW_TOPIC_COMMANDS ? r->cmd_ctx : r->extra_ctx;
		pthread_mutex_unlock(&r->lock);
		if (u32 > UW_TOPIC_EXTRA || fn == NULL)
			return GD_EPROTO; /* nothing asked for it */
		/* The parent's handler parses and decides, as it does in one process. */
		fn(ctx, (const char *)m->data + 4, m->len - 4);
		return 0;
	}
	case UW_ACK: {
		struct pending_ack *a;

		memcpy(&u64, m->data, 8);
		memcpy(&u32, m->data + 8, 4);
		if (u32 > 1)
			return GD_EPROTO;
		pthread_mutex_lock(&r->lock);
		for (a = r->acks; a != NULL && a->token != u64; a = a->next)
			;
		/* Only an event this child was given. */
		a = a != NULL && a->gen == gen ? ack_take(r, u64) : NULL;
		pthread_mutex_unlock(&r->lock);
		if (a == NULL)
			return GD_EPROTO;
		a->fn(a->ctx, a->id, u32 == 1);
		free(a);
		return 0;
	}
	case UW_STATS:
		pthread_mutex_lock(&r->lock);
		memcpy(&r->stats, m->data, sizeof(r->stats));
		r->stats.uplink.last_error[sizeof(r->stats.uplink.last_error) - 1] = '\0';
		r->stats.uplink.spool.last_error[sizeof(r->stats.uplink.spool.last_error) - 1] =
			'\0';
		tele_trim(r, r->stats.durable_seq);
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		return 0;
	case UW_STOPPED:
		pthread_mutex_lock(&r->lock);
		r->stopped = true;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		return 0;
	case UW_TAKEN:
		memcpy(&u64, m->data, 8);
		pthread_mutex_lock(&r->lock);
		if (u64 > r->tele_last_seq) {
			pthread_mutex_unlock(&r->lock);
			return GD_EPROTO; /* never sent */
		}
		if (u64 > r->taken)
			r->taken = u64;
		tele_trim(r, u64);
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		return 0;
	case UW_PROBLEM:
		log_warnx(SUBSYS, "uplink child: %.*s", (int)m->len, (const char *)m->data);
		return 0;
	default:
		return GD_EPROTO;
	}
}

/* ---- the supervisor: one child after another ---------------------------------------------- */

/* The events the gone child had: their callers learn they were not delivered. */
static void acks_fail(struct remote *r, uint64_t gen)
{
	for (;;) {
		struct pending_ack *a = NULL;

		pthread_mutex_lock(&r->lock);
		for (struct pending_ack **p = &r->acks; *p != NULL; p = &(*p)->next) {
			if ((*p)->gen == gen) {
				a = *p;
				*p = a->next;
				break;
			}
		}
		pthread_mutex_unlock(&r->lock);
		if (a == NULL)
			return;
		a->fn(a->ctx, a->id, false);
		free(a);
	}
}

static void *supervisor_main(void *arg)
{
	struct remote *r = arg;
	for (;;) {
		struct uw_chan in;
		struct uw_msg m;
		pid_t pid;
		int pidfd, sock, rc;
		uint64_t gen;
		char how[96];
		bool protocol = false, told;
		int64_t started_ms = 0;

		pthread_mutex_lock(&r->lock);
		if (r->quit || r->stopped) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		pthread_mutex_unlock(&r->lock);
		if (spawn(r, &pid, &pidfd, &sock) != 0)
			goto backoff;
		if (uw_chan_init(&in, sock, true, r->max_message) != 0) {
			close(sock);
			reap(r, pid, pidfd, true, how, sizeof(how));
			goto backoff;
		}
		pthread_mutex_lock(&r->lock);
		r->pid = pid;
		r->pidfd = pidfd;
		r->sock = sock;
		gen = ++r->gen;
		r->ready = r->setup_sent = r->broken = r->child_gone = false;
		if (r->quit)
			shutdown(sock, SHUT_RDWR); /* uplink_free came while it started */
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		log_debug(SUBSYS, "uplink child started: pid %d", (int)pid);
		started_ms = gd_mono_ms();
		while ((rc = uw_recv(&in, &m)) == 0) {
			if (dispatch(r, gen, &m) != 0) {
				rc = GD_EPROTO;
				break;
			}
		}
		protocol = rc == GD_EPROTO;
		pthread_mutex_lock(&r->lock);
		r->ready = false;
		r->sock = -1;
		r->pid = 0;
		r->pidfd = -1;
		/* The next child is sent what this one had not made its own. */
		r->tele_next = r->tele_head;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		uw_chan_release(&in);
		/* Wait for the writer to be off this socket before it closes. */
		pthread_mutex_lock(&r->lock);
		shutdown(sock, SHUT_RDWR);
		pthread_mutex_unlock(&r->lock);
		pthread_mutex_lock(&r->lock);
		told = r->stop_sent && !protocol;
		pthread_mutex_unlock(&r->lock);
		reap(r, pid, pidfd, !told, how, sizeof(how));
		close(sock);
		acks_fail(r, gen);
		pthread_mutex_lock(&r->lock);
		r->child_gone = true;
		if (r->quit || r->stopped || r->stop_sent) {
			r->stopped = true;
			pthread_cond_broadcast(&r->cond);
			pthread_mutex_unlock(&r->lock);
			break;
		}
		/* Backoff grows over children that end soon after they start (garbage or a
		 * crash at each start), and starts over after one that lasted. */
		if (gd_mono_ms() - started_ms > LASTED_MS)
			r->restarts = 0;
		if (protocol)
			log_warnx(SUBSYS,
				  "the uplink child (pid %d) broke the protocol: killed; another "
				  "starts",
				  (int)pid);
		else if (!r->down_logged)
			log_warnx(SUBSYS,
				  "the uplink child (pid %d) ended (%s); another starts, telemetry "
				  "waits for it",
				  (int)pid, how);
		r->down_logged = true;
		pthread_mutex_unlock(&r->lock);
	backoff:
		pthread_mutex_lock(&r->lock);
		r->restarts++;
		{
			int64_t until = gd_mono_ms() +
					gd_backoff_ms(RESPAWN_MIN_MS, RESPAWN_MAX_MS, r->restarts);
			struct timespec ts = mono_deadline(until);

			while (!r->quit && gd_mono_ms() < until)
				pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		}
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

/* ---- the writer: everything to the child, in order ---------------------------------------- */

/* Sends while 'lock' is released; the socket stays open until the supervisor has reaped. */
static int send_unlocked(struct remote *r, struct uw_chan *out, uint16_t type,
			 const struct iovec *iov, int n)
{
	int rc;

	pthread_mutex_unlock(&r->lock);
	rc = uw_send(out, type, iov, n);
	pthread_mutex_lock(&r->lock);
	return rc;
}

/* The next message for the child of generation 'gen', sent. 1 sent, 0 nothing to send, <0 error.
 * Under 'lock'. */
static int write_one(struct remote *r, struct uw_chan *out, uint8_t *buf)
{
	uint32_t u32;
	int rc;

	if (!r->setup_sent) {
		/* A new child: it is told everything it is to know. */
		r->setup_sent = true;
		r->hold_dirty = r->cred_dirty = true;
		r->health_dirty = r->health != NULL;
	}
	if (r->cred_dirty) {
		size_t klen, clen;

		r->cred_dirty = false;
		if (r->cred_key == NULL)
			return 1;
		klen = strlen(r->cred_key);
		clen = strlen(r->cred_cert);
		if (klen + clen > UW_CRED_MAX)
			return 1;
		u32 = (uint32_t)klen;
		memcpy(buf, r->cred_key, klen);
		memcpy(buf + klen, r->cred_cert, clen);
		rc = send_unlocked(r, out, UW_CREDENTIALS,
				   (struct iovec[]){ { &u32, 4 }, { buf, klen + clen } }, 2);
		return rc != 0 ? rc : 1;
	}
	if (r->hold_dirty) {
		r->hold_dirty = false;
		u32 = r->held;
		rc = send_unlocked(r, out, UW_HOLD, (struct iovec[]){ { &u32, 4 } }, 1);
		return rc != 0 ? rc : 1;
	}
	if (r->health_dirty) {
		size_t len = r->health_len;

		r->health_dirty = false;
		memcpy(buf, r->health, len);
		rc = send_unlocked(r, out, UW_HEALTH, (struct iovec[]){ { buf, len } }, 1);
		return rc != 0 ? rc : 1;
	}
	if (r->started && !r->start_sent) {
		/* Once per child, after what it is to know: its subscriptions, then START. */
		char field[UW_SUBTOPIC_MAX] = { 0 };

		r->start_sent = true;
		if (r->cmd_fn != NULL) {
			u32 = UW_TOPIC_COMMANDS;
			rc = send_unlocked(
				r, out, UW_SUBSCRIBE,
				(struct iovec[]){ { &u32, 4 }, { field, sizeof(field) } }, 2);
			if (rc != 0)
				return rc;
		}
		if (r->extra_fn != NULL) {
			u32 = UW_TOPIC_EXTRA;
			memcpy(field, r->extra, sizeof(field));
			rc = send_unlocked(
				r, out, UW_SUBSCRIBE,
				(struct iovec[]){ { &u32, 4 }, { field, sizeof(field) } }, 2);
			if (rc != 0)
				return rc;
		}
		rc = send_unlocked(r, out, UW_START, NULL, 0);
		return rc != 0 ? rc : 1;
	}
	if (r->ev_head != NULL) {
		struct outev *e = r->ev_head;

		r->ev_head = e->next;
		if (r->ev_head == NULL)
			r->ev_tail = NULL;
		r->nev--;
		for (struct pending_ack *a = r->acks; e->token != 0 && a != NULL; a = a->next)
			if (a->token == e->token)
				a->gen = r->gen;
		rc = send_unlocked(r, out, UW_EVENT,
				   (struct iovec[]){ { &e->token, 8 },
						     { e->subtopic, UW_SUBTOPIC_MAX },
						     { e->data, e->len } },
				   3);
		free(e);
		return rc != 0 ? rc : 1;
	}
	if (r->tele_next != NULL) {
		struct tele *t = r->tele_next;
		uint64_t seq = t->seq;
		size_t len = t->len;

		r->tele_next = t->next;
		memcpy(buf, t->data, len);
		rc = send_unlocked(r, out, UW_TELEMETRY,
				   (struct iovec[]){ { &seq, 8 }, { buf, len } }, 2);
		return rc != 0 ? rc : 1;
	}
	if (r->reconnect) {
		r->reconnect = false;
		rc = send_unlocked(r, out, UW_RECONNECT, NULL, 0);
		return rc != 0 ? rc : 1;
	}
	if (r->stopping && !r->stop_sent) {
		r->stop_sent = true;
		u32 = (uint32_t)(r->stop_ms > 0 ? r->stop_ms : 0);
		rc = send_unlocked(r, out, UW_STOP, (struct iovec[]){ { &u32, 4 } }, 1);
		return rc != 0 ? rc : 1;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct remote *r = arg;
	size_t cap = r->max_message + UW_HEALTH_MAX + UW_CRED_MAX;
	uint8_t *buf = malloc(cap);
	struct uw_chan out = { .fd = -1 };
	uint64_t gen = 0;

	if (buf == NULL) {
		log_warnx(SUBSYS, "out of memory for the uplink child's writer");
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	while (!r->quit) {
		int rc;

		if (!r->ready || r->broken) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		if (r->gen != gen) {
			/* A descriptor of its own: the supervisor closes the socket when it likes.
			 */
			if (out.fd >= 0)
				close(out.fd);
			gen = r->gen;
			out = (struct uw_chan){ .fd = fcntl(r->sock, F_DUPFD_CLOEXEC, 0),
						.parent = true,
						.max_message = r->max_message };
			if (out.fd < 0) {
				r->broken = true;
				shutdown(r->sock, SHUT_RDWR);
				continue;
			}
		}
		rc = write_one(r, &out, buf);
		if (rc < 0) {
			/* The supervisor sees the end of the channel and starts another. */
			if (r->gen == gen) {
				r->broken = true;
				shutdown(r->sock, SHUT_RDWR);
			}
			continue;
		}
		if (rc == 0)
			pthread_cond_wait(&r->cond, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	if (out.fd >= 0)
		close(out.fd);
	free(buf);
	return NULL;
}

/* ---- the uplink.h functions --------------------------------------------------------------- */

static int remote_start(void *impl)
{
	struct remote *r = impl;

	pthread_mutex_lock(&r->lock);
	r->started = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int remote_send_telemetry(void *impl, uint64_t seq, const char *payload, size_t len)
{
	struct remote *r = impl;
	struct tele *t;
	uint64_t dropped = 0;
	int rc = 0;

	if (len == 0 || len > r->max_message)
		return GD_EINVAL;
	t = malloc(sizeof(*t) + len);
	if (t == NULL)
		return GD_EIO;
	t->next = NULL;
	t->seq = seq;
	t->len = len;
	memcpy(t->data, payload, len);
	pthread_mutex_lock(&r->lock);
	if (seq <= r->tele_last_seq) {
		pthread_mutex_unlock(&r->lock);
		free(t);
		return GD_EINVAL; /* out of order, as the spool refuses it */
	}
	r->tele_last_seq = seq;
	/* Bounded: while no child takes them, the oldest go, counted. */
	while (r->tele_head != NULL && r->tele_bytes + len > r->tele_max) {
		struct tele *old = r->tele_head;

		tele_trim(r, old->seq);
		r->tele_dropped++;
		dropped++;
		rc = GD_EFULL;
	}
	if (r->tele_tail != NULL)
		r->tele_tail->next = t;
	else
		r->tele_head = t;
	r->tele_tail = t;
	if (r->tele_next == NULL)
		r->tele_next = t;
	r->tele_bytes += len;
	r->tele_count++;
	if (dropped > 0 && gd_mono_ms() - r->drop_logged_ms > 10000) {
		r->drop_logged_ms = gd_mono_ms();
		log_warnx(SUBSYS,
			  "the uplink child has not taken telemetry for a while: %llu messages "
			  "dropped so far (queue_max_bytes %zu)",
			  (unsigned long long)r->tele_dropped, r->tele_max);
	}
	pthread_cond_broadcast(&r->cond);
	/*
	 * The durability point stays where it is in one process: once this returns, the message is
	 * in the child's spool, so a kill -9 of guardian loses no more than before. While there is
	 * no child, it waits here, in memory, for the next one.
	 */
	if (r->ready) {
		uint64_t gen = r->gen;
		int64_t until = gd_mono_ms() + TAKEN_WAIT_MS;
		struct timespec ts = mono_deadline(until);

		while (r->ready && r->gen == gen && r->taken < seq && !r->quit &&
		       gd_mono_ms() < until)
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	return rc == GD_EFULL ? 0 : rc; /* the new one was taken; the drop is counted */
}

static uint64_t remote_last_seq(void *impl)
{
	struct remote *r = impl;
	uint64_t seq;

	pthread_mutex_lock(&r->lock);
	seq = r->first_last_seq;
	pthread_mutex_unlock(&r->lock);
	return seq;
}

static void remote_set_health(void *impl, const char *json, size_t len)
{
	struct remote *r = impl;
	char *copy;

	if (len > UW_HEALTH_MAX) {
		log_warnx(SUBSYS, "a health document of %zu bytes is too long for the uplink child",
			  len);
		return;
	}
	copy = malloc(len + 1);
	if (copy == NULL)
		return;
	memcpy(copy, json, len);
	copy[len] = '\0';
	pthread_mutex_lock(&r->lock);
	free(r->health);
	r->health = copy;
	r->health_len = len;
	r->health_dirty = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void remote_get_stats(void *impl, struct uplink_stats *out)
{
	struct remote *r = impl;

	pthread_mutex_lock(&r->lock);
	*out = r->stats.uplink;
	out->dropped += r->tele_dropped;
	/* What waits here for the child counts as queued. */
	for (const struct tele *t = r->tele_next; t != NULL; t = t->next) {
		out->queued_msgs++;
		out->queued_bytes += t->len;
	}
	if (!r->ready) {
		out->connected = false;
		snprintf(out->last_error, sizeof(out->last_error), "%s",
			 "the uplink child is starting again");
	}
	pthread_mutex_unlock(&r->lock);
}

static void remote_hold(void *impl, bool held)
{
	struct remote *r = impl;

	pthread_mutex_lock(&r->lock);
	r->held = held;
	r->hold_dirty = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void remote_reconnect(void *impl)
{
	struct remote *r = impl;

	pthread_mutex_lock(&r->lock);
	r->reconnect = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void remote_set_command_handler(void *impl, uplink_command_fn *fn, void *ctx)
{
	struct remote *r = impl;

	pthread_mutex_lock(&r->lock);
	r->cmd_fn = fn;
	r->cmd_ctx = ctx;
	pthread_mutex_unlock(&r->lock);
}

static int remote_subscribe_extra(void *impl, const char *subtopic, uplink_command_fn *fn,
				  void *ctx)
{
	struct remote *r = impl;
	char field[UW_SUBTOPIC_MAX];
	int rc = 0;

	if (subtopic[0] == '\0' || strpbrk(subtopic, "+#") != NULL ||
	    uw_subtopic_put(field, subtopic) != 0)
		return GD_EINVAL;
	pthread_mutex_lock(&r->lock);
	if (r->extra_fn != NULL) {
		rc = GD_EINVAL;
	} else {
		memcpy(r->extra, field, sizeof(field));
		r->extra_fn = fn;
		r->extra_ctx = ctx;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int remote_publish_event_acked(void *impl, const char *subtopic, const char *payload,
				      size_t len, uplink_ack_fn *fn, void *ctx, uint64_t id)
{
	struct remote *r = impl;
	struct outev *e;
	struct pending_ack *a = NULL, *dropped = NULL;
	int rc = 0;

	if (len > r->max_message)
		return GD_EINVAL;
	e = malloc(sizeof(*e) + len);
	if (fn != NULL)
		a = calloc(1, sizeof(*a));
	if (e == NULL || (fn != NULL && a == NULL) || uw_subtopic_put(e->subtopic, subtopic) != 0) {
		free(e);
		free(a);
		return e == NULL || (fn != NULL && a == NULL) ? GD_ENOMEM : GD_EINVAL;
	}
	e->next = NULL;
	e->len = len;
	memcpy(e->data, payload, len);
	pthread_mutex_lock(&r->lock);
	e->token = 0;
	if (a != NULL) {
		e->token = a->token = ++r->next_token;
		a->fn = fn;
		a->ctx = ctx;
		a->id = id;
		a->next = r->acks;
		r->acks = a;
	}
	if (r->nev == 4096) {
		struct outev *old = r->ev_head;

		r->ev_head = old->next;
		r->nev--;
		r->ev_dropped++;
		if (old->token != 0)
			dropped = ack_take(r, old->token);
		free(old);
		rc = GD_EFULL;
	}
	if (r->ev_tail != NULL)
		r->ev_tail->next = e;
	else
		r->ev_head = e;
	r->ev_tail = e;
	r->nev++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (dropped != NULL) {
		dropped->fn(dropped->ctx, dropped->id, false);
		free(dropped);
	}
	return rc;
}

static int remote_use_credentials(void *impl, const char *key_pem, const char *cert_pem)
{
	struct remote *r = impl;
	char *k = strdup(key_pem), *c = strdup(cert_pem);

	if (k == NULL || c == NULL || strlen(k) + strlen(c) > UW_CRED_MAX || k[0] == '\0' ||
	    c[0] == '\0') {
		if (k != NULL)
			explicit_bzero(k, strlen(k));
		free(k);
		free(c);
		return k == NULL || c == NULL ? GD_ENOMEM : GD_EINVAL;
	}
	pthread_mutex_lock(&r->lock);
	if (r->cred_key != NULL)
		explicit_bzero(r->cred_key, strlen(r->cred_key));
	free(r->cred_key);
	free(r->cred_cert);
	r->cred_key = k;
	r->cred_cert = c;
	r->cred_dirty = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Everything kept goes to the child, then STOP: it drains, says offline, disconnects. */
static void remote_stop(void *impl, int timeout_ms)
{
	struct remote *r = impl;
	int64_t until = gd_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0) + STOP_EXTRA_MS;
	struct timespec ts = mono_deadline(until);

	pthread_mutex_lock(&r->lock);
	if (!r->stopping) {
		r->stopping = true;
		r->stop_ms = timeout_ms;
		pthread_cond_broadcast(&r->cond);
	}
	while (!r->stopped && gd_mono_ms() < until)
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	if (!r->stopped)
		log_warnx(SUBSYS, "the uplink child did not stop in time: killed");
	pthread_mutex_unlock(&r->lock);
}

static void remote_free(void *impl)
{
	struct remote *r = impl;

	pthread_mutex_lock(&r->lock);
	r->quit = true;
	pthread_cond_broadcast(&r->cond);
	/* A child that stopped exits by itself, its spool closed: not cut short. */
	if (r->stopped && r->sock >= 0) {
		int64_t until = gd_mono_ms() + STOP_EXTRA_MS;
		struct timespec ts = mono_deadline(until);

		while (!r->child_gone && gd_mono_ms() < until)
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	if (r->sock >= 0 && !r->child_gone)
		shutdown(r->sock, SHUT_RDWR);
	pthread_mutex_unlock(&r->lock);
	if (r->writer_started)
		pthread_join(r->writer, NULL);
	if (r->supervisor_started)
		pthread_join(r->supervisor, NULL);
	tele_trim(r, UINT64_MAX);
	while (r->ev_head != NULL) {
		struct outev *e = r->ev_head;

		r->ev_head = e->next;
		free(e);
	}
	while (r->acks != NULL) {
		struct pending_ack *a = r->acks;

		r->acks = a->next;
		free(a);
	}
	if (r->cred_key != NULL)
		explicit_bzero(r->cred_key, strlen(r->cred_key));
	free(r->cred_key);
	free(r->cred_cert);
	free(r->health);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static const struct uplink_ops remote_ops = {
	.start = remote_start,
	.send_telemetry = remote_send_telemetry,
	.last_seq = remote_last_seq,
	.set_health = remote_set_health,
	.get_stats = remote_get_stats,
	.hold = remote_hold,
	.reconnect = remote_reconnect,
	.set_command_handler = remote_set_command_handler,
	.subscribe_extra = remote_subscribe_extra,
	.publish_event_acked = remote_publish_event_acked,
	.use_credentials = remote_use_credentials,
	.stop = remote_stop,
	.free = remote_free,
};

struct uplink *uplink_remote_new(const struct gd_config *cfg)
{
	struct remote *r = calloc(1, sizeof(*r));
	pthread_condattr_t attr;
	struct uplink *u;
	int64_t until = gd_mono_ms() + FIRST_WORD_MS;
	struct timespec ts = mono_deadline(until);

	if (r == NULL)
		return NULL;
	r->cfg = cfg;
	r->max_message = (size_t)cfg->uplink.max_message_bytes;
	r->tele_max = (size_t)cfg->uplink.queue_max_bytes;
	if (r->tele_max < 4 * r->max_message)
		r->tele_max = 4 * r->max_message;
	r->sock = -1;
	r->pidfd = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &attr);
	pthread_condattr_destroy(&attr);
	snprintf(r->stats.uplink.last_error, sizeof(r->stats.uplink.last_error), "%s",
		 "not connected yet");
	u = uplink_new_with(&remote_ops, r);
	if (u == NULL) {
		remote_free(r);
		return NULL;
	}
	if (pthread_create(&r->supervisor, NULL, supervisor_main, r) != 0) {
		log_warn(SUBSYS, "cannot start the thread that watches the uplink child");
		goto fail;
	}
	r->supervisor_started = true;
	if (pthread_create(&r->writer, NULL, writer_main, r) != 0) {
		log_warn(SUBSYS, "cannot start the thread that writes to the uplink child");
		goto fail;
	}
	r->writer_started = true;
	pthread_mutex_lock(&r->lock);
	while (!r->have_hello && gd_mono_ms() < until)
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	pthread_mutex_unlock(&r->lock);
	if (!r->have_hello) {
		log_warnx(SUBSYS, "the uplink child did not start in %d ms (its log says why)",
			  FIRST_WORD_MS);
		goto fail;
	}
	log_info(SUBSYS, "uplink in a child process (pid %d): its spool holds up to seq %llu",
		 uplink_remote_pid(u), (unsigned long long)r->first_last_seq);
	return u;
fail:
	uplink_free(u);
	return NULL;
}

int uplink_remote_pid(struct uplink *u)
{
	struct remote *r = u != NULL ? uplink_impl(u, &remote_ops) : NULL;
	int pid;

	if (r == NULL)
		return 0;
	pthread_mutex_lock(&r->lock);
	pid = r->ready ? (int)r->pid : 0;
	pthread_mutex_unlock(&r->lock);
	return pid;
}
