/* compartments.c: the bed and the checks the compartment suites share (compartments.h). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "compartments.h"
#include "site.h"

void it_bed_up(struct it_bed *b, const char *device)
{
	char topic[128], simargs[128];

	b->device = device;
	b->mport = h_free_port();
	b->bport = h_free_port();
	cr_assert_gt(h_mosquitto(b->bport), 0);
	snprintf(topic, sizeof(topic), "guardian/%s/#", device);
	cr_assert_gt(h_subscribe(b->bport, topic, h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 5 --step-ms 0", b->mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(b->tty_sim, sizeof(b->tty_sim), "%s", h_path("tty-sim"));
	snprintf(b->tty_gd, sizeof(b->tty_gd), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(b->tty_sim, b->tty_gd), 0, "socat could not make a pty pair");
}

void it_bed_serialsim(const struct it_bed *b)
{
	char cmd[1024];
	const char *sh[] = { "/bin/sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd),
		 "exec %s/serialsim --device %s --mode text --checksum xor8 --interval-ms 100",
		 h_build(), b->tty_sim);
	cr_assert_gt(h_spawn(h_path("sim.log"), sh), 0);
}

const char *it_bed_site(const struct it_bed *b, const char *sandbox, int poll_interval_ms)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],"
		 "\"function_codes\":{\"plc1\":[1,2,3,4,6]},"
		 "\"uplink\":[{\"points\":\"plc1/*\",\"action\":\"allow\"},"
		 "{\"points\":\"scale/*\",\"action\":\"allow\"}],"
		 "\"downlink\":[{\"points\":\"plc1/setpoint\",\"action\":\"allow\","
		 "\"range\":{\"min\":0,\"max\":1000}}]}",
		 b->bport);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"%s\",\"policy\":\"policy.json\",\"state_dir\":\"state\","
		 "%s"
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\","
		 "\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":%d,\"points\":["
		 "{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"setpoint\",\"address\":120,\"writable\":true}]},"
		 "{\"name\":\"scale\",\"type\":\"uart\",\"device\":\"%s\",\"baud\":115200,"
		 "\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\r\\n\",\"max_len\":80},"
		 "\"checksum\":{\"type\":\"xor8\",\"encoding\":\"hex\",\"separator\":\"*\"},"
		 "\"timeout_ms\":2000,\"backoff_min_ms\":200,\"backoff_max_ms\":1000,"
		 "\"regex\":\"^ST,(OK|OVL),([-+0-9.]+),kg,([-+0-9.]+),C,([0-9]+)$\","
		 "\"points\":[{\"name\":\"status\",\"group\":1,\"type\":\"string\"},"
		 "{\"name\":\"weight\",\"group\":2,\"unit\":\"kg\"}]}]}",
		 b->device, sandbox, b->bport, b->mport, poll_interval_ms, b->tty_gd);
	h_write(h_path("site.json"), text);
	return h_path("site.json");
}

pid_t it_bed_guardian(const char *program)
{
	char bin[300], site[256];
	const char *argv[] = { bin, "run", "-c", site, NULL };
	pid_t gd;

	snprintf(site, sizeof(site), "%s", h_path("site.json"));
	snprintf(bin, sizeof(bin), "%s/%s", h_build(), program);
	gd = h_spawn(h_path("guardian.log"), argv);
	cr_assert_gt(gd, 0);
	return gd;
}

void it_bed_command(const struct it_bed *b, const char *json)
{
	char file[256], pki[256];

	snprintf(file, sizeof(file), "%s", h_path("cmd.json"));
	snprintf(pki, sizeof(pki), "%s", h_path("pki"));
	h_write(file, json);
	cr_assert_eq(h_sh("mosquitto_pub -h localhost -p %d --cafile '%s/ca.crt' --cert "
			  "'%s/viewer.crt' --key '%s/viewer.key' -q 1 -t 'guardian/%s/cmd' -f '%s'",
			  b->bport, pki, pki, pki, b->device, file),
		     0);
}

/* Hands each telemetry line of the viewer, past its topic, to 'each'. */
static void each_telemetry(const struct it_bed *b, void (*each)(const char *payload, void *arg),
			   void *arg)
{
	char topic[128], *text = h_read(h_path("sub.out"));
	size_t topic_len;

	topic_len = (size_t)snprintf(topic, sizeof(topic), "guardian/%s/telemetry ", b->device);
	for (char *line = text; line != NULL && *line != '\0';) {
		char *eol = strchr(line, '\n');

		if (eol != NULL)
			*eol = '\0';
		if (strncmp(line, topic, topic_len) == 0)
			each(line + topic_len, arg);
		line = eol != NULL ? eol + 1 : NULL;
	}
	free(text);
}

struct needle_count {
	const char *needle;
	size_t n;
};

static void count_needle(const char *payload, void *arg)
{
	struct needle_count *c = arg;

	if (strstr(payload, c->needle) != NULL)
		c->n++;
}

size_t it_bed_telemetry_count(const struct it_bed *b, const char *needle)
{
	struct needle_count c = { .needle = needle, .n = 0 };

	each_telemetry(b, count_needle, &c);
	return c.n;
}

bool it_bed_wait_telemetry(const struct it_bed *b, const char *needle, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	while (it_bed_telemetry_count(b, needle) == 0) {
		if (h_ms() >= end)
			return false;
		h_sleep_ms(50);
	}
	return true;
}

#define SEQ_LIMIT (1 << 20)

struct seqs_seen {
	unsigned char *seen; /* SEQ_LIMIT flags */
	uint64_t max;
};

static void mark_seq(const char *payload, void *arg)
{
	struct seqs_seen *s = arg;
	cJSON *doc = cJSON_Parse(payload);
	double seq = doc != NULL ? it_json_num(doc, "seq") : -1;

	if (seq >= 1 && seq < SEQ_LIMIT) {
		s->seen[(size_t)seq] = 1;
		if ((uint64_t)seq > s->max)
			s->max = (uint64_t)seq;
	}
	cJSON_Delete(doc);
}

/* The telemetry seqs the viewer got, *max the highest: returns how many of 1..*max never arrived
 * (a resent duplicate is allowed, a hole is not). */
static size_t seq_holes(const struct it_bed *b, uint64_t *max)
{
	struct seqs_seen s = { .seen = calloc(SEQ_LIMIT, 1), .max = 0 };
	size_t holes = 0;

	cr_assert_not_null(s.seen);
	each_telemetry(b, mark_seq, &s);
	for (uint64_t seq = 1; seq <= s.max; seq++)
		holes += s.seen[seq] == 0;
	free(s.seen);
	*max = s.max;
	return holes;
}

void it_bed_expect_writes_decided(const struct it_bed *b)
{
	size_t before;

	it_bed_command(b, "{\"id\":\"w1\",\"point\":\"plc1/setpoint\",\"value\":600}");
	cr_expect(it_bed_wait_telemetry(b, "\"plc1/setpoint\",\"value\":600", 10000),
		  "the accepted write never reached the PLC; log:\n%s",
		  h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"status\":\"accepted\"", 10000), 0,
		     "no answer accepted w1; viewer:\n%s", h_read(h_path("sub.out")));
	it_bed_command(b, "{\"id\":\"w2\",\"point\":\"plc1/setpoint\",\"value\":5000}");
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"status\":\"refused\"", 10000), 0,
		     "no refusal of w2; viewer:\n%s", h_read(h_path("sub.out")));
	before = h_count(h_path("sub.out"), "\"plc1/setpoint\"");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "\"plc1/setpoint\"", before + 3, 10000), 0);
	cr_expect_eq(it_bed_telemetry_count(b, "\"plc1/setpoint\",\"value\":5000"), 0,
		     "a refused write reached the PLC");
}

void it_bed_expect_resumed_and_nothing_lost(const struct it_bed *b, pid_t gd)
{
	uint64_t max = 0;
	size_t holes, before;

	before = h_count(h_path("sub.out"), "/telemetry ");
	cr_expect_eq(h_wait_count(h_path("sub.out"), "/telemetry ", before + 10, 15000), 0,
		     "telemetry did not resume; log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_stop(gd, 15000), 0, "guardian did not stop cleanly; log:\n%s",
		     h_read(h_path("guardian.log")));
	cr_expect_eq(h_wait_contains(h_path("sub.out"), "\"reason\":\"stopped\"", 10000), 0);
	holes = seq_holes(b, &max);
	cr_expect_gt(max, 10);
	cr_expect_eq(holes, 0, "%zu of seq 1..%llu never arrived; log:\n%s", holes,
		     (unsigned long long)max, h_read(h_path("guardian.log")));
}

void it_expect_confined(pid_t pid, const char *label)
{
	static const struct {
		const char *field, *want;
		bool root_only; /* clearing the bounding set needs CAP_SETPCAP */
	} checks[] = {
		{ "CapEff", "0000000000000000", false },
		{ "CapPrm", "0000000000000000", false },
		{ "CapBnd", "0000000000000000", true },
		{ "NoNewPrivs", "1", false },
		{ "Seccomp", "2", false },
	};
	char v[128];

	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		if (checks[i].root_only && geteuid() != 0) {
			cr_log_info("not root: %s not checked (clearing it needs CAP_SETPCAP)",
				    checks[i].field);
			continue;
		}
		h_proc_status(pid, checks[i].field, v, sizeof(v));
		cr_expect_str_eq(v, checks[i].want, "%s: %s is %s, expected %s", label,
				 checks[i].field, v, checks[i].want);
	}
}

size_t it_each_fd(pid_t pid, void (*check)(int fd, const char *target, void *arg), void *arg)
{
	char dir[64], path[320], target[4096];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	cr_assert_not_null(d, "cannot list %s (not root?)", dir);
	while ((e = readdir(d)) != NULL) {
		ssize_t len;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = '\0';
		n++;
		if (fd == 3)
			cr_expect(strncmp(target, "socket:", 7) == 0, "fd 3 is %s", target);
		check(fd, target, arg);
	}
	closedir(d);
	return n;
}

void it_need_probe(char *path, size_t cap)
{
	snprintf(path, cap, "%s/guardian-probe", h_build());
	if (access(path, X_OK) != 0)
		cr_skip_test("%s is not built (make %s)", path, path);
}

void it_kill_leftover(pid_t pid, const char *subcommand)
{
	if (h_process_runs(pid, subcommand))
		kill(pid, SIGKILL);
}
