/* policy.c: loads the policy file and compiles its rules into one decision per point. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

struct rule {
	char *points; /* glob */
	enum policy_action action;
	uint64_t hits;
};

struct policy {
	struct rule *rules;
	size_t nrules;
	/* Compiled: per point, the index of the deciding rule (-1: default deny) and the decision.
	 */
	int32_t *uplink_rule;
	uint8_t *uplink_allow;
	size_t npoints;
};

static const char *const action_names[] = { "deny", "allow", NULL };

struct rule_conf {
	char *points;
	int action;
};

static const struct conf_key rule_keys[] = {
	{ .name = "points",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct rule_conf, points),
	  .expect = "a glob of point names" },
	{ .name = "action",
	  .kind = CONF_ENUM,
	  .required = true,
	  .offset = offsetof(struct rule_conf, action),
	  .choices = action_names,
	  .expect = "action" },
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
	{ .name = "uplink",
	  .kind = CONF_ARRAY,
	  .required = true,
	  .expect = "an array of uplink rules" },
	{ .name = NULL },
};

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nrules; i++)
		free(p->rules[i].points);
	free(p->rules);
	free(p->uplink_rule);
	free(p->uplink_allow);
	free(p);
}

static int compile(struct policy *p, struct conf *c, const struct point *const *points,
		   size_t npoints)
{
	uint8_t *used;
	int errors = 0;

	p->npoints = npoints;
	p->uplink_rule = malloc((npoints ? npoints : 1) * sizeof(*p->uplink_rule));
	p->uplink_allow = calloc(npoints ? npoints : 1, 1);
	used = calloc(p->nrules ? p->nrules : 1, 1);
	if (p->uplink_rule == NULL || p->uplink_allow == NULL || used == NULL) {
		free(used);
		conf_error(c, "", "out of memory");
		return 1;
	}
	for (size_t i = 0; i < npoints; i++) {
		p->uplink_rule[points[i]->id] = -1;
		for (size_t r = 0; r < p->nrules; r++) {
			if (fnmatch(p->rules[r].points, points[i]->name, 0) == 0) {
				p->uplink_rule[points[i]->id] = (int32_t)r;
				p->uplink_allow[points[i]->id] = p->rules[r].action == POLICY_ALLOW;
				used[r] = 1;
				break;
			}
		}
	}
	for (size_t r = 0; r < p->nrules; r++) {
		char path[64];

		if (used[r])
			continue;
		snprintf(path, sizeof(path), "uplink[%zu].points", r);
		if (p->rules[r].points == NULL)
			continue;
		conf_error(c, path,
			   "\"%s\" decides no point (it matches none, or earlier rules take every "
			   "point it matches)",
			   p->rules[r].points);
		errors++;
	}
	free(used);
	return errors;
}

struct policy *policy_load(struct conf *c, const char *file, const struct point *const *points,
			   size_t npoints)
{
	struct top_conf top = { 0 };
	struct policy *p = NULL;
	const cJSON *uplink, *item;
	const char *err_at;
	cJSON *root = NULL;
	char *text;
	size_t before = c->nerrors;
	size_t i = 0;

	text = gd_read_file(file);
	if (text == NULL) {
		conf_error(c, "", "cannot read policy: %s", strerror(errno));
		return NULL;
	}
	root = cJSON_ParseWithOpts(text, &err_at, 1);
	if (root == NULL) {
		size_t line = 1;

		for (const char *q = text; err_at != NULL && q < err_at && *q; q++)
			line += *q == '\n';
		conf_error(c, "", "line %zu: invalid JSON", line);
		goto out;
	}
	if (conf_read_object(c, root, "", top_keys, &top) != 0)
		goto out;
	p = calloc(1, sizeof(*p));
	uplink = cJSON_GetObjectItemCaseSensitive(root, "uplink");
	if (p == NULL || (p->rules = calloc((size_t)cJSON_GetArraySize(uplink) + 1,
					    sizeof(*p->rules))) == NULL) {
		conf_error(c, "", "out of memory");
		goto out;
	}
	cJSON_ArrayForEach (item, uplink) {
		struct rule_conf rc = { 0 };
		char path[64];

		snprintf(path, sizeof(path), "uplink[%zu]", i++);
		conf_read_object(c, item, path, rule_keys, &rc);
		p->rules[p->nrules++] = (struct rule){ .points = rc.points,
						       .action = (enum policy_action)rc.action };
	}
	if (c->nerrors == before)
		compile(p, c, points, npoints);
out:
	cJSON_Delete(root);
	free(text);
	if (c->nerrors != before) {
		policy_free(p);
		return NULL;
	}
	return p;
}

bool policy_uplink_allowed(const struct policy *p, uint32_t point_id)
{
	return point_id < p->npoints && p->uplink_allow[point_id];
}

int policy_uplink_rule(const struct policy *p, uint32_t point_id)
{
	return point_id < p->npoints ? p->uplink_rule[point_id] : -1;
}

size_t policy_rule_count(const struct policy *p)
{
	return p->nrules;
}
