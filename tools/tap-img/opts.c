/* SPDX-License-Identifier: MIT */
/*
 * -o option strings (see opts.h).
 */
#include <errno.h>
#include <string.h>

#include "opts.h"
#include "tap-img.h"

int img_opts_split(const char *verb, struct img_opts *o, char *s)
{
	while (s && *s) {
		char *comma = strchr(s, ',');
		char *eq;
		struct drv_opt *opt;

		if (comma)
			*comma = '\0';
		eq = strchr(s, '=');
		if (!eq || eq == s) {
			img_err(verb, "invalid option '%s' (expected KEY=VALUE)", s);
			return -EINVAL;
		}
		if (o->nr == IMG_MAX_OPTS) {
			img_err(verb, "too many options (at most %d)", IMG_MAX_OPTS);
			return -EINVAL;
		}
		*eq = '\0';
		opt = &o->opt[o->nr++];
		*opt = (struct drv_opt){ .key = s, .value = eq + 1 };
		s = comma ? comma + 1 : NULL;
	}
	return 0;
}

int img_opts_check_used(const char *verb, const struct img_opts *o, const char *path,
			const char *fmt)
{
	unsigned i;

	for (i = 0; i < o->nr; i++) {
		if (!o->opt[i].used) {
			img_err(verb, "%s: invalid parameter '%s' for format %s", path,
				o->opt[i].key, fmt);
			return -EINVAL;
		}
	}
	return 0;
}
