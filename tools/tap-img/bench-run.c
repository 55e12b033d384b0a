/* SPDX-License-Identifier: MIT */
/*
 * The engine of tap-img bench: @depth request slots, each with its drv_req,
 * driver scratch and an aligned buffer, all allocated before the clock
 * starts.  A completion records its latency and immediately reissues its
 * slot, so the queue stays full until the count or the time is used up.
 *
 * The image is divided into positions (offset + i * stride); --verify keeps
 * one byte per position: the generation last written there (0: unknown)
 * and a busy bit.  A busy position is never picked for a second request,
 * because two overlapping requests in flight have no defined result and
 * would make the verifier report errors that are not there.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "evloop.h"
#include "sync.h"
#include "tap-img.h"

#define GEN_BUSY 0x80u
#define GEN_MASK 0x7fu
#define BUF_ALIGN 4096
#define MAX_REPORTS 10 /* failures printed before the rest are only counted */

struct bench_state;

struct bench_slot {
	struct drv_req req; /* req.opaque points back to the slot */
	struct iovec iov;
	struct bench_state *st;
	uint64_t pos;
	uint64_t start_ns;
	unsigned gen; /* written, or expected by a read (0: not checked) */
};

struct bench_state {
	const struct bench_cfg *cfg;
	struct bench_result *res;
	struct drv_image *img;
	struct drv_queue *q;
	struct bench_slot *slots;
	unsigned char *priv; /* depth * priv_bytes of driver scratch */
	uint8_t *gens;	     /* --verify: per position */
	uint64_t stride;
	uint64_t nr_pos;
	uint64_t issued;
	uint64_t next_seq;
	uint64_t cursor; /* read-back phase: next position to look at */
	uint64_t rng;
	uint64_t start_ns;
	uint64_t deadline_ns;
	unsigned inflight;
	unsigned reports;
	bool readback;
	bool stop;
};

static void slot_done(struct drv_req *req, int err);

/* ---- set-up ------------------------------------------------------------- */

/* Positions and their spacing; checks --verify's preconditions. */
static int state_layout(struct bench_state *st)
{
	const struct bench_cfg *cfg = st->cfg;
	uint64_t region = st->img->size_bytes - cfg->offset; /* offset + bs <= size */

	st->stride = cfg->random ? cfg->bs : cfg->step;
	st->nr_pos = cfg->random ? region / cfg->bs : (region - cfg->bs) / st->stride + 1;
	if (!cfg->verify)
		return 0;
	if (st->stride < cfg->bs) {
		img_err("bench", "--verify needs a step size of at least the buffer size");
		return -EINVAL;
	}
	if (st->nr_pos <= cfg->depth || st->nr_pos > UINT32_MAX) {
		img_err("bench",
			"--verify: the image holds %" PRIu64 " blocks of %" PRIu64
			" bytes; need more than the depth (%u) and at most %u",
			st->nr_pos, cfg->bs, cfg->depth, UINT32_MAX);
		return -EINVAL;
	}
	st->gens = calloc(st->nr_pos, 1);
	if (!st->gens) {
		img_err("bench", "out of memory for --verify state");
		return -ENOMEM;
	}
	return 0;
}

static void state_free(struct bench_state *st)
{
	unsigned i;

	for (i = 0; st->slots && i < st->cfg->depth; i++)
		buf_free(st->slots[i].iov.iov_base);
	free(st->slots);
	free(st->priv);
	free(st->gens);
}

static int state_init(struct bench_state *st)
{
	const struct bench_cfg *cfg = st->cfg;
	size_t priv_bytes = drv_chain_req_priv_bytes(st->img);
	unsigned i;
	int err = state_layout(st);

	if (err)
		return err;
	st->rng = cfg->seed;
	st->slots = calloc(cfg->depth, sizeof(*st->slots));
	st->priv = calloc(cfg->depth, priv_bytes ?: 1);
	if (!st->slots || !st->priv)
		goto err_nomem;
	for (i = 0; i < cfg->depth; i++) {
		struct bench_slot *s = &st->slots[i];

		s->iov.iov_base = buf_alloc(cfg->bs, BUF_ALIGN);
		if (!s->iov.iov_base)
			goto err_nomem;
		s->iov.iov_len = cfg->bs;
		memset(s->iov.iov_base, cfg->fill_byte, cfg->bs);
		s->st = st;
		s->req = (struct drv_req){
			.iov = &s->iov,
			.iovcnt = 1,
			.len = cfg->bs,
			.q = st->q,
			.done = slot_done,
			.opaque = s,
			.priv = st->priv + i * priv_bytes,
		};
	}
	return 0;

err_nomem:
	img_err("bench", "out of memory for %u buffers of %" PRIu64 " bytes", cfg->depth, cfg->bs);
	return -ENOMEM;
}

/* ---- issuing ------------------------------------------------------------ */

static bool main_phase_open(struct bench_state *st)
{
	const struct bench_cfg *cfg = st->cfg;

	if (st->stop || (cfg->count && st->issued >= cfg->count))
		return false;
	return !st->deadline_ns || evloop_now_ns() < st->deadline_ns;
}

/* The next position for the main phase, skipping busy ones under --verify. */
static uint64_t pick_pos(struct bench_state *st)
{
	uint64_t pos =
		st->cfg->random ? bench_rand(&st->rng) % st->nr_pos : st->next_seq++ % st->nr_pos;

	/* Terminates: fewer positions are busy than there are (checked at set-up). */
	while (st->gens && (st->gens[pos] & GEN_BUSY))
		pos = (pos + 1) % st->nr_pos;
	return pos;
}

static enum drv_op pick_op(struct bench_state *st)
{
	switch (st->cfg->mix) {
	case BENCH_READ:
		return DRV_OP_READ;
	case BENCH_WRITE:
		return DRV_OP_WRITE;
	case BENCH_MIXED:
		break;
	}
	return bench_rand(&st->rng) % 100 < st->cfg->read_pct ? DRV_OP_READ : DRV_OP_WRITE;
}

/* Prepare @s for its next main-phase request: op, position, data. */
static void prepare_main(struct bench_state *st, struct bench_slot *s)
{
	s->req.op = pick_op(st);
	s->pos = pick_pos(st);
	s->gen = 0;
	if (!st->gens)
		return;
	if (s->req.op == DRV_OP_WRITE) {
		s->gen = (st->gens[s->pos] & GEN_MASK) % GEN_MASK + 1;
		bench_fill(s->iov.iov_base, st->cfg->bs, st->cfg->seed,
			   st->cfg->offset + s->pos * st->stride, s->gen);
	} else {
		s->gen = st->gens[s->pos] & GEN_MASK;
	}
	st->gens[s->pos] |= GEN_BUSY;
}

/* Prepare @s to read back the next written position; false when none is left. */
static bool prepare_readback(struct bench_state *st, struct bench_slot *s)
{
	while (st->cursor < st->nr_pos && st->gens[st->cursor] == 0)
		st->cursor++;
	if (st->cursor == st->nr_pos)
		return false;
	s->req.op = DRV_OP_READ;
	s->pos = st->cursor++;
	s->gen = st->gens[s->pos];
	return true;
}

/* Issue the next request on @s, or leave it idle when the phase is over. */
static void slot_issue(struct bench_state *st, struct bench_slot *s)
{
	if (st->readback) {
		if (st->stop || !prepare_readback(st, s))
			return;
	} else {
		if (!main_phase_open(st))
			return;
		prepare_main(st, s);
		st->issued++;
	}
	s->req.offset = st->cfg->offset + s->pos * st->stride;
	s->start_ns = evloop_now_ns();
	st->inflight++;
	drv_submit(st->img, &s->req);
}

/* ---- completion --------------------------------------------------------- */

/* May the next failure be printed?  Says so once when the answer turns to no. */
static bool report_allowed(struct bench_state *st)
{
	if (st->reports++ < MAX_REPORTS)
		return true;
	if (st->reports == MAX_REPORTS + 1)
		img_err("bench", "further failures are counted, not shown");
	return false;
}

static void report_io_error(struct bench_state *st, const struct bench_slot *s, int err)
{
	st->res->io_errors++;
	st->stop = true;
	if (report_allowed(st))
		img_err("bench", "%s at offset %" PRIu64 " failed: %s",
			s->req.op == DRV_OP_WRITE ? "write" : "read", s->req.offset, err_str(err));
}

static void verify_read(struct bench_state *st, const struct bench_slot *s)
{
	const struct bench_cfg *cfg = st->cfg;
	const uint8_t *data = s->iov.iov_base;
	uint64_t bad;
	uint8_t want;

	if (st->readback)
		st->res->verified_blocks++;
	bad = bench_check(data, cfg->bs, cfg->seed, s->req.offset, s->gen, &want);
	if (bad == cfg->bs)
		return;
	st->res->verify_errors++;
	if (report_allowed(st))
		img_err("bench",
			"verify: wrong data at offset %" PRIu64 ": expected 0x%02x, got 0x%02x "
			"(block at offset %" PRIu64 ", write %u)",
			s->req.offset + bad, want, data[bad], s->req.offset, s->gen);
}

/* Statistics of a successful main-phase request. */
static void account(struct bench_state *st, const struct bench_slot *s, uint64_t now)
{
	struct bench_result *res = st->res;

	res->ops++;
	res->bytes += st->cfg->bs;
	if (s->req.op == DRV_OP_WRITE)
		res->writes++;
	else
		res->reads++;
	bench_hist_add(&res->hist, now - s->start_ns);
	res->elapsed_ns = now - st->start_ns;
}

static void slot_done(struct drv_req *req, int err)
{
	struct bench_slot *s = req->opaque;
	struct bench_state *st = s->st;
	uint64_t now = evloop_now_ns();

	st->inflight--;
	if (err)
		report_io_error(st, s, err);
	else if (!st->readback)
		account(st, s, now);
	if (!err && req->op == DRV_OP_READ && s->gen)
		verify_read(st, s);
	if (st->gens && !st->readback) {
		/* A failed write leaves the block's contents unknown. */
		if (req->op == DRV_OP_WRITE)
			st->gens[s->pos] = err ? 0 : s->gen;
		else
			st->gens[s->pos] &= GEN_MASK;
	}
	slot_issue(st, s);
}

/* ---- the run ------------------------------------------------------------ */

static void run_phase(struct bench_state *st)
{
	unsigned i;
	int err;

	for (i = 0; i < st->cfg->depth; i++)
		slot_issue(st, &st->slots[i]);
	while (st->inflight) {
		err = evloop_run_once(st->q->loop, -1);
		if (err < 0 && err != -EINTR) {
			/* Requests are in flight in our buffers: we cannot unwind. */
			img_err("bench", "event loop failed: %s", err_str(err));
			abort();
		}
	}
}

/* The timed load, then (--verify) the untimed read-back of what it wrote. */
static void run_phases(struct bench_state *st)
{
	st->start_ns = evloop_now_ns();
	if (st->cfg->time_ns)
		st->deadline_ns = st->start_ns + st->cfg->time_ns;
	run_phase(st);
	if (!st->gens || st->stop)
		return;
	st->readback = true;
	run_phase(st);
}

int bench_run(const struct bench_cfg *cfg, struct drv_image *img, struct bench_result *res)
{
	struct bench_state st = { .cfg = cfg, .res = res, .img = img };
	struct aio_ctx_opts aio = cfg->aio;
	struct drv_sync *sync = NULL;
	int err;

	aio.depth = cfg->depth;
	err = drv_sync_new(img, &aio, &sync);
	if (err) {
		img_err("bench", "%s: could not set up I/O: %s", cfg->filename, err_str(err));
		return err;
	}
	st.q = drv_sync_queue(sync);
	res->engine = aio_engine_name(aio_ctx_engine(st.q->aio));
	err = state_init(&st);
	if (!err)
		run_phases(&st);
	state_free(&st);
	drv_sync_free(sync);
	return err;
}
