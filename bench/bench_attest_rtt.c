/* bench_attest_rtt.c: one attestation round as the device sees it, on loopback: TLS connection to
 * the attestation listener (the first round; later ones reuse it), hello, nonce, measurements, a
 * fresh key, signed evidence, the service's checks and certificate, installed. Rounds are started
 * by policy reloads (SIGHUP). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/harness/harness.h"

#define DEVICE	"bench-attest"
#define MAX_RTT 256

static int compare(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* The figures after 'key' ("round trip ", "hello to certificate ") in guardian's log. */
static size_t read_figures(const char *key, long *out, size_t cap)
{
	char *text = h_read(h_path("guardian.log")), *at = text;
	size_t n = 0;

	while (at != NULL && n < cap && (at = strstr(at, key)) != NULL) {
		at += strlen(key);
		out[n++] = atol(at);
	}
	free(text);
	return n;
}

static size_t read_rtts(long *out, size_t cap)
{
	return read_figures("round trip ", out, cap);
}

static void report(const char *what, long *v, size_t n)
{
	/* The first round also starts the process's TLS library: report it apart. */
	qsort(v + 1, n - 1, sizeof(long), compare);
	printf("  %-34s first %ld ms; next %zu: median %ld ms, p95 %ld ms, max %ld ms\n", what,
	       v[0], n - 1, v[1 + (n - 2) / 2], v[1 + (n - 2) * 95 / 100], v[n - 1]);
}

/* One bed, file or TPM backend, measured; 0 or 1. */
static int run(int rounds, bool tpm)
{
	struct h_attest b;
	long rtt[MAX_RTT];
	size_t n;
	int tpm_port = 0;

	if (tpm && h_swtpm(&tpm_port) <= 0) {
		fprintf(stderr, "bench: no swtpm: %s\n",
			h_have_swtpm() ? "see swtpm.log" : h_swtpm_missing());
		return 1;
	}
	if (h_pki(DEVICE) != 0 || h_attest_up(&b, 86400) != 0) {
		fprintf(stderr, "bench: setup failed; see %s\n", h_path("steps.log"));
		h_cleanup();
		return 1;
	}
	h_attest_site(&b, DEVICE, "");
	if ((tpm ? h_attest_enroll_tpm(&b, tpm_port, true) : h_attest_enroll(&b)) != 0 ||
	    h_attest_serve(&b) != 0 ||
	    (b.gd = tpm ? h_guardian_launched("guardian", b.site, h_path("guardian.log"))
			: h_guardian(b.site, h_path("guardian.log"))) <= 0 ||
	    h_wait_contains(h_path("guardian.log"), "round trip", 20000) != 0) {
		fprintf(stderr, "bench: no first attestation; see %s and %s\n", h_path("steps.log"),
			h_path("guardian.log"));
		h_cleanup();
		return 1;
	}
	for (int i = 0; i < rounds; i++) {
		size_t before = read_rtts(rtt, MAX_RTT);
		int64_t end = h_ms() + 10000;

		kill(b.gd, SIGHUP);
		while (read_rtts(rtt, MAX_RTT) == before && h_ms() < end)
			h_sleep_ms(20);
	}
	n = read_rtts(rtt, MAX_RTT);
	if (n < 2) {
		h_cleanup();
		fprintf(stderr, "bench: rounds did not complete\n");
		return 1;
	}
	printf("attestation round trip on loopback, %s backend, %zu rounds started by policy "
	       "reloads:\n",
	       tpm ? "TPM (swtpm, guardian-launch's broker)" : "file", n);
	report("whole round (first: TLS connect)", rtt, n);
	n = read_figures("hello to certificate ", rtt, MAX_RTT);
	report("hello to certificate", rtt, n);
	h_cleanup();
	return 0;
}

/* Both backends, each in a process of its own (its own beds and work directory), file first. */
int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 20;
	const char *mode = argc > 2 ? argv[2] : "both";
	char arg[16], self[512];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int rc = 0;

	if (rounds < 2 || rounds > MAX_RTT - 1)
		rounds = 20;
	if (strcmp(mode, "file") == 0 || strcmp(mode, "tpm") == 0)
		return run(rounds, strcmp(mode, "tpm") == 0);
	if (len <= 0)
		return 1;
	self[len] = '\0';
	snprintf(arg, sizeof(arg), "%d", rounds);
	for (int i = 0; i < 2; i++) {
		fflush(stdout);
		if (h_sh("%s %s %s", self, arg, i == 0 ? "file" : "tpm") != 0)
			rc = 1;
	}
	return rc;
}
