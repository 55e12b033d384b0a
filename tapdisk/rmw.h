/* SPDX-License-Identifier: MIT */
/*
 * Sub-block writes for the frontends that accept any byte range (NBD, which
 * advertises a minimum block size of 1, and FUSE, whose file is written at
 * any offset): the vbd takes whole blocks only (vbd_info.block_bytes).
 *
 * A write whose first or last block is only partly covered reads those
 * blocks, merges, and writes whole blocks; a zero write zeroes its whole
 * blocks with TD_OP_WRITE_ZEROES and read-modify-writes the partial ones.
 * Reads need no help: a frontend reads the enclosing blocks and hands out
 * the middle.
 *
 * Two read-modify-writes of one block must not interleave (each would
 * write back the other's old bytes), whichever frontend, connection or
 * queue thread they come from, so the partial blocks are locked in a
 * table shared by every frontend of a vbd; a write that finds its block
 * locked parks until the holder finishes and is then re-run on its own
 * queue thread.  Whole-block writes take no lock: one that overlaps a
 * read-modify-write's block overlaps its bytes too, and the protocol
 * leaves concurrent overlapping writes unordered.
 */
#ifndef QTAP_TAPDISK_RMW_H
#define QTAP_TAPDISK_RMW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "evloop.h"
#include "tapdisk/vbd.h"

struct td_blocklock;

/* td_blocklock_new / _free - the table for one vbd.  0 or -ENOMEM. */
int td_blocklock_new(struct td_blocklock **out);
void td_blocklock_free(struct td_blocklock *bl); /* nothing may hold it; NULL ok */

struct td_rmw;
typedef void td_rmw_done_fn(struct td_rmw *rmw, int err);

struct td_rmw {
	/* set by the caller */
	struct td_queue *q;
	struct td_blocklock *locks;
	enum td_op op;	      /* TD_OP_WRITE or TD_OP_WRITE_ZEROES */
	unsigned flags;	      /* TD_REQ_FUA, and for zeroes MAY_UNMAP, NO_FALLBACK */
	uint64_t offset;      /* the range as the client sent it */
	uint64_t len;	      /* > 0 */
	uint32_t block_bytes; /* the vbd's, a power of two */
	uint8_t *buf;	      /* WRITE: covers the enclosing blocks, from
			       * td_rmw_start_bytes(); the data at
			       * offset - that start.  Unused for zeroes. */
	uint8_t *scratch;     /* 2 * block_bytes, aligned like any I/O buffer */
	td_rmw_done_fn *done; /* on the queue thread, exactly once */
	void *opaque;

	/* private */
	struct td_request req;
	struct iovec iov;
	struct evloop_call wake;
	struct td_rmw *next; /* in the lock table's holder or waiter list */
	uint64_t start, end; /* the enclosing blocks */
	uint64_t lock_blk[2];
	unsigned nr_locks;
	unsigned step;
	int err;
};

/* td_rmw_aligned - is [@offset, @offset + @len) whole blocks? */
static inline bool td_rmw_aligned(uint64_t offset, uint64_t len, uint32_t block_bytes)
{
	return ((offset | len) & (block_bytes - 1)) == 0;
}

/* td_rmw_start_bytes - the start of the blocks enclosing @offset. */
static inline uint64_t td_rmw_start_bytes(uint64_t offset, uint32_t block_bytes)
{
	return offset & ~(uint64_t)(block_bytes - 1);
}

/*
 * td_rmw_span_bytes - the bytes of the blocks enclosing [@offset, +@len),
 * which a WRITE's buf must hold.  The caller has bounds-checked the range
 * against a size that is a multiple of @block_bytes, so nothing overflows.
 */
static inline uint64_t td_rmw_span_bytes(uint64_t offset, uint64_t len, uint32_t block_bytes)
{
	uint64_t mask = block_bytes - 1;

	return ((offset + len + mask) & ~mask) - (offset & ~mask);
}

/*
 * td_rmw_start - run the write on rmw->q's thread (call it from there).
 * FAST_ZERO (TD_REQ_NO_FALLBACK) on a zero write with partial blocks fails
 * with -EOPNOTSUPP at once, ->done running before td_rmw_start returns:
 * those blocks can only be written, which is what FAST_ZERO refuses.
 */
void td_rmw_start(struct td_rmw *rmw);

#endif
