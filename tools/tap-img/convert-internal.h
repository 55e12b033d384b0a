/* SPDX-License-Identifier: MIT */
/*
 * The copy engine of tap-img convert, shared by convert-copy.c (planning,
 * reading, writing: one worker's pump) and convert-run.c (the workers,
 * their queues, the run and the final flush).  Not an interface for
 * anything else.
 */
#ifndef QTAP_TAP_IMG_CONVERT_INTERNAL_H
#define QTAP_TAP_IMG_CONVERT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "convert.h"
#include "driver.h"

#define CV_BUF_ALIGN 4096
#define CV_SEGMENT_BYTES (64ull << 20) /* what a worker takes at a time */

enum cv_kind {
	CV_DATA, /* read from the source, then written */
	CV_ZERO, /* reads as zeros */
	CV_SKIP, /* the target's backing provides it (-B) */
};

enum cv_slot_state {
	CV_FREE,
	CV_READING,
	CV_READY, /* read (or a zero chunk), waiting for its turn to write */
	CV_WRITING,
};

struct cv_state;

struct cv_slot {
	struct drv_req req; /* req.opaque points back to the slot */
	struct iovec iov;
	uint8_t *buf; /* cfg->buf_bytes */
	struct cv_state *st;
	enum cv_slot_state state;
	enum cv_kind kind;
	uint64_t offset;
	uint64_t len;
	uint64_t seq;	  /* order of the chunk, for in-order writes */
	uint64_t wpos;	  /* bytes of the chunk written or skipped */
	uint64_t run_len; /* the write in flight */
	bool buf_zeroed;  /* a zero chunk's buffer was cleared for writing zeros as data */
	bool in_submit;	  /* inside drv_submit: a completion now only records itself */
	bool sync_done;
	uint64_t salvage_pos; /* --salvage: bytes of the chunk re-read sector by sector */
};

/* The extent of the source whose block status is known. */
struct cv_extent {
	uint64_t start;
	uint64_t end;
	enum cv_kind kind;
	bool valid;
};

/* What the workers share. */
struct cv_shared {
	const struct convert_cfg *cfg;
	struct drv_queue *queues; /* one per worker */
	uint64_t align;
	uint64_t cursor;      /* atomic: the next segment to take */
	uint64_t done_bytes;  /* atomic */
	int err;	      /* atomic: the first failure; every worker stops */
	pthread_mutex_t lock; /* progress line, error message */
	double last_pct;
};

struct cv_state {
	const struct convert_cfg *cfg;
	struct cv_shared *sh;
	struct drv_queue *q;
	pthread_t thread;
	uint64_t seg_end; /* planning stops here, then takes the next segment */
	struct cv_slot *slots;
	unsigned char *priv; /* cfg->parallel + 1 areas of @priv_bytes */
	size_t priv_bytes;
	uint64_t align; /* every request's offset and length */
	uint64_t gran;	/* zero detection granularity */
	/* planning */
	uint64_t plan_pos; /* source bytes before this are planned */
	struct cv_extent ext;
	struct drv_req sreq; /* the block status query */
	struct drv_image *slevel;
	bool status_busy;
	uint64_t next_seq;
	uint64_t write_seq;
	/* accounting */
	unsigned inflight;
	unsigned max_inflight;
	int err;
	bool pumping;
	bool repump;
};

/* convert_pump - issue everything that can be issued now; completions re-arm it. */
void convert_pump(struct cv_state *st);

/* convert_fail - record the first failure (every worker stops) and report it once. */
void convert_fail(struct cv_state *st, int err, const char *what, const char *name,
		  uint64_t offset);

/* convert_stopped - this worker or another failed. */
bool convert_stopped(const struct cv_state *st);

/* convert_progress - qemu-img's progress line, at most every 1 % unless @force. */
void convert_progress(struct cv_shared *sh, bool force);

/* convert_inflight_inc - one more request in flight on this worker. */
void convert_inflight_inc(struct cv_state *st);

#endif
