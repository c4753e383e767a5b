/* main.c: guardian-service: init, migrate, enroll, reference, crl and serve, the reference
 * attestation service of PROTOCOL.md. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/mqtt_tls.h"
#include "report.h"
#include "service.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"usage: guardian-service init -d DIR [--days N] [--broker HOST:PORT] [--broker-ca FILE]\n"
	"                [--store sqlite|files|postgresql] [--conninfo STR]\n"
	"       guardian-service migrate -d DIR [--import-files]\n"
	"       guardian-service enroll -d DIR CSR_FILE [-o CERT_OUT] [--ak AK_PEM] [--replace]\n"
	"       guardian-service reference add -d DIR FILE [--name LABEL]\n"
	"       guardian-service reference list -d DIR\n"
	"       guardian-service reference remove -d DIR LABEL\n"
	"       guardian-service crl -d DIR\n"
	"       guardian-service serve -d DIR [--once-per-request] [-v]\n"
	"       guardian-service reports -d DIR [--device ID] [--json]\n"
	"       guardian-service release keygen -o KEY.pem\n"
	"       guardian-service release sign -o BUNDLE --version N --class CLASS\n"
	"                [--expires-days D] --key KEY.pem [--key KEY.pem ...] FILE...\n"
	"       guardian-service release show BUNDLE\n"
	"       guardian-service release publish -d DIR (BUNDLE | --withdraw)\n"
	"                (--device ID [--device ID ...] | --all)\n"
	"       guardian-service release status -d DIR [--json]\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The command whose --help is asked for ("" before one is known). */
static const char *help_cmd = "";

/* The lines of usage_text about 'cmd' (all of it for ""), as that command's usage. */
static void usage_for(FILE *out, const char *cmd)
{
	const char *line = usage_text;
	bool mine = false, first = true;
	char want[64];

	snprintf(want, sizeof(want), "guardian-service %s", cmd);
	while (*line != '\0') {
		size_t n = strcspn(line, "\n");
		const char *text = line + strspn(line, " ");

		if (strncmp(text, "usage: ", 7) == 0)
			text += 7;
		/* A line that starts a command; the ones below it until the next belong to it. */
		if (strncmp(text, "guardian-service ", 17) == 0)
			mine = cmd[0] == '\0' ||
			       (strncmp(text, want, strlen(want)) == 0 &&
				(text[strlen(want)] == ' ' || text[strlen(want)] == '\n'));
		if (mine) {
			fprintf(out, "%s%.*s\n", first ? "usage: " : "       ",
				(int)(n - (size_t)(text - line)), text);
			first = false;
		}
		line += n + (line[n] == '\n');
	}
}

/* Says what is wrong with the command line, then how it goes. Returns EXIT_USAGE. */
static int usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "guardian-service: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

enum opt_id {
	OPT_DAYS = 256,
	OPT_BROKER,
	OPT_BROKER_CA,
	OPT_REPLACE,
	OPT_NAME,
	OPT_ONCE,
	OPT_AK,
	OPT_STORE,
	OPT_CONNINFO,
	OPT_IMPORT,
};

static const struct option long_opts[] = {
	{ "dir", required_argument, NULL, 'd' },
	{ "output", required_argument, NULL, 'o' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "days", required_argument, NULL, OPT_DAYS },
	{ "broker", required_argument, NULL, OPT_BROKER },
	{ "broker-ca", required_argument, NULL, OPT_BROKER_CA },
	{ "replace", no_argument, NULL, OPT_REPLACE },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "once-per-request", no_argument, NULL, OPT_ONCE },
	{ "ak", required_argument, NULL, OPT_AK },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "conninfo", required_argument, NULL, OPT_CONNINFO },
	{ "import-files", no_argument, NULL, OPT_IMPORT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Everything a command line may say; each command checks what applies to it. */
struct cmdline {
	const char *dir, *output, *broker, *broker_ca, *name, *ak, *conninfo;
	long days;
	enum store_backend store;
	bool replace, once, verbose, import_files;
	bool has_days, has_output, has_broker, has_name, has_replace, has_once, has_ak;
	bool has_store, has_import; /* --store, --conninfo; --import-files */
	char **args;		    /* the positional arguments */
	int nargs;
};

/* Parses options after the command words (argv[0] is the last command word). */
static int parse(int argc, char **argv, struct cmdline *cl)
{
	int ch;

	*cl = (struct cmdline){ .dir = NULL, .store = STORE_SQLITE };
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:o:vh", long_opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			cl->dir = optarg;
			break;
		case 'o':
			cl->output = optarg;
			cl->has_output = true;
			break;
		case 'v':
			cl->verbose = true;
			break;
		case OPT_DAYS: {
			char *end;

			errno = 0;
			cl->days = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || cl->days < 1 ||
			    cl->days > 36500)
				return usage(
					"--days: \"%s\" is not a number of days from 1 to 36500",
					optarg);
			cl->has_days = true;
			break;
		}
		case OPT_BROKER:
			cl->broker = optarg;
			cl->has_broker = true;
			break;
		case OPT_BROKER_CA:
			cl->broker_ca = optarg;
			cl->has_broker = true;
			break;
		case OPT_REPLACE:
			cl->replace = cl->has_replace = true;
			break;
		case OPT_NAME:
			cl->name = optarg;
			cl->has_name = true;
			break;
		case OPT_ONCE:
			cl->once = cl->has_once = true;
			break;
		case OPT_AK:
			cl->ak = optarg;
			cl->has_ak = true;
			break;
		case OPT_STORE: {
			static const enum store_backend all[] = { STORE_FILES, STORE_SQLITE,
								  STORE_POSTGRES };
			bool known = false;

			for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
				if (strcmp(optarg, store_backend_name(all[i])) == 0) {
					cl->store = all[i];
					known = true;
				}
			}
			if (!known)
				return usage(
					"--store: unknown backend \"%s\" (expected one of files, "
					"sqlite, postgresql)",
					optarg);
			cl->has_store = true;
			break;
		}
		case OPT_CONNINFO:
			cl->conninfo = optarg;
			cl->has_store = true;
			break;
		case OPT_IMPORT:
			cl->import_files = cl->has_import = true;
			break;
		case 'h':
			usage_for(stdout, help_cmd);
			exit(0);
		case ':':
			return usage("%s: needs an argument", argv[optind - 1]);
		default:
			return usage("%s: unknown option", argv[optind - 1]);
		}
	}
	if (cl->dir == NULL)
		return usage("%s: -d DIR (the service directory) is required", argv[0]);
	cl->args = argv + optind;
	cl->nargs = argc - optind;
	return 0;
}

/* Refuses options that do not belong to the command 'cmd'. */
static int only(const struct cmdline *cl, const char *cmd, bool days, bool output, bool broker,
		bool name, bool replace, bool once)
{
	/* --ak goes with --replace: both belong to enroll only; --store, --conninfo with --days
	 * to init; --import-files to migrate (checked there). */
	if ((cl->has_days && !days) || (cl->has_output && !output) || (cl->has_broker && !broker) ||
	    (cl->has_name && !name) || (cl->has_replace && !replace) || (cl->has_once && !once) ||
	    (cl->has_ak && !replace) || (cl->has_store && !days) || cl->has_import)
		return usage("%s: an option given does not apply to this command", cmd);
	return 0;
}

static int cmd_init(const struct cmdline *cl)
{
	struct service_init_opts opts = { .days = (int)cl->days,
					  .store = cl->store,
					  .conninfo = cl->conninfo };
	char host[256], ca[PATH_MAX], why[512];

	if (cl->nargs != 0)
		return usage("init: unexpected argument \"%s\"", cl->args[0]);
	if (cl->store == STORE_POSTGRES && cl->conninfo == NULL)
		return usage("init: --store postgresql needs --conninfo STR (libpq's keyword=value "
			     "or URI)");
	if (cl->store != STORE_POSTGRES && cl->conninfo != NULL)
		return usage("init: --conninfo is for --store postgresql only");
	if (cl->broker != NULL) {
		const char *colon = strrchr(cl->broker, ':');
		char *end;
		long port;

		if (colon == NULL || colon == cl->broker ||
		    (size_t)(colon - cl->broker) >= sizeof(host))
			return usage("--broker: \"%s\" is not HOST:PORT", cl->broker);
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || end == colon + 1 || port < 1 || port > 65535)
			return usage("--broker: \"%s\" has no port from 1 to 65535", cl->broker);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - cl->broker), cl->broker);
		opts.broker_host = host;
		opts.broker_port = (int)port;
	}
	if (cl->broker_ca != NULL) {
		if (realpath(cl->broker_ca, ca) == NULL) {
			fprintf(stderr, "guardian-service: --broker-ca: %s: %s\n", cl->broker_ca,
				strerror(errno));
			return 1;
		}
		opts.broker_ca = ca;
	}
	if (service_init_dir(cl->dir, &opts, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: init: %s\n", why);
		return 1;
	}
	printf("guardian-service: %s initialised: mfg-ca.crt (give it to the broker's "
	       "attestation listener), op-ca.crt (to its telemetry listener), service.crt/.key, "
	       "nonce.key, service.json; store %s\n",
	       cl->dir, store_backend_name(cl->store));
	return 0;
}

static int cmd_enroll(const struct cmdline *cl)
{
	struct service *s = NULL;
	char why[512], name[64], out_path[PATH_MAX];
	char *csr = NULL, *cert = NULL, *ak = NULL;
	int status = 1;

	if (cl->nargs != 1)
		return usage("enroll: expected one CSR_FILE, got %s",
			     cl->nargs == 0 ? "none" : "more");
	csr = gd_read_file(cl->args[0]);
	if (csr == NULL) {
		fprintf(stderr, "guardian-service: %s: %s\n", cl->args[0], strerror(errno));
		goto out;
	}
	/* The attestation key is checked before anything is written. */
	if (cl->ak != NULL) {
		ak = gd_read_file(cl->ak);
		if (ak == NULL) {
			fprintf(stderr, "guardian-service: --ak: %s: %s\n", cl->ak,
				strerror(errno));
			goto out;
		}
		if (!tpm_quote_ak_valid(ak, why, sizeof(why))) {
			fprintf(stderr,
				"guardian-service: --ak: %s: %s (expected the device's "
				"identity-ak.pem)\n",
				cl->ak, why);
			goto out;
		}
	}
	if (service_open(cl->dir, &s, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: %s\n", why);
		goto out;
	}
	if (registry_enroll_ak(s, csr, ak, cl->replace, name, &cert, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: %s: %s\n", cl->args[0], why);
		goto out;
	}
	if (cl->output != NULL)
		snprintf(out_path, sizeof(out_path), "%s", cl->output);
	else
		snprintf(out_path, sizeof(out_path), "./%s.crt", name);
	if (gd_write_file_atomic(out_path, cert, strlen(cert), 0644) != 0) {
		fprintf(stderr,
			"guardian-service: %s: %s (the device is registered; its "
			"certificate is also %s/devices/%s.crt)\n",
			out_path, strerror(errno), cl->dir, name);
		goto out;
	}
	if (ak != NULL)
		printf("guardian-service: enrolled %s: identity certificate in %s, attestation key "
		       "in %s/devices/%s.ak.pem\n",
		       name, out_path, cl->dir, name);
	else
		printf("guardian-service: enrolled %s: identity certificate in %s\n", name,
		       out_path);
	status = 0;
out:
	free(ak);
	free(cert);
	free(csr);
	service_free(s);
	return status;
}

static int reference_on(struct store *st, const char *sub, const struct cmdline *cl);

static int cmd_reference(const char *sub, const struct cmdline *cl)
{
	char why[512];
	struct store *st = NULL;
	int status;

	if (service_store_open(cl->dir, false, &st, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: %s\n", why);
		return 1;
	}
	status = reference_on(st, sub, cl);
	store_close(st);
	return status;
}

/* `migrate`: the store's schema made or brought to this build's; with --import-files, what the
 * files of the directory hold copied into the database. */
static int cmd_migrate(const struct cmdline *cl)
{
	struct service_config cfg = { .broker_host = NULL };
	struct store *st = NULL;
	struct conf c;
	char why[512];
	int version = 0, status = 1;

	if (cl->nargs != 0)
		return usage("migrate: unexpected argument \"%s\"", cl->args[0]);
	conf_init(&c, SERVICE_CONFIG_FILE);
	if (service_config_load(cl->dir, &cfg, &c) != 0) {
		fprintf(stderr, "guardian-service: migrate: %s/%s\n", cl->dir,
			c.nerrors > 0 && c.errors[0] ? c.errors[0] : "invalid configuration");
		goto out;
	}
	if (cl->import_files && cfg.store.backend == STORE_FILES) {
		fprintf(stderr,
			"guardian-service: migrate: --import-files: %s/%s names the files store: "
			"nothing to import into (set \"store\" to sqlite or postgresql first)\n",
			cl->dir, SERVICE_CONFIG_FILE);
		goto out;
	}
	if (store_open(cl->dir, &cfg.store, true, &st, why, sizeof(why)) != 0 ||
	    store_schema_version(st, &version, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: migrate: %s\n", why);
		goto out;
	}
	printf("%s: store %s, schema version %d\n", cl->dir, store_backend_name(cfg.store.backend),
	       version);
	if (cl->import_files &&
	    service_migrate_import(cl->dir, st, stdout, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: migrate: --import-files: %s\n", why);
		goto out;
	}
	status = 0;
out:
	store_close(st);
	service_config_release(&cfg);
	conf_release(&c);
	return status;
}

/* The reference subcommand 'sub' on the store 'st'. Exit status. */
static int reference_on(struct store *st, const char *sub, const struct cmdline *cl)
{
	char why[512], label[64];
	char *text;
	int rc;

	if (strcmp(sub, "add") == 0) {
		if (cl->nargs != 1)
			return usage("reference add: expected one FILE (from guardian measure "
				     "--json)");
		text = gd_read_file(cl->args[0]);
		if (text == NULL) {
			fprintf(stderr, "guardian-service: %s: %s\n", cl->args[0], strerror(errno));
			return 1;
		}
		rc = reference_add(st, text, strlen(text), cl->name, label, why, sizeof(why));
		free(text);
		if (rc != 0) {
			fprintf(stderr, "guardian-service: %s: %s\n", cl->args[0], why);
			return 1;
		}
		printf("guardian-service: reference %s recorded\n", label);
		return 0;
	}
	if (strcmp(sub, "list") == 0) {
		if (cl->nargs != 0)
			return usage("reference list: unexpected argument \"%s\"", cl->args[0]);
		if (reference_list(st, stdout, why, sizeof(why)) != 0) {
			fprintf(stderr, "guardian-service: %s\n", why);
			return 1;
		}
		return 0;
	}
	if (cl->nargs != 1)
		return usage("reference remove: expected one LABEL");
	if (reference_remove(st, cl->args[0], why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: %s\n", why);
		return 1;
	}
	printf("guardian-service: reference %s removed\n", cl->args[0]);
	return 0;
}

/* Writes the CRL again from the records, and tells the broker (serve does it by itself). */
static int cmd_crl(const struct cmdline *cl)
{
	struct service *s = NULL;
	char why[512];
	int n;

	if (cl->nargs != 0)
		return usage("crl: unexpected argument \"%s\"", cl->args[0]);
	if (service_open(cl->dir, &s, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian-service: %s\n", why);
		return 1;
	}
	n = revoke_publish(s);
	service_free(s);
	if (n < 0) {
		fprintf(stderr, "guardian-service: %s/%s: not written (see above)\n", cl->dir,
			SERVICE_CRL_FILE);
		return 1;
	}
	printf("guardian-service: %s/%s written: %d certificate%s revoked\n", cl->dir,
	       SERVICE_CRL_FILE, n, n == 1 ? "" : "s");
	return 0;
}

/* Whether option 'arg' takes the next argument as its value (long_opts says which). */
static bool takes_value(const char *arg)
{
	if (strcmp(arg, "-d") == 0 || strcmp(arg, "-o") == 0)
		return true;
	for (size_t i = 0; long_opts[i].name != NULL; i++) {
		if (arg[0] == '-' && arg[1] == '-' && strcmp(arg + 2, long_opts[i].name) == 0)
			return long_opts[i].has_arg == required_argument;
	}
	return false;
}

/*
 * Moves the command's words (two for reference and release) to argv[1] and argv[2], wherever
 * they were (guardian-service -d DIR crl); the options and their values keep their order.
 */
static void command_words_first(int argc, char **argv)
{
	int at = 1;

	for (int i = 1; i < argc && at <= 2; i++) {
		char *word = argv[i];

		if (word[0] == '-') {
			if (strcmp(word, "--") == 0)
				break;
			if (takes_value(word))
				i++;
			continue;
		}
		memmove(&argv[at + 1], &argv[at], (size_t)(i - at) * sizeof(*argv));
		argv[at++] = word;
		if (at == 2 && strcmp(word, "reference") != 0 && strcmp(word, "release") != 0)
			break;
	}
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	const char *cmd;
	int rc;

	mqtt_tls_init();
	command_words_first(argc, argv);
	if (argc < 2 ||
	    (argv[1][0] == '-' && strcmp(argv[1], "-h") != 0 && strcmp(argv[1], "--help") != 0))
		return usage(
			"expected a command: init, migrate, enroll, reference, release, reports, "
			"crl or serve");
	cmd = argv[1];
	help_cmd = cmd;
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "reference") == 0) {
		const char *sub = argc > 2 ? argv[2] : "";

		for (int i = 2; i < argc && strcmp(sub, "add") != 0 && strcmp(sub, "list") != 0 &&
				strcmp(sub, "remove") != 0;
		     i++) {
			if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
				usage_for(stdout, "reference");
				return 0;
			}
		}
		if (strcmp(sub, "add") != 0 && strcmp(sub, "list") != 0 &&
		    strcmp(sub, "remove") != 0)
			return usage("reference: expected add, list or remove, got \"%s\"", sub);
		rc = parse(argc - 2, argv + 2, &cl);
		if (rc == 0)
			rc = only(&cl, "reference", false, false, false, strcmp(sub, "add") == 0,
				  false, false);
		return rc != 0 ? rc : cmd_reference(sub, &cl);
	}
	/* Delivery goes through the service's broker connection and registry: -d DIR. */
	if (strcmp(cmd, "release") == 0 && argc > 2 && strcmp(argv[2], "publish") == 0)
		return release_publish_main(argc - 2, argv + 2);
	if (strcmp(cmd, "release") == 0 && argc > 2 && strcmp(argv[2], "status") == 0)
		return release_status_main(argc - 2, argv + 2);
	/* Update keys live apart from the service directory: keygen, sign and show take no -d. */
	if (strcmp(cmd, "release") == 0)
		return release_main(argc - 1, argv + 1);
	/* Its own options (--device, --json); it reads the directory, it opens no keys. */
	if (strcmp(cmd, "reports") == 0)
		return service_reports_main(argc - 1, argv + 1);
	if (strcmp(cmd, "init") != 0 && strcmp(cmd, "enroll") != 0 && strcmp(cmd, "serve") != 0 &&
	    strcmp(cmd, "crl") != 0 && strcmp(cmd, "migrate") != 0)
		return usage("unknown command \"%s\" (expected init, migrate, enroll, reference, "
			     "release, reports, crl or serve)",
			     cmd);
	rc = parse(argc - 1, argv + 1, &cl);
	if (rc != 0)
		return rc;
	if (strcmp(cmd, "init") == 0) {
		rc = only(&cl, cmd, true, false, true, false, false, false);
		return rc != 0 ? rc : cmd_init(&cl);
	}
	if (strcmp(cmd, "migrate") == 0) {
		struct cmdline bare = cl;

		bare.has_import = false; /* migrate's own */
		rc = only(&bare, cmd, false, false, false, false, false, false);
		return rc != 0 ? rc : cmd_migrate(&cl);
	}
	if (strcmp(cmd, "enroll") == 0) {
		rc = only(&cl, cmd, false, true, false, false, true, false);
		return rc != 0 ? rc : cmd_enroll(&cl);
	}
	if (strcmp(cmd, "crl") == 0) {
		rc = only(&cl, cmd, false, false, false, false, false, false);
		return rc != 0 ? rc : cmd_crl(&cl);
	}
	if (strcmp(cmd, "serve") == 0) {
		struct serve_opts opts = { .once_per_request = cl.once, .verbose = cl.verbose };

		rc = only(&cl, cmd, false, false, false, false, false, true);
		if (rc != 0)
			return rc;
		if (cl.nargs != 0)
			return usage("serve: unexpected argument \"%s\"", cl.args[0]);
		return service_serve(cl.dir, &opts);
	}
	return usage("unknown command \"%s\" (expected init, migrate, enroll, reference, release, "
		     "reports, crl or serve)",
		     cmd);
}
