/* meas_log.h: the measurement log of service/PROTOCOL.md: measured items folded into a register. */
#ifndef PROTO_MEAS_LOG_H
#define PROTO_MEAS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEAS_MAX      64 /* items in one measurement log */
#define MEAS_NAME_MAX 256

/* One measured item. */
struct measurement {
	char type[8]; /* "exe", "config", "policy", "file" */
	char name[MEAS_NAME_MAX];
	uint8_t sha256[32];
};

struct meas_log {
	struct measurement items[MEAS_MAX];
	size_t n;
	uint8_t reg[32]; /* the fold of every item, see meas_fold */
};

/* Empties the log; the register becomes 32 zero bytes. */
void meas_init(struct meas_log *log);
/* Appends an item and extends the register: reg = SHA-256(reg || sha256). GD_EFULL when full. */
int meas_add(struct meas_log *log, const char *type, const char *name, const uint8_t sha256[32]);
/* Hashes a file's contents into 'sha256'. 0, or GD_EIO (errno kept). */
int meas_hash_file(const char *path, uint8_t sha256[32]);
/* Folds items[0..n) from zero into 'reg' (to check a log that arrived). */
void meas_fold(const struct meas_log *log, uint8_t reg[32]);
/* The log as JSON: {"measurements":[...],"register":"<hex>"} (caller frees), NULL on ENOMEM. */
char *meas_log_json(const struct meas_log *log);
/* Parses meas_log_json's output (or a claims object: reads its "measurements" and "register"). */
int meas_log_parse(const char *json, size_t len, struct meas_log *out, char *why, size_t cap);

/* For the claims of proto/evidence.c: the log as members "measurements" and "register" of 'obj'
 * (false if one cannot be added), and read back from them into 'out' (zeroed by the caller). */
struct cJSON;
bool meas_log_add_members(struct cJSON *obj, const struct meas_log *log);
bool meas_log_read_members(const struct cJSON *obj, struct meas_log *out, char *why, size_t cap);

#endif
