/* report.c: the failure reports devices send (guardian/report.h): per device, the latest report
 * of each kind and how many reports and events came, in DIR/reports/<device>.json; and
 * `guardian-service reports`, which shows them. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "service.h"
#include "report.h"

#define REPORT_LOCK  "reports.lock" /* in DIR/reports/: every instance's updates, one at a time */
#define KIND_MAX     31
#define KEY_MAX	     255
#define TEXT_MAX     2048
#define SUPPRESSED   "suppressed"
#define TOPIC_PREFIX "guardian/"
#define TOPIC_SUFFIX "/report"

/*
 * DIR/reports/<device>.json:
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

static int lock_take(const char *rdir)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", rdir, REPORT_LOCK);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int service_report_store(const char *dir, const char *dev, const char *payload, size_t len,
			 int64_t now_ms, char *why, size_t cap)
{
	char rdir[4096], path[4200], reason[256];
	cJSON *rep, *dev_doc = NULL;
	char *old = NULL, *text = NULL;
	const char *what;
	int fd = -1, rc = GD_EIO;

	rep = report_parse(dev, payload, len, reason, sizeof(reason));
	if (rep == NULL) {
		gd_whyf(why, cap, "%s: report refused: %s", dev, reason);
		return GD_EINVAL;
	}
	snprintf(rdir, sizeof(rdir), "%s/" SERVICE_REPORTS_DIR, dir);
	snprintf(path, sizeof(path), "%s/%s.json", rdir, dev);
	if ((mkdir(rdir, 0700) != 0 && errno != EEXIST) || (fd = lock_take(rdir)) < 0) {
		gd_whyf(why, cap, "%s: cannot open or lock %s: %s", dev, rdir, strerror(errno));
		goto out;
	}
	old = gd_read_file(path);
	if (old == NULL && errno != ENOENT) {
		gd_whyf(why, cap, "%s: cannot read %s: %s", dev, path, strerror(errno));
		goto out;
	}
	dev_doc = old != NULL ? cJSON_Parse(old) : NULL;
	if (old != NULL && !cJSON_IsObject(dev_doc)) {
		/* Kept aside, not lost: a damaged file must not stop the reports that follow. */
		char aside[4300];

		snprintf(aside, sizeof(aside), "%s.damaged", path);
		rename(path, aside);
		log_warnx(SERVICE_SUBSYS, "%s did not read as JSON: moved to %s, counting anew",
			  path, aside);
		cJSON_Delete(dev_doc);
		dev_doc = NULL;
	}
	if (dev_doc == NULL) {
		dev_doc = cJSON_CreateObject();
		if (dev_doc == NULL || cJSON_AddStringToObject(dev_doc, "device", dev) == NULL) {
			gd_whyf(why, cap, "out of memory");
			rc = GD_ENOMEM;
			goto out;
		}
	}
	what = count_into(dev_doc, rep, now_ms, reason, sizeof(reason));
	if (what == NULL) {
		gd_whyf(why, cap, "%s: report refused: %s", dev, reason);
		rc = GD_EINVAL;
		goto out;
	}
	text = cJSON_PrintUnformatted(dev_doc);
	if (text == NULL) {
		gd_whyf(why, cap, "out of memory");
		rc = GD_ENOMEM;
		goto out;
	}
	if (gd_write_file_atomic(path, text, strlen(text), 0600) != 0) {
		gd_whyf(why, cap, "%s: cannot write %s: %s", dev, path, strerror(errno));
		goto out;
	}
	log_info(SERVICE_SUBSYS, "%s: report %.0f (%s): %s %s, count %.0f: %s", dev,
		 num(rep, "seq"), what, get_string(rep, "kind", KIND_MAX),
		 get_string(rep, "key", KEY_MAX), num(rep, "count"),
		 get_string(rep, "text", TEXT_MAX));
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(text);
	free(old);
	cJSON_Delete(dev_doc);
	cJSON_Delete(rep);
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

/* One device's stored document, or NULL with errno (ENOENT: nothing from it yet). */
static cJSON *device_load(const char *rdir, const char *dev)
{
	char path[4200], *text;
	cJSON *d;

	snprintf(path, sizeof(path), "%s/%s.json", rdir, dev);
	text = gd_read_file(path);
	if (text == NULL)
		return NULL;
	d = cJSON_Parse(text);
	free(text);
	if (!cJSON_IsObject(d)) {
		cJSON_Delete(d);
		errno = EPROTO;
		return NULL;
	}
	return d;
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
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
	char rdir[4096], cfg[4200];
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
	snprintf(rdir, sizeof(rdir), "%s/" SERVICE_REPORTS_DIR, dir);
	if (device != NULL) {
		names = malloc(sizeof(*names));
		if (names == NULL || (names[0] = strdup(device)) == NULL)
			goto oom;
		n = 1;
	} else {
		DIR *d = opendir(rdir);
		struct dirent *de;

		if (d == NULL && errno != ENOENT) {
			fprintf(stderr, "guardian-service: reports: %s: %s\n", rdir,
				strerror(errno));
			return 1;
		}
		while (d != NULL && (de = readdir(d)) != NULL) {
			size_t len = strlen(de->d_name);
			char **more;

			if (len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
				continue;
			more = realloc(names, (n + 1) * sizeof(*names));
			if (more == NULL) {
				closedir(d);
				goto oom;
			}
			names = more;
			names[n] = strndup(de->d_name, len - 5);
			if (names[n] == NULL) {
				closedir(d);
				goto oom;
			}
			n++;
		}
		if (d != NULL)
			closedir(d);
		if (n > 1)
			qsort(names, n, sizeof(*names), names_cmp);
	}
	all = cJSON_CreateObject();
	list = all != NULL ? cJSON_AddArrayToObject(all, "devices") : NULL;
	if (list == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		cJSON *d = device_load(rdir, names[i]);

		if (d == NULL) {
			if (errno == ENOENT && device != NULL) {
				if (!json)
					printf("%s: no reports\n", names[i]);
				continue;
			}
			fprintf(stderr, "guardian-service: reports: %s/%s.json: %s\n", rdir,
				names[i], errno == EPROTO ? "not a JSON object" : strerror(errno));
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
		printf("no reports in %s\n", rdir);
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
	return status;
}
