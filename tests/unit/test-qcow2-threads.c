// SPDX-License-Identifier: MIT
/*
 * Four queue threads writing and reading one qcow2 image (over a backing
 * file) at once, each with several requests in flight.
 *
 * The disk is cut into 4 KiB blocks.  In the first half, block b belongs
 * to thread b % 4, so every cluster is written by all four threads at once
 * (concurrent allocation, copy-on-write from the backing file, and the L2
 * updates of one table) while each thread still knows exactly what its
 * own blocks hold.  The second half is shared: multi-block writes and zero
 * writes from every thread overlap there, and a block must read as either
 * the backing file's bytes, zeros, or a whole block some thread wrote for
 * that offset (a self-describing header and a filler derived from it), never
 * a mixture.  Afterwards qemu-img check finds the image clean and a fresh
 * open reads every thread's own blocks back.  Built with TSan by
 * `make check-tsan`.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "log.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define BLK 4096u
#define THREADS 4u
#define DEPTH 8u
#define MAGIC 0x71746170626c6b21ull /* "qtapblk!" */
#define SHARED_MAX_BLOCKS 16u

struct th;

struct th_req {
	struct drv_req req;
	struct iovec iov;
	uint8_t *buf;
	struct th *t;
	bool busy;
	uint64_t blk; /* a private write: its block */
	uint64_t seq;
	/* a read: each block's last issued private write when the read was issued */
	uint64_t snap[SHARED_MAX_BLOCKS];
	uint32_t snap_pending;
};

struct th {
	pthread_t tid;
	unsigned id;
	struct drv_image *top;
	struct drv_queue *q;
	const uint8_t *base; /* the backing file's bytes (guest view at the start) */
	uint64_t blocks;
	uint64_t rng;
	uint64_t *own_seq;    /* per private block: the last completed write's seq, 0: none */
	uint64_t *issued_seq; /* per private block: the last issued write's seq */
	uint8_t *pending;     /* per private block: a write in flight */
	unsigned ops;
	unsigned failures;
	char why[256];
	struct th_req r[DEPTH];
};

static void fill_block(uint8_t *b, uint64_t blk, uint64_t thread, uint64_t seq)
{
	uint64_t h[4] = { MAGIC, blk, thread, seq }, x = blk * 0x9e3779b97f4a7c15ull ^ seq, i;

	memcpy(b, h, sizeof(h));
	for (i = sizeof(h); i < BLK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
}

/* 0 when @b is a whole block written for @blk; its thread and seq out. */
static int parse_block(const uint8_t *b, uint64_t blk, uint64_t *thread, uint64_t *seq)
{
	static __thread uint8_t want[BLK];
	uint64_t h[4];

	memcpy(h, b, sizeof(h));
	if (h[0] != MAGIC || h[1] != blk)
		return -1;
	fill_block(want, blk, h[2], h[3]);
	if (memcmp(want, b, BLK))
		return -1;
	*thread = h[2];
	*seq = h[3];
	return 0;
}

static bool all_zero(const uint8_t *b)
{
	unsigned i;

	for (i = 0; i < BLK; i++)
		if (b[i])
			return false;
	return true;
}

static void th_fail(struct th *t, const char *what, uint64_t blk)
{
	if (!t->failures++)
		snprintf(t->why, sizeof(t->why), "thread %u: block %" PRIu64 ": %s", t->id, blk,
			 what);
}

/*
 * Check one block a read returned.  @exact: the thread's own block had no
 * write in flight or issued while the read was.
 */
static void verify_block(struct th *t, uint64_t blk, const uint8_t *b, bool exact)
{
	uint64_t thread = 0, seq = 0;
	bool valid = parse_block(b, blk, &thread, &seq) == 0;
	bool original = memcmp(b, t->base + blk * BLK, BLK) == 0;

	if (blk < t->blocks / 2 && blk % THREADS == t->id && exact) {
		if (t->own_seq[blk] ? !(valid && thread == t->id && seq == t->own_seq[blk])
				    : !original)
			th_fail(t, "does not hold this thread's last write", blk);
		return;
	}
	if (!valid && !original && !all_zero(b))
		th_fail(t, "is torn or misplaced", blk);
}

static void th_done(struct drv_req *req, int err)
{
	struct th_req *r = req->opaque;
	struct th *t = r->t;
	uint64_t i;

	r->busy = false;
	if (err) {
		th_fail(t, strerror(-err), req->offset / BLK);
		return;
	}
	if (req->op == DRV_OP_READ) {
		for (i = 0; i < req->len / BLK; i++) {
			uint64_t blk = req->offset / BLK + i;
			bool exact = !(r->snap_pending & (1u << i)) &&
				     (blk >= t->blocks / 2 || r->snap[i] == t->issued_seq[blk]);

			verify_block(t, blk, r->buf + i * BLK, exact);
		}
	} else if (req->op == DRV_OP_WRITE && req->offset / BLK < t->blocks / 2) {
		t->own_seq[r->blk] = r->seq;
		t->pending[r->blk] = 0;
	}
}

/* A private write, a shared write or zero write, or a read anywhere. */
static void th_issue(struct th *t, struct th_req *r)
{
	uint64_t kind = qd_rand(&t->rng) % 10, half = t->blocks / 2, blk, n = 1, i;
	void *priv = r->req.priv;

	memset(&r->req, 0, sizeof(r->req));
	r->req.priv = priv;
	r->seq = ++t->ops;
	if (kind < 4) {
		blk = (qd_rand(&t->rng) % (half / THREADS)) * THREADS + t->id;
		if (t->pending[blk])
			kind = 9; /* one write per block in flight: read instead */
		else {
			r->blk = blk;
			t->pending[blk] = 1;
			t->issued_seq[blk] = r->seq;
			fill_block(r->buf, blk, t->id, r->seq);
			r->req.op = DRV_OP_WRITE;
		}
	}
	if (kind >= 4 && kind < 8) {
		n = 1 + qd_rand(&t->rng) % SHARED_MAX_BLOCKS;
		blk = half + qd_rand(&t->rng) % (half - n);
		for (i = 0; i < n; i++)
			fill_block(r->buf + i * BLK, blk + i, t->id, r->seq);
		r->req.op = kind == 7 ? DRV_OP_WRITE_ZEROES : DRV_OP_WRITE;
	} else if (kind >= 8) {
		n = 1 + qd_rand(&t->rng) % SHARED_MAX_BLOCKS;
		blk = qd_rand(&t->rng) % (t->blocks - n);
		r->req.op = DRV_OP_READ;
		r->snap_pending = 0;
		for (i = 0; i < n; i++) {
			uint64_t b = blk + i;

			r->snap[i] = b < half ? t->issued_seq[b] : 0;
			if (b < half && t->pending[b])
				r->snap_pending |= 1u << i;
		}
	}
	r->iov = (struct iovec){ .iov_base = r->buf, .iov_len = n * BLK };
	r->req.offset = blk * BLK;
	r->req.len = n * BLK;
	r->req.iov = r->req.op == DRV_OP_WRITE_ZEROES ? NULL : &r->iov;
	r->req.iovcnt = r->req.iov ? 1 : 0;
	r->req.q = t->q;
	r->req.done = th_done;
	r->req.opaque = r;
	r->busy = true;
	drv_submit(t->top, &r->req);
}

static void *th_main(void *arg)
{
	struct th *t = arg;
	unsigned total = 1500, issued = 0, i, busy;

	do {
		busy = 0;
		for (i = 0; i < DEPTH; i++) {
			if (!t->r[i].busy && issued < total) {
				issued++;
				th_issue(t, &t->r[i]);
			}
			busy += t->r[i].busy;
		}
		if (busy)
			evloop_run_once(t->q->loop, -1);
	} while (busy || issued < total);
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------------------ */

static void open_queues(struct drv_image *top, struct drv_queue *queues)
{
	unsigned i;

	for (i = 0; i < THREADS; i++) {
		queues[i].index = i;
		assert_int_equal(evloop_new(&queues[i].loop), 0);
		assert_int_equal(aio_ctx_new(queues[i].loop, NULL, &queues[i].aio), 0);
	}
	assert_int_equal(drv_queues_init(top, queues, THREADS), 0);
}

static void close_queues(struct drv_image *top, struct drv_queue *queues)
{
	unsigned i;

	drv_queues_fini(top);
	for (i = 0; i < THREADS; i++) {
		aio_ctx_free(queues[i].aio);
		evloop_free(queues[i].loop);
	}
}

static void run_threads(struct drv_image *top, struct th *t, const uint8_t *base, uint64_t size)
{
	struct drv_queue queues[THREADS];
	size_t priv_bytes = drv_chain_req_priv_bytes(top);
	unsigned i, j;

	open_queues(top, queues);
	for (i = 0; i < THREADS; i++) {
		t[i] = (struct th){ .id = i,
				    .top = top,
				    .q = &queues[i],
				    .base = base,
				    .blocks = size / BLK,
				    .rng = 0x1234567ull * (i + 1) };
		t[i].own_seq = calloc(size / BLK, sizeof(uint64_t));
		t[i].issued_seq = calloc(size / BLK, sizeof(uint64_t));
		t[i].pending = calloc(size / BLK, 1);
		for (j = 0; j < DEPTH; j++) {
			t[i].r[j].t = &t[i];
			t[i].r[j].buf = buf_alloc(SHARED_MAX_BLOCKS * BLK, 4096);
			t[i].r[j].req.priv = calloc(1, priv_bytes);
		}
	}
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i].tid, NULL, th_main, &t[i]), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i].tid, NULL);
	close_queues(top, queues);
}

static void test_four_threads(void **state)
{
	const char *base = qt_path("th-base.raw");
	const char *img = qt_path("th.qcow2");
	uint64_t size = 16 * MiB, i, j;
	struct drv_image *top = NULL;
	char spec[PATH_MAX + 8];
	struct th t[THREADS];
	uint8_t *ref, *buf;
	struct drv_sync *s;
	char *out = NULL;

	QT_REQUIRE_QEMU();
	qd_make_source(base, size, 77);
	ref = qt_read(base, 0, size);
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o",
				"cluster_size=65536", "-b", base, "-F", "raw", img, "16M", NULL),
			 0);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, 0, &top), 0);
	run_threads(top, t, ref, size);
	drv_image_close(top);
	for (i = 0; i < THREADS; i++) {
		if (t[i].failures)
			fail_msg("%u failures; first: %s", t[i].failures, t[i].why);
	}
	if (qt_run_out(&out, "qemu-img", "check", img, NULL) != 0)
		fail_msg("qemu-img check:\n%s", out);
	free(out);
	/* a fresh open: every thread's own blocks hold its last write */
	assert_int_equal(drv_chain_open(spec, DRV_OPEN_RDONLY, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	buf = buf_alloc(size, 4096);
	assert_int_equal(drv_sync_rw(s, DRV_OP_READ, 0, buf, size), 0);
	for (i = 0; i < THREADS; i++) {
		t[i].failures = 0;
		memset(t[i].pending, 0, size / BLK);
		for (j = 0; j < size / BLK; j++)
			verify_block(&t[i], j, buf + j * BLK, true);
		if (t[i].failures)
			fail_msg("after reopen: %s", t[i].why);
		for (j = 0; j < DEPTH; j++) {
			free(t[i].r[j].req.priv);
			buf_free(t[i].r[j].buf);
		}
		free(t[i].own_seq);
		free(t[i].issued_seq);
		free(t[i].pending);
	}
	buf_free(buf);
	drv_sync_free(s);
	drv_image_close(top);
	free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_four_threads),
	};

	log_init("test-qcow2-threads");
	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
