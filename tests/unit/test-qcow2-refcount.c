// SPDX-License-Identifier: MIT
/*
 * The run-time refcount layer (qcow2/refcount.h) on images qemu-img made,
 * judged by qemu-img check: allocations nobody points to must show up as
 * exactly the leaks expected, with no corruption, at every refcount width
 * and at 512-byte, 4 KiB and 64 KiB clusters, through new refcount blocks
 * and refcount table growth; then the limits (overflow, going below zero,
 * 2^56), the free hint, the block cache bound, and failing I/O.
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

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

struct img {
	char path[PATH_MAX];
	struct aio_file *f;
	struct qcow2_header hdr;
	struct qcow2_geom geom;
	uint64_t file_bytes;
	struct qcow2_rc *rc;
	/* overlap check: refuse anything touching cluster 0 or the L1 table */
	unsigned checks_block, checks_table, checks_new;
	const char *refuse_what; /* also refuse every call with this @what */
	uint64_t freed_calls;
};

static int overlap_cb(void *opaque, uint64_t off, uint64_t len, const char *what)
{
	struct img *m = opaque;
	uint64_t l1 = m->hdr.l1_table_offset, l1_len = (uint64_t)m->hdr.l1_size * 8;

	if (!strcmp(what, "refcount block"))
		m->checks_block++;
	else if (!strcmp(what, "refcount table"))
		m->checks_table++;
	else
		m->checks_new++;
	if (m->refuse_what && !strcmp(what, m->refuse_what))
		return -EIO;
	if (ranges_overlap(off, len, 0, m->geom.cluster_bytes) ||
	    ranges_overlap(off, len, l1, l1_len))
		fail_msg("%s at 0x%" PRIx64 "+%" PRIu64 " overlaps the header or L1", what, off,
			 len);
	return 0;
}

static void freed_cb(void *opaque, uint64_t off)
{
	struct img *m = opaque;

	assert_true(is_aligned_u64(off, m->geom.cluster_bytes));
	m->freed_calls++;
}

static void img_create(struct img *m, const char *name, unsigned bits, unsigned cluster_bytes)
{
	char opts[128];

	memset(m, 0, sizeof(*m));
	snprintf(m->path, sizeof(m->path), "%s", qt_path(name));
	snprintf(opts, sizeof(opts), "refcount_bits=%u,cluster_size=%u", bits, cluster_bytes);
	unlink(m->path);
	assert_int_equal(
		qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, m->path, "16M", NULL),
		0);
}

static void img_open(struct img *m, uint64_t cache_bytes)
{
	uint8_t *c0 = qt_read(m->path, 0, 2u << 20);
	struct qcow2_rc_params p = {
		.path = m->path,
		.hdr = &m->hdr,
		.geom = &m->geom,
		.file_bytes = &m->file_bytes,
		.cluster_freed = freed_cb,
		.overlap_check = overlap_cb,
		.opaque = m,
		.cache_bytes = cache_bytes,
	};

	assert_int_equal(qcow2_header_parse(c0, 2u << 20, m->path, 0, &m->hdr), 0);
	free(c0);
	qcow2_geom_init(&m->geom, &m->hdr);
	m->file_bytes = qt_file_size(m->path);
	assert_int_equal(aio_file_open(m->path, 0, &m->f), 0);
	p.file = m->f;
	assert_int_equal(qcow2_rc_new(&p, &m->rc), 0);
}

static void img_close(struct img *m)
{
	qcow2_rc_free(m->rc);
	m->rc = NULL;
	qcow2_header_fini(&m->hdr);
	aio_file_close(m->f);
	m->f = NULL;
}

/* Data would have been written there: the file reaches every allocation. */
static void img_extend(struct img *m)
{
	if (qt_file_size(m->path) < m->file_bytes)
		assert_int_equal(truncate(m->path, (off_t)m->file_bytes), 0);
}

static uint64_t rc_of(struct img *m, uint64_t off)
{
	uint64_t v = UINT64_MAX;

	assert_int_equal(qcow2_rc_get(m->rc, off, &v), 0);
	return v;
}

struct check_result {
	int status;
	int64_t leaks, corruptions, check_errors;
};

static int64_t json_int_or_0(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	return v ? json_integer_value(v) : 0;
}

static struct check_result img_check(const char *path, bool repair)
{
	struct check_result r = { 0 };
	char *out = NULL;
	json_t *j;

	/* one stderr line per leaked cluster: thousands of them */
	r.status =
		qt_run_out(&out, "sh", "-c",
			   repair ? "exec qemu-img check -r leaks --output=json \"$0\" 2>/dev/null"
				  : "exec qemu-img check --output=json \"$0\" 2>/dev/null",
			   path, NULL);
	j = out ? json_loads(out, 0, NULL) : NULL;
	if (!j)
		fail_msg("qemu-img check %s: no JSON: %s", path, out ? out : "(null)");
	r.leaks = json_int_or_0(j, "leaks");
	r.corruptions = json_int_or_0(j, "corruptions");
	r.check_errors = json_int_or_0(j, "check-errors");
	json_decref(j);
	free(out);
	return r;
}

/* Exactly @leaks leaks and nothing else; after -r leaks, clean. */
static void expect_leaks_then_repair(const char *path, uint64_t leaks)
{
	struct check_result r = img_check(path, false);

	assert_int_equal(r.corruptions, 0);
	assert_int_equal(r.check_errors, 0);
	assert_int_equal(r.leaks, leaks);
	assert_int_equal(r.status, leaks ? 3 : 0);
	r = img_check(path, true);
	assert_int_equal(r.corruptions, 0);
	r = img_check(path, false);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.leaks, 0);
	assert_int_equal(r.corruptions, 0);
}

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
		uint64_t nr = 1 + rnd(&x->seed) % 16;

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
		uint64_t bytes = 1 + rnd(&x->seed) % (i % 4 ? cs / 3 : cs);
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
		cmocka_unit_test(test_matrix_512),
		cmocka_unit_test(test_matrix_4k),
		cmocka_unit_test(test_matrix_64k),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_bytes_full_cluster),
		cmocka_unit_test(test_below_zero),
		cmocka_unit_test(test_hint),
		cmocka_unit_test(test_alloc_at),
		cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_io_failure),
		cmocka_unit_test(test_overlap_refused),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
