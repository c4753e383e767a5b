/* test_bundle.c: signed update bundles: the good path staged exactly, a crafted bundle for every
 * refusal, k of n, truncation and byte flips, and the release command that makes them. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "../../base/base.h"
#include "../../proto/b64url.h"
#include "../../proto/bundle.h"
#include "../../service/service.h"

#define CLASS  "press-line"
#define NKEYS  3 /* keys 0 and 1 are trusted, key 2 is not */
#define DAY_MS (86400 * INT64_C(1000))
/* SHA-256 of no bytes (sha256sum </dev/null). */
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* An update key made for the test. */
struct tkey {
	mbedtls_pk_context pk;
	char pub[512], priv[1024];
};

static char tmp[64], stage[128], bpath[128];
static struct tkey keys[NKEYS];
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static int64_t now;

static void setup(void)
{
	log_set_level(LOG_LEVEL_WARN);
	strcpy(tmp, "/tmp/test_bundle.XXXXXX");
	cr_assert_not_null(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
	snprintf(stage, sizeof(stage), "%s/stage", tmp);
	snprintf(bpath, sizeof(bpath), "%s/update.bundle", tmp);
	cr_assert_eq(mkdir(stage, 0700), 0);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	cr_assert_eq(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), 0);
	for (int i = 0; i < NKEYS; i++) {
		struct tkey *k = &keys[i];

		mbedtls_pk_init(&k->pk);
		cr_assert_eq(mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)),
			     0);
		cr_assert_eq(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(k->pk),
						 mbedtls_ctr_drbg_random, &drbg),
			     0);
		cr_assert_eq(mbedtls_pk_write_pubkey_pem(&k->pk, (uint8_t *)k->pub, sizeof(k->pub)),
			     0);
		cr_assert_eq(mbedtls_pk_write_key_pem(&k->pk, (uint8_t *)k->priv, sizeof(k->priv)),
			     0);
	}
	now = gd_now_ms();
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void teardown(void)
{
	nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	for (int i = 0; i < NKEYS; i++)
		mbedtls_pk_free(&keys[i].pk);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
}

TestSuite(bundle, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------------------ */

/* A file as the test means it: its name and bytes. */
struct tfile {
	const char *name;
	const char *data;
	size_t len;
};

static const char prog[] = "\x7f"
			   "ELF not really a program, but bytes\n\x01\x02\x03";
static const char site[] = "{\"site\":\"plant-4\"}\n";
static const char policy[] = "{\"rules\":[]}\n";
#define STD_FILES                                                                                  \
	{ "guardian", prog, sizeof(prog) - 1 }, { "site.json", site, sizeof(site) - 1 },           \
	{                                                                                          \
		"policy.json", policy, sizeof(policy) - 1                                          \
	}
static const struct tfile std_files[] = { STD_FILES };

static void sha_hex(const void *data, size_t len, char out[65])
{
	uint8_t d[32];

	mbedtls_sha256_ret(data, len, d, 0);
	gd_hex_encode(d, sizeof(d), out);
}

/* The manifest JSON for 'f', as a signer writes it. */
static void manifest_make(char *out, size_t cap, uint64_t version, const char *cls, int64_t expires,
			  const struct tfile *f, size_t n)
{
	size_t used = (size_t)snprintf(out, cap,
				       "{\"type\":\"guardian-update\",\"version\":%llu,"
				       "\"device_class\":\"%s\",\"created\":%lld,\"expires\":%lld,"
				       "\"files\":[",
				       (unsigned long long)version, cls, (long long)(now - 1000),
				       (long long)expires);

	for (size_t i = 0; i < n; i++) {
		char hex[65];

		sha_hex(f[i].data, f[i].len, hex);
		used += (size_t)snprintf(out + used, cap - used,
					 "%s{\"name\":\"%s\",\"sha256\":\"%s\",\"length\":%zu}",
					 i ? "," : "", f[i].name, hex, f[i].len);
	}
	snprintf(out + used, cap - used, "]}");
	cr_assert_lt(used + 2, cap);
}

/* The signatures section: key signers[i] over 'text' each. */
static void sigs_make(char *out, size_t cap, const char *text, const int *signers, size_t n)
{
	uint8_t digest[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	char sig64[200], keyid[BUNDLE_KEYID_HEX + 1];
	size_t used = (size_t)snprintf(out, cap, "[");

	mbedtls_sha256_ret((const uint8_t *)text, strlen(text), digest, 0);
	for (size_t i = 0; i < n; i++) {
		size_t siglen = 0;

		cr_assert_eq(mbedtls_pk_sign(&keys[signers[i]].pk, MBEDTLS_MD_SHA256, digest, 32,
					     sig, &siglen, mbedtls_ctr_drbg_random, &drbg),
			     0);
		cr_assert_geq(b64url_encode(sig, siglen, sig64, sizeof(sig64)), 0);
		cr_assert_eq(bundle_keyid(keys[signers[i]].pub, keyid), 0);
		used += (size_t)snprintf(out + used, cap - used,
					 "%s{\"keyid\":\"%s\",\"sig\":\"%s\"}", i ? "," : "", keyid,
					 sig64);
	}
	snprintf(out + used, cap - used, "]");
}

/* A file section as the bundle carries it: 'stated' in its header (-1: its true length). */
struct tsec {
	const char *name;
	const char *data;
	size_t len;
	long long stated;
};

static void raw_write(const char *path, const char *manifest, const char *sigs,
		      const struct tsec *s, size_t n)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	fprintf(f, "guardian-bundle 1\nmanifest %zu\n%ssignatures %zu\n%s", strlen(manifest),
		manifest, strlen(sigs), sigs);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "file %s %lld\n", s[i].name,
			s[i].stated >= 0 ? s[i].stated : (long long)s[i].len);
		fwrite(s[i].data, 1, s[i].len, f);
	}
	cr_assert_eq(fclose(f), 0);
}

/* The three files in order, as 'manifest' says them, signed by 'signers'. */
static void craft(const char *manifest, const int *signers, size_t nsigners)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT];
	struct tsec s[3];

	sigs_make(sigs, sizeof(sigs), manifest, signers, nsigners);
	for (size_t i = 0; i < 3; i++)
		s[i] = (struct tsec){ std_files[i].name, std_files[i].data, std_files[i].len, -1 };
	raw_write(bpath, manifest, sigs, s, 3);
}

static char std_manifest[BUNDLE_MAX_MANIFEST];

static const char *manifest_std(uint64_t version, const char *cls, int64_t expires)
{
	manifest_make(std_manifest, sizeof(std_manifest), version, cls, expires, std_files, 3);
	return std_manifest;
}

static const int by0[] = { 0 };

/* Keys 0 and 1 trusted, 'threshold' of them needed, this device a press-line above 'floor'. */
static enum bundle_refusal verify_k(const char *path, size_t threshold, uint64_t floor, int64_t at,
				    struct bundle_manifest *m, char *why, size_t cap)
{
	const char *pems[2] = { keys[0].pub, keys[1].pub };
	struct bundle_trust trust = { .key_pems = pems,
				      .nkeys = 2,
				      .threshold = threshold,
				      .device_class = CLASS,
				      .floor = floor,
				      .now_ms = at };

	return bundle_verify_extract(path, &trust, stage, m, why, cap);
}

static size_t stage_count(void)
{
	DIR *d = opendir(stage);
	struct dirent *e;
	size_t n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

/* Verifies bpath with threshold 1, floor 6, now; expects 'want', a 'why' holding 'words', and
 * an empty staging directory. */
static void expect_refusal(enum bundle_refusal want, const char *words)
{
	char why[512] = "";
	enum bundle_refusal got = verify_k(bpath, 1, 6, now, NULL, why, sizeof(why));

	cr_assert_eq(got, want, "expected %s, got %s: %s", bundle_refusal_names[want],
		     bundle_refusal_names[got], why);
	cr_assert_not_null(strstr(why, words), "\"%s\" not in: %s", words, why);
	cr_assert_eq(stage_count(), 0, "the staging directory is not empty after: %s", why);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void spit(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static void expect_staged(const char *name, const char *data, size_t len, mode_t mode)
{
	char path[256];
	struct stat st;
	size_t n;
	char *got;

	snprintf(path, sizeof(path), "%s/%s", stage, name);
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(st.st_mode & 07777, mode, "%s: mode %o, expected %o", name, st.st_mode & 07777,
		     mode);
	got = slurp(path, &n);
	cr_assert_eq(n, len);
	cr_assert_eq(memcmp(got, data, len), 0, "%s: not the bytes signed", name);
	free(got);
}

/* The three source files of a release, in tmp/src. */
static void sources(char paths[3][128])
{
	char dir[100];

	snprintf(dir, sizeof(dir), "%s/src", tmp);
	cr_assert_eq(mkdir(dir, 0700), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(paths[i], 128, "%s/%s", dir, std_files[i].name);
		spit(paths[i], std_files[i].data, std_files[i].len);
	}
}

/* ---- the good path ------------------------------------------------------------------------ */

Test(bundle, a_created_bundle_is_staged_exactly_with_modes)
{
	char paths[3][128], why[512];
	const char *files[3] = { paths[0], paths[1], paths[2] };
	const char *pems[1] = { keys[0].priv };
	struct bundle_manifest m;

	sources(paths);
	cr_assert_eq(bundle_create(bpath, 7, CLASS, now + 30 * DAY_MS, files, 3, pems, 1, why,
				   sizeof(why)),
		     0, "%s", why);
	cr_assert_eq(verify_k(bpath, 1, 6, now, &m, why, sizeof(why)), BUNDLE_OK, "%s", why);
	cr_assert_eq(m.version, 7);
	cr_assert_str_eq(m.device_class, CLASS);
	cr_assert_eq(m.expires_ms, now + 30 * DAY_MS);
	cr_assert_eq(m.nfiles, 3);
	cr_assert_str_eq(m.files[1].name, "site.json");
	cr_assert_eq(m.files[1].length, sizeof(site) - 1);
	cr_assert_eq(stage_count(), 3);
	expect_staged("guardian", prog, sizeof(prog) - 1, 0700);
	expect_staged("site.json", site, sizeof(site) - 1, 0600);
	expect_staged("policy.json", policy, sizeof(policy) - 1, 0600);
}

Test(bundle, a_crafted_bundle_is_accepted)
{
	char why[512];

	craft(manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	cr_assert_eq(verify_k(bpath, 1, 6, now, NULL, why, sizeof(why)), BUNDLE_OK, "%s", why);
	cr_assert_eq(stage_count(), 3);
}

Test(bundle, a_file_larger_than_a_chunk_streams_through)
{
	size_t len = (64u << 10) * 3 + 17;
	char *big = malloc(len), why[512], manifest[BUNDLE_MAX_MANIFEST],
	     sigs[BUNDLE_MAX_SIGS_TEXT];
	struct tfile f = { "guardian", big, len };
	struct tsec s = { "guardian", big, len, -1 };

	for (size_t i = 0; i < len; i++)
		big[i] = (char)(i * 131 + 7);
	manifest_make(manifest, sizeof(manifest), 7, CLASS, now + DAY_MS, &f, 1);
	sigs_make(sigs, sizeof(sigs), manifest, by0, 1);
	raw_write(bpath, manifest, sigs, &s, 1);
	cr_assert_eq(verify_k(bpath, 1, 6, now, NULL, why, sizeof(why)), BUNDLE_OK, "%s", why);
	expect_staged("guardian", big, len, 0700);
	free(big);
}

/* ---- malformed ---------------------------------------------------------------------------- */

Test(bundle, what_is_not_a_bundle_is_malformed)
{
	static const struct {
		const char *text, *words;
	} cases[] = {
		{ "", "ends before the first line" },
		{ "guardian-bundle 2\n", "not a bundle" },
		{ "GUARDIAN-BUNDLE 1\nmanifest 2\n{}", "not a bundle" },
		{ "guardian-bundle 1\nmanifest 0\n", "length from 1 to 65536" },
		{ "guardian-bundle 1\nmanifest 65537\n", "length from 1 to 65536" },
		{ "guardian-bundle 1\nmanifest 02\n{}", "length from 1 to 65536" },
		{ "guardian-bundle 1\nmanifest -2\n{}", "length from 1 to 65536" },
		{ "guardian-bundle 1\nmanifest 99999999999999999999999\n", "length from 1" },
		{ "guardian-bundle 1\nmanifest 10\n{}", "ends inside manifest" },
		{ "guardian-bundle 1\nmanifest 2\n{}", "ends before signatures" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures 2\n{}", "not a JSON array" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures 4\n[1,]", "not a JSON array" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures 5\n[1,2]", "not a JSON object" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures 4097\n", "length from 1 to 4096" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures "
		  "43\n[{\"keyid\":\"0123456789abcdef\","
		  "\"sig\":\"AAAA\"}]",
		  "not base64url of a DER signature" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures "
		  "43\n[{\"keyid\":\"0123456789ABCDEF\","
		  "\"sig\":\"AAAA\"}]",
		  "keyid is not 16 lower-case hex" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures 22\n[{\"keyid\":\"01234567\"}]",
		  "keyid is not 16" },
		{ "guardian-bundle 1\nmanifest 2\n{}signatures 9\n[{\"x\":1}]", "unknown member" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		spit(bpath, cases[i].text, strlen(cases[i].text));
		expect_refusal(BUNDLE_MALFORMED, cases[i].words);
	}
	/* A line that never ends is not read to its end. */
	{
		char *line = malloc(1 << 20);

		memset(line, 'a', 1 << 20);
		spit(bpath, line, 1 << 20);
		free(line);
		expect_refusal(BUNDLE_MALFORMED, "not a header line");
	}
	/* A NUL in the manifest. */
	spit(bpath, "guardian-bundle 1\nmanifest 3\n{\0}", 32);
	expect_refusal(BUNDLE_MALFORMED, "holds a NUL byte");
}

Test(bundle, more_than_eight_signatures_are_malformed)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT];
	const int nine[9] = { 0, 0, 0, 0, 0, 0, 0, 0, 0 };

	sigs_make(sigs, sizeof(sigs), manifest_std(7, CLASS, now + DAY_MS), nine, 9);
	raw_write(bpath, std_manifest, sigs, NULL, 0);
	expect_refusal(BUNDLE_MALFORMED, "signatures: 9, at most 8");
}

/* The manifest is read only after its signatures verified; then, read strictly. */
Test(bundle, a_signed_manifest_out_of_form_is_malformed)
{
	char hex[65], m[2048];
	static const char *const bad[][2] = {
		{ "not json", "not a JSON object" },
		{ "[1]", "not a JSON object" },
		{ "{\"type\":\"guardian-update\",\"extra\":1}", "unknown member \"extra\"" },
		{ "{\"type\":\"other\"}", "type is not" },
		{ "{\"type\":\"guardian-update\",\"type\":\"guardian-update\"}", "given twice" },
		{ "{\"type\":\"guardian-update\",\"version\":0}", "versions start at 1" },
		{ "{\"type\":\"guardian-update\",\"version\":1.5}", "not a whole number" },
		{ "{\"type\":\"guardian-update\",\"version\":1,\"device_class\":\"a b\"}",
		  "device_class" },
		{ "{\"type\":\"guardian-update\",\"version\":1,\"device_class\":\"x\",\"created\":"
		  "5,"
		  "\"expires\":4,\"files\":[]}",
		  "created (5) is after expires (4)" },
		{ "{\"type\":\"guardian-update\",\"version\":1,\"device_class\":\"x\",\"created\":"
		  "1,"
		  "\"expires\":4,\"files\":[]}",
		  "array of 1 to 32 files" },
	};
	const int s[] = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char sigs[BUNDLE_MAX_SIGS_TEXT];

		sigs_make(sigs, sizeof(sigs), bad[i][0], s, 1);
		raw_write(bpath, bad[i][0], sigs, NULL, 0);
		expect_refusal(BUNDLE_MALFORMED, bad[i][1]);
	}
	/* File entries: a path, a name twice, upper-case hex, a missing length. */
	sha_hex(prog, sizeof(prog) - 1, hex);
	{
		const char *files[][2] = {
			{ "{\"name\":\"..\",\"sha256\":\"" SHA_EMPTY "\",\"length\":1}",
			  "not a plain file name" },
			{ "{\"name\":\"a/b\",\"sha256\":\"" SHA_EMPTY "\",\"length\":1}",
			  "not a plain file name" },
			{ "{\"name\":\"a\",\"sha256\":\"" SHA_EMPTY "\",\"length\":1},{\"name\":"
			  "\"a\",\"sha256\":\"" SHA_EMPTY "\",\"length\":1}",
			  "is file 1's too" },
			{ "{\"name\":\"a\",\"sha256\":\"" SHA_EMPTY "0\",\"length\":1}",
			  "64 lower-case hex" },
			{ "{\"name\":\"a\",\"sha256\":\"" SHA_EMPTY "\"}", "length: missing" },
			{ "{\"name\":\"a\",\"sha256\":\"" SHA_EMPTY "\",\"length\":1,\"mode\":1}",
			  "unknown member \"mode\"" },
		};

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			const char *entry = files[i][0];
			char sigs[BUNDLE_MAX_SIGS_TEXT];

			snprintf(m, sizeof(m),
				 "{\"type\":\"guardian-update\",\"version\":7,\"device_class\":"
				 "\"" CLASS "\",\"created\":1,\"expires\":%lld,\"files\":[%s]}",
				 (long long)(now + DAY_MS), entry);
			sigs_make(sigs, sizeof(sigs), m, s, 1);
			raw_write(bpath, m, sigs, NULL, 0);
			expect_refusal(BUNDLE_MALFORMED, files[i][1]);
		}
		/* Upper-case hex is another spelling of the same digest. */
		for (char *p = hex; *p != '\0'; p++)
			*p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
		{
			char sigs[BUNDLE_MAX_SIGS_TEXT];

			snprintf(m, sizeof(m),
				 "{\"type\":\"guardian-update\",\"version\":7,\"device_class\":"
				 "\"" CLASS
				 "\",\"created\":1,\"expires\":%lld,\"files\":[{\"name\":"
				 "\"guardian\",\"sha256\":\"%s\",\"length\":1}]}",
				 (long long)(now + DAY_MS), hex);
			sigs_make(sigs, sizeof(sigs), m, s, 1);
			raw_write(bpath, m, sigs, NULL, 0);
			expect_refusal(BUNDLE_MALFORMED, "64 lower-case hex");
		}
	}
}

/* Not JSON, but not signed either: the signature is what is refused, the manifest never read. */
Test(bundle, an_unsigned_manifest_is_not_interpreted)
{
	const int s[] = { 0 };
	char sigs[BUNDLE_MAX_SIGS_TEXT];

	sigs_make(sigs, sizeof(sigs), "something else", s, 1);
	raw_write(bpath, "not json at all", sigs, NULL, 0);
	expect_refusal(BUNDLE_BAD_SIGNATURE, "does not verify");
}

Test(bundle, an_oversized_stated_length_is_malformed)
{
	char hex[65], m[1024], sigs[BUNDLE_MAX_SIGS_TEXT];

	sha_hex("", 0, hex);
	snprintf(m, sizeof(m),
		 "{\"type\":\"guardian-update\",\"version\":7,\"device_class\":\"" CLASS "\","
		 "\"created\":1,\"expires\":%lld,\"files\":[{\"name\":\"guardian\",\"sha256\":"
		 "\"%s\",\"length\":%u}]}",
		 (long long)(now + DAY_MS), hex, BUNDLE_MAX_FILE + 1);
	sigs_make(sigs, sizeof(sigs), m, by0, 1);
	raw_write(bpath, m, sigs, NULL, 0);
	expect_refusal(BUNDLE_MALFORMED, "over the limit of 268435456 bytes");
}

Test(bundle, bytes_after_the_last_file_are_malformed)
{
	FILE *f;

	craft(manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	f = fopen(bpath, "ab");
	fputs("junk", f);
	fclose(f);
	expect_refusal(BUNDLE_MALFORMED, "bytes after the last file");
}

/* ---- signatures --------------------------------------------------------------------------- */

Test(bundle, no_signature_is_refused)
{
	struct tsec s[3] = { { "guardian", prog, sizeof(prog) - 1, -1 },
			     { "site.json", site, sizeof(site) - 1, -1 },
			     { "policy.json", policy, sizeof(policy) - 1, -1 } };

	raw_write(bpath, manifest_std(7, CLASS, now + DAY_MS), "[]", s, 3);
	expect_refusal(BUNDLE_BAD_SIGNATURE, "signatures: none");
}

Test(bundle, an_unknown_key_is_refused)
{
	const int s[] = { 2 };

	craft(manifest_std(7, CLASS, now + DAY_MS), s, 1);
	expect_refusal(BUNDLE_BAD_SIGNATURE, "0 distinct update keys of this device signed, 1 "
					     "needed (1 signature by unknown keys");
}

Test(bundle, a_signature_that_does_not_verify_is_refused)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT], m2[BUNDLE_MAX_MANIFEST];
	const int s[] = { 0 };

	/* Key 0's signature over another version's manifest. */
	manifest_make(m2, sizeof(m2), 8, CLASS, now + DAY_MS, std_files, 3);
	sigs_make(sigs, sizeof(sigs), m2, s, 1);
	raw_write(bpath, manifest_std(7, CLASS, now + DAY_MS), sigs, NULL, 0);
	expect_refusal(BUNDLE_BAD_SIGNATURE, "signature 1 (keyid ");
	expect_refusal(BUNDLE_BAD_SIGNATURE, "does not verify over the manifest");
}

/* An unknown key beside a good one is passed over: a key being rolled in. */
Test(bundle, an_unknown_key_beside_a_good_one_is_passed_over)
{
	const int s[] = { 2, 0 };
	char why[512];

	craft(manifest_std(7, CLASS, now + DAY_MS), s, 2);
	cr_assert_eq(verify_k(bpath, 1, 6, now, NULL, why, sizeof(why)), BUNDLE_OK, "%s", why);
}

Test(bundle, two_of_two_needs_two_distinct_keys)
{
	const int one[] = { 0 }, both[] = { 1, 0 }, twice[] = { 0, 0 }, unknown[] = { 0, 2 };
	char why[512];

	craft(manifest_std(7, CLASS, now + DAY_MS), one, 1);
	cr_assert_eq(verify_k(bpath, 2, 6, now, NULL, why, sizeof(why)), BUNDLE_BAD_SIGNATURE);
	cr_assert_not_null(strstr(why, "1 distinct update key of this device signed, 2 needed"),
			   "%s", why);
	cr_assert_eq(stage_count(), 0);

	craft(std_manifest, twice, 2);
	cr_assert_eq(verify_k(bpath, 2, 6, now, NULL, why, sizeof(why)), BUNDLE_BAD_SIGNATURE);
	cr_assert_not_null(strstr(why, "1 by a key already counted"), "%s", why);
	cr_assert_eq(stage_count(), 0);

	craft(std_manifest, unknown, 2);
	cr_assert_eq(verify_k(bpath, 2, 6, now, NULL, why, sizeof(why)), BUNDLE_BAD_SIGNATURE);
	cr_assert_eq(stage_count(), 0);

	craft(std_manifest, both, 2);
	cr_assert_eq(verify_k(bpath, 2, 6, now, NULL, why, sizeof(why)), BUNDLE_OK, "%s", why);
	cr_assert_eq(stage_count(), 3);
}

Test(bundle, a_trust_that_cannot_be_met_refuses_everything)
{
	const char *pems[2] = { keys[0].pub, keys[0].pub };
	const char *bad[1] = { "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" };
	struct bundle_trust t = { .key_pems = pems,
				  .nkeys = 1,
				  .threshold = 2,
				  .device_class = CLASS,
				  .floor = 0,
				  .now_ms = now };
	char why[512];

	craft(manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	cr_assert_eq(bundle_verify_extract(bpath, &t, stage, NULL, why, sizeof(why)),
		     BUNDLE_BAD_SIGNATURE);
	t.threshold = 0;
	cr_assert_eq(bundle_verify_extract(bpath, &t, stage, NULL, why, sizeof(why)),
		     BUNDLE_BAD_SIGNATURE);
	/* The same key twice would count one signer twice. */
	t.nkeys = 2;
	t.threshold = 2;
	cr_assert_eq(bundle_verify_extract(bpath, &t, stage, NULL, why, sizeof(why)),
		     BUNDLE_BAD_SIGNATURE);
	cr_assert_not_null(strstr(why, "the same key as update key 1"), "%s", why);
	t.key_pems = bad;
	t.nkeys = 1;
	t.threshold = 1;
	cr_assert_eq(bundle_verify_extract(bpath, &t, stage, NULL, why, sizeof(why)),
		     BUNDLE_BAD_SIGNATURE);
	cr_assert_not_null(strstr(why, "not a P-256 public key"), "%s", why);
	cr_assert_eq(stage_count(), 0);
}

/* ---- class, expiry, rollback -------------------------------------------------------------- */

Test(bundle, another_device_class_is_refused)
{
	struct bundle_manifest m;
	char why[512];

	craft(manifest_std(7, "paint-shop", now + DAY_MS), by0, 1);
	expect_refusal(BUNDLE_WRONG_CLASS,
		       "device_class \"paint-shop\": this device is \"" CLASS "\"");
	/* What was read is told, to be reported. */
	cr_assert_eq(verify_k(bpath, 1, 6, now, &m, why, sizeof(why)), BUNDLE_WRONG_CLASS);
	cr_assert_eq(m.version, 7);
}

Test(bundle, an_expired_bundle_is_refused)
{
	char why[512];

	craft(manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	cr_assert_eq(verify_k(bpath, 1, 6, now + DAY_MS, NULL, why, sizeof(why)), BUNDLE_EXPIRED,
		     "%s", why);
	cr_assert_not_null(strstr(why, "expired 0 s ago"), "%s", why);
	cr_assert_eq(verify_k(bpath, 1, 6, now + 2 * DAY_MS, NULL, why, sizeof(why)),
		     BUNDLE_EXPIRED);
	cr_assert_not_null(strstr(why, "expired 86400 s ago"), "%s", why);
	cr_assert_eq(stage_count(), 0);
	cr_assert_eq(verify_k(bpath, 1, 6, now + DAY_MS - 1, NULL, why, sizeof(why)), BUNDLE_OK,
		     "%s", why);
}

Test(bundle, a_version_not_above_the_floor_is_rollback)
{
	char why[512];

	craft(manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	cr_assert_eq(verify_k(bpath, 1, 7, now, NULL, why, sizeof(why)), BUNDLE_ROLLBACK);
	cr_assert_not_null(strstr(why, "version 7 is not above 7"), "%s", why);
	cr_assert_eq(verify_k(bpath, 1, 9, now, NULL, why, sizeof(why)), BUNDLE_ROLLBACK);
	cr_assert_eq(stage_count(), 0);
	cr_assert_eq(verify_k(bpath, 1, 6, now, NULL, why, sizeof(why)), BUNDLE_OK, "%s", why);
}

/* ---- endless data ------------------------------------------------------------------------- */

Test(bundle, a_section_longer_than_stated_is_endless_data)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT], more[sizeof(site) + 100];
	struct tsec s[3] = { { "guardian", prog, sizeof(prog) - 1, -1 },
			     { "site.json", more, sizeof(more), -1 },
			     { "policy.json", policy, sizeof(policy) - 1, -1 } };

	memcpy(more, site, sizeof(site) - 1);
	memset(more + sizeof(site) - 1, 'x', sizeof(more) - sizeof(site) + 1);
	sigs_make(sigs, sizeof(sigs), manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	raw_write(bpath, std_manifest, sigs, s, 3);
	/* "guardian" was staged before: it goes too. */
	expect_refusal(BUNDLE_ENDLESS, "file site.json: the section holds 120 bytes, the "
				       "manifest says 19 (endless data)");

	s[1] = (struct tsec){ "site.json", site, sizeof(site) - 1, 99999999999999LL };
	raw_write(bpath, std_manifest, sigs, s, 3);
	expect_refusal(BUNDLE_ENDLESS, "the section holds over 268435456 bytes");
}

/* Data that never ends, from a pipe: refused at the section's header, never read to its end. */
Test(bundle, an_endless_stream_is_refused_without_reading_it)
{
	char fifo[160], sigs[BUNDLE_MAX_SIGS_TEXT], why[512];
	pid_t pid;
	int status;

	snprintf(fifo, sizeof(fifo), "%s/fifo", tmp);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	sigs_make(sigs, sizeof(sigs), manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		static char zeros[65536];
		FILE *f;

		signal(SIGPIPE, SIG_IGN);
		alarm(20);
		f = fopen(fifo, "wb");
		if (f == NULL)
			_exit(2);
		fprintf(f, "guardian-bundle 1\nmanifest %zu\n%ssignatures %zu\n%s",
			strlen(std_manifest), std_manifest, strlen(sigs), sigs);
		fprintf(f, "file guardian 18446744073709551615\n");
		while (fwrite(zeros, 1, sizeof(zeros), f) == sizeof(zeros))
			;
		_exit(0);
	}
	cr_assert_eq(verify_k(fifo, 1, 6, now, NULL, why, sizeof(why)), BUNDLE_ENDLESS, "%s", why);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer did not stop");
	cr_assert_eq(stage_count(), 0);
}

/* ---- hash mismatch, mix-and-match --------------------------------------------------------- */

Test(bundle, a_changed_byte_is_hash_mismatch)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT], evil[sizeof(policy)];
	struct tsec s[3] = { { "guardian", prog, sizeof(prog) - 1, -1 },
			     { "site.json", site, sizeof(site) - 1, -1 },
			     { "policy.json", evil, sizeof(policy) - 1, -1 } };

	memcpy(evil, policy, sizeof(policy));
	evil[3] ^= 1;
	sigs_make(sigs, sizeof(sigs), manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	raw_write(bpath, std_manifest, sigs, s, 3);
	/* Two files were staged before the third failed: none stays. */
	expect_refusal(BUNDLE_HASH_MISMATCH, "file policy.json: SHA-256 ");
}

Test(bundle, a_section_shorter_than_stated_is_hash_mismatch)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT];
	struct tsec s[3] = { { "guardian", prog, sizeof(prog) - 2, -1 },
			     { "site.json", site, sizeof(site) - 1, -1 },
			     { "policy.json", policy, sizeof(policy) - 1, -1 } };

	sigs_make(sigs, sizeof(sigs), manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	raw_write(bpath, std_manifest, sigs, s, 3);
	expect_refusal(BUNDLE_HASH_MISMATCH, "file guardian: the section holds 39 bytes, the "
					     "manifest says 40");
}

Test(bundle, files_mixed_and_matched_are_hash_mismatch)
{
	char sigs[BUNDLE_MAX_SIGS_TEXT], other[sizeof(site)];
	struct tsec swapped[3] = { { "site.json", site, sizeof(site) - 1, -1 },
				   { "guardian", prog, sizeof(prog) - 1, -1 },
				   { "policy.json", policy, sizeof(policy) - 1, -1 } };
	struct tsec renamed[3] = { { "guardian", prog, sizeof(prog) - 1, -1 },
				   { "site2.json", site, sizeof(site) - 1, -1 },
				   { "policy.json", policy, sizeof(policy) - 1, -1 } };
	struct tsec extra[4] = { { "guardian", prog, sizeof(prog) - 1, -1 },
				 { "site.json", site, sizeof(site) - 1, -1 },
				 { "policy.json", policy, sizeof(policy) - 1, -1 },
				 { "backdoor", "x", 1, -1 } };
	struct tsec foreign[3] = { { "guardian", prog, sizeof(prog) - 1, -1 },
				   { "site.json", other, sizeof(site) - 1, -1 },
				   { "policy.json", policy, sizeof(policy) - 1, -1 } };

	sigs_make(sigs, sizeof(sigs), manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	raw_write(bpath, std_manifest, sigs, swapped, 3);
	expect_refusal(BUNDLE_HASH_MISMATCH, "file section 1 is \"site.json\" where the manifest "
					     "has \"guardian\"");
	raw_write(bpath, std_manifest, sigs, renamed, 3);
	expect_refusal(BUNDLE_HASH_MISMATCH, "mix-and-match");
	raw_write(bpath, std_manifest, sigs, extra, 4);
	expect_refusal(BUNDLE_HASH_MISMATCH, "a file section after the manifest's 3 files");
	/* The same name and length from another release. */
	memcpy(other, "{\"site\":\"plant-9\"}\n", sizeof(other));
	raw_write(bpath, std_manifest, sigs, foreign, 3);
	expect_refusal(BUNDLE_HASH_MISMATCH, "file site.json: SHA-256");
	/* A file missing: the bundle ends where it should be. */
	raw_write(bpath, std_manifest, sigs, swapped + 1, 1);
	expect_refusal(BUNDLE_MALFORMED, "the bundle ends before the section of file site.json");
}

/* ---- whatever the bytes ------------------------------------------------------------------- */

static char *std_bundle(size_t *len)
{
	const int s[] = { 0 };

	craft(manifest_std(7, CLASS, now + DAY_MS), s, 1);
	return slurp(bpath, len);
}

Test(bundle, a_bundle_truncated_anywhere_is_refused)
{
	char why[512];
	size_t len;
	char *full = std_bundle(&len);

	for (size_t cut = 0; cut < len; cut++) {
		enum bundle_refusal rc;

		spit(bpath, full, cut);
		rc = verify_k(bpath, 1, 6, now, NULL, why, sizeof(why));
		cr_assert(rc == BUNDLE_MALFORMED || rc == BUNDLE_HASH_MISMATCH ||
				  rc == BUNDLE_BAD_SIGNATURE,
			  "cut at %zu of %zu: %s: %s", cut, len, bundle_refusal_names[rc], why);
		cr_assert_eq(stage_count(), 0, "cut at %zu: %s", cut, why);
	}
	free(full);
}

Test(bundle, a_flipped_byte_anywhere_is_refused)
{
	char why[512];
	size_t len;
	char *full = std_bundle(&len);

	srand(20240611);
	for (int round = 0; round < 600; round++) {
		size_t at = round < (int)len ? (size_t)round : (size_t)rand() % len;
		uint8_t flip = (uint8_t)(1 + rand() % 255);
		enum bundle_refusal rc;

		full[at] ^= (char)flip;
		spit(bpath, full, len);
		full[at] ^= (char)flip;
		rc = verify_k(bpath, 1, 6, now, NULL, why, sizeof(why));
		cr_assert(rc == BUNDLE_MALFORMED || rc == BUNDLE_HASH_MISMATCH ||
				  rc == BUNDLE_BAD_SIGNATURE || rc == BUNDLE_ENDLESS,
			  "byte %zu ^ 0x%02x: %s: %s", at, flip, bundle_refusal_names[rc], why);
		cr_assert_eq(stage_count(), 0, "byte %zu: %s", at, why);
	}
	free(full);
}

/* ---- the staging directory and the bundle file -------------------------------------------- */

Test(bundle, a_staging_directory_not_empty_is_left_alone)
{
	char keep[160], why[512];
	struct stat st;

	craft(manifest_std(7, CLASS, now + DAY_MS), by0, 1);
	snprintf(keep, sizeof(keep), "%s/guardian", stage);
	spit(keep, "old", 3);
	cr_assert_eq(verify_k(bpath, 1, 6, now, NULL, why, sizeof(why)), BUNDLE_IO);
	cr_assert_not_null(strstr(why, "is not empty (it holds guardian)"), "%s", why);
	cr_assert_eq(stat(keep, &st), 0);
	cr_assert_eq(st.st_size, 3);
	unlink(keep);
	cr_assert_eq(verify_k("/nonexistent/b", 1, 6, now, NULL, why, sizeof(why)), BUNDLE_IO);
	cr_assert_not_null(strstr(why, "No such file"), "%s", why);
	cr_assert_eq(stage_count(), 0);
}

Test(bundle, refusal_names_are_distinct)
{
	for (int i = BUNDLE_OK; i <= BUNDLE_IO; i++) {
		cr_assert_not_null(bundle_refusal_names[i]);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(bundle_refusal_names[i], bundle_refusal_names[j]);
	}
	cr_assert_str_eq(bundle_refusal_names[BUNDLE_BAD_SIGNATURE], "bad_signature");
}

/* ---- the signer's side -------------------------------------------------------------------- */

Test(bundle, keyid_is_the_start_of_sha256_of_the_public_key)
{
	uint8_t der[256], d[32];
	char want[17], a[17], b[17];
	int n = mbedtls_pk_write_pubkey_der(&keys[0].pk, der, sizeof(der));

	mbedtls_sha256_ret(der + sizeof(der) - n, (size_t)n, d, 0);
	gd_hex_encode(d, 8, want);
	cr_assert_eq(bundle_keyid(keys[0].pub, a), 0);
	cr_assert_eq(bundle_keyid(keys[0].priv, b), 0);
	cr_assert_str_eq(a, want);
	cr_assert_str_eq(b, want);
	cr_assert_eq(bundle_keyid("not a key", a), GD_EINVAL);
}

Test(bundle, create_refuses_what_no_device_would_take)
{
	char paths[3][128], why[512], dup[160];
	const char *files[3] = { paths[0], paths[1], paths[2] };
	const char *twice[2] = { keys[0].priv, keys[0].priv };
	const char *pub[1] = { keys[0].pub };
	const char *one[1] = { keys[0].priv };
	const char *same_name[2] = { paths[0], dup };
	const char *bad_name[1] = { "/tmp/" };

	sources(paths);
	snprintf(dup, sizeof(dup), "%s/guardian", tmp);
	spit(dup, "x", 1);
	cr_assert_eq(
		bundle_create(bpath, 7, CLASS, now + DAY_MS, files, 3, twice, 2, why, sizeof(why)),
		GD_EINVAL);
	cr_assert_not_null(strstr(why, "key 2 is key 1 again"), "%s", why);
	cr_assert_eq(
		bundle_create(bpath, 7, CLASS, now + DAY_MS, files, 3, pub, 1, why, sizeof(why)),
		GD_EINVAL);
	cr_assert_not_null(strstr(why, "not a P-256 private key"), "%s", why);
	cr_assert_eq(bundle_create(bpath, 7, CLASS, now + DAY_MS, same_name, 2, one, 1, why,
				   sizeof(why)),
		     GD_EINVAL);
	cr_assert_not_null(strstr(why, "a second file named guardian"), "%s", why);
	cr_assert_eq(
		bundle_create(bpath, 7, CLASS, now + DAY_MS, bad_name, 1, one, 1, why, sizeof(why)),
		GD_EINVAL);
	cr_assert_eq(
		bundle_create(bpath, 0, CLASS, now + DAY_MS, files, 3, one, 1, why, sizeof(why)),
		GD_EINVAL);
	cr_assert_eq(
		bundle_create(bpath, 7, "a b", now + DAY_MS, files, 3, one, 1, why, sizeof(why)),
		GD_EINVAL);
	cr_assert_eq(bundle_create(bpath, 7, CLASS, now - 1, files, 3, one, 1, why, sizeof(why)),
		     GD_EINVAL);
	cr_assert_eq(access(bpath, F_OK), -1, "a refused bundle was written");
}

Test(bundle, inspect_reads_the_form_only)
{
	char paths[3][128], why[512], k0[17], k1[17];
	const char *files[3] = { paths[0], paths[1], paths[2] };
	const char *pems[2] = { keys[0].priv, keys[2].priv };
	struct bundle_info info;

	sources(paths);
	cr_assert_eq(
		bundle_create(bpath, 9, CLASS, now + DAY_MS, files, 3, pems, 2, why, sizeof(why)),
		0, "%s", why);
	cr_assert_eq(bundle_inspect(bpath, &info, why, sizeof(why)), BUNDLE_OK, "%s", why);
	bundle_keyid(keys[0].pub, k0);
	bundle_keyid(keys[2].pub, k1);
	cr_assert_eq(info.nsigs, 2);
	cr_assert_str_eq(info.keyids[0], k0);
	cr_assert_str_eq(info.keyids[1], k1);
	cr_assert_eq(info.m.version, 9);
	cr_assert_eq(info.nsections, 3);
	cr_assert_str_eq(info.sections[2].name, "policy.json");
	cr_assert_eq(info.sections[2].length, sizeof(policy) - 1);
	cr_assert_not_null(strstr(info.manifest, "\"type\":\"guardian-update\""));
	bundle_info_free(&info);
}

/* guardian-service release keygen, sign, show, as a person runs them. */
Test(bundle, the_release_command_makes_keys_and_signs)
{
	char key[160], pub[160], out[160], paths[3][128], why[512], ver[] = "12";
	struct stat st;
	const char *pem;
	char *text;
	size_t len;

	cr_redirect_stdout();
	cr_redirect_stderr();
	sources(paths);
	snprintf(key, sizeof(key), "%s/update.pem", tmp);
	snprintf(pub, sizeof(pub), "%s/update.pub.pem", tmp);
	snprintf(out, sizeof(out), "%s/r.bundle", tmp);
	{
		char *argv[] = { "release", "keygen", "-o", key, NULL };

		cr_assert_eq(release_main(4, argv), 0);
		/* Never over an existing key. */
		cr_assert_eq(release_main(4, argv), 1);
	}
	cr_assert_eq(stat(key, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(stat(pub, &st), 0);
	{
		char *argv[] = { "release", "sign",    "-o",	     out,     "--version",
				 ver,	    "--class", "press-line", "--key", key,
				 paths[0],  paths[1],  paths[2],     NULL };

		cr_assert_eq(release_main(13, argv), 0);
	}
	{
		char *argv[] = { "release", "show", out, NULL };

		cr_assert_eq(release_main(3, argv), 0);
	}
	{
		char *argv[] = { "release", "sign", "-o", out, "--class", "x", NULL };

		cr_assert_eq(release_main(6, argv), 2);
	}
	text = slurp(pub, &len);
	pem = text;
	{
		struct bundle_trust t = { .key_pems = &pem,
					  .nkeys = 1,
					  .threshold = 1,
					  .device_class = CLASS,
					  .floor = 11,
					  .now_ms = gd_now_ms() };
		struct bundle_manifest m;

		cr_assert_eq(bundle_verify_extract(out, &t, stage, &m, why, sizeof(why)), BUNDLE_OK,
			     "%s", why);
		cr_assert_eq(m.version, 12);
		/* The default: 30 days. */
		cr_assert_gt(m.expires_ms, t.now_ms + 29 * DAY_MS);
		cr_assert_leq(m.expires_ms, t.now_ms + 30 * DAY_MS);
	}
	free(text);
}
