// SPDX-License-Identifier: MIT
/*
 * QEMU-compatible image locks: two open file descriptions of one file play
 * two processes (OFD locks conflict between descriptions, not processes).
 * Which combinations conflict, which permission is named, that a refusal
 * leaves nothing locked, and that closing the descriptor releases it all.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "imglock.h"

static char path[4096];

static int setup(void **state)
{
	const char *dir = getenv("QTAP_TEST_DIR");
	int fd;

	snprintf(path, sizeof(path), "%s/imglock.%d", dir ? dir : "/tmp", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	return 0;
}

static int open_rw(void)
{
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	return fd;
}

/* A writer refuses readers that do not share writing, not those that do. */
static void test_writer_vs_readers(void **state)
{
	int a = open_rw(), b = open_rw();
	struct imglock_refusal why;

	assert_int_equal(imglock_take(a, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW), 0);
	assert_int_equal(imglock_try(b, path, IMGLOCK_PERM_RO, IMGLOCK_SHARED_RO, &why), -EBUSY);
	assert_int_equal(why.perm, IMGLOCK_WRITE);
	assert_true(why.shared);
	assert_int_equal(imglock_try(b, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW, &why), -EBUSY);
	assert_int_equal(why.perm, IMGLOCK_WRITE);
	assert_false(why.shared);
	assert_int_equal(imglock_take(b, path, IMGLOCK_PERM_SHARED, IMGLOCK_SHARED_SHARED), 0);
	close(a);
	close(b);
}

/* Readers coexist; a writer is then refused until they are gone. */
static void test_readers_then_writer(void **state)
{
	int a = open_rw(), b = open_rw(), c = open_rw();
	struct imglock_refusal why;
	bool shared;

	assert_int_equal(imglock_take(a, path, IMGLOCK_PERM_RO, IMGLOCK_SHARED_RO), 0);
	assert_int_equal(imglock_take(b, path, IMGLOCK_PERM_RO, IMGLOCK_SHARED_RO), 0);
	assert_int_equal(imglock_try(c, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW, &why), -EBUSY);
	assert_int_equal(why.perm, IMGLOCK_WRITE);
	assert_false(why.shared);
	/* the refusal left c holding nothing: no one holds write (byte 101) */
	assert_int_equal(imglock_conflict(a, 0, IMGLOCK_ALL & ~IMGLOCK_WRITE, &shared), 0);
	close(a);
	assert_int_equal(imglock_try(c, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW, &why), -EBUSY);
	imglock_drop(b);
	assert_int_equal(imglock_take(c, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW), 0);
	close(b);
	close(c);
}

/* Nothing is left behind by a closed descriptor; locks can be replaced. */
static void test_close_releases(void **state)
{
	int a = open_rw(), b = open_rw();
	bool shared;

	assert_int_equal(imglock_take(a, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW), 0);
	assert_int_equal(imglock_conflict(b, IMGLOCK_READ, IMGLOCK_ALL, &shared), 0);
	assert_int_equal(imglock_conflict(b, IMGLOCK_READ, IMGLOCK_READ, &shared),
			 (int)IMGLOCK_WRITE);
	/* the same description may change its set */
	assert_int_equal(imglock_take(a, path, IMGLOCK_PERM_SHARED, IMGLOCK_SHARED_SHARED), 0);
	assert_int_equal(imglock_conflict(b, IMGLOCK_ALL, 0, &shared), (int)IMGLOCK_READ);
	close(a);
	assert_int_equal(imglock_conflict(b, IMGLOCK_ALL, 0, &shared), 0);
	close(b);
}

static void test_names(void **state)
{
	assert_string_equal(imglock_perm_name(IMGLOCK_READ), "consistent read");
	assert_string_equal(imglock_perm_name(IMGLOCK_WRITE), "write");
	assert_string_equal(imglock_perm_name(IMGLOCK_WRITE_UNCHANGED), "write unchanged");
	assert_string_equal(imglock_perm_name(IMGLOCK_RESIZE), "resize");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_vs_readers),
		cmocka_unit_test(test_readers_then_writer),
		cmocka_unit_test(test_close_releases),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
