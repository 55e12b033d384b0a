/* SPDX-License-Identifier: MIT */
/*
 * The blkif ring engine: one shared ring of one frontend, served on one
 * queue thread of the vbd.  A frontend with several queues (multi-queue)
 * has one td_ring per queue; blkif.h groups them.
 *
 * What it does, per blkif-notes §1.7 and §4.1:
 *  - reads req_prod once per pass and halts the ring for good when the
 *    frontend claims more requests than the ring holds (logged; the other
 *    rings and the requests already taken are unaffected);
 *  - copies each request out of its slot once and checks the copy
 *    (ring-req.h); a bad request gets its error response at once;
 *  - runs each request's I/O on the frontend's frames where the transport
 *    can map them (ring-transport.h ->map), else copies write data in (and
 *    read data out) through the transport into data pages preallocated
 *    per ring, and hands the vbd one td_request (also preallocated: one
 *    per ring slot) per blkif request;
 *  - writes exactly one response per request, field by field in its slot
 *    (no padding from our stack reaches the guest: XSA-216), and publishes
 *    them in one batch per event-loop iteration, notifying the frontend
 *    only when its rsp_event asks for it;
 *  - holds notifications off while requests are in flight: it does not
 *    re-arm req_event then, and looks at the ring again on each
 *    completion instead, so a busy frontend need not notify at all;
 *  - survives event storms: after a run of notifications that brought no
 *    request it stops listening for a millisecond (XSA-332's concern).
 *
 * Threads: td_ring_new/td_ring_start/td_ring_free on the control thread;
 * everything else happens on the queue thread, reached through
 * td_ring_start (td_queue_run) and td_ring_stop (posted).
 */
#ifndef QTAP_TAPDISK_RING_H
#define QTAP_TAPDISK_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "ring-abi.h"
#include "tapdisk/ring-transport.h"
#include "tapdisk/vbd.h"

struct td_ring;

/* The largest indirect request offered: 1 MiB, as Linux blkback. */
#define TD_RING_MAX_INDIRECT_SEGS 256
#define TD_RING_MAX_POOL_PAGES 4096 /* 16 MiB of data pages per ring at most */

struct td_ring_opts {
	enum ring_abi abi;
	unsigned max_indirect_segs; /* offered; 0: no INDIRECT */
	unsigned pool_pages;	    /* data pages; 0: sized from the ring */
	bool copy;		    /* copy data even where the transport can map frames */
};

struct td_ring_stats {
	uint64_t requests;     /* answered */
	uint64_t errors;       /* answered with an error status */
	uint64_t bad_requests; /* refused on their own merits (before any I/O) */
	uint64_t kicks;	       /* notifications received */
	uint64_t spurious;     /* notifications that brought nothing */
	uint64_t storms;       /* times the ring stopped listening for a while */
	uint64_t notifies;     /* notifications sent */
	uint64_t inflight;     /* taken, not yet answered */
	uint64_t mapped;       /* started with I/O on the frontend's frames */
	uint64_t copied;       /* started with data pages, copied to or from the frontend */
	bool halted;	       /* producer index overrun: nothing more is taken */
};

/*
 * td_ring_new - a ring served on @q of @vbd over @t (ownership passes, also
 * on failure): checks the transport's ring size, allocates every request,
 * data page and scratch array.  Does not start it.  0 or -errno, logged.
 */
int td_ring_new(struct td_vbd *vbd, struct td_queue *q, struct td_transport *t,
		const struct td_ring_opts *opts, struct td_ring **out);

/*
 * td_ring_start - control thread: start serving on the queue thread (runs
 * there and waits).  0, or -errno when the event fd cannot be watched.
 */
int td_ring_start(struct td_ring *r);

/*
 * td_ring_stop - from any thread: stop taking requests; once none is in
 * flight and every response is published, @done(@opaque) runs on the queue
 * thread, and the ring may then be freed from any thread.
 */
void td_ring_stop(struct td_ring *r, void (*done)(void *opaque), void *opaque);

/* td_ring_free - a stopped (or never started) ring.  NULL is a no-op. */
void td_ring_free(struct td_ring *r);

/* td_ring_set_size - the disk was resized: check requests against this.  Any thread. */
void td_ring_set_size(struct td_ring *r, uint64_t size_bytes);

/* td_ring_get_stats - a snapshot; any thread. */
void td_ring_get_stats(const struct td_ring *r, struct td_ring_stats *out);

/* td_ring_nr_ents - the ring's slots. */
unsigned td_ring_nr_ents(const struct td_ring *r);

#endif
