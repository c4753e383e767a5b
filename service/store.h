/* store.h: what guardian-service remembers, behind one interface with three backends: the
 * files of the service directory (the store before 0.3, and the benchmark's baseline), SQLite
 * in WAL mode (the embedded default) and PostgreSQL through libpq (instances on several hosts).
 *
 * The secrets stay files in the service directory whatever the backend: the CA keys and
 * nonce.key are copied to each host that runs an instance; the database holds no key.
 *
 * Every function returns 0, STORE_NOTFOUND (1) where it says so, or a negative gd_err with a
 * sentence in 'why' (at most 'cap' bytes) naming the backend and what failed. A store is used
 * by one thread at a time (one per struct service).
 */
#ifndef SERVICE_STORE_H
#define SERVICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/evidence.h" /* NONCE_LEN */

#define STORE_NOTFOUND 1
#define STORE_SCHEMA_VERSION                                                                       \
	1 /* what this build reads and writes; `migrate` brings a database here */
#define STORE_MAX_PER_DEVICE                                                                       \
	64 /* unexpired certificates kept per device; older ones are forgotten */

enum store_backend {
	STORE_FILES,	/* "files": the service directory */
	STORE_SQLITE,	/* "sqlite": <dir>/service.db unless "path" says otherwise */
	STORE_POSTGRES, /* "postgresql": "conninfo" (libpq's keyword=value or URI) */
};

/* SQLite's synchronous level ("store": {"synchronous": ...}; store_sqlite.c says what each
 * keeps across a crash and a power loss). */
enum store_sqlite_synchronous {
	STORE_SYNCHRONOUS_FULL = 0, /* "full", the default: the WAL synced at every commit */
	STORE_SYNCHRONOUS_NORMAL,   /* "normal": synced at checkpoints only */
};

/* The "store" object of service.json. Strings owned (service_config_release frees them). */
struct store_config {
	enum store_backend backend;
	char *path; /* sqlite: the database file, resolved against the service dir; NULL: service.db
		     */
	char *conninfo; /* postgresql: the connection string; NULL for the others */
	enum store_sqlite_synchronous sqlite_synchronous; /* sqlite only */
};

/* Why an operational certificate was revoked (the CRL's reasonCode). */
enum store_revoke_reason {
	STORE_REVOKE_SUPERSEDED = 1, /* a newer one was issued to the device */
	STORE_REVOKE_REFUSED,	     /* the device's attestation was refused */
};

/* One revoked, unexpired certificate, for the CRL. */
struct store_revoked {
	uint8_t serial[16];
	int64_t not_after_s, revoked_s; /* UTC seconds */
	enum store_revoke_reason reason;
	char dev[64];
};

struct store;

/*
 * Opens the store 'cfg' names for the service directory 'dir'. With 'create' the schema is
 * made or brought to STORE_SCHEMA_VERSION (`init`, `migrate`); without, a database whose
 * schema is missing or older is refused: "... run guardian-service migrate -d DIR".
 */
int store_open(const char *dir, const struct store_config *cfg, bool create, struct store **out,
	       char *why, size_t cap);
/* No operation is performed if 'st' is NULL. */
void store_close(struct store *st);
/* "files", "sqlite", "postgresql". */
const char *store_backend_name(enum store_backend b);
/* The schema version the store holds (0: none yet). */
int store_schema_version(struct store *st, int *version, char *why, size_t cap);
/* SQLite: the synchronous level the store's connection runs at, as PRAGMA synchronous reads it
 * (0 off, 1 normal, 2 full, 3 extra). GD_EINVAL for the other backends. */
int store_sqlite_synchronous(struct store *st, int *level, char *why, size_t cap);

/* ---- devices ---------------------------------------------------------------------------- */

/* The identity certificate and, if enrolled, the attestation key (NULL if none), malloc'd PEM;
 * either pointer may be NULL when not wanted. 0 or STORE_NOTFOUND. */
int store_device_get(struct store *st, const char *name, char **cert_pem, char **ak_pem, char *why,
		     size_t cap);
/* Registers 'name' with 'cert_pem'; 'ak_pem' NULL keeps the attestation key it has (if any). */
int store_device_put(struct store *st, const char *name, const char *cert_pem, const char *ak_pem,
		     char *why, size_t cap);
/* The enrolled names, sorted (malloc'd array of malloc'd strings, *n of them). */
int store_device_list(struct store *st, char ***names, size_t *n, char *why, size_t cap);
/* What the device last said it runs: a JSON document (publish.c's), replaced, and read back. */
int store_installed_put(struct store *st, const char *name, const char *json, char *why,
			size_t cap);
int store_installed_get(struct store *st, const char *name, char **json, char *why, size_t cap);

/* ---- nonces ----------------------------------------------------------------------------- */

/*
 * Consumes 'nonce' (made at 'ts_ms') with 'tag' naming the delivery. 0 when this call consumed
 * it; STORE_USED when it was consumed before, with *duplicate telling whether by the same
 * 'tag'. Of any number of concurrent calls on one nonce, from any
 * number of processes and hosts, exactly one gets 0.
 */
#define STORE_USED 1
int store_nonce_consume(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
			const uint8_t tag[16], bool *duplicate, char *why, size_t cap);
/* Forgets the nonces made before 'before_ms'. How many, or a negative gd_err. */
int store_nonce_sweep(struct store *st, int64_t before_ms, char *why, size_t cap);

/* ---- reference measurements ------------------------------------------------------------- */

/* Records (or replaces) the reference 'label' (meas_log_json's document). */
int store_reference_put(struct store *st, const char *label, const char *json, char *why,
			size_t cap);
/* 0, or STORE_NOTFOUND. */
int store_reference_remove(struct store *st, const char *label, char *why, size_t cap);
/* Every reference sorted by label: malloc'd arrays of malloc'd strings, *n of each. */
int store_reference_all(struct store *st, char ***labels, char ***jsons, size_t *n, char *why,
			size_t cap);
/* A number that changes whenever a reference is put or removed (by any instance). */
int store_reference_generation(struct store *st, uint64_t *gen, char *why, size_t cap);

/* ---- issued operational certificates and revocation ------------------------------------ */

/*
 * Records 'serial', just issued to 'dev', valid to 'not_after_s'; revokes, as superseded at
 * 'now_s', the device's earlier certificates that are unexpired and not yet revoked, and
 * forgets its expired ones (and the oldest beyond STORE_MAX_PER_DEVICE). In one transaction.
 * How many were revoked, or a negative gd_err (then the certificate must not be handed out).
 */
int store_cert_issued(struct store *st, const char *dev, const uint8_t serial[16],
		      int64_t not_after_s, int64_t now_s, char *why, size_t cap);
/* Revokes every unexpired, unrevoked certificate of 'dev'. How many, or a negative gd_err. */
int store_cert_revoke_device(struct store *st, const char *dev, enum store_revoke_reason reason,
			     int64_t now_s, char *why, size_t cap);
/* The revoked certificates not expired at 'now_s' (malloc'd, *n), sorted by revocation time;
 * expired ones are forgotten. */
int store_cert_revoked(struct store *st, int64_t now_s, struct store_revoked **out, size_t *n,
		       char *why, size_t cap);

/* One certificate issued to a device, as the store keeps it (store_cert_list, _import). */
struct store_cert {
	uint8_t serial[16];
	int64_t not_after_s;		 /* UTC seconds */
	int64_t revoked_s;		 /* UTC seconds; 0: in force */
	enum store_revoke_reason reason; /* when revoked */
};

/* The unexpired certificates issued to 'dev' at 'now_s', in the order issued (malloc'd, *n).
 * For `migrate --import-files` (added to the interface by it). */
int store_cert_list(struct store *st, const char *dev, int64_t now_s, struct store_cert **out,
		    size_t *n, char *why, size_t cap);
/*
 * Records 'c', issued to 'dev', as it is (revoked or in force), unless the store knows its
 * serial already; revokes nothing else. 1 recorded, 0 known already, or a negative gd_err.
 * For `migrate --import-files`, which copies a files store into a database idempotently.
 */
int store_cert_import(struct store *st, const char *dev, const struct store_cert *c, char *why,
		      size_t cap);

/* ---- one attestation decision, in one transaction ---------------------------------------- */

/* What one attestation decision writes (store_attest_record). */
struct store_attest {
	const char *dev;
	const uint8_t *nonce; /* NONCE_LEN bytes */
	int64_t nonce_ts_ms;  /* when the nonce was made (for the sweep) */
	const uint8_t *tag;   /* 16 bytes naming the delivery (store_nonce_consume's) */
	bool issued;	      /* a certificate was issued: 'serial', 'not_after_s' */
	uint8_t serial[16];
	int64_t not_after_s;
	const char *installed_json; /* what the device runs (store_installed_put's); NULL: none */
	bool revoke_refused;	    /* refused: revoke its unexpired certificates as refused */
	int64_t now_s;		    /* UTC seconds */
};

/*
 * Records one attestation decision in one transaction (one commit): consumes the nonce; if that
 * nonce was consumed before, writes nothing else and returns STORE_USED with *duplicate telling
 * whether by the same tag (as store_nonce_consume). Else, with 'issued', records the certificate
 * and revokes the device's earlier ones as superseded (as store_cert_issued); with
 * 'revoke_refused', revokes its unexpired ones as refused (as store_cert_revoke_device); puts
 * 'installed_json' if given (a device no longer enrolled records none, and that is no error).
 * *revoked (if not NULL): how many certificates were revoked. 0, STORE_USED, or a negative
 * gd_err (then nothing was written, and an issued certificate must not be handed out). Of any
 * number of concurrent calls on one nonce, exactly one gets 0.
 *
 * A backend without transactions (files) runs the calls above in turn, the nonce first: a
 * failure after it leaves what was done before (the nonce consumed), and an installed document
 * it cannot write is logged, not a failure (the certificate is recorded by then).
 */
int store_attest_record(struct store *st, const struct store_attest *a, bool *duplicate,
			int *revoked, char *why, size_t cap);

/* ---- releases --------------------------------------------------------------------------- */

/* What `release publish` last delivered to one device (store_release_put, _get). */
struct store_release {
	uint64_t version; /* the bundle's version; withdrawn: the last one published (0: none) */
	char sha256[65];  /* the bundle file's SHA-256, lowercase hex ("" with version 0) */
	int64_t ts_ms;	  /* when it was published, or withdrawn (UTC ms) */
	bool withdrawn;	  /* the retained bundle was withdrawn */
};

/*
 * Records 'r' as what was last published to 'dev' (enrolled or not), replacing the record it
 * had; called once the broker acknowledged the publish. A withdrawal is recorded with the
 * version and hash of the record it replaces (the caller reads it first). GD_EINVAL for a
 * version above INT64_MAX or a hash that is not 64 lowercase hex digits (or "" with version 0).
 */
int store_release_put(struct store *st, const char *dev, const struct store_release *r, char *why,
		      size_t cap);
/* The record of 'dev' into *out: 0, or STORE_NOTFOUND (nothing ever published to it). */
int store_release_get(struct store *st, const char *dev, struct store_release *out, char *why,
		      size_t cap);

/* ---- failure reports -------------------------------------------------------------------- */

/*
 * Read-modify-write of the report document of 'dev', atomic against every other instance:
 * 'merge' gets the stored document (NULL if none) and sets *next (malloc'd) to what replaces
 * it, or returns non-zero to change nothing (that value is returned, 'why' left to 'merge').
 */
typedef int store_merge_fn(const char *old_json, char **next, void *ctx, char *why, size_t cap);
int store_report_update(struct store *st, const char *dev, store_merge_fn *merge, void *ctx,
			char *why, size_t cap);
/* The document of 'dev' (malloc'd), or STORE_NOTFOUND. */
int store_report_get(struct store *st, const char *dev, char **json, char *why, size_t cap);
/* The devices with a report document, sorted. */
int store_report_list(struct store *st, char ***devs, size_t *n, char *why, size_t cap);

/* Frees an array of 'n' malloc'd strings and the array. No operation if 'v' is NULL. */
void store_strings_free(char **v, size_t n);

#endif
