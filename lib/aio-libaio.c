// SPDX-License-Identifier: MIT
/*
 * The libaio engine (Linux native AIO).
 *
 * io_setup() sizes the kernel context to the slot count; every iocb carries
 * the context's eventfd (io_set_eventfd), which the loop watches.  What an
 * iteration prepared goes to the kernel in one io_submit().  Completions are
 * read straight from the event ring the kernel maps into our address space
 * when its header is the one we know (as libaio's own user-space getevents
 * and SPDK do), else with a non-blocking io_getevents().
 *
 * FSYNC is IOCB_CMD_FDSYNC.  File systems without an async fsync refuse it
 * at io_submit() time with EINVAL; those flushes fall back to fdatasync()
 * done synchronously.  Native AIO has no discard or zeroing command, so
 * DISCARD and WRITE_ZEROES run synchronously (fallocate or the block ioctl).
 */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aio-internal.h"
#include "checked.h"
#include "errors.h"
#include "log.h"

/* The kernel's event ring header (fs/aio.c), at the address io_setup returns. */
struct aio_ring {
	unsigned id;
	unsigned nr; /* number of io_events */
	unsigned head;
	unsigned tail;
	unsigned magic;
	unsigned compat_features;
	unsigned incompat_features;
	unsigned header_length; /* size of this header */
	struct io_event io_events[];
};

#define AIO_RING_MAGIC 0xa10a10a1u
#define LIBAIO_REAP_BATCH 64

struct libaio_engine {
	io_context_t ioctx;
	int efd;
	struct aio_ring *ring; /* NULL: reap with io_getevents */
	struct iocb *iocbs;    /* one per slot */
	struct iocb **batch;   /* prepared since the last submit */
	unsigned queued;
};

static struct aio_ring *libaio_ring(io_context_t ioctx)
{
	struct aio_ring *ring = (struct aio_ring *)ioctx;

	if (ring->magic != AIO_RING_MAGIC || ring->incompat_features != 0 ||
	    ring->header_length != sizeof(*ring))
		return NULL;
	return ring;
}

static void libaio_free(struct libaio_engine *e)
{
	if (e->efd >= 0)
		close(e->efd);
	free(e->iocbs);
	free(e->batch);
	free(e);
}

static int libaio_init(struct aio_ctx *ctx)
{
	struct libaio_engine *e = calloc(1, sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = e->efd < 0 ? neg_errno() : 0;
	e->iocbs = calloc(ctx->depth, sizeof(*e->iocbs));
	e->batch = calloc(ctx->depth, sizeof(*e->batch));
	if (r == 0 && (!e->iocbs || !e->batch))
		r = -ENOMEM;
	if (r == 0)
		r = io_setup((int)ctx->depth, &e->ioctx);
	if (r < 0) {
		libaio_free(e);
		return r;
	}
	e->ring = libaio_ring(e->ioctx);
	log_dbg(LOG_F_AIO, "aio: libaio reaps %s", e->ring ? "from the ring" : "with io_getevents");
	ctx->engine = e;
	ctx->engine_fd = e->efd;
	return 0;
}

static void libaio_fini(struct aio_ctx *ctx)
{
	struct libaio_engine *e = ctx->engine;

	io_destroy(e->ioctx);
	libaio_free(e);
}

static void libaio_queue(struct aio_ctx *ctx, struct aio_slot *slot)
{
	struct libaio_engine *e = ctx->engine;
	struct iocb *iocb = &e->iocbs[slot->index];
	int fd = slot->req->file->fd;

	switch (slot->op) {
	case AIO_OP_READ:
		io_prep_preadv(iocb, fd, slot->iov, (int)slot->iovcnt, (long long)slot->offset);
		break;
	case AIO_OP_WRITE:
		io_prep_pwritev(iocb, fd, slot->iov, (int)slot->iovcnt, (long long)slot->offset);
		break;
	case AIO_OP_FSYNC:
		io_prep_fdsync(iocb, fd);
		break;
	case AIO_OP_DISCARD:
	case AIO_OP_WRITE_ZEROES:
		aio_slot_complete(ctx, slot, aio_slot_exec_sync(ctx, slot));
		return;
	}
	io_set_eventfd(iocb, e->efd);
	iocb->data = slot;
	e->batch[e->queued++] = iocb;
}

/* Report @res for @slot, turning a refused async fdatasync into a sync one. */
static void libaio_complete(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res)
{
	if (res == -EINVAL && slot->op == AIO_OP_FSYNC) {
		if (!ctx->fdsync_warned)
			log_warn("aio: %s: no asynchronous fdatasync here; flushing synchronously",
				 slot->req->file->path);
		ctx->fdsync_warned = true;
		res = aio_slot_exec_sync(ctx, slot);
	}
	aio_slot_complete(ctx, slot, res);
}

static void libaio_submit(struct aio_ctx *ctx)
{
	struct libaio_engine *e = ctx->engine;
	unsigned i = 0;

	while (i < e->queued) {
		int r = io_submit(e->ioctx, (long)(e->queued - i), e->batch + i);

		if (r > 0) {
			i += (unsigned)r;
		} else if (r == -EAGAIN || r == 0) {
			/* Out of kernel resources: the rest waits for the next round. */
			for (; i < e->queued; i++)
				aio_slot_complete(ctx, e->batch[i]->data, -EAGAIN);
		} else if (r != -EINTR) {
			/* io_submit stops at the first iocb it refuses. */
			libaio_complete(ctx, e->batch[i]->data, r);
			i++;
		}
	}
	e->queued = 0;
}

static unsigned libaio_ring_take(struct aio_ring *ring, struct io_event *evs, unsigned max)
{
	unsigned head = ring->head, n = 0;
	/* Acquire: the events are read only after the tail that covers them. */
	unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);

	while (head != tail && n < max) {
		evs[n++] = ring->io_events[head];
		head = (head + 1) % ring->nr;
	}
	/* Release: the kernel may reuse the entries only after we copied them. */
	__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
	return n;
}

static unsigned libaio_take(struct libaio_engine *e, struct io_event *evs, unsigned max)
{
	struct timespec zero = { 0, 0 };
	int r;

	if (e->ring)
		return libaio_ring_take(e->ring, evs, max);
	do
		r = io_getevents(e->ioctx, 0, (long)max, evs, &zero);
	while (r == -EINTR);
	if (r < 0) {
		log_err_ratelimited("aio: io_getevents: %s", err_str(r));
		return 0;
	}
	return (unsigned)r;
}

static void libaio_reap(struct aio_ctx *ctx)
{
	struct libaio_engine *e = ctx->engine;
	struct io_event evs[LIBAIO_REAP_BATCH];
	uint64_t count;
	unsigned n;

	/* Reset the eventfd first: completions from now on make it readable again. */
	if (read(e->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_err_ratelimited("aio: reading the libaio eventfd: %s", err_str(neg_errno()));
	while ((n = libaio_take(e, evs, LIBAIO_REAP_BATCH)) > 0) {
		for (unsigned i = 0; i < n; i++)
			libaio_complete(ctx, evs[i].data, (long)evs[i].res);
	}
}

const struct aio_engine_ops aio_libaio_ops = {
	.name = "libaio",
	.id = AIO_ENGINE_LIBAIO,
	.init = libaio_init,
	.fini = libaio_fini,
	.queue = libaio_queue,
	.submit = libaio_submit,
	.reap = libaio_reap,
};
