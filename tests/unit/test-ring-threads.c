// SPDX-License-Identifier: MIT
/*
 * The ring engine with many threads at once (the TSan subset runs this):
 * two queues on rings of 16 pages; two frontends attached to the same vbd
 * with two queues each, loading it together; and a frontend attached,
 * loaded and detached over and over while another one keeps loading,
 * which exercises the hand-over of rings between the control thread and
 * the queue threads (start, drain, stop, free).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring-test-util.h"

static void test_two_queues_order4(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .order = 4, .nr_queues = 2, .depth = 64, .max_bytes = 4096
	};
	struct rig r;

	rig_open(&r, 2, false);
	assert_int_equal(rig_attach(&r, &fc), 0);
	r.load = (struct tf_load_conf){ .fill = 0,
					.mix = BENCH_MIXED,
					.random = true,
					.bs = 4096,
					.depth = 64,
					.nr_queues = 2,
					.ops = scaled(8000),
					.verify = true,
					.seed = 11,
					.flush = true };
	rig_run(&r);
	expect_clean(&r);
	assert_true(r.sum.verified > 0);
	rig_close(&r);
}

/* A second frontend on @a's vbd, with its own half of the disk. */
static void attach_second(struct rig *a, struct rig *b, const struct tf_conf *fc)
{
	memset(b, 0, sizeof(*b));
	b->vbd = a->vbd;
	assert_int_equal(rig_attach(b, fc), 0);
}

static void load_half(struct rig *r, unsigned half, uint64_t ops, uint64_t seed, unsigned depth)
{
	r->load = (struct tf_load_conf){ .fill = 0,
					 .mix = BENCH_MIXED,
					 .random = true,
					 .bs = 8192,
					 .depth = depth,
					 .nr_queues = 2,
					 .ops = ops,
					 .verify = true,
					 .seed = seed,
					 .offset = half * DISK_BYTES / 2,
					 .span = DISK_BYTES / 2 };
}

static void test_two_frontends(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_32,
				    .order = 2,
				    .nr_queues = 2,
				    .depth = 16,
				    .max_bytes = 8192,
				    .sub_page = true };
	pthread_t ta[2], tb[2];
	struct rig a, b;

	rig_open(&a, 2, false);
	assert_int_equal(rig_attach(&a, &fc), 0);
	attach_second(&a, &b, &fc);
	load_half(&a, 0, scaled(4000), 1, 16);
	load_half(&b, 1, scaled(4000), 2, 16);
	rig_start(&a, ta);
	rig_start(&b, tb);
	rig_join(&a, ta);
	rig_join(&b, tb);
	expect_clean(&a);
	expect_clean(&b);
	td_blkif_disconnect(b.blkif);
	tf_dev_free(b.dev);
	rig_close(&a);
}

/* Attach, load, detach, again and again, while another frontend loads. */
static void test_attach_detach_under_load(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 2, .depth = 8, .max_bytes = 8192
	};
	unsigned rounds = under_valgrind() ? 3 : 12;
	pthread_t ta[2];
	struct rig a, b;

	rig_open(&a, 2, false);
	assert_int_equal(rig_attach(&a, &fc), 0);
	load_half(&a, 0, scaled(6000), 3, 8);
	rig_start(&a, ta);
	for (unsigned i = 0; i < rounds; i++) {
		attach_second(&a, &b, &fc);
		load_half(&b, 1, scaled(400), 4 + i, 8);
		b.load.fill = -1; /* earlier rounds wrote there */
		rig_run(&b);
		expect_clean(&b);
		td_blkif_disconnect(b.blkif);
		tf_dev_free(b.dev);
	}
	rig_join(&a, ta);
	expect_clean(&a);
	rig_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_queues_order4),
		cmocka_unit_test(test_two_frontends),
		cmocka_unit_test(test_attach_detach_under_load),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
