// SPDX-License-Identifier: MIT
/*
 * qcow2 header parsing, validation and serialisation against images made
 * by qemu-img: every field decoded as `qemu-img info` reports it, cluster 0
 * rebuilt byte for byte, unknown fields and extensions surviving both our
 * rewrite and QEMU's, and every class of hostile header refused with the
 * field named in the log.
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

/* Cluster 0 of @img (zeros past the end of the file), and its size. */
static uint8_t *read_cluster0(const char *img, size_t *len)
{
	uint8_t *probe = qt_read(img, 0, QCOW2_HEADER_PROBE_BYTES);
	uint64_t cluster_bytes = 0;

	assert_int_equal(
		qcow2_header_cluster_bytes(probe, QCOW2_HEADER_PROBE_BYTES, &cluster_bytes), 0);
	free(probe);
	*len = cluster_bytes;
	return qt_read(img, 0, cluster_bytes);
}

static void create_image(const char *img, const char *opts, const char *size, const char *backing)
{
	const char *argv[16] = { "qemu-img", "create", "-q", "-f", "qcow2" };
	unsigned n = 5;

	if (opts) {
		argv[n++] = "-o";
		argv[n++] = opts;
	}
	if (backing) {
		argv[n++] = "-b";
		argv[n++] = backing;
		argv[n++] = "-F";
		argv[n++] = "qcow2";
	}
	argv[n++] = img;
	argv[n++] = size;
	argv[n] = NULL;
	assert_int_equal(qt_runv(argv, NULL), 0);
}

static void expect_int(json_t *info, const char *key, uint64_t value)
{
	json_t *j = qt_json_get(info, key);

	if (!json_is_integer(j))
		fail_msg("qemu-img info has no integer %s", key);
	assert_int_equal((uint64_t)json_integer_value(j), value);
}

static void expect_bool(json_t *info, const char *key, bool value)
{
	json_t *j = qt_json_get(info, key);

	if (!json_is_boolean(j))
		fail_msg("qemu-img info has no boolean %s", key);
	assert_int_equal(json_is_true(j), value);
}

static void expect_str(json_t *info, const char *key, const char *value)
{
	json_t *j = qt_json_get(info, key);

	if (!value) {
		if (j)
			fail_msg("qemu-img info has %s, the parse has none", key);
		return;
	}
	if (!json_is_string(j))
		fail_msg("qemu-img info has no string %s", key);
	assert_string_equal(json_string_value(j), value);
}

#define DATA "format-specific/data/"

/* Each decoded field against what QEMU itself reports for the image. */
static void check_against_info(const struct qcow2_header *h, const char *img)
{
	json_t *info = qt_info(img);

	assert_non_null(info);
	expect_int(info, "virtual-size", h->size_bytes);
	expect_int(info, "cluster-size", UINT64_C(1) << h->cluster_bits);
	expect_str(info, DATA "compat", h->version == 2 ? "0.10" : "1.1");
	expect_int(info, DATA "refcount-bits", UINT64_C(1) << h->refcount_order);
	expect_str(info, DATA "compression-type", h->compression_type ? "zstd" : "zlib");
	expect_str(info, "backing-filename", h->has_backing_file ? h->backing_file : NULL);
	expect_str(info, "backing-filename-format",
		   h->has_backing_format ? h->backing_format : NULL);
	expect_bool(info, "dirty-flag", h->incompatible_features & QCOW2_INCOMPAT_DIRTY);
	if (h->version == 3) {
		expect_bool(info, DATA "lazy-refcounts",
			    h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
		expect_bool(info, DATA "extended-l2",
			    h->incompatible_features & QCOW2_INCOMPAT_EXTL2);
		expect_bool(info, DATA "corrupt",
			    h->incompatible_features & QCOW2_INCOMPAT_CORRUPT);
		expect_str(info, DATA "data-file", h->data_file);
		if (h->data_file)
			expect_bool(info, DATA "data-file-raw",
				    h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
	}
	if (h->crypt_method == QCOW2_CRYPT_LUKS)
		expect_str(info, DATA "encrypt/format", "luks");
	json_decref(info);
}

/* Parse, compare with qemu-img info, rebuild cluster 0 and compare bytes. */
static void check_image(const char *img, struct qcow2_header *h)
{
	struct qcow2_geom g;
	size_t len, used = 0;
	uint8_t *buf = read_cluster0(img, &len);
	uint8_t *out = malloc(len);

	assert_non_null(out);
	assert_int_equal(qcow2_header_parse(buf, len, img, 0, h), 0);
	check_against_info(h, img);
	qcow2_geom_init(&g, h);
	assert_true(h->l1_size >= g.l1_vm_state_index);
	assert_int_equal(g.cluster_bytes, len);
	assert_int_equal(qcow2_header_serialise(h, out, len, &used), 0);
	assert_true(used <= len);
	assert_memory_equal(out, buf, len);
	free(out);
	free(buf);
}

struct image_case {
	const char *name;
	const char *opts;
	const char *size;
	bool backing;
};

static const struct image_case image_cases[] = {
	{ "v2", "compat=0.10", "1G", false },
	{ "v3", "compat=1.1", "1G", false },
	{ "v2-backing", "compat=0.10", "1G", true },
	{ "backing", NULL, "1G", true },
	{ "cs512", "cluster_size=512", "64M", false },
	{ "cs4k", "cluster_size=4k", "1G", false },
	{ "cs8k", "cluster_size=8k", "1G", false },
	{ "cs2m", "cluster_size=2M", "100G", false },
	{ "cs512-backing", "cluster_size=512", "64M", true },
	{ "rc1", "refcount_bits=1", "1G", false },
	{ "rc2", "refcount_bits=2", "1G", false },
	{ "rc4", "refcount_bits=4", "1G", false },
	{ "rc8", "refcount_bits=8", "1G", false },
	{ "rc16", "refcount_bits=16", "1G", false },
	{ "rc32", "refcount_bits=32", "1G", false },
	{ "rc64", "refcount_bits=64", "1G", false },
	{ "extl2", "extended_l2=on,cluster_size=128k", "10G", false },
	{ "extl2-16k", "extended_l2=on,cluster_size=16k", "1G", true },
	{ "zstd", "compression_type=zstd", "1G", false },
	{ "lazy", "lazy_refcounts=on", "1G", false },
	{ "empty", NULL, "0", false },
	{ "huge", "cluster_size=2M", "1P", false },
	{ "prealloc", "preallocation=metadata", "16M", false },
};

static void test_qemu_images(void **state)
{
	QT_REQUIRE_QEMU();
	for (size_t i = 0; i < ARRAY_SIZE(image_cases); i++) {
		const struct image_case *c = &image_cases[i];
		char img[64], base[64];
		struct qcow2_header h;

		print_message("image %s: -o %s\n", c->name, c->opts ? c->opts : "(defaults)");
		snprintf(img, sizeof(img), "%s.qcow2", c->name);
		snprintf(base, sizeof(base), "%s-base.qcow2", c->name);
		if (c->backing)
			create_image(qt_path(base), NULL, c->size, NULL);
		create_image(qt_path(img), c->opts, c->size, c->backing ? qt_path(base) : NULL);
		check_image(qt_path(img), &h);
		assert_int_equal(h.has_backing_file, c->backing);
		qcow2_header_fini(&h);
	}
}

static void test_data_file_image(void **state)
{
	char opts[PATH_MAX + 64];
	struct qcow2_header h;

	QT_REQUIRE_QEMU();
	snprintf(opts, sizeof(opts), "data_file=%s,data_file_raw=on", qt_path("df.raw"));
	create_image(qt_path("df.qcow2"), opts, "1G", NULL);
	check_image(qt_path("df.qcow2"), &h);
	assert_string_equal(h.data_file, qt_path("df.raw"));
	assert_true(h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE);
	qcow2_header_fini(&h);
}

static void test_luks_image(void **state)
{
	struct qcow2_header h;

	QT_REQUIRE_QEMU();
	/*
	 * qemu-img's PBKDF benchmark fails ("Unable to get accurate CPU
	 * usage") when its first round takes under a millisecond of CPU:
	 * retry rather than depend on the machine's speed.
	 */
	for (int tries = 0;; tries++) {
		int ret = qt_run("qemu-img", "create", "-q", "-f", "qcow2", "--object",
				 "secret,id=sec0,data=123456", "-o",
				 "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
				 qt_path("luks.qcow2"), "64M", NULL);

		if (ret == 0)
			break;
		assert_true(tries < 10);
	}
	check_image(qt_path("luks.qcow2"), &h);
	assert_int_equal(h.crypt_method, QCOW2_CRYPT_LUKS);
	assert_true(h.fde.present);
	assert_int_equal(h.fde.offset % (UINT64_C(1) << h.cluster_bits), 0);
	assert_true(h.fde.length > 0);
	qcow2_header_fini(&h);
}

/* The feature name table QEMU wrote, and our default one, are the same. */
static void test_feature_table(void **state)
{
	struct qcow2_header h, d;
	size_t len;
	uint8_t *buf, *out;

	QT_REQUIRE_QEMU();
	create_image(qt_path("ft.qcow2"), NULL, "1G", NULL);
	buf = read_cluster0(qt_path("ft.qcow2"), &len);
	assert_int_equal(qcow2_header_parse(buf, len, NULL, 0, &h), 0);
	assert_true(h.has_feature_table);
	assert_int_equal(h.nb_feature_names, 8);
	assert_string_equal(qcow2_feature_name(&h, QCOW2_FEAT_INCOMPAT, 4), "extended L2 entries");
	assert_string_equal(qcow2_feature_name(&h, QCOW2_FEAT_AUTOCLEAR, 1), "raw external data");
	assert_null(qcow2_feature_name(&h, QCOW2_FEAT_INCOMPAT, 5));
	assert_int_equal(qcow2_header_parse(buf, len, NULL, 0, &d), 0);
	assert_int_equal(qcow2_header_set_default_feature_table(&d), 0);
	out = malloc(len);
	assert_int_equal(qcow2_header_serialise(&d, out, len, NULL), 0);
	assert_memory_equal(out, buf, len);
	/* QEMU leaves the table out of 4 KiB clusters to keep room for names */
	d.cluster_bits = 12;
	assert_int_equal(qcow2_header_set_default_feature_table(&d), 0);
	assert_false(d.has_feature_table);
	qcow2_header_fini(&d);
	qcow2_header_fini(&h);
	free(out);
	free(buf);
}

static void add_unknowns(struct qcow2_header *h)
{
	static const uint8_t fields[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2,  3,  4,
					    5,	  6,	7,    8,    9, 10, 11, 12 };
	static const char data[] = "unknown!!";

	h->unknown_fields_len = sizeof(fields);
	h->unknown_fields = malloc(sizeof(fields));
	memcpy(h->unknown_fields, fields, sizeof(fields));
	h->unknown_exts = calloc(1, sizeof(*h->unknown_exts));
	h->unknown_exts[0].type = 0x12345678;
	h->unknown_exts[0].len = sizeof(data) - 1;
	h->unknown_exts[0].data = malloc(sizeof(data));
	memcpy(h->unknown_exts[0].data, data, sizeof(data));
	h->nb_unknown_exts = 1;
}

static void expect_unknowns(const struct qcow2_header *h)
{
	assert_int_equal(h->header_length, QCOW2_V3_HEADER_BYTES + 16);
	assert_int_equal(h->unknown_fields_len, 16);
	assert_int_equal(h->unknown_fields[0], 0xde);
	assert_int_equal(h->unknown_fields[15], 12);
	assert_int_equal(h->nb_unknown_exts, 1);
	assert_int_equal(h->unknown_exts[0].type, 0x12345678);
	assert_int_equal(h->unknown_exts[0].len, 9);
	assert_memory_equal(h->unknown_exts[0].data, "unknown!!", 9);
}

/*
 * Header fields and extensions we do not know survive our rewrite, QEMU
 * accepts the result, and they still survive QEMU's own header rewrite
 * (qemu-img amend), as iotest 031 expects.
 */
static void test_unknown_preserved(void **state)
{
	const char *img = qt_path("unknown.qcow2");
	struct qcow2_header h, h2;
	uint8_t *buf, *out, *again;
	size_t len;

	QT_REQUIRE_QEMU();
	create_image(qt_path("unknown-base.qcow2"), NULL, "1G", NULL);
	create_image(img, NULL, "1G", qt_path("unknown-base.qcow2"));
	buf = read_cluster0(img, &len);
	assert_int_equal(qcow2_header_parse(buf, len, img, 0, &h), 0);
	add_unknowns(&h);
	out = calloc(1, len);
	again = calloc(1, len);
	assert_int_equal(qcow2_header_serialise(&h, out, len, NULL), 0);
	assert_int_equal(qcow2_header_parse(out, len, img, 0, &h2), 0);
	expect_unknowns(&h2);
	assert_int_equal(qcow2_header_serialise(&h2, again, len, NULL), 0);
	assert_memory_equal(out, again, len);
	qcow2_header_fini(&h2);

	qt_write(img, 0, out, len);
	assert_int_equal(qt_run("qemu-img", "check", "-q", img, NULL), 0);
	assert_int_equal(
		qt_run("qemu-img", "amend", "-f", "qcow2", "-o", "lazy_refcounts=on", img, NULL),
		0);
	free(buf);
	buf = read_cluster0(img, &len);
	assert_int_equal(qcow2_header_parse(buf, len, img, 0, &h2), 0);
	expect_unknowns(&h2);
	assert_true(h2.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
	assert_string_equal(h2.backing_file, qt_path("unknown-base.qcow2"));
	qcow2_header_fini(&h2);
	qcow2_header_fini(&h);
	free(again);
	free(out);
	free(buf);
}

/* A backing file set through the API is what QEMU then reads. */
static void test_set_backing_roundtrip(void **state)
{
	const char *img = qt_path("setb.qcow2");
	struct qcow2_header h;
	uint8_t *buf, *out;
	json_t *info;
	size_t len;

	QT_REQUIRE_QEMU();
	create_image(qt_path("setb-base.qcow2"), NULL, "1G", NULL);
	create_image(img, NULL, "1G", NULL);
	buf = read_cluster0(img, &len);
	assert_int_equal(qcow2_header_parse(buf, len, img, 0, &h), 0);
	assert_int_equal(qcow2_header_set_backing(&h, qt_path("setb-base.qcow2"), "qcow2"), 0);
	out = calloc(1, len);
	assert_int_equal(qcow2_header_serialise(&h, out, len, NULL), 0);
	qt_write(img, 0, out, len);
	info = qt_info(img);
	assert_non_null(info);
	expect_str(info, "backing-filename", qt_path("setb-base.qcow2"));
	expect_str(info, "backing-filename-format", "qcow2");
	json_decref(info);
	assert_int_equal(qt_run("qemu-img", "check", "-q", img, NULL), 0);
	assert_int_equal(qcow2_header_set_backing(&h, "x", "0123456789abcdef"), -EINVAL);
	qcow2_header_fini(&h);
	free(out);
	free(buf);
}

/* ---- hostile headers --------------------------------------------------------------- */

/*
 * The base image for mutations: 64 KiB clusters, 1 GiB, with a backing
 * file.  Layout (checked below): header 0..112, backing format extension
 * at 112 (16 bytes), feature table at 128 (392 bytes), end marker at 520,
 * backing name at 528; reftable at 0x10000, L1 (2 entries) at 0x30000.
 */
#define EXT1 112u
#define EXT2 128u
#define FEAT(i) (EXT2 + 8u + 48u * (i))

static void put(uint8_t *b, unsigned off, unsigned width, uint64_t v)
{
	switch (width) {
	case 1:
		b[off] = (uint8_t)v;
		break;
	case 4:
		qcow2_put_be32(b + off, (uint32_t)v);
		break;
	default:
		qcow2_put_be64(b + off, v);
		break;
	}
}

static void named_unknown_bit(uint8_t *b)
{
	b[FEAT(3) + 1] = 5; /* "compression type" entry now describes bit 5 */
	memcpy(b + FEAT(3) + 2, "frobnicate", 11);
	put(b, 72, 8, UINT64_C(1) << 5);
}

static void dup_extension(uint8_t *b)
{
	put(b, EXT2, 4, QCOW2_EXT_BACKING_FORMAT);
}

/* Replace the feature table by @type/@len/@data followed by an end marker. */
static void replace_ext2(uint8_t *b, uint32_t type, uint32_t len, const void *data)
{
	memset(b + EXT2, 0, 400);
	put(b, EXT2, 4, type);
	put(b, EXT2 + 4, 4, len);
	memcpy(b + EXT2 + 8, data, len);
}

static void bitmaps_none(uint8_t *b)
{
	uint8_t d[24] = { 0 };

	qcow2_put_be64(d + 16, 0x50000);
	replace_ext2(b, QCOW2_EXT_BITMAPS, 24, d);
	put(b, 88, 8, QCOW2_AUTOCLEAR_BITMAPS);
}

static void bitmaps_reserved(uint8_t *b)
{
	uint8_t d[24] = { 0, 0, 0, 1, 0, 0, 0, 9 };

	qcow2_put_be64(d + 16, 0x50000);
	replace_ext2(b, QCOW2_EXT_BITMAPS, 24, d);
	put(b, 88, 8, QCOW2_AUTOCLEAR_BITMAPS);
}

static void bitmaps_misaligned(uint8_t *b)
{
	uint8_t d[24] = { 0, 0, 0, 1 };

	qcow2_put_be64(d + 8, 64);
	qcow2_put_be64(d + 16, 0x50200);
	replace_ext2(b, QCOW2_EXT_BITMAPS, 24, d);
	put(b, 88, 8, QCOW2_AUTOCLEAR_BITMAPS);
}

static void bitmaps_over_l1(uint8_t *b)
{
	uint8_t d[24] = { 0, 0, 0, 1 };

	qcow2_put_be64(d + 8, 64);
	qcow2_put_be64(d + 16, 0x30000);
	replace_ext2(b, QCOW2_EXT_BITMAPS, 24, d);
	put(b, 88, 8, QCOW2_AUTOCLEAR_BITMAPS);
}

static void fde_without_luks(uint8_t *b)
{
	uint8_t d[16] = { 0 };

	qcow2_put_be64(d, 0x50000);
	qcow2_put_be64(d + 8, 0x1000);
	replace_ext2(b, QCOW2_EXT_FDE, 16, d);
}

static void fde_short(uint8_t *b)
{
	uint8_t d[15] = { 0 };

	replace_ext2(b, QCOW2_EXT_FDE, 15, d);
	put(b, 32, 4, QCOW2_CRYPT_LUKS);
}

static void fde_misaligned(uint8_t *b)
{
	uint8_t d[16] = { 0 };

	qcow2_put_be64(d, 0x50010);
	qcow2_put_be64(d + 8, 0x1000);
	replace_ext2(b, QCOW2_EXT_FDE, 16, d);
	put(b, 32, 4, QCOW2_CRYPT_LUKS);
}

static void data_file_without_bit(uint8_t *b)
{
	replace_ext2(b, QCOW2_EXT_DATA_FILE, 5, "x.raw");
}

static void snapshots_misaligned(uint8_t *b)
{
	put(b, 60, 4, 1);
	put(b, 64, 8, 0x12345);
}

static void snapshots_over_reftable(uint8_t *b)
{
	put(b, 60, 4, 1);
	put(b, 64, 8, 0x10000);
}

static void backing_past_cluster(uint8_t *b)
{
	put(b, 8, 8, 0xfffc);
	put(b, 16, 4, 10);
}

static void extl2_small_clusters(uint8_t *b)
{
	put(b, 20, 4, 13);
	put(b, 72, 8, QCOW2_INCOMPAT_EXTL2);
}

static void nul_in_backing_format(uint8_t *b)
{
	b[EXT1 + 8 + 2] = 0;
}

static void compression_type_2(uint8_t *b)
{
	b[104] = 2;
	put(b, 72, 8, QCOW2_INCOMPAT_COMPRESSION);
}

struct hostile {
	const char *name;
	unsigned off; /* field to overwrite ... */
	unsigned width;
	uint64_t value;
	void (*fn)(uint8_t *b); /* ... or a mutation of its own */
	size_t len;		/* buffer length given to the parser; 0: the cluster */
	int expect;
	const char *needle; /* the log line must contain this */
};

static const struct hostile hostile_cases[] = {
	{ "bad magic", 0, 4, 0x514649fa, NULL, 0, -EINVAL, "magic 0x514649fa" },
	{ "version 4", 4, 4, 4, NULL, 0, -ENOTSUP, "version 4" },
	{ "version 1", 4, 4, 1, NULL, 0, -ENOTSUP, "version 1" },
	{ "cluster_bits 8", 20, 4, 8, NULL, 0, -EINVAL, "cluster_bits 8" },
	{ "cluster_bits 22", 20, 4, 22, NULL, 0, -EINVAL, "cluster_bits 22" },
	{ "refcount_order 7", 96, 4, 7, NULL, 0, -EINVAL, "refcount_order 7" },
	{ "header_length 100", 100, 4, 100, NULL, 0, -EINVAL, "header_length 100" },
	{ "header_length 108", 100, 4, 108, NULL, 0, -EINVAL, "header_length 108" },
	{ "header_length > cluster", 100, 4, 0x20000, NULL, 0, -EINVAL, "header_length 131072" },
	{ "truncated buffer", 0, 0, 0, NULL, 64, -EINVAL, "header_length 0" },
	{ "l1_size huge", 36, 4, 0x10000000, NULL, 0, -EINVAL, "L1 table size 268435456" },
	{ "l1_size too small", 36, 4, 1, NULL, 0, -EINVAL, "l1_size 1 is too small" },
	{ "size beyond l1", 24, 8, UINT64_C(1) << 50, NULL, 0, -EINVAL, "size 1125899906842624" },
	{ "size huge", 24, 8, UINT64_MAX, NULL, 0, -EINVAL, "is too big" },
	{ "l1 misaligned", 40, 8, 0x30200, NULL, 0, -EINVAL, "L1 table offset 0x30200" },
	{ "l1 over header", 40, 8, 0, NULL, 0, -EINVAL, "overlaps the header" },
	{ "l1 past INT64_MAX", 40, 8, 0x8000000000000000, NULL, 0, -EINVAL,
	  "exceeds the largest file offset" },
	{ "reftable misaligned", 48, 8, 0x10100, NULL, 0, -EINVAL,
	  "refcount table offset 0x10100" },
	{ "reftable on l1", 48, 8, 0x30000, NULL, 0, -EINVAL, "overlaps the L1 table" },
	{ "reftable over l1", 56, 4, 3, NULL, 0, -EINVAL, "overlaps the L1 table" },
	{ "reftable empty", 56, 4, 0, NULL, 0, -EINVAL, "refcount_table_clusters is 0" },
	{ "reftable huge", 56, 4, 129, NULL, 0, -EINVAL, "refcount table size 129" },
	{ "snapshots huge", 60, 4, 65537, NULL, 0, -EINVAL, "snapshot table size 65537" },
	{ "snapshots misaligned", 0, 0, 0, snapshots_misaligned, 0, -EINVAL,
	  "snapshot table offset 0x12345" },
	{ "snapshots over reftable", 0, 0, 0, snapshots_over_reftable, 0, -EINVAL,
	  "snapshot table at 0x10000" },
	{ "backing name too long", 16, 4, 1024, NULL, 0, -EINVAL, "backing_file_size 1024" },
	{ "backing name past cluster", 0, 0, 0, backing_past_cluster, 0, -EINVAL,
	  "backing_file_size 10" },
	{ "backing offset past cluster", 8, 8, 0x10008, NULL, 0, -EINVAL,
	  "backing_file_offset 0x10008" },
	{ "backing name in header", 8, 8, 16, NULL, 0, -EINVAL, "backing_file_offset 0x10" },
	{ "extension past cluster", EXT2 + 4, 4, 0x10000, NULL, 0, -EINVAL,
	  "length 65536 runs past" },
	{ "backing format too long", EXT1 + 4, 4, 16, NULL, 0, -EINVAL,
	  "backing format extension length 16" },
	{ "backing format with NUL", 0, 0, 0, nul_in_backing_format, 0, -EINVAL, "NUL" },
	{ "extension twice", 0, 0, 0, dup_extension, 0, -EINVAL, "appears twice" },
	{ "unknown incompat bit", 72, 8, UINT64_C(1) << 5, NULL, 0, -ENOTSUP,
	  "bit 5 (no name in the image)" },
	{ "incompat bit 63", 72, 8, UINT64_C(1) << 63, NULL, 0, -ENOTSUP, "bit 63" },
	{ "unknown bit named by the image", 0, 0, 0, named_unknown_bit, 0, -ENOTSUP,
	  "bit 5 (frobnicate)" },
	{ "compression type 2", 0, 0, 0, compression_type_2, 0, -ENOTSUP, "compression_type 2" },
	{ "zstd without bit", 104, 1, 1, NULL, 0, -EINVAL, "compression_type 1" },
	{ "compression bit with zlib", 72, 8, QCOW2_INCOMPAT_COMPRESSION, NULL, 0, -EINVAL,
	  "compression_type 0" },
	{ "crypt_method 3", 32, 4, 3, NULL, 0, -EINVAL, "crypt_method 3" },
	{ "LUKS without FDE", 32, 4, 2, NULL, 0, -EINVAL, "crypt_method 2" },
	{ "FDE without LUKS", 0, 0, 0, fde_without_luks, 0, -EINVAL, "with crypt_method 0" },
	{ "FDE length 15", 0, 0, 0, fde_short, 0, -EINVAL, "extension length 15" },
	{ "FDE misaligned", 0, 0, 0, fde_misaligned, 0, -EINVAL,
	  "encryption header offset 0x50010" },
	{ "extended L2, 8k clusters", 0, 0, 0, extl2_small_clusters, 0, -EINVAL,
	  "cluster_bits 13 too small" },
	{ "raw data file without data file", 88, 8, QCOW2_AUTOCLEAR_DATA_FILE_RAW, NULL, 0, -EINVAL,
	  "raw external data" },
	{ "data file name without bit", 0, 0, 0, data_file_without_bit, 0, -EINVAL,
	  "without incompatible bit 2" },
	{ "bitmaps: zero bitmaps", 0, 0, 0, bitmaps_none, 0, -EINVAL, "nb_bitmaps 0" },
	{ "bitmaps: reserved", 0, 0, 0, bitmaps_reserved, 0, -EINVAL, "reserved field 0x9" },
	{ "bitmaps: misaligned", 0, 0, 0, bitmaps_misaligned, 0, -EINVAL,
	  "bitmap directory offset 0x50200" },
	{ "bitmaps: over L1", 0, 0, 0, bitmaps_over_l1, 0, -EINVAL, "bitmap directory at 0x30000" },
};

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void run_hostile(const struct hostile *c, const uint8_t *base, size_t len)
{
	uint8_t *b = malloc(len);
	struct qt_capture cap;
	struct qcow2_header h;
	char *log;
	int ret;

	memcpy(b, base, len);
	if (c->fn)
		c->fn(b);
	else if (c->width)
		put(b, c->off, c->width, c->value);
	qt_capture_begin(&cap);
	ret = qcow2_header_parse(b, c->len ? c->len : len, "hostile.qcow2", 0, &h);
	log = qt_capture_end(&cap);
	print_message("%-34s -> %d\n", c->name, ret);
	assert_int_equal(ret, c->expect);
	if (!strstr(log, c->needle))
		fail_msg("%s: log does not name \"%s\": %s", c->name, c->needle, log);
	assert_non_null(strstr(log, "hostile.qcow2"));
	assert_int_equal(count_lines(log), 1);
	free(log);
	free(b);
}

static void test_hostile_headers(void **state)
{
	const char *img = qt_path("hostile.qcow2");
	struct qcow2_header h;
	uint8_t *base;
	size_t len;

	QT_REQUIRE_QEMU();
	create_image(qt_path("hostile-base.qcow2"), NULL, "1G", NULL);
	create_image(img, NULL, "1G", qt_path("hostile-base.qcow2"));
	base = read_cluster0(img, &len);
	/* the layout the mutations assume */
	assert_int_equal(qcow2_get_be32(base + EXT1), QCOW2_EXT_BACKING_FORMAT);
	assert_int_equal(qcow2_get_be32(base + EXT2), QCOW2_EXT_FEATURE_TABLE);
	assert_memory_equal(base + FEAT(3) + 2, "compression type", 17);
	assert_int_equal(qcow2_get_be64(base + 40), 0x30000);
	assert_int_equal(qcow2_get_be64(base + 48), 0x10000);
	assert_int_equal(qcow2_header_parse(base, len, img, 0, &h), 0);
	qcow2_header_fini(&h);

	for (size_t i = 0; i < ARRAY_SIZE(hostile_cases); i++) {
		run_hostile(&hostile_cases[i], base, len);
	}
	free(base);
}

/* check mode tolerates what qemu-img check must be able to open. */
static void test_check_flag(void **state)
{
	struct qcow2_header h;
	uint8_t *b;
	size_t len;

	QT_REQUIRE_QEMU();
	create_image(qt_path("chk.qcow2"), NULL, "1G", NULL);
	b = read_cluster0(qt_path("chk.qcow2"), &len);
	put(b, 56, 4, 0);
	put(b, 60, 4, 70000);
	assert_int_equal(qcow2_header_parse(b, len, NULL, 0, &h), -EINVAL);
	assert_int_equal(qcow2_header_parse(b, len, NULL, QCOW2_PARSE_CHECK, &h), 0);
	assert_int_equal(h.refcount_table_clusters, 0);
	qcow2_header_fini(&h);
	free(b);
}

/* Buffer handling that needs no qemu-img. */
static void test_buffer_edges(void **state)
{
	uint8_t b[128] = { 0 };
	struct qcow2_header h;
	uint64_t cb = 0;

	assert_int_equal(qcow2_header_cluster_bytes(b, 0, &cb), -EINVAL);
	qcow2_put_be32(b, QCOW2_MAGIC);
	qcow2_put_be32(b + 20, 16);
	assert_int_equal(qcow2_header_cluster_bytes(b, sizeof(b), &cb), 0);
	assert_int_equal(cb, 65536);
	assert_int_equal(qcow2_header_cluster_bytes(b, 20, &cb), -EINVAL);
	assert_int_equal(qcow2_header_parse(b, 0, NULL, 0, &h), -EINVAL);
	assert_int_equal(qcow2_header_parse(NULL, 0, NULL, 0, &h), -EINVAL);
	/* fini on a zeroed or finished header is a no-op */
	memset(&h, 0, sizeof(h));
	qcow2_header_fini(&h);
	qcow2_header_fini(&h);
	qcow2_header_fini(NULL);
}

/* A header built from scratch, as create will, and serialised into a too
 * small buffer. */
static void test_build_and_enospc(void **state)
{
	struct qcow2_header h = { 0 }, p;
	uint8_t buf[512], small[100];
	size_t used;

	h.version = 3;
	h.cluster_bits = 9;
	h.size_bytes = 32768; /* what one L2 table of 512-byte clusters maps */
	h.l1_size = 1;
	h.l1_table_offset = 3 * 512;
	h.refcount_table_offset = 512;
	h.refcount_table_clusters = 1;
	h.refcount_order = 4;
	h.header_length = QCOW2_V3_HEADER_BYTES;
	assert_int_equal(qcow2_header_validate(&h, "new.qcow2", 0), 0);
	assert_int_equal(qcow2_header_set_backing(&h, "base.raw", "raw"), 0);
	assert_int_equal(qcow2_header_serialise(&h, buf, sizeof(buf), &used), 0);
	/* header, backing format (8 + 8), end marker, name */
	assert_int_equal(used, 112 + 16 + 8 + 8);
	assert_int_equal(qcow2_get_be64(buf + 8), 136);
	assert_int_equal(qcow2_header_parse(buf, sizeof(buf), NULL, 0, &p), 0);
	assert_string_equal(p.backing_file, "base.raw");
	assert_string_equal(p.backing_format, "raw");
	qcow2_header_fini(&p);
	assert_int_equal(qcow2_header_serialise(&h, small, sizeof(small), NULL), -ENOSPC);
	assert_int_equal(qcow2_header_serialise(&h, buf, 140, NULL), -ENOSPC);
	/* header_length 104 images (before QEMU 5.1) keep their length */
	h.header_length = QCOW2_V3_MIN_HEADER_BYTES;
	assert_int_equal(qcow2_header_serialise(&h, buf, sizeof(buf), &used), 0);
	assert_int_equal(qcow2_get_be32(buf + 100), 104);
	assert_int_equal(qcow2_get_be32(buf + 104), QCOW2_EXT_BACKING_FORMAT);
	qcow2_header_fini(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buffer_edges),
		cmocka_unit_test(test_build_and_enospc),
		cmocka_unit_test(test_qemu_images),
		cmocka_unit_test(test_data_file_image),
		cmocka_unit_test(test_luks_image),
		cmocka_unit_test(test_feature_table),
		cmocka_unit_test(test_unknown_preserved),
		cmocka_unit_test(test_set_backing_roundtrip),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_check_flag),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
