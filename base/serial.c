/* serial.c: serial ports through libserialport, with termios for pseudo-terminals. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libserialport.h>
#include <poll.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "serial.h"

const char *const serial_parity_names[] = { "none", "even", "odd", NULL };
const char *const serial_flow_names[] = { "none", "rtscts", "xonxoff", "dtrdsr", NULL };

struct serial_port {
	struct sp_port *sp; /* NULL when configured through termios */
	int fd;
};

static int termios_speed(int baud, speed_t *out)
{
	static const struct {
		int baud;
		speed_t speed;
	} speeds[] = {
		{ 50, B50 },	       { 75, B75 },	      { 110, B110 },
		{ 134, B134 },	       { 150, B150 },	      { 200, B200 },
		{ 300, B300 },	       { 600, B600 },	      { 1200, B1200 },
		{ 1800, B1800 },       { 2400, B2400 },	      { 4800, B4800 },
		{ 9600, B9600 },       { 19200, B19200 },     { 38400, B38400 },
		{ 57600, B57600 },     { 115200, B115200 },   { 230400, B230400 },
		{ 460800, B460800 },   { 500000, B500000 },   { 576000, B576000 },
		{ 921600, B921600 },   { 1000000, B1000000 }, { 1152000, B1152000 },
		{ 1500000, B1500000 }, { 2000000, B2000000 }, { 2500000, B2500000 },
		{ 3000000, B3000000 }, { 3500000, B3500000 }, { 4000000, B4000000 },
	};

	for (size_t i = 0; i < sizeof(speeds) / sizeof(speeds[0]); i++) {
		if (speeds[i].baud == baud) {
			*out = speeds[i].speed;
			return 0;
		}
	}
	return GD_EINVAL;
}

/* Raw mode with the config's framing, for a line libserialport does not handle. */
static int termios_configure(int fd, const struct serial_settings *s, char *why, size_t cap)
{
	static const tcflag_t sizes[] = { CS5, CS6, CS7, CS8 };
	struct termios t;
	speed_t speed;

	if (termios_speed(s->baud, &speed) != 0) {
		snprintf(why, cap, "%s: baud %d is not a standard rate", s->device, s->baud);
		errno = EINVAL;
		return GD_EINVAL;
	}
	if (tcgetattr(fd, &t) != 0)
		goto fail;
	cfmakeraw(&t);
	cfsetispeed(&t, speed);
	cfsetospeed(&t, speed);
	t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
	t.c_cflag |= sizes[s->data_bits - 5] | CLOCAL | CREAD;
	if (s->parity != SERIAL_PARITY_NONE)
		t.c_cflag |= PARENB | (s->parity == SERIAL_PARITY_ODD ? PARODD : 0);
	if (s->stop_bits == 2)
		t.c_cflag |= CSTOPB;
	if (s->flow == SERIAL_FLOW_RTSCTS)
		t.c_cflag |= CRTSCTS;
	if (s->flow == SERIAL_FLOW_XONXOFF)
		t.c_iflag |= IXON | IXOFF;
	t.c_cc[VMIN] = 0;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &t) != 0)
		goto fail;
	return 0;
fail:
	snprintf(why, cap, "%s: cannot set %d %d%c%d: %s", s->device, s->baud, s->data_bits,
		 "NEO"[s->parity], s -> stop_bits, strerror(errno));
	return GD_EIO;
}

const char *serial_access_hint(const char *device, int err, char *buf, size_t cap)
{
	const struct passwd *pw;
	const struct group *gr;
	struct stat st;
	char user[64], group[64];

	if (cap > 0)
		buf[0] = '\0';
	if (err != EACCES && err != EPERM)
		return buf;
	/* Serial devices belong to dialout on Debian; name the group the device really has. */
	gr = device != NULL && stat(device, &st) == 0 ? getgrgid(st.st_gid) : NULL;
	snprintf(group, sizeof(group), "%s",
		 gr != NULL && st.st_gid != 0 ? gr->gr_name : "dialout");
	pw = getpwuid(geteuid());
	snprintf(user, sizeof(user), "%s", pw != NULL ? pw->pw_name : "USER");
	snprintf(buf, cap, "; add the user to the %s group: usermod -aG %s %s", group, group, user);
	return buf;
}

static int sp_fail(const struct serial_settings *s, const char *what, char *why, size_t cap)
{
	char *msg = sp_last_error_message();
	int saved = errno;
	char hint[160];

	snprintf(why, cap, "%s: %s: %s%s", s->device, what, msg != NULL ? msg : "failed",
		 serial_access_hint(s->device, saved, hint, sizeof(hint)));
	sp_free_error_message(msg);
	errno = saved != 0 ? saved : EIO;
	return GD_EIO;
}

static int sp_configure(struct sp_port *sp, const struct serial_settings *s, char *why, size_t cap)
{
	static const enum sp_parity parities[] = { SP_PARITY_NONE, SP_PARITY_EVEN, SP_PARITY_ODD };
	static const enum sp_flowcontrol flows[] = { SP_FLOWCONTROL_NONE, SP_FLOWCONTROL_RTSCTS,
						     SP_FLOWCONTROL_XONXOFF,
						     SP_FLOWCONTROL_DTRDSR };
	struct sp_port_config *cfg = NULL;
	int rc = 0;

	if (sp_new_config(&cfg) != SP_OK)
		return GD_ENOMEM;
	if (sp_set_config_baudrate(cfg, s->baud) != SP_OK ||
	    sp_set_config_bits(cfg, s->data_bits) != SP_OK ||
	    sp_set_config_parity(cfg, parities[s->parity]) != SP_OK ||
	    sp_set_config_stopbits(cfg, s->stop_bits) != SP_OK ||
	    sp_set_config_flowcontrol(cfg, flows[s->flow]) != SP_OK ||
	    sp_set_config(sp, cfg) != SP_OK)
		rc = sp_fail(s, "cannot apply the port settings", why, cap);
	sp_free_config(cfg);
	return rc;
}

/*
 * libserialport describes a port from sysfs, so it refuses a pseudo-terminal;
 * such a line (a simulator, socat, ser2net) is opened with termios instead.
 */
static int open_termios(struct serial_port *p, const struct serial_settings *s, char *why,
			size_t cap)
{
	p->fd = open(s->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (p->fd < 0) {
		int saved = errno;
		char hint[160];

		snprintf(why, cap, "cannot open %s: %s%s", s->device, strerror(saved),
			 serial_access_hint(s->device, saved, hint, sizeof(hint)));
		errno = saved;
		return GD_EIO;
	}
	if (!isatty(p->fd)) {
		snprintf(why, cap, "%s is not a serial port or terminal", s->device);
		close(p->fd);
		errno = ENOTTY;
		return GD_EIO;
	}
	if (termios_configure(p->fd, s, why, cap) != 0) {
		int saved = errno;

		close(p->fd);
		errno = saved;
		return GD_EIO;
	}
	return 0;
}

static int open_sp(struct serial_port *p, const struct serial_settings *s, char *why, size_t cap)
{
	if (sp_open(p->sp, SP_MODE_READ_WRITE) != SP_OK)
		return sp_fail(s, "cannot open", why, cap);
	if (sp_configure(p->sp, s, why, cap) != 0 || sp_get_port_handle(p->sp, &p->fd) != SP_OK) {
		int saved = errno;

		if (why[0] == '\0')
			snprintf(why, cap, "%s: no file descriptor", s->device);
		sp_close(p->sp);
		errno = saved;
		return GD_EIO;
	}
	return 0;
}

int serial_open(struct serial_port **out, const struct serial_settings *s, char *why, size_t cap)
{
	struct serial_port *p = calloc(1, sizeof(*p));
	int rc;

	why[0] = '\0';
	*out = NULL;
	if (p == NULL)
		return GD_ENOMEM;
	p->fd = -1;
	if (access(s->device, F_OK) != 0) {
		snprintf(why, cap, "cannot open %s: %s", s->device, strerror(errno));
		free(p);
		return GD_EIO;
	}
	if (sp_get_port_by_name(s->device, &p->sp) == SP_OK) {
		rc = open_sp(p, s, why, cap);
		if (rc != 0) {
			sp_free_port(p->sp);
			p->sp = NULL;
		}
	} else {
		p->sp = NULL;
		rc = open_termios(p, s, why, cap);
	}
	if (rc != 0) {
		int saved = errno;

		free(p);
		errno = saved;
		return rc;
	}
	tcflush(p->fd, TCIOFLUSH);
	*out = p;
	return 0;
}

ssize_t serial_read(struct serial_port *p, uint8_t *buf, size_t cap, int timeout_ms)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
	ssize_t n;
	int rc;

	do
		rc = poll(&pfd, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return GD_EIO;
	if (rc == 0)
		return 0;
	/* Data first: a line that hangs up after its last bytes still delivers them. */
	n = read(p->fd, buf, cap);
	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(pfd.revents & (POLLHUP | POLLERR)))
		return 0;
	/* read 0 with POLLIN, POLLHUP or an error: the device or the other end is gone. */
	if (n == 0 || errno == EAGAIN)
		errno = ENODEV;
	return GD_EIO;
}

int serial_write(struct serial_port *p, const void *buf, size_t n, int timeout_ms)
{
	const uint8_t *at = buf;
	int64_t deadline = gd_mono_ms() + timeout_ms;

	while (n > 0) {
		ssize_t w = write(p->fd, at, n);

		if (w > 0) {
			at += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return GD_EIO;
		int64_t left = deadline - gd_mono_ms();
		struct pollfd pfd = { .fd = p->fd, .events = POLLOUT };

		if (left <= 0)
			return GD_ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) > 0 && (pfd.revents & (POLLHUP | POLLERR))) {
			errno = ENODEV;
			return GD_EIO;
		}
	}
	return 0;
}

int serial_fd(const struct serial_port *p)
{
	return p->fd;
}

void serial_flush_input(struct serial_port *p)
{
	tcflush(p->fd, TCIFLUSH);
}

const char *serial_backend(const struct serial_port *p)
{
	return p->sp != NULL ? "libserialport" : "termios";
}

void serial_close(struct serial_port *p)
{
	if (p == NULL)
		return;
	if (p->sp != NULL) {
		sp_close(p->sp);
		sp_free_port(p->sp);
	} else if (p->fd >= 0) {
		close(p->fd);
	}
	free(p);
}

int serial_adopt(struct serial_port **out, int fd)
{
	struct serial_port *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (p == NULL)
		return GD_ENOMEM;
	p->sp = NULL; /* closed as a plain descriptor */
	p->fd = fd;
	*out = p;
	return 0;
}

int serial_release(struct serial_port *p)
{
	int fd = p->fd;

	/* libserialport's port is freed without sp_close: the descriptor stays open. */
	if (p->sp != NULL)
		sp_free_port(p->sp);
	free(p);
	return fd;
}
