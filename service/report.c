/* report.c: the failure reports devices send (guardian/report.h): per device, the latest report
 * of each kind and how many reports and events came, in the store (DIR/reports/<device>.json
 * in the files one); and `guardian-service reports`, which shows them. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "service.h"
#include "report.h"

#define KIND_MAX     31
#define KEY_MAX	     255
#define TEXT_MAX     2048
#define SUPPRESSED   "suppressed"
#define TOPIC_PREFIX "guardian/"
#define TOPIC_SUFFIX "/report"

/*
 * The document of a device (the store's; DIR/reports/<device>.json in the files store):
 *   {"device":"oven-4","updated_ts":...,"reports":3,"events":7,"kinds":{
 *     "crash":{"reports":1,"events":1,"latest":{<the report as sent>,"received_ts":...},
 *              "keys":{"unclean_stop":{"boot":"5f0c...","seq":3,"count":1}}}}}
 * "keys" remembers, per key, the last report counted, so that a report sent again is counted
 * once: a device sends a report again after a lost acknowledgement, and, while one waits, counts
 * into it (its count grows, its boot and seq stay).
 */

bool service_report_topic(const char *topic, char dev[64])
{
	const char *p, *slash;
	size_t n;

	if (strncmp(topic, TOPIC_PREFIX, strlen(TOPIC_PREFIX)) != 0)
		return false;
	p = topic + strlen(TOPIC_PREFIX);
	slash = strchr(p, '/');
	if (slash == NULL || strcmp(slash, TOPIC_SUFFIX) != 0)
		return false;
	n = (size_t)(slash - p);
	if (n == 0 || n > 63)
		return false;
	memcpy(dev, p, n);
	dev[n] = '\0';
	/* It names a file: no hidden ones. */
	return conf_valid_name(dev) && dev[0] != '.';
}

static bool kind_valid(const char *kind)
{
	size_t n = strlen(kind);

	if (n == 0 || n > KIND_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((kind[i] >= 'a' && kind[i] <= 'z') || (kind[i] >= '0' && kind[i] <= '9') ||
		      kind[i] == '_'))
			return false;
	return true;
}

/* A non-negative integer member that a double holds exactly. */
static bool get_count(const cJSON *obj, const char *name, double min, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > 9007199254740992.0 ||
	    v->valuedouble != (double)(int64_t)v->valuedouble)
		return false;
	*out = v->valuedouble;
	return true;
}

static const char *get_string(const cJSON *obj, const char *name, size_t max)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(v) && strlen(v->valuestring) <= max ? v->valuestring : NULL;
}

/* Checks one report; 'why' says what is wrong with it. */
static cJSON *report_parse(const char *dev, const char *payload, size_t len, char *why, size_t cap)
{
	static const char *const numbers[] = { "first_ts", "last_ts", "count", "seq" };
	cJSON *doc;
	const char *s;
	double d;

	if (len > SERVICE_REPORT_BYTES) {
		gd_whyf(why, cap, "%zu bytes (at most %d)", len, SERVICE_REPORT_BYTES);
		return NULL;
	}
	doc = cJSON_ParseWithLength(payload, len);
	if (!cJSON_IsObject(doc)) {
		gd_whyf(why, cap, "not a JSON object");
		goto bad;
	}
	s = get_string(doc, "device", 63);
	if (s == NULL || strcmp(s, dev) != 0) {
		gd_whyf(why, cap, "\"device\" is %s%s%s, not the topic's %s", s ? "\"" : "",
			s ? s : "missing or not a name", s ? "\"" : "", dev);
		goto bad;
	}
	s = get_string(doc, "kind", KIND_MAX);
	if (s == NULL || !kind_valid(s)) {
		gd_whyf(why, cap, "\"kind\": expected 1 to %d of a-z, 0-9, _", KIND_MAX);
		goto bad;
	}
	if (get_string(doc, "key", KEY_MAX) == NULL || get_string(doc, "text", TEXT_MAX) == NULL ||
	    get_string(doc, "boot", 32) == NULL) {
		gd_whyf(why, cap,
			"\"key\" (at most %d bytes), \"text\" (%d) and \"boot\" (32) must be "
			"strings",
			KEY_MAX, TEXT_MAX);
		goto bad;
	}
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		if (!get_count(doc, numbers[i], i >= 2 ? 1 : 0, &d)) {
			gd_whyf(why, cap, "\"%s\": expected a whole number%s", numbers[i],
				i >= 2 ? " from 1" : "");
			goto bad;
		}
	}
	return doc;
bad:
	cJSON_Delete(doc);
	return NULL;
}

static double num(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static cJSON *child_object(cJSON *parent, const char *name)
{
	cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, name);

	if (cJSON_IsObject(o))
		return o;
	cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
	return cJSON_AddObjectToObject(parent, name);
}

static void set_number(cJSON *obj, const char *name, double v)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (cJSON_IsNumber(n))
		cJSON_SetNumberValue(n, v);
	else {
		cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
		cJSON_AddNumberToObject(obj, name, v);
	}
}

/* Counts 'rep' into the device's document 'dev_doc'. Returns what it made of it, for the log. */
static const char *count_into(cJSON *dev_doc, cJSON *rep, int64_t now_ms, char *why, size_t cap)
{
	const char *kind = get_string(rep, "kind", KIND_MAX);
	const char *key = get_string(rep, "key", KEY_MAX);
	const char *boot = get_string(rep, "boot", 32);
	double seq = num(rep, "seq"), count = num(rep, "count"), added;
	cJSON *kinds = child_object(dev_doc, "kinds"), *k, *keys, *entry, *latest;
	const char *what;
	bool same_boot;

	k = cJSON_GetObjectItemCaseSensitive(kinds, kind);
	if (k == NULL && cJSON_GetArraySize(kinds) >= SERVICE_REPORT_KINDS_MAX) {
		gd_whyf(why, cap, "already %d kinds from this device", SERVICE_REPORT_KINDS_MAX);
		return NULL;
	}
	k = child_object(kinds, kind);
	keys = child_object(k, "keys");
	entry = cJSON_GetObjectItemCaseSensitive(keys, key);
	same_boot = cJSON_IsObject(entry) && get_string(entry, "boot", 32) != NULL &&
		    strcmp(get_string(entry, "boot", 32), boot) == 0;
	if (same_boot && num(entry, "seq") == seq) {
		/* Sent again: only what it counted since is new. */
		added = count > num(entry, "count") ? count - num(entry, "count") : 0;
		if (added == 0)
			return "a repeat";
		set_number(entry, "count", count);
		what = "an update";
	} else if (same_boot && num(entry, "seq") > seq) {
		return "older than one counted";
	} else {
		if (!cJSON_IsObject(entry) &&
		    cJSON_GetArraySize(keys) >= SERVICE_REPORT_KEYS_PER_KIND) {
			/* Forget the key counted longest ago. */
			cJSON *e, *oldest = NULL;

			cJSON_ArrayForEach (e, keys)
				if (oldest == NULL || num(e, "at") < num(oldest, "at"))
					oldest = e;
			if (oldest != NULL)
				cJSON_DeleteItemFromObjectCaseSensitive(keys, oldest->string);
		}
		cJSON_DeleteItemFromObjectCaseSensitive(keys, key);
		entry = cJSON_AddObjectToObject(keys, key);
		cJSON_AddStringToObject(entry, "boot", boot);
		cJSON_AddNumberToObject(entry, "seq", seq);
		cJSON_AddNumberToObject(entry, "count", count);
		set_number(k, "reports", num(k, "reports") + 1);
		set_number(dev_doc, "reports", num(dev_doc, "reports") + 1);
		added = count;
		what = "new";
	}
	set_number(entry, "at", (double)now_ms);
	set_number(k, "events", num(k, "events") + added);
	set_number(dev_doc, "events", num(dev_doc, "events") + added);
	set_number(dev_doc, "updated_ts", (double)now_ms);
	latest = cJSON_Duplicate(rep, true);
	if (latest != NULL) {
		cJSON_AddNumberToObject(latest, "received_ts", (double)now_ms);
		cJSON_DeleteItemFromObjectCaseSensitive(k, "latest");
		cJSON_AddItemToObject(k, "latest", latest);
	}
	return what;
}

/* What service_report_store merges into the stored document (store_merge_fn's ctx). */
struct report_merge {
	const char *dev;
	cJSON *rep;
	int64_t now_ms;
	const char *what; /* what count_into made of it */
};

/* store_merge_fn: counts the report into the stored document 'old_json' (NULL: none yet). */
static int report_merge(const char *old_json, char **next, void *ctx, char *why, size_t cap)
{
	struct report_merge *m = ctx;
	cJSON *dev_doc = old_json != NULL ? cJSON_Parse(old_json) : NULL;
	char reason[256];
	int rc = 0;

	*next = NULL;
	if (old_json != NULL && !cJSON_IsObject(dev_doc)) {
		/* A damaged document must not stop the reports that follow. */
		log_warnx(SERVICE_SUBSYS,
			  "%s: the stored reports did not read as JSON: counting anew", m->dev);
		cJSON_Delete(dev_doc);
		dev_doc = NULL;
	}
	if (dev_doc == NULL) {
		dev_doc = cJSON_CreateObject();
		if (dev_doc == NULL || cJSON_AddStringToObject(dev_doc, "device", m->dev) == NULL) {
			gd_whyf(why, cap, "out of memory");
			rc = GD_ENOMEM;
			goto out;
		}
	}
	m->what = count_into(dev_doc, m->rep, m->now_ms, reason, sizeof(reason));
	if (m->what == NULL) {
		gd_whyf(why, cap, "%s: report refused: %s", m->dev, reason);
		rc = GD_EINVAL;
		goto out;
	}
	*next = cJSON_PrintUnformatted(dev_doc);
	if (*next == NULL) {
		gd_whyf(why, cap, "out of memory");
		rc = GD_ENOMEM;
	}
out:
	cJSON_Delete(dev_doc);
	return rc;
}

int service_report_store(struct store *st, const char *dev, const char *payload, size_t len,
			 int64_t now_ms, char *why, size_t cap)
{
	struct report_merge m = { .dev = dev, .now_ms = now_ms };
	char reason[256];
	int rc;

	m.rep = report_parse(dev, payload, len, reason, sizeof(reason));
	if (m.rep == NULL) {
		gd_whyf(why, cap, "%s: report refused: %s", dev, reason);
		return GD_EINVAL;
	}
	rc = store_report_update(st, dev, report_merge, &m, why, cap);
	if (rc == 0)
		log_info(SERVICE_SUBSYS, "%s: report %.0f (%s): %s %s, count %.0f: %s", dev,
			 num(m.rep, "seq"), m.what, get_string(m.rep, "kind", KIND_MAX),
			 get_string(m.rep, "key", KEY_MAX), num(m.rep, "count"),
			 get_string(m.rep, "text", TEXT_MAX));
	cJSON_Delete(m.rep);
	return rc;
}

/* --- guardian-service reports ---------------------------------------------- */

static void utc_text(double ms, char out[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || gmtime_r(&s, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "-");
}

static void print_device(const cJSON *d)
{
	const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(d, "kinds"), *k;
	const char *dev = get_string(d, "device", 63);
	char when[32];

	utc_text(num(d, "updated_ts"), when);
	printf("%s: %.0f report%s, %.0f event%s, last received %s\n", dev ? dev : "?",
	       num(d, "reports"), num(d, "reports") == 1 ? "" : "s", num(d, "events"),
	       num(d, "events") == 1 ? "" : "s", when);
	cJSON_ArrayForEach (k, kinds) {
		const cJSON *latest = cJSON_GetObjectItemCaseSensitive(k, "latest");
		const char *key = get_string(latest, "key", KEY_MAX);
		const char *text = get_string(latest, "text", TEXT_MAX);

		utc_text(num(latest, "last_ts"), when);
		printf("  %-16s %4.0f report%s %6.0f event%s  latest %s (count %.0f): %s: %s\n",
		       k->string, num(k, "reports"), num(k, "reports") == 1 ? " " : "s",
		       num(k, "events"), num(k, "events") == 1 ? " " : "s", when,
		       num(latest, "count"), key ? key : "?", text ? text : "?");
	}
}

/* One device's stored document: 0 with *out, STORE_NOTFOUND, GD_EPROTO (not a JSON object) or
 * the store's gd_err with 'why'. */
static int device_load(struct store *st, const char *dev, cJSON **out, char *why, size_t cap)
{
	char *text = NULL;
	int rc = store_report_get(st, dev, &text, why, cap);

	*out = NULL;
	if (rc != 0)
		return rc;
	*out = cJSON_Parse(text);
	free(text);
	if (!cJSON_IsObject(*out)) {
		cJSON_Delete(*out);
		*out = NULL;
		gd_whyf(why, cap, "%s: the stored reports are not a JSON object", dev);
		return GD_EPROTO;
	}
	return 0;
}

static const char reports_usage[] =
	"usage: guardian-service reports -d DIR [--device ID] [--json]\n";

int service_reports_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "device", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *device = NULL;
	char cfg[4200], why[512];
	struct store *st = NULL;
	char **names = NULL;
	size_t n = 0;
	bool json = false;
	cJSON *all = NULL, *list;
	int ch, status = 1;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'D':
			device = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(reports_usage, stdout);
			return 0;
		case ':':
			fprintf(stderr, "guardian-service: reports: %s needs an argument\n%s",
				argv[optind - 1], reports_usage);
			return 2;
		default:
			fprintf(stderr, "guardian-service: reports: %s: unknown option\n%s",
				argv[optind - 1], reports_usage);
			return 2;
		}
	}
	if (dir == NULL || optind < argc) {
		fprintf(stderr, "guardian-service: reports: %s\n%s",
			dir == NULL ? "-d DIR (the service directory) is required"
				    : "unexpected argument",
			reports_usage);
		return 2;
	}
	if (device != NULL && (!conf_valid_name(device) || device[0] == '.')) {
		fprintf(stderr,
			"guardian-service: reports: --device \"%s\" is not a device id (1 to 63 of "
			"A-Z a-z 0-9 _ . -)\n",
			device);
		return 2;
	}
	snprintf(cfg, sizeof(cfg), "%s/" SERVICE_CONFIG_FILE, dir);
	if (access(cfg, F_OK) != 0) {
		fprintf(stderr, "guardian-service: reports: %s: %s (is %s a service directory?)\n",
			cfg, strerror(errno), dir);
		return 1;
	}
	if (service_store_open(dir, false, &st, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: reports: %s\n", why);
		return 1;
	}
	if (device != NULL) {
		names = malloc(sizeof(*names));
		if (names == NULL || (names[0] = strdup(device)) == NULL)
			goto oom;
		n = 1;
	} else if (store_report_list(st, &names, &n, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: reports: %s\n", why);
		goto out;
	}
	all = cJSON_CreateObject();
	list = all != NULL ? cJSON_AddArrayToObject(all, "devices") : NULL;
	if (list == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		cJSON *d = NULL;
		int rc = device_load(st, names[i], &d, why, sizeof(why));

		if (rc == STORE_NOTFOUND) {
			if (!json && device != NULL)
				printf("%s: no reports\n", names[i]);
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, "guardian-service: reports: %s\n", why);
			continue;
		}
		if (!json)
			print_device(d);
		cJSON_AddItemToArray(list, d);
	}
	if (json) {
		char *text = cJSON_PrintUnformatted(all);

		if (text == NULL)
			goto oom;
		printf("%s\n", text);
		free(text);
	} else if (n == 0) {
		printf("no reports in %s\n", dir);
	}
	status = 0;
	goto out;
oom:
	fprintf(stderr, "guardian-service: reports: out of memory\n");
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	cJSON_Delete(all);
	store_close(st);
	return status;
}
