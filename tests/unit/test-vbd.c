// SPDX-License-Identifier: MIT
/*
 * The vbd's request engine on real images: checks and refusals, splitting
 * at max_io_bytes, barrier, flush and FUA ordering (seen through the queue's
 * aio context, and the statistics), pause with requests waiting and resume
 * with a new size, close with requests waiting, injected I/O errors, and
 * the statistics.  The multi-queue data test is test-vbd-threads.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checked.h"
#include "json.h"
#include "qcow2-test-util.h"
#include "vbd-test-util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define IMG_SIZE (8 * MiB)

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t r = rnd();

		memcpy(p + i, &r, MIN(8, len - i));
	}
}

/* A raw file of @size random bytes; its path. */
static const char *make_raw(const char *name, uint64_t size)
{
	const char *path = qt_path(name);
	uint8_t *buf = malloc(size);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_non_null(buf);
	assert_true(fd >= 0);
	fill_random(buf, size);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	free(buf);
	return path;
}

static char *spec_of(const char *type, const char *path)
{
	static char ring[4][PATH_MAX + 16];
	static unsigned next;
	char *s = ring[next++ % 4];

	snprintf(s, PATH_MAX + 16, "%s:%s", type, path);
	return s;
}

struct fx {
	struct tv tv;
	const char *path;
	struct td_vbd_info info;
};

static struct fx *fx_open(const char *type, const char *path, const struct td_vbd_opts *opts)
{
	struct td_vbd_opts none = { .nr_queues = 1 };
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	tv_init(&f->tv);
	f->path = path;
	assert_int_equal(vbd_open(spec_of(type, path), opts ? opts : &none, &f->tv.vbd), 0);
	vbd_get_info(f->tv.vbd, &f->info);
	return f;
}

static void fx_close(struct fx *f)
{
	vbd_close(f->tv.vbd);
	tv_fini(&f->tv);
	free(f);
}

/* ---- open ---- */

static void test_open_info(void **state)
{
	const char *path = make_raw("info.raw", IMG_SIZE);
	struct td_vbd_opts o = { .nr_queues = 2, .queue_depth = 16, .readonly = true };
	struct fx *f = fx_open("raw", path, &o);
	struct td_vbd_info *in = &f->info;

	assert_int_equal(in->size_bytes, IMG_SIZE);
	assert_true(is_power_of_2_u64(in->block_bytes));
	assert_true(in->phys_block_bytes >= in->block_bytes);
	assert_true(in->readonly);
	assert_false(in->can_discard);
	assert_false(in->can_write_zeroes);
	assert_true(in->can_block_status);
	assert_int_equal(in->nr_queues, 2);
	assert_int_equal(in->queue_depth, 16);
	assert_int_equal(in->max_io_bytes, TD_DEFAULT_MAX_IO_BYTES);
	assert_int_equal(in->chain_depth, 1);
	assert_false(in->paused);
	assert_string_equal(in->spec, spec_of("raw", path));
	assert_non_null(vbd_queue(f->tv.vbd, 1));
	assert_null(vbd_queue(f->tv.vbd, 2));
	assert_int_equal(td_queue_index(vbd_queue(f->tv.vbd, 1)), 1);
	fx_close(f);
}

static void test_open_errors(void **state)
{
	const char *path = make_raw("errors.raw", IMG_SIZE);
	struct drv_opt opt = { .key = "l2-cache-size", .value = "1M" };
	struct td_vbd_opts o = { .drv_opts = &opt, .nr_drv_opts = 1 };
	struct td_vbd *vbd = NULL;

	assert_int_equal(vbd_open(spec_of("raw", path), &o, &vbd), -EINVAL);
	o = (struct td_vbd_opts){ .nr_queues = TD_MAX_QUEUES + 1 };
	assert_int_equal(vbd_open(spec_of("raw", path), &o, &vbd), -EINVAL);
	o = (struct td_vbd_opts){ .queue_depth = TD_MAX_QUEUE_DEPTH + 1 };
	assert_int_equal(vbd_open(spec_of("raw", path), &o, &vbd), -EINVAL);
	o = (struct td_vbd_opts){ .nr_queues = 1 };
	assert_int_equal(vbd_open(spec_of("nosuch", path), &o, &vbd), -ENOENT);
	assert_int_equal(vbd_open("raw", &o, &vbd), -EINVAL);
	assert_int_equal(vbd_open(spec_of("raw", qt_path("missing")), &o, &vbd), -ENOENT);
	assert_null(vbd);
	vbd_close(NULL);
}

/* ---- data and refusals ---- */

static void test_rw(void **state)
{
	const char *path = make_raw("rw.raw", IMG_SIZE);
	struct fx *f = fx_open("raw", path, NULL);
	uint8_t *w = malloc(256 * KiB), *r = malloc(256 * KiB), *file;

	fill_random(w, 256 * KiB);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, 0, 1 * MiB, w, 256 * KiB), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_READ, 0, 1 * MiB, r, 256 * KiB), 0);
	assert_memory_equal(w, r, 256 * KiB);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_FLUSH, 0, 0, NULL, 0), 0);
	file = qt_read(path, 1 * MiB, 256 * KiB);
	assert_memory_equal(w, file, 256 * KiB);
	/* zero length: done, nothing touched */
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, 0, 0, w, 0), 0);
	/* write zeroes and discard read back as zeros */
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE_ZEROES, 0, 1 * MiB, NULL, 64 * KiB), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_DISCARD, 0, 1 * MiB + 64 * KiB, NULL, 64 * KiB), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_READ, 0, 1 * MiB, r, 256 * KiB), 0);
	for (unsigned i = 0; i < 128 * KiB; i++)
		assert_int_equal(r[i], 0);
	assert_memory_equal(r + 128 * KiB, w + 128 * KiB, 128 * KiB);
	free(file);
	free(w);
	free(r);
	fx_close(f);
}

static void test_block_status(void **state)
{
	const char *path = qt_path("bs.raw");
	struct fx *f;
	struct tv_req *t;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	assert_int_equal(pwrite(fd, "x", 1, 2 * MiB), 1);
	close(fd);
	f = fx_open("raw", path, NULL);
	t = tv_req_new(&f->tv, 0, TD_OP_BLOCK_STATUS, 0, 2 * MiB, 4 * MiB);
	assert_int_equal(tv_do(&f->tv, 0, t), 0);
	assert_true(t->r.status.flags & DRV_BS_DATA);
	assert_true(t->r.status.len > 0 && t->r.status.len <= 4 * MiB);
	tv_req_free(t);
	fx_close(f);
}

static int submit_one(struct fx *f, enum td_op op, unsigned flags, uint64_t off, uint64_t len)
{
	struct tv_req *t = tv_req_new(&f->tv, 0, op, flags, off, len);
	int err = tv_do(&f->tv, 0, t);

	tv_req_free(t);
	return err;
}

static void test_refusals(void **state)
{
	const char *path = make_raw("refuse.raw", IMG_SIZE);
	struct td_vbd_opts ro = { .readonly = true };
	struct fx *f = fx_open("raw", path, NULL);
	uint32_t bs = f->info.block_bytes;
	struct tv_req *t;

	assert_int_equal(submit_one(f, TD_OP_READ, 0, IMG_SIZE - bs, 2ull * bs), -EINVAL);
	assert_int_equal(submit_one(f, TD_OP_READ, 0, UINT64_MAX - bs + 1, 2ull * bs), -EINVAL);
	assert_int_equal(submit_one(f, TD_OP_WRITE, 0, bs / 2, bs), -EINVAL);
	assert_int_equal(submit_one(f, TD_OP_WRITE, 0, 0, bs + bs / 2), -EINVAL);
	assert_int_equal(submit_one(f, (enum td_op)99, 0, 0, bs), -EINVAL);
	assert_int_equal(submit_one(f, TD_OP_READ, 1u << 20, 0, bs), -EINVAL);
	assert_int_equal(submit_one(f, TD_OP_BLOCK_STATUS, 0, 0, 0), -EINVAL);
	/* an iovec that does not add up to len */
	t = tv_req_new(&f->tv, 0, TD_OP_READ, 0, 0, 2ull * bs);
	t->iov[0].iov_len = bs;
	assert_int_equal(tv_do(&f->tv, 0, t), -EINVAL);
	t->r.iovcnt = IOV_MAX + 1;
	t->done = false;
	t->calls = 0;
	assert_int_equal(tv_do(&f->tv, 0, t), -EINVAL);
	tv_req_free(t);
	fx_close(f);

	f = fx_open("raw", path, &ro);
	assert_int_equal(submit_one(f, TD_OP_WRITE, 0, 0, bs), -EROFS);
	assert_int_equal(submit_one(f, TD_OP_WRITE_ZEROES, 0, 0, bs), -EROFS);
	assert_int_equal(submit_one(f, TD_OP_DISCARD, 0, 0, bs), -EROFS);
	assert_int_equal(submit_one(f, TD_OP_READ, 0, 0, bs), 0);
	assert_int_equal(submit_one(f, TD_OP_FLUSH, 0, 0, 0), 0);
	fx_close(f);
}

/* ---- splitting ---- */

static void test_split(void **state)
{
	const char *path = make_raw("split.raw", IMG_SIZE);
	struct td_vbd_opts o = { .max_io_bytes = 64 * KiB, .queue_depth = 4 };
	struct fx *f = fx_open("raw", path, &o);
	uint64_t bs = f->info.block_bytes, len = 1 * MiB + 3 * bs;
	const uint64_t wsizes[] = { 3 * bs, 100 * KiB, 7 * bs, 600 * KiB, 1 * MiB, 0 };
	uint64_t rsizes[TV_MAX_IOV + 1];
	struct td_vbd_stats st;
	struct tv_req *w, *r;
	uint8_t *file;
	unsigned i;

	assert_int_equal(f->info.max_io_bytes, 64 * KiB);
	w = tv_req_new(&f->tv, 1, TD_OP_WRITE, 0, 2 * MiB + bs, len);
	fill_random(w->buf, len);
	tv_req_split_iov(w, wsizes);
	assert_int_equal(tv_do(&f->tv, 0, w), 0);
	/* read it back through many small elements: pieces cut at TD_SLOT_IOVS */
	r = tv_req_new(&f->tv, 2, TD_OP_READ, 0, 2 * MiB + bs, len);
	for (i = 0; i < TV_MAX_IOV - 1; i++)
		rsizes[i] = 512;
	rsizes[i++] = len;
	rsizes[i] = 0;
	tv_req_split_iov(r, rsizes);
	assert_int_equal(tv_do(&f->tv, 0, r), 0);
	assert_memory_equal(w->buf, r->buf, len);
	file = qt_read(path, 2 * MiB + bs, len);
	assert_memory_equal(w->buf, file, len);
	assert_int_equal(vbd_get_stats(f->tv.vbd, 0, &st), 0);
	assert_int_equal(st.split, 2);
	assert_true(st.pieces >= 2 * div_round_up_u64(len, 64 * KiB));
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.waiting, 0);
	free(file);
	tv_req_free(w);
	tv_req_free(r);
	fx_close(f);
}

/* Many requests on a small pool: the FIFO holds them, in order. */
static void test_fifo(void **state)
{
	const char *path = make_raw("fifo.raw", IMG_SIZE);
	struct td_vbd_opts o = { .queue_depth = 2, .max_io_bytes = 64 * KiB };
	struct fx *f = fx_open("raw", path, &o);
	uint64_t bs = f->info.block_bytes;
	struct tv_req *t[64];
	unsigned i;

	for (i = 0; i < 64; i++) {
		t[i] = tv_req_new(&f->tv, i, TD_OP_WRITE, 0, i * 128 * KiB, 128 * KiB);
		memset(t[i]->buf, (int)i + 1, 128 * KiB);
	}
	tv_logging(&f->tv, 0, true);
	tv_submit(&f->tv, 0, t, 64);
	for (i = 0; i < 64; i++) {
		tv_wait(&f->tv, t[i]);
		assert_int_equal(t[i]->err, 0);
	}
	tv_logging(&f->tv, 0, false);
	/* requests start in submission order: their first aio writes are in order */
	for (i = 0; i + 1 < f->tv.nr_log; i++) {
		const struct tv_ev *a = &f->tv.log[i], *b = &f->tv.log[i + 1];

		if (a->kind == TV_EV_AIO && b->kind == TV_EV_AIO)
			assert_true(a->offset / (128 * KiB) <= b->offset / (128 * KiB));
	}
	for (i = 0; i < 64; i++) {
		uint8_t *file = qt_read(path, i * 128 * KiB + bs, bs);

		assert_int_equal(file[0], i + 1);
		free(file);
		tv_req_free(t[i]);
	}
	fx_close(f);
}

/* ---- ordering ---- */

/* Writes, a barrier write, a write: drain, flush, barrier alone, then the rest. */
static void test_barrier(void **state)
{
	const char *path = make_raw("barrier.raw", IMG_SIZE);
	struct fx *f = fx_open("raw", path, NULL);
	struct tv_req *t[6];
	struct td_vbd_stats st;
	int fsync_at, bar_write, bar_done, last_write;
	unsigned i;

	for (i = 0; i < 6; i++)
		t[i] = tv_req_new(&f->tv, i, TD_OP_WRITE, i == 4 ? TD_REQ_BARRIER : 0,
				  i * 256 * KiB, 256 * KiB);
	tv_logging(&f->tv, 0, true);
	tv_submit(&f->tv, 0, t, 6);
	for (i = 0; i < 6; i++) {
		tv_wait(&f->tv, t[i]);
		assert_int_equal(t[i]->err, 0);
	}
	tv_logging(&f->tv, 0, false);
	fsync_at = tv_find(&f->tv, 0, TV_EV_AIO, AIO_OP_FSYNC, 0);
	assert_true(fsync_at >= 0);
	for (i = 0; i < 4; i++) {
		int done = tv_find(&f->tv, 0, TV_EV_DONE, 0, i);

		assert_true(done >= 0 && done < fsync_at);
	}
	bar_write = tv_find(&f->tv, fsync_at, TV_EV_AIO, AIO_OP_WRITE, 0);
	assert_true(bar_write > fsync_at);
	assert_int_equal(f->tv.log[bar_write].offset, 4 * 256 * KiB);
	bar_done = tv_find(&f->tv, 0, TV_EV_DONE, 0, 4);
	last_write = tv_find(&f->tv, bar_write + 1, TV_EV_AIO, AIO_OP_WRITE, 0);
	assert_true(last_write > bar_done);
	assert_int_equal(f->tv.log[last_write].offset, 5 * 256 * KiB);
	vbd_get_stats(f->tv.vbd, -1, &st);
	assert_int_equal(st.barriers, 1);
	assert_int_equal(st.flushes_added, 1);
	for (i = 0; i < 6; i++)
		tv_req_free(t[i]);
	fx_close(f);
}

/* A barrier with nothing written since the last flush needs no flush. */
static void test_barrier_clean(void **state)
{
	const char *path = make_raw("barrier2.raw", IMG_SIZE);
	struct fx *f = fx_open("raw", path, NULL);
	struct td_vbd_stats st;
	uint8_t buf[4096];

	assert_int_equal(tv_io(&f->tv, 0, TD_OP_READ, TD_REQ_BARRIER, 0, buf, sizeof(buf)), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, 0, 0, buf, sizeof(buf)), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_FLUSH, TD_REQ_BARRIER, 0, NULL, 0), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, TD_REQ_BARRIER, 0, buf, sizeof(buf)), 0);
	vbd_get_stats(f->tv.vbd, -1, &st);
	assert_int_equal(st.barriers, 3);
	assert_int_equal(st.flushes_added, 0);
	fx_close(f);
}

/*
 * A FLUSH on one queue after a write completed on another: the flush is an
 * fdatasync of the file both share, issued after that completion and
 * finished before the flush completes.
 */
static void test_flush_across_queues(void **state)
{
	const char *path = make_raw("flush.raw", IMG_SIZE);
	struct td_vbd_opts o = { .nr_queues = 2 };
	struct fx *f = fx_open("raw", path, &o);
	struct tv_req *w = tv_req_new(&f->tv, 1, TD_OP_WRITE, 0, 0, 64 * KiB);
	struct tv_req *fl = tv_req_new(&f->tv, 2, TD_OP_FLUSH, 0, 0, 0);
	int s, d;

	assert_int_equal(tv_do(&f->tv, 1, w), 0);
	tv_logging(&f->tv, 0, true);
	assert_int_equal(tv_do(&f->tv, 0, fl), 0);
	tv_logging(&f->tv, 0, false);
	s = tv_find(&f->tv, 0, TV_EV_AIO, AIO_OP_FSYNC, 0);
	d = tv_find(&f->tv, 0, TV_EV_DONE, 0, 2);
	assert_true(s >= 0 && d > s);
	tv_req_free(w);
	tv_req_free(fl);
	fx_close(f);
}

/* Native FUA (raw): the write's own fdatasync follows it, no flush added. */
static void test_fua_native(void **state)
{
	const char *path = make_raw("fua.raw", IMG_SIZE);
	struct fx *f = fx_open("raw", path, NULL);
	struct tv_req *t = tv_req_new(&f->tv, 7, TD_OP_WRITE, TD_REQ_FUA, 0, 64 * KiB);
	struct td_vbd_stats st;
	int w, s, d;

	assert_true(f->info.native_fua);
	tv_logging(&f->tv, 0, true);
	assert_int_equal(tv_do(&f->tv, 0, t), 0);
	tv_logging(&f->tv, 0, false);
	w = tv_find(&f->tv, 0, TV_EV_AIO, AIO_OP_WRITE, 0);
	s = tv_find(&f->tv, 0, TV_EV_AIO, AIO_OP_FSYNC, 0);
	d = tv_find(&f->tv, 0, TV_EV_DONE, 0, 7);
	assert_true(w >= 0 && s > w && d > s);
	vbd_get_stats(f->tv.vbd, -1, &st);
	assert_int_equal(st.flushes_added, 0);
	tv_req_free(t);
	fx_close(f);
}

/* qcow2 over a raw backing file, with qemu-img. */
static const char *make_qcow2(const char *name, const char *backing, uint64_t size)
{
	const char *path = qt_path(name);
	char sz[32];

	snprintf(sz, sizeof(sz), "%" PRIu64, size);
	if (backing)
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
					"-F", "raw", path, sz, NULL),
				 0);
	else
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", path, sz, NULL),
				 0);
	return path;
}

/* Emulated FUA (qcow2): a flush after the write, before it completes. */
static void test_fua_emulated(void **state)
{
	const char *base, *path;
	struct fx *f;
	struct td_vbd_stats st;
	uint8_t *buf = malloc(64 * KiB), *back;

	QT_REQUIRE_QEMU();
	base = make_raw("fua-base.raw", IMG_SIZE);
	path = make_qcow2("fua.qcow2", base, IMG_SIZE);
	f = fx_open("qcow2", path, NULL);
	assert_false(f->info.native_fua);
	assert_int_equal(f->info.chain_depth, 2);
	fill_random(buf, 64 * KiB);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, TD_REQ_FUA, 1 * MiB, buf, 64 * KiB), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE_ZEROES, TD_REQ_FUA, 2 * MiB, NULL, 64 * KiB),
			 0);
	vbd_get_stats(f->tv.vbd, -1, &st);
	assert_int_equal(st.flushes_added, 2);
	/* durable means on disk for another reader, with the vbd still open */
	assert_int_equal(qt_run("qemu-img", "check", "-q", "-U", path, NULL), 0);
	fx_close(f);
	assert_int_equal(qt_run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", path,
				qt_path("fua-out.raw"), NULL),
			 0);
	back = qt_read(qt_path("fua-out.raw"), 1 * MiB, 64 * KiB);
	assert_memory_equal(buf, back, 64 * KiB);
	free(back);
	back = qt_read(qt_path("fua-out.raw"), 2 * MiB, 64 * KiB);
	for (unsigned i = 0; i < 64 * KiB; i++)
		assert_int_equal(back[i], 0);
	free(back);
	free(buf);
}

/* ---- errors ---- */

static void test_io_error(void **state)
{
	const char *path = make_raw("eio.raw", IMG_SIZE);
	struct td_vbd_opts o = { .max_io_bytes = 64 * KiB };
	struct fx *f = fx_open("raw", path, &o);
	struct tv_req *t[3];
	struct td_vbd_stats st;
	unsigned i;

	tv_logging(&f->tv, 0, true);
	/* the second piece of the first write fails; the rest is unaffected */
	pthread_mutex_lock(&f->tv.lock);
	f->tv.fail_err = -EIO;
	f->tv.fail_op = AIO_OP_WRITE;
	f->tv.fail_skip = 1;
	pthread_mutex_unlock(&f->tv.lock);
	for (i = 0; i < 3; i++)
		t[i] = tv_req_new(&f->tv, i, TD_OP_WRITE, 0, i * 512 * KiB, 256 * KiB);
	tv_submit(&f->tv, 0, t, 3);
	for (i = 0; i < 3; i++)
		tv_wait(&f->tv, t[i]);
	assert_int_equal(t[0]->err, -EIO);
	assert_int_equal(t[1]->err, 0);
	assert_int_equal(t[2]->err, 0);
	/* a barrier whose flush fails fails, and the queue goes on */
	pthread_mutex_lock(&f->tv.lock);
	f->tv.fail_err = -EIO;
	f->tv.fail_op = AIO_OP_FSYNC;
	f->tv.fail_skip = 0;
	pthread_mutex_unlock(&f->tv.lock);
	t[0]->r.flags = TD_REQ_BARRIER;
	t[0]->done = false;
	t[0]->calls = 0;
	t[1]->done = false;
	t[1]->calls = 0;
	tv_submit(&f->tv, 0, t, 2);
	tv_wait(&f->tv, t[0]);
	tv_wait(&f->tv, t[1]);
	assert_int_equal(t[0]->err, -EIO);
	assert_int_equal(t[1]->err, 0);
	tv_logging(&f->tv, 0, false);
	vbd_get_stats(f->tv.vbd, -1, &st);
	assert_int_equal(st.op[TD_OP_WRITE].errors, 2);
	assert_int_equal(st.op[TD_OP_WRITE].count, 5);
	for (i = 0; i < 3; i++)
		tv_req_free(t[i]);
	fx_close(f);
}

/* ---- pause and resume ---- */

struct resize_seen {
	struct td_resize_notifier n;
	uint64_t old_size, new_size;
	unsigned calls;
};

static void on_resize(struct td_resize_notifier *n, uint64_t old_size, uint64_t new_size)
{
	struct resize_seen *r = n->opaque;

	r->old_size = old_size;
	r->new_size = new_size;
	r->calls++;
}

static void test_pause_resume(void **state)
{
	const char *path = make_raw("pause.raw", IMG_SIZE);
	struct td_vbd_opts o = { .nr_queues = 2 };
	struct fx *f = fx_open("raw", path, &o);
	struct resize_seen rs = { .n = { .fn = on_resize, .opaque = &rs } };
	struct tv_req *t[4];
	struct td_vbd_stats st;
	struct td_vbd_info in;
	unsigned i;

	vbd_resize_notifier_add(f->tv.vbd, &rs.n);
	assert_int_equal(vbd_resume(f->tv.vbd, NULL), -EALREADY);
	assert_int_equal(vbd_pause(f->tv.vbd), 0);
	assert_int_equal(vbd_pause(f->tv.vbd), -EALREADY);
	vbd_get_info(f->tv.vbd, &in);
	assert_true(in.paused);
	for (i = 0; i < 4; i++) {
		t[i] = tv_req_new(&f->tv, i, i % 2 ? TD_OP_READ : TD_OP_WRITE, 0, (i / 2) * 1 * MiB,
				  64 * KiB);
		memset(t[i]->buf, 0x5a, 64 * KiB);
	}
	tv_submit(&f->tv, 0, t, 2);
	tv_submit(&f->tv, 1, t + 2, 2);
	/* a round trip through each queue: they have seen the requests, and wait */
	tv_submit(&f->tv, 0, NULL, 0);
	tv_submit(&f->tv, 1, NULL, 0);
	for (i = 0; i < 4; i++)
		assert_false(tv_is_done(&f->tv, t[i]));
	vbd_get_stats(f->tv.vbd, -1, &st);
	assert_int_equal(st.waiting, 4);
	assert_int_equal(st.inflight, 0);
	/* the image grows while paused */
	assert_int_equal(truncate(path, 2 * IMG_SIZE), 0);
	assert_int_equal(vbd_resume(f->tv.vbd, NULL), 0);
	for (i = 0; i < 4; i++) {
		tv_wait(&f->tv, t[i]);
		assert_int_equal(t[i]->err, 0);
	}
	assert_int_equal(rs.calls, 1);
	assert_int_equal(rs.old_size, IMG_SIZE);
	assert_int_equal(rs.new_size, 2 * IMG_SIZE);
	vbd_get_info(f->tv.vbd, &in);
	assert_false(in.paused);
	assert_int_equal(in.size_bytes, 2 * IMG_SIZE);
	/* the new end is reachable; the writes that waited landed */
	assert_int_equal(submit_one(f, TD_OP_WRITE, 0, 2 * IMG_SIZE - 64 * KiB, 64 * KiB), 0);
	assert_int_equal(submit_one(f, TD_OP_WRITE, 0, 2 * IMG_SIZE, 64 * KiB), -EINVAL);
	{
		uint8_t *file = qt_read(path, 0, 64 * KiB);

		assert_int_equal(file[0], 0x5a);
		free(file);
	}
	vbd_resize_notifier_del(f->tv.vbd, &rs.n);
	for (i = 0; i < 4; i++)
		tv_req_free(t[i]);
	fx_close(f);
}

/* qemu-img changes the image while it is paused; resume sees it from disk. */
static void test_pause_qemu_img(void **state)
{
	const char *path;
	struct fx *f;
	struct td_vbd_info in;
	uint8_t *buf = malloc(64 * KiB), *rd = malloc(64 * KiB);
	char *out = NULL;

	QT_REQUIRE_QEMU();
	path = make_qcow2("pause.qcow2", NULL, IMG_SIZE);
	f = fx_open("qcow2", path, NULL);
	fill_random(buf, 64 * KiB);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, 0, 0, buf, 64 * KiB), 0);
	assert_int_equal(vbd_pause(f->tv.vbd), 0);
	/* everything is on disk and the file is free for qemu-img */
	assert_int_equal(qt_run("qemu-img", "check", "-q", path, NULL), 0);
	assert_int_equal(qt_run("qemu-img", "snapshot", "-c", "snap1", path, NULL), 0);
	assert_int_equal(qt_run("qemu-img", "resize", "-q", path, "16M", NULL), 0);
	assert_int_equal(vbd_resume(f->tv.vbd, NULL), 0);
	vbd_get_info(f->tv.vbd, &in);
	assert_int_equal(in.size_bytes, 16 * MiB);
	/* after the snapshot, the write copies the shared cluster */
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, 0, 12 * MiB, buf, 64 * KiB), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_WRITE, 0, 4096, buf, 4096), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_READ, 0, 12 * MiB, rd, 64 * KiB), 0);
	assert_memory_equal(buf, rd, 64 * KiB);
	fx_close(f);
	assert_int_equal(qt_run("qemu-img", "check", "-q", path, NULL), 0);
	assert_int_equal(qt_run_out(&out, "qemu-img", "snapshot", "-l", path, NULL), 0);
	assert_non_null(strstr(out, "snap1"));
	free(out);
	free(buf);
	free(rd);
}

static void test_resume_new_spec(void **state)
{
	const char *a = make_raw("spec-a.raw", IMG_SIZE), *b = make_raw("spec-b.raw", IMG_SIZE);
	struct fx *f = fx_open("raw", a, NULL);
	struct td_vbd_info in;
	uint8_t *buf = malloc(4096), *want = qt_read(b, 8192, 4096);

	assert_int_equal(vbd_pause(f->tv.vbd), 0);
	assert_int_not_equal(vbd_resume(f->tv.vbd, spec_of("raw", qt_path("nonexistent"))), 0);
	vbd_get_info(f->tv.vbd, &in);
	assert_true(in.paused);
	assert_string_equal(in.spec, spec_of("raw", a));
	assert_int_equal(vbd_resume(f->tv.vbd, spec_of("raw", b)), 0);
	vbd_get_info(f->tv.vbd, &in);
	assert_string_equal(in.spec, spec_of("raw", b));
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_READ, 0, 8192, buf, 4096), 0);
	assert_memory_equal(buf, want, 4096);
	free(buf);
	free(want);
	fx_close(f);
}

/* Close with requests waiting in a paused vbd: each fails with -ESHUTDOWN. */
static void test_close_waiting(void **state)
{
	const char *path = make_raw("close.raw", IMG_SIZE);
	struct fx *f = fx_open("raw", path, NULL);
	struct tv_req *t[3];
	unsigned i;

	assert_int_equal(vbd_pause(f->tv.vbd), 0);
	for (i = 0; i < 3; i++)
		t[i] = tv_req_new(&f->tv, i, TD_OP_WRITE, 0, i * 4096 * 16, 64 * KiB);
	tv_submit(&f->tv, 0, t, 3);
	vbd_close(f->tv.vbd);
	for (i = 0; i < 3; i++) {
		tv_wait(&f->tv, t[i]);
		assert_int_equal(t[i]->err, -ESHUTDOWN);
		tv_req_free(t[i]);
	}
	tv_fini(&f->tv);
	free(f);
}

/* ---- statistics ---- */

static void test_stats(void **state)
{
	const char *path = make_raw("stats.raw", IMG_SIZE);
	struct td_vbd_opts o = { .nr_queues = 2 };
	struct fx *f = fx_open("raw", path, &o);
	uint8_t *buf = malloc(64 * KiB);
	struct td_vbd_stats st, q1;
	const struct td_op_stats *rd;
	uint64_t sum = 0, p50, p99, p999;
	json_t *j, *ops;
	unsigned i;

	for (i = 0; i < 20; i++)
		assert_int_equal(tv_io(&f->tv, i % 2, TD_OP_READ, 0, i * 64 * KiB, buf, 64 * KiB),
				 0);
	for (i = 0; i < 5; i++)
		assert_int_equal(tv_io(&f->tv, 1, TD_OP_WRITE, 0, i * 4096, buf, 4096), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_FLUSH, 0, 0, NULL, 0), 0);
	assert_int_equal(tv_io(&f->tv, 0, TD_OP_READ, 0, IMG_SIZE, buf, 4096), -EINVAL);
	assert_int_equal(vbd_get_stats(f->tv.vbd, -1, &st), 0);
	assert_int_equal(vbd_get_stats(f->tv.vbd, 1, &q1), 0);
	assert_int_equal(vbd_get_stats(f->tv.vbd, 2, &q1), -EINVAL);
	assert_int_equal(vbd_get_stats(f->tv.vbd, 1, &q1), 0);
	rd = &st.op[TD_OP_READ];
	assert_int_equal(rd->count, 21);
	assert_int_equal(rd->errors, 1);
	assert_int_equal(rd->bytes, 20 * 64 * KiB);
	assert_int_equal(st.op[TD_OP_WRITE].count, 5);
	assert_int_equal(st.op[TD_OP_WRITE].bytes, 5 * 4096);
	assert_int_equal(st.op[TD_OP_FLUSH].count, 1);
	assert_int_equal(q1.op[TD_OP_READ].count, 10);
	assert_int_equal(q1.op[TD_OP_WRITE].count, 5);
	for (i = 0; i < TD_HIST_BUCKETS; i++)
		sum += rd->hist_ns[i];
	assert_int_equal(sum, rd->count);
	p50 = td_stats_percentile_ns(rd, 0.5);
	p99 = td_stats_percentile_ns(rd, 0.99);
	p999 = td_stats_percentile_ns(rd, 0.999);
	assert_true(p50 > 0 && p50 <= p99 && p99 <= p999);
	assert_int_equal(td_stats_percentile_ns(&st.op[TD_OP_DISCARD], 0.5), 0);

	j = vbd_stats_json(f->tv.vbd, true);
	assert_non_null(j);
	ops = json_object_get(j, "ops");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ops, "read"), "count")),
			 21);
	assert_non_null(json_object_get(json_object_get(json_object_get(ops, "read"), "latency_ns"),
					"p99.9"));
	assert_int_equal(json_array_size(json_object_get(j, "queues")), 2);
	json_decref(j);
	free(buf);
	fx_close(f);
}

/* A one-bucket histogram: the percentile interpolates within it. */
static void test_percentile(void **state)
{
	struct td_op_stats s = { .count = 100 };

	s.hist_ns[10] = 100; /* [1024, 2048) */
	assert_int_equal(td_stats_percentile_ns(&s, 0.5), 1536);
	assert_int_equal(td_stats_percentile_ns(&s, 1.0), 2048);
	s.hist_ns[20] = 100;
	assert_true(td_stats_percentile_ns(&s, 0.99) >= 1u << 20);
	assert_string_equal(td_op_name(TD_OP_WRITE_ZEROES), "write_zeroes");
	assert_string_equal(td_op_name((enum td_op)42), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_info),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_rw),
		cmocka_unit_test(test_block_status),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_barrier),
		cmocka_unit_test(test_barrier_clean),
		cmocka_unit_test(test_flush_across_queues),
		cmocka_unit_test(test_fua_native),
		cmocka_unit_test(test_fua_emulated),
		cmocka_unit_test(test_io_error),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_pause_qemu_img),
		cmocka_unit_test(test_resume_new_spec),
		cmocka_unit_test(test_close_waiting),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_percentile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
