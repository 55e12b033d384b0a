// SPDX-License-Identifier: MIT
/*
 * READ and WRITE in pieces: straight from the caller's buffers when they
 * meet the file's O_DIRECT alignment, else through a bounce buffer.
 *
 * Each step looks at what is left of the request (offset + done_bytes) and
 * picks one operation:
 *
 *  - direct: the rest of the caller's vector as it is.  After a short read
 *    cut a segment, the rest of that segment goes alone (there is no room
 *    for a trimmed copy of the vector without allocating) and the untouched
 *    segments follow.
 *  - bounce read: the io_align-aligned range covering the next piece (at
 *    most one bounce buffer), then the caller's bytes are copied out.
 *  - bounce write: aligned offset and length, misaligned memory: copy in and
 *    write.  Misaligned offset or length: read the head and/or tail block,
 *    patch in the caller's bytes, write the aligned range (read-modify-write,
 *    serialised against overlapping writes by aio_write_begin).
 *
 * A read that returns fewer bytes than asked is retried for the rest; a
 * read that yields nothing at or after the current position has hit end of
 * file: -EIO, or zeros with AIO_F_ZERO_EOF.  A short write is -EIO.
 *
 * Emulated WRITE_ZEROES (slot->zero_writes) takes the same paths with the
 * preallocated zero buffer as its source.
 *
 * An RMW that reads past end of file treats the missing bytes as zeros; its
 * write then leaves the file's size rounded up to io_align, as an aligned
 * write must.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "aio-internal.h"
#include "buf.h"
#include "checked.h"
#include "log.h"

enum iov_dir {
	IOV_TO,	  /* buffer to vector */
	IOV_FROM, /* vector to buffer */
	IOV_ZERO, /* zeros to vector */
};

/* Find the segment holding byte @skip of the vector. */
static void iov_seek(const struct iovec *iov, unsigned cnt, uint64_t skip, unsigned *idx,
		     uint64_t *within)
{
	unsigned i = 0;

	while (i < cnt && skip >= iov[i].iov_len) {
		skip -= iov[i].iov_len;
		i++;
	}
	*idx = i;
	*within = skip;
}

/* Move @n bytes between @buf and the vector, starting at its byte @skip. */
static void iov_copy(const struct iovec *iov, unsigned cnt, uint64_t skip, void *buf, uint64_t n,
		     enum iov_dir dir)
{
	char *p = buf;
	uint64_t within;
	unsigned i;

	iov_seek(iov, cnt, skip, &i, &within);
	for (; n > 0 && i < cnt; i++, within = 0) {
		char *base = (char *)iov[i].iov_base + within;
		uint64_t chunk = MIN(n, iov[i].iov_len - within);

		if (dir == IOV_TO)
			memcpy(base, p, chunk);
		else if (dir == IOV_FROM)
			memcpy(p, base, chunk);
		else
			memset(base, 0, chunk);
		if (p)
			p += chunk;
		n -= chunk;
	}
}

static void iov_mark_defined(const struct iovec *iov, unsigned cnt, uint64_t n)
{
	for (unsigned i = 0; n > 0 && i < cnt; i++) {
		uint64_t chunk = MIN(n, iov[i].iov_len);

		aio_mark_defined(iov[i].iov_base, chunk);
		n -= chunk;
	}
}

static uint64_t align_up(uint64_t x, uint64_t align)
{
	return (x + align - 1) & ~(align - 1);
}

static uint64_t aio_req_end(const struct aio_req *req)
{
	return req->offset + req->len;
}

/* Does O_DIRECT accept this vector (from byte @within of its first segment)? */
static bool aio_iov_aligned(const struct aio_file *f, const struct iovec *iov, unsigned cnt,
			    uint64_t within, uint64_t off, uint64_t len)
{
	uint64_t mem_mask = f->mem_align - 1, io_mask = f->io_align - 1;

	if ((off | len) & io_mask)
		return false;
	for (unsigned i = 0; i < cnt; i++, within = 0) {
		uint64_t base = (uintptr_t)iov[i].iov_base + within;
		uint64_t seg = iov[i].iov_len - within;

		if (seg && (((base | seg) & mem_mask) || (seg & io_mask)))
			return false;
	}
	return true;
}

/* Set the slot up for the rest of the caller's vector, if it can go direct. */
static bool aio_iov_direct(struct aio_slot *slot, uint64_t rem)
{
	const struct aio_req *req = slot->req;
	uint64_t within;
	unsigned k;

	iov_seek(req->iov, req->iovcnt, req->done_bytes, &k, &within);
	if (req->file->direct &&
	    !aio_iov_aligned(req->file, req->iov + k, req->iovcnt - k, within, slot->offset, rem))
		return false;
	if (within == 0) {
		slot->iov = req->iov + k;
		slot->iovcnt = req->iovcnt - k;
		slot->len = rem;
		return true;
	}
	slot->one.iov_base = (char *)req->iov[k].iov_base + within;
	slot->one.iov_len = req->iov[k].iov_len - within;
	slot->iov = &slot->one;
	slot->iovcnt = 1;
	slot->len = slot->one.iov_len;
	return true;
}

/* The same for emulated zero writes, a zero buffer's worth at a time. */
static bool aio_zero_direct(struct aio_ctx *ctx, struct aio_slot *slot, uint64_t rem)
{
	const struct aio_file *f = slot->req->file;
	uint64_t chunk = MIN(rem, ctx->zero_bytes);

	if (f->direct &&
	    (((slot->offset | chunk) & (f->io_align - 1)) || f->mem_align > AIO_BOUNCE_ALIGN))
		return false;
	slot->one.iov_base = ctx->zero_buf;
	slot->one.iov_len = chunk;
	slot->iov = &slot->one;
	slot->iovcnt = 1;
	slot->len = chunk;
	return true;
}

/* Point the slot at [@off, @off + @len) of the file and the bounce buffer. */
static void aio_bounce_op(struct aio_slot *slot, enum aio_phase phase, enum aio_op op, uint64_t off,
			  uint64_t len)
{
	struct aio_req *req = slot->req;

	slot->phase = phase;
	slot->op = op;
	slot->offset = off;
	slot->len = len;
	slot->one.iov_base = (char *)req->bounce + (off - req->bounce_off);
	slot->one.iov_len = len;
	slot->iov = &slot->one;
	slot->iovcnt = 1;
}

/* Copy the data to write (the caller's, or zeros) for bytes @at.. into @dst. */
static void aio_fill(const struct aio_slot *slot, uint64_t at, void *dst, uint64_t n)
{
	const struct aio_req *req = slot->req;

	if (slot->zero_writes)
		memset(dst, 0, n);
	else
		iov_copy(req->iov, req->iovcnt, at - req->offset, dst, n, IOV_FROM);
}

static int aio_bounce_write_step(struct aio_ctx *ctx, struct aio_slot *slot, uint64_t cur,
				 uint64_t end)
{
	struct aio_req *req = slot->req;
	uint64_t io = req->file->io_align, lo = req->bounce_off, hi = lo + req->bounce_len;
	bool head = cur != lo, tail = end != hi;

	if (!head && !tail) {
		if (!aio_write_begin(ctx, slot, lo, hi, false))
			return 0;
		aio_fill(slot, cur, req->bounce, hi - lo);
		aio_bounce_op(slot, AIO_PH_BOUNCE_WRITE, AIO_OP_WRITE, lo, hi - lo);
		aio_issue(ctx, slot);
		return 0;
	}
	if (!aio_write_begin(ctx, slot, lo, hi, true))
		return 0;
	/* Neighbouring blocks are read together; distant ones separately,
	 * rather than reading a whole bounce buffer to patch two blocks. */
	slot->rmw_tail = head && tail && hi - lo > 2 * io;
	if (head && tail && !slot->rmw_tail)
		aio_bounce_op(slot, AIO_PH_RMW_READ, AIO_OP_READ, lo, hi - lo);
	else if (head)
		aio_bounce_op(slot, AIO_PH_RMW_READ, AIO_OP_READ, lo, io);
	else
		aio_bounce_op(slot, AIO_PH_RMW_READ, AIO_OP_READ, hi - io, io);
	aio_issue(ctx, slot);
	return 0;
}

static int aio_bounce_step(struct aio_ctx *ctx, struct aio_slot *slot, uint64_t cur)
{
	struct aio_req *req = slot->req;
	const struct aio_file *f = req->file;
	uint64_t io = f->io_align, end = aio_req_end(req), lo, hi;

	if (f->mem_align > AIO_BOUNCE_ALIGN || ctx->bounce_bytes % io) {
		log_err_ratelimited("aio: %s: O_DIRECT alignment %" PRIu32 "/%" PRIu32
				    " does not fit the bounce buffers",
				    f->path, f->mem_align, f->io_align);
		return -EINVAL;
	}
	if (!req->bounce) {
		req->bounce = buf_pool_get(ctx->bounce_pool);
		if (!req->bounce) {
			aio_block(ctx, req);
			return 0;
		}
	}
	lo = ALIGN_DOWN(cur, io);
	hi = align_up(MIN(end, lo + ctx->bounce_bytes), io);
	req->bounce_off = lo;
	req->bounce_len = hi - lo;
	if (req->op != AIO_OP_READ)
		return aio_bounce_write_step(ctx, slot, cur, MIN(end, hi));
	aio_bounce_op(slot, AIO_PH_BOUNCE_READ, AIO_OP_READ, lo, hi - lo);
	aio_issue(ctx, slot);
	return 0;
}

int aio_rw_step(struct aio_ctx *ctx, struct aio_slot *slot)
{
	struct aio_req *req = slot->req;
	uint64_t cur = req->offset + req->done_bytes;
	uint64_t rem = req->len - req->done_bytes;
	bool direct;

	slot->offset = cur;
	slot->op = req->op == AIO_OP_READ ? AIO_OP_READ : AIO_OP_WRITE;
	direct = slot->zero_writes ? aio_zero_direct(ctx, slot, rem) : aio_iov_direct(slot, rem);
	if (!direct)
		return aio_bounce_step(ctx, slot, cur);
	slot->phase = AIO_PH_DIRECT;
	if (slot->op == AIO_OP_WRITE &&
	    !aio_write_begin(ctx, slot, slot->offset, slot->offset + slot->len, false))
		return 0;
	aio_issue(ctx, slot);
	return 0;
}

/* ---- completions ---- */

/* Nothing more to read at the current position. */
static int aio_read_eof(struct aio_slot *slot)
{
	struct aio_req *req = slot->req;

	if (req->flags & AIO_F_ZERO_EOF) {
		iov_copy(req->iov, req->iovcnt, req->done_bytes, NULL, req->len - req->done_bytes,
			 IOV_ZERO);
		req->done_bytes = req->len;
		return 0;
	}
	log_dbg(LOG_F_AIO, "aio: read %s: end of file before offset %" PRIu64, req->file->path,
		req->offset + req->done_bytes);
	return -EIO;
}

static int aio_advance(struct aio_req *req, uint64_t n)
{
	req->done_bytes += n;
	return req->done_bytes == req->len ? 0 : AIO_NEXT;
}

static int aio_check_written(const struct aio_slot *slot, int64_t res)
{
	if (res < 0)
		return (int)res;
	if ((uint64_t)res == slot->len)
		return 0;
	log_dbg(LOG_F_AIO, "aio: write %s offset %" PRIu64 ": %" PRId64 " of %" PRIu64 " bytes",
		slot->req->file->path, slot->offset, res, slot->len);
	return -EIO;
}

static int aio_direct_done(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res)
{
	int err;

	if (slot->op == AIO_OP_WRITE) {
		aio_write_end(ctx, slot);
		err = aio_check_written(slot, res);
		return err < 0 ? err : aio_advance(slot->req, slot->len);
	}
	if (res < 0)
		return (int)res;
	if ((uint64_t)res > slot->len)
		return -EIO;
	iov_mark_defined(slot->iov, slot->iovcnt, (uint64_t)res);
	if (res == 0)
		return aio_read_eof(slot);
	return aio_advance(slot->req, (uint64_t)res);
}

static int aio_bounce_read_done(struct aio_slot *slot, int64_t res)
{
	struct aio_req *req = slot->req;
	uint64_t cur = req->offset + req->done_bytes, lo = req->bounce_off, got;

	if (res < 0)
		return (int)res;
	aio_mark_defined(req->bounce, (uint64_t)res);
	got = MIN(MIN(aio_req_end(req), lo + req->bounce_len), lo + (uint64_t)res);
	if (got <= cur)
		return aio_read_eof(slot);
	iov_copy(req->iov, req->iovcnt, req->done_bytes, (char *)req->bounce + (cur - lo),
		 got - cur, IOV_TO);
	return aio_advance(req, got - cur);
}

static int aio_bounce_write_done(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res)
{
	struct aio_req *req = slot->req;
	uint64_t cur = req->offset + req->done_bytes;
	uint64_t end = MIN(aio_req_end(req), req->bounce_off + req->bounce_len);
	int err;

	aio_write_end(ctx, slot);
	err = aio_check_written(slot, res);
	return err < 0 ? err : aio_advance(req, end - cur);
}

static int aio_rmw_read_done(struct aio_slot *slot, int64_t res)
{
	struct aio_req *req = slot->req;
	uint64_t lo = req->bounce_off, hi = lo + req->bounce_len, io = req->file->io_align;
	uint64_t cur = req->offset + req->done_bytes, end = MIN(aio_req_end(req), hi);
	char *buf = req->bounce;

	if (res < 0)
		return (int)res;
	aio_mark_defined(buf + (slot->offset - lo), (uint64_t)res);
	/* Past end of file: the bytes the write will put there read as zeros now. */
	if ((uint64_t)res < slot->len)
		memset(buf + (slot->offset - lo) + res, 0, slot->len - (uint64_t)res);
	if (slot->rmw_tail) {
		slot->rmw_tail = false;
		aio_bounce_op(slot, AIO_PH_RMW_READ, AIO_OP_READ, hi - io, io);
		return AIO_AGAIN;
	}
	aio_fill(slot, cur, buf + (cur - lo), end - cur);
	aio_bounce_op(slot, AIO_PH_BOUNCE_WRITE, AIO_OP_WRITE, lo, hi - lo);
	return AIO_AGAIN;
}

int aio_rw_complete(struct aio_ctx *ctx, struct aio_slot *slot, int64_t res)
{
	switch (slot->phase) {
	case AIO_PH_DIRECT:
		return aio_direct_done(ctx, slot, res);
	case AIO_PH_BOUNCE_READ:
		return aio_bounce_read_done(slot, res);
	case AIO_PH_BOUNCE_WRITE:
		return aio_bounce_write_done(ctx, slot, res);
	case AIO_PH_RMW_READ:
		return aio_rmw_read_done(slot, res);
	}
	return -EIO;
}
