/* base.h: what every part uses and that knows no product: errors, log, clocks, files, text
 * (hex, UTF-8, "why" sentences) and backoff. The JSON writer is in json.h, the config reader in
 * conf.h, the point model in point.h, serial ports in serial.h, the sandbox a process enters in
 * sandbox.h. */
#ifndef BASE_H
#define BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One error enum for the whole program. Functions return 0 or one of these. */
enum gd_err {
	GD_OK = 0,
	GD_ENOMEM = -1,	   /* out of memory */
	GD_EINVAL = -2,	   /* invalid argument or value */
	GD_EIO = -3,	   /* I/O error; errno has the system's reason */
	GD_ETIMEDOUT = -4, /* no answer in time */
	GD_EPROTO = -5,	   /* malformed frame or protocol violation */
	GD_EDENIED = -6,   /* refused by policy */
	GD_EFULL = -7,	   /* buffer full */
	GD_ECONFIG = -8,   /* invalid configuration */
	GD_ETLS = -9,	   /* TLS set-up or verification failed */
	GD_ENOTCONN = -10, /* link is down */
	GD_EDEVICE = -11,  /* the device answered with an exception */
	GD_ERANGE = -12,   /* value does not fit the type */
};

/* Returns a static string that describes 'err' (one of enum gd_err). */
const char *gd_strerror(int err);

/* Logging: one line per event on stderr: time, level, subsystem, message. */
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or GD_EINVAL. */
int log_level_parse(const char *name, enum log_level *out);

/*
 * The last log lines kept in memory (256, each cut to 200 bytes), for the
 * field console: the last 'n', oldest first, newline-ended, into 'out'.
 * Returns how many. Lines below the log level are not kept.
 */
size_t log_recent(size_t n, char *out, size_t cap);
/* The last warning or error line ("" if none since the last clear); returns its UTC ms or 0. */
int64_t log_last_problem(char *out, size_t cap);
void log_clear_last_problem(void);

/* log_warn appends strerror(errno); log_warnx does not. fatal/fatalx exit(1). */
void log_warn(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warnx(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_error(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_info(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_debug(const char *subsys, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void fatal(const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
_Noreturn void fatalx(const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reads a whole file into a NUL-terminated buffer (caller frees). NULL with errno on failure. */
char *gd_read_file(const char *path);
/* The same for bytes that may hold NULs: their number in *len. */
char *gd_read_file_len(const char *path, size_t *len);
/* 'path' taken relative to 'dir' (a config file's directory) unless absolute; owned, or NULL on
 * ENOMEM. The config loader and guardian-launch resolve every file a config names with it. */
char *gd_path_resolve(const char *dir, const char *path);
/* Writes 'n' bytes to 'path' with exactly 'mode' (whatever the umask): a synced temp file beside
 * it renamed over it, then the directory synced; readers see the old file or the new one, never
 * a part. 0, or GD_EIO with errno kept (the temp file removed). */
int gd_write_file_atomic(const char *path, const void *data, size_t n, unsigned mode);
/* The same without a sync: while the system runs, readers see the old file or the new one,
 * never a part; a power cut may leave the old one, or on some file systems an empty one. For
 * records the next write says again (what version a device last reported). */
int gd_write_file_replace(const char *path, const void *data, size_t n, unsigned mode);
/* A rename, link or new file is durable only once its directory is synced: fsync of 'dir', or of
 * the directory holding 'path'. 0, or GD_EIO with errno kept. */
int gd_sync_dir(const char *dir);
int gd_sync_parent(const char *path);
/* Like gd_write_file_atomic, but never replaces a file: GD_EIO with errno EEXIST if 'path' is. */
int gd_create_file(const char *path, const void *data, size_t n, unsigned mode);

/* Clocks. gd_now_ms: UTC milliseconds since the epoch. gd_mono_ms: monotonic ms. */
int64_t gd_now_ms(void);
int64_t gd_mono_ms(void);
/* Sleeps until the monotonic clock reads 'deadline_ms' (returns at once if past). */
void gd_sleep_until_ms(int64_t deadline_ms);

/* "0123456789abcdef": the digit of each value 0 to 15. */
extern const char gd_hex_digits[];
/* A hex digit's value (either case), or -1. */
int gd_hex_digit(int ch);
/* Lower-case hex of 'n' bytes into 'out' (2n + 1 bytes, NUL-terminated). */
void gd_hex_encode(const uint8_t *in, size_t n, char *out);
/* Exactly 2n hex digits of 'in' into 'out', followed by the character 'end' ('\0' for the end
 * of the string). False if not. */
bool gd_hex_decode(const char *in, uint8_t *out, size_t n, char end);
/* vsnprintf into 'why' when it is not NULL: the sentence a caller shows for a failure. */
void gd_whyf(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Length of the valid UTF-8 sequence at 's' (1 to 4), or 0 if it is not one. */
size_t utf8_seq_len(const unsigned char *s);

/* CRC-32C (Castagnoli) of 'n' bytes, continuing from 'crc' (0 to start): gd_crc32c(0,
 * "123456789", 9) is 0xE3069283. */
uint32_t gd_crc32c(uint32_t crc, const void *data, size_t n);
/* The same without the CPU's CRC instruction (what gd_crc32c uses where there is none). */
uint32_t gd_crc32c_portable(uint32_t crc, const void *data, size_t n);
/* The wait before retry number 'failures' (1, 2, ...): min_ms doubled each time, up to max_ms. */
int gd_backoff_ms(int min_ms, int max_ms, int failures);

#endif
