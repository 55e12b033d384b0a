/* SPDX-License-Identifier: MIT */
/*
 * The request engine, on each queue thread: checking a frontend's request,
 * the FIFO of requests waiting to start, cutting a request into pieces that
 * each take a slot of the queue's preallocated pool, barrier and FUA
 * flushes, and completion.
 *
 * A request moves QUEUED -> [PREFLUSH] -> ISSUE -> INFLIGHT -> [POSTFLUSH]
 * -> done.  Only the FIFO's head is ever started or issued, so requests
 * start in submission order; a head that cannot get a slot waits for one
 * to come back.  The head leaves the FIFO just before its last piece is
 * issued, because that piece may complete at once and the frontend may
 * then reuse the request.
 *
 * Dispatch can be re-entered from a completion (a driver may complete
 * inside drv_submit(), and ->done may submit again); a flag turns the
 * nested call into one more round of the outer loop.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>

#include "aio-rec.h"
#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "vbd-internal.h"

static void queue_dispatch(struct td_queue *q);

/* ---- slots ---- */

static struct td_slot *slot_get(struct td_queue *q)
{
	struct td_slot *s = q->free_slots;

	if (s)
		q->free_slots = s->next_free;
	return s;
}

static void slot_put(struct td_queue *q, struct td_slot *s)
{
	s->req = NULL;
	s->next_free = q->free_slots;
	q->free_slots = s;
}

static void fifo_pop(struct td_queue *q, struct td_request *req)
{
	q->wait_head = req->next;
	if (!q->wait_head)
		q->wait_tail = NULL;
	req->next = NULL;
}

/* ---- completion ---- */

static void done_deferred(struct evloop_call *call)
{
	struct td_queue *q = call->opaque;
	struct td_request *req;

	while ((req = q->done_head)) {
		q->done_head = req->next;
		if (!q->done_head)
			q->done_tail = NULL;
		req->next = NULL;
		req->done(req, req->err);
	}
}

/* Count @req and hand it back to the frontend, never from inside vbd_submit. */
static void request_finish(struct td_queue *q, struct td_request *req, int err)
{
	if (req->rec_id) {
		aio_rec_guest_done(aio_rec_active, req->rec_id, err);
		req->rec_id = 0;
	}
	req->err = err;
	td_stats_record(q, req, err);
	if (q->submitting) {
		req->next = NULL;
		if (q->done_tail)
			q->done_tail->next = req;
		else
			q->done_head = req;
		q->done_tail = req;
		evloop_post(q->loop, &q->done_call);
		return;
	}
	req->done(req, err);
}

/* A started request is over: release what it held on the queue. */
static void request_complete(struct td_queue *q, struct td_request *req)
{
	if (q->barrier == req)
		q->barrier = NULL;
	q->inflight--;
	td_stats_gauges(q);
	if (q->drain_w && q->inflight == 0) {
		td_wait_done(q->drain_w, 0);
		q->drain_w = NULL;
	}
	request_finish(q, req, req->err);
}

/* ---- issuing to the driver ---- */

static unsigned drv_flags(const struct td_queue *q, const struct td_request *req)
{
	unsigned f = 0;

	if ((req->flags & TD_REQ_FUA) && (q->geo.caps & DRV_CAP_FUA))
		f |= DRV_REQ_FUA;
	if (req->flags & TD_REQ_MAY_UNMAP)
		f |= DRV_REQ_MAY_UNMAP;
	if (req->flags & TD_REQ_NO_FALLBACK)
		f |= DRV_REQ_NO_FALLBACK;
	return f;
}

static void stat_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static void slot_done(struct drv_req *dreq, int err);

static void slot_issue(struct td_queue *q, struct td_slot *s)
{
	s->dreq.q = q->dq;
	s->dreq.done = slot_done;
	s->dreq.opaque = s;
	drv_submit(q->top, &s->dreq);
}

static void slot_issue_flush(struct td_queue *q, struct td_slot *s, enum td_slot_kind kind)
{
	s->kind = kind;
	s->flush_gen = q->write_gen;
	s->dreq.op = DRV_OP_FLUSH;
	s->dreq.flags = 0;
	s->dreq.offset = 0;
	s->dreq.len = 0;
	s->dreq.iov = NULL;
	s->dreq.iovcnt = 0;
	if (kind != TD_SLOT_CTL)
		stat_inc(&q->st.flushes_added);
	slot_issue(q, s);
}

static bool op_has_data(enum td_op op)
{
	return op == TD_OP_READ || op == TD_OP_WRITE;
}

static bool op_writes(enum td_op op)
{
	return op == TD_OP_WRITE || op == TD_OP_DISCARD || op == TD_OP_WRITE_ZEROES;
}

static bool needs_postflush(const struct td_queue *q, const struct td_request *req)
{
	return (req->flags & TD_REQ_FUA) && !(q->geo.caps & DRV_CAP_FUA) &&
	       (req->op == TD_OP_WRITE || req->op == TD_OP_WRITE_ZEROES);
}

/*
 * Walk the request's iovec from its cursor, taking at most @limit bytes in
 * at most TD_SLOT_IOVS elements into @s->iov (when @s is not NULL).
 * Returns the bytes taken; the cursor moves only when @advance.
 */
static uint64_t iov_take(struct td_request *req, struct td_slot *s, uint64_t limit, bool advance,
			 unsigned *nr_out)
{
	unsigned idx = req->iov_index, n = 0;
	size_t off = req->iov_offset;
	uint64_t taken = 0;

	while (taken < limit && n < TD_SLOT_IOVS && idx < req->iovcnt) {
		size_t avail = req->iov[idx].iov_len - off;
		uint64_t take = MIN((uint64_t)avail, limit - taken);

		if (take) {
			if (s)
				s->iov[n] = (struct iovec){
					.iov_base = (char *)req->iov[idx].iov_base + off,
					.iov_len = (size_t)take,
				};
			n++;
			taken += take;
			off += (size_t)take;
		}
		if (off == req->iov[idx].iov_len) {
			idx++;
			off = 0;
		}
	}
	if (advance) {
		req->iov_index = idx;
		req->iov_offset = off;
	}
	*nr_out = n;
	return taken;
}

/* The next piece of a READ/WRITE into @s.  -EINVAL: too fragmented to cut. */
static int piece_data(struct td_queue *q, struct td_request *req, struct td_slot *s)
{
	uint64_t left = req->len - req->issued_bytes;
	uint64_t limit = MIN(left, q->geo.max_io_bytes), len;
	unsigned nr;

	if (req->issued_bytes == 0 && left <= limit) {
		/* the common case: the whole request, its own iovec */
		s->dreq.iov = req->iov;
		s->dreq.iovcnt = req->iovcnt;
		s->dreq.len = req->len;
		return 0;
	}
	len = iov_take(req, NULL, limit, false, &nr);
	if (len % q->geo.block_bytes) {
		/* the iovec ran out of elements mid-block: cut at a block */
		limit = ALIGN_DOWN(len, (uint64_t)q->geo.block_bytes);
		if (limit == 0) {
			log_err_ratelimited("%s: offset %" PRIu64 ": iovec too fragmented to split "
					    "(more than %u elements per block)",
					    q->geo.spec, req->offset, TD_SLOT_IOVS);
			return -EINVAL;
		}
	}
	len = iov_take(req, s, limit, true, &nr);
	s->dreq.iov = s->iov;
	s->dreq.iovcnt = nr;
	s->dreq.len = len;
	return 0;
}

/* Fill @s with the next piece of @req.  0 or -errno. */
static int piece_build(struct td_queue *q, struct td_request *req, struct td_slot *s)
{
	static const enum drv_op ops[TD_OP_COUNT] = {
		[TD_OP_READ] = DRV_OP_READ,
		[TD_OP_WRITE] = DRV_OP_WRITE,
		[TD_OP_FLUSH] = DRV_OP_FLUSH,
		[TD_OP_DISCARD] = DRV_OP_DISCARD,
		[TD_OP_WRITE_ZEROES] = DRV_OP_WRITE_ZEROES,
		[TD_OP_BLOCK_STATUS] = DRV_OP_BLOCK_STATUS,
		[TD_OP_BITMAP_STATUS] = DRV_OP_BITMAP_STATUS,
	};
	uint64_t left = req->len - req->issued_bytes;
	int err = 0;

	s->kind = TD_SLOT_PIECE;
	s->req = req;
	s->dreq.op = ops[req->op];
	s->dreq.flags = drv_flags(q, req);
	s->dreq.offset = req->offset + req->issued_bytes;
	s->dreq.iov = NULL;
	s->dreq.iovcnt = 0;
	s->dreq.len = left;
	s->dreq.bitmap = req->bitmap;
	s->flush_gen = q->write_gen;
	if (req->op == TD_OP_FLUSH) {
		/* offset and length mean nothing to a flush */
		s->dreq.offset = 0;
		s->dreq.len = 0;
		req->issued_bytes = req->len;
		return 0;
	}
	if (req->op == TD_OP_BLOCK_STATUS)
		drv_chain_walk_start(&s->walk, q->top, &s->dreq);
	if (op_has_data(req->op))
		err = piece_data(q, req, s);
	else if (req->op == TD_OP_DISCARD || req->op == TD_OP_WRITE_ZEROES)
		s->dreq.len = MIN(
			left, ALIGN_DOWN(TD_MAX_ZERO_PIECE_BYTES, (uint64_t)q->geo.block_bytes));
	if (err)
		return err;
	req->issued_bytes += s->dreq.len;
	return 0;
}

/*
 * Issue what is left of the head request @req, as slots allow.  true when
 * it is out of the FIFO (every piece issued, or it failed), false when it
 * waits for a slot.
 */
static bool issue_pieces(struct td_queue *q, struct td_request *req)
{
	for (;;) {
		struct td_slot *s;
		bool last;
		int err;

		if (req->err) {
			/* a piece failed: issue no more, finish with what is out */
			fifo_pop(q, req);
			req->state = TD_RS_INFLIGHT;
			if (req->pending == 0)
				request_complete(q, req);
			return true;
		}
		s = slot_get(q);
		if (!s)
			return false;
		err = piece_build(q, req, s);
		if (err) {
			slot_put(q, s);
			req->err = err;
			continue;
		}
		last = req->issued_bytes == req->len;
		if (!last && req->issued_bytes == s->dreq.len)
			stat_inc(&q->st.split);
		stat_inc(&q->st.pieces);
		req->pending++;
		if (last) {
			fifo_pop(q, req);
			req->state = TD_RS_INFLIGHT;
		}
		slot_issue(q, s);
		if (last)
			return true;
	}
}

/* Start the head request: barrier drain and flush, then its pieces. */
static bool dispatch_head(struct td_queue *q, struct td_request *req)
{
	if (q->barrier && q->barrier != req)
		return false;
	switch ((enum td_req_state)req->state) {
	case TD_RS_QUEUED:
		if (q->stopped || !q->top)
			return false;
		if (req->flags & TD_REQ_BARRIER) {
			if (q->inflight)
				return false;
			q->barrier = req;
			stat_inc(&q->st.barriers);
		}
		q->waiting--;
		q->inflight++;
		td_stats_gauges(q);
		if ((req->flags & TD_REQ_BARRIER) && req->op != TD_OP_FLUSH &&
		    q->write_gen != q->flushed_gen) {
			/* nothing else is in flight: a slot is free */
			struct td_slot *s = slot_get(q);

			req->state = TD_RS_PREFLUSH;
			req->pending = 1;
			s->req = req;
			slot_issue_flush(q, s, TD_SLOT_PREFLUSH);
			return false;
		}
		req->state = TD_RS_ISSUE;
		return issue_pieces(q, req);
	case TD_RS_ISSUE:
		return issue_pieces(q, req);
	default:
		return false;
	}
}

static void queue_dispatch(struct td_queue *q)
{
	struct td_request *req;

	if (q->dispatching) {
		q->redispatch = true;
		return;
	}
	q->dispatching = true;
	do {
		q->redispatch = false;
		while ((req = q->wait_head) && dispatch_head(q, req))
			;
	} while (q->redispatch);
	q->dispatching = false;
}

/* A flush finished: what was written before it was issued is durable. */
static void flush_landed(struct td_queue *q, struct td_slot *s, int err)
{
	if (!err && s->flush_gen > q->flushed_gen)
		q->flushed_gen = s->flush_gen;
}

/* The barrier's flush finished: issue the barrier itself, or fail it. */
static void preflush_done(struct td_queue *q, struct td_slot *s, struct td_request *req, int err)
{
	flush_landed(q, s, err);
	slot_put(q, s);
	req->pending = 0;
	if (err) {
		req->err = err;
		fifo_pop(q, req);
		req->state = TD_RS_INFLIGHT;
		request_complete(q, req);
	} else {
		req->state = TD_RS_ISSUE;
	}
}

static void piece_done(struct td_queue *q, struct td_slot *s, struct td_request *req, int err)
{
	if (req->op == TD_OP_BLOCK_STATUS && !err && drv_chain_walk_next(&s->walk, &s->dreq)) {
		drv_submit(s->walk.img, &s->dreq); /* the range is the backing's */
		return;
	}
	if (err && !req->err)
		req->err = err;
	if ((req->op == TD_OP_BLOCK_STATUS || req->op == TD_OP_BITMAP_STATUS) && !err)
		req->status = s->dreq.status;
	if (req->op == TD_OP_FLUSH)
		flush_landed(q, s, err);
	if (op_writes(req->op))
		q->write_gen++; /* even a failed write may have changed something */
	req->pending--;
	if (req->pending || req->state != TD_RS_INFLIGHT) {
		slot_put(q, s);
		return;
	}
	if (!req->err && needs_postflush(q, req)) {
		/* the slot just freed carries the flush that makes it durable */
		req->state = TD_RS_POSTFLUSH;
		req->pending = 1;
		slot_issue_flush(q, s, TD_SLOT_POSTFLUSH);
		return;
	}
	slot_put(q, s);
	request_complete(q, req);
}

static void slot_done(struct drv_req *dreq, int err)
{
	struct td_slot *s = dreq->opaque;
	struct td_queue *q = s->q;
	struct td_request *req = s->req;

	switch (s->kind) {
	case TD_SLOT_CTL:
		flush_landed(q, s, err);
		td_wait_done(q->ctl_w, err);
		q->ctl_w = NULL;
		return;
	case TD_SLOT_PREFLUSH:
		preflush_done(q, s, req, err);
		break;
	case TD_SLOT_POSTFLUSH:
		flush_landed(q, s, err);
		slot_put(q, s);
		req->pending = 0;
		req->err = err;
		request_complete(q, req);
		break;
	case TD_SLOT_PIECE:
		piece_done(q, s, req, err);
		break;
	}
	queue_dispatch(q);
}

/* ---- the frontend's entry point ---- */

/* What the vbd can tell without the driver; 0 or -errno (see vbd.h). */
static int request_check(const struct td_queue *q, const struct td_request *req)
{
	const unsigned known = TD_REQ_FUA | TD_REQ_BARRIER | TD_REQ_MAY_UNMAP | TD_REQ_NO_FALLBACK;
	const struct td_geo *g = &q->geo;

	if ((unsigned)req->op >= TD_OP_COUNT || (req->flags & ~known))
		return -EINVAL;
	if (op_writes(req->op) && g->readonly)
		return -EROFS;
	if ((req->op == TD_OP_DISCARD && !(g->caps & DRV_CAP_DISCARD)) ||
	    (req->op == TD_OP_WRITE_ZEROES && !(g->caps & DRV_CAP_WRITE_ZEROES)) ||
	    (req->op == TD_OP_BLOCK_STATUS && !(g->caps & DRV_CAP_BLOCK_STATUS)) ||
	    (req->op == TD_OP_BITMAP_STATUS && !g->can_bitmap))
		return -EOPNOTSUPP;
	if (req->op == TD_OP_FLUSH)
		return 0;
	if (!range_within(req->offset, req->len, g->size_bytes) ||
	    !is_aligned_u64(req->offset, g->block_bytes) ||
	    !is_aligned_u64(req->len, g->block_bytes))
		return -EINVAL;
	if ((req->op == TD_OP_BLOCK_STATUS || req->op == TD_OP_BITMAP_STATUS) && req->len == 0)
		return -EINVAL;
	if (req->op == TD_OP_BITMAP_STATUS && !req->bitmap)
		return -EINVAL;
	if (op_has_data(req->op) &&
	    (req->iovcnt > IOV_MAX || !buf_iov_total_is(req->iov, req->iovcnt, req->len)))
		return -EINVAL;
	return 0;
}

static void request_refuse(struct td_queue *q, struct td_request *req, int err)
{
	if (err != -ESHUTDOWN)
		log_err_ratelimited("%s: %s offset %" PRIu64 " len %" PRIu64 " refused: %s",
				    q->geo.spec, td_op_name(req->op), req->offset, req->len,
				    err_str(err));
	request_finish(q, req, err);
}

/* Recording (lib/aio-rec.h, tapdisk under QTAP_RECORD): a guest request that changes the disk. */
static void vbd_rec_issue(struct td_queue *q, struct td_request *req)
{
	static const int types[TD_OP_COUNT] = { [TD_OP_WRITE] = AIO_REC_G_WRITE,
						[TD_OP_FLUSH] = AIO_REC_G_FLUSH,
						[TD_OP_DISCARD] = AIO_REC_G_DISCARD,
						[TD_OP_WRITE_ZEROES] = AIO_REC_G_ZERO };
	unsigned flags = 0;

	if (!types[req->op])
		return;
	if (req->flags & TD_REQ_FUA)
		flags |= AIO_REC_F_FUA;
	if (req->flags & TD_REQ_MAY_UNMAP)
		flags |= AIO_REC_F_UNMAP;
	aio_rec_guest_size(aio_rec_active, q->geo.size_bytes, 65536);
	req->rec_id = aio_rec_guest(aio_rec_active, types[req->op], flags, req->offset, req->len,
				    req->iov, req->iovcnt);
}

void vbd_submit(struct td_queue *q, struct td_request *req)
{
	int err;

	assert(req->done);
	req->q = q;
	req->next = NULL;
	req->start_ns = evloop_now_ns();
	req->issued_bytes = 0;
	req->iov_index = 0;
	req->iov_offset = 0;
	req->pending = 0;
	req->err = 0;
	req->rec_id = 0;
	req->state = TD_RS_QUEUED;
	q->submitting++;
	err = q->closing ? -ESHUTDOWN : request_check(q, req);
	if (err) {
		request_refuse(q, req, err);
	} else if (req->len == 0 && req->op != TD_OP_FLUSH) {
		request_finish(q, req, 0); /* zero-length transfers touch nothing */
	} else {
		if (aio_rec_on())
			vbd_rec_issue(q, req);
		if (q->wait_tail)
			q->wait_tail->next = req;
		else
			q->wait_head = req;
		q->wait_tail = req;
		q->waiting++;
		td_stats_gauges(q);
		queue_dispatch(q);
	}
	q->submitting--;
}

/* ---- control-thread requests, run on the queue thread ---- */

void td_queue_io_init(struct td_queue *q)
{
	q->done_call = (struct evloop_call){ .fn = done_deferred, .opaque = q };
}

void td_queue_flush(struct td_queue *q, struct td_wait *w)
{
	struct td_slot *s = &q->slots[q->nr_slots];

	if (!q->top) {
		td_wait_done(w, 0);
		return;
	}
	q->ctl_w = w;
	s->req = NULL;
	slot_issue_flush(q, s, TD_SLOT_CTL);
}

void td_queue_stop(struct td_queue *q, struct td_wait *w)
{
	q->stopped = true;
	if (q->inflight == 0)
		td_wait_done(w, 0);
	else
		q->drain_w = w;
}

void td_queue_start(struct td_queue *q)
{
	q->stopped = false;
	queue_dispatch(q);
}

void td_queue_fail_waiting(struct td_queue *q, int err)
{
	struct td_request *failed = NULL, **tail = &failed, **pp = &q->wait_head, *req;

	/* unlink first: ->done may submit again */
	q->wait_tail = NULL;
	while ((req = *pp)) {
		if (req->state == TD_RS_QUEUED) {
			*pp = req->next;
			req->next = NULL;
			*tail = req;
			tail = &req->next;
			q->waiting--;
		} else {
			q->wait_tail = req;
			pp = &req->next;
		}
	}
	td_stats_gauges(q);
	while ((req = failed)) {
		failed = req->next;
		req->next = NULL;
		request_finish(q, req, err);
	}
}
