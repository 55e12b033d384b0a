/* SPDX-License-Identifier: MIT */
/*
 * Changing the compatibility level and lazy refcounts of a qcow2 image
 * that nothing serves, for tap-img amend (qemu-img amend's compat and
 * lazy_refcounts).  Tools only.
 *
 * Upgrading to v3 (compat=1.1) rewrites cluster 0 as QEMU writes a v3
 * header (feature name table, 112-byte header).  Downgrading to v2
 * (compat=0.10) is refused, in QEMU's words, for what v2 cannot hold:
 * refcounts other than 16 bits, incompatible features (extended L2, an
 * external data file), zstd with compressed clusters; otherwise zero
 * clusters in the active and the snapshots' tables are expanded first
 * (without a backing file an unallocated cluster reads as zeros; with one,
 * a new cluster of zeros, durable before the entry that points to it),
 * persistent bitmaps are removed (QEMU leaves them to leak), and then the
 * v2 header is written with one synced write.  Lazy refcounts are set or
 * cleared in the header (a dirty image is repaired at open, as QEMU's
 * writable open does).
 *
 * Errors are 0 or -errno, logged.
 */
#ifndef QTAP_QCOW2_AMEND_H
#define QTAP_QCOW2_AMEND_H

struct qcow2_amend_args {
	unsigned compat;    /* 0: unchanged, 2 (compat=0.10) or 3 (compat=1.1) */
	int lazy_refcounts; /* -1: unchanged, 0: off, 1: on */
};

/* qcow2_amend - apply @a to the qcow2 image @path.  0 or -errno (logged). */
int qcow2_amend(const char *path, const struct qcow2_amend_args *a);

#endif
