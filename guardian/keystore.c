/* keystore.c: the identity key behind struct keystore_ops; today one backend, a PEM file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_csr.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "../proto/evidence.h"
#include "keystore.h"

#define KEY_FILE    "identity.key"
#define KEY_PEM_MAX 1024 /* an EC P-256 private key is about 230 bytes of PEM */

/* The context: which backend, and that backend's own state. */
struct keystore {
	const struct keystore_ops *ops;
	void *backend_data;
};

/* ---- permissions -------------------------------------------------------------------------- */

/* Who besides the owner may reach a file of mode 'mode': for the sentence in 'why'. */
static const char *others_of(mode_t mode)
{
	return (mode & 007) ? "others" : "its group";
}

/* The common part of both rules: right type, our own, nothing for group or others. */
static int check_path(const char *path, bool dir, char *why, size_t cap)
{
	struct stat st;
	unsigned mode;

	if (stat(path, &st) != 0) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	mode = (unsigned)(st.st_mode & 07777);
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
		gd_whyf(why, cap, "%s is not a %s", path, dir ? "directory" : "regular file");
		return GD_EDENIED;
	}
	if (st.st_uid != geteuid()) {
		gd_whyf(why, cap,
			"%s belongs to uid %u, not to uid %u that guardian runs as; chown %u %s",
			path, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
		return GD_EDENIED;
	}
	if ((mode & 077) == 0)
		return 0;
	if (dir)
		gd_whyf(why, cap, "%s is accessible to %s (mode %04o); chmod 700 %s", path,
			others_of(mode), mode, path);
	else
		gd_whyf(why, cap, "%s is %s by %s (mode %04o); chmod 600 %s", path,
			(mode & 044) ? "readable" : "accessible", others_of(mode), mode, path);
	return GD_EDENIED;
}

int keystore_check_file(const char *path, char *why, size_t cap)
{
	return check_path(path, false, why, cap);
}

int keystore_check_dir(const char *dir, char *why, size_t cap)
{
	return check_path(dir, true, why, cap);
}

/* ---- keys --------------------------------------------------------------------------------- */

/* A random generator seeded from the system; 'label' personalises it. */
static int rng_seed(mbedtls_ctr_drbg_context *drbg, mbedtls_entropy_context *entropy,
		    const char *label)
{
	mbedtls_entropy_init(entropy);
	mbedtls_ctr_drbg_init(drbg);
	if (mbedtls_ctr_drbg_seed(drbg, mbedtls_entropy_func, entropy, (const uint8_t *)label,
				  strlen(label)) != 0)
		return GD_EIO;
	return 0;
}

static void rng_free(mbedtls_ctr_drbg_context *drbg, mbedtls_entropy_context *entropy)
{
	mbedtls_ctr_drbg_free(drbg);
	mbedtls_entropy_free(entropy);
}

/* A new P-256 key into 'pk' (initialised by the caller). */
static int key_generate(mbedtls_pk_context *pk, mbedtls_ctr_drbg_context *drbg)
{
	if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
	    mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
				mbedtls_ctr_drbg_random, drbg) != 0)
		return GD_EIO;
	return 0;
}

int keystore_new_operational_key(char *priv_pem, size_t priv_cap, char *pub_pem, size_t pub_cap)
{
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context pk;
	int err;

	mbedtls_pk_init(&pk);
	err = rng_seed(&drbg, &entropy, "guardian op key");
	if (err == 0)
		err = key_generate(&pk, &drbg);
	if (err == 0 && (mbedtls_pk_write_key_pem(&pk, (uint8_t *)priv_pem, priv_cap) != 0 ||
			 mbedtls_pk_write_pubkey_pem(&pk, (uint8_t *)pub_pem, pub_cap) != 0))
		err = GD_EFULL;
	/* Leave no half-written private key in the caller's buffer. */
	if (err != 0 && priv_cap > 0)
		mbedtls_platform_zeroize(priv_pem, priv_cap);
	mbedtls_pk_free(&pk);
	rng_free(&drbg, &entropy);
	return err;
}

/* ---- the file backend --------------------------------------------------------------------- */

struct file_key {
	mbedtls_pk_context pk;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg; /* for ECDSA and the CSR; one caller at a time */
};

static struct file_key *file_key(struct keystore *ks)
{
	return ks->backend_data;
}

/* Reads and parses an existing key file, after checking its permissions. */
static int file_load(struct file_key *fk, const char *path, char *why, size_t cap)
{
	char pem[KEY_PEM_MAX + 1];
	ssize_t n;
	int fd, err;

	err = keystore_check_file(path, why, cap);
	if (err != 0)
		return err;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	n = read(fd, pem, sizeof(pem) - 1);
	close(fd);
	if (n < 0) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		return GD_EIO;
	}
	pem[n] = '\0';
	/* PEM input is parsed with its terminating NUL counted. */
	err = mbedtls_pk_parse_key(&fk->pk, (uint8_t *)pem, (size_t)n + 1, NULL, 0);
	if (err != 0 || !evidence_key_is_p256(&fk->pk)) {
		gd_whyf(why, cap, "%s: not an EC P-256 private key in PEM", path);
		err = GD_EINVAL;
	}
	mbedtls_platform_zeroize(pem, sizeof(pem));
	return err;
}

/* Makes a key and stores it at 'path' unless one appeared meanwhile; then loads what is there. */
static int file_create(struct file_key *fk, const char *path, char *why, size_t cap)
{
	uint8_t pem[KEY_PEM_MAX];
	int err;

	err = key_generate(&fk->pk, &fk->drbg);
	if (err == 0 && mbedtls_pk_write_key_pem(&fk->pk, pem, sizeof(pem)) != 0)
		err = GD_EIO;
	if (err != 0) {
		gd_whyf(why, cap, "%s: cannot generate an EC P-256 key", path);
		goto out;
	}
	err = gd_create_file(path, pem, strlen((char *)pem), 0600);
	if (err != 0 && errno != EEXIST) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* Read back what is on disk: ours, or the one another process made first. */
	mbedtls_pk_free(&fk->pk);
	mbedtls_pk_init(&fk->pk);
	err = file_load(fk, path, why, cap);
out:
	mbedtls_platform_zeroize(pem, sizeof(pem));
	return err;
}

/* The state directory, made 0700 when missing and allowed; then checked. */
static int file_dir(const char *dir, bool create, char *why, size_t cap)
{
	if (create && mkdir(dir, 0700) == 0) {
		/* mkdir's mode passes through the umask; say it again. */
		if (chmod(dir, 0700) != 0) {
			gd_whyf(why, cap, "%s: %s", dir, strerror(errno));
			return GD_EIO;
		}
	} else if (create && errno != EEXIST) {
		gd_whyf(why, cap, "%s: %s", dir, strerror(errno));
		return GD_EIO;
	}
	return keystore_check_dir(dir, why, cap);
}

static int file_open(struct keystore *ks, const char *state_dir, bool create, char *why, size_t cap)
{
	struct file_key *fk = calloc(1, sizeof(*fk));
	char path[PATH_MAX];
	struct stat st;
	int err;

	if (fk == NULL)
		return GD_ENOMEM;
	mbedtls_pk_init(&fk->pk);
	err = rng_seed(&fk->drbg, &fk->entropy, "guardian identity");
	if (err != 0) {
		gd_whyf(why, cap, "no entropy for the key store");
		goto out;
	}
	err = file_dir(state_dir, create, why, cap);
	if (err != 0)
		goto out;
	snprintf(path, sizeof(path), "%s/%s", state_dir, KEY_FILE);
	if (lstat(path, &st) == 0)
		err = file_load(fk, path, why, cap);
	else if (errno != ENOENT) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		err = GD_EIO;
	} else if (create)
		err = file_create(fk, path, why, cap);
	else {
		gd_whyf(why, cap, "%s: no identity key; run guardian provision first", path);
		err = GD_EIO;
	}
out:
	if (err != 0) {
		mbedtls_pk_free(&fk->pk);
		rng_free(&fk->drbg, &fk->entropy);
		free(fk);
		return err;
	}
	ks->backend_data = fk;
	return 0;
}

static int file_sign(struct keystore *ks, const uint8_t digest[32], uint8_t *sig, size_t cap,
		     size_t *len)
{
	struct file_key *fk = file_key(ks);
	uint8_t buf[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	size_t n = 0;

	if (mbedtls_pk_sign(&fk->pk, MBEDTLS_MD_SHA256, digest, 32, buf, &n,
			    mbedtls_ctr_drbg_random, &fk->drbg) != 0)
		return GD_EIO;
	if (n > cap)
		return GD_EFULL;
	memcpy(sig, buf, n);
	*len = n;
	return 0;
}

static int file_public_pem(struct keystore *ks, char *out, size_t cap)
{
	if (mbedtls_pk_write_pubkey_pem(&file_key(ks)->pk, (uint8_t *)out, cap) != 0)
		return GD_EFULL;
	return 0;
}

static int file_csr_pem(struct keystore *ks, const char *cn, char *out, size_t cap)
{
	struct file_key *fk = file_key(ks);
	mbedtls_x509write_csr csr;
	char subject[80];
	int err = 0;

	/* Only a device name: a ',' or '=' would add attributes to the subject. */
	if (!conf_valid_name(cn))
		return GD_EINVAL;
	snprintf(subject, sizeof(subject), "CN=%s", cn);
	mbedtls_x509write_csr_init(&csr);
	mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
	mbedtls_x509write_csr_set_key(&csr, &fk->pk);
	if (mbedtls_x509write_csr_set_subject_name(&csr, subject) != 0)
		err = GD_EINVAL;
	else if (mbedtls_x509write_csr_pem(&csr, (uint8_t *)out, cap, mbedtls_ctr_drbg_random,
					   &fk->drbg) != 0)
		err = GD_EFULL;
	mbedtls_x509write_csr_free(&csr);
	return err;
}

static void file_close(struct keystore *ks)
{
	struct file_key *fk = file_key(ks);

	if (fk == NULL)
		return;
	mbedtls_pk_free(&fk->pk); /* zeroises the private key */
	rng_free(&fk->drbg, &fk->entropy);
	free(fk);
	ks->backend_data = NULL;
}

static const struct keystore_ops file_ops = {
	.name = "file",
	.open = file_open,
	.sign = file_sign,
	.public_pem = file_public_pem,
	.csr_pem = file_csr_pem,
	.close = file_close,
};

/* ---- the interface ------------------------------------------------------------------------ */

int keystore_open(const char *state_dir, bool create, struct keystore **out, char *why, size_t cap)
{
	struct keystore *ks = calloc(1, sizeof(*ks));
	int err;

	*out = NULL;
	if (ks == NULL)
		return GD_ENOMEM;
	/* The one backend today; a TPM 2.0 backend would be chosen here when present. */
	ks->ops = &file_ops;
	err = ks->ops->open(ks, state_dir, create, why, cap);
	if (err != 0) {
		free(ks);
		return err;
	}
	*out = ks;
	return 0;
}

int keystore_sign(struct keystore *ks, const uint8_t digest[32], uint8_t *sig, size_t cap,
		  size_t *len)
{
	return ks->ops->sign(ks, digest, sig, cap, len);
}

int keystore_public_pem(struct keystore *ks, char *out, size_t cap)
{
	return ks->ops->public_pem(ks, out, cap);
}

int keystore_csr_pem(struct keystore *ks, const char *cn, char *out, size_t cap)
{
	return ks->ops->csr_pem(ks, cn, out, cap);
}

/* No operation is performed if 'ks' is NULL. */
void keystore_close(struct keystore *ks)
{
	if (ks == NULL)
		return;
	ks->ops->close(ks);
	free(ks);
}
