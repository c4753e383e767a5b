/* store_files.c: the files backend of the store (store.h): the service directory as it was before
 * the store, its formats unchanged, so that directories made before keep working.
 *
 *   devices/<name>.crt            the identity certificate (PEM)
 *   devices/<name>.ak.pem         the TPM attestation key, if enrolled with one
 *   devices/<name>.installed.json what the device last said it runs
 *   devices/<name>.release.json   what `release publish` last delivered to it (written
 *                                 atomically: {"version","sha256","ts","withdrawn"})
 *   nonces/<hex>                  a used nonce: made O_CREAT|O_EXCL, holding the delivery's tag
 *   references/<label>.json       a reference; the generation is the mtime (ns) of references/
 *   certs/<dev>.list, revoked.log the issued and the revoked certificates, under the flock of
 *                                 certs.lock (formats below)
 *   reports/<dev>.json            the report document, updated under the flock of
 *                                 reports/reports.lock
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "store_impl.h"

#define FILES_SUBSYS "store"
#define PATH_CAP     4400

/*
 * certs/<dev>.list: the device's unexpired certificates, one a line:
 *   "<serial hex> <not_after UTC s> <revoked at UTC s, 0 if not>"; rewritten atomically.
 * revoked.log: every revocation not yet expired, appended one a line:
 *   "<serial hex> <not_after> <revoked at> <superseded|refused> <dev>"; compacted when read.
 * A certificate is kept SKEW_S past its notAfter, for a broker whose clock is behind (the
 * service's SERVICE_SKEW_S).
 */
#define CERTS_LOCK   "certs.lock"
#define REVOKED_LOG  "revoked.log"
#define REVOKE_LINE  160
#define SKEW_S	     60
#define REPORTS_LOCK "reports.lock"

/* The revocation reason's word in revoked.log. */
static const char *reason_word(enum store_revoke_reason r)
{
	return r == STORE_REVOKE_SUPERSEDED ? "superseded" : "refused";
}

static bool expired(int64_t not_after_s, int64_t now_s)
{
	return not_after_s + SKEW_S < now_s;
}

/* "<dir>/<sub>/<name><suffix>" into 'buf' (PATH_CAP); false, with 'why', for a name that is not
 * one (it would name another file) or a path too long. */
static bool name_path(struct store *st, char *buf, const char *sub, const char *name,
		      const char *suffix, char *why, size_t cap)
{
	int n;

	if (name == NULL || !conf_valid_name(name) || name[0] == '.') {
		gd_whyf(why, cap,
			"store files: \"%s\" is not a name (1 to 63 of A-Z a-z 0-9 _ . -)",
			name == NULL ? "" : name);
		return false;
	}
	n = snprintf(buf, PATH_CAP, "%s/%s/%s%s", st->dir, sub, name, suffix);
	if (n < 0 || n >= PATH_CAP) {
		gd_whyf(why, cap, "store files: %s: path too long", st->dir);
		return false;
	}
	return true;
}

/* mkdir <dir>/<sub> unless it is there. 0 or GD_EIO with 'why'. */
static int make_sub(struct store *st, const char *sub, char *why, size_t cap)
{
	char path[PATH_CAP];

	snprintf(path, sizeof(path), "%s/%s", st->dir, sub);
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		gd_whyf(why, cap, "store files: %s: cannot create: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

/* name_path of a file to write, and its <dir>/<sub> made. 0, GD_EINVAL or GD_EIO with 'why'. */
static int write_path(struct store *st, char *buf, const char *sub, const char *name,
		      const char *suffix, char *why, size_t cap)
{
	if (!name_path(st, buf, sub, name, suffix, why, cap))
		return GD_EINVAL;
	return make_sub(st, sub, why, cap);
}

/* After reading 'path' failed with errno: 'missing' when it does not exist, else GD_EIO with
 * 'why'. */
static int read_failed(const char *path, int missing, char *why, size_t cap)
{
	if (errno == ENOENT)
		return missing;
	gd_whyf(why, cap, "store files: %s: cannot read: %s", path, strerror(errno));
	return GD_EIO;
}

/* Reads 'path' into *out (malloc'd). 0, STORE_NOTFOUND, or GD_EIO with 'why'. */
static int read_text(const char *path, char **out, char *why, size_t cap)
{
	*out = gd_read_file(path);
	if (*out != NULL)
		return 0;
	return read_failed(path, STORE_NOTFOUND, why, cap);
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The names of <dir>/<sub>/<name><suffix>, sorted (a missing directory has none). Hidden files
 * and names that are not names are left out. 0 or a gd_err with 'why'.
 */
static int list_names(struct store *st, const char *sub, const char *suffix, char ***out,
		      size_t *count, char *why, size_t cap)
{
	char path[PATH_CAP];
	size_t slen = strlen(suffix), n = 0, room = 0;
	char **names = NULL;
	struct dirent *e;
	DIR *d;
	int rc = 0;

	*out = NULL;
	*count = 0;
	snprintf(path, sizeof(path), "%s/%s", st->dir, sub);
	d = opendir(path);
	if (d == NULL)
		return read_failed(path, 0, why, cap);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		char *name, **more;

		if (len <= slen || e->d_name[0] == '.' ||
		    strcmp(e->d_name + len - slen, suffix) != 0)
			continue;
		name = strndup(e->d_name, len - slen);
		if (name == NULL) {
			rc = GD_ENOMEM;
			break;
		}
		if (!conf_valid_name(name)) {
			free(name);
			continue;
		}
		more = store_grow(names, n, &room, 16, sizeof(*names));
		if (more == NULL) {
			free(name);
			rc = GD_ENOMEM;
			break;
		}
		names = more;
		names[n++] = name;
	}
	closedir(d);
	if (rc != 0) {
		store_strings_free(names, n);
		gd_whyf(why, cap, "out of memory");
		return rc;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), names_cmp);
	*out = names;
	*count = n;
	return 0;
}

/* Takes the exclusive flock of 'path' (created): an fd to close, or -1 with 'why'. */
static int lock_take(const char *path, char *why, size_t cap)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0 || flock(fd, LOCK_EX) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot lock: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Takes certs.lock, held while certs/ and revoked.log are read or changed: as lock_take. */
static int certs_lock(struct store *st, char *why, size_t cap)
{
	char path[PATH_CAP];

	snprintf(path, sizeof(path), "%s/%s", st->dir, CERTS_LOCK);
	return lock_take(path, why, cap);
}

/* ---- open, close, schema ------------------------------------------------------------------ */

static int files_open(struct store *st, const struct store_config *cfg, bool create, char *why,
		      size_t cap)
{
	static const char *const subs[] = { "devices", "references", "nonces", "certs" };
	struct stat sb;

	(void)cfg;
	if (stat(st->dir, &sb) != 0) {
		gd_whyf(why, cap, "store files: %s: %s", st->dir, strerror(errno));
		return GD_EIO;
	}
	if (!S_ISDIR(sb.st_mode)) {
		gd_whyf(why, cap, "store files: %s: not a directory", st->dir);
		return GD_EIO;
	}
	for (size_t i = 0; create && i < sizeof(subs) / sizeof(subs[0]); i++) {
		int rc = make_sub(st, subs[i], why, cap);

		if (rc != 0)
			return rc;
	}
	st->impl = NULL;
	return 0;
}

static void files_close(struct store *st)
{
	(void)st;
}

static int files_schema_version(struct store *st, int *version, char *why, size_t cap)
{
	(void)st;
	(void)why;
	(void)cap;
	*version = STORE_SCHEMA_VERSION; /* the directory's formats are this build's */
	return 0;
}

/* ---- devices -------------------------------------------------------------------------------- */

static int files_device_get(struct store *st, const char *name, char **cert_pem, char **ak_pem,
			    char *why, size_t cap)
{
	char path[PATH_CAP], *cert = NULL, *ak = NULL;
	int rc;

	if (cert_pem != NULL)
		*cert_pem = NULL;
	if (ak_pem != NULL)
		*ak_pem = NULL;
	if (!name_path(st, path, "devices", name, ".crt", why, cap))
		return GD_EINVAL;
	rc = read_text(path, &cert, why, cap);
	if (rc != 0)
		return rc;
	if (ak_pem != NULL) {
		name_path(st, path, "devices", name, ".ak.pem", why, cap);
		rc = read_text(path, &ak, why, cap);
		if (rc < 0) {
			free(cert);
			return rc;
		}
	}
	if (cert_pem != NULL)
		*cert_pem = cert;
	else
		free(cert);
	if (ak_pem != NULL)
		*ak_pem = ak;
	return 0;
}

static int files_device_put(struct store *st, const char *name, const char *cert_pem,
			    const char *ak_pem, char *why, size_t cap)
{
	char path[PATH_CAP];
	int rc;

	rc = write_path(st, path, "devices", name, ".ak.pem", why, cap);
	if (rc != 0)
		return rc;
	/* The key first: a failure after it leaves the device stricter, never laxer. */
	if (ak_pem != NULL && gd_write_file_atomic(path, ak_pem, strlen(ak_pem), 0644) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		return GD_EIO;
	}
	name_path(st, path, "devices", name, ".crt", why, cap);
	if (gd_write_file_atomic(path, cert_pem, strlen(cert_pem), 0644) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

static int files_device_list(struct store *st, char ***names, size_t *n, char *why, size_t cap)
{
	return list_names(st, "devices", ".crt", names, n, why, cap);
}

static int files_installed_put(struct store *st, const char *name, const char *json, char *why,
			       size_t cap)
{
	char path[PATH_CAP];

	if (!name_path(st, path, "devices", name, ".installed.json", why, cap))
		return GD_EINVAL;
	/* On the answer's path, and said again at the device's next round: not synced (two fsyncs
	 * were a quarter of a round); a lost or empty one reads as "never". */
	if (gd_write_file_replace(path, json, strlen(json), 0644) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

static int files_installed_get(struct store *st, const char *name, char **json, char *why,
			       size_t cap)
{
	char path[PATH_CAP];

	*json = NULL;
	if (!name_path(st, path, "devices", name, ".installed.json", why, cap))
		return GD_EINVAL;
	return read_text(path, json, why, cap);
}

/* ---- nonces --------------------------------------------------------------------------------- */

/* Creates the marker of a used nonce. 0, or -1 with errno (EEXIST: used before). */
static int mark_used(const char *path, const uint8_t tag[16])
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ssize_t w;

	if (fd < 0)
		return -1;
	w = write(fd, tag, 16);
	close(fd);
	if (w != 16) {
		errno = w < 0 ? errno : EIO;
		return -1;
	}
	return 0;
}

/* Whether the marker at 'path' holds 'tag'. */
static bool marker_holds(const char *path, const uint8_t tag[16])
{
	uint8_t held[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, held, sizeof(held));
	close(fd);
	return n == (ssize_t)sizeof(held) && memcmp(held, tag, sizeof(held)) == 0;
}

static int64_t nonce_ts(const uint8_t nonce[NONCE_LEN])
{
	uint64_t ts = 0;

	for (int i = 0; i < 8; i++)
		ts = ts << 8 | nonce[i];
	return (int64_t)ts;
}

static int files_nonce_consume(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
			       const uint8_t tag[16], bool *duplicate, char *why, size_t cap)
{
	char hex[2 * NONCE_LEN + 1], path[PATH_CAP];

	(void)ts_ms; /* the marker's name holds it: the nonce's first 8 bytes */
	*duplicate = false;
	gd_hex_encode(nonce, NONCE_LEN, hex);
	if (snprintf(path, sizeof(path), "%s/nonces/%s", st->dir, hex) >= (int)sizeof(path)) {
		gd_whyf(why, cap, "store files: %s: path too long", st->dir);
		return GD_EINVAL;
	}
	if (mark_used(path, tag) == 0)
		return 0;
	if (errno == ENOENT) { /* a directory from before nonces/ existed */
		char sub[PATH_CAP];

		snprintf(sub, sizeof(sub), "%s/nonces", st->dir);
		if ((mkdir(sub, 0700) == 0 || errno == EEXIST) && mark_used(path, tag) == 0)
			return 0;
	}
	if (errno != EEXIST) {
		gd_whyf(why, cap, "store files: %s: cannot mark the nonce used: %s", path,
			strerror(errno));
		return GD_EIO;
	}
	*duplicate = marker_holds(path, tag);
	return STORE_USED;
}

static int files_nonce_sweep(struct store *st, int64_t before_ms, char *why, size_t cap)
{
	char dir[PATH_CAP];
	struct dirent *e;
	DIR *d;
	int removed = 0;

	snprintf(dir, sizeof(dir), "%s/nonces", st->dir);
	d = opendir(dir);
	if (d == NULL)
		return read_failed(dir, 0, why, cap);
	while ((e = readdir(d)) != NULL) {
		uint8_t nonce[NONCE_LEN];

		if (strlen(e->d_name) != 2 * NONCE_LEN ||
		    !gd_hex_decode(e->d_name, nonce, NONCE_LEN, '\0'))
			continue;
		if (nonce_ts(nonce) >= before_ms)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* ---- references ----------------------------------------------------------------------------- */

/* The mtime of references/ in ns (0 if there is none). */
static uint64_t refs_mtime_ns(struct store *st)
{
	char path[PATH_CAP];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/references", st->dir);
	if (stat(path, &sb) != 0)
		return 0;
	return (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
}

/*
 * After a change of references/: its mtime moved on from 'before' for sure. The kernel's file
 * times tick coarsely (a jiffy), so two changes in one tick would leave the generation as it was.
 */
static void refs_bump(struct store *st, uint64_t before)
{
	char path[PATH_CAP];
	uint64_t next = before + 1;
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT } };

	if (refs_mtime_ns(st) > before)
		return;
	snprintf(path, sizeof(path), "%s/references", st->dir);
	times[1].tv_sec = (time_t)(next / 1000000000u);
	times[1].tv_nsec = (long)(next % 1000000000u);
	if (utimensat(AT_FDCWD, path, times, 0) != 0)
		log_warn(FILES_SUBSYS, "%s: cannot move its mtime on", path);
}

static int files_reference_put(struct store *st, const char *label, const char *json, char *why,
			       size_t cap)
{
	char path[PATH_CAP];
	uint64_t before;
	int rc;

	rc = write_path(st, path, "references", label, ".json", why, cap);
	if (rc != 0)
		return rc;
	before = refs_mtime_ns(st);
	if (gd_write_file_atomic(path, json, strlen(json), 0644) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		return GD_EIO;
	}
	refs_bump(st, before);
	return 0;
}

static int files_reference_remove(struct store *st, const char *label, char *why, size_t cap)
{
	char path[PATH_CAP];
	uint64_t before;

	if (!name_path(st, path, "references", label, ".json", why, cap))
		return GD_EINVAL;
	before = refs_mtime_ns(st);
	if (unlink(path) != 0) {
		if (errno == ENOENT)
			return STORE_NOTFOUND;
		gd_whyf(why, cap, "store files: %s: cannot remove: %s", path, strerror(errno));
		return GD_EIO;
	}
	refs_bump(st, before);
	return 0;
}

static int files_reference_all(struct store *st, char ***labels, char ***jsons, size_t *n,
			       char *why, size_t cap)
{
	char **names = NULL, **texts = NULL, path[PATH_CAP];
	size_t count = 0, kept = 0;
	int rc;

	*labels = NULL;
	*jsons = NULL;
	*n = 0;
	rc = list_names(st, "references", ".json", &names, &count, why, cap);
	if (rc != 0)
		return rc;
	if (count == 0)
		return 0;
	texts = calloc(count, sizeof(*texts));
	if (texts == NULL) {
		store_strings_free(names, count);
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	for (size_t i = 0; i < count; i++) {
		char *text = NULL;

		name_path(st, path, "references", names[i], ".json", why, cap);
		rc = read_text(path, &text, why, cap);
		if (rc == STORE_NOTFOUND) { /* removed since the listing */
			free(names[i]);
			continue;
		}
		if (rc != 0) {
			for (size_t j = i; j < count; j++)
				free(names[j]);
			store_strings_free(names, kept);
			store_strings_free(texts, kept);
			*labels = NULL;
			return rc;
		}
		names[kept] = names[i];
		texts[kept++] = text;
	}
	*labels = names;
	*jsons = texts;
	*n = kept;
	return 0;
}

static int files_reference_generation(struct store *st, uint64_t *gen, char *why, size_t cap)
{
	(void)why;
	(void)cap;
	*gen = refs_mtime_ns(st);
	return 0;
}

/* ---- issued certificates and revocation ----------------------------------------------------- */

struct issued {
	uint8_t serial[16];
	int64_t not_after_s, revoked_s;
};

static bool certs_path(struct store *st, const char *dev, char *path, char *why, size_t cap)
{
	return name_path(st, path, "certs", dev, ".list", why, cap);
}

/* Reads certs/<dev>.list into 'list' (at most STORE_MAX_PER_DEVICE). How many, or GD_EIO. */
static int certs_read(const char *path, struct issued *list, char *why, size_t cap)
{
	char *text, *save = NULL;
	int n = 0;

	text = gd_read_file(path);
	if (text == NULL)
		return read_failed(path, 0, why, cap);
	for (char *line = strtok_r(text, "\n", &save); line != NULL && n < STORE_MAX_PER_DEVICE;
	     line = strtok_r(NULL, "\n", &save)) {
		char hex[2 * 16 + 2];
		long long not_after, revoked;

		if (line[0] == '#')
			continue;
		if (sscanf(line, "%33s %lld %lld", hex, &not_after, &revoked) != 3 ||
		    !gd_hex_decode(hex, list[n].serial, 16, '\0')) {
			log_warnx(FILES_SUBSYS, "%s: a line that does not parse is skipped: %.60s",
				  path, line);
			continue;
		}
		list[n].not_after_s = not_after;
		list[n].revoked_s = revoked;
		n++;
	}
	free(text);
	return n;
}

/* Writes the unexpired entries of 'list' as certs/<dev>.list. 0 or GD_EIO with 'why'. */
static int certs_write(struct store *st, const char *dev, const char *path,
		       const struct issued *list, int n, int64_t now_s, char *why, size_t cap)
{
	char text[STORE_MAX_PER_DEVICE * 80 + 128], hex[2 * 16 + 1];
	size_t len;
	int rc = make_sub(st, "certs", why, cap);

	if (rc != 0)
		return rc;
	len = (size_t)snprintf(text, sizeof(text),
			       "# %s: serial not_after revoked_at (UTC s; 0: in force)\n", dev);
	for (int i = 0; i < n; i++) {
		if (expired(list[i].not_after_s, now_s))
			continue;
		gd_hex_encode(list[i].serial, 16, hex);
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"%s %" PRId64 " %" PRId64 "\n", hex, list[i].not_after_s,
					list[i].revoked_s);
	}
	if (gd_write_file_atomic(path, text, len, 0600) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

/* Appends 'len' bytes of lines to revoked.log, synced. 0 or GD_EIO with 'why'. */
static int log_append(struct store *st, const char *lines, size_t len, char *why, size_t cap)
{
	char path[PATH_CAP];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", st->dir, REVOKED_LOG);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		gd_whyf(why, cap, "store files: %s: cannot open: %s", path, strerror(errno));
		return GD_EIO;
	}
	if (write(fd, lines, len) != (ssize_t)len || fsync(fd) != 0)
		rc = GD_EIO;
	if (close(fd) != 0)
		rc = GD_EIO;
	if (rc != 0)
		gd_whyf(why, cap, "store files: %s: cannot append: %s", path, strerror(errno));
	return rc;
}

/*
 * With certs.lock held: revokes the unrevoked, unexpired entries of the device's list for
 * 'reason' at 'now_s' (logged first, then marked), and appends 'fresh' when not NULL; writes
 * the device's file. How many were revoked, or a gd_err with 'why'.
 */
static int revoke_locked(struct store *st, const char *dev, enum store_revoke_reason reason,
			 const struct issued *fresh, int64_t now_s, char *why, size_t cap)
{
	struct issued list[STORE_MAX_PER_DEVICE + 1];
	char lines[STORE_MAX_PER_DEVICE * REVOKE_LINE], hex[2 * 16 + 1], path[PATH_CAP];
	size_t len = 0;
	int n, revoked = 0, rc;

	if (!certs_path(st, dev, path, why, cap))
		return GD_EINVAL;
	n = certs_read(path, list, why, cap);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		if (list[i].revoked_s != 0 || expired(list[i].not_after_s, now_s))
			continue;
		list[i].revoked_s = now_s;
		gd_hex_encode(list[i].serial, 16, hex);
		len += (size_t)snprintf(lines + len, sizeof(lines) - len,
					"%s %" PRId64 " %" PRId64 " %s %s\n", hex,
					list[i].not_after_s, now_s, reason_word(reason), dev);
		revoked++;
	}
	/* Into the log before the device's file: a crash between them repeats a line, which the
	 * CRL lists once, rather than forgetting one. */
	if (len > 0) {
		rc = log_append(st, lines, len, why, cap);
		if (rc != 0)
			return rc;
	}
	if (fresh != NULL) {
		if (n == STORE_MAX_PER_DEVICE) /* the oldest goes; it was revoked above */
			memmove(list, list + 1, (size_t)(--n) * sizeof(list[0]));
		list[n++] = *fresh;
	}
	if (revoked > 0 || fresh != NULL) {
		rc = certs_write(st, dev, path, list, n, now_s, why, cap);
		if (rc != 0)
			return rc;
	}
	return revoked;
}

/* Runs revoke_locked under certs.lock. */
static int revoke_with_lock(struct store *st, const char *dev, enum store_revoke_reason reason,
			    const struct issued *fresh, int64_t now_s, char *why, size_t cap)
{
	int fd, rc;

	if (dev == NULL || !conf_valid_name(dev) || dev[0] == '.') {
		gd_whyf(why, cap, "store files: \"%s\" is not a device name",
			dev == NULL ? "" : dev);
		return GD_EINVAL;
	}
	fd = certs_lock(st, why, cap);
	if (fd < 0)
		return GD_EIO;
	rc = revoke_locked(st, dev, reason, fresh, now_s, why, cap);
	close(fd);
	return rc;
}

static int files_cert_issued(struct store *st, const char *dev, const uint8_t serial[16],
			     int64_t not_after_s, int64_t now_s, char *why, size_t cap)
{
	struct issued fresh = { .not_after_s = not_after_s };

	memcpy(fresh.serial, serial, 16);
	return revoke_with_lock(st, dev, STORE_REVOKE_SUPERSEDED, &fresh, now_s, why, cap);
}

static int files_cert_revoke_device(struct store *st, const char *dev,
				    enum store_revoke_reason reason, int64_t now_s, char *why,
				    size_t cap)
{
	return revoke_with_lock(st, dev, reason, NULL, now_s, why, cap);
}

static int by_serial(const void *a, const void *b)
{
	return memcmp(((const struct store_revoked *)a)->serial,
		      ((const struct store_revoked *)b)->serial, 16);
}

static int by_time(const void *a, const void *b)
{
	const struct store_revoked *x = a, *y = b;

	if (x->revoked_s != y->revoked_s)
		return x->revoked_s < y->revoked_s ? -1 : 1;
	return by_serial(a, b);
}

/*
 * With certs.lock held: reads revoked.log, the unexpired entries into *out (malloc'd, each
 * serial once, sorted by revocation time), and rewrites it without the others when there are
 * any. How many, or a gd_err with 'why'.
 */
static int log_load(struct store *st, int64_t now_s, struct store_revoked **out, char *why,
		    size_t cap)
{
	char path[PATH_CAP], *text, *save = NULL, *keep = NULL;
	size_t n = 0, room = 0, kept = 0, lines = 0;
	struct store_revoked *list = NULL;
	int rc = 0;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/%s", st->dir, REVOKED_LOG);
	text = gd_read_file(path);
	if (text == NULL)
		return read_failed(path, 0, why, cap);
	keep = malloc(strlen(text) + 1);
	if (keep == NULL) {
		rc = GD_ENOMEM;
		goto out;
	}
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char hex[2 * 16 + 2], word[16], dev[64];
		long long not_after, at;
		struct store_revoked e = { .reason = STORE_REVOKE_SUPERSEDED }, *bigger;

		lines++;
		if (sscanf(line, "%33s %lld %lld %15s %63s", hex, &not_after, &at, word, dev) < 4 ||
		    !gd_hex_decode(hex, e.serial, 16, '\0')) {
			log_warnx(FILES_SUBSYS, "%s: a line that does not parse is dropped: %.60s",
				  path, line);
			continue;
		}
		if (expired(not_after, now_s))
			continue;
		e.not_after_s = not_after;
		e.revoked_s = at;
		e.reason = strcmp(word, "superseded") == 0 ? STORE_REVOKE_SUPERSEDED
							   : STORE_REVOKE_REFUSED;
		/* A line from before the device was logged has none. */
		if (sscanf(line, "%*s %*s %*s %*s %63s", dev) == 1)
			snprintf(e.dev, sizeof(e.dev), "%s", dev);
		bigger = store_grow(list, n, &room, 64, sizeof(*list));
		if (bigger == NULL) {
			rc = GD_ENOMEM;
			goto out;
		}
		list = bigger;
		list[n++] = e;
		kept += (size_t)sprintf(keep + kept, "%s\n", line);
	}
	if (n != lines && gd_write_file_atomic(path, keep, kept, 0600) != 0)
		log_warn(FILES_SUBSYS, "%s: cannot drop the expired lines", path);
	/* A line repeated (a crash between the log and the device's file) is listed once. */
	if (n > 1) {
		size_t unique = 0;

		qsort(list, n, sizeof(*list), by_serial);
		for (size_t i = 0; i < n; i++)
			if (unique == 0 || by_serial(&list[unique - 1], &list[i]) != 0)
				list[unique++] = list[i];
		n = unique;
		qsort(list, n, sizeof(*list), by_time);
	}
	*out = list;
	list = NULL;
	rc = (int)n;
out:
	if (rc == GD_ENOMEM)
		gd_whyf(why, cap, "out of memory");
	free(list);
	free(keep);
	free(text);
	return rc;
}

static int files_cert_revoked(struct store *st, int64_t now_s, struct store_revoked **out,
			      size_t *n, char *why, size_t cap)
{
	int fd, rc;

	*out = NULL;
	*n = 0;
	fd = certs_lock(st, why, cap);
	if (fd < 0)
		return GD_EIO;
	rc = log_load(st, now_s, out, why, cap);
	close(fd);
	if (rc < 0)
		return rc;
	*n = (size_t)rc;
	return 0;
}

static int files_cert_list(struct store *st, const char *dev, int64_t now_s,
			   struct store_cert **out, size_t *count, char *why, size_t cap)
{
	struct issued list[STORE_MAX_PER_DEVICE];
	struct store_revoked *revoked = NULL;
	char path[PATH_CAP];
	int fd, n, nrevoked = 0, rc = 0;

	*out = NULL;
	*count = 0;
	if (!certs_path(st, dev, path, why, cap))
		return GD_EINVAL;
	fd = certs_lock(st, why, cap);
	if (fd < 0)
		return GD_EIO;
	n = certs_read(path, list, why, cap);
	if (n > 0)
		nrevoked = log_load(st, now_s, &revoked, why, cap);
	close(fd);
	if (n < 0 || nrevoked < 0) {
		free(revoked);
		return n < 0 ? n : nrevoked;
	}
	if (n > 0) {
		*out = calloc((size_t)n, sizeof(**out));
		if (*out == NULL) {
			free(revoked);
			gd_whyf(why, cap, "out of memory");
			return GD_ENOMEM;
		}
	}
	for (int i = 0; i < n; i++) {
		struct store_cert *c = &(*out)[*count];

		if (expired(list[i].not_after_s, now_s))
			continue;
		memcpy(c->serial, list[i].serial, 16);
		c->not_after_s = list[i].not_after_s;
		c->revoked_s = list[i].revoked_s;
		c->reason = STORE_REVOKE_SUPERSEDED;
		for (int j = 0; j < nrevoked; j++)
			if (memcmp(revoked[j].serial, c->serial, 16) == 0)
				c->reason = revoked[j].reason;
		(*count)++;
	}
	free(revoked);
	return rc;
}

static int files_cert_import(struct store *st, const char *dev, const struct store_cert *c,
			     char *why, size_t cap)
{
	struct issued list[STORE_MAX_PER_DEVICE + 1];
	char path[PATH_CAP], line[REVOKE_LINE], hex[2 * 16 + 1];
	int64_t now_s = gd_now_ms() / 1000;
	int fd, n, rc = 1;

	if (!certs_path(st, dev, path, why, cap))
		return GD_EINVAL;
	fd = certs_lock(st, why, cap);
	if (fd < 0)
		return GD_EIO;
	n = certs_read(path, list, why, cap);
	if (n < 0) {
		rc = n;
		goto out;
	}
	for (int i = 0; i < n; i++)
		if (memcmp(list[i].serial, c->serial, 16) == 0) {
			rc = 0;
			goto out;
		}
	if (c->revoked_s != 0) {
		gd_hex_encode(c->serial, 16, hex);
		snprintf(line, sizeof(line), "%s %" PRId64 " %" PRId64 " %s %s\n", hex,
			 c->not_after_s, c->revoked_s, reason_word(c->reason), dev);
		rc = log_append(st, line, strlen(line), why, cap);
		if (rc != 0)
			goto out;
		rc = 1;
	}
	if (n == STORE_MAX_PER_DEVICE)
		memmove(list, list + 1, (size_t)(--n) * sizeof(list[0]));
	memcpy(list[n].serial, c->serial, 16);
	list[n].not_after_s = c->not_after_s;
	list[n].revoked_s = c->revoked_s;
	n++;
	if (certs_write(st, dev, path, list, n, now_s, why, cap) != 0)
		rc = GD_EIO;
out:
	close(fd);
	return rc;
}

/* ---- releases ------------------------------------------------------------------------------- */

static int files_release_put(struct store *st, const char *dev, const struct store_release *r,
			     char *why, size_t cap)
{
	char path[PATH_CAP], text[256];
	int n, rc;

	rc = write_path(st, path, "devices", dev, ".release.json", why, cap);
	if (rc != 0)
		return rc;
	n = snprintf(text, sizeof(text),
		     "{\"version\":%" PRIu64 ",\"sha256\":\"%s\",\"ts\":%" PRId64
		     ",\"withdrawn\":%s}\n",
		     r->version, r->sha256, r->ts_ms, r->withdrawn ? "true" : "false");
	/* Synced: a record of a delivery the broker acknowledged outlives a power loss. */
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    gd_write_file_atomic(path, text, (size_t)n, 0644) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		return GD_EIO;
	}
	return 0;
}

static int files_release_get(struct store *st, const char *dev, struct store_release *out,
			     char *why, size_t cap)
{
	char path[PATH_CAP], *text = NULL;
	const cJSON *v, *h, *ts, *w;
	cJSON *doc;
	int rc;

	if (!name_path(st, path, "devices", dev, ".release.json", why, cap))
		return GD_EINVAL;
	rc = read_text(path, &text, why, cap);
	if (rc != 0)
		return rc;
	doc = cJSON_Parse(text);
	free(text);
	v = cJSON_GetObjectItemCaseSensitive(doc, "version");
	h = cJSON_GetObjectItemCaseSensitive(doc, "sha256");
	ts = cJSON_GetObjectItemCaseSensitive(doc, "ts");
	w = cJSON_GetObjectItemCaseSensitive(doc, "withdrawn");
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || !cJSON_IsString(h) ||
	    strlen(h->valuestring) >= sizeof(out->sha256) || !cJSON_IsNumber(ts) ||
	    !cJSON_IsBool(w)) {
		cJSON_Delete(doc);
		gd_whyf(why, cap,
			"store files: %s: not a release record (expected {\"version\",\"sha256\","
			"\"ts\",\"withdrawn\"})",
			path);
		return GD_EPROTO;
	}
	out->version = (uint64_t)v->valuedouble;
	snprintf(out->sha256, sizeof(out->sha256), "%s", h->valuestring);
	out->ts_ms = (int64_t)ts->valuedouble;
	out->withdrawn = cJSON_IsTrue(w);
	cJSON_Delete(doc);
	return 0;
}

/* ---- failure reports ------------------------------------------------------------------------ */

static int files_report_update(struct store *st, const char *dev, store_merge_fn *merge, void *ctx,
			       char *why, size_t cap)
{
	char path[PATH_CAP], lock[PATH_CAP];
	char *old = NULL, *next = NULL;
	int fd = -1, rc;

	rc = write_path(st, path, "reports", dev, ".json", why, cap);
	if (rc != 0)
		return rc;
	snprintf(lock, sizeof(lock), "%s/reports/%s", st->dir, REPORTS_LOCK);
	fd = lock_take(lock, why, cap);
	if (fd < 0)
		return GD_EIO;
	rc = read_text(path, &old, why, cap);
	if (rc < 0)
		goto out;
	rc = merge(old, &next, ctx, why, cap);
	if (rc != 0)
		goto out;
	if (next == NULL) {
		gd_whyf(why, cap, "store files: %s: the merge gave no document", path);
		rc = GD_EINVAL;
		goto out;
	}
	if (gd_write_file_atomic(path, next, strlen(next), 0600) != 0) {
		gd_whyf(why, cap, "store files: %s: cannot write: %s", path, strerror(errno));
		rc = GD_EIO;
	}
out:
	close(fd);
	free(old);
	free(next);
	return rc;
}

static int files_report_get(struct store *st, const char *dev, char **json, char *why, size_t cap)
{
	char path[PATH_CAP];

	*json = NULL;
	if (!name_path(st, path, "reports", dev, ".json", why, cap))
		return GD_EINVAL;
	return read_text(path, json, why, cap);
}

static int files_report_list(struct store *st, char ***devs, size_t *n, char *why, size_t cap)
{
	return list_names(st, "reports", ".json", devs, n, why, cap);
}

/* No attest_record: files have no transactions, so store.c runs nonce_consume, cert_issued,
 * cert_revoke_device and installed_put in turn, the nonce first (each as atomic as it is here). */
const struct store_ops store_files_ops = {
	.name = "files",
	.open = files_open,
	.close = files_close,
	.schema_version = files_schema_version,
	.device_get = files_device_get,
	.device_put = files_device_put,
	.device_list = files_device_list,
	.installed_put = files_installed_put,
	.installed_get = files_installed_get,
	.nonce_consume = files_nonce_consume,
	.nonce_sweep = files_nonce_sweep,
	.reference_put = files_reference_put,
	.reference_remove = files_reference_remove,
	.reference_all = files_reference_all,
	.reference_generation = files_reference_generation,
	.cert_issued = files_cert_issued,
	.cert_revoke_device = files_cert_revoke_device,
	.cert_revoked = files_cert_revoked,
	.cert_list = files_cert_list,
	.cert_import = files_cert_import,
	.release_put = files_release_put,
	.release_get = files_release_get,
	.report_update = files_report_update,
	.report_get = files_report_get,
	.report_list = files_report_list,
};
