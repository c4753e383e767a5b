/* test_examples.c: every example site config in configs/examples passes guardian check as shipped,
 * and a broken copy of one fails with the key named. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../harness/harness.h"
#include "site.h"

TestSuite(examples, .fini = it_teardown, .timeout = 60);

/* guardian check of 'config' with its state directory in the work directory; the output in
 * check.out. Returns the exit status. */
static int check(const char *config, const char *state)
{
	return h_sh("'%s/guardian' check -c '%s' -s '%s' >'%s' 2>&1", h_build(), config, state,
		    h_path("check.out"));
}

/* Lines of check.out that start with 'prefix'. */
static size_t lines_starting(const char *prefix)
{
	char *text = h_read(h_path("check.out"));
	size_t n = 0, len = strlen(prefix);

	for (const char *line = text; line != NULL && *line != '\0';) {
		if (strncmp(line, prefix, len) == 0)
			n++;
		line = strchr(line, '\n');
		if (line != NULL)
			line++;
	}
	free(text);
	return n;
}

/* The JSON files of configs/examples, sorted: the configs and their policies. */
static void examples(glob_t *g)
{
	char pattern[512];

	snprintf(pattern, sizeof(pattern), "%s/configs/examples/*.json", h_src());
	cr_assert_eq(glob(pattern, 0, NULL, g), 0, "no examples in %s", pattern);
}

static bool is_policy(const char *path)
{
	return strstr(path, ".policy.json") != NULL;
}

/* Gives the attested example's state directory an identity: provision, then an identity
 * certificate from a fresh guardian-service. */
static void provision(const char *config, const char *state)
{
	cr_assert_eq(h_sh("'%s/guardian' provision -c '%s' -s '%s' >'%s' 2>&1", h_build(), config,
			  state, h_path("provision.out")),
		     0, "provision: %s", h_read(h_path("provision.out")));
	cr_assert_eq(h_sh("'%s/guardian-service' init -d '%s' >'%s' 2>&1 && "
			  "'%s/guardian-service' enroll -d '%s' '%s/identity.csr' -o "
			  "'%s/identity.crt' >>'%s' 2>&1",
			  h_build(), h_path("service"), h_path("enroll.out"), h_build(),
			  h_path("service"), state, state, h_path("enroll.out")),
		     0, "enroll: %s", h_read(h_path("enroll.out")));
}

Test(examples, every_example_passes_check_as_shipped)
{
	glob_t g;
	size_t attested = 0, checked = 0;

	examples(&g);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *config = g.gl_pathv[i];
		char state[512];
		char *text;
		bool attest;

		if (is_policy(config))
			continue;
		checked++;
		text = h_read(config);
		attest = text != NULL && strstr(text, "\"attestation\"") != NULL;

		free(text);
		snprintf(state, sizeof(state), "%s/state-%zu", h_dir(), i);
		if (attest) {
			/* Before provisioning, check refuses what run would refuse: no identity. */
			cr_expect_eq(check(config, state), 1, "%s without an identity: %s", config,
				     h_read(h_path("check.out")));
			cr_expect_geq(h_count(h_path("check.out"), "guardian provision"), 1,
				      "%s: %s", config, h_read(h_path("check.out")));
			cr_expect_geq(lines_starting("error: "), 1);
			cr_assert_eq(mkdir(state, 0700), 0);
			provision(config, state);
			attested++;
		}
		cr_expect_eq(check(config, state), 0, "guardian check %s failed:\n%s", config,
			     h_read(h_path("check.out")));
		cr_expect_eq(h_count(h_path("check.out"), "configuration OK"), 1, "%s:\n%s", config,
			     h_read(h_path("check.out")));
		cr_expect_eq(lines_starting("error: "), 0, "%s:\n%s", config,
			     h_read(h_path("check.out")));
	}
	cr_expect_geq(checked, 5, "expected at least five examples, found %zu", checked);
	cr_expect_geq(attested, 1, "no example of the attested uplink");
	globfree(&g);
}

/* The CAN example's points are what guardian dbc import makes of the DBC beside it. */
Test(examples, can_example_points_are_the_dbc_import)
{
	char *config, *imported, path[512];
	cJSON *site, *dbc;
	const cJSON *adapters, *a, *want = NULL;

	cr_assert_eq(h_sh("cd '%s/configs/examples' && '%s/guardian' dbc import --j1939 engine.dbc "
			  ">'%s' 2>'%s'",
			  h_src(), h_build(), h_path("points.json"), h_path("import.err")),
		     0, "%s", h_read(h_path("import.err")));
	imported = h_read(h_path("points.json"));
	dbc = cJSON_Parse(imported);
	cr_assert_not_null(dbc, "not JSON: %s", imported);
	snprintf(path, sizeof(path), "%s/configs/examples/engine-can.json", h_src());
	config = h_read(path);
	site = cJSON_Parse(config);
	cr_assert_not_null(site);
	adapters = cJSON_GetObjectItemCaseSensitive(site, "adapters");
	cJSON_ArrayForEach (a, adapters) {
		if (strcmp(it_json_str(a, "type"), "can") == 0)
			want = cJSON_GetObjectItemCaseSensitive(a, "points");
	}
	cr_assert_not_null(want, "no CAN adapter in engine-can.json");
	cr_expect_geq(cJSON_GetArraySize(want), 5);
	cr_expect(cJSON_Compare(want, cJSON_GetObjectItemCaseSensitive(dbc, "points"), true),
		  "engine-can.json's points differ from guardian dbc import --j1939 engine.dbc; "
		  "import again");
	cJSON_Delete(site);
	cJSON_Delete(dbc);
	free(config);
	free(imported);
}

/* A copy of the examples with 'file' changed: 'from' replaced by 'to'. Returns the copy's path. */
static const char *broken_copy(const char *file, const char *from, const char *to)
{
	static char path[512];
	char *text, *at, *out;

	cr_assert_eq(h_sh("rm -rf '%s' && cp -r '%s/configs/examples' '%s'", h_path("broken"),
			  h_src(), h_path("broken")),
		     0);
	snprintf(path, sizeof(path), "%s/%s", h_path("broken"), file);
	text = h_read(path);
	cr_assert_not_null(text);
	at = strstr(text, from);
	cr_assert_not_null(at, "%s has no %s", file, from);
	out = malloc(strlen(text) + strlen(to) + 1);
	cr_assert_not_null(out);
	sprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	h_write(path, out);
	free(out);
	free(text);
	return path;
}

Test(examples, a_broken_copy_fails_with_the_key_named)
{
	const char *config;
	char path[512];

	/* A typo in a point's key: a config error, with the file and JSON path. */
	config = broken_copy("plc-modbus-tcp.json", "\"address\": 20", "\"adress\": 20");
	cr_expect_eq(check(config, h_path("state")), 1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(h_count(h_path("check.out"), "adapters[0].points[1].adress: unknown key"), 1,
		     "%s", h_read(h_path("check.out")));
	cr_expect_geq(lines_starting("error: "), 1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(h_count(h_path("check.out"), "configuration OK"), 0);

	/* An RS-485 setting that is neither true, false nor "auto". */
	config = broken_copy("drives-modbus-rtu.json", "\"rs485\": true", "\"rs485\": \"yes\"");
	cr_expect_eq(check(config, h_path("state")), 1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(h_count(h_path("check.out"), "adapters[0].rs485: expected true"), 1, "%s",
		     h_read(h_path("check.out")));

	/* A state directory that is not there and cannot be made: the pre-flight names it. */
	snprintf(path, sizeof(path), "%s/configs/examples/scale-serial.json", h_src());
	cr_expect_eq(check(path, h_path("no/such/dir")), 1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(lines_starting("error: "), 1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(h_count(h_path("check.out"), ": state_dir: cannot create the state directory"),
		     1, "%s", h_read(h_path("check.out")));
}
