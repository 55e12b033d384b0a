// SPDX-License-Identifier: MIT
/*
 * The metadata thread: the one place a writable image's metadata changes
 * (see meta.h for the jobs and the write-back order).
 *
 * Jobs run one at a time, in the order they were posted, with blocking
 * I/O: a job never waits for a queue thread, so it cannot deadlock with
 * one.  Queue threads only read L1 entries (atomics) and L2 entries (copied
 * under the cache's read lock).
 *
 * Failures: an I/O error fails the job (the request gets -EIO) and keeps
 * the dirty state for the next write-back.  An inconsistency (metadata about
 * to be written over the header or a table, a refcount below zero, an L2
 * pointer to cluster 0) marks the image corrupt, as QEMU does: the corrupt
 * bit is set with a synced header write, the reason is logged once, and
 * every later job fails with -EIO while reads go on.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/crash-fault.h"
#include "qcow2/internal.h"
#include "qcow2/meta-internal.h"
#include "qcow2/refcount.h"
#include "qcow2/sync-io.h"

#define L1_CHUNK_BYTES 4096u
#define L1_CHUNK_ENTRIES (L1_CHUNK_BYTES / 8)
#define GET_SLICE_TRIES 4
#define GROW_MIN_BYTES (1ull << 20)
#define GROW_MAX_BYTES (64ull << 20)

static struct qcow2_meta *meta_of(struct drv_image *img)
{
	return ((struct qcow2_image *)img->priv)->meta;
}

/* ---- header bits ------------------------------------------------------------------- */

/* Write the incompatible features field alone, synced. */
static int write_incompat(struct qcow2_meta *m)
{
	uint8_t be[8];
	int err;

	qcow2_put_be64(be, m->qi->hdr.incompatible_features);
	err = qcow2_pwrite(m->qi->file, QCOW2_HDR_OFF(incompatible_features), be, sizeof(be));
	if (!err)
		err = qcow2_fsync(m->qi->file);
	if (err)
		log_err("qcow2 %s: header update (incompatible features): %s", m->img->path,
			err_str(err));
	return err;
}

/*
 * Mark the image corrupt, as QEMU's qcow2_signal_corruption does: log
 * @why once, set the corrupt bit, refuse further changes.  Returns -EIO.
 */
static int __attribute__((format(printf, 2, 3)))
mark_corrupt(struct qcow2_meta *m, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (m->corrupt)
		return -EIO;
	m->corrupt = true;
	log_err("qcow2 %s: %s; image marked corrupt: further writes are refused "
		"(repair with tap-img check -r all)",
		m->img->path, why);
	if (m->qi->hdr.version >= 3) {
		m->qi->hdr.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
		write_incompat(m);
	}
	return -EIO;
}

/* Before the first metadata change of a lazy-refcounts image: the dirty bit. */
int qcow2_mt_mark_dirty(struct qcow2_meta *m)
{
	if (!m->lazy || m->dirty_bit)
		return 0;
	m->qi->hdr.incompatible_features |= QCOW2_INCOMPAT_DIRTY;
	m->dirty_bit = true;
	return write_incompat(m);
}

/* ---- overlap checks -------------------------------------------------------------- */

static bool overlaps(uint64_t off, uint64_t len, uint64_t start, uint64_t bytes)
{
	return bytes && off < start + bytes && start < off + len;
}

/*
 * Metadata or data about to be written at [@off, @off + @len) must not
 * land on the header or the image's tables: if it would, the refcounts
 * lied, and the image is marked corrupt.
 */
int qcow2_mt_overlap_check(void *opaque, uint64_t off, uint64_t len, const char *what)
{
	struct qcow2_meta *m = opaque;
	const struct qcow2_header *h = &m->qi->hdr;
	const struct qcow2_geom *g = &m->qi->geom;
	const char *hit = NULL;

	if (overlaps(off, len, 0, g->cluster_bytes))
		hit = "the header";
	else if (overlaps(off, len, h->l1_table_offset, (uint64_t)h->l1_size * 8))
		hit = "the active L1 table";
	else if (strcmp(what, "refcount table") != 0 &&
		 overlaps(off, len, h->refcount_table_offset,
			  (uint64_t)h->refcount_table_clusters << g->cluster_bits))
		hit = "the refcount table";
	else if (h->bitmaps.present &&
		 overlaps(off, len, h->bitmaps.dir_offset, h->bitmaps.dir_bytes))
		hit = "the bitmap directory";
	if (!hit)
		return 0;
	return mark_corrupt(m,
			    "%s write at host offset 0x%" PRIx64 " (%" PRIu64 " bytes) "
			    "would overwrite %s",
			    what, off, len, hit);
}

static int l2_overlap_check(void *opaque, uint64_t off, uint64_t len)
{
	return qcow2_mt_overlap_check(opaque, off, len, "L2 table");
}

static void cluster_freed(void *opaque, uint64_t host_offset)
{
	struct qcow2_meta *m = opaque;

	qcow2_l2_cache_drop(m->qi->l2_cache, host_offset, m->qi->geom.cluster_bytes);
}

/* ---- write-back --------------------------------------------------------------------- */

static int write_l1_chunk(struct qcow2_meta *m, uint64_t chunk)
{
	struct qcow2_image *qi = m->qi;
	uint64_t first = chunk * L1_CHUNK_ENTRIES, i;
	uint64_t n = MIN((uint64_t)L1_CHUNK_ENTRIES, qi->hdr.l1_size - first);
	uint8_t buf[L1_CHUNK_BYTES];
	uint64_t off = qi->hdr.l1_table_offset + first * 8;
	int err;

	for (i = 0; i < n; i++)
		qcow2_put_be64(buf + i * 8, __atomic_load_n(&qi->l1[first + i], __ATOMIC_RELAXED));
	err = qcow2_pwrite(qi->file, off, buf, n * 8);
	if (err)
		log_err("qcow2 %s: write of the L1 table at 0x%" PRIx64 ": %s", m->img->path, off,
			err_str(err));
	return err;
}

static int write_l1(struct qcow2_meta *m)
{
	uint64_t c;
	int err;

	if (!m->l1_any_dirty)
		return 0;
	err = qcow2_fsync(m->qi->file); /* the L2 tables first */
	for (c = 0; !err && c < m->l1_chunks; c++) {
		if (!m->l1_dirty[c])
			continue;
		err = write_l1_chunk(m, c);
		if (!err)
			m->l1_dirty[c] = 0;
	}
	if (!err)
		m->l1_any_dirty = false;
	return err;
}

/*
 * Make every change so far durable, in the contract's order, then apply
 * the decrements that waited for it.
 */
static int writeback(struct qcow2_meta *m)
{
	struct qcow2_image *qi = m->qi;
	int err;

	if (!qcow2_l2_cache_dirty(qi->l2_cache) && !m->l1_any_dirty && !qcow2_rc_dirty(m->rc))
		return qcow2_fsync(qi->file);
	if (crash_fault(CRASH_FAULT_FREE_BEFORE_UNLINK))
		qcow2_rc_release_deferred(m->rc);
	err = crash_fault(CRASH_FAULT_NO_DATA_FLUSH) ? 0 : qcow2_fsync(qi->file);
	if (!err && crash_fault(CRASH_FAULT_L2_BEFORE_REFCOUNT))
		err = qcow2_l2_cache_writeback(qi->l2_cache, l2_overlap_check, m);
	if (!err && !m->dirty_bit)
		err = qcow2_rc_writeback(m->rc);
	if (!err)
		err = qcow2_l2_cache_writeback(qi->l2_cache, l2_overlap_check, m);
	if (!err)
		err = write_l1(m);
	if (!err)
		err = qcow2_fsync(qi->file);
	if (!err)
		err = qcow2_rc_release_deferred(m->rc);
	if (err)
		log_err("qcow2 %s: metadata write-back: %s", m->img->path, err_str(err));
	return err;
}

/*
 * Keep at most half the L2 cache dirty, so lookups always find a victim,
 * unless the cache holds every table the disk can have: then nothing is
 * ever evicted, and dirty slices wait for a flush.
 */
int qcow2_mt_relieve_pressure(struct qcow2_meta *m)
{
	struct qcow2_l2_cache *c = m->qi->l2_cache;

	if (m->cache_covers_disk || qcow2_l2_cache_dirty(c) * 2 < qcow2_l2_cache_slices(c))
		return 0;
	return writeback(m);
}

/* ---- L1 and L2 access ---------------------------------------------------------------- */

static void l1_set(struct qcow2_meta *m, uint64_t idx, uint64_t entry)
{
	__atomic_store_n(&m->qi->l1[idx], entry, __ATOMIC_RELEASE);
	m->l1_dirty[idx / L1_CHUNK_ENTRIES] = 1;
	m->l1_any_dirty = true;
}

static int get_slice(struct qcow2_meta *m, uint64_t offset, bool fresh, struct qcow2_l2_slice **out)
{
	struct qcow2_l2_cache *c = m->qi->l2_cache;
	int tries, err = -EAGAIN;

	for (tries = 0; tries < GET_SLICE_TRIES && err == -EAGAIN; tries++) {
		err = fresh ? qcow2_l2_cache_get_new(c, offset, out)
			    : qcow2_l2_cache_get_sync(c, offset, out);
		if (err == -EAGAIN) {
			int werr = writeback(m);

			if (werr)
				return werr;
		}
	}
	if (err == -EAGAIN)
		log_err("qcow2 %s: every L2 cache slice is in use", m->img->path);
	return err;
}

void qcow2_mt_ref_put(struct qcow2_meta *m, struct l2_ref *r)
{
	if (r->s)
		qcow2_l2_cache_put(m->qi->l2_cache, r->s);
	r->s = NULL;
}

/* Copy the shared L2 table at @old into the new table at @new, slice by slice. */
static int copy_l2_table(struct qcow2_meta *m, uint64_t old, uint64_t new)
{
	uint64_t slice_bytes = qcow2_l2_cache_slice_bytes(m->qi->geom.cluster_bytes), off;
	uint8_t buf[QCOW2_L2_SLICE_MAX_BYTES];
	int err = 0;

	for (off = 0; off < m->qi->geom.cluster_bytes && !err; off += slice_bytes) {
		struct qcow2_l2_slice *src, *dst;

		err = get_slice(m, old + off, false, &src);
		if (err)
			break;
		qcow2_l2_slice_copy(m->qi->l2_cache, src, 0, buf, slice_bytes);
		qcow2_l2_cache_put(m->qi->l2_cache, src);
		err = get_slice(m, new + off, true, &dst);
		if (err)
			break;
		qcow2_l2_slice_update(m->qi->l2_cache, dst, 0, buf, slice_bytes);
		qcow2_l2_cache_put(m->qi->l2_cache, dst);
	}
	return err;
}

/*
 * Make the L2 table for L1 entry @idx the image's own: allocate a zeroed one
 * when there is none, copy a shared one (COPIED clear, after an internal
 * snapshot).  Returns 0 with *@l2_offset.
 */
static int own_l2_table(struct qcow2_meta *m, uint64_t idx, uint64_t *l2_offset)
{
	struct qcow2_image *qi = m->qi;
	uint64_t entry = __atomic_load_n(&qi->l1[idx], __ATOMIC_RELAXED), old, new, off;
	const char *why = NULL;
	bool copied;
	int err;

	if (qcow2_l1_entry_decode(&qi->geom, entry, &old, &copied, &why))
		return mark_corrupt(m, "L1 entry %" PRIu64 " (0x%016" PRIx64 "): %s", idx, entry,
				    why);
	if (old && copied) {
		*l2_offset = old;
		return 0;
	}
	err = qcow2_mt_mark_dirty(m);
	if (!err)
		err = qcow2_rc_alloc(m->rc, 1, &new);
	if (!err)
		err = qcow2_mt_overlap_check(m, new, qi->geom.cluster_bytes, "new L2 table");
	if (err)
		return err;
	if (old) {
		err = copy_l2_table(m, old, new);
	} else {
		uint64_t slice_bytes = qcow2_l2_cache_slice_bytes(qi->geom.cluster_bytes);

		for (off = 0; off < qi->geom.cluster_bytes && !err; off += slice_bytes) {
			struct qcow2_l2_slice *s;

			err = get_slice(m, new + off, true, &s);
			if (!err)
				qcow2_l2_cache_put(qi->l2_cache, s);
		}
	}
	if (!err)
		err = qcow2_l1_entry_encode(&qi->geom, new, true, &entry);
	if (err) {
		qcow2_l2_cache_drop(qi->l2_cache, new, qi->geom.cluster_bytes);
		qcow2_rc_update(m->rc, new, qi->geom.cluster_bytes, -1);
		return err;
	}
	l1_set(m, idx, entry);
	if (old)
		err = qcow2_rc_free_deferred(m->rc, old, qi->geom.cluster_bytes);
	*l2_offset = new;
	return err;
}

/*
 * The L2 entry of guest byte @guest, in a table of the image's own when
 * @own (else r->s is NULL and the entry reads 0 when no table exists).
 * Corrupt entries mark the image corrupt.
 */
int qcow2_mt_entry_get(struct qcow2_meta *m, uint64_t guest, bool own, struct l2_ref *r)
{
	struct qcow2_image *qi = m->qi;
	const struct qcow2_geom *g = &qi->geom;
	uint64_t idx = qcow2_l1_index(g, guest), l2_offset = 0, byte, slice_bytes;
	const char *why = NULL;
	uint8_t raw[16];
	bool copied;
	int err;

	memset(r, 0, sizeof(*r));
	if (idx >= qi->hdr.l1_size)
		return mark_corrupt(m, "guest offset 0x%" PRIx64 " is past the L1 table", guest);
	if (own) {
		err = own_l2_table(m, idx, &l2_offset);
	} else {
		uint64_t entry = __atomic_load_n(&qi->l1[idx], __ATOMIC_RELAXED);

		err = qcow2_l1_entry_decode(g, entry, &l2_offset, &copied, &why) ? -EIO : 0;
		if (err)
			return mark_corrupt(m, "L1 entry %" PRIu64 ": %s", idx, why);
	}
	if (err || !l2_offset)
		return err;
	slice_bytes = qcow2_l2_cache_slice_bytes(g->cluster_bytes);
	byte = qcow2_l2_index(g, guest) * g->l2_entry_bytes;
	r->in_slice = byte & (slice_bytes - 1);
	err = get_slice(m, l2_offset + (byte - r->in_slice), false, &r->s);
	if (err)
		return err;
	qcow2_l2_slice_copy(qi->l2_cache, r->s, r->in_slice, raw, g->l2_entry_bytes);
	r->raw[0] = qcow2_get_be64(raw);
	r->raw[1] = g->extended_l2 ? qcow2_get_be64(raw + 8) : 0;
	if (qcow2_l2_entry_decode(g, r->raw[0], r->raw[1], &r->e, &why)) {
		qcow2_mt_ref_put(m, r);
		return mark_corrupt(
			m, "L2 entry for guest offset 0x%" PRIx64 " (0x%016" PRIx64 "): %s", guest,
			r->raw[0], why);
	}
	return 0;
}

void qcow2_mt_entry_set(struct qcow2_meta *m, struct l2_ref *r, uint64_t entry, uint64_t bitmap)
{
	const struct qcow2_geom *g = &m->qi->geom;
	uint8_t raw[16];

	qcow2_put_be64(raw, entry);
	qcow2_put_be64(raw + 8, bitmap);
	qcow2_l2_slice_update(m->qi->l2_cache, r->s, r->in_slice, raw, g->l2_entry_bytes);
}

/* Queue the decrement of whatever host space entry @e held. */
int qcow2_mt_free_entry_host(struct qcow2_meta *m, const struct qcow2_l2_entry *e)
{
	switch (e->type) {
	case QCOW2_CLUSTER_COMPRESSED:
		return qcow2_rc_free_deferred(m->rc, e->host_offset, e->compressed_bytes);
	case QCOW2_CLUSTER_NORMAL:
	case QCOW2_CLUSTER_ZERO_ALLOC:
		return qcow2_rc_free_deferred(m->rc, e->host_offset, m->qi->geom.cluster_bytes);
	default:
		return 0;
	}
}

/* ---- the thread ------------------------------------------------------------------------ */

/*
 * FLUSH: the write-back, then the dirty bitmaps that changed.  A failed
 * bitmap store is not the guest's failure: it is logged, the bitmaps stay
 * in use on disk, and the next store retries.
 */
static int job_flush(struct qcow2_meta *m)
{
	int err = writeback(m);

	if (!err && !m->corrupt)
		qcow2_bitmaps_store(m->qi->bitmaps, !m->dirty_bit);
	return err;
}

static int job_dispatch(struct qcow2_meta *m, struct qcow2_job *job)
{
	if (m->corrupt && job->kind != QCOW2_JOB_FLUSH && job->kind != QCOW2_JOB_ABORT)
		return -EIO;
	switch (job->kind) {
	case QCOW2_JOB_ALLOC:
		return qcow2_mt_job_alloc(m, job);
	case QCOW2_JOB_LINK:
		return qcow2_mt_job_link(m, job);
	case QCOW2_JOB_ABORT:
		return qcow2_mt_job_abort(m, job);
	case QCOW2_JOB_ZERO:
	case QCOW2_JOB_DISCARD:
		return qcow2_mt_job_zero(m, job);
	case QCOW2_JOB_FLUSH:
		return job_flush(m);
	case QCOW2_JOB_ALLOC_BYTES:
		return qcow2_mt_job_alloc_bytes(m, job);
	case QCOW2_JOB_LINK_COMPRESSED:
		return qcow2_mt_job_link_compressed(m, job);
	}
	return -EINVAL;
}

static void job_run(struct evloop_call *call)
{
	struct qcow2_job *job = call->opaque;
	struct qcow2_meta *m = meta_of(job->img);

	job->err = job_dispatch(m, job);
	evloop_post(job->reply_loop, &job->reply);
}

void qcow2_meta_submit(struct drv_image *img, struct qcow2_job *job)
{
	job->img = img;
	job->err = 0;
	job->call = (struct evloop_call){ .fn = job_run, .opaque = job };
	evloop_post(meta_of(img)->loop, &job->call);
}

static void *meta_main(void *arg)
{
	struct qcow2_meta *m = arg;

	evloop_run(m->loop);
	return NULL;
}

static void meta_stop(struct evloop_call *call)
{
	struct qcow2_meta *m = call->opaque;

	evloop_stop(m->loop);
}

/* ---- range locks ------------------------------------------------------------------------- */

bool qcow2_range_lock(struct qcow2_image *qi, struct qcow2_range *r)
{
	struct qcow2_meta *m = qi->meta;
	struct qcow2_range *h;

	pthread_mutex_lock(&m->range_mutex);
	/* shared ranges only meet exclusive ones: with none held, nothing to look for */
	for (h = r->shared && !m->nr_held_exclusive ? NULL : m->held; h; h = h->next) {
		if (r->start < h->end && h->start < r->end && !(r->shared && h->shared))
			break;
	}
	if (h) {
		r->next = h->waiters;
		h->waiters = r;
	} else {
		r->waiters = NULL;
		r->next = m->held;
		r->pprev = &m->held;
		m->nr_held_exclusive += !r->shared;
		if (m->held)
			m->held->pprev = &r->next;
		m->held = r;
	}
	pthread_mutex_unlock(&m->range_mutex);
	return h == NULL;
}

void qcow2_range_unlock(struct qcow2_image *qi, struct qcow2_range *r)
{
	struct qcow2_meta *m = qi->meta;
	struct qcow2_range *w, *next;

	pthread_mutex_lock(&m->range_mutex);
	assert(r->pprev && *r->pprev == r);
	*r->pprev = r->next;
	if (r->next)
		r->next->pprev = r->pprev;
	r->pprev = NULL;
	m->nr_held_exclusive -= !r->shared;
	w = r->waiters;
	r->waiters = NULL;
	pthread_mutex_unlock(&m->range_mutex);
	for (; w; w = next) {
		next = w->next;
		evloop_post(w->loop, &w->wake);
	}
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void meta_free(struct qcow2_meta *m)
{
	qcow2_bitmaps_free(m->qi->bitmaps);
	m->qi->bitmaps = NULL;
	qcow2_rc_free(m->rc);
	evloop_free(m->loop);
	free(m->l1_dirty);
	pthread_mutex_destroy(&m->range_mutex);
	free(m);
}

/* The persistent dirty bitmaps to maintain: loaded and marked in use now. */
static int open_bitmaps(struct qcow2_meta *m)
{
	struct qcow2_bitmaps_params bp = {
		.file = m->qi->file,
		.path = m->img->path,
		.hdr = &m->qi->hdr,
		.rc = m->rc,
	};

	return qcow2_bitmaps_open(&bp, &m->qi->bitmaps);
}

/*
 * Keep the file's allocated space ahead of the clusters handed out for
 * data.  An O_DIRECT write past the end of the file, or into a hole,
 * changes the file's size or block map, which ext4 and XFS do only under
 * the inode's exclusive lock: io_uring cannot issue such a write without
 * blocking, so it hands every one to a worker thread, and the workers queue
 * on that lock (half the CPU time of a stream of writes into a fresh
 * image).  Writes into space allocated beforehand take the shared lock and
 * go straight to the device, as overwrites do.  As QEMU's preallocate
 * filter, the file grows in steps that grow with it and is cut back to
 * the clusters in use at close; after a crash the rest stays as zeros no
 * cluster references, which qemu-img check does not count.  The ordering
 * contract is untouched: nothing is written here, and the fdatasync that
 * opens every write-back makes the size durable along with the data.
 */
void qcow2_mt_grow(struct qcow2_meta *m)
{
	struct aio_file *f = m->qi->file;
	uint64_t end = __atomic_load_n(&m->qi->file_bytes, __ATOMIC_ACQUIRE), step, to;
	int err;

	if (m->grow_off || end <= m->grown_to)
		return;
	if (f->is_blockdev) {
		m->grow_off = true;
		return;
	}
	step = MIN(MAX(end / 8, GROW_MIN_BYTES), GROW_MAX_BYTES);
	to = ALIGN_UP(end + step, GROW_MIN_BYTES);
	err = qcow2_fgrow(f, m->grown_to, to);
	if (err) {
		/* not fatal: the data writes extend the file themselves */
		log_dbg(LOG_F_QCOW2,
			"qcow2 %s: allocating the file from %" PRIu64 " to %" PRIu64
			": %s; growing it by the writes",
			m->img->path, m->grown_to, to, err_str(err));
		m->grow_off = true;
		return;
	}
	m->grown_to = to;
}

/* Give back the space qcow2_mt_grow allocated past the last cluster in use. */
static int trim_grown(struct qcow2_meta *m)
{
	uint64_t end = MAX(__atomic_load_n(&m->qi->file_bytes, __ATOMIC_ACQUIRE), m->open_bytes);
	int err;

	if (m->grown_to <= end)
		return 0;
	err = qcow2_ftruncate(m->qi->file, end);
	if (err)
		log_err("qcow2 %s: cutting the file back to %" PRIu64 " bytes: %s", m->img->path,
			end, err_str(err));
	return err;
}

static int meta_setup(struct drv_image *img, struct qcow2_meta *m)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_rc_params rp = {
		.file = qi->file,
		.path = img->path,
		.hdr = &qi->hdr,
		.geom = &qi->geom,
		.file_bytes = &qi->file_bytes,
		.cluster_freed = cluster_freed,
		.overlap_check = qcow2_mt_overlap_check,
		.opaque = m,
		.cache_bytes = qi->rc_cache_bytes,
	};
	int err;

	m->img = img;
	m->qi = qi;
	m->l1_chunks = div_round_up_u64((uint64_t)qi->hdr.l1_size, L1_CHUNK_ENTRIES);
	m->l1_dirty = calloc(MAX(m->l1_chunks, (uint64_t)1), 1);
	if (!m->l1_dirty)
		return -ENOMEM;
	m->cache_covers_disk =
		(uint64_t)qcow2_l2_cache_slices(qi->l2_cache) >=
		(uint64_t)qi->hdr.l1_size * (qi->geom.cluster_bytes /
					     qcow2_l2_cache_slice_bytes(qi->geom.cluster_bytes));
	m->lazy =
		qi->hdr.version >= 3 && (qi->hdr.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
	m->dirty_bit = qi->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY;
	m->open_bytes = m->grown_to = qi->file_bytes;
	err = qcow2_rc_new(&rp, &m->rc);
	if (!err)
		err = evloop_new(&m->loop);
	if (!err)
		err = open_bitmaps(m);
	return err;
}

int qcow2_meta_open(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_meta *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->range_mutex, NULL);
	qi->meta = m;
	err = meta_setup(img, m);
	if (!err) {
		err = -pthread_create(&m->thread, NULL, meta_main, m);
		m->running = !err;
	}
	if (err) {
		log_err("qcow2 %s: metadata thread set-up: %s", img->path, err_str(err));
		meta_free(m);
		qi->meta = NULL;
	}
	return err;
}

int qcow2_meta_close(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_meta *m = qi->meta;
	int err = 0, bm_err = 0;

	if (!m)
		return 0;
	if (m->running) {
		m->stop = (struct evloop_call){ .fn = meta_stop, .opaque = m };
		evloop_post(m->loop, &m->stop);
		pthread_join(m->thread, NULL);
	}
	assert(!m->held);
	/* the thread is gone: this thread owns the metadata now */
	if (!m->corrupt) {
		m->dirty_bit = false; /* refcounts too, this time */
		/* bitmaps stored and consistent; their freed clusters go in the write-backs */
		bm_err = qcow2_bitmaps_close(qi->bitmaps);
		err = writeback(m);
		/* the decrements it released are written by a second round */
		if (!err)
			err = writeback(m);
		if (!err && (qi->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
			qi->hdr.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
			err = write_incompat(m);
		}
		if (!err)
			err = trim_grown(m);
	}
	meta_free(m);
	err = err ?: bm_err;
	qi->meta = NULL;
	return err;
}
