/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the vbd tests: submitting td_requests on a queue thread from
 * the test's (control) thread and waiting for them, and a log of what the
 * queue's aio context was asked to do, interleaved with request
 * completions, to check ordering.
 *
 * Included after qcow2-test-util.h by one test file each.
 */
#ifndef QTAP_VBD_TEST_UTIL_H
#define QTAP_VBD_TEST_UTIL_H

#include <pthread.h>

#include "aio.h"
#include "buf.h"
#include "tapdisk/vbd.h"

#define TV_MAX_IOV 256
#define TV_LOG_MAX 4096

struct tv;

struct tv_req {
	struct td_request r;
	struct iovec iov[TV_MAX_IOV];
	uint8_t *buf;
	struct tv *tv;
	unsigned id;
	int err;
	int calls;
	bool done;
	bool done_inside_submit; /* ->done ran from inside vbd_submit: a bug */
};

enum tv_ev_kind {
	TV_EV_AIO = 0, /* the queue's aio context got a request */
	TV_EV_DONE,    /* a td_request completed */
};

struct tv_ev {
	enum tv_ev_kind kind;
	enum aio_op aio_op;
	uint64_t offset, len;
	unsigned id; /* TV_EV_DONE: the tv_req's id */
	int err;
};

struct tv {
	struct td_vbd *vbd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct tv_ev log[TV_LOG_MAX];
	unsigned nr_log;
	bool logging;
	/* aio fault injection: fail the @fail_nth next aio request of @fail_op */
	int fail_err;
	enum aio_op fail_op;
	unsigned fail_skip;
};

static __thread bool tv_in_submit;

static QT_UNUSED void tv_init(struct tv *tv)
{
	memset(tv, 0, sizeof(*tv));
	pthread_mutex_init(&tv->lock, NULL);
	pthread_cond_init(&tv->cond, NULL);
}

static QT_UNUSED void tv_fini(struct tv *tv)
{
	pthread_cond_destroy(&tv->cond);
	pthread_mutex_destroy(&tv->lock);
}

static void tv_log(struct tv *tv, const struct tv_ev *ev)
{
	pthread_mutex_lock(&tv->lock);
	if (tv->logging && tv->nr_log < TV_LOG_MAX)
		tv->log[tv->nr_log++] = *ev;
	pthread_mutex_unlock(&tv->lock);
}

static QT_UNUSED void tv_done(struct td_request *r, int err)
{
	struct tv_req *t = r->opaque;
	struct tv *tv = t->tv;
	struct tv_ev ev = { .kind = TV_EV_DONE, .id = t->id, .err = err };

	tv_log(tv, &ev);
	pthread_mutex_lock(&tv->lock);
	if (tv_in_submit)
		t->done_inside_submit = true;
	t->err = err;
	t->calls++;
	t->done = true;
	pthread_cond_broadcast(&tv->cond);
	pthread_mutex_unlock(&tv->lock);
}

/* A request of @len bytes of data in one buffer (READ/WRITE) or none. */
static QT_UNUSED struct tv_req *tv_req_new(struct tv *tv, unsigned id, enum td_op op,
					   unsigned flags, uint64_t offset, uint64_t len)
{
	struct tv_req *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	t->tv = tv;
	t->id = id;
	t->r = (struct td_request){
		.op = op, .flags = flags, .offset = offset, .len = len, .done = tv_done, .opaque = t
	};
	if (op == TD_OP_READ || op == TD_OP_WRITE) {
		t->buf = buf_alloc(len ? len : 1, 4096);
		assert_non_null(t->buf);
		memset(t->buf, 0, len);
		t->iov[0] = (struct iovec){ .iov_base = t->buf, .iov_len = len };
		t->r.iov = t->iov;
		t->r.iovcnt = 1;
	}
	return t;
}

static QT_UNUSED void tv_req_free(struct tv_req *t)
{
	if (!t)
		return;
	buf_free(t->buf);
	free(t);
}

/* Cut the request's buffer into iovec elements of the sizes in @sizes (0-ended). */
static QT_UNUSED void tv_req_split_iov(struct tv_req *t, const uint64_t *sizes)
{
	uint64_t off = 0;
	unsigned n = 0;

	for (; *sizes && off < t->r.len; sizes++) {
		uint64_t len = MIN(*sizes, t->r.len - off);

		assert_true(n < TV_MAX_IOV);
		t->iov[n++] = (struct iovec){ .iov_base = t->buf + off, .iov_len = len };
		off += len;
	}
	assert_int_equal(off, t->r.len);
	t->r.iovcnt = n;
}

struct tv_batch {
	struct td_queue *q;
	struct tv_req **reqs;
	unsigned n;
};

static int tv_submit_fn(void *opaque)
{
	struct tv_batch *b = opaque;
	unsigned i;

	tv_in_submit = true;
	for (i = 0; i < b->n; i++)
		vbd_submit(b->q, &b->reqs[i]->r);
	tv_in_submit = false;
	return 0;
}

/* Submit @n requests in order on queue @qi, in one go on its thread. */
static QT_UNUSED void tv_submit(struct tv *tv, unsigned qi, struct tv_req **reqs, unsigned n)
{
	struct tv_batch b = { .q = vbd_queue(tv->vbd, qi), .reqs = reqs, .n = n };

	assert_non_null(b.q);
	assert_int_equal(td_queue_run(b.q, tv_submit_fn, &b), 0);
}

static QT_UNUSED void tv_wait(struct tv *tv, struct tv_req *t)
{
	pthread_mutex_lock(&tv->lock);
	while (!t->done)
		pthread_cond_wait(&tv->cond, &tv->lock);
	pthread_mutex_unlock(&tv->lock);
	assert_int_equal(t->calls, 1);
	assert_false(t->done_inside_submit);
}

static QT_UNUSED bool tv_is_done(struct tv *tv, struct tv_req *t)
{
	bool done;

	pthread_mutex_lock(&tv->lock);
	done = t->done;
	pthread_mutex_unlock(&tv->lock);
	return done;
}

/* Submit one request on queue @qi and wait; its completion status. */
static QT_UNUSED int tv_do(struct tv *tv, unsigned qi, struct tv_req *t)
{
	tv_submit(tv, qi, &t, 1);
	tv_wait(tv, t);
	return t->err;
}

/* One request of @op with one buffer, done at once and freed; its status. */
static QT_UNUSED int tv_io(struct tv *tv, unsigned qi, enum td_op op, unsigned flags,
			   uint64_t offset, void *buf, uint64_t len)
{
	struct tv_req *t = tv_req_new(tv, 0, op, flags, offset, len);
	int err;

	if (op == TD_OP_WRITE)
		memcpy(t->buf, buf, len);
	err = tv_do(tv, qi, t);
	if (op == TD_OP_READ && !err)
		memcpy(buf, t->buf, len);
	tv_req_free(t);
	return err;
}

/* ---- the aio log ---- */

static int tv_fault(void *opaque, const struct aio_req *req)
{
	struct tv *tv = opaque;
	struct tv_ev ev = {
		.kind = TV_EV_AIO, .aio_op = req->op, .offset = req->offset, .len = req->len
	};
	int err = 0;

	tv_log(tv, &ev);
	pthread_mutex_lock(&tv->lock);
	if (tv->fail_err && req->op == tv->fail_op) {
		if (tv->fail_skip)
			tv->fail_skip--;
		else {
			err = tv->fail_err;
			tv->fail_err = 0;
		}
	}
	pthread_mutex_unlock(&tv->lock);
	return err;
}

struct tv_fault_args {
	struct td_queue *q;
	struct tv *tv;
	bool on;
};

static int tv_fault_set(void *opaque)
{
	struct tv_fault_args *a = opaque;

	aio_ctx_set_fault(td_queue_aio(a->q), a->on ? tv_fault : NULL, a->tv);
	return 0;
}

/* Start (or stop) logging queue @qi's aio requests and completions. */
static QT_UNUSED void tv_logging(struct tv *tv, unsigned qi, bool on)
{
	struct tv_fault_args a = { .q = vbd_queue(tv->vbd, qi), .tv = tv, .on = on };

	pthread_mutex_lock(&tv->lock);
	tv->logging = on;
	if (on)
		tv->nr_log = 0;
	pthread_mutex_unlock(&tv->lock);
	assert_int_equal(td_queue_run(a.q, tv_fault_set, &a), 0);
}

/* The first log index at or after @from of an event matching, or -1. */
static QT_UNUSED int tv_find(struct tv *tv, int from, enum tv_ev_kind kind, enum aio_op op,
			     unsigned id)
{
	unsigned i;

	for (i = (unsigned)from; i < tv->nr_log; i++) {
		const struct tv_ev *e = &tv->log[i];

		if (e->kind != kind)
			continue;
		if (kind == TV_EV_AIO ? e->aio_op == op : e->id == id)
			return (int)i;
	}
	return -1;
}

#endif
