// SPDX-License-Identifier: MIT
/*
 * The blkif ring engine: the ring, its events and its responses (ring.h).
 * A request's own life is in ring-io.c.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "log.h"
#include "ring-idx.h"
#include "tapdisk/ring-internal.h"

/* Event storms: this many notifications in a row that bring nothing ... */
#define STORM_KICKS 32
/* ... and the ring stops listening for this long, then looks again. */
#define STORM_PAUSE_NS 1000000ull

static void *slot(struct td_ring *r, uint32_t idx)
{
	return (uint8_t *)r->sring + ring_slot_offset(idx, r->nr_ents, r->entry_bytes);
}

/* ---- responses ------------------------------------------------------------ */

/*
 * Field by field into the slot, padding included: nothing of ours but the
 * answer reaches the guest (XSA-216).
 */
void td_ring_respond(struct td_ring *r, uint64_t id, uint8_t op, int err)
{
	int16_t status = td_ring_status(err);

	if (ring_abi_is_32(r->abi)) {
		struct ring_rsp32 *rsp = slot(r, r->rsp_prod_pvt);

		rsp->id = id;
		rsp->operation = op;
		rsp->pad1 = 0;
		rsp->status = status;
	} else {
		struct ring_rsp64 *rsp = slot(r, r->rsp_prod_pvt);

		rsp->id = id;
		rsp->operation = op;
		rsp->pad1 = 0;
		rsp->status = status;
		rsp->pad2 = 0;
	}
	r->rsp_prod_pvt++;
	RING_STAT_INC(r, requests);
	if (status != RING_RSP_OKAY)
		RING_STAT_INC(r, errors);
}

/* Publish the responses written since the last push, once per loop iteration. */
static void push_responses(struct evloop_hook *h)
{
	struct td_ring *r = h->opaque;
	int err;

	if (r->rsp_pushed == r->rsp_prod_pvt)
		return;
	if (ring_publish(&r->sring->rsp_prod, r->rsp_pushed, r->rsp_prod_pvt,
			 &r->sring->rsp_event)) {
		err = r->tp->ops->notify(r->tp);
		if (err)
			log_err_ratelimited("ring: notifying the frontend failed: %s",
					    strerror(-err));
		RING_STAT_INC(r, notifies);
	}
	r->rsp_pushed = r->rsp_prod_pvt;
}

/* ---- taking requests ------------------------------------------------------ */

static void halt(struct td_ring *r, uint32_t req_prod)
{
	log_err("ring: the frontend claims %u requests outstanding on a ring of %u "
		"(req_prod %u, answered up to %u): bogus producer index; ring halted",
		req_prod - r->rsp_prod_pvt, r->nr_ents, req_prod, r->rsp_prod_pvt);
	r->halted = true;
	/* Nothing will be taken again: stop hearing about it. */
	if (r->watching)
		evloop_watch_del(&r->watch);
	r->watching = false;
	__atomic_store_n(&r->stats.halted, true, __ATOMIC_RELAXED);
}

/* Take every request the frontend published that a slot is free for. */
static void take_all(struct td_ring *r, uint32_t req_prod)
{
	while (r->req_cons != req_prod &&
	       !ring_back_cons_overflow(r->req_cons, r->rsp_prod_pvt, r->nr_ents)) {
		struct td_ring_msg m;

		td_ring_fetch(slot(r, r->req_cons), r->abi, &m);
		r->req_cons++;
		assert(r->free_reqs);
		td_ring_io_take(r, &m);
	}
}

/*
 * Look at the ring and take what is there.  While requests are in flight,
 * req_event is left alone and each completion looks again (see ring.h);
 * once idle, re-arm it and look one last time, which closes the race with
 * a frontend that published just before.
 */
void td_ring_consume(struct td_ring *r)
{
	for (;;) {
		uint32_t req_prod;

		if (r->halted || r->stopping)
			return;
		r->lim.disk_sectors = __atomic_load_n(&r->disk_sectors, __ATOMIC_RELAXED);
		req_prod = ring_peer_index(&r->sring->req_prod);
		if (ring_back_prod_overflow(req_prod, r->rsp_prod_pvt, r->nr_ents)) {
			halt(r, req_prod);
			return;
		}
		take_all(r, req_prod);
		if (r->inflight)
			return;
		if (!ring_rearm(&r->sring->req_event, &r->sring->req_prod, r->req_cons))
			return;
	}
}

static void finish_stop(struct td_ring *r)
{
	push_responses(&r->push_hook);
	if (r->watching)
		evloop_watch_del(&r->watch);
	r->watching = false;
	evloop_timer_cancel(&r->storm_timer);
	evloop_hook_del(r->loop, &r->push_hook);
	evloop_poller_del(r->loop, &r->poller);
	r->running = false;
	r->stop_done(r->stop_opaque);
}

/* A request completed: look at the ring again, or finish stopping. */
void td_ring_idle_check(struct td_ring *r)
{
	if (r->stopping) {
		if (r->inflight == 0)
			finish_stop(r);
		return;
	}
	td_ring_consume(r);
}

/* ---- events --------------------------------------------------------------- */

static void storm_over(struct evloop_timer *t)
{
	struct td_ring *r = t->opaque;
	int err;

	if (r->halted || r->stopping)
		return; /* nothing more to hear */
	err = evloop_watch_add(r->loop, &r->watch);
	if (err)
		log_err("ring: cannot watch the event channel again: %s", strerror(-err));
	r->watching = err == 0;
	r->spurious_run = 0;
	if (r->watching)
		r->tp->ops->event_unmask(r->tp);
	td_ring_consume(r);
}

static struct log_ratelimit storm_log;

/* A run of notifications that brought nothing: stop listening for a while. */
static void note_spurious(struct td_ring *r)
{
	RING_STAT_INC(r, spurious);
	if (++r->spurious_run < STORM_KICKS)
		return;
	RING_STAT_INC(r, storms);
	log_msg_ratelimited(&storm_log, LOG_LEVEL_WARN,
			    "ring: %u notifications in a row brought no request: not listening "
			    "for %llu us",
			    STORM_KICKS, STORM_PAUSE_NS / 1000);
	evloop_watch_del(&r->watch);
	r->watching = false;
	evloop_timer_arm(r->loop, &r->storm_timer, STORM_PAUSE_NS, 0);
}

static void on_event(struct evloop_watch *w, uint32_t events)
{
	struct td_ring *r = w->opaque;
	uint32_t cons = r->req_cons;
	int err = r->tp->ops->event_ack(r->tp);

	if (err == -EAGAIN)
		return;
	if (err) {
		log_err_ratelimited("ring: reading the event channel failed: %s", strerror(-err));
		return;
	}
	RING_STAT_INC(r, kicks);
	if (r->stopping)
		return; /* finish_stop removes the watch once the last answer is out */
	td_ring_consume(r);
	if (r->req_cons == cons && !r->halted && !r->polled)
		note_spurious(r);
	else
		r->spurious_run = 0;
	r->polled = false;
	if (r->watching)
		r->tp->ops->event_unmask(r->tp);
}

/* Adaptive polling: requests published while the loop spins are taken without a kick. */
static bool on_poll(struct evloop_poller *p)
{
	struct td_ring *r = p->opaque;
	uint32_t cons = r->req_cons;

	if (!r->watching || r->stopping || r->halted ||
	    ring_peer_index(&r->sring->req_prod) == cons)
		return false;
	td_ring_consume(r);
	if (r->req_cons == cons)
		return false;
	r->polled = true;
	return true;
}

/* ---- life ----------------------------------------------------------------- */

static int do_start(void *opaque)
{
	struct td_ring *r = opaque;
	int err = evloop_watch_add(r->loop, &r->watch);

	if (err) {
		log_err("ring: cannot watch the event channel: %s", strerror(-err));
		return err;
	}
	evloop_hook_add(r->loop, &r->push_hook);
	evloop_poller_add(r->loop, &r->poller);
	r->watching = true;
	r->running = true;
	td_ring_consume(r);
	return 0;
}

static void do_stop(struct evloop_call *c)
{
	struct td_ring *r = c->opaque;

	r->stopping = true;
	if (!r->running) {
		r->stop_done(r->stop_opaque);
		return;
	}
	if (r->inflight == 0)
		finish_stop(r);
}

int td_ring_start(struct td_ring *r)
{
	return td_queue_run(r->q, do_start, r);
}

void td_ring_stop(struct td_ring *r, void (*done)(void *opaque), void *opaque)
{
	r->stop_done = done;
	r->stop_opaque = opaque;
	evloop_post(r->loop, &r->stop_call);
}

static unsigned default_pool_pages(const struct td_ring *r)
{
	unsigned pages = MAX(r->nr_ents * RING_SEGS_DIRECT, 4 * r->max_segs);

	return MAX(MIN(pages, TD_RING_MAX_POOL_PAGES), r->max_segs);
}

static int ring_init(struct td_ring *r, struct td_vbd *vbd, const struct td_ring_opts *opts)
{
	struct td_vbd_info info;

	vbd_get_info(vbd, &info);
	r->abi = opts->abi;
	r->entry_bytes = ring_entry_bytes(opts->abi);
	r->nr_ents = ring_nr_ents((size_t)r->tp->nr_pages * RING_PAGE_BYTES, r->entry_bytes);
	r->sring = r->tp->sring;
	r->lim = (struct td_ring_limits){
		.disk_sectors = info.size_bytes / RING_SECTOR_BYTES,
		.readonly = info.readonly,
		.can_discard = info.can_discard,
		.max_indirect_segs = MIN(opts->max_indirect_segs, TD_RING_MAX_INDIRECT_SEGS),
	};
	r->disk_sectors = r->lim.disk_sectors;
	r->map = opts->copy ? NULL : r->tp->ops->map;
	r->max_segs = MAX(RING_SEGS_DIRECT, r->lim.max_indirect_segs);
	if (r->tp->max_segs < MAX(r->max_segs, RING_INDIRECT_PAGES_MAX)) {
		log_err("ring: the transport copies at most %u segments at once", r->tp->max_segs);
		return -EINVAL;
	}
	/* Attach where the frontend is: a restarted backend finds a live ring. */
	r->rsp_prod_pvt = r->rsp_pushed = r->req_cons = ring_peer_index(&r->sring->rsp_prod);
	return td_ring_io_init(r, opts->pool_pages ? opts->pool_pages : default_pool_pages(r));
}

int td_ring_new(struct td_vbd *vbd, struct td_queue *q, struct td_transport *t,
		const struct td_ring_opts *opts, struct td_ring **out)
{
	struct td_ring *r = calloc(1, sizeof(*r));
	int err;

	if (!r) {
		td_transport_free(t);
		return -ENOMEM;
	}
	r->tp = t;
	r->q = q;
	r->loop = td_queue_loop(q);
	err = ring_init(r, vbd, opts);
	if (err) {
		td_ring_free(r);
		return err;
	}
	r->watch = (struct evloop_watch){
		.fd = t->event_fd,
		.events = t->event_epoll ? t->event_epoll : EPOLLIN,
		.fn = on_event,
		.opaque = r,
	};
	r->push_hook = (struct evloop_hook){ .fn = push_responses, .opaque = r };
	r->poller = (struct evloop_poller){ .fn = on_poll, .opaque = r };
	r->stop_call = (struct evloop_call){ .fn = do_stop, .opaque = r };
	evloop_timer_init(&r->storm_timer, storm_over, r);
	*out = r;
	return 0;
}

void td_ring_free(struct td_ring *r)
{
	if (!r)
		return;
	assert(!r->running);
	td_ring_io_free(r);
	td_transport_free(r->tp);
	free(r);
}

void td_ring_set_size(struct td_ring *r, uint64_t size_bytes)
{
	__atomic_store_n(&r->disk_sectors, size_bytes / RING_SECTOR_BYTES, __ATOMIC_RELAXED);
}

void td_ring_get_stats(const struct td_ring *r, struct td_ring_stats *out)
{
	out->requests = __atomic_load_n(&r->stats.requests, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&r->stats.errors, __ATOMIC_RELAXED);
	out->bad_requests = __atomic_load_n(&r->stats.bad_requests, __ATOMIC_RELAXED);
	out->kicks = __atomic_load_n(&r->stats.kicks, __ATOMIC_RELAXED);
	out->spurious = __atomic_load_n(&r->stats.spurious, __ATOMIC_RELAXED);
	out->storms = __atomic_load_n(&r->stats.storms, __ATOMIC_RELAXED);
	out->notifies = __atomic_load_n(&r->stats.notifies, __ATOMIC_RELAXED);
	out->halted = __atomic_load_n(&r->stats.halted, __ATOMIC_RELAXED);
	out->inflight = __atomic_load_n(&r->stats.inflight, __ATOMIC_RELAXED);
	out->mapped = __atomic_load_n(&r->stats.mapped, __ATOMIC_RELAXED);
	out->copied = __atomic_load_n(&r->stats.copied, __ATOMIC_RELAXED);
}

unsigned td_ring_nr_ents(const struct td_ring *r)
{
	return r->nr_ents;
}

int td_ring_why(char *why, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	log_err("%s", why);
	return err;
}

void td_transport_free(struct td_transport *t)
{
	if (t)
		t->ops->free(t);
}
