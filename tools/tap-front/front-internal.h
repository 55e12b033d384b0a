/* SPDX-License-Identifier: MIT */
/*
 * Inside tap-front's frontend: front-dev.c (memory, grants, set-up) and
 * front-ring.c (requests and responses) share these.
 */
#ifndef QTAP_TAP_FRONT_FRONT_INTERNAL_H
#define QTAP_TAP_FRONT_FRONT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "front.h"
#include "ringshm.h"

struct tf_slot {
	uint32_t data_frame; /* the first of dev->data_pages */
	uint32_t ind_frame;  /* the first of dev->ind_pages */
	uint32_t shift_bytes;
};

struct tf_queue {
	struct tf_dev *dev;
	unsigned index;
	struct ring_sring *sring;
	uint32_t nr_ents;
	uint32_t req_prod_pvt;
	uint32_t req_published;
	uint32_t rsp_cons;
	unsigned inflight;
	int kick_fd;
	int irq_fd;
	uint32_t ring_refs[RING_PAGES_MAX];
	struct tf_io *ios;
	struct tf_slot *slots;
	void *last_slot;
};

struct tf_dev {
	struct tf_conf conf;
	int fd;
	uint8_t *base;
	size_t bytes;
	struct ringshm_layout layout;
	struct ringshm_gnt *table;
	size_t entry_bytes;
	unsigned data_pages; /* per slot */
	unsigned ind_pages;  /* per slot */
	struct tf_queue *queues;
};

uint32_t tf_gref(const struct tf_dev *dev, uint32_t frame);
void tf_grant(struct tf_dev *dev, uint32_t frame, bool readonly);
uint8_t *tf_frame_ptr(const struct tf_dev *dev, uint32_t frame);

#endif
