// SPDX-License-Identifier: MIT
/*
 * Unallocated extents: read through to the backing image.
 *
 * A sub-request cannot be carved from the request's own scratch: the
 * backing image may itself be qcow2, whose scratch would have to contain
 * its backing's, and so on down the chain, while req_priv_size is one
 * constant.  So each queue of each image with a backing file keeps a few
 * backing slots, each a drv_req with scratch for the backing chain
 * (drv_chain_req_priv_bytes), allocated by queue_init.  A request waiting
 * for a slot of image N only ever waits on requests to image N+1 and
 * below, so the chain cannot deadlock.
 *
 * The backing image is not bound by our geometry: past its end the
 * overlay reads zeros (QEMU's rule for short backing files), and its
 * block size may exceed our 512 bytes (a raw file under O_DIRECT on a 4K
 * device).  Pieces it cannot take directly go through the slot's bounce
 * buffer, widened to its blocks, in chunks.  A raw backing file whose size
 * is not a multiple of its block size reads zeros in its last partial
 * block, which the raw driver cannot serve either.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "buf.h"
#include "checked.h"
#include "log.h"
#include "qcow2/internal.h"

/* ---- slots --------------------------------------------------------------------- */

int qcow2_backing_queue_init(struct drv_image *img, struct qcow2_queue *qq)
{
	size_t priv_bytes;
	unsigned i;

	if (!img->backing)
		return 0;
	priv_bytes = drv_chain_req_priv_bytes(img->backing);
	qq->bounce_bytes =
		MAX((uint64_t)QCOW2_BACKING_BOUNCE_BYTES, 2 * (uint64_t)img->backing->block_bytes);
	qq->bslots = calloc(QCOW2_BACKING_SLOTS, sizeof(*qq->bslots));
	if (!qq->bslots)
		return -ENOMEM;
	qq->nr_bslots = QCOW2_BACKING_SLOTS;
	for (i = 0; i < qq->nr_bslots; i++) {
		struct qcow2_bslot *b = &qq->bslots[i];

		b->sub_priv = calloc(1, priv_bytes ? priv_bytes : 1);
		b->iov = calloc(QCOW2_BACKING_IOVS, sizeof(*b->iov));
		b->bounce = buf_alloc(qq->bounce_bytes, 4096);
		if (!b->sub_priv || !b->iov || !b->bounce)
			return -ENOMEM;
		b->next_free = qq->bfree;
		qq->bfree = b;
	}
	return 0;
}

void qcow2_backing_queue_fini(struct qcow2_queue *qq)
{
	unsigned i;

	for (i = 0; qq->bslots && i < qq->nr_bslots; i++) {
		free(qq->bslots[i].sub_priv);
		free(qq->bslots[i].iov);
		buf_free(qq->bslots[i].bounce);
	}
	free(qq->bslots);
	qq->bslots = NULL;
	qq->bfree = NULL;
	qq->nr_bslots = 0;
}

static struct qcow2_bslot *bslot_get(struct qcow2_req *qr, struct qcow2_queue *qq)
{
	struct qcow2_bslot *b = qr->grant;

	qr->grant = NULL;
	if (b)
		return b;
	b = qq->bfree;
	if (!b) {
		qcow2_req_park(qr, &qq->bwait);
		return NULL;
	}
	qq->bfree = b->next_free;
	return b;
}

static void bslot_put(struct qcow2_queue *qq, struct qcow2_bslot *b)
{
	bool granted;

	qcow2_waitq_grant(&qq->bwait, b, &granted);
	if (!granted) {
		b->next_free = qq->bfree;
		qq->bfree = b;
	}
}

/* ---- chunks ---------------------------------------------------------------------- */

static struct qcow2_queue *bslot_queue(const struct qcow2_bslot *b)
{
	const struct qcow2_req *qr = b->xio->qr;

	return qr->img->qpriv[qr->req->q->index];
}

static void sub_done(struct drv_req *sub, int err);

static void bslot_submit(struct qcow2_bslot *b, uint64_t offset, uint64_t len, unsigned iovcnt)
{
	const struct qcow2_req *qr = b->xio->qr;

	b->sub = (struct drv_req){
		.op = DRV_OP_READ,
		.offset = offset,
		.len = len,
		.iov = b->iov,
		.iovcnt = iovcnt,
		.q = qr->req->q,
		.done = sub_done,
		.opaque = b,
		.priv = b->sub_priv,
	};
	drv_submit(qr->img->backing, &b->sub);
}

/*
 * A piece the backing image cannot take in place: read whole blocks of it
 * around [b->pos, @want_end) into the bounce buffer, as much as fits.
 */
static void start_bounced(struct qcow2_bslot *b, uint64_t want_end, uint64_t block_bytes)
{
	uint64_t start = ALIGN_DOWN(b->pos, block_bytes);
	uint64_t room = ALIGN_DOWN(bslot_queue(b)->bounce_bytes, block_bytes);
	uint64_t end = MIN(ALIGN_DOWN(want_end + block_bytes - 1, block_bytes), start + room);

	b->bounced = true;
	b->skip = b->pos - start;
	b->chunk_len = MIN(want_end, end) - b->pos;
	b->iov[0] = (struct iovec){ .iov_base = b->bounce, .iov_len = end - start };
	bslot_submit(b, start, end - start, 1);
}

/*
 * Start the next chunk of the extent at b->pos.  Returns true when a
 * sub-request was submitted, false when the chunk was served here (zeros
 * past the backing image's end).
 */
static bool start_chunk(struct qcow2_bslot *b)
{
	const struct qcow2_xio *x = b->xio;
	struct drv_image *backing = x->qr->img->backing;
	uint64_t block_bytes = backing->block_bytes;
	uint64_t ext_end = x->ext->guest_offset + x->ext->len;
	uint64_t limit = ALIGN_DOWN(backing->size_bytes, block_bytes);
	uint64_t want_end, n = 0;
	unsigned used = 0;

	if (b->pos >= limit) {
		b->bounced = false;
		b->chunk_len = ext_end - b->pos;
		qcow2_iov_memset(x->qr->req->iov, b->cur, 0, b->chunk_len);
		return false;
	}
	want_end = MIN(ext_end, limit);
	if (is_aligned_u64(b->pos, block_bytes)) {
		n = qcow2_iov_slice(x->qr->req->iov, b->cur, want_end - b->pos, b->iov,
				    QCOW2_BACKING_IOVS, &used);
		n = ALIGN_DOWN(n, block_bytes);
	}
	if (n == 0) {
		start_bounced(b, want_end, block_bytes);
		return true;
	}
	/* describe exactly n bytes: the aligned-down slice may need fewer entries */
	qcow2_iov_slice(x->qr->req->iov, b->cur, n, b->iov, QCOW2_BACKING_IOVS, &used);
	b->bounced = false;
	b->chunk_len = n;
	bslot_submit(b, b->pos, n, used);
	return true;
}

/* The current chunk is in: copy it out of the bounce buffer, move on. */
static void finish_chunk(struct qcow2_bslot *b)
{
	if (b->sub_err)
		return;
	if (b->bounced)
		qcow2_iov_from_buf(b->xio->qr->req->iov, b->cur, b->bounce + b->skip, b->chunk_len);
	qcow2_iov_advance(b->xio->qr->req->iov, &b->cur, b->chunk_len);
	b->pos += b->chunk_len;
}

static void bslot_finish(struct qcow2_bslot *b)
{
	struct qcow2_xio *x = b->xio;
	int err = b->sub_err;

	bslot_put(bslot_queue(b), b);
	qcow2_xio_done(x, err);
}

/*
 * Fetch chunks until the extent is done or one is in flight.  A backing
 * image may complete inside drv_submit(); that completion only marks the
 * chunk done and this loop carries on, so a long extent never recurses.
 */
static void bslot_pump(struct qcow2_bslot *b)
{
	const struct qcow2_extent *e = b->xio->ext;

	while (!b->sub_err && b->pos < e->guest_offset + e->len) {
		bool started;

		b->sub_done = false;
		b->in_submit = true;
		started = start_chunk(b);
		b->in_submit = false;
		if (started && !b->sub_done)
			return; /* sub_done() continues */
		finish_chunk(b);
	}
	bslot_finish(b);
}

static void sub_done(struct drv_req *sub, int err)
{
	struct qcow2_bslot *b = sub->opaque;

	b->sub_err = err;
	b->sub_done = true;
	if (b->in_submit)
		return;
	finish_chunk(b);
	bslot_pump(b);
}

int qcow2_backing_issue(struct qcow2_xio *x)
{
	struct qcow2_req *qr = x->qr;
	struct qcow2_bslot *b = bslot_get(qr, qr->img->qpriv[qr->req->q->index]);

	if (!b)
		return -EINPROGRESS;
	b->xio = x;
	b->pos = x->ext->guest_offset;
	b->cur = x->cur;
	b->sub_err = 0;
	qr->inflight++;
	bslot_pump(b);
	return 0;
}
