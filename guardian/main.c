/* main.c: the guardian command: check a config, run the gateway, explain the policy, verify the
 * audit log. */
#include <errno.h>
#include <linux/capability.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "version.h"
#include "../adapters/canbus.h"
#include "../base/sandbox.h"
#include "compartment.h"
#include "uplink_remote.h"
#include "../proto/mqtt_tls.h"
#include "audit.h"
#include "console.h"
#include "core.h"
#include "attest_tpm.h"
#include "keystore.h"
#include "measure.h"
#include "preflight.h"
#include "update.h"

#define SUBSYS "main"

/* What the command line said: the command's options and its arguments. */
struct cmdline {
	const char *file;      /* -c */
	const char *state_dir; /* -s: instead of the config's state_dir */
	const char *head;      /* --head */
	bool verbose, json, short_names, j1939;
	char **args; /* the arguments after the command's words */
	int nargs;
};

/* Which options a command takes. */
enum {
	OPT_CONFIG = 1 << 0, /* -c FILE, required, and -s DIR */
	OPT_VERBOSE = 1 << 1,
	OPT_JSON = 1 << 2,
	OPT_HEAD = 1 << 3,
	OPT_DBC = 1 << 4, /* --short-names, --j1939 */
};

struct command {
	const char *name; /* one or two words */
	const char *synopsis;
	const char *help; /* lines, each indented by the usage */
	unsigned opts;
	int min_args, max_args;
	int (*run)(const struct cmdline *cl);
};

static int cmd_check(const struct cmdline *cl);
static int cmd_run(const struct cmdline *cl);
static int cmd_explain(const struct cmdline *cl);
static int cmd_audit_verify(const struct cmdline *cl);
static int cmd_dbc_import(const struct cmdline *cl);
static int cmd_console(const struct cmdline *cl);
static int cmd_hash_pin(const struct cmdline *cl);
static int cmd_provision(const struct cmdline *cl);
static int cmd_measure(const struct cmdline *cl);
static int cmd_version(const struct cmdline *cl);

/* Every command, in the order the usage lists them ("update" has its own parser: update.h). */
static const struct command commands[] = {
	{ .name = "check",
	  .synopsis = "-c FILE",
	  .help = "validate a site config and its policy, and what running it needs of this\n"
		  "machine: state directory, keys, certificates, devices; one line per\n"
		  "finding (error: or warning:), exit 0 when there is no error",
	  .opts = OPT_CONFIG,
	  .run = cmd_check },
	{ .name = "run",
	  .synopsis = "-c FILE [-v]",
	  .help = "run the gateway (SIGINT/SIGTERM stop it, SIGHUP reloads the policy);\n"
		  "refuses to start on what check calls an error",
	  .opts = OPT_CONFIG | OPT_VERBOSE,
	  .run = cmd_run },
	{ .name = "policy explain",
	  .synopsis = "-c FILE POINT [VALUE]",
	  .help = "which rule decides POINT; what it does with VALUE",
	  .opts = OPT_CONFIG,
	  .min_args = 1,
	  .max_args = 2,
	  .run = cmd_explain },
	{ .name = "audit verify",
	  .synopsis = "-c FILE [--head SEQ:MAC]",
	  .help = "check every record of the audit log; with --head, also that it still\n"
		  "holds the head (seq and MAC) last published in health or on the audit\n"
		  "topic: a cut or rewritten log does not",
	  .opts = OPT_CONFIG | OPT_HEAD,
	  .run = cmd_audit_verify },
	{ .name = "dbc import",
	  .synopsis = "[--short-names] [--j1939] FILE.dbc",
	  .help = "print a DBC file's signals as CAN points; lines it does not use are\n"
		  "named on stderr",
	  .opts = OPT_DBC,
	  .min_args = 1,
	  .max_args = 1,
	  .run = cmd_dbc_import },
	{ .name = "console",
	  .synopsis = "-c FILE",
	  .help = "the field console of the running guardian (^] leaves)",
	  .opts = OPT_CONFIG,
	  .run = cmd_console },
	{ .name = "console hash-pin",
	  .synopsis = "",
	  .help = "read a technician PIN on stdin, print its console.pin_hash",
	  .run = cmd_hash_pin },
	{ .name = "provision",
	  .synopsis = "-c FILE",
	  .help = "make the device's identity key and CSR in the state directory",
	  .opts = OPT_CONFIG,
	  .run = cmd_provision },
	{ .name = "measure",
	  .synopsis = "-c FILE [--json]",
	  .help = "the measurement log and register of this build and config, for\n"
		  "reference values",
	  .opts = OPT_CONFIG | OPT_JSON,
	  .run = cmd_measure },
	/* Parsed by update_main (update.h); here for the usage. */
	{ .name = "update",
	  .synopsis = "init|install|status|prestart ...",
	  .help = "signed updates into two slots, with rollback (guardian update --help)" },
	{ .name = "version", .synopsis = "", .help = "print the version", .run = cmd_version },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char command_list[] =
	"run, check, console, policy explain, audit verify, dbc import, provision, measure, "
	"update, version or help";

/* One command's synopsis and what it does. */
static void usage_of(FILE *out, const struct command *cmd, const char *lead)
{
	const char *line = cmd->help;

	fprintf(out, "%sguardian %s%s%s\n", lead, cmd->name, cmd->synopsis[0] ? " " : "",
		cmd->synopsis);
	while (*line != '\0') {
		size_t n = strcspn(line, "\n");

		fprintf(out, "        %.*s\n", (int)n, line);
		line += n + (line[n] == '\n');
	}
}

static void options_of(FILE *out, unsigned opts)
{
	fprintf(out, "options:\n");
	if (opts & OPT_CONFIG)
		fprintf(out,
			"  -c, --config FILE     the site config (JSON)\n"
			"  -s, --state-dir DIR   this state directory instead of the config's\n"
			"                        state_dir (to try a config without root)\n");
	if (opts & OPT_VERBOSE)
		fprintf(out, "  -v, --verbose         log debug lines\n");
	if (opts & OPT_JSON)
		fprintf(out, "      --json            as the JSON guardian-service reference add "
			     "takes\n");
	if (opts & OPT_HEAD)
		fprintf(out, "      --head SEQ:MAC    the head last published\n");
	if (opts & OPT_DBC)
		fprintf(out, "      --short-names     points named by their signal alone\n"
			     "      --j1939           extended frames matched by PGN and source\n");
	fprintf(out, "  -h, --help            this text\n");
}

/* The whole usage: every command. */
static void usage(FILE *out)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		usage_of(out, &commands[i], i == 0 ? "usage: " : "       ");
	fprintf(out, "       guardian help [COMMAND]   one command's usage (also guardian COMMAND "
		     "--help)\n");
	options_of(out, OPT_CONFIG | OPT_VERBOSE | OPT_JSON | OPT_HEAD | OPT_DBC);
}

/* The usage of every command whose first word is 'word' ("console": both). */
static void usage_word(FILE *out, const char *word)
{
	unsigned opts = 0;
	bool first = true;

	for (size_t i = 0; i < NCOMMANDS; i++) {
		size_t n = strcspn(commands[i].name, " ");

		if (strncmp(commands[i].name, word, n) != 0 || word[n] != '\0')
			continue;
		usage_of(out, &commands[i], first ? "usage: " : "       ");
		opts |= commands[i].opts;
		first = false;
	}
	options_of(out, opts);
}

/* Loads the config (with -s's state directory), printing every error, each after 'prefix';
 * NULL if there was any. */
static struct gd_config *load_as(const struct cmdline *cl, const char *prefix, const char *outcome)
{
	struct gd_config *cfg = NULL;
	struct conf c;

	conf_init(&c, cl->file);
	if (gd_config_load_at(cl->file, cl->state_dir, &c, &cfg) != 0) {
		for (size_t i = 0; i < c.nerrors; i++)
			fprintf(stderr, "%s%s\n", prefix,
				c.errors[i] ? c.errors[i] : "out of memory");
		fprintf(stderr, "%s: %zu error%s; %s\n", cl->file, c.nerrors,
			c.nerrors == 1 ? "" : "s", outcome);
	}
	conf_release(&c);
	return cfg;
}

static struct gd_config *load(const struct cmdline *cl)
{
	return load_as(cl, "", "nothing started");
}

struct findings {
	const char *file;
	int errors, warnings;
};

/* One line per finding of the pre-flight, as run would log it. */
static void print_finding(void *ctx, enum preflight_level level, const char *key, const char *text)
{
	struct findings *f = ctx;

	if (level == PREFLIGHT_ERROR)
		f->errors++;
	else
		f->warnings++;
	fprintf(stderr, "%s: %s: %s: %s\n", level == PREFLIGHT_ERROR ? "error" : "warning", f->file,
		key, text);
}

/*
 * guardian check: the config and its policy, then what running it needs of this machine
 * (preflight.h, the checks run makes before it starts). 0 without errors, else 1.
 */
static int cmd_check(const struct cmdline *cl)
{
	struct gd_config *cfg = load_as(cl, "error: ", "guardian run would refuse to start");
	struct findings f = { .file = cl->file };
	size_t npoints = 0;

	if (cfg == NULL)
		return 1;
	preflight(cfg, PREFLIGHT_CHECK, print_finding, &f);
	if (f.errors > 0) {
		fprintf(stderr,
			"%s: %d error%s, %d warning%s; guardian run would refuse to start\n",
			cl->file, f.errors, f.errors == 1 ? "" : "s", f.warnings,
			f.warnings == 1 ? "" : "s");
		gd_config_free(cfg);
		return 1;
	}
	for (size_t i = 0; i < cfg->nadapters; i++)
		npoints += cfg->adapters[i]->npoints;
	printf("configuration OK%s%.0d%s: device %s, %zu adapter%s, %zu points, policy %s with "
	       "%zu rule%s\n",
	       f.warnings > 0 ? " with " : "", f.warnings,
	       f.warnings == 0	 ? ""
	       : f.warnings == 1 ? " warning"
				 : " warnings",
	       cfg->device_id, cfg->nadapters, cfg->nadapters == 1 ? "" : "s", npoints,
	       cfg->policy_file, policy_rule_count(cfg->policy),
	       policy_rule_count(cfg->policy) == 1 ? "" : "s");
	gd_config_free(cfg);
	return 0;
}

/*
 * sandbox.adapter_user and sandbox.uplink_user: the children become them between clone and
 * execveat, so this process keeps CAP_SETUID and CAP_SETGID permitted (never effective) and lets
 * its children become those users only, and CAP_KILL permitted, raised only to kill such a child
 * (compartment_kill); the uplink's directories are made theirs now, while this
 * process may. 0, or GD_EDENIED (logged, with what to do).
 */
static int child_users(const struct gd_config *cfg, struct gd_sandbox *sb)
{
	const struct gd_sandbox_config *sc = &cfg->sandbox;
	const uint64_t need = (1ULL << CAP_SETUID) | (1ULL << CAP_SETGID) | (1ULL << CAP_KILL);
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	char why[768];

	if (sc->adapter_user == NULL && sc->uplink_user == NULL)
		return 0;
	if (syscall(SYS_capget, &hdr, data) != 0 || (data[0].permitted & need) != need) {
		log_error(
			SUBSYS,
			"refusing to start: sandbox.adapter_user and sandbox.uplink_user need "
			"CAP_SETUID and CAP_SETGID, to start the children as their users, and "
			"CAP_KILL, to stop them, and "
			"guardian (uid %u) has not got them: start it as root (with "
			"\"sandbox\": {\"user\": ...} it becomes that user, keeping only those "
			"three), or give it those three with the systemd drop-in "
			"guardian-users.conf (AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_KILL)",
			(unsigned)getuid());
		return GD_EDENIED;
	}
	sb->keep_caps = need;
	if (sc->adapter_user != NULL) {
		sb->child_uids[sb->nchild_users] = sc->adapter_uid;
		sb->child_gids[sb->nchild_users++] = sc->adapter_gid;
	}
	if (sc->uplink_user != NULL) {
		sb->child_uids[sb->nchild_users] = sc->uplink_uid;
		sb->child_gids[sb->nchild_users++] = sc->uplink_gid;
	}
	if (uplink_remote_prepare(cfg, why, sizeof(why)) != 0) {
		log_error(SUBSYS, "refusing to start: %s", why);
		return GD_EDENIED;
	}
	return 0;
}

/*
 * The sandbox (base/sandbox.h, profile "gateway"), once the config is loaded and before any thread
 * starts: nothing after needs a privilege, only files, devices and sockets this user may open. A
 * sandbox that cannot be entered is a refusal to start, unless the config turns it off.
 */
static int enter_sandbox(const struct gd_config *cfg)
{
	struct gd_sandbox sb = { .profile = "gateway", .user = cfg->sandbox.user };
	char why[512];

	if (!cfg->sandbox.enabled) {
		log_info(SUBSYS, "sandbox: off (\"sandbox\": {\"enabled\": false})");
		return 0;
	}
	/* Compartments (compartment.h): the adapters' children are started from this executable,
	 * opened now; the filter lets this process start them and nothing else. */
	if (cfg->sandbox.compartments) { /* the uplink's child too (uplink_remote.h) */
		if (compartment_prepare(cfg) != 0) {
			log_error(SUBSYS,
				  "refusing to start: compartments: cannot open this "
				  "executable (\"sandbox\": {\"compartments\": false} in %s "
				  "runs the adapters as threads)",
				  cfg->file);
			return GD_EDENIED;
		}
		sb.spawn = true;
		if (child_users(cfg, &sb) != 0)
			return GD_EDENIED;
	}
	if (gd_sandbox_enter(&sb, why, sizeof(why)) != 0) {
		log_error(SUBSYS,
			  "refusing to start: sandbox: %s (\"sandbox\": {\"enabled\": false} in %s "
			  "runs without it)",
			  why, cfg->file);
		return GD_EDENIED;
	}
	log_info(SUBSYS,
		 "sandbox: profile gateway as uid %u: %s, no_new_privs, seccomp allow-list%s",
		 (unsigned)getuid(),
		 sb.keep_caps != 0
			 ? "CAP_SETUID, CAP_SETGID and CAP_KILL permitted only, none effective"
			 : "no capabilities",
		 sb.spawn ? "; each adapter in a child process of its own" : "");
	if (cfg->sandbox.adapter_user != NULL)
		log_info(SUBSYS, "sandbox: the adapters' children run as %s (uid %u)",
			 cfg->sandbox.adapter_user, (unsigned)cfg->sandbox.adapter_uid);
	if (cfg->sandbox.uplink_user != NULL)
		log_info(SUBSYS, "sandbox: the uplink's child runs as %s (uid %u)",
			 cfg->sandbox.uplink_user, (unsigned)cfg->sandbox.uplink_uid);
	return 0;
}

static int cmd_run(const struct cmdline *cl)
{
	struct gd_config *cfg = load(cl);
	bool verbose = cl->verbose;
	struct gateway *gw;
	sigset_t set;
	int64_t next_health;
	int rc;

	if (cfg == NULL)
		return 1;
	log_set_level(verbose ? LOG_LEVEL_DEBUG : (enum log_level)cfg->log_level);
	if (enter_sandbox(cfg) != 0) {
		gd_config_free(cfg);
		return 1;
	}
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
static int cmd_audit_verify(const struct cmdline *cl)
{
	const char *head = cl->head;
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
	cfg = load(cl);
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

static int cmd_explain(const struct cmdline *cl)
{
	const char *file = cl->file;
	char **argv = cl->args;
	int argc = cl->nargs;
	struct gd_config *cfg;
	struct value v;
	char buf[4096];
	long id;

	cfg = load(cl);
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
static int cmd_provision(const struct cmdline *cl)
{
	struct gd_config *cfg = load(cl);
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
	if (cfg->attest.tpm) {
		bool made;

		if (attest_tpm_provision(cfg, &made, why, sizeof(why)) != 0) {
			fprintf(stderr, "guardian provision: attestation.tpm: %s\n", why);
			goto out;
		}
		printf("attestation key: %s in the TPM (%s); public key %s/%s\n",
		       made ? "made" : "kept", cfg->attest.tpm_tcti, cfg->state_dir,
		       ATTEST_TPM_PUB);
	}
	printf("identity key: %s/identity.key (stays on this device)\n"
	       "signing request: %s (CN=%s)\n"
	       "next: guardian-service enroll -d SERVICE_DIR %s%s%s%s, then copy the certificate "
	       "to %s\n",
	       cfg->state_dir, path, cfg->device_id, path, cfg->attest.tpm ? " --ak " : "",
	       cfg->attest.tpm ? cfg->state_dir : "", cfg->attest.tpm ? "/" ATTEST_TPM_PUB : "",
	       cfg->attest.cert_file != NULL ? cfg->attest.cert_file : "state_dir/identity.crt");
	rc = 0;
out:
	keystore_close(ks);
	gd_config_free(cfg);
	return rc;
}

/* Prints what this build and config measure to, as text or as the JSON a reference takes. */
static int cmd_measure(const struct cmdline *cl)
{
	struct gd_config *cfg = load(cl);
	bool json = cl->json;
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
static int cmd_hash_pin(const struct cmdline *cl)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO);
	char pin[64], hash[256];
	size_t len;

	(void)cl;
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
static int cmd_console(const struct cmdline *cl)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct termios old, raw;
	bool tty = isatty(STDIN_FILENO), in_open = true;
	struct gd_config *cfg = load(cl);
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
static int cmd_dbc_import(const struct cmdline *cl)
{
	struct dbc_options opt = { .short_names = cl->short_names, .j1939 = cl->j1939 };
	const char *file = cl->args[0];
	FILE *in;
	int n;

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

static int cmd_version(const struct cmdline *cl)
{
	(void)cl;
	printf("guardian %s\n", GD_VERSION);
	return 0;
}

/* ---- the command line --------------------------------------------------------------------- */

/* An option: its spellings, the commands' OPT_ bit it belongs to, whether it takes a value. */
struct option_spec {
	const char *shortname; /* "-c", or NULL */
	const char *longname;  /* "--config" */
	unsigned opt;	       /* 0: every command takes it */
	bool value;
};

static const struct option_spec option_specs[] = {
	{ .shortname = "-c", .longname = "--config", .opt = OPT_CONFIG, .value = true },
	{ .shortname = "-s", .longname = "--state-dir", .opt = OPT_CONFIG, .value = true },
	{ .shortname = "-v", .longname = "--verbose", .opt = OPT_VERBOSE },
	{ .longname = "--json", .opt = OPT_JSON },
	{ .longname = "--head", .opt = OPT_HEAD, .value = true },
	{ .longname = "--short-names", .opt = OPT_DBC },
	{ .longname = "--j1939", .opt = OPT_DBC },
	{ .shortname = "-h", .longname = "--help" },
};

/* A negative number is an argument (a VALUE for policy explain), not an option. */
static bool is_number(const char *arg)
{
	char *end;

	errno = 0;
	(void)strtod(arg, &end);
	return end != arg && *end == '\0';
}

/* The spec 'arg' spells ("-cFILE" and "--config=FILE" too, the value into *inline_value). */
static const struct option_spec *option_find(const char *arg, const char **inline_value)
{
	*inline_value = NULL;
	for (size_t i = 0; i < sizeof(option_specs) / sizeof(option_specs[0]); i++) {
		const struct option_spec *o = &option_specs[i];
		size_t n = strlen(o->longname);

		if (strcmp(arg, o->longname) == 0 ||
		    (o->shortname && strcmp(arg, o->shortname) == 0))
			return o;
		if (o->value && strncmp(arg, o->longname, n) == 0 && arg[n] == '=') {
			*inline_value = arg + n + 1;
			return o;
		}
		if (o->value && o->shortname && strncmp(arg, o->shortname, 2) == 0 &&
		    arg[2] != '\0') {
			*inline_value = arg + 2;
			return o;
		}
	}
	return NULL;
}

/* What the words of a command line are, options and their values taken out. */
struct parsed {
	char **words;
	int nwords;
	unsigned seen;		/* OPT_ bits given */
	const char *seen_as[8]; /* how each OPT_ bit was first spelled */
	const char *unknown;	/* the first option that is none of ours */
	const char *missing;	/* an option given without its value */
	bool help;
};

static void parse_words(int argc, char **argv, struct cmdline *cl, struct parsed *p)
{
	bool options_end = false;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value;
		const struct option_spec *o;

		if (!options_end && strcmp(arg, "--") == 0) {
			options_end = true;
			continue;
		}
		if (options_end || arg[0] != '-' || arg[1] == '\0' || is_number(arg)) {
			p->words[p->nwords++] = argv[i];
			continue;
		}
		if (strcmp(arg, "--version") == 0) {
			p->words[p->nwords++] = (char *)"version";
			continue;
		}
		o = option_find(arg, &value);
		if (o == NULL) {
			if (p->unknown == NULL)
				p->unknown = arg;
			continue;
		}
		if (o->value && value == NULL) {
			if (i + 1 < argc)
				value = argv[++i];
			else if (p->missing == NULL)
				p->missing = arg;
		}
		if (o->opt != 0 && !(p->seen & o->opt))
			p->seen_as[__builtin_ctz(o->opt)] = arg;
		p->seen |= o->opt;
		if (strcmp(o->longname, "--config") == 0)
			cl->file = value;
		else if (strcmp(o->longname, "--state-dir") == 0)
			cl->state_dir = value;
		else if (strcmp(o->longname, "--head") == 0)
			cl->head = value;
		else if (strcmp(o->longname, "--verbose") == 0)
			cl->verbose = true;
		else if (strcmp(o->longname, "--json") == 0)
			cl->json = true;
		else if (strcmp(o->longname, "--short-names") == 0)
			cl->short_names = true;
		else if (strcmp(o->longname, "--j1939") == 0)
			cl->j1939 = true;
		else
			p->help = true;
	}
}

/* The command the words name: two words ("policy explain") before one ("console"). */
static const struct command *command_find(char **words, int nwords)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < NCOMMANDS; i++) {
			const char *name = commands[i].name, *space = strchr(name, ' ');
			size_t n = space ? (size_t)(space - name) : strlen(name);

			if ((space != NULL) != (pass == 0) || nwords < 1 ||
			    strncmp(words[0], name, n) != 0 || words[0][n] != '\0')
				continue;
			if (space == NULL || (nwords > 1 && strcmp(words[1], space + 1) == 0))
				return &commands[i];
		}
	}
	return NULL;
}

/* Whether 'word' is the first word of a command ("policy" of "policy explain"). */
static bool command_word(const char *word)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		size_t n = strcspn(commands[i].name, " ");

		if (strncmp(commands[i].name, word, n) == 0 && word[n] == '\0')
			return true;
	}
	return false;
}

/* Says what is wrong with the command line of command 'name' ("dbc import"; NULL: none known),
 * then the usage of the commands of its first word. Returns 2. */
static int usage_error(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const char *name, const char *fmt, ...)
{
	char word[32];
	va_list ap;

	fprintf(stderr, "guardian%s%s: ", name ? " " : "", name ? name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	snprintf(word, sizeof(word), "%.*s", name ? (int)strcspn(name, " ") : 0, name ? name : "");
	if (command_word(word))
		usage_word(stderr, word);
	else
		usage(stderr);
	return 2;
}

/*
 * guardian update ...: its own parser (update.h) after the verb. The words may come after
 * options (guardian -c site.json update init): "update" and its verb go first.
 */
static int run_update(int argc, char **argv, int at)
{
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	int n = 0, verb = -1, rc;
	bool help = false;

	if (args == NULL)
		return 1;
	for (int i = 1; i < argc; i++) {
		const char *value;
		const struct option_spec *o =
			argv[i][0] == '-' ? option_find(argv[i], &value) : NULL;

		if (o != NULL && o->value && value == NULL) {
			i++; /* its value */
			continue;
		}
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			help = true;
		if (i > at && verb < 0 && argv[i][0] != '-')
			verb = i;
	}
	args[n++] = argv[at];
	if (help || verb < 0) {
		free(args);
		if (help)
			return update_main(2, (char *[]){ argv[at], (char *)"--help", NULL });
		return usage_error("update", "expected init, install, status or prestart");
	}
	args[n++] = argv[verb];
	for (int i = 1; i < argc; i++) {
		if (i != at && i != verb)
			args[n++] = argv[i];
	}
	args[n] = NULL;
	rc = update_main(n, args);
	free(args);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl = { .file = NULL };
	struct parsed p = { .nwords = 0 };
	const struct command *cmd;
	int words;

	/* Hidden: an adapter's child, started by guardian run only (compartment.h). */
	if (argc >= 2 && strcmp(argv[1], "adapter-child") == 0)
		return adapter_child_main(argc, argv);
	mqtt_tls_init();
	/* Hidden: the uplink's child, started by guardian run only (uplink_remote.h); OpenSSL is
	 * set up before it confines itself. */
	if (argc >= 2 && strcmp(argv[1], "uplink-child") == 0)
		return uplink_child_main(argc, argv);
	/* "update" has options of its own: found first, wherever it is. */
	for (int i = 1; i < argc; i++) {
		const char *value;
		const struct option_spec *o =
			argv[i][0] == '-' ? option_find(argv[i], &value) : NULL;

		if (o != NULL && o->value && value == NULL)
			i++;
		else if (strcmp(argv[i], "update") == 0)
			return run_update(argc, argv, i);
		else if (argv[i][0] != '-' || strcmp(argv[i], "--") == 0)
			break;
	}
	p.words = calloc((size_t)argc + 1, sizeof(*p.words));
	if (p.words == NULL)
		return 1;
	parse_words(argc, argv, &cl, &p);
	if (p.nwords == 0) {
		free(p.words);
		if (p.help) {
			usage(stdout);
			return 0;
		}
		if (p.unknown != NULL)
			return usage_error(NULL, "unknown option \"%s\"", p.unknown);
		return usage_error(NULL, "expected a command: %s", command_list);
	}
	if (strcmp(p.words[0], "help") == 0) {
		int rc = 0;

		if (p.nwords == 1)
			usage(stdout);
		else if (command_word(p.words[1]))
			usage_word(stdout, p.words[1]);
		else
			rc = usage_error(NULL, "unknown command \"%s\"; expected %s", p.words[1],
					 command_list);
		free(p.words);
		return rc;
	}
	cmd = command_find(p.words, p.nwords);
	if (cmd == NULL || p.help) {
		const char *word = p.words[0];
		int rc;

		if (p.help && command_word(word)) {
			usage_word(stdout, word);
			rc = 0;
		} else if (command_word(word)) {
			/* "policy" without "explain", "console" with something else than hash-pin
			 */
			rc = usage_error(word, "expected %s",
					 strcmp(word, "policy") == 0  ? "\"explain\""
					 : strcmp(word, "audit") == 0 ? "\"verify\""
					 : strcmp(word, "dbc") == 0   ? "\"import\""
								      : "-c FILE, or \"hash-pin\"");
		} else {
			rc = usage_error(NULL, "unknown command \"%s\"; expected %s", word,
					 command_list);
		}
		free(p.words);
		return rc;
	}
	words = strchr(cmd->name, ' ') != NULL ? 2 : 1;
	cl.args = p.words + words;
	cl.nargs = p.nwords - words;
	{
		const char *word = cmd->name;
		unsigned stray = p.seen & ~cmd->opts;
		int rc = -1;

		if (p.unknown != NULL)
			rc = usage_error(word, "unknown option \"%s\"", p.unknown);
		else if (p.missing != NULL)
			rc = usage_error(word, "%s needs a value", p.missing);
		else if (stray != 0)
			rc = usage_error(word, "%s is not an option of guardian %s",
					 p.seen_as[__builtin_ctz(stray)], cmd->name);
		else if ((cmd->opts & OPT_CONFIG) && cl.file == NULL)
			rc = usage_error(word, "missing -c FILE");
		else if (cl.nargs > cmd->max_args)
			rc = usage_error(word, "unexpected argument \"%s\"",
					 cl.args[cmd->max_args]);
		else if (cl.nargs < cmd->min_args)
			rc = usage_error(word, "expected %s", cmd->synopsis);
		if (rc < 0)
			rc = cmd->run(&cl);
		free(p.words);
		return rc;
	}
}
