/* SPDX-License-Identifier: MIT */
/*
 * tap-img convert's workers: each its own thread, event loop, aio context
 * and driver queue, pumping segments of the image (convert-copy.c) until
 * none is left; then the target is flushed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "checked.h"
#include "convert-internal.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "tap-img.h"

static void state_free(struct cv_state *st)
{
	unsigned i;

	for (i = 0; st->slots && i < st->cfg->parallel; i++)
		buf_free(st->slots[i].buf);
	free(st->slots);
	free(st->priv);
}

static int state_slots(struct cv_state *st)
{
	const struct convert_cfg *cfg = st->cfg;
	unsigned i;

	st->priv_bytes =
		MAX(drv_chain_req_priv_bytes(cfg->src), drv_chain_req_priv_bytes(cfg->dst));
	st->priv_bytes = ALIGN_DOWN(st->priv_bytes + 15, 16); /* keep each area aligned */
	st->priv = calloc(cfg->parallel + 1, st->priv_bytes ?: 1);
	st->slots = calloc(cfg->parallel, sizeof(*st->slots));
	if (!st->priv || !st->slots)
		return -ENOMEM;
	for (i = 0; i < cfg->parallel; i++) {
		struct cv_slot *s = &st->slots[i];

		s->buf = buf_alloc(cfg->buf_bytes, CV_BUF_ALIGN);
		if (!s->buf)
			return -ENOMEM;
		s->st = st;
		s->req = (struct drv_req){
			.iov = &s->iov,
			.iovcnt = 1,
			.q = st->q,
			.opaque = s,
			.priv = st->priv + i * st->priv_bytes,
		};
	}
	return 0;
}

/* One worker's state, on queue @index. */
static int state_init(struct cv_state *st, struct cv_shared *sh, unsigned index)
{
	const struct convert_cfg *cfg = sh->cfg;
	int err;

	*st = (struct cv_state){ .cfg = cfg, .sh = sh, .q = &sh->queues[index] };
	st->align = sh->align;
	st->gran = MAX(cfg->sparse_bytes, st->align);
	st->gran = div_round_up_u64(st->gran, st->align) * st->align;
	err = state_slots(st);
	if (err)
		img_err("convert", "out of memory for %u buffers of %" PRIu64 " bytes",
			cfg->parallel, cfg->buf_bytes);
	return err;
}

static void run_loop(struct cv_state *st)
{
	int err;

	convert_pump(st);
	while (st->inflight) {
		err = evloop_run_once(st->q->loop, -1);
		if (err < 0 && err != -EINTR) {
			/* Requests are in flight into our buffers: we cannot unwind. */
			img_err("convert", "event loop failed: %s", err_str(err));
			abort();
		}
	}
}

/* Nothing planned is left and every slot is back: the loop ended for the right reason. */
static bool all_done(const struct cv_state *st)
{
	unsigned i;

	for (i = 0; i < st->cfg->parallel; i++) {
		if (st->slots[i].state != CV_FREE)
			return false;
	}
	return st->plan_pos >= st->seg_end &&
	       __atomic_load_n(&st->sh->cursor, __ATOMIC_RELAXED) >= st->cfg->size_bytes;
}

static void flush_done(struct drv_req *req, int err)
{
	struct cv_state *st = req->opaque;

	st->inflight--;
	if (err)
		convert_fail(st, err, "flushing", st->cfg->dst_name, 0);
}

static void flush_target(struct cv_state *st)
{
	struct drv_req *req = &st->slots[0].req;

	req->op = DRV_OP_FLUSH;
	req->offset = 0;
	req->len = 0;
	req->done = flush_done;
	req->opaque = st;
	convert_inflight_inc(st);
	drv_submit(st->cfg->dst, req);
	run_loop(st);
}

static void *worker_main(void *opaque)
{
	struct cv_state *st = opaque;

	run_loop(st);
	if (!convert_stopped(st) && !all_done(st))
		convert_fail(st, -EIO, "planning", st->cfg->src_name, st->plan_pos); /* a bug */
	log_dbg(LOG_F_TOOL, "convert: %s -> %s: worker %u: at most %u requests were in flight",
		st->cfg->src_name, st->cfg->dst_name, st->q->index, st->max_inflight);
	return NULL;
}

static void queues_free(struct cv_shared *sh, unsigned nr)
{
	unsigned i;

	for (i = 0; i < nr; i++) {
		aio_ctx_free(sh->queues[i].aio);
		evloop_free(sh->queues[i].loop);
	}
	free(sh->queues);
}

/* One loop, aio context and queue per worker, set up on both chains. */
static int queues_init(struct cv_shared *sh, unsigned nr)
{
	const struct convert_cfg *cfg = sh->cfg;
	unsigned i;
	int err = 0;

	sh->queues = calloc(nr, sizeof(*sh->queues));
	if (!sh->queues)
		return -ENOMEM;
	for (i = 0; !err && i < nr; i++) {
		sh->queues[i].index = i;
		err = evloop_new(&sh->queues[i].loop);
		if (!err)
			err = aio_ctx_new(sh->queues[i].loop, &cfg->aio, &sh->queues[i].aio);
	}
	if (!err)
		err = drv_queues_init(cfg->src, sh->queues, nr);
	if (!err) {
		err = drv_queues_init(cfg->dst, sh->queues, nr);
		if (err)
			drv_queues_fini(cfg->src);
	}
	if (err) {
		img_err("convert", "could not set up I/O: %s", err_str(err));
		queues_free(sh, nr);
	}
	return err;
}

static int shared_init(struct cv_shared *sh, const struct convert_cfg *cfg)
{
	*sh = (struct cv_shared){ .cfg = cfg };
	sh->align = MAX(cfg->src->block_bytes, cfg->dst->block_bytes);
	if (cfg->compress) /* chunks are whole target clusters */
		sh->align = MAX(sh->align, cfg->compress_bytes);
	if (sh->align > cfg->buf_bytes || cfg->buf_bytes % sh->align ||
	    CV_SEGMENT_BYTES % sh->align) {
		img_err("convert",
			"block size %" PRIu64 " does not divide the buffer size %" PRIu64,
			sh->align, cfg->buf_bytes);
		return -EINVAL;
	}
	pthread_mutex_init(&sh->lock, NULL);
	return 0;
}

/* Start the workers; the caller's thread runs worker 0.  The others are joined. */
static int run_workers(struct cv_state *sts, unsigned nr)
{
	unsigned i, started = 1;
	int err = 0;

	for (i = 1; i < nr; i++) {
		err = -pthread_create(&sts[i].thread, NULL, worker_main, &sts[i]);
		if (err) {
			img_err("convert", "could not start a worker thread: %s", err_str(err));
			__atomic_store_n(&sts[0].sh->err, err, __ATOMIC_SEQ_CST);
			break;
		}
		started++;
	}
	worker_main(&sts[0]);
	for (i = 1; i < started; i++)
		pthread_join(sts[i].thread, NULL);
	return err;
}

/* No more workers than segments: the others would find nothing to copy. */
static unsigned nr_workers(const struct convert_cfg *cfg)
{
	uint64_t segments = div_round_up_u64(cfg->size_bytes, CV_SEGMENT_BYTES);

	return (unsigned)MAX(MIN((uint64_t)cfg->workers, segments), 1u);
}

int convert_copy(const struct convert_cfg *cfg)
{
	unsigned nr = nr_workers(cfg), i, ready = 0;
	struct cv_state *sts = calloc(nr, sizeof(*sts));
	struct cv_shared sh;
	int err = sts ? shared_init(&sh, cfg) : -ENOMEM;

	if (!err)
		err = queues_init(&sh, nr);
	if (err) {
		free(sts);
		return err;
	}
	for (i = 0; !err && i < nr; i++, ready++)
		err = state_init(&sts[i], &sh, i);
	if (!err) {
		convert_progress(&sh, true);
		run_workers(sts, nr);
		if (!sh.err && cfg->flush)
			flush_target(&sts[0]);
		err = sh.err;
		if (!err) {
			if (sh.last_pct < 100.0)
				convert_progress(&sh, true);
			if (cfg->progress)
				putchar('\n');
		}
	}
	for (i = 0; i < ready; i++)
		state_free(&sts[i]);
	drv_queues_fini(cfg->dst);
	drv_queues_fini(cfg->src);
	queues_free(&sh, nr);
	pthread_mutex_destroy(&sh.lock);
	free(sts);
	return err;
}
