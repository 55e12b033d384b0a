/* SPDX-License-Identifier: MIT */
/*
 * Creating qcow2 images (the driver's ->create), as qemu-img 7.2 does.
 */
#ifndef QTAP_QCOW2_CREATE_H
#define QTAP_QCOW2_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

/* The options qcow2 create takes, in qemu-img's "Formatting" order. */
extern const struct drv_opt_desc qcow2_create_opts[];

/*
 * qcow2_create - create (or truncate) @path as a qcow2 image of
 * args->size_bytes (rounded up to 512), with the -o options qemu-img
 * takes: cluster_size, compat, preallocation, lazy_refcounts,
 * refcount_bits, extended_l2, compression_type.  A backing file needs its
 * format; the caller has checked that the backing file opens.  Invalid
 * values and combinations are refused with qemu-img's messages before the
 * file is touched.  With preallocation=off the file is the one qemu-img
 * writes for the same options, byte for byte; with metadata, falloc and
 * full its layout and length are too.  Everything is written with
 * synchronous I/O and synced.  On a failure after the file was truncated,
 * it is removed, as qemu-img does.  Returns 0 or -errno (logged, naming
 * the option at fault).
 */
int qcow2_create(const char *path, const struct drv_create_args *args);

/* What qcow2_create_parse() finds in the options: what measure needs. */
struct qcow2_create_geom {
	unsigned version;
	uint64_t cluster_bytes;
	unsigned refcount_order;
	bool extended_l2;
	bool prealloc_data; /* falloc or full: every data cluster is allocated */
	bool has_backing;
};

/*
 * qcow2_create_parse - check the create options of @args (as qcow2_create
 * does, without the size and the combinations that only matter to a real
 * file) and say what they ask for.  Used options are marked.  0 or -EINVAL
 * (logged with @path).
 */
int qcow2_create_parse(const char *path, const struct drv_create_args *args,
		       struct qcow2_create_geom *out);

#endif
