/* main.c: guardian-launch [--user USER] -- /path/guardian run -c CONFIG [args]: measures guardian,
 * its config, policy and CAs into a TPM PCR, starts exactly the binary it measured, and stays as
 * its TPM broker until it exits. */
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/sandbox.h"
#include "launch.h"

extern char **environ;

#define USAGE "usage: guardian-launch [--user USER] -- /path/guardian run -c CONFIG [args...]\n"

struct launch_args {
	const char *user;
	uid_t uid; /* of 'user' */
	gid_t gid;
	char *const *argv; /* the program and its arguments */
	const char *config;
};

/* Usage errors: exit 2, naming the argument. */
static _Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static _Noreturn void usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "guardian-launch: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n" USAGE);
	va_end(ap);
	exit(2);
}

static void parse_args(int argc, char **argv, struct launch_args *a)
{
	int i = 1;

	memset(a, 0, sizeof(*a));
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "--user") == 0) {
			if (i + 1 >= argc || argv[i + 1][0] == '\0')
				usage_error("%s: missing the user name", argv[i]);
			a->user = argv[++i];
		} else if (strncmp(argv[i], "--user=", 7) == 0 && argv[i][7] != '\0') {
			a->user = argv[i] + 7;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(USAGE, stdout);
			exit(0);
		} else {
			usage_error("unknown option \"%s\"", argv[i]);
		}
	}
	if (i >= argc)
		usage_error("missing the program to start (guardian and its arguments)");
	a->argv = argv + i;
	/* guardian's own option, as its getopt_long reads it; the last one counts. */
	for (int j = i + 1; j < argc; j++) {
		if ((strcmp(argv[j], "-c") == 0 || strcmp(argv[j], "--config") == 0) &&
		    j + 1 < argc)
			a->config = argv[++j];
		else if (strncmp(argv[j], "--config=", 9) == 0)
			a->config = argv[j] + 9;
		else if (strncmp(argv[j], "-c", 2) == 0 && argv[j][2] != '\0')
			a->config = argv[j] + 2;
	}
	if (a->config == NULL || a->config[0] == '\0')
		usage_error("%s: its command line has no -c CONFIG", a->argv[0]);
}

/* Between fork and exec: drops to the user (with every group of it) and checks there is no way
 * back. */
static void drop_to(const struct launch_args *a)
{
	if (initgroups(a->user, a->gid) != 0 || setgid(a->gid) != 0 || setuid(a->uid) != 0) {
		fprintf(stderr, "guardian-launch: --user %s: cannot become that user: %s\n",
			a->user, strerror(errno));
		_exit(126);
	}
	if (getuid() != a->uid || geteuid() != a->uid || getgid() != a->gid ||
	    getegid() != a->gid || (a->uid != 0 && setuid(0) == 0)) {
		fprintf(stderr, "guardian-launch: --user %s: the change of user did not hold\n",
			a->user);
		_exit(126);
	}
}

/* The child: only stdio, the broker socket and the measured binary go on; no TPM handle. */
static _Noreturn void start_child(const struct launch_args *a, int exe_fd, int sock,
				  const sigset_t *mask, pid_t parent)
{
	char fdtext[16];

	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
		long max = sysconf(_SC_OPEN_MAX);

		for (int fd = 3; fd < (max > 0 ? max : 65536); fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	if (a->user != NULL)
		drop_to(a);
	/* Without its broker guardian cannot attest: it goes when guardian-launch goes. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(126);
	snprintf(fdtext, sizeof(fdtext), "%d", sock);
	if (fcntl(sock, F_SETFD, 0) != 0 || setenv(GD_BROKER_FD_ENV, fdtext, 1) != 0 ||
	    sigprocmask(SIG_SETMASK, mask, NULL) != 0) {
		fprintf(stderr, "guardian-launch: cannot hand over the broker: %s\n",
			strerror(errno));
		_exit(126);
	}
	fexecve(exe_fd, a->argv, environ);
	fprintf(stderr, "guardian-launch: cannot start %s: %s\n", a->argv[0], strerror(errno));
	_exit(127);
}

/* guardian's status as ours: its exit code, or 128 + the signal that ended it. */
static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* Measures and starts: 0 and the TPM ready, or 1 with the reason printed. */
static int prepare(const struct launch_args *a, int exe_fd, struct launch_broker *b)
{
	struct launch_config cfg;
	uint8_t sha256[32], *blob = NULL;
	char why[1024], hex[65];
	size_t len = 0;
	int err;

	if (launch_hash_fd(exe_fd, sha256) != 0) {
		fprintf(stderr, "guardian-launch: %s: cannot read: %s\n", a->argv[0],
			strerror(errno));
		return 1;
	}
	err = launch_measure(a->config, a->argv[0], sha256, &cfg, &b->log, why, sizeof(why));
	if (err == 0)
		err = launch_read_ak(&cfg, &blob, &len, why, sizeof(why));
	if (err == 0)
		err = launch_tpm_start(&cfg, &b->log, blob, len, &b->tpm, why, sizeof(why));
	free(blob);
	if (err != 0) {
		fprintf(stderr, "guardian-launch: %s\n", why);
		return 1;
	}
	b->pcr = cfg.pcr;
	gd_hex_encode(b->log.reg, 32, hex);
	log_info("launch", "measured %zu items into PCR %d of %s: %s", b->log.n, b->pcr, cfg.tcti,
		 hex);
	return 0;
}

/* Reads the signals that arrived: forwards the stopping ones; true once the child is gone. */
static bool handle_signals(int sigfd, pid_t child, int *status)
{
	struct signalfd_siginfo si;

	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGCHLD) {
			log_info("launch", "forwarding signal %u to %d", si.ssi_signo, (int)child);
			kill(child, (int)si.ssi_signo);
		}
	}
	return waitpid(child, status, WNOHANG) == child;
}

int main(int argc, char **argv)
{
	struct launch_broker *b = NULL;
	struct launch_args a;
	sigset_t mask, old;
	int sv[2], sigfd, exe_fd, status = 0;
	pid_t child, parent = getpid();

	parse_args(argc, argv, &a);
	if (a.user != NULL) {
		const struct passwd *pw = getpwnam(a.user);

		if (pw == NULL)
			usage_error("--user: no such user \"%s\"", a.user);
		if (geteuid() != 0)
			usage_error("--user %s: guardian-launch must run as root to change user",
				    a.user);
		a.uid = pw->pw_uid;
		a.gid = pw->pw_gid;
	}
	exe_fd = open(a.argv[0], O_RDONLY | O_CLOEXEC);
	if (exe_fd < 0) {
		fprintf(stderr, "guardian-launch: %s: cannot open: %s\n", a.argv[0],
			strerror(errno));
		return 1;
	}
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		fatalx("launch", "out of memory");
	if (prepare(&a, exe_fd, b) != 0) {
		close(exe_fd);
		free(b);
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
	    sigprocmask(SIG_BLOCK, &mask, &old) != 0)
		fatal("launch", "cannot make the broker's socket");
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		fatal("launch", "signalfd");
	child = fork();
	if (child < 0)
		fatal("launch", "fork");
	if (child == 0)
		start_child(&a, exe_fd, sv[1], &old, parent);
	close(sv[1]);
	close(exe_fd);
	/* The broker needs no privilege but to pass signals on to guardian, another user's
	 * process: the TPM is open, the key and the files are read, the child has its user. */
	{
		char why[256];

		if (gd_caps_keep_only(1ULL << CAP_KILL, why, sizeof(why)) != 0)
			log_warnx("launch", "the broker keeps its capabilities: %s", why);
	}
	signal(SIGPIPE, SIG_IGN);
	log_info("launch", "started %s as %d; broker on PCR %d", a.argv[0], (int)child, b->pcr);
	for (;;) {
		struct pollfd p[2] = { { .fd = sigfd, .events = POLLIN },
				       { .fd = sv[0], .events = POLLIN } };

		if (poll(p, sv[0] >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			fatal("launch", "poll");
		if (p[1].revents != 0 && launch_broker_answer(b, sv[0]) != 0)
			sv[0] = -1;
		if (p[0].revents != 0 && handle_signals(sigfd, child, &status))
			break;
	}
	log_info("launch", "%s (%d) ended: exit code %d", a.argv[0], (int)child, exit_code(status));
	if (sv[0] >= 0)
		close(sv[0]);
	close(sigfd);
	gd_tpm_close(b->tpm);
	free(b);
	return exit_code(status);
}
