/* test_pipeline.c: simulated PLC -> guardian -> mosquitto over TLS -> subscriber, with real parts
 * on loopback. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "press-07"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(pipeline, .init = setup, .fini = it_teardown, .timeout = 90);

/* Every type and order of the simulator's map, at tick 7. */
static const char *every_type_points =
	"[{\"name\":\"counter\",\"address\":0},"
	"{\"name\":\"i16\",\"address\":1,\"type\":\"i16\"},"
	"{\"name\":\"u32_abcd\",\"address\":2,\"type\":\"u32\"},"
	"{\"name\":\"u32_cdab\",\"address\":4,\"type\":\"u32\",\"order\":\"CDAB\"},"
	"{\"name\":\"u32_badc\",\"address\":6,\"type\":\"u32\",\"order\":\"BADC\"},"
	"{\"name\":\"u32_dcba\",\"address\":8,\"type\":\"u32\",\"order\":\"DCBA\"},"
	"{\"name\":\"i32_abcd\",\"address\":10,\"type\":\"i32\"},"
	"{\"name\":\"i32_cdab\",\"address\":12,\"type\":\"i32\",\"order\":\"CDAB\"},"
	"{\"name\":\"i32_badc\",\"address\":14,\"type\":\"i32\",\"order\":\"BADC\"},"
	"{\"name\":\"i32_dcba\",\"address\":16,\"type\":\"i32\",\"order\":\"DCBA\"},"
	"{\"name\":\"f32_abcd\",\"address\":20,\"type\":\"f32\",\"unit\":\"bar\"},"
	"{\"name\":\"f32_cdab\",\"address\":22,\"type\":\"f32\",\"order\":\"CDAB\"},"
	"{\"name\":\"f32_badc\",\"address\":24,\"type\":\"f32\",\"order\":\"BADC\"},"
	"{\"name\":\"f32_dcba\",\"address\":26,\"type\":\"f32\",\"order\":\"DCBA\"},"
	"{\"name\":\"u64_abcd\",\"address\":30,\"type\":\"u64\"},"
	"{\"name\":\"u64_cdab\",\"address\":34,\"type\":\"u64\",\"order\":\"CDAB\"},"
	"{\"name\":\"u64_badc\",\"address\":38,\"type\":\"u64\",\"order\":\"BADC\"},"
	"{\"name\":\"u64_dcba\",\"address\":42,\"type\":\"u64\",\"order\":\"DCBA\"},"
	"{\"name\":\"i64_abcd\",\"address\":50,\"type\":\"i64\"},"
	"{\"name\":\"i64_cdab\",\"address\":54,\"type\":\"i64\",\"order\":\"CDAB\"},"
	"{\"name\":\"i64_badc\",\"address\":58,\"type\":\"i64\",\"order\":\"BADC\"},"
	"{\"name\":\"i64_dcba\",\"address\":62,\"type\":\"i64\",\"order\":\"DCBA\"},"
	"{\"name\":\"f64_abcd\",\"address\":70,\"type\":\"f64\"},"
	"{\"name\":\"f64_cdab\",\"address\":74,\"type\":\"f64\",\"order\":\"CDAB\"},"
	"{\"name\":\"f64_badc\",\"address\":78,\"type\":\"f64\",\"order\":\"BADC\"},"
	"{\"name\":\"f64_dcba\",\"address\":82,\"type\":\"f64\",\"order\":\"DCBA\"},"
	"{\"name\":\"tag\",\"address\":90,\"type\":\"string\",\"length\":16},"
	"{\"name\":\"tag_badc\",\"address\":98,\"type\":\"string\",\"length\":16,\"order\":"
	"\"BADC\"},"
	"{\"name\":\"temp\",\"address\":110,\"scale\":0.1,\"offset\":-40,\"unit\":\"degC\"},"
	"{\"name\":\"i16_badc\",\"address\":111,\"type\":\"i16\",\"order\":\"BADC\"},"
	"{\"name\":\"run\",\"table\":\"coil\",\"address\":0,\"type\":\"bool\"},"
	"{\"name\":\"on\",\"table\":\"coil\",\"address\":1,\"type\":\"bool\"},"
	"{\"name\":\"off\",\"table\":\"coil\",\"address\":2,\"type\":\"bool\"},"
	"{\"name\":\"c3\",\"table\":\"coil\",\"address\":3,\"type\":\"bool\"},"
	"{\"name\":\"c5\",\"table\":\"coil\",\"address\":5,\"type\":\"bool\"},"
	"{\"name\":\"even\",\"table\":\"discrete\",\"address\":0,\"type\":\"bool\"},"
	"{\"name\":\"d4\",\"table\":\"discrete\",\"address\":4,\"type\":\"bool\"},"
	"{\"name\":\"d5\",\"table\":\"discrete\",\"address\":5,\"type\":\"bool\"},"
	"{\"name\":\"in_u16\",\"table\":\"input\",\"address\":0},"
	"{\"name\":\"in_f32\",\"table\":\"input\",\"address\":1,\"type\":\"f32\"},"
	"{\"name\":\"in_u32\",\"table\":\"input\",\"address\":3,\"type\":\"u32\",\"order\":"
	"\"CDAB\"}]";

static void check_every_type(const struct h_telemetry *t, const char *a)
{
	char n[96];

#define NAME(s) (snprintf(n, sizeof(n), "%s/%s", a, s), n)
	/* k = 7: see the layout at the top of tools/plcsim.c. */
	it_expect_num(t, NAME("counter"), 7);
	it_expect_num(t, NAME("i16"), -8);
	it_expect_num(t, NAME("u32_abcd"), 100007);
	it_expect_num(t, NAME("u32_cdab"), 100007);
	it_expect_num(t, NAME("u32_badc"), 100007);
	it_expect_num(t, NAME("u32_dcba"), 100007);
	it_expect_num(t, NAME("i32_abcd"), -100007);
	it_expect_num(t, NAME("i32_cdab"), -100007);
	it_expect_num(t, NAME("i32_badc"), -100007);
	it_expect_num(t, NAME("i32_dcba"), -100007);
	it_expect_num(t, NAME("f32_abcd"), 3.25);
	it_expect_num(t, NAME("f32_cdab"), 3.25);
	it_expect_num(t, NAME("f32_badc"), 3.25);
	it_expect_num(t, NAME("f32_dcba"), 3.25);
	it_expect_text(t, NAME("u64_abcd"), "5000000007");
	it_expect_text(t, NAME("u64_cdab"), "5000000007");
	it_expect_text(t, NAME("u64_badc"), "5000000007");
	it_expect_text(t, NAME("u64_dcba"), "5000000007");
	it_expect_text(t, NAME("i64_abcd"), "-5000000007");
	it_expect_text(t, NAME("i64_cdab"), "-5000000007");
	it_expect_text(t, NAME("i64_badc"), "-5000000007");
	it_expect_text(t, NAME("i64_dcba"), "-5000000007");
	it_expect_num(t, NAME("f64_abcd"), -3.375);
	it_expect_num(t, NAME("f64_cdab"), -3.375);
	it_expect_num(t, NAME("f64_badc"), -3.375);
	it_expect_num(t, NAME("f64_dcba"), -3.375);
	it_expect_text(t, NAME("tag"), "GUARDIAN-SIM-01");
	it_expect_text(t, NAME("tag_badc"), "GUARDIAN-SIM-01");
	it_expect_num(t, NAME("temp"), 2007 * 0.1 - 40);
	it_expect_num(t, NAME("i16_badc"), -1234);
	it_expect_text(t, NAME("run"), "true");
	it_expect_text(t, NAME("on"), "true");
	it_expect_text(t, NAME("off"), "false");
	it_expect_text(t, NAME("c3"), "false");
	it_expect_text(t, NAME("c5"), "true");
	it_expect_text(t, NAME("even"), "false");
	it_expect_text(t, NAME("d4"), "false");
	it_expect_text(t, NAME("d5"), "true");
	it_expect_num(t, NAME("in_u16"), 14);
	it_expect_num(t, NAME("in_f32"), 107);
	it_expect_num(t, NAME("in_u32"), 70007);
	cr_expect_str_eq(h_telemetry_last(t, NAME("temp"))->unit, "degC");
	cr_expect_str_eq(h_telemetry_last(t, NAME("f32_abcd"))->unit, "bar");
#undef NAME
}

Test(pipeline, tcp_every_type_and_order_arrives_exactly)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[16384], simargs[128];
	struct h_telemetry t;

	cr_assert_gt(h_mosquitto(bport), 0, "mosquitto did not start: %s",
		     h_read(h_path("mosquitto.log")));
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 7 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0, "plcsim did not start");
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":200,\"points\":%s}]",
		 mport, every_type_points);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
	it_wait_messages(h_path("sub.out"), 3, 15000);
	h_telemetry_read(h_path("sub.out"), &t);
	check_every_type(&t, "plc1");
	/* The retained health document says online. */
	cr_expect_gt(h_count(h_path("sub.out"),
			     "guardian/" DEVICE "/health {\"device\":\"" DEVICE "\",\"boot\":\""),
		     0, "no health message");
	cr_expect_gt(h_count(h_path("sub.out"), "\",\"state\":\"online\""), 0,
		     "no online health message");
	h_telemetry_free(&t);
}

Test(pipeline, rtu_over_pseudo_terminal_arrives_exactly)
{
	int bport = h_free_port();
	char adapters[16384], simargs[512];
	struct h_telemetry t;
	char sim_end[256], gd_end[256];

	/* h_path's buffers rotate: keep our own copies. */
	snprintf(sim_end, sizeof(sim_end), "%s", h_path("tty-sim"));
	snprintf(gd_end, sizeof(gd_end), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(sim_end, gd_end), 0, "socat could not make a pty pair");
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	snprintf(simargs, sizeof(simargs), "--rtu %s --baud 38400 --parity E --start 7 --step-ms 0",
		 sim_end);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0, "plcsim did not start");
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"rtu1\",\"type\":\"modbus-rtu\",\"device\":\"%s\",\"baud\":38400,"
		 "\"parity\":\"even\",\"poll_interval_ms\":300,\"timeout_ms\":1000,\"points\":%s}]",
		 gd_end, every_type_points);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
	it_wait_messages(h_path("sub.out"), 3, 20000);
	h_telemetry_read(h_path("sub.out"), &t);
	check_every_type(&t, "rtu1");
	h_telemetry_free(&t);
}

Test(pipeline, point_not_allowed_never_reaches_the_broker)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[4096], simargs[128];
	struct h_telemetry t;

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":100,\"points\":["
		 "{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"recipe_secret\",\"address\":1,\"type\":\"i16\"},"
		 "{\"name\":\"setpoint\",\"address\":120}]}]",
		 mport);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters,
					      "{\"version\":1,\"uplink\":["
					      "{\"points\":\"plc1/counter\",\"action\":\"allow\"},"
					      "{\"points\":\"plc1/set*\",\"action\":\"allow\"}]}",
					      ""),
				h_path("guardian.log")),
		     0);
	it_wait_messages(h_path("sub.out"), 10, 15000);
	h_telemetry_read(h_path("sub.out"), &t);
	cr_expect_geq(h_telemetry_count(&t, "plc1/counter", "good"), 10);
	cr_expect_geq(h_telemetry_count(&t, "plc1/setpoint", "good"), 10);
	cr_expect_eq(h_telemetry_count(&t, "plc1/recipe_secret", NULL), 0,
		     "a denied point reached the broker");
	cr_expect_eq(h_count(h_path("sub.out"), "recipe_secret"), 0,
		     "the denied point's name appeared on the wire");
	/* The refusals are counted in health (refreshed every second here). */
	{
		long denied = 0;
		int64_t end = h_ms() + 5000;

		while (denied == 0 && h_ms() < end) {
			char *text = h_read(h_path("sub.out"));
			char *last = NULL;

			for (char *p = text; p && (p = strstr(p, "\"uplink_denied\":")) != NULL;
			     p++)
				last = p;
			if (last != NULL)
				denied = atol(last + strlen("\"uplink_denied\":"));
			free(text);
			if (denied == 0)
				h_sleep_ms(200);
		}
		cr_expect_gt(denied, 0, "health does not count the denied samples");
	}
	h_telemetry_free(&t);
}

Test(pipeline, broker_down_at_start_then_backlog_delivered_in_order)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[4096], simargs[128];
	pid_t broker;
	struct h_telemetry t;
	size_t n;

	/* Register the viewer's persistent session, then take the broker down. */
	broker = h_mosquitto(bport);
	cr_assert_gt(broker, 0);
	{
		pid_t sub = h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub0.out"),
					true);

		cr_assert_gt(sub, 0);
		h_stop(sub, 2000);
	}
	h_stop(broker, 5000);

	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --step-ms 100", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":100,\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 mport);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
	/* A backlog builds while the broker is away: three failed connects (with backoff from
	 * 200 ms, more than a second of 100 ms cycles). */
	cr_assert_eq(h_wait_count(h_path("guardian.log"), "; attempt ", 3, 20000), 0,
		     "guardian should log its failed connects:\n%s",
		     h_read(h_path("guardian.log")));
	broker = h_mosquitto(bport);
	cr_assert_gt(broker, 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), true),
		     0);
	it_wait_messages(h_path("sub.out"), 40, 20000);
	h_telemetry_read(h_path("sub.out"), &t);
	n = t.nmessages;
	/* Nothing lost, nothing reordered: sequence numbers 1, 2, 3, ... (QoS 1 may repeat one). */
	cr_assert_eq(t.seqs[0], 1, "the first buffered message was lost (first seq %llu)",
		     (unsigned long long)t.seqs[0]);
	for (size_t i = 1; i < n; i++)
		cr_assert(t.seqs[i] == t.seqs[i - 1] + 1 || t.seqs[i] <= t.seqs[i - 1],
			  "gap or disorder at message %zu: seq %llu after %llu", i,
			  (unsigned long long)t.seqs[i], (unsigned long long)t.seqs[i - 1]);
	for (size_t i = 1; i < n; i++)
		cr_expect(t.seqs[i] > t.seqs[i - 1], "message %zu repeated or out of order", i);
	h_telemetry_free(&t);
}

Test(pipeline, dead_unit_does_not_slow_the_healthy_one)
{
	int bport = h_free_port();
	char adapters[4096], simargs[512];
	char sim_end[256], gd_end[256];
	struct h_telemetry t;
	size_t good = 0, timeouts, offline;
	int64_t end;

	/* h_path's buffers rotate: keep our own copies. */
	snprintf(sim_end, sizeof(sim_end), "%s", h_path("tty-sim"));
	snprintf(gd_end, sizeof(gd_end), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(sim_end, gd_end), 0);
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	/* The simulator serves unit 1 only: unit 2 never answers. */
	snprintf(simargs, sizeof(simargs), "--rtu %s --baud 115200 --unit 1", sim_end);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"bus\",\"type\":\"modbus-rtu\",\"device\":\"%s\",\"baud\":115200,"
		 "\"poll_interval_ms\":100,\"backoff_min_ms\":2000,\"backoff_max_ms\":8000,"
		 "\"units\":[{\"id\":1,\"timeout_ms\":500},{\"id\":2,\"timeout_ms\":400}],"
		 "\"points\":[{\"name\":\"good\",\"unit_id\":1,\"address\":0},"
		 "{\"name\":\"dead\",\"unit_id\":2,\"address\":0}]}]",
		 gd_end);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
	it_wait_messages(h_path("sub.out"), 1, 10000);
	/* Until 40 good readings of the healthy unit. */
	end = h_ms() + 30000;
	do {
		h_telemetry_read(h_path("sub.out"), &t);
		good = h_telemetry_count(&t, "bus/good", "good");
		if (good >= 40 || h_ms() > end)
			break;
		h_telemetry_free(&t);
		h_sleep_ms(200);
	} while (true);
	timeouts = h_telemetry_count(&t, "bus/dead", "timeout");
	offline = h_telemetry_count(&t, "bus/dead", "offline");
	/*
	 * 40 cycles of 100 ms take about 4 s. Without backoff each cycle would also
	 * wait 400 ms for the dead unit: 40 timeouts. With backoff, the dead unit
	 * costs one timeout per backoff period (2 s, 4 s, 8 s): at most 3 here.
	 */
	cr_assert_geq(good, 40, "the healthy unit was read only %zu times", good);
	cr_expect_geq(timeouts, 1, "the dead unit's timeout is reported");
	cr_expect_leq(timeouts, 4, "the dead unit was retried %zu times: no backoff", timeouts);
	cr_expect_geq(offline, 10, "points of a unit in backoff are reported offline");
	h_telemetry_free(&t);
}

Test(pipeline, device_certificate_from_another_ca_is_refused)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[4096], simargs[128];

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "#", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":100,\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 mport);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, "rogue-"),
				h_path("guardian.log")),
		     0);
	cr_assert_eq(
		h_wait_contains(h_path("guardian.log"), "accept our client certificate", 10000), 0,
		"no clear log line about the refused connection:\n%s",
		h_read(h_path("guardian.log")));
	/* guardian tried again and was refused again; then a marker from the viewer reached the
	 * subscriber: what the rogue device could have sent before would be in by now. */
	cr_assert_eq(
		h_wait_count(h_path("guardian.log"), "accept our client certificate", 2, 10000), 0,
		"no second attempt:\n%s", h_read(h_path("guardian.log")));
	cr_assert_eq(h_publish(bport, "marker/rogue", "end"), 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "marker/rogue end", 5000), 0);
	cr_expect_eq(h_count(h_path("sub.out"), "guardian/"), 0,
		     "something from the rogue device reached the broker");
	cr_expect_eq(h_count(h_path("guardian.log"), "uplink: connected"), 0);
}

Test(pipeline, last_will_says_offline_when_guardian_dies)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[4096], simargs[128];
	pid_t gd;

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/health", h_path("sub.out"), false), 0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 mport);
	gd = h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"state\":\"online\"", 10000), 0);
	kill(gd, SIGKILL);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"state\":\"offline\"", 90000), 0,
		     "the broker did not publish the last will");
	h_stop(gd, 100);
}

Test(pipeline, tcp_link_that_drops_is_reconnected_without_restart)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[4096], simargs[128];
	struct h_telemetry t;
	pid_t sim, gd;
	size_t before, disconnected;

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 100 --step-ms 0", mport);
	sim = h_plcsim(simargs, h_path("plcsim.log"));
	cr_assert_gt(sim, 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":100,\"backoff_min_ms\":100,\"backoff_max_ms\":400,"
		 "\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 mport);
	gd = h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), 5, 10000);

	/* The PLC goes away (link reset), then comes back with another value. */
	h_stop(sim, 2000);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"quality\":\"disconnected\"", 10000), 0,
		     "points of a dropped link are sent as disconnected");
	h_telemetry_read(h_path("sub.out"), &t);
	before = t.npoints;
	disconnected = h_telemetry_count(&t, "plc1/counter", "disconnected");
	h_telemetry_free(&t);
	cr_expect_gt(disconnected, 0, "points of a dropped link are sent as disconnected");
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 200 --step-ms 0", mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim2.log")), 0);
	{
		int64_t end = h_ms() + 10000;
		const struct h_point *p = NULL;

		do {
			h_sleep_ms(200);
			h_telemetry_read(h_path("sub.out"), &t);
			p = h_telemetry_last(&t, "plc1/counter");
			if (p != NULL && strcmp(p->value, "200") == 0)
				break;
			h_telemetry_free(&t);
			p = NULL;
		} while (h_ms() < end);
		cr_assert_not_null(p, "values did not resume after the PLC came back:\n%s",
				   h_read(h_path("guardian.log")));
		cr_expect_gt(t.npoints, before);
		h_telemetry_free(&t);
	}
	cr_expect_eq(kill(gd, 0), 0, "guardian kept running");
	cr_expect_gt(h_count(h_path("guardian.log"), "plc1: connected"), 1,
		     "the log shows the reconnection");
}

Test(pipeline, exception_answers_arrive_with_their_code_and_do_not_stop_the_rest)
{
	int bport = h_free_port(), mport = h_free_port();
	char adapters[4096], simargs[128];
	struct h_telemetry t;
	const struct h_point *p;

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	/* 100 bulk registers at 1000..1099: 5000 is outside the simulator's map. */
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --start 3 --step-ms 0 --bulk 100",
		 mport);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"poll_interval_ms\":100,\"points\":[{\"name\":\"counter\",\"address\":0},"
		 "{\"name\":\"missing\",\"address\":15000}]}]",
		 mport);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
	it_wait_messages(h_path("sub.out"), 10, 10000);
	h_telemetry_read(h_path("sub.out"), &t);
	p = h_telemetry_last(&t, "plc1/missing");
	cr_assert_not_null(p);
	cr_expect_str_eq(p->quality, "exception");
	cr_expect_str_eq(p->value, "null");
	cr_expect_eq(h_count(h_path("sub.out"), "\"quality\":\"exception\",\"code\":2"),
		     t.nmessages, "every cycle reports exception 2 (illegal data address)");
	/* An exception is an answer: no backoff, the good point keeps its rate. */
	cr_expect_geq(h_telemetry_count(&t, "plc1/counter", "good"), 10);
	cr_expect_geq(h_telemetry_count(&t, "plc1/missing", "exception"), 10);
	it_expect_num(&t, "plc1/counter", 3);
	h_telemetry_free(&t);
}
