/* SPDX-License-Identifier: MIT */
/*
 * Internal snapshots of a qcow2 image that nothing serves, for tap-img
 * snapshot (qemu-img snapshot's -c, -a, -d, -l), and the emptying of its
 * active state and the growth of a smaller base that tap-img commit does.
 * Tools only.
 *
 * The image is opened and locked as QEMU locks it (a dirty lazy-refcounts
 * image is repaired first, as QEMU's writable open does); the snapshot
 * table and the active L1 table are read whole.  Each operation keeps
 * ARCHITECTURE.md §4's order, as QEMU's qcow2-snapshot.c does:
 *
 *   create  the active L1 is copied to new clusters; every L2 table and
 *           data cluster the active tree reaches gets one more reference;
 *           those refcounts and the copy are made durable, then the
 *           active entries lose COPIED (L2 tables, then the L1, synced);
 *           a new snapshot table is written and synced before the header
 *           (offset 60: count and offset, one synced write) points to it;
 *           the old table is freed after.
 *   apply   the snapshot's tree gets one more reference (durable), its L1
 *           becomes the active one (written in place, synced; or, when it
 *           is larger, at a new place the header is switched to), then
 *           the old active tree loses its references and COPIED is
 *           recomputed over the new active tree.
 *   delete  the table without the entry goes in first (header switch),
 *           then the snapshot's tree and L1 lose their references and
 *           COPIED is recomputed.
 *
 * A crash at any point leaves the image as before or after, with at worst
 * leaked clusters or, between the refcount and the COPIED updates, entries
 * whose COPIED flag qemu-img check -r all recomputes (QEMU has the same
 * window).
 *
 * Errors are 0 or -errno, logged with the path; -ENOENT when no snapshot
 * matches (not logged: the caller words it as qemu-img does).
 */
#ifndef QTAP_QCOW2_SNAPSHOT_EDIT_H
#define QTAP_QCOW2_SNAPSHOT_EDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2/snapshot-fmt.h"

struct qcow2_sne;

/*
 * qcow2_sne_open - open @path to edit its snapshots (@readonly: only to
 * list them; with @shared the lock shares writing, as qemu-img -U).
 * 0 and *@out, or -errno (logged).
 */
int qcow2_sne_open(const char *path, bool readonly, bool shared, struct qcow2_sne **out);

/* qcow2_sne_close - close; NULL is a no-op. */
void qcow2_sne_close(struct qcow2_sne *e);

/* The snapshots as the table holds them, in order; valid until the next change. */
unsigned qcow2_sne_count(const struct qcow2_sne *e);
const struct qcow2_snapshot *qcow2_sne_get(const struct qcow2_sne *e, unsigned i);

/*
 * qcow2_sne_create - a snapshot of the active state named @name, with the
 * next free numeric id, dated @date_sec/@date_nsec, no VM state, icount 0
 * (what qemu-img snapshot -c records).  -EFBIG past 65536 snapshots,
 * -ENOTSUP with an external data file, -ERANGE when a refcount would pass
 * its maximum.
 */
int qcow2_sne_create(struct qcow2_sne *e, const char *name, uint32_t date_sec, uint32_t date_nsec);

/*
 * qcow2_sne_apply - make the snapshot whose id, or else whose name, is
 * @id_or_name the active state.  -ENOENT when none; -ENOTSUP when its
 * disk size differs from the image's.
 */
int qcow2_sne_apply(struct qcow2_sne *e, const char *id_or_name);

/* qcow2_sne_delete - delete the first snapshot named @name.  -ENOENT when none. */
int qcow2_sne_delete(struct qcow2_sne *e, const char *name);

/*
 * qcow2_sne_empty - unmap every cluster of the active state, as qemu-img
 * commit empties an overlay (QEMU's qcow2_make_empty): the active L1 is
 * zeroed in place (synced), then the L2 tables and data clusters it
 * reached lose its references; snapshots keep theirs.  Reads then go to
 * the backing file.
 */
int qcow2_sne_empty(struct qcow2_sne *e);

/*
 * qcow2_sne_grow - make the disk @size bytes (not smaller), as qemu-img
 * commit grows a smaller base: a larger L1 table, when the size needs
 * one, is written at a new place and the header switched to it (synced),
 * then the size field is updated (synced).  Refused (-ENOTSUP) for a v2
 * image with snapshots and for one with persistent bitmaps.
 */
int qcow2_sne_grow(struct qcow2_sne *e, uint64_t size);

#endif
