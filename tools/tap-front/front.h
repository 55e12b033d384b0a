/* SPDX-License-Identifier: MIT */
/*
 * tap-front's frontend: a blkif frontend in a process, over the local
 * transport (lib/ringshm.h).  It plays the guest: it owns the "guest
 * memory" (a sealed memfd), grants the backend its ring and data frames
 * through the emulated grant table, writes requests in the ABI it was
 * asked to speak and checks every response as current Linux blkfront does
 * (known id, matching operation, no more responses than requests).
 *
 * Layout of the memfd, per queue: the ring's pages, deliberately scattered
 * (every other frame, in reverse order) so that the backend must map them
 * contiguously from their references; then per request slot its data
 * frames, contiguous so that the slot's buffer is one stretch of memory,
 * and its indirect frames.  Grant references are not frame numbers either
 * (they run backwards), so nothing can work by accident.  Data frames are
 * granted read-only for WRITE requests, read-write for READ requests,
 * as blkfront does.
 *
 * Threads: a tf_queue is driven by one thread at a time.
 */
#ifndef QTAP_TAP_FRONT_FRONT_H
#define QTAP_TAP_FRONT_FRONT_H

#include <stdbool.h>
#include <stdint.h>

#include "ring-abi.h"

struct tf_dev;
struct tf_queue;

struct tf_conf {
	enum ring_abi abi;
	unsigned order; /* 2^order ring pages per queue */
	unsigned nr_queues;
	unsigned depth;		/* request slots per queue: at most the ring's size */
	uint64_t max_bytes;	/* the largest request, a multiple of 512 */
	unsigned indirect_segs; /* 0: direct requests only; else every data request is
				 * INDIRECT with at most this many segments */
	bool sub_page;		/* slot buffers start at sector (slot % 8) of their first
				 * frame, so segments have first_sect > 0 */
};

/* One request slot.  buf is the slot's data, in granted frames. */
struct tf_io {
	struct tf_queue *q;
	unsigned slot;
	uint8_t op; /* RING_OP_* */
	uint64_t offset;
	uint64_t len;
	uint8_t *buf;
	int16_t status; /* the response's */
	uint8_t rsp_op; /* the operation the response must carry (set by submit) */
	uint8_t got_op; /* the operation the response carried */
	bool loose;	/* hostile: the request's first bytes were rewritten after
			 * publication, so the response's id bytes 0-1 and its
			 * operation may be anything: the caller judges */
	int16_t expect; /* hostile: the status the response must carry */
	bool busy;
	uint16_t gen;
	uint64_t start_ns;
	void (*done)(struct tf_io *io);
	void *opaque;
};

/* tf_dev_new - the memfd, the grant table, every queue's ring and slots.  0 or -errno. */
int tf_dev_new(const struct tf_conf *conf, struct tf_dev **out);
void tf_dev_free(struct tf_dev *dev);

/* What the attach message carries. */
int tf_dev_memfd(const struct tf_dev *dev);
struct tf_queue *tf_dev_queue(struct tf_dev *dev, unsigned index);
unsigned tf_dev_nr_queues(const struct tf_dev *dev);
int tf_queue_kick_fd(const struct tf_queue *q);
int tf_queue_irq_fd(const struct tf_queue *q);
const uint32_t *tf_queue_ring_refs(const struct tf_queue *q);

unsigned tf_queue_index(const struct tf_queue *q);
enum ring_abi tf_queue_abi(const struct tf_queue *q);
unsigned tf_queue_nr_ents(const struct tf_queue *q);
struct tf_io *tf_queue_io(struct tf_queue *q, unsigned slot);

/*
 * tf_queue_submit - write the request @io describes (op, offset, len; data
 * already in io->buf for writes) into the next ring slot.  Not visible to
 * the backend until tf_queue_push().  0, -EBUSY (slot in use, ring full)
 * or -EINVAL (does not fit the slot or the conf).
 */
int tf_queue_submit(struct tf_queue *q, struct tf_io *io);

/*
 * tf_queue_submit_raw - write @req (a request in the queue's ABI, whatever
 * its content) into the next ring slot with @io's id; the response must
 * carry @io->rsp_op, which the caller sets.  For hostile runs.  0 or -EBUSY.
 */
int tf_queue_submit_raw(struct tf_queue *q, struct tf_io *io, const void *req);

/* tf_queue_slot_ptr - the shared slot a request just submitted went into. */
void *tf_queue_last_slot(struct tf_queue *q);

/* tf_queue_push - publish what was submitted; notify the backend if it asked. */
void tf_queue_push(struct tf_queue *q);

/*
 * tf_queue_wait - wait up to @timeout_ms (-1: forever) for responses and
 * handle them all (io->done for each).  Returns how many, or -ETIMEDOUT, or
 * -EPROTO when the backend broke the protocol (reported on stderr).
 */
int tf_queue_wait(struct tf_queue *q, int timeout_ms);

/* tf_queue_inflight - requests submitted and not answered. */
unsigned tf_queue_inflight(const struct tf_queue *q);

/* tf_queue_kick - notify the backend whether it asked or not (event storms). */
void tf_queue_kick(struct tf_queue *q);

/* tf_queue_sring - the shared ring itself, for hostile runs. */
struct ring_sring *tf_queue_sring(struct tf_queue *q);

/* tf_io_data_gref - the grant reference of @io's data frame @page, for hostile runs. */
uint32_t tf_io_data_gref(const struct tf_io *io, unsigned page);

#endif
