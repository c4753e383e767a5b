/*
 * bench_store_pg.c: what the PostgreSQL store costs an attestation: nonce_consume + cert_issued
 * + installed_put triples per second on one connection to a throwaway cluster on a Unix socket
 * (fsync and synchronous_commit on, as a real server runs), with the time of each call, the CPU
 * of the client and of the server per triple; then, to say where the time goes, the same with
 * synchronous_commit off (what-if only: the store never sets it) and with several connections
 * at once (instances sharing one server, whose commits share a WAL flush). In the same run,
 * taking turns with the triples, the same three writes as one transaction (store_attest_record:
 * one commit, one flush, what service_verify does).
 *
 * bench_store_pg [SECONDS [one|nosync|attest|parallel]...]: SECONDS per measurement (default 5);
 * with parts named, only those run.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../service/store.h"
#include "../tests/harness/h_postgres.h"
#include "../tests/harness/harness.h"

#define NDEVICES 1000 /* enrolled before the clock starts; each triple takes the next */
#define PARALLEL 4    /* connections of the parallel part */

static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIBszCCAVmgAwIBAgIUQmVuY2ggZGV2aWNlIGNlcnRpZmljYXRlMAoGCCqGSM49\n"
			       "BAMCMBYxFDASBgNVBAMMC2d1YXJkaWFuLWNhMB4XDTI2MDEwMTAwMDAwMFoXDTM2\n"
			       "MDEwMTAwMDAwMFowEzERMA8GA1UEAwwIYmVuY2gtMDEwWTATBgcqhkjOPQIBBggq\n"
			       "hkjOPQMBBwNCAATQ0Jm9wVxQyXrHhG3bXj0o2H0dF6rVf3jv3l4u7+8VqYh2v1Ym\n"
			       "-----END CERTIFICATE-----\n";
static const char installed_json[] =
	"{\"device\":\"%s\",\"guardian\":\"0.3.0\",\"config\":\"5f1d7a0c9e3b\","
	"\"policy\":\"a41c0e77d2f9\",\"boot\":\"9c2b8e41-7f3a-4d6e-b0a5-2c8f1e6d3b70\"}";

/* What one run of triples measured. */
struct tally {
	long triples;
	double seconds;
	double nonce_us, cert_us, installed_us; /* mean time of each call */
	double client_cpu_us;			/* this process's CPU per triple */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The fields of /proc/<pid>/stat after the command: *ppid, and utime + stime + cutime + cstime
 * (the CPU of the process and of its children it has reaped) in ns. False if it is gone. */
static bool proc_stat(const char *pid, int *ppid, long long *cpu_ns)
{
	char path[300], line[1024], *close_paren;
	unsigned long long ut, st, cut, cst;
	bool ok = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return false;
	if (fgets(line, sizeof(line), f) != NULL && (close_paren = strrchr(line, ')')) != NULL &&
	    sscanf(close_paren + 2,
		   "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", ppid, &ut, &st,
		   &cut, &cst) == 5) {
		*cpu_ns = (long long)((ut + st + cut + cst) *
				      (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)));
		ok = true;
	}
	fclose(f);
	return ok;
}

/* CPU time (ns) of the cluster: the postmaster with the children it reaped (backends that
 * ended), and its children running. */
static long long server_cpu_ns(pid_t postmaster)
{
	char self[16];
	long long total = 0, ns;
	struct dirent *e;
	DIR *d = opendir("/proc");
	int ppid;

	snprintf(self, sizeof(self), "%d", (int)postmaster);
	if (proc_stat(self, &ppid, &ns))
		total += ns;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		if (proc_stat(e->d_name, &ppid, &ns) && ppid == postmaster)
			total += ns;
	}
	if (d != NULL)
		closedir(d);
	return total;
}

static struct h_postgres cluster = { .watch_fd = -1 };
static pid_t main_pid;

/* Says why and exits; the main process stops the cluster first. */
static _Noreturn void die(const char *what, const char *why)
{
	fprintf(stderr, "bench_store_pg: %s: %s\n", what, why);
	if (getpid() == main_pid)
		h_postgres_stop(&cluster);
	exit(1);
}

static struct store *open_store(char *conninfo, bool create)
{
	struct store_config cfg = { .backend = STORE_POSTGRES, .conninfo = conninfo };
	struct store *st = NULL;
	char why[512];

	if (store_open(h_dir(), &cfg, create, &st, why, sizeof(why)) != 0)
		die("store_open", why);
	return st;
}

/* Triples for 'seconds' on 'st'; 'salt' keeps the nonces and serials of runs apart, 'first'
 * numbers the first triple (the ones before it were done in earlier slices). */
static struct tally triples(struct store *st, double seconds, unsigned salt, long first,
			    bool one_tx)
{
	struct tally t = { 0 };
	double start = now_s(), cpu0 = cpu_s(), t_nonce = 0, t_cert = 0, t_installed = 0;
	char why[512], name[32], json[sizeof(installed_json) + 32];

	while (now_s() - start < seconds) {
		uint8_t nonce[NONCE_LEN] = { 0 }, tag[16] = { 0 }, serial[16] = { 0x40 };
		uint64_t n = (uint64_t)(first + t.triples);
		int64_t wall = h_wall_ms();
		bool dup;
		double a, b, c, d;

		memcpy(nonce, &wall, sizeof(wall));
		memcpy(nonce + 8, &n, sizeof(n));
		memcpy(nonce + 16, &salt, sizeof(salt));
		memcpy(serial + 1, &n, sizeof(n));
		memcpy(serial + 9, &salt, sizeof(salt));
		tag[0] = (uint8_t)n;
		/* each process its own devices, as instances serve different ones */
		snprintf(name, sizeof(name), "bench-%04" PRIu64, (n + salt * 97) % NDEVICES);
		snprintf(json, sizeof(json), installed_json, name);

		a = now_s();
		if (one_tx) {
			struct store_attest rec = { .dev = name,
						    .nonce = nonce,
						    .nonce_ts_ms = wall,
						    .tag = tag,
						    .issued = true,
						    .not_after_s = wall / 1000 + 86400,
						    .installed_json = json,
						    .now_s = wall / 1000 };
			int revoked;

			memcpy(rec.serial, serial, sizeof(rec.serial));
			if (store_attest_record(st, &rec, &dup, &revoked, why, sizeof(why)) != 0)
				die("attest_record", why);
			t_nonce += now_s() - a; /* the whole transaction */
			t.triples++;
			continue;
		}
		if (store_nonce_consume(st, nonce, wall, tag, &dup, why, sizeof(why)) != 0)
			die("nonce_consume", why);
		b = now_s();
		if (store_cert_issued(st, name, serial, wall / 1000 + 86400, wall / 1000, why,
				      sizeof(why)) < 0)
			die("cert_issued", why);
		c = now_s();
		if (store_installed_put(st, name, json, why, sizeof(why)) != 0)
			die("installed_put", why);
		d = now_s();
		t_nonce += b - a;
		t_cert += c - b;
		t_installed += d - c;
		t.triples++;
	}
	t.seconds = now_s() - start;
	if (t.triples > 0) {
		t.nonce_us = t_nonce / (double)t.triples * 1e6;
		t.cert_us = t_cert / (double)t.triples * 1e6;
		t.installed_us = t_installed / (double)t.triples * 1e6;
		t.client_cpu_us = (cpu_s() - cpu0) / (double)t.triples * 1e6;
	}
	return t;
}

/* One connection measured in slices, taking turns with the other mode's (the disk's flush time
 * drifts: both modes see the same drift). */
#define SLICES 10
struct mode {
	const char *label;
	char *conninfo;
	unsigned salt;
	bool one_tx; /* store_attest_record: the triple in one transaction */
	struct store *st;
	double rate[SLICES]; /* triples/s of each slice */
	int slices;
	long triples;
	double nonce_us, cert_us, installed_us, client_cpu_us; /* sums, weighted by triples */
	long long server_ns;
};

static void slice(const struct h_postgres *pg, struct mode *m, double seconds)
{
	long long srv0 = server_cpu_ns(pg->postmaster);
	struct tally t = triples(m->st, seconds, m->salt, m->triples, m->one_tx);
	double n = (double)t.triples;

	m->server_ns += server_cpu_ns(pg->postmaster) - srv0;
	m->rate[m->slices++] = n / t.seconds;
	m->triples += t.triples;
	m->nonce_us += t.nonce_us * n;
	m->cert_us += t.cert_us * n;
	m->installed_us += t.installed_us * n;
	m->client_cpu_us += t.client_cpu_us * n;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median slice's triples/s, and the lowest and highest. */
static double median(struct mode *m, double *lo, double *hi)
{
	qsort(m->rate, (size_t)m->slices, sizeof(m->rate[0]), by_value);
	*lo = m->rate[0];
	*hi = m->rate[m->slices - 1];
	return m->slices % 2 ? m->rate[m->slices / 2]
			     : (m->rate[m->slices / 2 - 1] + m->rate[m->slices / 2]) / 2;
}

static double report(struct mode *m, double seconds)
{
	double n = m->triples > 0 ? (double)m->triples : 1, lo, hi, med = median(m, &lo, &hi);

	if (m->one_tx) {
		printf("store_pg: %s: %.0f attestations/s on one connection (median of %d slices "
		       "of %.1f s, %.0f to %.0f; store_attest_record %.0f us; CPU per attestation: "
		       "client %.0f us, server %.0f us)\n",
		       m->label, med, m->slices, seconds / SLICES, lo, hi, m->nonce_us / n,
		       m->client_cpu_us / n, (double)m->server_ns / 1e3 / n);
		fflush(stdout);
		return med;
	}
	printf("store_pg: %s: %.0f triples/s on one connection (median of %d slices of %.1f s, "
	       "%.0f to %.0f; per call nonce_consume %.0f us, cert_issued %.0f us, installed_put "
	       "%.0f us; CPU per triple: client %.0f us, server %.0f us)\n",
	       m->label, med, m->slices, seconds / SLICES, lo, hi, m->nonce_us / n, m->cert_us / n,
	       m->installed_us / n, m->client_cpu_us / n, (double)m->server_ns / 1e3 / n);
	fflush(stdout);
	return med;
}

/* PARALLEL processes, a connection each, at once: the triples per second of all. */
static void parallel(const struct h_postgres *pg, char *conninfo, double seconds)
{
	int fds[2];
	long total = 0;
	long long srv0 = server_cpu_ns(pg->postmaster), srv;
	pid_t pids[PARALLEL];

	if (pipe(fds) != 0)
		die("pipe", "failed");
	fflush(NULL);
	for (int i = 0; i < PARALLEL; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct store *st = open_store(conninfo, false);
			struct tally t = triples(st, seconds, 100 + (unsigned)i, 0, false);

			store_close(st);
			if (write(fds[1], &t.triples, sizeof(t.triples)) != sizeof(t.triples))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	for (int i = 0; i < PARALLEL; i++) {
		long n = 0;

		if (read(fds[0], &n, sizeof(n)) == sizeof(n))
			total += n;
		waitpid(pids[i], NULL, 0);
	}
	close(fds[0]);
	srv = server_cpu_ns(pg->postmaster) - srv0;
	printf("store_pg: %d connections at once (durable): %.0f triples/s in all (server CPU per "
	       "triple %.0f us)\n",
	       PARALLEL, (double)total / seconds, total ? (double)srv / 1e3 / (double)total : 0.0);
}

static bool wanted(int argc, char **argv, const char *part)
{
	if (argc <= 2)
		return true;
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], part) == 0)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	struct h_postgres *pg = &cluster;
	char why[512], conninfo[256], conninfo_nosync[320];
	const char *missing = h_postgres_missing();
	struct store *st;

	if (seconds <= 0)
		seconds = 5;
	if (missing != NULL) {
		printf("store_pg: skipped: %s\n", missing);
		return 0;
	}
	main_pid = getpid();
	if (h_postgres_start(pg, why, sizeof(why)) != 0)
		die("cluster", why);
	if (h_postgres_createdb(pg->dir, conninfo, sizeof(conninfo)) != 0)
		die("CREATE DATABASE", "failed");
	st = open_store(conninfo, true);
	for (int i = 0; i < NDEVICES; i++) {
		char name[32];

		snprintf(name, sizeof(name), "bench-%04d", i);
		if (store_device_put(st, name, cert_pem, NULL, why, sizeof(why)) != 0)
			die("device_put", why);
	}
	store_close(st);
	/* The same database, synchronous_commit off for this session only. */
	snprintf(conninfo_nosync, sizeof(conninfo_nosync), "%s options='-c synchronous_commit=off'",
		 conninfo);

	struct mode modes[] = {
		{ .label = "durable (synchronous_commit on)", .conninfo = conninfo, .salt = 1 },
		{ .label = "what-if, synchronous_commit off (not what the store does)",
		  .conninfo = conninfo_nosync,
		  .salt = 2 },
		{ .label = "durable, one transaction (store_attest_record)",
		  .conninfo = conninfo,
		  .salt = 3,
		  .one_tx = true },
	};
	bool run[] = { wanted(argc, argv, "one"), wanted(argc, argv, "nosync"),
		       wanted(argc, argv, "attest") };
	double med[3] = { 0, 0, 0 };

	for (int i = 0; i < 3; i++)
		if (run[i])
			modes[i].st = open_store(modes[i].conninfo, false);
	for (int k = 0; k < SLICES; k++)
		for (int i = 0; i < 3; i++)
			if (run[i])
				slice(pg, &modes[i], seconds / SLICES);
	for (int i = 0; i < 3; i++)
		if (run[i]) {
			med[i] = report(&modes[i], seconds);
			store_close(modes[i].st);
		}
	if (med[0] > 0 && med[1] > 0) {
		double flush = (1 / med[0] - 1 / med[1]) / 3; /* three commits a triple */

		printf("store_pg: so the WAL flush of a commit waits about %.0f us; one "
		       "transaction "
		       "per attestation (one flush, not three) would do about %.0f triples/s\n",
		       flush * 1e6, 1 / (1 / med[1] + (flush > 0 ? flush : 0)));
	}
	if (med[0] > 0 && med[2] > 0)
		printf("store_pg: one transaction per attestation: %.0f/s against %.0f/s for three "
		       "(x%.2f), durable, in the same run\n",
		       med[2], med[0], med[2] / med[0]);
	if (wanted(argc, argv, "parallel"))
		parallel(pg, conninfo, seconds);
	if (h_postgres_stop(pg) != 0)
		return 1;
	h_cleanup();
	return 0;
}
