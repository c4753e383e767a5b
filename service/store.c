/* store.c: the store interface (store.h): picks the backend and dispatches to it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "store_impl.h"

const char *store_backend_name(enum store_backend b)
{
	switch (b) {
	case STORE_FILES:
		return "files";
	case STORE_SQLITE:
		return "sqlite";
	case STORE_POSTGRES:
		return "postgresql";
	}
	return "?";
}

static const struct store_ops *backend_ops(enum store_backend b)
{
	switch (b) {
	case STORE_FILES:
		return &store_files_ops;
	case STORE_SQLITE:
		return &store_sqlite_ops;
	case STORE_POSTGRES:
		return &store_pg_ops;
	}
	return NULL;
}

int store_open(const char *dir, const struct store_config *cfg, bool create, struct store **out,
	       char *why, size_t cap)
{
	struct store *st;
	int rc;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->dir = strdup(dir)) == NULL) {
		free(st);
		snprintf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	st->ops = backend_ops(cfg->backend);
	if (st->ops == NULL || st->ops->open == NULL) {
		snprintf(why, cap, "store backend \"%s\" is not built in",
			 store_backend_name(cfg->backend));
		free(st->dir);
		free(st);
		return GD_ECONFIG;
	}
	rc = st->ops->open(st, cfg, create, why, cap);
	if (rc != 0) {
		free(st->dir);
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->ops->close != NULL)
		st->ops->close(st);
	free(st->dir);
	free(st);
}

void store_strings_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void *store_grow(void *v, size_t len, size_t *room, size_t first, size_t size)
{
	size_t more = *room ? *room * 2 : first;
	void *bigger;

	if (len < *room)
		return v;
	bigger = realloc(v, more * size);
	if (bigger != NULL)
		*room = more;
	return bigger;
}

/* Calls the backend's 'fn', or says it has none. */
#define DISPATCH(fn, ...)                                                                          \
	do {                                                                                       \
		if (st->ops->fn == NULL) {                                                         \
			snprintf(why, cap, "store backend \"%s\" cannot " #fn, st->ops->name);     \
			return GD_EINVAL;                                                          \
		}                                                                                  \
		return st->ops->fn(st, __VA_ARGS__);                                               \
	} while (0)

int store_schema_version(struct store *st, int *version, char *why, size_t cap)
{
	DISPATCH(schema_version, version, why, cap);
}

int store_device_get(struct store *st, const char *name, char **cert_pem, char **ak_pem, char *why,
		     size_t cap)
{
	DISPATCH(device_get, name, cert_pem, ak_pem, why, cap);
}

int store_device_put(struct store *st, const char *name, const char *cert_pem, const char *ak_pem,
		     char *why, size_t cap)
{
	DISPATCH(device_put, name, cert_pem, ak_pem, why, cap);
}

int store_device_list(struct store *st, char ***names, size_t *n, char *why, size_t cap)
{
	DISPATCH(device_list, names, n, why, cap);
}

int store_installed_put(struct store *st, const char *name, const char *json, char *why, size_t cap)
{
	DISPATCH(installed_put, name, json, why, cap);
}

int store_installed_get(struct store *st, const char *name, char **json, char *why, size_t cap)
{
	DISPATCH(installed_get, name, json, why, cap);
}

int store_nonce_consume(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
			const uint8_t tag[16], bool *duplicate, char *why, size_t cap)
{
	DISPATCH(nonce_consume, nonce, ts_ms, tag, duplicate, why, cap);
}

int store_nonce_sweep(struct store *st, int64_t before_ms, char *why, size_t cap)
{
	DISPATCH(nonce_sweep, before_ms, why, cap);
}

int store_reference_put(struct store *st, const char *label, const char *json, char *why,
			size_t cap)
{
	DISPATCH(reference_put, label, json, why, cap);
}

int store_reference_remove(struct store *st, const char *label, char *why, size_t cap)
{
	DISPATCH(reference_remove, label, why, cap);
}

int store_reference_all(struct store *st, char ***labels, char ***jsons, size_t *n, char *why,
			size_t cap)
{
	DISPATCH(reference_all, labels, jsons, n, why, cap);
}

int store_reference_generation(struct store *st, uint64_t *gen, char *why, size_t cap)
{
	DISPATCH(reference_generation, gen, why, cap);
}

int store_cert_issued(struct store *st, const char *dev, const uint8_t serial[16],
		      int64_t not_after_s, int64_t now_s, char *why, size_t cap)
{
	DISPATCH(cert_issued, dev, serial, not_after_s, now_s, why, cap);
}

int store_cert_revoke_device(struct store *st, const char *dev, enum store_revoke_reason reason,
			     int64_t now_s, char *why, size_t cap)
{
	DISPATCH(cert_revoke_device, dev, reason, now_s, why, cap);
}

int store_cert_revoked(struct store *st, int64_t now_s, struct store_revoked **out, size_t *n,
		       char *why, size_t cap)
{
	DISPATCH(cert_revoked, now_s, out, n, why, cap);
}

int store_cert_list(struct store *st, const char *dev, int64_t now_s, struct store_cert **out,
		    size_t *n, char *why, size_t cap)
{
	DISPATCH(cert_list, dev, now_s, out, n, why, cap);
}

int store_cert_import(struct store *st, const char *dev, const struct store_cert *c, char *why,
		      size_t cap)
{
	DISPATCH(cert_import, dev, c, why, cap);
}

/* Whether 'hex' is 64 lowercase hex digits. */
static bool sha256_hex(const char *hex)
{
	size_t n = strspn(hex, "0123456789abcdef");

	return n == 64 && hex[n] == '\0';
}

int store_release_put(struct store *st, const char *dev, const struct store_release *r, char *why,
		      size_t cap)
{
	if (r->version > INT64_MAX) {
		snprintf(why, cap, "store: release of \"%s\": version %llu is out of range", dev,
			 (unsigned long long)r->version);
		return GD_EINVAL;
	}
	if (!(r->version == 0 && r->sha256[0] == '\0') && !sha256_hex(r->sha256)) {
		snprintf(why, cap,
			 "store: release of \"%s\": \"%.70s\" is not a SHA-256 (64 lowercase hex "
			 "digits)",
			 dev, r->sha256);
		return GD_EINVAL;
	}
	DISPATCH(release_put, dev, r, why, cap);
}

int store_release_get(struct store *st, const char *dev, struct store_release *out, char *why,
		      size_t cap)
{
	memset(out, 0, sizeof(*out));
	DISPATCH(release_get, dev, out, why, cap);
}

int store_sqlite_synchronous(struct store *st, int *level, char *why, size_t cap)
{
	*level = -1;
	DISPATCH(sqlite_synchronous, level, why, cap);
}

int store_report_update(struct store *st, const char *dev, store_merge_fn *merge, void *ctx,
			char *why, size_t cap)
{
	DISPATCH(report_update, dev, merge, ctx, why, cap);
}

int store_report_get(struct store *st, const char *dev, char **json, char *why, size_t cap)
{
	DISPATCH(report_get, dev, json, why, cap);
}

int store_report_list(struct store *st, char ***devs, size_t *n, char *why, size_t cap)
{
	DISPATCH(report_list, devs, n, why, cap);
}

/* store_attest_record for a backend without transactions: the calls in turn, the nonce first. */
static int attest_record_sequence(struct store *st, const struct store_attest *a, bool *duplicate,
				  int *revoked, char *why, size_t cap)
{
	char installed_why[512];
	int rc, n = 0;

	rc = store_nonce_consume(st, a->nonce, a->nonce_ts_ms, a->tag, duplicate, why, cap);
	if (rc != 0)
		return rc;
	if (a->issued) {
		rc = store_cert_issued(st, a->dev, a->serial, a->not_after_s, a->now_s, why, cap);
		if (rc < 0)
			return rc;
		n += rc;
	}
	if (a->revoke_refused) {
		rc = store_cert_revoke_device(st, a->dev, STORE_REVOKE_REFUSED, a->now_s, why, cap);
		if (rc < 0)
			return rc;
		n += rc;
	}
	/* The certificate is recorded by now: what the device runs it says again next round. */
	if (a->installed_json != NULL &&
	    store_installed_put(st, a->dev, a->installed_json, installed_why,
				sizeof(installed_why)) != 0)
		log_warnx("store", "%s", installed_why);
	if (revoked != NULL)
		*revoked = n;
	return 0;
}

int store_attest_record(struct store *st, const struct store_attest *a, bool *duplicate,
			int *revoked, char *why, size_t cap)
{
	bool dup = false;
	int n = 0, rc;

	rc = st->ops->attest_record != NULL ? st->ops->attest_record(st, a, &dup, &n, why, cap)
					    : attest_record_sequence(st, a, &dup, &n, why, cap);
	if (duplicate != NULL)
		*duplicate = dup;
	if (revoked != NULL)
		*revoked = rc == 0 ? n : 0;
	return rc;
}
