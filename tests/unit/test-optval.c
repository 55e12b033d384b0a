// SPDX-License-Identifier: MIT
/*
 * Option values read as qemu-img 7.2 reads them (the expected values were
 * checked against qemu-img create's "Formatting" line).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "optval.h"

static uint64_t size_ok(const char *s)
{
	uint64_t v = 0;

	assert_int_equal(optval_size(s, &v), 0);
	return v;
}

static void test_size_suffixes(void **state)
{
	assert_int_equal(size_ok("0"), 0);
	assert_int_equal(size_ok("65536"), 65536);
	assert_int_equal(size_ok("4k"), 4096);
	assert_int_equal(size_ok("4K"), 4096);
	assert_int_equal(size_ok("2M"), 2u << 20);
	assert_int_equal(size_ok("3g"), UINT64_C(3) << 30);
	assert_int_equal(size_ok("1T"), UINT64_C(1) << 40);
	assert_int_equal(size_ok("2P"), UINT64_C(2) << 50);
	assert_int_equal(size_ok("1e"), UINT64_C(1) << 60);
	assert_int_equal(size_ok("1B"), 1);
	assert_int_equal(size_ok("1b"), 1);
	assert_int_equal(size_ok("18446744073709551615"), UINT64_MAX);
}

static void test_size_fractions_and_hex(void **state)
{
	assert_int_equal(size_ok("1.5k"), 1536);
	assert_int_equal(size_ok("1.5M"), 1572864);
	assert_int_equal(size_ok("1.5e"), UINT64_C(3) << 59);
	assert_int_equal(size_ok("1.k"), 1024);
	assert_int_equal(size_ok("1.0"), 1);
	assert_int_equal(size_ok("0.0001k"), 0);		    /* 0.1024 rounds down */
	assert_int_equal(size_ok("0.0005k"), 1);		    /* 0.512 rounds up */
	assert_int_equal(size_ok("1.00000000000000000001k"), 1024); /* digits past 18 dropped */
	assert_int_equal(size_ok("0x10"), 16);
	assert_int_equal(size_ok("0X1E"), 30);	 /* E is a hex digit here */
	assert_int_equal(size_ok("0x1k"), 1024); /* deprecated in qemu, still accepted */
	assert_int_equal(size_ok(" 4k"), 4096);
	assert_int_equal(size_ok("+4k"), 4096);
}

static void test_size_rejects(void **state)
{
	uint64_t v = 42;

	assert_int_equal(optval_size("", &v), -EINVAL);
	assert_int_equal(optval_size("abc", &v), -EINVAL);
	assert_int_equal(optval_size("-1", &v), -EINVAL);
	assert_int_equal(optval_size("1.5", &v), -EINVAL); /* a fraction needs a suffix */
	assert_int_equal(optval_size("1.5B", &v), -EINVAL);
	assert_int_equal(optval_size(".5M", &v), -EINVAL);
	assert_int_equal(optval_size("1.5e3", &v), -EINVAL);
	assert_int_equal(optval_size("4kb", &v), -EINVAL);
	assert_int_equal(optval_size("4Mx", &v), -EINVAL);
	assert_int_equal(optval_size("1 ", &v), -EINVAL);
	assert_int_equal(optval_size("0x", &v), -EINVAL);
	assert_int_equal(optval_size("00x10", &v), -EINVAL);
	assert_int_equal(optval_size("0x1.8k", &v), -EINVAL);
	assert_int_equal(optval_size(NULL, &v), -EINVAL);
	assert_int_equal(optval_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(optval_size("16E", &v), -ERANGE);
	assert_int_equal(optval_size("0xfffffffffffffffff", &v), -ERANGE);
	assert_int_equal(v, 42); /* untouched on failure */
}

static void test_number(void **state)
{
	uint64_t v = 0;

	assert_int_equal(optval_number("16", &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(optval_number("0x10", &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(optval_number("010", &v), 0);
	assert_int_equal(v, 8);
	assert_int_equal(optval_number("-1", &v), 0); /* wraps, as in qemu */
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(optval_number("", &v), -EINVAL);
	assert_int_equal(optval_number("1k", &v), -EINVAL);
	assert_int_equal(optval_number("abc", &v), -EINVAL);
	assert_int_equal(optval_number("99999999999999999999", &v), -ERANGE);
}

static void test_bool(void **state)
{
	static const char *const yes[] = { "on", "yes", "true", "y" };
	static const char *const no[] = { "off", "no", "false", "n" };
	bool b;

	for (unsigned i = 0; i < 4; i++) {
		b = false;
		assert_int_equal(optval_bool(yes[i], &b), 0);
		assert_true(b);
		assert_int_equal(optval_bool(no[i], &b), 0);
		assert_false(b);
	}
	assert_int_equal(optval_bool("1", &b), -EINVAL);
	assert_int_equal(optval_bool("On", &b), -EINVAL);
	assert_int_equal(optval_bool("maybe", &b), -EINVAL);
	assert_int_equal(optval_bool(NULL, &b), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_suffixes), cmocka_unit_test(test_size_fractions_and_hex),
		cmocka_unit_test(test_size_rejects),  cmocka_unit_test(test_number),
		cmocka_unit_test(test_bool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
