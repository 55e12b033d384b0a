// SPDX-License-Identifier: MIT
/*
 * Aligned buffers and the fixed pool: alignment, exhaustion, reuse, and
 * debug-flag parsing of the logger (the other small lib piece).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "errors.h"
#include "log.h"

static void test_buf_alloc_alignment(void **state)
{
	for (size_t align = 512; align <= 65536; align *= 2) {
		void *p = buf_alloc(1000, align);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % align, 0);
		memset(p, 0xab, 1000);
		buf_free(p);
	}
	buf_free(NULL);
}

static void test_pool_exhausts_and_reuses(void **state)
{
	struct buf_pool *pool = NULL;
	void *bufs[4];

	assert_int_equal(buf_pool_new(5000, 4, 4096, &pool), 0);
	assert_int_equal(buf_pool_buf_bytes(pool), 8192); /* rounded to alignment */
	for (int i = 0; i < 4; i++) {
		bufs[i] = buf_pool_get(pool);
		assert_non_null(bufs[i]);
		assert_int_equal((uintptr_t)bufs[i] % 4096, 0);
		memset(bufs[i], i, 8192); /* no overlap: ASan/valgrind would see it */
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(bufs[i], bufs[j]);
	}
	assert_null(buf_pool_get(pool));
	assert_int_equal(buf_pool_available(pool), 0);
	buf_pool_put(pool, bufs[2]);
	assert_ptr_equal(buf_pool_get(pool), bufs[2]);
	for (int i = 0; i < 4; i++)
		buf_pool_put(pool, bufs[i]);
	assert_int_equal(buf_pool_available(pool), 4);
	buf_pool_free(pool);
	buf_pool_free(NULL);
}

static void test_pool_rejects_bad_args(void **state)
{
	struct buf_pool *pool = NULL;

	assert_int_equal(buf_pool_new(4096, 0, 4096, &pool), -EINVAL);
	assert_int_equal(buf_pool_new(4096, 4, 3000, &pool), -EINVAL);
	assert_int_equal(buf_pool_new(SIZE_MAX - 10, 4, 4096, &pool), -EOVERFLOW);
	assert_null(pool);
}

static void test_debug_flags(void **state)
{
	log_debug_mask = 0;
	assert_int_equal(log_set_debug_flags("aio,qcow2"), 0);
	assert_int_equal(log_debug_mask, LOG_F_AIO | LOG_F_QCOW2);
	assert_int_equal(log_set_debug_flags("aio,bogus"), -EINVAL);
	assert_int_equal(log_debug_mask, LOG_F_AIO | LOG_F_QCOW2); /* unchanged */
	assert_int_equal(log_set_debug_flags("all"), 0);
	assert_int_equal(log_debug_mask, LOG_F_ALL);
	log_debug_mask = 0;
}

static void test_log_preserves_errno(void **state)
{
	log_init("test-buf");
	errno = EBADF;
	log_warn("checking %%m: %m");
	assert_int_equal(errno, EBADF);
	errno = ENOSPC;
	log_err_ratelimited("rate-limited line");
	assert_int_equal(errno, ENOSPC);
	assert_string_equal(err_str(-ENOENT), "No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_alloc_alignment),
		cmocka_unit_test(test_pool_exhausts_and_reuses),
		cmocka_unit_test(test_pool_rejects_bad_args),
		cmocka_unit_test(test_debug_flags),
		cmocka_unit_test(test_log_preserves_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
