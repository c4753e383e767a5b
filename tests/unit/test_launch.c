/* test_launch.c: guardian-launch measures what guardian measures: launch_measure's log equals
 * gd_config_load + measure_config's item by item (paths resolved against the config's folder,
 * real paths, each once), and it refuses a config that names no TPM. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../base/base.h"
#include "../../base/conf.h"
#include "../../guardian/core.h"
#include "../../guardian/measure.h"
#include "../../launch/launch.h"
#include "../harness/harness.h"

static char dir[64];

static void put(const char *name, const char *text)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	h_write(path, text);
}

static void setup(void)
{
	char path[256];

	log_set_level(LOG_LEVEL_ERROR);
	strcpy(dir, "/tmp/gd-launch-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/pki", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/etc", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	put("pki/ca.crt", "the uplink's CA\n");
	put("pki/attest-ca.crt", "the attestation listener's CA\n");
	put("etc/policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":"
			       "[{\"points\":\"*\",\"action\":\"allow\"}]}");
	put("exe", "not really a program\n");
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(launch_measure, .init = setup, .fini = teardown);

/* etc/site.json with the attestation CA at 'attest_ca' (relative to etc/) and 'tpm' (JSON). */
static void write_site(const char *attest_ca, const char *tpm)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "{\"device_id\":\"d\",\"policy\":\"policy.json\",\"state_dir\":\"../state\",\n"
		 "\"attestation\":{\"host\":\"localhost\",\"port\":8884,\"ca_file\":\"%s\"%s},\n"
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"../pki/ca.crt\"},\n"
		 "\"adapters\":[{\"name\":\"plc\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"points\":[{\"name\":\"a\",\"address\":0}]}]}\n",
		 attest_ca, tpm);
	put("etc/site.json", text);
}

/* Both logs of the config at 'file' (as named: relative or not), with 'exe' as the program. */
static void both_logs(const char *file, struct meas_log *guardian, struct meas_log *launch,
		      struct launch_config *lc)
{
	struct gd_config *cfg = NULL;
	struct conf c;
	char exe[256], why[512] = "";
	uint8_t sha[32];
	int fd;

	snprintf(exe, sizeof(exe), "%s/exe", dir);
	conf_init(&c, file);
	cr_assert_eq(gd_config_load(file, &c, &cfg), 0, "guardian does not load the config");
	cr_assert_eq(measure_exe(cfg, exe, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(measure_config(cfg, NULL, guardian, why, sizeof(why)), 0, "%s", why);
	gd_config_free(cfg);
	conf_release(&c);

	fd = open(exe, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(launch_hash_fd(fd, sha), 0);
	close(fd);
	cr_assert_eq(launch_measure(file, exe, sha, lc, launch, why, sizeof(why)), 0, "%s", why);
}

static void expect_same(const struct meas_log *g, const struct meas_log *l)
{
	cr_assert_eq(l->n, g->n, "guardian-launch measured %zu items, guardian %zu", l->n, g->n);
	for (size_t i = 0; i < g->n; i++) {
		cr_expect_str_eq(l->items[i].type, g->items[i].type, "item %zu", i);
		cr_expect_str_eq(l->items[i].name, g->items[i].name, "item %zu", i);
		cr_expect_arr_eq(l->items[i].sha256, g->items[i].sha256, 32, "item %zu (%s)", i,
				 g->items[i].name);
	}
	cr_expect_arr_eq(l->reg, g->reg, 32, "the registers differ");
}

Test(launch_measure, equals_guardians_log_with_two_cas)
{
	struct meas_log *g = malloc(sizeof(*g)), *l = malloc(sizeof(*l));
	struct launch_config lc;
	char file[256], want[300];

	write_site("../pki/attest-ca.crt",
		   ",\"tpm\":{\"tcti\":\"swtpm:host=127.0.0.1,port=2321\",\"pcr\":16}");
	snprintf(file, sizeof(file), "%s/etc/site.json", dir);
	both_logs(file, g, l, &lc);
	expect_same(g, l);
	cr_expect_eq(l->n, 5);
	cr_expect_str_eq(l->items[4].type, "file");
	cr_expect_str_eq(lc.tcti, "swtpm:host=127.0.0.1,port=2321");
	cr_expect_eq(lc.pcr, 16);
	snprintf(want, sizeof(want), "%s/etc/../state", dir);
	cr_expect_str_eq(lc.state_dir, want);
	free(g);
	free(l);
}

Test(launch_measure, one_ca_named_twice_is_measured_once_from_a_relative_config_path)
{
	struct meas_log *g = malloc(sizeof(*g)), *l = malloc(sizeof(*l));
	struct launch_config lc;
	char cwd[512];

	/* The same CA through another spelling; the config named relative to the working dir. */
	write_site("./../pki/../pki/ca.crt", ",\"tpm\":{\"tcti\":\"device:/dev/tpmrm0\"}");
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(dir), 0);
	both_logs("etc/site.json", g, l, &lc);
	cr_assert_eq(chdir(cwd), 0);
	expect_same(g, l);
	cr_expect_eq(l->n, 4);
	cr_expect_eq(lc.pcr, 23, "the default PCR");
	free(g);
	free(l);
}

Test(launch_measure, refuses_a_config_without_a_tpm_or_with_a_fixed_pcr)
{
	struct meas_log *l = malloc(sizeof(*l));
	struct launch_config lc;
	char file[256], why[512] = "";
	uint8_t sha[32] = { 0 };

	snprintf(file, sizeof(file), "%s/etc/site.json", dir);
	write_site("../pki/ca.crt", "");
	cr_expect_eq(launch_measure(file, file, sha, &lc, l, why, sizeof(why)), GD_ECONFIG);
	cr_expect_not_null(strstr(why, "attestation.tpm"), "%s", why);
	write_site("../pki/ca.crt", ",\"tpm\":{\"tcti\":\"device:/dev/tpmrm0\",\"pcr\":15}");
	cr_expect_eq(launch_measure(file, file, sha, &lc, l, why, sizeof(why)), GD_ECONFIG);
	cr_expect_not_null(strstr(why, "attestation.tpm.pcr"), "%s", why);
	write_site("../pki/missing.crt", ",\"tpm\":{\"tcti\":\"device:/dev/tpmrm0\"}");
	cr_expect_eq(launch_measure(file, file, sha, &lc, l, why, sizeof(why)), GD_EIO);
	cr_expect_not_null(strstr(why, "missing.crt"), "%s", why);
	free(l);
}
