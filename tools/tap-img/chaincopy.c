/* SPDX-License-Identifier: MIT */
/*
 * Chain helpers shared by tap-img commit and rebase (chaincopy.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chaincopy.h"
#include "checked.h"
#include "errors.h"
#include "tap-img.h"

int img_chain_open(const char *verb, const char *fmt, const char *filename, unsigned flags,
		   struct img_chain *c)
{
	int err;

	*c = (struct img_chain){ 0 };
	err = img_open(verb, fmt, filename, flags, &c->img);
	if (err)
		return err;
	err = drv_sync_new(c->img, NULL, &c->sync);
	if (err) {
		img_err(verb, "%s: setting up I/O: %s", filename, err_str(err));
		drv_image_close(c->img);
		c->img = NULL;
	}
	return err;
}

void img_chain_close(struct img_chain *c)
{
	drv_sync_free(c->sync);
	drv_image_close(c->img);
	*c = (struct img_chain){ 0 };
}

int img_allocated_above(struct img_chain *c, struct drv_image *top, struct drv_image *base,
			uint64_t offset, uint64_t bytes, bool *alloc, uint64_t *pnum)
{
	struct drv_status st;
	struct drv_image *img;
	uint64_t n = bytes;
	int err;

	for (img = top; img && img != base; img = img->backing) {
		if (offset >= img->size_bytes) {
			/* past this image's end the chain reads zeros: held here */
			*alloc = true;
			*pnum = n;
			return 0;
		}
		n = MIN(n, img->size_bytes - offset);
		err = drv_sync_block_status_at(c->sync, img, offset, n, &st);
		if (err)
			return err;
		n = MIN(n, st.len);
		if (st.flags & DRV_BS_ALLOCATED) {
			*alloc = true;
			*pnum = n;
			return 0;
		}
	}
	*alloc = false;
	*pnum = n;
	return 0;
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

int img_copy_out(const char *verb, struct img_chain *dst, uint64_t offset, const uint8_t *buf,
		 uint64_t len)
{
	int err;

	if (all_zero(buf, len) && (dst->img->caps & DRV_CAP_WRITE_ZEROES))
		err = drv_sync_write_zeroes(dst->sync, offset, len, 0);
	else
		err = drv_sync_rw(dst->sync, DRV_OP_WRITE, offset, (void *)buf, len);
	if (err)
		img_err(verb, "error while writing %s at byte %" PRIu64 ": %s", dst->img->path,
			offset, err_str(err));
	return err;
}

int img_read(const char *verb, struct img_chain *c, uint64_t offset, uint8_t *buf, uint64_t len)
{
	uint64_t n = offset < c->img->size_bytes ? MIN(len, c->img->size_bytes - offset) : 0;
	int err = 0;

	if (n)
		err = drv_sync_rw(c->sync, DRV_OP_READ, offset, buf, n);
	if (err)
		img_err(verb, "error while reading %s at byte %" PRIu64 ": %s", c->img->path,
			offset, err_str(err));
	else
		memset(buf + n, 0, len - n);
	return err;
}

void img_progress_show(struct img_progress *p, uint64_t done, uint64_t total)
{
	double pct = total ? (double)done * 100.0 / (double)total : 100.0;

	if (!p->on || (pct < p->last + 1.0 && !(pct >= 100.0 && p->last < 100.0) && done))
		return;
	p->last = pct;
	printf("    (%3.2f/100%%)\r", pct);
	fflush(stdout);
}

void img_progress_end(struct img_progress *p)
{
	if (p->on)
		printf("\n");
}

bool img_same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}
