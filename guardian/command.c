/* command.c: writes the cloud asks for: policy, function codes, the write itself, audit, and the
 * answer. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/base.h"
#include "../base/json.h"

#include "audit.h"
#include "report.h"
#include "command_doc.h"
#include "gateway_private.h"

#define SUBSYS	  "command"
#define INBOX_MAX 64   /* commands waiting to be carried out */
#define BUSY_MAX  1024 /* "busy" answers waiting for the command thread */
/* One command as it arrived, or (busy) only the id of one refused as busy. */
struct command {
	struct command *next;
	bool busy;
	size_t len;
	char text[]; /* len bytes + NUL: the command, or the id's JSON text */
};

struct command_inbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct command *head, *tail;
	size_t count, busy_count;
	bool stopping;
	/* Counted under 'lock'; shown in health. */
	uint64_t received, accepted, refused, failed, busy;
};

/* Counts one answer of 'status'. */
static void count_answer(struct command_inbox *in, const char *status)
{
	pthread_mutex_lock(&in->lock);
	if (strcmp(status, "accepted") == 0)
		in->accepted++;
	else if (strcmp(status, "failed") == 0)
		in->failed++;
	else if (strcmp(status, "busy") == 0)
		in->busy++;
	else
		in->refused++;
	pthread_mutex_unlock(&in->lock);
}

/*
 * Answers on cmd/result and records the answer in the audit log, published on
 * the audit topic: write_done, write_failed or write_refused. Every command
 * gets exactly one answer. Every field is bounded before it gets here, so the
 * answer always fits; should it not, a short answer without the command's
 * fields goes instead, never a cut one.
 */
static void answer(struct gateway *gw, const struct cmd_answer *a)
{
	char fields[CMD_FIELDS_BYTES], doc[CMD_FIELDS_BYTES + 64];
	int64_t ts = gd_now_ms();
	bool done = strcmp(a->status, "accepted") == 0;
	size_t n = cmd_answer_format(a, ts, fields, doc, sizeof(doc));

	uplink_publish_event(gw->uplink, "cmd/result", doc, n);
	audit_sink_record(gw->audit, ts,
			  done				     ? "write_done"
			  : strcmp(a->status, "failed") == 0 ? "write_failed"
							     : "write_refused",
			  fields);
	count_answer(gw->inbox, a->status);
	/* Summed per point for the cloud's failure reports, not one report per write. */
	if (strcmp(a->status, "refused") == 0)
		report_write_refused(gw->reporter, a->point, a->reason);
	if (done)
		log_info(SUBSYS, "%s = %s written", a->point, a->value);
	else
		log_warnx(SUBSYS, "command %s: %s %s: %s", a->id,
			  a->point ? a->point : "(no point)", a->status, a->reason);
}

static void answer_busy(struct gateway *gw, const char *id)
{
	answer(gw, &(struct cmd_answer){ .id = id,
					 .value = "null",
					 .status = "busy",
					 .reason = "busy: the command inbox is full; nothing was "
						   "written, send it again later" });
}

/* On Paho's thread: copy and return at once. */
static void command_arrived(void *ctx, const char *payload, size_t len)
{
	struct gateway *gw = ctx;
	struct command_inbox *in = gw->inbox;
	char id[CMD_ID_BYTES];
	struct command *c;
	bool inline_busy = false;

	if (len > CMD_BYTES)
		len = CMD_BYTES + 1; /* kept short; refused as too large */
	c = malloc(sizeof(*c) + (len > CMD_ID_BYTES ? len : CMD_ID_BYTES) + 1);
	if (c == NULL)
		return;
	*c = (struct command){ .len = len };
	memcpy(c->text, payload, len);
	c->text[len] = '\0';
	pthread_mutex_lock(&in->lock);
	in->received++;
	if (in->stopping) {
		pthread_mutex_unlock(&in->lock);
		free(c);
		return;
	}
	if (in->count >= INBOX_MAX) {
		/* Only its id is kept, for the answer. */
		cmd_parse_id(payload, len, id);
		c->busy = true;
		c->len = strlen(id);
		memcpy(c->text, id, c->len + 1);
		if (in->busy_count >= BUSY_MAX)
			inline_busy = true;
	}
	if (!inline_busy) {
		if (in->tail != NULL)
			in->tail->next = c;
		else
			in->head = c;
		in->tail = c;
		if (c->busy)
			in->busy_count++;
		else
			in->count++;
		pthread_cond_signal(&in->cond);
	}
	pthread_mutex_unlock(&in->lock);
	if (inline_busy) {
		/* A flood past every queue: answered here, which slows the flood down. */
		answer_busy(gw, c->text);
		free(c);
	}
}

/*
 * The value the machine holds now, to judge max_step against: read fresh
 * from the device where the adapter can, else the newer of the last accepted
 * write and the last good poll. 0, or a gd_err when the read failed.
 */
static int current_value(struct gateway *gw, struct adapter *a, const struct point *p, long pid,
			 struct value *out)
{
	if (a != NULL && a->ops->read != NULL)
		return a->ops->read(a, p, out);
	pthread_mutex_lock(&gw->current_lock);
	if (gw->written[pid].kind != VALUE_KIND_NONE && gw->written_ms[pid] >= gw->last[pid].ts_ms)
		*out = gw->written[pid];
	else
		*out = gw->current[pid];
	pthread_mutex_unlock(&gw->current_lock);
	return 0;
}

static void handle(struct gateway *gw, const struct command *c)
{
	struct cmd_parsed cmd;
	char reason[1024];
	struct cmd_answer ans = {
		.id = cmd.id, .value = cmd.value_text, .status = "refused", .reason = reason
	};
	const struct point *p;
	struct adapter *a;
	struct value current = { .kind = VALUE_KIND_NONE };
	enum policy_refusal refusal;
	size_t aindex = 0;
	bool needs_current;
	long pid;
	unsigned fc;
	int rc;

	if (c->busy) {
		answer_busy(gw, c->text);
		return;
	}
	if (!cmd_parse(c->text, c->len, &cmd, reason, sizeof(reason))) {
		ans.point = cmd.point[0] != '\0' ? cmd.point : NULL;
		answer(gw, &ans);
		return;
	}
	ans.point = cmd.point;
	pthread_rwlock_rdlock(&gw->policy_lock); /* the aliases change on reload */
	pid = points_find(gw->cfg, gw->names, ans.point);
	needs_current = pid >= 0 && policy_downlink_needs_current(gw->cfg->policy, (uint32_t)pid);
	pthread_rwlock_unlock(&gw->policy_lock);
	if (pid < 0) {
		snprintf(reason, sizeof(reason), "unknown point \"%s\"", ans.point);
		answer(gw, &ans);
		return;
	}
	p = gw->cfg->points[pid];
	ans.point = p->name;
	a = points_adapter(gw->cfg, (uint32_t)pid, &aindex);
	/* max_step is judged against what the machine holds now, not the last poll. */
	if (needs_current && (rc = current_value(gw, a, p, pid, &current)) != 0) {
		snprintf(reason, sizeof(reason),
			 "cannot read the current value of %s to check max_step: %s; nothing "
			 "was written",
			 p->name, gd_strerror(rc));
		answer(gw, &ans);
		return;
	}
	pthread_rwlock_rdlock(&gw->policy_lock);
	refusal = policy_downlink_decide(gw->cfg->policy, gw->pstate, (uint32_t)pid, &cmd.value,
					 &current, gd_now_ms(), reason, sizeof(reason));
	fc = a != NULL && a->ops->write_function != NULL ? a->ops->write_function(a, p) : 0;
	if (refusal == POLICY_ACCEPT && fc != 0 &&
	    !policy_function_allowed(gw->cfg->policy, aindex, fc)) {
		refusal = POLICY_REFUSE_DENIED;
		snprintf(reason, sizeof(reason),
			 "function code %u is not allowed for adapter %s (add it to "
			 "function_codes.%s in the policy)",
			 fc, a->name, a->name);
	}
	pthread_rwlock_unlock(&gw->policy_lock);
	if (refusal != POLICY_ACCEPT) {
		answer(gw, &ans);
		return;
	}
	if (a == NULL || a->ops->write == NULL) {
		snprintf(reason, sizeof(reason), "this adapter cannot write");
		answer(gw, &ans);
		return;
	}
	rc = a->ops->write(a, p, &cmd.value);
	pthread_mutex_lock(&gw->current_lock);
	/* After a failed write the machine may hold either value: none is assumed. */
	gw->written[pid] = rc == 0 && cmd.value.kind != VALUE_KIND_STRING
				   ? cmd.value
				   : (struct value){ .kind = VALUE_KIND_NONE };
	gw->written_ms[pid] = gd_now_ms();
	pthread_mutex_unlock(&gw->current_lock);
	if (rc != 0) {
		snprintf(reason, sizeof(reason), "the write to the device failed: %s",
			 gd_strerror(rc));
		ans.status = "failed";
		answer(gw, &ans);
		return;
	}
	snprintf(reason, sizeof(reason), "written");
	ans.status = "accepted";
	answer(gw, &ans);
}

static void *command_main(void *arg)
{
	struct gateway *gw = arg;
	struct command_inbox *in = gw->inbox;

	pthread_mutex_lock(&in->lock);
	for (;;) {
		struct command *c;

		while (in->head == NULL && !in->stopping)
			pthread_cond_wait(&in->cond, &in->lock);
		if (in->head == NULL)
			break;
		c = in->head;
		in->head = c->next;
		if (in->head == NULL)
			in->tail = NULL;
		if (c->busy)
			in->busy_count--;
		else
			in->count--;
		pthread_mutex_unlock(&in->lock);
		handle(gw, c);
		free(c);
		pthread_mutex_lock(&in->lock);
	}
	pthread_mutex_unlock(&in->lock);
	return NULL;
}

int command_start(struct gateway *gw)
{
	gw->inbox = calloc(1, sizeof(*gw->inbox));
	if (gw->inbox == NULL)
		return GD_ENOMEM;
	pthread_mutex_init(&gw->inbox->lock, NULL);
	pthread_cond_init(&gw->inbox->cond, NULL);
	if (pthread_create(&gw->command_thread, NULL, command_main, gw) != 0) {
		log_warn(SUBSYS, "cannot start the command thread");
		return GD_EIO;
	}
	gw->command_started = true;
	uplink_set_command_handler(gw->uplink, command_arrived, gw);
	return 0;
}

void command_stop(struct gateway *gw)
{
	struct command_inbox *in = gw->inbox;

	if (in == NULL)
		return;
	pthread_mutex_lock(&in->lock);
	in->stopping = true;
	/* Waiting commands are not carried out during a stop (nor answered: the uplink is
	 * going). */
	while (in->head != NULL) {
		struct command *c = in->head;

		in->head = c->next;
		free(c);
	}
	in->tail = NULL;
	in->count = 0;
	in->busy_count = 0;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	if (gw->command_started)
		pthread_join(gw->command_thread, NULL);
	gw->command_started = false;
}

void command_free(struct gateway *gw)
{
	struct command_inbox *in = gw->inbox;

	if (in == NULL)
		return;
	pthread_cond_destroy(&in->cond);
	pthread_mutex_destroy(&in->lock);
	free(in);
	gw->inbox = NULL;
}

void command_health(struct gateway *gw, struct jw *w)
{
	struct command_inbox *in = gw->inbox;
	uint64_t received = 0, accepted = 0, refused = 0, failed = 0, busy = 0, waiting = 0;

	if (in != NULL) {
		pthread_mutex_lock(&in->lock);
		received = in->received;
		accepted = in->accepted;
		refused = in->refused;
		failed = in->failed;
		busy = in->busy;
		waiting = in->count + in->busy_count;
		pthread_mutex_unlock(&in->lock);
	}
	jw_key(w, "commands");
	jw_object(w);
	jw_key(w, "received");
	jw_uint(w, received);
	jw_key(w, "accepted");
	jw_uint(w, accepted);
	jw_key(w, "refused");
	jw_uint(w, refused);
	jw_key(w, "failed");
	jw_uint(w, failed);
	jw_key(w, "busy");
	jw_uint(w, busy);
	jw_key(w, "waiting");
	jw_uint(w, waiting);
	jw_end(w);
}
