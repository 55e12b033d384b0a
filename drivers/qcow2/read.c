// SPDX-License-Identifier: MIT
/*
 * The read path: serve each pass of extents that map.c produces.
 *
 *   DATA        one aio read from the image file into the caller's iovec
 *               pieces (bytes past the end of the file read as zeros, as
 *               in QEMU: the last cluster of an image may be short);
 *   ZERO        memset;
 *   UNALLOC     the backing image's bytes (backing.c), or zeros;
 *   COMPRESSED  read the compressed bytes into a per-queue slot, inflate
 *               them with this thread's codec, copy the wanted part.
 *
 * Every extent of a pass is issued at once with no lock held; the next pass
 * is mapped when all have completed.  Completions that arrive while ->run
 * is on the stack (a backing image that answers synchronously) only count
 * down, so processing is a loop, never a recursion, whatever the length.
 * A request that needs a per-queue slot while all are busy parks on the
 * slot's wait list; a freed slot is handed straight to the first waiter,
 * so newcomers cannot starve it.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/internal.h"

enum step {
	STEP_AGAIN,
	STEP_WAIT,
	STEP_DONE,
};

/* Run @qr unless it is already running further up the stack or parked. */
void qcow2_req_kick(struct qcow2_req *qr)
{
	if (!qr->running && !qr->parked && qr->inflight == 0)
		qr->run(qr);
}

static void map_resume(struct qcow2_map *m)
{
	qcow2_req_kick((struct qcow2_req *)((char *)m - offsetof(struct qcow2_req, map)));
}

static void req_resume(struct evloop_call *call)
{
	struct qcow2_req *qr = call->opaque;

	qr->parked = false;
	if (!qr->running)
		qr->run(qr);
}

void qcow2_req_init(struct qcow2_req *qr, struct drv_image *img, struct drv_req *req,
		    qcow2_run_fn *run)
{
	qr->req = req;
	qr->img = img;
	qr->run = run;
	qr->pos = req->offset;
	qr->end = req->offset + req->len; /* bounds checked by drv_submit */
	qr->mapping = qr->mapped = qr->running = qr->parked = false;
	qr->inflight = 0;
	qr->err = 0;
	qr->cur = (struct qcow2_iov_cursor){ 0, 0 };
	qr->grant = NULL;
	qr->map.slice = NULL;
	qr->map.wait_err = 0;
	qr->map.resume = map_resume;
	qr->iov = req->iov;
	qr->resume = (struct evloop_call){ .fn = req_resume, .opaque = qr };
}

void qcow2_xio_done(struct qcow2_xio *x, int err)
{
	struct qcow2_req *qr = x->qr;

	if (err && !qr->err)
		qr->err = err;
	assert(qr->inflight > 0);
	qr->inflight--;
	qcow2_req_kick(qr);
}

void qcow2_req_park(struct qcow2_req *qr, struct qcow2_waitq *wq)
{
	qr->parked = true;
	qr->wait_next = NULL;
	if (wq->tail)
		wq->tail->wait_next = qr;
	else
		wq->head = qr;
	wq->tail = qr;
}

void qcow2_waitq_grant(struct qcow2_waitq *wq, void *slot, bool *granted)
{
	struct qcow2_req *qr = wq->head;

	*granted = qr != NULL;
	if (!qr)
		return;
	wq->head = qr->wait_next;
	if (!wq->head)
		wq->tail = NULL;
	qr->grant = slot;
	/* posted, not called: the releaser is in the middle of its own work */
	evloop_post(qr->req->q->loop, &qr->resume);
}

/* ---- DATA ------------------------------------------------------------------------ */

static void data_done(struct aio_req *aio, int err)
{
	struct qcow2_xio *x = aio->opaque;

	if (err)
		log_err_ratelimited("qcow2 %s: %s of guest offset 0x%" PRIx64 " at host offset "
				    "0x%" PRIx64 " (%" PRIu64 " bytes): %s",
				    x->qr->img->path, aio->op == AIO_OP_READ ? "read" : "write",
				    x->ext->guest_offset, aio->offset, aio->len, err_str(err));
	qcow2_xio_done(x, err);
}

/*
 * Read (or write, @op) a DATA extent straight from or into the caller's
 * buffers (qr->iov).  When the pass's iovec pool runs out, the pass ends
 * there: before this extent when no entry is left (-ENOBUFS), or inside
 * it; the next pass maps the rest.
 */
int qcow2_issue_data(struct qcow2_req *qr, struct qcow2_xio *x, enum aio_op op)
{
	struct qcow2_image *qi = qr->img->priv;
	struct qcow2_extent *e = x->ext;
	struct iovec *iov = &qr->iov_pool[qr->iov_used];
	unsigned used;
	uint64_t n;

	n = qcow2_iov_slice(qr->iov, x->cur, e->len, iov, QCOW2_PASS_IOVS - qr->iov_used, &used);
	if (n < e->len) {
		qr->map.nr = qr->next + (n ? 1 : 0);
		qr->pass_end = e->guest_offset + n;
		e->len = n;
		if (!n)
			return -ENOBUFS;
	}
	qr->iov_used += used;
	x->aio = (struct aio_req){
		.file = qi->file,
		.op = op,
		.flags = op == AIO_OP_READ ? AIO_F_ZERO_EOF : 0,
		.offset = e->host_offset,
		.len = n,
		.iov = iov,
		.iovcnt = used,
		.done = data_done,
		.opaque = x,
	};
	qr->inflight++;
	aio_submit(qr->req->q->aio, &x->aio);
	return 0;
}

/* ---- COMPRESSED ------------------------------------------------------------------- */

static struct qcow2_zslot *zslot_get(struct qcow2_req *qr, struct qcow2_queue *qq)
{
	struct qcow2_zslot *z = qr->grant;

	qr->grant = NULL;
	if (z)
		return z;
	z = qq->zfree;
	if (!z) {
		qcow2_req_park(qr, &qq->zwait);
		return NULL;
	}
	qq->zfree = z->next_free;
	return z;
}

static void zslot_put(struct qcow2_queue *qq, struct qcow2_zslot *z)
{
	bool granted;

	qcow2_waitq_grant(&qq->zwait, z, &granted);
	if (!granted) {
		z->next_free = qq->zfree;
		qq->zfree = z;
	}
}

/* Inflate the cluster in @z and copy the extent's part of it out. */
static int zslot_inflate(struct qcow2_zslot *z, struct qcow2_queue *qq)
{
	struct qcow2_xio *x = z->xio;
	struct drv_image *img = x->qr->img;
	const struct qcow2_geom *g = &((struct qcow2_image *)img->priv)->geom;
	const struct qcow2_extent *e = x->ext;
	int err;

	err = qcow2_decompress(qq->codec, z->out, g->cluster_bytes, z->in, e->compressed_bytes);
	if (err) {
		log_err_ratelimited("qcow2 %s: guest offset 0x%" PRIx64 ": compressed cluster at "
				    "host offset 0x%" PRIx64 " (%" PRIu64 " bytes) is corrupt",
				    img->path, e->guest_offset, e->host_offset,
				    e->compressed_bytes);
		return -EIO;
	}
	qcow2_iov_from_buf(x->qr->req->iov, x->cur,
			   z->out + (e->guest_offset & (g->cluster_bytes - 1)), e->len);
	return 0;
}

static void zslot_read_done(struct aio_req *aio, int err)
{
	struct qcow2_zslot *z = aio->opaque;
	struct qcow2_xio *x = z->xio;
	struct drv_image *img = x->qr->img;
	struct qcow2_queue *qq = img->qpriv[x->qr->req->q->index];

	if (err)
		log_err_ratelimited("qcow2 %s: guest offset 0x%" PRIx64 ": read of compressed "
				    "cluster at host offset 0x%" PRIx64 ": %s",
				    img->path, x->ext->guest_offset, aio->offset, err_str(err));
	else
		err = zslot_inflate(z, qq);
	zslot_put(qq, z);
	qcow2_xio_done(x, err);
}

/* 0 when issued, -EINPROGRESS when parked for a slot. */
static int issue_compressed(struct qcow2_req *qr, struct qcow2_xio *x)
{
	struct qcow2_image *qi = qr->img->priv;
	struct qcow2_queue *qq = qr->img->qpriv[qr->req->q->index];
	struct qcow2_zslot *z = zslot_get(qr, qq);

	if (!z)
		return -EINPROGRESS;
	/* at most 2^(cluster_bits - 8) sectors: two clusters (format.h) */
	assert(x->ext->compressed_bytes <= 2 * qi->geom.cluster_bytes);
	z->xio = x;
	z->iov = (struct iovec){ .iov_base = z->in, .iov_len = x->ext->compressed_bytes };
	z->aio = (struct aio_req){
		.file = qi->file,
		.op = AIO_OP_READ,
		.flags = AIO_F_ZERO_EOF, /* the data may end in a partial last sector */
		.offset = x->ext->host_offset,
		.len = x->ext->compressed_bytes,
		.iov = &z->iov,
		.iovcnt = 1,
		.done = zslot_read_done,
		.opaque = z,
	};
	qr->inflight++;
	aio_submit(qr->req->q->aio, &z->aio);
	return 0;
}

/* ---- passes ------------------------------------------------------------------------- */

/*
 * 0 when the extent is issued or served, -EINPROGRESS when parked, -ENOBUFS
 * when the pass ends before it.
 */
static int issue_one(struct qcow2_req *qr, struct qcow2_xio *x)
{
	switch (x->ext->type) {
	case QCOW2_EXT_DATA:
		return qcow2_issue_data(qr, x, AIO_OP_READ);
	case QCOW2_EXT_COMPRESSED:
		return issue_compressed(qr, x);
	case QCOW2_EXT_UNALLOC:
		if (qr->img->backing)
			return qcow2_backing_issue(x);
		break;
	case QCOW2_EXT_ZERO:
	case QCOW2_EXT_ZERO_ALLOC:
		break;
	}
	qcow2_iov_memset(qr->req->iov, x->cur, 0, x->ext->len);
	return 0;
}

/*
 * Issue the pass's extents from qr->next on.  An error from one extent
 * does not stop the others of the pass: the request fails once they are
 * all back, and no slot is left granted to a request that gave up.
 */
static int issue_extents(struct qcow2_req *qr)
{
	while (qr->next < qr->map.nr) {
		struct qcow2_xio *x = &qr->xio[qr->next];
		int err;

		x->qr = qr;
		x->ext = &qr->map.ext[qr->next];
		x->cur = qr->cur;
		err = issue_one(qr, x);
		if (err == -ENOBUFS)
			break;
		if (err)
			return err;
		qcow2_iov_advance(qr->req->iov, &qr->cur, x->ext->len);
		qr->next++;
	}
	return 0;
}

/* Map the next pass; STEP_AGAIN when its extents are ready to issue. */
static enum step map_pass(struct qcow2_req *qr)
{
	int err;

	if (!qr->mapping) {
		qcow2_map_reset(&qr->map, qr->pos, qr->end);
		qr->mapping = true;
	}
	err = qcow2_map_fill(qr->img, &qr->map, qr->req->q);
	if (err == -EINPROGRESS)
		return STEP_WAIT;
	qr->mapping = false;
	if (err) {
		qr->err = err;
		return STEP_DONE;
	}
	qr->mapped = true;
	qr->next = 0;
	qr->iov_used = 0;
	qr->pass_end = qr->map.pos;
	return STEP_AGAIN;
}

static enum step read_step(struct qcow2_req *qr)
{
	if (qr->mapped && qr->next < qr->map.nr && issue_extents(qr) == -EINPROGRESS)
		return STEP_WAIT;
	if (qr->inflight)
		return STEP_WAIT;
	if (qr->mapped) {
		qr->mapped = false;
		qr->pos = qr->pass_end;
	}
	if (qr->err || qr->pos == qr->end)
		return STEP_DONE;
	return map_pass(qr);
}

static void read_run(struct qcow2_req *qr)
{
	enum step st;

	qr->running = true;
	do {
		st = read_step(qr);
	} while (st == STEP_AGAIN);
	qr->running = false;
	/* last touch: the issuer may reuse the scratch from its ->done */
	if (st == STEP_DONE)
		drv_req_complete(qr->req, qr->err);
}

void qcow2_read(struct drv_image *img, struct drv_req *req)
{
	struct qcow2_req *qr = req->priv;

	qcow2_req_init(qr, img, req, read_run);
	read_run(qr);
}
