// SPDX-License-Identifier: MIT
/*
 * The NBD connection arena: allocations never overlap and stay inside the
 * ring, space comes back in allocation order whatever order it is given
 * back in, and an emptied arena serves its whole size again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tapdisk/nbd-internal.h"

#define CAP (64u * NBDS_ALIGN)

static void test_fill_and_wrap(void **state)
{
	struct nbds_arena a;
	struct nbds_span s[4];
	uint8_t *p0, *p1, *p2;

	assert_int_equal(nbds_arena_init(&a, CAP), 0);
	p0 = nbds_arena_get(&a, 30 * NBDS_ALIGN, &s[0]);
	p1 = nbds_arena_get(&a, 30 * NBDS_ALIGN - 100, &s[1]); /* rounded up */
	assert_ptr_equal(p0, a.base);
	assert_ptr_equal(p1, a.base + 30 * NBDS_ALIGN);
	/* 4 blocks left at the end: 8 do not fit there, nor at the start yet */
	assert_null(nbds_arena_get(&a, 8 * NBDS_ALIGN, &s[2]));
	/* the second returns first: nothing reclaimed until the first does */
	nbds_arena_put(&a, &s[1]);
	assert_null(nbds_arena_get(&a, 8 * NBDS_ALIGN, &s[2]));
	nbds_arena_put(&a, &s[0]);
	/* all back: starts afresh at 0 */
	p2 = nbds_arena_get(&a, CAP, &s[2]);
	assert_ptr_equal(p2, a.base);
	assert_null(nbds_arena_get(&a, 1, &s[3]));
	nbds_arena_put(&a, &s[2]);

	p0 = nbds_arena_get(&a, 40 * NBDS_ALIGN, &s[0]);
	p1 = nbds_arena_get(&a, 20 * NBDS_ALIGN, &s[1]);
	nbds_arena_put(&a, &s[0]);
	/* 4 blocks at the end are skipped: the allocation wraps to 0 */
	p2 = nbds_arena_get(&a, 10 * NBDS_ALIGN, &s[2]);
	assert_ptr_equal(p2, a.base);
	assert_int_equal(s[2].units + s[2].waste, 14);
	/* between the wrapped one and the second: 30 blocks */
	assert_null(nbds_arena_get(&a, 31 * NBDS_ALIGN, &s[3]));
	assert_non_null(nbds_arena_get(&a, 30 * NBDS_ALIGN, &s[3]));
	assert_null(nbds_arena_get(&a, 1, &s[0]));
	nbds_arena_put(&a, &s[1]);
	nbds_arena_put(&a, &s[2]);
	nbds_arena_put(&a, &s[3]);
	assert_int_equal(a.used, 0);
	assert_null(nbds_arena_get(&a, CAP + 1, &s[0]));
	nbds_arena_fini(&a);
}

/* Random sizes, random completion order: live allocations never overlap. */
static void test_random(void **state)
{
	enum { N = 32 };
	struct nbds_arena a;
	struct nbds_span s[N];
	uint8_t *p[N] = { 0 };
	unsigned i, j, k, live = 0;

	srand(7);
	assert_int_equal(nbds_arena_init(&a, CAP), 0);
	for (k = 0; k < 20000; k++) {
		i = (unsigned)rand() % N;
		if (p[i]) {
			nbds_arena_put(&a, &s[i]);
			p[i] = NULL;
			live--;
			continue;
		}
		p[i] = nbds_arena_get(&a, (size_t)(rand() % (12 * NBDS_ALIGN)), &s[i]);
		if (!p[i])
			continue;
		live++;
		assert_true(p[i] >= a.base && p[i] + s[i].units * NBDS_ALIGN <= a.base + CAP);
		for (j = 0; j < N; j++) {
			if (j == i || !p[j])
				continue;
			assert_true(p[i] + s[i].units * NBDS_ALIGN <= p[j] ||
				    p[j] + s[j].units * NBDS_ALIGN <= p[i]);
		}
	}
	for (i = 0; i < N; i++) {
		if (p[i])
			nbds_arena_put(&a, &s[i]);
	}
	assert_int_equal(a.used, 0);
	assert_non_null(nbds_arena_get(&a, CAP, &s[0]));
	nbds_arena_fini(&a);
	(void)live;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_and_wrap),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
