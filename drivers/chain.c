/* SPDX-License-Identifier: MIT */
/*
 * Opening an image together with its backing chain.
 *
 * The chain is followed through ->get_backing, which names the backing image
 * as a TYPE:PATH spec (formats are never probed: a backing file's format
 * comes from the image that points to it).  Backing images are opened
 * read-only whatever the top's flags: writes only ever land in the top.
 * They are shared (DRV_OPEN_SHARED): locked as QEMU locks a backing file,
 * so that other processes may use the same base image.
 * A chain that comes back to a file already in it (the same st_dev/st_ino,
 * whatever path names it) is refused, as is one deeper than
 * DRV_CHAIN_MAX_DEPTH, because both are images a hostile guest or user can
 * craft to make us recurse forever.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "checked.h"
#include "cleanup.h"
#include "driver.h"
#include "log.h"

/* The files already in the chain, to recognise a loop whatever its path. */
struct chain_ids {
	unsigned count;
	struct {
		dev_t dev;
		ino_t ino;
	} id[DRV_CHAIN_MAX_DEPTH + 1];
};

/*
 * Remember @path's identity; -ELOOP when it is already in the chain.  Specs
 * that are not local files (nbd: URIs) cannot loop back to a file and are
 * skipped.
 */
static int chain_ids_add(struct chain_ids *ids, const char *path, const char *parent)
{
	struct stat st;
	unsigned i;

	if (stat(path, &st) < 0)
		return 0;
	for (i = 0; i < ids->count; i++) {
		if (ids->id[i].dev == st.st_dev && ids->id[i].ino == st.st_ino) {
			log_err("open chain: backing file %s of %s is already in the chain", path,
				parent);
			return -ELOOP;
		}
	}
	if (ids->count < ARRAY_SIZE(ids->id)) {
		ids->id[ids->count].dev = st.st_dev;
		ids->id[ids->count].ino = st.st_ino;
		ids->count++;
	}
	return 0;
}

/* Open the image that @img names as its backing, if any, into img->backing. */
static int chain_open_backing(struct drv_image *img, struct chain_ids *ids)
{
	CLEANUP_FREE char *spec = NULL;
	const struct drv_ops *ops;
	const char *path;
	int err;

	if (!img->ops->get_backing)
		return 0;
	err = img->ops->get_backing(img, &spec);
	if (err || !spec)
		return err;
	if (img->depth + 1 > DRV_CHAIN_MAX_DEPTH) {
		log_err("open chain: %s: backing chain deeper than %d images", img->path,
			DRV_CHAIN_MAX_DEPTH);
		return -ELOOP;
	}
	err = drv_parse_spec(spec, &ops, &path);
	if (err)
		return err;
	err = chain_ids_add(ids, path, img->path);
	if (err)
		return err;
	err = drv_image_open(ops, path, img->open_flags | DRV_OPEN_RDONLY | DRV_OPEN_SHARED,
			     &img->backing);
	if (err)
		return err;
	img->backing->depth = img->depth + 1;
	return 0;
}

int drv_chain_open(const char *spec, unsigned flags, struct drv_image **top)
{
	return drv_chain_open_opts(spec, flags, NULL, 0, top);
}

int drv_chain_open_opts(const char *spec, unsigned flags, const struct drv_opt *opts, unsigned nr,
			struct drv_image **top)
{
	struct chain_ids ids = { .count = 0 };
	const struct drv_ops *ops;
	struct drv_image *img;
	const char *path;
	int err;

	err = drv_parse_spec(spec, &ops, &path);
	if (err)
		return err;
	err = chain_ids_add(&ids, path, spec);
	if (err)
		return err;
	err = drv_image_open_opts(ops, path, flags, opts, nr, top);
	if (err)
		return err;
	for (img = *top; img; img = img->backing) {
		err = chain_open_backing(img, &ids);
		if (err) {
			drv_image_close(*top);
			*top = NULL;
			return err;
		}
	}
	return 0;
}

size_t drv_chain_req_priv_bytes(const struct drv_image *top)
{
	size_t bytes = 0;

	for (; top; top = top->backing)
		bytes = MAX(bytes, top->ops->req_priv_size);
	return bytes;
}

/* ---- block status down the chain --------------------------------------------- */

void drv_chain_walk_start(struct drv_chain_walk *w, struct drv_image *top, struct drv_req *req)
{
	*w = (struct drv_chain_walk){ .img = top, .offset = req->offset, .len = req->len };
	req->status = (struct drv_status){ 0 };
}

/* The answer: @flags for @len bytes of the asked range, held at @depth. */
static bool walk_answer(struct drv_chain_walk *w, struct drv_req *req, unsigned flags, uint64_t len,
			unsigned depth)
{
	req->offset = w->offset;
	req->len = w->len;
	req->status = (struct drv_status){ .flags = flags, .len = len, .depth = depth };
	return false;
}

bool drv_chain_walk_next(struct drv_chain_walk *w, struct drv_req *req)
{
	const struct drv_status *st = &req->status;
	struct drv_image *b = w->img->backing;
	uint64_t end = req->offset + st->len, len, from, to;

	/* what the answer says about the asked range (the ask may start earlier) */
	len = end > w->offset ? MIN(end - w->offset, w->len) : 0;
	if (!len)
		return walk_answer(w, req, DRV_BS_DATA | DRV_BS_ALLOCATED, w->len, w->img->depth);
	if ((st->flags & DRV_BS_ALLOCATED) || !b) {
		req->status.len = len;
		req->status.depth = w->img->depth;
		req->offset = w->offset;
		req->len = w->len;
		return false;
	}
	if (w->offset >= b->size_bytes) /* QEMU: a short backing image holds zeros */
		return walk_answer(w, req, DRV_BS_ZERO | DRV_BS_ALLOCATED, len, b->depth);
	len = MIN(len, b->size_bytes - w->offset);
	from = ALIGN_DOWN(w->offset, (uint64_t)b->block_bytes);
	to = ALIGN_DOWN(b->size_bytes, (uint64_t)b->block_bytes);
	to = MIN(ALIGN_UP(w->offset + len, (uint64_t)b->block_bytes), to);
	if (!(b->caps & DRV_CAP_BLOCK_STATUS) || to <= w->offset)
		return walk_answer(w, req, DRV_BS_DATA | DRV_BS_ALLOCATED, len, b->depth);
	w->img = b;
	w->len = len;
	req->offset = from;
	req->len = to - from;
	req->status = (struct drv_status){ 0 };
	return true;
}
