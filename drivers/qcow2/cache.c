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

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/cache.h"
#include "qcow2/format.h"

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
	int32_t *buckets;
	unsigned hash_bits;
	uint64_t lru_clock;		   /* atomic */
	struct wait_list full;		   /* lookups waiting for an unpinned slice */
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
	if (!c->slices || !c->buckets || !c->data)
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
		free(c);
	}
	return -ENOMEM;
}

void qcow2_l2_cache_free(struct qcow2_l2_cache *c)
{
	if (!c)
		return;
	if (c->nr_slices)
		pthread_rwlock_destroy(&c->lock);
	free(c->slices);
	free(c->buckets);
	buf_free(c->data);
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
		if (s->state != SLICE_VALID || __atomic_load_n(&s->pins, __ATOMIC_RELAXED))
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
	for (; w; w = next) {
		next = w->next;
		wait_post(w, err ? NULL : s, err);
	}
	if (err)
		wake_full(c);
}

void qcow2_l2_cache_put(struct qcow2_l2_cache *c, struct qcow2_l2_slice *s)
{
	bool wake;

	pthread_rwlock_rdlock(&c->lock);
	assert(__atomic_load_n(&s->pins, __ATOMIC_RELAXED) > 0);
	wake = __atomic_sub_fetch(&s->pins, 1, __ATOMIC_RELAXED) == 0 && c->full.head;
	pthread_rwlock_unlock(&c->lock);
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
