// SPDX-License-Identifier: MIT
/*
 * qemu-img's layout of a new qcow2 image, replayed (create-alloc.h): the
 * refcount model, the allocator and the file.  The L1 and L2 tables and
 * preallocation built on them are in create-prealloc.c.
 *
 * The order of operations below is QEMU's, including its retries: when a
 * refcount update needs a new refcount block, the block is placed at the
 * first free cluster (describing itself when it falls in its own range),
 * the update is undone and the allocation searched again, which is what
 * decides where everything after it lands.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "cleanup.h"
#include "qcow2/create-alloc.h"
#include "qcow2/create-internal.h"
#include "qcow2/format.h"
#include "qcow2/sync-io.h"

static int mk_update(struct qcow2_mk *mk, uint64_t offset, uint64_t length, bool decrease);
void qcow2_mk_free(struct qcow2_mk *mk, uint64_t offset, uint64_t bytes);

void qcow2_mk_extend(struct qcow2_mk *mk, uint64_t end)
{
	mk->file_bytes = MAX(mk->file_bytes, end);
}

int qcow2_mk_write(struct qcow2_mk *mk, uint64_t off, const void *buf, size_t len, const char *what)
{
	int err = qcow2_pwrite(mk->file, off, buf, len);

	if (err) {
		log_err("create %s: write of the %s at offset 0x%" PRIx64 ": %s", mk->path, what,
			off, err_str(err));
		return err;
	}
	qcow2_mk_extend(mk, off + len);
	return 0;
}

int qcow2_mk_write_be64(struct qcow2_mk *mk, uint64_t off, const uint64_t *t, uint64_t entries,
			const char *what)
{
	uint64_t *be = malloc(MAX(entries, (uint64_t)1) * sizeof(*be));
	uint64_t i;
	int err;

	if (!be)
		return -ENOMEM;
	for (i = 0; i < entries; i++)
		be[i] = htobe64(t[i]);
	err = qcow2_mk_write(mk, off, be, entries * sizeof(*be), what);
	free(be);
	return err;
}

uint64_t qcow2_mk_refcount(const struct qcow2_mk *mk, uint64_t cluster)
{
	uint64_t ti = cluster >> mk->refblock_bits;

	if (ti >= mk->reftable_entries || !mk->refblocks[ti])
		return 0;
	return qcow2_refcount_get(mk->refblocks[ti], mk->refcount_order,
				  cluster & (mk->refblock_entries - 1));
}

/*
 * First fit for @nb clusters from mk->free_index, without taking them
 * (QEMU's alloc_clusters_noref): the search index moves past every cluster
 * looked at.  -EFBIG when the run would end past @max_offset.
 */
static int alloc_noref(struct qcow2_mk *mk, uint64_t nb, uint64_t max_offset, uint64_t *offset)
{
	uint64_t run = 0;

	while (run < nb) {
		if (qcow2_mk_refcount(mk, mk->free_index++) != 0)
			run = 0;
		else
			run++;
	}
	if (mk->free_index > 0 && mk->free_index - 1 > (max_offset >> mk->cluster_bits))
		return -EFBIG;
	*offset = (mk->free_index - nb) << mk->cluster_bits;
	return 0;
}

static uint8_t *new_block(const struct qcow2_mk *mk)
{
	return calloc(1, mk->cluster_bytes);
}

/*
 * QEMU's qcow2_refcount_metadata_size(): the refcount blocks needed to
 * cover @clusters plus the refcount structures themselves, found as a
 * fixed point; @generous adds room for half the table once more.
 */
static uint64_t refcount_blocks_needed(const struct qcow2_mk *mk, uint64_t clusters, bool generous)
{
	uint64_t per_table_cluster = mk->cluster_bytes / 8;
	uint64_t table = 0, blocks = 0, n = 0, last;

	do {
		last = n;
		blocks = div_round_up_u64(clusters + table + blocks, mk->refblock_entries);
		table = div_round_up_u64(blocks, per_table_cluster);
		n = clusters + blocks + table;
		if (n == last && generous) {
			clusters += div_round_up_u64(table, 2);
			n = 0;
			generous = false;
		}
	} while (n != last);
	return blocks;
}

static void update_max_index(struct qcow2_mk *mk)
{
	uint64_t i = mk->reftable_entries - 1;

	while (i > 0 && mk->reftable[i] == 0)
		i--;
	mk->reftable_max_index = i;
}

/* Swap in a new refcount table, freeing the old one's arrays and clusters. */
static void switch_reftable(struct qcow2_mk *mk, uint64_t *table, uint8_t **blocks,
			    uint64_t entries, uint64_t offset)
{
	uint64_t old_offset = mk->reftable_offset, old_entries = mk->reftable_entries, i;

	for (i = entries; i < old_entries; i++)
		free(mk->refblocks[i]);
	free(mk->reftable);
	free(mk->refblocks);
	mk->reftable = table;
	mk->refblocks = blocks;
	mk->reftable_entries = entries;
	mk->reftable_offset = offset;
	update_max_index(mk);
	/* QEMU ignores a failure here: the old table would only leak */
	qcow2_mk_free(mk, old_offset, old_entries * 8);
}

struct area {
	uint64_t start;	       /* first byte of the new structures */
	uint64_t total_blocks; /* refcount blocks the new table covers */
	uint64_t first_index;  /* first block covering the area */
	uint64_t table_entries;
	uint64_t table_offset;
	uint64_t end; /* end of the new structures */
};

/*
 * Give every block of the new table from the area's first on a buffer
 * (new ones at a->start upwards) and count the new structures' clusters
 * as referenced.
 */
static int fill_area_blocks(struct qcow2_mk *mk, const struct area *a, uint64_t *table,
			    uint8_t **blocks)
{
	uint64_t block_offset = a->start, i, j, end_index, first;

	for (i = a->first_index; i < a->total_blocks; i++) {
		if (!table[i]) {
			blocks[i] = new_block(mk);
			if (!blocks[i])
				return -ENOMEM;
			table[i] = block_offset;
			block_offset += mk->cluster_bytes;
		}
		first = i * mk->refblock_entries * mk->cluster_bytes;
		if (first >= a->end)
			continue;
		j = first < a->start ? (a->start - first) >> mk->cluster_bits : 0;
		end_index = MIN((a->end - first) >> mk->cluster_bits, mk->refblock_entries);
		for (; j < end_index; j++) {
			if (qcow2_refcount_get(blocks[i], mk->refcount_order, j) != 0) {
				log_err("create %s: refcount area at 0x%" PRIx64 " is not free",
					mk->path, a->start);
				return -EIO;
			}
			qcow2_refcount_set(blocks[i], mk->refcount_order, j, 1);
		}
	}
	qcow2_mk_extend(mk, block_offset);
	return 0;
}

/* The area's geometry (QEMU's qcow2_refcount_area() up to its allocations). */
static int plan_area(struct qcow2_mk *mk, struct area *a, uint64_t start, uint64_t additional,
		     bool exact)
{
	uint64_t per_table_cluster = mk->cluster_bytes / 8;

	a->start = start;
	a->total_blocks =
		refcount_blocks_needed(mk, (start >> mk->cluster_bits) + additional, !exact);
	if (a->total_blocks > QCOW2_MAX_REFTABLE_BYTES)
		return -EFBIG;
	a->first_index = (start >> mk->cluster_bits) / mk->refblock_entries;
	a->table_entries = a->total_blocks;
	if (!exact)
		a->table_entries += div_round_up_u64(a->total_blocks, 2);
	a->table_entries =
		div_round_up_u64(a->table_entries, per_table_cluster) * per_table_cluster;
	if (a->table_entries > QCOW2_MAX_REFTABLE_BYTES)
		return -EFBIG;
	return 0;
}

int qcow2_mk_refcount_area(struct qcow2_mk *mk, uint64_t start, uint64_t additional, bool exact,
			   uint64_t new_index, uint64_t new_offset, uint8_t *new_buf, uint64_t *end)
{
	struct area a;
	uint64_t *table = NULL, copy, i, added = 0;
	uint8_t **blocks = NULL;
	int err;

	err = plan_area(mk, &a, start, additional, exact);
	if (!err && new_offset && new_index >= a.total_blocks)
		err = -EIO;
	if (!err) {
		table = calloc(a.table_entries, sizeof(*table));
		blocks = calloc(a.table_entries, sizeof(*blocks));
		err = table && blocks ? 0 : -ENOMEM;
	}
	if (err)
		goto fail;
	copy = a.table_entries > mk->reftable_max_index ? mk->reftable_max_index + 1
							: a.table_entries;
	memcpy(table, mk->reftable, copy * sizeof(*table));
	memcpy(blocks, mk->refblocks, copy * sizeof(*blocks));
	if (new_offset) {
		table[new_index] = new_offset;
		blocks[new_index] = steal_ptr(new_buf);
	}
	for (i = a.first_index; i < a.total_blocks; i++)
		added += table[i] == 0;
	a.table_offset = start + added * mk->cluster_bytes;
	a.end = a.table_offset + a.table_entries * 8;
	err = fill_area_blocks(mk, &a, table, blocks);
	if (!err)
		err = qcow2_mk_write_be64(mk, a.table_offset, table, a.table_entries,
					  "refcount table");
	if (err)
		goto fail_blocks;
	/* the old arrays' block pointers now live in the new ones */
	memset(mk->refblocks, 0, copy * sizeof(*blocks));
	switch_reftable(mk, table, blocks, a.table_entries, a.table_offset);
	*end = a.end;
	return 0;

fail_blocks:
	/* below @copy they are still the old table's */
	for (i = copy; i < a.table_entries; i++)
		free(blocks[i]);
fail:
	if (err == -EFBIG)
		log_err("create %s: the refcount table would exceed %llu bytes", mk->path,
			QCOW2_MAX_REFTABLE_BYTES);
	free(new_buf);
	free(table);
	free(blocks);
	return err;
}

/*
 * A new refcount block for the range of @cluster (QEMU's
 * alloc_refcount_block() when the table has no block there).  Always ends
 * in -EAGAIN on success: the caller's search must start again, because the
 * block may have taken a cluster it had chosen.
 */
static int add_refblock(struct qcow2_mk *mk, uint64_t cluster)
{
	uint64_t ti = cluster >> mk->refblock_bits, off, used, meta, end;
	unsigned shift = mk->cluster_bits + mk->refblock_bits;
	uint8_t *buf;
	int err;

	err = alloc_noref(mk, 1, INT64_MAX, &off);
	if (err)
		return err;
	if (off == 0) {
		log_err("create %s: refcount block allocated at offset 0", mk->path);
		return -EIO;
	}
	if ((off >> shift) != ((cluster << mk->cluster_bits) >> shift)) {
		/* described by another block, which this may create in turn */
		err = mk_update(mk, off, mk->cluster_bytes, false);
		if (err)
			return err;
	}
	buf = new_block(mk);
	if (!buf)
		return -ENOMEM;
	if ((off >> shift) == ((cluster << mk->cluster_bits) >> shift))
		qcow2_refcount_set(buf, mk->refcount_order,
				   (off >> mk->cluster_bits) & (mk->refblock_entries - 1), 1);
	qcow2_mk_extend(mk, off + mk->cluster_bytes);
	if (ti < mk->reftable_entries) {
		uint64_t be = htobe64(off);

		/* (a table growth inside the update above may have filled the
		 * slot; QEMU overwrites it, leaking that block, and so do we) */
		free(mk->refblocks[ti]);
		mk->reftable[ti] = off;
		mk->refblocks[ti] = buf;
		mk->reftable_max_index = MAX(mk->reftable_max_index, ti);
		err = qcow2_mk_write(mk, mk->reftable_offset + ti * 8, &be, sizeof(be),
				     "refcount table entry");
		return err ?: -EAGAIN;
	}
	/* the table is full: a new one in a new area past everything covered */
	used = div_round_up_u64(MAX(cluster + 1, (off >> mk->cluster_bits) + 1),
				mk->refblock_entries);
	meta = used * mk->refblock_entries * mk->cluster_bytes;
	err = qcow2_mk_refcount_area(mk, meta, 0, false, ti, off, buf, &end);
	return err ?: -EAGAIN;
}

/* The block holding @cluster's refcount, created if needed (-EAGAIN then). */
static int refblock_for(struct qcow2_mk *mk, uint64_t cluster, uint8_t **block)
{
	uint64_t ti = cluster >> mk->refblock_bits;

	if (ti < mk->reftable_entries && mk->reftable[ti]) {
		*block = mk->refblocks[ti];
		return 0;
	}
	*block = NULL;
	return add_refblock(mk, cluster);
}

/* One refcount step; -EINVAL when it would leave the refcount's range. */
static int step_refcount(struct qcow2_mk *mk, uint8_t *block, uint64_t cluster, bool decrease)
{
	uint64_t bi = cluster & (mk->refblock_entries - 1);
	uint64_t r = qcow2_refcount_get(block, mk->refcount_order, bi);

	if (decrease ? r == 0 : r == qcow2_refcount_max(mk->refcount_order))
		return -EINVAL;
	r = decrease ? r - 1 : r + 1;
	if (r == 0 && cluster < mk->free_index)
		mk->free_index = cluster;
	return qcow2_refcount_set(block, mk->refcount_order, bi, r);
}

static int mk_update(struct qcow2_mk *mk, uint64_t offset, uint64_t length, bool decrease)
{
	uint64_t start, last, c, cur_ti = 0;
	uint8_t *block = NULL;
	bool have = false;
	int err = 0;

	if (length == 0)
		return 0;
	start = ALIGN_DOWN(offset, mk->cluster_bytes);
	last = ALIGN_DOWN(offset + length - 1, mk->cluster_bytes);
	for (c = start; c <= last; c += mk->cluster_bytes) {
		uint64_t ci = c >> mk->cluster_bits;

		if (!have || (ci >> mk->refblock_bits) != cur_ti) {
			err = refblock_for(mk, ci, &block);
			if (err == -EAGAIN && mk->free_index > (start >> mk->cluster_bits))
				mk->free_index = start >> mk->cluster_bits;
			if (err)
				break;
		}
		have = true;
		cur_ti = ci >> mk->refblock_bits;
		err = step_refcount(mk, block, ci, decrease);
		if (err)
			break;
	}
	/* undo what was done, so that a retry starts from the same state */
	if (err && c > offset)
		mk_update(mk, offset, c - offset, !decrease);
	return err;
}

void qcow2_mk_free(struct qcow2_mk *mk, uint64_t offset, uint64_t bytes)
{
	int err = mk_update(mk, offset, bytes, true);

	if (err)
		log_warn("create %s: freeing 0x%" PRIx64 "+%" PRIu64 ": %s", mk->path, offset,
			 bytes, err_str(err));
}

int qcow2_mk_alloc(struct qcow2_mk *mk, uint64_t bytes, uint64_t *offset)
{
	uint64_t nb = div_round_up_u64(bytes, mk->cluster_bytes);
	int err;

	do {
		err = alloc_noref(mk, nb, QCOW2_MAX_HOST_OFFSET - 1, offset);
		if (err)
			break;
		err = mk_update(mk, *offset, bytes, false);
	} while (err == -EAGAIN);
	if (err)
		log_err("create %s: allocating %" PRIu64 " bytes: %s", mk->path, bytes,
			err_str(err));
	return err;
}

int qcow2_mk_alloc_at(struct qcow2_mk *mk, uint64_t offset, uint64_t nb, uint64_t *got)
{
	uint64_t ci, i;
	int err;

	*got = 0;
	if (nb == 0)
		return 0;
	do {
		ci = offset >> mk->cluster_bits;
		for (i = 0; i < nb; i++) {
			if (qcow2_mk_refcount(mk, ci + i) != 0)
				break;
		}
		err = mk_update(mk, offset, i << mk->cluster_bits, false);
	} while (err == -EAGAIN);
	if (err) {
		log_err("create %s: allocating %" PRIu64 " clusters at 0x%" PRIx64 ": %s", mk->path,
			nb, offset, err_str(err));
		return err;
	}
	*got = i;
	return 0;
}

int qcow2_mk_init(struct qcow2_mk *mk, struct aio_file *file, const char *path,
		  unsigned cluster_bits, unsigned refcount_order, bool extended_l2)
{
	memset(mk, 0, sizeof(*mk));
	mk->file = file;
	mk->path = path;
	mk->cluster_bits = cluster_bits;
	mk->cluster_bytes = UINT64_C(1) << cluster_bits;
	mk->refcount_order = refcount_order;
	mk->refblock_bits = cluster_bits + 3 - refcount_order;
	mk->refblock_entries = UINT64_C(1) << mk->refblock_bits;
	mk->l2_entry_bytes = extended_l2 ? 16 : 8;
	mk->l2_entries = mk->cluster_bytes / mk->l2_entry_bytes;
	mk->subcluster_bytes = extended_l2 ? mk->cluster_bytes / 32 : mk->cluster_bytes;
	mk->reftable_entries = mk->cluster_bytes / 8;
	mk->reftable_offset = mk->cluster_bytes;
	mk->reftable = calloc(mk->reftable_entries, sizeof(*mk->reftable));
	mk->refblocks = calloc(mk->reftable_entries, sizeof(*mk->refblocks));
	if (!mk->reftable || !mk->refblocks)
		return -ENOMEM;
	mk->refblocks[0] = new_block(mk);
	if (!mk->refblocks[0])
		return -ENOMEM;
	mk->reftable[0] = 2 * mk->cluster_bytes;
	/* the header cluster and the empty block are written too */
	mk->file_bytes = 3 * mk->cluster_bytes;
	return qcow2_mk_write_be64(mk, mk->reftable_offset, mk->reftable, mk->reftable_entries,
				   "refcount table");
}

void qcow2_mk_fini(struct qcow2_mk *mk)
{
	uint64_t i;

	if (!mk)
		return;
	for (i = 0; mk->refblocks && i < mk->reftable_entries; i++)
		free(mk->refblocks[i]);
	free(mk->refblocks);
	free(mk->reftable);
	for (i = 0; mk->l2_tables && i < mk->l1_entries; i++)
		free(mk->l2_tables[i]);
	free(mk->l2_tables);
	free(mk->l1);
	memset(mk, 0, sizeof(*mk));
}

static int mk_sync(struct qcow2_mk *mk)
{
	int err = qcow2_fsync(mk->file);

	if (err)
		log_err("create %s: fsync: %s", mk->path, err_str(err));
	return err;
}

int qcow2_mk_finish(struct qcow2_mk *mk)
{
	struct stat st;
	uint64_t i;
	int err = 0;

	for (i = 0; !err && i < mk->reftable_entries; i++) {
		if (mk->reftable[i] && mk->refblocks[i])
			err = qcow2_mk_write(mk, mk->reftable[i], mk->refblocks[i],
					     mk->cluster_bytes, "refcount block");
	}
	if (err)
		return err;
	/* a block device keeps its size (and its bytes past the image) */
	if (mk->file->is_blockdev) {
		off_t dev_bytes = lseek(mk->file->fd, 0, SEEK_END);

		if (dev_bytes >= 0 && (uint64_t)dev_bytes < mk->file_bytes) {
			log_err("create %s: Could not resize image: Cannot grow device files "
				"(the image needs %" PRIu64 " bytes)",
				mk->path, mk->file_bytes);
			return -ENOSPC;
		}
		return mk_sync(mk);
	}
	if (fstat(mk->file->fd, &st) < 0 || ((uint64_t)st.st_size != mk->file_bytes &&
					     ftruncate(mk->file->fd, (off_t)mk->file_bytes) < 0)) {
		err = neg_errno();
		log_err("create %s: setting the length to %" PRIu64 ": %s", mk->path,
			mk->file_bytes, err_str(err));
		return err;
	}
	return mk_sync(mk);
}
