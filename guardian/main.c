/* main.c: the guardian command: check a config, run the gateway, explain the policy, verify the
 * audit log. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "version.h"
#include "../adapters/canbus.h"
#include "../proto/mqtt_tls.h"
#include "audit.h"
#include "console.h"
#include "core.h"
#include "keystore.h"
#include "measure.h"
#include "update.h"

#define SUBSYS "main"

static void usage(FILE *out)
{
	fprintf(out, "usage: guardian check -c FILE   validate a site config and its policy\n"
		     "       guardian run -c FILE     run the gateway (SIGINT/SIGTERM stop it,\n"
		     "                                SIGHUP reloads the policy)\n"
		     "       guardian policy explain -c FILE POINT [VALUE]\n"
		     "                                which rule decides POINT; what it does with "
		     "VALUE\n"
		     "       guardian audit verify -c FILE [--head SEQ:MAC]\n"
		     "                                check every record of the audit log; with\n"
		     "                                --head, also that it still holds the head\n"
		     "                                (seq and MAC) last published in health or\n"
		     "                                on the audit topic: a cut or rewritten log\n"
		     "                                does not\n"
		     "       guardian dbc import [--short-names] [--j1939] FILE.dbc\n"
		     "                                print a DBC file's signals as CAN points;\n"
		     "                                lines it does not use are named on stderr\n"
		     "       guardian console -c FILE  the field console of the running guardian\n"
		     "                                (^] leaves)\n"
		     "       guardian console hash-pin\n"
		     "                                read a technician PIN on stdin, print its\n"
		     "                                console.pin_hash\n"
		     "       guardian provision -c FILE\n"
		     "                                make the device's identity key and CSR in\n"
		     "                                the state directory\n"
		     "       guardian measure -c FILE [--json]\n"
		     "                                the measurement log and register of this\n"
		     "                                build and config, for reference values\n"
		     "       guardian update init|install|status|prestart ...\n"
		     "                                signed updates into two slots, with\n"
		     "                                rollback (guardian update --help)\n"
		     "       guardian version         print the version\n"
		     "options:\n"
		     "  -c, --config FILE   the site config (JSON)\n"
		     "  -v, --verbose       log debug lines (run)\n"
		     "  -h, --help          this text\n");
}

/* Loads the config, printing every error; NULL if there was any. */
static struct gd_config *load(const char *file)
{
	struct gd_config *cfg = NULL;
	struct conf c;

	conf_init(&c, file);
	if (gd_config_load(file, &c, &cfg) != 0) {
		conf_print_errors(&c, stderr);
		fprintf(stderr, "%s: %zu error%s; nothing started\n", file, c.nerrors,
			c.nerrors == 1 ? "" : "s");
	}
	conf_release(&c);
	return cfg;
}

static int cmd_check(const char *file)
{
	struct gd_config *cfg = load(file);
	size_t npoints = 0;

	if (cfg == NULL)
		return 1;
	for (size_t i = 0; i < cfg->nadapters; i++)
		npoints += cfg->adapters[i]->npoints;
	printf("configuration OK: device %s, %zu adapter%s, %zu points, policy %s with %zu "
	       "rule%s\n",
	       cfg->device_id, cfg->nadapters, cfg->nadapters == 1 ? "" : "s", npoints,
	       cfg->policy_file, policy_rule_count(cfg->policy),
	       policy_rule_count(cfg->policy) == 1 ? "" : "s");
	gd_config_free(cfg);
	return 0;
}

static int cmd_run(const char *file, bool verbose)
{
	struct gd_config *cfg = load(file);
	struct gateway *gw;
	sigset_t set;
	int64_t next_health;
	int rc;

	if (cfg == NULL)
		return 1;
	log_set_level(verbose ? LOG_LEVEL_DEBUG : (enum log_level)cfg->log_level);
	/* The config's JSON tree is gone: give its pages back before the threads start. */
	malloc_trim(0);
	/* Signals are taken synchronously by this thread; every other thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	log_info(SUBSYS, "guardian %s starting: device %s, %zu adapter%s, %zu points", GD_VERSION,
		 cfg->device_id, cfg->nadapters, cfg->nadapters == 1 ? "" : "s", cfg->npoints);
	gw = gateway_start(cfg);
	if (gw == NULL) {
		gd_config_free(cfg);
		return 1;
	}
	next_health = gd_mono_ms() + cfg->uplink.health_interval_ms;
	for (;;) {
		int64_t wait_ms = next_health - gd_mono_ms();
		struct timespec ts;
		int sig;

		if (wait_ms < 0)
			wait_ms = 0;
		ts = (struct timespec){ .tv_sec = wait_ms / 1000,
					.tv_nsec = (wait_ms % 1000) * 1000000 };
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM) {
			log_info(SUBSYS, "%s: stopping", strsignal(sig));
			break;
		}
		if (sig == SIGHUP) {
			log_info(SUBSYS, "SIGHUP: reloading the policy");
			gateway_reload_policy(gw);
			gateway_publish_health(gw);
			continue;
		}
		if (gd_mono_ms() >= next_health) {
			gateway_publish_health(gw);
			next_health += cfg->uplink.health_interval_ms;
		}
	}
	rc = gateway_exit_status(gw);
	gateway_stop(gw, 3000);
	gd_config_free(cfg);
	log_info(SUBSYS, "stopped");
	return rc;
}

/* Reads a value as a person writes it: true/false, a number, else a string. */
static struct value parse_value(const char *text)
{
	char *end = NULL;
	double d;

	if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
		return (struct value){ .kind = VALUE_KIND_BOOL, .b = text[0] == 't' };
	errno = 0;
	if (strchr(text, '.') == NULL && strchr(text, 'e') == NULL && strchr(text, 'n') == NULL) {
		long long i = strtoll(text, &end, 10);

		if (errno == 0 && end != text && *end == '\0')
			return (struct value){ .kind = VALUE_KIND_INT, .i = i };
	}
	d = strtod(text, &end);
	if (end != text && *end == '\0')
		return (struct value){ .kind = VALUE_KIND_FLOAT, .f = d };
	return (struct value){ .kind = VALUE_KIND_STRING, .s = text };
}

/* Prints one problem of the audit log, as audit_check finds it. */
static void print_audit_problem(void *ctx, long line, const char *why)
{
	(void)ctx;
	(void)line;
	printf("%s\n", why);
}

/*
 * Reads "SEQ:MAC" (a seq from 1 and 64 hex digits, either case) into 'seq' and
 * 'mac' (lowercase). Returns 0, or -1 if 'text' is not that.
 */
static int parse_audit_head(const char *text, uint64_t *seq, char mac[65])
{
	unsigned long long n;
	uint8_t raw[32];
	char *end;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno != 0 || n == 0 || *end != ':' || !gd_hex_decode(end + 1, raw, sizeof(raw), '\0'))
		return -1;
	gd_hex_encode(raw, sizeof(raw), mac);
	*seq = n;
	return 0;
}

/*
 * guardian audit verify: one line per problem, a note on records from before
 * the key, a summary. 0 only when every record checks (and the head, if
 * given, is in the log); 1 otherwise; 2 for a malformed --head.
 */
static int cmd_audit_verify(const char *file, const char *head)
{
	struct gd_config *cfg;
	struct audit_result res;
	uint64_t head_seq = 0;
	char path[1024], head_mac[65] = "", why[512] = "";

	if (head != NULL && parse_audit_head(head, &head_seq, head_mac) != 0) {
		fprintf(stderr,
			"guardian audit verify: --head \"%s\": expected SEQ:MAC, the seq (from 1) "
			"and the 64 hex digits of a record's MAC as published in health or on the "
			"audit topic\n",
			head);
		return 2;
	}
	cfg = load(file);
	if (cfg == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/audit.log", cfg->state_dir);
	gd_config_free(cfg);
	if (audit_check(path, head_seq, head_mac, print_audit_problem, NULL, &res, why,
			sizeof(why)) != 0) {
		fprintf(stderr, "%s: cannot verify: %s\n", path, why);
		return 1;
	}
	if (res.unkeyed > 0)
		printf("note: %llu record%s up to line %ld %s from before the audit key "
		       "(plain SHA-256 \"hash\", no MAC): %s\n",
		       (unsigned long long)res.unkeyed, res.unkeyed == 1 ? "" : "s",
		       res.unkeyed_last_line, res.unkeyed == 1 ? "is" : "are",
		       res.unkeyed_anchored ? "the keyed record after them vouches for them"
					    : "no keyed record follows, so anyone who can write "
					      "the file could have rewritten them");
	printf("audit log%s: %llu record%s checked, %llu problem%s (%s)\n",
	       res.problems == 0 ? " OK" : "", (unsigned long long)res.records,
	       res.records == 1 ? "" : "s", (unsigned long long)res.problems,
	       res.problems == 1 ? "" : "s", path);
	if (res.head_line != 0)
		printf("last intact record: line %ld, head %llu:%s\n", res.head_line,
		       (unsigned long long)res.head_seq, res.head_mac);
	return res.problems == 0 ? 0 : 1;
}

static int cmd_explain(const char *file, int argc, char **argv)
{
	struct gd_config *cfg;
	struct value v;
	char buf[4096];
	long id;

	if (argc < 1 || argc > 2) {
		fprintf(stderr, "guardian policy explain: expected POINT [VALUE]\n");
		return 2;
	}
	cfg = load(file);
	if (cfg == NULL)
		return 1;
	id = points_find(cfg, NULL, argv[0]);
	if (id >= 0) {
		if (argc == 2)
			v = parse_value(argv[1]);
		policy_explain(cfg->policy, cfg->points, (uint32_t)id, argc == 2 ? &v : NULL, buf,
			       sizeof(buf));
		fputs(buf, stdout);
	} else {
		fprintf(stderr, "%s: no point \"%s\" (points are named adapter/point)\n", file,
			argv[0]);
	}
	gd_config_free(cfg);
	return id >= 0 ? 0 : 1;
}

/* Makes (or keeps) the identity key and writes the CSR an operator sends to enrollment. */
static int cmd_provision(const char *file)
{
	struct gd_config *cfg = load(file);
	struct keystore *ks = NULL;
	char why[512], path[512];
	static char csr[4096];
	int rc = 1;

	if (cfg == NULL)
		return 1;
	if (keystore_open(cfg->state_dir, true, &ks, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian provision: %s\n", why);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/identity.csr", cfg->state_dir);
	if (keystore_csr_pem(ks, cfg->device_id, csr, sizeof(csr)) != 0 ||
	    gd_write_file_atomic(path, csr, strlen(csr), 0644) != 0) {
		fprintf(stderr, "guardian provision: cannot write %s: %s\n", path, strerror(errno));
		goto out;
	}
	printf("identity key: %s/identity.key (stays on this device)\n"
	       "signing request: %s (CN=%s)\n"
	       "next: guardian-service enroll -d SERVICE_DIR %s, then copy the certificate to %s\n",
	       cfg->state_dir, path, cfg->device_id, path,
	       cfg->attest.cert_file != NULL ? cfg->attest.cert_file : "state_dir/identity.crt");
	rc = 0;
out:
	keystore_close(ks);
	gd_config_free(cfg);
	return rc;
}

/* Prints what this build and config measure to, as text or as the JSON a reference takes. */
static int cmd_measure(const char *file, bool json)
{
	struct gd_config *cfg = load(file);
	static struct meas_log log;
	char why[512];
	int rc = 1;

	if (cfg == NULL)
		return 1;
	/* The same digests a running guardian attests: taken as the config loaded. */
	if (measure_exe(cfg, "/proc/self/exe", why, sizeof(why)) != 0 ||
	    measure_config(cfg, NULL, &log, why, sizeof(why)) != 0) {
		fprintf(stderr, "guardian measure: %s\n", why);
	} else if (json) {
		char *text = meas_log_json(&log);

		if (text != NULL) {
			printf("%s\n", text);
			free(text);
			rc = 0;
		}
	} else {
		measure_print(&log, stdout);
		rc = 0;
	}
	gd_config_free(cfg);
	return rc;
}

/* Reads a PIN from stdin (without echo on a terminal) and prints its hash for the config. */
static int cmd_hash_pin(void)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO);
	char pin[64], hash[256];
	size_t len;

	if (tty) {
		fprintf(stderr, "PIN (4 to 12 digits): ");
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
	}
	if (fgets(pin, sizeof(pin), stdin) == NULL)
		pin[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
		fputc('\n', stderr);
	}
	len = strcspn(pin, "\r\n");
	pin[len] = '\0';
	if (console_pin_hash(pin, 200000, hash, sizeof(hash)) != 0) {
		fprintf(stderr, "guardian console hash-pin: a PIN is 4 to 12 digits\n");
		return 1;
	}
	explicit_bzero(pin, sizeof(pin));
	printf("%s\n", hash);
	return 0;
}

/* Relays a terminal (or a pipe) to the running guardian's console socket until either ends. */
static int cmd_console(const char *file)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct termios old, raw;
	bool tty = isatty(STDIN_FILENO), in_open = true;
	struct gd_config *cfg = load(file);
	int fd, rc = 0;

	if (cfg == NULL)
		return 1;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/console.sock", cfg->state_dir);
	gd_config_free(cfg);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		fprintf(stderr,
			"guardian console: cannot reach %s: %s (is guardian running, as "
			"this user?)\n",
			addr.sun_path, strerror(errno));
		return 1;
	}
	if (tty) {
		tcgetattr(STDIN_FILENO, &old);
		raw = old;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	for (;;) {
		struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN },
					 { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN } };
		char buf[4096];
		ssize_t n;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (write(STDOUT_FILENO, buf, (size_t)n) != n)
				break;
		}
		if (pfd[1].revents) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (tty && n > 0 && memchr(buf, 0x1d, (size_t)n) != NULL)
				break; /* ^], as telnet */
			if (n <= 0) {
				/* Input ended: the console answers what was sent, then closes. */
				shutdown(fd, SHUT_WR);
				in_open = false;
			} else if (write(fd, buf, (size_t)n) != n) {
				rc = 1;
				break;
			}
		}
	}
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
		fputs("\r\n", stdout);
	}
	close(fd);
	return rc;
}

/* guardian dbc import [--short-names] [--j1939] FILE.dbc */
static int cmd_dbc_import(int argc, char **argv)
{
	struct dbc_options opt = { 0 };
	const char *file = NULL;
	FILE *in;
	int n;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--short-names") == 0)
			opt.short_names = true;
		else if (strcmp(argv[i], "--j1939") == 0)
			opt.j1939 = true;
		else if (argv[i][0] != '-' && file == NULL)
			file = argv[i];
		else {
			fprintf(stderr, "guardian dbc import: unexpected \"%s\"\n", argv[i]);
			return 2;
		}
	}
	if (file == NULL) {
		fprintf(stderr, "guardian dbc import: missing FILE.dbc\n");
		return 2;
	}
	in = fopen(file, "r");
	if (in == NULL) {
		fprintf(stderr, "guardian dbc import: cannot open %s: %s\n", file, strerror(errno));
		return 1;
	}
	n = dbc_import(in, file, stdout, stderr, &opt);
	fclose(in);
	if (n < 0)
		return 1;
	fprintf(stderr, "%s: %d signals imported\n", file, n);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'j' },
		{ "head", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd, *file = NULL, *head = NULL;
	bool verbose = false, json = false;
	int ch;

	mqtt_tls_init();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("guardian %s\n", GD_VERSION);
		return 0;
	}
	if (strcmp(cmd, "console") == 0 && argc == 3 && strcmp(argv[2], "hash-pin") == 0)
		return cmd_hash_pin();
	if (strcmp(cmd, "update") == 0)
		return update_main(argc - 1, argv + 1);
	if (strcmp(cmd, "dbc") == 0) {
		if (argc < 3 || strcmp(argv[2], "import") != 0) {
			fprintf(stderr, "guardian dbc: expected \"import\"\n");
			usage(stderr);
			return 2;
		}
		return cmd_dbc_import(argc - 3, argv + 3);
	}
	/* Two-word commands: "audit verify", "policy explain". */
	if (strcmp(cmd, "audit") == 0 || strcmp(cmd, "policy") == 0) {
		static char joined[32];
		const char *verb = strcmp(cmd, "audit") == 0 ? "verify" : "explain";

		if (argc < 3 || strcmp(argv[2], verb) != 0) {
			fprintf(stderr, "guardian %s: expected \"%s\"\n", cmd, verb);
			usage(stderr);
			return 2;
		}
		snprintf(joined, sizeof(joined), "%s %s", cmd, verb);
		cmd = joined;
		argv++;
		argc--;
	}
	optind = 2;
	while ((ch = getopt_long(argc, argv, "+c:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		case 'j':
			json = true;
			break;
		case 'H':
			head = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (file == NULL) {
		fprintf(stderr, "guardian %s: missing -c FILE\n", cmd);
		usage(stderr);
		return 2;
	}
	if (head != NULL && strcmp(cmd, "audit verify") != 0) {
		fprintf(stderr, "guardian %s: --head is for audit verify only\n", cmd);
		return 2;
	}
	if (strcmp(cmd, "check") == 0)
		return cmd_check(file);
	if (strcmp(cmd, "audit verify") == 0)
		return cmd_audit_verify(file, head);
	if (strcmp(cmd, "policy explain") == 0)
		return cmd_explain(file, argc - optind, argv + optind);
	if (strcmp(cmd, "run") == 0)
		return cmd_run(file, verbose);
	if (strcmp(cmd, "console") == 0)
		return cmd_console(file);
	if (strcmp(cmd, "provision") == 0)
		return cmd_provision(file);
	if (strcmp(cmd, "measure") == 0)
		return cmd_measure(file, json);
	fprintf(stderr, "guardian: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
