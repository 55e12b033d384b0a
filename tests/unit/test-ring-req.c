// SPDX-License-Identifier: MIT
/*
 * Fetching and checking blkif requests (tapdisk/ring-req.c): decoding of
 * each ABI from a slot of exactly its size (so that ASan sees any read past
 * it), and every refusal of blkif-notes §4.1 on the private copy, with the
 * status the frontend would get.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring-abi.h"
#include "tapdisk/ring-req.h"

#define DISK_SECTORS 2048ull /* 1 MiB */

static const struct td_ring_limits lim = {
	.disk_sectors = DISK_SECTORS,
	.can_discard = true,
	.max_indirect_segs = 256,
};

/* Fetch from a heap slot of exactly the ABI's entry size. */
static void fetch(const void *req, size_t len, enum ring_abi abi, struct td_ring_msg *m)
{
	size_t n = ring_entry_bytes(abi);
	uint8_t *slot = malloc(n);

	assert_non_null(slot);
	memset(slot, 0xee, n);
	memcpy(slot, req, len);
	td_ring_fetch(slot, abi, m);
	free(slot);
}

static struct ring_req64 rw64(uint8_t op, uint64_t sector, unsigned nsegs)
{
	struct ring_req64 r = { .operation = op,
				.nr_segments = (uint8_t)nsegs,
				.id = 0x1122334455667788ull,
				.sector_number = sector };

	for (unsigned i = 0; i < RING_SEGS_DIRECT; i++)
		r.seg[i] = (struct ring_seg){ .gref = 100 + i, .first_sect = 0, .last_sect = 7 };
	return r;
}

static int check64(const struct ring_req64 *r, const struct td_ring_limits *l,
		   struct td_ring_plan *p)
{
	struct td_ring_msg m;

	fetch(r, sizeof(*r), RING_ABI_X86_64, &m);
	return td_ring_check(&m, l, p);
}

static void test_decode_both_abis(void **state)
{
	struct ring_req64 r64 = rw64(RING_OP_WRITE, 16, 3);
	struct ring_req32 r32 = {
		.operation = RING_OP_WRITE, .nr_segments = 3, .id = r64.id, .sector_number = 16
	};
	struct td_ring_msg a, b;

	memcpy(r32.seg, r64.seg, sizeof(r32.seg));
	fetch(&r64, sizeof(r64), RING_ABI_X86_64, &a);
	fetch(&r32, sizeof(r32), RING_ABI_X86_32, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(a.id, 0x1122334455667788ull);
	assert_int_equal(a.sector_number, 16);
	assert_int_equal(a.nr_segments, 3);
	assert_int_equal(a.seg[2].gref, 102);
	fetch(&r64, sizeof(r64), RING_ABI_NATIVE, &b);
	assert_memory_equal(&a, &b, sizeof(a));
}

static void test_decode_discard_and_indirect(void **state)
{
	struct ring_discard32 d = { .operation = RING_OP_DISCARD,
				    .flag = 1,
				    .id = 9,
				    .sector_number = 8,
				    .nr_sectors = 24 };
	struct ring_indirect32 i32 = { .operation = RING_OP_INDIRECT,
				       .indirect_op = RING_OP_READ,
				       .nr_segments = 600,
				       .id = 5,
				       .sector_number = 32,
				       .indirect_grefs = { 7, 8 } };
	struct ring_indirect64 i64 = { .operation = RING_OP_INDIRECT,
				       .indirect_op = RING_OP_READ,
				       .nr_segments = 600,
				       .id = 5,
				       .sector_number = 32,
				       .indirect_grefs = { 7, 8 } };
	struct td_ring_msg m, n;

	fetch(&d, sizeof(d), RING_ABI_X86_32, &m);
	assert_int_equal(m.flag, 1);
	assert_int_equal(m.id, 9);
	assert_int_equal(m.sector_number, 8);
	assert_int_equal(m.nr_sectors, 24);
	fetch(&i32, sizeof(i32), RING_ABI_X86_32, &m);
	fetch(&i64, sizeof(i64), RING_ABI_X86_64, &n);
	assert_memory_equal(&m, &n, sizeof(m));
	assert_int_equal(m.nr_segments, 600);
	assert_int_equal(m.indirect_grefs[1], 8);
}

static void test_read_write(void **state)
{
	struct ring_req64 r = rw64(RING_OP_READ, 40, 11);
	struct td_ring_plan p;

	r.seg[0].first_sect = 3;
	r.seg[10].last_sect = 0;
	assert_int_equal(check64(&r, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_READ);
	assert_int_equal(p.flags, 0);
	assert_int_equal(p.rsp_op, RING_OP_READ);
	assert_int_equal(p.nr_segs, 11);
	assert_int_equal(p.offset, 40 * 512);
	assert_int_equal(p.len, (5 + 9 * 8 + 1) * 512);

	r = rw64(RING_OP_WRITE, DISK_SECTORS - 8, 1); /* the last page */
	assert_int_equal(check64(&r, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_WRITE);
	assert_int_equal(p.len, 4096);
}

static void test_segment_counts(void **state)
{
	static const unsigned bad[] = { 0, 12, 255 };
	struct ring_req64 r;
	struct td_ring_plan p;

	for (unsigned i = 0; i < 3; i++) {
		r = rw64(RING_OP_READ, 0, bad[i]);
		assert_int_equal(check64(&r, &lim, &p), -EINVAL);
		r = rw64(RING_OP_WRITE, 0, bad[i]);
		assert_int_equal(check64(&r, &lim, &p), -EINVAL);
		assert_int_equal(td_ring_status(-EINVAL), RING_RSP_ERROR);
	}
	r = rw64(RING_OP_FLUSH_DISKCACHE, 0, 12);
	assert_int_equal(check64(&r, &lim, &p), -EINVAL);
}

static void test_segment_bounds(void **state)
{
	static const uint8_t cases[][2] = {
		{ 1, 0 }, { 0, 8 }, { 7, 8 }, { 0, 255 }, { 255, 255 }
	};
	struct td_ring_plan p;

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ring_req64 r = rw64(RING_OP_WRITE, 0, 4);

		r.seg[3].first_sect = cases[i][0];
		r.seg[3].last_sect = cases[i][1];
		assert_int_equal(check64(&r, &lim, &p), -EINVAL);
	}
}

static void test_sector_range(void **state)
{
	static const uint64_t sectors[] = { DISK_SECTORS - 7, DISK_SECTORS, UINT64_MAX - 3,
					    UINT64_MAX / 512 };
	struct td_ring_plan p;

	for (unsigned i = 0; i < 4; i++) {
		struct ring_req64 r = rw64(RING_OP_READ, sectors[i], 1);

		assert_int_equal(check64(&r, &lim, &p), -EINVAL);
	}
}

static void test_readonly(void **state)
{
	struct td_ring_limits ro = lim;
	struct ring_req64 r = rw64(RING_OP_WRITE, 0, 1);
	struct ring_discard64 d = { .operation = RING_OP_DISCARD, .nr_sectors = 8 };
	struct td_ring_msg m;
	struct td_ring_plan p;

	ro.readonly = true;
	assert_int_equal(check64(&r, &ro, &p), -EROFS);
	r = rw64(RING_OP_WRITE_BARRIER, 0, 2);
	assert_int_equal(check64(&r, &ro, &p), -EROFS);
	fetch(&d, sizeof(d), RING_ABI_X86_64, &m);
	assert_int_equal(td_ring_check(&m, &ro, &p), -EROFS);
	r = rw64(RING_OP_READ, 0, 1);
	assert_int_equal(check64(&r, &ro, &p), 0);
	r = rw64(RING_OP_FLUSH_DISKCACHE, 0, 0);
	assert_int_equal(check64(&r, &ro, &p), 0);
	assert_int_equal(td_ring_status(-EROFS), RING_RSP_ERROR);
}

static void test_flush_and_barrier(void **state)
{
	struct ring_req64 r = rw64(RING_OP_FLUSH_DISKCACHE, 0, 0);
	struct td_ring_plan p;

	assert_int_equal(check64(&r, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_FLUSH);
	assert_int_equal(p.flags, 0);
	assert_int_equal(p.rsp_op, RING_OP_FLUSH_DISKCACHE);
	r = rw64(RING_OP_FLUSH_DISKCACHE, 8, 2); /* data: flush first, then write */
	assert_int_equal(check64(&r, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_WRITE);
	assert_int_equal(p.flags, TD_REQ_BARRIER);
	r = rw64(RING_OP_WRITE_BARRIER, 0, 0);
	assert_int_equal(check64(&r, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_FLUSH);
	assert_int_equal(p.flags, TD_REQ_BARRIER);
	r = rw64(RING_OP_WRITE_BARRIER, 8, 1);
	assert_int_equal(check64(&r, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_WRITE);
	assert_int_equal(p.flags, TD_REQ_BARRIER | TD_REQ_FUA);
	assert_int_equal(p.rsp_op, RING_OP_WRITE_BARRIER);
}

static int check_discard(uint8_t flag, uint64_t sector, uint64_t n, const struct td_ring_limits *l,
			 struct td_ring_plan *p)
{
	struct ring_discard64 d = {
		.operation = RING_OP_DISCARD, .flag = flag, .sector_number = sector, .nr_sectors = n
	};
	struct td_ring_msg m;

	fetch(&d, sizeof(d), RING_ABI_X86_64, &m);
	return td_ring_check(&m, l, p);
}

static void test_discard(void **state)
{
	struct td_ring_limits nodiscard = lim;
	struct td_ring_plan p;

	assert_int_equal(check_discard(0, 8, 16, &lim, &p), 0);
	assert_int_equal(p.op, TD_OP_DISCARD);
	assert_int_equal(p.offset, 4096);
	assert_int_equal(p.len, 8192);
	assert_int_equal(p.nr_segs, 0);
	assert_int_equal(check_discard(RING_DISCARD_SECURE, 8, 16, &lim, &p), -EOPNOTSUPP);
	assert_int_equal(td_ring_status(-EOPNOTSUPP), RING_RSP_EOPNOTSUPP);
	assert_int_equal(check_discard(0, 8, 0, &lim, &p), -EINVAL);
	assert_int_equal(check_discard(0, 8, DISK_SECTORS, &lim, &p), -EINVAL);
	assert_int_equal(check_discard(0, 1, UINT64_MAX, &lim, &p), -EINVAL);
	nodiscard.can_discard = false;
	assert_int_equal(check_discard(0, 8, 16, &nodiscard, &p), -EOPNOTSUPP);
}

static int check_indirect(uint8_t iop, uint16_t nsegs, uint64_t sector,
			  const struct td_ring_limits *l, struct td_ring_plan *p)
{
	struct ring_indirect64 r = { .operation = RING_OP_INDIRECT,
				     .indirect_op = iop,
				     .nr_segments = nsegs,
				     .sector_number = sector };
	struct td_ring_msg m;

	fetch(&r, sizeof(r), RING_ABI_X86_64, &m);
	return td_ring_check(&m, l, p);
}

static void test_indirect(void **state)
{
	struct td_ring_limits big = lim, none = lim;
	struct ring_seg segs[256];
	struct td_ring_plan p;

	assert_int_equal(check_indirect(RING_OP_WRITE, 256, 0, &lim, &p), 0);
	assert_true(p.indirect);
	assert_int_equal(p.op, TD_OP_WRITE);
	assert_int_equal(p.rsp_op, RING_OP_WRITE); /* never 6: Linux checks */
	assert_int_equal(p.nr_indirect, 1);
	for (unsigned i = 0; i < 256; i++)
		segs[i] = (struct ring_seg){ .gref = 1, .first_sect = 0, .last_sect = 7 };
	assert_int_equal(td_ring_check_segs(segs, 256, &lim, &p), 0);
	assert_int_equal(p.len, 1 << 20);
	segs[200].last_sect = 9;
	assert_int_equal(td_ring_check_segs(segs, 256, &lim, &p), -EINVAL);
	segs[200].last_sect = 7;
	assert_int_equal(check_indirect(RING_OP_READ, 256, 8, &lim, &p), 0);
	assert_int_equal(td_ring_check_segs(segs, 256, &lim, &p), -EINVAL); /* past the end */

	assert_int_equal(check_indirect(RING_OP_READ, 0, 0, &lim, &p), -EINVAL);
	assert_int_equal(check_indirect(RING_OP_READ, 257, 0, &lim, &p), -EINVAL);
	assert_int_equal(check_indirect(RING_OP_FLUSH_DISKCACHE, 1, 0, &lim, &p), -EINVAL);
	assert_int_equal(p.rsp_op, RING_OP_FLUSH_DISKCACHE);
	assert_int_equal(check_indirect(RING_OP_INDIRECT, 1, 0, &lim, &p), -EINVAL);
	big.max_indirect_segs = 4096;
	assert_int_equal(check_indirect(RING_OP_READ, 513, 0, &big, &p), 0);
	assert_int_equal(p.nr_indirect, 2);
	assert_int_equal(check_indirect(RING_OP_READ, 4097, 0, &big, &p), -EINVAL);
	none.max_indirect_segs = 0;
	assert_int_equal(check_indirect(RING_OP_READ, 8, 0, &none, &p), -EOPNOTSUPP);
}

static void test_unknown_ops(void **state)
{
	static const uint8_t ops[] = { RING_OP_RESERVED_1, 7, 8, 128, 255 };
	struct td_ring_plan p;

	for (unsigned i = 0; i < sizeof(ops); i++) {
		struct ring_req64 r = rw64(ops[i], 0, 1);

		assert_int_equal(check64(&r, &lim, &p), -EOPNOTSUPP);
		assert_int_equal(p.rsp_op, ops[i]);
	}
	assert_int_equal(td_ring_status(0), RING_RSP_OKAY);
	assert_int_equal(td_ring_status(-EIO), RING_RSP_ERROR);
	assert_int_equal(td_ring_status(-ENOTSUP), RING_RSP_EOPNOTSUPP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_both_abis),
		cmocka_unit_test(test_decode_discard_and_indirect),
		cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_segment_counts),
		cmocka_unit_test(test_segment_bounds),
		cmocka_unit_test(test_sector_range),
		cmocka_unit_test(test_readonly),
		cmocka_unit_test(test_flush_and_barrier),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_indirect),
		cmocka_unit_test(test_unknown_ops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
