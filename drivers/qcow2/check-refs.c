// SPDX-License-Identifier: MIT
/*
 * The in-memory refcount table (IMRT) and the walk that fills it: every
 * structure of the image that references host clusters, with the checks
 * QEMU's calculate_refcounts() makes on the way (check-internal.h).
 *
 * The IMRT stores refcounts in the image's own width and layout, one
 * refcount block after another, so that a rebuild can write its slices
 * straight to disk as refcount blocks.  A reference that would overflow
 * that width is an error, as in QEMU.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "qcow2/check-internal.h"
#include "qcow2/sync-io.h"

/* Bytes of IMRT for @clusters entries, in whole clusters; 0 when too big. */
static uint64_t imrt_bytes(const struct qcow2_ck *ck, uint64_t clusters)
{
	uint64_t bytes;

	if (clusters > (UINT64_C(1) << 48))
		return 0;
	bytes = div_round_up_u64(clusters << ck->g.refcount_order, 8);
	bytes = qcow2_ck_clusters(ck, bytes) << ck->g.cluster_bits;
	return bytes <= QCOW2_CHECK_MAX_TABLE_BYTES ? bytes : 0;
}

int qcow2_ck_imrt_resize(struct qcow2_ck *ck, uint64_t clusters)
{
	uint64_t bytes = imrt_bytes(ck, clusters);
	uint8_t *p;

	if (clusters && !bytes)
		return -EFBIG;
	if (bytes != ck->imrt_alloc_bytes) {
		p = realloc(ck->imrt, MAX(bytes, (uint64_t)1));
		if (!p)
			return -ENOMEM;
		if (bytes > ck->imrt_alloc_bytes)
			memset(p + ck->imrt_alloc_bytes, 0, bytes - ck->imrt_alloc_bytes);
		ck->imrt = p;
		ck->imrt_alloc_bytes = bytes;
	}
	ck->imrt_clusters = clusters;
	return 0;
}

uint64_t qcow2_ck_imrt_get(const struct qcow2_ck *ck, uint64_t cluster)
{
	if (cluster >= ck->imrt_clusters)
		return 0;
	return qcow2_refcount_get(ck->imrt, ck->g.refcount_order, cluster);
}

void qcow2_ck_imrt_set(struct qcow2_ck *ck, uint64_t cluster, uint64_t refcount)
{
	/* callers stay below imrt_clusters and within the width */
	(void)qcow2_refcount_set(ck->imrt, ck->g.refcount_order, cluster, refcount);
}

/*
 * QEMU's qcow2_inc_refcounts_imrt(): one more reference to every cluster
 * [@off, @off + @size) touches.  A range ending a cluster or more past the
 * end of the file is an error (the last cluster may be partly written).
 */
static int ck_inc(struct qcow2_ck *ck, uint64_t off, uint64_t size)
{
	uint64_t end, first, last, max = qcow2_refcount_max(ck->g.refcount_order);
	int err;

	if (size == 0)
		return 0;
	if (ck_add(off, size, &end) ||
	    (end > ck->file_bytes && end - ck->file_bytes >= ck->g.cluster_bytes)) {
		qcow2_ck_msg(
			ck,
			"ERROR: counting reference for region exceeding the end of the file by one "
			"cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64,
			off, size);
		ck->res->corruptions++;
		return 0;
	}
	first = off >> ck->g.cluster_bits;
	last = (end - 1) >> ck->g.cluster_bits;
	for (uint64_t k = first; k <= last; k++) {
		uint64_t rc;

		if (k >= ck->imrt_clusters) {
			err = qcow2_ck_imrt_resize(ck, k + 1);
			if (err) {
				ck->res->check_errors++;
				return err;
			}
		}
		rc = qcow2_ck_imrt_get(ck, k);
		if (rc == max) {
			qcow2_ck_msg(ck, "ERROR: overflow cluster offset=0x%" PRIx64,
				     k << ck->g.cluster_bits);
			qcow2_ck_msg(
				ck,
				"Use qemu-img amend to increase the refcount entry width or "
				"qemu-img convert to create a clean copy if the image cannot be "
				"opened for writing");
			ck->res->corruptions++;
			continue;
		}
		qcow2_ck_imrt_set(ck, k, rc + 1);
	}
	return 0;
}

/* ---- L2 tables -------------------------------------------------------------------- */

struct l2_walk {
	uint64_t l2_offset;
	unsigned flags; /* CK_FRAG_INFO */
	unsigned fix;
	bool active;
	uint64_t next_contiguous; /* fragmentation is counted per table, as QEMU does */
	uint8_t *table;
};

static uint64_t l2_word(const struct qcow2_ck *ck, const struct l2_walk *w, uint64_t i,
			unsigned word)
{
	return qcow2_get_be64(w->table + i * ck->g.l2_entry_bytes + word * 8);
}

/*
 * QEMU's fix_l2_entry_by_zero(): a preallocated zero cluster whose offset
 * is misaligned becomes a plain zero cluster (with extended L2, every
 * allocated subcluster becomes a zero one).  Written at once, synced.
 */
static int fix_l2_entry_by_zero(struct qcow2_ck *ck, struct l2_walk *w, uint64_t i, bool *overlap)
{
	uint8_t *e = w->table + i * ck->g.l2_entry_bytes;
	uint64_t entry_off = w->l2_offset + i * ck->g.l2_entry_bytes;
	unsigned ignore = w->active ? CK_META_ACTIVE_L2 : 0;
	const char *what;
	int err;

	if (ck->g.extended_l2) {
		uint64_t bitmap = l2_word(ck, w, i, 1);

		bitmap = (bitmap | bitmap << 32) & QCOW2_SC_ALL_ZERO;
		qcow2_put_be64(e, 0);
		qcow2_put_be64(e + 8, bitmap);
	} else {
		qcow2_put_be64(e, QCOW2_OFLAG_ZERO);
	}
	what = qcow2_ck_overlap(ck, ignore, entry_off, ck->g.l2_entry_bytes);
	*overlap = what != NULL;
	if (what) {
		qcow2_ck_msg(ck, "ERROR: Overlap check failed");
		ck->res->check_errors++;
		return -EIO;
	}
	err = qcow2_ck_write(ck, entry_off, e, ck->g.l2_entry_bytes);
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err) {
		qcow2_ck_msg(ck, "ERROR: Failed to overwrite L2 table entry: %s", err_str(err));
		ck->res->check_errors++;
		return err;
	}
	ck->res->corruptions--;
	ck->res->corruptions_fixed++;
	return 0;
}

static int l2_compressed(struct qcow2_ck *ck, struct l2_walk *w, uint64_t i, uint64_t entry,
			 const struct qcow2_l2_entry *d)
{
	int err;

	if (entry & QCOW2_OFLAG_COPIED) {
		qcow2_ck_msg(ck,
			     "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
			     "compressed clusters",
			     d->host_offset);
		ck->res->corruptions++;
	}
	if (ck->g.data_file) {
		qcow2_ck_msg(
			ck, "ERROR compressed cluster %" PRIu64 " with data file, entry=0x%" PRIx64,
			i, (uint64_t)(entry & ~QCOW2_OFLAG_COPIED));
		ck->res->corruptions++;
		return 0;
	}
	if (ck->g.extended_l2 && l2_word(ck, w, i, 1)) {
		qcow2_ck_msg(ck,
			     "ERROR compressed cluster %" PRIu64
			     " with non-zero subcluster allocation "
			     "bitmap, entry=0x%" PRIx64,
			     i, (uint64_t)(entry & ~QCOW2_OFLAG_COPIED));
		ck->res->corruptions++;
		return 0;
	}
	err = ck_inc(ck, d->host_offset, d->compressed_bytes);
	if (err)
		return err;
	if (w->flags & CK_FRAG_INFO) {
		/* compressed clusters share sectors: fragmented by nature */
		ck->res->allocated_clusters++;
		ck->res->compressed_clusters++;
		ck->res->fragmented_clusters++;
	}
	return 0;
}

/* Returns 1 when the entry was rewritten as a zero cluster (not counted). */
static int l2_misaligned(struct qcow2_ck *ck, struct l2_walk *w, uint64_t i, uint64_t entry,
			 uint64_t offset)
{
	bool has_data, overlap = false;
	int err;

	ck->res->corruptions++;
	if (ck->g.extended_l2)
		has_data = l2_word(ck, w, i, 1) & QCOW2_SC_ALL_ALLOC;
	else
		has_data = !(entry & QCOW2_OFLAG_ZERO);
	if (has_data) {
		qcow2_ck_msg(ck,
			     "ERROR offset=%" PRIx64
			     ": Data cluster is not properly aligned; L2 entry "
			     "corrupted.",
			     offset);
		return 0;
	}
	qcow2_ck_msg(ck,
		     "%s offset=%" PRIx64
		     ": Preallocated cluster is not properly aligned; L2 entry "
		     "corrupted.",
		     w->fix & QCOW2_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", offset);
	if (!(w->fix & QCOW2_CHECK_FIX_ERRORS))
		return 0;
	err = fix_l2_entry_by_zero(ck, w, i, &overlap);
	if (overlap)
		return err; /* something is badly wrong: stop with this table */
	return err ? 0 : 1;
}

static int l2_allocated(struct qcow2_ck *ck, struct l2_walk *w, uint64_t i, uint64_t entry,
			const struct qcow2_l2_entry *d)
{
	uint64_t offset = d->host_offset;
	int ret;

	if (ck->g.extended_l2) {
		uint64_t bitmap = l2_word(ck, w, i, 1);

		if ((bitmap >> 32) & bitmap) {
			ck->res->corruptions++;
			qcow2_ck_msg(ck,
				     "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
				     "subcluster allocation bitmap",
				     offset);
		}
	}
	if (!is_aligned_u64(offset, ck->g.cluster_bytes)) {
		ret = l2_misaligned(ck, w, i, entry, offset);
		if (ret)
			return ret < 0 ? ret : 0;
	}
	if (w->flags & CK_FRAG_INFO) {
		ck->res->allocated_clusters++;
		if (w->next_contiguous && offset != w->next_contiguous)
			ck->res->fragmented_clusters++;
		w->next_contiguous = offset + ck->g.cluster_bytes;
	}
	/* clusters of an external data file are not refcounted */
	return ck->g.data_file ? 0 : ck_inc(ck, offset, ck->g.cluster_bytes);
}

static int l2_entry(struct qcow2_ck *ck, struct l2_walk *w, uint64_t i)
{
	uint64_t entry = l2_word(ck, w, i, 0);
	uint64_t bitmap = ck->g.extended_l2 ? l2_word(ck, w, i, 1) : 0;
	struct qcow2_l2_entry d;

	/* only the type and offsets: the checks below are QEMU's, with its messages */
	(void)qcow2_l2_entry_decode(&ck->g, entry, bitmap, &d, NULL);
	if (d.type != QCOW2_CLUSTER_COMPRESSED && (entry & QCOW2_L2E_STD_RESERVED_MASK)) {
		qcow2_ck_msg(ck, "ERROR found l2 entry with reserved bits set: %" PRIx64, entry);
		ck->res->corruptions++;
	}
	switch (d.type) {
	case QCOW2_CLUSTER_COMPRESSED:
		return l2_compressed(ck, w, i, entry, &d);
	case QCOW2_CLUSTER_NORMAL:
	case QCOW2_CLUSTER_ZERO_ALLOC:
		return l2_allocated(ck, w, i, entry, &d);
	case QCOW2_CLUSTER_UNALLOCATED:
		if (bitmap & QCOW2_SC_ALL_ALLOC) {
			ck->res->corruptions++;
			qcow2_ck_msg(
				ck, "ERROR: Unallocated cluster has non-zero subcluster allocation "
				    "map");
		}
		return 0;
	default: /* ZERO_PLAIN: nothing on the host */
		return 0;
	}
}

/* QEMU's check_refcounts_l2(). */
static int check_l2(struct qcow2_ck *ck, uint64_t l2_offset, unsigned flags, unsigned fix,
		    bool active)
{
	struct l2_walk w = {
		.l2_offset = l2_offset,
		.flags = flags,
		.fix = fix,
		.active = active,
		.table = ck->buf,
	};
	int err = qcow2_ck_read(ck, l2_offset, ck->buf, ck->g.cluster_bytes);

	if (err) {
		qcow2_ck_msg(ck, "ERROR: I/O error in check_refcounts_l2");
		ck->res->check_errors++;
		return err;
	}
	for (uint64_t i = 0; i < ck->g.l2_entries; i++) {
		err = l2_entry(ck, &w, i);
		if (err)
			return err;
	}
	return 0;
}

/* ---- L1 tables -------------------------------------------------------------------- */

static int l1_entry(struct qcow2_ck *ck, uint64_t entry, unsigned flags, unsigned fix, bool active)
{
	uint64_t l2_offset;
	int err;

	if (entry & QCOW2_L1E_RESERVED_MASK) {
		qcow2_ck_msg(ck, "ERROR found L1 entry with reserved bits set: %" PRIx64, entry);
		ck->res->corruptions++;
	}
	l2_offset = entry & QCOW2_L1E_OFFSET_MASK;
	err = ck_inc(ck, l2_offset, ck->g.cluster_bytes);
	if (err)
		return err;
	if (!is_aligned_u64(l2_offset, ck->g.cluster_bytes)) {
		qcow2_ck_msg(ck,
			     "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
			     "corrupted",
			     l2_offset);
		ck->res->corruptions++;
	}
	return check_l2(ck, l2_offset, flags, fix, active);
}

/*
 * QEMU's check_refcounts_l1().  The table is read a cluster's worth of
 * entries at a time (at most 32 MiB in all, checked by the caller).
 */
static int check_l1(struct qcow2_ck *ck, uint64_t l1_offset, uint32_t l1_size, unsigned flags,
		    unsigned fix, bool active)
{
	uint64_t per_chunk = ck->g.cluster_bytes / 8;
	uint64_t *chunk;
	int err;

	if (l1_size == 0)
		return 0;
	err = ck_inc(ck, l1_offset, (uint64_t)l1_size * 8);
	if (err)
		return err;
	chunk = malloc(per_chunk * 8);
	if (!chunk) {
		ck->res->check_errors++;
		return -ENOMEM;
	}
	for (uint64_t base = 0; base < l1_size && !err; base += per_chunk) {
		uint64_t n = MIN(per_chunk, l1_size - base);

		err = qcow2_ck_read(ck, l1_offset + base * 8, chunk, n * 8);
		if (err) {
			qcow2_ck_msg(ck, "ERROR: I/O error in check_refcounts_l1");
			ck->res->check_errors++;
			break;
		}
		for (uint64_t i = 0; i < n && !err; i++) {
			uint64_t entry = be64toh(chunk[i]);

			if (entry)
				err = l1_entry(ck, entry, flags, fix, active);
		}
	}
	free(chunk);
	return err;
}

/* ---- snapshots, bitmaps, refcount blocks ------------------------------------------ */

static int check_snapshots(struct qcow2_ck *ck, unsigned fix)
{
	int err;

	if (ck->g.data_file && ck->nb_sns) {
		qcow2_ck_msg(ck, "ERROR %" PRIu32 " snapshots in image with data file", ck->nb_sns);
		ck->res->corruptions++;
	}
	for (uint32_t i = 0; i < ck->nb_sns; i++) {
		const struct qcow2_snapshot *sn = &ck->sns[i];

		if (!is_aligned_u64(sn->l1_table_offset, ck->g.cluster_bytes)) {
			qcow2_ck_msg(ck,
				     "ERROR snapshot %s (%s) l1_offset=%#" PRIx64
				     ": L1 table is not "
				     "cluster aligned; snapshot table entry corrupted",
				     sn->id, sn->name, sn->l1_table_offset);
			ck->res->corruptions++;
			continue;
		}
		if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
			qcow2_ck_msg(ck,
				     "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too "
				     "large; snapshot table entry corrupted",
				     sn->id, sn->name, sn->l1_size);
			ck->res->corruptions++;
			continue;
		}
		err = check_l1(ck, sn->l1_table_offset, sn->l1_size, 0, fix, false);
		if (err)
			return err;
	}
	return ck_inc(ck, ck->sns_offset, ck->sns_bytes);
}

/*
 * QEMU's qcow2_check_bitmaps_refcounts(): the directory, each table and
 * each data cluster.  A table with an invalid entry stops the check
 * (QEMU cannot load it).  Tables are at most 8 MiB (bitmap-fmt.h limits).
 */
static int check_bitmap_table(struct qcow2_ck *ck, const struct qcow2_bitmap *bm)
{
	uint64_t bytes = (uint64_t)bm->table_size * 8;
	uint64_t *t = malloc(MAX(bytes, (uint64_t)8));
	int err;

	if (!t) {
		ck->res->check_errors++;
		return -ENOMEM;
	}
	err = qcow2_ck_read(ck, bm->table_offset, t, bytes);
	for (uint32_t i = 0; !err && i < bm->table_size; i++) {
		uint64_t off;
		bool ones;

		t[i] = be64toh(t[i]);
		if (qcow2_bitmap_table_entry_decode(t[i], ck->g.cluster_bits, &off, &ones, NULL))
			err = -EINVAL;
	}
	if (err)
		ck->res->corruptions++;
	for (uint32_t i = 0; !err && i < bm->table_size; i++) {
		uint64_t off = t[i] & QCOW2_BMT_OFFSET_MASK;

		if (off)
			err = ck_inc(ck, off, ck->g.cluster_bytes);
	}
	free(t);
	return err;
}

static int check_bitmaps(struct qcow2_ck *ck)
{
	int err;

	if (!ck->nb_bms)
		return 0;
	err = ck_inc(ck, ck->hdr.bitmaps.dir_offset, ck->hdr.bitmaps.dir_bytes);
	for (uint32_t i = 0; !err && i < ck->nb_bms; i++) {
		const struct qcow2_bitmap *bm = &ck->bms[i];

		err = ck_inc(ck, bm->table_offset, (uint64_t)bm->table_size * 8);
		if (!err)
			err = check_bitmap_table(ck, bm);
	}
	return err;
}

/*
 * A refcount block past the end of the file: with FIX_ERRORS, grow the
 * file to hold it (it then reads as zeros).  Returns 0 when fixed.  QEMU
 * grows the file by any amount; this stops at QCOW2_CHECK_MAX_GROW_BYTES,
 * and a block further out is handled like a failed resize: the refcount
 * structure is rebuilt instead.
 */
static int refblock_outside(struct qcow2_ck *ck, uint64_t offset, uint64_t cluster)
{
	uint64_t end, clusters;
	int err;

	if (ck_add(offset, ck->g.cluster_bytes, &end) || end > INT64_MAX)
		return -EINVAL;
	if (end - ck->file_bytes > QCOW2_CHECK_MAX_GROW_BYTES)
		return -EFBIG; /* the rebuild that follows needs no such block */
	clusters = qcow2_ck_clusters(ck, end);
	if (clusters > QCOW2_CHECK_MAX_CLUSTERS || !imrt_bytes(ck, clusters))
		return -EFBIG;
	err = qcow2_ftruncate(ck->file, end);
	if (err)
		return err;
	ck->file_bytes = end;
	err = qcow2_ck_imrt_resize(ck, MAX(clusters, ck->imrt_clusters));
	if (err)
		return err;
	return cluster < ck->imrt_clusters ? 0 : -EINVAL;
}

static int check_refblock(struct qcow2_ck *ck, uint64_t i, unsigned fix, bool *rebuild)
{
	uint64_t entry = ck->reftable[i];
	uint64_t offset = entry & QCOW2_REFT_OFFSET_MASK;
	uint64_t cluster = offset >> ck->g.cluster_bits;
	int err;

	if (entry & QCOW2_REFT_RESERVED_MASK) {
		qcow2_ck_msg(ck, "ERROR refcount table entry %" PRIu64 " has reserved bits set", i);
		ck->res->corruptions++;
		*rebuild = true;
		return 0;
	}
	if (!is_aligned_u64(offset, ck->g.cluster_bytes)) {
		qcow2_ck_msg(ck,
			     "ERROR refcount block %" PRIu64
			     " is not cluster aligned; refcount table "
			     "entry corrupted",
			     i);
		ck->res->corruptions++;
		*rebuild = true;
		return 0;
	}
	if (cluster >= ck->imrt_clusters) {
		ck->res->corruptions++;
		qcow2_ck_msg(ck, "%s refcount block %" PRIu64 " is outside image",
			     fix & QCOW2_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", i);
		if (!(fix & QCOW2_CHECK_FIX_ERRORS))
			return 0;
		err = refblock_outside(ck, offset, cluster);
		if (err) {
			*rebuild = true;
			qcow2_ck_msg(ck, "ERROR could not resize image: %s", err_str(err));
			return 0;
		}
		ck->res->corruptions--;
		ck->res->corruptions_fixed++;
		/* a fresh zeroed cluster: its refcount can only be 1 now */
		return ck_inc(ck, offset, ck->g.cluster_bytes);
	}
	if (offset == 0)
		return 0;
	err = ck_inc(ck, offset, ck->g.cluster_bytes);
	if (err)
		return err;
	if (qcow2_ck_imrt_get(ck, cluster) != 1) {
		qcow2_ck_msg(ck, "ERROR refcount block %" PRIu64 " refcount=%" PRIu64, i,
			     qcow2_ck_imrt_get(ck, cluster));
		ck->res->corruptions++;
		*rebuild = true;
	}
	return 0;
}

int qcow2_ck_calculate(struct qcow2_ck *ck, unsigned fix, bool *rebuild)
{
	int err;

	err = ck_inc(ck, 0, ck->g.cluster_bytes); /* header */
	if (!err)
		err = check_l1(ck, ck->hdr.l1_table_offset, ck->hdr.l1_size, CK_FRAG_INFO, fix,
			       true);
	if (!err)
		err = check_snapshots(ck, fix);
	if (!err)
		err = ck_inc(ck, ck->reftable_offset, ck->reftable_entries * 8);
	if (!err && ck->hdr.fde.present && ck->hdr.fde.length)
		err = ck_inc(ck, ck->hdr.fde.offset, ck->hdr.fde.length);
	if (!err)
		err = check_bitmaps(ck);
	for (uint64_t i = 0; !err && i < ck->reftable_entries; i++)
		err = check_refblock(ck, i, fix, rebuild);
	return err;
}
