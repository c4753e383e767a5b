/* simline.h: what the equipment simulators share: their log line, and a serial line that is
 * reopened while it is down and queues writes while the reader is slow. */
#ifndef TOOLS_SIMLINE_H
#define TOOLS_SIMLINE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define SIM_RETRY_MS 100   /* reopening a line that is down */
#define SIM_OUT_MAX  65536 /* bytes queued while the reader is slow; more are dropped */

/* Set by SIGINT and SIGTERM once sim_catch_signals ran. */
extern volatile sig_atomic_t sim_stop_requested;
/*
 * Blocks SIGINT and SIGTERM except inside ppoll(..., waitmask) (no lost
 * wake-up), ignores SIGPIPE, and asks for wake-ups on time (1 us timer slack).
 */
void sim_catch_signals(sigset_t *waitmask);

/* "<tag>: message" on stderr; the tag is the simulator's name. */
void sim_set_tag(const char *tag);
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct sim_line {
	const char *path;
	speed_t speed;
	int fd;		    /* -1 while down */
	bool down_reported; /* "line down" already said for this outage */
	size_t out_len;
	uint8_t out[SIM_OUT_MAX];
	uint64_t bytes_dropped; /* output that did not fit in out[] */
};

/* The termios speed for 'baud', or B0 if it is not a standard rate. */
speed_t sim_baud_speed(int baud);
/* Opens the line raw 8N1. 0 if it is up, -1 if not (said once per outage). */
int sim_line_open(struct sim_line *l);
/* Closes it after 'why'; the caller reopens it every SIM_RETRY_MS. */
void sim_line_down(struct sim_line *l, const char *why);
/* Queues len bytes whole, or drops them all if they do not fit. 0, or -1 (dropped). */
int sim_line_queue(struct sim_line *l, const void *p, size_t len);
/* Writes what the line takes now; takes the line down on a hang-up. */
void sim_line_flush(struct sim_line *l);

#endif
