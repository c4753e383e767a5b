/* sandbox.c: a process confines itself: user, capabilities, no_new_privs and a seccomp allow-list
 * per profile, built with libseccomp (sandbox.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "base.h"
#include "sandbox.h"

/* Sanitizer runtimes need more at exit (LeakSanitizer stops the threads with ptrace from a
 * clone that is not a thread, and reads /proc): only in those builds, never in a release. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* A denied call: on x86_64 a SIGSYS that we log and turn into EPERM; elsewhere plain EPERM. */
#if defined(__x86_64__)
#define DENY_ACTION SCMP_ACT_TRAP
#else
#define DENY_ACTION SCMP_ACT_ERRNO(EPERM)
#endif

/* clone's flags are its first argument, except on s390 where the first two are swapped. */
#if defined(__s390__) || defined(__s390x__)
#define CLONE_FLAGS_ARG 1
#else
#define CLONE_FLAGS_ARG 0
#endif

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the allow-lists ------------------------------------------------------------------------
 * Names the running architecture does not have are skipped. Calls with argument checks (clone,
 * socket, socketpair, ioctl, prctl, kill, tgkill, rt_sigaction, mmap, mprotect, prlimit64) are
 * added in build_rules(); what 'spawn' adds (clone like fork, execveat of this binary, pidfd
 * SIGKILL, wait4), in allow_spawn(). */

/* Every profile: memory, threads, time, signals, descriptors it holds, who it is. */
static const char *const sys_common[] = {
	/* memory; mmap and mprotect: never writable and executable at once */
	"brk", "munmap", "mremap", "madvise",
	/* threads (clone: threads only) and their locks; rseq and the robust list at each start */
	"futex", "set_robust_list", "rseq", "exit", "exit_group", "gettid", "getpid", "getppid",
	"sched_yield", "sched_getaffinity",
	/* time */
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
	/* signals (rt_sigaction: not SIGSYS; kill and tgkill: this process only) */
	"rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigpending", "rt_sigsuspend",
	"sigaltstack", "restart_syscall", "pause",
	/* descriptors it holds */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "close_range", "dup",
	"dup2", "dup3", "fcntl", "fstat", "lseek", "poll", "ppoll", "select", "pselect6",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "eventfd2", "pipe2",
	/* sockets it holds (socket, socketpair: by domain) */
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
	"getsockopt", "setsockopt", "getsockname", "getpeername", "bind",
	/* who and where it is */
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "capget",
	"uname", "sysinfo", "getrandom", "getrlimit", "getcwd"
};

/* gateway, uplink: files: the state directory, the spool, certificates, the C library's own
 * (/etc/hosts, /etc/localtime, NSS modules). */
static const char *const sys_files[] = {
	"open",	     "openat",	   "stat",	"lstat",      "newfstatat", "statx",	 "access",
	"faccessat", "faccessat2", "readlink",	"readlinkat", "getdents64", "statfs",	 "fstatfs",
	"mkdir",     "mkdirat",	   "rmdir",	"unlink",     "unlinkat",   "rename",	 "renameat",
	"renameat2", "link",	   "linkat",	"symlink",    "symlinkat",  "chmod",	 "fchmod",
	"fchmodat",  "fsync",	   "fdatasync", "ftruncate",  "truncate",   "fallocate", "flock",
	"umask",     "utimensat",  "fadvise64", "fchdir",
};

/* gateway, uplink: connections of their own (socket: by domain). */
static const char *const sys_connect[] = { "connect", "listen", "accept", "accept4" };

/* Any tty and socket: what isatty, non-blocking I/O and close-on-exec ask. */
static const unsigned long ioctl_common[] = { TCGETS, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX };

/* Network interfaces by name (if_nametoindex for SocketCAN and IPv6 scopes): read only. */
static const unsigned long ioctl_ifaces[] = { SIOCGIFINDEX, SIOCGIFNAME, SIOCGIFFLAGS, SIOCGIFMTU };

/* Serial lines, as libserialport and libmodbus set them up; never TIOCSTI or TIOCSETD. */
/* clang-format off */
static const unsigned long ioctl_serial[] = {
	TCSETS, TCSETSW, TCSETSF, TCSBRK, TCSBRKP, TIOCSBRK, TIOCCBRK, TCXONC, TCFLSH, TIOCEXCL,
	TIOCNXCL, TIOCMGET, TIOCMSET, TIOCMBIS, TIOCMBIC, TIOCGSERIAL, TIOCSSERIAL, TIOCGRS485,
	TIOCSRS485, TIOCOUTQ, TIOCGICOUNT, TIOCMIWAIT,
#if defined(__x86_64__) || defined(__aarch64__) || defined(__arm__) || defined(__riscv)
	/* TCGETS2, TCSETS2, TCSETSW2, TCSETSF2 (any baud rate): struct termios2 is 44 bytes here */
	_IOR('T', 0x2A, char[44]), _IOW('T', 0x2B, char[44]), _IOW('T', 0x2C, char[44]),
	_IOW('T', 0x2D, char[44]),
#endif
};
/* clang-format on */

/* The C library names threads and their memory; the rest is reading one's own state. */
static const int prctl_ok[] = {
	PR_SET_NAME,	     PR_GET_NAME,     PR_GET_DUMPABLE, PR_GET_SECCOMP,
	PR_GET_NO_NEW_PRIVS, PR_CAPBSET_READ, PR_GET_KEEPCAPS, PR_GET_TIMERSLACK,
#ifdef PR_SET_VMA
	PR_SET_VMA,
#endif
};

/* The one path execveat may name (with 'spawn'): compared by address. */
const char gd_sandbox_exec_path[] = "";

struct profile {
	const char *name;
	bool files;   /* sys_files; else not even open */
	bool connect; /* sys_connect */
	bool inet;    /* socket(AF_INET, AF_INET6), socket(AF_NETLINK, NETLINK_ROUTE) */
	bool can;     /* socket(AF_CAN) */
	bool serial;  /* ioctl_serial */
};

static const struct profile profiles[] = {
	{ .name = "gateway",
	  .files = true,
	  .connect = true,
	  .inet = true,
	  .can = true,
	  .serial = true },
	{ .name = "adapter", .can = true, .serial = true },
	{ .name = "uplink", .files = true, .connect = true, .inet = true },
};

static const struct profile *profile_find(const char *name)
{
	for (size_t i = 0; name != NULL && i < N(profiles); i++)
		if (strcmp(profiles[i].name, name) == 0)
			return &profiles[i];
	return NULL;
}

bool gd_sandbox_profile_known(const char *name)
{
	return profile_find(name) != NULL;
}

static const char *active_profile;

const char *gd_sandbox_active(void)
{
	return active_profile;
}

/* ---- the SIGSYS line ----------------------------------------------------------------------- */

#if defined(__x86_64__)
/* The calls we deny by name (the rest are shown by number); 'arg': the argument that decided, or
 * -1. */
/* clang-format off */
static const struct {
	int nr;
	signed char arg;
	const char *name;
} denied_names[] = {
#define D(n, a) { SYS_##n, a, #n }
	D(execve, -1), D(execveat, 0), D(fork, -1), D(vfork, -1), D(clone, 0), D(clone3, -1),
	D(ptrace, 0), D(process_vm_readv, -1), D(process_vm_writev, -1), D(mount, -1),
	D(umount2, -1), D(pivot_root, -1), D(chroot, -1), D(init_module, -1), D(finit_module, -1),
	D(delete_module, -1), D(kexec_load, -1), D(kexec_file_load, -1), D(bpf, 0),
	D(perf_event_open, -1), D(keyctl, 0), D(add_key, -1), D(request_key, -1),
	D(userfaultfd, -1), D(unshare, 0), D(setns, -1), D(reboot, -1), D(swapon, -1),
	D(swapoff, -1), D(personality, 0), D(setuid, 0), D(setgid, 0), D(setreuid, -1),
	D(setregid, -1), D(setresuid, -1), D(setresgid, -1), D(setgroups, -1), D(setfsuid, -1),
	D(setfsgid, -1), D(capset, -1), D(socket, 0), D(socketpair, 0), D(ioctl, 1), D(prctl, 0),
	D(kill, 0), D(tgkill, 0), D(tkill, -1), D(rt_sigaction, 0), D(mmap, 2), D(mprotect, 2),
	D(pkey_mprotect, 2), D(prlimit64, 0), D(setrlimit, 0), D(open, -1), D(openat, -1),
	D(creat, -1), D(connect, -1), D(listen, -1), D(accept, -1), D(accept4, -1), D(mkdir, -1),
	D(mkdirat, -1), D(unlink, -1), D(unlinkat, -1), D(rename, -1), D(renameat, -1),
	D(renameat2, -1), D(link, -1), D(linkat, -1), D(symlink, -1), D(symlinkat, -1),
	D(rmdir, -1), D(chmod, -1), D(fchmod, -1), D(fchmodat, -1), D(chown, -1), D(fchown, -1),
	D(lchown, -1), D(fchownat, -1), D(mknod, -1), D(mknodat, -1), D(truncate, -1),
	D(settimeofday, -1), D(clock_settime, -1), D(clock_adjtime, -1), D(adjtimex, -1),
	D(syslog, -1), D(iopl, -1), D(ioperm, -1), D(seccomp, 0), D(io_uring_setup, -1),
	D(memfd_create, -1), D(wait4, -1), D(waitid, -1), D(name_to_handle_at, -1),
	D(open_by_handle_at, -1), D(fanotify_init, -1), D(inotify_init1, -1), D(setpriority, -1),
	D(sched_setscheduler, -1), D(sched_setaffinity, -1), D(mlock, -1), D(acct, -1),
	D(quotactl, -1), D(sethostname, -1), D(setdomainname, -1), D(vhangup, -1), D(stat, -1),
	D(lstat, -1), D(newfstatat, 3), D(statx, -1), D(access, -1), D(faccessat, -1),
	D(faccessat2, -1), D(readlink, -1), D(readlinkat, -1), D(getdents64, -1), D(statfs, -1),
	D(chdir, -1), D(fchdir, -1),
#undef D
};
/* clang-format on */

static char prog_name[32] = "?";

/* Appends 's' at 'p' (never past 'end'); returns the new end. Async-signal-safe. */
static char *put(char *p, const char *end, const char *s)
{
	while (*s != '\0' && p < end)
		*p++ = *s++;
	return p;
}

static char *put_dec(char *p, const char *end, long v)
{
	char digits[24];
	size_t n = 0;
	unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;

	if (v < 0 && p < end)
		*p++ = '-';
	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	while (n > 0 && p < end)
		*p++ = digits[--n];
	return p;
}

static char *put_hex(char *p, const char *end, unsigned long v)
{
	char digits[20];
	size_t n = 0;

	do {
		digits[n++] = gd_hex_digits[v & 15];
		v >>= 4;
	} while (v != 0);
	p = put(p, end, "0x");
	while (n > 0 && p < end)
		*p++ = digits[--n];
	return p;
}

/* The filter refused a call: one line on stderr, and the call returns -EPERM. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	static const int arg_reg[] = { REG_RDI, REG_RSI, REG_RDX, REG_R10, REG_R8, REG_R9 };
	ucontext_t *uc = ctx;
	int saved = errno;
	char line[160], *p = line;
	const char *end = line + sizeof(line) - 1;

	(void)sig;
	p = put(p, end, prog_name);
	p = put(p, end, ": sandbox: denied syscall ");
	p = put_dec(p, end, si->si_syscall);
	for (size_t i = 0; i < N(denied_names); i++) {
		if (denied_names[i].nr != si->si_syscall)
			continue;
		p = put(p, end, " (");
		p = put(p, end, denied_names[i].name);
		if (denied_names[i].arg >= 0) {
			p = put(p, end, " ");
			p = put_hex(
				p, end,
				(unsigned long)uc->uc_mcontext.gregs[arg_reg[denied_names[i].arg]]);
		}
		p = put(p, end, ")");
		break;
	}
	*p++ = '\n';
	if (write(STDERR_FILENO, line, (size_t)(p - line)) < 0) {
		/* nothing more to do from a signal handler */
	}
	uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
	errno = saved;
}

static int trap_install(char *why, size_t cap)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	const char *name = program_invocation_short_name;

	snprintf(prog_name, sizeof(prog_name), "%s", name != NULL && name[0] ? name : "?");
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) != 0) {
		gd_whyf(why, cap, "cannot handle SIGSYS: %s", strerror(errno));
		return GD_EIO;
	}
	return 0;
}
#else
static int trap_install(char *why, size_t cap)
{
	(void)why;
	(void)cap;
	return 0;
}
#endif

/* ---- the filter ---------------------------------------------------------------------------- */

/* Adds 'name' (skipped where the architecture has no such call) with 'n' argument checks. */
static int rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
		const struct scmp_arg_cmp *args)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR || nr < 0)
		return 0;
	return seccomp_rule_add_array(ctx, action, nr, n, args);
}

static int allow_list(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++)
		rc = rule(ctx, SCMP_ACT_ALLOW, names[i], 0, NULL);
	return rc;
}

/* 'name' allowed when argument 'arg' is one of 'values' (compared on its low 32 bits). */
static int allow_values(scmp_filter_ctx ctx, const char *name, unsigned arg,
			const unsigned long *values, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		struct scmp_arg_cmp cmp = { .arg = arg,
					    .op = SCMP_CMP_MASKED_EQ,
					    .datum_a = 0xffffffffu,
					    .datum_b = values[i] & 0xffffffffu };

		rc = rule(ctx, SCMP_ACT_ALLOW, name, 1, &cmp);
	}
	return rc;
}

static int allow_socket(scmp_filter_ctx ctx, int domain)
{
	struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domain);

	return rule(ctx, SCMP_ACT_ALLOW, "socket", 1, &cmp);
}

/* mmap and mprotect: readable, writable or executable, never writable and executable. */
static int allow_wx(scmp_filter_ctx ctx, const char *name)
{
	static const scmp_datum_t ok[] = { 0, PROT_WRITE, PROT_EXEC };
	int rc = 0;

	for (size_t i = 0; i < N(ok) && rc == 0; i++) {
		struct scmp_arg_cmp cmp =
			SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, ok[i]);

		rc = rule(ctx, SCMP_ACT_ALLOW, name, 1, &cmp);
	}
	return rc;
}

/*
 * Sanitizer builds only: LeakSanitizer, at exit, clones a task that shares the memory (not a
 * thread: CLONE_VM without CLONE_THREAD), makes the process dumpable (prctl) and ptraces every
 * thread, reading /proc/self/task (getdents, not getdents64) and /proc/self/maps; the parent
 * waits for it. A call denied there kills the tracer (it blocks SIGSYS) and the parent waits for
 * ever. fork stays denied.
 */
static int allow_sanitizers(scmp_filter_ctx ctx)
{
	static const char *const names[] = { "ptrace",	   "wait4",    "prctl",	    "getdents",
					     "getdents64", "readlink", "newfstatat" };
	const scmp_datum_t new_ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
				    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
	struct scmp_arg_cmp shares_vm = { .arg = CLONE_FLAGS_ARG,
					  .op = SCMP_CMP_MASKED_EQ,
					  .datum_a = CLONE_VM | new_ns,
					  .datum_b = CLONE_VM };
	struct scmp_arg_cmp open_ro =
		SCMP_A1(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
	struct scmp_arg_cmp openat_ro =
		SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
	int rc = allow_list(ctx, names, N(names));

	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &shares_vm);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "open", 1, &open_ro);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "openat", 1, &openat_ro);
	return rc;
}

/*
 * 'spawn': children of this binary, and what they need before they confine themselves further
 * (sandbox.h). fork is a clone without CLONE_THREAD or CLONE_VM; the child inherits this filter,
 * so between clone and execveat, and in the new image, it can do no more than this process.
 */
static int allow_spawn(scmp_filter_ctx ctx, const struct gd_sandbox *sb)
{
	/* arch_prctl and set_tid_address: the C library starting in the new image; landlock, like
	 * seccomp, only ever narrows what a child may do (the uplink's child uses it). */
	static const char *const names[] = { "wait4",
					     "waitid",
					     "seccomp",
					     "arch_prctl",
					     "set_tid_address",
					     "landlock_create_ruleset",
					     "landlock_add_rule",
					     "landlock_restrict_self" };
	static const unsigned long prctls[] = { PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS };
	const scmp_datum_t new_ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
				    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
	struct scmp_arg_cmp process = { .arg = CLONE_FLAGS_ARG,
					.op = SCMP_CMP_MASKED_EQ,
					.datum_a = CLONE_THREAD | CLONE_VM | CLONE_VFORK | new_ns,
					.datum_b = 0 };
	struct scmp_arg_cmp exec_self[] = {
		SCMP_A0(SCMP_CMP_EQ, GD_SANDBOX_EXEC_FD),
		SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)(uintptr_t)gd_sandbox_exec_path),
		SCMP_A4(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH),
	};
	struct scmp_arg_cmp only_kill = SCMP_A1(SCMP_CMP_EQ, SIGKILL);
	struct scmp_arg_cmp ambient_clear[] = { SCMP_A0(SCMP_CMP_EQ, PR_CAP_AMBIENT),
						SCMP_A1(SCMP_CMP_EQ, PR_CAP_AMBIENT_CLEAR_ALL) };
	struct scmp_arg_cmp is_sigsys = SCMP_A0(SCMP_CMP_EQ, SIGSYS);
	int rc = allow_list(ctx, names, N(names));

	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &process);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "execveat", N(exec_self), exec_self);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "pidfd_send_signal", 1, &only_kill);
	if (rc == 0)
		rc = allow_values(ctx, "prctl", 0, prctls, N(prctls));
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "prctl", N(ambient_clear), ambient_clear);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "capset", 0, NULL);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "rt_sigaction", 1, &is_sigsys);
	/* Children of users of their own: no supplementary group, then one of those gids and uids
	 * (all three the same). Without CAP_SETUID and CAP_SETGID raised these change nothing. */
	if (rc == 0 && sb->nchild_users > 0) {
		struct scmp_arg_cmp no_groups = SCMP_A0(SCMP_CMP_EQ, 0);

		rc = rule(ctx, SCMP_ACT_ALLOW, "setgroups", 1, &no_groups);
	}
	for (size_t i = 0; rc == 0 && i < sb->nchild_users && i < GD_SANDBOX_CHILD_USERS_MAX; i++) {
		struct scmp_arg_cmp uid[] = { SCMP_A0(SCMP_CMP_EQ, sb->child_uids[i]),
					      SCMP_A1(SCMP_CMP_EQ, sb->child_uids[i]),
					      SCMP_A2(SCMP_CMP_EQ, sb->child_uids[i]) };
		struct scmp_arg_cmp gid[] = { SCMP_A0(SCMP_CMP_EQ, sb->child_gids[i]),
					      SCMP_A1(SCMP_CMP_EQ, sb->child_gids[i]),
					      SCMP_A2(SCMP_CMP_EQ, sb->child_gids[i]) };

		rc = rule(ctx, SCMP_ACT_ALLOW, "setresuid", N(uid), uid);
		if (rc == 0)
			rc = rule(ctx, SCMP_ACT_ALLOW, "setresgid", N(gid), gid);
	}
	/* Sanitizer builds: their runtime, starting in the child, turns core files off. */
	if (rc == 0 && SANITIZED) {
		struct scmp_arg_cmp core = SCMP_A1(SCMP_CMP_EQ, RLIMIT_CORE);

		rc = rule(ctx, SCMP_ACT_ALLOW, "prlimit64", 1, &core);
	}
	return rc;
}

static int build_rules(scmp_filter_ctx ctx, const struct profile *pr, const struct gd_sandbox *sb)
{
	const scmp_datum_t self = (scmp_datum_t)getpid();
	const scmp_datum_t new_ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
				    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
	struct scmp_arg_cmp thread = { .arg = CLONE_FLAGS_ARG,
				       .op = SCMP_CMP_MASKED_EQ,
				       .datum_a = CLONE_THREAD | new_ns,
				       .datum_b = CLONE_THREAD };
	struct scmp_arg_cmp only_self = SCMP_A0(SCMP_CMP_EQ, self);
	struct scmp_arg_cmp not_sigsys = SCMP_A0(SCMP_CMP_NE, SIGSYS);
	struct scmp_arg_cmp get_limits[] = { SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A2(SCMP_CMP_EQ, 0) };
	struct scmp_arg_cmp unix_pair = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
	struct scmp_arg_cmp route[] = { SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
					SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE) };
	struct scmp_arg_cmp fd_only = SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH);
	unsigned long prctls[N(prctl_ok)];
	int rc;

	for (size_t i = 0; i < N(prctl_ok); i++)
		prctls[i] = (unsigned long)prctl_ok[i];
	rc = allow_list(ctx, sys_common, N(sys_common));
	if (rc == 0 && pr->files)
		rc = allow_list(ctx, sys_files, N(sys_files));
	/* fstat is newfstatat(fd, "", AT_EMPTY_PATH) in the C library: no path, no file opened. */
	if (rc == 0 && !pr->files)
		rc = rule(ctx, SCMP_ACT_ALLOW, "newfstatat", 1, &fd_only);
	if (rc == 0 && pr->connect)
		rc = allow_list(ctx, sys_connect, N(sys_connect));
	if (rc == 0)
		rc = allow_wx(ctx, "mmap");
	if (rc == 0)
		rc = allow_wx(ctx, "mprotect");
	/* Threads only. clone3's flags are in memory no filter can read: ENOSYS, and the C library
	 * falls back to clone. */
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &thread);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "kill", 1, &only_self);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "tgkill", 1, &only_self);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "rt_sigaction", 1, &not_sigsys);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "prlimit64", 2, get_limits);
	if (rc == 0)
		rc = allow_values(ctx, "prctl", 0, prctls, N(prctls));
	if (rc == 0)
		rc = allow_socket(ctx, AF_UNIX);
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "socketpair", 1, &unix_pair);
	if (rc == 0 && pr->can)
		rc = allow_socket(ctx, AF_CAN);
	if (rc == 0 && pr->inet)
		rc = allow_socket(ctx, AF_INET);
	if (rc == 0 && pr->inet)
		rc = allow_socket(ctx, AF_INET6);
	if (rc == 0 && pr->inet)
		rc = rule(ctx, SCMP_ACT_ALLOW, "socket", 2, route);
	if (rc == 0)
		rc = allow_values(ctx, "ioctl", 1, ioctl_common, N(ioctl_common));
	if (rc == 0)
		rc = allow_values(ctx, "ioctl", 1, ioctl_ifaces, N(ioctl_ifaces));
	if (rc == 0 && pr->serial)
		rc = allow_values(ctx, "ioctl", 1, ioctl_serial, N(ioctl_serial));
	if (rc == 0 && SANITIZED)
		rc = allow_sanitizers(ctx);
	if (rc == 0 && sb->spawn)
		rc = allow_spawn(ctx, sb);
	return rc;
}

/* ---- users and capabilities ---------------------------------------------------------------- */

static int threads_now(void)
{
	char buf[4096];
	const char *at;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	at = strstr(buf, "\nThreads:");
	return at != NULL ? atoi(at + strlen("\nThreads:")) : -1;
}

static int caps_get(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };

	return (int)syscall(SYS_capget, &hdr, data);
}

static bool cap_effective(int cap)
{
	struct __user_cap_data_struct data[2] = { { 0 } };

	if (caps_get(data) != 0)
		return false;
	return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

/* The bounding set emptied; without CAP_SETPCAP it cannot be, and then stays as it is (with
 * no_new_privs and no execve, nothing can ever be raised up to it). Capabilities kept permitted
 * (keep_caps) need no place in it: it only bounds what an execve may add, and their holder can
 * still raise them to effective, as can its children before their execveat, whose bounding set
 * is then empty too. */
static int bounding_clear(char *why, size_t cap)
{
	bool may = cap_effective(CAP_SETPCAP);

	for (int c = 0; c < 64; c++) {
		int in = prctl(PR_CAPBSET_READ, c, 0, 0, 0);

		if (in < 0)
			break; /* EINVAL: past the last capability this kernel has */
		if (in == 0 || !may)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
			gd_whyf(why, cap, "cannot drop capability %d from the bounding set: %s", c,
				strerror(errno));
			return GD_EDENIED;
		}
	}
	return 0;
}

/* The permitted set of this thread, as bits. */
static uint64_t caps_permitted(void)
{
	struct __user_cap_data_struct data[2] = { { 0 } };

	if (caps_get(data) != 0)
		return 0;
	return (uint64_t)data[0].permitted | (uint64_t)data[1].permitted << 32;
}

/* Ambient cleared, effective and inheritable emptied, permitted cut to exactly 'keep'. */
static int caps_clear(uint64_t keep, char *why, size_t cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {
		{ .permitted = (uint32_t)keep },
		{ .permitted = (uint32_t)(keep >> 32) },
	};

	/* Older kernels have no ambient set: nothing to clear there. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		gd_whyf(why, cap, "cannot clear the ambient capabilities: %s", strerror(errno));
		return GD_EDENIED;
	}
	if (syscall(SYS_capset, &hdr, data) != 0) {
		gd_whyf(why, cap, "cannot drop the capabilities: %s", strerror(errno));
		return GD_EDENIED;
	}
	memset(data, 0, sizeof(data));
	if (caps_get(data) != 0 || data[0].effective || data[1].effective || data[0].inheritable ||
	    data[1].inheritable ||
	    ((uint64_t)data[0].permitted | (uint64_t)data[1].permitted << 32) != keep) {
		gd_whyf(why, cap, "capabilities remain after dropping them all%s",
			keep != 0 ? " but those kept" : "");
		return GD_EDENIED;
	}
	return 0;
}

int gd_caps_keep_only(uint64_t keep, char *why, size_t cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	bool may = cap_effective(CAP_SETPCAP);

	for (int c = 0; c < 64 && may; c++) {
		int in = prctl(PR_CAPBSET_READ, c, 0, 0, 0);

		if (in < 0)
			break;
		if (in == 1 && (keep & (1ULL << c)) == 0 &&
		    prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
			gd_whyf(why, cap, "cannot drop capability %d from the bounding set: %s", c,
				strerror(errno));
			return GD_EDENIED;
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		gd_whyf(why, cap, "cannot clear the ambient capabilities: %s", strerror(errno));
		return GD_EDENIED;
	}
	if (caps_get(data) != 0) {
		gd_whyf(why, cap, "cannot read the capabilities: %s", strerror(errno));
		return GD_EDENIED;
	}
	for (int i = 0; i < 2; i++) {
		uint32_t mask = (uint32_t)(keep >> (32 * i));

		data[i].permitted &= mask;
		data[i].effective &= data[i].permitted;
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, data) != 0) {
		gd_whyf(why, cap, "cannot drop the capabilities: %s", strerror(errno));
		return GD_EDENIED;
	}
	return 0;
}

/* A user to become: looked up before anything is dropped. */
struct target {
	const char *name;
	uid_t uid;
	gid_t gid;
	gid_t groups[256];
	int ngroups;
};

static int user_lookup(const char *user, struct target *t, char *why, size_t cap)
{
	struct passwd pw, *found = NULL;
	char buf[16384];

	errno = 0;
	if (getpwnam_r(user, &pw, buf, sizeof(buf), &found) != 0 || found == NULL) {
		gd_whyf(why, cap, "no user \"%s\" on this system%s%s", user, errno ? ": " : "",
			errno ? strerror(errno) : "");
		return GD_EINVAL;
	}
	t->name = user;
	t->uid = pw.pw_uid;
	t->gid = pw.pw_gid;
	t->ngroups = (int)N(t->groups);
	if (getgrouplist(user, pw.pw_gid, t->groups, &t->ngroups) < 0) {
		gd_whyf(why, cap, "user \"%s\" is in more than %zu groups", user, N(t->groups));
		return GD_EINVAL;
	}
	return 0;
}

/* Becomes the user: its groups, its primary group, its uid (root_out_of_reach checks, once the
 * capabilities are dropped, that it cannot go back). */
static int become(const struct target *t, char *why, size_t cap)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	if (getuid() == t->uid && geteuid() == t->uid && getgid() == t->gid &&
	    getegid() == t->gid && t->uid != 0)
		return 0; /* started as that user already */
	if (setgroups((size_t)t->ngroups, t->groups) != 0 ||
	    setresgid(t->gid, t->gid, t->gid) != 0 || setresuid(t->uid, t->uid, t->uid) != 0) {
		gd_whyf(why, cap,
			"cannot become user \"%s\" (uid %u): %s (only root can change user)",
			t->name, (unsigned)t->uid, strerror(errno));
		return GD_EDENIED;
	}
	if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
	    ruid != t->uid || euid != t->uid || suid != t->uid || rgid != t->gid ||
	    egid != t->gid || sgid != t->gid) {
		gd_whyf(why, cap, "became user \"%s\" only in part", t->name);
		return GD_EDENIED;
	}
	return 0;
}

/* Once the capabilities are dropped: root is out of reach of the user. */
static int root_out_of_reach(const struct target *t, char *why, size_t cap)
{
	if (t->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0)) {
		gd_whyf(why, cap, "as user \"%s\", could become root again", t->name);
		return GD_EDENIED;
	}
	return 0;
}

/* ---- entering ------------------------------------------------------------------------------ */

int gd_sandbox_enter(const struct gd_sandbox *sb, char *why, size_t cap)
{
	const struct profile *pr = profile_find(sb->profile);
	scmp_filter_ctx ctx = NULL;
	struct target user;
	int rc, threads;

	if (pr == NULL) {
		gd_whyf(why, cap,
			"unknown sandbox profile \"%s\" (expected gateway, adapter or uplink)",
			sb->profile != NULL ? sb->profile : "(none)");
		return GD_EINVAL;
	}
	if (active_profile != NULL) {
		gd_whyf(why, cap, "already in the sandbox (profile %s)", active_profile);
		return GD_EINVAL;
	}
	threads = threads_now();
	if (threads > 1) {
		gd_whyf(why, cap,
			"%d threads already run: capabilities are per thread, so the sandbox is "
			"entered before any thread starts",
			threads);
		return GD_EINVAL;
	}
	/* Everything that can fail for want of memory or kernel support, before any step. */
	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) {
		gd_whyf(why, cap, "this kernel has no seccomp (CONFIG_SECCOMP): %s",
			strerror(errno));
		return GD_EDENIED;
	}
	if (seccomp_api_get() < 2) {
		gd_whyf(why, cap,
			"this kernel or libseccomp cannot apply a seccomp filter to every thread "
			"(seccomp API level %u, 2 needed)",
			seccomp_api_get());
		return GD_EDENIED;
	}
	if ((caps_permitted() & sb->keep_caps) != sb->keep_caps) {
		gd_whyf(why, cap,
			"capabilities to keep (0x%llx) are not all permitted to this process "
			"(0x%llx)",
			(unsigned long long)sb->keep_caps, (unsigned long long)caps_permitted());
		return GD_EDENIED;
	}
	if (sb->user != NULL) {
		rc = user_lookup(sb->user, &user, why, cap);
		if (rc != 0)
			return rc;
	}
	ctx = seccomp_init(DENY_ACTION);
	if (ctx == NULL) {
		gd_whyf(why, cap, "cannot make a seccomp filter: out of memory");
		return GD_ENOMEM;
	}
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = build_rules(ctx, pr, sb);
	if (rc != 0) {
		gd_whyf(why, cap, "cannot build the seccomp filter of profile %s: %s", pr->name,
			strerror(-rc));
		rc = rc == -ENOMEM ? GD_ENOMEM : GD_EINVAL;
		goto out;
	}
	rc = bounding_clear(why, cap);
	if (rc == 0 && sb->user != NULL) {
		int pdeath = 0;

		/* A change of user clears the parent-death signal a supervisor asked for: kept.
		 * From root to another uid the permitted set goes too, but for keep_caps. */
		prctl(PR_GET_PDEATHSIG, &pdeath, 0, 0, 0);
		if (sb->keep_caps != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
			gd_whyf(why, cap, "cannot keep capabilities across the change of user: %s",
				strerror(errno));
			rc = GD_EDENIED;
		}
		if (rc == 0)
			rc = become(&user, why, cap);
		if (sb->keep_caps != 0)
			prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
		if (rc == 0 && pdeath != 0)
			prctl(PR_SET_PDEATHSIG, pdeath, 0, 0, 0);
	}
	if (rc == 0)
		rc = caps_clear(sb->keep_caps, why, cap);
	if (rc == 0 && sb->user != NULL)
		rc = root_out_of_reach(&user, why, cap);
	if (rc != 0)
		goto out;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		gd_whyf(why, cap, "cannot set no_new_privs: %s", strerror(errno));
		rc = GD_EDENIED;
		goto out;
	}
	rc = trap_install(why, cap);
	if (rc != 0)
		goto out;
	rc = seccomp_load(ctx);
	if (rc != 0) {
		gd_whyf(why, cap, "cannot load the seccomp filter: %s", strerror(-rc));
		rc = GD_EDENIED;
		goto out;
	}
	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) {
		gd_whyf(why, cap, "the seccomp filter is not in force after loading it");
		rc = GD_EDENIED;
		goto out;
	}
	active_profile = pr->name;
out:
	seccomp_release(ctx);
	return rc;
}
