// SPDX-License-Identifier: MIT
/*
 * Guest range -> host extents: the metadata engine of the read path.
 *
 * For each guest position: the L1 entry names an L2 table (or none: the
 * whole range it covers is unallocated); the L2 slice holding the entry
 * comes from the shared cache; the entry, and with extended L2 each
 * subcluster's bits, give the extent type.  Neighbouring extents of one
 * type merge (DATA and ZERO_ALLOC only when the host side is contiguous
 * too), so a sequential read of a freshly converted image is a handful of
 * extents.  Compressed extents never merge: each is one cluster's data.
 *
 * Corrupt metadata is logged here, where the entry is known, and fails the
 * request with -EIO, as QEMU's qcow2_signal_corruption does.  The image is
 * not marked corrupt: this step never writes.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>

#include "checked.h"
#include "log.h"
#include "qcow2/internal.h"

void qcow2_map_reset(struct qcow2_map *m, uint64_t pos, uint64_t end)
{
	m->pos = pos;
	m->end = end;
	m->nr = 0;
}

static bool ext_mergeable(const struct qcow2_extent *a, const struct qcow2_extent *b)
{
	if (a->type != b->type || a->type == QCOW2_EXT_COMPRESSED || a->copied != b->copied)
		return false;
	if (a->type == QCOW2_EXT_DATA || a->type == QCOW2_EXT_ZERO_ALLOC)
		return a->host_offset + a->len == b->host_offset;
	return true;
}

/* Append @e at m->pos (merging when possible); false when the array is full. */
static bool map_append(struct qcow2_map *m, const struct qcow2_extent *e)
{
	struct qcow2_extent *last = m->nr ? &m->ext[m->nr - 1] : NULL;

	if (last && ext_mergeable(last, e)) {
		last->len += e->len;
	} else {
		if (m->nr == QCOW2_PASS_EXTENTS)
			return false;
		m->ext[m->nr++] = *e;
	}
	m->pos += e->len;
	return true;
}

static enum qcow2_ext_type sc_ext_type(enum qcow2_subcluster_type t)
{
	switch (t) {
	case QCOW2_SUBCLUSTER_NORMAL:
		return QCOW2_EXT_DATA;
	case QCOW2_SUBCLUSTER_ZERO_PLAIN:
		return QCOW2_EXT_ZERO;
	case QCOW2_SUBCLUSTER_ZERO_ALLOC:
		return QCOW2_EXT_ZERO_ALLOC;
	case QCOW2_SUBCLUSTER_COMPRESSED:
		return QCOW2_EXT_COMPRESSED;
	default:
		return QCOW2_EXT_UNALLOC;
	}
}

/*
 * Append the extents of one decoded L2 entry for the cluster at guest
 * @cluster_start, from m->pos to the end of the cluster or m->end.
 * Returns 0 when done with the cluster, 1 when the extent array filled up
 * first, or -EIO for an invalid subcluster (logged).
 */
static int map_cluster(struct drv_image *img, struct qcow2_map *m, uint64_t cluster_start,
		       const struct qcow2_l2_entry *e)
{
	const struct qcow2_geom *g = &((struct qcow2_image *)img->priv)->geom;
	uint64_t cluster_end = MIN(cluster_start + g->cluster_bytes, m->end);

	while (m->pos < cluster_end) {
		unsigned sc = qcow2_sc_index(g, m->pos);
		enum qcow2_subcluster_type t = qcow2_subcluster_type(g, e, sc);
		struct qcow2_extent x = { .type = sc_ext_type(t),
					  .guest_offset = m->pos,
					  .copied = e->copied };

		if (t == QCOW2_SUBCLUSTER_INVALID) {
			log_err_ratelimited("qcow2 %s: guest offset 0x%" PRIx64 ": L2 entry has "
					    "an invalid subcluster bitmap (subcluster %u)",
					    img->path, m->pos, sc);
			return -EIO;
		}
		if (t == QCOW2_SUBCLUSTER_COMPRESSED) {
			x.len = cluster_end - m->pos;
			x.host_offset = e->host_offset;
			x.compressed_bytes = e->compressed_bytes;
		} else {
			uint64_t sc_end =
				cluster_start + ((uint64_t)(sc + 1) << g->subcluster_bits);

			x.len = MIN(sc_end, cluster_end) - m->pos;
			if (e->host_offset)
				x.host_offset = e->host_offset + (m->pos - cluster_start);
		}
		if (!map_append(m, &x))
			return 1;
	}
	return 0;
}

/*
 * Map entries of a pinned slice of the L2 table at @l2_offset, starting
 * with the one for m->pos, until the slice, the range or the array ends.
 */
static int map_slice(struct drv_image *img, struct qcow2_map *m, uint64_t l2_offset,
		     const struct qcow2_l2_slice *s, uint64_t slice_bytes)
{
	struct qcow2_image *qi = img->priv;
	const struct qcow2_geom *g = &qi->geom;
	uint8_t data[QCOW2_L2_SLICE_MAX_BYTES];
	uint64_t byte = qcow2_l2_index(g, m->pos) * g->l2_entry_bytes;
	uint64_t in_slice = byte & (slice_bytes - 1);
	uint64_t first = in_slice;
	/* the entries the rest of the range needs, at most to the slice's end */
	uint64_t clusters =
		(m->end - ALIGN_DOWN(m->pos, g->cluster_bytes) + g->cluster_bytes - 1) >>
		g->cluster_bits;
	uint64_t stop = first + MIN(slice_bytes - first, clusters * g->l2_entry_bytes);
	int ret = 0;

	assert(qcow2_l2_slice_offset(s) == l2_offset + (byte - in_slice));
	/* the metadata thread may change entries: copy them out under the lock */
	qcow2_l2_slice_copy(qi->l2_cache, s, first, data, stop - first);
	for (; in_slice < stop && m->pos < m->end && ret == 0; in_slice += g->l2_entry_bytes) {
		const uint8_t *p = data + (in_slice - first);
		uint64_t entry = qcow2_get_be64(p);
		uint64_t bitmap = g->extended_l2 ? qcow2_get_be64(p + 8) : 0;
		struct qcow2_l2_entry e;
		const char *why = NULL;

		if (qcow2_l2_entry_decode(g, entry, bitmap, &e, &why)) {
			log_err_ratelimited("qcow2 %s: guest offset 0x%" PRIx64 ": L2 entry at "
					    "host offset 0x%" PRIx64 " (0x%016" PRIx64 "): %s",
					    img->path, m->pos,
					    l2_offset + byte + (in_slice - first), entry, why);
			return -EIO;
		}
		ret = map_cluster(img, m, ALIGN_DOWN(m->pos, g->cluster_bytes), &e);
	}
	return ret < 0 ? ret : 0;
}

/*
 * The L2 table that maps m->pos: 0 with *@l2_offset (0 when none is
 * allocated), or -EIO for a corrupt L1 entry (logged, naming the entry).
 */
static int map_l1(struct drv_image *img, const struct qcow2_map *m, uint64_t *l2_offset)
{
	struct qcow2_image *qi = img->priv;
	uint64_t idx = qcow2_l1_index(&qi->geom, m->pos);
	const char *why = NULL;
	uint64_t end, entry, file_bytes;
	bool copied;

	if (idx >= qi->hdr.l1_size) {
		log_err_ratelimited("qcow2 %s: guest offset 0x%" PRIx64
				    " is past L1 entry %" PRIu32,
				    img->path, m->pos, qi->hdr.l1_size);
		return -EIO;
	}
	/* the metadata thread of a writable image changes entries: atomics */
	entry = __atomic_load_n(&qi->l1[idx], __ATOMIC_ACQUIRE);
	if (qcow2_l1_entry_decode(&qi->geom, entry, l2_offset, &copied, &why)) {
		log_err_ratelimited("qcow2 %s: L1 entry %" PRIu64 " (0x%016" PRIx64
				    ", guest offset 0x%" PRIx64 "): %s",
				    img->path, idx, entry, m->pos, why);
		return -EIO;
	}
	file_bytes = __atomic_load_n(&qi->file_bytes, __ATOMIC_ACQUIRE);
	if (*l2_offset && (ck_add(*l2_offset, qi->geom.cluster_bytes, &end) || end > file_bytes)) {
		log_err_ratelimited("qcow2 %s: L1 entry %" PRIu64 " (guest offset 0x%" PRIx64
				    "): L2 table at 0x%" PRIx64 " is past the end of the file "
				    "(%" PRIu64 " bytes)",
				    img->path, idx, m->pos, *l2_offset, file_bytes);
		return -EIO;
	}
	return 0;
}

/* A slice arrived (or failed) for a parked map: keep it for the next fill. */
static void map_wait_done(struct qcow2_l2_wait *w, struct qcow2_l2_slice *slice, int err)
{
	struct qcow2_map *m = w->opaque;

	m->slice = slice;
	m->wait_err = err;
	m->resume(m);
}

static struct qcow2_l2_slice *steal_slice(struct qcow2_map *m)
{
	struct qcow2_l2_slice *s = m->slice;

	m->slice = NULL;
	return s;
}

/* One step: the L1 entry for m->pos, then one slice of its L2 table. */
static int map_step(struct drv_image *img, struct qcow2_map *m, struct drv_queue *q)
{
	struct qcow2_image *qi = img->priv;
	const struct qcow2_geom *g = &qi->geom;
	uint64_t slice_bytes = qcow2_l2_cache_slice_bytes(g->cluster_bytes);
	uint64_t l2_offset, l1_span, slice_off;
	struct qcow2_l2_slice *s;
	int err;

	err = map_l1(img, m, &l2_offset);
	if (err)
		return err;
	if (!l2_offset) {
		struct qcow2_extent x = { .type = QCOW2_EXT_UNALLOC, .guest_offset = m->pos };

		l1_span = g->cluster_bytes << g->l2_bits;
		x.len = MIN(m->end, ALIGN_DOWN(m->pos, l1_span) + l1_span) - m->pos;
		map_append(m, &x);
		return 0;
	}
	slice_off =
		l2_offset + ALIGN_DOWN(qcow2_l2_index(g, m->pos) * g->l2_entry_bytes, slice_bytes);
	s = steal_slice(m);
	if (s && qcow2_l2_slice_offset(s) != slice_off) {
		/* the table moved while we waited (a shared one was copied): again */
		qcow2_l2_cache_put(qi->l2_cache, s);
		s = NULL;
	}
	if (!s) {
		m->wait =
			(struct qcow2_l2_wait){ .fn = map_wait_done, .opaque = m, .loop = q->loop };
		err = qcow2_l2_cache_get(qi->l2_cache, slice_off, q->aio, &m->wait, &s);
		if (err)
			return err;
	}
	err = map_slice(img, m, l2_offset, s, slice_bytes);
	qcow2_l2_cache_put(qi->l2_cache, s);
	return err;
}

int qcow2_map_fill(struct drv_image *img, struct qcow2_map *m, struct drv_queue *q)
{
	int err;

	if (m->wait_err) {
		err = m->wait_err;
		m->wait_err = 0;
		return err;
	}
	while (m->pos < m->end) {
		unsigned nr = m->nr;
		uint64_t pos = m->pos;

		err = map_step(img, m, q);
		if (err)
			return err;
		if (m->pos == pos && m->nr == nr)
			break; /* full */
	}
	return 0;
}
