// SPDX-License-Identifier: MIT
/*
 * tap-front's engines (engine.h).  The raw engine uses qtap's own aio layer
 * forced to libaio, on a file opened with O_DIRECT: the same kernel path
 * fio's libaio engine takes, which make bench runs beside it as a cross-check.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "errors.h"
#include "engine.h"
#include "evloop.h"

/* ---- ring ----------------------------------------------------------------- */

static struct tf_io *ring_io(void *ctx, unsigned slot)
{
	return tf_queue_io(ctx, slot);
}

static int ring_submit(void *ctx, struct tf_io *io)
{
	return tf_queue_submit(ctx, io);
}

static void ring_push(void *ctx)
{
	tf_queue_push(ctx);
}

static int ring_wait(void *ctx, int timeout_ms)
{
	return tf_queue_wait(ctx, timeout_ms);
}

const struct tf_engine tf_ring_engine = {
	.name = "ring",
	.io = ring_io,
	.submit = ring_submit,
	.push = ring_push,
	.wait = ring_wait,
};

/* ---- raw ------------------------------------------------------------------ */

struct tf_raw_slot {
	struct aio_req req;
	struct iovec iov;
	struct tf_io io;
};

struct tf_raw {
	struct evloop *loop;
	struct aio_ctx *aio;
	struct aio_file *file;
	struct tf_raw_slot *slots;
	unsigned depth;
};

static void raw_done(struct aio_req *req, int err)
{
	struct tf_raw_slot *s = req->opaque;

	if (err)
		fprintf(stderr, "tap-front: %s: %s at offset %llu: %s\n", req->file->path,
			req->op == AIO_OP_READ	  ? "read"
			: req->op == AIO_OP_WRITE ? "write"
						  : "flush",
			(unsigned long long)req->offset, err_str(err));
	s->io.status = err ? RING_RSP_ERROR : RING_RSP_OKAY;
	s->io.got_op = s->io.op;
	s->io.busy = false;
	s->io.done(&s->io);
}

static struct tf_io *raw_io(void *ctx, unsigned slot)
{
	struct tf_raw *raw = ctx;

	return slot < raw->depth ? &raw->slots[slot].io : NULL;
}

static int raw_submit(void *ctx, struct tf_io *io)
{
	struct tf_raw *raw = ctx;
	struct tf_raw_slot *s = &raw->slots[io->slot];

	switch (io->op) {
	case RING_OP_READ:
		s->req.op = AIO_OP_READ;
		break;
	case RING_OP_WRITE:
		s->req.op = AIO_OP_WRITE;
		break;
	case RING_OP_FLUSH_DISKCACHE:
		s->req.op = AIO_OP_FSYNC;
		break;
	default:
		return -EOPNOTSUPP;
	}
	s->iov.iov_len = io->len;
	s->req.offset = io->offset;
	s->req.len = io->len;
	s->req.iovcnt = io->len ? 1 : 0;
	io->rsp_op = io->op;
	io->busy = true;
	aio_submit(raw->aio, &s->req);
	return 0;
}

static void raw_push(void *ctx)
{
}

static int raw_wait(void *ctx, int timeout_ms)
{
	struct tf_raw *raw = ctx;
	int n = evloop_run_once(raw->loop, (int64_t)timeout_ms * 1000000);

	return n == 0 ? -ETIMEDOUT : n;
}

const struct tf_engine tf_raw_engine = {
	.name = "raw",
	.io = raw_io,
	.submit = raw_submit,
	.push = raw_push,
	.wait = raw_wait,
};

static int raw_slots(struct tf_raw *raw, uint64_t bs)
{
	raw->slots = calloc(raw->depth, sizeof(*raw->slots));
	if (!raw->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < raw->depth; i++) {
		struct tf_raw_slot *s = &raw->slots[i];

		s->iov.iov_base = buf_alloc(bs, 4096);
		if (!s->iov.iov_base)
			return -ENOMEM;
		memset(s->iov.iov_base, 0x5a, bs);
		s->req = (struct aio_req){
			.file = raw->file, .iov = &s->iov, .done = raw_done, .opaque = s
		};
		s->io = (struct tf_io){ .slot = i, .buf = s->iov.iov_base };
	}
	return 0;
}

int tf_raw_new(struct aio_file *file, unsigned depth, uint64_t bs, struct tf_raw **out)
{
	const struct aio_ctx_opts opts = { .engine = AIO_ENGINE_LIBAIO, .depth = depth };
	struct tf_raw *raw = calloc(1, sizeof(*raw));
	int err;

	if (!raw)
		return -ENOMEM;
	raw->file = file;
	raw->depth = depth;
	err = evloop_new(&raw->loop);
	if (!err)
		err = aio_ctx_new(raw->loop, &opts, &raw->aio);
	if (!err)
		err = raw_slots(raw, bs);
	if (err) {
		fprintf(stderr, "tap-front: %s: cannot set up libaio: %s\n", file->path,
			err_str(err));
		tf_raw_free(raw);
		return err;
	}
	*out = raw;
	return 0;
}

void tf_raw_free(struct tf_raw *raw)
{
	if (!raw)
		return;
	for (unsigned i = 0; raw->slots && i < raw->depth; i++)
		buf_free(raw->slots[i].iov.iov_base);
	free(raw->slots);
	aio_ctx_free(raw->aio);
	evloop_free(raw->loop);
	free(raw);
}
