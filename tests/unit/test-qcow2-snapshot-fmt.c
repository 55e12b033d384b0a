// SPDX-License-Identifier: MIT
/*
 * Snapshot table entries: the table qemu-img writes, read through a
 * qcow2_read_fn, matched with `qemu-img info` and rebuilt byte for byte;
 * entries from older writers, unknown extra data, the 1 KiB extra data and
 * 64 MiB table limits, and truncated input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checked.h"
#include "qcow2/format.h"
#include "qcow2/snapshot-fmt.h"
#include "qcow2-test-util.h"

static void expect_snapshot(json_t *j, const struct qcow2_snapshot *sn)
{
	assert_string_equal(json_string_value(json_object_get(j, "id")), sn->id);
	assert_string_equal(json_string_value(json_object_get(j, "name")), sn->name);
	assert_int_equal(json_integer_value(json_object_get(j, "date-sec")), sn->date_sec);
	assert_int_equal(json_integer_value(json_object_get(j, "date-nsec")), sn->date_nsec);
	assert_int_equal(json_integer_value(json_object_get(j, "vm-clock-nsec")),
			 sn->vm_clock_nsec % 1000000000);
	assert_int_equal(json_integer_value(json_object_get(j, "vm-clock-sec")),
			 sn->vm_clock_nsec / 1000000000);
	assert_int_equal(json_integer_value(json_object_get(j, "vm-state-size")),
			 sn->vm_state_bytes);
	assert_int_equal(json_integer_value(json_object_get(j, "icount")), sn->icount);
}

static void test_qemu_snapshot_table(void **state)
{
	const char *img = qt_path("snap.qcow2");
	struct qcow2_snapshot *sns = NULL;
	uint64_t table_bytes = 0;
	struct qcow2_header h;
	json_t *info, *list;
	uint8_t *c0, *disk, *out;
	int fd;

	QT_REQUIRE_QEMU();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "1G", NULL), 0);
	assert_int_equal(qt_run("qemu-io", "-c", "write 0 64k", img, NULL), 0);
	assert_int_equal(qt_run("qemu-img", "snapshot", "-c", "first", img, NULL), 0);
	assert_int_equal(qt_run("qemu-io", "-c", "write 1M 64k", img, NULL), 0);
	assert_int_equal(qt_run("qemu-img", "snapshot", "-c", "second snap", img, NULL), 0);
	assert_int_equal(
		qt_run("qemu-img", "snapshot", "-c", "third, with a longer name", img, NULL), 0);

	c0 = qt_read(img, 0, 65536);
	assert_int_equal(qcow2_header_parse(c0, 65536, img, 0, &h), 0);
	assert_int_equal(h.nb_snapshots, 3);
	fd = open(img, O_RDONLY);
	assert_int_equal(qcow2_snapshot_table_read(&h, qt_read_fd, &fd, img, 0, &sns, &table_bytes),
			 0);
	close(fd);

	info = qt_info(img);
	list = json_object_get(info, "snapshots");
	assert_int_equal(json_array_size(list), 3);
	for (unsigned i = 0; i < 3; i++) {
		expect_snapshot(json_array_get(list, i), &sns[i]);
		assert_int_equal(sns[i].extra_data_size, QCOW2_SNAPSHOT_EXTRA_BYTES);
		assert_int_equal(sns[i].disk_size_bytes, h.size_bytes);
		assert_int_equal(sns[i].l1_size, h.l1_size);
		assert_int_equal(qcow2_snapshot_validate_l1(&sns[i], h.cluster_bits, img, i), 0);
	}
	json_decref(info);

	/* the table rebuilt is the table on disk */
	assert_int_equal(qcow2_snapshot_table_bytes(sns, 3), table_bytes);
	disk = qt_read(img, h.snapshots_offset, table_bytes);
	out = malloc(table_bytes);
	assert_int_equal(qcow2_snapshot_table_serialise(sns, 3, out, table_bytes), 0);
	assert_memory_equal(out, disk, table_bytes);
	assert_int_equal(qcow2_snapshot_table_serialise(sns, 3, out, table_bytes - 1), -ENOSPC);
	free(out);
	free(disk);
	qcow2_snapshot_table_free(sns, 3);
	qcow2_header_fini(&h);
	free(c0);
}

/* An entry as older writers laid it out, @extra bytes of extra data. */
static size_t old_entry(uint8_t *p, uint32_t extra)
{
	memset(p, 0, 256);
	qcow2_put_be64(p, 0x50000);
	qcow2_put_be32(p + 8, 2);
	qcow2_put_be16(p + 12, 1);
	qcow2_put_be16(p + 14, 3);
	qcow2_put_be32(p + 16, 1000);
	qcow2_put_be64(p + 24, 5000000000);
	qcow2_put_be32(p + 32, 0x1234);
	qcow2_put_be32(p + 36, extra);
	if (extra >= 8)
		qcow2_put_be64(p + 40, 0x123456789);
	if (extra >= 16)
		qcow2_put_be64(p + 48, 777 << 20);
	memcpy(p + 40 + extra, "7abc", 4);
	return 40 + extra + 4;
}

/* What QEMU assumes for fields an entry is too short to hold. */
static void test_old_entries(void **state)
{
	static const uint32_t extras[] = { 0, 8, 16 };
	uint8_t buf[256];

	for (size_t i = 0; i < ARRAY_SIZE(extras); i++) {
		struct qcow2_snapshot sn;
		size_t n = old_entry(buf, extras[i]), pos = 0;

		assert_int_equal(qcow2_snapshot_parse(buf, n, &pos, 0, 1 << 30, NULL, 0, &sn), 0);
		assert_int_equal(pos, n);
		assert_string_equal(sn.id, "7");
		assert_string_equal(sn.name, "abc");
		assert_int_equal(sn.vm_clock_nsec, 5000000000);
		assert_int_equal(sn.vm_state_bytes, extras[i] >= 8 ? 0x123456789 : 0x1234);
		assert_int_equal(sn.disk_size_bytes, extras[i] >= 16 ? 777 << 20 : 1 << 30);
		assert_int_equal(sn.icount, -1);
		assert_int_equal(sn.extra_data_size, extras[i]);
		/* rewritten as QEMU does: with all 24 known bytes */
		assert_int_equal(qcow2_snapshot_entry_bytes(&sn), 72);
		qcow2_snapshot_fini(&sn);
	}
}

static struct qcow2_snapshot sample(const char *id, const char *name)
{
	struct qcow2_snapshot sn = { 0 };

	sn.l1_table_offset = 0x70000;
	sn.l1_size = 16;
	sn.id = strdup(id);
	sn.name = strdup(name);
	sn.date_sec = 1700000000;
	sn.date_nsec = 123;
	sn.vm_clock_nsec = 42;
	sn.vm_state_bytes = UINT64_C(5) << 32; /* too big for the 32-bit field */
	sn.disk_size_bytes = 1 << 30;
	sn.icount = 99;
	return sn;
}

static void test_unknown_extra_and_alignment(void **state)
{
	struct qcow2_snapshot a = sample("1", "a"), b = sample("22", "bee"), pa, pb;
	uint8_t buf[512];
	size_t pos = 0;

	b.unknown_extra_len = 13;
	b.unknown_extra = malloc(13);
	memcpy(b.unknown_extra, "future fields", 13);
	assert_int_equal(qcow2_snapshot_serialise(&a, buf, sizeof(buf), &pos), 0);
	assert_int_equal(pos, 40 + 24 + 2); /* unpadded */
	assert_int_equal(qcow2_snapshot_serialise(&b, buf, sizeof(buf), &pos), 0);
	assert_int_equal(pos, 72 + 40 + 24 + 13 + 5);
	assert_int_equal(qcow2_get_be32(buf + 32), 0);		       /* vm_state_size */
	assert_int_equal(qcow2_get_be64(buf + 40), UINT64_C(5) << 32); /* the large one */
	assert_int_equal(qcow2_get_be32(buf + 72 + 36), 24 + 13);
	assert_int_equal(qcow2_snapshot_table_bytes((struct qcow2_snapshot[]){ a, b }, 2), pos);

	pos = 0;
	assert_int_equal(qcow2_snapshot_parse(buf, sizeof(buf), &pos, 0, 0, NULL, 0, &pa), 0);
	assert_int_equal(qcow2_snapshot_parse(buf, sizeof(buf), &pos, 1, 0, NULL, 0, &pb), 0);
	assert_string_equal(pb.name, "bee");
	assert_int_equal(pb.unknown_extra_len, 13);
	assert_memory_equal(pb.unknown_extra, "future fields", 13);
	assert_int_equal(pb.icount, 99);
	assert_int_equal(pa.vm_state_bytes, UINT64_C(5) << 32);
	assert_int_equal(qcow2_snapshot_serialise(&pa, buf, 60, &(size_t){ 0 }), -ENOSPC);
	qcow2_snapshot_fini(&pa);
	qcow2_snapshot_fini(&pb);
	qcow2_snapshot_fini(&a);
	qcow2_snapshot_fini(&b);
	qcow2_snapshot_fini(&b);
}

static void test_extra_data_limit(void **state)
{
	uint8_t *buf = calloc(1, 4096);
	struct qcow2_snapshot sn;
	size_t pos = 0;

	qcow2_put_be32(buf + 36, 2000);
	qcow2_put_be16(buf + 12, 1);
	buf[40 + 2000] = 'x';
	assert_int_equal(qcow2_snapshot_parse(buf, 4096, &pos, 0, 0, NULL, 0, &sn), -EINVAL);
	assert_int_equal(pos, 0);
	/* check -r all keeps the first 1 KiB */
	assert_int_equal(
		qcow2_snapshot_parse(buf, 4096, &pos, 0, 0, NULL, QCOW2_SNAPSHOT_REPAIR, &sn), 0);
	assert_int_equal(pos, 40 + 2000 + 1);
	assert_int_equal(sn.extra_data_size, 1024);
	assert_int_equal(sn.unknown_extra_len, 1000);
	assert_string_equal(sn.id, "x");
	qcow2_snapshot_fini(&sn);
	free(buf);
}

static void test_truncated(void **state)
{
	struct qcow2_snapshot a = sample("1", "truncated"), sn;
	uint8_t buf[128];
	size_t pos = 0, full;

	assert_int_equal(qcow2_snapshot_serialise(&a, buf, sizeof(buf), &pos), 0);
	full = pos;
	for (size_t len = 0; len < full; len++) {
		pos = 0;
		assert_int_equal(qcow2_snapshot_parse(buf, len, &pos, 0, 0, NULL, 0, &sn), -EINVAL);
	}
	pos = full + 1;
	assert_int_equal(qcow2_snapshot_parse(buf, full, &pos, 0, 0, NULL, 0, &sn), -EINVAL);
	pos = 0;
	assert_int_equal(qcow2_snapshot_parse(buf, full, &pos, 0, 0, NULL, 0, &sn), 0);
	qcow2_snapshot_fini(&sn);
	qcow2_snapshot_fini(&a);
	/* strings longer than 65535 bytes cannot be written */
	a = sample("1", "x");
	free(a.name);
	a.name = calloc(1, 70000);
	memset(a.name, 'n', 69999);
	pos = 0;
	assert_int_equal(qcow2_snapshot_serialise(&a, buf, sizeof(buf), &pos), -EINVAL);
	qcow2_snapshot_fini(&a);
}

/* A table of endless 1064-byte entries: the reader must stop at 64 MiB. */
static int endless_table(void *opaque, uint64_t offset, void *buf, size_t len)
{
	uint8_t entry[1064] = { 0 };
	uint8_t *p = buf;

	qcow2_put_be32(entry + 36, 1024);
	for (size_t i = 0; i < len; i++)
		p[i] = entry[(offset + i) % sizeof(entry)];
	return 0;
}

static int failing_read(void *opaque, uint64_t offset, void *buf, size_t len)
{
	return -EIO;
}

static void test_table_limits(void **state)
{
	struct qcow2_header h = { 0 };
	struct qcow2_snapshot *sns = (void *)1;

	h.nb_snapshots = 65536;
	h.snapshots_offset = 0;
	assert_int_equal(qcow2_snapshot_table_read(&h, endless_table, NULL, NULL, 0, &sns, NULL),
			 -EINVAL);
	assert_null(sns);
	assert_int_equal(qcow2_snapshot_table_read(&h, failing_read, NULL, NULL, 0, &sns, NULL),
			 -EIO);
	h.nb_snapshots = 0;
	assert_int_equal(qcow2_snapshot_table_read(&h, failing_read, NULL, NULL, 0, &sns, NULL), 0);
	assert_null(sns);
	qcow2_snapshot_table_free(NULL, 5);
}

static void test_validate_l1(void **state)
{
	struct qcow2_snapshot sn = { .l1_table_offset = 0x70000, .l1_size = 16 };

	assert_int_equal(qcow2_snapshot_validate_l1(&sn, 16, "v.qcow2", 0), 0);
	sn.l1_table_offset = 0x70200;
	assert_int_equal(qcow2_snapshot_validate_l1(&sn, 16, "v.qcow2", 0), -EINVAL);
	sn.l1_table_offset = 0x70000;
	sn.l1_size = (32u << 20) / 8 + 1;
	assert_int_equal(qcow2_snapshot_validate_l1(&sn, 16, "v.qcow2", 0), -EINVAL);
	sn.l1_size = 1;
	sn.l1_table_offset = UINT64_C(1) << 63;
	assert_int_equal(qcow2_snapshot_validate_l1(&sn, 16, "v.qcow2", 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_old_entries),
		cmocka_unit_test(test_unknown_extra_and_alignment),
		cmocka_unit_test(test_extra_data_limit),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_table_limits),
		cmocka_unit_test(test_validate_l1),
		cmocka_unit_test(test_qemu_snapshot_table),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
