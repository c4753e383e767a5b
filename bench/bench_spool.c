/*
 * bench_spool.c: what the telemetry spool on disk costs, against the memory queue alone, in the
 * same run: guardian's CPU at 10,000 points/s and the top sustained rate for each sync policy;
 * the compression of real telemetry documents and what a week-long outage at 1,000 points/s
 * needs on disk; guardian's resident set before and after a long broker-away period.
 *
 * bench_spool [SECONDS [cpu|top|outage]...]: SECONDS is the measuring window of the CPU runs
 * (the top-rate windows are half of it, the outages scale with it); with parts named, only
 * those run.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "../tests/harness/harness.h"

#define DEVICE "bench-01"
#define MIB    (1024.0 * 1024.0)
#define NEEDLE "{\"name\":"

/* The four ways the uplink can hold telemetry: the memory queue alone, and the spool under each
 * sync policy (every other spool setting at its default). */
static const struct mode {
	const char *name;
	const char *spool; /* the "spool" object of the uplink config */
} modes[] = {
	{ "memory queue (spool off)", "{\"enabled\":false}" },
	{ "spool, sync always", "{\"enabled\":true,\"sync\":\"always\"}" },
	{ "spool, sync batch (default)", "{\"enabled\":true,\"sync\":\"batch\"}" },
	{ "spool, sync none", "{\"enabled\":true,\"sync\":\"none\"}" },
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

struct bed {
	int bport, mport;
	pid_t broker, gd, sub, hsub;
};

/*
 * mosquitto, plcsim (registers changing every 'step_ms'), optionally a subscriber, and guardian
 * polling 'npoints' registers every 'interval_ms' (0: back to back), with 'spool' as its
 * uplink's spool object. 0 or -1.
 */
static int bed_up(struct bed *b, const char *spool, int npoints, int interval_ms, int step_ms,
		  bool subscribe, int health_ms, const char *extra)
{
	size_t cap = (size_t)npoints * 64 + 4096;
	char args[160], policy[256], *text, *p;

	*b = (struct bed){ .bport = h_free_port(), .mport = h_free_port() };
	if (h_pki(DEVICE) != 0 || (b->broker = h_mosquitto(b->bport)) <= 0)
		return -1;
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --bulk %d --step-ms %d --quiet", b->mport,
		 npoints, step_ms);
	if (h_plcsim(args, h_path("plcsim.log")) <= 0)
		return -1;
	if (subscribe && (b->sub = h_subscribe(b->bport, "guardian/" DEVICE "/telemetry",
					       h_path("sub.out"), false)) <= 0)
		return -1;
	if (health_ms > 0 && (b->hsub = h_subscribe(b->bport, "guardian/" DEVICE "/health",
						    h_path("health.out"), false)) <= 0)
		return -1;
	snprintf(policy, sizeof(policy),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"uplink\":[{\"points\":\"*\",\"action\":\"allow\"}]}",
		 b->bport);
	h_write(h_path("policy.json"), policy);
	text = malloc(cap);
	if (text == NULL)
		return -1;
	p = text +
	    snprintf(text, cap,
		     "{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\","
		     "\"state_dir\":\"state\","
		     "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		     "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		     "\"health_interval_ms\":%d,%s\"spool\":%s},"
		     "\"adapters\":[{\"name\":\"plc\",\"type\":\"modbus-tcp\","
		     "\"host\":\"127.0.0.1\",\"port\":%d,\"poll_interval_ms\":%d,\"points\":[",
		     b->bport, health_ms > 0 ? health_ms : 10000, extra, spool, b->mport,
		     interval_ms);
	for (int i = 0; i < npoints; i++)
		p += sprintf(p, "%s{\"name\":\"r%d\",\"address\":%d}", i ? "," : "", i, 1000 + i);
	strcpy(p, "]}]}");
	h_write(h_path("site.json"), text);
	free(text);
	b->gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	return b->gd > 0 ? 0 : -1;
}

/* Stops everything; says so if guardian logged an error. */
static void bed_down(void)
{
	if (h_count(h_path("guardian.log"), "error") > 0)
		fprintf(stderr, "bench: guardian logged errors:\n%s",
			h_read(h_path("guardian.log")));
	h_cleanup();
}

/* utime + stime of the whole process (every thread, the ended ones too), in seconds, from
 * /proc/<pid>/stat; -1 if gone. */
static double stat_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	/* After ')': state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
	 * majflt, cmajflt (13), utime (14), stime (15). */
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The whole of a (binary) file, its length in *n; NULL if it does not read. */
static uint8_t *read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0;

	*n = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		if (*n == cap) {
			uint8_t *b = realloc(buf, cap = cap ? cap * 2 : 1 << 20);

			if (b == NULL)
				break;
			buf = b;
		}
		size_t r = fread(buf + *n, 1, cap - *n, f);

		if (r == 0)
			break;
		*n += r;
	}
	fclose(f);
	return buf;
}

static long file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

/* Telemetry points in bytes [from, to) of a subscriber's file. */
static unsigned long long points_in(const char *path, long from, long to)
{
	char *text = h_read(path);
	unsigned long long n = 0;
	long len = text ? (long)strlen(text) : 0;

	if (to > len)
		to = len;
	for (char *q = text ? text + from : NULL; q != NULL && q < text + to;) {
		q = memmem(q, (size_t)(text + to - q), NEEDLE, sizeof(NEEDLE) - 1);
		if (q == NULL)
			break;
		n++;
		q += sizeof(NEEDLE) - 1;
	}
	free(text);
	return n;
}

/* What the last health document in 'path' says (all 0 if there is none). */
struct health {
	double ts, polls_ok, published, dropped, sp_records, sp_dropped, sp_disk, sp_raw;
};

static double num(const cJSON *o, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);

	if (b != NULL)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

static void health_last(const char *path, struct health *h)
{
	static const char topic[] = "guardian/" DEVICE "/health {";
	char *text = h_read(path), *line = NULL, *save = NULL;
	cJSON *doc, *up;

	*h = (struct health){ 0 };
	for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, topic, sizeof(topic) - 2) == 0)
			line = l + sizeof(topic) - 2;
	}
	doc = line ? cJSON_Parse(line) : NULL;
	if (doc != NULL) {
		const cJSON *ad =
			cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "adapters"), 0);

		up = cJSON_GetObjectItemCaseSensitive(doc, "uplink");
		h->ts = num(doc, "ts", NULL);
		h->polls_ok = num(ad, "polls_ok", NULL);
		h->published = num(up, "published", NULL);
		h->dropped = num(up, "dropped", NULL);
		h->sp_records = num(up, "spool", "records");
		h->sp_dropped = num(up, "spool", "dropped");
		h->sp_disk = num(up, "spool", "disk_bytes");
		h->sp_raw = num(up, "spool", "raw_bytes");
		cJSON_Delete(doc);
	}
	free(text);
}

/* --- CPU at a fixed rate, top rate -------------------------------------------------------- */

struct cpu_result {
	double delivered; /* points/s at the subscriber (by message ts, as bench_e2e) */
	double cpu_stat;  /* % of a core, utime+stime from /proc/<pid>/stat */
	double cpu_sched; /* % of a core, schedstat (ns) of the live threads */
	double rss_mib;
};

/* 10,000 registers every 1 s: 10,000 points/s. */
static int run_cpu(const struct mode *m, int seconds, struct cpu_result *r)
{
	struct bed b;
	int64_t w0, w1, m0, m1;
	long long n0, n1;
	double s0, s1;
	unsigned long long pts = 0, msgs = 0;

	if (bed_up(&b, m->spool, 10000, 1000, 1000, true, 0, "") != 0)
		return -1;
	h_sleep_ms(5000);
	w0 = h_wall_ms();
	m0 = h_ms();
	s0 = stat_cpu_s(b.gd);
	n0 = h_cpu_ns(b.gd);
	h_sleep_ms(seconds * 1000);
	s1 = stat_cpu_s(b.gd);
	n1 = h_cpu_ns(b.gd);
	m1 = h_ms();
	w1 = h_wall_ms();
	h_sleep_ms(500);
	h_count_points(h_path("sub.out"), w0, w1, &pts, &msgs);
	r->delivered = (double)pts * 1000.0 / (double)(w1 - w0);
	r->cpu_stat = 100.0 * (s1 - s0) * 1000.0 / (double)(m1 - m0);
	r->cpu_sched = 100.0 * (double)(n1 - n0) / 1e6 / (double)(m1 - m0);
	r->rss_mib = h_status_kb(b.gd, "VmRSS") / 1024.0;
	bed_down();
	return 0;
}

struct top_result {
	double arrived;	   /* points/s arriving at the subscriber in the window */
	double cpu;	   /* guardian, % of a core (stat) */
	double polls, pub; /* per second, from health: polls_ok, messages published */
	struct health end; /* the last health document */
};

/*
 * 10,000 registers polled back to back (about 1.4 million points/s offered, far more than the
 * uplink carries): the points arriving at the subscriber per second, whatever their age.
 */
static int run_top(const struct mode *m, int seconds, struct top_result *r)
{
	struct bed b;
	long f0, f1;
	int64_t m0, m1;
	double s0, s1;
	struct health h0;

	if (bed_up(&b, m->spool, 10000, 0, 1000, true, 1000, "") != 0)
		return -1;
	h_sleep_ms(4000);
	m0 = h_ms();
	f0 = file_size(h_path("sub.out"));
	s0 = stat_cpu_s(b.gd);
	health_last(h_path("health.out"), &h0);
	h_sleep_ms(seconds * 1000);
	f1 = file_size(h_path("sub.out"));
	s1 = stat_cpu_s(b.gd);
	m1 = h_ms();
	health_last(h_path("health.out"), &r->end);
	if (r->end.ts > h0.ts) {
		r->polls = (r->end.polls_ok - h0.polls_ok) * 1000.0 / (r->end.ts - h0.ts);
		r->pub = (r->end.published - h0.published) * 1000.0 / (r->end.ts - h0.ts);
	}
	r->arrived = (double)points_in(h_path("sub.out"), f0, f1) * 1000.0 / (double)(m1 - m0);
	r->cpu = 100.0 * (s1 - s0) * 1000.0 / (double)(m1 - m0);
	bed_down();
	return 0;
}

/* --- outages ------------------------------------------------------------------------------ */

struct spool_scan {
	unsigned long long zst_files, zst_disk, zst_raw, zst_records, zst_points;
	unsigned long long seg_files, seg_disk, seg_records, seg_points;
};

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Records and points in a segment's bytes (u32 length, u32 CRC, u64 seq, payload). */
static void walk_records(const uint8_t *buf, size_t n, unsigned long long *records,
			 unsigned long long *points)
{
	size_t off = 0;

	while (n - off >= 16) {
		uint32_t len = le32(buf + off);
		const uint8_t *q = buf + off + 16, *end = q + len;

		if (len > n - off - 16)
			break; /* the tail being written */
		(*records)++;
		while ((q = memmem(q, (size_t)(end - q), NEEDLE, sizeof(NEEDLE) - 1)) != NULL) {
			(*points)++;
			q += sizeof(NEEDLE) - 1;
		}
		off += 16 + len;
	}
}

/* Reads every segment in 'dir' (guardian may be writing: what does not read is skipped). */
static void scan_spool(const char *dir, struct spool_scan *s)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	*s = (struct spool_scan){ 0 };
	while (d != NULL && (e = readdir(d)) != NULL) {
		size_t nl = strlen(e->d_name);
		bool zst = nl > 4 && strcmp(e->d_name + nl - 4, ".zst") == 0;
		bool seg = nl > 4 && strcmp(e->d_name + nl - 4, ".seg") == 0;
		char path[4096];
		uint8_t *file;
		size_t n;

		if (!zst && !seg)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		file = read_bytes(path, &n);
		if (file == NULL)
			continue;
		if (seg) {
			s->seg_files++;
			s->seg_disk += n;
			walk_records(file, n, &s->seg_records, &s->seg_points);
		} else {
			unsigned long long raw = ZSTD_getFrameContentSize(file, n);
			uint8_t *out;

			if (raw != ZSTD_CONTENTSIZE_ERROR && raw != ZSTD_CONTENTSIZE_UNKNOWN &&
			    (out = malloc(raw + 1)) != NULL) {
				size_t r = ZSTD_decompress(out, raw, file, n);

				if (!ZSTD_isError(r)) {
					s->zst_files++;
					s->zst_disk += n;
					s->zst_raw += r;
					walk_records(out, r, &s->zst_records, &s->zst_points);
				}
				free(out);
			}
		}
		free(file);
	}
	if (d != NULL)
		closedir(d);
}

struct outage_result {
	struct spool_scan scan;
	int seconds;
	double rate;					       /* points/s offered */
	double rss_before, rss_end, rss_max, rss_drained, hwm; /* MiB */
	double rss_q[4];				       /* at each quarter of the outage */
	double drain_s;	    /* from the reconnection to one segment left; -1: not drained */
	double reconnect_s; /* from the broker's return to guardian connected */
};

/* The spool's segments and their bytes, as guardian sees them (from the directory). */
static unsigned long long spool_files(const char *dir, unsigned long long *bytes)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned long long n = 0;

	*bytes = 0;
	while (d != NULL && (e = readdir(d)) != NULL) {
		size_t nl = strlen(e->d_name);
		char path[4096];

		if (nl > 4 && (strcmp(e->d_name + nl - 4, ".zst") == 0 ||
			       strcmp(e->d_name + nl - 4, ".seg") == 0)) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			*bytes += (unsigned long long)file_size(path);
			n++;
		}
	}
	if (d != NULL)
		closedir(d);
	return n;
}

/*
 * The default spool (batch, zstd level 3, 4 MiB segments, 256 MiB): guardian polls 'npoints'
 * registers every 100 ms, the values moving every poll; after a warm-up the broker stops for
 * 'seconds' and the spool fills. The segments are read at the end of the outage; with 'drain',
 * the broker comes back and the spool is watched until it holds one segment again.
 */
static int run_outage(int npoints, int seconds, bool drain, struct outage_result *r)
{
	struct bed b;
	char dir[512];
	int64_t t;

	*r = (struct outage_result){ .seconds = seconds, .rate = npoints * 10.0, .drain_s = -1 };
	if (bed_up(&b, "{\"enabled\":true}", npoints, 100, 100, false, 0,
		   "\"reconnect_max_ms\":2000,") != 0)
		return -1;
	snprintf(dir, sizeof(dir), "%s", h_path("state/spool"));
	h_sleep_ms(5000);
	r->rss_before = h_status_kb(b.gd, "VmRSS") / 1024.0;
	h_stop(b.broker, 5000);
	for (int i = 1; i <= seconds * 4; i++) {
		double rss;

		h_sleep_ms(250);
		rss = h_status_kb(b.gd, "VmRSS") / 1024.0;
		if (rss > r->rss_max)
			r->rss_max = rss;
		if (i % seconds == 0 && i / seconds <= 4)
			r->rss_q[i / seconds - 1] = rss;
	}
	r->rss_end = h_status_kb(b.gd, "VmRSS") / 1024.0;
	scan_spool(dir, &r->scan);
	if (drain) {
		unsigned long long bytes;

		b.broker = h_mosquitto(b.bport);
		t = h_ms();
		while (b.broker > 0 &&
		       h_count(h_path("guardian.log"), "uplink: connected to") < 2 &&
		       h_ms() - t < 30000)
			h_sleep_ms(20);
		r->reconnect_s = (double)(h_ms() - t) / 1000.0;
		t = h_ms();
		while (b.broker > 0 && h_ms() - t < 120000) {
			double rss;

			h_sleep_ms(250);
			rss = h_status_kb(b.gd, "VmRSS") / 1024.0;
			if (rss > r->rss_max)
				r->rss_max = rss;
			if (spool_files(dir, &bytes) <= 1) {
				r->drain_s = (double)(h_ms() - t) / 1000.0;
				break;
			}
		}
		h_sleep_ms(2000);
		r->rss_drained = h_status_kb(b.gd, "VmRSS") / 1024.0;
	}
	r->hwm = h_status_kb(b.gd, "VmHWM") / 1024.0;
	if (getenv("BENCH_VERBOSE") != NULL)
		h_sh("grep -E 'uplink|spool' '%s' | tail -20 >&2", h_path("guardian.log"));
	bed_down();
	return 0;
}

static void print_scan(const struct outage_result *r)
{
	const struct spool_scan *s = &r->scan;

	printf("  %d s away at %.0f points/s: %llu compressed segments (%llu records, %llu points,"
	       " %.1f MiB raw -> %.2f MiB on disk)\n",
	       r->seconds, r->rate, s->zst_files, s->zst_records, s->zst_points, s->zst_raw / MIB,
	       s->zst_disk / MIB);
	printf("    and %llu uncompressed (%llu records, %llu points, %.1f MiB: the active segment "
	       "and any sealed less than 1 s ago)\n",
	       s->seg_files, s->seg_records, s->seg_points, s->seg_disk / MIB);
	if (s->zst_disk > 0 && s->zst_points > 0)
		printf("    compression raw/disk %.1fx; %.1f bytes per point raw, %.2f on disk\n",
		       (double)s->zst_raw / (double)s->zst_disk,
		       (double)s->zst_raw / (double)s->zst_points,
		       (double)s->zst_disk / (double)s->zst_points);
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	bool all = argc <= 2, do_cpu = all, do_top = all, do_outage = all;
	struct cpu_result cpu[NMODES] = { { 0 } };
	struct top_result top[NMODES] = { { 0 } };
	struct outage_result week, big;

	if (seconds < 4)
		seconds = 4;
	for (int i = 2; i < argc; i++) {
		do_cpu = do_cpu || strcmp(argv[i], "cpu") == 0;
		do_top = do_top || strcmp(argv[i], "top") == 0;
		do_outage = do_outage || strcmp(argv[i], "outage") == 0;
	}
	/* The harness starts $GUARDIAN_BUILD/guardian: this program's own build unless told. */
	if (getenv("GUARDIAN_BUILD") == NULL && strrchr(argv[0], '/') != NULL) {
		char dir[1024];

		snprintf(dir, sizeof(dir), "%s", argv[0]);
		*strrchr(dir, '/') = '\0';
		setenv("GUARDIAN_BUILD", dir, 1);
	}
	printf("spool: plcsim (Modbus TCP) -> guardian -> mosquitto (TLS, QoS 1) -> mosquitto_sub; "
	       "guardian %s/guardian\n",
	       h_build());
	if (do_cpu) {
		for (size_t i = 0; i < NMODES; i++) {
			if (run_cpu(&modes[i], seconds, &cpu[i]) != 0)
				goto fail;
		}
		printf("CPU at 10,000 points/s (10,000 registers every 1 s), %d s after 5 s "
		       "warm-up; "
		       "guardian's own, %% of one core\n",
		       seconds);
		printf("  %-30s %11s %14s %14s %10s %9s\n", "mode", "points/s", "CPU (stat)",
		       "CPU (sched)", "vs memory", "RSS");
		for (size_t i = 0; i < NMODES; i++)
			printf("  %-30s %11.0f %13.2f%% %13.2f%% %+9.2f %6.1f MiB\n", modes[i].name,
			       cpu[i].delivered, cpu[i].cpu_stat, cpu[i].cpu_sched,
			       cpu[i].cpu_stat - cpu[0].cpu_stat, cpu[i].rss_mib);
		printf("  (vs memory: points of a core more than the memory queue, from stat; "
		       "target <= +0.50)\n");
	}
	if (do_top) {
		int s = seconds / 4 > 5 ? seconds / 4 : 5;
		struct top_result best[NMODES] = { { 0 } };

		/* Two rounds, the modes alternating: the best of each, as the machine is shared. */
		for (int round = 0; round < 2; round++) {
			for (size_t i = 0; i < NMODES; i++) {
				if (run_top(&modes[i], s, &top[i]) != 0)
					goto fail;
				printf("  (top rate, round %d, %s: %.0f points/s)\n", round + 1,
				       modes[i].name, top[i].arrived);
				fflush(stdout);
				if (top[i].arrived > best[i].arrived)
					best[i] = top[i];
			}
		}
		printf("top rate: 10,000 registers polled back to back; points/s arriving at the "
		       "subscriber, %d s after 4 s warm-up, best of 2 rounds\n",
		       s);
		printf("  %-30s %11s %9s %10s %9s %9s %9s %10s %9s\n", "mode", "points/s", "CPU",
		       "vs memory", "polls/s", "msgs/s", "q.dropped", "sp.records", "sp.disk");
		for (size_t i = 0; i < NMODES; i++)
			printf("  %-30s %11.0f %8.1f%% %10.2f %9.0f %9.0f %9.0f %10.0f %5.1f MiB\n",
			       modes[i].name, best[i].arrived, best[i].cpu,
			       best[0].arrived > 0 ? best[i].arrived / best[0].arrived : 0,
			       best[i].polls, best[i].pub,
			       best[i].end.dropped + best[i].end.sp_dropped, best[i].end.sp_records,
			       best[i].end.sp_disk / MIB);
		printf("  (polls/s: Modbus transactions that answered, 125 registers each; msgs/s: "
		       "published; from health, 1 s apart. q.dropped, sp.records, sp.disk: at the "
		       "end. vs memory: target >= 0.80)\n");
	}
	if (do_outage) {
		int s = seconds > 10 ? seconds : 10;
		double bpp, week_mib;

		if (run_outage(1000, s, false, &week) != 0 ||
		    run_outage(10000, s * 2, true, &big) != 0)
			goto fail;
		printf("broker away, default spool (batch, zstd 3, 4 MiB segments, cap 256 MiB); "
		       "values move every poll\n");
		print_scan(&week);
		bpp = week.scan.zst_points ? (double)week.scan.zst_disk / week.scan.zst_points : 0;
		week_mib = bpp * 1000.0 * 7 * 86400 / MIB;
		if (bpp > 0)
			printf("  a week at 1,000 points/s: %.0f MiB on disk (+4 MiB active "
			       "segment): "
			       "%s the default 256 MiB cap, which holds %.1f days\n",
			       week_mib, week_mib + 4 <= 256 ? "fits" : "does NOT fit",
			       (256.0 - 4) * MIB / (bpp * 1000.0 * 86400));
		print_scan(&big);
		printf("  guardian VmRSS: %.1f MiB before the outage, %.1f MiB after %d s away; "
		       "at each quarter %.1f %.1f %.1f %.1f; max %.1f (sampled every 250 ms), "
		       "VmHWM %.1f\n",
		       big.rss_before, big.rss_end, big.seconds, big.rss_q[0], big.rss_q[1],
		       big.rss_q[2], big.rss_q[3], big.rss_max, big.hwm);
		printf("  broker back: guardian connected %.1f s later; the spool drained to one "
		       "segment %s%.1f s after that; VmRSS then %.1f MiB\n",
		       big.reconnect_s, big.drain_s < 0 ? "not within " : "",
		       big.drain_s < 0 ? 120.0 : big.drain_s, big.rss_drained);
		if (big.drain_s > 0)
			printf("  the backlog (%llu points held at the broker's return) went out "
			       "at "
			       "about %.0f points/s on top of the %.0f new points/s\n",
			       big.scan.zst_points + big.scan.seg_points,
			       (double)(big.scan.zst_points + big.scan.seg_points) / big.drain_s,
			       big.rate);
	}
	return 0;
fail:
	fprintf(stderr, "bench: a run failed to start; see above\n");
	h_cleanup();
	return 1;
}
