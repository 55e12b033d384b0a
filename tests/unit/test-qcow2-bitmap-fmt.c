// SPDX-License-Identifier: MIT
/*
 * Bitmap directory entries: the directory qemu-img writes, matched with
 * `qemu-img info` and rebuilt byte for byte, its bitmap tables and data,
 * QEMU's per-entry constraints, directory-level consistency, and extra
 * data kept for rewrites.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checked.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"

static bool has_flag(json_t *flags, const char *name)
{
	for (size_t i = 0; i < json_array_size(flags); i++)
		if (strcmp(json_string_value(json_array_get(flags, i)), name) == 0)
			return true;
	return false;
}

static void expect_bitmap(json_t *j, const struct qcow2_bitmap *bm)
{
	json_t *flags = json_object_get(j, "flags");

	assert_string_equal(json_string_value(json_object_get(j, "name")), bm->name);
	assert_int_equal(json_integer_value(json_object_get(j, "granularity")),
			 UINT64_C(1) << bm->granularity_bits);
	assert_int_equal(has_flag(flags, "auto"), (bm->flags & QCOW2_BME_AUTO) != 0);
	assert_int_equal(has_flag(flags, "in-use"), (bm->flags & QCOW2_BME_IN_USE) != 0);
	assert_int_equal(bm->type, QCOW2_BME_TYPE_DIRTY_TRACKING);
	assert_int_equal(bm->extra_data_size, 0);
	assert_true(qcow2_bitmap_usable(bm));
}

/* Bit @bit of bitmap @bm reads as set in the image (bits are LSB first). */
static bool bit_is_set(const char *img, const struct qcow2_geom *g, const struct qcow2_bitmap *bm,
		       uint64_t bit)
{
	uint64_t byte = bit / 8, index = byte >> g->cluster_bits, data;
	uint8_t *t = qt_read(img, bm->table_offset + index * 8, 8), *d;
	bool all_ones, set;

	assert_int_equal(qcow2_bitmap_table_entry_decode(qcow2_get_be64(t), g->cluster_bits, &data,
							 &all_ones, NULL),
			 0);
	free(t);
	if (!data)
		return all_ones;
	d = qt_read(img, data + (byte & (g->cluster_bytes - 1)), 1);
	set = d[0] & (1u << (bit % 8));
	free(d);
	return set;
}

static void test_qemu_bitmaps(void **state)
{
	const char *img = qt_path("bitmaps.qcow2");
	struct qcow2_bitmap *bms = NULL;
	struct qcow2_header h;
	struct qcow2_geom g;
	uint8_t *c0, *dir, *out;
	json_t *info, *list;
	size_t used;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "1G", NULL), 0);
	assert_int_equal(qt_run("qemu-img", "bitmap", "--add", "-g", "64k", img, "b0", NULL), 0);
	assert_int_equal(qt_run("qemu-img", "bitmap", "--add", "--disable", "-g", "1M", img,
				"second bitmap", NULL),
			 0);
	assert_int_equal(qt_run("qemu-io", "-c", "write 0 64k", "-c", "write 100M 4k", img, NULL),
			 0);

	c0 = qt_read(img, 0, 65536);
	assert_int_equal(qcow2_header_parse(c0, 65536, img, 0, &h), 0);
	qcow2_geom_init(&g, &h);
	assert_true(h.bitmaps.present);
	assert_true(h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS);
	assert_int_equal(h.bitmaps.nb_bitmaps, 2);
	dir = qt_read(img, h.bitmaps.dir_offset, h.bitmaps.dir_bytes);
	assert_int_equal(qcow2_bitmap_dir_parse(dir, h.bitmaps.dir_bytes, &h, img, &bms), 0);

	info = qt_info(img);
	list = qt_json_get(info, "format-specific/data/bitmaps");
	assert_int_equal(json_array_size(list), 2);
	for (unsigned i = 0; i < 2; i++) {
		expect_bitmap(json_array_get(list, i), &bms[i]);
		assert_int_equal(bms[i].table_size,
				 qcow2_bitmap_table_entries(h.size_bytes, bms[i].granularity_bits,
							    h.cluster_bits));
	}
	json_decref(info);

	/* the enabled bitmap recorded the writes, the disabled one did not */
	assert_true(bit_is_set(img, &g, &bms[0], 0));
	assert_false(bit_is_set(img, &g, &bms[0], 1));
	assert_true(bit_is_set(img, &g, &bms[0], (100u << 20) >> 16));
	assert_false(bit_is_set(img, &g, &bms[1], 0));

	out = calloc(1, h.bitmaps.dir_bytes);
	assert_int_equal(qcow2_bitmap_dir_serialise(bms, 2, out, h.bitmaps.dir_bytes, &used), 0);
	assert_int_equal(used, h.bitmaps.dir_bytes);
	assert_memory_equal(out, dir, used);
	assert_int_equal(qcow2_bitmap_dir_serialise(bms, 2, out, used - 1, &used), -ENOSPC);
	free(out);
	qcow2_bitmap_dir_free(bms, 2);
	free(dir);
	free(c0);
	qcow2_header_fini(&h);
}

static struct qcow2_bitmap valid_bitmap(void)
{
	struct qcow2_bitmap bm = { 0 };

	bm.table_offset = 0x50000;
	bm.table_size = 1;
	bm.flags = QCOW2_BME_AUTO;
	bm.type = QCOW2_BME_TYPE_DIRTY_TRACKING;
	bm.granularity_bits = 16;
	bm.name = "bm";
	return bm;
}

struct bm_case {
	const char *name;
	void (*mutate)(struct qcow2_bitmap *bm);
	uint64_t disk_size;
	int expect;
};

static void m_none(struct qcow2_bitmap *bm)
{
}

static void m_type(struct qcow2_bitmap *bm)
{
	bm->type = 2;
}

static void m_gran_low(struct qcow2_bitmap *bm)
{
	bm->granularity_bits = 8;
}

static void m_gran_high(struct qcow2_bitmap *bm)
{
	bm->granularity_bits = 32;
}

static void m_gran_limits(struct qcow2_bitmap *bm)
{
	bm->granularity_bits = 31;
}

static void m_reserved(struct qcow2_bitmap *bm)
{
	bm->flags |= 1u << 3;
}

static void m_extra_compatible(struct qcow2_bitmap *bm)
{
	bm->flags |= QCOW2_BME_EXTRA_DATA_COMPATIBLE;
}

static void m_no_name(struct qcow2_bitmap *bm)
{
	bm->name = "";
}

static void m_long_name(struct qcow2_bitmap *bm)
{
	static char name[1025];

	memset(name, 'n', 1024);
	bm->name = name;
}

static void m_offset_zero(struct qcow2_bitmap *bm)
{
	bm->table_offset = 0;
}

static void m_offset_misaligned(struct qcow2_bitmap *bm)
{
	bm->table_offset = 0x50200;
}

static void m_size_zero(struct qcow2_bitmap *bm)
{
	bm->table_size = 0;
}

static void m_size_huge(struct qcow2_bitmap *bm)
{
	bm->table_size = 0x8000001;
}

static void m_data_huge(struct qcow2_bitmap *bm)
{
	bm->table_size = 8193; /* 512 MiB + one 64 KiB cluster of bitmap data */
}

static void m_in_use(struct qcow2_bitmap *bm)
{
	bm->flags |= QCOW2_BME_IN_USE;
}

static const struct bm_case bm_cases[] = {
	{ "valid", m_none, 1 << 30, 0 },
	{ "type 2", m_type, 1 << 30, -EINVAL },
	{ "granularity 8", m_gran_low, 1 << 30, -EINVAL },
	{ "granularity 32", m_gran_high, 1 << 30, -EINVAL },
	{ "granularity 31", m_gran_limits, 1 << 30, 0 },
	{ "reserved flag", m_reserved, 1 << 30, -EINVAL },
	{ "extra_data_compatible", m_extra_compatible, 1 << 30, 0 },
	{ "empty name", m_no_name, 1 << 30, -EINVAL },
	{ "name 1024", m_long_name, 1 << 30, -EINVAL },
	{ "table offset 0", m_offset_zero, 1 << 30, -EINVAL },
	{ "table misaligned", m_offset_misaligned, 1 << 30, -EINVAL },
	{ "table size 0", m_size_zero, 1 << 30, -EINVAL },
	{ "table size huge", m_size_huge, 1 << 30, -EINVAL },
	{ "data over 512 MiB", m_data_huge, 1 << 30, -EINVAL },
	/* one 64 KiB cluster at 64 KiB granularity covers 32 GiB */
	{ "table too small", m_none, (UINT64_C(32) << 30) + 1, -EINVAL },
	{ "table just enough", m_none, UINT64_C(32) << 30, 0 },
	{ "in use: size not checked", m_in_use, UINT64_C(1) << 50, 0 },
};

static void test_entry_constraints(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bm_cases); i++) {
		struct qcow2_bitmap bm = valid_bitmap();

		print_message("%s\n", bm_cases[i].name);
		bm_cases[i].mutate(&bm);
		assert_int_equal(qcow2_bitmap_validate(&bm, 16, bm_cases[i].disk_size, "bm.qcow2"),
				 bm_cases[i].expect);
	}
}

/* A directory of @nb copies of valid_bitmap() named a, b, c ... */
static size_t make_dir(uint8_t *buf, size_t len, unsigned nb, struct qcow2_header *h)
{
	struct qcow2_bitmap bms[4];
	char names[4][2];
	size_t used = 0;

	for (unsigned i = 0; i < nb; i++) {
		bms[i] = valid_bitmap();
		names[i][0] = (char)('a' + i);
		names[i][1] = '\0';
		bms[i].name = names[i];
	}
	assert_int_equal(qcow2_bitmap_dir_serialise(bms, nb, buf, len, &used), 0);
	memset(h, 0, sizeof(*h));
	h->cluster_bits = 16;
	h->size_bytes = 1 << 30;
	h->bitmaps.present = true;
	h->bitmaps.nb_bitmaps = nb;
	h->bitmaps.dir_bytes = used;
	return used;
}

static void test_directory_consistency(void **state)
{
	struct qcow2_bitmap *bms = NULL;
	struct qcow2_header h;
	uint8_t buf[512];
	size_t n = make_dir(buf, sizeof(buf), 3, &h);

	assert_int_equal(n, 3 * 32);
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), 0);
	assert_string_equal(bms[2].name, "c");
	qcow2_bitmap_dir_free(bms, 3);
	/* more entries announced than present */
	h.bitmaps.nb_bitmaps = 4;
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), -EINVAL);
	assert_null(bms);
	/* fewer announced than present: bytes left over */
	h.bitmaps.nb_bitmaps = 2;
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), -EINVAL);
	/* buffer and extension disagree */
	h.bitmaps.nb_bitmaps = 3;
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n - 8, &h, NULL, &bms), -EINVAL);
	/* a name twice */
	buf[32 + 24] = 'a';
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), -EINVAL);
	/* a NUL in a name */
	buf[32 + 24] = '\0';
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), -EINVAL);
	buf[32 + 24] = 'b';
	/* a name running past the directory */
	qcow2_put_be16(buf + 2 * 32 + 18, 200);
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), -EINVAL);
	qcow2_put_be16(buf + 2 * 32 + 18, 1);
	/* every truncation of a valid directory */
	for (size_t len = 0; len < n; len++) {
		h.bitmaps.dir_bytes = len;
		assert_int_equal(qcow2_bitmap_dir_parse(buf, len, &h, NULL, &bms), -EINVAL);
	}
	h.bitmaps.dir_bytes = n;
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), 0);
	qcow2_bitmap_dir_free(bms, 3);
	qcow2_bitmap_dir_free(NULL, 3);
}

/* Extra data is the spec's, not QEMU's: kept, and usable only if marked so. */
static void test_extra_data(void **state)
{
	struct qcow2_bitmap bm = valid_bitmap(), *bms = NULL;
	struct qcow2_header h = { 0 };
	uint8_t buf[128], out[128];
	size_t n, m;

	bm.extra_data = (uint8_t *)"xtra!";
	bm.extra_data_size = 5;
	assert_false(qcow2_bitmap_usable(&bm));
	bm.flags |= QCOW2_BME_EXTRA_DATA_COMPATIBLE;
	assert_true(qcow2_bitmap_usable(&bm));
	assert_int_equal(qcow2_bitmap_entry_bytes(&bm), 32);
	assert_int_equal(qcow2_bitmap_dir_serialise(&bm, 1, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 32);
	h.cluster_bits = 16;
	h.size_bytes = 1 << 30;
	h.bitmaps = (struct qcow2_bitmaps_ext){ true, 1, n, 0x40000 };
	assert_int_equal(qcow2_bitmap_dir_parse(buf, n, &h, NULL, &bms), 0);
	assert_int_equal(bms[0].extra_data_size, 5);
	assert_memory_equal(bms[0].extra_data, "xtra!", 5);
	assert_string_equal(bms[0].name, "bm");
	assert_int_equal(qcow2_bitmap_dir_serialise(bms, 1, out, sizeof(out), &m), 0);
	assert_memory_equal(out, buf, n);
	qcow2_bitmap_dir_free(bms, 1);
}

static void test_table_entries(void **state)
{
	const char *why = NULL;
	uint64_t off;
	bool ones;

	assert_int_equal(qcow2_bitmap_table_entry_decode(0, 16, &off, &ones, &why), 0);
	assert_true(off == 0 && !ones);
	assert_int_equal(qcow2_bitmap_table_entry_decode(1, 16, &off, &ones, &why), 0);
	assert_true(off == 0 && ones);
	assert_int_equal(qcow2_bitmap_table_entry_decode(0x70000, 16, &off, &ones, &why), 0);
	assert_true(off == 0x70000 && !ones);
	assert_int_equal(qcow2_bitmap_table_entry_decode(0x70001, 16, &off, &ones, &why), -EINVAL);
	assert_string_equal(why, "bitmap table entry has an offset and the all-ones flag");
	assert_int_equal(qcow2_bitmap_table_entry_decode(0x70200, 16, &off, &ones, &why), -EINVAL);
	assert_string_equal(why, "bitmap data offset is not cluster aligned");
	assert_int_equal(qcow2_bitmap_table_entry_decode(2, 16, &off, &ones, &why), -EINVAL);
	assert_string_equal(why, "bitmap table entry has reserved bits set");
	assert_int_equal(qcow2_bitmap_table_entry_decode(UINT64_C(1) << 56, 16, &off, &ones, &why),
			 -EINVAL);
	/* table sizes: bits of granularity, bytes of bits, clusters of bytes */
	assert_int_equal(qcow2_bitmap_table_entries(1 << 30, 16, 16), 1);
	assert_int_equal(qcow2_bitmap_table_entries((UINT64_C(32) << 30) + 1, 16, 16), 2);
	assert_int_equal(qcow2_bitmap_table_entries(0, 16, 16), 0);
	assert_int_equal(qcow2_bitmap_table_entries(UINT64_MAX, 9, 9), UINT64_C(1) << 43);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_constraints),
		cmocka_unit_test(test_directory_consistency),
		cmocka_unit_test(test_extra_data),
		cmocka_unit_test(test_table_entries),
		cmocka_unit_test(test_qemu_bitmaps),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
