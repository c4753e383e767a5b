/* service.h: the reference attestation service (PROTOCOL.md): its directory, nonces, device
 * registry, references, certificate issuing and the verify pipeline, usable without MQTT. */
#ifndef SERVICE_H
#define SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <openssl/types.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "../proto/evidence.h"
#include "store.h"

#define SERVICE_SUBSYS	       "service"
#define SERVICE_CONFIG_FILE    "service.json"
#define SERVICE_IDENTITY_DAYS  3653 /* identity certificates: 10 years */
#define SERVICE_CA_DAYS	       7305 /* default for init --days: 20 years */
#define SERVICE_SKEW_S	       60   /* notBefore of issued certificates lies this far back */
#define SERVICE_NONCE_MARGIN_S 60   /* used-nonce markers outlive the ttl by this much */
#define SERVICE_PEM_MAX	       4096
#define SERVICE_SERIAL_LEN     16	   /* of every certificate issued */
#define SERVICE_CRL_FILE       "op-ca.crl" /* the operational CA's CRL, in the dir */
#define SERVICE_CRL_VALID_S    (2 * 86400) /* nextUpdate - now */
#define SERVICE_CRL_REFRESH_S  86400	   /* rewritten when less than this is left */

/* service.json. Strings owned. */
struct service_config {
	char *broker_host;
	int broker_port;
	char *broker_ca_file; /* resolved against the service dir */
	long long lifetime_s; /* of operational certificates */
	int nonce_ttl_s;
	char *broker_pid_file; /* NULL, or resolved against the service dir: told of a new CRL */
	struct store_config store; /* "store": where devices, nonces, references... are kept */
};

/* What `init` writes. */
struct service_init_opts {
	int days;		  /* CA and service certificate validity */
	const char *broker_host;  /* NULL: "localhost" */
	int broker_port;	  /* 0: 8884 */
	const char *broker_ca;	  /* NULL: "broker-ca.crt" in the service dir */
	long long lifetime_s;	  /* 0: 86400 */
	int nonce_ttl_s;	  /* 0: 30 */
	enum store_backend store; /* the "store" of service.json (STORE_FILES: none written) */
	const char *conninfo;	  /* STORE_POSTGRES: its connection string */
};

/* A certificate authority: its certificate and key. */
struct service_ca {
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
	X509 *evp_crt;	   /* the same for OpenSSL (issue_op_cert), made on first use; owned */
	EVP_PKEY *evp_key; /* likewise */
};

/* One recorded reference measurement log. */
struct service_reference {
	char label[64];
	struct meas_log log;
};

/* Where the time of one attestation went (for the benchmark). */
struct service_stats {
	uint64_t decisions, issued;
	uint64_t verify_ns; /* steps 1 to 7 of PROTOCOL.md, all decisions */
	uint64_t issue_ns;  /* signing the operational certificate */
	uint64_t record_ns; /* the decision recorded after step 7 (the nonce marked used with the
			     * certificate or the refusal: store_attest_record, one transaction) */
};

/*
 * A service instance on a directory. Several instances (processes or
 * structs, on one host or several) share nonces through nonce.key and the
 * store. Not thread-safe: one thread uses one instance.
 */
struct service {
	char *dir;
	struct service_config cfg;
	struct store *store; /* opened from cfg.store; owned */
	uint8_t nonce_key[32];
	struct service_ca mfg_ca, op_ca;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	struct service_reference *refs; /* reloaded when the store's reference generation changes */
	size_t nrefs;
	uint64_t refs_gen;
	bool refs_loaded;
	bool once_per_request;	 /* duplicate deliveries of one evidence get no second answer */
	int64_t (*now_ms)(void); /* the clock (gd_now_ms; tests inject theirs) */
	bool crl_stale;		 /* a certificate was revoked since the CRL was written */
	struct service_stats stats;
};

/* The reason codes of PROTOCOL.md, in the order they are checked. */
enum service_reason {
	REASON_OK = 0,
	REASON_MALFORMED,
	REASON_UNKNOWN_DEVICE,
	REASON_BAD_SIGNATURE,
	REASON_BAD_NONCE,
	REASON_STALE_NONCE,
	REASON_REPLAYED_NONCE,
	REASON_REGISTER_MISMATCH,
	REASON_MEASUREMENT_MISMATCH,
	REASON_NO_REFERENCE,
	REASON_BAD_KEY,
};

/* "ok", "malformed", ...: the wire name of a reason. */
const char *service_reason_name(enum service_reason r);

/* ---- the directory and its configuration (config.c, init.c) ---------------------------- */

/*
 * Creates 'dir' (0700) with both CAs, the service's client certificate, the
 * nonce secret, devices/, references/, nonces/ and service.json. Refuses
 * (GD_EINVAL) when a CA already exists there. 0 or a gd_err with 'why'.
 */
int service_init_dir(const char *dir, const struct service_init_opts *opts, char *why, size_t cap);

/* Reads <dir>/service.json; every error goes to 'c'. 0 or GD_ECONFIG. */
int service_config_load(const char *dir, struct service_config *cfg, struct conf *c);
/* Writes 'cfg' as <dir>/service.json (ca_file as given). 0 or GD_EIO/GD_ENOMEM. */
int service_config_write(const char *dir, const struct service_config *cfg);
/* Frees the strings of 'cfg'. No operation is performed if 'cfg' is NULL. */
void service_config_release(struct service_config *cfg);
/* snprintf into 'buf' of "<dir>/<name>"; false if it did not fit. */
bool service_path(char *buf, size_t cap, const char *dir, const char *name);

/* Opens an instance on 'dir': config, store, CAs, nonce secret. 0 or a gd_err with 'why'. */
int service_open(const char *dir, struct service **out, char *why, size_t cap);
/*
 * Opens the store that <dir>/service.json names, without the keys (reference, reports,
 * release status, migrate); 'create' as store_open's. 0 or a gd_err with 'why'.
 */
int service_store_open(const char *dir, bool create, struct store **out, char *why, size_t cap);
/* No operation is performed if 's' is NULL. */
void service_free(struct service *s);

/* ---- certificates (issue.c) ------------------------------------------------------------ */

struct cert_spec {
	const char *cn;
	int64_t not_before_s, not_after_s; /* UTC seconds */
	bool is_ca;
	bool client_auth; /* extendedKeyUsage clientAuth (not for CAs) */
};

/* A fresh EC P-256 key. 0 or GD_ENOMEM/GD_EINVAL. */
int issue_new_key(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg);
/*
 * Signs a certificate for 'subject' as 'spec' says with 'issuer_key'; with
 * 'issuer' NULL it is self-signed (subject == issuer). PEM into 'pem'. Serial:
 * 16 random bytes, positive, also into 'serial' unless it is NULL. 0 or a gd_err.
 */
int issue_cert(mbedtls_pk_context *subject, const struct cert_spec *spec,
	       mbedtls_pk_context *issuer_key, const mbedtls_x509_crt *issuer,
	       mbedtls_ctr_drbg_context *drbg, char *pem, size_t cap,
	       uint8_t serial[SERVICE_SERIAL_LEN]);
/*
 * issue_cert for a certificate that is not a CA's, signed by 'ca' through OpenSSL (opcert.c):
 * the same fields and extensions, an ECDSA signature many times faster than mbedTLS 2.28's.
 * 0 or a gd_err.
 */
int issue_op_cert(mbedtls_pk_context *subject, const struct cert_spec *spec, struct service_ca *ca,
		  mbedtls_ctr_drbg_context *drbg, char *pem, size_t cap,
		  uint8_t serial[SERVICE_SERIAL_LEN]);
/* Loads <dir>/<base>.crt and <base>.key. 0 or a gd_err with 'why'. */
int issue_ca_load(struct service_ca *ca, const char *dir, const char *base, char *why, size_t cap);
void issue_ca_free(struct service_ca *ca);

/* ---- signature checks (ecdsa.c) -------------------------------------------------------- */

/*
 * Whether 'sig' (DER, at most EVIDENCE_SIG_MAX bytes) is an ECDSA signature over the SHA-256
 * 'digest' by 'pk', an EC P-256 public key parsed by mbedTLS. The check is OpenSSL's (libcrypto);
 * false for any other key, a malformed signature or a failure.
 */
bool service_ecdsa_verify(const mbedtls_pk_context *pk, const uint8_t digest[32],
			  const uint8_t *sig, size_t siglen);

/* ---- revocation (revoke.c, crl.c) ------------------------------------------------------ */

/* Why an operational certificate was revoked; the CRL says it as a reasonCode. */
enum revoke_reason {
	REVOKE_SUPERSEDED = 1, /* a newer one was issued to the device: superseded (4) */
	REVOKE_REFUSED,	       /* the device's attestation was refused: privilegeWithdrawn (9) */
};

/* One revoked certificate. */
struct crl_entry {
	uint8_t serial[SERVICE_SERIAL_LEN];
	int64_t revoked_s; /* UTC seconds */
	enum revoke_reason reason;
};

/*
 * Writes to 'path', atomically, the PEM of an X.509 v2 CRL signed by 'issuer'
 * with 'key' (ECDSA SHA-256): thisUpdate SERVICE_SKEW_S before 'now_ms' (a
 * broker whose clock is behind must not see it "not yet valid"), nextUpdate
 * SERVICE_CRL_VALID_S after, the 'n' entries, a CRL number ('now_ms') and the
 * issuer's key identifier. 0 or a gd_err with 'why'.
 */
int crl_write(const char *path, const mbedtls_x509_crt *issuer, mbedtls_pk_context *key,
	      mbedtls_ctr_drbg_context *drbg, const struct crl_entry *entries, size_t n,
	      int64_t now_ms, char *why, size_t cap);

/*
 * Records the certificate 'serial' just issued to 'dev' (certs/<dev>.list)
 * and revokes the device's earlier unexpired ones (superseded: appended to
 * revoked.log; s->crl_stale set). Several instances share these files under
 * an flock. 0 or a gd_err (the certificate must then not be handed out).
 */
int revoke_record_issued(struct service *s, const char *dev,
			 const uint8_t serial[SERVICE_SERIAL_LEN], int64_t not_after_s);
/* Revokes every unexpired certificate of 'dev' for 'reason'. How many, or a negative gd_err. */
int revoke_device(struct service *s, const char *dev, enum revoke_reason reason);
/*
 * Records one attestation decision 'a' in one store transaction (store_attest_record: the nonce
 * marked used, the certificate issued or the device's revoked as refused, what it runs); notes
 * what was revoked (s->crl_stale, the log). 0, STORE_USED with *duplicate (nothing recorded),
 * or a negative gd_err with 'why' (then an issued certificate must not be handed out).
 */
int revoke_record_decision(struct service *s, const struct store_attest *a, bool *duplicate,
			   char *why, size_t cap);
/*
 * Writes <dir>/op-ca.crl from revoked.log (expired certificates dropped, and
 * dropped from the log), clears s->crl_stale and tells the broker
 * (revoke_reload_broker). The number of certificates listed, or a negative gd_err.
 */
int revoke_publish(struct service *s);
/* revoke_publish when op-ca.crl is missing, unreadable or has less than
 * SERVICE_CRL_REFRESH_S left. 1 written, 0 fresh, or a negative gd_err. */
int revoke_refresh(struct service *s);
/*
 * SIGHUP to the broker whose pid is in broker_pid_file (mosquitto then reads
 * its crlfile again, and keeps its clients). A missing or stale pid file, or a
 * pid that is not a mosquitto process, is logged and otherwise ignored.
 * Returns the pid signalled, or 0.
 */
long revoke_reload_broker(struct service *s);

/* ---- the device registry (registry.c) -------------------------------------------------- */

/*
 * Enrolls the device of 'csr_pem': checks its self-signature, its CN (the
 * name) and its key (P-256); signs its identity certificate with the
 * manufacturer CA and registers it as devices/<name>.crt. A name enrolled with
 * another key is refused (GD_EDENIED) unless 'replace'. The name goes to 'name'
 * (64 bytes), the certificate (malloc'd PEM) to *cert_pem. 0 or a gd_err.
 */
int registry_enroll(struct service *s, const char *csr_pem, bool replace, char name[64],
		    char **cert_pem, char *why, size_t cap);
/*
 * registry_enroll with the device's TPM attestation key: 'ak_pem' (NULL: none)
 * must be an EC P-256 public key (PEM) and is registered as devices/<name>.ak.pem;
 * evidence of the device must then be TPM evidence quoted by it. Another key than
 * the enrolled one is refused (GD_EDENIED) unless 'replace'; 'replace' without
 * 'ak_pem' for a device enrolled with one is refused (GD_EDENIED): leaving TPM mode
 * takes removing devices/<name>.ak.pem by hand. 0 or a gd_err.
 */
int registry_enroll_ak(struct service *s, const char *csr_pem, const char *ak_pem, bool replace,
		       char name[64], char **cert_pem, char *why, size_t cap);
/* The enrolled identity certificate of 'name' (malloc'd PEM), or NULL with errno: ENOENT if
 * none, EINVAL for a name that is not one, EIO when the store failed (logged). */
char *registry_lookup(struct store *st, const char *name);
/* The enrolled attestation key of 'name' (malloc'd PEM), or NULL with errno as registry_lookup
 * (ENOENT: not enrolled, or enrolled without one). */
char *registry_lookup_ak(struct store *st, const char *name);

/* ---- nonces (nonce.c) ------------------------------------------------------------------ */

/* A fresh nonce for 'dev' at 'now_ms' (PROTOCOL.md). 0 or a gd_err. */
int nonce_make(struct service *s, const char *dev, int64_t now_ms, uint8_t nonce[NONCE_LEN]);
/*
 * Checks 'nonce' for 'dev' at 'now_ms' and, if good, marks it used (nonces/<hex>,
 * O_CREAT|O_EXCL) with 'tag' (16 bytes naming this delivery) inside. Returns
 * REASON_OK, REASON_BAD_NONCE, _STALE_NONCE or _REPLAYED_NONCE; on a replay,
 * *duplicate tells whether the marker holds the same 'tag' (the same evidence
 * delivered again). A negative gd_err if the marker cannot be written.
 */
int nonce_check(struct service *s, const char *dev, const uint8_t nonce[NONCE_LEN], int64_t now_ms,
		const uint8_t tag[16], bool *duplicate);
/*
 * nonce_check without marking the nonce used: REASON_OK, REASON_BAD_NONCE or _STALE_NONCE, or a
 * negative gd_err. service_verify marks it used with its decision (revoke_record_decision).
 */
int nonce_verify(struct service *s, const char *dev, const uint8_t nonce[NONCE_LEN],
		 int64_t now_ms);
/* When 'nonce' was made (UTC ms), as it says. */
int64_t nonce_time_ms(const uint8_t nonce[NONCE_LEN]);
/* Removes the markers of nonces that are stale by more than the margin. Returns how many. */
int nonce_sweep(struct service *s, int64_t now_ms);

/* ---- reference measurements (reference.c) --------------------------------------------- */

/*
 * Records a reference from 'json' (meas_log_json's output) in the store
 * after checking that it folds into its register; a label recorded already is
 * refused. 'label' NULL: the first 12 hex digits of the register. The label
 * used goes to 'label_out' (64 bytes). 0 or a gd_err with 'why'.
 */
int reference_add(struct store *st, const char *json, size_t len, const char *label,
		  char label_out[64], char *why, size_t cap);
/* Lists "<label> <items> <register>" one a line, sorted by label. 0 or a gd_err. */
int reference_list(struct store *st, FILE *out, char *why, size_t cap);
int reference_remove(struct store *st, const char *label, char *why, size_t cap);
/*
 * Loads every reference of the store, sorted by label (malloc'd array, *n
 * items; ones that do not parse are logged and skipped). 0 or a gd_err.
 */
int reference_load_all(struct store *st, struct service_reference **out, size_t *n);
/*
 * Compares 'log' with the references: REASON_OK if one equals it,
 * REASON_NO_REFERENCE if there are none, else REASON_MEASUREMENT_MISMATCH with
 * a sentence naming the first item that differs from the closest reference.
 */
enum service_reason reference_match(const struct service_reference *refs, size_t nrefs,
				    const struct meas_log *log, char *detail, size_t cap);
/*
 * The log references are compared with (PROTOCOL.md, "TPM evidence"): 'log'
 * with every "policy" item after the first removed and the first's sha256
 * replaced by the last's; a reloaded policy is extended, never reset, so the
 * last policy item is the one enforced. Its register is its own fold. A log
 * with at most one policy item keeps its items as they are.
 */
void reference_effective_log(const struct meas_log *log, struct meas_log *out);

/* ---- the protocol (verify.c) ----------------------------------------------------------- */

/*
 * Answers a hello from 'dev' (the device of the topic): a nonce message
 * (malloc'd JSON) into *nonce_json. 0, GD_EINVAL (not a device name) or GD_ENOMEM.
 */
int service_handle_hello(struct service *s, const char *dev, const char *json, size_t len,
			 char **nonce_json);
/*
 * The checks of PROTOCOL.md, in order, on the evidence envelope 'json' that
 * arrived on the topic of 'dev'; on success issues the operational
 * certificate. The decision goes to 'res' (res->cert_pem malloc'd when ok;
 * attest_result_free frees it). *duplicate (may be NULL) is set when the
 * evidence is one already answered, delivered again. Returns 0 (a decision
 * was made) or a negative gd_err when none could be (out of memory, the nonce
 * marker cannot be written): then nothing should be answered.
 */
int service_verify(struct service *s, const char *dev, const char *json, size_t len,
		   struct attest_result *res, bool *duplicate);
/*
 * service_verify, the decision logged (one line), and the result message
 * (malloc'd JSON) into *result_json. Returns 0, 1 when the evidence was a
 * duplicate delivery and s->once_per_request says not to answer it again
 * (*result_json NULL), or a negative gd_err (nothing to answer).
 */
int service_handle_evidence(struct service *s, const char *dev, const char *json, size_t len,
			    char **result_json);

/* ---- the MQTT side (serve.c) ----------------------------------------------------------- */

struct serve_opts {
	bool once_per_request;
	bool verbose;
};

/*
 * Connects to the broker of service.json and answers hellos and evidence
 * until SIGTERM or SIGINT; reconnects with backoff. 0 on a clean stop, else 1
 * (the reason logged).
 */
int service_serve(const char *dir, const struct serve_opts *opts);

/* ---- update bundles (release.c) -------------------------------------------------------- */

/*
 * guardian-service release keygen|sign|show (argv[0] is "release"): update keys made, bundles
 * signed and shown (proto/bundle.h). Returns the exit status (2 for a bad command line).
 */
int release_main(int argc, char **argv);

/* ---- delivering updates (publish.c) ---------------------------------------------------- */

/*
 * guardian-service release publish -d DIR (BUNDLE | --withdraw) (--device ID... | --all)
 * (argv[0] is "publish"): the bundle published retained, QoS 1, on guardian/<id>/update/bundle
 * through the attestation listener with the service's certificate (an empty retained message
 * with --withdraw); each one the broker acknowledged is recorded in the store afterwards
 * (store_release_put: version, SHA-256, time; a withdrawal keeps the version). Exit status.
 */
int release_publish_main(int argc, char **argv);
/* guardian-service release status -d DIR [--json]: each enrolled device, the bundle version it
 * runs and when it said so (its last accepted evidence), what was last published to it and
 * whether that is pending (published, not withdrawn, not what it runs). Exit status. */
int release_status_main(int argc, char **argv);
/*
 * Records what 'dev' runs, from the swversion of evidence just accepted ("0.1.0+u7": bundle
 * version 7), in the store (store_installed_put) with 'now_ms'. 0 or a gd_err.
 */
int registry_record_installed(struct store *st, const char *dev, const char *swversion,
			      int64_t now_ms);
/* The document registry_record_installed records, into 'buf' ('cap' bytes). 0 or GD_EINVAL. */
int registry_installed_json(const char *dev, const char *swversion, int64_t now_ms, char *buf,
			    size_t cap);

/* ---- moving to a database store (migrate.c) -------------------------------------------------- */

/*
 * Copies what the files store of 'dir' holds into the store 'to' (a database): devices with
 * their attestation keys and what they run, references, the unexpired certificates issued and
 * revoked, and the failure reports. What 'to' holds already the same is left as it is, so a
 * second run copies nothing; one line of how many of each were copied goes to 'out'.
 * 0 or a gd_err with 'why'.
 */
int service_migrate_import(const char *dir, struct store *to, FILE *out, char *why, size_t cap);

#endif
