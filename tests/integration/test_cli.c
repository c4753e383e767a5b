/* test_cli.c: the guardian command as a user runs it: check says "configuration OK" or lists every
 * error. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

static void setup(void)
{
	cr_assert_eq(h_pki("press-07"), 0);
	h_write(h_path("policy.json"),
		"{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":[{\"points\":"
		"\"plc1/*\",\"action\":\"allow\"}]}");
}

TestSuite(cli, .init = setup, .fini = it_teardown, .timeout = 30);

static void write_site(const char *points)
{
	char text[4096];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\","
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\"},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"points\":%s}]}",
		 points);
	h_write(h_path("site.json"), text);
}

static int run_check(void)
{
	return h_sh("'%s/guardian' check -c '%s' >'%s' 2>&1", h_build(), h_path("site.json"),
		    h_path("check.out"));
}

Test(cli, check_accepts_a_valid_config)
{
	write_site("[{\"name\":\"temp\",\"address\":0,\"type\":\"f32\"}]");
	cr_assert_eq(run_check(), 0, "%s", h_read(h_path("check.out")));
	cr_expect_eq(h_count(h_path("check.out"), "configuration OK"), 1, "%s",
		     h_read(h_path("check.out")));
}

Test(cli, check_lists_every_error_and_exits_1)
{
	write_site("[{\"name\":\"temp\",\"address\":0,\"type\":\"flaot\"},"
		   "{\"name\":\"p\",\"addres\":1}]");
	cr_assert_eq(run_check(), 1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(
		h_count(h_path("check.out"), "adapters[0].points[0].type: unknown type \"flaot\""),
		1, "%s", h_read(h_path("check.out")));
	cr_expect_eq(h_count(h_path("check.out"), "adapters[0].points[1].addres: unknown key"), 1);
	cr_expect_eq(h_count(h_path("check.out"), "adapters[0].points[1].address: missing"), 1);
	cr_expect_eq(h_count(h_path("check.out"), "configuration OK"), 0);
}

Test(cli, run_with_a_bad_config_starts_nothing)
{
	write_site("[]");
	cr_assert_eq(h_sh("'%s/guardian' run -c '%s' >'%s' 2>&1", h_build(), h_path("site.json"),
			  h_path("run.out")),
		     1);
	cr_expect_eq(h_count(h_path("run.out"), "nothing started"), 1, "%s",
		     h_read(h_path("run.out")));
	cr_expect_eq(h_count(h_path("run.out"), "starting"), 0);
}

Test(cli, unknown_command_is_a_usage_error)
{
	cr_assert_eq(h_sh("'%s/guardian' frobnicate -c x >/dev/null 2>&1", h_build()), 2);
	cr_assert_eq(h_sh("'%s/guardian' check >/dev/null 2>&1", h_build()), 2);
}
