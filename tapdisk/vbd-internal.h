/* SPDX-License-Identifier: MIT */
/*
 * The vbd's private structures, shared by vbd.c (open, close, threads),
 * vbd-io.c (the request engine on the queue threads), vbd-pause.c and
 * vbd-stats.c.  Not for frontends: they use vbd.h.
 *
 * Ownership: everything under "queue thread only" in struct td_queue is
 * touched by that queue's thread alone, except while the thread provably
 * does not run vbd code (before it starts, after it is joined).  The
 * control thread reaches a queue through posted calls (queue_call_async),
 * which carry the happens-before edges.  Statistics are relaxed atomics
 * written by the queue thread and read by anyone.
 */
#ifndef QTAP_TAPDISK_VBD_INTERNAL_H
#define QTAP_TAPDISK_VBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "evloop.h"
#include "vbd.h"

/* Where a td_request is (req->state). */
enum td_req_state {
	TD_RS_QUEUED = 0, /* in the FIFO, not started */
	TD_RS_PREFLUSH,	  /* a barrier, waiting for the flush before it (FIFO head) */
	TD_RS_ISSUE,	  /* started, pieces left to issue (FIFO head) */
	TD_RS_INFLIGHT,	  /* every piece issued, out of the FIFO */
	TD_RS_POSTFLUSH,  /* emulated FUA: the flush after the write */
};

/* What a pool slot carries. */
enum td_slot_kind {
	TD_SLOT_PIECE = 0,
	TD_SLOT_PREFLUSH,
	TD_SLOT_POSTFLUSH,
	TD_SLOT_CTL, /* a flush the control thread asked for (pause, close) */
};

/* A piece of a split request copies at most this many iovec elements. */
#define TD_SLOT_IOVS 64u
/* DISCARD and WRITE_ZEROES pieces (no data moves: a larger limit). */
#define TD_MAX_ZERO_PIECE_BYTES (1ull << 30)

struct td_slot {
	struct drv_req dreq;
	struct td_queue *q;
	struct td_request *req; /* NULL for TD_SLOT_CTL */
	struct td_slot *next_free;
	uint64_t flush_gen; /* flushes: q->write_gen when issued */
	enum td_slot_kind kind;
	struct iovec iov[TD_SLOT_IOVS];
	struct drv_chain_walk walk; /* BLOCK_STATUS down the chain */
};

/* A control-thread wait for work posted to queue threads. */
struct td_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;
	int err; /* the first error reported */
};

void td_wait_init(struct td_wait *w, unsigned pending);
void td_wait_done(struct td_wait *w, int err);
int td_wait_for(struct td_wait *w); /* waits, destroys, returns err */

/* A call posted to a queue thread; @fn must end with td_wait_done(@w). */
struct td_qcall {
	struct evloop_call call;
	struct td_queue *q;
	void (*fn)(struct td_queue *q, struct td_wait *w, void *opaque);
	void *opaque;
	struct td_wait *w;
};

/*
 * queue_call_all - run @fn on every queue thread (or only @only when not
 * NULL) and wait until each has called td_wait_done; the first error.
 */
int vbd_call_queues(struct td_vbd *vbd, struct td_queue *only,
		    void (*fn)(struct td_queue *q, struct td_wait *w, void *opaque), void *opaque);

/* Per-queue counters: written by the queue thread only, read by anyone. */
struct td_qstats {
	_Atomic uint64_t count[TD_OP_COUNT];
	_Atomic uint64_t bytes[TD_OP_COUNT];
	_Atomic uint64_t errors[TD_OP_COUNT];
	_Atomic uint64_t hist[TD_OP_COUNT][TD_HIST_BUCKETS];
	_Atomic uint64_t inflight, waiting, split, pieces, barriers, flushes_added;
};

/* The geometry the queue checks requests against (its own copy). */
struct td_geo {
	uint64_t size_bytes;
	uint64_t max_io_bytes;
	uint32_t block_bytes;
	unsigned caps;	 /* DRV_CAP_* of the top image */
	bool can_bitmap; /* the top image's driver has ->bitmap_status */
	bool readonly;
	const char *spec; /* for messages */
};

struct td_queue {
	struct td_vbd *vbd;
	unsigned index;
	struct evloop *loop;
	struct aio_ctx *aio;
	struct drv_queue *dq; /* &vbd->dqs[index] */
	pthread_t thread;
	bool thread_started;

	/* queue thread only */
	struct drv_image *top; /* NULL while paused */
	struct td_geo geo;
	struct td_slot *slots; /* nr_slots + 1: the last is the control slot */
	unsigned nr_slots;
	void *priv; /* (nr_slots + 1) * priv_stride bytes of driver scratch */
	size_t priv_stride;
	struct td_slot *free_slots;
	struct td_request *wait_head, *wait_tail; /* the FIFO */
	struct td_request *done_head, *done_tail; /* completions deferred out of vbd_submit */
	struct evloop_call done_call;
	struct td_request *barrier; /* the barrier running alone, if any */
	unsigned inflight;
	unsigned waiting;
	unsigned submitting; /* vbd_submit frames on the stack */
	bool dispatching, redispatch;
	bool stopped;		 /* paused or pausing: start nothing */
	bool closing;		 /* refuse new requests with -ESHUTDOWN */
	struct td_wait *drain_w; /* signalled when inflight reaches 0 */
	struct td_wait *ctl_w;	 /* signalled when the control slot's flush is done */
	uint64_t write_gen, flushed_gen;

	struct td_qstats st;
};

struct td_spec {
	struct td_spec *next;
	char spec[]; /* kept until close: td_vbd_info.spec points here */
};

struct td_vbd {
	struct td_vbd_opts opts;  /* normalised; drv_opts is the copy below */
	struct drv_opt *drv_opts; /* owned copy of the open's -o, for every attach (resume too) */
	struct drv_image *top;	  /* NULL while paused */
	struct drv_queue *dqs;
	struct td_queue *queues;
	unsigned nr_queues;

	pthread_mutex_t lock; /* info, specs, notifiers */
	struct td_vbd_info info;
	struct td_spec *specs; /* newest first; info.spec is the first */
	struct td_resize_notifier *notifiers;
	pthread_mutex_t ctl_lock; /* one control operation at a time */
};

/* vbd.c */
/* vbd_chain_attach - open @spec's chain and set up the vbd's queues on it. */
int vbd_chain_attach(struct td_vbd *vbd, const char *spec, struct drv_image **out);
/*
 * vbd_set_chain - make @top (or none, NULL: paused) the chain every queue
 * serves, and the info follow it; @spec, when not NULL, becomes info.spec.
 * The queues must be stopped.  On failure no queue serves any chain.
 */
int vbd_set_chain(struct td_vbd *vbd, struct drv_image *top, const char *spec);

/* vbd-io.c: queue thread side */
void td_queue_io_init(struct td_queue *q);
void td_queue_flush(struct td_queue *q, struct td_wait *w); /* flush the chain, signal @w */
void td_queue_stop(struct td_queue *q, struct td_wait *w);  /* stop starting; @w at drain */
void td_queue_start(struct td_queue *q);		    /* dispatch again */
void td_queue_fail_waiting(struct td_queue *q, int err);

/* vbd-stats.c */
void td_stats_record(struct td_queue *q, const struct td_request *req, int err);
void td_stats_gauges(struct td_queue *q);

#endif
