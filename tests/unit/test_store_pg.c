/* test_store_pg.c: the PostgreSQL store (service/store_pg.c) on a throwaway cluster: the checks
 * of store_checks.h on a fresh database each (two instances on one database, 32 processes racing
 * one nonce among them), the schema refusal and migrate, a lost connection, no password shown. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/options.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../base/base.h"
#include "../../service/store.h"
#include "../harness/h_postgres.h"
#include "../harness/harness.h"
#include "store_checks.h"

/*
 * One cluster for the run: Criterion's runner starts it before the first test when the run
 * selects a store_pg test (PRE_ALL) and stops it after the last (POST_ALL); the workers that run
 * the tests find its directory in $GUARDIAN_TEST_POSTGRES. A worker that does not (a runner
 * that did not start one) starts its own, stopped by the suite's .fini.
 */
static struct h_postgres run_cluster = { .watch_fd = -1 };
static struct h_postgres own_cluster = { .watch_fd = -1 };
#define START_FAILED_ENV H_POSTGRES_ENV "_FAILED"

static const char *const test_names[] = {
	"devices",
	"nonces",
	"references",
	"certs",
	"reports",
	"schema_missing",
	"schema_older",
	"schema_newer",
	"migrate_racing",
	"reopen",
	"two_handles",
	"nonce_race",
	"lost_connection",
	"lost_in_transaction",
	"cert_race",
	"cert_import",
	"report_race",
	"releases",
	"attest_record",
	"attest_race",
	"migrate_adds_the_releases_table",
};

/* Whether Criterion's --filter (an extglob) selects a test of this suite. */
static bool suite_selected(void)
{
	const char *pattern = criterion_options.pattern;

	if (pattern == NULL)
		return true;
	for (size_t i = 0; i < sizeof(test_names) / sizeof(test_names[0]); i++) {
		char full[64];

		snprintf(full, sizeof(full), "store_pg/%s", test_names[i]);
		if (fnmatch(pattern, full, FNM_EXTMATCH) == 0)
			return true;
	}
	return false;
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	char why[512];

	(void)set;
	if (!suite_selected() || h_postgres_missing() != NULL)
		return;
	if (h_postgres_start(&run_cluster, why, sizeof(why)) != 0) {
		setenv(START_FAILED_ENV, why, 1);
		return;
	}
	setenv(H_POSTGRES_ENV, run_cluster.dir, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	unsetenv(H_POSTGRES_ENV);
	if (h_postgres_stop(&run_cluster) != 0)
		abort(); /* a postmaster outlived the run (said on stderr): fail it */
}

static void teardown(void)
{
	h_postgres_stop(&own_cluster);
	h_cleanup();
}

TestSuite(store_pg, .fini = teardown, .timeout = 180);

/* The cluster's directory; skips the test when PostgreSQL is not installed. */
static const char *cluster(void)
{
	const char *dir = getenv(H_POSTGRES_ENV), *failed = getenv(START_FAILED_ENV);
	const char *missing = h_postgres_missing();
	char why[512];

	if (missing != NULL)
		cr_skip_test("%s", missing);
	cr_assert_null(failed, "the cluster did not start: %s", failed);
	if (dir != NULL && dir[0] != '\0')
		return dir;
	if (own_cluster.dir[0] == '\0')
		cr_assert_eq(h_postgres_start(&own_cluster, why, sizeof(why)), 0, "%s", why);
	return own_cluster.dir;
}

/* A fresh, empty database; its conninfo in 'conninfo' and a config naming it in 'cfg'. */
static void fresh_db(char *conninfo, size_t cap, struct store_config *cfg)
{
	(void)h_dir(); /* made now: the processes a test forks use it too, and .fini removes it */
	cr_assert_eq(h_postgres_createdb(cluster(), conninfo, cap), 0, "CREATE DATABASE failed");
	*cfg = (struct store_config){ .backend = STORE_POSTGRES, .conninfo = conninfo };
}

/* A store on a fresh database, its schema made. */
static struct store *fresh_store(char *conninfo, size_t cap, struct store_config *cfg)
{
	struct store *st = NULL;
	char why[512];

	fresh_db(conninfo, cap, cfg);
	cr_assert_eq(store_open(h_dir(), cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	return st;
}

#define CHECK_TEST(name)                                                                           \
	Test(store_pg, name)                                                                       \
	{                                                                                          \
		char conninfo[256];                                                                \
		struct store_config cfg;                                                           \
		struct store *st = fresh_store(conninfo, sizeof(conninfo), &cfg);                  \
                                                                                                   \
		store_check_##name(st);                                                            \
		store_close(st);                                                                   \
	}

CHECK_TEST(devices)
CHECK_TEST(nonces)
CHECK_TEST(references)
CHECK_TEST(certs)
CHECK_TEST(reports)
CHECK_TEST(attest_record) /* one decision, one transaction */
CHECK_TEST(releases)	  /* what was published to each device */

/* Opening without 'create' is refused with 'want' in the reason, naming migrate and the
 * database. */
static void refused(const struct store_config *cfg, const char *want, bool names_migrate)
{
	struct store *st = NULL;
	char why[512], db[64];
	const char *dbname = strstr(cfg->conninfo, "dbname=");
	int rc = store_open(h_dir(), cfg, false, &st, why, sizeof(why));

	cr_assert_lt(rc, 0, "a database with the wrong schema was opened");
	cr_assert_null(st);
	cr_assert_not_null(strstr(why, want), "\"%s\" does not say \"%s\"", why, want);
	cr_assert_not_null(dbname);
	sscanf(dbname, "dbname=%63s", db);
	cr_assert_not_null(strstr(why, db), "\"%s\" does not name the database %s", why, db);
	if (names_migrate) {
		char migrate[320];

		snprintf(migrate, sizeof(migrate), "run guardian-service migrate -d %s", h_dir());
		cr_assert_not_null(strstr(why, migrate), "\"%s\" does not say \"%s\"", why,
				   migrate);
	}
}

Test(store_pg, schema_missing)
{
	char conninfo[256], why[512];
	struct store_config cfg;
	struct store *st = NULL;
	int version = -1;

	fresh_db(conninfo, sizeof(conninfo), &cfg);
	refused(&cfg, "schema version 0, this build needs 1", true);
	/* migrate makes it; then it opens, at version 1. */
	cr_assert_eq(store_open(h_dir(), &cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	cr_assert_eq(store_open(h_dir(), &cfg, false, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_schema_version(st, &version, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(version, STORE_SCHEMA_VERSION);
	store_close(st);
}

/* A database a build before this one's schema left: schema_version says 0, no tables. */
Test(store_pg, schema_older)
{
	const char *older = "CREATE TABLE schema_version (version integer NOT NULL);"
			    "INSERT INTO schema_version VALUES (0)";
	char conninfo[256], why[512];
	struct store_config cfg;
	struct store *st = NULL;
	char *cert = NULL;

	fresh_db(conninfo, sizeof(conninfo), &cfg);
	cr_assert_eq(h_postgres_sql(conninfo, older), 0);
	refused(&cfg, "schema version 0, this build needs 1", true);
	cr_assert_eq(store_open(h_dir(), &cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_device_put(st, "gd-1", "CERT", NULL, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	cr_assert_eq(store_open(h_dir(), &cfg, false, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_device_get(st, "gd-1", &cert, NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(cert, "CERT");
	free(cert);
	store_close(st);
}

/* A version 1 database made before the releases table was (an earlier build of 0.3): refused
 * without migrate; migrate adds the table and keeps the rest. */
Test(store_pg, migrate_adds_the_releases_table)
{
	struct store_release r = { .version = 4, .ts_ms = 1763744523000LL };
	char conninfo[256], why[512], *cert = NULL;
	struct store_config cfg;
	struct store *st = fresh_store(conninfo, sizeof(conninfo), &cfg);

	cr_assert_eq(store_device_put(st, "gd-1", "CERT", NULL, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	cr_assert_eq(h_postgres_sql(conninfo, "DROP TABLE releases"), 0);
	refused(&cfg, "without the releases table", true);
	st = NULL;
	cr_assert_eq(store_open(h_dir(), &cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	st = NULL;
	cr_assert_eq(store_open(h_dir(), &cfg, false, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_device_get(st, "gd-1", &cert, NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(cert, "CERT");
	free(cert);
	snprintf(r.sha256, sizeof(r.sha256), "%064d", 0);
	cr_assert_eq(store_release_put(st, "gd-1", &r, why, sizeof(why)), 0, "%s", why);
	memset(&r, 0, sizeof(r));
	cr_assert_eq(store_release_get(st, "gd-1", &r, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(r.version, 4);
	store_close(st);
}

Test(store_pg, schema_newer)
{
	char conninfo[256], why[512];
	struct store_config cfg;
	struct store *st = fresh_store(conninfo, sizeof(conninfo), &cfg);

	store_close(st);
	cr_assert_eq(h_postgres_sql(conninfo, "UPDATE schema_version SET version = 2"), 0);
	refused(&cfg, "schema version 2 is newer than this build's 1", false);
	/* migrate does not go back either */
	st = NULL;
	cr_assert_lt(store_open(h_dir(), &cfg, true, &st, why, sizeof(why)), 0);
	cr_assert_null(st);
	cr_assert_not_null(strstr(why, "newer"), "%s", why);
}

/* Eight migrate runs at once on an empty database: each succeeds (they take turns). */
Test(store_pg, migrate_racing)
{
	enum { RUNS = 8 };
	char conninfo[256], why[512];
	struct store_config cfg;
	struct store *st = NULL;
	pid_t pids[RUNS];
	int go[2], version = 0;

	fresh_db(conninfo, sizeof(conninfo), &cfg);
	cr_assert_eq(pipe(go), 0);
	for (int i = 0; i < RUNS; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			char byte, child_why[512];
			struct store *mine = NULL;
			int rc;

			close(go[1]);
			if (read(go[0], &byte, 1) < 0)
				_exit(2);
			rc = store_open(h_dir(), &cfg, true, &mine, child_why, sizeof(child_why));
			if (rc != 0)
				fprintf(stderr, "migrate %d: %s\n", i, child_why);
			store_close(mine);
			_exit(rc == 0 ? 0 : 1);
		}
	}
	close(go[0]);
	close(go[1]); /* every child's read returns now */
	for (int i = 0; i < RUNS; i++) {
		int status = 0;

		cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "migrate run %d failed",
			  i);
	}
	cr_assert_eq(store_open(h_dir(), &cfg, false, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_schema_version(st, &version, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(version, STORE_SCHEMA_VERSION);
	store_close(st);
}

/* A check of store_checks.h that opens its own stores from a config: on a fresh database. */
#define CONFIG_CHECK_TEST(name)                                                                    \
	Test(store_pg, name)                                                                       \
	{                                                                                          \
		char conninfo[256];                                                                \
		struct store_config cfg;                                                           \
                                                                                                   \
		fresh_db(conninfo, sizeof(conninfo), &cfg);                                        \
		store_check_##name(h_dir(), &cfg);                                                 \
	}

CONFIG_CHECK_TEST(reopen)
CONFIG_CHECK_TEST(two_handles) /* two instances on one database */
CONFIG_CHECK_TEST(nonce_race)  /* 32 processes, one nonce: exactly one wins */
CONFIG_CHECK_TEST(attest_race) /* 32 processes, one decision each on one nonce: one certificate */
CONFIG_CHECK_TEST(cert_race)   /* instances issuing to one device: one certificate in force */
CONFIG_CHECK_TEST(report_race) /* read-modify-writes of one report at once: none lost */

/* A merge that has the server end every other connection to the database: the store's, in the
 * middle of its transaction. */
static int merge_cutting(const char *old_json, char **next, void *ctx, char *why, size_t cap)
{
	const char *conninfo = ctx;

	(void)old_json;
	if (h_postgres_sql(conninfo, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
				     " WHERE datname = current_database()"
				     " AND pid <> pg_backend_pid()") != 0) {
		snprintf(why, cap, "psql failed");
		return -1;
	}
	*next = strdup("{\"lost\":true}");
	return *next == NULL ? -1 : 0;
}

/* The connection lost inside a transaction: an error saying nothing was committed, and the
 * store works again on the next call. */
Test(store_pg, lost_in_transaction)
{
	char conninfo[256], why[512] = "", *json = NULL;
	struct store_config cfg;
	struct store *st = fresh_store(conninfo, sizeof(conninfo), &cfg);
	int rc = store_report_update(st, "gd-1", merge_cutting, conninfo, why, sizeof(why));

	cr_assert_eq(rc, GD_ENOTCONN, "report_update: %d (%s)", rc, why);
	cr_assert_not_null(strstr(why, "nothing of it was committed"), "%s", why);
	cr_assert_eq(store_report_get(st, "gd-1", &json, why, sizeof(why)), STORE_NOTFOUND,
		     "a transaction cut off was committed (%s)", json ? json : why);
	store_close(st);
}

static bool same_cert(const struct store_cert *a, const struct store_cert *b)
{
	return memcmp(a->serial, b->serial, sizeof(a->serial)) == 0 &&
	       a->not_after_s == b->not_after_s && a->revoked_s == b->revoked_s &&
	       (a->revoked_s == 0 || a->reason == b->reason);
}

/* migrate --import-files' two calls: a certificate recorded as it is, once; listed in order. */
Test(store_pg, cert_import)
{
	const int64_t now = 1763744523;
	const struct store_cert in_force = { .serial = { 0x41, 2 }, .not_after_s = now + 86400 };
	const struct store_cert revoked = { .serial = { 0x41, 1 },
					    .not_after_s = now + 3600,
					    .revoked_s = now - 10,
					    .reason = STORE_REVOKE_SUPERSEDED };
	const struct store_cert expired = { .serial = { 0x41, 3 }, .not_after_s = now - 86400 };
	char conninfo[256], why[512];
	struct store_config cfg;
	struct store *st = fresh_store(conninfo, sizeof(conninfo), &cfg);
	struct store_revoked *crl = NULL;
	struct store_cert *list = NULL;
	size_t n = 0;

	cr_assert_eq(store_cert_import(st, "gd-1", &revoked, why, sizeof(why)), 1, "%s", why);
	cr_assert_eq(store_cert_import(st, "gd-1", &in_force, why, sizeof(why)), 1, "%s", why);
	cr_assert_eq(store_cert_import(st, "gd-1", &expired, why, sizeof(why)), 1, "%s", why);
	cr_assert_eq(store_cert_import(st, "gd-1", &revoked, why, sizeof(why)), 0,
		     "imported twice (%s)", why);
	cr_assert_eq(store_cert_list(st, "gd-1", now, &list, &n, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 2, "%zu listed, expected the 2 unexpired", n);
	cr_assert(same_cert(&list[0], &revoked), "the first listed differs");
	cr_assert(same_cert(&list[1], &in_force), "the second listed differs");
	free(list);
	cr_assert_eq(store_cert_revoked(st, now, &crl, &n, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 1);
	cr_assert(memcmp(crl[0].serial, revoked.serial, 16) == 0);
	cr_assert_eq(crl[0].revoked_s, now - 10);
	free(crl);
	/* the one in force is superseded by the next issued, as any */
	cr_assert_eq(store_cert_issued(st, "gd-1", (uint8_t[16]){ 0x41, 4 }, now + 86400, now, why,
				       sizeof(why)),
		     1, "%s", why);
	store_close(st);
}

/* The server ends the connection (a restart, a failover): the next call reconnects, once. */
Test(store_pg, lost_connection)
{
	char conninfo[256], why[512];
	struct store_config cfg;
	struct store *st = fresh_store(conninfo, sizeof(conninfo), &cfg);
	const char *kill_others = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
				  " WHERE datname = current_database() AND pid <> pg_backend_pid()";
	uint8_t serial[16] = { 0xab };
	char *cert = NULL;
	int rc;

	cr_assert_eq(store_device_put(st, "gd-1", "CERT", NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(h_postgres_sql(conninfo, kill_others), 0);
	/* a statement on its own: run again on the new connection */
	cr_assert_eq(store_device_get(st, "gd-1", &cert, NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(cert, "CERT");
	free(cert);
	/* a transaction lost before it began: the same */
	cr_assert_eq(h_postgres_sql(conninfo, kill_others), 0);
	rc = store_cert_issued(st, "gd-1", serial, 2000000000, 1000000000, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	store_close(st);
}

/* Neither a failed connection nor a conninfo libpq cannot parse shows the password. */
Test(store_pg, password_never_shown)
{
	const char *conninfos[] = {
		"host=/nonexistent-gd dbname=fleet user=gd password=hunter2secret",
		"host=/nonexistent-gd dbname=fleet password hunter2secret",
		"postgresql://gd:hunter2secret@/fleet?host=/nonexistent-gd&bogus%zz=1",
	};

	for (size_t i = 0; i < sizeof(conninfos) / sizeof(conninfos[0]); i++) {
		struct store_config cfg = { .backend = STORE_POSTGRES,
					    .conninfo = (char *)(uintptr_t)conninfos[i] };
		struct store *st = NULL;
		char why[512] = "";

		cr_assert_lt(store_open(h_dir(), &cfg, false, &st, why, sizeof(why)), 0,
			     "conninfo %zu opened", i);
		cr_assert_null(strstr(why, "hunter2secret"), "conninfo %zu: %s", i, why);
		cr_assert_neq(why[0], '\0');
	}
}
