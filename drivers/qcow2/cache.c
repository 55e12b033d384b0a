// SPDX-License-Identifier: MIT
/*
 * The L2 slice cache (see cache.h for the design).
 *
 * Locking: the hash table, slice states, offsets and wait lists change only
 * under the write lock.  Pins and LRU stamps are atomics, so a hit needs only
 * the read lock.  A pin dropping to zero is observed under the read lock,
 * which orders it against a miss's victim scan under the write lock: either
 * the scan sees the slice free, or the put sees the miss parked and wakes it.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/cache.h"
#include "qcow2/format.h"
#include "qcow2/sync-io.h"

#define SLICE_ALIGN 4096u
#define NO_SLICE (-1)

enum slice_state {
	SLICE_EMPTY = 0,
	SLICE_LOADING,
	SLICE_VALID,
};

struct qcow2_l2_slice {
	uint64_t offset; /* host offset; 0 while EMPTY (no L2 table lives at 0) */
	uint8_t *data;
	enum slice_state state;
	bool dirty;    /* changed since it was read or written */
	bool dropped;  /* its cluster was freed while pinned: empty it at the last put */
	uint64_t gen;  /* bumped by each change, so write-back sees a racing one */
	unsigned pins; /* atomic */
	uint64_t lru;  /* atomic */
	int32_t hash_next;
	struct qcow2_l2_wait *waiters; /* while LOADING, the loader first */
	struct qcow2_l2_cache *cache;
	struct aio_req aio;
	struct iovec iov;
};

/* Parked lookups, first in first out. */
struct wait_list {
	struct qcow2_l2_wait *head;
	struct qcow2_l2_wait *tail;
};

struct qcow2_l2_cache {
	pthread_rwlock_t lock;
	struct aio_file *file;
	const char *path;
	uint64_t slice_bytes;
	unsigned nr_slices;
	struct qcow2_l2_slice *slices;
	uint8_t *data;
	uint8_t *zeros; /* one slice of zeros, for new tables */
	int32_t *buckets;
	unsigned hash_bits;
	uint64_t lru_clock;    /* atomic */
	struct wait_list full; /* lookups waiting for an unpinned slice */
	unsigned nr_dirty;
	/* the metadata thread waiting for a slice another thread is loading */
	pthread_mutex_t load_mutex;
	pthread_cond_t load_cond;
	struct qcow2_l2_cache_stats stats; /* atomics */
};

static void stat_inc(uint64_t *counter)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static void wait_list_push(struct wait_list *l, struct qcow2_l2_wait *w)
{
	w->next = NULL;
	if (l->tail)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
}

/* ---- sizing --------------------------------------------------------------- */

uint64_t qcow2_l2_cache_slice_bytes(uint64_t cluster_bytes)
{
	return MIN(cluster_bytes, (uint64_t)QCOW2_L2_SLICE_MAX_BYTES);
}

unsigned qcow2_l2_cache_default_slices(const struct qcow2_geom *g, uint64_t size_bytes)
{
	uint64_t slice_bytes = qcow2_l2_cache_slice_bytes(g->cluster_bytes);
	uint64_t clusters = div_round_up_u64(size_bytes, g->cluster_bytes);
	uint64_t slices;

	/* clusters < 2^55, entry bytes <= 16: no overflow */
	slices = div_round_up_u64(clusters * g->l2_entry_bytes, slice_bytes);
	slices = MIN(slices, QCOW2_L2_CACHE_MAX_BYTES / slice_bytes);
	return (unsigned)MAX(slices, (uint64_t)QCOW2_L2_CACHE_MIN_SLICES);
}

/* ---- hash table ------------------------------------------------------------- */

static unsigned hash_slot(const struct qcow2_l2_cache *c, uint64_t offset)
{
	uint64_t key = offset / c->slice_bytes;

	return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> (64 - c->hash_bits));
}

static struct qcow2_l2_slice *hash_find(struct qcow2_l2_cache *c, uint64_t offset)
{
	int32_t i = c->buckets[hash_slot(c, offset)];

	while (i != NO_SLICE) {
		if (c->slices[i].offset == offset)
			return &c->slices[i];
		i = c->slices[i].hash_next;
	}
	return NULL;
}

static void hash_insert(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s)
{
	int32_t *head = &c->buckets[hash_slot(c, s->offset)];

	s->hash_next = *head;
	*head = (int32_t)(s - c->slices);
}

static void hash_remove(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s)
{
	int32_t *link = &c->buckets[hash_slot(c, s->offset)];
	int32_t self = (int32_t)(s - c->slices);

	while (*link != NO_SLICE && *link != self)
		link = &c->slices[*link].hash_next;
	if (*link == self)
		*link = s->hash_next;
	s->hash_next = NO_SLICE;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int cache_alloc(struct qcow2_l2_cache *c)
{
	size_t buckets = (size_t)1 << c->hash_bits;
	size_t i;

	c->slices = calloc(c->nr_slices, sizeof(*c->slices));
	c->buckets = malloc(buckets * sizeof(*c->buckets));
	c->data = buf_alloc((size_t)c->nr_slices * c->slice_bytes, SLICE_ALIGN);
	c->zeros = calloc(1, c->slice_bytes);
	if (!c->slices || !c->buckets || !c->data || !c->zeros)
		return -ENOMEM;
	for (i = 0; i < buckets; i++)
		c->buckets[i] = NO_SLICE;
	for (i = 0; i < c->nr_slices; i++) {
		c->slices[i].data = c->data + i * c->slice_bytes;
		c->slices[i].hash_next = NO_SLICE;
		c->slices[i].cache = c;
	}
	return 0;
}

int qcow2_l2_cache_new(struct aio_file *file, const char *path, uint64_t slice_bytes,
		       unsigned nr_slices, struct qcow2_l2_cache **out)
{
	struct qcow2_l2_cache *c;
	int err;

	if (!is_power_of_2_u64(slice_bytes) || slice_bytes < 512 ||
	    slice_bytes > QCOW2_L2_SLICE_MAX_BYTES || nr_slices < 2 || nr_slices > (1u << 30)) {
		log_err("qcow2 %s: L2 cache of %u slices of %" PRIu64 " bytes refused", path,
			nr_slices, slice_bytes);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto err_nomem;
	c->file = file;
	c->path = path;
	c->slice_bytes = slice_bytes;
	c->nr_slices = nr_slices;
	while ((1u << c->hash_bits) < nr_slices)
		c->hash_bits++;
	c->hash_bits = MAX(c->hash_bits, 1u);
	err = cache_alloc(c);
	if (err)
		goto err_nomem;
	err = pthread_rwlock_init(&c->lock, NULL);
	if (!err) {
		pthread_mutex_init(&c->load_mutex, NULL);
		pthread_cond_init(&c->load_cond, NULL);
	}
	if (err) {
		log_err("qcow2 %s: L2 cache lock: %s", path, err_str(-err));
		c->nr_slices = 0;
		qcow2_l2_cache_free(c);
		return -err;
	}
	*out = c;
	return 0;

err_nomem:
	log_err("qcow2 %s: out of memory for an L2 cache of %u slices", path, nr_slices);
	if (c) {
		free(c->slices);
		free(c->buckets);
		buf_free(c->data);
		free(c->zeros);
		free(c);
	}
	return -ENOMEM;
}

void qcow2_l2_cache_free(struct qcow2_l2_cache *c)
{
	if (!c)
		return;
	if (c->nr_slices) {
		pthread_rwlock_destroy(&c->lock);
		pthread_mutex_destroy(&c->load_mutex);
		pthread_cond_destroy(&c->load_cond);
	}
	free(c->slices);
	free(c->buckets);
	buf_free(c->data);
	free(c->zeros);
	free(c);
}

/* ---- waking parked lookups ------------------------------------------------------ */

static void wait_deliver(struct evloop_call *call)
{
	struct qcow2_l2_wait *w = call->opaque;

	w->fn(w, w->slice, w->err);
}

/* Hand @w its result on its own thread.  @w must not be touched afterwards. */
static void wait_post(struct qcow2_l2_wait *w, struct qcow2_l2_slice *s, int err)
{
	w->slice = s;
	w->err = err;
	w->call = (struct evloop_call){ .fn = wait_deliver, .opaque = w };
	evloop_post(w->loop, &w->call);
}

/* A lookup that found every slice pinned, retried on its own thread. */
static void wait_retry(struct evloop_call *call)
{
	struct qcow2_l2_wait *w = call->opaque;
	struct qcow2_l2_slice *s = NULL;
	int err = qcow2_l2_cache_get(w->cache, w->offset, w->aio, w, &s);

	if (err != -EINPROGRESS)
		w->fn(w, s, err);
}

/* Post every lookup parked on a full cache for a retry. */
static void wake_full(struct qcow2_l2_cache *c)
{
	struct qcow2_l2_wait *w, *next;

	pthread_rwlock_wrlock(&c->lock);
	w = c->full.head;
	c->full.head = c->full.tail = NULL;
	pthread_rwlock_unlock(&c->lock);
	for (; w; w = next) {
		next = w->next;
		w->call = (struct evloop_call){ .fn = wait_retry, .opaque = w };
		evloop_post(w->loop, &w->call);
	}
}

/* ---- lookups ---------------------------------------------------------------------- */

static void slice_pin(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s)
{
	__atomic_fetch_add(&s->pins, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->lru, __atomic_add_fetch(&c->lru_clock, 1, __ATOMIC_RELAXED),
			 __ATOMIC_RELAXED);
}

/* A hit under the read lock: the common case. */
static struct qcow2_l2_slice *get_hit(struct qcow2_l2_cache *c, uint64_t offset)
{
	struct qcow2_l2_slice *s;

	pthread_rwlock_rdlock(&c->lock);
	s = hash_find(c, offset);
	if (s && s->state == SLICE_VALID)
		slice_pin(c, s);
	else
		s = NULL;
	pthread_rwlock_unlock(&c->lock);
	return s;
}

/* The slice to reuse: an empty one, else the least recently used unpinned one. */
static struct qcow2_l2_slice *pick_victim(struct qcow2_l2_cache *c)
{
	struct qcow2_l2_slice *best = NULL;
	uint64_t best_lru = UINT64_MAX;
	unsigned i;

	for (i = 0; i < c->nr_slices; i++) {
		struct qcow2_l2_slice *s = &c->slices[i];
		uint64_t lru;

		if (s->state == SLICE_EMPTY)
			return s;
		if (s->state != SLICE_VALID || s->dirty ||
		    __atomic_load_n(&s->pins, __ATOMIC_RELAXED))
			continue;
		lru = __atomic_load_n(&s->lru, __ATOMIC_RELAXED);
		if (lru < best_lru) {
			best_lru = lru;
			best = s;
		}
	}
	return best;
}

static void load_done(struct aio_req *aio, int err);

/* Make @s hold @offset, LOADING, with @w as its first waiter.  Write lock held. */
static void slice_start_load(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s, uint64_t offset,
			     struct qcow2_l2_wait *w)
{
	if (s->state != SLICE_EMPTY) {
		hash_remove(c, s);
		stat_inc(&c->stats.evictions);
	}
	s->offset = offset;
	s->state = SLICE_LOADING;
	s->pins = 1; /* the load's own pin, handed to the waiters when it lands */
	s->waiters = w;
	w->next = NULL;
	hash_insert(c, s);
	s->iov = (struct iovec){ .iov_base = s->data, .iov_len = c->slice_bytes };
	s->aio = (struct aio_req){
		.file = c->file,
		.op = AIO_OP_READ,
		.offset = offset,
		.len = c->slice_bytes,
		.iov = &s->iov,
		.iovcnt = 1,
		.done = load_done,
		.opaque = s,
	};
}

/*
 * The slow path under the write lock.  Returns 0 with *@out pinned when the
 * slice became valid since the read-locked look, else parks @w and returns
 * -EINPROGRESS; *@load says whether the caller must submit the slice's read.
 */
static int get_locked(struct qcow2_l2_cache *c, uint64_t offset, struct qcow2_l2_wait *w,
		      struct qcow2_l2_slice **out, bool *load)
{
	struct qcow2_l2_slice *s = hash_find(c, offset);

	*load = false;
	if (s && s->state == SLICE_VALID) {
		slice_pin(c, s);
		*out = s;
		return 0;
	}
	if (s) {
		/* LOADING: append, keeping the loader first */
		struct qcow2_l2_wait **link = &s->waiters;

		while (*link)
			link = &(*link)->next;
		w->next = NULL;
		*link = w;
		return -EINPROGRESS;
	}
	s = pick_victim(c);
	if (!s) {
		wait_list_push(&c->full, w);
		return -EINPROGRESS;
	}
	slice_start_load(c, s, offset, w);
	*out = s;
	*load = true;
	return -EINPROGRESS;
}

int qcow2_l2_cache_get(struct qcow2_l2_cache *c, uint64_t offset, struct aio_ctx *aio,
		       struct qcow2_l2_wait *w, struct qcow2_l2_slice **out)
{
	struct qcow2_l2_slice *s = get_hit(c, offset);
	bool load;
	int err;

	assert(offset != 0 && is_aligned_u64(offset, c->slice_bytes));
	if (s) {
		stat_inc(&c->stats.hits);
		*out = s;
		return 0;
	}
	stat_inc(&c->stats.misses);
	w->cache = c;
	w->aio = aio;
	w->offset = offset;
	pthread_rwlock_wrlock(&c->lock);
	err = get_locked(c, offset, w, &s, &load);
	pthread_rwlock_unlock(&c->lock);
	if (err == 0) {
		*out = s;
		return 0;
	}
	if (load) {
		stat_inc(&c->stats.reads);
		aio_submit(aio, &s->aio);
	}
	return err;
}

/*
 * A load of @s ended (write lock just dropped): wake the metadata thread if
 * it waits for it, hand the slice (or @err) to the waiters @w, and on
 * failure retry the lookups parked on a full cache.
 */
static void load_finished(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s,
			  struct qcow2_l2_wait *w, int err)
{
	struct qcow2_l2_wait *next;

	pthread_mutex_lock(&c->load_mutex);
	pthread_cond_broadcast(&c->load_cond);
	pthread_mutex_unlock(&c->load_mutex);
	for (; w; w = next) {
		next = w->next;
		wait_post(w, err ? NULL : s, err);
	}
	if (err)
		wake_full(c);
}

/* The read of @s finished: make it valid (or free it again) and wake its waiters. */
static void load_done(struct aio_req *aio, int err)
{
	struct qcow2_l2_slice *s = aio->opaque;
	struct qcow2_l2_cache *c = s->cache;
	struct qcow2_l2_wait *w, *next;
	unsigned nr = 0;

	if (err)
		log_err_ratelimited("qcow2 %s: read of L2 table slice at offset 0x%" PRIx64 ": %s",
				    c->path, s->offset, err_str(err));
	pthread_rwlock_wrlock(&c->lock);
	w = s->waiters;
	s->waiters = NULL;
	for (next = w; next; next = next->next)
		nr++;
	if (err) {
		hash_remove(c, s);
		s->offset = 0;
		s->state = SLICE_EMPTY;
		s->pins = 0;
	} else {
		s->state = SLICE_VALID;
		/* one pin per waiter; the load's pin becomes the first waiter's */
		__atomic_store_n(&s->pins, nr, __ATOMIC_RELAXED);
		__atomic_store_n(&s->lru, __atomic_add_fetch(&c->lru_clock, 1, __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&c->lock);
	load_finished(c, s, w, err);
}

void qcow2_l2_cache_put(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s)
{
	bool wake, last;

	pthread_rwlock_rdlock(&c->lock);
	assert(__atomic_load_n(&s->pins, __ATOMIC_RELAXED) > 0);
	last = __atomic_sub_fetch(&s->pins, 1, __ATOMIC_RELAXED) == 0;
	wake = last && c->full.head;
	pthread_rwlock_unlock(&c->lock);
	if (last && __atomic_load_n(&s->dropped, __ATOMIC_RELAXED)) {
		pthread_rwlock_wrlock(&c->lock);
		if (s->dropped && __atomic_load_n(&s->pins, __ATOMIC_RELAXED) == 0) {
			s->dropped = false;
			s->state = SLICE_EMPTY;
			s->offset = 0;
		}
		pthread_rwlock_unlock(&c->lock);
	}
	if (wake)
		wake_full(c);
}

const uint8_t *qcow2_l2_slice_data(const struct qcow2_l2_slice *s)
{
	return s->data;
}

uint64_t qcow2_l2_slice_offset(const struct qcow2_l2_slice *s)
{
	return s->offset;
}

void qcow2_l2_cache_get_stats(struct qcow2_l2_cache *c, struct qcow2_l2_cache_stats *out)
{
	out->hits = __atomic_load_n(&c->stats.hits, __ATOMIC_RELAXED);
	out->misses = __atomic_load_n(&c->stats.misses, __ATOMIC_RELAXED);
	out->reads = __atomic_load_n(&c->stats.reads, __ATOMIC_RELAXED);
	out->evictions = __atomic_load_n(&c->stats.evictions, __ATOMIC_RELAXED);
}

/* ---- entries under the lock ------------------------------------------------------- */

void qcow2_l2_slice_copy(struct qcow2_l2_cache *c, const struct qcow2_l2_slice *s,
			 uint64_t off_in_slice, void *dst, size_t len)
{
	assert(off_in_slice + len <= c->slice_bytes);
	pthread_rwlock_rdlock(&c->lock);
	memcpy(dst, s->data + off_in_slice, len);
	pthread_rwlock_unlock(&c->lock);
}

void qcow2_l2_slice_update(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s,
			   uint64_t off_in_slice, const void *src, size_t len)
{
	assert(off_in_slice + len <= c->slice_bytes);
	pthread_rwlock_wrlock(&c->lock);
	memcpy(s->data + off_in_slice, src, len);
	if (!s->dirty)
		c->nr_dirty++;
	s->dirty = true;
	s->gen++;
	pthread_rwlock_unlock(&c->lock);
}

/* ---- the metadata thread's blocking access ------------------------------------------ */

/* Wait until the slice at @offset is not LOADING.  Write lock not held. */
static void wait_not_loading(struct qcow2_l2_cache *c, uint64_t offset)
{
	pthread_mutex_lock(&c->load_mutex);
	for (;;) {
		struct qcow2_l2_slice *s;
		bool loading;

		pthread_rwlock_rdlock(&c->lock);
		s = hash_find(c, offset);
		loading = s && s->state == SLICE_LOADING;
		pthread_rwlock_unlock(&c->lock);
		if (!loading)
			break;
		pthread_cond_wait(&c->load_cond, &c->load_mutex);
	}
	pthread_mutex_unlock(&c->load_mutex);
}

/*
 * Claim a slice for @offset under the write lock: a hit is pinned and
 * returned with *@hit set; otherwise a victim is made LOADING with the
 * caller's pin.  -EAGAIN when no slice is free, -EBUSY when another thread
 * is loading it.
 */
static int claim_locked(struct qcow2_l2_cache *c, uint64_t offset, struct qcow2_l2_slice **out,
			bool *hit)
{
	struct qcow2_l2_slice *s = hash_find(c, offset);

	*hit = false;
	if (s && s->state == SLICE_VALID) {
		slice_pin(c, s);
		*hit = true;
		*out = s;
		return 0;
	}
	if (s)
		return -EBUSY;
	s = pick_victim(c);
	if (!s)
		return -EAGAIN;
	if (s->state != SLICE_EMPTY) {
		hash_remove(c, s);
		stat_inc(&c->stats.evictions);
	}
	s->offset = offset;
	s->state = SLICE_LOADING;
	s->pins = 1;
	s->waiters = NULL;
	hash_insert(c, s);
	*out = s;
	return 0;
}

/* Finish a blocking load of @s: valid (dirty when @dirty) or, on @err, empty. */
static void finish_sync_load(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s, int err,
			     bool dirty)
{
	struct qcow2_l2_wait *w, *next;

	pthread_rwlock_wrlock(&c->lock);
	w = s->waiters;
	s->waiters = NULL;
	if (err) {
		hash_remove(c, s);
		s->offset = 0;
		s->state = SLICE_EMPTY;
		s->pins = 0;
	} else {
		unsigned nr = 1;

		for (next = w; next; next = next->next)
			nr++;
		s->state = SLICE_VALID;
		if (dirty && !s->dirty)
			c->nr_dirty++;
		s->dirty = dirty;
		s->gen++;
		__atomic_store_n(&s->pins, nr, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&c->lock);
	load_finished(c, s, w, err);
}

static int get_blocking(struct qcow2_l2_cache *c, uint64_t offset, bool fresh,
			struct qcow2_l2_slice **out)
{
	struct qcow2_l2_slice *s;
	bool hit;
	int err;

	assert(offset != 0 && is_aligned_u64(offset, c->slice_bytes));
	for (;;) {
		pthread_rwlock_wrlock(&c->lock);
		err = claim_locked(c, offset, &s, &hit);
		pthread_rwlock_unlock(&c->lock);
		if (err != -EBUSY)
			break;
		wait_not_loading(c, offset);
	}
	if (err)
		return err;
	if (hit) {
		stat_inc(&c->stats.hits);
		if (fresh)
			qcow2_l2_slice_update(c, s, 0, c->zeros, c->slice_bytes);
		*out = s;
		return 0;
	}
	stat_inc(&c->stats.misses);
	if (fresh) {
		memset(s->data, 0, c->slice_bytes);
	} else {
		stat_inc(&c->stats.reads);
		err = qcow2_pread(c->file, offset, s->data, c->slice_bytes);
		if (err)
			log_err("qcow2 %s: read of L2 table slice at offset 0x%" PRIx64 ": %s",
				c->path, offset, err_str(err));
	}
	finish_sync_load(c, s, err, fresh);
	if (!err)
		*out = s;
	return err;
}

int qcow2_l2_cache_get_sync(struct qcow2_l2_cache *c, uint64_t offset, struct qcow2_l2_slice **out)
{
	return get_blocking(c, offset, false, out);
}

int qcow2_l2_cache_get_new(struct qcow2_l2_cache *c, uint64_t offset, struct qcow2_l2_slice **out)
{
	return get_blocking(c, offset, true, out);
}

unsigned qcow2_l2_cache_dirty(struct qcow2_l2_cache *c)
{
	unsigned n;

	pthread_rwlock_rdlock(&c->lock);
	n = c->nr_dirty;
	pthread_rwlock_unlock(&c->lock);
	return n;
}

unsigned qcow2_l2_cache_slices(const struct qcow2_l2_cache *c)
{
	return c->nr_slices;
}

/* Snapshot dirty slice @i into @buf; false when it is not dirty. */
static bool snapshot_dirty(struct qcow2_l2_cache *c, unsigned i, uint8_t *buf, uint64_t *offset,
			   uint64_t *gen)
{
	struct qcow2_l2_slice *s = &c->slices[i];
	bool dirty;

	pthread_rwlock_rdlock(&c->lock);
	dirty = s->state == SLICE_VALID && s->dirty;
	if (dirty) {
		memcpy(buf, s->data, c->slice_bytes);
		*offset = s->offset;
		*gen = s->gen;
	}
	pthread_rwlock_unlock(&c->lock);
	return dirty;
}

int qcow2_l2_cache_writeback(struct qcow2_l2_cache *c, qcow2_l2_check_fn *check, void *opaque)
{
	bool cleaned = false;
	uint8_t *buf;
	unsigned i;
	int err = 0;

	buf = buf_alloc(c->slice_bytes, SLICE_ALIGN);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < c->nr_slices && !err; i++) {
		struct qcow2_l2_slice *s = &c->slices[i];
		uint64_t offset, gen;

		if (!snapshot_dirty(c, i, buf, &offset, &gen))
			continue;
		err = check ? check(opaque, offset, c->slice_bytes) : 0;
		if (!err)
			err = qcow2_pwrite(c->file, offset, buf, c->slice_bytes);
		if (err) {
			log_err("qcow2 %s: write of L2 table slice at offset 0x%" PRIx64 ": %s",
				c->path, offset, err_str(err));
			break;
		}
		pthread_rwlock_wrlock(&c->lock);
		if (s->dirty && s->gen == gen && s->offset == offset) {
			s->dirty = false;
			c->nr_dirty--;
			cleaned = true;
		}
		pthread_rwlock_unlock(&c->lock);
	}
	buf_free(buf);
	if (cleaned && c->full.head)
		wake_full(c);
	return err;
}

void qcow2_l2_cache_drop(struct qcow2_l2_cache *c, uint64_t offset, uint64_t len)
{
	uint64_t off;

	pthread_rwlock_wrlock(&c->lock);
	for (off = offset; off < offset + len; off += c->slice_bytes) {
		struct qcow2_l2_slice *s = hash_find(c, off);

		if (!s || s->state != SLICE_VALID)
			continue;
		hash_remove(c, s);
		if (s->dirty)
			c->nr_dirty--;
		s->dirty = false;
		if (__atomic_load_n(&s->pins, __ATOMIC_RELAXED)) {
			__atomic_store_n(&s->dropped, true, __ATOMIC_RELAXED);
		} else {
			s->state = SLICE_EMPTY;
			s->offset = 0;
		}
	}
	pthread_rwlock_unlock(&c->lock);
}
