/* test_store.c: the store conformance checks (store_checks.c) on the SQLite and the files
 * backends, each on a fresh store in a temp dir; and what only SQLite has: its schema version,
 * refused when missing, older or newer until `migrate` (open with create) brings it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../../service/store.h"
#include "../harness/harness.h"
#include "store_checks.h"

static const struct store_config sqlite_cfg = { .backend = STORE_SQLITE };
static const struct store_config files_cfg = { .backend = STORE_FILES };

static struct store *fresh(const struct store_config *cfg)
{
	struct store *st = NULL;
	char why[512] = "";
	int rc = store_open(h_dir(), cfg, true, &st, why, sizeof(why));

	cr_assert_eq(rc, 0, "store_open %s on %s: %d (%s)", store_backend_name(cfg->backend),
		     h_dir(), rc, why);
	return st;
}

static void teardown(void)
{
	h_cleanup();
}

/* A Test of check 'name' (store_checks.h) on a fresh store of 'cfg'. */
#define STORE_CHECK(suite, cfg, name)                                                              \
	Test(suite, name)                                                                          \
	{                                                                                          \
		struct store *st = fresh(&cfg);                                                    \
		store_check_##name(st);                                                            \
		store_close(st);                                                                   \
	}

/* A Test of a check that opens its own stores of 'cfg' in the test's directory. */
#define DIR_CHECK(suite, cfg, test, name)                                                          \
	Test(suite, test)                                                                          \
	{                                                                                          \
		store_check_##name(h_dir(), &cfg);                                                 \
	}

/* One Test per check, on a fresh store of 'cfg'. */
#define STORE_TESTS(suite, cfg)                                                                    \
	TestSuite(suite, .fini = teardown, .timeout = 120);                                        \
	STORE_CHECK(suite, cfg, devices)                                                           \
	STORE_CHECK(suite, cfg, nonces)                                                            \
	STORE_CHECK(suite, cfg, references)                                                        \
	STORE_CHECK(suite, cfg, certs)                                                             \
	STORE_CHECK(suite, cfg, reports)                                                           \
	STORE_CHECK(suite, cfg, releases)                                                          \
	DIR_CHECK(suite, cfg, reopen_keeps, reopen)                                                \
	DIR_CHECK(suite, cfg, two_handles, two_handles)                                            \
	DIR_CHECK(suite, cfg, nonce_race, nonce_race)                                              \
	DIR_CHECK(suite, cfg, cert_race, cert_race)                                                \
	DIR_CHECK(suite, cfg, report_race, report_race)                                            \
	STORE_CHECK(suite, cfg, attest_record)

STORE_TESTS(store_sqlite, sqlite_cfg)
/* N processes, one decision each on one nonce: on the databases (files take no such race). */
DIR_CHECK(store_sqlite, sqlite_cfg, attest_race, attest_race)
STORE_TESTS(store_files, files_cfg)

/* ---- SQLite's schema -------------------------------------------------------------------- */

/* Opens without create: the return code, the sentence in 'why'. */
static int open_existing(const struct store_config *cfg, char *why, size_t cap)
{
	struct store *st = NULL;
	int rc = store_open(h_dir(), cfg, false, &st, why, cap);

	store_close(st);
	return rc;
}

/* Runs 'sql' on the database at 'path' with SQLite itself. */
static void sql(const char *path, const char *text)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open(path, &db);

	cr_assert_eq(rc, SQLITE_OK, "sqlite3_open %s: %s", path, sqlite3_errstr(rc));
	rc = sqlite3_exec(db, text, NULL, NULL, NULL);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s: %s", path, text, sqlite3_errmsg(db));
	sqlite3_close(db);
}

static void expect_migrate(const char *why, int version)
{
	char want[128];

	snprintf(want, sizeof(want), "schema version %d, this build needs %d", version,
		 STORE_SCHEMA_VERSION);
	cr_assert(strstr(why, want) != NULL, "\"%s\" does not say \"%s\"", why, want);
	cr_assert(strstr(why, "guardian-service migrate -d") != NULL, "\"%s\" names no migrate",
		  why);
	cr_assert(strstr(why, h_dir()) != NULL, "\"%s\" names not the directory %s", why, h_dir());
	cr_assert(strstr(why, "service.db") != NULL, "\"%s\" names not the database", why);
}

Test(store_sqlite, schema_refused_until_migrated)
{
	char why[512] = "";
	struct store *st;
	int rc, version = -1;

	/* No database at all: refused, and none made by the refusal. */
	rc = open_existing(&sqlite_cfg, why, sizeof(why));
	cr_assert_lt(rc, 0, "a missing database was opened");
	expect_migrate(why, 0);
	cr_assert_neq(access(h_path("service.db"), F_OK), 0, "the refusal made the database");

	/* An empty file, and a database of another program (user_version 0): both refused. */
	h_write(h_path("service.db"), "");
	why[0] = '\0';
	rc = open_existing(&sqlite_cfg, why, sizeof(why));
	cr_assert_lt(rc, 0, "an empty database was opened");
	expect_migrate(why, 0);
	cr_assert_eq(h_sh("test ! -s '%s'", h_path("service.db")), 0,
		     "the refusal wrote into the empty database");
	sql(h_path("service.db"), "CREATE TABLE devices (name TEXT)");
	why[0] = '\0';
	rc = open_existing(&sqlite_cfg, why, sizeof(why));
	cr_assert_lt(rc, 0, "a database with no schema version was opened");
	expect_migrate(why, 0);
	unlink(h_path("service.db"));

	/* migrate: made; then it opens without create, at this build's version. */
	st = fresh(&sqlite_cfg);
	store_close(st);
	rc = store_open(h_dir(), &sqlite_cfg, false, &st, why, sizeof(why));
	cr_assert_eq(rc, 0, "a migrated database refused: %s", why);
	rc = store_schema_version(st, &version, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	cr_assert_eq(version, STORE_SCHEMA_VERSION, "schema version %d", version);
	store_close(st);

	/* Newer than this build: refused, with or without create (never downgraded). */
	sql(h_path("service.db"), "PRAGMA user_version = 2");
	why[0] = '\0';
	rc = open_existing(&sqlite_cfg, why, sizeof(why));
	cr_assert_lt(rc, 0, "a newer schema was opened");
	cr_assert(strstr(why, "schema version 2") != NULL && strstr(why, "newer") != NULL,
		  "the refusal of a newer schema says \"%s\"", why);
	why[0] = '\0';
	st = NULL;
	rc = store_open(h_dir(), &sqlite_cfg, true, &st, why, sizeof(why));
	store_close(st);
	cr_assert_lt(rc, 0, "a newer schema was opened with create");
	cr_assert(strstr(why, "newer") != NULL, "\"%s\"", why);
}

Test(store_sqlite, path_and_wal)
{
	struct store_config cfg = { .backend = STORE_SQLITE, .path = "other.db" };
	struct store *st = NULL;
	char why[512] = "", *text;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;

	/* A relative path is taken in the service directory; the file is the owner's only. */
	cr_assert_eq(store_open(h_dir(), &cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	cr_assert_eq(access(h_path("other.db"), F_OK), 0, "other.db not made in %s", h_dir());
	cr_assert_neq(access(h_path("service.db"), F_OK), 0, "service.db made though not named");
	cr_assert_eq(h_sh("test \"$(stat -c %%a '%s')\" = 600", h_path("other.db")), 0,
		     "the database is readable by others");
	cr_assert_eq(sqlite3_open(h_path("other.db"), &db), SQLITE_OK, "");
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK, "");
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "");
	text = strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
	cr_assert_str_eq(text, "wal", "journal mode %s", text);
	free(text);
}

Test(store_sqlite, locked_names_the_file)
{
	struct store *st = fresh(&sqlite_cfg);
	sqlite3 *db = NULL;
	uint8_t serial[16] = { 0x41 };
	char why[512] = "";
	int rc;

	/* Another process holding the write lock past the busy timeout: a clear refusal. */
	cr_assert_eq(sqlite3_open(h_path("service.db"), &db), SQLITE_OK, "");
	cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK, "%s",
		     sqlite3_errmsg(db));
	rc = store_cert_issued(st, "d1", serial, 2000000000, 1763744523, why, sizeof(why));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	cr_assert_lt(rc, 0, "cert_issued went through another's write lock");
	cr_assert(strstr(why, "database is locked") != NULL && strstr(why, "service.db") != NULL,
		  "\"%s\"", why);
	/* Nothing half done: once free, the certificate is recorded as the first. */
	rc = store_cert_issued(st, "d1", serial, 2000000000, 1763744523, why, sizeof(why));
	cr_assert_eq(rc, 0, "%d (%s)", rc, why);
	store_close(st);
}

/* A version 1 database made before the releases table was (an earlier build of 0.3): refused
 * without migrate, naming it; migrate (open with create) adds the table and keeps the rest. */
Test(store_sqlite, migrate_adds_the_releases_table)
{
	struct store_release r = { .version = 4, .ts_ms = 1763744523000LL };
	struct store *st = fresh(&sqlite_cfg);
	char why[512] = "", *cert = NULL, want[320];
	int rc;

	cr_assert_eq(store_device_put(st, "d1", "CERT", NULL, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	sql(h_path("service.db"), "DROP TABLE releases");
	rc = open_existing(&sqlite_cfg, why, sizeof(why));
	cr_assert_lt(rc, 0, "a database without the releases table was opened");
	snprintf(want, sizeof(want), "run guardian-service migrate -d %s", h_dir());
	cr_assert(strstr(why, "releases") != NULL && strstr(why, want) != NULL, "\"%s\"", why);
	st = fresh(&sqlite_cfg); /* migrate */
	store_close(st);
	st = NULL;
	cr_assert_eq(store_open(h_dir(), &sqlite_cfg, false, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_device_get(st, "d1", &cert, NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(cert, "CERT");
	free(cert);
	snprintf(r.sha256, sizeof(r.sha256), "%064d", 0);
	cr_assert_eq(store_release_put(st, "d1", &r, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	/* and migrate again changes nothing */
	st = fresh(&sqlite_cfg);
	memset(&r, 0, sizeof(r));
	cr_assert_eq(store_release_get(st, "d1", &r, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(r.version, 4);
	store_close(st);
}

/* ---- SQLite's synchronous level ----------------------------------------------------------- */

/* The level a store opened with 'cfg' runs at (PRAGMA synchronous on its connection). */
static int synchronous_of(const struct store_config *cfg)
{
	struct store *st = NULL;
	char why[512] = "";
	int level = -1;

	cr_assert_eq(store_open(h_dir(), cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_sqlite_synchronous(st, &level, why, sizeof(why)), 0, "%s", why);
	store_close(st);
	return level;
}

Test(store_sqlite, synchronous_is_the_configured_level)
{
	struct store_config full = { .backend = STORE_SQLITE },
			    normal = { .backend = STORE_SQLITE,
				       .sqlite_synchronous = STORE_SYNCHRONOUS_NORMAL };
	struct store *st = NULL;
	char why[512] = "";
	int level = -1;

	unsetenv("GUARDIAN_SQLITE_SYNCHRONOUS");
	/* The default is FULL (2): the WAL synced at every commit. */
	cr_assert_eq(synchronous_of(&full), 2, "the default level is not FULL");
	cr_assert_eq(synchronous_of(&normal), 1, "\"normal\" did not give NORMAL");
	/* The environment overrides the config (the benchmarks compare levels with it). */
	setenv("GUARDIAN_SQLITE_SYNCHRONOUS", "off", 1);
	cr_assert_eq(synchronous_of(&full), 0, "GUARDIAN_SQLITE_SYNCHRONOUS=off not taken");
	setenv("GUARDIAN_SQLITE_SYNCHRONOUS", "normal", 1);
	cr_assert_eq(synchronous_of(&full), 1, "GUARDIAN_SQLITE_SYNCHRONOUS=normal not taken");
	setenv("GUARDIAN_SQLITE_SYNCHRONOUS", "fast", 1);
	cr_assert_lt(store_open(h_dir(), &full, true, &st, why, sizeof(why)), 0);
	cr_assert(strstr(why, "GUARDIAN_SQLITE_SYNCHRONOUS") != NULL, "\"%s\"", why);
	unsetenv("GUARDIAN_SQLITE_SYNCHRONOUS");
	/* The other backends have no level to tell. */
	st = NULL;
	cr_assert_eq(store_open(h_dir(), &files_cfg, true, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_lt(store_sqlite_synchronous(st, &level, why, sizeof(why)), 0);
	store_close(st);
}
