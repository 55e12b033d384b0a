// SPDX-License-Identifier: MIT
/*
 * The engine-independent half of lib/aio: contexts, queueing, batching,
 * the depth limit, completion handling and delivery.
 *
 * A request moves through four lists.  aio_submit() appends it to
 * "pending"; the loop's prepare hook gives it a slot when one is free (the
 * depth limit: excess requests wait in FIFO order) and issues its first
 * operation.  When an operation completes, the request either needs another
 * one (next piece, rest of a short read, RMW write phase, -EAGAIN) and goes
 * to "ready", or is parked on "blocked" until a bounce buffer or an
 * overlapping write frees up, or is done and goes to "finished".  ->done is
 * called only from draining "finished" at the end of the hook or of the
 * completion fd's callback, so it never runs inside aio_submit() and runs
 * exactly once.
 *
 * Every queued operation is handed to the kernel with one ->submit per loop
 * iteration, so a burst of requests costs one system call.
 *
 * DISCARD and WRITE_ZEROES on block devices are BLKDISCARD and BLKZEROOUT
 * ioctls, executed synchronously in the hook by every engine: there is no
 * asynchronous form of them.  Where a file system refuses to punch or zero
 * a range (EOPNOTSUPP) the range is written with zeros from a preallocated
 * buffer instead, so that it reads back as zeros as promised.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "aio-internal.h"
#include "aio-rec.h"
#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"

#define AIO_DEFAULT_DEPTH 128u
#define AIO_MAX_DEPTH 4096u
#define AIO_DEFAULT_BOUNCE_COUNT 8u
#define AIO_MAX_BOUNCE_COUNT 1024u
#define AIO_DEFAULT_BOUNCE_BYTES (1ull << 20)
#define AIO_MAX_BOUNCE_BYTES (64ull << 20)
#define AIO_MAX_ZERO_BYTES (256ull << 10)

/* aio_req.state besides the index of the slot the request holds. */
#define AIO_REQ_QUEUED UINT_MAX
#define AIO_REQ_FINISHED (UINT_MAX - 1)

static const struct aio_engine_ops *const aio_engines[] = {
	&aio_uring_ops,
	&aio_libaio_ops,
	&aio_sync_ops,
};

static const struct {
	const char *name;
	enum aio_engine engine;
} aio_engine_names[] = {
	{ "auto", AIO_ENGINE_AUTO },	 { "io_uring", AIO_ENGINE_URING },
	{ "libaio", AIO_ENGINE_LIBAIO }, { "sync", AIO_ENGINE_SYNC },
	{ "native", AIO_ENGINE_LIBAIO }, { "threads", AIO_ENGINE_SYNC },
};

static const char *const aio_op_names[] = {
	[AIO_OP_READ] = "read",
	[AIO_OP_WRITE] = "write",
	[AIO_OP_FSYNC] = "fsync",
	[AIO_OP_DISCARD] = "discard",
	[AIO_OP_WRITE_ZEROES] = "write-zeroes",
};

/* ---- names ---- */

const char *aio_engine_name(enum aio_engine e)
{
	for (size_t i = 0; i < ARRAY_SIZE(aio_engine_names); i++) {
		if (aio_engine_names[i].engine == e)
			return aio_engine_names[i].name;
	}
	return "unknown";
}

int aio_engine_parse(const char *name, enum aio_engine *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(aio_engine_names); i++) {
		if (strcmp(aio_engine_names[i].name, name) == 0) {
			*out = aio_engine_names[i].engine;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *aio_op_name(enum aio_op op)
{
	return (unsigned)op < ARRAY_SIZE(aio_op_names) ? aio_op_names[op] : "unknown-op";
}

/* ---- finishing and delivering ---- */

static struct aio_slot *aio_req_slot(struct aio_ctx *ctx, struct aio_req *req)
{
	return req->state < ctx->depth ? &ctx->slots[req->state] : NULL;
}

/* Waiters are retried on every release: they are few and re-checking is cheap. */
static void aio_unblock(struct aio_ctx *ctx)
{
	aio_list_splice(&ctx->ready, &ctx->blocked);
}

void aio_block(struct aio_ctx *ctx, struct aio_req *req)
{
	aio_list_push(&ctx->blocked, req);
}

/* Release what @req holds and queue it for ->done with @err. */
static void aio_finish(struct aio_ctx *ctx, struct aio_req *req, int err)
{
	struct aio_slot *slot = aio_req_slot(ctx, req);

	assert(req->state != AIO_REQ_FINISHED);
	if (req->rec_id) {
		aio_rec_file_done(req->rec_id, err);
		req->rec_id = 0;
	}
	if (slot) {
		aio_write_end(ctx, slot);
		slot->req = NULL;
		slot->free_next = ctx->free_slots;
		ctx->free_slots = slot;
		ctx->nr_free++;
	}
	if (req->bounce) {
		buf_pool_put(ctx->bounce_pool, req->bounce);
		req->bounce = NULL;
		aio_unblock(ctx);
	}
	if (err < 0)
		log_err_ratelimited("aio: %s %s offset %" PRIu64 " length %" PRIu64 ": %s",
				    aio_op_name(req->op), req->file->path, req->offset, req->len,
				    err_str(err));
	req->result = err;
	req->state = AIO_REQ_FINISHED;
	aio_list_push(&ctx->finished, req);
}

/* Returns how many completions were delivered. */
static unsigned aio_deliver(struct aio_ctx *ctx)
{
	struct aio_req *req;
	unsigned n = 0;

	while ((req = aio_list_pop(&ctx->finished))) {
		ctx->count--;
		req->done(req, req->result);
		n++;
	}
	return n;
}

/* ---- in-flight writes ---- */

/*
 * A read-modify-write rewrites bytes the caller did not ask to write, with
 * what it read a moment earlier.  So an RMW waits for every in-flight write
 * overlapping its aligned range, and every write waits for an in-flight RMW
 * overlapping it; plain writes do not order among themselves.  Only O_DIRECT
 * files are ever read-modify-written, so only their writes are tracked.
 */
bool aio_write_begin(struct aio_ctx *ctx, struct aio_slot *slot, uint64_t lo, uint64_t hi, bool rmw)
{
	const struct aio_file *f = slot->req->file;

	if (!f->direct)
		return true;
	/* plain writes only wait for RMWs: with none in flight, nothing to look for */
	for (struct aio_slot *w = rmw || ctx->nr_rmw_writes ? ctx->writes : NULL; w;
	     w = w->w_next) {
		if (w->req->file == f && (rmw || w->w_rmw) &&
		    ranges_overlap(lo, hi - lo, w->w_lo, w->w_hi - w->w_lo)) {
			aio_block(ctx, slot->req);
			return false;
		}
	}
	slot->w_listed = true;
	slot->w_rmw = rmw;
	ctx->nr_rmw_writes += rmw;
	slot->w_lo = lo;
	slot->w_hi = hi;
	slot->w_prev = NULL;
	slot->w_next = ctx->writes;
	if (ctx->writes)
		ctx->writes->w_prev = slot;
	ctx->writes = slot;
	return true;
}

void aio_write_end(struct aio_ctx *ctx, struct aio_slot *slot)
{
	if (!slot->w_listed)
		return;
	if (slot->w_prev)
		slot->w_prev->w_next = slot->w_next;
	else
		ctx->writes = slot->w_next;
	if (slot->w_next)
		slot->w_next->w_prev = slot->w_prev;
	ctx->nr_rmw_writes -= slot->w_rmw;
	slot->w_listed = false;
	aio_unblock(ctx);
}

/* ---- completions ---- */

/* FSYNC, and DISCARD / WRITE_ZEROES done by the file system. */
static int aio_simple_complete(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res)
{
	aio_write_end(ctx, slot);
	if (res == -EOPNOTSUPP && slot->op != AIO_OP_FSYNC) {
		log_dbg(LOG_F_AIO, "aio: %s: %s not supported, writing zeros",
			slot->req->file->path, aio_op_name(slot->op));
		slot->zero_writes = true;
		return AIO_NEXT;
	}
	return res < 0 ? (int)res : 0;
}

void aio_slot_complete(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res)
{
	struct aio_req *req = slot->req;
	int verdict;

	if (res == -EAGAIN) {
		slot->reissue = true;
		aio_list_push(&ctx->ready, req);
		return;
	}
	if (req->op == AIO_OP_READ || req->op == AIO_OP_WRITE || slot->zero_writes)
		verdict = aio_rw_complete(ctx, slot, res);
	else
		verdict = aio_simple_complete(ctx, slot, res);
	if (verdict == AIO_AGAIN)
		slot->reissue = true;
	if (verdict > 0)
		aio_list_push(&ctx->ready, req);
	else
		aio_finish(ctx, req, verdict);
}

/* ---- issuing ---- */

/* The fault seam sees each request once, and again only after -EAGAIN. */
void aio_issue(struct aio_ctx *ctx, struct aio_slot *slot)
{
	if (!slot->issued && ctx->fault) {
		int err = ctx->fault(ctx->fault_opaque, slot->req);

		if (err < 0) {
			slot->issued = err != -EAGAIN;
			aio_slot_complete(ctx, slot, err);
			return;
		}
	}
	slot->issued = true;
	ctx->ops->queue(ctx, slot);
}

static int aio_simple_step(struct aio_ctx *ctx, struct aio_slot *slot)
{
	const struct aio_req *req = slot->req;

	slot->phase = AIO_PH_DIRECT;
	slot->op = req->op;
	slot->offset = req->offset;
	slot->len = req->len;
	slot->iov = NULL;
	slot->iovcnt = 0;
	if (req->op != AIO_OP_FSYNC &&
	    !aio_write_begin(ctx, slot, req->offset, req->offset + req->len, false))
		return 0;
	aio_issue(ctx, slot);
	return 0;
}

static void aio_step(struct aio_ctx *ctx, struct aio_slot *slot)
{
	int err;

	if (slot->reissue) {
		slot->reissue = false;
		aio_issue(ctx, slot);
		return;
	}
	if (slot->req->op == AIO_OP_READ || slot->req->op == AIO_OP_WRITE || slot->zero_writes)
		err = aio_rw_step(ctx, slot);
	else
		err = aio_simple_step(ctx, slot);
	if (err < 0)
		aio_finish(ctx, slot->req, err);
}

static bool aio_iov_len_is(const struct iovec *iov, unsigned iovcnt, uint64_t len)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < iovcnt; i++) {
		if (ck_add(total, (uint64_t)iov[i].iov_len, &total))
			return false;
	}
	return total == len;
}

/* Caller mistakes, caught before anything reaches the kernel. */
static int aio_req_check(const struct aio_req *req)
{
	uint64_t end;

	if ((unsigned)req->op >= ARRAY_SIZE(aio_op_names))
		return -EINVAL;
	if (req->op == AIO_OP_FSYNC)
		return 0;
	if (req->file->readonly && req->op != AIO_OP_READ)
		return -EBADF;
	if (ck_add(req->offset, req->len, &end) || end > INT64_MAX)
		return -EINVAL;
	if (req->op != AIO_OP_READ && req->op != AIO_OP_WRITE)
		return 0;
	if (req->iovcnt > IOV_MAX || (req->iovcnt && !req->iov))
		return -EINVAL;
	return aio_iov_len_is(req->iov, req->iovcnt, req->len) ? 0 : -EINVAL;
}

/* Recording (aio-rec.h): what the request will change, as it goes to the engine. */
static void aio_rec_start(struct aio_req *req)
{
	int type = req->op == AIO_OP_WRITE   ? AIO_REC_WRITE
		   : req->op == AIO_OP_FSYNC ? AIO_REC_FSYNC
					     : AIO_REC_ZERO;

	req->rec_id =
		aio_rec_file_issue(req->file, type, req->offset, req->len, req->iov, req->iovcnt);
}

static void aio_start(struct aio_ctx *ctx, struct aio_req *req)
{
	struct aio_slot *slot;
	int err = aio_req_check(req);

	if (err < 0 || (req->op != AIO_OP_FSYNC && req->len == 0) ||
	    (req->op == AIO_OP_FSYNC && req->file->nosync)) {
		aio_finish(ctx, req, err);
		return;
	}
	slot = ctx->free_slots;
	ctx->free_slots = slot->free_next;
	ctx->nr_free--;
	*slot = (struct aio_slot){ .req = req, .index = slot->index };
	req->state = slot->index;
	if (req->op != AIO_OP_READ && aio_rec_on())
		aio_rec_start(req);
	aio_step(ctx, slot);
}

/*
 * Continuations first: they hold slots, and finishing them frees slots.
 * Each round works only on what was runnable when it began (work requeued
 * meanwhile waits for the next iteration) and starts at most the slots
 * then free, so that an engine completing at once (sync) cannot run the
 * whole queue inside one iteration while the loop's other fds wait.
 */
static void aio_dispatch(struct aio_ctx *ctx)
{
	unsigned budget = ctx->nr_free;
	struct aio_list ready;
	struct aio_req *req;

	aio_list_init(&ready);
	aio_list_splice(&ready, &ctx->ready);
	while ((req = aio_list_pop(&ready)))
		aio_step(ctx, aio_req_slot(ctx, req));
	while (budget-- > 0 && ctx->free_slots && (req = aio_list_pop(&ctx->pending)))
		aio_start(ctx, req);
}

/* ---- the loop side ---- */

void aio_ctx_kick(struct aio_ctx *ctx)
{
	evloop_wake(ctx->loop);
}

static void aio_hook_fn(struct evloop_hook *h)
{
	struct aio_ctx *ctx = h->opaque;
	unsigned delivered;

	aio_dispatch(ctx);
	if (ctx->ops->submit)
		ctx->ops->submit(ctx);
	delivered = aio_deliver(ctx);
	/*
	 * Work made runnable in here (synchronous completions, ->done
	 * submitting more) would otherwise sleep until an unrelated event;
	 * and a caller waiting for a completion delivered here must get
	 * control back from this iteration rather than sleep in it.
	 */
	if (delivered || ctx->ready.head || (ctx->pending.head && ctx->free_slots))
		aio_ctx_kick(ctx);
}

static void aio_watch_fn(struct evloop_watch *w, uint32_t events)
{
	struct aio_ctx *ctx = w->opaque;

	ctx->ops->reap(ctx);
	aio_deliver(ctx);
}

static bool aio_poll_fn(struct evloop_poller *p)
{
	struct aio_ctx *ctx = p->opaque;

	if (!ctx->count || !ctx->ops->ready(ctx))
		return false;
	ctx->ops->reap(ctx);
	aio_deliver(ctx);
	return true;
}

void aio_submit(struct aio_ctx *ctx, struct aio_req *req)
{
	assert(req->file && req->done);
	req->ctx = ctx;
	req->result = 0;
	req->state = AIO_REQ_QUEUED;
	req->bounce = NULL;
	req->bounce_off = 0;
	req->bounce_len = 0;
	req->done_bytes = 0;
	req->rec_id = 0;
	ctx->count++;
	aio_list_push(&ctx->pending, req);
}

unsigned aio_ctx_inflight(const struct aio_ctx *ctx)
{
	return ctx->count;
}

enum aio_engine aio_ctx_engine(const struct aio_ctx *ctx)
{
	return ctx->ops->id;
}

void aio_ctx_set_fault(struct aio_ctx *ctx, aio_fault_fn *fn, void *opaque)
{
	ctx->fault = fn;
	ctx->fault_opaque = opaque;
}

/* ---- synchronous execution, shared by the engines ---- */

static int aio_exec_dealloc(const struct aio_file *f, const struct aio_slot *slot)
{
	bool zero = slot->op == AIO_OP_WRITE_ZEROES;
	int r;

	if (f->is_blockdev) {
		uint64_t range[2] = { slot->offset, slot->len };

		r = ioctl(f->fd, zero ? BLKZEROOUT : BLKDISCARD, range);
	} else {
		int mode = zero ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

		r = fallocate(f->fd, mode, (off_t)slot->offset, (off_t)slot->len);
	}
	return r < 0 ? neg_errno() : 0;
}

int64_t aio_slot_exec_sync(struct aio_ctx *ctx, struct aio_slot *slot)
{
	const struct aio_file *f = slot->req->file;
	ssize_t r;

	switch (slot->op) {
	case AIO_OP_READ:
		do
			r = preadv(f->fd, slot->iov, (int)slot->iovcnt, (off_t)slot->offset);
		while (r < 0 && errno == EINTR);
		return r < 0 ? neg_errno() : r;
	case AIO_OP_WRITE:
		do
			r = pwritev(f->fd, slot->iov, (int)slot->iovcnt, (off_t)slot->offset);
		while (r < 0 && errno == EINTR);
		return r < 0 ? neg_errno() : r;
	case AIO_OP_FSYNC:
		return fdatasync(f->fd) < 0 ? neg_errno() : 0;
	case AIO_OP_DISCARD:
	case AIO_OP_WRITE_ZEROES:
		return aio_exec_dealloc(f, slot);
	}
	return -EINVAL;
}

/* ---- contexts ---- */

static int aio_opts_resolve(struct aio_ctx_opts *o)
{
	if (!o->depth)
		o->depth = AIO_DEFAULT_DEPTH;
	if (!o->bounce_count)
		o->bounce_count = AIO_DEFAULT_BOUNCE_COUNT;
	if (!o->bounce_bytes)
		o->bounce_bytes = AIO_DEFAULT_BOUNCE_BYTES;
	if (o->depth > AIO_MAX_DEPTH || o->bounce_count > AIO_MAX_BOUNCE_COUNT ||
	    o->bounce_bytes > AIO_MAX_BOUNCE_BYTES) {
		log_err("aio: context options out of range: depth %u (max %u), %u bounce buffers "
			"(max %u) of %" PRIu64 " bytes (max %llu)",
			o->depth, AIO_MAX_DEPTH, o->bounce_count, AIO_MAX_BOUNCE_COUNT,
			o->bounce_bytes, AIO_MAX_BOUNCE_BYTES);
		return -EINVAL;
	}
	/* Whole pages, so that every block size up to a page divides them. */
	o->bounce_bytes =
		(o->bounce_bytes + AIO_BOUNCE_ALIGN - 1) & ~(uint64_t)(AIO_BOUNCE_ALIGN - 1);
	return 0;
}

static int aio_ctx_alloc(struct aio_ctx *ctx, const struct aio_ctx_opts *o)
{
	int r;

	ctx->depth = o->depth;
	ctx->offload_buffered = o->offload_buffered;
	ctx->slots = calloc(o->depth, sizeof(*ctx->slots));
	if (!ctx->slots)
		return -ENOMEM;
	for (unsigned i = o->depth; i-- > 0;) {
		ctx->slots[i].index = i;
		ctx->slots[i].free_next = ctx->free_slots;
		ctx->free_slots = &ctx->slots[i];
	}
	ctx->nr_free = o->depth;
	r = buf_pool_new(o->bounce_bytes, o->bounce_count, AIO_BOUNCE_ALIGN, &ctx->bounce_pool);
	if (r < 0)
		return r;
	ctx->bounce_bytes = o->bounce_bytes;
	ctx->zero_bytes = MIN(o->bounce_bytes, AIO_MAX_ZERO_BYTES);
	ctx->zero_buf = buf_alloc(ctx->zero_bytes, AIO_BOUNCE_ALIGN);
	if (!ctx->zero_buf)
		return -ENOMEM;
	memset(ctx->zero_buf, 0, ctx->zero_bytes);
	return 0;
}

static void aio_ctx_release(struct aio_ctx *ctx)
{
	buf_free(ctx->zero_buf);
	buf_pool_free(ctx->bounce_pool);
	free(ctx->slots);
	free(ctx);
}

static int aio_engine_init(struct aio_ctx *ctx, enum aio_engine want)
{
	int r = -EINVAL;

	for (size_t i = 0; i < ARRAY_SIZE(aio_engines); i++) {
		const struct aio_engine_ops *ops = aio_engines[i];

		if (want != AIO_ENGINE_AUTO && want != ops->id)
			continue;
		r = ops->init(ctx);
		if (r == 0) {
			ctx->ops = ops;
			return 0;
		}
		if (want != AIO_ENGINE_AUTO)
			break;
		if (i + 1 < ARRAY_SIZE(aio_engines))
			log_info("aio: %s unavailable (%s), falling back to %s", ops->name,
				 err_str(r), aio_engines[i + 1]->name);
	}
	log_err("aio: cannot set up the %s engine: %s", aio_engine_name(want), err_str(r));
	return r;
}

static int aio_ctx_attach(struct aio_ctx *ctx)
{
	int r;

	if (ctx->engine_fd >= 0) {
		ctx->watch.fd = ctx->engine_fd;
		ctx->watch.events = EPOLLIN;
		ctx->watch.fn = aio_watch_fn;
		ctx->watch.opaque = ctx;
		r = evloop_watch_add(ctx->loop, &ctx->watch);
		if (r < 0) {
			log_err("aio: cannot watch the %s completion fd: %s", ctx->ops->name,
				err_str(r));
			return r;
		}
	}
	ctx->hook.fn = aio_hook_fn;
	ctx->hook.opaque = ctx;
	evloop_hook_add(ctx->loop, &ctx->hook);
	if (ctx->ops->ready) {
		ctx->poller = (struct evloop_poller){ .fn = aio_poll_fn, .opaque = ctx };
		evloop_poller_add(ctx->loop, &ctx->poller);
	}
	return 0;
}

int aio_ctx_new(struct evloop *loop, const struct aio_ctx_opts *opts, struct aio_ctx **out)
{
	struct aio_ctx_opts o = opts ? *opts : (struct aio_ctx_opts){ 0 };
	struct aio_ctx *ctx;
	int r;

	r = aio_opts_resolve(&o);
	if (r < 0)
		return r;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->loop = loop;
	ctx->engine_fd = -1;
	aio_list_init(&ctx->pending);
	aio_list_init(&ctx->ready);
	aio_list_init(&ctx->blocked);
	aio_list_init(&ctx->finished);
	r = aio_ctx_alloc(ctx, &o);
	if (r < 0) {
		log_err("aio: cannot allocate a context: %s", err_str(r));
		goto err_free;
	}
	r = aio_engine_init(ctx, o.engine);
	if (r < 0)
		goto err_free;
	r = aio_ctx_attach(ctx);
	if (r < 0)
		goto err_fini;
	log_dbg(LOG_F_AIO, "aio: %s context, depth %u, %u bounce buffers of %" PRIu64 " bytes%s",
		ctx->ops->name, o.depth, o.bounce_count, o.bounce_bytes,
		o.offload_buffered ? ", buffered I/O offloaded" : "");
	*out = ctx;
	return 0;

err_fini:
	ctx->ops->fini(ctx);
err_free:
	aio_ctx_release(ctx);
	return r;
}

void aio_ctx_free(struct aio_ctx *ctx)
{
	if (!ctx)
		return;
	assert(ctx->count == 0);
	evloop_hook_del(ctx->loop, &ctx->hook);
	evloop_poller_del(ctx->loop, &ctx->poller);
	if (ctx->engine_fd >= 0)
		evloop_watch_del(&ctx->watch);
	ctx->ops->fini(ctx);
	aio_ctx_release(ctx);
}
