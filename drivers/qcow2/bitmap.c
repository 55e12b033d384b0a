// SPDX-License-Identifier: MIT
/*
 * Persistent dirty bitmaps while a qcow2 image is served read-write (see
 * bitmap.h for the lifecycle and which bitmaps are maintained).
 *
 * A maintained bitmap lives in memory as the bytes of its on-disk data, one
 * bit per granule in 64-bit words (little-endian on disk, LSB first), padded
 * to whole data clusters.  Queue threads set bits with atomic ORs and flag
 * the data cluster they changed; a store claims each flag (atomic exchange)
 * before copying that cluster's words, so a bit set meanwhile flags the
 * cluster again for the next store.  Bits are never cleared while the
 * image is open, so a changed cluster is never all zeros.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/bitmap.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"
#include "qcow2/sync-io.h"

/* load_one()'s verdict on a bitmap it could not load (already logged) */
#define NOT_LOADABLE 1

/* One maintained bitmap. */
struct bm {
	struct qcow2_bitmap *ent; /* its directory entry, in b->dir */
	uint64_t nbits;		  /* granules of the disk */
	uint64_t nclusters;	  /* data clusters = table entries */
	uint64_t *words;	  /* nclusters whole clusters of bits; atomics */
	uint8_t *cl_dirty;	  /* per data cluster: changed since stored; atomics */
	uint8_t *owned;		  /* per data cluster: allocated this session, rewritten in place */
	uint64_t *table;	  /* raw entries, host-endian, as the next table write has them */
	uint64_t *disk_table;	  /* as the table on disk has them */
	bool table_dirty;
	uint64_t old_table; /* at open: where the table was before it moved */
};

struct qcow2_bitmaps {
	struct aio_file *file;
	const char *path;
	struct qcow2_header *hdr;
	struct qcow2_rc *rc;
	uint64_t cluster_bytes;
	struct qcow2_bitmap *dir;
	unsigned nb_dir;
	struct bm *bms;
	unsigned nb;
	uint8_t *buf; /* one cluster, or the largest table if larger */
	size_t buf_bytes;
	int changed; /* atomic: a cluster was flagged since the last store began */
	bool retry;  /* the last store failed: look at every flag again */
	bool broken; /* a directory update failed: bitmaps invalidated, stop */
};

static uint64_t words_per_cluster(const struct qcow2_bitmaps *b)
{
	return b->cluster_bytes / 8;
}

static uint64_t table_bytes(const struct bm *bm)
{
	return (uint64_t)bm->ent->table_size * 8;
}

static void bm_fini(struct bm *bm)
{
	free(bm->words);
	free(bm->cl_dirty);
	free(bm->owned);
	free(bm->table);
	free(bm->disk_table);
	memset(bm, 0, sizeof(*bm));
}

void qcow2_bitmaps_free(struct qcow2_bitmaps *b)
{
	unsigned i;

	if (!b)
		return;
	for (i = 0; i < b->nb; i++)
		bm_fini(&b->bms[i]);
	free(b->bms);
	qcow2_bitmap_dir_free(b->dir, b->nb_dir);
	free(b->buf);
	free(b);
}

bool qcow2_bitmaps_words(const struct qcow2_bitmaps *b, const char *name, const uint64_t **words)
{
	unsigned i;

	for (i = 0; b && i < b->nb; i++) {
		if (strcmp(b->bms[i].ent->name, name) == 0) {
			*words = b->bms[i].words;
			return true;
		}
	}
	return false;
}

/* ---- the directory, flag-only updates ------------------------------------------------- */

static int read_dir(struct qcow2_bitmaps *b)
{
	const struct qcow2_bitmaps_ext *ext = &b->hdr->bitmaps;
	uint8_t *buf = malloc(ext->dir_bytes);
	int err;

	if (!buf)
		return -ENOMEM;
	err = qcow2_pread(b->file, ext->dir_offset, buf, ext->dir_bytes);
	if (err)
		log_err("qcow2 %s: read of the bitmap directory at 0x%" PRIx64 ": %s", b->path,
			ext->dir_offset, err_str(err));
	else
		err = qcow2_bitmap_dir_parse(buf, ext->dir_bytes, b->hdr, b->path, &b->dir);
	free(buf);
	if (!err)
		b->nb_dir = ext->nb_bitmaps;
	else if (err == -EINVAL)
		log_err("qcow2 %s: unusable bitmap directory: cannot be opened read/write "
			"(remove the bitmaps with qemu-img bitmap --remove, or open read-only)",
			b->path);
	return err;
}

/* Autoclear bit 0 set or cleared, with one synced write of the field. */
static int write_autoclear(struct qcow2_bitmaps *b, bool set)
{
	uint8_t be[8];
	int err;

	if (set)
		b->hdr->autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
	else
		b->hdr->autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
	qcow2_put_be64(be, b->hdr->autoclear_features);
	err = qcow2_pwrite(b->file, QCOW2_HDR_OFF(autoclear_features), be, sizeof(be));
	if (!err)
		err = qcow2_fsync(b->file);
	return err;
}

/*
 * Rewrite the directory in place with the flags and table offsets of
 * b->dir (same size: names and extra data do not change), the way QEMU
 * updates flags: clear autoclear bit 0 (synced), write the directory
 * (synced), set the bit again (synced).  A torn update leaves the bit
 * clear, and QEMU then ignores the bitmaps instead of trusting them.
 */
static int update_dir(struct qcow2_bitmaps *b)
{
	const struct qcow2_bitmaps_ext *ext = &b->hdr->bitmaps;
	uint8_t *buf = malloc(ext->dir_bytes);
	size_t used = 0;
	int err;

	if (!buf)
		return -ENOMEM;
	err = qcow2_bitmap_dir_serialise(b->dir, b->nb_dir, buf, ext->dir_bytes, &used);
	if (!err && used != ext->dir_bytes)
		err = -EINVAL;
	if (err) {
		log_err("qcow2 %s: bitmap directory does not serialise to its %" PRIu64 " bytes",
			b->path, ext->dir_bytes);
		free(buf);
		return err;
	}
	err = write_autoclear(b, false);
	if (!err)
		err = qcow2_pwrite(b->file, ext->dir_offset, buf, ext->dir_bytes);
	if (!err)
		err = qcow2_fsync(b->file);
	if (!err)
		err = write_autoclear(b, true);
	free(buf);
	if (err) {
		b->broken = true;
		log_err("qcow2 %s: update of the bitmap directory at 0x%" PRIx64
			": %s; the bitmaps may be invalidated (autoclear bit 0 clear)",
			b->path, ext->dir_offset, err_str(err));
	}
	return err;
}

/* ---- loading ---------------------------------------------------------------------- */

static int bm_alloc(struct qcow2_bitmaps *b, struct bm *bm)
{
	uint64_t n = bm->nclusters;

	bm->words = calloc(n, b->cluster_bytes);
	bm->cl_dirty = calloc(n, 1);
	bm->owned = calloc(n, 1);
	bm->table = calloc(n, sizeof(uint64_t));
	bm->disk_table = calloc(n, sizeof(uint64_t));
	if (!bm->words || !bm->cl_dirty || !bm->owned || !bm->table || !bm->disk_table)
		return -ENOMEM;
	return 0;
}

static int __attribute__((format(printf, 3, 4)))
not_loadable(struct qcow2_bitmaps *b, const struct bm *bm, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("qcow2 %s: bitmap \"%s\": %s; it is marked in use (inconsistent) and "
		 "no longer tracks changes (remove it with qemu-img bitmap --remove)",
		 b->path, bm->ent->name, why);
	return NOT_LOADABLE;
}

/* The cluster at @off must be allocated: a bitmap's clusters are never free. */
static int check_refcount(struct qcow2_bitmaps *b, const struct bm *bm, uint64_t off,
			  const char *what)
{
	uint64_t refcount = 0;
	int err = qcow2_rc_get(b->rc, off, &refcount);

	if (err)
		return err;
	if (refcount == 0)
		return not_loadable(b, bm, "its %s at 0x%" PRIx64 " has refcount 0", what, off);
	return 0;
}

static int read_table(struct qcow2_bitmaps *b, struct bm *bm)
{
	const struct qcow2_bitmap *e = bm->ent;
	uint64_t i;
	int err;

	err = qcow2_pread(b->file, e->table_offset, bm->table, table_bytes(bm));
	if (err) {
		log_err("qcow2 %s: read of bitmap \"%s\"'s table at 0x%" PRIx64 ": %s", b->path,
			e->name, e->table_offset, err_str(err));
		return err;
	}
	for (i = 0; i < bm->nclusters; i++)
		bm->table[i] = be64toh(bm->table[i]);
	for (i = 0; i < table_bytes(bm) && !err; i += b->cluster_bytes)
		err = check_refcount(b, bm, e->table_offset + i, "table");
	return err;
}

/* Data cluster @i into the words, as its table entry says. */
static int read_data(struct qcow2_bitmaps *b, struct bm *bm, uint64_t i)
{
	uint64_t wpc = words_per_cluster(b), *w = bm->words + i * wpc, off, k;
	const char *why = NULL;
	bool all_ones;
	int err;

	if (qcow2_bitmap_table_entry_decode(bm->table[i], b->hdr->cluster_bits, &off, &all_ones,
					    &why))
		return not_loadable(b, bm, "table entry %" PRIu64 " (0x%" PRIx64 "): %s", i,
				    bm->table[i], why);
	if (all_ones)
		memset(w, 0xff, b->cluster_bytes);
	if (!off)
		return 0;
	err = check_refcount(b, bm, off, "data cluster");
	if (err)
		return err;
	err = qcow2_pread(b->file, off, w, b->cluster_bytes);
	if (err) {
		log_err("qcow2 %s: read of bitmap \"%s\"'s data at 0x%" PRIx64 ": %s", b->path,
			bm->ent->name, off, err_str(err));
		return err;
	}
	for (k = 0; k < wpc; k++)
		w[k] = le64toh(w[k]);
	return 0;
}

/* Bits past the end of the disk read as zeros and are stored as zeros. */
static void clear_tail(struct qcow2_bitmaps *b, struct bm *bm)
{
	uint64_t total = bm->nclusters * words_per_cluster(b), w = bm->nbits / 64;

	if (w >= total)
		return;
	if (bm->nbits % 64)
		bm->words[w++] &= ~0ull >> (64 - bm->nbits % 64);
	memset(bm->words + w, 0, (total - w) * 8);
}

/*
 * Load the bitmap of directory entry @e into @bm.  0: loaded;
 * NOT_LOADABLE: a problem with the bitmap (logged); -errno: failure.
 */
static int load_one(struct qcow2_bitmaps *b, struct qcow2_bitmap *e, struct bm *bm)
{
	uint64_t size = b->hdr->size_bytes, i;
	int err;

	bm->ent = e;
	bm->nbits = div_round_up_u64(size, 1ull << e->granularity_bits);
	bm->nclusters = qcow2_bitmap_table_entries(size, e->granularity_bits, b->hdr->cluster_bits);
	if (e->table_size != bm->nclusters)
		return not_loadable(b, bm, "its table has %" PRIu32 " entries, not %" PRIu64,
				    e->table_size, bm->nclusters);
	err = bm_alloc(b, bm);
	if (!err)
		err = read_table(b, bm);
	for (i = 0; !err && i < bm->nclusters; i++)
		err = read_data(b, bm, i);
	if (err)
		return err;
	clear_tail(b, bm);
	memcpy(bm->disk_table, bm->table, bm->nclusters * sizeof(uint64_t));
	b->buf_bytes = MAX(b->buf_bytes, (size_t)table_bytes(bm));
	return 0;
}

/* Which bitmaps to maintain; the ones that cannot be get in_use.  *@mark: any. */
static int load_all(struct qcow2_bitmaps *b, bool *mark)
{
	unsigned i;
	int err;

	b->bms = calloc(b->nb_dir, sizeof(*b->bms));
	if (!b->bms)
		return -ENOMEM;
	for (i = 0; i < b->nb_dir; i++) {
		struct qcow2_bitmap *e = &b->dir[i];

		if (e->flags & QCOW2_BME_IN_USE) {
			log_warn("qcow2 %s: bitmap \"%s\" is in use (inconsistent: its last writer "
				 "did not close it); left alone",
				 b->path, e->name);
			continue;
		}
		if (!(e->flags & QCOW2_BME_AUTO))
			continue; /* disabled: never changes, stays as it is */
		if (!qcow2_bitmap_usable(e)) {
			log_err("qcow2 %s: bitmap \"%s\" has extra data this version cannot keep "
				"up to date; cannot be opened read/write",
				b->path, e->name);
			return -ENOTSUP;
		}
		err = load_one(b, e, &b->bms[b->nb]);
		if (err) {
			bm_fini(&b->bms[b->nb]);
			if (err < 0)
				return err;
			e->flags |= QCOW2_BME_IN_USE;
		} else {
			b->nb++;
		}
		*mark = true;
	}
	return 0;
}

/* ---- clusters shared between bitmaps ----------------------------------------------- */

struct owner {
	uint64_t off;
	unsigned bm;
};

static int cmp_owner(const void *a, const void *b)
{
	const struct owner *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

static uint64_t collect_owners(const struct qcow2_bitmaps *b, struct owner *o)
{
	uint64_t n = 0, i, off;
	unsigned k;

	for (k = 0; k < b->nb; k++) {
		const struct bm *bm = &b->bms[k];

		for (off = 0; off < table_bytes(bm); off += b->cluster_bytes)
			o[n++] = (struct owner){ bm->ent->table_offset + off, k };
		for (i = 0; i < bm->nclusters; i++) {
			if (bm->table[i] & QCOW2_BMT_OFFSET_MASK)
				o[n++] = (struct owner){ bm->table[i] & QCOW2_BMT_OFFSET_MASK, k };
		}
	}
	return n;
}

/*
 * A cluster two loaded bitmaps (or one, twice) point to would be freed
 * twice when they move: such bitmaps are not maintained.
 */
static int unload_shared(struct qcow2_bitmaps *b)
{
	uint64_t max = 0, n, i;
	struct owner *o;
	uint8_t *bad;
	unsigned k, kept = 0;

	for (k = 0; k < b->nb; k++)
		max += div_round_up_u64(table_bytes(&b->bms[k]), b->cluster_bytes) +
		       b->bms[k].nclusters;
	o = malloc(MAX(max, (uint64_t)1) * sizeof(*o));
	bad = calloc(MAX(b->nb, 1u), 1);
	if (!o || !bad) {
		free(o);
		free(bad);
		return -ENOMEM;
	}
	n = collect_owners(b, o);
	qsort(o, n, sizeof(*o), cmp_owner);
	for (i = 1; i < n; i++) {
		if (o[i].off == o[i - 1].off)
			bad[o[i].bm] = bad[o[i - 1].bm] = 1;
	}
	for (k = 0; k < b->nb; k++) {
		if (bad[k]) {
			not_loadable(b, &b->bms[k], "it shares clusters with another bitmap");
			b->bms[k].ent->flags |= QCOW2_BME_IN_USE;
			bm_fini(&b->bms[k]);
		} else {
			b->bms[kept++] = b->bms[k];
		}
	}
	b->nb = kept;
	free(o);
	free(bad);
	return 0;
}

/* ---- marking in use at open ----------------------------------------------------------- */

/* Write the table into b->buf as it is on disk (big-endian), @n entries. */
static void put_table(struct qcow2_bitmaps *b, const uint64_t *t, uint64_t n)
{
	uint64_t i;

	memset(b->buf, 0, n * 8);
	for (i = 0; i < n; i++)
		qcow2_put_be64(b->buf + i * 8, t[i]);
}

/* A copy of the table in clusters allocated now: from here on it is written in place. */
static int move_table(struct qcow2_bitmaps *b, struct bm *bm)
{
	uint64_t clusters = div_round_up_u64(table_bytes(bm), b->cluster_bytes), off;
	int err;

	err = qcow2_rc_alloc(b->rc, clusters, &off);
	if (err)
		return err;
	put_table(b, bm->disk_table, bm->nclusters);
	err = qcow2_pwrite(b->file, off, b->buf, table_bytes(bm));
	if (err) {
		log_err("qcow2 %s: write of bitmap \"%s\"'s table at 0x%" PRIx64 ": %s", b->path,
			bm->ent->name, off, err_str(err));
		return err;
	}
	bm->old_table = bm->ent->table_offset;
	bm->ent->table_offset = off;
	bm->ent->flags |= QCOW2_BME_IN_USE;
	return 0;
}

/*
 * Move the loaded bitmaps' tables and set in_use on every bitmap that
 * needs it, in one directory update; then free the old tables.
 */
static int mark_in_use(struct qcow2_bitmaps *b)
{
	unsigned k;
	int err = 0;

	for (k = 0; k < b->nb && !err; k++)
		err = move_table(b, &b->bms[k]);
	if (!err)
		err = qcow2_rc_writeback(b->rc);
	if (!err)
		err = qcow2_fsync(b->file);
	if (!err)
		err = update_dir(b);
	/* nothing points to the old tables any more */
	for (k = 0; k < b->nb && !err; k++)
		err = qcow2_rc_update(b->rc, b->bms[k].old_table, table_bytes(&b->bms[k]), -1);
	if (!err)
		err = qcow2_rc_writeback(b->rc);
	return err;
}

int qcow2_bitmaps_open(const struct qcow2_bitmaps_params *p, struct qcow2_bitmaps **out)
{
	const struct qcow2_header *h = p->hdr;
	struct qcow2_bitmaps *b;
	bool mark = false;
	int err;

	*out = NULL;
	if (h->version < 3 || !h->bitmaps.present ||
	    !(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->file = p->file;
	b->path = p->path;
	b->hdr = p->hdr;
	b->rc = p->rc;
	b->cluster_bytes = 1ull << h->cluster_bits;
	b->buf_bytes = b->cluster_bytes;
	err = read_dir(b);
	if (!err)
		err = load_all(b, &mark);
	if (!err)
		err = unload_shared(b);
	if (!err) {
		b->buf = malloc(b->buf_bytes);
		err = b->buf ? 0 : -ENOMEM;
	}
	if (!err && mark)
		err = mark_in_use(b);
	if (err || b->nb == 0) {
		qcow2_bitmaps_free(b);
		return err;
	}
	log_dbg(LOG_F_QCOW2, "%s: maintaining %u persistent dirty bitmap(s)", p->path, b->nb);
	*out = b;
	return 0;
}

/* ---- marking ------------------------------------------------------------------------ */

/* Set bits [@first, @last] of @bm; true when one was clear. */
static bool mark_bits(struct bm *bm, uint64_t wpc, uint64_t first, uint64_t last)
{
	uint64_t w, w_last = last / 64;
	bool changed = false;

	for (w = first / 64; w <= w_last; w++) {
		unsigned lo = w == first / 64 ? first % 64 : 0;
		unsigned hi = w == w_last ? last % 64 : 63;
		uint64_t mask = (~0ull >> (63 - hi)) & (~0ull << lo);

		if ((__atomic_load_n(&bm->words[w], __ATOMIC_RELAXED) & mask) == mask)
			continue;
		__atomic_fetch_or(&bm->words[w], mask, __ATOMIC_RELAXED);
		/* release: a store that claims the flag sees the bits */
		__atomic_store_n(&bm->cl_dirty[w / wpc], 1, __ATOMIC_RELEASE);
		changed = true;
	}
	return changed;
}

void qcow2_bitmaps_mark(struct qcow2_bitmaps *b, uint64_t offset, uint64_t len)
{
	bool changed = false;
	uint64_t end;
	unsigned k;

	if (!b || !len)
		return;
	if (ck_add(offset, len, &end))
		end = UINT64_MAX;
	for (k = 0; k < b->nb; k++) {
		struct bm *bm = &b->bms[k];
		unsigned g = bm->ent->granularity_bits;
		uint64_t first = offset >> g, last = (end - 1) >> g;

		if (first >= bm->nbits)
			continue;
		changed |= mark_bits(bm, words_per_cluster(b), first, MIN(last, bm->nbits - 1));
	}
	if (changed)
		__atomic_store_n(&b->changed, 1, __ATOMIC_RELEASE);
}

/* ---- storing ------------------------------------------------------------------------ */

/* Copy data cluster @i of @bm into b->buf as it is on disk; false when all zeros. */
static bool snapshot_cluster(struct qcow2_bitmaps *b, struct bm *bm, uint64_t i)
{
	uint64_t wpc = words_per_cluster(b), k, any = 0;
	const uint64_t *w = bm->words + i * wpc;

	for (k = 0; k < wpc; k++) {
		uint64_t v = __atomic_load_n(&w[k], __ATOMIC_RELAXED);

		any |= v;
		v = htole64(v);
		memcpy(b->buf + k * 8, &v, 8);
	}
	return any != 0;
}

/*
 * Write data cluster @i: in place when this session allocated it, else to a
 * new cluster (the table then points there once it is written).
 */
static int store_cluster(struct qcow2_bitmaps *b, struct bm *bm, uint64_t i)
{
	uint64_t off = bm->table[i] & QCOW2_BMT_OFFSET_MASK;
	bool fresh = false;
	int err = 0;

	if (!snapshot_cluster(b, bm, i)) {
		/* all zeros: entry 0 (not expected: bits are only ever set) */
		bm->table_dirty |= bm->table[i] != 0;
		bm->table[i] = 0;
		bm->owned[i] = 0;
		return 0;
	}
	if (!bm->owned[i]) {
		err = qcow2_rc_alloc(b->rc, 1, &off);
		fresh = !err;
	}
	if (!err)
		err = qcow2_pwrite(b->file, off, b->buf, b->cluster_bytes);
	if (err) {
		log_err("qcow2 %s: store of bitmap \"%s\" data at 0x%" PRIx64 ": %s", b->path,
			bm->ent->name, off, err_str(err));
		if (fresh)
			qcow2_rc_update(b->rc, off, b->cluster_bytes, -1);
		return err;
	}
	if (fresh) {
		bm->table[i] = off;
		bm->owned[i] = 1;
		bm->table_dirty = true;
	}
	return 0;
}

/*
 * The data clusters and their refcounts are durable, then the table is
 * written over itself (clusters of this session), then the clusters it no
 * longer points to are freed.
 */
static int commit_table(struct qcow2_bitmaps *b, struct bm *bm, bool sync_refcounts)
{
	uint64_t i;
	int err = 0;

	if (sync_refcounts)
		err = qcow2_rc_writeback(b->rc);
	if (!err)
		err = qcow2_fsync(b->file);
	if (!err) {
		put_table(b, bm->table, bm->nclusters);
		err = qcow2_pwrite(b->file, bm->ent->table_offset, b->buf, table_bytes(bm));
	}
	if (!err)
		err = qcow2_fsync(b->file);
	if (err) {
		log_err("qcow2 %s: write of bitmap \"%s\"'s table at 0x%" PRIx64 ": %s", b->path,
			bm->ent->name, bm->ent->table_offset, err_str(err));
		return err;
	}
	for (i = 0; i < bm->nclusters; i++) {
		uint64_t old = bm->disk_table[i] & QCOW2_BMT_OFFSET_MASK;

		if (old && old != (bm->table[i] & QCOW2_BMT_OFFSET_MASK) &&
		    qcow2_rc_free_deferred(b->rc, old, b->cluster_bytes))
			log_warn("qcow2 %s: bitmap \"%s\": cluster 0x%" PRIx64 " leaked", b->path,
				 bm->ent->name, old);
	}
	memcpy(bm->disk_table, bm->table, bm->nclusters * sizeof(uint64_t));
	bm->table_dirty = false;
	return 0;
}

static int store_one(struct qcow2_bitmaps *b, struct bm *bm, bool sync_refcounts)
{
	uint64_t i;
	int err;

	for (i = 0; i < bm->nclusters; i++) {
		if (!__atomic_load_n(&bm->cl_dirty[i], __ATOMIC_RELAXED) ||
		    !__atomic_exchange_n(&bm->cl_dirty[i], 0, __ATOMIC_ACQUIRE))
			continue;
		err = store_cluster(b, bm, i);
		if (err) {
			__atomic_store_n(&bm->cl_dirty[i], 1, __ATOMIC_RELAXED);
			return err;
		}
	}
	return bm->table_dirty ? commit_table(b, bm, sync_refcounts) : 0;
}

int qcow2_bitmaps_store(struct qcow2_bitmaps *b, bool sync_refcounts)
{
	unsigned k;
	int err = 0;

	if (!b || b->broken)
		return 0;
	if (!__atomic_exchange_n(&b->changed, 0, __ATOMIC_ACQUIRE) && !b->retry)
		return 0;
	for (k = 0; k < b->nb && !err; k++)
		err = store_one(b, &b->bms[k], sync_refcounts);
	b->retry = err != 0;
	return err;
}

int qcow2_bitmaps_close(struct qcow2_bitmaps *b)
{
	unsigned k;
	int err;

	if (!b)
		return 0;
	if (b->broken)
		return -EIO; /* logged when it broke */
	err = qcow2_bitmaps_store(b, true);
	if (!err)
		err = qcow2_fsync(b->file);
	if (!err) {
		for (k = 0; k < b->nb; k++)
			b->bms[k].ent->flags &= ~QCOW2_BME_IN_USE;
		err = update_dir(b);
	}
	if (err)
		log_err("qcow2 %s: persistent bitmaps left in use (inconsistent): %s", b->path,
			err_str(err));
	return err;
}
