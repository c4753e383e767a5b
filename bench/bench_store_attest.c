/* bench_store_attest.c: attestations per second one service instance completes in process on one
 * core, as bench_attest.c measures them, for each store backend against the files store in the
 * same run (issue 17: at least 500 a second with either database): hello -> nonce, evidence ->
 * verify -> issue -> result, with where the time went (the thread's CPU, and the rest: waiting
 * for the disk or the database server).
 *
 *   bench_store_attest [SECONDS [STORES]]    e.g. bench_store_attest 8 "files sqlite postgresql"
 *
 * STORES: files, sqlite (the store's default synchronous level, FULL: the WAL synced at every
 * commit), sqlite-normal (NORMAL: synced at checkpoints), postgresql; by default all of them.
 *
 * SECONDS is each store's share, measured in four slices taken in turn with the other stores'
 * (drift on a shared machine hits all alike). PostgreSQL is a throwaway cluster on a Unix socket
 * (tests/harness/h_postgres.h: fsync and synchronous_commit on, as a real server runs).
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../service/service.h"
#include "../tests/harness/h_postgres.h"
#include "../tests/harness/harness.h"
#include "../tests/helpers/sim_evidence.h"

#define NDEVICES 64  /* simulated devices, each with its own enrolled identity */
#define BATCH	 128 /* evidence built (untimed) before the service handles it (timed) */
#define SLICES	 4
#define MAXSTORE 4

struct sim_device {
	char name[64];
	EVP_PKEY *identity;
	uint8_t ueid[UEID_LEN];
};

/* One store's bed and what was measured on it. */
struct bed {
	const char *store;
	char dir[300];
	struct service *s;
	struct sim_device devs[NDEVICES];
	long done, refused;
	double wall_s, cpu_s;
	double server_s; /* postgresql: the CPU of the server's processes */
	uint64_t verify_ns, issue_ns, decisions, issued;
};

static struct h_postgres cluster = { .watch_fd = -1 };
static struct meas_log sample;

static void die(const char *what)
{
	fprintf(stderr, "bench_store_attest: %s\n", what);
	h_postgres_stop(&cluster);
	exit(1);
}

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of 'parent' and its children (the PostgreSQL server's backends), from /proc. */
static double tree_cpu_s(pid_t parent)
{
	DIR *proc = opendir("/proc");
	struct dirent *e;
	double sum = 0;

	while (proc != NULL && (e = readdir(proc)) != NULL) {
		char path[300], buf[1024], *p;
		unsigned long long ut, stt;
		int ppid;
		FILE *f;
		size_t n;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		/* After the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
		 * cmajflt utime stime. */
		if (p == NULL ||
		    sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ppid,
			   &ut, &stt) != 3)
			continue;
		if (ppid == parent || atol(e->d_name) == parent)
			sum += (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
	}
	if (proc != NULL)
		closedir(proc);
	return sum;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static char *pem_of(EVP_PKEY *key, X509_REQ *req)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (bio != NULL &&
	    (req ? PEM_write_bio_X509_REQ(bio, req) : PEM_write_bio_PUBKEY(bio, key)) &&
	    (n = BIO_get_mem_data(bio, &data)) > 0 && (out = calloc(1, (size_t)n + 1)) != NULL)
		memcpy(out, data, (size_t)n);
	BIO_free(bio);
	return out;
}

static void enroll(struct bed *b, struct sim_device *d, int i)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *subject = X509_NAME_new();
	char name[64], why[512], *csr, *cert = NULL;

	snprintf(d->name, sizeof(d->name), "press-%03d", i);
	d->identity = EVP_EC_gen("P-256");
	if (d->identity == NULL || req == NULL || subject == NULL ||
	    !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (unsigned char *)d->name, -1,
					-1, 0) ||
	    !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, d->identity) ||
	    X509_REQ_sign(req, d->identity, EVP_sha256()) <= 0 || (csr = pem_of(NULL, req)) == NULL)
		die("cannot make a CSR");
	if (registry_enroll(b->s, csr, false, name, &cert, why, sizeof(why)) != 0)
		die(why);
	if (evidence_ueid(cert, d->ueid) != 0)
		die("evidence_ueid");
	free(csr);
	free(cert);
	X509_REQ_free(req);
	X509_NAME_free(subject);
}

static char *device_evidence(struct sim_device *d, const char *nonce_json)
{
	static struct evidence ev;
	EVP_PKEY *op = EVP_EC_gen("P-256");
	char *pub = op ? pem_of(op, NULL) : NULL, *env;
	int64_t expires;

	memset(&ev, 0, sizeof(ev));
	if (pub == NULL || strlen(pub) >= sizeof(ev.op_pub) ||
	    attest_nonce_parse(nonce_json, strlen(nonce_json), ev.nonce, &expires) != 0)
		die("cannot make the evidence");
	memcpy(ev.op_pub, pub, strlen(pub) + 1);
	memcpy(ev.ueid, d->ueid, UEID_LEN);
	snprintf(ev.name, sizeof(ev.name), "%s", d->name);
	snprintf(ev.swversion, sizeof(ev.swversion), "0.1.0");
	ev.iat = gd_now_ms() / 1000;
	ev.log = sample;
	env = evidence_envelope_build(&ev, sim_sign_with, d->identity);
	if (env == NULL)
		die("evidence_envelope_build");
	free(pub);
	EVP_PKEY_free(op);
	return env;
}

static void bed_up(struct bed *b, const char *store, const char *tmp)
{
	struct service_init_opts opts = { .nonce_ttl_s = 3600 }; /* evidence waits in batches */
	char why[512], label[64], conninfo[256], *json;

	b->store = store;
	snprintf(b->dir, sizeof(b->dir), "%s/%s", tmp, store);
	if (strcmp(store, "files") == 0) {
		opts.store = STORE_FILES;
	} else if (strcmp(store, "sqlite") == 0 || strcmp(store, "sqlite-normal") == 0) {
		/* sqlite-normal: synchronous NORMAL, the WAL synced at checkpoints only (the
		 * store's default is FULL: service/store_sqlite.c says what each level keeps). */
		opts.store = STORE_SQLITE;
		if (strcmp(store, "sqlite-normal") == 0)
			setenv("GUARDIAN_SQLITE_SYNCHRONOUS", "normal", 1);
	} else if (strcmp(store, "postgresql") == 0) {
		if (cluster.dir[0] == '\0' && h_postgres_start(&cluster, why, sizeof(why)) != 0)
			die(why);
		if (h_postgres_createdb(cluster.dir, conninfo, sizeof(conninfo)) != 0)
			die("CREATE DATABASE failed");
		opts.store = STORE_POSTGRES;
		opts.conninfo = conninfo;
	} else {
		die("unknown store (expected files, sqlite or postgresql)");
	}
	if (service_init_dir(b->dir, &opts, why, sizeof(why)) != 0 ||
	    service_open(b->dir, &b->s, why, sizeof(why)) != 0)
		die(why);
	unsetenv("GUARDIAN_SQLITE_SYNCHRONOUS"); /* read when the store opens, not after */
	for (int i = 0; i < NDEVICES; i++)
		enroll(b, &b->devs[i], i);
	json = meas_log_json(&sample);
	if (json == NULL || reference_add(b->s->store, json, strlen(json), "release-1", label, why,
					  sizeof(why)) != 0)
		die(why);
	free(json);
}

/* Rounds for 'seconds': hellos and the service's side of the evidence timed, the devices' not. */
static void run_slice(struct bed *b, double seconds)
{
	static char *envs[BATCH];
	static struct sim_device *who[BATCH];
	double end = clock_s(CLOCK_MONOTONIC) + seconds;
	bool pg = strcmp(b->store, "postgresql") == 0;
	double server0 = pg ? tree_cpu_s(cluster.postmaster) : 0;
	long next = 0;

	memset(&b->s->stats, 0, sizeof(b->s->stats));
	while (clock_s(CLOCK_MONOTONIC) < end) {
		double w0, c0;

		for (int i = 0; i < BATCH; i++) {
			struct sim_device *d = &b->devs[next++ % NDEVICES];
			char *nonce_json = NULL;

			w0 = clock_s(CLOCK_MONOTONIC);
			c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
			if (service_handle_hello(b->s, d->name, "{\"swversion\":\"0.1.0\"}", 21,
						 &nonce_json) != 0)
				die("hello");
			b->wall_s += clock_s(CLOCK_MONOTONIC) - w0;
			b->cpu_s += clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
			who[i] = d;
			envs[i] = device_evidence(d, nonce_json);
			free(nonce_json);
		}
		w0 = clock_s(CLOCK_MONOTONIC);
		c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
		for (int i = 0; i < BATCH; i++) {
			char *result = NULL;

			if (service_handle_evidence(b->s, who[i]->name, envs[i], strlen(envs[i]),
						    &result) != 0)
				die("no decision");
			if (strstr(result, "\"ok\":true") == NULL) {
				if (b->refused == 0)
					fprintf(stderr, "bench_store_attest: %s: refused: %s\n",
						b->store, result);
				b->refused++;
			}
			free(result);
		}
		b->wall_s += clock_s(CLOCK_MONOTONIC) - w0;
		b->cpu_s += clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
		b->done += BATCH;
		for (int i = 0; i < BATCH; i++)
			free(envs[i]);
		nonce_sweep(b->s, gd_now_ms());
	}
	if (pg)
		b->server_s += tree_cpu_s(cluster.postmaster) - server0;
	b->verify_ns += b->s->stats.verify_ns;
	b->issue_ns += b->s->stats.issue_ns;
	b->decisions += b->s->stats.decisions;
	b->issued += b->s->stats.issued;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 8;
	char stores[128], tmp[] = "/tmp/gd-bench-store-attest-XXXXXX", *save = NULL;
	static struct bed beds[MAXSTORE];
	int n = 0, rc = 0;
	double files_rate = 0;

	if (seconds <= 0)
		seconds = 8;
	snprintf(stores, sizeof(stores), "%s",
		 argc > 2 ? argv[2]
			  : (h_postgres_missing() == NULL ? "files sqlite sqlite-normal postgresql"
							  : "files sqlite sqlite-normal"));
	log_set_level(LOG_LEVEL_WARN);
	if (sim_sample_log(&sample, 0x11) != 0)
		die("meas_add");
	if (mkdtemp(tmp) == NULL)
		die(strerror(errno));
	for (char *s = strtok_r(stores, " ", &save); s != NULL && n < MAXSTORE;
	     s = strtok_r(NULL, " ", &save))
		bed_up(&beds[n++], s, tmp);
	for (int slice = 0; slice < SLICES; slice++)
		for (int i = 0; i < n; i++)
			run_slice(&beds[(i + slice) % n], seconds / SLICES);
	for (int i = 0; i < n; i++) {
		struct bed *b = &beds[i];
		double rate = (double)b->done / b->wall_s;

		if (strcmp(b->store, "files") == 0)
			files_rate = rate;
		printf("store-attest: %-11s %4.0f attestations/s on one core (%.2f ms a round: CPU "
		       "%.2f ms, waiting %.2f ms; verify %.2f ms, issue %.2f ms)%s",
		       b->store, rate, b->wall_s * 1e3 / (double)b->done,
		       b->cpu_s * 1e3 / (double)b->done,
		       (b->wall_s - b->cpu_s) * 1e3 / (double)b->done,
		       (double)b->verify_ns / 1e6 / (double)(b->decisions ? b->decisions : 1),
		       (double)b->issue_ns / 1e6 / (double)(b->issued ? b->issued : 1),
		       files_rate > 0 && strcmp(b->store, "files") != 0 ? "" : "\n");
		if (files_rate > 0 && strcmp(b->store, "files") != 0)
			printf(", %.2fx files\n", rate / files_rate);
		if (b->server_s > 0)
			printf("store-attest: %-11s the server's CPU: %.2f ms a round (during the "
			       "slices, with the devices' side); the instance's and the server's "
			       "CPU "
			       "together: %.0f attestations per CPU-second\n",
			       "", b->server_s * 1e3 / (double)b->done,
			       (double)b->done / (b->cpu_s + b->server_s));
		if (b->refused > 0)
			rc = 1;
	}
	for (int i = 0; i < n; i++) {
		for (int d = 0; d < NDEVICES; d++)
			EVP_PKEY_free(beds[i].devs[d].identity);
		service_free(beds[i].s);
	}
	nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	h_postgres_stop(&cluster);
	return rc;
}
