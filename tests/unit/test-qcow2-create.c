// SPDX-License-Identifier: MIT
/*
 * qcow2 create on its own (no qemu-img needed): the layout qemu-img writes
 * for the default options, and for every option set a structure that
 * checks out: the header parses, and the refcount of every cluster equals
 * the number of references to it from the header, the refcount table,
 * the L1 table and the L2 tables.  The byte-for-byte comparison with
 * qemu-img is tests/integration/test-qcow2-create*.sh.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "qcow2-test-util.h"
#include "qcow2/create.h"
#include "qcow2/format.h"

/* qcow2_create() with "k=v,k=v" options. */
static int create(const char *name, uint64_t size, const char *opts)
{
	struct drv_opt o[16];
	char buf[256];
	struct drv_create_args args = { .size_bytes = size, .opts = o };
	char *s = buf;

	snprintf(buf, sizeof(buf), "%s", opts ? opts : "");
	while (*s && args.nr_opts < 16) {
		char *comma = strchr(s, ','), *eq = strchr(s, '=');

		if (comma)
			*comma = '\0';
		assert_non_null(eq);
		*eq = '\0';
		o[args.nr_opts].key = s;
		o[args.nr_opts].value = eq + 1;
		o[args.nr_opts].used = false;
		args.nr_opts++;
		s = comma ? comma + 1 : s + strlen(s);
	}
	return qcow2_create(qt_path(name), &args);
}

static struct qcow2_header parse(const char *name)
{
	struct qcow2_header h;
	uint8_t *probe = qt_read(qt_path(name), 0, QCOW2_HEADER_PROBE_BYTES);
	uint64_t cluster_bytes;
	uint8_t *c0;

	assert_int_equal(
		qcow2_header_cluster_bytes(probe, QCOW2_HEADER_PROBE_BYTES, &cluster_bytes), 0);
	c0 = qt_read(qt_path(name), 0, cluster_bytes);
	assert_int_equal(qcow2_header_parse(c0, cluster_bytes, name, 0, &h), 0);
	free(c0);
	free(probe);
	return h;
}

/* Count one reference to each cluster of [@off, @off + @len). */
static void ref(uint32_t *refs, uint64_t nr, unsigned bits, uint64_t off, uint64_t len)
{
	for (uint64_t c = off >> bits; len && c <= (off + len - 1) >> bits; c++) {
		assert_true(c < nr);
		refs[c]++;
	}
}

/* References from the L1 table and the L2 tables it points to. */
static void ref_l1_l2(const char *path, const struct qcow2_header *h, uint32_t *refs, uint64_t nr)
{
	uint64_t cb = UINT64_C(1) << h->cluster_bits;
	bool extl2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
	unsigned esize = extl2 ? 16 : 8;
	uint8_t *l1 = qt_read(path, h->l1_table_offset, (size_t)h->l1_size * 8);

	ref(refs, nr, h->cluster_bits, h->l1_table_offset, (uint64_t)h->l1_size * 8);
	for (uint32_t i = 0; i < h->l1_size; i++) {
		uint64_t e = qcow2_get_be64(l1 + 8 * i), l2off = e & QCOW2_L1E_OFFSET_MASK;
		uint8_t *l2;

		if (!l2off)
			continue;
		assert_true(e & QCOW2_OFLAG_COPIED);
		ref(refs, nr, h->cluster_bits, l2off, cb);
		l2 = qt_read(path, l2off, cb);
		for (uint64_t j = 0; j < cb / esize; j++) {
			uint64_t d = qcow2_get_be64(l2 + j * esize);

			if (d & QCOW2_L2E_OFFSET_MASK) {
				assert_true(d & QCOW2_OFLAG_COPIED);
				ref(refs, nr, h->cluster_bits, d & QCOW2_L2E_OFFSET_MASK, cb);
			}
			if (extl2) /* preallocated: no subcluster allocated yet */
				assert_int_equal(qcow2_get_be64(l2 + j * esize + 8), 0);
		}
		free(l2);
	}
	free(l1);
}

/*
 * The refcounts stored for every cluster of the file (and past it, as far
 * as the refcount blocks go) equal the references counted from the tables.
 */
static void check_refcounts(const char *name)
{
	const char *path = qt_path(name);
	struct qcow2_header h = parse(name);
	unsigned bits = h.cluster_bits;
	uint64_t cb = UINT64_C(1) << bits, file = qt_file_size(path);
	uint64_t rt_entries = (uint64_t)h.refcount_table_clusters * cb / 8, used = 0;
	uint64_t per_block = cb * 8 >> h.refcount_order, nr;
	uint8_t *rt = qt_read(path, h.refcount_table_offset, rt_entries * 8);
	uint32_t *refs;

	/* clusters past the last refcount block must have no references */
	for (uint64_t i = 0; i < rt_entries; i++)
		used = qcow2_get_be64(rt + 8 * i) ? i + 1 : used;
	nr = used * per_block;
	refs = calloc(nr, sizeof(*refs));

	assert_non_null(refs);
	assert_true(file <= nr * cb);
	ref(refs, nr, bits, 0, cb);
	ref(refs, nr, bits, h.refcount_table_offset, rt_entries * 8);
	for (uint64_t i = 0; i < rt_entries; i++)
		ref(refs, nr, bits, qcow2_get_be64(rt + 8 * i),
		    qcow2_get_be64(rt + 8 * i) ? cb : 0);
	ref_l1_l2(path, &h, refs, nr);
	for (uint64_t i = 0; i < used; i++) {
		uint64_t boff = qcow2_get_be64(rt + 8 * i);
		uint8_t *block = boff ? qt_read(path, boff, cb) : calloc(1, cb);

		for (uint64_t j = 0; j < per_block; j++) {
			uint64_t c = i * per_block + j;

			if (qcow2_refcount_get(block, h.refcount_order, j) != refs[c])
				fail_msg("%s: cluster %" PRIu64 " has refcount %" PRIu64
					 ", %u references",
					 name, c, qcow2_refcount_get(block, h.refcount_order, j),
					 refs[c]);
			/* everything referenced lies inside the file */
			if (refs[c])
				assert_true(c * cb < file);
		}
		free(block);
	}
	free(rt);
	free(refs);
	qcow2_header_fini(&h);
}

static void test_default_layout(void **state)
{
	struct qcow2_header h;

	assert_int_equal(create("default.qcow2", 1 << 20, NULL), 0);
	/* header, refcount table, refcount block, one L1 entry: 3 clusters + 8 */
	assert_int_equal(qt_file_size(qt_path("default.qcow2")), 3 * 65536 + 8);
	h = parse("default.qcow2");
	assert_int_equal(h.version, 3);
	assert_int_equal(h.cluster_bits, 16);
	assert_int_equal(h.size_bytes, 1 << 20);
	assert_int_equal(h.header_length, 112);
	assert_int_equal(h.refcount_order, 4);
	assert_int_equal(h.refcount_table_offset, 65536);
	assert_int_equal(h.refcount_table_clusters, 1);
	assert_int_equal(h.l1_table_offset, 3 * 65536);
	assert_int_equal(h.l1_size, 1);
	assert_int_equal(h.incompatible_features | h.compatible_features | h.autoclear_features, 0);
	assert_true(h.has_feature_table);
	assert_int_equal(h.nb_feature_names, 8);
	assert_false(h.has_backing_file);
	qcow2_header_fini(&h);
	check_refcounts("default.qcow2");
}

static void test_options_reach_the_header(void **state)
{
	struct drv_opt o[] = {
		{ "compression_type", "zstd", false }, { "lazy_refcounts", "on", false },
		{ "extended_l2", "on", false },	       { "refcount_bits", "64", false },
		{ "cluster_size", "32k", false },
	};
	struct drv_create_args args = { .size_bytes = 1000,
					.backing_file = "../base.qcow2",
					.backing_format = "qcow2",
					.opts = o,
					.nr_opts = 5 };
	struct qcow2_header h;

	assert_int_equal(qcow2_create(qt_path("opts.qcow2"), &args), 0);
	for (unsigned i = 0; i < 5; i++)
		assert_true(o[i].used);
	h = parse("opts.qcow2");
	assert_int_equal(h.size_bytes, 1024); /* rounded up to 512 */
	assert_int_equal(h.cluster_bits, 15);
	assert_int_equal(h.refcount_order, 6);
	assert_int_equal(h.compression_type, QCOW2_COMPRESSION_ZSTD);
	assert_int_equal(h.incompatible_features,
			 QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2);
	assert_int_equal(h.compatible_features, QCOW2_COMPAT_LAZY_REFCOUNTS);
	assert_string_equal(h.backing_file, "../base.qcow2");
	assert_string_equal(h.backing_format, "qcow2");
	qcow2_header_fini(&h);
	check_refcounts("opts.qcow2");
}

static void test_refcounts_add_up(void **state)
{
	static const struct {
		uint64_t size;
		const char *opts;
	} cases[] = {
		{ 0, NULL },
		{ 3ull << 30, NULL },
		{ 64 << 20, "cluster_size=512" },
		{ 1ull << 30, "cluster_size=512,refcount_bits=64" }, /* table growth */
		{ 256 << 20, "cluster_size=512,refcount_bits=1" },
		{ 1ull << 30, "cluster_size=2M" },
		{ 1 << 20, "compat=0.10" },
		{ 1ull << 30, "extended_l2=on,cluster_size=16k" },
		{ 1000, "preallocation=metadata" },
		{ 40 << 20, "preallocation=metadata,cluster_size=4k" },
		{ 8 << 20, "preallocation=metadata,cluster_size=512,refcount_bits=64" },
		{ 1048577, "preallocation=falloc" },
		{ 40 << 20, "preallocation=falloc,cluster_size=4k" },
		{ 8 << 20, "preallocation=full,cluster_size=512,refcount_bits=64" },
		{ 5000, "preallocation=full,extended_l2=on" },
	};
	char name[32];

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "rc%u.qcow2", i);
		assert_int_equal(create(name, cases[i].size, cases[i].opts), 0);
		check_refcounts(name);
	}
}

static void test_refusals_leave_no_file(void **state)
{
	static const char *const bad[] = {
		"cluster_size=1000",
		"cluster_size=4M",
		"compat=0.9",
		"compat=v2,refcount_bits=8",
		"refcount_bits=3",
		"refcount_bits=128",
		"compat=v2,lazy_refcounts=on",
		"extended_l2=on,cluster_size=8k",
		"compat=v2,extended_l2=on",
		"compression_type=lz4",
		"compat=v2,compression_type=zstd",
		"preallocation=foo",
		"foo=bar",
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(create("bad.qcow2", 1 << 20, bad[i]), -EINVAL);
		assert_int_equal(access(qt_path("bad.qcow2"), F_OK), -1);
	}
	assert_int_equal(create("big.qcow2", 3ull << 50, NULL), -EFBIG);
	assert_int_equal(access(qt_path("big.qcow2"), F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_layout),
		cmocka_unit_test(test_options_reach_the_header),
		cmocka_unit_test(test_refcounts_add_up),
		cmocka_unit_test(test_refusals_leave_no_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
