/* test_spool.c: the spool on disk keeps every whole record through torn writes, damage, a full
 * disk and restarts, and hands back exactly the bytes it was given, never a damaged one.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "../../base/base.h"
#include "../../uplink/spool.h"

#define MAX_FILES 256

static char tmpdir[64]; /* mkdtemp: removed by teardown */
static char spdir[128]; /* the spool's directory inside it (made by spool_open) */

/* --- files ----------------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	log_set_level(LOG_LEVEL_ERROR); /* the damage below is on purpose: its warnings are noise */
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/spool-test-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(spdir, sizeof(spdir), "%s/spool", tmpdir);
}

static void teardown(void)
{
	rm_rf(tmpdir);
}

TestSuite(spool, .init = setup, .fini = teardown);
TestSuite(crc32c);

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long sz;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	rewind(f);
	buf = malloc((size_t)sz + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	buf[sz] = '\0'; /* the cursor is text */
	*n = (size_t)sz;
	return buf;
}

static void spit(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(data, 1, n, f), n);
	cr_assert_eq(fclose(f), 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in 'dir' ending in 'suffix' (NULL: every .seg and .zst), sorted; caller frees each. */
static size_t list_files(const char *dir, const char *suffix, char **names)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		bool want;

		if (suffix != NULL)
			want = l > strlen(suffix) &&
			       strcmp(e->d_name + l - strlen(suffix), suffix) == 0;
		else
			want = l > 4 && (strcmp(e->d_name + l - 4, ".seg") == 0 ||
					 strcmp(e->d_name + l - 4, ".zst") == 0);
		if (want && e->d_name[0] != '.') {
			cr_assert_lt(n, MAX_FILES);
			names[n++] = strdup(e->d_name);
		}
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	return n;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
}

static size_t count_files(const char *dir, const char *suffix)
{
	char *names[MAX_FILES];
	size_t n = list_files(dir, suffix, names);

	free_names(names, n);
	return n;
}

/* Bytes of the segment files in the spool's directory, as the disk has them. */
static uint64_t bytes_on_disk(void)
{
	char *names[MAX_FILES], path[512];
	size_t n = list_files(spdir, NULL, names);
	uint64_t sum = 0;
	struct stat sb;

	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", spdir, names[i]);
		cr_assert_eq(stat(path, &sb), 0);
		sum += (uint64_t)sb.st_size;
	}
	free_names(names, n);
	return sum;
}

static size_t quarantined_files(void)
{
	char q[256];

	snprintf(q, sizeof(q), "%s/quarantine", spdir);
	return count_files(q, "");
}

/* A copy of the spool's directory as it is now, to lay out again and damage (files only). */
struct image {
	size_t n;
	char *name[MAX_FILES];
	uint8_t *data[MAX_FILES];
	size_t len[MAX_FILES];
};

static void image_take(struct image *im)
{
	DIR *d = opendir(spdir);
	struct dirent *e;
	char path[512];

	cr_assert_not_null(d);
	im->n = 0;
	while ((e = readdir(d)) != NULL) {
		struct stat sb;

		snprintf(path, sizeof(path), "%s/%s", spdir, e->d_name);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		im->name[im->n] = strdup(e->d_name);
		im->data[im->n] = slurp(path, &im->len[im->n]);
		im->n++;
	}
	closedir(d);
}

static void image_free(struct image *im)
{
	for (size_t i = 0; i < im->n; i++) {
		free(im->name[i]);
		free(im->data[i]);
	}
	im->n = 0;
}

static ssize_t image_find(const struct image *im, const char *name)
{
	for (size_t i = 0; i < im->n; i++) {
		if (strcmp(im->name[i], name) == 0)
			return (ssize_t)i;
	}
	return -1;
}

/* Replaces the spool's directory with the image. */
static void image_lay_out(const struct image *im)
{
	char path[512];

	rm_rf(spdir);
	cr_assert_eq(mkdir(spdir, 0700), 0);
	for (size_t i = 0; i < im->n; i++) {
		snprintf(path, sizeof(path), "%s/%s", spdir, im->name[i]);
		spit(path, im->data[i], im->len[i]);
	}
}

/* --- records --------------------------------------------------------------------------------- */

static uint32_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/*
 * The payload of record 'seq' (0 to 120 bytes, some empty): its length and bytes follow from
 * seq, so a record handed back with the wrong bytes, or under the wrong number, shows.
 */
static size_t payload(uint64_t seq, uint8_t *buf)
{
	size_t len = (size_t)((seq * 37) % 121);

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)mix(seq * 1000 + i);
	return len;
}

static void append_range(struct spool *sp, uint64_t from, uint64_t to)
{
	uint8_t buf[128];

	for (uint64_t s = from; s <= to; s++) {
		size_t len = payload(s, buf);

		cr_assert_eq(spool_append(sp, s, buf, len), 0, "append of %" PRIu64, s);
	}
}

/* The record after 'after' must be 'want', with its bytes. */
static void expect_next(struct spool *sp, uint64_t after, uint64_t want)
{
	uint8_t buf[128];
	void *data = NULL;
	size_t len = 0, wlen = payload(want, buf);
	uint64_t seq = 0;

	cr_assert_eq(spool_next(sp, after, &data, &len, &seq), 1, "nothing after %" PRIu64, after);
	cr_assert_eq(seq, want, "after %" PRIu64 ": %" PRIu64 ", not %" PRIu64, after, seq, want);
	cr_assert_eq(len, wlen);
	cr_assert_eq(memcmp(data, buf, len), 0, "the bytes of record %" PRIu64, seq);
	free(data);
}

/*
 * Every record after 'after', in order, into seqs (up to 'max'). Each must be strictly above the
 * one before and hold exactly the bytes payload() gives for its number: the spool may lose
 * records to damage, never hand back a changed one.
 */
static size_t read_all(struct spool *sp, uint64_t after, uint64_t *seqs, size_t max)
{
	uint8_t buf[128];
	size_t n = 0;

	for (;;) {
		void *data = NULL;
		size_t len = 0;
		uint64_t seq = 0;
		int r = spool_next(sp, after, &data, &len, &seq);

		cr_assert_geq(r, 0);
		if (r == 0)
			break;
		cr_assert_gt(seq, after, "record %" PRIu64 " after %" PRIu64, seq, after);
		cr_assert_eq(len, payload(seq, buf), "length of record %" PRIu64, seq);
		cr_assert_eq(memcmp(data, buf, len), 0, "bytes of record %" PRIu64, seq);
		free(data);
		cr_assert_lt(n, max);
		seqs[n++] = seq;
		after = seq;
	}
	return n;
}

/* That 'seqs' (n of them) are exactly from..to. */
static void expect_range(const uint64_t *seqs, size_t n, uint64_t from, uint64_t to)
{
	cr_assert_eq(n, to >= from ? to - from + 1 : 0, "%zu records, not %" PRIu64 "..%" PRIu64, n,
		     from, to);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(seqs[i], from + i);
}

static struct spool_stats stats(struct spool *sp)
{
	struct spool_stats s;

	spool_get_stats(sp, &s);
	return s;
}

static struct spool_config conf(void)
{
	return (struct spool_config){
		.enabled = true,
		.dir = spdir,
		.sync = SPOOL_SYNC_NONE, /* fast on a real disk; sync policies have their test */
		.sync_interval_ms = 20,
		.max_bytes = 64ll << 20,
		.drop = QUEUE_DROP_OLDEST,
		.segment_bytes = 512,
		.compress = false,
		.compress_level = 3,
	};
}

static struct spool *open_ok(const struct spool_config *cfg, const struct spool_io *io)
{
	char why[300] = "";
	struct spool *sp = spool_open(cfg, io, why, sizeof(why));

	cr_assert_not_null(sp, "spool_open: %s", why);
	return sp;
}

/* The first seq of each segment file (named by it), sorted. */
static size_t seg_firsts(uint64_t *firsts)
{
	char *names[MAX_FILES];
	size_t n = list_files(spdir, NULL, names);

	for (size_t i = 0; i < n; i++)
		firsts[i] = strtoull(names[i], NULL, 10);
	free_names(names, n);
	return n;
}

/* The byte offsets at which the records of segment 'buf' end (as its headers say). */
static size_t record_ends(const uint8_t *buf, size_t n, size_t *ends)
{
	size_t off = 0, k = 0;

	while (off + 16 <= n) {
		uint32_t len = (uint32_t)buf[off] | (uint32_t)buf[off + 1] << 8 |
			       (uint32_t)buf[off + 2] << 16 | (uint32_t)buf[off + 3] << 24;

		off += 16 + len;
		ends[k++] = off;
	}
	cr_assert_eq(off, n, "a segment we wrote ends at a record");
	return k;
}

/* --- CRC-32C --------------------------------------------------------------------------------- */

/* One bit at a time, straight from the definition: what the table-driven one must agree with. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n-- > 0) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

Test(crc32c, known_vectors)
{
	uint8_t buf[32];

	cr_assert_eq(gd_crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(gd_crc32c(0, "", 0), 0);
	/* RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of ones, ascending. */
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(gd_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(gd_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	cr_assert_eq(gd_crc32c(0, buf, 32), 0x46DD794Eu);
}

Test(crc32c, incremental_equals_one_shot_and_reference)
{
	uint8_t buf[1031];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)mix(i);
	/* Every length (the eight-byte loop and its tail) and every alignment of the start. */
	for (size_t n = 0; n < 80; n++) {
		for (size_t a = 0; a < 8; a++) {
			cr_assert_eq(gd_crc32c(0, buf + a, n), crc_ref(0, buf + a, n),
				     "n %zu a %zu", n, a);
			/* The table path too, where the CPU instruction serves gd_crc32c. */
			cr_assert_eq(gd_crc32c_portable(0, buf + a, n), crc_ref(0, buf + a, n),
				     "portable: n %zu a %zu", n, a);
		}
	}
	cr_assert_eq(gd_crc32c(0, buf, sizeof(buf)), crc_ref(0, buf, sizeof(buf)));
	for (size_t cut = 0; cut <= sizeof(buf); cut++) {
		uint32_t c = gd_crc32c(0, buf, cut);

		cr_assert_eq(gd_crc32c(c, buf + cut, sizeof(buf) - cut),
			     gd_crc32c(0, buf, sizeof(buf)), "split at %zu", cut);
	}
	cr_assert_eq(gd_crc32c(gd_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* --- appending, reading, acknowledging, reopening -------------------------------------------- */

Test(spool, round_trip_ack_and_reopen)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	uint64_t seqs[300], firsts[MAX_FILES] = { 0 };
	struct stat sb;
	struct spool_stats st;
	size_t n, nf;
	char path[512];

	cr_assert_eq(stat(spdir, &sb), 0, "spool_open makes the directory");
	cr_assert_eq(sb.st_mode & 0777, 0700);
	cr_assert_eq(spool_last_seq(sp), 0);
	append_range(sp, 1, 200);
	cr_assert_eq(spool_append(sp, 200, "x", 1), GD_EINVAL, "a seq not above the last");
	cr_assert_eq(spool_append(sp, 7, "x", 1), GD_EINVAL);
	n = read_all(sp, 0, seqs, 300);
	expect_range(seqs, n, 1, 200);
	st = stats(sp);
	cr_assert_eq(st.appended, 200);
	cr_assert_eq(st.records, 200);
	cr_assert_eq(st.first_seq, 1);
	cr_assert_eq(st.last_seq, 200);
	cr_assert_gt(st.segments, 5, "512-byte segments: many files");
	cr_assert_eq(st.segments, count_files(spdir, ".seg"));
	cr_assert_eq(st.disk_bytes, bytes_on_disk());
	cr_assert_eq(st.raw_bytes, st.disk_bytes);

	spool_ack(sp, 100);
	/* No segment wholly at or below 100 is left; the one holding 101 is. A segment's last
	 * record is the one before the next segment's first (the numbering has no gaps). */
	nf = seg_firsts(firsts);
	cr_assert_leq(firsts[0], 101);
	for (size_t i = 0; i + 1 < nf; i++)
		cr_assert_gt(firsts[i + 1] - 1, 100, "segment %" PRIu64 " is wholly acked",
			     firsts[i]);
	st = stats(sp);
	cr_assert_eq(st.acked_seq, 100);
	cr_assert_eq(st.records, 100);
	cr_assert_eq(st.segments, nf);
	cr_assert_eq(st.disk_bytes, bytes_on_disk(), "deleted files leave the count");
	expect_next(sp, 100, 101);
	spool_close(sp);

	snprintf(path, sizeof(path), "%s/cursor", spdir);
	cr_assert_eq(access(path, F_OK), 0, "close writes the cursor");
	sp = open_ok(&cfg, NULL);
	st = stats(sp);
	cr_assert_eq(spool_last_seq(sp), 200, "numbering goes on from the last record");
	cr_assert_eq(st.acked_seq, 100, "the cursor is honoured");
	cr_assert_eq(st.records, 100);
	cr_assert_eq(st.torn_tails + st.quarantined + st.cursor_damaged, 0);
	n = read_all(sp, st.acked_seq, seqs, 300);
	expect_range(seqs, n, 101, 200);
	cr_assert_eq(spool_append(sp, 200, "x", 1), GD_EINVAL, "numbering does not go back");
	append_range(sp, 201, 210);
	n = read_all(sp, 100, seqs, 300);
	expect_range(seqs, n, 101, 210);
	spool_ack(sp, 210);
	spool_close(sp);

	sp = open_ok(&cfg, NULL);
	cr_assert_eq(spool_last_seq(sp), 210);
	cr_assert_eq(stats(sp).records, 0);
	cr_assert_eq(read_all(sp, 0, seqs, 300), 0, "everything was acknowledged");
	cr_assert_eq(count_files(spdir, ".seg"), 0, "and nothing acknowledged is kept");
	spool_close(sp);
}

/* A reader that asks from an older place than its last is served from there, not its cache. */
Test(spool, next_from_any_place)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);

	append_range(sp, 1, 60);
	expect_next(sp, 0, 1);
	expect_next(sp, 1, 2);
	expect_next(sp, 40, 41);
	expect_next(sp, 2, 3);
	expect_next(sp, 59, 60);
	append_range(sp, 61, 61);
	expect_next(sp, 60, 61);
	spool_close(sp);
}

/*
 * A crash after the broker acknowledged everything but before the cursor reached the disk:
 * numbering must still go on from the last record, or the next boot reuses numbers the broker
 * has already seen. (The child opens the spool, acknowledges all and exits without closing.)
 */
Test(spool, last_seq_survives_a_crash_after_acking_all)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	pid_t pid;
	int status;

	append_range(sp, 1, 50);
	spool_close(sp);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spool *c = spool_open(&cfg, NULL, NULL, 0);

		if (c == NULL)
			_exit(2);
		spool_ack(c, 50); /* 'none': the cursor waits for the thread (a second) */
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	sp = open_ok(&cfg, NULL);
	cr_assert_eq(spool_last_seq(sp), 50);
	spool_close(sp);
}

/* --- torn tails: a cut at every byte ---------------------------------------------------------- */

Test(spool, truncation_at_every_offset_of_the_last_segment)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	struct image im;
	char *names[MAX_FILES];
	uint64_t seqs[64], first_last;
	size_t ends[64], nends, nnames;
	ssize_t last;
	uint8_t *orig;
	size_t orig_len;

	append_range(sp, 1, 17);
	spool_close(sp);
	image_take(&im);
	nnames = list_files(spdir, ".seg", names);
	cr_assert_geq(nnames, 2, "a sealed segment before the last");
	last = image_find(&im, names[nnames - 1]);
	first_last = strtoull(names[nnames - 1], NULL, 10);
	free_names(names, nnames);
	cr_assert_geq(last, 0);
	orig = im.data[last];
	orig_len = im.len[last];
	nends = record_ends(orig, orig_len, ends);
	cr_assert_geq(nends, 3, "a few records in the last segment");
	cr_assert_eq(first_last + nends - 1, 17);

	for (size_t cut = 0; cut <= orig_len; cut++) {
		size_t whole = 0, boundary = 0, n;
		uint64_t expect_last;
		struct spool_stats st;

		while (whole < nends && ends[whole] <= cut)
			boundary = ends[whole++];
		expect_last = first_last - 1 + whole;
		im.len[last] = cut;
		image_lay_out(&im);

		sp = open_ok(&cfg, NULL);
		st = stats(sp);
		cr_assert_eq(st.torn_tails, cut != boundary, "cut at %zu", cut);
		cr_assert_eq(st.torn_bytes, cut - boundary, "cut at %zu", cut);
		cr_assert_eq(st.quarantined, 0, "a torn tail is not damage (cut at %zu)", cut);
		cr_assert_eq(spool_last_seq(sp), expect_last, "cut at %zu", cut);
		n = read_all(sp, 0, seqs, 64);
		expect_range(seqs, n, 1, expect_last);
		/* Appending after the repair: the new record follows the whole ones, no garbage. */
		append_range(sp, expect_last + 1, expect_last + 1);
		n = read_all(sp, 0, seqs, 64);
		expect_range(seqs, n, 1, expect_last + 1);
		spool_close(sp);

		sp = open_ok(&cfg, NULL);
		st = stats(sp);
		cr_assert_eq(st.torn_tails + st.quarantined, 0, "repaired for good (cut at %zu)",
			     cut);
		n = read_all(sp, 0, seqs, 64);
		expect_range(seqs, n, 1, expect_last + 1);
		cr_assert_eq(st.disk_bytes, bytes_on_disk());
		spool_close(sp);
	}
	im.len[last] = orig_len;
	image_free(&im);
}

/* --- damage: random bytes changed ----------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

Test(spool, random_damage_never_delivers_a_changed_record)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	struct image im;
	char *names[MAX_FILES];
	size_t nsegs;
	uint64_t firsts[MAX_FILES], seqs[128];
	const uint64_t total = 60;

	append_range(sp, 1, total);
	spool_close(sp);
	image_take(&im);
	nsegs = list_files(spdir, ".seg", names);
	cr_assert_geq(nsegs, 4);
	for (size_t i = 0; i < nsegs; i++)
		firsts[i] = strtoull(names[i], NULL, 10);

	rng_state = 0x5eed5eed12345678ull;
	for (int iter = 0; iter < 400; iter++) {
		size_t k = rng() % nsegs, flips = 1 + rng() % 3, n, gap_from = 0, gap_to = 0;
		ssize_t f = image_find(&im, names[k]);
		uint8_t *saved = malloc(im.len[f]);
		uint64_t seg_last = k + 1 < nsegs ? firsts[k + 1] - 1 : total, want = 1;
		struct spool_stats st;

		cr_assert_geq(f, 0);
		memcpy(saved, im.data[f], im.len[f]);
		for (size_t j = 0; j < flips; j++)
			im.data[f][rng() % im.len[f]] ^= (uint8_t)(1 + rng() % 255);
		image_lay_out(&im);
		memcpy(im.data[f], saved, im.len[f]);
		free(saved);

		sp = open_ok(&cfg, NULL);
		st = stats(sp);
		n = read_all(sp, 0, seqs, 128);
		/* What is missing is one run: from the first damaged record to its segment's end.
		 */
		for (size_t i = 0; i < n; i++, want++) {
			if (seqs[i] != want) {
				cr_assert_eq(gap_from, 0, "iter %d: a second gap at %" PRIu64, iter,
					     want);
				gap_from = want;
				gap_to = seqs[i] - 1;
				want = seqs[i];
			}
		}
		if (want <= total) { /* the gap runs to the end */
			cr_assert_eq(gap_from, 0, "iter %d", iter);
			gap_from = want;
			gap_to = total;
		}
		cr_assert_neq(gap_from, 0, "iter %d: CRC-32C misses no change of up to 3 bytes",
			      iter);
		cr_assert(gap_from >= firsts[k] && gap_to == seg_last,
			  "iter %d: segment %" PRIu64 "..%" PRIu64 " damaged, lost %" PRIu64
			  "..%" PRIu64,
			  iter, firsts[k], seg_last, gap_from, gap_to);
		cr_assert_geq(st.torn_tails + st.quarantined, 1, "iter %d: damage is counted",
			      iter);
		if (k + 1 < nsegs) {
			cr_assert_eq(st.quarantined, 1, "iter %d", iter);
			cr_assert_eq(quarantined_files(), 1, "iter %d: a copy for a person", iter);
		}
		cr_assert_eq(st.disk_bytes, bytes_on_disk(), "iter %d", iter);
		append_range(sp, total + 1, total + 1);
		expect_next(sp, total, total + 1);
		spool_close(sp);

		/* Repaired: a second open finds nothing wrong and the same records. */
		sp = open_ok(&cfg, NULL);
		st = stats(sp);
		cr_assert_eq(st.torn_tails + st.quarantined, 0, "iter %d", iter);
		cr_assert_eq(read_all(sp, 0, seqs, 128), n + 1, "iter %d", iter);
		spool_close(sp);
	}
	free_names(names, nsegs);
	image_free(&im);
}

/* Damage in the middle of the newest segment is not a torn tail: the records after it may be
 * whole, so a copy is kept as for any other segment. */
Test(spool, damage_inside_the_newest_segment_is_kept_in_quarantine)
{
	struct spool_config cfg = conf();
	struct spool *sp;
	char *names[MAX_FILES], path[512];
	size_t n, ends[64], nends, len;
	uint8_t *buf;
	uint64_t seqs[64], first;

	cfg.segment_bytes = 4096;
	sp = open_ok(&cfg, NULL);
	append_range(sp, 1, 20);
	spool_close(sp);
	n = list_files(spdir, ".seg", names);
	cr_assert_eq(n, 1);
	first = strtoull(names[0], NULL, 10);
	snprintf(path, sizeof(path), "%s/%s", spdir, names[0]);
	free_names(names, n);
	buf = slurp(path, &len);
	nends = record_ends(buf, len, ends);
	buf[ends[4] + 20] ^= 0x40; /* inside record 6's payload or header */
	spit(path, buf, len);
	free(buf);
	sp = open_ok(&cfg, NULL);
	n = read_all(sp, 0, seqs, 64);
	expect_range(seqs, n, first, first + 4);
	cr_assert_eq(stats(sp).quarantined, 1);
	cr_assert_eq(stats(sp).torn_tails, 0);
	cr_assert_eq(quarantined_files(), 1);
	cr_assert_eq(nends, 20);
	spool_close(sp);
}

/* The quarantine keeps the newest copies only, so damage cannot fill the disk. */
Test(spool, quarantine_keeps_sixteen)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	char *names[MAX_FILES], path[512];
	size_t n, len;
	uint8_t *buf;

	append_range(sp, 1, 300);
	spool_close(sp);
	n = list_files(spdir, ".seg", names);
	cr_assert_gt(n, 20);
	for (size_t i = 0; i + 1 < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", spdir, names[i]);
		buf = slurp(path, &len);
		buf[20] ^= 1;
		spit(path, buf, len);
		free(buf);
	}
	sp = open_ok(&cfg, NULL);
	cr_assert_eq(stats(sp).quarantined, n - 1);
	cr_assert_eq(quarantined_files(), 16);
	spool_close(sp);
	free_names(names, n);
}

/*
 * A segment that goes bad while the spool is open (a read error, a changed file) is skipped
 * from the damage on, counted once however often the reader comes back to it, and does not
 * stop the records after it, even ones appended to the same (active) segment's successor.
 */
Test(spool, damage_found_while_reading)
{
	struct spool_config cfg = conf();
	struct spool *sp;
	char *names[MAX_FILES], path[512];
	uint64_t seqs[128];
	size_t n, nn, len;
	uint8_t *buf;
	int fd;

	cfg.segment_bytes = 2048;
	sp = open_ok(&cfg, NULL);
	append_range(sp, 1, 60);
	nn = list_files(spdir, ".seg", names);
	cr_assert_geq(nn, 3);

	/* A sealed segment, changed under the spool's feet: its first record. */
	snprintf(path, sizeof(path), "%s/%s", spdir, names[0]);
	fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "\xff", 1, 20), 1);
	close(fd);
	n = read_all(sp, 0, seqs, 128);
	cr_assert_eq(seqs[0], strtoull(names[1], NULL, 10), "the damaged segment is skipped");
	expect_range(seqs, n, seqs[0], 60);
	cr_assert_eq(stats(sp).quarantined, 1);
	read_all(sp, 0, seqs, 128);
	cr_assert_eq(stats(sp).quarantined, 1, "counted once");

	/* The active one, at its second record: what was appended after it still reads. */
	snprintf(path, sizeof(path), "%s/%s", spdir, names[nn - 1]);
	{
		size_t ends[64];

		buf = slurp(path, &len);
		record_ends(buf, len, ends);
		free(buf);
		fd = open(path, O_WRONLY);
		cr_assert_geq(fd, 0);
		cr_assert_eq(pwrite(fd, "\xff", 1, (off_t)ends[0] + 8), 1);
		close(fd);
	}
	n = read_all(sp, strtoull(names[nn - 1], NULL, 10) - 1, seqs, 128);
	cr_assert_eq(n, 1, "the first record of the active segment, then the damage");
	cr_assert_eq(stats(sp).quarantined, 2);
	append_range(sp, 61, 65);
	n = read_all(sp, 60, seqs, 128);
	expect_range(seqs, n, 61, 65);
	read_all(sp, 0, seqs, 128);
	cr_assert_eq(stats(sp).quarantined, 2, "counted once");
	cr_assert_eq(stats(sp).disk_bytes, bytes_on_disk());
	spool_close(sp);
	free_names(names, nn);
}

/* --- the cursor ------------------------------------------------------------------------------ */

Test(spool, damaged_cursor_means_everything_again)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	struct image im;
	ssize_t c;
	uint8_t *orig, garbage[200];
	size_t orig_len, n;
	uint64_t seqs[64], first_held;

	append_range(sp, 1, 30);
	spool_ack(sp, 12);
	spool_close(sp);
	image_take(&im);
	c = image_find(&im, "cursor");
	cr_assert_geq(c, 0, "close wrote the cursor");
	orig = im.data[c];
	orig_len = im.len[c];
	sp = open_ok(&cfg, NULL);
	first_held = stats(sp).first_seq;
	cr_assert_eq(stats(sp).acked_seq, 12);
	cr_assert_leq(first_held, 13);
	spool_close(sp);

	for (size_t cut = 0; cut <= orig_len + 2; cut++) {
		struct spool_stats st;
		bool whole = cut + 1 >= orig_len && cut <= orig_len; /* all but the last newline */

		if (cut == orig_len + 1) { /* garbage */
			for (size_t i = 0; i < sizeof(garbage); i++)
				garbage[i] = (uint8_t)mix(i);
			im.data[c] = garbage;
			im.len[c] = sizeof(garbage);
		} else if (cut == orig_len + 2) { /* the right form, a changed number */
			static char text[200];

			snprintf(text, sizeof(text), "%.*s", (int)orig_len, (const char *)orig);
			*strstr(text, "acked 12") = '\0';
			strcat(text, "acked 29\n");
			strcat(text, strstr((const char *)orig, "crc "));
			im.data[c] = (uint8_t *)text;
			im.len[c] = strlen(text);
			whole = false;
		} else {
			im.data[c] = orig;
			im.len[c] = cut;
		}
		image_lay_out(&im);
		sp = open_ok(&cfg, NULL);
		st = stats(sp);
		if (!whole) {
			cr_assert_eq(st.cursor_damaged, 1, "cut at %zu", cut);
			cr_assert_eq(st.acked_seq, 0, "cut at %zu", cut);
			cr_assert_neq(st.last_error[0], '\0');
			n = read_all(sp, st.acked_seq, seqs, 64);
			expect_range(seqs, n, first_held, 30); /* every record held, again */
		} else {
			cr_assert_eq(st.acked_seq, 12, "cut at %zu", cut);
			n = read_all(sp, st.acked_seq, seqs, 64);
			expect_range(seqs, n, 13, 30);
		}
		cr_assert_eq(spool_last_seq(sp), 30);
		spool_close(sp);
	}
	im.data[c] = orig;
	im.len[c] = orig_len;
	image_free(&im);
}

/* --- write faults ------------------------------------------------------------------------------
 */

enum fault { FAULT_NONE, FAULT_SHORT, FAULT_ENOSPC, FAULT_EIO_PARTIAL, FAULT_SYNC };

static enum fault fault;
static int sync_calls;

/* Writes part of the record, as a full disk does, and says so, or fails outright. */
static ssize_t fault_writev(int fd, const struct iovec *iov, int n)
{
	struct iovec part[2];
	size_t total = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (fault == FAULT_NONE || fault == FAULT_SYNC)
		return writev(fd, iov, n);
	if (fault == FAULT_ENOSPC) {
		errno = ENOSPC;
		return -1;
	}
	/* Short: the header and half the payload. Partial EIO: 7 bytes, then the error. */
	part[0] = iov[0];
	part[1] = iov[1];
	if (fault == FAULT_EIO_PARTIAL) {
		part[0].iov_len = 7;
		if (writev(fd, part, 1) != 7)
			return -1;
		errno = EIO;
		return -1;
	}
	part[1].iov_len /= 2;
	(void)total;
	return writev(fd, part, 2);
}

static int fault_fdatasync(int fd)
{
	sync_calls++;
	if (fault == FAULT_SYNC) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static const struct spool_io fault_io = { fault_writev, fault_fdatasync };

Test(spool, write_faults_leave_only_whole_records)
{
	static const struct {
		enum fault f;
		const char *err;
	} cases[] = {
		{ FAULT_SHORT, "No space left on device" },
		{ FAULT_ENOSPC, "No space left on device" },
		{ FAULT_EIO_PARTIAL, "Input/output error" },
		{ FAULT_SYNC, "Input/output error" },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct spool_config cfg = conf();
		struct spool *sp;
		struct spool_stats st;
		uint64_t seqs[128], want[128];
		uint8_t buf[128];
		size_t n, nwant = 0;

		rm_rf(spdir);
		cfg.sync = cases[c].f == FAULT_SYNC ? SPOOL_SYNC_ALWAYS : SPOOL_SYNC_NONE;
		sp = open_ok(&cfg, &fault_io);
		for (uint64_t s = 1; s <= 70; s++) {
			/* Faults on the first record of a segment, inside one, several in a row. */
			bool fail = s == 1 || s == 9 || s == 10 || s == 33 || s % 17 == 0;
			size_t len = payload(s, buf);
			int rc;

			fault = fail ? cases[c].f : FAULT_NONE;
			rc = spool_append(sp, s, buf, len);
			fault = FAULT_NONE;
			if (fail) {
				cr_assert_eq(rc, GD_EIO, "case %zu seq %" PRIu64, c, s);
			} else {
				cr_assert_eq(rc, 0, "case %zu seq %" PRIu64, c, s);
				want[nwant++] = s;
			}
		}
		st = stats(sp);
		cr_assert_eq(st.write_errors, 70 - nwant, "case %zu", c);
		cr_assert_eq(st.appended, nwant);
		cr_assert_not_null(strstr(st.last_error, cases[c].err), "case %zu: %s", c,
				   st.last_error);
		cr_assert_eq(st.disk_bytes, bytes_on_disk(), "case %zu: cut back", c);
		n = read_all(sp, 0, seqs, 128);
		cr_assert_eq(n, nwant, "case %zu", c);
		cr_assert_eq(memcmp(seqs, want, n * sizeof(*seqs)), 0, "case %zu", c);
		spool_close(sp);

		sp = open_ok(&cfg, NULL);
		st = stats(sp);
		cr_assert_eq(st.torn_tails + st.quarantined, 0, "case %zu: no garbage between", c);
		n = read_all(sp, 0, seqs, 128);
		cr_assert_eq(n, nwant, "case %zu", c);
		cr_assert_eq(memcmp(seqs, want, n * sizeof(*seqs)), 0, "case %zu", c);
		cr_assert_eq(spool_last_seq(sp), 70, "case %zu", c);
		spool_close(sp);
	}
}

/* --- the cap --------------------------------------------------------------------------------- */

/* 1000 bytes that follow from seq, for the cap tests (the spool's bytes must come back). */
static void big_payload(uint64_t seq, uint8_t *buf)
{
	for (size_t i = 0; i < 1000; i++)
		buf[i] = (uint8_t)mix(seq * 7919 + i);
}

static void expect_big(struct spool *sp, uint64_t after, uint64_t *first, uint64_t *last,
		       size_t *count)
{
	uint8_t want[1000];
	void *data;
	size_t len;
	uint64_t seq;

	*count = 0;
	*first = *last = 0;
	while (spool_next(sp, after, &data, &len, &seq) == 1) {
		big_payload(seq, want);
		cr_assert_eq(len, 1000);
		cr_assert_eq(memcmp(data, want, len), 0, "record %" PRIu64, seq);
		free(data);
		if (*count == 0)
			*first = seq;
		else
			cr_assert_eq(seq, *last + 1, "no holes in what is kept");
		*last = after = seq;
		(*count)++;
	}
}

Test(spool, cap_drop_oldest_keeps_the_newest)
{
	struct spool_config cfg = conf();
	struct spool *sp;
	struct spool_stats st;
	uint8_t buf[1000];
	uint64_t first, last;
	size_t count;

	cfg.max_bytes = 1 << 20;
	cfg.segment_bytes = 64 << 10;
	sp = open_ok(&cfg, NULL);
	for (uint64_t s = 1; s <= 3000; s++) {
		big_payload(s, buf);
		cr_assert_eq(spool_append(sp, s, buf, sizeof(buf)), 0);
		st = stats(sp);
		cr_assert_leq(st.disk_bytes, (uint64_t)cfg.max_bytes, "after %" PRIu64, s);
	}
	cr_assert_leq(bytes_on_disk(), (uint64_t)cfg.max_bytes);
	cr_assert_eq(st.disk_bytes, bytes_on_disk());
	cr_assert_gt(st.dropped, 0);
	cr_assert_eq(st.dropped + st.records, 3000, "dropped and held add up");
	cr_assert_gt(st.disk_bytes, (uint64_t)cfg.max_bytes * 3 / 4, "the cap is used");
	expect_big(sp, 0, &first, &last, &count);
	cr_assert_eq(last, 3000, "the newest are kept");
	cr_assert_eq(first, st.dropped + 1);
	cr_assert_eq(count, st.records);
	{
		uint8_t *huge = calloc(1, 600 << 10);

		cr_assert_eq(spool_append(sp, 3001, huge, 600 << 10), GD_EFULL,
			     "above half the cap");
		free(huge);
	}
	cr_assert_eq(stats(sp).refused, 1);
	spool_close(sp);

	sp = open_ok(&cfg, NULL);
	expect_big(sp, 0, &first, &last, &count);
	cr_assert_eq(last, 3000);
	cr_assert_eq(first, st.dropped + 1, "what was dropped stays dropped");
	spool_close(sp);
}

Test(spool, cap_drop_newest_refuses)
{
	struct spool_config cfg = conf();
	struct spool *sp;
	struct spool_stats st;
	uint8_t buf[1000];
	uint64_t s, accepted = 0, first, last;
	size_t count;

	cfg.max_bytes = 1 << 20;
	cfg.segment_bytes = 64 << 10;
	cfg.drop = QUEUE_DROP_NEWEST;
	sp = open_ok(&cfg, NULL);
	for (s = 1; s <= 1500; s++) {
		int rc;

		big_payload(s, buf);
		rc = spool_append(sp, s, buf, sizeof(buf));
		cr_assert(rc == 0 || rc == GD_EFULL);
		if (rc == 0) {
			cr_assert_eq(accepted, s - 1, "once full, nothing newer gets in");
			accepted = s;
		}
		cr_assert_leq(stats(sp).disk_bytes, (uint64_t)cfg.max_bytes);
	}
	st = stats(sp);
	cr_assert_gt(accepted, 900);
	cr_assert_lt(accepted, 1100);
	cr_assert_eq(st.refused, 1500 - accepted);
	cr_assert_eq(st.dropped, 0);
	cr_assert_leq(bytes_on_disk(), (uint64_t)cfg.max_bytes);
	expect_big(sp, 0, &first, &last, &count);
	cr_assert_eq(first, 1, "the oldest are kept");
	cr_assert_eq(last, accepted);

	/* Acknowledged segments leave and make room again. */
	spool_ack(sp, accepted / 2);
	big_payload(s, buf);
	cr_assert_eq(spool_append(sp, s, buf, sizeof(buf)), 0);
	cr_assert_eq(stats(sp).refused, st.refused);
	expect_big(sp, accepted, &first, &last, &count);
	cr_assert_eq(first, s);
	spool_close(sp);
}

/* --- compression ----------------------------------------------------------------------------- */

/* A telemetry document as guardian sends them: eight points whose values wander. */
static size_t telemetry(uint64_t seq, char *buf, size_t cap)
{
	static const char *const name[] = { "plc1/temp",    "plc1/pressure", "plc1/flow",
					    "plc1/speed",   "plc2/temp",     "plc2/vibration",
					    "plc2/current", "plc2/state" };
	static const char *const unit[] = {
		"degC", "bar", "l/min", "rpm", "degC", "mm/s", "A", ""
	};
	static const double base[] = { 21.5, 6.2, 118.0, 1450.0, 48.0, 2.3, 12.7, 1.0 };
	long long ts = 1732200000000ll + (long long)seq * 1000;
	size_t n;

	n = (size_t)snprintf(
		buf, cap,
		"{\"device\":\"press-07\",\"boot\":\"5f0c7e1a9b32d4c8\",\"seq\":%" PRIu64
		",\"ts\":%lld,\"points\":[",
		seq, ts);
	for (int i = 0; i < 8; i++) {
		double v = base[i] * (1 + 0.05 * sin((double)seq / (20.0 + i))) +
			   (double)(mix(seq * 8 + (uint64_t)i) % 1000) / 1000.0 * base[i] * 0.01;

		if (i == 7)
			v = (double)(seq / 300 % 3);
		n += (size_t)snprintf(buf + n, cap - n,
				      "%s{\"name\":\"%s\",\"value\":%.*f,\"unit\":\"%s\","
				      "\"quality\":\"%s\",\"ts\":%lld}",
				      i ? "," : "", name[i], i == 7 ? 0 : 2, v, unit[i],
				      mix(seq * 31 + (uint64_t)i) % 97 == 0 ? "uncertain" : "good",
				      ts + i * 3);
	}
	n += (size_t)snprintf(buf + n, cap - n, "]}");
	cr_assert_lt(n, cap);
	return n;
}

static void expect_telemetry(struct spool *sp, uint64_t after, uint64_t from, uint64_t to)
{
	char want[2048];
	void *data;
	size_t len;
	uint64_t seq;

	for (uint64_t s = from; s <= to; s++) {
		size_t wlen = telemetry(s, want, sizeof(want));

		cr_assert_eq(spool_next(sp, after, &data, &len, &seq), 1, "after %" PRIu64, after);
		cr_assert_eq(seq, s);
		cr_assert_eq(len, wlen);
		cr_assert_eq(memcmp(data, want, len), 0, "record %" PRIu64, s);
		free(data);
		after = seq;
	}
	cr_assert_eq(spool_next(sp, after, &data, &len, &seq), 0);
}

/* Waits (bounded) until 'want' segments were compressed. */
static struct spool_stats wait_compressed(struct spool *sp, uint64_t want, int64_t max_ms)
{
	int64_t deadline = gd_mono_ms() + max_ms;
	struct spool_stats st = stats(sp);

	while (st.compressed < want && gd_mono_ms() < deadline) {
		usleep(20000);
		st = stats(sp);
	}
	return st;
}

Test(spool, compression_of_sealed_segments)
{
	struct spool_config cfg = conf();
	struct spool *sp;
	struct spool_stats st;
	char doc[2048], *names[MAX_FILES], path[512];
	const uint64_t total = 3000;
	size_t nz;
	uint8_t *buf;
	size_t len;

	cfg.compress = true;
	cfg.sync = SPOOL_SYNC_BATCH;
	cfg.segment_bytes = 128 << 10;
	sp = open_ok(&cfg, NULL);
	for (uint64_t s = 1; s <= total; s++) {
		size_t n = telemetry(s, doc, sizeof(doc));

		cr_assert_eq(spool_append(sp, s, doc, n), 0);
	}
	st = stats(sp);
	cr_assert_geq(st.segments, 10);
	st = wait_compressed(sp, st.segments - 1, 10000);
	cr_assert_eq(st.compressed, st.segments - 1, "every sealed segment, not the active one");
	cr_assert_eq(count_files(spdir, ".zst"), st.segments - 1);
	cr_assert_eq(count_files(spdir, ".seg"), 1);
	cr_assert_eq(st.disk_bytes, bytes_on_disk());
	printf("spool: %" PRIu64 " telemetry documents (%.0f bytes each): raw %" PRIu64
	       " bytes, on disk %" PRIu64 ", ratio %.2f\n",
	       total, (double)st.raw_bytes / (double)total, st.raw_bytes, st.disk_bytes,
	       (double)st.raw_bytes / (double)st.disk_bytes);
	cr_assert_gt((double)st.raw_bytes / (double)st.disk_bytes, 2.0);
	expect_telemetry(sp, 0, 1, total);
	expect_telemetry(sp, 1500, 1501, total);
	spool_close(sp);

	sp = open_ok(&cfg, NULL);
	st = stats(sp);
	cr_assert_eq(st.torn_tails + st.quarantined, 0);
	expect_telemetry(sp, 0, 1, total);
	spool_close(sp);

	/* A damaged .zst: quarantined and counted, the others still read exactly. */
	nz = list_files(spdir, ".zst", names);
	cr_assert_geq(nz, 3);
	snprintf(path, sizeof(path), "%s/%s", spdir, names[1]);
	buf = slurp(path, &len);
	buf[len / 2] ^= 0x55;
	spit(path, buf, len);
	free(buf);
	snprintf(path, sizeof(path), "%s/%s", spdir, names[2]);
	buf = slurp(path, &len);
	spit(path, buf, len / 2); /* cut short */
	free(buf);
	sp = open_ok(&cfg, NULL);
	st = stats(sp);
	cr_assert_eq(st.quarantined, 2);
	cr_assert_eq(quarantined_files(), 2);
	cr_assert_eq(st.disk_bytes, bytes_on_disk());
	{
		uint64_t seg3 = strtoull(names[3], NULL, 10), seg1 = strtoull(names[1], NULL, 10);
		void *data = NULL;
		uint64_t seq = 0, after = 0;
		char want[2048];

		/* Up to the damage in segment 1 all is there; segment 2 is gone; 3 on is whole. */
		while (spool_next(sp, after, &data, &len, &seq) == 1 && seq < seg3) {
			cr_assert_eq(seq, after + 1, "nothing lost before the damage");
			cr_assert_eq(len, telemetry(seq, want, sizeof(want)));
			cr_assert_eq(memcmp(data, want, len), 0);
			free(data);
			data = NULL;
			after = seq;
		}
		cr_assert_geq(after, seg1 - 1);
		cr_assert_eq(seq, seg3);
		free(data);
		expect_telemetry(sp, seg3 - 1, seg3, total);
	}
	spool_close(sp);
	free_names(names, nz);
}

/* Segments found at start are a backlog: all of them are compressed soon, not one a second. */
Test(spool, compresses_a_backlog_promptly)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	struct spool_stats st;
	int64_t t0;

	append_range(sp, 1, 200);
	spool_close(sp);
	cfg.compress = true; /* 'none': the thread wakes once a second */
	sp = open_ok(&cfg, NULL);
	t0 = gd_mono_ms();
	st = wait_compressed(sp, stats(sp).segments, 8000);
	cr_assert_eq(st.compressed, st.segments, "%" PRIu64 " of %" PRIu64 " in %lld ms",
		     st.compressed, st.segments, (long long)(gd_mono_ms() - t0));
	cr_assert_lt(gd_mono_ms() - t0, 4000);
	append_range(sp, 201, 210);
	{
		uint64_t seqs[300];
		size_t n = read_all(sp, 0, seqs, 300);

		expect_range(seqs, n, 1, 210);
	}
	spool_close(sp);
}

/* --- sync policies --------------------------------------------------------------------------- */

Test(spool, sync_policies)
{
	static const int policy[] = { SPOOL_SYNC_ALWAYS, SPOOL_SYNC_BATCH, SPOOL_SYNC_NONE };

	for (size_t p = 0; p < 3; p++) {
		struct spool_config cfg = conf();
		struct spool *sp;
		struct spool_stats st;
		uint64_t seqs[64];
		size_t n;

		rm_rf(spdir);
		cfg.sync = policy[p];
		cfg.segment_bytes = 64 << 10;
		sync_calls = 0;
		sp = open_ok(&cfg, &fault_io);
		append_range(sp, 1, 40);
		st = stats(sp);
		if (policy[p] == SPOOL_SYNC_ALWAYS) {
			cr_assert_eq(st.syncs, 40, "one per record");
			cr_assert_eq(sync_calls, 40);
		} else if (policy[p] == SPOOL_SYNC_BATCH) {
			int64_t deadline = gd_mono_ms() + 3000;

			cr_assert_lt(st.syncs, 40, "batched");
			while (stats(sp).syncs == 0 && gd_mono_ms() < deadline)
				usleep(5000);
			st = stats(sp);
			cr_assert_geq(st.syncs, 1, "within the interval");
			usleep(150000);
			cr_assert_eq(stats(sp).syncs, st.syncs, "nothing new, no sync");
			cr_assert_geq(sync_calls, 1);
		} else {
			usleep(150000);
			cr_assert_eq(stats(sp).syncs, 0);
			cr_assert_eq(sync_calls, 0);
		}
		spool_close(sp);
		if (policy[p] == SPOOL_SYNC_NONE)
			cr_assert_eq(sync_calls, 0, "not even at close");
		sp = open_ok(&cfg, NULL);
		n = read_all(sp, 0, seqs, 64);
		expect_range(seqs, n, 1, 40);
		spool_close(sp);
	}
}

/* --- what a crash leaves in the directory ---------------------------------------------------- */

static void write_zst(const char *path, const uint8_t *raw, size_t n)
{
	size_t bound = ZSTD_compressBound(n), z;
	uint8_t *out = malloc(bound);

	cr_assert_not_null(out);
	z = ZSTD_compress(out, bound, raw, n, 3);
	cr_assert(!ZSTD_isError(z));
	spit(path, out, z);
	free(out);
}

Test(spool, leftovers_of_a_crash)
{
	struct spool_config cfg = conf();
	struct spool *sp = open_ok(&cfg, NULL);
	char *names[MAX_FILES], path[512], base[256];
	uint64_t seqs[128];
	size_t n, nn, len;
	uint8_t *buf;

	append_range(sp, 1, 40);
	spool_ack(sp, 3);
	spool_close(sp);
	nn = list_files(spdir, ".seg", names);
	cr_assert_geq(nn, 4);

	/* A compression the crash cut short, one that finished but kept its original (a twin),
	 * a cursor half replaced; and a segment compressed whole with no original left. */
	snprintf(base, sizeof(base), "%s/%.20s", spdir, names[0]);
	snprintf(path, sizeof(path), "%s.seg", base);
	buf = slurp(path, &len);
	snprintf(path, sizeof(path), "%s.zst", base);
	write_zst(path, buf, len);
	free(buf);
	snprintf(path, sizeof(path), "%s/%.20s.zst.tmp", spdir, names[1]);
	spit(path, "\x28\xb5\x2f", 3);
	snprintf(path, sizeof(path), "%s/cursor.tmp", spdir);
	spit(path, "guardian-spool-cur", 18);
	snprintf(base, sizeof(base), "%s/%.20s", spdir, names[2]);
	snprintf(path, sizeof(path), "%s.seg", base);
	buf = slurp(path, &len);
	unlink(path);
	snprintf(path, sizeof(path), "%s.zst", base);
	write_zst(path, buf, len);
	free(buf);

	sp = open_ok(&cfg, NULL);
	cr_assert_eq(count_files(spdir, ".tmp"), 0, "temp files are removed");
	snprintf(path, sizeof(path), "%s/%.20s.zst", spdir, names[0]);
	cr_assert_neq(access(path, F_OK), 0, "of a twin, the original stays and the copy goes");
	snprintf(path, sizeof(path), "%s/%.20s.seg", spdir, names[0]);
	cr_assert_eq(access(path, F_OK), 0);
	cr_assert_eq(stats(sp).torn_tails + stats(sp).quarantined + stats(sp).cursor_damaged, 0);
	cr_assert_eq(stats(sp).disk_bytes, bytes_on_disk());
	n = read_all(sp, stats(sp).acked_seq, seqs, 128);
	expect_range(seqs, n, 4, 40); /* each once: the twin is not read twice */
	n = read_all(sp, 0, seqs, 128);
	expect_range(seqs, n, 1, 40);
	spool_close(sp);
	free_names(names, nn);
}

Test(spool, unusable_directory)
{
	struct spool_config cfg = conf();
	char why[300] = "", file[256];

	snprintf(file, sizeof(file), "%s/plain", tmpdir);
	spit(file, "x", 1);
	snprintf(spdir, sizeof(spdir), "%s/plain/spool", tmpdir);
	cr_assert_null(spool_open(&cfg, NULL, why, sizeof(why)));
	cr_assert_neq(why[0], '\0', "a sentence says why");
	cfg.dir = NULL;
	why[0] = '\0';
	cr_assert_null(spool_open(&cfg, NULL, why, sizeof(why)));
	cr_assert_neq(why[0], '\0');
}
