/* preflight.h: private to guardian/: what `guardian run` checks before it starts anything, and
 * `guardian check` prints first: one function for both, so they cannot drift. */
#ifndef GUARDIAN_PREFLIGHT_H
#define GUARDIAN_PREFLIGHT_H

#include "core.h"

enum preflight_level { PREFLIGHT_WARNING, PREFLIGHT_ERROR };

enum preflight_mode {
	PREFLIGHT_CHECK, /* guardian check: changes nothing; what run would make is judged */
	PREFLIGHT_RUN,	 /* guardian run: makes the state directory (0700) when it is missing */
};

/*
 * One finding: its level, the config key it is about ("state_dir",
 * "adapters[1].device", "attestation.cert_file") and one sentence that names
 * the file and what fixes it.
 */
typedef void preflight_report_fn(void *ctx, enum preflight_level level, const char *key,
				 const char *text);

/*
 * Checks what a loaded config needs of this machine, in the order run uses it:
 *   state_dir          exists (run makes it 0700; check, that it can be made),
 *                      is a directory of this user, not open to others (an
 *                      error with attestation, a warning without)
 *   uplink.spool.dir   exists or can be made, and is writable
 *   attestation        identity.key and op.key kept as
 *                      keystore_check_file requires; the identity certificate
 *                      readable
 *   sandbox.uplink_user  the uplink's spool and state_dir/uplink belong to
 *                      that user (run as root makes them so), and the CA,
 *                      certificate and key files it reads are readable by it
 *   audit              audit.key not open to others; check also reads the
 *                      log as audit_open will (run leaves that to audit_open)
 *   uplink.key_file (not open to others), serial devices (there, and
 *                      ours to open), console.pin_hash (set with a serial
 *                      console): warnings; run starts, and retries, without
 *                      them
 * Calls 'report' once per finding. Returns the number of errors: run refuses
 * to start on any, with the same words check prints.
 */
int preflight(const struct gd_config *cfg, enum preflight_mode mode, preflight_report_fn *report,
	      void *ctx);

#endif
