/* uplink_remote.h: the uplink in a child process of its own (sandbox.compartments): guardian's
 * side (uplink_remote.c) and the child's (uplink_child.c). */
#ifndef GUARDIAN_UPLINK_REMOTE_H
#define GUARDIAN_UPLINK_REMOTE_H

#include "../uplink/uplink.h"
#include "core.h"

/*
 * The parent keeps the identity key, the measurements, the policy and every decision; the child
 * (`guardian uplink-child FILE STATE_DIR SHA256`, exec'd from this executable with a socketpair on
 * fd 3 and PR_SET_PDEATHSIG) holds Paho, OpenSSL, the spool and the MQTT connection, under the
 * "uplink" profile and a Landlock rule set that lets it open its spool, its certificates and the
 * C library's files only. The attestation rounds stay in the parent: their TLS connection is
 * made with the identity key, which the child never sees; a kept certificate is handed to the
 * child with its operational key (uplink_use_credentials).
 *
 * Starts the child and waits for its first word (the spool's last sequence number, for
 * uplink_last_seq). Returns an uplink whose functions go to the child, or NULL (logged). A child
 * that ends, or says anything out of the rules (uplink_wire.h), is killed and started again with
 * backoff; telemetry it had not yet taken is kept (up to queue_max_bytes, the oldest dropped and
 * counted beyond) and given to the next one.
 */
struct uplink *uplink_remote_new(const struct gd_config *cfg);

/*
 * Before the sandbox, with sandbox.uplink_user: the child's directories (its spool, and
 * state_dir/uplink for the operational credentials) made and given to that user when this
 * process is root, else required to belong to it already; kept open for the child, which gets
 * them as descriptors (it cannot walk the state directory, 0700, to them). 0 (nothing to do
 * without uplink_user), or GD_EDENIED with 'why' naming the directory and the chown that fixes
 * it.
 */
int uplink_remote_prepare(const struct gd_config *cfg, char *why, size_t cap);

/* The child process's pid (0 while there is none), for tests and the console. */
int uplink_remote_pid(struct uplink *u);

/* `guardian uplink-child FILE STATE_DIR SHA256` (main.c calls it): the child. Its exit code. */
int uplink_child_main(int argc, char **argv);

#endif
