/* test_keystore.c: the file key store's permissions, keys, CSRs and writes; measure_config. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_csr.h>

#include "../../guardian/core.h"
#include "../../guardian/keystore.h"
#include "../../guardian/measure.h"

static char tmp[64];
static char state[128]; /* tmp/state: not there until a test makes it */
static char keyfile[160];

static void setup(void)
{
	strcpy(tmp, "/tmp/gd-keystore-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	snprintf(state, sizeof(state), "%s/state", tmp);
	snprintf(keyfile, sizeof(keyfile), "%s/identity.key", state);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(keystore, .init = setup, .fini = teardown);

static unsigned mode_of(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return (unsigned)(st.st_mode & 07777);
}

static struct keystore *open_ok(bool create)
{
	struct keystore *ks = NULL;
	char why[512] = "";

	cr_assert_eq(keystore_open(state, create, &ks, why, sizeof(why)), 0, "%s", why);
	cr_assert_not_null(ks);
	return ks;
}

static char *read_all(const char *path)
{
	char *text = gd_read_file(path);

	cr_assert_not_null(text, "cannot read %s", path);
	return text;
}

Test(keystore, create_makes_private_dir_and_key)
{
	struct keystore *ks;
	mode_t old = umask(0); /* the modes must not depend on the umask */
	char *pem;

	ks = open_ok(true);
	umask(old);
	cr_assert_eq(mode_of(state), 0700, "dir mode %04o", mode_of(state));
	cr_assert_eq(mode_of(keyfile), 0600, "key mode %04o", mode_of(keyfile));
	pem = read_all(keyfile);
	cr_assert_not_null(strstr(pem, "-----BEGIN EC PRIVATE KEY-----"), "%.40s", pem);
	free(pem);
	keystore_close(ks);
	keystore_close(NULL);
}

Test(keystore, second_create_keeps_the_key)
{
	char pub1[1024], pub2[1024];
	char *pem1, *pem2;
	struct keystore *ks;

	ks = open_ok(true);
	cr_assert_eq(keystore_public_pem(ks, pub1, sizeof(pub1)), 0);
	keystore_close(ks);
	pem1 = read_all(keyfile);

	ks = open_ok(true);
	cr_assert_eq(keystore_public_pem(ks, pub2, sizeof(pub2)), 0);
	keystore_close(ks);
	pem2 = read_all(keyfile);
	cr_assert_str_eq(pub1, pub2, "a second provision replaced the identity key");
	cr_assert_str_eq(pem1, pem2);
	cr_assert_not_null(strstr(pub1, "-----BEGIN PUBLIC KEY-----"));

	ks = open_ok(false);
	cr_assert_eq(keystore_public_pem(ks, pub2, sizeof(pub2)), 0);
	cr_assert_str_eq(pub1, pub2);
	cr_assert_eq(keystore_public_pem(ks, pub2, 10), GD_EFULL);
	keystore_close(ks);
	free(pem1);
	free(pem2);
}

Test(keystore, no_key_without_create_says_provision)
{
	struct keystore *ks = (struct keystore *)1;
	char why[512] = "";

	cr_assert_eq(mkdir(state, 0700), 0);
	cr_assert_eq(keystore_open(state, false, &ks, why, sizeof(why)), GD_EIO);
	cr_assert_null(ks);
	cr_assert_not_null(strstr(why, "provision"), "%s", why);
	cr_assert_not_null(strstr(why, keyfile), "%s", why);
	cr_assert_eq(access(keyfile, F_OK), -1, "opening without create made a key");

	/* No directory at all, and not allowed to make it. */
	rmdir(state);
	cr_assert_eq(keystore_open(state, false, &ks, why, sizeof(why)), GD_EIO);
	cr_assert_not_null(strstr(why, state), "%s", why);
	cr_assert_eq(access(state, F_OK), -1);
}

Test(keystore, open_dir_refuses_group_and_others)
{
	struct keystore *ks = NULL;
	char why[512] = "", want[512];

	cr_assert_eq(mkdir(state, 0700), 0);
	cr_assert_eq(chmod(state, 0755), 0);
	cr_assert_eq(keystore_open(state, true, &ks, why, sizeof(why)), GD_EDENIED);
	cr_assert_null(ks);
	snprintf(want, sizeof(want), "%s is accessible to others (mode 0755); chmod 700 %s", state,
		 state);
	cr_assert_str_eq(why, want);
	cr_assert_eq(access(keyfile, F_OK), -1, "a key was written into an open directory");

	cr_assert_eq(chmod(state, 0750), 0);
	cr_assert_eq(keystore_check_dir(state, why, sizeof(why)), GD_EDENIED);
	cr_assert_not_null(strstr(why, "its group (mode 0750)"), "%s", why);
	cr_assert_eq(chmod(state, 0700), 0);
	cr_assert_eq(keystore_check_dir(state, why, sizeof(why)), 0);
	cr_assert_eq(keystore_check_dir(tmp, why, sizeof(why)), 0); /* mkdtemp makes 0700 */
}

Test(keystore, open_key_refuses_readable_by_others)
{
	struct keystore *ks;
	char why[512] = "", want[512];

	ks = open_ok(true);
	keystore_close(ks);
	ks = NULL;
	cr_assert_eq(chmod(keyfile, 0644), 0);
	/* A mode check, not an access check: it holds for root too. */
	cr_assert_eq(keystore_open(state, false, &ks, why, sizeof(why)), GD_EDENIED);
	cr_assert_null(ks);
	snprintf(want, sizeof(want), "%s is readable by others (mode 0644); chmod 600 %s", keyfile,
		 keyfile);
	cr_assert_str_eq(why, want);
	cr_assert_eq(keystore_open(state, true, &ks, why, sizeof(why)), GD_EDENIED,
		     "create must not bypass the check");
	cr_assert_eq(chmod(keyfile, 0640), 0);
	cr_assert_eq(keystore_check_file(keyfile, why, sizeof(why)), GD_EDENIED);
	cr_assert_not_null(strstr(why, "readable by its group (mode 0640)"), "%s", why);
	cr_assert_eq(chmod(keyfile, 0400), 0);
	cr_assert_eq(keystore_check_file(keyfile, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(keystore_check_file(state, why, sizeof(why)), GD_EDENIED, "a dir is no key");
}

Test(keystore, refuses_files_of_another_user)
{
	char why[512] = "";

	if (geteuid() != 0) {
		cr_log_info("keystore.refuses_files_of_another_user: skipped, needs root to chown");
		return;
	}
	keystore_close(open_ok(true));
	cr_assert_eq(chown(keyfile, 65534, 65534), 0);
	cr_assert_eq(keystore_check_file(keyfile, why, sizeof(why)), GD_EDENIED);
	cr_assert_not_null(strstr(why, "belongs to uid 65534"), "%s", why);
	cr_assert_eq(chown(state, 65534, 65534), 0);
	cr_assert_eq(keystore_check_dir(state, why, sizeof(why)), GD_EDENIED);
	cr_assert_not_null(strstr(why, state), "%s", why);
}

Test(keystore, corrupt_key_is_an_error_not_a_crash)
{
	struct keystore *ks = NULL;
	char why[512] = "";
	FILE *f;

	cr_assert_eq(mkdir(state, 0700), 0);
	f = fopen(keyfile, "w");
	cr_assert_not_null(f);
	fputs("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", f);
	fclose(f);
	cr_assert_eq(chmod(keyfile, 0600), 0);
	cr_assert_eq(keystore_open(state, true, &ks, why, sizeof(why)), GD_EINVAL);
	cr_assert_not_null(strstr(why, "not an EC P-256 private key"), "%s", why);
	cr_assert_null(ks);
}

Test(keystore, signature_verifies_with_public_key)
{
	struct keystore *ks = open_ok(true);
	mbedtls_pk_context pub;
	uint8_t digest[32], sig[80];
	char pem[1024];
	size_t len = 0;

	mbedtls_sha256_ret((const uint8_t *)"claims", 6, digest, 0);
	cr_assert_eq(keystore_sign(ks, digest, sig, sizeof(sig), &len), 0);
	cr_assert_gt(len, 8);
	cr_assert_leq(len, 72);
	cr_assert_eq(keystore_public_pem(ks, pem, sizeof(pem)), 0);
	mbedtls_pk_init(&pub);
	cr_assert_eq(mbedtls_pk_parse_public_key(&pub, (const uint8_t *)pem, strlen(pem) + 1), 0);
	cr_assert_eq(mbedtls_pk_verify(&pub, MBEDTLS_MD_SHA256, digest, 32, sig, len), 0);
	digest[0] ^= 1;
	cr_assert_neq(mbedtls_pk_verify(&pub, MBEDTLS_MD_SHA256, digest, 32, sig, len), 0);
	cr_assert_eq(keystore_sign(ks, digest, sig, 8, &len), GD_EFULL);
	mbedtls_pk_free(&pub);
	keystore_close(ks);
}

Test(keystore, csr_names_the_device_and_holds_the_key)
{
	struct keystore *ks = open_ok(true);
	mbedtls_x509_csr csr;
	char pem[4096], pub[1024], csr_pub[1024], dn[256];

	cr_assert_eq(keystore_csr_pem(ks, "press-07", pem, sizeof(pem)), 0);
	cr_assert_eq(keystore_public_pem(ks, pub, sizeof(pub)), 0);
	mbedtls_x509_csr_init(&csr);
	cr_assert_eq(mbedtls_x509_csr_parse(&csr, (const uint8_t *)pem, strlen(pem) + 1), 0, "%s",
		     pem);
	cr_assert_gt(mbedtls_x509_dn_gets(dn, sizeof(dn), &csr.subject), 0);
	cr_assert_str_eq(dn, "CN=press-07");
	cr_assert_eq(csr.sig_md, MBEDTLS_MD_SHA256);
	cr_assert_eq(mbedtls_pk_write_pubkey_pem(&csr.pk, (uint8_t *)csr_pub, sizeof(csr_pub)), 0);
	cr_assert_str_eq(csr_pub, pub);
	mbedtls_x509_csr_free(&csr);
	/* A name that would add subject attributes is refused. */
	cr_assert_eq(keystore_csr_pem(ks, "press,O=evil", pem, sizeof(pem)), GD_EINVAL);
	cr_assert_eq(keystore_csr_pem(ks, "press-07", pem, 20), GD_EFULL);
	keystore_close(ks);
}

Test(keystore, operational_key_is_a_p256_pair)
{
	char priv[1024], pub[512], priv2[1024], pub2[512], again[512];
	mbedtls_pk_context sk, pk;

	cr_assert_eq(keystore_new_operational_key(priv, sizeof(priv), pub, sizeof(pub)), 0);
	mbedtls_pk_init(&sk);
	mbedtls_pk_init(&pk);
	cr_assert_eq(mbedtls_pk_parse_key(&sk, (const uint8_t *)priv, strlen(priv) + 1, NULL, 0),
		     0);
	cr_assert_eq(mbedtls_pk_parse_public_key(&pk, (const uint8_t *)pub, strlen(pub) + 1), 0);
	cr_assert_eq(mbedtls_pk_get_type(&sk), MBEDTLS_PK_ECKEY);
	cr_assert_eq(mbedtls_pk_ec(sk)->grp.id, MBEDTLS_ECP_DP_SECP256R1);
	cr_assert_eq(mbedtls_pk_check_pair(&pk, &sk), 0);
	cr_assert_eq(mbedtls_pk_write_pubkey_pem(&sk, (uint8_t *)again, sizeof(again)), 0);
	cr_assert_str_eq(again, pub);
	mbedtls_pk_free(&sk);
	mbedtls_pk_free(&pk);

	cr_assert_eq(keystore_new_operational_key(priv2, sizeof(priv2), pub2, sizeof(pub2)), 0);
	cr_assert_str_neq(pub2, pub, "two rounds got the same key");
	cr_assert_eq(keystore_new_operational_key(priv2, 16, pub2, sizeof(pub2)), GD_EFULL);
	cr_assert_eq(priv2[0], '\0', "a failed call left key material behind");
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

Test(keystore, write_file_is_whole_with_its_mode)
{
	static char big[200000];
	char path[192], missing[192];
	mode_t old;
	char *back;

	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = (char)('a' + i % 26);
	snprintf(path, sizeof(path), "%s/op.key", tmp);
	old = umask(0);
	cr_assert_eq(gd_write_file_atomic(path, "first\n", 6, 0600), 0);
	cr_assert_eq(gd_write_file_atomic(path, big, sizeof(big) - 1, 0600), 0);
	umask(old);
	cr_assert_eq(mode_of(path), 0600);
	back = read_all(path);
	cr_assert_eq(strlen(back), sizeof(big) - 1);
	cr_assert_str_eq(back, big);
	free(back);
	cr_assert_eq(count_entries(tmp), 1, "a temp file was left behind");

	cr_assert_eq(gd_write_file_atomic(path, "cert\n", 5, 0644), 0);
	cr_assert_eq(mode_of(path), 0644);
	snprintf(missing, sizeof(missing), "%s/nodir/op.key", tmp);
	cr_assert_eq(gd_write_file_atomic(missing, "x", 1, 0600), GD_EIO);
	cr_assert_eq(gd_create_file(path, "x", 1, 0600), GD_EIO, "an existing file was replaced");
	cr_assert_eq(errno, EEXIST);
}

/* The unsynced replace: the same whole file, mode and no temp file left, only no fsync. */
Test(keystore, write_file_replace_is_whole_with_its_mode)
{
	char path[192], missing[192];
	char *back;

	snprintf(path, sizeof(path), "%s/x.installed.json", tmp);
	cr_assert_eq(gd_write_file_replace(path, "{\"a\":1}\n", 8, 0644), 0);
	cr_assert_eq(gd_write_file_replace(path, "{\"a\":22}\n", 9, 0640), 0);
	cr_assert_eq(mode_of(path), 0640);
	back = read_all(path);
	cr_assert_str_eq(back, "{\"a\":22}\n");
	free(back);
	cr_assert_eq(count_entries(tmp), 1, "a temp file was left behind");
	snprintf(missing, sizeof(missing), "%s/nodir/x.json", tmp);
	cr_assert_eq(gd_write_file_replace(missing, "x", 1, 0600), GD_EIO);
	cr_assert_eq(count_entries(tmp), 1);
}

/* ---- measure_config ------------------------------------------------------------------------ */

static void write_file(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

#define POLICY                                                                                     \
	"{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":["                         \
	"{\"points\":\"*\",\"action\":\"allow\"}]}"

/* A valid site config in tmp; 'top' is extra top-level members, 'uplink' the uplink's. */
static struct gd_config *load_site(const char *top, const char *uplink)
{
	struct gd_config *cfg = NULL;
	char text[2048], file[192];
	struct conf c;

	write_file("ca.crt", "the uplink CA\n");
	write_file("dev.crt", "x");
	write_file("dev.key", "x");
	write_file("policy.json", POLICY);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\",%s"
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"ca.crt\"%s},"
		 "\"adapters\":[{\"name\":\"plc0\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"points\":[{\"name\":\"a\",\"address\":0}]}]}",
		 top, uplink);
	write_file("site.json", text);
	snprintf(file, sizeof(file), "%s/site.json", tmp);
	conf_init(&c, file);
	if (gd_config_load(file, &c, &cfg) != 0) {
		conf_print_errors(&c, stderr);
		cr_assert_fail("the test config did not load");
	}
	conf_release(&c);
	return cfg;
}

static void expect_item(const struct meas_log *log, size_t i, const char *type, const char *file)
{
	char path[256], real[PATH_MAX];
	uint8_t digest[32];

	snprintf(path, sizeof(path), "%s/%s", tmp, file);
	cr_assert_not_null(realpath(file[0] == '/' ? file : path, real));
	cr_assert_str_eq(log->items[i].type, type, "item %zu", i);
	cr_assert_str_eq(log->items[i].name, real, "item %zu", i);
	cr_assert_eq(meas_hash_file(real, digest), 0);
	cr_assert_arr_eq(log->items[i].sha256, digest, 32, "item %zu: digest", i);
}

/* The log of what a config loaded: the executable, once, and then the stored digests. */
static int measure(struct gd_config *cfg, const struct gd_measured *policy, struct meas_log *log,
		   char *why, size_t cap)
{
	int err = measure_exe(cfg, "/proc/self/exe", why, cap);

	return err != 0 ? err : measure_config(cfg, policy, log, why, cap);
}

Test(keystore, measure_order_names_and_policy_change)
{
	struct gd_config *cfg =
		load_site("", ",\"cert_file\":\"dev.crt\",\"key_file\":\"dev.key\"");
	struct gd_measured reloaded;
	struct meas_log log, again;
	struct policy *p;
	struct conf c;
	uint8_t reg[32];
	char why[512] = "";

	cr_assert_eq(measure(cfg, NULL, &log, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(log.n, 4, "%zu items", log.n);
	expect_item(&log, 0, "exe", "/proc/self/exe");
	cr_assert_neq(strcmp(log.items[0].name, "/proc/self/exe"), 0, "exe not resolved");
	expect_item(&log, 1, "config", "site.json");
	expect_item(&log, 2, "policy", "policy.json");
	expect_item(&log, 3, "file", "ca.crt");
	meas_fold(&log, reg);
	cr_assert_arr_eq(reg, log.reg, 32);

	/* One byte more in the policy, reloaded: its digest and the register change, nothing
	 * else. */
	write_file("policy.json", POLICY " ");
	conf_init(&c, "policy.json");
	p = gd_policy_load(cfg, &c, &reloaded);
	cr_assert_not_null(p);
	conf_release(&c);
	policy_free(p);
	cr_assert_eq(measure(cfg, &reloaded, &again, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(again.n, 4);
	cr_assert_arr_eq(again.items[0].sha256, log.items[0].sha256, 32);
	cr_assert_arr_eq(again.items[1].sha256, log.items[1].sha256, 32);
	cr_assert(memcmp(again.items[2].sha256, log.items[2].sha256, 32) != 0);
	cr_assert_arr_eq(again.items[3].sha256, log.items[3].sha256, 32);
	cr_assert(memcmp(again.reg, log.reg, 32) != 0);
	expect_item(&again, 2, "policy", "policy.json");
	gd_config_free(cfg);
}

Test(keystore, measure_attestation_ca_once_by_real_path)
{
	struct gd_config *cfg;
	struct meas_log log;
	char why[512] = "", link_path[192], ca[192];

	cr_assert_eq(mkdir(state, 0700), 0);
	snprintf(link_path, sizeof(link_path), "%s/ca-link.crt", tmp);
	snprintf(ca, sizeof(ca), "%s/ca.crt", tmp);
	cr_assert_eq(symlink(ca, link_path), 0);
	write_file("attest-ca.crt", "the attestation CA\n");

	/* The attestation CA is the uplink's CA through a symlink: measured once. */
	cfg = load_site("\"state_dir\":\"state\",\"attestation\":{\"host\":\"localhost\","
			"\"port\":8884,\"ca_file\":\"ca-link.crt\"},",
			"");
	cr_assert(cfg->attest.enabled);
	cr_assert_eq(measure(cfg, NULL, &log, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(log.n, 4, "%zu items", log.n);
	expect_item(&log, 3, "file", "ca.crt");
	gd_config_free(cfg);

	/* A CA of its own comes after the uplink's; the identity and op certs are not measured. */
	cfg = load_site("\"state_dir\":\"state\",\"attestation\":{\"host\":\"localhost\","
			"\"port\":8884,\"ca_file\":\"attest-ca.crt\"},",
			"");
	cr_assert_eq(measure(cfg, NULL, &log, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(log.n, 5, "%zu items", log.n);
	expect_item(&log, 3, "file", "ca.crt");
	expect_item(&log, 4, "file", "attest-ca.crt");
	gd_config_free(cfg);
}

Test(keystore, measure_print_lines)
{
	struct meas_log log;
	uint8_t d[32] = { 0xab };
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	/* The register, from the shell:
	 * { head -c32 /dev/zero; printf '\xab'; head -c31 /dev/zero; } | sha256sum */
	meas_init(&log);
	meas_add(&log, "policy", "/etc/guardian/policy.json", d);
	f = open_memstream(&text, &len);
	measure_print(&log, f);
	fclose(f);
	cr_assert_str_eq(
		text,
		"policy ab00000000000000000000000000000000000000000000000000000000000000 "
		"/etc/guardian/policy.json\n"
		"register 993c8c46dd00fb6594e11c6d5f847443b481512db06ca290457290e52f3fc6a3\n");
	free(text);
}
