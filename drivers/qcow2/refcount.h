/* SPDX-License-Identifier: MIT */
/*
 * Run-time refcounts of a writable qcow2 image: the refcount table, the
 * refcount blocks cached in memory, the first-fit cluster allocator, the
 * byte allocator for compressed clusters, and deferred frees.
 *
 * Threads: everything here runs on one thread at a time, the image's
 * metadata thread (meta.c), or the control thread at open and close when
 * that thread is not running.  There is no lock.  I/O is synchronous
 * (sync-io.h).
 *
 * Write-back model (ARCHITECTURE.md §4): increments and decrements change
 * the cached blocks in memory and mark them dirty.  qcow2_rc_writeback()
 * writes every dirty block, syncs, then writes the refcount table entries
 * of blocks new since the last write-back, and syncs again (children
 * before parents).  The caller (meta.c) runs it before writing any L2 or
 * L1 change, so an increment is durable before a pointer to the cluster.
 *
 * Decrements of clusters whose pointers were just removed must wait until
 * that removal is durable: qcow2_rc_free_deferred() queues them, and
 * qcow2_rc_release_deferred(), called by the caller once its L2/L1
 * write-back is synced, applies them.  A deferred cluster keeps its
 * refcount until then, so it cannot be handed out again meanwhile (nor
 * can any cluster with writes in flight, whose pointer removal has not
 * even started).
 *
 * Growth: a new refcount block is placed inside the range it describes
 * when possible (describing itself) and hooked into the table at the next
 * write-back.  When the table is full, a new self-describing area (new
 * blocks, then a table 1.5x the size) is built past everything the old
 * table covers, written and synced, and the header's refcount table
 * fields (offset 48, 12 bytes) are switched with one synced write; the old
 * table is freed (deferred).  These happen inside the allocating call.
 *
 * Errors: 0 or -errno.  -EIO for inconsistencies (a refcount going below
 * zero, an allocation that would overlap the image's fixed metadata, a
 * refcount table entry that is not a cluster offset), logged here with the
 * image path and the offset; the caller then marks the image corrupt.  A
 * failed read, write or sync returns its own error (-EIO, -ENOSPC, ...),
 * logged here with the offset, so that the caller can tell a full disk
 * from a broken one.  -EFBIG when no host offset below 2^56 is left, or
 * the table would pass 8 MiB.  -ERANGE when an increment would pass the
 * largest refcount refcount_bits can hold (logged; not an inconsistency:
 * with 1-bit refcounts, any sharing).  -EINVAL for arguments out of
 * range.  -ENOMEM.
 *
 * A failed call leaves the state in memory consistent: the refcount
 * changes it was making are undone (a refcount block it had to create, or
 * a table growth it completed, stays: those are consistent on their own).
 * One exception: when the synced header switch of a table growth fails,
 * the disk may point to either table, so every later changing call
 * returns -EIO; the caller marks the image corrupt.
 *
 * Memory: the table is held whole.  Clean refcount blocks are dropped,
 * least recently used first, beyond @cache_bytes; dirty ones never are.
 */
#ifndef QTAP_QCOW2_REFCOUNT_H
#define QTAP_QCOW2_REFCOUNT_H

#include <stdbool.h>
#include <stdint.h>

struct aio_file;
struct qcow2_header;
struct qcow2_geom;
struct qcow2_rc;

struct qcow2_rc_params {
	struct aio_file *file;
	const char *path; /* for log lines; borrowed */
	/*
	 * The image's header, borrowed: the table's offset and size are read
	 * at qcow2_rc_new() and updated here when the table moves.
	 */
	struct qcow2_header *hdr;
	const struct qcow2_geom *geom;
	/*
	 * The caller's record of the file's size, raised (with an atomic
	 * store) past every cluster this layer allocates before the call
	 * returns.  Readers on other threads check L2 pointers against it.
	 */
	uint64_t *file_bytes;
	/*
	 * Called when a cluster's refcount reaches zero (for example to drop
	 * a cached L2 slice of it).  Optional.
	 */
	void (*cluster_freed)(void *opaque, uint64_t host_offset);
	/*
	 * Called before this layer writes metadata at [@off, @off + @len):
	 * returns -EIO (and has logged it, naming @what) when the range
	 * overlaps metadata it must not touch (the header, the L1 table, the
	 * snapshot table, ...).  Optional.
	 */
	int (*overlap_check)(void *opaque, uint64_t off, uint64_t len, const char *what);
	void *opaque;
	/*
	 * Bytes of clean refcount blocks kept cached; 0: 64 MiB.  At least a
	 * few blocks are kept whatever this says.
	 */
	uint64_t cache_bytes;
};

/*
 * The @what strings overlap_check() gets: "refcount block" and "refcount
 * table" before writing those (a block or table is then the range
 * checked), "new cluster", "new refcount block" and "new refcount table"
 * before handing out or using clusters that must hold nothing (the
 * refcounts say they are free).
 */

/*
 * qcow2_rc_new - load the refcount table and set the allocator's hint to
 * cluster 1: the first allocation scans on from there to the first free
 * cluster (every cluster below the hint is in use, as after that scan).
 * Refcount blocks are read on demand.  Returns 0 and *@out, or -errno
 * (logged).
 */
int qcow2_rc_new(const struct qcow2_rc_params *p, struct qcow2_rc **out);

/* qcow2_rc_free - free memory only; write back first.  NULL is a no-op. */
void qcow2_rc_free(struct qcow2_rc *rc);

/*
 * qcow2_rc_get - the refcount of the cluster holding host byte @offset (0
 * where no refcount block describes it).
 */
int qcow2_rc_get(struct qcow2_rc *rc, uint64_t offset, uint64_t *refcount);

/*
 * qcow2_rc_alloc - find @nr contiguous free clusters, first fit from the
 * lowest free cluster, set their refcounts to 1 and return the first's
 * host offset.  Never offset 0.  Refcount blocks needed for them are
 * placed outside them.  -EINVAL for @nr 0.
 */
int qcow2_rc_alloc(struct qcow2_rc *rc, uint64_t nr, uint64_t *offset);

/*
 * qcow2_rc_alloc_at - allocate up to @nr clusters starting exactly at
 * @offset (to extend a run the caller already has), stopping at the first
 * cluster that is not free.  *@got gets the count, possibly 0 (always for
 * offset 0).  -EINVAL when @offset is not cluster aligned, -EFBIG at or
 * past 2^56.
 */
int qcow2_rc_alloc_at(struct qcow2_rc *rc, uint64_t offset, uint64_t nr, uint64_t *got);

/*
 * qcow2_rc_alloc_bytes - @bytes (at most one cluster) for a compressed
 * cluster, packed after the previous such allocation as QEMU's
 * qcow2_alloc_bytes does: it continues in the current cluster, crosses
 * into the next one only when that one is free (taking a reference on each
 * cluster touched), and starts a fresh cluster otherwise, and also when
 * the current one's refcount is at its maximum (with 1-bit refcounts,
 * always).  Returns the host byte offset, 512-byte aligned: each piece
 * takes @bytes rounded up to 512 (QEMU packs to the byte).  -EINVAL for 0
 * or more than a cluster.
 */
int qcow2_rc_alloc_bytes(struct qcow2_rc *rc, uint64_t bytes, uint64_t *offset);

/*
 * qcow2_rc_update - add @addend to the refcount of every cluster that
 * [@offset, @offset + @len) touches, now (in memory).  For increments, and
 * for decrements whose ordering the caller has already ensured.  On
 * failure no refcount is changed: -ERANGE when one would overflow, -EIO
 * when one would go below zero (both logged).  An increment of clusters
 * no block describes creates the block, outside the range.
 */
int qcow2_rc_update(struct qcow2_rc *rc, uint64_t offset, uint64_t len, int64_t addend);

/*
 * qcow2_rc_free_deferred - queue a decrement by one of every cluster that
 * [@offset, @offset + @len) touches, applied by qcow2_rc_release_deferred().
 */
int qcow2_rc_free_deferred(struct qcow2_rc *rc, uint64_t offset, uint64_t len);

/*
 * qcow2_rc_writeback - write the dirty refcount blocks, sync, write the
 * table entries of new blocks, sync.  Does nothing when nothing is dirty.
 */
int qcow2_rc_writeback(struct qcow2_rc *rc);

/*
 * qcow2_rc_release_deferred - apply the queued decrements, in memory.  Call
 * only when the pointer removals they wait for are durable.  Each queued
 * range applies whole or not at all.  One that would take a refcount below
 * zero is logged and dropped (-EIO); one that fails otherwise (I/O, memory)
 * stays queued for the next call.  The first error is returned after all
 * ranges were tried.
 */
int qcow2_rc_release_deferred(struct qcow2_rc *rc);

/* qcow2_rc_dirty - anything to write back, or decrements queued. */
bool qcow2_rc_dirty(const struct qcow2_rc *rc);

/*
 * qcow2_rc_reftable - the table as it is now, host-endian, @*entries long
 * (for check and for tests).  Valid until the next call that may grow it.
 */
const uint64_t *qcow2_rc_reftable(const struct qcow2_rc *rc, uint64_t *entries);

/* qcow2_rc_stats - counters, for stats and tests. */
struct qcow2_rc_stats {
	uint64_t cached_blocks; /* refcount blocks in memory */
	uint64_t dirty_blocks;
	uint64_t deferred_ranges; /* queued decrements */
	uint64_t free_hint;	  /* host offset: every cluster below is in use */
};
void qcow2_rc_stats(const struct qcow2_rc *rc, struct qcow2_rc_stats *st);

#endif
