/* gd-view.c: shows guardian telemetry (JSON lines from mosquitto_sub) as aligned readable lines. */

/*
 * Input: one telemetry document a line, as mosquitto_sub prints them; with
 * mosquitto_sub -v the topic before the document is skipped.
 *   {"device":"press-07","seq":12,"ts":1732200000000,"points":[
 *     {"name":"plc1/temp","value":21.5,"unit":"degC","quality":"good","ts":1732200000000},
 *     {"name":"plc1/x","value":null,"quality":"exception","code":2,"ts":1732200000000}]}
 * Output, per document:
 *   -- press-07 seq 12: 2 points
 *   18:40:00.000  plc1/temp  21.5 degC  good
 *   18:40:00.000  plc1/x     -          exception (code 2)
 * Times are UTC, from each point's "ts" (the document's when a point has none).
 * Lines that are not JSON, or JSON without a "points" array, are reported on
 * stderr and skipped.
 */

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define TIME_WIDTH  12 /* HH:MM:SS.mmm */
#define EXCERPT_MAX 60 /* characters of a bad line quoted in a report */

/* One point, formatted; the strings are owned. */
struct row {
	char time[TIME_WIDTH + 1];
	char *name;
	char *value; /* value and unit */
	char *quality;
};

/*
 * Returns a copy of s in which control characters are replaced by '?', so a
 * document cannot move the cursor or change the terminal; NULL when out of
 * memory.
 */
static char *printable_dup(const char *s)
{
	char *copy = strdup(s);

	if (copy == NULL)
		return NULL;
	for (unsigned char *p = (unsigned char *)copy; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	return copy;
}

/* printf into a new string, or NULL when out of memory. */
static char *format_dup(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format_dup(const char *fmt, ...)
{
	va_list ap;
	char *out;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&out, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : out;
}

/* Shortest of %.15g and %.17g that reads back as the same double. */
static void format_number(double d, char *out, size_t size)
{
	if (!isfinite(d)) {
		snprintf(out, size, "%s", isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
		return;
	}
	snprintf(out, size, "%.15g", d);
	if (strtod(out, NULL) != d)
		snprintf(out, size, "%.17g", d);
}

/* Writes ms since the epoch as HH:MM:SS.mmm (UTC) into out, or "--:--:--.---". */
static void format_time(const cJSON *ts, char out[TIME_WIDTH + 1])
{
	double ms;
	time_t seconds;
	int millis;
	struct tm tm;

	if (!cJSON_IsNumber(ts) || !isfinite(ts->valuedouble) || fabs(ts->valuedouble) > 1e17) {
		strcpy(out, "--:--:--.---");
		return;
	}
	ms = floor(ts->valuedouble);
	seconds = (time_t)floor(ms / 1000);
	millis = (int)(ms - (double)seconds * 1000);
	if (gmtime_r(&seconds, &tm) == NULL) {
		strcpy(out, "--:--:--.---");
		return;
	}
	snprintf(out, TIME_WIDTH + 1, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
		 millis);
}

/* The value as text: null is "-", strings are quoted, numbers as short as exact. */
static char *format_value(const cJSON *value, const cJSON *unit)
{
	char number[40];
	char *text;
	char *joined;

	if (value == NULL || cJSON_IsNull(value)) {
		text = strdup("-");
	} else if (cJSON_IsBool(value)) {
		text = strdup(cJSON_IsTrue(value) ? "true" : "false");
	} else if (cJSON_IsNumber(value)) {
		format_number(value->valuedouble, number, sizeof(number));
		text = strdup(number);
	} else if (cJSON_IsString(value)) {
		char *safe = printable_dup(value->valuestring);

		text = safe == NULL ? NULL : format_dup("\"%s\"", safe);
		free(safe);
	} else {
		char *json = cJSON_PrintUnformatted(value);

		text = json == NULL ? NULL : printable_dup(json);
		cJSON_free(json);
	}
	if (text == NULL || !cJSON_IsString(unit) || unit->valuestring[0] == '\0')
		return text;
	{
		char *safe_unit = printable_dup(unit->valuestring);

		joined = safe_unit == NULL ? NULL : format_dup("%s %s", text, safe_unit);
		free(safe_unit);
	}
	free(text);
	return joined;
}

/* The quality, with the exception code when there is one, and the policy's range mark. */
static char *format_quality(const cJSON *point)
{
	const cJSON *quality = cJSON_GetObjectItemCaseSensitive(point, "quality");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(point, "code");
	const cJSON *range = cJSON_GetObjectItemCaseSensitive(point, "range");
	char *text = printable_dup(cJSON_IsString(quality) ? quality->valuestring : "?");
	char number[40];
	char *joined;

	if (text != NULL && cJSON_IsString(range)) {
		char *safe = printable_dup(range->valuestring);

		joined = safe == NULL
				 ? NULL
				 : format_dup("%s, %s", text,
					      strcmp(safe, "outside") == 0 ? "outside its range"
									   : safe);
		free(safe);
		free(text);
		text = joined;
	}
	if (text == NULL || code == NULL || cJSON_IsNull(code))
		return text;
	if (cJSON_IsNumber(code)) {
		format_number(code->valuedouble, number, sizeof(number));
		joined = format_dup("%s (code %s)", text, number);
	} else if (cJSON_IsString(code)) {
		char *safe = printable_dup(code->valuestring);

		joined = safe == NULL ? NULL : format_dup("%s (code %s)", text, safe);
		free(safe);
	} else {
		joined = strdup(text);
	}
	free(text);
	return joined;
}

static void rows_free(struct row *rows, int count)
{
	for (int i = 0; i < count; i++) {
		free(rows[i].name);
		free(rows[i].value);
		free(rows[i].quality);
	}
	free(rows);
}

/* Prints the header and the aligned points of one document. Returns 0, or -1 when out of memory. */
static int show_document(const cJSON *doc, const cJSON *points)
{
	const cJSON *device = cJSON_GetObjectItemCaseSensitive(doc, "device");
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
	const cJSON *doc_ts = cJSON_GetObjectItemCaseSensitive(doc, "ts");
	int count = cJSON_GetArraySize(points);
	struct row *rows = calloc((size_t)(count > 0 ? count : 1), sizeof(*rows));
	char *device_text = printable_dup(cJSON_IsString(device) ? device->valuestring : "?");
	char seq_text[40] = "?";
	int name_width = 0, value_width = 0;
	int filled = 0;
	int rc = -1;
	const cJSON *point;

	if (rows == NULL || device_text == NULL)
		goto out;
	if (cJSON_IsNumber(seq))
		format_number(seq->valuedouble, seq_text, sizeof(seq_text));
	cJSON_ArrayForEach (point, points) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(point, "name");
		const cJSON *ts = cJSON_GetObjectItemCaseSensitive(point, "ts");
		struct row *r = &rows[filled++];
		int w;

		format_time(ts != NULL ? ts : doc_ts, r->time);
		r->name = printable_dup(cJSON_IsString(name) ? name->valuestring : "?");
		r->value = format_value(cJSON_GetObjectItemCaseSensitive(point, "value"),
					cJSON_GetObjectItemCaseSensitive(point, "unit"));
		r->quality = format_quality(point);
		if (r->name == NULL || r->value == NULL || r->quality == NULL)
			goto out;
		w = (int)strlen(r->name);
		if (w > name_width)
			name_width = w;
		w = (int)strlen(r->value);
		if (w > value_width)
			value_width = w;
	}
	printf("-- %s seq %s: %d point%s\n", device_text, seq_text, count, count == 1 ? "" : "s");
	for (int i = 0; i < filled; i++)
		printf("%s  %-*s  %-*s  %s\n", rows[i].time, name_width, rows[i].name, value_width,
		       rows[i].value, rows[i].quality);
	rc = 0;
out:
	fflush(stdout);
	rows_free(rows, filled);
	free(device_text);
	return rc;
}

/* Quotes the start of a bad line on stderr. */
static void report(long line_number, const char *line, const char *why)
{
	int len = (int)strlen(line);
	char *excerpt = strndup(line, EXCERPT_MAX);

	if (excerpt != NULL)
		for (unsigned char *p = (unsigned char *)excerpt; *p != '\0'; p++)
			if (*p < 0x20 || *p == 0x7f)
				*p = '?';
	fprintf(stderr, "gd-view: line %ld: %s: \"%s%s\"\n", line_number, why,
		excerpt != NULL ? excerpt : "", len > EXCERPT_MAX ? "..." : "");
	free(excerpt);
}

int main(int argc, char **argv)
{
	char *line = NULL;
	size_t capacity = 0;
	ssize_t len;
	long line_number = 0;
	int status = 0;

	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: mosquitto_sub -t 'guardian/+/telemetry' ... | gd-view\n"
				"Shows each telemetry document as one line a point: time (UTC), "
				"name, value and unit, quality.\n");
		return 2;
	}
	while ((len = getline(&line, &capacity, stdin)) != -1) {
		const char *text = line;
		cJSON *doc;
		const cJSON *points;

		line_number++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		while (*text == ' ' || *text == '\t')
			text++;
		if (*text == '\0')
			continue;
		/* mosquitto_sub -v prints "topic payload": topics have no spaces. */
		if (*text != '{') {
			const char *space = strchr(text, ' ');

			if (space != NULL && space[1] == '{')
				text = space + 1;
		}
		doc = cJSON_ParseWithOpts(text, NULL, 1);
		if (doc == NULL) {
			report(line_number, line, "not JSON");
			continue;
		}
		points = cJSON_GetObjectItemCaseSensitive(doc, "points");
		if (!cJSON_IsObject(doc) || !cJSON_IsArray(points)) {
			report(line_number, line, "JSON but not telemetry (no \"points\" array)");
		} else if (show_document(doc, points) != 0) {
			fprintf(stderr, "gd-view: line %ld: out of memory\n", line_number);
			status = 1;
		}
		cJSON_Delete(doc);
	}
	free(line);
	if (ferror(stdin)) {
		perror("gd-view: reading stdin");
		status = 1;
	}
	return status;
}
