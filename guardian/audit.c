/* audit.c: the keyed, hash-chained, append-only audit log (JSON lines) and its verifier. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "../base/base.h"
#include "../base/json.h"
#include "audit.h"

#define SUBSYS		 "audit"
#define AUDIT_RECORD_MAX 8192 /* bytes of one record, without its '\n' */
#define AUDIT_KEY_FILE	 "audit.key"
#define AUDIT_KEY_LEN	 32 /* bytes of HMAC-SHA256 key */
#define MAC_LEN		 32
#define MAC_HEX_LEN	 64
#define MAC_TAIL	 ",\"mac\":\""
#define HASH_TAIL	 ",\"hash\":\"" /* a record from before the key: plain SHA-256 */
/* The bytes of a tail: ,"mac":"<64 hex>"} */
#define TAIL_LEN(tail) (sizeof(tail) - 1 + MAC_HEX_LEN + 2)
#define WHY_MAX	       320

static const char zero_mac[MAC_HEX_LEN + 1] =
	"0000000000000000000000000000000000000000000000000000000000000000";

struct audit {
	pthread_mutex_t lock;
	int fd;
	uint8_t key[AUDIT_KEY_LEN];
	uint64_t seq;			  /* of the last record in the chain; 0 = none yet */
	char prev[MAC_HEX_LEN + 1];	  /* its MAC (or an old record's hash), or zeros */
	bool need_newline;		  /* the file does not end with '\n' (torn write) */
	char last[AUDIT_RECORD_MAX + 1];  /* the last record written, for audit_last() */
	char build[AUDIT_RECORD_MAX + 2]; /* the record being written, with its '\n' */
};

/* ---- the key ------------------------------------------------------------------------------ */

/* The key's path, beside the log: <directory of 'log_path'>/audit.key. 0 or GD_EINVAL. */
static int key_path_of(const char *log_path, char *out, size_t cap)
{
	const char *slash = strrchr(log_path, '/');
	int n = snprintf(out, cap, "%.*s%s", slash == NULL ? 0 : (int)(slash - log_path + 1),
			 log_path, AUDIT_KEY_FILE);

	return n < 0 || (size_t)n >= cap ? GD_EINVAL : 0;
}

/*
 * Reads the key at 'path': a regular file of exactly 32 bytes that group and
 * others cannot reach. 0; or GD_EIO (with '*absent' when there is no such
 * file), GD_EDENIED (open to others), GD_EINVAL (not a 32-byte file), each
 * with a sentence in 'why'.
 */
static int key_load(const char *path, uint8_t key[AUDIT_KEY_LEN], bool *absent, char *why,
		    size_t cap)
{
	struct stat st;
	unsigned mode;
	ssize_t got;
	int fd, err = GD_EIO;

	*absent = false;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*absent = errno == ENOENT;
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	if (fstat(fd, &st) != 0) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		goto out;
	}
	mode = (unsigned)(st.st_mode & 07777);
	if (!S_ISREG(st.st_mode) || st.st_size != AUDIT_KEY_LEN) {
		gd_whyf(why, cap, "%s is not the audit key (expected a file of %d random bytes)",
			path, AUDIT_KEY_LEN);
		err = GD_EINVAL;
		goto out;
	}
	if ((mode & 077) != 0) {
		gd_whyf(why, cap,
			"%s is %s by %s (mode %04o): whoever reads the audit key can forge the "
			"log; chmod 600 %s",
			path, (mode & 044) ? "readable" : "accessible",
			(mode & 007) ? "others" : "its group", mode, path);
		err = GD_EDENIED;
		goto out;
	}
	/* A regular file of 32 bytes: one read gets all of it. */
	got = read(fd, key, AUDIT_KEY_LEN);
	if (got != AUDIT_KEY_LEN) {
		gd_whyf(why, cap, "%s: %s", path,
			got < 0 ? strerror(errno) : "shorter than 32 bytes");
		goto out;
	}
	err = 0;
out:
	close(fd);
	return err;
}

/*
 * Makes a key at 'path' unless one is there: 32 bytes from getrandom, put in
 * place whole by gd_create_file (which, like O_EXCL, fails if the name
 * exists), so no one ever reads half a key. The key is not kept: the
 * caller loads what is on disk. 0, or GD_EIO with a sentence in 'why'.
 */
static int key_create(const char *path, char *why, size_t cap)
{
	uint8_t key[AUDIT_KEY_LEN];
	ssize_t got;
	int err = GD_EIO;

	/* Up to 256 bytes come whole, once the system has entropy (it may wait for that). */
	while ((got = getrandom(key, sizeof(key), 0)) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(key))
		gd_whyf(why, cap, "%s: no random bytes for the audit key: %s", path,
			strerror(errno));
	else if (gd_create_file(path, key, sizeof(key), 0600) != 0 && errno != EEXIST)
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
	else
		err = 0;
	mbedtls_platform_zeroize(key, sizeof(key));
	return err;
}

/* ---- one record --------------------------------------------------------------------------- */

/* HMAC-SHA256 of 'len' bytes at 'text' under 'key'. 0 or GD_ENOMEM. */
static int mac_of(const uint8_t key[AUDIT_KEY_LEN], const char *text, size_t len,
		  uint8_t mac[MAC_LEN])
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);

	if (md == NULL ||
	    mbedtls_md_hmac(md, key, AUDIT_KEY_LEN, (const unsigned char *)text, len, mac) != 0)
		return GD_ENOMEM;
	return 0;
}

/* Whether the 'len' bytes at 's' (followed by a byte that is not one) are 64 lowercase hex. */
static bool is_mac_hex(const char *s, size_t len)
{
	return len == MAC_HEX_LEN && strspn(s, "0123456789abcdef") == MAC_HEX_LEN;
}

/* An event name: [a-z_]+. */
static bool is_event_token(const char *event)
{
	return event != NULL && *event != '\0' &&
	       event[strspn(event, "abcdefghijklmnopqrstuvwxyz_")] == '\0';
}

/* Whether 'len' bytes at 'line' end with 'tail' (of 'tail_len' bytes), 64 hex digits and "}. */
static bool ends_with(const char *line, size_t len, const char *tail, size_t tail_len)
{
	size_t total = tail_len + MAC_HEX_LEN + 2;

	return len >= total && memcmp(line + len - total, tail, tail_len) == 0 &&
	       is_mac_hex(line + len - MAC_HEX_LEN - 2, MAC_HEX_LEN) && line[len - 2] == '"' &&
	       line[len - 1] == '}';
}

/*
 * Whether 'text' (NUL-terminated) is one JSON object that holds each chain
 * member (seq, ts, prev, event, mac) once and no "hash": what a verifier and
 * every other reader can take apart.
 */
static bool record_well_formed(const char *text)
{
	static const char *const members[] = { "seq", "ts", "prev", "event", "mac" };
	unsigned seen[sizeof(members) / sizeof(members[0])] = { 0 };
	cJSON *root = cJSON_ParseWithOpts(text, NULL, 1);
	const cJSON *item;
	bool ok = cJSON_IsObject(root);

	cJSON_ArrayForEach (item, root) {
		if (item->string == NULL || strcmp(item->string, "hash") == 0) {
			ok = false;
			continue;
		}
		for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
			if (strcmp(item->string, members[i]) == 0)
				seen[i]++;
		}
	}
	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		if (seen[i] != 1)
			ok = false;
	}
	cJSON_Delete(root);
	return ok;
}

/* The chain members of one line, as written. */
struct record {
	uint64_t seq;
	char prev[MAC_HEX_LEN + 1];
	char mac[MAC_HEX_LEN + 1]; /* "mac", or an old record's "hash" */
	bool keyed;		   /* "mac" (HMAC-SHA256); false: "hash" (plain SHA-256) */
	size_t body_len;	   /* the bytes the MAC covers: the line before its tail */
};

/*
 * Reads the chain members of one line ('len' bytes at 'line', NUL at
 * line[len]). Returns true, or false with a sentence ("line N: ...") in 'why'.
 */
static bool record_read(const char *line, size_t len, long lineno, struct record *r, char *why,
			size_t cap)
{
	cJSON *root = NULL;
	const cJSON *seq_item, *prev_item, *mac_item;
	size_t tail_len;
	bool ok = false;

	if (memchr(line, '\0', len) == NULL)
		root = cJSON_ParseWithOpts(line, NULL, 1);
	if (!cJSON_IsObject(root)) {
		gd_whyf(why, cap, "line %ld: not a JSON record", lineno);
		goto out;
	}
	seq_item = cJSON_GetObjectItemCaseSensitive(root, "seq");
	prev_item = cJSON_GetObjectItemCaseSensitive(root, "prev");
	/* 2^53: the largest integer a double (cJSON's number) holds exactly */
	if (!cJSON_IsNumber(seq_item) || !(seq_item->valuedouble >= 1.0) ||
	    seq_item->valuedouble > 9007199254740992.0 ||
	    seq_item->valuedouble != (double)(uint64_t)seq_item->valuedouble) {
		gd_whyf(why, cap, "line %ld: no \"seq\" (expected a positive integer)", lineno);
		goto out;
	}
	if (!cJSON_IsString(prev_item) ||
	    !is_mac_hex(prev_item->valuestring, strlen(prev_item->valuestring))) {
		gd_whyf(why, cap, "line %ld: no \"prev\" (expected 64 lowercase hex digits)",
			lineno);
		goto out;
	}
	/* The MAC is read from the text: it must be the last member, as written. */
	r->keyed = ends_with(line, len, MAC_TAIL, sizeof(MAC_TAIL) - 1);
	tail_len = r->keyed ? TAIL_LEN(MAC_TAIL) : TAIL_LEN(HASH_TAIL);
	mac_item = cJSON_GetObjectItemCaseSensitive(root, r->keyed ? "mac" : "hash");
	if (!cJSON_IsString(mac_item) ||
	    (!r->keyed && !ends_with(line, len, HASH_TAIL, sizeof(HASH_TAIL) - 1))) {
		gd_whyf(why, cap,
			"line %ld: no \"mac\" at the end of the record (expected "
			",\"mac\":\"<64 lowercase hex digits>\"})",
			lineno);
		goto out;
	}
	r->seq = (uint64_t)seq_item->valuedouble;
	memcpy(r->prev, prev_item->valuestring, MAC_HEX_LEN + 1);
	memcpy(r->mac, line + len - MAC_HEX_LEN - 2, MAC_HEX_LEN);
	r->mac[MAC_HEX_LEN] = '\0';
	r->body_len = len - tail_len;
	ok = true;
out:
	cJSON_Delete(root);
	return ok;
}

/*
 * Whether the record's MAC (keyed) or hash (an old record) matches its text,
 * into '*authentic'; compared in constant time. 'key' is needed for a keyed
 * record. 0 or GD_ENOMEM.
 */
static int record_authentic(const struct record *r, const char *line, const uint8_t *key,
			    bool *authentic)
{
	uint8_t written[MAC_LEN], computed[MAC_LEN];
	int err = 0;

	*authentic = false;
	if (!gd_hex_decode(r->mac, written, MAC_LEN, '\0'))
		return 0;
	if (r->keyed)
		err = mac_of(key, line, r->body_len, computed);
	else
		/* Cannot fail for SHA-256 in software (mbedTLS 2.28: 0 or a HW-accel error). */
		(void)mbedtls_sha256_ret((const unsigned char *)line, r->body_len, computed, 0);
	if (err == 0)
		*authentic = mbedtls_ct_memcmp(written, computed, MAC_LEN) == 0;
	mbedtls_platform_zeroize(computed, sizeof(computed));
	return err;
}

/* ---- the chain ---------------------------------------------------------------------------- */

/* A record a chain can go on from; line 0 is the start (seq 0, MAC zeros). */
struct link {
	uint64_t seq;
	char mac[MAC_HEX_LEN + 1];
	long line;
};

/* One walk over a log. */
struct walk {
	const uint8_t *key;	/* NULL: there is none */
	bool key_absent;	/* there is no key file */
	const char *key_path;	/* for the sentence when the key is missing */
	bool torn_end;		/* the log does not end with '\n' */
	uint64_t published_seq; /* 0: no head to compare with */
	const char *published_mac;
	void (*problem)(void *ctx, long line, const char *why);
	void *ctx;
	struct audit_result *res;
	struct link last; /* the last line whose seq and MAC could be read, broken or not */
	struct link good; /* the last record of the intact chain */
	bool seen_keyed;  /* an intact keyed record came before */
	bool published_matched;
	long published_other; /* the first line holding the published seq with another MAC */
};

static void report(struct walk *w, long line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Counts one problem and hands its sentence to the caller. */
static void report(struct walk *w, long line, const char *fmt, ...)
{
	char why[WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	w->res->problems++;
	if (w->problem != NULL)
		w->problem(w->ctx, line, why);
}

static void link_set(struct link *l, const struct record *r, long lineno)
{
	l->seq = r->seq;
	memcpy(l->mac, r->mac, sizeof(l->mac));
	l->line = lineno;
}

static bool links_to(const struct record *r, const struct link *to)
{
	return r->seq == to->seq + 1 && strcmp(r->prev, to->mac) == 0;
}

/* Says why an intact record does not follow the line before it. */
static void report_link(struct walk *w, const struct record *r, long lineno)
{
	const struct link *x = &w->last;

	if (x->line == 0 && r->seq != 1)
		report(w, lineno,
		       "line %ld: seq %" PRIu64
		       " where 1 was expected (records were removed at the start)",
		       lineno, r->seq);
	else if (x->line == 0)
		report(w, lineno,
		       "line %ld: prev is not zeros on the first record (records were removed at "
		       "the start)",
		       lineno);
	else if (r->seq > x->seq + 1)
		report(w, lineno,
		       "line %ld: seq %" PRIu64 " follows seq %" PRIu64 " (line %ld): %" PRIu64
		       " record%s removed or moved",
		       lineno, r->seq, x->seq, x->line, r->seq - x->seq - 1,
		       r->seq - x->seq - 1 == 1 ? "" : "s");
	else if (r->seq <= x->seq)
		report(w, lineno,
		       "line %ld: seq %" PRIu64 " follows seq %" PRIu64
		       " (line %ld): records were reordered or repeated",
		       lineno, r->seq, x->seq, x->line);
	else
		report(w, lineno,
		       "line %ld: prev does not match line %ld's MAC (a record was removed or "
		       "replaced)",
		       lineno, x->line);
}

/*
 * Checks one line against the chain so far and moves the chain on. Each
 * broken line is reported once. A record that is not intact becomes 'last'
 * (the next line may follow it: then only the changed one is reported); an
 * intact record that does not follow 'last' but follows 'good' (the lines
 * between were inserted) is not reported again; an intact record that follows
 * neither is reported and the chain starts again from it.
 * 0, or GD_EDENIED (a keyed record but no key) / GD_ENOMEM with 'why'.
 */
static int walk_line(struct walk *w, const char *line, size_t len, bool terminated, long lineno,
		     char *why, size_t why_len)
{
	struct record r;
	char line_why[WHY_MAX];
	bool authentic;
	int err;

	w->res->records++;
	if (!record_read(line, len, lineno, &r, line_why, sizeof(line_why))) {
		if (!terminated)
			report(w, lineno,
			       "line %ld: the last line is incomplete (no newline at its end: a "
			       "torn "
			       "write)",
			       lineno);
		else
			report(w, lineno, "%s", line_why);
		return 0;
	}
	if (r.keyed && w->key == NULL) {
		gd_whyf(why, why_len,
			"%s is missing, but line %ld has a MAC made with it: restore the key "
			"(records cannot be checked without it)",
			w->key_path, lineno);
		return GD_EDENIED;
	}
	err = record_authentic(&r, line, w->key, &authentic);
	if (err != 0) {
		gd_whyf(why, why_len, "line %ld: cannot compute its MAC", lineno);
		return err;
	}
	if (w->published_seq != 0 && r.seq == w->published_seq) {
		if (strcmp(r.mac, w->published_mac) == 0)
			w->published_matched = true;
		else if (w->published_other == 0)
			w->published_other = lineno;
	}
	if (!terminated) {
		report(w, lineno,
		       "line %ld: the last line is incomplete (no newline at its end: a torn "
		       "write)",
		       lineno);
		link_set(&w->last, &r, lineno);
		return 0;
	}
	if (!authentic) {
		report(w, lineno, "line %ld: %s does not match its content (record changed)",
		       lineno, r.keyed ? "MAC" : "hash");
		link_set(&w->last, &r, lineno);
		return 0;
	}
	if (!r.keyed && w->seen_keyed) {
		report(w, lineno,
		       "line %ld: a plain SHA-256 \"hash\" after keyed records: written without "
		       "the "
		       "audit key (forged)",
		       lineno);
		link_set(&w->last, &r, lineno);
		return 0;
	}
	if (w->good.line != 0 && r.seq <= w->good.seq) {
		report(w, lineno,
		       "line %ld: seq %" PRIu64 " after seq %" PRIu64
		       " (line %ld): a record repeated or out of order",
		       lineno, r.seq, w->good.seq, w->good.line);
		link_set(&w->last, &r, lineno);
		return 0;
	}
	if (!links_to(&r, &w->last) && !(w->last.line != w->good.line && links_to(&r, &w->good)))
		report_link(w, &r, lineno);
	if (r.keyed && !w->seen_keyed && w->res->unkeyed > 0)
		w->res->unkeyed_anchored =
			w->good.line == w->res->unkeyed_last_line && links_to(&r, &w->good);
	if (r.keyed) {
		w->seen_keyed = true;
	} else {
		w->res->unkeyed++;
		w->res->unkeyed_last_line = lineno;
	}
	link_set(&w->last, &r, lineno);
	w->good = w->last;
	return 0;
}

/* Compares the end of the chain with the head published earlier. */
static void check_published(struct walk *w)
{
	uint64_t s = w->published_seq;

	if (s == 0 || w->published_matched)
		return;
	if (w->published_other != 0)
		report(w, 0,
		       "head %" PRIu64 ": line %ld holds seq %" PRIu64
		       " with another MAC than the published head (the log was rewritten from "
		       "there)",
		       s, w->published_other, s);
	else if (w->good.line == 0)
		report(w, 0,
		       "head %" PRIu64 ": the log holds no intact record, but seq %" PRIu64
		       " was published (truncated or replaced)",
		       s, s);
	else if (w->good.seq < s)
		report(w, 0,
		       "head %" PRIu64 ": the last intact record is seq %" PRIu64
		       " (line %ld), before the published head: seq %" PRIu64 " to %" PRIu64
		       " were cut off (truncated tail)",
		       s, w->good.seq, w->good.line, w->good.seq + 1, s);
	else
		report(w, 0,
		       "head %" PRIu64 ": no record seq %" PRIu64
		       " in the log, though later ones are there (it was removed)",
		       s, s);
}

/*
 * Reads all of 'path' into a NUL-terminated buffer (caller frees), its length
 * (which may include NUL bytes, unlike gd_read_file's) in 'len'. NULL with
 * errno on failure.
 */
static char *read_whole(const char *path, size_t *len)
{
	FILE *in = fopen(path, "rbe"), *out;
	char *buf = NULL, chunk[16384];
	size_t n;
	bool ok;
	int err;

	if (in == NULL)
		return NULL;
	out = open_memstream(&buf, len);
	while (out != NULL && (n = fread(chunk, 1, sizeof(chunk), in)) > 0 &&
	       fwrite(chunk, 1, n, out) == n)
		;
	ok = out != NULL && !ferror(in) && !ferror(out);
	err = errno;
	fclose(in);
	if ((out != NULL && fclose(out) != 0) || !ok) {
		free(buf);
		errno = err;
		return NULL;
	}
	return buf;
}

/*
 * Reads the log at 'path' and the key beside it (into 'key'; its path into
 * 'key_path'), walks every line, then compares with the published head.
 * Fills w->res, w->key (NULL when there is no key file), w->last and
 * w->torn_end. 0; or GD_EINVAL (path too long), GD_EIO (log or key
 * unreadable), the refusal of key_load, or an error from walk_line; with a
 * sentence in 'why'.
 */
static int walk_file(struct walk *w, const char *path, uint8_t key[AUDIT_KEY_LEN],
		     char key_path[PATH_MAX], char *why, size_t why_len)
{
	char *buf;
	size_t len = 0, line_len;
	long lineno = 0;
	int err;

	if (key_path_of(path, key_path, PATH_MAX) != 0) {
		gd_whyf(why, why_len, "%s: path too long", path);
		return GD_EINVAL;
	}
	buf = read_whole(path, &len);
	if (buf == NULL) {
		gd_whyf(why, why_len, "cannot read %s: %s", path, strerror(errno));
		return GD_EIO;
	}
	err = key_load(key_path, key, &w->key_absent, why, why_len);
	w->key = err == 0 ? key : NULL;
	w->key_path = key_path;
	w->torn_end = len > 0 && buf[len - 1] != '\n';
	w->last = (struct link){ .seq = 0, .line = 0 };
	memcpy(w->last.mac, zero_mac, sizeof(w->last.mac));
	w->good = w->last;
	if (w->key_absent)
		err = 0;
	for (size_t pos = 0; pos < len && err == 0; pos += line_len + 1) {
		char *line = buf + pos, *nl = memchr(line, '\n', len - pos);

		line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		line[line_len] = '\0';
		err = walk_line(w, line, line_len, nl != NULL, ++lineno, why, why_len);
	}
	free(buf);
	if (err != 0)
		return err;
	check_published(w);
	w->res->head_seq = w->good.seq;
	memcpy(w->res->head_mac, w->good.mac, sizeof(w->res->head_mac));
	w->res->head_line = w->good.line;
	return 0;
}

/* The first problem of a walk, for a caller that shows only one. */
struct first_problem {
	long line;
	char why[WHY_MAX];
};

static void keep_first(void *ctx, long line, const char *why)
{
	struct first_problem *first = ctx;

	if (first->line != 0)
		return;
	first->line = line;
	snprintf(first->why, sizeof(first->why), "%s", why);
}

/* ---- writing ------------------------------------------------------------------------------ */

struct audit *audit_open(const char *path)
{
	struct audit *a = calloc(1, sizeof(*a));
	struct audit_result res = { .records = 0 };
	struct first_problem first = { .line = 0 };
	struct walk w = { .res = &res, .problem = keep_first, .ctx = &first };
	char key_path[PATH_MAX], why[WHY_MAX];
	bool absent;
	int err;

	if (a == NULL)
		return NULL;
	a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (a->fd < 0)
		goto fail;
	err = walk_file(&w, path, a->key, key_path, why, sizeof(why));
	if (err != 0) {
		log_warnx(SUBSYS, "%s", why);
		errno = err == GD_EDENIED  ? (w.key_absent ? ENOKEY : EACCES)
			: err == GD_EINVAL ? EINVAL
			: err == GD_ENOMEM ? ENOMEM
					   : EIO;
		goto fail;
	}
	if (w.key == NULL) {
		/* No keyed record yet: the first is made with a new key. */
		err = key_create(key_path, why, sizeof(why));
		if (err == 0)
			err = key_load(key_path, a->key, &absent, why, sizeof(why));
		if (err != 0) {
			log_warnx(SUBSYS, "cannot make the audit key: %s", why);
			errno = EIO;
			goto fail;
		}
		log_info(SUBSYS,
			 "made the audit key %s: keep it with the log, which cannot be "
			 "verified without it",
			 key_path);
	}
	if (res.problems != 0)
		log_warnx(SUBSYS,
			  "%s: the chain is broken (%" PRIu64 " problem%s; the first: %s); new "
			  "records follow seq %" PRIu64,
			  path, res.problems, res.problems == 1 ? "" : "s", first.why, w.last.seq);
	a->seq = w.last.seq;
	memcpy(a->prev, w.last.mac, sizeof(a->prev));
	a->need_newline = w.torn_end;
	err = pthread_mutex_init(&a->lock, NULL);
	if (err != 0) {
		errno = err;
		goto fail;
	}
	return a;
fail:
	err = errno;
	if (a->fd >= 0)
		close(a->fd);
	mbedtls_platform_zeroize(a->key, sizeof(a->key));
	free(a);
	errno = err;
	return NULL;
}

int audit_append(struct audit *a, int64_t ts_ms, const char *event, const char *fields_json)
{
	uint8_t mac[MAC_LEN];
	char mac_hex[MAC_HEX_LEN + 1];
	char *record;
	size_t fields_len = fields_json == NULL ? 0 : strlen(fields_json), len, total;
	ssize_t written;
	struct jw w;
	int rc = GD_EINVAL;

	if (a == NULL || !is_event_token(event))
		return GD_EINVAL;
	/* A newline would split the record into two lines; no control character is JSON. */
	for (size_t i = 0; i < fields_len; i++) {
		if ((unsigned char)fields_json[i] < 0x20)
			return GD_EINVAL;
	}

	pthread_mutex_lock(&a->lock);
	a->build[0] = '\n'; /* after a torn write, the record starts on a line of its own */
	record = a->build + (a->need_newline ? 1 : 0);
	/* The writer refuses what does not fit: a record too long is refused whole, never cut. */
	jw_init(&w, record, AUDIT_RECORD_MAX + 1);
	jw_object(&w);
	jw_key(&w, "seq");
	jw_uint(&w, a->seq + 1);
	jw_key(&w, "ts");
	jw_int(&w, ts_ms);
	jw_key(&w, "prev");
	jw_string(&w, a->prev);
	jw_key(&w, "event");
	jw_string(&w, event);
	if (fields_len > 0)
		jw_raw(&w, fields_json, fields_len); /* members, not a value: checked below */
	/* The MAC covers the record up to here, and is its last member. */
	if (w.failed || (rc = mac_of(a->key, record, w.len, mac)) != 0)
		goto out;
	gd_hex_encode(mac, sizeof(mac), mac_hex);
	jw_key(&w, "mac");
	jw_string(&w, mac_hex);
	jw_end(&w);
	len = jw_finish(&w);
	/* Records are rare: parse each one before it goes to disk. */
	if (len == 0 || !record_well_formed(record)) {
		rc = GD_EINVAL;
		goto out;
	}
	record[len] = '\n';
	total = (size_t)(record - a->build) + len + 1;
	written = write(a->fd, a->build, total);
	if (written != (ssize_t)total) {
		if (written >= 0) {
			/* a torn record: the next one starts on a new line */
			a->need_newline = true;
			errno = EIO;
		}
		rc = GD_EIO;
		goto out;
	}
	/* The record is in the file: the chain goes on from it even if fsync fails. */
	a->seq++;
	memcpy(a->prev, mac_hex, sizeof(a->prev));
	a->need_newline = false;
	memcpy(a->last, record, len);
	a->last[len] = '\0';
	if (fsync(a->fd) != 0)
		rc = GD_EIO;
out:
	pthread_mutex_unlock(&a->lock);
	return rc;
}

const char *audit_last(struct audit *a)
{
	return a->last;
}

void audit_head(struct audit *a, uint64_t *seq, char mac_hex[65])
{
	pthread_mutex_lock(&a->lock);
	*seq = a->seq;
	memcpy(mac_hex, a->prev, MAC_HEX_LEN + 1);
	pthread_mutex_unlock(&a->lock);
}

void audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	close(a->fd);
	pthread_mutex_destroy(&a->lock);
	mbedtls_platform_zeroize(a->key, sizeof(a->key));
	free(a);
}

/* ---- verifying ---------------------------------------------------------------------------- */

int audit_check(const char *path, uint64_t published_seq, const char *published_mac,
		void (*problem)(void *ctx, long line, const char *why), void *ctx,
		struct audit_result *out, char *why, size_t why_len)
{
	uint8_t key[AUDIT_KEY_LEN];
	char key_path[PATH_MAX];
	struct walk w = {
		.published_seq = published_seq,
		.published_mac = published_mac,
		.problem = problem,
		.ctx = ctx,
		.res = out,
	};
	int err;

	*out = (struct audit_result){ .records = 0 };
	memcpy(out->head_mac, zero_mac, sizeof(out->head_mac));
	if (published_seq != 0 &&
	    (published_mac == NULL || !is_mac_hex(published_mac, strlen(published_mac)))) {
		gd_whyf(why, why_len, "the published head's MAC is not 64 lowercase hex digits");
		return GD_EINVAL;
	}
	err = walk_file(&w, path, key, key_path, why, why_len);
	mbedtls_platform_zeroize(key, sizeof(key));
	return err;
}

long audit_verify(const char *path, char *why, size_t why_len)
{
	struct audit_result res;
	struct first_problem first = { .line = 0 };

	if (audit_check(path, 0, NULL, keep_first, &first, &res, why, why_len) != 0)
		return -1;
	if (res.problems == 0)
		return 0;
	gd_whyf(why, why_len, "%s", first.why);
	return first.line;
}
