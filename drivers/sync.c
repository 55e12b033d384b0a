/* SPDX-License-Identifier: MIT */
/*
 * The synchronous driver facade (see sync.h).  The loop is run one
 * iteration at a time until the request's completion flag is set, which
 * also covers requests that drv_submit() completes before returning.
 */
#include <errno.h>
#include <stdlib.h>

#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "sync.h"

struct drv_sync {
	struct drv_image *img;
	struct drv_queue q;
	void *req_priv; /* drv_chain_req_priv_bytes() of scratch, reused */
};

struct sync_wait {
	bool done;
	int err;
};

static void sync_done(struct drv_req *req, int err)
{
	struct sync_wait *w = req->opaque;

	w->err = err;
	w->done = true;
}

static void sync_release(struct drv_sync *s)
{
	aio_ctx_free(s->q.aio);
	evloop_free(s->q.loop);
	free(s->req_priv);
	free(s);
}

int drv_sync_new(struct drv_image *img, const struct aio_ctx_opts *opts, struct drv_sync **out)
{
	struct drv_sync *s = calloc(1, sizeof(*s));
	int err = -ENOMEM;

	if (!s) {
		log_err("%s: out of memory", img->path);
		return -ENOMEM;
	}
	s->img = img;
	s->req_priv = calloc(1, drv_chain_req_priv_bytes(img) ?: 1);
	if (!s->req_priv) {
		log_err("%s: out of memory", img->path);
		goto err_release;
	}
	err = evloop_new(&s->q.loop);
	if (err)
		goto err_release;
	err = aio_ctx_new(s->q.loop, opts, &s->q.aio);
	if (err)
		goto err_release;
	err = drv_queues_init(img, &s->q, 1);
	if (err)
		goto err_release;
	*out = s;
	return 0;

err_release:
	sync_release(s);
	return err;
}

void drv_sync_free(struct drv_sync *s)
{
	if (!s)
		return;
	drv_queues_fini(s->img);
	sync_release(s);
}

/* Submit @req to @img, one image of the chain, and wait for it. */
static int sync_req_at(struct drv_sync *s, struct drv_image *img, struct drv_req *req)
{
	struct sync_wait w = { .done = false };
	int err;

	req->q = &s->q;
	req->done = sync_done;
	req->opaque = &w;
	req->priv = s->req_priv;
	drv_submit(img, req);
	while (!w.done) {
		err = evloop_run_once(s->q.loop, -1);
		if (err < 0 && err != -EINTR) {
			/* The request is still in flight: nothing can be freed safely. */
			log_err("%s: event loop failed: %s", s->img->path, err_str(err));
			abort();
		}
	}
	return w.err;
}

int drv_sync_req(struct drv_sync *s, struct drv_req *req)
{
	return sync_req_at(s, s->img, req);
}

int drv_sync_rw(struct drv_sync *s, enum drv_op op, uint64_t offset, void *buf, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct drv_req req = {
		.op = op,
		.offset = offset,
		.len = len,
		.iov = &iov,
		.iovcnt = 1,
	};

	return drv_sync_req(s, &req);
}

int drv_sync_flush(struct drv_sync *s)
{
	struct drv_req req = { .op = DRV_OP_FLUSH };

	return drv_sync_req(s, &req);
}

int drv_sync_discard(struct drv_sync *s, uint64_t offset, uint64_t len)
{
	struct drv_req req = { .op = DRV_OP_DISCARD, .offset = offset, .len = len };

	return drv_sync_req(s, &req);
}

int drv_sync_write_zeroes(struct drv_sync *s, uint64_t offset, uint64_t len, unsigned flags)
{
	struct drv_req req = {
		.op = DRV_OP_WRITE_ZEROES,
		.flags = flags,
		.offset = offset,
		.len = len,
	};

	return drv_sync_req(s, &req);
}

int drv_sync_block_status(struct drv_sync *s, uint64_t offset, uint64_t len, struct drv_status *out)
{
	struct drv_req req = { .op = DRV_OP_BLOCK_STATUS, .offset = offset, .len = len };
	int err = drv_sync_req(s, &req);

	if (!err)
		*out = req.status;
	return err;
}

int drv_sync_block_status_at(struct drv_sync *s, struct drv_image *img, uint64_t offset,
			     uint64_t len, struct drv_status *out)
{
	struct drv_req req = { .op = DRV_OP_BLOCK_STATUS, .offset = offset, .len = len };
	int err = sync_req_at(s, img, &req);

	if (!err)
		*out = req.status;
	return err;
}

struct drv_queue *drv_sync_queue(struct drv_sync *s)
{
	return &s->q;
}
