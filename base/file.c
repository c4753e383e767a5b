/* file.c: whole files: read into memory; written whole, replacing (atomic) or never replacing. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

char *gd_read_file(const char *file)
{
	return gd_read_file_len(file, NULL);
}

char *gd_read_file_len(const char *file, size_t *len_out)
{
	FILE *f = fopen(file, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			char *grown = realloc(buf, cap ? cap * 2 : 65536);

			if (grown == NULL) {
				free(buf);
				buf = NULL;
				goto out;
			}
			buf = grown;
			cap = cap ? cap * 2 : 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		buf = NULL;
		errno = EIO;
		goto out;
	}
	buf[len] = '\0';
	if (len_out != NULL)
		*len_out = len;
out:
	fclose(f);
	return buf;
}

int gd_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return GD_EIO;
	if (fsync(fd) != 0)
		err = GD_EIO;
	close(fd);
	return err;
}

int gd_sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	return gd_sync_dir(dir);
}

static int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return GD_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * A complete temp file beside 'path' (synced if 'sync') holding 'data' with 'mode'; its
 * name into 'tmp'. The mode is set before any byte is written, so a secret is
 * never readable by others, whatever the umask.
 */
static int write_temp(const char *path, const void *data, size_t n, unsigned mode, bool sync,
		      char *tmp, size_t cap)
{
	int fd, err, saved;

	if ((size_t)snprintf(tmp, cap, "%s.tmp.XXXXXX", path) >= cap) {
		errno = ENAMETOOLONG;
		return GD_EIO;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return GD_EIO;
	err = fchmod(fd, (mode_t)mode) != 0 ? GD_EIO : write_all(fd, data, n);
	if (err == 0 && sync && fsync(fd) != 0)
		err = GD_EIO;
	saved = errno;
	if (close(fd) != 0 && err == 0) {
		err = GD_EIO;
		saved = errno;
	}
	if (err != 0)
		unlink(tmp);
	errno = saved;
	return err;
}

/* The temp file put in place: rename(2) replaces 'path', link(2) never does (EEXIST). */
static int write_whole(const char *path, const void *data, size_t n, unsigned mode, bool replace,
		       bool sync)
{
	char tmp[PATH_MAX];
	int err, saved;

	err = write_temp(path, data, n, mode, sync, tmp, sizeof(tmp));
	if (err != 0)
		return err;
	err = (replace ? rename(tmp, path) : link(tmp, path)) != 0 ? GD_EIO : 0;
	saved = errno;
	if (err != 0 || !replace)
		unlink(tmp);
	errno = saved;
	return err != 0 || !sync ? err : gd_sync_parent(path);
}

int gd_write_file_atomic(const char *path, const void *data, size_t n, unsigned mode)
{
	return write_whole(path, data, n, mode, true, true);
}

int gd_write_file_replace(const char *path, const void *data, size_t n, unsigned mode)
{
	return write_whole(path, data, n, mode, true, false);
}

int gd_create_file(const char *path, const void *data, size_t n, unsigned mode)
{
	return write_whole(path, data, n, mode, false, true);
}

char *gd_path_resolve(const char *dir, const char *path)
{
	char *out = NULL;

	if (path[0] == '/' || strcmp(dir, ".") == 0)
		return strdup(path);
	if (asprintf(&out, "%s/%s", dir, path) < 0)
		return NULL;
	return out;
}
