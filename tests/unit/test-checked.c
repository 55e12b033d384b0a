// SPDX-License-Identifier: MIT
/*
 * Checked arithmetic at its limits, and the strict integer parser that
 * every command line and control message goes through.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checked.h"
#include "errors.h"

static void test_add_overflow_at_limit(void **state)
{
	uint64_t r;

	assert_false(ck_add(UINT64_MAX - 1, (uint64_t)1, &r));
	assert_int_equal(r, UINT64_MAX);
	assert_true(ck_add(UINT64_MAX, (uint64_t)1, &r));
	assert_true(ck_add((uint64_t)1 << 63, (uint64_t)1 << 63, &r));
}

static void test_sub_and_mul_overflow(void **state)
{
	uint64_t r;
	uint32_t r32;

	assert_true(ck_sub((uint64_t)0, (uint64_t)1, &r));
	assert_false(ck_sub((uint64_t)5, (uint64_t)5, &r));
	assert_int_equal(r, 0);
	assert_false(ck_mul((uint64_t)UINT32_MAX, (uint64_t)UINT32_MAX, &r));
	assert_true(ck_mul((uint64_t)1 << 32, (uint64_t)1 << 32, &r));
	/* The result type decides: a 32-bit destination overflows sooner. */
	assert_true(ck_mul((uint64_t)1 << 16, (uint64_t)1 << 16, &r32));
}

static void test_shift_overflow(void **state)
{
	uint64_t r;

	assert_false(ck_shl_u64(1, 63, &r));
	assert_int_equal(r, (uint64_t)1 << 63);
	assert_true(ck_shl_u64(2, 63, &r));
	assert_true(ck_shl_u64(1, 64, &r));
	assert_false(ck_shl_u64(0xffff, 48, &r));
	assert_true(ck_shl_u64(0x1ffff, 48, &r));
}

static void test_align_up(void **state)
{
	uint64_t r;

	assert_false(ck_align_up_u64(1, 512, &r));
	assert_int_equal(r, 512);
	assert_false(ck_align_up_u64(512, 512, &r));
	assert_int_equal(r, 512);
	assert_true(ck_align_up_u64(UINT64_MAX - 10, 4096, &r));
	assert_true(ck_align_up_u64(10, 3, &r)); /* not a power of two */
	assert_true(ck_align_up_u64(10, 0, &r));
}

static void test_range_within_and_overlap(void **state)
{
	assert_true(range_within(0, 100, 100));
	assert_false(range_within(1, 100, 100));
	assert_false(range_within(UINT64_MAX, 2, UINT64_MAX)); /* end wraps */
	assert_false(range_within(101, 0, 100));
	assert_true(range_within(100, 0, 100));
	assert_true(ranges_overlap(0, 10, 9, 10));
	assert_false(ranges_overlap(0, 10, 10, 10));
	assert_false(ranges_overlap(5, 0, 0, 10));
	assert_true(ranges_overlap(UINT64_MAX - 1, 1, 0, UINT64_MAX));
	assert_int_equal(div_round_up_u64(UINT64_MAX, 2), (UINT64_MAX >> 1) + 1);
}

static void test_parse_u64_plain_and_suffix(void **state)
{
	uint64_t v;

	assert_int_equal(parse_u64("0", false, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_u64("18446744073709551615", false, &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(parse_u64("0x10", false, &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(parse_u64("64k", true, &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(parse_u64("1G", true, &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(parse_u64("2MiB", true, &v), 0);
	assert_int_equal(v, 2ull << 20);
	assert_int_equal(parse_u64("512B", true, &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(parse_u64("15E", true, &v), 0);
	assert_int_equal(v, 15ull << 60);
}

static void test_parse_u64_rejects(void **state)
{
	uint64_t v = 42;

	assert_int_equal(parse_u64("", false, &v), -EINVAL);
	assert_int_equal(parse_u64("-1", false, &v), -EINVAL);
	assert_int_equal(parse_u64(" 1", false, &v), -EINVAL);
	assert_int_equal(parse_u64("1k", false, &v), -EINVAL);
	assert_int_equal(parse_u64("12x", true, &v), -EINVAL);
	assert_int_equal(parse_u64("1kk", true, &v), -EINVAL);
	assert_int_equal(parse_u64("18446744073709551616", false, &v), -ERANGE);
	assert_int_equal(parse_u64("16E", true, &v), -ERANGE);
	assert_int_equal(v, 42); /* untouched on failure */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_overflow_at_limit),
		cmocka_unit_test(test_sub_and_mul_overflow),
		cmocka_unit_test(test_shift_overflow),
		cmocka_unit_test(test_align_up),
		cmocka_unit_test(test_range_within_and_overlap),
		cmocka_unit_test(test_parse_u64_plain_and_suffix),
		cmocka_unit_test(test_parse_u64_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
