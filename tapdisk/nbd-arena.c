// SPDX-License-Identifier: MIT
/*
 * A connection's data arena: a ring of NBDS_ALIGN-byte units handed out in
 * allocation order and given back in any order; space comes back to the
 * allocator in ring order, as the units behind the oldest live allocation
 * free up.  A request that does not fit the free end takes the start of the
 * ring and holds the end it skipped until it is given back, so every
 * allocation is contiguous and O_DIRECT-aligned.  Requests complete nearly
 * in order, so little space waits behind a slow one; when everything is
 * back the ring starts afresh.  The caller's span records only where its
 * allocation lies, so it may be reused as soon as it is given back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"
#include "tapdisk/nbd-internal.h"

int nbds_arena_init(struct nbds_arena *a, size_t cap)
{
	*a = (struct nbds_arena){ .units = cap / NBDS_ALIGN };
	a->base = buf_alloc(a->units * NBDS_ALIGN, NBDS_ALIGN);
	a->busy = calloc(a->units ? a->units : 1, 1);
	if (!a->base || !a->busy || !a->units) {
		nbds_arena_fini(a);
		return -ENOMEM;
	}
	return 0;
}

void nbds_arena_fini(struct nbds_arena *a)
{
	buf_free(a->base);
	free(a->busy);
	a->base = NULL;
	a->busy = NULL;
}

static void mark(struct nbds_arena *a, size_t unit, size_t n, uint8_t v)
{
	memset(a->busy + unit, v, n);
}

void *nbds_arena_get(struct nbds_arena *a, size_t len, struct nbds_span *sp)
{
	size_t n = div_round_up_u64(len ? len : 1, NBDS_ALIGN), off, waste = 0;

	if (n > a->units)
		return NULL;
	if (a->used == 0)
		a->head = a->tail = 0;
	if (a->used == 0 || a->head > a->tail) {
		/* free: [head, units) and [0, tail) */
		if (a->units - a->head >= n) {
			off = a->head;
		} else if (a->tail >= n) {
			off = 0;
			waste = a->units - a->head;
		} else {
			return NULL;
		}
	} else if (a->tail - a->head >= n) { /* head == tail: full */
		off = a->head;
	} else {
		return NULL;
	}
	*sp = (struct nbds_span){ .unit = off, .units = n, .waste_unit = a->head, .waste = waste };
	mark(a, off, n, 1);
	mark(a, a->head, waste, 1);
	a->used += n + waste;
	a->head = (off + n) % a->units;
	return a->base + off * NBDS_ALIGN;
}

void nbds_arena_put(struct nbds_arena *a, const struct nbds_span *sp)
{
	mark(a, sp->unit, sp->units, 0);
	mark(a, sp->waste_unit, sp->waste, 0);
	a->used -= sp->units + sp->waste;
	while (a->used && !a->busy[a->tail])
		a->tail = (a->tail + 1) % a->units;
}
