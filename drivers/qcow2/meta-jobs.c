// SPDX-License-Identifier: MIT
/*
 * The metadata thread's jobs that change the guest-to-host mapping (see
 * meta.h): ALLOC plans the next piece of a write, LINK points L2 entries at
 * it, ABORT gives its clusters back, ALLOC_BYTES/LINK_COMPRESSED store a
 * compressed cluster, ZERO and DISCARD rewrite whole units.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "checked.h"
#include "log.h"
#include "qcow2/meta-internal.h"
#include "qcow2/refcount.h"

#define RUN_MAX_CLUSTERS 512u	/* clusters one ALLOC may take */
#define ZERO_JOB_CLUSTERS 4096u /* clusters one ZERO or DISCARD job may change */

/* Bits of the subclusters [@first, @last] (extended L2). */
static uint32_t sc_bits(unsigned first, unsigned last)
{
	uint64_t n = (uint64_t)last - first + 1;

	return (uint32_t)(((n >= 32 ? 0xffffffffull : (1ull << n) - 1)) << first);
}

/* ---- ALLOC -------------------------------------------------------------------------- */

enum alloc_kind {
	K_INPLACE,   /* every touched unit already holds data: write in place */
	K_EXISTING,  /* our own host cluster, some touched unit not data yet */
	K_NEW_SUB,   /* no host cluster (extended L2): allocate, unit = subcluster */
	K_NEW_WHOLE, /* allocate, copy the whole cluster's view */
};

/* How the write of [@from, @to) within one cluster treats entry @e. */
static enum alloc_kind classify(const struct qcow2_geom *g, const struct qcow2_l2_entry *e,
				uint64_t from, uint64_t to)
{
	unsigned first = qcow2_sc_index(g, from), last = qcow2_sc_index(g, to - 1), sc;
	bool all_data = true;

	if (e->type == QCOW2_CLUSTER_COMPRESSED || (e->host_offset && !e->copied))
		return K_NEW_WHOLE;
	if (!e->host_offset)
		return g->extended_l2 ? K_NEW_SUB : K_NEW_WHOLE;
	for (sc = first; sc <= last; sc++)
		all_data &= qcow2_subcluster_type(g, e, sc) == QCOW2_SUBCLUSTER_NORMAL;
	return all_data ? K_INPLACE : K_EXISTING;
}

/* Where the guest's view of unit @sc of entry @e comes from for a COW. */
static enum qcow2_cow cow_source(struct qcow2_meta *m, const struct qcow2_l2_entry *e,
				 enum alloc_kind kind, unsigned sc)
{
	const struct qcow2_geom *g = &m->qi->geom;

	if (kind == K_NEW_WHOLE && e->type == QCOW2_CLUSTER_NORMAL && !g->extended_l2)
		return QCOW2_COW_READ;
	switch (qcow2_subcluster_type(g, e, sc)) {
	case QCOW2_SUBCLUSTER_NORMAL:
		/* K_EXISTING: already there, nothing to copy; else old data */
		return kind == K_EXISTING ? QCOW2_COW_NONE : QCOW2_COW_READ;
	case QCOW2_SUBCLUSTER_COMPRESSED:
		return QCOW2_COW_READ;
	case QCOW2_SUBCLUSTER_ZERO_PLAIN:
	case QCOW2_SUBCLUSTER_ZERO_ALLOC:
		return QCOW2_COW_ZERO;
	default:
		return m->img->backing ? QCOW2_COW_READ : QCOW2_COW_ZERO;
	}
}

struct alloc_ctx {
	uint64_t pos, end;	  /* the request's remaining range */
	enum alloc_kind kind;	  /* of the first cluster */
	struct qcow2_l2_entry e0; /* its entry */
	struct qcow2_l2_entry eN; /* the last cluster's entry */
	uint64_t clusters;	  /* in the run */
};

/* Count the run of clusters from job->pos that one plan can cover. */
static int alloc_scan(struct qcow2_meta *m, struct alloc_ctx *a)
{
	const struct qcow2_geom *g = &m->qi->geom;
	uint64_t cs = ALIGN_DOWN(a->pos, g->cluster_bytes);
	int err;

	a->clusters = 0;
	while (cs < a->end && a->clusters < RUN_MAX_CLUSTERS) {
		uint64_t from = MAX(cs, a->pos), to = MIN(cs + g->cluster_bytes, a->end);
		struct l2_ref r;
		enum alloc_kind k;

		err = qcow2_mt_entry_get(m, cs, true, &r);
		if (err)
			return err;
		qcow2_mt_ref_put(m, &r);
		k = classify(g, &r.e, from, to);
		if (a->clusters == 0) {
			a->kind = k;
			a->e0 = r.e;
		} else if (k != a->kind || from != cs) {
			break;
		}
		a->eN = r.e;
		a->clusters++;
		if (k == K_INPLACE || k == K_EXISTING)
			break;
		cs += g->cluster_bytes;
	}
	return 0;
}

/* Fill the plan's guest range, host start and COW sources for a scanned run. */
static void alloc_plan(struct qcow2_meta *m, const struct alloc_ctx *a, uint64_t host, bool fresh,
		       struct qcow2_wplan *p)
{
	const struct qcow2_geom *g = &m->qi->geom;
	uint64_t cs = ALIGN_DOWN(a->pos, g->cluster_bytes);
	uint64_t run_end = cs + a->clusters * g->cluster_bytes;
	uint64_t unit = a->kind == K_NEW_WHOLE ? g->cluster_bytes : g->subcluster_bytes;
	uint64_t cap = ALIGN_DOWN(m->img->size_bytes, 512);

	p->data_end = MIN(a->end, run_end);
	p->guest_start = ALIGN_DOWN(a->pos, unit);
	p->guest_end = MIN(ALIGN_UP(p->data_end, unit), MAX(cap, p->data_end));
	p->head = p->guest_start < a->pos
			  ? cow_source(m, &a->e0, a->kind, qcow2_sc_index(g, p->guest_start))
			  : QCOW2_COW_NONE;
	p->tail = p->data_end < p->guest_end
			  ? cow_source(m, &a->eN, a->kind, qcow2_sc_index(g, p->data_end))
			  : QCOW2_COW_NONE;
	/* a unit already holding data is written from the request's own bytes */
	if (p->head == QCOW2_COW_NONE)
		p->guest_start = a->pos;
	if (p->tail == QCOW2_COW_NONE)
		p->guest_end = p->data_end;
	if (fresh && p->head == QCOW2_COW_ZERO)
		p->head = QCOW2_COW_SKIP;
	if (fresh && p->tail == QCOW2_COW_ZERO)
		p->tail = QCOW2_COW_SKIP;
	p->host_start = host + (p->guest_start - cs);
}

int qcow2_mt_job_alloc(struct qcow2_meta *m, struct qcow2_job *job)
{
	const struct qcow2_geom *g = &m->qi->geom;
	struct alloc_ctx a = { .pos = job->pos, .end = job->end };
	struct qcow2_wplan *p = &job->plan;
	uint64_t host, before;
	int err;

	memset(p, 0, sizeof(*p));
	err = alloc_scan(m, &a);
	if (err)
		return err;
	if (a.kind == K_INPLACE || a.kind == K_EXISTING) {
		p->inplace = a.kind == K_INPLACE;
		alloc_plan(m, &a, a.e0.host_offset, false, p);
		return 0;
	}
	before = __atomic_load_n(&m->qi->file_bytes, __ATOMIC_RELAXED);
	err = qcow2_rc_alloc(m->rc, a.clusters, &host);
	if (err)
		return err;
	err = qcow2_mt_overlap_check(m, host, a.clusters * g->cluster_bytes, "data");
	if (err)
		return err;
	p->new_host = host;
	p->new_clusters = a.clusters;
	alloc_plan(m, &a, host, host >= before, p);
	qcow2_mt_grow(m);
	return 0;
}

/* ---- LINK and ABORT -------------------------------------------------------------------- */

/* Point the entry of the cluster at guest @cs to its new home. */
static int link_cluster(struct qcow2_meta *m, const struct qcow2_wplan *p, uint64_t cs)
{
	const struct qcow2_geom *g = &m->qi->geom;
	uint64_t from = MAX(cs, p->guest_start), to = MIN(cs + g->cluster_bytes, p->guest_end);
	uint64_t host, entry, bitmap = 0;
	struct l2_ref r;
	int err;

	err = qcow2_mt_entry_get(m, cs, true, &r);
	if (err)
		return err;
	host = r.e.host_offset;
	if (p->new_host) {
		host = p->new_host + (cs - ALIGN_DOWN(p->guest_start, g->cluster_bytes));
		err = qcow2_mt_free_entry_host(m, &r.e);
	}
	if (!err)
		err = qcow2_l2_entry_encode_normal(g, host, true, &entry);
	if (!err && g->extended_l2) {
		uint32_t touched = sc_bits(qcow2_sc_index(g, from), qcow2_sc_index(g, to - 1));
		uint32_t alloc = r.e.alloc_bitmap, zero = r.e.zero_bitmap;

		if (r.e.type == QCOW2_CLUSTER_COMPRESSED || (r.e.host_offset && !r.e.copied))
			alloc = 0xffffffffu, zero = 0; /* the whole view was copied */
		alloc |= touched;
		zero &= ~touched;
		bitmap = ((uint64_t)zero << 32) | alloc;
	}
	if (!err)
		qcow2_mt_entry_set(m, &r, entry, bitmap);
	qcow2_mt_ref_put(m, &r);
	return err;
}

int qcow2_mt_job_link(struct qcow2_meta *m, struct qcow2_job *job)
{
	const struct qcow2_geom *g = &m->qi->geom;
	const struct qcow2_wplan *p = &job->plan;
	uint64_t cs;
	int err;

	err = qcow2_mt_mark_dirty(m);
	for (cs = ALIGN_DOWN(p->guest_start, g->cluster_bytes); !err && cs < p->guest_end;
	     cs += g->cluster_bytes)
		err = link_cluster(m, p, cs);
	if (!err)
		err = qcow2_mt_relieve_pressure(m);
	return err;
}

int qcow2_mt_job_abort(struct qcow2_meta *m, struct qcow2_job *job)
{
	const struct qcow2_wplan *p = &job->plan;

	if (p->compressed)
		return qcow2_rc_update(m->rc, p->host_start, p->compressed_bytes, -1);
	if (!p->new_host)
		return 0;
	return qcow2_rc_update(m->rc, p->new_host, p->new_clusters * m->qi->geom.cluster_bytes, -1);
}

/* ---- compressed clusters --------------------------------------------------------------- */

int qcow2_mt_job_alloc_bytes(struct qcow2_meta *m, struct qcow2_job *job)
{
	struct qcow2_wplan *p = &job->plan;
	int err;

	err = qcow2_rc_alloc_bytes(m->rc, p->compressed_bytes, &p->host_start);
	if (!err)
		err = qcow2_mt_overlap_check(m, p->host_start, p->compressed_bytes,
					     "compressed data");
	if (!err)
		p->compressed = true;
	return err;
}

int qcow2_mt_job_link_compressed(struct qcow2_meta *m, struct qcow2_job *job)
{
	const struct qcow2_wplan *p = &job->plan;
	struct l2_ref r;
	uint64_t entry;
	int err;

	err = qcow2_mt_mark_dirty(m);
	if (!err)
		err = qcow2_mt_entry_get(m, job->pos, true, &r);
	if (err)
		return err;
	err = qcow2_mt_free_entry_host(m, &r.e);
	if (!err)
		err = qcow2_l2_entry_encode_compressed(&m->qi->geom, p->host_start,
						       p->compressed_bytes, &entry);
	if (!err)
		qcow2_mt_entry_set(m, &r, entry, 0);
	qcow2_mt_ref_put(m, &r);
	return err ?: qcow2_mt_relieve_pressure(m);
}

/* ---- ZERO and DISCARD ------------------------------------------------------------------ */

/*
 * The new entry for whole units [@from, @to) of the cluster at @cs that
 * must read as zeros (@zero) or be discarded.  Returns 0 with the new
 * entry, bitmap and whether the old host space is released.
 */
static void zero_entry(struct qcow2_meta *m, const struct qcow2_l2_entry *e, uint64_t cs,
		       uint64_t from, uint64_t to, bool zero, unsigned flags, uint64_t *entry,
		       uint64_t *bitmap, bool *release)
{
	const struct qcow2_geom *g = &m->qi->geom;
	bool whole = from == cs && to - from == g->cluster_bytes;
	bool v3 = m->qi->hdr.version >= 3;
	/* keep the cluster for in-place reuse: needs the zero flag (v3) */
	bool keep = zero && v3 && !(flags & DRV_REQ_MAY_UNMAP) && e->host_offset && e->copied &&
		    e->type != QCOW2_CLUSTER_COMPRESSED;

	*release = false;
	*bitmap = 0;
	if (g->extended_l2) {
		uint32_t bits = sc_bits(qcow2_sc_index(g, from), qcow2_sc_index(g, to - 1));

		if (whole && !keep) {
			*entry = 0;
			*bitmap = QCOW2_SC_ALL_ZERO;
			*release = e->host_offset != 0;
			return;
		}
		*entry = e->host_offset ? (e->host_offset | QCOW2_OFLAG_COPIED * e->copied) : 0;
		*bitmap = ((uint64_t)(e->zero_bitmap | bits) << 32) | (e->alloc_bitmap & ~bits);
		return;
	}
	*release = !keep && e->host_offset;
	if (!v3)
		*entry = 0; /* v2: no zero flag; callers only get here without a backing file */
	else if (keep)
		*entry = qcow2_l2_entry_encode_zero(e->host_offset, true);
	else if (!zero && !m->img->backing && e->type == QCOW2_CLUSTER_UNALLOCATED)
		*entry = 0;
	else
		*entry = QCOW2_OFLAG_ZERO;
}

static int zero_cluster(struct qcow2_meta *m, struct qcow2_job *job, uint64_t cs, uint64_t from,
			uint64_t to)
{
	bool zero = job->kind == QCOW2_JOB_ZERO;
	uint64_t entry, bitmap;
	struct l2_ref r;
	bool release;
	int err;

	err = qcow2_mt_entry_get(m, cs, true, &r);
	if (err)
		return err;
	if (r.e.type == QCOW2_CLUSTER_COMPRESSED && m->qi->geom.extended_l2 &&
	    to - from != m->qi->geom.cluster_bytes) {
		qcow2_mt_ref_put(m, &r);
		return -ENOTSUP; /* subclusters of a compressed cluster: write zeros */
	}
	zero_entry(m, &r.e, cs, from, to, zero, job->flags, &entry, &bitmap, &release);
	if (release)
		err = qcow2_mt_free_entry_host(m, &r.e);
	if (!err)
		qcow2_mt_entry_set(m, &r, entry, bitmap);
	qcow2_mt_ref_put(m, &r);
	return err;
}

/* Whole units of [job->pos, job->end), at most ZERO_JOB_CLUSTERS clusters. */
int qcow2_mt_job_zero(struct qcow2_meta *m, struct qcow2_job *job)
{
	const struct qcow2_geom *g = &m->qi->geom;
	uint64_t pos = job->pos, n = 0;
	int err;

	err = qcow2_mt_mark_dirty(m);
	while (!err && pos < job->end && n++ < ZERO_JOB_CLUSTERS) {
		uint64_t cs = ALIGN_DOWN(pos, g->cluster_bytes);
		uint64_t to = MIN(cs + g->cluster_bytes, job->end);

		err = zero_cluster(m, job, cs, pos, to);
		if (!err)
			err = qcow2_mt_relieve_pressure(m);
		if (!err)
			pos = to;
	}
	job->done_bytes = pos - job->pos;
	return err;
}
