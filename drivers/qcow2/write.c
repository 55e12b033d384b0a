// SPDX-License-Identifier: MIT
/*
 * The write path: writes, zero writes and discards on a queue thread.
 *
 * A request first locks the guest clusters it touches (meta.h), then runs
 * in passes:
 *
 *   in place   map from the current position (as reads do); the leading
 *              extents that hold data in clusters of the image's own
 *              (COPIED) are written straight there, no job, no lock;
 *   allocate   otherwise an ALLOC job on the metadata thread plans the
 *              next run of clusters; the head and tail the write does not
 *              cover are read through this image's own read path into a
 *              per-queue COW slot when the guest sees data there (backing
 *              file, old shared or compressed cluster), or are zeros; head,
 *              data and tail go to the host in one vectored write; then a
 *              LINK job points the L2 entries at the clusters (ABORT gives
 *              them back if the write failed);
 *   zero       whole units of a zero write (or whole clusters of a
 *              discard) are one ZERO/DISCARD job each; partial units are
 *              written as zeros through the passes above.
 *
 * FUA, and the flush op, are a FLUSH job: everything the metadata thread
 * holds goes to disk in the contract's order before the request completes.
 *
 * Like reads, processing is a loop in ->run that never recurses: an
 * operation that completes at once only counts down, and every wait (for
 * aio, a job, a range lock, a COW slot) ends by calling ->run again.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/internal.h"

#define CSLOT_TARGET_BYTES (2u << 20)
#define CSLOTS_MAX 8u

enum wstate {
	WS_START = 0, /* take the range lock */
	WS_RELOCK,    /* trade a shared hold for an exclusive one, then map again */
	WS_PASS,      /* decide the next pass */
	WS_MAPPING,   /* mapping for an in-place pass */
	WS_DIRECT,    /* in-place writes in flight */
	WS_ALLOCATED, /* ALLOC job out */
	WS_COPYING,   /* COW reads in flight */
	WS_WRITING,   /* the allocating pass's write in flight */
	WS_LINKED,    /* LINK job out */
	WS_ABORTED,   /* ABORT job out */
	WS_ZEROED,    /* ZERO or DISCARD job out */
	WS_FLUSHED,   /* FLUSH job out */
	WS_CSTART,    /* compressed: compress into a COW slot */
	WS_CALLOC,    /* compressed: ALLOC_BYTES job out */
	WS_CWRITTEN,  /* compressed: the write in flight */
	WS_CLINKED,   /* compressed: LINK_COMPRESSED job out */
	WS_END,
};

enum step {
	STEP_AGAIN,
	STEP_WAIT,
	STEP_DONE,
};

/* ---- per-queue COW slots ------------------------------------------------------------ */

int qcow2_write_queue_init(struct drv_image *img, struct qcow2_queue *qq)
{
	uint64_t cluster_bytes = ((struct qcow2_image *)img->priv)->geom.cluster_bytes;
	unsigned i, j;

	if (img->open_flags & DRV_OPEN_RDONLY)
		return 0;
	qq->nr_cslots =
		(unsigned)MIN(CSLOTS_MAX, MAX(1u, CSLOT_TARGET_BYTES / (2 * cluster_bytes)));
	qq->cslots = calloc(qq->nr_cslots, sizeof(*qq->cslots));
	if (!qq->cslots)
		return -ENOMEM;
	for (i = 0; i < qq->nr_cslots; i++) {
		struct qcow2_cslot *c = &qq->cslots[i];

		for (j = 0; j < 2; j++) {
			c->buf[j] = buf_alloc(cluster_bytes, 4096);
			c->sub_priv[j] = calloc(1, sizeof(struct qcow2_req));
			if (!c->buf[j] || !c->sub_priv[j])
				return -ENOMEM;
		}
		c->next_free = qq->cfree;
		qq->cfree = c;
	}
	return 0;
}

void qcow2_write_queue_fini(struct drv_image *img, struct qcow2_queue *qq)
{
	unsigned i, j;

	for (i = 0; qq->cslots && i < qq->nr_cslots; i++) {
		for (j = 0; j < 2; j++) {
			buf_free(qq->cslots[i].buf[j]);
			free(qq->cslots[i].sub_priv[j]);
		}
	}
	free(qq->cslots);
	qq->cslots = NULL;
	qq->cfree = NULL;
	qq->nr_cslots = 0;
}

static struct qcow2_cslot *cslot_get(struct qcow2_req *qr, struct qcow2_queue *qq)
{
	struct qcow2_cslot *c = qr->grant;

	qr->grant = NULL;
	if (c)
		return c;
	c = qq->cfree;
	if (!c) {
		qcow2_req_park(qr, &qq->cwait);
		return NULL;
	}
	qq->cfree = c->next_free;
	return c;
}

static void cslot_put(struct qcow2_req *qr)
{
	struct qcow2_queue *qq = qr->img->qpriv[qr->req->q->index];
	struct qcow2_cslot *c = qr->cslot;
	bool granted;

	if (!c)
		return;
	qr->cslot = NULL;
	qcow2_waitq_grant(&qq->cwait, c, &granted);
	if (!granted) {
		c->next_free = qq->cfree;
		qq->cfree = c;
	}
}

/* ---- waiting for jobs and locks -------------------------------------------------------- */

static void wake(struct evloop_call *call)
{
	struct qcow2_req *qr = call->opaque;

	qr->parked = false;
	if (!qr->running)
		qr->run(qr);
}

static enum step post_job(struct qcow2_req *qr, enum qcow2_job_kind kind, enum wstate next)
{
	qr->job.kind = kind;
	qr->job.reply = (struct evloop_call){ .fn = wake, .opaque = qr };
	qr->job.reply_loop = qr->req->q->loop;
	qr->wstate = next;
	qr->parked = true;
	qcow2_meta_submit(qr->img, &qr->job);
	return STEP_WAIT;
}

static enum step lock_range(struct qcow2_req *qr, enum wstate next)
{
	struct qcow2_image *qi = qr->img->priv;

	qr->range.wake = (struct evloop_call){ .fn = wake, .opaque = qr };
	qr->range.loop = qr->req->q->loop;
	if (!qcow2_range_lock(qi, &qr->range)) {
		qr->parked = true;
		return STEP_WAIT;
	}
	qr->range_held = true;
	qr->wstate = next;
	return STEP_AGAIN;
}

/* ---- in-place passes ------------------------------------------------------------------------ */

static void start_map(struct qcow2_req *qr, uint64_t limit)
{
	qcow2_map_reset(&qr->map, qr->pos, limit);
	qr->wstate = WS_MAPPING;
}

/* Write the leading in-place extents, or ask for an allocation. */
static enum step map_step(struct qcow2_req *qr)
{
	unsigned n = 0;
	int err;

	err = qcow2_map_fill(qr->img, &qr->map, qr->req->q);
	if (err == -EINPROGRESS)
		return STEP_WAIT;
	if (err) {
		qr->err = err;
		qr->wstate = WS_PASS;
		return STEP_AGAIN;
	}
	while (n < qr->map.nr && qr->map.ext[n].type == QCOW2_EXT_DATA && qr->map.ext[n].copied)
		n++;
	if (n == 0 && qr->range.shared) {
		/* allocating needs the clusters alone: the mapping is redone then */
		qcow2_range_unlock(qr->img->priv, &qr->range);
		qr->range_held = false;
		qr->range.shared = false;
		qr->wstate = WS_RELOCK;
		return STEP_AGAIN;
	}
	if (n == 0) {
		qr->job.pos = qr->pos;
		qr->job.end = qr->map.end;
		return post_job(qr, QCOW2_JOB_ALLOC, WS_ALLOCATED);
	}
	qr->map.nr = n;
	qr->pass_end = qr->map.ext[n - 1].guest_offset + qr->map.ext[n - 1].len;
	qr->iov_used = 0;
	for (qr->next = 0; qr->next < qr->map.nr; qr->next++) {
		struct qcow2_xio *x = &qr->xio[qr->next];

		x->qr = qr;
		x->ext = &qr->map.ext[qr->next];
		x->cur = qr->cur;
		if (qcow2_issue_data(qr, x, AIO_OP_WRITE) == -ENOBUFS)
			break;
		qcow2_iov_advance(qr->iov, &qr->cur, x->ext->len);
	}
	qr->wstate = WS_DIRECT;
	return STEP_AGAIN;
}

/* ---- allocating passes ------------------------------------------------------------------------ */

static bool cow_written(enum qcow2_cow c)
{
	return c == QCOW2_COW_ZERO || c == QCOW2_COW_READ;
}

static void cow_read_done(struct drv_req *sub, int err)
{
	struct qcow2_req *qr = sub->opaque;

	if (err && !qr->err)
		qr->err = err;
	qr->inflight--;
	qcow2_req_kick(qr);
}

static void cow_read(struct qcow2_req *qr, unsigned i, uint64_t offset, uint64_t len)
{
	struct qcow2_cslot *c = qr->cslot;

	c->iov[i] = (struct iovec){ .iov_base = c->buf[i], .iov_len = len };
	c->sub[i] = (struct drv_req){
		.op = DRV_OP_READ,
		.offset = offset,
		.len = len,
		.iov = &c->iov[i],
		.iovcnt = 1,
		.q = qr->req->q,
		.done = cow_read_done,
		.opaque = qr,
		.priv = c->sub_priv[i],
	};
	qr->inflight++;
	qcow2_read(qr->img, &c->sub[i]);
}

/* The plan is back: fetch the COW regions the guest sees data in. */
static enum step allocated(struct qcow2_req *qr)
{
	const struct qcow2_wplan *p = &qr->job.plan;

	if (qr->job.err) {
		qr->err = qr->job.err;
		qr->wstate = WS_PASS;
		return STEP_AGAIN;
	}
	qr->wr_pos = 0;
	if (p->head == QCOW2_COW_READ || p->tail == QCOW2_COW_READ) {
		qr->cslot = cslot_get(qr, qr->img->qpriv[qr->req->q->index]);
		if (!qr->cslot)
			return STEP_WAIT; /* granted later: this state runs again */
		if (p->head == QCOW2_COW_READ)
			cow_read(qr, 0, p->guest_start, qr->pos - p->guest_start);
		if (p->tail == QCOW2_COW_READ)
			cow_read(qr, 1, p->data_end, p->guest_end - p->data_end);
	}
	qr->wstate = WS_COPYING;
	return STEP_AGAIN;
}

/* Append up to @len bytes of @base to the pool; false when it is full. */
static bool pool_add(struct qcow2_req *qr, void *base, uint64_t len)
{
	if (qr->iov_used == QCOW2_PASS_IOVS)
		return false;
	qr->iov_pool[qr->iov_used++] = (struct iovec){ .iov_base = base, .iov_len = len };
	return true;
}

static void stream_done(struct aio_req *aio, int err)
{
	struct qcow2_req *qr = aio->opaque;

	if (err) {
		log_err_ratelimited("qcow2 %s: write at host offset 0x%" PRIx64 " (%" PRIu64
				    " bytes): %s",
				    qr->img->path, aio->offset, aio->len, err_str(err));
		if (!qr->err)
			qr->err = err;
	}
	qr->inflight--;
	qcow2_req_kick(qr);
}

/*
 * Describe the stream head | data | tail from byte qr->wr_pos on in the
 * iovec pool; returns its length (the pool may end it early).
 */
static uint64_t stream_fill(struct qcow2_req *qr, const struct qcow2_wplan *p)
{
	struct qcow2_image *qi = qr->img->priv;
	uint64_t head = cow_written(p->head) ? qr->pos - p->guest_start : 0;
	uint64_t data = p->data_end - qr->pos;
	uint64_t tail = cow_written(p->tail) ? p->guest_end - p->data_end : 0;
	uint64_t at = qr->wr_pos, bytes = 0;

	qr->iov_used = 0;
	if (at < head) {
		uint8_t *src = p->head == QCOW2_COW_READ ? qr->cslot->buf[0] : qi->zero_buf;

		pool_add(qr, src + at, head - at);
		bytes += head - at;
		at = head;
	}
	if (at < head + data) {
		struct qcow2_iov_cursor cur = qr->cur;
		unsigned used;
		uint64_t n;

		qcow2_iov_advance(qr->iov, &cur, at - head);
		n = qcow2_iov_slice(qr->iov, cur, head + data - at, qr->iov_pool + qr->iov_used,
				    QCOW2_PASS_IOVS - qr->iov_used, &used);
		qr->iov_used += used;
		bytes += n;
		at += n;
		if (at < head + data)
			return bytes;
	}
	if (at < head + data + tail) {
		uint8_t *src = p->tail == QCOW2_COW_READ ? qr->cslot->buf[1] : qi->zero_buf;

		if (pool_add(qr, src + (at - head - data), head + data + tail - at))
			bytes += head + data + tail - at;
	}
	return bytes;
}

/* Issue the next piece of the pass's host write; false when all is written. */
static bool stream_issue(struct qcow2_req *qr)
{
	struct qcow2_image *qi = qr->img->priv;
	const struct qcow2_wplan *p = &qr->job.plan;
	uint64_t host = p->host_start + (cow_written(p->head) ? 0 : qr->pos - p->guest_start);
	uint64_t bytes = stream_fill(qr, p);

	if (!bytes)
		return false;
	qr->xio[0].aio = (struct aio_req){
		.file = qi->file,
		.op = AIO_OP_WRITE,
		.offset = host + qr->wr_pos,
		.len = bytes,
		.iov = qr->iov_pool,
		.iovcnt = qr->iov_used,
		.done = stream_done,
		.opaque = qr,
	};
	qr->wr_pos += bytes;
	qr->inflight++;
	aio_submit(qr->req->q->aio, &qr->xio[0].aio);
	return true;
}

/* Another piece written (or the COW reads back): the next, then LINK or ABORT. */
static enum step written(struct qcow2_req *qr)
{
	const struct qcow2_wplan *p = &qr->job.plan;

	if (!qr->err && stream_issue(qr)) {
		qr->wstate = WS_WRITING;
		return STEP_AGAIN;
	}
	if (qr->err)
		return post_job(qr, QCOW2_JOB_ABORT, WS_ABORTED);
	if (p->inplace) {
		qr->wstate = WS_LINKED;
		qr->job.err = 0;
		return STEP_AGAIN;
	}
	return post_job(qr, QCOW2_JOB_LINK, WS_LINKED);
}

static enum step linked(struct qcow2_req *qr)
{
	cslot_put(qr);
	if (qr->job.err && !qr->err)
		qr->err = qr->job.err;
	if (!qr->err) {
		qcow2_iov_advance(qr->iov, &qr->cur, qr->job.plan.data_end - qr->pos);
		qr->pos = qr->job.plan.data_end;
	}
	qr->wstate = WS_PASS;
	return STEP_AGAIN;
}

/* ---- zero writes and discards ----------------------------------------------------------------- */

/* Write explicit zeros over [pos, @limit) (at most one cluster) through the passes. */
static enum step zero_fallback(struct qcow2_req *qr, uint64_t limit)
{
	struct qcow2_image *qi = qr->img->priv;

	qr->zero_iov = (struct iovec){ .iov_base = qi->zero_buf, .iov_len = limit - qr->pos };
	qr->iov = &qr->zero_iov;
	qr->cur = (struct qcow2_iov_cursor){ 0, 0 };
	start_map(qr, limit);
	return STEP_AGAIN;
}

static bool zeroes_need_fallback(const struct qcow2_req *qr)
{
	struct qcow2_image *qi = qr->img->priv;

	return qi->hdr.version < 3 && qr->img->backing;
}

static enum step zero_pass(struct qcow2_req *qr)
{
	const struct qcow2_geom *g = &((struct qcow2_image *)qr->img->priv)->geom;
	uint64_t unit = g->subcluster_bytes;

	if (zeroes_need_fallback(qr))
		return zero_fallback(
			qr, MIN(qr->end, ALIGN_DOWN(qr->pos, g->cluster_bytes) + g->cluster_bytes));
	if (!is_aligned_u64(qr->pos, unit))
		return zero_fallback(qr, MIN(qr->end, ALIGN_UP(qr->pos, unit)));
	if (qr->end - qr->pos < unit)
		return zero_fallback(qr, qr->end);
	qr->job.pos = qr->pos;
	qr->job.end = ALIGN_DOWN(qr->end, unit);
	qr->job.flags = qr->req->flags;
	return post_job(qr, QCOW2_JOB_ZERO, WS_ZEROED);
}

static enum step zeroed(struct qcow2_req *qr)
{
	const struct qcow2_geom *g = &((struct qcow2_image *)qr->img->priv)->geom;

	qr->pos += qr->job.done_bytes;
	if (qr->job.err == -ENOTSUP && !(qr->req->flags & DRV_REQ_NO_FALLBACK))
		return zero_fallback(
			qr, MIN(qr->end, ALIGN_DOWN(qr->pos, g->cluster_bytes) + g->cluster_bytes));
	if (qr->job.err)
		qr->err = qr->job.err;
	qr->wstate = WS_PASS;
	return STEP_AGAIN;
}

/* ---- compressed writes ------------------------------------------------------------------------ */

/*
 * Compress the cluster into the COW slot's second buffer, straight from
 * the caller's buffer when it is one whole cluster (convert's case), else
 * gathered into the slot's first buffer; data that does not shrink is
 * written as usual.
 */
static enum step compress(struct qcow2_req *qr)
{
	struct qcow2_queue *qq = qr->img->qpriv[qr->req->q->index];
	uint64_t cluster_bytes = ((struct qcow2_image *)qr->img->priv)->geom.cluster_bytes;
	const struct drv_req *req = qr->req;
	struct qcow2_iov_cursor cur = { 0, 0 };
	const void *src = req->iovcnt == 1 ? req->iov[0].iov_base : NULL;
	size_t out_len;
	int err;

	qr->cslot = cslot_get(qr, qq);
	if (!qr->cslot)
		return STEP_WAIT;
	if (!src || req->len != cluster_bytes) {
		memset(qr->cslot->buf[0] + req->len, 0, cluster_bytes - req->len);
		qcow2_iov_to_buf(req->iov, cur, qr->cslot->buf[0], req->len);
		src = qr->cslot->buf[0];
	}
	err = qcow2_compress(qq->codec, qr->cslot->buf[1], cluster_bytes, src, cluster_bytes,
			     &out_len);
	if (err == -ENOSPC) {
		cslot_put(qr);
		qr->wstate = WS_PASS;
		return STEP_AGAIN;
	}
	if (err) {
		cslot_put(qr);
		qr->err = err;
		qr->wstate = WS_END;
		return STEP_AGAIN;
	}
	memset(&qr->job.plan, 0, sizeof(qr->job.plan));
	qr->job.plan.compressed_bytes = out_len;
	return post_job(qr, QCOW2_JOB_ALLOC_BYTES, WS_CALLOC);
}

static enum step compressed_allocated(struct qcow2_req *qr)
{
	struct qcow2_image *qi = qr->img->priv;
	const struct qcow2_wplan *p = &qr->job.plan;

	if (qr->job.err) {
		cslot_put(qr);
		qr->err = qr->job.err;
		qr->wstate = WS_END;
		return STEP_AGAIN;
	}
	qr->iov_pool[0] =
		(struct iovec){ .iov_base = qr->cslot->buf[1], .iov_len = p->compressed_bytes };
	qr->xio[0].aio = (struct aio_req){
		.file = qi->file,
		.op = AIO_OP_WRITE,
		.offset = p->host_start,
		.len = p->compressed_bytes,
		.iov = qr->iov_pool,
		.iovcnt = 1,
		.done = stream_done,
		.opaque = qr,
	};
	qr->wstate = WS_CWRITTEN;
	qr->inflight++;
	aio_submit(qr->req->q->aio, &qr->xio[0].aio);
	return STEP_AGAIN;
}

/* ---- the state machine ------------------------------------------------------------------------ */

static enum step next_pass(struct qcow2_req *qr)
{
	if (qr->err || qr->pos == qr->end) {
		if (!qr->err && (qr->req->flags & DRV_REQ_FUA) && qr->req->op != DRV_OP_DISCARD)
			return post_job(qr, QCOW2_JOB_FLUSH, WS_FLUSHED);
		qr->wstate = WS_END;
		return STEP_AGAIN;
	}
	switch (qr->req->op) {
	case DRV_OP_DISCARD:
		qr->job.pos = qr->pos;
		qr->job.end = qr->end;
		return post_job(qr, QCOW2_JOB_DISCARD, WS_ZEROED);
	case DRV_OP_WRITE_ZEROES:
		qr->iov = qr->req->iov;
		return zero_pass(qr);
	default:
		start_map(qr, qr->end);
		return STEP_AGAIN;
	}
}

static enum step write_step(struct qcow2_req *qr)
{
	if (qr->inflight)
		return STEP_WAIT;
	switch ((enum wstate)qr->wstate) {
	case WS_START:
		return lock_range(qr, qr->req->flags & DRV_REQ_COMPRESSED ? WS_CSTART : WS_PASS);
	case WS_RELOCK:
		return lock_range(qr, WS_PASS);
	case WS_PASS:
		return next_pass(qr);
	case WS_MAPPING:
		return map_step(qr);
	case WS_DIRECT:
		if (!qr->err)
			qr->pos = qr->pass_end;
		qr->wstate = WS_PASS;
		return STEP_AGAIN;
	case WS_ALLOCATED:
		return allocated(qr);
	case WS_COPYING:
	case WS_WRITING:
		return written(qr);
	case WS_LINKED:
		return linked(qr);
	case WS_ABORTED:
		cslot_put(qr);
		qr->wstate = qr->req->flags & DRV_REQ_COMPRESSED ? WS_END : WS_PASS;
		return STEP_AGAIN;
	case WS_ZEROED:
		return zeroed(qr);
	case WS_FLUSHED:
		qr->err = qr->job.err;
		qr->wstate = WS_END;
		return STEP_AGAIN;
	case WS_CSTART:
		return compress(qr);
	case WS_CALLOC:
		return compressed_allocated(qr);
	case WS_CWRITTEN:
		if (qr->err)
			return post_job(qr, QCOW2_JOB_ABORT, WS_ABORTED);
		qr->job.pos = qr->pos;
		return post_job(qr, QCOW2_JOB_LINK_COMPRESSED, WS_CLINKED);
	case WS_CLINKED:
		cslot_put(qr);
		qr->err = qr->job.err;
		qr->wstate = WS_END;
		return STEP_AGAIN;
	case WS_END:
		break;
	}
	/* the range changed, or may have (even on failure): the dirty bitmaps say so */
	qcow2_bitmaps_mark(((struct qcow2_image *)qr->img->priv)->bitmaps, qr->req->offset,
			   qr->req->len);
	if (qr->range_held) {
		qcow2_range_unlock(qr->img->priv, &qr->range);
		qr->range_held = false;
	}
	return STEP_DONE;
}

static void write_run(struct qcow2_req *qr)
{
	enum step st;

	qr->running = true;
	do {
		st = write_step(qr);
	} while (st == STEP_AGAIN);
	qr->running = false;
	if (st == STEP_DONE)
		drv_req_complete(qr->req, qr->err);
}

static void write_start(struct drv_image *img, struct drv_req *req, uint64_t start, uint64_t end)
{
	const struct qcow2_geom *g = &((struct qcow2_image *)img->priv)->geom;
	struct qcow2_req *qr = req->priv;

	qcow2_req_init(qr, img, req, write_run);
	qr->pos = start;
	qr->end = end;
	qr->wstate = WS_START;
	qr->range_held = false;
	qr->cslot = NULL;
	qr->range.start = ALIGN_DOWN(start, g->cluster_bytes);
	qr->range.end = ALIGN_UP(end, g->cluster_bytes);
	qr->range.shared = req->op == DRV_OP_WRITE && !(req->flags & DRV_REQ_COMPRESSED);
	write_run(qr);
}

/* Tools only: one cluster stored compressed (convert -c). */
void qcow2_write_compressed(struct drv_image *img, struct drv_req *req)
{
	write_start(img, req, req->offset, req->offset + req->len);
}

void qcow2_write(struct drv_image *img, struct drv_req *req)
{
	write_start(img, req, req->offset, req->offset + req->len);
}

void qcow2_write_zeroes(struct drv_image *img, struct drv_req *req)
{
	const struct qcow2_image *qi = img->priv;
	uint64_t unit = qi->geom.subcluster_bytes, end = req->offset + req->len;

	if ((req->flags & DRV_REQ_NO_FALLBACK) &&
	    ((qi->hdr.version < 3 && img->backing) || !is_aligned_u64(req->offset, unit) ||
	     (!is_aligned_u64(end, unit) && end != img->size_bytes))) {
		drv_req_complete(req, -ENOTSUP);
		return;
	}
	write_start(img, req, req->offset, end);
}

/*
 * Discard whole clusters only (and the last one of the disk, however
 * short): a discard is advisory, and a partial one would cost a COW.
 */
void qcow2_discard(struct drv_image *img, struct drv_req *req)
{
	const struct qcow2_image *qi = img->priv;
	uint64_t cb = qi->geom.cluster_bytes, end = req->offset + req->len;
	uint64_t start = ALIGN_UP(req->offset, cb);

	end = end == img->size_bytes ? ALIGN_UP(end, cb) : ALIGN_DOWN(end, cb);
	if (start >= end || (qi->hdr.version < 3 && img->backing)) {
		drv_req_complete(req, 0);
		return;
	}
	write_start(img, req, start, end);
}

static void flush_reply(struct evloop_call *call)
{
	struct qcow2_req *qr = call->opaque;

	drv_req_complete(qr->req, qr->job.err);
}

/* A flush of a writable image: everything the metadata thread holds, in order. */
void qcow2_flush_meta(struct drv_image *img, struct drv_req *req)
{
	struct qcow2_req *qr = req->priv;

	qr->req = req;
	qr->img = img;
	qr->job.kind = QCOW2_JOB_FLUSH;
	qr->job.reply = (struct evloop_call){ .fn = flush_reply, .opaque = qr };
	qr->job.reply_loop = req->q->loop;
	qcow2_meta_submit(img, &qr->job);
}
