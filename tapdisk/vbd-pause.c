/* SPDX-License-Identifier: MIT */
/*
 * Pause and resume (vbd.h): the storage manager's primitive for changing a
 * served image underneath its guest — `qemu-img snapshot -c`, `resize`,
 * `commit` — as blktap's tap-ctl pause/unpause is.
 *
 * Pause: every queue stops starting requests (what arrives waits in its
 * FIFO) and reports when what it had started has completed; one flush then
 * makes data and metadata durable; the queues forget the chain and it is
 * closed, which drops every cached table and closes the files (and with
 * them the image locks).  If the flush fails, the vbd keeps running and
 * the error is returned: closing would throw away metadata that is not on
 * disk.
 *
 * Resume: the chain is opened again from disk (the same spec, or a new
 * one), the queues take it, the resize notifiers hear about a new size,
 * and only then do the queues dispatch what waited, so no request runs
 * against a size its frontend has not been told about.  A chain with
 * another logical block size is refused (the frontends' requests are
 * aligned to the old one), as blktap refuses a changed geometry.
 */
#include <errno.h>
#include <inttypes.h>

#include "errors.h"
#include "log.h"
#include "vbd-internal.h"

static void stop_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	td_queue_stop(q, w);
}

static void start_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	td_queue_start(q);
	td_wait_done(w, 0);
}

static void flush_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	td_queue_flush(q, w);
}

int vbd_pause(struct td_vbd *vbd)
{
	struct drv_image *top;
	int err;

	pthread_mutex_lock(&vbd->ctl_lock);
	top = vbd->top;
	if (!top) {
		pthread_mutex_unlock(&vbd->ctl_lock);
		return -EALREADY;
	}
	vbd_call_queues(vbd, NULL, stop_call, NULL);
	err = vbd_call_queues(vbd, &vbd->queues[0], flush_call, NULL);
	if (err) {
		log_err("pause %s: flush failed, staying unpaused: %s", top->path, err_str(err));
		vbd_call_queues(vbd, NULL, start_call, NULL);
		pthread_mutex_unlock(&vbd->ctl_lock);
		return err;
	}
	vbd_set_chain(vbd, NULL, NULL);
	drv_image_close(top);
	pthread_mutex_unlock(&vbd->ctl_lock);
	log_dbg(LOG_F_VBD, "paused");
	return 0;
}

static void notify_resize(struct td_vbd *vbd, uint64_t old_size, uint64_t new_size)
{
	struct td_resize_notifier *n, *next;

	/* add/del run on this (the control) thread only: no lock needed to walk */
	for (n = vbd->notifiers; n; n = next) {
		next = n->next;
		n->fn(n, old_size, new_size);
	}
}

/* Open the chain for a resume and check it fits the frontends' view. */
static int resume_open(struct td_vbd *vbd, const char *spec, const struct td_vbd_info *old,
		       struct drv_image **top)
{
	int err = vbd_chain_attach(vbd, spec, top);

	if (err) {
		log_err("resume %s: cannot open the chain: %s", spec, err_str(err));
		return err;
	}
	if ((*top)->block_bytes != old->block_bytes) {
		log_err("resume %s: its block size is %" PRIu32 " bytes, the disk's was %" PRIu32
			"; staying paused",
			spec, (*top)->block_bytes, old->block_bytes);
		drv_image_close(*top);
		*top = NULL;
		return -EMEDIUMTYPE;
	}
	return 0;
}

int vbd_resume(struct td_vbd *vbd, const char *new_spec)
{
	struct drv_image *top = NULL;
	struct td_vbd_info old, now;
	const char *spec;
	int err;

	pthread_mutex_lock(&vbd->ctl_lock);
	vbd_get_info(vbd, &old);
	if (vbd->top) {
		pthread_mutex_unlock(&vbd->ctl_lock);
		return -EALREADY;
	}
	spec = new_spec ? new_spec : old.spec;
	err = resume_open(vbd, spec, &old, &top);
	if (!err) {
		err = vbd_set_chain(vbd, top, new_spec);
		if (err)
			drv_image_close(top);
	}
	if (err) {
		pthread_mutex_unlock(&vbd->ctl_lock);
		return err;
	}
	vbd_get_info(vbd, &now);
	if (now.size_bytes != old.size_bytes) {
		log_info("resume %s: size changed from %" PRIu64 " to %" PRIu64 " bytes", spec,
			 old.size_bytes, now.size_bytes);
		notify_resize(vbd, old.size_bytes, now.size_bytes);
	}
	vbd_call_queues(vbd, NULL, start_call, NULL);
	pthread_mutex_unlock(&vbd->ctl_lock);
	log_dbg(LOG_F_VBD, "resumed %s", spec);
	return 0;
}
