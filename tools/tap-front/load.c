// SPDX-License-Identifier: MIT
/*
 * tap-front's load (load.h): the phases of a worker's run and the life of
 * its requests.  A completion records its latency and reissues its slot at
 * once, so the queue stays as full as --qd says until the phase is over.
 *
 * Phases: MAIN (the timed load), FLUSH (with --flush: one FLUSH_DISKCACHE,
 * which must succeed), READBACK (with --verify: every position written in
 * MAIN is read and compared, untimed).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "evloop.h"
#include "load.h"

#define GEN_BUSY 0x80u
#define GEN_MASK 0x7fu
#define MAX_REPORTS 10
#define WAIT_MS 30000 /* no response for this long: the backend is stuck */

enum { PHASE_MAIN, PHASE_FLUSH, PHASE_READBACK, PHASE_DONE };

static void slot_done(struct tf_io *io);

static uint64_t pos_offset(const struct tf_worker *w, uint64_t i)
{
	return w->conf->offset + (w->index + i * w->conf->nr_queues) * w->conf->bs;
}

static bool report_allowed(struct tf_worker *w)
{
	if (w->reports++ < MAX_REPORTS)
		return true;
	if (w->reports == MAX_REPORTS + 1)
		fprintf(stderr, "tap-front: queue %u: further failures are counted, not shown\n",
			w->index);
	return false;
}

/* ---- the main phase --------------------------------------------------------- */

static bool main_open(const struct tf_worker *w)
{
	if (w->stop || (w->quota && w->issued >= w->quota))
		return false;
	return !w->deadline_ns || evloop_now_ns() < w->deadline_ns;
}

static uint64_t pick_pos(struct tf_worker *w)
{
	uint64_t i = w->conf->random ? bench_rand(&w->rng) % w->nr_pos : w->next_seq++ % w->nr_pos;

	/* Terminates: fewer positions are busy than this worker owns (checked at set-up). */
	while (w->gens && (w->gens[i] & GEN_BUSY))
		i = (i + 1) % w->nr_pos;
	return i;
}

static uint8_t pick_op(struct tf_worker *w)
{
	switch (w->conf->mix) {
	case BENCH_READ:
		return RING_OP_READ;
	case BENCH_WRITE:
		return RING_OP_WRITE;
	case BENCH_MIXED:
		break;
	}
	return bench_rand(&w->rng) & 1 ? RING_OP_READ : RING_OP_WRITE;
}

/* The worker's gens are indexed by its own positions. */
static void prepare_main(struct tf_worker *w, struct tf_io *io, uint64_t *pos, unsigned *gen)
{
	io->op = pick_op(w);
	*pos = pick_pos(w);
	io->offset = pos_offset(w, *pos);
	io->len = w->conf->bs;
	*gen = 0;
	if (!w->gens)
		return;
	if (io->op == RING_OP_WRITE) {
		*gen = (w->gens[*pos] & GEN_MASK) % GEN_MASK + 1;
		bench_fill(io->buf, io->len, w->conf->seed, io->offset, *gen);
	} else {
		*gen = w->gens[*pos] & GEN_MASK;
	}
	w->gens[*pos] |= GEN_BUSY;
}

/* ---- issuing ------------------------------------------------------------------ */

static struct tf_slot_state *slot_state(struct tf_worker *w, const struct tf_io *io)
{
	return &w->slots[io->slot];
}

static bool prepare_readback(struct tf_worker *w, struct tf_io *io)
{
	struct tf_slot_state *s = slot_state(w, io);

	while (w->cursor < w->nr_pos && w->gens[w->cursor] == 0)
		w->cursor++;
	if (w->cursor == w->nr_pos)
		return false;
	s->pos = w->cursor++;
	s->gen = w->gens[s->pos];
	io->op = RING_OP_READ;
	io->offset = pos_offset(w, s->pos);
	io->len = w->conf->bs;
	return true;
}

static bool prepare(struct tf_worker *w, struct tf_io *io)
{
	struct tf_slot_state *s = slot_state(w, io);

	switch (w->phase) {
	case PHASE_MAIN:
		if (!main_open(w))
			return false;
		w->issued++;
		prepare_main(w, io, &s->pos, &s->gen);
		return true;
	case PHASE_FLUSH:
		if (w->issued++ > 0 || w->stop)
			return false;
		io->op = RING_OP_FLUSH_DISKCACHE;
		io->offset = io->len = 0;
		s->gen = 0;
		return true;
	case PHASE_READBACK:
		return !w->stop && prepare_readback(w, io);
	}
	return false;
}

/* Issue the next request on @io's slot, or leave it idle. */
static void slot_issue(struct tf_worker *w, struct tf_io *io)
{
	int err;

	if (w->phase == PHASE_MAIN && w->hostile && main_open(w)) {
		int turn = tf_hostile_turn(w, io);

		if (turn < 0)
			return;
		if (turn > 0) {
			w->issued++;
			w->inflight++;
			return;
		}
	}
	if (!prepare(w, io))
		return;
	io->done = slot_done;
	io->opaque = w;
	io->start_ns = evloop_now_ns();
	err = w->eng->submit(w->ctx, io);
	if (err) {
		fprintf(stderr, "tap-front: queue %u: cannot submit: %s\n", w->index, err_str(err));
		w->stop = true;
		return;
	}
	w->inflight++;
}

void tf_worker_issue(struct tf_worker *w, struct tf_io *io)
{
	w->inflight--;
	slot_issue(w, io);
}

void tf_worker_resume(struct tf_worker *w)
{
	for (unsigned i = 0; i < w->conf->depth; i++) {
		struct tf_io *io = w->eng->io(w->ctx, i);

		if (!io->busy)
			slot_issue(w, io);
	}
}

/* ---- completion ----------------------------------------------------------------- */

/* The first byte of @buf that is not @byte, or @len. */
static uint64_t check_fill(const uint8_t *buf, uint64_t len, uint8_t byte)
{
	for (uint64_t i = 0; i < len; i++)
		if (buf[i] != byte)
			return i;
	return len;
}

static void verify_read(struct tf_worker *w, const struct tf_io *io, unsigned gen)
{
	uint64_t bad;
	uint8_t want;

	if (w->phase == PHASE_READBACK)
		w->st.verified++;
	if (gen == 0) { /* never written in this run: --fill says what is there */
		want = (uint8_t)w->conf->fill;
		bad = check_fill(io->buf, io->len, want);
	} else {
		bad = bench_check(io->buf, io->len, w->conf->seed, io->offset, gen, &want);
	}
	if (bad == io->len)
		return;
	w->st.verify_errors++;
	if (report_allowed(w))
		fprintf(stderr,
			"tap-front: verify: wrong data at offset %" PRIu64 ": expected 0x%02x, got "
			"0x%02x (block at offset %" PRIu64 ", write %u)\n",
			io->offset + bad, want, io->buf[bad], io->offset, gen);
}

static void account(struct tf_worker *w, const struct tf_io *io, uint64_t now)
{
	w->st.ops++;
	w->st.bytes += io->len;
	if (io->op == RING_OP_WRITE)
		w->st.writes++;
	else
		w->st.reads++;
	bench_hist_add(&w->st.hist, now - io->start_ns);
	w->st.elapsed_ns = now - w->start_ns;
}

static void note_failure(struct tf_worker *w, const struct tf_io *io)
{
	static const char *const ops[] = { "read", "write", "barrier", "flush" };

	w->st.io_errors++;
	w->stop = true;
	if (report_allowed(w))
		fprintf(stderr,
			"tap-front: queue %u: %s at offset %" PRIu64 " failed (status %d)\n",
			w->index, io->op < 4 ? ops[io->op] : "request", io->offset, io->status);
}

static void slot_done(struct tf_io *io)
{
	struct tf_worker *w = io->opaque;
	struct tf_slot_state *s = slot_state(w, io);
	uint64_t now = evloop_now_ns();
	bool ok = io->status == RING_RSP_OKAY;

	w->inflight--;
	if (!ok)
		note_failure(w, io);
	else if (w->phase == PHASE_MAIN)
		account(w, io, now);
	else if (w->phase == PHASE_FLUSH)
		w->st.flushed = true;
	if (ok && io->op == RING_OP_READ && (s->gen || (w->gens && w->conf->fill >= 0)))
		verify_read(w, io, s->gen);
	if (w->gens && w->phase == PHASE_MAIN) {
		/* A failed write leaves the block's contents unknown. */
		if (io->op == RING_OP_WRITE)
			w->gens[s->pos] = ok ? (uint8_t)s->gen : 0;
		else
			w->gens[s->pos] &= GEN_MASK;
	}
	slot_issue(w, io);
}

/* ---- the run -------------------------------------------------------------------- */

int tf_worker_init(struct tf_worker *w)
{
	const struct tf_load_conf *c = w->conf;
	uint64_t all = c->span / c->bs;

	w->nr_pos = all / c->nr_queues + (w->index < all % c->nr_queues);
	w->quota = c->ops ? c->ops / c->nr_queues + (w->index < c->ops % c->nr_queues) : 0;
	w->rng = c->seed ^ ((uint64_t)w->index * 0x9e3779b97f4a7c15ull);
	if (c->verify && w->nr_pos <= c->depth) {
		fprintf(stderr,
			"tap-front: --verify: queue %u owns %" PRIu64 " blocks of %" PRIu64
			" bytes; it needs more than --qd (%u)\n",
			w->index, w->nr_pos, c->bs, c->depth);
		return -EINVAL;
	}
	w->slots = calloc(c->depth, sizeof(*w->slots));
	w->gens = c->verify ? calloc(w->nr_pos, 1) : NULL;
	if (!w->slots || (c->verify && !w->gens)) {
		fprintf(stderr, "tap-front: out of memory for the state of %" PRIu64 " blocks\n",
			w->nr_pos);
		return -ENOMEM;
	}
	return 0;
}

void tf_worker_fini(struct tf_worker *w)
{
	free(w->slots);
	free(w->gens);
	w->slots = NULL;
	w->gens = NULL;
}

/* Run one phase: fill every slot, then keep them busy until none is. */
static int run_phase(struct tf_worker *w, int phase)
{
	w->phase = phase;
	w->issued = 0;
	for (unsigned i = 0; i < w->conf->depth; i++) {
		struct tf_io *io = w->eng->io(w->ctx, i);

		if (!io) {
			fprintf(stderr, "tap-front: queue %u has fewer than %u slots\n", w->index,
				w->conf->depth);
			return -EINVAL;
		}
		slot_issue(w, io);
	}
	while (w->inflight) {
		int n;

		w->eng->push(w->ctx);
		n = w->eng->wait(w->ctx, WAIT_MS);
		if (n == -ETIMEDOUT) {
			fprintf(stderr,
				"tap-front: queue %u: no response in %d s with %u requests in "
				"flight\n",
				w->index, WAIT_MS / 1000, w->inflight);
			return n;
		}
		if (n < 0) {
			w->st.protocol_error = true;
			return n;
		}
	}
	return 0;
}

int tf_worker_run(struct tf_worker *w)
{
	int err;

	w->start_ns = evloop_now_ns();
	if (w->conf->time_ns)
		w->deadline_ns = w->start_ns + w->conf->time_ns;
	err = run_phase(w, PHASE_MAIN);
	if (!err && w->conf->flush && !w->stop)
		err = run_phase(w, PHASE_FLUSH);
	if (!err && w->gens && !w->stop)
		err = run_phase(w, PHASE_READBACK);
	w->phase = PHASE_DONE;
	return err;
}
