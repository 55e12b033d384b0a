/* SPDX-License-Identifier: MIT */
/*
 * The vbd's life: opening the chain, the queue threads with their loops,
 * aio contexts and request pools, the control thread's calls into them, and
 * closing.  The request engine itself is vbd-io.c; pause and resume are
 * vbd-pause.c.
 *
 * Every file descriptor a queue uses for I/O completion is its own: its
 * epoll loop, its io_uring (or libaio eventfd).  The image files are opened
 * once by the drivers and shared (lib/aio allows an aio_file on several
 * contexts); O_DIRECT preadv/pwritev on one fd from several rings needs no
 * per-fd state, and one open file keeps one set of OFD locks.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "vbd-internal.h"

/* ---- waiting for the queue threads ---- */

void td_wait_init(struct td_wait *w, unsigned pending)
{
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->pending = pending;
	w->err = 0;
}

void td_wait_done(struct td_wait *w, int err)
{
	pthread_mutex_lock(&w->lock);
	if (err && !w->err)
		w->err = err;
	if (--w->pending == 0)
		pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int td_wait_for(struct td_wait *w)
{
	int err;

	pthread_mutex_lock(&w->lock);
	while (w->pending)
		pthread_cond_wait(&w->cond, &w->lock);
	err = w->err;
	pthread_mutex_unlock(&w->lock);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	return err;
}

static void qcall_run(struct evloop_call *call)
{
	struct td_qcall *c = call->opaque;

	c->fn(c->q, c->w, c->opaque);
}

int vbd_call_queues(struct td_vbd *vbd, struct td_queue *only,
		    void (*fn)(struct td_queue *q, struct td_wait *w, void *opaque), void *opaque)
{
	struct td_qcall calls[TD_MAX_QUEUES];
	unsigned first = only ? only->index : 0, n = only ? 1 : vbd->nr_queues, i;
	struct td_wait w;

	td_wait_init(&w, n);
	for (i = 0; i < n; i++) {
		struct td_qcall *c = &calls[i];

		/* from its own thread this would wait for itself forever */
		assert(!pthread_equal(pthread_self(), vbd->queues[first + i].thread));
		*c = (struct td_qcall){
			.q = &vbd->queues[first + i], .fn = fn, .opaque = opaque, .w = &w
		};
		c->call = (struct evloop_call){ .fn = qcall_run, .opaque = c };
		evloop_post(c->q->loop, &c->call);
	}
	return td_wait_for(&w);
}

struct run_args {
	int (*fn)(void *opaque);
	void *opaque;
};

static void run_on_queue(struct td_queue *q, struct td_wait *w, void *opaque)
{
	struct run_args *a = opaque;
	int ret = a->fn(a->opaque);

	/* td_wait keeps the first error only: carry the result whole */
	td_wait_done(w, ret);
}

int td_queue_run(struct td_queue *q, int (*fn)(void *opaque), void *opaque)
{
	struct run_args a = { .fn = fn, .opaque = opaque };

	return vbd_call_queues(q->vbd, q, run_on_queue, &a);
}

/* ---- accessors ---- */

void vbd_get_info(const struct td_vbd *vbd, struct td_vbd_info *out)
{
	struct td_vbd *v = (struct td_vbd *)vbd; /* the lock is not part of the value */

	pthread_mutex_lock(&v->lock);
	*out = v->info;
	pthread_mutex_unlock(&v->lock);
}

int vbd_bitmap_list(struct td_vbd *vbd, const char **names, unsigned max, unsigned *count)
{
	int err = 0;

	*count = 0;
	pthread_mutex_lock(&vbd->ctl_lock);
	if (vbd->top && vbd->top->ops->bitmap_list)
		err = vbd->top->ops->bitmap_list(vbd->top, names, max, count);
	pthread_mutex_unlock(&vbd->ctl_lock);
	return err;
}

struct td_queue *vbd_queue(struct td_vbd *vbd, unsigned index)
{
	return index < vbd->nr_queues ? &vbd->queues[index] : NULL;
}

struct evloop *td_queue_loop(struct td_queue *q)
{
	return q->loop;
}

unsigned td_queue_index(const struct td_queue *q)
{
	return q->index;
}

struct aio_ctx *td_queue_aio(struct td_queue *q)
{
	return q->aio;
}

/* ---- the chain ---- */

int vbd_chain_attach(struct td_vbd *vbd, const char *spec, struct drv_image **out)
{
	struct drv_image *top;
	int err;

	err = drv_chain_open_opts(spec, vbd->opts.readonly ? DRV_OPEN_RDONLY : 0, vbd->drv_opts,
				  vbd->opts.nr_drv_opts, &top);
	if (err)
		return err;
	err = drv_queues_init(top, vbd->dqs, vbd->nr_queues);
	if (err) {
		drv_image_close(top);
		return err;
	}
	*out = top;
	return 0;
}

/* The info that follows from the chain. */
static void info_from_chain(const struct td_vbd *vbd, struct td_vbd_info *in,
			    const struct drv_image *top)
{
	const struct drv_image *img;
	bool rw = !vbd->opts.readonly;

	in->size_bytes = top->size_bytes;
	in->block_bytes = top->block_bytes;
	in->phys_block_bytes = top->phys_block_bytes;
	in->discard_bytes = MAX(top->discard_bytes ? top->discard_bytes : top->phys_block_bytes,
				top->block_bytes);
	in->can_discard = rw && (top->caps & DRV_CAP_DISCARD);
	in->can_write_zeroes = rw && (top->caps & DRV_CAP_WRITE_ZEROES);
	in->can_block_status = top->caps & DRV_CAP_BLOCK_STATUS;
	in->native_fua = top->caps & DRV_CAP_FUA;
	in->max_io_bytes = MAX(ALIGN_DOWN(vbd->opts.max_io_bytes, (uint64_t)top->block_bytes),
			       (uint64_t)top->block_bytes);
	in->chain_depth = 0;
	for (img = top; img; img = img->backing)
		in->chain_depth++;
}

/* Keep a copy of @spec until close, so info.spec stays valid; 0 or -ENOMEM. */
static int spec_push(struct td_vbd *vbd, const char *spec, const char **copy)
{
	size_t len = strlen(spec) + 1;
	struct td_spec *s = malloc(sizeof(*s) + len);

	if (!s) {
		log_err("vbd %s: out of memory", spec);
		return -ENOMEM;
	}
	memcpy(s->spec, spec, len);
	pthread_mutex_lock(&vbd->lock);
	s->next = vbd->specs;
	vbd->specs = s;
	pthread_mutex_unlock(&vbd->lock);
	*copy = s->spec;
	return 0;
}

/* The queue's view of the chain; on its own thread. */
static int queue_set_chain(struct td_queue *q, struct drv_image *top, const struct td_vbd_info *in)
{
	size_t stride = ALIGN_UP(MAX(drv_chain_req_priv_bytes(top), (size_t)1), (size_t)64);
	unsigned i;

	if (stride > q->priv_stride) {
		void *priv = buf_alloc(stride * (q->nr_slots + 1), 64);

		if (!priv) {
			log_err("vbd %s: out of memory for queue %u's request scratch", in->spec,
				q->index);
			return -ENOMEM;
		}
		buf_free(q->priv);
		q->priv = priv;
		q->priv_stride = stride;
	}
	for (i = 0; i <= q->nr_slots; i++)
		q->slots[i].dreq.priv = (char *)q->priv + (size_t)i * q->priv_stride;
	q->top = top;
	q->geo = (struct td_geo){
		.size_bytes = in->size_bytes,
		.max_io_bytes = in->max_io_bytes,
		.block_bytes = in->block_bytes,
		.caps = top->caps,
		.can_bitmap = top->ops->bitmap_status != NULL,
		.readonly = in->readonly,
		.spec = in->spec,
	};
	return 0;
}

struct set_chain_args {
	struct drv_image *top;
	const struct td_vbd_info *info;
};

static void set_chain_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	struct set_chain_args *a = opaque;

	if (!a->top) {
		q->top = NULL;
		td_wait_done(w, 0);
		return;
	}
	td_wait_done(w, queue_set_chain(q, a->top, a->info));
}

int vbd_set_chain(struct td_vbd *vbd, struct drv_image *top, const char *spec)
{
	struct set_chain_args a = { .top = top };
	const char *copy = NULL;
	struct td_vbd_info info;
	int err;

	if (top && spec) {
		err = spec_push(vbd, spec, &copy);
		if (err)
			return err;
	}
	pthread_mutex_lock(&vbd->lock);
	info = vbd->info;
	pthread_mutex_unlock(&vbd->lock);
	if (copy)
		info.spec = copy;
	if (top)
		info_from_chain(vbd, &info, top);
	a.info = &info;
	err = vbd_call_queues(vbd, NULL, set_chain_call, &a);
	if (err) {
		a.top = NULL;
		vbd_call_queues(vbd, NULL, set_chain_call, &a);
		top = NULL;
	}
	vbd->top = top;
	info.paused = top == NULL;
	pthread_mutex_lock(&vbd->lock);
	vbd->info = info;
	pthread_mutex_unlock(&vbd->lock);
	return err;
}

/* ---- queue threads ---- */

static void *queue_thread(void *opaque)
{
	struct td_queue *q = opaque;
	char name[16];
	int err;

	snprintf(name, sizeof(name), "tapdisk-q%u", q->index);
	pthread_setname_np(pthread_self(), name);
	err = evloop_run(q->loop);
	if (err)
		log_err("vbd queue %u: event loop failed: %s", q->index, err_str(err));
	return NULL;
}

/* Start @q's thread with every signal blocked. */
static int queue_thread_start(struct td_queue *q)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&q->thread, NULL, queue_thread, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_err("vbd: cannot start queue thread %u: %s", q->index, err_str(err));
		return err;
	}
	q->thread_started = true;
	return 0;
}

static void queue_thread_stop(struct td_queue *q)
{
	if (!q->thread_started)
		return;
	evloop_stop(q->loop);
	pthread_join(q->thread, NULL);
	q->thread_started = false;
	/* what was posted after the loop stopped (deferred completions) */
	while (evloop_run_once(q->loop, 0) > 0)
		;
}

/* A queue's loop, aio context and request pool; 0 or -errno (logged). */
static int queue_init(struct td_vbd *vbd, unsigned index)
{
	struct td_queue *q = &vbd->queues[index];
	struct aio_ctx_opts aopts = { .engine = vbd->opts.engine, .depth = vbd->opts.queue_depth };
	unsigned i;
	int err;

	q->vbd = vbd;
	q->index = index;
	q->dq = &vbd->dqs[index];
	q->nr_slots = vbd->opts.queue_depth;
	q->slots = calloc(q->nr_slots + 1, sizeof(*q->slots));
	if (!q->slots) {
		log_err("vbd: out of memory for queue %u's request pool", index);
		return -ENOMEM;
	}
	for (i = 0; i <= q->nr_slots; i++)
		q->slots[i].q = q;
	for (i = q->nr_slots; i-- > 0;)
		q->slots[i].next_free = i + 1 < q->nr_slots ? &q->slots[i + 1] : NULL;
	q->free_slots = &q->slots[0];
	td_queue_io_init(q);
	err = evloop_new(&q->loop);
	if (err) {
		log_err("vbd: queue %u: cannot create an event loop: %s", index, err_str(err));
		return err;
	}
	evloop_set_poll_max(q->loop, (uint64_t)vbd->opts.poll_us * 1000);
	err = aio_ctx_new(q->loop, &aopts, &q->aio);
	if (err)
		return err;
	*q->dq = (struct drv_queue){ .index = index, .loop = q->loop, .aio = q->aio };
	return 0;
}

static void queue_fini(struct td_queue *q)
{
	aio_ctx_free(q->aio);
	evloop_free(q->loop);
	buf_free(q->priv);
	free(q->slots);
}

/* ---- open and close ---- */

static int opts_check(const char *spec, const struct td_vbd_opts *in, struct td_vbd_opts *out)
{
	*out = *in;
	out->drv_opts = NULL;
	out->nr_drv_opts = 0;
	if (!out->nr_queues)
		out->nr_queues = 1;
	if (!out->queue_depth)
		out->queue_depth = TD_DEFAULT_QUEUE_DEPTH;
	if (!out->max_io_bytes)
		out->max_io_bytes = TD_DEFAULT_MAX_IO_BYTES;
	if (out->nr_queues > TD_MAX_QUEUES) {
		log_err("open %s: %u queues asked, at most %u", spec, out->nr_queues,
			TD_MAX_QUEUES);
		return -EINVAL;
	}
	if (out->queue_depth > TD_MAX_QUEUE_DEPTH) {
		log_err("open %s: queue depth %u asked, at most %u", spec, out->queue_depth,
			TD_MAX_QUEUE_DEPTH);
		return -EINVAL;
	}
	return 0;
}

/* A vbd with its queues set up (threads not started, no chain). */
static int vbd_alloc(const struct td_vbd_opts *opts, struct td_vbd **out)
{
	struct td_vbd *vbd = calloc(1, sizeof(*vbd));
	unsigned i;
	int err;

	if (!vbd)
		return -ENOMEM;
	vbd->opts = *opts;
	vbd->nr_queues = opts->nr_queues;
	pthread_mutex_init(&vbd->lock, NULL);
	pthread_mutex_init(&vbd->ctl_lock, NULL);
	vbd->info.readonly = opts->readonly;
	vbd->info.nr_queues = opts->nr_queues;
	vbd->info.queue_depth = opts->queue_depth;
	vbd->info.paused = true;
	vbd->dqs = calloc(vbd->nr_queues, sizeof(*vbd->dqs));
	vbd->queues = calloc(vbd->nr_queues, sizeof(*vbd->queues));
	*out = vbd;
	if (!vbd->dqs || !vbd->queues)
		return -ENOMEM;
	for (i = 0; i < vbd->nr_queues; i++) {
		err = queue_init(vbd, i);
		if (err)
			return err;
	}
	vbd->info.engine = aio_ctx_engine(vbd->queues[0].aio);
	return 0;
}

/* The open's driver options, copied: the caller's go away, and a resume reattaches with them. */
static int copy_drv_opts(struct td_vbd *vbd, const struct td_vbd_opts *opts)
{
	size_t len = 0;
	unsigned i;
	char *s, *p;
	int err;

	if (!opts->nr_drv_opts)
		return 0;
	for (i = 0; i < opts->nr_drv_opts; i++)
		len += strlen(opts->drv_opts[i].key) + strlen(opts->drv_opts[i].value) + 2;
	s = malloc(len);
	if (!s)
		return -ENOMEM;
	for (i = 0, p = s; i < opts->nr_drv_opts; i++)
		p += snprintf(p, len - (size_t)(p - s), "%s%s=%s", i ? "," : "",
			      opts->drv_opts[i].key, opts->drv_opts[i].value);
	err = drv_opts_parse(s, &vbd->drv_opts, &vbd->opts.nr_drv_opts);
	free(s);
	if (!err)
		vbd->opts.drv_opts = vbd->drv_opts;
	return err;
}

/* Free what vbd_alloc made, the threads stopped and the chain closed. */
static void vbd_free(struct td_vbd *vbd)
{
	struct td_spec *s;
	unsigned i;

	for (i = 0; vbd->queues && i < vbd->nr_queues; i++)
		queue_fini(&vbd->queues[i]);
	while ((s = vbd->specs)) {
		vbd->specs = s->next;
		free(s);
	}
	free(vbd->queues);
	free(vbd->dqs);
	free(vbd->drv_opts);
	pthread_mutex_destroy(&vbd->ctl_lock);
	pthread_mutex_destroy(&vbd->lock);
	free(vbd);
}

static void vbd_stop_threads(struct td_vbd *vbd)
{
	unsigned i;

	for (i = 0; i < vbd->nr_queues; i++)
		queue_thread_stop(&vbd->queues[i]);
}

int vbd_open(const char *spec, const struct td_vbd_opts *opts, struct td_vbd **out)
{
	struct td_vbd_opts o;
	struct drv_image *top = NULL;
	struct td_vbd *vbd = NULL;
	unsigned i;
	int err;

	err = opts_check(spec, opts, &o);
	if (err)
		return err;
	err = vbd_alloc(&o, &vbd);
	if (!err)
		err = copy_drv_opts(vbd, opts);
	if (err) {
		if (err == -ENOMEM)
			log_err("open %s: out of memory", spec);
		goto err_free;
	}
	err = vbd_chain_attach(vbd, spec, &top);
	if (err)
		goto err_free;
	for (i = 0; i < vbd->nr_queues; i++) {
		err = queue_thread_start(&vbd->queues[i]);
		if (err)
			goto err_stop;
	}
	err = vbd_set_chain(vbd, top, spec);
	if (err)
		goto err_stop;
	log_dbg(LOG_F_VBD, "open %s: %u queues of depth %u, %s", spec, o.nr_queues, o.queue_depth,
		aio_engine_name(vbd->info.engine));
	*out = vbd;
	return 0;

err_stop:
	vbd_stop_threads(vbd);
	drv_image_close(top);
err_free:
	if (vbd)
		vbd_free(vbd);
	return err;
}

static void close_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	q->closing = true;
	td_queue_fail_waiting(q, -ESHUTDOWN);
	td_queue_stop(q, w);
}

static void refuse_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	q->closing = true;
	td_queue_fail_waiting(q, -ESHUTDOWN);
	td_wait_done(w, 0);
}

void vbd_refuse_new(struct td_vbd *vbd)
{
	pthread_mutex_lock(&vbd->ctl_lock);
	vbd_call_queues(vbd, NULL, refuse_call, NULL);
	pthread_mutex_unlock(&vbd->ctl_lock);
}

static void flush_call(struct td_queue *q, struct td_wait *w, void *opaque)
{
	td_queue_flush(q, w);
}

void vbd_close(struct td_vbd *vbd)
{
	struct td_vbd_info info;
	int err;

	if (!vbd)
		return;
	pthread_mutex_lock(&vbd->ctl_lock);
	vbd_get_info(vbd, &info);
	vbd_call_queues(vbd, NULL, close_call, NULL);
	err = vbd_call_queues(vbd, &vbd->queues[0], flush_call, NULL);
	if (err)
		log_err("close %s: final flush failed: %s", info.spec, err_str(err));
	vbd_stop_threads(vbd);
	drv_image_close(vbd->top);
	vbd->top = NULL;
	pthread_mutex_unlock(&vbd->ctl_lock);
	log_dbg(LOG_F_VBD, "closed %s", info.spec);
	vbd_free(vbd);
}

/* ---- resize notifiers ---- */

void vbd_resize_notifier_add(struct td_vbd *vbd, struct td_resize_notifier *n)
{
	pthread_mutex_lock(&vbd->lock);
	n->next = vbd->notifiers;
	vbd->notifiers = n;
	pthread_mutex_unlock(&vbd->lock);
}

void vbd_resize_notifier_del(struct td_vbd *vbd, struct td_resize_notifier *n)
{
	pthread_mutex_lock(&vbd->lock);
	for (struct td_resize_notifier **p = &vbd->notifiers; *p; p = &(*p)->next) {
		if (*p == n) {
			*p = n->next;
			break;
		}
	}
	pthread_mutex_unlock(&vbd->lock);
}
