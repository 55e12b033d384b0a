// SPDX-License-Identifier: MIT
/*
 * The FUSE export's file operations.  The file system is one regular file,
 * its root (FUSE_ROOT_ID): lookups find nothing, the size is the image's
 * and does not change, owner, mode and times may be set.
 *
 * Opens are direct_io, so the kernel keeps no page cache of the image:
 * every read and write reaches the vbd, and NBD clients of the same disk
 * see the same bytes.  Any offset and length is served; partial blocks go
 * through the read-modify-write helper shared with the NBD server.
 *
 * fallocate: FALLOC_FL_ZERO_RANGE is a zero write that keeps the space;
 * FALLOC_FL_PUNCH_HOLE a zero write that may deallocate (TD_REQ_MAY_UNMAP:
 * whole clusters are discarded, as a discard would, the rest zeroed).  A
 * plain discard would not do for a hole: it may leave the data of a
 * partial cluster, or let a backing file show through, and a punched hole
 * must read zeros.  Both stay within the file (KEEP_SIZE, or a range
 * inside it): the file cannot grow.  Plain allocation and the other modes
 * are not supported.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "log.h"
#include "tapdisk/fuse-internal.h"

static struct tdfuse *req_fuse(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- metadata ----------------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_write = TDFUSE_MAX_IO;
	conn->max_read = TDFUSE_MAX_IO; /* as the max_read mount option says */
	/* requests in our own buffer, never in a pipe */
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, ENOENT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tdfuse *f = req_fuse(req);

	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &f->st, 1.0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct tdfuse *f = req_fuse(req);
	struct timespec now;

	if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != f->size_bytes) {
		fuse_reply_err(req, EINVAL); /* the image's size is not the file's to change */
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	if (to_set & FUSE_SET_ATTR_MODE)
		f->st.st_mode = S_IFREG | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		f->st.st_uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		f->st.st_gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_ATIME)
		f->st.st_atim = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME)
		f->st.st_mtim = attr->st_mtim;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		f->st.st_atim = now;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		f->st.st_mtim = now;
	f->st.st_ctim = now;
	fuse_reply_attr(req, &f->st, 1.0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tdfuse *f = req_fuse(req);

	if (f->readonly && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

/* close(2): nothing to do, the data is the vbd's already; fsync makes it durable. */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* ---- data: running on a queue thread -------------------------------------------- */

static void ctx_done(struct tdfuse_ctx *ctx, int err)
{
	if (err)
		fuse_reply_err(ctx->req, -err);
	else if (ctx->kind == TDFUSE_READ)
		fuse_reply_buf(ctx->req, (const char *)ctx->buf + (ctx->offset - ctx->start),
			       ctx->len);
	else if (ctx->kind == TDFUSE_WRITE)
		fuse_reply_write(ctx->req, ctx->len);
	else
		fuse_reply_err(ctx->req, 0);
	tdfuse_ctx_put(ctx);
}

static void treq_done(struct td_request *treq, int err)
{
	ctx_done(treq->opaque, err);
}

static void rmw_done(struct td_rmw *rmw, int err)
{
	ctx_done(rmw->opaque, err);
}

static void submit(struct tdfuse_ctx *ctx, enum td_op op, uint64_t off, uint64_t len, uint8_t *buf)
{
	ctx->treq = (struct td_request){
		.op = op,
		.flags = ctx->flags,
		.offset = off,
		.len = len,
		.done = treq_done,
		.opaque = ctx,
	};
	if (buf) {
		ctx->iov = (struct iovec){ .iov_base = buf, .iov_len = len };
		ctx->treq.iov = &ctx->iov;
		ctx->treq.iovcnt = 1;
	}
	vbd_submit(ctx->q, &ctx->treq);
}

static void start_rmw(struct tdfuse_ctx *ctx, enum td_op op, uint8_t *buf, uint8_t *scratch)
{
	ctx->rmw = (struct td_rmw){
		.q = ctx->q,
		.locks = ctx->f->locks,
		.op = op,
		.flags = ctx->flags,
		.offset = ctx->offset,
		.len = ctx->len,
		.block_bytes = ctx->f->block_bytes,
		.buf = buf,
		.scratch = scratch,
		.done = rmw_done,
		.opaque = ctx,
	};
	td_rmw_start(&ctx->rmw);
}

/* On ctx->q's thread. */
static void ctx_run(struct evloop_call *call)
{
	struct tdfuse_ctx *ctx = call->opaque;
	uint32_t b = ctx->f->block_bytes;
	uint64_t span = td_rmw_span_bytes(ctx->offset, ctx->len, b);
	bool aligned = td_rmw_aligned(ctx->offset, ctx->len, b);

	switch (ctx->kind) {
	case TDFUSE_READ:
		submit(ctx, TD_OP_READ, ctx->start, span, ctx->buf);
		break;
	case TDFUSE_WRITE:
		if (aligned)
			submit(ctx, TD_OP_WRITE, ctx->offset, ctx->len, ctx->buf);
		else
			start_rmw(ctx, TD_OP_WRITE, ctx->buf, ctx->buf + span);
		break;
	case TDFUSE_FSYNC:
		submit(ctx, TD_OP_FLUSH, 0, 0, NULL);
		break;
	case TDFUSE_ZERO:
		if (aligned)
			submit(ctx, TD_OP_WRITE_ZEROES, ctx->offset, ctx->len, NULL);
		else
			start_rmw(ctx, TD_OP_WRITE_ZEROES, NULL, ctx->buf);
		break;
	}
}

/* Hand @ctx to the next queue thread in turn. */
static void dispatch(struct tdfuse *f, struct tdfuse_ctx *ctx)
{
	ctx->q = f->queues[f->next_queue++ % f->nr_queues];
	ctx->run = (struct evloop_call){ .fn = ctx_run, .opaque = ctx };
	evloop_post(td_queue_loop(ctx->q), &ctx->run);
}

static struct tdfuse_ctx *ctx_for(fuse_req_t req, enum tdfuse_kind kind, uint64_t off, uint64_t len,
				  unsigned flags)
{
	struct tdfuse *f = req_fuse(req);
	struct tdfuse_ctx *ctx = tdfuse_ctx_get(f);

	ctx->req = req;
	ctx->kind = kind;
	ctx->offset = off;
	ctx->len = len;
	ctx->flags = flags;
	ctx->start = td_rmw_start_bytes(off, f->block_bytes);
	return ctx;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct tdfuse *f = req_fuse(req);
	uint64_t len;

	if (off < 0 || (uint64_t)off >= f->size_bytes || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = MIN((uint64_t)size, MIN(f->size_bytes - (uint64_t)off, (uint64_t)TDFUSE_MAX_IO));
	dispatch(f, ctx_for(req, TDFUSE_READ, (uint64_t)off, len, 0));
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct tdfuse *f = req_fuse(req);
	struct tdfuse_ctx *ctx;
	uint64_t len;

	if (f->readonly) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || (uint64_t)off >= f->size_bytes) {
		fuse_reply_err(req, size ? ENOSPC : 0); /* the file cannot grow */
		return;
	}
	len = MIN((uint64_t)size, MIN(f->size_bytes - (uint64_t)off, (uint64_t)TDFUSE_MAX_IO));
	if (len == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	ctx = ctx_for(req, TDFUSE_WRITE, (uint64_t)off, len, 0);
	memcpy(ctx->buf + (ctx->offset - ctx->start), buf, len);
	dispatch(f, ctx);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	dispatch(req_fuse(req), ctx_for(req, TDFUSE_FSYNC, 0, 0, 0));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t length,
			 struct fuse_file_info *fi)
{
	struct tdfuse *f = req_fuse(req);
	bool punch = mode & FALLOC_FL_PUNCH_HOLE;
	uint64_t end;

	if (f->readonly) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) ||
	    !(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) || !f->can_zero) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (off < 0 || length <= 0 || ck_add((uint64_t)off, (uint64_t)length, &end)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (end > f->size_bytes && !(mode & FALLOC_FL_KEEP_SIZE)) {
		fuse_reply_err(req, EOPNOTSUPP); /* would grow the file */
		return;
	}
	end = MIN(end, f->size_bytes);
	if ((uint64_t)off >= end) {
		fuse_reply_err(req, 0);
		return;
	}
	dispatch(f, ctx_for(req, TDFUSE_ZERO, (uint64_t)off, end - (uint64_t)off,
			    punch ? TD_REQ_MAY_UNMAP : 0));
}

const struct fuse_lowlevel_ops tdfuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
};
