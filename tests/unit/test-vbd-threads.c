// SPDX-License-Identifier: MIT
/*
 * Three queue threads drive one vbd at once, each keeping several requests
 * in flight from its own completions, while the test's thread reads the
 * statistics and pauses and resumes the vbd in the middle of the load.
 * Once on a raw image and once on a qcow2 over a raw backing file.
 *
 * The disk is cut into 16 KiB chunks owned by the threads in turn, so that
 * every 64 KiB qcow2 cluster is allocated and copied-on-write from three
 * queues at once while each thread still knows exactly what its own blocks
 * hold: reads check every block against the thread's model (the original
 * bytes, zeros, or a self-describing block from a known write).  Requests
 * of up to a chunk are split at 8 KiB; writes carry FUA or a barrier now
 * and then, and flushes are mixed in.  Afterwards the image is compared
 * block by block with the models, through qemu-img for the qcow2, which
 * qemu-img check must find clean.  Built with TSan by `make check-tsan`.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checked.h"
#include "buf.h"
#include "evloop.h"
#include "qcow2-test-util.h"
#include "tapdisk/vbd.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define DISK (16 * MiB)
#define BLK 4096u
#define CHUNK_BLOCKS 4u
#define THREADS 3u
#define DEPTH 8u
#define MAGIC 0x71746170766264ull /* "qtapvbd" */
#define SEQ_ZERO UINT64_MAX

struct th;

struct th_req {
	struct td_request r;
	struct iovec iov[2];
	uint8_t *buf;
	struct th *t;
	uint64_t blk;
	unsigned nr_blocks;
	uint64_t seq; /* writes: the seq written; SEQ_ZERO for write zeroes */
};

struct th {
	unsigned id;
	struct td_queue *q;
	const uint8_t *orig; /* the disk's bytes at the start */
	uint64_t rng;
	uint64_t *seq; /* per block: what it holds, 0 = original (only own blocks) */
	uint8_t *busy; /* per block: a request in flight */
	unsigned to_issue, outstanding, completed;
	uint64_t next_seq;
	unsigned failures;
	char why[200];
	struct th_req r[DEPTH];
	struct evloop_call start;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned threads_done;
static _Atomic unsigned progress;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_block(uint8_t *b, uint64_t blk, uint64_t seq)
{
	uint64_t h[3] = { MAGIC, blk, seq }, x = blk * 0x9e3779b97f4a7c15ull ^ seq;

	memcpy(b, h, sizeof(h));
	for (unsigned i = sizeof(h); i < BLK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
}

/* Does @b hold what block @blk should after a write of @seq (or the start)? */
static bool block_ok(const uint8_t *orig, const uint8_t *b, uint64_t blk, uint64_t seq)
{
	static __thread uint8_t want[BLK];

	if (seq == 0)
		return memcmp(b, orig + blk * BLK, BLK) == 0;
	if (seq == SEQ_ZERO)
		memset(want, 0, BLK);
	else
		fill_block(want, blk, seq);
	return memcmp(b, want, BLK) == 0;
}

static void th_fail(struct th *t, const char *what, uint64_t blk)
{
	if (!t->failures++)
		snprintf(t->why, sizeof(t->why), "queue %u: block %" PRIu64 ": %s", t->id, blk,
			 what);
}

static void th_issue(struct th *t, struct th_req *r);

static void th_done(struct td_request *req, int err)
{
	struct th_req *r = req->opaque;
	struct th *t = r->t;
	unsigned i;

	if (err)
		th_fail(t, strerror(-err), r->blk);
	for (i = 0; i < r->nr_blocks; i++) {
		uint64_t b = r->blk + i;

		if (req->op == TD_OP_READ && !err &&
		    !block_ok(t->orig, r->buf + (size_t)i * BLK, b, t->seq[b]))
			th_fail(t, "read back something else than was written", b);
		if ((req->op == TD_OP_WRITE || req->op == TD_OP_WRITE_ZEROES) && !err)
			t->seq[b] = r->seq;
		t->busy[b] = 0;
	}
	t->outstanding--;
	t->completed++;
	atomic_fetch_add(&progress, 1);
	if (t->to_issue) {
		th_issue(t, r);
		return;
	}
	if (t->outstanding == 0) {
		pthread_mutex_lock(&lock);
		threads_done++;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
}

/* A free run of 1..CHUNK_BLOCKS own blocks in one chunk, or false. */
static bool pick_range(struct th *t, uint64_t *blk, unsigned *n)
{
	uint64_t chunks = DISK / BLK / CHUNK_BLOCKS;

	for (unsigned tries = 0; tries < 8; tries++) {
		uint64_t c = (rnd(&t->rng) % (chunks / THREADS)) * THREADS + t->id;
		unsigned first = (unsigned)(rnd(&t->rng) % CHUNK_BLOCKS);
		unsigned len = 1 + (unsigned)(rnd(&t->rng) % (CHUNK_BLOCKS - first)), i;
		bool free = true;

		if (c >= chunks)
			continue;
		for (i = 0; i < len; i++)
			free = free && !t->busy[c * CHUNK_BLOCKS + first + i];
		if (free) {
			*blk = c * CHUNK_BLOCKS + first;
			*n = len;
			return true;
		}
	}
	return false;
}

static void th_build(struct th *t, struct th_req *r)
{
	unsigned dice = (unsigned)(rnd(&t->rng) % 100), i;
	struct td_request *req = &r->r;

	*req = (struct td_request){ .done = th_done, .opaque = r };
	r->nr_blocks = 0;
	r->blk = 0;
	if (dice < 4 || !pick_range(t, &r->blk, &r->nr_blocks)) {
		req->op = TD_OP_FLUSH;
		req->flags = dice < 2 ? TD_REQ_BARRIER : 0;
		r->nr_blocks = 0;
		return;
	}
	req->offset = r->blk * BLK;
	req->len = (uint64_t)r->nr_blocks * BLK;
	for (i = 0; i < r->nr_blocks; i++)
		t->busy[r->blk + i] = 1;
	if (dice < 45) {
		req->op = TD_OP_READ;
	} else if (dice < 50) {
		req->op = TD_OP_WRITE_ZEROES;
		req->flags = dice == 49 ? TD_REQ_FUA : 0;
		r->seq = SEQ_ZERO;
		return;
	} else {
		req->op = TD_OP_WRITE;
		req->flags = dice >= 97 ? TD_REQ_BARRIER : dice >= 94 ? TD_REQ_FUA : 0;
		r->seq = ++t->next_seq;
		for (i = 0; i < r->nr_blocks; i++)
			fill_block(r->buf + (size_t)i * BLK, r->blk + i, r->seq);
	}
	/* two iovec elements, cut at a random sector */
	{
		size_t cut = (size_t)(rnd(&t->rng) % (req->len / 512)) * 512;

		r->iov[0] = (struct iovec){ .iov_base = r->buf, .iov_len = cut };
		r->iov[1] = (struct iovec){ .iov_base = r->buf + cut, .iov_len = req->len - cut };
		req->iov = r->iov;
		req->iovcnt = 2;
	}
}

static void th_issue(struct th *t, struct th_req *r)
{
	t->to_issue--;
	t->outstanding++;
	th_build(t, r);
	vbd_submit(t->q, &r->r);
}

static void th_start(struct evloop_call *call)
{
	struct th *t = call->opaque;

	for (unsigned i = 0; i < DEPTH && t->to_issue; i++)
		th_issue(t, &t->r[i]);
}

static void th_init(struct th *t, unsigned id, struct td_vbd *vbd, const uint8_t *orig,
		    unsigned ops)
{
	uint64_t blocks = DISK / BLK;

	memset(t, 0, sizeof(*t));
	t->id = id;
	t->q = vbd_queue(vbd, id);
	t->orig = orig;
	t->rng = 0x9e3779b97f4a7c15ull * (id + 1);
	t->seq = calloc(blocks, sizeof(*t->seq));
	t->busy = calloc(blocks, 1);
	t->to_issue = ops;
	assert_non_null(t->seq);
	assert_non_null(t->busy);
	for (unsigned i = 0; i < DEPTH; i++) {
		t->r[i].t = t;
		t->r[i].buf = buf_alloc(CHUNK_BLOCKS * BLK, 4096);
		assert_non_null(t->r[i].buf);
	}
	t->start = (struct evloop_call){ .fn = th_start, .opaque = t };
}

static void th_fini(struct th *t)
{
	for (unsigned i = 0; i < DEPTH; i++)
		buf_free(t->r[i].buf);
	free(t->seq);
	free(t->busy);
}

static unsigned ops_per_thread(void)
{
	const char *vg = getenv("QTAP_VALGRIND");

	return vg && strcmp(vg, "1") == 0 ? 150 : 4000;
}

/* The whole run on the vbd of @spec; the threads' models in @t. */
static void run_load(const char *spec, const uint8_t *orig, struct th *t)
{
	struct td_vbd_opts o = { .nr_queues = THREADS, .queue_depth = 6, .max_io_bytes = 8 * KiB };
	unsigned ops = ops_per_thread(), i, paused = 0;
	struct td_vbd_stats st;
	struct td_vbd *vbd;

	assert_int_equal(vbd_open(spec, &o, &vbd), 0);
	threads_done = 0;
	atomic_store(&progress, 0);
	for (i = 0; i < THREADS; i++)
		th_init(&t[i], i, vbd, orig, ops);
	for (i = 0; i < THREADS; i++)
		evloop_post(td_queue_loop(t[i].q), &t[i].start);
	pthread_mutex_lock(&lock);
	while (threads_done < THREADS) {
		struct timespec ts;

		pthread_mutex_unlock(&lock);
		/* the control thread at work meanwhile: stats, and one pause */
		json_decref(vbd_stats_json(vbd, true));
		if (!paused && atomic_load(&progress) > ops * THREADS / 3) {
			assert_int_equal(vbd_pause(vbd), 0);
			assert_int_equal(vbd_get_stats(vbd, -1, &st), 0);
			assert_int_equal(st.inflight, 0);
			assert_int_equal(vbd_resume(vbd, NULL), 0);
			paused = 1;
		}
		pthread_mutex_lock(&lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (threads_done < THREADS)
			pthread_cond_timedwait(&cond, &lock, &ts);
	}
	pthread_mutex_unlock(&lock);
	assert_int_equal(paused, 1);
	assert_int_equal(vbd_get_stats(vbd, -1, &st), 0);
	vbd_close(vbd);
	for (i = 0; i < THREADS; i++) {
		if (t[i].failures)
			fail_msg("%s (%u failures)", t[i].why, t[i].failures);
		assert_int_equal(t[i].completed, ops);
	}
	{
		uint64_t total = 0, errors = 0;

		for (i = 0; i < TD_OP_COUNT; i++) {
			total += st.op[i].count;
			errors += st.op[i].errors;
		}
		assert_int_equal(total, (uint64_t)ops * THREADS);
		assert_int_equal(errors, 0);
		assert_true(st.split > 0);
		assert_true(st.barriers > 0);
	}
}

/* Every block of @disk (the final bytes) as the models say. */
static void check_disk(const uint8_t *orig, const uint8_t *disk, struct th *t)
{
	for (uint64_t b = 0; b < DISK / BLK; b++) {
		const struct th *owner = &t[(b / CHUNK_BLOCKS) % THREADS];

		if (!block_ok(orig, disk + b * BLK, b, owner->seq[b]))
			fail_msg("block %" PRIu64 " does not hold its last write", b);
	}
}

static uint8_t *make_random_file(const char *path)
{
	uint8_t *buf = malloc(DISK);
	uint64_t s = 0x2545f4914f6cdd1dull;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_non_null(buf);
	assert_true(fd >= 0);
	for (uint64_t i = 0; i < DISK; i += 8) {
		uint64_t r = rnd(&s);

		memcpy(buf + i, &r, 8);
	}
	assert_int_equal(pwrite(fd, buf, DISK, 0), (ssize_t)DISK);
	close(fd);
	return buf;
}

static void test_raw(void **state)
{
	const char *path = qt_path("threads.raw");
	uint8_t *orig = make_random_file(path), *disk;
	struct th t[THREADS];
	char spec[PATH_MAX + 8];

	snprintf(spec, sizeof(spec), "raw:%s", path);
	run_load(spec, orig, t);
	disk = qt_read(path, 0, DISK);
	check_disk(orig, disk, t);
	for (unsigned i = 0; i < THREADS; i++)
		th_fini(&t[i]);
	free(disk);
	free(orig);
}

static void test_qcow2_backing(void **state)
{
	const char *base = qt_path("threads-base.raw"), *top = qt_path("threads.qcow2");
	const char *out = qt_path("threads-out.raw");
	uint8_t *orig, *disk;
	struct th t[THREADS];
	char spec[PATH_MAX + 8];

	QT_REQUIRE_QEMU();
	orig = make_random_file(base);
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw",
				top, NULL),
			 0);
	snprintf(spec, sizeof(spec), "qcow2:%s", top);
	run_load(spec, orig, t);
	assert_int_equal(qt_run("qemu-img", "check", "-q", top, NULL), 0);
	assert_int_equal(qt_run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", top, out, NULL),
			 0);
	disk = qt_read(out, 0, DISK);
	check_disk(orig, disk, t);
	for (unsigned i = 0; i < THREADS; i++)
		th_fini(&t[i]);
	free(disk);
	free(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_qcow2_backing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
