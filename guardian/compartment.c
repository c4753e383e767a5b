/* compartment.c: the gateway's side of an adapter that runs in a child process: opening its link,
 * starting, feeding, answering and reaping the child, and the ops table that sends writes and
 * reads to it (compartment.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/sandbox.h"
#include "compartment.h"
#include "gateway_private.h"

#define SUBSYS "compartment"

#define ANSWER_MS      5000  /* a write or read the child does not answer in time: GD_ETIMEDOUT */
#define STOP_MS	       1000  /* a child that does not exit after STOP in time is killed */
#define TICK_MS	       200   /* how often the runner looks at the gateway's stop and restart */
#define LIVED_MS       10000 /* a child that ran this long resets the respawn backoff */
#define RESPAWN_MIN_MS 250
#define RESPAWN_MAX_MS 30000

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

extern char **environ;

struct compartment {
	struct adapter_ops ops;		/* the table a->ops points to while attached */
	const struct adapter_ops *real; /* the transport's own */
	struct runner *r;
	char index[24], sha256[65]; /* the child's arguments */
	char *config;		    /* the config's path, as guardian was given it */
	/* Under 'lock': the channel, the request waiting, what the child said of itself. */
	pthread_mutex_t lock;
	pthread_cond_t answered;
	int fd;	      /* the parent's end of the channel; -1 without a child */
	uint64_t gen; /* counts children: a request of an older one is over */
	uint32_t send_seq;
	bool waiting, done;
	uint32_t wait_seq;
	int32_t answer_rc;
	struct value answer;
	struct adapter_stats base, last; /* the children before this one; this one's last */
	char json[CM_JSON_MAX + 1];
	/* The runner's own. */
	pid_t pid;
	int pidfd;
	uint32_t recv_seq;
	bool killed; /* by us, for a bad message */
	uint64_t deaths;
	uint8_t *msg;
	struct sample *in;
	char *text;
	/* One poll's samples, gathered from its messages: emitted together as a thread would,
	 * at most r->allowed_cap at a time. A string's text is in acc_text at acc_off[i]. */
	struct sample *acc;
	size_t *acc_off;
	size_t nacc;
	char *acc_text;
	size_t acc_text_len, acc_text_cap;
};

static bool exe_ready;
static int config_fd = -1; /* the config's bytes (sealed memfd), for CM_FD_CONFIG */

#define CONFIG_SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* The config's bytes in a memfd nobody can change: 0, or GD_EIO (logged). */
static int config_seal(const struct gd_config *cfg)
{
	size_t len = cfg->text != NULL ? strlen(cfg->text) : 0, done = 0;
	int fd;

	if (cfg->text == NULL) {
		log_warnx(SUBSYS, "no config bytes to hand the children");
		return GD_EIO;
	}
	fd = memfd_create("guardian-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		log_warn(SUBSYS, "cannot make a memfd for the children's config");
		return GD_EIO;
	}
	while (done < len) {
		ssize_t n = write(fd, cfg->text + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warn(SUBSYS, "cannot write the children's config");
			close(fd);
			return GD_EIO;
		}
		done += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, CONFIG_SEALS) != 0) {
		log_warn(SUBSYS, "cannot seal the children's config");
		close(fd);
		return GD_EIO;
	}
	if (config_fd >= 0)
		close(config_fd);
	config_fd = fd;
	return 0;
}

int compartment_config_load(const char *file, const char *state_dir, struct conf *c,
			    struct gd_config **out)
{
	struct stat st;
	char *text = NULL;
	size_t done = 0;
	int rc = GD_ECONFIG;

	*out = NULL;
	/* Sealed: what the parent wrote is what is read, and stays so. */
	if (fstat(CM_FD_CONFIG, &st) != 0 || !S_ISREG(st.st_mode) ||
	    fcntl(CM_FD_CONFIG, F_GET_SEALS) != CONFIG_SEALS || st.st_size <= 0 ||
	    st.st_size > 64 * 1024 * 1024) {
		conf_error(c, "", "no sealed config on descriptor %d", CM_FD_CONFIG);
		goto out;
	}
	text = malloc((size_t)st.st_size);
	if (text == NULL) {
		conf_error(c, "", "out of memory");
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n =
			pread(CM_FD_CONFIG, text + done, (size_t)st.st_size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			conf_error(c, "", "cannot read the config on descriptor %d: %s",
				   CM_FD_CONFIG, n < 0 ? strerror(errno) : "short");
			goto out;
		}
		done += (size_t)n;
	}
	rc = gd_config_load_child(file, text, done, state_dir, c, out);
out:
	free(text);
	close(CM_FD_CONFIG);
	return rc;
}

int compartment_prepare(const struct gd_config *cfg)
{
	int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	struct rlimit rl;

	if (fd >= 0 && config_seal(cfg) != 0) {
		close(fd);
		return GD_EIO;
	}
	if (fd < 0) {
		log_warn(SUBSYS, "cannot open /proc/self/exe for the adapters' children");
		return GD_EIO;
	}
	/* The filter compares execveat's descriptor with one number: it lives there. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur <= GD_SANDBOX_EXEC_FD &&
	    rl.rlim_max > GD_SANDBOX_EXEC_FD) {
		rl.rlim_cur = GD_SANDBOX_EXEC_FD + 1;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (fd != GD_SANDBOX_EXEC_FD && dup3(fd, GD_SANDBOX_EXEC_FD, O_CLOEXEC) < 0) {
		log_warn(SUBSYS, "cannot keep the executable at descriptor %d", GD_SANDBOX_EXEC_FD);
		close(fd);
		return GD_EIO;
	}
	if (fd != GD_SANDBOX_EXEC_FD)
		close(fd);
	exe_ready = true;
	return 0;
}

static struct compartment *of(const struct adapter *a)
{
	return (struct compartment *)(uintptr_t)((const char *)a->ops -
						 offsetof(struct compartment, ops));
}

static bool stopping(struct gateway *gw)
{
	bool s;

	pthread_mutex_lock(&gw->lock);
	s = gw->stopping;
	pthread_mutex_unlock(&gw->lock);
	return s;
}

/* ---- what the child says of itself --------------------------------------------------------- */

static void stats_sum(struct adapter_stats *out, const struct adapter_stats *x,
		      const struct adapter_stats *y)
{
	out->polls = x->polls + y->polls;
	out->polls_ok = x->polls_ok + y->polls_ok;
	out->timeouts = x->timeouts + y->timeouts;
	out->exceptions = x->exceptions + y->exceptions;
	out->bad_frames = x->bad_frames + y->bad_frames;
	out->io_errors = x->io_errors + y->io_errors;
	out->reconnects = x->reconnects + y->reconnects;
	out->samples = x->samples + y->samples;
	out->last_ok_ms = x->last_ok_ms > y->last_ok_ms ? x->last_ok_ms : y->last_ok_ms;
	out->link_up = y->link_up;
}

/* The adapter's counters: the parent's own (reconnects, from link_take), the children's before,
 * this child's. 'cp->lock' held. */
static void stats_publish(struct adapter *a, struct compartment *cp)
{
	struct adapter_stats sum;

	stats_sum(&sum, &cp->base, &cp->last);
#define S(f) __atomic_store_n(&a->stats.f, sum.f, __ATOMIC_RELAXED)
	S(polls);
	S(polls_ok);
	S(timeouts);
	S(exceptions);
	S(bad_frames);
	S(io_errors);
	S(samples);
	S(last_ok_ms);
	S(link_up);
#undef S
}

static void on_stats(struct adapter *a, struct compartment *cp, const struct cm_msg *m)
{
	pthread_mutex_lock(&cp->lock);
	cp->last = m->stats;
	cp->last.reconnects = 0; /* the parent counts the link's reopening */
	snprintf(cp->json, sizeof(cp->json), "%s", m->json);
	stats_publish(a, cp);
	pthread_mutex_unlock(&cp->lock);
	if (m->fault[0] != '\0')
		adapter_set_fault(a, "%s", m->fault);
	else
		adapter_clear_fault(a);
}

/* ---- the table in a->ops ------------------------------------------------------------------- */

/* Sends one message on the channel; 'cp->lock' held. 0 or GD_ENOTCONN. */
static int send_locked(struct compartment *cp, const uint8_t *buf, size_t len)
{
	ssize_t n;

	if (cp->fd < 0 || len == 0)
		return GD_ENOTCONN;
	do
		n = send(cp->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : GD_ENOTCONN;
}

/* A write (v) or a read (out) of point 'p', done by the child; the policy was checked. */
static int request(struct adapter *a, const struct point *p, const struct value *v,
		   struct value *out)
{
	struct compartment *cp = of(a);
	uint8_t buf[CM_HDR_LEN + 32 + CM_TEXT_MAX];
	struct timespec until;
	int64_t deadline;
	uint32_t index;
	uint64_t gen;
	size_t len;
	int rc;

	if (p < a->points || p >= a->points + a->npoints)
		return GD_EINVAL;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ANSWER_MS / 1000;
	deadline = gd_mono_ms() + ANSWER_MS - ANSWER_MS / 10;
	pthread_mutex_lock(&cp->lock);
	/* One request at a time (there is one command thread; this keeps it true). */
	while (cp->waiting && cp->fd >= 0)
		pthread_cond_wait(&cp->answered, &cp->lock);
	/* The child does not start it after the deadline: a write given up on never happens late.
	 */
	index = (uint32_t)(p - a->points);
	len = v != NULL ? cm_encode_write(buf, sizeof(buf), cp->send_seq, index, deadline, v)
			: cm_encode_read(buf, sizeof(buf), cp->send_seq, index, deadline);
	if (len == 0) {
		rc = GD_EINVAL; /* a string longer than a message takes */
		goto out;
	}
	rc = send_locked(cp, buf, len);
	if (rc != 0)
		goto out;
	cp->wait_seq = cp->send_seq++;
	cp->waiting = true;
	cp->done = false;
	gen = cp->gen;
	while (!cp->done && cp->gen == gen) {
		if (pthread_cond_timedwait(&cp->answered, &cp->lock, &until) == ETIMEDOUT)
			break;
	}
	if (cp->done) {
		rc = cp->answer_rc;
		if (out != NULL)
			*out = cp->answer;
	} else {
		rc = cp->gen == gen ? GD_ETIMEDOUT : GD_ENOTCONN;
	}
	cp->waiting = false;
	pthread_cond_broadcast(&cp->answered);
out:
	pthread_mutex_unlock(&cp->lock);
	return rc;
}

static int remote_write(struct adapter *a, const struct point *p, const struct value *v)
{
	return request(a, p, v, NULL);
}

static int remote_read(struct adapter *a, const struct point *p, struct value *out)
{
	return request(a, p, NULL, out);
}

static size_t remote_stats_json(const struct adapter *a, char *buf, size_t cap)
{
	struct compartment *cp = of(a);
	int n;

	pthread_mutex_lock(&cp->lock);
	n = snprintf(buf, cap, "%s,\"child_deaths\":%llu", cp->json, ADAPTER_LD(cp->deaths));
	pthread_mutex_unlock(&cp->lock);
	return n > 0 ? (size_t)n : 0;
}

int compartment_attach(struct runner *r)
{
	struct adapter *a = r->a;
	struct compartment *cp;
	pthread_condattr_t attr;

	if (!exe_ready || a->ops->link_take == NULL || a->ops->adopt == NULL)
		return 0; /* a thread, as without compartments */
	cp = calloc(1, sizeof(*cp));
	if (cp == NULL)
		return GD_ENOMEM;
	cp->msg = malloc(CM_MSG_MAX);
	cp->in = calloc(CM_SAMPLES_MAX, sizeof(*cp->in));
	cp->text = malloc(CM_MSG_MAX);
	cp->acc = calloc(r->allowed_cap, sizeof(*cp->acc));
	cp->acc_off = calloc(r->allowed_cap, sizeof(*cp->acc_off));
	if (cp->msg == NULL || cp->in == NULL || cp->text == NULL || cp->acc == NULL ||
	    cp->acc_off == NULL) {
		free(cp->msg);
		free(cp->in);
		free(cp->text);
		free(cp->acc);
		free(cp->acc_off);
		free(cp);
		return GD_ENOMEM;
	}
	cp->r = r;
	cp->real = a->ops;
	cp->ops = *a->ops;
	cp->ops.write = cp->real->write != NULL ? remote_write : NULL;
	cp->ops.read = cp->real->read != NULL ? remote_read : NULL;
	cp->ops.stats_json = remote_stats_json;
	cp->fd = cp->pidfd = -1;
	cp->pid = -1;
	for (size_t i = 0; i < r->gw->cfg->nadapters; i++)
		if (r->gw->cfg->adapters[i] == a)
			snprintf(cp->index, sizeof(cp->index), "%zu", i);
	gd_hex_encode(r->gw->cfg->measured_config.sha256, 32, cp->sha256);
	cp->config = r->gw->cfg->file; /* names it; the bytes come on CM_FD_CONFIG */
	pthread_mutex_init(&cp->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&cp->answered, &attr);
	pthread_condattr_destroy(&attr);
	r->cp = cp;
	a->ops = &cp->ops;
	return 0;
}

void compartment_detach(struct runner *r)
{
	struct compartment *cp = r->cp;

	if (cp == NULL)
		return;
	r->a->ops = cp->real;
	pthread_cond_destroy(&cp->answered);
	pthread_mutex_destroy(&cp->lock);
	free(cp->msg);
	free(cp->in);
	free(cp->text);
	free(cp->acc);
	free(cp->acc_off);
	free(cp->acc_text);
	free(cp);
	r->cp = NULL;
}

/* ---- the child's start and end ------------------------------------------------------------- */

/* The child's end before execveat: a raw exit, like every call there. */
static _Noreturn void child_fail(void)
{
	syscall(SYS_exit_group, 127);
	__builtin_unreachable();
}

/*
 * In the child between clone and execveat: raw system calls only, no C library wrapper. Nothing
 * there may take a lock another thread of the parent held at the clone (the C library's
 * setresuid would wait on the parent's threads), and a sanitizer's interceptors, which believe
 * they still run in the parent's thread, must not see the calls either.
 */
static _Noreturn void child_exec(int chan, const struct cm_spawn *sp, pid_t parent)
{
	const int from[] = { chan, sp->link, config_fd, sp->spool_dir, sp->creds_dir };
	const int to[] = { CM_FD_CHANNEL, CM_FD_LINK, CM_FD_CONFIG, CM_FD_SPOOL, CM_FD_CREDS };
	long moved[5];

	if (sp->as_user) {
		struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
		struct __user_cap_data_struct caps[2] = { { 0 } };

		caps[0].permitted = caps[0].effective = (1u << CAP_SETUID) | (1u << CAP_SETGID);
		if (syscall(SYS_capset, &hdr, caps) != 0 || syscall(SYS_setgroups, 0, NULL) != 0 ||
		    syscall(SYS_setresgid, sp->gid, sp->gid, sp->gid) != 0 ||
		    syscall(SYS_setresuid, sp->uid, sp->uid, sp->uid) != 0)
			child_fail();
		if (syscall(SYS_getuid) != (long)sp->uid || syscall(SYS_geteuid) != (long)sp->uid ||
		    syscall(SYS_getgid) != (long)sp->gid || syscall(SYS_getegid) != (long)sp->gid)
			child_fail();
	}
	/* Ends with the thread that started it, and so with guardian, even by -9. After the
	 * change of user, which clears it. */
	if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
	    syscall(SYS_getppid) != (long)parent)
		child_fail();
	/* Above every target first, so that no dup3 closes another's source. */
	for (size_t i = 0; i < 5; i++) {
		moved[i] =
			from[i] >= 0 ? syscall(SYS_fcntl, from[i], F_DUPFD, CM_FD_CREDS + 1) : -1;
		if (from[i] >= 0 && moved[i] < 0)
			child_fail();
	}
	for (size_t i = 0; i < 5; i++) {
		if (moved[i] >= 0 && syscall(SYS_dup3, moved[i], to[i], 0) < 0)
			child_fail();
		if (moved[i] < 0)
			syscall(SYS_close, to[i]);
	}
	/* Nothing else crosses: not the spool, the audit log, the keys' files, a device. */
	syscall(SYS_close_range, CM_FD_CREDS + 1, GD_SANDBOX_EXEC_FD - 1, 0);
	syscall(SYS_close_range, GD_SANDBOX_EXEC_FD + 1, ~0u, 0);
	syscall(SYS_execveat, GD_SANDBOX_EXEC_FD, gd_sandbox_exec_path, sp->argv, environ,
		AT_EMPTY_PATH);
	child_fail();
}

int compartment_spawn(const struct cm_spawn *sp, pid_t *pid_out, int *pidfd_out, int *sock)
{
	pid_t parent = getpid();
	int sv[2], pidfd = -1, saved;
	long pid;

	if (!exe_ready || config_fd < 0) {
		errno = EBADF;
		return GD_EIO;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return GD_EIO;
	/* fork, with a pidfd: the only way this process may signal it (sandbox.h, 'spawn'). */
	pid = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd, 0, 0);
	if (pid == 0)
		child_exec(sv[1], sp, parent);
	saved = errno;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		errno = saved;
		return GD_EIO;
	}
	*pid_out = (pid_t)pid;
	*pidfd_out = pidfd;
	*sock = sv[0];
	return 0;
}

static int spawn(struct compartment *cp, int link)
{
	struct runner *r = cp->r;
	char *const argv[] = { (char *)"guardian",
			       (char *)"adapter-child",
			       cp->config,
			       cp->index,
			       r->a->name,
			       cp->sha256,
			       NULL };
	const struct gd_sandbox_config *sb = &r->gw->cfg->sandbox;
	struct cm_spawn sp = { .argv = argv,
			       .link = link,
			       .spool_dir = -1,
			       .creds_dir = -1,
			       .as_user = sb->adapter_user != NULL,
			       .uid = sb->adapter_uid,
			       .gid = sb->adapter_gid };
	pid_t pid;
	int pidfd, sock;

	if (compartment_spawn(&sp, &pid, &pidfd, &sock) != 0)
		return GD_EIO;
	pthread_mutex_lock(&cp->lock);
	cp->fd = sock;
	cp->send_seq = 0;
	cp->gen++;
	pthread_mutex_unlock(&cp->lock);
	cp->pid = pid;
	cp->pidfd = pidfd;
	cp->recv_seq = 0;
	cp->killed = false;
	return 0;
}

void compartment_child_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction ign = { .sa_handler = SIG_IGN };

	sigemptyset(&ign.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &ign, NULL);
}

int compartment_kill(int pidfd, pid_t pid)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[2] = { { 0 } };
	int rc = pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0)
			    : kill(pid, SIGKILL);

	if (rc == 0 || errno != EPERM)
		return rc;
	/* A child under a user of its own: CAP_KILL, kept permitted for this, raised for the call
	 * on this thread only, and lowered again. */
	if (syscall(SYS_capget, &hdr, caps) != 0 || (caps[0].permitted & (1u << CAP_KILL)) == 0) {
		errno = EPERM;
		return -1;
	}
	caps[0].effective = 1u << CAP_KILL;
	caps[1].effective = 0;
	if (syscall(SYS_capset, &hdr, caps) != 0)
		return -1;
	rc = pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0)
			: kill(pid, SIGKILL);
	caps[0].effective = 0;
	syscall(SYS_capset, &hdr, caps);
	return rc;
}

static void kill_child(struct compartment *cp)
{
	if (compartment_kill(cp->pidfd, cp->pid) != 0)
		log_warn(SUBSYS, "adapter %s: cannot kill its child %d", cp->r->a->name,
			 (int)cp->pid);
}

/* Waits up to 'ms' for the child to exit; killed after that. Its wait status. */
static int reap(struct compartment *cp, int ms)
{
	int64_t until = gd_mono_ms() + ms;
	int status = 0;
	pid_t got;

	for (;;) {
		got = wait4(cp->pid, &status, WNOHANG, NULL);
		if (got == cp->pid || (got < 0 && errno != EINTR))
			break;
		if (gd_mono_ms() >= until) {
			kill_child(cp);
			while (wait4(cp->pid, &status, 0, NULL) < 0 && errno == EINTR)
				;
			break;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000L }, NULL);
	}
	return status;
}

/* The channel is over: a request waiting fails, the child's counters join the base. */
static void channel_close(struct adapter *a, struct compartment *cp)
{
	pthread_mutex_lock(&cp->lock);
	if (cp->fd >= 0)
		close(cp->fd);
	cp->fd = -1;
	cp->gen++;
	stats_sum(&cp->base, &cp->base, &cp->last);
	cp->base.link_up = 0;
	memset(&cp->last, 0, sizeof(cp->last));
	stats_publish(a, cp);
	pthread_cond_broadcast(&cp->answered);
	pthread_mutex_unlock(&cp->lock);
	if (cp->pidfd >= 0)
		close(cp->pidfd);
	cp->pidfd = -1;
}

/* Asks the child to stop, then reaps it. */
static int stop_child(struct compartment *cp)
{
	uint8_t buf[CM_HDR_LEN];
	size_t len;

	pthread_mutex_lock(&cp->lock);
	len = cm_encode_stop(buf, sizeof(buf), cp->send_seq++);
	send_locked(cp, buf, len);
	pthread_mutex_unlock(&cp->lock);
	return reap(cp, STOP_MS);
}

/* ---- serving the child --------------------------------------------------------------------- */

enum served { SERVED_EXITED, SERVED_STOP, SERVED_RESTART, SERVED_BAD };

/* What was gathered goes into the same path as a thread's batch: policy, spool, the rest. */
static void flush(struct runner *r, struct compartment *cp)
{
	for (size_t i = 0; i < cp->nacc; i++)
		if (cp->acc[i].value.kind == VALUE_KIND_STRING)
			cp->acc[i].value.s = cp->acc_text + cp->acc_off[i];
	if (cp->nacc > 0)
		r->sink.emit(&r->sink, r->a, cp->acc, cp->nacc);
	cp->nacc = 0;
	cp->acc_text_len = 0;
}

/* The samples of one message, gathered until the poll's last ('more' unset). false on ENOMEM
 * ('why'). */
static bool gather(struct runner *r, struct compartment *cp, const struct cm_msg *m, char *why,
		   size_t cap)
{
	struct adapter *a = r->a;

	for (size_t i = 0; i < m->nsamples; i++) {
		struct sample *s;

		if (cp->nacc == r->allowed_cap)
			flush(r, cp);
		s = &cp->acc[cp->nacc];
		*s = cp->in[i];
		s->point_id = a->points[s->point_id].id; /* an index the decoder checked */
		if (s->value.kind == VALUE_KIND_STRING) {
			size_t n = strlen(s->value.s) + 1;

			if (cp->acc_text_cap - cp->acc_text_len < n) {
				size_t want = 2 * cp->acc_text_cap + n + 4096;
				char *grown = realloc(cp->acc_text, want);

				if (grown == NULL) {
					snprintf(why, cap, "out of memory for its strings");
					return false;
				}
				cp->acc_text = grown;
				cp->acc_text_cap = want;
			}
			memcpy(cp->acc_text + cp->acc_text_len, s->value.s, n);
			cp->acc_off[cp->nacc] = cp->acc_text_len;
			cp->acc_text_len += n;
		}
		cp->nacc++;
	}
	if (!m->more)
		flush(r, cp);
	return true;
}

/* One message from the child. false: it broke the protocol ('why'). */
static bool on_message(struct runner *r, struct compartment *cp, size_t len, char *why, size_t cap)
{
	struct adapter *a = r->a;
	struct cm_msg m;

	if (cm_decode(cp->msg, len, cp->recv_seq, true, a->npoints, &m, cp->in, CM_SAMPLES_MAX,
		      cp->text, CM_MSG_MAX, why, cap) != 0)
		return false;
	cp->recv_seq++;
	switch (m.type) {
	case CM_BATCH:
		return gather(r, cp, &m, why, cap);
	case CM_STATS:
		on_stats(a, cp, &m);
		return true;
	case CM_ANSWER:
		pthread_mutex_lock(&cp->lock);
		if (!cp->waiting || m.answers != cp->wait_seq) {
			bool late = m.answers < cp->send_seq;

			pthread_mutex_unlock(&cp->lock);
			if (late)
				return true; /* to a request given up on */
			snprintf(why, cap, "an answer to request %u, never sent", m.answers);
			return false;
		}
		if (m.value.kind == VALUE_KIND_STRING) {
			pthread_mutex_unlock(&cp->lock);
			snprintf(why, cap, "a string as the answer to a read");
			return false;
		}
		cp->done = true;
		cp->answer_rc = m.rc > 0 ? GD_EIO : m.rc;
		cp->answer = m.value;
		pthread_cond_broadcast(&cp->answered);
		pthread_mutex_unlock(&cp->lock);
		return true;
	default:
		snprintf(why, cap, "a message of type %d from a child", (int)m.type);
		return false;
	}
}

static enum served serve(struct runner *r, struct compartment *cp)
{
	struct gateway *gw = r->gw;
	char why[256];

	for (;;) {
		struct pollfd pfd = { .fd = cp->fd, .events = POLLIN };
		ssize_t n;
		int rc;

		if (stopping(gw))
			return SERVED_STOP;
		if (__atomic_exchange_n(&r->restart, false, __ATOMIC_RELAXED))
			return SERVED_RESTART;
		rc = poll(&pfd, 1, TICK_MS);
		if (rc < 0 && errno != EINTR)
			return SERVED_EXITED;
		if (rc <= 0)
			continue;
		do
			n = recv(cp->fd, cp->msg, CM_MSG_MAX, MSG_TRUNC);
		while (n < 0 && errno == EINTR);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return SERVED_EXITED;
		if (n < 0)
			continue;
		if (n > CM_MSG_MAX) {
			snprintf(why, sizeof(why), "a message of %zd bytes (at most %d)", n,
				 CM_MSG_MAX);
		} else if (on_message(r, cp, (size_t)n, why, sizeof(why))) {
			continue;
		}
		log_warnx(SUBSYS, "adapter %s: its child (pid %d) broke the protocol: %s; killed",
			  r->a->name, (int)cp->pid, why);
		return SERVED_BAD;
	}
}

/* Sleeps until 'at' (monotonic ms) or the gateway stops. */
static void sleep_until(struct gateway *gw, int64_t at)
{
	struct timespec ts = { .tv_sec = at / 1000, .tv_nsec = (at % 1000) * 1000000 };

	pthread_mutex_lock(&gw->lock);
	if (!gw->stopping)
		pthread_cond_timedwait(&gw->wake, &gw->lock, &ts);
	pthread_mutex_unlock(&gw->lock);
}

/* What became of the child, in the log. Returns whether it ended badly (counted). */
static bool judge(struct adapter *a, struct compartment *cp, enum served how, int status)
{
	if (cp->killed)
		return true;
	if (WIFSIGNALED(status)) {
		log_warnx(SUBSYS, "adapter %s: child exited with signal %d", a->name,
			  WTERMSIG(status));
		return true;
	}
	if (!WIFEXITED(status))
		return true;
	switch (WEXITSTATUS(status)) {
	case 0:
		return how == SERVED_EXITED;
	case CM_EXIT_LINK:
		log_info(SUBSYS, "adapter %s: its child lost the link; reopening it", a->name);
		return false;
	default:
		log_warnx(SUBSYS, "adapter %s: child exited with status %d", a->name,
			  WEXITSTATUS(status));
		return true;
	}
}

void compartment_run(struct runner *r)
{
	struct compartment *cp = r->cp;
	struct gateway *gw = r->gw;
	struct adapter *a = r->a;
	int64_t retry_at = 0;
	int failures = 0;

	while (!stopping(gw)) {
		int64_t now = gd_mono_ms(), started;
		enum served how;
		int link, status;

		if (now < retry_at) {
			sleep_until(gw, retry_at);
			continue;
		}
		__atomic_store_n(&r->restart, false, __ATOMIC_RELAXED);
		/* The transport's own open, backoff, fault and log; the parent keeps no device. */
		link = cp->real->link_take(a, now);
		if (link < 0) {
			retry_at = a->next_due_ms > now ? a->next_due_ms : now + TICK_MS;
			continue;
		}
		if (spawn(cp, link) != 0) {
			log_warn(SUBSYS, "adapter %s: cannot start its child", a->name);
			close(link);
			failures++;
			retry_at = now + gd_backoff_ms(RESPAWN_MIN_MS, RESPAWN_MAX_MS, failures);
			continue;
		}
		close(link);
		log_info(SUBSYS, "adapter %s: child %d started", a->name, (int)cp->pid);
		started = gd_mono_ms();
		how = serve(r, cp);
		flush(r,
		      cp); /* a poll's samples that came before the end are readings all the same */
		if (how == SERVED_BAD) {
			cp->killed = true;
			kill_child(cp);
		}
		status = how == SERVED_STOP || how == SERVED_RESTART ? stop_child(cp)
								     : reap(cp, STOP_MS);
		channel_close(a, cp);
		if (judge(a, cp, how, status)) {
			__atomic_add_fetch(&cp->deaths, 1, __ATOMIC_RELAXED);
			failures = gd_mono_ms() - started >= LIVED_MS ? 1 : failures + 1;
			retry_at = gd_mono_ms() +
				   gd_backoff_ms(RESPAWN_MIN_MS, RESPAWN_MAX_MS, failures);
		} else {
			failures = 0;
			retry_at = 0;
		}
		if (how == SERVED_RESTART)
			log_info(SUBSYS, "adapter %s: restarting its link", a->name);
	}
}
