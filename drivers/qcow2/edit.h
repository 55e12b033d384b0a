/* SPDX-License-Identifier: MIT */
/*
 * Editing the tables of a qcow2 image that nothing serves, for the tools
 * that change an image in place (resize.c, amend.c, and the snapshot and
 * bitmap editors, which build on it): the image opened and locked as QEMU
 * locks it; when writable, a dirty lazy-refcounts image is repaired first,
 * as QEMU's open does, a corrupt one is refused, and its refcounts
 * (refcount.h) are loaded; on request its active L1 table in memory and a
 * buffer for one L2 table at a time.
 *
 * Ordering (ARCHITECTURE.md §4): references are dropped with
 * qcow2_ed_drop_entry() and friends as deferred frees; a changed L2 table
 * is written and synced by qcow2_ed_l2_store(), a changed L1 table by
 * qcow2_ed_release(), which only then lowers the refcounts.
 *
 * Errors are 0 or -errno, logged here with the path and the offset.
 */
#ifndef QTAP_QCOW2_EDIT_H
#define QTAP_QCOW2_EDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2/format.h"

struct aio_file;
struct qcow2_rc;

struct qcow2_ed {
	struct aio_file *file;
	const char *path;
	struct qcow2_header hdr;
	struct qcow2_geom geom;
	struct qcow2_rc *rc;
	uint64_t file_bytes;
	uint64_t *l1;  /* hdr.l1_size host-endian entries */
	uint8_t *l2;   /* one L2 table */
	bool l1_dirty; /* entries changed: write the table before freeing */
	bool bitmaps;  /* the image has persistent bitmaps: bitmap-edit resizes them */
	bool readonly; /* opened QCOW2_ED_RDONLY: no refcounts, nothing written */
};

/* How qcow2_ed_open_how() opens. */
enum {
	QCOW2_ED_RDONLY = 1 << 0, /* read only: no repair, no refcounts */
	QCOW2_ED_SHARED = 1 << 1, /* with RDONLY: a shared lock (tap-img -U) */
	QCOW2_ED_TABLES = 1 << 2, /* the active L1 table and the L2 buffer */
};

/* qcow2_ed_open_how - open @path (borrowed) as @how says into the zeroed *@e. */
int qcow2_ed_open_how(struct qcow2_ed *e, const char *path, unsigned how);

/* qcow2_ed_open - open @path (borrowed) read-write with its tables into the zeroed *@e. */
int qcow2_ed_open(struct qcow2_ed *e, const char *path);

/* qcow2_ed_read_l1 - the L1 table of @n entries at @off, host-endian, in a new array. */
int qcow2_ed_read_l1(const struct qcow2_ed *e, uint64_t off, uint64_t n, uint64_t **out);

/* qcow2_ed_close - free everything; nothing is written.  A zeroed *@e is fine. */
void qcow2_ed_close(struct qcow2_ed *e);

/* qcow2_ed_l2_word - word @word (1: the subcluster bitmap) of entry @j of e->l2. */
uint64_t qcow2_ed_l2_word(const struct qcow2_ed *e, uint64_t j, unsigned word);

/* qcow2_ed_l2_read - the L2 table of active L1 entry @i into e->l2; *@l2_off 0: none. */
int qcow2_ed_l2_read(struct qcow2_ed *e, uint64_t i, uint64_t *l2_off, bool *copied);

/*
 * qcow2_ed_drop_entry - queue the drop of one reference to the host clusters
 * of entry @j of e->l2 (applied by qcow2_ed_release()).
 */
int qcow2_ed_drop_entry(struct qcow2_ed *e, uint64_t j);

/*
 * qcow2_ed_l2_store - write e->l2 as the table of active L1 entry @i, found
 * at @l2_off: in place when the active L1 owns it (@copied), else into a
 * new cluster whose refcount is durable first (the old one's reference
 * queued for dropping; the L1 entry changed in memory).  Synced.
 */
int qcow2_ed_l2_store(struct qcow2_ed *e, uint64_t i, uint64_t l2_off, bool copied);

/* qcow2_ed_l1_store - the active L1 table in place, synced. */
int qcow2_ed_l1_store(struct qcow2_ed *e);

/*
 * qcow2_ed_release - the L1 table written when it changed, then the queued
 * reference drops applied and the refcounts written back.
 */
int qcow2_ed_release(struct qcow2_ed *e);

#endif
