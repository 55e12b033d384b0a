// SPDX-License-Identifier: MIT
/*
 * Refcounts on disk for the qcow2 check: reading and fixing them, the
 * COPIED flags, the small allocator the snapshot table rewrite needs, and
 * the overlap checks every repair write passes (check-internal.h).
 *
 * Ordering on disk (ARCHITECTURE.md §4): a rewritten snapshot table is
 * synced before the header points to it, and the old one is freed only
 * after the switch; a new refcount block is synced before its refcount
 * table entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aio-rec.h"
#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "qcow2/check-internal.h"

/* ---- the refcount block cache --------------------------------------------------- */

int qcow2_ck_rc_flush(struct qcow2_ck *ck)
{
	int err;

	if (!ck->rb_dirty)
		return 0;
	err = qcow2_ck_write_checked(ck, CK_META_REFBLOCK, ck->rb_offset, ck->rb,
				     ck->g.cluster_bytes);
	if (err)
		return err;
	ck->rb_dirty = false;
	return 0;
}

void qcow2_ck_rc_drop(struct qcow2_ck *ck)
{
	ck->rb_index = UINT64_MAX;
	ck->rb_dirty = false;
}

/*
 * The refcount block of reftable index @ti into ck->rb.  0 with
 * *@present false when there is none (every refcount in its range is 0).
 */
static int rb_load(struct qcow2_ck *ck, uint64_t ti, bool *present)
{
	uint64_t offset;
	int err;

	*present = false;
	if (ti >= ck->reftable_entries)
		return 0;
	offset = ck->reftable[ti] & QCOW2_REFT_OFFSET_MASK;
	if (!offset)
		return 0;
	if (!is_aligned_u64(offset, ck->g.cluster_bytes)) {
		if (!ck->corruption_reported)
			qcow2_ck_msg(ck,
				     "qcow2: Image is corrupt: Refblock offset %#" PRIx64
				     " unaligned "
				     "(reftable index: %#" PRIx64 "); further non-fatal corruption "
				     "events will be suppressed",
				     offset, ti);
		ck->corruption_reported = true;
		return -EIO;
	}
	*present = true;
	if (ck->rb_index == ti)
		return 0;
	err = qcow2_ck_rc_flush(ck);
	if (!err)
		err = qcow2_ck_read(ck, offset, ck->rb, ck->g.cluster_bytes);
	if (err) {
		qcow2_ck_rc_drop(ck);
		return err;
	}
	ck->rb_index = ti;
	ck->rb_offset = offset;
	return 0;
}

int qcow2_ck_rc_get(struct qcow2_ck *ck, uint64_t cluster, uint64_t *refcount)
{
	bool present;
	int err = rb_load(ck, cluster >> ck->g.refblock_bits, &present);

	*refcount = 0;
	if (err || !present)
		return err;
	*refcount = qcow2_refcount_get(ck->rb, ck->g.refcount_order,
				       cluster & (ck->g.refblock_entries - 1));
	return 0;
}

/*
 * Set the on-disk refcount of @cluster (its refcount block must exist).
 * A cluster freed here is punched out of the file, as QEMU discards it.
 */
static int rc_set(struct qcow2_ck *ck, uint64_t cluster, uint64_t refcount)
{
	bool present;
	int err = rb_load(ck, cluster >> ck->g.refblock_bits, &present);

	if (!err && !present)
		err = -EIO;
	if (!err)
		err = qcow2_refcount_set(ck->rb, ck->g.refcount_order,
					 cluster & (ck->g.refblock_entries - 1), refcount);
	if (err)
		return err;
	ck->rb_dirty = true;
	if (refcount == 0) {
		uint64_t off = cluster << ck->g.cluster_bits, rec_id = 0;
		int perr = 0;

		/* the crash harness sees the punch as a zeroing (lib/aio-rec.h) */
		if (aio_rec_on())
			rec_id = aio_rec_file_issue(ck->file, AIO_REC_ZERO, off,
						    ck->g.cluster_bytes, NULL, 0);
		if (fallocate(ck->file->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)ck->g.cluster_bytes) < 0)
			perr = neg_errno();
		aio_rec_file_done(rec_id, perr);
	}
	return 0;
}

/* ---- compare ---------------------------------------------------------------------- */

void qcow2_ck_compare(struct qcow2_ck *ck, unsigned fix, bool *rebuild, uint64_t *highest)
{
	struct qcow2_check_result *res = ck->res;

	*highest = 0;
	for (uint64_t i = 0; i < ck->imrt_clusters; i++) {
		uint64_t *num_fixed = NULL;
		uint64_t r1, r2;
		int err = qcow2_ck_rc_get(ck, i, &r1);

		if (err) {
			qcow2_ck_msg(ck, "Can't get refcount for cluster %" PRIu64 ": %s", i,
				     err_str(err));
			res->check_errors++;
			continue;
		}
		r2 = qcow2_ck_imrt_get(ck, i);
		if (r1 || r2)
			*highest = i;
		if (r1 == r2)
			continue;
		if (r1 == 0)
			*rebuild = true; /* the structure itself cannot be trusted */
		else if (r1 > r2 && (fix & QCOW2_CHECK_FIX_LEAKS))
			num_fixed = &res->leaks_fixed;
		else if (r1 < r2 && (fix & QCOW2_CHECK_FIX_ERRORS))
			num_fixed = &res->corruptions_fixed;
		qcow2_ck_msg(ck, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
			     num_fixed ? "Repairing"
			     : r1 < r2 ? "ERROR"
				       : "Leaked",
			     i, r1, r2);
		if (num_fixed && rc_set(ck, i, r2) == 0) {
			(*num_fixed)++;
			continue;
		}
		if (r1 < r2)
			res->corruptions++;
		else
			res->leaks++;
	}
}

/* ---- COPIED flags ------------------------------------------------------------------- */

static int copied_l1(struct qcow2_ck *ck, uint64_t i, bool repair)
{
	uint64_t entry = ck->l1[i], fixed, refcount;
	uint8_t be[8];
	int err;

	if (qcow2_ck_rc_get(ck, (entry & QCOW2_L1E_OFFSET_MASK) >> ck->g.cluster_bits, &refcount))
		return 1; /* reported by the compare already */
	if ((refcount == 1) == !!(entry & QCOW2_OFLAG_COPIED))
		return 0;
	ck->res->corruptions++;
	qcow2_ck_msg(ck,
		     "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64
		     " refcount=%" PRIu64,
		     repair ? "Repairing" : "ERROR", i, entry, refcount);
	if (!repair)
		return 0;
	fixed = refcount == 1 ? entry | QCOW2_OFLAG_COPIED : entry & ~QCOW2_OFLAG_COPIED;
	qcow2_put_be64(be, fixed);
	err = qcow2_ck_write_checked(ck, CK_META_ACTIVE_L1, ck->hdr.l1_table_offset + i * 8, be, 8);
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err) {
		ck->res->check_errors++;
		return err;
	}
	ck->l1[i] = fixed;
	ck->res->corruptions--;
	ck->res->corruptions_fixed++;
	return 0;
}

/* The COPIED flags of one active L2 table; returns the entries changed. */
static uint64_t copied_l2_entries(struct qcow2_ck *ck, bool repair)
{
	uint64_t dirty = 0;

	for (uint64_t j = 0; j < ck->g.l2_entries; j++) {
		uint8_t *p = ck->buf + j * ck->g.l2_entry_bytes;
		uint64_t entry = qcow2_get_be64(p), refcount = 1;
		struct qcow2_l2_entry d;

		(void)qcow2_l2_entry_decode(&ck->g, entry, 0, &d, NULL);
		if (d.type != QCOW2_CLUSTER_NORMAL && d.type != QCOW2_CLUSTER_ZERO_ALLOC)
			continue;
		if (!ck->g.data_file &&
		    qcow2_ck_rc_get(ck, (entry & QCOW2_L2E_OFFSET_MASK) >> ck->g.cluster_bits,
				    &refcount))
			continue;
		if ((refcount == 1) == !!(entry & QCOW2_OFLAG_COPIED))
			continue;
		ck->res->corruptions++;
		qcow2_ck_msg(ck,
			     "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
			     repair ? "Repairing" : "ERROR", entry, refcount);
		if (!repair)
			continue;
		qcow2_put_be64(p, refcount == 1 ? entry | QCOW2_OFLAG_COPIED
						: entry & ~QCOW2_OFLAG_COPIED);
		dirty++;
	}
	return dirty;
}

static int copied_l2(struct qcow2_ck *ck, uint64_t l2_offset, bool repair)
{
	uint64_t dirty;
	int err = qcow2_ck_read(ck, l2_offset, ck->buf, ck->g.cluster_bytes);

	if (err) {
		qcow2_ck_msg(ck, "ERROR: Could not read L2 table: %s", err_str(err));
		ck->res->check_errors++;
		return err;
	}
	dirty = copied_l2_entries(ck, repair);
	if (!dirty)
		return 0;
	if (qcow2_ck_overlap(ck, CK_META_ACTIVE_L2, l2_offset, ck->g.cluster_bytes)) {
		qcow2_ck_msg(ck,
			     "ERROR: Could not write L2 table; metadata overlap check failed: %s",
			     err_str(-EIO));
		ck->res->check_errors++;
		return -EIO;
	}
	err = qcow2_ck_write(ck, l2_offset, ck->buf, ck->g.cluster_bytes);
	if (err) {
		qcow2_ck_msg(ck, "ERROR: Could not write L2 table: %s", err_str(err));
		ck->res->check_errors++;
		return err;
	}
	ck->res->corruptions -= dirty;
	ck->res->corruptions_fixed += dirty;
	return 0;
}

int qcow2_ck_check_copied(struct qcow2_ck *ck, unsigned fix)
{
	const struct qcow2_check_result *r = ck->res;
	bool repair;
	int err;

	/*
	 * -r leaks fixes COPIED only when the refcounts it relies on are
	 * known to be right: nothing else is left wrong.
	 */
	if (fix & QCOW2_CHECK_FIX_ERRORS)
		repair = true;
	else if (fix & QCOW2_CHECK_FIX_LEAKS)
		repair = !r->check_errors && !r->corruptions && !r->leaks;
	else
		repair = false;
	for (uint64_t i = 0; i < ck->hdr.l1_size; i++) {
		uint64_t l2_offset = ck->l1[i] & QCOW2_L1E_OFFSET_MASK;

		if (!l2_offset)
			continue;
		err = copied_l1(ck, i, repair);
		if (err > 0)
			continue; /* no refcount for the table: QEMU skips it */
		if (!err)
			err = copied_l2(ck, l2_offset, repair);
		if (err)
			return err;
	}
	return 0;
}

/* ---- allocating clusters on disk (for the snapshot table) ----------------------- */

/*
 * A refcount block for reftable index @ti, which has none: every cluster
 * of its range is free on disk, so the block describes itself, placed at
 * the first cluster of the range nothing references.  Synced before its
 * table entry, which is synced too.  The table does not grow here.
 */
static int new_refblock(struct qcow2_ck *ck, uint64_t ti)
{
	uint64_t c = ti << ck->g.refblock_bits, end = c + ck->g.refblock_entries, off;
	uint8_t be[8];
	int err;

	while (c < end && qcow2_ck_imrt_get(ck, c))
		c++;
	if (c == end)
		return -ENOSPC; /* the IMRT and the disk disagree: do not guess */
	off = c << ck->g.cluster_bits;
	err = qcow2_ck_rc_flush(ck);
	if (err)
		return err;
	qcow2_ck_rc_drop(ck);
	memset(ck->rb, 0, ck->g.cluster_bytes);
	(void)qcow2_refcount_set(ck->rb, ck->g.refcount_order, c & (ck->g.refblock_entries - 1), 1);
	err = qcow2_ck_write_checked(ck, 0, off, ck->rb, ck->g.cluster_bytes);
	if (!err)
		err = qcow2_ck_sync(ck);
	qcow2_put_be64(be, off);
	if (!err)
		err = qcow2_ck_write_checked(ck, CK_META_REFTABLE, ck->reftable_offset + ti * 8, be,
					     8);
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err)
		return err;
	ck->reftable[ti] = off;
	ck->sorted_valid = false;
	if (c >= ck->imrt_clusters)
		err = qcow2_ck_imrt_resize(ck, c + 1);
	if (!err)
		qcow2_ck_imrt_set(ck, c, 1);
	return err;
}

/* Make sure [@start, @start + @n) has refcount blocks; *@added if one was made. */
static int ensure_refblocks(struct qcow2_ck *ck, uint64_t start, uint64_t n, bool *added)
{
	uint64_t first = start >> ck->g.refblock_bits,
		 last = (start + n - 1) >> ck->g.refblock_bits;

	*added = false;
	for (uint64_t ti = first; ti <= last; ti++) {
		if (ti >= ck->reftable_entries)
			return -EFBIG; /* the refcount table must grow: the caller rebuilds */
		if (ck->reftable[ti] & QCOW2_REFT_OFFSET_MASK)
			continue;
		*added = true;
		return new_refblock(ck, ti);
	}
	return 0;
}

/* First fit of @n clusters free both on disk and in the IMRT. */
static int find_free(struct qcow2_ck *ck, uint64_t n, uint64_t *start)
{
	uint64_t run = 0;
	int err;

	for (uint64_t c = *start; run < n; c++) {
		uint64_t rc;

		if (c >= QCOW2_CHECK_MAX_CLUSTERS)
			return -EFBIG;
		err = qcow2_ck_rc_get(ck, c, &rc);
		if (err)
			return err;
		if (rc || qcow2_ck_imrt_get(ck, c)) {
			run = 0;
			*start = c + 1;
		} else {
			run++;
		}
	}
	return 0;
}

/* Drop one reference to every cluster [@off, @off + @len) touches. */
static int free_clusters(struct qcow2_ck *ck, uint64_t off, uint64_t len)
{
	uint64_t first = off >> ck->g.cluster_bits, last;
	int err;

	if (!len)
		return 0;
	last = (off + len - 1) >> ck->g.cluster_bits;
	for (uint64_t c = first; c <= last; c++) {
		uint64_t rc, irc = qcow2_ck_imrt_get(ck, c);

		err = qcow2_ck_rc_get(ck, c, &rc);
		if (!err && rc)
			err = rc_set(ck, c, rc - 1);
		if (err)
			return err;
		if (irc)
			qcow2_ck_imrt_set(ck, c, irc - 1);
	}
	return 0;
}

/*
 * The refcount table is too small to describe [@start, @start + @n):
 * write a larger refcount structure from the IMRT, with those clusters in
 * use, switch to it, and free the old one.  (QEMU grows the table in
 * place; either way the image gains a larger table.)
 */
static int grow_by_rebuild(struct qcow2_ck *ck, uint64_t start, uint64_t n)
{
	uint64_t old_offset = ck->reftable_offset, old_nb = ck->reftable_entries;
	uint64_t *old = malloc(MAX(old_nb, (uint64_t)1) * 8);
	int err = 0;

	if (!old)
		return -ENOMEM;
	memcpy(old, ck->reftable, old_nb * 8);
	if (start + n > ck->imrt_clusters)
		err = qcow2_ck_imrt_resize(ck, start + n);
	for (uint64_t c = start; !err && c < start + n; c++)
		qcow2_ck_imrt_set(ck, c, 1);
	if (!err)
		err = qcow2_ck_rebuild(ck);
	if (!err)
		err = free_clusters(ck, old_offset, old_nb * 8);
	for (uint64_t i = 0; !err && i < old_nb; i++) {
		uint64_t off = old[i] & QCOW2_REFT_OFFSET_MASK;

		if (off && is_aligned_u64(off, ck->g.cluster_bytes))
			err = free_clusters(ck, off, ck->g.cluster_bytes);
	}
	free(old);
	return err;
}

static int alloc_clusters(struct qcow2_ck *ck, uint64_t n, uint64_t *offset)
{
	uint64_t start = 0;
	bool added = true;
	int err;

	while (added) {
		err = find_free(ck, n, &start);
		if (!err)
			err = ensure_refblocks(ck, start, n, &added);
		if (err == -EFBIG) {
			err = grow_by_rebuild(ck, start, n);
			*offset = start << ck->g.cluster_bits;
			return err;
		}
		if (err)
			return err;
	}
	if (start + n > ck->imrt_clusters) {
		err = qcow2_ck_imrt_resize(ck, start + n);
		if (err)
			return err;
	}
	for (uint64_t c = start; c < start + n; c++) {
		err = rc_set(ck, c, 1);
		if (err)
			return err;
		qcow2_ck_imrt_set(ck, c, 1);
	}
	*offset = start << ck->g.cluster_bits;
	return 0;
}

static int write_snapshot_table(struct qcow2_ck *ck, uint64_t offset, uint64_t bytes)
{
	uint8_t *buf = calloc(1, MAX(bytes, (uint64_t)1));
	uint8_t hdr[12];
	int err;

	if (!buf)
		return -ENOMEM;
	err = qcow2_snapshot_table_serialise(ck->sns, ck->nb_sns, buf, bytes);
	if (!err && bytes)
		err = qcow2_ck_write_checked(ck, 0, offset, buf, bytes);
	free(buf);
	if (!err)
		err = qcow2_ck_rc_flush(ck);
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err)
		return err;
	qcow2_put_be32(hdr, ck->nb_sns);
	qcow2_put_be64(hdr + 4, offset);
	err = qcow2_ck_write(ck, QCOW2_HDR_OFF(nb_snapshots), hdr, sizeof(hdr));
	return err ? err : qcow2_ck_sync(ck);
}

/*
 * QEMU's qcow2_write_snapshots(): the table (each entry with at least the
 * 24 known bytes of extra data) into newly allocated clusters, synced,
 * then the header's nb_snapshots and snapshots_offset in one synced
 * write, then the old table is freed.
 */
int qcow2_ck_write_snapshots(struct qcow2_ck *ck)
{
	uint64_t bytes = qcow2_snapshot_table_bytes(ck->sns, ck->nb_sns), offset = 0;
	int err = 0;

	if (bytes > QCOW2_MAX_SNAPSHOTS_BYTES)
		return -EFBIG;
	if (bytes)
		err = alloc_clusters(ck, qcow2_ck_clusters(ck, bytes), &offset);
	if (!err)
		err = write_snapshot_table(ck, offset, bytes);
	if (err) {
		if (offset)
			(void)free_clusters(ck, offset, bytes);
		(void)qcow2_ck_rc_flush(ck);
		return err;
	}
	err = free_clusters(ck, ck->sns_offset, ck->sns_bytes);
	ck->sns_offset = offset;
	ck->sns_bytes = bytes;
	ck->hdr.snapshots_offset = offset;
	ck->hdr.nb_snapshots = ck->nb_sns;
	ck->sorted_valid = false;
	if (!err)
		err = qcow2_ck_rc_flush(ck);
	return err ? err : qcow2_ck_sync(ck);
}

/* ---- overlap checks ------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The non-zero @mask'ed values of @v[0, @n), sorted. */
static int sorted_offsets(const uint64_t *v, uint64_t n, uint64_t mask, uint64_t **out,
			  uint64_t *nb)
{
	uint64_t *s = malloc(MAX(n, (uint64_t)1) * sizeof(*s)), k = 0;

	if (!s)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		if (v[i] & mask)
			s[k++] = v[i] & mask;
	}
	qsort(s, k, sizeof(*s), cmp_u64);
	free(*out);
	*out = s;
	*nb = k;
	return 0;
}

/* Does one cluster at an offset in the sorted @v lie in [@lo, @hi)? */
static bool sorted_hit(const struct qcow2_ck *ck, const uint64_t *v, uint64_t n, uint64_t lo,
		       uint64_t hi)
{
	uint64_t a = 0, b = n;

	/* first table ending after @lo */
	while (a < b) {
		uint64_t m = a + (b - a) / 2;

		if (v[m] + ck->g.cluster_bytes <= lo)
			a = m + 1;
		else
			b = m;
	}
	return a < n && v[a] < hi;
}

static bool region_hit(uint64_t lo, uint64_t len, uint64_t off, uint64_t bytes)
{
	return ranges_overlap(lo, len, off, bytes);
}

static const char *overlap_tables(struct qcow2_ck *ck, unsigned chk, uint64_t lo, uint64_t len)
{
	if ((chk & CK_META_HEADER) && lo < ck->g.cluster_bytes)
		return "qcow2_header";
	if ((chk & CK_META_ACTIVE_L1) &&
	    region_hit(lo, len, ck->hdr.l1_table_offset, (uint64_t)ck->hdr.l1_size * 8))
		return "active L1 table";
	if ((chk & CK_META_REFTABLE) &&
	    region_hit(lo, len, ck->reftable_offset, ck->reftable_entries * 8))
		return "refcount table";
	if ((chk & CK_META_SNAPSHOT_TABLE) && region_hit(lo, len, ck->sns_offset, ck->sns_bytes))
		return "snapshot table";
	for (uint32_t i = 0; (chk & CK_META_INACTIVE_L1) && i < ck->nb_sns; i++) {
		if (region_hit(lo, len, ck->sns[i].l1_table_offset,
			       (uint64_t)ck->sns[i].l1_size * 8))
			return "inactive L1 table";
	}
	if ((chk & CK_META_BITMAP_DIR) && ck->nb_bms &&
	    region_hit(lo, len, ck->hdr.bitmaps.dir_offset, ck->hdr.bitmaps.dir_bytes))
		return "bitmap directory";
	return NULL;
}

int qcow2_ck_overlap_prepare(struct qcow2_ck *ck)
{
	if (ck->sorted_valid)
		return 0;
	if (sorted_offsets(ck->l1, ck->hdr.l1_size, QCOW2_L1E_OFFSET_MASK, &ck->l2_sorted,
			   &ck->nb_l2_sorted) ||
	    sorted_offsets(ck->reftable, ck->reftable_entries, QCOW2_REFT_OFFSET_MASK,
			   &ck->rb_sorted, &ck->nb_rb_sorted))
		return -ENOMEM;
	ck->sorted_valid = true;
	return 0;
}

const char *qcow2_ck_overlap(struct qcow2_ck *ck, unsigned ignore, uint64_t off, uint64_t len)
{
	unsigned chk = ~ignore;
	uint64_t lo = ALIGN_DOWN(off, ck->g.cluster_bytes), hi, end;
	const char *what;

	if (!len)
		return NULL;
	if (ck_add(off, len, &end) || ck_align_up_u64(end, ck->g.cluster_bytes, &hi))
		return "the end of the address space";
	what = overlap_tables(ck, chk, lo, hi - lo);
	if (what)
		return what;
	if (qcow2_ck_overlap_prepare(ck))
		return "(out of memory)";
	if ((chk & CK_META_ACTIVE_L2) && sorted_hit(ck, ck->l2_sorted, ck->nb_l2_sorted, lo, hi))
		return "active L2 table";
	if ((chk & CK_META_REFBLOCK) && sorted_hit(ck, ck->rb_sorted, ck->nb_rb_sorted, lo, hi))
		return "refcount block";
	return NULL;
}

bool qcow2_ck_refblock_at(const struct qcow2_ck *ck, uint64_t cluster)
{
	uint64_t lo = cluster << ck->g.cluster_bits;

	return ck->sorted_valid &&
	       sorted_hit(ck, ck->rb_sorted, ck->nb_rb_sorted, lo, lo + ck->g.cluster_bytes);
}

int qcow2_ck_write_checked(struct qcow2_ck *ck, unsigned ignore, uint64_t off, const void *buf,
			   uint64_t len)
{
	const char *what = qcow2_ck_overlap(ck, ignore, off, len);

	if (what) {
		qcow2_ck_msg(ck,
			     "ERROR: refusing to write 0x%" PRIx64 "+0x%" PRIx64
			     ": it overlaps the %s",
			     off, len, what);
		return -EIO;
	}
	return qcow2_ck_write(ck, off, buf, len);
}
