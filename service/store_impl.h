/* store_impl.h: what a store backend implements (store.h); store.c dispatches to it. Only the
 * backends (store_files.c, store_sqlite.c, store_pg.c) and store.c include this. */
#ifndef SERVICE_STORE_IMPL_H
#define SERVICE_STORE_IMPL_H

#include "store.h"

/* Each member is the store.h function of the same name without "store_", on 'st'. */
struct store_ops {
	const char *name; /* store_backend_name's */
	/* Sets st->impl (the backend's state). 'create': make or upgrade the schema. */
	int (*open)(struct store *st, const struct store_config *cfg, bool create, char *why,
		    size_t cap);
	void (*close)(struct store *st);
	int (*schema_version)(struct store *st, int *version, char *why, size_t cap);
	int (*device_get)(struct store *st, const char *name, char **cert_pem, char **ak_pem,
			  char *why, size_t cap);
	int (*device_put)(struct store *st, const char *name, const char *cert_pem,
			  const char *ak_pem, char *why, size_t cap);
	int (*device_list)(struct store *st, char ***names, size_t *n, char *why, size_t cap);
	int (*installed_put)(struct store *st, const char *name, const char *json, char *why,
			     size_t cap);
	int (*installed_get)(struct store *st, const char *name, char **json, char *why,
			     size_t cap);
	int (*nonce_consume)(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
			     const uint8_t tag[16], bool *duplicate, char *why, size_t cap);
	int (*nonce_sweep)(struct store *st, int64_t before_ms, char *why, size_t cap);
	int (*reference_put)(struct store *st, const char *label, const char *json, char *why,
			     size_t cap);
	int (*reference_remove)(struct store *st, const char *label, char *why, size_t cap);
	int (*reference_all)(struct store *st, char ***labels, char ***jsons, size_t *n, char *why,
			     size_t cap);
	int (*reference_generation)(struct store *st, uint64_t *gen, char *why, size_t cap);
	int (*cert_issued)(struct store *st, const char *dev, const uint8_t serial[16],
			   int64_t not_after_s, int64_t now_s, char *why, size_t cap);
	int (*cert_revoke_device)(struct store *st, const char *dev,
				  enum store_revoke_reason reason, int64_t now_s, char *why,
				  size_t cap);
	int (*cert_revoked)(struct store *st, int64_t now_s, struct store_revoked **out, size_t *n,
			    char *why, size_t cap);
	/* Added by migrate (store.h): NULL in a backend that cannot (then import says so). */
	int (*cert_list)(struct store *st, const char *dev, int64_t now_s, struct store_cert **out,
			 size_t *n, char *why, size_t cap);
	int (*cert_import)(struct store *st, const char *dev, const struct store_cert *c, char *why,
			   size_t cap);
	/* One decision in one transaction (store.h); NULL: store.c runs the calls above in turn. */
	int (*attest_record)(struct store *st, const struct store_attest *a, bool *duplicate,
			     int *revoked, char *why, size_t cap);
	int (*release_put)(struct store *st, const char *dev, const struct store_release *r,
			   char *why, size_t cap);
	int (*release_get)(struct store *st, const char *dev, struct store_release *out, char *why,
			   size_t cap);
	/* SQLite only (store.h); NULL elsewhere. */
	int (*sqlite_synchronous)(struct store *st, int *level, char *why, size_t cap);
	int (*report_update)(struct store *st, const char *dev, store_merge_fn *merge, void *ctx,
			     char *why, size_t cap);
	int (*report_get)(struct store *st, const char *dev, char **json, char *why, size_t cap);
	int (*report_list)(struct store *st, char ***devs, size_t *n, char *why, size_t cap);
};

struct store {
	const struct store_ops *ops;
	char *dir; /* the service directory (owned) */
	void *impl;
};

extern const struct store_ops store_files_ops, store_sqlite_ops, store_pg_ops;

/*
 * For a backend's growing array 'v' of 'len' elements of 'size' bytes in room for *room: 'v'
 * while there is room for one more, else 'v' realloc'd to twice the room ('first' elements the
 * first time) and *room updated. NULL when out of memory: 'v' is left as it was.
 */
void *store_grow(void *v, size_t len, size_t *room, size_t first, size_t size);

#endif
