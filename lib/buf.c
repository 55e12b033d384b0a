// SPDX-License-Identifier: MIT
/*
 * Aligned buffers and fixed pools of them (see buf.h).  A pool is one
 * aligned slab cut into equal buffers plus a stack of free indices.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"

struct buf_pool {
	char *slab;
	size_t buf_bytes;
	unsigned count;
	unsigned nr_free;
	unsigned *free_stack;
};

void *buf_alloc(size_t bytes, size_t align)
{
	void *p;

	if (align < sizeof(void *))
		align = sizeof(void *);
	if (posix_memalign(&p, align, bytes ? bytes : 1) != 0)
		return NULL;
	return p;
}

void buf_free(void *p)
{
	free(p);
}

int buf_pool_new(size_t buf_bytes, unsigned count, size_t align, struct buf_pool **out)
{
	struct buf_pool *pool;
	size_t stride, total;

	if (count == 0 || buf_bytes == 0 || !is_power_of_2_u64(align))
		return -EINVAL;
	if (ck_align_up_u64(buf_bytes, align, &stride) || ck_mul(stride, (size_t)count, &total))
		return -EOVERFLOW;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->slab = buf_alloc(total, align);
	pool->free_stack = calloc(count, sizeof(*pool->free_stack));
	if (!pool->slab || !pool->free_stack) {
		buf_free(pool->slab);
		free(pool->free_stack);
		free(pool);
		return -ENOMEM;
	}
	pool->buf_bytes = stride;
	pool->count = count;
	pool->nr_free = count;
	for (unsigned i = 0; i < count; i++)
		pool->free_stack[i] = count - 1 - i;
	*out = pool;
	return 0;
}

void buf_pool_free(struct buf_pool *pool)
{
	if (!pool)
		return;
	buf_free(pool->slab);
	free(pool->free_stack);
	free(pool);
}

void *buf_pool_get(struct buf_pool *pool)
{
	if (pool->nr_free == 0)
		return NULL;
	return pool->slab + (size_t)pool->free_stack[--pool->nr_free] * pool->buf_bytes;
}

void buf_pool_put(struct buf_pool *pool, void *buf)
{
	size_t index = (size_t)((char *)buf - pool->slab) / pool->buf_bytes;

	pool->free_stack[pool->nr_free++] = (unsigned)index;
}

size_t buf_pool_buf_bytes(const struct buf_pool *pool)
{
	return pool->buf_bytes;
}

unsigned buf_pool_available(const struct buf_pool *pool)
{
	return pool->nr_free;
}

bool buf_iov_total_is(const struct iovec *iov, unsigned iovcnt, uint64_t len)
{
	uint64_t total = 0;
	unsigned i;

	if (iovcnt && !iov)
		return false;
	for (i = 0; i < iovcnt; i++) {
		if (ck_add(total, (uint64_t)iov[i].iov_len, &total))
			return false;
	}
	return total == len;
}
