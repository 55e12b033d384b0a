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

#include <stdint.h>

enum qcow2_prealloc {
	QCOW2_PREALLOC_OFF = 0,
	QCOW2_PREALLOC_METADATA,
	QCOW2_PREALLOC_FALLOC,
	QCOW2_PREALLOC_FULL,
};

/*
 * qcow2_resize - make the qcow2 image @path @size_bytes long (a multiple of
 * 512).  Shrinking is allowed here (the tool asks for --shrink);
 * preallocation only when growing.  0 or -errno (logged).
 */
int qcow2_resize(const char *path, uint64_t size_bytes, enum qcow2_prealloc prealloc);

#endif
