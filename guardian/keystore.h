/* keystore.h: the device's root of trust: its ECDSA P-256 identity key, behind an interface a
 * TPM 2.0 backend can implement later. The private key never leaves it and is never logged. */
#ifndef GUARDIAN_KEYSTORE_H
#define GUARDIAN_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keystore;

/* One backend. The file backend keeps the key in <state_dir>/identity.key. */
struct keystore_ops {
	const char *name;
	/* Creates the identity key (create) or opens the existing one. */
	int (*open)(struct keystore *ks, const char *state_dir, bool create, char *why, size_t cap);
	/* ECDSA over a SHA-256 digest; DER signature. */
	int (*sign)(struct keystore *ks, const uint8_t digest[32], uint8_t *sig, size_t cap,
		    size_t *len);
	/* The public key, PEM (SubjectPublicKeyInfo). */
	int (*public_pem)(struct keystore *ks, char *out, size_t cap);
	/* A PKCS#10 request for the key with subject CN=<cn>, PEM. */
	int (*csr_pem)(struct keystore *ks, const char *cn, char *out, size_t cap);
	void (*close)(struct keystore *ks);
};

/*
 * Opens the file keystore in 'state_dir'. With 'create', makes the directory
 * (0700) and a new key (0600) if there is none, and keeps an existing one.
 * Refuses (GD_EDENIED) when the directory is accessible to group or others
 * or the key file is readable by them, or either belongs to another user;
 * 'why' names the file, its mode and the chmod that fixes it. GD_EIO when
 * there is no key and not 'create' ("run guardian provision first").
 */
int keystore_open(const char *state_dir, bool create, struct keystore **out, char *why, size_t cap);
int keystore_sign(struct keystore *ks, const uint8_t digest[32], uint8_t *sig, size_t cap,
		  size_t *len);
int keystore_public_pem(struct keystore *ks, char *out, size_t cap);
int keystore_csr_pem(struct keystore *ks, const char *cn, char *out, size_t cap);
void keystore_close(struct keystore *ks);

/* The permission rule of keystore_open for any secret file (op.key too). 0 or GD_EDENIED. */
int keystore_check_file(const char *path, char *why, size_t cap);
int keystore_check_dir(const char *dir, char *why, size_t cap);

/*
 * A fresh EC P-256 key pair for one attestation round: the private key PEM
 * into priv (written by the caller to op.key, 0600) and the public key PEM.
 */
int keystore_new_operational_key(char *priv_pem, size_t priv_cap, char *pub_pem, size_t pub_cap);

#endif
