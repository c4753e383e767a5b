/* core.h: private to guardian/: the loaded site config and the running gateway. */
#ifndef GUARDIAN_CORE_H
#define GUARDIAN_CORE_H

#include "../adapters/adapter.h"
#include "../base/serial.h"
#include "../policy/policy.h"
#include "../uplink/uplink.h"
#include "../base/base.h"
#include "../base/conf.h"
#include "../proto/meas_log.h"

/* The field console (see guardian/console.h). */
struct gd_console {
	struct serial_settings
		port;	/* port.device NULL: no serial console, only the local socket */
	char *pin_hash; /* NULL: privileged commands are impossible */
	int idle_timeout_s;
	int lockout_after;
	int lockout_base_s;
};

/* Attestation (service/PROTOCOL.md): when enabled, telemetry waits for an operational
 * certificate, and uplink.cert_file/key_file are the state directory's op.crt/op.key. */
struct gd_attestation {
	bool enabled;
	char *host; /* the broker's attestation listener */
	int port;
	char *ca_file;	 /* verifies that listener's server certificate (resolved) */
	char *cert_file; /* the identity certificate; default <state_dir>/identity.crt */
	int timeout_ms;	 /* for the nonce and for the result */
	int retry_min_ms, retry_max_ms;
	/* attestation.tpm: the attestation key is in a TPM 2.0 and guardian-launch measures the
	 * launch into one of its PCRs (tpm/broker.h). */
	bool tpm;
	char *tpm_tcti; /* "device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=N" */
	int tpm_pcr;	/* 16 or 23: resettable, so each launch starts the log afresh */
};

/* Signed updates (guardian/update.h): the keys trusted to sign bundles, how many must sign, this
 * device's class, and how long a new version has to prove itself. */
struct gd_update {
	bool enabled;
	char **keys; /* the update root public keys (PEM files), resolved */
	size_t nkeys;
	int threshold;
	char *device_class;
	int trial_attempts; /* starts a new version gets before it is rolled back */
	int gate_timeout_s; /* for each start to pass the health gate */
};

/* The sandbox `guardian run` enters once the config is loaded (base/sandbox.h, profile
 * "gateway"): on unless "enabled": false; 'user' NULL stays the user started as. With it,
 * 'compartments' (on unless "compartments": false) runs each adapter in a child process of its
 * own (compartment.h), and the uplink too (uplink_remote.h), as adapter_user and uplink_user
 * when given (guardian then keeps CAP_SETUID and CAP_SETGID permitted, main.c). */
struct gd_sandbox_config {
	bool enabled;
	bool compartments;
	char *user;
	/* The users the adapters' children and the uplink's child run as (NULL: guardian's own),
	 * looked up at load: two users of their own, neither guardian's. */
	char *adapter_user, *uplink_user;
	uid_t adapter_uid, uplink_uid;
	gid_t adapter_gid, uplink_gid;
};

/*
 * A file as guardian took it (service/PROTOCOL.md, "Evidence"): its real path and the SHA-256 of
 * the bytes it parsed (for the executable and CA files: of the file when measured). Evidence is
 * built from these, never by reading the files again.
 */
struct gd_measured {
	char name[MEAS_NAME_MAX]; /* the real path; "": not named, nothing measured */
	uint8_t sha256[32];
	int error; /* errno when it could not be measured; 'name' is then the path as named */
};

/* A site config, completely validated. Owns everything it points to. */
struct gd_config {
	char *file;
	char *text; /* the bytes parsed (and measured): what the children parse in turn */
	char *dir;  /* relative paths in the config are relative to this */
	char *device_id;
	char *state_dir;
	char *policy_file; /* resolved */
	int log_level;	   /* enum log_level */
	struct uplink_config uplink;
	struct gd_console console;
	struct gd_attestation attest;
	struct gd_update update;
	struct gd_sandbox_config sandbox;
	struct adapter **adapters;
	size_t nadapters;
	const struct point **points; /* the point table: points[id]; borrowed from adapters */
	size_t npoints;
	struct policy *policy;
	/* Measured at load (measured_exe once at start, measure_exe): what decides behaviour. */
	struct gd_measured measured_exe;
	struct gd_measured measured_config;
	struct gd_measured measured_policy;   /* of 'policy'; a reload swaps both together */
	struct gd_measured measured_files[2]; /* uplink.ca_file, attestation.ca_file */
};

/*
 * Loads and validates 'file' and the policy it names. On any error, every
 * error is in 'c', *out is NULL and the return is GD_ECONFIG; nothing has been
 * opened or started.
 */
int gd_config_load(const char *file, struct conf *c, struct gd_config **out);
/* The same with 'state_dir' (unless NULL) instead of the config's state_dir, as given. */
int gd_config_load_at(const char *file, const char *state_dir, struct conf *c,
		      struct gd_config **out);
/*
 * For a child of compartments: the config from 'text' ('len' bytes), the bytes the parent loaded
 * from 'file' (which names it in errors and is where relative paths start), with 'state_dir' as
 * gd_config_load_at. Reads no file: not the policy (cfg->policy stays NULL), not the CA files
 * (not measured; measured_config is the SHA-256 of 'text'), and looks up no user of "sandbox".
 */
int gd_config_load_child(const char *file, const char *text, size_t len, const char *state_dir,
			 struct conf *c, struct gd_config **out);
/* Frees 'cfg'. No operation is performed if 'cfg' is NULL. */
void gd_config_free(struct gd_config *cfg);
/*
 * Loads cfg->policy_file again against cfg's points, adapters and broker (for
 * a reload), and measures the bytes it parsed into 'measured'. Errors go to 'c'
 * (with the policy file's name); NULL if any.
 */
struct policy *gd_policy_load(const struct gd_config *cfg, struct conf *c,
			      struct gd_measured *measured);

/* Where the point with this name, or the alias in 'names' (may be NULL), is; -1 if none. A
 * caller with the gateway's aliases holds its policy_lock: a reload frees them. */
long points_find(const struct gd_config *cfg, const char *const *names, const char *name);
/* The adapter that holds point 'id' (its index in *index), or NULL. */
struct adapter *points_adapter(const struct gd_config *cfg, uint32_t id, size_t *index);
/* The names every point leaves under with policy 'p' (cfg->npoints of them). NULL on ENOMEM. */
const char **points_names_new(const struct gd_config *cfg, const struct policy *p);

struct gateway;

/* Starts the uplink and one thread per adapter. NULL on failure (logged). */
struct gateway *gateway_start(struct gd_config *cfg);
/* Publishes the health document now. */
void gateway_publish_health(struct gateway *gw);
/* Stops the adapters, drains the uplink for up to 'drain_ms', frees 'gw'. */
void gateway_stop(struct gateway *gw, int drain_ms);
/* What `guardian run` exits with once 'gw' has stopped: 0, or UPDATE_EXIT_RESTART when a bundle
 * delivered over MQTT was installed (update.h). */
int gateway_exit_status(struct gateway *gw);

/*
 * Loads the policy file again and, only if all of it is valid, puts it in
 * force for every following decision; otherwise the old one stays and the
 * errors are logged. With attestation the new policy waits, pending, until the
 * service accepts a round that measured it (enforce.c). 0, GD_ECONFIG or
 * GD_ENOMEM.
 */
int gateway_reload_policy(struct gateway *gw);

/* Writes the health JSON into 'buf'. Returns its length (truncated to cap - 1). */
size_t gateway_health_json(struct gateway *gw, char *buf, size_t cap);

#endif
