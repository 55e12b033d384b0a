/* SPDX-License-Identifier: MIT */
/*
 * Editing the persistent dirty bitmaps of a qcow2 image that nothing
 * serves, for tap-img bitmap (qemu-img bitmap's operations): add, remove,
 * clear, enable, disable, merge.  Tools only.
 *
 * The image is opened read-write and locked as QEMU locks it (a dirty
 * lazy-refcounts image is repaired first, as QEMU's open does); every
 * consistent bitmap is read whole into memory; the operations change that
 * copy; the commit stores it the way QEMU's close stores bitmaps
 * (qcow2_store_persistent_dirty_bitmaps): each bitmap's non-zero data
 * clusters and its table go to new clusters, then a new directory, whose
 * refcounts are made durable before anything points to them; the header
 * (cluster 0, with the bitmaps extension and autoclear bit 0) is switched
 * with one synced write; only then are the old tables, data clusters and
 * directory freed.  A crash at any point leaves the old bitmaps or the new
 * ones, and at worst leaked clusters (qemu-img check: exit 3).
 *
 * Inconsistent bitmaps (in_use on disk, not stored cleanly) are kept as
 * they are and can only be removed, as in QEMU.  Bitmaps with extra data
 * make the image refused, as QEMU refuses it.
 *
 * Errors are 0 or -errno, logged in QEMU's words where qemu-img has some
 * ("Bitmap already exists: NAME", "Dirty bitmap 'NAME' not found").
 */
#ifndef QTAP_QCOW2_BITMAP_EDIT_H
#define QTAP_QCOW2_BITMAP_EDIT_H

#include <stdbool.h>
#include <stdint.h>

struct qcow2_bme;

/*
 * qcow2_bme_open - open @path for editing (@readonly: only to read a
 * bitmap, for a merge from another image; the lock is then a reader's,
 * or none with @shared).  0 and *@out, or -errno (logged).
 */
int qcow2_bme_open(const char *path, bool readonly, bool shared, struct qcow2_bme **out);

/* qcow2_bme_close - drop everything not committed; close.  NULL is a no-op. */
void qcow2_bme_close(struct qcow2_bme *e);

/* The disk size and cluster size of the image. */
uint64_t qcow2_bme_disk_bytes(const struct qcow2_bme *e);
uint64_t qcow2_bme_cluster_bytes(const struct qcow2_bme *e);

/* qcow2_bme_add - a new, empty, enabled bitmap of granularity 2^@gran_bits bytes. */
int qcow2_bme_add(struct qcow2_bme *e, const char *name, unsigned gran_bits);

/* qcow2_bme_remove - drop a bitmap (its clusters are freed at the commit). */
int qcow2_bme_remove(struct qcow2_bme *e, const char *name);

/* qcow2_bme_remove_all - drop every bitmap, consistent or not (tap-img amend to v2). */
int qcow2_bme_remove_all(struct qcow2_bme *e);

/* qcow2_bme_clear - no bit set. */
int qcow2_bme_clear(struct qcow2_bme *e, const char *name);

/* qcow2_bme_enable - enabled (auto: writers record their changes) or disabled. */
int qcow2_bme_enable(struct qcow2_bme *e, const char *name, bool enable);

/*
 * qcow2_bme_merge - set in @dst every range that @src_name of @src (which
 * may be @e itself) has set, whatever the two granularities.  The disks
 * must be the same size.
 */
int qcow2_bme_merge(struct qcow2_bme *e, const char *dst, struct qcow2_bme *src,
		    const char *src_name);

/*
 * qcow2_bme_resize - the disk becomes @size_bytes long: every bitmap
 * follows it (bits past the old end clear, bits past the new end
 * dropped) and the commit writes the new size with the header switch
 * (tap-img resize; the L1 table must already cover the new size).
 * -EBUSY when a bitmap is inconsistent (logged), -ENOMEM.
 */
int qcow2_bme_resize(struct qcow2_bme *e, uint64_t size_bytes);

/* qcow2_bme_commit - store the bitmaps (see above).  0 or -errno (logged). */
int qcow2_bme_commit(struct qcow2_bme *e);

#endif
