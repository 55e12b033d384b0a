/* SPDX-License-Identifier: MIT */
/*
 * What tap-img commit and rebase share: opening one image of a chain on
 * its own, asking whether a range is held above a given image, copying a
 * range from one chain into another image, and qemu-img's progress line.
 */
#ifndef QTAP_TAP_IMG_CHAINCOPY_H
#define QTAP_TAP_IMG_CHAINCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"
#include "sync.h"

/* An open chain and the synchronous queue tap-img drives it with. */
struct img_chain {
	struct drv_image *img;
	struct drv_sync *sync;
};

/*
 * img_chain_open - img_open() of @filename (format @fmt) with @flags, and
 * its drv_sync.  Prints errors for @verb; 0 or -errno.
 */
int img_chain_open(const char *verb, const char *fmt, const char *filename, unsigned flags,
		   struct img_chain *c);

/* img_chain_close - free the sync, close the chain; a zeroed one is a no-op. */
void img_chain_close(struct img_chain *c);

/*
 * img_allocated_above - QEMU's bdrv_is_allocated_above(@top, @base): is
 * the run at @offset held by an image of @c's chain from @top down to,
 * not including, @base (NULL: the whole chain)?  *@pnum gets the run's
 * length (at most @bytes) over which the answer holds.  A range past the
 * end of an image above @base counts as held (it reads as zeros there).
 */
int img_allocated_above(struct img_chain *c, struct drv_image *top, struct drv_image *base,
			uint64_t offset, uint64_t bytes, bool *alloc, uint64_t *pnum);

/*
 * img_copy_out - write @len bytes of @buf at @offset into @dst; a buffer of
 * zeros becomes a zero write where @dst has them.  0 or -errno (printed
 * for @verb).
 */
int img_copy_out(const char *verb, struct img_chain *dst, uint64_t offset, const uint8_t *buf,
		 uint64_t len);

/* img_read - @len bytes at @offset of @c into @buf; zeros past its end.  Printed for @verb. */
int img_read(const char *verb, struct img_chain *c, uint64_t offset, uint8_t *buf, uint64_t len);

/* qemu-img's progress, "    (12.34/100%)\r" every percent on stdout. */
struct img_progress {
	bool on;
	double last;
};
void img_progress_show(struct img_progress *p, uint64_t done, uint64_t total);
void img_progress_end(struct img_progress *p);

/* img_same_file - @a and @b name one file (after symlinks and relative paths). */
bool img_same_file(const char *a, const char *b);

#endif
