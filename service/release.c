/* release.c: guardian-service release: update keys made, bundles signed and shown (proto/bundle.h).
 * No service directory: update keys are not the service's identity or CA keys, and live apart. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/platform_util.h>

#include "../proto/bundle.h"
#include "service.h"

#define EXIT_USAGE	  2
#define DEFAULT_EXPIRES_D 30
#define MAX_EXPIRES_D	  36500
#define VERSION_MAX	  (UINT64_C(1) << 53) /* what JSON carries exactly */
#define KEY_PEM_MAX	  1024

static const char release_usage_text[] =
	"usage: guardian-service release keygen -o KEY.pem\n"
	"       guardian-service release sign -o BUNDLE --version N --class CLASS\n"
	"                [--expires-days D] --key KEY.pem [--key KEY.pem ...] FILE...\n"
	"       guardian-service release show BUNDLE\n";

static int release_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Says what is wrong with the command line, then how it goes. Returns EXIT_USAGE. */
static int release_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "guardian-service: release ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fputs(release_usage_text, stderr);
	return EXIT_USAGE;
}

enum release_opt {
	ROPT_VERSION = 256,
	ROPT_CLASS,
	ROPT_EXPIRES,
	ROPT_KEY,
};

static const struct option release_opts[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "version", required_argument, NULL, ROPT_VERSION },
	{ "class", required_argument, NULL, ROPT_CLASS },
	{ "expires-days", required_argument, NULL, ROPT_EXPIRES },
	{ "key", required_argument, NULL, ROPT_KEY },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct release_cl {
	const char *output, *device_class;
	uint64_t version;
	long expires_days;
	const char *keys[BUNDLE_MAX_SIGS];
	size_t nkeys;
	bool has_version, has_expires;
	char **args;
	int nargs;
};

static int release_parse(int argc, char **argv, struct release_cl *cl)
{
	int ch;

	*cl = (struct release_cl){ .expires_days = DEFAULT_EXPIRES_D };
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":o:h", release_opts, NULL)) != -1) {
		char *end;

		switch (ch) {
		case 'o':
			cl->output = optarg;
			break;
		case ROPT_VERSION: {
			unsigned long long v;

			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || optarg[0] == '-' ||
			    v < 1 || v > VERSION_MAX)
				return release_usage("--version: \"%s\" is not a version from 1 "
						     "to 2^53",
						     optarg);
			cl->version = v;
			cl->has_version = true;
			break;
		}
		case ROPT_CLASS:
			cl->device_class = optarg;
			break;
		case ROPT_EXPIRES:
			errno = 0;
			cl->expires_days = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || cl->expires_days < 1 ||
			    cl->expires_days > MAX_EXPIRES_D)
				return release_usage("--expires-days: \"%s\" is not a number of "
						     "days from 1 to %d",
						     optarg, MAX_EXPIRES_D);
			cl->has_expires = true;
			break;
		case ROPT_KEY:
			if (cl->nkeys == BUNDLE_MAX_SIGS)
				return release_usage("--key: at most %d keys sign a bundle",
						     BUNDLE_MAX_SIGS);
			cl->keys[cl->nkeys++] = optarg;
			break;
		case 'h':
			fputs(release_usage_text, stdout);
			exit(0);
		case ':':
			return release_usage("%s: needs an argument", argv[optind - 1]);
		default:
			return release_usage("%s: unknown option", argv[optind - 1]);
		}
	}
	cl->args = argv + optind;
	cl->nargs = argc - optind;
	return 0;
}

/* KEY.pem -> KEY.pub.pem; any other name gets ".pub.pem" added. */
static bool pub_path(const char *key, char *out, size_t cap)
{
	size_t n = strlen(key);
	int w;

	if (n > 4 && strcmp(key + n - 4, ".pem") == 0)
		w = snprintf(out, cap, "%.*s.pub.pem", (int)(n - 4), key);
	else
		w = snprintf(out, cap, "%s.pub.pem", key);
	return w > 0 && (size_t)w < cap;
}

/* A fresh P-256 key pair, made for updates only: never the identity or a CA key. */
static int cmd_keygen(const struct release_cl *cl)
{
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context pk;
	char priv[2 * KEY_PEM_MAX], pub[KEY_PEM_MAX], pub_file[PATH_MAX];
	char keyid[BUNDLE_KEYID_HEX + 1];
	int status = 1;

	if (cl->output == NULL)
		return release_usage("keygen: -o KEY.pem (where the private key goes) is "
				     "required");
	if (cl->nargs != 0)
		return release_usage("keygen: unexpected argument \"%s\"", cl->args[0]);
	if (cl->has_version || cl->device_class != NULL || cl->has_expires || cl->nkeys != 0)
		return release_usage("keygen: takes only -o KEY.pem");
	if (!pub_path(cl->output, pub_file, sizeof(pub_file)))
		return release_usage("keygen: -o %s: path too long", cl->output);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_pk_init(&pk);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const uint8_t *)"guardian-release", 16) != 0 ||
	    issue_new_key(&pk, &drbg) != 0 ||
	    mbedtls_pk_write_key_pem(&pk, (uint8_t *)priv, sizeof(priv)) != 0 ||
	    mbedtls_pk_write_pubkey_pem(&pk, (uint8_t *)pub, sizeof(pub)) != 0 ||
	    bundle_keyid(pub, keyid) != 0) {
		fprintf(stderr, "guardian-service: release keygen: could not make a P-256 key\n");
		goto out;
	}
	/* Never over an existing key: a lost update key is a device fleet that cannot update. */
	if (gd_create_file(cl->output, priv, strlen(priv), 0600) != 0) {
		fprintf(stderr, "guardian-service: release keygen: %s: %s\n", cl->output,
			strerror(errno));
		goto out;
	}
	if (gd_create_file(pub_file, pub, strlen(pub), 0644) != 0) {
		fprintf(stderr,
			"guardian-service: release keygen: %s: %s (%s removed again; nothing "
			"made)\n",
			pub_file, strerror(errno), cl->output);
		unlink(cl->output);
		goto out;
	}
	printf("guardian-service: update key %s (keyid %s) made; its public half %s goes into "
	       "the devices' update trust. Keep %s offline: it is not the service's identity or "
	       "CA key and must not be kept with them\n",
	       cl->output, keyid, pub_file, cl->output);
	status = 0;
out:
	mbedtls_platform_zeroize(priv, sizeof(priv));
	mbedtls_pk_free(&pk);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return status;
}

static void print_utc(const char *label, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char buf[32];

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, sizeof(buf), "?");
	printf("%-13s %s (%lld ms)\n", label, buf, (long long)ms);
}

static int cmd_sign(const struct release_cl *cl)
{
	char *pems[BUNDLE_MAX_SIGS] = { NULL };
	char why[512], keyid[BUNDLE_KEYID_HEX + 1];
	int64_t expires;
	int status = 1;

	if (cl->output == NULL)
		return release_usage("sign: -o BUNDLE (where the bundle goes) is required");
	if (!cl->has_version)
		return release_usage("sign: --version N is required");
	if (cl->device_class == NULL)
		return release_usage("sign: --class CLASS (the device class) is required");
	if (cl->nkeys == 0)
		return release_usage("sign: --key KEY.pem (an update key) is required");
	if (cl->nargs == 0)
		return release_usage("sign: expected the FILEs to put in the bundle");
	if (cl->nargs > BUNDLE_MAX_FILES)
		return release_usage("sign: %d files; a bundle holds at most %d", cl->nargs,
				     BUNDLE_MAX_FILES);
	for (size_t i = 0; i < cl->nkeys; i++) {
		pems[i] = gd_read_file(cl->keys[i]);
		if (pems[i] == NULL) {
			fprintf(stderr, "guardian-service: release sign: %s: %s\n", cl->keys[i],
				strerror(errno));
			goto out;
		}
	}
	expires = gd_now_ms() + (int64_t)cl->expires_days * 86400 * 1000;
	if (bundle_create(cl->output, cl->version, cl->device_class, expires,
			  (const char *const *)cl->args, (size_t)cl->nargs,
			  (const char *const *)pems, cl->nkeys, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: release sign: %s\n", why);
		goto out;
	}
	printf("guardian-service: %s written: version %llu for %s, %d file%s, signed by",
	       cl->output, (unsigned long long)cl->version, cl->device_class, cl->nargs,
	       cl->nargs == 1 ? "" : "s");
	for (size_t i = 0; i < cl->nkeys; i++)
		printf(" %s", bundle_keyid(pems[i], keyid) == 0 ? keyid : "?");
	printf("\n");
	print_utc("expires", expires);
	status = 0;
out:
	for (size_t i = 0; i < cl->nkeys; i++) {
		if (pems[i] != NULL)
			mbedtls_platform_zeroize(pems[i], strlen(pems[i]));
		free(pems[i]);
	}
	return status;
}

/* The manifest as signed; a byte a terminal would act on is shown as '?'. */
static void print_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		putchar((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : ch);
	}
	putchar('\n');
}

static int cmd_show(const struct release_cl *cl)
{
	struct bundle_info *info;
	enum bundle_refusal rc;
	char why[512];

	if (cl->output != NULL || cl->has_version || cl->device_class != NULL || cl->has_expires ||
	    cl->nkeys != 0)
		return release_usage("show: takes only BUNDLE");
	if (cl->nargs != 1)
		return release_usage("show: expected one BUNDLE");
	info = calloc(1, sizeof(*info));
	if (info == NULL) {
		fprintf(stderr, "guardian-service: release show: out of memory\n");
		return 1;
	}
	rc = bundle_inspect(cl->args[0], info, why, sizeof(why));
	printf("bundle        %s (nothing verified: the form only)\n", cl->args[0]);
	if (info->manifest != NULL) {
		printf("manifest      %zu bytes, as signed:\n", info->manifest_len);
		print_text(info->manifest, info->manifest_len);
	}
	if (rc == BUNDLE_OK) {
		const struct bundle_manifest *m = &info->m;

		printf("version       %llu\n", (unsigned long long)m->version);
		printf("device_class  %s\n", m->device_class);
		print_utc("created", m->created_ms);
		print_utc("expires", m->expires_ms);
		for (size_t i = 0; i < m->nfiles; i++) {
			char hex[65];

			gd_hex_encode(m->files[i].sha256, 32, hex);
			printf("file          %-24s %10llu bytes  sha256 %s\n", m->files[i].name,
			       (unsigned long long)m->files[i].length, hex);
		}
		printf("signatures    %zu\n", info->nsigs);
		for (size_t i = 0; i < info->nsigs; i++)
			printf("keyid         %s\n", info->keyids[i]);
		for (size_t i = 0; i < info->nsections; i++)
			printf("section       file %s %llu\n", info->sections[i].name,
			       (unsigned long long)info->sections[i].length);
	}
	bundle_info_free(info);
	free(info);
	if (rc != BUNDLE_OK) {
		fprintf(stderr, "guardian-service: release show: %s: %s: %s\n", cl->args[0],
			bundle_refusal_names[rc], why);
		return 1;
	}
	return 0;
}

int release_main(int argc, char **argv)
{
	struct release_cl cl;
	const char *sub = argc > 1 ? argv[1] : "";
	int rc;

	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
		fputs(release_usage_text, stdout);
		return 0;
	}
	if (strcmp(sub, "keygen") != 0 && strcmp(sub, "sign") != 0 && strcmp(sub, "show") != 0)
		return release_usage("expected keygen, sign or show, got \"%s\"", sub);
	rc = release_parse(argc - 1, argv + 1, &cl);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "keygen") == 0)
		return cmd_keygen(&cl);
	if (strcmp(sub, "sign") == 0)
		return cmd_sign(&cl);
	return cmd_show(&cl);
}
