/* gd-supervise.c: a small service manager for tests, acting as systemd does for
 * deploy/guardian.service: ExecStartPre, Type=notify, WatchdogSec, Restart=on-failure. */

/*
 *   gd-supervise -s STATE_DIR [--pre "PROGRAM ARG..."] [--watchdog-ms MS] [--restart-ms MS]
 *                [--stop-ms MS] -- PROGRAM ARG...
 *
 * Before every start it runs the --pre command (split on spaces; a failure is a failed start);
 * then PROGRAM, found anew each time (so a switched symlink takes effect), with NOTIFY_SOCKET
 * naming a datagram socket it listens on (STATE_DIR/notify.sock) and, with --watchdog-ms,
 * WATCHDOG_USEC and WATCHDOG_PID. A program that sends no WATCHDOG=1 for --watchdog-ms (counted
 * from its start) gets SIGKILL. An exit other than 0, or a signal, restarts it after --restart-ms
 * (500); exit status 3 restarts it too (RestartForceExitStatus=3); exit 0 ends gd-supervise. How
 * each start ended goes to STATE_DIR/last-exit:
 *   {"ts":<UTC ms>,"start":4,"pid":1234,"status":1,"signal":null,"watchdog":false,"ready":true}
 * SIGTERM or SIGINT stops the program (SIGTERM, SIGKILL after --stop-ms) and then gd-supervise.
 * Lines on stderr say what it does.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/json.h"

#define MAX_ARGS 64

struct sup {
	const char *state_dir;
	char *pre[MAX_ARGS];
	char **argv;
	int watchdog_ms, restart_ms, stop_ms;
	int notify_fd, signal_fd;
	char sock_path[108];
	unsigned starts;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "gd-supervise: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Runs argv with NOTIFY_SOCKET (and the watchdog's variables) set when 'notify'. */
static pid_t spawn(struct sup *s, char *const argv[], bool notify)
{
	sigset_t none;
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	/* Unlike systemd, a test's supervisor may die: its children must not outlive it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (notify) {
		char num[32];

		setenv("NOTIFY_SOCKET", s->sock_path, 1);
		if (s->watchdog_ms > 0) {
			snprintf(num, sizeof(num), "%lld", (long long)s->watchdog_ms * 1000);
			setenv("WATCHDOG_USEC", num, 1);
			snprintf(num, sizeof(num), "%ld", (long)getpid());
			setenv("WATCHDOG_PID", num, 1);
		}
	} else {
		unsetenv("NOTIFY_SOCKET");
	}
	execv(argv[0], argv);
	fprintf(stderr, "gd-supervise: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static void write_last_exit(struct sup *s, pid_t pid, int status, bool watchdog, bool ready,
			    const char *phase)
{
	char path[1024], buf[512];
	struct jw w;
	size_t n;

	jw_init(&w, buf, sizeof(buf));
	jw_object(&w);
	jw_key(&w, "ts");
	jw_int(&w, gd_now_ms());
	jw_key(&w, "start");
	jw_uint(&w, s->starts);
	jw_key(&w, "phase");
	jw_string(&w, phase);
	jw_key(&w, "pid");
	jw_int(&w, pid);
	jw_key(&w, "status");
	if (WIFEXITED(status))
		jw_int(&w, WEXITSTATUS(status));
	else
		jw_null(&w);
	jw_key(&w, "signal");
	if (WIFSIGNALED(status)) {
		char name[32];

		snprintf(name, sizeof(name), "SIG%s", sigabbrev_np(WTERMSIG(status)));
		jw_string(&w, name);
	} else
		jw_null(&w);
	jw_key(&w, "watchdog");
	jw_bool(&w, watchdog);
	jw_key(&w, "ready");
	jw_bool(&w, ready);
	jw_end(&w);
	n = jw_finish(&w);
	snprintf(path, sizeof(path), "%s/last-exit", s->state_dir);
	if (n == 0 || n + 1 >= sizeof(buf))
		return;
	buf[n++] = '\n';
	if (gd_write_file_atomic(path, buf, n, 0600) != 0)
		say("cannot write %s: %s", path, strerror(errno));
}

static void describe(int status, char *out, size_t cap)
{
	if (WIFEXITED(status))
		snprintf(out, cap, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, cap, "signal SIG%s", sigabbrev_np(WTERMSIG(status)));
	else
		snprintf(out, cap, "status %#x", (unsigned)status);
}

/* Reads one signal; true for SIGTERM or SIGINT. */
static bool take_signal(struct sup *s)
{
	struct signalfd_siginfo si;

	if (read(s->signal_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return false;
	return si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT;
}

/* Waits for 'pid' to end, following its notifications, with a watchdog of 'watchdog_ms' (0: none;
 * the prestart has none). Returns its status; *stopping when asked to stop meanwhile (the child
 * is then stopped). */
static int watch(struct sup *s, pid_t pid, int watchdog_ms, bool *stopping, bool *watchdog,
		 bool *ready)
{
	int64_t last_ping = gd_mono_ms(), kill_at = 0;
	int status;

	for (;;) {
		struct pollfd pfd[2] = { { .fd = s->notify_fd, .events = POLLIN },
					 { .fd = s->signal_fd, .events = POLLIN } };
		int timeout = 100;
		pid_t done = waitpid(pid, &status, WNOHANG);

		if (done == pid)
			return status;
		if (*watchdog == false && !*stopping && watchdog_ms > 0 &&
		    gd_mono_ms() - last_ping > watchdog_ms) {
			say("watchdog: no WATCHDOG=1 from pid %ld for %d ms: SIGKILL", (long)pid,
			    watchdog_ms);
			*watchdog = true;
			kill(pid, SIGKILL);
		}
		if (kill_at != 0 && gd_mono_ms() >= kill_at) {
			say("pid %ld still runs %d ms after SIGTERM: SIGKILL", (long)pid,
			    s->stop_ms);
			kill(pid, SIGKILL);
			kill_at = 0;
		}
		if (poll(pfd, 2, timeout) <= 0)
			continue;
		if (pfd[0].revents & POLLIN) {
			char msg[4096];
			ssize_t n = recv(s->notify_fd, msg, sizeof(msg) - 1, 0);

			if (n > 0) {
				msg[n] = '\0';
				/* A datagram holds lines of assignments. */
				for (char *line = strtok(msg, "\n"); line != NULL;
				     line = strtok(NULL, "\n")) {
					if (strcmp(line, "WATCHDOG=1") == 0) {
						last_ping = gd_mono_ms();
					} else if (strcmp(line, "READY=1") == 0) {
						*ready = true;
						last_ping = gd_mono_ms();
						say("pid %ld is ready", (long)pid);
					} else {
						say("pid %ld: %s", (long)pid, line);
					}
				}
			}
		}
		if ((pfd[1].revents & POLLIN) && take_signal(s) && !*stopping) {
			say("stopping: SIGTERM to pid %ld", (long)pid);
			*stopping = true;
			kill(pid, SIGTERM);
			kill_at = gd_mono_ms() + s->stop_ms;
		}
	}
}

/* Splits 'text' on spaces into s->pre. */
static int split_pre(struct sup *s, char *text)
{
	size_t n = 0;

	for (char *tok = strtok(text, " "); tok != NULL; tok = strtok(NULL, " ")) {
		if (n + 1 >= MAX_ARGS)
			return -1;
		s->pre[n++] = tok;
	}
	s->pre[n] = NULL;
	return n > 0 ? 0 : -1;
}

/* Sleeps 'ms', unless asked to stop. True when asked. */
static bool pause_ms(struct sup *s, int ms)
{
	struct pollfd pfd = { .fd = s->signal_fd, .events = POLLIN };
	int64_t end = gd_mono_ms() + ms;

	for (int64_t left = ms; left > 0; left = end - gd_mono_ms()) {
		if (poll(&pfd, 1, (int)left) > 0 && take_signal(s))
			return true;
	}
	return false;
}

static int run(struct sup *s)
{
	for (;;) {
		bool stopping = false, watchdog = false, ready = false;
		char what[64];
		int status;
		pid_t pid;

		s->starts++;
		if (s->pre[0] != NULL) {
			pid = spawn(s, s->pre, false);
			if (pid < 0) {
				say("cannot fork: %s", strerror(errno));
				return 1;
			}
			status = watch(s, pid, 0, &stopping, &watchdog, &ready);
			if (stopping)
				return 0;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				describe(status, what, sizeof(what));
				say("start %u: %s failed (%s): restarting in %d ms", s->starts,
				    s->pre[0], what, s->restart_ms);
				write_last_exit(s, pid, status, false, false, "pre");
				if (pause_ms(s, s->restart_ms))
					return 0;
				continue;
			}
		}
		pid = spawn(s, s->argv, true);
		if (pid < 0) {
			say("cannot fork: %s", strerror(errno));
			return 1;
		}
		say("start %u: %s is pid %ld", s->starts, s->argv[0], (long)pid);
		status = watch(s, pid, s->watchdog_ms, &stopping, &watchdog, &ready);
		describe(status, what, sizeof(what));
		write_last_exit(s, pid, status, watchdog, ready, "main");
		if (stopping) {
			say("pid %ld stopped (%s)", (long)pid, what);
			return 0;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			say("pid %ld ended (%s): not restarted", (long)pid, what);
			return 0;
		}
		say("pid %ld ended (%s)%s: restarting in %d ms", (long)pid, what,
		    watchdog ? " by the watchdog" : "", s->restart_ms);
		if (pause_ms(s, s->restart_ms))
			return 0;
	}
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: gd-supervise -s STATE_DIR [--pre \"PROGRAM ARG...\"] [--watchdog-ms MS]\n"
		"                    [--restart-ms MS] [--stop-ms MS] -- PROGRAM ARG...\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "pre", required_argument, NULL, 'p' },
		{ "watchdog-ms", required_argument, NULL, 'w' },
		{ "restart-ms", required_argument, NULL, 'r' },
		{ "stop-ms", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sup s = { .restart_ms = 500, .stop_ms = 5000, .notify_fd = -1, .signal_fd = -1 };
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	sigset_t set;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			s.state_dir = optarg;
			break;
		case 'p':
			if (split_pre(&s, optarg) != 0) {
				fprintf(stderr,
					"gd-supervise: --pre: expected a command of 1 to "
					"%d words\n",
					MAX_ARGS - 1);
				return 2;
			}
			break;
		case 'w':
		case 'r':
		case 't': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end != '\0' || v < (ch == 'w' ? 0 : 1) || v > 86400000) {
				fprintf(stderr, "gd-supervise: %s: expected milliseconds\n",
					optarg);
				return 2;
			}
			*(ch == 'w'   ? &s.watchdog_ms
			  : ch == 'r' ? &s.restart_ms
				      : &s.stop_ms) = (int)v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (s.state_dir == NULL || optind >= argc) {
		usage(stderr);
		return 2;
	}
	s.argv = argv + optind;
	if ((size_t)snprintf(s.sock_path, sizeof(s.sock_path), "%s/notify.sock", s.state_dir) >=
	    sizeof(s.sock_path)) {
		fprintf(stderr,
			"gd-supervise: %s/notify.sock is longer than a socket path may be\n",
			s.state_dir);
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	s.signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	s.notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memcpy(addr.sun_path, s.sock_path, strlen(s.sock_path));
	unlink(s.sock_path);
	if (s.signal_fd < 0 || s.notify_fd < 0 ||
	    bind(s.notify_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		fprintf(stderr, "gd-supervise: cannot listen on %s: %s\n", s.sock_path,
			strerror(errno));
		return 1;
	}
	rc = run(&s);
	unlink(s.sock_path);
	say("stopped");
	return rc;
}
