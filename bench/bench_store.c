/*
 * bench_store.c: what the SQLite store costs per attestation: how many nonce_consume +
 * cert_issued + installed_put triples (what one accepted attestation writes) a single
 * connection does per second, for each synchronous level, each on a fresh database in a temp
 * dir with DEVICES devices enrolled; and, taking turns with them in slices on a database of its
 * own, the same three writes as one transaction (store_attest_record, what service_verify does).
 *
 * bench_store [SECONDS [LEVEL...]]: LEVEL is default (the backend's choice, FULL), off, normal,
 * full or extra; by default: default, normal, off. The levels are set through
 * GUARDIAN_SQLITE_SYNCHRONOUS, the benchmarks' override; operators set "synchronous" in the
 * "store" of service.json.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../service/store.h"
#include "../tests/harness/harness.h"

#define DEVICES 1000

static const char installed[] =
	"{\"guardian\":\"0.3.0\",\"policy\":\"3f2a9c1e\",\"config\":\"77aa0c12\","
	"\"release\":\"2026.11.2\",\"ts\":1763744523000}";
static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIBkTCCATegAwIBAgIUQ2Q1ZmY0YjQ5ZTk0ZTk1YzY4MjMwCgYIKoZIzj0EAwIw\n"
			       "-----END CERTIFICATE-----\n";

/* A fresh database at synchronous 'level' with DEVICES devices enrolled, or NULL. */
static struct store *fresh(const char *level)
{
	struct store_config cfg = { .backend = STORE_SQLITE };
	struct store *st = NULL;
	char why[512] = "", dev[32], db[300];

	static int runs;

	snprintf(db, sizeof(db), "bench-%d-%s.db", ++runs, level); /* a fresh database each run */
	cfg.path = db;
	if (strcmp(level, "default") == 0)
		unsetenv("GUARDIAN_SQLITE_SYNCHRONOUS");
	else
		setenv("GUARDIAN_SQLITE_SYNCHRONOUS", level, 1);
	if (store_open(h_dir(), &cfg, true, &st, why, sizeof(why)) != 0) {
		fprintf(stderr, "bench_store: %s\n", why);
		return NULL;
	}
	for (int d = 0; d < DEVICES; d++) {
		snprintf(dev, sizeof(dev), "bench-%04d", d);
		if (store_device_put(st, dev, cert_pem, NULL, why, sizeof(why)) != 0) {
			fprintf(stderr, "bench_store: %s\n", why);
			store_close(st);
			return NULL;
		}
	}
	return st;
}

/* Attestations' writes on 'st' for 'seconds': three calls each, or with 'one_tx' one
 * store_attest_record. *count numbers them across slices. How many, or -1. */
static long slice(struct store *st, double seconds, bool one_tx, uint64_t *count)
{
	char why[512] = "", dev[32];
	uint8_t nonce[NONCE_LEN] = { 0 }, tag[16] = { 0 }, serial[16] = { 0x40 };
	int64_t end, now_ms = 1763744523000LL + (int64_t)*count * 3;
	uint64_t i = *count;
	long done = 0;
	bool dup;
	int rc;

	nonce[31] = one_tx; /* the two modes' nonces never meet */
	end = gd_mono_ms() + (int64_t)(seconds * 1000);
	while (gd_mono_ms() < end) {
		for (int k = 0; k < 16; k++, i++, done++) {
			int64_t now_s;

			snprintf(dev, sizeof(dev), "bench-%04d", (int)(i % DEVICES));
			now_ms += 3;
			now_s = now_ms / 1000;
			memcpy(nonce, &now_ms, sizeof(now_ms));
			memcpy(nonce + 8, &i, sizeof(i));
			memcpy(tag, &i, sizeof(i));
			memcpy(serial + 8, &i, sizeof(i));
			why[0] = '\0';
			if (one_tx) {
				struct store_attest rec = { .dev = dev,
							    .nonce = nonce,
							    .nonce_ts_ms = now_ms,
							    .tag = tag,
							    .issued = true,
							    .not_after_s = now_s + 86400,
							    .installed_json = installed,
							    .now_s = now_s };
				int revoked;

				memcpy(rec.serial, serial, sizeof(rec.serial));
				if (store_attest_record(st, &rec, &dup, &revoked, why,
							sizeof(why)) != 0)
					goto fail;
				continue;
			}
			rc = store_nonce_consume(st, nonce, now_ms, tag, &dup, why, sizeof(why));
			if (rc != 0) /* STORE_USED: each nonce is new */
				goto fail;
			if (store_cert_issued(st, dev, serial, now_s + 86400, now_s, why,
					      sizeof(why)) < 0)
				goto fail;
			if (store_installed_put(st, dev, installed, why, sizeof(why)) != 0)
				goto fail;
		}
	}
	*count = i;
	return done;
fail:
	fprintf(stderr, "bench_store: %s\n", why);
	return -1;
}

#define SLICES 6

/* The three calls and the one transaction at 'level', each on its fresh database, taking turns
 * in SLICES slices each (a drift of the disk hits both): their rates in rate[0] and rate[1]. */
static int run(const char *level, double seconds, double rate[2])
{
	struct store *st[2] = { fresh(level), NULL };
	uint64_t count[2] = { 0, 0 };
	long done[2] = { 0, 0 };
	int64_t ms[2] = { 0, 0 };
	int rc = -1;

	st[1] = st[0] != NULL ? fresh(level) : NULL;
	if (st[1] == NULL)
		goto out;
	for (int k = 0; k < SLICES; k++) {
		for (int m = 0; m < 2; m++) {
			int64_t t0 = gd_mono_ms();
			long n = slice(st[m], seconds / SLICES, m == 1, &count[m]);

			if (n < 0)
				goto out;
			ms[m] += gd_mono_ms() - t0;
			done[m] += n;
		}
	}
	for (int m = 0; m < 2; m++)
		rate[m] = (double)done[m] * 1000.0 / (double)(ms[m] > 0 ? ms[m] : 1);
	rc = 0;
out:
	store_close(st[0]);
	store_close(st[1]);
	return rc;
}

int main(int argc, char **argv)
{
	static const char *const defaults[] = { "default", "normal", "off" };
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	const char *const *levels = argc > 2 ? (const char *const *)argv + 2 : defaults;
	int n = argc > 2 ? argc - 2 : 3, rc = 0;

	if (seconds <= 0) {
		fprintf(stderr,
			"usage: bench_store [SECONDS [default|off|normal|full|extra]...]\n");
		return 2;
	}
	printf("SQLite store, one connection, %d devices, a database in %s:\n", DEVICES, h_dir());
	for (int k = 0; k < n; k++) {
		double rate[2];

		if (run(levels[k], seconds, rate) != 0) {
			rc = 1;
			break;
		}
		printf("  synchronous %-7s %8.0f nonce_consume + cert_issued + installed_put / s, "
		       "%8.0f store_attest_record / s (one transaction, x%.2f)\n",
		       levels[k], rate[0], rate[1], rate[1] / rate[0]);
		fflush(stdout);
	}
	h_cleanup();
	return rc;
}
