/* SPDX-License-Identifier: MIT */
/*
 * Ring index maths and the shared-memory accesses of a blkif ring
 * (xen/io/ring.h's macros, as pure functions), for both ends.
 *
 * Indices are free-running 32-bit counters compared by unsigned
 * subtraction; a slot is index & (nr_ents - 1).  Each end keeps its own
 * indices privately and only ever publishes them: a value read back from
 * the shared page is the peer's claim, to be checked, never our state.
 *
 * Memory ordering: publishing an index is a release store (the slots
 * written before it are visible first) followed by a full fence before the
 * peer's event index is read; reading the peer's index is an acquire load
 * (the slots are read after it).  These are ring.h's wmb/mb/rmb.
 */
#ifndef QTAP_RING_IDX_H
#define QTAP_RING_IDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring-abi.h"

/*
 * ring_nr_ents - slots in a ring of @ring_bytes with @entry_bytes slots:
 * what fits after the 64-byte header, rounded down to a power of two
 * (ring.h's __CONST_RING_SIZE).  0 when nothing fits.
 */
static inline uint32_t ring_nr_ents(size_t ring_bytes, size_t entry_bytes)
{
	size_t n;

	if (ring_bytes <= RING_SRING_HDR_BYTES || entry_bytes == 0)
		return 0;
	n = (ring_bytes - RING_SRING_HDR_BYTES) / entry_bytes;
	if (n == 0)
		return 0;
	if (n > UINT32_MAX)
		n = UINT32_MAX;
	return 1u << (31 - __builtin_clz((uint32_t)n));
}

/* ring_slot_offset - byte offset of index @idx's slot from the page start. */
static inline size_t ring_slot_offset(uint32_t idx, uint32_t nr_ents, size_t entry_bytes)
{
	return RING_SRING_HDR_BYTES + (size_t)(idx & (nr_ents - 1)) * entry_bytes;
}

/* ---- backend ------------------------------------------------------------ */

/*
 * ring_back_unconsumed - requests we may take now: those produced and not
 * consumed, clamped to the slots not holding a request we have yet to
 * answer (ring.h 4.17's RING_HAS_UNCONSUMED_REQUESTS).
 */
static inline uint32_t ring_back_unconsumed(uint32_t req_prod, uint32_t req_cons,
					    uint32_t rsp_prod_pvt, uint32_t nr_ents)
{
	uint32_t produced = req_prod - req_cons;
	uint32_t room = nr_ents - (req_cons - rsp_prod_pvt);

	return produced < room ? produced : room;
}

/*
 * ring_back_prod_overflow - does the frontend claim more outstanding
 * requests than the ring can hold?  (RING_REQUEST_PROD_OVERFLOW: a bogus or
 * hostile producer index.)
 */
static inline bool ring_back_prod_overflow(uint32_t req_prod, uint32_t rsp_prod_pvt,
					   uint32_t nr_ents)
{
	return req_prod - rsp_prod_pvt > nr_ents;
}

/* ring_back_cons_overflow - is every slot holding a request we have not answered? */
static inline bool ring_back_cons_overflow(uint32_t req_cons, uint32_t rsp_prod_pvt,
					   uint32_t nr_ents)
{
	return req_cons - rsp_prod_pvt >= nr_ents;
}

/* ---- frontend ----------------------------------------------------------- */

/* ring_front_free - slots the frontend may fill now. */
static inline uint32_t ring_front_free(uint32_t req_prod_pvt, uint32_t rsp_cons, uint32_t nr_ents)
{
	return nr_ents - (req_prod_pvt - rsp_cons);
}

/*
 * ring_front_rsp_overflow - does the backend claim more responses than
 * there are requests outstanding?  (RING_RESPONSE_PROD_OVERFLOW)
 */
static inline bool ring_front_rsp_overflow(uint32_t rsp_prod, uint32_t rsp_cons,
					   uint32_t req_prod_pvt)
{
	return rsp_prod - rsp_cons > req_prod_pvt - rsp_cons;
}

/* ---- both --------------------------------------------------------------- */

/*
 * ring_need_notify - having moved a producer index from @old_prod to
 * @new_prod, must the consumer be notified?  Yes when its event index lies
 * in (old_prod, new_prod].
 */
static inline bool ring_need_notify(uint32_t old_prod, uint32_t new_prod, uint32_t event)
{
	return (uint32_t)(new_prod - event) < (uint32_t)(new_prod - old_prod);
}

/* ring_peer_index - read an index the peer publishes (acquire). */
static inline uint32_t ring_peer_index(const uint32_t *shared)
{
	return __atomic_load_n(shared, __ATOMIC_ACQUIRE);
}

/*
 * ring_publish - publish our producer index @new_prod (previously
 * @old_prod) and say whether the peer's @event asks for a notification
 * (RING_PUSH_*_AND_CHECK_NOTIFY).
 */
static inline bool ring_publish(uint32_t *shared_prod, uint32_t old_prod, uint32_t new_prod,
				const uint32_t *shared_event)
{
	__atomic_store_n(shared_prod, new_prod, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ring_need_notify(old_prod, new_prod,
				__atomic_load_n(shared_event, __ATOMIC_RELAXED));
}

/*
 * ring_rearm - about to sleep having consumed up to @cons: ask to be
 * notified of the next item, then look again, closing the race with a
 * producer that published just before the event index moved
 * (RING_FINAL_CHECK_FOR_*).  True when the peer's index moved past @cons.
 */
static inline bool ring_rearm(uint32_t *shared_event, const uint32_t *shared_prod, uint32_t cons)
{
	__atomic_store_n(shared_event, cons + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ring_peer_index(shared_prod) != cons;
}

#endif
