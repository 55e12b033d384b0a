// SPDX-License-Identifier: MIT
/*
 * The qcow2 driver's read path against images made by qemu-img and
 * qemu-io: every image is read whole through the driver, in chunks of
 * assorted sizes and offsets (many not cluster aligned) and with scattered
 * iovecs, and compared byte for byte with `qemu-img convert -O raw` of the
 * same image; block status is compared with `qemu-img map` on data/zero.
 * Covers v2 and v3, clusters of 512 B to 2 MiB, zero and partially
 * written clusters, deflate and zstd compression, extended L2, a backing
 * chain of depth 3 with relative names, a short backing file, an internal
 * snapshot, and several queues at once.  Refusals and hostile tables are
 * in test-qcow2-read-hostile.c.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aio.h"
#include "checked.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ---- references ------------------------------------------------------------------- */

/* The guest view of @img as qemu-img sees it; *@size gets the virtual size. */
static uint8_t *reference(const char *img, uint64_t *size)
{
	const char *raw = qt_path("reference.raw");
	uint8_t *buf;

	if (qt_run("qemu-img", "convert", "-U", "-O", "raw", img, raw, NULL) != 0)
		fail_msg("qemu-img convert -O raw %s failed", img);
	*size = qt_file_size(raw);
	buf = qt_read(raw, 0, *size);
	unlink(raw);
	return buf;
}

/* Report the first differing byte, which says more than "not equal". */
static void expect_same(const uint8_t *got, const uint8_t *want, uint64_t len, uint64_t off)
{
	uint64_t i;

	if (memcmp(got, want, len) == 0)
		return;
	for (i = 0; got[i] == want[i]; i++)
		;
	fail_msg("guest byte 0x%llx (read at 0x%llx, %llu bytes): got 0x%02x, want 0x%02x",
		 (unsigned long long)(off + i), (unsigned long long)off, (unsigned long long)len,
		 got[i], want[i]);
}

/* The whole image in chunks of assorted sizes, some into misaligned buffers. */
static void check_chunks(struct drv_sync *s, const uint8_t *ref, uint64_t size)
{
	static const uint64_t chunks[] = { 512,	   4096, 3584,	  66048,    1048064,
					   130560, 7680, 3 * MiB, 64 * KiB, 2 * MiB + 512 };
	uint8_t *buf = malloc(3 * MiB + 1024);
	uint64_t off = 0;
	unsigned i = 0;

	assert_non_null(buf);
	while (off < size) {
		uint64_t len = MIN(chunks[i % ARRAY_SIZE(chunks)], size - off);
		uint8_t *p = buf + (i % 3 == 1 ? 1 : 0);

		memset(p, 0xee, len);
		assert_int_equal(drv_sync_rw(s, DRV_OP_READ, off, p, len), 0);
		expect_same(p, ref + off, len, off);
		off += len;
		i++;
	}
	free(buf);
}

/* Random ranges read into iovecs of random, odd pieces (some empty). */
static void check_scattered(struct drv_sync *s, struct drv_image *top, const uint8_t *ref,
			    uint64_t size)
{
	uint64_t state = 0x1234567, sectors = size / 512;
	uint8_t *buf = malloc(600 * 512);
	unsigned round;

	assert_non_null(buf);
	for (round = 0; round < 150; round++) {
		uint64_t off = (qd_rand(&state) % sectors) * 512;
		uint64_t want = 512 * (1 + qd_rand(&state) % 600);
		uint64_t len = MIN(want, size - off);
		struct iovec iov[6];
		unsigned n = 0, k;
		uint64_t at = 0;
		struct drv_req req = { .op = DRV_OP_READ, .offset = off, .len = len };

		for (k = 0; k < 5 && at < len; k++) {
			uint64_t r = 1 + qd_rand(&state) % 70000;
			uint64_t piece = k == 2 ? 0 : MIN(len - at, r);

			iov[n++] = (struct iovec){ .iov_base = buf + at, .iov_len = piece };
			at += piece;
		}
		if (at < len)
			iov[n++] = (struct iovec){ .iov_base = buf + at, .iov_len = len - at };
		req.iov = iov;
		req.iovcnt = n;
		memset(buf, 0xee, len);
		assert_int_equal(qd_submit(s, top, top, &req), 0);
		expect_same(buf, ref + off, len, off);
	}
	free(buf);
}

/* ---- block status -------------------------------------------------------------------- */

/*
 * Data/zero at @off as qemu-img map resolves it: the first image of the
 * chain that holds the range, zeros past a short backing file.  Returns
 * the run length (at most @len).
 */
static uint64_t chain_status(struct drv_sync *s, struct drv_image *top, uint64_t off, uint64_t len,
			     bool *data, bool *zero)
{
	struct drv_image *img = top;

	for (;;) {
		/* widened to the image's blocks, then cut back to [off, off + len) */
		uint64_t bb = img->block_bytes, start = ALIGN_DOWN(off, bb);
		uint64_t end = MIN(ALIGN_DOWN(off + len + bb - 1, bb), img->size_bytes);
		struct drv_req req = { .op = DRV_OP_BLOCK_STATUS,
				       .offset = start,
				       .len = end - start };

		assert_int_equal(qd_submit(s, top, img, &req), 0);
		assert_true(req.status.len > off - start && req.status.len <= end - start);
		len = MIN(len, start + req.status.len - off);
		if ((req.status.flags & DRV_BS_ALLOCATED) || !img->backing) {
			*data = req.status.flags & DRV_BS_DATA;
			*zero = req.status.flags & DRV_BS_ZERO;
			return len;
		}
		img = img->backing;
		if (off >= img->size_bytes) {
			*data = false;
			*zero = true;
			return len;
		}
		len = MIN(len, img->size_bytes - off);
	}
}

static void check_map(struct drv_sync *s, struct drv_image *top, const char *path)
{
	char *out = NULL;
	json_t *map, *e;
	size_t i;

	assert_int_equal(qt_run_out(&out, "qemu-img", "map", "-U", "--output=json", path, NULL), 0);
	map = json_loads(out, 0, NULL);
	free(out);
	assert_true(json_is_array(map));
	json_array_foreach(map, i, e)
	{
		uint64_t start = json_integer_value(json_object_get(e, "start"));
		uint64_t end = start + json_integer_value(json_object_get(e, "length"));
		bool want_data = json_is_true(json_object_get(e, "data"));
		bool want_zero = json_is_true(json_object_get(e, "zero"));

		while (start < end) {
			bool data, zero;
			uint64_t n = chain_status(s, top, start, end - start, &data, &zero);

			if (data != want_data || zero != want_zero)
				fail_msg(
					"%s: block status at 0x%llx: data %d zero %d, qemu-img map "
					"says data %d zero %d",
					path, (unsigned long long)start, data, zero, want_data,
					want_zero);
			start += n;
		}
	}
	json_decref(map);
}

/* ---- the whole check ------------------------------------------------------------------ */

/* Non-zero: pretend every backing image takes only blocks of this size. */
static uint32_t force_backing_block;

static void check_image_flags(const char *path, unsigned flags)
{
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	uint64_t size;
	uint8_t *ref = reference(path, &size);

	assert_int_equal(qd_open_chain(path, flags, &top), 0);
	assert_int_equal(top->size_bytes, size);
	for (struct drv_image *b = top->backing; b && force_backing_block; b = b->backing)
		b->block_bytes = force_backing_block;
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	check_chunks(s, ref, size);
	check_scattered(s, top, ref, size);
	check_map(s, top, path);
	assert_int_equal(drv_sync_flush(s), 0);
	drv_sync_free(s);
	drv_image_close(top);
	free(ref);
}

static void check_image(const char *path)
{
	check_image_flags(path, 0);
}

/* ---- making the images ------------------------------------------------------------------ */

/* Partial-cluster data, zeroes with and without unmap, a discard. */
static const char *const *mixed_writes(void)
{
	static char w1[PATH_MAX + 64], w2[PATH_MAX + 64];
	static const char *cmds[10];

	snprintf(w1, sizeof(w1), "write -s %s 100k 37k", qd_pattern());
	snprintf(w2, sizeof(w2), "write -s %s 5000k 3k", qd_pattern());
	cmds[0] = w1;
	cmds[1] = "write -z 1M 192k";
	cmds[2] = "write -z -u 2M 64k";
	cmds[3] = "write -P 0xa5 3146240 1536";
	cmds[4] = "discard 4M 128k";
	cmds[5] = w2;
	cmds[6] = "write -z 6000k 5k";
	cmds[7] = NULL;
	return cmds;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_v2(void **state)
{
	QT_REQUIRE_QEMU();
	check_image(qd_build("v2.qcow2", 8 * MiB, "compat=0.10", false, mixed_writes()));
}

static void test_cluster_sizes(void **state)
{
	static const char *const opts[] = {
		"cluster_size=512",
		"cluster_size=4k",
		"cluster_size=64k",
		"cluster_size=2M",
		"cluster_size=4k,refcount_bits=1",
	};
	unsigned i;

	QT_REQUIRE_QEMU();
	for (i = 0; i < ARRAY_SIZE(opts); i++) {
		print_message("%s\n", opts[i]);
		check_image(qd_build("v3.qcow2", 8 * MiB, opts[i], false, mixed_writes()));
	}
}

/* An image size that is not a whole number of clusters. */
static void test_odd_size(void **state)
{
	QT_REQUIRE_QEMU();
	check_image(qd_build("odd.qcow2", 7 * MiB + 3 * 512, NULL, false, mixed_writes()));
}

static void test_compressed(void **state)
{
	static const char *const opts[] = {
		"compression_type=zlib",
		"compression_type=zstd",
		"compression_type=zlib,cluster_size=4k",
		"compression_type=zstd,cluster_size=2M",
		"compression_type=zlib,extended_l2=on",
		"compat=0.10",
	};
	static const char *const cmds[] = {
		"write -P 0x11 200k 8k", /* partial overwrite of compressed clusters */
		"discard 4M 2M",	 /* compressed writes need unallocated clusters */
		"write -c -P 0x22 4M 2M",
		NULL,
	};
	unsigned i;

	QT_REQUIRE_QEMU();
	for (i = 0; i < ARRAY_SIZE(opts); i++) {
		print_message("%s\n", opts[i]);
		check_image(qd_build("compressed.qcow2", 8 * MiB, opts[i], true, cmds));
	}
}

static void test_extended_l2(void **state)
{
	static const char *const opts[] = {
		"extended_l2=on",
		"extended_l2=on,cluster_size=128k",
		"extended_l2=on,cluster_size=16k",
	};
	unsigned i;

	QT_REQUIRE_QEMU();
	for (i = 0; i < ARRAY_SIZE(opts); i++) {
		print_message("%s\n", opts[i]);
		check_image(qd_build("extl2.qcow2", 8 * MiB, opts[i], false, mixed_writes()));
	}
}

/* ->get_backing names the backing file absolutely, with its format. */
static void expect_backing_spec(const char *img, const char *fmt, const char *backing)
{
	struct drv_image *di = NULL;
	char want[PATH_MAX + 32];
	char *spec = NULL;

	assert_int_equal(drv_image_open(&qcow2_driver, img, DRV_OPEN_RDONLY, &di), 0);
	assert_int_equal(qcow2_driver.get_backing(di, &spec), 0);
	snprintf(want, sizeof(want), "%s:%s", fmt, backing);
	assert_string_equal(spec, want);
	free(spec);
	drv_image_close(di);
}

/* raw <- qcow2 <- qcow2, backing names relative to the images' directory */
static void test_chain(void **state)
{
	char cwd[PATH_MAX];
	const char *base = qt_path("chain-base.raw");
	const char *mid = qt_path("chain-mid.qcow2");
	const char *top = qt_path("chain-top.qcow2");
	const char *const mid_cmds[] = { "write -P 0x33 64k 64k", "write -z 512k 64k",
					 "write -P 0x34 1000k 3k", NULL };
	const char *const top_cmds[] = { "write -P 0x44 96k 64k", "write -z 1000k 1k", NULL };

	QT_REQUIRE_QEMU();
	qd_make_source(base, 6 * MiB, 77);
	qd_create_overlay(mid, "chain-base.raw", "raw", "cluster_size=4k", "6M");
	qd_qemu_io(mid, mid_cmds);
	qd_create_overlay(top, "chain-mid.qcow2", "qcow2", NULL, "6M");
	qd_qemu_io(top, top_cmds);
	expect_backing_spec(top, "qcow2", mid);
	expect_backing_spec(mid, "raw", base);
	check_image(top);

	/* relative to the image, not to the working directory */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	check_image(top + 1);
	assert_int_equal(chdir(cwd), 0);
}

/* extended L2 over a backing file: unallocated subclusters read through */
static void test_extended_l2_backing(void **state)
{
	const char *base = qt_path("x-base.raw");
	const char *top = qt_path("x-top.qcow2");
	static char w[PATH_MAX + 64];
	const char *cmds[] = { w, "write -z 64k 8k", "write -P 0x55 200k 1k", NULL };

	QT_REQUIRE_QEMU();
	snprintf(w, sizeof(w), "write -s %s 4k 4k", qd_pattern());
	qd_make_source(base, 4 * MiB, 5);
	qd_create_overlay(top, base, "raw", "extended_l2=on,cluster_size=128k", "4M");
	qd_qemu_io(top, cmds);
	check_image(top);
}

/*
 * A backing image with 4 KiB blocks (a raw file under O_DIRECT on a 4Kn
 * disk) under overlays whose extents are 512-byte granular: the pieces it
 * cannot take directly go through the bounce buffers.
 */
static void test_backing_4k_blocks(void **state)
{
	const char *base = qt_path("b4k-base.raw");
	const char *small = qt_path("b4k-512.qcow2");
	const char *sub = qt_path("b4k-extl2.qcow2");
	const char *const cmds[] = { "write -P 0x61 1536 512",	  "write -P 0x62 70656 2560",
				     "write -z 200704 512",	  "write -P 0x63 1048064 1024",
				     "write -P 0x64 3145216 512", NULL };

	QT_REQUIRE_QEMU();
	qd_make_source(base, 3 * MiB + 12 * KiB, 21);
	qd_create_overlay(small, base, "raw", "cluster_size=512", "3084K");
	qd_qemu_io(small, cmds);
	qd_create_overlay(sub, base, "raw", "extended_l2=on,cluster_size=16k", "3084K");
	qd_qemu_io(sub, cmds);
	force_backing_block = 4096;
	check_image(small);
	check_image(sub);
	force_backing_block = 0;
}

/* backing files shorter than the overlay read zeros past their end */
static void test_short_backing(void **state)
{
	const char *raw = qt_path("short.raw");
	const char *q = qt_path("short.qcow2");
	const char *top1 = qt_path("short-top1.qcow2");
	const char *top2 = qt_path("short-top2.qcow2");
	const char *const cmds[] = { "write -P 0x66 960k 128k", "write -P 0x67 3M 4k", NULL };

	QT_REQUIRE_QEMU();
	qd_make_source(raw, 1 * MiB + 1536, 9); /* ends inside a cluster */
	qd_create_overlay(top1, raw, "raw", NULL, "4M");
	qd_qemu_io(top1, cmds);
	check_image(top1);

	qd_build("short.qcow2", 1 * MiB, NULL, false, NULL);
	qd_create_overlay(top2, q, "qcow2", "cluster_size=4k", "4M");
	qd_qemu_io(top2, cmds);
	check_image(top2);
}

/* reads go through the active L1 after an internal snapshot and more writes */
static void test_snapshot(void **state)
{
	const char *const cmds[] = { "write -P 0x77 0 100k", "write -z 1M 64k",
				     "write -P 0x78 2M 4k", NULL };
	const char *img;

	QT_REQUIRE_QEMU();
	img = qd_build("snap.qcow2", 4 * MiB, NULL, false, NULL);
	assert_int_equal(qt_run("qemu-img", "snapshot", "-c", "s1", img, NULL), 0);
	qd_qemu_io(img, cmds);
	check_image(img);
}

static void test_buffered(void **state)
{
	QT_REQUIRE_QEMU();
	check_image_flags(qd_build("buffered.qcow2", 8 * MiB, NULL, false, mixed_writes()),
			  DRV_OPEN_BUFFERED);
}

/*
 * Clusters written in reverse, so that no two neighbours are contiguous on
 * the host, read into iovecs of tiny pieces: each extent takes many
 * entries of the pass's iovec pool, which runs out exactly at an extent's
 * end or in its middle, and the pass must end there.
 */
static void test_fragmented_iov(void **state)
{
	static const uint64_t piece_sizes[] = { 256, 512, 100, 4096 };
	const char *img = qt_path("frag.qcow2");
	const char *cmds[17];
	char cmdbuf[16][48];
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	struct iovec iov[1024];
	uint8_t *ref, *buf;
	uint64_t size;
	unsigned i, p;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k",
				img, "256k", NULL),
			 0);
	for (i = 0; i < 64; i++) {
		snprintf(cmdbuf[i % 16], sizeof(cmdbuf[0]), "write -P %u %u 4k", 1 + i,
			 (63 - i) * 4096);
		cmds[i % 16] = cmdbuf[i % 16];
		cmds[16] = NULL;
		if (i % 16 == 15)
			qd_qemu_io(img, cmds);
	}
	ref = reference(img, &size);
	buf = malloc(size);
	assert_int_equal(qd_open_chain(img, 0, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	for (p = 0; p < ARRAY_SIZE(piece_sizes); p++) {
		uint64_t len = MIN(size, piece_sizes[p] * ARRAY_SIZE(iov)), at = 0;
		struct drv_req req = { .op = DRV_OP_READ, .offset = 0, .len = len, .iov = iov };

		for (i = 0; at < len; i++) {
			iov[i] = (struct iovec){ .iov_base = buf + at,
						 .iov_len = MIN(piece_sizes[p], len - at) };
			at += iov[i].iov_len;
		}
		req.iovcnt = i;
		memset(buf, 0xee, len);
		assert_int_equal(qd_submit(s, top, top, &req), 0);
		expect_same(buf, ref, len, 0);
	}
	drv_sync_free(s);
	drv_image_close(top);
	free(buf);
	free(ref);
}

/* ---- several queues at once -------------------------------------------------------------- */

struct mq_thread {
	pthread_t tid;
	struct drv_image *top;
	struct drv_queue *q;
	const uint8_t *ref;
	uint64_t size;
	uint64_t seed;
	size_t priv_bytes;
	int failures;
};

static void mq_done(struct drv_req *req, int err)
{
	int *result = req->opaque;

	*result = err;
}

static void *mq_main(void *arg)
{
	struct mq_thread *t = arg;
	uint8_t *buf = malloc(256 * KiB);
	void *priv = calloc(1, t->priv_bytes);
	unsigned i;

	for (i = 0; buf && priv && i < 400; i++) {
		uint64_t off = (qd_rand(&t->seed) % (t->size / 512)) * 512;
		uint64_t want = 512 * (1 + qd_rand(&t->seed) % 512);
		uint64_t len = MIN(want, t->size - off);
		struct iovec iov = { .iov_base = buf, .iov_len = len };
		int result = 1;
		struct drv_req req = { .op = DRV_OP_READ,
				       .offset = off,
				       .len = len,
				       .iov = &iov,
				       .iovcnt = 1,
				       .q = t->q,
				       .done = mq_done,
				       .opaque = &result,
				       .priv = priv };

		drv_submit(t->top, &req);
		while (result == 1)
			evloop_run_once(t->q->loop, -1);
		if (result != 0 || memcmp(buf, t->ref + off, len) != 0)
			t->failures++;
	}
	free(priv);
	free(buf);
	return NULL;
}

static void test_queues(void **state)
{
	const char *base = qt_path("mq-base.raw");
	const char *img = qt_path("mq.qcow2");
	struct drv_queue queues[3];
	struct mq_thread t[3];
	struct drv_image *top = NULL;
	const char *const cmds[] = { "write -P 0x21 0 1M", "write -c -P 0x22 2M 512k",
				     "write -z 3M 256k", NULL };
	uint64_t size;
	uint8_t *ref;
	unsigned i;

	QT_REQUIRE_QEMU();
	qd_make_source(base, 8 * MiB, 11);
	qd_create_overlay(img, base, "raw", "cluster_size=4k", "8M");
	qd_qemu_io(img, cmds);
	ref = reference(img, &size);
	assert_int_equal(qd_open_chain(img, 0, &top), 0);
	for (i = 0; i < ARRAY_SIZE(queues); i++) {
		queues[i].index = i;
		assert_int_equal(evloop_new(&queues[i].loop), 0);
		assert_int_equal(aio_ctx_new(queues[i].loop, NULL, &queues[i].aio), 0);
	}
	assert_int_equal(drv_queues_init(top, queues, ARRAY_SIZE(queues)), 0);
	for (i = 0; i < ARRAY_SIZE(t); i++) {
		t[i] = (struct mq_thread){ .top = top,
					   .q = &queues[i],
					   .ref = ref,
					   .size = size,
					   .seed = 1000 + i,
					   .priv_bytes = drv_chain_req_priv_bytes(top) };
		assert_int_equal(pthread_create(&t[i].tid, NULL, mq_main, &t[i]), 0);
	}
	for (i = 0; i < ARRAY_SIZE(t); i++) {
		pthread_join(t[i].tid, NULL);
		assert_int_equal(t[i].failures, 0);
	}
	drv_queues_fini(top);
	for (i = 0; i < ARRAY_SIZE(queues); i++) {
		aio_ctx_free(queues[i].aio);
		evloop_free(queues[i].loop);
	}
	drv_image_close(top);
	free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v2),
		cmocka_unit_test(test_cluster_sizes),
		cmocka_unit_test(test_odd_size),
		cmocka_unit_test(test_compressed),
		cmocka_unit_test(test_extended_l2),
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_extended_l2_backing),
		cmocka_unit_test(test_backing_4k_blocks),
		cmocka_unit_test(test_short_backing),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_buffered),
		cmocka_unit_test(test_fragmented_iov),
		cmocka_unit_test(test_queues),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
