/* test_sandbox.c: the sandbox's profiles, each entered in a forked child (the test process stays
 * as it was): what fails with EPERM and says so, what still works; and its config section. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "../../base/sandbox.h"
#include "../../guardian/core.h"
#include "../harness/harness.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1 /* sandbox.c lets the sanitizer runtimes open files read-only, and ptrace */
#else
#define SANITIZED 0
#endif

static char dir[64];
static int listen_fd = -1; /* a TCP listener on 127.0.0.1, made before the fork */
static int listen_port;
static int pty_master = -1; /* a pseudo-terminal, opened before the fork */
static char pty_name[64];

/* In the child: failures go to this pipe, one line each; the exit status counts them. */
static int report_fd = -1;
static int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	failures++;
	if (write(report_fd, line, (size_t)n) < 0)
		failures++;
}

/* A call that must fail with EPERM. */
#define DENIED(call)                                                                               \
	do {                                                                                       \
		errno = 0;                                                                         \
		long rc_ = (long)(call);                                                           \
		if (rc_ != -1 || errno != EPERM)                                                   \
			fail("%s: returned %ld, errno %d (%s); expected -1, EPERM", #call, rc_,    \
			     errno, strerror(errno));                                              \
	} while (0)

/* A call that must succeed (not -1). */
#define WORKS(call)                                                                                \
	do {                                                                                       \
		errno = 0;                                                                         \
		long rc_ = (long)(call);                                                           \
		if (rc_ == -1)                                                                     \
			fail("%s: failed: %s", #call, strerror(errno));                            \
	} while (0)

/* in_sandbox enters with 'spawn' (children of this binary) when set. */
static bool in_spawn;
/* ... keeping these capabilities permitted, with children that may become in_child_uid:gid
 * (when in_child_ids), after running in_pre (when set) in the child before it enters. */
static uint64_t in_keep;
static bool in_child_ids;
static uid_t in_child_uid;
static gid_t in_child_gid;
static void (*in_pre)(void);

struct child {
	int status; /* as waitpid */
	char stderr_text[8192];
	char failures[8192];
};

static void read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	/* Drain whatever does not fit, so that the child never blocks on a full pipe. */
	while (n > 0) {
		char skip[512];

		n = read(fd, skip, sizeof(skip));
	}
}

/* Forks; the child enters 'profile' (as 'user' when not NULL), runs 'body' and exits with the
 * number of failures. Its stderr and failures are captured. */
static void in_sandbox(const char *profile, const char *user, void (*body)(void), struct child *out)
{
	int err_pipe[2], fail_pipe[2];
	pid_t pid;

	cr_assert_eq(pipe(err_pipe), 0);
	cr_assert_eq(pipe(fail_pipe), 0);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		struct gd_sandbox sb = { .profile = profile,
					 .user = user,
					 .spawn = in_spawn,
					 .keep_caps = in_keep,
					 .child_uids = { in_child_uid },
					 .child_gids = { in_child_gid },
					 .nchild_users = in_child_ids ? 1 : 0 };
		char why[512] = "";

		close(err_pipe[0]);
		close(fail_pipe[0]);
		dup2(err_pipe[1], STDERR_FILENO);
		report_fd = fail_pipe[1];
		if (in_pre != NULL)
			in_pre();
		if (gd_sandbox_enter(&sb, why, sizeof(why)) != 0) {
			fail("gd_sandbox_enter(%s): %s", profile, why);
			_exit(100);
		}
		body();
		_exit(failures > 99 ? 99 : failures);
	}
	close(err_pipe[1]);
	close(fail_pipe[1]);
	read_all(fail_pipe[0], out->failures, sizeof(out->failures));
	read_all(err_pipe[0], out->stderr_text, sizeof(out->stderr_text));
	close(fail_pipe[0]);
	close(err_pipe[0]);
	cr_assert_eq(waitpid(pid, &out->status, 0), pid);
}

/* The child exited 0: every check in it held. */
static void expect_clean(const struct child *c)
{
	cr_expect(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0,
		  "the sandboxed child failed (status 0x%x):\n%s\nits stderr:\n%s", c->status,
		  c->failures, c->stderr_text);
}

static void setup(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);

	strcpy(dir, "/tmp/gd-sandbox-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(listen_fd, 0);
	cr_assert_eq(bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(listen_fd, 8), 0);
	cr_assert_eq(getsockname(listen_fd, (struct sockaddr *)&sin, &len), 0);
	listen_port = ntohs(sin.sin_port);
	pty_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	cr_assert_geq(pty_master, 0);
	cr_assert_eq(grantpt(pty_master), 0);
	cr_assert_eq(unlockpt(pty_master), 0);
	snprintf(pty_name, sizeof(pty_name), "%s", ptsname(pty_master));
}

static void teardown(void)
{
	char cmd[128];

	close(listen_fd);
	close(pty_master);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(sandbox, .init = setup, .fini = teardown, .timeout = 30);

/* A field of /proc/self/status ("CapEff"), its value's text; "" if absent. */
static const char *status_field(const char *name, char *out, size_t cap)
{
	char buf[4096], key[64];
	const char *at;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	out[0] = '\0';
	if (fd < 0)
		return out;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return out;
	buf[n] = '\0';
	snprintf(key, sizeof(key), "\n%s:", name);
	at = strstr(buf, key);
	if (at != NULL) {
		at += strlen(key);
		at += strspn(at, " \t");
		snprintf(out, cap, "%.*s", (int)strcspn(at, " \t\n"), at);
	}
	return out;
}

static bool started_as_root;

/* ---- what every profile refuses ------------------------------------------------------------ */

static void body_refusals(void)
{
	char *const argv[] = { "/bin/true", NULL };
	char *const envp[] = { NULL };
	struct sigaction sa = { .sa_handler = SIG_IGN };

	DENIED(execve("/bin/true", argv, envp));
	DENIED(syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, envp, 0));
	DENIED(fork());
	DENIED(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
	if (!SANITIZED)
		DENIED(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
	DENIED(syscall(SYS_unshare, 0x10000000 /* CLONE_NEWUSER */));
	DENIED(syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, NULL));
	DENIED(syscall(SYS_bpf, 0, NULL, 0));
	DENIED(syscall(SYS_keyctl, 0, 0, 0, 0, 0));
	DENIED(syscall(SYS_setuid, 0));
	DENIED(syscall(SYS_capset, NULL, NULL));
	/* Signals to this process only; the SIGSYS handler stays. */
	DENIED(kill(getppid(), 0));
	DENIED(sigaction(SIGSYS, &sa, NULL));
	/* No mapping both writable and executable. */
	DENIED(mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0) == MAP_FAILED
		       ? -1
		       : 0);
	if (!SANITIZED)
		DENIED(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
}

Test(sandbox, gateway_refuses_execve_fork_and_the_rest_with_eperm)
{
	struct child c;

	in_sandbox("gateway", NULL, body_refusals, &c);
	expect_clean(&c);
}

Test(sandbox, adapter_and_uplink_refuse_them_too)
{
	struct child c;

	in_sandbox("adapter", NULL, body_refusals, &c);
	expect_clean(&c);
	in_sandbox("uplink", NULL, body_refusals, &c);
	expect_clean(&c);
}

/* ---- spawn: children of this binary, nothing more ------------------------------------------- */

static void body_spawn(void)
{
	char *const argv[] = { "true", NULL };
	char *const envp[] = { NULL };
	static const char other_empty[] = "";
	int fd, status = -1, pidfd = -1;
	long pid;

	/* What compartments start is this fd; here /bin/true stands for guardian. */
	fd = open("/bin/true", O_PATH | O_CLOEXEC);
	WORKS(fd);
	WORKS(dup3(fd, GD_SANDBOX_EXEC_FD, O_CLOEXEC));
	/* Still no execve, and no execveat but of that descriptor and that empty path. */
	DENIED(execve("/bin/true", argv, envp));
	DENIED(syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, envp, 0));
	DENIED(syscall(SYS_execveat, fd, gd_sandbox_exec_path, argv, envp, AT_EMPTY_PATH));
	DENIED(syscall(SYS_execveat, GD_SANDBOX_EXEC_FD, "/bin/true", argv, envp, AT_EMPTY_PATH));
	DENIED(syscall(SYS_execveat, GD_SANDBOX_EXEC_FD, other_empty, argv, envp, AT_EMPTY_PATH));
	DENIED(syscall(SYS_execveat, GD_SANDBOX_EXEC_FD, gd_sandbox_exec_path, argv, envp, 0));
	/* A process, not one that shares memory or enters a namespace; vfork neither. */
	if (!SANITIZED)
		DENIED(syscall(SYS_clone, CLONE_VM | SIGCHLD, 0, 0, 0, 0));
	DENIED(syscall(SYS_clone, 0x10000000 /* CLONE_NEWUSER */ | SIGCHLD, 0, 0, 0, 0));
	DENIED(syscall(SYS_vfork));
	/* Signals: still this process only; SIGKILL through a pidfd, nothing else. */
	DENIED(kill(getppid(), 0));
	DENIED(syscall(SYS_pidfd_open, getppid(), 0));
	/* A fork-shaped clone that runs the binary at the descriptor. */
	pid = syscall(SYS_clone, 0x00001000 /* CLONE_PIDFD */ | SIGCHLD, 0, &pidfd, 0, 0);
	if (pid == 0) {
		syscall(SYS_execveat, GD_SANDBOX_EXEC_FD, gd_sandbox_exec_path, argv, envp,
			AT_EMPTY_PATH);
		_exit(99);
	}
	WORKS(pid);
	if (pid > 0) {
		DENIED(syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0));
		WORKS(wait4((pid_t)pid, &status, 0, NULL));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("the child of execveat(GD_SANDBOX_EXEC_FD): status 0x%x", status);
	}
	/* Without 'spawn', that child could not have been made (gateway_refuses_... above). */
}

Test(sandbox, spawn_starts_only_the_binary_at_its_descriptor)
{
	struct child c;

	in_spawn = true;
	in_sandbox("gateway", NULL, body_spawn, &c);
	in_spawn = false;
	expect_clean(&c);
}

static size_t count(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + 1, needle))
		n++;
	return n;
}

static void body_execve(void)
{
	char *const argv[] = { "/bin/true", NULL };
	char *const envp[] = { NULL };

	DENIED(execve("/bin/true", argv, envp));
}

Test(sandbox, a_denied_call_says_which_on_stderr)
{
	struct child c;
	char want[96];

#if !defined(__x86_64__)
	cr_skip_test("the SIGSYS line is written on x86_64 only; here a denied call only fails");
#endif
	in_sandbox("gateway", NULL, body_execve, &c);
	expect_clean(&c);
	snprintf(want, sizeof(want), ": sandbox: denied syscall %d (execve)\n", (int)SYS_execve);
	cr_expect_not_null(strstr(c.stderr_text, want), "no \"%s\" in the child's stderr:\n%s",
			   want, c.stderr_text);
	cr_expect_eq(count(c.stderr_text, "sandbox: denied"), 1, "not one denial:\n%s",
		     c.stderr_text);
}

/* ---- the process's privileges -------------------------------------------------------------- */

static void body_privileges(void)
{
	static const char *const zero[] = { "CapInh", "CapPrm", "CapEff", "CapAmb" };
	char v[64];

	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		if (strcmp(status_field(zero[i], v, sizeof(v)), "0000000000000000") != 0)
			fail("%s is %s, expected 0", zero[i], v);
	/* Only a process with CAP_SETPCAP can clear the bounding set: root here. */
	if (started_as_root &&
	    strcmp(status_field("CapBnd", v, sizeof(v)), "0000000000000000") != 0)
		fail("CapBnd is %s, expected 0", v);
	if (strcmp(status_field("NoNewPrivs", v, sizeof(v)), "1") != 0)
		fail("NoNewPrivs is %s, expected 1", v);
	if (strcmp(status_field("Seccomp", v, sizeof(v)), "2") != 0)
		fail("Seccomp is %s, expected 2 (filter)", v);
	if (strcmp(gd_sandbox_active() ? gd_sandbox_active() : "", "gateway") != 0)
		fail("gd_sandbox_active() is %s",
		     gd_sandbox_active() ? gd_sandbox_active() : "NULL");
}

Test(sandbox, gateway_has_no_capabilities_no_new_privs_and_a_filter)
{
	struct child c;

	started_as_root = geteuid() == 0;
	in_sandbox("gateway", NULL, body_privileges, &c);
	expect_clean(&c);
	if (!started_as_root)
		cr_log_info("not root: the bounding set was not checked (clearing it needs "
			    "CAP_SETPCAP)");
}

/* ---- what the gateway still does ----------------------------------------------------------- */

static void *thread_main(void *arg)
{
	return arg;
}

static void body_gateway_works(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons((uint16_t)listen_port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG },
			*ai = NULL;
	char path[128], path2[128], buf[16] = "";
	pthread_t t;
	void *ret = NULL;
	int fd, s, pair[2];

	snprintf(path, sizeof(path), "%s/file", dir);
	snprintf(path2, sizeof(path2), "%s/renamed", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	WORKS(fd);
	WORKS(write(fd, "hello", 5));
	WORKS(fsync(fd));
	close(fd);
	WORKS(rename(path, path2));
	fd = open(path2, O_RDONLY | O_CLOEXEC);
	WORKS(fd);
	WORKS(read(fd, buf, sizeof(buf) - 1));
	close(fd);
	if (strcmp(buf, "hello") != 0)
		fail("read back \"%s\"", buf);
	WORKS(unlink(path2));
	if (pthread_create(&t, NULL, thread_main, buf) != 0)
		fail("pthread_create failed");
	else if (pthread_join(t, &ret) != 0 || ret != buf)
		fail("pthread_join failed");
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	WORKS(s);
	WORKS(connect(s, (struct sockaddr *)&sin, sizeof(sin)));
	WORKS(send(s, "x", 1, MSG_NOSIGNAL));
	close(s);
	WORKS(s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
	close(s);
	WORKS(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
	close(pair[0]);
	close(pair[1]);
	/* What Paho and libmodbus do to find a host: /etc/hosts, and netlink for AI_ADDRCONFIG. */
	if (getaddrinfo("localhost", "1883", &hints, &ai) != 0 || ai == NULL)
		fail("getaddrinfo(localhost) failed");
	freeaddrinfo(ai);
	WORKS(getrandom(buf, sizeof(buf), 0));
	WORKS(usleep(1000));
	WORKS(kill(getpid(), 0));
	WORKS(isatty(pty_master) ? 0 : -1);
}

Test(sandbox, gateway_still_does_its_work_without_a_denial)
{
	struct child c;

	in_sandbox("gateway", NULL, body_gateway_works, &c);
	expect_clean(&c);
	cr_expect_null(strstr(c.stderr_text, "sandbox: denied"), "a denial in normal work:\n%s",
		       c.stderr_text);
}

/* ---- adapter: no network of its own, no files ---------------------------------------------- */

static void body_adapter(void)
{
	char path[128];
	int s, pair[2];

	DENIED(socket(AF_INET, SOCK_STREAM, 0));
	DENIED(socket(AF_INET6, SOCK_STREAM, 0));
	DENIED(socket(AF_INET, SOCK_DGRAM, 0));
	DENIED(socket(AF_NETLINK, SOCK_RAW, 0));
	DENIED(socket(AF_PACKET, SOCK_RAW, 0));
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	WORKS(s);
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "/run/nothing-here" };

		DENIED(connect(s, (struct sockaddr *)&sun, sizeof(sun)));
	}
	close(s);
	WORKS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
	WORKS(write(pair[0], "x", 1));
	close(pair[0]);
	close(pair[1]);
	/* No file it did not hold before. */
	snprintf(path, sizeof(path), "%s/adapter-file", dir);
	DENIED(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	DENIED(mkdir(path, 0700));
	if (!SANITIZED)
		DENIED(open("/etc/hostname", O_RDONLY | O_CLOEXEC));
	/* The serial line it was given. */
	{
		struct termios tio;

		WORKS(tcgetattr(pty_master, &tio));
		WORKS(tcsetattr(pty_master, TCSANOW, &tio));
	}
}

Test(sandbox, adapter_has_no_inet_socket_and_no_file)
{
	struct child c;

	in_sandbox("adapter", NULL, body_adapter, &c);
	expect_clean(&c);
}

/* ---- uplink: the network, no serial line --------------------------------------------------- */

static void body_uplink(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons((uint16_t)listen_port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct termios tio;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	WORKS(s);
	WORKS(connect(s, (struct sockaddr *)&sin, sizeof(sin)));
	close(s);
	WORKS(s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
	close(s);
	DENIED(socket(AF_CAN, SOCK_RAW, 1));
	/* isatty works; setting the line does not. */
	WORKS(tcgetattr(pty_master, &tio));
	DENIED(ioctl(pty_master, TCSETS, &tio));
	DENIED(ioctl(pty_master, TIOCMBIS, &(int){ TIOCM_RTS }));
	DENIED(ioctl(pty_master, TIOCSTI, "x"));
}

Test(sandbox, uplink_has_inet_sockets_and_no_serial_ioctl)
{
	struct child c;

	in_sandbox("uplink", NULL, body_uplink, &c);
	expect_clean(&c);
}

/* ---- another user -------------------------------------------------------------------------- */

static uid_t nobody_uid;

static void body_nobody(void)
{
	uid_t r, e, s;
	char v[64];

	if (getresuid(&r, &e, &s) != 0 || r != nobody_uid || e != nobody_uid || s != nobody_uid)
		fail("uids are %u %u %u, expected %u", (unsigned)r, (unsigned)e, (unsigned)s,
		     (unsigned)nobody_uid);
	DENIED(setuid(0));
	DENIED(setgid(0));
	if (strcmp(status_field("CapEff", v, sizeof(v)), "0000000000000000") != 0)
		fail("CapEff is %s", v);
	if (strcmp(status_field("CapBnd", v, sizeof(v)), "0000000000000000") != 0)
		fail("CapBnd is %s", v);
}

Test(sandbox, with_a_user_it_becomes_that_user_for_good)
{
	const struct passwd *pw = getpwnam("nobody");
	struct child c;

	if (geteuid() != 0)
		cr_skip_test("not root: only root can change user, so the user part is not tested");
	cr_assert_not_null(pw, "no user nobody on this machine");
	nobody_uid = pw->pw_uid;
	in_sandbox("gateway", "nobody", body_nobody, &c);
	expect_clean(&c);
}

/* ---- keep_caps: CAP_SETUID and CAP_SETGID permitted, for children of their own users -------- */

#define SETID_CAPS ((1ULL << 6) | (1ULL << 7)) /* CAP_SETGID, CAP_SETUID */

static uid_t keep_uid; /* who the sandboxed process is to be */

/* Permitted exactly CAP_SETUID and CAP_SETGID; effective, inheritable, ambient and bounding
 * empty (the bounding set only when the process could clear it: started as root). */
static void body_keeps_setid(void)
{
	static const char *const zero[] = { "CapInh", "CapEff", "CapAmb", "CapBnd" };
	uid_t r, e, s;
	char v[64];

	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		if (strcmp(status_field(zero[i], v, sizeof(v)), "0000000000000000") != 0 &&
		    (strcmp(zero[i], "CapBnd") != 0 || keep_uid == 0 || started_as_root))
			fail("%s is %s, expected 0", zero[i], v);
	if (strcmp(status_field("CapPrm", v, sizeof(v)), "00000000000000c0") != 0)
		fail("CapPrm is %s, expected 00000000000000c0 (CAP_SETUID, CAP_SETGID)", v);
	if (getresuid(&r, &e, &s) != 0 || r != keep_uid || e != keep_uid || s != keep_uid)
		fail("uids are %u %u %u, expected %u", (unsigned)r, (unsigned)e, (unsigned)s,
		     (unsigned)keep_uid);
	/* Not effective: no change of user without raising them, which only 'spawn' allows. */
	DENIED(setuid(0));
	DENIED(syscall(SYS_setresuid, 0, 0, 0));
}

/* A user that holds CAP_SETUID and CAP_SETGID as systemd's AmbientCapabilities= gives them:
 * permitted, effective, inheritable and ambient. */
static void become_nobody_with_ambient_caps(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { { 0 } };

	data[0].permitted = data[0].effective = data[0].inheritable = (uint32_t)SETID_CAPS;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 ||
	    syscall(SYS_setresgid, keep_uid, keep_uid, keep_uid) != 0 ||
	    syscall(SYS_setresuid, keep_uid, keep_uid, keep_uid) != 0 ||
	    syscall(SYS_capset, &hdr, data) != 0 ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 6, 0, 0) != 0 ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 7, 0, 0) != 0)
		fail("cannot become uid %u with ambient CAP_SETUID and CAP_SETGID: %s",
		     (unsigned)keep_uid, strerror(errno));
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

Test(sandbox, keep_caps_leaves_setuid_and_setgid_permitted_only)
{
	const struct passwd *pw = getpwnam("nobody");
	struct child c;

	if (geteuid() != 0)
		cr_skip_test(
			"not root: keeping CAP_SETUID and CAP_SETGID needs them to begin with");
	cr_assert_not_null(pw, "no user nobody on this machine");
	started_as_root = true;
	in_keep = SETID_CAPS;
	/* Root that stays root. */
	keep_uid = 0;
	in_sandbox("gateway", NULL, body_keeps_setid, &c);
	expect_clean(&c);
	/* Root that becomes a user: kept across the change. */
	keep_uid = pw->pw_uid;
	in_sandbox("gateway", "nobody", body_keeps_setid, &c);
	expect_clean(&c);
	/* A user started with them (AmbientCapabilities=): no CAP_SETPCAP, so the bounding set
	 * stays; the rest as above. */
	started_as_root = false;
	in_pre = become_nobody_with_ambient_caps;
	in_sandbox("gateway", NULL, body_keeps_setid, &c);
	expect_clean(&c);
	in_pre = NULL;
	in_keep = 0;
}

/* Without them to keep: refused before any step, saying so. */
static void body_unreached(void)
{
	fail("entered the sandbox without the capabilities to keep");
}

static void become_nobody(void)
{
	if (syscall(SYS_setresgid, keep_uid, keep_uid, keep_uid) != 0 ||
	    syscall(SYS_setresuid, keep_uid, keep_uid, keep_uid) != 0)
		fail("cannot become uid %u: %s", (unsigned)keep_uid, strerror(errno));
}

Test(sandbox, keep_caps_without_them_is_refused)
{
	const struct passwd *pw = getpwnam("nobody");
	struct child c;

	if (geteuid() != 0)
		cr_skip_test("not root: cannot become nobody to lose the capabilities");
	cr_assert_not_null(pw, "no user nobody on this machine");
	keep_uid = pw->pw_uid;
	in_keep = SETID_CAPS;
	in_pre = become_nobody;
	in_sandbox("gateway", NULL, body_unreached, &c);
	in_pre = NULL;
	in_keep = 0;
	cr_expect(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 100, "status 0x%x: %s", c.status,
		  c.failures);
	cr_expect_not_null(strstr(c.failures, "capabilities to keep (0xc0) are not all permitted"),
			   "%s", c.failures);
}

/* With 'spawn' and a child user: a child raises the two, drops its groups and becomes that user
 * (and no other), then its execveat leaves it no capability. */
static void body_spawn_as_user(void)
{
	char *const argv[] = { "true", NULL };
	char *const envp[] = { NULL };
	int fd, status = -1, pidfd = -1, pipefd[2];
	long pid;

	fd = open("/bin/cat", O_PATH | O_CLOEXEC);
	WORKS(fd);
	WORKS(dup3(fd, GD_SANDBOX_EXEC_FD, O_CLOEXEC));
	WORKS(pipe(pipefd));
	/* In the parent: not effective, so none of these can change anything. */
	DENIED(syscall(SYS_setresuid, in_child_uid, in_child_uid, in_child_uid));
	DENIED(syscall(SYS_setgroups, 0, NULL));
	pid = syscall(SYS_clone, 0x00001000 /* CLONE_PIDFD */ | SIGCHLD, 0, &pidfd, 0, 0);
	if (pid == 0) {
		struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
		struct __user_cap_data_struct data[2] = { { 0 } };
		char *const cat[] = { "cat", "/proc/self/status", NULL };

		data[0].permitted = data[0].effective = (uint32_t)SETID_CAPS;
		if (syscall(SYS_capset, &hdr, data) != 0)
			_exit(10);
		/* Another uid than the one allowed: refused by the filter (EPERM), not done. */
		if (syscall(SYS_setresuid, 0, 0, 0) != -1 || errno != EPERM)
			_exit(11);
		if (syscall(SYS_setresuid, in_child_uid, 0, in_child_uid) != -1)
			_exit(12);
		if (syscall(SYS_setgroups, 1, (gid_t[]){ 0 }) != -1)
			_exit(13);
		if (syscall(SYS_setgroups, 0, NULL) != 0 ||
		    syscall(SYS_setresgid, in_child_gid, in_child_gid, in_child_gid) != 0 ||
		    syscall(SYS_setresuid, in_child_uid, in_child_uid, in_child_uid) != 0)
			_exit(14);
		if (getuid() != in_child_uid || geteuid() != in_child_uid)
			_exit(15);
		dup2(pipefd[1], STDOUT_FILENO);
		syscall(SYS_execveat, GD_SANDBOX_EXEC_FD, gd_sandbox_exec_path, cat, envp,
			AT_EMPTY_PATH);
		_exit(16);
	}
	(void)argv;
	WORKS(pid);
	close(pipefd[1]);
	if (pid > 0) {
		char text[4096] = "";
		const char *at;
		ssize_t n;
		size_t len = 0;

		while ((n = read(pipefd[0], text + len, sizeof(text) - 1 - len)) > 0)
			len += (size_t)n;
		text[len] = '\0';
		WORKS(wait4((pid_t)pid, &status, 0, NULL));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("the child as uid %u: status 0x%x", (unsigned)in_child_uid, status);
		for (size_t i = 0; i < 4; i++) {
			static const char *const caps[] = { "\nCapEff:\t", "\nCapPrm:\t",
							    "\nCapInh:\t", "\nCapBnd:\t" };

			at = strstr(text, caps[i]);
			if (at == NULL ||
			    strncmp(at + strlen(caps[i]), "0000000000000000", 16) != 0)
				fail("the child's %s is not 0:\n%s", caps[i] + 1, text);
		}
	}
}

Test(sandbox, spawn_lets_a_child_become_its_user_only)
{
	const struct passwd *pw = getpwnam("daemon");
	struct child c;

	if (geteuid() != 0)
		cr_skip_test("not root: only root can change user");
	cr_assert_not_null(pw, "no user daemon on this machine");
	in_spawn = true;
	in_keep = SETID_CAPS;
	in_child_ids = true;
	in_child_uid = pw->pw_uid;
	in_child_gid = pw->pw_gid;
	in_sandbox("gateway", "nobody", body_spawn_as_user, &c);
	in_spawn = false;
	in_keep = 0;
	in_child_ids = false;
	expect_clean(&c);
}

/* ---- refusals to enter --------------------------------------------------------------------- */

static void body_none(void)
{
}

static void *sleeper(void *arg)
{
	pause();
	return arg;
}

Test(sandbox, refuses_unknown_profile_unknown_user_threads_and_a_second_entry)
{
	char why[512] = "";
	struct child c;
	pid_t pid;
	int status;

	cr_expect_eq(gd_sandbox_enter(&(struct gd_sandbox){ .profile = "shell" }, why, sizeof(why)),
		     GD_EINVAL);
	cr_expect_not_null(strstr(why, "unknown sandbox profile \"shell\""), "%s", why);
	cr_expect(gd_sandbox_profile_known("uplink"));
	cr_expect(!gd_sandbox_profile_known("shell"));
	cr_expect_null(gd_sandbox_active());
	/* An unknown user: refused before anything is dropped. */
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char v[64];

		if (gd_sandbox_enter(
			    &(struct gd_sandbox){ .profile = "gateway", .user = "no-such-user-gd" },
			    why, sizeof(why)) != GD_EINVAL ||
		    strstr(why, "no user \"no-such-user-gd\"") == NULL)
			_exit(1);
		if (gd_sandbox_active() != NULL ||
		    strcmp(status_field("Seccomp", v, sizeof(v)), "0") != 0 ||
		    strcmp(status_field("NoNewPrivs", v, sizeof(v)), "0") != 0)
			_exit(2);
		if (geteuid() == 0 &&
		    strcmp(status_field("CapBnd", v, sizeof(v)), "0000000000000000") == 0)
			_exit(3);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "an unknown user was not refused before any step (exit %d)", WEXITSTATUS(status));
	/* Entered, then entered again. */
	in_sandbox("gateway", NULL, body_none, &c);
	expect_clean(&c);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (gd_sandbox_enter(&(struct gd_sandbox){ .profile = "adapter" }, why,
				     sizeof(why)) != 0 ||
		    gd_sandbox_enter(&(struct gd_sandbox){ .profile = "gateway" }, why,
				     sizeof(why)) != GD_EINVAL ||
		    strstr(why, "already in the sandbox (profile adapter)") == NULL)
			_exit(1);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a second entry was not refused");
	/* With a thread running. */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pthread_t t;

		if (pthread_create(&t, NULL, sleeper, NULL) != 0)
			_exit(2);
		if (gd_sandbox_enter(&(struct gd_sandbox){ .profile = "gateway" }, why,
				     sizeof(why)) != GD_EINVAL ||
		    strstr(why, "2 threads already run") == NULL)
			_exit(1);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "entering with a thread running was not refused");
}

/* ---- the config section -------------------------------------------------------------------- */

static void write_file(const char *name, const char *text)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	h_write(path, text);
}

/* Loads a site with 'sandbox' (a JSON member, or ""); the errors in 'errs' (empty if none). */
static struct gd_config *load_site(const char *sandbox, char *errs, size_t cap)
{
	struct gd_config *cfg = NULL;
	char text[2048], file[128];
	struct conf c;

	write_file("ca.crt", "x");
	write_file("dev.crt", "x");
	write_file("dev.key", "x");
	write_file("policy.json", "{\"version\":1,\"connections\":[\"localhost:8883\"],\"uplink\":["
				  "{\"points\":\"*\",\"action\":\"allow\"}]}");
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"press-07\",\"policy\":\"policy.json\",%s"
		 "\"uplink\":{\"host\":\"localhost\",\"ca_file\":\"ca.crt\",\"cert_file\":"
		 "\"dev.crt\",\"key_file\":\"dev.key\"},"
		 "\"adapters\":[{\"name\":\"plc0\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"points\":[{\"name\":\"a\",\"address\":0}]}]}",
		 sandbox);
	write_file("site.json", text);
	snprintf(file, sizeof(file), "%s/site.json", dir);
	conf_init(&c, file);
	errs[0] = '\0';
	if (gd_config_load(file, &c, &cfg) != 0) {
		size_t len = 0;

		for (size_t i = 0; i < c.nerrors; i++)
			len += (size_t)snprintf(errs + len, len < cap ? cap - len : 0, "%s\n",
						c.errors[i]);
	}
	conf_release(&c);
	return cfg;
}

Test(sandbox, config_is_on_by_default_and_reads_enabled_and_user)
{
	struct gd_config *cfg;
	char errs[2048];

	cfg = load_site("", errs, sizeof(errs));
	cr_assert_not_null(cfg, "%s", errs);
	cr_expect(cfg->sandbox.enabled);
	cr_expect(cfg->sandbox.compartments, "compartments are on by default");
	cr_expect_null(cfg->sandbox.user);
	gd_config_free(cfg);
	cfg = load_site("\"sandbox\":{\"compartments\":false},", errs, sizeof(errs));
	cr_assert_not_null(cfg, "%s", errs);
	cr_expect(cfg->sandbox.enabled);
	cr_expect(!cfg->sandbox.compartments);
	gd_config_free(cfg);
	cr_expect_null(load_site("\"sandbox\":{\"compartments\":1},", errs, sizeof(errs)));
	cr_expect_not_null(strstr(errs, "sandbox.compartments: expected true or false"), "%s",
			   errs);
	cfg = load_site("\"sandbox\":{\"enabled\":false,\"user\":\"guardian\"},", errs,
			sizeof(errs));
	cr_assert_not_null(cfg, "%s", errs);
	cr_expect(!cfg->sandbox.enabled);
	cr_expect_str_eq(cfg->sandbox.user, "guardian");
	gd_config_free(cfg);
	cr_expect_null(load_site("\"sandbox\":{\"enabled\":\"yes\"},", errs, sizeof(errs)));
	cr_expect_not_null(strstr(errs, "sandbox.enabled: expected true or false"), "%s", errs);
	cr_expect_null(load_site("\"sandbox\":{\"user\":\"\"},", errs, sizeof(errs)));
	cr_expect_not_null(strstr(errs, "sandbox.user: an empty user name"), "%s", errs);
	cr_expect_null(load_site("\"sandbox\":{\"profile\":\"adapter\"},", errs, sizeof(errs)));
	cr_expect_not_null(strstr(errs, "sandbox.profile"), "%s", errs);
}
