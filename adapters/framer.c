/* framer.c: cuts a serial byte stream into frames and checks their checksums; no I/O. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "framer.h"

/*
 * Rules where the wire leaves a choice:
 * - FRAME_DELIMITER: a delimiter with nothing before it (two in a row, or a
 *   CR LF after a CR LF) is not a frame: it is skipped and counted nowhere.
 * - FRAME_FIXED with a start marker: a marker inside the fixed length is data;
 *   after any frame, good or bad, the hunt for the next marker starts with the
 *   byte after it.
 * - FRAME_START_END without a length field: a start marker inside an open
 *   frame restarts the frame there; the bytes before it count as garbage. The
 *   new marker must not overlap the one that opened the frame ("<<<" opens
 *   with the first two). The end marker is looked for first, so start and end
 *   may be the same bytes. Nothing between the markers is an empty body.
 * - FRAME_START_END with a length field: the length governs; markers inside
 *   the frame are data. After a bad length the bytes up to the next start
 *   marker count as garbage (where the bad frame ended is unknown).
 * - An overlong frame is discarded up to the delimiter, or in FRAME_START_END
 *   up to the end marker or the next start marker, whichever comes first.
 * - A config setting that its mode does not use (a delimiter in fixed mode) is
 *   refused: it means the integrator expects framing that will not happen.
 */

const char *const frame_mode_names[] = { "delimiter", "fixed", "start_end", NULL };
const char *const checksum_names[] = {
	"none", "sum8", "xor8", "crc16_modbus", "crc16_ccitt", NULL
};

enum framer_state {
	ST_HUNT, /* looking for the start marker; buf holds the part of it seen so far */
	ST_BODY, /* assembling a frame; buf holds it from its first byte */
	ST_SKIP, /* discarding an overlong frame; buf holds the last few bytes seen */
};

static const uint16_t crc16_modbus_table[256] = {
	0x0000, 0xc0c1, 0xc181, 0x0140, 0xc301, 0x03c0, 0x0280, 0xc241, 0xc601, 0x06c0, 0x0780,
	0xc741, 0x0500, 0xc5c1, 0xc481, 0x0440, 0xcc01, 0x0cc0, 0x0d80, 0xcd41, 0x0f00, 0xcfc1,
	0xce81, 0x0e40, 0x0a00, 0xcac1, 0xcb81, 0x0b40, 0xc901, 0x09c0, 0x0880, 0xc841, 0xd801,
	0x18c0, 0x1980, 0xd941, 0x1b00, 0xdbc1, 0xda81, 0x1a40, 0x1e00, 0xdec1, 0xdf81, 0x1f40,
	0xdd01, 0x1dc0, 0x1c80, 0xdc41, 0x1400, 0xd4c1, 0xd581, 0x1540, 0xd701, 0x17c0, 0x1680,
	0xd641, 0xd201, 0x12c0, 0x1380, 0xd341, 0x1100, 0xd1c1, 0xd081, 0x1040, 0xf001, 0x30c0,
	0x3180, 0xf141, 0x3300, 0xf3c1, 0xf281, 0x3240, 0x3600, 0xf6c1, 0xf781, 0x3740, 0xf501,
	0x35c0, 0x3480, 0xf441, 0x3c00, 0xfcc1, 0xfd81, 0x3d40, 0xff01, 0x3fc0, 0x3e80, 0xfe41,
	0xfa01, 0x3ac0, 0x3b80, 0xfb41, 0x3900, 0xf9c1, 0xf881, 0x3840, 0x2800, 0xe8c1, 0xe981,
	0x2940, 0xeb01, 0x2bc0, 0x2a80, 0xea41, 0xee01, 0x2ec0, 0x2f80, 0xef41, 0x2d00, 0xedc1,
	0xec81, 0x2c40, 0xe401, 0x24c0, 0x2580, 0xe541, 0x2700, 0xe7c1, 0xe681, 0x2640, 0x2200,
	0xe2c1, 0xe381, 0x2340, 0xe101, 0x21c0, 0x2080, 0xe041, 0xa001, 0x60c0, 0x6180, 0xa141,
	0x6300, 0xa3c1, 0xa281, 0x6240, 0x6600, 0xa6c1, 0xa781, 0x6740, 0xa501, 0x65c0, 0x6480,
	0xa441, 0x6c00, 0xacc1, 0xad81, 0x6d40, 0xaf01, 0x6fc0, 0x6e80, 0xae41, 0xaa01, 0x6ac0,
	0x6b80, 0xab41, 0x6900, 0xa9c1, 0xa881, 0x6840, 0x7800, 0xb8c1, 0xb981, 0x7940, 0xbb01,
	0x7bc0, 0x7a80, 0xba41, 0xbe01, 0x7ec0, 0x7f80, 0xbf41, 0x7d00, 0xbdc1, 0xbc81, 0x7c40,
	0xb401, 0x74c0, 0x7580, 0xb541, 0x7700, 0xb7c1, 0xb681, 0x7640, 0x7200, 0xb2c1, 0xb381,
	0x7340, 0xb101, 0x71c0, 0x7080, 0xb041, 0x5000, 0x90c1, 0x9181, 0x5140, 0x9301, 0x53c0,
	0x5280, 0x9241, 0x9601, 0x56c0, 0x5780, 0x9741, 0x5500, 0x95c1, 0x9481, 0x5440, 0x9c01,
	0x5cc0, 0x5d80, 0x9d41, 0x5f00, 0x9fc1, 0x9e81, 0x5e40, 0x5a00, 0x9ac1, 0x9b81, 0x5b40,
	0x9901, 0x59c0, 0x5880, 0x9841, 0x8801, 0x48c0, 0x4980, 0x8941, 0x4b00, 0x8bc1, 0x8a81,
	0x4a40, 0x4e00, 0x8ec1, 0x8f81, 0x4f40, 0x8d01, 0x4dc0, 0x4c80, 0x8c41, 0x4400, 0x84c1,
	0x8581, 0x4540, 0x8701, 0x47c0, 0x4680, 0x8641, 0x8201, 0x42c0, 0x4380, 0x8341, 0x4100,
	0x81c1, 0x8081, 0x4040,
};

static const uint16_t crc16_ccitt_table[256] = {
	0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a,
	0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294,
	0x72f7, 0x62d6, 0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462,
	0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509,
	0xe5ee, 0xf5cf, 0xc5ac, 0xd58d, 0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695,
	0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5,
	0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823, 0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948,
	0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
	0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a, 0x6ca6, 0x7c87, 0x4ce4,
	0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b,
	0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70, 0xff9f,
	0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
	0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046,
	0x6067, 0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290,
	0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e,
	0xe54f, 0xd52c, 0xc50d, 0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
	0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691,
	0x16b0, 0x6657, 0x7676, 0x4615, 0x5634, 0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9,
	0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d,
	0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a, 0x4a75, 0x5a54, 0x6a37, 0x7a16,
	0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8,
	0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1, 0xef1f, 0xff3e,
	0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93,
	0x3eb2, 0x0ed1, 0x1ef0,
};

/* What framer_push hands a finished frame to. */
struct framer_out {
	framer_cb cb;
	void *ctx;
};

uint8_t csum_sum8(const uint8_t *p, size_t n)
{
	unsigned sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return (uint8_t)sum;
}

uint8_t csum_xor8(const uint8_t *p, size_t n)
{
	unsigned x = 0;

	for (size_t i = 0; i < n; i++)
		x ^= p[i];
	return (uint8_t)x;
}

uint16_t csum_crc16_modbus(const uint8_t *p, size_t n)
{
	uint16_t crc = 0xffff;

	for (size_t i = 0; i < n; i++)
		crc = (uint16_t)(crc >> 8) ^ crc16_modbus_table[(crc ^ p[i]) & 0xff];
	return crc;
}

uint16_t csum_crc16_ccitt(const uint8_t *p, size_t n)
{
	uint16_t crc = 0xffff;

	for (size_t i = 0; i < n; i++)
		crc = (uint16_t)(crc << 8) ^ crc16_ccitt_table[((crc >> 8) ^ p[i]) & 0xff];
	return crc;
}

size_t csum_width(enum checksum_kind k)
{
	switch (k) {
	case CSUM_SUM8:
	case CSUM_XOR8:
		return 1;
	case CSUM_CRC16_MODBUS:
	case CSUM_CRC16_CCITT:
		return 2;
	default:
		return 0;
	}
}

uint32_t csum_compute(enum checksum_kind k, const uint8_t *p, size_t n)
{
	switch (k) {
	case CSUM_SUM8:
		return csum_sum8(p, n);
	case CSUM_XOR8:
		return csum_xor8(p, n);
	case CSUM_CRC16_MODBUS:
		return csum_crc16_modbus(p, n);
	case CSUM_CRC16_CCITT:
		return csum_crc16_ccitt(p, n);
	default:
		return 0;
	}
}

/* Bytes the checksum takes in the frame: its width, twice that as hex. */
static size_t csum_chars(const struct framer_config *c)
{
	return csum_width(c->csum) * (c->csum_encoding == CSUM_HEX ? 2 : 1);
}

/* Bytes between the body and the end of the frame (or its end marker): separator and checksum. */
static size_t csum_tail(const struct framer_config *c)
{
	return c->csum_sep_len + csum_chars(c);
}

/* Reads the checksum written at 'p' (csum_chars bytes); false if it is not valid hex. */
static bool csum_read(const struct framer_config *c, const uint8_t *p, uint32_t *out)
{
	size_t width = csum_width(c->csum);
	uint32_t v = 0;

	if (c->csum_encoding == CSUM_HEX) {
		for (size_t i = 0; i < 2 * width; i++) {
			int d = gd_hex_digit(p[i]);

			if (d < 0)
				return false;
			v = v << 4 | (uint32_t)d;
		}
	} else if (width == 2 && !c->csum_big_endian) {
		v = p[0] | (uint32_t)p[1] << 8;
	} else {
		for (size_t i = 0; i < width; i++)
			v = v << 8 | p[i];
	}
	*out = v;
	return true;
}

/* Whether the checksum after body[0..len) matches the body. */
static bool csum_ok(const struct framer_config *c, const uint8_t *body, size_t len)
{
	uint32_t got;

	if (c->csum == CSUM_NONE)
		return true;
	if (len < c->csum_from || memcmp(body + len, c->csum_sep, c->csum_sep_len) != 0 ||
	    !csum_read(c, body + len + c->csum_sep_len, &got))
		return false;
	return got == csum_compute(c->csum, body + c->csum_from, len - c->csum_from);
}

/*
 * Config checks. The sentence lives in a per-thread buffer, so it stays
 * valid until the next framer_init on the same thread.
 */
static _Thread_local char why_buf[160];

static int bad(const char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(const char **why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why_buf, sizeof(why_buf), fmt, ap);
	va_end(ap);
	if (why != NULL)
		*why = why_buf;
	return GD_EINVAL;
}

/* Checks what every mode shares; the enums may hold anything a loader put there. */
static int check_common(const struct framer_config *c, const char **why)
{
	if ((unsigned)c->mode > FRAME_START_END)
		return bad(why, "mode (%d) is not one of delimiter, fixed, start_end",
			   (int)c->mode);
	if ((unsigned)c->csum > CSUM_CRC16_CCITT)
		return bad(
			why,
			"checksum (%d) is not one of none, sum8, xor8, crc16_modbus, crc16_ccitt",
			(int)c->csum);
	if ((unsigned)c->csum_encoding > CSUM_HEX)
		return bad(why, "checksum_encoding (%d) is not binary or hex",
			   (int)c->csum_encoding);
	if (c->max_len < 1 || c->max_len > FRAMER_MAX_LEN)
		return bad(why, "max_len (%zu) is not between 1 and %d", c->max_len,
			   FRAMER_MAX_LEN);
	if (c->delim_len > FRAMER_MARK_MAX || c->start_len > FRAMER_MARK_MAX ||
	    c->end_len > FRAMER_MARK_MAX)
		return bad(why, "%s is longer than %d bytes",
			   c->delim_len > FRAMER_MARK_MAX   ? "delimiter"
			   : c->start_len > FRAMER_MARK_MAX ? "start"
							    : "end",
			   FRAMER_MARK_MAX);
	if (c->csum_sep_len > FRAMER_MARK_MAX)
		return bad(why, "csum_sep is longer than %d bytes", FRAMER_MARK_MAX);
	if (c->csum == CSUM_NONE && c->csum_from != 0)
		return bad(why, "csum_from (%zu) is set but checksum is none", c->csum_from);
	if (c->csum == CSUM_NONE && c->csum_sep_len != 0)
		return bad(why, "csum_sep is set but checksum is none");
	return 0;
}

/* A setting the mode ignores is a misunderstanding worth reporting, not skipping. */
static int check_unused(const struct framer_config *c, const char **why)
{
	const char *mode = frame_mode_names[c->mode];

	if (c->mode != FRAME_DELIMITER && c->delim_len != 0)
		return bad(why, "delimiter is set but mode is %s (only delimiter uses it)", mode);
	if (c->mode == FRAME_DELIMITER && c->start_len != 0)
		return bad(why,
			   "start is set but mode is delimiter (only fixed and start_end use it)");
	if (c->mode != FRAME_START_END && c->end_len != 0)
		return bad(why, "end is set but mode is %s (only start_end uses it)", mode);
	if (c->mode != FRAME_FIXED && c->fixed_len != 0)
		return bad(why, "fixed_len is set but mode is %s (only fixed uses it)", mode);
	if (c->mode != FRAME_START_END && c->has_len_field)
		return bad(why, "a length field is set but mode is %s (only start_end uses it)",
			   mode);
	return 0;
}

/* csum_from must leave the checksum something to cover in the longest body. */
static int check_csum_from(const struct framer_config *c, size_t longest_body, const char **why)
{
	if (c->csum_from > longest_body)
		return bad(why, "csum_from (%zu) is beyond the longest body (%zu bytes)",
			   c->csum_from, longest_body);
	return 0;
}

static int check_delimiter(const struct framer_config *c, const char **why)
{
	size_t least = c->delim_len + csum_tail(c);

	if (c->delim_len == 0)
		return bad(why, "delimiter is empty");
	if (c->max_len < least)
		return bad(why,
			   "max_len (%zu) is shorter than the delimiter and checksum (%zu bytes)",
			   c->max_len, least);
	return check_csum_from(c, c->max_len - least, why);
}

static int check_fixed(const struct framer_config *c, const char **why)
{
	size_t least = c->start_len + csum_tail(c);

	if (c->fixed_len == 0)
		return bad(why, "fixed_len is 0 (a fixed frame needs at least one byte)");
	if (c->fixed_len < least)
		return bad(why, "fixed_len (%zu) is shorter than start and checksum (%zu bytes)",
			   c->fixed_len, least);
	/* A frame that is only its start marker would carry nothing, and never end early. */
	if (c->fixed_len == c->start_len)
		return bad(why, "fixed_len (%zu) leaves nothing after start", c->fixed_len);
	if (c->max_len < c->fixed_len)
		return bad(why, "max_len (%zu) is shorter than fixed_len (%zu)", c->max_len,
			   c->fixed_len);
	return check_csum_from(c, c->fixed_len - least, why);
}

static int check_len_field(const struct framer_config *c, const char **why)
{
	if (c->len_size != 1 && c->len_size != 2)
		return bad(why, "len_size (%zu) is not 1 or 2", c->len_size);
	if (c->len_offset > c->max_len || c->start_len + c->len_offset + c->len_size > c->max_len)
		return bad(why, "len_offset (%zu) puts the length field beyond max_len (%zu)",
			   c->len_offset, c->max_len);
	if (c->len_adjust < -FRAMER_MAX_LEN || c->len_adjust > FRAMER_MAX_LEN)
		return bad(why, "len_adjust (%d) is not between -%d and %d", c->len_adjust,
			   FRAMER_MAX_LEN, FRAMER_MAX_LEN);
	return 0;
}

static int check_start_end(const struct framer_config *c, const char **why)
{
	size_t least = c->start_len + c->end_len + csum_tail(c);
	int err;

	if (c->start_len == 0)
		return bad(why, "start is empty");
	if (c->end_len == 0 && !c->has_len_field)
		return bad(why, "end is empty and there is no length field to end the frame");
	if (c->max_len < least)
		return bad(why, "max_len (%zu) is shorter than start, end and checksum (%zu bytes)",
			   c->max_len, least);
	if (c->has_len_field) {
		err = check_len_field(c, why);
		if (err != 0)
			return err;
	}
	return check_csum_from(c, c->max_len - least, why);
}

static int check_config(const struct framer_config *c, const char **why)
{
	int err = check_common(c, why);

	if (err == 0)
		err = check_unused(c, why);
	if (err != 0)
		return err;
	switch (c->mode) {
	case FRAME_DELIMITER:
		return check_delimiter(c, why);
	case FRAME_FIXED:
		return check_fixed(c, why);
	default:
		return check_start_end(c, why);
	}
}

static int initial_state(const struct framer_config *c)
{
	if (c->mode == FRAME_DELIMITER || (c->mode == FRAME_FIXED && c->start_len == 0))
		return ST_BODY;
	return ST_HUNT;
}

int framer_init(struct framer *f, const struct framer_config *cfg, const char **why)
{
	uint8_t *buf;
	int err;

	if (f == NULL || cfg == NULL)
		return bad(why, "no framer or no config");
	err = check_config(cfg, why);
	if (err != 0)
		return err;
	buf = malloc(cfg->max_len);
	if (buf == NULL) {
		if (why != NULL)
			*why = "out of memory for the frame buffer";
		return GD_ENOMEM;
	}
	memset(f, 0, sizeof(*f));
	f->cfg = *cfg;
	f->buf = buf;
	framer_reset(f);
	return 0;
}

void framer_free(struct framer *f)
{
	if (f == NULL)
		return;
	free(f->buf);
	f->buf = NULL;
	f->len = 0;
}

void framer_reset(struct framer *f)
{
	if (f == NULL)
		return;
	f->len = 0;
	f->want = 0;
	f->state = initial_state(&f->cfg);
}

/* Whether the bytes held end with 'mark'; the last byte is tried first, as it rarely matches. */
static bool tail_is(const struct framer *f, const uint8_t *mark, size_t mark_len)
{
	if (mark_len == 0 || f->len < mark_len || f->buf[f->len - 1] != mark[mark_len - 1])
		return false;
	return memcmp(f->buf + f->len - mark_len, mark, mark_len) == 0;
}

/* Checks the frame at frame[0..len) (head: start marker, tail: end marker or delimiter) and
 * hands out its body if the checksum is good; the frame held in buf, if any, is done with. */
static void finish_at(struct framer *f, const uint8_t *frame, size_t len, size_t head, size_t tail,
		      const struct framer_out *out)
{
	size_t inner = len - head - tail;
	size_t cw = csum_tail(&f->cfg);
	const uint8_t *body = frame + head;

	f->len = 0;
	if (inner < cw || !csum_ok(&f->cfg, body, inner - cw)) {
		f->stats.bad_checksum++;
		return;
	}
	f->stats.frames++;
	if (out->cb != NULL)
		out->cb(out->ctx, body, inner - cw);
}

/* Checks the frame held in buf (head: start marker, tail: end marker or delimiter), hands out
 * its body if the checksum is good. */
static void finish(struct framer *f, size_t head, size_t tail, const struct framer_out *out)
{
	finish_at(f, f->buf, f->len, head, tail, out);
}

/* Bytes an overlong frame's tail must keep to see a boundary that straddles reads. */
static size_t window_size(const struct framer_config *c)
{
	if (c->mode == FRAME_DELIMITER)
		return c->delim_len;
	return c->start_len > c->end_len ? c->start_len : c->end_len;
}

/* The frame held is too long: count it once, keep only the tail that may begin a boundary. */
static void overlong_begin(struct framer *f)
{
	size_t keep = window_size(&f->cfg) - 1;

	if (keep > f->len)
		keep = f->len;
	memmove(f->buf, f->buf + f->len - keep, keep);
	f->len = keep;
	f->state = ST_SKIP;
	f->stats.overlong++;
}

static void window_push(struct framer *f, uint8_t b)
{
	size_t keep = window_size(&f->cfg);

	if (f->len >= keep) {
		memmove(f->buf, f->buf + f->len - keep + 1, keep - 1);
		f->len = keep - 1;
	}
	f->buf[f->len++] = b;
}

/* Whether the window ends an overlong frame; if so, sets the state that follows. */
static bool skip_ends(struct framer *f)
{
	const struct framer_config *c = &f->cfg;

	if (c->mode == FRAME_DELIMITER) {
		if (!tail_is(f, c->delim, c->delim_len))
			return false;
		f->len = 0;
		f->state = ST_BODY;
	} else if (tail_is(f, c->end, c->end_len)) {
		f->len = 0;
		f->state = ST_HUNT;
	} else if (tail_is(f, c->start, c->start_len)) {
		memmove(f->buf, f->buf + f->len - c->start_len, c->start_len);
		f->len = c->start_len;
		f->state = ST_BODY;
	} else {
		return false;
	}
	return true;
}

static size_t skip(struct framer *f, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		window_push(f, p[i++]);
		if (skip_ends(f))
			break;
	}
	return i;
}

/* One byte that does not continue the partial start marker held: falls back to the longest
 * prefix of the marker that the held bytes and 'b' still end with; the rest is garbage. */
static void hunt_mismatch(struct framer *f, uint8_t b)
{
	const uint8_t *start = f->cfg.start;
	size_t k;

	for (k = f->len; k > 0; k--) {
		if (start[k - 1] == b && memcmp(start, f->buf + f->len - k + 1, k - 1) == 0)
			break;
	}
	f->stats.garbage += f->len + 1 - k;
	memcpy(f->buf, start, k);
	f->len = k;
}

static size_t hunt(struct framer *f, const uint8_t *p, size_t n)
{
	const struct framer_config *c = &f->cfg;
	size_t used = 1;

	if (f->len == 0) {
		const uint8_t *hit = memchr(p, c->start[0], n);

		if (hit == NULL) {
			f->stats.garbage += n;
			return n;
		}
		used = (size_t)(hit - p) + 1;
		f->stats.garbage += used - 1;
		f->buf[f->len++] = *hit;
	} else if (p[0] == c->start[f->len]) {
		f->buf[f->len++] = p[0];
	} else {
		hunt_mismatch(f, p[0]);
	}
	if (f->len == c->start_len) {
		f->state = ST_BODY;
		f->want = 0;
	}
	return used;
}

static size_t delim_body(struct framer *f, const uint8_t *p, size_t n, const struct framer_out *out)
{
	const struct framer_config *c = &f->cfg;
	const uint8_t *hit = memchr(p, c->delim[c->delim_len - 1], n);
	size_t take = hit != NULL ? (size_t)(hit - p) + 1 : n;
	size_t room = c->max_len - f->len;

	if (take > room) {
		/* No delimiter can end before 'hit', so this frame will not fit. */
		memcpy(f->buf + f->len, p, room);
		f->len += room;
		overlong_begin(f);
		return room;
	}
	if (f->len == 0 && hit != NULL && take >= c->delim_len &&
	    memcmp(hit + 1 - c->delim_len, c->delim, c->delim_len) == 0) {
		/* The whole frame lies in this read: checked where it is, not copied. */
		if (take > c->delim_len)
			finish_at(f, p, take, 0, c->delim_len, out);
		return take;
	}
	memcpy(f->buf + f->len, p, take);
	f->len += take;
	if (hit == NULL || !tail_is(f, c->delim, c->delim_len))
		return take;
	if (f->len == c->delim_len)
		f->len = 0; /* nothing before the delimiter: not a frame, counted nowhere */
	else
		finish(f, 0, c->delim_len, out);
	return take;
}

static size_t fixed_body(struct framer *f, const uint8_t *p, size_t n, const struct framer_out *out)
{
	const struct framer_config *c = &f->cfg;
	size_t take = c->fixed_len - f->len;

	if (take > n)
		take = n;
	memcpy(f->buf + f->len, p, take);
	f->len += take;
	if (f->len == c->fixed_len) {
		finish(f, c->start_len, 0, out);
		f->state = initial_state(c);
	}
	return take;
}

/* Start/end by markers only: the end marker closes the frame, a start marker restarts it. */
static size_t marks_body(struct framer *f, const uint8_t *p, size_t n, const struct framer_out *out)
{
	const struct framer_config *c = &f->cfg;

	for (size_t i = 0; i < n; i++) {
		if (f->len == c->max_len) {
			overlong_begin(f);
			return i;
		}
		f->buf[f->len++] = p[i];
		if (f->len >= c->start_len + c->end_len && tail_is(f, c->end, c->end_len)) {
			finish(f, c->start_len, c->end_len, out);
			f->state = ST_HUNT;
			return i + 1;
		}
		if (f->len >= 2 * c->start_len && tail_is(f, c->start, c->start_len)) {
			f->stats.garbage += f->len - c->start_len;
			memmove(f->buf, f->buf + f->len - c->start_len, c->start_len);
			f->len = c->start_len;
		}
	}
	return n;
}

static void bad_length(struct framer *f)
{
	f->stats.bad_length++;
	f->len = 0;
	f->want = 0;
	f->state = ST_HUNT;
}

/* The length field has arrived: sets 'want' to the whole frame's length, or drops the frame. */
static bool len_field_read(struct framer *f)
{
	const struct framer_config *c = &f->cfg;
	const uint8_t *field = f->buf + c->start_len + c->len_offset;
	long value = field[0];
	long header = (long)(c->len_offset + c->len_size);
	long inner;

	if (c->len_size == 2)
		value = c->len_little_endian ? field[0] | field[1] << 8 : field[0] << 8 | field[1];
	inner = header + value + c->len_adjust;
	if (inner < header || (size_t)inner > c->max_len - c->start_len - c->end_len) {
		bad_length(f);
		return false;
	}
	f->want = c->start_len + (size_t)inner + c->end_len;
	return true;
}

static void len_frame_end(struct framer *f, const struct framer_out *out)
{
	const struct framer_config *c = &f->cfg;

	if (c->end_len != 0 && memcmp(f->buf + f->len - c->end_len, c->end, c->end_len) != 0) {
		bad_length(f);
		return;
	}
	finish(f, c->start_len, c->end_len, out);
	f->want = 0;
	f->state = ST_HUNT;
}

/* Start/end with a length field: the length governs; markers inside are data. */
static size_t len_body(struct framer *f, const uint8_t *p, size_t n, const struct framer_out *out)
{
	const struct framer_config *c = &f->cfg;
	size_t goal = f->want != 0 ? f->want : c->start_len + c->len_offset + c->len_size;
	size_t take = goal - f->len;

	if (take > n)
		take = n;
	memcpy(f->buf + f->len, p, take);
	f->len += take;
	if (f->len < goal || (f->want == 0 && !len_field_read(f)))
		return take;
	if (f->len == f->want)
		len_frame_end(f, out);
	return take;
}

/* Consumes some of p[0..n) in the current state; returns how many bytes. Returns 0 only after
 * changing state, so framer_push always moves on. */
static size_t step(struct framer *f, const uint8_t *p, size_t n, const struct framer_out *out)
{
	if (f->state == ST_HUNT)
		return hunt(f, p, n);
	if (f->state == ST_SKIP)
		return skip(f, p, n);
	switch (f->cfg.mode) {
	case FRAME_DELIMITER:
		return delim_body(f, p, n, out);
	case FRAME_FIXED:
		return fixed_body(f, p, n, out);
	default:
		if (f->cfg.has_len_field)
			return len_body(f, p, n, out);
		return marks_body(f, p, n, out);
	}
}

void framer_push(struct framer *f, const uint8_t *data, size_t n, framer_cb cb, void *ctx)
{
	const struct framer_out out = { .cb = cb, .ctx = ctx };

	if (f == NULL || f->buf == NULL || data == NULL)
		return;
	f->stats.bytes += n;
	while (n > 0) {
		size_t used = step(f, data, n, &out);

		data += used;
		n -= used;
	}
}

/* Reads one character or escape at 's'; returns the characters used, 0 if it is a bad escape. */
static size_t parse_one(const char *s, uint8_t *out)
{
	int hi, lo;

	if (s[0] != '\\') {
		*out = (uint8_t)s[0];
		return 1;
	}
	switch (s[1]) {
	case 'r':
		*out = '\r';
		return 2;
	case 'n':
		*out = '\n';
		return 2;
	case 't':
		*out = '\t';
		return 2;
	case '\\':
		*out = '\\';
		return 2;
	case 'x':
		hi = gd_hex_digit(s[2]);
		lo = hi >= 0 ? gd_hex_digit(s[3]) : -1;
		if (lo < 0)
			return 0;
		*out = (uint8_t)(hi << 4 | lo);
		return 4;
	default:
		return 0;
	}
}

int framer_parse_bytes(const char *text, uint8_t *out, size_t cap)
{
	size_t n = 0;
	uint8_t b;

	if (text == NULL || out == NULL || text[0] == '\0')
		return -1;
	/* First pass checks, second writes: a bad text leaves 'out' untouched. */
	for (const char *s = text; *s != '\0'; n++) {
		size_t used = parse_one(s, &b);

		if (used == 0 || n == cap)
			return -1;
		s += used;
	}
	n = 0;
	while (*text != '\0')
		text += parse_one(text, &out[n++]);
	return (int)n;
}
