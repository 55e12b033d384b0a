/* SPDX-License-Identifier: MIT */
/*
 * Synchronous I/O on a qcow2 image file, for the places that may block:
 * open and close on the control thread, the metadata thread of a writable
 * image (meta.c), and the offline tools (create, check).
 *
 * The file may be O_DIRECT, so every transfer goes through a buffer
 * aligned for it; writes that do not cover whole aligned blocks read the
 * blocks around them first (the caller guarantees nothing else writes
 * those blocks concurrently: metadata is written by one thread).  Bytes
 * past the end of the file read as zeros, as QEMU reads them.
 *
 * Errors are returned, not logged: the caller knows what it was reading.
 */
#ifndef QTAP_QCOW2_SYNC_IO_H
#define QTAP_QCOW2_SYNC_IO_H

#include <stddef.h>
#include <stdint.h>

struct aio_file;

/* qcow2_pread - @len bytes at @off into @buf.  0 or -errno. */
int qcow2_pread(struct aio_file *f, uint64_t off, void *buf, size_t len);

/* qcow2_pwrite - @len bytes of @buf at @off (the file grows as needed).  0 or -errno. */
int qcow2_pwrite(struct aio_file *f, uint64_t off, const void *buf, size_t len);

/* qcow2_fsync - fdatasync the file, unless it was opened AIO_FILE_NOSYNC.  0 or -errno. */
int qcow2_fsync(struct aio_file *f);

/* qcow2_ftruncate - set @f's size to @size bytes (recorded, as the writes). */
int qcow2_ftruncate(struct aio_file *f, uint64_t size);

/*
 * qcow2_fgrow - allocate [@from, @to) of @f (fallocate, mode 0: the size
 * becomes at least @to, the new space reads as zeros; recorded as a size
 * change).  0 or -errno (-EOPNOTSUPP where the file system cannot).
 */
int qcow2_fgrow(struct aio_file *f, uint64_t from, uint64_t to);

#endif
