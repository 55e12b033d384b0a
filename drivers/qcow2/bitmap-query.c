// SPDX-License-Identifier: MIT
/*
 * Reading persistent dirty bitmaps for clients (->bitmap_list,
 * ->bitmap_status): what NBD's qemu:dirty-bitmap:NAME contexts serve for
 * pull-mode incremental backup.
 *
 * The first listing builds the set: every bitmap of the directory that is
 * consistent.  A bitmap the driver maintains (bitmap.c, writable opens) is
 * read live from its words, so a client sees this session's writes; any
 * other consistent bitmap (a disabled one, or every one on a read-only
 * open) never changes while the image is open and is read into memory
 * once.  A bitmap left in use by a writer that did not close it is
 * inconsistent and not offered, as qemu-nbd refuses to export it.
 *
 * Queries run on the queue threads without a lock: the set is published
 * once (release) and never changes until close; maintained words only
 * ever gain bits (atomics).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/internal.h"
#include "qcow2/sync-io.h"

struct bmq_one {
	const char *name; /* in the directory copy */
	unsigned gran_bits;
	uint64_t nbits;
	const uint64_t *words; /* live (maintained) or @frozen */
	uint64_t *frozen;
};

struct qcow2_bmq {
	struct qcow2_bitmap *dir;
	unsigned nb_dir;
	struct bmq_one *v;
	unsigned nr;
};

static pthread_mutex_t bmq_build_lock = PTHREAD_MUTEX_INITIALIZER;

void qcow2_bmq_free(struct qcow2_bmq *q)
{
	unsigned i;

	if (!q)
		return;
	for (i = 0; i < q->nr; i++)
		free(q->v[i].frozen);
	free(q->v);
	qcow2_bitmap_dir_free(q->dir, q->nb_dir);
	free(q);
}

static int read_dir(struct drv_image *img, struct qcow2_bmq *q)
{
	struct qcow2_image *qi = img->priv;
	const struct qcow2_bitmaps_ext *ext = &qi->hdr.bitmaps;
	uint8_t *buf = malloc(MAX(ext->dir_bytes, (uint64_t)1));
	int err;

	if (!buf)
		return -ENOMEM;
	err = qcow2_pread(qi->file, ext->dir_offset, buf, ext->dir_bytes);
	if (err)
		log_err("qcow2 %s: read of the bitmap directory at 0x%" PRIx64 ": %s", img->path,
			ext->dir_offset, err_str(err));
	else
		err = qcow2_bitmap_dir_parse(buf, ext->dir_bytes, &qi->hdr, img->path, &q->dir);
	free(buf);
	if (!err)
		q->nb_dir = ext->nb_bitmaps;
	return err;
}

/* A bitmap that does not change while open: its bits, from disk. */
static int load_frozen(struct drv_image *img, const struct qcow2_bitmap *e, struct bmq_one *o)
{
	struct qcow2_image *qi = img->priv;
	unsigned cb = qi->hdr.cluster_bits;
	uint64_t cluster = 1ull << cb, words_per = cluster / 8, i, k, off;
	uint64_t *table = calloc(MAX(e->table_size, 1u), sizeof(*table));
	const char *why = NULL;
	bool ones;
	int err;

	o->frozen = calloc(MAX(e->table_size, 1u), cluster);
	if (!table || !o->frozen) {
		free(table);
		return -ENOMEM;
	}
	err = qcow2_pread(qi->file, e->table_offset, table, (size_t)e->table_size * 8);
	for (i = 0; !err && i < e->table_size; i++) {
		uint64_t *w = o->frozen + i * words_per;

		err = qcow2_bitmap_table_entry_decode(be64toh(table[i]), cb, &off, &ones, &why);
		if (err)
			break;
		if (ones)
			memset(w, 0xff, cluster);
		if (off)
			err = qcow2_pread(qi->file, off, w, cluster);
		for (k = 0; !err && off && k < words_per; k++)
			w[k] = le64toh(w[k]);
	}
	free(table);
	if (err)
		log_err("qcow2 %s: bitmap \"%s\" cannot be read (%s); it is not offered", img->path,
			e->name, why ? why : err_str(err));
	o->words = o->frozen;
	return err;
}

static int build(struct drv_image *img, struct qcow2_bmq *q)
{
	struct qcow2_image *qi = img->priv;
	unsigned i;
	int err = read_dir(img, q);

	if (err)
		return err;
	q->v = calloc(MAX(q->nb_dir, 1u), sizeof(*q->v));
	if (!q->v)
		return -ENOMEM;
	for (i = 0; i < q->nb_dir; i++) {
		const struct qcow2_bitmap *e = &q->dir[i];
		struct bmq_one *o = &q->v[q->nr];

		o->name = e->name;
		o->gran_bits = e->granularity_bits;
		o->nbits = div_round_up_u64(img->size_bytes, 1ull << e->granularity_bits);
		if (qcow2_bitmaps_words(qi->bitmaps, e->name, &o->words)) {
			q->nr++;
			continue;
		}
		if (e->flags & QCOW2_BME_IN_USE) {
			log_warn("qcow2 %s: bitmap \"%s\" is inconsistent (in use); not offered",
				 img->path, e->name);
			continue;
		}
		err = load_frozen(img, e, o);
		if (err == -ENOMEM)
			return err;
		if (!err) {
			q->nr++;
		} else {
			free(o->frozen);
			o->frozen = NULL;
		}
	}
	return 0;
}

static struct qcow2_bmq *bmq_get(const struct qcow2_image *qi)
{
	return __atomic_load_n(&qi->bmq, __ATOMIC_ACQUIRE);
}

int qcow2_bitmap_list(struct drv_image *img, const char **names, unsigned max, unsigned *count)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_bmq *q;
	unsigned i;
	int err = 0;

	*count = 0;
	if (qi->hdr.version < 3 || !qi->hdr.bitmaps.present ||
	    !(qi->hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	pthread_mutex_lock(&bmq_build_lock);
	q = bmq_get(qi);
	if (!q) {
		q = calloc(1, sizeof(*q));
		err = q ? build(img, q) : -ENOMEM;
		if (err)
			qcow2_bmq_free(q);
		else
			__atomic_store_n(&qi->bmq, q, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&bmq_build_lock);
	if (err)
		return err;
	for (i = 0; i < q->nr && i < max; i++)
		names[i] = q->v[i].name;
	*count = q->nr;
	return 0;
}

static bool bit(const struct bmq_one *o, uint64_t i)
{
	return (__atomic_load_n(&o->words[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

/* The first bit from @i (before @end) that is not @v; @end when none is. */
static uint64_t run_end(const struct bmq_one *o, uint64_t i, uint64_t end, bool v)
{
	while (i < end) {
		uint64_t w = __atomic_load_n(&o->words[i / 64], __ATOMIC_RELAXED);

		w = (v ? ~w : w) >> (i % 64);
		if (w)
			return MIN(end, i + (uint64_t)__builtin_ctzll(w));
		i = ALIGN_DOWN(i, 64ull) + 64;
	}
	return end;
}

void qcow2_bitmap_status(struct drv_image *img, struct drv_req *req)
{
	struct qcow2_bmq *q = bmq_get(img->priv);
	const struct bmq_one *o = NULL;
	uint64_t first, last, stop, bytes;
	unsigned i;
	bool v;

	for (i = 0; q && i < q->nr && !o; i++) {
		if (strcmp(q->v[i].name, req->bitmap) == 0)
			o = &q->v[i];
	}
	if (!o) {
		drv_req_complete(req, -ENOENT);
		return;
	}
	first = req->offset >> o->gran_bits;
	last = MIN(div_round_up_u64(req->offset + req->len, 1ull << o->gran_bits), o->nbits);
	v = first < o->nbits && bit(o, first);
	stop = first < last ? run_end(o, first + 1, last, v) : last;
	bytes = (stop << o->gran_bits) - req->offset;
	req->status = (struct drv_status){
		.flags = v ? DRV_BS_DIRTY : 0,
		.len = MIN(MAX(bytes, 1ull), req->len),
	};
	drv_req_complete(req, 0);
}
