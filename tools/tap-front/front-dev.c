// SPDX-License-Identifier: MIT
/*
 * tap-front's frontend: the "guest memory" and its grants (front.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "front-internal.h"
#include "ring-idx.h"

/* ---- frames and grants ---------------------------------------------------- */

/* References run backwards from the last frame: never equal to the frame. */
uint32_t tf_gref(const struct tf_dev *dev, uint32_t frame)
{
	return dev->layout.total_pages - frame;
}

void tf_grant(struct tf_dev *dev, uint32_t frame, bool readonly)
{
	ringshm_grant(dev->table, tf_gref(dev, frame), frame, readonly);
}

uint8_t *tf_frame_ptr(const struct tf_dev *dev, uint32_t frame)
{
	return dev->base + (size_t)frame * RINGSHM_PAGE_BYTES;
}

/* ---- set-up --------------------------------------------------------------- */

static int check_conf(const struct tf_conf *c, unsigned *data_pages, unsigned *ind_pages)
{
	uint64_t span = c->max_bytes + (c->sub_page ? 7 * RING_SECTOR_BYTES : 0);
	uint64_t segs = div_round_up_u64(span, RING_PAGE_BYTES);
	uint32_t nr_ents =
		ring_nr_ents((size_t)RING_PAGE_BYTES << c->order, ring_entry_bytes(c->abi));

	if (c->order > RING_ORDER_MAX || c->nr_queues == 0 || c->depth == 0 || c->depth > nr_ents ||
	    c->max_bytes == 0 || c->max_bytes % RING_SECTOR_BYTES)
		return -EINVAL;
	if (c->indirect_segs ? segs > c->indirect_segs : segs > RING_SEGS_DIRECT)
		return -E2BIG;
	*data_pages = (unsigned)segs;
	*ind_pages = c->indirect_segs
			     ? (unsigned)div_round_up_u64(segs, RING_SEGS_PER_INDIRECT_PAGE)
			     : 0;
	return 0;
}

static int open_events(struct tf_queue *q)
{
	q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	q->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return q->kick_fd < 0 || q->irq_fd < 0 ? neg_errno() : 0;
}

/* The ring: every other frame of a block of 2 * pages, last page first. */
static int setup_ring(struct tf_dev *dev, struct tf_queue *q, uint32_t *next_frame)
{
	unsigned pages = 1u << dev->conf.order;
	uint32_t frames[RING_PAGES_MAX];
	void *va;
	int err;

	for (unsigned i = 0; i < pages; i++) {
		frames[i] = *next_frame + 2 * (pages - 1 - i) + 1;
		q->ring_refs[i] = tf_gref(dev, frames[i]);
		tf_grant(dev, frames[i], false);
	}
	*next_frame += 2 * pages;
	err = ringshm_map_frames(dev->fd, frames, pages, &va);
	if (err)
		return err;
	q->sring = va;
	q->nr_ents = ring_nr_ents((size_t)pages * RING_PAGE_BYTES, dev->entry_bytes);
	/* SHARED_RING_INIT */
	memset(q->sring, 0, RING_SRING_HDR_BYTES);
	q->sring->req_event = 1;
	q->sring->rsp_event = 1;
	return 0;
}

static void setup_slots(struct tf_dev *dev, struct tf_queue *q, uint32_t *next_frame)
{
	for (unsigned s = 0; s < dev->conf.depth; s++) {
		struct tf_io *io = &q->ios[s];
		struct tf_slot *sl = &q->slots[s];
		unsigned shift = dev->conf.sub_page ? s % RING_SECTORS_PER_PAGE : 0;

		sl->data_frame = *next_frame;
		*next_frame += dev->data_pages;
		sl->ind_frame = *next_frame;
		*next_frame += dev->ind_pages;
		sl->shift_bytes = shift * RING_SECTOR_BYTES;
		for (unsigned p = 0; p < dev->ind_pages; p++)
			tf_grant(dev, sl->ind_frame + p, true);
		io->q = q;
		io->slot = s;
		io->buf = tf_frame_ptr(dev, sl->data_frame) + sl->shift_bytes;
	}
}

static int setup_queue(struct tf_dev *dev, unsigned index, uint32_t *next_frame)
{
	struct tf_queue *q = &dev->queues[index];
	int err;

	q->dev = dev;
	q->index = index;
	q->ios = calloc(dev->conf.depth, sizeof(*q->ios));
	q->slots = calloc(dev->conf.depth, sizeof(*q->slots));
	if (!q->ios || !q->slots)
		return -ENOMEM;
	err = open_events(q);
	if (!err)
		err = setup_ring(dev, q, next_frame);
	if (!err)
		setup_slots(dev, q, next_frame);
	return err;
}

static int map_memfd(struct tf_dev *dev)
{
	void *p;

	dev->bytes = (size_t)dev->layout.total_pages * RINGSHM_PAGE_BYTES;
	p = mmap(NULL, dev->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, dev->fd, 0);
	if (p == MAP_FAILED)
		return neg_errno();
	dev->base = p;
	dev->table = (struct ringshm_gnt *)(dev->base +
					    (size_t)dev->layout.gnt_first * RINGSHM_PAGE_BYTES);
	return 0;
}

static int dev_init(struct tf_dev *dev)
{
	unsigned per_queue =
		(2u << dev->conf.order) + dev->conf.depth * (dev->data_pages + dev->ind_pages);
	uint64_t frames = (uint64_t)per_queue * dev->conf.nr_queues;
	uint32_t next;
	int err;

	if (frames >= RINGSHM_MAX_PAGES)
		return -E2BIG;
	err = ringshm_create((uint32_t)frames + 1, (uint32_t)frames, &dev->fd, &dev->layout);
	if (!err)
		err = map_memfd(dev);
	next = dev->layout.frame_first;
	for (unsigned q = 0; !err && q < dev->conf.nr_queues; q++)
		err = setup_queue(dev, q, &next);
	return err;
}

int tf_dev_new(const struct tf_conf *conf, struct tf_dev **out)
{
	struct tf_dev *dev;
	unsigned data_pages, ind_pages;
	int err = check_conf(conf, &data_pages, &ind_pages);

	if (err)
		return err;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->conf = *conf;
	dev->fd = -1;
	dev->entry_bytes = ring_entry_bytes(conf->abi);
	dev->data_pages = data_pages;
	dev->ind_pages = ind_pages;
	dev->queues = calloc(conf->nr_queues, sizeof(*dev->queues));
	for (unsigned q = 0; dev->queues && q < conf->nr_queues; q++)
		dev->queues[q].kick_fd = dev->queues[q].irq_fd = -1;
	err = dev->queues ? dev_init(dev) : -ENOMEM;
	if (err) {
		tf_dev_free(dev);
		return err;
	}
	*out = dev;
	return 0;
}

void tf_dev_free(struct tf_dev *dev)
{
	if (!dev)
		return;
	for (unsigned i = 0; dev->queues && i < dev->conf.nr_queues; i++) {
		struct tf_queue *q = &dev->queues[i];

		if (q->sring)
			munmap(q->sring, (size_t)RING_PAGE_BYTES << dev->conf.order);
		if (q->kick_fd >= 0)
			close(q->kick_fd);
		if (q->irq_fd >= 0)
			close(q->irq_fd);
		free(q->ios);
		free(q->slots);
	}
	free(dev->queues);
	if (dev->base)
		munmap(dev->base, dev->bytes);
	if (dev->fd >= 0)
		close(dev->fd);
	free(dev);
}

/* ---- accessors ------------------------------------------------------------ */

int tf_dev_memfd(const struct tf_dev *dev)
{
	return dev->fd;
}

struct tf_queue *tf_dev_queue(struct tf_dev *dev, unsigned index)
{
	return index < dev->conf.nr_queues ? &dev->queues[index] : NULL;
}

unsigned tf_dev_nr_queues(const struct tf_dev *dev)
{
	return dev->conf.nr_queues;
}

int tf_queue_kick_fd(const struct tf_queue *q)
{
	return q->kick_fd;
}

int tf_queue_irq_fd(const struct tf_queue *q)
{
	return q->irq_fd;
}

const uint32_t *tf_queue_ring_refs(const struct tf_queue *q)
{
	return q->ring_refs;
}

unsigned tf_queue_index(const struct tf_queue *q)
{
	return q->index;
}

enum ring_abi tf_queue_abi(const struct tf_queue *q)
{
	return q->dev->conf.abi;
}

unsigned tf_queue_nr_ents(const struct tf_queue *q)
{
	return q->nr_ents;
}

struct tf_io *tf_queue_io(struct tf_queue *q, unsigned slot)
{
	return slot < q->dev->conf.depth ? &q->ios[slot] : NULL;
}

struct ring_sring *tf_queue_sring(struct tf_queue *q)
{
	return q->sring;
}

uint32_t tf_io_data_gref(const struct tf_io *io, unsigned page)
{
	return tf_gref(io->q->dev, io->q->slots[io->slot].data_frame + page);
}
