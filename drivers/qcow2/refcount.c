// SPDX-License-Identifier: MIT
/*
 * Run-time refcounts (refcount.h): the refcount table in memory, the
 * refcount block cache, refcount changes, deferred frees and write-back.
 * The allocators and table growth are in refcount-alloc.c.
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

#define RC_DEFAULT_CACHE_BYTES (64ull << 20)
#define RC_MIN_CLEAN_BLOCKS 4u

/* ---- lists ------------------------------------------------------------------- */

static void list_remove(struct rc_list *l, struct rc_block *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		l->head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		l->tail = b->prev;
	b->prev = b->next = NULL;
	l->count--;
}

static void list_push_head(struct rc_list *l, struct rc_block *b)
{
	b->prev = NULL;
	b->next = l->head;
	if (l->head)
		l->head->prev = b;
	else
		l->tail = b;
	l->head = b;
	l->count++;
}

/* ---- the block cache ---------------------------------------------------------- */

void qcow2_rc_block_free(struct rc_block *b)
{
	if (!b)
		return;
	free(b->data);
	free(b);
}

static struct rc_block *block_alloc(const struct qcow2_rc *rc, uint64_t ti)
{
	struct rc_block *b = calloc(1, sizeof(*b));

	if (b)
		b->data = calloc(1, rc->cluster_bytes);
	if (!b || !b->data) {
		free(b);
		return NULL;
	}
	b->ti = ti;
	return b;
}

/* Drop least recently used clean blocks beyond the limit. */
static void evict(struct qcow2_rc *rc)
{
	while (rc->clean.count > rc->max_clean) {
		struct rc_block *b = rc->clean.tail;

		list_remove(&rc->clean, b);
		rc->blocks[b->ti] = NULL;
		qcow2_rc_block_free(b);
	}
}

uint64_t qcow2_rc_block_offset(const struct qcow2_rc *rc, uint64_t ti)
{
	return ti < rc->entries ? rc->table[ti] & QCOW2_REFT_OFFSET_MASK : 0;
}

static int load_block(struct qcow2_rc *rc, uint64_t ti, uint64_t off, struct rc_block **out)
{
	struct rc_block *b;
	int err;

	if (!is_aligned_u64(off, rc->cluster_bytes) || off >= QCOW2_MAX_HOST_OFFSET) {
		log_err("qcow2 %s: refcount table entry %" PRIu64 " points to 0x%" PRIx64
			", which is not a valid cluster offset",
			rc->p.path, ti, off);
		return -EIO;
	}
	b = block_alloc(rc, ti);
	if (!b)
		return -ENOMEM;
	err = qcow2_pread(rc->p.file, off, b->data, rc->cluster_bytes);
	if (err) {
		log_err("qcow2 %s: reading the refcount block at 0x%" PRIx64 ": %s", rc->p.path,
			off, err_str(err));
		qcow2_rc_block_free(b);
		return err;
	}
	rc->blocks[ti] = b;
	list_push_head(&rc->clean, b);
	evict(rc);
	*out = b;
	return 0;
}

int qcow2_rc_block_get(struct qcow2_rc *rc, uint64_t ti, struct rc_block **out)
{
	struct rc_block *b;
	uint64_t off;

	*out = NULL;
	if (ti >= rc->entries)
		return 0;
	b = rc->blocks[ti];
	if (b) {
		if (!b->dirty && rc->clean.head != b) {
			list_remove(&rc->clean, b);
			list_push_head(&rc->clean, b);
		}
		*out = b;
		return 0;
	}
	off = qcow2_rc_block_offset(rc, ti);
	return off ? load_block(rc, ti, off, out) : 0;
}

int qcow2_rc_cluster_get(struct qcow2_rc *rc, uint64_t c, uint64_t *refcount)
{
	struct rc_block *b;
	int err = qcow2_rc_block_get(rc, c / rc->rb_entries, &b);

	*refcount = 0;
	if (!err && b)
		*refcount = qcow2_refcount_get(b->data, rc->order, c % rc->rb_entries);
	return err;
}

void qcow2_rc_mark_dirty(struct qcow2_rc *rc, struct rc_block *b)
{
	if (b->dirty)
		return;
	list_remove(&rc->clean, b);
	list_push_head(&rc->dirty, b);
	b->dirty = true;
}

static void mark_stale(struct qcow2_rc *rc, uint64_t ti)
{
	uint64_t chunk = ti / RC_CHUNK_ENTRIES;

	rc->stale[chunk / 64] |= UINT64_C(1) << (chunk % 64);
}

int qcow2_rc_block_new(struct qcow2_rc *rc, uint64_t ti, uint64_t offset, struct rc_block **out)
{
	struct rc_block *b;

	assert(ti < rc->entries && !qcow2_rc_block_offset(rc, ti) && !rc->blocks[ti]);
	b = block_alloc(rc, ti);
	if (!b)
		return -ENOMEM;
	b->dirty = true;
	list_push_head(&rc->dirty, b);
	rc->blocks[ti] = b;
	rc->table[ti] = offset;
	mark_stale(rc, ti);
	log_dbg(LOG_F_QCOW2, "qcow2 %s: new refcount block %" PRIu64 " at 0x%" PRIx64, rc->p.path,
		ti, offset);
	*out = b;
	return 0;
}

static size_t stale_words(uint64_t entries)
{
	return (size_t)div_round_up_u64(div_round_up_u64(entries, RC_CHUNK_ENTRIES), 64);
}

int qcow2_rc_resize_arrays(struct qcow2_rc *rc, uint64_t entries)
{
	size_t old_words = stale_words(rc->entries), words = stale_words(entries);
	struct rc_block **blocks;
	uint64_t *stale;

	assert(entries >= rc->entries);
	blocks = realloc(rc->blocks, MAX(entries, 1) * sizeof(*blocks));
	if (!blocks)
		return -ENOMEM;
	memset(blocks + rc->entries, 0, (entries - rc->entries) * sizeof(*blocks));
	rc->blocks = blocks;
	stale = realloc(rc->stale, MAX(words, 1) * sizeof(*stale));
	if (!stale)
		return -ENOMEM;
	memset(stale + old_words, 0, (words - old_words) * sizeof(*stale));
	rc->stale = stale;
	return 0;
}

/* ---- small helpers for refcount-alloc.c ------------------------------------------ */

void qcow2_rc_hints_used(struct qcow2_rc *rc, uint64_t c0, uint64_t n)
{
	/* no run starts inside [c0, c0 + n) any more */
	for (unsigned k = 1; k <= RC_HINTS; k++) {
		if (rc->hint[k] >= c0 && rc->hint[k] - c0 < n)
			rc->hint[k] = c0 + n;
	}
}

/*
 * A run of k free clusters that exists only now that @c is free starts
 * after c - k: the part of it before @c is shorter than k.
 */
static void hints_freed(struct qcow2_rc *rc, uint64_t c)
{
	for (unsigned k = 1; k <= RC_HINTS; k++)
		rc->hint[k] = MIN(rc->hint[k], c >= k ? c - k + 1 : 1);
}

void qcow2_rc_raise_file_bytes(struct qcow2_rc *rc, uint64_t end_bytes)
{
	if (end_bytes > __atomic_load_n(rc->p.file_bytes, __ATOMIC_ACQUIRE))
		__atomic_store_n(rc->p.file_bytes, end_bytes, __ATOMIC_RELEASE);
}

int qcow2_rc_overlap(struct qcow2_rc *rc, uint64_t c0, uint64_t n, const char *what)
{
	if (!rc->p.overlap_check)
		return 0;
	return rc->p.overlap_check(rc->p.opaque, c0 << rc->cluster_bits, n << rc->cluster_bits,
				   what);
}

/* ---- refcount changes ----------------------------------------------------------- */

/*
 * Add @addend to clusters [@c, @c + @k) of block @b, all or nothing: the
 * first cluster that cannot take it goes to *@bad.
 */
static int block_add(struct qcow2_rc *rc, struct rc_block *b, uint64_t c, uint64_t k,
		     int64_t addend, uint64_t *bad)
{
	uint64_t first = c % rc->rb_entries, v;

	for (uint64_t i = first; i < first + k; i++) {
		if (qcow2_refcount_add(qcow2_refcount_get(b->data, rc->order, i), addend, rc->order,
				       &v)) {
			*bad = c + (i - first);
			return -ERANGE;
		}
	}
	for (uint64_t i = first; i < first + k; i++) {
		qcow2_refcount_add(qcow2_refcount_get(b->data, rc->order, i), addend, rc->order,
				   &v);
		qcow2_refcount_set(b->data, rc->order, i, v);
	}
	qcow2_rc_mark_dirty(rc, b);
	return 0;
}

/* Apply @addend to [@c0, @c0 + @n), block by block; undo on failure. */
static int change_blocks(struct qcow2_rc *rc, uint64_t c0, uint64_t n, int64_t addend,
			 uint64_t *bad)
{
	uint64_t c = c0, end = c0 + n;
	int err = 0;

	while (c < end) {
		uint64_t k = MIN(rc->rb_entries - c % rc->rb_entries, end - c);
		struct rc_block *b;

		err = qcow2_rc_block_get(rc, c / rc->rb_entries, &b);
		if (!err && !b) {
			/* no block: every refcount there is 0 (increments ensured one) */
			assert(addend < 0);
			*bad = c;
			err = addend < 0 ? -ERANGE : -EIO;
		}
		if (!err)
			err = block_add(rc, b, c, k, addend, bad);
		if (err)
			break;
		c += k;
	}
	/* the blocks of [c0, c) are dirty, hence cached: undoing cannot fail */
	for (uint64_t u = c0; err && u < c;) {
		uint64_t k = MIN(rc->rb_entries - u % rc->rb_entries, c - u);
		uint64_t ignored;

		assert(rc->blocks[u / rc->rb_entries] && rc->blocks[u / rc->rb_entries]->dirty);
		if (block_add(rc, rc->blocks[u / rc->rb_entries], u, k, -addend, &ignored))
			assert(!"undoing a refcount change failed");
		u += k;
	}
	return err;
}

static void cluster_freed(struct qcow2_rc *rc, uint64_t c)
{
	hints_freed(rc, c);
	if (rc->byte_offset && rc->byte_offset >> rc->cluster_bits == c)
		rc->byte_offset = 0;
	if (rc->p.cluster_freed)
		rc->p.cluster_freed(rc->p.opaque, c << rc->cluster_bits);
}

int qcow2_rc_change(struct qcow2_rc *rc, uint64_t c0, uint64_t n, int64_t addend)
{
	uint64_t bad = 0, v;
	int err = change_blocks(rc, c0, n, addend, &bad);

	if (err == -ERANGE) {
		qcow2_rc_cluster_get(rc, bad, &v);
		log_err("qcow2 %s: refcount %" PRIu64 " of the cluster at 0x%" PRIx64
			" cannot %s by %" PRIu64 "%s",
			rc->p.path, v, bad << rc->cluster_bits, addend < 0 ? "go down" : "go up",
			addend < 0 ? -(uint64_t)addend : (uint64_t)addend,
			addend < 0 ? " (it would go below zero)" : " (refcount_bits too small)");
	}
	if (err)
		return err;
	if (addend > 0) {
		qcow2_rc_hints_used(rc, c0, n);
		return 0;
	}
	/* decrements: the blocks are dirty, so these reads do no I/O */
	for (uint64_t c = c0; c < c0 + n; c++) {
		if (qcow2_rc_cluster_get(rc, c, &v) == 0 && v == 0)
			cluster_freed(rc, c);
	}
	return 0;
}

/* Clusters touched by [@offset, @offset + @len): -EINVAL when out of range. */
static int byte_range(const struct qcow2_rc *rc, uint64_t offset, uint64_t len, uint64_t *c0,
		      uint64_t *n)
{
	uint64_t end;

	if (len == 0 || ck_add(offset, len, &end) || end > QCOW2_MAX_HOST_OFFSET) {
		log_err("qcow2 %s: refcount update of [0x%" PRIx64 ", +%" PRIu64
			") is outside the host offsets qcow2 can hold",
			rc->p.path, offset, len);
		return -EINVAL;
	}
	*c0 = offset >> rc->cluster_bits;
	*n = ((end - 1) >> rc->cluster_bits) + 1 - *c0;
	return 0;
}

int qcow2_rc_update(struct qcow2_rc *rc, uint64_t offset, uint64_t len, int64_t addend)
{
	uint64_t c0, n;
	int err;

	if (rc->broken)
		return -EIO;
	if (len == 0 || addend == 0)
		return 0;
	err = byte_range(rc, offset, len, &c0, &n);
	if (!err && addend > 0)
		err = qcow2_rc_ensure_blocks(rc, c0, n);
	if (!err)
		err = qcow2_rc_change(rc, c0, n, addend);
	if (err == -ERANGE && addend < 0)
		err = -EIO; /* below zero: an inconsistency */
	return err;
}

int qcow2_rc_get(struct qcow2_rc *rc, uint64_t offset, uint64_t *refcount)
{
	return qcow2_rc_cluster_get(rc, offset >> rc->cluster_bits, refcount);
}

/* ---- deferred frees -------------------------------------------------------------- */

int qcow2_rc_defer_reserve(struct qcow2_rc *rc, size_t more)
{
	struct rc_range *d;
	size_t cap;

	if (rc->cap_deferred - rc->nr_deferred >= more)
		return 0;
	cap = MAX(MAX(rc->cap_deferred * 2, rc->nr_deferred + more), (size_t)16);
	d = realloc(rc->deferred, cap * sizeof(*d));
	if (!d)
		return -ENOMEM;
	rc->deferred = d;
	rc->cap_deferred = cap;
	return 0;
}

int qcow2_rc_free_deferred(struct qcow2_rc *rc, uint64_t offset, uint64_t len)
{
	uint64_t c0, n;
	int err;

	if (rc->broken)
		return -EIO;
	err = byte_range(rc, offset, len, &c0, &n);
	if (!err)
		err = qcow2_rc_defer_reserve(rc, 1);
	if (err)
		return err;
	rc->deferred[rc->nr_deferred++] = (struct rc_range){ offset, len };
	return 0;
}

/*
 * A range that would go below zero is dropped (it never will apply); one
 * that failed otherwise (I/O, memory) stays queued, unchanged, for the
 * next call.
 */
int qcow2_rc_release_deferred(struct qcow2_rc *rc)
{
	size_t kept = 0;
	int ret = 0;

	if (rc->broken)
		return -EIO;
	for (size_t i = 0; i < rc->nr_deferred; i++) {
		struct rc_range r = rc->deferred[i];
		uint64_t c0, n;
		int err = byte_range(rc, r.offset, r.len, &c0, &n);

		if (!err)
			err = qcow2_rc_change(rc, c0, n, -1);
		if (err == -ERANGE)
			err = -EIO;
		else if (err)
			rc->deferred[kept++] = r;
		if (err && !ret)
			ret = err;
	}
	rc->nr_deferred = kept;
	return ret;
}

/* ---- write-back -------------------------------------------------------------------- */

int qcow2_rc_write_blocks(struct qcow2_rc *rc)
{
	struct rc_block *b;
	int err;

	if (!rc->dirty.count)
		return 0;
	for (b = rc->dirty.head; b; b = b->next) {
		uint64_t off = qcow2_rc_block_offset(rc, b->ti);

		err = qcow2_rc_overlap(rc, off >> rc->cluster_bits, 1, "refcount block");
		if (err)
			return err;
		err = qcow2_pwrite(rc->p.file, off, b->data, rc->cluster_bytes);
		if (err) {
			log_err("qcow2 %s: writing the refcount block at 0x%" PRIx64 ": %s",
				rc->p.path, off, err_str(err));
			return err;
		}
	}
	err = qcow2_fsync(rc->p.file);
	if (err) {
		log_err("qcow2 %s: syncing refcount blocks: %s", rc->p.path, err_str(err));
		return err;
	}
	while ((b = rc->dirty.tail)) {
		list_remove(&rc->dirty, b);
		b->dirty = false;
		list_push_head(&rc->clean, b);
	}
	evict(rc);
	return 0;
}

static int write_chunk(struct qcow2_rc *rc, uint64_t chunk)
{
	uint64_t off = rc->p.hdr->refcount_table_offset + chunk * RC_CHUNK_BYTES;
	uint8_t buf[RC_CHUNK_BYTES];
	int err;

	for (unsigned i = 0; i < RC_CHUNK_ENTRIES; i++)
		qcow2_put_be64(buf + 8 * i, rc->table[chunk * RC_CHUNK_ENTRIES + i]);
	if (rc->p.overlap_check) {
		err = rc->p.overlap_check(rc->p.opaque, off, RC_CHUNK_BYTES, "refcount table");
		if (err)
			return err;
	}
	err = qcow2_pwrite(rc->p.file, off, buf, sizeof(buf));
	if (err)
		log_err("qcow2 %s: writing the refcount table at 0x%" PRIx64 ": %s", rc->p.path,
			off, err_str(err));
	return err;
}

/* The table chunks holding entries of new blocks, then a sync. */
static int write_stale_chunks(struct qcow2_rc *rc)
{
	size_t words = stale_words(rc->entries);
	bool any = false;
	int err;

	for (size_t w = 0; w < words; w++) {
		for (uint64_t bits = rc->stale[w]; bits; bits &= bits - 1) {
			err = write_chunk(rc, w * 64 + (uint64_t)__builtin_ctzll(bits));
			if (err)
				return err;
			any = true;
		}
	}
	if (!any)
		return 0;
	err = qcow2_fsync(rc->p.file);
	if (err) {
		log_err("qcow2 %s: syncing the refcount table: %s", rc->p.path, err_str(err));
		return err;
	}
	memset(rc->stale, 0, words * sizeof(*rc->stale));
	return 0;
}

int qcow2_rc_writeback(struct qcow2_rc *rc)
{
	int err;

	if (rc->broken)
		return -EIO;
	err = qcow2_rc_write_blocks(rc);
	if (!err)
		err = write_stale_chunks(rc);
	return err;
}

bool qcow2_rc_dirty(const struct qcow2_rc *rc)
{
	if (rc->dirty.count || rc->nr_deferred)
		return true;
	for (size_t w = 0; w < stale_words(rc->entries); w++) {
		if (rc->stale[w])
			return true;
	}
	return false;
}

const uint64_t *qcow2_rc_reftable(const struct qcow2_rc *rc, uint64_t *entries)
{
	*entries = rc->entries;
	return rc->table;
}

/* ---- table switch ------------------------------------------------------------------- */

void qcow2_rc_install_table(struct qcow2_rc *rc, uint64_t *table, uint64_t entries, uint64_t offset,
			    struct rc_block **blocks, uint64_t first, uint64_t nr)
{
	struct qcow2_header *h = rc->p.hdr;
	uint64_t old_off = h->refcount_table_offset;
	uint64_t old_bytes = (uint64_t)h->refcount_table_clusters << rc->cluster_bits;

	assert(entries >= rc->entries && first + nr <= entries);
	free(rc->table);
	rc->table = table;
	rc->entries = entries;
	memset(rc->stale, 0, stale_words(entries) * sizeof(*rc->stale));
	for (uint64_t i = 0; i < nr; i++) {
		assert(!rc->blocks[first + i]);
		rc->blocks[first + i] = blocks[i];
		list_push_head(&rc->clean, blocks[i]);
	}
	h->refcount_table_offset = offset;
	h->refcount_table_clusters = (uint32_t)(entries * 8 >> rc->cluster_bits);
	/* room was reserved: the old table is freed once the caller's pointers allow */
	if (old_bytes)
		rc->deferred[rc->nr_deferred++] = (struct rc_range){ old_off, old_bytes };
	evict(rc);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static int load_table(struct qcow2_rc *rc)
{
	const struct qcow2_header *h = rc->p.hdr;
	uint64_t bytes = rc->entries * 8;
	int err;

	if (!bytes)
		return 0;
	err = qcow2_pread(rc->p.file, h->refcount_table_offset, rc->table, bytes);
	if (err) {
		log_err("qcow2 %s: reading the refcount table at 0x%" PRIx64 ": %s", rc->p.path,
			h->refcount_table_offset, err_str(err));
		return err;
	}
	for (uint64_t i = 0; i < rc->entries; i++)
		rc->table[i] = be64toh(rc->table[i]);
	return 0;
}

int qcow2_rc_new(const struct qcow2_rc_params *p, struct qcow2_rc **out)
{
	const struct qcow2_geom *g = p->geom;
	uint64_t cache_bytes = p->cache_bytes ? p->cache_bytes : RC_DEFAULT_CACHE_BYTES;
	struct qcow2_rc *rc;
	uint64_t entries;
	int err;

	assert(p->file && p->hdr && g && p->file_bytes && g->refcount_order <= 6);
	*out = NULL;
	rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->p = *p;
	rc->order = g->refcount_order;
	rc->cluster_bits = g->cluster_bits;
	rc->cluster_bytes = g->cluster_bytes;
	rc->rb_entries = g->refblock_entries;
	rc->max_clusters = QCOW2_MAX_HOST_OFFSET >> g->cluster_bits;
	rc->max_clean = MAX(cache_bytes / g->cluster_bytes, (uint64_t)RC_MIN_CLEAN_BLOCKS);
	for (unsigned k = 1; k <= RC_HINTS; k++)
		rc->hint[k] = 1; /* cluster 0 is the header; allocations scan on */
	/* validated by the header parse: at most 8 MiB */
	entries = ((uint64_t)p->hdr->refcount_table_clusters << g->cluster_bits) / 8;
	rc->table = calloc(MAX(entries, 1), sizeof(*rc->table));
	err = rc->table ? qcow2_rc_resize_arrays(rc, entries) : -ENOMEM;
	if (!err) {
		rc->entries = entries;
		err = load_table(rc);
	}
	if (err) {
		if (err == -ENOMEM)
			log_err("qcow2 %s: no memory for the refcount table", p->path);
		qcow2_rc_free(rc);
		return err;
	}
	*out = rc;
	return 0;
}

void qcow2_rc_free(struct qcow2_rc *rc)
{
	struct rc_block *b;

	if (!rc)
		return;
	while ((b = rc->dirty.head)) {
		list_remove(&rc->dirty, b);
		qcow2_rc_block_free(b);
	}
	while ((b = rc->clean.head)) {
		list_remove(&rc->clean, b);
		qcow2_rc_block_free(b);
	}
	free(rc->blocks);
	free(rc->stale);
	free(rc->table);
	free(rc->deferred);
	free(rc);
}

void qcow2_rc_stats(const struct qcow2_rc *rc, struct qcow2_rc_stats *st)
{
	st->cached_blocks = rc->dirty.count + rc->clean.count;
	st->dirty_blocks = rc->dirty.count;
	st->deferred_ranges = rc->nr_deferred;
	st->free_hint = rc->hint[1] << rc->cluster_bits;
}
