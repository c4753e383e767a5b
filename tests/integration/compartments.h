/* compartments.h: what the compartment suites share: the bed around guardian (broker, viewer,
 * plcsim, serialsim on a pty pair, a site with a Modbus and a serial adapter), commands and
 * telemetry through it, and the checks every confined child gets. */
#ifndef COMPARTMENTS_H
#define COMPARTMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct it_bed {
	const char *device;
	int bport;			/* mosquitto */
	int mport;			/* plcsim, Modbus TCP */
	char tty_sim[256], tty_gd[256]; /* the pty pair: serialsim's end and guardian's */
};

/* mosquitto, a viewer of guardian/<device>/# into sub.out, plcsim (setpoint 500 at 120) and the
 * pty pair, each failing the test if it does not start. */
void it_bed_up(struct it_bed *b, const char *device);
/* serialsim on b->tty_sim (text, xor8, a line every 100 ms); fails the test if it does not
 * start. */
void it_bed_serialsim(const struct it_bed *b);
/*
 * policy.json and site.json in the work directory: plc1 (Modbus TCP on b->mport, a counter and a
 * writable setpoint, polled every 'poll_interval_ms') and scale (UART on b->tty_gd), the uplink on
 * b->bport; 'sandbox' is a top-level member with its comma, or "". Returns the site's path (a
 * rotating buffer of h_path).
 */
const char *it_bed_site(const struct it_bed *b, const char *sandbox, int poll_interval_ms);
/* $GUARDIAN_BUILD/'program' run -c site.json, its output in guardian.log. Returns its pid; fails
 * the test if it did not start. */
pid_t it_bed_guardian(const char *program);
/* Publishes 'json' on guardian/<device>/cmd as the viewer; fails the test if that fails. */
void it_bed_command(const struct it_bed *b, const char *json);
/* Returns how many telemetry lines of the viewer hold 'needle' (not the commands, which the viewer
 * sees too). */
size_t it_bed_telemetry_count(const struct it_bed *b, const char *needle);
/* Returns whether a telemetry line with 'needle' arrived within 'timeout_ms'. */
bool it_bed_wait_telemetry(const struct it_bed *b, const char *needle, int timeout_ms);
/*
 * Expects guardian's policy to decide the viewer's writes: w1 (plc1/setpoint 600) accepted and
 * seen in the telemetry, w2 (5000, out of range) refused and never seen. Returns nothing.
 */
void it_bed_expect_writes_decided(const struct it_bed *b);
/*
 * After a child was killed: expects 10 more telemetry messages, guardian 'gd' to stop cleanly
 * (exit 0, its last health "stopped") and every seq from 1 to the highest (above 10) to have
 * arrived. Returns nothing.
 */
void it_bed_expect_resumed_and_nothing_lost(const struct it_bed *b, pid_t gd);

/* Expects what /proc says of every confined child: CapEff, CapPrm and (as root) CapBnd empty,
 * NoNewPrivs 1, Seccomp 2 (a filter), each failure naming 'label'. Returns nothing. */
void it_expect_confined(pid_t pid, const char *label);
/* Expects fd 3 of the child 'pid' to be a socket (its line to guardian), and hands each of its
 * descriptors to 'check' with where it links; fails the test if /proc/<pid>/fd cannot be listed.
 * Returns how many descriptors it holds. */
size_t it_each_fd(pid_t pid, void (*check)(int fd, const char *target, void *arg), void *arg);
/* Writes $GUARDIAN_BUILD/guardian-probe into 'path' (the stand-in for guardian whose children try
 * what a compromised child would) and skips the test, saying why, if it is not built. Returns
 * nothing. */
void it_need_probe(char *path, size_t cap);
/* SIGKILL to 'pid' if it still runs 'subcommand': a child guardian should have taken with it, at
 * the end of a test. Returns nothing. */
void it_kill_leftover(pid_t pid, const char *subcommand);

#endif
