/* test_spool.c: the crash-safe spool with real parts: guardian killed (SIGKILL) at random moments,
 * with the broker up and away, loses no sample it read and allowed, and sends again only what the
 * broker had not acknowledged. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE	   "press-07"
#define COUNT_ADDR 500 /* plcsim --count-reads: every read of it serves a new value */
#define POINT	   "plc/n"
#define MAX_TAIL   2 /* values served to a connection after its last one that arrived */
#define MAX_RUNS   1024

static void setup(void)
{
	it_pki(DEVICE);
}

/* Generous: under the sanitizers a start of guardian takes several times as long. */
TestSuite(spool, .init = setup, .fini = it_teardown, .timeout = 600);

/* --- a seeded random source, so that a failing run can be repeated (SPOOL_SEED) ------------ */

static uint64_t rng_state;

static void rng_seed(void)
{
	const char *env = getenv("SPOOL_SEED");

	rng_state = env != NULL && *env ? strtoull(env, NULL, 0) : (uint64_t)h_wall_ms();
	if (rng_state == 0)
		rng_state = 1;
	fprintf(stderr, "spool: SPOOL_SEED=%" PRIu64 "\n", rng_state);
}

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

/* An integer in [lo, hi]. */
static int rng_in(int lo, int hi)
{
	return lo + (int)(rng() % (uint32_t)(hi - lo + 1));
}

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);

	return v != NULL && *v ? atoi(v) : dflt;
}

/* --- the bed: broker, subscriber, plcsim counting reads, guardian with a spool -------------- */

struct bed {
	int bport, mport;
	pid_t broker, sub, sim, gd;
	int sub_restarts;
	char site[512], spool[512], sub_out[512], reads[512];
};

static void broker_start(struct bed *b)
{
	/* The subscriber, mosquitto_sub, reconnects by itself (once a second) to its session;
	 * what arrives for it meanwhile waits in the broker. */
	b->broker = h_mosquitto(b->bport);
	cr_assert_gt(b->broker, 0, "mosquitto did not start again on %d", b->bport);
}

/*
 * mosquitto_sub reconnects by itself after a refused connection, but exits on some errors (a TLS
 * handshake cut by the broker's stop): started again in its persistent session, where what
 * arrived meanwhile waits. Only with the broker up.
 */
static void sub_ensure(struct bed *b)
{
	if (b->sub <= 0 || b->broker <= 0 || h_wait_exit(b->sub, 0) == -1)
		return;
	b->sub_restarts++;
	b->sub = h_subscribe(b->bport, "guardian/" DEVICE "/telemetry guardian/" DEVICE "/health",
			     b->sub_out, true);
	cr_assert_gt(b->sub, 0, "the subscriber did not start again");
}

/* SIGTERM: mosquitto saves its persistence (the subscriber's queued QoS 1 messages) on exit. */
static void broker_stop(struct bed *b)
{
	cr_assert_eq(h_stop(b->broker, 10000), 0, "mosquitto did not stop cleanly");
	b->broker = 0;
}

/*
 * The site: one Modbus TCP adapter "plc" reading the counting register every 'poll_ms', and
 * 'bulk' more registers (about 70 bytes of message each), the spool in <dir>/spool with the
 * policy 'sync' and small segments (so that some are sealed and compressed while the broker is
 * away). With 'bulk', the memory queue is the smallest allowed, 64 KiB, so that it fills and
 * the uplink loads from the spool.
 */
static void bed_up(struct bed *b, const char *sync, int poll_ms, int bulk, bool broker)
{
	char args[1024], adapters[8192], *text, *at, *patched;
	size_t len = 0;
	static const char anchor[] = "\"health_interval_ms\":1000";

	memset(b, 0, sizeof(*b));
	b->bport = h_free_port();
	b->mport = h_free_port();
	snprintf(b->spool, sizeof(b->spool), "%s", h_path("spool"));
	snprintf(b->sub_out, sizeof(b->sub_out), "%s", h_path("sub.out"));
	snprintf(b->reads, sizeof(b->reads), "%s", h_path("reads.txt"));
	if (broker) {
		broker_start(b);
		/* A persistent session: what is published while it is away waits for it. */
		b->sub = h_subscribe(b->bport,
				     "guardian/" DEVICE "/telemetry guardian/" DEVICE "/health",
				     b->sub_out, true);
		cr_assert_gt(b->sub, 0);
	}
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --bulk 100 --count-reads %d --read-log %s",
		 b->mport, COUNT_ADDR, b->reads);
	b->sim = h_plcsim(args, h_path("plcsim.log"));
	cr_assert_gt(b->sim, 0);
	len += (size_t)snprintf(
		adapters + len, sizeof(adapters) - len,
		"[{\"name\":\"plc\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\",\"port\":%d,"
		"\"poll_interval_ms\":%d,\"points\":[{\"name\":\"n\",\"address\":%d,"
		"\"type\":\"u32\"}",
		b->mport, poll_ms, COUNT_ADDR);
	for (int i = 0; i < bulk; i++)
		len += (size_t)snprintf(adapters + len, sizeof(adapters) - len,
					",{\"name\":\"bulk_register_%02d\",\"address\":%d}", i,
					1000 + i);
	snprintf(adapters + len, sizeof(adapters) - len, "]}]");
	cr_assert_lt(len, sizeof(adapters) - 8);
	snprintf(b->site, sizeof(b->site), "%s",
		 it_write_site(DEVICE, b->bport, adapters, it_allow_all, ""));
	/* The uplink's spool settings, into the uplink object it_write_site wrote. */
	text = h_read(b->site);
	cr_assert_not_null(text);
	at = strstr(text, anchor);
	cr_assert_not_null(at, "no %s in %s", anchor, text);
	at += strlen(anchor);
	cr_assert_geq(
		asprintf(&patched, "%.*s,%s\"spool\":{\"sync\":\"%s\",\"segment_bytes\":65536}%s",
			 (int)(at - text), text,
			 bulk > 0 ? "\"queue_max_bytes\":65536,\"max_message_bytes\":32768," : "",
			 sync, at),
		0);
	h_write(b->site, patched);
	free(patched);
	free(text);
}

/* The acknowledged seq in <spool>/cursor ("acked N"); 0 when there is none. */
static uint64_t read_cursor(const struct bed *b)
{
	char path[600], *text, *at;
	uint64_t v = 0;

	snprintf(path, sizeof(path), "%s/cursor", b->spool);
	text = h_read(path);
	if (text != NULL && (at = strstr(text, "\nacked ")) != NULL)
		v = strtoull(at + strlen("\nacked "), NULL, 10);
	free(text);
	return v;
}

/* --- ground truth: the values plcsim served, each with its connection ---------------------- */

struct served {
	uint32_t *value;
	unsigned long *conn;
	size_t n;
};

static void served_read(const char *file, struct served *s)
{
	char *text = h_read(file), *save = NULL;

	memset(s, 0, sizeof(*s));
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned long v, c;
		int unit;

		if (sscanf(line, "read %lu client %lu unit %d", &v, &c, &unit) != 3)
			continue;
		if ((s->n & (s->n - 1)) == 0) {
			size_t cap = s->n ? s->n * 2 : 1;

			s->value = realloc(s->value, cap * sizeof(*s->value));
			s->conn = realloc(s->conn, cap * sizeof(*s->conn));
			cr_assert(s->value != NULL && s->conn != NULL);
		}
		s->value[s->n] = (uint32_t)v;
		s->conn[s->n] = c;
		s->n++;
	}
	free(text);
}

static void served_free(struct served *s)
{
	free(s->value);
	free(s->conn);
}

/* --- what the subscriber received ----------------------------------------------------------- */

struct msg {
	uint64_t seq;
	char boot[32];
	bool redelivered; /* the broker's own resend to the subscriber (d1): not guardian's */
	uint32_t value;	  /* of POINT; 0 if none (null: a failed read) */
};

struct received {
	struct msg *m;
	size_t n;
};

static void received_read(const char *file, struct received *r)
{
	char *text = h_read(file), *save = NULL;
	bool dup_flag = false;

	memset(r, 0, sizeof(*r));
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *json = strstr(line, "/telemetry {");
		const cJSON *points, *p;
		cJSON *doc;
		struct msg *m;

		/* mosquitto_sub -d: "Client viewer received PUBLISH (d1, q1, r0, m7, ..." comes
		 * just before the message it announces. */
		if (strncmp(line, "Client ", 7) == 0) {
			if (strstr(line, "received PUBLISH (") != NULL)
				dup_flag = strstr(line, "received PUBLISH (d1") != NULL;
			continue;
		}
		if (json == NULL || strncmp(line, "guardian/", 9) != 0)
			continue;
		doc = cJSON_Parse(json + strlen("/telemetry "));
		if (doc == NULL)
			continue;
		if ((r->n & (r->n - 1)) == 0) {
			r->m = realloc(r->m, (r->n ? r->n * 2 : 1) * sizeof(*r->m));
			cr_assert_not_null(r->m);
		}
		m = &r->m[r->n++];
		memset(m, 0, sizeof(*m));
		m->seq = (uint64_t)it_json_num(doc, "seq");
		snprintf(m->boot, sizeof(m->boot), "%s", it_json_str(doc, "boot"));
		m->redelivered = dup_flag;
		dup_flag = false;
		points = cJSON_GetObjectItemCaseSensitive(doc, "points");
		cJSON_ArrayForEach (p, points) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "value");

			if (strcmp(it_json_str(p, "name"), POINT) == 0 && cJSON_IsNumber(v))
				m->value = (uint32_t)v->valuedouble;
		}
		cJSON_Delete(doc);
	}
	free(text);
}

/* Whether the subscriber has value 'v' of POINT. */
static bool received_value(const char *file, uint32_t v)
{
	struct received r;
	bool found = false;

	received_read(file, &r);
	for (size_t i = 0; i < r.n && !found; i++)
		found = r.m[i].value == v;
	free(r.m);
	return found;
}

/* --- one guardian start -------------------------------------------------------------------- */

struct run {
	char boot[32];
	int lost;	 /* connections lost during the run (each may resend what was in flight) */
	uint64_t cursor; /* the spool's cursor right after the run ended (its kill) */
	bool broker_at_end; /* the broker was up when it was killed */
};

static pid_t run_start(struct bed *b, int i)
{
	char log[64];

	snprintf(log, sizeof(log), "guardian-%03d.log", i);
	b->gd = h_guardian(b->site, h_path(log));
	cr_assert_gt(b->gd, 0);
	return b->gd;
}

/* The boot id and lost connections of run 'i', from its log. */
static void run_read_log(struct run *r, int i)
{
	char log[64], *text, *at;

	snprintf(log, sizeof(log), "guardian-%03d.log", i);
	text = h_read(h_path(log));
	r->boot[0] = '\0';
	if (text != NULL && (at = strstr(text, "boot id ")) != NULL)
		sscanf(at + strlen("boot id "), "%16[0-9a-f]", r->boot);
	r->lost = (int)h_count(h_path(log), " lost: ");
	free(text);
}

static void kill_run(struct bed *b)
{
	cr_assert_eq(kill(b->gd, SIGKILL), 0);
	cr_assert_neq(h_wait_exit(b->gd, 10000), -1, "guardian did not die of SIGKILL");
	b->gd = 0;
}

/* --- the check ------------------------------------------------------------------------------ */

struct tally {
	int kills, kills_away, broker_stops, sub_restarts;
	size_t served, received, missing, holes, tails, longest_tail, messages, duplicates,
		redelivered, lost_seqs, allowed_dups;
	int64_t ms;
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

struct pair {
	uint32_t value;
	uint64_t seq;
};

static int cmp_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;

	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* No value arrived in two messages with different seqs (sent again, it keeps its seq). */
static void check_one_seq_per_value(const struct received *r)
{
	struct pair *p = calloc(r->n + 1, sizeof(*p));
	size_t n = 0, bad = 0;

	cr_assert_not_null(p);
	for (size_t i = 0; i < r->n; i++) {
		if (r->m[i].value != 0)
			p[n++] = (struct pair){ r->m[i].value, r->m[i].seq };
	}
	qsort(p, n, sizeof(*p), cmp_pair);
	for (size_t i = 1; i < n; i++) {
		if (p[i].value == p[i - 1].value && p[i].seq != p[i - 1].seq && bad++ < 5)
			cr_log_error("value %" PRIu32 " arrived as seq %" PRIu64 " and %" PRIu64,
				     p[i].value, p[i - 1].seq, p[i].seq);
	}
	cr_expect_eq(bad, 0, "%zu values arrived under two seqs", bad);
	free(p);
}

static int run_of_boot(const struct run *runs, int nruns, const char *boot)
{
	for (int i = 0; i < nruns; i++) {
		if (strcmp(runs[i].boot, boot) == 0)
			return i;
	}
	return -1;
}

/*
 * Every value plcsim served arrived, but for at most MAX_TAIL at the end of each connection (a
 * read guardian never got to spool: it was killed first); no value arrived under two seqs or
 * that plcsim never served; a seq arrived more than once only where a start of guardian found it
 * above the cursor (or a lost connection had it in flight).
 */
static void check(const struct bed *b, const struct run *runs, int nruns, struct tally *t)
{
	struct served s;
	struct received r;
	uint32_t *got;
	uint64_t max_seq = 0;
	size_t ngot = 0, bad = 0;

	served_read(b->reads, &s);
	received_read(b->sub_out, &r);
	t->served = s.n;
	t->messages = r.n;
	check_one_seq_per_value(&r);

	/* Values received, each once per seq; every one served. */
	got = calloc(r.n + 1, sizeof(*got));
	cr_assert_not_null(got);
	for (size_t i = 0; i < r.n; i++) {
		if (r.m[i].seq > max_seq)
			max_seq = r.m[i].seq;
		if (r.m[i].value != 0)
			got[ngot++] = r.m[i].value;
	}
	qsort(got, ngot, sizeof(*got), cmp_u32);
	{
		size_t uniq = 0;

		for (size_t i = 0; i < ngot; i++) {
			if (uniq == 0 || got[uniq - 1] != got[i])
				got[uniq++] = got[i];
		}
		ngot = uniq;
	}
	t->received = ngot;
	for (size_t i = 0; i < ngot; i++) {
		bool known = false;

		for (size_t j = 0; j < s.n && !known; j++)
			known = s.value[j] == got[i];
		if (!known && bad++ < 5)
			cr_log_error("value %" PRIu32 " arrived but plcsim never served it",
				     got[i]);
	}
	cr_expect_eq(bad, 0, "%zu values arrived that plcsim never served", bad);

	/* Per connection: what arrived is a prefix of what was served; the rest a short tail. */
	bad = 0;
	for (size_t i = 0; i < s.n;) {
		size_t j = i, last = SIZE_MAX, holes = 0;

		while (j < s.n && s.conn[j] == s.conn[i])
			j++;
		for (size_t k = i; k < j; k++) {
			if (bsearch(&s.value[k], got, ngot, sizeof(*got), cmp_u32) != NULL)
				last = k;
		}
		for (size_t k = i; last != SIZE_MAX && k < last; k++) {
			if (bsearch(&s.value[k], got, ngot, sizeof(*got), cmp_u32) == NULL) {
				holes++;
				if (bad++ < 10)
					cr_log_error("value %" PRIu32
						     " (connection %lu) is missing "
						     "though later ones of its connection arrived",
						     s.value[k], s.conn[k]);
			}
		}
		{
			size_t tail = last == SIZE_MAX ? j - i : j - last - 1;

			t->missing += holes + tail;
			t->holes += holes;
			t->tails += tail > 0;
			if (tail > t->longest_tail)
				t->longest_tail = tail;
			cr_expect_leq(
				tail, MAX_TAIL,
				"connection %lu: the last %zu of its %zu values never arrived",
				s.conn[i], tail, j - i);
		}
		i = j;
	}
	cr_expect_eq(bad, 0, "%zu values lost in the middle of a connection", bad);

	/*
	 * Each seq: one boot; sent again only by a start that found it above the cursor, or over
	 * a lost connection of a run that held it. The broker's own redeliveries (d1) aside.
	 */
	bad = 0;
	{
		uint32_t *copies = calloc(max_seq + 1, sizeof(*copies));
		uint32_t *value = calloc(max_seq + 1, sizeof(*value));
		int *origin = calloc(max_seq + 1, sizeof(*origin));

		cr_assert(copies != NULL && value != NULL && origin != NULL);
		for (size_t i = 0; i < r.n; i++) {
			struct msg *m = &r.m[i];
			int o = run_of_boot(runs, nruns, m->boot);

			cr_assert_neq(o, -1, "seq %" PRIu64 ": boot id %s of no start", m->seq,
				      m->boot);
			if (copies[m->seq] > 0) {
				cr_expect_eq(origin[m->seq], o,
					     "seq %" PRIu64 " arrived from two starts (%d and %d)",
					     m->seq, origin[m->seq], o);
				cr_expect_eq(value[m->seq], m->value,
					     "seq %" PRIu64 " arrived with two values", m->seq);
				t->duplicates++;
				if (m->redelivered) {
					t->redelivered++;
					continue;
				}
			}
			origin[m->seq] = o;
			value[m->seq] = m->value;
			copies[m->seq]++;
		}
		for (uint64_t q = 1; q <= max_seq; q++) {
			size_t allowed = 0;

			if (copies[q] == 0) {
				t->lost_seqs++;
				if (bad++ < 10)
					cr_log_error("seq %" PRIu64
						     " never arrived (seqs up to %" PRIu64 " did)",
						     q, max_seq);
				continue;
			}
			for (int k = origin[q]; k < nruns; k++) {
				bool held = k == origin[q] || runs[k - 1].cursor < q;

				allowed += held ? (size_t)runs[k].lost : 0;
				allowed += k > origin[q] && held;
			}
			t->allowed_dups += allowed;
			if (copies[q] - 1 > allowed && bad++ < 10)
				cr_log_error("seq %" PRIu64 " (from start %d) arrived %" PRIu32
					     " times; only %zu resends had it unacknowledged",
					     q, origin[q], copies[q], allowed);
		}
		free(copies);
		free(value);
		free(origin);
	}
	cr_expect_eq(bad, 0,
		     "%zu seqs missing or sent again after the broker's acknowledgement was on "
		     "disk",
		     bad);
	free(got);
	free(r.m);
	served_free(&s);
}

static void report(const char *what, const struct tally *t)
{
	char line[600];

	snprintf(
		line, sizeof(line),
		"spool %s: %d kills (%d with the broker away, %d broker stops); %zu samples "
		"served, %zu received, %zu missing (tails of %zu connections, longest %zu; %zu "
		"mid-stream); %zu messages, %zu duplicates (%zu the broker's redeliveries; %zu "
		"resends allowed by the cursors), %zu seqs missing; subscriber restarted %d times; "
		"%.1f s",
		what, t->kills, t->kills_away, t->broker_stops, t->served, t->received, t->missing,
		t->tails, t->longest_tail, t->holes, t->messages, t->duplicates, t->redelivered,
		t->allowed_dups, t->lost_seqs, t->sub_restarts, (double)t->ms / 1000);
	cr_log_info("%s", line);
	fprintf(stderr, "%s\n", line);
}

/*
 * 'kills' starts of guardian, each killed after 50 to 600 ms (a few sooner, a few later). The
 * broker goes away now and then ('away' in a hundred iterations start an outage, which lasts 1 to 6
 * iterations), between runs or in the middle of one. Then one last start with the broker up drains
 * the spool and stops cleanly, and everything is checked against plcsim's log.
 */
static void kill_loop(const char *sync, int kills, int away, struct tally *t)
{
	struct run *runs = calloc(MAX_RUNS, sizeof(*runs));
	int64_t t0 = h_ms();
	int outage = 0; /* iterations left with the broker away */
	struct bed b;
	int n = 0;

	cr_assert_not_null(runs);
	cr_assert_lt(kills, MAX_RUNS - 1);
	memset(t, 0, sizeof(*t));
	rng_seed();
	bed_up(&b, sync, 20, 40, true);
	for (int i = 0; i < kills; i++, n++) {
		int pick = rng_in(0, 99);
		/* Mostly 50 to 600 ms; now and then during the start, or long enough for a sealed
		 * segment to be compressed (a second) while the broker is away. */
		int ms = pick < 5    ? rng_in(5, 50)
			 : pick < 10 ? rng_in(1200, 2000)
				     : rng_in(50, 600);
		int split = rng_in(0, ms);
		bool stop_mid = false, start_mid = false;

		if (b.broker > 0 && outage == 0 && rng_in(0, 99) < away) {
			outage = rng_in(1, 6);
			t->broker_stops++;
			if (rng_in(0, 1))
				broker_stop(&b);
			else
				stop_mid = true;
		} else if (b.broker == 0 && outage > 0 && --outage == 0) {
			if (rng_in(0, 1))
				broker_start(&b);
			else
				start_mid = true;
		}
		sub_ensure(&b);
		run_start(&b, i);
		h_sleep_ms(split);
		if (stop_mid)
			broker_stop(&b);
		if (start_mid)
			broker_start(&b);
		h_sleep_ms(ms - split);
		runs[i].broker_at_end = b.broker > 0;
		kill_run(&b);
		runs[i].cursor = read_cursor(&b);
		t->kills++;
		t->kills_away += !runs[i].broker_at_end;
	}
	/* The last start, with the broker: everything held goes out, oldest first. */
	if (b.broker == 0)
		broker_start(&b);
	{
		struct served s;
		unsigned long before = 0;
		uint32_t first_new = 0;
		int64_t end = h_ms() + 120000;
		size_t stopped = h_count(b.sub_out, "\"reason\":\"stopped\"");

		served_read(b.reads, &s);
		for (size_t i = 0; i < s.n; i++)
			before = s.conn[i] > before ? s.conn[i] : before;
		served_free(&s);
		run_start(&b, n);
		/* A value read by this start arriving means all that was held before arrived. */
		while (first_new == 0 && h_ms() < end) {
			h_sleep_ms(100);
			served_read(b.reads, &s);
			for (size_t i = 0; i < s.n && first_new == 0; i++)
				first_new = s.conn[i] > before ? s.value[i] : 0;
			served_free(&s);
		}
		cr_assert_neq(first_new, 0, "the last start read nothing");
		while (!received_value(b.sub_out, first_new) && h_ms() < end) {
			sub_ensure(&b);
			h_sleep_ms(200);
		}
		if (!received_value(b.sub_out, first_new)) {
			char log[64];

			snprintf(log, sizeof(log), "guardian-%03d.log", n);
			h_sh("echo '== the last start:'; tail -n 25 '%s'; echo '== the "
			     "subscriber:'; "
			     "tail -n 6 '%s'; ls -l '%s' >&2",
			     h_path(log), b.sub_out, b.spool);
			cr_assert_fail("the spool did not drain in 120 s (value %" PRIu32
				       " of the last start never arrived; above: its log)",
				       first_new);
		}
		cr_assert_eq(h_stop(b.gd, 20000), 0, "guardian did not stop cleanly");
		cr_assert_eq(h_wait_count(b.sub_out, "\"reason\":\"stopped\"", stopped + 1, 10000),
			     0, "no offline health after the stop");
		runs[n].cursor = read_cursor(&b);
		n++;
	}
	for (int i = 0; i < n; i++)
		run_read_log(&runs[i], i);
	check(&b, runs, n, t);
	t->ms = h_ms() - t0;
	t->sub_restarts = b.sub_restarts;
	report(sync, t);
	free(runs);
}

/* --- the tests ------------------------------------------------------------------------------ */

/*
 * The promise: 100 SIGKILLs at random moments, broker up and broker away; no sample
 * read and allowed is missing at the subscriber, duplicates only of unacknowledged messages.
 * SPOOL_KILLS sets the number (a sanitizer run may want fewer), SPOOL_SEED repeats a run.
 */
Test(spool, no_sample_lost_across_100_kills)
{
	struct tally t;
	int kills = env_int("SPOOL_KILLS", 100);

	kill_loop("batch", kills, 15, &t);
	cr_expect_gt(t.kills_away, 0, "no kill with the broker away: raise the share");
	cr_expect_gt(t.received, (size_t)kills, "hardly any samples: the bed is not working");
}

/* A crash of the process loses nothing whatever the sync policy: 'always' and 'none' too. */
Test(spool, sync_always_survives_kills)
{
	struct tally t;

	kill_loop("always", env_int("SPOOL_KILLS", 100) / 8 + 3, 25, &t);
}

Test(spool, sync_none_survives_kills)
{
	struct tally t;

	kill_loop("none", env_int("SPOOL_KILLS", 100) / 8 + 3, 25, &t);
}

/* The "uplink":{"spool":{...}} object of a health document's text; NULL if it has none. *root
 * receives the document, for cJSON_Delete. */
static const cJSON *health_spool(const char *json, size_t len, cJSON **root)
{
	const cJSON *uplink;

	*root = cJSON_ParseWithLength(json, len);
	uplink = cJSON_GetObjectItemCaseSensitive(*root, "uplink");
	return cJSON_GetObjectItemCaseSensitive(uplink, "spool");
}

/* Every online health document in 'file', in order: the spool's records and disk bytes (-1 when
 * absent). Returns how many. */
static size_t health_docs(const char *file, double *records, double *disk, size_t cap)
{
	char *text = h_read(file);
	size_t n = 0;

	for (char *p = text; p != NULL && (p = strstr(p, "/health {")) != NULL; p++) {
		char *json = strchr(p, '{'), *eol = strchr(json, '\n');
		size_t len = eol != NULL ? (size_t)(eol - json) : strlen(json);
		cJSON *doc;
		const cJSON *sp = health_spool(json, len, &doc);

		if (strcmp(it_json_str(doc, "state"), "online") == 0 && n < cap) {
			records[n] = it_json_num(sp, "records");
			disk[n] = it_json_num(sp, "disk_bytes");
			n++;
		}
		cJSON_Delete(doc);
	}
	free(text);
	return n;
}

/*
 * What a start finds in the spool goes first: guardian runs with the broker away, stops, and the
 * next start (the broker back) logs "messages from before" and sends them before its own, in
 * seq order, none missing. Health says what the spool holds, in the retained document too.
 */
Test(spool, backlog_from_before_goes_first_and_health_shows_the_spool)
{
	struct bed b;
	struct received r;
	char log[64], *text, *at, boot1[32] = "", boot2[32] = "";
	unsigned long long held = 0, from = 0, to = 0, stopping = 0;
	double records[256], disk[256];
	size_t nhealth, first_of_2 = SIZE_MAX;
	struct served s;
	pid_t retained;

	bed_up(&b, "batch", 20, 40, false);
	/* Broker away: 2.5 s of telemetry (some 400 kB) waits in the spool, in segments sealed
	 * and compressed a second later. */
	run_start(&b, 0);
	h_sleep_ms(2500);
	cr_assert_eq(h_stop(b.gd, 10000), 0, "guardian did not stop cleanly");
	cr_expect_eq(h_sh("ls '%s' | grep -q '\\.zst$'", b.spool), 0,
		     "no compressed segment in the spool after 2.5 s with the broker away");
	snprintf(log, sizeof(log), "%s", h_path("guardian-000.log"));
	text = h_read(log);
	at = text != NULL ? strstr(text, "stopping with ") : NULL;
	cr_assert_not_null(at, "no \"stopping with N messages in the spool\" in:\n%s", text);
	sscanf(at, "stopping with %llu messages in the spool", &stopping);
	cr_expect_gt(stopping, 10);
	free(text);

	/* The broker and the viewer back; the next start sends what the first left. */
	broker_start(&b);
	b.sub = h_subscribe(b.bport, "guardian/" DEVICE "/telemetry guardian/" DEVICE "/health",
			    b.sub_out, true);
	cr_assert_gt(b.sub, 0);
	run_start(&b, 1);
	snprintf(log, sizeof(log), "%s", h_path("guardian-001.log"));
	cr_assert_eq(h_wait_contains(log, "messages from before", 15000), 0,
		     "no \"messages from before\" at the start:\n%s", h_read(log));
	text = h_read(log);
	at = strstr(text, "spool ");
	cr_assert_not_null(at);
	cr_expect_eq(sscanf(strstr(at, ": ") + 2, "%llu messages from before (seq %llu to %llu)",
			    &held, &from, &to),
		     3, "%s", at);
	free(text);
	cr_expect_eq(held, stopping, "the stop left %llu, the start found %llu", stopping, held);
	cr_expect_eq(from, 1);
	cr_expect_eq(to, held);

	/* New telemetry of this start arrives: the backlog did before it. */
	it_wait_messages(b.sub_out, (size_t)held + 5, 20000);
	/* A viewer that comes now gets the retained health of this start, spool counters in it. */
	h_sleep_ms(1200);
	retained =
		h_subscribe(b.bport, "guardian/" DEVICE "/health", h_path("retained.out"), false);
	cr_assert_gt(retained, 0);
	cr_assert_eq(h_wait_contains(h_path("retained.out"), "/health {", 5000), 0);
	text = h_read(h_path("retained.out"));
	cr_expect_not_null(strstr(text, "received PUBLISH (d0, q1, r1"), "not retained:\n%s", text);
	{
		char *json = strchr(strstr(text, "/health {"), '{'), *eol = strchr(json, '\n');
		cJSON *doc;
		const cJSON *sp =
			health_spool(json, eol ? (size_t)(eol - json) : strlen(json), &doc);

		cr_expect_not_null(sp, "no uplink.spool in the retained health: %.*s",
				   (int)(eol ? eol - json : 200), json);
		cr_expect_geq(it_json_num(sp, "records"), 0);
		cr_expect_geq(it_json_num(sp, "disk_bytes"), 0);
		cr_expect_geq(it_json_num(sp, "acked_seq"), (double)held);
		cJSON_Delete(doc);
	}
	free(text);
	cr_assert_eq(h_stop(b.gd, 10000), 0, "guardian did not stop cleanly");
	h_wait_contains(b.sub_out, "\"reason\":\"stopped\"", 10000);

	/* The first online health after the connect showed the backlog; later ones the drain. */
	nhealth = health_docs(b.sub_out, records, disk, 256);
	cr_assert_geq(nhealth, 2, "%zu online health documents", nhealth);
	cr_expect_gt(records[0], 0, "the first health after the connect: spool records %g",
		     records[0]);
	cr_expect_gt(disk[0], 0, "the first health after the connect: spool disk_bytes %g",
		     disk[0]);
	cr_expect_leq(records[nhealth - 1], 5, "the last health: spool records %g (not drained)",
		      records[nhealth - 1]);

	/* Arrival order: seq 1, 2, 3, ... with no gap; the first start's all before the second's.
	 */
	received_read(b.sub_out, &r);
	cr_assert_gt(r.n, held);
	snprintf(boot1, sizeof(boot1), "%s", r.m[0].boot);
	for (size_t i = 0; i < r.n; i++) {
		cr_assert_eq(r.m[i].seq, i + 1, "message %zu has seq %" PRIu64, i, r.m[i].seq);
		if (strcmp(r.m[i].boot, boot1) != 0 && first_of_2 == SIZE_MAX) {
			first_of_2 = i;
			snprintf(boot2, sizeof(boot2), "%s", r.m[i].boot);
		}
		if (first_of_2 != SIZE_MAX)
			cr_assert_str_eq(r.m[i].boot, boot2,
					 "message %zu: the first start's after "
					 "the second's",
					 i);
	}
	cr_expect_eq(first_of_2, held, "the first start's messages: %zu, it left %llu", first_of_2,
		     held);
	/* Every value the first start read is there (a clean stop leaves at most the read in
	 * progress). */
	served_read(b.reads, &s);
	{
		size_t first_conn = 0;

		for (size_t i = 0; i < s.n && s.conn[i] == s.conn[0]; i++)
			first_conn++;
		cr_expect_leq(first_conn - first_of_2, 1, "the first start read %zu, sent %zu",
			      first_conn, first_of_2);
		for (size_t i = 0; i < first_of_2 && i < first_conn; i++)
			cr_expect_eq(r.m[i].value, s.value[i], "message %zu", i);
	}
	served_free(&s);
	free(r.m);
}
