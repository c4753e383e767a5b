/* bench_modbus.c: Modbus transactions per second through guardian's adapter, against a bare
 * libmodbus loop in the same run. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../adapters/adapter.h"
#include "../tests/harness/harness.h"

#define NREGS 10000
#define BASE  1000

/* The limit: one client reading 125 registers per request, back to back. */
static double bare_loop(int port, int seconds)
{
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
	uint16_t regs[125];
	uint64_t tx = 0;
	int64_t end;
	int addr = 0;

	if (ctx == NULL || modbus_connect(ctx) != 0) {
		fprintf(stderr, "bench: bare client cannot connect: %s\n", modbus_strerror(errno));
		exit(1);
	}
	modbus_set_slave(ctx, 1);
	end = h_ms() + seconds * 1000;
	while (h_ms() < end) {
		int n = NREGS - addr < 125 ? NREGS - addr : 125;

		if (modbus_read_registers(ctx, BASE + addr, n, regs) != n) {
			fprintf(stderr, "bench: bare read failed: %s\n", modbus_strerror(errno));
			exit(1);
		}
		tx++;
		addr = (addr + n) % NREGS;
	}
	modbus_close(ctx);
	modbus_free(ctx);
	return (double)tx / seconds;
}

struct counter {
	uint64_t samples;
	uint64_t good;
};

static void count_emit(struct point_sink *sink, struct adapter *a, const struct sample *s, size_t n)
{
	struct counter *c = sink->ctx;

	(void)a;
	c->samples += n;
	for (size_t i = 0; i < n; i++)
		c->good += s[i].quality == QUALITY_GOOD;
}

/* guardian's adapter: 10,000 u16 points polled back to back (interval 0), decoded, emitted. */
static double adapter_loop(int port, int seconds, uint64_t *samples_out)
{
	const struct adapter_ops *ops = adapter_ops_find("modbus-tcp");
	struct adapter *a = adapter_new("bench", ops);
	struct counter cnt = { 0 };
	struct point_sink sink = { .emit = count_emit, .ctx = &cnt };
	cJSON *obj = cJSON_CreateObject();
	cJSON *points = cJSON_AddArrayToObject(obj, "points");
	struct conf c;
	uint64_t polls0;
	int64_t end;

	cJSON_AddStringToObject(obj, "name", "bench");
	cJSON_AddStringToObject(obj, "type", "modbus-tcp");
	cJSON_AddStringToObject(obj, "host", "127.0.0.1");
	cJSON_AddNumberToObject(obj, "port", port);
	cJSON_AddNumberToObject(obj, "poll_interval_ms", 0);
	for (int i = 0; i < NREGS; i++) {
		cJSON *p = cJSON_CreateObject();
		char name[32];

		snprintf(name, sizeof(name), "r%d", i);
		cJSON_AddStringToObject(p, "name", name);
		cJSON_AddNumberToObject(p, "address", BASE + i);
		cJSON_AddItemToArray(points, p);
	}
	conf_init(&c, "bench");
	if (ops->configure(a, &c, obj, "adapters[0]") != 0) {
		conf_print_errors(&c, stderr);
		exit(1);
	}
	cJSON_Delete(obj);
	conf_release(&c);
	/* First poll connects. */
	ops->poll(a, h_ms(), &sink);
	polls0 = a->stats.polls;
	cnt = (struct counter){ 0 };
	end = h_ms() + seconds * 1000;
	while (h_ms() < end)
		ops->poll(a, h_ms(), &sink);
	*samples_out = cnt.good;
	{
		double rate = (double)(a->stats.polls - polls0) / seconds;

		if (a->stats.polls_ok != a->stats.polls) {
			fprintf(stderr, "bench: %llu of %llu adapter transactions failed\n",
				(unsigned long long)(a->stats.polls - a->stats.polls_ok),
				(unsigned long long)a->stats.polls);
			exit(1);
		}
		ops->close(a);
		adapter_free(a);
		return rate;
	}
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	int port = h_free_port();
	char args[128];
	double bare[2], ad[2];
	uint64_t samples[2];

	log_set_level(LOG_LEVEL_WARN);
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --bulk %d --quiet", port, NREGS);
	if (h_plcsim(args, h_path("plcsim.log")) <= 0) {
		fprintf(stderr, "bench: plcsim did not start\n");
		h_cleanup();
		return 1;
	}
	/* Interleaved, twice, so drift on the machine hits both alike. */
	for (int r = 0; r < 2; r++) {
		bare[r] = bare_loop(port, seconds);
		ad[r] = adapter_loop(port, seconds, &samples[r]);
	}
	h_cleanup();
	printf("modbus-tcp transactions/s (125 registers each), %d s per run, 2 runs each:\n",
	       seconds);
	printf("  bare libmodbus loop : %8.0f  %8.0f\n", bare[0], bare[1]);
	printf("  guardian adapter    : %8.0f  %8.0f   (%.2f million points/s decoded)\n", ad[0],
	       ad[1], (double)(samples[0] + samples[1]) / 2 / seconds / 1e6);
	printf("  ratio adapter/bare  : %.3f (target >= 0.9)\n",
	       (ad[0] + ad[1]) / (bare[0] + bare[1]));
	return 0;
}
