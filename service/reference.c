/* reference.c: recorded reference measurement logs (kept in the store) and the comparison of a
 * device's log with them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service.h"

/* Whether the store holds a reference 'label': 1, 0, or a negative gd_err with 'why'. */
static int label_taken(struct store *st, const char *label, char *why, size_t cap)
{
	char **labels = NULL, **jsons = NULL;
	size_t n = 0;
	int rc = store_reference_all(st, &labels, &jsons, &n, why, cap);

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = strcmp(labels[i], label) == 0;
	store_strings_free(labels, n);
	store_strings_free(jsons, n);
	return rc;
}

int reference_add(struct store *st, const char *json, size_t len, const char *label,
		  char label_out[64], char *why, size_t cap)
{
	struct meas_log *log = malloc(sizeof(*log));
	char reason[256], reg_hex[65], fold_hex[65];
	uint8_t reg[32];
	char *text = NULL;
	int rc = GD_EINVAL;

	label_out[0] = '\0';
	if (log == NULL) {
		snprintf(why, cap, "out of memory");
		return GD_ENOMEM;
	}
	reason[0] = '\0';
	if (meas_log_parse(json, len, log, reason, sizeof(reason)) != 0) {
		snprintf(why, cap,
			 "not a measurement log (expected the output of guardian measure --json): "
			 "%s",
			 reason);
		goto out;
	}
	if (log->n == 0) {
		snprintf(why, cap, "the log has no measurements");
		goto out;
	}
	meas_fold(log, reg);
	gd_hex_encode(log->reg, sizeof(log->reg), reg_hex);
	if (memcmp(reg, log->reg, sizeof(reg)) != 0) {
		gd_hex_encode(reg, sizeof(reg), fold_hex);
		snprintf(why, cap,
			 "the %zu measurements fold into %s, not into the log's register %s",
			 log->n, fold_hex, reg_hex);
		goto out;
	}
	if (label == NULL) {
		snprintf(label_out, 64, "%.12s", reg_hex);
	} else if (!conf_valid_name(label)) {
		snprintf(why, cap, "\"%s\" is not a label (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
			 label);
		goto out;
	} else {
		snprintf(label_out, 64, "%s", label);
	}
	text = meas_log_json(log);
	if (text == NULL) {
		snprintf(why, cap, "out of memory");
		rc = GD_ENOMEM;
		goto out;
	}
	rc = label_taken(st, label_out, why, cap);
	if (rc > 0) {
		snprintf(why, cap,
			 "reference %s: a reference with this label exists (remove it first)",
			 label_out);
		rc = GD_EINVAL;
	}
	if (rc == 0)
		rc = store_reference_put(st, label_out, text, why, cap);
out:
	free(text);
	free(log);
	return rc;
}

int reference_remove(struct store *st, const char *label, char *why, size_t cap)
{
	int rc;

	if (!conf_valid_name(label) || label[0] == '.') {
		snprintf(why, cap, "\"%s\" is not a label (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
			 label);
		return GD_EINVAL;
	}
	rc = store_reference_remove(st, label, why, cap);
	if (rc == STORE_NOTFOUND) {
		snprintf(why, cap, "reference %s: no reference with this label", label);
		return GD_EINVAL;
	}
	return rc;
}

/* reference_load_all with the store's sentence in 'why'. */
static int load_all(struct store *st, struct service_reference **out, size_t *n, char *why,
		    size_t cap)
{
	struct service_reference *refs = NULL;
	char **labels = NULL, **jsons = NULL, reason[256];
	size_t found = 0, count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = store_reference_all(st, &labels, &jsons, &found, why, cap);
	if (rc != 0)
		return rc;
	if (found > 0) {
		refs = calloc(found, sizeof(*refs));
		if (refs == NULL) {
			snprintf(why, cap, "out of memory");
			rc = GD_ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < found; i++) {
		struct service_reference *r = &refs[count];

		if (strlen(labels[i]) == 0 || strlen(labels[i]) >= sizeof(r->label))
			continue;
		reason[0] = '\0';
		if (meas_log_parse(jsons[i], strlen(jsons[i]), &r->log, reason, sizeof(reason)) !=
		    0) {
			log_warnx(SERVICE_SUBSYS, "reference %s: %s; ignored", labels[i], reason);
			continue;
		}
		snprintf(r->label, sizeof(r->label), "%s", labels[i]);
		count++;
	}
	*out = refs;
	*n = count;
	refs = NULL;
out:
	store_strings_free(labels, found);
	store_strings_free(jsons, found);
	free(refs);
	return rc;
}

int reference_load_all(struct store *st, struct service_reference **out, size_t *n)
{
	char why[512];
	int rc = load_all(st, out, n, why, sizeof(why));

	if (rc != 0)
		log_warnx(SERVICE_SUBSYS, "%s", why);
	return rc;
}

int reference_list(struct store *st, FILE *out, char *why, size_t cap)
{
	struct service_reference *refs;
	size_t n;
	char hex[65];
	int rc = load_all(st, &refs, &n, why, cap);

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		gd_hex_encode(refs[i].log.reg, sizeof(refs[i].log.reg), hex);
		fprintf(out, "%s %zu %s\n", refs[i].label, refs[i].log.n, hex);
	}
	free(refs);
	return 0;
}

static bool same_item(const struct measurement *a, const struct measurement *b)
{
	return strcmp(a->type, b->type) == 0 && strcmp(a->name, b->name) == 0 &&
	       memcmp(a->sha256, b->sha256, sizeof(a->sha256)) == 0;
}

/* How many positions of 'log' equal the reference's. */
static size_t agreement(const struct meas_log *ref, const struct meas_log *log)
{
	size_t n = ref->n < log->n ? ref->n : log->n, same = 0;

	for (size_t i = 0; i < n; i++)
		same += same_item(&ref->items[i], &log->items[i]);
	return same;
}

/* The sentence naming the first item where 'log' differs from 'r'. */
static void describe_difference(const struct service_reference *r, const struct meas_log *log,
				char *detail, size_t cap)
{
	const struct meas_log *ref = &r->log;
	size_t n = ref->n < log->n ? ref->n : log->n;
	char got[65], want[65];

	for (size_t i = 0; i < n; i++) {
		const struct measurement *a = &log->items[i], *b = &ref->items[i];

		if (strcmp(a->type, b->type) != 0 || strcmp(a->name, b->name) != 0) {
			snprintf(detail, cap,
				 "measurements[%zu]: %s %s is not the reference's %s %s (reference "
				 "%s)",
				 i, a->type, a->name, b->type, b->name, r->label);
			return;
		}
		if (memcmp(a->sha256, b->sha256, sizeof(a->sha256)) != 0) {
			gd_hex_encode(a->sha256, sizeof(a->sha256), got);
			gd_hex_encode(b->sha256, sizeof(b->sha256), want);
			snprintf(detail, cap,
				 "%s %s: sha256 %.8s... is not the reference's %.8s... (reference "
				 "%s)",
				 a->type, a->name, got, want, r->label);
			return;
		}
	}
	if (log->n > ref->n)
		snprintf(detail, cap,
			 "measurements[%zu]: %s %s is not in the reference (reference %s has %zu "
			 "items)",
			 n, log->items[n].type, log->items[n].name, r->label, ref->n);
	else
		snprintf(
			detail, cap,
			"measurements[%zu]: missing; the reference has %s %s (reference %s has %zu "
			"items)",
			n, ref->items[n].type, ref->items[n].name, r->label, ref->n);
}

enum service_reason reference_match(const struct service_reference *refs, size_t nrefs,
				    const struct meas_log *log, char *detail, size_t cap)
{
	size_t best = 0, best_score = 0;
	bool best_same_len = false;

	if (nrefs == 0) {
		snprintf(detail, cap,
			 "no reference measurements are recorded (guardian-service "
			 "reference add)");
		return REASON_NO_REFERENCE;
	}
	for (size_t i = 0; i < nrefs; i++) {
		size_t score = agreement(&refs[i].log, log);
		bool same_len = refs[i].log.n == log->n;

		if (same_len && score == log->n) {
			detail[0] = '\0';
			return REASON_OK;
		}
		if (i == 0 || score > best_score ||
		    (score == best_score && same_len && !best_same_len)) {
			best = i;
			best_score = score;
			best_same_len = same_len;
		}
	}
	describe_difference(&refs[best], log, detail, cap);
	return REASON_MEASUREMENT_MISMATCH;
}

void reference_effective_log(const struct meas_log *log, struct meas_log *out)
{
	size_t n = log->n < MEAS_MAX ? log->n : MEAS_MAX, first = n, last = n;

	meas_init(out);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(log->items[i].type, "policy") != 0) {
			out->items[out->n++] = log->items[i];
			continue;
		}
		last = i;
		if (first == n) {
			first = out->n;
			out->items[out->n++] = log->items[i];
		}
	}
	if (first != n)
		memcpy(out->items[first].sha256, log->items[last].sha256, 32);
	meas_fold(out, out->reg);
}
