// SPDX-License-Identifier: MIT
/*
 * tap-front --hostile: a frontend that breaks the rules of blkif-notes §4.1
 * while it also runs a well-formed, verified load, so that a run shows
 * both that each bad request gets the answer it deserves and that the
 * backend goes on serving everything else.
 *
 *   segments      first_sect > last_sect, last_sect past the page: ERROR
 *   nr-segments   0, 12 and 255 direct segments, indirect over the offer: ERROR
 *   past-end      ranges past the end of the disk, and wrapping: ERROR
 *   ops           unknown operations and secure discard: EOPNOTSUPP
 *   change        a thread rewrites a published request (operation, segment
 *                 count, sector, segment bounds and references) while the
 *                 backend may be reading it; any answer is fine, a write may
 *                 land only in the 16 KiB after the span
 *   data          a thread rewrites the data frames of a write or read in
 *                 flight (the I/O may run on them: ring-transport.h ->map);
 *                 it must succeed, writing only in the 16 KiB after the span
 *   storm         a thread notifies the backend without pause, with no request
 *   prod-overrun  queue 0 publishes a producer index beyond the ring after its
 *                 requests were answered; the ring must halt: no response
 *
 * Bad requests take every fourth turn of a queue's slots; for change and
 * data, only queue 0 sends them, one at a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checked.h"
#include "load.h"

#define EVERY 4		    /* one request in EVERY is bad */
#define PROD_SILENCE_MS 300 /* a halted ring answers nothing for this long */
#define CHANGE_REGION_BYTES (16 * 1024)

struct hostile {
	struct tf_worker *w;
	enum tf_hostile mode;
	unsigned turns;
	unsigned variant;
	pthread_t thread;
	bool thread_running;
	bool stop;		/* atomic: the thread leaves */
	void *target;		/* atomic: change: the slot being rewritten; data: the buffer */
	size_t target_bytes;	/* data: of the buffer (set before target) */
	uint64_t loops;		/* atomic: the flipper's iterations */
	uint64_t change_sector; /* where change requests write */
	bool draining;		/* change: waiting for the ring to empty */
	bool changing;		/* change: the changed request is in flight */
};

static const char *const mode_names[] = {
	[TF_HOSTILE_SEGMENTS] = "segments", [TF_HOSTILE_NR_SEGMENTS] = "nr-segments",
	[TF_HOSTILE_PAST_END] = "past-end", [TF_HOSTILE_PROD] = "prod-overrun",
	[TF_HOSTILE_CHANGE] = "change",	    [TF_HOSTILE_STORM] = "storm",
	[TF_HOSTILE_OPS] = "ops",	    [TF_HOSTILE_DATA] = "data",
};

const char *tf_hostile_name(enum tf_hostile mode)
{
	return mode > 0 && mode < ARRAY_SIZE(mode_names) ? mode_names[mode] : "none";
}

int tf_hostile_parse(const char *name, enum tf_hostile *out)
{
	for (unsigned i = 1; i < ARRAY_SIZE(mode_names); i++) {
		if (strcmp(name, mode_names[i]) == 0) {
			*out = (enum tf_hostile)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- building bad requests ------------------------------------------------ */

/* A request of either layout, built in the 64-bit form and converted. */
struct bad_req {
	uint8_t op;
	uint16_t nr_segments;
	uint64_t sector;
	struct ring_seg seg[RING_SEGS_DIRECT];
	bool indirect;
	uint8_t flag; /* discard */
	uint64_t nr_sectors;
};

static void encode(const struct tf_worker *w, const struct bad_req *b, void *out)
{
	bool is32 = ring_abi_is_32(tf_queue_abi(w->ring));

	memset(out, 0, RING_ENTRY64_BYTES);
	if (b->indirect && is32)
		*(struct ring_indirect32 *)out =
			(struct ring_indirect32){ .operation = RING_OP_INDIRECT,
						  .indirect_op = b->op,
						  .nr_segments = b->nr_segments,
						  .sector_number = b->sector,
						  .indirect_grefs = { b->seg[0].gref } };
	else if (b->indirect)
		*(struct ring_indirect64 *)out =
			(struct ring_indirect64){ .operation = RING_OP_INDIRECT,
						  .indirect_op = b->op,
						  .nr_segments = b->nr_segments,
						  .sector_number = b->sector,
						  .indirect_grefs = { b->seg[0].gref } };
	else if (b->op == RING_OP_DISCARD && is32)
		*(struct ring_discard32 *)out =
			(struct ring_discard32){ .operation = b->op,
						 .flag = b->flag,
						 .sector_number = b->sector,
						 .nr_sectors = b->nr_sectors };
	else if (b->op == RING_OP_DISCARD)
		*(struct ring_discard64 *)out =
			(struct ring_discard64){ .operation = b->op,
						 .flag = b->flag,
						 .sector_number = b->sector,
						 .nr_sectors = b->nr_sectors };
	else if (is32)
		*(struct ring_req32 *)out =
			(struct ring_req32){ .operation = b->op,
					     .nr_segments = (uint8_t)b->nr_segments,
					     .sector_number = b->sector };
	else
		*(struct ring_req64 *)out =
			(struct ring_req64){ .operation = b->op,
					     .nr_segments = (uint8_t)b->nr_segments,
					     .sector_number = b->sector };
	if (!b->indirect && b->op != RING_OP_DISCARD)
		memcpy((uint8_t *)out + (is32 ? offsetof(struct ring_req32, seg)
					      : offsetof(struct ring_req64, seg)),
		       b->seg, sizeof(b->seg));
}

/* Full-page segments over the slot's own frames. */
static void fill_segs(const struct tf_io *io, struct bad_req *b, unsigned n)
{
	for (unsigned i = 0; i < n && i < RING_SEGS_DIRECT; i++)
		b->seg[i] = (struct ring_seg){ .gref = tf_io_data_gref(io, 0),
					       .first_sect = 0,
					       .last_sect = 7 };
}

/*
 * The next bad request of @mode for @io's slot, and the status it must get.
 * Cycles through the variants of the mode.
 */
static int16_t make_bad(struct hostile *h, const struct tf_io *io, struct bad_req *b)
{
	const struct tf_load_conf *c = h->w->conf;
	uint64_t disk_sectors = c->disk_bytes / RING_SECTOR_BYTES;
	unsigned v = h->variant++;

	memset(b, 0, sizeof(*b));
	b->op = v & 1 ? RING_OP_WRITE : RING_OP_READ;
	b->sector = (c->offset + (uint64_t)h->w->index * c->bs) / RING_SECTOR_BYTES;
	fill_segs(io, b, 2);
	b->nr_segments = 2;
	switch (h->mode) {
	case TF_HOSTILE_SEGMENTS: {
		static const uint8_t bounds[][2] = { { 5, 2 }, { 0, 8 }, { 7, 255 }, { 8, 8 } };

		b->seg[1].first_sect = bounds[v % 4][0];
		b->seg[1].last_sect = bounds[v % 4][1];
		return RING_RSP_ERROR;
	}
	case TF_HOSTILE_NR_SEGMENTS: {
		static const uint16_t counts[] = { 0, 12, 255, 257 };

		b->nr_segments = counts[v % 4];
		b->indirect = counts[v % 4] > 255; /* over the backend's 256 */
		fill_segs(io, b, RING_SEGS_DIRECT);
		return RING_RSP_ERROR;
	}
	case TF_HOSTILE_PAST_END: {
		const uint64_t sectors[] = { disk_sectors - 8 + 1, disk_sectors, UINT64_MAX - 7,
					     UINT64_MAX / 512 };

		b->sector = sectors[v % 4];
		return RING_RSP_ERROR;
	}
	case TF_HOSTILE_OPS: {
		static const uint8_t ops[] = { RING_OP_RESERVED_1, 7, 200, RING_OP_DISCARD };

		b->op = ops[v % 4];
		b->flag = RING_DISCARD_SECURE;
		b->nr_sectors = 8;
		return RING_RSP_EOPNOTSUPP;
	}
	default:
		return RING_RSP_ERROR;
	}
}

static void bad_done(struct tf_io *io)
{
	struct tf_worker *w = io->opaque;
	struct hostile *h = w->hostile;
	int16_t want = io->expect;

	if (io->status == want) {
		w->st.hostile.answered++;
	} else {
		w->st.hostile.unexpected++;
		fprintf(stderr,
			"tap-front: queue %u: hostile %s request answered with status %d, not %d\n",
			w->index, tf_hostile_name(h->mode), io->status, want);
	}
	tf_worker_issue(w, io);
}

/* ---- change: rewriting a published request ----------------------------------- */

/*
 * One rewrite of the request at @slot: each field between a value that is
 * fine and one that is not.  Valid combinations write at most 3 pages from
 * change_sector.  Bytes 0-1 (operation, nr_segments) are shared with the
 * response's id, hence tf_io.loose; the id itself is never touched.
 */
static void flip(struct hostile *h, uint8_t *slot, uint64_t i)
{
	bool is32 = ring_abi_is_32(tf_queue_abi(h->w->ring));
	size_t sector_at = is32 ? offsetof(struct ring_req32, sector_number)
				: offsetof(struct ring_req64, sector_number);
	size_t seg_at = is32 ? offsetof(struct ring_req32, seg) : offsetof(struct ring_req64, seg);
	static const uint8_t ops[] = { RING_OP_WRITE, RING_OP_READ, 200 };
	static const uint8_t nsegs[] = { 2, 255, 1, 0 };
	static const uint8_t bounds[][2] = { { 0, 7 }, { 5, 2 }, { 0, 9 } };
	uint64_t sectors[] = { h->change_sector, h->change_sector + 8, UINT64_MAX - 1 };
	uint64_t sector = sectors[i % 3];

	__atomic_store_n(&slot[0], ops[i % 3], __ATOMIC_RELAXED);
	__atomic_store_n(&slot[1], nsegs[(i / 3) % 4], __ATOMIC_RELAXED);
	for (unsigned b = 0; b < sizeof(sector); b++)
		__atomic_store_n(&slot[sector_at + b], (uint8_t)(sector >> (8 * b)),
				 __ATOMIC_RELAXED);
	__atomic_store_n(&slot[seg_at + offsetof(struct ring_seg, first_sect)],
			 bounds[(i / 5) % 3][0], __ATOMIC_RELAXED);
	__atomic_store_n(&slot[seg_at + offsetof(struct ring_seg, last_sect)],
			 bounds[(i / 5) % 3][1], __ATOMIC_RELAXED);
}

static void *flipper(void *arg)
{
	struct hostile *h = arg;
	const struct timespec idle = { .tv_nsec = 20000 };

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		uint8_t *slot = __atomic_load_n(&h->target, __ATOMIC_ACQUIRE);

		if (slot)
			flip(h, slot, h->loops);
		else
			nanosleep(&idle, NULL);
		__atomic_store_n(&h->loops, h->loops + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Stop rewriting, and be sure the flipper let go of the slot. */
static void change_release(struct hostile *h)
{
	uint64_t seen;

	__atomic_store_n(&h->target, NULL, __ATOMIC_RELEASE);
	seen = __atomic_load_n(&h->loops, __ATOMIC_ACQUIRE);
	/* Two whole iterations later, none can still hold the old target. */
	while (__atomic_load_n(&h->loops, __ATOMIC_ACQUIRE) < seen + 2)
		sched_yield();
}

static void change_done(struct tf_io *io)
{
	struct tf_worker *w = io->opaque;
	struct hostile *h = w->hostile;
	bool status_ok = io->status == RING_RSP_OKAY || io->status == RING_RSP_ERROR ||
			 io->status == RING_RSP_EOPNOTSUPP;
	bool op_ok = io->got_op == RING_OP_WRITE || io->got_op == RING_OP_READ || io->got_op == 200;

	change_release(h);
	h->changing = false;
	io->loose = false;
	if (status_ok && op_ok) {
		w->st.hostile.answered++;
	} else {
		w->st.hostile.unexpected++;
		fprintf(stderr,
			"tap-front: queue %u: a changed request got operation %u, status %d\n",
			w->index, io->got_op, io->status);
	}
	w->inflight--;
	tf_worker_resume(w); /* the slots held while it was alone */
}

static int issue_change(struct hostile *h, struct tf_io *io)
{
	struct bad_req b = { .op = RING_OP_WRITE, .nr_segments = 2, .sector = h->change_sector };
	union ring_req_any req;
	int err;

	fill_segs(io, &b, 2);
	encode(h->w, &b, &req);
	io->loose = true;
	io->done = change_done;
	io->opaque = h->w;
	err = tf_queue_submit_raw(h->w->ring, io, &req);
	if (err) {
		io->loose = false;
		return err;
	}
	h->w->st.hostile.sent++;
	__atomic_store_n(&h->target, tf_queue_last_slot(h->w->ring), __ATOMIC_RELEASE);
	return 0;
}

/* ---- data: rewriting the frames under the I/O ---------------------------------- */

static void *scribbler(void *arg)
{
	struct hostile *h = arg;
	const struct timespec idle = { .tv_nsec = 20000 };

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		uint64_t *buf = __atomic_load_n(&h->target, __ATOMIC_ACQUIRE);
		uint64_t word = h->loops * 0x0101010101010101ull;

		for (size_t i = 0; buf && i < h->target_bytes / sizeof(*buf); i++)
			__atomic_store_n(&buf[i], word ^ i, __ATOMIC_RELAXED);
		if (!buf)
			nanosleep(&idle, NULL);
		__atomic_store_n(&h->loops, h->loops + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void data_done(struct tf_io *io)
{
	struct tf_worker *w = io->opaque;
	struct hostile *h = w->hostile;

	change_release(h);
	h->changing = false;
	if (io->status == RING_RSP_OKAY) {
		w->st.hostile.answered++;
	} else {
		w->st.hostile.unexpected++;
		fprintf(stderr,
			"tap-front: queue %u: a %s whose data changed under it got status %d\n",
			w->index, io->op == RING_OP_WRITE ? "write" : "read", io->status);
	}
	tf_worker_issue(w, io);
}

/* Every fourth turn of queue 0, one at a time: a write or a read in the reserved range. */
static int data_turn(struct hostile *h, struct tf_io *io)
{
	const struct tf_load_conf *c = h->w->conf;

	if (h->changing || h->w->index != 0 || ++h->turns % EVERY != 0)
		return 0;
	io->op = h->variant++ % 2 ? RING_OP_READ : RING_OP_WRITE;
	io->offset = h->change_sector * RING_SECTOR_BYTES;
	io->len = MIN(c->bs, CHANGE_REGION_BYTES);
	io->done = data_done;
	io->opaque = h->w;
	h->target_bytes = io->len;
	__atomic_store_n(&h->target, io->buf, __ATOMIC_RELEASE);
	if (tf_queue_submit(h->w->ring, io)) {
		change_release(h);
		return 0;
	}
	h->w->st.hostile.sent++;
	h->changing = true;
	return 1;
}

/* ---- storm -------------------------------------------------------------------- */

static void *stormer(void *arg)
{
	struct hostile *h = arg;

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		tf_queue_kick(h->w->ring);
		__atomic_store_n(&h->loops, h->loops + 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* ---- the worker's side ---------------------------------------------------------- */

/*
 * A changed request goes out alone: the backend writes responses in
 * completion order, into whichever slot is next, and only when ours is the
 * one request in flight is the next response written into the slot being
 * rewritten ours (whose first bytes we may then spoil: tf_io.loose).
 */
static int change_turn(struct hostile *h, struct tf_io *io)
{
	if (h->changing)
		return -1;
	if (!h->draining) {
		if (h->w->index != 0 || ++h->turns % EVERY != 0)
			return 0;
		h->draining = true;
	}
	if (h->w->inflight > 0)
		return -1;
	h->draining = false;
	if (issue_change(h, io))
		return 0;
	h->changing = true;
	return 1;
}

int tf_hostile_turn(struct tf_worker *w, struct tf_io *io)
{
	struct hostile *h = w->hostile;
	union ring_req_any req;
	struct bad_req b;

	switch (h->mode) {
	case TF_HOSTILE_STORM:
	case TF_HOSTILE_PROD:
		return 0;
	case TF_HOSTILE_CHANGE:
		return change_turn(h, io);
	case TF_HOSTILE_DATA:
		return data_turn(h, io);
	default:
		break;
	}
	if (++h->turns % EVERY != 0)
		return 0;
	io->expect = make_bad(h, io, &b);
	io->rsp_op = b.op; /* also indirect_op, for INDIRECT */
	encode(w, &b, &req);
	io->done = bad_done;
	io->opaque = w;
	if (tf_queue_submit_raw(w->ring, io, &req))
		return 0;
	w->st.hostile.sent++;
	return 1;
}

int tf_hostile_start(struct tf_worker *w)
{
	const struct tf_load_conf *c = w->conf;
	struct hostile *h = calloc(1, sizeof(*h));
	void *(*fn)(void *) = NULL;
	int err;

	if (!h)
		return -ENOMEM;
	h->w = w;
	h->mode = c->hostile;
	h->change_sector = (c->offset + c->span) / RING_SECTOR_BYTES;
	w->hostile = h;
	if (h->mode == TF_HOSTILE_CHANGE && w->index == 0)
		fn = flipper;
	else if (h->mode == TF_HOSTILE_DATA && w->index == 0)
		fn = scribbler;
	else if (h->mode == TF_HOSTILE_STORM && w->index == 0)
		fn = stormer;
	if (!fn)
		return 0;
	err = -pthread_create(&h->thread, NULL, fn, h);
	if (err) {
		fprintf(stderr, "tap-front: cannot start the hostile thread: %s\n", strerror(-err));
		return err;
	}
	h->thread_running = true;
	return 0;
}

void tf_hostile_stop(struct tf_worker *w)
{
	struct hostile *h = w->hostile;

	if (!h)
		return;
	__atomic_store_n(&h->stop, true, __ATOMIC_RELEASE);
	if (h->thread_running)
		pthread_join(h->thread, NULL);
	if (h->mode == TF_HOSTILE_STORM && h->thread_running) {
		w->st.hostile.sent += h->loops; /* notifications, none answered: none due */
		w->st.hostile.answered += h->loops;
	}
	free(h);
	w->hostile = NULL;
}

/* ---- prod-overrun ----------------------------------------------------------------- */

static void prod_done(struct tf_io *io)
{
	struct tf_worker *w = io->opaque;

	w->inflight--;
	if (io->status != RING_RSP_OKAY)
		w->st.io_errors++;
}

/*
 * Queue 0 of a prod-overrun run: a round of good reads that must be
 * answered, then a producer index a whole ring ahead of what was answered.
 * The ring must halt: any response now is a failure (it would have taken
 * requests that do not exist).
 */
int tf_hostile_prod(struct tf_worker *w)
{
	struct tf_queue *q = w->ring;
	struct ring_sring *s = tf_queue_sring(q);
	int n;

	for (unsigned i = 0; i < w->conf->depth; i++) {
		struct tf_io *io = tf_queue_io(q, i);

		*io = (struct tf_io){ .q = io->q,
				      .slot = io->slot,
				      .buf = io->buf,
				      .gen = io->gen,
				      .op = RING_OP_READ,
				      .len = w->conf->bs,
				      .done = prod_done,
				      .opaque = w };
		if (tf_queue_submit(q, io) == 0)
			w->inflight++;
	}
	while (w->inflight) {
		tf_queue_push(q);
		n = tf_queue_wait(q, 30000);
		if (n < 0)
			return n;
	}
	__atomic_store_n(&s->req_prod, s->rsp_prod + tf_queue_nr_ents(q) + 1, __ATOMIC_RELEASE);
	tf_queue_kick(q);
	w->st.hostile.sent++;
	n = tf_queue_wait(q, PROD_SILENCE_MS);
	if (n == -ETIMEDOUT) {
		w->st.hostile.answered++;
		return 0;
	}
	w->st.hostile.unexpected++;
	fprintf(stderr, "tap-front: queue 0: the backend did not halt on a producer index "
			"beyond the ring\n");
	return 0;
}
