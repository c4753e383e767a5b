/* command.c: writes the cloud asks for: policy, function codes, the write itself, audit, and the
 * answer. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway_private.h"

#define SUBSYS	      "command"
#define INBOX_MAX     64   /* commands waiting; more are refused as busy */
#define COMMAND_BYTES 4096 /* a larger command is refused unread */

struct command {
	struct command *next;
	size_t len;
	char text[]; /* len bytes + NUL */
};

struct command_inbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct command *head, *tail;
	size_t count;
	uint64_t refused_busy;
	bool stopping;
};

/* On Paho's thread: copy and return at once. */
static void command_arrived(void *ctx, const char *payload, size_t len)
{
	struct gateway *gw = ctx;
	struct command_inbox *in = gw->inbox;
	struct command *c;

	if (len > COMMAND_BYTES)
		len = COMMAND_BYTES + 1; /* kept short; refused as too large */
	c = malloc(sizeof(*c) + len + 1);
	if (c == NULL)
		return;
	c->next = NULL;
	c->len = len;
	memcpy(c->text, payload, len);
	c->text[len] = '\0';
	pthread_mutex_lock(&in->lock);
	if (in->stopping) {
		free(c);
	} else if (in->count >= INBOX_MAX) {
		in->refused_busy++;
		free(c);
	} else {
		if (in->tail != NULL)
			in->tail->next = c;
		else
			in->head = c;
		in->tail = c;
		in->count++;
		pthread_cond_signal(&in->cond);
	}
	pthread_mutex_unlock(&in->lock);
}

/*
 * Answers on cmd/result and, unless accepted-and-written is all there is to
 * say, records it in the audit log (and on the audit topic). Every refused
 * write is audited; so is every write done.
 */
static void answer(struct gateway *gw, const char *id_json, const char *point, const char *value,
		   const char *status, const char *reason)
{
	char reason_json[1024], point_json[256], fields[2048], doc[2600];
	int64_t ts = gd_now_ms();

	gateway_json_string(reason_json, sizeof(reason_json), reason);
	gateway_json_string(point_json, sizeof(point_json), point ? point : "");
	snprintf(fields, sizeof(fields),
		 "\"id\":%s,\"point\":%s,\"value\":%s,\"status\":\"%s\",\"reason\":%s", id_json,
		 point ? point_json : "null", value, status, reason_json);
	snprintf(doc, sizeof(doc), "{%s,\"ts\":%lld}", fields, (long long)ts);
	uplink_publish_event(gw->uplink, "cmd/result", doc, strlen(doc));
	if (strcmp(status, "accepted") == 0)
		gateway_audit(gw, ts, "write_done", fields, false);
	else
		gateway_audit(gw, ts,
			      strcmp(status, "failed") == 0 ? "write_failed" : "write_refused",
			      fields, true);
	if (strcmp(status, "accepted") == 0)
		log_info(SUBSYS, "%s = %s written", point, value);
	else
		log_warnx(SUBSYS, "%s %s: %s", point ? point : "(no point)", status, reason);
}

/* Which adapter holds point 'id'. */
static struct adapter *adapter_of(struct gateway *gw, uint32_t id, size_t *index)
{
	for (size_t i = 0; i < gw->cfg->nadapters; i++) {
		struct adapter *a = gw->cfg->adapters[i];

		if (a->npoints > 0 && id >= a->points[0].id && id <= a->points[a->npoints - 1].id) {
			*index = i;
			return a;
		}
	}
	return NULL;
}

static void handle(struct gateway *gw, const struct command *c)
{
	char id_json[160] = "null", value_text[160] = "null", reason[512];
	const cJSON *id, *point, *value;
	const struct point *p;
	struct adapter *a;
	struct value requested, current;
	enum policy_refusal refusal;
	size_t aindex = 0;
	long pid;
	unsigned fc;
	cJSON *doc;
	int rc;

	if (c->len > COMMAND_BYTES) {
		answer(gw, id_json, NULL, value_text, "refused",
		       "malformed command: larger than 4096 bytes");
		return;
	}
	doc = cJSON_ParseWithLength(c->text, c->len);
	if (!cJSON_IsObject(doc)) {
		answer(gw, id_json, NULL, value_text, "refused",
		       "malformed command: not a JSON object (expected {\"id\":..., \"point\":..., "
		       "\"value\":...})");
		cJSON_Delete(doc);
		return;
	}
	id = cJSON_GetObjectItemCaseSensitive(doc, "id");
	point = cJSON_GetObjectItemCaseSensitive(doc, "point");
	value = cJSON_GetObjectItemCaseSensitive(doc, "value");
	if (cJSON_IsString(id))
		gateway_json_string(id_json, sizeof(id_json), id->valuestring);
	else if (cJSON_IsNumber(id))
		snprintf(id_json, sizeof(id_json), "%.17g", id->valuedouble);
	if (id == NULL || !(cJSON_IsString(id) || cJSON_IsNumber(id)) || !cJSON_IsString(point) ||
	    value == NULL) {
		answer(gw, id_json, cJSON_IsString(point) ? point->valuestring : NULL, value_text,
		       "refused",
		       "malformed command: expected \"id\" (string or number), \"point\" (string) "
		       "and \"value\"");
		goto out;
	}
	if (cJSON_IsBool(value))
		requested = (struct value){ .kind = VALUE_KIND_BOOL, .b = cJSON_IsTrue(value) };
	else if (cJSON_IsNumber(value))
		requested = (struct value){ .kind = VALUE_KIND_FLOAT, .f = value->valuedouble };
	else if (cJSON_IsString(value))
		requested = (struct value){ .kind = VALUE_KIND_STRING, .s = value->valuestring };
	else {
		answer(gw, id_json, point->valuestring, value_text, "refused",
		       "malformed command: \"value\" must be a number, true/false or a string");
		goto out;
	}
	/* Integral numbers stay exact integers for integer registers. */
	if (requested.kind == VALUE_KIND_FLOAT && requested.f == floor(requested.f) &&
	    fabs(requested.f) < 9007199254740992.0)
		requested = (struct value){ .kind = VALUE_KIND_INT, .i = (int64_t)requested.f };
	gateway_value_json(value_text, sizeof(value_text), &requested);
	pthread_rwlock_rdlock(&gw->policy_lock); /* the aliases change on reload */
	pid = gateway_point_by_name(gw, point->valuestring);
	pthread_rwlock_unlock(&gw->policy_lock);
	if (pid < 0) {
		snprintf(reason, sizeof(reason), "unknown point \"%s\"", point->valuestring);
		answer(gw, id_json, point->valuestring, value_text, "refused", reason);
		goto out;
	}
	p = gw->cfg->points[pid];
	pthread_mutex_lock(&gw->current_lock);
	current = gw->current[pid];
	pthread_mutex_unlock(&gw->current_lock);
	pthread_rwlock_rdlock(&gw->policy_lock);
	refusal = policy_downlink_decide(gw->cfg->policy, gw->pstate, (uint32_t)pid, &requested,
					 &current, gd_now_ms(), reason, sizeof(reason));
	a = adapter_of(gw, (uint32_t)pid, &aindex);
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
		answer(gw, id_json, p->name, value_text, "refused", reason);
		goto out;
	}
	if (a == NULL || a->ops->write == NULL) {
		answer(gw, id_json, p->name, value_text, "refused", "this adapter cannot write");
		goto out;
	}
	rc = a->ops->write(a, p, &requested);
	if (rc != 0) {
		snprintf(reason, sizeof(reason), "the write to the device failed: %s",
			 gd_strerror(rc));
		answer(gw, id_json, p->name, value_text, "failed", reason);
		goto out;
	}
	answer(gw, id_json, p->name, value_text, "accepted", "written");
out:
	cJSON_Delete(doc);
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
	char path[1024];

	gw->inbox = calloc(1, sizeof(*gw->inbox));
	if (gw->inbox == NULL)
		return GD_ENOMEM;
	pthread_mutex_init(&gw->inbox->lock, NULL);
	pthread_cond_init(&gw->inbox->cond, NULL);
	snprintf(path, sizeof(path), "%s/audit.log", gw->cfg->state_dir);
	gw->audit = audit_open(path);
	if (gw->audit == NULL) {
		log_warn(SUBSYS, "cannot open the audit log %s", path);
		return GD_EIO;
	}
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
	/* Waiting commands are not carried out during a stop. */
	while (in->head != NULL) {
		struct command *c = in->head;

		in->head = c->next;
		free(c);
	}
	in->tail = NULL;
	in->count = 0;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	if (gw->command_started)
		pthread_join(gw->command_thread, NULL);
	gw->command_started = false;
}

void command_free(struct gateway *gw)
{
	struct command_inbox *in = gw->inbox;

	audit_close(gw->audit);
	gw->audit = NULL;
	if (in == NULL)
		return;
	pthread_cond_destroy(&in->cond);
	pthread_mutex_destroy(&in->lock);
	free(in);
	gw->inbox = NULL;
}
