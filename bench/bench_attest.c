/* bench_attest.c: attestations per second one service instance completes in-process on one core
 * (hello -> nonce, evidence -> verify -> issue -> result), and what that means for a fleet. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_csr.h>

#include "../service/service.h"

#define NDEVICES 64  /* simulated devices, each with its own enrolled identity */
#define BATCH	 128 /* evidence built (untimed) before the service handles it (timed) */
#define FLEET	 100000

struct sim_device {
	char name[64];
	mbedtls_pk_context identity;
	char *cert_pem;
};

/* One round prepared by a device: its nonce came from the service's hello (timed). */
struct round {
	struct sim_device *dev;
	char *envelope;
};

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void die(const char *what)
{
	fprintf(stderr, "bench_attest: %s\n", what);
	exit(1);
}

static int sign_with(void *ctx, const uint8_t digest[32], uint8_t *sig, size_t cap, size_t *len)
{
	(void)cap;
	return mbedtls_pk_sign(ctx, MBEDTLS_MD_SHA256, digest, 32, sig, len,
			       mbedtls_ctr_drbg_random, &drbg) == 0
		       ? 0
		       : GD_EINVAL;
}

static void new_key(mbedtls_pk_context *key)
{
	mbedtls_pk_init(key);
	if (mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
	    mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key),
				mbedtls_ctr_drbg_random, &drbg) != 0)
		die("cannot make a key");
}

static void enroll(struct service *s, struct sim_device *d, int i)
{
	mbedtls_x509write_csr csr;
	char subject[96], pem[4096], name[64], why[512];

	snprintf(d->name, sizeof(d->name), "press-%03d", i);
	new_key(&d->identity);
	snprintf(subject, sizeof(subject), "CN=%.63s", d->name);
	mbedtls_x509write_csr_init(&csr);
	mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
	mbedtls_x509write_csr_set_key(&csr, &d->identity);
	if (mbedtls_x509write_csr_set_subject_name(&csr, subject) != 0 ||
	    mbedtls_x509write_csr_pem(&csr, (unsigned char *)pem, sizeof(pem),
				      mbedtls_ctr_drbg_random, &drbg) != 0)
		die("cannot make a CSR");
	mbedtls_x509write_csr_free(&csr);
	if (registry_enroll(s, pem, false, name, &d->cert_pem, why, sizeof(why)) != 0)
		die(why);
}

static void sample_log(struct meas_log *log)
{
	static const char *const items[][2] = { { "exe", "/usr/bin/guardian" },
						{ "config", "/etc/guardian/site.json" },
						{ "policy", "/etc/guardian/policy.json" },
						{ "file", "/etc/guardian/ca.crt" } };
	uint8_t d[32];

	meas_init(log);
	for (size_t i = 0; i < 4; i++) {
		memset(d, (int)(0x11 * (i + 1)), sizeof(d));
		if (meas_add(log, items[i][0], items[i][1], d) != 0)
			die("meas_add");
	}
}

/* The device's side of a round, untimed: claims with a fresh op key, signed. */
static char *device_evidence(struct sim_device *d, const char *nonce_json,
			     const struct meas_log *log)
{
	struct evidence *ev = calloc(1, sizeof(*ev));
	mbedtls_pk_context op;
	int64_t expires;
	char *env;

	if (ev == NULL)
		die("out of memory");
	if (attest_nonce_parse(nonce_json, strlen(nonce_json), ev->nonce, &expires) != 0)
		die("cannot parse the nonce message");
	snprintf(ev->name, sizeof(ev->name), "%s", d->name);
	snprintf(ev->swversion, sizeof(ev->swversion), "0.1.0");
	ev->iat = gd_now_ms() / 1000;
	ev->log = *log;
	if (evidence_ueid(d->cert_pem, ev->ueid) != 0)
		die("evidence_ueid");
	new_key(&op);
	if (mbedtls_pk_write_pubkey_pem(&op, (unsigned char *)ev->op_pub, sizeof(ev->op_pub)) != 0)
		die("cannot write op_pub");
	mbedtls_pk_free(&op);
	env = evidence_envelope_build(ev, sign_with, &d->identity);
	if (env == NULL)
		die("evidence_envelope_build");
	free(ev);
	return env;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	char tmp[] = "/tmp/gd-bench-attest-XXXXXX", dir[64], why[512], label[64];
	struct service_init_opts opts = { .nonce_ttl_s = 3600 }; /* evidence waits in batches */
	static struct sim_device devs[NDEVICES];
	static struct round rounds[BATCH];
	struct meas_log log;
	struct service *s;
	double t_end, t0, service_s = 0, hello_s = 0;
	long done = 0, refused = 0, next_dev = 0;
	char *json;

	if (seconds <= 0)
		seconds = 5;
	log_set_level(LOG_LEVEL_WARN);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0) != 0)
		die("cannot seed the random generator");
	if (mkdtemp(tmp) == NULL)
		die(strerror(errno));
	snprintf(dir, sizeof(dir), "%s/svc", tmp);
	if (service_init_dir(dir, &opts, why, sizeof(why)) != 0 ||
	    service_open(dir, &s, why, sizeof(why)) != 0)
		die(why);
	for (int i = 0; i < NDEVICES; i++)
		enroll(s, &devs[i], i);
	sample_log(&log);
	json = meas_log_json(&log);
	if (json == NULL ||
	    reference_add(dir, json, strlen(json), "release-1", label, why, sizeof(why)) != 0)
		die(why);
	free(json);

	t_end = now_s() + seconds;
	while (now_s() < t_end) {
		/* hellos (timed) and the devices' evidence (untimed) */
		for (int i = 0; i < BATCH; i++) {
			struct sim_device *d = &devs[next_dev++ % NDEVICES];
			char *nonce_json = NULL;

			t0 = now_s();
			if (service_handle_hello(s, d->name, "{\"swversion\":\"0.1.0\"}", 21,
						 &nonce_json) != 0)
				die("hello");
			hello_s += now_s() - t0;
			rounds[i] =
				(struct round){ .dev = d,
						.envelope = device_evidence(d, nonce_json, &log) };
			free(nonce_json);
		}
		/* the service's side of each round: verify, issue, the result message */
		t0 = now_s();
		for (int i = 0; i < BATCH; i++) {
			char *result = NULL;

			if (service_handle_evidence(s, rounds[i].dev->name, rounds[i].envelope,
						    strlen(rounds[i].envelope), &result) != 0)
				die("no decision");
			if (strstr(result, "\"ok\":true") == NULL)
				refused++;
			free(result);
		}
		service_s += now_s() - t0;
		done += BATCH;
		for (int i = 0; i < BATCH; i++)
			free(rounds[i].envelope);
		nonce_sweep(s, gd_now_ms());
	}
	if (refused > 0) {
		fprintf(stderr, "bench_attest: %ld of %ld rounds refused\n", refused, done);
		return 1;
	}
	{
		double total = service_s + hello_s, rate = (double)done / total;
		double verify_ms = (double)s->stats.verify_ns / 1e6 / (double)s->stats.decisions;
		double issue_ms = (double)s->stats.issue_ns / 1e6 / (double)s->stats.issued;
		static const int instances[] = { 1, 4, 8 };

		printf("attest: %.0f attestations/s on one core (verify %.2f ms, issue %.2f ms, "
		       "hello %.3f ms; %ld rounds, %d devices)\n",
		       rate, verify_ms, issue_ms, hello_s * 1e3 / (double)done, done, NDEVICES);
		printf("attest: a fleet of %d devices attests in", FLEET);
		for (size_t i = 0; i < sizeof(instances) / sizeof(instances[0]); i++)
			printf("%s %.1f min with %d instance%s", i ? "," : "",
			       FLEET / (rate * instances[i]) / 60, instances[i],
			       instances[i] > 1 ? "s" : "");
		printf(" (the service's CPU only)\n");
	}
	for (int i = 0; i < NDEVICES; i++) {
		mbedtls_pk_free(&devs[i].identity);
		free(devs[i].cert_pem);
	}
	service_free(s);
	nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return 0;
}
