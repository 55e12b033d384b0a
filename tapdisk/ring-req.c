// SPDX-License-Identifier: MIT
/*
 * Fetching and checking blkif requests: see ring-req.h.  The order of the
 * checks follows Linux blkback's (operation, segment count, segment
 * bounds, range, read-only), so a request that is wrong in several ways
 * gets the answer a Linux guest would get there.
 */
#include <errno.h>
#include <string.h>

#include "checked.h"
#include "tapdisk/ring-req.h"

static void decode64(const union ring_req_any *c, struct td_ring_msg *m)
{
	m->operation = c->r64.operation;
	switch (m->operation) {
	case RING_OP_DISCARD:
		m->flag = c->d64.flag;
		m->id = c->d64.id;
		m->sector_number = c->d64.sector_number;
		m->nr_sectors = c->d64.nr_sectors;
		break;
	case RING_OP_INDIRECT:
		m->indirect_op = c->i64.indirect_op;
		m->nr_segments = c->i64.nr_segments;
		m->id = c->i64.id;
		m->sector_number = c->i64.sector_number;
		memcpy(m->indirect_grefs, c->i64.indirect_grefs, sizeof(m->indirect_grefs));
		break;
	default:
		m->nr_segments = c->r64.nr_segments;
		m->id = c->r64.id;
		m->sector_number = c->r64.sector_number;
		memcpy(m->seg, c->r64.seg, sizeof(m->seg));
		break;
	}
}

static void decode32(const union ring_req_any *c, struct td_ring_msg *m)
{
	m->operation = c->r32.operation;
	switch (m->operation) {
	case RING_OP_DISCARD:
		m->flag = c->d32.flag;
		m->id = c->d32.id;
		m->sector_number = c->d32.sector_number;
		m->nr_sectors = c->d32.nr_sectors;
		break;
	case RING_OP_INDIRECT:
		m->indirect_op = c->i32.indirect_op;
		m->nr_segments = c->i32.nr_segments;
		m->id = c->i32.id;
		m->sector_number = c->i32.sector_number;
		memcpy(m->indirect_grefs, c->i32.indirect_grefs, sizeof(m->indirect_grefs));
		break;
	default:
		m->nr_segments = c->r32.nr_segments;
		m->id = c->r32.id;
		m->sector_number = c->r32.sector_number;
		memcpy(m->seg, c->r32.seg, sizeof(m->seg));
		break;
	}
}

void td_ring_fetch(const void *slot, enum ring_abi abi, struct td_ring_msg *m)
{
	union ring_req_any c;

	memcpy(&c, slot, ring_entry_bytes(abi));
	/*
	 * The copy is now the request.  The barrier, with the copy's address
	 * escaping into it, keeps the compiler from reading the slot again in
	 * place of the copy (XSA-155's switch-table reload).
	 */
	__asm__ __volatile__("" : : "r"(&c) : "memory");
	memset(m, 0, sizeof(*m));
	if (ring_abi_is_32(abi))
		decode32(&c, m);
	else
		decode64(&c, m);
}

/* ---- checks ------------------------------------------------------------- */

static int check_range(uint64_t sector, uint64_t nr_sectors, const struct td_ring_limits *lim,
		       struct td_ring_plan *plan)
{
	uint64_t end;

	if (ck_add(sector, nr_sectors, &end) || end > lim->disk_sectors)
		return -EINVAL;
	/* end <= disk_sectors < 2^55 for any disk a vbd opens: no overflow */
	plan->offset = sector * RING_SECTOR_BYTES;
	plan->len = nr_sectors * RING_SECTOR_BYTES;
	return 0;
}

int td_ring_check_segs(const struct ring_seg *segs, unsigned n, const struct td_ring_limits *lim,
		       struct td_ring_plan *plan)
{
	uint64_t sectors = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		uint8_t first = segs[i].first_sect, last = segs[i].last_sect;

		if (last >= RING_SECTORS_PER_PAGE || first > last)
			return -EINVAL;
		sectors += (uint64_t)(last - first + 1);
	}
	if (sectors == 0 && n > 0)
		return -EINVAL;
	return check_range(plan->offset / RING_SECTOR_BYTES, sectors, lim, plan);
}

static int check_direct(const struct td_ring_msg *m, const struct td_ring_limits *lim,
			struct td_ring_plan *plan)
{
	unsigned min_segs = m->operation == RING_OP_READ || m->operation == RING_OP_WRITE;
	int err;

	if (m->nr_segments < min_segs || m->nr_segments > RING_SEGS_DIRECT)
		return -EINVAL;
	plan->nr_segs = m->nr_segments;
	if (plan->nr_segs == 0) { /* a flush or a barrier with no data */
		plan->op = TD_OP_FLUSH;
		plan->offset = plan->len = 0;
		return 0;
	}
	if (m->operation != RING_OP_READ && m->operation != RING_OP_WRITE)
		plan->op = TD_OP_WRITE; /* data with a preflush: the barrier flag orders it */
	err = check_range(m->sector_number, 0, lim, plan);
	if (err)
		return err;
	return td_ring_check_segs(m->seg, plan->nr_segs, lim, plan);
}

static int check_indirect(const struct td_ring_msg *m, const struct td_ring_limits *lim,
			  struct td_ring_plan *plan)
{
	plan->rsp_op = m->indirect_op;
	if (lim->max_indirect_segs == 0)
		return -EOPNOTSUPP;
	if (m->indirect_op != RING_OP_READ && m->indirect_op != RING_OP_WRITE)
		return -EINVAL;
	plan->op = m->indirect_op == RING_OP_READ ? TD_OP_READ : TD_OP_WRITE;
	if (m->nr_segments == 0 || m->nr_segments > lim->max_indirect_segs)
		return -EINVAL;
	plan->indirect = true;
	plan->nr_segs = m->nr_segments;
	plan->nr_indirect =
		(plan->nr_segs + RING_SEGS_PER_INDIRECT_PAGE - 1) / RING_SEGS_PER_INDIRECT_PAGE;
	if (plan->nr_indirect > RING_INDIRECT_PAGES_MAX)
		return -EINVAL;
	return check_range(m->sector_number, 0, lim, plan);
}

static int check_discard(const struct td_ring_msg *m, const struct td_ring_limits *lim,
			 struct td_ring_plan *plan)
{
	if (!lim->can_discard || (m->flag & RING_DISCARD_SECURE))
		return -EOPNOTSUPP;
	plan->op = TD_OP_DISCARD;
	if (m->nr_sectors == 0)
		return -EINVAL;
	return check_range(m->sector_number, m->nr_sectors, lim, plan);
}

static int check_op(const struct td_ring_msg *m, const struct td_ring_limits *lim,
		    struct td_ring_plan *plan)
{
	switch (m->operation) {
	case RING_OP_READ:
		plan->op = TD_OP_READ;
		return check_direct(m, lim, plan);
	case RING_OP_WRITE:
		plan->op = TD_OP_WRITE;
		return check_direct(m, lim, plan);
	case RING_OP_WRITE_BARRIER:
		/* Earlier requests complete and are durable first; so is this one. */
		plan->flags = TD_REQ_BARRIER | TD_REQ_FUA;
		return check_direct(m, lim, plan);
	case RING_OP_FLUSH_DISKCACHE:
		/* With data: flush first, then write (Linux blkback's preflush). */
		plan->flags = TD_REQ_BARRIER;
		return check_direct(m, lim, plan);
	case RING_OP_DISCARD:
		return check_discard(m, lim, plan);
	case RING_OP_INDIRECT:
		return check_indirect(m, lim, plan);
	default: /* RESERVED_1 and the unknown */
		return -EOPNOTSUPP;
	}
}

int td_ring_check(const struct td_ring_msg *m, const struct td_ring_limits *lim,
		  struct td_ring_plan *plan)
{
	int err;

	memset(plan, 0, sizeof(*plan));
	plan->rsp_op = m->operation;
	err = check_op(m, lim, plan);
	if (err)
		return err;
	/*
	 * A bare FLUSH_DISKCACHE covers the writes completed before it; a
	 * bare barrier also waits for those in flight.
	 */
	if (plan->op == TD_OP_FLUSH)
		plan->flags = m->operation == RING_OP_WRITE_BARRIER ? TD_REQ_BARRIER : 0;
	if (lim->readonly && (plan->op == TD_OP_WRITE || plan->op == TD_OP_DISCARD))
		return -EROFS;
	return 0;
}

int16_t td_ring_status(int err)
{
	if (err == 0)
		return RING_RSP_OKAY;
	if (err == -EOPNOTSUPP || err == -ENOTSUP)
		return RING_RSP_EOPNOTSUPP;
	return RING_RSP_ERROR;
}
