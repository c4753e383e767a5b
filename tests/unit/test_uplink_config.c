/* test_uplink_config.c: the "uplink" object: defaults, every check, and what its errors say. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../uplink/uplink.h"

static char dir[64];
static char files[3][128]; /* ca, cert, key */

static void setup(void)
{
	static const char *const names[] = { "ca.crt", "dev.crt", "dev.key" };

	strcpy(dir, "/tmp/gd-uplink-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	for (int i = 0; i < 3; i++) {
		FILE *f;

		snprintf(files[i], sizeof(files[i]), "%s/%s", dir, names[i]);
		f = fopen(files[i], "w");
		cr_assert_not_null(f);
		fputs("-----BEGIN CERTIFICATE-----\n", f);
		fclose(f);
	}
}

static void teardown(void)
{
	for (int i = 0; i < 3; i++)
		unlink(files[i]);
	rmdir(dir);
}

TestSuite(uplink_config, .init = setup, .fini = teardown);

/*
 * Reads '{"host":"broker.example", the three files, <extra>}' (or 'raw' JSON if
 * not NULL) into 'cfg'. Returns the number of errors; their text is in 'c'.
 */
static int read_uplink(struct conf *c, struct uplink_config *cfg, const char *extra,
		       const char *raw)
{
	char text[2048];
	cJSON *obj;
	int n;

	if (raw == NULL) {
		snprintf(text, sizeof(text),
			 "{\"host\":\"broker.example\",\"ca_file\":\"%s\",\"cert_file\":\"%s\","
			 "\"key_file\":\"%s\"%s%s}",
			 files[0], files[1], files[2], extra[0] ? "," : "", extra);
		raw = text;
	}
	obj = cJSON_Parse(raw);
	cr_assert_not_null(obj, "test JSON: %s", raw);
	conf_init(c, "site.json");
	uplink_config_defaults(cfg);
	n = uplink_config_read(cfg, c, obj, "uplink");
	cJSON_Delete(obj);
	cr_assert_eq((size_t)n, c->nerrors, "the return value counts the errors");
	return n;
}

/* Exactly one error, and it contains 'expect'. */
static void expect_one(const char *extra, const char *expect)
{
	struct uplink_config cfg;
	struct conf c;

	read_uplink(&c, &cfg, extra, NULL);
	cr_expect_eq(c.nerrors, 1, "%s: %zu errors, first: %s", extra, c.nerrors,
		     c.nerrors ? c.errors[0] : "-");
	if (c.nerrors > 0)
		cr_expect_not_null(strstr(c.errors[0], expect), "%s\n  got: %s\n  want: %s", extra,
				   c.errors[0], expect);
	uplink_config_release(&cfg);
	conf_release(&c);
}

static void expect_none(const char *extra)
{
	struct uplink_config cfg;
	struct conf c;

	read_uplink(&c, &cfg, extra, NULL);
	cr_expect_eq(c.nerrors, 0, "%s: %s", extra, c.nerrors ? c.errors[0] : "-");
	uplink_config_release(&cfg);
	conf_release(&c);
}

Test(uplink_config, defaults)
{
	struct uplink_config cfg;

	uplink_config_defaults(&cfg);
	cr_assert_null(cfg.host);
	cr_assert_null(cfg.client_id);
	cr_assert_eq(cfg.port, 8883);
	cr_assert_eq(cfg.keepalive_s, 30);
	cr_assert_eq(cfg.connect_timeout_s, 10);
	cr_assert_eq(cfg.reconnect_min_ms, 250);
	cr_assert_eq(cfg.reconnect_max_ms, 30000);
	cr_assert_eq(cfg.max_inflight, 64);
	cr_assert_eq(cfg.queue_max_bytes, 4 * 1024 * 1024);
	cr_assert_eq(cfg.queue_drop, QUEUE_DROP_OLDEST);
	cr_assert_eq(cfg.max_message_bytes, 128 * 1024);
	cr_assert_eq(cfg.health_interval_ms, 10000);
	cr_assert(cfg.verify_hostname);
	uplink_config_release(&cfg);
	uplink_config_release(NULL);
}

Test(uplink_config, a_full_config_reads_every_key)
{
	struct uplink_config cfg;
	struct conf c;

	read_uplink(
		&c, &cfg,
		"\"port\":18883,\"client_id\":\"gw-7\",\"keepalive_s\":60,"
		"\"connect_timeout_s\":5,\"reconnect_min_ms\":400,\"reconnect_max_ms\":60000,"
		"\"max_inflight\":10,\"queue_max_bytes\":1048576,\"queue_drop\":\"newest\","
		"\"max_message_bytes\":2048,\"health_interval_ms\":5000,\"verify_hostname\":false",
		NULL);
	cr_assert_eq(c.nerrors, 0, "%s", c.nerrors ? c.errors[0] : "");
	cr_assert_str_eq(cfg.host, "broker.example");
	cr_assert_str_eq(cfg.ca_file, files[0]);
	cr_assert_str_eq(cfg.cert_file, files[1]);
	cr_assert_str_eq(cfg.key_file, files[2]);
	cr_assert_str_eq(cfg.client_id, "gw-7");
	cr_assert_eq(cfg.port, 18883);
	cr_assert_eq(cfg.keepalive_s, 60);
	cr_assert_eq(cfg.connect_timeout_s, 5);
	cr_assert_eq(cfg.reconnect_min_ms, 400);
	cr_assert_eq(cfg.reconnect_max_ms, 60000);
	cr_assert_eq(cfg.max_inflight, 10);
	cr_assert_eq(cfg.queue_max_bytes, 1048576);
	cr_assert_eq(cfg.queue_drop, QUEUE_DROP_NEWEST);
	cr_assert_eq(cfg.max_message_bytes, 2048);
	cr_assert_eq(cfg.health_interval_ms, 5000);
	cr_assert_not(cfg.verify_hostname);
	uplink_config_release(&cfg);
	cr_assert_null(cfg.host, "released strings are cleared");
	conf_release(&c);
}

Test(uplink_config, required_keys)
{
	struct uplink_config cfg;
	struct conf c;

	read_uplink(&c, &cfg, NULL, "{\"port\":8883}");
	cr_assert_eq(c.nerrors, 4);
	cr_expect_str_eq(c.errors[0], "site.json: uplink.host: missing (expected the broker's host "
				      "name)");
	cr_expect_not_null(strstr(c.errors[1], "site.json: uplink.ca_file: missing"));
	cr_expect_not_null(strstr(c.errors[2], "site.json: uplink.cert_file: missing"));
	cr_expect_not_null(strstr(c.errors[3], "site.json: uplink.key_file: missing"));
	uplink_config_release(&cfg);
	conf_release(&c);
}

Test(uplink_config, not_an_object)
{
	struct uplink_config cfg;
	struct conf c;

	read_uplink(&c, &cfg, NULL, "[1,2]");
	cr_assert_eq(c.nerrors, 1);
	cr_expect_str_eq(c.errors[0], "site.json: uplink: expected an object, got an array");
	uplink_config_release(&cfg);
	conf_release(&c);
}

Test(uplink_config, ranges)
{
	expect_one("\"port\":0",
		   "uplink.port: 0 is out of range (expected a TCP port from 1 to 65535)");
	expect_one("\"port\":65536", "uplink.port: 65536 is out of range");
	expect_one("\"port\":88.5", "uplink.port: 88.5 is not a whole number");
	expect_one("\"keepalive_s\":4", "uplink.keepalive_s: 4 is out of range (expected seconds "
					"from 5 to 3600)");
	expect_one("\"keepalive_s\":3601", "uplink.keepalive_s: 3601 is out of range");
	expect_one("\"connect_timeout_s\":0", "uplink.connect_timeout_s: 0 is out of range");
	expect_one("\"connect_timeout_s\":301", "uplink.connect_timeout_s: 301 is out of range");
	expect_one("\"reconnect_min_ms\":99", "uplink.reconnect_min_ms: 99 is out of range "
					      "(expected milliseconds from 100 to 600000)");
	expect_one("\"max_inflight\":0", "uplink.max_inflight: 0 is out of range (expected a "
					 "message count from 1 to 65535)");
	expect_one("\"max_inflight\":65536", "uplink.max_inflight: 65536 is out of range");
	expect_one("\"queue_max_bytes\":65535", "uplink.queue_max_bytes: 65535 is out of range "
						"(expected bytes from 65536 to 1073741824)");
	expect_one("\"queue_max_bytes\":1073741825", "uplink.queue_max_bytes: 1073741825 is out "
						     "of range");
	expect_one("\"max_message_bytes\":1023", "uplink.max_message_bytes: 1023 is out of range "
						 "(expected bytes from 1024 to 16777216)");
	expect_one("\"health_interval_ms\":999", "uplink.health_interval_ms: 999 is out of range");
	expect_one("\"health_interval_ms\":3600001",
		   "uplink.health_interval_ms: 3600001 is out of range (expected milliseconds from "
		   "1000 to 3600000)");
}

Test(uplink_config, types)
{
	expect_one("\"port\":\"8883\"", "uplink.port: expected a TCP port, got a string");
	expect_one("\"verify_hostname\":\"yes\"",
		   "uplink.verify_hostname: expected true or false, got a string");
	expect_one("\"client_id\":7", "uplink.client_id: expected an MQTT client id, got a number");
	expect_one("\"queue_drop\":1", "uplink.queue_drop: expected one of oldest, newest, got a "
				       "number");
}

Test(uplink_config, queue_drop_names_the_choices)
{
	expect_one("\"queue_drop\":\"middle\"",
		   "uplink.queue_drop: unknown drop policy \"middle\" (expected one of oldest, "
		   "newest)");
	cr_assert_str_eq(queue_drop_names[QUEUE_DROP_OLDEST], "oldest");
	cr_assert_str_eq(queue_drop_names[QUEUE_DROP_NEWEST], "newest");
	cr_assert_null(queue_drop_names[2]);
}

Test(uplink_config, unknown_and_duplicate_keys)
{
	expect_one("\"colour\":\"blue\"",
		   "uplink.colour: unknown key (expected one of host, port,");
	expect_one("\"port\":1883,\"port\":8883", "uplink.port: duplicate key");
}

Test(uplink_config, empty_strings)
{
	expect_one("\"client_id\":\"\"", "uplink.client_id: empty");

	struct uplink_config cfg;
	struct conf c;
	char raw[512];

	snprintf(raw, sizeof(raw),
		 "{\"host\":\"\",\"ca_file\":\"%s\",\"cert_file\":\"%s\",\"key_file\":\"%s\"}",
		 files[0], files[1], files[2]);
	read_uplink(&c, &cfg, NULL, raw);
	cr_assert_eq(c.nerrors, 1);
	cr_expect_str_eq(c.errors[0], "site.json: uplink.host: empty (expected the broker's host "
				      "name)");
	uplink_config_release(&cfg);
	conf_release(&c);
}

Test(uplink_config, reconnect_max_below_min)
{
	expect_one("\"reconnect_min_ms\":2000,\"reconnect_max_ms\":1000",
		   "site.json: uplink.reconnect_max_ms: 1000 is less than reconnect_min_ms 2000");
	expect_one("\"reconnect_min_ms\":60000",
		   "uplink.reconnect_max_ms: 30000 (the default) is less than reconnect_min_ms "
		   "60000");
	expect_none("\"reconnect_min_ms\":1000,\"reconnect_max_ms\":1000");
}

Test(uplink_config, max_message_above_the_queue)
{
	expect_one("\"queue_max_bytes\":65536,\"max_message_bytes\":65537",
		   "site.json: uplink.max_message_bytes: 65537 is more than queue_max_bytes 65536 "
		   "(expected a message to fit in the queue)");
	expect_one("\"queue_max_bytes\":65536",
		   "uplink.max_message_bytes: 131072 (the default) is more than queue_max_bytes "
		   "65536");
}

Test(uplink_config, files_must_be_readable)
{
	struct uplink_config cfg;
	struct conf c;
	char raw[512];

	snprintf(raw, sizeof(raw),
		 "{\"host\":\"h\",\"ca_file\":\"/nonexistent/ca.pem\",\"cert_file\":\"%s\","
		 "\"key_file\":\"%s\"}",
		 dir, files[2]);
	read_uplink(&c, &cfg, NULL, raw);
	cr_assert_eq(c.nerrors, 2);
	cr_expect_str_eq(c.errors[0], "site.json: uplink.ca_file: cannot read "
				      "\"/nonexistent/ca.pem\": No such file or directory");
	cr_expect_not_null(strstr(c.errors[1], "site.json: uplink.cert_file: cannot read \""));
	cr_expect_not_null(strstr(c.errors[1], "\": not a regular file"), "%s", c.errors[1]);
	uplink_config_release(&cfg);
	conf_release(&c);
}

Test(uplink_config, unreadable_key_file)
{
	if (geteuid() == 0) {
		teardown(); /* cr_skip_test does not run the suite's .fini */
		cr_skip_test("running as root: permissions do not stop root from reading");
	}
	cr_assert_eq(chmod(files[2], 0), 0);
	expect_one("", "uplink.key_file: cannot read");
	expect_one("", "Permission denied");
}

Test(uplink_config, every_error_at_once)
{
	struct uplink_config cfg;
	struct conf c;

	read_uplink(&c, &cfg, NULL,
		    "{\"host\":\"h\",\"port\":0,\"max_inflight\":0,\"queue_drop\":\"x\","
		    "\"ca_file\":\"/nonexistent/a\",\"cert_file\":\"/nonexistent/b\","
		    "\"key_file\":\"/nonexistent/c\"}");
	cr_assert_eq(c.nerrors, 6, "nothing stops at the first error");
	uplink_config_release(&cfg);
	conf_release(&c);
}
