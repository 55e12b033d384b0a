// SPDX-License-Identifier: MIT
/*
 * The write recorder (lib/aio-rec.h): what lib/aio and the qcow2 driver's
 * blocking writes put in the log, in order, on each engine; the starting
 * copy of a file; guest events; and nothing at all while none is installed.
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

#include "aio-rec.h"
#include "aio.h"
#include "evloop.h"
#include "qcow2/sync-io.h"

#define FILE_BYTES 65536u

struct rec_test {
	char dir[PATH_MAX], path[PATH_MAX + 32], log[PATH_MAX + 32];
	struct evloop *loop;
	struct aio_ctx *ctx;
	struct aio_file *file;
	int pending;
};

static void done_fn(struct aio_req *req, int err)
{
	struct rec_test *t = req->opaque;

	assert_int_equal(err, 0);
	t->pending--;
}

static void run(struct rec_test *t, struct aio_req *req)
{
	req->file = t->file;
	req->done = done_fn;
	req->opaque = t;
	t->pending++;
	aio_submit(t->ctx, req);
	while (t->pending)
		assert_true(evloop_run_once(t->loop, 1000000000) >= 0 || errno == EINTR);
}

static int setup_engine(struct rec_test *t, enum aio_engine engine)
{
	const char *base = getenv("QTAP_TEST_DIR");
	struct aio_ctx_opts o = { .engine = engine };
	uint8_t fill[FILE_BYTES];
	int fd;

	snprintf(t->dir, sizeof(t->dir), "%s", base && *base ? base : "build/tmp");
	mkdir(t->dir, 0755);
	snprintf(t->path, sizeof(t->path), "%s/aio-rec.%d.img", t->dir, (int)getpid());
	snprintf(t->log, sizeof(t->log), "%s/aio-rec.%d.log", t->dir, (int)getpid());
	memset(fill, 0x5a, sizeof(fill));
	fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, fill, sizeof(fill)), (ssize_t)sizeof(fill));
	close(fd);
	assert_int_equal(evloop_new(&t->loop), 0);
	if (aio_ctx_new(t->loop, &o, &t->ctx)) {
		evloop_free(t->loop);
		return -1;
	}
	assert_int_equal(aio_file_open(t->path, 0, &t->file), 0);
	return 0;
}

static void teardown(struct rec_test *t)
{
	char copy[PATH_MAX + 48];

	aio_file_close(t->file);
	aio_ctx_free(t->ctx);
	evloop_free(t->loop);
	snprintf(copy, sizeof(copy), "%s.0", t->log);
	unlink(copy);
	unlink(t->log);
	unlink(t->path);
}

/* The log's records, in order; data pointers into *buf (freed by the caller). */
static unsigned read_log(const char *log, struct aio_rec_hdr *out, const uint8_t **data,
			 unsigned max, uint8_t **buf)
{
	FILE *f = fopen(log, "rb");
	long size;
	unsigned n = 0;
	size_t off = 0;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	*buf = malloc((size_t)size + 1);
	assert_non_null(*buf);
	assert_int_equal(fread(*buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	while (off < (size_t)size) {
		assert_true(n < max);
		memcpy(&out[n], *buf + off, sizeof(out[n]));
		assert_int_equal(out[n].magic, AIO_REC_MAGIC);
		data[n] = *buf + off + sizeof(out[n]);
		off += sizeof(out[n]) + out[n].data_len;
		n++;
	}
	assert_int_equal(off, (size_t)size);
	return n;
}

static void check_engine(enum aio_engine engine)
{
	struct rec_test t = { .pending = 0 };
	struct aio_rec *rec;
	struct aio_rec_hdr hall[20], *h = hall + 1;
	const uint8_t *dall[20], **data = dall + 1;
	uint8_t *buf, *wbuf = aligned_alloc(4096, 8192), copy[FILE_BYTES];
	struct iovec iov = { wbuf, 8192 };
	struct aio_req w = {
		.op = AIO_OP_WRITE, .offset = 4096, .len = 8192, .iov = &iov, .iovcnt = 1
	};
	struct aio_req s = { .op = AIO_OP_FSYNC }, z = { .op = AIO_OP_WRITE_ZEROES };
	char copy_path[PATH_MAX + 48];
	uint64_t gid;
	unsigned n;
	int fd;

	if (setup_engine(&t, engine)) {
		fprintf(stderr, "%s is not available here: not tested\n", aio_engine_name(engine));
		free(wbuf);
		return;
	}
	memset(wbuf, 0xc3, 8192);

	/* nothing is recorded while no recorder is installed */
	run(&t, &s);
	assert_int_equal(s.rec_id, 0);

	assert_int_equal(aio_rec_new(t.log, &rec), 0);
	aio_rec_install(rec);
	gid = aio_rec_guest(rec, AIO_REC_G_WRITE, AIO_REC_F_FUA, 0, 8192, &iov, 1);
	run(&t, &w);
	run(&t, &s);
	z.offset = 32768;
	z.len = 4096;
	run(&t, &z);
	assert_int_equal(qcow2_pwrite(t.file, 100, "abc", 3), 0);
	assert_int_equal(qcow2_fsync(t.file), 0);
	aio_rec_guest_done(rec, gid, 0);
	assert_int_equal(aio_rec_free(rec), 0);
	assert_null(aio_rec_active);

	n = read_log(t.log, hall, dall, 20, &buf);
	assert_int_equal(n, 14);
	/* first, the process that recorded */
	assert_int_equal(hall[0].type, AIO_REC_START);
	assert_int_equal(hall[0].data_len, strlen("test-aio-rec"));
	assert_memory_equal(dall[0], "test-aio-rec", hall[0].data_len);
	n--;
	assert_int_equal(h[0].type, AIO_REC_G_WRITE);
	assert_int_equal(h[0].flags, AIO_REC_F_FUA);
	assert_int_equal(h[0].data_len, 8192);
	assert_int_equal(h[1].type, AIO_REC_FILE); /* named when first written */
	assert_memory_equal(data[1], t.path, strlen(t.path));
	assert_int_equal(h[2].type, AIO_REC_WRITE);
	assert_int_equal(h[2].offset, 4096);
	assert_int_equal(h[2].len, 8192);
	assert_memory_equal(data[2], wbuf, 8192);
	assert_int_equal(h[3].type, AIO_REC_DONE);
	assert_int_equal(h[3].id, h[2].id);
	assert_int_equal(h[4].type, AIO_REC_FSYNC);
	assert_int_equal(h[5].type, AIO_REC_DONE);
	assert_int_equal(h[5].id, h[4].id);
	assert_int_equal(h[6].type, AIO_REC_ZERO);
	assert_int_equal(h[6].offset, 32768);
	assert_int_equal(h[6].len, 4096);
	assert_int_equal(h[6].data_len, 0);
	assert_int_equal(h[7].type, AIO_REC_DONE);
	assert_int_equal(h[8].type, AIO_REC_WRITE); /* the blocking write: its bytes only */
	assert_int_equal(h[8].offset, 100);
	assert_int_equal(h[8].len, 3);
	assert_memory_equal(data[8], "abc", 3);
	assert_int_equal(h[9].type, AIO_REC_DONE);
	assert_int_equal(h[10].type, AIO_REC_FSYNC);
	assert_int_equal(h[11].type, AIO_REC_DONE);
	assert_int_equal(h[12].type, AIO_REC_G_DONE);
	assert_int_equal(h[12].id, gid);
	for (unsigned i = 1; i < n; i++)
		assert_true(h[i].type == AIO_REC_DONE || h[i].type == AIO_REC_G_DONE ||
			    h[i].type == AIO_REC_FILE || h[i].id > h[0].id);

	/* the starting copy holds the file as it was before the first write */
	snprintf(copy_path, sizeof(copy_path), "%s.0", t.log);
	fd = open(copy_path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, copy, sizeof(copy)), (ssize_t)sizeof(copy));
	close(fd);
	for (unsigned i = 0; i < FILE_BYTES; i++)
		assert_int_equal(copy[i], 0x5a);
	free(buf);

	/* another recorder adds to the log: the file keeps its number, the
	 * ids go on, a truncation is logged */
	assert_int_equal(aio_rec_append(t.log, &rec), 0);
	aio_rec_install(rec);
	assert_int_equal(qcow2_ftruncate(t.file, FILE_BYTES / 2), 0);
	assert_int_equal(aio_rec_free(rec), 0);
	n = read_log(t.log, hall, dall, 20, &buf);
	assert_int_equal(n, 17);
	assert_int_equal(hall[14].type, AIO_REC_START);
	assert_int_equal(hall[15].type, AIO_REC_TRUNC);
	assert_int_equal(hall[15].file, 0);
	assert_int_equal(hall[15].offset, FILE_BYTES / 2);
	assert_true(hall[15].id > hall[13].id);
	assert_int_equal(hall[16].type, AIO_REC_DONE);
	assert_int_equal(hall[16].id, hall[15].id);
	free(buf);
	/* not a log: refused */
	assert_int_equal(aio_rec_append(t.path, &rec), -EINVAL);
	free(wbuf);
	teardown(&t);
}

static void test_sync(void **state)
{
	check_engine(AIO_ENGINE_SYNC);
}

static void test_libaio(void **state)
{
	check_engine(AIO_ENGINE_LIBAIO);
}

static void test_uring(void **state)
{
	check_engine(AIO_ENGINE_URING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_libaio),
		cmocka_unit_test(test_uring),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
