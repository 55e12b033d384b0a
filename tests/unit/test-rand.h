/* SPDX-License-Identifier: MIT */
/*
 * The tests' deterministic generator (xorshift64), so that a seed printed
 * by a failing run reproduces it.  @state must not be 0.
 */
#ifndef QTAP_TEST_RAND_H
#define QTAP_TEST_RAND_H

#include <stdint.h>

static inline uint64_t test_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

#endif
