/* SPDX-License-Identifier: MIT */
/*
 * The FUSE export of a tapdisk: the image as one regular file of the
 * image's size, mounted over a file (as QEMU's FUSE export does), served
 * by libfuse's low-level API on the vbd's queue threads.  Reads, writes
 * (any offset and length), fsync (a flush of the whole chain), fallocate
 * punch-hole and zero-range; it can back a loop device.
 *
 * Threads: tdfuse_new and tdfuse_free run on the control
 * thread and block; requests run on the queue threads.
 */
#ifndef QTAP_TAPDISK_FUSE_EXPORT_H
#define QTAP_TAPDISK_FUSE_EXPORT_H

#include <stdbool.h>

struct td_vbd;
struct td_blocklock;
struct tdfuse;

struct tdfuse_config {
	const char *path;	    /* a regular file to mount over; created (and removed
			   * again) when missing */
	bool readonly;		    /* refuse writes even on a writable vbd */
	struct td_blocklock *locks; /* shared with the vbd's other frontends;
				     * NULL: the export's own */
};

/*
 * tdfuse_new - mount the export over cfg->path and start serving it.
 * Returns 0 and *@out, or -errno (logged with the path).
 */
int tdfuse_new(struct td_vbd *vbd, const struct tdfuse_config *cfg, struct tdfuse **out);

/*
 * tdfuse_free - stop taking requests, let the ones in flight finish,
 * unmount (lazily, if something still holds the file open) and free.
 * NULL is a no-op.  The vbd must still be open.
 */
void tdfuse_free(struct tdfuse *f);

/* tdfuse_path - the mount point. */
const char *tdfuse_path(const struct tdfuse *f);

#endif
