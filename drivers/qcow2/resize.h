/* SPDX-License-Identifier: MIT */
/*
 * Resizing a qcow2 image that nothing serves, for tap-img resize (what
 * qemu-img resize does through qcow2_co_truncate).  Tools only.
 *
 * Growing: when the L1 table no longer covers the disk, a new one of
 * exactly the entries needed is written in new clusters whose refcounts
 * are durable first; the header's l1_size and l1_table_offset are switched
 * with one synced write; the old table is freed after.  Preallocation then
 * maps the new clusters (metadata), and reserves (falloc) or writes
 * (full) their data, data durable before the L2 entries that point to it.
 *
 * Shrinking: the clusters past the new end are dropped from the active
 * tables (an L2 table shared with an internal snapshot is copied first),
 * the tables are synced, and only then are the refcounts decreased; the
 * L1 table keeps its size, as QEMU's does; the file is cut after the last
 * cluster still in use.
 *
 * Last, the header's size is written with one synced write.  Persistent
 * dirty bitmaps are resized with the disk (bits past the old end clear),
 * stored as tap-img bitmap stores them, the new size going with the same
 * header switch.  A crash at any point leaves the old size or the new
 * one, and at worst leaked clusters (qemu-img check: exit 3).
 *
 * Errors are 0 or -errno, logged in qemu-img's words where it has some.
 */
#ifndef QTAP_QCOW2_RESIZE_H
#define QTAP_QCOW2_RESIZE_H

#include <stdbool.h>
#include <stdint.h>

enum qcow2_prealloc {
	QCOW2_PREALLOC_OFF = 0,
	QCOW2_PREALLOC_METADATA,
	QCOW2_PREALLOC_FALLOC,
	QCOW2_PREALLOC_FULL,
};

/*
 * When the backing file is longer than the disk, growing must not make its
 * data past the old end visible (QEMU's BDRV_REQ_ZERO_WRITE): the new
 * clusters are marked zero, and the cluster holding the old end, when the
 * end is not cluster aligned, is rewritten whole from @head, the guest's
 * view of [@head_offset, old size) (@head_offset is the old size rounded
 * down to 2 MiB, the largest cluster), read by the caller through the
 * chain.  v2 images cannot mark zero clusters: refused, as by QEMU.
 */
struct qcow2_resize_args {
	uint64_t size_bytes; /* a multiple of 512 */
	enum qcow2_prealloc prealloc;
	bool zero_new;
	uint64_t head_offset;
	const void *head; /* NULL: the old size is a multiple of 2 MiB */
};

#define QCOW2_RESIZE_HEAD_ALIGN (2u << 20)

/*
 * qcow2_resize - make the qcow2 image @path @a->size_bytes long.
 * Shrinking is allowed here (the tool asks for --shrink); preallocation
 * only when growing.  0 or -errno (logged).
 */
int qcow2_resize(const char *path, const struct qcow2_resize_args *a);

#endif
