/* simline.c: the simulators' serial line and log. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "simline.h"

volatile sig_atomic_t sim_stop_requested;
static const char *log_tag = "sim";

static void on_signal(int signo)
{
	(void)signo;
	sim_stop_requested = 1;
}

void sim_catch_signals(sigset_t *waitmask)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t blocked;

	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigprocmask(SIG_BLOCK, &blocked, waitmask);
	sigdelset(waitmask, SIGINT);
	sigdelset(waitmask, SIGTERM);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* --rate 5000 leaves 200 us a frame: wake-ups must not be 50 us late. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

void sim_set_tag(const char *tag)
{
	log_tag = tag;
}

void sim_log(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", log_tag);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

speed_t sim_baud_speed(int baud)
{
	static const struct {
		int baud;
		speed_t speed;
	} speeds[] = {
		{ 1200, B1200 },       { 2400, B2400 },	      { 4800, B4800 },
		{ 9600, B9600 },       { 19200, B19200 },     { 38400, B38400 },
		{ 57600, B57600 },     { 115200, B115200 },   { 230400, B230400 },
		{ 460800, B460800 },   { 500000, B500000 },   { 921600, B921600 },
		{ 1000000, B1000000 }, { 2000000, B2000000 }, { 3000000, B3000000 },
		{ 4000000, B4000000 },
	};

	for (size_t i = 0; i < sizeof(speeds) / sizeof(speeds[0]); i++)
		if (speeds[i].baud == baud)
			return speeds[i].speed;
	return B0;
}

void sim_line_down(struct sim_line *l, const char *why)
{
	sim_log("line down: %s: %s (retrying every %d ms)", l->path, why, SIM_RETRY_MS);
	l->down_reported = true;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->out_len = 0;
}

int sim_line_open(struct sim_line *l)
{
	struct termios tios;
	int fd = open(l->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		goto fail;
	if (tcgetattr(fd, &tios) != 0)
		goto fail;
	cfmakeraw(&tios);
	tios.c_cflag &= ~(tcflag_t)(CSTOPB | PARENB | CRTSCTS);
	tios.c_cflag |= CLOCAL | CREAD | CS8;
	tios.c_cc[VMIN] = 1;
	tios.c_cc[VTIME] = 0;
	cfsetispeed(&tios, l->speed);
	cfsetospeed(&tios, l->speed);
	if (tcsetattr(fd, TCSANOW, &tios) != 0)
		goto fail;
	/* Whatever the other end sent while we were away is stale. */
	tcflush(fd, TCIOFLUSH);
	l->fd = fd;
	l->out_len = 0;
	l->down_reported = false;
	sim_log("line up: %s", l->path);
	return 0;
fail:
	if (!l->down_reported) {
		sim_log("line down: %s: %s (retrying every %d ms)", l->path, strerror(errno),
			SIM_RETRY_MS);
		l->down_reported = true;
	}
	if (fd >= 0)
		close(fd);
	return -1;
}

int sim_line_queue(struct sim_line *l, const void *p, size_t len)
{
	if (l->fd < 0)
		return -1;
	if (len > sizeof(l->out) - l->out_len) {
		l->bytes_dropped += len;
		return -1;
	}
	memcpy(l->out + l->out_len, p, len);
	l->out_len += len;
	return 0;
}

void sim_line_flush(struct sim_line *l)
{
	ssize_t n;

	if (l->fd < 0 || l->out_len == 0)
		return;
	n = write(l->fd, l->out, l->out_len);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			sim_line_down(l, strerror(errno));
		return;
	}
	l->out_len -= (size_t)n;
	memmove(l->out, l->out + n, l->out_len);
}
