/* policy.c: compiles the policy's text into one decision per point, and decides. */
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

const char *const policy_verdict_names[] = {
	[POLICY_SEND] = "sent",
	[POLICY_SEND_CLAMPED] = "sent clamped",
	[POLICY_SEND_FLAGGED] = "sent flagged out of range",
	[POLICY_DROP_DENIED] = "dropped: denied",
	[POLICY_DROP_RANGE] = "dropped: out of range",
	[POLICY_DROP_DEADBAND] = "dropped: within the deadband",
	[POLICY_DROP_RATE] = "dropped: too soon",
	NULL,
};

const char *const policy_refusal_names[] = {
	[POLICY_ACCEPT] = "accepted",
	[POLICY_REFUSE_NO_RULE] = "no rule",
	[POLICY_REFUSE_DENIED] = "denied",
	[POLICY_REFUSE_NOT_WRITABLE] = "not writable",
	[POLICY_REFUSE_RANGE] = "out of range",
	[POLICY_REFUSE_STEP] = "step too large",
	[POLICY_REFUSE_RATE] = "too soon",
	[POLICY_REFUSE_TYPE] = "wrong type",
	[POLICY_REFUSE_NO_CURRENT] = "current value unknown",
	NULL,
};

static const char *const action_names[] = { "deny", "allow", NULL };
static const char *const outside_names[] = { "drop", "clamp", "flag", NULL };

/* One rule of either direction, as loaded. */
struct rule {
	char path[24];
	char *points;
	char *adapter;
	char *unit;
	int action;
	bool has_range;
	double min, max;
	int outside;
	bool has_deadband, deadband_pct;
	double deadband;
	bool has_step;
	double max_step;
	long long min_interval_ms;
	char *alias;
	uint64_t hits, drops, refusals; /* atomic */
};

struct policy {
	struct rule *up, *down;
	size_t nup, ndown;
	const struct point *const *points; /* borrowed: the gateway's table outlives the policy */
	size_t npoints;
	int32_t *up_rule;   /* per point: deciding uplink rule, -1 = default deny */
	int32_t *down_rule; /* per point: deciding downlink rule, -1 = default deny */
	size_t nadapters;
	uint8_t (*fc)[128]; /* per adapter: function codes allowed */
};

struct point_state {
	bool has_sent;
	double last_value;
	uint64_t last_hash; /* strings and bools: what was last sent */
	int64_t last_sent_ms;
	bool has_written;
	int64_t last_write_ms;
};

struct policy_state {
	struct point_state *pts;
	size_t n;
};

/* ---- loading ---- */

struct range_conf {
	double min, max;
	int outside;
};

/* min and max, both required; an uplink range also says what happens outside it. */
#define RANGE_BOUND_KEYS                                                                           \
	{ .name = "min",                                                                           \
	  .kind = CONF_DOUBLE,                                                                     \
	  .required = true,                                                                        \
	  .offset = offsetof(struct range_conf, min) },                                            \
	{                                                                                          \
		.name = "max", .kind = CONF_DOUBLE, .required = true,                              \
		.offset = offsetof(struct range_conf, max)                                         \
	}

static const struct conf_key uplink_range_keys[] = {
	RANGE_BOUND_KEYS,
	{ .name = "outside",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct range_conf, outside),
	  .choices = outside_names,
	  .expect = "outside" },
	{ .name = NULL },
};

static const struct conf_key downlink_range_keys[] = {
	RANGE_BOUND_KEYS,
	{ .name = NULL },
};

struct deadband_conf {
	double abs, pct;
};

static const struct conf_key deadband_keys[] = {
	{ .name = "abs",
	  .kind = CONF_DOUBLE,
	  .offset = offsetof(struct deadband_conf, abs),
	  .dmin = 0,
	  .dmax = 1e300,
	  .expect = "a non-negative number" },
	{ .name = "pct",
	  .kind = CONF_DOUBLE,
	  .offset = offsetof(struct deadband_conf, pct),
	  .dmin = 0,
	  .dmax = 1e6,
	  .expect = "a non-negative percentage" },
	{ .name = NULL },
};

#define RULE_COMMON_KEYS                                                                           \
	{ .name = "points",                                                                        \
	  .kind = CONF_STRING,                                                                     \
	  .required = true,                                                                        \
	  .offset = offsetof(struct rule, points),                                                 \
	  .expect = "a glob of point names" },                                                     \
		{ .name = "adapter",                                                               \
		  .kind = CONF_STRING,                                                             \
		  .offset = offsetof(struct rule, adapter),                                        \
		  .expect = "an adapter name" },                                                   \
		{ .name = "unit",                                                                  \
		  .kind = CONF_STRING,                                                             \
		  .offset = offsetof(struct rule, unit),                                           \
		  .expect = "an engineering unit" },                                               \
		{ .name = "action",                                                                \
		  .kind = CONF_ENUM,                                                               \
		  .required = true,                                                                \
		  .offset = offsetof(struct rule, action),                                         \
		  .choices = action_names,                                                         \
		  .expect = "action" },                                                            \
		{ .name = "range", .kind = CONF_OBJECT },                                          \
	{                                                                                          \
		.name = "min_interval_ms", .kind = CONF_INT,                                       \
		.offset = offsetof(struct rule, min_interval_ms), .size = sizeof(long long),       \
		.min = 0, .max = 86400000, .expect = "milliseconds"                                \
	}

static const struct conf_key uplink_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "deadband", .kind = CONF_OBJECT },
	{ .name = "alias",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct rule, alias),
	  .expect = "a name" },
	{ .name = NULL },
};

static const struct conf_key downlink_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "max_step",
	  .kind = CONF_DOUBLE,
	  .offset = offsetof(struct rule, max_step),
	  .dmin = 0,
	  .dmax = 1e300,
	  .expect = "a non-negative number" },
	{ .name = NULL },
};

struct top_conf {
	long long version;
};

static const struct conf_key top_keys[] = {
	{ .name = "version",
	  .kind = CONF_INT,
	  .required = true,
	  .offset = offsetof(struct top_conf, version),
	  .size = sizeof(long long),
	  .min = 1,
	  .max = 1,
	  .expect = "policy format version 1" },
	{ .name = "connections",
	  .kind = CONF_ARRAY,
	  .required = true,
	  .expect = "the broker endpoints the uplink may use, as \"host:port\"" },
	{ .name = "function_codes", .kind = CONF_OBJECT },
	{ .name = "uplink",
	  .kind = CONF_ARRAY,
	  .required = true,
	  .expect = "an array of uplink rules" },
	{ .name = "downlink", .kind = CONF_ARRAY, .expect = "an array of downlink rules" },
	{ .name = NULL },
};

static void rules_free(struct rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].points);
		free(r[i].adapter);
		free(r[i].unit);
		free(r[i].alias);
	}
	free(r);
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	rules_free(p->up, p->nup);
	rules_free(p->down, p->ndown);
	free(p->up_rule);
	free(p->down_rule);
	free(p->fc);
	free(p);
}

/* Reads one rule; 'uplink' selects the key tables. Returns the errors added. */
static int read_rule(struct conf *c, const cJSON *obj, struct rule *r, bool uplink,
		     const char *const *adapters, size_t nadapters)
{
	const cJSON *range, *deadband;
	char sub[64];
	int errors;

	r->min_interval_ms = 0;
	errors = conf_read_object(c, obj, r->path, uplink ? uplink_keys : downlink_keys, r);
	if (errors != 0 || !cJSON_IsObject(obj))
		return errors;
	if (cJSON_GetObjectItemCaseSensitive(obj, "max_step") != NULL) {
		r->has_step = true;
		if (r->max_step <= 0) {
			snprintf(sub, sizeof(sub), "%s.max_step", r->path);
			conf_error(c, sub,
				   "%g would refuse every write (expected a number above 0)",
				   r->max_step);
			errors++;
		}
	}
	if (r->adapter != NULL) {
		bool known = false;

		for (size_t i = 0; i < nadapters; i++)
			known |= strcmp(adapters[i], r->adapter) == 0;
		if (!known) {
			char list[256] = "";
			size_t used = 0;

			for (size_t i = 0; i < nadapters && used < sizeof(list); i++)
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
							 i ? ", " : "", adapters[i]);
			snprintf(sub, sizeof(sub), "%s.adapter", r->path);
			conf_error(c, sub, "unknown adapter \"%s\" (expected one of %s)",
				   r->adapter, list);
			errors++;
		}
	}
	range = cJSON_GetObjectItemCaseSensitive(obj, "range");
	if (range != NULL) {
		struct range_conf rc = { .outside = POLICY_OUTSIDE_DROP };

		snprintf(sub, sizeof(sub), "%s.range", r->path);
		if (conf_read_object(c, range, sub,
				     uplink ? uplink_range_keys : downlink_range_keys, &rc) != 0) {
			errors++;
		} else if (rc.min > rc.max) {
			snprintf(sub, sizeof(sub), "%s.range.min", r->path);
			conf_error(c, sub, "%g is above max %g (expected min <= max)", rc.min,
				   rc.max);
			errors++;
		} else {
			r->has_range = true;
			r->min = rc.min;
			r->max = rc.max;
			r->outside = rc.outside;
		}
	}
	deadband = uplink ? cJSON_GetObjectItemCaseSensitive(obj, "deadband") : NULL;
	if (deadband != NULL) {
		struct deadband_conf dc = { .abs = -1, .pct = -1 };

		snprintf(sub, sizeof(sub), "%s.deadband", r->path);
		if (conf_read_object(c, deadband, sub, deadband_keys, &dc) != 0) {
			errors++;
		} else if ((dc.abs >= 0) == (dc.pct >= 0)) {
			conf_error(c, sub, "expected exactly one of \"abs\" or \"pct\"");
			errors++;
		} else {
			r->has_deadband = true;
			r->deadband_pct = dc.pct >= 0;
			r->deadband = dc.pct >= 0 ? dc.pct : dc.abs;
		}
	}
	if (r->action == POLICY_DENY && (r->has_range || r->has_deadband || r->has_step ||
					 r->min_interval_ms != 0 || r->alias != NULL)) {
		conf_error(
			c, r->path,
			"a deny rule takes no range, deadband, max_step, min_interval_ms or alias "
			"(they only shape what an allow rule lets through)");
		errors++;
	}
	if (r->alias != NULL && !conf_valid_name(r->alias)) {
		snprintf(sub, sizeof(sub), "%s.alias", r->path);
		conf_error(c, sub, "invalid alias \"%s\" (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
			   r->alias);
		errors++;
	}
	return errors;
}

static int read_rules(struct conf *c, const cJSON *arr, const char *name, bool uplink,
		      struct rule **out, size_t *nout, const char *const *adapters,
		      size_t nadapters)
{
	const cJSON *item;
	size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
	int errors = 0;

	*out = calloc(n ? n : 1, sizeof(**out));
	if (*out == NULL) {
		conf_error(c, name, "out of memory");
		return 1;
	}
	cJSON_ArrayForEach (item, arr) {
		struct rule *r = &(*out)[i];

		snprintf(r->path, sizeof(r->path), "%s[%zu]", name, i);
		i++;
		*nout = i;
		errors += read_rule(c, item, r, uplink, adapters, nadapters);
	}
	return errors;
}

static int read_connections(struct conf *c, const cJSON *arr, const char *endpoint)
{
	const cJSON *item;
	bool listed = false;
	char path[48], list[512] = "";
	size_t i = 0, used = 0;
	int errors = 0;

	if (cJSON_GetArraySize(arr) == 0) {
		conf_error(c, "connections", "empty (expected at least the uplink's broker, %s)",
			   endpoint);
		return 1;
	}
	cJSON_ArrayForEach (item, arr) {
		const char *colon;
		char *end = NULL;
		long port;

		snprintf(path, sizeof(path), "connections[%zu]", i++);
		if (!cJSON_IsString(item)) {
			conf_error(c, path, "expected \"host:port\"");
			errors++;
			continue;
		}
		colon = strrchr(item->valuestring, ':');
		port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (colon == NULL || colon == item->valuestring || end == colon + 1 ||
		    *end != '\0' || port < 1 || port > 65535) {
			conf_error(c, path, "\"%s\" is not \"host:port\"", item->valuestring);
			errors++;
			continue;
		}
		listed |= strcmp(item->valuestring, endpoint) == 0;
		if (used < sizeof(list))
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
						 used ? ", " : "", item->valuestring);
	}
	if (errors == 0 && !listed) {
		conf_error(c, "connections",
			   "the uplink's broker %s is not listed (the policy allows only %s)",
			   endpoint, list);
		errors++;
	}
	return errors;
}

static int read_function_codes(struct conf *c, struct policy *p, const cJSON *obj,
			       const char *const *adapters, size_t nadapters)
{
	const cJSON *entry;
	int errors = 0;

	for (size_t a = 0; a < nadapters; a++)
		for (unsigned fc = 1; fc <= 4; fc++)
			p->fc[a][fc] = 1;
	cJSON_ArrayForEach (entry, obj) {
		char path[96];
		size_t a = nadapters;
		const cJSON *code;

		snprintf(path, sizeof(path), "function_codes.%s", entry->string);
		for (size_t i = 0; i < nadapters; i++) {
			if (strcmp(adapters[i], entry->string) == 0)
				a = i;
		}
		if (a == nadapters) {
			conf_error(c, path, "unknown adapter \"%s\"", entry->string);
			errors++;
			continue;
		}
		if (!cJSON_IsArray(entry)) {
			conf_error(c, path, "expected an array of function codes");
			errors++;
			continue;
		}
		memset(p->fc[a], 0, sizeof(p->fc[a]));
		{
			size_t k = 0;

			cJSON_ArrayForEach (code, entry) {
				char at[112];

				snprintf(at, sizeof(at), "%s[%zu]", path, k++);
				if (!cJSON_IsNumber(code) ||
				    code->valuedouble != floor(code->valuedouble) ||
				    code->valuedouble < 1 || code->valuedouble > 127) {
					conf_error(c, at,
						   "not a function code (expected an integer "
						   "from 1 to 127)");
					errors++;
					continue;
				}
				p->fc[a][(int)code->valuedouble] = 1;
			}
		}
	}
	return errors;
}

static bool rule_matches(const struct rule *r, const struct point *pt)
{
	size_t alen;

	if (fnmatch(r->points, pt->name, 0) != 0)
		return false;
	if (r->adapter != NULL) {
		alen = strlen(r->adapter);
		if (strncmp(pt->name, r->adapter, alen) != 0 || pt->name[alen] != '/')
			return false;
	}
	return r->unit == NULL || strcmp(r->unit, pt->unit) == 0;
}

/* Finds each point's deciding rule; every rule must decide at least one point. */
static int compile_direction(struct conf *c, struct policy *p, const struct rule *rules,
			     size_t nrules, int32_t *decide)
{
	size_t *count = calloc(nrules ? nrules : 1, sizeof(*count));
	int errors = 0;

	if (count == NULL) {
		conf_error(c, "", "out of memory");
		return 1;
	}
	for (size_t i = 0; i < p->npoints; i++) {
		decide[i] = -1;
		for (size_t r = 0; r < nrules; r++) {
			if (rule_matches(&rules[r], p->points[i])) {
				decide[i] = (int32_t)r;
				count[r]++;
				break;
			}
		}
	}
	for (size_t r = 0; r < nrules; r++) {
		char path[48];

		snprintf(path, sizeof(path), "%s.points", rules[r].path);
		if (count[r] == 0) {
			long taken_by = -1;
			bool matches = false;

			/* Say which: a typo (matches nothing) or an order mistake (shadowed). */
			for (size_t i = 0; i < p->npoints && !matches; i++) {
				if (rule_matches(&rules[r], p->points[i])) {
					matches = true;
					taken_by = decide[i];
				}
			}
			if (!matches)
				conf_error(c, path, "\"%s\" decides no point: it matches none",
					   rules[r].points);
			else
				conf_error(c, path,
					   "\"%s\" decides no point: every point it matches is "
					   "decided earlier, by %s",
					   rules[r].points, rules[taken_by].path);
			errors++;
		} else if (rules[r].alias != NULL && count[r] != 1) {
			conf_error(c, path, "\"%s\" decides %zu points, but an alias names one",
				   rules[r].points, count[r]);
			errors++;
		}
	}
	free(count);
	return errors;
}

static int check_compiled(struct conf *c, struct policy *p)
{
	int errors = 0;

	for (size_t i = 0; i < p->npoints; i++) {
		const struct rule *d = p->down_rule[i] >= 0 ? &p->down[p->down_rule[i]] : NULL;
		const struct rule *u = p->up_rule[i] >= 0 ? &p->up[p->up_rule[i]] : NULL;
		char path[48];

		if (d != NULL && d->action == POLICY_ALLOW && !p->points[i]->writable) {
			snprintf(path, sizeof(path), "%s.points", d->path);
			conf_error(c, path, "%s is not writable in the adapter map",
				   p->points[i]->name);
			errors++;
		}
		if (u == NULL || u->alias == NULL)
			continue;
		for (size_t j = 0; j < p->npoints; j++) {
			const struct rule *o = p->up_rule[j] >= 0 ? &p->up[p->up_rule[j]] : NULL;

			if (strcmp(p->points[j]->name, u->alias) == 0 ||
			    (j != i && o != NULL && o->alias != NULL &&
			     strcmp(o->alias, u->alias) == 0 && j < i)) {
				snprintf(path, sizeof(path), "%s.alias", u->path);
				conf_error(c, path, "\"%s\" is already the name of another point",
					   u->alias);
				errors++;
				break;
			}
		}
	}
	return errors;
}

struct policy *policy_load(struct conf *c, const char *text, size_t len,
			   const struct point *const *points, size_t npoints,
			   const char *const *adapter_names, size_t nadapters, const char *endpoint)
{
	struct top_conf top = { 0 };
	struct policy *p = NULL;
	const cJSON *item;
	const char *err_at = NULL;
	cJSON *root = NULL;
	char *json = strndup(text, len); /* cJSON wants the text NUL-terminated */
	size_t before = c->nerrors;

	if (json == NULL) {
		conf_error(c, "", "out of memory");
		return NULL;
	}
	root = cJSON_ParseWithOpts(json, &err_at, 1);
	if (root == NULL) {
		size_t line = 1;

		for (const char *q = json; err_at != NULL && q < err_at && *q; q++)
			line += *q == '\n';
		conf_error(c, "", "line %zu: invalid JSON", line);
		goto out;
	}
	if (conf_read_object(c, root, "", top_keys, &top) != 0)
		goto out;
	p = calloc(1, sizeof(*p));
	if (p == NULL || (p->fc = calloc(nadapters ? nadapters : 1, sizeof(*p->fc))) == NULL) {
		conf_error(c, "", "out of memory");
		goto out;
	}
	p->points = points;
	p->npoints = npoints;
	p->nadapters = nadapters;
	read_connections(c, cJSON_GetObjectItemCaseSensitive(root, "connections"), endpoint);
	read_function_codes(c, p, cJSON_GetObjectItemCaseSensitive(root, "function_codes"),
			    adapter_names, nadapters);
	read_rules(c, cJSON_GetObjectItemCaseSensitive(root, "uplink"), "uplink", true, &p->up,
		   &p->nup, adapter_names, nadapters);
	item = cJSON_GetObjectItemCaseSensitive(root, "downlink");
	if (item != NULL)
		read_rules(c, item, "downlink", false, &p->down, &p->ndown, adapter_names,
			   nadapters);
	if (c->nerrors != before)
		goto out;
	p->up_rule = malloc((npoints ? npoints : 1) * sizeof(*p->up_rule));
	p->down_rule = malloc((npoints ? npoints : 1) * sizeof(*p->down_rule));
	if (p->up_rule == NULL || p->down_rule == NULL) {
		conf_error(c, "", "out of memory");
		goto out;
	}
	compile_direction(c, p, p->up, p->nup, p->up_rule);
	compile_direction(c, p, p->down, p->ndown, p->down_rule);
	if (c->nerrors == before)
		check_compiled(c, p);
out:
	cJSON_Delete(root);
	free(json);
	if (c->nerrors != before) {
		policy_free(p);
		return NULL;
	}
	return p;
}

size_t policy_rule_count(const struct policy *p)
{
	return p == NULL ? 0 : p->nup + p->ndown;
}

/* ---- state ---- */

struct policy_state *policy_state_new(size_t npoints)
{
	struct policy_state *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->pts = calloc(npoints ? npoints : 1, sizeof(*st->pts));
	if (st->pts == NULL) {
		free(st);
		return NULL;
	}
	st->n = npoints;
	return st;
}

void policy_state_free(struct policy_state *st)
{
	if (st == NULL)
		return;
	free(st->pts);
	free(st);
}

/* ---- deciding ---- */

bool policy_uplink_allowed(const struct policy *p, uint32_t point_id)
{
	return point_id < p->npoints && p->up_rule[point_id] >= 0 &&
	       p->up[p->up_rule[point_id]].action == POLICY_ALLOW;
}

/* A number for range and deadband; false for strings and empty values. */
static bool numeric(const struct value *v, double *out)
{
	switch (v->kind) {
	case VALUE_KIND_INT:
		*out = (double)v->i;
		return true;
	case VALUE_KIND_UINT:
		*out = (double)v->u;
		return true;
	case VALUE_KIND_FLOAT:
		*out = v->f;
		return true;
	case VALUE_KIND_BOOL:
		*out = v->b ? 1 : 0;
		return true;
	default:
		return false;
	}
}

/* FNV-1a of what a non-numeric value looks like, for "send only on change". */
static uint64_t value_hash(const struct value *v)
{
	uint64_t h = 1469598103934665603ULL;

	if (v->kind == VALUE_KIND_STRING) {
		for (const unsigned char *s = (const unsigned char *)v->s; *s; s++)
			h = (h ^ *s) * 1099511628211ULL;
	} else if (v->kind == VALUE_KIND_BOOL) {
		h = (h ^ (v->b ? 1u : 2u)) * 1099511628211ULL;
	}
	return h;
}

#define COUNT(x) __atomic_add_fetch(&(x), 1, __ATOMIC_RELAXED)

enum policy_verdict policy_uplink_decide(const struct policy *p, struct policy_state *st,
					 struct sample *s, int64_t now_ms)
{
	struct rule *r;
	struct point_state *ps;
	enum policy_verdict verdict = POLICY_SEND;
	double v;
	bool is_num;

	if (s->point_id >= p->npoints || p->up_rule[s->point_id] < 0)
		return POLICY_DROP_DENIED;
	r = &p->up[p->up_rule[s->point_id]];
	COUNT(r->hits);
	if (r->action != POLICY_ALLOW) {
		COUNT(r->drops);
		return POLICY_DROP_DENIED;
	}
	if (s->quality != QUALITY_GOOD)
		return POLICY_SEND;
	ps = &st->pts[s->point_id];
	is_num = s->value.kind != VALUE_KIND_BOOL && numeric(&s->value, &v);
	if (r->has_range && is_num && (v < r->min || v > r->max)) {
		if (r->outside == POLICY_OUTSIDE_DROP) {
			COUNT(r->drops);
			return POLICY_DROP_RANGE;
		}
		if (r->outside == POLICY_OUTSIDE_CLAMP) {
			double bound = v < r->min ? r->min : r->max;

			if (s->value.kind == VALUE_KIND_INT && bound == floor(bound) &&
			    fabs(bound) < 9.2e18)
				s->value.i = (int64_t)bound;
			else if (s->value.kind == VALUE_KIND_UINT && bound == floor(bound) &&
				 bound >= 0 && bound < 1.8e19)
				s->value.u = (uint64_t)bound;
			else
				s->value = (struct value){ .kind = VALUE_KIND_FLOAT, .f = bound };
			v = bound;
			verdict = POLICY_SEND_CLAMPED;
		} else {
			verdict = POLICY_SEND_FLAGGED;
		}
	}
	if (ps->has_sent && r->min_interval_ms > 0 &&
	    now_ms - ps->last_sent_ms < r->min_interval_ms) {
		COUNT(r->drops);
		return POLICY_DROP_RATE;
	}
	if (ps->has_sent && r->has_deadband) {
		bool changed;

		if (is_num && r->deadband_pct && ps->last_value == 0) {
			changed = v != 0; /* no percentage of zero: any change counts */
		} else if (is_num) {
			double limit = r->deadband_pct ? r->deadband / 100.0 * fabs(ps->last_value)
						       : r->deadband;

			/* Exactly at the threshold is a change worth sending. */
			changed = fabs(v - ps->last_value) >= limit;
		} else {
			changed = value_hash(&s->value) != ps->last_hash;
		}
		if (!changed) {
			COUNT(r->drops);
			return POLICY_DROP_DEADBAND;
		}
	}
	ps->has_sent = true;
	ps->last_sent_ms = now_ms;
	if (is_num)
		ps->last_value = v;
	else
		ps->last_hash = value_hash(&s->value);
	return verdict;
}

const char *policy_uplink_name(const struct policy *p, const struct point *const *points,
			       uint32_t point_id)
{
	int32_t r = point_id < p->npoints ? p->up_rule[point_id] : -1;

	if (r >= 0 && p->up[r].action == POLICY_ALLOW && p->up[r].alias != NULL)
		return p->up[r].alias;
	return points[point_id]->name;
}

enum policy_refusal policy_downlink_decide(const struct policy *p, struct policy_state *st,
					   uint32_t point_id, const struct value *requested,
					   const struct value *current, int64_t now_ms,
					   char *reason, size_t reason_len)
{
	const struct point *pt;
	struct point_state *ps;
	struct rule *r;
	double v, cur;

	if (point_id >= p->npoints) {
		snprintf(reason, reason_len, "unknown point");
		return POLICY_REFUSE_NO_RULE;
	}
	pt = p->points[point_id];
	/* Only points the adapter map marks writable can be written at all. */
	if (!pt->writable) {
		if (p->down_rule[point_id] >= 0)
			COUNT(p->down[p->down_rule[point_id]].refusals);
		snprintf(reason, reason_len, "%s is not writable in the adapter map", pt->name);
		return POLICY_REFUSE_NOT_WRITABLE;
	}
	if (p->down_rule[point_id] < 0) {
		snprintf(reason, reason_len, "no downlink rule allows %s (default deny)", pt->name);
		return POLICY_REFUSE_NO_RULE;
	}
	r = &p->down[p->down_rule[point_id]];
	COUNT(r->hits);
	if (r->action != POLICY_ALLOW) {
		COUNT(r->refusals);
		snprintf(reason, reason_len, "%s denies writes to %s", r->path, pt->name);
		return POLICY_REFUSE_DENIED;
	}
	if (!numeric(requested, &v) || !isfinite(v)) {
		if ((r->has_range || r->has_step) || requested->kind != VALUE_KIND_STRING ||
		    pt->type != VALUE_STRING) {
			COUNT(r->refusals);
			snprintf(reason, reason_len, "%s takes a finite number (%s)", pt->name,
				 r->path);
			return POLICY_REFUSE_TYPE;
		}
	} else {
		if (r->has_range && (v < r->min || v > r->max)) {
			COUNT(r->refusals);
			snprintf(reason, reason_len,
				 "value %.15g is %s the %s %.15g of %s (%s.range.%s)", v,
				 v < r->min ? "below" : "above", v < r->min ? "minimum" : "maximum",
				 v < r->min ? r->min : r->max, r->path, r->path,
				 v < r->min ? "min" : "max");
			return POLICY_REFUSE_RANGE;
		}
		if (r->has_step) {
			if (current == NULL || !numeric(current, &cur)) {
				COUNT(r->refusals);
				snprintf(reason, reason_len,
					 "the current value of %s is unknown, so max_step %.15g of "
					 "%s cannot be checked",
					 pt->name, r->max_step, r->path);
				return POLICY_REFUSE_NO_CURRENT;
			}
			if (fabs(v - cur) > r->max_step) {
				COUNT(r->refusals);
				snprintf(reason, reason_len,
					 "a step from %.15g to %.15g is larger than max_step %.15g "
					 "of "
					 "%s (%s.max_step)",
					 cur, v, r->max_step, r->path, r->path);
				return POLICY_REFUSE_STEP;
			}
		}
	}
	ps = &st->pts[point_id];
	if (ps->has_written && r->min_interval_ms > 0 &&
	    now_ms - ps->last_write_ms < r->min_interval_ms) {
		COUNT(r->refusals);
		snprintf(reason, reason_len,
			 "%lld ms since the last write of %s; %s allows one every %lld ms "
			 "(%s.min_interval_ms)",
			 (long long)(now_ms - ps->last_write_ms), pt->name, r->path,
			 r->min_interval_ms, r->path);
		return POLICY_REFUSE_RATE;
	}
	ps->has_written = true;
	ps->last_write_ms = now_ms;
	snprintf(reason, reason_len, "allowed by %s", r->path);
	return POLICY_ACCEPT;
}

bool policy_downlink_needs_current(const struct policy *p, uint32_t point_id)
{
	const struct rule *r;

	if (p == NULL || point_id >= p->npoints || p->down_rule[point_id] < 0)
		return false;
	r = &p->down[p->down_rule[point_id]];
	return r->action == POLICY_ALLOW && r->has_step;
}

bool policy_function_allowed(const struct policy *p, size_t adapter_index, unsigned fc)
{
	return adapter_index < p->nadapters && fc < 128 && p->fc[adapter_index][fc];
}

/* ---- explaining ---- */

size_t policy_explain(const struct policy *p, const struct point *const *points, uint32_t point_id,
		      const struct value *value, char *buf, size_t cap)
{
	const struct rule *u, *d;
	size_t n = 0;
	int w;

#define PUT(...)                                                                                   \
	do {                                                                                       \
		w = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__);                         \
		if (w > 0)                                                                         \
			n += (size_t)w;                                                            \
	} while (0)

	if (point_id >= p->npoints) {
		PUT("unknown point\n");
		return n;
	}
	u = p->up_rule[point_id] >= 0 ? &p->up[p->up_rule[point_id]] : NULL;
	d = p->down_rule[point_id] >= 0 ? &p->down[p->down_rule[point_id]] : NULL;
	PUT("%s\n", points[point_id]->name);
	if (u == NULL) {
		PUT("  uplink:   no rule matches: denied (default deny)\n");
	} else if (u->action == POLICY_DENY) {
		PUT("  uplink:   %s (\"%s\") denies it\n", u->path, u->points);
	} else {
		PUT("  uplink:   %s (\"%s\") allows it", u->path, u->points);
		if (u->has_range)
			PUT("; range %.15g..%.15g, outside: %s", u->min, u->max,
			    outside_names[u->outside]);
		if (u->has_deadband)
			PUT("; deadband %s %.15g", u->deadband_pct ? "pct" : "abs", u->deadband);
		if (u->min_interval_ms > 0)
			PUT("; at most every %lld ms", u->min_interval_ms);
		if (u->alias != NULL)
			PUT("; leaves as \"%s\"", u->alias);
		PUT("\n");
	}
	if (d == NULL)
		PUT("  downlink: no rule allows writes (default deny)\n");
	else if (d->action == POLICY_DENY)
		PUT("  downlink: %s (\"%s\") denies writes\n", d->path, d->points);
	else {
		PUT("  downlink: %s (\"%s\") allows writes", d->path, d->points);
		if (d->has_range)
			PUT("; range %.15g..%.15g", d->min, d->max);
		if (d->has_step)
			PUT("; max_step %.15g", d->max_step);
		if (d->min_interval_ms > 0)
			PUT("; at most every %lld ms", d->min_interval_ms);
		PUT("\n");
	}
	if (value != NULL) {
		/* Decide on copies: explaining must not change counters or state. */
		struct policy copy = *p;
		struct rule up_copy = u ? *u : (struct rule){ 0 };
		struct rule down_copy = d ? *d : (struct rule){ 0 };
		struct point_state ps = { 0 };
		struct policy_state st = { .pts = &ps, .n = 1 };
		int32_t up_rule = u ? 0 : -1, down_rule = d ? 0 : -1;
		const struct point *one[1] = { points[point_id] };
		struct sample s = { .point_id = 0, .quality = QUALITY_GOOD, .value = *value };
		struct value none = { .kind = VALUE_KIND_NONE };
		char reason[256];
		enum policy_verdict verdict;
		enum policy_refusal refusal;

		copy.up = &up_copy;
		copy.down = &down_copy;
		copy.up_rule = &up_rule;
		copy.down_rule = &down_rule;
		copy.points = one;
		copy.npoints = 1;
		verdict = policy_uplink_decide(&copy, &st, &s, 0);
		PUT("  value:    uplink: %s", policy_verdict_names[verdict]);
		if (verdict == POLICY_SEND_CLAMPED) {
			double c = 0;

			numeric(&s.value, &c);
			PUT(" to %.15g", c);
		}
		refusal = policy_downlink_decide(&copy, &st, 0, value, &none, 0, reason,
						 sizeof(reason));
		PUT("; downlink: %s (%s)\n", refusal == POLICY_ACCEPT ? "accepted" : "refused",
		    reason);
	}
#undef PUT
	return n;
}

size_t policy_rule_stats(const struct policy *p, struct policy_rule_stats *out, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < p->nup + p->ndown; i++, n++) {
		const struct rule *r = i < p->nup ? &p->up[i] : &p->down[i - p->nup];

		if (n >= cap)
			continue;
		snprintf(out[n].path, sizeof(out[n].path), "%s", r->path);
		out[n].hits = __atomic_load_n(&r->hits, __ATOMIC_RELAXED);
		out[n].drops = __atomic_load_n(&r->drops, __ATOMIC_RELAXED);
		out[n].refusals = __atomic_load_n(&r->refusals, __ATOMIC_RELAXED);
	}
	return n;
}
