/* compartment.h: adapters in child processes of their own, privilege separation in the style of
 * OpenBSD ntpd: the messages between the gateway and a child, the parent's side, the child. */
#ifndef GUARDIAN_COMPARTMENT_H
#define GUARDIAN_COMPARTMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../adapters/adapter.h"

/*
 * The gateway (the privileged parent: keys, policy, spool, audit log) opens each adapter's link
 * with the transport's own link_take, starts `guardian adapter-child` with a socketpair on fd 3,
 * the link on fd 4 and the config's bytes on fd 5 (as sandbox.adapter_user when there is one),
 * and keeps no device descriptor. The child parses the config, adopts the link, confines
 * itself (profile "adapter": no open, no socket but AF_UNIX and AF_CAN, no exec), polls, and
 * sends what it read; it writes and reads a point only when the parent asks, the parent having
 * checked the policy and max_step. A message is one datagram (SOCK_SEQPACKET) with a fixed
 * header; its length must be exactly what its type and contents say, its sequence number the
 * next one: anything else, an unknown type or a point index out of range, and the channel is
 * closed (the parent kills the child and starts another after a backoff).
 */

#define CM_FD_CHANNEL  3     /* the child's end of the socketpair */
#define CM_FD_LINK     4     /* the child's link */
#define CM_FD_CONFIG   5     /* the config's bytes, as guardian loaded them: a sealed memfd */
#define CM_FD_SPOOL    6     /* the uplink child's spool directory, when it has a user of its own */
#define CM_FD_CREDS    7     /* the uplink child's credentials directory (state_dir/uplink), too */
#define CM_MSG_MAX     65536 /* largest message, in bytes */
#define CM_HDR_LEN     12    /* type (u16), zero (u16), seq (u32), len (u32) */
#define CM_SAMPLE_MIN  22    /* a sample without a value: index, quality, flags, code, ts, kind */
#define CM_SAMPLES_MAX ((CM_MSG_MAX - CM_HDR_LEN - 5) / CM_SAMPLE_MIN)
#define CM_TEXT_MAX    1024 /* longest string value */
#define CM_FAULT_MAX   192  /* longest fault text, as struct adapter_fault holds */
#define CM_JSON_MAX    4096 /* longest transport counters (stats_json) */

/* What a child exits with besides 0 (a STOP) and 1 (anything else). */
#define CM_EXIT_LINK  3 /* its link was lost: the parent reopens it */
#define CM_EXIT_SETUP 4 /* it could not start: config, adopt or sandbox (logged) */

enum cm_type {
	CM_BATCH = 1, /* child to parent: the samples of one poll, or a part with 'more' set */
	CM_STATS,     /* child to parent: the adapter's counters, fault and transport counters */
	CM_ANSWER,    /* child to parent: the answer to a WRITE or a READ */
	CM_WRITE,     /* parent to child: write a value to a point */
	CM_READ,      /* parent to child: read a point fresh from the device */
	CM_STOP,      /* parent to child: exit */
};

/* One message as decoded. Strings point into the caller's text buffer; samples are in the
 * caller's array, their point_id the index into the adapter's points. */
struct cm_msg {
	enum cm_type type;
	uint32_t seq;
	size_t nsamples;	    /* BATCH */
	bool more;		    /* BATCH: more samples of the same poll follow */
	struct adapter_stats stats; /* STATS */
	const char *fault, *json;   /* STATS: "" when none */
	uint32_t answers;	    /* ANSWER: the seq of the request */
	int32_t rc;		    /* ANSWER: 0 or a gd_err */
	uint32_t index;		    /* WRITE, READ: into the adapter's points */
	int64_t deadline_ms;	    /* WRITE, READ: monotonic; not started after it */
	struct value value;	    /* WRITE; ANSWER of a READ */
};

/* The index of the point with id 'id' in 'points', or -1. */
long cm_point_index(const struct point *points, size_t npoints, uint32_t id);

/*
 * Encoders: the message into 'buf' (at most 'cap' bytes); its length, or 0 when it does not fit
 * or a string is too long. cm_encode_batch encodes as many of 'samples' as fit (at least one
 * when 'cap' is CM_MSG_MAX) and says how many it took in *taken; a sample of a point that is not
 * in 'points' is taken and left out.
 */
size_t cm_encode_batch(uint8_t *buf, size_t cap, uint32_t seq, const struct sample *samples,
		       size_t n, const struct point *points, size_t npoints, size_t *taken);
size_t cm_encode_stats(uint8_t *buf, size_t cap, uint32_t seq, const struct adapter_stats *st,
		       const char *fault, const char *json);
size_t cm_encode_answer(uint8_t *buf, size_t cap, uint32_t seq, uint32_t answers, int32_t rc,
			const struct value *v);
size_t cm_encode_write(uint8_t *buf, size_t cap, uint32_t seq, uint32_t index, int64_t deadline_ms,
		       const struct value *v);
size_t cm_encode_read(uint8_t *buf, size_t cap, uint32_t seq, uint32_t index, int64_t deadline_ms);
size_t cm_encode_stop(uint8_t *buf, size_t cap, uint32_t seq);

/*
 * Decodes the datagram 'buf' of 'len' bytes, which must be sequence number 'seq' and a type the
 * receiver takes (from_child: BATCH, STATS, ANSWER; else WRITE, READ, STOP), for an adapter of
 * 'npoints' points. Samples go into 'samples' (room for 'cap', CM_SAMPLES_MAX always suffices),
 * strings into 'text' (CM_MSG_MAX bytes always suffice). 0, or GD_EPROTO with the reason in
 * 'why'.
 */
int cm_decode(const uint8_t *buf, size_t len, uint32_t seq, bool from_child, size_t npoints,
	      struct cm_msg *m, struct sample *samples, size_t cap, char *text, size_t text_cap,
	      char *why, size_t why_cap);

/* The child: `guardian adapter-child FILE INDEX NAME SHA256` (main.c calls it). Its exit code. */
int adapter_child_main(int argc, char **argv);

/*
 * In a child, first: SIGINT, SIGTERM and SIGHUP ignored. A child is guardian's to stop (STOP, its
 * channel closed, SIGKILL; the parent-death signal when guardian dies): a Ctrl-C or a signal to
 * the whole process group reaches guardian, which stops its children in order.
 */
void compartment_child_signals(void);

struct gd_config;
struct conf;

/*
 * A child's config: the bytes at CM_FD_CONFIG (sealed against any change, or refused), parsed
 * with gd_config_load_child as 'file' and 'state_dir' (NULL: the config's); the descriptor is
 * closed. A child under a user of its own could not read the file, and need not: these are the
 * bytes guardian loaded and measured. 0, or GD_ECONFIG with the errors in 'c'.
 */
int compartment_config_load(const char *file, const char *state_dir, struct conf *c,
			    struct gd_config **out);

/*
 * The parent. Before the sandbox: opens this executable at GD_SANDBOX_EXEC_FD for the children,
 * and puts cfg->text, the config's bytes, into a sealed memfd they get on CM_FD_CONFIG. 0, or
 * GD_EIO (logged).
 */
int compartment_prepare(const struct gd_config *cfg);

/* What a child gets besides its channel. */
struct cm_spawn {
	char *const *argv;
	int link;		  /* on CM_FD_LINK, or -1 */
	int spool_dir, creds_dir; /* on CM_FD_SPOOL and CM_FD_CREDS, or -1 */
	bool as_user;		  /* become uid and gid before the execveat (sandbox keep_caps) */
	uid_t uid;
	gid_t gid;
};

/*
 * Starts this executable (kept at GD_SANDBOX_EXEC_FD by compartment_prepare) with sp->argv:
 * clone like fork with a pidfd (the only way the sandboxed parent may signal it), then in the
 * child only system calls: with sp->as_user, CAP_SETUID and CAP_SETGID raised (the parent keeps
 * them permitted), no supplementary group, sp->gid and sp->uid as real, effective and saved ids
 * (checked; the execveat then leaves no capability: a non-root uid, no_new_privs); the
 * parent-death signal (SIGKILL, checked against 'getppid'); its end of a new socketpair on
 * CM_FD_CHANNEL, the config on CM_FD_CONFIG, the descriptors of 'sp' on theirs, no other
 * descriptor; execveat. The calling thread must live as long as the child (PR_SET_PDEATHSIG
 * follows the thread). 0 with the child's pid, its pidfd and the parent's end of the
 * socketpair, or GD_EIO with errno.
 */
int compartment_spawn(const struct cm_spawn *sp, pid_t *pid, int *pidfd, int *sock);

/*
 * SIGKILL to a child (through its pidfd, else its pid). A child under a user of its own may only
 * be killed with CAP_KILL: kept permitted for that (sandbox.adapter_user, uplink_user), raised
 * on this thread for the call only. 0, or -1 with errno.
 */
int compartment_kill(int pidfd, pid_t pid);

struct runner;
/* Sets 'r' up to run its adapter in a child: a->ops becomes a table whose write and read go to
 * the child. 0 or GD_ENOMEM. */
int compartment_attach(struct runner *r);
/* The runner thread of a compartmented adapter: until the gateway stops. */
void compartment_run(struct runner *r);
/* Gives the adapter its own ops back and frees what attach took. No operation if 'r' has none. */
void compartment_detach(struct runner *r);

#endif
