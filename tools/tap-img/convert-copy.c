/* SPDX-License-Identifier: MIT */
/*
 * The copy engine of tap-img convert, in the manner of qemu-img's: the
 * source is cut into chunks of at most cfg->buf_bytes that share one block
 * status (data, zero, or left to the target's backing), and up to
 * cfg->parallel chunks are in flight at once, per worker, on the worker's
 * event loop and aio context, which both chains share.
 *
 *   planning   the source's block status, asked of the top image and, for
 *              ranges it does not hold, of each backing image in turn (one
 *              query at a time; the extent found is cached until used up).
 *              Zero ranges need no I/O when the target is known to read as
 *              zeros; everything else takes a slot.
 *   reading    a data chunk is read through the source chain into its
 *              slot's buffer; reads of different slots overlap.
 *   writing    the buffer is cut into runs of data and of zeros (zero
 *              detection at cfg->sparse_bytes granularity, so holes stay
 *              holes), and each run is written, zeroed or skipped.  With
 *              cfg->in_order one chunk writes at a time, in offset order,
 *              so a format that allocates as it goes lays the image out
 *              sequentially, as qemu-img does without -W.
 *
 * Workers: cfg->workers threads copy at once, each with its own event
 * loop, aio context and driver queue (the drivers serve several queue
 * threads at once), so compression (-c) and zero detection use every core.
 * They take the image in segments of CV_SEGMENT_BYTES from a shared
 * cursor; within a worker, in-order writes stay in order.
 *
 * Completions may arrive synchronously from inside drv_submit(), so all
 * the issuing happens in convert_pump(), a loop that a completion re-arms
 * rather than re-enters: the stack never grows with the image.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"
#include "convert-internal.h"
#include "convert.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "tap-img.h"

#define CV_MAX_ZERO_CHUNK_BYTES (1ull << 30) /* a multiple of every alignment */

static void slot_write(struct cv_slot *s);

/* ---- errors and progress ---------------------------------------------------------- */

/* Record the first failure and report it once, like qemu-img. */
void convert_fail(struct cv_state *st, int err, const char *what, const char *name, uint64_t offset)
{
	int none = 0;

	if (st->err)
		return;
	st->err = err;
	if (__atomic_compare_exchange_n(&st->sh->err, &none, err, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST))
		img_err("convert", "error while %s %s at byte %" PRIu64 ": %s", what, name, offset,
			err_str(err));
}

/* This worker or another failed: stop issuing. */
bool convert_stopped(const struct cv_state *st)
{
	return st->err || __atomic_load_n(&st->sh->err, __ATOMIC_RELAXED);
}

/* qemu-img's progress line, "    (12.34/100%)\r", on stdout every 1 %. */
void convert_progress(struct cv_shared *sh, bool force)
{
	uint64_t size = sh->cfg->size_bytes;
	uint64_t done = __atomic_load_n(&sh->done_bytes, __ATOMIC_RELAXED);
	double pct = size ? (double)done * 100.0 / (double)size : 100.0;

	if (!sh->cfg->progress)
		return;
	pthread_mutex_lock(&sh->lock);
	if (force || pct >= sh->last_pct + 1.0 || (pct >= 100.0 && sh->last_pct < 100.0)) {
		sh->last_pct = pct;
		printf("    (%3.2f/100%%)\r", pct);
		fflush(stdout);
	}
	pthread_mutex_unlock(&sh->lock);
}

static void account_done(struct cv_state *st, uint64_t bytes)
{
	__atomic_add_fetch(&st->sh->done_bytes, bytes, __ATOMIC_RELAXED);
	convert_progress(st->sh, false);
}

void convert_inflight_inc(struct cv_state *st)
{
	st->inflight++;
	st->max_inflight = MAX(st->max_inflight, st->inflight);
}

/* ---- block status ----------------------------------------------------------------- */

static void status_query(struct cv_state *st, uint64_t offset, uint64_t end);

static void status_found(struct cv_state *st, uint64_t offset, uint64_t end, enum cv_kind kind)
{
	st->ext = (struct cv_extent){ .start = offset, .end = end, .kind = kind, .valid = true };
	st->status_busy = false;
	log_dbg(LOG_F_TOOL, "convert: %s: %" PRIu64 "+%" PRIu64 " is %s (depth %u)",
		st->cfg->src_name, offset, end - offset,
		kind == CV_DATA	  ? "data"
		: kind == CV_ZERO ? "zero"
				  : "left to the target's backing",
		st->slevel->depth);
	convert_pump(st);
}

/*
 * What the chain holds at [@offset, *@end), from one level's answer
 * @flags: zeros and data end the walk; a range the level does not hold is
 * left to the target's backing (-B), reads as zeros past the end of the
 * level's backing image, or is the backing image's to answer (-1).
 */
static int status_kind(const struct cv_state *st, const struct drv_image *img, unsigned flags,
		       uint64_t offset, uint64_t *end)
{
	const struct convert_cfg *cfg = st->cfg;

	if (flags & DRV_BS_ZERO) {
		/* With -B, zeros must hide the target's backing, but only where it has data. */
		if (!cfg->target_has_backing)
			return CV_ZERO;
		if (offset >= cfg->target_backing_bytes)
			return CV_SKIP;
		*end = MIN(*end, cfg->target_backing_bytes);
		return CV_ZERO;
	}
	if (flags & DRV_BS_DATA)
		return CV_DATA;
	if (cfg->target_has_backing && img == cfg->src)
		return CV_SKIP;
	if (!img->backing || offset >= img->backing->size_bytes)
		return CV_ZERO;
	return -1;
}

static void status_done(struct drv_req *req, int err)
{
	struct cv_state *st = req->opaque;
	struct drv_image *img = st->slevel;
	uint64_t offset = req->offset;
	uint64_t end = offset + MIN(req->status.len, req->len);
	int kind;

	st->inflight--;
	if (!err && req->status.len == 0) {
		log_err("block_status %s: offset %" PRIu64 ": the driver returned an empty extent",
			img->path, offset);
		err = -EIO;
	}
	if (err && st->cfg->salvage) {
		/* qemu-img's salvage: warn, then just try to read the data */
		if (!st->cfg->quiet)
			img_err("convert",
				"warning: error while reading block status at offset "
				"%" PRIu64 ": %s",
				offset, err_str(err));
		status_found(st, offset, MIN(offset + st->align, st->cfg->size_bytes), CV_DATA);
		return;
	}
	if (err) {
		convert_fail(st, err, "reading the block status of", img->path, offset);
		st->status_busy = false;
		convert_pump(st);
		return;
	}
	kind = status_kind(st, img, req->status.flags, offset, &end);
	if (kind >= 0) {
		status_found(st, offset, end, (enum cv_kind)kind);
		return;
	}
	st->slevel = img->backing;
	status_query(st, offset, MIN(end, img->backing->size_bytes));
}

/* Ask st->slevel about [@offset, @end); a level that cannot answer says "data". */
static void status_query(struct cv_state *st, uint64_t offset, uint64_t end)
{
	struct drv_image *img = st->slevel;
	uint64_t aligned_end = ALIGN_DOWN(end, (uint64_t)img->block_bytes);

	if (!(img->caps & DRV_CAP_BLOCK_STATUS) || !is_aligned_u64(offset, img->block_bytes) ||
	    aligned_end <= offset) {
		status_found(st, offset, end, CV_DATA);
		return;
	}
	st->sreq = (struct drv_req){
		.op = DRV_OP_BLOCK_STATUS,
		.offset = offset,
		.len = aligned_end - offset,
		.q = st->q,
		.done = status_done,
		.opaque = st,
		.priv = st->priv + st->cfg->parallel * st->priv_bytes,
	};
	convert_inflight_inc(st);
	drv_submit(img, &st->sreq);
}

static void status_start(struct cv_state *st)
{
	st->status_busy = true;
	st->slevel = st->cfg->src;
	status_query(st, st->plan_pos, st->cfg->size_bytes);
}

/* ---- planning --------------------------------------------------------------------- */

/*
 * Does a chunk of @kind go through a slot's buffer?  Zeros need none when
 * they are skipped or the target zeroes ranges itself, so they are taken
 * in chunks larger than the buffers.
 */
static bool chunk_needs_buf(const struct cv_state *st, enum cv_kind kind)
{
	const struct convert_cfg *cfg = st->cfg;

	if (kind == CV_DATA)
		return true;
	if (kind == CV_SKIP || cfg->zero_init)
		return false;
	return !(cfg->dst->caps & DRV_CAP_WRITE_ZEROES);
}

/*
 * The end of the next chunk at st->plan_pos, of kind *@kind.  Every chunk
 * but the last ends on st->align; an extent that does not is rounded: data
 * up (reading a little more through the chain is always right), zeros
 * down, or, when nothing would be left, turned into data.
 */
static uint64_t plan_end(struct cv_state *st, enum cv_kind *kind)
{
	const struct convert_cfg *cfg = st->cfg;
	uint64_t pos = st->plan_pos;
	uint64_t limit, end;

	*kind = st->ext.kind;
	limit = MIN(cfg->size_bytes,
		    pos + (chunk_needs_buf(st, *kind) ? cfg->buf_bytes : CV_MAX_ZERO_CHUNK_BYTES));
	end = MIN(st->ext.end, limit);
	if (end == limit || is_aligned_u64(end, st->align))
		return end;
	if (*kind != CV_DATA && ALIGN_DOWN(end, st->align) > pos)
		return ALIGN_DOWN(end, st->align);
	*kind = CV_DATA;
	return MIN(limit, ALIGN_DOWN(end, st->align) + st->align);
}

/* Take the next segment from the shared cursor; false when none is left. */
static bool next_segment(struct cv_state *st)
{
	uint64_t size = st->cfg->size_bytes;
	uint64_t seg = __atomic_fetch_add(&st->sh->cursor, CV_SEGMENT_BYTES, __ATOMIC_RELAXED);

	if (seg >= size) {
		st->seg_end = st->plan_pos = size;
		return false;
	}
	st->plan_pos = seg;
	st->seg_end = MIN(size, seg + CV_SEGMENT_BYTES);
	return true;
}

static struct cv_slot *free_slot(struct cv_state *st)
{
	unsigned i;

	for (i = 0; i < st->cfg->parallel; i++) {
		if (st->slots[i].state == CV_FREE)
			return &st->slots[i];
	}
	return NULL;
}

/* --salvage reads sector by sector: 512 bytes, or the source's block */
static uint64_t salvage_unit(const struct cv_state *st)
{
	return MAX(512u, st->cfg->src->block_bytes);
}

static void salvage_next(struct cv_slot *s);

/* A failed sector is a warning and zeros (qemu-img: "error while reading offset N"). */
static void salvage_done(struct drv_req *req, int err)
{
	struct cv_slot *s = req->opaque;
	struct cv_state *st = s->st;

	st->inflight--;
	if (err) {
		if (!st->cfg->quiet)
			img_err("convert", "warning: error while reading offset %" PRIu64 ": %s",
				req->offset, err_str(err));
		memset(s->buf + s->salvage_pos, 0, req->len);
	}
	s->salvage_pos += req->len;
	if (s->in_submit) {
		s->sync_done = true;
		return;
	}
	salvage_next(s);
	if (s->state == CV_READY)
		convert_pump(st);
}

/* Read the rest of the chunk one sector at a time; then it is ready to write. */
static void salvage_next(struct cv_slot *s)
{
	struct cv_state *st = s->st;

	while (s->salvage_pos < s->len) {
		uint64_t len = MIN(salvage_unit(st), s->len - s->salvage_pos);

		s->iov = (struct iovec){ .iov_base = s->buf + s->salvage_pos, .iov_len = len };
		s->req.op = DRV_OP_READ;
		s->req.flags = 0;
		s->req.offset = s->offset + s->salvage_pos;
		s->req.len = len;
		s->req.done = salvage_done;
		s->in_submit = true;
		s->sync_done = false;
		convert_inflight_inc(st);
		drv_submit(st->cfg->src, &s->req);
		s->in_submit = false;
		if (!s->sync_done)
			return; /* salvage_done continues */
	}
	s->state = CV_READY;
}

static void read_done(struct drv_req *req, int err)
{
	struct cv_slot *s = req->opaque;
	struct cv_state *st = s->st;

	st->inflight--;
	if (err && st->cfg->salvage) {
		s->salvage_pos = 0;
		salvage_next(s);
	} else if (err) {
		convert_fail(st, err, "reading", st->cfg->src_name, s->offset);
		s->state = CV_FREE;
	} else {
		s->state = CV_READY;
	}
	convert_pump(st);
}

static void slot_start(struct cv_state *st, struct cv_slot *s, enum cv_kind kind, uint64_t end)
{
	s->kind = kind;
	s->offset = st->plan_pos;
	s->len = end - st->plan_pos;
	s->seq = st->next_seq++;
	s->wpos = 0;
	s->buf_zeroed = false;
	if (kind != CV_DATA) {
		s->state = CV_READY;
		return;
	}
	if (st->cfg->rate)
		img_ratelimit_wait(st->cfg->rate, s->len);
	s->state = CV_READING;
	s->iov = (struct iovec){ .iov_base = s->buf, .iov_len = s->len };
	s->req.op = DRV_OP_READ;
	s->req.flags = 0;
	s->req.offset = s->offset;
	s->req.len = s->len;
	s->req.done = read_done;
	convert_inflight_inc(st);
	drv_submit(st->cfg->src, &s->req);
}

/*
 * Plan the next chunk: skip it, start it on a free slot, or ask for the
 * block status it needs.  False when nothing can be done until a slot or
 * the status comes back, or when everything is planned.
 */
static bool plan_one(struct cv_state *st)
{
	const struct convert_cfg *cfg = st->cfg;
	struct cv_slot *s;
	enum cv_kind kind;
	uint64_t end;

	/* (a failed block status completes at once: planning again would loop) */
	if (st->status_busy || convert_stopped(st))
		return false;
	if (st->plan_pos >= st->seg_end && !next_segment(st))
		return false;
	if (!st->ext.valid || st->plan_pos >= st->ext.end || st->plan_pos < st->ext.start) {
		if (cfg->sparse_bytes == 0) /* -S 0: everything is copied as data */
			st->ext =
				(struct cv_extent){ st->plan_pos, cfg->size_bytes, CV_DATA, true };
		else
			status_start(st);
		return true;
	}
	end = MIN(plan_end(st, &kind), st->seg_end);
	if (kind == CV_SKIP || (kind == CV_ZERO && cfg->zero_init)) {
		account_done(st, end - st->plan_pos);
		st->plan_pos = end;
		return true;
	}
	s = free_slot(st);
	if (!s)
		return false;
	slot_start(st, s, kind, end);
	st->plan_pos = end;
	return true;
}

/* ---- writing ---------------------------------------------------------------------- */

static bool is_zero(const uint8_t *p, uint64_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/*
 * The next run of the chunk from s->wpos: its length, and whether it is
 * zeros.  Data chunks are scanned in st->gran pieces aligned to the image,
 * so the target's holes line up with its blocks whatever the chunk; a
 * compressed cluster is written whole or not at all.
 */
static uint64_t next_run(struct cv_state *st, const struct cv_slot *s, bool *zero)
{
	uint64_t pos = s->offset + s->wpos, end = s->offset + s->len;
	uint64_t run_end = pos;
	bool piece_zero;

	if (s->kind == CV_ZERO || st->cfg->sparse_bytes == 0 || st->cfg->copy_offload) {
		*zero = s->kind == CV_ZERO;
		return end - pos;
	}
	if (st->cfg->compress) {
		*zero = is_zero(s->buf, s->len);
		return s->len;
	}
	*zero = false;
	while (run_end < end) {
		uint64_t piece_end = MIN(end, run_end - run_end % st->gran + st->gran);

		piece_zero = is_zero(s->buf + (run_end - s->offset), piece_end - run_end);
		if (run_end == pos)
			*zero = piece_zero;
		else if (piece_zero != *zero)
			break;
		run_end = piece_end;
	}
	return run_end - pos;
}

static void write_done(struct drv_req *req, int err)
{
	struct cv_slot *s = req->opaque;
	struct cv_state *st = s->st;

	st->inflight--;
	if (err)
		convert_fail(st, err, "writing", st->cfg->dst_name, req->offset);
	else
		s->wpos += s->run_len;
	if (s->in_submit) {
		s->sync_done = true;
		return;
	}
	slot_write(s);
	convert_pump(st);
}

/*
 * Issue the run [s->wpos, + @len): data is written; zeros are written as
 * zeros (with -S 0, where the target must end up fully allocated, or when
 * the target cannot zero), or zeroed by the driver, which may unmap.
 */
static void run_issue(struct cv_state *st, struct cv_slot *s, uint64_t len, bool zero)
{
	const struct convert_cfg *cfg = st->cfg;
	bool as_data = !zero || cfg->sparse_bytes == 0 || !(cfg->dst->caps & DRV_CAP_WRITE_ZEROES);

	s->run_len = len;
	s->req.offset = s->offset + s->wpos;
	s->req.len = len;
	s->req.done = write_done;
	convert_inflight_inc(st);
	if (cfg->compress && !zero) {
		s->iov = (struct iovec){ .iov_base = s->buf + s->wpos, .iov_len = len };
		s->req.op = DRV_OP_WRITE;
		s->req.flags = DRV_REQ_COMPRESSED;
	} else if (as_data) {
		if (zero && s->kind == CV_ZERO && !s->buf_zeroed) {
			memset(s->buf, 0, s->len);
			s->buf_zeroed = true;
		}
		s->iov = (struct iovec){ .iov_base = s->buf + s->wpos, .iov_len = len };
		s->req.op = DRV_OP_WRITE;
		s->req.flags = 0;
	} else {
		s->req.op = DRV_OP_WRITE_ZEROES;
		s->req.flags = DRV_REQ_MAY_UNMAP;
	}
	drv_submit(cfg->dst, &s->req);
}

static void slot_finish(struct cv_slot *s)
{
	struct cv_state *st = s->st;

	s->state = CV_FREE;
	/* A slot is free and, in order, the next chunk may write: look again. */
	st->repump = true;
	if (st->cfg->in_order)
		st->write_seq++;
	if (!convert_stopped(st))
		account_done(st, s->len);
}

/* Write the slot's runs one after the other until the chunk is done. */
static void slot_write(struct cv_slot *s)
{
	struct cv_state *st = s->st;

	while (!convert_stopped(st) && s->wpos < s->len) {
		bool zero;
		uint64_t len = next_run(st, s, &zero);

		if (zero && st->cfg->zero_init && st->cfg->sparse_bytes) {
			s->wpos += len; /* already zeros: a hole stays a hole */
			continue;
		}
		s->in_submit = true;
		s->sync_done = false;
		run_issue(st, s, len, zero);
		s->in_submit = false;
		if (!s->sync_done)
			return; /* write_done continues */
	}
	slot_finish(s);
}

static void start_writes(struct cv_state *st)
{
	unsigned i;

	for (i = 0; i < st->cfg->parallel; i++) {
		struct cv_slot *s = &st->slots[i];

		if (s->state != CV_READY || (st->cfg->in_order && s->seq != st->write_seq))
			continue;
		s->state = CV_WRITING;
		slot_write(s);
	}
}

/* ---- the run ---------------------------------------------------------------------- */

void convert_pump(struct cv_state *st)
{
	if (st->pumping) {
		st->repump = true;
		return;
	}
	st->pumping = true;
	do {
		st->repump = false;
		if (convert_stopped(st))
			break;
		start_writes(st);
		while (plan_one(st))
			;
	} while (st->repump);
	st->pumping = false;
}
