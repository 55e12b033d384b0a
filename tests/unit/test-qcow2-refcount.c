// SPDX-License-Identifier: MIT
/*
 * The run-time refcount layer (qcow2/refcount.h) on images qemu-img made,
 * judged by qemu-img check: allocations nobody points to must show up as
 * exactly the leaks expected, with no corruption, at every refcount width
 * and at 512-byte, 4 KiB and 64 KiB clusters, through new refcount blocks
 * and refcount table growth.  The limits, the free hint, the block cache
 * bound and failing I/O are in test-qcow2-refcount-limits.c.
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
#include "test-rand.h"

/* ---- the model: what this test holds, per cluster ------------------------------------- */

struct model {
	uint32_t *held;
	uint64_t n;
};

static void model_add(struct model *md, uint64_t c0, uint64_t n, int delta)
{
	if (c0 + n > md->n) {
		uint64_t nn = MAX(c0 + n, md->n * 2);

		md->held = realloc(md->held, nn * sizeof(*md->held));
		assert_non_null(md->held);
		memset(md->held + md->n, 0, (nn - md->n) * sizeof(*md->held));
		md->n = nn;
	}
	for (uint64_t c = c0; c < c0 + n; c++) {
		assert_true(delta > 0 || md->held[c] > 0);
		md->held[c] += delta;
	}
}

static uint64_t model_leaks(const struct model *md)
{
	uint64_t n = 0;

	for (uint64_t c = 0; c < md->n; c++)
		n += md->held[c] != 0;
	return n;
}

/* Every cluster the model holds has exactly that refcount. */
static void model_verify(const struct model *md, struct img *m)
{
	for (uint64_t c = 0; c < md->n; c++) {
		if (md->held[c] && rc_of(m, c << m->geom.cluster_bits) != md->held[c])
			fail_msg("cluster %" PRIu64 ": refcount %" PRIu64 ", expected %u", c,
				 rc_of(m, c << m->geom.cluster_bits), md->held[c]);
	}
}

/* ---- every width, every cluster size ---------------------------------------------------- */

struct run {
	uint64_t off, nr;
};

struct matrix {
	struct img m;
	struct model md;
	struct run *runs;
	size_t nr_runs;
	unsigned cb;
	uint64_t rbe, seed;
	uint64_t table_off0, entries0;
};

static void alloc_run(struct matrix *x, uint64_t nr)
{
	uint64_t off = 0;

	assert_int_equal(qcow2_rc_alloc(x->m.rc, nr, &off), 0);
	assert_true(off != 0 && is_aligned_u64(off, x->m.geom.cluster_bytes));
	assert_true(off + (nr << x->cb) <= x->m.file_bytes);
	assert_int_equal(rc_of(&x->m, off), 1);
	assert_int_equal(rc_of(&x->m, off + ((nr - 1) << x->cb)), 1);
	model_add(&x->md, off >> x->cb, nr, 1);
	x->runs = realloc(x->runs, (x->nr_runs + 1) * sizeof(*x->runs));
	assert_non_null(x->runs);
	x->runs[x->nr_runs++] = (struct run){ off, nr };
}

/* Many runs, some longer than a refcount block covers, past the table if cheap. */
static void phase_alloc(struct matrix *x)
{
	uint64_t cover = x->entries0 * x->rbe, total = 0;
	uint64_t target = cover <= 300000 ? cover + cover / 3 : 3000;

	while (total < target) {
		uint64_t nr = 1 + test_rand(&x->seed) % 16;

		if (x->nr_runs % 97 == 50 && x->rbe <= 8192)
			nr = x->rbe + 3; /* covers a whole block's range: no room for its block */
		alloc_run(x, nr);
		total += nr;
	}
}

/* A far range without a block, and the table's end when that is not too far. */
static void phase_far(struct matrix *x)
{
	uint64_t entries, got = 0, far_ti, c;

	qcow2_rc_reftable(x->m.rc, &entries);
	if (entries == x->entries0 && x->entries0 * x->rbe <= (1u << 20)) {
		c = x->entries0 * x->rbe;
		assert_int_equal(qcow2_rc_alloc_at(x->m.rc, c << x->cb, 4, &got), 0);
		assert_int_equal(got, 4);
		model_add(&x->md, c, 4, 1);
		qcow2_rc_reftable(x->m.rc, &entries);
	}
	if (x->entries0 * x->rbe <= (1u << 20)) {
		assert_true(entries > x->entries0);
		assert_true(x->m.hdr.refcount_table_offset != x->table_off0);
		assert_int_equal((uint64_t)x->m.hdr.refcount_table_clusters << x->cb, entries * 8);
	}
	far_ti = (x->m.file_bytes >> x->cb) / x->rbe + 2;
	if (far_ti < entries && far_ti * x->rbe < (1u << 21)) {
		c = far_ti * x->rbe;
		assert_int_equal(qcow2_rc_alloc_at(x->m.rc, c << x->cb, 2, &got), 0);
		assert_int_equal(got, 2);
		model_add(&x->md, c, 2, 1);
		/* its block describes itself, right after the two clusters */
		assert_int_equal(qcow2_rc_reftable(x->m.rc, &entries)[far_ti], (c + 2) << x->cb);
	}
}

/*
 * Free most runs (a few whole, a few their tail half, kept: qemu-img check
 * -r leaks repairs one leak at a time), deferred, then release.
 */
static void phase_free(struct matrix *x)
{
	struct qcow2_rc_stats st;
	uint64_t queued = 0, freed0 = x->m.freed_calls, nfreed = 0, first_freed = 0;

	for (size_t i = 0; i < x->nr_runs; i++) {
		struct run *r = &x->runs[i];
		uint64_t skip = i % 64 == 1 && r->nr > 2 ? r->nr / 2 : 0;
		uint64_t off = r->off + (skip << x->cb), nr = r->nr - skip;

		if (i % 64 == 0)
			continue;
		assert_int_equal(qcow2_rc_free_deferred(x->m.rc, off, nr << x->cb), 0);
		queued++;
		nfreed += nr;
		model_add(&x->md, off >> x->cb, nr, -1);
		r->nr = skip;
		first_freed = first_freed ? first_freed : off;
		assert_int_equal(rc_of(&x->m, off), 1); /* not yet */
	}
	qcow2_rc_stats(x->m.rc, &st);
	assert_true(st.deferred_ranges >= queued);
	assert_true(qcow2_rc_dirty(x->m.rc));
	assert_int_equal(qcow2_rc_release_deferred(x->m.rc), 0);
	qcow2_rc_stats(x->m.rc, &st);
	assert_int_equal(st.deferred_ranges, 0);
	assert_true(x->m.freed_calls - freed0 >= nfreed);
	assert_int_equal(rc_of(&x->m, first_freed), 0);
	assert_true(st.free_hint <= first_freed);
	if (x->m.hdr.refcount_table_offset != x->table_off0)
		assert_int_equal(rc_of(&x->m, x->table_off0), 0); /* the old table */
}

/* The lowest cluster from @from on that starts @nr free ones (by rc_get). */
static uint64_t lowest_free_run(struct img *m, uint64_t from, uint64_t nr)
{
	uint64_t cs = m->geom.cluster_bytes, run = 0, c;

	for (c = from; run < nr; c++)
		run = rc_of(m, c * cs) == 0 ? run + 1 : 0;
	return c - nr;
}

/* Freed clusters are used again, lowest first fit, whatever the length. */
static void phase_reuse(struct matrix *x)
{
	static const uint64_t lengths[] = { 1, 2, 1, 3, 1, 17, 1, 5, 16, 20 };
	uint64_t expect = 1, off;

	for (int i = 0; i < 60; i++) {
		uint64_t nr = lengths[i % ARRAY_SIZE(lengths)];
		uint64_t want = lowest_free_run(&x->m, expect, nr);

		alloc_run(x, nr);
		off = x->runs[x->nr_runs - 1].off;
		assert_int_equal(off >> x->cb, want);
		if (nr == 1)
			expect = want + 1;
	}
}

static void phase_bytes(struct matrix *x)
{
	uint64_t cs = x->m.geom.cluster_bytes, prev_end = 0, off;
	bool one_bit = x->m.geom.refcount_bits == 1;
	uint64_t max = qcow2_refcount_max(x->m.geom.refcount_order);

	for (int i = 0; i < 40; i++) {
		uint64_t bytes = 1 + test_rand(&x->seed) % (i % 4 ? cs / 3 : cs);
		uint64_t need = (bytes + 511) & ~UINT64_C(511);
		uint64_t cur = prev_end % cs ? rc_of(&x->m, prev_end) : 0;
		uint64_t c0, c1;

		assert_int_equal(qcow2_rc_alloc_bytes(x->m.rc, bytes, &off), 0);
		assert_true(off != 0 && is_aligned_u64(off, 512));
		if (one_bit)
			assert_true(is_aligned_u64(off, cs));
		else if (cur && cur < max && cs - prev_end % cs >= need)
			assert_int_equal(off, prev_end); /* packed after the previous one */
		else if (cur == max)
			assert_true(is_aligned_u64(off, cs)); /* full: a fresh cluster */
		c0 = off >> x->cb;
		c1 = (off + need - 1) >> x->cb;
		model_add(&x->md, c0, c1 - c0 + 1, 1);
		prev_end = off + need;
	}
	assert_int_equal(qcow2_rc_alloc_bytes(x->m.rc, 0, &off), -EINVAL);
	assert_int_equal(qcow2_rc_alloc_bytes(x->m.rc, cs + 1, &off), -EINVAL);
}

static void matrix_case(unsigned bits, unsigned cluster_bytes)
{
	struct matrix x = { 0 };
	uint64_t leaks;
	char name[64];

	snprintf(name, sizeof(name), "m-%u-%u.qcow2", bits, cluster_bytes);
	img_create(&x.m, name, bits, cluster_bytes);
	img_open(&x.m, 0);
	x.cb = x.m.geom.cluster_bits;
	x.rbe = x.m.geom.refblock_entries;
	x.seed = 0x9e3779b97f4a7c15ull ^ (bits * 131u + cluster_bytes);
	x.table_off0 = x.m.hdr.refcount_table_offset;
	qcow2_rc_reftable(x.m.rc, &x.entries0);

	phase_alloc(&x);
	phase_far(&x);
	phase_free(&x);
	phase_reuse(&x);
	phase_bytes(&x);
	assert_int_equal(qcow2_rc_writeback(x.m.rc), 0);
	assert_false(qcow2_rc_dirty(x.m.rc));
	assert_true(x.m.checks_block > 0 && x.m.checks_table > 0 && x.m.checks_new > 0);
	model_verify(&x.md, &x.m);
	img_extend(&x.m);
	img_close(&x.m);

	/* what is on disk, read back by a fresh instance */
	img_open(&x.m, 0);
	model_verify(&x.md, &x.m);
	assert_false(qcow2_rc_dirty(x.m.rc));
	img_close(&x.m);

	leaks = model_leaks(&x.md);
	print_message("refcount_bits=%u cluster_size=%u: %zu runs, %" PRIu64 " leaks expected\n",
		      bits, cluster_bytes, x.nr_runs, leaks);
	expect_leaks_then_repair(x.m.path, leaks);
	free(x.md.held);
	free(x.runs);
}

static void test_matrix_512(void **state)
{
	QT_REQUIRE_QEMU();
	for (unsigned bits = 1; bits <= 64; bits *= 2)
		matrix_case(bits, 512);
}

static void test_matrix_4k(void **state)
{
	QT_REQUIRE_QEMU();
	for (unsigned bits = 1; bits <= 64; bits *= 2)
		matrix_case(bits, 4096);
}

static void test_matrix_64k(void **state)
{
	QT_REQUIRE_QEMU();
	for (unsigned bits = 1; bits <= 64; bits *= 2)
		matrix_case(bits, 65536);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matrix_512),
		cmocka_unit_test(test_matrix_4k),
		cmocka_unit_test(test_matrix_64k),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
