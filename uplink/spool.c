/* spool.c: the crash-safe telemetry spool: segment files, an atomic cursor, recovery, the cap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "../base/json.h"
#include "spool.h"

#define SUBSYS		"spool"
#define HDR		16	     /* u32 length, u32 CRC-32C, u64 seq */
#define MAX_RECORD	(64u << 20)  /* a length above this is damage, not a record */
#define MAX_SEGMENT	(1ull << 30) /* a segment file above this is not one we wrote */
#define COMPRESS_AGE_MS 1000	     /* a sealed segment still waiting this long is a backlog */
#define QUARANTINE_KEEP 16	     /* files kept in quarantine/, the newest */
#define CURSOR_MAGIC	"guardian-spool-cursor 1"

const char *const spool_sync_names[] = {
	[SPOOL_SYNC_ALWAYS] = "always",
	[SPOOL_SYNC_BATCH] = "batch",
	[SPOOL_SYNC_NONE] = "none",
	NULL,
};

struct seg {
	uint64_t first;	   /* its name: the seq of its first record */
	uint64_t last;	   /* the seq of its last record */
	uint64_t count;	   /* records */
	uint64_t raw;	   /* bytes of whole records (uncompressed) */
	uint64_t disk;	   /* bytes of the file */
	bool compressed;   /* .zst */
	int64_t sealed_ms; /* monotonic ms it was sealed; 0 for the active segment */
	bool damaged;	   /* the reader found damage at dmg_off: counted once, the rest skipped */
	uint64_t dmg_off;
};

struct spool {
	struct spool_config cfg; /* dir owned */
	struct spool_io io;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC: wakes the background thread */
	struct seg *segs;    /* oldest first; the last is active when active_fd >= 0 */
	size_t nsegs, segcap;
	int active_fd;
	/* Under 'batch', the producer never waits for the disk: a sealed segment's last sync and
	 * the directory's sync after a new segment are the background thread's. */
	int sealed_fd;	/* sealed, still to sync and close; -1 if none */
	bool dir_dirty; /* a segment was made since the directory was synced */
	uint64_t last_seq, acked;
	bool dirty;	   /* appended since the last sync */
	bool cursor_dirty; /* acked moved since the cursor was written */
	bool stop;
	pthread_t thread;
	bool thread_running;
	pthread_mutex_t cursor_lock; /* one writer of the cursor file at a time */
	uint64_t cursor_on_disk;     /* under cursor_lock: the cursor never goes back */

	/* The reader's place: the record after 'rd_after' is at 'rd_off' of segment 'rd_first'. */
	uint64_t rd_first, rd_after, rd_off;
	bool rd_valid;
	int rd_fd; /* open on segment rd_fd_first (uncompressed) */
	uint64_t rd_fd_first;
	uint8_t *rd_buf; /* segment rd_buf_first decompressed */
	size_t rd_len;
	uint64_t rd_buf_first;

	struct spool_stats st;
};

/* --- little-endian fields -------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The CRC of a record: its length and seq fields, then the payload. */
static uint32_t record_crc(const uint8_t *hdr, const void *payload, size_t len)
{
	uint32_t crc = gd_crc32c(0, hdr, 4);

	crc = gd_crc32c(crc, hdr + 8, 8);
	return gd_crc32c(crc, payload, len);
}

/*
 * Walks the records of 'buf': stops at the first that is short, too long, has a bad CRC or a seq
 * not above the one before. Returns the length of the whole records; their count, first and last
 * seq go to the pointers.
 */
static size_t valid_prefix(const uint8_t *buf, size_t n, uint64_t *count, uint64_t *first,
			   uint64_t *last)
{
	size_t off = 0;
	uint64_t prev = 0;

	*count = *first = *last = 0;
	while (n - off >= HDR) {
		uint32_t len = get32(buf + off);
		uint64_t seq = get64(buf + off + 8);

		if (len > MAX_RECORD || len > n - off - HDR || seq <= prev ||
		    record_crc(buf + off, buf + off + HDR, len) != get32(buf + off + 4))
			break;
		if (*count == 0)
			*first = seq;
		*last = prev = seq;
		(*count)++;
		off += HDR + len;
	}
	return off;
}

/* --- files ----------------------------------------------------------------------------------- */

static void seg_path(const struct spool *sp, uint64_t first, bool compressed, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%020" PRIu64 ".%s", sp->cfg.dir, first, compressed ? "zst" : "seg");
}

/* The whole file, up to 'max' bytes. NULL with errno (EFBIG past 'max'). */
static uint8_t *read_all(const char *path, size_t max, size_t *n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	uint8_t *buf = NULL;
	size_t got = 0;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) != 0)
		goto fail;
	if ((uint64_t)sb.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL)
		goto fail;
	while (got < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*n = got;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

static void set_error(struct spool *sp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct spool *sp, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sp->st.last_error, sizeof(sp->st.last_error), fmt, ap);
	va_end(ap);
	log_warnx(SUBSYS, "%s", sp->st.last_error);
}

/* Keeps a copy of damaged bytes in quarantine/ (the newest QUARANTINE_KEEP files), for a person. */
static void quarantine(struct spool *sp, const char *name, const uint8_t *data, size_t n)
{
	char dir[4096], path[4500];
	struct dirent **list = NULL;
	int k, files = 0;

	snprintf(dir, sizeof(dir), "%s/quarantine", sp->cfg.dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return;
	snprintf(path, sizeof(path), "%s/%013" PRId64 "-%s", dir, gd_now_ms(), name);
	if (gd_write_file_atomic(path, data, n, 0600) != 0)
		log_warn(SUBSYS, "could not keep a copy of %s in %s", name, dir);
	k = scandir(dir, &list, NULL, alphasort);
	for (int i = 0; i < k; i++) {
		if (list[i]->d_name[0] != '.')
			files++;
	}
	for (int i = 0; i < k; i++) { /* oldest first: the names start with the time */
		if (list[i]->d_name[0] != '.' && files > QUARANTINE_KEEP) {
			snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
			unlink(path);
			files--;
		}
		free(list[i]);
	}
	free(list);
}

/* --- the cursor ------------------------------------------------------------------------------ */

static int write_cursor(struct spool *sp, uint64_t acked)
{
	char path[4096], text[128];
	int n, rc;

	snprintf(path, sizeof(path), "%s/cursor", sp->cfg.dir);
	n = snprintf(text, sizeof(text), "%s\nacked %" PRIu64 "\n", CURSOR_MAGIC, acked);
	n += snprintf(text + n, sizeof(text) - (size_t)n, "crc %08x\n",
		      gd_crc32c(0, text, (size_t)n));
	pthread_mutex_lock(&sp->cursor_lock);
	/* spool_ack (under 'always') and the thread write it without the spool's lock: an older
	 * value that lost the race must not replace a newer one. */
	if (acked <= sp->cursor_on_disk) {
		pthread_mutex_unlock(&sp->cursor_lock);
		return 0;
	}
	if (sp->cfg.sync == SPOOL_SYNC_NONE) {
		char tmp[4500];
		int fd;

		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		rc = fd >= 0 && write(fd, text, (size_t)n) == n ? 0 : GD_EIO;
		if (fd >= 0)
			close(fd);
		if (rc == 0 && rename(tmp, path) != 0)
			rc = GD_EIO;
	} else {
		rc = gd_write_file_atomic(path, text, (size_t)n, 0600);
	}
	if (rc == 0)
		sp->cursor_on_disk = acked;
	pthread_mutex_unlock(&sp->cursor_lock);
	return rc;
}

/* The cursor's seq; 0 when there is none. A file that does not read counts as damaged. */
static uint64_t read_cursor(struct spool *sp)
{
	char path[4096];
	uint8_t *text;
	size_t n;
	unsigned long long acked;
	unsigned crc;
	char *at;

	snprintf(path, sizeof(path), "%s/cursor", sp->cfg.dir);
	text = read_all(path, 4096, &n);
	if (text == NULL) {
		if (errno != ENOENT) {
			sp->st.cursor_damaged++;
			set_error(sp, "%s: %s: every record held is sent again", path,
				  strerror(errno));
		}
		return 0;
	}
	text[n] = '\0';
	at = strstr((char *)text, "\ncrc ");
	if (strncmp((char *)text, CURSOR_MAGIC "\n", strlen(CURSOR_MAGIC) + 1) != 0 ||
	    sscanf((char *)text + strlen(CURSOR_MAGIC) + 1, "acked %llu", &acked) != 1 ||
	    at == NULL || sscanf(at + 5, "%8x", &crc) != 1 ||
	    crc != gd_crc32c(0, text, (size_t)(at + 1 - (char *)text))) {
		sp->st.cursor_damaged++;
		set_error(sp, "%s does not read (torn or damaged): every record held is sent again",
			  path);
		free(text);
		return 0;
	}
	free(text);
	return acked;
}

/* --- segments -------------------------------------------------------------------------------- */

static struct seg *add_seg(struct spool *sp)
{
	if (sp->nsegs == sp->segcap) {
		size_t cap = sp->segcap ? sp->segcap * 2 : 16;
		struct seg *s = realloc(sp->segs, cap * sizeof(*s));

		if (s == NULL)
			return NULL;
		sp->segs = s;
		sp->segcap = cap;
	}
	sp->segs[sp->nsegs] = (struct seg){ 0 };
	return &sp->segs[sp->nsegs++];
}

static void reader_forget(struct spool *sp, uint64_t first)
{
	if (sp->rd_fd >= 0 && sp->rd_fd_first == first) {
		close(sp->rd_fd);
		sp->rd_fd = -1;
	}
	if (sp->rd_buf != NULL && sp->rd_buf_first == first) {
		free(sp->rd_buf);
		sp->rd_buf = NULL;
	}
	if (sp->rd_valid && sp->rd_first == first)
		sp->rd_valid = false;
}

/* Deletes segment 'i' (sealed). */
static void delete_seg(struct spool *sp, size_t i)
{
	char path[4500];
	struct seg *s = &sp->segs[i];

	seg_path(sp, s->first, s->compressed, path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		log_warn(SUBSYS, "could not delete %s", path);
	reader_forget(sp, s->first);
	sp->st.disk_bytes -= s->disk;
	sp->st.raw_bytes -= s->raw;
	memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof(*s));
	sp->nsegs--;
}

static void seal_active(struct spool *sp)
{
	if (sp->active_fd < 0)
		return;
	if (sp->cfg.sync == SPOOL_SYNC_BATCH && sp->dirty && sp->sealed_fd < 0) {
		sp->sealed_fd = sp->active_fd; /* the thread syncs and closes it */
	} else {
		if (sp->cfg.sync != SPOOL_SYNC_NONE && sp->dirty) {
			sp->io.fdatasync(sp->active_fd);
			sp->st.syncs++;
		}
		close(sp->active_fd);
	}
	sp->dirty = false;
	sp->active_fd = -1;
	sp->segs[sp->nsegs - 1].sealed_ms = gd_mono_ms();
	if (sp->segs[sp->nsegs - 1].count == 0)
		delete_seg(sp, sp->nsegs - 1);
	pthread_cond_broadcast(&sp->cond);
}

/* Records of segment 's' not yet acknowledged (exact but for gaps in the numbering). */
static uint64_t unacked_in(const struct spool *sp, const struct seg *s)
{
	if (s->last <= sp->acked)
		return 0;
	if (s->first > sp->acked)
		return s->count;
	return s->last - sp->acked < s->count ? s->last - sp->acked : s->count;
}

/* --- recovery -------------------------------------------------------------------------------- */

static int cmp_seg(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* Decompresses a .zst file's bytes. NULL if it is not one whole frame we could have written. */
static uint8_t *unzstd(const uint8_t *in, size_t n, size_t *out_len)
{
	unsigned long long size = ZSTD_getFrameContentSize(in, n);
	uint8_t *out;
	size_t r;

	if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
	    size > MAX_SEGMENT)
		return NULL;
	out = malloc(size ? (size_t)size : 1);
	if (out == NULL)
		return NULL;
	r = ZSTD_decompress(out, (size_t)size, in, n);
	if (ZSTD_isError(r) || r != size) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)r;
	return out;
}

/*
 * Whether the 'n' bytes after the last whole record of the newest segment are what a crash
 * leaves: part of one record (a short header, or a length past the end), one whole-length
 * record whose bytes did not all reach the disk, or zeros (the file grew, its data did not
 * land). Anything else is damage before the end: records after it may be whole, and a copy is
 * kept.
 */
static bool torn_tail(const uint8_t *p, size_t n)
{
	size_t zeros = 0;

	if (n < HDR || get32(p) > n - HDR || HDR + get32(p) == n)
		return true;
	while (zeros < n && p[zeros] == 0)
		zeros++;
	return zeros == n;
}

/* Reads, checks and if need be repairs one segment file; adds it to the list if anything is left.
 */
static void recover_seg(struct spool *sp, const char *name, uint64_t first, bool compressed,
			bool newest)
{
	char path[4500];
	size_t n = 0, raw_len = 0, good;
	uint8_t *file, *raw;
	uint64_t count, f, l;
	struct seg *s;

	seg_path(sp, first, compressed, path, sizeof(path));
	file = read_all(path, MAX_SEGMENT, &n);
	if (file == NULL) {
		set_error(sp, "%s: %s: left as it is", path, strerror(errno));
		return;
	}
	raw = compressed ? unzstd(file, n, &raw_len) : file;
	if (!compressed)
		raw_len = n;
	if (raw == NULL) {
		sp->st.quarantined++;
		set_error(sp, "%s does not decompress: moved to quarantine/", path);
		quarantine(sp, name, file, n);
		unlink(path);
		free(file);
		return;
	}
	good = valid_prefix(raw, raw_len, &count, &f, &l);
	if (good < raw_len) {
		if (newest && !compressed && torn_tail(raw + good, raw_len - good)) {
			sp->st.torn_tails++;
			sp->st.torn_bytes += raw_len - good;
			set_error(sp,
				  "%s: torn tail of %zu bytes after %" PRIu64
				  " whole records: cut off",
				  path, raw_len - good, count);
		} else {
			sp->st.quarantined++;
			set_error(sp,
				  "%s: damaged at byte %zu after %" PRIu64
				  " whole records: the rest copied to quarantine/",
				  path, good, count);
			quarantine(sp, name, file, n);
		}
		if (!compressed && truncate(path, (off_t)good) != 0)
			log_warn(SUBSYS, "could not cut %s at %zu", path, good);
		if (!compressed)
			n = good;
	}
	if (count == 0) {
		unlink(path);
	} else if ((s = add_seg(sp)) == NULL) {
		set_error(sp, "%s: out of memory: left as it is", path); /* records, not garbage */
	} else {
		*s = (struct seg){ .first = first,
				   .last = l,
				   .count = count,
				   .raw = good,
				   .disk = n,
				   .compressed = compressed,
				   .sealed_ms = gd_mono_ms() };
		if (f != first)
			log_warnx(SUBSYS, "%s: first record is %" PRIu64, path, f);
		sp->st.disk_bytes += n;
		sp->st.raw_bytes += good;
	}
	if (raw != file)
		free(raw);
	free(file);
}

static int recover(struct spool *sp)
{
	DIR *d = opendir(sp->cfg.dir);
	struct dirent *e;
	struct {
		uint64_t first;
		bool compressed;
		char name[sizeof(((struct dirent *)0)->d_name)];
	} *found = NULL;
	size_t nfound = 0, cap = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char *end;
		unsigned long long first = strtoull(e->d_name, &end, 10);
		bool seg = strcmp(end, ".seg") == 0, zst = strcmp(end, ".zst") == 0;
		char path[4500];

		if (strlen(e->d_name) > 4 &&
		    strcmp(e->d_name + strlen(e->d_name) - 4, ".tmp") == 0) {
			snprintf(path, sizeof(path), "%s/%s", sp->cfg.dir, e->d_name);
			unlink(path); /* a compression or cursor write the crash cut short */
			continue;
		}
		if (end == e->d_name || (!seg && !zst) || first == 0)
			continue;
		if (nfound == cap) {
			void *p = realloc(found, (cap = cap ? cap * 2 : 32) * sizeof(*found));

			if (p == NULL)
				break;
			found = p;
		}
		found[nfound].first = first;
		found[nfound].compressed = zst;
		snprintf(found[nfound].name, sizeof(found[nfound].name), "%s", e->d_name);
		nfound++;
	}
	closedir(d);
	for (size_t i = 0; i < nfound; i++) {
		bool newest = true, twin = false;

		for (size_t j = 0; j < nfound; j++) {
			if (found[j].first > found[i].first)
				newest = false;
			/* Compressed but the original not yet deleted: the original stays. */
			if (j != i && found[j].first == found[i].first && found[i].compressed &&
			    !found[j].compressed)
				twin = true;
		}
		if (twin) {
			char path[4500];

			seg_path(sp, found[i].first, true, path, sizeof(path));
			unlink(path);
			continue;
		}
		recover_seg(sp, found[i].name, found[i].first, found[i].compressed, newest);
	}
	free(found);
	if (sp->nsegs > 1) /* segs is NULL when there are none: qsort must not see it */
		qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), cmp_seg);
	sp->acked = sp->cursor_on_disk = read_cursor(sp);
	sp->last_seq = sp->acked;
	for (size_t i = 0; i < sp->nsegs; i++) {
		if (sp->segs[i].last > sp->last_seq)
			sp->last_seq = sp->segs[i].last;
	}
	/* The cursor keeps the numbering once everything is acknowledged; if it is lost too,
	 * numbering starts again under a new boot id, and (boot, seq) still names one message. */
	while (sp->nsegs > 0 && sp->segs[0].last <= sp->acked)
		delete_seg(sp, 0);
	return 0;
}

/* --- compression, syncing: the background thread --------------------------------------------- */

/* Compresses segment 'first' (sealed, a .seg) into a .zst beside it; runs without the lock. */
static int compress_file(struct spool *sp, uint64_t first, size_t *out_len)
{
	char src[4500], dst[4500], tmp[4600];
	size_t n = 0, bound, z;
	uint8_t *in, *out;
	int fd, rc = -1;

	seg_path(sp, first, false, src, sizeof(src));
	seg_path(sp, first, true, dst, sizeof(dst));
	snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
	in = read_all(src, MAX_SEGMENT, &n);
	if (in == NULL)
		return -1;
	bound = ZSTD_compressBound(n);
	out = malloc(bound);
	if (out != NULL) {
		z = ZSTD_compress(out, bound, in, n, sp->cfg.compress_level);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (!ZSTD_isError(z) && fd >= 0 && write(fd, out, z) == (ssize_t)z &&
		    (sp->cfg.sync == SPOOL_SYNC_NONE || fsync(fd) == 0) && rename(tmp, dst) == 0) {
			*out_len = z;
			rc = 0;
		}
		if (fd >= 0)
			close(fd);
		if (rc != 0)
			unlink(tmp);
		else if (sp->cfg.sync != SPOOL_SYNC_NONE)
			gd_sync_dir(sp->cfg.dir);
	}
	free(out);
	free(in);
	return rc;
}

/* One sealed segment worth compressing: still unacknowledged a while after it was sealed. */
static bool pick_compress(struct spool *sp, uint64_t *first)
{
	int64_t now = gd_mono_ms();

	for (size_t i = 0; i < sp->nsegs; i++) {
		struct seg *s = &sp->segs[i];

		if (s->sealed_ms != 0 && !s->compressed && s->last > sp->acked &&
		    now - s->sealed_ms >= COMPRESS_AGE_MS) {
			*first = s->first;
			return true;
		}
	}
	return false;
}

static void *spool_thread(void *arg)
{
	struct spool *sp = arg;
	int interval = sp->cfg.sync == SPOOL_SYNC_BATCH ? sp->cfg.sync_interval_ms : 1000;

	if (interval <= 0)
		interval = 100; /* not a busy loop */

	pthread_mutex_lock(&sp->lock);
	while (!sp->stop) {
		struct timespec ts;
		int64_t deadline = gd_mono_ms() + interval;
		uint64_t first, acked;
		size_t zlen = 0;
		int rc;

		ts.tv_sec = deadline / 1000;
		ts.tv_nsec = (deadline % 1000) * 1000000;
		pthread_cond_timedwait(&sp->cond, &sp->lock, &ts);
		if (sp->stop)
			break;
		if (sp->sealed_fd >= 0 || sp->dir_dirty) {
			int fd = sp->sealed_fd;
			bool dir = sp->dir_dirty;

			sp->sealed_fd = -1;
			sp->dir_dirty = false;
			pthread_mutex_unlock(&sp->lock);
			rc = fd >= 0 && sp->io.fdatasync(fd) != 0 ? errno : 0;
			if (fd >= 0)
				close(fd);
			if (dir)
				gd_sync_dir(sp->cfg.dir);
			pthread_mutex_lock(&sp->lock);
			if (fd >= 0)
				sp->st.syncs++;
			if (rc != 0) {
				sp->st.write_errors++;
				set_error(sp, "fdatasync of a sealed segment in %s: %s",
					  sp->cfg.dir, strerror(rc));
			}
		}
		if (sp->cfg.sync == SPOOL_SYNC_BATCH && sp->dirty && sp->active_fd >= 0) {
			int fd = dup(sp->active_fd);

			sp->dirty = false;
			sp->st.syncs++;
			pthread_mutex_unlock(&sp->lock);
			rc = fd >= 0 && sp->io.fdatasync(fd) == 0 ? 0 : errno;
			if (fd >= 0)
				close(fd);
			pthread_mutex_lock(&sp->lock);
			if (rc != 0) { /* the window may have been lost to a power cut: counted */
				sp->st.write_errors++;
				set_error(sp, "fdatasync of the active segment in %s: %s",
					  sp->cfg.dir, strerror(rc));
			}
		}
		if (sp->cursor_dirty) {
			acked = sp->acked;
			sp->cursor_dirty = false;
			pthread_mutex_unlock(&sp->lock);
			rc = write_cursor(sp, acked);
			if (rc != 0)
				log_warn(SUBSYS, "could not write the cursor in %s", sp->cfg.dir);
			pthread_mutex_lock(&sp->lock);
			if (rc != 0)
				sp->cursor_dirty = true; /* again next time, and at close */
		}
		/* The whole backlog, not one a wakeup: after a long outage there are many. */
		while (sp->cfg.compress && !sp->stop && pick_compress(sp, &first)) {
			pthread_mutex_unlock(&sp->lock);
			rc = compress_file(sp, first, &zlen);
			pthread_mutex_lock(&sp->lock);
			for (size_t i = 0; i < sp->nsegs; i++) {
				struct seg *s = &sp->segs[i];
				char path[4500];

				if (s->first != first)
					continue;
				if (rc == 0) {
					seg_path(sp, first, false, path, sizeof(path));
					unlink(path);
					reader_forget(sp, first);
					sp->st.disk_bytes -= s->disk;
					sp->st.disk_bytes += zlen;
					s->disk = zlen;
					s->compressed = true;
					sp->st.compressed++;
				} else {
					s->sealed_ms = gd_mono_ms(); /* again later */
				}
				first = 0;
			}
			if (rc == 0 && first != 0) { /* deleted meanwhile */
				char path[4500];

				seg_path(sp, first, true, path, sizeof(path));
				unlink(path);
			}
		}
	}
	pthread_mutex_unlock(&sp->lock);
	return NULL;
}

/* --- the interface --------------------------------------------------------------------------- */

struct spool *spool_open(const struct spool_config *cfg, const struct spool_io *io, char *why,
			 size_t cap)
{
	struct spool *sp = calloc(1, sizeof(*sp));
	pthread_condattr_t ca;

	if (sp == NULL) {
		gd_whyf(why, cap, "out of memory");
		return NULL;
	}
	sp->cfg = *cfg;
	sp->cfg.dir = cfg->dir != NULL ? strdup(cfg->dir) : NULL;
	sp->io.writev = io && io->writev ? io->writev : writev;
	sp->io.fdatasync = io && io->fdatasync ? io->fdatasync : fdatasync;
	sp->active_fd = sp->rd_fd = sp->sealed_fd = -1;
	if (sp->cfg.segment_bytes > sp->cfg.max_bytes / 8)
		sp->cfg.segment_bytes = sp->cfg.max_bytes / 8;
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->cursor_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (sp->cfg.dir == NULL || (mkdir(sp->cfg.dir, 0700) != 0 && errno != EEXIST) ||
	    access(sp->cfg.dir, W_OK | X_OK) != 0 || recover(sp) != 0) {
		gd_whyf(why, cap, "spool directory %s: %s", cfg->dir ? cfg->dir : "(none)",
			cfg->dir ? strerror(errno) : "not set");
		spool_close(sp);
		return NULL;
	}
	sp->st.segments = sp->nsegs;
	if (pthread_create(&sp->thread, NULL, spool_thread, sp) != 0) {
		gd_whyf(why, cap, "could not start the spool's thread");
		spool_close(sp);
		return NULL;
	}
	sp->thread_running = true;
	return sp;
}

void spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->stop = true;
	pthread_cond_broadcast(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
	if (sp->thread_running)
		pthread_join(sp->thread, NULL);
	if (sp->sealed_fd >= 0) {
		sp->io.fdatasync(sp->sealed_fd);
		close(sp->sealed_fd);
	}
	if (sp->dir_dirty)
		gd_sync_dir(sp->cfg.dir);
	if (sp->active_fd >= 0) {
		if (sp->cfg.sync != SPOOL_SYNC_NONE)
			sp->io.fdatasync(sp->active_fd);
		close(sp->active_fd);
	}
	if (sp->cursor_dirty)
		write_cursor(sp, sp->acked);
	if (sp->rd_fd >= 0)
		close(sp->rd_fd);
	free(sp->rd_buf);
	free(sp->segs);
	free(sp->cfg.dir);
	pthread_cond_destroy(&sp->cond);
	pthread_mutex_destroy(&sp->lock);
	pthread_mutex_destroy(&sp->cursor_lock);
	free(sp);
}

/* Makes room for 'need' more bytes on disk. 0, or GD_EFULL (drop-newest, or it cannot fit). */
static int make_room(struct spool *sp, uint64_t need)
{
	if (need > (uint64_t)sp->cfg.max_bytes / 2)
		return GD_EFULL;
	while (sp->st.disk_bytes + need > (uint64_t)sp->cfg.max_bytes) {
		uint64_t lost;

		if (sp->cfg.drop == QUEUE_DROP_NEWEST)
			return GD_EFULL;
		if (sp->nsegs == 1 && sp->active_fd >= 0)
			seal_active(sp);
		if (sp->nsegs == 0)
			return GD_EFULL;
		lost = unacked_in(sp, &sp->segs[0]);
		sp->st.dropped += lost;
		if (lost > 0 && sp->segs[0].last > sp->acked)
			sp->acked = sp->segs[0].last; /* what is gone is not waited for */
		delete_seg(sp, 0);
	}
	return 0;
}

/*
 * Cuts the active segment back to its last whole record after a failed write or sync. 0 when the
 * file holds no part of the record any more; -1 when it could not be cut: the segment is sealed
 * (what follows goes to a new file) and its tail is what it is.
 */
static int cut_back(struct spool *sp)
{
	struct seg *s = &sp->segs[sp->nsegs - 1];
	bool empty = s->count == 0;

	if (ftruncate(sp->active_fd, (off_t)s->raw) == 0)
		return 0;
	log_warn(SUBSYS, "could not cut %s/%020" PRIu64 ".seg back", sp->cfg.dir, s->first);
	seal_active(sp); /* an empty segment is deleted, with what was written */
	return empty ? 0 : -1;
}

static int open_active(struct spool *sp, uint64_t seq)
{
	char path[4500];
	struct seg *s;

	seg_path(sp, seq, false, path, sizeof(path));
	sp->active_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (sp->active_fd < 0)
		return GD_EIO;
	s = add_seg(sp);
	if (s == NULL) {
		close(sp->active_fd);
		sp->active_fd = -1;
		unlink(path);
		return GD_ENOMEM;
	}
	s->first = seq;
	if (sp->cfg.sync == SPOOL_SYNC_ALWAYS)
		gd_sync_dir(sp->cfg.dir);
	else if (sp->cfg.sync == SPOOL_SYNC_BATCH)
		sp->dir_dirty = true;
	return 0;
}

int spool_append(struct spool *sp, uint64_t seq, const void *data, size_t len)
{
	uint8_t hdr[HDR];
	struct iovec iov[2] = { { hdr, HDR }, { (void *)(uintptr_t)data, len } };
	struct seg *s;
	ssize_t w;
	int rc;

	if (len > MAX_RECORD)
		return GD_EINVAL;
	put32(hdr, (uint32_t)len);
	put64(hdr + 8, seq);
	put32(hdr + 4, record_crc(hdr, data, len));
	pthread_mutex_lock(&sp->lock);
	if (seq <= sp->last_seq) {
		pthread_mutex_unlock(&sp->lock);
		return GD_EINVAL;
	}
	sp->last_seq = seq; /* even if refused: numbering never goes back */
	if (sp->active_fd >= 0 &&
	    sp->segs[sp->nsegs - 1].raw + HDR + len > (uint64_t)sp->cfg.segment_bytes)
		seal_active(sp);
	rc = make_room(sp, HDR + len);
	if (rc != 0) {
		sp->st.refused++;
		goto out;
	}
	if (sp->active_fd < 0 && (rc = open_active(sp, seq)) != 0) {
		sp->st.write_errors++;
		set_error(sp, "could not open a segment in %s: %s", sp->cfg.dir, strerror(errno));
		goto out;
	}
	s = &sp->segs[sp->nsegs - 1];
	w = sp->io.writev(sp->active_fd, iov, 2);
	if (w != (ssize_t)(HDR + len)) {
		int err = w < 0 ? errno : ENOSPC;

		sp->st.write_errors++;
		set_error(sp, "writing a record to %s/%020" PRIu64 ".seg: %s (kept in memory only)",
			  sp->cfg.dir, s->first, strerror(err));
		cut_back(sp); /* a short write left part of it; -1 may have too */
		rc = GD_EIO;
		goto out;
	}
	if (sp->cfg.sync == SPOOL_SYNC_ALWAYS) {
		sp->st.syncs++;
		if (sp->io.fdatasync(sp->active_fd) != 0) {
			/*
			 * The record is not known to be on the disk (after a failed fdatasync the
			 * kernel may have dropped the pages) and the caller keeps it in memory:
			 * the file must not hold it too, or it is sent twice after a restart.
			 */
			int err = errno;

			sp->st.write_errors++;
			set_error(sp,
				  "fdatasync of %s/%020" PRIu64 ".seg: %s (kept in memory only)",
				  sp->cfg.dir, s->first, strerror(err));
			if (cut_back(sp) == 0) {
				rc = GD_EIO;
				goto out;
			}
			/* It stays in the (now sealed) file: held after all, read back. */
		}
	}
	s->raw += HDR + len;
	s->disk += HDR + len;
	s->last = seq;
	s->count++;
	sp->st.disk_bytes += HDR + len;
	sp->st.raw_bytes += HDR + len;
	sp->st.appended++;
	sp->dirty = sp->cfg.sync != SPOOL_SYNC_ALWAYS;
out:
	pthread_mutex_unlock(&sp->lock);
	return rc;
}

/* Loads segment 's' for reading: an fd for a .seg, the decompressed bytes for a .zst. */
static int reader_load(struct spool *sp, const struct seg *s)
{
	char path[4500];

	if (!s->compressed) {
		if (sp->rd_fd >= 0 && sp->rd_fd_first == s->first)
			return 0;
		if (sp->rd_fd >= 0)
			close(sp->rd_fd);
		seg_path(sp, s->first, false, path, sizeof(path));
		sp->rd_fd = open(path, O_RDONLY | O_CLOEXEC);
		sp->rd_fd_first = s->first;
		return sp->rd_fd >= 0 ? 0 : GD_EIO;
	}
	if (sp->rd_buf != NULL && sp->rd_buf_first == s->first)
		return 0;
	free(sp->rd_buf);
	sp->rd_buf = NULL;
	seg_path(sp, s->first, true, path, sizeof(path));
	{
		size_t n;
		uint8_t *file = read_all(path, MAX_SEGMENT, &n);

		if (file == NULL)
			return GD_EIO;
		sp->rd_buf = unzstd(file, n, &sp->rd_len);
		free(file);
	}
	sp->rd_buf_first = s->first;
	return sp->rd_buf != NULL ? 0 : GD_EIO;
}

/* The record at 'off' of loaded segment 's' into hdr and a malloc'd payload. 0, or GD_EIO. */
static int reader_record(struct spool *sp, const struct seg *s, uint64_t off, uint8_t *hdr,
			 void **payload)
{
	uint32_t len;

	if (s->compressed) {
		if (off + HDR > sp->rd_len)
			return GD_EIO;
		memcpy(hdr, sp->rd_buf + off, HDR);
	} else if (pread(sp->rd_fd, hdr, HDR, (off_t)off) != HDR) {
		return GD_EIO;
	}
	len = get32(hdr);
	if (len > MAX_RECORD || off + HDR + len > s->raw)
		return GD_EIO;
	*payload = malloc(len ? len : 1);
	if (*payload == NULL)
		return GD_ENOMEM;
	if (s->compressed)
		memcpy(*payload, sp->rd_buf + off + HDR, len);
	else if (pread(sp->rd_fd, *payload, len, (off_t)(off + HDR)) != (ssize_t)len)
		goto bad;
	if (record_crc(hdr, *payload, len) != get32(hdr + 4))
		goto bad;
	return 0;
bad:
	free(*payload);
	*payload = NULL;
	return GD_EIO;
}

int spool_next(struct spool *sp, uint64_t after, void **data, size_t *len, uint64_t *seq)
{
	size_t i = 0;
	uint64_t off = 0;
	int rc = 0;

	pthread_mutex_lock(&sp->lock);
	if (sp->rd_valid && sp->rd_after == after) {
		while (i < sp->nsegs && sp->segs[i].first != sp->rd_first)
			i++;
		if (i < sp->nsegs)
			off = sp->rd_off;
		else
			i = 0;
	}
	if (off == 0) {
		while (i < sp->nsegs && sp->segs[i].last <= after)
			i++;
	}
	for (; i < sp->nsegs; i++, off = 0) {
		struct seg *s = &sp->segs[i];
		uint64_t end = s->damaged ? s->dmg_off : s->raw;
		uint8_t hdr[HDR];
		void *payload = NULL;

		if (s->count == 0 || off >= end)
			continue;
		if (reader_load(sp, s) != 0)
			goto damaged;
		while (off < end) {
			int r = reader_record(sp, s, off, hdr, &payload);

			if (r == GD_ENOMEM) {
				rc = r;
				goto out;
			}
			if (r != 0)
				goto damaged;
			off += HDR + get32(hdr);
			if (get64(hdr + 8) > after) {
				*data = payload;
				*len = get32(hdr);
				*seq = get64(hdr + 8);
				sp->rd_valid = true;
				sp->rd_first = s->first;
				sp->rd_off = off;
				sp->rd_after = *seq;
				rc = 1;
				goto out;
			}
			free(payload);
		}
		continue;
	damaged:
		/*
		 * Counted once, and not read again from 'off' on: a .zst that does not decompress
		 * would fail on every call. 'raw' stays what the file holds (the active segment
		 * appends and cuts back by it); the active segment is sealed, so what comes next
		 * goes to a file that reads.
		 */
		sp->st.quarantined++;
		set_error(sp,
			  "segment %020" PRIu64 " does not read back at byte %" PRIu64 ": the "
			  "rest of it is skipped",
			  s->first, off);
		s->damaged = true;
		s->dmg_off = off;
		reader_forget(sp, s->first);
		if (i == sp->nsegs - 1 && sp->active_fd >= 0)
			seal_active(sp);
	}
out:
	pthread_mutex_unlock(&sp->lock);
	return rc;
}

void spool_ack(struct spool *sp, uint64_t seq)
{
	bool now = false;

	pthread_mutex_lock(&sp->lock);
	if (seq > sp->last_seq)
		seq = sp->last_seq;
	if (seq > sp->acked) {
		sp->acked = seq;
		/*
		 * The newest segment stays even when wholly acknowledged (active or not): until
		 * the cursor is on the disk it is the only record of last_seq, and a crash in
		 * between would otherwise make numbering start again below what was sent.
		 */
		while (sp->nsegs > 1 && sp->segs[0].last <= sp->acked)
			delete_seg(sp, 0);
		if (sp->cfg.sync == SPOOL_SYNC_ALWAYS)
			now = true;
		else
			sp->cursor_dirty = true;
	}
	pthread_mutex_unlock(&sp->lock);
	if (now && write_cursor(sp, seq) != 0)
		log_warn(SUBSYS, "could not write the cursor in %s", sp->cfg.dir);
}

uint64_t spool_last_seq(struct spool *sp)
{
	uint64_t s;

	pthread_mutex_lock(&sp->lock);
	s = sp->last_seq;
	pthread_mutex_unlock(&sp->lock);
	return s;
}

void spool_get_stats(struct spool *sp, struct spool_stats *out)
{
	uint64_t held = 0;

	pthread_mutex_lock(&sp->lock);
	*out = sp->st;
	out->segments = sp->nsegs;
	out->first_seq = sp->nsegs > 0 ? sp->segs[0].first : 0;
	out->last_seq = sp->last_seq;
	out->acked_seq = sp->acked;
	for (size_t i = 0; i < sp->nsegs; i++)
		held += unacked_in(sp, &sp->segs[i]);
	out->records = held;
	pthread_mutex_unlock(&sp->lock);
}

void uplink_spool_health(const struct spool_stats *st, struct jw *w)
{
	const struct {
		const char *key;
		uint64_t v;
	} f[] = {
		{ "records", st->records },	    { "disk_bytes", st->disk_bytes },
		{ "raw_bytes", st->raw_bytes },	    { "segments", st->segments },
		{ "first_seq", st->first_seq },	    { "last_seq", st->last_seq },
		{ "acked_seq", st->acked_seq },	    { "dropped", st->dropped },
		{ "refused", st->refused },	    { "write_errors", st->write_errors },
		{ "torn_tails", st->torn_tails },   { "torn_bytes", st->torn_bytes },
		{ "quarantined", st->quarantined }, { "cursor_damaged", st->cursor_damaged },
		{ "compressed", st->compressed },
	};

	jw_key(w, "spool");
	jw_object(w);
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		jw_key(w, f[i].key);
		jw_uint(w, f[i].v);
	}
	if (st->last_error[0] != '\0') {
		jw_key(w, "last_error");
		jw_string(w, st->last_error);
	}
	jw_end(w);
}
