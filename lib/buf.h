/* SPDX-License-Identifier: MIT */
/*
 * Aligned buffers for O_DIRECT, and a fixed pool of them.
 *
 * The pool is how the I/O path avoids malloc: everything is allocated when
 * the pool is made, get/put are O(1), and an empty pool returns NULL so the
 * caller can queue and retry when a buffer comes back.  A pool is used from
 * one thread.
 */
#ifndef QTAP_BUF_H
#define QTAP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* buf_alloc - @bytes aligned to @align (a power of two); NULL on failure. */
void *buf_alloc(size_t bytes, size_t align);

/* buf_free - free a buf_alloc()ed buffer; NULL is a no-op. */
void buf_free(void *p);

struct buf_pool;

/* buf_pool_new - @count buffers of @buf_bytes aligned to @align.  0/-errno. */
int buf_pool_new(size_t buf_bytes, unsigned count, size_t align, struct buf_pool **out);

/* buf_pool_free - all buffers must be back.  NULL is a no-op. */
void buf_pool_free(struct buf_pool *pool);

/* buf_pool_get - a buffer, or NULL when all are in use. */
void *buf_pool_get(struct buf_pool *pool);

/* buf_pool_put - return a buffer obtained from this pool. */
void buf_pool_put(struct buf_pool *pool, void *buf);

size_t buf_pool_buf_bytes(const struct buf_pool *pool);
unsigned buf_pool_available(const struct buf_pool *pool);

/*
 * buf_iov_total_is - does @iov (@iovcnt elements; NULL only when 0) add up
 * to exactly @len bytes, without overflow?  For checking untrusted requests.
 */
bool buf_iov_total_is(const struct iovec *iov, unsigned iovcnt, uint64_t len);

#endif
