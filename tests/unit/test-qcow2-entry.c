// SPDX-License-Identifier: MIT
/*
 * L1/L2 entries: every cluster and subcluster type with QEMU's semantics,
 * each corruption the decoder must catch, the compressed descriptor at
 * every cluster size, and the entries qemu-io actually writes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checked.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"

static struct qcow2_geom make_geom(unsigned version, unsigned cluster_bits, bool extl2,
				   bool data_file)
{
	struct qcow2_header h = { 0 };
	struct qcow2_geom g;

	h.version = version;
	h.cluster_bits = cluster_bits;
	h.refcount_order = 4;
	h.size_bytes = UINT64_C(1) << 30;
	if (extl2)
		h.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
	if (data_file)
		h.incompatible_features |= QCOW2_INCOMPAT_DATA_FILE;
	qcow2_geom_init(&g, &h);
	return g;
}

static void test_geometry(void **state)
{
	struct qcow2_geom g = make_geom(3, 16, false, false);
	struct qcow2_geom x = make_geom(3, 17, true, false);
	uint64_t off = (UINT64_C(5) << 29) + (UINT64_C(7) << 16) + 12345;

	assert_int_equal(g.l2_entries, 8192);
	assert_int_equal(g.csize_shift, 54);
	assert_int_equal(g.csize_mask, 0xff);
	assert_int_equal(g.refblock_entries, 32768);
	assert_int_equal(g.l1_vm_state_index, 2);
	assert_int_equal(qcow2_l1_index(&g, off), 5);
	assert_int_equal(qcow2_l2_index(&g, off), 7);
	assert_int_equal(qcow2_sc_index(&g, off), 0);
	/* extended L2: 16-byte entries, 32 subclusters of 4 KiB */
	assert_int_equal(x.l2_entry_bytes, 16);
	assert_int_equal(x.l2_entries, 8192);
	assert_int_equal(x.subcluster_bytes, 4096);
	assert_int_equal(qcow2_sc_index(&x, (UINT64_C(3) << 17) + 5 * 4096 + 1), 5);
	assert_int_equal(qcow2_size_to_l1(21, false, UINT64_C(1) << 50), 2048);
	assert_int_equal(qcow2_size_to_l1(9, false, 0), 0);
	assert_int_equal(qcow2_size_to_l1(9, false, UINT64_MAX), UINT64_C(1) << 49);
}

static void test_l1_entries(void **state)
{
	struct qcow2_geom g = make_geom(3, 16, false, false);
	const char *why = NULL;
	uint64_t off, e;
	bool copied;

	assert_int_equal(qcow2_l1_entry_decode(&g, 0x8000000000040000, &off, &copied, &why), 0);
	assert_int_equal(off, 0x40000);
	assert_true(copied);
	assert_int_equal(qcow2_l1_entry_decode(&g, 0, &off, &copied, &why), 0);
	assert_int_equal(off, 0);
	assert_false(copied);
	static const uint64_t reserved[] = { 1, 1 << 8, UINT64_C(1) << 56, UINT64_C(1) << 62 };
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++) {
		why = NULL;
		assert_int_equal(
			qcow2_l1_entry_decode(&g, 0x40000 | reserved[i], &off, &copied, &why),
			-EINVAL);
		assert_string_equal(why, "L1 entry has reserved bits set");
	}
	assert_int_equal(qcow2_l1_entry_decode(&g, 0x40200, &off, &copied, &why), -EINVAL);
	assert_string_equal(why, "L2 table offset is not cluster aligned");
	assert_int_equal(qcow2_l1_entry_decode(&g, 0x40200, &off, &copied, NULL), -EINVAL);

	assert_int_equal(qcow2_l1_entry_encode(&g, 0x40000, true, &e), 0);
	assert_int_equal(e, 0x8000000000040000);
	assert_int_equal(qcow2_l1_entry_encode(&g, 0x40200, true, &e), -ERANGE);
	assert_int_equal(qcow2_l1_entry_encode(&g, UINT64_C(1) << 56, false, &e), -ERANGE);
}

struct l2_case {
	const char *name;
	unsigned version, cluster_bits;
	bool extl2, data_file;
	uint64_t entry, bitmap;
	int ret;
	enum qcow2_cluster_type type;
	uint64_t host;
	bool copied;
	/* subcluster types of sc 0, 1 and 2 */
	enum qcow2_subcluster_type sc[3];
	const char *why;
};

#define UNALLOC_P QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN
#define UNALLOC_A QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC
#define ZERO_P QCOW2_SUBCLUSTER_ZERO_PLAIN
#define ZERO_A QCOW2_SUBCLUSTER_ZERO_ALLOC
#define NORM QCOW2_SUBCLUSTER_NORMAL
#define COMPR QCOW2_SUBCLUSTER_COMPRESSED
#define INVAL QCOW2_SUBCLUSTER_INVALID

static const struct l2_case l2_cases[] = {
	{ "unallocated",
	  3,
	  16,
	  false,
	  false,
	  0,
	  0,
	  0,
	  QCOW2_CLUSTER_UNALLOCATED,
	  0,
	  false,
	  { UNALLOC_P, UNALLOC_P, UNALLOC_P } },
	{ "normal copied",
	  3,
	  16,
	  false,
	  false,
	  0x8000000000050000,
	  0,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0x50000,
	  true,
	  { NORM, NORM, NORM } },
	{ "normal shared",
	  3,
	  16,
	  false,
	  false,
	  0x50000,
	  0,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0x50000,
	  false,
	  { NORM, NORM, NORM } },
	{ "zero plain",
	  3,
	  16,
	  false,
	  false,
	  1,
	  0,
	  0,
	  QCOW2_CLUSTER_ZERO_PLAIN,
	  0,
	  false,
	  { ZERO_P, ZERO_P, ZERO_P } },
	{ "zero alloc",
	  3,
	  16,
	  false,
	  false,
	  0x8000000000070001,
	  0,
	  0,
	  QCOW2_CLUSTER_ZERO_ALLOC,
	  0x70000,
	  true,
	  { ZERO_A, ZERO_A, ZERO_A } },
	{ "compressed",
	  3,
	  16,
	  false,
	  false,
	  0x4000000000060000,
	  0,
	  0,
	  QCOW2_CLUSTER_COMPRESSED,
	  0x60000,
	  false,
	  { COMPR, COMPR, COMPR } },
	{ "512-byte clusters",
	  3,
	  9,
	  false,
	  false,
	  0x8000000000000200,
	  0,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0x200,
	  true,
	  { NORM, NORM, NORM } },
	{ "compressed with COPIED",
	  3,
	  16,
	  false,
	  false,
	  0xc000000000060000,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_COMPRESSED,
	  0x60000,
	  true,
	  { COMPR, COMPR, COMPR },
	  "compressed cluster has the COPIED flag" },
	{ "reserved bit 1",
	  3,
	  16,
	  false,
	  false,
	  0x50002,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_NORMAL,
	  0x50000,
	  false,
	  { NORM, NORM, NORM },
	  "L2 entry has reserved bits set" },
	{ "reserved bit 56",
	  3,
	  16,
	  false,
	  false,
	  0x0100000000050000,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_NORMAL,
	  0x50000,
	  false,
	  { NORM, NORM, NORM },
	  "L2 entry has reserved bits set" },
	{ "unaligned host",
	  3,
	  16,
	  false,
	  false,
	  0x8000000000050200,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_NORMAL,
	  0x50200,
	  true,
	  { NORM, NORM, NORM },
	  "host cluster offset is not cluster aligned" },
	{ "unaligned zero alloc",
	  3,
	  16,
	  false,
	  false,
	  0x50201,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_ZERO_ALLOC,
	  0x50200,
	  false,
	  { ZERO_A, ZERO_A, ZERO_A },
	  "host cluster offset is not cluster aligned" },
	{ "v2 zero plain",
	  2,
	  16,
	  false,
	  false,
	  1,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_ZERO_PLAIN,
	  0,
	  false,
	  { ZERO_P, ZERO_P, ZERO_P },
	  "zero cluster in a version 2 image" },
	{ "v2 zero alloc",
	  2,
	  16,
	  false,
	  false,
	  0x8000000000070001,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_ZERO_ALLOC,
	  0x70000,
	  true,
	  { ZERO_A, ZERO_A, ZERO_A },
	  "zero cluster in a version 2 image" },
	{ "v2 normal",
	  2,
	  16,
	  false,
	  false,
	  0x8000000000050000,
	  0,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0x50000,
	  true,
	  { NORM, NORM, NORM } },
	{ "data file, offset 0",
	  3,
	  16,
	  false,
	  true,
	  0x8000000000000000,
	  0,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0,
	  true,
	  { NORM, NORM, NORM } },
	{ "data file, unallocated",
	  3,
	  16,
	  false,
	  true,
	  0,
	  0,
	  0,
	  QCOW2_CLUSTER_UNALLOCATED,
	  0,
	  false,
	  { UNALLOC_P, UNALLOC_P, UNALLOC_P } },
	{ "data file, compressed",
	  3,
	  16,
	  false,
	  true,
	  0x4000000000060000,
	  0,
	  -EINVAL,
	  QCOW2_CLUSTER_COMPRESSED,
	  0x60000,
	  false,
	  { COMPR, COMPR, COMPR },
	  "compressed cluster in an image with an external data file" },
	/* extended L2, 128 KiB clusters: the entries qemu-io writes */
	{ "ext: sc 1 written",
	  3,
	  17,
	  true,
	  false,
	  0x80000000000a0000,
	  0x2,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0xa0000,
	  true,
	  { UNALLOC_A, NORM, UNALLOC_A } },
	{ "ext: sc 0-1 zeroed",
	  3,
	  17,
	  true,
	  false,
	  0,
	  0x300000000,
	  0,
	  QCOW2_CLUSTER_UNALLOCATED,
	  0,
	  false,
	  { ZERO_P, ZERO_P, UNALLOC_P } },
	{ "ext: sc 1 zero alloc",
	  3,
	  17,
	  true,
	  false,
	  0x80000000000c0000,
	  0x2fffffffd,
	  0,
	  QCOW2_CLUSTER_NORMAL,
	  0xc0000,
	  true,
	  { NORM, ZERO_A, NORM } },
	{ "ext: alloc and zero",
	  3,
	  17,
	  true,
	  false,
	  0x80000000000c0000,
	  0x400000004,
	  -EINVAL,
	  QCOW2_CLUSTER_NORMAL,
	  0xc0000,
	  true,
	  { INVAL, INVAL, INVAL },
	  "subcluster is both allocated and zero" },
	{ "ext: alloc without host",
	  3,
	  17,
	  true,
	  false,
	  0,
	  0x1,
	  -EINVAL,
	  QCOW2_CLUSTER_UNALLOCATED,
	  0,
	  false,
	  { INVAL, INVAL, INVAL },
	  "allocated subclusters without a host cluster" },
	{ "ext: compressed with bitmap",
	  3,
	  17,
	  true,
	  false,
	  0x4000000000060000,
	  0x1,
	  -EINVAL,
	  QCOW2_CLUSTER_COMPRESSED,
	  0x60000,
	  false,
	  { COMPR, COMPR, COMPR },
	  "compressed cluster has a non-zero subcluster bitmap" },
	{ "ext: compressed",
	  3,
	  17,
	  true,
	  false,
	  0x4000000000060000,
	  0,
	  0,
	  QCOW2_CLUSTER_COMPRESSED,
	  0x60000,
	  false,
	  { COMPR, COMPR, COMPR } },
	/* no zero flag with extended L2: bit 0 is ignored, as in QEMU */
	{ "ext: bit 0 ignored",
	  3,
	  17,
	  true,
	  false,
	  1,
	  0,
	  0,
	  QCOW2_CLUSTER_UNALLOCATED,
	  0,
	  false,
	  { UNALLOC_P, UNALLOC_P, UNALLOC_P } },
};

static void test_l2_classification(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(l2_cases); i++) {
		const struct l2_case *c = &l2_cases[i];
		struct qcow2_geom g =
			make_geom(c->version, c->cluster_bits, c->extl2, c->data_file);
		struct qcow2_l2_entry e;
		const char *why = NULL;

		print_message("%s\n", c->name);
		assert_int_equal(qcow2_l2_entry_decode(&g, c->entry, c->bitmap, &e, &why), c->ret);
		assert_int_equal(e.type, c->type);
		assert_int_equal(e.host_offset, c->host);
		assert_int_equal(e.copied, c->copied);
		for (unsigned sc = 0; sc < 3; sc++)
			assert_int_equal(qcow2_subcluster_type(&g, &e, sc), c->sc[sc]);
		if (c->why)
			assert_string_equal(why, c->why);
		else
			assert_null(why);
	}
}

/* encode -> decode at every cluster size, the field limits, QEMU's example. */
static void test_compressed_descriptor(void **state)
{
	struct qcow2_geom g64 = make_geom(3, 16, false, false);
	struct qcow2_l2_entry e;
	uint64_t entry;

	assert_int_equal(qcow2_l2_entry_encode_compressed(&g64, 0x60000, 300, &entry), 0);
	assert_int_equal(entry, 0x4000000000060000);
	assert_int_equal(qcow2_l2_entry_decode(&g64, entry, 0, &e, NULL), 0);
	assert_int_equal(e.compressed_bytes, 512);
	for (unsigned bits = 9; bits <= 21; bits++) {
		struct qcow2_geom g = make_geom(3, bits, false, false);
		uint64_t top = MIN(g.coffset_mask, QCOW2_MAX_HOST_OFFSET - 1);
		const uint64_t offs[] = { 512, 0x60001, 0x12345677, top - 4096, top };
		/* the largest size that fits at any offset into a sector */
		const uint64_t sizes[] = { 1, 511, 512, 513, g.csize_mask * 512 + 1 };

		assert_int_equal(g.csize_shift, 62 - (bits - 8));
		for (size_t i = 0; i < ARRAY_SIZE(offs); i++) {
			for (size_t j = 0; j < ARRAY_SIZE(sizes); j++) {
				uint64_t end = offs[i] + sizes[j];

				assert_int_equal(qcow2_l2_entry_encode_compressed(&g, offs[i],
										  sizes[j], &entry),
						 0);
				assert_int_equal(qcow2_l2_entry_decode(&g, entry, 0, &e, NULL), 0);
				assert_int_equal(e.type, QCOW2_CLUSTER_COMPRESSED);
				assert_int_equal(e.host_offset, offs[i]);
				assert_int_equal(e.compressed_bytes,
						 ((end + 511) & ~UINT64_C(511)) - offs[i]);
			}
		}
		/* offsets past the field or 2^56, sizes past the sector count, 0 */
		assert_int_equal(qcow2_l2_entry_encode_compressed(&g, top + 1, 1, &entry), -ERANGE);
		assert_int_equal(qcow2_l2_entry_encode_compressed(
					 &g, 0, (g.csize_mask + 1) * 512 + 1, &entry),
				 -ERANGE);
		assert_int_equal(
			qcow2_l2_entry_encode_compressed(&g, 0, (g.csize_mask + 1) * 512, &entry),
			0);
		assert_int_equal(qcow2_l2_entry_encode_compressed(&g, 512, 0, &entry), -ERANGE);
	}
	/* small clusters leave room for offsets at or past 2^56: corrupt */
	struct qcow2_geom g9 = make_geom(3, 9, false, false);
	const char *why;

	assert_int_equal(qcow2_l2_entry_decode(&g9, QCOW2_OFLAG_COMPRESSED | (UINT64_C(1) << 56), 0,
					       &e, &why),
			 -EINVAL);
	assert_string_equal(why, "compressed data offset is beyond 2^56");
}

static void test_l2_encoders(void **state)
{
	struct qcow2_geom g = make_geom(3, 16, false, false);
	uint64_t e;

	assert_int_equal(qcow2_l2_entry_encode_normal(&g, 0x50000, true, &e), 0);
	assert_int_equal(e, 0x8000000000050000);
	assert_int_equal(qcow2_l2_entry_encode_normal(&g, 0x50000, false, &e), 0);
	assert_int_equal(e, 0x50000);
	assert_int_equal(qcow2_l2_entry_encode_normal(&g, 0x50200, true, &e), -ERANGE);
	assert_int_equal(qcow2_l2_entry_encode_normal(&g, UINT64_C(1) << 56, true, &e), -ERANGE);
	assert_int_equal(qcow2_l2_entry_encode_zero(0, false), 1);
	assert_int_equal(qcow2_l2_entry_encode_zero(0x70000, true), 0x8000000000070001);
}

static void test_reftable_entries(void **state)
{
	struct qcow2_geom g = make_geom(3, 16, false, false);
	const char *why;
	uint64_t off;

	assert_int_equal(qcow2_reftable_entry_decode(&g, 0x20000, &off, &why), 0);
	assert_int_equal(off, 0x20000);
	assert_int_equal(qcow2_reftable_entry_decode(&g, 0x20001, &off, &why), -EINVAL);
	assert_string_equal(why, "refcount table entry has reserved bits set");
	assert_int_equal(qcow2_reftable_entry_decode(&g, 0x20200, &off, &why), -EINVAL);
	assert_string_equal(why, "refcount block offset is not cluster aligned");
	/* above 2^56 is fine for refblocks: the mask keeps all high bits */
	assert_int_equal(qcow2_reftable_entry_decode(&g, UINT64_C(1) << 60, &off, &why), 0);
}

/* ---- what qemu-io writes --------------------------------------------------------- */

struct image {
	struct qcow2_header h;
	struct qcow2_geom g;
	uint8_t *l2;
};

/* Parse @img and load the L2 table of guest offset 0. */
static void load_first_l2(const char *img, struct image *im)
{
	uint8_t *c0 = qt_read(img, 0, 2u << 20);
	uint64_t l1e, l2_offset;
	bool copied;

	assert_int_equal(qcow2_header_parse(c0, 2u << 20, img, 0, &im->h), 0);
	qcow2_geom_init(&im->g, &im->h);
	free(c0);
	c0 = qt_read(img, im->h.l1_table_offset, 8);
	l1e = qcow2_get_be64(c0);
	free(c0);
	assert_int_equal(qcow2_l1_entry_decode(&im->g, l1e, &l2_offset, &copied, NULL), 0);
	assert_true(copied);
	assert_int_not_equal(l2_offset, 0);
	im->l2 = qt_read(img, l2_offset, im->g.cluster_bytes);
}

static struct qcow2_l2_entry l2_at(const struct image *im, unsigned i)
{
	const uint8_t *p = im->l2 + (size_t)i * im->g.l2_entry_bytes;
	uint64_t bitmap = im->g.extended_l2 ? qcow2_get_be64(p + 8) : 0;
	struct qcow2_l2_entry e;
	const char *why = NULL;

	if (qcow2_l2_entry_decode(&im->g, qcow2_get_be64(p), bitmap, &e, &why))
		fail_msg("L2 entry %u: %s", i, why);
	return e;
}

static void expect_pattern(const char *img, uint64_t off, size_t len, uint8_t pattern)
{
	uint8_t *data = qt_read(img, off, len);

	for (size_t i = 0; i < len; i++)
		if (data[i] != pattern)
			fail_msg("byte %zu at 0x%llx is 0x%02x, not 0x%02x", i,
				 (unsigned long long)off, data[i], pattern);
	free(data);
}

static void test_qemu_written_entries(void **state)
{
	const char *img = qt_path("entries.qcow2");
	struct qcow2_l2_entry e;
	struct image im;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "1M", NULL), 0);
	assert_int_equal(qt_run("qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 64k", "-c",
				"write -z 64k 64k", "-c", "write -c -P 0xbb 128k 64k", "-c",
				"write -P 0xcc 192k 64k", "-c", "write -z 192k 64k", "-c",
				"write -P 0xdd 256k 64k", "-c", "write -z -u 256k 64k", img, NULL),
			 0);
	load_first_l2(img, &im);
	e = l2_at(&im, 0);
	assert_int_equal(e.type, QCOW2_CLUSTER_NORMAL);
	assert_true(e.copied);
	expect_pattern(img, e.host_offset, 65536, 0xaa);
	assert_int_equal(l2_at(&im, 1).type, QCOW2_CLUSTER_ZERO_PLAIN);
	e = l2_at(&im, 2);
	assert_int_equal(e.type, QCOW2_CLUSTER_COMPRESSED);
	assert_false(e.copied);
	assert_true(e.compressed_bytes >= 512 && e.compressed_bytes < 65536);
	e = l2_at(&im, 3);
	assert_int_equal(e.type, QCOW2_CLUSTER_ZERO_ALLOC);
	assert_true(e.copied);
	expect_pattern(img, e.host_offset, 65536, 0xcc); /* old data stays, reads as zero */
	assert_int_equal(l2_at(&im, 4).type, QCOW2_CLUSTER_ZERO_PLAIN);
	assert_int_equal(l2_at(&im, 5).type, QCOW2_CLUSTER_UNALLOCATED);
	assert_int_equal(l2_at(&im, 8191).type, QCOW2_CLUSTER_UNALLOCATED);
	free(im.l2);
	qcow2_header_fini(&im.h);
}

static void test_qemu_written_subclusters(void **state)
{
	const char *img = qt_path("subclusters.qcow2");
	struct qcow2_l2_entry e;
	struct image im;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o",
				"extended_l2=on,cluster_size=128k", img, "1M", NULL),
			 0);
	assert_int_equal(qt_run("qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 4k 4k", "-c",
				"write -z 128k 8k", "-c", "write -P 0xee 256k 128k", "-c",
				"write -z 260k 4k", img, NULL),
			 0);
	load_first_l2(img, &im);
	e = l2_at(&im, 0);
	assert_int_equal(e.type, QCOW2_CLUSTER_NORMAL);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 0), UNALLOC_A);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 1), NORM);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 31), UNALLOC_A);
	expect_pattern(img, e.host_offset + 4096, 4096, 0xaa);
	e = l2_at(&im, 1);
	assert_int_equal(e.type, QCOW2_CLUSTER_UNALLOCATED);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 0), ZERO_P);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 1), ZERO_P);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 2), UNALLOC_P);
	e = l2_at(&im, 2);
	assert_int_equal(e.alloc_bitmap, 0xfffffffd);
	assert_int_equal(e.zero_bitmap, 0x2);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 1), ZERO_A);
	assert_int_equal(qcow2_subcluster_type(&im.g, &e, 2), NORM);
	expect_pattern(img, e.host_offset + 8192, 4096, 0xee);
	free(im.l2);
	qcow2_header_fini(&im.h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_l1_entries),
		cmocka_unit_test(test_l2_classification),
		cmocka_unit_test(test_compressed_descriptor),
		cmocka_unit_test(test_l2_encoders),
		cmocka_unit_test(test_reftable_entries),
		cmocka_unit_test(test_qemu_written_entries),
		cmocka_unit_test(test_qemu_written_subclusters),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
