// SPDX-License-Identifier: MIT
/*
 * The io_uring engine.
 *
 * The ring has one submission entry per slot, so preparing an entry never
 * finds the queue full while the kernel keeps up; everything prepared during
 * an iteration goes to the kernel in one io_uring_submit().  The loop
 * watches the ring fd itself (it polls readable while completions wait), and
 * completions are reaped from the shared CQ ring without a system call.
 *
 * With aio_ctx_opts.offload_buffered, reads and writes of buffered files
 * carry IOSQE_ASYNC: the kernel hands them to its worker threads at once.
 *
 * FSYNC is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC; DISCARD and
 * WRITE_ZEROES on regular files are IORING_OP_FALLOCATE (punch hole / zero
 * range).  Block devices and kernels without IORING_OP_FALLOCATE (before
 * 5.6) get the synchronous ioctl or fallocate instead.
 */
#include <errno.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <stdlib.h>

#include "aio-internal.h"
#include "errors.h"
#include "log.h"

#define URING_REAP_BATCH 64

struct uring_engine {
	struct io_uring ring;
	bool has_fallocate;
	bool offload; /* IOSQE_ASYNC on buffered reads and writes */
	bool queued;  /* entries prepared since the last submit */
};

/*
 * What the kernel supports.  The probe came with 5.6, as did
 * IORING_OP_FALLOCATE and IOSQE_ASYNC: without it, neither.
 */
static void uring_probe(struct uring_engine *u, const struct aio_ctx *ctx)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);

	if (!probe)
		return;
	u->has_fallocate = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
	u->offload = ctx->offload_buffered;
	io_uring_free_probe(probe);
}

static int uring_init(struct aio_ctx *ctx)
{
	struct uring_engine *u = calloc(1, sizeof(*u));
	int r;

	if (!u)
		return -ENOMEM;
	r = io_uring_queue_init(ctx->depth, &u->ring, 0);
	if (r < 0) {
		free(u);
		return r;
	}
	uring_probe(u, ctx);
	ctx->engine = u;
	ctx->engine_fd = u->ring.ring_fd;
	return 0;
}

static void uring_fini(struct aio_ctx *ctx)
{
	struct uring_engine *u = ctx->engine;

	io_uring_queue_exit(&u->ring);
	free(u);
}

static void uring_prep(const struct uring_engine *u, struct io_uring_sqe *sqe,
		       const struct aio_slot *slot)
{
	const struct aio_file *file = slot->req->file;
	int fd = file->fd;
	off_t off = (off_t)slot->offset, len = (off_t)slot->len;

	switch (slot->op) {
	case AIO_OP_READ:
		io_uring_prep_readv(sqe, fd, slot->iov, slot->iovcnt, (__u64)off);
		break;
	case AIO_OP_WRITE:
		io_uring_prep_writev(sqe, fd, slot->iov, slot->iovcnt, (__u64)off);
		break;
	case AIO_OP_FSYNC:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	case AIO_OP_DISCARD:
		io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
					len);
		break;
	case AIO_OP_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, fd, FALLOC_FL_ZERO_RANGE, off, len);
		break;
	}
	/* Straight to a worker: see aio_ctx_opts.offload_buffered. */
	if (u->offload && !file->direct && (slot->op == AIO_OP_READ || slot->op == AIO_OP_WRITE))
		sqe->flags |= IOSQE_ASYNC;
}

static void uring_queue(struct aio_ctx *ctx, struct aio_slot *slot)
{
	struct uring_engine *u = ctx->engine;
	struct io_uring_sqe *sqe;

	if ((slot->op == AIO_OP_DISCARD || slot->op == AIO_OP_WRITE_ZEROES) &&
	    (slot->req->file->is_blockdev || !u->has_fallocate)) {
		aio_slot_complete(ctx, slot, aio_slot_exec_sync(ctx, slot));
		return;
	}
	sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		/* Entries a failed submit left behind: retried next iteration. */
		aio_slot_complete(ctx, slot, -EAGAIN);
		return;
	}
	uring_prep(u, sqe, slot);
	io_uring_sqe_set_data(sqe, slot);
	u->queued = true;
}

static void uring_submit(struct aio_ctx *ctx)
{
	struct uring_engine *u = ctx->engine;
	int r;

	if (!u->queued)
		return;
	r = io_uring_submit(&u->ring);
	if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR)
		log_err_ratelimited("aio: io_uring_submit: %s", err_str(r));
	/* What the kernel did not take stays in the SQ ring for next time. */
	u->queued = io_uring_sq_ready(&u->ring) > 0;
	if (u->queued)
		aio_ctx_kick(ctx);
}

static void uring_reap(struct aio_ctx *ctx)
{
	struct uring_engine *u = ctx->engine;
	struct io_uring_cqe *cqes[URING_REAP_BATCH];
	unsigned n;

	/* Completion handling only moves requests between lists: it never
	 * touches the ring, so the entries are released after the batch. */
	while ((n = io_uring_peek_batch_cqe(&u->ring, cqes, URING_REAP_BATCH)) > 0) {
		for (unsigned i = 0; i < n; i++)
			aio_slot_complete(ctx, io_uring_cqe_get_data(cqes[i]), cqes[i]->res);
		io_uring_cq_advance(&u->ring, n);
	}
}

static bool uring_ready(struct aio_ctx *ctx)
{
	struct uring_engine *u = ctx->engine;

	return io_uring_cq_ready(&u->ring) > 0;
}

const struct aio_engine_ops aio_uring_ops = {
	.name = "io_uring",
	.id = AIO_ENGINE_URING,
	.init = uring_init,
	.fini = uring_fini,
	.queue = uring_queue,
	.submit = uring_submit,
	.reap = uring_reap,
	.ready = uring_ready,
};
