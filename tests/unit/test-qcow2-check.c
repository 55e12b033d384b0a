// SPDX-License-Identifier: MIT
/*
 * qcow2 check and repair on small images built byte by byte: exact counts
 * and messages for each kind of damage, the repairs leaving a clean image
 * with the data in place, and hostile tables (overlapping, oversized,
 * pointing anywhere) checked without a crash or an unbounded allocation.
 * Where qemu-img is installed, its verdict on the same bytes is the
 * reference; the dirty-image repair entry point runs on an image qemu-io
 * left dirty.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aio.h"
#include "checked.h"
#include "qcow2/check.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"

/*
 * The mini image: 4 KiB clusters, v3, 16-bit refcounts (or narrower), 256
 * KiB of virtual disk (one L2 table, 64 entries used).  Cluster 0 header, 1 refcount table,
 * 2 refcount block, 3 L1 table, 4 L2 table, data from 5 on.
 */
#define CB 4096u
#define C_RT 1u
#define C_RB 2u
#define C_L1 3u
#define C_L2 4u
#define C_DATA 5u
#define MINI_CLUSTERS 16u

struct mini {
	uint8_t b[MINI_CLUSTERS * CB];
	uint64_t clusters; /* written to the file */
	unsigned order;	   /* refcount_order */
};

static uint8_t *at(struct mini *m, unsigned cluster)
{
	return m->b + cluster * CB;
}

static void set_rc(struct mini *m, unsigned cluster, uint16_t rc)
{
	assert_int_equal(qcow2_refcount_set(at(m, C_RB), m->order, cluster, rc), 0);
}

static void set_l2(struct mini *m, unsigned index, uint64_t entry)
{
	qcow2_put_be64(at(m, C_L2) + 8 * index, entry);
}

/* A clean image with @nr_data data clusters mapped at guest clusters 0.. */
static void mini_init_order(struct mini *m, unsigned nr_data, unsigned order)
{
	struct qcow2_header h = {
		.version = 3,
		.cluster_bits = 12,
		.size_bytes = 64 * CB,
		.l1_size = 1,
		.l1_table_offset = C_L1 * CB,
		.refcount_table_offset = C_RT * CB,
		.refcount_table_clusters = 1,
		.refcount_order = order,
		.header_length = QCOW2_V3_HEADER_BYTES,
	};

	memset(m, 0, sizeof(*m));
	m->order = order;
	assert_int_equal(qcow2_header_serialise(&h, m->b, CB, NULL), 0);
	qcow2_put_be64(at(m, C_RT), C_RB * CB);
	qcow2_put_be64(at(m, C_L1), (C_L2 * CB) | QCOW2_OFLAG_COPIED);
	for (unsigned c = 0; c < C_DATA; c++)
		set_rc(m, c, 1);
	for (unsigned i = 0; i < nr_data; i++) {
		set_l2(m, i, ((C_DATA + i) * CB) | QCOW2_OFLAG_COPIED);
		set_rc(m, C_DATA + i, 1);
		memset(at(m, C_DATA + i), 0xa0 + i, CB);
	}
	m->clusters = C_DATA + nr_data;
}

static void mini_init(struct mini *m, unsigned nr_data)
{
	mini_init_order(m, nr_data, 4);
}

static const char *mini_write(struct mini *m, const char *name)
{
	const char *path = qt_path(name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(m->b, CB, m->clusters, f), m->clusters);
	fclose(f);
	return path;
}

/* ---- collecting what the check reports ------------------------------------------ */

struct lines {
	char text[16384];
	unsigned n;
};

static void collect(void *opaque, const char *line)
{
	struct lines *l = opaque;
	size_t used = strlen(l->text);

	snprintf(l->text + used, sizeof(l->text) - used, "%s\n", line);
	l->n++;
}

static int run_check(const char *path, unsigned flags, struct lines *l,
		     struct qcow2_check_result *res)
{
	struct qcow2_check_opts opts = { .flags = flags, .report = collect, .opaque = l };

	memset(l, 0, sizeof(*l));
	return qcow2_check_ex(path, &opts, res);
}

static void expect_line(const struct lines *l, const char *line)
{
	if (!strstr(l->text, line))
		fail_msg("expected \"%s\" in:\n%s", line, l->text);
}

static void expect_clean(const char *path)
{
	struct qcow2_check_result res;
	struct lines l;

	assert_int_equal(run_check(path, 0, &l, &res), 0);
	if (res.corruptions || res.leaks || res.check_errors)
		fail_msg("%s is not clean:\n%s", path, l.text);
	assert_int_equal(l.n, 0);
}

/* With qemu-img installed: the same counters as its check of @path. */
static void expect_like_qemu(const char *path, const struct qcow2_check_result *res)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "check-errors", offsetof(struct qcow2_check_result, check_errors) },
		{ "corruptions", offsetof(struct qcow2_check_result, corruptions) },
		{ "leaks", offsetof(struct qcow2_check_result, leaks) },
		{ "image-end-offset", offsetof(struct qcow2_check_result, image_end_offset) },
		{ "total-clusters", offsetof(struct qcow2_check_result, total_clusters) },
		{ "allocated-clusters", offsetof(struct qcow2_check_result, allocated_clusters) },
		{ "fragmented-clusters", offsetof(struct qcow2_check_result, fragmented_clusters) },
		{ "compressed-clusters", offsetof(struct qcow2_check_result, compressed_clusters) },
	};
	char *out = NULL;
	json_t *j;

	if (!qt_have_qemu())
		return;
	qt_run_out(&out, "qemu-img", "check", "--output=json", path, NULL);
	j = json_loads(out ? out : "", 0, NULL);
	free(out);
	if (!j)
		return; /* qemu-img could not complete the check either */
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		json_t *v = json_object_get(j, keys[i].key);
		uint64_t want = v ? (uint64_t)json_integer_value(v) : 0;
		uint64_t got = *(const uint64_t *)((const char *)res + keys[i].off);

		if (got != want)
			fail_msg("%s: %s is %" PRIu64 ", qemu-img says %" PRIu64, path, keys[i].key,
				 got, want);
	}
	json_decref(j);
}

/* ---- plain images ----------------------------------------------------------------- */

static void test_clean(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 3);
	set_l2(&m, 5, ((C_DATA + 2) * CB) | QCOW2_OFLAG_COPIED); /* guest 5 -> host 7 */
	set_l2(&m, 2, 0);
	path = mini_write(&m, "clean.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(res.corruptions + res.leaks + res.check_errors, 0);
	assert_int_equal(res.total_clusters, 64);
	assert_int_equal(res.allocated_clusters, 3);
	assert_int_equal(res.fragmented_clusters, 0);
	assert_int_equal(res.image_end_offset, 8 * CB);
	assert_false(res.open_failed);
	expect_like_qemu(path, &res);
}

static void test_fragmented_and_zero(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 4);
	set_l2(&m, 1, ((C_DATA + 2) * CB) | QCOW2_OFLAG_COPIED);
	set_l2(&m, 2, ((C_DATA + 1) * CB) | QCOW2_OFLAG_COPIED);
	set_l2(&m, 10, QCOW2_OFLAG_ZERO);			     /* plain zero */
	set_l2(&m, 3, ((C_DATA + 3) * CB) | QCOW2_OFLAG_COPIED | 1); /* preallocated zero */
	path = mini_write(&m, "frag.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(res.corruptions + res.leaks, 0);
	assert_int_equal(res.allocated_clusters, 4);
	assert_int_equal(res.fragmented_clusters, 3); /* 5, 7, 6, 8: three jumps */
	expect_like_qemu(path, &res);
}

static void test_not_qcow2(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;

	memset(&m, 0x5a, sizeof(m));
	m.clusters = 2;
	assert_int_not_equal(run_check(mini_write(&m, "raw.img"), 0, &l, &res), 0);
	assert_true(res.open_failed);
	m.clusters = 0;
	assert_int_not_equal(run_check(mini_write(&m, "empty.img"), 0, &l, &res), 0);
	assert_true(res.open_failed);
	assert_int_equal(run_check(qt_path("missing.qcow2"), 0, &l, &res), -ENOENT);
	assert_true(res.open_failed);
}

/* ---- damage and repair ---------------------------------------------------------- */

static void test_leak(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 2);
	set_rc(&m, C_DATA + 5, 1); /* a cluster nothing uses, inside the file */
	m.clusters = C_DATA + 8;
	path = mini_write(&m, "leak.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(res.leaks, 1);
	assert_int_equal(res.corruptions, 0);
	expect_line(&l, "Leaked cluster 10 refcount=1 reference=0");
	expect_like_qemu(path, &res);

	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_LEAKS, &l, &res), 0);
	assert_int_equal(res.leaks_fixed, 1);
	assert_int_equal(res.leaks, 0);
	expect_line(&l, "Repairing cluster 10 refcount=1 reference=0");
	expect_clean(path);
}

static void test_leak_on_used_cluster(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 2);
	set_rc(&m, C_DATA, 2);
	path = mini_write(&m, "leak-used.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(res.leaks, 1);
	assert_int_equal(res.corruptions, 1);
	expect_line(&l, "Leaked cluster 5 refcount=2 reference=1");
	expect_line(&l, "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000005000 refcount=2");
	expect_like_qemu(path, &res);
	/* -r leaks also fixes COPIED once the refcounts are right */
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_LEAKS, &l, &res), 0);
	assert_int_equal(res.leaks_fixed, 1);
	assert_int_equal(res.corruptions, 0);
	expect_clean(path);
}

static void test_refcount_zero_rebuild(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;
	uint8_t *data;

	mini_init(&m, 3);
	set_rc(&m, C_DATA + 1, 0);
	path = mini_write(&m, "rc0.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(res.corruptions, 2);
	expect_line(&l, "ERROR cluster 6 refcount=0 reference=1");
	expect_like_qemu(path, &res);
	/* -r leaks cannot: the refcount structure must be rebuilt */
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_LEAKS, &l, &res), -EIO);
	expect_line(&l, "ERROR need to rebuild refcount structures");
	assert_int_equal(res.check_errors, 1);

	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_line(&l, "Rebuilding refcount structure");
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.corruptions_fixed, 1);
	assert_int_equal(res.check_errors, 0);
	expect_clean(path);
	/* the new refcount block and table went to the first free clusters */
	data = qt_read(path, 48, 12);
	assert_int_equal(qcow2_get_be64(data), 9 * CB);
	assert_int_equal(qcow2_get_be32(data + 8), 1);
	free(data);
	data = qt_read(path, (C_DATA + 1) * CB, CB);
	for (unsigned i = 0; i < CB; i++)
		assert_int_equal(data[i], 0xa1);
	free(data);
}

static void test_refcount_too_low(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 2);
	set_l2(&m, 7, (C_DATA * CB)); /* a second reference to cluster 5 */
	set_l2(&m, 0, C_DATA * CB);   /* which is then not COPIED */
	path = mini_write(&m, "low.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(res.corruptions, 3); /* and COPIED, as refcount 1 would want it */
	expect_line(&l, "ERROR cluster 5 refcount=1 reference=2");
	expect_like_qemu(path, &res);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_line(&l, "Repairing cluster 5 refcount=1 reference=2");
	assert_int_equal(res.corruptions_fixed, 1);
	expect_clean(path);
}

static void test_copied_flags(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 2);
	set_l2(&m, 1, (C_DATA + 1) * CB);	 /* COPIED missing */
	qcow2_put_be64(at(&m, C_L1), C_L2 * CB); /* and on the L1 entry */
	path = mini_write(&m, "copied.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	assert_int_equal(res.corruptions, 2);
	expect_line(&l, "ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=4000 refcount=1");
	expect_line(&l, "ERROR OFLAG_COPIED data cluster: l2_entry=6000 refcount=1");
	expect_like_qemu(path, &res);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	assert_int_equal(res.corruptions_fixed, 2);
	expect_line(&l, "Repairing OFLAG_COPIED data cluster: l2_entry=6000 refcount=1");
	expect_clean(path);
}

static void test_misaligned_and_reserved(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;
	uint8_t *entry;

	mini_init(&m, 3);
	set_l2(&m, 0, (C_DATA * CB + 0x200) | QCOW2_OFLAG_COPIED);		/* misaligned */
	set_l2(&m, 1, ((C_DATA + 1) * CB) | QCOW2_OFLAG_COPIED | (1ull << 57)); /* reserved */
	set_l2(&m, 2, ((C_DATA + 2) * CB + 0x400) | QCOW2_OFLAG_ZERO);		/* prealloc zero */
	path = mini_write(&m, "misaligned.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	expect_line(&l, "ERROR offset=5200: Data cluster is not properly aligned; L2 entry "
			"corrupted.");
	expect_line(&l, "ERROR found l2 entry with reserved bits set: 8200000000006000");
	expect_line(&l, "ERROR offset=7400: Preallocated cluster is not properly aligned; L2 "
			"entry corrupted.");
	expect_like_qemu(path, &res);
	/* the preallocated zero cluster becomes a plain one; the rest stays */
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_line(&l, "Repairing offset=7400: Preallocated cluster is not properly aligned");
	assert_true(res.corruptions > 0);
	assert_true(res.corruptions_fixed > 0);
	entry = qt_read(path, C_L2 * CB + 16, 8);
	assert_int_equal(qcow2_get_be64(entry), QCOW2_OFLAG_ZERO);
	free(entry);
}

static void test_past_eof_and_compressed(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;
	/* 4 KiB clusters: offset below bit 58, one sector (count 0) above it */
	uint64_t comp = QCOW2_OFLAG_COMPRESSED | ((C_DATA + 1) * CB + 100);

	mini_init(&m, 2);
	set_l2(&m, 3, (1ull << 40) | QCOW2_OFLAG_COPIED);
	set_l2(&m, 1, comp);
	set_l2(&m, 4, comp | QCOW2_OFLAG_COPIED);
	set_rc(&m, C_DATA + 1, 2);
	path = mini_write(&m, "eof.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	expect_line(&l, "ERROR: counting reference for region exceeding the end of the file by "
			"one cluster or more: offset 0x10000000000 size 0x1000");
	expect_line(&l, "ERROR: coffset=0x6064: copied flag must never be set for compressed "
			"clusters");
	assert_int_equal(res.compressed_clusters, 2);
	expect_like_qemu(path, &res);
}

/* ---- hostile tables --------------------------------------------------------------- */

/* The check completes or fails cleanly, and matches qemu-img when it completes. */
static void expect_survives(const char *path)
{
	struct qcow2_check_result res;
	struct lines l;
	int err = run_check(path, 0, &l, &res);

	print_message("%s: %d, %" PRIu64 " corruptions, %" PRIu64 " leaks, %" PRIu64
		      " check errors\n",
		      path, err, res.corruptions, res.leaks, res.check_errors);
	if (!err)
		expect_like_qemu(path, &res);
}

static void test_hostile_l1_l2(void **state)
{
	struct mini m;

	mini_init(&m, 2);
	memset(at(&m, C_L2), 0xff, CB); /* every entry compressed, huge offsets */
	expect_survives(mini_write(&m, "l2-ff.qcow2"));
	mini_init(&m, 2);
	memset(at(&m, C_L2), 0xbf, CB); /* standard entries, all bits */
	expect_survives(mini_write(&m, "l2-bf.qcow2"));
	mini_init(&m, 2);
	qcow2_put_be64(at(&m, C_L1), UINT64_MAX);
	expect_survives(mini_write(&m, "l1-ff.qcow2"));
	mini_init(&m, 2);
	qcow2_put_be64(at(&m, C_L1), 0); /* the L2 table leaks */
	expect_survives(mini_write(&m, "l1-zero.qcow2"));
	mini_init(&m, 2);
	qcow2_put_be64(at(&m, C_L1), C_RB * CB); /* the refcount block as an L2 table */
	expect_survives(mini_write(&m, "l1-rb.qcow2"));
	mini_init(&m, 2);
	qcow2_put_be64(at(&m, C_L1), QCOW2_OFLAG_COPIED); /* offset 0 with a flag */
	expect_survives(mini_write(&m, "l1-copied0.qcow2"));
}

/* Many L2 entries refer to one cluster. */
static void test_shared_cluster(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 1);
	for (unsigned i = 1; i < 64; i++)
		set_l2(&m, i, C_DATA * CB);
	path = mini_write(&m, "shared.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	expect_line(&l, "ERROR cluster 5 refcount=1 reference=64");
	expect_like_qemu(path, &res);
	/* -r all raises the refcount and clears COPIED */
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_clean(path);
}

/* The same with 1-bit refcounts: every reference past the first overflows. */
static void test_refcount_overflow(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init_order(&m, 1, 0);
	for (unsigned i = 1; i < 4; i++)
		set_l2(&m, i, C_DATA * CB);
	path = mini_write(&m, "overflow.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	expect_line(&l, "ERROR: overflow cluster offset=0x5000");
	expect_line(&l, "Use qemu-img amend to increase the refcount entry width");
	assert_int_equal(res.corruptions, 3 + 3); /* overflows, then COPIED of entries 1-3 */
	expect_like_qemu(path, &res);
}

static void test_hostile_refcounts(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	mini_init(&m, 2);
	qcow2_put_be64(at(&m, C_RT) + 8, 1ull << 55); /* a refcount block far away */
	path = mini_write(&m, "rb-far.qcow2");
	expect_survives(path);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_line(&l, "ERROR could not resize image");
	expect_clean(path);

	mini_init(&m, 2);
	qcow2_put_be32(m.b + 56, 0); /* no refcount table at all (check tolerates it) */
	path = mini_write(&m, "rt-none.qcow2");
	expect_survives(path);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_clean(path);

	mini_init(&m, 2);
	qcow2_put_be64(at(&m, C_RT), C_L2 * CB); /* the L2 table as a refcount block */
	expect_survives(mini_write(&m, "rb-l2.qcow2"));
	mini_init(&m, 2);
	for (unsigned i = 0; i < CB / 8; i++) /* every entry the same block */
		qcow2_put_be64(at(&m, C_RT) + 8 * i, C_RB * CB);
	path = mini_write(&m, "rb-shared.qcow2");
	expect_survives(path);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_clean(path);
}

/* A snapshot table entry of the fixed header; @extra bytes of extra data. */
static void put_snapshot(uint8_t *p, uint64_t l1, uint32_t l1_size, uint32_t extra)
{
	qcow2_put_be64(p, l1);
	qcow2_put_be32(p + 8, l1_size);
	qcow2_put_be16(p + 12, 1); /* id "1" */
	qcow2_put_be16(p + 14, 1); /* name "s" */
	qcow2_put_be32(p + 36, extra);
	p[40 + MIN(extra, 24u)] = '1';
	p[41 + MIN(extra, 24u)] = 's';
}

static void test_hostile_snapshots(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;

	/* too many snapshots: refused, or dropped with -r all */
	mini_init(&m, 2);
	qcow2_put_be32(m.b + 60, 70000);
	qcow2_put_be64(m.b + 64, 7 * CB);
	path = mini_write(&m, "sn-many.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), -EFBIG);
	assert_int_equal(res.check_errors, 1);
	expect_line(&l, "ERROR snapshot table too large");
	expect_line(&l, "You can force-remove all 4464 overhanging snapshots");

	/* a snapshot with a table that is not where it says, and incomplete */
	mini_init(&m, 2);
	put_snapshot(at(&m, 7), 0x1234, 1, 8);
	qcow2_put_be32(m.b + 60, 1);
	qcow2_put_be64(m.b + 64, 7 * CB);
	set_rc(&m, 7, 1);
	m.clusters = 8;
	path = mini_write(&m, "sn-bad.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), 0);
	expect_line(&l, "ERROR snapshot 1 (s) l1_offset=0x1234: L1 table is not cluster aligned");
	expect_line(&l, "ERROR snapshot table entry 0 is incomplete");
	expect_like_qemu(path, &res);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_line(&l, "Repairing snapshot table entry 0 is incomplete");
	assert_int_equal(res.corruptions, 1); /* the L1 offset cannot be repaired */

	/* extra data of 4 GiB: refused, cut with -r all (and the table too big) */
	mini_init(&m, 2);
	put_snapshot(at(&m, 7), C_L1 * CB, 1, UINT32_MAX);
	qcow2_put_be32(m.b + 60, 1);
	qcow2_put_be64(m.b + 64, 7 * CB);
	set_rc(&m, 7, 1);
	m.clusters = 8;
	path = mini_write(&m, "sn-extra.qcow2");
	assert_int_equal(run_check(path, 0, &l, &res), -EFBIG);
	expect_line(&l, "Too much extra metadata in snapshot table entry 0");
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_ALL, &l, &res), 0);
	expect_line(&l, "Discarding too much extra metadata in snapshot table entry 0");
	expect_line(&l, "Discarding 1 overhanging snapshots (snapshot table is too big)");
	expect_clean(path);
}

/* A repair clears autoclear bits it does not know, and keeps everything else. */
static void test_unknown_autoclear(void **state)
{
	struct qcow2_check_result res;
	struct mini m;
	struct lines l;
	const char *path;
	uint8_t *b;

	mini_init(&m, 2);
	qcow2_put_be64(m.b + 88, 1ull << 9);
	path = mini_write(&m, "autoclear.qcow2");
	expect_clean(path);
	b = qt_read(path, 88, 8);
	assert_int_equal(qcow2_get_be64(b), 1ull << 9); /* a check alone changes nothing */
	free(b);
	assert_int_equal(run_check(path, QCOW2_CHECK_REPAIR_LEAKS, &l, &res), 0);
	b = qt_read(path, 0, 112);
	assert_int_equal(qcow2_get_be64(b + 88), 0);
	qcow2_put_be64(m.b + 88, 0);
	assert_memory_equal(b, m.b, 112); /* the only change */
	free(b);
	expect_clean(path);
}

/* ---- the dirty-image entry point ---------------------------------------------------- */

static void test_repair_dirty(void **state)
{
	const char *path = qt_path("dirty.qcow2");
	struct aio_file *f;
	uint8_t *b;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o",
				"lazy_refcounts=on", path, "8M", NULL),
			 0);
	/* killed by its own SIGKILL: not an exit status */
	assert_int_equal(
		qt_run("qemu-io", "-c", "write -P 0x3c 0 1M", "-c", "sigraise 9", path, NULL), -1);
	b = qt_read(path, 72, 8);
	assert_int_equal(qcow2_get_be64(b) & QCOW2_INCOMPAT_DIRTY, QCOW2_INCOMPAT_DIRTY);
	free(b);

	assert_int_equal(aio_file_open(path, 0, &f), 0); /* O_DIRECT, as the driver opens */
	assert_int_equal(qcow2_check_repair_dirty(f, path), 0);
	aio_file_close(f);
	b = qt_read(path, 72, 8);
	assert_int_equal(qcow2_get_be64(b) & QCOW2_INCOMPAT_DIRTY, 0);
	free(b);
	expect_clean(path);
	assert_int_equal(qt_run("qemu-img", "check", path, NULL), 0);
	assert_int_equal(qt_run("qemu-io", "-r", "-c", "read -P 0x3c 0 1M", path, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_fragmented_and_zero),
		cmocka_unit_test(test_not_qcow2),
		cmocka_unit_test(test_leak),
		cmocka_unit_test(test_leak_on_used_cluster),
		cmocka_unit_test(test_refcount_zero_rebuild),
		cmocka_unit_test(test_refcount_too_low),
		cmocka_unit_test(test_copied_flags),
		cmocka_unit_test(test_misaligned_and_reserved),
		cmocka_unit_test(test_past_eof_and_compressed),
		cmocka_unit_test(test_hostile_l1_l2),
		cmocka_unit_test(test_shared_cluster),
		cmocka_unit_test(test_refcount_overflow),
		cmocka_unit_test(test_hostile_refcounts),
		cmocka_unit_test(test_hostile_snapshots),
		cmocka_unit_test(test_unknown_autoclear),
		cmocka_unit_test(test_repair_dirty),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
