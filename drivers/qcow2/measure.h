/* SPDX-License-Identifier: MIT */
/*
 * The sizes qemu-img measure reports for a qcow2 image (QEMU's
 * qcow2_measure(), qcow2_calc_prealloc_size(), qcow2_refcount_metadata_size()
 * and qcow2_get_persistent_dirty_bitmap_size()), so that tap-img measure
 * gives the same numbers.  Pure arithmetic.
 */
#ifndef QTAP_QCOW2_MEASURE_H
#define QTAP_QCOW2_MEASURE_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2/create.h"

/*
 * qcow2_measure_prealloc_bytes - the size of an image of @virtual_bytes
 * with every cluster allocated: header, L1, L2, refcount metadata, data.
 */
uint64_t qcow2_measure_prealloc_bytes(const struct qcow2_create_geom *g, uint64_t virtual_bytes);

/*
 * qcow2_measure_refcount_bytes - refcount table and blocks needed to count
 * @clusters clusters and themselves (QEMU's fixed point).
 */
uint64_t qcow2_measure_refcount_bytes(uint64_t clusters, uint64_t cluster_bytes,
				      unsigned refcount_order);

/*
 * qcow2_measure_bitmap_bytes - one persistent bitmap named @name_len bytes
 * of granularity @gran over @disk_bytes: its data (all of it, as QEMU
 * assumes) and its table, in clusters of @cluster_bytes; *@dir_bytes grows
 * by its directory entry (the caller rounds the sum up to clusters).
 */
uint64_t qcow2_measure_bitmap_bytes(uint64_t disk_bytes, uint64_t gran, uint64_t name_len,
				    uint64_t cluster_bytes, uint64_t *dir_bytes);

#endif
