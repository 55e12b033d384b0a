/* SPDX-License-Identifier: MIT */
/*
 * Persistent dirty bitmaps of a writable qcow2 image, kept up to date while
 * the driver serves it, so that QEMU's incremental backup still works on
 * images qtap served (reference/qcow2-notes.md §1.9, §6).  Internal to the
 * driver.
 *
 * Lifecycle, as QEMU's:
 *
 *   open   (read-write only, control thread, refcounts up, metadata thread
 *          not started) read the directory; load each bitmap to maintain
 *          into memory; mark it in_use on disk with the flag-only update
 *          (autoclear bit 0 cleared, synced; directory rewritten in place,
 *          synced; bit set again, synced), so that a crash leaves it
 *          inconsistent, never consistent but stale;
 *   serve  every write, zero write and discard sets the bits of its range
 *          (queue threads, atomics, no lock), whether it succeeded or not;
 *   store  (FLUSH jobs on the metadata thread, and close) the bitmap data
 *          clusters that changed go to disk;
 *   close  store, then clear in_use with the same flag-only update.
 *
 * Which bitmaps are maintained (decided here; QEMU refuses to open images
 * it cannot load bitmaps of, qtap only refuses where it must):
 *
 *   - enabled (auto), consistent, usable: loaded and maintained;
 *   - already in_use: inconsistent already; left alone, a warning names it;
 *   - disabled (no auto): never change while qtap serves, so they are left
 *     alone on disk (QEMU marks them in_use while open and rewrites them
 *     unchanged at close: the same end state, and a crash leaves them
 *     consistent, which they are);
 *   - enabled with extra data that is not extra_data_compatible: the spec
 *     forbids using or changing it, and writing without tracking would
 *     leave it stale: the read-write open is refused (as QEMU refuses any
 *     extra data);
 *   - enabled but not loadable (a table of the wrong size, a bad table
 *     entry, a cluster with refcount 0 or shared with another bitmap, a
 *     read error): marked in_use without loading, with a warning, so QEMU
 *     reports it inconsistent (QEMU would refuse to open the image);
 *   - a directory that does not parse: the read-write open is refused.
 *
 * Storage while open: a loaded bitmap's table is moved to clusters
 * allocated at open (in the same directory update that sets in_use), and
 * each data cluster is moved to a fresh one the first time it changes;
 * after that the bitmap's own clusters are rewritten in place (they hold
 * untrusted data while in_use is set).  So qtap never writes into a
 * cluster it did not allocate itself.  Ordering (ARCHITECTURE.md §4): new
 * data clusters and their refcounts are durable before the table that
 * points to them is written; the clusters the table pointed to before are
 * freed (deferred) only once the new table is durable.
 */
#ifndef QTAP_QCOW2_BITMAP_H
#define QTAP_QCOW2_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct aio_file;
struct qcow2_header;
struct qcow2_rc;
struct qcow2_bitmaps;

struct qcow2_bitmaps_params {
	struct aio_file *file;
	const char *path;	  /* for log lines; borrowed */
	struct qcow2_header *hdr; /* borrowed; autoclear bit 0 changes here */
	struct qcow2_rc *rc;	  /* the image's refcounts; borrowed */
};

/*
 * qcow2_bitmaps_open - load and mark in_use the bitmaps to maintain (see
 * above).  *@out is NULL when there is none.  Returns 0 or -errno (logged):
 * -EINVAL for a bad directory, -ENOTSUP for extra data it may not touch,
 * I/O errors, -ENOMEM.  On error no bitmap is maintained (some may be left
 * in_use: inconsistent, never stale).
 */
int qcow2_bitmaps_open(const struct qcow2_bitmaps_params *p, struct qcow2_bitmaps **out);

/*
 * qcow2_bitmaps_mark - [@offset, @offset + @len) of the guest disk changed
 * (or may have): set the bits of every maintained bitmap covering it.  Any
 * thread, lock-free; @b NULL is a no-op.
 */
void qcow2_bitmaps_mark(struct qcow2_bitmaps *b, uint64_t offset, uint64_t len);

/*
 * qcow2_bitmaps_store - write the bitmap data changed since the last store
 * (nothing when nothing changed).  Metadata thread, or close.  Refcount
 * blocks are written first when @sync_refcounts (false only while a lazy
 * refcounts image has its dirty bit set).  Returns 0 or -errno (logged);
 * what failed is retried by the next store.  @b NULL is a no-op.
 */
int qcow2_bitmaps_store(struct qcow2_bitmaps *b, bool sync_refcounts);

/*
 * qcow2_bitmaps_close - store, then clear in_use on disk so QEMU sees the
 * bitmaps consistent.  On failure they stay in_use (logged).  Control
 * thread, metadata thread stopped.  0 or -errno; @b NULL is a no-op.
 */
int qcow2_bitmaps_close(struct qcow2_bitmaps *b);

/*
 * qcow2_bitmaps_words - the live bits of maintained bitmap @name (one per
 * granule, 64-bit host-order words; read them with atomic loads), for
 * clients that query it.  False when @b does not maintain such a bitmap;
 * @b NULL is none.  Valid until qcow2_bitmaps_free.
 */
bool qcow2_bitmaps_words(const struct qcow2_bitmaps *b, const char *name, const uint64_t **words);

/* qcow2_bitmaps_free - memory only.  NULL is a no-op. */
void qcow2_bitmaps_free(struct qcow2_bitmaps *b);

#endif
