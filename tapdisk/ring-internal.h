/* SPDX-License-Identifier: MIT */
/*
 * Inside the ring engine: ring.c (the ring, its events and responses) and
 * ring-io.c (a request's life: data pages, copies, the vbd) share these.
 */
#ifndef QTAP_TAPDISK_RING_INTERNAL_H
#define QTAP_TAPDISK_RING_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "evloop.h"
#include "tapdisk/ring-req.h"
#include "tapdisk/ring.h"

struct td_ring_req {
	struct td_request treq; /* treq.opaque is this */
	struct td_ring *ring;
	struct td_ring_req *next; /* free list or the wait queue */
	uint64_t id;
	uint8_t rsp_op;
	uint16_t nr_segs;
	struct ring_seg *segs; /* ring->segs + index * max_segs */
	struct iovec *iov;     /* ring->iovs + index * max_segs */
	unsigned iovcnt;       /* adjacent buffers merge into one iovec */
	uint8_t **pages;       /* ring->page_ptrs + index * max_segs: segment i's page */
	bool mapped;	       /* iov is on the frontend's frames: no pages, no copies */
};

struct td_ring {
	struct td_transport *tp;
	struct td_queue *q;
	struct evloop *loop;
	struct ring_sring *sring;
	enum ring_abi abi;
	size_t entry_bytes;
	uint32_t nr_ents;
	struct td_ring_limits lim;
	uint64_t disk_sectors; /* td_ring_set_size's; atomic, read into lim per pass */
	unsigned max_segs;     /* per request: max(11, indirect) */
	/* the transport's ->map, or NULL: always copy (none, or --ring-copy) */
	int (*map)(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest);

	/* private indices: the only ones we trust */
	uint32_t req_cons;
	uint32_t rsp_prod_pvt;
	uint32_t rsp_pushed;

	/* requests: one per slot */
	struct td_ring_req *reqs;
	struct td_ring_req *free_reqs;
	struct td_ring_req *wait_head, *wait_tail; /* waiting for data buffers, in ring order */
	unsigned inflight;			   /* taken and not answered */
	struct ring_seg *segs;
	struct iovec *iovs;
	uint8_t **page_ptrs;

	/* data pages */
	uint8_t *pool;
	unsigned pool_pages;
	void **free_pages;
	unsigned nr_free_pages;

	/* scratch for one request at a time */
	struct td_copy_seg *copies;
	uint8_t *indirect; /* copied indirect descriptor pages */

	/* events */
	struct evloop_watch watch;
	struct evloop_hook push_hook;
	struct evloop_poller poller; /* the loop's adaptive polling looks at req_prod */
	struct evloop_timer storm_timer;
	struct evloop_call stop_call;
	unsigned spurious_run;
	bool watching, running, stopping, halted;
	bool polled; /* polling took requests since the last kick: not spurious */
	void (*stop_done)(void *opaque);
	void *stop_opaque;

	struct td_ring_stats stats; /* written on the queue thread only */
};

/* Single-writer counters that the control thread may read. */
#define RING_STAT_INC(r, field)                                                                    \
	__atomic_store_n(&(r)->stats.field, (r)->stats.field + 1, __ATOMIC_RELAXED)

/* ring.c */
void td_ring_respond(struct td_ring *r, uint64_t id, uint8_t op, int err);
void td_ring_consume(struct td_ring *r);
void td_ring_idle_check(struct td_ring *r);

/* ring-io.c */
int td_ring_io_init(struct td_ring *r, unsigned pool_pages);
void td_ring_io_free(struct td_ring *r);
void td_ring_io_take(struct td_ring *r, const struct td_ring_msg *m);

#endif
