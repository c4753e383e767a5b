/* test_config.c: every kind of config mistake yields its message, with file and JSON path. */
#include <criterion/criterion.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../guardian/core.h"
#include "../../guardian/measure.h"

static char dir[64];
static char cfgfile[128];

static void write_file(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	strcpy(dir, "/tmp/gd-config-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cfgfile, sizeof(cfgfile), "%s/site.json", dir);
	write_file("ca.crt", "x");
	write_file("dev.crt", "x");
	write_file("dev.key", "x");
	write_file("policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":["
				  "{\"points\":\"*\",\"action\":\"allow\"}]}");
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(config, .init = setup, .fini = teardown);

#define UPLINK                                                                                     \
	"\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"ca.crt\",\"cert_file\":\"dev.crt\","     \
	"\"key_file\":\"dev.key\"}"

/* A valid config with 'points' (JSON array text) in a modbus-tcp adapter named plc1. */
static void write_config_points(const char *extra_top, const char *adapter_extra,
				const char *points)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\",%s%s,\n"
		 "\"adapters\":[{\"name\":\"plc0\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"points\":[{\"name\":\"a\",\"address\":0}]},\n"
		 "{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\"%s,"
		 "\"points\":%s}]}",
		 extra_top, UPLINK, adapter_extra, points);
	write_file("site.json", text);
}

/* Loads the config; returns the errors joined by newlines (caller frees), NULL if it loaded. */
static char *load_errors(size_t *nerrors)
{
	struct gd_config *cfg = NULL;
	struct conf c;
	char *all = NULL;
	size_t len = 0;
	FILE *f;

	conf_init(&c, cfgfile);
	if (gd_config_load(cfgfile, &c, &cfg) == 0) {
		cr_assert_not_null(cfg);
		cr_assert_eq(c.nerrors, 0);
		gd_config_free(cfg);
		conf_release(&c);
		*nerrors = 0;
		return NULL;
	}
	cr_assert_null(cfg, "a bad config must not half-load");
	f = open_memstream(&all, &len);
	conf_print_errors(&c, f);
	fclose(f);
	*nerrors = c.nerrors;
	conf_release(&c);
	return all;
}

/* Asserts exactly one error, containing "<file>: <path>: <message part>". */
static void expect_error(const char *path, const char *part)
{
	char want[512];
	size_t n;
	char *errs = load_errors(&n);

	cr_assert_not_null(errs, "config was accepted; expected an error at %s", path);
	snprintf(want, sizeof(want), "%s: %s: ", cfgfile, path);
	cr_expect_eq(n, 1, "expected one error, got %zu:\n%s", n, errs);
	cr_expect_not_null(strstr(errs, want), "no error at %s in:\n%s", path, errs);
	cr_expect_not_null(strstr(errs, part), "no \"%s\" in:\n%s", part, errs);
	free(errs);
}

Test(config, valid_config_loads_with_point_table)
{
	struct gd_config *cfg = NULL;
	struct conf c;

	write_config_points(
		"", "",
		"[{\"name\":\"temp\",\"address\":2,\"type\":\"f32\",\"unit\":\"degC\"},"
		"{\"name\":\"run\",\"table\":\"coil\",\"address\":0,\"type\":\"bool\"}]");
	conf_init(&c, cfgfile);
	cr_assert_eq(gd_config_load(cfgfile, &c, &cfg), 0);
	cr_assert_eq(c.nerrors, 0);
	cr_assert_eq(cfg->npoints, 3);
	cr_assert_str_eq(cfg->points[0]->name, "plc0/a");
	cr_assert_str_eq(cfg->points[1]->name, "plc1/temp");
	cr_assert_str_eq(cfg->points[1]->unit, "degC");
	cr_assert_eq(cfg->points[2]->id, 2);
	cr_assert_eq(cfg->points[1]->type, VALUE_F32);
	cr_assert_str_eq(cfg->device_id, "press-07");
	cr_assert_not_null(strstr(cfg->uplink.ca_file, dir),
			   "relative paths resolve beside the config");
	cr_assert_eq(cfg->uplink.port, 8883);
	gd_config_free(cfg);
	conf_release(&c);
}

Test(config, unknown_type_lists_expected_types)
{
	write_config_points("", "",
			    "[{\"name\":\"a\",\"address\":0},{\"name\":\"b\",\"address\":1},"
			    "{\"name\":\"c\",\"address\":2},{\"name\":\"d\",\"address\":3,\"type\":"
			    "\"flaot\"}]");
	expect_error("adapters[1].points[3].type",
		     "unknown type \"flaot\" (expected one of bool, u16, i16, u32, i32, u64, i64, "
		     "f32, f64, string)");
}

Test(config, unknown_key_is_an_error)
{
	write_config_points("", "", "[{\"name\":\"a\",\"adress\":0,\"address\":0}]");
	expect_error("adapters[1].points[0].adress", "unknown key");
}

Test(config, unknown_top_level_key)
{
	write_config_points("\"log_levle\":\"debug\",", "", "[{\"name\":\"a\",\"address\":0}]");
	expect_error("log_levle", "unknown key (expected one of device_id");
}

Test(config, missing_required_key)
{
	write_config_points("", "", "[{\"name\":\"a\"}]");
	expect_error("adapters[1].points[0].address", "missing");
}

Test(config, wrong_json_type)
{
	write_config_points("", ",\"port\":\"502\"", "[{\"name\":\"a\",\"address\":0}]");
	expect_error("adapters[1].port", "expected a TCP port, got a string");
}

Test(config, address_out_of_range)
{
	write_config_points("", "", "[{\"name\":\"a\",\"address\":70000}]");
	expect_error("adapters[1].points[0].address", "out of range");
}

Test(config, value_runs_past_last_address)
{
	write_config_points("", "", "[{\"name\":\"a\",\"address\":65534,\"type\":\"u64\"}]");
	expect_error("adapters[1].points[0].address", "runs past the last address");
}

Test(config, coil_must_be_bool)
{
	write_config_points("", "",
			    "[{\"name\":\"a\",\"table\":\"coil\",\"address\":0,\"type\":\"u16\"}]");
	expect_error("adapters[1].points[0].type", "expected type bool");
}

Test(config, unknown_table)
{
	write_config_points("", "", "[{\"name\":\"a\",\"table\":\"holdings\",\"address\":0}]");
	expect_error("adapters[1].points[0].table",
		     "unknown table \"holdings\" (expected one of coil, discrete, holding, input)");
}

Test(config, string_needs_length)
{
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0,\"type\":\"string\"}]");
	expect_error("adapters[1].points[0].length", "missing");
}

Test(config, duplicate_point_name)
{
	write_config_points("", "",
			    "[{\"name\":\"a\",\"address\":0},{\"name\":\"a\",\"address\":1}]");
	expect_error("adapters[1].points[1].name", "defined twice");
}

Test(config, invalid_point_name)
{
	write_config_points("", "", "[{\"name\":\"a/b\",\"address\":0}]");
	expect_error("adapters[1].points[0].name", "invalid point name");
}

Test(config, unknown_poll_group)
{
	write_config_points("", ",\"poll_groups\":[{\"name\":\"fast\",\"interval_ms\":100}]",
			    "[{\"name\":\"a\",\"address\":0,\"group\":\"fats\"}]");
	expect_error("adapters[1].points[0].group", "unknown poll group \"fats\"");
}

Test(config, unit_not_listed)
{
	write_config_points("", ",\"units\":[{\"id\":1}]",
			    "[{\"name\":\"a\",\"address\":0,\"unit_id\":2}]");
	expect_error("adapters[1].points[0].unit_id", "unit 2 is not listed");
}

Test(config, zero_scale)
{
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0,\"scale\":0}]");
	expect_error("adapters[1].points[0].scale", "non-zero");
}

Test(config, input_register_not_writable)
{
	write_config_points(
		"", "", "[{\"name\":\"a\",\"table\":\"input\",\"address\":0,\"writable\":true}]");
	expect_error("adapters[1].points[0].writable", "read-only");
}

Test(config, unknown_adapter_type)
{
	write_file("site.json",
		   "{\"device_id\":\"d\",\"policy\":\"policy.json\"," UPLINK
		   ",\"adapters\":[{\"name\":\"x\",\"type\":\"modbus-tpc\",\"points\":[]}]}");
	expect_error("adapters[0].type", "unknown adapter type \"modbus-tpc\" (expected one of "
					 "modbus-tcp, modbus-rtu");
}

Test(config, missing_uplink_file_names_path)
{
	write_file("site.json", "{\"device_id\":\"d\",\"policy\":\"policy.json\","
				"\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"nope.crt\","
				"\"cert_file\":\"dev.crt\",\"key_file\":\"dev.key\"},"
				"\"adapters\":[{\"name\":\"x\",\"type\":\"modbus-tcp\","
				"\"host\":\"h\",\"points\":[{\"name\":\"a\",\"address\":0}]}]}");
	expect_error("uplink.ca_file", "nope.crt");
}

Test(config, invalid_json_names_the_line)
{
	write_file("site.json", "{\n\"device_id\": \"d\",\n\"policy\": \"p\"\n\"uplink\": {}\n}");
	expect_error("line 4, column 1", "invalid JSON");
}

Test(config, every_error_is_reported_at_once)
{
	size_t n;
	char *errs;

	write_config_points("\"bogus\":1,", ",\"port\":0",
			    "[{\"name\":\"a\",\"address\":-1},{\"name\":\"b\",\"type\":\"x\","
			    "\"address\":1}]");
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_eq(n, 4, "expected 4 errors, got %zu:\n%s", n, errs);
	cr_expect_not_null(strstr(errs, "bogus"));
	cr_expect_not_null(strstr(errs, "adapters[1].port"));
	cr_expect_not_null(strstr(errs, "adapters[1].points[0].address"));
	cr_expect_not_null(strstr(errs, "adapters[1].points[1].type"));
	free(errs);
}

Test(config, policy_rule_matching_nothing_is_an_error)
{
	char policy[128];

	write_file("policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":["
				  "{\"points\":\"plc1/*\",\"action\":"
				  "\"allow\"},{\"points\":\"plc9/*\",\"action\":\"allow\"}]}");
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0}]");
	snprintf(policy, sizeof(policy), "%s/policy.json", dir);
	{
		size_t n;
		char *errs = load_errors(&n);

		cr_assert_not_null(errs);
		cr_expect_eq(n, 1, "%s", errs);
		cr_expect_not_null(strstr(errs, policy), "error names the policy file: %s", errs);
		cr_expect_not_null(strstr(errs, "uplink[1].points: \"plc9/*\" decides no point"),
				   "%s", errs);
		free(errs);
	}
}

Test(config, policy_shadowed_rule_is_an_error)
{
	size_t n;
	char *errs;

	write_file("policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":["
				  "{\"points\":\"*\",\"action\":"
				  "\"allow\"},{\"points\":\"plc1/a\",\"action\":\"deny\"}]}");
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0}]");
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "uplink[1].points"), "%s", errs);
	free(errs);
}

Test(config, policy_bad_action_and_version)
{
	size_t n;
	char *errs;

	write_file("policy.json",
		   "{\"version\":2,\"uplink\":[{\"points\":\"*\",\"action\":\"permit\"}]}");
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0}]");
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "version: 2 is out of range"), "%s", errs);
	free(errs);
	write_file("policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":["
				  "{\"points\":\"*\",\"action\":\"permit\"}]}");
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "uplink[0].action: unknown action \"permit\" (expected one "
					"of deny, allow)"),
			   "%s", errs);
	free(errs);
}

Test(config, missing_policy_file)
{
	size_t n;
	char *errs;

	write_config_points("", "", "[{\"name\":\"a\",\"address\":0}]");
	{
		char p[256];

		snprintf(p, sizeof(p), "%s/policy.json", dir);
		cr_assert_eq(unlink(p), 0);
	}
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "cannot read policy: No such file"), "%s", errs);
	free(errs);
}

Test(config, rtu_broadcast_unit_is_refused)
{
	write_file("site.json", "{\"device_id\":\"d\",\"policy\":\"policy.json\"," UPLINK
				",\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-rtu\","
				"\"device\":\"/dev/ttyUSB0\",\"points\":[{\"name\":\"a\","
				"\"address\":0,\"unit_id\":0}]}]}");
	expect_error("adapters[0].points[0].unit_id", "expected 1 to 247; 0 is broadcast");
}

Test(config, policy_must_allow_the_function_codes_the_map_reads)
{
	size_t n;
	char *errs;

	/* plc1 reads holding registers (function code 3); the list allows only coils. */
	write_file("policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],"
				  "\"function_codes\":{\"plc1\":[1]},"
				  "\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]}");
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0}]");
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "function_codes.plc1: the map of plc1 reads with function "
					"code 3, which this list does not allow"),
			   "%s", errs);
	free(errs);
}

Test(config, policy_must_list_the_uplink_broker)
{
	size_t n;
	char *errs;

	write_file("policy.json", "{\"version\":1,\"connections\":[\"cloud.example:8883\"],"
				  "\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]}");
	write_config_points("", "", "[{\"name\":\"a\",\"address\":0}]");
	errs = load_errors(&n);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "connections: the uplink's broker localhost:8883 is not "
					"listed (the policy allows only cloud.example:8883)"),
			   "%s", errs);
	free(errs);
}

/* ---- serial instruments and CAN buses ---------------------------------------------------- */

/* A valid config whose second adapter is 'adapter' (JSON object text) at adapters[1]. */
static void write_config_adapter(const char *adapter)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\",%s,\n"
		 "\"adapters\":[{\"name\":\"plc0\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"points\":[{\"name\":\"a\",\"address\":0}]},\n%s]}",
		 UPLINK, adapter);
	write_file("site.json", text);
}

#define UART_HEAD "{\"name\":\"scale\",\"type\":\"uart\",\"device\":\"/dev/ttyUSB0\","

Test(config, uart_text_and_can_adapters_load)
{
	struct gd_config *cfg = NULL;
	struct conf c;

	write_config_adapter(
		UART_HEAD "\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\\\r\\\\n\"},"
			  "\"regex\":\"^W=([0-9.]+)$\",\"points\":[{\"name\":\"w\",\"group\":1}]},"
			  "{\"name\":\"bus\",\"type\":\"can\",\"transport\":\"slcan\","
			  "\"device\":\"/dev/ttyACM0\",\"points\":[{\"name\":\"rpm\",\"j1939\":"
			  "{\"pgn\":61444},\"start_bit\":24,\"length\":16,\"scale\":0.125}]}");
	conf_init(&c, cfgfile);
	cr_assert_eq(gd_config_load(cfgfile, &c, &cfg), 0);
	cr_assert_eq(cfg->npoints, 3);
	cr_expect_str_eq(cfg->points[1]->name, "scale/w");
	cr_expect_eq(cfg->points[1]->type, VALUE_F64);
	cr_expect_str_eq(cfg->points[2]->name, "bus/rpm");
	gd_config_free(cfg);
	conf_release(&c);
}

Test(config, uart_bad_regex_names_the_pattern)
{
	write_config_adapter(UART_HEAD
			     "\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\\\n\"},"
			     "\"regex\":\"^W=([0-9.]+$\",\"points\":[{\"name\":\"w\","
			     "\"group\":1}]}");
	expect_error("adapters[1].regex", "bad regular expression \"^W=([0-9.]+$\"");
}

Test(config, uart_group_beyond_the_regex)
{
	write_config_adapter(UART_HEAD
			     "\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\\\n\"},"
			     "\"regex\":\"^W=([0-9.]+)$\",\"points\":[{\"name\":\"w\","
			     "\"group\":2}]}");
	expect_error("adapters[1].points[0].group", "no such group (the regex has 1 capture");
}

Test(config, uart_framer_mistake_speaks_config_keys)
{
	write_config_adapter(UART_HEAD
			     "\"framing\":{\"mode\":\"fixed\",\"delimiter\":\"\\\\n\","
			     "\"length\":8},\"points\":[{\"name\":\"v\",\"byte_offset\":0,"
			     "\"type\":\"u16\"}]}");
	expect_error("adapters[1].framing", "delimiter is set but mode is fixed");
}

Test(config, uart_bad_escape_in_marker)
{
	write_config_adapter(UART_HEAD "\"framing\":{\"mode\":\"start_end\",\"start\":\"\\\\xZZ\","
				       "\"end\":\"\\\\x03\"},\"points\":[{\"name\":\"v\","
				       "\"byte_offset\":0,\"type\":\"u16\"}]}");
	expect_error("adapters[1].framing.start", "escapes");
}

Test(config, uart_binary_point_needs_a_type)
{
	write_config_adapter(UART_HEAD "\"framing\":{\"mode\":\"fixed\",\"length\":8},"
				       "\"points\":[{\"name\":\"v\",\"byte_offset\":0}]}");
	expect_error("adapters[1].points[0].type", "binary points need a type");
}

#define CAN_HEAD                                                                                   \
	"{\"name\":\"bus\",\"type\":\"can\",\"transport\":\"slcan\",\"device\":\"/dev/ttyACM0\","

Test(config, can_signal_past_eight_bytes)
{
	write_config_adapter(CAN_HEAD "\"points\":[{\"name\":\"x\",\"id\":\"0x123\","
				      "\"start_bit\":56,\"length\":16}]}");
	expect_error("adapters[1].points[0].start_bit", "does not fit 8 bytes");
}

Test(config, can_bitrate_without_slcan_code)
{
	write_config_adapter(CAN_HEAD "\"bitrate\":300000,\"points\":[{\"name\":\"x\",\"id\":1,"
				      "\"start_bit\":0,\"length\":8}]}");
	expect_error("adapters[1].bitrate", "has no SLCAN code");
}

Test(config, can_mux_without_multiplexor)
{
	write_config_adapter(CAN_HEAD "\"points\":[{\"name\":\"x\",\"id\":\"0x300\",\"mux\":1,"
				      "\"start_bit\":8,\"length\":8}]}");
	expect_error("adapters[1].points", "no signal with \"multiplexor\": true");
}

Test(config, can_standard_id_too_large)
{
	write_config_adapter(CAN_HEAD "\"points\":[{\"name\":\"x\",\"id\":\"0x800\","
				      "\"extended\":false,\"start_bit\":0,\"length\":8}]}");
	expect_error("adapters[1].points[0].id", "does not fit 11 bits");
}

Test(config, can_id_and_j1939_both)
{
	write_config_adapter(CAN_HEAD "\"points\":[{\"name\":\"x\",\"id\":1,\"j1939\":{\"pgn\":1},"
				      "\"start_bit\":0,\"length\":8}]}");
	expect_error("adapters[1].points[0]", "both given");
}

Test(config, socketcan_needs_an_interface)
{
	write_config_adapter(
		"{\"name\":\"bus\",\"type\":\"can\",\"transport\":\"socketcan\","
		"\"points\":[{\"name\":\"x\",\"id\":1,\"start_bit\":0,\"length\":8}]}");
	expect_error("adapters[1].interface", "missing");
}

/* The digests are of the bytes loaded: files changed on disk later do not change the log. */
Test(config, measured_as_loaded_not_as_on_disk)
{
	struct gd_config *cfg = NULL;
	struct meas_log log;
	uint8_t site_sha[32], policy_sha[32];
	char path[256], why[512] = "";
	struct conf c;

	write_config_points("", "", "[{\"name\":\"b\",\"address\":1}]");
	snprintf(path, sizeof(path), "%s/policy.json", dir);
	cr_assert_eq(meas_hash_file(cfgfile, site_sha), 0);
	cr_assert_eq(meas_hash_file(path, policy_sha), 0);
	conf_init(&c, cfgfile);
	cr_assert_eq(gd_config_load(cfgfile, &c, &cfg), 0);
	conf_release(&c);
	write_file("site.json", "{}");
	write_file("policy.json", "{\"version\":1}");
	write_file("ca.crt", "another CA");
	cr_assert_eq(measure_exe(cfg, "/proc/self/exe", why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(measure_config(cfg, NULL, &log, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(log.n, 4, "%zu items", log.n);
	cr_expect_str_eq(log.items[1].type, "config");
	cr_expect_arr_eq(log.items[1].sha256, site_sha, 32, "the config as loaded");
	cr_expect_str_eq(log.items[2].type, "policy");
	cr_expect_arr_eq(log.items[2].sha256, policy_sha, 32, "the policy as loaded");
	cr_expect_str_eq(log.items[2].name, cfg->measured_policy.name);
	cr_expect_str_eq(log.items[3].type, "file");
	cr_expect(memcmp(log.items[3].sha256, cfg->measured_files[0].sha256, 32) == 0);
	gd_config_free(cfg);
}

/* ---- RS-485 on a Modbus RTU adapter ------------------------------------------------------- */

/* A config with one modbus-rtu adapter whose object also holds 'keys' (",\"rs485\":true"). */
static void write_rtu(const char *keys)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"d\",\"policy\":\"policy.json\"," UPLINK
		 ",\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-rtu\","
		 "\"device\":\"/dev/ttyUSB0\"%s,\"points\":[{\"name\":\"a\",\"address\":0}]}]}",
		 keys);
	write_file("site.json", text);
}

Test(config, rs485_and_rts_settings_load)
{
	size_t n;

	write_rtu(",\"rs485\":true");
	cr_expect_null(load_errors(&n));
	write_rtu(",\"rs485\":\"auto\"");
	cr_expect_null(load_errors(&n));
	write_rtu(",\"rs485\":false,\"rts\":\"up\",\"rts_delay_us\":500");
	cr_expect_null(load_errors(&n));
	write_rtu(",\"rts\":\"down\"");
	cr_expect_null(load_errors(&n));
}

Test(config, rs485_must_be_true_false_or_auto)
{
	write_rtu(",\"rs485\":\"yes\"");
	expect_error("adapters[0].rs485", "expected true (the port's driver switches the RS-485 "
					  "direction), false or \"auto\"");
}

Test(config, rts_mode_is_one_of_three)
{
	write_rtu(",\"rts\":\"sideways\"");
	expect_error("adapters[0].rts", "sideways");
}

Test(config, rts_is_not_for_a_port_in_rs485_mode)
{
	write_rtu(",\"rs485\":true,\"rts\":\"up\"");
	expect_error("adapters[0].rts", "expected rs485 or rts, not both");
}

Test(config, rts_delay_needs_rts)
{
	write_rtu(",\"rts_delay_us\":100");
	expect_error("adapters[0].rts_delay_us", "only with \"rts\": \"up\" or \"down\"");
}

Test(config, rs485_is_for_serial_lines_only)
{
	write_config_points("", ",\"rs485\":true", "[{\"name\":\"a\",\"address\":0}]");
	expect_error("adapters[1].rs485", "unknown key");
}

/* ---- sandbox.adapter_user, sandbox.uplink_user ---------------------------------------------- */

Test(config, child_users_are_looked_up_at_load)
{
	const struct passwd *nobody = getpwnam("nobody"), *daemon_pw;
	struct gd_config *cfg = NULL;
	uid_t nobody_uid;
	struct conf c;

	cr_assert_not_null(nobody, "no user nobody on this machine");
	nobody_uid = nobody->pw_uid;
	daemon_pw = getpwnam("daemon");
	cr_assert_not_null(daemon_pw, "no user daemon on this machine");
	if (geteuid() == nobody_uid || geteuid() == daemon_pw->pw_uid)
		cr_skip_test("run as nobody or daemon: one of them is guardian's own user");
	write_config_points("\"sandbox\":{\"adapter_user\":\"nobody\",\"uplink_user\":\"daemon\"},",
			    "", "[{\"name\":\"a\",\"address\":0}]");
	conf_init(&c, cfgfile);
	cr_assert_eq(gd_config_load(cfgfile, &c, &cfg), 0);
	cr_expect_str_eq(cfg->sandbox.adapter_user, "nobody");
	cr_expect_eq(cfg->sandbox.adapter_uid, nobody_uid);
	cr_expect_eq(cfg->sandbox.uplink_uid, daemon_pw->pw_uid);
	cr_expect_eq(cfg->sandbox.uplink_gid, daemon_pw->pw_gid);
	gd_config_free(cfg);
	conf_release(&c);
}

Test(config, an_unknown_child_user_is_an_error_naming_the_key)
{
	write_config_points("\"sandbox\":{\"adapter_user\":\"no-such-user-gd\"},", "",
			    "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.adapter_user", "no user \"no-such-user-gd\" on this system");
	write_config_points("\"sandbox\":{\"uplink_user\":\"no-such-user-gd\"},", "",
			    "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.uplink_user", "no user \"no-such-user-gd\" on this system");
	write_config_points("\"sandbox\":{\"uplink_user\":\"\"},", "",
			    "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.uplink_user", "an empty user name");
}

Test(config, one_user_for_both_children_is_refused_with_the_reason)
{
	write_config_points("\"sandbox\":{\"adapter_user\":\"daemon\",\"uplink_user\":\"daemon\"},",
			    "", "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.uplink_user",
		     "is also sandbox.adapter_user: the point is separate uids");
}

Test(config, guardians_own_user_for_a_child_is_refused_with_the_reason)
{
	const struct passwd *me = getpwuid(geteuid());
	char text[256];

	cr_assert_not_null(me);
	snprintf(text, sizeof(text), "\"sandbox\":{\"adapter_user\":\"%s\"},", me->pw_name);
	write_config_points(text, "", "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.adapter_user", "is guardian's own user: the point is a uid");
	/* guardian's own: sandbox.user when it names one. */
	write_config_points("\"sandbox\":{\"user\":\"nobody\",\"uplink_user\":\"nobody\"},", "",
			    "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.uplink_user", "\"nobody\" (uid ");
	expect_error("sandbox.uplink_user", "is guardian's own user");
}

Test(config, child_users_only_with_compartments)
{
	write_config_points("\"sandbox\":{\"compartments\":false,\"adapter_user\":\"nobody\"},", "",
			    "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.adapter_user", "only with compartments");
	write_config_points("\"sandbox\":{\"enabled\":false,\"uplink_user\":\"daemon\"},", "",
			    "[{\"name\":\"a\",\"address\":0}]");
	expect_error("sandbox.uplink_user", "only with compartments");
}

/* A child's load: the bytes given, paths beside the named file, no file read, no user looked
 * up, the digest of the bytes. */
Test(config, a_child_loads_the_bytes_it_is_handed)
{
	struct gd_config *parent = NULL, *child = NULL;
	char *text, policy[256];
	struct conf c;

	write_config_points("\"sandbox\":{\"adapter_user\":\"nobody\",\"uplink_user\":\"daemon\"},",
			    "", "[{\"name\":\"a\",\"address\":0}]");
	conf_init(&c, cfgfile);
	if (gd_config_load(cfgfile, &c, &parent) != 0)
		cr_skip_test("the parent's load failed (run as nobody or daemon?)");
	conf_release(&c);
	cr_assert_not_null(parent->text);
	text = strdup(parent->text);
	cr_assert_not_null(text);
	/* Gone from the disk: the child reads neither the config nor the policy. */
	write_file("site.json", "{}");
	snprintf(policy, sizeof(policy), "%s/policy.json", dir);
	cr_assert_eq(unlink(policy), 0);
	conf_init(&c, cfgfile);
	cr_assert_eq(gd_config_load_child(cfgfile, text, strlen(text), NULL, &c, &child), 0, "%s",
		     c.nerrors > 0 ? c.errors[0] : "");
	conf_release(&c);
	cr_expect_null(child->policy);
	cr_expect_eq(child->nadapters, 2);
	cr_expect_str_eq(child->uplink.ca_file, parent->uplink.ca_file);
	cr_expect_str_eq(child->uplink.spool.dir, parent->uplink.spool.dir);
	cr_expect_eq(memcmp(child->measured_config.sha256, parent->measured_config.sha256, 32), 0);
	gd_config_free(child);
	/* A NUL in the bytes: refused. */
	conf_init(&c, cfgfile);
	cr_expect_eq(gd_config_load_child(cfgfile, "{\0}", 3, NULL, &c, &child), GD_ECONFIG);
	cr_expect_null(child);
	conf_release(&c);
	gd_config_free(parent);
	free(text);
}
