// SPDX-License-Identifier: MIT
/*
 * Editing persistent dirty bitmaps offline (bitmap-edit.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/bitmap-edit.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/edit.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"
#include "qcow2/sync-io.h"

struct bme_bitmap {
	struct qcow2_bitmap ent; /* owned; table_offset/size: on disk until the commit */
	uint8_t *bits;		 /* whole table's worth of clusters; NULL: inconsistent */
	uint64_t nbits;		 /* granules of the disk */
	uint64_t nclusters;	 /* table entries the disk needs */
	bool on_disk;		 /* ent's table and data are clusters of the image */
};

struct bme_range {
	uint64_t off;
	uint64_t len;
};

struct qcow2_bme {
	struct qcow2_ed ed; /* the header and, when writable, the refcounts */
	char *path;
	struct bme_bitmap *bms;
	unsigned nb;
	struct bme_range *frees; /* freed once the new directory is in the header */
	unsigned nb_frees;
	uint8_t *buf; /* one cluster */
};

uint64_t qcow2_bme_disk_bytes(const struct qcow2_bme *e)
{
	return e->ed.hdr.size_bytes;
}

uint64_t qcow2_bme_cluster_bytes(const struct qcow2_bme *e)
{
	return e->ed.geom.cluster_bytes;
}

static struct bme_bitmap *find(struct qcow2_bme *e, const char *name)
{
	unsigned i;

	for (i = 0; i < e->nb; i++) {
		if (strcmp(e->bms[i].ent.name, name) == 0)
			return &e->bms[i];
	}
	return NULL;
}

/* The bitmap @name, consistent; logged in QEMU's words otherwise. */
static struct bme_bitmap *find_usable(struct qcow2_bme *e, const char *name)
{
	struct bme_bitmap *bm = find(e, name);

	if (!bm) {
		log_err("Dirty bitmap '%s' not found", name);
		return NULL;
	}
	if (!bm->bits) {
		log_err("Bitmap '%s' is inconsistent and cannot be used (remove it with --remove)",
			name);
		return NULL;
	}
	return bm;
}

static int add_free(struct qcow2_bme *e, uint64_t off, uint64_t len)
{
	struct bme_range *r = realloc(e->frees, (e->nb_frees + 1) * sizeof(*r));

	if (!r)
		return -ENOMEM;
	e->frees = r;
	e->frees[e->nb_frees++] = (struct bme_range){ off, len };
	return 0;
}

static void bitmap_fini(struct bme_bitmap *bm)
{
	free(bm->bits);
	free(bm->ent.name);
	free(bm->ent.extra_data);
	memset(bm, 0, sizeof(*bm));
}

/* ---- loading ---------------------------------------------------------------------- */

static int read_table(struct qcow2_bme *e, const struct qcow2_bitmap *ent, uint64_t **out)
{
	uint64_t n = ent->table_size, i;
	uint64_t *t = calloc(n ? n : 1, sizeof(*t));
	int err = t ? 0 : -ENOMEM;

	if (!err)
		err = qcow2_pread(e->ed.file, ent->table_offset, t, n * 8);
	if (err) {
		log_err("qcow2 %s: bitmap '%s': reading its table at 0x%" PRIx64 ": %s", e->path,
			ent->name, ent->table_offset, err_str(err));
		free(t);
		return err;
	}
	for (i = 0; i < n; i++)
		t[i] = qcow2_get_be64(&t[i]);
	*out = t;
	return 0;
}

/* Queue the table and data clusters of the on-disk bitmap @ent for freeing. */
static int free_on_disk(struct qcow2_bme *e, const struct qcow2_bitmap *ent)
{
	uint64_t *t, i, off;
	const char *why;
	bool ones;
	int err = read_table(e, ent, &t);

	for (i = 0; !err && i < ent->table_size; i++) {
		if (qcow2_bitmap_table_entry_decode(t[i], e->ed.geom.cluster_bits, &off, &ones,
						    &why) == 0 &&
		    off)
			err = add_free(e, off, e->ed.geom.cluster_bytes);
	}
	if (!err)
		err = add_free(e, ent->table_offset, (uint64_t)ent->table_size * 8);
	free(t);
	return err;
}

static uint64_t nclusters_for(const struct qcow2_bme *e, unsigned gran_bits, uint64_t *nbits)
{
	*nbits = div_round_up_u64(e->ed.hdr.size_bytes, 1ull << gran_bits);
	return qcow2_bitmap_table_entries(e->ed.hdr.size_bytes, gran_bits, e->ed.geom.cluster_bits);
}

static int load_bits(struct qcow2_bme *e, struct bme_bitmap *bm)
{
	uint64_t cb = e->ed.geom.cluster_bytes, *t, i, off;
	const char *why;
	bool ones;
	int err;

	bm->nclusters = nclusters_for(e, bm->ent.granularity_bits, &bm->nbits);
	bm->bits = calloc(bm->nclusters ? bm->nclusters : 1, cb);
	if (!bm->bits)
		return -ENOMEM;
	err = read_table(e, &bm->ent, &t);
	for (i = 0; !err && i < bm->nclusters; i++) {
		err = qcow2_bitmap_table_entry_decode(t[i], e->ed.geom.cluster_bits, &off, &ones,
						      &why);
		if (err) {
			log_err("qcow2 %s: bitmap '%s': table entry %" PRIu64 ": %s", e->path,
				bm->ent.name, i, why);
		} else if (off) {
			err = qcow2_pread(e->ed.file, off, bm->bits + i * cb, cb);
			if (err)
				log_err("qcow2 %s: bitmap '%s': reading data at 0x%" PRIx64 ": %s",
					e->path, bm->ent.name, off, err_str(err));
		} else if (ones) {
			memset(bm->bits + i * cb, 0xff, cb);
		}
	}
	free(t);
	return err;
}

static int load_dir(struct qcow2_bme *e)
{
	const struct qcow2_bitmaps_ext *ext = &e->ed.hdr.bitmaps;
	struct qcow2_bitmap *dir = NULL;
	uint8_t *buf;
	unsigned i;
	int err;

	if (!ext->present || !(e->ed.hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) ||
	    !ext->nb_bitmaps)
		return 0;
	buf = malloc(ext->dir_bytes);
	if (!buf)
		return -ENOMEM;
	err = qcow2_pread(e->ed.file, ext->dir_offset, buf, ext->dir_bytes);
	if (!err)
		err = qcow2_bitmap_dir_parse(buf, ext->dir_bytes, &e->ed.hdr, e->path, &dir);
	free(buf);
	if (err)
		return err;
	e->bms = calloc(ext->nb_bitmaps, sizeof(*e->bms));
	if (!e->bms) {
		qcow2_bitmap_dir_free(dir, ext->nb_bitmaps);
		return -ENOMEM;
	}
	for (i = 0; i < ext->nb_bitmaps; i++) {
		e->bms[i].ent = dir[i]; /* takes the strings */
		e->bms[i].on_disk = true;
	}
	free(dir);
	e->nb = ext->nb_bitmaps;
	for (i = 0; !err && i < e->nb; i++) {
		struct bme_bitmap *bm = &e->bms[i];

		if (bm->ent.extra_data_size) {
			log_err("qcow2 %s: bitmap '%s' has extra data: not supported", e->path,
				bm->ent.name);
			return -ENOTSUP;
		}
		err = qcow2_bitmap_validate(&bm->ent, e->ed.geom.cluster_bits, e->ed.hdr.size_bytes,
					    e->path);
		if (!err && !(bm->ent.flags & QCOW2_BME_IN_USE))
			err = load_bits(e, bm);
	}
	return err;
}

static int bme_setup(struct qcow2_bme *e, bool shared)
{
	unsigned how = e->ed.readonly ? QCOW2_ED_RDONLY | (shared ? QCOW2_ED_SHARED : 0) : 0;
	int err = qcow2_ed_open_how(&e->ed, e->path, how);

	if (err)
		return err;
	e->buf = calloc(1, e->ed.geom.cluster_bytes);
	return e->buf ? load_dir(e) : -ENOMEM;
}

int qcow2_bme_open(const char *path, bool readonly, bool shared, struct qcow2_bme **out)
{
	struct qcow2_bme *e = calloc(1, sizeof(*e));
	int err;

	if (!e || !(e->path = strdup(path))) {
		free(e);
		return -ENOMEM;
	}
	e->ed.readonly = readonly;
	err = bme_setup(e, shared);
	if (err) {
		qcow2_bme_close(e);
		return err;
	}
	*out = e;
	return 0;
}

void qcow2_bme_close(struct qcow2_bme *e)
{
	unsigned i;

	if (!e)
		return;
	for (i = 0; i < e->nb; i++)
		bitmap_fini(&e->bms[i]);
	free(e->bms);
	free(e->frees);
	free(e->buf);
	qcow2_ed_close(&e->ed);
	free(e->path);
	free(e);
}

/* ---- operations ------------------------------------------------------------------- */

int qcow2_bme_add(struct qcow2_bme *e, const char *name, unsigned gran_bits)
{
	struct bme_bitmap *bms, *bm;

	if (e->ed.hdr.version < 3) {
		log_err("Can't make bitmap '%s' persistent in '%s': Cannot store dirty bitmaps in "
			"qcow2 v2 files",
			name, e->path);
		return -ENOTSUP;
	}
	if (find(e, name)) {
		log_err("Bitmap already exists: %s", name);
		return -EEXIST;
	}
	if (strlen(name) > QCOW2_BME_MAX_NAME_BYTES || !*name) {
		log_err("Can't make bitmap '%s' persistent in '%s': Name length exceeds maximum "
			"(1023 characters)",
			name, e->path);
		return -EINVAL;
	}
	bms = realloc(e->bms, (e->nb + 1) * sizeof(*bms));
	if (!bms)
		return -ENOMEM;
	e->bms = bms;
	bm = &e->bms[e->nb];
	*bm = (struct bme_bitmap){ .ent = { .type = QCOW2_BME_TYPE_DIRTY_TRACKING,
					    .granularity_bits = (uint8_t)gran_bits,
					    .flags = QCOW2_BME_AUTO } };
	bm->nclusters = nclusters_for(e, gran_bits, &bm->nbits);
	bm->ent.name = strdup(name);
	bm->bits = calloc(bm->nclusters ? bm->nclusters : 1, e->ed.geom.cluster_bytes);
	if (!bm->ent.name || !bm->bits) {
		bitmap_fini(bm);
		return -ENOMEM;
	}
	e->nb++;
	return 0;
}

int qcow2_bme_remove(struct qcow2_bme *e, const char *name)
{
	struct bme_bitmap *bm = find(e, name);
	int err = 0;

	if (!bm) {
		log_err("Dirty bitmap '%s' not found", name);
		return -ENOENT;
	}
	if (bm->on_disk)
		err = free_on_disk(e, &bm->ent);
	if (err)
		return err;
	bitmap_fini(bm);
	memmove(bm, bm + 1, (size_t)(&e->bms[e->nb] - (bm + 1)) * sizeof(*bm));
	e->nb--;
	return 0;
}

int qcow2_bme_remove_all(struct qcow2_bme *e)
{
	int err = 0;

	while (!err && e->nb)
		err = qcow2_bme_remove(e, e->bms[0].ent.name);
	return err;
}

int qcow2_bme_clear(struct qcow2_bme *e, const char *name)
{
	struct bme_bitmap *bm = find_usable(e, name);

	if (!bm)
		return -ENOENT;
	memset(bm->bits, 0, bm->nclusters * e->ed.geom.cluster_bytes);
	return 0;
}

int qcow2_bme_enable(struct qcow2_bme *e, const char *name, bool enable)
{
	struct bme_bitmap *bm = find_usable(e, name);

	if (!bm)
		return -ENOENT;
	if (enable)
		bm->ent.flags |= QCOW2_BME_AUTO;
	else
		bm->ent.flags &= ~QCOW2_BME_AUTO;
	return 0;
}

static bool bit_get(const uint8_t *bits, uint64_t i)
{
	return bits[i / 8] & (1u << (i % 8));
}

/* Set the bits of @dst covering bytes [@start, @end) of the disk. */
static void set_range(struct bme_bitmap *dst, uint64_t start, uint64_t end)
{
	uint64_t first = start >> dst->ent.granularity_bits;
	uint64_t last = MIN((end - 1) >> dst->ent.granularity_bits, dst->nbits - 1), i;

	for (i = first; i <= last; i++)
		dst->bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

int qcow2_bme_merge(struct qcow2_bme *e, const char *dst_name, struct qcow2_bme *src,
		    const char *src_name)
{
	struct bme_bitmap *dst = find_usable(e, dst_name), *s = find_usable(src, src_name);
	uint64_t i, gs, disk = e->ed.hdr.size_bytes;

	if (!dst || !s)
		return -ENOENT;
	if (src->ed.hdr.size_bytes != disk) {
		log_err("Bitmaps are incompatible and can't be merged");
		return -EINVAL;
	}
	gs = 1ull << s->ent.granularity_bits;
	for (i = 0; i < s->nbits; i++) {
		static const uint8_t zero8[8];

		if (i % 64 == 0 && i + 64 <= s->nbits && !memcmp(s->bits + i / 8, zero8, 8)) {
			i += 63;
			continue;
		}
		if (bit_get(s->bits, i))
			set_range(dst, i * gs, MIN((i + 1) * gs, disk));
	}
	return 0;
}

static int resize_bits(struct qcow2_bme *e, struct bme_bitmap *bm)
{
	uint64_t cb = e->ed.geom.cluster_bytes, old = bm->nclusters * cb, nbits, nc, bytes, i;
	uint8_t *bits;

	nc = nclusters_for(e, bm->ent.granularity_bits, &nbits);
	bytes = nc * cb;
	bits = realloc(bm->bits, bytes ? bytes : 1);
	if (!bits)
		return -ENOMEM;
	if (bytes > old)
		memset(bits + old, 0, bytes - old);
	/* bits past the new end: a later growth must find them clear */
	for (i = nbits; i < bytes * 8 && i % 8; i++)
		bits[i / 8] &= (uint8_t) ~(1u << (i % 8));
	if (div_round_up_u64(nbits, 8) < bytes)
		memset(bits + div_round_up_u64(nbits, 8), 0, bytes - div_round_up_u64(nbits, 8));
	bm->bits = bits;
	bm->nbits = nbits;
	bm->nclusters = nc;
	return 0;
}

int qcow2_bme_resize(struct qcow2_bme *e, uint64_t size_bytes)
{
	unsigned i;
	int err = 0;

	for (i = 0; i < e->nb; i++) {
		if (!e->bms[i].bits) {
			log_err("Bitmap '%s' is inconsistent and cannot be used (remove it with "
				"--remove before resizing)",
				e->bms[i].ent.name);
			return -EBUSY;
		}
	}
	e->ed.hdr.size_bytes = size_bytes;
	for (i = 0; !err && i < e->nb; i++)
		err = resize_bits(e, &e->bms[i]);
	return err;
}

/* ---- the commit ------------------------------------------------------------------- */

static bool cluster_is_zero(const uint8_t *p, uint64_t len)
{
	return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

/* Allocate and write @len bytes of @data in whole new clusters; *@off gets where. */
static int write_new(struct qcow2_bme *e, const void *data, uint64_t len, uint64_t *off)
{
	uint64_t n = div_round_up_u64(len, e->ed.geom.cluster_bytes);
	int err = qcow2_rc_alloc(e->ed.rc, n, off);

	if (!err)
		err = qcow2_pwrite(e->ed.file, *off, data, len);
	if (!err && len % e->ed.geom.cluster_bytes) { /* the tail of the last cluster: zeros */
		uint64_t tail = e->ed.geom.cluster_bytes - len % e->ed.geom.cluster_bytes;

		memset(e->buf, 0, tail);
		err = qcow2_pwrite(e->ed.file, *off + len, e->buf, tail);
	}
	if (err)
		log_err("qcow2 %s: writing %" PRIu64 " bytes of bitmap metadata: %s", e->path, len,
			err_str(err));
	return err;
}

/* A consistent bitmap's data and table, in new clusters; its entry points to them. */
static int store_bitmap(struct qcow2_bme *e, struct bme_bitmap *bm)
{
	uint64_t cb = e->ed.geom.cluster_bytes, i, off;
	uint64_t *t = calloc(bm->nclusters ? bm->nclusters : 1, sizeof(*t));
	int err = t ? 0 : -ENOMEM;

	for (i = 0; !err && i < bm->nclusters; i++) {
		if (cluster_is_zero(bm->bits + i * cb, cb))
			continue;
		err = write_new(e, bm->bits + i * cb, cb, &off);
		qcow2_put_be64(&t[i], off);
	}
	if (bm->on_disk && !err)
		err = free_on_disk(e, &bm->ent);
	if (!err)
		err = write_new(e, t, bm->nclusters * 8, &off);
	free(t);
	if (err)
		return err;
	bm->ent.table_offset = off;
	bm->ent.table_size = (uint32_t)bm->nclusters;
	bm->ent.flags &= ~QCOW2_BME_IN_USE;
	bm->on_disk = true;
	return 0;
}

/* The new directory, written; the header's extension fields describe it. */
static int store_dir(struct qcow2_bme *e)
{
	struct qcow2_bitmaps_ext *ext = &e->ed.hdr.bitmaps;
	struct qcow2_bitmap *dir;
	uint64_t bytes = 0, off = 0;
	size_t used;
	uint8_t *buf;
	unsigned i;
	int err;

	if (ext->present && (e->ed.hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) &&
	    ext->nb_bitmaps) {
		err = add_free(e, ext->dir_offset, ext->dir_bytes);
		if (err)
			return err;
	}
	if (e->nb == 0) {
		*ext = (struct qcow2_bitmaps_ext){ .present = false };
		return 0;
	}
	dir = calloc(e->nb, sizeof(*dir));
	for (i = 0; dir && i < e->nb; i++) {
		dir[i] = e->bms[i].ent; /* borrows the strings */
		bytes += qcow2_bitmap_entry_bytes(&dir[i]);
	}
	buf = dir ? calloc(1, bytes) : NULL;
	err = buf ? qcow2_bitmap_dir_serialise(dir, e->nb, buf, bytes, &used) : -ENOMEM;
	if (!err)
		err = write_new(e, buf, bytes, &off);
	free(buf);
	free(dir);
	if (!err)
		*ext = (struct qcow2_bitmaps_ext){
			.present = true, .nb_bitmaps = e->nb, .dir_bytes = bytes, .dir_offset = off
		};
	return err;
}

/* Cluster 0 rewritten with the new extension and autoclear bits, synced. */
static int switch_header(struct qcow2_bme *e)
{
	uint64_t cb = e->ed.geom.cluster_bytes;
	uint8_t *buf = calloc(1, cb);
	int err;

	if (!buf)
		return -ENOMEM;
	/* unknown autoclear bits are cleared by any writer that does not know them */
	e->ed.hdr.autoclear_features &= QCOW2_AUTOCLEAR_KNOWN;
	if (e->ed.hdr.bitmaps.present)
		e->ed.hdr.autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
	else
		e->ed.hdr.autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
	err = qcow2_header_serialise(&e->ed.hdr, buf, cb, NULL);
	if (err)
		log_err("qcow2 %s: the header with the new bitmap directory does not fit in "
			"cluster 0: %s",
			e->path, err_str(err));
	else
		err = qcow2_pwrite(e->ed.file, 0, buf, cb);
	if (!err)
		err = qcow2_fsync(e->ed.file);
	free(buf);
	return err;
}

int qcow2_bme_commit(struct qcow2_bme *e)
{
	unsigned i;
	int err = e->ed.readonly ? -EROFS : 0;

	for (i = 0; !err && i < e->nb; i++) {
		if (e->bms[i].bits)
			err = store_bitmap(e, &e->bms[i]);
	}
	if (!err)
		err = store_dir(e);
	/* refcounts, then the data and tables they count, durable before the header points there */
	if (!err)
		err = qcow2_rc_writeback(e->ed.rc);
	if (!err)
		err = qcow2_fsync(e->ed.file);
	if (!err)
		err = switch_header(e);
	if (err) {
		log_err("qcow2 %s: storing the bitmaps: %s (the old ones are still in place)",
			e->path, err_str(err));
		return err;
	}
	/* the old directory, tables and data: unreferenced now that the header is durable */
	for (i = 0; !err && i < e->nb_frees; i++)
		err = qcow2_rc_free_deferred(e->ed.rc, e->frees[i].off, e->frees[i].len);
	e->nb_frees = 0;
	if (!err)
		err = qcow2_rc_release_deferred(e->ed.rc);
	if (!err)
		err = qcow2_rc_writeback(e->ed.rc);
	if (err)
		log_err("qcow2 %s: freeing the old bitmap clusters: %s (they leak)", e->path,
			err_str(err));
	return err;
}
