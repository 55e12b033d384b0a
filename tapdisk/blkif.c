// SPDX-License-Identifier: MIT
/*
 * A blkif interface: the rings of one frontend (blkif.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "tapdisk/blkif.h"
#include "tapdisk/ring-transport.h"

struct td_blkif {
	struct td_vbd *vbd;
	unsigned nr_queues;
	struct td_ring *rings[TD_BLKIF_MAX_QUEUES];
	bool started[TD_BLKIF_MAX_QUEUES];
	struct td_local_mem *mem;
	struct td_resize_notifier resize;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned stopped;
	unsigned nr_stopping; /* rings asked to stop */
	bool orphaned;	      /* td_blkif_abandon: the last ring to stop frees it all */
};

void td_blkif_offer(struct td_vbd *vbd, struct td_blkif_offer *out)
{
	struct td_vbd_info info;

	vbd_get_info(vbd, &info);
	*out = (struct td_blkif_offer){
		.sectors = info.size_bytes / RING_SECTOR_BYTES,
		.sector_size = info.block_bytes,
		.phys_sector_size = MAX(info.phys_block_bytes, info.block_bytes),
		.info = info.readonly ? RING_INFO_READONLY : 0,
		.discard = info.can_discard,
		.discard_granularity = info.discard_bytes,
		.max_ring_order = RING_ORDER_MAX,
		.max_queues = MIN(info.nr_queues, TD_BLKIF_MAX_QUEUES),
		.max_indirect_segs = TD_RING_MAX_INDIRECT_SEGS,
	};
}

void td_blkif_conf_init(struct td_blkif_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->abi = RING_ABI_X86_32;
	c->memfd = -1;
	for (unsigned i = 0; i < TD_BLKIF_MAX_QUEUES; i++)
		c->kick_fds[i] = c->irq_fds[i] = -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void td_blkif_conf_close(struct td_blkif_conf *c)
{
	close_fd(&c->memfd);
	for (unsigned i = 0; i < TD_BLKIF_MAX_QUEUES; i++) {
		close_fd(&c->kick_fds[i]);
		close_fd(&c->irq_fds[i]);
	}
}

static int check_conf(struct td_vbd *vbd, const struct td_blkif_conf *c, char *why, size_t len)
{
	struct td_blkif_offer offer;

	td_blkif_offer(vbd, &offer);
	if (c->order > offer.max_ring_order)
		return td_ring_why(
			why, len, -EINVAL,
			"ring: attach refused: ring-page-order %u is over the maximum %u", c->order,
			offer.max_ring_order);
	if (c->nr_queues == 0 || c->nr_queues > offer.max_queues)
		return td_ring_why(
			why, len, -EINVAL,
			"ring: attach refused: %u queues asked for; this tapdisk serves 1 to %u",
			c->nr_queues, offer.max_queues);
	if (c->abi != RING_ABI_NATIVE && c->abi != RING_ABI_X86_32 && c->abi != RING_ABI_X86_64)
		return td_ring_why(why, len, -EINVAL, "ring: attach refused: unknown protocol");
	if (c->kind == TD_BLKIF_LOCAL && c->memfd < 0)
		return td_ring_why(
			why, len, -EINVAL,
			"ring: attach refused: the local transport needs the ring memfd");
	for (unsigned q = 0; c->kind == TD_BLKIF_LOCAL && q < c->nr_queues; q++)
		if (c->kick_fds[q] < 0 || c->irq_fds[q] < 0)
			return td_ring_why(why, len, -EINVAL,
					   "ring: attach refused: queue %u has no event fds", q);
	return 0;
}

/* ---- rings ---------------------------------------------------------------- */

static int make_transport(struct td_blkif *b, struct td_blkif_conf *c, unsigned q,
			  struct td_transport **t, char *why, size_t len)
{
	unsigned pages = 1u << c->order;
	unsigned max_segs = MAX(TD_RING_MAX_INDIRECT_SEGS, RING_INDIRECT_PAGES_MAX);

	if (c->kind == TD_BLKIF_XEN)
		return td_transport_xen_new(c->domid, c->refs[q], pages, c->ports[q], max_segs, t,
					    why, len);
	return td_transport_local_new(b->mem, c->refs[q], pages, c->kick_fds[q], c->irq_fds[q],
				      max_segs, t, why, len);
}

static int add_ring(struct td_blkif *b, struct td_blkif_conf *c, unsigned q, char *why, size_t len)
{
	const struct td_ring_opts opts = { .abi = c->abi,
					   .max_indirect_segs = TD_RING_MAX_INDIRECT_SEGS,
					   .copy = c->copy };
	struct td_transport *t;
	int err = make_transport(b, c, q, &t, why, len);

	c->kick_fds[q] = c->irq_fds[q] = -1; /* the transport has them now */
	if (err)
		return err;
	err = td_ring_new(b->vbd, vbd_queue(b->vbd, q), t, &opts, &b->rings[q]);
	if (err)
		return td_ring_why(why, len, err, "ring: queue %u: cannot set up its ring: %s", q,
				   err_str(err));
	b->nr_queues = q + 1;
	err = td_ring_start(b->rings[q]);
	b->started[q] = err == 0;
	if (err)
		td_ring_why(why, len, err, "ring: queue %u: cannot start: %s", q, err_str(err));
	return err;
}

static void on_resize(struct td_resize_notifier *n, uint64_t old_bytes, uint64_t new_bytes)
{
	struct td_blkif *b = n->opaque;

	for (unsigned q = 0; q < b->nr_queues; q++)
		td_ring_set_size(b->rings[q], new_bytes);
}

static void blkif_free(struct td_blkif *b)
{
	for (unsigned q = 0; q < b->nr_queues; q++)
		td_ring_free(b->rings[q]);
	td_local_mem_free(b->mem);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* On a queue thread: a ring answered its last request and let go. */
static void ring_stopped(void *opaque)
{
	struct td_blkif *b = opaque;
	bool last;

	pthread_mutex_lock(&b->lock);
	b->stopped++;
	last = b->orphaned && b->stopped == b->nr_stopping;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
	if (last)
		blkif_free(b); /* nobody waits: see td_blkif_abandon */
}

int td_blkif_connect(struct td_vbd *vbd, struct td_blkif_conf *c, struct td_blkif **out, char *why,
		     size_t why_len)
{
	struct td_blkif *b;
	int err = check_conf(vbd, c, why, why_len);

	if (err)
		goto fail_conf;
	b = calloc(1, sizeof(*b));
	if (!b) {
		err = -ENOMEM;
		goto fail_conf;
	}
	b->vbd = vbd;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	if (c->kind == TD_BLKIF_LOCAL) {
		err = td_local_mem_open(c->memfd, &b->mem, why, why_len);
		c->memfd = -1;
	}
	for (unsigned q = 0; !err && q < c->nr_queues; q++)
		err = add_ring(b, c, q, why, why_len);
	if (err) {
		td_blkif_disconnect(b);
		goto fail_conf;
	}
	b->resize = (struct td_resize_notifier){ .fn = on_resize, .opaque = b };
	vbd_resize_notifier_add(vbd, &b->resize);
	*out = b;
	return 0;

fail_conf:
	td_blkif_conf_close(c);
	return err;
}

/*
 * Stop taking requests on every started ring; true when none was started.
 * With @orphan, the last ring to stop frees @b on its queue thread, maybe
 * before td_ring_stop returns: so the rings to stop are listed first, and
 * @b is not touched once the first is asked.
 */
static bool stop_rings(struct td_blkif *b, bool orphan)
{
	struct td_ring *stop[TD_BLKIF_MAX_QUEUES];
	unsigned started = 0;

	if (b->resize.fn)
		vbd_resize_notifier_del(b->vbd, &b->resize);
	for (unsigned q = 0; q < b->nr_queues; q++)
		if (b->started[q])
			stop[started++] = b->rings[q];
	pthread_mutex_lock(&b->lock);
	b->nr_stopping = started;
	b->orphaned = orphan;
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < started; i++)
		td_ring_stop(stop[i], ring_stopped, b);
	return started == 0;
}

void td_blkif_disconnect(struct td_blkif *b)
{
	if (!b)
		return;
	stop_rings(b, false);
	pthread_mutex_lock(&b->lock);
	while (b->stopped < b->nr_stopping)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	blkif_free(b);
}

void td_blkif_abandon(struct td_blkif *b)
{
	if (b && stop_rings(b, true))
		blkif_free(b);
}

unsigned td_blkif_nr_queues(const struct td_blkif *b)
{
	return b->nr_queues;
}

struct td_ring *td_blkif_ring(struct td_blkif *b, unsigned index)
{
	return index < b->nr_queues ? b->rings[index] : NULL;
}
