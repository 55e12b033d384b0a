// SPDX-License-Identifier: MIT
/*
 * Refcount block packing at every width from 1 to 64 bits: exact byte
 * layouts, round trips at the boundaries, overflow, and the refcount
 * blocks qemu-img writes, decoded and re-encoded byte for byte.
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

static void test_max(void **state)
{
	assert_int_equal(qcow2_refcount_max(0), 1);
	assert_int_equal(qcow2_refcount_max(1), 3);
	assert_int_equal(qcow2_refcount_max(2), 15);
	assert_int_equal(qcow2_refcount_max(3), 255);
	assert_int_equal(qcow2_refcount_max(4), 65535);
	assert_int_equal(qcow2_refcount_max(5), UINT32_MAX);
	assert_int_equal(qcow2_refcount_max(6), UINT64_MAX);
}

struct layout {
	unsigned order;
	struct {
		uint64_t index, value;
	} set[3];
	uint8_t bytes[16];
};

/* Sub-byte entries fill each byte from its least significant bit up. */
static const struct layout layouts[] = {
	{ 0, { { 0, 1 }, { 3, 1 }, { 9, 1 } }, { 0x09, 0x02 } },
	{ 1, { { 0, 3 }, { 1, 1 }, { 5, 2 } }, { 0x07, 0x08 } },
	{ 2, { { 0, 0xa }, { 1, 0x5 }, { 3, 0xf } }, { 0x5a, 0xf0 } },
	{ 3, { { 1, 0xab }, { 2, 1 }, { 15, 0xff } }, { 0, 0xab, 1, [15] = 0xff } },
	{ 4, { { 1, 0x1234 }, { 7, 0xffff } }, { 0, 0, 0x12, 0x34, [14] = 0xff, 0xff } },
	{ 5, { { 1, 0x12345678 }, { 3, 1 } }, { [4] = 0x12, 0x34, 0x56, 0x78, [15] = 1 } },
	{ 6,
	  { { 1, 0x0123456789abcdef } },
	  { [8] = 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef } },
};

static void test_known_layouts(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(layouts); i++) {
		const struct layout *l = &layouts[i];
		uint8_t block[16] = { 0 };

		for (size_t j = 0; j < ARRAY_SIZE(l->set) && l->set[j].value; j++)
			assert_int_equal(qcow2_refcount_set(block, l->order, l->set[j].index,
							    l->set[j].value),
					 0);
		assert_memory_equal(block, l->bytes, sizeof(block));
		for (size_t j = 0; j < ARRAY_SIZE(l->set) && l->set[j].value; j++)
			assert_int_equal(qcow2_refcount_get(block, l->order, l->set[j].index),
					 l->set[j].value);
	}
}

static uint64_t pattern(uint64_t i, unsigned order)
{
	return (i * UINT64_C(0x9e3779b97f4a7c15) >> 7) & qcow2_refcount_max(order);
}

/* Fill a block, change single entries at the edges, check nothing else moved. */
static void test_roundtrip_every_width(void **state)
{
	uint8_t block[4096];

	for (unsigned order = 0; order <= 6; order++) {
		uint64_t n = sizeof(block) * 8 >> order;
		uint64_t max = qcow2_refcount_max(order);

		memset(block, 0, sizeof(block));
		for (uint64_t i = 0; i < n; i++)
			assert_int_equal(qcow2_refcount_set(block, order, i, pattern(i, order)), 0);
		for (uint64_t i = 0; i < n; i++)
			assert_int_equal(qcow2_refcount_get(block, order, i), pattern(i, order));
		const uint64_t edges[] = { 0, 1, n / 2, n - 2, n - 1 };
		for (size_t k = 0; k < ARRAY_SIZE(edges); k++) {
			uint64_t i = edges[k];

			assert_int_equal(qcow2_refcount_set(block, order, i, max), 0);
			assert_int_equal(qcow2_refcount_get(block, order, i), max);
			if (i > 0)
				assert_int_equal(qcow2_refcount_get(block, order, i - 1),
						 i - 1 == edges[k - 1] ? max
								       : pattern(i - 1, order));
			if (i + 1 < n)
				assert_int_equal(qcow2_refcount_get(block, order, i + 1),
						 pattern(i + 1, order));
			if (order < 6)
				assert_int_equal(qcow2_refcount_set(block, order, i, max + 1),
						 -ERANGE);
			assert_int_equal(qcow2_refcount_get(block, order, i), max);
			assert_int_equal(qcow2_refcount_set(block, order, i, 0), 0);
			assert_int_equal(qcow2_refcount_get(block, order, i), 0);
			assert_int_equal(qcow2_refcount_set(block, order, i, max), 0);
		}
	}
	assert_int_equal(qcow2_refcount_set(block, 7, 0, 1), -ERANGE);
}

static void test_add(void **state)
{
	uint64_t r = 42;

	for (unsigned order = 0; order <= 6; order++) {
		uint64_t max = qcow2_refcount_max(order);

		assert_int_equal(qcow2_refcount_add(max - 1, 1, order, &r), 0);
		assert_int_equal(r, max);
		assert_int_equal(qcow2_refcount_add(max, 1, order, &r), -ERANGE);
		assert_int_equal(qcow2_refcount_add(0, -1, order, &r), -ERANGE);
		assert_int_equal(qcow2_refcount_add(1, -1, order, &r), 0);
		assert_int_equal(r, 0);
		assert_int_equal(qcow2_refcount_add(max, 0, order, &r), 0);
		assert_int_equal(r, max);
	}
	assert_int_equal(qcow2_refcount_add(UINT64_MAX, INT64_MIN, 6, &r), 0);
	assert_int_equal(r, UINT64_MAX - (UINT64_C(1) << 63));
	assert_int_equal(qcow2_refcount_add(1, INT64_MIN, 6, &r), -ERANGE);
	assert_int_equal(qcow2_refcount_add(UINT64_MAX - 5, INT64_MAX, 6, &r), -ERANGE);
	assert_int_equal(qcow2_refcount_add(3, 0x10000, 4, &r), -ERANGE);
}

/* ---- refcount blocks written by qemu-img ---------------------------------------- */

static uint64_t refcount_of(const struct qcow2_geom *g, const uint8_t *block, uint64_t offset)
{
	return qcow2_refcount_get(block, g->refcount_order, offset >> g->cluster_bits);
}

/*
 * After a write and (when refcounts can exceed 1) an internal snapshot,
 * the header, the L2 table and the data cluster have the refcounts QEMU
 * gives them, and re-encoding every entry reproduces QEMU's block.
 */
static void check_refblock(const char *img, unsigned bits)
{
	struct qcow2_header h;
	struct qcow2_geom g;
	const char *why;
	uint64_t refblock, l2, l2e_raw, expect = bits > 1 ? 2 : 1;
	struct qcow2_l2_entry e;
	uint8_t *c0 = qt_read(img, 0, 65536), *t, *block, *copy;
	bool copied;

	assert_int_equal(qcow2_header_parse(c0, 65536, img, 0, &h), 0);
	qcow2_geom_init(&g, &h);
	assert_int_equal(g.refcount_bits, bits);
	t = qt_read(img, h.refcount_table_offset, 8);
	assert_int_equal(qcow2_reftable_entry_decode(&g, qcow2_get_be64(t), &refblock, &why), 0);
	free(t);
	block = qt_read(img, refblock, g.cluster_bytes);
	assert_int_equal(refcount_of(&g, block, 0), 1);
	assert_int_equal(refcount_of(&g, block, refblock), 1);
	assert_int_equal(refcount_of(&g, block, h.refcount_table_offset), 1);
	t = qt_read(img, h.l1_table_offset, 8);
	assert_int_equal(qcow2_l1_entry_decode(&g, qcow2_get_be64(t), &l2, &copied, &why), 0);
	free(t);
	assert_int_equal(copied, expect == 1);
	assert_int_equal(refcount_of(&g, block, l2), expect);
	t = qt_read(img, l2, 8);
	l2e_raw = qcow2_get_be64(t);
	free(t);
	assert_int_equal(qcow2_l2_entry_decode(&g, l2e_raw, 0, &e, &why), 0);
	assert_int_equal(refcount_of(&g, block, e.host_offset), expect);
	assert_int_equal(refcount_of(&g, block, qt_file_size(img) + g.cluster_bytes), 0);

	copy = calloc(1, g.cluster_bytes);
	for (uint64_t i = 0; i < g.refblock_entries; i++)
		assert_int_equal(qcow2_refcount_set(copy, g.refcount_order, i,
						    qcow2_refcount_get(block, g.refcount_order, i)),
				 0);
	assert_memory_equal(copy, block, g.cluster_bytes);
	free(copy);
	free(block);
	free(c0);
	qcow2_header_fini(&h);
}

static void test_qemu_refblocks(void **state)
{
	static const char *const widths[] = { "1", "2", "4", "8", "16", "32", "64" };

	QT_REQUIRE_QEMU();
	for (unsigned order = 0; order <= 6; order++) {
		char img[32], opt[32];

		snprintf(img, sizeof(img), "rc%s.qcow2", widths[order]);
		snprintf(opt, sizeof(opt), "refcount_bits=%s", widths[order]);
		print_message("refcount_bits=%s\n", widths[order]);
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opt,
					qt_path(img), "1G", NULL),
				 0);
		assert_int_equal(qt_run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k",
					qt_path(img), NULL),
				 0);
		if (order > 0)
			assert_int_equal(
				qt_run("qemu-img", "snapshot", "-c", "s1", qt_path(img), NULL), 0);
		check_refblock(qt_path(img), 1u << order);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max),
		cmocka_unit_test(test_known_layouts),
		cmocka_unit_test(test_roundtrip_every_width),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_qemu_refblocks),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
