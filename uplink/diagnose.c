/* diagnose.c: why a connection attempt failed: Paho's trace while connecting, and a TCP probe. */
#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../base/base.h"
#include "../proto/mqtt_tls.h"
#include "diagnose.h"

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t trace_once = PTHREAD_ONCE_INIT;
static int attempts;   /* attempts in progress, under trace_lock */
static char seen[256]; /* what the trace told, under trace_lock */

static bool is_ip_literal(const char *host, size_t n)
{
	char tmp[64];
	unsigned char addr[16];

	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, host, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET, tmp, addr) == 1 || inet_pton(AF_INET6, tmp, addr) == 1;
}

static void note(const char *fact)
{
	size_t used;

	pthread_mutex_lock(&trace_lock);
	used = strlen(seen);
	if (attempts > 0 && strstr(seen, fact) == NULL)
		snprintf(seen + used, sizeof(seen) - used, "%s%s", used ? "; " : "", fact);
	pthread_mutex_unlock(&trace_lock);
}

/* Paho's trace lines start with a time stamp; only a few of them matter here. */
static void on_trace(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
	char fact[160];
	const char *p;

	if (mqtt_trace_nodelay(message))
		return;
	if (level >= MQTTASYNC_TRACE_ERROR) {
		log_debug("uplink", "paho: %s", message);
		return;
	}
	p = strstr(message, "X509_check_host for hostname ");
	if (p != NULL) {
		const char *host = p + strlen("X509_check_host for hostname ");
		const char *end = strstr(host, " failed");

		/* For an IP address Paho checks the IP next, which we cannot see. */
		if (end != NULL && !is_ip_literal(host, (size_t)(end - host))) {
			snprintf(fact, sizeof(fact),
				 "the broker's certificate does not match the host name \"%.*s\"",
				 (int)(end - host), host);
			note(fact);
		}
		return;
	}
	p = strstr(message, "SSL alert read:fatal:");
	if (p != NULL) {
		const char *desc = p + strlen("SSL alert read:fatal:");

		snprintf(fact, sizeof(fact), "the broker sent alert \"%s\"%s", desc,
			 strstr(desc, "certificate") || strstr(desc, "CA") ||
					 strstr(desc, "access denied")
				 ? " (it does not accept our client certificate)"
				 : "");
		note(fact);
		return;
	}
	p = strstr(message, "SSL alert write:fatal:");
	if (p != NULL) {
		snprintf(fact, sizeof(fact), "we sent alert \"%s\"",
			 p + strlen("SSL alert write:fatal:"));
		note(fact);
		return;
	}
	/*
	 * "-> CONNECT version 4 clean: 1 (-1)": the MQTT CONNECT could not be
	 * written. With TLS 1.3 the broker checks our certificate after the
	 * handshake, and a refusal often shows only as a closed connection.
	 */
	p = strstr(message, "-> CONNECT ");
	if (p != NULL && strstr(p, "(-1)") != NULL)
		note("the broker closed the connection right after the handshake (it may not "
		     "accept our client certificate)");
}

static void trace_install(void)
{
	MQTTAsync_setTraceCallback(on_trace);
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
}

void diagnose_begin(void)
{
	pthread_once(&trace_once, trace_install);
	pthread_mutex_lock(&trace_lock);
	if (attempts++ == 0)
		seen[0] = '\0';
	pthread_mutex_unlock(&trace_lock);
	/* MINIMUM, not PROTOCOL: it announces the new socket (mqtt_trace_nodelay). */
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_MINIMUM);
}

void diagnose_end(char *out, size_t len)
{
	bool last;

	pthread_mutex_lock(&trace_lock);
	snprintf(out, len, "%s", seen);
	last = attempts > 0 && --attempts == 0;
	pthread_mutex_unlock(&trace_lock);
	if (last)
		MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
}

/* One non-blocking connect with a deadline. Returns 0 or an errno value. */
static int try_connect(const struct addrinfo *ai, int timeout_ms)
{
	struct pollfd pfd;
	socklen_t elen = sizeof(int);
	int fd, err = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		err = errno;
		if (err == EINPROGRESS) {
			pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
			err = poll(&pfd, 1, timeout_ms);
			if (err == 0)
				err = ETIMEDOUT;
			else if (err < 0)
				err = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
				err = errno;
		}
	}
	close(fd);
	return err;
}

int diagnose_tcp(const char *host, int port, int timeout_ms, char *out, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char service[16];
	int rc, err = 0, tried = 0;

	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		snprintf(out, len, "cannot resolve \"%s\": %s", host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (const struct addrinfo *ai = res; ai != NULL && tried < 2; ai = ai->ai_next, tried++) {
		err = try_connect(ai, timeout_ms);
		if (err == 0)
			break;
	}
	freeaddrinfo(res);
	if (err == 0)
		return 0;
	snprintf(out, len, "TCP to %s port %d: %s", host, port, strerror(err));
	return -1;
}
