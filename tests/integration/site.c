/* site.c: site configs and telemetry checks for the integration suites. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "site.h"

const char *it_allow_all = "{\"version\":1,\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]}";

const char *it_write_site(const char *device, int broker_port, const char *adapters,
			  const char *policy, const char *cert_prefix)
{
	char text[65536];
	static const char head[] = "{\"version\":1,";

	/* The policy must list the broker the uplink uses. */
	cr_assert(strncmp(policy, head, sizeof(head) - 1) == 0);
	snprintf(text, sizeof(text), "%s\"connections\":[\"localhost:%d\"],%s", head, broker_port,
		 policy + sizeof(head) - 1);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"%s\",\"policy\":\"policy.json\",\"state_dir\":\"%s\","
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/%sdevice.crt\",\"key_file\":\"pki/%sdevice.key\","
		 "\"reconnect_min_ms\":200,\"reconnect_max_ms\":1000,\"health_interval_ms\":1000},"
		 "\"adapters\":%s}",
		 device, h_dir(), broker_port, cert_prefix, cert_prefix, adapters);
	h_write(h_path("site.json"), text);
	return h_path("site.json");
}

void it_wait_messages(const char *file, size_t n, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	while (h_count(file, "/telemetry ") < n && h_ms() < end)
		h_sleep_ms(50);
	cr_assert_geq(h_count(file, "/telemetry "), n,
		      "only %zu of %zu telemetry messages arrived; guardian log:\n%s",
		      h_count(file, "/telemetry "), n, h_read(h_path("guardian.log")));
}

void it_expect_num(const struct h_telemetry *t, const char *name, double want)
{
	const struct h_point *p = h_telemetry_last(t, name);

	cr_assert_not_null(p, "%s never arrived", name);
	cr_expect_str_eq(p->quality, "good", "%s quality", name);
	cr_expect(fabs(strtod(p->value, NULL) - want) <= 1e-9 * fmax(1, fabs(want)),
		  "%s = %s, expected %.17g", name, p->value, want);
}

void it_expect_text(const struct h_telemetry *t, const char *name, const char *want)
{
	const struct h_point *p = h_telemetry_last(t, name);

	cr_assert_not_null(p, "%s never arrived", name);
	cr_expect_str_eq(p->value, want, "%s", name);
}

const cJSON *it_health_adapter(const char *file, const char *adapter, cJSON **root)
{
	char *text = h_read(file);
	const char *last = NULL, *at = text;
	const cJSON *list, *a;

	*root = NULL;
	while (at != NULL && (at = strstr(at, "/health {")) != NULL) {
		last = at + strlen("/health ");
		at = last;
	}
	if (last != NULL) {
		const char *end = strchr(last, '\n');

		*root = cJSON_ParseWithLength(last,
					      end != NULL ? (size_t)(end - last) : strlen(last));
	}
	free(text);
	list = cJSON_GetObjectItemCaseSensitive(*root, "adapters");
	cJSON_ArrayForEach (a, list) {
		if (strcmp(it_json_str(a, "name"), adapter) == 0)
			return a;
	}
	return NULL;
}

double it_json_num(const cJSON *obj, const char *path)
{
	char key[64];
	const char *dot;

	while ((dot = strchr(path, '.')) != NULL) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		obj = cJSON_GetObjectItemCaseSensitive(obj, key);
		path = dot + 1;
	}
	obj = cJSON_GetObjectItemCaseSensitive(obj, path);
	return cJSON_IsNumber(obj) ? obj->valuedouble : -1;
}

const char *it_json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? v->valuestring : "";
}

void it_attest_up(struct h_attest *b, int lifetime_s)
{
	cr_assert_eq(h_attest_up(b, lifetime_s), 0, "setup failed:\n%s",
		     h_read(h_path("steps.log")));
}

void it_attest_enroll(struct h_attest *b)
{
	cr_assert_eq(h_attest_enroll(b), 0, "enrollment failed:\n%s", h_read(h_path("steps.log")));
}

void it_attest_serve(struct h_attest *b)
{
	cr_assert_eq(h_attest_serve(b), 0, "guardian-service did not start:\n%s",
		     h_read(h_path("service.log")));
}

void it_attest_viewer(struct h_attest *b, const char *topics, const char *client_id)
{
	char prefix[300];

	snprintf(prefix, sizeof(prefix), "%s/viewer", b->brk);
	cr_assert_gt(h_subscribe_as(b->tport, topics, h_path("sub.out"), prefix, client_id, false),
		     0);
}

void it_attest_guardian(struct h_attest *b)
{
	b->gd = h_guardian(b->site, h_path("guardian.log"));
	cr_assert_gt(b->gd, 0);
}

void it_pki(const char *device)
{
	cr_assert_eq(h_pki(device), 0, "tools/pki.sh failed: see %s", h_path("pki.log"));
}

void it_teardown(void)
{
	cr_expect_eq(h_cleanup(), 0, "a child process reported a sanitizer error (above)");
}
