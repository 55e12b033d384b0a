// SPDX-License-Identifier: MIT
/*
 * The blkif wire format against Xen's own headers (libxen-dev's
 * xen/io/blkif.h and xen/io/ring.h): every size and offset of our
 * declarations in ring-abi.h, for the x86_64 layout (the headers as this
 * compiler lays them out) and the x86_32 one (the same headers included a
 * second time under i386's 4-byte alignment of 64-bit fields, as Linux and
 * blktap declare it); and the ring index maths of ring-idx.h against
 * ring.h's macros on a real ring page, over index values that wrap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ring.h's barriers; with __XEN_TOOLS__ the application supplies them. */
#define __XEN_TOOLS__ 1
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <xen/io/blkif.h>

/* The same header again, renamed, as an i386 compiler lays it out. */
#undef __XEN_PUBLIC_IO_BLKIF_H__
#define blkif_request_segment x32_blkif_request_segment
#define blkif_request x32_blkif_request
#define blkif_request_t x32_blkif_request_t
#define blkif_request_discard x32_blkif_request_discard
#define blkif_request_discard_t x32_blkif_request_discard_t
#define blkif_request_indirect x32_blkif_request_indirect
#define blkif_request_indirect_t x32_blkif_request_indirect_t
#define blkif_response x32_blkif_response
#define blkif_response_t x32_blkif_response_t
#define blkif_sring x32_blkif_sring
#define blkif_sring_entry x32_blkif_sring_entry
#define blkif_front_ring x32_blkif_front_ring
#define blkif_back_ring x32_blkif_back_ring
#define blkif_sring_t x32_blkif_sring_t
#define blkif_front_ring_t x32_blkif_front_ring_t
#define blkif_back_ring_t x32_blkif_back_ring_t
#pragma pack(push, 4)
#define __i386__ 1
#include <xen/io/blkif.h>
#undef __i386__
#pragma pack(pop)
#undef blkif_request_segment
#undef blkif_request
#undef blkif_request_t
#undef blkif_request_discard
#undef blkif_request_discard_t
#undef blkif_request_indirect
#undef blkif_request_indirect_t
#undef blkif_response
#undef blkif_response_t
#undef blkif_sring
#undef blkif_sring_entry
#undef blkif_front_ring
#undef blkif_back_ring
#undef blkif_sring_t
#undef blkif_front_ring_t
#undef blkif_back_ring_t

#include "ring-abi.h"
#include "ring-idx.h"

#define SAME_LAYOUT(ours, theirs, field)                                                           \
	assert_int_equal(offsetof(ours, field), offsetof(theirs, field))

static void test_x86_64_layout(void **state)
{
	assert_int_equal(sizeof(struct ring_seg), sizeof(struct blkif_request_segment));
	SAME_LAYOUT(struct ring_seg, struct blkif_request_segment, first_sect);
	SAME_LAYOUT(struct ring_seg, struct blkif_request_segment, last_sect);

	assert_int_equal(sizeof(struct ring_req64), sizeof(struct blkif_request));
	SAME_LAYOUT(struct ring_req64, struct blkif_request, nr_segments);
	SAME_LAYOUT(struct ring_req64, struct blkif_request, handle);
	SAME_LAYOUT(struct ring_req64, struct blkif_request, id);
	SAME_LAYOUT(struct ring_req64, struct blkif_request, sector_number);
	SAME_LAYOUT(struct ring_req64, struct blkif_request, seg);

	assert_int_equal(sizeof(struct ring_discard64), sizeof(struct blkif_request_discard));
	SAME_LAYOUT(struct ring_discard64, struct blkif_request_discard, flag);
	SAME_LAYOUT(struct ring_discard64, struct blkif_request_discard, id);
	SAME_LAYOUT(struct ring_discard64, struct blkif_request_discard, sector_number);
	SAME_LAYOUT(struct ring_discard64, struct blkif_request_discard, nr_sectors);

	assert_int_equal(sizeof(struct ring_indirect64), sizeof(struct blkif_request_indirect));
	SAME_LAYOUT(struct ring_indirect64, struct blkif_request_indirect, indirect_op);
	SAME_LAYOUT(struct ring_indirect64, struct blkif_request_indirect, nr_segments);
	SAME_LAYOUT(struct ring_indirect64, struct blkif_request_indirect, id);
	SAME_LAYOUT(struct ring_indirect64, struct blkif_request_indirect, sector_number);
	SAME_LAYOUT(struct ring_indirect64, struct blkif_request_indirect, handle);
	SAME_LAYOUT(struct ring_indirect64, struct blkif_request_indirect, indirect_grefs);

	assert_int_equal(sizeof(struct ring_rsp64), sizeof(struct blkif_response));
	SAME_LAYOUT(struct ring_rsp64, struct blkif_response, operation);
	SAME_LAYOUT(struct ring_rsp64, struct blkif_response, status);

	assert_int_equal(RING_ENTRY64_BYTES, sizeof(union blkif_sring_entry));
	assert_int_equal(offsetof(struct ring_sring, slots), offsetof(struct blkif_sring, ring));
	SAME_LAYOUT(struct ring_sring, struct blkif_sring, req_prod);
	SAME_LAYOUT(struct ring_sring, struct blkif_sring, req_event);
	SAME_LAYOUT(struct ring_sring, struct blkif_sring, rsp_prod);
	SAME_LAYOUT(struct ring_sring, struct blkif_sring, rsp_event);
}

static void test_x86_32_layout(void **state)
{
	assert_int_equal(sizeof(struct ring_req32), sizeof(struct x32_blkif_request));
	SAME_LAYOUT(struct ring_req32, struct x32_blkif_request, nr_segments);
	SAME_LAYOUT(struct ring_req32, struct x32_blkif_request, handle);
	SAME_LAYOUT(struct ring_req32, struct x32_blkif_request, id);
	SAME_LAYOUT(struct ring_req32, struct x32_blkif_request, sector_number);
	SAME_LAYOUT(struct ring_req32, struct x32_blkif_request, seg);

	assert_int_equal(sizeof(struct ring_discard32), sizeof(struct x32_blkif_request_discard));
	SAME_LAYOUT(struct ring_discard32, struct x32_blkif_request_discard, flag);
	SAME_LAYOUT(struct ring_discard32, struct x32_blkif_request_discard, id);
	SAME_LAYOUT(struct ring_discard32, struct x32_blkif_request_discard, sector_number);
	SAME_LAYOUT(struct ring_discard32, struct x32_blkif_request_discard, nr_sectors);

	assert_int_equal(sizeof(struct ring_indirect32), sizeof(struct x32_blkif_request_indirect));
	SAME_LAYOUT(struct ring_indirect32, struct x32_blkif_request_indirect, nr_segments);
	SAME_LAYOUT(struct ring_indirect32, struct x32_blkif_request_indirect, id);
	SAME_LAYOUT(struct ring_indirect32, struct x32_blkif_request_indirect, sector_number);
	SAME_LAYOUT(struct ring_indirect32, struct x32_blkif_request_indirect, handle);
	SAME_LAYOUT(struct ring_indirect32, struct x32_blkif_request_indirect, indirect_grefs);

	assert_int_equal(sizeof(struct ring_rsp32), sizeof(struct x32_blkif_response));
	SAME_LAYOUT(struct ring_rsp32, struct x32_blkif_response, operation);
	SAME_LAYOUT(struct ring_rsp32, struct x32_blkif_response, status);

	assert_int_equal(RING_ENTRY32_BYTES, sizeof(union x32_blkif_sring_entry));
	assert_int_equal(offsetof(struct ring_sring, slots),
			 offsetof(struct x32_blkif_sring, ring));
}

static void test_abi_choice(void **state)
{
	assert_int_equal(ring_entry_bytes(RING_ABI_X86_64), RING_ENTRY64_BYTES);
	assert_int_equal(ring_entry_bytes(RING_ABI_X86_32), RING_ENTRY32_BYTES);
	/* This build is 64-bit: native is the x86_64 layout, as Xen's headers say. */
	assert_int_equal(ring_entry_bytes(RING_ABI_NATIVE), sizeof(union blkif_sring_entry));
	assert_int_equal(BLKIF_MAX_SEGMENTS_PER_REQUEST, RING_SEGS_DIRECT);
	assert_int_equal(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, RING_INDIRECT_PAGES_MAX);
	assert_int_equal(BLKIF_OP_INDIRECT, RING_OP_INDIRECT);
	assert_int_equal(BLKIF_OP_DISCARD, RING_OP_DISCARD);
	assert_int_equal(BLKIF_OP_FLUSH_DISKCACHE, RING_OP_FLUSH_DISKCACHE);
	assert_int_equal(BLKIF_OP_WRITE_BARRIER, RING_OP_WRITE_BARRIER);
	assert_int_equal(BLKIF_RSP_EOPNOTSUPP, RING_RSP_EOPNOTSUPP);
	assert_int_equal(BLKIF_RSP_ERROR, RING_RSP_ERROR);
	assert_int_equal(BLKIF_DISCARD_SECURE, RING_DISCARD_SECURE);
	assert_int_equal(VDISK_READONLY, RING_INFO_READONLY);
}

/* Slots per ring for 1..16 pages, both layouts, as ring.h computes them. */
static void test_ring_size(void **state)
{
	for (unsigned pages = 1; pages <= RING_PAGES_MAX; pages++) {
		size_t bytes = (size_t)pages * RING_PAGE_BYTES;

		assert_int_equal(ring_nr_ents(bytes, RING_ENTRY64_BYTES),
				 __CONST_RING_SIZE(blkif, bytes));
		assert_int_equal(ring_nr_ents(bytes, RING_ENTRY32_BYTES),
				 __CONST_RING_SIZE(x32_blkif, bytes));
	}
	assert_int_equal(ring_nr_ents(RING_PAGE_BYTES, RING_ENTRY64_BYTES), 32);
	assert_int_equal(ring_nr_ents(16 * RING_PAGE_BYTES, RING_ENTRY64_BYTES), 512);
	assert_int_equal(ring_nr_ents(64, RING_ENTRY64_BYTES), 0);
	assert_int_equal(ring_slot_offset(33, 32, RING_ENTRY64_BYTES),
			 offsetof(struct blkif_sring, ring) + sizeof(union blkif_sring_entry));
}

static uint32_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

/* Index values around 0 and the 2^32 wrap, and random ones nearby. */
static uint32_t pick_index(uint64_t *s, uint32_t base, uint32_t nr)
{
	return base + rnd(s) % (3 * nr) - nr;
}

/* Backend predicates against RING_HAS_UNCONSUMED_REQUESTS and the overflows. */
static void test_back_predicates(void **state)
{
	static union {
		struct blkif_sring s;
		uint8_t page[RING_PAGE_BYTES];
	} page;
	struct blkif_back_ring back;
	uint64_t seed = 1;

	BACK_RING_INIT(&back, &page.s, RING_PAGE_BYTES);
	for (int i = 0; i < 200000; i++) {
		uint32_t base = i & 1 ? 0 : UINT32_MAX - 7;
		uint32_t nr = back.nr_ents;

		back.rsp_prod_pvt = pick_index(&seed, base, nr);
		back.req_cons = back.rsp_prod_pvt + rnd(&seed) % (nr + 1);
		page.s.req_prod = pick_index(&seed, back.req_cons, nr);
		if (!RING_REQUEST_PROD_OVERFLOW(&back, page.s.req_prod))
			assert_int_equal(ring_back_unconsumed(page.s.req_prod, back.req_cons,
							      back.rsp_prod_pvt, nr),
					 RING_HAS_UNCONSUMED_REQUESTS(&back));
		assert_int_equal(ring_back_prod_overflow(page.s.req_prod, back.rsp_prod_pvt, nr),
				 RING_REQUEST_PROD_OVERFLOW(&back, page.s.req_prod));
		assert_int_equal(ring_back_cons_overflow(back.req_cons, back.rsp_prod_pvt, nr),
				 RING_REQUEST_CONS_OVERFLOW(&back, back.req_cons));
	}
}

/* Publishing responses: our notify decision against ring.h's, and the page. */
static void test_publish_matches_push(void **state)
{
	static union {
		struct blkif_sring s;
		uint8_t page[RING_PAGE_BYTES];
	} theirs, ours;
	struct blkif_back_ring back;
	uint64_t seed = 7;

	BACK_RING_INIT(&back, &theirs.s, RING_PAGE_BYTES);
	for (int i = 0; i < 200000; i++) {
		uint32_t old = pick_index(&seed, i & 1 ? 0 : UINT32_MAX - 3, 64);
		uint32_t now = old + rnd(&seed) % 40;
		uint32_t event = pick_index(&seed, old, 64);
		int notify;
		bool want;

		theirs.s.rsp_prod = ours.s.rsp_prod = old;
		theirs.s.rsp_event = ours.s.rsp_event = event;
		back.rsp_prod_pvt = now;
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
		want = ring_publish(&ours.s.rsp_prod, old, now, &ours.s.rsp_event);
		assert_int_equal(want, notify);
		assert_int_equal(ours.s.rsp_prod, theirs.s.rsp_prod);
	}
}

/* The final check: the event index it leaves, and what it reports. */
static void test_rearm_matches_final_check(void **state)
{
	static union {
		struct blkif_sring s;
		uint8_t page[RING_PAGE_BYTES];
	} theirs, ours;
	struct blkif_back_ring back;
	uint64_t seed = 3;

	BACK_RING_INIT(&back, &theirs.s, RING_PAGE_BYTES);
	for (int i = 0; i < 100000; i++) {
		uint32_t cons = pick_index(&seed, i & 1 ? 0 : UINT32_MAX, 32);
		uint32_t prod = cons + (rnd(&seed) % 3 == 0 ? rnd(&seed) % 5 : 0);
		int more;
		bool ours_more;

		back.req_cons = back.rsp_prod_pvt = cons;
		theirs.s.req_prod = ours.s.req_prod = prod;
		theirs.s.req_event = ours.s.req_event = cons - 5;
		RING_FINAL_CHECK_FOR_REQUESTS(&back, more);
		if (prod != cons) /* ring.h only re-arms when it found nothing */
			continue;
		ours_more = ring_rearm(&ours.s.req_event, &ours.s.req_prod, cons);
		assert_int_equal(ours_more, more != 0);
		assert_int_equal(ours.s.req_event, theirs.s.req_event);
	}
}

/*
 * Frontend predicates against RING_FREE_REQUESTS and the response overflow.
 * Ours is stricter than ring.h's (which allows a whole ring's worth of
 * responses whatever was asked): it refuses more responses than requests
 * outstanding, so it is true whenever ring.h's is.
 */
static void test_front_predicates(void **state)
{
	static union {
		struct blkif_sring s;
		uint8_t page[RING_PAGE_BYTES];
	} page;
	struct blkif_front_ring front;
	uint64_t seed = 11;

	FRONT_RING_INIT(&front, &page.s, RING_PAGE_BYTES);
	for (int i = 0; i < 100000; i++) {
		uint32_t nr = front.nr_ents;

		front.rsp_cons = pick_index(&seed, i & 1 ? 0 : UINT32_MAX - 1, nr);
		front.req_prod_pvt = front.rsp_cons + rnd(&seed) % (nr + 1);
		page.s.rsp_prod = pick_index(&seed, front.rsp_cons, nr);
		assert_int_equal(ring_front_free(front.req_prod_pvt, front.rsp_cons, nr),
				 RING_FREE_REQUESTS(&front));
		bool ours = ring_front_rsp_overflow(page.s.rsp_prod, front.rsp_cons,
						    front.req_prod_pvt);

		if (RING_RESPONSE_PROD_OVERFLOW(&front, page.s.rsp_prod))
			assert_true(ours);
	}
	/* Two requests outstanding across the wrap: two responses, not three. */
	assert_false(ring_front_rsp_overflow(0, UINT32_MAX - 1, 0));
	assert_true(ring_front_rsp_overflow(1, UINT32_MAX - 1, 0));
	assert_true(ring_front_rsp_overflow(UINT32_MAX - 2, UINT32_MAX - 1, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x86_64_layout),
		cmocka_unit_test(test_x86_32_layout),
		cmocka_unit_test(test_abi_choice),
		cmocka_unit_test(test_ring_size),
		cmocka_unit_test(test_back_predicates),
		cmocka_unit_test(test_publish_matches_push),
		cmocka_unit_test(test_rearm_matches_final_check),
		cmocka_unit_test(test_front_predicates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
