// SPDX-License-Identifier: MIT
/*
 * Compressed clusters: deflate and zstd round trips, QEMU's rules for
 * incompressible data, truncated and trailing input, multi-frame zstd,
 * and the clusters `qemu-img convert -c` writes, decompressed and also
 * recompressed to the very same bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include <cmocka.h>

#include "checked.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"

static const unsigned types[] = { QCOW2_COMPRESSION_DEFLATE, QCOW2_COMPRESSION_ZSTD };

static uint64_t rng_state = 0x243f6a8885a308d3;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
}

/* Text-like data: compressible, but not trivially so. */
static void fill_text(uint8_t *p, size_t n, unsigned seed)
{
	static const char *const words[] = { "qcow2 ",	  "cluster ", "refcount ", "L2 ",
					     "snapshot ", "backing ", "zstd ",	   "deflate " };

	for (size_t i = 0; i < n;) {
		const char *w = words[(i / 7 + seed + (i >> 9)) % ARRAY_SIZE(words)];

		for (; *w && i < n; w++, i++)
			p[i] = (uint8_t)*w;
	}
}

static struct qcow2_codec *codec(unsigned type)
{
	struct qcow2_codec *c = NULL;

	assert_int_equal(qcow2_codec_new(type, &c), 0);
	assert_non_null(c);
	return c;
}

static void test_roundtrip(void **state)
{
	static const size_t sizes[] = { 512, 4096, 65536, 2u << 20 };

	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		struct qcow2_codec *c = codec(types[t]);

		for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
			size_t n = sizes[s], out_len = 0;
			uint8_t *src = malloc(n), *z = malloc(n), *back = malloc(n);

			/* twice per codec: contexts are reused between clusters */
			for (unsigned round = 0; round < 2; round++) {
				fill_text(src, n, round);
				assert_int_equal(qcow2_compress(c, z, n, src, n, &out_len), 0);
				assert_true(out_len > 0 && out_len < n);
				memset(back, 0x55, n);
				assert_int_equal(qcow2_decompress(c, back, n, z, out_len), 0);
				assert_memory_equal(back, src, n);
			}
			free(src);
			free(z);
			free(back);
		}
		qcow2_codec_free(c);
	}
	qcow2_codec_free(NULL);
}

static void test_does_not_shrink(void **state)
{
	uint8_t src[65536], z[65536 + 1024];
	size_t out_len = 0;

	fill_random(src, sizeof(src));
	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		struct qcow2_codec *c = codec(types[t]);

		/* even with room to spare, output >= input is refused */
		assert_int_equal(qcow2_compress(c, z, sizeof(z), src, sizeof(src), &out_len),
				 -ENOSPC);
		fill_text(src, sizeof(src), 1);
		assert_int_equal(qcow2_compress(c, z, 16, src, sizeof(src), &out_len), -ENOSPC);
		assert_int_equal(qcow2_compress(c, z, sizeof(z), src, 0, &out_len), -ENOSPC);
		/* and the codec still works after a failure */
		assert_int_equal(qcow2_compress(c, z, sizeof(z), src, sizeof(src), &out_len), 0);
		fill_random(src, sizeof(src));
		qcow2_codec_free(c);
	}
	struct qcow2_codec *c = NULL;

	assert_int_equal(qcow2_codec_new(2, &c), -ENOTSUP);
	assert_null(c);
}

static void test_bad_input(void **state)
{
	uint8_t src[65536], z[65536], back[65536], junk[4096];
	size_t out_len;

	fill_random(junk, sizeof(junk));
	fill_text(src, sizeof(src), 3);
	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		struct qcow2_codec *c = codec(types[t]);

		assert_int_equal(qcow2_compress(c, z, sizeof(z), src, sizeof(src), &out_len), 0);
		print_message("type %u: %zu bytes\n", types[t], out_len);
		/* cut short: the cluster cannot be filled */
		assert_int_equal(qcow2_decompress(c, back, sizeof(back), z, out_len / 2), -EIO);
		assert_int_equal(qcow2_decompress(c, back, sizeof(back), z, 0), -EIO);
		assert_int_equal(qcow2_decompress(c, back, sizeof(back), junk, sizeof(junk)), -EIO);
		/* trailing bytes (the rest of the last sector) are ignored */
		memcpy(z + out_len, junk, 300);
		assert_int_equal(qcow2_decompress(c, back, sizeof(back), z, out_len + 300), 0);
		assert_memory_equal(back, src, sizeof(back));
		/* a compressed cluster decoded into a larger one is short */
		uint8_t *big = malloc(2 * sizeof(back));
		assert_int_equal(qcow2_decompress(c, big, 2 * sizeof(back), z, out_len + 300),
				 -EIO);
		free(big);
		qcow2_codec_free(c);
	}
}

/*
 * zstd data may be several frames (QEMU decodes until the cluster is
 * full); the frame that fills the cluster must end there.  deflate has no
 * such rule in QEMU: output past the cluster is simply not produced.
 */
static void test_frames_and_overrun(void **state)
{
	enum { N = 65536 };
	uint8_t *src = malloc(2 * N), *z = malloc(2 * N + 1024), *back = malloc(N);
	struct qcow2_codec *zs = codec(QCOW2_COMPRESSION_ZSTD);
	struct qcow2_codec *df = codec(QCOW2_COMPRESSION_DEFLATE);
	size_t a, b;

	fill_text(src, 2 * N, 5);
	a = ZSTD_compress(z, 2 * N, src, N / 2, 3);
	b = ZSTD_compress(z + a, 2 * N - a, src + N / 2, N / 2, 3);
	assert_false(ZSTD_isError(a) || ZSTD_isError(b));
	assert_int_equal(qcow2_decompress(zs, back, N, z, a + b), 0);
	assert_memory_equal(back, src, N);
	/* one frame of half a cluster, then nothing: short */
	assert_int_equal(qcow2_decompress(zs, back, N, z, a), -EIO);
	/* one frame of two clusters: overruns the cluster */
	a = ZSTD_compress(z, 2 * N + 1024, src, 2 * N, 3);
	assert_false(ZSTD_isError(a));
	assert_int_equal(qcow2_decompress(zs, back, N, z, a), -EIO);
	assert_int_equal(qcow2_compress(df, z, 2 * N, src, 2 * N, &a), 0);
	assert_int_equal(qcow2_decompress(df, back, N, z, a), 0);
	assert_memory_equal(back, src, N);
	qcow2_codec_free(zs);
	qcow2_codec_free(df);
	free(src);
	free(z);
	free(back);
}

/* ---- clusters written by qemu-img convert -c --------------------------------------- */

#define RAW_BYTES ((1u << 20) + 4096) /* ends with a partial cluster */

/* Per 64 KiB cluster: text, random (stored uncompressed), zeros (skipped). */
static uint8_t *make_raw(const char *path)
{
	uint8_t *raw = calloc(1, RAW_BYTES);
	int fd;

	for (size_t i = 0; i * 65536 < RAW_BYTES; i++) {
		size_t n = MIN((size_t)65536, RAW_BYTES - i * 65536);

		if (i % 4 == 1)
			fill_random(raw + i * 65536, n);
		else if (i % 4 != 3)
			fill_text(raw + i * 65536, n, (unsigned)i);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, raw, RAW_BYTES), RAW_BYTES);
	close(fd);
	return raw;
}

/* One compressed cluster: QEMU's bytes decode to the data, and ours are QEMU's. */
static void check_compressed(struct qcow2_codec *c, const char *img, const struct qcow2_geom *g,
			     uint64_t raw_entry, const struct qcow2_l2_entry *e,
			     const uint8_t *expect)
{
	uint8_t *z = qt_read(img, e->host_offset, e->compressed_bytes);
	uint8_t *back = malloc(g->cluster_bytes), *ours = malloc(g->cluster_bytes);
	uint64_t entry;
	size_t len;

	assert_int_equal(qcow2_decompress(c, back, g->cluster_bytes, z, e->compressed_bytes), 0);
	assert_memory_equal(back, expect, g->cluster_bytes);
	assert_int_equal(qcow2_compress(c, ours, g->cluster_bytes, expect, g->cluster_bytes, &len),
			 0);
	assert_int_equal(qcow2_l2_entry_encode_compressed(g, e->host_offset, len, &entry), 0);
	assert_int_equal(entry, raw_entry);
	assert_memory_equal(ours, z, len);
	free(ours);
	free(back);
	free(z);
}

static void check_converted(const char *img, const uint8_t *raw, unsigned type)
{
	uint8_t *c0 = qt_read(img, 0, 65536), *l1, *l2, *cluster;
	struct qcow2_codec *c = codec(type);
	struct qcow2_header h;
	struct qcow2_geom g;
	unsigned compressed = 0;
	uint64_t l2_offset;
	bool copied;

	assert_int_equal(qcow2_header_parse(c0, 65536, img, 0, &h), 0);
	assert_int_equal(h.compression_type, type);
	qcow2_geom_init(&g, &h);
	l1 = qt_read(img, h.l1_table_offset, 8);
	assert_int_equal(qcow2_l1_entry_decode(&g, qcow2_get_be64(l1), &l2_offset, &copied, NULL),
			 0);
	l2 = qt_read(img, l2_offset, g.cluster_bytes);
	cluster = calloc(1, g.cluster_bytes);
	for (unsigned i = 0; (uint64_t)i * g.cluster_bytes < RAW_BYTES; i++) {
		uint64_t raw_entry = qcow2_get_be64(l2 + i * 8);
		size_t n = MIN(g.cluster_bytes, RAW_BYTES - (uint64_t)i * g.cluster_bytes);
		struct qcow2_l2_entry e;

		memset(cluster, 0, g.cluster_bytes); /* the last one is zero padded */
		memcpy(cluster, raw + (size_t)i * g.cluster_bytes, n);
		assert_int_equal(qcow2_l2_entry_decode(&g, raw_entry, 0, &e, NULL), 0);
		if (e.type == QCOW2_CLUSTER_COMPRESSED) {
			check_compressed(c, img, &g, raw_entry, &e, cluster);
			compressed++;
		} else if (e.type == QCOW2_CLUSTER_NORMAL) {
			uint8_t *data = qt_read(img, e.host_offset, n);

			assert_memory_equal(data, cluster, n);
			free(data);
		} else {
			assert_int_equal(e.type, QCOW2_CLUSTER_UNALLOCATED);
			for (size_t k = 0; k < n; k++)
				assert_int_equal(cluster[k], 0);
		}
	}
	print_message("type %u: %u compressed clusters\n", type, compressed);
	assert_int_equal(compressed, 9); /* 17 clusters: 4 random, 4 zero */
	free(cluster);
	free(l2);
	free(l1);
	free(c0);
	qcow2_codec_free(c);
	qcow2_header_fini(&h);
}

static void test_qemu_convert(void **state)
{
	const char *raw_path = qt_path("data.raw");
	uint8_t *raw;

	QT_REQUIRE_QEMU();
	raw = make_raw(raw_path);
	assert_int_equal(qt_run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw_path,
				qt_path("deflate.qcow2"), NULL),
			 0);
	assert_int_equal(qt_run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
				"compression_type=zstd", raw_path, qt_path("zstd.qcow2"), NULL),
			 0);
	check_converted(qt_path("deflate.qcow2"), raw, QCOW2_COMPRESSION_DEFLATE);
	check_converted(qt_path("zstd.qcow2"), raw, QCOW2_COMPRESSION_ZSTD);
	free(raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),    cmocka_unit_test(test_does_not_shrink),
		cmocka_unit_test(test_bad_input),    cmocka_unit_test(test_frames_and_overrun),
		cmocka_unit_test(test_qemu_convert),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
