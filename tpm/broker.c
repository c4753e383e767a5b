/* broker.c: guardian's side of guardian-launch's broker: one typed, fixed-length request and its
 * answer over the inherited SOCK_SEQPACKET socket. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../base/base.h"
#include "broker.h"

#define BROKER_TIMEOUT_MS 10000

static pthread_mutex_t broker_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t broker_seq; /* under broker_lock */

int gd_broker_fd_from_env(void)
{
	const char *text = getenv(GD_BROKER_FD_ENV);
	char *end = NULL;
	int type = 0;
	socklen_t len = sizeof(type);
	long fd;

	if (text == NULL || *text == '\0')
		return -1;
	errno = 0;
	fd = strtol(text, &end, 10);
	if (errno != 0 || *end != '\0' || fd < 0 || fd > INT_MAX)
		return -1;
	/* Only the socket guardian-launch handed over: a stray number is no broker. */
	if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET)
		return -1;
	/* Guardian's own children (shell hooks, tools) do not get it. */
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

/* Answers left over from a request that timed out: dropped, so this one gets its own. */
static void drain(int fd)
{
	char byte;

	while (recv(fd, &byte, sizeof(byte), MSG_DONTWAIT | MSG_TRUNC) > 0)
		;
}

static int call_locked(int fd, const struct gd_broker_req *request, struct gd_broker_resp *resp,
		       char *why, size_t cap)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct iovec iov = { .iov_base = resp, .iov_len = sizeof(*resp) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int64_t deadline = gd_mono_ms() + BROKER_TIMEOUT_MS;
	struct gd_broker_req copy = *request, *req = &copy;
	ssize_t n;
	int ready;

	drain(fd);
	req->seq = ++broker_seq;
	do {
		n = send(fd, req, sizeof(*req), MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*req)) {
		gd_whyf(why, cap, "guardian-launch's broker is gone: cannot send: %s",
			n < 0 ? strerror(errno) : "short send");
		return GD_EIO;
	}
again:
	do {
		int64_t left = deadline - gd_mono_ms();

		ready = poll(&pfd, 1, left > 0 ? (int)left : 0);
	} while (ready < 0 && errno == EINTR);
	if (ready == 0) {
		gd_whyf(why, cap, "no answer from guardian-launch's broker within %d s",
			BROKER_TIMEOUT_MS / 1000);
		return GD_EIO;
	}
	do {
		n = ready < 0 ? -1 : recvmsg(fd, &msg, MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		gd_whyf(why, cap, "guardian-launch's broker is gone: %s",
			n == 0 ? "it closed the connection" : strerror(errno));
		return GD_EIO;
	}
	/* The late answer to a request that timed out, after drain(): not ours, wait on. */
	if (n == (ssize_t)sizeof(*resp) && (msg.msg_flags & MSG_TRUNC) == 0 &&
	    resp->seq != req->seq)
		goto again;
	if (n != (ssize_t)sizeof(*resp) || (msg.msg_flags & MSG_TRUNC) != 0 ||
	    resp->type != req->type) {
		gd_whyf(why, cap,
			"guardian-launch's broker answered %zd bytes of type %u (expected %zu "
			"bytes "
			"of type %u): not the same version as guardian?",
			n, (unsigned)resp->type, sizeof(*resp), (unsigned)req->type);
		return GD_EIO;
	}
	resp->why[sizeof(resp->why) - 1] = '\0';
	resp->pem[sizeof(resp->pem) - 1] = '\0';
	if (resp->attest_len > sizeof(resp->attest) || resp->sig_len > sizeof(resp->sig) ||
	    resp->log.n > MEAS_MAX) {
		gd_whyf(why, cap, "guardian-launch's broker answered lengths out of range");
		return GD_EIO;
	}
	for (size_t i = 0; i < resp->log.n; i++) {
		struct measurement *m = &resp->log.items[i];

		m->type[sizeof(m->type) - 1] = '\0';
		m->name[sizeof(m->name) - 1] = '\0';
	}
	if (resp->status != 0) {
		gd_whyf(why, cap, "%s", resp->why);
		return resp->status < 0 ? resp->status : GD_EIO;
	}
	return 0;
}

int gd_broker_call(int fd, const struct gd_broker_req *req, struct gd_broker_resp *resp, char *why,
		   size_t cap)
{
	int err;

	if (fd < 0) {
		gd_whyf(why, cap, "not started by guardian-launch (no %s)", GD_BROKER_FD_ENV);
		return GD_EIO;
	}
	pthread_mutex_lock(&broker_lock);
	err = call_locked(fd, req, resp, why, cap);
	pthread_mutex_unlock(&broker_lock);
	return err;
}
