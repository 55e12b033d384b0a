/* SPDX-License-Identifier: MIT */
/*
 * The driver core and the raw driver, through the synchronous facade, on
 * real files under $QTAP_TEST_DIR (default build/tmp: tmpfs may refuse
 * O_DIRECT).  Each I/O test runs on every aio engine, because the raw driver
 * is the engines' first user and they differ in how they complete.
 *
 * Backing-chain loop detection needs a format with a backing file; it is
 * tested with the qcow2 driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
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
#include "driver.h"
#include "sync.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define IMG_SIZE (1 * MiB)

struct fixture {
	char path[PATH_MAX];
	enum aio_engine engine;
	struct drv_image *img;
	struct drv_sync *sync;
	uint8_t *buf;	  /* IMG_SIZE bytes, aligned */
	bool unavailable; /* the engine is missing here (kernel, seccomp) */
};

static const enum aio_engine engines[] = { AIO_ENGINE_URING, AIO_ENGINE_LIBAIO, AIO_ENGINE_SYNC };

static const char *test_dir(void)
{
	const char *dir = getenv("QTAP_TEST_DIR");

	return dir && *dir ? dir : "build/tmp";
}

/* A new sparse file of @size bytes at f->path. */
static void make_file(struct fixture *f, uint64_t size)
{
	static unsigned seq;
	int fd;

	mkdir("build", 0755);
	mkdir(test_dir(), 0755);
	snprintf(f->path, sizeof(f->path), "%s/test-raw.%d.%u.img", test_dir(), (int)getpid(),
		 seq++);
	fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int try_open_image(struct fixture *f, unsigned flags)
{
	struct aio_ctx_opts opts = { .engine = f->engine };
	char spec[PATH_MAX + 8];
	int err;

	snprintf(spec, sizeof(spec), "raw:%s", f->path);
	err = drv_chain_open(spec, flags, &f->img);
	if (err)
		return err;
	err = drv_sync_new(f->img, &opts, &f->sync);
	if (err) {
		drv_image_close(f->img);
		f->img = NULL;
	}
	return err;
}

static void open_image(struct fixture *f, unsigned flags)
{
	assert_int_equal(try_open_image(f, flags), 0);
}

/* cmocka's skip() for the engine tests where the engine does not exist. */
#define SKIP_IF_UNAVAILABLE(f)                                                                     \
	do {                                                                                       \
		if ((f)->unavailable)                                                              \
			skip();                                                                    \
	} while (0)

static void close_image(struct fixture *f)
{
	drv_sync_free(f->sync);
	drv_image_close(f->img);
	f->sync = NULL;
	f->img = NULL;
}

static int setup_engine(void **state, enum aio_engine engine)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int err;

	if (!f)
		return -1;
	f->engine = engine;
	f->buf = buf_alloc(IMG_SIZE + 4096, 4096);
	if (!f->buf)
		return -1;
	memset(f->buf, 0, IMG_SIZE + 4096);
	make_file(f, IMG_SIZE);
	*state = f;
	err = try_open_image(f, 0);
	if (err == -ENOSYS || err == -EPERM || err == -EOPNOTSUPP) {
		print_message("aio engine %s unavailable: %s\n", aio_engine_name(engine),
			      strerror(-err));
		f->unavailable = true;
		return 0;
	}
	return err ? -1 : 0;
}

static int setup_uring(void **state)
{
	return setup_engine(state, engines[0]);
}

static int setup_libaio(void **state)
{
	return setup_engine(state, engines[1]);
}

static int setup_sync(void **state)
{
	return setup_engine(state, engines[2]);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close_image(f);
	unlink(f->path);
	buf_free(f->buf);
	free(f);
	return 0;
}

static void fill(uint8_t *buf, uint64_t len, uint8_t seed)
{
	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static void assert_all(const uint8_t *buf, uint64_t len, uint8_t byte)
{
	for (uint64_t i = 0; i < len; i++) {
		if (buf[i] != byte)
			fail_msg("byte %llu is 0x%02x, expected 0x%02x", (unsigned long long)i,
				 buf[i], byte);
	}
}

/* ---- I/O on every engine ------------------------------------------------ */

static void test_write_then_read_returns_the_data(void **state)
{
	struct fixture *f = *state;
	uint8_t *expect;

	SKIP_IF_UNAVAILABLE(f);
	expect = malloc(64 * KiB);
	assert_non_null(expect);
	fill(expect, 64 * KiB, 3);
	memcpy(f->buf, expect, 64 * KiB);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_WRITE, 128 * KiB, f->buf, 64 * KiB), 0);
	memset(f->buf, 0, 64 * KiB);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 128 * KiB, f->buf, 64 * KiB), 0);
	assert_memory_equal(f->buf, expect, 64 * KiB);

	/* A misaligned buffer still works (lib/aio bounces it). */
	memset(f->buf + 1, 0, 64 * KiB);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 128 * KiB, f->buf + 1, 64 * KiB), 0);
	assert_memory_equal(f->buf + 1, expect, 64 * KiB);
	assert_int_equal(drv_sync_flush(f->sync), 0);
	free(expect);
}

static void test_fua_write_completes(void **state)
{
	struct fixture *f = *state;
	struct iovec iov = { .iov_base = f->buf, .iov_len = 4 * KiB };
	struct drv_req req = {
		.op = DRV_OP_WRITE,
		.flags = DRV_REQ_FUA,
		.offset = 0,
		.len = 4 * KiB,
		.iov = &iov,
		.iovcnt = 1,
	};

	SKIP_IF_UNAVAILABLE(f);
	memset(f->buf, 0x5a, 4 * KiB);
	assert_int_equal(drv_sync_req(f->sync, &req), 0);
	memset(f->buf, 0, 4 * KiB);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 0, f->buf, 4 * KiB), 0);
	assert_all(f->buf, 4 * KiB, 0x5a);
}

static void expect_status(struct fixture *f, uint64_t off, uint64_t len, unsigned flags,
			  uint64_t status_len)
{
	struct drv_status st;

	assert_int_equal(drv_sync_block_status(f->sync, off, len, &st), 0);
	if ((st.flags & (DRV_BS_DATA | DRV_BS_ZERO | DRV_BS_ALLOCATED)) != flags ||
	    st.len != status_len)
		fail_msg("status at %llu: flags %#x len %llu, expected flags %#x len %llu",
			 (unsigned long long)off, st.flags, (unsigned long long)st.len, flags,
			 (unsigned long long)status_len);
}

static void test_discard_reads_zeros_and_reports_a_hole(void **state)
{
	struct fixture *f = *state;

	SKIP_IF_UNAVAILABLE(f);
	memset(f->buf, 0xab, IMG_SIZE);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_WRITE, 0, f->buf, IMG_SIZE), 0);
	assert_int_equal(drv_sync_flush(f->sync), 0);
	assert_int_equal(drv_sync_discard(f->sync, 256 * KiB, 256 * KiB), 0);

	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 0, f->buf, IMG_SIZE), 0);
	assert_all(f->buf, 256 * KiB, 0xab);
	assert_all(f->buf + 256 * KiB, 256 * KiB, 0);
	assert_all(f->buf + 512 * KiB, 512 * KiB, 0xab);

	expect_status(f, 0, IMG_SIZE, DRV_BS_DATA | DRV_BS_ALLOCATED, 256 * KiB);
	expect_status(f, 256 * KiB, IMG_SIZE - 256 * KiB, DRV_BS_ZERO | DRV_BS_ALLOCATED,
		      256 * KiB);
	expect_status(f, 512 * KiB, IMG_SIZE - 512 * KiB, DRV_BS_DATA | DRV_BS_ALLOCATED,
		      512 * KiB);
	/* Clamped to the request. */
	expect_status(f, 0, 64 * KiB, DRV_BS_DATA | DRV_BS_ALLOCATED, 64 * KiB);
	expect_status(f, 300 * KiB, 4 * KiB, DRV_BS_ZERO | DRV_BS_ALLOCATED, 4 * KiB);
}

static void test_write_zeroes_reads_zeros(void **state)
{
	struct fixture *f = *state;

	SKIP_IF_UNAVAILABLE(f);
	memset(f->buf, 0xcd, 256 * KiB);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_WRITE, 0, f->buf, 256 * KiB), 0);
	assert_int_equal(drv_sync_write_zeroes(f->sync, 0, 64 * KiB, 0), 0);
	assert_int_equal(drv_sync_write_zeroes(f->sync, 128 * KiB, 64 * KiB,
					       DRV_REQ_MAY_UNMAP | DRV_REQ_FUA),
			 0);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 0, f->buf, 256 * KiB), 0);
	assert_all(f->buf, 64 * KiB, 0);
	assert_all(f->buf + 64 * KiB, 64 * KiB, 0xcd);
	assert_all(f->buf + 128 * KiB, 64 * KiB, 0);
	assert_all(f->buf + 192 * KiB, 64 * KiB, 0xcd);
}

/* Fails every request of type *@opaque with -EIO. */
static int fail_op(void *opaque, const struct aio_req *req)
{
	return req->op == *(const enum aio_op *)opaque ? -EIO : 0;
}

static void test_io_errors_reach_the_caller(void **state)
{
	struct fixture *f = *state;
	struct aio_ctx *aio;
	struct iovec iov = { .iov_base = f->buf, .iov_len = 4 * KiB };
	struct drv_req fua = {
		.op = DRV_OP_WRITE,
		.flags = DRV_REQ_FUA,
		.len = 4 * KiB,
		.iov = &iov,
		.iovcnt = 1,
	};
	enum aio_op op = AIO_OP_READ;

	SKIP_IF_UNAVAILABLE(f);
	aio = drv_sync_queue(f->sync)->aio;
	aio_ctx_set_fault(aio, fail_op, &op);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 0, f->buf, 4 * KiB), -EIO);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_WRITE, 0, f->buf, 4 * KiB), 0);
	/* A FUA write whose flush fails has not completed. */
	op = AIO_OP_FSYNC;
	memset(f->buf, 0, 4 * KiB);
	assert_int_equal(drv_sync_req(f->sync, &fua), -EIO);
	assert_int_equal(drv_sync_flush(f->sync), -EIO);
	aio_ctx_set_fault(aio, NULL, NULL);
	assert_int_equal(drv_sync_req(f->sync, &fua), 0);
}

/* ---- block status against a file shaped outside the driver -------------- */

static void pwrite_at(const char *path, uint64_t off, uint64_t len)
{
	uint8_t data[8192];
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0 && len <= sizeof(data));
	memset(data, 0x11, sizeof(data));
	assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void test_block_status_follows_holes_in_the_file(void **state)
{
	static const struct {
		uint64_t off, len;
		unsigned flags;
	} want[] = {
		{ 0, 64 * KiB, DRV_BS_ZERO | DRV_BS_ALLOCATED },
		{ 64 * KiB, 4 * KiB, DRV_BS_DATA | DRV_BS_ALLOCATED },
		{ 68 * KiB, 444 * KiB, DRV_BS_ZERO | DRV_BS_ALLOCATED },
		{ 512 * KiB, 8 * KiB, DRV_BS_DATA | DRV_BS_ALLOCATED },
		{ 520 * KiB, IMG_SIZE - 520 * KiB, DRV_BS_ZERO | DRV_BS_ALLOCATED },
	};
	struct fixture *f = *state;
	uint64_t off = 0;
	unsigned i;

	SKIP_IF_UNAVAILABLE(f);
	close_image(f);
	pwrite_at(f->path, 64 * KiB, 4 * KiB);
	pwrite_at(f->path, 512 * KiB, 8 * KiB);
	open_image(f, DRV_OPEN_RDONLY);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(off, want[i].off);
		expect_status(f, off, IMG_SIZE - off, want[i].flags, want[i].len);
		off += want[i].len;
	}
	assert_int_equal(off, IMG_SIZE);
}

/* ---- the core's checks --------------------------------------------------- */

static void test_read_only_refuses_changes(void **state)
{
	struct fixture *f = *state;

	SKIP_IF_UNAVAILABLE(f);
	close_image(f);
	open_image(f, DRV_OPEN_RDONLY);
	memset(f->buf, 0, 4 * KiB);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_WRITE, 0, f->buf, 4 * KiB), -EROFS);
	assert_int_equal(drv_sync_discard(f->sync, 0, 4 * KiB), -EROFS);
	assert_int_equal(drv_sync_write_zeroes(f->sync, 0, 4 * KiB, 0), -EROFS);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 0, f->buf, 4 * KiB), 0);
	assert_int_equal(drv_sync_flush(f->sync), 0);
}

static void test_out_of_bounds_and_misaligned_are_einval(void **state)
{
	struct fixture *f = *state;
	struct iovec iov = { .iov_base = f->buf, .iov_len = 4 * KiB };
	struct drv_req short_iov = {
		.op = DRV_OP_WRITE, .offset = 0, .len = 8 * KiB, .iov = &iov, .iovcnt = 1
	};
	struct drv_status st;

	SKIP_IF_UNAVAILABLE(f);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, IMG_SIZE, f->buf, 4 * KiB), -EINVAL);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, IMG_SIZE - 4 * KiB, f->buf, 8 * KiB),
			 -EINVAL);
	assert_int_equal(drv_sync_discard(f->sync, UINT64_MAX - 511, 1024), -EINVAL);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 1, f->buf, 512), -EINVAL);
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, 0, f->buf, 100), -EINVAL);
	assert_int_equal(drv_sync_req(f->sync, &short_iov), -EINVAL);
	assert_int_equal(drv_sync_block_status(f->sync, 0, 0, &st), -EINVAL);
	/* The last block is in bounds. */
	assert_int_equal(drv_sync_rw(f->sync, DRV_OP_READ, IMG_SIZE - 512, f->buf, 512), 0);
}

static void test_unknown_op_is_eopnotsupp(void **state)
{
	struct fixture *f = *state;
	struct drv_req req = { .op = (enum drv_op)99, .offset = 0, .len = 512 };

	SKIP_IF_UNAVAILABLE(f);
	assert_int_equal(drv_sync_req(f->sync, &req), -EOPNOTSUPP);
}

/* ---- no I/O --------------------------------------------------------------- */

static void test_spec_parsing(void **state)
{
	const struct drv_ops *ops = NULL;
	const char *path = NULL;

	assert_int_equal(drv_parse_spec("raw:/a/b", &ops, &path), 0);
	assert_ptr_equal(ops, drv_find("raw"));
	assert_string_equal(path, "/a/b");
	assert_int_equal(drv_parse_spec("aio:/dev/sdb", &ops, &path), 0);
	assert_ptr_equal(ops, drv_find("raw"));
	assert_string_equal(path, "/dev/sdb");
	assert_int_equal(drv_parse_spec("raw:x:y", &ops, &path), 0);
	assert_string_equal(path, "x:y");

	assert_int_equal(drv_parse_spec("/no/colon", &ops, &path), -EINVAL);
	assert_int_equal(drv_parse_spec(":/empty/type", &ops, &path), -EINVAL);
	assert_int_equal(drv_parse_spec("raw:", &ops, &path), -EINVAL);
	assert_int_equal(drv_parse_spec("vhd:/x", &ops, &path), -ENOENT);
	assert_int_equal(drv_parse_spec("a-type-name-longer-than-any-driver-has:/x", &ops, &path),
			 -ENOENT);
	assert_null(drv_find("nosuch"));
}

static void test_registry_is_null_terminated_with_required_ops(void **state)
{
	unsigned i;

	for (i = 0; drv_registry[i]; i++) {
		assert_non_null(drv_registry[i]->name);
		assert_non_null(drv_registry[i]->open);
		assert_non_null(drv_registry[i]->close);
		assert_non_null(drv_registry[i]->read);
		assert_non_null(drv_registry[i]->flush);
		assert_ptr_equal(drv_find(drv_registry[i]->name), drv_registry[i]);
	}
	assert_true(i > 0);
}

static void test_open_missing_file_fails(void **state)
{
	struct drv_image *img = NULL;

	assert_int_equal(drv_chain_open("raw:/nonexistent/qtap/image", 0, &img), -ENOENT);
	assert_null(img);
	assert_int_equal(drv_chain_open("nosuch:/x", 0, &img), -ENOENT);
	drv_image_close(NULL);
}

static void test_chain_of_one_raw_image(void **state)
{
	struct fixture f = { .engine = AIO_ENGINE_SYNC };
	struct drv_queue q = { .index = 1 };

	make_file(&f, 3 * 512 + 100);
	open_image(&f, DRV_OPEN_BUFFERED);
	assert_null(f.img->backing);
	assert_int_equal(f.img->depth, 0);
	assert_int_equal(f.img->size_bytes, 4 * 512); /* the last sector whole, as QEMU */
	assert_int_equal(f.img->block_bytes, 512);
	assert_true(f.img->phys_block_bytes >= f.img->block_bytes);
	assert_int_equal(drv_chain_req_priv_bytes(f.img), drv_find("raw")->req_priv_size);
	/* Queues are set up once, and their indexes must be 0..n-1. */
	assert_int_equal(drv_queues_init(f.img, drv_sync_queue(f.sync), 1), -EINVAL);
	drv_queues_fini(f.img);
	assert_int_equal(drv_queues_init(f.img, &q, 1), -EINVAL);
	assert_int_equal(drv_queues_init(f.img, drv_sync_queue(f.sync), 1), 0);
	close_image(&f);
	unlink(f.path);
}

/* A file ending inside a sector: its bytes, then zeros to the sector's end (QEMU's view). */
static void test_partial_last_sector_reads_zeros_past_eof(void **state)
{
	struct fixture f = { .engine = AIO_ENGINE_SYNC };
	uint8_t buf[1024];
	unsigned i;
	int fd;

	make_file(&f, 0);
	fd = open(f.path, O_WRONLY);
	assert_true(fd >= 0);
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(pwrite(fd, buf, 1000, 0), 1000);
	close(fd);
	open_image(&f, DRV_OPEN_BUFFERED | DRV_OPEN_RDONLY);
	assert_int_equal(f.img->size_bytes, 1024);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(drv_sync_rw(f.sync, DRV_OP_READ, 0, buf, 1024), 0);
	for (i = 0; i < 1024; i++)
		assert_int_equal(buf[i], i < 1000 ? 0xa5 : 0);
	close_image(&f);
	unlink(f.path);
}

static void create_with(const char *path, uint64_t size, struct drv_opt *opts, unsigned nr,
			int expect)
{
	struct drv_create_args args = { .size_bytes = size, .opts = opts, .nr_opts = nr };

	assert_int_equal(drv_find("raw")->create(path, &args), expect);
}

static void test_create_sizes_and_options(void **state)
{
	struct fixture f = { .engine = AIO_ENGINE_SYNC };
	struct drv_opt bad_key = { .key = "cluster_size", .value = "64k" };
	struct drv_opt bad_value = { .key = "preallocation", .value = "metadata" };
	struct drv_opt falloc = { .key = "preallocation", .value = "falloc" };
	struct drv_opt full = { .key = "preallocation", .value = "full" };
	struct stat st;

	make_file(&f, 0);
	create_with(f.path, 1000, NULL, 0, 0);
	assert_int_equal(stat(f.path, &st), 0);
	assert_int_equal(st.st_size, 1024); /* rounded up to 512, as qemu-img */
	create_with(f.path, MiB, &bad_key, 1, -EINVAL);
	create_with(f.path, MiB, &bad_value, 1, -EINVAL);
	create_with(f.path, MiB, &falloc, 1, 0);
	assert_true(falloc.used);
	assert_int_equal(stat(f.path, &st), 0);
	assert_int_equal(st.st_size, MiB);
	assert_true(st.st_blocks * 512 >= (off_t)MiB);
	create_with(f.path, 256 * KiB, &full, 1, 0);
	open_image(&f, DRV_OPEN_RDONLY);
	expect_status(&f, 0, 256 * KiB, DRV_BS_DATA | DRV_BS_ALLOCATED, 256 * KiB);
	close_image(&f);
	unlink(f.path);
}

#define ENGINE_TESTS(setup)                                                                        \
	cmocka_unit_test_setup_teardown(test_write_then_read_returns_the_data, setup, teardown),   \
		cmocka_unit_test_setup_teardown(test_fua_write_completes, setup, teardown),        \
		cmocka_unit_test_setup_teardown(test_discard_reads_zeros_and_reports_a_hole,       \
						setup, teardown),                                  \
		cmocka_unit_test_setup_teardown(test_write_zeroes_reads_zeros, setup, teardown),   \
		cmocka_unit_test_setup_teardown(test_io_errors_reach_the_caller, setup, teardown), \
		cmocka_unit_test_setup_teardown(test_block_status_follows_holes_in_the_file,       \
						setup, teardown),                                  \
		cmocka_unit_test_setup_teardown(test_read_only_refuses_changes, setup, teardown),  \
		cmocka_unit_test_setup_teardown(test_out_of_bounds_and_misaligned_are_einval,      \
						setup, teardown),                                  \
		cmocka_unit_test_setup_teardown(test_unknown_op_is_eopnotsupp, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_parsing),
		cmocka_unit_test(test_registry_is_null_terminated_with_required_ops),
		cmocka_unit_test(test_open_missing_file_fails),
		cmocka_unit_test(test_chain_of_one_raw_image),
		cmocka_unit_test(test_partial_last_sector_reads_zeros_past_eof),
		cmocka_unit_test(test_create_sizes_and_options),
		ENGINE_TESTS(setup_uring),
		ENGINE_TESTS(setup_libaio),
		ENGINE_TESTS(setup_sync),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
