/* audit_sink.c: what the running gateway does that must be on record (writes, console actions,
 * range drops) becomes an audit record, kept in the audit log and published on its topic. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/json.h"
#include "audit.h"
#include "command_doc.h"
#include "gateway_private.h"

#define SUBSYS "audit"

#define AUDIT_DROP_INTERVAL_MS 60000 /* at most one range-drop record per point per minute */

struct audit_sink {
	struct audit *log;
	struct uplink *uplink;
	pthread_mutex_t lock;  /* an append and the publish of that record */
	int64_t *last_drop_ms; /* per point: when its last range drop was recorded */
};

struct audit_sink *audit_sink_open(const char *state_dir, struct uplink *u, size_t npoints)
{
	struct audit_sink *s = calloc(1, sizeof(*s));
	char path[1024];

	if (s == NULL)
		return NULL;
	snprintf(path, sizeof(path), "%s/audit.log", state_dir);
	s->uplink = u;
	s->last_drop_ms = calloc(npoints ? npoints : 1, sizeof(*s->last_drop_ms));
	s->log = audit_open(path);
	if (s->log == NULL)
		log_warn(SUBSYS, "cannot open the audit log %s", path);
	if (s->log == NULL || s->last_drop_ms == NULL) {
		audit_close(s->log);
		free(s->last_drop_ms);
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void audit_sink_close(struct audit_sink *s)
{
	if (s == NULL)
		return;
	audit_close(s->log);
	pthread_mutex_destroy(&s->lock);
	free(s->last_drop_ms);
	free(s);
}

int audit_sink_record(struct audit_sink *s, int64_t ts, const char *event, const char *fields)
{
	int rc;

	if (s == NULL)
		return GD_EIO;
	/* audit_last is the log's own buffer: append and publish as one step. */
	pthread_mutex_lock(&s->lock);
	rc = audit_append(s->log, ts, event, fields);
	if (rc != 0)
		log_warnx(SUBSYS, "cannot append to the audit log: %s", gd_strerror(rc));
	else
		uplink_publish_event(s->uplink, "audit", audit_last(s->log),
				     strlen(audit_last(s->log)));
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/*
 * A value outside its allowed range is an anomaly worth a record: the first
 * such drop of a point per AUDIT_DROP_INTERVAL_MS goes to the audit log (and
 * its topic). Drops by deadband or rate are ordinary shaping, and points no
 * rule allows are dropped by design: neither is audited.
 */
void audit_sink_range_drop(struct audit_sink *s, const struct sample *sample, const char *point,
			   int64_t ts)
{
	int64_t *last;
	char fields[512], value[64];
	struct jw w;

	if (s == NULL)
		return;
	last = &s->last_drop_ms[sample->point_id];
	if (*last != 0 && ts - *last < AUDIT_DROP_INTERVAL_MS)
		return;
	*last = ts;
	gd_value_json(value, sizeof(value), &sample->value);
	jw_init(&w, fields, sizeof(fields));
	jw_key(&w, "point");
	jw_string(&w, point);
	jw_key(&w, "value");
	jw_raw(&w, value, strlen(value));
	jw_key(&w, "reason");
	jw_string(&w, "outside the allowed range");
	if (jw_finish(&w) > 0)
		audit_sink_record(s, ts, "uplink_dropped", fields);
}

void audit_sink_health(struct audit_sink *s, struct jw *w)
{
	char head[65] = "";
	uint64_t seq = 0;

	if (s != NULL)
		audit_head(s->log, &seq, head);
	/* The chain head: the cloud keeps it, so that cutting off the log's tail shows. */
	jw_key(w, "audit");
	jw_object(w);
	jw_key(w, "seq");
	jw_uint(w, seq);
	jw_key(w, "mac");
	jw_string(w, head);
	jw_end(w);
}
