// SPDX-License-Identifier: MIT
/*
 * Resizing a qcow2 image offline (resize.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "driver.h"
#include "errors.h"
#include "log.h"
#include "qcow2/bitmap-edit.h"
#include "qcow2/edit.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"
#include "qcow2/resize.h"
#include "qcow2/sync-io.h"

/* What QEMU refuses to resize, in its words. */
static int refuse(const struct qcow2_ed *e)
{
	const struct qcow2_header *h = &e->hdr;

	if (h->nb_snapshots && h->version < 3) {
		log_err("Can't resize a v2 image which has snapshots");
		return -ENOTSUP;
	}
	if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
		log_err("qcow2 %s: resizing an image with an external data file is not supported",
			e->path);
		return -ENOTSUP;
	}
	if (h->crypt_method != QCOW2_CRYPT_NONE) {
		log_err("qcow2 %s: resizing an encrypted image is not supported", e->path);
		return -ENOTSUP;
	}
	return 0;
}

/* ---- growing -------------------------------------------------------------------- */

static int write_l1_fields(struct qcow2_ed *e, uint32_t l1_size, uint64_t l1_off)
{
	uint8_t f[12];
	int err;

	qcow2_put_be32(f, l1_size);
	qcow2_put_be64(f + 4, l1_off);
	err = qcow2_pwrite(e->file, QCOW2_HDR_OFF(l1_size), f, sizeof(f));
	if (!err)
		err = qcow2_fsync(e->file);
	if (err)
		log_err("qcow2 %s: switching the header to the new L1 table: %s", e->path,
			err_str(err));
	return err;
}

/* An L1 table of exactly @n entries in new clusters; the old one freed. */
static int grow_l1(struct qcow2_ed *e, uint64_t n)
{
	uint64_t cb = e->geom.cluster_bytes, nc = div_round_up_u64(n * 8, cb), off;
	uint64_t old_off = e->hdr.l1_table_offset, old_n = e->hdr.l1_size;
	uint64_t *l1 = realloc(e->l1, n * sizeof(*l1));
	int err;

	if (!l1)
		return -ENOMEM;
	e->l1 = l1;
	memset(l1 + old_n, 0, (n - old_n) * sizeof(*l1));
	err = qcow2_rc_alloc(e->rc, nc, &off);
	/* refcounts durable before the header points to the table */
	if (!err)
		err = qcow2_rc_writeback(e->rc);
	if (err)
		return err;
	if (nc * cb > n * 8) { /* the tail of the last cluster: zeros */
		uint64_t tail = nc * cb - n * 8;
		uint8_t *z = calloc(1, tail);

		err = z ? qcow2_pwrite(e->file, off + n * 8, z, tail) : -ENOMEM;
		free(z);
	}
	e->hdr.l1_table_offset = off;
	e->hdr.l1_size = (uint32_t)n;
	if (!err)
		err = qcow2_ed_l1_store(e); /* synced */
	if (!err)
		err = write_l1_fields(e, (uint32_t)n, off);
	if (!err && old_n)
		err = qcow2_rc_free_deferred(e->rc, old_off, old_n * 8);
	return err ? err : qcow2_ed_release(e);
}

/* ---- shrinking ------------------------------------------------------------------ */

/* Drop entries [@first, end) of the table of L1 entry @i; @first 0: the whole table. */
static int cut_table(struct qcow2_ed *e, uint64_t i, uint64_t first)
{
	uint64_t l2_off, j;
	bool copied;
	int err = qcow2_ed_l2_read(e, i, &l2_off, &copied);

	if (err || !l2_off)
		return err;
	for (j = first; !err && j < e->geom.l2_entries; j++)
		err = qcow2_ed_drop_entry(e, j);
	if (err)
		return err;
	if (first == 0) {
		e->l1[i] = 0;
		e->l1_dirty = true;
		return qcow2_rc_free_deferred(e->rc, l2_off, e->geom.cluster_bytes);
	}
	memset(e->l2 + first * e->geom.l2_entry_bytes, 0,
	       (e->geom.l2_entries - first) * e->geom.l2_entry_bytes);
	return qcow2_ed_l2_store(e, i, l2_off, copied);
}

/* The file ends after the last cluster in use. */
static int trim_file(struct qcow2_ed *e)
{
	uint64_t cb = e->geom.cluster_bytes, end = div_round_up_u64(e->file_bytes, cb) * cb, rc = 0;
	int err = 0;

	while (end > cb && !err && rc == 0) {
		err = qcow2_rc_get(e->rc, end - cb, &rc);
		if (!err && rc == 0)
			end -= cb;
	}
	if (!err && end < e->file_bytes) {
		int terr = qcow2_ftruncate(e->file, end);

		if (terr)
			log_warn("qcow2 %s: could not cut the file to %" PRIu64 " bytes: %s",
				 e->path, end, err_str(terr));
	}
	return err;
}

static int shrink(struct qcow2_ed *e, uint64_t size)
{
	uint64_t cb = e->geom.cluster_bytes, span = e->geom.l2_entries * cb;
	uint64_t keep = div_round_up_u64(size, cb) * cb, i = keep / span;
	int err = 0;

	if (i < e->hdr.l1_size && keep % span)
		err = cut_table(e, i++, (keep % span) / cb);
	for (; !err && i < e->hdr.l1_size; i++)
		err = cut_table(e, i, 0);
	if (!err)
		err = qcow2_ed_release(e);
	return err;
}

/* ---- preallocation -------------------------------------------------------------- */

/* Host clusters for @n guest clusters from entry @j, data written as @mode asks. */
static int prealloc_run(struct qcow2_ed *e, uint64_t j, uint64_t n, enum qcow2_prealloc mode)
{
	uint64_t cb = e->geom.cluster_bytes, off, k, entry;
	int err = qcow2_rc_alloc(e->rc, n, &off);

	if (err)
		return err;
	if (mode == QCOW2_PREALLOC_FALLOC && fallocate(e->file->fd, 0, (off_t)off, (off_t)(n * cb)))
		err = -errno;
	if (mode == QCOW2_PREALLOC_FULL) {
		uint8_t *z = calloc(1, cb);

		for (k = 0; z && !err && k < n; k++)
			err = qcow2_pwrite(e->file, off + k * cb, z, cb);
		if (!z)
			err = -ENOMEM;
		free(z);
	}
	if (!err && (uint64_t)lseek(e->file->fd, 0, SEEK_END) < off + n * cb)
		err = qcow2_ftruncate(e->file, off + n * cb);
	for (k = 0; !err && k < n; k++) {
		uint8_t *p = e->l2 + (j + k) * e->geom.l2_entry_bytes;

		err = qcow2_l2_entry_encode_normal(&e->geom, off + k * cb, true, &entry);
		qcow2_put_be64(p, entry);
		if (e->geom.extended_l2)
			qcow2_put_be64(p + 8, QCOW2_SC_ALL_ALLOC);
	}
	if (err)
		log_err("qcow2 %s: preallocating %" PRIu64 " clusters at 0x%" PRIx64 ": %s",
			e->path, n, off, err_str(err));
	return err;
}

/* Map the unallocated clusters of entries [@first, @last) of L1 entry @i. */
static int prealloc_table(struct qcow2_ed *e, uint64_t i, uint64_t first, uint64_t last,
			  enum qcow2_prealloc mode)
{
	uint64_t l2_off, j, run;
	bool copied;
	int err = qcow2_ed_l2_read(e, i, &l2_off, &copied);

	if (!err && !l2_off)
		memset(e->l2, 0, e->geom.cluster_bytes);
	for (j = first; !err && j < last; j += run) {
		run = 0;
		while (j + run < last && qcow2_ed_l2_word(e, j + run, 0) == 0 &&
		       (!e->geom.extended_l2 || qcow2_ed_l2_word(e, j + run, 1) == 0))
			run++;
		if (run)
			err = prealloc_run(e, j, run, mode);
		else
			run = 1;
	}
	/* the data (and its refcounts) durable before the table points to it */
	if (!err)
		err = qcow2_rc_writeback(e->rc);
	if (!err)
		err = qcow2_fsync(e->file);
	if (!err)
		err = qcow2_ed_l2_store(e, i, l2_off, copied && l2_off);
	if (!err && e->l1_dirty)
		err = qcow2_ed_release(e);
	return err;
}

static int prealloc(struct qcow2_ed *e, uint64_t old, uint64_t size, enum qcow2_prealloc mode)
{
	uint64_t cb = e->geom.cluster_bytes;
	uint64_t c = old / cb, end = div_round_up_u64(size, cb), per = e->geom.l2_entries;
	int err = 0;

	while (!err && c < end) {
		uint64_t i = c / per, last = MIN(end - i * per, per);

		err = prealloc_table(e, i, c % per, last, mode);
		c = (i + 1) * per;
	}
	return err;
}

/* ---- hiding a longer backing file ------------------------------------------------ */

/* Entry @j of e->l2 reads as zeros from now on (QEMU's zeroize without unmap). */
static int zero_entry(struct qcow2_ed *e, uint64_t j)
{
	uint8_t *p = e->l2 + j * e->geom.l2_entry_bytes;
	uint64_t entry = qcow2_get_be64(p);
	struct qcow2_l2_entry d;
	const char *why;
	int err = 0;

	if (qcow2_l2_entry_decode(&e->geom, entry,
				  e->geom.extended_l2 ? qcow2_ed_l2_word(e, j, 1) : 0, &d,
				  &why) < 0) {
		log_err("qcow2 %s: L2 entry %" PRIu64 ": %s", e->path, j, why);
		return -EIO;
	}
	if (d.type == QCOW2_CLUSTER_COMPRESSED) {
		err = qcow2_ed_drop_entry(e, j);
		entry = 0;
	}
	if (e->geom.extended_l2) {
		qcow2_put_be64(p, entry);
		qcow2_put_be64(p + 8, QCOW2_SC_ALL_ZERO);
	} else {
		qcow2_put_be64(p, entry | QCOW2_OFLAG_ZERO);
	}
	return err;
}

static int zero_table(struct qcow2_ed *e, uint64_t i, uint64_t first, uint64_t last)
{
	uint64_t l2_off, j;
	bool copied;
	int err = qcow2_ed_l2_read(e, i, &l2_off, &copied);

	if (!err && !l2_off)
		memset(e->l2, 0, e->geom.cluster_bytes);
	for (j = first; !err && j < last; j++)
		err = zero_entry(e, j);
	if (!err)
		err = qcow2_ed_l2_store(e, i, l2_off, copied && l2_off);
	return err;
}

/* The cluster holding the old end, whole in a new cluster: data, then zeros. */
static int rewrite_head(struct qcow2_ed *e, uint64_t old, const struct qcow2_resize_args *a)
{
	uint64_t cb = e->geom.cluster_bytes, start = old / cb * cb, per = e->geom.l2_entries;
	uint64_t i = start / cb / per, j = start / cb % per, l2_off, off, entry;
	uint8_t *buf = a->head ? calloc(1, cb) : NULL;
	bool copied;
	int err = buf ? 0 : a->head ? -ENOMEM : -EINVAL;

	if (!err)
		memcpy(buf, (const uint8_t *)a->head + (start - a->head_offset), old - start);
	if (!err)
		err = qcow2_rc_alloc(e->rc, 1, &off);
	if (!err)
		err = qcow2_pwrite(e->file, off, buf, cb);
	free(buf);
	/* the data and its refcount durable before the entry that points to it */
	if (!err)
		err = qcow2_rc_writeback(e->rc);
	if (!err)
		err = qcow2_fsync(e->file);
	if (!err)
		err = qcow2_ed_l2_read(e, i, &l2_off, &copied);
	if (!err && !l2_off)
		memset(e->l2, 0, cb);
	else if (!err)
		err = qcow2_ed_drop_entry(e, j);
	if (!err)
		err = qcow2_l2_entry_encode_normal(&e->geom, off, true, &entry);
	if (!err) {
		qcow2_put_be64(e->l2 + j * e->geom.l2_entry_bytes, entry);
		if (e->geom.extended_l2)
			qcow2_put_be64(e->l2 + j * e->geom.l2_entry_bytes + 8, QCOW2_SC_ALL_ALLOC);
		err = qcow2_ed_l2_store(e, i, l2_off, copied && l2_off);
	}
	return err ? err : qcow2_ed_release(e);
}

static int zero_new(struct qcow2_ed *e, uint64_t old, const struct qcow2_resize_args *a)
{
	uint64_t cb = e->geom.cluster_bytes, per = e->geom.l2_entries;
	uint64_t c = div_round_up_u64(old, cb), end = div_round_up_u64(a->size_bytes, cb);
	int err = 0;

	if (e->hdr.version < 3) {
		log_err("Failed to zero out new clusters: Operation not supported");
		return -ENOTSUP;
	}
	if (old % cb)
		err = rewrite_head(e, old, a);
	while (!err && c < end) {
		uint64_t i = c / per, last = MIN(end - i * per, per);

		err = zero_table(e, i, c % per, last);
		c = (i + 1) * per;
	}
	return err ? err : qcow2_ed_release(e);
}

/* ---- the size ------------------------------------------------------------------- */

static int write_size(struct qcow2_ed *e, uint64_t size)
{
	uint8_t f[8];
	int err;

	qcow2_put_be64(f, size);
	err = qcow2_pwrite(e->file, QCOW2_HDR_OFF(size), f, sizeof(f));
	if (!err)
		err = qcow2_fsync(e->file);
	if (err)
		log_err("qcow2 %s: writing the new size in the header: %s", e->path, err_str(err));
	return err;
}

/*
 * Before anything changes: bitmaps that cannot follow the disk (an
 * inconsistent one) refuse the resize now, not after clusters were cut.
 */
static int bitmaps_resizable(const char *path, uint64_t size)
{
	struct qcow2_bme *b;
	int err = qcow2_bme_open(path, false, false, &b);

	if (!err)
		err = qcow2_bme_resize(b, size); /* in memory only: not committed */
	qcow2_bme_close(b);
	return err;
}

/* The bitmaps follow the disk; their header switch carries the size. */
static int resize_bitmaps(const char *path, uint64_t size)
{
	struct qcow2_bme *b;
	int err = qcow2_bme_open(path, false, false, &b);

	if (!err)
		err = qcow2_bme_resize(b, size);
	if (!err)
		err = qcow2_bme_commit(b);
	qcow2_bme_close(b);
	return err;
}

static int resize_tables(struct qcow2_ed *e, const struct qcow2_resize_args *a)
{
	uint64_t old = e->hdr.size_bytes, size = a->size_bytes;
	enum qcow2_prealloc prealloc_mode = a->prealloc;
	uint64_t n = qcow2_size_to_l1(e->geom.cluster_bits, e->geom.extended_l2, size);
	int err = 0;

	if (size < old && prealloc_mode != QCOW2_PREALLOC_OFF) {
		log_err("Preallocation can't be used for shrinking an image");
		return -EINVAL;
	}
	if (size < old)
		return shrink(e, size);
	if (n > e->hdr.l1_size) {
		if (n > QCOW2_MAX_L1_BYTES / 8) {
			log_err("Failed to grow the L1 table: File too large");
			return -EFBIG;
		}
		err = grow_l1(e, n);
	}
	if (!err && prealloc_mode != QCOW2_PREALLOC_OFF)
		err = prealloc(e, old, size, prealloc_mode);
	if (!err && a->zero_new && size > old)
		err = zero_new(e, old, a);
	return err;
}

int qcow2_resize(const char *path, const struct qcow2_resize_args *a)
{
	uint64_t size_bytes = a->size_bytes;
	struct qcow2_ed e = { 0 };
	bool shrinking, bitmaps;
	int err;

	if (size_bytes % 512) {
		log_err("The new size must be a multiple of 512");
		return -EINVAL;
	}
	err = qcow2_ed_open(&e, path);
	if (!err)
		err = refuse(&e);
	if (!err && e.bitmaps) {
		qcow2_ed_close(&e);
		memset(&e, 0, sizeof(e));
		err = bitmaps_resizable(path, size_bytes);
		if (!err)
			err = qcow2_ed_open(&e, path);
	}
	if (!err)
		err = resize_tables(&e, a);
	bitmaps = e.bitmaps;
	shrinking = size_bytes < e.hdr.size_bytes;
	if (!err && !bitmaps)
		err = write_size(&e, size_bytes);
	if (!err && shrinking)
		err = trim_file(&e);
	qcow2_ed_close(&e);
	if (!err && bitmaps)
		err = resize_bitmaps(path, size_bytes);
	return err;
}
