/* SPDX-License-Identifier: MIT */
/*
 * tap-front's load: one worker thread per queue keeps its queue's request
 * slots busy with the configured mix, through an engine (a blkif ring of
 * tapdisk, or a raw file with libaio O_DIRECT: the same load either way),
 * records latencies, and with --verify writes seeded data and checks every
 * read of a block it wrote, then reads back everything it wrote.
 *
 * The disk's @span bytes from @offset are cut into positions of @bs bytes; queue
 * q owns the positions q, q + N, q + 2N ... (N queues), so the workers
 * share nothing while they run.  Under --verify a position is never the
 * target of two requests in flight (their result would be undefined).
 */
#ifndef QTAP_TAP_FRONT_LOAD_H
#define QTAP_TAP_FRONT_LOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "front.h"
#include "tools/tap-img/bench.h"

/* change and data requests write only here, after the span: what the tests check. */
#define TF_CHANGE_RESERVE_BYTES (1024 * 1024)

/* The --hostile modes (hostile.c). */
enum tf_hostile {
	TF_HOSTILE_NONE = 0,
	TF_HOSTILE_SEGMENTS,	/* segment bounds: first > last, last >= 8 */
	TF_HOSTILE_NR_SEGMENTS, /* 0, 12, 255 segments; indirect over the offer */
	TF_HOSTILE_PAST_END,	/* sector ranges past the end, and wrapping */
	TF_HOSTILE_PROD,	/* producer index overrun (halts queue 0's ring) */
	TF_HOSTILE_CHANGE,	/* requests changed after publication */
	TF_HOSTILE_STORM,	/* notifications without requests */
	TF_HOSTILE_OPS,		/* unknown operations, secure discard */
	TF_HOSTILE_DATA,	/* data frames rewritten during the I/O */
};

struct tf_load_conf {
	enum bench_mix mix; /* BENCH_MIXED: half reads, half writes */
	bool random;
	uint64_t bs;
	unsigned depth;
	unsigned nr_queues;
	uint64_t ops;	  /* in all; 0: until time_ns */
	uint64_t time_ns; /* 0: until ops */
	uint64_t offset;  /* the first byte used, a multiple of bs */
	uint64_t span;	  /* bytes of the disk used from there, a multiple of bs */
	int fill;	  /* --verify: what blocks not written in this run hold; -1: unknown */
	bool verify;
	uint64_t seed;
	bool flush; /* FLUSH once the load is done, before the read-back */
	enum tf_hostile hostile;
	uint64_t disk_bytes;
};

struct tf_hostile_stats {
	uint64_t sent;	     /* bad requests */
	uint64_t answered;   /* with the expected status */
	uint64_t unexpected; /* with another status (the run fails) */
};

struct tf_qstats {
	uint64_t ops, reads, writes, bytes;
	uint64_t io_errors;
	uint64_t verified;	/* blocks read back and compared */
	uint64_t verify_errors; /* blocks with a wrong byte */
	uint64_t elapsed_ns;
	bool flushed;
	bool protocol_error;
	struct tf_hostile_stats hostile;
	struct bench_hist hist;
};

/* How a worker reaches its queue. */
struct tf_engine {
	const char *name;
	/* the slot's io (its buf holds bs bytes, 4 KiB aligned unless sub_page) */
	struct tf_io *(*io)(void *ctx, unsigned slot);
	/* start @io; its done() runs from wait() */
	int (*submit)(void *ctx, struct tf_io *io);
	/* make what was submitted visible */
	void (*push)(void *ctx);
	/* wait for completions, run their done(); >= 0, -ETIMEDOUT or -errno */
	int (*wait)(void *ctx, int timeout_ms);
};

/* What a slot is doing, beside its io. */
struct tf_slot_state {
	uint64_t pos;
	unsigned gen; /* written, or expected by a read (0: not checked) */
};

struct tf_worker {
	const struct tf_load_conf *conf;
	unsigned index;
	const struct tf_engine *eng;
	void *ctx;
	struct tf_queue *ring; /* hostile runs: the ring itself; NULL for raw */
	uint8_t *gens;	       /* --verify: per position this worker owns */
	uint64_t nr_pos;       /* positions this worker owns */
	struct tf_slot_state *slots;
	uint64_t quota; /* requests in the main phase; 0: by time */
	uint64_t issued;
	uint64_t next_seq;
	uint64_t cursor;
	uint64_t rng;
	uint64_t start_ns, deadline_ns;
	unsigned inflight;
	unsigned reports;
	int phase;
	bool stop;
	struct tf_qstats st;
	void *hostile; /* hostile.c's state */
};

/*
 * tf_worker_init - set up @w (index, conf, engine set by the caller):
 * positions, quota, verify state.  0 or -errno (reported).
 * tf_worker_fini frees what init allocated.
 */
int tf_worker_init(struct tf_worker *w);
void tf_worker_fini(struct tf_worker *w);

/* tf_worker_run - the worker's whole run.  0, or -errno when it could not go on. */
int tf_worker_run(struct tf_worker *w);

/* tf_worker_issue - a hostile request on @io completed: carry on with the load. */
void tf_worker_issue(struct tf_worker *w, struct tf_io *io);

/* tf_worker_resume - give work to every idle slot (after a hostile pause). */
void tf_worker_resume(struct tf_worker *w);

/* Hostile requests, woven into a worker's load (hostile.c). */
int tf_hostile_start(struct tf_worker *w);
void tf_hostile_stop(struct tf_worker *w);
/*
 * tf_hostile_turn - @io's slot is free in the main phase: 1 when a bad
 * request went out on it, 0 when the load should use it, -1 when it must
 * stay idle for now (change waits for the ring to empty).
 */
int tf_hostile_turn(struct tf_worker *w, struct tf_io *io);
int tf_hostile_prod(struct tf_worker *w);
const char *tf_hostile_name(enum tf_hostile mode);
int tf_hostile_parse(const char *name, enum tf_hostile *out);

/* The pieces of a run the report prints (report.c). */
void tf_stats_add(struct tf_qstats *sum, const struct tf_qstats *q);
int tf_report(const struct tf_load_conf *conf, const char *engine, const struct tf_qstats *sum,
	      bool json);

#endif
