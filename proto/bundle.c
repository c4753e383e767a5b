/* bundle.c: signed update bundles: checked (the signatures before a byte of the manifest is
 * believed), then streamed into a staging directory; and made, on the signer's side. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "../base/base.h"
#include "../base/conf.h"
#include "b64url.h"
#include "bundle.h"
#include "json_read.h"

#define CHUNK	    (64u << 10) /* files are streamed in pieces of this size */
#define HEAD_LINE   128		/* a section header line, newline included */
#define SIG_DER_MAX MBEDTLS_ECDSA_MAX_SIG_LEN(256)
#define SIG_DER_MIN 8
#define TYPE	    "guardian-update"
#define PROGRAM	    "guardian" /* the one file staged executable */

const char *const bundle_refusal_names[] = {
	[BUNDLE_OK] = "ok",
	[BUNDLE_MALFORMED] = "malformed",
	[BUNDLE_BAD_SIGNATURE] = "bad_signature",
	[BUNDLE_WRONG_CLASS] = "wrong_class",
	[BUNDLE_EXPIRED] = "expired",
	[BUNDLE_ROLLBACK] = "rollback",
	[BUNDLE_ENDLESS] = "endless_data",
	[BUNDLE_HASH_MISMATCH] = "hash_mismatch",
	[BUNDLE_IO] = "io",
};

/* ---- small pieces ------------------------------------------------------------------------ */

static bool file_name_ok(const char *name)
{
	return conf_valid_name(name) && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* 's' if it can go into a sentence as it is (short printable ASCII), else a placeholder: the
 * bytes of a refused bundle are an attacker's. */
static const char *shown(const char *s)
{
	size_t n = strnlen(s, 65);

	if (n == 0 || n > 64)
		return "(not a plain name)";
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
			return "(not a plain name)";
	}
	return s;
}

static bool is_p256(mbedtls_pk_context *pk)
{
	return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
	       mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

static int keyid_of_pk(mbedtls_pk_context *pk, char out[BUNDLE_KEYID_HEX + 1])
{
	uint8_t der[256], digest[32];
	int n;

	/* mbedtls writes DER at the end of the buffer. */
	n = mbedtls_pk_write_pubkey_der(pk, der, sizeof(der));
	if (n <= 0)
		return GD_EINVAL;
	mbedtls_sha256_ret(der + sizeof(der) - n, (size_t)n, digest, 0);
	gd_hex_encode(digest, BUNDLE_KEYID_HEX / 2, out);
	return 0;
}

int bundle_keyid(const char *pem, char out[BUNDLE_KEYID_HEX + 1])
{
	mbedtls_pk_context pk;
	size_t len;
	int err = GD_EINVAL;

	if (pem == NULL)
		return GD_EINVAL;
	len = strlen(pem) + 1; /* PEM input counts its NUL */
	mbedtls_pk_init(&pk);
	if (mbedtls_pk_parse_public_key(&pk, (const uint8_t *)pem, len) != 0) {
		mbedtls_pk_free(&pk);
		mbedtls_pk_init(&pk);
		if (mbedtls_pk_parse_key(&pk, (const uint8_t *)pem, len, NULL, 0) != 0)
			goto out;
	}
	if (is_p256(&pk))
		err = keyid_of_pk(&pk, out);
out:
	mbedtls_pk_free(&pk);
	return err;
}

/*
 * A section length: decimal digits, no sign, no leading zero. Past 'max' it saturates at
 * max + 1, so that a length too long to hold is still "longer than", not "not a number".
 */
static bool parse_len(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v <= max)
			v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v > max ? max + 1 : v;
	return true;
}

/* ---- reading the bundle ------------------------------------------------------------------ */

/* The bundle being read, how far, and where the sentence of a refusal goes. */
struct rd {
	FILE *f;
	uint64_t off;
	char *why;
	size_t cap;
};

/*
 * 'n' bytes into 'buf'. BUNDLE_OK; BUNDLE_MALFORMED when the bundle ends first ('what' names
 * the part, in the sentence); BUNDLE_IO when the read fails.
 */
static enum bundle_refusal rd_bytes(struct rd *r, void *buf, size_t n, const char *what)
{
	size_t got = fread(buf, 1, n, r->f);

	r->off += got;
	if (got == n)
		return BUNDLE_OK;
	if (ferror(r->f)) {
		gd_whyf(r->why, r->cap, "reading %s at byte %llu: %s", what,
			(unsigned long long)r->off, strerror(errno));
		return BUNDLE_IO;
	}
	gd_whyf(r->why, r->cap, "the bundle ends inside %s (byte %llu): truncated", what,
		(unsigned long long)r->off);
	return BUNDLE_MALFORMED;
}

/*
 * One header line, its newline dropped, into 'line' (HEAD_LINE bytes). A line longer than that
 * or holding a NUL is malformed: no header line is long, and reading one must stay bounded.
 */
static enum bundle_refusal rd_line(struct rd *r, char *line, const char *what)
{
	size_t n = 0;

	for (;;) {
		int ch = getc(r->f);

		if (ch == EOF) {
			if (ferror(r->f)) {
				gd_whyf(r->why, r->cap, "reading %s at byte %llu: %s", what,
					(unsigned long long)r->off, strerror(errno));
				return BUNDLE_IO;
			}
			gd_whyf(r->why, r->cap, "the bundle ends %s %s (byte %llu): truncated",
				n == 0 ? "before" : "inside", what, (unsigned long long)r->off);
			return BUNDLE_MALFORMED;
		}
		r->off++;
		if (ch == '\n')
			break;
		if (ch == '\0' || n + 1 >= HEAD_LINE) {
			gd_whyf(r->why, r->cap,
				"%s (byte %llu): not a header line of under %d bytes", what,
				(unsigned long long)r->off, HEAD_LINE);
			return BUNDLE_MALFORMED;
		}
		line[n++] = (char)ch;
	}
	line[n] = '\0';
	return BUNDLE_OK;
}

/* "<word> <n>\n" and its n bytes (1 to 'max') into a malloc'd, NUL-terminated *out. */
static enum bundle_refusal rd_section(struct rd *r, const char *word, size_t max, char **out,
				      size_t *len)
{
	size_t wl = strlen(word);
	char line[HEAD_LINE];
	enum bundle_refusal rc;
	uint64_t n;
	char *buf;

	*out = NULL;
	rc = rd_line(r, line, word);
	if (rc != BUNDLE_OK)
		return rc;
	if (strncmp(line, word, wl) != 0 || line[wl] != ' ' || !parse_len(line + wl + 1, max, &n) ||
	    n == 0 || n > max) {
		gd_whyf(r->why, r->cap,
			"byte %llu: expected \"%s <length>\", a length from 1 to %zu",
			(unsigned long long)r->off, word, max);
		return BUNDLE_MALFORMED;
	}
	buf = malloc((size_t)n + 1);
	if (buf == NULL) {
		gd_whyf(r->why, r->cap, "out of memory");
		return BUNDLE_IO;
	}
	rc = rd_bytes(r, buf, (size_t)n, word);
	if (rc == BUNDLE_OK && memchr(buf, '\0', (size_t)n) != NULL) {
		gd_whyf(r->why, r->cap, "%s: holds a NUL byte", word);
		rc = BUNDLE_MALFORMED;
	}
	if (rc != BUNDLE_OK) {
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	*out = buf;
	*len = (size_t)n;
	return BUNDLE_OK;
}

/* One signature as the bundle states it. */
struct sig {
	char keyid[BUNDLE_KEYID_HEX + 1];
	uint8_t der[SIG_DER_MAX];
	size_t len;
};

/* Exactly 'n' lower-case hex digits: one spelling for each value. */
static bool hex_lower(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	}
	return true;
}

/* Each of obj's members is one of 'names' (a NULL-ended list). */
static bool only_members(const cJSON *obj, const char *const *names, const char *label, char *why,
			 size_t cap)
{
	const cJSON *it;

	cJSON_ArrayForEach (it, obj) {
		size_t i = 0;

		while (names[i] != NULL &&
		       (it->string == NULL || strcmp(it->string, names[i]) != 0))
			i++;
		if (names[i] == NULL) {
			gd_whyf(why, cap, "%s: unknown member \"%s\"", label,
				it->string != NULL ? shown(it->string) : "");
			return false;
		}
	}
	return true;
}

/*
 * The signatures section, for its form only: a JSON array of at most BUNDLE_MAX_SIGS
 * {"keyid","sig"} objects. An empty array is well-formed (*n 0): that it signs nothing is
 * for the caller to refuse. BUNDLE_OK or BUNDLE_MALFORMED.
 */
static enum bundle_refusal sigs_parse(const char *text, struct sig *sigs, size_t *n, char *why,
				      size_t cap)
{
	static const char *const members[] = { "keyid", "sig", NULL };
	enum bundle_refusal rc = BUNDLE_MALFORMED;
	cJSON *arr = cJSON_ParseWithOpts(text, NULL, true);
	const cJSON *it;
	size_t i = 0;

	*n = 0;
	if (arr == NULL || !cJSON_IsArray(arr)) {
		gd_whyf(why, cap, "signatures: not a JSON array");
		goto out;
	}
	if (cJSON_GetArraySize(arr) > BUNDLE_MAX_SIGS) {
		gd_whyf(why, cap, "signatures: %d, at most %d", cJSON_GetArraySize(arr),
			BUNDLE_MAX_SIGS);
		goto out;
	}
	cJSON_ArrayForEach (it, arr) {
		char label[32], member[48];
		const char *keyid, *sig64;
		int len;

		snprintf(label, sizeof(label), "signature %zu", i + 1);
		if (!cJSON_IsObject(it)) {
			gd_whyf(why, cap, "%s: not a JSON object", label);
			goto out;
		}
		if (!only_members(it, members, label, why, cap))
			goto out;
		snprintf(member, sizeof(member), "%s: keyid", label);
		keyid = jr_string(it, "keyid", member, why, cap);
		if (keyid == NULL)
			goto out;
		if (!hex_lower(keyid, BUNDLE_KEYID_HEX)) {
			gd_whyf(why, cap, "%s: keyid is not %d lower-case hex digits", label,
				BUNDLE_KEYID_HEX);
			goto out;
		}
		snprintf(member, sizeof(member), "%s: sig", label);
		sig64 = jr_string(it, "sig", member, why, cap);
		if (sig64 == NULL)
			goto out;
		len = b64url_decode(sig64, sigs[i].der, SIG_DER_MAX);
		if (len < SIG_DER_MIN) {
			gd_whyf(why, cap,
				"%s: sig is not base64url of a DER signature (%d to %d bytes)",
				label, SIG_DER_MIN, SIG_DER_MAX);
			goto out;
		}
		memcpy(sigs[i].keyid, keyid, sizeof(sigs[i].keyid));
		sigs[i].len = (size_t)len;
		i++;
	}
	*n = i;
	rc = BUNDLE_OK;
out:
	cJSON_Delete(arr);
	return rc;
}

/* ---- the manifest ------------------------------------------------------------------------ */

static bool manifest_file(const cJSON *it, size_t i, struct bundle_manifest *m, char *why,
			  size_t cap)
{
	static const char *const members[] = { "name", "sha256", "length", NULL };
	struct bundle_file *bf = &m->files[i];
	char label[48], member[64];
	const char *s;
	int64_t len;

	snprintf(label, sizeof(label), "manifest: file %zu", i + 1);
	if (!cJSON_IsObject(it)) {
		gd_whyf(why, cap, "%s: not a JSON object", label);
		return false;
	}
	if (!only_members(it, members, label, why, cap))
		return false;
	snprintf(member, sizeof(member), "%s: name", label);
	s = jr_string(it, "name", member, why, cap);
	if (s == NULL)
		return false;
	if (!file_name_ok(s)) {
		gd_whyf(why, cap,
			"%s: name \"%s\" is not a plain file name (1 to 63 of A-Z a-z 0-9 . _ -, "
			"not "
			"\".\" or \"..\")",
			label, shown(s));
		return false;
	}
	for (size_t j = 0; j < i; j++) {
		if (strcmp(m->files[j].name, s) == 0) {
			gd_whyf(why, cap, "%s: name \"%s\" is file %zu's too", label, s, j + 1);
			return false;
		}
	}
	strcpy(bf->name, s);
	snprintf(label, sizeof(label), "manifest: file %s", bf->name);
	snprintf(member, sizeof(member), "%s: sha256", label);
	s = jr_string(it, "sha256", member, why, cap);
	if (s == NULL)
		return false;
	if (!hex_lower(s, 64) || !gd_hex_decode(s, bf->sha256, sizeof(bf->sha256), '\0')) {
		gd_whyf(why, cap, "%s: sha256 is not 64 lower-case hex digits", label);
		return false;
	}
	snprintf(member, sizeof(member), "%s: length", label);
	if (!jr_int(it, "length", member, &len, why, cap))
		return false;
	if ((uint64_t)len > BUNDLE_MAX_FILE) {
		gd_whyf(why, cap, "%s: length %lld is over the limit of %u bytes", label,
			(long long)len, BUNDLE_MAX_FILE);
		return false;
	}
	bf->length = (uint64_t)len;
	return true;
}

enum bundle_refusal bundle_manifest_parse(const char *json, size_t len, struct bundle_manifest *m,
					  char *why, size_t cap)
{
	static const char *const members[] = { "type",	  "version", "device_class",
					       "created", "expires", "files",
					       NULL };
	struct bundle_manifest tmp = { 0 };
	enum bundle_refusal rc = BUNDLE_MALFORMED;
	cJSON *obj = NULL;
	const cJSON *files, *it;
	const char *s;
	int64_t version;
	size_t i = 0;

	if (json == NULL || memchr(json, '\0', len) != NULL ||
	    (obj = jr_object(json, len)) == NULL) {
		gd_whyf(why, cap, "manifest: not a JSON object");
		goto out;
	}
	if (!only_members(obj, members, "manifest", why, cap))
		goto out;
	s = jr_string(obj, "type", "manifest: type", why, cap);
	if (s == NULL)
		goto out;
	if (strcmp(s, TYPE) != 0) {
		gd_whyf(why, cap, "manifest: type is not \"" TYPE "\"");
		goto out;
	}
	if (!jr_int(obj, "version", "manifest: version", &version, why, cap))
		goto out;
	if (version < 1) {
		gd_whyf(why, cap, "manifest: version 0: versions start at 1");
		goto out;
	}
	tmp.version = (uint64_t)version;
	s = jr_string(obj, "device_class", "manifest: device_class", why, cap);
	if (s == NULL)
		goto out;
	if (!conf_valid_name(s)) {
		gd_whyf(why, cap,
			"manifest: device_class \"%s\" is not a name (1 to 63 of A-Z a-z 0-9 . _ "
			"-)",
			shown(s));
		goto out;
	}
	strcpy(tmp.device_class, s);
	if (!jr_int(obj, "created", "manifest: created", &tmp.created_ms, why, cap) ||
	    !jr_int(obj, "expires", "manifest: expires", &tmp.expires_ms, why, cap))
		goto out;
	if (tmp.created_ms > tmp.expires_ms) {
		gd_whyf(why, cap, "manifest: created (%lld) is after expires (%lld)",
			(long long)tmp.created_ms, (long long)tmp.expires_ms);
		goto out;
	}
	files = jr_member(obj, "files", "manifest: files", why, cap);
	if (files == NULL)
		goto out;
	if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) < 1 ||
	    cJSON_GetArraySize(files) > BUNDLE_MAX_FILES) {
		gd_whyf(why, cap, "manifest: files is not an array of 1 to %d files",
			BUNDLE_MAX_FILES);
		goto out;
	}
	cJSON_ArrayForEach (it, files) {
		if (!manifest_file(it, i, &tmp, why, cap))
			goto out;
		i++;
	}
	tmp.nfiles = i;
	*m = tmp;
	rc = BUNDLE_OK;
out:
	cJSON_Delete(obj);
	return rc;
}

/* ---- the head: magic, manifest, signatures ----------------------------------------------- */

/* What comes before the files. */
struct head {
	char *manifest, *sigtext;
	size_t manifest_len, sigtext_len;
	struct sig sigs[BUNDLE_MAX_SIGS];
	size_t nsigs;
};

static void head_free(struct head *h)
{
	free(h->manifest);
	free(h->sigtext);
}

static enum bundle_refusal head_read(struct rd *r, struct head *h)
{
	char line[HEAD_LINE];
	enum bundle_refusal rc;

	rc = rd_line(r, line, "the first line");
	if (rc != BUNDLE_OK)
		return rc;
	if (strcmp(line, BUNDLE_MAGIC) != 0) {
		gd_whyf(r->why, r->cap, "not a bundle: the first line is not \"" BUNDLE_MAGIC "\"");
		return BUNDLE_MALFORMED;
	}
	rc = rd_section(r, "manifest", BUNDLE_MAX_MANIFEST, &h->manifest, &h->manifest_len);
	if (rc == BUNDLE_OK)
		rc = rd_section(r, "signatures", BUNDLE_MAX_SIGS_TEXT, &h->sigtext,
				&h->sigtext_len);
	if (rc == BUNDLE_OK)
		rc = sigs_parse(h->sigtext, h->sigs, &h->nsigs, r->why, r->cap);
	return rc;
}

/* The update keys a device trusts, parsed once for a bundle. */
struct trusted {
	mbedtls_pk_context pk[BUNDLE_MAX_KEYS];
	char keyid[BUNDLE_MAX_KEYS][BUNDLE_KEYID_HEX + 1];
	size_t n;
};

static void trusted_free(struct trusted *t)
{
	for (size_t i = 0; i < t->n; i++)
		mbedtls_pk_free(&t->pk[i]);
	t->n = 0;
}

/* A trust that cannot be met refuses every bundle: it says so rather than fail open. */
static enum bundle_refusal trusted_load(const struct bundle_trust *trust, struct trusted *t,
					char *why, size_t cap)
{
	t->n = 0;
	if (trust->key_pems == NULL || trust->nkeys == 0 || trust->nkeys > BUNDLE_MAX_KEYS ||
	    trust->threshold < 1 || trust->threshold > trust->nkeys) {
		gd_whyf(why, cap,
			"no bundle can be trusted: %zu of %zu update keys asked (1 to %d keys, the "
			"threshold from 1 to their number)",
			trust->threshold, trust->nkeys, BUNDLE_MAX_KEYS);
		return BUNDLE_BAD_SIGNATURE;
	}
	for (size_t i = 0; i < trust->nkeys; i++) {
		const char *pem = trust->key_pems[i];

		mbedtls_pk_init(&t->pk[i]);
		t->n = i + 1;
		if (pem == NULL ||
		    mbedtls_pk_parse_public_key(&t->pk[i], (const uint8_t *)pem, strlen(pem) + 1) !=
			    0 ||
		    !is_p256(&t->pk[i]) || keyid_of_pk(&t->pk[i], t->keyid[i]) != 0) {
			gd_whyf(why, cap, "update key %zu: not a P-256 public key in PEM", i + 1);
			return BUNDLE_BAD_SIGNATURE;
		}
		/* The same key twice would let one signer count as two. */
		for (size_t j = 0; j < i; j++) {
			if (strcmp(t->keyid[i], t->keyid[j]) == 0) {
				gd_whyf(why, cap, "update key %zu: the same key as update key %zu",
					i + 1, j + 1);
				return BUNDLE_BAD_SIGNATURE;
			}
		}
	}
	return BUNDLE_OK;
}

/*
 * k of n: every signature by a trusted key must verify over the manifest bytes, and at least
 * 'threshold' distinct trusted keys must have signed. Signatures by unknown keys are passed
 * over (a key being rolled in), but do not count.
 */
static enum bundle_refusal sigs_check(const struct head *h, struct trusted *t, size_t threshold,
				      char *why, size_t cap)
{
	bool counted[BUNDLE_MAX_KEYS] = { false };
	size_t good = 0, unknown = 0, repeated = 0;
	uint8_t digest[32];

	if (h->nsigs == 0) {
		gd_whyf(why, cap, "signatures: none; %zu of the update keys must sign", threshold);
		return BUNDLE_BAD_SIGNATURE;
	}
	mbedtls_sha256_ret((const uint8_t *)h->manifest, h->manifest_len, digest, 0);
	for (size_t i = 0; i < h->nsigs; i++) {
		const struct sig *s = &h->sigs[i];
		size_t k = 0;

		while (k < t->n && strcmp(t->keyid[k], s->keyid) != 0)
			k++;
		if (k == t->n) {
			unknown++;
			continue;
		}
		if (mbedtls_pk_verify(&t->pk[k], MBEDTLS_MD_SHA256, digest, sizeof(digest), s->der,
				      s->len) != 0) {
			gd_whyf(why, cap,
				"signature %zu (keyid %s): does not verify over the manifest",
				i + 1, s->keyid);
			return BUNDLE_BAD_SIGNATURE;
		}
		if (counted[k]) {
			repeated++;
		} else {
			counted[k] = true;
			good++;
		}
	}
	if (good < threshold) {
		gd_whyf(why, cap,
			"signatures: %zu distinct update key%s of this device signed, %zu needed "
			"(%zu signature%s by unknown keys, %zu by a key already counted)",
			good, good == 1 ? "" : "s", threshold, unknown, unknown == 1 ? "" : "s",
			repeated);
		return BUNDLE_BAD_SIGNATURE;
	}
	return BUNDLE_OK;
}

/* What the signed manifest must say to this device: its class, not expired, not older. */
static enum bundle_refusal manifest_check(const struct bundle_manifest *m,
					  const struct bundle_trust *trust, char *why, size_t cap)
{
	if (trust->device_class == NULL || strcmp(m->device_class, trust->device_class) != 0) {
		gd_whyf(why, cap, "device_class \"%s\": this device is \"%s\"", m->device_class,
			trust->device_class != NULL ? trust->device_class : "");
		return BUNDLE_WRONG_CLASS;
	}
	if (m->expires_ms <= trust->now_ms) {
		gd_whyf(why, cap, "expired %lld s ago (expires %lld, now %lld ms UTC)",
			(long long)((trust->now_ms - m->expires_ms) / 1000),
			(long long)m->expires_ms, (long long)trust->now_ms);
		return BUNDLE_EXPIRED;
	}
	if (m->version <= trust->floor) {
		gd_whyf(why, cap, "version %llu is not above %llu, the lowest this device takes",
			(unsigned long long)m->version, (unsigned long long)trust->floor);
		return BUNDLE_ROLLBACK;
	}
	return BUNDLE_OK;
}

/* ---- the files --------------------------------------------------------------------------- */

/* "file <name> <n>": the name and the length (saturated past BUNDLE_MAX_FILE). */
static bool file_line(char *line, char **name, uint64_t *len)
{
	char *sp;

	if (strncmp(line, "file ", 5) != 0)
		return false;
	sp = strrchr(line + 5, ' ');
	if (sp == NULL || sp == line + 5)
		return false;
	*sp = '\0';
	*name = line + 5;
	return parse_len(sp + 1, BUNDLE_MAX_FILE, len);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The staging directory and the files this call created in it (removed on a refusal). */
struct stage {
	const char *dir;
	int fd;
	bool made[BUNDLE_MAX_FILES];
};

/*
 * File section 'i': its header against the manifest's file (name, then length: a longer
 * section is refused before a byte of it is read), then its bytes, streamed through SHA-256
 * into the staging directory. The file is 0600 until its hash matched.
 */
static enum bundle_refusal file_extract(struct rd *r, struct stage *st,
					const struct bundle_manifest *m, size_t i, uint8_t *buf)
{
	const struct bundle_file *bf = &m->files[i];
	char line[HEAD_LINE], what[96], *name;
	mbedtls_sha256_context sha;
	enum bundle_refusal rc;
	uint8_t digest[32];
	uint64_t len, left;
	int fd, werr = 0;

	snprintf(what, sizeof(what), "the section of file %s", bf->name);
	rc = rd_line(r, line, what);
	if (rc != BUNDLE_OK)
		return rc;
	if (!file_line(line, &name, &len)) {
		gd_whyf(r->why, r->cap, "byte %llu: expected \"file <name> <length>\" for file %s",
			(unsigned long long)r->off, bf->name);
		return BUNDLE_MALFORMED;
	}
	if (strcmp(name, bf->name) != 0) {
		gd_whyf(r->why, r->cap,
			"file section %zu is \"%s\" where the manifest has \"%s\": files in "
			"another "
			"order or not the signed ones (mix-and-match)",
			i + 1, shown(name), bf->name);
		return BUNDLE_HASH_MISMATCH;
	}
	if (len > bf->length) {
		gd_whyf(r->why, r->cap,
			"file %s: the section holds %s%llu bytes, the manifest says %llu (endless "
			"data): refused before reading it",
			bf->name, len > BUNDLE_MAX_FILE ? "over " : "",
			(unsigned long long)(len > BUNDLE_MAX_FILE ? BUNDLE_MAX_FILE : len),
			(unsigned long long)bf->length);
		return BUNDLE_ENDLESS;
	}
	if (len < bf->length) {
		gd_whyf(r->why, r->cap,
			"file %s: the section holds %llu bytes, the manifest says %llu: not the "
			"signed file",
			bf->name, (unsigned long long)len, (unsigned long long)bf->length);
		return BUNDLE_HASH_MISMATCH;
	}
	fd = openat(st->fd, bf->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		gd_whyf(r->why, r->cap, "%s/%s: %s", st->dir, bf->name, strerror(errno));
		return BUNDLE_IO;
	}
	st->made[i] = true;
	mbedtls_sha256_init(&sha);
	mbedtls_sha256_starts_ret(&sha, 0);
	snprintf(what, sizeof(what), "file %s", bf->name);
	if (fchmod(fd, 0600) != 0)
		werr = errno;
	for (left = bf->length; werr == 0 && left > 0;) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;

		rc = rd_bytes(r, buf, n, what);
		if (rc != BUNDLE_OK)
			break;
		mbedtls_sha256_update_ret(&sha, buf, n);
		if (write_all(fd, buf, n) != 0)
			werr = errno;
		left -= n;
	}
	mbedtls_sha256_finish_ret(&sha, digest);
	mbedtls_sha256_free(&sha);
	if (rc == BUNDLE_OK && werr == 0 && memcmp(digest, bf->sha256, sizeof(digest)) != 0) {
		char got[65], want[65];

		gd_hex_encode(digest, sizeof(digest), got);
		gd_hex_encode(bf->sha256, sizeof(bf->sha256), want);
		gd_whyf(r->why, r->cap, "file %s: SHA-256 %s, the manifest says %s", bf->name, got,
			want);
		rc = BUNDLE_HASH_MISMATCH;
	}
	/* Executable only once it is known to be the signed program. */
	if (rc == BUNDLE_OK && werr == 0 &&
	    (fchmod(fd, strcmp(bf->name, PROGRAM) == 0 ? 0700 : 0600) != 0 || fsync(fd) != 0))
		werr = errno;
	if (close(fd) != 0 && werr == 0)
		werr = errno;
	if (rc == BUNDLE_OK && werr != 0) {
		gd_whyf(r->why, r->cap, "%s/%s: %s", st->dir, bf->name, strerror(werr));
		rc = BUNDLE_IO;
	}
	return rc;
}

/* After the last file: nothing. Another file section is one the manifest does not sign. */
static enum bundle_refusal rd_end(struct rd *r, size_t nfiles)
{
	char start[6] = { 0 };
	size_t got = fread(start, 1, 5, r->f);

	if (got == 0 && !ferror(r->f))
		return BUNDLE_OK;
	if (ferror(r->f)) {
		gd_whyf(r->why, r->cap, "reading byte %llu: %s", (unsigned long long)r->off,
			strerror(errno));
		return BUNDLE_IO;
	}
	if (strcmp(start, "file ") == 0) {
		gd_whyf(r->why, r->cap,
			"byte %llu: a file section after the manifest's %zu file%s: a file not "
			"signed (mix-and-match)",
			(unsigned long long)r->off, nfiles, nfiles == 1 ? "" : "s");
		return BUNDLE_HASH_MISMATCH;
	}
	gd_whyf(r->why, r->cap, "byte %llu: bytes after the last file", (unsigned long long)r->off);
	return BUNDLE_MALFORMED;
}

static enum bundle_refusal stage_open(struct stage *st, const char *dir, char *why, size_t cap)
{
	struct dirent *e;
	DIR *d;
	int fd2;

	*st = (struct stage){ .dir = dir, .fd = -1 };
	st->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->fd < 0) {
		gd_whyf(why, cap, "staging directory %s: %s", dir, strerror(errno));
		return BUNDLE_IO;
	}
	fd2 = dup(st->fd);
	d = fd2 < 0 ? NULL : fdopendir(fd2);
	if (d == NULL) {
		gd_whyf(why, cap, "staging directory %s: %s", dir, strerror(errno));
		if (fd2 >= 0)
			close(fd2);
		return BUNDLE_IO;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			break;
	}
	if (e != NULL)
		gd_whyf(why, cap,
			"staging directory %s is not empty (it holds %s): a bundle is unpacked "
			"only "
			"into an empty one",
			dir, shown(e->d_name));
	closedir(d);
	return e == NULL ? BUNDLE_OK : BUNDLE_IO;
}

/* On a refusal: what this call made goes; the directory is as it was found, empty. */
static void stage_close(struct stage *st, const struct bundle_manifest *m, bool keep)
{
	if (st->fd < 0)
		return;
	for (size_t i = 0; !keep && m != NULL && i < m->nfiles; i++) {
		if (st->made[i])
			unlinkat(st->fd, m->files[i].name, 0);
	}
	fsync(st->fd);
	close(st->fd);
	st->fd = -1;
}

enum bundle_refusal bundle_verify_extract(const char *path, const struct bundle_trust *trust,
					  const char *stage_dir, struct bundle_manifest *out,
					  char *why, size_t cap)
{
	struct rd r = { .why = why, .cap = cap };
	struct head *h = NULL;
	struct trusted *t = NULL;
	struct bundle_manifest *m = NULL;
	struct stage st = { .fd = -1 };
	enum bundle_refusal rc;
	uint8_t *buf = NULL;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (path == NULL || trust == NULL || stage_dir == NULL) {
		gd_whyf(why, cap, "no bundle, trust or staging directory given");
		return BUNDLE_IO;
	}
	h = calloc(1, sizeof(*h));
	t = calloc(1, sizeof(*t));
	m = calloc(1, sizeof(*m));
	buf = malloc(CHUNK);
	if (h == NULL || t == NULL || m == NULL || buf == NULL) {
		gd_whyf(why, cap, "out of memory");
		rc = BUNDLE_IO;
		goto out;
	}
	rc = trusted_load(trust, t, why, cap);
	if (rc != BUNDLE_OK)
		goto out;
	rc = stage_open(&st, stage_dir, why, cap);
	if (rc != BUNDLE_OK)
		goto out;
	r.f = fopen(path, "rbe");
	if (r.f == NULL) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		rc = BUNDLE_IO;
		goto out;
	}
	/* Nothing the manifest says is read before its signatures verified. */
	rc = head_read(&r, h);
	if (rc == BUNDLE_OK)
		rc = sigs_check(h, t, trust->threshold, why, cap);
	if (rc == BUNDLE_OK)
		rc = bundle_manifest_parse(h->manifest, h->manifest_len, m, why, cap);
	if (rc != BUNDLE_OK)
		goto out;
	if (out != NULL)
		*out = *m;
	rc = manifest_check(m, trust, why, cap);
	for (size_t i = 0; rc == BUNDLE_OK && i < m->nfiles; i++)
		rc = file_extract(&r, &st, m, i, buf);
	if (rc == BUNDLE_OK)
		rc = rd_end(&r, m->nfiles);
	if (rc == BUNDLE_OK)
		gd_whyf(why, cap, "version %llu for %s: %zu file%s staged in %s",
			(unsigned long long)m->version, m->device_class, m->nfiles,
			m->nfiles == 1 ? "" : "s", stage_dir);
out:
	stage_close(&st, m, rc == BUNDLE_OK);
	if (r.f != NULL)
		fclose(r.f);
	if (t != NULL)
		trusted_free(t);
	if (h != NULL)
		head_free(h);
	free(h);
	free(t);
	free(m);
	free(buf);
	return rc;
}

/* ---- reading for the form only (release show) -------------------------------------------- */

enum bundle_refusal bundle_inspect(const char *path, struct bundle_info *info, char *why,
				   size_t cap)
{
	struct rd r = { .why = why, .cap = cap };
	struct head *h;
	enum bundle_refusal rc;

	memset(info, 0, sizeof(*info));
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		gd_whyf(why, cap, "out of memory");
		return BUNDLE_IO;
	}
	r.f = fopen(path, "rbe");
	if (r.f == NULL) {
		gd_whyf(why, cap, "%s: %s", path, strerror(errno));
		free(h);
		return BUNDLE_IO;
	}
	rc = head_read(&r, h);
	info->manifest = h->manifest;
	info->manifest_len = h->manifest_len;
	h->manifest = NULL;
	if (rc != BUNDLE_OK)
		goto out;
	info->nsigs = h->nsigs;
	for (size_t i = 0; i < h->nsigs; i++)
		memcpy(info->keyids[i], h->sigs[i].keyid, sizeof(info->keyids[i]));
	rc = bundle_manifest_parse(info->manifest, info->manifest_len, &info->m, why, cap);
	/* The file sections: their headers, their bytes skipped. */
	while (rc == BUNDLE_OK && info->nsections < BUNDLE_MAX_FILES) {
		struct bundle_file *bf = &info->sections[info->nsections];
		char line[HEAD_LINE], *name;
		int ch = getc(r.f);

		if (ch == EOF)
			break;
		ungetc(ch, r.f);
		rc = rd_line(&r, line, "a file section");
		if (rc != BUNDLE_OK)
			break;
		if (!file_line(line, &name, &bf->length) || bf->length > BUNDLE_MAX_FILE) {
			gd_whyf(why, cap, "byte %llu: not \"file <name> <length>\"",
				(unsigned long long)r.off);
			rc = BUNDLE_MALFORMED;
			break;
		}
		snprintf(bf->name, sizeof(bf->name), "%s", shown(name));
		info->nsections++;
		if (fseeko(r.f, (off_t)bf->length, SEEK_CUR) != 0) {
			gd_whyf(why, cap, "%s: %s", path, strerror(errno));
			rc = BUNDLE_IO;
		}
		r.off += bf->length;
	}
out:
	fclose(r.f);
	head_free(h);
	free(h);
	return rc;
}

void bundle_info_free(struct bundle_info *info)
{
	if (info == NULL)
		return;
	free(info->manifest);
	info->manifest = NULL;
}

/* ---- the signer's side ------------------------------------------------------------------- */

/* SHA-256 and length of the open file 'f', streamed (and copied to 'copy' unless NULL). 0,
 * GD_ERANGE past BUNDLE_MAX_FILE, or GD_EIO. */
static int hash_stream(FILE *f, FILE *copy, uint8_t digest[32], uint64_t *len, uint8_t *buf)
{
	mbedtls_sha256_context sha;
	size_t n;
	int err = 0;

	*len = 0;
	mbedtls_sha256_init(&sha);
	mbedtls_sha256_starts_ret(&sha, 0);
	while ((n = fread(buf, 1, CHUNK, f)) > 0) {
		*len += n;
		if (*len > BUNDLE_MAX_FILE) {
			err = GD_ERANGE;
			break;
		}
		mbedtls_sha256_update_ret(&sha, buf, n);
		if (copy != NULL && fwrite(buf, 1, n, copy) != n) {
			err = GD_EIO;
			break;
		}
	}
	if (err == 0 && ferror(f))
		err = GD_EIO;
	mbedtls_sha256_finish_ret(&sha, digest);
	mbedtls_sha256_free(&sha);
	return err;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

/* The signing keys: P-256 private keys, no two alike (one key counts once however often). */
static int signers_load(const char *const *key_pems, size_t nkeys, mbedtls_pk_context *pk,
			char (*keyid)[BUNDLE_KEYID_HEX + 1], char *why, size_t cap)
{
	for (size_t i = 0; i < nkeys; i++) {
		const char *pem = key_pems[i];

		if (pem == NULL ||
		    mbedtls_pk_parse_key(&pk[i], (const uint8_t *)pem, strlen(pem) + 1, NULL, 0) !=
			    0 ||
		    !is_p256(&pk[i]) || keyid_of_pk(&pk[i], keyid[i]) != 0) {
			gd_whyf(why, cap, "key %zu: not a P-256 private key in PEM", i + 1);
			return GD_EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(keyid[i], keyid[j]) == 0) {
				gd_whyf(why, cap,
					"key %zu is key %zu again (keyid %s): a key counts once",
					i + 1, j + 1, keyid[i]);
				return GD_EINVAL;
			}
		}
	}
	return 0;
}

/* The manifest text for 'm', in the order of bundle.h; names and class are plain already. */
static char *manifest_text(const struct bundle_manifest *m)
{
	char *text = malloc(BUNDLE_MAX_MANIFEST);
	size_t used;
	int n;

	if (text == NULL)
		return NULL;
	n = snprintf(text, BUNDLE_MAX_MANIFEST,
		     "{\"type\":\"" TYPE "\",\"version\":%llu,\"device_class\":\"%s\","
		     "\"created\":%lld,\"expires\":%lld,\"files\":[",
		     (unsigned long long)m->version, m->device_class, (long long)m->created_ms,
		     (long long)m->expires_ms);
	used = (size_t)n;
	for (size_t i = 0; i < m->nfiles && used < BUNDLE_MAX_MANIFEST; i++) {
		char hex[65];

		gd_hex_encode(m->files[i].sha256, 32, hex);
		n = snprintf(text + used, BUNDLE_MAX_MANIFEST - used,
			     "%s{\"name\":\"%s\",\"sha256\":\"%s\",\"length\":%llu}", i ? "," : "",
			     m->files[i].name, hex, (unsigned long long)m->files[i].length);
		used += (size_t)n;
	}
	if (used < BUNDLE_MAX_MANIFEST)
		used += (size_t)snprintf(text + used, BUNDLE_MAX_MANIFEST - used, "]}");
	if (used >= BUNDLE_MAX_MANIFEST) {
		free(text);
		return NULL;
	}
	return text;
}

/* The signatures section: each key over SHA-256 of the manifest bytes. */
static char *sigs_text(const char *manifest, mbedtls_pk_context *pk,
		       char (*keyid)[BUNDLE_KEYID_HEX + 1], size_t nkeys, char *why, size_t cap)
{
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	uint8_t digest[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	char sig64[2 * sizeof(sig)];
	char *text = malloc(BUNDLE_MAX_SIGS_TEXT);
	size_t used = 1;

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (text == NULL) {
		gd_whyf(why, cap, "out of memory");
		goto fail;
	}
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const uint8_t *)"guardian-bundle", 15) != 0) {
		gd_whyf(why, cap, "no entropy for the signatures");
		goto fail;
	}
	mbedtls_sha256_ret((const uint8_t *)manifest, strlen(manifest), digest, 0);
	text[0] = '[';
	for (size_t i = 0; i < nkeys; i++) {
		size_t n = 0;
		int w;

		if (mbedtls_pk_sign(&pk[i], MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, &n,
				    mbedtls_ctr_drbg_random, &drbg) != 0 ||
		    n > SIG_DER_MAX || b64url_encode(sig, n, sig64, sizeof(sig64)) < 0) {
			gd_whyf(why, cap, "key %zu: signing failed", i + 1);
			goto fail;
		}
		w = snprintf(text + used, BUNDLE_MAX_SIGS_TEXT - used,
			     "%s{\"keyid\":\"%s\",\"sig\":\"%s\"}", i ? "," : "", keyid[i], sig64);
		used += (size_t)w;
		if (used >= BUNDLE_MAX_SIGS_TEXT) {
			gd_whyf(why, cap, "signatures: over %d bytes", BUNDLE_MAX_SIGS_TEXT);
			goto fail;
		}
	}
	if (used + 2 > BUNDLE_MAX_SIGS_TEXT) {
		gd_whyf(why, cap, "signatures: over %d bytes", BUNDLE_MAX_SIGS_TEXT);
		goto fail;
	}
	memcpy(text + used, "]", 2);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return text;
fail:
	free(text);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return NULL;
}

/* Each file hashed and measured, its name its path's last component. */
static int files_measure(const char *const *files, size_t nfiles, struct bundle_manifest *m,
			 uint8_t *buf, char *why, size_t cap)
{
	for (size_t i = 0; i < nfiles; i++) {
		struct bundle_file *bf = &m->files[i];
		const char *name = files[i] != NULL ? base_name(files[i]) : "";
		FILE *f;
		int err;

		if (!file_name_ok(name)) {
			gd_whyf(why, cap,
				"%s: \"%s\" is not a plain file name (1 to 63 of A-Z a-z 0-9 . _ "
				"-)",
				files[i] != NULL ? files[i] : "(null)", name);
			return GD_EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(m->files[j].name, name) == 0) {
				gd_whyf(why, cap, "%s: a second file named %s (first %s)", files[i],
					name, files[j]);
				return GD_EINVAL;
			}
		}
		strcpy(bf->name, name);
		f = fopen(files[i], "rbe");
		if (f == NULL) {
			gd_whyf(why, cap, "%s: %s", files[i], strerror(errno));
			return GD_EIO;
		}
		err = hash_stream(f, NULL, bf->sha256, &bf->length, buf);
		fclose(f);
		if (err == GD_ERANGE)
			gd_whyf(why, cap, "%s: over the limit of %u bytes", files[i],
				BUNDLE_MAX_FILE);
		else if (err != 0)
			gd_whyf(why, cap, "%s: %s", files[i], strerror(errno));
		if (err != 0)
			return err;
	}
	m->nfiles = nfiles;
	return 0;
}

/* The bundle into the open 'out': the head, then each file copied, hashed again on the way: a
 * file that changed since it was measured would make a bundle no device takes. */
static int bundle_write(FILE *out, const char *manifest, const char *sigs,
			const struct bundle_manifest *m, const char *const *files, uint8_t *buf,
			char *why, size_t cap)
{
	if (fprintf(out, BUNDLE_MAGIC "\nmanifest %zu\n%ssignatures %zu\n%s", strlen(manifest),
		    manifest, strlen(sigs), sigs) < 0) {
		gd_whyf(why, cap, "writing the bundle: %s", strerror(errno));
		return GD_EIO;
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct bundle_file *bf = &m->files[i];
		uint8_t digest[32];
		uint64_t len;
		FILE *f;
		int err;

		if (fprintf(out, "file %s %llu\n", bf->name, (unsigned long long)bf->length) < 0) {
			gd_whyf(why, cap, "writing the bundle: %s", strerror(errno));
			return GD_EIO;
		}
		f = fopen(files[i], "rbe");
		if (f == NULL) {
			gd_whyf(why, cap, "%s: %s", files[i], strerror(errno));
			return GD_EIO;
		}
		err = hash_stream(f, out, digest, &len, buf);
		fclose(f);
		if (err != 0) {
			gd_whyf(why, cap, "%s: copying into the bundle: %s", files[i],
				strerror(errno));
			return GD_EIO;
		}
		if (len != bf->length || memcmp(digest, bf->sha256, sizeof(digest)) != 0) {
			gd_whyf(why, cap, "%s: changed while the bundle was made", files[i]);
			return GD_EIO;
		}
	}
	return 0;
}

int bundle_create(const char *out_path, uint64_t version, const char *device_class,
		  int64_t expires_ms, const char *const *files, size_t nfiles,
		  const char *const *key_pems, size_t nkeys, char *why, size_t cap)
{
	mbedtls_pk_context pk[BUNDLE_MAX_SIGS];
	char keyid[BUNDLE_MAX_SIGS][BUNDLE_KEYID_HEX + 1];
	struct bundle_manifest *m = calloc(1, sizeof(*m));
	uint8_t *buf = malloc(CHUNK);
	char *manifest = NULL, *sigs = NULL, tmp[PATH_MAX];
	FILE *out = NULL;
	int err = GD_EINVAL, fd = -1;
	size_t nk = nkeys <= BUNDLE_MAX_SIGS ? nkeys : 0;

	for (size_t i = 0; i < nk; i++)
		mbedtls_pk_init(&pk[i]);
	tmp[0] = '\0';
	if (m == NULL || buf == NULL) {
		gd_whyf(why, cap, "out of memory");
		err = GD_ENOMEM;
		goto out;
	}
	if (out_path == NULL || files == NULL || key_pems == NULL) {
		gd_whyf(why, cap, "no output, files or keys given");
		goto out;
	}
	if (version < 1 || version > (UINT64_C(1) << 53)) {
		gd_whyf(why, cap, "version %llu: not from 1 to 2^53", (unsigned long long)version);
		goto out;
	}
	if (device_class == NULL || !conf_valid_name(device_class)) {
		gd_whyf(why, cap, "device class \"%s\": not a name (1 to 63 of A-Z a-z 0-9 . _ -)",
			device_class != NULL ? device_class : "");
		goto out;
	}
	m->version = version;
	strcpy(m->device_class, device_class);
	m->created_ms = gd_now_ms();
	m->expires_ms = expires_ms;
	if (expires_ms <= m->created_ms || expires_ms > (INT64_C(1) << 53)) {
		gd_whyf(why, cap, "expires %lld: not in the future", (long long)expires_ms);
		goto out;
	}
	if (nfiles < 1 || nfiles > BUNDLE_MAX_FILES) {
		gd_whyf(why, cap, "%zu files: a bundle holds 1 to %d", nfiles, BUNDLE_MAX_FILES);
		goto out;
	}
	if (nkeys < 1 || nkeys > BUNDLE_MAX_SIGS) {
		gd_whyf(why, cap, "%zu keys: a bundle is signed by 1 to %d", nkeys,
			BUNDLE_MAX_SIGS);
		goto out;
	}
	err = signers_load(key_pems, nkeys, pk, keyid, why, cap);
	if (err == 0)
		err = files_measure(files, nfiles, m, buf, why, cap);
	if (err != 0)
		goto out;
	err = GD_EINVAL;
	manifest = manifest_text(m);
	if (manifest == NULL) {
		gd_whyf(why, cap, "manifest: over %d bytes", BUNDLE_MAX_MANIFEST);
		goto out;
	}
	sigs = sigs_text(manifest, pk, keyid, nkeys, why, cap);
	if (sigs == NULL)
		goto out;
	/* A temp file beside it, renamed over it once whole and synced. */
	err = GD_EIO;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", out_path) >= sizeof(tmp)) {
		gd_whyf(why, cap, "%s: path too long", out_path);
		tmp[0] = '\0';
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0644) != 0 || (out = fdopen(fd, "wb")) == NULL) {
		gd_whyf(why, cap, "%s: %s", out_path, strerror(errno));
		if (fd < 0)
			tmp[0] = '\0';
		goto out;
	}
	fd = -1;
	err = bundle_write(out, manifest, sigs, m, files, buf, why, cap);
	if (err != 0)
		goto out;
	err = GD_EIO;
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		gd_whyf(why, cap, "%s: %s", out_path, strerror(errno));
		goto out;
	}
	if (fclose(out) != 0) {
		out = NULL;
		gd_whyf(why, cap, "%s: %s", out_path, strerror(errno));
		goto out;
	}
	out = NULL;
	if (rename(tmp, out_path) != 0) {
		gd_whyf(why, cap, "%s: %s", out_path, strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	err = gd_sync_parent(out_path);
	if (err != 0)
		gd_whyf(why, cap, "the directory of %s: %s", out_path, strerror(errno));
out:
	if (out != NULL)
		fclose(out);
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0')
		unlink(tmp);
	for (size_t i = 0; i < nk; i++)
		mbedtls_pk_free(&pk[i]);
	free(manifest);
	free(sigs);
	free(m);
	free(buf);
	return err;
}
