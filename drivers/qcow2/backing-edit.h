/* SPDX-License-Identifier: MIT */
/*
 * Changing the backing file a qcow2 image names, for tap-img rebase (and
 * its -u): QEMU's qcow2_change_backing_file.  Tools only; the image must
 * not be in use (it is locked as a writer for the change).
 */
#ifndef QTAP_QCOW2_BACKING_EDIT_H
#define QTAP_QCOW2_BACKING_EDIT_H

/*
 * qcow2_backing_change - make @path's header name @name (NULL or "": no
 * backing file) of format @format (NULL: no format extension).  Cluster 0
 * is rewritten whole, as QEMU's header update does, and synced.  -EINVAL
 * for a name over 1023 bytes or a format over 15, -ENOTSUP for an image
 * whose data file is raw (its backing file must stay its data file), -ENOSPC
 * when the header no longer fits in cluster 0; logged.
 */
int qcow2_backing_change(const char *path, const char *name, const char *format);

#endif
