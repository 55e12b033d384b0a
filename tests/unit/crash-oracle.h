/* SPDX-License-Identifier: MIT */
/*
 * The crash test's oracle: self-describing blocks, the request log a killed
 * writer leaves behind, and the rules that say what each 4 KiB block of the
 * image may read as after the kill.
 *
 * Blocks.  Every block a write carries holds its block number and a
 * generation, (round << 32) | request id, followed by a filler derived from
 * both, so any block read back names the write it came from, and a block
 * holding parts of two writes, or a write's block at the wrong offset, is
 * recognised as such.
 *
 * The log.  The writer appends one fixed-size record with write(2) before
 * it submits each request (ISSUE) and one from the request's completion
 * (DONE), flushes included.  write(2) to a file survives SIGKILL, so the
 * log is a prefix of what happened: a request with no ISSUE record was
 * never submitted, and one with a DONE record did complete.  A record's
 * position in the log orders it against every other.  The writer never has
 * two requests on one block in flight, so the requests on a block are
 * totally ordered: each is issued after the previous one completed, and
 * only the last can be unfinished at the kill.
 *
 * The rules, per block and per round (one writer process, one kill):
 *
 *   - A request is durable when it completed and was FUA, or when a flush
 *     issued after its DONE record completed (the contract's §4.4: a flush
 *     covers the writes completed before it, not those merely issued).
 *   - Let D be the last durable request on the block this round.  The
 *     block reads as D's data or as the data of any request on it issued
 *     after D (completed or not: unflushed writes may or may not land),
 *     zeros standing for zero writes and discards.
 *   - With no durable request this round, the block reads as what it held
 *     at the start of the round, or as any request on it this round.
 *   - What it held at the start of the round is what the previous round's
 *     check read.  The writer is a killed process, not a lost machine: the
 *     page cache survives, so what a reopen reads is what the file holds,
 *     and it must not change until the block is written again, whatever
 *     the next writer does to other blocks of the same cluster (its
 *     copy-on-write must carry the block's view over).
 *   - Writes are 4 KiB aligned, so a block is never torn: it is one write's
 *     block, zeros, or its original content, never a mixture.  A
 *     multi-block request that did not finish may have landed on some of
 *     its blocks and not others; that is legal at block granularity.
 *   - A discard changes only the clusters it covers whole (the driver
 *     ignores partial clusters), to zeros; zero writes change exactly their
 *     range.
 *
 * Included after qcow2-test-util.h (for QT_UNUSED).
 */
#ifndef QTAP_CRASH_ORACLE_H
#define QTAP_CRASH_ORACLE_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CR_BLK 4096u
#define CR_BLOCK_MAGIC 0x71746170636b6231ull /* "qtapckb1" */
#define CR_REC_MAGIC 0x63726563u	     /* "crec" */

/* ---- self-describing blocks --------------------------------------------------------- */

static inline uint64_t cr_gen(uint64_t round, uint32_t id)
{
	return round << 32 | id;
}

static QT_UNUSED void cr_fill(uint8_t *b, uint64_t blk, uint64_t gen)
{
	uint64_t h[4] = { CR_BLOCK_MAGIC, blk, gen, ~(blk * 31 + gen) };
	uint64_t x = (blk + 1) * 0x9e3779b97f4a7c15ull ^ gen * 0xbf58476d1ce4e5b9ull, i;

	memcpy(b, h, sizeof(h));
	for (i = sizeof(h); i < CR_BLK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
}

enum cr_seen {
	CR_SEEN_DATA,	   /* a whole block written for this offset */
	CR_SEEN_ZERO,	   /* all zeros */
	CR_SEEN_OTHER,	   /* anything else (the original content, or garbage) */
	CR_SEEN_MISPLACED, /* a whole block written for another offset */
	CR_SEEN_TORN,	   /* a written block's header over other bytes */
};

static QT_UNUSED bool cr_all_zero(const uint8_t *b)
{
	static const uint8_t zero[CR_BLK];

	return memcmp(b, zero, CR_BLK) == 0;
}

/* What block @blk's bytes @b are; *@gen (DATA), or the block it was for (MISPLACED). */
static QT_UNUSED enum cr_seen cr_parse(const uint8_t *b, uint64_t blk, uint64_t *gen)
{
	uint8_t want[CR_BLK];
	uint64_t h[4];

	memcpy(h, b, sizeof(h));
	if (h[0] != CR_BLOCK_MAGIC)
		return cr_all_zero(b) ? CR_SEEN_ZERO : CR_SEEN_OTHER;
	cr_fill(want, h[1], h[2]);
	if (memcmp(want, b, CR_BLK))
		return CR_SEEN_TORN;
	*gen = h[1] == blk ? h[2] : h[1];
	return h[1] == blk ? CR_SEEN_DATA : CR_SEEN_MISPLACED;
}

/* ---- the log ---------------------------------------------------------------------------- */

enum cr_op {
	CR_OP_WRITE = 1,
	CR_OP_ZERO,
	CR_OP_DISCARD,
	CR_OP_FLUSH,
};

enum cr_kind {
	CR_ISSUE = 1,
	CR_DONE,
};

struct cr_rec {
	uint32_t magic;
	uint8_t kind; /* enum cr_kind */
	uint8_t op;   /* enum cr_op */
	uint8_t fua;
	uint8_t pad;
	uint32_t id; /* request id within the round, from 0 in ISSUE order */
	int32_t err; /* DONE: the completion status */
	uint64_t blk;
	uint64_t nblk;
};
_Static_assert(sizeof(struct cr_rec) == 32, "one log record is 32 bytes");

static QT_UNUSED const char *cr_op_name(unsigned op)
{
	static const char *const names[] = { "?", "write", "zero", "discard", "flush" };

	return names[op < 5 ? op : 0];
}

/* ---- values a block may hold ---------------------------------------------------------------- */

enum cr_val_kind {
	CR_V_ORIG, /* what the image read before the first round */
	CR_V_ZERO,
	CR_V_DATA,
};

struct cr_val {
	uint8_t kind; /* enum cr_val_kind */
	uint64_t gen; /* CR_V_DATA */
};

/* ---- one round, from its log -------------------------------------------------------------- */

struct cr_req {
	uint8_t op, fua;
	bool done;
	bool durable;
	int err;
	uint64_t blk, nblk; /* as issued */
	uint64_t eff, neff; /* the blocks it changes (a discard: whole clusters only) */
	uint64_t issue_pos; /* 1-based record positions; 0: none */
	uint64_t done_pos;
};

struct cr_round {
	uint64_t round;
	uint64_t nblocks;
	uint64_t cluster_blocks; /* 1 for clusters of 4 KiB or less */
	uint64_t unit_bytes;	 /* the atom of a crash: min(cluster, 4 KiB) */
	struct cr_req *reqs;
	uint64_t nreqs;
	uint64_t flush_fence; /* the latest ISSUE position of a completed flush; 0: none */
	/* per block: the ISSUE position of the last durable request, and of the
	 * last zero write or discard; 0: none */
	uint64_t *durable_pos;
	uint64_t *zero_pos;
	/* per block: the requests that change it, in ISSUE order, as
	 * by_blk[first[b]] .. by_blk[first[b + 1] - 1] */
	uint64_t *first;
	uint32_t *by_blk;
	/* counts for the report */
	uint64_t done, flushes_done, durable;
	bool truncated; /* a partial record at the end (the kill hit a write(2)) */
};

static QT_UNUSED void cr_round_free(struct cr_round *r)
{
	free(r->reqs);
	free(r->durable_pos);
	free(r->zero_pos);
	free(r->first);
	free(r->by_blk);
	memset(r, 0, sizeof(*r));
}

/* The blocks a request changes. */
static QT_UNUSED void cr_effect(const struct cr_round *r, struct cr_req *q)
{
	uint64_t cb = r->cluster_blocks, start, end;

	q->eff = q->blk;
	q->neff = q->op == CR_OP_FLUSH ? 0 : q->nblk;
	if (q->op != CR_OP_DISCARD)
		return;
	start = (q->blk + cb - 1) / cb * cb;
	end = (q->blk + q->nblk) / cb * cb;
	q->eff = start;
	q->neff = end > start ? end - start : 0;
}

/* Append an ISSUE, or mark a DONE; an error string when the log is impossible. */
static QT_UNUSED const char *cr_round_add(struct cr_round *r, const struct cr_rec *rec,
					  uint64_t pos, uint64_t *cap)
{
	struct cr_req *q;

	if (rec->magic != CR_REC_MAGIC)
		return "bad record magic";
	if (rec->kind == CR_ISSUE) {
		if (rec->id != r->nreqs)
			return "ISSUE ids out of order";
		if (rec->op < CR_OP_WRITE || rec->op > CR_OP_FLUSH ||
		    (rec->op != CR_OP_FLUSH && rec->blk + rec->nblk > r->nblocks))
			return "ISSUE of an impossible request";
		if (r->nreqs == *cap) {
			*cap = *cap ? *cap * 2 : 1024;
			q = realloc(r->reqs, *cap * sizeof(*q));
			if (!q)
				abort();
			r->reqs = q;
		}
		q = &r->reqs[r->nreqs++];
		*q = (struct cr_req){ .op = rec->op,
				      .fua = rec->fua,
				      .blk = rec->blk,
				      .nblk = rec->nblk,
				      .issue_pos = pos };
		cr_effect(r, q);
		return NULL;
	}
	if (rec->kind != CR_DONE || rec->id >= r->nreqs || r->reqs[rec->id].done)
		return "DONE of a request not in flight";
	q = &r->reqs[rec->id];
	q->done = true;
	q->done_pos = pos;
	q->err = rec->err;
	r->done++;
	if (q->op == CR_OP_FLUSH && !q->err) {
		r->flushes_done++;
		r->flush_fence = q->issue_pos > r->flush_fence ? q->issue_pos : r->flush_fence;
	}
	return NULL;
}

/* Each block's requests, in ISSUE order. */
static QT_UNUSED void cr_round_lists(struct cr_round *r)
{
	uint64_t i, b, total = 0, *fill;

	r->first = calloc(r->nblocks + 1, sizeof(uint64_t));
	fill = calloc(r->nblocks, sizeof(uint64_t));
	if (!r->first || !fill)
		abort();
	for (i = 0; i < r->nreqs; i++) {
		for (b = r->reqs[i].eff; b < r->reqs[i].eff + r->reqs[i].neff; b++)
			r->first[b + 1]++;
		total += r->reqs[i].neff;
	}
	for (b = 0; b < r->nblocks; b++)
		r->first[b + 1] += r->first[b];
	r->by_blk = malloc((total ? total : 1) * sizeof(uint32_t));
	if (!r->by_blk)
		abort();
	for (i = 0; i < r->nreqs; i++) {
		for (b = r->reqs[i].eff; b < r->reqs[i].eff + r->reqs[i].neff; b++)
			r->by_blk[r->first[b] + fill[b]++] = (uint32_t)i;
	}
	free(fill);
}

/* Durability, then the per-block positions the rules need. */
static QT_UNUSED void cr_round_index(struct cr_round *r)
{
	uint64_t i, b;

	r->durable_pos = calloc(r->nblocks, sizeof(uint64_t));
	r->zero_pos = calloc(r->nblocks, sizeof(uint64_t));
	if (!r->durable_pos || !r->zero_pos)
		abort();
	for (i = 0; i < r->nreqs; i++) {
		struct cr_req *q = &r->reqs[i];

		q->durable = q->done && !q->err && q->op != CR_OP_FLUSH &&
			     (q->fua || q->done_pos < r->flush_fence);
		r->durable += q->durable;
		/* requests on one block are issued in order: later ones overwrite */
		for (b = q->eff; b < q->eff + q->neff; b++) {
			if (q->durable)
				r->durable_pos[b] = q->issue_pos;
			if (q->op != CR_OP_WRITE)
				r->zero_pos[b] = q->issue_pos;
		}
	}
	cr_round_lists(r);
}

/*
 * Parse @len bytes of log into @r (zeroed by the caller but for round,
 * nblocks, cluster_blocks and unit_bytes).  Returns NULL, or what is wrong with it.
 */
static QT_UNUSED const char *cr_round_parse(struct cr_round *r, const uint8_t *log, size_t len)
{
	uint64_t cap = 0, n = len / sizeof(struct cr_rec), i;
	const char *why = NULL;

	r->truncated = len % sizeof(struct cr_rec) != 0;
	for (i = 0; i < n && !why; i++) {
		struct cr_rec rec;

		memcpy(&rec, log + i * sizeof(rec), sizeof(rec));
		why = cr_round_add(r, &rec, i + 1, &cap);
	}
	if (!why)
		cr_round_index(r);
	return why;
}

/* ---- judging one block ------------------------------------------------------------------------ */

static QT_UNUSED bool cr_covers(const struct cr_req *q, uint64_t b)
{
	return b >= q->eff && b < q->eff + q->neff;
}

/*
 * Is @b (block @blk, whose original content is @orig and which held @base
 * at the start of the round) one of the values the rules allow?  When it
 * is, *@now is the value it holds, for the next round.
 */
static QT_UNUSED bool cr_judge_block(const struct cr_round *r, uint64_t blk, const uint8_t *b,
				     const uint8_t *orig, struct cr_val base, struct cr_val *now)
{
	uint64_t dpos = r->durable_pos[blk], zpos = r->zero_pos[blk], gen = 0;
	enum cr_seen seen = cr_parse(b, blk, &gen);
	bool orig_zero = cr_all_zero(orig);

	if (seen == CR_SEEN_DATA) {
		uint64_t id = gen & 0xffffffffu;

		*now = (struct cr_val){ .kind = CR_V_DATA, .gen = gen };
		if (gen >> 32 == r->round)
			return id < r->nreqs && r->reqs[id].op == CR_OP_WRITE &&
			       cr_covers(&r->reqs[id], blk) && r->reqs[id].issue_pos >= dpos;
		return !dpos && base.kind == CR_V_DATA && base.gen == gen;
	}
	if (seen == CR_SEEN_ZERO) {
		*now = (struct cr_val){ .kind = CR_V_ZERO };
		if (zpos && zpos >= dpos)
			return true;
		if (!dpos && (base.kind == CR_V_ZERO || (base.kind == CR_V_ORIG && orig_zero)))
			return true;
		/* fall through: the original content may be zeros */
	}
	if (seen == CR_SEEN_ZERO || seen == CR_SEEN_OTHER) {
		*now = (struct cr_val){ .kind = CR_V_ORIG };
		return memcmp(b, orig, CR_BLK) == 0 && !dpos &&
		       (base.kind == CR_V_ORIG || (base.kind == CR_V_ZERO && orig_zero));
	}
	return false;
}

/* The bytes value @v gives block @blk (original content @orig), into @out. */
static QT_UNUSED void cr_val_bytes(struct cr_val v, uint64_t blk, const uint8_t *orig, uint8_t *out)
{
	if (v.kind == CR_V_DATA)
		cr_fill(out, blk, v.gen);
	else if (v.kind == CR_V_ZERO)
		memset(out, 0, CR_BLK);
	else
		memcpy(out, orig, CR_BLK);
}

/* Unit @k of block @blk against every value the rules allow it. */
static QT_UNUSED bool cr_judge_unit(const struct cr_round *r, uint64_t blk, unsigned k,
				    const uint8_t *b, const uint8_t *orig, struct cr_val base,
				    struct cr_val *now)
{
	uint64_t u = r->unit_bytes, dpos = r->durable_pos[blk], j;
	uint8_t want[CR_BLK];

	if (!dpos) {
		cr_val_bytes(base, blk, orig, want);
		if (!memcmp(want + k * u, b + k * u, u)) {
			*now = base;
			return true;
		}
	}
	for (j = r->first[blk]; j < r->first[blk + 1]; j++) {
		uint32_t id = r->by_blk[j];
		struct cr_val v = { .kind = CR_V_ZERO };

		if (r->reqs[id].issue_pos < dpos)
			continue;
		if (r->reqs[id].op == CR_OP_WRITE)
			v = (struct cr_val){ .kind = CR_V_DATA, .gen = cr_gen(r->round, id) };
		cr_val_bytes(v, blk, orig, want);
		if (!memcmp(want + k * u, b + k * u, u)) {
			*now = v;
			return true;
		}
	}
	return false;
}

/*
 * Is @b, block @blk, allowed?  @base and @now hold one value per unit
 * (CR_BLK / unit_bytes of them): with clusters smaller than a block, an
 * unfinished write may have landed on some of a block's clusters and not
 * on others, so each unit is judged on its own; a unit is never torn.
 */
static QT_UNUSED bool cr_judge(const struct cr_round *r, uint64_t blk, const uint8_t *b,
			       const uint8_t *orig, const struct cr_val *base, struct cr_val *now)
{
	unsigned upb = (unsigned)(CR_BLK / r->unit_bytes), k;
	bool same = true;
	struct cr_val v;

	for (k = 1; k < upb; k++)
		same &= base[k].kind == base[0].kind && base[k].gen == base[0].gen;
	if (same && cr_judge_block(r, blk, b, orig, base[0], &v)) {
		for (k = 0; k < upb; k++)
			now[k] = v;
		return true;
	}
	for (k = 0; k < upb && upb > 1; k++) {
		if (!cr_judge_unit(r, blk, k, b, orig, base[k], &now[k]))
			return false;
	}
	return upb > 1;
}

/* A description of @b for a failure message. */
static QT_UNUSED void cr_describe_seen(const uint8_t *b, uint64_t blk, const uint8_t *orig,
				       char *out, size_t size)
{
	uint64_t gen = 0;

	switch (cr_parse(b, blk, &gen)) {
	case CR_SEEN_DATA:
		snprintf(out, size, "data of round %" PRIu64 " request %" PRIu64, gen >> 32,
			 gen & 0xffffffffu);
		break;
	case CR_SEEN_ZERO:
		snprintf(out, size, "zeros%s", cr_all_zero(orig) ? " (= original)" : "");
		break;
	case CR_SEEN_MISPLACED:
		snprintf(out, size, "a block written for block %" PRIu64 " (misplaced)", gen);
		break;
	case CR_SEEN_TORN:
		snprintf(out, size, "a torn block (a written block's header over other bytes)");
		break;
	default:
		snprintf(out, size, "%s",
			 memcmp(b, orig, CR_BLK) ? "garbage (neither written nor original)"
						 : "its original content");
	}
}

static QT_UNUSED void cr_describe_val(struct cr_val v, char *out, size_t size)
{
	if (v.kind == CR_V_DATA)
		snprintf(out, size, "data of round %" PRIu64 " request %" PRIu64, v.gen >> 32,
			 v.gen & 0xffffffffu);
	else
		snprintf(out, size, "%s", v.kind == CR_V_ZERO ? "zeros" : "original content");
}

/* Everything the round did to block @blk, for a failure message (malloc'ed). */
static QT_UNUSED char *cr_describe_history(const struct cr_round *r, uint64_t blk,
					   const struct cr_val *base)
{
	unsigned upb = (unsigned)(CR_BLK / r->unit_bytes), k;
	size_t size = 8192, used = 0;
	char *s = malloc(size), v[96];
	uint64_t j, listed = 0;

	if (!s)
		abort();
	for (k = 0; k < upb; k++) {
		cr_describe_val(base[k], v, sizeof(v));
		used += (size_t)snprintf(s + used, size - used, "%s%s", k ? ", " : "held ", v);
	}
	used += (size_t)snprintf(s + used, size - used,
				 " at the start of round %" PRIu64
				 "; flush fence at record %" PRIu64 "\n",
				 r->round, r->flush_fence);
	for (j = r->first[blk]; j < r->first[blk + 1] && used < size - 200; j++) {
		const struct cr_req *q = &r->reqs[r->by_blk[j]];

		if (++listed > 24) {
			used += (size_t)snprintf(s + used, size - used, "  ...\n");
			break;
		}
		used += (size_t)snprintf(s + used, size - used,
					 "  request %" PRIu32 ": %s%s blocks %" PRIu64 "+%" PRIu64
					 ", issued at record %" PRIu64 ", %s%s\n",
					 r->by_blk[j], cr_op_name(q->op), q->fua ? " (FUA)" : "",
					 q->blk, q->nblk, q->issue_pos,
					 q->done ? "completed" : "in flight at the kill",
					 q->durable ? ", durable" : "");
	}
	return s;
}

#endif
