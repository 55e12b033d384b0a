/* SPDX-License-Identifier: MIT */
/*
 * Shared by the qcow2 driver files (qcow2.c open/close, map.c, read.c,
 * backing.c, status.c); not an interface for anything else.
 *
 * The driver is split as ARCHITECTURE.md §3 asks: a metadata engine (map.c
 * over cache.c) turns a guest range into host extents, and the data path
 * (read.c, backing.c) issues the I/O with no lock held.
 *
 * A request is processed in passes: map up to QCOW2_PASS_EXTENTS extents
 * into the request's scratch, issue them all, and when every one has
 * completed, map the next pass.  The scratch is bounded whatever the
 * request's length.
 */
#ifndef QTAP_QCOW2_INTERNAL_H
#define QTAP_QCOW2_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "aio.h"
#include "driver.h"
#include "evloop.h"
#include "qcow2/bitmap.h"
#include "qcow2/cache.h"
#include "qcow2/format.h"
#include "qcow2/meta.h"

/* ---- the image --------------------------------------------------------------- */

struct qcow2_meta;

struct qcow2_image {
	struct aio_file *file;
	struct qcow2_header hdr;
	struct qcow2_geom geom;
	uint64_t *l1; /* hdr.l1_size host-endian entries, decoded on use */
	struct qcow2_l2_cache *l2_cache;
	struct qcow2_meta *meta;       /* writable images: the metadata thread (meta.c) */
	struct qcow2_bitmaps *bitmaps; /* writable images: maintained dirty bitmaps, or NULL */
	struct qcow2_bmq *bmq;	       /* the bitmaps clients query, once listed (bitmap-query.c) */
	uint8_t *zero_buf;	       /* writable images: one cluster of zeros */
	char *backing_spec;	       /* "FMT:/abs/path", or NULL */
	/*
	 * The end of the image file: its size at open, raised (atomically, by
	 * refcount.c) past every cluster allocated since.  L2 tables must lie
	 * inside it.
	 */
	uint64_t file_bytes;
	uint64_t rc_cache_bytes; /* refcount-cache-size; 0: refcount.c's default */
};

/* ---- open-time options (open-opts.c) ------------------------------------------------ */

extern const struct drv_opt_desc qcow2_open_opts[];

struct qcow2_cache_cfg {
	uint64_t l2_slice_bytes;
	unsigned l2_slices;
	uint64_t rc_cache_bytes; /* 0: refcount.c's default */
};

/*
 * qcow2_cache_cfg - the cache sizes for @img's open options (l2-cache-size,
 * l2-cache-entry-size, refcount-cache-size, cache-size, as QEMU reads them)
 * or the defaults, for geometry @g and a disk of @size_bytes.  The L2
 * cache never goes below QCOW2_L2_CACHE_MIN_SLICES slices.  0 or -EINVAL /
 * -ENOTSUP (logged, naming the option).
 */
int qcow2_cache_cfg(const struct drv_image *img, const struct qcow2_geom *g, uint64_t size_bytes,
		    struct qcow2_cache_cfg *out);

/* ---- per-queue state ------------------------------------------------------------ */

struct qcow2_req;
struct qcow2_xio;

/* The caller's iovec position of a guest byte within the request. */
struct qcow2_iov_cursor {
	unsigned idx;
	uint64_t off;
};

/* Requests waiting for a per-queue slot, first come first served. */
struct qcow2_waitq {
	struct qcow2_req *head;
	struct qcow2_req *tail;
};

/* Reading and decompressing one compressed cluster. */
struct qcow2_zslot {
	struct aio_req aio;
	struct iovec iov;
	uint8_t *in;  /* compressed bytes, up to two clusters */
	uint8_t *out; /* one decompressed cluster */
	struct qcow2_xio *xio;
	struct qcow2_zslot *next_free;
};

/* A sub-request to the backing image, with its own scratch. */
struct qcow2_bslot {
	struct drv_req sub;
	void *sub_priv;
	struct iovec *iov; /* QCOW2_BACKING_IOVS entries */
	uint8_t *bounce;   /* QCOW2_BACKING_BOUNCE_BYTES, for unaligned pieces */
	struct qcow2_xio *xio;
	struct qcow2_bslot *next_free;
	struct qcow2_iov_cursor cur; /* at @pos */
	uint64_t pos;		     /* next guest byte of the extent to fetch */
	uint64_t chunk_off;	     /* guest offset the current sub-request's bytes start at */
	uint64_t chunk_len;	     /* bytes of it the extent wants */
	uint64_t skip;		     /* bounced: bytes of the bounce buffer before chunk_off */
	bool bounced;
	bool in_submit; /* a completion now is synchronous: the loop continues */
	bool sub_done;
	int sub_err;
};

/* Copy-on-write buffers of one allocating write: the head and the tail. */
struct qcow2_cslot {
	uint8_t *buf[2];       /* one cluster each */
	struct drv_req sub[2]; /* reads of this image's own view */
	void *sub_priv[2];     /* their scratch: a struct qcow2_req each */
	struct iovec iov[2];
	struct qcow2_cslot *next_free;
};

struct qcow2_queue {
	struct qcow2_cslot *cslots;
	unsigned nr_cslots;
	struct qcow2_cslot *cfree;
	struct qcow2_waitq cwait;
	struct qcow2_codec *codec; /* this thread's decompressor */
	struct qcow2_zslot *zslots;
	unsigned nr_zslots;
	struct qcow2_zslot *zfree;
	struct qcow2_waitq zwait;
	struct qcow2_bslot *bslots;
	unsigned nr_bslots;
	struct qcow2_bslot *bfree;
	struct qcow2_waitq bwait;
	uint64_t bounce_bytes; /* of each backing slot's bounce buffer */
};

#define QCOW2_BACKING_SLOTS 8u
#define QCOW2_BACKING_IOVS 32u
#define QCOW2_BACKING_BOUNCE_BYTES (64u << 10)

/* ---- mapping ------------------------------------------------------------------ */

#define QCOW2_PASS_EXTENTS 16u
#define QCOW2_PASS_IOVS 32u

enum qcow2_ext_type {
	QCOW2_EXT_DATA,	      /* host_offset holds the bytes */
	QCOW2_EXT_ZERO,	      /* reads as zeros, no host cluster */
	QCOW2_EXT_ZERO_ALLOC, /* reads as zeros, host cluster at host_offset */
	QCOW2_EXT_UNALLOC,    /* not in this image: backing file, or zeros */
	QCOW2_EXT_COMPRESSED, /* within one cluster; data at host_offset */
};

struct qcow2_extent {
	enum qcow2_ext_type type;
	uint64_t guest_offset;
	uint64_t len;
	uint64_t host_offset;	   /* of guest_offset (DATA, ZERO_ALLOC) or the data */
	uint64_t compressed_bytes; /* COMPRESSED: bytes to read at host_offset */
	bool copied;		   /* the L2 entry's COPIED flag: refcount 1 */
};

struct qcow2_map;
typedef void qcow2_map_resume_fn(struct qcow2_map *m);

/*
 * One pass of mapping.  qcow2_map_reset() starts it at @pos; qcow2_map_fill()
 * appends extents (merging neighbours) until @end or the array is full.
 */
struct qcow2_map {
	uint64_t pos; /* next guest byte to map */
	uint64_t end;
	unsigned nr;
	struct qcow2_extent ext[QCOW2_PASS_EXTENTS];
	/* parked on the L2 cache */
	struct qcow2_l2_wait wait;
	struct qcow2_l2_slice *slice; /* delivered by the wait, not yet used */
	int wait_err;
	qcow2_map_resume_fn *resume; /* called on the queue's thread after a wait */
};

void qcow2_map_reset(struct qcow2_map *m, uint64_t pos, uint64_t end);

/*
 * qcow2_map_fill - map from m->pos on.  Returns 0 (m->pos == m->end or the
 * extent array is full), -EINPROGRESS (parked on an L2 slice: m->resume
 * runs later on @q's thread, and the caller calls this again), or -EIO for
 * corrupt metadata (logged with the image, the table entry and the guest
 * offset).
 */
int qcow2_map_fill(struct drv_image *img, struct qcow2_map *m, struct drv_queue *q);

/* ---- requests --------------------------------------------------------------------- */

/* One extent of the current pass being served. */
struct qcow2_xio {
	struct aio_req aio; /* DATA */
	struct qcow2_req *qr;
	struct qcow2_extent *ext;
	struct qcow2_iov_cursor cur; /* where ext->guest_offset lands in req->iov */
};

typedef void qcow2_run_fn(struct qcow2_req *qr);

/* The driver's scratch of one request (req->priv). */
struct qcow2_req {
	struct drv_req *req;
	struct drv_image *img;
	qcow2_run_fn *run;
	uint64_t pos; /* guest bytes before this are done */
	uint64_t end;
	uint64_t pass_end; /* the current pass covers [pos, pass_end) */
	struct qcow2_map map;
	bool mapping;  /* a pass is being mapped */
	bool mapped;   /* the pass's extents are being issued */
	bool running;  /* inside ->run: completions must not re-enter it */
	bool parked;   /* waiting for a per-queue slot */
	unsigned next; /* next extent of the pass to issue */
	unsigned inflight;
	int err;
	struct qcow2_iov_cursor cur; /* at the next extent to issue */
	unsigned iov_used;
	struct iovec iov_pool[QCOW2_PASS_IOVS];
	struct qcow2_xio xio[QCOW2_PASS_EXTENTS];
	/* parking on a per-queue wait list */
	struct evloop_call resume;
	struct qcow2_req *wait_next;
	void *grant; /* a slot handed over by its releaser */

	/* the bytes to write (req->iov; zeros for a zero write) */
	const struct iovec *iov;
	/* writes, zero writes and discards (write.c) */
	struct qcow2_range range;
	bool range_held;
	unsigned wstate;
	struct qcow2_job job;
	struct qcow2_cslot *cslot;
	uint64_t wr_pos; /* allocating pass: stream bytes written so far */
	struct iovec zero_iov;
};

void qcow2_read(struct drv_image *img, struct drv_req *req);
void qcow2_block_status(struct drv_image *img, struct drv_req *req);
void qcow2_flush(struct drv_image *img, struct drv_req *req);

void qcow2_write(struct drv_image *img, struct drv_req *req);
void qcow2_write_zeroes(struct drv_image *img, struct drv_req *req);
void qcow2_discard(struct drv_image *img, struct drv_req *req);
void qcow2_write_compressed(struct drv_image *img, struct drv_req *req);
void qcow2_flush_meta(struct drv_image *img, struct drv_req *req);
int qcow2_write_queue_init(struct drv_image *img, struct qcow2_queue *qq);
void qcow2_write_queue_fini(struct drv_image *img, struct qcow2_queue *qq);

/* Shared between read.c, write.c and backing.c. */
void qcow2_req_kick(struct qcow2_req *qr);
int qcow2_issue_data(struct qcow2_req *qr, struct qcow2_xio *x, enum aio_op op);
void qcow2_req_init(struct qcow2_req *qr, struct drv_image *img, struct drv_req *req,
		    qcow2_run_fn *run);
void qcow2_xio_done(struct qcow2_xio *x, int err);
void qcow2_req_park(struct qcow2_req *qr, struct qcow2_waitq *wq);
void qcow2_waitq_grant(struct qcow2_waitq *wq, void *slot, bool *granted);

/* bitmap-query.c */
struct qcow2_bmq;
int qcow2_bitmap_list(struct drv_image *img, const char **names, unsigned max, unsigned *count);
void qcow2_bitmap_status(struct drv_image *img, struct drv_req *req);
void qcow2_bmq_free(struct qcow2_bmq *q);

/* backing.c */
int qcow2_backing_queue_init(struct drv_image *img, struct qcow2_queue *qq);
void qcow2_backing_queue_fini(struct qcow2_queue *qq);
/*
 * qcow2_backing_issue - serve an UNALLOC extent from img->backing (zeros
 * past its end).  0 when issued, -EINPROGRESS when parked for a slot.
 */
int qcow2_backing_issue(struct qcow2_xio *x);

/* iov.c: walking the caller's iovec */
void qcow2_iov_advance(const struct iovec *iov, struct qcow2_iov_cursor *cur, uint64_t len);
void qcow2_iov_memset(const struct iovec *iov, struct qcow2_iov_cursor cur, int c, uint64_t len);
void qcow2_iov_to_buf(const struct iovec *iov, struct qcow2_iov_cursor cur, void *buf,
		      uint64_t len);
void qcow2_iov_from_buf(const struct iovec *iov, struct qcow2_iov_cursor cur, const void *buf,
			uint64_t len);
/*
 * qcow2_iov_slice - describe up to @len bytes from @cur in at most @max
 * entries of @out; returns the bytes described (less than @len when the
 * entries run out).
 */
uint64_t qcow2_iov_slice(const struct iovec *iov, struct qcow2_iov_cursor cur, uint64_t len,
			 struct iovec *out, unsigned max, unsigned *used);

#endif
