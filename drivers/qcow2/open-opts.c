// SPDX-License-Identifier: MIT
/*
 * The qcow2 driver's open-time options, QEMU's cache options: how large
 * the L2 and refcount caches are (internal.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "checked.h"
#include "log.h"
#include "optval.h"
#include "qcow2/cache.h"
#include "qcow2/internal.h"

/* QEMU's floors: two L2 tables' worth, four refcount blocks. */
#define MIN_L2_CACHE_CLUSTERS 2u
#define MIN_REFCOUNT_CACHE_CLUSTERS 4u

const struct drv_opt_desc qcow2_open_opts[] = {
	{ "l2-cache-size", DRV_OPT_SIZE, "Maximum L2 table cache size", NULL },
	{ "l2-cache-entry-size", DRV_OPT_SIZE, "Size of each entry in the L2 cache", NULL },
	{ "refcount-cache-size", DRV_OPT_SIZE, "Maximum refcount block cache size", NULL },
	{ "cache-size", DRV_OPT_SIZE,
	  "Maximum combined metadata (L2 tables and refcount blocks) "
	  "cache size",
	  NULL },
	{ NULL, 0, NULL, NULL },
};

/* Option @key as a size: *@set false when not given (drv_opts_check parsed it). */
static uint64_t opt_size(const struct drv_image *img, const char *key, bool *set)
{
	const char *v = drv_opts_get(img, key);
	uint64_t n = 0;

	*set = v != NULL;
	if (v)
		(void)optval_size(v, &n);
	return n;
}

/* QEMU's read_cache_sizes(): cache-size split between the two. */
static int split_combined(const struct drv_image *img, uint64_t combined, uint64_t max_l2,
			  uint64_t min_rc, uint64_t *l2, bool l2_set, uint64_t *rc, bool rc_set)
{
	if (l2_set && rc_set) {
		log_err("open %s: cache-size, l2-cache-size and refcount-cache-size may not be set "
			"at the same time",
			img->path);
		return -EINVAL;
	}
	if (l2_set && *l2 > combined) {
		log_err("open %s: l2-cache-size may not exceed cache-size", img->path);
		return -EINVAL;
	}
	if (rc_set && *rc > combined) {
		log_err("open %s: refcount-cache-size may not exceed cache-size", img->path);
		return -EINVAL;
	}
	if (l2_set) {
		*rc = combined - *l2;
	} else if (rc_set) {
		*l2 = combined - *rc;
	} else if (combined >= max_l2 + min_rc) {
		*l2 = max_l2;
		*rc = combined - max_l2;
	} else {
		*rc = MIN(combined, min_rc);
		*l2 = combined - *rc;
	}
	return 0;
}

static int entry_size(const struct drv_image *img, const struct qcow2_geom *g, uint64_t *out)
{
	bool set;
	uint64_t n = opt_size(img, "l2-cache-entry-size", &set);

	*out = qcow2_l2_cache_slice_bytes(g->cluster_bytes);
	if (!set)
		return 0;
	if (n < 512 || n > g->cluster_bytes || !is_power_of_2_u64(n)) {
		log_err("open %s: L2 cache entry size must be a power of two between 512 and the "
			"cluster size (%" PRIu64 ")",
			img->path, g->cluster_bytes);
		return -EINVAL;
	}
	/* the cache's unit is min(4 KiB, a cluster): larger entries are several units */
	if (n < *out) {
		log_err("open %s: l2-cache-entry-size below %" PRIu64 " bytes is not supported",
			img->path, *out);
		return -ENOTSUP;
	}
	return 0;
}

int qcow2_cache_cfg(const struct drv_image *img, const struct qcow2_geom *g, uint64_t size_bytes,
		    struct qcow2_cache_cfg *out)
{
	uint64_t cb = g->cluster_bytes, max_l2, l2, rc, combined, slices;
	bool l2_set, rc_set, combined_set;
	int err = entry_size(img, g, &out->l2_slice_bytes);

	if (err)
		return err;
	l2 = opt_size(img, "l2-cache-size", &l2_set);
	rc = opt_size(img, "refcount-cache-size", &rc_set);
	combined = opt_size(img, "cache-size", &combined_set);
	max_l2 = qcow2_size_to_l1(g->cluster_bits, g->extended_l2, size_bytes) * cb;
	if (combined_set)
		err = split_combined(img, combined, max_l2, MIN_REFCOUNT_CACHE_CLUSTERS * cb, &l2,
				     l2_set, &rc, rc_set);
	if (err)
		return err;
	slices = qcow2_l2_cache_default_slices(g, size_bytes);
	if (l2_set || combined_set) {
		l2 = MAX(l2, MIN_L2_CACHE_CLUSTERS * cb);
		slices = MAX(l2 / out->l2_slice_bytes, (uint64_t)QCOW2_L2_CACHE_MIN_SLICES);
	}
	if (slices > INT_MAX) {
		log_err("open %s: L2 cache size too big", img->path);
		return -EINVAL;
	}
	out->l2_slices = (unsigned)slices;
	/* 0: the refcount layer's default */
	out->rc_cache_bytes =
		rc_set || combined_set ? MAX(rc, MIN_REFCOUNT_CACHE_CLUSTERS * cb) : 0;
	log_dbg(LOG_F_QCOW2,
		"open %s: L2 cache %u slices of %" PRIu64 " bytes, refcount cache %" PRIu64,
		img->path, out->l2_slices, out->l2_slice_bytes, out->rc_cache_bytes);
	return 0;
}
