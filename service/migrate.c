/* migrate.c: `guardian-service migrate --import-files`: what the files store of a service
 * directory holds, copied into a database store, idempotently. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service.h"

#define UNCHANGED 2 /* a merge's "the same already": nothing written */

/* Counts of what was copied. */
struct import_counts {
	size_t devices, installed, references, certificates, revocations, reports, releases;
};

/* Whether two strings, either NULL, are the same. */
static bool same_text(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* What one device's import does: 0 or a gd_err with 'why'. */
typedef int import_one_fn(struct store *from, struct store *to, const char *dev, int64_t now_s,
			  struct import_counts *n, char *why, size_t cap);

/* 'one' for each name 'list' gives of 'from' (store_device_list, store_report_list), until one
 * fails; 'now_s' is passed on (UTC seconds; 0 where 'one' has no use for it). */
static int import_each(struct store *from, struct store *to,
		       int (*list)(struct store *, char ***, size_t *, char *, size_t),
		       import_one_fn *one, int64_t now_s, struct import_counts *n, char *why,
		       size_t cap)
{
	char **names = NULL;
	size_t count = 0;
	int rc = list(from, &names, &count, why, cap);

	for (size_t i = 0; rc == 0 && i < count; i++)
		rc = one(from, to, names[i], now_s, n, why, cap);
	store_strings_free(names, count);
	return rc;
}

/* An enrolled device, its attestation key and what it runs. */
static int import_device(struct store *from, struct store *to, const char *dev, int64_t now_s,
			 struct import_counts *n, char *why, size_t cap)
{
	char *cert = NULL, *ak = NULL, *have_cert = NULL, *have_ak = NULL;
	char *inst = NULL, *have_inst = NULL;
	int rc;

	(void)now_s;
	rc = store_device_get(from, dev, &cert, &ak, why, cap);
	if (rc == STORE_NOTFOUND) /* removed since the listing */
		return 0;
	if (rc == 0)
		rc = store_device_get(to, dev, &have_cert, &have_ak, why, cap);
	if (rc == STORE_NOTFOUND)
		rc = 0;
	if (rc == 0 && (!same_text(cert, have_cert) || !same_text(ak, have_ak))) {
		rc = store_device_put(to, dev, cert, ak, why, cap);
		n->devices += rc == 0;
	}
	if (rc == 0)
		rc = store_installed_get(from, dev, &inst, why, cap);
	if (rc == 0)
		rc = store_installed_get(to, dev, &have_inst, why, cap);
	if (rc == STORE_NOTFOUND)
		rc = 0;
	if (rc == 0 && inst != NULL && !same_text(inst, have_inst)) {
		rc = store_installed_put(to, dev, inst, why, cap);
		n->installed += rc == 0;
	}
	free(cert);
	free(ak);
	free(have_cert);
	free(have_ak);
	free(inst);
	free(have_inst);
	return rc;
}

/* Each reference that 'to' does not hold the same. */
static int import_references(struct store *from, struct store *to, struct import_counts *n,
			     char *why, size_t cap)
{
	char **labels = NULL, **jsons = NULL, **have_labels = NULL, **have_jsons = NULL;
	size_t count = 0, have = 0;
	int rc = store_reference_all(from, &labels, &jsons, &count, why, cap);

	if (rc == 0)
		rc = store_reference_all(to, &have_labels, &have_jsons, &have, why, cap);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		bool same = false;

		for (size_t j = 0; j < have && !same; j++)
			same = strcmp(labels[i], have_labels[j]) == 0 &&
			       strcmp(jsons[i], have_jsons[j]) == 0;
		if (same)
			continue;
		rc = store_reference_put(to, labels[i], jsons[i], why, cap);
		n->references += rc == 0;
	}
	store_strings_free(labels, count);
	store_strings_free(jsons, count);
	store_strings_free(have_labels, have);
	store_strings_free(have_jsons, have);
	return rc;
}

/* A device's certificates unexpired at 'now_s', revoked or in force, in the order issued. */
static int import_certs(struct store *from, struct store *to, const char *dev, int64_t now_s,
			struct import_counts *n, char *why, size_t cap)
{
	struct store_cert *certs = NULL;
	size_t ncerts = 0;
	int rc = store_cert_list(from, dev, now_s, &certs, &ncerts, why, cap);

	for (size_t j = 0; rc == 0 && j < ncerts; j++) {
		rc = store_cert_import(to, dev, &certs[j], why, cap);
		if (rc == 1) {
			n->certificates++;
			n->revocations += certs[j].revoked_s != 0;
			rc = 0;
		}
	}
	free(certs);
	return rc;
}

/* A device's release record (what was last published to it), unless the same. */
static int import_release(struct store *from, struct store *to, const char *dev, int64_t now_s,
			  struct import_counts *n, char *why, size_t cap)
{
	struct store_release r, have;
	int rc;

	(void)now_s;
	rc = store_release_get(from, dev, &r, why, cap);
	if (rc == STORE_NOTFOUND)
		return 0;
	if (rc == 0)
		rc = store_release_get(to, dev, &have, why, cap);
	if (rc == 0 && have.version == r.version && strcmp(have.sha256, r.sha256) == 0 &&
	    have.ts_ms == r.ts_ms && have.withdrawn == r.withdrawn)
		return 0;
	if (rc == 0 || rc == STORE_NOTFOUND) {
		rc = store_release_put(to, dev, &r, why, cap);
		n->releases += rc == 0;
	}
	return rc;
}

/* store_merge_fn: the files' document replaces the database's unless it is the same. */
static int replace_doc(const char *old_json, char **next, void *ctx, char *why, size_t cap)
{
	const char *doc = ctx;

	if (same_text(old_json, doc))
		return UNCHANGED;
	*next = strdup(doc);
	if (*next == NULL) {
		gd_whyf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	return 0;
}

/* A device's report document. */
static int import_report(struct store *from, struct store *to, const char *dev, int64_t now_s,
			 struct import_counts *n, char *why, size_t cap)
{
	char *doc = NULL;
	int rc;

	(void)now_s;
	rc = store_report_get(from, dev, &doc, why, cap);
	if (rc == STORE_NOTFOUND)
		return 0;
	if (rc == 0)
		rc = store_report_update(to, dev, replace_doc, doc, why, cap);
	if (rc == 0)
		n->reports++;
	else if (rc == UNCHANGED)
		rc = 0;
	free(doc);
	return rc;
}

int service_migrate_import(const char *dir, struct store *to, FILE *out, char *why, size_t cap)
{
	static const struct store_config files = { .backend = STORE_FILES };
	struct import_counts n = { 0 };
	struct store *from = NULL;
	int rc;

	rc = store_open(dir, &files, false, &from, why, cap);
	if (rc != 0)
		return rc;
	rc = import_each(from, to, store_device_list, import_device, 0, &n, why, cap);
	if (rc == 0)
		rc = import_references(from, to, &n, why, cap);
	if (rc == 0)
		rc = import_each(from, to, store_device_list, import_certs, gd_now_ms() / 1000, &n,
				 why, cap);
	if (rc == 0)
		rc = import_each(from, to, store_report_list, import_report, 0, &n, why, cap);
	if (rc == 0)
		rc = import_each(from, to, store_device_list, import_release, 0, &n, why, cap);
	store_close(from);
	if (rc != 0)
		return rc < 0 ? rc : GD_EIO;
	fprintf(out,
		"%s: imported from the files: %zu device%s, %zu installed record%s, %zu "
		"reference%s, %zu certificate%s, %zu revocation%s, %zu report document%s, %zu "
		"release record%s\n",
		dir, n.devices, n.devices == 1 ? "" : "s", n.installed, n.installed == 1 ? "" : "s",
		n.references, n.references == 1 ? "" : "s", n.certificates,
		n.certificates == 1 ? "" : "s", n.revocations, n.revocations == 1 ? "" : "s",
		n.reports, n.reports == 1 ? "" : "s", n.releases, n.releases == 1 ? "" : "s");
	return 0;
}
