/* SPDX-License-Identifier: MIT */
/*
 * Block status in QEMU's terms, for the verbs whose output is made of it
 * (map, compare).  The drivers answer one image at a time with DRV_BS_*
 * flags; these helpers turn that into what QEMU's block layer answers
 * (bdrv_block_status() of one image, bdrv_block_status_above() of a chain),
 * flags and run lengths included, because qemu-img prints both and decides
 * on them (map's merging, compare -s's "block status mismatch").
 */
#ifndef QTAP_TAP_IMG_BSTATUS_H
#define QTAP_TAP_IMG_BSTATUS_H

#include <stdint.h>

#include "driver.h"
#include "sync.h"

/* QEMU's BDRV_BLOCK_* flags (values as in QEMU, not that anything depends on them). */
#define IMG_BS_DATA 0x01u
#define IMG_BS_ZERO 0x02u
#define IMG_BS_OFFSET_VALID 0x04u
#define IMG_BS_ALLOCATED 0x10u
#define IMG_BS_EOF 0x20u

struct img_bs {
	unsigned flags;		/* IMG_BS_* */
	uint64_t bytes;		/* the run from the offset asked; 0 only past the end */
	uint64_t map;		/* host offset, with IMG_BS_OFFSET_VALID */
	struct drv_image *file; /* the image that answered */
};

/*
 * The chain whose status is asked, with what QEMU's answers depend on
 * beyond the drivers': which qcow2 images were preallocated with metadata
 * (QEMU then looks for holes in the file under their data clusters).
 */
struct img_bs_chain {
	struct drv_image *top;
	struct drv_sync *sync;		      /* also for the caller's reads of the chain */
	int file_fd[DRV_CHAIN_MAX_DEPTH + 1]; /* >= 0: look at this file under data */
	uint64_t file_bytes[DRV_CHAIN_MAX_DEPTH + 1];
};

/*
 * img_bs_chain_init - set @c up for the chain @top (borrowed).  Prints
 * errors for @verb; 0 or -errno.  img_bs_chain_fini() releases it, also
 * after a failed init.
 */
int img_bs_chain_init(struct img_bs_chain *c, const char *verb, struct drv_image *top);
void img_bs_chain_fini(struct img_bs_chain *c);

/*
 * img_bs_image - bdrv_block_status() of @img (one image of @c's chain) at
 * @offset for at most @bytes: the longest run QEMU would report, with
 * ALLOCATED, ZERO for unallocated ranges no backing image covers, and EOF
 * when the run reaches the image's end.  0 or -errno (logged).
 */
int img_bs_image(struct img_bs_chain *c, struct drv_image *img, uint64_t offset, uint64_t bytes,
		 struct img_bs *out);

/*
 * img_bs_above - bdrv_block_status_above(@top, NULL): down the chain until
 * an image holds the range.  0 or -errno.
 */
int img_bs_above(struct img_bs_chain *c, struct drv_image *top, uint64_t offset, uint64_t bytes,
		 struct img_bs *out);

#endif
