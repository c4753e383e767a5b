/* uplink_child.c: `guardian uplink-child`: the MQTT uplink, its TLS and its spool in a process of
 * their own, confined, carrying bytes between the broker and guardian (uplink_remote.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/landlock.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "../base/sandbox.h"
#include "compartment.h"
#include "uplink_remote.h"
#include "uplink_wire.h"

#define SUBSYS "uplink-child"

#define CHANNEL_FD     3
#define STATS_EVERY_MS 200

struct child {
	struct uw_chan chan;
	pthread_mutex_t send_lock; /* Paho's threads send too */
	struct uplink *uplink;
	bool spooled;
	uint64_t received; /* the newest telemetry seq taken */
	char op_key[UW_PATH_MAX], op_crt[UW_PATH_MAX];
};

static int send_msg(struct child *c, uint16_t type, const struct iovec *iov, int n)
{
	int rc;

	pthread_mutex_lock(&c->send_lock);
	rc = uw_send(&c->chan, type, iov, n);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

/* Commands and the extra topic's messages: bytes for guardian, which decides. */
static void forward(struct child *c, uint32_t which, const char *payload, size_t len)
{
	if (len > UW_EXTRA_MAX) {
		log_warnx(SUBSYS, "a message of %zu bytes is too long to pass on: dropped", len);
		return;
	}
	send_msg(c, UW_COMMAND,
		 (struct iovec[]){ { &which, 4 }, { (void *)(uintptr_t)payload, len } }, 2);
}

static void on_command(void *ctx, const char *payload, size_t len)
{
	forward(ctx, UW_TOPIC_COMMANDS, payload, len);
}

static void on_extra(void *ctx, const char *payload, size_t len)
{
	forward(ctx, UW_TOPIC_EXTRA, payload, len);
}

static void on_ack(void *ctx, uint64_t token, bool acked)
{
	uint32_t a = acked;

	send_msg(ctx, UW_ACK, (struct iovec[]){ { &token, 8 }, { &a, 4 } }, 2);
}

static void send_stats(struct child *c)
{
	struct uw_stats st;

	memset(&st, 0, sizeof(st));
	uplink_get_stats(c->uplink, &st.uplink);
	st.durable_seq = c->spooled ? uplink_last_seq(c->uplink) : c->received;
	send_msg(c, UW_STATS, (struct iovec[]){ { &st, sizeof(st) } }, 1);
}

/* ---- confinement -------------------------------------------------------------------------- */

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

#define FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)

/* Adds 'path' (skipped when it does not exist) with 'access' cut to what is handled. */
static int landlock_allow(int ruleset, const char *path, uint64_t access, uint64_t handled,
			  char *why, size_t cap)
{
	struct landlock_path_beneath_attr pb = { .allowed_access = access & handled };
	struct stat st;
	int rc = 0;

	pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (pb.parent_fd < 0)
		return errno == ENOENT
			       ? 0
			       : (gd_whyf(why, cap, "%s: %s", path, strerror(errno)), GD_EIO);
	/* A file takes only the rights of files. */
	if (fstat(pb.parent_fd, &st) == 0 && !S_ISDIR(st.st_mode))
		pb.allowed_access &= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
				     LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_TRUNCATE;
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0) {
		gd_whyf(why, cap, "landlock rule for %s: %s", path, strerror(errno));
		rc = GD_EDENIED;
	}
	close(pb.parent_fd);
	return rc;
}

/*
 * What this process may open from now on, by path (Landlock): its spool and its own directory
 * of credentials, its certificates, the C library's and OpenSSL's files, its own /proc entry.
 * Not the state directory (the identity key), not a device. 0, or GD_EDENIED with 'why' (a
 * kernel without Landlock: logged, and the seccomp profile alone confines it).
 */
static int confine_files(const char *state_dir, const struct uplink_config *ucfg,
			 const char *creds_dir, char *why, size_t cap)
{
	static const char *const system_ro[] = {
		"/etc/hosts",
		"/etc/resolv.conf",
		"/etc/nsswitch.conf",
		"/etc/host.conf",
		"/etc/gai.conf",
		"/etc/localtime",
		"/etc/services",
		"/etc/protocols",
		"/etc/ssl",
		"/usr/lib/ssl",
		"/usr/share/zoneinfo",
		"/usr/lib",
		"/proc/self",
		"/sys/devices/system/cpu",
		/* where /etc/resolv.conf points under systemd-resolved (rewritten: by directory) */
		"/run/systemd/resolve",
	};
	uint64_t all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
	uint64_t handled;
	struct landlock_ruleset_attr attr;
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	int ruleset, rc = 0, abi_errno = errno;
	char state_real[PATH_MAX];

	if (abi < 1) {
		/* EOPNOTSUPP: built in but off; ENOSYS: not built; EPERM: a seccomp filter above
		 * guardian (systemd's SystemCallFilter=, a container's) refuses the call. */
		gd_whyf(why, cap, "Landlock is not available to guardian: %s%s",
			strerror(abi_errno),
			abi_errno == EPERM ? " (a system call filter around guardian refuses it: "
					     "see SystemCallFilter= in guardian.service)"
					   : "");
		return GD_EDENIED;
	}
	if (realpath(state_dir, state_real) == NULL)
		snprintf(state_real, sizeof(state_real), "%s", state_dir);
	handled = all;
	if (abi >= 2)
		handled |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
	attr = (struct landlock_ruleset_attr){ .handled_access_fs = handled };
	ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (ruleset < 0) {
		gd_whyf(why, cap, "cannot make a Landlock rule set: %s", strerror(errno));
		return GD_EDENIED;
	}
	for (size_t i = 0; rc == 0 && i < sizeof(system_ro) / sizeof(system_ro[0]); i++) {
		size_t n = strlen(system_ro[i]);

		/* Never a directory that holds the state directory, and so the identity key. */
		if (strncmp(state_real, system_ro[i], n) == 0 &&
		    (state_real[n] == '/' || state_real[n] == '\0')) {
			log_warnx(SUBSYS,
				  "%s is not opened to the uplink: the state directory %s is in it",
				  system_ro[i], state_real);
			continue;
		}
		rc = landlock_allow(ruleset, system_ro[i], FS_READ | LANDLOCK_ACCESS_FS_EXECUTE,
				    handled, why, cap);
	}
	if (rc == 0 && ucfg->spool.enabled && ucfg->spool.dir != NULL)
		rc = landlock_allow(ruleset, ucfg->spool.dir, handled, handled, why, cap);
	if (rc == 0)
		rc = landlock_allow(ruleset, creds_dir, handled, handled, why, cap);
	if (rc == 0 && ucfg->ca_file != NULL)
		rc = landlock_allow(ruleset, ucfg->ca_file, FS_READ, handled, why, cap);
	if (rc == 0 && !ucfg->attested && ucfg->cert_file != NULL)
		rc = landlock_allow(ruleset, ucfg->cert_file, FS_READ, handled, why, cap);
	if (rc == 0 && !ucfg->attested && ucfg->key_file != NULL)
		rc = landlock_allow(ruleset, ucfg->key_file, FS_READ, handled, why, cap);
	if (rc == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		gd_whyf(why, cap, "cannot set no_new_privs: %s", strerror(errno));
		rc = GD_EDENIED;
	}
	if (rc == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) {
		gd_whyf(why, cap, "cannot enter the Landlock rule set: %s", strerror(errno));
		rc = GD_EDENIED;
	}
	close(ruleset);
	return rc;
}

#ifdef GUARDIAN_TEST_PROBE
/*
 * Test builds only (build/guardian-probe): right after confining itself, what a compromised
 * uplink child would try first. One line each, "uplink probe: WHAT: RESULT", worded apart from
 * the adapter children's probes (adapter_child.c) that share the binary.
 */
static void probe_open(const char *what, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd >= 0) {
		fprintf(stderr, "uplink probe: %s %s: succeeded\n", what, path);
		close(fd);
	} else {
		fprintf(stderr, "uplink probe: %s %s: %s\n", what, path, strerror(errno));
	}
}

static void probe(const struct gd_config *cfg)
{
	char key[UW_PATH_MAX];
	const char *device = getenv("GUARDIAN_PROBE_DEVICE");

	snprintf(key, sizeof(key), "%s/identity.key", cfg->state_dir);
	probe_open("open the identity key", key, O_RDONLY);
	probe_open("open the device", device != NULL ? device : "/dev/ttyS0", O_RDWR | O_NOCTTY);
	execve("/bin/true", (char *[]){ (char *)"true", NULL }, (char *[]){ NULL });
	fprintf(stderr, "uplink probe: execve /bin/true: %s\n", strerror(errno));
	fflush(stderr);
}

/* With GUARDIAN_PROBE_GARBAGE set: one frame of an unknown type, as a compromised child might
 * send; guardian is to kill it and start another. */
static void probe_garbage(struct child *c)
{
	uint8_t frame[UW_HEADER_LEN] = { 0 };
	uint16_t type = 999;
	uint64_t seq = c->chan.sent + 1;

	if (getenv("GUARDIAN_PROBE_GARBAGE") == NULL)
		return;
	memcpy(frame, &type, 2);
	memcpy(frame + 8, &seq, 8);
	fprintf(stderr, "uplink probe: sending a frame of type 999\n");
	if (send(CHANNEL_FD, frame, sizeof(frame), 0) < 0)
		fprintf(stderr, "uplink probe: send: %s\n", strerror(errno));
}
#endif

/* Whether 'fd' is a directory guardian handed over (O_PATH, as uplink_remote_prepare opens
 * them), not a file the libraries opened at a number left free. */
static bool given_dir(int fd)
{
	struct stat st;
	int flags = fcntl(fd, F_GETFL);

	return flags >= 0 && (flags & O_PATH) != 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- the loop ----------------------------------------------------------------------------- */

/* Writes the operational key and certificate where this uplink's TLS reads them. */
static void keep_credentials(struct child *c, const struct uw_msg *m)
{
	uint32_t klen;

	memcpy(&klen, m->data, 4);
	if (klen == 0 || klen >= m->len - 4) {
		log_warnx(SUBSYS, "credentials out of shape: ignored");
		return;
	}
	if (gd_write_file_atomic(c->op_key, m->data + 4, klen, 0600) != 0 ||
	    gd_write_file_atomic(c->op_crt, m->data + 4 + klen, m->len - 4 - klen, 0600) != 0)
		log_warn(SUBSYS, "cannot write the operational credentials into %s", c->op_key);
}

/* One message from guardian. 0, GD_EPROTO (out of the rules), or 1: stop. */
static int handle(struct child *c, const struct uw_msg *m, bool *started)
{
	char sub[UW_SUBTOPIC_MAX];
	uint64_t u64;
	uint32_t u32;

	switch (m->type) {
	case UW_TELEMETRY:
		memcpy(&u64, m->data, 8);
		if (u64 <= c->received && c->received != 0)
			return GD_EPROTO;
		c->received = u64;
		uplink_send_telemetry(c->uplink, u64, (const char *)m->data + 8, m->len - 8);
		/* In the spool now (or refused and counted, as in one process): guardian's copy
		 * may go, and its caller on. */
		send_msg(c, UW_TAKEN, (struct iovec[]){ { &u64, 8 } }, 1);
		return 0;
	case UW_HEALTH:
		uplink_set_health(c->uplink, (const char *)m->data, m->len);
		return 0;
	case UW_HOLD:
		memcpy(&u32, m->data, 4);
		if (u32 > 1)
			return GD_EPROTO;
		uplink_hold(c->uplink, u32 == 1);
		return 0;
	case UW_RECONNECT:
		uplink_reconnect(c->uplink);
		return 0;
	case UW_SUBSCRIBE:
		memcpy(&u32, m->data, 4);
		if (*started || u32 > UW_TOPIC_EXTRA)
			return GD_EPROTO;
		if (u32 == UW_TOPIC_COMMANDS) {
			uplink_set_command_handler(c->uplink, on_command, c);
			return 0;
		}
		if (uw_subtopic_get(m->data + 4, sub) != 0 ||
		    uplink_subscribe_extra(c->uplink, sub, on_extra, c) != 0)
			return GD_EPROTO;
		return 0;
	case UW_START:
		if (*started)
			return GD_EPROTO;
		*started = true;
		if (uplink_start(c->uplink) != 0) {
			log_warnx(SUBSYS, "cannot start the uplink");
			return GD_EIO;
		}
		return 0;
	case UW_EVENT:
		memcpy(&u64, m->data, 8);
		if (uw_subtopic_get(m->data + 8, sub) != 0)
			return GD_EPROTO;
		uplink_publish_event_acked(
			c->uplink, sub, (const char *)m->data + 8 + UW_SUBTOPIC_MAX,
			m->len - 8 - UW_SUBTOPIC_MAX, u64 != 0 ? on_ack : NULL, c, u64);
		return 0;
	case UW_CREDENTIALS:
		keep_credentials(c, m);
		return 0;
	case UW_STOP:
		memcpy(&u32, m->data, 4);
		uplink_stop(c->uplink, u32 > 600000 ? 600000 : (int)u32);
		send_stats(c);
		send_msg(c, UW_STOPPED, NULL, 0);
		return 1;
	default:
		return GD_EPROTO;
	}
}

int uplink_child_main(int argc, char **argv)
{
	struct child c = { .send_lock = PTHREAD_MUTEX_INITIALIZER };
	struct gd_config *cfg = NULL;
	struct uplink_config ucfg;
	char creds_dir[UW_PATH_MAX - 16], spool_dir[64], why[512], sha[65];
	struct conf conf;
	bool started = false;
	int64_t next_stats;
	int rc = 1, type;
	socklen_t len = sizeof(type);
	uint64_t last;

	compartment_child_signals();
	if (argc != 5 || getsockopt(CHANNEL_FD, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    type != SOCK_SEQPACKET) {
		fprintf(stderr, "guardian uplink-child: not for people: guardian run starts it\n");
		return 2;
	}
	fcntl(CHANNEL_FD, F_SETFD, FD_CLOEXEC);
	/* The bytes of the config guardian loaded, measured and trusts (a sealed memfd: under a
	 * user of its own this process may not reach the file), checked against its digest. */
	conf_init(&conf, argv[2]);
	if (compartment_config_load(argv[2], argv[3], &conf, &cfg) != 0) {
		log_error(SUBSYS, "%s: cannot load the config: %s", argv[2],
			  conf.nerrors > 0 && conf.errors[0] != NULL ? conf.errors[0]
								     : "out of memory");
		conf_release(&conf);
		return 1;
	}
	conf_release(&conf);
	log_set_level((enum log_level)cfg->log_level);
	gd_hex_encode(cfg->measured_config.sha256, 32, sha);
	if (strcmp(sha, argv[4]) != 0) {
		log_error(SUBSYS, "the config handed over is not the one guardian runs");
		goto out;
	}
	ucfg = cfg->uplink;
	/* Under a user of its own, its directories come as descriptors (guardian made them its
	 * own; the state directory between is guardian's, closed to it): named through them. */
	if (given_dir(CM_FD_SPOOL) && ucfg.spool.enabled) {
		fcntl(CM_FD_SPOOL, F_SETFD, FD_CLOEXEC);
		snprintf(spool_dir, sizeof(spool_dir), "/proc/self/fd/%d", CM_FD_SPOOL);
		ucfg.spool.dir = spool_dir;
	}
	/* Its own directory: the operational credentials guardian hands it. */
	if (given_dir(CM_FD_CREDS)) {
		fcntl(CM_FD_CREDS, F_SETFD, FD_CLOEXEC);
		snprintf(creds_dir, sizeof(creds_dir), "/proc/self/fd/%d", CM_FD_CREDS);
	} else {
		snprintf(creds_dir, sizeof(creds_dir), "%s/uplink", cfg->state_dir);
		if (mkdir(creds_dir, 0700) != 0 && errno != EEXIST) {
			log_warn(SUBSYS, "cannot make %s", creds_dir);
			goto out;
		}
	}
	snprintf(c.op_key, sizeof(c.op_key), "%s/op.key", creds_dir);
	snprintf(c.op_crt, sizeof(c.op_crt), "%s/op.crt", creds_dir);
	if (ucfg.attested) {
		ucfg.cert_file = c.op_crt;
		ucfg.key_file = c.op_key;
	}
	if (ucfg.spool.enabled && ucfg.spool.dir != NULL && mkdir(ucfg.spool.dir, 0700) != 0 &&
	    errno != EEXIST) {
		log_warn(SUBSYS, "cannot make the spool directory %s", ucfg.spool.dir);
		goto out;
	}
	why[0] = '\0';
	if (confine_files(cfg->state_dir, &ucfg, creds_dir, why, sizeof(why)) != 0)
		log_warnx(SUBSYS, "files are not confined: %s", why);
	if (gd_sandbox_enter(&(struct gd_sandbox){ .profile = "uplink" }, why, sizeof(why)) != 0) {
		log_error(SUBSYS, "refusing to start: sandbox: %s", why);
		goto out;
	}
#ifdef GUARDIAN_TEST_PROBE
	probe(cfg);
#endif
	c.uplink = uplink_new(&ucfg, cfg->device_id);
	if (c.uplink == NULL) {
		log_error(SUBSYS, "cannot create the uplink");
		goto out;
	}
	c.spooled = ucfg.spool.enabled;
	if (uw_chan_init(&c.chan, CHANNEL_FD, false, (size_t)ucfg.max_message_bytes) != 0)
		goto out;
	last = uplink_last_seq(c.uplink);
	c.received = last;
	/* Its counters first: guardian's first health document says what the spool holds. */
	send_stats(&c);
	if (send_msg(&c, UW_HELLO, (struct iovec[]){ { &last, 8 } }, 1) != 0)
		goto out;
#ifdef GUARDIAN_TEST_PROBE
	probe_garbage(&c);
#endif
	next_stats = gd_mono_ms() + STATS_EVERY_MS;
	for (;;) {
		struct pollfd pfd = { .fd = CHANNEL_FD, .events = POLLIN };
		int64_t wait = next_stats - gd_mono_ms();
		struct uw_msg m;
		int n;

		n = poll(&pfd, 1, wait > 0 ? (int)wait : 0);
		if (n < 0 && errno != EINTR)
			break;
		if (gd_mono_ms() >= next_stats) {
			send_stats(&c);
			next_stats = gd_mono_ms() + STATS_EVERY_MS;
		}
		if (n <= 0)
			continue;
		n = uw_recv(&c.chan, &m);
		if (n == GD_EIO && errno == 0) {
			/* guardian is gone: what it sent is in the spool. */
			rc = 0;
			break;
		}
		if (n != 0) {
			log_warnx(SUBSYS, "the channel to guardian: %s", gd_strerror(n));
			break;
		}
		n = handle(&c, &m, &started);
		if (n == 1) {
			rc = 0;
			break;
		}
		if (n != 0) {
			log_warnx(SUBSYS, "a message out of the rules from guardian (type %u)",
				  (unsigned)m.type);
			break;
		}
	}
out:
	if (c.uplink != NULL) {
		uplink_stop(c.uplink, 0);
		uplink_free(c.uplink);
	}
	uw_chan_release(&c.chan);
	gd_config_free(cfg);
	return rc;
}
