/* SPDX-License-Identifier: MIT */
/*
 * tap-img convert --bitmaps [--skip-broken-bitmaps]: the persistent dirty
 * bitmaps of a qcow2 source copied into a qcow2 target, as qemu-img 7.2
 * copies them (name, granularity, enabled or not, every bit).  The checks
 * come where qemu-img makes them: the source before the target is made,
 * the target once it is open, the copy once the data is copied and both
 * images are closed.  Messages are qemu-img's.
 */
#ifndef QTAP_TAP_IMG_CONVERT_BITMAPS_H
#define QTAP_TAP_IMG_CONVERT_BITMAPS_H

#include <stdbool.h>

#include "driver.h"

/*
 * convert_bitmaps_check_source - @src (opened) can give bitmaps: a qcow2
 * v3 image, none of whose bitmaps is inconsistent unless @skip_broken.
 */
int convert_bitmaps_check_source(const struct drv_image *src, bool skip_broken);

/* convert_bitmaps_check_target - @dst (opened, format @fmt) can store bitmaps: qcow2 v3. */
int convert_bitmaps_check_target(const struct drv_image *dst, const char *fmt);

/*
 * convert_bitmaps_copy - copy the bitmaps of the closed qcow2 image
 * @src_path into the closed qcow2 image @dst_path (@shared: read the source
 * without a lock, as -U).  As qemu-img, the bitmaps are taken last to
 * first and the first failure stops the copy, keeping those copied.
 */
int convert_bitmaps_copy(const char *src_path, const char *dst_path, bool skip_broken, bool shared);

#endif
