/* report.c: failure reports to the cloud: a durable queue of JSON documents in
 * <state_dir>/reports/, deduplicated while they wait, rate-limited per kind, sent with QoS 1 on
 * guardian/<device>/report and deleted only once the broker has acknowledged them. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../adapters/adapter.h"
#include "../base/base.h"
#include "../base/json.h"
#include "../uplink/uplink.h"
#include "report.h"

#define SUBSYS		"report"
#define HOUR_MS		3600000LL
#define TICK_MS		1000
#define RATE_KINDS	32    /* kinds whose rate is kept; beyond, the one unused longest goes */
#define WRITE_WINDOWS	64    /* points whose refused writes are summed at once */
#define DOWN_GRACE_MS	2000  /* a link down this long is a fault, not a reconnect */
#define START_GRACE_MS	10000 /* a link that has not come up this long after the start */
#define ACK_RING	1024  /* acknowledgements waiting for the thread */
#define DOC_MAX		8192  /* one document: every string escaped at worst */
#define SUPPRESSED_KIND "suppressed"

/* One report on disk, waiting for the broker. */
struct pending {
	struct pending *next; /* in seq order */
	uint64_t seq;
	char kind[REPORT_KIND_MAX], key[REPORT_KEY_MAX], text[REPORT_TEXT_MAX];
	char boot[17]; /* of the run that made it */
	int64_t first_ts, last_ts;
	uint64_t count;
	uint32_t version;      /* changes with each update: what the file holds */
	uint32_t sent_version; /* of the last send */
	bool inflight;	       /* sent, no word yet */
	bool acked;	       /* the broker has sent_version */
};

/* The new reports of one kind in the last hour, oldest first (a ring of per_hour). */
struct kind_rate {
	char kind[REPORT_KIND_MAX];
	int64_t *ts;
	size_t head, n;
	int64_t used_ms;
};

/* Refused writes of one point since its window started. */
struct write_window {
	bool used;
	char point[REPORT_KEY_MAX];
	char reason[REPORT_TEXT_MAX / 2];
	int64_t start_ms, first_ms, last_ms; /* first_ms: of the first not yet reported */
	uint64_t unreported;
};

struct adapter_watch {
	bool seen_up, down, reported;
	int64_t down_since_ms;
	char fault[192];
};

struct ack {
	uint64_t id;
	bool acked;
};

struct reporter {
	char *state_dir, *dir, *device_id;
	char boot[17];
	struct uplink *uplink;
	report_send_fn *send;
	void *send_ctx;
	int per_hour;
	int64_t (*now_ms)(void);
	int64_t started_ms;

	pthread_mutex_t lock; /* everything below but the acks; held across file writes */
	pthread_cond_t cond;
	struct pending *head;
	size_t npending;
	uint64_t seq; /* the last given out */
	uint64_t sent, suppressed;
	bool write_failed; /* logged once until a write works again */
	struct kind_rate rates[RATE_KINDS];
	struct write_window windows[WRITE_WINDOWS];
	struct adapter *const *adapters;
	size_t nadapters;
	struct adapter_watch *watch;
	pthread_t thread;
	bool running, stop, kick;
	bool marked_running; /* run-state says "running" for this run: a clean stop says so */

	/* Acknowledgements from Paho's thread: only ever held for a few stores. */
	pthread_mutex_t ack_lock;
	struct ack acks[ACK_RING];
	size_t ack_head, nacks;
	uint64_t acks_lost;
};

static int64_t clock_now(const struct reporter *r)
{
	return r->now_ms != NULL ? r->now_ms() : gd_now_ms();
}

/* "2025-11-21T17:02:03Z" */
static void utc_text(int64_t ms, char out[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&s, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "%lld ms", (long long)ms);
}

static bool kind_valid(const char *kind)
{
	size_t n = kind != NULL ? strlen(kind) : 0;

	if (n == 0 || n >= REPORT_KIND_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = kind[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* Copies 's' into 'out', cut at a UTF-8 character boundary so that the cut stays readable. */
static void copy_cut(char *out, size_t cap, const char *s)
{
	size_t n = 0, len = s != NULL ? strlen(s) : 0;

	while (n < len) {
		size_t k = utf8_seq_len((const unsigned char *)s + n);

		if (k == 0)
			k = 1; /* the JSON writer shows it as U+FFFD */
		if (n + k >= cap)
			break;
		n += k;
	}
	memcpy(out, s != NULL ? s : "", n);
	out[n] = '\0';
}

/* The file of report 'seq'. */
static void pending_path(const struct reporter *r, uint64_t seq, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%020llu.json", r->dir, (unsigned long long)seq);
}

static size_t doc_build(const struct reporter *r, const struct pending *p, char *buf, size_t cap)
{
	struct jw w;

	jw_init(&w, buf, cap);
	jw_object(&w);
	jw_key(&w, "device");
	jw_string(&w, r->device_id);
	jw_key(&w, "boot");
	jw_string(&w, p->boot);
	jw_key(&w, "kind");
	jw_string(&w, p->kind);
	jw_key(&w, "key");
	jw_string(&w, p->key);
	jw_key(&w, "text");
	jw_string(&w, p->text);
	jw_key(&w, "first_ts");
	jw_int(&w, p->first_ts);
	jw_key(&w, "last_ts");
	jw_int(&w, p->last_ts);
	jw_key(&w, "count");
	jw_uint(&w, p->count);
	jw_key(&w, "seq");
	jw_uint(&w, p->seq);
	jw_end(&w);
	return jw_finish(&w);
}

/* Writes p's file (replacing it). 0 or GD_EIO (logged once until writes work again). */
static int write_pending_locked(struct reporter *r, const struct pending *p)
{
	char doc[DOC_MAX], path[PATH_MAX];
	size_t n = doc_build(r, p, doc, sizeof(doc));

	pending_path(r, p->seq, path, sizeof(path));
	if (n == 0 || gd_write_file_atomic(path, doc, n, 0600) != 0) {
		if (!r->write_failed)
			log_warn(SUBSYS, "cannot write the %s report %s", p->kind, path);
		r->write_failed = true;
		return GD_EIO;
	}
	r->write_failed = false;
	return 0;
}

/* The last seq given out, kept so that numbers go on across restarts when all was sent. */
static void write_seq_locked(struct reporter *r)
{
	char path[PATH_MAX], text[32];
	int n = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)r->seq);

	snprintf(path, sizeof(path), "%s/seq", r->dir);
	if (gd_write_file_atomic(path, text, (size_t)n, 0600) != 0)
		log_warn(SUBSYS, "cannot write %s", path);
}

static struct pending *find_locked(struct reporter *r, const char *kind, const char *key)
{
	for (struct pending *p = r->head; p != NULL; p = p->next)
		if (!p->acked && strcmp(p->kind, kind) == 0 && strcmp(p->key, key) == 0)
			return p;
	return NULL;
}

/* Appends 'p' in seq order (it is the newest, or one read back from disk). */
static void insert_locked(struct reporter *r, struct pending *p)
{
	struct pending **at = &r->head;

	while (*at != NULL && (*at)->seq < p->seq)
		at = &(*at)->next;
	p->next = *at;
	*at = p;
	r->npending++;
}

/* Whether one more new report of 'kind' fits in the hour; if so, it is counted. */
static bool rate_allows_locked(struct reporter *r, const char *kind, int64_t now)
{
	struct kind_rate *k = NULL, *lru = &r->rates[0];

	for (size_t i = 0; i < RATE_KINDS; i++) {
		struct kind_rate *c = &r->rates[i];

		if (strcmp(c->kind, kind) == 0) {
			k = c;
			break;
		}
		if (c->kind[0] == '\0' || (lru->kind[0] != '\0' && c->used_ms < lru->used_ms))
			lru = c;
	}
	if (k == NULL) {
		k = lru;
		snprintf(k->kind, sizeof(k->kind), "%s", kind);
		k->head = k->n = 0;
	}
	k->used_ms = now;
	/* Out of the hour; a clock stepped back releases what lies in its future. */
	while (k->n > 0 && (k->ts[k->head] <= now - HOUR_MS || k->ts[k->head] > now)) {
		k->head = (k->head + 1) % (size_t)r->per_hour;
		k->n--;
	}
	if (k->n >= (size_t)r->per_hour)
		return false;
	k->ts[(k->head + k->n) % (size_t)r->per_hour] = now;
	k->n++;
	return true;
}

static void wake_locked(struct reporter *r)
{
	r->kick = true;
	pthread_cond_broadcast(&r->cond);
}

static int add_locked(struct reporter *r, const char *kind, const char *key, const char *text,
		      uint64_t n, int64_t first_ts, int64_t last_ts, bool limited);

/* 'n' events of 'kind' over the limits: into the "suppressed" report of that kind. */
static int suppress_locked(struct reporter *r, const char *kind, const char *text, uint64_t n,
			   int64_t first_ts, int64_t last_ts)
{
	struct pending *p = find_locked(r, SUPPRESSED_KIND, kind);
	uint64_t total = n + (p != NULL ? p->count : 0);
	char sentence[REPORT_TEXT_MAX];

	r->suppressed += n;
	snprintf(sentence, sizeof(sentence),
		 "%llu %s event%s beyond %d new reports of a kind an hour (or %d waiting) counted "
		 "here; the last: %s",
		 (unsigned long long)total, kind, total == 1 ? "" : "s", r->per_hour,
		 REPORT_MAX_PENDING, text);
	return add_locked(r, SUPPRESSED_KIND, kind, sentence, n, first_ts, last_ts, false);
}

/*
 * The one way a report is made or counted. 'limited': subject to the rate and the cap (a
 * "suppressed" report itself is not, so that what was suppressed is always said).
 */
static int add_locked(struct reporter *r, const char *kind, const char *key, const char *text,
		      uint64_t n, int64_t first_ts, int64_t last_ts, bool limited)
{
	char cut_key[REPORT_KEY_MAX];
	struct pending *p;

	copy_cut(cut_key, sizeof(cut_key), key);
	p = find_locked(r, kind, cut_key);
	if (p != NULL) {
		p->count += n;
		if (last_ts > p->last_ts)
			p->last_ts = last_ts;
		copy_cut(p->text, sizeof(p->text), text);
		p->version++;
		wake_locked(r);
		return write_pending_locked(r, p);
	}
	if (limited && (r->npending >= REPORT_MAX_PENDING || !rate_allows_locked(r, kind, last_ts)))
		return suppress_locked(r, kind, text, n, first_ts, last_ts);
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return GD_ENOMEM;
	p->seq = ++r->seq;
	snprintf(p->kind, sizeof(p->kind), "%s", kind);
	snprintf(p->key, sizeof(p->key), "%s", cut_key);
	copy_cut(p->text, sizeof(p->text), text);
	snprintf(p->boot, sizeof(p->boot), "%s", r->boot);
	p->first_ts = first_ts;
	p->last_ts = last_ts;
	p->count = n;
	p->version = 1;
	/* The number first: a report acknowledged and deleted must not give its number again. */
	write_seq_locked(r);
	if (write_pending_locked(r, p) != 0) {
		free(p);
		return GD_EIO;
	}
	insert_locked(r, p);
	log_info(SUBSYS, "report %llu: %s %s: %s", (unsigned long long)p->seq, p->kind, p->key,
		 p->text);
	wake_locked(r);
	return 0;
}

int report_event(struct reporter *r, const char *kind, const char *key, const char *text)
{
	int64_t now;
	int rc;

	if (r == NULL)
		return 0;
	if (!kind_valid(kind) || strcmp(kind, SUPPRESSED_KIND) == 0) {
		log_warnx(SUBSYS,
			  "report kind \"%.40s\" refused: expected 1 to %d of a-z, 0-9, _ "
			  "(and not \"" SUPPRESSED_KIND "\")",
			  kind ? kind : "(null)", REPORT_KIND_MAX - 1);
		return GD_EINVAL;
	}
	pthread_mutex_lock(&r->lock);
	now = clock_now(r);
	rc = add_locked(r, kind, key != NULL ? key : "", text != NULL ? text : "", 1, now, now,
			true);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* --- refused writes ------------------------------------------------------ */

/* The refusals of window 'w' not yet reported, as one report; the window goes on. */
static void window_flush_locked(struct reporter *r, struct write_window *w, int64_t now)
{
	char text[REPORT_TEXT_MAX];

	if (w->unreported == 0)
		return;
	snprintf(text, sizeof(text), "%llu more write%s to %s refused within %d s; the last: %s",
		 (unsigned long long)w->unreported, w->unreported == 1 ? "" : "s", w->point,
		 REPORT_WINDOW_MS / 1000, w->reason);
	add_locked(r, "write_refused", w->point, text, w->unreported, w->first_ms, w->last_ms,
		   true);
	w->unreported = 0;
	w->start_ms = now;
}

void report_write_refused(struct reporter *r, const char *point, const char *reason)
{
	struct write_window *w = NULL, *oldest = NULL;
	int64_t now;

	if (r == NULL)
		return;
	if (point == NULL)
		point = "(no point)";
	pthread_mutex_lock(&r->lock);
	now = clock_now(r);
	for (size_t i = 0; i < WRITE_WINDOWS && w == NULL; i++) {
		struct write_window *c = &r->windows[i];

		if (c->used && strncmp(c->point, point, sizeof(c->point) - 1) == 0)
			w = c;
		else if (oldest == NULL || !c->used ||
			 (oldest->used && c->start_ms < oldest->start_ms))
			oldest = c;
	}
	if (w != NULL) {
		/* Within the window: summed, reported when it ends. */
		if (w->unreported++ == 0)
			w->first_ms = now;
		w->last_ms = now;
		copy_cut(w->reason, sizeof(w->reason), reason);
	} else {
		char text[REPORT_TEXT_MAX];

		/* The first of a window goes at once; more points than windows: the oldest
		 * window ends early. */
		if (oldest->used)
			window_flush_locked(r, oldest, now);
		*oldest = (struct write_window){ .used = true, .start_ms = now };
		copy_cut(oldest->point, sizeof(oldest->point), point);
		snprintf(text, sizeof(text), "a write to %s was refused: %s", oldest->point,
			 reason != NULL ? reason : "");
		add_locked(r, "write_refused", oldest->point, text, 1, now, now, true);
	}
	pthread_mutex_unlock(&r->lock);
}

static void windows_tick_locked(struct reporter *r, int64_t now)
{
	for (size_t i = 0; i < WRITE_WINDOWS; i++) {
		struct write_window *w = &r->windows[i];

		if (!w->used || now - w->start_ms < REPORT_WINDOW_MS)
			continue;
		if (w->unreported > 0)
			window_flush_locked(r, w, now);
		else
			w->used = false; /* a quiet window: the next refusal is reported at once */
	}
}

/* --- adapters ------------------------------------------------------------ */

static void adapters_tick_locked(struct reporter *r, int64_t now)
{
	for (size_t i = 0; i < r->nadapters; i++) {
		struct adapter *a = r->adapters[i];
		struct adapter_watch *w = &r->watch[i];
		char fault[sizeof(w->fault)], since[32], text[REPORT_TEXT_MAX];

		if (__atomic_load_n(&a->stats.link_up, __ATOMIC_RELAXED)) {
			if (w->reported) {
				snprintf(
					text, sizeof(text),
					"adapter %s (%s): link back after %lld s down (it was: %s)",
					a->name, a->ops->type,
					(long long)((now - w->down_since_ms) / 1000),
					w->fault[0] ? w->fault : "no fault recorded");
				add_locked(r, "adapter_up", a->name, text, 1, now, now, true);
			}
			w->seen_up = true;
			w->down = w->reported = false;
			continue;
		}
		if (!w->down) {
			w->down = true;
			w->down_since_ms = now;
			w->fault[0] = '\0';
		}
		adapter_get_fault(a, fault, sizeof(fault));
		if (fault[0] != '\0')
			memcpy(w->fault, fault, sizeof(w->fault));
		if (w->reported ||
		    now - w->down_since_ms < (w->seen_up ? DOWN_GRACE_MS : START_GRACE_MS))
			continue;
		utc_text(w->down_since_ms, since);
		snprintf(text, sizeof(text), "adapter %s (%s): link %s since %s: %s", a->name,
			 a->ops->type, w->seen_up ? "down" : "not up", since,
			 w->fault[0] ? w->fault : "no fault recorded");
		add_locked(r, "adapter_down", a->name, text, 1, w->down_since_ms, now, true);
		w->reported = true;
	}
}

/* --- sending and acknowledgements --------------------------------------- */

/* The uplink's id of one send: the report and its version (so a late word on an older version
 * is told apart). */
static uint64_t send_id(const struct pending *p)
{
	return (p->seq << 16) | (p->sent_version & 0xffffu);
}

void reporter_ack(void *ctx, uint64_t id, bool acked)
{
	struct reporter *r = ctx;

	pthread_mutex_lock(&r->ack_lock);
	if (r->nacks < ACK_RING) {
		r->acks[(r->ack_head + r->nacks) % ACK_RING] =
			(struct ack){ .id = id, .acked = acked };
		r->nacks++;
	} else {
		r->acks_lost++; /* cannot be: one word per send, fewer sends than room */
	}
	pthread_mutex_unlock(&r->ack_lock);
	/* Not r->lock, which file writes hold: a wake lost to the race costs one tick at most. */
	pthread_cond_broadcast(&r->cond);
}

static void acks_apply_locked(struct reporter *r)
{
	struct ack batch[64];
	size_t n;

	do {
		pthread_mutex_lock(&r->ack_lock);
		for (n = 0; n < 64 && r->nacks > 0; n++) {
			batch[n] = r->acks[r->ack_head];
			r->ack_head = (r->ack_head + 1) % ACK_RING;
			r->nacks--;
		}
		pthread_mutex_unlock(&r->ack_lock);
		for (size_t i = 0; i < n; i++) {
			for (struct pending *p = r->head; p != NULL; p = p->next) {
				if (p->seq != batch[i].id >> 16 || !p->inflight ||
				    send_id(p) != batch[i].id)
					continue;
				p->inflight = false;
				p->acked = batch[i].acked;
				break;
			}
		}
	} while (n == 64);
}

/* Deletes what the broker has in its latest version; what changed since it was sent goes again. */
static void acked_delete_locked(struct reporter *r)
{
	struct pending **at = &r->head;

	while (*at != NULL) {
		struct pending *p = *at;
		char path[PATH_MAX];

		if (!p->acked) {
			at = &p->next;
			continue;
		}
		if (p->sent_version != p->version) {
			p->acked = false;
			at = &p->next;
			continue;
		}
		pending_path(r, p->seq, path, sizeof(path));
		if (unlink(path) != 0 && errno != ENOENT) {
			log_warn(SUBSYS, "cannot delete %s, acknowledged by the broker", path);
			at = &p->next;
			continue;
		}
		*at = p->next;
		r->npending--;
		r->sent++;
		free(p);
	}
}

static void send_locked(struct reporter *r)
{
	if (r->uplink == NULL && r->send == NULL)
		return;
	for (struct pending *p = r->head; p != NULL; p = p->next) {
		char doc[DOC_MAX];
		size_t n;
		int rc;

		/*
		 * In flight until the uplink says: it answers every send once (a send it cannot
		 * keep, failed), so none goes twice into its outbox while the broker is away, where
		 * copies would push out command results and audit records.
		 */
		if (p->acked || p->inflight)
			continue;
		n = doc_build(r, p, doc, sizeof(doc));
		if (n == 0)
			continue;
		p->sent_version = p->version;
		p->inflight = true;
		if (r->uplink != NULL)
			rc = uplink_publish_event_acked(r->uplink, "report", doc, n, reporter_ack,
							r, send_id(p));
		else
			rc = r->send(r->send_ctx, doc, n, send_id(p));
		if (rc == GD_ENOMEM || (r->uplink == NULL && rc != 0))
			p->inflight = false; /* no word will come: next tick */
	}
}

void reporter_tick(struct reporter *r)
{
	int64_t now;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	now = clock_now(r);
	acks_apply_locked(r);
	acked_delete_locked(r);
	windows_tick_locked(r, now);
	adapters_tick_locked(r, now);
	send_locked(r);
	pthread_mutex_unlock(&r->lock);
}

static void *reporter_main(void *arg)
{
	struct reporter *r = arg;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		struct timespec ts;

		r->kick = false;
		pthread_mutex_unlock(&r->lock);
		reporter_tick(r);
		pthread_mutex_lock(&r->lock);
		if (r->kick || r->stop)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += TICK_MS / 1000;
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* --- opening: what the run before left ----------------------------------- */

/* A report file read back: 0, or -1 if it is not one (the caller deletes it). */
static int load_one(struct reporter *r, const char *path, uint64_t seq)
{
	char *text = gd_read_file(path);
	cJSON *doc = text != NULL ? cJSON_Parse(text) : NULL;
	const cJSON *kind, *key, *msg, *boot, *first, *last, *count, *dseq;
	struct pending *p;
	int rc = -1;

	kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
	key = cJSON_GetObjectItemCaseSensitive(doc, "key");
	msg = cJSON_GetObjectItemCaseSensitive(doc, "text");
	boot = cJSON_GetObjectItemCaseSensitive(doc, "boot");
	first = cJSON_GetObjectItemCaseSensitive(doc, "first_ts");
	last = cJSON_GetObjectItemCaseSensitive(doc, "last_ts");
	count = cJSON_GetObjectItemCaseSensitive(doc, "count");
	dseq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
	if (!cJSON_IsString(kind) || !kind_valid(kind->valuestring) || !cJSON_IsString(key) ||
	    !cJSON_IsString(msg) || !cJSON_IsNumber(first) || !cJSON_IsNumber(last) ||
	    !cJSON_IsNumber(count) || count->valuedouble < 1 || !cJSON_IsNumber(dseq) ||
	    (uint64_t)dseq->valuedouble != seq)
		goto out;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		goto out;
	p->seq = seq;
	snprintf(p->kind, sizeof(p->kind), "%s", kind->valuestring);
	copy_cut(p->key, sizeof(p->key), key->valuestring);
	copy_cut(p->text, sizeof(p->text), msg->valuestring);
	snprintf(p->boot, sizeof(p->boot), "%s",
		 cJSON_IsString(boot) ? boot->valuestring : "0000000000000000");
	p->first_ts = (int64_t)first->valuedouble;
	p->last_ts = (int64_t)last->valuedouble;
	p->count = (uint64_t)count->valuedouble;
	p->version = 1;
	insert_locked(r, p);
	if (seq > r->seq)
		r->seq = seq;
	rc = 0;
out:
	cJSON_Delete(doc);
	free(text);
	return rc;
}

/* Reads reports/: the seq file and every report; stale temp files and files that do not read
 * are deleted (logged). */
static int load_dir(struct reporter *r, char *why, size_t cap)
{
	char path[PATH_MAX], *text;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/seq", r->dir);
	text = gd_read_file(path);
	if (text != NULL)
		r->seq = strtoull(text, NULL, 10);
	free(text);
	d = opendir(r->dir);
	if (d == NULL) {
		gd_whyf(why, cap, "cannot open %s: %s", r->dir, strerror(errno));
		return GD_EIO;
	}
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		size_t digits = strspn(name, "0123456789");
		uint64_t seq;

		if (name[0] == '.' || strcmp(name, "seq") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", r->dir, name);
		if (strstr(name, ".tmp.") != NULL) {
			unlink(path); /* a write a crash cut short: its report is the file before */
			continue;
		}
		if (digits != 20 || strcmp(name + digits, ".json") != 0)
			continue; /* not ours */
		seq = strtoull(name, NULL, 10);
		if (load_one(r, path, seq) != 0) {
			log_warnx(SUBSYS,
				  "%s is not a report (expected one JSON document with kind, "
				  "key, text, first_ts, last_ts, count and seq %llu); deleted",
				  path, (unsigned long long)seq);
			unlink(path);
		}
	}
	closedir(d);
	if (r->npending > 0)
		log_info(SUBSYS, "%zu report%s from before to send (%s)", r->npending,
			 r->npending == 1 ? "" : "s", r->dir);
	return 0;
}

/*
 * What a supervisor said about the exit of the run that started at 'since_ms' (0: unknown): one
 * line of printable text, or "". The file stays (the update manager reads it too); one older
 * than that run's start speaks of an earlier exit, and is left out.
 */
static void last_exit_text(const struct reporter *r, int64_t since_ms, char *out, size_t cap)
{
	char path[PATH_MAX], *text;
	struct stat st;
	size_t n = 0;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/" REPORT_LAST_EXIT, r->state_dir);
	if (stat(path, &st) != 0 ||
	    (since_ms > 0 &&
	     (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000 < since_ms - 1000))
		return;
	text = gd_read_file(path);
	if (text == NULL)
		return;
	for (const char *s = text; *s != '\0' && n + 3 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n' || c == '\r' || c == '\t') {
			if (n > 0 && out[n - 1] != ' ' && s[1] != '\0')
				out[n++] = c == '\n' ? ';' : ' ', out[n++] = ' ';
		} else {
			out[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
		}
	}
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == ';'))
		n--;
	out[n] = '\0';
	free(text);
}

static void write_run_state(const struct reporter *r, bool running)
{
	char path[PATH_MAX], text[160];
	int n;

	snprintf(path, sizeof(path), "%s/" REPORT_RUN_STATE, r->state_dir);
	if (running)
		n = snprintf(text, sizeof(text), "running boot=%s pid=%ld since=%lld\n", r->boot,
			     (long)getpid(), (long long)clock_now(r));
	else
		n = snprintf(text, sizeof(text), "stopped boot=%s at=%lld\n", r->boot,
			     (long long)clock_now(r));
	if (gd_write_file_atomic(path, text, (size_t)n, 0600) != 0)
		log_warn(SUBSYS, "cannot write %s: a crash of this run would go unreported", path);
}

/* run-state still "running": the run before ended without its clean stop. */
static void check_last_run(struct reporter *r)
{
	char path[PATH_MAX], exit_text[320], text[REPORT_TEXT_MAX], when[32] = "?";
	char boot[17] = "?", *state;
	const char *at;
	long pid = 0;
	long long since = 0;
	int64_t now = clock_now(r);

	snprintf(path, sizeof(path), "%s/" REPORT_RUN_STATE, r->state_dir);
	state = gd_read_file(path);
	if (state != NULL && strncmp(state, "running", 7) == 0) {
		if ((at = strstr(state, "boot=")) != NULL)
			sscanf(at, "boot=%16[0-9a-f]", boot);
		if ((at = strstr(state, "pid=")) != NULL)
			sscanf(at, "pid=%ld", &pid);
		if ((at = strstr(state, "since=")) != NULL && sscanf(at, "since=%lld", &since) == 1)
			utc_text(since, when);
		last_exit_text(r, since, exit_text, sizeof(exit_text));
		snprintf(text, sizeof(text),
			 "the run before (boot %s, pid %ld, started %s) did not stop cleanly: it "
			 "was killed, crashed or lost power; %s%s",
			 boot, pid, when,
			 exit_text[0] ? REPORT_LAST_EXIT ": " : "no " REPORT_LAST_EXIT, exit_text);
		log_warnx(SUBSYS, "%s", text);
		pthread_mutex_lock(&r->lock);
		add_locked(r, "crash", "unclean_stop", text, 1, since > 0 ? since : now, now, true);
		pthread_mutex_unlock(&r->lock);
	}
	free(state);
	write_run_state(r, true);
	r->marked_running = true;
}

struct reporter *reporter_open(const struct reporter_config *cfg, char *why, size_t cap)
{
	struct reporter *r;
	pthread_condattr_t attr;

	if (cfg == NULL || cfg->state_dir == NULL || cfg->device_id == NULL) {
		gd_whyf(why, cap, "no state directory or device id");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		gd_whyf(why, cap, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->ack_lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &attr);
	pthread_condattr_destroy(&attr);
	r->uplink = cfg->uplink;
	r->send = cfg->send;
	r->send_ctx = cfg->send_ctx;
	r->per_hour = cfg->per_hour > 0 ? cfg->per_hour : REPORT_PER_HOUR;
	r->now_ms = cfg->now_ms;
	r->started_ms = clock_now(r);
	snprintf(r->boot, sizeof(r->boot), "%s", cfg->boot_id ? cfg->boot_id : "");
	r->state_dir = strdup(cfg->state_dir);
	r->device_id = strdup(cfg->device_id);
	if (asprintf(&r->dir, "%s/" REPORT_DIR, cfg->state_dir) < 0)
		r->dir = NULL;
	if (r->state_dir == NULL || r->device_id == NULL || r->dir == NULL) {
		gd_whyf(why, cap, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < RATE_KINDS; i++) {
		r->rates[i].ts = calloc((size_t)r->per_hour, sizeof(int64_t));
		if (r->rates[i].ts == NULL) {
			gd_whyf(why, cap, "out of memory");
			goto fail;
		}
	}
	if (mkdir(r->dir, 0700) != 0 && errno != EEXIST) {
		gd_whyf(why, cap, "cannot create %s: %s", r->dir, strerror(errno));
		goto fail;
	}
	if (load_dir(r, why, cap) != 0)
		goto fail;
	check_last_run(r);
	return r;
fail:
	reporter_close(r);
	return NULL;
}

int reporter_start(struct reporter *r, struct adapter *const *adapters, size_t nadapters)
{
	int rc;

	if (r == NULL)
		return 0;
	r->watch = calloc(nadapters ? nadapters : 1, sizeof(*r->watch));
	if (r->watch == NULL)
		return GD_ENOMEM;
	pthread_mutex_lock(&r->lock);
	r->adapters = adapters;
	r->nadapters = nadapters;
	r->started_ms = clock_now(r);
	/* Before the thread exists: the flag shares a word with those the thread reads. */
	r->running = true;
	pthread_mutex_unlock(&r->lock);
	rc = pthread_create(&r->thread, NULL, reporter_main, r);
	if (rc != 0) {
		r->running = false;
		errno = rc;
		log_warn(SUBSYS, "cannot start the report thread");
		return GD_EIO;
	}
	return 0;
}

void reporter_stop(struct reporter *r)
{
	if (r == NULL || !r->running)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	wake_locked(r);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	r->running = false;
}

void reporter_close(struct reporter *r)
{
	if (r == NULL)
		return;
	reporter_stop(r);
	/* Only a reporter that marked the run "running" marks its clean end: one that failed to
	 * open must leave the run before's "running" for the next start to report. */
	if (r->marked_running)
		write_run_state(r, false);
	while (r->head != NULL) {
		struct pending *p = r->head;

		r->head = p->next;
		free(p);
	}
	for (size_t i = 0; i < RATE_KINDS; i++)
		free(r->rates[i].ts);
	free(r->watch);
	free(r->state_dir);
	free(r->device_id);
	free(r->dir);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->ack_lock);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void reporter_get_stats(struct reporter *r, struct report_stats *out)
{
	*out = (struct report_stats){ 0 };
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	out->pending = r->npending;
	out->sent = r->sent;
	out->suppressed = r->suppressed;
	pthread_mutex_unlock(&r->lock);
}

void reporter_health(struct reporter *r, struct jw *w)
{
	struct report_stats st;

	if (r == NULL)
		return;
	reporter_get_stats(r, &st);
	jw_key(w, "reports");
	jw_object(w);
	jw_key(w, "pending");
	jw_uint(w, st.pending);
	jw_key(w, "sent");
	jw_uint(w, st.sent);
	jw_key(w, "suppressed");
	jw_uint(w, st.suppressed);
	jw_end(w);
}
