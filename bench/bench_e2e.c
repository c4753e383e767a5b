/* bench_e2e.c: points per second from the simulator to the broker, end to end, with guardian's CPU
 * and peak RSS. `bench_e2e SECONDS multi` runs only the workloads with several adapters. */
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/harness/harness.h"

#define DEVICE "bench-01"

struct result {
	double points_per_s;
	double msgs_per_s;
	double expected_per_s;
	double cpu_pct;
	double rss_peak_mib;
	double rss_idle_mib;
};

/* 'npoints' registers over 'nadapters' adapters (plc1, plc2, ...; "plc" when one), each its own
 * thread and link, all polled every 'interval_ms' (0: back to back). */
static int run(int npoints, int nadapters, int interval_ms, int warmup_s, int seconds,
	       struct result *res)
{
	int bport = h_free_port(), mport = h_free_port();
	char args[128], *text, *p;
	size_t cap = (size_t)npoints * 96 + 4096, used;
	pid_t gd;
	long long t0, t1;
	int64_t w0, w1;
	unsigned long long pts = 0, msgs = 0;
	int64_t m0, m1;

	if (h_pki(DEVICE) != 0 || h_mosquitto(bport) <= 0)
		return -1;
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --bulk %d --step-ms 1000 --quiet", mport,
		 npoints);
	if (h_plcsim(args, h_path("plcsim.log")) <= 0)
		return -1;
	if (h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false) <= 0)
		return -1;
	{
		char policy[256];

		snprintf(policy, sizeof(policy),
			 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
			 "\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]}",
			 bport);
		h_write(h_path("policy.json"), policy);
	}
	cap += (size_t)nadapters * 256;
	text = malloc(cap);
	used = (size_t)snprintf(
		text, cap,
		"{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		"\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		"\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\"},"
		"\"adapters\":[",
		bport);
	p = text + used;
	for (int a = 0; a < nadapters; a++) {
		int first = npoints * a / nadapters, last = npoints * (a + 1) / nadapters;
		char name[16];

		if (nadapters == 1)
			snprintf(name, sizeof(name), "plc");
		else
			snprintf(name, sizeof(name), "plc%d", a + 1);
		p += sprintf(p,
			     "%s{\"name\":\"%s\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
			     "\"port\":%d,\"poll_interval_ms\":%d,\"points\":[",
			     a ? "," : "", name, mport, interval_ms);
		for (int i = first; i < last; i++)
			p += sprintf(p, "%s{\"name\":\"r%d\",\"address\":%d}", i > first ? "," : "",
				     i, 1000 + i);
		p += sprintf(p, "]}");
	}
	strcpy(p, "]}");
	h_write(h_path("site.json"), text);
	free(text);
	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	if (gd <= 0)
		return -1;
	h_sleep_ms(warmup_s * 1000);
	w0 = h_wall_ms();
	t0 = h_cpu_ns(gd);
	m0 = h_ms();
	h_sleep_ms(seconds * 1000);
	t1 = h_cpu_ns(gd);
	m1 = h_ms();
	w1 = h_wall_ms();
	/* Let what was published in the window arrive. */
	h_sleep_ms(500);
	h_count_points(h_path("sub.out"), w0, w1, &pts, &msgs);
	res->rss_peak_mib = h_status_kb(gd, "VmHWM") / 1024.0;
	res->points_per_s = (double)pts * 1000.0 / (double)(w1 - w0);
	res->msgs_per_s = (double)msgs * 1000.0 / (double)(w1 - w0);
	res->expected_per_s = interval_ms > 0 ? (double)npoints * 1000.0 / interval_ms : 0;
	res->cpu_pct = 100.0 * (double)(t1 - t0) / 1e6 / (double)(m1 - m0);
	if (h_count(h_path("guardian.log"), "error") > 0)
		fprintf(stderr, "bench: guardian logged errors:\n%s",
			h_read(h_path("guardian.log")));
	h_cleanup();
	return 0;
}

/* Idle: the same process with one point polled once a minute. */
static int run_idle(int seconds, struct result *res)
{
	return run(1, 1, 60000, 2, seconds, res);
}

/*
 * Several adapters: their threads number, build and queue telemetry messages at
 * the same time (one at a time, so that seq is the queue's order). 10,000
 * registers over 4 adapters every 100 ms; and 4 adapters of 10 registers
 * polled back to back, which is many small messages: the most contention.
 */
static int run_multi(int seconds, struct result *r4x, struct result *burst)
{
	if (run(10000, 4, 100, 5, seconds, r4x) != 0 || run(40, 4, 0, 5, seconds, burst) != 0) {
		fprintf(stderr, "bench: a run failed to start; see above\n");
		h_cleanup();
		return 1;
	}
	printf("  %-34s %12.0f %9.1f%% %8.2f%% %7.1f MiB\n", "10,000 registers / 100 ms, 4 adapt.",
	       r4x->points_per_s, 100 * r4x->points_per_s / r4x->expected_per_s, r4x->cpu_pct,
	       r4x->rss_peak_mib);
	printf("  %-34s %12.0f %10s %8.2f%% %7.1f MiB  (%.0f messages/s)\n",
	       "4 adapters x 10 registers, no wait", burst->points_per_s, "-", burst->cpu_pct,
	       burst->rss_peak_mib, burst->msgs_per_s);
	return 0;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	bool multi_only = argc > 2 && strcmp(argv[2], "multi") == 0;
	struct result idle = { 0 }, r1k = { 0 }, r10k = { 0 }, r10k100 = { 0 }, r4x = { 0 },
		      burst = { 0 };

	if (multi_only) {
		printf("  %-34s %12s %10s %9s %10s\n", "workload", "points/s", "delivered", "CPU",
		       "peak RSS");
		return run_multi(seconds, &r4x, &burst);
	}
	if (run_idle(seconds / 2 > 5 ? seconds / 2 : 5, &idle) != 0 ||
	    run(1000, 1, 1000, 3, seconds, &r1k) != 0 ||
	    run(10000, 1, 1000, 5, seconds, &r10k) != 0 ||
	    run(10000, 1, 100, 5, seconds, &r10k100) != 0) {
		fprintf(stderr, "bench: a run failed to start; see above\n");
		h_cleanup();
		return 1;
	}
	printf("end to end: plcsim (Modbus TCP) -> guardian -> mosquitto (TLS, QoS 1) -> "
	       "mosquitto_sub\n");
	printf("%d s measured per workload after warm-up; CPU is guardian's own, %% of one core\n",
	       seconds);
	printf("  %-34s %12s %10s %9s %10s\n", "workload", "points/s", "delivered", "CPU",
	       "peak RSS");
	printf("  %-34s %12s %10s %8.2f%% %7.1f MiB\n", "idle (1 point / 60 s)", "-", "-",
	       idle.cpu_pct, idle.rss_peak_mib);
	printf("  %-34s %12.0f %9.1f%% %8.2f%% %7.1f MiB\n", "1,000 registers every 1 s",
	       r1k.points_per_s, 100 * r1k.points_per_s / r1k.expected_per_s, r1k.cpu_pct,
	       r1k.rss_peak_mib);
	printf("  %-34s %12.0f %9.1f%% %8.2f%% %7.1f MiB\n", "10,000 registers every 1 s",
	       r10k.points_per_s, 100 * r10k.points_per_s / r10k.expected_per_s, r10k.cpu_pct,
	       r10k.rss_peak_mib);
	printf("  %-34s %12.0f %9.1f%% %8.2f%% %7.1f MiB\n", "10,000 registers every 100 ms",
	       r10k100.points_per_s, 100 * r10k100.points_per_s / r10k100.expected_per_s,
	       r10k100.cpu_pct, r10k100.rss_peak_mib);
	if (run_multi(seconds, &r4x, &burst) != 0)
		return 1;
	printf("  CPU per 10,000 points/s at 10k/1 s: %.2f%% of a core (target < 5%%); "
	       "peak RSS %.1f MiB (target < 16 MiB)\n",
	       r10k.cpu_pct * 10000.0 / r10k.points_per_s, r10k.rss_peak_mib);
	(void)errno;
	return 0;
}
