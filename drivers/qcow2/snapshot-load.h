/* SPDX-License-Identifier: MIT */
/*
 * Reading an internal snapshot of a qcow2 image instead of its current
 * state, as QEMU's bdrv_snapshot_load_tmp() does for qemu-img convert -l
 * and measure -l.  Tools only.
 */
#ifndef QTAP_QCOW2_SNAPSHOT_LOAD_H
#define QTAP_QCOW2_SNAPSHOT_LOAD_H

#include "driver.h"

/*
 * qcow2_snapshot_load_tmp - make the snapshot matching @id and @name (either
 * may be NULL: not compared; both NULL matches nothing) the L1 table @img
 * reads through.  The disk size stays the image's; guest offsets past the
 * snapshot's L1 table read as unallocated (from the backing file), as in
 * QEMU.  @img must be a qcow2 image opened DRV_OPEN_RDONLY on which no
 * queue is set up yet.  Returns 0; -ENOENT when no snapshot matches (not
 * logged: callers word it as qemu-img does); -ENOTSUP when @img is not a
 * read-only qcow2 image; else -errno, logged.
 */
int qcow2_snapshot_load_tmp(struct drv_image *img, const char *id, const char *name);

/*
 * qcow2_snapshot_load_tmp_by_id_or_name - QEMU's
 * bdrv_snapshot_load_tmp_by_id_or_name(): @s as an id, then as a name.
 */
int qcow2_snapshot_load_tmp_by_id_or_name(struct drv_image *img, const char *s);

#endif
