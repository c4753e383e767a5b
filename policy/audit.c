/* audit.c: the hash-chained, append-only audit log (JSON lines) and its verifier. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <mbedtls/sha256.h>

#include "policy.h"

#define AUDIT_RECORD_MAX 8192 /* bytes of one record, without its '\n' */
#define HASH_HEX_LEN	 64
#define HASH_TAIL	 ",\"hash\":\""
#define HASH_TAIL_LEN	 (sizeof(HASH_TAIL) - 1)
/* ,"hash":"<64 hex>"} */
#define RECORD_TAIL_LEN (HASH_TAIL_LEN + HASH_HEX_LEN + 2)

static const char zero_hash[HASH_HEX_LEN + 1] =
	"0000000000000000000000000000000000000000000000000000000000000000";

struct audit {
	pthread_mutex_t lock;
	int fd;
	uint64_t seq;			  /* of the last record in the chain; 0 = none yet */
	char prev[HASH_HEX_LEN + 1];	  /* its hash, or zeros */
	bool need_newline;		  /* the file does not end with '\n' (torn write) */
	char last[AUDIT_RECORD_MAX + 1];  /* the last record written, for audit_last() */
	char build[AUDIT_RECORD_MAX + 2]; /* the record being written, with its '\n' */
};

/* The end of a chain as read from a file: the last record whose seq and hash could be read. */
struct chain_end {
	uint64_t seq;
	char hash[HASH_HEX_LEN + 1];
	long line; /* its line number, 0 if none */
};

/* Writes SHA-256 of 'len' bytes at 'data' as 64 lowercase hex digits and a NUL into 'hex'. */
static void sha256_hex(const char *data, size_t len, char hex[HASH_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char sum[32];

	/* Cannot fail for SHA-256 in software (mbedTLS 2.28 returns 0 or a HW-accel error). */
	(void)mbedtls_sha256_ret((const unsigned char *)data, len, sum, 0);
	for (size_t i = 0; i < sizeof(sum); i++) {
		hex[2 * i] = digits[sum[i] >> 4];
		hex[2 * i + 1] = digits[sum[i] & 0x0f];
	}
	hex[HASH_HEX_LEN] = '\0';
}

static bool is_hash_hex(const char *s, size_t len)
{
	if (len != HASH_HEX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

static bool is_event_token(const char *event)
{
	if (event == NULL || *event == '\0')
		return false;
	for (const char *p = event; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
			return false;
	}
	return true;
}

/*
 * Reads all of 'path' into a NUL-terminated buffer (caller frees), its length
 * (which may include NUL bytes) in 'len'. NULL with errno on failure.
 */
static char *read_whole(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t used = 0, cap = 0;
	struct stat st;
	int saved;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0)
		cap = (size_t)st.st_size + 1;
	for (;;) {
		ssize_t n;

		if (cap - used < 2) {
			size_t grown_cap = cap < 4096 ? 4096 : cap * 2;
			char *grown = realloc(buf, grown_cap);

			if (grown == NULL)
				goto fail;
			buf = grown;
			cap = grown_cap;
		} else if (buf == NULL) {
			buf = malloc(cap);
			if (buf == NULL)
				goto fail;
		}
		n = read(fd, buf + used, cap - used - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	*len = used;
	close(fd);
	return buf;
fail:
	saved = errno;
	free(buf);
	close(fd);
	errno = saved;
	return NULL;
}

/*
 * Checks one line ('len' bytes at 'line', NUL-terminated at line[len]) against
 * 'prev', the record before it. Returns true if the record is intact, else
 * writes the reason into 'why'. Whether intact or not, fills 'self' and sets
 * '*usable' when its seq and hash can be read (so a chain can go on from it).
 */
static bool check_line(const char *line, size_t len, bool terminated, long lineno,
		       const struct chain_end *prev, struct chain_end *self, bool *usable,
		       char *why, size_t why_len)
{
	cJSON *root = NULL;
	const cJSON *seq_item, *prev_item, *hash_item;
	const char *tail_hash;
	char computed[HASH_HEX_LEN + 1];
	uint64_t seq;
	bool ok = false;

	*usable = false;
	if (memchr(line, '\0', len) == NULL)
		root = cJSON_ParseWithOpts(line, NULL, 1);
	if (!cJSON_IsObject(root)) {
		if (!terminated)
			snprintf(why, why_len,
				 "line %ld: the last line is incomplete (no newline at its end: a "
				 "torn write)",
				 lineno);
		else
			snprintf(why, why_len, "line %ld: not a JSON record", lineno);
		goto out;
	}
	seq_item = cJSON_GetObjectItemCaseSensitive(root, "seq");
	prev_item = cJSON_GetObjectItemCaseSensitive(root, "prev");
	hash_item = cJSON_GetObjectItemCaseSensitive(root, "hash");
	/* 2^53: the largest integer a double (cJSON's number) holds exactly */
	if (!cJSON_IsNumber(seq_item) || !(seq_item->valuedouble >= 1.0) ||
	    seq_item->valuedouble > 9007199254740992.0 ||
	    seq_item->valuedouble != (double)(uint64_t)seq_item->valuedouble) {
		snprintf(why, why_len, "line %ld: no \"seq\" (expected a positive integer)",
			 lineno);
		goto out;
	}
	seq = (uint64_t)seq_item->valuedouble;
	if (!cJSON_IsString(prev_item) ||
	    !is_hash_hex(prev_item->valuestring, strlen(prev_item->valuestring))) {
		snprintf(why, why_len, "line %ld: no \"prev\" (expected 64 lowercase hex digits)",
			 lineno);
		goto out;
	}
	/* The hash is read from the text: it must be the last member, as written. */
	tail_hash = len >= RECORD_TAIL_LEN ? line + len - RECORD_TAIL_LEN + HASH_TAIL_LEN : line;
	if (!cJSON_IsString(hash_item) || len < RECORD_TAIL_LEN ||
	    memcmp(line + len - RECORD_TAIL_LEN, HASH_TAIL, HASH_TAIL_LEN) != 0 ||
	    !is_hash_hex(tail_hash, HASH_HEX_LEN) || line[len - 2] != '"' || line[len - 1] != '}') {
		snprintf(why, why_len,
			 "line %ld: no \"hash\" at the end of the record (expected "
			 ",\"hash\":\"<64 lowercase hex digits>\"})",
			 lineno);
		goto out;
	}
	self->seq = seq;
	memcpy(self->hash, tail_hash, HASH_HEX_LEN);
	self->hash[HASH_HEX_LEN] = '\0';
	self->line = lineno;
	*usable = true;

	if (!terminated) {
		snprintf(why, why_len,
			 "line %ld: the last line is incomplete (no newline at its end: a torn "
			 "write)",
			 lineno);
		goto out;
	}
	sha256_hex(line, len - RECORD_TAIL_LEN, computed);
	if (memcmp(computed, tail_hash, HASH_HEX_LEN) != 0) {
		snprintf(why, why_len, "line %ld: hash does not match its content (record changed)",
			 lineno);
		goto out;
	}
	if (prev->line == 0 && seq != 1) {
		snprintf(why, why_len,
			 "line %ld: seq %" PRIu64
			 " where 1 was expected (records were removed at the start)",
			 lineno, seq);
		goto out;
	}
	if (prev->line != 0 && seq != prev->seq + 1) {
		snprintf(why, why_len, "line %ld: seq %" PRIu64 " follows %" PRIu64 " (%s)", lineno,
			 seq, prev->seq,
			 seq > prev->seq ? "a record was removed"
					 : "records were reordered or repeated");
		goto out;
	}
	if (strcmp(prev_item->valuestring, prev->hash) != 0) {
		if (prev->line == 0)
			snprintf(why, why_len,
				 "line %ld: prev is not zeros on the first record (records were "
				 "removed at the start)",
				 lineno);
		else
			snprintf(why, why_len,
				 "line %ld: prev does not match line %ld's hash (a record was "
				 "removed or reordered)",
				 lineno, prev->line);
		goto out;
	}
	ok = true;
out:
	cJSON_Delete(root);
	return ok;
}

/*
 * Walks every line of 'buf' (changing each '\n' into a NUL). Returns 0 if the
 * chain is intact, else the first broken line with a sentence in 'why'. 'end'
 * receives the last record whose seq and hash could be read.
 */
static long check_chain(char *buf, size_t len, char *why, size_t why_len, struct chain_end *end)
{
	struct chain_end prev = { .seq = 0, .line = 0 };
	long first_broken = 0;
	long lineno = 0;
	size_t pos = 0;

	memcpy(prev.hash, zero_hash, sizeof(prev.hash));
	while (pos < len) {
		char *line = buf + pos;
		char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		struct chain_end self;
		bool usable;
		char line_why[256];

		lineno++;
		line[line_len] = '\0';
		if (!check_line(line, line_len, nl != NULL, lineno, &prev, &self, &usable, line_why,
				sizeof(line_why)) &&
		    first_broken == 0) {
			first_broken = lineno;
			if (why_len > 0)
				snprintf(why, why_len, "%s", line_why);
		}
		if (usable)
			prev = self;
		pos += line_len + 1;
	}
	*end = prev;
	return first_broken;
}

struct audit *audit_open(const char *path)
{
	struct audit *a = NULL;
	struct chain_end end;
	char why[256];
	char *content = NULL;
	size_t len = 0;
	long broken;
	int err;

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (a->fd < 0)
		goto fail;
	content = read_whole(path, &len);
	if (content == NULL)
		goto fail;
	a->need_newline = len > 0 && content[len - 1] != '\n';
	broken = check_chain(content, len, why, sizeof(why), &end);
	if (broken != 0)
		log_warnx("audit", "%s: the chain is broken at %s; new records follow seq %" PRIu64,
			  path, why, end.seq);
	a->seq = end.seq;
	memcpy(a->prev, end.hash, sizeof(a->prev));
	free(content);
	content = NULL;
	err = pthread_mutex_init(&a->lock, NULL);
	if (err != 0) {
		errno = err;
		goto fail;
	}
	return a;
fail:
	err = errno;
	free(content);
	if (a->fd >= 0)
		close(a->fd);
	free(a);
	errno = err;
	return NULL;
}

int audit_append(struct audit *a, int64_t ts_ms, const char *event, const char *fields_json)
{
	char hash[HASH_HEX_LEN + 1];
	size_t fields_len, prefix_len, start, total;
	int n, rc = GD_OK;

	if (a == NULL || !is_event_token(event))
		return GD_EINVAL;
	if (fields_json == NULL)
		fields_json = "";
	fields_len = strlen(fields_json);
	/* a newline would split the record into two lines no one could verify */
	if (fields_len > AUDIT_RECORD_MAX || strpbrk(fields_json, "\r\n") != NULL)
		return GD_EINVAL;

	pthread_mutex_lock(&a->lock);
	start = a->need_newline ? 1 : 0;
	a->build[0] = '\n';
	n = snprintf(a->build + start, sizeof(a->build) - start,
		     "{\"seq\":%" PRIu64 ",\"ts\":%" PRId64 ",\"prev\":\"%s\",\"event\":\"%s\"%s%s",
		     a->seq + 1, ts_ms, a->prev, event, fields_len > 0 ? "," : "", fields_json);
	if (n < 0 || (size_t)n + RECORD_TAIL_LEN > AUDIT_RECORD_MAX) {
		rc = GD_EINVAL;
		goto out;
	}
	prefix_len = (size_t)n;
	sha256_hex(a->build + start, prefix_len, hash);
	snprintf(a->build + start + prefix_len, sizeof(a->build) - start - prefix_len,
		 HASH_TAIL "%s\"}\n", hash);
	total = start + prefix_len + RECORD_TAIL_LEN + 1;

	for (;;) {
		ssize_t written = write(a->fd, a->build, total);

		if (written < 0 && errno == EINTR)
			continue;
		if (written < 0 || (size_t)written != total) {
			if (written >= 0) {
				/* a torn record: the next one starts on a new line */
				a->need_newline = true;
				errno = EIO;
			}
			rc = GD_EIO;
			goto out;
		}
		break;
	}
	/* The record is in the file: the chain goes on from it even if fsync fails. */
	a->seq++;
	memcpy(a->prev, hash, sizeof(a->prev));
	a->need_newline = false;
	memcpy(a->last, a->build + start, prefix_len + RECORD_TAIL_LEN);
	a->last[prefix_len + RECORD_TAIL_LEN] = '\0';
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

void audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	close(a->fd);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

long audit_verify(const char *path, char *why, size_t why_len)
{
	struct chain_end end;
	size_t len = 0;
	char *content = read_whole(path, &len);
	long broken;

	if (content == NULL) {
		if (why_len > 0)
			snprintf(why, why_len, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	broken = check_chain(content, len, why, why_len, &end);
	free(content);
	return broken;
}
