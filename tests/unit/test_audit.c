/* test_audit.c: a keyed, hash-chained audit log, and a verifier that finds every break. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mbedtls/md.h>
#include <mbedtls/sha256.h>

#include "../../base/base.h"
#include "../../guardian/audit.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"

static char dir[64];
static char log_path[128];
static char key_path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_audit.XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(log_path, sizeof(log_path), "%s/audit.log", dir);
	snprintf(key_path, sizeof(key_path), "%s/audit.key", dir);
}

static void teardown(void)
{
	unlink(log_path);
	unlink(key_path);
	rmdir(dir);
}

TestSuite(audit, .init = setup, .fini = teardown);

/* SHA-256 of 's' in lowercase hex, computed here independently of audit.c. */
static void sha256_hex(const char *s, char hex[65])
{
	unsigned char sum[32];

	cr_assert_eq(mbedtls_sha256_ret((const unsigned char *)s, strlen(s), sum, 0), 0);
	gd_hex_encode(sum, sizeof(sum), hex);
}

/* HMAC-SHA256 of 's' under the key in audit.key, in lowercase hex: what only the key's holder can
 * compute. */
static void hmac_hex(const char *s, char hex[65])
{
	unsigned char key[64], sum[32];
	FILE *f = fopen(key_path, "rb");

	cr_assert_not_null(f, "%s: %s", key_path, strerror(errno));
	cr_assert_eq(fread(key, 1, sizeof(key), f), 32, "the key is not 32 bytes");
	fclose(f);
	cr_assert_eq(mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, 32,
				     (const unsigned char *)s, strlen(s), sum),
		     0);
	gd_hex_encode(sum, sizeof(sum), hex);
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

/* The 64-hex value of member 'key' ("prev" or "mac") in 'line' (copied into 'out'). */
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

Test(audit, record_format_and_mac)
{
	struct audit *a = audit_open(log_path);
	const char *prefix1 = "{\"seq\":1,\"ts\":1763744523118,\"prev\":\"" ZEROS
			      "\",\"event\":\"write_refused\",\"point\":\"plc1/x\",\"value\":3";
	char mac1[65], mac2[65], prefix2[256], expect[1024];
	char *text;

	cr_assert_not_null(a);
	cr_assert_str_eq(audit_last(a), "");
	cr_assert_eq(
		audit_append(a, 1763744523118, "write_refused", "\"point\":\"plc1/x\",\"value\":3"),
		0);
	hmac_hex(prefix1, mac1);
	snprintf(expect, sizeof(expect), "%s,\"mac\":\"%s\"}", prefix1, mac1);
	cr_assert_str_eq(audit_last(a), expect);

	/* no fields: no dangling comma; prev is the first record's MAC */
	cr_assert_eq(audit_append(a, 1763744523200, "started", NULL), 0);
	snprintf(prefix2, sizeof(prefix2),
		 "{\"seq\":2,\"ts\":1763744523200,\"prev\":\"%s\",\"event\":\"started\"", mac1);
	hmac_hex(prefix2, mac2);
	snprintf(expect, sizeof(expect), "%s,\"mac\":\"%s\"}", prefix2, mac2);
	cr_assert_str_eq(audit_last(a), expect);
	audit_close(a);

	/* the file holds exactly the two lines */
	text = gd_read_file(log_path);
	cr_assert_not_null(text);
	snprintf(expect, sizeof(expect), "%s,\"mac\":\"%s\"}\n%s,\"mac\":\"%s\"}\n", prefix1, mac1,
		 prefix2, mac2);
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
	member_hash(lines[2], "mac", hash3);
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
	cr_assert(strstr(why, "seq 3 follows seq 1") != NULL, "%s", why);
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

/* A record removed and the next one renumbered and its MAC remade (by the key's holder): only prev
 * gives it away. */
Test(audit, renumbered_record_breaks_prev)
{
	char why[256], prefix[512], hash[65], line[1024];
	char **lines;
	char *seq, *tail;
	size_t n;

	write_records(4);
	lines = read_lines(&n);
	cr_assert_eq(n, 4);
	/* line 3 becomes seq 2, with a correct MAC over its new text */
	seq = strstr(lines[2], "\"seq\":3,");
	cr_assert_not_null(seq);
	seq[6] = '2';
	tail = strstr(lines[2], ",\"mac\":\"");
	cr_assert_not_null(tail);
	snprintf(prefix, sizeof(prefix), "%.*s", (int)(tail - lines[2]), lines[2]);
	hmac_hex(prefix, hash);
	snprintf(line, sizeof(line), "%s,\"mac\":\"%s\"}", prefix, hash);
	lines[1] = line;
	write_lines(lines, 2, true);
	free_lines(lines);

	cr_assert_eq(verify(why, sizeof(why)), 2, "verify: %s", why);
	cr_assert_not_null(strstr(why, "prev does not match line 1's MAC"), "%s", why);
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
	cr_assert_not_null(strstr(why, "seq 4 follows seq 2"), "%s", why);
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
	/* the record {"seq":1,"ts":1,"prev":"<64>","event":"big",<fields>,"mac":"<64>"} is 178 +
	 * fields bytes: 8014 makes exactly 8 KiB */
	big_fields(big, 8015);
	cr_assert_eq(audit_append(a, 1, "big", big), GD_EINVAL);
	big_fields(big, 8014);
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
	member_hash(lines[4], "mac", hash5);
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
	member_hash(lines[3], "mac", hash4);
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

/* ---- the keyed chain, and a verifier that reports every problem ---------------------------- */

#define MAX_PROBLEMS 16

/* The problems audit_check reported, in order. */
struct problems {
	size_t n;
	long line[MAX_PROBLEMS];
	char why[MAX_PROBLEMS][320];
};

static void collect(void *ctx, long line, const char *why)
{
	struct problems *p = ctx;

	cr_assert_lt(p->n, MAX_PROBLEMS, "too many problems; the last: %s", why);
	p->line[p->n] = line;
	snprintf(p->why[p->n], sizeof(p->why[p->n]), "%s", why);
	p->n++;
}

/* audit_check with the head 'seq':'mac' (seq 0: none); fails the test if the log cannot be read. */
static void check(uint64_t seq, const char *mac, struct problems *p, struct audit_result *res)
{
	char why[320] = "";

	memset(p, 0, sizeof(*p));
	cr_assert_eq(audit_check(log_path, seq, mac, collect, p, res, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert_eq(res->problems, p->n, "the count differs from the problems reported");
}

/* Replaces the tail of 'line' (",\"mac\":\"...\"}") by plain SHA-256 over the rest under 'name'. */
static void rehash_plain(char *line, size_t cap, const char *name)
{
	char prefix[512], sum[65];
	char *tail = strstr(line, ",\"mac\":\"");

	cr_assert_not_null(tail, "%s", line);
	snprintf(prefix, sizeof(prefix), "%.*s", (int)(tail - line), line);
	sha256_hex(prefix, sum);
	snprintf(line, cap, "%s,\"%s\":\"%s\"}", prefix, name, sum);
}

Test(audit, keyed_mac_differs_from_plain_sha256)
{
	struct audit *a = audit_open(log_path);
	char prefix[512], mac[65], plain[65];
	const char *tail;

	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 5, "write_refused", "\"point\":\"plc1/x\""), 0);
	tail = strstr(audit_last(a), ",\"mac\":\"");
	cr_assert_not_null(tail, "%s", audit_last(a));
	snprintf(prefix, sizeof(prefix), "%.*s", (int)(tail - audit_last(a)), audit_last(a));
	hmac_hex(prefix, mac);
	sha256_hex(prefix, plain);
	cr_assert_eq(strncmp(tail + 8, mac, 64), 0, "the MAC is not HMAC-SHA256 under the key");
	cr_assert_str_eq(tail + 8 + 64, "\"}");
	cr_assert_neq(strncmp(tail + 8, plain, 64), 0,
		      "the MAC is plain SHA-256: anyone can forge");
	audit_close(a);
}

Test(audit, key_file_is_made_0600_and_a_readable_one_is_refused)
{
	struct audit *a = audit_open(log_path);
	struct audit_result res;
	char why[320] = "";
	struct stat st;

	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 1, "started", NULL), 0);
	audit_close(a);
	cr_assert_eq(stat(key_path, &st), 0, "no %s", key_path);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", (unsigned)(st.st_mode & 0777));
	cr_assert_eq(st.st_size, 32);
	/* reopening uses the same key: the chain still verifies */
	a = audit_open(log_path);
	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 2, "stopped", NULL), 0);
	audit_close(a);
	cr_assert_eq(verify(why, sizeof(why)), 0, "%s", why);

	cr_assert_eq(chmod(key_path, 0644), 0);
	errno = 0;
	cr_assert_null(audit_open(log_path), "a key others can read was used");
	cr_assert_eq(errno, EACCES);
	cr_assert_eq(audit_check(log_path, 0, NULL, NULL, NULL, &res, why, sizeof(why)),
		     GD_EDENIED);
	cr_assert_not_null(strstr(why, "chmod 600"), "%s", why);
	cr_assert_not_null(strstr(why, "0644"), "%s", why);
}

Test(audit, a_missing_key_with_keyed_records_is_refused_not_replaced)
{
	struct audit_result res;
	char why[320] = "";
	struct stat st;

	write_records(2);
	cr_assert_eq(unlink(key_path), 0);
	errno = 0;
	cr_assert_null(audit_open(log_path), "a new key would make every old record unverifiable");
	cr_assert_eq(errno, ENOKEY);
	cr_assert_neq(stat(key_path, &st), 0, "a new key was made");
	cr_assert_eq(audit_check(log_path, 0, NULL, NULL, NULL, &res, why, sizeof(why)),
		     GD_EDENIED);
	cr_assert_not_null(strstr(why, "audit.key is missing"), "%s", why);
}

/* What an attacker without the key can do: change the last record and recompute SHA-256. */
Test(audit, record_rehashed_with_plain_sha256_is_reported)
{
	const char *names[] = { "mac", "hash" }; /* as a keyed record, as one from before the key */
	const char *expect[] = { "line 4: MAC does not match its content (record changed)",
				 "line 4: a plain SHA-256 \"hash\" after keyed records: written "
				 "without the audit key (forged)" };
	struct problems p;
	struct audit_result res;
	char orig[1024], line[1024];
	char **lines;
	size_t n;

	write_records(4);
	lines = read_lines(&n);
	cr_assert_eq(n, 4);
	snprintf(orig, sizeof(orig), "%s", lines[3]);
	lines[3] = line;
	for (size_t i = 0; i < 2; i++) {
		snprintf(line, sizeof(line), "%s", orig);
		memcpy(strstr(line, "plc1/p4"), "plc1/p9", 7);
		rehash_plain(line, sizeof(line), names[i]);
		write_lines(lines, n, true);
		check(0, NULL, &p, &res);
		cr_expect_eq(res.records, 4);
		cr_assert_eq(p.n, 1, "as \"%s\": %zu problems", names[i], p.n);
		cr_expect_eq(p.line[0], 4);
		cr_expect_str_eq(p.why[0], expect[i]);
	}
	free_lines(lines);
}

Test(audit, two_edits_far_apart_are_both_reported)
{
	struct problems p;
	struct audit_result res;
	char **lines;
	size_t n;

	write_records(20);
	lines = read_lines(&n);
	cr_assert_eq(n, 20);
	memcpy(strstr(lines[2], "plc1/p3\""), "plc1/p8", 7);
	memcpy(strstr(lines[16], "\"value\":170"), "\"value\":100", 11);
	write_lines(lines, n, true);
	free_lines(lines);

	check(0, NULL, &p, &res);
	cr_expect_eq(res.records, 20);
	cr_assert_eq(p.n, 2, "%zu problems; the first: %s", p.n, p.why[0]);
	cr_expect_eq(p.line[0], 3);
	cr_expect_eq(p.line[1], 17);
	cr_expect_str_eq(p.why[1], "line 17: MAC does not match its content (record changed)");
	/* the chain is intact again after line 17 */
	cr_expect_eq(res.head_seq, 20);
	cr_expect_eq(res.head_line, 20);
}

Test(audit, removed_middle_record_is_one_problem)
{
	struct problems p;
	struct audit_result res;
	char **lines;
	size_t n;

	write_records(9);
	lines = read_lines(&n);
	memmove(&lines[4], &lines[5], 4 * sizeof(*lines));
	write_lines(lines, 8, true);
	free_lines(lines);

	check(0, NULL, &p, &res);
	cr_expect_eq(res.records, 8);
	cr_assert_eq(p.n, 1, "%zu problems; the first: %s", p.n, p.why[0]);
	cr_expect_str_eq(p.why[0],
			 "line 5: seq 6 follows seq 4 (line 4): 1 record removed or moved");
}

Test(audit, swapped_records_are_two_problems_and_the_chain_goes_on)
{
	struct problems p;
	struct audit_result res;
	char **lines;
	char *tmp;
	size_t n;

	write_records(6);
	lines = read_lines(&n);
	tmp = lines[2];
	lines[2] = lines[3];
	lines[3] = tmp;
	write_lines(lines, n, true);
	free_lines(lines);

	check(0, NULL, &p, &res);
	cr_assert_eq(p.n, 2, "%zu problems; the last: %s", p.n, p.why[p.n ? p.n - 1 : 0]);
	cr_expect_eq(p.line[0], 3);
	cr_expect_eq(p.line[1], 4);
	cr_expect_not_null(strstr(p.why[1], "out of order"), "%s", p.why[1]);
	cr_expect_eq(res.head_seq, 6);
}

Test(audit, head_and_count_of_an_intact_log)
{
	struct audit *a = audit_open(log_path);
	struct problems p;
	struct audit_result res;
	uint64_t seq = 99;
	char mac[65], last_mac[65];

	cr_assert_not_null(a);
	audit_head(a, &seq, mac);
	cr_expect_eq(seq, 0);
	cr_expect_str_eq(mac, ZEROS);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(audit_append(a, i, "write_done", "\"point\":\"plc1/x\""), 0);
	audit_head(a, &seq, mac);
	member_hash(audit_last(a), "mac", last_mac);
	audit_close(a);
	cr_expect_eq(seq, 7);
	cr_expect_str_eq(mac, last_mac);

	check(seq, mac, &p, &res);
	cr_expect_eq(p.n, 0, "%s", p.why[0]);
	cr_expect_eq(res.records, 7);
	cr_expect_eq(res.head_seq, 7);
	cr_expect_str_eq(res.head_mac, mac);
	cr_expect_eq(res.head_line, 7);
	cr_expect_eq(res.unkeyed, 0);
}

Test(audit, truncated_tail_is_found_against_the_published_head)
{
	struct audit *a;
	struct problems p;
	struct audit_result res;
	uint64_t seq;
	char mac[65];
	char **lines;
	size_t n;

	write_records(5);
	a = audit_open(log_path);
	cr_assert_not_null(a);
	audit_head(a, &seq, mac);
	audit_close(a);
	cr_assert_eq(seq, 5);

	/* the last two records cut off: the file alone looks intact */
	lines = read_lines(&n);
	write_lines(lines, 3, true);
	free_lines(lines);
	check(0, NULL, &p, &res);
	cr_expect_eq(p.n, 0);
	check(seq, mac, &p, &res);
	cr_expect_eq(res.records, 3);
	cr_assert_eq(p.n, 1);
	cr_expect_eq(p.line[0], 0);
	cr_expect_not_null(strstr(p.why[0], "truncated"), "%s", p.why[0]);
	cr_expect_not_null(strstr(p.why[0], "seq 4 to 5"), "%s", p.why[0]);

	/* guardian started again and wrote seq 4 and 5 anew: seq 5 has another MAC */
	a = audit_open(log_path);
	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 1, "started", NULL), 0);
	cr_assert_eq(audit_append(a, 2, "stopped", NULL), 0);
	audit_close(a);
	check(seq, mac, &p, &res);
	cr_assert_eq(p.n, 1);
	cr_expect_not_null(strstr(p.why[0], "rewritten"), "%s", p.why[0]);
}

Test(audit, torn_line_is_reported_and_counted)
{
	struct problems p;
	struct audit_result res;
	char **lines;
	size_t n;

	write_records(3);
	lines = read_lines(&n);
	lines[2][30] = '\0';
	write_lines(lines, n, false);
	free_lines(lines);
	check(0, NULL, &p, &res);
	cr_expect_eq(res.records, 3);
	cr_assert_eq(p.n, 1);
	cr_expect_eq(p.line[0], 3);
	cr_expect_not_null(strstr(p.why[0], "torn write"), "%s", p.why[0]);
	cr_expect_eq(res.head_seq, 2);
}

Test(audit, fields_that_are_not_json_members_are_refused)
{
	struct audit *a = audit_open(log_path);
	const char *bad[] = {
		"\"a\":1},{\"b\":2",	   /* two objects */
		"\"a\":",		   /* cut after the colon */
		"\"why\":\"value too lar", /* a string cut short */
		"\"a\":[1,2",		   /* an array cut short */
		"\"a\":1,",		   /* a dangling comma */
		"\"seq\":99",		   /* a second seq */
		"\"mac\":\"x\"",	   /* a second mac */
		"\"hash\":\"x\"",	   /* a member only old records carry */
		"\"a\":\"tab\there\"",	   /* a raw control character */
		"1",			   /* not a member */
	};
	char *big = malloc(20000);
	char **lines;
	size_t n;

	cr_assert_not_null(a);
	cr_assert_not_null(big);
	cr_assert_eq(audit_append(a, 1, "write_refused", "\"point\":\"plc1/x\""), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(audit_append(a, 2, "write_refused", bad[i]), GD_EINVAL, "%s", bad[i]);
	/* a long field is refused whole, not cut into invalid JSON */
	memcpy(big, "\"why\":\"", 7);
	memset(big + 7, 'w', 19000);
	memcpy(big + 19007, "\"", 2);
	cr_expect_eq(audit_append(a, 3, "write_refused", big), GD_EINVAL);
	big[8100] = '\0'; /* short enough to fit, but its string is not closed */
	cr_expect_eq(audit_append(a, 3, "write_refused", big), GD_EINVAL);
	cr_assert_eq(audit_append(a, 4, "write_done", "\"point\":\"plc1/x\",\"value\":[1,{}]"), 0);
	cr_expect(strncmp(audit_last(a), "{\"seq\":2,", 9) == 0, "a refused record took a seq");
	audit_close(a);
	free(big);

	/* the file holds the two good records, each one JSON object */
	lines = read_lines(&n);
	cr_assert_eq(n, 2);
	for (size_t i = 0; i < n; i++) {
		cJSON *doc = cJSON_Parse(lines[i]);

		cr_expect(cJSON_IsObject(doc), "line %zu is not JSON: %s", i + 1, lines[i]);
		cJSON_Delete(doc);
	}
	free_lines(lines);
}

/* Writes 'n' records as guardian did before the key: "hash", plain SHA-256. */
static void write_unkeyed_records(int n)
{
	FILE *f = fopen(log_path, "w");
	char prev[65] = ZEROS, prefix[512], sum[65];

	cr_assert_not_null(f);
	for (int i = 1; i <= n; i++) {
		snprintf(prefix, sizeof(prefix),
			 "{\"seq\":%d,\"ts\":%d,\"prev\":\"%s\",\"event\":\"write_refused\","
			 "\"point\":\"plc1/p%d\"",
			 i, i, prev, i);
		sha256_hex(prefix, sum);
		fprintf(f, "%s,\"hash\":\"%s\"}\n", prefix, sum);
		memcpy(prev, sum, sizeof(prev));
	}
	cr_assert_eq(fclose(f), 0);
}

Test(audit, records_from_before_the_key_are_checked_and_continued)
{
	struct audit *a;
	struct problems p;
	struct audit_result res;
	char **lines;
	size_t n;

	write_unkeyed_records(3);
	check(0, NULL, &p, &res);
	cr_expect_eq(p.n, 0, "%s", p.why[0]);
	cr_expect_eq(res.unkeyed, 3);
	cr_expect(!res.unkeyed_anchored);

	a = audit_open(log_path);
	cr_assert_not_null(a);
	cr_assert_eq(audit_append(a, 9, "started", NULL), 0);
	cr_expect(strncmp(audit_last(a), "{\"seq\":4,", 9) == 0, "%s", audit_last(a));
	audit_close(a);
	check(0, NULL, &p, &res);
	cr_expect_eq(p.n, 0, "%s", p.why[0]);
	cr_expect_eq(res.records, 4);
	cr_expect_eq(res.unkeyed, 3);
	cr_expect_eq(res.unkeyed_last_line, 3);
	cr_expect(res.unkeyed_anchored, "the keyed record does not vouch for the old ones");

	/* an old record changed and its hash recomputed: the keyed record's prev gives it away */
	lines = read_lines(&n);
	{
		char line[1024], prefix[512], sum[65];
		char *tail;

		snprintf(line, sizeof(line), "%s", lines[2]);
		memcpy(strstr(line, "plc1/p3"), "plc1/p7", 7);
		tail = strstr(line, ",\"hash\":\"");
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(tail - line), line);
		sha256_hex(prefix, sum);
		snprintf(line, sizeof(line), "%s,\"hash\":\"%s\"}", prefix, sum);
		lines[2] = line;
		write_lines(lines, n, true);
	}
	free_lines(lines);
	check(0, NULL, &p, &res);
	cr_assert_eq(p.n, 1);
	cr_expect_eq(p.line[0], 4);
}
