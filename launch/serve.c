/* serve.c: the broker's answers: QUOTE, EXTEND (a policy only), LOG and PUBKEY, each request of
 * exactly one length; anything else closes the connection. Nothing else of the TPM is offered. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../base/base.h"
#include "launch.h"

/* Logs why 'fd' is dropped and closes it; -1. */
static int refuse(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(int fd, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("broker", "%s; closing the connection", why);
	close(fd);
	return -1;
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* EXTEND: only a policy, named, appended to the log and extended into the PCR together. */
static int extend(struct launch_broker *b, char *why, size_t cap)
{
	const struct gd_broker_req *req = &b->req;
	int err;

	if (!terminated(req->kind, sizeof(req->kind)) || strcmp(req->kind, "policy") != 0) {
		gd_whyf(why, cap, "EXTEND: only a \"policy\" item may be extended, not \"%.*s\"",
			(int)sizeof(req->kind), req->kind);
		return GD_EDENIED;
	}
	if (!terminated(req->name, sizeof(req->name)) || req->name[0] == '\0') {
		gd_whyf(why, cap, "EXTEND: the name must be 1 to %d bytes, NUL-terminated",
			MEAS_NAME_MAX - 1);
		return GD_EINVAL;
	}
	if (b->log.n >= MEAS_MAX) {
		gd_whyf(why, cap, "EXTEND: the event log is full (%d items)", MEAS_MAX);
		return GD_EFULL;
	}
	err = gd_tpm_pcr_extend(b->tpm, b->pcr, req->sha256, why, cap);
	if (err != 0)
		return err;
	meas_add(&b->log, "policy", req->name, req->sha256);
	log_info("broker", "extended PCR %d with policy %s (item %zu)", b->pcr, req->name,
		 b->log.n);
	return 0;
}

int launch_broker_answer(struct launch_broker *b, int fd)
{
	struct gd_broker_resp *resp = &b->resp;
	struct iovec iov = { .iov_base = &b->req, .iov_len = sizeof(b->req) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t attest_len = 0, sig_len = 0;
	ssize_t n;

	memset(&b->req, 0, sizeof(b->req));
	do {
		n = recvmsg(fd, &msg, MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		close(fd);
		return -1;
	}
	if (n < 0)
		return refuse(fd, "cannot read a request: %s", strerror(errno));
	if (n != (ssize_t)sizeof(b->req) || (msg.msg_flags & MSG_TRUNC) != 0)
		return refuse(fd, "refused a request of %zd bytes (expected %zu)", n,
			      sizeof(b->req));
	memset(resp, 0, sizeof(*resp));
	resp->type = b->req.type;
	resp->seq = b->req.seq;
	switch (b->req.type) {
	case GD_BROKER_QUOTE:
		resp->status =
			gd_tpm_quote(b->tpm, b->pcr, b->req.qualifying, resp->attest, &attest_len,
				     resp->sig, &sig_len, resp->why, sizeof(resp->why));
		resp->attest_len = (uint32_t)attest_len;
		resp->sig_len = (uint32_t)sig_len;
		break;
	case GD_BROKER_EXTEND:
		resp->status = extend(b, resp->why, sizeof(resp->why));
		break;
	case GD_BROKER_LOG:
		resp->log = b->log;
		break;
	case GD_BROKER_PUBKEY:
		resp->status = gd_tpm_ak_public_pem(b->tpm, resp->pem, sizeof(resp->pem));
		if (resp->status != 0)
			gd_whyf(resp->why, sizeof(resp->why), "no attestation key loaded");
		break;
	default:
		return refuse(fd, "refused a request of unknown type %u", (unsigned)b->req.type);
	}
	if (resp->status != 0)
		log_warnx("broker", "request %u refused: %s", (unsigned)resp->type, resp->why);
	do {
		n = send(fd, resp, sizeof(*resp), MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*resp))
		return refuse(fd, "cannot send an answer: %s",
			      n < 0 ? strerror(errno) : "short send");
	return 0;
}
