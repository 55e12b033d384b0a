// SPDX-License-Identifier: MIT
/*
 * Sub-block writes: read the partial blocks, merge, write whole blocks
 * (see rmw.h).  One td_request per step, issued one after the other: this
 * is the rare path (aligned clients never take it), kept simple.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "tapdisk/rmw.h"

struct td_blocklock {
	pthread_mutex_t lock;
	struct td_rmw *holders;
	struct td_rmw *waiters;
};

int td_blocklock_new(struct td_blocklock **out)
{
	struct td_blocklock *bl = calloc(1, sizeof(*bl));

	if (!bl)
		return -ENOMEM;
	pthread_mutex_init(&bl->lock, NULL);
	*out = bl;
	return 0;
}

void td_blocklock_free(struct td_blocklock *bl)
{
	if (!bl)
		return;
	pthread_mutex_destroy(&bl->lock);
	free(bl);
}

static bool conflicts(const struct td_rmw *a, const struct td_rmw *b)
{
	unsigned i, j;

	for (i = 0; i < a->nr_locks; i++) {
		for (j = 0; j < b->nr_locks; j++) {
			if (a->lock_blk[i] == b->lock_blk[j])
				return true;
		}
	}
	return false;
}

/* Take @r's blocks, or park @r among the waiters.  True when taken. */
static bool lock_take(struct td_rmw *r)
{
	struct td_blocklock *bl = r->locks;
	struct td_rmw *h;
	bool taken = true;

	pthread_mutex_lock(&bl->lock);
	for (h = bl->holders; h && taken; h = h->next)
		taken = !conflicts(h, r);
	if (taken) {
		r->next = bl->holders;
		bl->holders = r;
	} else {
		r->next = bl->waiters;
		bl->waiters = r;
	}
	pthread_mutex_unlock(&bl->lock);
	return taken;
}

/* Drop @r's blocks; every waiter retries on its own queue thread. */
static void lock_release(struct td_rmw *r)
{
	struct td_blocklock *bl = r->locks;
	struct td_rmw **pp, *w, *next;

	pthread_mutex_lock(&bl->lock);
	for (pp = &bl->holders; *pp != r; pp = &(*pp)->next)
		;
	*pp = r->next;
	w = bl->waiters;
	bl->waiters = NULL;
	/* post under the lock: a waiter may run (and finish) as soon as posted */
	for (; w; w = next) {
		next = w->next;
		evloop_post(td_queue_loop(w->q), &w->wake);
	}
	pthread_mutex_unlock(&bl->lock);
}

/* ---- the steps --------------------------------------------------------- */

enum {
	ST_HEAD_READ = 0,
	ST_HEAD_WRITE,
	ST_TAIL_READ,
	ST_TAIL_WRITE,
	ST_MAIN,
	ST_DONE,
};

static uint64_t range_end(const struct td_rmw *r)
{
	return r->offset + r->len;
}

static bool head_partial(const struct td_rmw *r)
{
	return r->offset > r->start || range_end(r) < r->start + r->block_bytes;
}

/* A last block other than the first, partly covered. */
static bool tail_partial(const struct td_rmw *r)
{
	return r->end - r->block_bytes != r->start && range_end(r) < r->end;
}

static void rmw_finish(struct td_rmw *r, int err)
{
	if (r->nr_locks)
		lock_release(r);
	r->done(r, err);
}

static void rmw_next(struct td_rmw *r);

static void io_done(struct td_request *req, int err)
{
	struct td_rmw *r = req->opaque;

	if (err) {
		rmw_finish(r, err);
		return;
	}
	r->step++;
	rmw_next(r);
}

static void issue(struct td_rmw *r, enum td_op op, uint64_t off, uint64_t len, uint8_t *buf,
		  unsigned flags)
{
	r->req = (struct td_request){
		.op = op,
		.flags = flags,
		.offset = off,
		.len = len,
		.done = io_done,
		.opaque = r,
	};
	if (buf) {
		r->iov = (struct iovec){ .iov_base = buf, .iov_len = len };
		r->req.iov = &r->iov;
		r->req.iovcnt = 1;
	}
	vbd_submit(r->q, &r->req);
}

/* WRITE: the bytes around the data come from the blocks read. */
static void merge(struct td_rmw *r)
{
	uint64_t e = range_end(r), b = r->block_bytes;

	if (head_partial(r)) {
		memcpy(r->buf, r->scratch, r->offset - r->start);
		if (r->end - b == r->start)
			memcpy(r->buf + (e - r->start), r->scratch + (e - r->start), r->end - e);
	}
	if (tail_partial(r))
		memcpy(r->buf + (e - r->start), r->scratch + b + (e - (r->end - b)), r->end - e);
}

/* WRITE_ZEROES: zero the covered bytes of the block read at @blk_off. */
static void zero_part(struct td_rmw *r, uint8_t *blk, uint64_t blk_off)
{
	uint64_t from = MAX(r->offset, blk_off);
	uint64_t to = MIN(range_end(r), blk_off + r->block_bytes);

	memset(blk + (from - blk_off), 0, to - from);
}

static bool main_step(struct td_rmw *r)
{
	uint64_t b = r->block_bytes, mid_start, mid_end;

	if (r->op == TD_OP_WRITE) {
		merge(r);
		issue(r, TD_OP_WRITE, r->start, r->end - r->start, r->buf, r->flags & TD_REQ_FUA);
		return true;
	}
	mid_start = head_partial(r) ? r->start + b : r->start;
	mid_end = tail_partial(r) ? r->end - b : r->end;
	if (mid_end <= mid_start)
		return false;
	issue(r, TD_OP_WRITE_ZEROES, mid_start, mid_end - mid_start, NULL, r->flags);
	return true;
}

static void rmw_next(struct td_rmw *r)
{
	bool zeroes = r->op == TD_OP_WRITE_ZEROES, issued = false;
	uint64_t b = r->block_bytes;
	unsigned fua = r->flags & TD_REQ_FUA;

	while (!issued) {
		switch (r->step) {
		case ST_HEAD_READ:
			if ((issued = head_partial(r)))
				issue(r, TD_OP_READ, r->start, b, r->scratch, 0);
			break;
		case ST_HEAD_WRITE:
			if ((issued = zeroes && head_partial(r))) {
				zero_part(r, r->scratch, r->start);
				issue(r, TD_OP_WRITE, r->start, b, r->scratch, fua);
			}
			break;
		case ST_TAIL_READ:
			if ((issued = tail_partial(r)))
				issue(r, TD_OP_READ, r->end - b, b, r->scratch + b, 0);
			break;
		case ST_TAIL_WRITE:
			if ((issued = zeroes && tail_partial(r))) {
				zero_part(r, r->scratch + b, r->end - b);
				issue(r, TD_OP_WRITE, r->end - b, b, r->scratch + b, fua);
			}
			break;
		case ST_MAIN:
			issued = main_step(r);
			break;
		default:
			rmw_finish(r, 0);
			return;
		}
		if (!issued)
			r->step++;
	}
}

static void rmw_go(struct td_rmw *r)
{
	if (r->nr_locks && !lock_take(r))
		return; /* parked: rmw_wake runs when a holder leaves */
	rmw_next(r);
}

static void rmw_wake(struct evloop_call *c)
{
	rmw_go(c->opaque);
}

void td_rmw_start(struct td_rmw *r)
{
	uint64_t b = r->block_bytes;

	r->start = td_rmw_start_bytes(r->offset, r->block_bytes);
	r->end = r->start + td_rmw_span_bytes(r->offset, r->len, r->block_bytes);
	r->step = ST_HEAD_READ;
	r->nr_locks = 0;
	r->wake = (struct evloop_call){ .fn = rmw_wake, .opaque = r };
	if (head_partial(r))
		r->lock_blk[r->nr_locks++] = r->start / b;
	if (tail_partial(r))
		r->lock_blk[r->nr_locks++] = (r->end - b) / b;
	if (r->op == TD_OP_WRITE_ZEROES && (r->flags & TD_REQ_NO_FALLBACK) && r->nr_locks) {
		r->nr_locks = 0;
		r->done(r, -EOPNOTSUPP);
		return;
	}
	rmw_go(r);
}
