/* SPDX-License-Identifier: MIT */
/*
 * The metadata thread of a writable qcow2 image, and the guest range locks
 * that keep writers of one cluster apart.  Internal to the driver.
 *
 * Every change to the image's metadata (L1, L2 entries, refcounts, header
 * bits) happens on one thread per image, with blocking I/O.  Queue threads
 * never wait for it: they post a job (qcow2_meta_submit) and carry on with
 * other requests; the job's reply runs later on their own loop.  A write
 * that needs clusters is two jobs around its data I/O:
 *
 *   ALLOC  find or allocate the host clusters for the next piece of the
 *          write (a run of guest clusters contiguous on the host), take
 *          their refcounts, make sure their L2 table is the image's own,
 *          and describe the piece as a qcow2_wplan: which host range to
 *          write, and where the copy-on-write head and tail come from;
 *   (the queue thread writes head + data + tail, no lock held)
 *   LINK   point the L2 entries at the new clusters (in the cache, dirty)
 *          and queue the old clusters' decrements;
 *   ABORT  (instead of LINK, when the data write failed) give the new
 *          clusters back.
 *
 * A compressed write (convert -c) is ALLOC_BYTES, the write of the
 * compressed bytes, then LINK_COMPRESSED (or ABORT).
 *
 * ZERO and DISCARD change whole units' entries; FLUSH writes everything
 * back in ARCHITECTURE.md §4's order:
 *
 *   fdatasync (data, COW included) -> dirty refcount blocks, sync, new
 *   refcount table entries, sync -> dirty L2 slices -> sync -> dirty L1
 *   chunks -> sync -> release deferred decrements;
 *
 * then stores the persistent dirty bitmaps that changed (bitmap.h).
 *
 * Nothing metadata reaches the disk any other way, except the synced
 * header field updates (dirty bit, corrupt bit, refcount table switch).
 */
#ifndef QTAP_QCOW2_META_H
#define QTAP_QCOW2_META_H

#include <stdbool.h>
#include <stdint.h>

#include "evloop.h"

struct drv_image;
struct qcow2_image;

/* ---- guest range locks ----------------------------------------------------------- */

/*
 * A held or wanted range of guest bytes (cluster aligned).  Writes, zero
 * writes and discards hold the clusters they change for their whole life,
 * so two of them never change one L2 entry at once, and a cluster with a
 * write in flight is never discarded (and so never freed and reused).
 *
 * A plain write holds its range shared while it only writes in place
 * (clusters it owns: no L2 entry changes), so small writes into one
 * cluster, as a sequential 4 KiB stream makes, run side by side as in
 * QEMU; before it allocates it trades the shared hold for an exclusive
 * one and maps again.  Zero writes, discards and compressed writes hold
 * exclusively from the start.  Shared holds conflict only with exclusive
 * ones.
 */
struct qcow2_range {
	uint64_t start;
	uint64_t end;
	bool shared;
	struct evloop *loop;	    /* where ->wake runs */
	struct evloop_call wake;    /* set by the owner: retry the lock */
	struct qcow2_range *next;   /* in the held list, or a waiter list */
	struct qcow2_range **pprev; /* held: the link that points here */
	struct qcow2_range *waiters;
};

/*
 * qcow2_range_lock - true when @r is now held; false when it overlaps a held
 * range: @r is queued and r->wake will run on r->loop when that range is
 * released, to call this again.
 */
bool qcow2_range_lock(struct qcow2_image *qi, struct qcow2_range *r);
void qcow2_range_unlock(struct qcow2_image *qi, struct qcow2_range *r);

/* ---- jobs ---------------------------------------------------------------------------- */

enum qcow2_job_kind {
	QCOW2_JOB_ALLOC,
	QCOW2_JOB_LINK,
	QCOW2_JOB_ABORT,
	QCOW2_JOB_ZERO,
	QCOW2_JOB_DISCARD,
	QCOW2_JOB_FLUSH,
	QCOW2_JOB_ALLOC_BYTES,	   /* room for plan.compressed_bytes of compressed data */
	QCOW2_JOB_LINK_COMPRESSED, /* point the cluster at pos to it */
};

/* Where a copy-on-write region's bytes come from. */
enum qcow2_cow {
	QCOW2_COW_NONE, /* no region */
	QCOW2_COW_ZERO, /* write zeros */
	QCOW2_COW_SKIP, /* zeros, and the new cluster already reads as zeros: skip */
	QCOW2_COW_READ, /* what the guest sees there now (the image's own read path) */
};

/*
 * A piece of a write.  The host range [host_start, host_start + guest_end -
 * guest_start) receives the head [guest_start, pos), the request's bytes
 * [pos, data_end) and the tail [data_end, guest_end).
 */
struct qcow2_wplan {
	bool inplace; /* nothing changes in metadata: write and done */
	uint64_t guest_start;
	uint64_t guest_end;
	uint64_t host_start;
	uint64_t data_end;
	enum qcow2_cow head;
	enum qcow2_cow tail;
	uint64_t new_host;     /* first cluster allocated for it, 0: none */
	uint64_t new_clusters; /* how many */
	/* a compressed cluster: its data is at host_start */
	bool compressed;
	uint64_t compressed_bytes;
};

struct qcow2_job {
	enum qcow2_job_kind kind;
	/* ALLOC, ZERO, DISCARD: the request's remaining range; ZERO: DRV_REQ_* flags */
	uint64_t pos;
	uint64_t end;
	unsigned flags;
	struct qcow2_wplan plan; /* ALLOC's result, LINK's and ABORT's input */
	/* ZERO and DISCARD: bytes handled, from pos on (a job does a bounded part) */
	uint64_t done_bytes;
	int err;

	/* set by the submitter */
	struct evloop_call reply; /* ->fn runs on reply_loop when the job is done */
	struct evloop *reply_loop;

	/* private */
	struct evloop_call call;
	struct drv_image *img;
};

/* qcow2_meta_submit - run @job on @img's metadata thread. */
void qcow2_meta_submit(struct drv_image *img, struct qcow2_job *job);

/* ---- lifecycle (control thread) ---------------------------------------------------------- */

/*
 * qcow2_meta_open - set up the run-time refcounts, load the persistent
 * dirty bitmaps to maintain (marking them in use), and start the metadata
 * thread of an image opened read-write.  Returns 0 or -errno (logged).
 */
int qcow2_meta_open(struct drv_image *img);

/*
 * qcow2_meta_close - stop the thread, store the dirty bitmaps and clear
 * their in_use flags, and write everything back (clearing the dirty bit of
 * a lazy-refcounts image).  Returns 0 or -errno (logged).
 */
int qcow2_meta_close(struct drv_image *img);

#endif
