// SPDX-License-Identifier: MIT
/*
 * The blkif ring engine end to end in one process: tap-front's frontend
 * (tools/tap-front/front.h, a separate implementation of the other end)
 * over the local transport, attached with td_blkif_connect to a real vbd
 * on a raw file, driven by tap-front's verified load.  Every ABI, indirect
 * requests, multi-page rings; every hostile mode; the slot bytes a
 * response must leave zero; refused attachments.  The multi-queue runs,
 * which ThreadSanitizer checks, are in test-ring-threads.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "ring-test-util.h"
#include "ringshm.h"

/*
 * A verified random load with @fc's frontend, its data on the frontend's
 * frames or (@copy, tapdisk --ring-copy) copied through the ring's pages:
 * every request with data must have taken that path.
 */
static void verified_run_path(const struct tf_conf *fc, uint64_t bs, uint64_t ops, bool copy)
{
	struct td_ring_stats st;
	struct rig r;

	rig_open(&r, fc->nr_queues, false);
	r.copy = copy;
	assert_int_equal(rig_attach(&r, fc), 0);
	r.load = (struct tf_load_conf){ .fill = 0,
					.mix = BENCH_MIXED,
					.random = true,
					.bs = bs,
					.depth = fc->depth,
					.nr_queues = fc->nr_queues,
					.ops = scaled(ops),
					.verify = true,
					.seed = 42,
					.flush = true };
	rig_run(&r);
	expect_clean(&r);
	assert_true(r.sum.verified > 0);
	assert_int_equal(r.sum.ops, scaled(ops));
	rig_ring_stats(&r, &st);
	assert_true(st.requests >= scaled(ops));
	assert_int_equal(copy ? st.mapped : st.copied, 0);
	assert_true((copy ? st.copied : st.mapped) >= scaled(ops));
	rig_close(&r);
}

static void verified_run(const struct tf_conf *fc, uint64_t bs, uint64_t ops)
{
	verified_run_path(fc, bs, ops, false);
}

static void test_abi_x86_64(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_64,
				    .nr_queues = 1,
				    .depth = 8,
				    .max_bytes = 8192,
				    .sub_page = true };

	verified_run(&fc, 8192, 2000);
}

static void test_abi_x86_32(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_32,
				    .nr_queues = 1,
				    .depth = 8,
				    .max_bytes = 8192,
				    .sub_page = true };

	verified_run(&fc, 8192, 2000);
}

static void test_abi_native_big_direct(void **state)
{
	/* 11 full segments: the largest direct request */
	const struct tf_conf fc = {
		.abi = RING_ABI_NATIVE, .nr_queues = 1, .depth = 4, .max_bytes = 11 * 4096
	};

	verified_run(&fc, 11 * 4096, 1000);
}

static void test_indirect_multipage(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_32,
				    .order = 2,
				    .nr_queues = 1,
				    .depth = 16,
				    .max_bytes = 64 * 1024,
				    .indirect_segs = 32,
				    .sub_page = true };

	verified_run(&fc, 64 * 1024, 1000);
}

/* The copy path (tapdisk --ring-copy) still serves every ABI and size. */
static void test_copy_path(void **state)
{
	const struct tf_conf small = { .abi = RING_ABI_X86_32,
				       .nr_queues = 1,
				       .depth = 8,
				       .max_bytes = 8192,
				       .sub_page = true };
	const struct tf_conf big = { .abi = RING_ABI_X86_64,
				     .order = 2,
				     .nr_queues = 1,
				     .depth = 8,
				     .max_bytes = 1024 * 1024,
				     .indirect_segs = 256 };

	verified_run_path(&small, 8192, 1000, true);
	verified_run_path(&big, 1024 * 1024, 100, true); /* depth 8: waits for pages */
}

/* 1 MiB requests on the frontend's frames, more at once than the pool holds (5). */
static void test_mapped_big(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_NATIVE,
				    .order = 2,
				    .nr_queues = 1,
				    .depth = 8,
				    .max_bytes = 1024 * 1024,
				    .indirect_segs = 256 };

	verified_run(&fc, 1024 * 1024, 200);
}

/* ---- hostile -------------------------------------------------------------- */

static void hostile_run(enum tf_hostile mode, unsigned queues, struct rig *r)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = queues, .depth = 8, .max_bytes = 4096
	};

	rig_open(r, queues, false);
	assert_int_equal(rig_attach(r, &fc), 0);
	r->load = (struct tf_load_conf){ .fill = 0,
					 .mix = BENCH_MIXED,
					 .random = true,
					 .bs = 4096,
					 .depth = 8,
					 .nr_queues = queues,
					 .ops = scaled(1200),
					 .verify = true,
					 .seed = 7,
					 .hostile = mode };
	if (mode == TF_HOSTILE_CHANGE)
		r->load.span = DISK_BYTES - TF_CHANGE_RESERVE_BYTES;
	rig_run(r);
	expect_clean(r);
	assert_true(r->sum.hostile.sent > 0);
	assert_int_equal(r->sum.hostile.answered, r->sum.hostile.sent);
}

static void test_hostile_requests(void **state)
{
	static const enum tf_hostile modes[] = { TF_HOSTILE_SEGMENTS, TF_HOSTILE_NR_SEGMENTS,
						 TF_HOSTILE_PAST_END, TF_HOSTILE_OPS };

	for (unsigned i = 0; i < ARRAY_SIZE(modes); i++) {
		struct td_ring_stats st;
		struct rig r;

		hostile_run(modes[i], 2, &r);
		td_ring_get_stats(td_blkif_ring(r.blkif, 0), &st);
		assert_true(st.bad_requests > 0);
		assert_false(st.halted);
		rig_close(&r);
	}
}

static void test_hostile_prod(void **state)
{
	struct td_ring_stats st0, st1;
	struct rig r;

	hostile_run(TF_HOSTILE_PROD, 2, &r);
	td_ring_get_stats(td_blkif_ring(r.blkif, 0), &st0);
	td_ring_get_stats(td_blkif_ring(r.blkif, 1), &st1);
	assert_true(st0.halted);
	assert_false(st1.halted);
	assert_true(st1.requests > 0);
	rig_close(&r); /* a halted ring detaches like any other */
}

static void test_hostile_storm(void **state)
{
	struct td_ring_stats st;
	struct rig r;

	hostile_run(TF_HOSTILE_STORM, 2, &r);
	td_ring_get_stats(td_blkif_ring(r.blkif, 0), &st);
	assert_true(st.spurious > 0);
	rig_close(&r);
}

/* Whatever the rewrites, nothing lands past the 16 KiB after the span. */
static void test_hostile_change(void **state)
{
	uint64_t from = DISK_BYTES - TF_CHANGE_RESERVE_BYTES + 16 * 1024;
	uint8_t *rest;
	struct rig r;

	hostile_run(TF_HOSTILE_CHANGE, 1, &r);
	rig_close(&r);
	rest = qt_read(disk_path(), from, DISK_BYTES - from);
	for (uint64_t i = 0; i < DISK_BYTES - from; i++)
		if (rest[i])
			fail_msg("byte %llu written past the changed requests' range",
				 (unsigned long long)(from + i));
	free(rest);
}

/* ---- single requests ---------------------------------------------------------- */

static void test_readonly_and_discard(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 1, .depth = 1, .max_bytes = 4096
	};
	struct tf_queue *q;
	struct rig r;

	rig_open(&r, 1, true);
	assert_int_equal(rig_attach(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_WRITE, 0, 4096), RING_RSP_ERROR);
	/* a read-only disk offers no discard */
	assert_int_equal(one_request(q, RING_OP_DISCARD, 0, 4096), RING_RSP_EOPNOTSUPP);
	assert_int_equal(one_request(q, RING_OP_FLUSH_DISKCACHE, 0, 0), RING_RSP_OKAY);
	rig_close(&r);

	rig_open(&r, 1, false);
	assert_int_equal(rig_attach(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	memset(tf_queue_io(q, 0)->buf, 0xab, 4096);
	assert_int_equal(one_request(q, RING_OP_WRITE, 8192, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_WRITE_BARRIER, 12288, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_WRITE_BARRIER, 0, 0), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_DISCARD, 8192, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_READ, 8192, 4096), RING_RSP_OKAY);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(tf_queue_io(q, 0)->buf[i], 0); /* discarded: zeros */
	assert_int_equal(one_request(q, RING_OP_READ, 12288, 4096), RING_RSP_OKAY);
	assert_int_equal(tf_queue_io(q, 0)->buf[100], 0xab);
	rig_close(&r);
}

/* The response's padding is written, not left as the request's bytes (XSA-216). */
static void test_response_padding(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 1, .depth = 1, .max_bytes = 4096
	};
	struct ring_rsp64 rsp;
	struct tf_queue *q;
	uint8_t *slot;
	struct rig r;

	rig_open(&r, 1, false);
	assert_int_equal(rig_attach(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	for (unsigned i = 0; i < 3; i++) /* gen, in the id's top bytes, becomes non-zero */
		assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_OKAY);
	slot = (uint8_t *)tf_queue_sring(q) + RING_SRING_HDR_BYTES + 2 * RING_ENTRY64_BYTES;
	memcpy(&rsp, slot, sizeof(rsp));
	assert_int_equal(rsp.pad1, 0);
	assert_int_equal(rsp.pad2, 0);
	assert_int_equal(rsp.id >> 32, 3);
	rig_close(&r);
}

static void test_refused_attach(void **state)
{
	struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 3, .depth = 1, .max_bytes = 4096
	};
	struct td_blkif_conf c;
	struct td_blkif *b = NULL;
	char why[256];
	struct rig r;

	rig_open(&r, 2, false);
	assert_int_equal(rig_attach(&r, &fc), -EINVAL); /* 3 queues on a 2-queue vbd */
	tf_dev_free(r.dev);

	fc.nr_queues = 1;
	assert_int_equal(tf_dev_new(&fc, &r.dev), 0);
	conf_from(r.dev, &fc, &c);
	c.order = RING_ORDER_MAX + 1;
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "ring-page-order"));

	conf_from(r.dev, &fc, &c);
	c.refs[0][0] = 0; /* reference 0 never grants anything */
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);
	conf_from(r.dev, &fc, &c);
	c.refs[0][0] = tf_io_data_gref(tf_queue_io(tf_dev_queue(r.dev, 0), 0), 0) + 100000;
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);

	conf_from(r.dev, &fc, &c);
	close(c.memfd);
	c.memfd = memfd_create("unsealed", MFD_CLOEXEC);
	assert_int_equal(ftruncate(c.memfd, 1 << 20), 0);
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EPERM);

	conf_from(r.dev, &fc, &c);
	close(c.kick_fds[0]);
	c.kick_fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);
	tf_dev_free(r.dev);
	vbd_close(r.vbd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi_x86_64),
		cmocka_unit_test(test_abi_x86_32),
		cmocka_unit_test(test_abi_native_big_direct),
		cmocka_unit_test(test_indirect_multipage),
		cmocka_unit_test(test_copy_path),
		cmocka_unit_test(test_mapped_big),
		cmocka_unit_test(test_hostile_requests),
		cmocka_unit_test(test_hostile_prod),
		cmocka_unit_test(test_hostile_storm),
		cmocka_unit_test(test_hostile_change),
		cmocka_unit_test(test_readonly_and_discard),
		cmocka_unit_test(test_response_padding),
		cmocka_unit_test(test_refused_attach),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
