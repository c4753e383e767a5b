/* preflight.c: the checks `guardian run` makes before it starts anything and `guardian check`
 * prints: state directory, secret files, identity certificate, audit key, devices, PIN. */
#include <errno.h>
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

	if (!sp->enabled || sp->dir == NULL)
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
	check_attestation(&pf);
	if (state_exists && mode == PREFLIGHT_CHECK)
		check_audit(&pf);
	if (!cfg->uplink.attested)
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
