/* SPDX-License-Identifier: MIT */
/*
 * A blkif request taken off the shared ring: the one copy (blkif-notes §4.1
 * items 5-10), its decoding from any ABI into one private form, and every
 * check made on that private form before anything acts on it.  Pure code;
 * the engine (ring.c) and the unit tests call it.
 *
 * The rule (XSA-155): the slot is copied out of shared memory once, with a
 * compiler barrier after the copy, and from then on only the copy is read.
 * A field the frontend changes after publication therefore changes nothing:
 * the request is what the copy says, checked or refused as a whole.
 */
#ifndef QTAP_TAPDISK_RING_REQ_H
#define QTAP_TAPDISK_RING_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include "ring-abi.h"
#include "tapdisk/vbd.h"

/* A request in private memory, whatever its ABI and kind. */
struct td_ring_msg {
	uint8_t operation;   /* RING_OP_* as sent */
	uint8_t indirect_op; /* INDIRECT */
	uint8_t flag;	     /* DISCARD */
	uint16_t nr_segments;
	uint64_t id;
	uint64_t sector_number;
	uint64_t nr_sectors; /* DISCARD */
	uint32_t indirect_grefs[RING_INDIRECT_PAGES_MAX];
	struct ring_seg seg[RING_SEGS_DIRECT]; /* direct requests; read up to nr_segments */
};

/* What the backend offers: the answer to a request depends on nothing else. */
struct td_ring_limits {
	uint64_t disk_sectors; /* 512-byte sectors */
	bool readonly;
	bool can_discard;
	unsigned max_indirect_segs; /* 0: INDIRECT is not offered */
};

/* A checked request: what to ask of the vbd. */
struct td_ring_plan {
	enum td_op op;
	unsigned flags;	      /* TD_REQ_* */
	uint8_t rsp_op;	      /* the response's operation (indirect_op for INDIRECT) */
	bool indirect;	      /* segments are in indirect pages, not yet read */
	unsigned nr_segs;     /* data segments; 0 for FLUSH/DISCARD */
	unsigned nr_indirect; /* indirect pages to read */
	uint64_t offset;      /* bytes */
	uint64_t len;	      /* bytes; known after the segments are checked */
};

/*
 * td_ring_fetch - copy the slot at @slot (in shared memory) once and decode
 * it as @abi into @m.  Never fails: every value is possible and left to
 * td_ring_check().
 */
void td_ring_fetch(const void *slot, enum ring_abi abi, struct td_ring_msg *m);

/*
 * td_ring_check - decide what @m asks for, given @lim.  Fills @plan and
 * returns 0, or returns -EOPNOTSUPP (unknown or unoffered operation, secure
 * discard), -EROFS (a write to a read-only disk) or -EINVAL (bad segment
 * count or bounds, range past the end or wrapping).  @plan->rsp_op is valid
 * in every case.  For INDIRECT, td_ring_check_segs() completes the checks
 * once the descriptors are copied; for direct requests it is done here.
 */
int td_ring_check(const struct td_ring_msg *m, const struct td_ring_limits *lim,
		  struct td_ring_plan *plan);

/*
 * td_ring_check_segs - check @n segment descriptors (private memory) and
 * the sector range they cover from @plan->offset; sets @plan->len.
 * 0 or -EINVAL.
 */
int td_ring_check_segs(const struct ring_seg *segs, unsigned n, const struct td_ring_limits *lim,
		       struct td_ring_plan *plan);

/*
 * td_ring_status - the ring status for a completion error (0 or -errno):
 * the one place errno becomes BLKIF_RSP_*.
 */
int16_t td_ring_status(int err);

#endif
