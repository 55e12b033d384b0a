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
 *                   evloop_call to get there, or td_queue_run() from the
 *                   control thread), and calls vbd_submit() only from that
 *                   thread.  Queue threads block every signal, so signals
 *                   reach the process's own threads.
 *
 * Requests: the td_request belongs to the frontend (preallocated with its
 * own per-request state: no allocation on the I/O path) and stays valid,
 * with its iovec and buffers, until ->done runs.  The vbd checks bounds,
 * read-only and alignment to vbd_info.block_bytes, splits at driver limits,
 * orders barriers and flushes, emulates FUA where the driver has none,
 * counts statistics, and completes with 0 or -errno:
 *   -EINVAL     out of range, misaligned, bad iovec, unknown op or flag
 *   -EROFS      a write-type op on a read-only vbd
 *   -EOPNOTSUPP an op the chain cannot do (discard on a driver without it)
 *   -ESHUTDOWN  the vbd is being closed
 *   -EIO etc.   from the driver
 * ->done is never called from inside vbd_submit(); it runs later on the
 * same queue thread.  It may call vbd_submit() again.
 *
 * Each queue has a pool of opts.queue_depth driver requests.  Requests
 * beyond it wait in a FIFO in submission order (no allocation, no failure);
 * a request larger than max_io_bytes is split into pieces that take a
 * pool slot each, issued in order and concurrently.
 *
 * Ordering, per queue:
 *   FLUSH        completes when every request completed (on any queue)
 *                before it was submitted is durable.  It does not wait for
 *                requests still in flight, nor hold later ones back.
 *   FUA          (WRITE, WRITE_ZEROES) the data is durable on completion;
 *                native where the driver has DRV_CAP_FUA, else the write
 *                is followed by a flush before it completes.
 *   BARRIER      (any op) waits until every earlier request on the queue
 *                has completed, flushes if anything was written since the
 *                last flush, then runs alone: later requests on the queue
 *                are not started before it completes.
 *
 * Pause: vbd_pause() stops dispatch (new requests wait in the vbd, they are
 * not failed; a request already started finishes), drains what is in
 * flight, flushes data and metadata, closes the chain (dropping every
 * cached table and releasing the image locks).  vbd_resume() reopens the
 * chain (the same spec, or a new one) and dispatches what waited.
 * Frontends notice nothing but latency, and a new size through the resize
 * notifiers (the image may have been resized while paused).
 */
#ifndef QTAP_TAPDISK_VBD_H
#define QTAP_TAPDISK_VBD_H

#include <stdbool.h>
#include <stddef.h>
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
	TD_OP_FLUSH,	     /* everything completed before is durable on completion */
	TD_OP_DISCARD,	     /* reads afterwards return zeros or the backing data */
	TD_OP_WRITE_ZEROES,  /* reads afterwards return zeros */
	TD_OP_BLOCK_STATUS,  /* result in req->status, for [offset, offset+len) */
	TD_OP_BITMAP_STATUS, /* persistent dirty bitmap req->bitmap: DRV_BS_DIRTY or
			      * not in req->status, for [offset, offset+len) */
};
#define TD_OP_COUNT (TD_OP_BITMAP_STATUS + 1)

/* Request flags. */
#define TD_REQ_FUA (1u << 0) /* WRITE/WRITE_ZEROES: durable on completion */
#define TD_REQ_BARRIER                                                                             \
	(1u << 1)		     /* every earlier request on this queue completes
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
	unsigned iovcnt;	 /* at most IOV_MAX */
	td_done_fn *done;
	void *opaque;
	const char *bitmap; /* BITMAP_STATUS: the bitmap's name (borrowed) */

	/* BLOCK_STATUS result: flags (DRV_BS_*), len (> 0), depth in the chain */
	struct drv_status status;

	/* private to the vbd */
	struct td_request *next;
	struct td_queue *q;
	uint64_t start_ns;
	uint64_t issued_bytes; /* bytes handed to pieces so far */
	size_t iov_offset;     /* the next piece starts iov_offset into iov[iov_index] */
	unsigned iov_index;
	unsigned pending; /* driver requests in flight */
	int err;
	unsigned state;
	uint64_t rec_id; /* lib/aio-rec.h: the request's id in the log, 0: none */
};

struct td_vbd_opts {
	unsigned nr_queues;		/* 0: 1 */
	unsigned queue_depth;		/* driver requests in flight per queue; 0: 128 */
	bool readonly;			/* -R */
	enum aio_engine engine;		/* AIO_ENGINE_AUTO by default */
	const struct drv_opt *drv_opts; /* -o key=value for the top image's driver */
	unsigned nr_drv_opts;
	uint64_t max_io_bytes; /* split larger requests; 0: 1 MiB (rounded to blocks) */
	unsigned poll_us;      /* queue threads' adaptive polling window; 0: none */
};

/* Limits of td_vbd_opts. */
#define TD_MAX_QUEUES 64u
#define TD_MAX_QUEUE_DEPTH 4096u
#define TD_DEFAULT_QUEUE_DEPTH 128u
#define TD_DEFAULT_MAX_IO_BYTES (1024u * 1024)
#define TD_MAX_POLL_US 1000u

struct td_vbd_info {
	uint64_t size_bytes;
	uint32_t block_bytes;	   /* logical sector: requests are multiples */
	uint32_t phys_block_bytes; /* preferred granularity */
	uint32_t discard_bytes;	   /* discard granularity (a multiple of block_bytes) */
	bool readonly;
	bool can_discard;
	bool can_write_zeroes;
	bool can_block_status;
	unsigned nr_queues;
	const char *spec; /* TYPE:PATH of the top image; valid until vbd_close */
	/* appended */
	bool paused;
	bool native_fua;       /* the driver has FUA; else it is emulated with a flush */
	uint64_t max_io_bytes; /* larger requests are split (accepted all the same) */
	unsigned queue_depth;
	enum aio_engine engine; /* the engine actually in use */
	unsigned chain_depth;	/* images in the chain, top included */
};

/*
 * vbd_open - open the chain named by @spec ("qcow2:/path") with @opts and
 * start the queue threads.  Returns 0 and *out, or -errno (logged).
 * opts->drv_opts go to the top image's driver (drv_chain_open_opts: an
 * option it does not take is -EINVAL, logged naming the key); the vbd
 * keeps a copy and reattaches with them on every resume.
 */
int vbd_open(const char *spec, const struct td_vbd_opts *opts, struct td_vbd **out);

/*
 * vbd_close - fail nothing silently: requests still queued complete with
 * -ESHUTDOWN, in-flight ones are waited for, then the chain is flushed and
 * closed and the threads stopped.  Frontends must be detached first.
 * NULL is a no-op.  Control thread.
 */
void vbd_close(struct td_vbd *vbd);

/*
 * vbd_refuse_new - the first half of closing: requests waiting to start
 * (all of them while paused) complete with -ESHUTDOWN and later
 * submissions are refused with it; started ones finish.  Lets frontends
 * detach from a paused vbd, whose waiting requests would otherwise never
 * complete.  Control thread.
 */
void vbd_refuse_new(struct td_vbd *vbd);

/* vbd_get_info - a snapshot of the vbd's geometry and state.  Any thread. */
void vbd_get_info(const struct td_vbd *vbd, struct td_vbd_info *out);
/*
 * vbd_bitmap_list - the top image's persistent dirty bitmaps that
 * TD_OP_BITMAP_STATUS can query (at most @max names into @names, the number
 * there are in *@count; none while paused).  The names stay valid until the
 * next pause or close: copy them.  Control thread.  0 or -errno.
 */
int vbd_bitmap_list(struct td_vbd *vbd, const char **names, unsigned max, unsigned *count);

struct td_queue *vbd_queue(struct td_vbd *vbd, unsigned index);
struct evloop *td_queue_loop(struct td_queue *q);
unsigned td_queue_index(const struct td_queue *q);

/*
 * td_queue_aio - the queue's aio context.  A seam for tests
 * (aio_ctx_set_fault); frontends do not submit on it.
 */
struct aio_ctx *td_queue_aio(struct td_queue *q);

/*
 * td_queue_run - run @fn(@opaque) on @q's thread and wait for it; returns
 * what @fn returned.  For frontends attaching to or detaching from a queue
 * (adding or removing their fd watches).  Control thread only; never from
 * a queue thread.
 */
int td_queue_run(struct td_queue *q, int (*fn)(void *opaque), void *opaque);

/* vbd_submit - issue @req on @q.  Call on @q's thread only. */
void vbd_submit(struct td_queue *q, struct td_request *req);

/* vbd_pause / vbd_resume - see above.  Control thread; block.  0 or -errno:
 * -EALREADY when already paused / not paused.  A failed resume (the new
 * chain does not open, or has another block size: -EMEDIUMTYPE) leaves the
 * vbd paused with its requests waiting; resume may be retried. */
int vbd_pause(struct td_vbd *vbd);
int vbd_resume(struct td_vbd *vbd, const char *new_spec /* NULL: the same */);

/*
 * Resize notification: after a resume that changed the size, every
 * registered notifier's @fn runs on the control thread with the new size,
 * before waiting requests are dispatched.  The struct is the caller's
 * (embed it) and stays valid until removed.  Control thread.
 */
struct td_resize_notifier {
	void (*fn)(struct td_resize_notifier *n, uint64_t old_size_bytes, uint64_t new_size_bytes);
	void *opaque;
	struct td_resize_notifier *next; /* private */
};
void vbd_resize_notifier_add(struct td_vbd *vbd, struct td_resize_notifier *n);
void vbd_resize_notifier_del(struct td_vbd *vbd, struct td_resize_notifier *n);

/*
 * Statistics, per queue, counted by the queue threads without locks and
 * summed on request.  Latency is from vbd_submit() to ->done, in a
 * histogram of log2 buckets: bucket i counts latencies in
 * [2^i, 2^(i+1)) ns (bucket 0 also counts 0).
 */
#define TD_HIST_BUCKETS 48

struct td_op_stats {
	uint64_t count;	 /* completed requests */
	uint64_t bytes;	 /* of successful ones */
	uint64_t errors; /* completed with an error, refused ones included */
	uint64_t hist_ns[TD_HIST_BUCKETS];
};

struct td_vbd_stats {
	struct td_op_stats op[TD_OP_COUNT];
	uint64_t inflight; /* requests started, not completed */
	uint64_t waiting;  /* requests in the FIFO, not started */
	uint64_t split;	   /* requests cut into more than one piece */
	uint64_t pieces;   /* driver requests issued for guest requests */
	uint64_t barriers;
	uint64_t flushes_added; /* flushes issued for barriers and emulated FUA */
};

/*
 * vbd_get_stats - the counters of queue @queue, or of all queues summed
 * when @queue is -1.  -EINVAL for a queue that does not exist.  Any thread.
 */
int vbd_get_stats(const struct td_vbd *vbd, int queue, struct td_vbd_stats *out);

/*
 * vbd_stats_json - the statistics as a JSON object (see
 * docs/control-protocol.md, "stats"), summed over the queues, with a
 * "queues" array of the same per queue when @per_queue.  NULL on ENOMEM.
 */
struct json_t;
struct json_t *vbd_stats_json(const struct td_vbd *vbd, bool per_queue);

/* td_op_name - "read", "write", "flush", "discard", "write_zeroes", "block_status". */
const char *td_op_name(enum td_op op);

/*
 * td_stats_percentile_ns - the latency below which a fraction @p (0..1) of
 * @s's requests completed, interpolated within the log2 bucket; 0 when
 * nothing completed.
 */
uint64_t td_stats_percentile_ns(const struct td_op_stats *s, double p);

#endif
