/* SPDX-License-Identifier: MIT */
/*
 * What `qemu-img info` reports about a qcow2 image, read the way qemu-img
 * reads it for that: the header, the internal snapshot table and the
 * persistent bitmap directory, without opening the image as a disk (no
 * L1 or refcount table, no backing file; a backing file without a
 * recorded format is reported, not refused).  For tools; the image is
 * only read.
 */
#ifndef QTAP_QCOW2_INFO_H
#define QTAP_QCOW2_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2/bitmap-fmt.h"
#include "qcow2/format.h"
#include "qcow2/snapshot-fmt.h"

struct qcow2_info {
	struct qcow2_header hdr;
	struct qcow2_snapshot *snapshots; /* hdr.nb_snapshots of them */
	/* The bitmap directory, when the image has one that QEMU honours. */
	struct qcow2_bitmap *bitmaps;
	unsigned nb_bitmaps;
};

/*
 * qcow2_info_probe - whether the first @len bytes of a file are a qcow2
 * header QEMU's format probe would claim (magic, version 2 or more).
 */
bool qcow2_info_probe(const void *buf, size_t len);

/*
 * qcow2_info_read - read @path's header, snapshot table and bitmap
 * directory into *@out (release with qcow2_info_fini()).  Returns 0 or
 * -errno: -EINVAL for what qemu-img would refuse to open ("not in qcow2
 * format", a malformed header or table), -ENOTSUP (unknown incompatible
 * features), I/O errors.  Logged, with the path.
 */
int qcow2_info_read(const char *path, struct qcow2_info *out);

/*
 * qcow2_info_metadata_preallocated - QEMU's qcow2_detect_metadata_preallocation():
 * do clearly more clusters of the file have a refcount than the file has
 * blocks on disk (ignoring the rest once the threshold is reached)?  Such
 * an image was preallocated with metadata, and QEMU's block status then
 * looks at the file under data clusters for holes, which read as zeros
 * (qemu-img map shows them).  @info is @path's, from qcow2_info_read().
 * 0 and *@out, or -errno (logged).
 */
int qcow2_info_metadata_preallocated(const char *path, const struct qcow2_info *info, bool *out);

/*
 * qcow2_info_read_header - parse cluster 0 of the open file @f (@path for
 * messages) into *@h, as qcow2_info_read() does.  0 or -errno (logged).
 */
struct aio_file;
int qcow2_info_read_header(struct aio_file *f, const char *path, struct qcow2_header *h);

/* qcow2_info_fini - free what qcow2_info_read() filled; zeroed: no-op. */
void qcow2_info_fini(struct qcow2_info *info);

#endif
