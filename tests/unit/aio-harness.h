/* SPDX-License-Identifier: MIT */
/*
 * Shared by the lib/aio unit tests: a loop, a context on one engine, a real
 * file opened through aio, a plain buffered descriptor on the same file to
 * check what landed, and the content the file should have ("ref").
 *
 * Every ->done checks that it does not run inside aio_submit() and counts
 * its calls, so each test can assert exactly-once delivery.
 */
#ifndef QTAP_TEST_AIO_HARNESS_H
#define QTAP_TEST_AIO_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "evloop.h"

#define H_FILE_BYTES (2u << 20) /* largest file a test makes */
#define H_MAX_ALLOCS 32
#define H_DEADLINE_NS (30ull * 1000000000ull)

struct harness;

/* One test request with its vector and what happened to it. */
struct tio {
	struct aio_req req;
	struct iovec iov[8];
	struct harness *h;
	int calls;	 /* ->done calls */
	int err;	 /* last ->done result */
	int fault;	 /* error the fault seam injects; 0: none */
	int fault_again; /* answer -EAGAIN this many times first */
	int faulted;	 /* fault seam calls for this request */
};

struct harness {
	enum aio_engine engine;
	const char *skip_reason;
	char skip_buf[256];
	struct evloop *loop;
	struct aio_ctx *ctx;
	struct aio_file *file;
	int vfd;
	char path[PATH_MAX];
	uint8_t *ref;
	int done;
	int handed;	     /* requests the fault seam saw, first calls only */
	int max_outstanding; /* most handed to the engine and not yet done */
	int range_fault;     /* fault injected into every h_range_op() */
	void *allocs[H_MAX_ALLOCS];
	int nr_allocs;
};

static bool h_in_submit;

static inline const char *h_test_dir(void)
{
	const char *dir = getenv("QTAP_TEST_DIR");

	return dir && *dir ? dir : "build/tmp";
}

/* mkdir -p */
static inline void h_mkdirs(const char *dir)
{
	char path[PATH_MAX];

	assert_true(snprintf(path, sizeof(path), "%s", dir) < (int)sizeof(path));
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
		*p = '/';
	}
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
}

/* Deterministic bytes, different for every @seed. */
static inline void h_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static inline int h_fault(void *opaque, const struct aio_req *req)
{
	struct harness *h = opaque;
	struct tio *t = req->opaque;

	t->faulted++;
	if (t->fault_again > 0) {
		t->fault_again--;
		return -EAGAIN;
	}
	h->handed++;
	if (h->handed - h->done > h->max_outstanding)
		h->max_outstanding = h->handed - h->done;
	return t->fault;
}

/* (Re)create the context with @opts on the harness's engine. */
static inline int h_new_ctx(struct harness *h, const struct aio_ctx_opts *opts)
{
	struct aio_ctx_opts o = opts ? *opts : (struct aio_ctx_opts){ 0 };
	int r;

	aio_ctx_free(h->ctx);
	h->ctx = NULL;
	o.engine = h->engine;
	r = aio_ctx_new(h->loop, &o, &h->ctx);
	if (r == 0)
		aio_ctx_set_fault(h->ctx, h_fault, h);
	return r;
}

/* Open @path through aio (creating it) and a buffered checking fd on it. */
static inline void h_open(struct harness *h, const char *path, unsigned flags)
{
	assert_true(snprintf(h->path, sizeof(h->path), "%s", path) < (int)sizeof(h->path));
	assert_int_equal(aio_file_open(h->path, flags | AIO_FILE_CREATE, &h->file), 0);
	h->vfd = open(h->path, O_RDWR | O_CLOEXEC);
	assert_true(h->vfd >= 0);
}

static inline struct harness *h_new(enum aio_engine engine)
{
	struct harness *h = calloc(1, sizeof(*h));
	int r;

	assert_non_null(h);
	h->engine = engine;
	h->vfd = -1;
	h->ref = calloc(1, H_FILE_BYTES);
	assert_non_null(h->ref);
	assert_int_equal(evloop_new(&h->loop), 0);
	r = h_new_ctx(h, NULL);
	if (r < 0) {
		snprintf(h->skip_buf, sizeof(h->skip_buf), "%s engine unavailable here (%s)",
			 aio_engine_name(engine), strerror(-r));
		h->skip_reason = h->skip_buf;
	}
	return h;
}

static inline void h_free(struct harness *h)
{
	aio_file_close(h->file);
	if (h->vfd >= 0)
		close(h->vfd);
	if (h->path[0])
		unlink(h->path);
	aio_ctx_free(h->ctx);
	evloop_free(h->loop);
	for (int i = 0; i < h->nr_allocs; i++)
		buf_free(h->allocs[i]);
	free(h->ref);
	free(h);
}

/* Skip the calling test when its engine cannot run here. */
#define H_SKIP_IF_UNAVAILABLE(h)                                                                   \
	do {                                                                                       \
		if ((h)->skip_reason) {                                                            \
			print_message("SKIP: %s\n", (h)->skip_reason);                             \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* @n bytes at @misalign past a page boundary, filled with 0xee. */
static inline uint8_t *h_alloc(struct harness *h, size_t n, size_t misalign)
{
	uint8_t *p = buf_alloc(n + misalign, 4096);

	assert_non_null(p);
	assert_true(h->nr_allocs < H_MAX_ALLOCS);
	h->allocs[h->nr_allocs++] = p;
	memset(p, 0xee, n + misalign);
	return p + misalign;
}

/* Give the file @size bytes of pattern @seed, through the checking fd. */
static inline void h_fill(struct harness *h, size_t size, uint32_t seed)
{
	assert_true(size <= H_FILE_BYTES);
	memset(h->ref, 0, H_FILE_BYTES);
	h_pattern(h->ref, size, seed);
	assert_int_equal(pwrite(h->vfd, h->ref, size, 0), (ssize_t)size);
	assert_int_equal(ftruncate(h->vfd, (off_t)size), 0);
	assert_int_equal(fsync(h->vfd), 0);
}

/* The file must hold exactly ref[0, size). */
static inline void h_check_file(struct harness *h, size_t size)
{
	uint8_t *got = malloc(H_FILE_BYTES);
	struct stat st;

	assert_non_null(got);
	assert_int_equal(fstat(h->vfd, &st), 0);
	assert_int_equal(st.st_size, (off_t)size);
	assert_int_equal(pread(h->vfd, got, size, 0), (ssize_t)size);
	for (size_t i = 0; i < size; i++) {
		if (got[i] != h->ref[i])
			fail_msg("file byte %zu is 0x%02x, expected 0x%02x", i, got[i], h->ref[i]);
	}
	free(got);
}

static inline void h_done(struct aio_req *req, int err)
{
	struct tio *t = req->opaque;

	assert_false(h_in_submit);
	t->calls++;
	t->err = err;
	t->h->done++;
}

/* Prepare @t; the caller fills t->iov[0..iovcnt) (len is their sum). */
static inline void h_req(struct harness *h, struct tio *t, enum aio_op op, uint64_t off,
			 unsigned iovcnt)
{
	uint64_t len = 0;

	for (unsigned i = 0; i < iovcnt; i++)
		len += t->iov[i].iov_len;
	t->h = h;
	t->req = (struct aio_req){
		.file = h->file,
		.op = op,
		.offset = off,
		.len = len,
		.iov = t->iov,
		.iovcnt = iovcnt,
		.done = h_done,
		.opaque = t,
	};
}

static inline void h_submit(struct harness *h, struct tio *t)
{
	h_in_submit = true;
	aio_submit(h->ctx, &t->req);
	h_in_submit = false;
}

/* Run the loop until @n more requests completed, then a little longer so
 * that a second ->done for any of them would be seen. */
static inline void h_wait(struct harness *h, int n)
{
	uint64_t deadline = evloop_now_ns() + H_DEADLINE_NS;
	int want = h->done + n;

	while (h->done < want) {
		assert_true(evloop_now_ns() < deadline);
		assert_true(evloop_run_once(h->loop, 100 * 1000000) >= 0);
	}
	for (int i = 0; i < 3; i++)
		assert_true(evloop_run_once(h->loop, 0) >= 0);
	assert_int_equal(aio_ctx_inflight(h->ctx), 0);
}

/* Submit @t alone, wait, and return its result (delivered exactly once). */
static inline int h_run(struct harness *h, struct tio *t)
{
	h_submit(h, t);
	assert_int_equal(t->calls, 0);
	h_wait(h, 1);
	assert_int_equal(t->calls, 1);
	return t->err;
}

/* A one-segment read or write of @n bytes at @off from/to @buf. */
static inline int h_rw(struct harness *h, enum aio_op op, uint64_t off, void *buf, size_t n,
		       unsigned flags)
{
	struct tio t = { 0 };

	t.iov[0].iov_base = buf;
	t.iov[0].iov_len = n;
	h_req(h, &t, op, off, 1);
	t.req.flags = flags;
	return h_run(h, &t);
}

/* DISCARD, WRITE_ZEROES or FSYNC of [@off, @off + @len). */
static inline int h_range_op(struct harness *h, enum aio_op op, uint64_t off, uint64_t len)
{
	struct tio t = { 0 };

	h_req(h, &t, op, off, 0);
	t.req.len = len;
	t.fault = h->range_fault;
	return h_run(h, &t);
}

static inline void assert_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			fail_msg("byte %zu is 0x%02x, expected zero", i, p[i]);
	}
}

static inline void set_iov(struct tio *t, unsigned i, void *base, size_t len)
{
	t->iov[i].iov_base = base;
	t->iov[i].iov_len = len;
}

/* Read [off, off + n) through aio into a buffer misaligned by @mis; compare. */
static inline void check_read(struct harness *h, uint64_t off, size_t n, size_t mis)
{
	uint8_t *buf = h_alloc(h, n, mis);

	assert_int_equal(h_rw(h, AIO_OP_READ, off, buf, n, 0), 0);
	assert_memory_equal(buf, h->ref + off, n);
}

/* DISCARD and WRITE_ZEROES, aligned and not, read back as zeros. */
static inline void check_zeroing(struct harness *h, enum aio_op op, uint32_t seed)
{
	uint8_t *buf;

	h_fill(h, 64 << 10, seed);
	assert_int_equal(h_range_op(h, op, 4096, 8192), 0);
	memset(h->ref + 4096, 0, 8192);
	assert_int_equal(h_range_op(h, op, 20000, 1000), 0);
	memset(h->ref + 20000, 0, 1000);
	h_check_file(h, 64 << 10);
	buf = h_alloc(h, 16384, 0);
	assert_int_equal(h_rw(h, AIO_OP_READ, 0, buf, 16384, 0), 0);
	assert_memory_equal(buf, h->ref, 4096);
	assert_zero(buf + 4096, 8192);
	assert_memory_equal(buf + 12288, h->ref + 12288, 4096);
	check_read(h, 19000, 3000, 3);
}

#endif
