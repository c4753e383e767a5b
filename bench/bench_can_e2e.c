/* bench_can_e2e.c: guardian's CPU per 1,000 CAN frames per second, end to end: slcansim on a
 * pseudo-terminal -> guardian (SLCAN) -> mosquitto (TLS, QoS 1) -> mosquitto_sub. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/harness/harness.h"

#define DEVICE "bench-can"

/* slcansim's default frames (see tools/slcansim.c): 9 points in every 5 frames. */
static const char *points =
	"[{\"name\":\"counter\",\"id\":\"0x123\",\"start_bit\":0,\"length\":8},"
	"{\"name\":\"speed\",\"id\":\"0x123\",\"start_bit\":8,\"length\":16},"
	"{\"name\":\"torque\",\"id\":\"0x123\",\"start_bit\":24,\"length\":16,\"signed\":true},"
	"{\"name\":\"engine_speed\",\"j1939\":{\"pgn\":61444},\"start_bit\":24,\"length\":16,"
	"\"scale\":0.125},"
	"{\"name\":\"demand\",\"j1939\":{\"pgn\":61444},\"start_bit\":16,\"length\":8,"
	"\"offset\":-125},"
	"{\"name\":\"moto12\",\"id\":\"0x200\",\"start_bit\":7,\"length\":12,\"byte_order\":"
	"\"big_endian\",\"signed\":true},"
	"{\"name\":\"moto16\",\"id\":\"0x200\",\"start_bit\":23,\"length\":16,\"byte_order\":"
	"\"big_endian\"},"
	"{\"name\":\"mux\",\"id\":\"0x300\",\"start_bit\":0,\"length\":8,\"multiplexor\":true},"
	"{\"name\":\"pressure\",\"id\":\"0x300\",\"mux\":0,\"start_bit\":8,\"length\":16},"
	"{\"name\":\"temperature\",\"id\":\"0x300\",\"mux\":1,\"start_bit\":8,\"length\":16}]";

/* The "frames" counter and "ts" of the last health message in 'file'; -1 if none. */
static long long health_frames(const char *file, long long *ts)
{
	char *text = h_read(file), *at, *last = NULL;
	long long n = -1;

	for (at = text; at != NULL && (at = strstr(at, "/health {")) != NULL; at++)
		last = at;
	*ts = 0;
	if (last != NULL && (at = strstr(last, "\"ts\":")) != NULL)
		*ts = atoll(at + strlen("\"ts\":"));
	if (last != NULL && (at = strstr(last, "\"frames\":")) != NULL)
		n = atoll(at + strlen("\"frames\":"));
	free(text);
	return n;
}

struct result {
	double frames_per_s, points_per_s, cpu_pct, rss_mib;
};

static int run(int rate, int seconds, struct result *res)
{
	int bport = h_free_port();
	char sim[256], gd_end[256], cmd[512], text[4096];
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	unsigned long long pts, msgs;
	long long c0, c1, f0, f1, t0, t1;
	int64_t w0, w1, m0, m1;
	pid_t gd;

	snprintf(sim, sizeof(sim), "%s", h_path("tty-sim"));
	snprintf(gd_end, sizeof(gd_end), "%s", h_path("tty-gd"));
	if (h_pki(DEVICE) != 0 || h_pty_pair(sim, gd_end) <= 0 || h_mosquitto(bport) <= 0 ||
	    h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false) <= 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "exec %s/slcansim --device %s --rate %d", h_build(), sim, rate);
	if (h_spawn(h_path("sim.log"), argv) <= 0)
		return -1;
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"uplink\":[{\"points\":\"bus/*\",\"action\":\"allow\"}]}",
		 bport);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"bus\",\"type\":\"can\",\"transport\":\"slcan\","
		 "\"device\":\"%s\",\"bitrate\":500000,\"points\":%s}]}",
		 bport, gd_end, points);
	h_write(h_path("site.json"), text);
	gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	if (gd <= 0)
		return -1;
	h_sleep_ms(3000);
	f0 = health_frames(h_path("sub.out"), &t0);
	w0 = h_wall_ms();
	m0 = h_ms();
	c0 = h_cpu_ns(gd);
	h_sleep_ms(seconds * 1000);
	c1 = h_cpu_ns(gd);
	m1 = h_ms();
	w1 = h_wall_ms();
	h_sleep_ms(1500); /* the next health message, and what was published in the window */
	f1 = health_frames(h_path("sub.out"), &t1);
	h_count_points(h_path("sub.out"), w0, w1, &pts, &msgs);
	res->cpu_pct = 100.0 * (double)(c1 - c0) / 1e6 / (double)(m1 - m0);
	/* Frames between two health messages, over the time between them. */
	res->frames_per_s = t1 > t0 ? (double)(f1 - f0) * 1000.0 / (double)(t1 - t0) : 0;
	res->points_per_s = (double)pts * 1000.0 / (double)(w1 - w0);
	res->rss_mib = h_status_kb(gd, "VmHWM") / 1024.0;
	if (c1 < 0 || f1 <= f0) {
		fprintf(stderr, "bench: guardian stopped or read nothing; its log:\n%s\nsim:\n%s",
			h_read(h_path("guardian.log")), h_read(h_path("sim.log")));
		h_cleanup();
		return -1;
	}
	h_cleanup();
	return 0;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	static const int rates[] = { 1000, 5000 };
	struct result r[2];

	for (int i = 0; i < 2; i++) {
		if (run(rates[i], seconds, &r[i]) != 0) {
			fprintf(stderr, "bench: a run failed to start; see above\n");
			h_cleanup();
			return 1;
		}
	}
	printf("CAN end to end: slcansim (SLCAN on a pty) -> guardian -> mosquitto (TLS, QoS 1)\n");
	printf("  %-28s %12s %12s %9s %14s %9s\n", "workload", "frames/s", "points/s", "CPU",
	       "CPU/1k fr/s", "peak RSS");
	for (int i = 0; i < 2; i++)
		printf("  %-28s %12.0f %12.0f %8.2f%% %13.2f%% %6.1f MiB\n",
		       rates[i] == 1000 ? "1,000 frames/s offered" : "5,000 frames/s offered",
		       r[i].frames_per_s, r[i].points_per_s, r[i].cpu_pct,
		       r[i].cpu_pct * 1000.0 / r[i].frames_per_s, r[i].rss_mib);
	return 0;
}
