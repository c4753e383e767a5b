/* store_sqlite.c: the SQLite backend of the store (store.h): one database file in WAL mode that
 * every instance and CLI command on the host opens, each with its own connection. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../base/base.h"
#include "store_impl.h"

#define SQLITE_DEFAULT_FILE "service.db"
/* How long a statement waits for another process's write transaction before it gives up with
 * "database is locked": every write here is a few row changes, held for well under a
 * millisecond, so this is only reached when something holds the database far longer (a `sqlite3`
 * shell left inside BEGIN, a stuck process). */
#define SQLITE_BUSY_MS 5000

/*
 * The synchronous level. In WAL mode, what a committed transaction survives:
 *   OFF     a crash of the process (the WAL is in the kernel's page cache), not a power loss:
 *           that may lose the last transactions and, without the WAL's fsync before a
 *           checkpoint, leave the database corrupt;
 *   NORMAL  a crash of the process; on power loss the last transactions since the previous
 *           checkpoint may be rolled back, but the database stays consistent (the WAL is synced
 *           before each checkpoint, not at each commit);
 *   FULL    both: the WAL is synced at every commit;
 *   EXTRA   as FULL (it adds a directory sync in the rollback-journal modes, not in WAL).
 * What must survive is a consumed nonce and the record of an issued certificate. With NORMAL a
 * power loss may take the last commits before the cut: a nonce consumed then could be used once
 * more within its TTL (by someone who captured the evidence and cut the power), and a
 * certificate issued then would not be revoked as superseded when the device's next one is
 * issued. FULL keeps both.
 *
 * Measured on this machine (ext4 on a virtual disk, 2 cores shared with other jobs, so ranges
 * over runs): bench/bench_store.c, three separate writes per attestation, OFF 12,900 to 20,300
 * a second, NORMAL 7,900 to 12,600, FULL 1,000 to 2,800. Since one attestation is one
 * transaction (store_attest_record: one commit, one WAL sync), FULL does 1,000 to 1,900 whole
 * attestations a second on one core (bench/bench_store_attest.c), above the 500 asked of it.
 *
 * Chosen: FULL by default. "store": {"backend": "sqlite", "synchronous": "normal"} in
 * service.json is the operator's way to trade it for speed (store_config.sqlite_synchronous).
 * GUARDIAN_SQLITE_SYNCHRONOUS=off|normal|full|extra overrides both, for the benchmarks that
 * compare the levels (bench/bench_store.c, bench/bench_store_attest.c); not for operators.
 */
#define SYNC_ENV "GUARDIAN_SQLITE_SYNCHRONOUS"

/* A certificate counts as expired SKEW_S after its notAfter, for a broker whose clock is behind
 * (the service's SERVICE_SKEW_S; the files backend's too): 'now' in the statements below is
 * the caller's now_s less this. */
#define SKEW_S 60

/* The statements kept prepared for the life of the connection. */
enum stmt_id {
	ST_DEVICE_GET,
	ST_DEVICE_PUT,
	ST_DEVICE_LIST,
	ST_INSTALLED_PUT,
	ST_INSTALLED_GET,
	ST_NONCE_INSERT,
	ST_NONCE_TAG,
	ST_NONCE_SWEEP,
	ST_REF_PUT,
	ST_REF_REMOVE,
	ST_REF_ALL,
	ST_GEN_BUMP,
	ST_GEN_GET,
	ST_CERT_FORGET_DEV,
	ST_CERT_INSERT,
	ST_CERT_REVOKE,
	ST_CERT_FORGET_ALL,
	ST_CERT_REVOKED,
	ST_CERT_LIST,
	ST_CERT_IMPORT,
	ST_REPORT_GET,
	ST_REPORT_PUT,
	ST_REPORT_LIST,
	ST_RELEASE_PUT,
	ST_RELEASE_GET,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_DEVICE_GET] = "SELECT cert, ak FROM devices WHERE name = ?1",
	[ST_DEVICE_PUT] = "INSERT INTO devices (name, cert, ak) VALUES (?1, ?2, ?3) "
			  "ON CONFLICT (name) DO UPDATE SET cert = excluded.cert, "
			  "ak = coalesce(excluded.ak, ak)",
	[ST_DEVICE_LIST] = "SELECT name FROM devices ORDER BY name",
	[ST_INSTALLED_PUT] = "UPDATE devices SET installed = ?2 WHERE name = ?1",
	[ST_INSTALLED_GET] = "SELECT installed FROM devices WHERE name = ?1",
	[ST_NONCE_INSERT] = "INSERT INTO nonces (nonce, ts_ms, tag) VALUES (?1, ?2, ?3)",
	[ST_NONCE_TAG] = "SELECT tag FROM nonces WHERE nonce = ?1",
	[ST_NONCE_SWEEP] = "DELETE FROM nonces WHERE ts_ms < ?1",
	[ST_REF_PUT] = "INSERT OR REPLACE INTO \"references\" (label, json) VALUES (?1, ?2)",
	[ST_REF_REMOVE] = "DELETE FROM \"references\" WHERE label = ?1",
	[ST_REF_ALL] = "SELECT label, json FROM \"references\" ORDER BY label",
	[ST_GEN_BUMP] = "UPDATE reference_generation SET value = value + 1",
	[ST_GEN_GET] = "SELECT value FROM reference_generation",
	[ST_CERT_FORGET_DEV] = "DELETE FROM certs WHERE dev = ?1 AND not_after_s < ?2",
	[ST_CERT_INSERT] = "INSERT INTO certs (serial, dev, not_after_s) VALUES (?1, ?2, ?3)",
	[ST_CERT_REVOKE] = "UPDATE certs SET revoked_s = ?3, reason = ?4 WHERE dev = ?1 AND "
			   "revoked_s IS NULL AND not_after_s >= ?2",
	[ST_CERT_FORGET_ALL] = "DELETE FROM certs WHERE not_after_s < ?1",
	[ST_CERT_REVOKED] = "SELECT serial, not_after_s, revoked_s, reason, dev FROM certs "
			    "WHERE revoked_s IS NOT NULL ORDER BY revoked_s, serial",
	[ST_CERT_LIST] = "SELECT serial, not_after_s, revoked_s, reason FROM certs WHERE dev = ?1 "
			 "AND not_after_s >= ?2 ORDER BY id",
	[ST_CERT_IMPORT] = "INSERT INTO certs (serial, dev, not_after_s, revoked_s, reason) "
			   "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (serial) DO NOTHING",
	[ST_REPORT_GET] = "SELECT json FROM reports WHERE dev = ?1",
	[ST_REPORT_PUT] = "INSERT OR REPLACE INTO reports (dev, json) VALUES (?1, ?2)",
	[ST_REPORT_LIST] = "SELECT dev FROM reports ORDER BY dev",
	[ST_RELEASE_PUT] =
		"INSERT OR REPLACE INTO releases (dev, version, sha256, ts_ms, withdrawn) "
		"VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_RELEASE_GET] = "SELECT version, sha256, ts_ms, withdrawn FROM releases WHERE dev = ?1",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

/*
 * Schema version 1. The version is the database's user_version, set in the transaction that
 * makes the tables. Certificates are kept until they expire, revoked or not: the CRL lists a
 * revoked one until its notAfter, even past STORE_MAX_PER_DEVICE newer ones (every earlier
 * certificate of a device is revoked when a newer one is issued, so the cap would otherwise
 * take revoked certificates off the CRL).
 */
static const char schema_v1[] =
	"CREATE TABLE devices (name TEXT PRIMARY KEY, cert TEXT NOT NULL, ak TEXT, installed TEXT);"
	"CREATE TABLE nonces (nonce BLOB PRIMARY KEY, ts_ms INTEGER NOT NULL, tag BLOB NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE INDEX nonces_ts ON nonces (ts_ms);"
	"CREATE TABLE \"references\" (label TEXT PRIMARY KEY, json TEXT NOT NULL);"
	"CREATE TABLE reference_generation (value INTEGER NOT NULL);"
	"INSERT INTO reference_generation (value) VALUES (1);"
	"CREATE TABLE certs (id INTEGER PRIMARY KEY, serial BLOB NOT NULL UNIQUE,"
	" dev TEXT NOT NULL, not_after_s INTEGER NOT NULL, revoked_s INTEGER, reason INTEGER);"
	"CREATE INDEX certs_dev ON certs (dev);"
	"CREATE TABLE reports (dev TEXT PRIMARY KEY, json TEXT NOT NULL);"
	"PRAGMA user_version = 1;";

/*
 * Also version 1, added before any release of it: what `release publish` last delivered to each
 * device. Run by every `migrate` (IF NOT EXISTS), so that a version 1 database made before the
 * table was gets it; an open without migrate refuses such a database (schema_check).
 */
static const char schema_v1_releases[] =
	"CREATE TABLE IF NOT EXISTS releases (dev TEXT PRIMARY KEY, version INTEGER NOT NULL,"
	" sha256 TEXT NOT NULL, ts_ms INTEGER NOT NULL, withdrawn INTEGER NOT NULL);";

struct sqlite_store {
	sqlite3 *db;
	char *path; /* the database file, for the messages */
	sqlite3_stmt *stmt[ST_COUNT];
};

static struct sqlite_store *impl(struct store *st)
{
	return st->impl;
}

/* The sentence for the failure of 'what' (sqlite3 result 'rc'), and the gd_err for it. */
static int fail(struct sqlite_store *ss, int rc, const char *what, char *why, size_t cap)
{
	int primary = rc & 0xff;

	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
		gd_whyf(why, cap,
			"%s: %s: database is locked: another process kept a write transaction "
			"open past the %d ms busy timeout",
			ss->path, what, SQLITE_BUSY_MS);
		return GD_EIO;
	}
	gd_whyf(why, cap, "%s: %s: %s", ss->path, what,
		ss->db != NULL ? sqlite3_errmsg(ss->db) : sqlite3_errstr(rc));
	return primary == SQLITE_NOMEM ? GD_ENOMEM : GD_EIO;
}

/* The prepared statement 'id', reset with its bindings cleared; NULL with 'why' set. */
static sqlite3_stmt *stmt(struct sqlite_store *ss, enum stmt_id id, char *why, size_t cap)
{
	sqlite3_stmt *s = ss->stmt[id];
	int rc;

	if (s != NULL) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		return s;
	}
	rc = sqlite3_prepare_v3(ss->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
	if (rc != SQLITE_OK) {
		fail(ss, rc, "cannot prepare a statement", why, cap);
		return NULL;
	}
	ss->stmt[id] = s;
	return s;
}

/* Steps 's' to its end (a statement with no row). 0 or a gd_err. */
static int run(struct sqlite_store *ss, sqlite3_stmt *s, const char *what, char *why, size_t cap)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return fail(ss, rc, what, why, cap);
}

/* Runs the kept statement 'id' with no bindings. 0 or a gd_err. */
static int run_id(struct sqlite_store *ss, enum stmt_id id, const char *what, char *why, size_t cap)
{
	sqlite3_stmt *s = stmt(ss, id, why, cap);

	return s == NULL ? GD_EIO : run(ss, s, what, why, cap);
}

static int bind_text(struct sqlite_store *ss, sqlite3_stmt *s, int i, const char *text, char *why,
		     size_t cap)
{
	int rc = text == NULL ? sqlite3_bind_null(s, i)
			      : sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC);

	return rc == SQLITE_OK ? 0 : fail(ss, rc, "cannot bind", why, cap);
}

static int bind_blob(struct sqlite_store *ss, sqlite3_stmt *s, int i, const void *p, int n,
		     char *why, size_t cap)
{
	int rc = sqlite3_bind_blob(s, i, p, n, SQLITE_STATIC);

	return rc == SQLITE_OK ? 0 : fail(ss, rc, "cannot bind", why, cap);
}

static int bind_int(struct sqlite_store *ss, sqlite3_stmt *s, int i, int64_t v, char *why,
		    size_t cap)
{
	int rc = sqlite3_bind_int64(s, i, v);

	return rc == SQLITE_OK ? 0 : fail(ss, rc, "cannot bind", why, cap);
}

/* A malloc'd copy of text column 'i' of the current row into *out (NULL for SQL NULL). */
static int column_dup(sqlite3_stmt *s, int i, char **out, char *why, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	*out = NULL;
	if (t == NULL)
		return 0;
	*out = strdup((const char *)t);
	if (*out == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	return 0;
}

/* The write transaction: BEGIN IMMEDIATE takes the write lock now (waiting up to the busy
 * timeout), so that no statement inside it can meet SQLITE_BUSY half way. */
static int tx_begin(struct sqlite_store *ss, char *why, size_t cap)
{
	return run_id(ss, ST_BEGIN, "cannot begin a transaction", why, cap);
}

/* Commits when 'rc' is 0, else rolls back. 'rc', or the commit's failure. */
static int tx_end(struct sqlite_store *ss, int rc, char *why, size_t cap)
{
	if (rc == 0) {
		rc = run_id(ss, ST_COMMIT, "cannot commit", why, cap);
		if (rc != 0 && sqlite3_get_autocommit(ss->db) == 0)
			run_id(ss, ST_ROLLBACK, "cannot roll back", NULL, 0);
	} else if (sqlite3_get_autocommit(ss->db) == 0) {
		run_id(ss, ST_ROLLBACK, "cannot roll back", NULL, 0);
	}
	return rc;
}

/* An array of the text column 0 of every row of 's' (already bound). */
static int collect_strings(struct sqlite_store *ss, sqlite3_stmt *s, char ***out, size_t *n,
			   char *why, size_t cap)
{
	char **v = NULL;
	size_t len = 0, room = 0;
	int rc = 0, step;

	*out = NULL;
	*n = 0;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		char **bigger = store_grow(v, len, &room, 16, sizeof(*v));

		if (bigger == NULL) {
			gd_whyf(why, cap, "out of memory");
			rc = GD_ENOMEM;
			goto fail;
		}
		v = bigger;
		rc = column_dup(s, 0, &v[len], why, cap);
		if (rc != 0)
			goto fail;
		len++;
	}
	if (step != SQLITE_DONE) {
		rc = fail(ss, step, "cannot read", why, cap);
		goto fail;
	}
	sqlite3_reset(s);
	*out = v;
	*n = len;
	return 0;
fail:
	sqlite3_reset(s);
	store_strings_free(v, len);
	return rc;
}

/* ---- open, schema ----------------------------------------------------------------------- */

static int user_version(struct sqlite_store *ss, int *version, char *why, size_t cap)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(ss->db, "PRAGMA user_version", -1, &s, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*version = sqlite3_column_int(s, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : fail(ss, rc, "cannot read the schema version", why, cap);
}

static int exec(struct sqlite_store *ss, const char *sql, const char *what, char *why, size_t cap)
{
	int rc = sqlite3_exec(ss->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : fail(ss, rc, what, why, cap);
}

/* Makes the schema, or brings it to STORE_SCHEMA_VERSION, in one transaction. */
static int schema_make(struct sqlite_store *ss, char *why, size_t cap)
{
	int version, rc;

	rc = exec(ss, "BEGIN IMMEDIATE", "cannot begin a transaction", why, cap);
	if (rc != 0)
		return rc;
	/* Read inside the transaction: another `migrate` may have made it meanwhile. */
	rc = user_version(ss, &version, why, cap);
	if (rc == 0 && version > STORE_SCHEMA_VERSION) {
		gd_whyf(why, cap,
			"%s: schema version %d, newer than this build's %d: use a newer "
			"guardian-service",
			ss->path, version, STORE_SCHEMA_VERSION);
		rc = GD_ECONFIG;
	}
	if (rc == 0 && version == 0)
		rc = exec(ss, schema_v1, "cannot make the schema", why, cap);
	if (rc == 0)
		rc = exec(ss, schema_v1_releases, "cannot make the releases table", why, cap);
	/* Upgrades from version 1 onwards go here, one step at a time. */
	if (rc == 0)
		return exec(ss, "COMMIT", "cannot commit the schema", why, cap);
	sqlite3_exec(ss->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* A version 1 database made before the releases table was: refused until `migrate` adds it. */
static int releases_check(struct sqlite_store *ss, const char *dir, char *why, size_t cap)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(
		ss->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'releases'",
		-1, &s, NULL);
	bool there = false;

	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW)
		there = true;
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		rc = SQLITE_OK;
	sqlite3_finalize(s);
	if (rc != SQLITE_OK)
		return fail(ss, rc, "cannot read the schema", why, cap);
	if (!there) {
		gd_whyf(why, cap,
			"%s: schema version 1 without the releases table (made by an earlier "
			"build): run guardian-service migrate -d %s",
			ss->path, dir);
		return GD_ECONFIG;
	}
	return 0;
}

/* Refuses a schema this build does not read. */
static int schema_check(struct sqlite_store *ss, const char *dir, char *why, size_t cap)
{
	int version, rc = user_version(ss, &version, why, cap);

	if (rc != 0)
		return rc;
	if (version > STORE_SCHEMA_VERSION) {
		gd_whyf(why, cap,
			"%s: schema version %d, newer than this build's %d: use a newer "
			"guardian-service",
			ss->path, version, STORE_SCHEMA_VERSION);
		return GD_ECONFIG;
	}
	if (version < STORE_SCHEMA_VERSION) {
		gd_whyf(why, cap,
			"%s: schema version %d, this build needs %d: run guardian-service migrate "
			"-d %s",
			ss->path, version, STORE_SCHEMA_VERSION, dir);
		return GD_ECONFIG;
	}
	return releases_check(ss, dir, why, cap);
}

/* The synchronous level: SYNC_ENV if set (the benchmarks'), else the config's. GD_ECONFIG for
 * an environment value that is not a level. */
static int sync_level(const struct store_config *cfg, const char **level, char *why, size_t cap)
{
	static const char *const levels[] = { "off", "normal", "full", "extra" };
	const char *v = getenv(SYNC_ENV);

	*level = cfg->sqlite_synchronous == STORE_SYNCHRONOUS_NORMAL ? "normal" : "full";
	if (v == NULL || *v == '\0')
		return 0;
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(v, levels[i]) == 0) {
			*level = levels[i];
			return 0;
		}
	}
	gd_whyf(why, cap,
		"%s=\"%s\": not a synchronous level (expected off, normal, full or extra)",
		SYNC_ENV, v);
	return GD_ECONFIG;
}

static int sqlite_synchronous(struct store *st, int *level, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(ss->db, "PRAGMA synchronous", -1, &s, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*level = sqlite3_column_int(s, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : fail(ss, rc, "cannot read the synchronous level", why, cap);
}

/* Opens (with 'create', makes) the file; 0600 when made here, and its -wal and -shm with it. */
static int db_open(struct sqlite_store *ss, bool create, char *why, size_t cap)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, rc;

	if (create) {
		int fd = open(ss->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

		if (fd < 0) {
			gd_whyf(why, cap, "%s: cannot create: %s", ss->path, strerror(errno));
			return GD_EIO;
		}
		close(fd);
	}
	rc = sqlite3_open_v2(ss->path, &ss->db, flags, NULL);
	if (rc != SQLITE_OK)
		return fail(ss, rc, "cannot open", why, cap);
	sqlite3_extended_result_codes(ss->db, 1);
	sqlite3_busy_timeout(ss->db, SQLITE_BUSY_MS);
	return 0;
}

/* The journal mode WAL (persistent in the file: set once, read after). */
static int wal_on(struct sqlite_store *ss, char *why, size_t cap)
{
	sqlite3_stmt *s = NULL;
	bool wal = false;
	int rc = sqlite3_prepare_v2(ss->db, "PRAGMA journal_mode", -1, &s, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		wal = strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_OK)
		return fail(ss, rc, "cannot read the journal mode", why, cap);
	if (wal)
		return 0;
	return exec(ss, "PRAGMA journal_mode = WAL", "cannot set the journal mode to WAL", why,
		    cap);
}

static void sqlite_close(struct store *st)
{
	struct sqlite_store *ss = impl(st);

	if (ss == NULL)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(ss->stmt[i]);
	sqlite3_close(ss->db);
	free(ss->path);
	free(ss);
	st->impl = NULL;
}

static int sqlite_open(struct store *st, const struct store_config *cfg, bool create, char *why,
		       size_t cap)
{
	struct sqlite_store *ss = calloc(1, sizeof(*ss));
	const char *level;
	char pragma[64];
	int rc;

	if (ss == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	st->impl = ss;
	ss->path = gd_path_resolve(st->dir, cfg->path != NULL ? cfg->path : SQLITE_DEFAULT_FILE);
	if (ss->path == NULL) {
		gd_whyf(why, cap, "out of memory");
		rc = GD_ENOMEM;
		goto out;
	}
	rc = sync_level(cfg, &level, why, cap);
	if (rc != 0)
		goto out;
	if (!create && access(ss->path, F_OK) != 0 && errno == ENOENT) {
		gd_whyf(why, cap,
			"%s: schema version 0, this build needs %d: run guardian-service "
			"migrate -d %s (there is no database yet)",
			ss->path, STORE_SCHEMA_VERSION, st->dir);
		rc = GD_ECONFIG;
		goto out;
	}
	rc = db_open(ss, create, why, cap);
	/* Refused before anything is written (WAL mode writes the header of an empty file). */
	if (rc == 0 && !create)
		rc = schema_check(ss, st->dir, why, cap);
	if (rc == 0)
		rc = wal_on(ss, why, cap);
	if (rc == 0) {
		snprintf(pragma, sizeof(pragma), "PRAGMA synchronous = %s", level);
		rc = exec(ss, pragma, "cannot set synchronous", why, cap);
	}
	if (rc == 0 && create)
		rc = schema_make(ss, why, cap);
	if (rc == 0 && create)
		rc = schema_check(ss, st->dir, why, cap);
out:
	if (rc != 0)
		sqlite_close(st);
	return rc;
}

static int sqlite_schema_version(struct store *st, int *version, char *why, size_t cap)
{
	return user_version(impl(st), version, why, cap);
}

/* ---- devices ---------------------------------------------------------------------------- */

static int sqlite_device_get(struct store *st, const char *name, char **cert_pem, char **ak_pem,
			     char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_DEVICE_GET, why, cap);
	char *cert = NULL, *ak = NULL;
	int rc, step;

	if (cert_pem != NULL)
		*cert_pem = NULL;
	if (ak_pem != NULL)
		*ak_pem = NULL;
	if (s == NULL)
		return GD_EIO;
	rc = bind_text(ss, s, 1, name, why, cap);
	if (rc != 0)
		return rc;
	step = sqlite3_step(s);
	if (step == SQLITE_DONE) {
		rc = STORE_NOTFOUND;
	} else if (step != SQLITE_ROW) {
		rc = fail(ss, step, "cannot read a device", why, cap);
	} else {
		if (cert_pem != NULL)
			rc = column_dup(s, 0, &cert, why, cap);
		if (rc == 0 && ak_pem != NULL)
			rc = column_dup(s, 1, &ak, why, cap);
	}
	sqlite3_reset(s);
	if (rc != 0) {
		free(cert);
		free(ak);
		return rc;
	}
	if (cert_pem != NULL)
		*cert_pem = cert;
	if (ak_pem != NULL)
		*ak_pem = ak;
	return 0;
}

static int sqlite_device_put(struct store *st, const char *name, const char *cert_pem,
			     const char *ak_pem, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_DEVICE_PUT, why, cap);
	int rc;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, name, why, cap)) != 0 ||
	    (rc = bind_text(ss, s, 2, cert_pem, why, cap)) != 0 ||
	    (rc = bind_text(ss, s, 3, ak_pem, why, cap)) != 0)
		return rc;
	return run(ss, s, "cannot record a device", why, cap);
}

static int sqlite_device_list(struct store *st, char ***names, size_t *n, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_DEVICE_LIST, why, cap);

	*names = NULL;
	*n = 0;
	return s == NULL ? GD_EIO : collect_strings(ss, s, names, n, why, cap);
}

static int sqlite_installed_put(struct store *st, const char *name, const char *json, char *why,
				size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_INSTALLED_PUT, why, cap);
	int rc;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, name, why, cap)) != 0 ||
	    (rc = bind_text(ss, s, 2, json, why, cap)) != 0)
		return rc;
	rc = run(ss, s, "cannot record what a device runs", why, cap);
	if (rc == 0 && sqlite3_changes(ss->db) == 0) {
		gd_whyf(why, cap, "%s: no device \"%s\" to record what it runs for", ss->path,
			name);
		rc = GD_EINVAL;
	}
	return rc;
}

static int sqlite_installed_get(struct store *st, const char *name, char **json, char *why,
				size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_INSTALLED_GET, why, cap);
	int rc = 0, step;

	*json = NULL;
	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, name, why, cap)) != 0)
		return rc;
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		rc = column_dup(s, 0, json, why, cap);
	else if (step != SQLITE_DONE)
		rc = fail(ss, step, "cannot read what a device runs", why, cap);
	sqlite3_reset(s);
	if (rc == 0 && *json == NULL)
		rc = STORE_NOTFOUND;
	return rc;
}

/* ---- nonces ----------------------------------------------------------------------------- */

static int sqlite_nonce_consume(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
				const uint8_t tag[16], bool *duplicate, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_NONCE_INSERT, why, cap);
	int rc, step;

	*duplicate = false;
	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_blob(ss, s, 1, nonce, NONCE_LEN, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 2, ts_ms, why, cap)) != 0 ||
	    (rc = bind_blob(ss, s, 3, tag, 16, why, cap)) != 0)
		return rc;
	/* The primary key decides: of any number of inserts of one nonce, one commits. */
	step = sqlite3_step(s);
	sqlite3_reset(s);
	if (step == SQLITE_DONE)
		return 0;
	if ((step & 0xff) != SQLITE_CONSTRAINT)
		return fail(ss, step, "cannot consume a nonce", why, cap);
	s = stmt(ss, ST_NONCE_TAG, why, cap);
	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_blob(ss, s, 1, nonce, NONCE_LEN, why, cap)) != 0)
		return rc;
	step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		*duplicate = sqlite3_column_bytes(s, 0) == 16 &&
			     memcmp(sqlite3_column_blob(s, 0), tag, 16) == 0;
	} else if (step != SQLITE_DONE) { /* DONE: swept meanwhile; still used */
		rc = fail(ss, step, "cannot read a used nonce", why, cap);
	}
	sqlite3_reset(s);
	return rc != 0 ? rc : STORE_USED;
}

static int sqlite_nonce_sweep(struct store *st, int64_t before_ms, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_NONCE_SWEEP, why, cap);
	int rc;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_int(ss, s, 1, before_ms, why, cap)) != 0)
		return rc;
	rc = run(ss, s, "cannot forget old nonces", why, cap);
	return rc != 0 ? rc : sqlite3_changes(ss->db);
}

/* ---- reference measurements ------------------------------------------------------------- */

static int sqlite_reference_put(struct store *st, const char *label, const char *json, char *why,
				size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s;
	int rc = tx_begin(ss, why, cap);

	if (rc != 0)
		return rc;
	s = stmt(ss, ST_REF_PUT, why, cap);
	if (s == NULL)
		rc = GD_EIO;
	if (rc == 0 && (rc = bind_text(ss, s, 1, label, why, cap)) == 0 &&
	    (rc = bind_text(ss, s, 2, json, why, cap)) == 0)
		rc = run(ss, s, "cannot record a reference", why, cap);
	if (rc == 0)
		rc = run_id(ss, ST_GEN_BUMP, "cannot count a reference change", why, cap);
	return tx_end(ss, rc, why, cap);
}

static int sqlite_reference_remove(struct store *st, const char *label, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s;
	int rc = tx_begin(ss, why, cap);
	bool gone = false;

	if (rc != 0)
		return rc;
	s = stmt(ss, ST_REF_REMOVE, why, cap);
	if (s == NULL)
		rc = GD_EIO;
	if (rc == 0 && (rc = bind_text(ss, s, 1, label, why, cap)) == 0)
		rc = run(ss, s, "cannot remove a reference", why, cap);
	if (rc == 0) {
		gone = sqlite3_changes(ss->db) > 0;
		if (gone)
			rc = run_id(ss, ST_GEN_BUMP, "cannot count a reference change", why, cap);
	}
	rc = tx_end(ss, rc, why, cap);
	return rc == 0 && !gone ? STORE_NOTFOUND : rc;
}

static int sqlite_reference_all(struct store *st, char ***labels, char ***jsons, size_t *n,
				char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_REF_ALL, why, cap);
	char **l = NULL, **j = NULL;
	size_t len = 0, room = 0;
	int rc = 0, step;

	*labels = *jsons = NULL;
	*n = 0;
	if (s == NULL)
		return GD_EIO;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == room) {
			size_t more = room ? room * 2 : 16;
			char **bl = realloc(l, more * sizeof(*l)), **bj;

			if (bl != NULL)
				l = bl;
			bj = bl != NULL ? realloc(j, more * sizeof(*j)) : NULL;
			if (bj == NULL) {
				gd_whyf(why, cap, "out of memory");
				rc = GD_ENOMEM;
				break;
			}
			j = bj;
			room = more;
		}
		l[len] = j[len] = NULL;
		len++;
		if ((rc = column_dup(s, 0, &l[len - 1], why, cap)) != 0 ||
		    (rc = column_dup(s, 1, &j[len - 1], why, cap)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = fail(ss, step, "cannot read the references", why, cap);
	sqlite3_reset(s);
	if (rc != 0) {
		store_strings_free(l, len);
		store_strings_free(j, len);
		return rc;
	}
	*labels = l;
	*jsons = j;
	*n = len;
	return 0;
}

static int sqlite_reference_generation(struct store *st, uint64_t *gen, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_GEN_GET, why, cap);
	int step;

	*gen = 0;
	if (s == NULL)
		return GD_EIO;
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		*gen = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (step != SQLITE_ROW)
		return fail(ss, step, "cannot read the reference generation", why, cap);
	return 0;
}

/* ---- issued certificates ---------------------------------------------------------------- */

/* Revokes the unexpired, unrevoked certificates of 'dev' at 'now_s'. How many, or a gd_err. */
static int certs_revoke(struct sqlite_store *ss, const char *dev, enum store_revoke_reason reason,
			int64_t now_s, char *why, size_t cap)
{
	sqlite3_stmt *s = stmt(ss, ST_CERT_REVOKE, why, cap);
	int rc;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, dev, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 2, now_s - SKEW_S, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 3, now_s, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 4, reason, why, cap)) != 0)
		return rc;
	rc = run(ss, s, "cannot revoke certificates", why, cap);
	return rc != 0 ? rc : sqlite3_changes(ss->db);
}

/* Inside a write transaction: records 'serial', revokes the device's others as superseded and
 * forgets its expired ones. How many were revoked, or a gd_err. */
static int certs_issue(struct sqlite_store *ss, const char *dev, const uint8_t serial[16],
		       int64_t not_after_s, int64_t now_s, char *why, size_t cap)
{
	sqlite3_stmt *s;
	int rc, revoked;

	revoked = certs_revoke(ss, dev, STORE_REVOKE_SUPERSEDED, now_s, why, cap);
	rc = revoked < 0 ? revoked : 0;
	if (rc == 0) {
		s = stmt(ss, ST_CERT_FORGET_DEV, why, cap);
		if (s == NULL)
			rc = GD_EIO;
		else if ((rc = bind_text(ss, s, 1, dev, why, cap)) == 0 &&
			 (rc = bind_int(ss, s, 2, now_s - SKEW_S, why, cap)) == 0)
			rc = run(ss, s, "cannot forget expired certificates", why, cap);
	}
	if (rc == 0) {
		s = stmt(ss, ST_CERT_INSERT, why, cap);
		if (s == NULL)
			rc = GD_EIO;
		else if ((rc = bind_blob(ss, s, 1, serial, 16, why, cap)) == 0 &&
			 (rc = bind_text(ss, s, 2, dev, why, cap)) == 0 &&
			 (rc = bind_int(ss, s, 3, not_after_s, why, cap)) == 0)
			rc = run(ss, s, "cannot record an issued certificate", why, cap);
	}
	return rc != 0 ? rc : revoked;
}

static int sqlite_cert_issued(struct store *st, const char *dev, const uint8_t serial[16],
			      int64_t not_after_s, int64_t now_s, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	int rc = tx_begin(ss, why, cap), revoked;

	if (rc != 0)
		return rc;
	revoked = certs_issue(ss, dev, serial, not_after_s, now_s, why, cap);
	rc = tx_end(ss, revoked < 0 ? revoked : 0, why, cap);
	return rc != 0 ? rc : revoked;
}

static int sqlite_cert_revoke_device(struct store *st, const char *dev,
				     enum store_revoke_reason reason, int64_t now_s, char *why,
				     size_t cap)
{
	struct sqlite_store *ss = impl(st);
	int rc = tx_begin(ss, why, cap), revoked;

	if (rc != 0)
		return rc;
	revoked = certs_revoke(ss, dev, reason, now_s, why, cap);
	rc = tx_end(ss, revoked < 0 ? revoked : 0, why, cap);
	return rc != 0 ? rc : revoked;
}

/* A certificate row's columns (serial, not_after, revoked, reason) into the fields given; a
 * serial that is not 16 bytes reads as zeros, a NULL revoked as 0 (in force). */
static void cert_columns(sqlite3_stmt *s, uint8_t serial[16], int64_t *not_after_s,
			 int64_t *revoked_s, enum store_revoke_reason *reason)
{
	if (sqlite3_column_bytes(s, 0) == 16)
		memcpy(serial, sqlite3_column_blob(s, 0), 16);
	*not_after_s = sqlite3_column_int64(s, 1);
	*revoked_s = sqlite3_column_int64(s, 2);
	*reason = (enum store_revoke_reason)sqlite3_column_int(s, 3);
}

static int sqlite_cert_revoked(struct store *st, int64_t now_s, struct store_revoked **out,
			       size_t *n, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	struct store_revoked *v = NULL;
	size_t len = 0, room = 0;
	sqlite3_stmt *s;
	int rc = tx_begin(ss, why, cap), step = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if (rc != 0)
		return rc;
	s = stmt(ss, ST_CERT_FORGET_ALL, why, cap);
	if (s == NULL)
		rc = GD_EIO;
	else if ((rc = bind_int(ss, s, 1, now_s - SKEW_S, why, cap)) == 0)
		rc = run(ss, s, "cannot forget expired certificates", why, cap);
	s = rc == 0 ? stmt(ss, ST_CERT_REVOKED, why, cap) : NULL;
	if (rc == 0 && s == NULL)
		rc = GD_EIO;
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_revoked *e, *bigger = store_grow(v, len, &room, 64, sizeof(*v));

		if (bigger == NULL) {
			gd_whyf(why, cap, "out of memory");
			rc = GD_ENOMEM;
			break;
		}
		v = bigger;
		e = &v[len++];
		memset(e, 0, sizeof(*e));
		cert_columns(s, e->serial, &e->not_after_s, &e->revoked_s, &e->reason);
		snprintf(e->dev, sizeof(e->dev), "%s", (const char *)sqlite3_column_text(s, 4));
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = fail(ss, step, "cannot read the revoked certificates", why, cap);
	if (s != NULL)
		sqlite3_reset(s);
	rc = tx_end(ss, rc, why, cap);
	if (rc != 0) {
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

static int sqlite_cert_list(struct store *st, const char *dev, int64_t now_s,
			    struct store_cert **out, size_t *n, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_CERT_LIST, why, cap);
	struct store_cert *v = NULL;
	size_t len = 0, room = 0;
	int rc = 0, step = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, dev, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 2, now_s - SKEW_S, why, cap)) != 0)
		return rc;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_cert *c, *bigger = store_grow(v, len, &room, 16, sizeof(*v));

		if (bigger == NULL) {
			gd_whyf(why, cap, "out of memory");
			rc = GD_ENOMEM;
			break;
		}
		v = bigger;
		c = &v[len++];
		memset(c, 0, sizeof(*c));
		cert_columns(s, c->serial, &c->not_after_s, &c->revoked_s, &c->reason);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = fail(ss, step, "cannot read a device's certificates", why, cap);
	sqlite3_reset(s);
	if (rc != 0) {
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

static int sqlite_cert_import(struct store *st, const char *dev, const struct store_cert *c,
			      char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_CERT_IMPORT, why, cap);
	int rc;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_blob(ss, s, 1, c->serial, sizeof(c->serial), why, cap)) != 0 ||
	    (rc = bind_text(ss, s, 2, dev, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 3, c->not_after_s, why, cap)) != 0)
		return rc;
	if (c->revoked_s != 0 && ((rc = bind_int(ss, s, 4, c->revoked_s, why, cap)) != 0 ||
				  (rc = bind_int(ss, s, 5, c->reason, why, cap)) != 0))
		return rc;
	rc = run(ss, s, "cannot import a certificate", why, cap);
	return rc != 0 ? rc : sqlite3_changes(ss->db) > 0;
}

/* ---- one attestation decision ---------------------------------------------------------- */

/* The nonce, the certificates and what the device runs, in one BEGIN IMMEDIATE transaction: one
 * commit (one WAL sync with synchronous FULL) where the separate calls make three. */
static int sqlite_attest_record(struct store *st, const struct store_attest *a, bool *duplicate,
				int *revoked, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s;
	int rc = tx_begin(ss, why, cap), n = 0, r;

	*duplicate = false;
	*revoked = 0;
	if (rc != 0)
		return rc;
	/* The write lock is held from BEGIN IMMEDIATE: of concurrent calls on one nonce, the first
	 * to commit inserts it and every later one sees it used. */
	rc = sqlite_nonce_consume(st, a->nonce, a->nonce_ts_ms, a->tag, duplicate, why, cap);
	if (rc == 0 && a->issued) {
		r = certs_issue(ss, a->dev, a->serial, a->not_after_s, a->now_s, why, cap);
		rc = r < 0 ? r : 0;
		n += r > 0 ? r : 0;
	}
	if (rc == 0 && a->revoke_refused) {
		r = certs_revoke(ss, a->dev, STORE_REVOKE_REFUSED, a->now_s, why, cap);
		rc = r < 0 ? r : 0;
		n += r > 0 ? r : 0;
	}
	if (rc == 0 && a->installed_json != NULL) {
		/* No row changed: the device was removed meanwhile; nothing to record for it. */
		s = stmt(ss, ST_INSTALLED_PUT, why, cap);
		if (s == NULL)
			rc = GD_EIO;
		else if ((rc = bind_text(ss, s, 1, a->dev, why, cap)) == 0 &&
			 (rc = bind_text(ss, s, 2, a->installed_json, why, cap)) == 0)
			rc = run(ss, s, "cannot record what a device runs", why, cap);
	}
	/* STORE_USED (1) rolls back too: nothing was written after the nonce's refusal. */
	rc = tx_end(ss, rc, why, cap);
	if (rc == 0)
		*revoked = n;
	return rc;
}

/* ---- releases --------------------------------------------------------------------------- */

static int sqlite_release_put(struct store *st, const char *dev, const struct store_release *r,
			      char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_RELEASE_PUT, why, cap);
	int rc;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, dev, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 2, (int64_t)r->version, why, cap)) != 0 ||
	    (rc = bind_text(ss, s, 3, r->sha256, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 4, r->ts_ms, why, cap)) != 0 ||
	    (rc = bind_int(ss, s, 5, r->withdrawn ? 1 : 0, why, cap)) != 0)
		return rc;
	return run(ss, s, "cannot record a release", why, cap);
}

static int sqlite_release_get(struct store *st, const char *dev, struct store_release *out,
			      char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_RELEASE_GET, why, cap);
	int rc, step;

	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, dev, why, cap)) != 0)
		return rc;
	step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		const unsigned char *hex = sqlite3_column_text(s, 1);

		out->version = (uint64_t)sqlite3_column_int64(s, 0);
		snprintf(out->sha256, sizeof(out->sha256), "%s", hex ? (const char *)hex : "");
		out->ts_ms = sqlite3_column_int64(s, 2);
		out->withdrawn = sqlite3_column_int(s, 3) != 0;
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = STORE_NOTFOUND;
	} else {
		rc = fail(ss, step, "cannot read a release", why, cap);
	}
	sqlite3_reset(s);
	return rc;
}

/* ---- failure reports -------------------------------------------------------------------- */

static int sqlite_report_update(struct store *st, const char *dev, store_merge_fn *merge, void *ctx,
				char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	char *old = NULL, *next = NULL;
	sqlite3_stmt *s;
	int rc = tx_begin(ss, why, cap), step;

	if (rc != 0)
		return rc;
	s = stmt(ss, ST_REPORT_GET, why, cap);
	if (s == NULL)
		rc = GD_EIO;
	if (rc == 0 && (rc = bind_text(ss, s, 1, dev, why, cap)) == 0) {
		step = sqlite3_step(s);
		if (step == SQLITE_ROW)
			rc = column_dup(s, 0, &old, why, cap);
		else if (step != SQLITE_DONE)
			rc = fail(ss, step, "cannot read a report", why, cap);
		sqlite3_reset(s);
	}
	if (rc == 0) {
		/* Inside the write transaction: no other instance changes the document meanwhile.
		 */
		rc = merge(old, &next, ctx, why, cap);
		if (rc == 0 && next == NULL) {
			gd_whyf(why, cap, "%s: the report of \"%s\": the merge gave no document",
				ss->path, dev);
			rc = GD_EINVAL;
		}
	}
	if (rc == 0) {
		s = stmt(ss, ST_REPORT_PUT, why, cap);
		if (s == NULL)
			rc = GD_EIO;
		else if ((rc = bind_text(ss, s, 1, dev, why, cap)) == 0 &&
			 (rc = bind_text(ss, s, 2, next, why, cap)) == 0)
			rc = run(ss, s, "cannot record a report", why, cap);
	}
	rc = tx_end(ss, rc, why, cap);
	free(old);
	free(next);
	return rc;
}

static int sqlite_report_get(struct store *st, const char *dev, char **json, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_REPORT_GET, why, cap);
	int rc = 0, step;

	*json = NULL;
	if (s == NULL)
		return GD_EIO;
	if ((rc = bind_text(ss, s, 1, dev, why, cap)) != 0)
		return rc;
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		rc = column_dup(s, 0, json, why, cap);
	else if (step == SQLITE_DONE)
		rc = STORE_NOTFOUND;
	else
		rc = fail(ss, step, "cannot read a report", why, cap);
	sqlite3_reset(s);
	return rc;
}

static int sqlite_report_list(struct store *st, char ***devs, size_t *n, char *why, size_t cap)
{
	struct sqlite_store *ss = impl(st);
	sqlite3_stmt *s = stmt(ss, ST_REPORT_LIST, why, cap);

	*devs = NULL;
	*n = 0;
	return s == NULL ? GD_EIO : collect_strings(ss, s, devs, n, why, cap);
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.open = sqlite_open,
	.close = sqlite_close,
	.schema_version = sqlite_schema_version,
	.device_get = sqlite_device_get,
	.device_put = sqlite_device_put,
	.device_list = sqlite_device_list,
	.installed_put = sqlite_installed_put,
	.installed_get = sqlite_installed_get,
	.nonce_consume = sqlite_nonce_consume,
	.nonce_sweep = sqlite_nonce_sweep,
	.reference_put = sqlite_reference_put,
	.reference_remove = sqlite_reference_remove,
	.reference_all = sqlite_reference_all,
	.reference_generation = sqlite_reference_generation,
	.cert_issued = sqlite_cert_issued,
	.cert_revoke_device = sqlite_cert_revoke_device,
	.cert_revoked = sqlite_cert_revoked,
	.cert_list = sqlite_cert_list,
	.cert_import = sqlite_cert_import,
	.attest_record = sqlite_attest_record,
	.release_put = sqlite_release_put,
	.release_get = sqlite_release_get,
	.sqlite_synchronous = sqlite_synchronous,
	.report_update = sqlite_report_update,
	.report_get = sqlite_report_get,
	.report_list = sqlite_report_list,
};
