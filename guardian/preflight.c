/* preflight.c: the checks `guardian run` makes before it starts anything and `guardian check`
 * prints: state directory, secret files, identity certificate, audit key, devices, PIN. */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "keystore.h"
#include "attest_tpm.h"
#include "preflight.h"

struct pf {
	const struct gd_config *cfg;
	preflight_report_fn *report;
	void *ctx;
	int errors;
};

static void say(struct pf *pf, enum preflight_level level, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void say(struct pf *pf, enum preflight_level level, const char *key, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (level == PREFLIGHT_ERROR)
		pf->errors++;
	pf->report(pf->ctx, level, key, text);
}

/*
 * Whether mkdir(dir) would succeed: its parent is a directory this user may
 * write. 0, or the errno mkdir would most likely fail with.
 */
static int can_make(const char *dir)
{
	char copy[PATH_MAX];
	const char *parent;
	struct stat st;

	snprintf(copy, sizeof(copy), "%s", dir);
	parent = dirname(copy);
	if (stat(parent, &st) != 0)
		return errno;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	if (access(parent, W_OK | X_OK) != 0)
		return errno;
	return 0;
}

/* "the user guardian (uid 998)", or "uid 998". */
static const char *user_text(uid_t uid, char *buf, size_t cap)
{
	const struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, cap, "the user %s (uid %u)", pw->pw_name, (unsigned)uid);
	else
		snprintf(buf, cap, "uid %u", (unsigned)uid);
	return buf;
}

/*
 * The state directory: there (run makes it, 0700, as this user), a directory of this user that
 * group and others cannot enter. Returns whether it exists now.
 */
static bool check_state_dir(struct pf *pf, enum preflight_mode mode)
{
	const char *dir = pf->cfg->state_dir;
	char why[768], who[96];
	struct stat st;
	int err;

	if (stat(dir, &st) != 0) {
		err = errno;
		if (err == ENOENT && mode == PREFLIGHT_RUN)
			err = mkdir(dir, 0700) == 0 ? 0 : errno;
		else if (err == ENOENT)
			err = can_make(dir);
		if (err != 0) {
			say(pf, PREFLIGHT_ERROR, "state_dir",
			    "cannot create the state directory %s: %s", dir, strerror(err));
			return false;
		}
		/* check: it can be made, with this user as its owner and mode 0700. */
		if (mode == PREFLIGHT_CHECK || stat(dir, &st) != 0)
			return false;
	}
	if (keystore_check_dir(dir, why, sizeof(why)) != 0) {
		if (!S_ISDIR(st.st_mode))
			say(pf, PREFLIGHT_ERROR, "state_dir", "%s", why);
		else if (st.st_uid != geteuid())
			say(pf, PREFLIGHT_ERROR, "state_dir", "%s, or run guardian as %s", why,
			    user_text(st.st_uid, who, sizeof(who)));
		else
			/* Open to others: the keys in it are checked one by one below; with
			 * attestation, the directory itself must be closed too. */
			say(pf, pf->cfg->attest.enabled ? PREFLIGHT_ERROR : PREFLIGHT_WARNING,
			    "state_dir", "%s", why);
		return true;
	}
	if (access(dir, W_OK | X_OK) != 0)
		say(pf, PREFLIGHT_ERROR, "state_dir", "%s: %s", dir, strerror(errno));
	return true;
}

/* The spool's directory, as spool_open will make and use it. */
static void check_spool(struct pf *pf, bool state_exists)
{
	const struct spool_config *sp = &pf->cfg->uplink.spool;
	char copy[PATH_MAX];
	struct stat st;
	int err = 0;

	/* With a user of its own, the uplink's (check_uplink_user). */
	if (!sp->enabled || sp->dir == NULL || pf->cfg->sandbox.uplink_user != NULL)
		return;
	if (stat(sp->dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			err = ENOTDIR;
		else if (access(sp->dir, W_OK | X_OK) != 0)
			err = errno;
	} else if (errno != ENOENT) {
		err = errno;
	} else {
		/* Inside a state directory that is not there yet: its finding says it all. */
		snprintf(copy, sizeof(copy), "%s", sp->dir);
		if (state_exists || strcmp(dirname(copy), pf->cfg->state_dir) != 0)
			err = can_make(sp->dir);
	}
	if (err != 0)
		say(pf, PREFLIGHT_ERROR, "uplink.spool.dir", "spool directory %s: %s", sp->dir,
		    strerror(err));
}

/* The keys and the certificate attestation needs: run refuses to start without them. */
static void check_attestation(struct pf *pf)
{
	const struct gd_config *cfg = pf->cfg;
	char path[PATH_MAX], why[768];
	struct stat st;

	if (!cfg->attest.enabled)
		return;
	snprintf(path, sizeof(path), "%s/identity.key", cfg->state_dir);
	if (lstat(path, &st) != 0 && errno == ENOENT)
		say(pf, PREFLIGHT_ERROR, "attestation",
		    "%s: no identity key; run guardian provision -c %s first", path, cfg->file);
	else if (keystore_check_file(path, why, sizeof(why)) != 0)
		say(pf, PREFLIGHT_ERROR, "attestation", "%s", why);
	snprintf(path, sizeof(path), "%s/op.key", cfg->state_dir);
	if (access(path, F_OK) == 0 && keystore_check_file(path, why, sizeof(why)) != 0)
		say(pf, PREFLIGHT_ERROR, "attestation", "%s", why);
	/* The attestation key in the TPM: guardian-launch loads it, and refuses with these words.
	 */
	snprintf(path, sizeof(path), "%s/" ATTEST_TPM_BLOB, cfg->state_dir);
	if (cfg->attest.tpm && access(path, F_OK) != 0)
		say(pf, PREFLIGHT_ERROR, "attestation.tpm",
		    "%s: no attestation key; run guardian provision -c %s first", path, cfg->file);
	if (cfg->attest.cert_file != NULL && access(cfg->attest.cert_file, R_OK) != 0)
		say(pf, PREFLIGHT_ERROR, "attestation.cert_file",
		    "%s: %s; enroll the device (guardian-service enroll with its identity.csr) and "
		    "put the identity certificate there",
		    cfg->attest.cert_file, strerror(errno));
	if (cfg->attest.ca_file != NULL && access(cfg->attest.ca_file, R_OK) != 0)
		say(pf, PREFLIGHT_WARNING, "attestation.ca_file",
		    "%s: %s; attestation cannot connect until it is there", cfg->attest.ca_file,
		    strerror(errno));
}

/* The audit log and its key, as audit_open will read them (check only: run's audit_open
 * refuses with the same words). */
static void check_audit(struct pf *pf)
{
	struct audit_result res = { .records = 0 };
	char log[PATH_MAX], key[PATH_MAX], why[768];

	snprintf(log, sizeof(log), "%s/audit.log", pf->cfg->state_dir);
	snprintf(key, sizeof(key), "%s/audit.key", pf->cfg->state_dir);
	if (access(log, F_OK) != 0) {
		if (access(key, F_OK) == 0 && keystore_check_file(key, why, sizeof(why)) != 0)
			say(pf, PREFLIGHT_ERROR, "state_dir", "%s", why);
		return;
	}
	if (audit_check(log, 0, "", NULL, NULL, &res, why, sizeof(why)) != 0)
		say(pf, PREFLIGHT_ERROR, "state_dir", "%s", why);
	else if (res.problems > 0)
		say(pf, PREFLIGHT_WARNING, "state_dir",
		    "%s: the chain is broken (%llu problem%s); guardian audit verify -c %s names "
		    "them; new records follow the last intact one",
		    log, (unsigned long long)res.problems, res.problems == 1 ? "" : "s",
		    pf->cfg->file);
}

/* The uplink's own key (the config's loader made sure it reads): kept as a secret should be. */
static void check_uplink_key(struct pf *pf, const char *path)
{
	char why[768];

	if (path != NULL && keystore_check_file(path, why, sizeof(why)) != 0)
		say(pf, PREFLIGHT_WARNING, "uplink.key_file", "%s", why);
}

/* sandbox.user: run drops to it before anything starts, and refuses to start without it. */
static void check_sandbox_user(struct pf *pf)
{
	const char *user = pf->cfg->sandbox.user;

	errno = 0;
	if (pf->cfg->sandbox.enabled && user != NULL && getpwnam(user) == NULL)
		say(pf, PREFLIGHT_ERROR, "sandbox.user", "no user \"%s\" on this system%s%s", user,
		    errno ? ": " : "", errno ? strerror(errno) : "");
}

/* A user, as the kernel checks its access: uid, primary gid and groups. */
struct user_ids {
	const char *name;
	uid_t uid;
	gid_t gid;
	gid_t groups[256];
	int ngroups;
};

/* Whether 'u' has the access 'want' (4 read, 1 search) by st's mode bits (ACLs aside). */
static bool user_has(const struct user_ids *u, const struct stat *st, unsigned want)
{
	unsigned bits = st->st_mode & 7;
	bool in_group = st->st_gid == u->gid;

	for (int i = 0; i < u->ngroups && !in_group; i++)
		in_group = st->st_gid == u->groups[i];
	if (u->uid == 0)
		return true;
	if (st->st_uid == u->uid)
		bits = (st->st_mode >> 6) & 7;
	else if (in_group)
		bits = (st->st_mode >> 3) & 7;
	return (bits & want) == want;
}

/* Whether 'u' may read 'path': every directory on the way searchable, the file readable. 0, or
 * the errno it would get, with the path that stops it in 'where'. */
static int user_may_read(const struct user_ids *u, const char *path, char *where, size_t cap)
{
	char walk[PATH_MAX];
	struct stat st;
	size_t n = strlen(path);

	if (path[0] != '/' || n >= sizeof(walk)) {
		snprintf(where, cap, "%s", path);
		return path[0] != '/' ? EINVAL : ENAMETOOLONG;
	}
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		memcpy(walk, path, i);
		walk[i] = '\0';
		snprintf(where, cap, "%s", walk);
		if (stat(walk, &st) != 0)
			return errno;
		if (!user_has(u, &st, path[i] == '\0' ? 4 : 1))
			return EACCES;
	}
	return 0;
}

/*
 * sandbox.uplink_user: what the uplink's child, under that user, opens. Its spool and
 * state_dir/uplink belong to it (run, as root, makes them so; else they must already); the CA,
 * certificate and key files it reads are readable by it.
 */
static void check_uplink_user(struct pf *pf, enum preflight_mode mode)
{
	const struct gd_config *cfg = pf->cfg;
	const struct gd_sandbox_config *sb = &cfg->sandbox;
	const struct uplink_config *up = &cfg->uplink;
	struct user_ids u = { .name = sb->uplink_user,
			      .uid = sb->uplink_uid,
			      .gid = sb->uplink_gid };
	const struct {
		const char *key, *path;
	} files[] = {
		{ "uplink.ca_file", up->ca_file },
		{ "uplink.cert_file", up->attested ? NULL : up->cert_file },
		{ "uplink.key_file", up->attested ? NULL : up->key_file },
	};
	char creds[PATH_MAX], where[PATH_MAX];
	const struct {
		const char *key, *dir;
	} dirs[] = {
		{ "uplink.spool.dir", up->spool.enabled ? up->spool.dir : NULL },
		{ "sandbox.uplink_user", creds },
	};
	/* run as root makes them and gives them to the user before it drops root. */
	bool fixes = mode == PREFLIGHT_CHECK && geteuid() == 0;

	if (u.name == NULL)
		return;
	snprintf(creds, sizeof(creds), "%s/uplink", cfg->state_dir);
	u.ngroups = (int)(sizeof(u.groups) / sizeof(u.groups[0]));
	if (getgrouplist(u.name, u.gid, u.groups, &u.ngroups) < 0)
		u.ngroups = 0;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		struct stat st;
		int err;

		if (dirs[i].dir == NULL || fixes)
			continue;
		err = lstat(dirs[i].dir, &st) != 0 ? errno : 0;
		if (err == 0 && S_ISDIR(st.st_mode) && st.st_uid == u.uid)
			continue;
		say(pf, PREFLIGHT_ERROR, dirs[i].key,
		    "the uplink's directory %s must belong to its user %s (uid %u)%s%s; as root: "
		    "mkdir -p %s && chown -R %s: %s && chmod 700 %s (or start guardian as root, "
		    "which does it)",
		    dirs[i].dir, u.name, (unsigned)u.uid, err != 0 ? ": " : "",
		    err != 0 ? strerror(err) : "", dirs[i].dir, u.name, dirs[i].dir, dirs[i].dir);
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		int err;

		if (files[i].path == NULL)
			continue;
		err = user_may_read(&u, files[i].path, where, sizeof(where));
		if (err == 0)
			continue;
		say(pf, PREFLIGHT_ERROR, files[i].key,
		    "%s is not readable by the uplink's user %s (uid %u): %s at %s (make it and "
		    "the directories on its way readable by that user, or its group)",
		    files[i].path, u.name, (unsigned)u.uid, strerror(err), where);
	}
	/* The uplink's own key: its user's, and no one else's. */
	if (!up->attested && up->key_file != NULL) {
		struct stat st;

		if (stat(up->key_file, &st) == 0 && (st.st_uid != u.uid || (st.st_mode & 077) != 0))
			say(pf, PREFLIGHT_WARNING, "uplink.key_file",
			    "%s (uid %u, mode %04o) should belong to the uplink's user %s and be "
			    "closed to others: chown %s %s && chmod 600 %s",
			    up->key_file, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
			    u.name, u.name, up->key_file, up->key_file);
	}
}

/* A serial device an adapter or the console opens: retried until it is there, so a warning. */
static void check_device(struct pf *pf, const char *key, const char *device)
{
	char hint[160];
	int err;

	if (device == NULL)
		return;
	if (access(device, F_OK) != 0) {
		say(pf, PREFLIGHT_WARNING, key,
		    "%s: %s (plugged in? guardian retries until it is there)", device,
		    strerror(errno));
	} else if (access(device, R_OK | W_OK) != 0) {
		err = errno;
		say(pf, PREFLIGHT_WARNING, key, "%s: %s%s", device, strerror(err),
		    serial_access_hint(device, err, hint, sizeof(hint)));
	}
}

int preflight(const struct gd_config *cfg, enum preflight_mode mode, preflight_report_fn *report,
	      void *ctx)
{
	struct pf pf = { .cfg = cfg, .report = report, .ctx = ctx };
	bool state_exists;
	char key[64];

	state_exists = check_state_dir(&pf, mode);
	check_spool(&pf, state_exists);
	check_sandbox_user(&pf);
	check_uplink_user(&pf, mode);
	check_attestation(&pf);
	if (state_exists && mode == PREFLIGHT_CHECK)
		check_audit(&pf);
	if (!cfg->uplink.attested && cfg->sandbox.uplink_user == NULL)
		check_uplink_key(&pf, cfg->uplink.key_file);
	for (size_t i = 0; i < cfg->nadapters; i++) {
		const struct adapter *a = cfg->adapters[i];

		if (a->ops->serial_device == NULL)
			continue;
		snprintf(key, sizeof(key), "adapters[%zu].device", i);
		check_device(&pf, key, a->ops->serial_device(a));
	}
	if (cfg->console.port.device != NULL) {
		check_device(&pf, "console.device", cfg->console.port.device);
		if (cfg->console.pin_hash == NULL)
			say(&pf, PREFLIGHT_WARNING, "console.pin_hash",
			    "not set: login and the privileged commands (restart, reconnect, ack) "
			    "are off at the box; make one with guardian console hash-pin");
	}
	return pf.errors;
}
