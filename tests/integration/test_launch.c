/* test_launch.c: guardian-launch with swtpm and a probe program in guardian's place: the log it
 * measured is the real files' digests, the PCR and the quote hold its fold, signals reach the
 * child, the exit code comes back, and a config or key that is not there stops it before
 * anything runs. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

static void setup(void)
{
	/* What the TPM refuses on purpose is in the launcher's message, not tpm2-tss's log. */
	setenv("TSS2_LOG", "all+NONE", 1);
}

TestSuite(launch, .init = setup, .fini = it_teardown, .timeout = 90);

/* A device's files: site.json (attestation.tpm 'tpm', "" for none), policy, two CAs, state/. */
struct dev {
	int port;
	char tcti[64], site[256], state[256], out[256], probe[256], launcher[256];
};

static void dev_files(struct dev *d, const char *tpm_member)
{
	char text[2048];

	snprintf(d->site, sizeof(d->site), "%s", h_path("site.json"));
	snprintf(d->state, sizeof(d->state), "%s", h_path("state"));
	snprintf(d->out, sizeof(d->out), "%s", h_path("out"));
	snprintf(d->probe, sizeof(d->probe), "%s/launch-probe", h_build());
	snprintf(d->launcher, sizeof(d->launcher), "%s/guardian-launch", h_build());
	mkdir(d->state, 0700);
	mkdir(d->out, 0700);
	mkdir(h_path("pki"), 0700);
	h_write(h_path("pki/ca.crt"), "the uplink's CA\n");
	h_write(h_path("pki/attest-ca.crt"), "the attestation listener's CA\n");
	h_write(h_path("policy.json"), "{\"version\":1,\"uplink\":[]}\n");
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"d\",\"policy\":\"policy.json\",\"state_dir\":\"state\",\n"
		 "\"attestation\":{\"host\":\"localhost\",\"port\":1,\"ca_file\":"
		 "\"pki/attest-ca.crt\"%s},\n"
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"./pki/"
		 "ca.crt\"},\"adapters\":[]}\n",
		 tpm_member);
	h_write(d->site, text);
}

/* swtpm up, the files, and the AK made in it (as guardian provision would). */
static void dev_up(struct dev *d)
{
	char member[128];

	H_NEED_SWTPM();
	memset(d, 0, sizeof(*d));
	cr_assert_gt(h_swtpm(&d->port), 0, "swtpm did not start (see %s)", h_dir());
	snprintf(d->tcti, sizeof(d->tcti), "%s", h_swtpm_tcti(d->port));
	snprintf(member, sizeof(member), ",\"tpm\":{\"tcti\":\"%s\"}", d->tcti);
	dev_files(d, member);
	cr_assert_eq(h_sh("'%s' provision '%s' '%s/identity-ak.tpm' >>%s 2>&1", d->probe, d->tcti,
			  d->state, h_path("steps.log")),
		     0, "the probe could not make the AK (see steps.log)");
}

/* guardian-launch [extra launcher args] -- probe run -c site.json [probe args]. */
static pid_t launch(const struct dev *d, const char *user, const char *probe_args)
{
	const char *argv[24];
	char *copy = strdup(probe_args);
	size_t n = 0;
	pid_t pid;

	argv[n++] = d->launcher;
	if (user != NULL) {
		argv[n++] = "--user";
		argv[n++] = user;
	}
	argv[n++] = "--";
	argv[n++] = d->probe;
	argv[n++] = "run";
	argv[n++] = "-c";
	argv[n++] = d->site;
	for (char *save = NULL, *t = strtok_r(copy, " ", &save); t != NULL && n < 23;
	     t = strtok_r(NULL, " ", &save))
		argv[n++] = t;
	argv[n] = NULL;
	pid = h_spawn(h_path("launch.log"), argv);
	free(copy);
	cr_assert_gt(pid, 0);
	return pid;
}

/* The launcher's exit code, after it ended by itself within 20 s. */
static int exit_code(pid_t pid)
{
	int status = h_wait_exit(pid, 20000);

	cr_assert_neq(status, -1, "guardian-launch did not exit; its log:\n%s",
		      h_read(h_path("launch.log")));
	cr_assert(WIFEXITED(status), "guardian-launch was killed by signal %d",
		  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return WEXITSTATUS(status);
}

/* SHA-256 of a file, in hex, by sha256sum: an outside opinion. */
static void sha_file(const char *path, char hex[65])
{
	char *text;

	cr_assert_eq(h_sh("sha256sum '%s' >'%s'", path, h_path("sha.out")), 0, "sha256sum %s",
		     path);
	text = h_read(h_path("sha.out"));
	cr_assert_not_null(text);
	snprintf(hex, 65, "%.64s", text);
	free(text);
}

static void sha_bytes(const uint8_t *data, size_t n, char hex[65])
{
	FILE *f = fopen(h_path("bytes.bin"), "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, n, f), n);
	fclose(f);
	sha_file(h_path("bytes.bin"), hex);
}

static void unhex(const char *hex, uint8_t *out, size_t n)
{
	cr_assert_geq(strlen(hex), 2 * n, "short hex %s", hex);
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;

		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static const char *str_at(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(item) ? item->valuestring : "";
}

/* Item 'i' of the log is 'type', named by the real path of 'path', with the file's digest. */
static void expect_item(const cJSON *items, int i, const char *type, const char *path)
{
	const cJSON *item = cJSON_GetArrayItem(items, i);
	char real[PATH_MAX], hex[65];

	cr_assert_not_null(item, "no item %d", i);
	cr_assert_not_null(realpath(path, real), "%s", path);
	sha_file(path, hex);
	cr_expect_str_eq(str_at(item, "type"), type, "item %d", i);
	cr_expect_str_eq(str_at(item, "name"), real, "item %d", i);
	cr_expect_str_eq(str_at(item, "sha256"), hex, "item %d (%s)", i, real);
}

Test(launch, measures_the_real_files_and_the_pcr_and_quote_hold_the_fold)
{
	char path[300], hex[65], pcr[128] = "", *text;
	uint8_t reg[32], fold[32] = { 0 }, pair[64], attest[1024];
	const cJSON *items, *item;
	cJSON *log;
	size_t attest_len, off;
	struct dev d;
	FILE *f;

	dev_up(&d);
	snprintf(path, sizeof(path), "--out %s", d.out);
	cr_assert_eq(exit_code(launch(&d, NULL, path)), 0, "its log:\n%s",
		     h_read(h_path("launch.log")));

	/* The log: each item the real path and the digest sha256sum gives, in guardian's order. */
	snprintf(path, sizeof(path), "%s/log.json", d.out);
	text = h_read(path);
	cr_assert_not_null(text, "the probe wrote no log; launch.log:\n%s",
			   h_read(h_path("launch.log")));
	log = cJSON_Parse(text);
	free(text);
	items = cJSON_GetObjectItemCaseSensitive(log, "measurements");
	cr_assert_eq(cJSON_GetArraySize(items), 5);
	expect_item(items, 0, "exe", d.probe);
	expect_item(items, 1, "config", d.site);
	expect_item(items, 2, "policy", h_path("policy.json"));
	expect_item(items, 3, "file", h_path("pki/ca.crt"));
	expect_item(items, 4, "file", h_path("pki/attest-ca.crt"));

	/* The register is the fold of those digests... */
	cJSON_ArrayForEach (item, items) {
		memcpy(pair, fold, 32);
		unhex(str_at(item, "sha256"), pair + 32, 32);
		sha_bytes(pair, 64, hex);
		unhex(hex, fold, 32);
	}
	unhex(str_at(log, "register"), reg, 32);
	cr_expect_arr_eq(reg, fold, 32, "the register is not the fold of the items");

	/* ...and what PCR 23 holds, read over a second connection once the launcher is gone. */
	cr_assert_eq(h_sh("'%s' pcrread '%s' 23 >'%s' 2>&1", d.probe, d.tcti, h_path("pcr.out")),
		     0);
	text = h_read(h_path("pcr.out"));
	snprintf(pcr, sizeof(pcr), "%.64s", text != NULL ? text : "");
	free(text);
	cr_expect_str_eq(pcr, str_at(log, "register"), "PCR 23 is not the register");

	/* The quote: magic, type, the probe's qualifying bytes 0..31, pcrDigest = SHA-256(PCR). */
	snprintf(path, sizeof(path), "%s/attest.bin", d.out);
	f = fopen(path, "rb");
	cr_assert_not_null(f);
	attest_len = fread(attest, 1, sizeof(attest), f);
	fclose(f);
	cr_assert_gt(attest_len, 60);
	cr_expect_eq((uint32_t)attest[0] << 24 | (uint32_t)attest[1] << 16 |
			     (uint32_t)attest[2] << 8 | attest[3],
		     0xFF544347u);
	cr_expect_eq(attest[4] << 8 | attest[5], 0x8018);
	off = 8 + (size_t)(attest[6] << 8 | attest[7]);
	cr_assert_eq(attest[off] << 8 | attest[off + 1], 32);
	for (int i = 0; i < 32; i++)
		cr_expect_eq(attest[off + 2 + i], i, "extraData byte %d", i);
	cr_assert_eq(attest[attest_len - 34] << 8 | attest[attest_len - 33], 32);
	sha_bytes(reg, 32, hex);
	unhex(hex, pair, 32);
	cr_expect_arr_eq(attest + attest_len - 32, pair, 32,
			 "the quote's PCR digest is not SHA-256 of the register");
	/* Signed by the AK: openssl, another opinion. */
	cr_expect_eq(h_sh("openssl dgst -sha256 -verify %s/ak.pem -signature %s/sig.der "
			  "%s/attest.bin >>%s 2>&1",
			  d.out, d.out, d.out, h_path("steps.log")),
		     0, "openssl does not verify the quote with the AK");
	/* The probe held stdio and the broker's socket: no TPM connection. */
	text = h_read(h_path("launch.log"));
	{
		const char *fds = strstr(text, "probe: fds");
		int n = 0;

		cr_assert_not_null(fds);
		for (const char *p = fds + 10; *p != '\n' && *p != '\0'; p++)
			n += *p == ' ';
		cr_expect_eq(n, 4, "the probe holds more than stdio and the broker: %.60s", fds);
	}
	free(text);
	cJSON_Delete(log);
}

/* The probe's pid, from its first line. */
static pid_t probe_pid(void)
{
	char *text = h_read(h_path("launch.log"));
	const char *at = text != NULL ? strstr(text, "probe: pid ") : NULL;
	pid_t pid = at != NULL ? (pid_t)atoi(at + 11) : -1;

	free(text);
	return pid;
}

Test(launch, stopping_signals_reach_the_child_and_its_status_comes_back)
{
	static const int sigs[] = { SIGTERM, SIGHUP };
	struct dev d;

	dev_up(&d);
	for (size_t i = 0; i < 2; i++) {
		pid_t pid, child;

		unlink(h_path("launch.log"));
		pid = launch(&d, NULL, "--wait");
		cr_assert_eq(h_wait_contains(h_path("launch.log"), "probe: answered", 10000), 0,
			     "%s", h_read(h_path("launch.log")));
		child = probe_pid();
		cr_assert_gt(child, 0);
		cr_assert_eq(kill(pid, sigs[i]), 0);
		cr_expect_eq(exit_code(pid), 128 + sigs[i], "after signal %d", sigs[i]);
		cr_expect(kill(child, 0) != 0 && errno == ESRCH, "the probe (%d) still runs",
			  (int)child);
	}
}

Test(launch, the_exit_code_passes_through)
{
	struct dev d;

	dev_up(&d);
	cr_expect_eq(exit_code(launch(&d, NULL, "--exit 7")), 7);
	cr_expect_eq(exit_code(launch(&d, NULL, "--exit 0")), 0);
}

Test(launch, a_missing_attestation_key_stops_it_before_anything_runs)
{
	struct dev d;

	memset(&d, 0, sizeof(d));
	dev_files(&d, ",\"tpm\":{\"tcti\":\"swtpm:host=127.0.0.1,port=1\"}");
	cr_expect_eq(exit_code(launch(&d, NULL, "")), 1);
	cr_expect_eq(h_count(h_path("launch.log"), "identity-ak.tpm"), 1, "%s",
		     h_read(h_path("launch.log")));
	cr_expect_eq(h_count(h_path("launch.log"), "run guardian provision"), 1);
	cr_expect_eq(h_count(h_path("launch.log"), "probe:"), 0, "the probe ran");
}

Test(launch, a_config_without_attestation_tpm_is_refused)
{
	struct dev d;

	memset(&d, 0, sizeof(d));
	dev_files(&d, "");
	cr_expect_eq(exit_code(launch(&d, NULL, "")), 1);
	cr_expect_eq(h_count(h_path("launch.log"), "attestation.tpm: missing"), 1, "%s",
		     h_read(h_path("launch.log")));
	cr_expect_eq(h_count(h_path("launch.log"), "probe:"), 0, "the probe ran");
}

Test(launch, usage_errors_name_the_argument)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "%s/guardian-launch", h_build());
	cr_expect_eq(h_sh("%s --user >%s 2>&1", cmd, h_path("u1")), 2);
	cr_expect_eq(h_count(h_path("u1"), "--user: missing the user name"), 1);
	cr_expect_eq(h_sh("%s --bogus -- /bin/true >%s 2>&1", cmd, h_path("u2")), 2);
	cr_expect_eq(h_count(h_path("u2"), "unknown option \"--bogus\""), 1);
	cr_expect_eq(h_sh("%s -- /bin/true run >%s 2>&1", cmd, h_path("u3")), 2);
	cr_expect_eq(h_count(h_path("u3"), "/bin/true: its command line has no -c CONFIG"), 1);
	cr_expect_eq(
		h_sh("%s --user no-such-user-here -- /bin/true -c x >%s 2>&1", cmd, h_path("u4")),
		2);
	cr_expect_eq(h_count(h_path("u4"), "no such user \"no-such-user-here\""), 1);
	cr_expect_eq(h_sh("%s >%s 2>&1", cmd, h_path("u5")), 2);
	cr_expect_eq(h_count(h_path("u5"), "missing the program"), 1);
}

Test(launch, user_drops_privileges_and_keeps_the_broker)
{
	struct dev d;

	if (geteuid() != 0)
		cr_skip_test("--user needs root to change user; this test runs as uid %d",
			     (int)geteuid());
	dev_up(&d);
	cr_expect_eq(exit_code(launch(&d, "nobody", "")), 0, "%s", h_read(h_path("launch.log")));
	cr_expect_eq(h_count(h_path("launch.log"), "probe: pid"), 1);
	cr_expect_eq(h_count(h_path("launch.log"), "uid 65534 gid 65534 groups 65534\n"), 1, "%s",
		     h_read(h_path("launch.log")));
	cr_expect_eq(h_count(h_path("launch.log"), "probe: answered"), 1,
		     "the probe did not reach the broker as nobody");
}

/* After its fork the broker keeps CAP_KILL alone (to pass signals on to guardian's user). */
Test(launch, the_broker_keeps_only_cap_kill)
{
	struct dev d;
	char path[64], *status;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("the launcher has capabilities to drop only when started as root");
	dev_up(&d);
	pid = launch(&d, "nobody", "--wait");
	cr_assert_eq(h_wait_contains(h_path("launch.log"), "probe: answered", 10000), 0, "%s",
		     h_read(h_path("launch.log")));
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = h_read(path);
	cr_assert_not_null(status);
	/* CAP_KILL is capability 5: 0x20. */
	cr_expect_not_null(strstr(status, "CapEff:\t0000000000000020"), "%s", status);
	cr_expect_not_null(strstr(status, "CapPrm:\t0000000000000020"), "%s", status);
	cr_expect_not_null(strstr(status, "CapBnd:\t0000000000000020"), "%s", status);
	free(status);
	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_expect_eq(exit_code(pid), 128 + SIGTERM, "the signal did not reach the probe");
}
