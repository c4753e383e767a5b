/* console.c: the field console's session: the line editor (bytes typed in, echoed as a terminal
 * expects) hands lines to the commands (console_commands.c) or the PIN (console_pin.c). */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>

#include "console_private.h"

#define PROMPT_USER  "guardian> "
#define PROMPT_ADMIN "guardian# "
#define PROMPT_LEN   10
#define CSI_MAX	     32 /* a longer escape sequence is not a key; stop swallowing */

static void prompt(struct console *c)
{
	console_emit_str(c, c->logged_in ? PROMPT_ADMIN : PROMPT_USER);
}

/* ---- the line editor --------------------------------------------------------------------- */

static void clear_line(struct console *c)
{
	mbedtls_platform_zeroize(c->line, sizeof(c->line)); /* it may have held a PIN */
	c->len = 0;
	c->overflow = 0;
}

static void line_end(struct console *c)
{
	console_emit_str(c, "\r\n");
	c->line[c->len] = '\0';
	if (c->overflow > 0) {
		c->reading_pin = false;
		console_say(c, "line too long (%zu bytes); ignored", c->len + c->overflow);
	} else if (c->reading_pin) {
		console_pin_entered(c);
	} else {
		console_run_line(c);
	}
	clear_line(c);
	/* `login` just asked for the PIN: "PIN: " is the prompt, not "PIN: guardian> ". */
	if (!c->watching && !c->reading_pin)
		prompt(c);
}

static void erase_char(struct console *c)
{
	if (c->len == 0 || c->overflow > 0)
		return; /* an overlong line is lost anyway; the notice says so */
	c->len--;
	console_emit_str(c, "\b \b");
}

/* ^U: erase on screen while the line fits one row; else start a fresh one. */
static void erase_line(struct console *c)
{
	if (c->overflow == 0 && PROMPT_LEN + c->len < LINE_COLS) {
		while (c->len > 0)
			erase_char(c);
	} else {
		console_emit_str(c, "\r\n");
		prompt(c);
	}
	clear_line(c);
}

static void abandon_line(struct console *c)
{
	console_emit_str(c, "^C\r\n");
	if (c->reading_pin)
		console_say(c, "login cancelled");
	c->reading_pin = false;
	clear_line(c);
	prompt(c);
}

static void add_char(struct console *c, uint8_t ch)
{
	if (c->len + 1 >= CONSOLE_LINE_MAX || c->overflow > 0) {
		c->overflow++;
		c->stats.dropped_bytes++;
		return;
	}
	c->line[c->len++] = (char)ch;
	console_emit(c, c->reading_pin ? "*" : (const char *)&ch, 1);
}

/* Swallows the bytes of an escape sequence; returns false when 'ch' is not part of one. */
static bool in_escape(struct console *c, uint8_t ch)
{
	if (c->esc == ESC_NONE)
		return false;
	if (ch < 0x20 || ch >= 0x7f) {
		c->esc = ESC_NONE; /* not a key after all: handle the byte as typed */
		return false;
	}
	if (c->esc == ESC_START && (ch == '[' || ch == 'O')) {
		c->esc = ch == '[' ? ESC_CSI : ESC_SS3;
		c->esc_len = 0;
		return true;
	}
	if (c->esc == ESC_CSI && ch < 0x40 && ++c->esc_len < CSI_MAX)
		return true; /* parameter and intermediate bytes */
	c->esc = ESC_NONE;   /* the final byte, or the one after ESC or ESC O */
	return true;
}

static void input_byte(struct console *c, uint8_t ch)
{
	uint8_t pair = c->last_end;

	c->last_end = 0;
	if (in_escape(c, ch))
		return;
	if (ch == '\r' || ch == '\n') {
		if (pair != 0 && pair != ch)
			return; /* CR LF or LF CR: one line end */
		c->last_end = ch;
		line_end(c);
	} else if (ch == 0x08 || ch == 0x7f) {
		erase_char(c);
	} else if (ch == 0x15) {
		erase_line(c);
	} else if (ch == 0x03) {
		abandon_line(c);
	} else if (ch == 0x1b) {
		c->esc = ESC_START;
	} else if (ch >= 0x20 && ch < 0x7f) {
		add_char(c, ch);
	} else {
		c->stats.dropped_bytes++;
	}
}

/* The key that stops `watch` is used up, but an arrow key's tail or CR's LF must not be typed. */
static void watch_key(struct console *c, uint8_t ch)
{
	c->watching = false;
	prompt(c);
	c->esc = ch == 0x1b ? ESC_START : ESC_NONE;
	c->last_end = ch == '\r' || ch == '\n' ? ch : 0;
}

/* ---- the public interface ---------------------------------------------------------------- */

struct console *console_new(const struct console_config *cfg, const struct console_provider *p,
			    const struct console_output *out, const struct console_clock *clk)
{
	struct console *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if (cfg != NULL && cfg->pin_hash != NULL) {
		c->pin_problem = console_pin_hash_check(cfg->pin_hash);
		c->pin_hash = c->pin_problem == NULL ? strdup(cfg->pin_hash) : NULL;
		if (c->pin_problem == NULL && c->pin_hash == NULL) {
			free(c);
			return NULL;
		}
	}
	c->idle_timeout_ms = (cfg != NULL && cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : 300) *
			     (int64_t)1000;
	c->lockout_after = cfg != NULL && cfg->lockout_after > 0 ? cfg->lockout_after : 5;
	c->lockout_base_s = cfg != NULL && cfg->lockout_base_s > 0 ? cfg->lockout_base_s : 30;
	if (c->lockout_base_s > LOCKOUT_MAX_S)
		c->lockout_base_s = LOCKOUT_MAX_S;
	if (p != NULL)
		c->prov = *p;
	if (out != NULL)
		c->out = *out;
	if (clk != NULL)
		c->clk = *clk;
	console_reset(c);
	return c;
}

void console_free(struct console *c)
{
	if (c == NULL)
		return;
	console_flush(c);
	free(c->pin_hash);
	mbedtls_platform_zeroize(c, sizeof(*c));
	free(c);
}

void console_input(struct console *c, const uint8_t *data, size_t n)
{
	if (n == 0)
		return;
	c->last_input_ms = console_now(c);
	for (size_t i = 0; i < n; i++) {
		if (c->watching)
			watch_key(c, data[i]);
		else
			input_byte(c, data[i]);
	}
	console_flush(c);
}

void console_tick(struct console *c)
{
	int64_t now = console_now(c);

	if (c->watching) {
		if (now >= c->next_draw_ms)
			console_watch_draw(c);
	} else if (c->reading_pin && now - c->last_input_ms >= c->idle_timeout_ms) {
		console_emit_str(c, "\r\n");
		console_say(c, "PIN entry timed out");
		c->reading_pin = false;
		clear_line(c);
		prompt(c);
	} else if (c->logged_in && now - c->last_input_ms >= c->idle_timeout_ms) {
		console_emit_str(c, "\r\n");
		console_say(c, "session ended after %lld s idle; logged out",
			    (long long)(c->idle_timeout_ms / 1000));
		c->logged_in = false;
		prompt(c);
		console_emit(c, c->line, c->len); /* what was typed so far stays on the new line */
	}
	console_flush(c);
}

/* A new connection may be a new person: the login ends; the lockout stays. */
void console_reset(struct console *c)
{
	c->watching = false;
	c->reading_pin = false;
	c->logged_in = false;
	c->esc = ESC_NONE;
	c->last_end = 0;
	clear_line(c);
	c->last_input_ms = console_now(c);
	console_emit_str(c, "\r\n");
	console_banner(c);
	prompt(c);
	console_flush(c);
}

void console_get_stats(const struct console *c, struct console_stats *out)
{
	*out = c->stats;
	out->logged_in = c->logged_in;
	/* A lock that ran out is only cleared at the next login. */
	if (out->locked_until_ms != 0 && out->locked_until_ms <= console_now(c))
		out->locked_until_ms = 0;
}
