/* store_pg.c: the PostgreSQL backend of the store (store.h): one libpq connection per store. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "../base/base.h"
#include "store_impl.h"

/*
 * The schema, version 1 (what `migrate` makes, in one transaction):
 *
 *   schema_version  one row: the version the tables are at
 *   devices         name, identity certificate, attestation key, installed document
 *   nonces          each consumed nonce, its time (for the sweep) and its delivery's tag
 *   refs            reference measurements by label; refs_generation counts their changes
 *   certs           operational certificates issued: serial, device, expiry, revocation;
 *                   seq orders a device's certificates by issue. Each is kept until it
 *                   expires (a revoked one is on the CRL until then), so no cap per device:
 *                   a device has one in force, and its superseded ones expire in turn.
 *   reports         the failure report document of each device
 *   releases        what `release publish` last delivered to each device: version, SHA-256,
 *                   time, withdrawn. Part of version 1 (added before any release of it), made
 *                   by every `migrate` (IF NOT EXISTS, releases_sql) so that a version 1
 *                   database made before it gets it; an open without migrate refuses one
 *                   without it.
 *
 * Names sort as bytes (COLLATE "C"), as the other backends sort them, whatever the database's
 * locale. Documents are text, kept byte for byte.
 *
 * Concurrency: a nonce is consumed by INSERT ... ON CONFLICT DO NOTHING, so of concurrent
 * consumers exactly one inserts. Certificates and reports of one device are changed in a
 * transaction that first takes a transaction-scoped advisory lock on the device's name, so
 * two instances serving one device take turns. A serialization failure or deadlock is retried.
 */

#define PG_SUBSYS  "store"
#define PG_RETRIES 5 /* runs of a statement or transaction that conflicted with another */
/* A certificate counts as expired SKEW_S after its notAfter, for a broker whose clock is behind:
 * the service's SERVICE_SKEW_S, as the files and SQLite backends count. */
#define SKEW_S 60

/* Advisory lock classes (the first key of pg_advisory_xact_lock(int, int)): "gd" and a number. */
#define LOCK_SCHEMA 0x67640001 /* migrate; the second key is 0 */
#define LOCK_CERTS  0x67640002 /* a device's certificates; the second key is hashtext(dev) */
#define LOCK_REPORT 0x67640003 /* a device's report document; the same */

/* Each step brings the schema from version i to i + 1; migrate() then records the version. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
	"CREATE TABLE devices (name text COLLATE \"C\" PRIMARY KEY, cert text NOT NULL,"
	" ak text, installed text);"
	"CREATE TABLE nonces (nonce bytea PRIMARY KEY, ts_ms bigint NOT NULL, tag bytea NOT NULL);"
	"CREATE INDEX nonces_ts ON nonces (ts_ms);"
	"CREATE TABLE refs (label text COLLATE \"C\" PRIMARY KEY, json text NOT NULL);"
	"CREATE TABLE refs_generation (gen bigint NOT NULL);"
	"INSERT INTO refs_generation VALUES (1);"
	"CREATE TABLE certs (serial bytea PRIMARY KEY, dev text COLLATE \"C\" NOT NULL,"
	" not_after_s bigint NOT NULL, revoked_s bigint, reason integer,"
	" seq bigint GENERATED ALWAYS AS IDENTITY);"
	"CREATE INDEX certs_dev ON certs (dev, seq);"
	"CREATE INDEX certs_not_after ON certs (not_after_s);"
	"CREATE TABLE reports (dev text COLLATE \"C\" PRIMARY KEY, json text NOT NULL);",
};

/* Version 1's releases table, run by every migrate (see above). */
static const char releases_sql[] =
	"CREATE TABLE IF NOT EXISTS releases (dev text COLLATE \"C\" PRIMARY KEY,"
	" version bigint NOT NULL, sha256 text NOT NULL, ts_ms bigint NOT NULL,"
	" withdrawn boolean NOT NULL)";

/* The statements, prepared on a connection when first used (again after a reconnection). */
enum stmt {
	S_BEGIN,
	S_COMMIT,
	S_LOCK,
	S_DEVICE_GET,
	S_DEVICE_PUT,
	S_DEVICE_LIST,
	S_INSTALLED_PUT,
	S_INSTALLED_GET,
	S_NONCE_INSERT,
	S_NONCE_TAG,
	S_NONCE_SWEEP,
	S_REF_PUT,
	S_REF_REMOVE,
	S_REF_ALL,
	S_REF_GEN,
	S_CERT_ISSUE,
	S_CERT_REVOKE,
	S_CERT_REVOKED,
	S_CERT_LIST,
	S_CERT_IMPORT,
	S_REPORT_GET,
	S_REPORT_PUT,
	S_REPORT_DELETE,
	S_REPORT_LIST,
	S_RELEASE_PUT,
	S_RELEASE_GET,
	S_COUNT
};

static const struct {
	const char *name; /* the prepared statement's, and what an error says failed */
	const char *sql;
} stmts[S_COUNT] = {
	[S_BEGIN] = { "begin", "BEGIN" },
	[S_COMMIT] = { "commit", "COMMIT" },
	[S_LOCK] = { "lock", "SELECT pg_advisory_xact_lock($1::integer, hashtext($2))" },
	[S_DEVICE_GET] = { "device_get", "SELECT cert, ak FROM devices WHERE name = $1" },
	[S_DEVICE_PUT] = { "device_put",
			   "INSERT INTO devices (name, cert, ak) VALUES ($1, $2, $3)"
			   " ON CONFLICT (name) DO UPDATE"
			   " SET cert = EXCLUDED.cert, ak = coalesce(EXCLUDED.ak, devices.ak)" },
	[S_DEVICE_LIST] = { "device_list", "SELECT name FROM devices ORDER BY name" },
	[S_INSTALLED_PUT] = { "installed_put",
			      "UPDATE devices SET installed = $2 WHERE name = $1" },
	[S_INSTALLED_GET] = { "installed_get", "SELECT installed FROM devices WHERE name = $1 AND "
					       "installed IS NOT NULL" },
	[S_NONCE_INSERT] = { "nonce_consume",
			     "INSERT INTO nonces (nonce, ts_ms, tag) VALUES ($1, $2, $3)"
			     " ON CONFLICT (nonce) DO NOTHING RETURNING 1" },
	[S_NONCE_TAG] = { "nonce_tag", "SELECT tag FROM nonces WHERE nonce = $1" },
	[S_NONCE_SWEEP] = { "nonce_sweep", "DELETE FROM nonces WHERE ts_ms < $1" },
	/* A data-modifying WITH runs whether or not the statement reads it: one statement, one
	 * transaction, for the change and the generation. */
	[S_REF_PUT] = { "reference_put",
			"WITH put AS (INSERT INTO refs (label, json) VALUES ($1, $2)"
			" ON CONFLICT (label) DO UPDATE SET json = EXCLUDED.json)"
			" UPDATE refs_generation SET gen = gen + 1" },
	[S_REF_REMOVE] = { "reference_remove",
			   "WITH gone AS (DELETE FROM refs WHERE label = $1 RETURNING 1)"
			   " UPDATE refs_generation SET gen = gen + 1"
			   " WHERE EXISTS (SELECT 1 FROM gone) RETURNING gen" },
	[S_REF_ALL] = { "reference_all", "SELECT label, json FROM refs ORDER BY label" },
	[S_REF_GEN] = { "reference_generation", "SELECT gen FROM refs_generation" },
	/* The new certificate and the revocation of the device's others: both see the snapshot
	 * of before the insertion, so the new one is not revoked. */
	/* $6, like every bound below, is the time before which a certificate has expired (now
	 * less SKEW_S). The three parts see the snapshot of before the statement, so the new
	 * certificate is not revoked; they touch disjoint rows. */
	[S_CERT_ISSUE] = { "cert_issued",
			   "WITH fresh AS (INSERT INTO certs (serial, dev, not_after_s)"
			   " VALUES ($1, $2, $3)),"
			   " gone AS (DELETE FROM certs WHERE dev = $2 AND not_after_s < $6)"
			   " UPDATE certs SET revoked_s = $4, reason = $5 WHERE dev = $2"
			   " AND revoked_s IS NULL AND not_after_s >= $6" },
	[S_CERT_REVOKE] = { "cert_revoke_device",
			    "UPDATE certs SET revoked_s = $3, reason = $2 WHERE dev = $1"
			    " AND revoked_s IS NULL AND not_after_s >= $4" },
	[S_CERT_REVOKED] = { "cert_revoked",
			     "WITH gone AS (DELETE FROM certs WHERE not_after_s < $1)"
			     " SELECT encode(serial, 'hex'), not_after_s, revoked_s, reason, dev"
			     " FROM certs WHERE revoked_s IS NOT NULL AND not_after_s >= $1"
			     " ORDER BY revoked_s, serial" },
	[S_CERT_LIST] = { "cert_list",
			  "SELECT encode(serial, 'hex'), not_after_s, coalesce(revoked_s, 0),"
			  " coalesce(reason, 0) FROM certs WHERE dev = $1 AND not_after_s >= $2"
			  " ORDER BY seq" },
	[S_CERT_IMPORT] = { "cert_import",
			    "INSERT INTO certs (serial, dev, not_after_s, revoked_s, reason)"
			    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING" },
	[S_REPORT_GET] = { "report_get", "SELECT json FROM reports WHERE dev = $1" },
	[S_REPORT_PUT] = { "report_put", "INSERT INTO reports (dev, json) VALUES ($1, $2)"
					 " ON CONFLICT (dev) DO UPDATE SET json = EXCLUDED.json" },
	[S_REPORT_DELETE] = { "report_delete", "DELETE FROM reports WHERE dev = $1" },
	[S_REPORT_LIST] = { "report_list", "SELECT dev FROM reports ORDER BY dev" },
	[S_RELEASE_PUT] = { "release_put",
			    "INSERT INTO releases (dev, version, sha256, ts_ms, withdrawn)"
			    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dev) DO UPDATE"
			    " SET version = EXCLUDED.version, sha256 = EXCLUDED.sha256,"
			    " ts_ms = EXCLUDED.ts_ms, withdrawn = EXCLUDED.withdrawn" },
	[S_RELEASE_GET] = { "release_get", "SELECT version, sha256, ts_ms, withdrawn FROM releases"
					   " WHERE dev = $1" },
};

struct pg {
	PGconn *conn;
	char where[192];   /* "postgresql database "gd" on /run/postgresql:5432", for errors */
	uint64_t prepared; /* bit i: statement i is prepared on this connection */
	bool in_tx;	   /* between BEGIN and COMMIT or ROLLBACK */
	char sqlstate[6];  /* of the last statement that failed ("" if none) */
};

/* The parameters of one statement: text, or binary for bytea. */
#define MAX_PARAMS 6
struct params {
	int n;
	const char *value[MAX_PARAMS];
	int length[MAX_PARAMS];
	int format[MAX_PARAMS]; /* 0: text, 1: binary */
	char number[MAX_PARAMS][24];
};

static void param_text(struct params *p, const char *s)
{
	p->value[p->n] = s;
	p->length[p->n] = 0;
	p->format[p->n] = 0;
	p->n++;
}

static void param_int(struct params *p, int64_t v)
{
	snprintf(p->number[p->n], sizeof(p->number[0]), "%" PRId64, v);
	param_text(p, p->number[p->n]);
}

static void param_bytes(struct params *p, const uint8_t *b, size_t n)
{
	p->value[p->n] = (const char *)b;
	p->length[p->n] = (int)n;
	p->format[p->n] = 1;
	p->n++;
}

/* libpq's message on one line: each run of white space (its newlines too) one space, none at
 * the ends. */
static void one_line(const char *msg, char *out, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return;
	for (; msg != NULL && *msg != '\0' && n + 1 < cap; msg++) {
		bool space = *msg == ' ' || *msg == '\n' || *msg == '\r' || *msg == '\t';

		if (!space)
			out[n++] = *msg;
		else if (n > 0 && out[n - 1] != ' ')
			out[n++] = ' ';
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/* What a failed result says: its primary message (and detail), else the connection's. */
static void result_message(const struct pg *pg, const PGresult *res, char *out, size_t cap)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	char text[512];

	if (primary == NULL) {
		one_line(PQerrorMessage(pg->conn), out, cap);
		return;
	}
	if (detail != NULL)
		snprintf(text, sizeof(text), "%s (%s)", primary, detail);
	else
		snprintf(text, sizeof(text), "%s", primary);
	one_line(text, out, cap);
}

/* 40001 serialization_failure, 40P01 deadlock_detected: running it again may succeed. */
static bool conflicted(const char *sqlstate)
{
	return strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0;
}

/* "postgresql database "gd" on /run/postgresql:5432" (never the password). */
static void describe(struct pg *pg)
{
	const char *db = PQdb(pg->conn), *host = PQhost(pg->conn), *port = PQport(pg->conn);

	snprintf(pg->where, sizeof(pg->where), "postgresql database \"%s\" on %s%s%s",
		 db ? db : "?", host && *host ? host : "the default host", port && *port ? ":" : "",
		 port ? port : "");
}

/* Why a call failed when the connection was lost and is back: 'in_tx', in a transaction. */
static void lost_why(const struct pg *pg, const char *what, const char *msg, bool in_tx, char *why,
		     size_t cap)
{
	if (!in_tx)
		gd_whyf(why, cap, "%s: %s: connection lost (%s) again after reconnecting",
			pg->where, what, msg);
	else if (strcmp(what, stmts[S_COMMIT].name) == 0)
		gd_whyf(why, cap,
			"%s: connection lost (%s) waiting for COMMIT: whether the transaction was "
			"committed is unknown; reconnected",
			pg->where, msg);
	else
		gd_whyf(why, cap,
			"%s: %s: connection lost (%s) in a transaction, so nothing of it was "
			"committed; reconnected",
			pg->where, what, msg);
}

/*
 * After statement 'id' failed with 'res': 1 to run it again (the connection was lost outside a
 * transaction and is back, or it conflicted with another transaction outside one), else a
 * negative gd_err with 'why' naming the database and what failed.
 */
static int failure(struct pg *pg, const char *what, const PGresult *res, int attempt, char *why,
		   size_t cap)
{
	char msg[512];
	const char *state;

	result_message(pg, res, msg, sizeof(msg));
	if (PQstatus(pg->conn) == CONNECTION_BAD) {
		bool in_tx = pg->in_tx;

		/* The server's side of a transaction died with the connection. */
		pg->in_tx = false;
		pg->prepared = 0;
		pg->sqlstate[0] = '\0';
		PQreset(pg->conn);
		if (PQstatus(pg->conn) != CONNECTION_OK) {
			char again[256];

			one_line(PQerrorMessage(pg->conn), again, sizeof(again));
			gd_whyf(why, cap, "%s: %s: connection lost (%s); reconnecting failed: %s",
				pg->where, what, msg, again);
			return GD_ENOTCONN;
		}
		if (!in_tx && attempt == 0) {
			log_warnx(PG_SUBSYS, "%s: connection lost (%s); reconnected", pg->where,
				  msg);
			return 1;
		}
		lost_why(pg, what, msg, in_tx, why, cap);
		return GD_ENOTCONN;
	}
	state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	snprintf(pg->sqlstate, sizeof(pg->sqlstate), "%s", state ? state : "");
	if (!pg->in_tx && conflicted(pg->sqlstate) && attempt + 1 < PG_RETRIES) {
		log_debug(PG_SUBSYS, "%s: %s: %s; again", pg->where, what, msg);
		return 1;
	}
	gd_whyf(why, cap, "%s: %s: %s", pg->where, what, msg);
	return GD_EIO;
}

/*
 * Runs statement 'id' with 'p' (NULL: none), preparing it first if this connection has not.
 * 'binary': the result's columns in binary (bytea as its bytes). *out (if not NULL) gets the
 * result to PQclear. 0 or a negative gd_err.
 */
static int run(struct pg *pg, enum stmt id, const struct params *p, bool binary, PGresult **out,
	       char *why, size_t cap)
{
	static const struct params none = { .n = 0 };

	if (p == NULL)
		p = &none;
	for (int attempt = 0;; attempt++) {
		PGresult *res = NULL;
		ExecStatusType status;
		int rc;

		if (!(pg->prepared & (UINT64_C(1) << id))) {
			res = PQprepare(pg->conn, stmts[id].name, stmts[id].sql, 0, NULL);
			if (PQresultStatus(res) == PGRES_COMMAND_OK) {
				pg->prepared |= UINT64_C(1) << id;
				PQclear(res);
				res = NULL;
			}
		}
		if (res == NULL)
			res = PQexecPrepared(pg->conn, stmts[id].name, p->n, p->value, p->length,
					     p->format, binary ? 1 : 0);
		status = PQresultStatus(res);
		if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
			if (out != NULL)
				*out = res;
			else
				PQclear(res);
			return 0;
		}
		rc = failure(pg, stmts[id].name, res, attempt, why, cap);
		PQclear(res);
		if (rc != 1)
			return rc;
	}
}

/* Runs 'sql' (no parameters, maybe several statements) as it is: the schema's. */
static int exec_plain(struct pg *pg, const char *what, const char *sql, PGresult **out, char *why,
		      size_t cap)
{
	PGresult *res = PQexec(pg->conn, sql);
	ExecStatusType status = PQresultStatus(res);
	char msg[512];

	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
		if (out != NULL)
			*out = res;
		else
			PQclear(res);
		return 0;
	}
	result_message(pg, res, msg, sizeof(msg));
	gd_whyf(why, cap, "%s: %s: %s", pg->where, what, msg);
	PQclear(res);
	return PQstatus(pg->conn) == CONNECTION_BAD ? GD_ENOTCONN : GD_EIO;
}

/* A transaction's body: 0, or non-zero to roll back and return that. */
typedef int tx_body_fn(struct pg *pg, void *ctx, char *why, size_t cap);

/*
 * Runs 'body' in a transaction, again (up to PG_RETRIES times) if it conflicted with another.
 * The connection lost in it is an error (nothing committed, or unknown at COMMIT).
 */
static int tx_run(struct pg *pg, tx_body_fn *body, void *ctx, char *why, size_t cap)
{
	for (int attempt = 0;; attempt++) {
		int rc;

		pg->sqlstate[0] = '\0';
		rc = run(pg, S_BEGIN, NULL, false, NULL, why, cap);
		if (rc != 0)
			return rc;
		pg->in_tx = true;
		rc = body(pg, ctx, why, cap);
		if (rc == 0)
			rc = run(pg, S_COMMIT, NULL, false, NULL, why, cap);
		if (pg->in_tx) { /* still connected */
			pg->in_tx = false;
			if (rc != 0)
				PQclear(PQexec(pg->conn, "ROLLBACK"));
		}
		if (rc == 0 || rc == GD_ENOTCONN)
			return rc;
		if (rc == GD_EIO && conflicted(pg->sqlstate) && attempt + 1 < PG_RETRIES) {
			log_debug(PG_SUBSYS, "%s: transaction conflicted (%s); again", pg->where,
				  pg->sqlstate);
			continue;
		}
		return rc;
	}
}

/* Takes the transaction's advisory lock 'klass' on 'dev'. */
static int lock_device(struct pg *pg, int klass, const char *dev, char *why, size_t cap)
{
	struct params p = { .n = 0 };

	param_int(&p, klass);
	param_text(&p, dev);
	return run(pg, S_LOCK, &p, false, NULL, why, cap);
}

/* The number of rows a command changed. */
static int changed(PGresult *res)
{
	return atoi(PQcmdTuples(res));
}

/* A malloc'd copy of a text field into *out (NULL if the field is NULL). 0 or GD_ENOMEM. */
static int field_dup(const PGresult *res, int row, int col, char **out, char *why, size_t cap)
{
	*out = NULL;
	if (PQgetisnull(res, row, col))
		return 0;
	*out = strdup(PQgetvalue(res, row, col));
	if (*out == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	return 0;
}

/* Column 'col' of every row, as a malloc'd array of malloc'd strings. */
static int column_strings(const PGresult *res, int col, char ***out, size_t *n, char *why,
			  size_t cap)
{
	size_t rows = (size_t)PQntuples(res);
	char **v = calloc(rows + 1, sizeof(*v));

	*out = NULL;
	*n = 0;
	if (v == NULL)
		goto oom;
	for (size_t i = 0; i < rows; i++) {
		v[i] = strdup(PQgetvalue(res, (int)i, col));
		if (v[i] == NULL) {
			store_strings_free(v, i);
			goto oom;
		}
	}
	*out = v;
	*n = rows;
	return 0;
oom:
	gd_whyf(why, cap, "out of memory");
	return GD_ENOMEM;
}

/* The text field of the one row statement 'id' finds for 'key', malloc'd into *out.
 * 0, STORE_NOTFOUND or a gd_err with 'why'. */
static int text_get(struct pg *pg, enum stmt id, const char *key, char **out, char *why, size_t cap)
{
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	*out = NULL;
	param_text(&p, key);
	rc = run(pg, id, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rc = PQntuples(res) == 0 ? STORE_NOTFOUND : field_dup(res, 0, 0, out, why, cap);
	PQclear(res);
	return rc;
}

/* The first column of every row statement 'id' returns, as column_strings gives it. */
static int first_column(struct pg *pg, enum stmt id, char ***out, size_t *n, char *why, size_t cap)
{
	PGresult *res = NULL;
	int rc = run(pg, id, NULL, false, &res, why, cap);

	if (rc != 0)
		return rc;
	rc = column_strings(res, 0, out, n, why, cap);
	PQclear(res);
	return rc;
}

/* ---- schema ----------------------------------------------------------------------------- */

/* The version the database holds: 0 when it has no schema_version table. */
static int read_version(struct pg *pg, int *version, char *why, size_t cap)
{
	PGresult *res = NULL;
	int rc;

	*version = 0;
	rc = exec_plain(pg, "schema_version", "SELECT to_regclass('schema_version') IS NOT NULL",
			&res, why, cap);
	if (rc != 0)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	rc = exec_plain(pg, "schema_version", "SELECT max(version) FROM schema_version", &res, why,
			cap);
	if (rc != 0)
		return rc;
	*version = PQgetisnull(res, 0, 0) ? 0 : atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

static int refuse_newer(struct pg *pg, int version, char *why, size_t cap)
{
	gd_whyf(why, cap,
		"%s: schema version %d is newer than this build's %d: use the guardian-service "
		"that migrated it",
		pg->where, version, STORE_SCHEMA_VERSION);
	return GD_ECONFIG;
}

/* Makes or upgrades the schema, in one transaction, one migrate at a time. */
static int migrate(struct pg *pg, char *why, size_t cap)
{
	char lock[96];
	int version, rc;

	snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%d, 0)", LOCK_SCHEMA);
	rc = exec_plain(pg, "migrate", "BEGIN", NULL, why, cap);
	if (rc != 0)
		return rc;
	rc = exec_plain(pg, "migrate", lock, NULL, why, cap);
	if (rc == 0)
		rc = read_version(pg, &version, why, cap);
	if (rc == 0 && version > STORE_SCHEMA_VERSION)
		rc = refuse_newer(pg, version, why, cap);
	for (int v = version; rc == 0 && v < STORE_SCHEMA_VERSION; v++) {
		char what[64];

		snprintf(what, sizeof(what), "migrate from schema version %d", v);
		rc = exec_plain(pg, what, migrations[v], NULL, why, cap);
	}
	if (rc == 0 && version != STORE_SCHEMA_VERSION) {
		char record[160];

		snprintf(record, sizeof(record),
			 "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);"
			 "DELETE FROM schema_version;"
			 "INSERT INTO schema_version VALUES (%d)",
			 STORE_SCHEMA_VERSION);
		rc = exec_plain(pg, "migrate: schema_version", record, NULL, why, cap);
	}
	if (rc == 0)
		rc = exec_plain(pg, "migrate: releases", releases_sql, NULL, why, cap);
	if (rc == 0)
		rc = exec_plain(pg, "migrate: commit", "COMMIT", NULL, why, cap);
	if (rc != 0) {
		PQclear(PQexec(pg->conn, "ROLLBACK"));
		return rc;
	}
	if (version != STORE_SCHEMA_VERSION)
		log_info(PG_SUBSYS, "%s: schema version %d made (it was %d)", pg->where,
			 STORE_SCHEMA_VERSION, version);
	return 0;
}

/* A version 1 database made before the releases table was: refused until `migrate` adds it. */
static int releases_check(struct pg *pg, const char *dir, char *why, size_t cap)
{
	PGresult *res = NULL;
	bool there;
	int rc = exec_plain(pg, "schema_version", "SELECT to_regclass('releases') IS NOT NULL",
			    &res, why, cap);

	if (rc != 0)
		return rc;
	there = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!there) {
		gd_whyf(why, cap,
			"%s: schema version 1 without the releases table (made by an earlier "
			"build): run guardian-service migrate -d %s",
			pg->where, dir);
		return GD_ECONFIG;
	}
	return 0;
}

/* Refuses a schema other than this build's. */
static int check_version(struct pg *pg, const char *dir, char *why, size_t cap)
{
	int version, rc = read_version(pg, &version, why, cap);

	if (rc != 0)
		return rc;
	if (version > STORE_SCHEMA_VERSION)
		return refuse_newer(pg, version, why, cap);
	if (version < STORE_SCHEMA_VERSION) {
		gd_whyf(why, cap,
			"%s: schema version %d, this build needs %d: "
			"run guardian-service migrate -d %s",
			pg->where, version, STORE_SCHEMA_VERSION, dir);
		return GD_ECONFIG;
	}
	return releases_check(pg, dir, why, cap);
}

/* ---- the connection --------------------------------------------------------------------- */

/* Server notices (a NOTICE of DDL, a WARNING): debug lines, not the service's stderr. */
static void notice(void *arg, const char *message)
{
	const struct pg *pg = arg;
	char line[512];

	one_line(message, line, sizeof(line));
	log_debug(PG_SUBSYS, "%s: %s", pg->where, line);
}

/* Whether libpq's complaint about 'conninfo' may quote a password in it. */
static bool may_quote_password(const char *conninfo)
{
	bool uri = strncmp(conninfo, "postgresql://", 13) == 0 ||
		   strncmp(conninfo, "postgres://", 11) == 0;

	return strstr(conninfo, "password") != NULL || (uri && strchr(conninfo, '@') != NULL);
}

static int pg_open(struct store *st, const struct store_config *cfg, bool create, char *why,
		   size_t cap)
{
	/* Defaults first: the conninfo (expanded in place of dbname) overrides them. */
	const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", NULL };
	const char *values[] = { "10", "guardian-service", cfg->conninfo, NULL };
	struct pg *pg;
	int rc;

	if (cfg->conninfo == NULL || cfg->conninfo[0] == '\0') {
		gd_whyf(why, cap,
			"store \"postgresql\" needs \"conninfo\": libpq's \"host=... dbname=...\" "
			"or a postgresql:// URI");
		return GD_ECONFIG;
	}
	if (strchr(cfg->conninfo, '=') != NULL || strstr(cfg->conninfo, "://") != NULL) {
		char *err = NULL;
		PQconninfoOption *opts = PQconninfoParse(cfg->conninfo, &err);

		if (opts == NULL) {
			char msg[256];

			one_line(err ? err : "out of memory", msg, sizeof(msg));
			if (may_quote_password(cfg->conninfo))
				gd_whyf(why, cap,
					"store \"postgresql\": its conninfo cannot be parsed "
					"(libpq's reason not shown: it may quote the password)");
			else
				gd_whyf(why, cap, "store \"postgresql\": conninfo: %s", msg);
			PQfreemem(err);
			return GD_ECONFIG;
		}
		PQconninfoFree(opts);
	}
	pg = calloc(1, sizeof(*pg));
	if (pg == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	pg->conn = PQconnectdbParams(keys, values, 1);
	if (pg->conn == NULL) {
		free(pg);
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	describe(pg);
	if (PQstatus(pg->conn) != CONNECTION_OK) {
		char msg[512];

		one_line(PQerrorMessage(pg->conn), msg, sizeof(msg));
		gd_whyf(why, cap, "%s: cannot connect: %s", pg->where, msg);
		rc = GD_ENOTCONN;
		goto fail;
	}
	PQsetNoticeProcessor(pg->conn, notice, pg);
	rc = create ? migrate(pg, why, cap) : check_version(pg, st->dir, why, cap);
	if (rc != 0)
		goto fail;
	st->impl = pg;
	return 0;
fail:
	PQfinish(pg->conn);
	free(pg);
	return rc;
}

static void pg_close(struct store *st)
{
	struct pg *pg = st->impl;

	if (pg == NULL)
		return;
	PQfinish(pg->conn);
	free(pg);
	st->impl = NULL;
}

static int pg_schema_version(struct store *st, int *version, char *why, size_t cap)
{
	return read_version(st->impl, version, why, cap);
}

/* ---- devices ---------------------------------------------------------------------------- */

static int pg_device_get(struct store *st, const char *name, char **cert_pem, char **ak_pem,
			 char *why, size_t cap)
{
	struct pg *pg = st->impl;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	char *cert = NULL, *ak = NULL;
	int rc;

	param_text(&p, name);
	rc = run(pg, S_DEVICE_GET, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 0) {
		rc = STORE_NOTFOUND;
		goto out;
	}
	if (cert_pem != NULL && (rc = field_dup(res, 0, 0, &cert, why, cap)) != 0)
		goto out;
	if (ak_pem != NULL && (rc = field_dup(res, 0, 1, &ak, why, cap)) != 0)
		goto out;
	if (cert_pem != NULL)
		*cert_pem = cert;
	if (ak_pem != NULL)
		*ak_pem = ak;
	cert = ak = NULL;
out:
	free(cert);
	free(ak);
	PQclear(res);
	return rc;
}

static int pg_device_put(struct store *st, const char *name, const char *cert_pem,
			 const char *ak_pem, char *why, size_t cap)
{
	struct params p = { .n = 0 };

	param_text(&p, name);
	param_text(&p, cert_pem);
	param_text(&p, ak_pem); /* NULL: SQL NULL, and the one stored is kept */
	return run(st->impl, S_DEVICE_PUT, &p, false, NULL, why, cap);
}

static int pg_device_list(struct store *st, char ***names, size_t *n, char *why, size_t cap)
{
	return first_column(st->impl, S_DEVICE_LIST, names, n, why, cap);
}

static int pg_installed_put(struct store *st, const char *name, const char *json, char *why,
			    size_t cap)
{
	struct pg *pg = st->impl;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	param_text(&p, name);
	param_text(&p, json);
	rc = run(pg, S_INSTALLED_PUT, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	if (changed(res) == 0) {
		gd_whyf(why, cap, "%s: installed_put: no device \"%s\"", pg->where, name);
		rc = GD_EINVAL;
	}
	PQclear(res);
	return rc;
}

static int pg_installed_get(struct store *st, const char *name, char **json, char *why, size_t cap)
{
	return text_get(st->impl, S_INSTALLED_GET, name, json, why, cap);
}

/* ---- nonces ----------------------------------------------------------------------------- */

static int pg_nonce_consume(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
			    const uint8_t tag[16], bool *duplicate, char *why, size_t cap)
{
	struct pg *pg = st->impl;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	*duplicate = false;
	param_bytes(&p, nonce, NONCE_LEN);
	param_int(&p, ts_ms);
	param_bytes(&p, tag, 16);
	rc = run(pg, S_NONCE_INSERT, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 1) {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	/* Consumed before (or by a concurrent call that committed first): by whom? */
	p.n = 0;
	param_bytes(&p, nonce, NONCE_LEN);
	rc = run(pg, S_NONCE_TAG, &p, true, &res, why, cap);
	if (rc != 0)
		return rc;
	*duplicate = PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 16 &&
		     memcmp(PQgetvalue(res, 0, 0), tag, 16) == 0;
	PQclear(res);
	return STORE_USED;
}

static int pg_nonce_sweep(struct store *st, int64_t before_ms, char *why, size_t cap)
{
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	param_int(&p, before_ms);
	rc = run(st->impl, S_NONCE_SWEEP, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rc = changed(res);
	PQclear(res);
	return rc;
}

/* ---- reference measurements ------------------------------------------------------------- */

static int pg_reference_put(struct store *st, const char *label, const char *json, char *why,
			    size_t cap)
{
	struct params p = { .n = 0 };

	param_text(&p, label);
	param_text(&p, json);
	return run(st->impl, S_REF_PUT, &p, false, NULL, why, cap);
}

static int pg_reference_remove(struct store *st, const char *label, char *why, size_t cap)
{
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	param_text(&p, label);
	rc = run(st->impl, S_REF_REMOVE, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rc = PQntuples(res) == 0 ? STORE_NOTFOUND : 0;
	PQclear(res);
	return rc;
}

static int pg_reference_all(struct store *st, char ***labels, char ***jsons, size_t *n, char *why,
			    size_t cap)
{
	PGresult *res = NULL;
	size_t nl = 0, nj = 0;
	int rc;

	*labels = *jsons = NULL;
	*n = 0;
	rc = run(st->impl, S_REF_ALL, NULL, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rc = column_strings(res, 0, labels, &nl, why, cap);
	if (rc == 0)
		rc = column_strings(res, 1, jsons, &nj, why, cap);
	if (rc != 0) {
		store_strings_free(*labels, nl);
		*labels = NULL;
	} else {
		*n = nl;
	}
	PQclear(res);
	return rc;
}

static int pg_reference_generation(struct store *st, uint64_t *gen, char *why, size_t cap)
{
	PGresult *res = NULL;
	int rc = run(st->impl, S_REF_GEN, NULL, false, &res, why, cap);

	if (rc != 0)
		return rc;
	*gen = PQntuples(res) == 1 ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return 0;
}

/* ---- issued operational certificates and revocation ------------------------------------ */

struct cert_issue {
	const char *dev;
	const uint8_t *serial;
	int64_t not_after_s, now_s;
	int revoked; /* out */
};

static int cert_issued_body(struct pg *pg, void *ctx, char *why, size_t cap)
{
	struct cert_issue *c = ctx;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc = lock_device(pg, LOCK_CERTS, c->dev, why, cap);

	if (rc != 0)
		return rc;
	param_bytes(&p, c->serial, 16);
	param_text(&p, c->dev);
	param_int(&p, c->not_after_s);
	param_int(&p, c->now_s);
	param_int(&p, STORE_REVOKE_SUPERSEDED);
	param_int(&p, c->now_s - SKEW_S);
	rc = run(pg, S_CERT_ISSUE, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	c->revoked = changed(res);
	PQclear(res);
	return 0;
}

static int pg_cert_issued(struct store *st, const char *dev, const uint8_t serial[16],
			  int64_t not_after_s, int64_t now_s, char *why, size_t cap)
{
	struct cert_issue c = {
		.dev = dev, .serial = serial, .not_after_s = not_after_s, .now_s = now_s
	};
	int rc = tx_run(st->impl, cert_issued_body, &c, why, cap);

	return rc != 0 ? rc : c.revoked;
}

struct cert_revoke {
	const char *dev;
	enum store_revoke_reason reason;
	int64_t now_s;
	int revoked; /* out */
};

static int cert_revoke_body(struct pg *pg, void *ctx, char *why, size_t cap)
{
	struct cert_revoke *c = ctx;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc = lock_device(pg, LOCK_CERTS, c->dev, why, cap);

	if (rc != 0)
		return rc;
	param_text(&p, c->dev);
	param_int(&p, c->reason);
	param_int(&p, c->now_s);
	param_int(&p, c->now_s - SKEW_S);
	rc = run(pg, S_CERT_REVOKE, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	c->revoked = changed(res);
	PQclear(res);
	return 0;
}

static int pg_cert_revoke_device(struct store *st, const char *dev, enum store_revoke_reason reason,
				 int64_t now_s, char *why, size_t cap)
{
	struct cert_revoke c = { .dev = dev, .reason = reason, .now_s = now_s };
	int rc = tx_run(st->impl, cert_revoke_body, &c, why, cap);

	return rc != 0 ? rc : c.revoked;
}

/*
 * Runs certificate query 'id' with 'p': its rows (serial in hex, not_after, revoked, reason and,
 * where the query has one, the device) into *out (malloc'd, *n). 0 or a gd_err with 'why'.
 */
static int cert_rows(struct pg *pg, enum stmt id, const struct params *p,
		     struct store_revoked **out, size_t *n, char *why, size_t cap)
{
	PGresult *res = NULL;
	struct store_revoked *v;
	size_t rows;
	int rc;

	*out = NULL;
	*n = 0;
	rc = run(pg, id, p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rows = (size_t)PQntuples(res);
	v = calloc(rows + 1, sizeof(*v));
	if (v == NULL) {
		gd_whyf(why, cap, "out of memory");
		rc = GD_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < rows; i++) {
		int r = (int)i;

		if (!gd_hex_decode(PQgetvalue(res, r, 0), v[i].serial, sizeof(v[i].serial), '\0')) {
			gd_whyf(why, cap, "%s: %s: serial %s is not 16 bytes", pg->where,
				stmts[id].name, PQgetvalue(res, r, 0));
			rc = GD_EPROTO;
			goto out;
		}
		v[i].not_after_s = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		v[i].revoked_s = strtoll(PQgetvalue(res, r, 2), NULL, 10);
		v[i].reason = (enum store_revoke_reason)atoi(PQgetvalue(res, r, 3));
		if (PQnfields(res) > 4)
			snprintf(v[i].dev, sizeof(v[i].dev), "%s", PQgetvalue(res, r, 4));
	}
	*out = v;
	*n = rows;
	v = NULL;
out:
	free(v);
	PQclear(res);
	return rc;
}

static int pg_cert_revoked(struct store *st, int64_t now_s, struct store_revoked **out, size_t *n,
			   char *why, size_t cap)
{
	struct params p = { .n = 0 };

	param_int(&p, now_s - SKEW_S);
	return cert_rows(st->impl, S_CERT_REVOKED, &p, out, n, why, cap);
}

static int pg_cert_list(struct store *st, const char *dev, int64_t now_s, struct store_cert **out,
			size_t *n, char *why, size_t cap)
{
	struct params p = { .n = 0 };
	struct store_revoked *rows = NULL;
	struct store_cert *v;
	size_t count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	param_text(&p, dev);
	param_int(&p, now_s - SKEW_S);
	rc = cert_rows(st->impl, S_CERT_LIST, &p, &rows, &count, why, cap);
	if (rc != 0)
		return rc;
	v = calloc(count + 1, sizeof(*v));
	if (v == NULL) {
		free(rows);
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	for (size_t i = 0; i < count; i++) {
		memcpy(v[i].serial, rows[i].serial, sizeof(v[i].serial));
		v[i].not_after_s = rows[i].not_after_s;
		v[i].revoked_s = rows[i].revoked_s;
		v[i].reason = rows[i].reason;
	}
	free(rows);
	*out = v;
	*n = count;
	return 0;
}

static int pg_cert_import(struct store *st, const char *dev, const struct store_cert *c, char *why,
			  size_t cap)
{
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	param_bytes(&p, c->serial, sizeof(c->serial));
	param_text(&p, dev);
	param_int(&p, c->not_after_s);
	if (c->revoked_s != 0) {
		param_int(&p, c->revoked_s);
		param_int(&p, c->reason);
	} else {
		param_text(&p, NULL); /* in force: SQL NULLs */
		param_text(&p, NULL);
	}
	rc = run(st->impl, S_CERT_IMPORT, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rc = changed(res) > 0 ? 1 : 0;
	PQclear(res);
	return rc;
}

/* ---- one attestation decision ---------------------------------------------------------- */

struct attest_tx {
	const struct store_attest *a;
	bool duplicate; /* out */
	int revoked;	/* out */
};

/*
 * The nonce first, then (with certificates to change) the device's advisory lock, as
 * cert_issued_body takes it: a call that waits on the lock has its nonce inserted already, and
 * one that waits on a nonce another transaction inserted holds no lock, so no cycle.
 */
static int attest_body(struct pg *pg, void *ctx, char *why, size_t cap)
{
	struct attest_tx *t = ctx;
	const struct store_attest *a = t->a;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	t->duplicate = false;
	t->revoked = 0;
	/* A concurrent transaction's uncommitted insert of the nonce makes this one wait for it:
	 * committed, the nonce is used; rolled back, this one inserts it. */
	param_bytes(&p, a->nonce, NONCE_LEN);
	param_int(&p, a->nonce_ts_ms);
	param_bytes(&p, a->tag, 16);
	rc = run(pg, S_NONCE_INSERT, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		p.n = 0;
		param_bytes(&p, a->nonce, NONCE_LEN);
		rc = run(pg, S_NONCE_TAG, &p, true, &res, why, cap);
		if (rc != 0)
			return rc;
		t->duplicate = PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 16 &&
			       memcmp(PQgetvalue(res, 0, 0), a->tag, 16) == 0;
		PQclear(res);
		return STORE_USED; /* rolled back: nothing else written */
	}
	PQclear(res);
	if ((a->issued || a->revoke_refused) &&
	    (rc = lock_device(pg, LOCK_CERTS, a->dev, why, cap)) != 0)
		return rc;
	if (a->issued) {
		p.n = 0;
		param_bytes(&p, a->serial, 16);
		param_text(&p, a->dev);
		param_int(&p, a->not_after_s);
		param_int(&p, a->now_s);
		param_int(&p, STORE_REVOKE_SUPERSEDED);
		param_int(&p, a->now_s - SKEW_S);
		rc = run(pg, S_CERT_ISSUE, &p, false, &res, why, cap);
		if (rc != 0)
			return rc;
		t->revoked += changed(res);
		PQclear(res);
	}
	if (a->revoke_refused) {
		p.n = 0;
		param_text(&p, a->dev);
		param_int(&p, STORE_REVOKE_REFUSED);
		param_int(&p, a->now_s);
		param_int(&p, a->now_s - SKEW_S);
		rc = run(pg, S_CERT_REVOKE, &p, false, &res, why, cap);
		if (rc != 0)
			return rc;
		t->revoked += changed(res);
		PQclear(res);
	}
	if (a->installed_json != NULL) {
		/* No row changed: the device was removed meanwhile; nothing to record for it. */
		p.n = 0;
		param_text(&p, a->dev);
		param_text(&p, a->installed_json);
		rc = run(pg, S_INSTALLED_PUT, &p, false, NULL, why, cap);
	}
	return rc;
}

/* One transaction, one commit (one WAL flush) where the separate calls make three. */
static int pg_attest_record(struct store *st, const struct store_attest *a, bool *duplicate,
			    int *revoked, char *why, size_t cap)
{
	struct attest_tx t = { .a = a };
	int rc = tx_run(st->impl, attest_body, &t, why, cap);

	*duplicate = t.duplicate;
	*revoked = rc == 0 ? t.revoked : 0;
	return rc;
}

/* ---- releases --------------------------------------------------------------------------- */

static int pg_release_put(struct store *st, const char *dev, const struct store_release *r,
			  char *why, size_t cap)
{
	struct params p = { .n = 0 };

	param_text(&p, dev);
	param_int(&p, (int64_t)r->version);
	param_text(&p, r->sha256);
	param_int(&p, r->ts_ms);
	param_text(&p, r->withdrawn ? "true" : "false");
	return run(st->impl, S_RELEASE_PUT, &p, false, NULL, why, cap);
}

static int pg_release_get(struct store *st, const char *dev, struct store_release *out, char *why,
			  size_t cap)
{
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	int rc;

	param_text(&p, dev);
	rc = run(st->impl, S_RELEASE_GET, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 0) {
		rc = STORE_NOTFOUND;
	} else {
		out->version = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(out->sha256, sizeof(out->sha256), "%s", PQgetvalue(res, 0, 1));
		out->ts_ms = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		out->withdrawn = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
	}
	PQclear(res);
	return rc;
}

/* ---- failure reports -------------------------------------------------------------------- */

struct report_change {
	const char *dev;
	store_merge_fn *merge;
	void *ctx;
};

static int report_body(struct pg *pg, void *ctx, char *why, size_t cap)
{
	struct report_change *c = ctx;
	struct params p = { .n = 0 };
	PGresult *res = NULL;
	char *next = NULL;
	int rc = lock_device(pg, LOCK_REPORT, c->dev, why, cap);

	if (rc != 0)
		return rc;
	param_text(&p, c->dev);
	rc = run(pg, S_REPORT_GET, &p, false, &res, why, cap);
	if (rc != 0)
		return rc;
	rc = c->merge(PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL, &next, c->ctx, why, cap);
	PQclear(res);
	if (rc != 0) {
		free(next);
		return rc;
	}
	if (next == NULL)
		return run(pg, S_REPORT_DELETE, &p, false, NULL, why, cap);
	param_text(&p, next);
	rc = run(pg, S_REPORT_PUT, &p, false, NULL, why, cap);
	free(next);
	return rc;
}

static int pg_report_update(struct store *st, const char *dev, store_merge_fn *merge, void *ctx,
			    char *why, size_t cap)
{
	struct report_change c = { .dev = dev, .merge = merge, .ctx = ctx };

	return tx_run(st->impl, report_body, &c, why, cap);
}

static int pg_report_get(struct store *st, const char *dev, char **json, char *why, size_t cap)
{
	return text_get(st->impl, S_REPORT_GET, dev, json, why, cap);
}

static int pg_report_list(struct store *st, char ***devs, size_t *n, char *why, size_t cap)
{
	return first_column(st->impl, S_REPORT_LIST, devs, n, why, cap);
}

const struct store_ops store_pg_ops = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.schema_version = pg_schema_version,
	.device_get = pg_device_get,
	.device_put = pg_device_put,
	.device_list = pg_device_list,
	.installed_put = pg_installed_put,
	.installed_get = pg_installed_get,
	.nonce_consume = pg_nonce_consume,
	.nonce_sweep = pg_nonce_sweep,
	.reference_put = pg_reference_put,
	.reference_remove = pg_reference_remove,
	.reference_all = pg_reference_all,
	.reference_generation = pg_reference_generation,
	.cert_issued = pg_cert_issued,
	.cert_revoke_device = pg_cert_revoke_device,
	.cert_revoked = pg_cert_revoked,
	.cert_list = pg_cert_list,
	.cert_import = pg_cert_import,
	.attest_record = pg_attest_record,
	.release_put = pg_release_put,
	.release_get = pg_release_get,
	.report_update = pg_report_update,
	.report_get = pg_report_get,
	.report_list = pg_report_list,
};
