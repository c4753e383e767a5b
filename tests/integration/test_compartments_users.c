/* test_compartments_users.c: the children under users of their own ("sandbox": {"adapter_user",
 * "uplink_user"}): what /proc says of each child and of guardian, telemetry and a write through
 * them, the uplink's spool across a kill of its child, and the configs refused at start. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness/harness.h"
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

/* The rest of the line 'name' of /proc/<pid>/status, tabs and all ("" if absent). */
static const char *status_line(pid_t pid, const char *name, char *out, size_t cap)
{
	char path[64], key[64], *text;
	const char *at;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = h_read(path);
	if (text == NULL)
		return out;
	snprintf(key, sizeof(key), "\n%s:", name);
	at = strstr(text, key);
	if (at != NULL) {
		at += strlen(key);
		at += strspn(at, " \t");
		snprintf(out, cap, "%.*s", (int)strcspn(at, "\n"), at);
	}
	free(text);
	return out;
}

/* The live child of 'parent' whose argv[1] is 'kind' and, for adapters, argv[4] is 'name'. */
static pid_t child_of(pid_t parent, const char *kind, const char *name)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	cr_assert_not_null(d);
	while (found == 0 && (e = readdir(d)) != NULL) {
		char path[300], buf[4096], state;
		const char *args[6] = { 0 };
		int ppid = 0, n = 0;
		FILE *f;
		size_t len;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		if (strrchr(buf, ')') == NULL ||
		    sscanf(strrchr(buf, ')') + 1, " %c %d", &state, &ppid) != 2 || ppid != parent ||
		    state == 'Z')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		for (size_t at = 0; at < len && n < 6; at += strlen(buf + at) + 1)
			args[n++] = buf + at;
		if (n >= 2 && strcmp(args[1], kind) == 0 &&
		    (name == NULL || (n == 6 && strcmp(args[4], name) == 0)))
			found = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return found;
}

static pid_t wait_child(pid_t parent, const char *kind, const char *name, pid_t not, int ms)
{
	int64_t end = h_ms() + ms;
	pid_t p;

	while ((p = child_of(parent, kind, name)) == 0 || p == not ) {
		if (h_ms() >= end)
			return 0;
		h_sleep_ms(50);
	}
	return p;
}

/* Runs as 'uid' (real, effective, saved and file system), no capability at all, no_new_privs,
 * a seccomp filter. */
static void expect_child_as(pid_t pid, uid_t uid, const char *what)
{
	char v[128], want[128];

	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)uid, (unsigned)uid, (unsigned)uid,
		 (unsigned)uid);
	cr_expect_str_eq(status_line(pid, "Uid", v, sizeof(v)), want, "%s: Uid is %s", what, v);
	cr_expect_str_eq(status_line(pid, "CapEff", v, sizeof(v)), "0000000000000000", "%s", what);
	cr_expect_str_eq(status_line(pid, "CapPrm", v, sizeof(v)), "0000000000000000", "%s", what);
	cr_expect_str_eq(status_line(pid, "CapInh", v, sizeof(v)), "0000000000000000", "%s", what);
	cr_expect_str_eq(status_line(pid, "CapAmb", v, sizeof(v)), "0000000000000000", "%s", what);
	cr_expect_str_eq(status_line(pid, "CapBnd", v, sizeof(v)), "0000000000000000", "%s", what);
	cr_expect_str_eq(status_line(pid, "NoNewPrivs", v, sizeof(v)), "1", "%s", what);
	cr_expect_str_eq(status_line(pid, "Seccomp", v, sizeof(v)), "2", "%s", what);
}

static int bport;

/* The uplink's files readable by UPLINK_USER: the work directory searchable, its key its own. */
static void pki_for_the_uplink_user(void)
{
	cr_assert_eq(h_sh("chmod 711 '%s' && chmod 755 '%s' && chown %s '%s/device.key'", h_dir(),
			  h_path("pki"), UPLINK_USER, h_path("pki")),
		     0);
}

/* The site with 'sandbox' (a top-level member with its comma, or ""), written to site.json. */
static void write_site(const char *sandbox, int mport, const char *tty_gd)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"function_codes\":{\"plc1\":[1,2,3,4,6]},"
		 "\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\"},"
		 "{\"points\":\"scale/*\",\"action\":\"allow\"}],"
		 "\"downlink\":[{\"points\":\"plc1/setpoint\",\"action\":\"allow\","
		 "\"range\":{\"min\":0,\"max\":1000}}]}",
		 bport);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "%s"
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":100,\"points\":["
		 "{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"setpoint\",\"address\":120,\"writable\":true}]},"
		 "{\"name\":\"scale\",\"type\":\"uart\",\"device\":\"%s\",\"baud\":115200,"
		 "\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\r\\n\",\"max_len\":80},"
		 "\"checksum\":{\"type\":\"xor8\",\"encoding\":\"hex\",\"separator\":\"*\"},"
		 "\"timeout_ms\":2000,\"backoff_min_ms\":200,\"backoff_max_ms\":1000,"
		 "\"regex\":\"^ST,(OK|OVL),([-+0-9.]+),kg,([-+0-9.]+),C,([0-9]+)$\","
		 "\"points\":[{\"name\":\"status\",\"group\":1,\"type\":\"string\"},"
		 "{\"name\":\"weight\",\"group\":2,\"unit\":\"kg\"}]}]}",
		 sandbox, bport, mport, tty_gd);
	h_write(h_path("site.json"), text);
}

/* Broker, viewer, plcsim (setpoint 500 at 120), serialsim on a pty pair, guardian with 'sandbox';
 * returns guardian once telemetry of both adapters arrived. */
static pid_t start_all(const char *sandbox)
{
	int mport = h_free_port();
	char simargs[512], bin[300], site[256], tty_sim[256], tty_gd[256];
	const char *argv[] = { bin, "run", "-c", site, NULL };
	pid_t gd;

	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(tty_sim, sizeof(tty_sim), "%s", h_path("tty-sim"));
	snprintf(tty_gd, sizeof(tty_gd), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(tty_sim, tty_gd), 0, "socat could not make a pty pair");
	snprintf(simargs, sizeof(simargs),
		 "--device %s --mode text --checksum xor8 --interval-ms 100", tty_sim);
	{
		char cmd[1024];
		const char *sh[] = { "/bin/sh", "-c", cmd, NULL };

		snprintf(cmd, sizeof(cmd), "exec %s/serialsim %s", h_build(), simargs);
		cr_assert_gt(h_spawn(h_path("sim.log"), sh), 0);
	}
	write_site(sandbox, mport, tty_gd);
	snprintf(site, sizeof(site), "%s", h_path("site.json"));
	snprintf(bin, sizeof(bin), "%s/guardian", h_build());
	gd = h_spawn(h_path("guardian.log"), argv);
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no Modbus telemetry; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"scale/weight\"", 15000), 0,
		     "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	return gd;
}

static void send_command(const char *json)
{
	char file[256], pki[256];

	snprintf(file, sizeof(file), "%s", h_path("cmd.json"));
	snprintf(pki, sizeof(pki), "%s", h_path("pki"));
	h_write(file, json);
	cr_assert_eq(h_sh("mosquitto_pub -h localhost -p %d --cafile '%s/ca.crt' --cert "
			  "'%s/viewer.crt' --key '%s/viewer.key' -q 1 -t 'guardian/" DEVICE
			  "/cmd' -f '%s'",
			  bport, pki, pki, pki, file),
		     0);
}

/* The telemetry seqs the viewer got: how many of 1..*max never arrived. */
static size_t seq_holes(uint64_t *max)
{
	static const char topic[] = "guardian/" DEVICE "/telemetry ";
	char *text = h_read(h_path("sub.out"));
	unsigned char *seen = calloc(1 << 20, 1);
	size_t holes = 0;

	cr_assert_not_null(seen);
	*max = 0;
	for (char *line = text; line != NULL && *line != '\0';) {
		char *eol = strchr(line, '\n');

		if (eol != NULL)
			*eol = '\0';
		if (strncmp(line, topic, sizeof(topic) - 1) == 0) {
			cJSON *doc = cJSON_Parse(line + sizeof(topic) - 1);
			double seq = doc != NULL ? it_json_num(doc, "seq") : -1;

			if (seq >= 1 && seq < (1 << 20)) {
				seen[(size_t)seq] = 1;
				if ((uint64_t)seq > *max)
					*max = (uint64_t)seq;
			}
			cJSON_Delete(doc);
		}
		line = eol != NULL ? eol + 1 : NULL;
	}
	for (uint64_t s = 1; s <= *max; s++)
		holes += seen[s] == 0;
	free(seen);
	free(text);
	return holes;
}

/* Children guardian should have taken with it, killed at the end should it have not. */
static void kill_leftover(pid_t p, const char *kind)
{
	char path[64], *cmd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p);
	cmd = h_read(path);
	if (cmd != NULL && cmd[0] != '\0' && strstr(cmd + strlen(cmd) + 1, kind) != NULL)
		kill(p, SIGKILL);
	free(cmd);
}

Test(compartments_users, each_child_runs_as_its_own_user_with_no_capability)
{
	pid_t gd, plc, scale, up, up2;
	struct stat st;
	char v[128];
	uint64_t max = 0;
	size_t holes, before;

	need_root_and_users();
	pki_for_the_uplink_user();
	gd = start_all("\"sandbox\":{\"adapter_user\":\"" ADAPTER_USER
		       "\",\"uplink_user\":\"" UPLINK_USER "\"},");
	plc = wait_child(gd, "adapter-child", "plc1", 0, 5000);
	scale = wait_child(gd, "adapter-child", "scale", 0, 5000);
	up = wait_child(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(scale, 0, "no child runs scale; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	expect_child_as(plc, adapter_uid, "plc1's child");
	expect_child_as(scale, adapter_uid, "scale's child");
	expect_child_as(up, uplink_uid, "the uplink's child");
	/* guardian: root still (no "user"), holding CAP_SETUID, CAP_SETGID and CAP_KILL permitted
	 * only. */
	cr_expect_str_eq(status_line(gd, "CapPrm", v, sizeof(v)), "00000000000000e0");
	cr_expect_str_eq(status_line(gd, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(gd, "CapInh", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(gd, "CapAmb", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(gd, "CapBnd", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(gd, "NoNewPrivs", v, sizeof(v)), "1");
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
	send_command("{\"id\":\"w1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":600", 10000),
		     0, "the accepted write never reached the PLC; log:\n%s",
		     h_read(h_path("guardian.log")));

	/* The uplink's child killed: another, as its user, takes its spool over; nothing lost. */
	cr_assert_eq(kill(up, SIGKILL), 0);
	up2 = wait_child(gd, "uplink-child", NULL, up, 10000);
	cr_assert_gt(up2, 0, "the uplink child was not started again; log:\n%s",
		     h_read(h_path("guardian.log")));
	expect_child_as(up2, uplink_uid, "the uplink's second child");
	before = h_count(h_path("sub.out"), "/telemetry ");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "/telemetry ", before + 10, 15000), 0,
		     "telemetry did not resume; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_stop(gd, 15000), 0, "guardian did not stop cleanly; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"reason\":\"stopped\"", 10000), 0);
	holes = seq_holes(&max);
	cr_expect_gt(max, 10);
	cr_expect_eq(holes, 0, "%zu of seq 1..%llu never arrived; log:\n%s", holes,
		     (unsigned long long)max, h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "sandbox: denied"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
	kill_leftover(plc, "adapter-child");
	kill_leftover(scale, "adapter-child");
	kill_leftover(up2, "uplink-child");
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
	plc = wait_child(gd, "adapter-child", "plc1", 0, 5000);
	up = wait_child(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(kill(plc, SIGSTOP), 0);
	cr_assert_eq(kill(up, SIGSTOP), 0);
	cr_expect_eq(h_stop(gd, 30000), 0, "guardian did not stop with its children hung; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "cannot kill"), 0, "log:\n%s",
		     h_read(h_path("guardian.log")));
	kill_leftover(plc, "adapter-child");
	kill_leftover(up, "uplink-child");
}

/* guardian run -c site.json with 'sandbox' exits 1 at start, its log (and guardian check's
 * output) saying 'needle'. */
static void expect_refused(const char *sandbox, const char *needle)
{
	char bin[300], site[256], out[256];
	const char *argv[] = { bin, "run", "-c", site, NULL };
	pid_t gd;
	int status;

	bport = h_free_port();
	write_site(sandbox, h_free_port(), "/dev/null");
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
		 caps ? "--inh-caps=+setuid,+setgid,+kill --ambient-caps=+setuid,+setgid,+kill" : "", h_build(),
		 h_path("site.json"));
	return h_spawn(log, sh);
}

Test(compartments_users, started_as_a_user_it_needs_the_three_capabilities_and_the_directories)
{
	const struct passwd *pw;
	uid_t guardian_uid;
	pid_t gd, plc, up;
	int mport, status;
	char v[128], want[128], tty_sim[256], tty_gd[256], simargs[512];

	need_root_and_users();
	pw = getpwnam(GUARDIAN_USER);
	if (pw == NULL || system("setpriv --help >/dev/null 2>&1") != 0)
		cr_skip_test("no user " GUARDIAN_USER " or no setpriv on this machine");
	guardian_uid = pw->pw_uid;
	pki_for_the_uplink_user();
	/* What guardian's user reads: the site, the policy, the CA; its state directory. */
	mport = h_free_port();
	bport = h_free_port();
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(tty_sim, sizeof(tty_sim), "%s", h_path("tty-sim"));
	snprintf(tty_gd, sizeof(tty_gd), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(tty_sim, tty_gd), 0, "socat could not make a pty pair");
	write_site("\"sandbox\":{\"adapter_user\":\"" ADAPTER_USER
		   "\",\"uplink_user\":\"" UPLINK_USER "\"},",
		   mport, tty_gd);
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
			  h_path("state"), tty_gd),
		     0);
	snprintf(simargs, sizeof(simargs),
		 "--device %s --mode text --checksum xor8 --interval-ms 100", tty_sim);
	{
		char cmd[1024];
		const char *sh[] = { "/bin/sh", "-c", cmd, NULL };

		snprintf(cmd, sizeof(cmd), "exec %s/serialsim %s", h_build(), simargs);
		cr_assert_gt(h_spawn(h_path("sim.log"), sh), 0);
	}
	gd = start_as_user(true, h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"plc1/setpoint\",\"value\":500", 15000),
		     0, "no Modbus telemetry; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"scale/weight\"", 15000), 0,
		     "no serial telemetry; log:\n%s", h_read(h_path("guardian.log")));
	plc = wait_child(gd, "adapter-child", "plc1", 0, 5000);
	up = wait_child(gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(plc, 0, "no child runs plc1; log:\n%s", h_read(h_path("guardian.log")));
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)guardian_uid,
		 (unsigned)guardian_uid, (unsigned)guardian_uid, (unsigned)guardian_uid);
	cr_expect_str_eq(status_line(gd, "Uid", v, sizeof(v)), want);
	cr_expect_str_eq(status_line(gd, "CapPrm", v, sizeof(v)), "00000000000000e0");
	cr_expect_str_eq(status_line(gd, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(gd, "CapAmb", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(gd, "CapInh", v, sizeof(v)), "0000000000000000");
	/* The children: their users, no capability (the bounding set stays: clearing it needs
	 * CAP_SETPCAP, which a user does not get; nothing can be raised up to it). */
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)adapter_uid, (unsigned)adapter_uid,
		 (unsigned)adapter_uid, (unsigned)adapter_uid);
	cr_expect_str_eq(status_line(plc, "Uid", v, sizeof(v)), want);
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)uplink_uid, (unsigned)uplink_uid,
		 (unsigned)uplink_uid, (unsigned)uplink_uid);
	cr_expect_str_eq(status_line(up, "Uid", v, sizeof(v)), want);
	cr_expect_str_eq(status_line(plc, "CapPrm", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(plc, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(up, "CapPrm", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(up, "CapEff", v, sizeof(v)), "0000000000000000");
	cr_expect_str_eq(status_line(up, "NoNewPrivs", v, sizeof(v)), "1");
	cr_expect_str_eq(status_line(plc, "Seccomp", v, sizeof(v)), "2");
	cr_expect_eq(h_stop(gd, 15000), 0, "guardian did not stop cleanly; log:\n%s",
		     h_read(h_path("guardian.log")));
	kill_leftover(plc, "adapter-child");
	kill_leftover(up, "uplink-child");
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
	up = wait_child(b.gd, "uplink-child", NULL, 0, 5000);
	cr_assert_gt(up, 0, "no uplink child; log:\n%s", h_read(h_path("guardian.log")));
	expect_child_as(up, uplink_uid, "the uplink's child");
	snprintf(path, sizeof(path), "%s/uplink/op.key", b.state);
	cr_expect_eq(stat(path, &st), 0, "%s", path);
	cr_expect_eq(st.st_uid, uplink_uid, "%s belongs to uid %u", path, (unsigned)st.st_uid);
	cr_expect_eq(st.st_mode & 0777, 0600);
	kill_leftover(up, "uplink-child");
}
