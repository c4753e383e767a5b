/* command_doc.h: private to guardian/: a command's JSON read into bounded parts, and its answer. */
#ifndef GUARDIAN_COMMAND_DOC_H
#define GUARDIAN_COMMAND_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../adapters/adapter.h"

#define CMD_BYTES	 4096 /* a larger command is refused unread */
#define CMD_ID_CHARS	 128  /* bytes of a string id */
#define CMD_ID_BYTES	 1024 /* an id as JSON text: CMD_ID_CHARS escaped at worst */
#define CMD_POINT_BYTES	 256  /* a point name as sent, with its NUL */
#define CMD_STRING_BYTES 256  /* a string value (a register holds at most 250 bytes) */
/* The answer's members: each field above escaped at worst (6 bytes a byte) and a reason; an
 * audit record (8192 bytes at most) still holds them with its own members. */
#define CMD_FIELDS_BYTES 7680

/* A command {"id":..., "point":..., "value":...}, each part checked and bounded. */
struct cmd_parsed {
	char id[CMD_ID_BYTES];		       /* JSON text; "null" when absent or unusable */
	char point[CMD_POINT_BYTES];	       /* "" when absent or unusable */
	struct value value;		       /* a string points to 'text' */
	char value_text[CMD_FIELDS_BYTES / 2]; /* the value as JSON text; "null" if none */
	char text[CMD_STRING_BYTES + 1];
};

/*
 * Reads 'len' bytes of command text into 'out'. Returns true if it is a
 * command that can be decided; otherwise false with the sentence for the
 * answer in 'reason' (what was readable, the id above all, is still set).
 */
bool cmd_parse(const char *text, size_t len, struct cmd_parsed *out, char *reason, size_t cap);
/* Only the id of a command, as JSON text ("null" if it has none usable). */
void cmd_parse_id(const char *text, size_t len, char id[CMD_ID_BYTES]);

/* What one answer says. 'id' and 'value' are JSON text; 'point' may be NULL. */
struct cmd_answer {
	const char *id;
	const char *point;
	const char *value;
	const char *status; /* accepted, refused, failed, busy */
	const char *reason;
};

/*
 * Writes the answer's members ("id":...,"status":...) into 'fields'
 * (CMD_FIELDS_BYTES) and the whole answer {members,"ts":ts} into 'doc'.
 * Returns the document's length. Never a cut document: if the members do not
 * fit, a short answer without the command's fields is written instead.
 */
size_t cmd_answer_format(const struct cmd_answer *a, int64_t ts, char *fields, char *doc,
			 size_t doc_cap);

/* A value as JSON text into 'out' (NUL-terminated); "null" for none, or if it does not fit. */
void gd_value_json(char *out, size_t cap, const struct value *v);

#endif
