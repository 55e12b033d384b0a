/* SPDX-License-Identifier: MIT */
/*
 * QEMU's block status from the drivers' (see bstatus.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bstatus.h"
#include "checked.h"
#include "errors.h"
#include "qcow2/info.h"
#include "tap-img.h"

/* Is @img a qcow2 image preallocated with metadata?  Then its file is kept open in @c. */
static int detect_prealloc(struct img_bs_chain *c, const char *verb, struct drv_image *img)
{
	struct qcow2_info q;
	struct stat st;
	bool yes = false;
	int err;

	if (strcmp(img->ops->name, "qcow2") != 0)
		return 0;
	err = qcow2_info_read(img->path, &q);
	if (!err) {
		err = qcow2_info_metadata_preallocated(img->path, &q, &yes);
		qcow2_info_fini(&q);
	}
	if (!err && yes) {
		c->file_fd[img->depth] = open(img->path, O_RDONLY | O_CLOEXEC);
		err = c->file_fd[img->depth] < 0 || fstat(c->file_fd[img->depth], &st) < 0
			      ? neg_errno()
			      : 0;
		/* QEMU's file length is in whole sectors */
		if (!err)
			c->file_bytes[img->depth] = ALIGN_DOWN((uint64_t)st.st_size + 511, 512);
	}
	if (err)
		img_err(verb, "%s: %s", img->path, err_str(err));
	return err;
}

int img_bs_chain_init(struct img_bs_chain *c, const char *verb, struct drv_image *top)
{
	struct drv_image *img;
	unsigned i;
	int err;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < ARRAY_SIZE(c->file_fd); i++)
		c->file_fd[i] = -1;
	c->top = top;
	err = drv_sync_new(top, NULL, &c->sync);
	if (err) {
		img_err(verb, "could not set up I/O: %s", err_str(err));
		return err;
	}
	for (img = top; !err && img; img = img->backing)
		err = detect_prealloc(c, verb, img);
	return err;
}

void img_bs_chain_fini(struct img_bs_chain *c)
{
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(c->file_fd); i++) {
		if (c->file_fd[i] >= 0)
			close(c->file_fd[i]);
		c->file_fd[i] = -1;
	}
	drv_sync_free(c->sync);
	c->sync = NULL;
}

/* file-posix's block status of the file at @map for @bytes: ZERO or DATA, and EOF. */
static int file_status(int fd, uint64_t file_bytes, uint64_t map, uint64_t bytes, unsigned *flags,
		       uint64_t *pnum)
{
	off_t data, hole;

	*pnum = 0;
	*flags = IMG_BS_EOF;
	if (map >= file_bytes)
		return 0;
	bytes = MIN(bytes, file_bytes - map);
	data = lseek(fd, (off_t)map, SEEK_DATA);
	if (data < 0 && errno != ENXIO) {
		*flags = IMG_BS_DATA;
		*pnum = bytes;
	} else if (data < 0) {
		*flags = IMG_BS_ZERO; /* a hole to the end of the file */
		*pnum = bytes;
	} else if ((uint64_t)data == map) {
		hole = lseek(fd, (off_t)map, SEEK_HOLE);
		if (hole < 0)
			return neg_errno();
		*flags = IMG_BS_DATA;
		*pnum = MIN(bytes, (uint64_t)hole - map);
	} else {
		*flags = IMG_BS_ZERO;
		*pnum = MIN(bytes, (uint64_t)data - map);
	}
	if (map + *pnum == file_bytes)
		*flags |= IMG_BS_EOF;
	return 0;
}

/* QEMU's BDRV_BLOCK_RECURSE: data of a preallocated image may lie over a hole. */
static int recurse_file(struct img_bs_chain *c, const struct drv_image *img, struct img_bs *out)
{
	unsigned f;
	uint64_t pnum;
	int err;

	if (c->file_fd[img->depth] < 0 || !(out->flags & IMG_BS_DATA) ||
	    (out->flags & IMG_BS_ZERO) || !(out->flags & IMG_BS_OFFSET_VALID))
		return 0;
	err = file_status(c->file_fd[img->depth], c->file_bytes[img->depth], out->map, out->bytes,
			  &f, &pnum);
	if (err)
		return err;
	if ((f & IMG_BS_EOF) && (!pnum || (f & IMG_BS_ZERO))) {
		out->flags |= IMG_BS_ZERO;
	} else {
		out->bytes = pnum;
		out->flags |= f & IMG_BS_ZERO;
	}
	return 0;
}

/*
 * One driver answer in QEMU's flags.  A format without backing files (raw)
 * holds every byte it has, holes included; one with backing files holds
 * what it allocated, and what it does not hold reads as zeros when there is
 * no backing image or @offset lies past its end.
 */
static unsigned qemu_flags(const struct drv_image *img, uint64_t offset, unsigned drv)
{
	unsigned f = 0;

	if (drv & DRV_BS_DATA)
		f |= IMG_BS_DATA;
	if (drv & DRV_BS_ZERO)
		f |= IMG_BS_ZERO;
	if (drv & DRV_BS_OFFSET_VALID)
		f |= IMG_BS_OFFSET_VALID;
	if ((drv & DRV_BS_ALLOCATED) ||
	    (!img->ops->get_backing && (f & (IMG_BS_DATA | IMG_BS_ZERO))))
		f |= IMG_BS_ALLOCATED;
	if (!(f & (IMG_BS_DATA | IMG_BS_ZERO)) && img->ops->get_backing &&
	    (!img->backing || offset >= img->backing->size_bytes))
		f |= IMG_BS_ZERO;
	return f;
}

/*
 * The driver's status of @img at @pos (up to @end).  Drivers answer for
 * aligned offsets; a raw file whose length is not whole blocks ends its
 * last extent mid-block, and the rest of that block, past the end of the
 * file, reads as zeros (file-posix reports a hole there).
 */
static int level_query(struct img_bs_chain *c, struct drv_image *img, uint64_t pos, uint64_t end,
		       struct drv_status *st)
{
	uint64_t base = ALIGN_DOWN(pos, (uint64_t)img->block_bytes);
	uint64_t next = MIN(end, base + img->block_bytes);
	int err;

	if (base == pos) /* the caller trims the answer to @end */
		return drv_sync_block_status_at(
			c->sync, img, pos,
			MIN(img->size_bytes,
			    ALIGN_DOWN(end + img->block_bytes - 1, (uint64_t)img->block_bytes)) -
				pos,
			st);
	err = drv_sync_block_status_at(c->sync, img, base,
				       MIN(img->size_bytes, base + img->block_bytes) - base, st);
	if (err)
		return err;
	if (base + st->len > pos) {
		st->len = base + st->len - pos;
		st->host_offset += pos - base;
		return 0;
	}
	*st = (struct drv_status){
		.flags = DRV_BS_ZERO | DRV_BS_OFFSET_VALID,
		.len = next - pos,
		.host_offset = pos,
	};
	return 0;
}

int img_bs_image(struct img_bs_chain *c, struct drv_image *img, uint64_t offset, uint64_t bytes,
		 struct img_bs *out)
{
	uint64_t end, pos;
	struct drv_status st;
	int err;

	*out = (struct img_bs){ .file = img };
	if (offset >= img->size_bytes) {
		out->flags = IMG_BS_EOF;
		return 0;
	}
	end = offset + MIN(bytes, img->size_bytes - offset);
	for (pos = offset; pos < end; pos += st.len) {
		unsigned f;

		err = level_query(c, img, pos, end, &st);
		if (err)
			return err;
		if (st.len == 0)
			return -EIO;
		st.len = MIN(st.len, end - pos);
		f = qemu_flags(img, pos, st.flags);
		if (pos == offset) {
			out->flags = f;
			out->map = st.host_offset;
		} else if (f != out->flags ||
			   ((f & IMG_BS_OFFSET_VALID) && st.host_offset != out->map + out->bytes)) {
			break;
		}
		out->bytes += st.len;
	}
	if (!(out->flags & IMG_BS_OFFSET_VALID))
		out->map = 0;
	err = recurse_file(c, img, out);
	if (err)
		return err;
	if (offset + out->bytes == img->size_bytes)
		out->flags |= IMG_BS_EOF;
	return 0;
}

int img_bs_above(struct img_bs_chain *c, struct drv_image *top, uint64_t offset, uint64_t bytes,
		 struct img_bs *out)
{
	struct drv_image *p;
	uint64_t eof = UINT64_MAX;
	int err = img_bs_image(c, top, offset, bytes, out);

	if (err || out->bytes == 0 || (out->flags & IMG_BS_ALLOCATED))
		return err;
	if (out->flags & IMG_BS_EOF)
		eof = offset + out->bytes;
	bytes = out->bytes;
	for (p = top->backing; p; p = p->backing) {
		err = img_bs_image(c, p, offset, bytes, out);
		if (err)
			return err;
		if (out->bytes == 0) {
			/* past a short backing image: its zeros count as held there */
			*out = (struct img_bs){ .flags = IMG_BS_ZERO | IMG_BS_ALLOCATED,
						.bytes = bytes,
						.file = p };
			break;
		}
		if (out->flags & IMG_BS_ALLOCATED) {
			out->flags &= ~IMG_BS_EOF;
			break;
		}
		bytes = out->bytes;
	}
	if (offset + out->bytes == eof)
		out->flags |= IMG_BS_EOF;
	return 0;
}
