/* test_serial.c: serial instruments and CAN buses end to end: simulator on a pseudo-terminal ->
 * guardian -> mosquitto over TLS -> subscriber; unplug and replug; SocketCAN where the kernel
 * has it. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/can.h>
#include <math.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "line-3"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(uart, .init = setup, .fini = it_teardown, .timeout = 90);
TestSuite(can, .init = setup, .fini = it_teardown, .timeout = 90);

/* Both ends of a fresh pty pair, kept out of h_path's rotating buffers. */
struct line {
	char sim[256], gd[256];
	pid_t socat;
};

static void line_plug(struct line *l)
{
	if (l->sim[0] == '\0') {
		snprintf(l->sim, sizeof(l->sim), "%s", h_path("tty-sim"));
		snprintf(l->gd, sizeof(l->gd), "%s", h_path("tty-gd"));
	}
	l->socat = h_pty_pair(l->sim, l->gd);
	cr_assert_gt(l->socat, 0, "socat could not make a pty pair");
}

/* The cable is pulled: both ends vanish, as a USB adapter's device node does. */
static void line_unplug(struct line *l)
{
	h_stop(l->socat, 2000);
	unlink(l->sim);
	unlink(l->gd);
}

static pid_t start_sim(const char *tool, const char *args, const char *log)
{
	char cmd[1024];
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd), "exec %s/%s %s", h_build(), tool, args);
	return h_spawn(log, argv);
}

static void start_broker(int bport)
{
	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/#", h_path("sub.out"), false), 0);
}

static void start_guardian(int bport, const char *adapters)
{
	cr_assert_gt(h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
}

/* Waits until the adapter's health field satisfies want (a string equal, or a number >= min). */
static const cJSON *wait_health(const char *adapter, const char *field, const char *want,
				double min, int timeout_ms, cJSON **root)
{
	int64_t end = h_ms() + timeout_ms;
	const cJSON *a;

	for (;;) {
		a = it_health_adapter(h_path("sub.out"), adapter, root);
		if (a != NULL && want != NULL && strcmp(it_json_str(a, field), want) == 0)
			return a;
		if (a != NULL && want == NULL && it_json_num(a, field) >= min)
			return a;
		if (h_ms() > end)
			break;
		cJSON_Delete(*root);
		h_sleep_ms(200);
	}
	cr_assert_fail("health of %s: %s never became %s%g; last health: %s; guardian log:\n%s",
		       adapter, field, want ? want : ">= ", want ? 0.0 : min,
		       a ? cJSON_PrintUnformatted(a) : "none", h_read(h_path("guardian.log")));
	return NULL;
}

/* ---- UART -------------------------------------------------------------------------------- */

/* The text instrument; %s is the device. */
#define TEXT_ADAPTER                                                                               \
	"[{\"name\":\"scale\",\"type\":\"uart\",\"device\":\"%s\",\"baud\":115200,"                \
	"\"framing\":{\"mode\":\"delimiter\",\"delimiter\":\"\\r\\n\",\"max_len\":80},"            \
	"\"checksum\":{\"type\":\"xor8\",\"encoding\":\"hex\",\"separator\":\"*\"},"               \
	"\"timeout_ms\":2000,\"backoff_min_ms\":200,\"backoff_max_ms\":1000,"                      \
	"\"regex\":\"^ST,(OK|OVL),([-+0-9.]+),kg,([-+0-9.]+),C,([0-9]+)$\","                       \
	"\"points\":[{\"name\":\"status\",\"group\":1,\"type\":\"string\"},"                       \
	"{\"name\":\"weight\",\"group\":2,\"unit\":\"kg\"},"                                       \
	"{\"name\":\"temp\",\"group\":3,\"unit\":\"degC\"},"                                       \
	"{\"name\":\"n\",\"group\":4,\"type\":\"u32\"}]}]"

/* Frame n of serialsim: weight 12.34 + n/100 kg, temperature -5.5 + n % 10, OVL when n % 7 == 6. */
static void expect_instrument(const struct h_telemetry *t, const char *adapter)
{
	char name[96];
	const struct h_point *n;
	long k;

	snprintf(name, sizeof(name), "%s/n", adapter);
	n = h_telemetry_last(t, name);
	cr_assert_not_null(n, "%s never arrived", name);
	k = strtol(n->value, NULL, 10);
	snprintf(name, sizeof(name), "%s/weight", adapter);
	it_expect_num(t, name, round((12.34 + k * 0.01) * 100) / 100);
	snprintf(name, sizeof(name), "%s/temp", adapter);
	it_expect_num(t, name, -5.5 + (double)(k % 10));
	snprintf(name, sizeof(name), "%s/status", adapter);
	if (strcmp(adapter, "bin") == 0)
		it_expect_num(t, name, k % 7 == 6 ? 1 : 0);
	else
		it_expect_text(t, name, k % 7 == 6 ? "OVL" : "OK");
}

Test(uart, text_instrument_values_exact)
{
	int bport = h_free_port();
	struct line l = { 0 };
	char args[512], adapters[2048];
	struct h_telemetry t;
	cJSON *root;
	const cJSON *a;

	line_plug(&l);
	start_broker(bport);
	snprintf(args, sizeof(args), "--device %s --mode text --checksum xor8 --interval-ms 50",
		 l.sim);
	cr_assert_gt(start_sim("serialsim", args, h_path("sim.log")), 0);
	snprintf(adapters, sizeof(adapters), TEXT_ADAPTER, l.gd);
	start_guardian(bport, adapters);
	it_wait_messages(h_path("sub.out"), 20, 20000);
	h_telemetry_read(h_path("sub.out"), &t);
	expect_instrument(&t, "scale");
	cr_expect_eq(h_telemetry_count(&t, "scale/weight", "bad_value"), 0);
	h_telemetry_free(&t);
	a = wait_health("scale", "frames", NULL, 20, 10000, &root);
	cr_expect_str_eq(it_json_str(a, "link"), "up");
	cr_expect_eq(it_json_num(a, "errors.checksum"), 0, "good frames failed their checksum");
	cJSON_Delete(root);
}

/* The binary instrument answers only when asked; junk and corrupted frames between answers are
 * counted and dropped, and every good answer arrives exactly. */
Test(uart, binary_request_response_with_noise)
{
	int bport = h_free_port();
	struct line l = { 0 };
	char args[512], adapters[2048];
	struct h_telemetry t;
	cJSON *root;
	const cJSON *a;

	line_plug(&l);
	start_broker(bport);
	snprintf(args, sizeof(args), "--device %s --mode binary --request '\\x05' --noise 3",
		 l.sim);
	cr_assert_gt(start_sim("serialsim", args, h_path("sim.log")), 0);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"bin\",\"type\":\"uart\",\"device\":\"%s\",\"baud\":115200,"
		 "\"request\":\"\\\\x05\",\"poll_interval_ms\":50,\"response_timeout_ms\":500,"
		 "\"framing\":{\"mode\":\"start_end\",\"start\":\"\\\\x02\",\"end\":\"\\\\x03\","
		 "\"max_len\":64,\"length_field\":{\"offset\":0,\"size\":1,\"adjust\":2}},"
		 "\"checksum\":{\"type\":\"crc16_modbus\"},"
		 "\"points\":[{\"name\":\"n\",\"byte_offset\":1,\"type\":\"u16\"},"
		 "{\"name\":\"weight\",\"byte_offset\":3,\"type\":\"i32\",\"order\":\"DCBA\","
		 "\"scale\":0.01,\"unit\":\"kg\"},"
		 "{\"name\":\"temp\",\"byte_offset\":7,\"type\":\"f32\"},"
		 "{\"name\":\"status\",\"byte_offset\":11,\"type\":\"u16\"}]}]",
		 l.gd);
	start_guardian(bport, adapters);
	it_wait_messages(h_path("sub.out"), 30, 20000);
	h_telemetry_read(h_path("sub.out"), &t);
	expect_instrument(&t, "bin");
	h_telemetry_free(&t);
	/* Every 6th frame has a corrupted twin, every 3rd is followed by 5 bytes of junk. */
	a = wait_health("bin", "polls_ok", NULL, 24, 10000, &root);
	cr_expect_geq(it_json_num(a, "errors.checksum"), 2, "corrupted frames not counted");
	cr_expect_geq(it_json_num(a, "errors.garbage_bytes"), 5, "junk between frames not counted");
	cr_expect_eq(it_json_num(a, "timeouts"), 0, "a request went unanswered");
	cJSON_Delete(root);
}

/* The cable is pulled and put back: guardian reports the fault and resumes by itself. */
Test(uart, unplug_and_replug_resumes_without_restart)
{
	int bport = h_free_port();
	struct line l = { 0 };
	char args[512], adapters[2048];
	size_t before, retries;
	pid_t gd;
	cJSON *root;
	const cJSON *a;

	line_plug(&l);
	start_broker(bport);
	snprintf(args, sizeof(args), "--device %s --mode text --checksum xor8 --interval-ms 50",
		 l.sim);
	cr_assert_gt(start_sim("serialsim", args, h_path("sim.log")), 0);
	snprintf(adapters, sizeof(adapters), TEXT_ADAPTER, l.gd);
	gd = h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	it_wait_messages(h_path("sub.out"), 5, 20000);
	wait_health("scale", "frames", NULL, 10, 10000, &root);
	cJSON_Delete(root);

	retries = h_count(h_path("guardian.log"), "retrying with backoff");
	line_unplug(&l);
	a = wait_health("scale", "link", "down", 0, 10000, &root);
	cr_expect(strstr(it_json_str(a, "fault"), l.gd) != NULL, "the fault names the device: %s",
		  it_json_str(a, "fault"));
	cJSON_Delete(root);
	cr_expect_gt(h_wait_contains(h_path("sub.out"), "\"quality\":\"disconnected\"", 5000), -1,
		     "the points were not marked disconnected");
	/* A reopen failed (the device is gone), with backoff. */
	cr_assert_eq(
		h_wait_count(h_path("guardian.log"), "retrying with backoff", retries + 1, 10000),
		0, "no failed reopen:\n%s", h_read(h_path("guardian.log")));

	before = h_count(h_path("sub.out"), "\"scale/weight\"");
	line_plug(&l);
	a = wait_health("scale", "reconnects", NULL, 1, 15000, &root);
	cr_expect_str_eq(it_json_str(a, "link"), "up");
	cr_expect_str_eq(it_json_str(a, "fault"), "", "the fault was not cleared");
	cJSON_Delete(root);
	{
		int64_t end = h_ms() + 10000;

		while (h_count(h_path("sub.out"), "\"scale/weight\"") < before + 10 && h_ms() < end)
			h_sleep_ms(100);
	}
	cr_expect_geq(h_count(h_path("sub.out"), "\"scale/weight\""), before + 10,
		      "values did not resume after the replug");
	cr_expect_eq(kill(gd, 0), 0, "guardian exited");
}

Test(uart, bad_config_names_the_path)
{
	char adapters[1024], out[4096];
	FILE *p;
	size_t n;

	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"x\",\"type\":\"uart\",\"device\":\"/dev/null\","
		 "\"framing\":{\"mode\":\"fixed\",\"length\":4},"
		 "\"points\":[{\"name\":\"v\",\"byte_offset\":2,\"type\":\"u32\"}]}]");
	it_write_site(DEVICE, 1883, adapters, it_allow_all, "");
	snprintf(out, sizeof(out), "%s/guardian check -c %s 2>&1", h_build(), h_path("site.json"));
	p = popen(out, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	cr_expect_neq(pclose(p), 0, "check accepted a field beyond the frame");
	cr_expect(strstr(out, "adapters[0].points[0].byte_offset") != NULL, "no path in: %s", out);
}

/* ---- CAN --------------------------------------------------------------------------------- */

/* slcansim's default frames, as its layout comment describes them. */
static const char *can_points =
	"[{\"name\":\"counter\",\"id\":\"0x123\",\"start_bit\":0,\"length\":8},"
	"{\"name\":\"speed\",\"id\":\"0x123\",\"start_bit\":8,\"length\":16},"
	"{\"name\":\"torque\",\"id\":\"0x123\",\"start_bit\":24,\"length\":16,\"signed\":true},"
	"{\"name\":\"engine_speed\",\"j1939\":{\"pgn\":61444,\"source\":0},\"start_bit\":24,"
	"\"length\":16,\"scale\":0.125,\"unit\":\"rpm\"},"
	"{\"name\":\"demand\",\"j1939\":{\"pgn\":61444},\"start_bit\":16,\"length\":8,"
	"\"offset\":-125,\"unit\":\"pct\"},"
	"{\"name\":\"moto12\",\"id\":512,\"start_bit\":7,\"length\":12,\"byte_order\":"
	"\"big_endian\",\"signed\":true},"
	"{\"name\":\"moto16\",\"id\":\"0x200\",\"start_bit\":23,\"length\":16,\"byte_order\":"
	"\"big_endian\"},"
	"{\"name\":\"mux\",\"id\":\"0x300\",\"start_bit\":0,\"length\":8,\"multiplexor\":true},"
	"{\"name\":\"pressure\",\"id\":\"0x300\",\"mux\":0,\"start_bit\":8,\"length\":16,"
	"\"scale\":0.1,\"unit\":\"kPa\"},"
	"{\"name\":\"temperature\",\"id\":\"0x300\",\"mux\":1,\"start_bit\":8,\"length\":16,"
	"\"signed\":true}]";

static void can_adapter(char *buf, size_t cap, const char *device)
{
	snprintf(buf, cap,
		 "[{\"name\":\"bus\",\"type\":\"can\",\"transport\":\"slcan\",\"device\":\"%s\","
		 "\"baud\":115200,\"bitrate\":500000,\"timeout_ms\":2000,\"backoff_min_ms\":200,"
		 "\"backoff_max_ms\":1000,\"points\":%s}]",
		 device, can_points);
}

static void expect_can_values(const struct h_telemetry *t)
{
	it_expect_num(t, "bus/speed", 1500);
	it_expect_num(t, "bus/torque", -250);
	it_expect_num(t, "bus/engine_speed", 1500.0);
	it_expect_num(t, "bus/demand", 50);
	it_expect_num(t, "bus/moto12", -100);
	it_expect_num(t, "bus/moto16", 0xBEEF);
	it_expect_num(t, "bus/pressure", 400.0);
	it_expect_num(t, "bus/temperature", -40);
	cr_expect_not_null(h_telemetry_last(t, "bus/counter"), "the counter never arrived");
}

Test(can, slcan_signals_exact_and_unmapped_dropped)
{
	int bport = h_free_port();
	struct line l = { 0 };
	char args[512], adapters[4096];
	struct h_telemetry t;
	cJSON *root;
	const cJSON *a;

	line_plug(&l);
	start_broker(bport);
	snprintf(args, sizeof(args), "--device %s", l.sim);
	cr_assert_gt(start_sim("slcansim", args, h_path("sim.log")), 0);
	can_adapter(adapters, sizeof(adapters), l.gd);
	start_guardian(bport, adapters);
	it_wait_messages(h_path("sub.out"), 20, 20000);
	h_telemetry_read(h_path("sub.out"), &t);
	expect_can_values(&t);
	h_telemetry_free(&t);
	/* 0x7FF is in no map: counted, never forwarded. */
	a = wait_health("bus", "errors.unmapped", NULL, 1, 10000, &root);
	cr_expect_eq(it_json_num(a, "errors.malformed"), 0);
	cr_expect_str_eq(it_json_str(a, "link"), "up");
	cJSON_Delete(root);
	cr_expect_eq(h_count(h_path("sub.out"), "7FF"), 0);
	/* The simulator saw guardian set 500 kbit/s and open the channel. */
	cr_expect_gt(h_count(h_path("sim.log"), "S6"), 0, "no bitrate command; sim log:\n%s",
		     h_read(h_path("sim.log")));
}

Test(can, slcan_unplug_and_replug_resumes)
{
	int bport = h_free_port();
	struct line l = { 0 };
	char args[512], adapters[4096];
	size_t before, retries;
	cJSON *root;
	const cJSON *a;

	line_plug(&l);
	start_broker(bport);
	snprintf(args, sizeof(args), "--device %s", l.sim);
	cr_assert_gt(start_sim("slcansim", args, h_path("sim.log")), 0);
	can_adapter(adapters, sizeof(adapters), l.gd);
	start_guardian(bport, adapters);
	it_wait_messages(h_path("sub.out"), 5, 20000);
	wait_health("bus", "frames", NULL, 10, 10000, &root);
	cJSON_Delete(root);
	retries = h_count(h_path("guardian.log"), "retrying with backoff");
	line_unplug(&l);
	a = wait_health("bus", "link", "down", 0, 10000, &root);
	cr_expect(strstr(it_json_str(a, "fault"), l.gd) != NULL, "fault: %s; health: %s; log:\n%s",
		  it_json_str(a, "fault"), cJSON_PrintUnformatted(a),
		  h_read(h_path("guardian.log")));
	cJSON_Delete(root);
	/* A reopen failed (the device is gone), with backoff. */
	cr_assert_eq(
		h_wait_count(h_path("guardian.log"), "retrying with backoff", retries + 1, 10000),
		0, "no failed reopen:\n%s", h_read(h_path("guardian.log")));
	before = h_count(h_path("sub.out"), "\"bus/speed\"");
	line_plug(&l);
	a = wait_health("bus", "reconnects", NULL, 1, 15000, &root);
	cr_expect_str_eq(it_json_str(a, "link"), "up");
	cJSON_Delete(root);
	{
		int64_t end = h_ms() + 10000;

		while (h_count(h_path("sub.out"), "\"bus/speed\"") < before + 5 && h_ms() < end)
			h_sleep_ms(100);
	}
	cr_expect_geq(h_count(h_path("sub.out"), "\"bus/speed\""), before + 5,
		      "CAN values did not resume after the replug");
}

/* Sends one classic frame on a raw CAN socket. */
static void can_send(int s, uint32_t id, bool ext, const uint8_t *data, uint8_t dlc)
{
	struct can_frame f = { .can_id = id | (ext ? CAN_EFF_FLAG : 0), .can_dlc = dlc };

	memcpy(f.data, data, dlc);
	cr_assert_eq(write(s, &f, sizeof(f)), (ssize_t)sizeof(f), "cannot send on vcan0: %s",
		     strerror(errno));
}

/*
 * SocketCAN needs a kernel with CAN and the vcan driver, and the right to make
 * a network namespace (so the test's vcan0 is its own). Where any of that is
 * missing, the test says which and skips, before it starts anything.
 */
TestSuite(socketcan, .fini = it_teardown, .timeout = 90);

Test(socketcan, vcan_in_own_namespace)
{
	int bport, s;
	char adapters[4096];
	struct sockaddr_can addr = { .can_family = AF_CAN };
	static const uint8_t f123[8] = { 7, 0xDC, 0x05, 0x06, 0xFF, 0x11, 0x22, 0x33 };
	static const uint8_t eec1[8] = { 0xFF, 0xFF, 0xAF, 0xE0, 0x2E, 0xFF, 0xFF, 0xFF };
	static const uint8_t f7ff[2] = { 0xDE, 0xAD };
	struct h_telemetry t;

	s = socket(PF_CAN, SOCK_RAW, CAN_RAW);
	if (s < 0)
		cr_skip_test("this kernel has no SocketCAN (socket(PF_CAN): %s)", strerror(errno));
	close(s);
	if (unshare(CLONE_NEWNET) != 0)
		cr_skip_test("cannot make a network namespace for vcan0 (unshare: %s)",
			     strerror(errno));
	if (h_sh("ip link set lo up && ip link add dev vcan0 type vcan && ip link set vcan0 up "
		 ">/dev/null 2>&1") != 0)
		cr_skip_test("this kernel has no vcan driver (ip link add type vcan failed)");
	setup();
	bport = h_free_port();
	start_broker(bport);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"bus\",\"type\":\"can\",\"transport\":\"socketcan\","
		 "\"interface\":\"vcan0\",\"timeout_ms\":0,\"points\":%s}]",
		 can_points);
	start_guardian(bport, adapters);
	s = socket(PF_CAN, SOCK_RAW, CAN_RAW);
	addr.can_ifindex = (int)if_nametoindex("vcan0");
	cr_assert_eq(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
	/* Frames count once guardian's socket is open on vcan0. */
	cr_assert_eq(h_wait_contains(h_path("guardian.log"), "SocketCAN vcan0 open", 10000), 0,
		     "%s", h_read(h_path("guardian.log")));
	for (int i = 0; i < 20; i++) {
		can_send(s, 0x123, false, f123, 8);
		can_send(s, 0x0CF00400, true, eec1, 8);
		can_send(s, 0x7FF, false, f7ff, 2);
		h_sleep_ms(50);
	}
	close(s);
	it_wait_messages(h_path("sub.out"), 5, 10000);
	h_telemetry_read(h_path("sub.out"), &t);
	it_expect_num(&t, "bus/counter", 7);
	it_expect_num(&t, "bus/speed", 1500);
	it_expect_num(&t, "bus/torque", -250);
	it_expect_num(&t, "bus/engine_speed", 1500.0);
	it_expect_num(&t, "bus/demand", 50);
	h_telemetry_free(&t);
}

/* An integrator's DBC file becomes a config that guardian accepts, with nothing dropped silently.
 */
Test(can, dbc_import_yields_a_config_guardian_accepts)
{
	char cmd[1024], adapters[65536];
	cJSON *doc, *pts;
	char *text, *ptext;

	snprintf(cmd, sizeof(cmd),
		 "%s/guardian dbc import %s/tests/unit/fixtures/engine.dbc >%s 2>%s", h_build(),
		 h_src(), h_path("points.json"), h_path("import.err"));
	cr_assert_eq(h_sh("%s", cmd), 0, "dbc import failed:\n%s", h_read(h_path("import.err")));
	cr_expect_gt(h_count(h_path("import.err"), "skipped"), 0,
		     "the importer did not name what it skipped");
	text = h_read(h_path("points.json"));
	doc = cJSON_Parse(text);
	cr_assert_not_null(doc, "not JSON: %s", text);
	pts = cJSON_GetObjectItemCaseSensitive(doc, "points");
	cr_assert_gt(cJSON_GetArraySize(pts), 5);
	ptext = cJSON_PrintUnformatted(pts);
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"engine\",\"type\":\"can\",\"transport\":\"slcan\","
		 "\"device\":\"/dev/ttyACM0\",\"bitrate\":250000,\"points\":%s}]",
		 ptext);
	it_write_site(DEVICE, 1883, adapters, it_allow_all, "");
	cr_expect_eq(h_sh("%s/guardian check -c %s >%s 2>&1", h_build(), h_path("site.json"),
			  h_path("check.out")),
		     0, "guardian check refused the imported points:\n%s",
		     h_read(h_path("check.out")));
	free(ptext);
	free(text);
	cJSON_Delete(doc);
}

/* 5,000 frames a second: many frames reach guardian in one read, and many samples of one point
 * leave in one batch; nothing overflows (make check runs this under AddressSanitizer). */
Test(can, burst_of_frames_is_batched_and_delivered)
{
	int bport = h_free_port();
	struct line l = { 0 };
	char args[512], adapters[4096];
	cJSON *root;
	const cJSON *a;
	pid_t gd;

	line_plug(&l);
	start_broker(bport);
	snprintf(args, sizeof(args), "--device %s --rate 5000", l.sim);
	cr_assert_gt(start_sim("slcansim", args, h_path("sim.log")), 0);
	can_adapter(adapters, sizeof(adapters), l.gd);
	gd = h_guardian(it_write_site(DEVICE, bport, adapters, it_allow_all, ""),
			h_path("guardian.log"));
	cr_assert_gt(gd, 0);
	a = wait_health("bus", "frames", NULL, 15000, 20000, &root);
	cr_expect_eq(it_json_num(a, "errors.malformed"), 0);
	cJSON_Delete(root);
	cr_expect_eq(kill(gd, 0), 0, "guardian died under the burst");
	/* 100 ms batches: about ten messages a second, not one per frame. */
	cr_expect_lt(h_count(h_path("sub.out"), "/telemetry "), 200,
		     "%zu telemetry messages: frames are not batched",
		     h_count(h_path("sub.out"), "/telemetry "));
	{
		struct h_telemetry t;

		h_telemetry_read(h_path("sub.out"), &t);
		expect_can_values(&t);
		h_telemetry_free(&t);
	}
}
