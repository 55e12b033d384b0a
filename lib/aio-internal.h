/* SPDX-License-Identifier: MIT */
/*
 * Inside lib/aio: the context, the per-request slots and the engine ops.
 *
 * aio.c owns everything that does not depend on the kernel interface:
 * queueing, the depth limit, batching per loop iteration, -EAGAIN requeue,
 * short transfers, bounce buffers, read-modify-write and its serialisation,
 * the fault seam and delivering ->done exactly once.  An engine only moves
 * one prepared operation (a struct aio_slot) to the kernel and reports its
 * result back with aio_slot_complete().
 *
 * Everything here runs on the context's loop thread.
 */
#ifndef QTAP_AIO_INTERNAL_H
#define QTAP_AIO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "aio.h"
#include "evloop.h"

struct buf_pool;

/* What the operation in a slot is for; decides what its completion means. */
enum aio_phase {
	AIO_PH_DIRECT,	     /* the caller's buffers (or the zero buffer), as is */
	AIO_PH_BOUNCE_READ,  /* aligned read covering the piece, into the bounce buffer */
	AIO_PH_BOUNCE_WRITE, /* aligned write of the piece from the bounce buffer */
	AIO_PH_RMW_READ,     /* read-modify-write: reading the head and/or tail block */
};

/*
 * One request's hold on the engine.  A request takes a slot for its first
 * operation and keeps it until it completes: pieces, retries and RMW phases
 * reuse it, so the depth limit counts requests and an engine queue sized to
 * the depth can never overflow.
 */
struct aio_slot {
	struct aio_req *req; /* NULL while free */
	unsigned index;	     /* position in ctx->slots, for engine-side arrays */
	enum aio_phase phase;

	/* The operation handed to the engine. */
	enum aio_op op;
	uint64_t offset;
	uint64_t len;
	const struct iovec *iov;
	unsigned iovcnt;
	struct iovec one; /* storage for a single segment that is not the caller's */

	bool issued;	  /* the fault seam has passed this request */
	bool reissue;	  /* hand the same operation over again (-EAGAIN) */
	bool rmw_tail;	  /* RMW: the tail block is still to be read */
	bool zero_writes; /* WRITE_ZEROES/DISCARD emulated by writing zeros */

	/* In-flight write tracking (O_DIRECT files only), see aio_write_begin. */
	bool w_listed;
	bool w_rmw;
	uint64_t w_lo;
	uint64_t w_hi;
	struct aio_slot *w_prev;
	struct aio_slot *w_next;

	struct aio_slot *free_next;
};

/* A FIFO of requests linked through aio_req.next. */
struct aio_list {
	struct aio_req *head;
	struct aio_req **tail;
};

struct aio_engine_ops;

struct aio_ctx {
	struct evloop *loop;
	const struct aio_engine_ops *ops;
	void *engine;  /* the engine's private state */
	int engine_fd; /* readable when completions wait; -1: none */
	struct evloop_watch watch;
	struct evloop_hook hook;
	struct evloop_poller poller; /* with ops->ready: adaptive polling */

	unsigned depth;
	struct aio_slot *slots;
	struct aio_slot *free_slots;
	unsigned nr_free;

	struct aio_list pending;  /* submitted, waiting for a slot */
	struct aio_list ready;	  /* holding a slot, next operation to issue */
	struct aio_list blocked;  /* holding a slot, waiting for a buffer or a write */
	struct aio_list finished; /* result known, ->done still to be called */
	unsigned count;		  /* submitted and ->done not yet called */

	struct aio_slot *writes; /* in-flight writes to O_DIRECT files */
	unsigned nr_rmw_writes;	 /* listed writes that are read-modify-writes */

	struct buf_pool *bounce_pool;
	uint64_t bounce_bytes;
	void *zero_buf;
	uint64_t zero_bytes;

	aio_fault_fn *fault;
	void *fault_opaque;
	bool fdsync_warned;
	bool offload_buffered; /* aio_ctx_opts.offload_buffered */
};

/*
 * An engine.  Members are called on the loop thread only.
 */
struct aio_engine_ops {
	const char *name;
	enum aio_engine id;

	/*
	 * Set up the kernel side for ctx->depth operations in flight, store
	 * private state in ctx->engine and, when completions are signalled on
	 * an fd, set ctx->engine_fd.  0 or -errno; nothing to undo on error.
	 */
	int (*init)(struct aio_ctx *ctx);

	/* Undo init.  Nothing is in flight. */
	void (*fini)(struct aio_ctx *ctx);

	/*
	 * Prepare @slot's operation for the next ->submit.  What the engine
	 * cannot do asynchronously it does now and reports at once through
	 * aio_slot_complete(); -EAGAIN there means "try again next iteration".
	 */
	void (*queue)(struct aio_ctx *ctx, struct aio_slot *slot);

	/* Hand everything queued since the last call to the kernel, in one
	 * go.  NULL: ->queue already did. */
	void (*submit)(struct aio_ctx *ctx);

	/* ctx->engine_fd is readable: report every completion available.
	 * Needed only by engines that set an engine_fd. */
	void (*reap)(struct aio_ctx *ctx);

	/* Are completions waiting, seen without a system call?  NULL: the
	 * engine cannot tell, and the loop does not poll it. */
	bool (*ready)(struct aio_ctx *ctx);
};

extern const struct aio_engine_ops aio_uring_ops;
extern const struct aio_engine_ops aio_libaio_ops;
extern const struct aio_engine_ops aio_sync_ops;

/*
 * aio_slot_complete - the operation in @slot finished with @res (bytes, 0,
 * or -errno).  Never calls ->done: it decides the request's next step and
 * leaves delivery to the loop.  Safe to call from ->queue, ->submit, ->reap.
 */
void aio_slot_complete(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res);

/*
 * aio_slot_exec_sync - perform @slot's operation now with plain system calls
 * (preadv, pwritev, fdatasync, fallocate, BLKDISCARD, BLKZEROOUT).  Returns
 * bytes transferred, 0 or -errno.
 */
int64_t aio_slot_exec_sync(struct aio_ctx *ctx, struct aio_slot *slot);

/* aio_ctx_kick - make the loop iterate again soon (work left for the hook). */
void aio_ctx_kick(struct aio_ctx *ctx);

/* ---- between aio.c and aio-rw.c ---- */

/* Bounce and zero buffers are aligned to this; files needing more fail. */
#define AIO_BOUNCE_ALIGN 4096u

/* Completion verdicts besides 0 (request done) and -errno (request failed). */
#define AIO_NEXT 1  /* issue the request's next operation */
#define AIO_AGAIN 2 /* the slot already holds the next operation */

/* aio_issue - hand @slot's prepared operation to the engine (fault seam first). */
void aio_issue(struct aio_ctx *ctx, struct aio_slot *slot);

/*
 * aio_write_begin - may @slot write [@lo, @hi) now?  If so it is recorded
 * as in flight; if not, the request is parked until a write ends.  @rmw:
 * the write rewrites bytes around the caller's (read-modify-write).
 */
bool aio_write_begin(struct aio_ctx *ctx, struct aio_slot *slot, uint64_t lo, uint64_t hi,
		     bool rmw);

/* aio_write_end - @slot's write is over (or never began); wake waiters. */
void aio_write_end(struct aio_ctx *ctx, struct aio_slot *slot);

/* aio_block - park @req (holding its slot) until a buffer or write frees up. */
void aio_block(struct aio_ctx *ctx, struct aio_req *req);

/* aio_rw_step - issue the next operation of a READ/WRITE or emulated zero
 * write (slot->zero_writes).  0 (issued or parked) or -errno. */
int aio_rw_step(struct aio_ctx *ctx, struct aio_slot *slot);

/* aio_rw_complete - account an operation issued by aio_rw_step: 0, -errno,
 * AIO_NEXT or AIO_AGAIN. */
int aio_rw_complete(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res);

/*
 * Memory the kernel filled behind valgrind's back (io_uring, the libaio
 * ring) is marked defined so that memcheck runs see what a read returned.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define aio_mark_defined(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#endif
#endif
#ifndef aio_mark_defined
#define aio_mark_defined(p, n) ((void)(p), (void)(n))
#endif

static inline void aio_list_init(struct aio_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

static inline void aio_list_push(struct aio_list *l, struct aio_req *req)
{
	req->next = NULL;
	*l->tail = req;
	l->tail = &req->next;
}

static inline struct aio_req *aio_list_pop(struct aio_list *l)
{
	struct aio_req *req = l->head;

	if (req) {
		l->head = req->next;
		if (!l->head)
			l->tail = &l->head;
		req->next = NULL;
	}
	return req;
}

/* aio_list_splice - move all of @src to the end of @dst. */
static inline void aio_list_splice(struct aio_list *dst, struct aio_list *src)
{
	if (!src->head)
		return;
	*dst->tail = src->head;
	dst->tail = src->tail;
	aio_list_init(src);
}

#endif
