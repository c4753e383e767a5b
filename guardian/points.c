/* points.c: which point a name means (its own name or the alias the policy gives it), and which
 * adapter holds it. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

long points_find(const struct gd_config *cfg, const char *const *names, const char *name)
{
	for (size_t i = 0; i < cfg->npoints; i++) {
		if (strcmp(cfg->points[i]->name, name) == 0 ||
		    (names != NULL && strcmp(names[i], name) == 0))
			return (long)i;
	}
	return -1;
}

struct adapter *points_adapter(const struct gd_config *cfg, uint32_t id, size_t *index)
{
	for (size_t i = 0; i < cfg->nadapters; i++) {
		struct adapter *a = cfg->adapters[i];

		if (a->npoints > 0 && id >= a->points[0].id && id <= a->points[a->npoints - 1].id) {
			*index = i;
			return a;
		}
	}
	return NULL;
}

const char **points_names_new(const struct gd_config *cfg, const struct policy *p)
{
	const char **names = calloc(cfg->npoints ? cfg->npoints : 1, sizeof(*names));

	if (names == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->npoints; i++)
		names[i] = policy_uplink_name(p, cfg->points, (uint32_t)i);
	return names;
}
