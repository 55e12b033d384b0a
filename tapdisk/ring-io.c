// SPDX-License-Identifier: MIT
/*
 * A blkif request's life in the ring engine: checked (ring-req.c), given
 * data buffers, handed to the vbd, answered.  Everything it uses was
 * allocated with the ring.
 *
 * Buffers are the guest's own frames where the transport maps them (the
 * local transport; ring-transport.h ->map): the iovec points into them,
 * adjacent frames merged into one element, and the I/O runs there with no
 * copy.  The frontend may change a frame under that I/O, as a guest can
 * under DMA; only its own data suffers (docs/design.md, "The blkif ring",
 * has the audit of the paths a write's buffer takes).  The alignment is
 * what the data pages would give (the same offsets in page-aligned
 * frames, the same lengths), and lib/aio bounces what O_DIRECT refuses in
 * either case, so no request needs the copy for alignment's sake.
 *
 * Otherwise (no ->map, tapdisk --ring-copy, or a map refused: a bad or
 * read-only grant, which the copy then reports as Xen would) each segment
 * gets a page of the ring's pool, its sectors at the same place in the
 * page as in the guest's frame, so one copy segment moves one blkif
 * segment; full-page segments (what Linux sends) give page-aligned buffers
 * for O_DIRECT.  The free pages are a stack handed out lowest address
 * first and given back in the same order, so a request usually gets a run
 * of adjacent pages (the pages a request of its size just gave back), and
 * adjacent full pages go to the vbd as one iovec: a 1 MiB request is one
 * buffer, not 256, for the block layer to merge.  Write data is copied in
 * before the vbd sees the request, read data out after it completed.
 *
 * When the pool runs dry, requests wait in ring order, and every request
 * after a waiting one waits too, mapped or not, so that a barrier or flush
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

/* ---- data buffers and copies ---------------------------------------------- */

/* Append @len bytes at @base to the request's iovec, merging with the last element. */
static void iov_append(struct td_ring_req *req, uint8_t *base, size_t len)
{
	struct iovec *last = req->iovcnt ? &req->iov[req->iovcnt - 1] : NULL;

	if (last && (uint8_t *)last->iov_base + last->iov_len == base) {
		last->iov_len += len;
		return;
	}
	req->iov[req->iovcnt++] = (struct iovec){ .iov_base = base, .iov_len = len };
}

/* The request's segments as copy (or map) segments, in r->copies. */
static void describe_segs(struct td_ring *r, struct td_ring_req *req, bool with_pages)
{
	for (unsigned i = 0; i < req->nr_segs; i++) {
		const struct ring_seg *s = &req->segs[i];
		unsigned offset = s->first_sect * RING_SECTOR_BYTES;

		r->copies[i] = (struct td_copy_seg){
			.gref = s->gref,
			.offset = (uint16_t)offset,
			.len = (uint16_t)((s->last_sect + 1) * RING_SECTOR_BYTES - offset),
			.local = with_pages ? req->pages[i] + offset : NULL,
		};
	}
}

/*
 * Build the iovec on the guest's frames.  0, or the map's -errno (nothing
 * taken: the copy path will meet the same fault and answer it).
 */
static int map_frames(struct td_ring *r, struct td_ring_req *req)
{
	int err;

	describe_segs(r, req, false);
	err = r->map(r->tp, r->copies, req->nr_segs, req->treq.op == TD_OP_READ);
	if (err)
		return err;
	req->iovcnt = 0;
	for (unsigned i = 0; i < req->nr_segs; i++)
		iov_append(req, r->copies[i].local, r->copies[i].len);
	return 0;
}

static void take_pages(struct td_ring *r, struct td_ring_req *req)
{
	req->iovcnt = 0;
	for (unsigned i = 0; i < req->nr_segs; i++) {
		const struct ring_seg *s = &req->segs[i];
		uint8_t *page = r->free_pages[--r->nr_free_pages];
		size_t len = (size_t)(s->last_sect - s->first_sect + 1) * RING_SECTOR_BYTES;

		req->pages[i] = page;
		iov_append(req, page + (size_t)s->first_sect * RING_SECTOR_BYTES, len);
	}
}

/*
 * Give @req its data buffers: the guest's frames, or pool pages.  false
 * when it must wait for pages; the caller keeps ring order.
 */
static bool get_buffers(struct td_ring *r, struct td_ring_req *req)
{
	req->mapped = req->nr_segs && r->map && map_frames(r, req) == 0;
	if (req->mapped) {
		RING_STAT_INC(r, mapped);
		return true;
	}
	if (req->nr_segs > r->nr_free_pages)
		return false;
	take_pages(r, req);
	if (req->nr_segs)
		RING_STAT_INC(r, copied);
	return true;
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
	describe_segs(r, req, true);
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

/* @req has its buffers (get_buffers): fill them for a write and submit. */
static void start(struct td_ring *r, struct td_ring_req *req)
{
	int err;

	req->treq.iovcnt = req->iovcnt;
	if (!req->mapped && req->treq.op == TD_OP_WRITE) {
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
	while (r->wait_head && get_buffers(r, r->wait_head)) {
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

	if (!req->mapped) {
		if (!err && treq->op == TD_OP_READ) {
			err = copy_data(r, req, true);
			if (err)
				log_err_ratelimited("ring: request 0x%" PRIx64 ": cannot copy its "
						    "data to the guest: %s",
						    req->id, strerror(-err));
		}
		put_pages(r, req);
	}
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
	req->treq.iovcnt = 0; /* set by get_buffers */
	r->inflight++;
	__atomic_store_n(&r->stats.inflight, r->inflight, __ATOMIC_RELAXED);
	/* Behind a waiting request even when mapped: nothing overtakes it. */
	if (!r->wait_head && get_buffers(r, req)) {
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
