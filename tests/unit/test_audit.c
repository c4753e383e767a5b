/* test_audit.c: the audit log chains its records by SHA-256 and the verifier finds every break. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "../../policy/policy.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"

static char dir[64];
static char log_path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_audit.XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(log_path, sizeof(log_path), "%s/audit.log", dir);
}

static void teardown(void)
{
	unlink(log_path);
	rmdir(dir);
}

TestSuite(audit, .init = setup, .fini = teardown);

/* SHA-256 of 's' in lowercase hex, computed here independently of audit.c. */
static void sha256_hex(const char *s, char hex[65])
{
	unsigned char sum[32];

	cr_assert_eq(mbedtls_sha256_ret((const unsigned char *)s, strlen(s), sum, 0), 0);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
}

/* Writes 'n' records ("point":"plc1/p<i>") to a fresh log and closes it. */
static void write_records(int n)
{
	struct audit *a = audit_open(log_path);
	char fields[64];

	cr_assert_not_null(a, "audit_open: %s", strerror(errno));
	for (int i = 1; i <= n; i++) {
		snprintf(fields, sizeof(fields), "\"point\":\"plc1/p%d\",\"value\":%d", i, i * 10);
		cr_assert_eq(audit_append(a, 1763744523000 + i, "write_refused", fields), 0);
	}
	audit_close(a);
}

/* The file's lines (without '\n'); the last one may lack its '\n'. Caller frees lines[0] and lines.
 */
static char **read_lines(size_t *n)
{
	char *text = gd_read_file(log_path);
	char **lines = calloc(1024, sizeof(*lines));
	size_t count = 0;

	cr_assert_not_null(text);
	cr_assert_not_null(lines);
	lines[0] = text;
	for (char *p = text; *p != '\0' && count < 1024;) {
		char *nl = strchr(p, '\n');

		lines[count++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	if (count == 0)
		lines[0] = text;
	*n = count;
	return lines;
}

static void free_lines(char **lines)
{
	free(lines[0]);
	free(lines);
}

/* Writes 'lines' back, each followed by '\n' unless it is the last and !last_newline. */
static void write_lines(char *const *lines, size_t n, bool last_newline)
{
	FILE *f = fopen(log_path, "w");

	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", lines[i], i + 1 < n || last_newline ? "\n" : "");
	cr_assert_eq(fclose(f), 0);
}

static long verify(char *why, size_t why_len)
{
	why[0] = '\0';
	return audit_verify(log_path, why, why_len);
}

/* The 64-hex value of member 'key' ("prev" or "hash") in 'line' (copied into 'out'). */
static void member_hash(const char *line, const char *key, char out[65])
{
	char pattern[16];
	const char *p;

	snprintf(pattern, sizeof(pattern), "\"%s\":\"", key);
	p = strstr(line, pattern);
	cr_assert_not_null(p, "no %s in %s", key, line);
	memcpy(out, p + strlen(pattern), 64);
	out[64] = '\0';
}

Test(audit, appended_records_verify)
{
	struct audit *a = audit_open(log_path);
	char why[256];
	size_t n;
	char **lines;
	struct stat st;

	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 1, "started", NULL), 0);
	cr_assert_eq(audit_append(a, 2, "write_accepted", ""), 0);
	cr_assert_eq(audit_append(a, 3, "write_refused", "\"point\":\"plc1/x\",\"why\":\"range\""),
		     0);
	cr_assert_eq(audit_append(a, 4, "policy_loaded", "\"rules\":[1,2,{\"a\":null}]"), 0);
	cr_assert_eq(audit_append(a, -5, "stopped", NULL), 0);
	audit_close(a);

	cr_assert_eq(verify(why, sizeof(why)), 0, "verify: %s", why);
	lines = read_lines(&n);
	cr_assert_eq(n, 5);
	cr_assert(strncmp(lines[4], "{\"seq\":5,\"ts\":-5,", 17) == 0, "%s", lines[4]);
	free_lines(lines);
	cr_assert_eq(stat(log_path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", (unsigned)(st.st_mode & 0777));
}

Test(audit, empty_file_verifies)
{
	char why[256];
	FILE *f = fopen(log_path, "w");

	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(verify(why, sizeof(why)), 0, "%s", why);
}

Test(audit, record_format_and_hash)
{
	struct audit *a = audit_open(log_path);
	const char *prefix1 = "{\"seq\":1,\"ts\":1763744523118,\"prev\":\"" ZEROS
			      "\",\"event\":\"write_refused\",\"point\":\"plc1/x\",\"value\":3";
	char hash1[65], hash2[65], prefix2[256], expect[1024];
	char *text;

	cr_assert_not_null(a);
	cr_assert_str_eq(audit_last(a), "");
	cr_assert_eq(
		audit_append(a, 1763744523118, "write_refused", "\"point\":\"plc1/x\",\"value\":3"),
		0);
	sha256_hex(prefix1, hash1);
	snprintf(expect, sizeof(expect), "%s,\"hash\":\"%s\"}", prefix1, hash1);
	cr_assert_str_eq(audit_last(a), expect);

	/* no fields: no dangling comma; prev is the first record's hash */
	cr_assert_eq(audit_append(a, 1763744523200, "started", NULL), 0);
	snprintf(prefix2, sizeof(prefix2),
		 "{\"seq\":2,\"ts\":1763744523200,\"prev\":\"%s\",\"event\":\"started\"", hash1);
	sha256_hex(prefix2, hash2);
	snprintf(expect, sizeof(expect), "%s,\"hash\":\"%s\"}", prefix2, hash2);
	cr_assert_str_eq(audit_last(a), expect);
	audit_close(a);

	/* the file holds exactly the two lines */
	text = gd_read_file(log_path);
	cr_assert_not_null(text);
	snprintf(expect, sizeof(expect), "%s,\"hash\":\"%s\"}\n%s,\"hash\":\"%s\"}\n", prefix1,
		 hash1, prefix2, hash2);
	cr_assert_str_eq(text, expect);
	free(text);
}

Test(audit, reopen_continues_seq_and_chain)
{
	struct audit *a;
	char why[256], hash3[65], prev4[65];
	char **lines;
	size_t n;

	write_records(3);
	a = audit_open(log_path);
	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 99, "started", NULL), 0);
	cr_assert_eq(audit_append(a, 100, "stopped", NULL), 0);
	audit_close(a);

	cr_assert_eq(verify(why, sizeof(why)), 0, "verify: %s", why);
	lines = read_lines(&n);
	cr_assert_eq(n, 5);
	cr_assert(strncmp(lines[3], "{\"seq\":4,\"ts\":99,", 17) == 0, "%s", lines[3]);
	member_hash(lines[2], "hash", hash3);
	member_hash(lines[3], "prev", prev4);
	cr_assert_str_eq(prev4, hash3);
	free_lines(lines);
}

Test(audit, changed_field_is_detected)
{
	char why[256];
	char **lines;
	char *p;
	size_t n;

	write_records(5);
	lines = read_lines(&n);
	cr_assert_eq(n, 5);
	p = strstr(lines[1], "plc1/p2");
	cr_assert_not_null(p);
	p[6] = '7'; /* plc1/p7 */
	write_lines(lines, n, true);
	free_lines(lines);

	cr_assert_eq(verify(why, sizeof(why)), 2, "verify: %s", why);
	cr_assert_not_null(strstr(why, "line 2:"), "%s", why);
	cr_assert_not_null(strstr(why, "changed"), "%s", why);
}

Test(audit, removed_record_is_detected)
{
	char why[256];
	char **lines;
	size_t n;

	write_records(5);
	lines = read_lines(&n);
	cr_assert_eq(n, 5);
	memmove(&lines[1], &lines[2], 3 * sizeof(*lines));
	write_lines(lines, 4, true);
	free_lines(lines);

	cr_assert_eq(verify(why, sizeof(why)), 2, "verify: %s", why);
	cr_assert(strstr(why, "seq 3 follows 1") != NULL, "%s", why);
	cr_assert_not_null(strstr(why, "removed"), "%s", why);
}

Test(audit, removed_first_record_is_detected)
{
	char why[256];
	char **lines;
	size_t n;

	write_records(3);
	lines = read_lines(&n);
	cr_assert_eq(n, 3);
	write_lines(lines + 1, 2, true);
	free_lines(lines);

	cr_assert_eq(verify(why, sizeof(why)), 1, "verify: %s", why);
	cr_assert_not_null(strstr(why, "line 1:"), "%s", why);
}

/* A record removed and the next one renumbered and rehashed: only prev gives it away. */
Test(audit, renumbered_record_breaks_prev)
{
	char why[256], prefix[512], hash[65], line[1024];
	char **lines;
	char *seq, *tail;
	size_t n;

	write_records(4);
	lines = read_lines(&n);
	cr_assert_eq(n, 4);
	/* line 3 becomes seq 2, with a correct hash over its new text */
	seq = strstr(lines[2], "\"seq\":3,");
	cr_assert_not_null(seq);
	seq[6] = '2';
	tail = strstr(lines[2], ",\"hash\":\"");
	cr_assert_not_null(tail);
	snprintf(prefix, sizeof(prefix), "%.*s", (int)(tail - lines[2]), lines[2]);
	sha256_hex(prefix, hash);
	snprintf(line, sizeof(line), "%s,\"hash\":\"%s\"}", prefix, hash);
	lines[1] = line;
	write_lines(lines, 2, true);
	free_lines(lines);

	cr_assert_eq(verify(why, sizeof(why)), 2, "verify: %s", why);
	cr_assert_not_null(strstr(why, "prev does not match line 1's hash"), "%s", why);
}

Test(audit, swapped_records_are_detected)
{
	char why[256];
	char **lines;
	char *tmp;
	size_t n;

	write_records(5);
	lines = read_lines(&n);
	cr_assert_eq(n, 5);
	tmp = lines[2];
	lines[2] = lines[3];
	lines[3] = tmp;
	write_lines(lines, n, true);
	free_lines(lines);

	cr_assert_eq(verify(why, sizeof(why)), 3, "verify: %s", why);
	cr_assert_not_null(strstr(why, "seq 4 follows 2"), "%s", why);
}

Test(audit, truncated_last_line_is_detected)
{
	char why[256];
	char **lines;
	size_t n;

	write_records(5);
	lines = read_lines(&n);
	cr_assert_eq(n, 5);
	lines[4][strlen(lines[4]) - 10] = '\0';
	write_lines(lines, n, false);
	cr_assert_eq(verify(why, sizeof(why)), 5, "verify: %s", why);
	cr_assert_not_null(strstr(why, "torn"), "%s", why);

	free_lines(lines);

	/* only the newline missing: still a torn write */
	cr_assert_eq(unlink(log_path), 0);
	write_records(5);
	lines = read_lines(&n);
	write_lines(lines, n, false);
	free_lines(lines);
	cr_assert_eq(verify(why, sizeof(why)), 5, "verify: %s", why);
	cr_assert_not_null(strstr(why, "torn"), "%s", why);
}

Test(audit, garbage_line_is_detected)
{
	char why[256];
	FILE *f;

	write_records(5);
	f = fopen(log_path, "a");
	cr_assert_not_null(f);
	fputs("hello, world\n", f);
	fclose(f);
	cr_assert_eq(verify(why, sizeof(why)), 6, "verify: %s", why);
	cr_assert_str_eq(why, "line 6: not a JSON record");
}

Test(audit, json_without_chain_members_is_detected)
{
	char why[256];
	FILE *f;

	write_records(2);
	f = fopen(log_path, "a");
	cr_assert_not_null(f);
	fputs("{\"seq\":3,\"event\":\"x\"}\n", f);
	fclose(f);
	cr_assert_eq(verify(why, sizeof(why)), 3, "verify: %s", why);
	cr_assert_not_null(strstr(why, "prev"), "%s", why);
}

/* Fills 'buf' with members of 'len' bytes: "xxx...x":1 */
static void big_fields(char *buf, size_t len)
{
	memset(buf, 'x', len - 3);
	buf[0] = '"';
	memcpy(buf + len - 3, "\":1", 4);
}

Test(audit, invalid_event_and_oversized_record_refused)
{
	struct audit *a = audit_open(log_path);
	const char *bad[] = { "", "Write", "write-refused", "a b", "x\"", "w1" };
	char *big = malloc(9000);
	struct stat st;

	cr_assert_not_null(a);
	cr_assert_not_null(big);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(audit_append(a, 1, bad[i], NULL), GD_EINVAL, "event \"%s\"", bad[i]);
	cr_assert_eq(audit_append(a, 1, NULL, NULL), GD_EINVAL);
	cr_assert_eq(audit_append(a, 1, "ok", "\"a\":1\n,\"b\":2"), GD_EINVAL);
	big_fields(big, 8999); /* larger than a record may be on its own */
	cr_assert_eq(audit_append(a, 1, "big", big), GD_EINVAL);
	/* the record {"seq":1,"ts":1,"prev":"<64>","event":"big",<fields>,"hash":"<64>"} is 179 +
	 * fields bytes: 8013 makes exactly 8 KiB */
	big_fields(big, 8014);
	cr_assert_eq(audit_append(a, 1, "big", big), GD_EINVAL);
	big_fields(big, 8013);
	cr_assert_eq(audit_append(a, 1, "big", big), 0);
	cr_assert_eq(strlen(audit_last(a)), 8192);
	cr_assert(strncmp(audit_last(a), "{\"seq\":1,", 9) == 0, "refused appends took a seq");
	free(big);
	audit_close(a);
	cr_assert_eq(stat(log_path, &st), 0);
	cr_assert_eq(st.st_size, 8193); /* the one record that fitted, and its newline */
}

Test(audit, unreadable_file_reports_why)
{
	char why[256];

	cr_assert_eq(verify(why, sizeof(why)), -1);
	cr_assert_not_null(strstr(why, strerror(ENOENT)), "%s", why);
	snprintf(why, sizeof(why), "%s/no/such/dir/audit.log", dir);
	errno = 0;
	cr_assert_null(audit_open(why));
	cr_assert_eq(errno, ENOENT);
}

Test(audit, open_on_broken_chain_keeps_linking)
{
	struct audit *a;
	char why[256], hash5[65], prev6[65];
	char **lines;
	char *p;
	size_t n;

	write_records(5);
	lines = read_lines(&n);
	p = strstr(lines[1], "plc1/p2");
	cr_assert_not_null(p);
	p[6] = '9';
	write_lines(lines, n, true);
	free_lines(lines);

	a = audit_open(log_path);
	cr_assert_not_null(a, "a broken chain must still open");
	cr_assert_eq(audit_append(a, 7, "started", NULL), 0);
	audit_close(a);

	cr_assert_eq(verify(why, sizeof(why)), 2, "verify: %s", why);
	lines = read_lines(&n);
	cr_assert_eq(n, 6);
	cr_assert(strncmp(lines[5], "{\"seq\":6,", 9) == 0, "%s", lines[5]);
	member_hash(lines[4], "hash", hash5);
	member_hash(lines[5], "prev", prev6);
	cr_assert_str_eq(prev6, hash5);
	free_lines(lines);
}

Test(audit, open_after_torn_write_starts_a_new_line)
{
	struct audit *a;
	char why[256], hash4[65], prev6[65];
	char **lines;
	size_t n;

	write_records(5);
	lines = read_lines(&n);
	lines[4][20] = '\0';
	write_lines(lines, n, false);
	free_lines(lines);

	a = audit_open(log_path);
	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 7, "started", NULL), 0);
	audit_close(a);

	/* the torn line stays broken, the new record is on its own line, chained to line 4 */
	cr_assert_eq(verify(why, sizeof(why)), 5, "verify: %s", why);
	cr_assert_str_eq(why, "line 5: not a JSON record");
	lines = read_lines(&n);
	cr_assert_eq(n, 6);
	cr_assert(strncmp(lines[5], "{\"seq\":5,", 9) == 0, "%s", lines[5]);
	member_hash(lines[3], "hash", hash4);
	member_hash(lines[5], "prev", prev6);
	cr_assert_str_eq(prev6, hash4);
	free_lines(lines);
}

#define THREADS		   4
#define RECORDS_PER_THREAD 100

static void *append_many(void *arg)
{
	struct audit *a = arg;
	char fields[64];
	intptr_t failures = 0;

	for (int i = 0; i < RECORDS_PER_THREAD; i++) {
		snprintf(fields, sizeof(fields), "\"thread\":%lu,\"i\":%d",
			 (unsigned long)pthread_self() % 1000, i);
		if (audit_append(a, i, "write_accepted", fields) != 0)
			failures++;
	}
	return (void *)failures;
}

Test(audit, concurrent_appends_stay_chained)
{
	struct audit *a = audit_open(log_path);
	pthread_t threads[THREADS];
	char why[256];
	char **lines;
	size_t n;

	cr_assert_not_null(a);
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&threads[i], NULL, append_many, a), 0);
	for (int i = 0; i < THREADS; i++) {
		void *failures;

		cr_assert_eq(pthread_join(threads[i], &failures), 0);
		cr_assert_eq((intptr_t)failures, 0);
	}
	cr_assert(strncmp(audit_last(a), "{\"seq\":400,", 11) == 0, "%s", audit_last(a));
	audit_close(a);

	cr_assert_eq(verify(why, sizeof(why)), 0, "verify: %s", why);
	lines = read_lines(&n);
	cr_assert_eq(n, THREADS * RECORDS_PER_THREAD);
	free_lines(lines);
}
