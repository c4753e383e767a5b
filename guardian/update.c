/* update.c: signed updates on the device: the slots, update.json, the switch, and the commands
 * guardian update init, install, status and prestart. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/json.h"
#include "../proto/bundle.h"
#include "update.h"
#include "version.h"

#define MAX_KEYS 16 /* update root keys a device trusts */

const char *const update_install_steps[] = {
	"staging",	 /* the empty staging directory made */
	"extracted",	 /* the bundle verified and unpacked into it */
	"copied",	 /* what the bundle does not carry copied from the current slot */
	"synced",	 /* every file and directory of it synced */
	"old-moved",	 /* the inactive slot moved aside */
	"renamed",	 /* the staging directory renamed into place as the inactive slot */
	"state-written", /* update.json names the trial */
	"switched",	 /* current names the new slot */
	"cleaned",	 /* the old inactive slot removed */
	NULL,
};

/* Tests only: GUARDIAN_UPDATE_CRASH_AT=<step> kills this process there, as a power cut would. */
static void crash_point(const char *step)
{
	const char *at = getenv("GUARDIAN_UPDATE_CRASH_AT");

	if (at == NULL || strcmp(at, step) != 0)
		return;
	fprintf(stderr, "guardian update: GUARDIAN_UPDATE_CRASH_AT=%s: SIGKILL now\n", step);
	fflush(stderr);
	kill(getpid(), SIGKILL);
}

/* ---- config ------------------------------------------------------------------------------ */

static const struct conf_key update_keys[] = {
	{ .name = "keys",
	  .kind = CONF_ARRAY,
	  .required = true,
	  .expect = "the update root public keys (PEM files)" },
	CONF_INT_KEY("threshold", struct gd_update, threshold, 1, BUNDLE_MAX_SIGS, false,
		     "how many of the keys must sign"),
	{ .name = "device_class",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct gd_update, device_class),
	  .expect = "this device's class, as bundles name it" },
	CONF_INT_KEY("trial_attempts", struct gd_update, trial_attempts, 1, 100, false,
		     "starts a new version gets"),
	CONF_INT_KEY("gate_timeout_s", struct gd_update, gate_timeout_s, 1, 86400, false,
		     "seconds"),
	{ .name = NULL },
};

int update_config_read(struct gd_update *u, struct conf *c, const void *json, const char *dir)
{
	const cJSON *obj = json, *arr, *item;
	char ids[MAX_KEYS][BUNDLE_KEYID_HEX + 1];
	size_t before = c->nerrors, n, i = 0;

	*u = (struct gd_update){ .threshold = 1, .trial_attempts = 3, .gate_timeout_s = 300 };
	conf_read_object(c, obj, "update", update_keys, u);
	if (u->device_class != NULL && !conf_valid_name(u->device_class))
		conf_error(c, "update.device_class",
			   "invalid class \"%s\" (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
			   u->device_class);
	arr = cJSON_GetObjectItemCaseSensitive(obj, "keys");
	if (!cJSON_IsArray(arr))
		goto out;
	n = (size_t)cJSON_GetArraySize(arr);
	if (n == 0 || n > MAX_KEYS) {
		conf_error(c, "update.keys", "%zu keys (expected 1 to %d PEM public key files)", n,
			   MAX_KEYS);
		goto out;
	}
	u->keys = calloc(n, sizeof(*u->keys));
	if (u->keys == NULL) {
		conf_error(c, "update.keys", "out of memory");
		goto out;
	}
	cJSON_ArrayForEach (item, arr) {
		char path[48], *pem;

		conf_path_index(path, sizeof(path), "update.keys", i++);
		if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
			conf_error(c, path, "expected the path of a PEM public key file");
			continue;
		}
		if (item->valuestring[0] == '/' || strcmp(dir, ".") == 0)
			u->keys[u->nkeys] = strdup(item->valuestring);
		else if (asprintf(&u->keys[u->nkeys], "%s/%s", dir, item->valuestring) < 0)
			u->keys[u->nkeys] = NULL;
		if (u->keys[u->nkeys] == NULL) {
			conf_error(c, path, "out of memory");
			continue;
		}
		pem = gd_read_file(u->keys[u->nkeys]);
		if (pem == NULL) {
			conf_error(c, path, "cannot read %s: %s", u->keys[u->nkeys],
				   strerror(errno));
			free(u->keys[u->nkeys]);
			continue;
		}
		if (bundle_keyid(pem, ids[u->nkeys]) != 0) {
			conf_error(c, path,
				   "%s is not a PEM EC public key (expected the .pub.pem of "
				   "guardian-service release keygen)",
				   u->keys[u->nkeys]);
		} else {
			/* The same key twice would count twice toward the threshold. */
			for (size_t j = 0; j < u->nkeys; j++)
				if (strcmp(ids[j], ids[u->nkeys]) == 0)
					conf_error(c, path, "the same key as update.keys[%zu] (%s)",
						   j, ids[j]);
		}
		free(pem);
		u->nkeys++;
	}
	if (u->nkeys > 0 && (size_t)u->threshold > u->nkeys)
		conf_error(c, "update.threshold",
			   "%d signatures asked for, but update.keys has only %zu key%s",
			   u->threshold, u->nkeys, u->nkeys == 1 ? "" : "s");
out:
	u->enabled = c->nerrors == before;
	return (int)(c->nerrors - before);
}

void update_config_release(struct gd_update *u)
{
	for (size_t i = 0; i < u->nkeys; i++)
		free(u->keys[i]);
	free(u->keys);
	free(u->device_class);
	*u = (struct gd_update){ 0 };
}

/* ---- update.json and current --------------------------------------------------------------- */

static bool read_slot(const cJSON *obj, const char *key, char out[2])
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!cJSON_IsString(v) ||
	    (strcmp(v->valuestring, "a") != 0 && strcmp(v->valuestring, "b") != 0))
		return false;
	memcpy(out, v->valuestring, 2);
	return true;
}

static bool read_u64(const cJSON *obj, const char *key, uint64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
	    v->valuedouble != (double)(uint64_t)v->valuedouble)
		return false;
	*out = (uint64_t)v->valuedouble;
	return true;
}

int update_state_read(const char *state_dir, struct update_state *st, char *why, size_t cap)
{
	char path[PATH_MAX];
	const cJSON *good, *trial;
	const char *bad = NULL;
	uint64_t n;
	cJSON *root;
	char *text;

	*st = (struct update_state){ 0 };
	snprintf(path, sizeof(path), "%s/update.json", state_dir);
	text = gd_read_file(path);
	if (text == NULL) {
		int err = errno;

		gd_whyf(why, cap, "cannot read %s: %s%s", path, strerror(err),
			err == ENOENT ? " (guardian update init makes it)" : "");
		errno = err;
		return GD_EIO;
	}
	root = cJSON_Parse(text);
	free(text);
	good = cJSON_GetObjectItemCaseSensitive(root, "good");
	trial = cJSON_GetObjectItemCaseSensitive(root, "trial");
	if (!cJSON_IsObject(root))
		bad = "not a JSON object";
	else if (!read_u64(root, "floor", &st->floor))
		bad = "floor: expected a version number";
	else if (!read_slot(good, "slot", st->good))
		bad = "good.slot: expected \"a\" or \"b\"";
	else if (!read_u64(good, "version", &st->good_version))
		bad = "good.version: expected a version number";
	else if (!cJSON_IsNull(trial) && !cJSON_IsObject(trial))
		bad = "trial: expected an object or null";
	if (bad == NULL && cJSON_IsObject(trial)) {
		st->trial = true;
		if (!read_slot(trial, "slot", st->trial_slot))
			bad = "trial.slot: expected \"a\" or \"b\"";
		else if (!read_u64(trial, "version", &st->trial_version))
			bad = "trial.version: expected a version number";
		else if (!read_slot(trial, "previous", st->previous))
			bad = "trial.previous: expected \"a\" or \"b\"";
		else if (!read_u64(trial, "attempts", &n) || n > 1000)
			bad = "trial.attempts: expected a count of starts";
		else if ((st->attempts = (int)n),
			 !read_u64(trial, "max_attempts", &n) || n < 1 || n > 100)
			bad = "trial.max_attempts: expected 1 to 100";
		else
			st->max_attempts = (int)n;
	}
	cJSON_Delete(root);
	if (bad != NULL) {
		gd_whyf(why, cap, "%s: %s", path, bad);
		return GD_EPROTO;
	}
	return 0;
}

int update_state_write(const char *state_dir, const struct update_state *st, char *why, size_t cap)
{
	char path[PATH_MAX], buf[1024];
	struct jw w;
	size_t n;

	jw_init(&w, buf, sizeof(buf));
	jw_object(&w);
	jw_key(&w, "floor");
	jw_uint(&w, st->floor);
	jw_key(&w, "good");
	jw_object(&w);
	jw_key(&w, "slot");
	jw_string(&w, st->good);
	jw_key(&w, "version");
	jw_uint(&w, st->good_version);
	jw_end(&w);
	jw_key(&w, "trial");
	if (st->trial) {
		jw_object(&w);
		jw_key(&w, "slot");
		jw_string(&w, st->trial_slot);
		jw_key(&w, "version");
		jw_uint(&w, st->trial_version);
		jw_key(&w, "previous");
		jw_string(&w, st->previous);
		jw_key(&w, "attempts");
		jw_int(&w, st->attempts);
		jw_key(&w, "max_attempts");
		jw_int(&w, st->max_attempts);
		jw_end(&w);
	} else {
		jw_null(&w);
	}
	jw_end(&w);
	n = jw_finish(&w);
	snprintf(path, sizeof(path), "%s/update.json", state_dir);
	if (n == 0 || n + 1 >= sizeof(buf))
		goto fail;
	buf[n++] = '\n';
	if (gd_write_file_atomic(path, buf, n, 0600) != 0)
		goto fail;
	return 0;
fail:
	gd_whyf(why, cap, "cannot write %s: %s", path, strerror(errno));
	return GD_EIO;
}

int update_current(const char *state_dir, char slot[2], char *why, size_t cap)
{
	char path[PATH_MAX], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/current", state_dir);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		gd_whyf(why, cap, "cannot read the link %s: %s%s", path, strerror(errno),
			errno == ENOENT ? " (guardian update init makes it)" : "");
		return GD_EIO;
	}
	target[n] = '\0';
	if (strcmp(target, "slots/a") != 0 && strcmp(target, "slots/b") != 0) {
		gd_whyf(why, cap, "%s -> \"%s\" (expected slots/a or slots/b)", path, target);
		return GD_EPROTO;
	}
	memcpy(slot, target + 6, 2);
	return 0;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int update_switch(const char *state_dir, const char *slot, char *why, size_t cap)
{
	char tmp[PATH_MAX], path[PATH_MAX], target[16];

	snprintf(tmp, sizeof(tmp), "%s/.current.new", state_dir);
	snprintf(path, sizeof(path), "%s/current", state_dir);
	snprintf(target, sizeof(target), "slots/%s", slot);
	/* Relative, so the state directory may move (or be seen under another root). */
	if ((unlink(tmp) != 0 && errno != ENOENT) || symlink(target, tmp) != 0 ||
	    rename(tmp, path) != 0 || fsync_path(state_dir) != 0) {
		gd_whyf(why, cap, "cannot point %s at %s: %s", path, target, strerror(errno));
		unlink(tmp);
		return GD_EIO;
	}
	return 0;
}

/* dir/name into 'out'. Out of line: the compiler would otherwise count every buffer at its size. */
__attribute__((noinline)) static char *join(char *out, size_t cap, const char *dir,
					    const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
	return out;
}

/* ---- files ----------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

/* Removes 'path' and all below it; nothing there is fine. */
static int rm_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int sync_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_SL)
		return 0;
	return fsync_path(path);
}

/* Every file and directory below 'path', depth first: a directory after what it holds. */
static int sync_tree(const char *path)
{
	return nftw(path, sync_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Copies 'src' to the new file 'dst' with 'mode', synced. */
static int copy_file(const char *src, const char *dst, mode_t mode)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = -1, err;
	char buf[65536];
	ssize_t n;

	if (in < 0)
		return -1;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (out < 0)
		goto out;
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, buf + done, (size_t)(n - done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				goto out;
			done += w;
		}
	}
	/* Whatever the umask said: the program must stay executable. */
	if (fchmod(out, mode) != 0 || fsync(out) != 0)
		goto out;
	rc = 0;
out:
	err = errno;
	close(in);
	if (out >= 0 && close(out) != 0 && rc == 0) {
		err = errno;
		rc = -1;
	}
	errno = err;
	return rc;
}

/*
 * Copies the tree 'src' into the directory 'dst', leaving what 'dst' already holds (the bundle's
 * files win). Regular files, directories and symlinks; 'failed' names what could not be copied.
 */
static int copy_tree(const char *src, const char *dst, char *failed, size_t cap)
{
	DIR *d = opendir(src);
	struct dirent *e;
	int rc = 0;

	if (d == NULL) {
		gd_whyf(failed, cap, "%s: %s", src, strerror(errno));
		return -1;
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char from[PATH_MAX], to[PATH_MAX], link[PATH_MAX];
		struct stat st, there;
		ssize_t n;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(from, sizeof(from), "%s/%s", src, e->d_name) >= sizeof(from) ||
		    (size_t)snprintf(to, sizeof(to), "%s/%s", dst, e->d_name) >= sizeof(to)) {
			errno = ENAMETOOLONG;
			rc = -1;
			break;
		}
		if (lstat(from, &st) != 0) {
			rc = -1;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (mkdir(to, st.st_mode & 0777) != 0 && errno != EEXIST) {
				rc = -1;
				break;
			}
			rc = copy_tree(from, to, failed, cap);
			continue;
		}
		if (lstat(to, &there) == 0)
			continue; /* the bundle carries it */
		if (S_ISREG(st.st_mode)) {
			rc = copy_file(from, to, st.st_mode & 0777);
		} else if (S_ISLNK(st.st_mode)) {
			n = readlink(from, link, sizeof(link) - 1);
			if (n < 0) {
				rc = -1;
			} else {
				link[n] = '\0';
				rc = symlink(link, to);
			}
		}
		if (rc != 0 && failed != NULL && failed[0] == '\0')
			gd_whyf(failed, cap, "%s: %s", from, strerror(errno));
	}
	if (rc != 0 && failed != NULL && failed[0] == '\0')
		gd_whyf(failed, cap, "%s: %s", src, strerror(errno));
	closedir(d);
	return rc;
}

/* mkdir -p of the directories above 'path' (not 'path' itself). */
static int mkdir_parents(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

/* A slot that can run: a regular executable "guardian" and a "site.json". */
static bool slot_runnable(const char *dir, char *why, size_t cap)
{
	char path[PATH_MAX];
	struct stat st;

	join(path, sizeof(path), dir, "guardian");
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0100) == 0) {
		gd_whyf(why, cap, "%s is not an executable program", path);
		return false;
	}
	join(path, sizeof(path), dir, "site.json");
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		gd_whyf(why, cap, "%s is missing", path);
		return false;
	}
	return true;
}

/* slots/.stage and slots/.old left by an install a crash stopped; and the slots directory. */
static int slots_prepare(const char *state_dir, char *why, size_t cap)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/slots", state_dir);
	if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
		goto fail;
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		goto fail;
	snprintf(path, sizeof(path), "%s/slots/.stage", state_dir);
	if (rm_tree(path) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/slots/.old", state_dir);
	if (rm_tree(path) != 0)
		goto fail;
	return 0;
fail:
	gd_whyf(why, cap, "cannot prepare %s: %s", path, strerror(errno));
	return GD_EIO;
}

/*
 * Puts the filled staging directory in place as slot 'slot': synced, the old one moved aside, the
 * rename, the slots directory synced. What was there before is gone only after (slots/.old).
 */
static int stage_commit(const char *state_dir, const char *slot, char *why, size_t cap)
{
	char stage[PATH_MAX], dst[PATH_MAX], old[PATH_MAX], slots[PATH_MAX];

	snprintf(stage, sizeof(stage), "%s/slots/.stage", state_dir);
	snprintf(dst, sizeof(dst), "%s/slots/%s", state_dir, slot);
	snprintf(old, sizeof(old), "%s/slots/.old", state_dir);
	snprintf(slots, sizeof(slots), "%s/slots", state_dir);
	if (sync_tree(stage) != 0) {
		gd_whyf(why, cap, "cannot sync %s: %s", stage, strerror(errno));
		return GD_EIO;
	}
	crash_point("synced");
	if (rename(dst, old) != 0 && errno != ENOENT) {
		gd_whyf(why, cap, "cannot move %s aside: %s", dst, strerror(errno));
		return GD_EIO;
	}
	crash_point("old-moved");
	if (rename(stage, dst) != 0 || fsync_path(slots) != 0) {
		gd_whyf(why, cap, "cannot rename %s to %s: %s", stage, dst, strerror(errno));
		return GD_EIO;
	}
	crash_point("renamed");
	return 0;
}

/* ---- the commands ---------------------------------------------------------------------------- */

static struct gd_config *load_config(const char *file)
{
	struct gd_config *cfg = NULL;
	struct conf c;

	conf_init(&c, file);
	if (gd_config_load(file, &c, &cfg) != 0) {
		conf_print_errors(&c, stderr);
		fprintf(stderr, "%s: %zu error%s\n", file, c.nerrors, c.nerrors == 1 ? "" : "s");
	}
	conf_release(&c);
	return cfg;
}

/*
 * Where 'path' (as the config resolved it) goes in a slot: its path relative to the config's
 * directory. NULL for what is not part of a slot: absolute paths elsewhere, and the state
 * directory's own files. 'bad' is set for a relative path that climbs out of the directory.
 */
static const char *slot_relative(const struct gd_config *cfg, const char *path, bool *bad)
{
	size_t dlen = strlen(cfg->dir), slen = strlen(cfg->state_dir);
	const char *rel;

	*bad = false;
	if (strncmp(path, cfg->state_dir, slen) == 0 && path[slen] == '/')
		return NULL;
	if (strcmp(cfg->dir, ".") == 0)
		rel = path[0] == '/' ? NULL : path;
	else if (strncmp(path, cfg->dir, dlen) == 0 && path[dlen] == '/')
		rel = path + dlen + 1;
	else
		rel = NULL;
	if (rel != NULL && (strncmp(rel, "../", 3) == 0 || strstr(rel, "/../") != NULL))
		*bad = true;
	return rel;
}

/* The raw "state_dir" and "uplink.spool.dir" of the config must be absolute: a slot's copy of a
 * relative one would name a directory inside the slot. */
static bool state_paths_absolute(const char *file, char *why, size_t cap)
{
	char *text = gd_read_file(file);
	cJSON *root = text != NULL ? cJSON_Parse(text) : NULL;
	const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "state_dir");
	const cJSON *up = cJSON_GetObjectItemCaseSensitive(root, "uplink");
	const cJSON *spool = cJSON_GetObjectItemCaseSensitive(up, "spool");
	const cJSON *dir = cJSON_GetObjectItemCaseSensitive(spool, "dir");
	bool ok = true;

	if (cJSON_IsString(sd) && sd->valuestring[0] != '/') {
		gd_whyf(why, cap,
			"%s: state_dir: \"%s\" is relative (expected an absolute path: in a slot "
			"it would name a directory inside the slot)",
			file, sd->valuestring);
		ok = false;
	} else if (cJSON_IsString(dir) && dir->valuestring[0] != '/') {
		gd_whyf(why, cap,
			"%s: uplink.spool.dir: \"%s\" is relative (expected an absolute path: in "
			"a slot it would name a directory inside the slot)",
			file, dir->valuestring);
		ok = false;
	}
	cJSON_Delete(root);
	free(text);
	return ok;
}

static int cmd_init(const char *file)
{
	struct gd_config *cfg = load_config(file);
	const char *named[4 + MAX_KEYS];
	char why[1024] = "", path[PATH_MAX], stage[PATH_MAX], dst[PATH_MAX];
	struct update_state st = { .good = "a" };
	size_t nnamed = 0;
	struct stat sb;
	int rc = 1;

	if (cfg == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/current", cfg->state_dir);
	if (lstat(path, &sb) == 0) {
		fprintf(stderr,
			"guardian update init: %s exists: this state directory has slots already "
			"(guardian update status -s %s)\n",
			path, cfg->state_dir);
		goto out;
	}
	if (!state_paths_absolute(file, why, sizeof(why))) {
		fprintf(stderr, "guardian update init: %s\n", why);
		goto out;
	}
	if (slots_prepare(cfg->state_dir, why, sizeof(why)) != 0)
		goto fail;
	snprintf(stage, sizeof(stage), "%s/slots/.stage", cfg->state_dir);
	if (mkdir(stage, 0700) != 0) {
		gd_whyf(why, sizeof(why), "cannot make %s: %s", stage, strerror(errno));
		goto fail;
	}
	/* The program that runs this command, and the config as "site.json". */
	join(dst, sizeof(dst), stage, "guardian");
	if (copy_file("/proc/self/exe", dst, 0700) != 0) {
		gd_whyf(why, sizeof(why), "cannot copy /proc/self/exe to %s: %s", dst,
			strerror(errno));
		goto fail;
	}
	join(dst, sizeof(dst), stage, "site.json");
	if (copy_file(file, dst, 0600) != 0) {
		gd_whyf(why, sizeof(why), "cannot copy %s to %s: %s", file, dst, strerror(errno));
		goto fail;
	}
	/* Every file the config names by a relative path, where the slot's copy will look. */
	named[nnamed++] = cfg->policy_file;
	named[nnamed++] = cfg->uplink.ca_file;
	if (!cfg->uplink.attested) {
		named[nnamed++] = cfg->uplink.cert_file;
		named[nnamed++] = cfg->uplink.key_file;
	}
	if (cfg->attest.enabled) {
		named[nnamed++] = cfg->attest.ca_file;
		named[nnamed++] = cfg->attest.cert_file;
	}
	for (size_t i = 0; i < cfg->update.nkeys && nnamed < sizeof(named) / sizeof(*named); i++)
		named[nnamed++] = cfg->update.keys[i];
	for (size_t i = 0; i < nnamed; i++) {
		const char *rel;
		bool bad;

		if (named[i] == NULL || (rel = slot_relative(cfg, named[i], &bad)) == NULL)
			continue;
		if (bad) {
			gd_whyf(why, sizeof(why),
				"%s names %s, outside its directory: a slot holds what the config "
				"names beside or below it (name it by an absolute path)",
				file, named[i]);
			goto fail;
		}
		join(dst, sizeof(dst), stage, rel);
		if (access(dst, F_OK) == 0)
			continue;
		if (mkdir_parents(dst) != 0 || copy_file(named[i], dst, 0600) != 0) {
			gd_whyf(why, sizeof(why), "cannot copy %s to %s: %s", named[i], dst,
				strerror(errno));
			goto fail;
		}
	}
	if (stage_commit(cfg->state_dir, "a", why, sizeof(why)) != 0 ||
	    update_state_write(cfg->state_dir, &st, why, sizeof(why)) != 0 ||
	    update_switch(cfg->state_dir, "a", why, sizeof(why)) != 0)
		goto fail;
	printf("slot a made from this program and %s; %s/current -> slots/a; floor 0\n", file,
	       cfg->state_dir);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "guardian update init: %s\n", why);
	snprintf(stage, sizeof(stage), "%s/slots/.stage", cfg->state_dir);
	rm_tree(stage);
out:
	gd_config_free(cfg);
	return rc;
}

/* The config that holds the trust: -c FILE, or the current slot's. */
static struct gd_config *install_config(const char *file, const char *state_dir)
{
	char path[PATH_MAX];

	if (file != NULL)
		return load_config(file);
	snprintf(path, sizeof(path), "%s/current/site.json", state_dir);
	return load_config(path);
}

enum update_outcome update_install(const struct gd_config *cfg, const char *sd, const char *bundle,
				   struct update_install_result *res)
{
	char *pems[MAX_KEYS] = { 0 };
	char stage[PATH_MAX], from[PATH_MAX];
	char cur[2], next[2];
	struct bundle_manifest *m = calloc(1, sizeof(*m));
	struct update_state st;
	char *why = res->why;
	size_t cap = sizeof(res->why);
	enum bundle_refusal r;
	enum update_outcome out = UPDATE_FAILED;

	*res = (struct update_install_result){ .refusal = BUNDLE_OK };
	if (m == NULL) {
		gd_whyf(why, cap, "out of memory");
		return UPDATE_FAILED;
	}
	if (!cfg->update.enabled) {
		gd_whyf(why, cap,
			"%s has no \"update\" section: no update key is trusted, so no bundle can "
			"be",
			cfg->file);
		goto out;
	}
	if (update_state_read(sd, &st, why, cap) != 0 || update_current(sd, cur, why, cap) != 0)
		goto out;
	if (st.trial) {
		gd_whyf(why, cap,
			"version %llu is on trial in slot %s (start %d of %d): it must pass its "
			"health gate or be rolled back before another install",
			(unsigned long long)st.trial_version, st.trial_slot, st.attempts,
			st.max_attempts);
		out = UPDATE_BUSY;
		goto out;
	}
	for (size_t i = 0; i < cfg->update.nkeys; i++) {
		pems[i] = gd_read_file(cfg->update.keys[i]);
		if (pems[i] == NULL) {
			gd_whyf(why, cap, "cannot read %s: %s", cfg->update.keys[i],
				strerror(errno));
			goto out;
		}
	}
	snprintf(next, sizeof(next), "%s", strcmp(cur, "a") == 0 ? "b" : "a");
	if (slots_prepare(sd, why, cap) != 0)
		goto out;
	snprintf(stage, sizeof(stage), "%s/slots/.stage", sd);
	if (mkdir(stage, 0700) != 0) {
		gd_whyf(why, cap, "cannot make %s: %s", stage, strerror(errno));
		goto out;
	}
	crash_point("staging");
	r = bundle_verify_extract(
		bundle,
		&(struct bundle_trust){ .key_pems = (const char *const *)pems,
					.nkeys = cfg->update.nkeys,
					.threshold = (size_t)cfg->update.threshold,
					.device_class = cfg->update.device_class,
					.floor = st.floor > st.good_version ? st.floor
									    : st.good_version,
					.now_ms = gd_now_ms() },
		stage, m, why, cap);
	res->version = m->version;
	if (r != BUNDLE_OK) {
		res->refusal = r;
		memcpy(res->slot, cur, 2);
		rm_tree(stage);
		out = UPDATE_REFUSED;
		goto out;
	}
	crash_point("extracted");
	snprintf(from, sizeof(from), "%s/slots/%s", sd, cur);
	why[0] = '\0';
	if (copy_tree(from, stage, why, cap) != 0) {
		char copy[sizeof(res->why)];

		snprintf(copy, sizeof(copy), "%s", why);
		gd_whyf(why, cap, "cannot copy from the current slot: %s", copy);
		goto fail_stage;
	}
	crash_point("copied");
	if (!slot_runnable(stage, why, cap))
		goto fail_stage;
	if (stage_commit(sd, next, why, cap) != 0)
		goto fail_stage;
	st.trial = true;
	memcpy(st.trial_slot, next, 2);
	st.trial_version = m->version;
	memcpy(st.previous, cur, 2);
	st.attempts = 0;
	st.max_attempts = cfg->update.trial_attempts;
	/* The state first: a trial whose switch did not happen is void (update_prestart). */
	if (update_state_write(sd, &st, why, cap) != 0)
		goto out;
	crash_point("state-written");
	if (update_switch(sd, next, why, cap) != 0)
		goto out;
	crash_point("switched");
	snprintf(from, sizeof(from), "%s/slots/.old", sd);
	rm_tree(from);
	crash_point("cleaned");
	memcpy(res->slot, next, 2);
	memcpy(res->previous, cur, 2);
	res->nfiles = m->nfiles;
	res->max_attempts = st.max_attempts;
	out = UPDATE_INSTALLED;
	goto out;
fail_stage:
	rm_tree(stage);
out:
	for (size_t i = 0; i < MAX_KEYS; i++)
		free(pems[i]);
	free(m);
	return out;
}

static int cmd_install(const char *bundle, const char *file, const char *state_dir_arg)
{
	struct gd_config *cfg = install_config(file, state_dir_arg);
	struct update_install_result *res = calloc(1, sizeof(*res));
	const char *sd;
	int rc = 1;

	if (cfg == NULL || res == NULL)
		goto out;
	sd = state_dir_arg != NULL ? state_dir_arg : cfg->state_dir;
	switch (update_install(cfg, sd, bundle, res)) {
	case UPDATE_INSTALLED:
		printf("installed version %llu (%zu file%s from the bundle) into slot %s; "
		       "%s/current -> slots/%s; on trial: %d start%s to pass the health gate, else "
		       "back to slots/%s; restart guardian to run it\n",
		       (unsigned long long)res->version, res->nfiles, res->nfiles == 1 ? "" : "s",
		       res->slot, sd, res->slot, res->max_attempts,
		       res->max_attempts == 1 ? "" : "s", res->previous);
		rc = 0;
		break;
	case UPDATE_REFUSED:
		fprintf(stderr, "guardian update install: %s: refused (%s): %s\n", bundle,
			bundle_refusal_names[res->refusal], res->why);
		fprintf(stderr, "nothing changed: %s/current -> slots/%s\n", sd, res->slot);
		break;
	default:
		if (!cfg->update.enabled)
			fprintf(stderr, "guardian update install: %s\n", res->why);
		else
			fprintf(stderr, "guardian update install: %s: %s\n", bundle, res->why);
		break;
	}
out:
	free(res);
	gd_config_free(cfg);
	return rc;
}

/* Whether the config 'cfg' was loaded from is in slots/<slot> of its state directory. */
static bool config_in_slot(const struct gd_config *cfg, const char *slot)
{
	char dir[PATH_MAX], real_slot[PATH_MAX], real_cfg[PATH_MAX];
	char *end;

	snprintf(dir, sizeof(dir), "%s/slots/%s", cfg->state_dir, slot);
	if (realpath(dir, real_slot) == NULL || realpath(cfg->file, real_cfg) == NULL)
		return false;
	end = strrchr(real_cfg, '/');
	if (end == NULL)
		return false;
	*end = '\0';
	return strcmp(real_cfg, real_slot) == 0;
}

void update_swversion(const struct gd_config *cfg, char *out, size_t cap)
{
	struct update_state st;
	char why[1024];
	uint64_t v = 0;

	snprintf(out, cap, "%s", GD_VERSION);
	if (update_state_read(cfg->state_dir, &st, why, sizeof(why)) != 0)
		return;
	/* A guardian run from a config elsewhere is not what the slots hold. */
	if (st.trial && config_in_slot(cfg, st.trial_slot))
		v = st.trial_version;
	else if (config_in_slot(cfg, st.good))
		v = st.good_version;
	if (v > 0)
		snprintf(out, cap, "%s+u%llu", GD_VERSION, (unsigned long long)v);
}

static int cmd_status(const char *state_dir, bool json)
{
	struct update_state st;
	char why[1024], path[PATH_MAX], cur[2] = "", buf[8192];
	char *rollback;
	cJSON *rb;
	struct jw w;

	if (update_state_read(state_dir, &st, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian update status: %s\n", why);
		return 1;
	}
	if (update_current(state_dir, cur, why, sizeof(why)) != 0)
		fprintf(stderr, "guardian update status: %s\n", why);
	snprintf(path, sizeof(path), "%s/rollback.json", state_dir);
	rollback = gd_read_file(path);
	if (rollback == NULL) {
		/* The running program renames it once its failure report is on disk. */
		snprintf(path, sizeof(path), "%s/rollback.reported.json", state_dir);
		rollback = gd_read_file(path);
	}
	rb = rollback != NULL ? cJSON_Parse(rollback) : NULL;
	if (!json) {
		printf("current: slots/%s\n", cur[0] ? cur : "?");
		printf("good: slots/%s, version %llu\n", st.good,
		       (unsigned long long)st.good_version);
		printf("floor: %llu (a bundle's version must be above it)\n",
		       (unsigned long long)st.floor);
		if (st.trial)
			printf("trial: version %llu in slots/%s, start %d of %d; rollback to "
			       "slots/%s\n",
			       (unsigned long long)st.trial_version, st.trial_slot, st.attempts,
			       st.max_attempts, st.previous);
		else
			printf("trial: none\n");
		if (cJSON_IsObject(rb))
			printf("last rollback: %s\n",
			       cJSON_IsString(cJSON_GetObjectItem(rb, "reason"))
				       ? cJSON_GetObjectItem(rb, "reason")->valuestring
				       : "(no reason)");
	} else {
		char *state = NULL;

		snprintf(path, sizeof(path), "%s/update.json", state_dir);
		state = gd_read_file(path);
		jw_init(&w, buf, sizeof(buf));
		jw_object(&w);
		jw_key(&w, "current");
		jw_string(&w, cur[0] ? cur : NULL);
		jw_key(&w, "state");
		if (state != NULL)
			jw_raw(&w, state, strcspn(state, "\n"));
		else
			jw_null(&w);
		jw_key(&w, "rollback");
		if (cJSON_IsObject(rb))
			jw_raw(&w, rollback, strlen(rollback) - strspn(rollback, "\n"));
		else
			jw_null(&w);
		jw_end(&w);
		if (jw_finish(&w) > 0)
			printf("%s\n", buf);
		free(state);
	}
	cJSON_Delete(rb);
	free(rollback);
	return 0;
}

/* rollback.json: what the failure report sends. */
static int write_rollback(const char *state_dir, const struct update_state *st, char *doc,
			  size_t cap, char *why, size_t why_cap)
{
	char path[PATH_MAX], reason[512], *last;
	cJSON *exit_doc;
	struct jw w;
	size_t n;

	snprintf(reason, sizeof(reason),
		 "version %llu in slot %s did not pass its health gate in %d start%s: rolled "
		 "back to slot %s (version %llu)",
		 (unsigned long long)st->trial_version, st->trial_slot, st->max_attempts,
		 st->max_attempts == 1 ? "" : "s", st->previous,
		 (unsigned long long)st->good_version);
	snprintf(path, sizeof(path), "%s/last-exit", state_dir);
	last = gd_read_file(path);
	exit_doc = last != NULL ? cJSON_Parse(last) : NULL;
	jw_init(&w, doc, cap);
	jw_object(&w);
	jw_key(&w, "type");
	jw_string(&w, "rollback");
	jw_key(&w, "ts");
	jw_int(&w, gd_now_ms());
	jw_key(&w, "version");
	jw_uint(&w, st->trial_version);
	jw_key(&w, "slot");
	jw_string(&w, st->trial_slot);
	jw_key(&w, "rolled_back_to");
	jw_string(&w, st->previous);
	jw_key(&w, "good_version");
	jw_uint(&w, st->good_version);
	jw_key(&w, "starts");
	jw_int(&w, st->max_attempts);
	jw_key(&w, "reason");
	jw_string(&w, reason);
	/* How the last start ended, as the supervisor saw it. */
	jw_key(&w, "last_exit");
	if (cJSON_IsObject(exit_doc)) {
		char *flat = cJSON_PrintUnformatted(exit_doc);

		if (flat != NULL)
			jw_raw(&w, flat, strlen(flat));
		else
			jw_null(&w);
		free(flat);
	} else {
		jw_null(&w);
	}
	jw_end(&w);
	n = jw_finish(&w);
	cJSON_Delete(exit_doc);
	free(last);
	snprintf(path, sizeof(path), "%s/rollback.json", state_dir);
	if (n == 0 || n + 1 >= cap) {
		gd_whyf(why, why_cap, "cannot write %s: the document does not fit", path);
		return GD_EIO;
	}
	doc[n] = '\n';
	if (gd_write_file_atomic(path, doc, n + 1, 0600) != 0) {
		gd_whyf(why, why_cap, "cannot write %s: %s", path, strerror(errno));
		return GD_EIO;
	}
	doc[n] = '\0';
	return 0;
}

int update_prestart(const char *state_dir, FILE *out, char *why, size_t cap)
{
	struct update_state st;
	char cur[2], doc[4096];
	int rc;

	rc = update_state_read(state_dir, &st, why, cap);
	if (rc == GD_EIO && errno == ENOENT) {
		fprintf(out, "guardian update prestart: no update state in %s: nothing to do\n",
			state_dir);
		return 0;
	}
	if (rc != 0 || !st.trial)
		return rc;
	rc = update_current(state_dir, cur, why, cap);
	if (rc != 0)
		return rc;
	if (strcmp(cur, st.trial_slot) != 0) {
		/* The install stopped before its switch: what runs is what ran. */
		fprintf(out,
			"guardian update prestart: the install of version %llu stopped before "
			"current named slot %s: no trial; slot %s runs\n",
			(unsigned long long)st.trial_version, st.trial_slot, cur);
		st.trial = false;
		return update_state_write(state_dir, &st, why, cap);
	}
	st.attempts++;
	if (st.attempts <= st.max_attempts) {
		rc = update_state_write(state_dir, &st, why, cap);
		if (rc == 0)
			fprintf(out,
				"guardian update prestart: version %llu in slot %s on trial: start "
				"%d of %d\n",
				(unsigned long long)st.trial_version, st.trial_slot, st.attempts,
				st.max_attempts);
		crash_point("prestart-counted");
		return rc;
	}
	/* The report first, then the switch, then the state: a crash between them repeats the
	 * rollback, or finds a void trial. */
	if ((rc = write_rollback(state_dir, &st, doc, sizeof(doc), why, cap)) != 0)
		return rc;
	crash_point("rollback-reported");
	if ((rc = update_switch(state_dir, st.previous, why, cap)) != 0)
		return rc;
	crash_point("rollback-switched");
	st.trial = false;
	if ((rc = update_state_write(state_dir, &st, why, cap)) != 0)
		return rc;
	fprintf(out, "guardian update prestart: rolled back: %s\n", doc);
	return 0;
}

static void update_usage(FILE *out)
{
	fprintf(out,
		"usage: guardian update init -c FILE\n"
		"                                make slot a from this program and the config,\n"
		"                                current -> slots/a\n"
		"       guardian update install BUNDLE (-c FILE | -s STATE_DIR)\n"
		"                                verify a signed bundle, stage it into the other\n"
		"                                slot and switch to it, on trial\n"
		"       guardian update status (-c FILE | -s STATE_DIR) [--json]\n"
		"       guardian update prestart -s STATE_DIR\n"
		"                                before every start (the supervisor): count a\n"
		"                                trial's start, roll back past its attempts\n");
}

int update_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *verb, *file = NULL, *state_dir = NULL, *bundle = NULL;
	struct gd_config *cfg;
	bool json = false;
	char why[1024];
	int ch, rc;

	if (argc < 2) {
		update_usage(stderr);
		return 2;
	}
	verb = argv[1];
	if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "help") == 0) {
		update_usage(stdout);
		return 0;
	}
	optind = 2;
	opterr = 0; /* said below, as "guardian update", not as argv[0] */
	while ((ch = getopt_long(argc, argv, ":c:s:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			update_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "guardian update %s: %s needs a value\n", verb,
				argv[optind - 1]);
			update_usage(stderr);
			return 2;
		default:
			fprintf(stderr, "guardian update %s: unknown option \"%s\"\n", verb,
				argv[optind - 1]);
			update_usage(stderr);
			return 2;
		}
	}
	if (strcmp(verb, "install") == 0) {
		if (optind + 1 != argc) {
			fprintf(stderr, "guardian update install: expected one BUNDLE\n");
			return 2;
		}
		bundle = argv[optind];
	} else if (optind != argc) {
		fprintf(stderr, "guardian update %s: unexpected \"%s\"\n", verb, argv[optind]);
		return 2;
	}
	if ((file == NULL) == (state_dir == NULL) && strcmp(verb, "init") != 0) {
		fprintf(stderr, "guardian update %s: expected -c FILE or -s STATE_DIR\n", verb);
		return 2;
	}
	if (strcmp(verb, "init") == 0) {
		if (file == NULL || state_dir != NULL) {
			fprintf(stderr, "guardian update init: expected -c FILE\n");
			return 2;
		}
		return cmd_init(file);
	}
	if (strcmp(verb, "install") == 0)
		return cmd_install(bundle, file, state_dir);
	if (strcmp(verb, "prestart") == 0) {
		if (state_dir == NULL) {
			fprintf(stderr, "guardian update prestart: expected -s STATE_DIR\n");
			return 2;
		}
		rc = update_prestart(state_dir, stdout, why, sizeof(why));
		if (rc != 0)
			fprintf(stderr, "guardian update prestart: %s\n", why);
		return rc == 0 ? 0 : 1;
	}
	if (strcmp(verb, "status") == 0) {
		if (state_dir != NULL)
			return cmd_status(state_dir, json);
		cfg = load_config(file);
		if (cfg == NULL)
			return 1;
		rc = cmd_status(cfg->state_dir, json);
		gd_config_free(cfg);
		return rc;
	}
	fprintf(stderr, "guardian update: unknown command \"%s\"\n", verb);
	update_usage(stderr);
	return 2;
}
