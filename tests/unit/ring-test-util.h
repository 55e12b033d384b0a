/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the ring engine tests: a vbd on a raw file, tap-front's
 * frontend attached to it with td_blkif_connect (the attach-ring command's
 * work without the socket), and tap-front's load run on every queue, a
 * thread each.  Included by one test file each.
 */
#ifndef QTAP_RING_TEST_UTIL_H
#define QTAP_RING_TEST_UTIL_H

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "checked.h"
#include "qcow2-test-util.h"
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
	bool copy; /* attach with td_blkif_conf.copy (tapdisk --ring-copy); set after rig_open */
	char why[256]; /* td_blkif_connect's */
};

static QT_UNUSED bool under_valgrind(void)
{
	const char *v = getenv("QTAP_VALGRIND");

	return v && strcmp(v, "1") == 0;
}

/* Fewer requests under valgrind, which runs everything tens of times slower. */
static QT_UNUSED uint64_t scaled(uint64_t ops)
{
	return under_valgrind() ? ops / 8 : ops;
}

static QT_UNUSED const char *disk_path(void)
{
	return qt_path("disk.raw");
}

static QT_UNUSED void make_disk(void)
{
	int fd = open(disk_path(), O_RDWR | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)DISK_BYTES), 0);
	close(fd);
}

static QT_UNUSED void rig_open(struct rig *r, unsigned queues, bool readonly)
{
	struct td_vbd_opts o = { .nr_queues = queues, .readonly = readonly };
	char spec[PATH_MAX + 8];

	memset(r, 0, sizeof(*r));
	make_disk();
	snprintf(spec, sizeof(spec), "raw:%s", disk_path());
	assert_int_equal(vbd_open(spec, &o, &r->vbd), 0);
}

/* The attach message's content, with fds of our own (the blkif takes them). */
static QT_UNUSED void conf_from(struct tf_dev *dev, const struct tf_conf *fc,
				struct td_blkif_conf *c)
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

static QT_UNUSED int rig_attach(struct rig *r, const struct tf_conf *fc)
{
	struct td_blkif_conf c;
	char why[256];

	assert_int_equal(tf_dev_new(fc, &r->dev), 0);
	conf_from(r->dev, fc, &c);
	c.copy = r->copy;
	return td_blkif_connect(r->vbd, &c, &r->blkif, why, sizeof(why));
}

static QT_UNUSED void rig_close(struct rig *r)
{
	td_blkif_disconnect(r->blkif);
	tf_dev_free(r->dev);
	vbd_close(r->vbd);
}

static QT_UNUSED void *worker_thread(void *arg)
{
	struct tf_worker *w = arg;
	int err = w->conf->hostile == TF_HOSTILE_PROD && w->index == 0 ? tf_hostile_prod(w)
								       : tf_worker_run(w);

	if (err)
		w->st.protocol_error = true;
	return NULL;
}

/* Start @r->load on every queue of @r->dev, a thread each. */
static QT_UNUSED void rig_start(struct rig *r, pthread_t *t)
{
	unsigned n = r->load.nr_queues;

	r->load.disk_bytes = DISK_BYTES;
	if (!r->load.span)
		r->load.span = DISK_BYTES - r->load.offset;
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
}

/* Wait for rig_start's threads; the sum of their statistics in r->sum. */
static QT_UNUSED void rig_join(struct rig *r, pthread_t *t)
{
	for (unsigned i = 0; i < r->load.nr_queues; i++) {
		pthread_join(t[i], NULL);
		tf_hostile_stop(&r->w[i]);
		tf_stats_add(&r->sum, &r->w[i].st);
		tf_worker_fini(&r->w[i]);
	}
}

static QT_UNUSED void rig_run(struct rig *r)
{
	pthread_t t[TD_BLKIF_MAX_QUEUES];

	rig_start(r, t);
	rig_join(r, t);
}

/* The ring statistics summed over @r's queues. */
static QT_UNUSED void rig_ring_stats(struct rig *r, struct td_ring_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned q = 0; q < td_blkif_nr_queues(r->blkif); q++) {
		struct td_ring_stats s;

		td_ring_get_stats(td_blkif_ring(r->blkif, q), &s);
		sum->requests += s.requests;
		sum->mapped += s.mapped;
		sum->copied += s.copied;
	}
}

static QT_UNUSED void expect_clean(const struct rig *r)
{
	assert_false(r->sum.protocol_error);
	assert_int_equal(r->sum.io_errors, 0);
	assert_int_equal(r->sum.verify_errors, 0);
	assert_int_equal(r->sum.hostile.unexpected, 0);
}

/* ---- one request at a time ---- */

struct one {
	struct tf_queue *q;
	struct tf_io *io;
	bool done;
};

static QT_UNUSED void one_done(struct tf_io *io)
{
	((struct one *)io->opaque)->done = true;
}

static QT_UNUSED int16_t one_request(struct tf_queue *q, uint8_t op, uint64_t offset, uint64_t len)
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

#endif
