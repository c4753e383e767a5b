/* canbus.h: CAN frames, DBC-style signal extraction, J1939 IDs and the SLCAN (Lawicel) line
 * protocol; pure, no I/O. */
#ifndef CANBUS_H
#define CANBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CAN_MAX_DLEN 8		 /* classic CAN */
#define CAN_SFF_MAX  0x7FFu	 /* largest 11-bit identifier */
#define CAN_EFF_MAX  0x1FFFFFFFu /* largest 29-bit identifier */

struct can_msg {
	uint32_t id;   /* 11 or 29 bits */
	bool extended; /* 29-bit identifier */
	bool rtr;      /* remote request: no data */
	uint8_t dlc;   /* 0..8 */
	uint8_t data[CAN_MAX_DLEN];
};

/*
 * A signal as a DBC file describes it (SG_ line). Bits are numbered as in DBC:
 * bit k is bit (k % 8) of byte (k / 8), bit 0 the least significant of byte 0.
 * Intel (little-endian, DBC "@1"): start_bit is the least significant bit and
 * the signal runs upward. Motorola (big-endian, DBC "@0"): start_bit is the
 * most significant bit; the signal runs toward less significant bits, and on
 * from bit 7 of the next byte after bit 0 of a byte ("sawtooth").
 */
struct can_signal {
	uint16_t start_bit; /* 0..63 */
	uint16_t length;    /* 1..64 */
	bool big_endian;    /* Motorola */
	bool is_signed;	    /* two's complement */
};

/*
 * Checks that the signal fits 'dlc' bytes (and a 64-bit frame at all):
 * returns true if every bit it spans lies in data[0..dlc).
 */
bool can_signal_fits(const struct can_signal *s, uint8_t dlc);
/* The raw bits of 's' from 'data' (the caller checked can_signal_fits), zero-extended. */
uint64_t can_signal_raw(const struct can_signal *s, const uint8_t *data);
/* The raw value as a signed integer when s->is_signed (sign-extended from s->length bits). */
int64_t can_signal_signed(const struct can_signal *s, uint64_t raw);
/* The reverse of can_signal_raw: stores the low s->length bits of 'raw' in 'data'. */
void can_signal_put(const struct can_signal *s, uint8_t *data, uint64_t raw);

/*
 * J1939 over a 29-bit identifier: priority (3 bits), PGN (18 bits: EDP, DP, PF,
 * PS), source address (8 bits). When PF < 240 (PDU1) the PS byte is a
 * destination address and is not part of the PGN (it reads as 0 in 'pgn').
 */
struct j1939_id {
	uint8_t priority;
	uint32_t pgn;
	uint8_t source;
	uint8_t dest; /* PDU1 only; 0xFF (global) for PDU2 */
};
void j1939_decode(uint32_t id29, struct j1939_id *out);
uint32_t j1939_encode(const struct j1939_id *in);

/* ---- SLCAN (Lawicel) ---------------------------------------------------------------------- */

/* What one line from an SLCAN adapter is. */
enum slcan_kind {
	SLCAN_FRAME, /* tIIIL.., TIIIIIIIIL.., rIIIL, RIIIIIIIIL, with optional 4-digit timestamp */
	SLCAN_OK,    /* an empty line (CR): the last command was accepted */
	SLCAN_ERROR, /* BEL (0x07): the last command was refused */
	SLCAN_TX_ACK,	 /* "z" or "Z": a transmitted frame was accepted */
	SLCAN_VERSION,	 /* "Vhhss": text in 'text' */
	SLCAN_SERIAL,	 /* "Nxxxx" */
	SLCAN_STATUS,	 /* "Fxx": status flags in 'status' */
	SLCAN_MALFORMED, /* anything else, or a frame line that does not parse */
};

struct slcan_event {
	enum slcan_kind kind;
	struct can_msg msg; /* SLCAN_FRAME */
	int timestamp_ms;   /* SLCAN_FRAME: 0..59999 when the line had one, else -1 */
	uint8_t status;	    /* SLCAN_STATUS */
	char text[32];	    /* VERSION, SERIAL; MALFORMED: the start of the line, printable */
};

#define SLCAN_LINE_MAX 40 /* "T" + 8 id + 1 dlc + 16 data + 4 timestamp, with room */

struct slcan_parser {
	char line[SLCAN_LINE_MAX];
	size_t len;
	bool overflow; /* the current line was too long; it ends as one SLCAN_MALFORMED */
	uint64_t lines, malformed;
};

typedef void (*slcan_cb)(void *ctx, const struct slcan_event *ev);

/* Zeroes 'p'. */
void slcan_init(struct slcan_parser *p);
/*
 * Pushes bytes from the adapter; calls 'cb' once per complete line (ended by
 * CR; LF is ignored) or BEL. Never fails; a line longer than SLCAN_LINE_MAX
 * is one SLCAN_MALFORMED event. Lowercase hex digits are accepted.
 */
void slcan_push(struct slcan_parser *p, const uint8_t *data, size_t n, slcan_cb cb, void *ctx);
/* Parses one line without its CR (used by slcan_push); returns ev->kind. */
enum slcan_kind slcan_parse_line(const char *line, size_t len, struct slcan_event *ev);
/* Writes the SLCAN line for 'm' with its CR and NUL into 'out' (at least SLCAN_LINE_MAX bytes);
 * returns the length without the NUL. Uppercase hex. */
size_t slcan_format(const struct can_msg *m, char *out);
/* The "Sn" command for a standard bitrate (10k..1M) into 'out' ("S6\r" for 500000); returns
 * its length, or -1 for a bitrate SLCAN has no code for. */
int slcan_bitrate_cmd(int bitrate, char *out, size_t cap);

/* ---- DBC import --------------------------------------------------------------------------- */

struct dbc_options {
	bool short_names; /* name points "<signal>" instead of "<message>.<signal>" */
	bool j1939;	  /* match extended frames on PGN and source address ("j1939") not "id" */
};

/*
 * Reads a DBC file from 'in' and writes to 'out' the equivalent guardian CAN
 * point list (a JSON object {"points":[...]}, the format README.md documents
 * for CAN adapters), one point per signal. Every line it does not use is
 * reported on 'err' as "FILE:LINE: skipped: <why>"; known but unused sections
 * (BU_, CM_, VAL_, BA_DEF_, BA_, ...) are summarised once per kind with a
 * count instead. 'file' names the input in messages. Returns the number of
 * signals written, or -1 when a BO_ or SG_ line has a syntax error (named on
 * 'err' with file and line; nothing is written to 'out' then).
 */
int dbc_import(FILE *in, const char *file, FILE *out, FILE *err, const struct dbc_options *opt);

#endif
