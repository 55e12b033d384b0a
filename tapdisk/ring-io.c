// SPDX-License-Identifier: MIT
/*
 * A blkif request's life in the ring engine: checked (ring-req.c), given
 * data pages from the ring's pool, its write data copied in, handed to the
 * vbd, its read data copied out, answered.  Everything it uses was
 * allocated with the ring.
 *
 * Each segment gets a page of its own, its sectors at the same place in
 * the page as in the guest's frame, so one copy segment moves one blkif
 * segment; full-page segments (what Linux sends) give page-aligned buffers
 * for O_DIRECT.  The free pages are a stack handed out lowest address
 * first and given back in the same order, so a request usually gets a run
 * of adjacent pages (the pages a request of its size just gave back), and
 * adjacent full pages go to the vbd as one iovec: a 1 MiB request is one
 * buffer, not 256, for the block layer to merge.  When the pool runs dry, requests wait in ring order, and
 * every request after a waiting one waits too, so that a barrier or flush
 * never overtakes a write the guest queued before it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"
#include "log.h"
#include "tapdisk/ring-internal.h"

static void req_done(struct td_request *treq, int err);

/* ---- set-up --------------------------------------------------------------- */

static unsigned indirect_pages(const struct td_ring *r)
{
	return (unsigned)div_round_up_u64(r->lim.max_indirect_segs, RING_SEGS_PER_INDIRECT_PAGE);
}

static int alloc_arrays(struct td_ring *r, unsigned pool_pages)
{
	size_t per_ring = (size_t)r->nr_ents * r->max_segs;
	unsigned copies = MAX(r->max_segs, RING_INDIRECT_PAGES_MAX);

	r->reqs = calloc(r->nr_ents, sizeof(*r->reqs));
	r->segs = calloc(per_ring, sizeof(*r->segs));
	r->iovs = calloc(per_ring, sizeof(*r->iovs));
	r->page_ptrs = calloc(per_ring, sizeof(*r->page_ptrs));
	r->copies = calloc(copies, sizeof(*r->copies));
	r->free_pages = calloc(pool_pages, sizeof(*r->free_pages));
	r->pool = buf_alloc((size_t)pool_pages * RING_PAGE_BYTES, RING_PAGE_BYTES);
	if (indirect_pages(r))
		r->indirect =
			buf_alloc((size_t)indirect_pages(r) * RING_PAGE_BYTES, RING_PAGE_BYTES);
	if (!r->reqs || !r->segs || !r->iovs || !r->page_ptrs || !r->copies || !r->free_pages ||
	    !r->pool || (indirect_pages(r) && !r->indirect))
		return -ENOMEM;
	return 0;
}

int td_ring_io_init(struct td_ring *r, unsigned pool_pages)
{
	int err = alloc_arrays(r, pool_pages);

	if (err) {
		log_err("ring: out of memory for %u requests and %u data pages", r->nr_ents,
			pool_pages);
		return err;
	}
	r->pool_pages = pool_pages;
	for (unsigned i = pool_pages; i-- > 0;) /* the lowest address on top */
		r->free_pages[r->nr_free_pages++] = r->pool + (size_t)i * RING_PAGE_BYTES;
	for (unsigned i = r->nr_ents; i-- > 0;) {
		struct td_ring_req *req = &r->reqs[i];

		req->ring = r;
		req->segs = r->segs + (size_t)i * r->max_segs;
		req->iov = r->iovs + (size_t)i * r->max_segs;
		req->pages = r->page_ptrs + (size_t)i * r->max_segs;
		req->treq.done = req_done;
		req->treq.opaque = req;
		req->next = r->free_reqs;
		r->free_reqs = req;
	}
	return 0;
}

void td_ring_io_free(struct td_ring *r)
{
	free(r->reqs);
	free(r->segs);
	free(r->iovs);
	free(r->page_ptrs);
	free(r->copies);
	free(r->free_pages);
	buf_free(r->pool);
	buf_free(r->indirect);
}

/* ---- data pages and copies ------------------------------------------------ */

static void take_pages(struct td_ring *r, struct td_ring_req *req)
{
	struct iovec *last = NULL;

	req->iovcnt = 0;
	for (unsigned i = 0; i < req->nr_segs; i++) {
		const struct ring_seg *s = &req->segs[i];
		uint8_t *base, *page = r->free_pages[--r->nr_free_pages];
		size_t len = (size_t)(s->last_sect - s->first_sect + 1) * RING_SECTOR_BYTES;

		req->pages[i] = page;
		base = page + (size_t)s->first_sect * RING_SECTOR_BYTES;
		if (last && (uint8_t *)last->iov_base + last->iov_len == base) {
			last->iov_len += len;
			continue;
		}
		last = &req->iov[req->iovcnt++];
		*last = (struct iovec){ .iov_base = base, .iov_len = len };
	}
}

/* Back on the stack in reverse, so that the request's first page is on top again. */
static void put_pages(struct td_ring *r, struct td_ring_req *req)
{
	for (unsigned i = req->nr_segs; i-- > 0;)
		r->free_pages[r->nr_free_pages++] = req->pages[i];
}

/* Copy the request's data between its pages and the guest's frames. */
static int copy_data(struct td_ring *r, struct td_ring_req *req, bool to_guest)
{
	for (unsigned i = 0; i < req->nr_segs; i++) {
		const struct ring_seg *s = &req->segs[i];
		unsigned offset = s->first_sect * RING_SECTOR_BYTES;

		r->copies[i] = (struct td_copy_seg){
			.gref = s->gref,
			.offset = (uint16_t)offset,
			.len = (uint16_t)((s->last_sect + 1) * RING_SECTOR_BYTES - offset),
			.local = req->pages[i] + offset,
		};
	}
	return r->tp->ops->copy(r->tp, r->copies, req->nr_segs, to_guest);
}

/* Copy the descriptors out of the indirect pages once, then check them there. */
static int read_indirect(struct td_ring *r, const struct td_ring_msg *m, struct td_ring_plan *plan,
			 struct ring_seg *segs)
{
	unsigned left = plan->nr_segs;
	int err;

	for (unsigned p = 0; p < plan->nr_indirect; p++) {
		unsigned n = MIN(left, RING_SEGS_PER_INDIRECT_PAGE);

		r->copies[p] = (struct td_copy_seg){
			.gref = m->indirect_grefs[p],
			.len = (uint16_t)(n * sizeof(struct ring_seg)),
			.local = r->indirect + (size_t)p * RING_PAGE_BYTES,
		};
		left -= n;
	}
	err = r->tp->ops->copy(r->tp, r->copies, plan->nr_indirect, false);
	if (err)
		return err;
	memcpy(segs, r->indirect, plan->nr_segs * sizeof(*segs));
	return td_ring_check_segs(segs, plan->nr_segs, &r->lim, plan);
}

/* ---- the life of a request -------------------------------------------------- */

static void finish(struct td_ring *r, struct td_ring_req *req, int err)
{
	td_ring_respond(r, req->id, req->rsp_op, err);
	req->next = r->free_reqs;
	r->free_reqs = req;
	r->inflight--;
	__atomic_store_n(&r->stats.inflight, r->inflight, __ATOMIC_RELAXED);
}

static void start(struct td_ring *r, struct td_ring_req *req)
{
	int err;

	take_pages(r, req);
	req->treq.iovcnt = req->iovcnt;
	if (req->treq.op == TD_OP_WRITE) {
		err = copy_data(r, req, false);
		if (err) {
			log_err_ratelimited("ring: request 0x%" PRIx64 ": cannot copy its data "
					    "from the guest: %s",
					    req->id, strerror(-err));
			put_pages(r, req);
			finish(r, req, err);
			return;
		}
	}
	vbd_submit(r->q, &req->treq);
}

static void start_waiters(struct td_ring *r)
{
	while (r->wait_head && r->wait_head->nr_segs <= r->nr_free_pages) {
		struct td_ring_req *req = r->wait_head;

		r->wait_head = req->next;
		if (!r->wait_head)
			r->wait_tail = NULL;
		start(r, req);
	}
}

static void req_done(struct td_request *treq, int err)
{
	struct td_ring_req *req = treq->opaque;
	struct td_ring *r = req->ring;

	if (!err && treq->op == TD_OP_READ) {
		err = copy_data(r, req, true);
		if (err)
			log_err_ratelimited("ring: request 0x%" PRIx64 ": cannot copy its data "
					    "to the guest: %s",
					    req->id, strerror(-err));
	}
	put_pages(r, req);
	finish(r, req, err);
	start_waiters(r);
	td_ring_idle_check(r);
}

static void refuse(struct td_ring *r, const struct td_ring_msg *m, uint8_t rsp_op, int err)
{
	RING_STAT_INC(r, bad_requests);
	log_err_ratelimited("ring: refused request 0x%" PRIx64 " (operation %u, %u segments, "
			    "sector %" PRIu64 "): %s",
			    m->id, m->operation, m->nr_segments, m->sector_number, strerror(-err));
	td_ring_respond(r, m->id, rsp_op, err);
}

void td_ring_io_take(struct td_ring *r, const struct td_ring_msg *m)
{
	struct td_ring_plan plan;
	struct td_ring_req *req;
	int err = td_ring_check(m, &r->lim, &plan);

	if (err) {
		refuse(r, m, plan.rsp_op, err);
		return;
	}
	req = r->free_reqs; /* one per slot: never empty while a slot is unanswered */
	if (plan.indirect)
		err = read_indirect(r, m, &plan, req->segs);
	else
		memcpy(req->segs, m->seg, plan.nr_segs * sizeof(*req->segs));
	if (err) {
		refuse(r, m, plan.rsp_op, err);
		return;
	}
	r->free_reqs = req->next;
	req->id = m->id;
	req->rsp_op = plan.rsp_op;
	req->nr_segs = (uint16_t)plan.nr_segs;
	req->treq.op = plan.op;
	req->treq.flags = plan.flags;
	req->treq.offset = plan.offset;
	req->treq.len = plan.len;
	req->treq.iov = req->iov;
	req->treq.iovcnt = 0; /* set by take_pages */
	r->inflight++;
	__atomic_store_n(&r->stats.inflight, r->inflight, __ATOMIC_RELAXED);
	if (!r->wait_head && req->nr_segs <= r->nr_free_pages) {
		start(r, req);
		return;
	}
	req->next = NULL;
	if (r->wait_tail)
		r->wait_tail->next = req;
	else
		r->wait_head = req;
	r->wait_tail = req;
}
