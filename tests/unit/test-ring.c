// SPDX-License-Identifier: MIT
/*
 * The blkif ring engine end to end in one process: tap-front's frontend
 * (tools/tap-front/front.h, a separate implementation of the other end)
 * over the local transport, attached with td_blkif_connect to a real vbd
 * on a raw file, driven by tap-front's verified load.  Every ABI, indirect
 * requests, multi-page rings, two queues; every hostile mode; the slot
 * bytes a response must leave zero; refused attachments.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "checked.h"
#include "qcow2-test-util.h"
#include "ringshm.h"
#include "tapdisk/blkif.h"
#include "tapdisk/vbd.h"
#include "tools/tap-front/engine.h"
#include "tools/tap-front/front.h"
#include "tools/tap-front/load.h"

#define DISK_BYTES (16ull << 20)

struct rig {
	struct td_vbd *vbd;
	struct tf_dev *dev;
	struct td_blkif *blkif;
	struct tf_load_conf load;
	struct tf_worker w[TD_BLKIF_MAX_QUEUES];
	struct tf_qstats sum;
};

static const char *disk_path(void)
{
	return qt_path("disk.raw");
}

static void make_disk(void)
{
	int fd = open(disk_path(), O_RDWR | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)DISK_BYTES), 0);
	close(fd);
}

static void rig_open(struct rig *r, unsigned queues, bool readonly)
{
	struct td_vbd_opts o = { .nr_queues = queues, .readonly = readonly };
	char spec[PATH_MAX + 8];

	memset(r, 0, sizeof(*r));
	make_disk();
	snprintf(spec, sizeof(spec), "raw:%s", disk_path());
	assert_int_equal(vbd_open(spec, &o, &r->vbd), 0);
}

/* The attach message's content, with fds of our own (the blkif takes them). */
static void conf_from(struct tf_dev *dev, const struct tf_conf *fc, struct td_blkif_conf *c)
{
	td_blkif_conf_init(c);
	c->kind = TD_BLKIF_LOCAL;
	c->abi = fc->abi;
	c->order = fc->order;
	c->nr_queues = fc->nr_queues;
	c->memfd = dup(tf_dev_memfd(dev));
	for (unsigned q = 0; q < fc->nr_queues; q++) {
		struct tf_queue *fq = tf_dev_queue(dev, q);

		memcpy(c->refs[q], tf_queue_ring_refs(fq), sizeof(c->refs[q]));
		c->kick_fds[q] = dup(tf_queue_kick_fd(fq));
		c->irq_fds[q] = dup(tf_queue_irq_fd(fq));
	}
}

static int rig_attach(struct rig *r, const struct tf_conf *fc)
{
	struct td_blkif_conf c;
	char why[256];

	assert_int_equal(tf_dev_new(fc, &r->dev), 0);
	conf_from(r->dev, fc, &c);
	return td_blkif_connect(r->vbd, &c, &r->blkif, why, sizeof(why));
}

static void rig_close(struct rig *r)
{
	td_blkif_disconnect(r->blkif);
	tf_dev_free(r->dev);
	vbd_close(r->vbd);
}

static void *worker_thread(void *arg)
{
	struct tf_worker *w = arg;
	int err = w->conf->hostile == TF_HOSTILE_PROD && w->index == 0 ? tf_hostile_prod(w)
								       : tf_worker_run(w);

	if (err)
		w->st.protocol_error = true;
	return NULL;
}

/* Run @r->load on every queue of @r->dev, a thread each; sums into r->sum. */
static void rig_run(struct rig *r)
{
	pthread_t t[TD_BLKIF_MAX_QUEUES];
	unsigned n = r->load.nr_queues;

	r->load.disk_bytes = DISK_BYTES;
	if (!r->load.span)
		r->load.span = DISK_BYTES;
	for (unsigned i = 0; i < n; i++) {
		struct tf_worker *w = &r->w[i];

		*w = (struct tf_worker){ .conf = &r->load,
					 .index = i,
					 .eng = &tf_ring_engine,
					 .ctx = tf_dev_queue(r->dev, i),
					 .ring = tf_dev_queue(r->dev, i) };
		assert_int_equal(tf_worker_init(w), 0);
		if (r->load.hostile)
			assert_int_equal(tf_hostile_start(w), 0);
	}
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker_thread, &r->w[i]), 0);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		tf_hostile_stop(&r->w[i]);
		tf_stats_add(&r->sum, &r->w[i].st);
		tf_worker_fini(&r->w[i]);
	}
}

static void expect_clean(const struct rig *r)
{
	assert_false(r->sum.protocol_error);
	assert_int_equal(r->sum.io_errors, 0);
	assert_int_equal(r->sum.verify_errors, 0);
	assert_int_equal(r->sum.hostile.unexpected, 0);
}

/* A verified random load with @fc's frontend. */
static void verified_run(const struct tf_conf *fc, uint64_t bs, uint64_t ops)
{
	struct rig r;

	rig_open(&r, fc->nr_queues, false);
	assert_int_equal(rig_attach(&r, fc), 0);
	r.load = (struct tf_load_conf){ .mix = TF_MIX_RW,
					.random = true,
					.bs = bs,
					.depth = fc->depth,
					.nr_queues = fc->nr_queues,
					.ops = ops,
					.verify = true,
					.seed = 42,
					.flush = true };
	rig_run(&r);
	expect_clean(&r);
	assert_true(r.sum.verified > 0);
	assert_int_equal(r.sum.ops, ops);
	rig_close(&r);
}

static void test_abi_x86_64(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_64,
				    .nr_queues = 1,
				    .depth = 8,
				    .max_bytes = 8192,
				    .sub_page = true };

	verified_run(&fc, 8192, 3000);
}

static void test_abi_x86_32(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_32,
				    .nr_queues = 1,
				    .depth = 8,
				    .max_bytes = 8192,
				    .sub_page = true };

	verified_run(&fc, 8192, 3000);
}

static void test_abi_native_big_direct(void **state)
{
	/* 11 full segments: the largest direct request */
	const struct tf_conf fc = {
		.abi = RING_ABI_NATIVE, .nr_queues = 1, .depth = 4, .max_bytes = 11 * 4096
	};

	verified_run(&fc, 11 * 4096, 1000);
}

static void test_indirect_multipage(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_32,
				    .order = 2,
				    .nr_queues = 1,
				    .depth = 16,
				    .max_bytes = 64 * 1024,
				    .indirect_segs = 32,
				    .sub_page = true };

	verified_run(&fc, 64 * 1024, 1000);
}

static void test_two_queues_order4(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .order = 4, .nr_queues = 2, .depth = 64, .max_bytes = 4096
	};

	verified_run(&fc, 4096, 6000);
}

/* ---- hostile -------------------------------------------------------------- */

static void hostile_run(enum tf_hostile mode, unsigned queues, struct rig *r)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = queues, .depth = 8, .max_bytes = 4096
	};

	rig_open(r, queues, false);
	assert_int_equal(rig_attach(r, &fc), 0);
	r->load = (struct tf_load_conf){ .mix = TF_MIX_RW,
					 .random = true,
					 .bs = 4096,
					 .depth = 8,
					 .nr_queues = queues,
					 .ops = 2000,
					 .verify = true,
					 .seed = 7,
					 .hostile = mode };
	if (mode == TF_HOSTILE_CHANGE)
		r->load.span = DISK_BYTES - TF_CHANGE_RESERVE_BYTES;
	rig_run(r);
	expect_clean(r);
	assert_true(r->sum.hostile.sent > 0);
	assert_int_equal(r->sum.hostile.answered, r->sum.hostile.sent);
}

static void test_hostile_requests(void **state)
{
	static const enum tf_hostile modes[] = { TF_HOSTILE_SEGMENTS, TF_HOSTILE_NR_SEGMENTS,
						 TF_HOSTILE_PAST_END, TF_HOSTILE_OPS };

	for (unsigned i = 0; i < ARRAY_SIZE(modes); i++) {
		struct td_ring_stats st;
		struct rig r;

		hostile_run(modes[i], 2, &r);
		td_ring_get_stats(td_blkif_ring(r.blkif, 0), &st);
		assert_true(st.bad_requests > 0);
		assert_false(st.halted);
		rig_close(&r);
	}
}

static void test_hostile_prod(void **state)
{
	struct td_ring_stats st0, st1;
	struct rig r;

	hostile_run(TF_HOSTILE_PROD, 2, &r);
	td_ring_get_stats(td_blkif_ring(r.blkif, 0), &st0);
	td_ring_get_stats(td_blkif_ring(r.blkif, 1), &st1);
	assert_true(st0.halted);
	assert_false(st1.halted);
	assert_true(st1.requests > 0);
	rig_close(&r); /* a halted ring detaches like any other */
}

static void test_hostile_storm(void **state)
{
	struct td_ring_stats st;
	struct rig r;

	hostile_run(TF_HOSTILE_STORM, 2, &r);
	td_ring_get_stats(td_blkif_ring(r.blkif, 0), &st);
	assert_true(st.spurious > 0);
	rig_close(&r);
}

/* Whatever the rewrites, nothing lands past the 16 KiB after the span. */
static void test_hostile_change(void **state)
{
	uint64_t from = DISK_BYTES - TF_CHANGE_RESERVE_BYTES + 16 * 1024;
	uint8_t *rest;
	struct rig r;

	hostile_run(TF_HOSTILE_CHANGE, 1, &r);
	rig_close(&r);
	rest = qt_read(disk_path(), from, DISK_BYTES - from);
	for (uint64_t i = 0; i < DISK_BYTES - from; i++)
		if (rest[i])
			fail_msg("byte %llu written past the changed requests' range",
				 (unsigned long long)(from + i));
	free(rest);
}

/* ---- single requests ---------------------------------------------------------- */

struct one {
	struct tf_queue *q;
	struct tf_io *io;
	bool done;
};

static void one_done(struct tf_io *io)
{
	((struct one *)io->opaque)->done = true;
}

static int16_t one_request(struct tf_queue *q, uint8_t op, uint64_t offset, uint64_t len)
{
	struct tf_io *io = tf_queue_io(q, 0);
	struct one o = { .q = q, .io = io };

	io->op = op;
	io->offset = offset;
	io->len = len;
	io->done = one_done;
	io->opaque = &o;
	assert_int_equal(tf_queue_submit(q, io), 0);
	tf_queue_push(q);
	while (!o.done)
		assert_true(tf_queue_wait(q, 10000) >= 0);
	return io->status;
}

static void test_readonly_and_discard(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 1, .depth = 1, .max_bytes = 4096
	};
	struct tf_queue *q;
	struct rig r;

	rig_open(&r, 1, true);
	assert_int_equal(rig_attach(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_WRITE, 0, 4096), RING_RSP_ERROR);
	/* a read-only disk offers no discard */
	assert_int_equal(one_request(q, RING_OP_DISCARD, 0, 4096), RING_RSP_EOPNOTSUPP);
	assert_int_equal(one_request(q, RING_OP_FLUSH_DISKCACHE, 0, 0), RING_RSP_OKAY);
	rig_close(&r);

	rig_open(&r, 1, false);
	assert_int_equal(rig_attach(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	memset(tf_queue_io(q, 0)->buf, 0xab, 4096);
	assert_int_equal(one_request(q, RING_OP_WRITE, 8192, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_WRITE_BARRIER, 12288, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_WRITE_BARRIER, 0, 0), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_DISCARD, 8192, 4096), RING_RSP_OKAY);
	assert_int_equal(one_request(q, RING_OP_READ, 8192, 4096), RING_RSP_OKAY);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(tf_queue_io(q, 0)->buf[i], 0); /* discarded: zeros */
	assert_int_equal(one_request(q, RING_OP_READ, 12288, 4096), RING_RSP_OKAY);
	assert_int_equal(tf_queue_io(q, 0)->buf[100], 0xab);
	rig_close(&r);
}

/* The response's padding is written, not left as the request's bytes (XSA-216). */
static void test_response_padding(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 1, .depth = 1, .max_bytes = 4096
	};
	struct ring_rsp64 rsp;
	struct tf_queue *q;
	uint8_t *slot;
	struct rig r;

	rig_open(&r, 1, false);
	assert_int_equal(rig_attach(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	for (unsigned i = 0; i < 3; i++) /* gen, in the id's top bytes, becomes non-zero */
		assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_OKAY);
	slot = (uint8_t *)tf_queue_sring(q) + RING_SRING_HDR_BYTES + 2 * RING_ENTRY64_BYTES;
	memcpy(&rsp, slot, sizeof(rsp));
	assert_int_equal(rsp.pad1, 0);
	assert_int_equal(rsp.pad2, 0);
	assert_int_equal(rsp.id >> 32, 3);
	rig_close(&r);
}

static void test_refused_attach(void **state)
{
	struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 3, .depth = 1, .max_bytes = 4096
	};
	struct td_blkif_conf c;
	struct td_blkif *b = NULL;
	char why[256];
	struct rig r;

	rig_open(&r, 2, false);
	assert_int_equal(rig_attach(&r, &fc), -EINVAL); /* 3 queues on a 2-queue vbd */
	tf_dev_free(r.dev);

	fc.nr_queues = 1;
	assert_int_equal(tf_dev_new(&fc, &r.dev), 0);
	conf_from(r.dev, &fc, &c);
	c.order = RING_ORDER_MAX + 1;
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "ring-page-order"));

	conf_from(r.dev, &fc, &c);
	c.refs[0][0] = 0; /* reference 0 never grants anything */
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);
	conf_from(r.dev, &fc, &c);
	c.refs[0][0] = tf_io_data_gref(tf_queue_io(tf_dev_queue(r.dev, 0), 0), 0) + 100000;
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);

	conf_from(r.dev, &fc, &c);
	close(c.memfd);
	c.memfd = memfd_create("unsealed", MFD_CLOEXEC);
	assert_int_equal(ftruncate(c.memfd, 1 << 20), 0);
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EPERM);

	conf_from(r.dev, &fc, &c);
	close(c.kick_fds[0]);
	c.kick_fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_int_equal(td_blkif_connect(r.vbd, &c, &b, why, sizeof(why)), -EINVAL);
	tf_dev_free(r.dev);
	vbd_close(r.vbd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi_x86_64),
		cmocka_unit_test(test_abi_x86_32),
		cmocka_unit_test(test_abi_native_big_direct),
		cmocka_unit_test(test_indirect_multipage),
		cmocka_unit_test(test_two_queues_order4),
		cmocka_unit_test(test_hostile_requests),
		cmocka_unit_test(test_hostile_prod),
		cmocka_unit_test(test_hostile_storm),
		cmocka_unit_test(test_hostile_change),
		cmocka_unit_test(test_readonly_and_discard),
		cmocka_unit_test(test_response_padding),
		cmocka_unit_test(test_refused_attach),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
