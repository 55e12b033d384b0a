// SPDX-License-Identifier: MIT
/*
 * The qcow2 crash test's oracle (crash-oracle.h) on its own, on logs made
 * by hand: which requests are durable, which values each block may read
 * as after the kill, torn and misplaced blocks, clusters smaller than a
 * block, and a log that cannot have happened.  test-qcow2-crash runs the
 * oracle against real killed writers; this says the rules are the ones
 * its top comment states.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "qcow2-test-util.h"
#include "crash-oracle.h"

struct log_maker {
	uint8_t buf[64 * sizeof(struct cr_rec)];
	size_t len;
};

static void rec(struct log_maker *m, enum cr_kind kind, unsigned op, bool fua, uint32_t id,
		uint64_t blk, uint64_t nblk)
{
	struct cr_rec r = { .magic = CR_REC_MAGIC,
			    .kind = (uint8_t)kind,
			    .op = (uint8_t)op,
			    .fua = fua,
			    .id = id,
			    .blk = blk,
			    .nblk = nblk };

	assert_true(m->len + sizeof(r) <= sizeof(m->buf));
	memcpy(m->buf + m->len, &r, sizeof(r));
	m->len += sizeof(r);
}

static bool judge_data(const struct cr_round *r, uint64_t blk, uint64_t gen, const uint8_t *orig,
		       struct cr_val base)
{
	uint8_t b[CR_BLK];
	struct cr_val now;

	cr_fill(b, blk, gen);
	return cr_judge(r, blk, b, orig, &base, &now);
}

static bool judge_bytes(const struct cr_round *r, uint64_t blk, const uint8_t *b,
			const uint8_t *orig, struct cr_val base)
{
	struct cr_val now;

	return cr_judge(r, blk, b, orig, &base, &now);
}

static void make_oracle_log(struct log_maker *m)
{
	rec(m, CR_ISSUE, CR_OP_WRITE, false, 0, 0, 2); /* durable: flush 1 follows */
	rec(m, CR_DONE, CR_OP_WRITE, false, 0, 0, 2);
	rec(m, CR_ISSUE, CR_OP_FLUSH, false, 1, 0, 0);
	rec(m, CR_ISSUE, CR_OP_WRITE, false, 2, 1, 1); /* in flight at the kill */
	rec(m, CR_DONE, CR_OP_FLUSH, false, 1, 0, 0);
	rec(m, CR_ISSUE, CR_OP_DISCARD, false, 3, 8, 24); /* changes blocks 16..31 only */
	rec(m, CR_DONE, CR_OP_DISCARD, false, 3, 8, 24);
	rec(m, CR_ISSUE, CR_OP_WRITE, true, 4, 40, 1); /* FUA */
	rec(m, CR_DONE, CR_OP_WRITE, true, 4, 40, 1);
	rec(m, CR_ISSUE, CR_OP_WRITE, false, 5, 60, 1); /* completes after flush 6's issue */
	rec(m, CR_ISSUE, CR_OP_FLUSH, false, 6, 0, 0);
	rec(m, CR_ISSUE, CR_OP_ZERO, false, 7, 4, 1); /* issued after it too */
	rec(m, CR_DONE, CR_OP_WRITE, false, 5, 60, 1);
	rec(m, CR_DONE, CR_OP_ZERO, false, 7, 4, 1);
	rec(m, CR_DONE, CR_OP_FLUSH, false, 6, 0, 0);
}

static void test_oracle(void **state)
{
	struct cr_round r = {
		.round = 1, .nblocks = 64, .cluster_blocks = 16, .unit_bytes = CR_BLK
	};
	struct cr_val orig_v = { .kind = CR_V_ORIG }, old = { .kind = CR_V_DATA, .gen = 7 };
	uint8_t orig[CR_BLK], zero[CR_BLK] = { 0 }, torn[CR_BLK];
	struct log_maker m = { .len = 0 };

	memset(orig, 0x5a, sizeof(orig));
	make_oracle_log(&m);
	assert_null(cr_round_parse(&r, m.buf, m.len + 5)); /* a torn last record is ignored */
	assert_true(r.truncated);
	assert_int_equal(r.durable, 3); /* write 0, discard 3, FUA write 4 */
	/* a write completed before a completed flush reads back exactly */
	assert_true(judge_data(&r, 0, cr_gen(1, 0), orig, orig_v));
	assert_false(judge_bytes(&r, 0, orig, orig, orig_v));
	assert_false(judge_bytes(&r, 0, zero, orig, orig_v));
	/* ... or as a later write in flight */
	assert_true(judge_data(&r, 1, cr_gen(1, 0), orig, orig_v));
	assert_true(judge_data(&r, 1, cr_gen(1, 2), orig, orig_v));
	assert_false(judge_data(&r, 1, cr_gen(1, 4), orig, orig_v));
	/* a zero write completed after the last flush was issued: either */
	assert_true(judge_bytes(&r, 4, orig, orig, orig_v));
	assert_true(judge_bytes(&r, 4, zero, orig, orig_v));
	/* a discard leaves partial clusters alone, zeroes whole ones for good */
	assert_true(judge_bytes(&r, 8, orig, orig, orig_v));
	assert_false(judge_bytes(&r, 8, zero, orig, orig_v));
	assert_true(judge_bytes(&r, 16, zero, orig, orig_v));
	assert_false(judge_bytes(&r, 16, orig, orig, orig_v));
	/* FUA is durable on completion; the block's previous round value is gone */
	assert_true(judge_data(&r, 40, cr_gen(1, 4), orig, old));
	assert_false(judge_data(&r, 40, 7, orig, old));
	/* a flush only covers writes completed before it was issued */
	assert_true(judge_bytes(&r, 60, orig, orig, orig_v));
	assert_true(judge_data(&r, 60, cr_gen(1, 5), orig, orig_v));
	/* untouched: exactly what the last round left, never anything older */
	assert_true(judge_data(&r, 50, 7, orig, old));
	assert_false(judge_bytes(&r, 50, orig, orig, old));
	/* torn and misplaced blocks are never allowed */
	cr_fill(torn, 1, cr_gen(1, 2));
	memset(torn + 2048, 0, 2048);
	assert_false(judge_bytes(&r, 1, torn, orig, orig_v));
	cr_fill(torn, 2, cr_gen(1, 0));
	assert_false(judge_bytes(&r, 1, torn, orig, orig_v));
	cr_round_free(&r);
	/* an impossible log is refused */
	r = (struct cr_round){
		.round = 1, .nblocks = 64, .cluster_blocks = 16, .unit_bytes = CR_BLK
	};
	m.len = 0;
	rec(&m, CR_DONE, CR_OP_WRITE, false, 0, 0, 1);
	assert_non_null(cr_round_parse(&r, m.buf, m.len));
	cr_round_free(&r);
}

/* Clusters smaller than a block: an unfinished write may land on some of its clusters. */
static void test_oracle_units(void **state)
{
	struct cr_round r = { .round = 2, .nblocks = 8, .cluster_blocks = 1, .unit_bytes = 512 };
	struct cr_val base[8], now[8];
	uint8_t orig[CR_BLK], b[CR_BLK], w[CR_BLK];
	struct log_maker m = { .len = 0 };
	unsigned k;

	memset(orig, 0x5a, sizeof(orig));
	for (k = 0; k < 8; k++)
		base[k] = (struct cr_val){ .kind = CR_V_ORIG };
	rec(&m, CR_ISSUE, CR_OP_WRITE, false, 0, 0, 2); /* in flight at the kill */
	rec(&m, CR_ISSUE, CR_OP_WRITE, false, 1, 4, 1); /* durable */
	rec(&m, CR_DONE, CR_OP_WRITE, false, 1, 4, 1);
	rec(&m, CR_ISSUE, CR_OP_FLUSH, false, 2, 0, 0);
	rec(&m, CR_DONE, CR_OP_FLUSH, false, 2, 0, 0);
	assert_null(cr_round_parse(&r, m.buf, m.len));
	/* block 1: the write's first clusters landed, the rest did not */
	cr_fill(w, 1, cr_gen(2, 0));
	memcpy(b, w, 1536);
	memcpy(b + 1536, orig + 1536, CR_BLK - 1536);
	assert_true(cr_judge(&r, 1, b, orig, base, now));
	assert_int_equal(now[0].kind, CR_V_DATA);
	assert_int_equal(now[3].kind, CR_V_ORIG);
	/* next round, untouched: exactly that mixture */
	memcpy(base, now, sizeof(base));
	cr_round_free(&r);
	r = (struct cr_round){ .round = 3, .nblocks = 8, .cluster_blocks = 1, .unit_bytes = 512 };
	assert_null(cr_round_parse(&r, m.buf, 0));
	assert_true(cr_judge(&r, 1, b, orig, base, now));
	assert_false(cr_judge(&r, 1, orig, orig, base, now));
	assert_false(cr_judge(&r, 1, w, orig, base, now));
	/* a unit is never torn */
	b[1536 + 100] ^= 1;
	assert_false(cr_judge(&r, 1, b, orig, base, now));
	cr_round_free(&r);
	/* a durable write is whole */
	r = (struct cr_round){ .round = 2, .nblocks = 8, .cluster_blocks = 1, .unit_bytes = 512 };
	assert_null(cr_round_parse(&r, m.buf, m.len));
	for (k = 0; k < 8; k++)
		base[k] = (struct cr_val){ .kind = CR_V_ORIG };
	cr_fill(w, 4, cr_gen(2, 1));
	assert_true(cr_judge(&r, 4, w, orig, base, now));
	memcpy(b, w, 512);
	memcpy(b + 512, orig + 512, CR_BLK - 512);
	assert_false(cr_judge(&r, 4, b, orig, base, now));
	cr_round_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oracle),
		cmocka_unit_test(test_oracle_units),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
