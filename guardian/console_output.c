/* console_output.c: everything the field console writes goes through here: buffered for its
 * output, and text cleaned and cut to the terminal's width. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "console_private.h"

void console_flush(struct console *c)
{
	if (c->outlen > 0 && c->out.write != NULL)
		c->out.write(c->out.ctx, c->outbuf, c->outlen);
	c->outlen = 0;
}

void console_emit(struct console *c, const char *data, size_t n)
{
	if (c->outlen + n > sizeof(c->outbuf))
		console_flush(c);
	if (n > sizeof(c->outbuf)) {
		if (c->out.write != NULL)
			c->out.write(c->out.ctx, data, n);
		return;
	}
	memcpy(c->outbuf + c->outlen, data, n);
	c->outlen += n;
}

void console_emit_str(struct console *c, const char *s)
{
	console_emit(c, s, strlen(s));
}

void console_clip(char *dst, size_t width, const char *src)
{
	size_t i;

	for (i = 0; i < width && src[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[i] = ch == '\t' ? ' ' : ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (src[i] != '\0' && i > 0)
		dst[i - 1] = '~';
	dst[i] = '\0';
}

void console_say(struct console *c, const char *fmt, ...)
{
	char raw[512], line[LINE_COLS + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	console_clip(line, LINE_COLS, raw);
	console_emit_str(c, line);
	console_emit_str(c, c->drawing ? "\x1b[K\r\n" : "\r\n");
}

int64_t console_now(const struct console *c)
{
	return c->clk.now_ms != NULL ? c->clk.now_ms(c->clk.ctx) : 0;
}
