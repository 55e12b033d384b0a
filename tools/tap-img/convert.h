/* SPDX-License-Identifier: MIT */
/*
 * tap-img convert: shared between the verb (convert.c: options, opening the
 * source, creating and opening the target) and the copy engine
 * (convert-copy.c).
 */
#ifndef QTAP_TAP_IMG_CONVERT_H
#define QTAP_TAP_IMG_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "aio.h"
#include "driver.h"
#include "ratelimit.h"

struct convert_cfg {
	struct drv_image *src; /* the source chain, read-only */
	struct drv_image *dst; /* the target (and its backing chain, if any) */
	const char *src_name;  /* for messages */
	const char *dst_name;
	uint64_t size_bytes;   /* copied: the source's size */
	uint64_t buf_bytes;    /* largest request; a multiple of every alignment */
	uint64_t sparse_bytes; /* -S: zero runs this long stay holes; 0: copy everything */
	unsigned parallel;     /* -m: requests in flight, per worker */
	unsigned workers;      /* threads copying at once (each its own queue) */
	bool in_order;	       /* writes issued in offset order (not -W) */
	/* The target reads as zeros wherever nothing is written. */
	bool zero_init;
	/* -B: ranges the source's top image does not hold are left to the target's backing. */
	bool target_has_backing;
	uint64_t target_backing_bytes; /* size of the target's backing: zeros past it */
	bool flush;		       /* make the target durable at the end (not -t unsafe) */
	bool progress;		       /* -p */
	bool compress;		       /* -c: whole clusters through DRV_REQ_COMPRESSED */
	uint64_t compress_bytes;       /* the target's cluster size, with @compress */
	struct aio_ctx_opts aio;
	struct img_ratelimit *rate; /* -r: data reads wait for it; NULL: no limit */
	/* --salvage: unreadable sectors (and block status) become zeros (data), with warnings */
	bool salvage;
	bool quiet; /* -q: no salvage warnings */
	/* -C: what the source's block status calls data is written whole, not scanned for zeros */
	bool copy_offload;
};

/*
 * convert_copy - copy the source of @cfg into its target: the source's
 * block status decides what is read, zero detection of what was read
 * decides what is written, with up to cfg->parallel requests in flight on
 * one event loop.  Returns 0 or -errno (reported on stderr, naming the
 * image and the byte offset).
 */
int convert_copy(const struct convert_cfg *cfg);

#endif
