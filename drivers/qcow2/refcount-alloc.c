// SPDX-License-Identifier: MIT
/*
 * The allocators of refcount.h (first-fit clusters, clusters at a given
 * offset, bytes for compressed clusters) and what they need: new refcount
 * blocks and refcount table growth.
 *
 * An allocation first chooses its clusters (first fit from the hint; a
 * cluster without a refcount block, or past the end of the table, is
 * free), then makes the refcount blocks that are missing for them, placed
 * outside the chosen clusters so that those stay free: in the range the
 * block describes when that range reaches past the chosen clusters (the
 * block then describes itself, as QEMU's do), otherwise at the first free
 * cluster from the hint.  Only then are the refcounts set.  When the
 * chosen clusters reach past what the table covers, the table grows
 * first: a new area past the covered range (and past the chosen clusters)
 * holds new blocks describing the area, then the new table; both are
 * written and synced before the header is switched.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/format.h"
#include "qcow2/refcount-internal.h"
#include "qcow2/sync-io.h"

_Static_assert(QCOW2_HDR_OFF(refcount_table_clusters) == QCOW2_HDR_OFF(refcount_table_offset) + 8,
	       "the refcount table fields are one 12-byte write");

static bool in_range(uint64_t c, uint64_t start, uint64_t n)
{
	return c >= start && c - start < n;
}

static bool has_block(const struct qcow2_rc *rc, uint64_t ti)
{
	return qcow2_rc_block_offset(rc, ti) != 0;
}

static int no_room(struct qcow2_rc *rc, const char *what)
{
	log_err("qcow2 %s: no room for %s below host offset 2^56 or within the largest refcount "
		"table",
		rc->p.path, what);
	return -EFBIG;
}

/* ---- refcount table growth ------------------------------------------------------- */

struct grow_plan {
	uint64_t first;		 /* table index of the area's first range */
	uint64_t blocks;	 /* refcount blocks at the start of the area */
	uint64_t table_clusters; /* the new table, after them */
	uint64_t entries;	 /* of the new table */
};

/*
 * Size the new table (1.5x, and reaching @need_ti) and the area holding
 * it: the area starts a range past everything the old table covers and
 * past [@a0, @a0 + @an), and its blocks describe the whole area.
 */
static int plan_growth(struct qcow2_rc *rc, uint64_t need_ti, uint64_t a0, uint64_t an,
		       struct grow_plan *g)
{
	const uint64_t per_cluster = rc->cluster_bytes / 8;
	const uint64_t max_entries = QCOW2_MAX_REFTABLE_BYTES / 8;
	uint64_t want = rc->entries + div_round_up_u64(MAX(rc->entries, 1), 2);
	uint64_t first = rc->entries;

	want = MAX(MIN(want, max_entries), need_ti + 1);
	for (;;) {
		uint64_t tcl = div_round_up_u64(want, per_cluster);
		uint64_t nb = div_round_up_u64(tcl, rc->rb_entries - 1);

		if (want > max_entries || first >= rc->max_clusters / rc->rb_entries)
			return no_room(rc, "a larger refcount table");
		if (ranges_overlap(first * rc->rb_entries, nb + tcl, a0, an)) {
			first = div_round_up_u64(a0 + an, rc->rb_entries);
			continue;
		}
		if (first + nb > tcl * per_cluster) {
			want = first + nb;
			continue;
		}
		*g = (struct grow_plan){ first, nb, tcl, tcl * per_cluster };
		break;
	}
	if (g->first * rc->rb_entries + g->blocks + g->table_clusters > rc->max_clusters)
		return no_room(rc, "a larger refcount table");
	return 0;
}

/* The area's blocks and table, in memory; *@blocks are the blocks' structs. */
static int build_area(struct qcow2_rc *rc, const struct grow_plan *g, uint64_t **table_out,
		      struct rc_block **blocks, uint8_t **area_out)
{
	uint64_t area0 = g->first * rc->rb_entries, n = g->blocks + g->table_clusters;
	uint64_t *table = calloc(g->entries, sizeof(*table));
	uint8_t *area = calloc(n, rc->cluster_bytes);

	*table_out = table;
	*area_out = area;
	if (!table || !area)
		return -ENOMEM;
	memcpy(table, rc->table, rc->entries * sizeof(*table));
	for (uint64_t c = area0; c < area0 + n; c++) {
		uint64_t i = c / rc->rb_entries - g->first;

		qcow2_refcount_set(area + i * rc->cluster_bytes, rc->order, c % rc->rb_entries, 1);
	}
	for (uint64_t i = 0; i < g->blocks; i++) {
		table[g->first + i] = (area0 + i) << rc->cluster_bits;
		memcpy(blocks[i]->data, area + i * rc->cluster_bytes, rc->cluster_bytes);
	}
	for (uint64_t i = 0; i < g->entries; i++)
		qcow2_put_be64(area + g->blocks * rc->cluster_bytes + 8 * i, table[i]);
	return 0;
}

static int write_area(struct qcow2_rc *rc, const struct grow_plan *g, const uint8_t *area)
{
	uint64_t off = g->first * rc->rb_entries << rc->cluster_bits;
	uint64_t bytes = (g->blocks + g->table_clusters) << rc->cluster_bits;
	int err = qcow2_pwrite(rc->p.file, off, area, bytes);

	if (!err)
		err = qcow2_fsync(rc->p.file);
	if (err)
		log_err("qcow2 %s: writing the new refcount table area at 0x%" PRIx64 ": %s",
			rc->p.path, off, err_str(err));
	return err;
}

/* The synced 12-byte switch of refcount_table_offset and _clusters. */
static int switch_header(struct qcow2_rc *rc, uint64_t table_off, uint64_t table_clusters)
{
	uint8_t buf[12];
	int err;

	qcow2_put_be64(buf, table_off);
	qcow2_put_be32(buf + 8, (uint32_t)table_clusters);
	err = qcow2_pwrite(rc->p.file, QCOW2_HDR_OFF(refcount_table_offset), buf, sizeof(buf));
	if (!err)
		err = qcow2_fsync(rc->p.file);
	if (err) {
		log_err("qcow2 %s: switching the header to the refcount table at 0x%" PRIx64
			": %s; the image may point to either table now",
			rc->p.path, table_off, err_str(err));
		rc->broken = true;
	}
	return err;
}

static struct rc_block **alloc_blocks(struct qcow2_rc *rc, const struct grow_plan *g)
{
	struct rc_block **blocks = calloc(g->blocks, sizeof(*blocks));

	for (uint64_t i = 0; blocks && i < g->blocks; i++) {
		blocks[i] = calloc(1, sizeof(**blocks));
		if (blocks[i])
			blocks[i]->data = malloc(rc->cluster_bytes);
		if (!blocks[i] || !blocks[i]->data) {
			while (blocks[i]) {
				qcow2_rc_block_free(blocks[i]);
				if (i-- == 0)
					break;
			}
			free(blocks);
			return NULL;
		}
		blocks[i]->ti = g->first + i;
	}
	return blocks;
}

static void free_blocks(struct rc_block **blocks, uint64_t n)
{
	for (uint64_t i = 0; blocks && i < n; i++)
		qcow2_rc_block_free(blocks[i]);
	free(blocks);
}

static int grow_table(struct qcow2_rc *rc, uint64_t need_ti, uint64_t a0, uint64_t an)
{
	struct rc_block **blocks = NULL;
	uint64_t *table = NULL, area0;
	uint8_t *area = NULL;
	struct grow_plan g;
	int err;

	err = plan_growth(rc, need_ti, a0, an, &g);
	if (err)
		return err;
	area0 = g.first * rc->rb_entries;
	err = qcow2_rc_overlap(rc, area0, g.blocks + g.table_clusters, "new refcount table");
	if (!err)
		err = qcow2_rc_resize_arrays(rc, g.entries);
	if (!err)
		err = qcow2_rc_defer_reserve(rc, 1);
	if (!err) {
		blocks = alloc_blocks(rc, &g);
		err = blocks ? build_area(rc, &g, &table, blocks, &area) : -ENOMEM;
	}
	/* the blocks new since the last write-back are in the new table too */
	if (!err)
		err = qcow2_rc_write_blocks(rc);
	if (!err)
		err = write_area(rc, &g, area);
	if (!err)
		err = switch_header(rc, (area0 + g.blocks) << rc->cluster_bits, g.table_clusters);
	free(area);
	if (err) {
		free(table);
		free_blocks(blocks, g.blocks);
		return err;
	}
	log_dbg(LOG_F_QCOW2,
		"qcow2 %s: refcount table grown to %" PRIu64 " entries at 0x%" PRIx64 ", %" PRIu64
		" new blocks at 0x%" PRIx64,
		rc->p.path, g.entries, (area0 + g.blocks) << rc->cluster_bits, g.blocks,
		area0 << rc->cluster_bits);
	qcow2_rc_install_table(rc, table, g.entries, (area0 + g.blocks) << rc->cluster_bits, blocks,
			       g.first, g.blocks);
	free(blocks);
	qcow2_rc_hints_used(rc, area0, g.blocks + g.table_clusters);
	qcow2_rc_raise_file_bytes(rc, (area0 + g.blocks + g.table_clusters) << rc->cluster_bits);
	return 0;
}

/* ---- new refcount blocks ------------------------------------------------------------ */

/* The block of range @ti at cluster @c inside that range: it describes itself. */
static int place_self(struct qcow2_rc *rc, uint64_t ti, uint64_t c)
{
	struct rc_block *b;
	int err = qcow2_rc_overlap(rc, c, 1, "new refcount block");

	if (!err)
		err = qcow2_rc_block_new(rc, ti, c << rc->cluster_bits, &b);
	if (err)
		return err;
	qcow2_refcount_set(b->data, rc->order, c % rc->rb_entries, 1);
	qcow2_rc_hints_used(rc, c, 1);
	qcow2_rc_raise_file_bytes(rc, (c + 1) << rc->cluster_bits);
	return 0;
}

/* The block of range @ti at free cluster @c of another range, which has a block. */
static int place_elsewhere(struct qcow2_rc *rc, uint64_t ti, uint64_t c)
{
	struct rc_block *home, *b;
	int err = qcow2_rc_overlap(rc, c, 1, "new refcount block");

	if (!err)
		err = qcow2_rc_block_get(rc, c / rc->rb_entries, &home);
	assert(err || home);
	/* qcow2_rc_block_new() loads nothing: @home stays cached */
	if (!err)
		err = qcow2_rc_block_new(rc, ti, c << rc->cluster_bits, &b);
	if (err)
		return err;
	qcow2_refcount_set(home->data, rc->order, c % rc->rb_entries, 1);
	qcow2_rc_mark_dirty(rc, home);
	qcow2_rc_hints_used(rc, c, 1);
	qcow2_rc_raise_file_bytes(rc, (c + 1) << rc->cluster_bits);
	return 0;
}

/*
 * The first free cluster from the hint, outside [@a0, @a0 + @an), in a
 * range that has a block.  A range without one on the way gets its block
 * at the free cluster found there, and the search goes on after it.
 */
static int find_home(struct qcow2_rc *rc, uint64_t a0, uint64_t an, uint64_t *out)
{
	uint64_t c = rc->hint[1], v;
	int err;

	for (;;) {
		uint64_t ti = c / rc->rb_entries;

		if (in_range(c, a0, an)) {
			c = a0 + an;
			continue;
		}
		if (c >= rc->max_clusters)
			return no_room(rc, "a refcount block");
		if (ti >= rc->entries) {
			err = grow_table(rc, ti, a0, an);
			if (err)
				return err;
			continue;
		}
		if (!has_block(rc, ti)) {
			err = place_self(rc, ti, c);
			if (err)
				return err;
			c++;
			continue;
		}
		err = qcow2_rc_cluster_get(rc, c, &v);
		if (err)
			return err;
		if (v == 0) {
			*out = c;
			return 0;
		}
		c++;
	}
}

static int create_block(struct qcow2_rc *rc, uint64_t ti, uint64_t a0, uint64_t an)
{
	uint64_t r0 = ti * rc->rb_entries, c = MAX(r0, 1), home;
	int err;

	/* the range has no block: every cluster in it is free */
	if (in_range(c, a0, an))
		c = a0 + an;
	if (c - r0 < rc->rb_entries && c < rc->max_clusters)
		return place_self(rc, ti, c);
	err = find_home(rc, a0, an, &home);
	if (err)
		return err;
	assert(!has_block(rc, ti));
	return place_elsewhere(rc, ti, home);
}

int qcow2_rc_ensure_blocks(struct qcow2_rc *rc, uint64_t c0, uint64_t n)
{
	uint64_t last = (c0 + n - 1) / rc->rb_entries;
	int err = 0;

	for (uint64_t ti = c0 / rc->rb_entries; ti <= last && !err; ti++) {
		if (ti >= rc->entries)
			err = grow_table(rc, last, c0, n);
		if (!err && !has_block(rc, ti))
			err = create_block(rc, ti, c0, n);
	}
	return err;
}

/* ---- the allocators ------------------------------------------------------------------ */

/*
 * The first run of @nr free clusters, searched from the hint for its
 * length; the hints move up past what the search saw.
 */
static int find_run(struct qcow2_rc *rc, uint64_t nr, uint64_t *start)
{
	unsigned h = (unsigned)MIN(nr, (uint64_t)RC_HINTS);
	uint64_t c = rc->hint[h], run = 0, first_free = 0, v;
	int err;

	while (run < nr) {
		uint64_t ti = c / rc->rb_entries;

		if (c - run >= rc->max_clusters || nr > rc->max_clusters - (c - run))
			return no_room(rc, "new clusters");
		if (!has_block(rc, ti)) {
			/* the rest of the range is free (or past the table) */
			uint64_t k = rc->rb_entries - c % rc->rb_entries;

			first_free = first_free ? first_free : c;
			run += k;
			c += k;
			continue;
		}
		err = qcow2_rc_cluster_get(rc, c, &v);
		if (err)
			return err;
		if (v == 0) {
			first_free = first_free ? first_free : c;
			run++;
		} else {
			run = 0;
		}
		c++;
	}
	*start = c - run;
	if (h == 1) {
		rc->hint[1] = first_free;
		for (unsigned k = 2; k <= RC_HINTS; k++)
			rc->hint[k] = MAX(rc->hint[k], first_free);
	}
	/* no run of nr or more starts in [hint[h], start) */
	for (unsigned k = (unsigned)nr; nr <= RC_HINTS && k <= RC_HINTS; k++)
		rc->hint[k] = MAX(rc->hint[k], *start);
	return 0;
}

/* Clusters [@c0, @c0 + @n), known free: blocks, the overlap check, refcount 1. */
static int take(struct qcow2_rc *rc, uint64_t c0, uint64_t n)
{
	int err = qcow2_rc_ensure_blocks(rc, c0, n);

	if (!err)
		err = qcow2_rc_overlap(rc, c0, n, "new cluster");
	if (!err)
		err = qcow2_rc_change(rc, c0, n, 1);
	if (!err)
		qcow2_rc_raise_file_bytes(rc, (c0 + n) << rc->cluster_bits);
	return err;
}

int qcow2_rc_alloc(struct qcow2_rc *rc, uint64_t nr, uint64_t *offset)
{
	uint64_t c0;
	int err;

	if (rc->broken)
		return -EIO;
	if (nr == 0)
		return -EINVAL;
	err = find_run(rc, nr, &c0);
	if (!err)
		err = take(rc, c0, nr);
	if (err)
		return err;
	*offset = c0 << rc->cluster_bits;
	log_dbg(LOG_F_QCOW2, "qcow2 %s: allocated %" PRIu64 " clusters at 0x%" PRIx64, rc->p.path,
		nr, *offset);
	return 0;
}

/* How many of the up to @nr clusters from @c0 are free, stopping at a used one. */
static int count_free(struct qcow2_rc *rc, uint64_t c0, uint64_t nr, uint64_t *n)
{
	uint64_t c = c0, v;
	int err;

	nr = MIN(nr, rc->max_clusters - c0);
	while (c - c0 < nr) {
		uint64_t ti = c / rc->rb_entries;

		if (!has_block(rc, ti)) {
			c += MIN(rc->rb_entries - c % rc->rb_entries, nr - (c - c0));
			continue;
		}
		err = qcow2_rc_cluster_get(rc, c, &v);
		if (err)
			return err;
		if (v)
			break;
		c++;
	}
	*n = c - c0;
	return 0;
}

int qcow2_rc_alloc_at(struct qcow2_rc *rc, uint64_t offset, uint64_t nr, uint64_t *got)
{
	uint64_t c0 = offset >> rc->cluster_bits, n = 0;
	int err;

	*got = 0;
	if (rc->broken)
		return -EIO;
	if (!is_aligned_u64(offset, rc->cluster_bytes))
		return -EINVAL;
	if (c0 >= rc->max_clusters)
		return no_room(rc, "new clusters");
	if (c0 == 0 || nr == 0)
		return 0; /* cluster 0 is the header */
	err = count_free(rc, c0, nr, &n);
	if (!err && n)
		err = take(rc, c0, n);
	if (err)
		return err;
	*got = n;
	return 0;
}

/* One free cluster with a block for it, its refcount still 0. */
static int find_one(struct qcow2_rc *rc, uint64_t *c)
{
	int err = find_run(rc, 1, c);

	if (!err)
		err = qcow2_rc_ensure_blocks(rc, *c, 1);
	if (!err)
		err = qcow2_rc_overlap(rc, *c, 1, "new cluster");
	return err;
}

/*
 * As QEMU's qcow2_alloc_bytes(), except that the next piece starts at the
 * next 512-byte boundary (a compressed cluster's sectors are then its own,
 * which its L2 entry's sector count and qemu-img check count anyway).
 */
int qcow2_rc_alloc_bytes(struct qcow2_rc *rc, uint64_t bytes, uint64_t *offset)
{
	uint64_t cs = rc->cluster_bytes, off = rc->byte_offset, need, room = 0, v = 0, c;
	int err = 0;

	if (rc->broken)
		return -EIO;
	if (bytes == 0 || bytes > cs)
		return -EINVAL;
	need = (bytes + 511) & ~UINT64_C(511);
	if (off)
		err = qcow2_rc_cluster_get(rc, off >> rc->cluster_bits, &v);
	if (err)
		return err;
	/* a full refcount (1-bit refcounts: any) or a freed cluster: start anew */
	if (v == 0 || v == qcow2_refcount_max(rc->order))
		off = 0;
	if (off)
		room = cs - off % cs;
	if (!off || room < need) {
		err = find_one(rc, &c);
		if (err)
			return err;
		if (!off || off + room != c << rc->cluster_bits)
			off = c << rc->cluster_bits;
	}
	err = qcow2_rc_change(
		rc, off >> rc->cluster_bits,
		((off + need - 1) >> rc->cluster_bits) - (off >> rc->cluster_bits) + 1, 1);
	if (err) {
		rc->byte_offset = 0;
		return err;
	}
	qcow2_rc_raise_file_bytes(rc, (off + need + cs - 1) & ~(cs - 1));
	rc->byte_offset = (off + need) % cs ? off + need : 0;
	*offset = off;
	return 0;
}
