/* serial.h: a serial port (the UART and SLCAN transports, the field console): settings from the
 * config, open, read with a timeout that tells a hang-up (cable or USB adapter gone) from silence,
 * write. */
#ifndef BASE_SERIAL_H
#define BASE_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base.h"
#include "conf.h"

enum serial_parity { SERIAL_PARITY_NONE, SERIAL_PARITY_EVEN, SERIAL_PARITY_ODD };
enum serial_flow { SERIAL_FLOW_NONE, SERIAL_FLOW_RTSCTS, SERIAL_FLOW_XONXOFF, SERIAL_FLOW_DTRDSR };
extern const char *const serial_parity_names[]; /* "none", "even", "odd" */
extern const char *const serial_flow_names[];	/* "none", "rtscts", "xonxoff", "dtrdsr" */

struct serial_settings {
	char *device; /* owned by the caller */
	int baud;
	int parity; /* enum serial_parity */
	int data_bits;
	int stop_bits;
	int flow; /* enum serial_flow */
};

/* 115200 8N1, no flow control. */
#define SERIAL_DEFAULTS                                                                            \
	{                                                                                          \
		.baud = 115200, .parity = SERIAL_PARITY_NONE, .data_bits = 8, .stop_bits = 1,      \
		.flow = SERIAL_FLOW_NONE                                                           \
	}

/* Config keys for a struct 'type' whose member 'm' is a struct serial_settings; 'req': whether
 * "device" is required. */
#define SERIAL_CONF_KEYS(type, m, req)                                                             \
	{ .name = "device",                                                                        \
	  .kind = CONF_STRING,                                                                     \
	  .required = req,                                                                         \
	  .offset = offsetof(type, m.device),                                                      \
	  .expect = "a serial device path" },                                                      \
		CONF_INT_KEY("baud", type, m.baud, 50, 4000000, false, "a baud rate"),             \
		{ .name = "parity",                                                                \
		  .kind = CONF_ENUM,                                                               \
		  .offset = offsetof(type, m.parity),                                              \
		  .choices = serial_parity_names,                                                  \
		  .expect = "parity" },                                                            \
		CONF_INT_KEY("data_bits", type, m.data_bits, 5, 8, false, "5 to 8"),               \
		CONF_INT_KEY("stop_bits", type, m.stop_bits, 1, 2, false, "1 or 2"),               \
	{                                                                                          \
		.name = "flow_control", .kind = CONF_ENUM, .offset = offsetof(type, m.flow),       \
		.choices = serial_flow_names, .expect = "flow control"                             \
	}

struct serial_port;

/*
 * Opens and configures the port. Real serial ports go through libserialport;
 * a device libserialport does not know as a serial port (a pseudo-terminal,
 * as simulators and socat make) is configured with termios directly. On
 * failure returns a negative enum gd_err and writes the reason (with the
 * device and errno text) into 'why'.
 */
int serial_open(struct serial_port **out, const struct serial_settings *s, char *why, size_t cap);
/*
 * Reads what is there, waiting at most 'timeout_ms' for the first byte.
 * Returns the number of bytes (> 0), 0 on timeout, or GD_EIO when the line is
 * gone (hang-up, device removed, I/O error; errno kept).
 */
ssize_t serial_read(struct serial_port *p, uint8_t *buf, size_t cap, int timeout_ms);
/* Writes all of 'n' bytes within 'timeout_ms'. 0, GD_ETIMEDOUT or GD_EIO. */
int serial_write(struct serial_port *p, const void *buf, size_t n, int timeout_ms);
/* The file descriptor, for a caller's own poll(); read with serial_read(p, ..., 0). */
int serial_fd(const struct serial_port *p);
/* Discards unread input. */
void serial_flush_input(struct serial_port *p);
/* "libserialport" or "termios": how the port was configured (for the log). */
const char *serial_backend(const struct serial_port *p);
/* Closes and frees. No operation if 'p' is NULL. */
void serial_close(struct serial_port *p);
/*
 * A port over 'fd', a serial line another process opened and configured (serial_open there):
 * its settings are the line's, kept as they are. 0 or GD_ENOMEM.
 */
int serial_adopt(struct serial_port **out, int fd);
/* Frees 'p' without closing its line or changing its settings; returns the descriptor, the
 * caller's now. */
int serial_release(struct serial_port *p);
/*
 * For an open that failed with 'err' on 'device': when it is a permission
 * error (EACCES, EPERM), "; add the user to the dialout group: usermod -aG
 * dialout guardian", naming the device's group and this user, into 'buf';
 * otherwise "". Returns 'buf'.
 */
const char *serial_access_hint(const char *device, int err, char *buf, size_t cap);

#endif
