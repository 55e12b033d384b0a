// SPDX-License-Identifier: MIT
/*
 * The "nbd" driver: a remote NBD export as a read-only image, through
 * libnbd.  The path is an NBD URI (nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH, ...), as qemu-img and nbdinfo take
 * them.  It serves as a source (tap-img convert from a remote disk) and as
 * a remote base image.
 *
 * Each queue has its own connection (libnbd handles are not shared between
 * threads here): queue 0 uses the one ->open made to learn the size, the
 * others connect in ->queue_init, so a server that allows one client at a
 * time (qemu-nbd's default) serves one queue.  Commands go out with
 * libnbd's asynchronous calls; the connection's socket is watched on the
 * queue's event loop, with the direction libnbd wants refreshed by a
 * prepare hook before every wait.  Block status comes from the server's
 * "base:allocation" context when it has one.
 *
 * Static names carry the rnbd_ prefix: nbd_ is libnbd's.
 */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "driver.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "registry.h"

#define RNBD_MIN_BLOCK_BYTES 512u
#define RNBD_CONTEXT "base:allocation"
#define RNBD_STATE_HOLE 1u /* NBD's base:allocation flags */
#define RNBD_STATE_ZERO 2u

struct rnbd_image {
	struct nbd_handle *h; /* the open's connection, queue 0's */
	bool has_status;
};

struct rnbd_req;

struct rnbd_queue {
	struct nbd_handle *h;
	/*
	 * Requests whose commands libnbd completed: libnbd calls back with
	 * the handle locked, so they are finished after it returns (a
	 * completion may submit the next command on the same handle).
	 */
	struct rnbd_req *done;
	bool own; /* connected in queue_init, closed in queue_fini */
	struct evloop_watch watch;
	struct evloop_hook hook;
	struct evloop *loop;
};

struct rnbd_req {
	struct drv_req *req;
	struct rnbd_queue *rq;
	struct rnbd_req *next; /* on rq->done */
	unsigned pending;      /* commands out */
	int err;
	bool status_seen;
};

static int rnbd_error(const char *what, const char *uri)
{
	int err = nbd_get_errno();

	log_err("nbd %s: %s: %s", uri, what, nbd_get_error() ?: "unknown error");
	return err > 0 ? -err : -EIO;
}

static int rnbd_connect(const char *uri, struct nbd_handle **out)
{
	struct nbd_handle *h = nbd_create();
	int err;

	if (!h)
		return rnbd_error("create handle", uri);
	if (nbd_add_meta_context(h, RNBD_CONTEXT) < 0 || nbd_connect_uri(h, uri) < 0) {
		err = rnbd_error("connect", uri);
		nbd_close(h);
		return err;
	}
	*out = h;
	return 0;
}

static int rnbd_open(struct drv_image *img, const char *path, unsigned flags)
{
	struct rnbd_image *ri = img->priv;
	int64_t size, min;
	int err;

	if (!(flags & DRV_OPEN_RDONLY)) {
		log_err("nbd %s: remote images are read-only", path);
		return -EROFS;
	}
	err = rnbd_connect(path, &ri->h);
	if (err)
		return err;
	size = nbd_get_size(ri->h);
	min = nbd_get_block_size(ri->h, LIBNBD_SIZE_MINIMUM);
	if (size < 0) {
		err = rnbd_error("size", path);
		nbd_close(ri->h);
		return err;
	}
	img->size_bytes = (uint64_t)size;
	img->block_bytes = RNBD_MIN_BLOCK_BYTES;
	if (min > 0 && is_power_of_2_u64((uint64_t)min))
		img->block_bytes = (uint32_t)MAX((uint64_t)min, (uint64_t)RNBD_MIN_BLOCK_BYTES);
	ri->has_status = nbd_can_meta_context(ri->h, RNBD_CONTEXT) == 1;
	img->caps = ri->has_status ? DRV_CAP_BLOCK_STATUS : 0;
	log_dbg(LOG_F_NBD, "nbd %s: %" PRIu64 " bytes, block %u%s", path, img->size_bytes,
		img->block_bytes, ri->has_status ? ", base:allocation" : "");
	return 0;
}

static void rnbd_close(struct drv_image *img)
{
	struct rnbd_image *ri = img->priv;

	if (ri->h)
		nbd_shutdown(ri->h, 0);
	nbd_close(ri->h);
	ri->h = NULL;
}

/* ---- the connection on the queue's loop ------------------------------------------- */

static uint32_t wanted_events(struct nbd_handle *h)
{
	unsigned dir = nbd_aio_get_direction(h);

	return ((dir & LIBNBD_AIO_DIRECTION_READ) ? EPOLLIN : 0) |
	       ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? EPOLLOUT : 0);
}

/* Before each wait: watch the socket in the direction libnbd is waiting for. */
static void rnbd_prepare(struct evloop_hook *hook)
{
	struct rnbd_queue *rq = hook->opaque;
	uint32_t events = wanted_events(rq->h);

	if (events != rq->watch.events)
		evloop_watch_mod(&rq->watch, events);
}

static void finish_done(struct rnbd_queue *rq)
{
	while (rq->done) {
		struct rnbd_req *r = rq->done;

		rq->done = r->next;
		drv_req_complete(r->req, r->err);
	}
}

static void rnbd_ready(struct evloop_watch *w, uint32_t events)
{
	struct rnbd_queue *rq = w->opaque;

	/* a failure kills the connection: libnbd fails the commands out */
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		nbd_aio_notify_read(rq->h);
	if (events & EPOLLOUT)
		nbd_aio_notify_write(rq->h);
	finish_done(rq);
}

static int rnbd_queue_init(struct drv_image *img, struct drv_queue *q)
{
	struct rnbd_image *ri = img->priv;
	struct rnbd_queue *rq = img->qpriv[q->index];
	int err;

	rq->h = ri->h;
	if (q->index > 0) {
		err = rnbd_connect(img->path, &rq->h);
		if (err)
			return err;
		rq->own = true;
	}
	rq->loop = q->loop;
	rq->watch = (struct evloop_watch){ .fd = nbd_aio_get_fd(rq->h),
					   .events = wanted_events(rq->h),
					   .fn = rnbd_ready,
					   .opaque = rq };
	err = evloop_watch_add(q->loop, &rq->watch);
	if (err) {
		log_err("nbd %s: watching the connection: %s", img->path, err_str(err));
		if (rq->own)
			nbd_close(rq->h);
		return err;
	}
	rq->hook = (struct evloop_hook){ .fn = rnbd_prepare, .opaque = rq };
	evloop_hook_add(q->loop, &rq->hook);
	return 0;
}

static void rnbd_queue_fini(struct drv_image *img, struct drv_queue *q)
{
	struct rnbd_queue *rq = img->qpriv[q->index];

	evloop_hook_del(rq->loop, &rq->hook);
	evloop_watch_del(&rq->watch);
	if (rq->own) {
		nbd_shutdown(rq->h, 0);
		nbd_close(rq->h);
	}
	rq->h = NULL;
}

/* ---- requests ------------------------------------------------------------------------ */

static int rnbd_cmd_done(void *opaque, int *error)
{
	struct rnbd_req *r = opaque;

	if (*error && !r->err)
		r->err = -*error;
	if (--r->pending == 0) {
		r->next = r->rq->done;
		r->rq->done = r;
	}
	return 1; /* retire the command */
}

/* A command could not even be queued. */
static void rnbd_failed(struct drv_image *img, struct rnbd_req *r, const char *what)
{
	int err = rnbd_error(what, img->path);

	if (!r->err)
		r->err = err;
	if (r->pending == 0)
		drv_req_complete(r->req, r->err);
}

static struct rnbd_queue *req_queue(struct drv_image *img, struct drv_req *req)
{
	return img->qpriv[req->q->index];
}

static void rnbd_read(struct drv_image *img, struct drv_req *req)
{
	struct rnbd_queue *rq = req_queue(img, req);
	struct nbd_handle *h = rq->h;
	struct rnbd_req *r = req->priv;
	uint64_t off = req->offset;
	unsigned i;

	*r = (struct rnbd_req){ .req = req, .rq = rq, .pending = 1 }; /* held until all are out */
	for (i = 0; i < req->iovcnt && !r->err; i++) {
		const struct iovec *v = &req->iov[i];

		if (v->iov_len == 0)
			continue;
		r->pending++;
		if (nbd_aio_pread(
			    h, v->iov_base, v->iov_len, off,
			    (nbd_completion_callback){ .callback = rnbd_cmd_done, .user_data = r },
			    0) < 0) {
			r->pending--;
			rnbd_failed(img, r, "read");
		}
		off += v->iov_len;
	}
	if (--r->pending == 0)
		drv_req_complete(req, r->err);
}

/*
 * base:allocation flags as the drivers': zeros or data to read, allocated
 * unless a hole (as a raw file's hole; a hole that does not read as zeros
 * still has to be read).
 */
static unsigned status_flags(uint32_t nbd)
{
	unsigned f = (nbd & RNBD_STATE_ZERO) ? DRV_BS_ZERO : DRV_BS_DATA;

	return (nbd & RNBD_STATE_HOLE) ? f : f | DRV_BS_ALLOCATED;
}

static int rnbd_extents(void *opaque, const char *context, uint64_t offset, uint32_t *entries,
			size_t nr, int *error)
{
	struct rnbd_req *r = opaque;
	struct drv_status *st = &r->req->status;
	size_t i;

	if (strcmp(context, RNBD_CONTEXT) != 0 || r->status_seen)
		return 0;
	r->status_seen = true;
	for (i = 0; i + 1 < nr; i += 2) {
		unsigned f = status_flags(entries[i + 1]);

		if (i > 0 && f != st->flags)
			break;
		st->flags = f;
		st->len += entries[i];
	}
	st->len = MIN(st->len, r->req->len);
	(void)offset;
	(void)error;
	return 0;
}

static int rnbd_status_done(void *opaque, int *error)
{
	struct rnbd_req *r = opaque;

	if (!*error && (!r->status_seen || r->req->status.len == 0)) {
		log_err_ratelimited("nbd: block status at %" PRIu64 ": no extent in the reply",
				    r->req->offset);
		*error = EIO;
	}
	return rnbd_cmd_done(opaque, error);
}

static void rnbd_block_status(struct drv_image *img, struct drv_req *req)
{
	struct rnbd_req *r = req->priv;

	*r = (struct rnbd_req){ .req = req, .rq = req_queue(img, req), .pending = 1 };
	req->status = (struct drv_status){ .flags = 0 };
	if (nbd_aio_block_status(
		    r->rq->h, req->len, req->offset,
		    (nbd_extent_callback){ .callback = rnbd_extents, .user_data = r },
		    (nbd_completion_callback){ .callback = rnbd_status_done, .user_data = r },
		    0) < 0) {
		r->pending = 0;
		rnbd_failed(img, r, "block status");
	}
}

static void rnbd_flush(struct drv_image *img, struct drv_req *req)
{
	(void)img;
	drv_req_complete(req, 0); /* read-only: nothing of ours to make durable */
}

const struct drv_ops remote_nbd_driver = {
	.name = "nbd",
	.description = "a remote NBD export (URI), read-only",
	.priv_size = sizeof(struct rnbd_image),
	.queue_priv_size = sizeof(struct rnbd_queue),
	.req_priv_size = sizeof(struct rnbd_req),
	.open = rnbd_open,
	.close = rnbd_close,
	.queue_init = rnbd_queue_init,
	.queue_fini = rnbd_queue_fini,
	.read = rnbd_read,
	.flush = rnbd_flush,
	.block_status = rnbd_block_status,
};
