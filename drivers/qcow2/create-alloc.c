// SPDX-License-Identifier: MIT
/*
 * qemu-img's layout of a new qcow2 image, replayed (create-alloc.h): the
 * refcount model and the allocator, then the L1 and L2 tables and
 * preallocation built on them.
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
#include "qcow2/format.h"
#include "qcow2/sync-io.h"

#define MK_INVALID UINT64_MAX
/* The longest request QEMU's block layer passes down (BDRV_REQUEST_MAX_BYTES). */
#define MK_REQUEST_MAX_BYTES UINT64_C(0x7ffffe00)
/* preallocation=full writes zeros in pieces of this size */
#define MK_ZERO_CHUNK_BYTES (UINT64_C(1) << 20)

static int mk_update(struct qcow2_mk *mk, uint64_t offset, uint64_t length, bool decrease);
static void mk_free(struct qcow2_mk *mk, uint64_t offset, uint64_t bytes);

static void mk_extend(struct qcow2_mk *mk, uint64_t end)
{
	mk->file_bytes = MAX(mk->file_bytes, end);
}

static int mk_write(struct qcow2_mk *mk, uint64_t off, const void *buf, size_t len,
		    const char *what)
{
	int err = qcow2_pwrite(mk->file, off, buf, len);

	if (err) {
		log_err("create %s: write of the %s at offset 0x%" PRIx64 ": %s", mk->path, what,
			off, err_str(err));
		return err;
	}
	mk_extend(mk, off + len);
	return 0;
}

static uint64_t mk_refcount(const struct qcow2_mk *mk, uint64_t cluster)
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
		if (mk_refcount(mk, mk->free_index++) != 0)
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

/* Write the refcount table (big-endian) at @off. */
static int write_reftable(struct qcow2_mk *mk, const uint64_t *t, uint64_t entries, uint64_t off)
{
	uint64_t *be = malloc(entries * sizeof(*be));
	uint64_t i;
	int err;

	if (!be)
		return -ENOMEM;
	for (i = 0; i < entries; i++)
		be[i] = htobe64(t[i]);
	err = mk_write(mk, off, be, entries * sizeof(*be), "refcount table");
	free(be);
	return err;
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
	mk_free(mk, old_offset, old_entries * 8);
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
	mk_extend(mk, block_offset);
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

static int mk_refcount_area(struct qcow2_mk *mk, uint64_t start, uint64_t additional, bool exact,
			    uint64_t new_index, uint64_t new_offset, uint8_t *new_buf,
			    uint64_t *end)
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
		err = write_reftable(mk, table, a.table_entries, a.table_offset);
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
	mk_extend(mk, off + mk->cluster_bytes);
	if (ti < mk->reftable_entries) {
		uint64_t be = htobe64(off);

		/* (a table growth inside the update above may have filled the
		 * slot; QEMU overwrites it, leaking that block, and so do we) */
		free(mk->refblocks[ti]);
		mk->reftable[ti] = off;
		mk->refblocks[ti] = buf;
		mk->reftable_max_index = MAX(mk->reftable_max_index, ti);
		err = mk_write(mk, mk->reftable_offset + ti * 8, &be, sizeof(be),
			       "refcount table entry");
		return err ?: -EAGAIN;
	}
	/* the table is full: a new one in a new area past everything covered */
	used = div_round_up_u64(MAX(cluster + 1, (off >> mk->cluster_bits) + 1),
				mk->refblock_entries);
	meta = used * mk->refblock_entries * mk->cluster_bytes;
	err = mk_refcount_area(mk, meta, 0, false, ti, off, buf, &end);
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

static void mk_free(struct qcow2_mk *mk, uint64_t offset, uint64_t bytes)
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

static int mk_alloc_at(struct qcow2_mk *mk, uint64_t offset, uint64_t nb, uint64_t *got)
{
	uint64_t ci, i;
	int err;

	*got = 0;
	if (nb == 0)
		return 0;
	do {
		ci = offset >> mk->cluster_bits;
		for (i = 0; i < nb; i++) {
			if (mk_refcount(mk, ci + i) != 0)
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
	return write_reftable(mk, mk->reftable, mk->reftable_entries, mk->reftable_offset);
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

/* ---- L1 and L2 tables --------------------------------------------------------------- */

static int write_l1(struct qcow2_mk *mk, const uint64_t *t, uint64_t entries, uint64_t off)
{
	uint64_t *be = malloc(MAX(entries, (uint64_t)1) * sizeof(*be));
	uint64_t i;
	int err;

	if (!be)
		return -ENOMEM;
	for (i = 0; i < entries; i++)
		be[i] = htobe64(t[i]);
	err = mk_write(mk, off, be, entries * sizeof(*be), "L1 table");
	free(be);
	return err;
}

int qcow2_mk_grow_l1(struct qcow2_mk *mk, uint64_t entries)
{
	uint64_t old_offset = mk->l1_offset, old_entries = mk->l1_entries, off;
	uint64_t *t;
	uint8_t **l2;
	int err;

	if (entries <= mk->l1_entries)
		return 0;
	if (entries > QCOW2_MAX_L1_BYTES / 8) {
		log_err("create %s: an L1 table of %" PRIu64 " entries is too large", mk->path,
			entries);
		return -EFBIG;
	}
	t = calloc(entries, sizeof(*t));
	l2 = calloc(entries, sizeof(*l2));
	if (!t || !l2) {
		free(t);
		free(l2);
		return -ENOMEM;
	}
	if (old_entries) {
		memcpy(t, mk->l1, old_entries * sizeof(*t));
		memcpy(l2, mk->l2_tables, old_entries * sizeof(*l2));
	}
	err = qcow2_mk_alloc(mk, entries * sizeof(*t), &off);
	if (!err)
		err = write_l1(mk, t, entries, off);
	if (err) {
		free(t);
		free(l2);
		return err;
	}
	free(mk->l1);
	free(mk->l2_tables);
	mk->l1 = t;
	mk->l2_tables = l2;
	mk->l1_entries = entries;
	mk->l1_offset = off;
	mk_free(mk, old_offset, old_entries * sizeof(*t));
	return 0;
}

static uint64_t l1_index(const struct qcow2_mk *mk, uint64_t guest_offset)
{
	return (guest_offset >> mk->cluster_bits) / mk->l2_entries;
}

/*
 * The L2 table for @guest_offset, allocated when missing (QEMU's
 * l2_allocate(): the zeroed table is written, then its L1 entry).  The
 * table is kept in memory until filled; its cluster counts as written now.
 */
static int ensure_l2(struct qcow2_mk *mk, uint64_t guest_offset)
{
	uint64_t i = l1_index(mk, guest_offset), off, be;
	int err;

	if (mk->l1[i])
		return 0;
	err = qcow2_mk_alloc(mk, mk->cluster_bytes, &off);
	if (err)
		return err;
	mk->l2_tables[i] = calloc(1, mk->cluster_bytes);
	if (!mk->l2_tables[i])
		return -ENOMEM;
	mk_extend(mk, off + mk->cluster_bytes);
	mk->l1[i] = off | QCOW2_OFLAG_COPIED;
	be = htobe64(mk->l1[i]);
	return mk_write(mk, mk->l1_offset + i * sizeof(be), &be, sizeof(be), "L1 entry");
}

/* Map guest cluster @cluster to @host: a preallocated entry, no subcluster bits. */
static void set_l2_entry(struct qcow2_mk *mk, uint64_t cluster, uint64_t host)
{
	uint8_t *t = mk->l2_tables[cluster / mk->l2_entries];

	qcow2_put_be64(t + (cluster % mk->l2_entries) * mk->l2_entry_bytes,
		       host | QCOW2_OFLAG_COPIED);
}

/* Write (and drop) the filled L2 tables below L1 index @end. */
static int write_l2_tables(struct qcow2_mk *mk, uint64_t end)
{
	uint64_t i;
	int err;

	for (i = 0; i < MIN(end, mk->l1_entries); i++) {
		if (!mk->l2_tables[i])
			continue;
		err = mk_write(mk, mk->l1[i] & QCOW2_L1E_OFFSET_MASK, mk->l2_tables[i],
			       mk->cluster_bytes, "L2 table");
		if (err)
			return err;
		free(mk->l2_tables[i]);
		mk->l2_tables[i] = NULL;
	}
	return 0;
}

/* ---- preallocation ---------------------------------------------------------------- */

/*
 * QEMU's qcow2_alloc_host_offset() on unallocated entries: map guest
 * [@offset, @offset + *@bytes) to new clusters for as long as the host
 * range stays contiguous.  Each step allocates up to the end of an L2
 * table, but looks up the next table (allocating it) before trying to
 * extend, so a new L2 table usually ends the run.  *@bytes gets what was
 * mapped, *@host the host offset of @offset.
 */
static int alloc_host_run(struct qcow2_mk *mk, uint64_t offset, uint64_t *bytes, uint64_t *host)
{
	uint64_t start = offset, remaining = *bytes, next = MK_INVALID;
	int err;

	*host = MK_INVALID;
	while (remaining) {
		uint64_t in = start & (mk->cluster_bytes - 1), nb, got, h, cur, k;
		uint64_t l2i = (start >> mk->cluster_bits) % mk->l2_entries;

		err = ensure_l2(mk, start);
		if (err)
			return err;
		nb = div_round_up_u64(in + remaining, mk->cluster_bytes);
		nb = MIN(nb, mk->l2_entries - l2i);
		nb = MIN(nb, MK_REQUEST_MAX_BYTES >> mk->cluster_bits);
		if (next == MK_INVALID) {
			got = nb;
			err = qcow2_mk_alloc(mk, nb << mk->cluster_bits, &h);
		} else {
			h = ALIGN_DOWN(next, mk->cluster_bytes);
			err = mk_alloc_at(mk, h, nb, &got);
		}
		if (err)
			return err;
		if (got == 0)
			break;
		for (k = 0; k < got; k++)
			set_l2_entry(mk, (start >> mk->cluster_bits) + k,
				     h + (k << mk->cluster_bits));
		cur = MIN(remaining, (got << mk->cluster_bits) - in);
		if (*host == MK_INVALID)
			*host = h + in;
		next = h + in + cur;
		start += cur;
		remaining -= cur;
	}
	*bytes -= remaining;
	return 0;
}

/*
 * The copy-on-write of a partial last (sub)cluster: QEMU fills the rest
 * of it with what the guest reads there, zeros, when linking the entry.
 */
static int write_cow_tail(struct qcow2_mk *mk, uint64_t size, uint64_t host_end)
{
	static const uint8_t zeros[4096];
	uint64_t len = ALIGN_DOWN(size + mk->subcluster_bytes - 1, mk->subcluster_bytes) - size;
	int err = 0;

	while (!err && len) {
		uint64_t n = MIN(len, (uint64_t)sizeof(zeros));

		err = mk_write(mk, host_end, zeros, n, "copy-on-write tail");
		host_end += n;
		len -= n;
	}
	return err;
}

/* preallocation=metadata: QEMU's preallocate_co(). */
static int prealloc_metadata(struct qcow2_mk *mk, uint64_t size)
{
	uint64_t chunk = ALIGN_DOWN((uint64_t)INT32_MAX, mk->cluster_bytes);
	uint64_t offset = 0, host = 0, cur = 0;
	int err = 0;

	while (!err && offset < size) {
		cur = MIN(size - offset, chunk);
		err = alloc_host_run(mk, offset, &cur, &host);
		if (!err && offset + cur == size)
			err = write_cow_tail(mk, size, host + cur);
		offset += cur;
		if (!err)
			err = write_l2_tables(mk, l1_index(mk, offset));
	}
	if (err)
		return err;
	/* the file must reach the last cluster: extended sparsely */
	if (size)
		mk_extend(mk, host + cur);
	return write_l2_tables(mk, mk->l1_entries);
}

/* The last cluster with a reference, below @bytes of file. */
static uint64_t last_used_cluster(const struct qcow2_mk *mk, uint64_t bytes)
{
	uint64_t c = div_round_up_u64(bytes, mk->cluster_bytes);

	while (c > 0 && mk_refcount(mk, c - 1) == 0)
		c--;
	return c;
}

/* Grow the file from mk->file_bytes to @end: fallocate, or zeros written. */
static int allocate_file(struct qcow2_mk *mk, uint64_t end, enum qcow2_mk_prealloc mode)
{
	uint64_t cur = mk->file_bytes;
	int err = 0;

	if (end <= cur)
		return 0;
	if (mode == QCOW2_MK_PREALLOC_FALLOC) {
		err = -posix_fallocate(mk->file->fd, (off_t)cur, (off_t)(end - cur));
	} else {
		CLEANUP_FREE uint8_t *zeros = calloc(1, MK_ZERO_CHUNK_BYTES);

		if (!zeros)
			return -ENOMEM;
		if (ftruncate(mk->file->fd, (off_t)end) < 0)
			err = neg_errno();
		for (; !err && cur < end; cur += MIN(end - cur, MK_ZERO_CHUNK_BYTES))
			err = qcow2_pwrite(mk->file, cur, zeros,
					   MIN(end - cur, MK_ZERO_CHUNK_BYTES));
	}
	if (err) {
		log_err("create %s: preallocating %" PRIu64 " bytes at 0x%" PRIx64 ": %s", mk->path,
			end - mk->file_bytes, mk->file_bytes, err_str(err));
		return err;
	}
	mk->file_bytes = end;
	return 0;
}

/*
 * preallocation=falloc|full: QEMU's resize path.  A refcount area sized
 * for the data and its L2 tables goes at the end of the file, the data
 * right after it, allocated in the file; the L2 tables take the first
 * free clusters (the old refcount table's, then past the data).
 */
static int prealloc_file(struct qcow2_mk *mk, uint64_t size, enum qcow2_mk_prealloc mode)
{
	uint64_t nb_data = div_round_up_u64(size, mk->cluster_bytes), nb_l2, start, got;
	uint64_t guest = 0, host, last, old;
	int err;

	/* an unreferenced tail is cut, but the area still starts after it (QEMU) */
	old = mk->file_bytes;
	last = last_used_cluster(mk, old);
	if (last << mk->cluster_bits < old)
		mk->file_bytes = last << mk->cluster_bits;
	nb_l2 = div_round_up_u64(nb_data, mk->l2_entries) + 1;
	err = mk_refcount_area(mk, ALIGN_DOWN(old + mk->cluster_bytes - 1, mk->cluster_bytes),
			       nb_data + nb_l2, true, 0, 0, NULL, &start);
	if (!err)
		err = mk_alloc_at(mk, start, nb_data, &got);
	if (!err && got != nb_data)
		err = -EIO;
	if (!err)
		err = allocate_file(mk, start + (nb_data << mk->cluster_bits), mode);
	for (host = start; !err && guest < nb_data;) {
		uint64_t k = MIN(nb_data - guest, mk->l2_entries - guest % mk->l2_entries), i;

		err = ensure_l2(mk, guest << mk->cluster_bits);
		for (i = 0; !err && i < k; i++)
			set_l2_entry(mk, guest + i, host + (i << mk->cluster_bits));
		guest += k;
		host += k << mk->cluster_bits;
		if (!err)
			err = write_l2_tables(mk, l1_index(mk, guest << mk->cluster_bits));
	}
	return err ?: write_l2_tables(mk, mk->l1_entries);
}

int qcow2_mk_preallocate(struct qcow2_mk *mk, uint64_t size_bytes, enum qcow2_mk_prealloc mode)
{
	switch (mode) {
	case QCOW2_MK_PREALLOC_OFF:
		return 0;
	case QCOW2_MK_PREALLOC_METADATA:
		return prealloc_metadata(mk, size_bytes);
	default:
		return prealloc_file(mk, size_bytes, mode);
	}
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
			err = mk_write(mk, mk->reftable[i], mk->refblocks[i], mk->cluster_bytes,
				       "refcount block");
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
