/* sandbox.h: a process confines itself for good: another user, no capabilities, no_new_privs and
 * a seccomp allow-list chosen by a profile that names what a kind of process does. */
#ifndef BASE_SANDBOX_H
#define BASE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The profiles (the allow-lists are in sandbox.c, with why each entry is there):
 *
 *   "gateway"  a whole program that polls devices and talks to the network: threads, files,
 *              sockets of AF_UNIX, AF_INET, AF_INET6, AF_CAN and AF_NETLINK (route), the
 *              serial-line and interface ioctls.
 *   "adapter"  a worker that only talks over descriptors it was given: no open of any file,
 *              no change to the file system, sockets of AF_UNIX and AF_CAN only (socketpair,
 *              bind for CAN), no connect, listen or accept; the serial-line ioctls.
 *   "uplink"   a network worker: files (its spool, its certificates), sockets of AF_UNIX,
 *              AF_INET, AF_INET6 and AF_NETLINK (route); no serial-line ioctl beyond TCGETS
 *              (isatty).
 *
 * Every profile: threads only (clone with CLONE_THREAD; clone3 answers ENOSYS so that the C
 * library falls back to clone), signals only to this process, no mapping both writable and
 * executable, no change of the SIGSYS handler, rlimits read only; never execve, fork (but see
 * 'spawn'), ptrace, mount, modules, kexec, bpf, perf, keyrings, namespaces, reboot, swap, setuid
 * and the like.
 *
 * With 'spawn' (the gateway of compartments, guardian/compartment.c) a process may also start
 * children of its own binary and nothing else: clone shaped like fork (no CLONE_THREAD, no
 * CLONE_VM, no namespace); execveat only of descriptor GD_SANDBOX_EXEC_FD with AT_EMPTY_PATH and
 * the path gd_sandbox_exec_path (a pointer compared, not a string: a filter cannot read memory);
 * wait4 and waitid; pidfd_send_signal of SIGKILL only (to the pidfd clone gave); and, between
 * the clone and the execveat and in the child before it confines itself further,
 * PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, clearing the ambient capabilities, capset (a process
 * can only raise what it keeps permitted: with keep_caps, CAP_SETUID and CAP_SETGID), setgroups
 * to none, setresgid and setresuid to one of 'child_uids'/'child_gids' (all three ids the same;
 * with CAP_SETUID and CAP_SETGID raised, a child becomes its own user before its execveat, which
 * as a non-root uid under no_new_privs leaves it no capability), seccomp and landlock (another
 * filter only narrows), a
 * SIGSYS handler (a denied call is refused whatever the handler does), and arch_prctl and
 * set_tid_address (the C library starting). execve stays denied. What a filter cannot see: the
 * path is compared by address, so code that remaps that page could name another program, which
 * would still run under this filter, no_new_privs and no capabilities; and a pidfd can also be
 * a /proc/<pid> directory this process opens, subject to the kernel's usual permission check.
 */
#define GD_SANDBOX_CHILD_USERS_MAX 4

struct gd_sandbox {
	const char *profile; /* "gateway", "adapter" or "uplink" */
	const char *user;    /* NULL: stay the user started as; else become this user, its primary
				group and the groups the group database lists for it */
	bool spawn;	     /* may start children of its own binary (see above) */
	/* Capabilities (bit N: capability N) kept in the permitted set only: never effective,
	 * inheritable or ambient, and not in the bounding set either (it bounds only what an
	 * execve may add; the holder may still raise them to effective with capset, and its
	 * children inherit an empty one). A spawning parent keeps CAP_SETUID and CAP_SETGID to
	 * start its children as users of their own. They must be permitted when it enters. */
	uint64_t keep_caps;
	/* With 'spawn': the users its children may become between clone and execveat (setresuid
	 * and setresgid with all three ids one of these pairs, setgroups to none). */
	uid_t child_uids[GD_SANDBOX_CHILD_USERS_MAX];
	gid_t child_gids[GD_SANDBOX_CHILD_USERS_MAX];
	size_t nchild_users;
};

/* The descriptor a spawning process holds its own executable at (O_PATH, close-on-exec), and
 * the empty path its execveat passes: the only execveat the filter lets through. */
#define GD_SANDBOX_EXEC_FD 1000
extern const char gd_sandbox_exec_path[];

/*
 * Confines the calling process, for good: when sb->user is given, setgroups, setgid and setuid
 * to it (checked by trying to become root again); the capability bounding set cleared (when the
 * process may: with CAP_SETPCAP), the ambient set cleared, the effective and inheritable sets
 * emptied, the permitted set cut to exactly sb->keep_caps (kept across the change of user);
 * no_new_privs; then the profile's seccomp filter, on every thread. keep_caps
 * works started as root (with or without 'user') and started as a user that holds them
 * (systemd's AmbientCapabilities=); a capability to keep that is not permitted is GD_EDENIED.
 *
 * A call the filter refuses fails with EPERM and, on x86_64, writes one line to stderr as it
 * happens: "<program>: sandbox: denied syscall 59 (execve)" (elsewhere it only fails).
 *
 * Enter before any thread starts: capabilities are per thread. Returns 0, or GD_EINVAL (an
 * unknown profile or user, threads already running, already confined), GD_EDENIED (a step the
 * system refused: not root enough to change user, no seccomp in the kernel) or GD_ENOMEM, with
 * the reason in 'why'. A failure may leave the process partly confined: the caller stops.
 */
int gd_sandbox_enter(const struct gd_sandbox *sb, char *why, size_t cap);

/* The profile this process entered, or NULL when it is not confined. */
const char *gd_sandbox_active(void);

/*
 * Keeps of this thread's capabilities only those in 'keep' (bit N: capability N): effective and
 * permitted cut to them, inheritable and ambient emptied, and the bounding set cut to them too
 * when CAP_SETPCAP allows. For a privileged parent after its fork (guardian-launch keeps
 * CAP_KILL, to pass signals on). 0, or GD_EDENIED with 'why'.
 */
int gd_caps_keep_only(uint64_t keep, char *why, size_t cap);

/* Whether 'name' is a profile. */
bool gd_sandbox_profile_known(const char *name);

#endif
