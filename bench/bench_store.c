/*
 * bench_store.c: what the SQLite store costs per attestation: how many nonce_consume +
 * cert_issued + installed_put triples (what one accepted attestation writes) a single
 * connection does per second, for each synchronous level, each on a fresh database in a temp
 * dir with DEVICES devices enrolled.
 *
 * bench_store [SECONDS [LEVEL...]]: LEVEL is default (the backend's choice, NORMAL), off, normal,
 * full or extra; by default: default, full, off.
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

/* Enrolls DEVICES devices, then runs triples for 'seconds'; the rate, or -1. */
static double run(const char *level, double seconds)
{
	struct store_config cfg = { .backend = STORE_SQLITE };
	struct store *st = NULL;
	char why[512] = "", dev[32], db[300];
	uint8_t nonce[NONCE_LEN] = { 0 }, tag[16] = { 0 }, serial[16] = { 0x40 };
	int64_t start, end, now_ms = 1763744523000LL;
	uint64_t i = 0;
	bool dup;
	int rc;

	static int runs;

	snprintf(db, sizeof(db), "bench-%d-%s.db", ++runs, level); /* a fresh database each run */
	cfg.path = db;
	if (strcmp(level, "default") == 0)
		unsetenv("GUARDIAN_SQLITE_SYNCHRONOUS");
	else
		setenv("GUARDIAN_SQLITE_SYNCHRONOUS", level, 1);
	if (store_open(h_dir(), &cfg, true, &st, why, sizeof(why)) != 0) {
		fprintf(stderr, "bench_store: %s\n", why);
		return -1;
	}
	for (int d = 0; d < DEVICES; d++) {
		snprintf(dev, sizeof(dev), "bench-%04d", d);
		if (store_device_put(st, dev, cert_pem, NULL, why, sizeof(why)) != 0)
			goto fail;
	}
	start = gd_mono_ms();
	end = start + (int64_t)(seconds * 1000);
	while (gd_mono_ms() < end) {
		for (int k = 0; k < 16; k++, i++) {
			int64_t now_s;

			snprintf(dev, sizeof(dev), "bench-%04d", (int)(i % DEVICES));
			now_ms += 3;
			now_s = now_ms / 1000;
			memcpy(nonce, &now_ms, sizeof(now_ms));
			memcpy(nonce + 8, &i, sizeof(i));
			memcpy(tag, &i, sizeof(i));
			memcpy(serial + 8, &i, sizeof(i));
			why[0] = '\0';
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
	store_close(st);
	return (double)i * 1000.0 / (double)(gd_mono_ms() - start);
fail:
	fprintf(stderr, "bench_store: %s\n", why);
	store_close(st);
	return -1;
}

int main(int argc, char **argv)
{
	static const char *const defaults[] = { "default", "full", "off" };
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
		double rate = run(levels[k], seconds);

		if (rate < 0) {
			rc = 1;
			break;
		}
		printf("  synchronous %-7s %8.0f nonce_consume + cert_issued + installed_put / s\n",
		       levels[k], rate);
		fflush(stdout);
	}
	h_cleanup();
	return rc;
}
