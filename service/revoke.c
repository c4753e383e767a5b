/* revoke.c: revocation of operational certificates: what each device was issued, what was
 * revoked, the CRL made of it and the broker told to reload it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/x509_crl.h>

#include "service.h"

/*
 * The files, in the service directory, shared by every instance under an
 * exclusive flock of certs.lock:
 *   certs/<dev>.list  the device's unexpired certificates, one a line:
 *                     "<serial hex> <not_after UTC s> <revoked at UTC s, 0 if not>";
 *                     rewritten atomically at each change;
 *   revoked.log       every revocation not yet expired, appended one a line:
 *                     "<serial hex> <not_after> <revoked at> <superseded|refused> <dev>";
 *                     compacted when the CRL is written.
 * A certificate is kept SERVICE_SKEW_S past its notAfter, for a broker whose clock is behind.
 */
#define REVOKE_LOCK	      "certs.lock"
#define REVOKE_LOG	      "revoked.log"
#define REVOKE_LINE	      160
#define REVOKE_MAX_PER_DEVICE 64 /* certificates kept per device; older ones are forgotten */

struct issued {
	uint8_t serial[SERVICE_SERIAL_LEN];
	int64_t not_after_s, revoked_s;
};

static const char *reason_word(enum revoke_reason r)
{
	return r == REVOKE_SUPERSEDED ? "superseded" : "refused";
}

static bool expired(int64_t not_after_s, int64_t now_s)
{
	return not_after_s + SERVICE_SKEW_S < now_s;
}

static bool parse_serial(const char *hex, uint8_t serial[SERVICE_SERIAL_LEN])
{
	return gd_hex_decode(hex, serial, SERVICE_SERIAL_LEN, '\0');
}

/* Takes the exclusive lock of the directory: an fd to close, or -1 (logged). */
static int lock_take(const struct service *s)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", s->dir, REVOKE_LOCK);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) != 0) {
		log_warn(SERVICE_SUBSYS, "%s: cannot lock", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void device_path(const struct service *s, const char *dev, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/certs/%s.list", s->dir, dev);
}

/* Reads certs/<dev>.list into 'list' (at most REVOKE_MAX_PER_DEVICE). How many, or GD_EIO. */
static int device_read(const struct service *s, const char *dev, struct issued *list)
{
	char path[4096], *text, *save = NULL;
	int n = 0;

	device_path(s, dev, path, sizeof(path));
	text = gd_read_file(path);
	if (text == NULL)
		return errno == ENOENT ? 0 : GD_EIO;
	for (char *line = strtok_r(text, "\n", &save); line != NULL && n < REVOKE_MAX_PER_DEVICE;
	     line = strtok_r(NULL, "\n", &save)) {
		char hex[2 * SERVICE_SERIAL_LEN + 2];
		long long not_after, revoked;

		if (line[0] == '#')
			continue;
		if (sscanf(line, "%33s %lld %lld", hex, &not_after, &revoked) != 3 ||
		    !parse_serial(hex, list[n].serial)) {
			log_warnx(SERVICE_SUBSYS,
				  "%s: a line that does not parse is skipped: %.60s", path, line);
			continue;
		}
		list[n].not_after_s = not_after;
		list[n].revoked_s = revoked;
		n++;
	}
	free(text);
	return n;
}

/* Writes the unexpired entries of 'list' as certs/<dev>.list. 0 or GD_EIO. */
static int device_write(const struct service *s, const char *dev, const struct issued *list, int n,
			int64_t now_s)
{
	char path[4096], text[REVOKE_MAX_PER_DEVICE * 80 + 128], hex[2 * SERVICE_SERIAL_LEN + 1];
	size_t len;

	snprintf(path, sizeof(path), "%s/certs", s->dir);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return GD_EIO;
	len = (size_t)snprintf(text, sizeof(text),
			       "# %s: serial not_after revoked_at (UTC s; 0: in force)\n", dev);
	for (int i = 0; i < n; i++) {
		if (expired(list[i].not_after_s, now_s))
			continue;
		gd_hex_encode(list[i].serial, SERVICE_SERIAL_LEN, hex);
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"%s %" PRId64 " %" PRId64 "\n", hex, list[i].not_after_s,
					list[i].revoked_s);
	}
	device_path(s, dev, path, sizeof(path));
	return gd_write_file_atomic(path, text, len, 0600);
}

/* Appends 'len' bytes of lines to revoked.log, synced. 0 or GD_EIO. */
static int log_append(const struct service *s, const char *lines, size_t len)
{
	char path[4096];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", s->dir, REVOKE_LOG);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return GD_EIO;
	if (write(fd, lines, len) != (ssize_t)len || fsync(fd) != 0)
		rc = GD_EIO;
	if (close(fd) != 0)
		rc = GD_EIO;
	return rc;
}

/*
 * Revokes the unrevoked, unexpired entries of 'list' for 'reason' (logged first, then marked),
 * and appends 'fresh' when not NULL; writes the device's file. How many were revoked, or GD_EIO.
 */
static int revoke_locked(struct service *s, const char *dev, enum revoke_reason reason,
			 const struct issued *fresh)
{
	struct issued list[REVOKE_MAX_PER_DEVICE + 1];
	char lines[REVOKE_MAX_PER_DEVICE * REVOKE_LINE], hex[2 * SERVICE_SERIAL_LEN + 1];
	int64_t now_s = s->now_ms() / 1000;
	size_t len = 0;
	int n = device_read(s, dev, list), revoked = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		if (list[i].revoked_s != 0 || expired(list[i].not_after_s, now_s))
			continue;
		list[i].revoked_s = now_s;
		gd_hex_encode(list[i].serial, SERVICE_SERIAL_LEN, hex);
		len += (size_t)snprintf(lines + len, sizeof(lines) - len,
					"%s %" PRId64 " %" PRId64 " %s %s\n", hex,
					list[i].not_after_s, now_s, reason_word(reason), dev);
		revoked++;
	}
	/* Into the log before the device's file: a crash between them repeats a line, which the
	 * CRL lists once, rather than forgetting one. */
	if (len > 0 && log_append(s, lines, len) != 0) {
		log_warn(SERVICE_SUBSYS, "%s/%s: cannot append", s->dir, REVOKE_LOG);
		return GD_EIO;
	}
	if (fresh != NULL) {
		if (n == REVOKE_MAX_PER_DEVICE) /* the oldest goes; it was revoked above */
			memmove(list, list + 1, (size_t)(--n) * sizeof(list[0]));
		list[n++] = *fresh;
	}
	if ((revoked > 0 || fresh != NULL) && device_write(s, dev, list, n, now_s) != 0) {
		log_warn(SERVICE_SUBSYS, "%s/certs/%s.list: cannot write", s->dir, dev);
		return GD_EIO;
	}
	if (revoked > 0) {
		s->crl_stale = true;
		log_info(SERVICE_SUBSYS, "%s: %d certificate%s revoked (%s)", dev, revoked,
			 revoked == 1 ? "" : "s", reason_word(reason));
	}
	return revoked;
}

int revoke_record_issued(struct service *s, const char *dev,
			 const uint8_t serial[SERVICE_SERIAL_LEN], int64_t not_after_s)
{
	struct issued fresh = { .not_after_s = not_after_s };
	int fd = lock_take(s), rc;

	if (fd < 0)
		return GD_EIO;
	memcpy(fresh.serial, serial, SERVICE_SERIAL_LEN);
	rc = revoke_locked(s, dev, REVOKE_SUPERSEDED, &fresh);
	close(fd);
	return rc < 0 ? rc : 0;
}

int revoke_device(struct service *s, const char *dev, enum revoke_reason reason)
{
	int fd = lock_take(s), rc;

	if (fd < 0)
		return GD_EIO;
	rc = revoke_locked(s, dev, reason, NULL);
	close(fd);
	return rc;
}

static int by_serial(const void *a, const void *b)
{
	return memcmp(((const struct crl_entry *)a)->serial, ((const struct crl_entry *)b)->serial,
		      SERVICE_SERIAL_LEN);
}

/*
 * Reads revoked.log: the unexpired entries into *out (malloc'd, sorted by serial, each once),
 * and rewrites it without the others when there are any. How many, or a gd_err.
 */
static int log_load(struct service *s, struct crl_entry **out)
{
	char path[4096], *text, *save = NULL, *keep = NULL;
	int64_t now_s = s->now_ms() / 1000;
	size_t n = 0, cap = 0, kept = 0, lines = 0;
	struct crl_entry *list = NULL;
	int rc = 0;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/%s", s->dir, REVOKE_LOG);
	text = gd_read_file(path);
	if (text == NULL)
		return errno == ENOENT ? 0 : GD_EIO;
	keep = malloc(strlen(text) + 1);
	if (keep == NULL) {
		rc = GD_ENOMEM;
		goto out;
	}
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char hex[2 * SERVICE_SERIAL_LEN + 2], word[16];
		long long not_after, at;
		struct crl_entry e;

		lines++;
		if (sscanf(line, "%33s %lld %lld %15s", hex, &not_after, &at, word) != 4 ||
		    !parse_serial(hex, e.serial)) {
			log_warnx(SERVICE_SUBSYS,
				  "%s: a line that does not parse is dropped: %.60s", path, line);
			continue;
		}
		if (expired(not_after, now_s))
			continue;
		e.revoked_s = at;
		e.reason = strcmp(word, "superseded") == 0 ? REVOKE_SUPERSEDED : REVOKE_REFUSED;
		if (n == cap) {
			struct crl_entry *bigger =
				realloc(list, (cap = cap ? cap * 2 : 64) * sizeof(*list));

			if (bigger == NULL) {
				rc = GD_ENOMEM;
				goto out;
			}
			list = bigger;
		}
		list[n++] = e;
		kept += (size_t)sprintf(keep + kept, "%s\n", line);
	}
	if (n != lines && gd_write_file_atomic(path, keep, kept, 0600) != 0)
		log_warn(SERVICE_SUBSYS, "%s: cannot drop the expired lines", path);
	/* A line repeated (a crash between the log and the device's file) is listed once. */
	if (n > 1) /* qsort(NULL, 0, ...) is undefined */
		qsort(list, n, sizeof(*list), by_serial);
	{
		size_t unique = 0;

		for (size_t i = 0; i < n; i++)
			if (unique == 0 || by_serial(&list[unique - 1], &list[i]) != 0)
				list[unique++] = list[i];
		n = unique;
	}
	*out = list;
	list = NULL;
	rc = (int)n;
out:
	free(list);
	free(keep);
	free(text);
	return rc;
}

int revoke_publish(struct service *s)
{
	struct crl_entry *list = NULL;
	char path[4096], why[512];
	int fd = lock_take(s), n;

	if (fd < 0)
		return GD_EIO;
	snprintf(path, sizeof(path), "%s/%s", s->dir, SERVICE_CRL_FILE);
	n = log_load(s, &list);
	if (n < 0) {
		log_warn(SERVICE_SUBSYS, "%s/%s: cannot read", s->dir, REVOKE_LOG);
	} else if (crl_write(path, &s->op_ca.crt, &s->op_ca.key, &s->drbg, list, (size_t)n,
			     s->now_ms(), why, sizeof(why)) != 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		n = GD_EIO;
	}
	close(fd);
	free(list);
	if (n < 0)
		return n;
	s->crl_stale = false;
	log_info(SERVICE_SUBSYS, "%s written: %d certificate%s revoked, next update in %d h", path,
		 n, n == 1 ? "" : "s", SERVICE_CRL_VALID_S / 3600);
	revoke_reload_broker(s);
	return n;
}

int revoke_refresh(struct service *s)
{
	mbedtls_x509_crl crl;
	char path[4096];
	bool fresh = false;

	snprintf(path, sizeof(path), "%s/%s", s->dir, SERVICE_CRL_FILE);
	mbedtls_x509_crl_init(&crl);
	if (mbedtls_x509_crl_parse_file(&crl, path) == 0) {
		struct tm tm = { .tm_year = crl.next_update.year - 1900,
				 .tm_mon = crl.next_update.mon - 1,
				 .tm_mday = crl.next_update.day,
				 .tm_hour = crl.next_update.hour,
				 .tm_min = crl.next_update.min,
				 .tm_sec = crl.next_update.sec };

		fresh = (int64_t)timegm(&tm) - s->now_ms() / 1000 >= SERVICE_CRL_REFRESH_S;
	}
	mbedtls_x509_crl_free(&crl);
	if (fresh)
		return 0;
	return revoke_publish(s) < 0 ? GD_EIO : 1;
}

long revoke_reload_broker(struct service *s)
{
	const char *file = s->cfg.broker_pid_file;
	char proc[64], *text, *comm, *end;
	bool bad;
	long pid;

	if (file == NULL)
		return 0;
	text = gd_read_file(file);
	if (text == NULL) {
		log_warn(SERVICE_SUBSYS,
			 "broker_pid_file %s: cannot read; the broker keeps its old CRL", file);
		return 0;
	}
	errno = 0;
	pid = strtol(text, &end, 10);
	bad = errno != 0 || end == text || pid <= 1 || (*end != '\0' && *end != '\n');
	free(text);
	if (bad) {
		log_warnx(SERVICE_SUBSYS, "broker_pid_file %s: no process id in it", file);
		return 0;
	}
	/* A stale file may name a process that is not the broker any more: never signal that. */
	snprintf(proc, sizeof(proc), "/proc/%ld/comm", pid);
	comm = gd_read_file(proc);
	if (comm == NULL || strncmp(comm, "mosquitto", 9) != 0) {
		log_warnx(SERVICE_SUBSYS,
			  "broker_pid_file %s: process %ld is %s; the broker keeps its old CRL",
			  file, pid, comm == NULL ? "not running" : "not mosquitto");
		free(comm);
		return 0;
	}
	free(comm);
	if (kill((pid_t)pid, SIGHUP) != 0) {
		log_warn(SERVICE_SUBSYS, "broker_pid_file %s: cannot signal process %ld", file,
			 pid);
		return 0;
	}
	log_info(SERVICE_SUBSYS, "broker (pid %ld) told to reload the CRL (SIGHUP)", pid);
	return pid;
}
