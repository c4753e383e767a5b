/* store_checks.c: the store conformance checks (store_checks.h), written against store.h only so
 * that every backend runs the same ones. Each is built to catch what a broken backend would do:
 * a list out of order, an attestation key lost on a put without one, an earlier certificate left
 * in force, an expired one kept, a duplicate delivery taken for a replay. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "store_checks.h"

#define WHY 512

static const char cert_a[] = "-----BEGIN CERTIFICATE-----\nMIIBoven2AAAA\nQUJD\n"
			     "-----END CERTIFICATE-----\n";
static const char cert_b[] = "-----BEGIN CERTIFICATE-----\nMIIBoven10BBBB\n"
			     "-----END CERTIFICATE-----\n";
static const char cert_b2[] = "-----BEGIN CERTIFICATE-----\nMIIBoven10renewed\n"
			      "-----END CERTIFICATE-----\n";
static const char cert_c[] = "-----BEGIN CERTIFICATE-----\nMIIBalpha\n"
			     "-----END CERTIFICATE-----\n";
static const char ak_k[] = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ\n"
			   "-----END PUBLIC KEY-----\n";
static const char ak_k2[] = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0second\n"
			    "-----END PUBLIC KEY-----\n";

/* Whether two JSON texts hold the same document (a backend may store it reformatted). */
static bool json_same(const char *a, const char *b)
{
	cJSON *ja = a != NULL ? cJSON_Parse(a) : NULL, *jb = b != NULL ? cJSON_Parse(b) : NULL;
	bool same = ja != NULL && jb != NULL && cJSON_Compare(ja, jb, true);

	cJSON_Delete(ja);
	cJSON_Delete(jb);
	return same;
}

static bool same_str(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ---- devices ---------------------------------------------------------------------------- */

static void expect_device(struct store *st, const char *name, const char *cert, const char *ak)
{
	char why[WHY] = "", *got_cert = NULL, *got_ak = NULL;
	int rc = store_device_get(st, name, &got_cert, &got_ak, why, sizeof(why));

	cr_assert_eq(rc, 0, "device_get %s: %d: %s", name, rc, why);
	cr_assert(same_str(got_cert, cert), "device %s: cert %s, expected %s", name,
		  got_cert ? got_cert : "(null)", cert);
	if (ak == NULL)
		cr_assert_null(got_ak, "device %s: an AK (%s) where none was put", name, got_ak);
	else
		cr_assert(same_str(got_ak, ak), "device %s: AK %s, expected %s", name,
			  got_ak ? got_ak : "(null)", ak);
	free(got_cert);
	free(got_ak);
}

static void expect_list(char **got, size_t n, const char *const *want, size_t nwant,
			const char *what)
{
	cr_assert_eq(n, nwant, "%s: %zu entries, expected %zu", what, n, nwant);
	for (size_t i = 0; i < n; i++)
		cr_assert(same_str(got[i], want[i]), "%s[%zu]: \"%s\", expected \"%s\"", what, i,
			  got[i] ? got[i] : "(null)", want[i]);
}

void store_check_devices(struct store *st)
{
	static const char *const sorted[] = { "alpha", "oven-10", "oven-2" };
	char why[WHY] = "", **names = NULL, *json = NULL, *cert = (char *)1, *ak = (char *)1;
	size_t n = 99;
	int rc;

	rc = store_device_list(st, &names, &n, why, sizeof(why));
	cr_assert_eq(rc, 0, "device_list on an empty store: %s", why);
	cr_assert_eq(n, 0, "a fresh store lists %zu devices", n);
	store_strings_free(names, n);

	rc = store_device_get(st, "oven-2", &cert, &ak, why, sizeof(why));
	cr_assert_eq(rc, STORE_NOTFOUND, "device_get of an unknown device: %d (%s)", rc, why);

	/* Put out of order: the list must come back sorted, not in the order of arrival. */
	cr_assert_eq(store_device_put(st, "oven-2", cert_a, NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_device_put(st, "oven-10", cert_b, ak_k, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_device_put(st, "alpha", cert_c, NULL, why, sizeof(why)), 0, "%s", why);
	expect_device(st, "oven-2", cert_a, NULL);
	expect_device(st, "oven-10", cert_b, ak_k);
	expect_device(st, "alpha", cert_c, NULL);
	cr_assert_eq(store_device_get(st, "oven-1", NULL, NULL, why, sizeof(why)), STORE_NOTFOUND,
		     "a prefix of a name found as the device");
	cr_assert_eq(store_device_get(st, "oven-10", NULL, NULL, why, sizeof(why)), 0,
		     "device_get with no output wanted: %s", why);

	/* A new identity certificate without an AK keeps the AK; with one, replaces it. */
	cr_assert_eq(store_device_put(st, "oven-10", cert_b2, NULL, why, sizeof(why)), 0, "%s",
		     why);
	expect_device(st, "oven-10", cert_b2, ak_k);
	cr_assert_eq(store_device_put(st, "oven-10", cert_b2, ak_k2, why, sizeof(why)), 0, "%s",
		     why);
	expect_device(st, "oven-10", cert_b2, ak_k2);
	expect_device(st, "oven-2", cert_a, NULL); /* the others untouched */

	rc = store_device_list(st, &names, &n, why, sizeof(why));
	cr_assert_eq(rc, 0, "device_list: %s", why);
	expect_list(names, n, sorted, 3, "device_list");
	store_strings_free(names, n);

	/* What each device runs: its own, replaced, kept across a new identity certificate. */
	rc = store_installed_get(st, "oven-2", &json, why, sizeof(why));
	cr_assert_eq(rc, STORE_NOTFOUND, "installed_get before any put: %d (%s)", rc, why);
	cr_assert_eq(store_installed_put(st, "oven-2", "{\"guardian\":\"0.3.0\",\"n\":[1,2]}", why,
					 sizeof(why)),
		     0, "installed_put: %s", why);
	cr_assert_eq(
		store_installed_put(st, "oven-10", "{\"guardian\":\"0.2.9\"}", why, sizeof(why)), 0,
		"installed_put: %s", why);
	cr_assert_eq(store_installed_put(st, "oven-2", "{\"guardian\":\"0.3.1\",\"n\":[3]}", why,
					 sizeof(why)),
		     0, "installed_put (replace): %s", why);
	rc = store_installed_get(st, "oven-2", &json, why, sizeof(why));
	cr_assert_eq(rc, 0, "installed_get: %d (%s)", rc, why);
	cr_assert(json_same(json, "{\"guardian\":\"0.3.1\",\"n\":[3]}"),
		  "installed of oven-2 is %s, not the last put", json);
	free(json);
	cr_assert_eq(store_installed_get(st, "alpha", &json, why, sizeof(why)), STORE_NOTFOUND,
		     "alpha has an installed document it was never given");
	cr_assert_eq(store_device_put(st, "oven-10", cert_b, NULL, why, sizeof(why)), 0, "%s", why);
	rc = store_installed_get(st, "oven-10", &json, why, sizeof(why));
	cr_assert_eq(rc, 0, "installed lost on a new identity certificate: %d (%s)", rc, why);
	cr_assert(json_same(json, "{\"guardian\":\"0.2.9\"}"), "installed of oven-10 is %s", json);
	free(json);
	expect_device(st, "oven-10", cert_b, ak_k2);
}

/* ---- nonces ----------------------------------------------------------------------------- */

/* A nonce as nonce.c makes them: the time first (big-endian ms), then 'salt' bytes. */
static void make_nonce(uint8_t nonce[NONCE_LEN], int64_t ts_ms, uint8_t salt)
{
	uint64_t ts = (uint64_t)ts_ms;

	for (int i = 7; i >= 0; i--, ts >>= 8)
		nonce[i] = (uint8_t)ts;
	memset(nonce + 8, salt, NONCE_LEN - 8);
}

static int consume(struct store *st, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
		   uint8_t tag_byte, bool *dup)
{
	uint8_t tag[16];
	char why[WHY] = "";
	int rc;

	memset(tag, tag_byte, sizeof(tag));
	*dup = true; /* a backend that forgets to set it is caught on a first use */
	rc = store_nonce_consume(st, nonce, ts_ms, tag, dup, why, sizeof(why));
	cr_assert(rc == 0 || rc == STORE_USED, "nonce_consume: %d (%s)", rc, why);
	return rc;
}

void store_check_nonces(struct store *st)
{
	const int64_t t0 = 1763744523000LL;
	uint8_t n1[NONCE_LEN], n2[NONCE_LEN], n3[NONCE_LEN], n2b[NONCE_LEN];
	char why[WHY] = "";
	bool dup;
	int rc;

	make_nonce(n1, t0, 0x11);
	make_nonce(n2, t0 + 1000, 0x22);
	make_nonce(n3, t0 + 2000, 0x33);
	memcpy(n2b, n2, NONCE_LEN);
	n2b[NONCE_LEN - 1] ^= 1; /* differs in its last byte only */

	cr_assert_eq(consume(st, n1, t0, 0xA1, &dup), 0, "a fresh nonce refused");
	cr_assert_eq(consume(st, n1, t0, 0xA1, &dup), STORE_USED, "a nonce consumed twice");
	cr_assert(dup, "the same delivery again (same tag) not told apart as a duplicate");
	cr_assert_eq(consume(st, n1, t0, 0xB2, &dup), STORE_USED, "a replay accepted");
	cr_assert(!dup, "a replay with another tag taken for a duplicate delivery");
	cr_assert_eq(consume(st, n1, t0, 0xA1, &dup), STORE_USED, "");
	cr_assert(dup, "the first tag forgotten after a replay with another");

	cr_assert_eq(consume(st, n2, t0 + 1000, 0xA1, &dup), 0, "a second nonce refused");
	cr_assert_eq(consume(st, n2b, t0 + 1000, 0xA1, &dup), 0,
		     "a nonce that differs in its last byte taken for another");
	cr_assert_eq(consume(st, n3, t0 + 2000, 0xC3, &dup), 0, "a third nonce refused");

	/* Before t0 + 1000: n1 only (n2 and n2b were made at t0 + 1000 exactly, so are kept). */
	rc = store_nonce_sweep(st, t0 + 1000, why, sizeof(why));
	cr_assert_eq(rc, 1, "nonce_sweep before t0+1000 forgot %d nonces, expected 1 (%s)", rc,
		     why);
	cr_assert_eq(consume(st, n2, t0 + 1000, 0xA1, &dup), STORE_USED,
		     "a nonce made at the sweep's bound was forgotten");
	cr_assert_eq(consume(st, n3, t0 + 2000, 0xA1, &dup), STORE_USED,
		     "a newer nonce was forgotten by the sweep");
	cr_assert(!dup, "");
	cr_assert_eq(consume(st, n1, t0, 0xB2, &dup), 0, "a swept nonce is still remembered");
	rc = store_nonce_sweep(st, t0 + 2001, why, sizeof(why));
	cr_assert_eq(rc, 4, "nonce_sweep before t0+2001 forgot %d, expected 4 (%s)", rc, why);
	rc = store_nonce_sweep(st, t0 + 2001, why, sizeof(why));
	cr_assert_eq(rc, 0, "a second sweep forgot %d more (%s)", rc, why);
	cr_assert_eq(consume(st, n3, t0 + 2000, 0xC3, &dup), 0, "");
}

/* ---- references ------------------------------------------------------------------------- */

static uint64_t generation(struct store *st)
{
	char why[WHY] = "";
	uint64_t gen = 0;
	int rc = store_reference_generation(st, &gen, why, sizeof(why));

	cr_assert_eq(rc, 0, "reference_generation: %d (%s)", rc, why);
	return gen;
}

static void expect_references(struct store *st, const char *const *labels, const char *const *jsons,
			      size_t nwant)
{
	char why[WHY] = "", **l = NULL, **j = NULL;
	size_t n = 99;
	int rc = store_reference_all(st, &l, &j, &n, why, sizeof(why));

	cr_assert_eq(rc, 0, "reference_all: %d (%s)", rc, why);
	expect_list(l, n, labels, nwant, "reference_all labels");
	for (size_t i = 0; i < n; i++)
		cr_assert(json_same(j[i], jsons[i]), "reference %s: %s, expected %s", l[i], j[i],
			  jsons[i]);
	store_strings_free(l, n);
	store_strings_free(j, n);
}

void store_check_references(struct store *st)
{
	static const char ja[] = "{\"label\":\"a\",\"pcrs\":{\"10\":\"aa\"}}";
	static const char jb[] = "{\"label\":\"b\",\"events\":[1,2,3]}";
	static const char jb2[] = "{\"label\":\"b\",\"events\":[4]}";
	uint64_t g0, g1, g2, g3, g4;
	char why[WHY] = "";
	int rc;

	g0 = generation(st);
	expect_references(st, NULL, NULL, 0);
	cr_assert_eq(store_reference_put(st, "release-b", jb, why, sizeof(why)), 0, "%s", why);
	g1 = generation(st);
	cr_assert_neq(g1, g0, "the generation did not change on a put");
	cr_assert_eq(store_reference_put(st, "release-a", ja, why, sizeof(why)), 0, "%s", why);
	g2 = generation(st);
	cr_assert(g2 != g1 && g2 != g0, "the generation did not change on a second put");
	expect_references(st, (const char *const[]){ "release-a", "release-b" },
			  (const char *const[]){ ja, jb }, 2);
	cr_assert_eq(generation(st), g2, "the generation changes when nothing did");

	cr_assert_eq(store_reference_put(st, "release-b", jb2, why, sizeof(why)), 0, "%s", why);
	g3 = generation(st);
	cr_assert(g3 != g2 && g3 != g1 && g3 != g0, "the generation did not change on a replace");
	expect_references(st, (const char *const[]){ "release-a", "release-b" },
			  (const char *const[]){ ja, jb2 }, 2);

	rc = store_reference_remove(st, "release-a", why, sizeof(why));
	cr_assert_eq(rc, 0, "reference_remove: %d (%s)", rc, why);
	g4 = generation(st);
	cr_assert(g4 != g3 && g4 != g2 && g4 != g1 && g4 != g0,
		  "the generation did not change on a remove");
	expect_references(st, (const char *const[]){ "release-b" }, (const char *const[]){ jb2 },
			  1);
	rc = store_reference_remove(st, "release-a", why, sizeof(why));
	cr_assert_eq(rc, STORE_NOTFOUND, "removing a removed reference: %d (%s)", rc, why);
	rc = store_reference_remove(st, "release", why, sizeof(why));
	cr_assert_eq(rc, STORE_NOTFOUND, "removing an unknown (prefix) label: %d (%s)", rc, why);
	expect_references(st, (const char *const[]){ "release-b" }, (const char *const[]){ jb2 },
			  1);
}

/* ---- certificates ----------------------------------------------------------------------- */

static void serial_of(uint8_t serial[16], uint8_t dev, unsigned n)
{
	memset(serial, 0, 16);
	serial[0] = 0x40 | dev; /* positive, as an X.509 serial */
	serial[14] = (uint8_t)(n >> 8);
	serial[15] = (uint8_t)n;
}

static int issued(struct store *st, const char *dev, const uint8_t serial[16], int64_t not_after,
		  int64_t now)
{
	char why[WHY] = "";
	int rc = store_cert_issued(st, dev, serial, not_after, now, why, sizeof(why));

	cr_assert_geq(rc, 0, "cert_issued %s: %d (%s)", dev, rc, why);
	return rc;
}

static int revoke_device(struct store *st, const char *dev, enum store_revoke_reason reason,
			 int64_t now)
{
	char why[WHY] = "";
	int rc = store_cert_revoke_device(st, dev, reason, now, why, sizeof(why));

	cr_assert_geq(rc, 0, "cert_revoke_device %s: %d (%s)", dev, rc, why);
	return rc;
}

static size_t revoked_list(struct store *st, int64_t now, struct store_revoked **out)
{
	char why[WHY] = "";
	size_t n = 0;
	int rc = store_cert_revoked(st, now, out, &n, why, sizeof(why));

	cr_assert_eq(rc, 0, "cert_revoked: %d (%s)", rc, why);
	for (size_t i = 1; i < n; i++)
		cr_assert_leq((*out)[i - 1].revoked_s, (*out)[i].revoked_s,
			      "cert_revoked not sorted by revocation time at %zu", i);
	return n;
}

static void expect_revoked(const struct store_revoked *e, const uint8_t serial[16], const char *dev,
			   int64_t not_after, int64_t at, enum store_revoke_reason reason,
			   const char *what)
{
	cr_assert(memcmp(e->serial, serial, 16) == 0, "%s: another serial (%02x..%02x%02x)", what,
		  e->serial[0], e->serial[14], e->serial[15]);
	cr_assert_str_eq(e->dev, dev, "%s: device", what);
	cr_assert_eq(e->not_after_s, not_after, "%s: not_after", what);
	cr_assert_eq(e->revoked_s, at, "%s: revoked at %lld, expected %lld", what,
		     (long long)e->revoked_s, (long long)at);
	cr_assert_eq(e->reason, reason, "%s: reason %d, expected %d", what, (int)e->reason,
		     (int)reason);
}

void store_check_certs(struct store *st)
{
	const int64_t now = 1763744523; /* UTC s; every interval below is far from any skew */
	const int64_t day = 86400;
	uint8_t s1[16], s2[16], s3[16], t1[16], t2[16], many[16];
	struct store_revoked *list = NULL;
	size_t n;
	int rc, d4 = 0;

	serial_of(s1, 1, 1);
	serial_of(s2, 1, 2);
	serial_of(s3, 2, 3);
	serial_of(t1, 3, 1);
	serial_of(t2, 3, 2);

	n = revoked_list(st, now, &list);
	cr_assert_eq(n, 0, "a fresh store revokes %zu certificates", n);
	free(list);

	/* A newer certificate supersedes the earlier one, of that device only. */
	cr_assert_eq(issued(st, "d1", s1, now + day, now), 0, "the first certificate revoked some");
	cr_assert_eq(issued(st, "d2", s3, now + 30 * day, now + 5), 0,
		     "another device's certificate revoked d1's");
	cr_assert_eq(issued(st, "d1", s2, now + 2 * day, now + 10), 1,
		     "the second certificate did not supersede the first");
	n = revoked_list(st, now + 20, &list);
	cr_assert_eq(n, 1, "%zu revoked after one supersession", n);
	expect_revoked(&list[0], s1, "d1", now + day, now + 10, STORE_REVOKE_SUPERSEDED, "s1");
	free(list);

	/* Revoking a device: its certificates in force, once. */
	cr_assert_eq(revoke_device(st, "d2", STORE_REVOKE_REFUSED, now + 30), 1,
		     "d2's certificate not revoked");
	cr_assert_eq(revoke_device(st, "d2", STORE_REVOKE_REFUSED, now + 35), 0,
		     "a revoked certificate revoked again");
	cr_assert_eq(revoke_device(st, "d1", STORE_REVOKE_REFUSED, now + 40), 1,
		     "d1 has one certificate in force (s2), the other is revoked already");
	cr_assert_eq(revoke_device(st, "nobody", STORE_REVOKE_REFUSED, now + 40), 0,
		     "an unknown device had certificates");
	n = revoked_list(st, now + 50, &list);
	cr_assert_eq(n, 3, "%zu revoked, expected 3", n);
	expect_revoked(&list[0], s1, "d1", now + day, now + 10, STORE_REVOKE_SUPERSEDED,
		       "s1 (its first revocation kept)");
	expect_revoked(&list[1], s3, "d2", now + 30 * day, now + 30, STORE_REVOKE_REFUSED, "s3");
	expect_revoked(&list[2], s2, "d1", now + 2 * day, now + 40, STORE_REVOKE_REFUSED, "s2");
	free(list);

	/* Expired: off the list, and forgotten (not listed even at an earlier time). */
	n = revoked_list(st, now + day + day / 2, &list);
	cr_assert_eq(n, 2, "%zu revoked after s1 expired, expected 2", n);
	expect_revoked(&list[0], s3, "d2", now + 30 * day, now + 30, STORE_REVOKE_REFUSED, "s3");
	expect_revoked(&list[1], s2, "d1", now + 2 * day, now + 40, STORE_REVOKE_REFUSED, "s2");
	free(list);
	n = revoked_list(st, now + 50, &list);
	cr_assert_eq(n, 2, "an expired certificate was listed, not forgotten (%zu listed)", n);
	free(list);

	/* An expired certificate is not superseded (it is forgotten), nor revoked. */
	cr_assert_eq(issued(st, "d3", t1, now + 100, now), 0, "");
	cr_assert_eq(issued(st, "d3", t2, now + 10 * day, now + 1000), 0,
		     "an expired certificate revoked as superseded");
	cr_assert_eq(revoke_device(st, "d3", STORE_REVOKE_REFUSED, now + 11 * day), 0,
		     "an expired certificate revoked");

	/* Many certificates for one device: each supersedes the one before; all of them stay
	 * on the list until they expire, each once, whatever the device keeps. */
	for (unsigned i = 0; i < STORE_MAX_PER_DEVICE + 6; i++) {
		serial_of(many, 4, i);
		rc = issued(st, "d4", many, now + 20 * day, now + 100 + i);
		cr_assert_eq(rc, i == 0 ? 0 : 1, "certificate %u of d4 revoked %d", i, rc);
	}
	n = revoked_list(st, now + 200, &list);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].dev, "d4") != 0)
			continue;
		serial_of(many, 4, (unsigned)d4);
		cr_assert(memcmp(list[i].serial, many, 16) == 0,
			  "d4's revoked certificate %d is not the one revoked %d-th", d4, d4);
		cr_assert_eq(list[i].revoked_s, now + 100 + d4 + 1, "");
		d4++;
	}
	cr_assert_eq(d4, STORE_MAX_PER_DEVICE + 5,
		     "%d of d4's %d superseded certificates on the list", d4,
		     STORE_MAX_PER_DEVICE + 5);
	free(list);
	cr_assert_eq(revoke_device(st, "d4", STORE_REVOKE_REFUSED, now + 300), 1,
		     "d4 has one certificate in force, its last");
}

/* ---- reports ---------------------------------------------------------------------------- */

struct merge_ctx {
	int calls;
	bool saw_null;
	char seen[256];
	const char *next; /* what to replace it with */
	int refuse;	  /* non-zero: returned, nothing changed */
};

static int merge(const char *old_json, char **next, void *ctx, char *why, size_t cap)
{
	struct merge_ctx *m = ctx;

	m->calls++;
	m->saw_null = old_json == NULL;
	snprintf(m->seen, sizeof(m->seen), "%s", old_json != NULL ? old_json : "");
	if (m->refuse != 0) {
		snprintf(why, cap, "refused by the test");
		return m->refuse;
	}
	*next = strdup(m->next);
	return *next == NULL ? -1 : 0;
}

static void update(struct store *st, const char *dev, struct merge_ctx *m, int want)
{
	char why[WHY] = "";
	int rc;

	m->calls = 0;
	rc = store_report_update(st, dev, merge, m, why, sizeof(why));
	cr_assert_eq(rc, want, "report_update %s: %d, expected %d (%s)", dev, rc, want, why);
	cr_assert_eq(m->calls, 1, "the merge was called %d times", m->calls);
	if (want > 0 || want < 0)
		cr_assert_str_eq(why, "refused by the test", "the merge's sentence was replaced");
}

static void expect_report(struct store *st, const char *dev, const char *want)
{
	char why[WHY] = "", *json = NULL;
	int rc = store_report_get(st, dev, &json, why, sizeof(why));

	if (want == NULL) {
		cr_assert_eq(rc, STORE_NOTFOUND, "report of %s: %d, expected none (%s)", dev, rc,
			     why);
		return;
	}
	cr_assert_eq(rc, 0, "report_get %s: %d (%s)", dev, rc, why);
	cr_assert(json_same(json, want), "report of %s: %s, expected %s", dev, json, want);
	free(json);
}

void store_check_reports(struct store *st)
{
	static const char *const sorted[] = { "a-dev", "b-dev", "oven-4" };
	struct merge_ctx m = { 0 };
	char why[WHY] = "", **devs = NULL;
	size_t n = 99;

	expect_report(st, "oven-4", NULL);
	cr_assert_eq(store_report_list(st, &devs, &n, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 0, "a fresh store lists %zu reports", n);
	store_strings_free(devs, n);

	m.next = "{\"device\":\"oven-4\",\"reports\":1}";
	update(st, "oven-4", &m, 0);
	cr_assert(m.saw_null, "the first merge was given a document (%s)", m.seen);
	expect_report(st, "oven-4", "{\"device\":\"oven-4\",\"reports\":1}");

	m.next = "{\"device\":\"oven-4\",\"reports\":2}";
	update(st, "oven-4", &m, 0);
	cr_assert(!m.saw_null && json_same(m.seen, "{\"device\":\"oven-4\",\"reports\":1}"),
		  "the merge was given %s, not the stored document", m.saw_null ? "NULL" : m.seen);
	expect_report(st, "oven-4", "{\"device\":\"oven-4\",\"reports\":2}");

	/* A refusal (positive or negative) changes nothing and comes back as it was. */
	m.next = "{\"device\":\"oven-4\",\"reports\":99}";
	m.refuse = 7;
	update(st, "oven-4", &m, 7);
	m.refuse = -2;
	update(st, "oven-4", &m, -2);
	expect_report(st, "oven-4", "{\"device\":\"oven-4\",\"reports\":2}");
	m.refuse = 7;
	update(st, "c-dev", &m, 7);
	cr_assert(m.saw_null, "");
	expect_report(st, "c-dev", NULL);

	m.refuse = 0;
	m.next = "{\"device\":\"b-dev\"}";
	update(st, "b-dev", &m, 0);
	m.next = "{\"device\":\"a-dev\"}";
	update(st, "a-dev", &m, 0);
	expect_report(st, "b-dev", "{\"device\":\"b-dev\"}");
	expect_report(st, "a-dev", "{\"device\":\"a-dev\"}");
	cr_assert_eq(store_report_list(st, &devs, &n, why, sizeof(why)), 0, "%s", why);
	expect_list(devs, n, sorted, 3, "report_list (c-dev was refused)");
	store_strings_free(devs, n);
}

/* ---- the race --------------------------------------------------------------------------- */

#define RACERS 32

/* What a racer exits with. */
enum racer_exit { RACER_WON = 0, RACER_USED = 1, RACER_FAILED = 2, RACER_DUP = 3 };

/* A child: opens its own store, says it is ready, waits for the release (the pipe's end), then
 * consumes the nonce with its own tag. Never returns. */
static _Noreturn void racer(int i, const char *dir, const struct store_config *cfg,
			    const uint8_t nonce[NONCE_LEN], int64_t ts_ms, int ready_fd,
			    int release_fd)
{
	struct store *st = NULL;
	char why[WHY] = "", byte = 'r';
	uint8_t tag[16];
	bool dup = false;
	int rc;

	alarm(60); /* whatever happens to the parent, this process ends */
	memset(tag, i, sizeof(tag));
	rc = store_open(dir, cfg, false, &st, why, sizeof(why));
	if (rc != 0) {
		fprintf(stderr, "racer %d: store_open: %s\n", i, why);
		byte = 'f'; /* counted as ready: the parent need not wait for it */
		if (write(ready_fd, &byte, 1) != 1)
			_exit(RACER_FAILED);
		_exit(RACER_FAILED);
	}
	if (write(ready_fd, &byte, 1) != 1 || read(release_fd, &byte, 1) != 0)
		_exit(RACER_FAILED);
	rc = store_nonce_consume(st, nonce, ts_ms, tag, &dup, why, sizeof(why));
	store_close(st);
	if (rc == 0)
		_exit(RACER_WON);
	if (rc == STORE_USED)
		_exit(dup ? RACER_DUP : RACER_USED);
	fprintf(stderr, "racer %d: nonce_consume: %d: %s\n", i, rc, why);
	_exit(RACER_FAILED);
}

void store_check_nonce_race(const char *dir, const struct store_config *cfg)
{
	const int64_t ts = 1763744523000LL;
	int ready[2] = { -1, -1 }, release[2] = { -1, -1 }, winner = -1, status;
	int exits[RACERS], won = 0, used = 0, failed = 0, dups = 0, started = 0, readied = 0;
	pid_t pids[RACERS];
	struct store *st = NULL;
	uint8_t nonce[NONCE_LEN], tag[16];
	char why[WHY] = "";
	bool dup;
	int rc;

	make_nonce(nonce, ts, 0x5a);
	/* The schema, made before anyone races; the racers open without 'create'. */
	rc = store_open(dir, cfg, true, &st, why, sizeof(why));
	cr_assert_eq(rc, 0, "store_open: %s", why);
	store_close(st);
	st = NULL;

	cr_assert_eq(pipe(ready), 0, "pipe: %s", strerror(errno));
	cr_assert_eq(pipe(release), 0, "pipe: %s", strerror(errno));
	fflush(NULL);
	for (int i = 0; i < RACERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(ready[0]);
			close(release[1]);
			racer(i, dir, cfg, nonce, ts, ready[1], release[0]);
		}
		if (pids[i] < 0)
			break;
		started++;
	}
	close(ready[1]);
	close(release[0]);
	/* Every racer with its store open (or dead: EOF), then all released at once. */
	while (readied < started) {
		struct pollfd p = { .fd = ready[0], .events = POLLIN };
		char buf[RACERS];
		ssize_t got;

		if (poll(&p, 1, 30000) <= 0)
			break;
		got = read(ready[0], buf, sizeof(buf));
		if (got <= 0)
			break;
		readied += (int)got;
	}
	close(ready[0]);
	close(release[1]); /* the release: every read() sees the end of the pipe */
	for (int i = 0; i < started; i++) {
		if (waitpid(pids[i], &status, 0) != pids[i]) {
			exits[i] = RACER_FAILED;
			continue;
		}
		exits[i] = WIFEXITED(status) ? WEXITSTATUS(status) : RACER_FAILED;
	}
	/* Counted only now: every child has been waited for, whatever the result. */
	for (int i = 0; i < started; i++) {
		switch (exits[i]) {
		case RACER_WON:
			won++;
			winner = i;
			break;
		case RACER_USED:
			used++;
			break;
		case RACER_DUP:
			dups++;
			break;
		default:
			failed++;
		}
	}
	cr_assert_eq(started, RACERS, "only %d of %d processes started", started, RACERS);
	cr_assert_eq(readied, RACERS, "only %d of %d racers opened their store", readied, RACERS);
	cr_assert_eq(failed, 0, "%d racers failed (their stderr above)", failed);
	cr_assert_eq(dups, 0, "%d racers with another tag were told 'duplicate'", dups);
	cr_assert_eq(won, 1, "%d racers won the nonce, expected exactly 1", won);
	cr_assert_eq(used, RACERS - 1, "%d racers saw it used", used);

	/* The stored tag is the winner's: the same delivery again is a duplicate, only for it. */
	rc = store_open(dir, cfg, false, &st, why, sizeof(why));
	cr_assert_eq(rc, 0, "store_open after the race: %s", why);
	for (int i = 0; i < RACERS; i++) {
		memset(tag, i, sizeof(tag));
		rc = store_nonce_consume(st, nonce, ts, tag, &dup, why, sizeof(why));
		if (rc != STORE_USED || dup != (i == winner))
			store_close(st);
		cr_assert_eq(rc, STORE_USED, "the raced nonce consumed again by %d: %d (%s)", i, rc,
			     why);
		cr_assert_eq(dup, i == winner, "racer %d (winner %d): duplicate %d", i, winner,
			     (int)dup);
	}
	store_close(st);
}

/* ---- across handles --------------------------------------------------------------------- */

static struct store *open_store(const char *dir, const struct store_config *cfg, bool create)
{
	struct store *st = NULL;
	char why[WHY] = "";
	int rc = store_open(dir, cfg, create, &st, why, sizeof(why));

	cr_assert_eq(rc, 0, "store_open %s (create %d): %d (%s)", dir, (int)create, rc, why);
	return st;
}

/* One of each kind of record, put through 'st'. */
static void put_one_of_each(struct store *st, uint8_t salt)
{
	char why[WHY] = "", dev[32], label[32];
	uint8_t nonce[NONCE_LEN], tag[16], serial[16];
	struct merge_ctx m = { .next = "{\"kept\":true}" };
	bool dup;

	snprintf(dev, sizeof(dev), "dev-%02x", salt);
	snprintf(label, sizeof(label), "ref-%02x", salt);
	cr_assert_eq(store_device_put(st, dev, cert_a, ak_k, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(store_installed_put(st, dev, "{\"v\":1}", why, sizeof(why)), 0, "%s", why);
	make_nonce(nonce, 1763744523000LL, salt);
	memset(tag, salt, sizeof(tag));
	cr_assert_eq(store_nonce_consume(st, nonce, 1763744523000LL, tag, &dup, why, sizeof(why)),
		     0, "%s", why);
	cr_assert_eq(store_reference_put(st, label, "{\"r\":1}", why, sizeof(why)), 0, "%s", why);
	serial_of(serial, salt & 0x0f, 1);
	cr_assert_eq(store_cert_issued(st, dev, serial, 1763744523 + 86400, 1763744523, why,
				       sizeof(why)),
		     0, "%s", why);
	serial_of(serial, salt & 0x0f, 2);
	cr_assert_eq(store_cert_issued(st, dev, serial, 1763744523 + 86400, 1763744524, why,
				       sizeof(why)),
		     1, "%s", why);
	cr_assert_eq(store_report_update(st, dev, merge, &m, why, sizeof(why)), 0, "%s", why);
}

/* That 'st' holds what put_one_of_each(salt) put, seen from another handle. */
static void expect_one_of_each(struct store *st, uint8_t salt)
{
	char why[WHY] = "", dev[32], label[32], **l = NULL, **j = NULL, *json = NULL;
	uint8_t nonce[NONCE_LEN], tag[16], serial[16];
	struct store_revoked *list = NULL;
	bool dup = false, found = false, listed = false;
	size_t n = 0;
	int rc;

	snprintf(dev, sizeof(dev), "dev-%02x", salt);
	snprintf(label, sizeof(label), "ref-%02x", salt);
	expect_device(st, dev, cert_a, ak_k);
	rc = store_installed_get(st, dev, &json, why, sizeof(why));
	cr_assert_eq(rc, 0, "installed of %s: %d (%s)", dev, rc, why);
	cr_assert(json_same(json, "{\"v\":1}"), "installed of %s: %s", dev, json);
	free(json);
	make_nonce(nonce, 1763744523000LL, salt);
	memset(tag, salt, sizeof(tag));
	rc = store_nonce_consume(st, nonce, 1763744523000LL, tag, &dup, why, sizeof(why));
	cr_assert_eq(rc, STORE_USED, "a consumed nonce is not seen used: %d (%s)", rc, why);
	cr_assert(dup, "the tag of a consumed nonce was lost");
	cr_assert_eq(store_reference_all(st, &l, &j, &n, why, sizeof(why)), 0, "%s", why);
	for (size_t i = 0; i < n; i++)
		found = found || (same_str(l[i], label) && json_same(j[i], "{\"r\":1}"));
	store_strings_free(l, n);
	store_strings_free(j, n);
	cr_assert(found, "reference %s not seen", label);
	n = revoked_list(st, 1763744530, &list);
	serial_of(serial, salt & 0x0f, 1);
	for (size_t i = 0; i < n; i++)
		listed = listed ||
			 (memcmp(list[i].serial, serial, 16) == 0 && strcmp(list[i].dev, dev) == 0);
	free(list);
	cr_assert(listed, "the superseded certificate of %s is not on the list", dev);
	cr_assert_eq(revoke_device(st, dev, STORE_REVOKE_REFUSED, 1763744530), 1,
		     "the certificate in force of %s was not recorded", dev);
	expect_report(st, dev, "{\"kept\":true}");
}

void store_check_reopen(const char *dir, const struct store_config *cfg)
{
	struct store *st = open_store(dir, cfg, true);
	uint64_t gen;

	put_one_of_each(st, 0x21);
	gen = generation(st);
	store_close(st);
	st = open_store(dir, cfg, false);
	cr_assert_eq(generation(st), gen, "the reference generation changed across a reopen");
	expect_one_of_each(st, 0x21);
	store_close(st);
}

void store_check_two_handles(const char *dir, const struct store_config *cfg)
{
	struct store *a = open_store(dir, cfg, true), *b = open_store(dir, cfg, false);
	uint64_t gen_a, gen_b;
	char why[WHY] = "";

	gen_b = generation(b);
	put_one_of_each(a, 0x31);
	expect_one_of_each(b, 0x31);
	cr_assert_neq(generation(b), gen_b, "b did not see a's reference change in the generation");
	gen_a = generation(a);
	cr_assert_eq(store_reference_remove(b, "ref-31", why, sizeof(why)), 0, "%s", why);
	cr_assert_neq(generation(a), gen_a, "a did not see b's removal in the generation");
	put_one_of_each(b, 0x32);
	expect_one_of_each(a, 0x32);
	store_close(a);
	store_close(b);
}

/* ---- races of whole transactions -------------------------------------------------------- */

/* What one racer does on its own store: 0, or non-zero with 'why'. */
typedef int race_body(struct store *st, int i, char *why, size_t cap);

/* 'n' processes (at most RACERS), each with its own store, released together, run 'body'.
 * Every one is waited for before anything is asserted. */
static void race(const char *dir, const struct store_config *cfg, int n, race_body *body)
{
	int ready[2], release[2], readied = 0, started = 0, failed = 0;
	pid_t pids[RACERS];
	char byte;

	cr_assert_leq(n, RACERS);
	cr_assert_eq(pipe(ready), 0, "pipe: %s", strerror(errno));
	cr_assert_eq(pipe(release), 0, "pipe: %s", strerror(errno));
	fflush(NULL);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			break;
		started++;
		if (pids[i] == 0) {
			struct store *st = NULL;
			char why[WHY] = "";
			int rc;

			alarm(60); /* whatever becomes of the parent, this process ends */
			close(ready[0]);
			close(release[1]);
			rc = store_open(dir, cfg, false, &st, why, sizeof(why));
			if (write(ready[1], "r", 1) != 1 || rc != 0 ||
			    read(release[0], &byte, 1) != 0) {
				fprintf(stderr, "racer %d: %s\n", i, why);
				_exit(1);
			}
			rc = body(st, i, why, sizeof(why));
			if (rc != 0)
				fprintf(stderr, "racer %d: %d: %s\n", i, rc, why);
			store_close(st);
			_exit(rc == 0 ? 0 : 1);
		}
	}
	close(ready[1]);
	close(release[0]);
	while (readied < started) {
		struct pollfd p = { .fd = ready[0], .events = POLLIN };

		if (poll(&p, 1, 30000) <= 0 || read(ready[0], &byte, 1) != 1)
			break;
		readied++;
	}
	close(ready[0]);
	close(release[1]); /* every racer's read() returns now */
	for (int i = 0; i < started; i++) {
		int status = 0;

		if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed++;
	}
	cr_assert_eq(started, n, "only %d of %d racers started", started, n);
	cr_assert_eq(readied, n, "only %d of %d racers got ready", readied, n);
	cr_assert_eq(failed, 0, "%d racers failed (their stderr above)", failed);
}

enum { CERT_RACERS = 16, CERTS_EACH = 10 };
#define CERT_NOW 1763744523

static int issue_certs(struct store *st, int i, char *why, size_t cap)
{
	for (int k = 0; k < CERTS_EACH; k++) {
		uint8_t serial[16] = { 0x40, 0x7e, (uint8_t)i, (uint8_t)k };
		int rc = store_cert_issued(st, "raced", serial, CERT_NOW + 86400, CERT_NOW + k, why,
					   cap);

		if (rc < 0)
			return rc;
	}
	return 0;
}

void store_check_cert_race(const char *dir, const struct store_config *cfg)
{
	struct store *st = open_store(dir, cfg, true);
	struct store_revoked *list = NULL;
	size_t n = 0;

	race(dir, cfg, CERT_RACERS, issue_certs);
	n = revoked_list(st, CERT_NOW + 10, &list);
	free(list);
	cr_assert_eq(n, CERT_RACERS * CERTS_EACH - 1, "%zu superseded, expected %d", n,
		     CERT_RACERS * CERTS_EACH - 1);
	cr_assert_eq(revoke_device(st, "raced", STORE_REVOKE_REFUSED, CERT_NOW + 20), 1,
		     "not exactly one certificate in force after the race");
	store_close(st);
}

enum { REPORT_RACERS = 8, REPORTS_EACH = 10 };

/* {"n": N} becomes {"n": N + 1}. */
static int count_up(const char *old_json, char **next, void *ctx, char *why, size_t cap)
{
	cJSON *doc = old_json != NULL ? cJSON_Parse(old_json) : NULL;
	cJSON *n = cJSON_GetObjectItemCaseSensitive(doc, "n");
	int count = cJSON_IsNumber(n) ? n->valueint : 0;

	(void)ctx;
	cJSON_Delete(doc);
	usleep(500); /* a wider window for a backend whose read and write are not one transaction */
	if (old_json != NULL && !cJSON_IsNumber(n)) {
		snprintf(why, cap, "not a count: %s", old_json);
		return -1;
	}
	if (asprintf(next, "{\"n\":%d}", count + 1) < 0)
		return -1;
	return 0;
}

static int report_many(struct store *st, int i, char *why, size_t cap)
{
	(void)i;
	for (int k = 0; k < REPORTS_EACH; k++) {
		int rc = store_report_update(st, "raced", count_up, NULL, why, cap);

		if (rc != 0)
			return rc;
	}
	return 0;
}

void store_check_report_race(const char *dir, const struct store_config *cfg)
{
	struct store *st = open_store(dir, cfg, true);
	char want[32];

	race(dir, cfg, REPORT_RACERS, report_many);
	snprintf(want, sizeof(want), "{\"n\":%d}", REPORT_RACERS * REPORTS_EACH);
	expect_report(st, "raced", want);
	store_close(st);
}

/* ---- one attestation decision ----------------------------------------------------------- */

/* store_attest_record of a decision on 'dev': its return, *dup and *revoked set. */
static int attest(struct store *st, const char *dev, const uint8_t nonce[NONCE_LEN], int64_t ts_ms,
		  uint8_t tag_byte, const uint8_t *serial, const char *installed,
		  bool revoke_refused, int64_t now, bool *dup, int *revoked)
{
	struct store_attest a = { .dev = dev,
				  .nonce = nonce,
				  .nonce_ts_ms = ts_ms,
				  .issued = serial != NULL,
				  .not_after_s = now + 86400,
				  .installed_json = installed,
				  .revoke_refused = revoke_refused,
				  .now_s = now };
	uint8_t tag[16];
	char why[WHY] = "";
	int rc;

	memset(tag, tag_byte, sizeof(tag));
	a.tag = tag;
	if (serial != NULL)
		memcpy(a.serial, serial, 16);
	*dup = true; /* a backend that forgets to set them is caught */
	*revoked = -1;
	rc = store_attest_record(st, &a, dup, revoked, why, sizeof(why));
	cr_assert(rc == 0 || rc == STORE_USED, "attest_record %s: %d (%s)", dev, rc, why);
	return rc;
}

/* The unexpired certificates of 'dev' at 'now', in issue order (caller frees). */
static size_t cert_list(struct store *st, const char *dev, int64_t now, struct store_cert **out)
{
	char why[WHY] = "";
	size_t n = 0;
	int rc = store_cert_list(st, dev, now, out, &n, why, sizeof(why));

	cr_assert_eq(rc, 0, "cert_list %s: %d (%s)", dev, rc, why);
	return n;
}

static void expect_installed(struct store *st, const char *dev, const char *want)
{
	char why[WHY] = "", *json = NULL;
	int rc = store_installed_get(st, dev, &json, why, sizeof(why));

	cr_assert_eq(rc, 0, "installed_get %s: %d (%s)", dev, rc, why);
	cr_assert(json_same(json, want), "installed of %s: %s, expected %s", dev, json, want);
	free(json);
}

void store_check_attest_record(struct store *st)
{
	const int64_t now = 1763744523, t0 = now * 1000;
	static const char j1[] = "{\"swversion\":\"0.1.0+u7\",\"update_version\":7,\"ts\":1}\n";
	static const char j2[] = "{\"swversion\":\"0.1.0+u8\",\"update_version\":8,\"ts\":2}\n";
	uint8_t n1[NONCE_LEN], n2[NONCE_LEN], n3[NONCE_LEN], s1[16], s2[16], s3[16];
	struct store_cert *c = NULL;
	struct store_revoked *list = NULL;
	char why[WHY] = "";
	int revoked;
	bool dup;

	make_nonce(n1, t0, 0xa1);
	make_nonce(n2, t0 + 1, 0xa2);
	make_nonce(n3, t0 + 2, 0xa3);
	serial_of(s1, 9, 1);
	serial_of(s2, 9, 2);
	serial_of(s3, 9, 3);
	cr_assert_eq(store_device_put(st, "att", cert_a, NULL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(issued(st, "att", s1, now + 86400, now), 0);

	/* Accepted: the nonce consumed, s1 superseded by s2, what it runs put: one call. */
	cr_assert_eq(attest(st, "att", n1, t0, 0x11, s2, j1, false, now + 10, &dup, &revoked), 0);
	cr_assert_not(dup, "a first use said duplicate");
	cr_assert_eq(revoked, 1, "%d revoked, expected s1 superseded", revoked);
	cr_assert_eq(cert_list(st, "att", now + 10, &c), 2);
	cr_assert(memcmp(c[0].serial, s1, 16) == 0 && memcmp(c[1].serial, s2, 16) == 0,
		  "not s1 then s2");
	cr_assert_eq(c[0].revoked_s, now + 10, "s1 not revoked when s2 was recorded");
	cr_assert_eq(c[0].reason, STORE_REVOKE_SUPERSEDED);
	cr_assert_eq(c[1].revoked_s, 0, "the new certificate was revoked");
	free(c);
	expect_installed(st, "att", j1);

	/* The same nonce again, the same delivery then another: STORE_USED, nothing written. */
	cr_assert_eq(attest(st, "att", n1, t0, 0x11, s3, j2, false, now + 20, &dup, &revoked),
		     STORE_USED);
	cr_assert(dup, "the same tag again is a duplicate");
	cr_assert_eq(revoked, 0);
	cr_assert_eq(attest(st, "att", n1, t0, 0x12, NULL, j2, true, now + 20, &dup, &revoked),
		     STORE_USED);
	cr_assert_not(dup, "another tag is not a duplicate");
	cr_assert_eq(revoked, 0);
	cr_assert_eq(cert_list(st, "att", now + 20, &c), 2, "a used nonce recorded a certificate");
	cr_assert_eq(c[1].revoked_s, 0, "a used nonce revoked the certificate in force");
	free(c);
	expect_installed(st, "att", j1);

	/* Refused: the nonce consumed, s2 revoked as refused; nothing installed given, none put. */
	cr_assert_eq(
		attest(st, "att", n2, t0 + 1, 0x21, NULL, NULL, true, now + 30, &dup, &revoked), 0);
	cr_assert_not(dup);
	cr_assert_eq(revoked, 1, "%d revoked, expected s2 refused", revoked);
	cr_assert_eq(revoked_list(st, now + 30, &list), 2);
	expect_revoked(&list[0], s1, "att", now + 86400, now + 10, STORE_REVOKE_SUPERSEDED, "s1");
	expect_revoked(&list[1], s2, "att", now + 10 + 86400, now + 30, STORE_REVOKE_REFUSED, "s2");
	free(list);
	expect_installed(st, "att", j1);
	/* Refused again: nothing left in force. */
	cr_assert_eq(
		attest(st, "att", n3, t0 + 2, 0x31, NULL, NULL, true, now + 40, &dup, &revoked), 0);
	cr_assert_eq(revoked, 0);

	/* Each nonce stays used, with its tag. */
	cr_assert_eq(consume(st, n1, t0, 0x11, &dup), STORE_USED);
	cr_assert(dup);
	cr_assert_eq(consume(st, n2, t0 + 1, 0x11, &dup), STORE_USED);
	cr_assert_not(dup);
	cr_assert_eq(consume(st, n3, t0 + 2, 0x31, &dup), STORE_USED);
	cr_assert(dup);

	/* A decision whose device is not enrolled (removed meanwhile): no error. */
	make_nonce(n1, t0 + 3, 0xa4);
	cr_assert_eq(attest(st, "gone", n1, t0 + 3, 0x41, s3, j2, false, now + 50, &dup, &revoked),
		     0);
	cr_assert_eq(revoked, 0);
	cr_assert_eq(cert_list(st, "gone", now + 50, &c), 1);
	free(c);
}

/* A racer: one decision on the raced nonce with its own tag and serial, issuing to "raced". */
static int attest_once(struct store *st, int i, char *why, size_t cap)
{
	uint8_t nonce[NONCE_LEN], tag[16];
	struct store_attest a = { .dev = "raced",
				  .nonce = nonce,
				  .nonce_ts_ms = CERT_NOW * 1000LL,
				  .tag = tag,
				  .issued = true,
				  .not_after_s = CERT_NOW + 86400,
				  .installed_json = "{\"racer\":1}\n",
				  .now_s = CERT_NOW };
	bool dup = false;
	int revoked = 0, rc;

	make_nonce(nonce, CERT_NOW * 1000LL, 0x6b);
	memset(tag, i, sizeof(tag));
	serial_of(a.serial, 10, (unsigned)i);
	rc = store_attest_record(st, &a, &dup, &revoked, why, cap);
	if (rc == STORE_USED && dup) {
		snprintf(why, cap, "another racer's tag taken for mine");
		return -1;
	}
	return rc == STORE_USED ? 0 : rc;
}

void store_check_attest_race(const char *dir, const struct store_config *cfg)
{
	struct store *st = open_store(dir, cfg, true);
	struct store_cert *c = NULL;
	uint8_t nonce[NONCE_LEN], serial[16];
	char why[WHY] = "";
	int winner = -1;
	size_t n;
	bool dup;

	cr_assert_eq(store_device_put(st, "raced", cert_a, NULL, why, sizeof(why)), 0, "%s", why);
	race(dir, cfg, RACERS, attest_once);
	make_nonce(nonce, CERT_NOW * 1000LL, 0x6b);
	for (int i = 0; i < RACERS; i++) {
		cr_assert_eq(consume(st, nonce, CERT_NOW * 1000LL, (uint8_t)i, &dup), STORE_USED,
			     "the raced nonce was not consumed");
		if (dup) {
			cr_assert_eq(winner, -1, "two racers' tags stored (%d, %d)", winner, i);
			winner = i;
		}
	}
	cr_assert_neq(winner, -1, "no racer's tag stored");
	n = cert_list(st, "raced", CERT_NOW, &c);
	cr_assert_eq(n, 1, "%zu certificates recorded, expected the winner's only", n);
	serial_of(serial, 10, (unsigned)winner);
	cr_assert(memcmp(c[0].serial, serial, 16) == 0, "the certificate is not the winner's");
	cr_assert_eq(c[0].revoked_s, 0, "the winner's certificate was revoked");
	free(c);
	expect_installed(st, "raced", "{\"racer\":1}\n");
	store_close(st);
}

/* ---- releases --------------------------------------------------------------------------- */

static const char hash_a[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
static const char hash_b[] = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

static void expect_release(struct store *st, const char *dev, uint64_t version, const char *hash,
			   int64_t ts_ms, bool withdrawn)
{
	struct store_release r;
	char why[WHY] = "";
	int rc;

	memset(&r, 0x5a, sizeof(r)); /* every field must be written */
	rc = store_release_get(st, dev, &r, why, sizeof(why));
	cr_assert_eq(rc, 0, "release_get %s: %d (%s)", dev, rc, why);
	cr_assert_eq(r.version, version, "release of %s: version %llu, expected %llu", dev,
		     (unsigned long long)r.version, (unsigned long long)version);
	cr_assert_str_eq(r.sha256, hash, "release of %s: sha256", dev);
	cr_assert_eq(r.ts_ms, ts_ms, "release of %s: ts %lld, expected %lld", dev,
		     (long long)r.ts_ms, (long long)ts_ms);
	cr_assert_eq(r.withdrawn, withdrawn, "release of %s: withdrawn %d", dev, r.withdrawn);
}

static int release_put(struct store *st, const char *dev, uint64_t version, const char *hash,
		       int64_t ts_ms, bool withdrawn, char *why, size_t cap)
{
	struct store_release r = { .version = version, .ts_ms = ts_ms, .withdrawn = withdrawn };

	snprintf(r.sha256, sizeof(r.sha256), "%s", hash);
	return store_release_put(st, dev, &r, why, cap);
}

void store_check_releases(struct store *st)
{
	struct store_release r;
	char why[WHY] = "";
	int rc;

	cr_assert_eq(store_device_put(st, "press-2", cert_a, NULL, why, sizeof(why)), 0, "%s", why);
	rc = store_release_get(st, "press-2", &r, why, sizeof(why));
	cr_assert_eq(rc, STORE_NOTFOUND, "release_get before any put: %d (%s)", rc, why);

	/* Published to two devices, one of them not enrolled (the topic is its all the same). */
	cr_assert_eq(
		release_put(st, "press-2", 7, hash_a, 1763744523001LL, false, why, sizeof(why)), 0,
		"release_put: %s", why);
	cr_assert_eq(
		release_put(st, "press-10", 3, hash_b, 1763744523002LL, false, why, sizeof(why)), 0,
		"release_put of a device not enrolled: %s", why);
	expect_release(st, "press-2", 7, hash_a, 1763744523001LL, false);
	expect_release(st, "press-10", 3, hash_b, 1763744523002LL, false);
	cr_assert_eq(store_release_get(st, "press-1", &r, why, sizeof(why)), STORE_NOTFOUND,
		     "a prefix of a name found as the device");

	/* Replaced by the next; withdrawn keeping the version; published again. */
	cr_assert_eq(
		release_put(st, "press-2", 8, hash_b, 1763744524000LL, false, why, sizeof(why)), 0,
		"%s", why);
	expect_release(st, "press-2", 8, hash_b, 1763744524000LL, false);
	cr_assert_eq(release_put(st, "press-2", 8, hash_b, 1763744525000LL, true, why, sizeof(why)),
		     0, "%s", why);
	expect_release(st, "press-2", 8, hash_b, 1763744525000LL, true);
	expect_release(st, "press-10", 3, hash_b, 1763744523002LL, false); /* untouched */
	cr_assert_eq(
		release_put(st, "press-2", 9, hash_a, 1763744526000LL, false, why, sizeof(why)), 0,
		"%s", why);
	expect_release(st, "press-2", 9, hash_a, 1763744526000LL, false);

	/* A withdrawal of what was never recorded: version 0, no hash. */
	cr_assert_eq(release_put(st, "press-3", 0, "", 1763744527000LL, true, why, sizeof(why)), 0,
		     "%s", why);
	expect_release(st, "press-3", 0, "", 1763744527000LL, true);

	/* A large version (above 2^32) comes back whole. */
	cr_assert_eq(release_put(st, "press-4", 5000000000ULL, hash_a, 1, false, why, sizeof(why)),
		     0, "%s", why);
	expect_release(st, "press-4", 5000000000ULL, hash_a, 1, false);

	/* Refused, changing nothing: a hash that is not one, a version out of range. */
	why[0] = '\0';
	rc = release_put(st, "press-2", 10, "9F86D081", 2, false, why, sizeof(why));
	cr_assert_lt(rc, 0, "a hash that is not 64 lowercase hex digits was recorded");
	cr_assert(strstr(why, "SHA-256") != NULL, "\"%s\"", why);
	rc = release_put(st, "press-2", 10, "", 2, false, why, sizeof(why));
	cr_assert_lt(rc, 0, "a version without a hash was recorded");
	rc = release_put(st, "press-2", (uint64_t)INT64_MAX + 1, hash_a, 2, false, why,
			 sizeof(why));
	cr_assert_lt(rc, 0, "a version above INT64_MAX was recorded");
	expect_release(st, "press-2", 9, hash_a, 1763744526000LL, false);
}
