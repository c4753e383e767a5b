/* console_private.h: private to the field console's files: one session's state, and what the
 * line editor (console.c) calls of the commands (console_commands.c) and the PIN (console_pin.c),
 * and what all three call of the output (console_output.c). */
#ifndef GUARDIAN_CONSOLE_PRIVATE_H
#define GUARDIAN_CONSOLE_PRIVATE_H

#include "console.h"

/*
 * Lines stop one short of the terminal's width: a line of exactly 80 leaves
 * the cursor in the "pending wrap" state, where some terminals wrap at once
 * (a blank line after every row) and xterm's ESC[K erases the last character.
 */
#define LINE_COLS      (CONSOLE_WIDTH - 1)
#define ADAPTERS_SHOWN 64
#define POINTS_SHOWN   100
#define RULES_SHOWN    64
#define TEXT_MAX       (48 * 1024) /* log: 200 lines of at most 200 bytes */
#define LOCKOUT_MAX_S  3600
#define OUT_BUF	       1024

enum esc_state { ESC_NONE, ESC_START, ESC_CSI, ESC_SS3 };

struct console {
	char *pin_hash; /* owned; NULL when login is impossible */
	const char *pin_problem;
	int64_t idle_timeout_ms;
	int lockout_after, lockout_base_s;
	struct console_provider prov;
	struct console_output out;
	struct console_clock clk;

	/* the line being typed */
	char line[CONSOLE_LINE_MAX];
	size_t len;
	size_t overflow; /* bytes typed past the line's end; the line is refused */
	enum esc_state esc;
	unsigned esc_len;
	uint8_t last_end; /* CR or LF that just ended a line; its partner is swallowed */

	bool reading_pin;
	bool watching;
	bool drawing; /* rows end with ESC[K: watch redraws over the old screen */
	char watch_glob[CONSOLE_LINE_MAX];
	int64_t next_draw_ms;
	int64_t last_input_ms;

	bool logged_in;
	unsigned wrong_in_row;
	struct console_stats stats;

	char outbuf[OUT_BUF];
	size_t outlen;

	/* One command runs at a time, so they share one scratch area. */
	union {
		struct console_adapter adapters[ADAPTERS_SHOWN];
		struct console_point points[POINTS_SHOWN];
		struct console_rule rules[RULES_SHOWN];
		char text[TEXT_MAX];
	} scratch;
};

/* ---- console_output.c ------------------------------------------------------------------------ */

/* Sends what is buffered to the session's output. */
void console_flush(struct console *c);
/* Buffers 'n' bytes as they are (a flush first when they do not fit). */
void console_emit(struct console *c, const char *data, size_t n);
/* Writes 's' as it is: a prompt, an escape sequence, the console's own text. */
void console_emit_str(struct console *c, const char *s);
/* Every line of text goes out here: cleaned, cut to the width, CR LF ended. */
void console_say(struct console *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Copies at most 'width' columns of 'src' into 'dst' (width + 1 bytes), with
 * '~' as the last column when cut. Anything but printable ASCII becomes '?':
 * the terminal's character set is unknown, and a stray ESC or a byte 0x9b
 * (CSI to an 8-bit terminal) in a name could move the cursor or worse.
 */
void console_clip(char *dst, size_t width, const char *src);
/* Monotonic ms from the session's clock (0 without one). */
int64_t console_now(const struct console *c);

/* ---- console_commands.c ---------------------------------------------------------------------- */

/* "guardian <version> on <device> - type help". */
void console_banner(struct console *c);
/* Runs the command on c->line. */
void console_run_line(struct console *c);
/* One frame of `watch`: from the top left, each line erasing what was there. */
void console_watch_draw(struct console *c);

/* ---- console_pin.c --------------------------------------------------------------------------- */

/* The login command: asks for the PIN, unless login is impossible or locked out. */
void console_cmd_login(struct console *c, const char *arg);
/* The PIN on c->line was entered: logged in, or one more wrong PIN towards a lockout. */
void console_pin_entered(struct console *c);

#endif
