/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 L2 table cache: fixed-size slices of L2 tables, shared by every
 * queue thread of one image.
 *
 * Slices, not whole tables: a slice is min(4 KiB, cluster size).  A guest's
 * random 4 KiB read then costs one 4 KiB metadata read on a miss instead of
 * a whole table (64 KiB at the default cluster size, 2 MiB at the largest),
 * and the same memory keeps sixteen times as many distinct regions of the
 * disk mapped.  QEMU >= 4.0 makes the same choice whenever the cache cannot
 * hold every table.  Sequential reads pay one small metadata read per 512
 * clusters, which is noise next to the data.
 *
 * Concurrency: a pthread rwlock.  A hit takes the read lock only, pins the
 * slice and bumps its LRU stamp with atomics.  A miss takes the write lock,
 * picks the least recently used unpinned slice (a linear scan, as QEMU's
 * qcow2_cache_do_get does: a miss costs a disk read anyway), marks it
 * LOADING and issues one aio read on the requesting queue's context.
 * Later lookups of a LOADING slice park on it instead of reading again.
 * When every slice is pinned, the lookup parks on the cache until one is
 * released and is then retried on its own thread.  Nothing blocks a queue
 * thread except the lock itself, which is never held across I/O.
 *
 * A parked lookup completes through its struct qcow2_l2_wait: ->fn runs
 * later on the waiter's own event loop (posted there, whichever thread
 * finished the read), with the slice pinned, or with -errno and no slice.
 *
 * Changes: only the image's metadata thread (meta.c) changes entries, under
 * the write lock (qcow2_l2_slice_update), and readers copy entries out
 * under the read lock (qcow2_l2_slice_copy), so a pinned slice may change
 * under a reader but never tears.  A changed slice is dirty: it is never
 * evicted, only written back by qcow2_l2_cache_writeback(), which the
 * metadata thread calls once the data and refcounts the entries depend on
 * are durable (ARCHITECTURE.md §4).  The metadata thread reads slices with
 * blocking I/O (qcow2_l2_cache_get_sync); the queue threads never block.
 */
#ifndef QTAP_QCOW2_CACHE_H
#define QTAP_QCOW2_CACHE_H

#include <stdint.h>

#include "aio.h"
#include "evloop.h"

struct qcow2_geom;
struct qcow2_l2_cache;
struct qcow2_l2_slice;
struct qcow2_l2_wait;

#define QCOW2_L2_SLICE_MAX_BYTES 4096u
#define QCOW2_L2_CACHE_MAX_BYTES (32ull << 20) /* QEMU's default cap on Linux */
#define QCOW2_L2_CACHE_MIN_SLICES 32u

typedef void qcow2_l2_wait_fn(struct qcow2_l2_wait *w, struct qcow2_l2_slice *slice, int err);

/* A parked lookup.  Owned by the caller; untouched once ->fn has run. */
struct qcow2_l2_wait {
	qcow2_l2_wait_fn *fn;
	void *opaque;
	struct evloop *loop; /* ->fn runs on this loop's thread */

	/* private to the cache */
	struct evloop_call call;
	struct qcow2_l2_wait *next;
	struct qcow2_l2_cache *cache;
	struct aio_ctx *aio;
	uint64_t offset;
	struct qcow2_l2_slice *slice;
	int err;
};

struct qcow2_l2_cache_stats {
	uint64_t hits;
	uint64_t misses; /* lookups that found no valid slice */
	uint64_t reads;	 /* slice reads issued */
	uint64_t evictions;
};

/*
 * qcow2_l2_cache_slice_bytes - the slice size for clusters of @cluster_bytes:
 * min(4 KiB, one cluster).
 */
uint64_t qcow2_l2_cache_slice_bytes(uint64_t cluster_bytes);

/*
 * qcow2_l2_cache_default_slices - QEMU's default sizing: enough to map the
 * whole disk of @size_bytes, capped at 32 MiB (256 GiB of disk at 64 KiB
 * clusters), at least QCOW2_L2_CACHE_MIN_SLICES.
 */
unsigned qcow2_l2_cache_default_slices(const struct qcow2_geom *g, uint64_t size_bytes);

/*
 * qcow2_l2_cache_new - @nr_slices slices of @slice_bytes (a power of two,
 * 512..4096) reading from @file; @path names the image in log lines and is
 * borrowed.  All memory is allocated here.  Returns 0 and *@out, or -errno
 * (logged).
 */
int qcow2_l2_cache_new(struct aio_file *file, const char *path, uint64_t slice_bytes,
		       unsigned nr_slices, struct qcow2_l2_cache **out);

/* qcow2_l2_cache_free - nothing may be pinned or loading.  NULL is a no-op. */
void qcow2_l2_cache_free(struct qcow2_l2_cache *c);

/*
 * qcow2_l2_cache_get - the slice at host offset @offset (slice aligned,
 * non-zero).  Returns 0 with *@out pinned (a hit), or -EINPROGRESS: @w
 * (->fn, ->opaque and ->loop set by the caller; ->loop must be the loop
 * @aio runs on) is parked and ->fn will run later on that loop, exactly
 * once, with the pinned slice or an error.  Never calls ->fn itself.
 */
int qcow2_l2_cache_get(struct qcow2_l2_cache *c, uint64_t offset, struct aio_ctx *aio,
		       struct qcow2_l2_wait *w, struct qcow2_l2_slice **out);

/* qcow2_l2_cache_put - drop a pin taken by _get or delivered to a wait. */
void qcow2_l2_cache_put(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s);

/* The slice's bytes (big-endian L2 entries), slice_bytes long. */
const uint8_t *qcow2_l2_slice_data(const struct qcow2_l2_slice *s);
uint64_t qcow2_l2_slice_offset(const struct qcow2_l2_slice *s);

/*
 * qcow2_l2_slice_copy - copy @len bytes at @off_in_slice of pinned slice @s
 * under the read lock.
 */
void qcow2_l2_slice_copy(struct qcow2_l2_cache *c, const struct qcow2_l2_slice *s,
			 uint64_t off_in_slice, void *dst, size_t len);

/* ---- the metadata thread only ---------------------------------------------------- */

/*
 * qcow2_l2_slice_update - write @len bytes at @off_in_slice of pinned slice
 * @s under the write lock and mark it dirty.
 */
void qcow2_l2_slice_update(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s,
			   uint64_t off_in_slice, const void *src, size_t len);

/*
 * qcow2_l2_cache_get_sync - the slice at @offset, pinned, read with blocking
 * I/O on a miss (waiting if a queue thread is loading it).  -EAGAIN when
 * every slice is pinned or dirty: write back and retry.  -errno (logged)
 * when the read fails.
 */
int qcow2_l2_cache_get_sync(struct qcow2_l2_cache *c, uint64_t offset, struct qcow2_l2_slice **out);

/*
 * qcow2_l2_cache_get_new - a slice of a newly allocated L2 table at @offset:
 * not read, all zeros, dirty, pinned.  -EAGAIN as above.
 */
int qcow2_l2_cache_get_new(struct qcow2_l2_cache *c, uint64_t offset, struct qcow2_l2_slice **out);

/* qcow2_l2_cache_dirty - how many slices are dirty; _slices - how many exist. */
unsigned qcow2_l2_cache_dirty(struct qcow2_l2_cache *c);
unsigned qcow2_l2_cache_slices(const struct qcow2_l2_cache *c);

/*
 * qcow2_l2_cache_writeback - write every dirty slice (no sync), each after
 * @check (may be NULL) accepted its range; a slice changed meanwhile stays
 * dirty.  Returns 0 or the first error (logged).
 */
typedef int qcow2_l2_check_fn(void *opaque, uint64_t offset, uint64_t len);
int qcow2_l2_cache_writeback(struct qcow2_l2_cache *c, qcow2_l2_check_fn *check, void *opaque);

/*
 * qcow2_l2_cache_drop - forget the slices of [@offset, @offset + @len), a
 * freed cluster, dirty or not; pinned ones are emptied at their last put.
 */
void qcow2_l2_cache_drop(struct qcow2_l2_cache *c, uint64_t offset, uint64_t len);

void qcow2_l2_cache_get_stats(struct qcow2_l2_cache *c, struct qcow2_l2_cache_stats *out);

#endif
