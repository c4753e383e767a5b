/* reference.c: recorded reference measurement logs (references/<label>.json) and the
 * comparison of a device's log with them. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service.h"

static bool label_path(char *buf, size_t cap, const char *dir, const char *label)
{
	int n = snprintf(buf, cap, "%s/references/%s.json", dir, label);

	return n >= 0 && (size_t)n < cap;
}

int reference_add(const char *dir, const char *json, size_t len, const char *label,
		  char label_out[64], char *why, size_t cap)
{
	struct meas_log *log = malloc(sizeof(*log));
	char reason[256], reg_hex[65], fold_hex[65], path[4096];
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
	if (!label_path(path, sizeof(path), dir, label_out)) {
		snprintf(why, cap, "%s: path too long", dir);
		goto out;
	}
	rc = gd_create_file(path, text, strlen(text), 0644);
	if (rc != 0)
		snprintf(why, cap, "%s: %s", path,
			 errno == EEXIST ? "a reference with this label exists (remove it first)"
					 : strerror(errno));
out:
	free(text);
	free(log);
	return rc;
}

int reference_remove(const char *dir, const char *label, char *why, size_t cap)
{
	char path[4096];

	if (!conf_valid_name(label)) {
		snprintf(why, cap, "\"%s\" is not a label (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
			 label);
		return GD_EINVAL;
	}
	if (!label_path(path, sizeof(path), dir, label)) {
		snprintf(why, cap, "%s: path too long", dir);
		return GD_EINVAL;
	}
	if (unlink(path) != 0) {
		snprintf(why, cap, "%s: %s", path,
			 errno == ENOENT ? "no reference with this label" : strerror(errno));
		return GD_EIO;
	}
	return 0;
}

static int json_file(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return n > 5 && strcmp(e->d_name + n - 5, ".json") == 0 && e->d_name[0] != '.';
}

int reference_load_all(const char *dir, struct service_reference **out, size_t *n)
{
	struct service_reference *refs = NULL;
	struct dirent **names = NULL;
	char sub[4096], path[4400], reason[256];
	size_t count = 0;
	int found, rc = 0;

	*out = NULL;
	*n = 0;
	snprintf(sub, sizeof(sub), "%s/references", dir);
	found = scandir(sub, &names, json_file, alphasort);
	if (found < 0)
		return errno == ENOENT ? 0 : GD_EIO;
	if (found > 0) {
		refs = calloc((size_t)found, sizeof(*refs));
		if (refs == NULL) {
			rc = GD_ENOMEM;
			goto out;
		}
	}
	for (int i = 0; i < found; i++) {
		struct service_reference *r = &refs[count];
		size_t len = strlen(names[i]->d_name) - 5;
		char *text;

		if (len == 0 || len >= sizeof(r->label))
			continue;
		snprintf(path, sizeof(path), "%s/%s", sub, names[i]->d_name);
		text = gd_read_file(path);
		if (text == NULL) {
			log_warn(SERVICE_SUBSYS, "%s: cannot read; ignored", path);
			continue;
		}
		reason[0] = '\0';
		if (meas_log_parse(text, strlen(text), &r->log, reason, sizeof(reason)) != 0) {
			log_warnx(SERVICE_SUBSYS, "%s: %s; ignored", path, reason);
			free(text);
			continue;
		}
		free(text);
		memcpy(r->label, names[i]->d_name, len);
		r->label[len] = '\0';
		count++;
	}
	*out = refs;
	*n = count;
	refs = NULL;
out:
	for (int i = 0; i < found; i++)
		free(names[i]);
	free(names);
	free(refs);
	return rc;
}

int reference_list(const char *dir, FILE *out, char *why, size_t cap)
{
	struct service_reference *refs;
	size_t n;
	char hex[65];
	int rc = reference_load_all(dir, &refs, &n);

	if (rc != 0) {
		snprintf(why, cap, "%s/references: %s", dir, gd_strerror(rc));
		return rc;
	}
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
