// SPDX-License-Identifier: MIT
/*
 * tap-img convert --bitmaps (convert-bitmaps.h).  The source's directory
 * is read with qcow2_info_read(); the target is edited with
 * drivers/qcow2/bitmap-edit.c, which stores the bitmaps the way QEMU does.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert-bitmaps.h"
#include "errors.h"
#include "qcow2/bitmap-edit.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/info.h"
#include "tap-img.h"

static bool inconsistent(const struct qcow2_bitmap *bm)
{
	return bm->flags & QCOW2_BME_IN_USE;
}

/* @img's directory, when it is a qcow2 v3 image; false otherwise (or unreadable). */
static bool read_v3(const struct drv_image *img, struct qcow2_info *q)
{
	if (strcmp(img->ops->name, "qcow2") != 0 || qcow2_info_read(img->path, q))
		return false;
	if (q->hdr.version >= 3)
		return true;
	qcow2_info_fini(q);
	return false;
}

int convert_bitmaps_check_source(const struct drv_image *src, bool skip_broken)
{
	struct qcow2_info q;
	unsigned i;
	int err = 0;

	if (!read_v3(src, &q)) {
		img_err("convert", "Source lacks bitmap support");
		return -ENOTSUP;
	}
	/* last to first, as qemu-img, so that the message names the same bitmap */
	for (i = q.nb_bitmaps; !skip_broken && i-- > 0;) {
		if (inconsistent(&q.bitmaps[i])) {
			img_err("convert",
				"Cannot copy inconsistent bitmap '%s'\n"
				"Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to "
				"delete it",
				q.bitmaps[i].name);
			err = -EINVAL;
			break;
		}
	}
	qcow2_info_fini(&q);
	return err;
}

int convert_bitmaps_check_target(const struct drv_image *dst, const char *fmt)
{
	struct qcow2_info q;

	if (!read_v3(dst, &q)) {
		img_err("convert", "Format driver '%s' does not support bitmaps", fmt);
		return -ENOTSUP;
	}
	qcow2_info_fini(&q);
	return 0;
}

static bool has_bitmap(const struct qcow2_info *q, const char *name)
{
	unsigned i;

	for (i = 0; i < q->nb_bitmaps; i++) {
		if (strcmp(q->bitmaps[i].name, name) == 0)
			return true;
	}
	return false;
}

/*
 * Which of @src's bitmaps qemu-img would copy into @dst (taking them last
 * to first, stopping at the first it cannot add or fill): @copy[i].
 * Returns 0, or -EEXIST / -EINVAL for the failure that stopped it (told).
 */
static int plan(const struct qcow2_info *src, const struct qcow2_info *dst, bool skip_broken,
		bool *copy)
{
	unsigned i;

	for (i = src->nb_bitmaps; i-- > 0;) {
		const char *name = src->bitmaps[i].name;

		if (skip_broken && inconsistent(&src->bitmaps[i])) {
			img_err("convert", "warning: Skipping inconsistent bitmap '%s'", name);
			continue;
		}
		if (has_bitmap(dst, name)) {
			img_err("convert", "Failed to create bitmap %s: Bitmap already exists: %s",
				name, name);
			return -EEXIST;
		}
		if (dst->hdr.size_bytes != src->hdr.size_bytes) {
			img_err("convert",
				"Failed to populate bitmap %s: Bitmaps are of different sizes "
				"(destination size is %" PRIu64 ", source size is %" PRIu64
				") and can't be merged",
				name, dst->hdr.size_bytes, src->hdr.size_bytes);
			return -EINVAL;
		}
		copy[i] = true;
	}
	return 0;
}

static bool any(const bool *copy, unsigned nb)
{
	unsigned i;

	for (i = 0; i < nb; i++) {
		if (copy[i])
			return true;
	}
	return false;
}

/* Add, in directory order (the order qemu-img stores them in), the bitmaps @copy marks. */
static int copy_planned(const struct qcow2_info *src, const bool *copy, struct qcow2_bme *se,
			struct qcow2_bme *de)
{
	unsigned i;
	int err = 0;

	for (i = 0; !err && i < src->nb_bitmaps; i++) {
		const struct qcow2_bitmap *bm = &src->bitmaps[i];

		if (!copy[i])
			continue;
		err = qcow2_bme_add(de, bm->name, bm->granularity_bits);
		if (!err)
			err = qcow2_bme_enable(de, bm->name, bm->flags & QCOW2_BME_AUTO);
		if (!err)
			err = qcow2_bme_merge(de, bm->name, se, bm->name);
		if (err)
			img_err("convert", "Failed to copy bitmap %s: %s", bm->name, err_str(err));
	}
	return err;
}

int convert_bitmaps_copy(const char *src_path, const char *dst_path, bool skip_broken, bool shared)
{
	struct qcow2_info sq, dq;
	struct qcow2_bme *se = NULL, *de = NULL;
	bool *copy = NULL;
	int err, cerr;

	err = qcow2_info_read(src_path, &sq);
	if (err)
		return err;
	err = qcow2_info_read(dst_path, &dq);
	if (err) {
		qcow2_info_fini(&sq);
		return err;
	}
	copy = calloc(sq.nb_bitmaps + 1, sizeof(*copy));
	err = copy ? plan(&sq, &dq, skip_broken, copy) : -ENOMEM;
	/* nothing to copy: the target is left as qemu-img leaves it, untouched */
	cerr = copy && any(copy, sq.nb_bitmaps) ? qcow2_bme_open(src_path, true, shared, &se)
						: -ENOENT;
	if (!cerr)
		cerr = qcow2_bme_open(dst_path, false, false, &de);
	if (!cerr)
		cerr = copy_planned(&sq, copy, se, de);
	if (!cerr)
		cerr = qcow2_bme_commit(de);
	qcow2_bme_close(de);
	qcow2_bme_close(se);
	free(copy);
	qcow2_info_fini(&dq);
	qcow2_info_fini(&sq);
	return err ?: (cerr == -ENOENT ? 0 : cerr);
}
