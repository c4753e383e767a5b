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
#include "../tests/unit/fake_quote.h"
#include "../tests/helpers/sim_evidence.h"

#define NDEVICES 64  /* simulated devices, each with its own enrolled identity */
#define BATCH	 128 /* evidence built (untimed) before the service handles it (timed) */
#define FLEET	 100000

struct sim_device {
	char name[64];
	mbedtls_pk_context identity;
	char *cert_pem;
	bool tpm;	       /* enrolled with an attestation key; its evidence is a quote */
	mbedtls_pk_context ak; /* standing in for the TPM's (tests/unit/fake_quote.h) */
};

/* One round prepared by a device: its nonce came from the service's hello (timed). */
struct round {
	struct sim_device *dev;
	char *envelope;
};

#define PCR 23

static mbedtls_entropy_context entropy;
static uint8_t quoted_pcr[32]; /* the fold of the sample log, as the launcher leaves the PCR */
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

static void enroll(struct service *s, struct sim_device *d, int i, bool tpm)
{
	mbedtls_x509write_csr csr;
	char subject[96], pem[4096], name[64], why[512], ak[512];

	snprintf(d->name, sizeof(d->name), "%s-%03d", tpm ? "kiln" : "press", i);
	d->tpm = tpm;
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
	if (!tpm) {
		if (registry_enroll(s, pem, false, name, &d->cert_pem, why, sizeof(why)) != 0)
			die(why);
		return;
	}
	new_key(&d->ak);
	if (mbedtls_pk_write_pubkey_pem(&d->ak, (unsigned char *)ak, sizeof(ak)) != 0 ||
	    registry_enroll_ak(s, pem, ak, false, name, &d->cert_pem, why, sizeof(why)) != 0)
		die(why[0] ? why : "cannot enroll the attestation key");
}

/* What the TPM would do (evidence_quote_fn): a quote of the PCR holding the log's fold. */
static int quote_with(void *ctx, const uint8_t qualifying[32], uint8_t *attest, size_t *attest_len,
		      uint8_t *sig, size_t *sig_len)
{
	struct sim_device *d = ctx;
	struct fake_quote q;
	size_t n;

	fake_quote_init(&q, qualifying, PCR, quoted_pcr);
	n = fake_quote_marshal(&q, attest, *attest_len);
	if (n == 0 || *sig_len < 80 || fake_quote_sign(&d->ak, &drbg, attest, n, sig, sig_len) != 0)
		return GD_EINVAL;
	*attest_len = n;
	return 0;
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
	ev->tpm = d->tpm;
	ev->tpm_pcr = PCR;
	env = d->tpm ? evidence_envelope_build_tpm(ev, quote_with, d)
		     : evidence_envelope_build(ev, sign_with, &d->identity);
	if (env == NULL)
		die("evidence_envelope_build");
	free(ev);
	return env;
}

/* What one pass measured. */
struct pass {
	long done, refused;
	double service_s, hello_s;
	uint64_t verify_ns, issue_ns, decisions, issued;
};

/*
 * Rounds for 'seconds' with the devices devs[0..n): hellos (timed), the devices' evidence
 * (untimed), then the service's side of each (timed): verify, issue, the result message.
 */
static void run_pass(struct service *s, struct sim_device *devs, int n, const struct meas_log *log,
		     double seconds, struct pass *p)
{
	static struct round rounds[BATCH];
	double t_end = now_s() + seconds, t0;
	long next_dev = 0;

	memset(p, 0, sizeof(*p));
	memset(&s->stats, 0, sizeof(s->stats));
	while (now_s() < t_end) {
		for (int i = 0; i < BATCH; i++) {
			struct sim_device *d = &devs[next_dev++ % n];
			char *nonce_json = NULL;

			t0 = now_s();
			if (service_handle_hello(s, d->name, "{\"swversion\":\"0.1.0\"}", 21,
						 &nonce_json) != 0)
				die("hello");
			p->hello_s += now_s() - t0;
			rounds[i] =
				(struct round){ .dev = d,
						.envelope = device_evidence(d, nonce_json, log) };
			free(nonce_json);
		}
		t0 = now_s();
		for (int i = 0; i < BATCH; i++) {
			char *result = NULL;

			if (service_handle_evidence(s, rounds[i].dev->name, rounds[i].envelope,
						    strlen(rounds[i].envelope), &result) != 0)
				die("no decision");
			if (strstr(result, "\"ok\":true") == NULL) {
				if (p->refused == 0)
					fprintf(stderr, "bench_attest: refused: %s\n", result);
				p->refused++;
			}
			free(result);
		}
		p->service_s += now_s() - t0;
		p->done += BATCH;
		for (int i = 0; i < BATCH; i++)
			free(rounds[i].envelope);
		nonce_sweep(s, gd_now_ms());
	}
	p->verify_ns = s->stats.verify_ns;
	p->issue_ns = s->stats.issue_ns;
	p->decisions = s->stats.decisions;
	p->issued = s->stats.issued;
}

static double pass_rate(const struct pass *p)
{
	return (double)p->done / (p->service_s + p->hello_s);
}

static void print_pass(const char *what, const struct pass *p)
{
	printf("attest: %s: %.0f attestations/s on one core (verify %.2f ms, issue %.2f ms, "
	       "hello %.3f ms; %ld rounds, %d devices)\n",
	       what, pass_rate(p), (double)p->verify_ns / 1e6 / (double)p->decisions,
	       (double)p->issue_ns / 1e6 / (double)p->issued, p->hello_s * 1e3 / (double)p->done,
	       p->done, NDEVICES);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	char tmp[] = "/tmp/gd-bench-attest-XXXXXX", dir[64], why[512], label[64];
	struct service_init_opts opts = { .nonce_ttl_s = 3600 }; /* evidence waits in batches */
	static struct sim_device devs[NDEVICES], tpm_devs[NDEVICES];
	struct pass file = { 0 }, tpm = { 0 }, part;
	struct meas_log log;
	struct service *s;
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
	for (int i = 0; i < NDEVICES; i++) {
		enroll(s, &devs[i], i, false);
		enroll(s, &tpm_devs[i], i, true);
	}
	if (sim_sample_log(&log, 0x11) != 0)
		die("meas_add");
	memcpy(quoted_pcr, log.reg, sizeof(quoted_pcr));
	json = meas_log_json(&log);
	if (json == NULL ||
	    reference_add(s->store, json, strlen(json), "release-1", label, why, sizeof(why)) != 0)
		die(why);
	free(json);

	/* The two backends in turn, a quarter of the time each, twice: drift hits both alike. */
	for (int round = 0; round < 4; round++) {
		bool is_tpm = round % 2 == 1;
		struct pass *sum = is_tpm ? &tpm : &file;

		run_pass(s, is_tpm ? tpm_devs : devs, NDEVICES, &log, seconds / 4, &part);
		sum->done += part.done;
		sum->refused += part.refused;
		sum->service_s += part.service_s;
		sum->hello_s += part.hello_s;
		sum->verify_ns += part.verify_ns;
		sum->issue_ns += part.issue_ns;
		sum->decisions += part.decisions;
		sum->issued += part.issued;
	}
	if (file.refused > 0 || tpm.refused > 0) {
		fprintf(stderr, "bench_attest: %ld of %ld file and %ld of %ld TPM rounds refused\n",
			file.refused, file.done, tpm.refused, tpm.done);
		return 1;
	}
	print_pass("file key", &file);
	print_pass("TPM quote", &tpm);
	printf("attest: TPM evidence / file evidence: %.2f of the attestations/s\n",
	       pass_rate(&tpm) / pass_rate(&file));
	{
		double rate = pass_rate(&file);
		static const int instances[] = { 1, 4, 8 };

		printf("attest: a fleet of %d devices attests in", FLEET);
		for (size_t i = 0; i < sizeof(instances) / sizeof(instances[0]); i++)
			printf("%s %.1f min with %d instance%s", i ? "," : "",
			       FLEET / (rate * instances[i]) / 60, instances[i],
			       instances[i] > 1 ? "s" : "");
		printf(" (file evidence, the service's CPU only)\n");
	}
	for (int i = 0; i < NDEVICES; i++) {
		mbedtls_pk_free(&devs[i].identity);
		mbedtls_pk_free(&tpm_devs[i].identity);
		mbedtls_pk_free(&tpm_devs[i].ak);
		free(devs[i].cert_pem);
		free(tpm_devs[i].cert_pem);
	}
	service_free(s);
	nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return 0;
}
