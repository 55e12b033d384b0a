/* SPDX-License-Identifier: MIT */
/*
 * tap-img bench's pure parts: the seeded verification data (a wrong,
 * misplaced or stale block must never pass) and the latency histogram's
 * percentiles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/tap-img/bench.h"

#define BLOCK 4096

static void test_data_round_trips(void **state)
{
	static uint8_t buf[BLOCK];
	uint8_t want = 0;

	bench_fill(buf, BLOCK, 42, 8192, 3);
	assert_int_equal(bench_check(buf, BLOCK, 42, 8192, 3, &want), BLOCK);
}

static void test_check_finds_the_first_wrong_byte(void **state)
{
	static uint8_t buf[BLOCK];
	uint8_t want = 0, was;

	bench_fill(buf, BLOCK, 42, 8192, 3);
	was = buf[1001];
	buf[1001] ^= 0x40;
	buf[3000] ^= 0x01;
	assert_int_equal(bench_check(buf, BLOCK, 42, 8192, 3, &want), 1001);
	assert_int_equal(want, was);
}

/* Data from another block, another generation or another seed must fail. */
static void test_data_differs_by_offset_generation_and_seed(void **state)
{
	static uint8_t buf[BLOCK];
	uint8_t want;

	bench_fill(buf, BLOCK, 42, 8192, 3);
	assert_true(bench_check(buf, BLOCK, 42, 12288, 3, &want) < BLOCK);
	assert_true(bench_check(buf, BLOCK, 42, 8192, 4, &want) < BLOCK);
	assert_true(bench_check(buf, BLOCK, 43, 8192, 3, &want) < BLOCK);
	memset(buf, 0, BLOCK);
	assert_true(bench_check(buf, BLOCK, 42, 8192, 3, &want) < BLOCK);
}

static void test_rand_is_deterministic(void **state)
{
	uint64_t a = 7, b = 7, c = 8;

	for (int i = 0; i < 100; i++)
		assert_int_equal(bench_rand(&a), bench_rand(&b));
	assert_true(bench_rand(&a) != bench_rand(&c));
}

static void test_percentiles_are_within_the_bucket_error(void **state)
{
	struct bench_hist *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	assert_int_equal(bench_hist_percentile(h, 50.0), 0);
	/* 1..10000 microseconds, one sample each. */
	for (uint64_t us = 1; us <= 10000; us++)
		bench_hist_add(h, us * 1000);
	assert_int_equal(h->total, 10000);
	assert_in_range(bench_hist_percentile(h, 50.0), 5000000 * 97 / 100, 5000000 * 103 / 100);
	assert_in_range(bench_hist_percentile(h, 99.0), 9900000 * 97 / 100, 9900000 * 103 / 100);
	assert_in_range(bench_hist_percentile(h, 100.0), 10000000 * 97 / 100, 10000000 * 103 / 100);
	/* Small values are exact; huge ones do not overflow the table. */
	memset(h, 0, sizeof(*h));
	bench_hist_add(h, 17);
	assert_int_equal(bench_hist_percentile(h, 50.0), 17);
	bench_hist_add(h, UINT64_MAX);
	assert_true(bench_hist_percentile(h, 100.0) > (UINT64_MAX / 2));
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_round_trips),
		cmocka_unit_test(test_check_finds_the_first_wrong_byte),
		cmocka_unit_test(test_data_differs_by_offset_generation_and_seed),
		cmocka_unit_test(test_rand_is_deterministic),
		cmocka_unit_test(test_percentiles_are_within_the_bucket_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
