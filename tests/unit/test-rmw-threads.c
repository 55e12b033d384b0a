// SPDX-License-Identifier: MIT
/*
 * Sub-block writes (tapdisk/rmw.c) on a real vbd over a raw file, two queue
 * threads: many writes of a few bytes each into the same blocks at once,
 * from both queues, must all land (the partial-block lock table keeps
 * their read-modify-writes apart); zero writes with partial edges zero
 * exactly their bytes; a fast zero with a partial block is refused at
 * once and changes nothing.  (Named *-threads so that make check-tsan
 * runs it.)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "tapdisk/rmw.h"
#include "tapdisk/vbd.h"

#define DISK_BYTES (1u << 20)
#define NR_WRITES 96u

struct fixture {
	char path[4096];
	struct td_vbd *vbd;
	struct td_blocklock *locks;
	uint32_t block;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned done;
	int first_err;
};

struct job {
	struct fixture *f;
	struct td_rmw rmw;
	uint8_t *buf; /* the enclosing blocks, then two blocks of scratch */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *dir = getenv("QTAP_TEST_DIR");
	uint8_t *pattern = malloc(DISK_BYTES);
	int fd;

	assert_non_null(f);
	assert_non_null(pattern);
	snprintf(f->path, sizeof(f->path), "%s/test-rmw-threads.%d.raw", dir ? dir : "/var/tmp",
		 (int)getpid());
	fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	memset(pattern, 0x5a, DISK_BYTES);
	assert_int_equal(pwrite(fd, pattern, DISK_BYTES, 0), DISK_BYTES);
	close(fd);
	free(pattern);
	assert_int_equal(td_blocklock_new(&f->locks), 0);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vbd_close(f->vbd);
	td_blocklock_free(f->locks);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	unlink(f->path);
	free(f);
	return 0;
}

static void job_done(struct td_rmw *rmw, int err)
{
	struct job *j = rmw->opaque;
	struct fixture *f = j->f;

	pthread_mutex_lock(&f->lock);
	if (err && !f->first_err)
		f->first_err = err;
	f->done++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

struct batch {
	struct job *jobs;
	unsigned first, count, step;
};

/* On a queue thread: start every @step-th job from @first. */
static int start_jobs(void *opaque)
{
	struct batch *b = opaque;
	unsigned i;

	for (i = b->first; i < b->count; i += b->step)
		td_rmw_start(&b->jobs[i].rmw);
	return 0;
}

static void wait_done(struct fixture *f, unsigned n)
{
	pthread_mutex_lock(&f->lock);
	while (f->done < n)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

static void job_init(struct fixture *f, struct job *j, unsigned qi, enum td_op op, unsigned flags,
		     uint64_t off, uint64_t len, uint8_t byte)
{
	uint64_t span = td_rmw_span_bytes(off, len, f->block);

	j->f = f;
	j->buf = buf_alloc(span + 2 * f->block, 4096);
	assert_non_null(j->buf);
	memset(j->buf, 0xee, span + 2 * f->block); /* garbage around the data */
	memset(j->buf + (off - td_rmw_start_bytes(off, f->block)), byte, len);
	j->rmw = (struct td_rmw){
		.q = vbd_queue(f->vbd, qi),
		.locks = f->locks,
		.op = op,
		.flags = flags,
		.offset = off,
		.len = len,
		.block_bytes = f->block,
		.buf = op == TD_OP_WRITE ? j->buf : NULL,
		.scratch = j->buf + span,
		.done = job_done,
		.opaque = j,
	};
}

static void read_disk(struct fixture *f, uint8_t *out)
{
	int fd = open(f->path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, out, DISK_BYTES, 0), DISK_BYTES);
	close(fd);
}

/* Run @n jobs, half started on each queue thread, all at once. */
static void run_jobs(struct fixture *f, struct job *jobs, unsigned n)
{
	struct batch b0 = { jobs, 0, n, 2 }, b1 = { jobs, 1, n, 2 };

	f->done = 0;
	f->first_err = 0;
	assert_int_equal(td_queue_run(vbd_queue(f->vbd, 0), start_jobs, &b0), 0);
	assert_int_equal(td_queue_run(vbd_queue(f->vbd, 1), start_jobs, &b1), 0);
	wait_done(f, n);
}

static void open_vbd(struct fixture *f)
{
	struct td_vbd_opts opts = { .nr_queues = 2 };
	struct td_vbd_info info;
	char spec[4200];

	snprintf(spec, sizeof(spec), "raw:%s", f->path);
	assert_int_equal(vbd_open(spec, &opts, &f->vbd), 0);
	vbd_get_info(f->vbd, &info);
	f->block = info.block_bytes;
}

static void test_concurrent_sub_block_writes(void **state)
{
	struct fixture *f = *state;
	struct job *jobs = calloc(NR_WRITES, sizeof(*jobs));
	uint8_t *want = malloc(DISK_BYTES), *got = malloc(DISK_BYTES);
	unsigned i;

	open_vbd(f);
	memset(want, 0x5a, DISK_BYTES);
	for (i = 0; i < NR_WRITES; i++) {
		/* 12 bytes apart, 7 long: up to 40 writes share a 512-byte block */
		uint64_t off = 1000 + 12ull * i + (i % 3 ? 0 : 4096 * 3);
		uint64_t len = i % 5 ? 7 : 3 * (uint64_t)f->block; /* some span blocks */

		if (len > 7)
			off = 200000 + (uint64_t)i * 4 * f->block + 100;
		job_init(f, &jobs[i], i % 2, TD_OP_WRITE, i % 7 ? 0 : TD_REQ_FUA, off, len,
			 (uint8_t)(i + 1));
		memset(want + off, i + 1, len);
	}
	run_jobs(f, jobs, NR_WRITES);
	assert_int_equal(f->first_err, 0);
	read_disk(f, got);
	for (i = 0; i < DISK_BYTES; i++) {
		if (got[i] != want[i])
			fail_msg("byte %u is %#x, wanted %#x", i, got[i], want[i]);
	}
	for (i = 0; i < NR_WRITES; i++)
		buf_free(jobs[i].buf);
	free(jobs);
	free(want);
	free(got);
}

static void test_zero_with_partial_edges(void **state)
{
	struct fixture *f = *state;
	struct job jobs[3];
	uint8_t *got = malloc(DISK_BYTES);
	uint64_t b = 0, i;

	open_vbd(f);
	b = f->block;
	/* partial head and tail, whole blocks between; within one block; and
	 * a fast zero with a partial block, refused before it returns */
	job_init(f, &jobs[0], 0, TD_OP_WRITE_ZEROES, TD_REQ_MAY_UNMAP, 10 * b + 3, 5 * b, 0);
	job_init(f, &jobs[1], 1, TD_OP_WRITE_ZEROES, 0, 30 * b + 100, 50, 0);
	run_jobs(f, jobs, 2);
	assert_int_equal(f->first_err, 0);
	job_init(f, &jobs[2], 0, TD_OP_WRITE_ZEROES, TD_REQ_NO_FALLBACK, 40 * b + 1, b, 0);
	run_jobs(f, &jobs[2], 1);
	assert_int_equal(f->first_err, -EOPNOTSUPP);
	read_disk(f, got);
	for (i = 0; i < DISK_BYTES; i++) {
		bool zero = (i >= 10 * b + 3 && i < 15 * b + 3) ||
			    (i >= 30 * b + 100 && i < 30 * b + 150);

		if (got[i] != (zero ? 0 : 0x5a))
			fail_msg("byte %llu is %#x", (unsigned long long)i, got[i]);
	}
	for (i = 0; i < 3; i++)
		buf_free(jobs[i].buf);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_concurrent_sub_block_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_with_partial_edges, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
