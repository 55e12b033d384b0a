/* SPDX-License-Identifier: MIT */
/*
 * The FUSE export's internals, shared by fuse-export.c (mount, the
 * receive loop on queue 0, the request pool, teardown) and fuse-ops.c (the
 * file's operations).  Not an interface for anything else.
 *
 * Requests are read from /dev/fuse (non-blocking) on queue 0's loop and
 * handed to libfuse, which calls the operations there.  Metadata
 * operations answer at once; reads, writes, fsync and fallocate take a
 * context from a preallocated pool (its I/O buffer included) and run on
 * the queue threads in turn, answering from the thread that completes
 * them.  Queue 0 reads /dev/fuse only while a context is free, so a burst
 * waits in the kernel rather than in memory.
 */
#ifndef QTAP_TAPDISK_FUSE_INTERNAL_H
#define QTAP_TAPDISK_FUSE_INTERNAL_H

#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "evloop.h"
#include "tapdisk/fuse-export.h"
#include "tapdisk/rmw.h"
#include "tapdisk/vbd.h"

#define TDFUSE_MAX_IO (1u << 20) /* max_read and max_write */
#define TDFUSE_CTXS 32u
#define TDFUSE_BLKSIZE (128u << 10) /* st_blksize */

enum tdfuse_kind {
	TDFUSE_READ = 0,
	TDFUSE_WRITE,
	TDFUSE_FSYNC,
	TDFUSE_ZERO, /* fallocate: zero-range, punch-hole */
};

struct tdfuse;

struct tdfuse_ctx {
	struct tdfuse *f;
	fuse_req_t req;
	enum tdfuse_kind kind;
	unsigned flags; /* TD_REQ_* */
	uint64_t offset, len;
	uint64_t start; /* READ/WRITE: the first block's offset */
	struct td_queue *q;
	struct td_request treq;
	struct td_rmw rmw;
	struct iovec iov;
	struct evloop_call run; /* posted to @q */
	uint8_t *buf;		/* TDFUSE_MAX_IO and four blocks, aligned */
	struct tdfuse_ctx *next;
};

struct tdfuse {
	struct td_vbd *vbd;
	char *path;
	bool created; /* the mount point was created by us: removed at the end */
	struct fuse_session *se;
	struct fuse_buf fbuf; /* libfuse's receive buffer, reused */
	struct td_queue *rq;  /* reads /dev/fuse */
	struct evloop_watch watch;
	bool watching;
	struct evloop_call resume;

	uint64_t size_bytes;
	uint32_t block_bytes;
	bool readonly;
	bool can_zero;
	struct td_blocklock *locks;
	bool own_locks;
	struct td_queue **queues;
	unsigned nr_queues;
	unsigned next_queue; /* round robin, on rq */
	struct stat st;	     /* the file's attributes (rq only) */
	struct td_resize_notifier resize;
	uint64_t new_size;

	pthread_mutex_t lock; /* the pool, blocked, stopping */
	pthread_cond_t cond;
	struct tdfuse_ctx *ctxs;
	struct tdfuse_ctx *free;
	unsigned busy;
	bool blocked; /* rq stopped reading for want of a context */
	bool stopping;
};

/* fuse-export.c */
struct tdfuse_ctx *tdfuse_ctx_get(struct tdfuse *f); /* rq; never NULL inside an op */
void tdfuse_ctx_put(struct tdfuse_ctx *ctx);	     /* any thread */

/* fuse-ops.c */
extern const struct fuse_lowlevel_ops tdfuse_ops;

#endif
