/* framer.h: cuts a serial byte stream into frames (delimiter, fixed length, start/end or length
 * field), checks an optional checksum; pure, no I/O. */
#ifndef FRAMER_H
#define FRAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAMER_MARK_MAX 8     /* longest delimiter, start or end marker, in bytes */
#define FRAMER_MAX_LEN	65536 /* the largest max_len a config may set */

enum frame_mode {
	FRAME_DELIMITER, /* a frame ends at 'delim' (e.g. CR LF); the delimiter is not in the body
			  */
	FRAME_FIXED, /* every frame is 'fixed_len' bytes, start marker included when one is set */
	FRAME_START_END, /* a frame begins with 'start' and ends with 'end', or after the length
			    the length field gives */
};
extern const char *const frame_mode_names[]; /* "delimiter", "fixed", "start_end", NULL */

enum checksum_kind {
	CSUM_NONE,
	CSUM_SUM8,	   /* sum of the bytes modulo 256; 1 byte */
	CSUM_XOR8,	   /* xor of the bytes; 1 byte */
	CSUM_CRC16_MODBUS, /* CRC-16/MODBUS: poly 0x8005 reflected (0xA001), init 0xFFFF; 2 bytes */
	CSUM_CRC16_CCITT, /* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected; 2 bytes */
};
extern const char *const checksum_names[]; /* "none", "sum8", "xor8", "crc16_modbus",
					      "crc16_ccitt", NULL */

/* How the checksum value is written in the frame. */
enum checksum_encoding {
	CSUM_BINARY, /* raw bytes, in 'csum_big_endian' order for the 2-byte CRCs */
	CSUM_HEX,    /* ASCII hex digits, two per byte, most significant first; either case */
};

/* Checksum helpers; known vectors: for "123456789", sum8 0xDD, xor8 0x31,
 * CRC-16/MODBUS 0x4B37, CRC-16/CCITT-FALSE 0x29B1. */
uint8_t csum_sum8(const uint8_t *p, size_t n);
uint8_t csum_xor8(const uint8_t *p, size_t n);
uint16_t csum_crc16_modbus(const uint8_t *p, size_t n);
uint16_t csum_crc16_ccitt(const uint8_t *p, size_t n);
/* The width in bytes of a checksum as binary (0, 1 or 2). */
size_t csum_width(enum checksum_kind k);
/* Computes checksum 'k' over p[0..n). */
uint32_t csum_compute(enum checksum_kind k, const uint8_t *p, size_t n);

/*
 * Terms used below. The "frame" is every byte from the first byte of the
 * start marker (or the first byte after the previous frame) through the end
 * marker or delimiter. The "body" is the frame without the start marker, the
 * end marker or delimiter, and the checksum. Frames are handed out as bodies;
 * binary field offsets and the length field offset count from the first body
 * byte (the byte after the start marker).
 *
 * Checksum: computed over the body bytes from 'csum_from' (usually 0) up to
 * the checksum; the checksum sits at the end of the frame just before the end
 * marker or delimiter (for FRAME_DELIMITER and FRAME_START_END), or in the
 * last bytes of a fixed frame. With CSUM_HEX it takes 2 * width characters.
 * A 'csum_sep' (NMEA's "*") sits between body and checksum when set; a frame
 * without it is a bad_checksum frame.
 *
 * Length field (FRAME_START_END, optional, instead of or with an end marker):
 * an unsigned integer of 'len_size' (1 or 2) bytes at body offset
 * 'len_offset', big-endian unless 'len_little_endian'. The body, checksum
 * included, is then len_offset + len_size + value + len_adjust bytes long;
 * when an end marker is also set, it must follow, or the frame is bad.
 */
struct framer_config {
	enum frame_mode mode;
	uint8_t delim[FRAMER_MARK_MAX];
	size_t delim_len; /* FRAME_DELIMITER: >= 1 */
	uint8_t start[FRAMER_MARK_MAX];
	size_t start_len; /* FRAME_START_END: >= 1; FRAME_FIXED: optional, resynchronises */
	uint8_t end[FRAMER_MARK_MAX];
	size_t end_len;	  /* FRAME_START_END: 0 only with a length field */
	size_t fixed_len; /* FRAME_FIXED: the whole frame, start marker included */
	bool has_len_field;
	size_t len_offset;
	size_t len_size; /* 1 or 2 */
	bool len_little_endian;
	int len_adjust;
	size_t max_len; /* longest frame accepted, markers included; 1..FRAMER_MAX_LEN */
	enum checksum_kind csum;
	enum checksum_encoding csum_encoding;
	bool csum_big_endian; /* binary 2-byte checksums: high byte first (false: low byte first,
				 as Modbus RTU sends its CRC) */
	size_t csum_from;     /* first body byte the checksum covers */
	uint8_t csum_sep[FRAMER_MARK_MAX]; /* optional: written between the body and the checksum,
					      covered by neither, e.g. NMEA's "*" */
	size_t csum_sep_len;
};

/* Counters; a frame is exactly one of: delivered, overlong, bad_checksum, bad_length. */
struct framer_stats {
	uint64_t bytes;	       /* bytes pushed */
	uint64_t frames;       /* frames delivered (checksum good) */
	uint64_t overlong;     /* frames longer than max_len, discarded up to the next boundary */
	uint64_t bad_checksum; /* frames whose checksum did not match, or was not hex */
	uint64_t bad_length;   /* a length field beyond max_len, or a missing end marker after it */
	uint64_t garbage;      /* bytes outside any frame (before a start marker) */
};

/* Called once per good frame with its body; 'body' is valid only during the call. */
typedef void (*framer_cb)(void *ctx, const uint8_t *body, size_t len);

struct framer {
	struct framer_config cfg;
	struct framer_stats stats;
	uint8_t *buf; /* max_len bytes, owned */
	size_t len;   /* bytes held of the frame being assembled */
	int state;    /* private */
	size_t want;  /* private: total frame length when known from a length field */
};

/*
 * Checks 'cfg' and prepares 'f'. On a bad config returns GD_EINVAL and, when
 * 'why' is not NULL, a sentence saying what is wrong (e.g. "max_len is shorter
 * than fixed_len"), valid until the next framer_init in the same thread.
 * GD_ENOMEM if the buffer cannot be allocated.
 */
int framer_init(struct framer *f, const struct framer_config *cfg, const char **why);
/* Frees the buffer. No operation if 'f' was never initialised (zeroed). */
void framer_free(struct framer *f);
/* Forgets a partial frame (after a reconnect); keeps the counters. */
void framer_reset(struct framer *f);
/*
 * Pushes 'n' bytes; calls 'cb' for every complete good frame, in order.
 * Frames may be split over any number of pushes or glued together in one.
 * Never fails: bad input is counted in f->stats and skipped. An overlong
 * frame is discarded up to the next boundary (delimiter, start marker, or,
 * for FRAME_FIXED without a start marker, the next fixed_len bytes).
 */
void framer_push(struct framer *f, const uint8_t *data, size_t n, framer_cb cb, void *ctx);

/*
 * Parses a marker or request as written in configs: text with C escapes
 * (\r \n \t \\ \xHH) into 'out' (at most 'cap' bytes). Returns the length, or
 * -1 if it is empty, too long, or has a bad escape.
 */
int framer_parse_bytes(const char *text, uint8_t *out, size_t cap);

#endif
