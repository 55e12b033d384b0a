// SPDX-License-Identifier: MIT
/*
 * Open-time driver options (driver.h): the one parser of "key=value,..."
 * and the check of each option against the driver's table.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "log.h"
#include "optval.h"

int drv_opts_parse(const char *s, struct drv_opt **out, unsigned *nr)
{
	size_t len = strlen(s), items = 1, i;
	struct drv_opt *opts;
	char *copy, *p;

	for (i = 0; i < len; i++)
		items += s[i] == ',';
	opts = calloc(1, items * sizeof(*opts) + len + 1);
	if (!opts)
		return -ENOMEM;
	copy = (char *)(opts + items);
	memcpy(copy, s, len + 1);
	for (i = 0, p = copy; p; i++) {
		char *next = strchr(p, ','), *eq;

		if (next)
			*next++ = '\0';
		eq = strchr(p, '=');
		if (!eq || eq == p) {
			log_err("option '%s': expected KEY=VALUE", p);
			free(opts);
			return -EINVAL;
		}
		*eq = '\0';
		opts[i] = (struct drv_opt){ .key = p, .value = eq + 1 };
		p = next;
	}
	*out = opts;
	*nr = (unsigned)items;
	return 0;
}

static const struct drv_opt_desc *find_desc(const struct drv_opt_desc *d, const char *key)
{
	for (; d && d->name; d++) {
		if (strcmp(d->name, key) == 0)
			return d;
	}
	return NULL;
}

static int check_value(const struct drv_opt_desc *d, const char *value)
{
	uint64_t n;
	bool b;

	switch (d->type) {
	case DRV_OPT_BOOL:
		return optval_bool(value, &b);
	case DRV_OPT_NUMBER:
		return optval_number(value, &n);
	case DRV_OPT_SIZE:
		return optval_size(value, &n);
	case DRV_OPT_STRING:
		break;
	}
	return 0;
}

int drv_opts_check(const struct drv_ops *ops, const char *path, const struct drv_opt *opts,
		   unsigned nr, unsigned *bad)
{
	static const char *const type_names[] = {
		[DRV_OPT_STRING] = "a string",
		[DRV_OPT_BOOL] = "'on' or 'off'",
		[DRV_OPT_NUMBER] = "a number",
		[DRV_OPT_SIZE] = "a size (k/M/G/T suffixes)",
	};
	const struct drv_opt_desc *d;
	unsigned i;

	for (i = 0; i < nr; i++) {
		d = find_desc(ops->open_opts, opts[i].key);
		if (bad)
			*bad = i;
		if (!d) {
			log_err("open %s: driver %s has no option '%s'", path, ops->name,
				opts[i].key);
			return -EINVAL;
		}
		if (check_value(d, opts[i].value)) {
			log_err("open %s: option '%s' expects %s, not '%s'", path, opts[i].key,
				type_names[d->type], opts[i].value);
			return -EINVAL;
		}
	}
	return 0;
}

const char *drv_opts_get(const struct drv_image *img, const char *key)
{
	const char *v = NULL;
	unsigned i;

	for (i = 0; i < img->nr_opts; i++) {
		if (strcmp(img->opts[i].key, key) == 0)
			v = img->opts[i].value;
	}
	return v;
}
