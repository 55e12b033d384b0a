/* SPDX-License-Identifier: MIT */
/*
 * The vbd: one tapdisk's image chain, its queue threads and its request
 * engine (ARCHITECTURE.md §3).  Every frontend (blkif ring, NBD, FUSE) turns
 * what it received into a struct td_request in bytes and hands it to
 * vbd_submit() on one queue thread; it gets exactly one completion.
 *
 * Threads:
 *   control thread  vbd_open/close/pause/resume/stats; blocks.
 *   queue threads   one per queue (vbd_open's nr_queues, default 1); each
 *                   runs its own event loop (td_queue_loop) with its own aio
 *                   context.  A frontend binds each of its objects (a ring,
 *                   an NBD connection, a FUSE channel) to one queue, adds its
 *                   fd watches to that queue's loop from that thread (post an
 *                   evloop_call to get there), and calls vbd_submit() only
 *                   from that thread.
 *
 * Requests: the td_request belongs to the frontend (preallocated with its
 * own per-request state: no allocation on the I/O path) and stays valid,
 * with its iovec and buffers, until ->done runs.  The vbd checks bounds,
 * read-only and alignment to vbd_info.block_bytes, splits at driver limits,
 * orders barriers and flushes, emulates FUA where the driver has none,
 * counts statistics, and completes with 0 or -errno:
 *   -EINVAL     out of range, misaligned, bad iovec
 *   -EROFS      a write-type op on a read-only vbd
 *   -EOPNOTSUPP an op the chain cannot do (discard on a driver without it)
 *   -EIO etc.   from the driver
 * ->done is never called from inside vbd_submit(); it runs later on the
 * same queue thread.
 *
 * Pause: vbd_pause() stops dispatch (new requests wait in the vbd, they are
 * not failed), drains what is in flight, flushes data and metadata, closes
 * the chain (dropping every cached table and releasing the image locks).
 * vbd_resume() reopens the chain (the same spec, or a new one) and
 * dispatches what waited.  Frontends notice nothing but latency, and a new
 * size through the resize callback.
 */
#ifndef QTAP_TAPDISK_VBD_H
#define QTAP_TAPDISK_VBD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "aio.h"
#include "driver.h"

struct evloop;
struct td_vbd;
struct td_queue;
struct td_request;

enum td_op {
	TD_OP_READ = 0,
	TD_OP_WRITE,
	TD_OP_FLUSH,	    /* everything completed before is durable on completion */
	TD_OP_DISCARD,	    /* reads afterwards return zeros or the backing data */
	TD_OP_WRITE_ZEROES, /* reads afterwards return zeros */
	TD_OP_BLOCK_STATUS, /* result in req->status, for [offset, offset+len) */
	TD_OP_BITMAP_STATUS, /* persistent dirty bitmap req->bitmap: DRV_BS_DIRTY or
			      * not in req->status, for [offset, offset+len) */
};

/* Request flags. */
#define TD_REQ_FUA (1u << 0)	     /* WRITE/WRITE_ZEROES: durable on completion */
#define TD_REQ_BARRIER (1u << 1)     /* every earlier request on this queue completes
				      * first and is made durable; then this one */
#define TD_REQ_MAY_UNMAP (1u << 2)   /* WRITE_ZEROES: may deallocate */
#define TD_REQ_NO_FALLBACK (1u << 3) /* WRITE_ZEROES: -ENOTSUP rather than slow */

typedef void td_done_fn(struct td_request *req, int err);

struct td_request {
	/* set by the frontend */
	enum td_op op;
	unsigned flags; /* TD_REQ_* */
	uint64_t offset;
	uint64_t len;		 /* READ/WRITE: the iovec's total */
	const struct iovec *iov; /* READ/WRITE */
	unsigned iovcnt;
	td_done_fn *done;
	void *opaque;
	const char *bitmap; /* BITMAP_STATUS: the bitmap's name (borrowed) */

	/* BLOCK_STATUS result: flags (DRV_BS_*), len (> 0), depth in the chain */
	struct drv_status status;

	/* private to the vbd */
	struct td_request *next;
	uint64_t start_ns;
	unsigned pending;
	int err;
	unsigned state;
};

struct td_vbd_opts {
	unsigned nr_queues;	 /* 0: 1 */
	unsigned queue_depth;	 /* driver requests in flight per queue; 0: 128 */
	bool readonly;		 /* -R */
	enum aio_engine engine;	 /* AIO_ENGINE_AUTO by default */
	const struct drv_opt *drv_opts; /* -o key=value for the top image's driver */
	unsigned nr_drv_opts;
};

struct td_vbd_info {
	uint64_t size_bytes;
	uint32_t block_bytes;	   /* logical sector: requests are multiples */
	uint32_t phys_block_bytes; /* preferred granularity */
	bool readonly;
	bool can_discard;
	bool can_write_zeroes;
	bool can_block_status;
	unsigned nr_queues;
	const char *spec; /* TYPE:PATH of the top image */
};

/*
 * vbd_open - open the chain named by @spec ("qcow2:/path") with @opts and
 * start the queue threads.  Returns 0 and *out, or -errno (logged).
 */
int vbd_open(const char *spec, const struct td_vbd_opts *opts, struct td_vbd **out);

/*
 * vbd_close - fail nothing silently: requests still queued complete with
 * -ESHUTDOWN, in-flight ones are waited for, then the chain is flushed and
 * closed and the threads stopped.  Frontends must be detached first.
 * NULL is a no-op.  Control thread.
 */
void vbd_close(struct td_vbd *vbd);

void vbd_get_info(const struct td_vbd *vbd, struct td_vbd_info *out);
struct td_queue *vbd_queue(struct td_vbd *vbd, unsigned index);
struct evloop *td_queue_loop(struct td_queue *q);
unsigned td_queue_index(const struct td_queue *q);

/* vbd_submit - issue @req on @q.  Call on @q's thread only. */
void vbd_submit(struct td_queue *q, struct td_request *req);

/* vbd_pause / vbd_resume - see above.  Control thread; block.  0 or -errno. */
int vbd_pause(struct td_vbd *vbd);
int vbd_resume(struct td_vbd *vbd, const char *new_spec /* NULL: the same */);

#endif
