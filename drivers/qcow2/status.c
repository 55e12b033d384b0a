// SPDX-License-Identifier: MIT
/*
 * Block status and flush.
 *
 * Block status reports what this image holds, as QEMU's
 * qcow2_co_block_status does: data clusters are DATA with their host
 * offset, compressed clusters DATA without one, zero clusters ZERO (with
 * the host offset when a cluster is preallocated), all of them ALLOCATED.
 * An unallocated range is the backing image's business (the chain helper
 * asks it); with no backing file it reads as zeros and says so.
 *
 * Flush makes the image file durable.  Nothing is cached dirty yet, and
 * backing images are never written.
 */
#include <inttypes.h>

#include "errors.h"
#include "log.h"
#include "qcow2/internal.h"

static unsigned ext_status(const struct drv_image *img, const struct qcow2_extent *e)
{
	switch (e->type) {
	case QCOW2_EXT_DATA:
		return DRV_BS_DATA | DRV_BS_ALLOCATED | DRV_BS_OFFSET_VALID;
	case QCOW2_EXT_COMPRESSED:
		return DRV_BS_DATA | DRV_BS_ALLOCATED;
	case QCOW2_EXT_ZERO:
		return DRV_BS_ZERO | DRV_BS_ALLOCATED;
	case QCOW2_EXT_ZERO_ALLOC:
		return DRV_BS_ZERO | DRV_BS_ALLOCATED | DRV_BS_OFFSET_VALID;
	case QCOW2_EXT_UNALLOC:
		break;
	}
	/* an unallocated subcluster of an allocated cluster still has its host offset (QEMU) */
	return (img->backing ? 0 : DRV_BS_ZERO) | (e->host_offset ? DRV_BS_OFFSET_VALID : 0);
}

/* The run of extents from the first that share its status. */
static void status_fill(const struct drv_image *img, const struct qcow2_map *m,
			struct drv_status *st)
{
	const struct qcow2_extent *e = &m->ext[0];
	unsigned i;

	*st = (struct drv_status){
		.flags = ext_status(img, e),
		.len = e->len,
		.host_offset = e->host_offset,
	};
	for (i = 1; i < m->nr; i++) {
		e = &m->ext[i];
		if (ext_status(img, e) != st->flags)
			break;
		if ((st->flags & DRV_BS_OFFSET_VALID) &&
		    e->host_offset != st->host_offset + st->len)
			break;
		st->len += e->len;
	}
	if (!(st->flags & DRV_BS_OFFSET_VALID))
		st->host_offset = 0;
}

static void status_run(struct qcow2_req *qr)
{
	struct drv_req *req = qr->req;
	int err;

	if (!qr->mapping) {
		qcow2_map_reset(&qr->map, qr->pos, qr->end);
		qr->mapping = true;
	}
	err = qcow2_map_fill(qr->img, &qr->map, req->q);
	if (err == -EINPROGRESS)
		return;
	if (!err)
		status_fill(qr->img, &qr->map, &req->status);
	drv_req_complete(req, err);
}

void qcow2_block_status(struct drv_image *img, struct drv_req *req)
{
	struct qcow2_req *qr = req->priv;

	qcow2_req_init(qr, img, req, status_run);
	status_run(qr);
}

static void flush_done(struct aio_req *aio, int err)
{
	struct qcow2_req *qr = aio->opaque;

	if (err)
		log_err_ratelimited("qcow2 %s: flush: %s", qr->img->path, err_str(err));
	drv_req_complete(qr->req, err);
}

void qcow2_flush(struct drv_image *img, struct drv_req *req)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_req *qr = req->priv;

	if (qi->meta) {
		qcow2_flush_meta(img, req);
		return;
	}
	qr->req = req;
	qr->img = img;
	qr->xio[0].aio = (struct aio_req){
		.file = qi->file,
		.op = AIO_OP_FSYNC,
		.done = flush_done,
		.opaque = qr,
	};
	aio_submit(req->q->aio, &qr->xio[0].aio);
}
