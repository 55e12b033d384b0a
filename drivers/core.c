/* SPDX-License-Identifier: MIT */
/*
 * The driver core: opening and closing one image, per-queue set-up, spec
 * parsing, and drv_submit(), the single gate every request passes before it
 * reaches a driver.
 *
 * drv_submit() is where untrusted requests (guest rings, NBD clients, tool
 * command lines) meet the image: bounds, alignment, read-only and the iovec
 * total are checked here once, so drivers can trust req->offset/len and
 * never repeat the checks.  The backing chain lives in chain.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "driver.h"
#include "errors.h"
#include "imglock.h"
#include "log.h"

static const char *const drv_op_names[] = {
	[DRV_OP_READ] = "read",
	[DRV_OP_WRITE] = "write",
	[DRV_OP_FLUSH] = "flush",
	[DRV_OP_DISCARD] = "discard",
	[DRV_OP_WRITE_ZEROES] = "write_zeroes",
	[DRV_OP_BLOCK_STATUS] = "block_status",
	[DRV_OP_BITMAP_STATUS] = "bitmap_status",
};

static const char *op_name(enum drv_op op)
{
	if ((unsigned)op < ARRAY_SIZE(drv_op_names))
		return drv_op_names[op];
	return "unknown";
}

void drv_req_complete(struct drv_req *req, int err)
{
	req->done(req, err);
}

int drv_parse_spec(const char *spec, const struct drv_ops **ops, const char **path)
{
	const char *colon = strchr(spec, ':');
	char type[32];
	size_t type_len;

	if (!colon || colon == spec || colon[1] == '\0') {
		log_err("image spec '%s': expected TYPE:PATH", spec);
		return -EINVAL;
	}
	type_len = (size_t)(colon - spec);
	if (type_len >= sizeof(type)) {
		log_err("image spec '%s': no such driver", spec);
		return -ENOENT;
	}
	memcpy(type, spec, type_len);
	type[type_len] = '\0';
	*ops = drv_find(type);
	if (!*ops) {
		log_err("image spec '%s': no driver '%s'", spec, type);
		return -ENOENT;
	}
	*path = colon + 1;
	return 0;
}

/* What drivers promise after ->open; checked so the core's maths can rely on it. */
static int image_check_geometry(struct drv_image *img)
{
	if (!is_power_of_2_u64(img->block_bytes)) {
		log_err("open %s: driver %s reported block size %u, not a power of two", img->path,
			img->ops->name, img->block_bytes);
		return -EIO;
	}
	if (img->phys_block_bytes < img->block_bytes)
		img->phys_block_bytes = img->block_bytes;
	return 0;
}

/* A zeroed image with its path and private state, not yet opened. */
static struct drv_image *image_alloc(const struct drv_ops *ops, const char *path, unsigned flags)
{
	struct drv_image *img = calloc(1, sizeof(*img));

	if (!img)
		goto err;
	img->ops = ops;
	img->open_flags = flags;
	img->path = strdup(path);
	if (!img->path)
		goto err_free_img;
	if (ops->priv_size) {
		img->priv = calloc(1, ops->priv_size);
		if (!img->priv)
			goto err_free_path;
	}
	return img;

err_free_path:
	free(img->path);
err_free_img:
	free(img);
err:
	log_err("open %s: out of memory", path);
	return NULL;
}

static void image_free(struct drv_image *img)
{
	free(img->priv);
	free(img->path);
	free(img);
}

int drv_image_open(const struct drv_ops *ops, const char *path, unsigned flags,
		   struct drv_image **out)
{
	return drv_image_open_opts(ops, path, flags, NULL, 0, out);
}

int drv_image_open_opts(const struct drv_ops *ops, const char *path, unsigned flags,
			const struct drv_opt *opts, unsigned nr, struct drv_image **out)
{
	struct drv_image *img;
	int err = drv_opts_check(ops, path, opts, nr, NULL);

	if (err)
		return err;
	img = image_alloc(ops, path, flags);
	if (!img)
		return -ENOMEM;
	img->opts = opts;
	img->nr_opts = nr;
	err = ops->open(img, path, flags);
	img->opts = NULL;
	img->nr_opts = 0;
	if (err) {
		image_free(img);
		return err;
	}
	err = image_check_geometry(img);
	if (err) {
		ops->close(img);
		image_free(img);
		return err;
	}
	*out = img;
	return 0;
}

unsigned drv_aio_file_flags(unsigned flags)
{
	unsigned aio_flags = 0;

	if (flags & DRV_OPEN_RDONLY)
		aio_flags |= AIO_FILE_RDONLY;
	if (flags & DRV_OPEN_BUFFERED)
		aio_flags |= AIO_FILE_BUFFERED;
	if (flags & DRV_OPEN_UNSAFE)
		aio_flags |= AIO_FILE_NOSYNC;
	if (flags & DRV_OPEN_DIRECT_IF_COLD)
		aio_flags |= AIO_FILE_DIRECT_IF_COLD;
	return aio_flags;
}

int drv_image_lock(int fd, const char *path, unsigned flags)
{
	if (flags & DRV_OPEN_NOLOCK)
		return 0;
	if (!(flags & DRV_OPEN_RDONLY)) {
		if (flags & DRV_OPEN_SHARED) {
			log_err("open %s: sharing the image with other writers needs a read-only "
				"open",
				path);
			return -EINVAL;
		}
		return imglock_take(fd, path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_RW);
	}
	if (flags & DRV_OPEN_SHARED)
		return imglock_take(fd, path, IMGLOCK_PERM_SHARED, IMGLOCK_SHARED_SHARED);
	return imglock_take(fd, path, IMGLOCK_PERM_RO, IMGLOCK_SHARED_RO);
}

/* Tear down @img's queues: queue_fini, then the core-allocated state. */
static void image_queues_fini(struct drv_image *img)
{
	unsigned i;

	if (!img->qpriv)
		return;
	for (i = 0; i < img->nr_queues; i++) {
		if (img->ops->queue_fini)
			img->ops->queue_fini(img, &img->queues[i]);
		free(img->qpriv[i]);
	}
	free(img->qpriv);
	img->qpriv = NULL;
	img->queues = NULL;
	img->nr_queues = 0;
}

void drv_image_close(struct drv_image *img)
{
	while (img) {
		struct drv_image *backing = img->backing;

		image_queues_fini(img);
		img->ops->close(img);
		image_free(img);
		img = backing;
	}
}

/* Set up queues[0..nr-1] on one image; on failure nothing is left set up. */
static int image_queues_init(struct drv_image *img, struct drv_queue *queues, unsigned nr)
{
	const struct drv_ops *ops = img->ops;
	unsigned i;
	int err;

	img->qpriv = calloc(nr, sizeof(*img->qpriv));
	if (!img->qpriv) {
		log_err("queue set-up %s: out of memory", img->path);
		return -ENOMEM;
	}
	img->queues = queues;
	for (i = 0; i < nr; i++) {
		if (ops->queue_priv_size) {
			img->qpriv[i] = calloc(1, ops->queue_priv_size);
			if (!img->qpriv[i]) {
				log_err("queue set-up %s: out of memory", img->path);
				err = -ENOMEM;
				goto err_unwind;
			}
		}
		err = ops->queue_init ? ops->queue_init(img, &queues[i]) : 0;
		if (err) {
			free(img->qpriv[i]);
			img->qpriv[i] = NULL;
			goto err_unwind;
		}
		img->nr_queues = i + 1;
	}
	return 0;

err_unwind:
	image_queues_fini(img);
	return err;
}

int drv_queues_init(struct drv_image *top, struct drv_queue *queues, unsigned nr)
{
	struct drv_image *img;
	unsigned i;
	int err;

	if (nr == 0 || top->qpriv) {
		log_err("queue set-up %s: %s", top->path,
			nr == 0 ? "no queues" : "queues already set up");
		return -EINVAL;
	}
	for (i = 0; i < nr; i++) {
		if (queues[i].index != i) {
			log_err("queue set-up %s: queue %u has index %u", top->path, i,
				queues[i].index);
			return -EINVAL;
		}
	}
	for (img = top; img; img = img->backing) {
		err = image_queues_init(img, queues, nr);
		if (err) {
			drv_queues_fini(top);
			return err;
		}
	}
	return 0;
}

void drv_queues_fini(struct drv_image *top)
{
	for (; top; top = top->backing)
		image_queues_fini(top);
}

typedef void drv_op_fn(struct drv_image *img, struct drv_req *req);

/* The driver member serving @op, or NULL when @img cannot do it. */
static drv_op_fn *op_handler(const struct drv_image *img, enum drv_op op)
{
	const struct drv_ops *ops = img->ops;

	switch (op) {
	case DRV_OP_READ:
		return ops->read;
	case DRV_OP_WRITE:
		return ops->write;
	case DRV_OP_FLUSH:
		return ops->flush;
	case DRV_OP_DISCARD:
		return img->caps & DRV_CAP_DISCARD ? ops->discard : NULL;
	case DRV_OP_WRITE_ZEROES:
		return img->caps & DRV_CAP_WRITE_ZEROES ? ops->write_zeroes : NULL;
	case DRV_OP_BLOCK_STATUS:
		return img->caps & DRV_CAP_BLOCK_STATUS ? ops->block_status : NULL;
	case DRV_OP_BITMAP_STATUS:
		return ops->bitmap_status;
	}
	return NULL;
}

static bool op_modifies(enum drv_op op)
{
	return op == DRV_OP_WRITE || op == DRV_OP_DISCARD || op == DRV_OP_WRITE_ZEROES;
}

/* A compressed write covers one whole unit (the disk's last may be short). */
static int compressed_check(const struct drv_image *img, const struct drv_req *req)
{
	uint64_t unit = img->compress_bytes;

	if (req->op != DRV_OP_WRITE || !img->ops->write_compressed || !unit)
		return -EOPNOTSUPP;
	if (req->offset % unit || req->len != MIN(unit, img->size_bytes - req->offset))
		return -EINVAL;
	return 0;
}

/* 0 when @req is well-formed for @img, else the -errno to complete it with. */
static int submit_check(const struct drv_image *img, const struct drv_req *req)
{
	if (!req->q || req->q->index >= img->nr_queues || !img->qpriv)
		return -EINVAL;
	if (!op_handler(img, req->op))
		return -EOPNOTSUPP;
	if (op_modifies(req->op) && (img->open_flags & DRV_OPEN_RDONLY))
		return -EROFS;
	if (req->op == DRV_OP_FLUSH)
		return 0;
	if (!range_within(req->offset, req->len, img->size_bytes))
		return -EINVAL;
	if (!is_aligned_u64(req->offset, img->block_bytes) ||
	    !is_aligned_u64(req->len, img->block_bytes))
		return -EINVAL;
	if ((req->op == DRV_OP_BLOCK_STATUS || req->op == DRV_OP_BITMAP_STATUS) && req->len == 0)
		return -EINVAL;
	if (req->op == DRV_OP_BITMAP_STATUS && !req->bitmap)
		return -EINVAL;
	if ((req->flags & DRV_REQ_COMPRESSED) && compressed_check(img, req))
		return compressed_check(img, req);
	if ((req->op == DRV_OP_READ || req->op == DRV_OP_WRITE) &&
	    !buf_iov_total_is(req->iov, req->iovcnt, req->len))
		return -EINVAL;
	return 0;
}

void drv_submit(struct drv_image *img, struct drv_req *req)
{
	int err = submit_check(img, req);

	if (err) {
		log_err_ratelimited("%s %s: offset %" PRIu64 " len %" PRIu64 " refused: %s",
				    op_name(req->op), img->path, req->offset, req->len,
				    err_str(err));
		drv_req_complete(req, err);
		return;
	}
	/* Zero-length transfers are valid (NBD allows them) and touch nothing. */
	if (req->len == 0 && req->op != DRV_OP_FLUSH) {
		drv_req_complete(req, 0);
		return;
	}
	if (req->flags & DRV_REQ_COMPRESSED)
		img->ops->write_compressed(img, req);
	else
		op_handler(img, req->op)(img, req);
}
