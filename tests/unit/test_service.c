/* test_service.c: the attestation service: init, enrollment, nonces, references, every
 * decision of the verify pipeline (evidence built as a device builds it, TPM evidence too) and
 * revocation. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_csr.h>

#include "../../service/report.h"
#include "../../service/service.h"
#include "fake_quote.h"

#define LIFETIME_S 3600
#define TTL_S	   30

static char tmp[64];
static char svc_dir[128];
static int64_t clock_offset_ms; /* the injected clock: real time + this */
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static int64_t test_clock(void)
{
	return gd_now_ms() + clock_offset_ms;
}

static void setup(void)
{
	log_set_level(LOG_LEVEL_WARN);
	clock_offset_ms = 0;
	strcpy(tmp, "/tmp/test_service.XXXXXX");
	cr_assert_not_null(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
	snprintf(svc_dir, sizeof(svc_dir), "%s/svc", tmp);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	cr_assert_eq(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), 0);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The store of svc_dir, opened on first use (after init), closed at teardown. */
static struct store *tstore;

static struct store *test_store(void)
{
	char why[512] = "";

	if (tstore == NULL)
		cr_assert_eq(service_store_open(svc_dir, false, &tstore, why, sizeof(why)), 0,
			     "store: %s", why);
	return tstore;
}

static void teardown(void)
{
	store_close(tstore);
	tstore = NULL;
	nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
}

TestSuite(service, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------------------ */

/* init with the test's lifetime and ttl, then an instance on the clock of the test. */
static struct service *new_service(void)
{
	struct service_init_opts opts = { .lifetime_s = LIFETIME_S, .nonce_ttl_s = TTL_S };
	struct service *s = NULL;
	char why[512] = "";

	if (access(svc_dir, F_OK) != 0)
		cr_assert_eq(service_init_dir(svc_dir, &opts, why, sizeof(why)), 0, "init: %s",
			     why);
	cr_assert_eq(service_open(svc_dir, &s, why, sizeof(why)), 0, "open: %s", why);
	s->now_ms = test_clock;
	return s;
}

static void new_key(mbedtls_pk_context *key, mbedtls_ecp_group_id curve)
{
	mbedtls_pk_init(key);
	cr_assert_eq(mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
	cr_assert_eq(
		mbedtls_ecp_gen_key(curve, mbedtls_pk_ec(*key), mbedtls_ctr_drbg_random, &drbg), 0);
}

/* A PKCS#10 request for 'key' with CN 'cn', as the device's keystore makes one. */
static void make_csr(mbedtls_pk_context *key, const char *cn, char *pem, size_t cap)
{
	mbedtls_x509write_csr csr;
	char subject[96];

	snprintf(subject, sizeof(subject), "CN=%s", cn);
	mbedtls_x509write_csr_init(&csr);
	mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
	mbedtls_x509write_csr_set_key(&csr, key);
	cr_assert_eq(mbedtls_x509write_csr_set_subject_name(&csr, subject), 0);
	cr_assert_eq(mbedtls_x509write_csr_pem(&csr, (unsigned char *)pem, cap,
					       mbedtls_ctr_drbg_random, &drbg),
		     0);
	mbedtls_x509write_csr_free(&csr);
}

/* A simulated device: its identity key (enrolled or not) and a fresh operational key. */
struct device {
	char name[64];
	mbedtls_pk_context identity;
	mbedtls_pk_context op;
	char *cert_pem; /* the identity certificate, when enrolled */
};

static void device_new(struct device *d, const char *name)
{
	snprintf(d->name, sizeof(d->name), "%s", name);
	new_key(&d->identity, MBEDTLS_ECP_DP_SECP256R1);
	new_key(&d->op, MBEDTLS_ECP_DP_SECP256R1);
	d->cert_pem = NULL;
}

static void device_enroll(struct service *s, struct device *d)
{
	char csr[4096], name[64], why[512] = "";

	make_csr(&d->identity, d->name, csr, sizeof(csr));
	cr_assert_eq(registry_enroll(s, csr, false, name, &d->cert_pem, why, sizeof(why)), 0,
		     "enroll: %s", why);
	cr_assert_str_eq(name, d->name);
}

static void device_free(struct device *d)
{
	mbedtls_pk_free(&d->identity);
	mbedtls_pk_free(&d->op);
	free(d->cert_pem);
}

struct signer {
	mbedtls_pk_context *key;
};

static int sign_with(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	struct signer *sg = ctx;

	(void)cap;
	return mbedtls_pk_sign(sg->key, MBEDTLS_MD_SHA256, digest, 32, sig, len,
			       mbedtls_ctr_drbg_random, &drbg) == 0
		       ? 0
		       : GD_EINVAL;
}

/* The device's measurement log: four items; 'config_byte' varies the config's digest. */
static void sample_log(struct meas_log *log, uint8_t config_byte)
{
	uint8_t d[32];

	meas_init(log);
	memset(d, 0x11, sizeof(d));
	cr_assert_eq(meas_add(log, "exe", "/usr/bin/guardian", d), 0);
	memset(d, config_byte, sizeof(d));
	cr_assert_eq(meas_add(log, "config", "/etc/guardian/site.json", d), 0);
	memset(d, 0x33, sizeof(d));
	cr_assert_eq(meas_add(log, "policy", "/etc/guardian/policy.json", d), 0);
	memset(d, 0x44, sizeof(d));
	cr_assert_eq(meas_add(log, "file", "/etc/guardian/ca.crt", d), 0);
}

static void record_reference(const struct meas_log *log, const char *label)
{
	char *json = meas_log_json(log), out[64], why[512] = "";

	cr_assert_not_null(json);
	cr_assert_eq(reference_add(test_store(), json, strlen(json), label, out, why, sizeof(why)),
		     0, "reference add: %s", why);
	free(json);
}

/* Asks 's' for a nonce for 'dev'. */
static void get_nonce(struct service *s, const char *dev, uint8_t nonce[NONCE_LEN])
{
	char *json = NULL;
	int64_t expires = 0;

	cr_assert_eq(service_handle_hello(s, dev, "{\"swversion\":\"0.1.0\"}", 21, &json), 0);
	cr_assert_eq(attest_nonce_parse(json, strlen(json), nonce, &expires), 0, "%s", json);
	cr_assert_gt(expires, test_clock());
	free(json);
}

/* Fills the claims of 'd' for 'nonce' with 'log' and its fresh op key. */
static void fill_evidence(struct evidence *ev, struct device *d, const uint8_t nonce[NONCE_LEN],
			  const struct meas_log *log)
{
	memset(ev, 0, sizeof(*ev));
	memcpy(ev->nonce, nonce, NONCE_LEN);
	snprintf(ev->name, sizeof(ev->name), "%s", d->name);
	snprintf(ev->swversion, sizeof(ev->swversion), "0.1.0");
	ev->iat = test_clock() / 1000;
	ev->log = *log;
	cr_assert_eq(evidence_ueid(d->cert_pem, ev->ueid), 0);
	cr_assert_eq(mbedtls_pk_write_pubkey_pem(&d->op, (unsigned char *)ev->op_pub,
						 sizeof(ev->op_pub)),
		     0);
}

static char *envelope(const struct evidence *ev, mbedtls_pk_context *key)
{
	struct signer sg = { .key = key };
	char *env = evidence_envelope_build(ev, sign_with, &sg);

	cr_assert_not_null(env);
	return env;
}

/* The service's decision on the envelope 'env' that arrived on the topic of 'dev'. */
static void verify_env(struct service *s, const char *dev, const char *env,
		       struct attest_result *res)
{
	cr_assert_eq(service_verify(s, dev, env, strlen(env), res, NULL), 0);
}

static void expect_refusal(const struct attest_result *res, const char *reason)
{
	cr_assert_not(res->ok, "expected %s, got ok", reason);
	cr_assert_str_eq(res->reason, reason, "expected %s, got %s (%s)", reason, res->reason,
			 res->detail);
	cr_assert_null(res->cert_pem);
	cr_assert_neq(res->detail[0], '\0', "a refusal says why");
}

static bool load_crt(mbedtls_x509_crt *crt, const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", svc_dir, file);
	mbedtls_x509_crt_init(crt);
	return mbedtls_x509_crt_parse_file(crt, path) == 0;
}

static void expect_cn(const mbedtls_x509_crt *crt, const char *cn)
{
	char dn[256];

	cr_assert_gt(mbedtls_x509_dn_gets(dn, sizeof(dn), &crt->subject), 0);
	cr_assert_str_eq(dn + 3, cn, "subject %s", dn);
	cr_assert_eq(strncmp(dn, "CN=", 3), 0);
}

static mode_t mode_of(const char *file)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", svc_dir, file);
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_mode;
}

/* ---- init --------------------------------------------------------------------------------- */

Test(service, init_creates_the_directory_with_modes)
{
	struct service *s = new_service();
	mbedtls_x509_crt mfg, op, svc;
	uint32_t flags = 0;
	char why[512] = "";
	struct service_init_opts opts = { 0 };

	cr_assert(S_ISDIR(mode_of("")));
	cr_assert_eq(mode_of("") & 0777, 0700);
	cr_assert_eq(mode_of("mfg-ca.key") & 0777, 0600);
	cr_assert_eq(mode_of("op-ca.key") & 0777, 0600);
	cr_assert_eq(mode_of("service.key") & 0777, 0600);
	cr_assert_eq(mode_of("nonce.key") & 0777, 0600);
	cr_assert_eq(mode_of("nonce.key") & S_IFMT, S_IFREG);
	cr_assert(S_ISDIR(mode_of("devices")));
	cr_assert(S_ISDIR(mode_of("references")));
	cr_assert(S_ISREG(mode_of("service.json")));
	cr_assert_eq(s->cfg.lifetime_s, LIFETIME_S);
	cr_assert_eq(s->cfg.nonce_ttl_s, TTL_S);
	cr_assert_str_eq(s->cfg.broker_host, "localhost");
	cr_assert_eq(s->cfg.broker_port, 8884);

	cr_assert(load_crt(&mfg, "mfg-ca.crt"));
	cr_assert(load_crt(&op, "op-ca.crt"));
	cr_assert(load_crt(&svc, "service.crt"));
	expect_cn(&mfg, "guardian manufacturer CA");
	expect_cn(&op, "guardian operational CA");
	expect_cn(&svc, "guardian-attest");
	cr_assert_eq(mfg.ca_istrue, 1);
	cr_assert_eq(op.ca_istrue, 1);
	cr_assert_eq(svc.ca_istrue, 0);
	cr_assert_eq(
		mbedtls_x509_crt_check_extended_key_usage(
			&svc, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)),
		0);
	cr_assert_eq(mbedtls_x509_crt_verify(&svc, &mfg, NULL, NULL, &flags, NULL, NULL), 0,
		     "service.crt does not chain to the manufacturer CA: flags %x", flags);
	cr_assert_neq(mbedtls_x509_crt_verify(&svc, &op, NULL, NULL, &flags, NULL, NULL), 0);

	/* a second init refuses to replace the CAs */
	cr_assert_neq(service_init_dir(svc_dir, &opts, why, sizeof(why)), 0);
	cr_assert(strstr(why, "refusing to overwrite") != NULL, "%s", why);
	mbedtls_x509_crt_free(&mfg);
	mbedtls_x509_crt_free(&op);
	mbedtls_x509_crt_free(&svc);
	service_free(s);
}

/* ---- enrollment --------------------------------------------------------------------------- */

Test(service, enroll_issues_an_identity_certificate_of_the_manufacturer_ca)
{
	struct service *s = new_service();
	struct device d, other;
	mbedtls_x509_crt mfg, op, crt;
	uint32_t flags = 0;
	unsigned char a[200], b[200];
	char csr[4096], name[64], why[512] = "", *cert = NULL;
	int na, nb;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	cr_assert(load_crt(&mfg, "mfg-ca.crt"));
	cr_assert(load_crt(&op, "op-ca.crt"));
	mbedtls_x509_crt_init(&crt);
	cr_assert_eq(mbedtls_x509_crt_parse(&crt, (const unsigned char *)d.cert_pem,
					    strlen(d.cert_pem) + 1),
		     0);
	cr_assert_eq(mbedtls_x509_crt_verify(&crt, &mfg, NULL, NULL, &flags, NULL, NULL), 0,
		     "flags %x", flags);
	cr_assert_neq(mbedtls_x509_crt_verify(&crt, &op, NULL, NULL, &flags, NULL, NULL), 0);
	expect_cn(&crt, "press-07");
	na = mbedtls_pk_write_pubkey_der(&crt.pk, a, sizeof(a));
	nb = mbedtls_pk_write_pubkey_der(&d.identity, b, sizeof(b));
	cr_assert(na > 0 && na == nb && memcmp(a + sizeof(a) - na, b + sizeof(b) - nb, na) == 0,
		  "the certificate is not for the request's key");
	cr_assert_eq(mode_of("devices/press-07.crt") & S_IFMT, S_IFREG);

	/* the same name with another key: refused, then accepted with replace */
	device_new(&other, "press-07");
	make_csr(&other.identity, "press-07", csr, sizeof(csr));
	cr_assert_eq(registry_enroll(s, csr, false, name, &cert, why, sizeof(why)), GD_EDENIED);
	cr_assert(strstr(why, "already enrolled") != NULL, "%s", why);
	cr_assert_null(cert);
	cr_assert_eq(registry_enroll(s, csr, true, name, &cert, why, sizeof(why)), 0, "%s", why);
	free(cert);
	cert = NULL;

	/* not a device name; a tampered request */
	make_csr(&other.identity, "bad/name", csr, sizeof(csr));
	cr_assert_neq(registry_enroll(s, csr, false, name, &cert, why, sizeof(why)), 0);
	cr_assert(strstr(why, "not a device name") != NULL, "%s", why);
	cr_assert_neq(registry_enroll(s, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", false, name,
				      &cert, why, sizeof(why)),
		      0);

	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crt_free(&mfg);
	mbedtls_x509_crt_free(&op);
	device_free(&other);
	device_free(&d);
	service_free(s);
}

/* ---- nonces ------------------------------------------------------------------------------- */

static const uint8_t tag_a[16] = { 1 }, tag_b[16] = { 2 };

Test(service, nonce_fresh_is_accepted_once)
{
	struct service *s = new_service();
	uint8_t nonce[NONCE_LEN];
	int64_t now = test_clock();
	bool dup = true;

	cr_assert_eq(nonce_make(s, "press-07", now, nonce), 0);
	cr_assert_eq(nonce_check(s, "press-07", nonce, now + 1000, tag_a, &dup), REASON_OK);
	cr_assert_not(dup);
	cr_assert_eq(nonce_check(s, "press-07", nonce, now + 1000, tag_b, &dup),
		     REASON_REPLAYED_NONCE);
	cr_assert_not(dup, "another evidence with the same nonce is a replay, not a duplicate");
	cr_assert_eq(nonce_check(s, "press-07", nonce, now + 1000, tag_a, &dup),
		     REASON_REPLAYED_NONCE);
	cr_assert(dup, "the same evidence again is a duplicate delivery");
	service_free(s);
}

Test(service, nonce_older_than_the_ttl_is_stale)
{
	struct service *s = new_service();
	uint8_t nonce[NONCE_LEN];
	int64_t now = test_clock();
	bool dup;

	cr_assert_eq(nonce_make(s, "press-07", now, nonce), 0);
	cr_assert_eq(nonce_check(s, "press-07", nonce, now + TTL_S * 1000 + 1, tag_a, &dup),
		     REASON_STALE_NONCE);
	/* stale is not used: at the edge of the ttl it is still good, once */
	cr_assert_eq(nonce_check(s, "press-07", nonce, now + TTL_S * 1000, tag_a, &dup), REASON_OK);
	service_free(s);
}

Test(service, nonce_with_a_wrong_mac_or_for_another_device_is_bad)
{
	struct service *s = new_service(), *foreign;
	struct service_init_opts opts = { 0 };
	uint8_t nonce[NONCE_LEN], copy[NONCE_LEN];
	int64_t now = test_clock();
	char other_dir[160], why[512] = "";
	bool dup;

	cr_assert_eq(nonce_make(s, "press-07", now, nonce), 0);
	cr_assert_eq(nonce_check(s, "press-08", nonce, now, tag_a, &dup), REASON_BAD_NONCE);
	memcpy(copy, nonce, NONCE_LEN);
	copy[NONCE_LEN - 1] ^= 1;
	cr_assert_eq(nonce_check(s, "press-07", copy, now, tag_a, &dup), REASON_BAD_NONCE);
	memcpy(copy, nonce, NONCE_LEN);
	copy[7] ^= 1; /* the timestamp is under the MAC too */
	cr_assert_eq(nonce_check(s, "press-07", copy, now, tag_a, &dup), REASON_BAD_NONCE);
	/* a nonce of another service (another secret) */
	snprintf(other_dir, sizeof(other_dir), "%s/other", tmp);
	cr_assert_eq(service_init_dir(other_dir, &opts, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(service_open(other_dir, &foreign, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(nonce_make(foreign, "press-07", now, copy), 0);
	cr_assert_eq(nonce_check(s, "press-07", copy, now, tag_a, &dup), REASON_BAD_NONCE);
	/* none of that used the real one */
	cr_assert_eq(nonce_check(s, "press-07", nonce, now, tag_a, &dup), REASON_OK);
	service_free(foreign);
	service_free(s);
}

Test(service, nonce_sweep_removes_only_old_markers)
{
	struct service *s = new_service();
	uint8_t old_nonce[NONCE_LEN], new_nonce[NONCE_LEN];
	int64_t now = test_clock(), long_ago = now - (TTL_S + SERVICE_NONCE_MARGIN_S + 5) * 1000;
	bool dup;

	cr_assert_eq(nonce_make(s, "press-07", long_ago, old_nonce), 0);
	cr_assert_eq(nonce_check(s, "press-07", old_nonce, long_ago, tag_a, &dup), REASON_OK);
	cr_assert_eq(nonce_make(s, "press-07", now, new_nonce), 0);
	cr_assert_eq(nonce_check(s, "press-07", new_nonce, now, tag_a, &dup), REASON_OK);
	cr_assert_eq(nonce_sweep(s, now), 1);
	cr_assert_eq(nonce_sweep(s, now), 0);
	cr_assert_eq(nonce_check(s, "press-07", new_nonce, now, tag_b, &dup), REASON_REPLAYED_NONCE,
		     "the fresh marker must survive the sweep");
	service_free(s);
}

/* ---- references --------------------------------------------------------------------------- */

Test(service, reference_add_list_remove)
{
	struct meas_log log;
	char *json, label[64], why[512] = "", listing[1024] = "", reg_hex[65];
	FILE *out;

	service_free(new_service());
	sample_log(&log, 0x22);
	json = meas_log_json(&log);
	cr_assert_eq(reference_add(test_store(), json, strlen(json), NULL, label, why, sizeof(why)),
		     0, "%s", why);
	gd_hex_encode(log.reg, 32, reg_hex);
	cr_assert_eq(strlen(label), 12);
	cr_assert_eq(strncmp(label, reg_hex, 12), 0);
	cr_assert_neq(
		reference_add(test_store(), json, strlen(json), NULL, label, why, sizeof(why)), 0,
		"the same label twice");
	cr_assert(strstr(why, "exists") != NULL, "%s", why);
	free(json);

	/* a log whose register is not its fold */
	log.reg[0] ^= 1;
	json = meas_log_json(&log);
	cr_assert_neq(
		reference_add(test_store(), json, strlen(json), "bad", label, why, sizeof(why)), 0);
	cr_assert(strstr(why, "fold") != NULL, "%s", why);
	free(json);
	cr_assert_neq(reference_add(test_store(), "{}", 2, "x", label, why, sizeof(why)), 0);

	out = fmemopen(listing, sizeof(listing), "w");
	cr_assert_eq(reference_list(test_store(), out, why, sizeof(why)), 0);
	fclose(out);
	cr_assert(strstr(listing, " 4 ") != NULL, "%s", listing);
	cr_assert(strstr(listing, reg_hex) != NULL, "%s", listing);
	cr_assert_eq(reference_remove(test_store(), listing[0] ? strtok(listing, " ") : "", why,
				      sizeof(why)),
		     0, "%s", why);
	cr_assert_neq(reference_remove(test_store(), "nothing-here", why, sizeof(why)), 0);
	cr_assert_neq(reference_remove(test_store(), "../service", why, sizeof(why)), 0);
}

/* ---- the verify pipeline ------------------------------------------------------------------ */

Test(service, good_evidence_earns_an_operational_certificate)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log;
	struct evidence ev;
	struct attest_result res, parsed;
	uint8_t nonce[NONCE_LEN];
	mbedtls_x509_crt op_ca, mfg_ca, crt;
	unsigned char a[200], b[200];
	uint32_t flags = 0;
	char *env, *json = NULL;
	int64_t from_s, to_s;
	int na, nb;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);

	cr_assert_eq(service_handle_evidence(s, d.name, env, strlen(env), &json), 0);
	cr_assert_eq(attest_result_parse(json, strlen(json), &parsed), 0, "%s", json);
	cr_assert(parsed.ok, "%s", json);
	res = parsed;

	cr_assert(load_crt(&op_ca, "op-ca.crt"));
	cr_assert(load_crt(&mfg_ca, "mfg-ca.crt"));
	mbedtls_x509_crt_init(&crt);
	cr_assert_eq(mbedtls_x509_crt_parse(&crt, (const unsigned char *)res.cert_pem,
					    strlen(res.cert_pem) + 1),
		     0);
	cr_assert_eq(mbedtls_x509_crt_verify(&crt, &op_ca, NULL, NULL, &flags, NULL, NULL), 0,
		     "flags %x", flags);
	cr_assert_neq(mbedtls_x509_crt_verify(&crt, &mfg_ca, NULL, NULL, &flags, NULL, NULL), 0);
	expect_cn(&crt, "press-07");
	na = mbedtls_pk_write_pubkey_der(&crt.pk, a, sizeof(a));
	nb = mbedtls_pk_write_pubkey_der(&d.op, b, sizeof(b));
	cr_assert(na > 0 && na == nb && memcmp(a + sizeof(a) - na, b + sizeof(b) - nb, na) == 0,
		  "the certificate is not for op_pub");
	from_s = (int64_t)mbedtls_x509_time_is_past(&crt.valid_from);
	cr_assert_eq(from_s, 1, "notBefore lies in the past");
	{
		struct tm tf = { .tm_year = crt.valid_from.year - 1900,
				 .tm_mon = crt.valid_from.mon - 1,
				 .tm_mday = crt.valid_from.day,
				 .tm_hour = crt.valid_from.hour,
				 .tm_min = crt.valid_from.min,
				 .tm_sec = crt.valid_from.sec };
		struct tm tt = { .tm_year = crt.valid_to.year - 1900,
				 .tm_mon = crt.valid_to.mon - 1,
				 .tm_mday = crt.valid_to.day,
				 .tm_hour = crt.valid_to.hour,
				 .tm_min = crt.valid_to.min,
				 .tm_sec = crt.valid_to.sec };

		from_s = (int64_t)timegm(&tf);
		to_s = (int64_t)timegm(&tt);
	}
	cr_assert_eq(to_s - from_s, LIFETIME_S + SERVICE_SKEW_S);
	cr_assert_eq(res.not_after, to_s * 1000);
	cr_assert(to_s * 1000 > test_clock() + (LIFETIME_S - 5) * 1000);
	cr_assert_eq(
		mbedtls_x509_crt_check_extended_key_usage(
			&crt, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)),
		0);
	cr_assert_eq(s->stats.issued, 1);

	/* the same evidence again: the nonce is spent */
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "replayed_nonce");

	attest_result_free(&parsed);
	free(json);
	free(env);
	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crt_free(&op_ca);
	mbedtls_x509_crt_free(&mfg_ca);
	device_free(&d);
	service_free(s);
}

Test(service, malformed_evidence_is_refused)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *env;

	verify_env(s, "press-07", "{\"evidence\":", &res);
	expect_refusal(&res, "malformed");
	verify_env(s, "press-07", "{\"evidence\":\"{}\",\"alg\":\"ES256\",\"sig\":\"AAAA\"}", &res);
	expect_refusal(&res, "malformed");

	/* well-formed, but on the topic of another device */
	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, "press-08", env, &res);
	expect_refusal(&res, "malformed");
	cr_assert(strstr(res.detail, "press-08") != NULL, "%s", res.detail);
	free(env);
	device_free(&d);
	service_free(s);
}

Test(service, each_refusal_has_its_reason)
{
	struct service *s = new_service();
	struct device d, ghost;
	struct meas_log log, changed;
	struct evidence ev;
	struct attest_result res;
	mbedtls_pk_context stranger, p384;
	uint8_t nonce[NONCE_LEN];
	char *env;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);

	/* no reference recorded at all */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "no_reference");
	free(env);
	record_reference(&log, "release-1");

	/* unknown device: a certificate exists, but not in this registry */
	device_new(&ghost, "ghost-1");
	ghost.cert_pem = strdup(d.cert_pem); /* for a ueid only */
	get_nonce(s, ghost.name, nonce);
	fill_evidence(&ev, &ghost, nonce, &log);
	env = envelope(&ev, &ghost.identity);
	verify_env(s, ghost.name, env, &res);
	expect_refusal(&res, "unknown_device");
	free(env);

	/* bad signature: signed with another key */
	new_key(&stranger, MBEDTLS_ECP_DP_SECP256R1);
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &stranger);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	free(env);

	/* bad signature: the right key, but the ueid of another */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	ev.ueid[5] ^= 1;
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert(strstr(res.detail, "ueid") != NULL, "%s", res.detail);
	free(env);

	/* bad nonce: issued for another device */
	get_nonce(s, "press-08", nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_nonce");
	free(env);

	/* stale nonce: the clock moved past the ttl */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	clock_offset_ms = (TTL_S + 1) * 1000;
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "stale_nonce");
	clock_offset_ms = 0;
	free(env);

	/* register mismatch: the register is not the fold of the items */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	ev.log.reg[0] ^= 0x80;
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "register_mismatch");
	free(env);

	/* measurement mismatch: another config; the detail names it and both digests */
	sample_log(&changed, 0x5a);
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &changed);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert(strstr(res.detail, "config /etc/guardian/site.json: sha256 5a5a5a5a") != NULL,
		  "%s", res.detail);
	cr_assert(strstr(res.detail, "22222222") != NULL, "%s", res.detail);
	free(env);

	/* measurement mismatch: one item more than the reference */
	changed = log;
	cr_assert_eq(meas_add(&changed, "file", "/etc/guardian/extra.pem", nonce), 0);
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &changed);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert(strstr(res.detail, "/etc/guardian/extra.pem") != NULL, "%s", res.detail);
	free(env);

	/* bad key: op_pub on another curve */
	new_key(&p384, MBEDTLS_ECP_DP_SECP384R1);
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	cr_assert_eq(
		mbedtls_pk_write_pubkey_pem(&p384, (unsigned char *)ev.op_pub, sizeof(ev.op_pub)),
		0);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_key");
	free(env);

	/* and after all that, a good round still succeeds */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	cr_assert(res.ok, "%s: %s", res.reason, res.detail);
	cr_assert_eq(s->stats.issued, 1);
	attest_result_free(&res);
	free(env);

	mbedtls_pk_free(&p384);
	mbedtls_pk_free(&stranger);
	device_free(&ghost);
	device_free(&d);
	service_free(s);
}

Test(service, closest_reference_names_the_difference)
{
	struct service_reference refs[2];
	struct meas_log log;
	char detail[512];

	snprintf(refs[0].label, sizeof(refs[0].label), "old");
	sample_log(&refs[0].log, 0x01);
	refs[0].log.items[0].sha256[0] ^= 1; /* two items differ from the log */
	snprintf(refs[1].label, sizeof(refs[1].label), "new");
	sample_log(&refs[1].log, 0x02);
	sample_log(&log, 0x03);
	cr_assert_eq(reference_match(refs, 2, &log, detail, sizeof(detail)),
		     REASON_MEASUREMENT_MISMATCH);
	cr_assert(strstr(detail, "reference new") != NULL, "%s", detail);
	cr_assert(strstr(detail, "config /etc/guardian/site.json") != NULL, "%s", detail);
	/* one item fewer */
	log = refs[1].log;
	log.n = 3;
	cr_assert_eq(reference_match(refs, 2, &log, detail, sizeof(detail)),
		     REASON_MEASUREMENT_MISMATCH);
	cr_assert(strstr(detail, "missing") != NULL && strstr(detail, "ca.crt") != NULL, "%s",
		  detail);
	/* same items, another order */
	log = refs[1].log;
	log.items[1] = refs[1].log.items[2];
	log.items[2] = refs[1].log.items[1];
	cr_assert_eq(reference_match(refs, 2, &log, detail, sizeof(detail)),
		     REASON_MEASUREMENT_MISMATCH);
	cr_assert(strstr(detail, "measurements[1]") != NULL, "%s", detail);
	/* equal to the second */
	cr_assert_eq(reference_match(refs, 2, &refs[1].log, detail, sizeof(detail)), REASON_OK);
	cr_assert_eq(reference_match(refs, 0, &refs[1].log, detail, sizeof(detail)),
		     REASON_NO_REFERENCE);
}

Test(service, two_instances_share_nonces)
{
	struct service *one = new_service(), *two = new_service();
	struct device d;
	struct meas_log log;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *env;

	device_new(&d, "press-07");
	device_enroll(one, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");

	/* one issues the nonce, two accepts it, once; one then refuses the replay */
	get_nonce(one, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(two, d.name, env, &res);
	cr_assert(res.ok, "%s: %s", res.reason, res.detail);
	attest_result_free(&res);
	verify_env(one, d.name, env, &res);
	expect_refusal(&res, "replayed_nonce");
	verify_env(two, d.name, env, &res);
	expect_refusal(&res, "replayed_nonce");
	free(env);
	device_free(&d);
	service_free(two);
	service_free(one);
}

Test(service, a_duplicate_delivery_is_answered_once_when_asked)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log;
	struct evidence ev;
	uint8_t nonce[NONCE_LEN];
	char *env, *json = NULL;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	s->once_per_request = true;
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	cr_assert_eq(service_handle_evidence(s, d.name, env, strlen(env), &json), 0);
	cr_assert_not_null(json);
	free(json);
	cr_assert_eq(service_handle_evidence(s, d.name, env, strlen(env), &json), 1);
	cr_assert_null(json);
	/* without the option the duplicate is answered: replayed_nonce */
	s->once_per_request = false;
	cr_assert_eq(service_handle_evidence(s, d.name, env, strlen(env), &json), 0);
	cr_assert(strstr(json, "replayed_nonce") != NULL, "%s", json);
	free(json);
	free(env);
	device_free(&d);
	service_free(s);
}

/* ---- revocation and the CRL --------------------------------------------------------------- */

/* A successful round for 'd' with 'log': its certificate (caller frees). */
static char *attest_ok(struct service *s, struct device *d, const struct meas_log *log)
{
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *env, *pem;

	get_nonce(s, d->name, nonce);
	fill_evidence(&ev, d, nonce, log);
	env = envelope(&ev, &d->identity);
	verify_env(s, d->name, env, &res);
	free(env);
	cr_assert(res.ok, "%s: %s", res.reason, res.detail);
	pem = res.cert_pem;
	return pem;
}

/* 'pem' into <tmp>/<name>; returns the path (a static buffer). */
static const char *save_pem(const char *name, const char *pem)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(pem, f);
	fclose(f);
	return path;
}

/* Whether op-ca.crl, as mbedTLS parses it, lists the certificate 'pem'. */
static bool crl_lists(const char *pem)
{
	mbedtls_x509_crl crl;
	mbedtls_x509_crt crt;
	char path[256];
	bool listed;

	snprintf(path, sizeof(path), "%s/%s", svc_dir, SERVICE_CRL_FILE);
	mbedtls_x509_crl_init(&crl);
	mbedtls_x509_crt_init(&crt);
	cr_assert_eq(mbedtls_x509_crl_parse_file(&crl, path), 0, "mbedTLS does not parse %s", path);
	cr_assert_eq(crl.version, 2);
	cr_assert_eq(mbedtls_x509_crt_parse(&crt, (const unsigned char *)pem, strlen(pem) + 1), 0);
	listed = mbedtls_x509_crt_is_revoked(&crt, &crl) != 0;
	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crl_free(&crl);
	return listed;
}

/* openssl verify -crl_check of the certificate 'pem' against the operational CA: its status. */
static int openssl_verify(const char *pem)
{
	char cmd[1024];

	snprintf(
		cmd, sizeof(cmd),
		"openssl verify -crl_check -CAfile %s/op-ca.crt -CRLfile %s/%s %s >>%s/openssl.log "
		"2>&1",
		svc_dir, svc_dir, SERVICE_CRL_FILE, save_pem("cert.pem", pem), tmp);
	return system(cmd);
}

static char *openssl_log(void)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/openssl.log", tmp);
	return gd_read_file(path);
}

/* How many lines of `openssl crl -text` of op-ca.crl contain 'word'. */
static int openssl_crl_count(const char *word)
{
	char cmd[512], line[256];
	int n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "openssl crl -in %s/%s -noout -text", svc_dir, SERVICE_CRL_FILE);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p) != NULL)
		n += strstr(line, word) != NULL;
	cr_assert_eq(pclose(p), 0, "openssl crl failed");
	return n;
}

Test(service, init_writes_an_empty_crl_that_openssl_and_mbedtls_accept)
{
	struct service *s = new_service();
	mbedtls_x509_crl crl;
	char path[256], cmd[1024];
	struct tm next;

	snprintf(path, sizeof(path), "%s/%s", svc_dir, SERVICE_CRL_FILE);
	mbedtls_x509_crl_init(&crl);
	cr_assert_eq(mbedtls_x509_crl_parse_file(&crl, path), 0);
	cr_assert_eq(crl.version, 2);
	cr_assert_eq(crl.entry.serial.len, 0, "an empty CRL lists a certificate");
	cr_assert_eq(mbedtls_x509_time_is_past(&crl.this_update), 1);
	next = (struct tm){ .tm_year = crl.next_update.year - 1900,
			    .tm_mon = crl.next_update.mon - 1,
			    .tm_mday = crl.next_update.day,
			    .tm_hour = crl.next_update.hour,
			    .tm_min = crl.next_update.min,
			    .tm_sec = crl.next_update.sec };
	cr_assert_geq((int64_t)timegm(&next) - gd_now_ms() / 1000, SERVICE_CRL_VALID_S - 5);
	mbedtls_x509_crl_free(&crl);
	/* signed by the operational CA, and its key identifier is the CA's */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && openssl crl -in op-ca.crl -CAfile op-ca.crt -noout 2>&1 | grep -qx "
		 "'verify OK' && test \"$(openssl crl -in op-ca.crl -noout -text | grep -A1 "
		 "'Authority Key Identifier' | tail -1 | tr -d ' ')\" = \"$(openssl x509 -in "
		 "op-ca.crt -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' ')\"",
		 svc_dir);
	cr_assert_eq(system(cmd), 0, "openssl does not accept the CRL");
	cr_assert_eq(mode_of("op-ca.crl") & 0777, 0644);
	service_free(s);
}

Test(service, a_new_certificate_supersedes_the_earlier_ones)
{
	struct service *s = new_service();
	struct device d, other;
	struct meas_log log;
	char *first, *second, *third, *others, *text;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	device_new(&other, "press-08");
	device_enroll(s, &other);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	others = attest_ok(s, &other, &log);
	first = attest_ok(s, &d, &log);
	cr_assert_not(s->crl_stale, "a first certificate revoked something");
	second = attest_ok(s, &d, &log);
	cr_assert(s->crl_stale);
	cr_assert_eq(revoke_publish(s), 1);
	cr_assert_not(s->crl_stale);
	cr_assert(crl_lists(first), "the superseded certificate is not in the CRL");
	cr_assert_not(crl_lists(second));
	cr_assert_not(crl_lists(others));
	cr_assert_neq(openssl_verify(first), 0, "openssl accepts the superseded certificate");
	text = openssl_log();
	cr_assert(strstr(text, "certificate revoked") != NULL, "%s", text);
	free(text);
	cr_assert_eq(openssl_verify(second), 0, "%s", openssl_log());
	cr_assert_eq(openssl_verify(others), 0);
	/* a third: both earlier ones listed, once each, as superseded */
	third = attest_ok(s, &d, &log);
	cr_assert_eq(revoke_publish(s), 2);
	cr_assert(crl_lists(first) && crl_lists(second) && !crl_lists(third));
	cr_assert_eq(openssl_crl_count("Superseded"), 2);
	free(first);
	free(second);
	free(third);
	free(others);
	device_free(&d);
	device_free(&other);
	service_free(s);
}

Test(service, a_refusal_revokes_but_not_a_duplicate_or_malformed_evidence)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log, changed;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *cert, *env;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	cr_assert(res.ok);
	cert = res.cert_pem;
	/* the same evidence delivered again, and evidence that does not parse: refused, but
	 * nothing is revoked */
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "replayed_nonce");
	verify_env(s, d.name, "{\"evidence\":", &res);
	expect_refusal(&res, "malformed");
	cr_assert_not(s->crl_stale, "a duplicate or malformed evidence revoked a certificate");
	free(env);
	/* a changed measurement: the certificate in force is revoked */
	sample_log(&changed, 0x23);
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &changed);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert(s->crl_stale);
	cr_assert_eq(revoke_publish(s), 1);
	cr_assert(crl_lists(cert), "the certificate in force survived a refusal");
	cr_assert_eq(openssl_crl_count("Privilege Withdrawn"), 1);
	cr_assert_neq(openssl_verify(cert), 0, "openssl accepts a withdrawn certificate");
	free(env);
	free(cert);
	device_free(&d);
	service_free(s);
}

/* Appends the content of 'path' to itself: every line repeated. */
static int append_copy(const char *path)
{
	char *text = gd_read_file(path);
	FILE *f = fopen(path, "a");
	int rc = text != NULL && f != NULL && fputs(text, f) >= 0 ? 0 : -1;

	if (f != NULL && fclose(f) != 0)
		rc = -1;
	free(text);
	return rc;
}

Test(service, two_instances_share_what_was_issued)
{
	struct service *one = new_service(), *two = new_service();
	struct device d;
	struct meas_log log;
	char *first, *second;

	device_new(&d, "press-07");
	device_enroll(one, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	first = attest_ok(one, &d, &log);
	second = attest_ok(two, &d, &log);
	cr_assert(two->crl_stale, "the other instance's certificate was not superseded");
	cr_assert_eq(revoke_publish(one), 1);
	cr_assert(crl_lists(first) && !crl_lists(second));
	free(first);
	free(second);
	device_free(&d);
	service_free(two);
	service_free(one);
}

Test(service, expired_certificates_leave_the_crl)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log;
	char path[256], *first, *second, *text;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	first = attest_ok(s, &d, &log);
	second = attest_ok(s, &d, &log);
	cr_assert_eq(revoke_publish(s), 1);
	/* a line repeated (a crash between revoked.log and the device's file) is listed once */
	snprintf(path, sizeof(path), "%s/revoked.log", svc_dir);
	cr_assert_eq(append_copy(path), 0);
	cr_assert_eq(revoke_publish(s), 1);
	/* still listed a moment after notAfter (a broker's clock may be behind), then gone */
	clock_offset_ms = (LIFETIME_S + SERVICE_SKEW_S - 5) * 1000LL;
	cr_assert_eq(revoke_publish(s), 1);
	clock_offset_ms = (LIFETIME_S + SERVICE_SKEW_S + 5) * 1000LL;
	cr_assert_eq(revoke_publish(s), 0);
	cr_assert_not(crl_lists(first));
	text = gd_read_file(path);
	cr_assert_not_null(text);
	cr_assert_str_eq(text, "", "revoked.log keeps an expired entry");
	free(text);
	free(first);
	free(second);
	device_free(&d);
	service_free(s);
}

/* A child named 'name' that exits 7 on SIGHUP; returns when it has its name. */
static pid_t named_child(const char *name)
{
	sigset_t hup;
	int fds[2];
	char ready;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int sig = 0;

		sigprocmask(SIG_BLOCK, &hup, NULL);
		prctl(PR_SET_NAME, name);
		if (write(fds[1], "r", 1) != 1)
			_exit(1);
		sigwait(&hup, &sig);
		_exit(7);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &ready, 1), 1);
	close(fds[0]);
	return pid;
}

Test(service, the_broker_of_the_pid_file_is_told_to_reload)
{
	struct service *s = new_service();
	char pid_file[256], text[32];
	pid_t broker, stranger;
	int status = 0;

	snprintf(pid_file, sizeof(pid_file), "%s/mosquitto.pid", tmp);
	s->cfg.broker_pid_file = strdup(pid_file);
	cr_assert_eq(revoke_reload_broker(s), 0, "no pid file: nothing to signal");
	broker = named_child("mosquitto");
	snprintf(text, sizeof(text), "%ld\n", (long)broker);
	cr_assert_eq(gd_write_file_atomic(pid_file, text, strlen(text), 0644), 0);
	cr_assert_eq(revoke_publish(s), 0);
	cr_assert_eq(waitpid(broker, &status, 0), broker);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 7, "the broker got no SIGHUP");
	/* a stale pid file naming another process: it is not signalled */
	stranger = named_child("sleeper");
	snprintf(text, sizeof(text), "%ld", (long)stranger);
	cr_assert_eq(gd_write_file_atomic(pid_file, text, strlen(text), 0644), 0);
	cr_assert_eq(revoke_reload_broker(s), 0);
	kill(stranger, SIGTERM);
	cr_assert_eq(waitpid(stranger, &status, 0), stranger);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
		  "a process that is not the broker got SIGHUP");
	service_free(s);
}

Test(service, broker_pid_file_is_read_relative_to_the_directory)
{
	struct service *s = new_service();
	struct service_config cfg = { 0 };
	struct conf c;
	char want[256];

	s->cfg.broker_pid_file = strdup("run/mosquitto.pid");
	cr_assert_eq(service_config_write(svc_dir, &s->cfg), 0);
	conf_init(&c, SERVICE_CONFIG_FILE);
	cr_assert_eq(service_config_load(svc_dir, &cfg, &c), 0);
	snprintf(want, sizeof(want), "%s/run/mosquitto.pid", svc_dir);
	cr_assert_str_eq(cfg.broker_pid_file, want);
	conf_release(&c);
	service_config_release(&cfg);
	service_free(s);
}

/* Thousands of entries, serials with the top bit set, dates past 2049 (GeneralizedTime). */
Test(service, a_long_crl_is_encoded_whole)
{
	struct service *s = new_service();
	struct crl_entry *e = calloc(3000, sizeof(*e));
	const mbedtls_x509_crl_entry *at;
	mbedtls_x509_crl crl;
	char path[256], why[512] = "", cmd[512];
	size_t n = 0;

	cr_assert_not_null(e);
	for (size_t i = 0; i < 3000; i++) {
		memset(e[i].serial, (int)(i % 251), sizeof(e[i].serial));
		e[i].serial[0] = (uint8_t)(i >> 8 | (i % 2 ? 0x80 : 0x40));
		e[i].serial[1] = (uint8_t)i;
		e[i].revoked_s = i % 3 ? 1700000000 : 2900000000LL;
		e[i].reason = i % 2 ? REVOKE_REFUSED : REVOKE_SUPERSEDED;
	}
	snprintf(path, sizeof(path), "%s/long.crl", tmp);
	cr_assert_eq(crl_write(path, &s->op_ca.crt, &s->op_ca.key, &s->drbg, e, 3000, gd_now_ms(),
			       why, sizeof(why)),
		     0, "%s", why);
	mbedtls_x509_crl_init(&crl);
	cr_assert_eq(mbedtls_x509_crl_parse_file(&crl, path), 0);
	for (at = &crl.entry; at != NULL && at->serial.len > 0; at = at->next) {
		cr_assert_eq(at->serial.len, SERVICE_SERIAL_LEN + (e[n].serial[0] & 0x80 ? 1 : 0));
		cr_assert_eq(memcmp(at->serial.p + at->serial.len - SERVICE_SERIAL_LEN, e[n].serial,
				    SERVICE_SERIAL_LEN),
			     0, "entry %zu", n);
		cr_assert_eq(at->revocation_date.year, n % 3 ? 2023 : 2061, "entry %zu", n);
		n++;
	}
	cr_assert_eq(n, 3000);
	mbedtls_x509_crl_free(&crl);
	snprintf(cmd, sizeof(cmd),
		 "openssl crl -in %s -CAfile %s/op-ca.crt -noout 2>&1 | grep -qx 'verify OK'", path,
		 svc_dir);
	cr_assert_eq(system(cmd), 0, "openssl does not accept a long CRL");
	free(e);
	service_free(s);
}

/* ---- TPM evidence (PROTOCOL.md, "TPM evidence") ------------------------------------------- */

TestSuite(service_tpm, .init = setup, .fini = teardown);

/* A device's TPM as its broker shows it: the attestation key, PCR 23 and quotes over it. */
struct tpm_sim {
	mbedtls_pk_context ak;
	char ak_pem[512];
	int pcr;		     /* the PCR the quote selects */
	uint8_t pcr_value[32];	     /* what that PCR holds */
	bool replay;		     /* quote 'replay_extra' instead of what it is asked */
	uint8_t replay_extra[32];    /* ... */
	uint8_t last_qualifying[32]; /* what it was last asked to quote */
};

static void tpm_sim_new(struct tpm_sim *t, const struct meas_log *pcr_log)
{
	memset(t, 0, sizeof(*t));
	new_key(&t->ak, MBEDTLS_ECP_DP_SECP256R1);
	cr_assert_eq(
		mbedtls_pk_write_pubkey_pem(&t->ak, (unsigned char *)t->ak_pem, sizeof(t->ak_pem)),
		0);
	t->pcr = 23;
	memcpy(t->pcr_value, pcr_log->reg, 32);
}

static int tpm_sim_quote(void *ctx, const uint8_t qualifying[32], uint8_t *attest,
			 size_t *attest_len, uint8_t *sig, size_t *sig_len)
{
	struct tpm_sim *t = ctx;
	struct fake_quote q;
	size_t n;

	memcpy(t->last_qualifying, qualifying, 32);
	fake_quote_init(&q, t->replay ? t->replay_extra : qualifying, t->pcr, t->pcr_value);
	n = fake_quote_marshal(&q, attest, *attest_len);
	if (n == 0)
		return GD_EFULL;
	*attest_len = n;
	return fake_quote_sign(&t->ak, &drbg, attest, n, sig, sig_len) == 0 ? 0 : GD_EINVAL;
}

static void device_enroll_ak(struct service *s, struct device *d, const struct tpm_sim *t)
{
	char csr[4096], name[64], why[512] = "";

	make_csr(&d->identity, d->name, csr, sizeof(csr));
	cr_assert_eq(
		registry_enroll_ak(s, csr, t->ak_pem, false, name, &d->cert_pem, why, sizeof(why)),
		0, "enroll: %s", why);
	cr_assert_str_eq(name, d->name);
}

/* TPM evidence of 'd' for a fresh nonce: the claims of 'log', quoted by 't'. */
static char *tpm_envelope(struct service *s, struct device *d, struct tpm_sim *t,
			  const struct meas_log *log)
{
	struct evidence ev;
	uint8_t nonce[NONCE_LEN];
	char *env;

	get_nonce(s, d->name, nonce);
	fill_evidence(&ev, d, nonce, log);
	ev.tpm = true;
	ev.tpm_pcr = 23;
	env = evidence_envelope_build_tpm(&ev, tpm_sim_quote, t);
	cr_assert_not_null(env);
	return env;
}

static void expect_ok(struct service *s, const char *dev, const char *env)
{
	struct attest_result res;

	verify_env(s, dev, env, &res);
	cr_assert(res.ok, "refused: %s: %s", res.reason, res.detail);
	cr_assert_not_null(res.cert_pem);
	attest_result_free(&res);
}

static char *read_dev_file(const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/devices/%s", svc_dir, file);
	return gd_read_file(path);
}

/* Whether the certificate 'pem' is for 'key'. */
static bool same_key_pem(const char *pem, mbedtls_pk_context *key)
{
	uint8_t a[UEID_LEN], b[UEID_LEN];

	return evidence_ueid(pem, a) == 0 && evidence_ueid_of_key(key, b) == 0 &&
	       memcmp(a, b, UEID_LEN) == 0;
}

Test(service_tpm, enroll_with_an_attestation_key)
{
	struct service *s = new_service();
	struct device d, other;
	struct meas_log log;
	struct tpm_sim t, t2;
	mbedtls_pk_context p384;
	char csr[4096], name[64], why[512] = "", pem[1024], *cert = NULL, *text;

	sample_log(&log, 0x22);
	tpm_sim_new(&t, &log);
	tpm_sim_new(&t2, &log);
	device_new(&d, "press-07");
	device_enroll_ak(s, &d, &t);
	text = read_dev_file("press-07.ak.pem");
	cr_assert_not_null(text);
	cr_assert_str_eq(text, t.ak_pem);
	free(text);
	cr_assert_eq(mode_of("devices/press-07.ak.pem") & S_IFMT, S_IFREG);

	/* an attestation key that is not EC P-256, or not a key: refused before anything is
	 * written */
	device_new(&other, "press-09");
	make_csr(&other.identity, other.name, csr, sizeof(csr));
	new_key(&p384, MBEDTLS_ECP_DP_SECP384R1);
	cr_assert_eq(mbedtls_pk_write_pubkey_pem(&p384, (unsigned char *)pem, sizeof(pem)), 0);
	cr_assert_neq(registry_enroll_ak(s, csr, pem, false, name, &cert, why, sizeof(why)), 0);
	cr_assert(strstr(why, "EC key on another curve, expected P-256") != NULL, "%s", why);
	cr_assert_neq(registry_enroll_ak(s, csr, "-----BEGIN PUBLIC KEY-----\nAAAA\n", false, name,
					 &cert, why, sizeof(why)),
		      0);
	cr_assert(strstr(why, "not a PEM public key") != NULL, "%s", why);
	cr_assert_neq(registry_enroll_ak(s, csr, d.cert_pem, false, name, &cert, why, sizeof(why)),
		      0, "a certificate is not a public key");
	cr_assert_null(cert);
	cr_assert_null(registry_lookup(test_store(), "press-09"),
		       "a device was enrolled all the same");
	cr_assert_null(registry_lookup_ak(test_store(), "press-09"));
	cr_assert_eq(errno, ENOENT);

	/* the same identity and key again: fine; another key: needs --replace */
	make_csr(&d.identity, d.name, csr, sizeof(csr));
	cr_assert_eq(registry_enroll_ak(s, csr, t.ak_pem, false, name, &cert, why, sizeof(why)), 0,
		     "%s", why);
	free(cert);
	cert = NULL;
	cr_assert_eq(registry_enroll_ak(s, csr, t2.ak_pem, false, name, &cert, why, sizeof(why)),
		     GD_EDENIED);
	cr_assert(strstr(why, "already enrolled with another attestation key") != NULL, "%s", why);
	cr_assert_null(cert);
	text = read_dev_file("press-07.ak.pem");
	cr_assert_str_eq(text, t.ak_pem, "a refused enrollment changed the key");
	free(text);
	cr_assert_eq(registry_enroll_ak(s, csr, t2.ak_pem, true, name, &cert, why, sizeof(why)), 0,
		     "%s", why);
	free(cert);
	cert = NULL;
	text = read_dev_file("press-07.ak.pem");
	cr_assert_str_eq(text, t2.ak_pem);
	free(text);
	/* without --ak the key stays; --replace without --ak would leave TPM mode: refused */
	cr_assert_eq(registry_enroll(s, csr, false, name, &cert, why, sizeof(why)), 0, "%s", why);
	free(cert);
	cert = NULL;
	text = read_dev_file("press-07.ak.pem");
	cr_assert_not_null(text, "enrolling the identity again dropped the attestation key");
	free(text);
	cr_assert_eq(registry_enroll(s, csr, true, name, &cert, why, sizeof(why)), GD_EDENIED);
	cr_assert(strstr(why, "enrolled with a TPM attestation key (devices/press-07.ak.pem)") !=
			  NULL,
		  "%s", why);
	cr_assert_null(cert);
	text = read_dev_file("press-07.ak.pem");
	cr_assert_str_eq(text, t2.ak_pem);
	free(text);
	/* a new identity and a new key together: --replace replaces both */
	device_free(&d);
	device_new(&d, "press-07");
	make_csr(&d.identity, d.name, csr, sizeof(csr));
	cr_assert_eq(registry_enroll_ak(s, csr, t.ak_pem, false, name, &cert, why, sizeof(why)),
		     GD_EDENIED, "another identity key without --replace");
	cr_assert_eq(registry_enroll_ak(s, csr, t.ak_pem, true, name, &cert, why, sizeof(why)), 0,
		     "%s", why);
	cr_assert(same_key_pem(cert, &d.identity), "the certificate is not for the new key");
	free(cert);
	text = read_dev_file("press-07.ak.pem");
	cr_assert_str_eq(text, t.ak_pem);
	free(text);

	mbedtls_pk_free(&p384);
	mbedtls_pk_free(&t2.ak);
	mbedtls_pk_free(&t.ak);
	device_free(&other);
	device_free(&d);
	service_free(s);
}

Test(service_tpm, tpm_evidence_is_accepted)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log;
	struct tpm_sim t;
	struct attest_result res;
	char *env;

	device_new(&d, "press-07");
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	tpm_sim_new(&t, &log);
	device_enroll_ak(s, &d, &t);
	env = tpm_envelope(s, &d, &t, &log);
	expect_ok(s, d.name, env);
	cr_assert_eq(s->stats.issued, 1);
	/* and only once */
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "replayed_nonce");
	free(env);
	mbedtls_pk_free(&t.ak);
	device_free(&d);
	service_free(s);
}

/* 'env' with its member 'key' set to the raw JSON 'value' (caller frees). */
static char *env_with(const char *env, const char *key, const char *value)
{
	cJSON *obj = cJSON_Parse(env);
	char *out;

	cr_assert_not_null(obj);
	cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
	cJSON_AddItemToObject(obj, key, cJSON_Parse(value));
	out = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return out;
}

/* The string member 'key' of 'env' as raw JSON (caller frees). */
static char *env_member(const char *env, const char *key)
{
	cJSON *obj = cJSON_Parse(env);
	char *out;

	out = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(obj, key));
	cJSON_Delete(obj);
	return out;
}

Test(service_tpm, what_is_not_quoted_by_the_enrolled_key_is_a_bad_signature)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log;
	struct tpm_sim t, stranger;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *env, *first, *quote, *sig, *spliced;

	device_new(&d, "press-07");
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	tpm_sim_new(&t, &log);
	tpm_sim_new(&stranger, &log);
	device_enroll_ak(s, &d, &t);

	/* no quote: evidence signed by the identity key, as in file mode */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert_str_eq(res.detail,
			 "enrolled with a TPM attestation key; evidence must carry a quote");
	free(env);

	/* a quote, but claims that do not say which PCR it covers */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	first = tpm_envelope(s, &d, &t, &log);
	quote = env_member(first, "quote");
	spliced = env_with(env, "quote", quote);
	verify_env(s, d.name, spliced, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert(strstr(res.detail, "must name the quoted PCR") != NULL, "%s", res.detail);
	free(spliced);
	free(env);

	/* the quote and signature of other claims (an earlier round's): extraData differs */
	env = tpm_envelope(s, &d, &t, &log);
	spliced = env_with(env, "quote", quote);
	sig = env_member(first, "sig");
	free(env);
	env = env_with(spliced, "sig", sig);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert(strstr(res.detail, "extraData") != NULL, "%s", res.detail);
	cr_assert(strstr(res.detail, "is not SHA-256 of the claims") != NULL, "%s", res.detail);
	free(env);
	free(spliced);
	free(sig);
	free(quote);
	free(first);

	/* a quote the TPM signed over another qualifying value */
	first = tpm_envelope(s, &d, &t, &log);
	memcpy(t.replay_extra, t.last_qualifying, 32);
	t.replay = true;
	env = tpm_envelope(s, &d, &t, &log);
	t.replay = false;
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert(strstr(res.detail, "extraData") != NULL, "%s", res.detail);
	free(env);
	free(first);

	/* quoted by another TPM's key */
	env = tpm_envelope(s, &d, &stranger, &log);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert_str_eq(res.detail, "the quote's signature does not verify with the attestation "
				     "key enrolled for press-07");
	free(env);

	/* a quote that is not a quote (signed all the same) */
	{
		struct fake_quote q;
		uint8_t attest[256], der[80], digest[32];
		size_t n, siglen = 0;
		char b64[512], json[600], *claims, *envq;
		cJSON *text;

		env = tpm_envelope(s, &d, &t, &log);
		claims = env_member(env, "evidence");
		text = cJSON_Parse(claims);
		mbedtls_sha256_ret((const uint8_t *)cJSON_GetStringValue(text),
				   strlen(cJSON_GetStringValue(text)), digest, 0);
		cJSON_Delete(text);
		fake_quote_init(&q, digest, 23, log.reg);
		q.type = 0x8017;
		n = fake_quote_marshal(&q, attest, sizeof(attest));
		cr_assert_eq(fake_quote_sign(&t.ak, &drbg, attest, n, der, &siglen), 0);
		cr_assert_gt(b64url_encode(attest, n, b64, sizeof(b64)), 0);
		snprintf(json, sizeof(json), "\"%s\"", b64);
		envq = env_with(env, "quote", json);
		cr_assert_gt(b64url_encode(der, siglen, b64, sizeof(b64)), 0);
		snprintf(json, sizeof(json), "\"%s\"", b64);
		free(env);
		env = env_with(envq, "sig", json);
		verify_env(s, d.name, env, &res);
		expect_refusal(&res, "bad_signature");
		cr_assert(strstr(res.detail, "type 0x8017, not TPM_ST_ATTEST_QUOTE") != NULL, "%s",
			  res.detail);
		free(envq);
		free(claims);
		free(env);
	}

	/* the ueid still names the enrolled identity key */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	ev.ueid[3] ^= 1;
	ev.tpm = true;
	ev.tpm_pcr = 23;
	env = evidence_envelope_build_tpm(&ev, tpm_sim_quote, &t);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert(strstr(res.detail, "ueid") != NULL, "%s", res.detail);
	free(env);

	/* after all that, a good round */
	env = tpm_envelope(s, &d, &t, &log);
	expect_ok(s, d.name, env);
	free(env);
	mbedtls_pk_free(&stranger.ak);
	mbedtls_pk_free(&t.ak);
	device_free(&d);
	service_free(s);
}

Test(service_tpm, a_log_the_pcr_does_not_hold_is_a_measurement_mismatch)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log reported, truth;
	struct tpm_sim t;
	struct attest_result res;
	uint8_t want[32], got[32], d11[32];
	char want_hex[65], got_hex[65], detail[300], *env;

	device_new(&d, "press-07");
	sample_log(&reported, 0x22);
	record_reference(&reported, "release-1");
	/* What ran: another exe. The device reports the reference's log, register and all
	 * consistent, but PCR 23 holds the fold of what was measured. */
	truth = reported;
	memset(d11, 0x99, sizeof(d11));
	memcpy(truth.items[0].sha256, d11, 32);
	meas_fold(&truth, truth.reg);
	tpm_sim_new(&t, &truth);
	device_enroll_ak(s, &d, &t);
	env = tpm_envelope(s, &d, &t, &reported);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	mbedtls_sha256_ret(truth.reg, 32, got, 0);
	mbedtls_sha256_ret(reported.reg, 32, want, 0);
	gd_hex_encode(got, 32, got_hex);
	gd_hex_encode(want, 32, want_hex);
	snprintf(detail, sizeof(detail),
		 "the TPM's PCR 23 does not hold the reported measurements (quote's PCR digest "
		 "%.16s..., the log's %.16s...)",
		 got_hex, want_hex);
	cr_assert_str_eq(res.detail, detail);
	free(env);

	/* The true log with its register: not the reference, and said so by check 6. */
	env = tpm_envelope(s, &d, &t, &truth);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert(strstr(res.detail, "exe /usr/bin/guardian: sha256 99999999") != NULL, "%s",
		  res.detail);
	free(env);

	/* The PCR check comes after the nonce and the fold: a stale nonce is said first. */
	env = tpm_envelope(s, &d, &t, &reported);
	clock_offset_ms = (TTL_S + 1) * 1000;
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "stale_nonce");
	clock_offset_ms = 0;
	free(env);

	/* A quote of another PCR than the claims name. */
	memcpy(t.pcr_value, reported.reg, 32);
	t.pcr = 16;
	env = tpm_envelope(s, &d, &t, &reported);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert(strstr(res.detail, "covers SHA-256 PCR 16, not PCR 23") != NULL, "%s",
		  res.detail);
	free(env);

	/* The PCR holding the reported log: accepted. */
	t.pcr = 23;
	env = tpm_envelope(s, &d, &t, &reported);
	expect_ok(s, d.name, env);
	free(env);
	mbedtls_pk_free(&t.ak);
	device_free(&d);
	service_free(s);
}

/* The device's log after a policy reload: the reloaded policy extended after the others. */
static void reloaded_log(struct meas_log *log, uint8_t first_policy, uint8_t last_policy)
{
	uint8_t p[32];

	sample_log(log, 0x22);
	memset(log->items[2].sha256, first_policy, 32);
	meas_fold(log, log->reg);
	memset(p, last_policy, sizeof(p));
	cr_assert_eq(meas_add(log, "policy", "/etc/guardian/policy.json", p), 0);
}

Test(service_tpm, the_effective_log_holds_the_last_policy)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log, ref, eff;
	struct tpm_sim t;
	struct attest_result res;
	char why[512] = "", *env;

	/* the log made effective */
	reloaded_log(&log, 0x33, 0x66);
	cr_assert_eq(meas_add(&log, "policy", "/etc/guardian/policy.json", log.items[1].sha256), 0);
	cr_assert_eq(log.n, 6);
	reference_effective_log(&log, &eff);
	cr_assert_eq(eff.n, 4);
	cr_assert_str_eq(eff.items[2].type, "policy");
	cr_assert_str_eq(eff.items[3].type, "file");
	cr_assert_arr_eq(eff.items[2].sha256, log.items[1].sha256, 32, "not the last policy's");
	meas_fold(&eff, ref.reg);
	cr_assert_arr_eq(eff.reg, ref.reg, 32);
	sample_log(&ref, 0x22);
	reference_effective_log(&ref, &eff);
	cr_assert_eq(eff.n, ref.n);
	cr_assert_eq(memcmp(&eff.items, &ref.items, sizeof(ref.items)), 0,
		     "a log with one policy changed");
	cr_assert_arr_eq(eff.reg, ref.reg, 32);

	/* the reference of the last policy matches; the first policy's does not */
	device_new(&d, "press-07");
	reloaded_log(&log, 0x33, 0x66);
	sample_log(&ref, 0x22);
	memset(ref.items[2].sha256, 0x33, 32);
	meas_fold(&ref, ref.reg);
	record_reference(&ref, "policy-1");
	tpm_sim_new(&t, &log);
	device_enroll_ak(s, &d, &t);
	env = tpm_envelope(s, &d, &t, &log);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert(strstr(res.detail, "policy /etc/guardian/policy.json: sha256 66666666") != NULL,
		  "%s", res.detail);
	free(env);
	memset(ref.items[2].sha256, 0x66, 32);
	meas_fold(&ref, ref.reg);
	record_reference(&ref, "policy-2");
	env = tpm_envelope(s, &d, &t, &log);
	expect_ok(s, d.name, env);
	free(env);
	/* reverted (the pending one refused): the first policy again, extended a third time */
	cr_assert_eq(meas_add(&log, "policy", "/etc/guardian/policy.json", log.items[2].sha256), 0);
	memcpy(t.pcr_value, log.reg, 32);
	cr_assert_eq(reference_remove(test_store(), "policy-2", why, sizeof(why)), 0, "%s", why);
	env = tpm_envelope(s, &d, &t, &log);
	expect_ok(s, d.name, env);
	free(env);

	mbedtls_pk_free(&t.ak);
	device_free(&d);
	service_free(s);
}

Test(service_tpm, a_device_without_an_attestation_key_is_verified_as_before)
{
	struct service *s = new_service();
	struct device d, tpm_dev;
	struct meas_log log;
	struct tpm_sim t;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *env, *spliced, *quote;

	device_new(&d, "press-08");
	device_enroll(s, &d);
	cr_assert_null(registry_lookup_ak(test_store(), d.name));
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	tpm_sim_new(&t, &log);

	/* file-mode evidence: accepted; with a "quote" member too (ignored) */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	expect_ok(s, d.name, env);
	free(env);
	device_new(&tpm_dev, "press-07");
	device_enroll_ak(s, &tpm_dev, &t);
	spliced = tpm_envelope(s, &tpm_dev, &t, &log);
	quote = env_member(spliced, "quote");
	free(spliced);
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	spliced = envelope(&ev, &d.identity);
	env = env_with(spliced, "quote", quote);
	expect_ok(s, d.name, env);
	free(env);
	free(spliced);
	free(quote);

	/* TPM evidence from it: the sig is the AK's, which its identity key did not make */
	env = tpm_envelope(s, &d, &t, &log);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	cr_assert(strstr(res.detail, "identity key enrolled for press-08") != NULL, "%s",
		  res.detail);
	free(env);

	/* its file-mode envelope is what it always was: no "tpm", no "quote" */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	cr_assert_null(strstr(env, "tpm"), "%s", env);
	cr_assert_null(strstr(env, "quote"), "%s", env);
	free(env);

	mbedtls_pk_free(&t.ak);
	device_free(&tpm_dev);
	device_free(&d);
	service_free(s);
}

/* ---- the fast paths: OpenSSL checks and signs what mbedTLS parsed (ecdsa.c, opcert.c) ---- */

Test(service, a_re_enrolled_device_is_verified_with_its_new_key)
{
	struct service *s = new_service();
	struct device d, old;
	struct meas_log log;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char csr[4096], name[64], why[512] = "", *env, *pem;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	pem = attest_ok(s, &d, &log);
	free(pem);

	/* enrolled again, with --replace, under another identity key */
	old = d;
	old.cert_pem = strdup(d.cert_pem);
	new_key(&d.identity, MBEDTLS_ECP_DP_SECP256R1);
	free(d.cert_pem);
	d.cert_pem = NULL;
	make_csr(&d.identity, d.name, csr, sizeof(csr));
	cr_assert_eq(registry_enroll(s, csr, true, name, &d.cert_pem, why, sizeof(why)), 0, "%s",
		     why);

	/* the old key's evidence, with the old key's ueid: refused */
	get_nonce(s, old.name, nonce);
	fill_evidence(&ev, &old, nonce, &log);
	env = envelope(&ev, &old.identity);
	verify_env(s, old.name, env, &res);
	expect_refusal(&res, "bad_signature");
	free(env);
	/* signed by the new key but naming the old one in its ueid: refused */
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &old, nonce, &log);
	env = envelope(&ev, &d.identity);
	verify_env(s, d.name, env, &res);
	expect_refusal(&res, "bad_signature");
	free(env);
	/* the new key's evidence: a certificate */
	pem = attest_ok(s, &d, &log);
	free(pem);

	mbedtls_pk_free(&old.identity);
	free(old.cert_pem);
	device_free(&d);
	service_free(s);
}

Test(service, the_ecdsa_check_refuses_what_mbedtls_refuses)
{
	mbedtls_pk_context key, other, p384;
	uint8_t digest[32], sig[EVIDENCE_SIG_MAX + 8];
	size_t len = 0;

	new_key(&key, MBEDTLS_ECP_DP_SECP256R1);
	new_key(&other, MBEDTLS_ECP_DP_SECP256R1);
	new_key(&p384, MBEDTLS_ECP_DP_SECP384R1);
	mbedtls_sha256_ret((const uint8_t *)"claims", 6, digest, 0);
	cr_assert_eq(mbedtls_pk_sign(&key, MBEDTLS_MD_SHA256, digest, 32, sig, &len,
				     mbedtls_ctr_drbg_random, &drbg),
		     0);
	cr_assert(service_ecdsa_verify(&key, digest, sig, len));
	cr_assert_not(service_ecdsa_verify(&other, digest, sig, len), "another key");
	cr_assert_not(service_ecdsa_verify(&p384, digest, sig, len), "a P-384 key");
	cr_assert_not(service_ecdsa_verify(&key, digest, sig, len - 1), "cut short");
	cr_assert_not(service_ecdsa_verify(&key, digest, sig, 0), "empty");
	sig[len] = 0;
	cr_assert_not(service_ecdsa_verify(&key, digest, sig, len + 1), "a byte after the DER");
	digest[5] ^= 1;
	cr_assert_not(service_ecdsa_verify(&key, digest, sig, len), "another digest");
	digest[5] ^= 1;
	sig[len - 3] ^= 0x40;
	cr_assert_not(service_ecdsa_verify(&key, digest, sig, len), "a changed signature");
	mbedtls_pk_free(&key);
	mbedtls_pk_free(&other);
	mbedtls_pk_free(&p384);
}

Test(service, the_operational_certificate_is_written_as_issue_cert_writes_it)
{
	struct service *s = new_service();
	struct cert_spec spec = { .cn = "press-07",
				  .not_before_s = test_clock() / 1000 - SERVICE_SKEW_S,
				  .not_after_s = test_clock() / 1000 + LIFETIME_S,
				  .client_auth = true };
	mbedtls_pk_context op;
	mbedtls_x509_crt a, b, op_ca;
	char pem_a[SERVICE_PEM_MAX], pem_b[SERVICE_PEM_MAX];
	uint8_t serial[SERVICE_SERIAL_LEN];
	uint32_t flags = 0;

	new_key(&op, MBEDTLS_ECP_DP_SECP256R1);
	cr_assert_eq(issue_cert(&op, &spec, &s->op_ca.key, &s->op_ca.crt, &s->drbg, pem_a,
				sizeof(pem_a), NULL),
		     0);
	cr_assert_eq(issue_op_cert(&op, &spec, &s->op_ca, &s->drbg, pem_b, sizeof(pem_b), serial),
		     0);
	mbedtls_x509_crt_init(&a);
	mbedtls_x509_crt_init(&b);
	cr_assert_eq(mbedtls_x509_crt_parse(&a, (const uint8_t *)pem_a, strlen(pem_a) + 1), 0);
	cr_assert_eq(mbedtls_x509_crt_parse(&b, (const uint8_t *)pem_b, strlen(pem_b) + 1), 0);
	cr_assert(load_crt(&op_ca, "op-ca.crt"));
	cr_assert_eq(mbedtls_x509_crt_verify(&b, &op_ca, NULL, NULL, &flags, NULL, NULL), 0,
		     "flags %x", flags);
	/* the same names, key, validity and extensions, byte for byte; another serial */
	cr_assert_eq(b.version, 3);
	cr_assert_eq(b.sig_md, MBEDTLS_MD_SHA256);
	cr_assert_eq(b.serial.len, SERVICE_SERIAL_LEN);
	cr_assert_eq(memcmp(b.serial.p, serial, SERVICE_SERIAL_LEN), 0);
	cr_assert(b.issuer_raw.len == a.issuer_raw.len &&
		  memcmp(b.issuer_raw.p, a.issuer_raw.p, a.issuer_raw.len) == 0);
	cr_assert(b.subject_raw.len == a.subject_raw.len &&
		  memcmp(b.subject_raw.p, a.subject_raw.p, a.subject_raw.len) == 0);
	cr_assert(b.pk_raw.len == a.pk_raw.len &&
		  memcmp(b.pk_raw.p, a.pk_raw.p, a.pk_raw.len) == 0);
	cr_assert_eq(memcmp(&b.valid_from, &a.valid_from, sizeof(a.valid_from)), 0);
	cr_assert_eq(memcmp(&b.valid_to, &a.valid_to, sizeof(a.valid_to)), 0);
	cr_assert(b.v3_ext.len == a.v3_ext.len && memcmp(b.v3_ext.p, a.v3_ext.p, a.v3_ext.len) == 0,
		  "the extensions differ:\n%s\n%s", pem_a, pem_b);
	/* a CA is not an operational certificate */
	spec.is_ca = true;
	cr_assert_neq(issue_op_cert(&op, &spec, &s->op_ca, &s->drbg, pem_b, sizeof(pem_b), NULL),
		      0);
	mbedtls_x509_crt_free(&a);
	mbedtls_x509_crt_free(&b);
	mbedtls_x509_crt_free(&op_ca);
	mbedtls_pk_free(&op);
	service_free(s);
}

/* ---- the store: service.json, init, migrate ------------------------------------------------ */

/* Sets "store" in the service.json of svc_dir to 'store_json' (NULL: none). */
static void set_store(const char *store_json)
{
	char path[256], *text;
	cJSON *root;

	snprintf(path, sizeof(path), "%s/%s", svc_dir, SERVICE_CONFIG_FILE);
	text = gd_read_file(path);
	cr_assert_not_null(text, "%s: %s", path, strerror(errno));
	root = cJSON_Parse(text);
	free(text);
	cr_assert_not_null(root);
	cJSON_DeleteItemFromObjectCaseSensitive(root, "store");
	if (store_json != NULL) {
		cJSON *store = cJSON_Parse(store_json);

		cr_assert_not_null(store, "%s", store_json);
		cJSON_AddItemToObject(root, "store", store);
	}
	text = cJSON_Print(root);
	cr_assert_eq(gd_write_file_atomic(path, text, strlen(text), 0644), 0);
	free(text);
	cJSON_Delete(root);
}

/* service_config_load of svc_dir: its result; the first error in 'err' ("" if none). */
static int load_config(struct service_config *cfg, char *err, size_t cap)
{
	struct conf c;
	int rc;

	conf_init(&c, SERVICE_CONFIG_FILE);
	rc = service_config_load(svc_dir, cfg, &c);
	snprintf(err, cap, "%s", c.nerrors > 0 && c.errors[0] != NULL ? c.errors[0] : "");
	conf_release(&c);
	return rc;
}

Test(service, the_store_of_service_json)
{
	struct service_config cfg;
	char err[1024], want[256];

	service_free(new_service());
	/* none: the files of the directory, as before the store */
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.backend, STORE_FILES);
	cr_assert_null(cfg.store.path);
	cr_assert_null(cfg.store.conninfo);
	service_config_release(&cfg);

	/* sqlite: service.db in the directory unless "path" says otherwise, resolved against it */
	set_store("{\"backend\":\"sqlite\"}");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.backend, STORE_SQLITE);
	snprintf(want, sizeof(want), "%s/service.db", svc_dir);
	cr_assert_str_eq(cfg.store.path, want);
	service_config_release(&cfg);
	cr_assert_null(cfg.store.path, "service_config_release left the path");
	set_store("{\"backend\":\"sqlite\",\"path\":\"db/fleet.db\"}");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	snprintf(want, sizeof(want), "%s/db/fleet.db", svc_dir);
	cr_assert_str_eq(cfg.store.path, want);
	service_config_release(&cfg);
	set_store("{\"backend\":\"sqlite\",\"path\":\"/var/lib/guardian/fleet.db\"}");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.store.path, "/var/lib/guardian/fleet.db");
	cr_assert_eq(cfg.store.sqlite_synchronous, STORE_SYNCHRONOUS_FULL,
		     "the default is not full");
	service_config_release(&cfg);

	/* sqlite's synchronous level: full (the default) or normal, kept through a write */
	set_store("{\"backend\":\"sqlite\",\"synchronous\":\"normal\"}");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.sqlite_synchronous, STORE_SYNCHRONOUS_NORMAL);
	cr_assert_eq(service_config_write(svc_dir, &cfg), 0);
	service_config_release(&cfg);
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.sqlite_synchronous, STORE_SYNCHRONOUS_NORMAL,
		     "service_config_write lost \"synchronous\"");
	service_config_release(&cfg);
	set_store("{\"backend\":\"sqlite\",\"synchronous\":\"full\"}");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.sqlite_synchronous, STORE_SYNCHRONOUS_FULL);
	service_config_release(&cfg);

	/* postgresql: the connection string, kept through a write and a load */
	set_store("{\"backend\":\"postgresql\",\"conninfo\":\"host=/tmp dbname=guardian\"}");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.backend, STORE_POSTGRES);
	cr_assert_str_eq(cfg.store.conninfo, "host=/tmp dbname=guardian");
	cr_assert_null(cfg.store.path);
	cr_assert_eq(service_config_write(svc_dir, &cfg), 0);
	service_config_release(&cfg);
	cr_assert_null(cfg.store.conninfo, "service_config_release left the conninfo");
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.backend, STORE_POSTGRES);
	cr_assert_str_eq(cfg.store.conninfo, "host=/tmp dbname=guardian");
	service_config_release(&cfg);
}

Test(service, a_wrong_store_is_refused_naming_the_key)
{
	static const struct {
		const char *store;
		const char *words[3]; /* each in the error */
	} bad[] = {
		{ "{\"backend\":\"mysql\"}",
		  { ": store.backend: ", "\"mysql\"", "files, sqlite, postgresql" } },
		{ "{\"backend\":\"postgresql\"}",
		  { ": store.conninfo: ", "required", "postgresql" } },
		{ "{\"backend\":\"sqlite\",\"conninfo\":\"dbname=g\"}",
		  { ": store.conninfo: ", "only for backend \"postgresql\"", "\"sqlite\"" } },
		{ "{\"backend\":\"files\",\"conninfo\":\"dbname=g\"}",
		  { ": store.conninfo: ", "only for backend \"postgresql\"", "\"files\"" } },
		{ "{\"backend\":\"postgresql\",\"conninfo\":\"dbname=g\",\"path\":\"x.db\"}",
		  { ": store.path: ", "only for backend \"sqlite\"", "\"postgresql\"" } },
		{ "{\"path\":\"x.db\"}", { ": store.backend: ", "", "" } },
		{ "{\"backend\":\"sqlite\",\"pathh\":\"x.db\"}",
		  { ": store.pathh: ", "unknown", "" } },
		{ "\"sqlite\"", { ": store: ", "object", "" } },
		{ "{\"backend\":7}", { ": store.backend: ", "files, sqlite, postgresql", "" } },
		{ "{\"backend\":\"sqlite\",\"synchronous\":\"off\"}",
		  { ": store.synchronous: ", "\"off\"", "full, normal" } },
		{ "{\"backend\":\"sqlite\",\"synchronous\":2}",
		  { ": store.synchronous: ", "full, normal", "" } },
		{ "{\"backend\":\"postgresql\",\"conninfo\":\"dbname=g\",\"synchronous\":\"full\"}",
		  { ": store.synchronous: ", "only for backend \"sqlite\"", "\"postgresql\"" } },
		{ "{\"backend\":\"files\",\"synchronous\":\"normal\"}",
		  { ": store.synchronous: ", "only for backend \"sqlite\"", "\"files\"" } },
	};
	struct service_config cfg;
	char err[1024];
	struct service *s = NULL;

	service_free(new_service());
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set_store(bad[i].store);
		cr_assert_eq(load_config(&cfg, err, sizeof(err)), GD_ECONFIG, "%s was accepted",
			     bad[i].store);
		cr_assert_null(cfg.store.path);
		cr_assert_null(cfg.store.conninfo);
		for (size_t w = 0; w < 3; w++)
			cr_assert(strstr(err, bad[i].words[w]) != NULL,
				  "%s: \"%s\" does not say \"%s\"", bad[i].store, err,
				  bad[i].words[w]);
		/* and the service does not start on it, saying the same */
		cr_assert_neq(service_open(svc_dir, &s, err, sizeof(err)), 0);
		cr_assert_null(s);
		cr_assert(strstr(err, bad[i].words[0]) != NULL, "service_open: %s", err);
	}
}

/* The files of one device, one reference, one report, two certificates (one revoked), one
 * release record. */
static void fill_files_store(struct service *s, struct device *d)
{
	struct store_release rel = { .version = 5, .ts_ms = 1763744523000LL };
	struct meas_log log;
	char why[512] = "";
	char *cert;

	device_new(d, "press-07");
	device_enroll(s, d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	free(attest_ok(s, d, &log));
	free(attest_ok(s, d, &log)); /* supersedes the first */
	cr_assert_eq(
		service_report_store(s->store, d->name,
				     "{\"device\":\"press-07\",\"boot\":\"aa\",\"kind\":"
				     "\"crash\",\"key\":\"k\",\"text\":\"t\",\"first_ts\":1,"
				     "\"last_ts\":2,\"count\":1,\"seq\":1}",
				     strlen("{\"device\":\"press-07\",\"boot\":\"aa\",\"kind\":"
					    "\"crash\",\"key\":\"k\",\"text\":\"t\",\"first_ts\":"
					    "1,\"last_ts\":2,\"count\":1,\"seq\":1}"),
				     test_clock(), why, sizeof(why)),
		0, "%s", why);
	cert = registry_lookup(s->store, d->name);
	cr_assert_not_null(cert);
	free(cert);
	snprintf(rel.sha256, sizeof(rel.sha256), "%064x", 0xabcU);
	cr_assert_eq(store_release_put(s->store, d->name, &rel, why, sizeof(why)), 0, "%s", why);
}

/* `migrate --import-files` (service_migrate_import) from the files into SQLite: everything
 * copied, then nothing on a second run. Needs the SQLite backend (service/store_sqlite.c). */
Test(service, migrate_imports_the_files_into_sqlite_once)
{
	struct service *s = new_service(), *db = NULL;
	struct store_revoked *revoked = NULL;
	struct device d;
	char why[512] = "", out[1024] = "", want[512], *cert, *installed = NULL;
	size_t n = 0;
	FILE *f;

	fill_files_store(s, &d);
	/* The same directory on SQLite: made by migrate (create), empty until the import. */
	set_store("{\"backend\":\"sqlite\"}");
	store_close(tstore);
	tstore = NULL;
	cr_assert_eq(service_store_open(svc_dir, true, &tstore, why, sizeof(why)), 0, "%s", why);
	cr_assert_null(registry_lookup(tstore, d.name), "the new database has a device already");

	f = fmemopen(out, sizeof(out), "w");
	cr_assert_eq(service_migrate_import(svc_dir, tstore, f, why, sizeof(why)), 0, "%s", why);
	fclose(f);
	snprintf(want, sizeof(want),
		 "%s: imported from the files: 1 device, 1 installed record, 1 reference, 2 "
		 "certificates, 1 revocation, 1 report document, 1 release record\n",
		 svc_dir);
	cr_assert_str_eq(out, want);

	/* A second run: the same, nothing copied. */
	memset(out, 0, sizeof(out));
	f = fmemopen(out, sizeof(out), "w");
	cr_assert_eq(service_migrate_import(svc_dir, tstore, f, why, sizeof(why)), 0, "%s", why);
	fclose(f);
	snprintf(want, sizeof(want),
		 "%s: imported from the files: 0 devices, 0 installed records, 0 references, 0 "
		 "certificates, 0 revocations, 0 report documents, 0 release records\n",
		 svc_dir);
	cr_assert_str_eq(out, want);

	/* What the database holds: the device, what it runs, the revocation. */
	cert = registry_lookup(tstore, d.name);
	cr_assert_not_null(cert, "the device was not imported");
	cr_assert_str_eq(cert, d.cert_pem);
	free(cert);
	cr_assert_eq(store_installed_get(tstore, d.name, &installed, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert(strstr(installed, "\"swversion\"") != NULL, "%s", installed);
	free(installed);
	{
		struct store_release rel;

		cr_assert_eq(store_release_get(tstore, d.name, &rel, why, sizeof(why)), 0, "%s",
			     why);
		cr_assert_eq(rel.version, 5);
		cr_assert_eq(rel.ts_ms, 1763744523000LL);
		cr_assert(!rel.withdrawn);
		cr_assert_eq(strspn(rel.sha256, "0"), 61, "%s", rel.sha256);
	}
	cr_assert_eq(
		store_cert_revoked(tstore, test_clock() / 1000, &revoked, &n, why, sizeof(why)), 0,
		"%s", why);
	cr_assert_eq(n, 1, "%zu revoked in the database, expected the superseded one", n);
	cr_assert_str_eq(revoked[0].dev, d.name);
	free(revoked);

	/* A service on the database verifies the device against the imported reference, and
	 * its new certificate supersedes the imported one in force. */
	service_free(s);
	cr_assert_eq(service_open(svc_dir, &db, why, sizeof(why)), 0, "%s", why);
	db->now_ms = test_clock;
	{
		struct meas_log log;

		sample_log(&log, 0x22);
		free(attest_ok(db, &d, &log));
	}
	cr_assert(db->crl_stale, "the imported certificate in force was not superseded");
	cr_assert_eq(revoke_publish(db), 2);
	device_free(&d);
	service_free(db);
}

Test(service, init_makes_the_store_it_is_told)
{
	struct service_init_opts opts = { .lifetime_s = LIFETIME_S,
					  .nonce_ttl_s = TTL_S,
					  .store = STORE_SQLITE };
	struct service_config cfg;
	struct service *s = NULL;
	char why[512] = "", err[512], path[256];
	int version = -1;

	cr_assert_eq(service_init_dir(svc_dir, &opts, why, sizeof(why)), 0, "init: %s", why);
	cr_assert_eq(load_config(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.store.backend, STORE_SQLITE);
	service_config_release(&cfg);
	snprintf(path, sizeof(path), "%s/service.db", svc_dir);
	cr_assert_eq(access(path, F_OK), 0, "init made no %s", path);
	cr_assert_eq(service_open(svc_dir, &s, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_schema_version(s->store, &version, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(version, STORE_SCHEMA_VERSION);
	service_free(s);
}

/* One instance's decision on 'env', in a child released by 'go' closing: one byte to 'out':
 * 'o' a certificate, 'd' replayed_nonce as a duplicate, 'r' replayed_nonce, 'n' nothing
 * answered (a duplicate, once_per_request), 'x' anything else. */
static _Noreturn void racing_instance(int go, int out, const char *dev, const char *env, bool once)
{
	struct service *s = NULL;
	struct attest_result res;
	char why[512], verdict = 'x', c;
	bool dup = false;

	if (service_open(svc_dir, &s, why, sizeof(why)) != 0)
		_exit(2);
	s->now_ms = test_clock;
	s->once_per_request = once;
	(void)!read(go, &c, 1); /* EOF: all released at once */
	if (service_verify(s, dev, env, strlen(env), &res, &dup) == 0) {
		if (res.ok && res.cert_pem != NULL)
			verdict = 'o';
		else if (strcmp(res.reason, "replayed_nonce") == 0)
			verdict = dup && once ? 'n' : dup ? 'd' : 'r';
		attest_result_free(&res);
	}
	(void)!write(out, &verdict, 1);
	service_free(s);
	_exit(0);
}

Test(service, instances_racing_one_evidence_record_one_certificate)
{
	struct service_init_opts opts = { .lifetime_s = LIFETIME_S,
					  .nonce_ttl_s = TTL_S,
					  .store = STORE_SQLITE };
	enum { RACERS = 4 };
	struct service *s = NULL;
	struct store_cert *certs = NULL;
	struct device d;
	struct meas_log log;
	struct evidence ev;
	uint8_t nonce[NONCE_LEN];
	char why[512] = "", *env, got[RACERS + 1] = "";
	int go[2], out[2], ok = 0, dup = 0;
	size_t n = 0;

	cr_assert_eq(service_init_dir(svc_dir, &opts, why, sizeof(why)), 0, "init: %s", why);
	s = new_service();
	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	record_reference(&log, "release-1");
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &log);
	env = envelope(&ev, &d.identity);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(out), 0);
	for (int i = 0; i < RACERS; i++) {
		pid_t pid = fork();

		cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
		if (pid == 0) {
			close(go[1]);
			close(out[0]);
			racing_instance(go[0], out[1], d.name, env, i % 2 == 1);
		}
	}
	close(go[0]);
	close(out[1]);
	close(go[1]); /* go */
	for (int i = 0; i < RACERS; i++)
		cr_assert_eq(read(out[0], &got[i], 1), 1, "a racer died (%s so far)", got);
	close(out[0]);
	while (wait(NULL) > 0)
		;
	for (int i = 0; i < RACERS; i++) {
		ok += got[i] == 'o';
		dup += got[i] == 'd' || got[i] == 'n';
	}
	cr_assert_eq(ok, 1, "%d certificates answered (%s), expected 1", ok, got);
	cr_assert_eq(dup, RACERS - 1, "the others: %s, expected replayed (duplicate) or nothing",
		     got);
	/* Exactly one certificate recorded, in force: the losers' were discarded, and a
	 * duplicate revokes nothing. */
	cr_assert_eq(store_cert_list(s->store, d.name, test_clock() / 1000, &certs, &n, why,
				     sizeof(why)),
		     0, "%s", why);
	cr_assert_eq(n, 1, "%zu certificates recorded, expected 1", n);
	cr_assert_eq(certs[0].revoked_s, 0, "the one recorded was revoked");
	free(certs);
	free(env);
	device_free(&d);
	service_free(s);
}

/* A refusal after the nonce's check marks it used, with the refusal, in one write: the same
 * nonce with good measurements earns nothing, and the refused evidence again is a duplicate. */
Test(service, a_refusal_after_the_nonce_check_uses_the_nonce)
{
	struct service *s = new_service();
	struct device d;
	struct meas_log log, changed;
	struct evidence ev;
	struct attest_result res;
	uint8_t nonce[NONCE_LEN];
	char *bad, *good;
	bool dup = false;

	device_new(&d, "press-07");
	device_enroll(s, &d);
	sample_log(&log, 0x22);
	sample_log(&changed, 0x23);
	record_reference(&log, "release-1");
	get_nonce(s, d.name, nonce);
	fill_evidence(&ev, &d, nonce, &changed);
	bad = envelope(&ev, &d.identity);
	fill_evidence(&ev, &d, nonce, &log);
	good = envelope(&ev, &d.identity);
	verify_env(s, d.name, bad, &res);
	expect_refusal(&res, "measurement_mismatch");
	cr_assert_eq(service_verify(s, d.name, bad, strlen(bad), &res, &dup), 0);
	expect_refusal(&res, "replayed_nonce");
	cr_assert(dup, "the refused evidence again is not a duplicate");
	cr_assert_eq(service_verify(s, d.name, good, strlen(good), &res, &dup), 0);
	expect_refusal(&res, "replayed_nonce");
	cr_assert_not(dup);
	free(bad);
	free(good);
	device_free(&d);
	service_free(s);
}
