// SPDX-License-Identifier: MIT
/*
 * The qcow2 driver's open-time options (QEMU's cache options) and the one
 * parser and checker of driver options (drivers/opts.c): a tiny
 * l2-cache-size still reads and writes correctly while slices are evicted
 * (the image then passes qemu-img check and qemu-io reads the data back),
 * a refcount-cache-size too, and a bad option or value is refused naming
 * the key.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "buf.h"
#include "qcow2/internal.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"

#define KiB UINT64_C(1024)
#define MiB (UINT64_C(1024) * 1024)

/* Open @path with the qcow2 driver and the options in @optstr; the error, or 0. */
static int open_with(const char *path, unsigned flags, const char *optstr, struct drv_image **img)
{
	struct drv_opt *opts = NULL;
	unsigned nr = 0;
	int err = optstr ? drv_opts_parse(optstr, &opts, &nr) : 0;

	if (!err)
		err = drv_image_open_opts(&qcow2_driver, path, flags, opts, nr, img);
	free(opts);
	return err;
}

/* The open is refused with -EINVAL (or @want) and the log names @needle. */
static void refused(const char *path, const char *optstr, int want, const char *needle)
{
	struct drv_image *img = NULL;
	struct qt_capture c;
	char *log;
	int err;

	qt_capture_begin(&c);
	err = open_with(path, DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED, optstr, &img);
	log = qt_capture_end(&c);
	assert_int_equal(err, want);
	assert_null(img);
	if (!strstr(log, needle))
		fail_msg("'%s': the log '%s' does not name '%s'", optstr, log, needle);
	free(log);
}

static void test_parse(void **state)
{
	struct drv_opt *opts = NULL;
	unsigned nr = 0, bad = 99;

	assert_int_equal(drv_opts_parse("l2-cache-size=1M,refcount-cache-size=64k", &opts, &nr), 0);
	assert_int_equal(nr, 2);
	assert_string_equal(opts[1].key, "refcount-cache-size");
	assert_string_equal(opts[1].value, "64k");
	assert_int_equal(drv_opts_check(&qcow2_driver, "x", opts, nr, &bad), 0);
	free(opts);
	assert_int_equal(drv_opts_parse("l2-cache-size=1M,junk", &opts, &nr), -EINVAL);
	assert_int_equal(drv_opts_parse("=1", &opts, &nr), -EINVAL);
	assert_int_equal(drv_opts_parse("cache-size=1M,l2-cache-sise=2M", &opts, &nr), 0);
	assert_int_equal(drv_opts_check(&qcow2_driver, "x", opts, nr, &bad), -EINVAL);
	assert_int_equal(bad, 1);
	/* raw takes no open options at all */
	assert_int_equal(drv_opts_check(drv_find("raw"), "x", opts, 1, &bad), -EINVAL);
	assert_int_equal(bad, 0);
	free(opts);
}

static void test_refused(void **state)
{
	const char *img = qt_path("refused.qcow2");

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "8M", NULL), 0);
	refused(img, "l2-cache-sise=1M", -EINVAL, "l2-cache-sise");
	refused(img, "l2-cache-size=lots", -EINVAL, "l2-cache-size");
	refused(img, "refcount-cache-size=-", -EINVAL, "refcount-cache-size");
	refused(img, "cache-size=1M,l2-cache-size=512k,refcount-cache-size=512k", -EINVAL,
		"may not be set at the same time");
	refused(img, "cache-size=1M,l2-cache-size=2M", -EINVAL, "l2-cache-size may not exceed");
	refused(img, "l2-cache-entry-size=1000", -EINVAL, "power of two");
	refused(img, "l2-cache-entry-size=128k", -EINVAL, "power of two");
	refused(img, "l2-cache-entry-size=512", -ENOTSUP, "l2-cache-entry-size");
}

static struct qcow2_l2_cache_stats cache_stats(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_l2_cache_stats st;

	qcow2_l2_cache_get_stats(qi->l2_cache, &st);
	return st;
}

/* Block @i (4 KiB at every 64 KiB of the disk) holds byte 1 + i % 251. */
static void fill_block(uint8_t *buf, uint64_t i)
{
	memset(buf, (int)(1 + i % 251), 4 * KiB);
}

/*
 * 512-byte clusters: one 512-byte slice maps 32 KiB of disk, so the
 * smallest cache (32 slices, 1 MiB of disk) is evicted over and over by
 * writes and reads across 16 MiB.
 */
static void tiny_cache(const char *name, const char *optstr)
{
	const char *img = qt_path(name);
	uint64_t size = 16 * MiB, blocks = size / (64 * KiB), i;
	uint8_t *buf = buf_alloc(4 * KiB, 4096), *want = malloc(4 * KiB);
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	char cmd[64];

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
				img, "16M", NULL),
			 0);
	assert_int_equal(open_with(img, DRV_OPEN_BUFFERED, optstr, &top), 0);
	assert_int_equal(qcow2_l2_cache_slices(((struct qcow2_image *)top->priv)->l2_cache),
			 QCOW2_L2_CACHE_MIN_SLICES);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	for (i = 0; i < blocks; i++) {
		fill_block(buf, i);
		assert_int_equal(drv_sync_rw(s, DRV_OP_WRITE, i * 64 * KiB, buf, 4 * KiB), 0);
	}
	assert_int_equal(drv_sync_flush(s), 0);
	for (i = blocks; i-- > 0;) { /* backwards: every slice read again */
		fill_block(want, i);
		assert_int_equal(drv_sync_rw(s, DRV_OP_READ, i * 64 * KiB, buf, 4 * KiB), 0);
		assert_memory_equal(buf, want, 4 * KiB);
	}
	assert_true(cache_stats(top).evictions > blocks);
	drv_sync_free(s);
	drv_image_close(top);
	assert_int_equal(qt_run("qemu-img", "check", "-q", img, NULL), 0);
	snprintf(cmd, sizeof(cmd), "read -P %u %" PRIu64 " 4k", (unsigned)(1 + 200 % 251),
		 200 * 64 * KiB);
	qd_qemu_io(img, (const char *const[]){ cmd, NULL });
	buf_free(buf);
	free(want);
}

static void test_tiny_l2_cache(void **state)
{
	tiny_cache("tiny.qcow2", "l2-cache-size=1");
}

static void test_tiny_combined(void **state)
{
	/* all to the refcount cache but the floors: the same smallest L2 cache */
	tiny_cache("combined.qcow2", "cache-size=4k,refcount-cache-size=4k");
}

static void test_default_unchanged(void **state)
{
	const char *img = qt_path("default.qcow2");
	struct drv_image *top = NULL;
	struct qcow2_image *qi;
	struct qcow2_geom g;
	struct qcow2_header h = { 0 };

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "1G", NULL), 0);
	assert_int_equal(open_with(img, DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED, NULL, &top), 0);
	qi = top->priv;
	h = qi->hdr;
	qcow2_geom_init(&g, &h);
	assert_int_equal(qcow2_l2_cache_slices(qi->l2_cache),
			 qcow2_l2_cache_default_slices(&g, 1024 * MiB));
	drv_image_close(top);
	assert_int_equal(
		open_with(img, DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED, "l2-cache-size=1M", &top), 0);
	qi = top->priv;
	assert_int_equal(qcow2_l2_cache_slices(qi->l2_cache), MiB / 4096);
	drv_image_close(top);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_tiny_l2_cache),
		cmocka_unit_test(test_tiny_combined),
		cmocka_unit_test(test_default_unchanged),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
