/* broker.h: guardian-launch's broker protocol: the only way guardian reaches the TPM. Typed,
 * fixed-length messages over a SOCK_SEQPACKET socketpair; one answer per request. */
#ifndef GD_TPM_BROKER_H
#define GD_TPM_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "../proto/meas_log.h"
#include "tpm.h"

#define GD_BROKER_FD_ENV "GUARDIAN_TPM_BROKER_FD"

enum gd_broker_type {
	GD_BROKER_QUOTE = 1,
	GD_BROKER_EXTEND = 2,
	GD_BROKER_LOG = 3,
	GD_BROKER_PUBKEY = 4,
};

/* Requests: exactly sizeof(struct gd_broker_req) bytes. */
struct gd_broker_req {
	uint32_t type;
	uint32_t seq;		  /* set by gd_broker_call; the answer carries it back */
	uint8_t qualifying[32];	  /* QUOTE */
	char kind[8];		  /* EXTEND: "policy" */
	char name[MEAS_NAME_MAX]; /* EXTEND */
	uint8_t sha256[32];	  /* EXTEND */
};

/* Answers: exactly sizeof(struct gd_broker_resp) bytes. */
struct gd_broker_resp {
	uint32_t type;	/* the request's */
	uint32_t seq;	/* the request's: an answer to an earlier request is not this one's */
	int32_t status; /* 0 or a negative gd_err */
	char why[256];
	uint32_t attest_len, sig_len;
	uint8_t attest[GD_TPM_ATTEST_MAX];
	uint8_t sig[GD_TPM_SIG_MAX];
	char pem[GD_TPM_PEM_MAX];
	struct meas_log log; /* LOG */
};

/* guardian's side. The fd from GD_BROKER_FD_ENV if it is a SOCK_SEQPACKET socket (then made
 * close-on-exec: guardian's own children do not get it), or -1 (not launched). */
int gd_broker_fd_from_env(void);
/* One request, one answer (blocking, 10 s); 'resp' is filled. 0, the broker's status (with its
 * reason in 'why'), or GD_EIO (the broker is gone, silent for 10 s, or answered out of protocol)
 * with 'why'. Thread-safe. */
int gd_broker_call(int fd, const struct gd_broker_req *req, struct gd_broker_resp *resp, char *why,
		   size_t cap);

#endif
