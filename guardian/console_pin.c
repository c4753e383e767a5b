/* console_pin.c: the field console's PIN: PBKDF2 hashes, checked in constant time, and the
 * login with its lockout after wrong PINs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/constant_time.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#include "console_private.h"
#include "../base/base.h"

#define PIN_MIN	     4
#define PIN_MAX	     12
#define PIN_PREFIX   "pbkdf2-sha256$"
#define PIN_SALT_LEN 16
#define PIN_HASH_LEN 32
#define PIN_ITER_MIN 1000u
#define PIN_ITER_MAX 10000000u

/* ---- login and lockout ------------------------------------------------------------------- */

static int64_t lock_left_ms(struct console *c)
{
	int64_t left = c->stats.locked_until_ms - console_now(c);

	if (c->stats.locked_until_ms == 0 || left <= 0) {
		c->stats.locked_until_ms = 0;
		return 0;
	}
	return left;
}

void console_cmd_login(struct console *c, const char *arg)
{
	int64_t left;

	(void)arg;
	if (c->pin_hash == NULL && c->pin_problem != NULL) {
		console_say(c, "login is not configured (console.pin_hash: %s)", c->pin_problem);
		return;
	}
	if (c->pin_hash == NULL) {
		console_say(c, "login is not configured (set console.pin_hash)");
		return;
	}
	if (c->logged_in) {
		console_say(c, "already logged in");
		return;
	}
	left = lock_left_ms(c);
	if (left > 0) {
		console_say(c, "login locked for another %llds after %u wrong PINs",
			    (long long)((left + 999) / 1000), c->wrong_in_row);
		return;
	}
	console_emit_str(c, "PIN: ");
	c->reading_pin = true;
}

/* Each wrong PIN from the 'lockout_after'th on locks, twice as long as the one before. */
static void pin_wrong(struct console *c)
{
	unsigned extra;
	int64_t lock_s;

	c->wrong_in_row++;
	c->stats.login_failures++;
	console_say(c, "wrong PIN");
	if (c->wrong_in_row < (unsigned)c->lockout_after)
		return;
	extra = c->wrong_in_row - (unsigned)c->lockout_after;
	lock_s = (int64_t)c->lockout_base_s << (extra < 12 ? extra : 12);
	if (lock_s > LOCKOUT_MAX_S)
		lock_s = LOCKOUT_MAX_S;
	c->stats.locked_until_ms = console_now(c) + lock_s * 1000;
	c->stats.lockouts++;
}

void console_pin_entered(struct console *c)
{
	int64_t minutes = c->idle_timeout_ms / 60000;

	c->reading_pin = false;
	if (c->len == 0) {
		console_say(c, "login cancelled");
		return;
	}
	if (!console_pin_verify(c->line, c->pin_hash)) {
		pin_wrong(c);
		return;
	}
	c->logged_in = true;
	c->wrong_in_row = 0;
	c->stats.locked_until_ms = 0;
	c->stats.logins++;
	if (c->idle_timeout_ms % 60000 == 0)
		console_say(
			c, "logged in; privileged commands enabled for %lld minute%s of inactivity",
			(long long)minutes, minutes == 1 ? "" : "s");
	else
		console_say(c,
			    "logged in; privileged commands enabled for %lld seconds of inactivity",
			    (long long)(c->idle_timeout_ms / 1000));
}

/* ---- PIN hashing ------------------------------------------------------------------------- */

static bool pin_valid(const char *pin)
{
	size_t n = strlen(pin);

	if (n < PIN_MIN || n > PIN_MAX)
		return false;
	return strspn(pin, "0123456789") == n;
}

static int pbkdf2(const char *pin, const uint8_t *salt, unsigned iterations,
		  uint8_t out[PIN_HASH_LEN])
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	mbedtls_md_context_t ctx;
	int rc = -1;

	mbedtls_md_init(&ctx);
	if (md == NULL || mbedtls_md_setup(&ctx, md, 1) != 0)
		goto out;
	if (mbedtls_pkcs5_pbkdf2_hmac(&ctx, (const unsigned char *)pin, strlen(pin), salt,
				      PIN_SALT_LEN, iterations, PIN_HASH_LEN, out) != 0)
		goto out;
	rc = 0;
out:
	mbedtls_md_free(&ctx);
	return rc;
}

struct pin_record {
	unsigned iterations;
	uint8_t salt[PIN_SALT_LEN];
	uint8_t hash[PIN_HASH_LEN];
};

static const char *pin_parse(const char *text, struct pin_record *r)
{
	const char *s;
	unsigned long v = 0;
	size_t digits;

	if (text == NULL || text[0] == '\0')
		return "empty";
	if (strncmp(text, PIN_PREFIX, strlen(PIN_PREFIX)) != 0)
		return "does not start with \"" PIN_PREFIX "\"";
	s = text + strlen(PIN_PREFIX);
	digits = strspn(s, "0123456789");
	if (digits == 0 || digits > 8 || s[digits] != '$')
		return "iterations are not a number followed by '$'";
	for (size_t i = 0; i < digits; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	if (v < PIN_ITER_MIN || v > PIN_ITER_MAX)
		return "iterations are not between 1000 and 10000000";
	r->iterations = (unsigned)v;
	s += digits + 1;
	if (strnlen(s, 2 * PIN_SALT_LEN + 1) < 2 * PIN_SALT_LEN + 1 ||
	    !gd_hex_decode(s, r->salt, PIN_SALT_LEN, '$'))
		return "the salt is not 32 hex digits (16 bytes) followed by '$'";
	s += 2 * PIN_SALT_LEN + 1;
	if (strnlen(s, 2 * PIN_HASH_LEN + 1) != 2 * PIN_HASH_LEN ||
	    !gd_hex_decode(s, r->hash, PIN_HASH_LEN, '\0'))
		return "the hash is not 64 hex digits (32 bytes)";
	return NULL;
}

int console_pin_hash(const char *pin, unsigned iterations, char *out, size_t cap)
{
	uint8_t salt[PIN_SALT_LEN], hash[PIN_HASH_LEN];
	char salt_hex[2 * PIN_SALT_LEN + 1], hash_hex[2 * PIN_HASH_LEN + 1];
	ssize_t got;
	int rc = -1, n;

	if (pin == NULL || out == NULL || !pin_valid(pin) || iterations < PIN_ITER_MIN ||
	    iterations > PIN_ITER_MAX)
		return -1;
	do
		got = getrandom(salt, sizeof(salt), 0);
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)sizeof(salt) || pbkdf2(pin, salt, iterations, hash) != 0)
		goto out;
	gd_hex_encode(salt, sizeof(salt), salt_hex);
	gd_hex_encode(hash, sizeof(hash), hash_hex);
	n = snprintf(out, cap, PIN_PREFIX "%u$%s$%s", iterations, salt_hex, hash_hex);
	if (n > 0 && (size_t)n < cap)
		rc = 0;
	else if (cap > 0)
		out[0] = '\0';
out:
	mbedtls_platform_zeroize(hash, sizeof(hash));
	return rc;
}

bool console_pin_verify(const char *pin, const char *hash)
{
	struct pin_record r;
	uint8_t got[PIN_HASH_LEN];
	bool match;

	if (pin == NULL || !pin_valid(pin) || pin_parse(hash, &r) != NULL)
		return false;
	if (pbkdf2(pin, r.salt, r.iterations, got) != 0)
		return false;
	match = mbedtls_ct_memcmp(got, r.hash, PIN_HASH_LEN) == 0;
	mbedtls_platform_zeroize(got, sizeof(got));
	return match;
}

const char *console_pin_hash_check(const char *hash)
{
	struct pin_record r;

	return pin_parse(hash, &r);
}
