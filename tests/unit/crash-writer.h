/* SPDX-License-Identifier: MIT */
/*
 * The crash test's writer: the child process that opens a qcow2 image
 * read-write through the driver and writes until it is killed.
 *
 * It runs one or more queue threads (the driver's multi-queue mode, as
 * tapdisk runs it), each keeping its share of DEPTH requests in flight:
 * writes of self-describing blocks (some FUA), zero writes (with and
 * without MAY_UNMAP, some FUA), discards and flushes, at random places: a
 * quarter in a stretch of the disk that is this round's own (fresh
 * clusters to allocate), of the rest half in a hot eighth of the disk
 * unless the configuration spreads them out.  Two requests on one block are never in flight at
 * once, so the requests on a block are ordered (crash-oracle.h relies on
 * it).  Every request is logged before it is submitted and when it
 * completes, under one lock, so ISSUE records appear in id order and a
 * DONE record precedes anything issued after it on any thread.
 *
 * SIGUSR1 asks it to stop instead: it issues nothing more, lets what is in
 * flight complete, closes the image (a clean close, which writes
 * everything back: logged as a flush) and exits 0, so that the last round
 * of each configuration checks the close path, and so that valgrind and
 * ASan see a writer exit and report on it.
 *
 * The writer never returns and never touches cmocka's state: on an
 * unexpected failure it exits with a CHILD_EXIT_* status the parent reports.
 */
#ifndef QTAP_CRASH_WRITER_H
#define QTAP_CRASH_WRITER_H

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

#include "aio.h"
#include "buf.h"
#include "evloop.h"
#include "crash-oracle.h"

#define DEPTH 24u	     /* requests in flight, over all queues */
#define WRITE_MAX_BLOCKS 64u /* the largest write, in blocks */
#define QUEUES_MAX 4u
#define CHILD_MAX_NS (30ull * 1000 * 1000 * 1000)

/* A writer's exit status when it ends by itself (it should be killed). */
enum child_exit {
	CHILD_EXIT_OPEN = 10,	    /* the image did not open read-write */
	CHILD_EXIT_IO = 11,	    /* a request failed */
	CHILD_EXIT_LOG = 12,	    /* the log could not be written */
	CHILD_EXIT_NOT_KILLED = 13, /* ran CHILD_MAX_NS without being killed */
	CHILD_EXIT_SETUP = 14,
};

struct crash_cfg {
	const char *name;
	const char *opts; /* qemu-img create -o */
	uint64_t size;
	bool backing;  /* over a qcow2 backing file (shorter than the image) */
	bool snapshot; /* data and an internal snapshot first, more every few rounds */
	bool lazy;     /* lazy refcounts: repaired with qemu-img check -r all each round */
	unsigned open_flags;
	enum aio_engine engine;
	unsigned queues;    /* writer queue threads, 1..QUEUES_MAX */
	unsigned flush_pct; /* flushes among requests, in percent */
	bool spread;	    /* no hot region, no FUA: dirty as many L2 slices as possible */
};

/* What the parent tells one round's writer. */
struct cw_args {
	uint64_t round;
	uint64_t seed;
	uint64_t cluster_blocks;
	/* a stretch of the disk no earlier round aimed at, so that every
	 * round allocates fresh clusters (and L2 tables) */
	uint64_t fresh_blk, fresh_nblk;
	int log_fd;
	int ready_fd; /* written once the image is open */
};

struct cw;
struct cwq;

struct cw_slot {
	struct drv_req req;
	struct iovec iov;
	uint8_t *buf;
	bool busy;
	uint32_t id;
	struct cwq *wq;
};

/* One queue thread. */
struct cwq {
	struct cw *w;
	struct drv_queue *q;
	uint64_t rng;
	unsigned depth;
	pthread_t tid;
	struct cw_slot slot[DEPTH];
};

/* The writer, shared by its queue threads. */
struct cw {
	const struct crash_cfg *cfg;
	int log_fd;
	uint64_t round;
	uint64_t nblocks;
	uint64_t cluster_blocks;
	uint64_t fresh_blk, fresh_nblk;
	uint64_t start_ns;
	struct drv_image *top;
	pthread_mutex_t lock; /* busy, next_id, and the log's order */
	uint8_t *busy;	      /* per block: a request on it is in flight */
	uint32_t next_id;
	struct drv_queue queues[QUEUES_MAX];
	struct cwq wq[QUEUES_MAX];
};

static int cw_stopping; /* lock-free atomics: async-signal-safe */

static void cw_on_stop(int sig)
{
	__atomic_store_n(&cw_stopping, 1, __ATOMIC_RELAXED);
}

static bool cw_stop_asked(void)
{
	return __atomic_load_n(&cw_stopping, __ATOMIC_RELAXED);
}

/* Append one record; the caller holds w->lock. */
static void cw_log(struct cw *w, const struct drv_req *req, enum cr_kind kind, unsigned op,
		   uint32_t id, int err)
{
	struct cr_rec rec = { .magic = CR_REC_MAGIC,
			      .kind = (uint8_t)kind,
			      .op = (uint8_t)op,
			      .fua = (req->flags & DRV_REQ_FUA) != 0,
			      .id = id,
			      .err = err,
			      .blk = req->offset / CR_BLK,
			      .nblk = req->len / CR_BLK };

	if (write(w->log_fd, &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		_exit(CHILD_EXIT_LOG);
}

static unsigned cw_op(const struct drv_req *req)
{
	switch (req->op) {
	case DRV_OP_WRITE:
		return CR_OP_WRITE;
	case DRV_OP_WRITE_ZEROES:
		return CR_OP_ZERO;
	case DRV_OP_DISCARD:
		return CR_OP_DISCARD;
	default:
		return CR_OP_FLUSH;
	}
}

static void cw_done(struct drv_req *req, int err)
{
	struct cw_slot *s = req->opaque;
	struct cw *w = s->wq->w;

	pthread_mutex_lock(&w->lock);
	cw_log(w, req, CR_DONE, cw_op(req), s->id, err);
	if (err) {
		fprintf(stderr,
			"writer: round %" PRIu64 " request %u (%s at %" PRIu64 "+%" PRIu64
			"): %s\n",
			w->round, s->id, cr_op_name(cw_op(req)), req->offset, req->len,
			strerror(-err));
		_exit(CHILD_EXIT_IO);
	}
	if (req->op != DRV_OP_FLUSH)
		memset(w->busy + req->offset / CR_BLK, 0, req->len / CR_BLK);
	pthread_mutex_unlock(&w->lock);
	s->busy = false;
}

/*
 * A range for @op: small writes mostly; a quarter in the round's fresh
 * stretch, of the rest half in a hot eighth of the disk.
 */
static void cw_pick(struct cwq *wq, unsigned op, uint64_t *blk, uint64_t *n)
{
	const struct cw *w = wq->w;
	uint64_t r = qd_rand(&wq->rng) % 10, cb = w->cluster_blocks, region, where, start = 0;

	if (op == CR_OP_WRITE)
		*n = 1 + qd_rand(&wq->rng) % (r < 7 ? 4 : r < 9 ? cb + 2 : WRITE_MAX_BLOCKS);
	else if (op == CR_OP_ZERO)
		*n = 1 + qd_rand(&wq->rng) % (2 * cb);
	else
		*n = cb * (1 + qd_rand(&wq->rng) % 4) + (r % 2 ? qd_rand(&wq->rng) % cb : 0);
	*n = MIN(*n, op == CR_OP_WRITE ? (uint64_t)WRITE_MAX_BLOCKS : w->nblocks);
	where = qd_rand(&wq->rng) % 8;
	region = !w->cfg->spread && where < 3 ? w->nblocks / 8 : w->nblocks;
	if (where >= 6 && w->fresh_nblk) {
		start = w->fresh_blk;
		region = w->fresh_nblk;
	}
	region = MAX(region, *n);
	start = MIN(start, w->nblocks - region);
	*blk = start + qd_rand(&wq->rng) % (region - *n + 1);
	if (op == CR_OP_DISCARD && r < 5)
		*blk = ALIGN_DOWN(*blk, cb);
}

/* Claim [@blk, @blk + @n) and an id, and log the ISSUE; false when busy. */
static bool cw_claim(struct cw *w, struct cw_slot *s, unsigned op)
{
	uint64_t blk = s->req.offset / CR_BLK, n = s->req.len / CR_BLK, i;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < n; i++) {
		if (w->busy[blk + i]) {
			pthread_mutex_unlock(&w->lock);
			return false;
		}
	}
	memset(w->busy + blk, 1, n);
	s->id = w->next_id++;
	cw_log(w, &s->req, CR_ISSUE, op, s->id, 0);
	pthread_mutex_unlock(&w->lock);
	return true;
}

/* Issue one random request on @s; false when it would overlap one in flight. */
static bool cw_issue(struct cwq *wq, struct cw_slot *s)
{
	static const enum drv_op ops[] = { DRV_OP_READ, DRV_OP_WRITE, DRV_OP_WRITE_ZEROES,
					   DRV_OP_DISCARD, DRV_OP_FLUSH };
	uint64_t k = qd_rand(&wq->rng) % 100, f = qd_rand(&wq->rng) % 100, blk = 0, n = 0, i;
	unsigned op = k < 70 ? CR_OP_WRITE : k < 88 ? CR_OP_ZERO : CR_OP_DISCARD;
	void *priv = s->req.priv;

	if (f < wq->w->cfg->flush_pct)
		op = CR_OP_FLUSH;
	else
		cw_pick(wq, op, &blk, &n);
	s->req = (struct drv_req){ .op = ops[op],
				   .offset = blk * CR_BLK,
				   .len = n * CR_BLK,
				   .q = wq->q,
				   .done = cw_done,
				   .opaque = s,
				   .priv = priv };
	if (op == CR_OP_WRITE) {
		s->iov = (struct iovec){ .iov_base = s->buf, .iov_len = n * CR_BLK };
		s->req.iov = &s->iov;
		s->req.iovcnt = 1;
		s->req.flags = f % 16 == 0 && !wq->w->cfg->spread ? DRV_REQ_FUA : 0;
	} else if (op == CR_OP_ZERO) {
		s->req.flags = (k % 2 ? DRV_REQ_MAY_UNMAP : 0) |
			       (f % 8 == 0 && !wq->w->cfg->spread ? DRV_REQ_FUA : 0);
	}
	if (!cw_claim(wq->w, s, op))
		return false;
	for (i = 0; op == CR_OP_WRITE && i < n; i++)
		cr_fill(s->buf + i * CR_BLK, blk + i, cr_gen(wq->w->round, s->id));
	s->busy = true;
	drv_submit(wq->w->top, &s->req);
	return true;
}

/* Keep the queue's slots busy until killed, or until asked to stop and drained. */
static void *cwq_main(void *arg)
{
	struct cwq *wq = arg;
	unsigned i, busy;

	for (;;) {
		for (busy = 0, i = 0; i < wq->depth; i++) {
			if (!wq->slot[i].busy && !cw_stop_asked())
				cw_issue(wq, &wq->slot[i]);
			busy += wq->slot[i].busy;
		}
		if (!busy && cw_stop_asked())
			return NULL;
		/* a stop signal interrupts the wait: 0 callbacks, go round */
		if (busy && evloop_run_once(wq->q->loop, -1) < 0)
			_exit(CHILD_EXIT_SETUP);
		if (evloop_now_ns() - wq->w->start_ns > CHILD_MAX_NS)
			_exit(CHILD_EXIT_NOT_KILLED);
	}
}

/* Queues, their loops and aio contexts, and each queue's slots. */
static int cw_setup_queues(struct cw *w, uint64_t seed)
{
	struct aio_ctx_opts aopts = { .engine = w->cfg->engine };
	unsigned nq = w->cfg->queues, i, j;
	size_t priv = drv_chain_req_priv_bytes(w->top);

	for (i = 0; i < nq; i++) {
		w->queues[i].index = i;
		if (evloop_new(&w->queues[i].loop) ||
		    aio_ctx_new(w->queues[i].loop, &aopts, &w->queues[i].aio))
			return -1;
	}
	if (drv_queues_init(w->top, w->queues, nq))
		return -1;
	for (i = 0; i < nq; i++) {
		struct cwq *wq = &w->wq[i];

		*wq = (struct cwq){ .w = w, .q = &w->queues[i], .rng = (seed + i) | 1 };
		wq->depth = DEPTH / nq;
		for (j = 0; j < wq->depth; j++) {
			wq->slot[j].wq = wq;
			wq->slot[j].buf = buf_alloc(WRITE_MAX_BLOCKS * CR_BLK, 4096);
			wq->slot[j].req.priv = calloc(1, priv);
			if (!wq->slot[j].buf || !wq->slot[j].req.priv)
				return -1;
		}
	}
	return 0;
}

/* Asked to stop and drained: close cleanly, logged as a flush, free everything, exit 0. */
static void __attribute__((noreturn)) cw_close(struct cw *w)
{
	struct drv_req flush = { .op = DRV_OP_FLUSH };
	unsigned i, j;

	pthread_mutex_lock(&w->lock);
	cw_log(w, &flush, CR_ISSUE, CR_OP_FLUSH, w->next_id, 0);
	pthread_mutex_unlock(&w->lock);
	drv_queues_fini(w->top);
	for (i = 0; i < w->cfg->queues; i++) {
		aio_ctx_free(w->queues[i].aio);
		evloop_free(w->queues[i].loop);
		for (j = 0; j < w->wq[i].depth; j++) {
			buf_free(w->wq[i].slot[j].buf);
			free(w->wq[i].slot[j].req.priv);
		}
	}
	drv_image_close(w->top);
	pthread_mutex_lock(&w->lock);
	cw_log(w, &flush, CR_DONE, CR_OP_FLUSH, w->next_id, 0);
	pthread_mutex_unlock(&w->lock);
	free(w->busy);
	pthread_mutex_destroy(&w->lock);
	exit(0); /* not _exit: LeakSanitizer checks at exit() */
}

/*
 * The writer: open @img read-write, say so on @ready_fd, write through
 * cfg->queues threads until killed (or stopped).  Appends its log to @log_fd.
 */
static void __attribute__((noreturn))
child_main(const struct crash_cfg *c, const char *img, const struct cw_args *a)
{
	static struct cw w; /* the threads' shared state outlives this frame anyway */
	struct sigaction sa = { .sa_handler = cw_on_stop }; /* no SA_RESTART */
	char spec[PATH_MAX + 8];
	unsigned i;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigaction(SIGUSR1, &sa, NULL);
	w = (struct cw){ .cfg = c,
			 .log_fd = a->log_fd,
			 .round = a->round,
			 .cluster_blocks = a->cluster_blocks,
			 .fresh_blk = a->fresh_blk,
			 .fresh_nblk = a->fresh_nblk };
	pthread_mutex_init(&w.lock, NULL);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	if (drv_chain_open(spec, c->open_flags, &w.top))
		_exit(CHILD_EXIT_OPEN);
	w.nblocks = w.top->size_bytes / CR_BLK;
	w.busy = calloc(w.nblocks, 1);
	if (!w.busy || w.fresh_blk + w.fresh_nblk > w.nblocks || cw_setup_queues(&w, a->seed))
		_exit(CHILD_EXIT_SETUP);
	if (write(a->ready_fd, "r", 1) != 1)
		_exit(CHILD_EXIT_SETUP);
	close(a->ready_fd);
	w.start_ns = evloop_now_ns();
	for (i = 1; i < c->queues; i++) {
		if (pthread_create(&w.wq[i].tid, NULL, cwq_main, &w.wq[i]))
			_exit(CHILD_EXIT_SETUP);
	}
	cwq_main(&w.wq[0]);
	for (i = 1; i < c->queues; i++)
		pthread_join(w.wq[i].tid, NULL);
	cw_close(&w);
}

#endif
