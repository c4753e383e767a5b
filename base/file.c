/* file.c: reading whole files (configs, policies) into memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "base.h"

char *gd_read_file(const char *file)
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
out:
	fclose(f);
	return buf;
}
