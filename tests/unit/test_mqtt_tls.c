/* test_mqtt_tls.c: Nagle off on the socket Paho's trace announces (proto/mqtt_tls.h), and nothing
 * done for any other trace line. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/mqtt_tls.h"

static int nodelay(int fd)
{
	int on = -1;
	socklen_t len = sizeof(on);

	cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
	return on;
}

Test(mqtt_tls, the_announced_socket_gets_tcp_nodelay)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char line[128];

	cr_assert_geq(fd, 0);
	cr_assert_eq(nodelay(fd), 0, "Nagle is on by default");
	/* As Paho 1.3.12's Socket_new traces it, between socket() and connect(). */
	snprintf(line, sizeof(line), "New socket %d for localhost, port 8883", fd);
	cr_expect(mqtt_trace_nodelay(line));
	cr_expect_eq(nodelay(fd), 1);
	close(fd);
}

Test(mqtt_tls, other_trace_lines_change_nothing)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char line[128];

	cr_assert_geq(fd, 0);
	snprintf(line, sizeof(line), "Connecting to serverURI localhost:8883 (socket %d)", fd);
	cr_expect_not(mqtt_trace_nodelay(line));
	cr_expect_not(mqtt_trace_nodelay("New socket for localhost"));
	snprintf(line, sizeof(line), "New socket %dfor localhost", fd);
	cr_expect_not(mqtt_trace_nodelay(line));
	cr_expect_not(mqtt_trace_nodelay("New socket -3 for localhost, port 1"));
	cr_expect_eq(nodelay(fd), 0);
	close(fd);
}
