/* test_cli.c: the guardian command as a user runs it: check says "configuration OK" or lists every
 * error. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	return h_sh("'%s/guardian' check -c '%s' -s '%s' >'%s' 2>&1", h_build(),
		    h_path("site.json"), h_path("state"), h_path("check.out"));
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

/* ---- the command line ---------------------------------------------------------------------- */

/* Runs the guardian command line 'args' (shell words); its output in cli.out. Returns the exit
 * status. */
static int gd(const char *args)
{
	return h_sh("cd '%s' && '%s/guardian' %s >'%s' 2>&1", h_dir(), h_build(), args,
		    h_path("cli.out"));
}

/* What the last command printed (static: nothing to free). */
static const char *out_text(void)
{
	static char text[65536];
	char *read = h_read(h_path("cli.out"));

	snprintf(text, sizeof(text), "%s", read != NULL ? read : "");
	free(read);
	return text;
}

#define OUT() out_text()

Test(cli, the_command_is_found_wherever_the_options_are)
{
	write_site("[{\"name\":\"temp\",\"address\":0,\"type\":\"f32\"}]");
	cr_expect_eq(gd("-c site.json -s state check"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "configuration OK"), 1, "%s", OUT());
	cr_expect_eq(gd("check -c site.json -s state"), 0, "%s", OUT());
	cr_expect_eq(gd("--config=site.json -sstate check"), 0, "%s", OUT());
	/* Two-word commands too, and a negative VALUE is a value, not an option. */
	cr_expect_eq(gd("-c site.json policy explain plc1/temp -5"), 0, "%s", OUT());
	cr_expect_eq(gd("policy -c site.json explain plc1/temp"), 0, "%s", OUT());
}

Test(cli, unknown_commands_and_stray_arguments_say_so)
{
	cr_expect_eq(gd("frobnicate -c x"), 2);
	cr_expect_eq(h_count(h_path("cli.out"),
			     "guardian: unknown command \"frobnicate\"; expected run, check,"),
		     1, "%s", OUT());
	write_site("[{\"name\":\"temp\",\"address\":0,\"type\":\"f32\"}]");
	cr_expect_eq(gd("check -c site.json extra"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), "guardian check: unexpected argument \"extra\""), 1,
		     "%s", OUT());
	cr_expect_eq(gd("version now"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), "guardian version: unexpected argument \"now\""), 1,
		     "%s", OUT());
	cr_expect_eq(gd("check -c site.json -x"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), "guardian check: unknown option \"-x\""), 1, "%s",
		     OUT());
	cr_expect_eq(gd("measure -c site.json --head 1:ab"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), "--head is not an option of guardian measure"), 1,
		     "%s", OUT());
	cr_expect_eq(gd("check"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), "guardian check: missing -c FILE"), 1, "%s", OUT());
	cr_expect_eq(gd("policy frob"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), "guardian policy: expected \"explain\""), 1, "%s",
		     OUT());
}

/* guardian SUBCOMMAND --help: that command's usage on stdout, exit 0; the program's name never
 * with the path it was started by. */
Test(cli, every_subcommand_has_its_help)
{
	static const char *const cmds[] = {
		"check",	  "run",	  "console",	"console hash-pin",
		"policy explain", "audit verify", "dbc import", "provision",
		"measure",	  "update",	  "version"
	};
	char args[128], want[128];

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		size_t first = strcspn(cmds[i], " ");

		snprintf(args, sizeof(args), "%s --help 2>/dev/null", cmds[i]);
		cr_expect_eq(gd(args), 0, "guardian %s --help: %s", cmds[i], OUT());
		snprintf(want, sizeof(want), "usage: guardian %.*s", (int)first, cmds[i]);
		cr_expect(strncmp(OUT(), want, strlen(want)) == 0, "guardian %s --help:\n%s",
			  cmds[i], OUT());
		/* Only that command: the usage of another is not there. */
		if (strcmp(cmds[i], "measure") != 0)
			cr_expect_eq(h_count(h_path("cli.out"), "guardian measure"), 0,
				     "guardian %s --help shows every command:\n%s", cmds[i], OUT());
	}
	cr_expect_eq(gd("help check"), 0);
	cr_expect(strncmp(OUT(), "usage: guardian check -c FILE", 29) == 0, "%s", OUT());
	cr_expect_eq(gd("--help"), 0);
	cr_expect_geq(h_count(h_path("cli.out"), "guardian measure"), 1, "%s", OUT());
	/* An error says "guardian", not the path it was run by. */
	cr_expect_eq(gd("check -x"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), h_build()), 0, "the path in:\n%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "guardian check: "), 1, "%s", OUT());
	cr_expect_eq(gd("update -q"), 2);
	cr_expect_eq(h_count(h_path("cli.out"), h_build()), 0, "the path in:\n%s", OUT());
}

/* ---- guardian check, the pre-flight ------------------------------------------------------- */

/* The site of write_site with 'extra' top-level members (",\"console\":{...}") and the state
 * directory 'state'. */
static void write_site_with(const char *adapters, const char *state, const char *extra)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\",\"state_dir\":\"%s\","
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"pki/ca.crt\"%s},"
		 "\"adapters\":%s%s}",
		 state,
		 strstr(extra, "attestation") ? ""
					      : ",\"cert_file\":\"pki/device.crt\",\"key_file\":"
						"\"pki/device.key\"",
		 adapters, extra);
	h_write(h_path("site.json"), text);
}

static const char *tcp_adapter =
	"[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":1,"
	"\"points\":[{\"name\":\"temp\",\"address\":0}]}]";

/* The text of the first line of cli.out that holds 'needle', from 'needle' on (static). */
static const char *line_from(const char *needle)
{
	static char line[1024];
	char *text = h_read(h_path("cli.out"));
	const char *at = text ? strstr(text, needle) : NULL;

	line[0] = '\0';
	if (at != NULL)
		snprintf(line, sizeof(line), "%.*s", (int)strcspn(at, "\n"), at);
	free(text);
	return line;
}

Test(cli, check_refuses_first_what_run_would_refuse_with_the_same_words)
{
	char words[1024];

	write_site_with(tcp_adapter, "no/such/dir", "");
	cr_expect_eq(gd("check -c site.json"), 1, "%s", OUT());
	snprintf(words, sizeof(words), "%s", line_from("state_dir: "));
	cr_assert(strstr(words, "state_dir: cannot create the state directory") != NULL, "%s",
		  OUT());
	cr_expect_geq(h_count(h_path("cli.out"), "error: "), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "configuration OK"), 0, "%s", OUT());
	/* run refuses, before anything starts, with those words. */
	cr_expect_eq(gd("run -c site.json"), 1, "%s", OUT());
	cr_expect_geq(h_count(h_path("cli.out"), "refusing to start"), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), words), 1,
		     "run said other words than check (%s):\n%s", words, OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "adapter plc1"), 0, "an adapter started");

	/* With attestation: an identity key, but no identity certificate. */
	write_site_with(tcp_adapter, "state",
			",\"attestation\":{\"host\":\"localhost\",\"port\":8884,"
			"\"ca_file\":\"pki/ca.crt\"}");
	cr_assert_eq(gd("provision -c site.json"), 0, "%s", OUT());
	cr_expect_eq(gd("check -c site.json"), 1, "%s", OUT());
	snprintf(words, sizeof(words), "%s", line_from("attestation.cert_file: "));
	cr_assert(strstr(words, "identity.crt: No such file or directory") != NULL, "%s", OUT());
	cr_expect_eq(gd("run -c site.json"), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), words), 1,
		     "run said other words than check (%s):\n%s", words, OUT());
}

Test(cli, check_names_what_the_box_lacks)
{
	char state[512], key[600];

	/* A serial device that is not there and a console without a PIN: warnings, exit 0. */
	write_site_with("[{\"name\":\"plc1\",\"type\":\"modbus-rtu\",\"device\":\"/dev/ttyNOPE7\","
			"\"points\":[{\"name\":\"temp\",\"address\":0}]}]",
			"state", ",\"console\":{\"device\":\"/dev/ttyNOPE8\"}");
	cr_expect_eq(gd("check -c site.json"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "warning: "), 3, "%s", OUT());
	cr_expect_eq(
		h_count(h_path("cli.out"),
			"warning: site.json: adapters[0].device: /dev/ttyNOPE7: No such file or "
			"directory"),
		1, "%s", OUT());
	cr_expect_eq(
		h_count(h_path("cli.out"), "warning: site.json: console.device: /dev/ttyNOPE8"), 1,
		"%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "warning: site.json: console.pin_hash: not set"), 1,
		     "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "configuration OK with 3 warnings"), 1, "%s",
		     OUT());

	/* A state directory others may enter: a warning without attestation. */
	snprintf(state, sizeof(state), "%s/open", h_dir());
	cr_assert_eq(mkdir(state, 0755), 0);
	cr_assert_eq(chmod(state, 0755), 0);
	write_site_with(tcp_adapter, state, "");
	cr_expect_eq(gd("check -c site.json"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "warning: site.json: state_dir: "), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "chmod 700"), 1, "%s", OUT());

	/* An audit key group and others can read: run would refuse, so check does. */
	cr_assert_eq(chmod(state, 0700), 0);
	snprintf(key, sizeof(key), "%s/audit.key", state);
	h_write(key, "0123456789abcdef0123456789abcdef");
	cr_expect_eq(gd("check -c site.json"), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "error: site.json: state_dir: "), 1, "%s", OUT());
	cr_expect_geq(h_count(h_path("cli.out"), "audit.key is readable by others"), 1, "%s",
		      OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "chmod 600"), 1, "%s", OUT());
}

/* A state directory of another user: an error that names the owner and the fix. Root only. */
Test(cli, check_refuses_a_state_directory_of_another_user)
{
	char state[512];

	if (geteuid() != 0)
		cr_skip_test("needs root to give a directory to another user");
	snprintf(state, sizeof(state), "%s/theirs", h_dir());
	cr_assert_eq(mkdir(state, 0700), 0);
	cr_assert_eq(chown(state, 65534, 65534), 0);
	write_site_with(tcp_adapter, state, "");
	cr_expect_eq(gd("check -c site.json"), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "error: site.json: state_dir: "), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "belongs to uid 65534"), 1, "%s", OUT());
}

/* EACCES on a serial device names the group to join. Root only: it checks as another user. */
Test(cli, a_serial_device_without_permission_suggests_the_dialout_group)
{
	char dir[] = "/tmp/gd-dialout-XXXXXX", cmd[2048], site[600];

	if (geteuid() != 0)
		cr_skip_test("needs root to check as another user");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(
		h_sh("cd %s && chmod 755 . && cp -r '%s/pki' . && chmod -R a+rX pki && "
		     "cp '%s/policy.json' . && : >ttyUSB9 && chgrp dialout ttyUSB9 && "
		     "chmod 660 ttyUSB9 && mkdir state && chown nobody state && chmod 700 state",
		     dir, h_dir(), h_dir()),
		0);
	snprintf(cmd, sizeof(cmd),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"pki/ca.crt\",\"cert_file\":"
		 "\"pki/device.crt\",\"key_file\":\"pki/device.key\"},\"adapters\":[{\"name\":"
		 "\"plc1\",\"type\":\"modbus-rtu\",\"device\":\"%s/ttyUSB9\",\"points\":[{\"name\":"
		 "\"temp\",\"address\":0}]}]}",
		 dir);
	snprintf(site, sizeof(site), "%s/site.json", dir);
	h_write(site, cmd);
	h_sh("chmod 644 %s", site);
	h_sh("cd %s && setpriv --reuid=65534 --regid=65534 --clear-groups '%s/guardian' check -c "
	     "site.json >'%s' 2>&1",
	     dir, h_build(), h_path("cli.out"));
	cr_expect_eq(
		h_count(h_path("cli.out"),
			"ttyUSB9: Permission denied; add the user to the dialout group: usermod "
			"-aG dialout nobody"),
		1, "%s", OUT());
	h_sh("rm -rf %s", dir);
}

/* ---- guardian-service's command line ------------------------------------------------------ */

static int gs(const char *args)
{
	return h_sh("cd '%s' && '%s/guardian-service' %s >'%s' 2>&1", h_dir(), h_build(), args,
		    h_path("cli.out"));
}

Test(cli, guardian_service_finds_its_command_after_options)
{
	cr_expect_eq(gs("-d svc init"), 0, "%s", OUT());
	cr_expect_eq(gs("-d svc crl"), 0, "%s", OUT());
	cr_expect_eq(gs("-d svc reference list"), 0, "%s", OUT());
	cr_expect_eq(gs("init --help"), 0, "%s", OUT());
	cr_expect(strncmp(OUT(), "usage: guardian-service init -d DIR", 35) == 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "enroll"), 0, "not only init's usage:\n%s", OUT());
	cr_expect_eq(gs("-d svc reference --help"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "guardian-service reference "), 3, "%s", OUT());
	cr_expect_eq(gs("-d svc frob"), 2, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "unknown command \"frob\""), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), h_build()), 0, "the path in:\n%s", OUT());
}

/* The store on the command line: init --store, migrate (--import-files), and their errors. */
Test(cli, guardian_service_init_store_and_migrate)
{
	/* files: migrate names it; there is no database to import into */
	cr_expect_eq(gs("-d svc init --store files"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "store files"), 1, "%s", OUT());
	cr_expect_eq(gs("-d svc migrate"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "svc: store files, schema version 1"), 1, "%s",
		     OUT());
	cr_expect_eq(gs("-d svc migrate --import-files"), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "names the files store"), 1, "%s", OUT());

	/* sqlite, the default: init makes the database and its schema */
	cr_expect_eq(gs("-d db init"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "store sqlite"), 1, "%s", OUT());
	cr_expect_eq(access(h_path("db/service.db"), F_OK), 0, "init made no db/service.db");
	cr_expect_eq(gs("migrate -d db"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "db: store sqlite, schema version 1"), 1, "%s",
		     OUT());
	cr_expect_eq(gs("-d db reference list"), 0, "%s", OUT());

	/* A files directory moved onto SQLite by hand, then imported: twice, the same */
	cr_assert_eq(h_sh("cd '%s' && sed -i 's/^{/{\"store\":{\"backend\":\"sqlite\"},/' "
			  "svc/service.json",
			  h_dir()),
		     0);
	cr_expect_eq(gs("-d svc migrate --import-files"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "svc: store sqlite, schema version 1"), 1, "%s",
		     OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "imported from the files: 0 devices"), 1, "%s",
		     OUT());
	cr_expect_eq(gs("-d svc migrate --import-files"), 0, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "imported from the files: 0 devices"), 1, "%s",
		     OUT());

	/* what the command line refuses */
	cr_expect_eq(gs("-d x init --store mysql"), 2, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"),
			     "--store: unknown backend \"mysql\" (expected one of files, sqlite, "
			     "postgresql)"),
		     1, "%s", OUT());
	cr_expect_eq(gs("-d x init --store postgresql"), 2, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "needs --conninfo"), 1, "%s", OUT());
	cr_expect_eq(gs("-d x init --conninfo dbname=guardian"), 2, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "--conninfo is for --store postgresql"), 1, "%s",
		     OUT());
	cr_expect_eq(access(h_path("x"), F_OK), -1, "a refused init made its directory");
	cr_expect_eq(gs("-d svc crl --store sqlite"), 2, "%s", OUT());
	cr_expect_eq(gs("-d svc crl --import-files"), 2, "%s", OUT());
	cr_expect_eq(gs("migrate --help"), 0, "%s", OUT());
	cr_expect(strncmp(OUT(), "usage: guardian-service migrate -d DIR", 38) == 0, "%s", OUT());
}

/* A sandbox user that does not exist: run would refuse before anything starts, so check does. */
Test(cli, check_refuses_a_sandbox_user_that_does_not_exist)
{
	write_site_with(tcp_adapter, "state", ",\"sandbox\":{\"user\":\"nosuchuser9\"}");
	cr_expect_eq(gd("check -c site.json"), 1, "%s", OUT());
	cr_expect_eq(
		h_count(h_path("cli.out"),
			"error: site.json: sandbox.user: no user \"nosuchuser9\" on this system"),
		1, "%s", OUT());
	cr_expect_eq(gd("run -c site.json"), 1, "%s", OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "no user \"nosuchuser9\" on this system"), 1, "%s",
		     OUT());
	cr_expect_eq(h_count(h_path("cli.out"), "adapter plc1"), 0, "an adapter started");
}
