/* test_update_delivery.c: signed updates delivered over MQTT on the attested bed: `guardian-service
 * release publish` reaches the device, which installs the bundle, exits 3 and is started in the
 * new slot by gd-supervise, attests again and is marked good, and `release status` shows it; a
 * bundle for another class is refused and reported; no device can publish an update. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-11"
#define CLASS  "press-line"

static void setup(void)
{
	it_pki(DEVICE);
	cr_assert_eq(
		h_sh("cd %s && %s/guardian-service release keygen -o root.pem >keygen.log 2>&1",
		     h_dir(), h_build()),
		0, "release keygen failed: %s", h_read(h_path("keygen.log")));
}

TestSuite(update_delivery, .init = setup, .fini = it_teardown, .timeout = 240);

static const char *in_state(const struct h_attest *b, const char *name)
{
	static char bufs[4][512];
	static int next;
	char *p = bufs[next++ % 4];

	snprintf(p, 512, "%s/%s", b->state, name);
	return p;
}

/* Runs one step, failing the test with its output. */
static void step(const char *what, const char *cmd)
{
	cr_assert_eq(h_sh("%s >%s 2>&1", cmd, h_path("step.log")), 0, "%s failed: %s", what,
		     h_read(h_path("step.log")));
}

/* The reference of what current names, measured as the supervisor runs it: from the slot. */
static void reference_of_current(const struct h_attest *b, const char *json)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "%s measure -c %s --json >%s && %s/guardian-service reference add -d %s %s",
		 in_state(b, "current/guardian"), in_state(b, "current/site.json"), h_path(json),
		 h_build(), b->svc, h_path(json));
	step("reference", cmd);
}

/*
 * The attested bed with slots: the site trusts root.pub.pem for class CLASS, slot a made from
 * it, the device enrolled and slot a's reference recorded, the service serving, a viewer on the
 * device's telemetry listener topics (sub.out).
 */
static void bed(struct h_attest *b)
{
	char cmd[2048], *site, text[8192];

	it_attest_up(b, 3600);
	h_attest_site(b, DEVICE, "");
	site = h_read(b->site);
	cr_assert_not_null(site);
	snprintf(text, sizeof(text),
		 "{\"update\":{\"keys\":[\"root.pub.pem\"],\"device_class\":\"" CLASS "\","
		 "\"gate_timeout_s\":60},%s",
		 site + 1);
	free(site);
	h_write(b->site, text);
	snprintf(cmd, sizeof(cmd), "%s/guardian update init -c %s", h_build(), b->site);
	step("update init", cmd);
	snprintf(cmd, sizeof(cmd), "%s/guardian provision -c %s", h_build(),
		 in_state(b, "current/site.json"));
	step("provision", cmd);
	snprintf(cmd, sizeof(cmd),
		 "%s/guardian-service enroll -d %s %s/identity.csr -o %s/identity.crt", h_build(),
		 b->svc, b->state, b->state);
	step("enroll", cmd);
	reference_of_current(b, "ref-a.json");
	it_attest_serve(b);
	it_attest_viewer(b, "guardian/" DEVICE "/#", NULL);
}

/* A bundle 'name' in the work directory of 'files' (space-separated paths). */
static void sign(const char *name, int version, const char *class, const char *files)
{
	cr_assert_eq(h_sh("cd %s && %s/guardian-service release sign -o %s --version %d --class %s "
			  "--key root.pem %s >sign.log 2>&1",
			  h_dir(), h_build(), name, version, class, files),
		     0, "release sign failed: %s", h_read(h_path("sign.log")));
}

/* v<version>/policy.json: the policy of the work directory changed by one byte. */
static void new_policy(int version)
{
	char dir[64], path[80], *policy, text[8192];

	snprintf(dir, sizeof(dir), "v%d", version);
	snprintf(path, sizeof(path), "v%d/policy.json", version);
	policy = h_read(h_path("policy.json"));
	cr_assert_not_null(policy);
	snprintf(text, sizeof(text), "%s ", policy);
	free(policy);
	cr_assert_eq(h_sh("mkdir -p %s", h_path(dir)), 0);
	h_write(h_path(path), text);
}

/* `release status -d SVC --json`, parsed (cJSON_Delete): the entry of DEVICE, in *entry. */
static cJSON *status_json(const struct h_attest *b, const cJSON **entry)
{
	char *text;
	cJSON *doc, *e;

	cr_assert_eq(h_sh("%s/guardian-service release status -d %s --json >%s 2>&1", h_build(),
			  b->svc, h_path("status.json")),
		     0, "%s", h_read(h_path("status.json")));
	text = h_read(h_path("status.json"));
	doc = text ? cJSON_Parse(text) : NULL;
	cr_assert(cJSON_IsArray(doc), "release status --json: %s", text);
	free(text);
	*entry = NULL;
	cJSON_ArrayForEach (e, doc) {
		const cJSON *dev = cJSON_GetObjectItemCaseSensitive(e, "device");

		if (cJSON_IsString(dev) && strcmp(dev->valuestring, DEVICE) == 0)
			*entry = e;
	}
	cr_assert_not_null(*entry, "release status --json has no " DEVICE);
	return doc;
}

/* The store's record of what was published to DEVICE, as `release status --json` shows it:
 * 'version' (-1: none), withdrawn, pending; and the text's PUBLISHED and STATE columns. */
static void expect_published(const struct h_attest *b, int version, bool withdrawn, bool pending,
			     const char *columns)
{
	const cJSON *e, *v, *h;
	cJSON *doc = status_json(b, &e);
	char *text;

	v = cJSON_GetObjectItemCaseSensitive(e, "published_version");
	h = cJSON_GetObjectItemCaseSensitive(e, "published_sha256");
	if (version < 0) {
		cr_expect(cJSON_IsNull(v), "published_version is not null");
		cr_expect(cJSON_IsNull(h), "published_sha256 is not null");
	} else {
		cr_expect(cJSON_IsNumber(v) && v->valuedouble == version,
			  "published_version is not %d", version);
		cr_expect(cJSON_IsString(h) && strlen(h->valuestring) == 64,
			  "published_sha256 is not a SHA-256");
		cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "published_ts")),
			  "no published_ts");
	}
	cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "withdrawn")) == withdrawn,
		  "withdrawn is not %d", withdrawn);
	cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "pending")) == pending,
		  "pending is not %d", pending);
	/* The keys from before are still there. */
	cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(e, "update_version"));
	cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(e, "swversion"));
	cJSON_Delete(doc);
	cr_assert_eq(h_sh("%s/guardian-service release status -d %s >%s 2>&1", h_build(), b->svc,
			  h_path("status.out")),
		     0);
	text = h_read(h_path("status.out"));
	cr_expect(text != NULL && strstr(text, "PUBLISHED") != NULL && strstr(text, columns),
		  "release status does not show \"%s\":\n%s", columns, text);
	free(text);
}

/* guardian-service release publish -d SVC 'args'; its exit status, output in publish.log. */
static int publish(const struct h_attest *b, const char *args)
{
	return h_sh("cd %s && %s/guardian-service release publish -d %s %s >>publish.log 2>&1",
		    h_dir(), h_build(), b->svc, args);
}

/* gd-supervise running the unit's commands on the state directory. */
static pid_t supervise(const struct h_attest *b)
{
	char bin[512], pre[512], prog[512], site[512];
	const char *argv[] = { bin,    "-s",	       b->state, "--pre", pre,	"--watchdog-ms",
			       "5000", "--restart-ms", "200",	 "--",	  prog, "run",
			       "-c",   site,	       NULL };

	snprintf(bin, sizeof(bin), "%s/gd-supervise", h_build());
	snprintf(pre, sizeof(pre), "%s/guardian update prestart -s %s", h_build(), b->state);
	snprintf(prog, sizeof(prog), "%s", in_state(b, "current/guardian"));
	snprintf(site, sizeof(site), "%s", in_state(b, "current/site.json"));
	return h_spawn(h_path("supervise.log"), argv);
}

static void wait_log(const char *file, const char *needle, size_t n, int timeout_ms)
{
	cr_assert_eq(h_wait_count(h_path(file), needle, n, timeout_ms), 0,
		     "%s never held \"%s\" %zu times:\n%s\nservice log:\n%s", file, needle, n,
		     h_read(h_path(file)), h_read(h_path("service.log")));
}

/* update.json, parsed (cJSON_Delete). */
static cJSON *state_doc(const struct h_attest *b)
{
	char *text = h_read(in_state(b, "update.json"));
	cJSON *doc = text ? cJSON_Parse(text) : NULL;

	free(text);
	cr_assert_not_null(doc, "update.json does not parse");
	return doc;
}

Test(update_delivery, a_published_bundle_is_installed_restarted_into_and_marked_good)
{
	struct h_attest b;
	char target[64], *status;
	size_t before;
	ssize_t n;
	pid_t sup;
	cJSON *doc;

	bed(&b);
	sup = supervise(&b);
	cr_assert_gt(sup, 0);
	wait_log("supervise.log", "attested; certificate valid", 1, 30000);
	wait_log("supervise.log", "subscribed to guardian/" DEVICE "/update/bundle", 1, 15000);
	it_wait_messages(h_path("sub.out"), 2, 15000);
	/* Not installed yet: the service knows it runs no bundle. */
	cr_assert_eq(h_sh("%s/guardian-service release status -d %s >%s 2>&1", h_build(), b.svc,
			  h_path("status.out")),
		     0);
	cr_expect_eq(h_count(h_path("status.out"), DEVICE " "), 1, "%s",
		     h_read(h_path("status.out")));
	cr_expect_eq(h_count(h_path("status.out"), "0.1.0+u"), 0, "%s",
		     h_read(h_path("status.out")));
	expect_published(&b, -1, false, false, " -          -\n"); /* nothing published yet */
	/* Version 2: a new policy, published to the device. */
	new_policy(2);
	sign("v2.bundle", 2, CLASS, "v2/policy.json");
	cr_assert_eq(publish(&b, "v2.bundle --device " DEVICE), 0, "%s",
		     h_read(h_path("publish.log")));
	/* Recorded once the broker took it; pending until the device's evidence says version 2,
	 * accepted only once its reference is recorded (below). */
	expect_published(&b, 2, false, true, " 2          pending\n");
	{
		char *sum = NULL, *json = h_read(h_path("status.json"));

		cr_assert_eq(h_sh("sha256sum %s | cut -c1-64 >%s", h_path("v2.bundle"),
				  h_path("v2.sha256")),
			     0);
		sum = h_read(h_path("v2.sha256"));
		cr_assert_not_null(sum);
		sum[64] = '\0';
		cr_expect(json != NULL && strstr(json, sum) != NULL,
			  "the recorded hash is not the bundle's %s: %s", sum, json);
		free(sum);
		free(json);
	}
	/* Installed, exit 3, started again in slot b, on trial. */
	wait_log("supervise.log", "version 2 installed into slot b", 1, 20000);
	wait_log("supervise.log", "exit status 3", 1, 15000);
	wait_log("supervise.log", "version 2 in slot b is on trial", 1, 15000);
	n = readlink(in_state(&b, "current"), target, sizeof(target) - 1);
	cr_assert_gt(n, 0);
	target[n] = '\0';
	cr_expect_str_eq(target, "slots/b");
	/* The vendor publishes the reference of version 2: the next round passes the gate. */
	reference_of_current(&b, "ref-b.json");
	wait_log("supervise.log", "marked good", 1, 60000);
	/* The retained bundle arrived again once connected: passed over, not installed again. */
	wait_log("supervise.log", "the bundle delivered is version 2: the version", 1, 20000);
	doc = state_doc(&b);
	cr_expect_eq(it_json_num(doc, "floor"), 2);
	cr_expect_eq(it_json_num(doc, "good.version"), 2);
	cJSON_Delete(doc);
	cr_expect_eq(h_count(h_path("supervise.log"), "installed into slot"), 1,
		     "installed more than once:\n%s", h_read(h_path("supervise.log")));
	/* Telemetry goes on. */
	before = h_count(h_path("sub.out"), "/telemetry ");
	it_wait_messages(h_path("sub.out"), before + 3, 15000);
	/* The service saw version 2 in the evidence. */
	cr_assert_eq(h_sh("%s/guardian-service release status -d %s >%s 2>&1", h_build(), b.svc,
			  h_path("status.out")),
		     0);
	status = h_read(h_path("status.out"));
	cr_expect(strstr(status, "0.1.0+u2") != NULL, "%s", status);
	free(status);
	cr_assert_eq(h_sh("%s/guardian-service release status -d %s --json >%s 2>&1", h_build(),
			  b.svc, h_path("status.json")),
		     0);
	cr_expect_eq(h_count(h_path("status.json"), "\"update_version\":2"), 1, "%s",
		     h_read(h_path("status.json")));
	/* Published 2, runs 2: no longer pending. */
	expect_published(&b, 2, false, false, " 2          current\n");
	cr_expect_eq(h_stop(sup, 15000) & 0xffff, 0, "gd-supervise did not stop cleanly");
}

/* Asks `guardian-service reports` until its output holds 'needle'. */
static void wait_reports(const struct h_attest *b, const char *needle, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	do {
		cr_assert_eq(h_sh("%s/guardian-service reports -d %s --device " DEVICE " >%s 2>&1",
				  h_build(), b->svc, h_path("reports.out")),
			     0, "%s", h_read(h_path("reports.out")));
		if (h_count(h_path("reports.out"), needle) > 0)
			return;
		h_sleep_ms(200);
	} while (h_ms() < end);
	cr_assert_fail("`guardian-service reports` never showed %s:\n%s\nguardian log:\n%s", needle,
		       h_read(h_path("reports.out")), h_read(h_path("guardian.log")));
}

/* The slot's program on the slot's config, as the unit runs it (without a supervisor). */
static pid_t run_current(const struct h_attest *b)
{
	char prog[512], site[512];
	const char *argv[] = { prog, "run", "-c", site, NULL };
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s", in_state(b, "current/guardian"));
	snprintf(site, sizeof(site), "%s", in_state(b, "current/site.json"));
	pid = h_spawn(h_path("guardian.log"), argv);
	cr_assert_gt(pid, 0);
	return pid;
}

/* mosquitto_pub with <prefix>.crt and .key, retained; its exit status. */
static int pub_as(int port, const char *prefix, const char *topic, const char *msg)
{
	return h_sh(
		"mosquitto_pub -h localhost -p %d --cafile %s/ca.crt --cert %s.crt --key %s.key "
		"-q 1 -r -t '%s' -m '%s' >>%s 2>&1",
		port, h_path("pki"), prefix, prefix, topic, msg, h_path("pub.log"));
}

Test(update_delivery, a_bundle_for_another_class_is_refused_and_reported)
{
	struct h_attest b;
	char *upd;

	bed(&b);
	b.gd = run_current(&b);
	wait_log("guardian.log", "subscribed to guardian/" DEVICE "/update/bundle", 1, 30000);
	new_policy(3);
	sign("other.bundle", 3, "other-line", "v3/policy.json");
	cr_assert_eq(publish(&b, "other.bundle --all"), 0, "%s", h_read(h_path("publish.log")));
	/* Published 3, refused by the device: pending, as long as it runs something else. */
	expect_published(&b, 3, false, true, " 3          pending\n");
	wait_log("guardian.log", "was refused (wrong_class)", 1, 15000);
	wait_reports(&b, "update_refused", 20000);
	cr_expect_geq(h_count(h_path("reports.out"), "wrong_class"), 1, "%s",
		      h_read(h_path("reports.out")));
	/* Nothing changed, and the device runs on. */
	upd = h_read(in_state(&b, "update.json"));
	cr_expect(upd != NULL && strstr(upd, "\"trial\":null") != NULL, "%s", upd);
	free(upd);
	cr_expect_eq(access(in_state(&b, "slots/b"), F_OK), -1, "slots/b appeared");
	/* Withdrawn: the retained message is gone, the device says so. */
	cr_assert_eq(publish(&b, "--withdraw --device " DEVICE), 0, "%s",
		     h_read(h_path("publish.log")));
	wait_log("guardian.log", "was withdrawn", 1, 15000);
	/* Withdrawn, the version kept on record; nothing pending. */
	expect_published(&b, 3, true, false, " withdrawn  -\n");
	cr_expect_eq(h_count(h_path("guardian.log"), "was refused"), 1,
		     "the refusal was not said once:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_stop(b.gd, 10000), 0);
	/* A publish the broker never acknowledged is not recorded: the withdrawal stays. */
	h_stop(b.broker, 10000);
	b.broker = 0;
	cr_assert_neq(publish(&b, "other.bundle --device " DEVICE), 0,
		      "a publish with no broker succeeded: %s", h_read(h_path("publish.log")));
	expect_published(&b, 3, true, false, " withdrawn  -\n");
}

/* An operational certificate for 'cn' made with the service's CA, as <work dir>/<prefix>.crt. */
static void make_op_cert(const struct h_attest *b, const char *cn, const char *prefix)
{
	cr_assert_eq(h_sh("cd %s && openssl ecparam -name prime256v1 -genkey -noout -out %s.key "
			  "2>/dev/null && openssl req -new -key %s.key -subj /CN=%s -out %s.csr && "
			  "printf 'extendedKeyUsage=clientAuth\\n' >%s.ext && openssl x509 -req "
			  "-in %s.csr -CA %s/op-ca.crt -CAkey %s/op-ca.key -CAcreateserial "
			  "-CAserial %s.srl -days 1 -extfile %s.ext -out %s.crt 2>/dev/null",
			  h_dir(), prefix, prefix, cn, prefix, prefix, prefix, b->svc, b->svc,
			  prefix, prefix, prefix),
		     0, "openssl failed for %s", cn);
}

Test(update_delivery, no_device_can_publish_an_update)
{
	struct h_attest b;
	char op[300], other[300], viewer[300];

	bed(&b);
	b.gd = run_current(&b);
	wait_log("guardian.log", "attested; certificate valid", 1, 30000);
	wait_log("guardian.log", "subscribed to guardian/" DEVICE "/update/bundle", 1, 15000);
	make_op_cert(&b, "press-12", "other-op");
	cr_assert_eq(h_sh("cp %s/op.crt %s/dev-op.crt && cp %s/op.key %s/dev-op.key", b.state,
			  h_dir(), b.state, h_dir()),
		     0);
	snprintf(op, sizeof(op), "%s/dev-op", h_dir());
	snprintf(other, sizeof(other), "%s/other-op", h_dir());
	snprintf(viewer, sizeof(viewer), "%s/viewer", b.brk);
	/* Each device reads its own update topics (the ears; no reading another's). */
	cr_assert_gt(h_subscribe_as(b.tport, "guardian/" DEVICE "/update/#", h_path("dev.out"), op,
				    "dev-ears", false),
		     0);
	cr_assert_gt(h_subscribe_as(b.tport, "guardian/press-12/update/#", h_path("other.out"),
				    other, "other-ears", false),
		     0);
	/* A device writes an update to itself and to another; the backend tries too. */
	pub_as(b.tport, op, "guardian/" DEVICE "/update/bundle", "forged-self");
	pub_as(b.tport, op, "guardian/press-12/update/bundle", "forged-other");
	pub_as(b.tport, other, "guardian/" DEVICE "/update/bundle", "forged-by-other");
	pub_as(b.tport, viewer, "guardian/" DEVICE "/update/bundle", "forged-by-viewer");
	/* The device's identity certificate on the attestation listener. */
	{
		char id[300];

		snprintf(id, sizeof(id), "%s/identity", b.state);
		pub_as(b.aport, id, "guardian/" DEVICE "/update/bundle", "forged-by-identity");
	}
	/* The control: the service publishes, and each device's ears hear it. */
	new_policy(2);
	sign("v2.bundle", 2, "other-line", "v2/policy.json");
	cr_assert_eq(publish(&b, "v2.bundle --device press-12 --device " DEVICE), 0, "%s",
		     h_read(h_path("publish.log")));
	cr_assert_eq(h_wait_contains(h_path("other.out"), "guardian-bundle 1", 10000), 0,
		     "the service's bundle never reached press-12's reader:\n%s",
		     h_read(h_path("other.out")));
	cr_assert_eq(h_wait_contains(h_path("dev.out"), "guardian-bundle 1", 10000), 0,
		     "the service's bundle never reached " DEVICE "'s reader:\n%s",
		     h_read(h_path("dev.out")));
	cr_expect_eq(h_count(h_path("dev.out"), "forged-"), 0, "%s", h_read(h_path("dev.out")));
	cr_expect_eq(h_count(h_path("other.out"), "forged-"), 0, "%s", h_read(h_path("other.out")));
	/* guardian saw only the service's bundle (refused: another class), nothing forged. */
	wait_log("guardian.log", "was refused (wrong_class)", 1, 15000);
	cr_expect_eq(h_count(h_path("guardian.log"), "malformed"), 0, "%s",
		     h_read(h_path("guardian.log")));
	h_stop(b.gd, 10000);
}
