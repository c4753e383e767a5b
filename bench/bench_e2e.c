/* bench_e2e.c: points per second from the simulator to the broker, end to end, with guardian's CPU
 * and peak RSS. */
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
	double expected_per_s;
	double cpu_pct;
	double rss_peak_mib;
	double rss_idle_mib;
};

static int run(int npoints, int interval_ms, int warmup_s, int seconds, struct result *res)
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
			 "\"uplink\":[{\"points\":\"plc/*\",\"action\":\"allow\"}]}",
			 bport);
		h_write(h_path("policy.json"), policy);
	}
	text = malloc(cap);
	used = (size_t)snprintf(
		text, cap,
		"{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		"\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		"\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\"},"
		"\"adapters\":[{\"name\":\"plc\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		"\"port\":%d,\"poll_interval_ms\":%d,\"points\":[",
		bport, mport, interval_ms);
	p = text + used;
	for (int i = 0; i < npoints; i++)
		p += sprintf(p, "%s{\"name\":\"r%d\",\"address\":%d}", i ? "," : "", i, 1000 + i);
	strcpy(p, "]}]}");
	h_write(h_path("site.json"), text);
	free(text);
	h_sleep_ms(300);
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
	res->expected_per_s = (double)npoints * 1000.0 / interval_ms;
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
	return run(1, 60000, 2, seconds, res);
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	struct result idle = { 0 }, r1k = { 0 }, r10k = { 0 }, r10k100 = { 0 };

	if (run_idle(seconds / 2 > 5 ? seconds / 2 : 5, &idle) != 0 ||
	    run(1000, 1000, 3, seconds, &r1k) != 0 || run(10000, 1000, 5, seconds, &r10k) != 0 ||
	    run(10000, 100, 5, seconds, &r10k100) != 0) {
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
	printf("  CPU per 10,000 points/s at 10k/1 s: %.2f%% of a core (target < 5%%); "
	       "peak RSS %.1f MiB (target < 16 MiB)\n",
	       r10k.cpu_pct * 10000.0 / r10k.points_per_s, r10k.rss_peak_mib);
	(void)errno;
	return 0;
}
