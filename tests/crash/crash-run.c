// SPDX-License-Identifier: MIT
/*
 * crash-run: the crash-state harness's workload.  Opens a qcow2 image
 * read-write through the driver with the write recorder installed
 * (lib/aio-rec.h), runs a seeded random guest workload with several
 * requests in flight, logging each guest request when it is issued and
 * when it is acknowledged, then flushes and closes the image (the close's
 * write-back is recorded too).  crash-replay then builds the post-crash
 * files from the log and checks them.
 *
 *   crash-run [-n OPS] [-s SEED] [-d DEPTH] [-q QUEUES] [-r REGION]
 *             [-S STRIDE] [-m MIX] [-e ENGINE] [-B] [-K] [-A] IMAGE LOG
 *
 * MIX weights the operations, letters followed by a number:
 *   w  write of whole clusters        p  partial-cluster write (512 B units)
 *   a  FUA write                      z  write zeroes      u  zeroes, may unmap
 *   d  discard of whole clusters      f  flush             c  compressed write
 * Requests land in [0, REGION); with STRIDE, cluster n of the region maps to
 * guest offset n * STRIDE, so a large sparse image gets new L2 tables and
 * refcount blocks throughout.  Guest requests in flight never overlap, so
 * the requests on a byte are ordered (the replay's oracle relies on it).
 *
 * -K ends the process right after the workload, with no flush and no
 * close, as a crash of the process would (the page cache keeps what was
 * written): a lazy-refcount image is left dirty, for a recorded run to
 * repair when it opens it.
 *
 * -A adds to LOG, which an earlier recorded process wrote (a crash-run,
 * or a tool under QTAP_RECORD=+LOG), instead of starting it: one log for a
 * sequence of processes on the image, e.g. writes, `tap-img resize`, writes.
 *
 * With QUEUES > 1 each queue runs on its own thread with its own loop and
 * aio context, as tapdisk's multi-queue mode does, DEPTH shared among
 * them; the choice of a request, its overlap check and its ISSUE record
 * happen under one lock, as do a completion's G_DONE record and the
 * release of its range.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio-rec.h"
#include "aio.h"
#include "buf.h"
#include "driver.h"
#include "evloop.h"
#include "log.h"
#include "../unit/test-rand.h"

#define DEPTH_MAX 32u
#define QUEUES_MAX 4u

struct run_opts {
	uint64_t ops, seed, region, stride;
	unsigned depth, queues;
	unsigned weight[128];
	struct aio_ctx_opts aio;
	unsigned open_flags;
	bool die;    /* -K */
	bool append; /* -A */
};

struct rq;

struct slot {
	struct drv_req req;
	struct iovec iov;
	uint8_t *buf;
	uint64_t rec_id;
	bool busy; /* under run.lock */
	struct rq *rq;
};

/* One queue: its thread, loop and aio context, its share of the slots. */
struct rq {
	struct run *run;
	struct drv_queue *q;
	pthread_t tid;
	unsigned first, nr; /* its slots: run.slots[first .. first + nr) */
	unsigned inflight;  /* this thread's only */
};

struct run {
	struct run_opts o;
	struct drv_image *img;
	struct aio_rec *rec;
	pthread_mutex_t lock; /* the rng, slots' busy, issued, compressed, failed */
	struct drv_queue queues[QUEUES_MAX];
	struct rq rqs[QUEUES_MAX];
	struct slot slots[DEPTH_MAX];
	uint64_t issued;
	uint64_t rng, cluster, nr_clusters;
	uint8_t *compressed; /* per cluster of the region: ever written (no compressed write) */
	int failed;
};

static uint64_t rnd(struct run *r)
{
	return test_rand(&r->rng);
}

static void fill_random(struct run *r, uint8_t *b, uint64_t len)
{
	for (uint64_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = rnd(r);

		memcpy(b + i, &v, 8);
	}
}

static void req_done(struct drv_req *req, int err)
{
	struct slot *s = req->opaque;
	struct run *r = s->rq->run;

	pthread_mutex_lock(&r->lock);
	aio_rec_guest_done(r->rec, s->rec_id, err);
	if (err && !r->failed) {
		fprintf(stderr, "crash-run: request op %d offset %" PRIu64 " len %" PRIu64 ": %s\n",
			req->op, req->offset, req->len, strerror(-err));
		r->failed = err;
	}
	s->busy = false;
	pthread_mutex_unlock(&r->lock);
	s->rq->inflight--;
}

/* Does [off, off + len) overlap a request in flight?  Flushes overlap nothing. */
static bool overlaps(const struct run *r, uint64_t off, uint64_t len)
{
	for (unsigned i = 0; i < DEPTH_MAX; i++) {
		const struct drv_req *q = &r->slots[i].req;

		if (r->slots[i].busy && q->op != DRV_OP_FLUSH && off < q->offset + q->len &&
		    q->offset < off + len)
			return true;
	}
	return false;
}

static int pick_op(struct run *r)
{
	unsigned total = 0, x;
	int c;

	for (c = 0; c < 128; c++)
		total += r->o.weight[c];
	x = (unsigned)(rnd(r) % total);
	for (c = 0; c < 128; c++) {
		if (x < r->o.weight[c])
			return c;
		x -= r->o.weight[c];
	}
	return 'w';
}

/* Guest offset of cluster @n of the region. */
static uint64_t cluster_off(const struct run *r, uint64_t n)
{
	return n * (r->o.stride ? r->o.stride : r->cluster);
}

/* Choose a request for @s; false when the one drawn overlaps one in flight. */
static bool make_req(struct run *r, struct slot *s, int op)
{
	struct drv_req *q = &s->req;
	uint64_t n = rnd(r) % r->nr_clusters, nclu = 1 + rnd(r) % 2;
	int type = AIO_REC_G_WRITE;
	unsigned flags = 0;

	void *priv = q->priv;

	memset(q, 0, sizeof(*q));
	q->priv = priv;
	if (r->o.stride || n + nclu > r->nr_clusters)
		nclu = 1;
	q->offset = cluster_off(r, n);
	q->len = nclu * r->cluster;
	switch (op) {
	case 'p': {
		uint64_t sectors = r->cluster / 512, first = rnd(r) % sectors;

		q->offset += first * 512;
		q->len = (1 + rnd(r) % (sectors - first)) * 512;
		q->op = DRV_OP_WRITE;
		break;
	}
	case 'a':
		q->flags = DRV_REQ_FUA;
		flags = AIO_REC_F_FUA;
		/* fall through */
	case 'w':
		q->op = DRV_OP_WRITE;
		break;
	case 'c':
		if (r->compressed[n])
			return false;
		q->op = DRV_OP_WRITE;
		q->flags = DRV_REQ_COMPRESSED;
		q->len = r->img->compress_bytes;
		break;
	case 'u':
		q->flags = DRV_REQ_MAY_UNMAP;
		flags = AIO_REC_F_UNMAP;
		/* fall through */
	case 'z':
		q->op = DRV_OP_WRITE_ZEROES;
		type = AIO_REC_G_ZERO;
		break;
	case 'd':
		q->op = DRV_OP_DISCARD;
		type = AIO_REC_G_DISCARD;
		break;
	default:
		q->op = DRV_OP_FLUSH;
		q->offset = q->len = 0;
		type = AIO_REC_G_FLUSH;
		break;
	}
	if (q->op != DRV_OP_FLUSH && overlaps(r, q->offset, q->len))
		return false;
	if (q->op == DRV_OP_WRITE) {
		/* Half the writes hold compressible data, so compressed ones shrink. */
		fill_random(r, s->buf, q->len);
		if (rnd(r) % 2)
			for (uint64_t i = 0; i < q->len; i += 64)
				memset(s->buf + i + 8, (int)(i / 512), 56);
		s->iov = (struct iovec){ s->buf, q->len };
		q->iov = &s->iov;
		q->iovcnt = 1;
	}
	if (q->op != DRV_OP_FLUSH)
		memset(&r->compressed[n], 1, nclu);
	s->rec_id = aio_rec_guest(r->rec, type, flags, q->offset, q->len, &s->iov, 1);
	return true;
}

/* Run @rq's loop until one of its requests completes (or @timeout_ns passes). */
static int wait_one(struct rq *rq, int64_t timeout_ns)
{
	unsigned before = rq->inflight;

	do {
		int err = evloop_run_once(rq->q->loop, timeout_ns);

		if (err < 0 && err != -EINTR)
			return err;
	} while (rq->inflight == before && timeout_ns < 0);
	return 0;
}

/* Under the lock: issue a request on a free slot of @rq?  NULL: none. */
static struct slot *claim(struct rq *rq)
{
	struct run *r = rq->run;

	for (unsigned i = rq->first; i < rq->first + rq->nr; i++) {
		struct slot *s = &r->slots[i];

		if (s->busy)
			continue;
		if (r->issued >= r->o.ops || r->failed || !make_req(r, s, pick_op(r)))
			return NULL;
		s->busy = true;
		r->issued++;
		return s;
	}
	return NULL;
}

/* A queue thread: keep its slots busy until the run has issued OPS requests. */
static void *rq_main(void *arg)
{
	struct rq *rq = arg;
	struct run *r = rq->run;
	bool more = true;

	while (more || rq->inflight) {
		struct slot *s;

		pthread_mutex_lock(&r->lock);
		s = claim(rq);
		more = r->issued < r->o.ops && !r->failed;
		pthread_mutex_unlock(&r->lock);
		if (s) {
			rq->inflight++;
			s->req.q = rq->q;
			s->req.done = req_done;
			s->req.opaque = s;
			drv_submit(r->img, &s->req);
			continue;
		}
		/* slots all busy, or the request drawn overlaps one in flight
		 * (maybe on another queue: then look again soon) */
		if ((rq->inflight || more) &&
		    wait_one(rq, rq->inflight == rq->nr ? -1 : 1000000) < 0) {
			pthread_mutex_lock(&r->lock);
			r->failed = -EIO;
			pthread_mutex_unlock(&r->lock);
			more = false;
		}
	}
	return NULL;
}

static int run_workload(struct run *r)
{
	unsigned i;

	for (i = 1; i < r->o.queues; i++)
		if (pthread_create(&r->rqs[i].tid, NULL, rq_main, &r->rqs[i]))
			return -EAGAIN;
	rq_main(&r->rqs[0]);
	for (i = 1; i < r->o.queues; i++)
		pthread_join(r->rqs[i].tid, NULL);
	return r->failed;
}

/* The last flush, on queue 0, logged: the close's write-back follows it. */
static int final_flush(struct run *r)
{
	struct slot *s = &r->slots[0];

	memset(&s->req, 0, offsetof(struct drv_req, priv));
	s->req.op = DRV_OP_FLUSH;
	s->req.q = r->rqs[0].q;
	s->req.done = req_done;
	s->req.opaque = s;
	s->busy = true;
	s->rec_id = aio_rec_guest(r->rec, AIO_REC_G_FLUSH, 0, 0, 0, NULL, 0);
	r->rqs[0].inflight++;
	drv_submit(r->img, &s->req);
	while (r->rqs[0].inflight)
		if (wait_one(&r->rqs[0], -1))
			return -EIO;
	return r->failed;
}

/* A size: a number with an optional k, M or G suffix. */
static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k':
		return v << 10;
	case 'M':
		return v << 20;
	case 'G':
		return v << 30;
	default:
		return v;
	}
}

static int parse_mix(struct run_opts *o, const char *mix)
{
	memset(o->weight, 0, sizeof(o->weight));
	while (*mix) {
		int c = (unsigned char)*mix++;
		char *end;
		unsigned long w = strtoul(mix, &end, 10);

		if (end == mix || !strchr("wpazudfc", c) || w > 1000)
			return -1;
		o->weight[c] = (unsigned)w;
		mix = end;
		if (*mix == ',')
			mix++;
	}
	return 0;
}

static int parse_args(struct run_opts *o, int argc, char **argv)
{
	int c;

	*o = (struct run_opts){ .ops = 200, .seed = 1, .depth = 8, .queues = 1 };
	parse_mix(o, "w30,p30,a5,z5,u5,d5,f10");
	while ((c = getopt(argc, argv, "n:s:d:q:r:S:m:e:BKA")) != -1) {
		switch (c) {
		case 'n':
			o->ops = strtoull(optarg, NULL, 0);
			break;
		case 's':
			o->seed = strtoull(optarg, NULL, 0);
			break;
		case 'd':
			o->depth = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'q':
			o->queues = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'r':
			o->region = parse_size(optarg);
			break;
		case 'S':
			o->stride = parse_size(optarg);
			break;
		case 'm':
			if (parse_mix(o, optarg))
				return -1;
			break;
		case 'e':
			if (aio_engine_parse(optarg, &o->aio.engine))
				return -1;
			break;
		case 'B':
			o->open_flags |= DRV_OPEN_BUFFERED;
			break;
		case 'K':
			o->die = true;
			break;
		case 'A':
			o->append = true;
			break;
		default:
			return -1;
		}
	}
	if (optind + 2 != argc || o->queues == 0 || o->queues > QUEUES_MAX ||
	    o->depth < o->queues || o->depth > DEPTH_MAX)
		return -1;
	return 0;
}

/* Each queue's loop and aio context, then the driver's queues on them. */
static int setup_queues(struct run *r)
{
	for (unsigned i = 0; i < r->o.queues; i++) {
		struct rq *rq = &r->rqs[i];

		r->queues[i].index = i;
		if (evloop_new(&r->queues[i].loop) ||
		    aio_ctx_new(r->queues[i].loop, &r->o.aio, &r->queues[i].aio))
			return -ENOMEM;
		*rq = (struct rq){ .run = r, .q = &r->queues[i] };
		rq->first = r->o.depth * i / r->o.queues;
		rq->nr = r->o.depth * (i + 1) / r->o.queues - rq->first;
		for (unsigned j = rq->first; j < rq->first + rq->nr; j++)
			r->slots[j].rq = rq;
	}
	return drv_queues_init(r->img, r->queues, r->o.queues);
}

static int setup(struct run *r, const char *image, const char *log)
{
	char spec[4200];
	int err;

	snprintf(spec, sizeof(spec), "qcow2:%s", image);
	err = r->o.append ? aio_rec_append(log, &r->rec) : aio_rec_new(log, &r->rec);
	if (err)
		return err;
	/* Installed before the open: what the open writes (the dirty bit, a
	 * lazy-refcount repair, bitmaps marked in use) is recorded too. */
	aio_rec_install(r->rec);
	err = drv_chain_open(spec, r->o.open_flags, &r->img);
	if (err)
		return err;
	r->cluster = r->img->compress_bytes ?: 65536;
	if (!r->o.region || r->o.region > r->img->size_bytes)
		r->o.region = r->img->size_bytes;
	r->nr_clusters = r->o.stride ? r->o.region / r->o.stride : r->o.region / r->cluster;
	r->compressed = calloc(r->nr_clusters + 2, 1);
	if (!r->nr_clusters || !r->compressed)
		return -EINVAL;
	for (unsigned i = 0; i < DEPTH_MAX; i++) {
		r->slots[i].buf = buf_alloc(2 * r->cluster, 4096);
		r->slots[i].req.priv = calloc(1, drv_chain_req_priv_bytes(r->img) ?: 1);
		if (!r->slots[i].buf || !r->slots[i].req.priv)
			return -ENOMEM;
	}
	aio_rec_guest_size(r->rec, r->img->size_bytes, r->cluster);
	return setup_queues(r);
}

static void teardown(struct run *r)
{
	if (r->img && r->img->qpriv)
		drv_queues_fini(r->img);
	for (unsigned i = 0; i < QUEUES_MAX; i++) {
		aio_ctx_free(r->queues[i].aio);
		evloop_free(r->queues[i].loop);
	}
	drv_image_close(r->img);
	for (unsigned i = 0; i < DEPTH_MAX; i++) {
		void *priv = r->slots[i].req.priv;

		buf_free(r->slots[i].buf);
		free(priv);
	}
	free(r->compressed);
}

int main(int argc, char **argv)
{
	static struct run r;
	int err;

	if (parse_args(&r.o, argc, argv)) {
		fprintf(stderr,
			"usage: crash-run [-n OPS] [-s SEED] [-d DEPTH] [-q QUEUES] "
			"[-r REGION] [-S STRIDE] [-m MIX] [-e ENGINE] [-B] [-K] [-A] IMAGE LOG\n");
		return 2;
	}
	pthread_mutex_init(&r.lock, NULL);
	r.rng = r.o.seed * 0x9e3779b97f4a7c15ull | 1;
	err = setup(&r, argv[optind], argv[optind + 1]);
	if (!err)
		err = run_workload(&r);
	if (!err && r.o.die)
		_exit(0);
	if (!err)
		err = final_flush(&r);
	teardown(&r);
	if (aio_rec_free(r.rec) && !err)
		err = -EIO;
	pthread_mutex_destroy(&r.lock);
	if (err)
		fprintf(stderr, "crash-run: %s\n", strerror(-err));
	return err ? 1 : 0;
}
