// SPDX-License-Identifier: MIT
/*
 * Rebuilding the refcount structure of a qcow2 image from the check's
 * in-memory refcount table, as QEMU's rebuild_refcount_structure() does
 * (check-internal.h): the new refcount blocks are slices of the IMRT,
 * written into clusters the IMRT has free, and so is the new table; the
 * header is switched to it with one synced write after everything else
 * is synced (ARCHITECTURE.md §4).  The same free clusters are picked as
 * QEMU picks, so a rebuilt image is byte for byte what qemu-img leaves.
 *
 * One difference: clusters the old table points to but the IMRT does not
 * count (an entry with reserved bits, or misaligned) are not written
 * either, so that a crash before the switch leaves the old structure as
 * it was.  QEMU's rebuild refuses to overwrite them and fails; this one
 * goes around them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "cleanup.h"
#include "errors.h"
#include "qcow2/check-internal.h"

/*
 * QEMU's alloc_clusters_imrt(): @count free clusters of the IMRT, first
 * fit from *@first_free (which moves to the first gap seen), growing the
 * table past the end of the image when no gap is large enough.  Clusters
 * of the old refcount blocks are not free, counted or not.
 */
static int imrt_alloc(struct qcow2_ck *ck, uint64_t count, uint64_t *first_free, uint64_t *offset)
{
	uint64_t cluster = *first_free, run = 0;
	bool first_gap = true;
	int err;

	for (; run < count; cluster++) {
		bool used = cluster < ck->imrt_clusters && qcow2_ck_imrt_get(ck, cluster);

		if (cluster >= QCOW2_CHECK_MAX_CLUSTERS)
			return -EFBIG;
		if (used || qcow2_ck_refblock_at(ck, cluster)) {
			run = 0;
			continue;
		}
		run++;
		if (first_gap && cluster < ck->imrt_clusters) {
			*first_free = cluster;
			first_gap = false;
		}
	}
	if (cluster > ck->imrt_clusters) {
		err = qcow2_ck_imrt_resize(ck, cluster);
		if (err)
			return err;
	}
	cluster -= run;
	for (uint64_t i = 0; i < count; i++)
		qcow2_ck_imrt_set(ck, cluster + i, 1);
	*offset = cluster << ck->g.cluster_bits;
	return 0;
}

/*
 * A rebuild replaces the old refcount structure, which is dead then: its
 * valid parts are in the IMRT and cannot be picked, the rest is garbage.
 */
#define OLD_REFCOUNTS (CK_META_REFTABLE | CK_META_REFBLOCK)

struct new_reftable {
	uint64_t *entries; /* host-endian */
	uint64_t nb;
};

static int reftable_cover(struct qcow2_ck *ck, struct new_reftable *rt, uint64_t index)
{
	uint64_t per_cluster = ck->g.cluster_bytes / 8;
	uint64_t nb = (index / per_cluster + 1) * per_cluster;
	uint64_t *p;

	if (nb * 8 > QCOW2_MAX_REFTABLE_BYTES)
		return -EFBIG;
	p = realloc(rt->entries, nb * 8);
	if (!p)
		return -ENOMEM;
	memset(p + rt->nb, 0, (nb - rt->nb) * 8);
	rt->entries = p;
	rt->nb = nb;
	return 0;
}

/*
 * QEMU's rebuild_refcounts_write_refblocks(): for every refcount block
 * range of [@first, @end) holding a used cluster, allocate the block (in
 * the IMRT, inside or past its own range) unless it has one, and write
 * the range's slice of the IMRT there.  Returns 1 when the new table had
 * to grow, 0, or -errno (reported).
 */
static int write_refblocks(struct qcow2_ck *ck, uint64_t first, uint64_t end,
			   struct new_reftable *rt)
{
	uint64_t first_free = 0;
	bool grown = false;
	int err = 0;

	for (uint64_t c = first; c < end && !err; c++) {
		uint64_t idx = c >> ck->g.refblock_bits, start = idx << ck->g.refblock_bits;
		uint64_t off;

		if (!qcow2_ck_imrt_get(ck, c))
			continue;
		if (idx < rt->nb && rt->entries[idx]) {
			off = rt->entries[idx];
		} else {
			first_free = MAX(first_free, start);
			err = imrt_alloc(ck, 1, &first_free, &off);
			if (err) {
				qcow2_ck_msg(ck, "ERROR allocating refblock: %s", err_str(err));
				return err;
			}
			end = MAX(end, (off >> ck->g.cluster_bits) + 1);
			if (idx >= rt->nb) {
				err = reftable_cover(ck, rt, idx);
				grown = true;
			}
			if (err) {
				qcow2_ck_msg(ck, "ERROR allocating reftable memory");
				return err;
			}
			rt->entries[idx] = off;
		}
		err = qcow2_ck_write_checked(ck, OLD_REFCOUNTS, off,
					     ck->imrt + idx * ck->g.cluster_bytes,
					     ck->g.cluster_bytes);
		if (err)
			qcow2_ck_msg(ck, "ERROR writing refblock: %s", err_str(err));
		c = start + ck->g.refblock_entries - 1; /* this block is done */
	}
	return err ? err : grown;
}

/* Write the new table, sync, and point the header at it (synced). */
static int switch_reftable(struct qcow2_ck *ck, struct new_reftable *rt, uint64_t offset)
{
	uint64_t bytes = rt->nb * 8;
	uint8_t hdr[12];
	uint64_t *be = malloc(bytes);
	int err;

	if (!be)
		return -ENOMEM;
	for (uint64_t i = 0; i < rt->nb; i++)
		be[i] = htobe64(rt->entries[i]);
	err = qcow2_ck_write_checked(ck, OLD_REFCOUNTS, offset, be, bytes);
	free(be);
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err) {
		qcow2_ck_msg(ck, "ERROR writing reftable: %s", err_str(err));
		return err;
	}
	qcow2_put_be64(hdr, offset);
	qcow2_put_be32(hdr + 8, (uint32_t)(bytes >> ck->g.cluster_bits));
	err = qcow2_ck_write(ck, QCOW2_HDR_OFF(refcount_table_offset), hdr, sizeof(hdr));
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err) {
		qcow2_ck_msg(ck, "ERROR setting reftable: %s", err_str(err));
		return err;
	}
	free(ck->reftable);
	ck->reftable = steal_ptr(rt->entries);
	ck->reftable_entries = rt->nb;
	ck->reftable_offset = offset;
	ck->hdr.refcount_table_offset = offset;
	ck->hdr.refcount_table_clusters = (uint32_t)(bytes >> ck->g.cluster_bits);
	ck->sorted_valid = false;
	return 0;
}

/*
 * QEMU's rebuild_refcount_structure(): refcount blocks for everything in
 * use, written from the IMRT into free space; then a table for them,
 * whose own clusters need refcounts too, so its range is written again
 * and the loop repeats until the table stops growing.  The old structure
 * is leaked; the caller's second pass frees it.
 */
int qcow2_ck_rebuild(struct qcow2_ck *ck)
{
	struct new_reftable rt = { 0 };
	uint64_t offset = 0;
	int ret;

	ret = qcow2_ck_rc_flush(ck);
	qcow2_ck_rc_drop(ck);
	if (!ret)
		ret = qcow2_ck_overlap_prepare(ck);
	if (!ret)
		ret = write_refblocks(ck, 0, ck->imrt_clusters, &rt);
	while (ret > 0) {
		uint64_t first_free = 0, clusters = qcow2_ck_clusters(ck, rt.nb * 8);

		ret = imrt_alloc(ck, clusters, &first_free, &offset);
		if (ret) {
			qcow2_ck_msg(ck, "ERROR allocating reftable: %s", err_str(ret));
			break;
		}
		ret = write_refblocks(ck, offset >> ck->g.cluster_bits,
				      (offset >> ck->g.cluster_bits) + clusters, &rt);
	}
	if (!ret)
		ret = switch_reftable(ck, &rt, offset);
	free(rt.entries);
	if (ret)
		ck->res->check_errors++;
	return ret;
}
