/* bundle.h: signed update bundles (README "Updates"): what guardian-service signs and guardian
 * checks before anything is unpacked into place. Device and service both speak it. */
#ifndef PROTO_BUNDLE_H
#define PROTO_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A bundle is one file:
 *
 *   guardian-bundle 1\n
 *   manifest <n>\n          <n bytes: the manifest JSON, exactly as signed>
 *   signatures <n>\n        <n bytes: [{"keyid":"<16 hex>","sig":"<base64url DER ECDSA>"},...]>
 *   file <name> <n>\n       <n bytes>          (once per file, in the manifest's order)
 *
 * The manifest:
 *
 *   {"type":"guardian-update","version":7,"device_class":"press-line","created":<ms>,
 *    "expires":<ms UTC>,"files":[{"name":"guardian","sha256":"<64 hex>","length":123456},
 *    {"name":"site.json",...},{"name":"policy.json",...}]}
 *
 * Each signature is ECDSA P-256 over SHA-256 of the manifest bytes, by an update key (never the
 * identity or a CA key); keyid is the first 8 bytes, in hex, of SHA-256 of the key's DER
 * SubjectPublicKeyInfo. File names are plain names: [A-Za-z0-9._-], 1 to 63 characters, not "."
 * or "..", no two alike; "guardian" is the program, the others go beside it in the slot.
 */
#define BUNDLE_MAGIC	     "guardian-bundle 1"
#define BUNDLE_MAX_MANIFEST  65536
#define BUNDLE_MAX_SIGS	     8
#define BUNDLE_MAX_SIGS_TEXT 4096 /* the signatures section, in bytes */
#define BUNDLE_MAX_KEYS	     16	  /* update keys a device trusts */
#define BUNDLE_MAX_FILES     32
#define BUNDLE_MAX_FILE	     (256u << 20) /* 256 MiB: a longer stated length is refused */
#define BUNDLE_KEYID_HEX     16

/* Why a bundle was refused: the TUF attack class it falls in. */
enum bundle_refusal {
	BUNDLE_OK = 0,
	BUNDLE_MALFORMED,     /* not a bundle, or a field out of its bounds */
	BUNDLE_BAD_SIGNATURE, /* missing, unknown key, or does not verify; fewer than k good */
	BUNDLE_WRONG_CLASS,   /* device_class is not this device's */
	BUNDLE_EXPIRED,	      /* expires is past (freeze attack) */
	BUNDLE_ROLLBACK,      /* version not above the floor */
	BUNDLE_ENDLESS,	      /* a file longer than the manifest says (endless data) */
	BUNDLE_HASH_MISMATCH, /* a file's SHA-256 differs (arbitrary software, mix-and-match) */
	BUNDLE_IO,	      /* could not read the bundle or write the staging directory */
};
/* A short name for each ("bad_signature", ...), as reports and logs say it. */
extern const char *const bundle_refusal_names[];

struct bundle_file {
	char name[64];
	uint8_t sha256[32];
	uint64_t length;
};

struct bundle_manifest {
	uint64_t version;
	char device_class[64];
	int64_t created_ms, expires_ms;
	size_t nfiles;
	struct bundle_file files[BUNDLE_MAX_FILES];
};

/* What the device trusts: the update root public keys (PEM) and how many must sign. A trust
 * that cannot be met (no keys, more than BUNDLE_MAX_KEYS, a key that is not a P-256 public key,
 * the same key twice, a threshold of 0 or above nkeys) refuses every bundle: bad_signature. */
struct bundle_trust {
	const char *const *key_pems;
	size_t nkeys;
	size_t threshold; /* k of n, at least 1 */
	const char *device_class;
	uint64_t floor; /* the version must be above this */
	int64_t now_ms; /* UTC */
};

/*
 * Checks the bundle file at 'path' and, only if every check passes, writes its files into the
 * directory 'stage_dir' (which must exist and be empty; files made 0600, "guardian" 0700, each
 * fsynced). Order: header and sizes; signatures (k of n) over the manifest bytes; then the
 * manifest: class, expiry, floor; then each file, streamed, counted against its stated length
 * (a longer one is refused before it is read to its end) and hashed. On any refusal nothing is
 * left in 'stage_dir'. Returns the refusal (BUNDLE_OK on success) with a sentence in 'why';
 * the manifest goes to 'out' when it was read (zeroed before).
 *
 * In detail. Malformed: a header line that is not exactly as above (a length with a sign or a
 * leading zero, over its bound, a line over 128 bytes or with a NUL), a section cut short, a
 * signatures section that is not 0 to BUNDLE_MAX_SIGS {"keyid","sig"} objects, a signed
 * manifest out of form (bundle_manifest_parse), bytes after the last file. Bad signature: none;
 * a signature by a trusted key that does not verify (refused outright: a signer never makes
 * one); fewer than 'threshold' distinct trusted keys verified (signatures by unknown keys are
 * passed over, a key that signs twice counts once). Endless data: a file section longer than
 * the manifest's length, refused at its header line. Hash mismatch: a file section shorter than
 * the manifest's length, another name than the manifest's next file (another order, another
 * file), a file section after the manifest's last, a SHA-256 that differs. A bundle that ends
 * before a file is malformed (truncated). Io: the bundle unreadable; 'stage_dir' missing, not
 * empty (left as it is) or not writable.
 */
enum bundle_refusal bundle_verify_extract(const char *path, const struct bundle_trust *trust,
					  const char *stage_dir, struct bundle_manifest *out,
					  char *why, size_t cap);

/*
 * The signer's side. Writes a bundle to 'out_path' for 'files' (paths; the name in the bundle is
 * each path's last component) with 'version', 'device_class', 'expires_ms', signed by every key
 * in 'key_pems' (PEM private keys, P-256; the same key twice is refused, as it counts once).
 * 'created' is now; 'expires_ms' must be later. Each file is hashed, then copied and hashed
 * again: one that changes meanwhile fails. The bundle is written beside 'out_path' and renamed
 * over it once whole and synced (mode 0644). 0, or a gd_err with a sentence in 'why'.
 */
int bundle_create(const char *out_path, uint64_t version, const char *device_class,
		  int64_t expires_ms, const char *const *files, size_t nfiles,
		  const char *const *key_pems, size_t nkeys, char *why, size_t cap);

/* The keyid of a PEM public or private key into 'out' (BUNDLE_KEYID_HEX + 1). 0 or GD_EINVAL. */
int bundle_keyid(const char *pem, char out[BUNDLE_KEYID_HEX + 1]);

/*
 * Reads 'len' bytes of manifest JSON into 'm', strictly: the members above and no others, each
 * once; type "guardian-update"; version 1 or more; created <= expires; 1 to BUNDLE_MAX_FILES
 * files with plain, distinct names, 64 lower-case hex digits and a length up to BUNDLE_MAX_FILE.
 * BUNDLE_OK or BUNDLE_MALFORMED with 'why'. Believe what it says only once its signatures
 * verified (bundle_verify_extract does both, in that order).
 */
enum bundle_refusal bundle_manifest_parse(const char *json, size_t len, struct bundle_manifest *m,
					  char *why, size_t cap);

/* What `guardian-service release show` prints: a bundle read for its form only. */
struct bundle_info {
	char *manifest; /* the manifest bytes as signed, NUL-terminated (malloc'd) */
	size_t manifest_len;
	struct bundle_manifest m;
	size_t nsigs;
	char keyids[BUNDLE_MAX_SIGS][BUNDLE_KEYID_HEX + 1];
	size_t nsections; /* the file sections found, name and length each (no sha256) */
	struct bundle_file sections[BUNDLE_MAX_FILES];
};

/*
 * Reads the bundle at 'path' as bundle_verify_extract does but checks no signature and no file
 * hash, and writes nothing: nothing in 'info' is to be believed. BUNDLE_OK, or BUNDLE_MALFORMED
 * or BUNDLE_IO with 'why' (info->manifest set when the manifest section was read).
 */
enum bundle_refusal bundle_inspect(const char *path, struct bundle_info *info, char *why,
				   size_t cap);
/* Frees what bundle_inspect allocated. No operation is performed if 'info' is NULL. */
void bundle_info_free(struct bundle_info *info);

#endif
