/* SPDX-License-Identifier: MIT */
/*
 * Shared by create-alloc.c (the refcount model) and create-prealloc.c (L1,
 * L2, preallocation); not an interface for anything else.  Conventions as
 * in create-alloc.h.
 */
#ifndef QTAP_QCOW2_CREATE_INTERNAL_H
#define QTAP_QCOW2_CREATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2/create-alloc.h"

/* qcow2_mk_extend - the file reaches @end (qemu-img wrote up to there). */
void qcow2_mk_extend(struct qcow2_mk *mk, uint64_t end);

/* qcow2_mk_write - write and account for it; logged with @what. */
int qcow2_mk_write(struct qcow2_mk *mk, uint64_t off, const void *buf, size_t len,
		   const char *what);

/*
 * qcow2_mk_write_be64 - write the @entries host-order values of @t (a table:
 * L1, refcount) big-endian at @off, as qcow2_mk_write.
 */
int qcow2_mk_write_be64(struct qcow2_mk *mk, uint64_t off, const uint64_t *t, uint64_t entries,
			const char *what);

/* qcow2_mk_refcount - the refcount of @cluster (0 where no block covers it). */
uint64_t qcow2_mk_refcount(const struct qcow2_mk *mk, uint64_t cluster);

/* qcow2_mk_free - drop one reference to each cluster of the range. */
void qcow2_mk_free(struct qcow2_mk *mk, uint64_t offset, uint64_t bytes);

/*
 * qcow2_mk_alloc_at - take as many of the @nb clusters from @offset as are
 * free in a row (QEMU's qcow2_alloc_clusters_at()); *@got says how many.
 */
int qcow2_mk_alloc_at(struct qcow2_mk *mk, uint64_t offset, uint64_t nb, uint64_t *got);

/*
 * qcow2_mk_refcount_area - QEMU's qcow2_refcount_area(): a new refcount
 * table, and the blocks it needs, at @start, covering the file and
 * @additional clusters more (with half again of headroom unless @exact);
 * @new_offset/@new_buf (ownership taken) is a block to hook at @new_index.
 * The old table is freed.  *@end gets the end of the new structures.
 */
int qcow2_mk_refcount_area(struct qcow2_mk *mk, uint64_t start, uint64_t additional, bool exact,
			   uint64_t new_index, uint64_t new_offset, uint8_t *new_buf,
			   uint64_t *end);

#endif
