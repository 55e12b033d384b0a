/* SPDX-License-Identifier: MIT */
/*
 * Deterministic data for tap-img bench --verify.  A block's contents are a
 * splitmix64 stream keyed by (seed, offset, generation): a block written to
 * the wrong place, a stale block and a torn write all fail the comparison,
 * and the same --seed reproduces a failing run byte for byte.
 */
#include <string.h>

#include "bench.h"

uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t block_key(uint64_t seed, uint64_t offset, unsigned gen)
{
	uint64_t state = seed ^ (offset * 0xd6e8feb86659fd93ull) ^ ((uint64_t)gen << 56);

	return bench_rand(&state);
}

void bench_fill(void *buf, uint64_t len, uint64_t seed, uint64_t offset, unsigned gen)
{
	uint64_t state = block_key(seed, offset, gen);
	unsigned char *p = buf;
	uint64_t i, word;

	for (i = 0; i < len; i += sizeof(word)) {
		word = bench_rand(&state);
		memcpy(p + i, &word, sizeof(word));
	}
}

uint64_t bench_check(const void *buf, uint64_t len, uint64_t seed, uint64_t offset, unsigned gen,
		     uint8_t *want)
{
	uint64_t state = block_key(seed, offset, gen);
	const unsigned char *p = buf;
	uint64_t i, word;
	unsigned j;

	for (i = 0; i < len; i += sizeof(word)) {
		word = bench_rand(&state);
		if (memcmp(p + i, &word, sizeof(word)) == 0)
			continue;
		for (j = 0; j < sizeof(word); j++) {
			const unsigned char *w = (const unsigned char *)&word;

			if (p[i + j] != w[j]) {
				*want = w[j];
				return i + j;
			}
		}
	}
	return len;
}
