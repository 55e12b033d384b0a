// SPDX-License-Identifier: MIT
/*
 * qemu-img's SNAPSHOT_PARAM, parsed as QEMU's internal_snapshot_opts are
 * (snapshot-param.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "qcow2/snapshot-load.h"
#include "snapshot-param.h"
#include "tap-img.h"

#define SNAPSHOT_OPT_BASE "snapshot."

/* The next comma-separated element of *@s, ",," unescaped; NULL at the end. */
static char *next_element(const char **s)
{
	const char *p = *s;
	char *out, *o;

	if (!*p)
		return NULL;
	out = malloc(strlen(p) + 1);
	if (!out)
		return NULL;
	for (o = out; *p; p++) {
		if (*p == ',' && p[1] == ',') {
			*o++ = *p++;
		} else if (*p == ',') {
			p++;
			break;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	*s = p;
	return out;
}

/* One KEY=VALUE element: snapshot.id or snapshot.name (a bare KEY is KEY=on). */
static int parse_element(const char *verb, char *el, struct img_snapshot_param *p)
{
	char *eq = strchr(el, '='), **slot;
	const char *value = "on";

	if (eq) {
		*eq = '\0';
		value = eq + 1;
	}
	if (strcmp(el, "snapshot.id") == 0) {
		slot = &p->id;
	} else if (strcmp(el, "snapshot.name") == 0) {
		slot = &p->name;
	} else {
		img_err(verb, "Invalid parameter '%s'", el);
		return -EINVAL;
	}
	if (!eq)
		img_err(verb,
			"warning: short-form boolean option '%s' deprecated\n"
			"Please use %s=on instead",
			el, el);
	free(*slot);
	*slot = strdup(value);
	return *slot ? 0 : -ENOMEM;
}

int img_snapshot_param_parse(const char *verb, const char *arg, struct img_snapshot_param *p)
{
	const char *s = arg;
	char *el;
	int err = 0;

	img_snapshot_param_fini(p);
	p->set = true;
	if (strncmp(arg, SNAPSHOT_OPT_BASE, strlen(SNAPSHOT_OPT_BASE)) != 0) {
		p->by_id_or_name = true;
		p->id_or_name = arg;
		return 0;
	}
	while (!err && *s) {
		el = next_element(&s);
		if (!el)
			return -ENOMEM;
		if (*el)
			err = parse_element(verb, el, p);
		free(el);
	}
	if (err == -EINVAL)
		img_err(verb, "Failed in parsing snapshot param '%s'", arg);
	return err;
}

int img_snapshot_param_load(const char *verb, const struct img_snapshot_param *p,
			    struct drv_image *img)
{
	const char *fmt = strcmp(img->ops->name, "nbd") == 0 ? "raw" : img->ops->name;
	int err;

	if (!p->set)
		return 0;
	err = p->by_id_or_name ? qcow2_snapshot_load_tmp_by_id_or_name(img, p->id_or_name)
			       : qcow2_snapshot_load_tmp(img, p->id, p->name);
	if (err == -ENOENT)
		img_err(verb, "Failed to load snapshot: Can't find snapshot");
	else if (err == -ENOTSUP)
		img_err(verb,
			"Failed to load snapshot: Block format '%s' used by device '' does not "
			"support temporarily loading internal snapshots",
			fmt);
	else if (err)
		img_err(verb, "Failed to load snapshot: %s", err_str(err));
	return err;
}

void img_snapshot_param_fini(struct img_snapshot_param *p)
{
	free(p->id);
	free(p->name);
	*p = (struct img_snapshot_param){ 0 };
}
