/* SPDX-License-Identifier: MIT */
/*
 * Shared by meta.c (the metadata thread: header bits, overlap checks,
 * write-back, L1/L2 access, the thread, range locks, lifecycle) and
 * meta-jobs.c (the jobs that change mapping: ALLOC, LINK, ABORT, the
 * compressed-write pair, ZERO and DISCARD).  Everything here runs on the
 * metadata thread, or at open/close when it is not running.
 */
#ifndef QTAP_QCOW2_META_INTERNAL_H
#define QTAP_QCOW2_META_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "qcow2/internal.h"
#include "qcow2/meta.h"

struct qcow2_rc;
struct qcow2_bitmaps;

struct qcow2_meta {
	struct drv_image *img;
	struct qcow2_image *qi;
	struct qcow2_rc *rc;
	struct evloop *loop;
	pthread_t thread;
	bool running;
	struct evloop_call stop;
	uint8_t *l1_dirty; /* one flag per L1_CHUNK_BYTES of the table */
	uint64_t l1_chunks;
	bool l1_any_dirty;
	bool lazy;		/* lazy refcounts: dirty bit set before the first change */
	bool dirty_bit;		/* the header's dirty bit is set (by us or found) */
	bool corrupt;		/* marked corrupt: refuse every change */
	bool cache_covers_disk; /* the L2 cache can hold every table at once */
	/* the file's space allocated ahead of the clusters (qcow2_mt_grow) */
	uint64_t open_bytes; /* the file's size at open */
	uint64_t grown_to;   /* its size since the last grow */
	bool grow_off;	     /* the file system cannot: writes extend the file */
	/* guest range locks */
	pthread_mutex_t range_mutex;
	struct qcow2_range *held;
	unsigned nr_held_exclusive; /* held ranges that are not shared */
};

/* One L2 entry of the image's own table, its slice pinned. */
struct l2_ref {
	struct qcow2_l2_slice *s;
	uint64_t in_slice;
	uint64_t raw[2]; /* entry, bitmap */
	struct qcow2_l2_entry e;
};

int qcow2_mt_entry_get(struct qcow2_meta *m, uint64_t guest, bool own, struct l2_ref *r);
void qcow2_mt_entry_set(struct qcow2_meta *m, struct l2_ref *r, uint64_t entry, uint64_t bitmap);
int qcow2_mt_free_entry_host(struct qcow2_meta *m, const struct qcow2_l2_entry *e);
int qcow2_mt_mark_dirty(struct qcow2_meta *m);
int qcow2_mt_overlap_check(void *opaque, uint64_t off, uint64_t len, const char *what);
void qcow2_mt_ref_put(struct qcow2_meta *m, struct l2_ref *r);
int qcow2_mt_relieve_pressure(struct qcow2_meta *m);
void qcow2_mt_grow(struct qcow2_meta *m);
int qcow2_mt_job_abort(struct qcow2_meta *m, struct qcow2_job *job);
int qcow2_mt_job_alloc(struct qcow2_meta *m, struct qcow2_job *job);
int qcow2_mt_job_alloc_bytes(struct qcow2_meta *m, struct qcow2_job *job);
int qcow2_mt_job_link(struct qcow2_meta *m, struct qcow2_job *job);
int qcow2_mt_job_link_compressed(struct qcow2_meta *m, struct qcow2_job *job);
int qcow2_mt_job_zero(struct qcow2_meta *m, struct qcow2_job *job);

#endif
