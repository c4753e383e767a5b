/* sandbox.h: a process confines itself for good: another user, no capabilities, no_new_privs and
 * a seccomp allow-list chosen by a profile that names what a kind of process does. */
#ifndef BASE_SANDBOX_H
#define BASE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
 * executable, no change of the SIGSYS handler, rlimits read only; never execve, fork, ptrace,
 * mount, modules, kexec, bpf, perf, keyrings, namespaces, reboot, swap, setuid and the like.
 */
struct gd_sandbox {
	const char *profile; /* "gateway", "adapter" or "uplink" */
	const char *user;    /* NULL: stay the user started as; else become this user, its primary
				group and the groups the group database lists for it */
};

/*
 * Confines the calling process, for good: when sb->user is given, setgroups, setgid and setuid
 * to it (checked by trying to become root again); the capability bounding set cleared (when the
 * process may: with CAP_SETPCAP), the ambient set cleared, the effective, permitted and
 * inheritable sets emptied; no_new_privs; then the profile's seccomp filter, on every thread.
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
