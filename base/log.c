/* log.c: one line per event on stderr, with time, level and subsystem. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"

static enum log_level current_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return GD_EINVAL;
}

/*
 * The last lines, kept in memory for the field console (`log`), and the last
 * warning or error for its status screen. Lines are cut to RING_LINE bytes.
 */
#define RING_LINES 256
#define PREFIX_LEN 31 /* "2026-11-21T20:24:54.981Z warn  " */
#define RING_LINE  200

static struct {
	pthread_mutex_t lock;
	char lines[RING_LINES][RING_LINE];
	size_t next, count;
	char problem[RING_LINE];
	int64_t problem_ms;
} ring = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void remember(enum log_level level, const char *line, size_t n)
{
	if (n >= RING_LINE)
		n = RING_LINE - 1;
	pthread_mutex_lock(&ring.lock);
	memcpy(ring.lines[ring.next], line, n);
	ring.lines[ring.next][n] = '\0';
	ring.next = (ring.next + 1) % RING_LINES;
	if (ring.count < RING_LINES)
		ring.count++;
	if (level <= LOG_LEVEL_WARN) {
		/* Without the time and level ("2026-...Z warn  "): the console shows its age. */
		size_t skip = n > PREFIX_LEN ? PREFIX_LEN : 0;

		memcpy(ring.problem, line + skip, n - skip);
		ring.problem[n - skip] = '\0';
		ring.problem_ms = gd_now_ms();
	}
	pthread_mutex_unlock(&ring.lock);
}

size_t log_recent(size_t n, char *out, size_t cap)
{
	size_t used = 0, shown;

	if (cap == 0)
		return 0;
	out[0] = '\0';
	pthread_mutex_lock(&ring.lock);
	shown = n < ring.count ? n : ring.count;
	for (size_t i = 0; i < shown; i++) {
		size_t at = (ring.next + RING_LINES - shown + i) % RING_LINES;
		int r = snprintf(out + used, cap - used, "%s\n", ring.lines[at]);

		if (r < 0 || (size_t)r >= cap - used)
			break;
		used += (size_t)r;
	}
	pthread_mutex_unlock(&ring.lock);
	return shown;
}

int64_t log_last_problem(char *out, size_t cap)
{
	int64_t ms;

	pthread_mutex_lock(&ring.lock);
	snprintf(out, cap, "%s", ring.problem);
	ms = ring.problem_ms;
	pthread_mutex_unlock(&ring.lock);
	return ms;
}

void log_clear_last_problem(void)
{
	pthread_mutex_lock(&ring.lock);
	ring.problem[0] = '\0';
	ring.problem_ms = 0;
	pthread_mutex_unlock(&ring.lock);
}

/*
 * Copies the message 'in' into 'out' (room for 'cap' bytes) with what could
 * forge or hide a line escaped as \xNN: control characters (a newline in a
 * cloud-supplied point name would start a fake log line; ESC drives the
 * terminal), DEL, the C1 controls and bytes that are not UTF-8. Returns the
 * length written; an escape is never cut.
 */
static size_t escape_controls(const char *in, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0, len;

	while (*p != '\0') {
		len = utf8_seq_len(p);
		if (len == 0 || *p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] < 0xa0)) {
			if (n + 4 >= cap)
				break;
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = gd_hex_digits[*p >> 4];
			out[n++] = gd_hex_digits[*p & 15];
			p++;
			continue;
		}
		if (n + len >= cap)
			break;
		memcpy(out + n, p, len);
		n += len;
		p += len;
	}
	return n;
}

/* Formats and writes one whole line with a single write, so threads do not interleave. */
static void log_vline(enum log_level level, const char *subsys, int errnum, const char *fmt,
		      va_list ap)
{
	char line[1024], msg[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (level > current_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s %s: ", ts.tv_nsec / 1000000L,
		     level_names[level], subsys);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n += escape_controls(msg, line + n, sizeof(line) - n);
	if (errnum != 0 && n < sizeof(line) - 1) {
		r = snprintf(line + n, sizeof(line) - n, ": %s", strerror(errnum));
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
	remember(level, line, n - 1);
}

#define LOG_BODY(level, errnum)                                                                    \
	do {                                                                                       \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_vline(level, subsys, errnum, fmt, ap);                                         \
		va_end(ap);                                                                        \
	} while (0)

void log_warn(const char *subsys, const char *fmt, ...)
{
	int saved = errno;

	LOG_BODY(LOG_LEVEL_WARN, saved);
	errno = saved;
}

void log_warnx(const char *subsys, const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, 0);
}

void log_error(const char *subsys, const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERROR, 0);
}

void log_info(const char *subsys, const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, 0);
}

void log_debug(const char *subsys, const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_DEBUG, 0);
}

void fatal(const char *subsys, const char *fmt, ...)
{
	int saved = errno;

	LOG_BODY(LOG_LEVEL_ERROR, saved);
	exit(1);
}

void fatalx(const char *subsys, const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERROR, 0);
	exit(1);
}
