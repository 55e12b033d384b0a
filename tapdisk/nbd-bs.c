// SPDX-License-Identifier: MIT
/*
 * NBD_CMD_BLOCK_STATUS and NBD_CMD_CACHE: walks over the range, one vbd
 * status request per run.
 *
 * One walk over the chain's allocation feeds both base:allocation (HOLE
 * where no image holds data, ZERO where reads return zeros) and
 * qemu:allocation-depth (0 where no image holds the range, else 1 + the
 * depth of the image that does), as qemu-nbd computes them; each selected
 * qemu:dirty-bitmap:NAME gets a walk over that persistent bitmap.  A walk
 * stops at the end of the range, at NBDS_BS_DESC descriptors in a context
 * (the client asks again from where the reply ends), or after one
 * descriptor with NBD_CMD_FLAG_REQ_ONE.
 *
 * The reply is built in the request's arena buffer: one region per context
 * (chunk header, context id, descriptors), packed together at the end and
 * sent as one piece.
 */
#include <errno.h>
#include <string.h>

#include "checked.h"
#include "tapdisk/nbd-internal.h"

#define CTX_HDR_BYTES (NBDP_CHUNK_HDR_BYTES + 4)

static unsigned max_desc(const struct nbdp_request *r)
{
	return (r->flags & NBDP_CMD_FLAG_REQ_ONE) ? 1 : NBDS_BS_DESC;
}

static size_t region_bytes(const struct nbdp_request *r)
{
	return CTX_HDR_BYTES + 8 * (size_t)max_desc(r);
}

size_t nbds_bs_bytes(const struct nbds_conn *c, const struct nbdp_request *r)
{
	return nbdp_meta_count(&c->sess) * region_bytes(r);
}

static uint32_t base_flags(const struct drv_status *st)
{
	return (st->flags & DRV_BS_DATA ? 0 : NBDP_STATE_HOLE) |
	       (st->flags & DRV_BS_ZERO ? NBDP_STATE_ZERO : 0);
}

static uint32_t depth_value(const struct drv_status *st)
{
	return st->flags & DRV_BS_ALLOCATED ? st->depth + 1 : 0;
}

/*
 * The walk's phases: 0 is the allocation walk (skipped unless base or depth
 * is selected), 1 + i the walk over bitmap i (skipped unless selected).
 */
static bool phase_wanted(const struct nbds_slot *s, unsigned phase)
{
	const struct nbdp_session *ss = &s->c->sess;

	if (s->r.type == NBDP_CMD_CACHE)
		return phase == 0;
	if (phase == 0)
		return ss->base || ss->depth;
	return (ss->bitmaps >> (phase - 1)) & 1;
}

/* The context regions in reply order: base, depth, then the bitmaps. */
static uint8_t *region(struct nbds_slot *s, unsigned k)
{
	return s->buf + k * region_bytes(&s->r);
}

/* Region index of bitmap @i. */
static unsigned bitmap_region(const struct nbds_slot *s, unsigned i)
{
	const struct nbdp_session *ss = &s->c->sess;

	return (unsigned)ss->base + (unsigned)ss->depth +
	       (unsigned)__builtin_popcountll(ss->bitmaps & ((1ull << i) - 1));
}

static void walk_issue(struct nbds_slot *s);

static void finish(struct nbds_slot *s)
{
	const struct nbdp_session *ss = &s->c->sess;
	unsigned nctx = nbdp_meta_count(ss), k = 0, i;
	uint32_t ids[NBDP_MAX_BITMAPS + 2];
	size_t out = 0;

	if (s->r.type == NBDP_CMD_CACHE) {
		nbds_reply_ok(s);
		return;
	}
	if (ss->base)
		ids[k++] = NBDP_CTX_BASE_ALLOCATION;
	if (ss->depth)
		ids[k++] = NBDP_CTX_ALLOCATION_DEPTH;
	for (i = 0; i < NBDP_MAX_BITMAPS; i++) {
		if ((ss->bitmaps >> i) & 1)
			ids[k++] = NBDP_CTX_BITMAP0 + i;
	}
	for (k = 0; k < nctx; k++) {
		uint8_t *reg = region(s, k);
		uint32_t nr = get_be32(reg); /* stashed by the walk */
		size_t bytes = CTX_HDR_BYTES + 8 * (size_t)nr;

		nbdp_chunk_hdr(reg, k + 1 == nctx ? NBDP_REPLY_FLAG_DONE : 0,
			       NBDP_REPLY_TYPE_BLOCK_STATUS, s->r.cookie, (uint32_t)(bytes - 20));
		put_be32(reg + NBDP_CHUNK_HDR_BYTES, ids[k]);
		memmove(s->buf + out, reg, bytes);
		out += bytes;
	}
	s->iov[0] = (struct iovec){ .iov_base = s->buf, .iov_len = out };
	s->iovcnt = 1;
	nbds_conn_queue_reply(s);
}

/* Record the descriptor counts where finish() finds them. */
static void stash_counts(struct nbds_slot *s)
{
	const struct nbdp_session *ss = &s->c->sess;
	unsigned k = 0;

	if (s->phase == 0) {
		if (ss->base)
			put_be32(region(s, k++), s->bs[0].nr);
		if (ss->depth)
			put_be32(region(s, k), s->bs[1].nr);
	} else {
		put_be32(region(s, bitmap_region(s, s->phase - 1)), s->bs[0].nr);
	}
}

/* The first wanted phase from @from on; false when none is left. */
static bool phase_seek(struct nbds_slot *s, unsigned from)
{
	for (s->phase = from; s->phase <= NBDP_MAX_BITMAPS; s->phase++) {
		if (phase_wanted(s, s->phase))
			return true;
	}
	return false;
}

static void phase_enter(struct nbds_slot *s)
{
	unsigned maxd = max_desc(&s->r);

	s->pos = s->r.offset;
	if (s->r.type == NBDP_CMD_CACHE) {
		/* no descriptors */
	} else if (s->phase == 0) {
		nbdp_bs_init(&s->bs[0], region(s, 0) + CTX_HDR_BYTES, maxd);
		nbdp_bs_init(&s->bs[1], region(s, s->c->sess.base ? 1 : 0) + CTX_HDR_BYTES, maxd);
	} else {
		nbdp_bs_init(&s->bs[0], region(s, bitmap_region(s, s->phase - 1)) + CTX_HDR_BYTES,
			     maxd);
	}
	walk_issue(s);
}

static void phase_leave(struct nbds_slot *s)
{
	if (s->r.type != NBDP_CMD_CACHE)
		stash_counts(s);
	if (phase_seek(s, s->phase + 1))
		phase_enter(s);
	else
		finish(s);
}

/* A run of @st from the aligned query start @qstart: the descriptors. */
static bool walk_record(struct nbds_slot *s, uint64_t qstart, const struct drv_status *st)
{
	uint64_t run_end = qstart + st->len, len;
	bool room;

	if (run_end <= s->pos)
		return true; /* nothing of the asked range; should not happen */
	len = MIN(run_end, s->end) - s->pos;
	s->pos += len;
	if (s->r.type == NBDP_CMD_CACHE)
		return true;
	if (s->phase > 0) {
		room = nbdp_bs_add(&s->bs[0], (uint32_t)len,
				   st->flags & DRV_BS_DIRTY ? NBDP_STATE_DIRTY : 0);
		return room && s->bs[0].nr < s->bs[0].max;
	}
	if (s->c->sess.base)
		nbdp_bs_add(&s->bs[0], (uint32_t)len, base_flags(st));
	if (s->c->sess.depth)
		nbdp_bs_add(&s->bs[1], (uint32_t)len, depth_value(st));
	return (!s->c->sess.base || s->bs[0].nr < s->bs[0].max) &&
	       (!s->c->sess.depth || s->bs[1].nr < s->bs[1].max);
}

static void walk_done(struct td_request *req, int err)
{
	struct nbds_slot *s = req->opaque;
	bool more;

	if (err) {
		nbds_reply_error(s, nbdp_errno(err), NULL);
		return;
	}
	if (req->status.len == 0) {
		nbds_reply_error(s, NBDP_EIO, "the image returned an empty extent");
		return;
	}
	more = walk_record(s, req->offset, &req->status);
	if (more && s->pos < s->end && !(s->r.flags & NBDP_CMD_FLAG_REQ_ONE))
		walk_issue(s);
	else
		phase_leave(s);
}

static void walk_issue(struct nbds_slot *s)
{
	uint32_t b = s->c->srv->block_bytes;
	uint64_t from = ALIGN_DOWN(s->pos, (uint64_t)b), to = ALIGN_UP(s->end, (uint64_t)b);

	s->req = (struct td_request){
		.op = s->phase ? TD_OP_BITMAP_STATUS : TD_OP_BLOCK_STATUS,
		.offset = from,
		.len = to - from,
		.bitmap = s->phase ? s->c->exp.bitmaps[s->phase - 1] : NULL,
		.done = walk_done,
		.opaque = s,
	};
	vbd_submit(s->c->q, &s->req);
}

static void walk_start(struct nbds_slot *s)
{
	s->end = s->r.offset + s->r.len;
	if (phase_seek(s, 0))
		phase_enter(s);
	else
		finish(s); /* no context: refused earlier, never reached */
}

void nbds_bs_start(struct nbds_slot *s)
{
	walk_start(s);
}

void nbds_cache_start(struct nbds_slot *s)
{
	walk_start(s);
}
