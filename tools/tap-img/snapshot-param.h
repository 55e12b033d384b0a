/* SPDX-License-Identifier: MIT */
/*
 * qemu-img's SNAPSHOT_PARAM (convert -l, measure -l): "snapshot.id=ID",
 * "snapshot.name=NAME" (comma-separated, ",," a literal comma), or a bare
 * ID_OR_NAME; and loading it on an opened source.
 */
#ifndef QTAP_TAP_IMG_SNAPSHOT_PARAM_H
#define QTAP_TAP_IMG_SNAPSHOT_PARAM_H

#include <stdbool.h>

#include "driver.h"

struct img_snapshot_param {
	bool set;
	bool by_id_or_name; /* a bare ID_OR_NAME: @id_or_name */
	const char *id_or_name;
	char *id; /* snapshot.id=, NULL when not given */
	char *name;
};

/*
 * img_snapshot_param_parse - parse @arg into @p (replacing what an earlier
 * -l gave).  Returns 0, or -EINVAL / -ENOMEM with qemu-img's message.
 */
int img_snapshot_param_parse(const char *verb, const char *arg, struct img_snapshot_param *p);

/*
 * img_snapshot_param_load - read @img (opened read-only, no I/O done yet)
 * through the snapshot @p names.  0, or -errno with qemu-img's message.
 */
int img_snapshot_param_load(const char *verb, const struct img_snapshot_param *p,
			    struct drv_image *img);

/* img_snapshot_param_fini - free what parsing allocated. */
void img_snapshot_param_fini(struct img_snapshot_param *p);

#endif
