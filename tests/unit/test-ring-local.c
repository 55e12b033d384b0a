// SPDX-License-Identifier: MIT
/*
 * The local transport's ->map (tapdisk/ring-local.c): a segment resolves
 * to the frontend's bytes in the memfd only after the checks ->copy makes,
 * each segment judged on its own.  Bad references, revoked grants,
 * read-only grants for a segment the backend must write (a READ), frames
 * outside the frames region and ranges past the frame's end are refused,
 * and the statuses say which segment failed.  ->copy is checked against
 * the same segments, so that the two cannot drift apart.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "ringshm.h"
#include "tapdisk/ring-transport.h"

#define NR_GREFS 64u
#define NR_FRAMES 8u

/* Grant references the tests use. */
enum {
	REF_RING = 1,	  /* the ring page: frame 0 of the region */
	REF_RW = 2,	  /* frame 1, read-write */
	REF_RO = 3,	  /* frame 2, read-only */
	REF_REVOKED = 4,  /* frame 3, granted then revoked */
	REF_NOT_DATA = 5, /* the grant table's own page: outside the frames region */
	REF_PAST_END = 6, /* a frame number past the memfd */
	REF_FOREIGN = 7,  /* frame 4, granted to another domain */
	REF_NEXT = 8,	  /* frame 5, read-write */
};

struct fixture {
	int fd;
	struct ringshm_layout l;
	uint8_t *mem; /* the frontend's view of the whole memfd */
	size_t bytes;
	struct td_local_mem *lmem;
	struct td_transport *t;
};

static uint8_t *frame_ptr(struct fixture *f, uint32_t i)
{
	return f->mem + (size_t)(f->l.frame_first + i) * RINGSHM_PAGE_BYTES;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct ringshm_gnt *table;
	uint32_t ring_ref = REF_RING;
	char why[256];

	assert_non_null(f);
	assert_int_equal(ringshm_create(NR_GREFS, NR_FRAMES, &f->fd, &f->l), 0);
	f->bytes = (size_t)f->l.total_pages * RINGSHM_PAGE_BYTES;
	f->mem = mmap(NULL, f->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	assert_true(f->mem != MAP_FAILED);
	table = (struct ringshm_gnt *)(f->mem + (size_t)f->l.gnt_first * RINGSHM_PAGE_BYTES);
	ringshm_grant(table, REF_RING, f->l.frame_first, false);
	ringshm_grant(table, REF_RW, f->l.frame_first + 1, false);
	ringshm_grant(table, REF_RO, f->l.frame_first + 2, true);
	ringshm_grant(table, REF_REVOKED, f->l.frame_first + 3, false);
	ringshm_revoke(table, REF_REVOKED);
	ringshm_grant(table, REF_NOT_DATA, f->l.gnt_first, false);
	ringshm_grant(table, REF_PAST_END, f->l.total_pages, false);
	ringshm_grant(table, REF_FOREIGN, f->l.frame_first + 4, false);
	table[REF_FOREIGN].domid = 7;
	ringshm_grant(table, REF_NEXT, f->l.frame_first + 5, false);
	assert_int_equal(td_local_mem_open(dup(f->fd), &f->lmem, why, sizeof(why)), 0);
	assert_int_equal(td_transport_local_new(f->lmem, &ring_ref, 1, eventfd(0, 0), eventfd(0, 0),
						16, &f->t, why, sizeof(why)),
			 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	td_transport_free(f->t);
	td_local_mem_free(f->lmem);
	munmap(f->mem, f->bytes);
	close(f->fd);
	free(f);
	return 0;
}

static struct td_copy_seg seg(uint32_t gref, uint16_t offset, uint16_t len)
{
	return (struct td_copy_seg){ .gref = gref, .offset = offset, .len = len, .status = 1 };
}

/* Map one segment; the status must equal the return value. */
static int map1(struct fixture *f, struct td_copy_seg *s, bool to_guest)
{
	int err = f->t->ops->map(f->t, s, 1, to_guest);

	assert_int_equal(s->status, err);
	return err;
}

/* The same segment through ->copy must meet the same verdict. */
static int copy1(struct fixture *f, struct td_copy_seg s, bool to_guest)
{
	uint8_t buf[RINGSHM_PAGE_BYTES];

	s.local = buf;
	memset(buf, 0x11, sizeof(buf));
	return f->t->ops->copy(f->t, &s, 1, to_guest);
}

static void test_map_points_at_the_frame(void **state)
{
	struct fixture *f = *state;
	struct td_copy_seg s = seg(REF_RW, 512, 1024);
	struct td_copy_seg ro = seg(REF_RO, 0, 4096);

	assert_non_null(f->t->ops->map);
	/* A READ writes into the frame: the backend's writes land in the frontend's frame. */
	assert_int_equal(map1(f, &s, true), 0);
	assert_ptr_not_equal(s.local, NULL);
	memset(s.local, 0xab, s.len);
	assert_int_equal(frame_ptr(f, 1)[511], 0);
	assert_int_equal(frame_ptr(f, 1)[512], 0xab);
	assert_int_equal(frame_ptr(f, 1)[1535], 0xab);
	assert_int_equal(frame_ptr(f, 1)[1536], 0);
	/* ... and the frontend's changes are seen at once: no copy in between. */
	frame_ptr(f, 1)[600] = 0x5c;
	assert_int_equal(((uint8_t *)s.local)[600 - 512], 0x5c);
	/* A WRITE only reads the frame: a read-only grant will do. */
	assert_int_equal(map1(f, &ro, false), 0);
	frame_ptr(f, 2)[4095] = 0x77;
	assert_int_equal(((uint8_t *)ro.local)[4095], 0x77);
	/* A whole frame, at the end of the region. */
	s = seg(REF_NEXT, 0, 4096);
	assert_int_equal(map1(f, &s, true), 0);
	assert_int_equal(copy1(f, seg(REF_NEXT, 0, 4096), true), 0);
}

static void test_map_refuses(void **state)
{
	struct fixture *f = *state;
	const struct {
		struct td_copy_seg s;
		bool to_guest;
		int err;
	} cases[] = {
		{ seg(0, 0, 4096), false, -EINVAL },		  /* reference 0 is never valid */
		{ seg(f->l.nr_grefs, 0, 4096), false, -EINVAL },  /* past the grant table */
		{ seg(UINT32_MAX, 0, 512), true, -EINVAL },	  /* far past it */
		{ seg(40, 0, 512), false, -EPERM },		  /* never granted */
		{ seg(REF_REVOKED, 0, 512), false, -EPERM },	  /* revoked */
		{ seg(REF_FOREIGN, 0, 512), false, -EPERM },	  /* granted to another domain */
		{ seg(REF_RO, 0, 512), true, -EPERM },		  /* read-only, for a READ */
		{ seg(REF_RO, 3584, 512), true, -EPERM },	  /* the same, anywhere */
		{ seg(REF_NOT_DATA, 0, 512), false, -EINVAL },	  /* the grant table itself */
		{ seg(REF_PAST_END, 0, 512), false, -EINVAL },	  /* beyond the memfd */
		{ seg(REF_RW, 3584, 1024), true, -EINVAL },	  /* runs past the frame */
		{ seg(REF_RW, 4096, 512), false, -EINVAL },	  /* starts past it */
		{ seg(REF_RW, 512, UINT16_MAX), false, -EINVAL }, /* far past it */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct td_copy_seg s = cases[i].s;

		if (map1(f, &s, cases[i].to_guest) != cases[i].err)
			fail_msg("case %zu: map gave %d, expected %d", i, s.status, cases[i].err);
		if (copy1(f, cases[i].s, cases[i].to_guest) != cases[i].err)
			fail_msg("case %zu: copy disagrees with map", i);
	}
}

/* Several segments: each judged alone, the first failure returned. */
static void test_map_statuses(void **state)
{
	struct fixture *f = *state;
	struct td_copy_seg s[4] = { seg(REF_RW, 0, 4096), seg(REF_RO, 0, 4096),
				    seg(REF_REVOKED, 0, 4096), seg(REF_NEXT, 0, 4096) };

	assert_int_equal(f->t->ops->map(f->t, s, 4, true), -EPERM);
	assert_int_equal(s[0].status, 0);
	assert_int_equal(s[1].status, -EPERM);
	assert_int_equal(s[2].status, -EPERM);
	assert_int_equal(s[3].status, 0);
	/* A grant revoked after the map leaves the pointer usable: the frame stays mapped. */
	s[0] = seg(REF_RW, 0, 4096);
	assert_int_equal(map1(f, &s[0], true), 0);
	ringshm_revoke((struct ringshm_gnt *)(f->mem + (size_t)f->l.gnt_first * RINGSHM_PAGE_BYTES),
		       REF_RW);
	memset(s[0].local, 0xcd, 4096);
	assert_int_equal(frame_ptr(f, 1)[4095], 0xcd);
	assert_int_equal(copy1(f, seg(REF_RW, 0, 4096), false), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_map_points_at_the_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_statuses, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
