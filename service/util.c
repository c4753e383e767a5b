/* util.c: paths, careful file writes and hex for the files of service/. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service.h"

bool service_path(char *buf, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(buf, cap, "%s/%s", dir, name);

	return n >= 0 && (size_t)n < cap;
}

/* Writes all of 'data' to 'fd'. 0 or -1 with errno. */
static int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int service_write_file(const char *path, const void *data, size_t n, unsigned mode)
{
	char tmp[4096];
	int fd, saved, rc = GD_EIO;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return GD_EIO;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return GD_EIO;
	if (fchmod(fd, mode) != 0 || write_all(fd, data, n) != 0 || fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto out;
	rc = 0;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (rc != 0)
		unlink(tmp);
	errno = saved;
	return rc;
}

int service_create_file(const char *path, const void *data, size_t n, unsigned mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	int saved;

	if (fd < 0)
		return GD_EIO;
	if (write_all(fd, data, n) != 0 || close(fd) != 0) {
		saved = errno;
		close(fd);
		unlink(path);
		errno = saved;
		return GD_EIO;
	}
	return 0;
}

