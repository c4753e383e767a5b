/* fuzz_slcan.c: libFuzzer target: any bytes from an SLCAN adapter, pushed in chunks, parse without
 * crashing, and every frame they yield formats to a line that parses back to the same frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../adapters/canbus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool msg_eq(const struct can_msg *a, const struct can_msg *b)
{
	return a->id == b->id && a->extended == b->extended && a->rtr == b->rtr &&
	       a->dlc == b->dlc && memcmp(a->data, b->data, sizeof(a->data)) == 0;
}

static void check_frame(const struct slcan_event *ev)
{
	const struct can_msg *m = &ev->msg;
	struct slcan_event back;
	char line[SLCAN_LINE_MAX];
	size_t n;

	if (m->dlc > CAN_MAX_DLEN || m->id > (m->extended ? CAN_EFF_MAX : CAN_SFF_MAX) ||
	    ev->timestamp_ms < -1 || ev->timestamp_ms > 59999)
		abort();
	for (unsigned i = m->rtr ? 0 : m->dlc; i < CAN_MAX_DLEN; i++) {
		if (m->data[i] != 0)
			abort(); /* bytes past the frame's data must not carry input */
	}
	n = slcan_format(m, line);
	if (n < 2 || n >= SLCAN_LINE_MAX || line[n - 1] != '\r' || line[n] != '\0')
		abort();
	if (slcan_parse_line(line, n - 1, &back) != SLCAN_FRAME || !msg_eq(&back.msg, m) ||
	    back.timestamp_ms != -1)
		abort();
}

static void on_event(void *ctx, const struct slcan_event *ev)
{
	size_t *events = ctx;

	(*events)++;
	if (ev->kind == SLCAN_FRAME)
		check_frame(ev);
	if (ev->kind == SLCAN_MALFORMED && memchr(ev->text, '\0', sizeof(ev->text)) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slcan_parser p;
	size_t events = 0, ends = 0, chunk;

	if (size == 0)
		return 0;
	/* The first byte picks the chunk size, so that lines split at every place. */
	chunk = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	slcan_init(&p);
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		slcan_push(&p, data + off, n, on_event, &events);
	}
	for (size_t i = 0; i < size; i++)
		ends += data[i] == '\r' || data[i] == 0x07;
	/* One event per CR or BEL, one more for a line torn by BEL; never more than that. */
	if (events != p.lines || events < ends || events > 2 * ends || p.malformed > p.lines ||
	    p.len > sizeof(p.line))
		abort();
	return 0;
}
