/* test_modbus_link.c: the Modbus link as a technician reads it in the log: RS-485 settings on a
 * port that has no RS-485 driver (a pseudo-terminal), and TCP errors that name host:port. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE "pump-3"

static void setup(void)
{
	it_pki(DEVICE);
}

TestSuite(modbus_link, .init = setup, .fini = it_teardown, .timeout = 60);

/* plcsim on one end of a pty pair; guardian's modbus-rtu adapter "bus" on the other, with
 * 'keys' added to it. 'broker': a port with mosquitto and a subscriber, or 0 for none. */
static void rtu_rig(const char *keys, int broker)
{
	char sim_end[256], gd_end[256], simargs[512], adapters[1024];

	snprintf(sim_end, sizeof(sim_end), "%s", h_path("tty-sim"));
	snprintf(gd_end, sizeof(gd_end), "%s", h_path("tty-gd"));
	cr_assert_gt(h_pty_pair(sim_end, gd_end), 0, "socat could not make a pty pair");
	snprintf(simargs, sizeof(simargs), "--rtu %s --baud 115200 --unit 1", sim_end);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0, "plcsim did not start");
	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"bus\",\"type\":\"modbus-rtu\",\"device\":\"%s\",\"baud\":115200,"
		 "\"poll_interval_ms\":200,\"timeout_ms\":500,\"backoff_min_ms\":200,"
		 "\"backoff_max_ms\":400%s,\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 gd_end, keys);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, broker ? broker : h_free_port(), adapters,
					      it_allow_all, ""),
				h_path("guardian.log")),
		     0);
}

/* "rs485": true asks the driver for RS-485 mode; a pty has none: the link stays down and the
 * fault says why, and what to do. */
Test(modbus_link, rs485_on_a_port_without_the_ioctl_says_so)
{
	rtu_rig(",\"rs485\":true", 0);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"),
				     "tty-gd: RS-485 mode: the port's driver does not take the "
				     "RS-485 ioctl (TIOCSRS485: Inappropriate ioctl for device)",
				     10000),
		     0, "guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_geq(h_count(h_path("guardian.log"), "\"rs485\": \"auto\""), 1,
		      "no fix named:\n%s", h_read(h_path("guardian.log")));
	cr_expect_eq(h_count(h_path("guardian.log"), "bus: connected"), 0,
		     "the link came up without RS-485 mode:\n%s", h_read(h_path("guardian.log")));
}

/* "auto" goes on without the driver's mode (said once); "rts" switches RTS around each request
 * through libmodbus: values arrive either way. */
Test(modbus_link, rs485_auto_and_rts_read_values)
{
	int bport = h_free_port();

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	rtu_rig(",\"rs485\":\"auto\"", bport);
	it_wait_messages(h_path("sub.out"), 3, 20000);
	cr_expect_eq(h_count(h_path("guardian.log"), "has no RS-485 mode in its driver"), 1,
		     "guardian log:\n%s", h_read(h_path("guardian.log")));
	cr_expect_geq(h_count(h_path("sub.out"), "\"quality\":\"good\""), 3, "%s",
		      h_read(h_path("sub.out")));
}

Test(modbus_link, rts_switching_reads_values)
{
	int bport = h_free_port();

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	rtu_rig(",\"rts\":\"up\",\"rts_delay_us\":200", bport);
	it_wait_messages(h_path("sub.out"), 3, 20000);
	cr_expect_geq(h_count(h_path("sub.out"), "\"quality\":\"good\""), 3, "%s",
		      h_read(h_path("sub.out")));
	cr_expect_eq(h_count(h_path("guardian.log"), "RTS up"), 0, "guardian log:\n%s",
		     h_read(h_path("guardian.log")));
}

/* A PLC that refuses the connection: the log and the fault name host and port. */
Test(modbus_link, tcp_errors_name_host_and_port)
{
	int mport = h_free_port();
	char adapters[512], want[128];

	snprintf(adapters, sizeof(adapters),
		 "[{\"name\":\"press\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		 "\"backoff_min_ms\":200,\"points\":[{\"name\":\"counter\",\"address\":0}]}]",
		 mport);
	cr_assert_gt(h_guardian(it_write_site(DEVICE, h_free_port(), adapters, it_allow_all, ""),
				h_path("guardian.log")),
		     0);
	snprintf(want, sizeof(want), "press: cannot connect to 127.0.0.1:%d: Connection refused",
		 mport);
	cr_expect_eq(h_wait_contains(h_path("guardian.log"), want, 10000), 0, "guardian log:\n%s",
		     h_read(h_path("guardian.log")));
	/* The console's status shows the same fault. */
	cr_expect_eq(h_sh("printf 'adapter press\\r' | '%s/guardian' console -c '%s' >'%s' 2>&1",
			  h_build(), h_path("site.json"), h_path("console.out")),
		     0);
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%d", mport);
	cr_expect_geq(h_count(h_path("console.out"), want), 1, "%s", h_read(h_path("console.out")));
}
