/* test_dbc.c: DBC files (a J1939 engine bus fixture and small inline ones) import to the exact
 * point list and report exactly what they skipped. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../adapters/canbus.h"

struct run {
	int rc;
	char *out, *err;
	size_t out_len, err_len;
	cJSON *json; /* the parsed output, or NULL */
};

static void run_file(FILE *in, const char *name, const struct dbc_options *opt, struct run *r)
{
	FILE *out = open_memstream(&r->out, &r->out_len);
	FILE *err = open_memstream(&r->err, &r->err_len);

	cr_assert(in != NULL && out != NULL && err != NULL);
	r->rc = dbc_import(in, name, out, err, opt);
	fclose(out);
	fclose(err);
	r->json = cJSON_Parse(r->out);
}

/* Imports 'text' as the file "x.dbc". */
static void run_text(const char *text, const struct dbc_options *opt, struct run *r)
{
	FILE *in = fmemopen((void *)(uintptr_t)text, strlen(text), "r");

	run_file(in, "x.dbc", opt, r);
	fclose(in);
}

static void run_free(struct run *r)
{
	cJSON_Delete(r->json);
	free(r->out);
	free(r->err);
}

/* The fixture beside this file, wherever the tests run from. */
static FILE *fixture_open(const char *name)
{
	char path[512];
	const char *slash = strrchr(__FILE__, '/');
	int dir = slash != NULL ? (int)(slash - __FILE__) : 1;

	snprintf(path, sizeof(path), "%.*s/fixtures/%s", dir, slash != NULL ? __FILE__ : ".", name);
	return fopen(path, "r");
}

static const cJSON *points(const struct run *r)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(r->json, "points");

	cr_assert(cJSON_IsArray(arr), "output is not {\"points\":[...]}: %s", r->out);
	return arr;
}

static const cJSON *point_named(const struct run *r, const char *name)
{
	const cJSON *p;

	cJSON_ArrayForEach (p, points(r)) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");

		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
			return p;
	}
	cr_assert_fail("no point named %s in %s", name, r->out);
	return NULL;
}

/* The point is exactly 'want' (same keys, same values). */
static void expect_point(const struct run *r, const char *want_json)
{
	cJSON *want = cJSON_Parse(want_json);
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(want, "name");
	const cJSON *got;
	char *got_text;

	cr_assert(want != NULL && cJSON_IsString(name), "bad expectation %s", want_json);
	got = point_named(r, name->valuestring);
	got_text = cJSON_PrintUnformatted(got);
	cr_assert(cJSON_Compare(got, want, true), "got %s\nwant %s", got_text, want_json);
	free(got_text);
	cJSON_Delete(want);
}

static const char *const engine_names[] = {
	"EEC1.EngTorqueMode",
	"EEC1.DriversDemandEngPercentTorque",
	"EEC1.ActualEngPercentTorque",
	"EEC1.EngSpeed",
	"EEC1.SrcAddrssOfCntrllngDvcFrEngCtrl",
	"EEC1.EngStarterMode",
	"EEC1.EngDemandPercentTorque",
	"ET1.EngCoolantTemp",
	"ET1.EngFuelTemp1",
	"ET1.EngOilTemp1",
	"ET1.EngTurboOilTemp",
	"ET1.EngIntercoolerTemp",
	"CCVS1.TwoSpeedAxleSwitch",
	"CCVS1.ParkingBrakeSwitch",
	"CCVS1.WheelBasedVehicleSpeed",
	"CCVS1.CruiseCtrlActive",
	"CCVS1.BrakeSwitch",
	"CCVS1.ClutchSwitch",
	"CCVS1.CruiseCtrlSetSpeed",
	"TSC1.EngOverrideCtrlMode",
	/* 5 + 58 = 63 characters: the DBC name is cut to fit. */
	"TSC1.EngineRequestedSpeedSpeedLimitControlAndOverrideTransmissi",
	"TSC1.EngRequestedTorqueTorqueLimit",
	"BRAKE_STATUS.BrakePressure",
	"BRAKE_STATUS.WheelSpeedFL",
	"BRAKE_STATUS.YawRate",
	"BRAKE_STATUS.AbsActive",
	"BRAKE_STATUS.Counter",
	"DIAG_MUX.Page",
	"DIAG_MUX.Page0_Voltage",
	"DIAG_MUX.Page0_Current",
	"DIAG_MUX.Page1_Temp",
	"SENSOR_FLOAT.Pressure",
	"SENSOR_FLOAT.Flags",
};

#define ENGINE_POINTS (sizeof(engine_names) / sizeof(engine_names[0]))

static const char engine_err[] =
	"engine.dbc:69: point name "
	"\"TSC1.EngineRequestedSpeedSpeedLimitControlAndOverrideTransmissionRate\" is not a "
	"valid point name (letters, digits, _ - .; at most 63); using "
	"\"TSC1.EngineRequestedSpeedSpeedLimitControlAndOverrideTransmissi\"\n"
	"engine.dbc:89: skipped: message VECTOR__INDEPENDENT_SIG_MSG (1 signal): its signals "
	"belong to no message\n"
	"engine.dbc: skipped 1 VERSION line (version)\n"
	"engine.dbc: skipped 1 NS_ line (new-symbol lists)\n"
	"engine.dbc: skipped 1 BS_ line (bit timing)\n"
	"engine.dbc: skipped 1 BU_ line (node lists)\n"
	"engine.dbc: skipped 2 VAL_TABLE_ lines (value tables)\n"
	"engine.dbc: skipped 1 BO_TX_BU_ line (message transmitters)\n"
	/* Five comments; the one over six lines counts once and its BO_/SG_ text is not read. */
	"engine.dbc: skipped 5 CM_ lines (comments)\n"
	"engine.dbc: skipped 4 BA_DEF_ lines (attribute definitions)\n"
	"engine.dbc: skipped 4 BA_DEF_DEF_ lines (attribute defaults)\n"
	"engine.dbc: skipped 6 BA_ lines (attributes)\n"
	"engine.dbc: skipped 3 VAL_ lines (value descriptions)\n";

Test(dbc, engine_fixture_points)
{
	FILE *in = fixture_open("engine.dbc");
	struct run r;
	size_t i = 0;
	const cJSON *p;

	cr_assert(in != NULL, "tests/unit/fixtures/engine.dbc not found");
	run_file(in, "engine.dbc", NULL, &r);
	fclose(in);
	cr_assert_eq(r.rc, (int)ENGINE_POINTS, "rc %d; err:\n%s", r.rc, r.err);
	cr_assert(r.json != NULL, "output is not JSON: %s", r.out);
	cr_assert_eq(cJSON_GetArraySize(points(&r)), (int)ENGINE_POINTS);
	cJSON_ArrayForEach (p, points(&r)) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");

		cr_assert(cJSON_IsString(n));
		cr_assert_str_eq(n->valuestring, engine_names[i], "point %zu", i);
		i++;
	}
	/* Intel, scaled: 0.125 rpm/bit. */
	expect_point(&r, "{\"name\":\"EEC1.EngSpeed\",\"id\":\"0x0CF00400\",\"extended\":true,"
			 "\"start_bit\":24,\"length\":16,\"byte_order\":\"little_endian\","
			 "\"scale\":0.125,\"unit\":\"rpm\",\"min\":0,\"max\":8031.875}");
	/* Offset without scale; no unit. */
	expect_point(&r, "{\"name\":\"EEC1.EngTorqueMode\",\"id\":\"0x0CF00400\",\"extended\":true,"
			 "\"start_bit\":0,\"length\":4,\"byte_order\":\"little_endian\","
			 "\"min\":0,\"max\":15}");
	/* The file writes the degree sign in Latin-1 (0xB0); JSON gets UTF-8. */
	expect_point(&r, "{\"name\":\"ET1.EngOilTemp1\",\"id\":\"0x18FEEE00\",\"extended\":true,"
			 "\"start_bit\":16,\"length\":16,\"byte_order\":\"little_endian\","
			 "\"scale\":0.03125,\"offset\":-273,\"unit\":\"\xC2\xB0"
			 "C\",\"min\":-273,\"max\":1734.96875}");
	expect_point(&r, "{\"name\":\"CCVS1.WheelBasedVehicleSpeed\",\"id\":\"0x18FEF100\","
			 "\"extended\":true,\"start_bit\":8,\"length\":16,"
			 "\"byte_order\":\"little_endian\",\"scale\":0.00390625,"
			 "\"unit\":\"km/h\",\"min\":0,\"max\":250.996}");
	/* Motorola, standard id, signed. */
	expect_point(&r, "{\"name\":\"BRAKE_STATUS.YawRate\",\"id\":\"0x1A0\",\"extended\":false,"
			 "\"start_bit\":27,\"length\":12,\"byte_order\":\"big_endian\","
			 "\"signed\":true,\"scale\":0.1,\"unit\":\"deg/s\",\"min\":-204.8,"
			 "\"max\":204.7}");
	expect_point(&r, "{\"name\":\"BRAKE_STATUS.AbsActive\",\"id\":\"0x1A0\",\"extended\":false,"
			 "\"start_bit\":47,\"length\":1,\"byte_order\":\"big_endian\","
			 "\"min\":0,\"max\":1}");
	/* Multiplexing. */
	expect_point(&r, "{\"name\":\"DIAG_MUX.Page\",\"id\":\"0x500\",\"extended\":false,"
			 "\"start_bit\":0,\"length\":8,\"byte_order\":\"little_endian\","
			 "\"min\":0,\"max\":255,\"multiplexor\":true}");
	expect_point(&r, "{\"name\":\"DIAG_MUX.Page0_Current\",\"id\":\"0x500\",\"extended\":false,"
			 "\"start_bit\":24,\"length\":16,\"byte_order\":\"little_endian\","
			 "\"signed\":true,\"scale\":0.1,\"unit\":\"A\",\"min\":-3276.8,"
			 "\"max\":3276.7,\"mux\":0}");
	expect_point(&r, "{\"name\":\"DIAG_MUX.Page1_Temp\",\"id\":\"0x500\",\"extended\":false,"
			 "\"start_bit\":8,\"length\":8,\"byte_order\":\"little_endian\","
			 "\"signed\":true,\"unit\":\"degC\",\"min\":-128,\"max\":127,\"mux\":1}");
	/* SIG_VALTYPE_ 1; min and max both 0 are left out. */
	expect_point(&r, "{\"name\":\"SENSOR_FLOAT.Pressure\",\"id\":\"0x700\",\"extended\":false,"
			 "\"start_bit\":0,\"length\":32,\"byte_order\":\"little_endian\","
			 "\"signed\":true,\"unit\":\"kPa\",\"float\":\"f32\"}");
	expect_point(&r, "{\"name\":\"SENSOR_FLOAT.Flags\",\"id\":\"0x700\",\"extended\":false,"
			 "\"start_bit\":32,\"length\":8,\"byte_order\":\"little_endian\"}");
	/* Pretty printed. */
	cr_assert(strstr(r.out, "\n\t\"points\":") != NULL, "%s", r.out);
	run_free(&r);
}

Test(dbc, engine_fixture_report)
{
	FILE *in = fixture_open("engine.dbc");
	struct run r;

	cr_assert(in != NULL);
	run_file(in, "engine.dbc", NULL, &r);
	fclose(in);
	cr_assert_str_eq(r.err, engine_err);
	run_free(&r);
}

Test(dbc, engine_fixture_j1939_and_short_names)
{
	struct dbc_options opt = { .j1939 = true, .short_names = true };
	FILE *in = fixture_open("engine.dbc");
	struct run r;

	cr_assert(in != NULL);
	run_file(in, "engine.dbc", &opt, &r);
	fclose(in);
	cr_assert_eq(r.rc, (int)ENGINE_POINTS, "%s", r.err);
	/* EEC1 0x0CF00400: PDU2, PGN 0xF004 = 61444, SA 0. */
	expect_point(&r, "{\"name\":\"EngSpeed\",\"j1939\":{\"pgn\":61444,\"source\":0},"
			 "\"start_bit\":24,\"length\":16,\"byte_order\":\"little_endian\","
			 "\"scale\":0.125,\"unit\":\"rpm\",\"min\":0,\"max\":8031.875}");
	/* CCVS1 0x18FEF100: PGN 0xFEF1 = 65265. */
	expect_point(&r, "{\"name\":\"CruiseCtrlSetSpeed\",\"j1939\":{\"pgn\":65265,\"source\":0},"
			 "\"start_bit\":40,\"length\":8,\"byte_order\":\"little_endian\","
			 "\"unit\":\"km/h\",\"min\":0,\"max\":250}");
	/* TSC1 0x0C000003: PDU1 (PF 0), PS is the destination, so PGN 0; SA 3. */
	expect_point(&r, "{\"name\":\"EngOverrideCtrlMode\",\"j1939\":{\"pgn\":0,\"source\":3},"
			 "\"start_bit\":0,\"length\":2,\"byte_order\":\"little_endian\","
			 "\"min\":0,\"max\":3}");
	/* Standard ids keep "id". */
	expect_point(&r, "{\"name\":\"Counter\",\"id\":\"0x1A0\",\"extended\":false,"
			 "\"start_bit\":43,\"length\":4,\"byte_order\":\"big_endian\","
			 "\"min\":0,\"max\":15}");
	run_free(&r);
}

Test(dbc, empty_file)
{
	struct run r;

	run_text("", NULL, &r);
	cr_assert_eq(r.rc, 0);
	cr_assert_eq(cJSON_GetArraySize(points(&r)), 0);
	cr_assert_str_eq(r.err, "");
	run_free(&r);
}

Test(dbc, unknown_lines_and_multi_line_comments)
{
	struct run r;

	run_text("BO_ 256 M: 8 N\n"
		 " SG_ A : 0|8@1+ (1,0) [0|0] \"\" N\n"
		 "\n"
		 "FOO_ 1 2 3\n"
		 "CM_ SG_ 256 A \"first line\n"
		 "BO_ 512 FAKE: 8 N\n"
		 " SG_ B : 0|8@1+ (1,0) [0|0] \"\" N\n"
		 "FOO_ inside a comment\n"
		 "last line\";\n"
		 "CM_ \"two\";\n"
		 "SIG_MUL_VAL_ whatever\n"
		 "SG_MUL_VAL_ 256 A Mux 1-1;\n",
		 NULL, &r);
	cr_assert_eq(r.rc, 1, "%s", r.err);
	cr_assert_str_eq(r.err, "x.dbc:4: skipped: unknown line starting \"FOO_\"\n"
				"x.dbc:11: skipped: unknown line starting \"SIG_MUL_VAL_\"\n"
				"x.dbc: skipped 2 CM_ lines (comments)\n"
				"x.dbc: skipped 1 SG_MUL_VAL_ line (extended multiplexing, not "
				"supported)\n");
	cr_assert_eq(cJSON_GetArraySize(points(&r)), 1);
	run_free(&r);
}

Test(dbc, unterminated_comment)
{
	struct run r;

	run_text("BO_ 256 M: 8 N\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" N\nCM_ \"never\nends\n", NULL,
		 &r);
	cr_assert_eq(r.rc, 1);
	cr_assert_str_eq(r.err, "x.dbc:4: skipped: the string opened on line 3 never ends\n"
				"x.dbc: skipped 1 CM_ line (comments)\n");
	run_free(&r);
}

Test(dbc, syntax_errors)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
		{ "BO_ x M: 8 N\n", "x.dbc:1: BO_: expected the message id (a decimal number)\n" },
		{ "BO_ 1 M 8 N\n", "x.dbc:1: BO_ M: expected ':' after the name\n" },
		{ "BO_ 1 M: N\n",
		  "x.dbc:1: BO_ M: expected the length in bytes (DLC) after ':'\n" },
		{ "BO_ 4096 M: 8 N\n",
		  "x.dbc:1: BO_ M: id 4096 is above 0x7FF and not marked extended (bit 31)\n" },
		{ "BO_ 2684354560 M: 8 N\n", /* 0xA0000000 */
		  "x.dbc:1: BO_ M: id 2684354560 is above 0x1FFFFFFF with the extended flag (bit "
		  "31) cleared\n" },
		{ " SG_ A : 0|8@1+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:1: SG_: a signal outside a message (no BO_ line before it)\n" },
		{ "BO_ 1 M: 8 N\n SG_ A 0|8@1+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:2: SG_ A: expected ':' after the name (and M or mN)\n" },
		{ "BO_ 1 M: 8 N\n SG_ A : 64|8@1+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:2: SG_ A: expected <start 0..63>|<length 1..64>@<0|1><+|->\n" },
		{ "BO_ 1 M: 8 N\n SG_ A : 0|0@1+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:2: SG_ A: expected <start 0..63>|<length 1..64>@<0|1><+|->\n" },
		{ "BO_ 1 M: 8 N\n SG_ A : 0|8@2+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:2: SG_ A: expected <start 0..63>|<length 1..64>@<0|1><+|->\n" },
		{ "BO_ 1 M: 8 N\n SG_ A : 0|8@1+ (1;0) [0|0] \"\" N\n",
		  "x.dbc:2: SG_ A: expected (<scale>,<offset>) [<min>|<max>]\n" },
		{ "BO_ 1 M: 8 N\n SG_ A : 0|8@1+ (1,0) [0|nan] \"\" N\n",
		  "x.dbc:2: SG_ A: expected (<scale>,<offset>) [<min>|<max>]\n" },
		{ "BO_ 1 M: 8 N\n SG_ A : 0|8@1+ (1,0) [0|0] \"V N\n",
		  "x.dbc:2: SG_ A: expected the unit in double quotes\n" },
		{ "BO_ 1 M: 8 N\n SG_ A mx : 0|8@1+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:2: SG_ A: expected a number after 'm' (multiplexed signal)\n" },
		{ "BO_ 1 M: 8 N\n SG_ A m1 : 0|8@1+ (1,0) [0|0] \"\" N\n",
		  "x.dbc:1: message M: multiplexed signals (mN) but no multiplexor signal (M)\n" },
		{ "BO_ 1 M: 8 N\n SG_ A M : 0|8@1+ (1,0) [0|0] \"\" N\n"
		  " SG_ B M : 8|8@1+ (1,0) [0|0] \"\" N\nBO_ 2 Q: 8 N\n",
		  "x.dbc:1: message M: more than one multiplexor signal (M)\n" },
		/* A good message before the error: still nothing on 'out'. */
		{ "BO_ 1 M: 8 N\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" N\nCM_ \"x\";\n SG_ B : 0|8@1+ "
		  "(1,0) [0|0] \"\" N\n",
		  "x.dbc:4: SG_: a signal outside a message (no BO_ line before it)\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;

		run_text(cases[i].text, NULL, &r);
		cr_assert_eq(r.rc, -1, "case %zu: rc %d", i, r.rc);
		cr_assert_eq(r.out_len, 0, "case %zu wrote %s", i, r.out);
		cr_assert_str_eq(r.err, cases[i].err, "case %zu", i);
		run_free(&r);
	}
}

Test(dbc, skipped_messages_and_signals)
{
	struct run r;

	run_text("BO_ 1 FD: 64 N\n"
		 " SG_ A : 0|8@1+ (1,0) [0|0] \"\" N\n"
		 " SG_ B : 8|8@1+ (1,0) [0|0] \"\" N\n"
		 "BO_ 2 SHORT: 2 N\n"
		 " SG_ Fits : 7|16@0+ (1,0) [0|0] \"\" N\n"
		 " SG_ Over : 15|16@0+ (1,0) [0|0] \"\" N\n"
		 " SG_ Over2 : 12|8@1+ (1,0) [0|0] \"\" N\n",
		 NULL, &r);
	cr_assert_eq(r.rc, 1, "%s", r.err);
	cr_assert_str_eq(r.err, "x.dbc:1: skipped: message FD (2 signals): longer than 8 bytes "
				"(CAN FD is not supported)\n"
				"x.dbc:6: skipped: signal SHORT.Over (start bit 15, length 16, "
				"big-endian) does not fit the message's 2 bytes\n"
				"x.dbc:7: skipped: signal SHORT.Over2 (start bit 12, length 8, "
				"little-endian) does not fit the message's 2 bytes\n");
	expect_point(&r, "{\"name\":\"SHORT.Fits\",\"id\":\"0x002\",\"extended\":false,"
			 "\"start_bit\":7,\"length\":16,\"byte_order\":\"big_endian\"}");
	run_free(&r);
}

Test(dbc, float_value_types)
{
	struct run r;

	run_text("BO_ 2147483904 F: 8 N\n" /* 0x80000100: extended id 0x100 */
		 " SG_ D : 0|64@1- (1,0) [0|0] \"\" N\n"
		 "BO_ 2 G: 8 N\n"
		 " SG_ S : 0|16@1- (1,0) [0|0] \"\" N\n"
		 "SIG_VALTYPE_ 2147483904 D : 2;\n"
		 "SIG_VALTYPE_ 2 S : 1;\n"
		 "SIG_VALTYPE_ 3 X : 1;\n"
		 "SIG_VALTYPE_ 2 S ; 1;\n",
		 NULL, &r);
	cr_assert_eq(r.rc, 2, "%s", r.err);
	cr_assert_str_eq(r.err,
			 "x.dbc:6: skipped: SIG_VALTYPE_ 1 for G.S, whose length is 16, not 32\n"
			 "x.dbc:7: skipped: SIG_VALTYPE_ for a signal of message 3 that was not "
			 "imported\n"
			 "x.dbc:8: skipped: SIG_VALTYPE_ is not '<id> <signal> : <0|1|2> ;'\n");
	expect_point(&r, "{\"name\":\"F.D\",\"id\":\"0x00000100\",\"extended\":true,"
			 "\"start_bit\":0,\"length\":64,\"byte_order\":\"little_endian\","
			 "\"signed\":true,\"float\":\"f64\"}");
	expect_point(&r, "{\"name\":\"G.S\",\"id\":\"0x002\",\"extended\":false,"
			 "\"start_bit\":0,\"length\":16,\"byte_order\":\"little_endian\","
			 "\"signed\":true}");
	run_free(&r);
}

Test(dbc, names_are_made_valid_and_unique)
{
	struct dbc_options opt = { .short_names = true };
	struct run r;

	run_text("BO_ 1 A: 8 N\n"
		 " SG_ Speed : 0|8@1+ (1,0) [0|0] \"\" N\n"
		 " SG_ T\xC3\xA4mp : 8|8@1+ (1,0) [0|0] \"\" N\n"
		 "BO_ 2 B: 8 N\n"
		 " SG_ Speed : 0|8@1+ (1,0) [0|0] \"\" N\n",
		 &opt, &r);
	cr_assert_eq(r.rc, 3, "%s", r.err);
	cr_assert_str_eq(r.err,
			 "x.dbc:3: point name \"T\xC3\xA4mp\" is not a valid point name "
			 "(letters, digits, _ - .; at most 63); using \"T__mp\"\n"
			 "x.dbc:5: point name \"Speed\" is already used; using \"Speed_2\"\n");
	point_named(&r, "Speed");
	point_named(&r, "Speed_2");
	point_named(&r, "T__mp");
	run_free(&r);
}

Test(dbc, spacing_variants_and_receivers)
{
	struct run r;

	/* Tabs, "Name :" with a space, no receivers, negative scale, exponent, CRLF. */
	run_text("BO_\t291 Msg : 8 Vector__XXX\r\n"
		 "\tSG_ Temp: 7|8@0- (-0.5,1e2) [-1E2|+150] \"\xC2\xB0"
		 "C\"\r\n",
		 NULL, &r);
	cr_assert_eq(r.rc, 1, "%s", r.err);
	expect_point(&r, "{\"name\":\"Msg.Temp\",\"id\":\"0x123\",\"extended\":false,"
			 "\"start_bit\":7,\"length\":8,\"byte_order\":\"big_endian\","
			 "\"signed\":true,\"scale\":-0.5,\"offset\":100,\"unit\":\"\xC2\xB0"
			 "C\",\"min\":-100,\"max\":150}");
	run_free(&r);
}
