// SPDX-License-Identifier: MIT
/*
 * lib/aio on real files, once per engine (io_uring, libaio, sync): vectored
 * reads and writes; misaligned memory, offsets and lengths through the bounce
 * buffers, including concurrent read-modify-writes of neighbouring bytes in
 * one block and requests larger than a bounce buffer; short reads at end of
 * file; injected errors and -EAGAIN; fsync, discard, write zeroes; the depth
 * limit; buffered files, their I/O offloaded to the kernel's workers, and
 * read with O_DIRECT when cold (AIO_FILE_DIRECT_IF_COLD); caller mistakes.  Everything written is checked
 * byte for byte through a separate buffered descriptor.
 *
 * Files live in $QTAP_TEST_DIR (default build/tmp), which must not be tmpfs
 * for the O_DIRECT cases to mean anything: those skip, saying so, there.
 */
#include <sys/syscall.h>

#include "aio-harness.h"
#include "log.h"

static enum aio_engine cur_engine;
static unsigned file_seq;

static int setup(void **state)
{
	struct harness *h = h_new(cur_engine);
	char path[PATH_MAX];

	if (!h->skip_reason) {
		h_mkdirs(h_test_dir());
		assert_true(snprintf(path, sizeof(path), "%s/test-aio-%d-%u.img", h_test_dir(),
				     (int)getpid(), file_seq++) < (int)sizeof(path));
		h_open(h, path, 0);
	}
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	h_free(*state);
	return 0;
}

/* The bounce-path tests mean nothing on a file without O_DIRECT. */
static void skip_unless_direct(struct harness *h)
{
	if (!h->file->direct) {
		print_message("SKIP: %s does not support O_DIRECT, nothing to bounce\n",
			      h_test_dir());
		skip();
	}
}

static void test_vectored_rw(void **state)
{
	struct harness *h = *state;
	struct tio w = { 0 }, r = { 0 };
	uint8_t *a, *b, *c, *d;

	H_SKIP_IF_UNAVAILABLE(h);
	h_fill(h, 1 << 20, 1);
	a = h_alloc(h, 4096, 0);
	b = h_alloc(h, 8192, 0);
	c = h_alloc(h, 4096, 0);
	h_pattern(a, 4096, 11);
	h_pattern(b, 8192, 12);
	h_pattern(c, 4096, 13);
	set_iov(&w, 0, a, 4096);
	set_iov(&w, 1, b, 8192);
	set_iov(&w, 2, c, 4096);
	h_req(h, &w, AIO_OP_WRITE, 65536, 3);
	assert_int_equal(h_run(h, &w), 0);
	memcpy(h->ref + 65536, a, 4096);
	memcpy(h->ref + 65536 + 4096, b, 8192);
	memcpy(h->ref + 65536 + 12288, c, 4096);
	h_check_file(h, 1 << 20);

	/* Read back split differently, starting before the written range. */
	d = h_alloc(h, 5 * 8192, 0);
	for (unsigned i = 0; i < 4; i++)
		set_iov(&r, i, d + i * 8192, i == 0 ? 8192 : 4096 * i);
	h_req(h, &r, AIO_OP_READ, 61440, 4);
	assert_int_equal(r.req.len, 8192 + 4096 + 8192 + 12288);
	assert_int_equal(h_run(h, &r), 0);
	assert_memory_equal(d, h->ref + 61440, 8192);
	assert_memory_equal(d + 8192, h->ref + 61440 + 8192, 4096);
	assert_memory_equal(d + 16384, h->ref + 61440 + 12288, 8192);
	assert_memory_equal(d + 24576, h->ref + 61440 + 20480, 12288);
}

static void test_misaligned_memory(void **state)
{
	struct harness *h = *state;
	struct tio w = { 0 }, r = { 0 };
	uint8_t *a, *b, *c;

	H_SKIP_IF_UNAVAILABLE(h);
	skip_unless_direct(h);
	h_fill(h, 256 << 10, 2);
	a = h_alloc(h, 4096, 1);
	b = h_alloc(h, 8192, 3);
	h_pattern(a, 4096, 21);
	h_pattern(b, 8192, 22);
	set_iov(&w, 0, a, 4096);
	set_iov(&w, 1, b, 8192);
	h_req(h, &w, AIO_OP_WRITE, 8192, 2);
	assert_int_equal(h_run(h, &w), 0);
	memcpy(h->ref + 8192, a, 4096);
	memcpy(h->ref + 8192 + 4096, b, 8192);
	h_check_file(h, 256 << 10);

	/* Aligned memory, but segment lengths no block size divides. */
	c = h_alloc(h, 12288, 0);
	set_iov(&r, 0, c, 100);
	set_iov(&r, 1, c + 4096, 3996);
	set_iov(&r, 2, c + 8192, 4096);
	h_req(h, &r, AIO_OP_READ, 8192, 3);
	assert_int_equal(h_run(h, &r), 0);
	assert_memory_equal(c, h->ref + 8192, 100);
	assert_memory_equal(c + 4096, h->ref + 8192 + 100, 3996);
	assert_memory_equal(c + 8192, h->ref + 8192 + 4096, 4096);
	check_read(h, 8192, 12288, 5);
}

static void test_misaligned_offsets(void **state)
{
	static const struct {
		uint64_t off;
		size_t len;
	} cases[] = {
		{ 1000, 100 }, { 4000, 200 }, { 5000, 9000 },
		{ 0, 1 },      { 8191, 2 },   { 65536 + 17, 65536 + 30 },
	};
	struct harness *h = *state;

	H_SKIP_IF_UNAVAILABLE(h);
	skip_unless_direct(h);
	h_fill(h, 256 << 10, 3);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint8_t *buf = h_alloc(h, cases[i].len, i);

		h_pattern(buf, cases[i].len, 30 + (uint32_t)i);
		assert_int_equal(h_rw(h, AIO_OP_WRITE, cases[i].off, buf, cases[i].len, 0), 0);
		memcpy(h->ref + cases[i].off, buf, cases[i].len);
	}
	h_check_file(h, 256 << 10);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		check_read(h, cases[i].off + 1, cases[i].len, 7);
}

/* Writes to neighbouring bytes of the same blocks, all in flight at once:
 * each is a read-modify-write of a shared block, and every one must land. */
static void test_concurrent_rmw_neighbours(void **state)
{
	enum { N = 18 };
	struct harness *h = *state;
	struct tio t[N] = { 0 };
	uint64_t off[N];
	size_t len[N];

	H_SKIP_IF_UNAVAILABLE(h);
	skip_unless_direct(h);
	h_fill(h, 64 << 10, 4);
	for (int i = 0; i < 16; i++) {
		off[i] = 4096 + 100 + 64 * i;
		len[i] = 64;
	}
	off[16] = 8192 - 10;
	len[16] = 10;
	off[17] = 8192;
	len[17] = 10;
	for (int i = 0; i < N; i++) {
		uint8_t *buf = h_alloc(h, len[i], 1);

		h_pattern(buf, len[i], 40 + i);
		memcpy(h->ref + off[i], buf, len[i]);
		set_iov(&t[i], 0, buf, len[i]);
		h_req(h, &t[i], AIO_OP_WRITE, off[i], 1);
		h_submit(h, &t[i]);
	}
	h_wait(h, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].err, 0);
	}
	h_check_file(h, 64 << 10);
}

/* Misaligned requests several bounce buffers long, more of them in flight
 * than there are bounce buffers. */
static void test_larger_than_bounce(void **state)
{
	const struct aio_ctx_opts opts = { .bounce_count = 2, .bounce_bytes = 64 << 10 };
	const size_t n = 300000, seg[5] = { 1, 4095, 70000, 3, 225901 };
	struct harness *h = *state;
	struct tio t[4] = { 0 }, r[2] = { 0 };
	uint8_t *src[4], *dst[2];

	H_SKIP_IF_UNAVAILABLE(h);
	skip_unless_direct(h);
	assert_int_equal(h_new_ctx(h, &opts), 0);
	h_fill(h, 1536 << 10, 5);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t off = 777 + i * (n + 1000);
		size_t at = 0;

		src[i] = h_alloc(h, n, 1 + i);
		h_pattern(src[i], n, 50 + i);
		memcpy(h->ref + off, src[i], n);
		for (unsigned k = 0; k < (i == 3 ? 5u : 1u); k++) {
			set_iov(&t[i], k, src[i] + at, i == 3 ? seg[k] : n);
			at += i == 3 ? seg[k] : n;
		}
		h_req(h, &t[i], AIO_OP_WRITE, off, i == 3 ? 5 : 1);
		assert_int_equal(t[i].req.len, n);
		h_submit(h, &t[i]);
	}
	h_wait(h, 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(t[i].err, 0);
	h_check_file(h, 1536 << 10);

	for (unsigned i = 0; i < 2; i++) {
		size_t at = 0;

		dst[i] = h_alloc(h, n, 3);
		for (unsigned k = 0; k < 5; k++) {
			set_iov(&r[i], k, dst[i] + at, seg[k]);
			at += seg[k];
		}
		h_req(h, &r[i], AIO_OP_READ, 777 + 3 * (n + 1000) + i, 5);
		h_submit(h, &r[i]);
	}
	h_wait(h, 2);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].err, 0);
		assert_memory_equal(dst[i], h->ref + 777 + 3 * (n + 1000) + i, n);
	}
}

static void test_short_read_at_eof(void **state)
{
	struct harness *h = *state;
	struct tio v = { 0 };
	uint8_t *buf, *mis, *a, *b;

	H_SKIP_IF_UNAVAILABLE(h);
	h_fill(h, 10000, 6);
	buf = h_alloc(h, 8192, 0);
	mis = h_alloc(h, 3000, 3);

	/* Aligned, crossing end of file. */
	assert_int_equal(h_rw(h, AIO_OP_READ, 8192, buf, 8192, 0), -EIO);
	memset(buf, 0xee, 8192);
	assert_int_equal(h_rw(h, AIO_OP_READ, 8192, buf, 8192, AIO_F_ZERO_EOF), 0);
	assert_memory_equal(buf, h->ref + 8192, 10000 - 8192);
	assert_zero(buf + 10000 - 8192, 8192 - (10000 - 8192));

	/* Misaligned, crossing end of file. */
	assert_int_equal(h_rw(h, AIO_OP_READ, 9000, mis, 3000, 0), -EIO);
	memset(mis, 0xee, 3000);
	assert_int_equal(h_rw(h, AIO_OP_READ, 9000, mis, 3000, AIO_F_ZERO_EOF), 0);
	assert_memory_equal(mis, h->ref + 9000, 1000);
	assert_zero(mis + 1000, 2000);

	/* Wholly past end of file. */
	assert_int_equal(h_rw(h, AIO_OP_READ, 20480, buf, 4096, 0), -EIO);
	memset(buf, 0xee, 4096);
	assert_int_equal(h_rw(h, AIO_OP_READ, 20480, buf, 4096, AIO_F_ZERO_EOF), 0);
	assert_zero(buf, 4096);

	/* Vectored, end of file inside the first segment. */
	a = h_alloc(h, 4096, 0);
	b = h_alloc(h, 4096, 0);
	set_iov(&v, 0, a, 4096);
	set_iov(&v, 1, b, 4096);
	h_req(h, &v, AIO_OP_READ, 8192, 2);
	v.req.flags = AIO_F_ZERO_EOF;
	assert_int_equal(h_run(h, &v), 0);
	assert_memory_equal(a, h->ref + 8192, 10000 - 8192);
	assert_zero(a + 10000 - 8192, 4096 - (10000 - 8192));
	assert_zero(b, 4096);
	h_check_file(h, 10000);
}

/* Injected errors reach exactly the requests they target, exactly once,
 * and release what those requests held. */
static void test_fault_injection(void **state)
{
	const struct aio_ctx_opts opts = { .bounce_count = 1 };
	struct harness *h = *state;
	struct tio t[8] = { 0 };
	uint8_t *buf;

	H_SKIP_IF_UNAVAILABLE(h);
	assert_int_equal(h_new_ctx(h, &opts), 0);
	h_fill(h, 64 << 10, 7);
	t[2].fault = -ENOSPC;
	t[5].fault = -EIO;
	t[6].fault = -EROFS;
	for (unsigned i = 0; i < 8; i++) {
		/* 6 and 7 are misaligned: they need the only bounce buffer. */
		uint64_t off = i * 4096 + (i >= 6 ? 10 : 0);
		size_t n = i >= 6 ? 100 : 4096;

		buf = h_alloc(h, n, i >= 6 ? 1 : 0);
		h_pattern(buf, n, 60 + i);
		if (!t[i].fault)
			memcpy(h->ref + off, buf, n);
		set_iov(&t[i], 0, buf, n);
		h_req(h, &t[i], AIO_OP_WRITE, off, 1);
		h_submit(h, &t[i]);
	}
	h_wait(h, 8);
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].err, t[i].fault);
		assert_int_equal(t[i].faulted, 1);
	}
	h_check_file(h, 64 << 10);
	/* The failed RMW gave its bounce buffer back, or this would hang. */
	check_read(h, 30000, 333, 1);
}

/* -EAGAIN requeues: the request is retried and completes once, with 0. */
static void test_eagain_requeues(void **state)
{
	struct harness *h = *state;
	struct tio t[2] = { 0 };
	uint8_t *a, *b;

	H_SKIP_IF_UNAVAILABLE(h);
	h_fill(h, 64 << 10, 8);
	a = h_alloc(h, 4096, 0);
	b = h_alloc(h, 50, 1);
	h_pattern(a, 4096, 70);
	h_pattern(b, 50, 71);
	set_iov(&t[0], 0, a, 4096);
	set_iov(&t[1], 0, b, 50);
	h_req(h, &t[0], AIO_OP_WRITE, 4096, 1);
	h_req(h, &t[1], AIO_OP_WRITE, 9000, 1);
	t[0].fault_again = 3;
	t[1].fault_again = 2;
	h_submit(h, &t[0]);
	h_submit(h, &t[1]);
	h_wait(h, 2);
	assert_int_equal(t[0].calls, 1);
	assert_int_equal(t[0].err, 0);
	assert_int_equal(t[0].faulted, 4);
	assert_int_equal(t[1].calls, 1);
	assert_int_equal(t[1].err, 0);
	assert_int_equal(t[1].faulted, 3);
	memcpy(h->ref + 4096, a, 4096);
	memcpy(h->ref + 9000, b, 50);
	h_check_file(h, 64 << 10);
}

static void test_fsync(void **state)
{
	struct harness *h = *state;
	struct tio t[3] = { 0 };
	uint8_t *buf;

	H_SKIP_IF_UNAVAILABLE(h);
	h_fill(h, 64 << 10, 9);
	assert_int_equal(h_range_op(h, AIO_OP_FSYNC, 0, 0), 0);
	/* A flush in flight together with writes. */
	for (unsigned i = 0; i < 2; i++) {
		buf = h_alloc(h, 4096, 0);
		h_pattern(buf, 4096, 80 + i);
		memcpy(h->ref + i * 8192, buf, 4096);
		set_iov(&t[i], 0, buf, 4096);
		h_req(h, &t[i], AIO_OP_WRITE, i * 8192, 1);
		h_submit(h, &t[i]);
	}
	h_req(h, &t[2], AIO_OP_FSYNC, 0, 0);
	h_submit(h, &t[2]);
	h_wait(h, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].err, 0);
	}
	assert_int_equal(h_range_op(h, AIO_OP_FSYNC, 0, 0), 0);
	h_check_file(h, 64 << 10);
}

static void test_discard(void **state)
{
	struct harness *h = *state;

	H_SKIP_IF_UNAVAILABLE(h);
	check_zeroing(h, AIO_OP_DISCARD, 10);
}

static void test_write_zeroes(void **state)
{
	struct harness *h = *state;

	H_SKIP_IF_UNAVAILABLE(h);
	check_zeroing(h, AIO_OP_WRITE_ZEROES, 11);
}

/*
 * A file system refusing to punch or zero (EOPNOTSUPP, injected here) gets
 * zeros written instead: from the zero buffer where aligned, by RMW where
 * not, in zero-buffer-sized chunks where long.
 */
static void test_zeroes_emulated(void **state)
{
	struct harness *h = *state;

	H_SKIP_IF_UNAVAILABLE(h);
	h->range_fault = -EOPNOTSUPP;
	check_zeroing(h, AIO_OP_WRITE_ZEROES, 16);
	check_zeroing(h, AIO_OP_DISCARD, 17);
	h_fill(h, 1 << 20, 18);
	assert_int_equal(h_range_op(h, AIO_OP_WRITE_ZEROES, 1000, 600000), 0);
	memset(h->ref + 1000, 0, 600000);
	h_check_file(h, 1 << 20);
}

/* 4 x depth requests: never more than depth handed to the engine, all done. */
static void test_depth_limit(void **state)
{
	enum { DEPTH = 4, N = 4 * DEPTH };
	const struct aio_ctx_opts opts = { .depth = DEPTH };
	struct harness *h = *state;
	struct tio t[N] = { 0 };

	H_SKIP_IF_UNAVAILABLE(h);
	assert_int_equal(h_new_ctx(h, &opts), 0);
	h_fill(h, 128 << 10, 12);
	for (unsigned i = 0; i < N; i++) {
		/* Every fourth one misaligned, through the bounce path. */
		uint64_t off = i * 8192 + (i % 4 == 3 ? 333 : 0);
		uint8_t *buf = h_alloc(h, 4096, i % 4 == 3 ? 1 : 0);

		h_pattern(buf, 4096, 90 + i);
		memcpy(h->ref + off, buf, 4096);
		set_iov(&t[i], 0, buf, 4096);
		h_req(h, &t[i], AIO_OP_WRITE, off, 1);
		h_submit(h, &t[i]);
	}
	assert_int_equal(aio_ctx_inflight(h->ctx), N);
	h_wait(h, N);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].err, 0);
	}
	assert_int_equal(h->max_outstanding, DEPTH);
	h_check_file(h, 128 << 10);
}

/* A buffered file: no alignment, partial reads at end of file. */
static void test_buffered_file(void **state)
{
	struct harness *h = *state;
	uint8_t *buf;

	H_SKIP_IF_UNAVAILABLE(h);
	aio_file_close(h->file);
	assert_int_equal(aio_file_open(h->path, AIO_FILE_BUFFERED, &h->file), 0);
	assert_false(h->file->direct);
	assert_int_equal(h->file->mem_align, 1);
	assert_int_equal(h->file->io_align, 1);
	h_fill(h, 10000, 13);
	buf = h_alloc(h, 777, 1);
	h_pattern(buf, 777, 99);
	assert_int_equal(h_rw(h, AIO_OP_WRITE, 1234, buf, 777, 0), 0);
	memcpy(h->ref + 1234, buf, 777);
	h_check_file(h, 10000);
	check_read(h, 1000, 2000, 3);
	buf = h_alloc(h, 1000, 5);
	assert_int_equal(h_rw(h, AIO_OP_READ, 9500, buf, 1000, 0), -EIO);
	assert_int_equal(h_rw(h, AIO_OP_READ, 9500, buf, 1000, AIO_F_ZERO_EOF), 0);
	assert_memory_equal(buf, h->ref + 9500, 500);
	assert_zero(buf + 500, 500);
}

/*
 * offload_buffered: buffered writes and reads handed to the kernel's
 * workers, many at once, land and read back exactly, short reads at the
 * end of the file included.
 */
static void test_buffered_offload(void **state)
{
	enum { N = 8, PIECE = 96 << 10 };
	const struct aio_ctx_opts opts = { .offload_buffered = true };
	struct harness *h = *state;
	struct tio w[N] = { 0 }, r[N] = { 0 };
	uint8_t *buf;

	H_SKIP_IF_UNAVAILABLE(h);
	assert_int_equal(h_new_ctx(h, &opts), 0);
	aio_file_close(h->file);
	assert_int_equal(aio_file_open(h->path, AIO_FILE_BUFFERED, &h->file), 0);
	assert_false(h->file->direct);
	h_fill(h, N * PIECE, 21);
	for (unsigned i = 0; i < N; i++) {
		buf = h_alloc(h, PIECE - 1000, 1);
		h_pattern(buf, PIECE - 1000, 30 + i);
		memcpy(h->ref + i * PIECE + 500, buf, PIECE - 1000);
		set_iov(&w[i], 0, buf, PIECE - 1000);
		h_req(h, &w[i], AIO_OP_WRITE, i * PIECE + 500, 1);
		h_submit(h, &w[i]);
	}
	h_wait(h, N);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(w[i].err, 0);
	h_check_file(h, N * PIECE);
	for (unsigned i = 0; i < N; i++) {
		set_iov(&r[i], 0, h_alloc(h, PIECE + 7, 3), PIECE + 7);
		h_req(h, &r[i], AIO_OP_READ, i * PIECE + 11, 1);
		r[i].req.flags = AIO_F_ZERO_EOF; /* the last one runs 18 bytes past the end */
		h_submit(h, &r[i]);
	}
	h_wait(h, N);
	for (unsigned i = 0; i < N; i++) {
		size_t in_file = MIN((size_t)PIECE + 7, N * PIECE - (i * PIECE + 11));

		assert_int_equal(r[i].err, 0);
		assert_memory_equal(r[i].iov[0].iov_base, h->ref + i * PIECE + 11, in_file);
		assert_zero((uint8_t *)r[i].iov[0].iov_base + in_file, PIECE + 7 - in_file);
	}
}

/* Drop the file's pages from the page cache (written back first). */
static void h_drop_cache(struct harness *h)
{
	assert_int_equal(fsync(h->vfd), 0);
	assert_int_equal(posix_fadvise(h->vfd, 0, 0, POSIX_FADV_DONTNEED), 0);
}

/*
 * AIO_FILE_DIRECT_IF_COLD: a read-only buffered open of a file the page
 * cache does not hold is O_DIRECT after all, and reads right; once the
 * file is cached, or when it does not end on a 4 KiB block, it is not.
 */
static void test_direct_if_cold(void **state)
{
	const unsigned flags = AIO_FILE_RDONLY | AIO_FILE_BUFFERED | AIO_FILE_DIRECT_IF_COLD;
	struct harness *h = *state;
	uint8_t *buf;

	H_SKIP_IF_UNAVAILABLE(h);
	if (!h->file->direct) {
		print_message("SKIP: %s does not support O_DIRECT\n", h_test_dir());
		skip();
	}
	if (syscall(451 /* cachestat */, h->vfd, NULL, NULL, 0) < 0 && errno == ENOSYS) {
		print_message("SKIP: no cachestat here (Linux < 6.5, or valgrind): cold files stay "
			      "buffered\n");
		skip();
	}
	h_fill(h, 1 << 20, 41);
	h_drop_cache(h);
	aio_file_close(h->file);
	assert_int_equal(aio_file_open(h->path, flags, &h->file), 0);
	assert_true(h->file->direct);
	assert_true(h->file->readonly);
	check_read(h, 8192, 65536, 0);

	/* Warm: every page read through the checking fd. */
	buf = h_alloc(h, 1 << 20, 0);
	assert_int_equal(pread(h->vfd, buf, 1 << 20, 0), 1 << 20);
	aio_file_close(h->file);
	assert_int_equal(aio_file_open(h->path, flags, &h->file), 0);
	assert_false(h->file->direct);

	/* Cold, but not of whole blocks. */
	h_fill(h, (1 << 20) - 512, 42);
	h_drop_cache(h);
	aio_file_close(h->file);
	assert_int_equal(aio_file_open(h->path, flags, &h->file), 0);
	assert_false(h->file->direct);

	/* Cold, of whole blocks, but writable: the flag is for readers only. */
	h_fill(h, 1 << 20, 43);
	h_drop_cache(h);
	aio_file_close(h->file);
	assert_int_equal(aio_file_open(h->path, flags & ~AIO_FILE_RDONLY, &h->file), 0);
	assert_false(h->file->direct);
}

/* Caller mistakes fail the request, through ->done, and nothing else. */
static void test_bad_requests(void **state)
{
	struct harness *h = *state;
	struct aio_file *ro = NULL, *rw;
	struct tio t = { 0 };
	uint8_t *buf;

	H_SKIP_IF_UNAVAILABLE(h);
	h_fill(h, 64 << 10, 14);
	buf = h_alloc(h, 4096, 0);
	set_iov(&t, 0, buf, 4096);
	h_req(h, &t, AIO_OP_WRITE, 0, 1);
	t.req.len = 4000; /* not the vector's length */
	assert_int_equal(h_run(h, &t), -EINVAL);

	memset(&t, 0, sizeof(t));
	set_iov(&t, 0, buf, 4096);
	h_req(h, &t, AIO_OP_READ, 0, 1);
	t.req.iovcnt = IOV_MAX + 1;
	assert_int_equal(h_run(h, &t), -EINVAL);

	memset(&t, 0, sizeof(t));
	h_req(h, &t, AIO_OP_READ, 4096, 0);
	assert_int_equal(h_run(h, &t), 0); /* empty: done at once */

	assert_int_equal(aio_file_open(h->path, AIO_FILE_RDONLY, &ro), 0);
	assert_true(ro->readonly);
	rw = h->file;
	h->file = ro;
	assert_int_equal(h_rw(h, AIO_OP_WRITE, 0, buf, 4096, 0), -EBADF);
	assert_int_equal(h_range_op(h, AIO_OP_DISCARD, 0, 4096), -EBADF);
	check_read(h, 4096, 4096, 0);
	h->file = rw;
	aio_file_close(ro);
	h_check_file(h, 64 << 10);
}

static void test_file_open_errors(void **state)
{
	struct harness *h = *state;
	struct aio_file *f = NULL;
	char path[PATH_MAX];
	int fd;

	H_SKIP_IF_UNAVAILABLE(h);
	assert_int_equal(aio_file_open(h->path, AIO_FILE_CREATE | AIO_FILE_EXCL, &f), -EEXIST);
	assert_true(snprintf(path, sizeof(path), "%s/no/such/file", h_test_dir()) > 0);
	assert_int_equal(aio_file_open(path, 0, &f), -ENOENT);
	assert_null(f);
	fd = open(h->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(snprintf(path, sizeof(path), "fd %d", fd) > 0);
	assert_int_equal(aio_file_from_fd(fd, NULL, &f), 0);
	assert_true(f->readonly);
	assert_false(f->direct);
	assert_string_equal(f->path, path);
	aio_file_close(f);
	aio_file_close(NULL);
}

/* ---- engine independent ---- */

static void test_engine_names(void **state)
{
	enum aio_engine e;

	for (e = AIO_ENGINE_AUTO; e <= AIO_ENGINE_SYNC; e++) {
		enum aio_engine back = (enum aio_engine) - 1;

		assert_int_equal(aio_engine_parse(aio_engine_name(e), &back), 0);
		assert_int_equal(back, e);
	}
	assert_string_equal(aio_engine_name(AIO_ENGINE_URING), "io_uring");
	assert_int_equal(aio_engine_parse("native", &e), 0);
	assert_int_equal(e, AIO_ENGINE_LIBAIO);
	assert_int_equal(aio_engine_parse("threads", &e), 0);
	assert_int_equal(e, AIO_ENGINE_SYNC);
	assert_int_equal(aio_engine_parse("bogus", &e), -EINVAL);
}

static void test_auto_engine(void **state)
{
	struct harness *h = h_new(AIO_ENGINE_AUTO);
	struct aio_ctx_opts bad = { .depth = 1u << 20 };
	struct aio_ctx *ctx = NULL;
	char path[PATH_MAX];

	assert_null(h->skip_reason);
	assert_int_not_equal(aio_ctx_engine(h->ctx), AIO_ENGINE_AUTO);
	assert_int_equal(aio_ctx_new(h->loop, &bad, &ctx), -EINVAL);
	assert_null(ctx);
	h_mkdirs(h_test_dir());
	assert_true(snprintf(path, sizeof(path), "%s/test-aio-auto-%d.img", h_test_dir(),
			     (int)getpid()) < (int)sizeof(path));
	h_open(h, path, 0);
	h_fill(h, 8192, 15);
	check_read(h, 100, 5000, 1);
	h_free(h);
}

int main(void)
{
	static const enum aio_engine engines[] = {
		AIO_ENGINE_URING,
		AIO_ENGINE_LIBAIO,
		AIO_ENGINE_SYNC,
	};
	const struct CMUnitTest per_engine[] = {
		cmocka_unit_test_setup_teardown(test_vectored_rw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_rmw_neighbours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_larger_than_bounce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read_at_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eagain_requeues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zeroes_emulated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffered_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffered_offload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_if_cold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_open_errors, setup, teardown),
	};
	const struct CMUnitTest common[] = {
		cmocka_unit_test(test_engine_names),
		cmocka_unit_test(test_auto_engine),
	};
	int failed = 0;

	log_init("test-aio");
	for (size_t i = 0; i < ARRAY_SIZE(engines); i++) {
		cur_engine = engines[i];
		print_message("[ ENGINE   ] %s\n", aio_engine_name(cur_engine));
		failed += cmocka_run_group_tests_name(aio_engine_name(cur_engine), per_engine, NULL,
						      NULL);
	}
	failed += cmocka_run_group_tests_name("aio", common, NULL, NULL);
	return failed ? 1 : 0;
}
