/* test_service.c: the attestation service: init, enrollment, nonces, references, every
 * decision of the verify pipeline (evidence built as a device builds it) and revocation. */
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
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_csr.h>

#include "../../service/service.h"

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

static void teardown(void)
{
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
	cr_assert_eq(reference_add(svc_dir, json, strlen(json), label, out, why, sizeof(why)), 0,
		     "reference add: %s", why);
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
	cr_assert_eq(reference_add(svc_dir, json, strlen(json), NULL, label, why, sizeof(why)), 0,
		     "%s", why);
	gd_hex_encode(log.reg, 32, reg_hex);
	cr_assert_eq(strlen(label), 12);
	cr_assert_eq(strncmp(label, reg_hex, 12), 0);
	cr_assert_neq(reference_add(svc_dir, json, strlen(json), NULL, label, why, sizeof(why)), 0,
		      "the same label twice");
	cr_assert(strstr(why, "exists") != NULL, "%s", why);
	free(json);

	/* a log whose register is not its fold */
	log.reg[0] ^= 1;
	json = meas_log_json(&log);
	cr_assert_neq(reference_add(svc_dir, json, strlen(json), "bad", label, why, sizeof(why)),
		      0);
	cr_assert(strstr(why, "fold") != NULL, "%s", why);
	free(json);
	cr_assert_neq(reference_add(svc_dir, "{}", 2, "x", label, why, sizeof(why)), 0);

	out = fmemopen(listing, sizeof(listing), "w");
	cr_assert_eq(reference_list(svc_dir, out, why, sizeof(why)), 0);
	fclose(out);
	cr_assert(strstr(listing, " 4 ") != NULL, "%s", listing);
	cr_assert(strstr(listing, reg_hex) != NULL, "%s", listing);
	cr_assert_eq(
		reference_remove(svc_dir, listing[0] ? strtok(listing, " ") : "", why, sizeof(why)),
		0, "%s", why);
	cr_assert_neq(reference_remove(svc_dir, "nothing-here", why, sizeof(why)), 0);
	cr_assert_neq(reference_remove(svc_dir, "../service", why, sizeof(why)), 0);
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
