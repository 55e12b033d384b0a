// SPDX-License-Identifier: MIT
/*
 * The qcow2 L2 slice cache on a real file: hits, misses, one read for many
 * waiters, LRU eviction, lookups parked on a fully pinned cache, read
 * errors, the default sizing, and several threads at once.  Each slice of
 * the file holds its own index, so a wrong slice is visible.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aio.h"
#include "checked.h"
#include "evloop.h"
#include "qcow2/cache.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"

#define SLICE 4096u
#define FILE_SLICES 64u

struct env {
	struct evloop *loop;
	struct aio_ctx *aio;
	struct aio_file *file;
	struct qcow2_l2_cache *cache;
};

/* A lookup and what it was given. */
struct look {
	struct qcow2_l2_wait w;
	struct qcow2_l2_slice *slice;
	int err;
	int calls;
};

static void look_done(struct qcow2_l2_wait *w, struct qcow2_l2_slice *slice, int err)
{
	struct look *l = w->opaque;

	l->slice = slice;
	l->err = err;
	l->calls++;
}

static const char *make_file(void)
{
	const char *path = qt_path("slices");
	uint32_t buf[SLICE / 4];
	unsigned i, j;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	for (i = 0; i < FILE_SLICES; i++) {
		for (j = 0; j < SLICE / 4; j++)
			buf[j] = i;
		assert_int_equal(pwrite(fd, buf, SLICE, (off_t)i * SLICE), SLICE);
	}
	close(fd);
	return path;
}

static void env_init(struct env *e, unsigned slices)
{
	assert_int_equal(evloop_new(&e->loop), 0);
	assert_int_equal(aio_ctx_new(e->loop, NULL, &e->aio), 0);
	assert_int_equal(aio_file_open(make_file(), AIO_FILE_RDONLY, &e->file), 0);
	assert_int_equal(qcow2_l2_cache_new(e->file, "test", SLICE, slices, &e->cache), 0);
}

static void env_fini(struct env *e)
{
	qcow2_l2_cache_free(e->cache);
	aio_file_close(e->file);
	aio_ctx_free(e->aio);
	evloop_free(e->loop);
}

static void expect_slice(const struct qcow2_l2_slice *s, unsigned index)
{
	const uint8_t *d = qcow2_l2_slice_data(s);
	uint32_t v;

	assert_int_equal(qcow2_l2_slice_offset(s), (uint64_t)index * SLICE);
	memcpy(&v, d, 4);
	assert_int_equal(v, index);
	memcpy(&v, d + SLICE - 4, 4);
	assert_int_equal(v, index);
}

/* Start a lookup of slice @index; returns _get's result. */
static int look(struct env *e, struct look *l, unsigned index)
{
	*l = (struct look){ .w = { .fn = look_done, .opaque = l, .loop = e->loop } };
	return qcow2_l2_cache_get(e->cache, (uint64_t)index * SLICE, e->aio, &l->w, &l->slice);
}

/* Run the loop until @l has been called back. */
static void wait_for(struct env *e, struct look *l)
{
	uint64_t deadline = evloop_now_ns() + 10000000000ull;

	while (l->calls == 0) {
		assert_true(evloop_now_ns() < deadline);
		evloop_run_once(e->loop, 100000000);
	}
	assert_int_equal(l->calls, 1);
}

/* Look up @index and wait for it: the slice, pinned. */
static struct qcow2_l2_slice *get_now(struct env *e, unsigned index)
{
	struct look l;
	int err = look(e, &l, index);

	if (err == -EINPROGRESS) {
		wait_for(e, &l);
		err = l.err;
	}
	assert_int_equal(err, 0);
	expect_slice(l.slice, index);
	return l.slice;
}

static struct qcow2_l2_cache_stats stats(struct env *e)
{
	struct qcow2_l2_cache_stats st;

	qcow2_l2_cache_get_stats(e->cache, &st);
	return st;
}

static void test_miss_then_hit(void **state)
{
	struct env e;
	struct look l;

	env_init(&e, 4);
	assert_int_equal(look(&e, &l, 3), -EINPROGRESS);
	assert_int_equal(l.calls, 0); /* never called back from inside _get */
	wait_for(&e, &l);
	assert_int_equal(l.err, 0);
	expect_slice(l.slice, 3);
	qcow2_l2_cache_put(e.cache, l.slice);
	assert_int_equal(look(&e, &l, 3), 0);
	expect_slice(l.slice, 3);
	qcow2_l2_cache_put(e.cache, l.slice);
	assert_int_equal(stats(&e).hits, 1);
	assert_int_equal(stats(&e).misses, 1);
	assert_int_equal(stats(&e).reads, 1);
	env_fini(&e);
}

/* Three lookups of a slice being read share the one read. */
static void test_waiters_share_a_read(void **state)
{
	struct look l[3];
	struct env e;
	unsigned i;

	env_init(&e, 4);
	for (i = 0; i < 3; i++)
		assert_int_equal(look(&e, &l[i], 7), -EINPROGRESS);
	for (i = 0; i < 3; i++) {
		wait_for(&e, &l[i]);
		assert_int_equal(l[i].err, 0);
		assert_ptr_equal(l[i].slice, l[0].slice);
	}
	expect_slice(l[0].slice, 7);
	assert_int_equal(stats(&e).reads, 1);
	/* three pins: the slice survives until the last is dropped */
	for (i = 0; i < 3; i++)
		qcow2_l2_cache_put(e.cache, l[i].slice);
	for (i = 10; i < 14; i++)
		qcow2_l2_cache_put(e.cache, get_now(&e, i));
	assert_int_equal(stats(&e).evictions, 1);
	env_fini(&e);
}

static void test_lru_eviction(void **state)
{
	struct env e;
	unsigned i;

	env_init(&e, 4);
	for (i = 1; i <= 4; i++)
		qcow2_l2_cache_put(e.cache, get_now(&e, i));
	qcow2_l2_cache_put(e.cache, get_now(&e, 1)); /* 2 is now the oldest */
	qcow2_l2_cache_put(e.cache, get_now(&e, 5));
	assert_int_equal(stats(&e).evictions, 1);
	assert_int_equal(stats(&e).reads, 5);
	for (i = 1; i <= 5; i++)
		if (i != 2)
			qcow2_l2_cache_put(e.cache, get_now(&e, i));
	assert_int_equal(stats(&e).reads, 5);
	qcow2_l2_cache_put(e.cache, get_now(&e, 2));
	assert_int_equal(stats(&e).reads, 6);
	env_fini(&e);
}

/* Every slice pinned: a lookup parks until a pin is dropped. */
static void test_full_cache_parks(void **state)
{
	struct qcow2_l2_slice *pinned[4];
	struct env e;
	struct look l;
	unsigned i;

	env_init(&e, 4);
	for (i = 0; i < 4; i++)
		pinned[i] = get_now(&e, i + 1);
	assert_int_equal(look(&e, &l, 9), -EINPROGRESS);
	for (i = 0; i < 5; i++)
		evloop_run_once(e.loop, 1000000);
	assert_int_equal(l.calls, 0);
	assert_int_equal(stats(&e).reads, 4);
	qcow2_l2_cache_put(e.cache, pinned[2]);
	wait_for(&e, &l);
	assert_int_equal(l.err, 0);
	expect_slice(l.slice, 9);
	qcow2_l2_cache_put(e.cache, l.slice);
	for (i = 0; i < 4; i++)
		if (i != 2)
			qcow2_l2_cache_put(e.cache, pinned[i]);
	env_fini(&e);
}

/* A failed read reaches every waiter and leaves the slice free. */
static void test_read_error(void **state)
{
	struct qt_capture cap;
	struct look l[2];
	struct env e;
	unsigned i;
	char *log;

	env_init(&e, 2);
	qt_capture_begin(&cap);
	for (i = 0; i < 2; i++)
		assert_int_equal(look(&e, &l[i], FILE_SLICES + 5), -EINPROGRESS); /* past EOF */
	for (i = 0; i < 2; i++) {
		wait_for(&e, &l[i]);
		assert_int_equal(l[i].err, -EIO);
		assert_null(l[i].slice);
	}
	log = qt_capture_end(&cap);
	assert_non_null(strstr(log, "L2 table slice at offset 0x45000"));
	free(log);
	assert_int_equal(stats(&e).reads, 1);
	qcow2_l2_cache_put(e.cache, get_now(&e, 1));
	qcow2_l2_cache_put(e.cache, get_now(&e, 2));
	assert_int_equal(stats(&e).evictions, 0);
	env_fini(&e);
}

static void test_default_size(void **state)
{
	struct qcow2_header h = { .version = 3, .cluster_bits = 16, .refcount_order = 4 };
	struct qcow2_geom g;

	qcow2_geom_init(&g, &h);
	assert_int_equal(qcow2_l2_cache_slice_bytes(g.cluster_bytes), 4096);
	/* 256 GiB at 64 KiB clusters: exactly QEMU's 32 MiB */
	assert_int_equal(qcow2_l2_cache_default_slices(&g, 256ull << 30), 8192);
	assert_int_equal(qcow2_l2_cache_default_slices(&g, 4ull << 40), 8192);
	assert_int_equal(qcow2_l2_cache_default_slices(&g, 1ull << 30), 32);
	assert_int_equal(qcow2_l2_cache_default_slices(&g, 64ull << 30), 2048);
	h.incompatible_features = QCOW2_INCOMPAT_EXTL2;
	qcow2_geom_init(&g, &h);
	assert_int_equal(qcow2_l2_cache_default_slices(&g, 64ull << 30), 4096);
	h.cluster_bits = 9;
	h.incompatible_features = 0;
	qcow2_geom_init(&g, &h);
	assert_int_equal(qcow2_l2_cache_slice_bytes(g.cluster_bytes), 512);
}

/* ---- threads ---------------------------------------------------------------------- */

struct worker {
	pthread_t tid;
	struct qcow2_l2_cache *cache;
	uint64_t seed;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct env e = { .cache = wk->cache };
	unsigned i;

	if (evloop_new(&e.loop) || aio_ctx_new(e.loop, NULL, &e.aio)) {
		wk->failures++;
		return NULL;
	}
	for (i = 0; i < 3000; i++) {
		unsigned index;
		struct look l;
		const uint8_t *d;
		uint32_t v;
		int err;

		wk->seed = wk->seed * 6364136223846793005ull + 1442695040888963407ull;
		index = 1 + (unsigned)((wk->seed >> 33) % (FILE_SLICES - 1));
		err = look(&e, &l, index);
		while (err == -EINPROGRESS && l.calls == 0)
			evloop_run_once(e.loop, -1);
		if (err == -EINPROGRESS)
			err = l.err;
		if (err || l.calls > 1) {
			wk->failures++;
			continue;
		}
		d = qcow2_l2_slice_data(l.slice);
		memcpy(&v, d + SLICE / 2, 4);
		if (v != index || qcow2_l2_slice_offset(l.slice) != (uint64_t)index * SLICE)
			wk->failures++;
		qcow2_l2_cache_put(e.cache, l.slice);
	}
	aio_ctx_free(e.aio);
	evloop_free(e.loop);
	return NULL;
}

static void test_threads(void **state)
{
	struct worker wk[4];
	struct env e;
	unsigned i;

	env_init(&e, 6); /* far fewer slices than the file: constant eviction */
	for (i = 0; i < ARRAY_SIZE(wk); i++) {
		wk[i] = (struct worker){ .cache = e.cache, .seed = 7 + i };
		assert_int_equal(pthread_create(&wk[i].tid, NULL, worker_main, &wk[i]), 0);
	}
	for (i = 0; i < ARRAY_SIZE(wk); i++) {
		pthread_join(wk[i].tid, NULL);
		assert_int_equal(wk[i].failures, 0);
	}
	assert_true(stats(&e).evictions > 0);
	assert_int_equal(stats(&e).hits + stats(&e).misses, 3000 * ARRAY_SIZE(wk));
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_miss_then_hit), cmocka_unit_test(test_waiters_share_a_read),
		cmocka_unit_test(test_lru_eviction),  cmocka_unit_test(test_full_cache_parks),
		cmocka_unit_test(test_read_error),    cmocka_unit_test(test_default_size),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
