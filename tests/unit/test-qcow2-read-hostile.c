// SPDX-License-Identifier: MIT
/*
 * The qcow2 driver's read path on images it must refuse or read only in
 * part: a backing file with no recorded format, the corrupt bit (read-only
 * opens only), and hostile L1 and L2 entries (beyond the file, not
 * cluster aligned, reserved bits, compressed data that does not inflate),
 * each failing the read with -EIO and a log line that names the entry
 * while the rest of the image still reads.  The read path on good images
 * is test-qcow2-read.c.
 */
#include <errno.h>
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

/* Overwrite the 4-byte type of the backing format extension. */
static void drop_backing_format(const char *img)
{
	uint8_t *c0 = qt_read(img, 0, 4096);
	uint8_t unknown[4] = { 0x12, 0x34, 0x56, 0x78 };
	size_t off;

	for (off = 112; off + 8 <= 4096; off += 8)
		if (qcow2_get_be32(c0 + off) == QCOW2_EXT_BACKING_FORMAT)
			break;
	assert_true(off + 8 <= 4096);
	qt_write(img, off, unknown, sizeof(unknown));
	free(c0);
}

static void test_backing_without_format(void **state)
{
	const char *base = qt_path("nofmt-base.raw");
	const char *img = qt_path("nofmt.qcow2");
	struct drv_image *top = NULL;
	struct qt_capture cap;
	char *log;

	QT_REQUIRE_QEMU();
	qd_make_source(base, 1 * MiB, 3);
	qd_create_overlay(img, base, "raw", NULL, "1M");
	drop_backing_format(img);
	qt_capture_begin(&cap);
	assert_int_equal(drv_image_open(&qcow2_driver, img, DRV_OPEN_RDONLY, &top), -EINVAL);
	log = qt_capture_end(&cap);
	assert_non_null(strstr(log, img));
	assert_non_null(strstr(log, "no recorded format"));
	free(log);
}

/* QEMU opens an image marked corrupt read-only only. */
static void test_corrupt_bit(void **state)
{
	const char *img = qt_path("corrupt.qcow2");
	struct drv_image *di = NULL;
	uint8_t *b;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "1M", NULL), 0);
	b = qt_read(img, 79, 1);
	b[0] |= (uint8_t)QCOW2_INCOMPAT_CORRUPT;
	qt_write(img, 79, b, 1);
	free(b);
	assert_int_equal(drv_image_open(&qcow2_driver, img, 0, &di), -EACCES);
	assert_int_equal(drv_image_open(&qcow2_driver, img, DRV_OPEN_RDONLY, &di), 0);
	drv_image_close(di);
}

/* Open @img, read @len at @off: the read fails with -EIO, logging @needle. */
static void expect_read_fails(const char *img, uint64_t off, uint64_t len, const char *needle)
{
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	uint8_t *buf = malloc(len);
	struct qt_capture cap;
	char *log;

	assert_int_equal(qd_open_chain(img, 0, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	qt_capture_begin(&cap);
	assert_int_equal(drv_sync_rw(s, DRV_OP_READ, off, buf, len), -EIO);
	log = qt_capture_end(&cap);
	if (!strstr(log, needle))
		fail_msg("log does not mention '%s': %s", needle, log);
	free(log);
	/* the rest of the image still reads */
	assert_int_equal(drv_sync_rw(s, DRV_OP_READ, 0, buf, 512), 0);
	drv_sync_free(s);
	drv_image_close(top);
	free(buf);
}

/* Put @value into L1 entry @idx of @img. */
static void poke_l1(const char *img, unsigned idx, uint64_t value)
{
	uint8_t *hdr = qt_read(img, 0, 112);
	uint8_t be[8];

	qcow2_put_be64(be, value);
	qt_write(img, qcow2_get_be64(hdr + 40) + 8ull * idx, be, sizeof(be));
	free(hdr);
}

static uint64_t peek_l1(const char *img, unsigned idx)
{
	uint8_t *hdr = qt_read(img, 0, 112);
	uint8_t *e = qt_read(img, qcow2_get_be64(hdr + 40) + 8ull * idx, 8);
	uint64_t v = qcow2_get_be64(e);

	free(hdr);
	free(e);
	return v;
}

static void test_hostile_l1(void **state)
{
	const char *const cmds[] = { "write -P 0x12 0 1M", "write -P 0x13 600M 1M", NULL };
	const char *img;

	QT_REQUIRE_QEMU();
	/* L1 entry 1 maps guest 512 MiB..1 GiB at 64 KiB clusters */
	img = qt_path("hostile.qcow2");
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "1G", NULL), 0);
	qd_qemu_io(img, cmds);
	poke_l1(img, 1, (1ull << 40) | QCOW2_OFLAG_COPIED);
	expect_read_fails(img, 600 * MiB, 4096, "L1 entry 1");
	poke_l1(img, 1, (peek_l1(img, 0) & QCOW2_L1E_OFFSET_MASK) + 512);
	expect_read_fails(img, 600 * MiB, 4096, "L1 entry 1");
	poke_l1(img, 1, 0x0100000000010000ull); /* a reserved bit */
	expect_read_fails(img, 600 * MiB, 4096, "L1 entry 1");
}

static void test_hostile_l2(void **state)
{
	const char *const cmds[] = { "write -P 0x12 0 256k", NULL };
	const char *img;
	uint64_t l2;
	uint8_t be[8];

	QT_REQUIRE_QEMU();
	img = qd_build("hostile-l2.qcow2", 4 * MiB, NULL, false, cmds);
	l2 = peek_l1(img, 0) & QCOW2_L1E_OFFSET_MASK;
	/* entry 2: a data cluster offset that is not cluster aligned */
	qcow2_put_be64(be, QCOW2_OFLAG_COPIED | (5ull << 16) | 0x200);
	qt_write(img, l2 + 16, be, sizeof(be));
	expect_read_fails(img, 128 * KiB, 64 * KiB, "L2 entry");
	/* entry 3: compressed, pointing at bytes that do not inflate */
	qcow2_put_be64(be, QCOW2_OFLAG_COMPRESSED | (2ull << 54) | 0x200);
	qt_write(img, l2 + 24, be, sizeof(be));
	expect_read_fails(img, 192 * KiB, 4096, "compressed cluster");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backing_without_format),
		cmocka_unit_test(test_corrupt_bit),
		cmocka_unit_test(test_hostile_l1),
		cmocka_unit_test(test_hostile_l2),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
