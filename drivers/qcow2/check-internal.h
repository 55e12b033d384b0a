/* SPDX-License-Identifier: MIT */
/*
 * Shared by the qcow2 check files; not an interface for anything else.
 *
 *   check.c         entry points, loading the image, the snapshot table,
 *                   the order of the passes, the header bits
 *   check-refs.c    the in-memory refcount table (IMRT) and the walk that
 *                   fills it: L1/L2 trees, snapshots, bitmaps, refblocks
 *   check-repair.c  refcounts on disk: compare with the IMRT and fix,
 *                   COPIED flags, allocating and rewriting the snapshot
 *                   table, overlap checks
 *   check-rebuild.c a new refcount structure written from the IMRT
 *
 * The passes follow QEMU's qcow2_co_check_locked() step by step, so that
 * the counters, the messages and the repairs are the ones qemu-img check
 * reports and makes.
 */
#ifndef QTAP_QCOW2_CHECK_INTERNAL_H
#define QTAP_QCOW2_CHECK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2/bitmap-fmt.h"
#include "qcow2/check.h"
#include "qcow2/format.h"
#include "qcow2/snapshot-fmt.h"

struct aio_file;

/* Walk flags (QEMU's CHECK_FRAG_INFO): count allocation figures. */
#define CK_FRAG_INFO (1u << 0)

/* Metadata a repair write must not touch (QEMU's "cached" overlap set). */
enum ck_meta {
	CK_META_HEADER = 1u << 0,
	CK_META_ACTIVE_L1 = 1u << 1,
	CK_META_ACTIVE_L2 = 1u << 2,
	CK_META_REFTABLE = 1u << 3,
	CK_META_REFBLOCK = 1u << 4,
	CK_META_SNAPSHOT_TABLE = 1u << 5,
	CK_META_INACTIVE_L1 = 1u << 6,
	CK_META_BITMAP_DIR = 1u << 7,
};

struct qcow2_ck {
	struct aio_file *file;
	const char *path;
	unsigned fix; /* QCOW2_CHECK_FIX_* */
	qcow2_check_report_fn *report;
	void *opaque;

	struct qcow2_header hdr;
	struct qcow2_geom g;
	uint64_t file_bytes; /* the file's length now; repairs may grow it */
	uint64_t disk_bytes; /* virtual size as QEMU rounds it (512-byte units) */
	uint64_t *l1;	     /* active L1, host-endian, hdr.l1_size entries */
	uint64_t *reftable;  /* host-endian */
	uint64_t reftable_entries;
	uint64_t reftable_offset;

	/* snapshot table as read (and repaired) by the check */
	struct qcow2_snapshot *sns;
	uint32_t nb_sns;
	uint64_t sns_offset;
	uint64_t sns_bytes;

	/* bitmap directory, when autoclear bit 0 vouches for it */
	struct qcow2_bitmap *bms;
	uint32_t nb_bms;

	/* the in-memory refcount table, in the image's refcount width */
	uint8_t *imrt;
	uint64_t imrt_clusters;
	uint64_t imrt_alloc_bytes; /* whole clusters, so slices are refblocks */

	/* one on-disk refcount block, cached */
	uint8_t *rb;
	uint64_t rb_index; /* reftable index held, UINT64_MAX: none */
	uint64_t rb_offset;
	bool rb_dirty;
	bool corruption_reported; /* QEMU reports an unusable refblock once */

	/* sorted offsets of active L2 tables and refcount blocks, for qcow2_ck_overlap() */
	uint64_t *l2_sorted;
	uint64_t nb_l2_sorted;
	uint64_t *rb_sorted;
	uint64_t nb_rb_sorted;
	bool sorted_valid;

	uint8_t *buf; /* one cluster of scratch for tables */
	struct qcow2_check_result *res;
};

/* ---- check.c ---------------------------------------------------------------------- */

/* qcow2_ck_msg - one finding, printf-style, to the report callback. */
void qcow2_ck_msg(struct qcow2_ck *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Raw I/O on the image; writes refresh ck->file_bytes. */
int qcow2_ck_read(struct qcow2_ck *ck, uint64_t off, void *buf, uint64_t len);
int qcow2_ck_write(struct qcow2_ck *ck, uint64_t off, const void *buf, uint64_t len);
int qcow2_ck_sync(struct qcow2_ck *ck);

/* size_to_clusters: bytes rounded up to whole clusters. */
static inline uint64_t qcow2_ck_clusters(const struct qcow2_ck *ck, uint64_t bytes)
{
	return (bytes >> ck->g.cluster_bits) + ((bytes & (ck->g.cluster_bytes - 1)) != 0);
}

/* ---- check-refs.c ----------------------------------------------------------------- */

/*
 * IMRT access: _get reads 0 past the end, _set stays below imrt_clusters,
 * _resize grows or shrinks the table (new entries zero).  0 or -EFBIG/-ENOMEM.
 */
uint64_t qcow2_ck_imrt_get(const struct qcow2_ck *ck, uint64_t cluster);
void qcow2_ck_imrt_set(struct qcow2_ck *ck, uint64_t cluster, uint64_t refcount);
int qcow2_ck_imrt_resize(struct qcow2_ck *ck, uint64_t clusters);

/*
 * qcow2_ck_calculate - fill the IMRT from every structure of the image, as
 * QEMU's calculate_refcounts(); @fix is the repair mode for this pass.
 * *@rebuild is set when the refcount structure must be rebuilt.
 * Returns 0 or -errno (the check cannot go on).
 */
int qcow2_ck_calculate(struct qcow2_ck *ck, unsigned fix, bool *rebuild);

/* ---- check-repair.c --------------------------------------------------------------- */

/* The refcount on disk of host cluster @cluster (0 past the structure). */
int qcow2_ck_rc_get(struct qcow2_ck *ck, uint64_t cluster, uint64_t *refcount);
/* Write back the cached refcount block, if dirty. */
int qcow2_ck_rc_flush(struct qcow2_ck *ck);
void qcow2_ck_rc_drop(struct qcow2_ck *ck);

/*
 * qcow2_ck_compare - compare the IMRT with the refcounts on disk over every
 * cluster, repairing by @fix (QEMU's compare_refcounts).  Sets
 * *@highest to the last cluster in use either way.
 */
void qcow2_ck_compare(struct qcow2_ck *ck, unsigned fix, bool *rebuild, uint64_t *highest);

/* qcow2_ck_check_copied - COPIED flags of the active L1 and L2 tables. */
int qcow2_ck_check_copied(struct qcow2_ck *ck, unsigned fix);

/* qcow2_ck_write_snapshots - rewrite the snapshot table into new clusters. */
int qcow2_ck_write_snapshots(struct qcow2_ck *ck);

/*
 * qcow2_ck_overlap - whether [@off, @off + @len) touches metadata of the kinds
 * not in @ignore (CK_META_*); the name of the first one found, or NULL.
 */
const char *qcow2_ck_overlap(struct qcow2_ck *ck, unsigned ignore, uint64_t off, uint64_t len);

/*
 * qcow2_ck_overlap_prepare - index the active L2 tables and the refcount blocks
 * for qcow2_ck_overlap() and qcow2_ck_refblock_at(); 0 or -ENOMEM.
 */
int qcow2_ck_overlap_prepare(struct qcow2_ck *ck);

/* qcow2_ck_refblock_at - whether a refcount block of the table overlaps @cluster. */
bool qcow2_ck_refblock_at(const struct qcow2_ck *ck, uint64_t cluster);

/* qcow2_ck_write_checked - qcow2_ck_write() after qcow2_ck_overlap() said it may. */
int qcow2_ck_write_checked(struct qcow2_ck *ck, unsigned ignore, uint64_t off, const void *buf,
			   uint64_t len);

/* ---- check-rebuild.c -------------------------------------------------------------- */

/* qcow2_ck_rebuild - write a new refcount structure from the IMRT and switch to it. */
int qcow2_ck_rebuild(struct qcow2_ck *ck);

#endif
