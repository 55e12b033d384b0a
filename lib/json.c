// SPDX-License-Identifier: MIT
/*
 * JSON output in qemu-img's layout (see json.h).
 */
#include <errno.h>

#include "json.h"

int json_print(FILE *f, const json_t *v)
{
	if (json_dumpf(v, f, JSON_INDENT(4) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) < 0 ||
	    fputc('\n', f) == EOF)
		return -EIO;
	return 0;
}

int json_print_compact(FILE *f, const json_t *v)
{
	if (json_dumpf(v, f, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) < 0 ||
	    fputc('\n', f) == EOF)
		return -EIO;
	return 0;
}

int json_obj_set(json_t *obj, const char *key, json_t *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_set_new(obj, key, v) < 0)
		return -ENOMEM;
	return 0;
}
