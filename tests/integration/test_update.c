/* test_update.c: signed updates end to end: guardian update init and install with real bundles
 * (guardian-service release), refusals that change nothing, SIGKILL at every step of an install
 * and of a rollback, a version that fails its health gate rolled back by itself under
 * gd-supervise, and a good one marked good while telemetry goes on. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-07"
#define CLASS  "press-line"

/* The steps of guardian/update.c's install, in order (update_install_steps). */
static const char *const install_steps[] = { "staging",	      "extracted", "copied",
					     "synced",	      "old-moved", "renamed",
					     "state-written", "switched",  "cleaned" };

static void setup(void)
{
	it_pki(DEVICE);
	cr_assert_eq(
		h_sh("cd %s && %s/guardian-service release keygen -o root.pem >keygen.log 2>&1 "
		     "&& %s/guardian-service release keygen -o rogue.pem >>keygen.log 2>&1",
		     h_dir(), h_build(), h_build()),
		0, "release keygen failed: %s", h_read(h_path("keygen.log")));
}

TestSuite(update, .init = setup, .fini = it_teardown, .timeout = 180);

/* The state directory, apart from the config's directory: slots hold what the config names. */
static const char *state(void)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/state", h_dir());
	return path;
}

static const char *in_state(const char *name)
{
	static char bufs[4][512];
	static int next;
	char *p = bufs[next++ % 4];

	snprintf(p, 512, "%s/%s", state(), name);
	return p;
}

/* policy.json for the broker on 'bport'; 'alias' renames plc1/counter when not NULL. */
static void write_policy(const char *path, int bport, const char *alias)
{
	char text[512];

	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],\"uplink\":[{\"points\":"
		 "\"plc1/counter\",\"action\":\"allow\"%s%s%s}]}",
		 bport, alias ? ",\"alias\":\"" : "", alias ? alias : "", alias ? "\"" : "");
	h_write(path, text);
}

/* site.json (in 'dir') with plc1/counter every 100 ms, the uplink on 'bport', trust in
 * root.pub.pem, and 'gate_s' for the health gate. */
static void write_site(const char *path, int bport, int mport, int gate_s)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"%s\","
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"reconnect_min_ms\":200,\"reconnect_max_ms\":1000,\"health_interval_ms\":1000},"
		 "\"update\":{\"keys\":[\"root.pub.pem\"],\"device_class\":\"" CLASS "\","
		 "\"trial_attempts\":3,\"gate_timeout_s\":%d},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":100,\"points\":[{\"name\":\"counter\","
		 "\"address\":0}]}]}",
		 state(), bport, gate_s, mport);
	h_write(path, text);
}

/* The config in the work directory and slot a made from it. */
static void init_slots(int bport, int mport)
{
	write_policy(h_path("policy.json"), bport, NULL);
	write_site(h_path("site.json"), bport, mport, 30);
	cr_assert_eq(h_sh("%s/guardian update init -c %s >%s 2>&1", h_build(), h_path("site.json"),
			  h_path("init.log")),
		     0, "guardian update init failed: %s", h_read(h_path("init.log")));
}

/* A bundle 'name' in the work directory of the files 'files' (paths, space-separated). */
static void sign(const char *name, int version, const char *class, const char *key,
		 const char *files)
{
	cr_assert_eq(h_sh("cd %s && %s/guardian-service release sign -o %s --version %d --class %s "
			  "--key %s %s >sign.log 2>&1",
			  h_dir(), h_build(), name, version, class, key, files),
		     0, "release sign failed: %s", h_read(h_path("sign.log")));
}

/* guardian update install of bundle 'name' with GUARDIAN_UPDATE_CRASH_AT='crash' (NULL: none);
 * its exit status as the shell says it (137: SIGKILL), its output in install.log. */
static int install(const char *name, const char *crash)
{
	char rc[32] = "";
	char *text;

	h_sh("cd %s && %s%s %s/guardian update install %s -s %s >install.log 2>&1; "
	     "echo $? >install.rc",
	     h_dir(), crash ? "GUARDIAN_UPDATE_CRASH_AT=" : "", crash ? crash : "", h_build(), name,
	     state());
	text = h_read(h_path("install.rc"));
	cr_assert_not_null(text);
	snprintf(rc, sizeof(rc), "%s", text);
	free(text);
	return atoi(rc);
}

/* Where current points ("slots/a"), into 'out'. */
static void current(char *out, size_t cap)
{
	ssize_t n = readlink(in_state("current"), out, cap - 1);

	cr_assert_gt(n, 0, "%s is not a link", in_state("current"));
	out[n] = '\0';
}

/* current names a slot with a program and a config `guardian check` accepts. */
static void expect_runnable(const char *when)
{
	char target[64];

	current(target, sizeof(target));
	cr_assert(strcmp(target, "slots/a") == 0 || strcmp(target, "slots/b") == 0,
		  "%s: current -> %s", when, target);
	cr_assert_eq(access(in_state("current/guardian"), X_OK), 0, "%s: no program in %s", when,
		     target);
	cr_assert_eq(h_sh("%s check -c %s >%s 2>&1", in_state("current/guardian"),
			  in_state("current/site.json"), h_path("check.log")),
		     0, "%s: guardian check of %s failed: %s", when, target,
		     h_read(h_path("check.log")));
}

/* update.json, parsed (cJSON_Delete). */
static cJSON *state_doc(void)
{
	char *text = h_read(in_state("update.json"));
	cJSON *doc = text ? cJSON_Parse(text) : NULL;

	free(text);
	cr_assert_not_null(doc, "update.json does not parse");
	return doc;
}

static double floor_of(void)
{
	cJSON *doc = state_doc();
	double f = it_json_num(doc, "floor");

	cJSON_Delete(doc);
	return f;
}

static bool trial_on(void)
{
	cJSON *doc = state_doc();
	bool on = cJSON_IsObject(cJSON_GetObjectItem(doc, "trial"));

	cJSON_Delete(doc);
	return on;
}

Test(update, refusals_change_nothing)
{
	char *before, *after, target[64], *out;

	init_slots(h_free_port(), h_free_port());
	expect_runnable("after init");
	cr_assert_eq(h_sh("mkdir -p %s && cp %s %s/policy.json", h_path("v2"),
			  h_path("policy.json"), h_path("v2")),
		     0);
	before = h_read(in_state("update.json"));
	/* Signed by a key this device does not trust. */
	sign("rogue.bundle", 2, CLASS, "rogue.pem", "v2/policy.json");
	cr_expect_neq(install("rogue.bundle", NULL), 0);
	out = h_read(h_path("install.log"));
	cr_expect(strstr(out, "refused (bad_signature)") != NULL, "%s", out);
	free(out);
	/* For another class of device. */
	sign("class.bundle", 2, "other-line", "root.pem", "v2/policy.json");
	cr_expect_neq(install("class.bundle", NULL), 0);
	out = h_read(h_path("install.log"));
	cr_expect(strstr(out, "refused (wrong_class)") != NULL, "%s", out);
	free(out);
	/* A file changed after signing (its last byte). */
	sign("good.bundle", 2, CLASS, "root.pem", "v2/policy.json");
	cr_assert_eq(h_sh("cd %s && cp good.bundle bad.bundle && printf ' ' | dd of=bad.bundle "
			  "bs=1 seek=$(($(stat -c %%s bad.bundle) - 1)) conv=notrunc 2>/dev/null",
			  h_dir()),
		     0);
	cr_expect_neq(install("bad.bundle", NULL), 0);
	out = h_read(h_path("install.log"));
	cr_expect(strstr(out, "refused (hash_mismatch)") != NULL, "%s", out);
	free(out);
	after = h_read(in_state("update.json"));
	cr_expect_str_eq(after, before, "update.json changed");
	current(target, sizeof(target));
	cr_expect_str_eq(target, "slots/a");
	cr_expect_neq(access(in_state("slots/b"), F_OK), 0, "slots/b appeared");
	cr_expect_neq(access(in_state("slots/.stage"), F_OK), 0, "a staging directory stayed");
	free(before);
	free(after);
	/* The good one goes in, on trial; a second install waits for the trial to end. */
	cr_assert_eq(install("good.bundle", NULL), 0, "%s", h_read(h_path("install.log")));
	current(target, sizeof(target));
	cr_expect_str_eq(target, "slots/b");
	cr_expect(trial_on());
	expect_runnable("after install");
	cr_expect_neq(install("good.bundle", NULL), 0);
	out = h_read(h_path("install.log"));
	cr_expect(strstr(out, "is on trial") != NULL, "%s", out);
	free(out);
}

Test(update, sigkill_at_every_install_step_leaves_a_runnable_current)
{
	int bport = h_free_port(), mport = h_free_port();
	char target[64];

	init_slots(bport, mport);
	cr_assert_eq(h_sh("mkdir -p %s", h_path("v2")), 0);
	write_policy(h_path("v2/policy.json"), bport, "press_count");
	sign("v2.bundle", 2, CLASS, "root.pem", "v2/policy.json");
	for (size_t i = 0; i < sizeof(install_steps) / sizeof(*install_steps); i++) {
		const char *step = install_steps[i];
		int rc;

		/* A fresh start each time. */
		cr_assert_eq(h_sh("rm -rf %s", state()), 0);
		init_slots(bport, mport);
		rc = install("v2.bundle", step);
		cr_assert_eq(rc, 137, "%s: install ended with %d, not SIGKILL: %s", step, rc,
			     h_read(h_path("install.log")));
		expect_runnable(step);
		/* What the supervisor does next: the state agrees with current after it. */
		cr_assert_eq(h_sh("%s/guardian update prestart -s %s >%s 2>&1", h_build(), state(),
				  h_path("prestart.log")),
			     0, "%s: prestart failed: %s", step, h_read(h_path("prestart.log")));
		expect_runnable(step);
		current(target, sizeof(target));
		if (trial_on())
			cr_expect_str_eq(target, "slots/b", "%s: a trial of b with current %s",
					 step, target);
		else
			cr_expect_str_eq(target, "slots/a", "%s: b runs without a trial", step);
		/* An install that did not switch can be done again. */
		if (strcmp(target, "slots/a") == 0) {
			cr_expect_eq(install("v2.bundle", NULL), 0, "%s: install again: %s", step,
				     h_read(h_path("install.log")));
			expect_runnable(step);
		}
	}
}

Test(update, sigkill_during_a_rollback_leaves_a_runnable_current)
{
	static const char *const steps[] = { "rollback-reported", "rollback-switched" };
	int bport = h_free_port(), mport = h_free_port();

	cr_assert_eq(h_sh("mkdir -p %s", h_path("v2")), 0);
	write_policy(h_path("v2/policy.json"), bport, "press_count");
	for (size_t i = 0; i < 2; i++) {
		char target[64];

		cr_assert_eq(h_sh("rm -rf %s", state()), 0);
		init_slots(bport, mport);
		sign("v2.bundle", 2, CLASS, "root.pem", "v2/policy.json");
		cr_assert_eq(install("v2.bundle", NULL), 0, "%s", h_read(h_path("install.log")));
		/* Three starts used; the fourth prestart rolls back, and is killed. */
		for (int k = 0; k < 3; k++)
			cr_assert_eq(h_sh("%s/guardian update prestart -s %s >/dev/null", h_build(),
					  state()),
				     0);
		h_sh("GUARDIAN_UPDATE_CRASH_AT=%s %s/guardian update prestart -s %s >%s 2>&1",
		     steps[i], h_build(), state(), h_path("prestart.log"));
		expect_runnable(steps[i]);
		cr_assert_eq(h_sh("%s/guardian update prestart -s %s >%s 2>&1", h_build(), state(),
				  h_path("prestart.log")),
			     0, "%s", h_read(h_path("prestart.log")));
		current(target, sizeof(target));
		cr_expect_str_eq(target, "slots/a", "%s: not rolled back", steps[i]);
		cr_expect(!trial_on(), "%s: the trial stays", steps[i]);
		cr_expect_eq(access(in_state("rollback.json"), F_OK), 0, "%s: no rollback.json",
			     steps[i]);
		expect_runnable(steps[i]);
	}
}

/* gd-supervise running the unit's commands on the state directory. */
static pid_t supervise(int watchdog_ms)
{
	char pre[512], wd[32], prog[512], site[512];

	snprintf(pre, sizeof(pre), "%s/guardian update prestart -s %s", h_build(), state());
	snprintf(wd, sizeof(wd), "%d", watchdog_ms);
	snprintf(prog, sizeof(prog), "%s", in_state("current/guardian"));
	snprintf(site, sizeof(site), "%s", in_state("current/site.json"));
	{
		char bin[512];
		const char *argv[] = {
			bin,  "-s",	      state(), "--pre", pre,  "--watchdog-ms",
			wd,   "--restart-ms", "200",   "--",	prog, "run",
			"-c", site,	      NULL
		};

		snprintf(bin, sizeof(bin), "%s/gd-supervise", h_build());
		return h_spawn(h_path("supervise.log"), argv);
	}
}

/* A broker, a viewer on the telemetry, plcsim; slot a made. */
static void bed(int *bport, int *mport)
{
	char simargs[128];

	*bport = h_free_port();
	*mport = h_free_port();
	cr_assert_gt(h_mosquitto(*bport), 0, "mosquitto did not start: %s",
		     h_read(h_path("mosquitto.log")));
	cr_assert_gt(h_subscribe(*bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --step-ms 100", *mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0, "plcsim did not start");
	init_slots(*bport, *mport);
}

static void wait_file(const char *path, const char *needle, int timeout_ms)
{
	cr_assert_eq(h_wait_contains(path, needle, timeout_ms), 0,
		     "%s never held \"%s\"; supervise.log:\n%s", path, needle,
		     h_read(h_path("supervise.log")));
}

Test(update, a_program_that_fails_rolls_back_by_itself)
{
	int bport, mport;
	size_t before;
	pid_t sup;
	char target[64], *rb;

	bed(&bport, &mport);
	/* Version 2's program cannot even start. */
	cr_assert_eq(h_sh("mkdir -p %s && printf '#!/bin/sh\\necho broken >&2\\nexit 1\\n' >%s && "
			  "chmod 755 %s",
			  h_path("v2"), h_path("v2/guardian"), h_path("v2/guardian")),
		     0);
	sign("v2.bundle", 2, CLASS, "root.pem", "v2/guardian");
	cr_assert_eq(install("v2.bundle", NULL), 0, "%s", h_read(h_path("install.log")));
	sup = supervise(5000);
	cr_assert_gt(sup, 0);
	wait_file(h_path("supervise.log"), "rolled back to slot a", 20000);
	/* The prestart that rolled back has finished once the fourth start runs. */
	wait_file(h_path("supervise.log"), "start 4:", 10000);
	/* Three starts of the broken one, then the good one runs and sends. */
	cr_expect_eq(h_count(h_path("supervise.log"), "exit status 1"), 3, "%s",
		     h_read(h_path("supervise.log")));
	current(target, sizeof(target));
	cr_expect_str_eq(target, "slots/a");
	cr_expect(!trial_on());
	cr_expect_eq(floor_of(), 0);
	/* Slot a's program reports the rollback at its start, then marks the file reported. */
	wait_file(h_path("supervise.log"), "the rollback of version 2 is reported", 15000);
	cr_expect_neq(access(in_state("rollback.json"), F_OK), 0, "rollback.json stayed");
	rb = h_read(in_state("rollback.reported.json"));
	cr_assert_not_null(rb, "no rollback.reported.json");
	cr_expect(strstr(rb, "\"version\":2") != NULL && strstr(rb, "\"status\":1") != NULL, "%s",
		  rb);
	free(rb);
	before = h_count(h_path("sub.out"), "/telemetry ");
	it_wait_messages(h_path("sub.out"), before + 3, 15000);
	cr_expect_eq(h_stop(sup, 10000) & 0xffff, 0, "gd-supervise did not stop cleanly");
}

Test(update, a_config_that_never_reaches_the_broker_rolls_back)
{
	int bport, mport, wrong = h_free_port();
	pid_t sup;
	char target[64];

	bed(&bport, &mport);
	/* Version 2 sends to a port where no broker listens, with a 2 s gate. */
	cr_assert_eq(h_sh("mkdir -p %s", h_path("v2")), 0);
	write_site(h_path("v2/site.json"), wrong, mport, 2);
	write_policy(h_path("v2/policy.json"), wrong, NULL);
	sign("v2.bundle", 2, CLASS, "root.pem", "v2/site.json v2/policy.json");
	cr_assert_eq(install("v2.bundle", NULL), 0, "%s", h_read(h_path("install.log")));
	sup = supervise(5000);
	cr_assert_gt(sup, 0);
	wait_file(h_path("supervise.log"), "rolled back to slot a", 40000);
	/* The prestart that rolled back has finished once the fourth start runs. */
	wait_file(h_path("supervise.log"), "start 4:", 10000);
	cr_expect_eq(h_count(h_path("supervise.log"), "exit status 4"), 3, "%s",
		     h_read(h_path("supervise.log")));
	cr_expect(h_count(h_path("supervise.log"), "did not pass its health gate") >= 3,
		  "the program says why it exits");
	current(target, sizeof(target));
	cr_expect_str_eq(target, "slots/a");
	cr_expect(!trial_on());
	it_wait_messages(h_path("sub.out"), 3, 15000);
	cr_expect_eq(h_stop(sup, 10000) & 0xffff, 0);
}

Test(update, a_good_update_passes_its_gate_and_raises_the_floor)
{
	int bport, mport;
	pid_t sup;
	cJSON *doc;

	bed(&bport, &mport);
	sup = supervise(3000);
	cr_assert_gt(sup, 0);
	wait_file(h_path("supervise.log"), "is ready", 15000);
	it_wait_messages(h_path("sub.out"), 2, 15000);
	cr_expect_eq(h_count(h_path("sub.out"), "press_count"), 0);
	/* Version 2: the same program, a policy that renames the point. */
	cr_assert_eq(h_sh("mkdir -p %s", h_path("v2")), 0);
	write_policy(h_path("v2/policy.json"), bport, "press_count");
	sign("v2.bundle", 2, CLASS, "root.pem", "v2/policy.json");
	cr_assert_eq(install("v2.bundle", NULL), 0, "%s", h_read(h_path("install.log")));
	/* As systemctl restart would. */
	cr_expect_eq(h_stop(sup, 10000) & 0xffff, 0);
	sup = supervise(3000);
	cr_assert_gt(sup, 0);
	wait_file(h_path("supervise.log"), "marked good", 30000);
	doc = state_doc();
	cr_expect_eq(it_json_num(doc, "floor"), 2);
	cr_expect_eq(it_json_num(doc, "good.version"), 2);
	cr_expect_str_eq(it_json_str(cJSON_GetObjectItem(doc, "good"), "slot"), "b");
	cr_expect(cJSON_IsNull(cJSON_GetObjectItem(doc, "trial")));
	cJSON_Delete(doc);
	/* Telemetry goes on, under the new policy. */
	cr_assert_eq(h_wait_count(h_path("sub.out"), "press_count", 3, 15000), 0,
		     "the new policy's alias never arrived");
	/* The old version is below the floor now: refused as a rollback. */
	sign("v1.bundle", 2, CLASS, "root.pem", "policy.json");
	cr_expect_neq(install("v1.bundle", NULL), 0);
	cr_expect_eq(h_count(h_path("install.log"), "refused (rollback)"), 1, "%s",
		     h_read(h_path("install.log")));
	cr_expect_eq(h_stop(sup, 10000) & 0xffff, 0);
	cr_expect(h_count(h_path("supervise.log"), "watchdog:") == 0, "%s",
		  h_read(h_path("supervise.log")));
}

Test(update, the_supervisor_kills_a_silent_program)
{
	const char *argv[] = { NULL,	     "-s",	     NULL,  "--watchdog-ms",
			       "300",	     "--restart-ms", "100", "--",
			       "/bin/sleep", "30",	     NULL };
	char bin[512];
	pid_t sup;
	char *last;

	snprintf(bin, sizeof(bin), "%s/gd-supervise", h_build());
	argv[0] = bin;
	argv[2] = h_dir();
	sup = h_spawn(h_path("supervise.log"), argv);
	cr_assert_gt(sup, 0);
	cr_assert_eq(h_wait_count(h_path("supervise.log"), "watchdog: no WATCHDOG=1", 2, 10000), 0,
		     "%s", h_read(h_path("supervise.log")));
	last = h_read(h_path("last-exit"));
	cr_assert_not_null(last);
	cr_expect(strstr(last, "\"signal\":\"SIGKILL\"") != NULL, "%s", last);
	cr_expect(strstr(last, "\"watchdog\":true") != NULL, "%s", last);
	free(last);
	cr_expect_eq(h_stop(sup, 10000) & 0xffff, 0);
	cr_expect_eq(h_sh("pgrep -x -f '/bin/sleep 30' >/dev/null"), 1,
		     "the child outlived its supervisor");
}

/* Runs one step of the attested bed, failing the test with its output. */
static void attest_step(const char *what, const char *cmd)
{
	cr_assert_eq(h_sh("%s >%s 2>&1", cmd, h_path("step.log")), 0, "%s failed: %s", what,
		     h_read(h_path("step.log")));
}

Test(update, the_gate_waits_for_attestation_of_the_new_measurements)
{
	struct h_attest b;
	char cmd[2048], *site, *policy, text[8192];
	pid_t sup;

	it_attest_up(&b, 3600);
	h_attest_site(&b, DEVICE, "");
	/* The attested site, with trust for updates. */
	site = h_read(b.site);
	cr_assert_not_null(site);
	snprintf(text, sizeof(text),
		 "{\"update\":{\"keys\":[\"root.pub.pem\"],\"device_class\":\"" CLASS "\","
		 "\"gate_timeout_s\":60},%s",
		 site + 1);
	free(site);
	h_write(b.site, text);
	cr_assert_eq(h_sh("%s/guardian update init -c %s >%s 2>&1", h_build(), b.site,
			  h_path("init.log")),
		     0, "%s", h_read(h_path("init.log")));
	/* Enrolled, and its reference measured as the supervisor runs it: from the slot. */
	snprintf(cmd, sizeof(cmd), "%s/guardian provision -c %s", h_build(),
		 in_state("current/site.json"));
	attest_step("provision", cmd);
	snprintf(cmd, sizeof(cmd),
		 "%s/guardian-service enroll -d %s %s/identity.csr -o %s/identity.crt", h_build(),
		 b.svc, b.state, b.state);
	attest_step("enroll", cmd);
	snprintf(cmd, sizeof(cmd),
		 "%s measure -c %s --json >%s && %s/guardian-service reference add -d %s %s",
		 in_state("current/guardian"), in_state("current/site.json"), h_path("ref-a.json"),
		 h_build(), b.svc, h_path("ref-a.json"));
	attest_step("reference of slot a", cmd);
	it_attest_serve(&b);
	it_attest_viewer(&b, "guardian/" DEVICE "/telemetry", NULL);
	/* Version 2: the policy changed by one byte, so its measurements are new. */
	policy = h_read(h_path("policy.json"));
	cr_assert_not_null(policy);
	snprintf(text, sizeof(text), "%s ", policy);
	free(policy);
	cr_assert_eq(h_sh("mkdir -p %s", h_path("v2")), 0);
	h_write(h_path("v2/policy.json"), text);
	sign("v2.bundle", 2, CLASS, "root.pem", "v2/policy.json");
	cr_assert_eq(install("v2.bundle", NULL), 0, "%s", h_read(h_path("install.log")));
	/* Not yet a reference: the gate holds (the service refuses what it measured). */
	sup = supervise(5000);
	cr_assert_gt(sup, 0);
	wait_file(h_path("supervise.log"), "waiting for attestation", 15000);
	h_sleep_ms(2000);
	cr_expect(trial_on(), "marked good without attestation");
	cr_expect_eq(h_count(h_path("supervise.log"), "marked good"), 0);
	/* The vendor publishes the reference of version 2: the next round passes. */
	snprintf(cmd, sizeof(cmd),
		 "%s measure -c %s --json >%s && %s/guardian-service reference add -d %s %s",
		 in_state("current/guardian"), in_state("current/site.json"), h_path("ref-b.json"),
		 h_build(), b.svc, h_path("ref-b.json"));
	attest_step("reference of slot b", cmd);
	wait_file(h_path("supervise.log"), "marked good", 40000);
	cr_expect_eq(h_count(h_path("supervise.log"), "attestation passed with this version's"), 1);
	cr_expect_eq(floor_of(), 2);
	cr_expect(!trial_on());
	it_wait_messages(h_path("sub.out"), 3, 15000);
	cr_expect_eq(h_stop(sup, 10000) & 0xffff, 0);
}
