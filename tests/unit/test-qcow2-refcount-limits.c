// SPDX-License-Identifier: MIT
/*
 * The run-time refcount layer (qcow2/refcount.h) at its limits, on images
 * qemu-img made and judged by qemu-img check: overflow, going below zero,
 * 2^56, whole-cluster byte counts, the free hint, allocation at a given
 * offset, the refcount block cache bound, and failing I/O and a refusing
 * overlap check.  Every width and cluster size is test-qcow2-refcount.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "aio.h"
#include "checked.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"
#include "qcow2-test-util.h"
#include "qcow2-rc-test-util.h"

/* ---- limits ------------------------------------------------------------------------- */

static void add_big(struct img *m, uint64_t off, uint64_t len, uint64_t amount, int sign)
{
	while (amount) {
		int64_t a = amount > INT64_MAX ? INT64_MAX : (int64_t)amount;

		assert_int_equal(qcow2_rc_update(m->rc, off, len, sign * a), 0);
		amount -= (uint64_t)a;
	}
}

/*
 * A run over two refcount blocks whose last cluster is at the largest
 * refcount: +1 over the run is refused and changes nothing, in either block.
 */
static void test_overflow(void **state)
{
	QT_REQUIRE_QEMU();
	for (unsigned order = 0; order <= 6; order++) {
		uint64_t max = qcow2_refcount_max(order), off, nr, last;
		struct img m;

		img_create(&m, "overflow.qcow2", 1u << order, 512);
		img_open(&m, 0);
		nr = m.geom.refblock_entries + 2;
		assert_int_equal(qcow2_rc_alloc(m.rc, nr, &off), 0);
		last = off + (nr - 1) * 512;
		add_big(&m, last, 512, max - 1, 1);
		assert_true(rc_of(&m, last) == max);
		assert_int_equal(qcow2_rc_update(m.rc, off, nr * 512, 1), -ERANGE);
		assert_int_equal(qcow2_rc_update(m.rc, last, 1, 1), -ERANGE);
		assert_int_equal(rc_of(&m, off), 1);
		assert_int_equal(rc_of(&m, last - 512), 1);
		assert_true(rc_of(&m, last) == max);
		if (order < 6)
			assert_int_equal(qcow2_rc_update(m.rc, off, 512, (int64_t)max), -ERANGE);
		/* and all the way back down */
		add_big(&m, last, 512, max - 1, -1);
		assert_int_equal(rc_of(&m, last), 1);
		assert_int_equal(qcow2_rc_writeback(m.rc), 0);
		img_extend(&m);
		img_close(&m);
		expect_leaks_then_repair(m.path, nr);
	}
}

/*
 * alloc_bytes does not pack into a cluster whose refcount is at the
 * maximum: with 1-bit refcounts every piece gets a cluster of its own,
 * with 2-bit ones three pieces share one.
 */
static void test_bytes_full_cluster(void **state)
{
	QT_REQUIRE_QEMU();
	for (unsigned order = 0; order <= 1; order++) {
		uint64_t max = qcow2_refcount_max(order), off[4], cs = 4096;
		struct img m;

		img_create(&m, "bytes.qcow2", 1u << order, 4096);
		img_open(&m, 0);
		for (int i = 0; i < 4; i++) {
			assert_int_equal(qcow2_rc_alloc_bytes(m.rc, 1000, &off[i]), 0);
			if (i == 0)
				assert_true(is_aligned_u64(off[i], cs));
			else if ((uint64_t)i % max == 0)
				assert_true(is_aligned_u64(off[i], cs) && off[i] > off[i - 1]);
			else
				assert_int_equal(off[i], off[i - 1] + 1024);
		}
		assert_int_equal(rc_of(&m, off[0]), max);
		assert_int_equal(qcow2_rc_writeback(m.rc), 0);
		img_extend(&m);
		img_close(&m);
		expect_leaks_then_repair(m.path, order ? 2 : 4);
	}
}

/* Decrements below zero are refused, logged with the offset, and change nothing. */
static void test_below_zero(void **state)
{
	uint64_t a, b, far, cs = 4096;
	struct qt_capture cap;
	struct img m;
	char *log, hex[32];

	QT_REQUIRE_QEMU();
	img_create(&m, "below.qcow2", 16, 4096);
	img_open(&m, 0);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &a), 0);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &b), 0);
	assert_int_equal(b, a + cs);
	far = 5 * m.geom.refblock_entries * cs; /* in the table, no block */

	qt_capture_begin(&cap);
	assert_int_equal(qcow2_rc_update(m.rc, b + cs, cs, -1), -EIO);
	log = qt_capture_end(&cap);
	snprintf(hex, sizeof(hex), "0x%" PRIx64, b + cs);
	assert_non_null(strstr(log, hex));
	assert_non_null(strstr(log, m.path));
	free(log);
	assert_int_equal(qcow2_rc_update(m.rc, b, 2 * cs, -1), -EIO);
	assert_int_equal(qcow2_rc_update(m.rc, far, 1, -1), -EIO);
	assert_int_equal(rc_of(&m, b), 1);

	/* deferred: the bad range is dropped, the good one applies */
	assert_int_equal(qcow2_rc_free_deferred(m.rc, b, 2 * cs), 0);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, a, cs), 0);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, far, cs), 0);
	assert_int_equal(qcow2_rc_release_deferred(m.rc), -EIO);
	assert_int_equal(rc_of(&m, a), 0);
	assert_int_equal(rc_of(&m, b), 1);
	assert_int_equal(qcow2_rc_release_deferred(m.rc), 0);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, 0, 0), -EINVAL);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, QCOW2_MAX_HOST_OFFSET - cs, 2 * cs), -EINVAL);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	assert_false(qcow2_rc_dirty(m.rc));
	img_extend(&m);
	img_close(&m);
	expect_leaks_then_repair(m.path, 1);
}

/* The hint: lowest free cluster, moved down by frees, kept by a larger fit. */
static void test_hint(void **state)
{
	uint64_t a[6], x, cs = 4096;
	struct qcow2_rc_stats st;
	struct img m;

	QT_REQUIRE_QEMU();
	img_create(&m, "hint.qcow2", 16, 4096);
	img_open(&m, 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(qcow2_rc_alloc(m.rc, 1, &a[i]), 0);
		assert_true(i == 0 || a[i] == a[i - 1] + cs);
	}
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.free_hint, a[5] + cs);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, a[1], cs), 0);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, a[3], cs), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.free_hint, a[5] + cs); /* nothing freed yet */
	assert_int_equal(qcow2_rc_release_deferred(m.rc), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.free_hint, a[1]);
	/* two clusters do not fit in either hole; the hint stays at the lowest */
	assert_int_equal(qcow2_rc_alloc(m.rc, 2, &x), 0);
	assert_int_equal(x, a[5] + cs);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.free_hint, a[1]);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &x), 0);
	assert_int_equal(x, a[1]);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.free_hint, a[1] + cs);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &x), 0);
	assert_int_equal(x, a[3]);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &x), 0);
	assert_int_equal(x, a[5] + 3 * cs);
	/* a later free below the hint moves it down again */
	assert_int_equal(qcow2_rc_update(m.rc, a[0], cs, -1), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.free_hint, a[0]);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &x), 0);
	assert_int_equal(x, a[0]);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	img_extend(&m);
	img_close(&m);
	expect_leaks_then_repair(m.path, 9);
}

/* alloc_at: exactly there, stopping at a used cluster; and the offset limits. */
static void test_alloc_at(void **state)
{
	uint64_t a, got, entries, far, cs = 4096, t;
	struct img m;

	QT_REQUIRE_QEMU();
	img_create(&m, "at.qcow2", 16, 4096);
	img_open(&m, 0);
	assert_int_equal(qcow2_rc_alloc(m.rc, 3, &a), 0);
	assert_int_equal(qcow2_rc_update(m.rc, a + cs, cs, -1), 0);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, a + cs, 5, &got), 0);
	assert_int_equal(got, 1);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, a + 3 * cs, 4, &got), 0);
	assert_int_equal(got, 4);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, a, 1, &got), 0);
	assert_int_equal(got, 0);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, 0, 1, &got), 0);
	assert_int_equal(got, 0);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, a + 1, 1, &got), -EINVAL);

	qcow2_rc_reftable(m.rc, &entries);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, QCOW2_MAX_HOST_OFFSET, 1, &got), -EFBIG);
	assert_int_equal(qcow2_rc_alloc_at(m.rc, QCOW2_MAX_HOST_OFFSET - cs, 1, &got), -EFBIG);
	assert_int_equal(qcow2_rc_alloc(m.rc, QCOW2_MAX_HOST_OFFSET / cs, &t), -EFBIG);
	assert_int_equal(qcow2_rc_alloc(m.rc, 0, &t), -EINVAL);
	assert_int_equal(qcow2_rc_reftable(m.rc, &t), qcow2_rc_reftable(m.rc, &entries));

	/* an increment where no block is: the block goes right after the range */
	far = 5 * m.geom.refblock_entries;
	assert_int_equal(qcow2_rc_reftable(m.rc, &entries)[5], 0);
	assert_int_equal(qcow2_rc_update(m.rc, far * cs, 100, 1), 0);
	assert_int_equal(qcow2_rc_reftable(m.rc, &entries)[5], (far + 1) * cs);
	assert_int_equal(rc_of(&m, far * cs), 1);
	assert_int_equal(rc_of(&m, (far + 1) * cs), 1);
	assert_true(m.file_bytes >= (far + 2) * cs);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	img_extend(&m);
	img_close(&m);
	expect_leaks_then_repair(m.path, 8);
}

/* Clean blocks are dropped beyond the cache size; dirty ones stay. */
static void test_cache_bound(void **state)
{
	uint64_t off[3000], n = 3000;
	struct qcow2_rc_stats st;
	struct img m;

	QT_REQUIRE_QEMU();
	img_create(&m, "cache.qcow2", 64, 512);
	img_open(&m, 4 * 512);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(qcow2_rc_alloc(m.rc, 1, &off[i]), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_true(st.dirty_blocks > 40);
	assert_int_equal(st.cached_blocks, st.dirty_blocks);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.dirty_blocks, 0);
	assert_true(st.cached_blocks <= 4);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(rc_of(&m, off[i]), 1);
	for (uint64_t i = 1; i < n; i += 2)
		assert_int_equal(qcow2_rc_free_deferred(m.rc, off[i], 512), 0);
	assert_int_equal(qcow2_rc_release_deferred(m.rc), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_true(st.dirty_blocks > 40);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_true(st.cached_blocks <= 4);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(rc_of(&m, off[i]), i % 2 ? 0 : 1);
	img_extend(&m);
	img_close(&m);
	expect_leaks_then_repair(m.path, n / 2);
}

/* ---- failures ---------------------------------------------------------------------------- */

/* Make the image's fd read-only (writes fail) or write-only (reads fail). */
static int fd_swap(struct img *m, int mode)
{
	int saved = dup(m->f->fd), other = open(m->path, mode);

	assert_true(saved >= 0 && other >= 0);
	assert_true(dup2(other, m->f->fd) >= 0);
	close(other);
	return saved;
}

static void fd_restore(struct img *m, int saved)
{
	assert_true(dup2(saved, m->f->fd) >= 0);
	close(saved);
}

static void test_io_failure(void **state)
{
	uint64_t a, b, v, entries0, entries, table_off0, cover, cs = 512;
	struct qcow2_rc_stats st, st2;
	struct img m;
	int saved;

	QT_REQUIRE_QEMU();
	img_create(&m, "io.qcow2", 64, 512);
	img_open(&m, 0);
	qcow2_rc_reftable(m.rc, &entries0);
	cover = entries0 * m.geom.refblock_entries;
	table_off0 = m.hdr.refcount_table_offset;
	assert_int_equal(qcow2_rc_alloc(m.rc, cover - 200, &a), 0);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);

	/* writes fail: write-back keeps the dirty blocks; the table cannot grow */
	saved = fd_swap(&m, O_RDONLY);
	assert_int_equal(qcow2_rc_alloc(m.rc, 50, &b), 0);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(qcow2_rc_writeback(m.rc), -EBADF);
	qcow2_rc_stats(m.rc, &st2);
	assert_true(st.dirty_blocks > 0);
	assert_int_equal(st.dirty_blocks, st2.dirty_blocks);
	assert_int_equal(qcow2_rc_alloc(m.rc, 200, &b), -EBADF);
	qcow2_rc_reftable(m.rc, &entries);
	assert_int_equal(entries, entries0);
	assert_int_equal(m.hdr.refcount_table_offset, table_off0);
	assert_int_equal(rc_of(&m, (cover - 1) * cs), 0);
	assert_int_equal(rc_of(&m, a), 1);
	assert_true(qcow2_rc_dirty(m.rc));
	fd_restore(&m, saved);

	assert_int_equal(qcow2_rc_alloc(m.rc, 200, &b), 0);
	qcow2_rc_reftable(m.rc, &entries);
	assert_true(entries > entries0);
	assert_int_equal(qcow2_rc_release_deferred(m.rc), 0); /* the old table */
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	img_extend(&m);
	img_close(&m);

	/* reads fail: nothing loads, nothing changes */
	img_open(&m, 512);
	saved = fd_swap(&m, O_WRONLY);
	assert_int_equal(qcow2_rc_get(m.rc, b, &v), -EBADF);
	assert_int_equal(qcow2_rc_update(m.rc, a, 2 * cs, 1), -EBADF);
	assert_int_equal(qcow2_rc_update(m.rc, b, 200 * cs, -1), -EBADF);
	assert_int_equal(qcow2_rc_free_deferred(m.rc, b, 200 * cs), 0);
	assert_int_equal(qcow2_rc_release_deferred(m.rc), -EBADF);
	qcow2_rc_stats(m.rc, &st);
	assert_int_equal(st.deferred_ranges, 1); /* kept for the next release */
	fd_restore(&m, saved);
	assert_true(qcow2_rc_dirty(m.rc));
	assert_int_equal(rc_of(&m, b), 1);
	assert_int_equal(qcow2_rc_release_deferred(m.rc), 0);
	assert_int_equal(rc_of(&m, b), 0);
	assert_int_equal(qcow2_rc_update(m.rc, b, 200 * cs, 1), 0);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	assert_false(qcow2_rc_dirty(m.rc));
	assert_int_equal(rc_of(&m, a), 1);
	assert_int_equal(rc_of(&m, a + cs), 1);
	assert_int_equal(rc_of(&m, b), 1);
	img_close(&m);
	expect_leaks_then_repair(m.path, cover - 200 + 50 + 200);
}

/* An overlap check that refuses: -EIO, and the refcounts stay as they were. */
static void test_overlap_refused(void **state)
{
	uint64_t a, x;
	struct img m;

	QT_REQUIRE_QEMU();
	img_create(&m, "overlap.qcow2", 16, 4096);
	img_open(&m, 0);
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &a), 0);
	m.refuse_what = "new cluster";
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &x), -EIO);
	assert_int_equal(rc_of(&m, a + 4096), 0);
	m.refuse_what = "refcount block";
	assert_int_equal(qcow2_rc_writeback(m.rc), -EIO);
	assert_true(qcow2_rc_dirty(m.rc));
	m.refuse_what = NULL;
	assert_int_equal(qcow2_rc_alloc(m.rc, 1, &x), 0);
	assert_int_equal(x, a + 4096);
	assert_int_equal(qcow2_rc_writeback(m.rc), 0);
	img_extend(&m);
	img_close(&m);
	expect_leaks_then_repair(m.path, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overflow),   cmocka_unit_test(test_bytes_full_cluster),
		cmocka_unit_test(test_below_zero), cmocka_unit_test(test_hint),
		cmocka_unit_test(test_alloc_at),   cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_io_failure), cmocka_unit_test(test_overlap_refused),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
