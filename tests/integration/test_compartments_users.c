/* test_compartments_users.c: the children under users of their own ("sandbox": {"adapter_user",
 * "uplink_user"}): what /proc says of each child and of guardian, telemetry and a write through
 * them, the uplink's spool across a kill of its child, and the configs refused at start. */
#include <criterion/criterion.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "compartments.h"
#include "site.h"

#define DEVICE "press-16"

/* Two system users of Debian, neither root nor each other. */
#define ADAPTER_USER "nobody"
#define UPLINK_USER  "daemon"

static uid_t adapter_uid, uplink_uid;
static gid_t uplink_gid;

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(compartments_users, .init = setup, .fini = it_teardown, .timeout = 150);

/* Skips unless root (only root starts guardian so that it may start its children as other
 * users here) and both users are there. */
static void need_root_and_users(void)
{
	const struct passwd *pw;

	if (geteuid() != 0)
		cr_skip_test("not root: guardian needs CAP_SETUID and CAP_SETGID to start its "
			     "children as their users");
	pw = getpwnam(ADAPTER_USER);
	if (pw == NULL)
		cr_skip_test("no user " ADAPTER_USER " on this machine");
	adapter_uid = pw->pw_uid;
	pw = getpwnam(UPLINK_USER);
	if (pw == NULL)
		cr_skip_test("no user " UPLINK_USER " on this machine");
	uplink_uid = pw->pw_uid;
	uplink_gid = pw->pw_gid;
	if (adapter_uid == 0 || uplink_uid == 0 || adapter_uid == uplink_uid)
		cr_skip_test(ADAPTER_USER " and " UPLINK_USER " are not two users other than root");
}

/* Runs as 'uid' (real, effective, saved and file system), no capability at all, no_new_privs,
 * a seccomp filter. */
static void expect_child_as(pid_t pid, uid_t uid, const char *what)
{
	char v[128], want[128];

	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)uid, (unsigned)uid, (unsigned)uid,
		 (unsigned)uid);
	cr_expect_str_eq(h_proc_status_line(pid, "Uid", v, sizeof(v)), want, "%s: Uid is %s", what,
			 v);
	cr_expect_str_eq(h_proc_status_line(pid, "CapInh", v, sizeof(v)), "0000000000000000", "%s",
			 what);
	cr_expect_str_eq(h_proc_status_line(pid, "CapAmb", v, sizeof(v)), "0000000000000000", "%s",
			 what);
	it_expect_confined(pid, what);
}

static struct it_bed bed;

/* The uplink's files readable by UPLINK_USER: the work directory searchable, its key its own. */
static void pki_for_the_uplink_user(void)
{
	cr_assert_eq(h_sh("chmod 711 '%s' && chmod 755 '%s' && chown %s '%s/device.key'", h_dir(),
			  h_path("pki"), UPLINK_USER, h_path("pki")),
		     0);
}

/* Broker, viewer, plcsim (setpoint 500 at 120), serialsim on a pty pair, guardian with 'sandbox';
 * returns guardian once telemetry of both adapters arrived. */
static pid_t start_all(const char *sandbox)
{
	pid_t gd;

	it_bed_up(&bed, DEVICE);
	it_bed_serialsim(&bed);
	it_bed_site(&bed, sandbox, 100);
	gd = it_bed_guardian("guardian");
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no Modbus telemetry; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"scale/weight\"", 15000), 0,
		     "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	return gd;
}

Test(compartments_users, each_child_runs_as_its_own_user_with_no_capability)
{
	pid_t gd, plc, scale, up, up2;
	struct stat st;
	char v[128];

	need_root_and_users();
	pki_for_the_uplink_user();
	gd = start_all("\"sandbox\":{\"adapter_user\":\"" ADAPTER_USER
		       "\",\"uplink_user\":\"" UPLINK_USER "\"},");
	plc = h_child_process(gd, "adapter-child", "plc1", 0, 5000);
	scale = h_child_process(gd, "adapter-child", "scale", 0, 5000);
	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(scale, 0, "no child runs scale; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	expect_child_as(plc, adapter_uid, "plc1's child");
	expect_child_as(scale, adapter_uid, "scale's child");
	expect_child_as(up, uplink_uid, "the uplink's child");
	/* guardian: root still (no "user"), holding CAP_SETUID, CAP_SETGID and CAP_KILL permitted
	 * only. */
	cr_expect_str_eq(h_proc_status_line(gd, "CapPrm", v, sizeof(v)), "00000000000000e0");
	cr_expect_str_eq(h_proc_status_line(gd, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(gd, "CapInh", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(gd, "CapAmb", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(gd, "CapBnd", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(gd, "NoNewPrivs", v, sizeof(v)), "1");
	/* The uplink's directories are its user's. */
	cr_expect_eq(stat(h_path("state/spool"), &st), 0);
	cr_expect_eq(st.st_uid, uplink_uid, "the spool belongs to uid %u", (unsigned)st.st_uid);
	cr_expect_eq(stat(h_path("state/uplink"), &st), 0);
	cr_expect_eq(st.st_uid, uplink_uid, "state/uplink belongs to uid %u", (unsigned)st.st_uid);
	cr_expect_eq(stat(h_path("state"), &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0700, "the state directory is %o", st.st_mode & 0777);

	/* A write the policy allows reaches the PLC through both children. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"),
				     "subscribed to guardian/" DEVICE "/cmd", 10000),
		     0, "never subscribed to commands:\n%s", h_read(h_path("guardian.log")));
	it_bed_command(&bed, "{\"id\":\"w1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":600", 10000),
		     0, "the accepted write never reached the PLC; log:\n%s",
		     h_read(h_path("guardian.log")));

	/* The uplink's child killed: another, as its user, takes its spool over; nothing lost. */
	cr_assert_eq(kill(up, SIGKILL), 0);
	up2 = h_child_process(gd, "uplink-child", NULL, up, 10000);
	cr_assert_gt(up2, 0, "the uplink child was not started again; log:\n%s",
		     h_read(h_path("guardian.log")));
	expect_child_as(up2, uplink_uid, "the uplink's second child");
	it_bed_expect_resumed_and_nothing_lost(&bed, gd);
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
	it_kill_leftover(plc, "adapter-child");
	it_kill_leftover(scale, "adapter-child");
	it_kill_leftover(up2, "uplink-child");
}

/*
 * Children under users of their own that hang (stopped) are killed at the stop: guardian may
 * signal another uid only with CAP_SETUID's sibling CAP_KILL, kept for this. Without it the kill
 * fails and guardian waits for them for ever.
 */
Test(compartments_users, a_hung_child_of_its_own_user_is_killed_at_the_stop)
{
	pid_t gd, plc, up;

	need_root_and_users();
	pki_for_the_uplink_user();
	gd = start_all("\"sandbox\":{\"adapter_user\":\"" ADAPTER_USER
		       "\",\"uplink_user\":\"" UPLINK_USER "\"},");
	plc = h_child_process(gd, "adapter-child", "plc1", 0, 5000);
	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(kill(plc, SIGSTOP), 0);
	cr_assert_eq(kill(up, SIGSTOP), 0);
	cr_expect_eq(h_stop(gd, 30000), 0, "guardian did not stop with its children hung; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "cannot kill"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
	it_kill_leftover(plc, "adapter-child");
	it_kill_leftover(up, "uplink-child");
}

/* guardian run -c site.json with 'sandbox' exits 1 at start, its log (and guardian check's
 * output) saying 'needle'. */
static void expect_refused(const char *sandbox, const char *needle)
{
	char bin[300], site[256], out[256];
	const char *argv[] = { bin, "run", "-c", site, NULL };
	pid_t gd;
	int status;

	struct it_bed b = { .device = DEVICE,
			    .bport = h_free_port(),
			    .mport = h_free_port(),
			    .tty_gd = "/dev/null" };

	it_bed_site(&b, sandbox, 100);
	snprintf(site, sizeof(site), "%s", h_path("site.json"));
	snprintf(bin, sizeof(bin), "%s/guardian", h_build());
	snprintf(out, sizeof(out), "%s", h_path("refused.log"));
	unlink(out);
	gd = h_spawn(out, argv);
	cr_assert_gt(gd, 0);
	status = h_wait_exit(gd, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		  "guardian did not refuse to start (status 0x%x); log:\n%s", status, h_read(out));
	cr_expect_gt(h_count(out, needle), 0, "the refusal does not say \"%s\":\n%s", needle,
		     h_read(out));
	unlink(out);
	cr_expect_neq(h_sh("'%s' check -c '%s' >'%s' 2>&1", bin, site, out), 0);
	cr_expect_gt(h_count(out, needle), 0, "guardian check does not say \"%s\":\n%s", needle,
		     h_read(out));
}

Test(compartments_users, an_unknown_user_or_a_user_twice_is_refused_at_start_naming_the_key)
{
	need_root_and_users();
	expect_refused("\"sandbox\":{\"adapter_user\":\"no-such-user-16\"},",
		       "sandbox.adapter_user: no user \"no-such-user-16\" on this system");
	expect_refused("\"sandbox\":{\"uplink_user\":\"no-such-user-16\"},",
		       "sandbox.uplink_user: no user \"no-such-user-16\" on this system");
	expect_refused("\"sandbox\":{\"adapter_user\":\"" UPLINK_USER
		       "\",\"uplink_user\":\"" UPLINK_USER "\"},",
		       "sandbox.uplink_user: \"" UPLINK_USER "\" (uid");
	expect_refused("\"sandbox\":{\"adapter_user\":\"" UPLINK_USER
		       "\",\"uplink_user\":\"" UPLINK_USER "\"},",
		       "is also sandbox.adapter_user: the point is separate uids");
	/* root runs guardian here: root is guardian's own user. */
	expect_refused("\"sandbox\":{\"adapter_user\":\"root\"},",
		       "sandbox.adapter_user: \"root\" (uid 0) is guardian's own user");
	expect_refused("\"sandbox\":{\"compartments\":false,\"uplink_user\":\"" UPLINK_USER "\"},",
		       "sandbox.uplink_user: only with compartments");
}

/* The uplink's key not readable by its user: refused at start, naming the file. */
Test(compartments_users, a_file_the_uplink_user_cannot_read_is_refused_naming_it)
{
	char key[300];

	need_root_and_users();
	cr_assert_eq(h_sh("chmod 711 '%s' && chmod 755 '%s' && chmod 600 '%s/device.key'", h_dir(),
			  h_path("pki"), h_path("pki")),
		     0);
	snprintf(key, sizeof(key),
		 "uplink.key_file: %s/device.key is not readable by the uplink's "
		 "user " UPLINK_USER,
		 h_path("pki"));
	expect_refused("\"sandbox\":{\"uplink_user\":\"" UPLINK_USER "\"},", key);
	/* Nor the CA, behind a directory it cannot search. */
	cr_assert_eq(h_sh("chown %s '%s/device.key' && chmod 700 '%s'", UPLINK_USER, h_path("pki"),
			  h_path("pki")),
		     0);
	snprintf(key, sizeof(key),
		 "uplink.ca_file: %s/ca.crt is not readable by the uplink's user "
		 "" UPLINK_USER " (uid",
		 h_path("pki"));
	expect_refused("\"sandbox\":{\"uplink_user\":\"" UPLINK_USER "\"},", key);
	(void)uplink_gid;
}

/* guardian started as GUARDIAN_USER by setpriv, with CAP_SETUID, CAP_SETGID and CAP_KILL as
 * systemd's AmbientCapabilities= gives them when 'caps'. */
#define GUARDIAN_USER "bin"

static pid_t start_as_user(bool caps, const char *log)
{
	char cmd[1024];
	const char *sh[] = { "/bin/sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd),
		 "exec setpriv --reuid=" GUARDIAN_USER " --regid=" GUARDIAN_USER
		 " --clear-groups %s -- '%s/guardian' run -c '%s'",
		 caps ? "--inh-caps=+setuid,+setgid,+kill --ambient-caps=+setuid,+setgid,+kill"
		      : "",
		 h_build(), h_path("site.json"));
	return h_spawn(log, sh);
}

Test(compartments_users, started_as_a_user_it_needs_the_three_capabilities_and_the_directories)
{
	const struct passwd *pw;
	uid_t guardian_uid;
	pid_t gd, plc, up;
	int status;
	char v[128], want[128];

	need_root_and_users();
	pw = getpwnam(GUARDIAN_USER);
	if (pw == NULL || system("setpriv --help >/dev/null 2>&1") != 0)
		cr_skip_test("no user " GUARDIAN_USER " or no setpriv on this machine");
	guardian_uid = pw->pw_uid;
	pki_for_the_uplink_user();
	/* What guardian's user reads: the site, the policy, the CA; its state directory. */
	it_bed_up(&bed, DEVICE);
	it_bed_site(&bed,
		    "\"sandbox\":{\"adapter_user\":\"" ADAPTER_USER
		    "\",\"uplink_user\":\"" UPLINK_USER "\"},",
		    100);
	cr_assert_eq(
		h_sh("chmod 644 '%s' '%s' && mkdir -m 700 '%s' && chown " GUARDIAN_USER ": '%s'",
		     h_path("site.json"), h_path("policy.json"), h_path("state"), h_path("state")),
		0);

	/* Without the capabilities: refused, saying what to do. */
	gd = start_as_user(false, h_path("nocaps.log"));
	cr_assert_gt(gd, 0);
	status = h_wait_exit(gd, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status 0x%x; log:\n%s", status,
		  h_read(h_path("nocaps.log")));
	cr_expect_gt(h_count(h_path("nocaps.log"), "need CAP_SETUID and CAP_SETGID"), 0, "%s",
		     h_read(h_path("nocaps.log")));
	cr_expect_gt(h_count(h_path("nocaps.log"), "start it as root"), 0);
	cr_expect_gt(h_count(h_path("nocaps.log"), "AmbientCapabilities=CAP_SETUID CAP_SETGID"), 0);

	/* With them, but the uplink's directories not its user's: it cannot chown, so refused,
	 * naming the directory and the chown. */
	gd = start_as_user(true, h_path("nodirs.log"));
	cr_assert_gt(gd, 0);
	status = h_wait_exit(gd, 10000);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status 0x%x; log:\n%s", status,
		  h_read(h_path("nodirs.log")));
	snprintf(want, sizeof(want),
		 "the uplink's directory %s must belong to its user " UPLINK_USER,
		 h_path("state/uplink"));
	cr_expect_gt(h_count(h_path("nodirs.log"), want), 0, "%s", h_read(h_path("nodirs.log")));
	snprintf(want, sizeof(want), "chown -R " UPLINK_USER ": %s", h_path("state/uplink"));
	cr_expect_gt(h_count(h_path("nodirs.log"), want), 0, "%s", h_read(h_path("nodirs.log")));

	/* Made as it says (and the serial line its): it runs, the children as their users. */
	cr_assert_eq(h_sh("cd '%s' && mkdir -m 700 uplink spool && chown " UPLINK_USER
			  ": uplink spool && chown " GUARDIAN_USER " \"$(readlink -f '%s')\"",
			  h_path("state"), bed.tty_gd),
		     0);
	it_bed_serialsim(&bed);
	gd = start_as_user(true, h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no Modbus telemetry; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"scale/weight\"", 15000), 0,
		     "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	plc = h_child_process(gd, "adapter-child", "plc1", 0, 5000);
	up = h_child_process(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)guardian_uid,
		 (unsigned)guardian_uid, (unsigned)guardian_uid, (unsigned)guardian_uid);
	cr_expect_str_eq(h_proc_status_line(gd, "Uid", v, sizeof(v)), want);
	cr_expect_str_eq(h_proc_status_line(gd, "CapPrm", v, sizeof(v)), "00000000000000e0");
	cr_expect_str_eq(h_proc_status_line(gd, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(gd, "CapAmb", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(gd, "CapInh", v, sizeof(v)), "0000000000000000");
	/* The children: their users, no capability (the bounding set stays: clearing it needs
	 * CAP_SETPCAP, which a user does not get; nothing can be raised up to it). */
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)adapter_uid, (unsigned)adapter_uid,
		 (unsigned)adapter_uid, (unsigned)adapter_uid);
	cr_expect_str_eq(h_proc_status_line(plc, "Uid", v, sizeof(v)), want);
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)uplink_uid, (unsigned)uplink_uid,
		 (unsigned)uplink_uid, (unsigned)uplink_uid);
	cr_expect_str_eq(h_proc_status_line(up, "Uid", v, sizeof(v)), want);
	cr_expect_str_eq(h_proc_status_line(plc, "CapPrm", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(plc, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(up, "CapPrm", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(up, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(h_proc_status_line(up, "NoNewPrivs", v, sizeof(v)), "1");
	cr_expect_str_eq(h_proc_status_line(plc, "Seccomp", v, sizeof(v)), "2");
	cr_expect_eq(h_stop(gd, 15000), 0, "guardian did not stop cleanly; log:\n%s",
		     h_read(h_path("guardian.log")));
	it_kill_leftover(plc, "adapter-child");
	it_kill_leftover(up, "uplink-child");
}

/* Attested: guardian hands the operational key and certificate to the uplink's child, which
 * keeps them in state_dir/uplink, its user's, and connects with them. */
Test(compartments_users, attested_the_uplink_child_keeps_its_credentials_as_its_user)
{
	struct h_attest b;
	struct stat st;
	char *site, *text, path[512];
	pid_t up;

	need_root_and_users();
	it_attest_up(&b, 86400);
	h_attest_site(&b, DEVICE, "");
	site = h_read(b.site);
	cr_assert_not_null(site);
	cr_assert_eq(strncmp(site, "{", 1), 0);
	cr_assert_geq(
		asprintf(&text, "{\"sandbox\":{\"uplink_user\":\"" UPLINK_USER "\"},%s", site + 1),
		0);
	h_write(b.site, text);
	free(text);
	free(site);
	cr_assert_eq(h_sh("chmod 711 '%s' && chmod 755 '%s'", h_dir(), h_path("pki")), 0);
	it_attest_enroll(&b);
	it_attest_serve(&b);
	it_attest_viewer(&b, "guardian/" DEVICE "/#", NULL);
	it_attest_guardian(&b);
	it_wait_messages(h_path("sub.out"), 5, 30000);
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"state\":\"attested\"", 10000), 0,
		     "health does not say attested; log:\n%s", h_read(h_path("guardian.log")));
	up = h_child_process(b.gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	expect_child_as(up, uplink_uid, "the uplink's child");
	snprintf(path, sizeof(path), "%s/uplink/op.key", b.state);
	cr_expect_eq(stat(path, &st), 0, "%s", path);
	cr_expect_eq(st.st_uid, uplink_uid, "%s belongs to uid %u", path, (unsigned)st.st_uid);
	cr_expect_eq(st.st_mode & 0777, 0600);
	it_kill_leftover(up, "uplink-child");
}
