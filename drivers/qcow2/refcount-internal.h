/* SPDX-License-Identifier: MIT */
/*
 * Shared by refcount.c (the block cache, refcount changes, deferred frees,
 * write-back) and refcount-alloc.c (the allocators, new refcount blocks,
 * refcount table growth); not an interface for anything else.
 *
 * Units: "clusters" are host cluster indexes (host offset >> cluster_bits),
 * "ti" is an index into the refcount table.  Cluster c is described by
 * entry c % rb_entries of the block at table index c / rb_entries.
 *
 * Block lifetime: a cached block is on exactly one of two lists, dirty or
 * clean (most recently used first).  Only clean blocks are evicted, and only
 * when a block is loaded or when blocks become clean, so a pointer to a
 * clean block is valid until the next qcow2_rc_block_get() or write-back;
 * code that changes a block marks it dirty before getting another one.
 */
#ifndef QTAP_QCOW2_REFCOUNT_INTERNAL_H
#define QTAP_QCOW2_REFCOUNT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2/refcount.h"

struct rc_block {
	uint64_t ti;
	uint8_t *data; /* one cluster, as on disk */
	bool dirty;
	struct rc_block *prev;
	struct rc_block *next;
};

struct rc_list {
	struct rc_block *head;
	struct rc_block *tail;
	uint64_t count;
};

struct rc_range {
	uint64_t offset;
	uint64_t len;
};

#define RC_HINTS 16u

struct qcow2_rc {
	struct qcow2_rc_params p;
	unsigned order;
	unsigned cluster_bits;
	uint64_t cluster_bytes;
	uint64_t rb_entries;   /* refcounts per block */
	uint64_t max_clusters; /* clusters below QCOW2_MAX_HOST_OFFSET */

	uint64_t *table; /* host-endian, raw entries */
	uint64_t entries;
	struct rc_block **blocks; /* @entries long; NULL: not cached */
	/* 512-byte chunks of the table whose on-disk copy lacks an entry */
	uint64_t *stale;

	struct rc_list dirty;
	struct rc_list clean;
	uint64_t max_clean;

	/*
	 * hint[k], k = 1..RC_HINTS: no run of k or more free clusters starts
	 * below it (hint[1]: every cluster below it is in use).  A first-fit
	 * search for n clusters starts at hint[min(n, RC_HINTS)], so that
	 * small holes low in the image are not scanned again and again by
	 * allocations they cannot hold.  hint[0] is unused.
	 */
	uint64_t hint[RC_HINTS + 1];
	uint64_t byte_offset; /* next byte for alloc_bytes; 0: none */

	struct rc_range *deferred;
	size_t nr_deferred;
	size_t cap_deferred;

	/*
	 * A header switch failed: the disk may point to either table, so
	 * nothing more may be changed (every changing call returns -EIO).
	 */
	bool broken;
};

#define RC_CHUNK_BYTES 512u
#define RC_CHUNK_ENTRIES (RC_CHUNK_BYTES / 8u)

/* The refcount block offset of table entry @ti (0: none). */
uint64_t qcow2_rc_block_offset(const struct qcow2_rc *rc, uint64_t ti);

/*
 * qcow2_rc_block_get - the cached block of table entry @ti, loading it;
 * *@out is NULL when the table has no block there (or does not reach @ti).
 * 0, -EIO (I/O error or a corrupt entry, logged), -ENOMEM.
 */
int qcow2_rc_block_get(struct qcow2_rc *rc, uint64_t ti, struct rc_block **out);

/* qcow2_rc_cluster_get - the refcount of cluster @c (0 where no block). */
int qcow2_rc_cluster_get(struct qcow2_rc *rc, uint64_t c, uint64_t *refcount);

/*
 * qcow2_rc_block_new - a zeroed, dirty block for table entry @ti at host
 * @offset, hooked into the in-memory table (its entry is written at the
 * next write-back).  0 or -ENOMEM (nothing changed).
 */
int qcow2_rc_block_new(struct qcow2_rc *rc, uint64_t ti, uint64_t offset, struct rc_block **out);

void qcow2_rc_mark_dirty(struct qcow2_rc *rc, struct rc_block *b);

/*
 * qcow2_rc_change - add @addend to the refcount of clusters [@c0, @c0 + @n),
 * all or nothing, then lower or raise the hint and report refcounts that
 * reached zero.  Every block must already exist for increments.  -ERANGE
 * (logged) when a refcount would overflow or go below zero, -EIO, -ENOMEM.
 */
int qcow2_rc_change(struct qcow2_rc *rc, uint64_t c0, uint64_t n, int64_t addend);

/*
 * qcow2_rc_write_blocks - write every dirty block, sync, mark them clean.
 * Nothing to do: 0 without I/O.
 */
int qcow2_rc_write_blocks(struct qcow2_rc *rc);

/* qcow2_rc_hints_used - clusters [@c0, @c0 + @n) are no longer free. */
void qcow2_rc_hints_used(struct qcow2_rc *rc, uint64_t c0, uint64_t n);

/* qcow2_rc_raise_file_bytes - the caller's file size, past @end_bytes. */
void qcow2_rc_raise_file_bytes(struct qcow2_rc *rc, uint64_t end_bytes);

/* qcow2_rc_overlap - the caller's overlap check, when it gave one. */
int qcow2_rc_overlap(struct qcow2_rc *rc, uint64_t c0, uint64_t n, const char *what);

/* qcow2_rc_defer_reserve - room for @more deferred ranges.  0 or -ENOMEM. */
int qcow2_rc_defer_reserve(struct qcow2_rc *rc, size_t more);

/*
 * qcow2_rc_install_table - switch to @table (@entries long, on disk at
 * @offset, all of it written): the header, the arrays (already large
 * enough), the clean @blocks of entries [@first, @first + @nr), and the
 * old table queued for freeing.
 */
void qcow2_rc_install_table(struct qcow2_rc *rc, uint64_t *table, uint64_t entries, uint64_t offset,
			    struct rc_block **blocks, uint64_t first, uint64_t nr);

/* qcow2_rc_resize_arrays - blocks[] and stale[] for @entries.  0/-ENOMEM. */
int qcow2_rc_resize_arrays(struct qcow2_rc *rc, uint64_t entries);

void qcow2_rc_block_free(struct rc_block *b);

/* In refcount-alloc.c: blocks for every cluster of [@c0, @c0 + @n), new
 * ones placed outside that range (it may grow the table). */
int qcow2_rc_ensure_blocks(struct qcow2_rc *rc, uint64_t c0, uint64_t n);

#endif
