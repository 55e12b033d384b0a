// SPDX-License-Identifier: MIT
/*
 * tap-front's frontend: writing requests, publishing them, and taking the
 * backend's responses with the checks current Linux blkfront makes
 * (front.h).  The backend is as untrusted here as we are to it: responses
 * are copied out of their slot once, and a response naming no request in
 * flight, or the wrong operation, stops the run.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "evloop.h"
#include "front-internal.h"
#include "ring-idx.h"

/*
 * An id is the generation and the slot, with bits 0-15 zero: those are the
 * bytes a hostile frontend rewrites in place (operation, nr_segments), so
 * a response to such a request can still be matched (see tf_io.loose).
 */
static uint64_t io_id(const struct tf_io *io)
{
	return (uint64_t)io->gen << 32 | (uint64_t)io->slot << 16;
}

/* The segments covering the slot's buffer; grants its frames for @op. */
static unsigned build_segs(struct tf_queue *q, const struct tf_io *io, struct ring_seg *segs)
{
	struct tf_dev *dev = q->dev;
	const struct tf_slot *sl = &q->slots[io->slot];
	uint64_t start = sl->shift_bytes, end = start + io->len;
	unsigned n = 0;

	for (uint64_t page = 0; page < end; page += RING_PAGE_BYTES, n++) {
		uint64_t a = MAX(start, page), b = MIN(end, page + RING_PAGE_BYTES);
		uint32_t frame = sl->data_frame + n;

		segs[n] = (struct ring_seg){
			.gref = tf_gref(dev, frame),
			.first_sect = (uint8_t)((a - page) / RING_SECTOR_BYTES),
			.last_sect = (uint8_t)((b - page) / RING_SECTOR_BYTES - 1),
		};
		tf_grant(dev, frame, io->op != RING_OP_READ);
	}
	return n;
}

static void fill_direct(struct tf_queue *q, struct tf_io *io, union ring_req_any *r)
{
	struct ring_seg segs[RING_SEGS_DIRECT];
	unsigned n = io->len ? build_segs(q, io, segs) : 0;
	bool is32 = ring_abi_is_32(q->dev->conf.abi);

	if (is32) {
		r->r32 = (struct ring_req32){ .operation = io->op,
					      .nr_segments = (uint8_t)n,
					      .id = io_id(io),
					      .sector_number = io->offset / RING_SECTOR_BYTES };
		memcpy(r->r32.seg, segs, n * sizeof(segs[0]));
	} else {
		r->r64 = (struct ring_req64){ .operation = io->op,
					      .nr_segments = (uint8_t)n,
					      .id = io_id(io),
					      .sector_number = io->offset / RING_SECTOR_BYTES };
		memcpy(r->r64.seg, segs, n * sizeof(segs[0]));
	}
}

static void fill_indirect(struct tf_queue *q, struct tf_io *io, union ring_req_any *r)
{
	struct tf_dev *dev = q->dev;
	const struct tf_slot *sl = &q->slots[io->slot];
	/* the slot's indirect frames are contiguous in our mapping */
	struct ring_seg *segs = (struct ring_seg *)(void *)tf_frame_ptr(dev, sl->ind_frame);
	unsigned n = build_segs(q, io, segs);
	unsigned pages = (unsigned)div_round_up_u64(n, RING_SEGS_PER_INDIRECT_PAGE);
	uint32_t grefs[RING_INDIRECT_PAGES_MAX] = { 0 };

	for (unsigned p = 0; p < pages; p++)
		grefs[p] = tf_gref(dev, sl->ind_frame + p);
	if (ring_abi_is_32(dev->conf.abi)) {
		r->i32 =
			(struct ring_indirect32){ .operation = RING_OP_INDIRECT,
						  .indirect_op = io->op,
						  .nr_segments = (uint16_t)n,
						  .id = io_id(io),
						  .sector_number = io->offset / RING_SECTOR_BYTES };
		memcpy(r->i32.indirect_grefs, grefs, sizeof(grefs));
	} else {
		r->i64 =
			(struct ring_indirect64){ .operation = RING_OP_INDIRECT,
						  .indirect_op = io->op,
						  .nr_segments = (uint16_t)n,
						  .id = io_id(io),
						  .sector_number = io->offset / RING_SECTOR_BYTES };
		memcpy(r->i64.indirect_grefs, grefs, sizeof(grefs));
	}
}

static void fill_discard(struct tf_queue *q, struct tf_io *io, union ring_req_any *r)
{
	if (ring_abi_is_32(q->dev->conf.abi))
		r->d32 = (struct ring_discard32){ .operation = RING_OP_DISCARD,
						  .id = io_id(io),
						  .sector_number = io->offset / RING_SECTOR_BYTES,
						  .nr_sectors = io->len / RING_SECTOR_BYTES };
	else
		r->d64 = (struct ring_discard64){ .operation = RING_OP_DISCARD,
						  .id = io_id(io),
						  .sector_number = io->offset / RING_SECTOR_BYTES,
						  .nr_sectors = io->len / RING_SECTOR_BYTES };
}

static int check_io(const struct tf_queue *q, const struct tf_io *io)
{
	const struct tf_dev *dev = q->dev;
	bool data = io->op == RING_OP_READ || io->op == RING_OP_WRITE;

	if (io->len > dev->conf.max_bytes || io->len % RING_SECTOR_BYTES ||
	    io->offset % RING_SECTOR_BYTES || (data && io->len == 0))
		return -EINVAL;
	if (!data && io->op != RING_OP_DISCARD && io->len &&
	    (dev->conf.indirect_segs ||
	     io->len + q->slots[io->slot].shift_bytes > RING_SEGS_DIRECT * RING_PAGE_BYTES))
		return -EINVAL; /* flush or barrier with data: direct only */
	return 0;
}

/* Claim the next ring slot for @io. */
static void *claim(struct tf_queue *q, struct tf_io *io)
{
	if (io->busy || ring_front_free(q->req_prod_pvt, q->rsp_cons, q->nr_ents) == 0)
		return NULL;
	io->busy = true;
	io->gen++;
	q->inflight++;
	q->last_slot = (uint8_t *)q->sring +
		       ring_slot_offset(q->req_prod_pvt, q->nr_ents, q->dev->entry_bytes);
	q->req_prod_pvt++;
	return q->last_slot;
}

int tf_queue_submit(struct tf_queue *q, struct tf_io *io)
{
	union ring_req_any r;
	void *slot;
	int err = check_io(q, io);

	if (err)
		return err;
	memset(&r, 0, sizeof(r));
	slot = claim(q, io);
	if (!slot)
		return -EBUSY;
	io->rsp_op = io->op;
	if (io->op == RING_OP_DISCARD)
		fill_discard(q, io, &r);
	else if (q->dev->conf.indirect_segs && io->len &&
		 (io->op == RING_OP_READ || io->op == RING_OP_WRITE))
		fill_indirect(q, io, &r);
	else
		fill_direct(q, io, &r);
	memcpy(slot, &r, q->dev->entry_bytes);
	return 0;
}

int tf_queue_submit_raw(struct tf_queue *q, struct tf_io *io, const void *req)
{
	union ring_req_any r;
	void *slot = claim(q, io);
	uint64_t id;

	if (!slot)
		return -EBUSY;
	memcpy(&r, req, q->dev->entry_bytes);
	id = io_id(io);
	if (ring_abi_is_32(q->dev->conf.abi))
		r.r32.id = id; /* the id sits at the same place in every request kind */
	else
		r.r64.id = id;
	memcpy(slot, &r, q->dev->entry_bytes);
	return 0;
}

void *tf_queue_last_slot(struct tf_queue *q)
{
	return q->last_slot;
}

void tf_queue_kick(struct tf_queue *q)
{
	uint64_t one = 1;

	if (write(q->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("tap-front: notifying the backend");
}

void tf_queue_push(struct tf_queue *q)
{
	if (q->req_published == q->req_prod_pvt)
		return;
	if (ring_publish(&q->sring->req_prod, q->req_published, q->req_prod_pvt,
			 &q->sring->req_event))
		tf_queue_kick(q);
	q->req_published = q->req_prod_pvt;
}

unsigned tf_queue_inflight(const struct tf_queue *q)
{
	return q->inflight;
}

/* ---- responses ------------------------------------------------------------ */

static int take_response(struct tf_queue *q, const void *slot)
{
	struct ring_rsp64 rsp;
	struct tf_io *io;
	uint64_t slot_index;

	if (ring_abi_is_32(q->dev->conf.abi)) {
		struct ring_rsp32 r32;

		memcpy(&r32, slot, sizeof(r32));
		rsp = (struct ring_rsp64){ .id = r32.id,
					   .operation = r32.operation,
					   .status = r32.status };
	} else {
		memcpy(&rsp, slot, sizeof(rsp));
	}
	slot_index = (rsp.id >> 16) & 0xffff;
	io = slot_index < q->dev->conf.depth ? &q->ios[slot_index] : NULL;
	if (!io || !io->busy || io->gen != (uint16_t)(rsp.id >> 32) || (rsp.id >> 48) != 0 ||
	    (!io->loose && ((rsp.id & 0xffff) != 0 || rsp.operation != io->rsp_op))) {
		fprintf(stderr,
			"tap-front: queue %u: the backend answered id 0x%" PRIx64
			" (operation %u), "
			"which names no request in flight\n",
			q->index, rsp.id, rsp.operation);
		return -EPROTO;
	}
	io->busy = false;
	io->status = rsp.status;
	io->got_op = rsp.operation;
	q->inflight--;
	io->done(io);
	return 0;
}

/* Take every published response; re-arm rsp_event and look once more. */
static int reap(struct tf_queue *q)
{
	int n = 0;

	do {
		uint32_t rp = ring_peer_index(&q->sring->rsp_prod);

		if (ring_front_rsp_overflow(rp, q->rsp_cons, q->req_prod_pvt)) {
			fprintf(stderr,
				"tap-front: queue %u: the backend claims %u responses with %u "
				"requests outstanding\n",
				q->index, rp - q->rsp_cons, q->req_prod_pvt - q->rsp_cons);
			return -EPROTO;
		}
		while (q->rsp_cons != rp) {
			size_t off = ring_slot_offset(q->rsp_cons, q->nr_ents, q->dev->entry_bytes);
			int err;

			/* Consumed first: the done callback may reuse the slot. */
			q->rsp_cons++;
			err = take_response(q, (uint8_t *)q->sring + off);
			if (err)
				return err;
			n++;
		}
	} while (ring_rearm(&q->sring->rsp_event, &q->sring->rsp_prod, q->rsp_cons));
	return n;
}

int tf_queue_wait(struct tf_queue *q, int timeout_ms)
{
	uint64_t deadline =
		timeout_ms < 0 ? UINT64_MAX : evloop_now_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		struct pollfd p = { .fd = q->irq_fd, .events = POLLIN };
		uint64_t now, count;
		int n = reap(q), wait_ms;

		if (n != 0)
			return n;
		now = evloop_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		wait_ms = deadline == UINT64_MAX
				  ? -1
				  : (int)MIN(div_round_up_u64(deadline - now, 1000000), 60000);
		if (poll(&p, 1, wait_ms) < 0 && errno != EINTR)
			return neg_errno();
		if (read(q->irq_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
			return neg_errno();
	}
}
