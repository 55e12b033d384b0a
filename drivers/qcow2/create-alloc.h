/* SPDX-License-Identifier: MIT */
/*
 * Laying out a new qcow2 image the way qemu-img 7.2 does, for create.c.
 *
 * qemu-img creates an image by writing a minimal header with a one-cluster
 * refcount table and one refcount block, then growing it through its
 * normal run-time paths: the first-fit cluster allocator, refcount blocks
 * that describe themselves, refcount table growth into a new area past the
 * end, the L1 table growth of a resize, and preallocation.  Where each
 * table lands, which freed clusters keep stale bytes and how long the file
 * ends up all follow from those paths, so this file replays them on an
 * in-memory model of the refcounts (struct qcow2_mk) rather than computing
 * a layout: for every option set the result is the file qemu-img writes,
 * byte for byte.
 *
 * Only a new image is handled: nothing is ever COPIED-shared, compressed or
 * discarded, and the backing file is attached after the data layout, as
 * qemu-img does it (so preallocation never reads backing data).
 *
 * Writes go to the file as qemu-img issues them (sync-io.h); refcount
 * blocks, which qemu-img rewrites many times, are written once by
 * qcow2_mk_finish().  mk->file_bytes follows the length qemu-img's file
 * has at each step, and qcow2_mk_finish() truncates the file to it (the
 * aligned writes of sync-io.h may have gone a few bytes further).
 *
 * Errors: 0 or -errno, logged here with the path.  -EFBIG when the image
 * would need tables beyond QEMU's limits.
 */
#ifndef QTAP_QCOW2_CREATE_ALLOC_H
#define QTAP_QCOW2_CREATE_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

struct aio_file;

enum qcow2_mk_prealloc {
	QCOW2_MK_PREALLOC_OFF = 0,
	QCOW2_MK_PREALLOC_METADATA,
	QCOW2_MK_PREALLOC_FALLOC,
	QCOW2_MK_PREALLOC_FULL,
};

struct qcow2_mk {
	struct aio_file *file;
	const char *path; /* for log lines; borrowed */

	unsigned cluster_bits;
	uint64_t cluster_bytes;
	unsigned refcount_order;
	unsigned refblock_bits; /* log2 of refcounts per block */
	uint64_t refblock_entries;
	unsigned l2_entry_bytes; /* 8, or 16 with extended L2 */
	uint64_t l2_entries;	 /* per table */
	uint64_t subcluster_bytes;

	/* The refcount table: offsets of blocks, and the blocks themselves. */
	uint64_t *reftable;
	uint8_t **refblocks; /* parallel to reftable; NULL where it is 0 */
	uint64_t reftable_entries;
	uint64_t reftable_offset;
	uint64_t reftable_max_index; /* highest non-zero entry (QEMU keeps it) */
	uint64_t free_index;	     /* where the first-fit search starts, in clusters */

	uint64_t *l1; /* host-endian, as written */
	uint64_t l1_entries;
	uint64_t l1_offset;
	/* L2 tables being filled, by L1 index; written once complete */
	uint8_t **l2_tables;

	uint64_t file_bytes; /* the file's length as qemu-img leaves it at this step */
};

/*
 * qcow2_mk_init - the state after qemu-img's first two writes: cluster 1
 * holds a one-cluster refcount table whose entry 0 points at cluster 2,
 * an empty refcount block; nothing is referenced yet.  Writes the table
 * (the header is the caller's, at the end).  @file is borrowed.
 */
int qcow2_mk_init(struct qcow2_mk *mk, struct aio_file *file, const char *path,
		  unsigned cluster_bits, unsigned refcount_order, bool extended_l2);

/* qcow2_mk_fini - free the model (not the file).  Zeroed or NULL: no-op. */
void qcow2_mk_fini(struct qcow2_mk *mk);

/*
 * qcow2_mk_alloc - allocate @bytes of whole clusters, first fit, with
 * refcount 1 (QEMU's qcow2_alloc_clusters).  *@offset gets the first.
 */
int qcow2_mk_alloc(struct qcow2_mk *mk, uint64_t bytes, uint64_t *offset);

/* qcow2_mk_grow_l1 - give the image an L1 table of @entries (zeroed). */
int qcow2_mk_grow_l1(struct qcow2_mk *mk, uint64_t entries);

/*
 * qcow2_mk_preallocate - allocate the clusters of guest bytes [0,
 * @size_bytes) as qemu-img's resize with @mode does (metadata: L2 tables
 * and data clusters interleaved; falloc/full: a refcount area, then the
 * data contiguously, allocated in the file with fallocate or zeros, with
 * the L2 tables around it).
 */
int qcow2_mk_preallocate(struct qcow2_mk *mk, uint64_t size_bytes, enum qcow2_mk_prealloc mode);

/*
 * qcow2_mk_finish - write the refcount blocks, set the file's length to
 * mk->file_bytes (cluster 0 must already be written) and sync.
 */
int qcow2_mk_finish(struct qcow2_mk *mk);

#endif
