/* SPDX-License-Identifier: MIT */
/*
 * A synchronous facade over the asynchronous driver interface, for tools
 * (tap-img) and tests: one event loop, one aio context and one queue bound
 * to an open image chain.  Each call submits one request through
 * drv_submit() and runs the loop until it completes, so the tools exercise
 * exactly the code path tapdisk serves guests with.
 *
 * A drv_sync is used from one thread.  It must be freed before the image
 * it was made for is closed.
 */
#ifndef QTAP_DRV_SYNC_H
#define QTAP_DRV_SYNC_H

#include <stdint.h>

#include "aio.h"
#include "driver.h"

struct drv_sync;

/*
 * drv_sync_new - set up queue 0 of the chain rooted at @img (borrowed; must
 * outlive the drv_sync) on a new loop and aio context made with @opts (NULL:
 * defaults).  Returns 0 and *out, or -errno (logged).
 */
int drv_sync_new(struct drv_image *img, const struct aio_ctx_opts *opts, struct drv_sync **out);

/* drv_sync_free - tear down the queue, context and loop.  NULL is a no-op. */
void drv_sync_free(struct drv_sync *s);

/*
 * drv_sync_req - submit @req (op, flags, offset, len, iov filled in by the
 * caller; q, done, opaque and priv are set here) and wait for it.  Returns
 * the completion status, 0 or -errno.  DRV_OP_BLOCK_STATUS fills req->status.
 */
int drv_sync_req(struct drv_sync *s, struct drv_req *req);

/* drv_sync_rw - DRV_OP_READ or DRV_OP_WRITE of @len bytes at @buf (any
 * alignment).  0 or -errno. */
int drv_sync_rw(struct drv_sync *s, enum drv_op op, uint64_t offset, void *buf, uint64_t len);

/* drv_sync_flush - make every completed write durable.  0 or -errno. */
int drv_sync_flush(struct drv_sync *s);

/* drv_sync_discard - deallocate a range.  0 or -errno. */
int drv_sync_discard(struct drv_sync *s, uint64_t offset, uint64_t len);

/* drv_sync_write_zeroes - zero a range; @flags are DRV_REQ_*.  0 or -errno. */
int drv_sync_write_zeroes(struct drv_sync *s, uint64_t offset, uint64_t len, unsigned flags);

/*
 * drv_sync_block_status - the status of the extent starting at @offset, at
 * most @len bytes long, in *@out.  0 or -errno.
 */
int drv_sync_block_status(struct drv_sync *s, uint64_t offset, uint64_t len,
			  struct drv_status *out);

/*
 * drv_sync_block_status_at - drv_sync_block_status() asked of @img, one
 * image of the chain @s was made for (the top or a backing image), for
 * tools that walk the chain themselves (tap-img map and compare).
 */
int drv_sync_block_status_at(struct drv_sync *s, struct drv_image *img, uint64_t offset,
			     uint64_t len, struct drv_status *out);

/*
 * drv_sync_queue - the queue, for callers that drive the image
 * asynchronously themselves (tap-img bench): they submit with drv_submit()
 * on it and run q->loop.  Borrowed; valid until drv_sync_free().
 */
struct drv_queue *drv_sync_queue(struct drv_sync *s);

#endif
