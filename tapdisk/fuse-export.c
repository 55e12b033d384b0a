// SPDX-License-Identifier: MIT
/*
 * The FUSE export's life: mounting over a regular file, reading /dev/fuse
 * on queue 0's loop, the pool of request contexts, and an orderly end.
 * (The file's operations are in fuse-ops.c; see fuse-internal.h.)
 *
 * The session's fd is made non-blocking and read with
 * fuse_session_receive_buf() into one reused buffer, as QEMU's FUSE
 * export does in its own event loop; libfuse then calls the operations on
 * this thread.  The mount point must be a regular file: libfuse mounts
 * with the root mode of what it mounts over, so the export is that file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "tapdisk/fuse-internal.h"

/* ---- the pool ---------------------------------------------------------------- */

struct tdfuse_ctx *tdfuse_ctx_get(struct tdfuse *f)
{
	struct tdfuse_ctx *ctx;

	pthread_mutex_lock(&f->lock);
	ctx = f->free;
	if (ctx) {
		f->free = ctx->next;
		f->busy++;
	}
	pthread_mutex_unlock(&f->lock);
	return ctx;
}

static bool ctx_available(struct tdfuse *f)
{
	bool yes;

	pthread_mutex_lock(&f->lock);
	yes = f->free != NULL;
	if (!yes)
		f->blocked = true;
	pthread_mutex_unlock(&f->lock);
	return yes;
}

void tdfuse_ctx_put(struct tdfuse_ctx *ctx)
{
	struct tdfuse *f = ctx->f;

	pthread_mutex_lock(&f->lock);
	ctx->next = f->free;
	f->free = ctx;
	f->busy--;
	if (f->blocked && !f->stopping) {
		f->blocked = false;
		evloop_post(td_queue_loop(f->rq), &f->resume);
	}
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* ---- receiving ---------------------------------------------------------------- */

static void watch_stop(struct tdfuse *f)
{
	if (f->watching)
		evloop_watch_del(&f->watch);
	f->watching = false;
}

static void on_readable(struct evloop_watch *w, uint32_t events)
{
	struct tdfuse *f = w->opaque;
	unsigned i;
	int res;

	for (i = 0; i < 32; i++) {
		if (!ctx_available(f)) {
			watch_stop(f); /* tdfuse_ctx_put resumes */
			return;
		}
		res = fuse_session_receive_buf(f->se, &f->fbuf);
		if (res == -EINTR)
			continue;
		if (res == -EAGAIN)
			return;
		if (res <= 0 || fuse_session_exited(f->se)) {
			log_warn("fuse %s: unmounted from outside (%s); the export stops", f->path,
				 res < 0 ? err_str(res) : "session ended");
			watch_stop(f);
			return;
		}
		fuse_session_process_buf(f->se, &f->fbuf);
	}
}

static int watch_start(struct tdfuse *f)
{
	int err;

	if (f->watching || f->stopping)
		return 0;
	err = evloop_watch_add(td_queue_loop(f->rq), &f->watch);
	f->watching = err == 0;
	return err;
}

static void on_resume(struct evloop_call *call)
{
	struct tdfuse *f = call->opaque;

	if (watch_start(f) == 0)
		on_readable(&f->watch, EPOLLIN);
}

static int run_watch_start(void *opaque)
{
	return watch_start(opaque);
}

static int run_stop(void *opaque)
{
	struct tdfuse *f = opaque;

	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	pthread_mutex_unlock(&f->lock);
	watch_stop(f);
	return 0;
}

/* The image was resized while paused: the file follows (on rq, its owner). */
static int run_resize(void *opaque)
{
	struct tdfuse *f = opaque;

	f->size_bytes = f->new_size;
	f->st.st_size = (off_t)f->new_size;
	f->st.st_blocks = (blkcnt_t)(f->new_size / 512);
	/* the kernel's cached attributes (a second's worth) are stale now */
	fuse_lowlevel_notify_inval_inode(f->se, FUSE_ROOT_ID, -1, 0);
	return 0;
}

static void on_resize(struct td_resize_notifier *n, uint64_t old_size, uint64_t new_size)
{
	struct tdfuse *f = n->opaque;

	f->new_size = ALIGN_DOWN(new_size, (uint64_t)f->block_bytes);
	td_queue_run(f->rq, run_resize, f);
	log_info("fuse %s: now %llu bytes", f->path, (unsigned long long)f->new_size);
}

/* ---- mounting ------------------------------------------------------------------- */

/* The mount point: a regular file, created (0600) when it does not exist. */
static int mountpoint_prepare(struct tdfuse *f)
{
	struct stat st;
	int fd;

	if (stat(f->path, &st) == 0) {
		if (S_ISREG(st.st_mode))
			return 0;
		log_err("fuse %s: not a regular file: the export is mounted over a file", f->path);
		return -EINVAL;
	}
	if (errno != ENOENT) {
		log_err("fuse %s: %m", f->path);
		return neg_errno();
	}
	fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_err("fuse %s: cannot create the mount point: %m", f->path);
		return neg_errno();
	}
	close(fd);
	f->created = true;
	return 0;
}

static int session_start(struct tdfuse *f)
{
	char opts[160];
	char *argv[] = { "tapdisk", "-o", opts, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	int fd;

	snprintf(opts, sizeof(opts), "max_read=%u,fsname=qtap,subtype=tapdisk%s", TDFUSE_MAX_IO,
		 geteuid() == 0 ? ",allow_other,default_permissions" : "");
	f->se = fuse_session_new(&args, &tdfuse_ops, sizeof(tdfuse_ops), f);
	fuse_opt_free_args(&args); /* libfuse may have copied them */
	if (!f->se) {
		log_err("fuse %s: cannot create the FUSE session", f->path);
		return -EIO;
	}
	if (fuse_session_mount(f->se, f->path) != 0) {
		log_err("fuse %s: cannot mount (is /dev/fuse there, and may we use it?)", f->path);
		fuse_session_destroy(f->se);
		f->se = NULL;
		return -EIO;
	}
	fd = fuse_session_fd(f->se);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return neg_errno();
	f->watch = (struct evloop_watch){
		.fd = fd, .events = EPOLLIN, .fn = on_readable, .opaque = f
	};
	f->resume = (struct evloop_call){ .fn = on_resume, .opaque = f };
	return 0;
}

static int pool_init(struct tdfuse *f)
{
	size_t bytes = TDFUSE_MAX_IO + 4 * (size_t)f->block_bytes;
	unsigned i;

	f->ctxs = calloc(TDFUSE_CTXS, sizeof(*f->ctxs));
	if (!f->ctxs)
		return -ENOMEM;
	for (i = 0; i < TDFUSE_CTXS; i++) {
		f->ctxs[i].f = f;
		f->ctxs[i].buf = buf_alloc(bytes, 4096);
		if (!f->ctxs[i].buf)
			return -ENOMEM;
		f->ctxs[i].next = f->free;
		f->free = &f->ctxs[i];
	}
	return 0;
}

static void attrs_init(struct tdfuse *f, const struct td_vbd_info *in)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	f->st = (struct stat){
		.st_ino = FUSE_ROOT_ID,
		.st_mode = S_IFREG | (f->readonly ? 0400 : 0600),
		.st_nlink = 1,
		.st_uid = geteuid(),
		.st_gid = getegid(),
		.st_size = (off_t)f->size_bytes,
		/* what cp and cmp size their reads by: every read is a request */
		.st_blksize = (blksize_t)MAX(TDFUSE_BLKSIZE, in->phys_block_bytes),
		.st_blocks = (blkcnt_t)(f->size_bytes / 512),
		.st_atim = now,
		.st_mtim = now,
		.st_ctim = now,
	};
}

static int export_init(struct tdfuse *f, struct td_vbd *vbd, const struct tdfuse_config *cfg)
{
	struct td_vbd_info in;
	unsigned i;

	vbd_get_info(vbd, &in);
	f->vbd = vbd;
	f->block_bytes = in.block_bytes;
	f->size_bytes = ALIGN_DOWN(in.size_bytes, (uint64_t)in.block_bytes);
	f->readonly = in.readonly || cfg->readonly;
	f->can_zero = in.can_write_zeroes;
	f->nr_queues = in.nr_queues;
	f->queues = calloc(in.nr_queues, sizeof(*f->queues));
	if (!f->queues)
		return -ENOMEM;
	for (i = 0; i < in.nr_queues; i++)
		f->queues[i] = vbd_queue(vbd, i);
	f->rq = f->queues[0];
	attrs_init(f, &in);
	return 0;
}

static void fuse_free_mem(struct tdfuse *f)
{
	unsigned i;

	for (i = 0; f->ctxs && i < TDFUSE_CTXS; i++)
		buf_free(f->ctxs[i].buf);
	free(f->ctxs);
	free(f->queues);
	free(f->fbuf.mem);
	if (f->own_locks)
		td_blocklock_free(f->locks);
	if (f->created)
		unlink(f->path);
	free(f->path);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int tdfuse_new(struct td_vbd *vbd, const struct tdfuse_config *cfg, struct tdfuse **out)
{
	struct tdfuse *f = calloc(1, sizeof(*f));
	int err;

	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->path = strdup(cfg->path);
	f->locks = cfg->locks;
	err = f->path ? export_init(f, vbd, cfg) : -ENOMEM;
	if (!err && !f->locks) {
		err = td_blocklock_new(&f->locks);
		f->own_locks = !err;
	}
	err = err ?: pool_init(f);
	err = err ?: mountpoint_prepare(f);
	err = err ?: session_start(f);
	err = err ?: td_queue_run(f->rq, run_watch_start, f);
	if (err) {
		tdfuse_free(f);
		return err;
	}
	f->resize = (struct td_resize_notifier){ .fn = on_resize, .opaque = f };
	vbd_resize_notifier_add(vbd, &f->resize);
	log_info("fuse: the image is the file %s", f->path);
	*out = f;
	return 0;
}

void tdfuse_free(struct tdfuse *f)
{
	if (!f)
		return;
	if (f->resize.fn)
		vbd_resize_notifier_del(f->vbd, &f->resize);
	if (f->se) {
		td_queue_run(f->rq, run_stop, f);
		pthread_mutex_lock(&f->lock);
		while (f->busy)
			pthread_cond_wait(&f->cond, &f->lock);
		pthread_mutex_unlock(&f->lock);
		fuse_session_unmount(f->se);
		fuse_session_destroy(f->se);
	}
	fuse_free_mem(f);
}

const char *tdfuse_path(const struct tdfuse *f)
{
	return f->path;
}
