/* SPDX-License-Identifier: MIT */
/*
 * Overflow-checked arithmetic for untrusted values (image headers, ring
 * requests, NBD requests, control messages).
 *
 * Each helper stores the result through @r and returns true when the
 * operation overflowed (the stored value is then unspecified), following the
 * convention of __builtin_*_overflow so that the checks read as
 *
 *	if (ck_add(offset, len, &end) || end > size)
 *		return -EINVAL;
 */
#ifndef QTAP_CHECKED_H
#define QTAP_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

#define ck_add(a, b, r) __builtin_add_overflow((a), (b), (r))
#define ck_sub(a, b, r) __builtin_sub_overflow((a), (b), (r))
#define ck_mul(a, b, r) __builtin_mul_overflow((a), (b), (r))

/* ck_shl - @a << @shift, failing for shift >= 64 or bits shifted out. */
static inline bool ck_shl_u64(uint64_t a, unsigned shift, uint64_t *r)
{
	if (shift >= 64 || (shift > 0 && (a >> (64 - shift)) != 0))
		return true;
	*r = a << shift;
	return false;
}

/* ck_align_up - round @a up to @align (a power of two), failing on overflow. */
static inline bool ck_align_up_u64(uint64_t a, uint64_t align, uint64_t *r)
{
	uint64_t t;

	if (align == 0 || (align & (align - 1)) != 0)
		return true;
	if (ck_add(a, align - 1, &t))
		return true;
	*r = t & ~(align - 1);
	return false;
}

/* ck_div_round_up - ceil(@a / @b), @b > 0; never overflows for b > 0. */
static inline uint64_t div_round_up_u64(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/*
 * range_within - does [@off, @off + @len) lie inside [0, @size)?  Safe for
 * every input, including @off + @len overflowing.
 */
static inline bool range_within(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* ranges_overlap - do [a, a+alen) and [b, b+blen) intersect?  No overflow. */
static inline bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	if (alen == 0 || blen == 0)
		return false;
	return a < b ? b - a < alen : a - b < blen;
}

static inline bool is_power_of_2_u64(uint64_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

static inline bool is_aligned_u64(uint64_t x, uint64_t align)
{
	return (x & (align - 1)) == 0;
}

#define ALIGN_DOWN(x, a) ((x) & ~((typeof(x))(a)-1))
/* ALIGN_UP - for values that cannot overflow (guest offsets, < 2^63); else ck_align_up_u64 */
#define ALIGN_UP(x, a) ALIGN_DOWN((x) + (typeof(x))(a)-1, a)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
