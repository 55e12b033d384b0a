// SPDX-License-Identifier: MIT
/*
 * Blocking reads and writes through an aligned bounce buffer (sync-io.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "aio-rec.h"
#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "qcow2/sync-io.h"

static uint64_t file_align(const struct aio_file *f)
{
	return MAX(MAX((uint64_t)f->io_align, (uint64_t)f->mem_align), 512u);
}

/* Read [@start, @end) into @b; zeros past the end of the file. */
static int read_blocks(struct aio_file *f, uint64_t start, uint64_t end, uint8_t *b)
{
	uint64_t done = 0;

	while (start + done < end) {
		ssize_t n = pread(f->fd, b + done, end - start - done, (off_t)(start + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return neg_errno();
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	memset(b + done, 0, end - start - done);
	return 0;
}

static int write_blocks(struct aio_file *f, uint64_t start, uint64_t end, const uint8_t *b)
{
	uint64_t done = 0;

	while (start + done < end) {
		ssize_t n = pwrite(f->fd, b + done, end - start - done, (off_t)(start + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return neg_errno();
		if (n == 0)
			return -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

/* The aligned block range around [@off, @off + @len): 0 or -EINVAL. */
static int block_range(const struct aio_file *f, uint64_t off, size_t len, uint64_t *start,
		       uint64_t *end)
{
	uint64_t align = file_align(f);

	*start = ALIGN_DOWN(off, align);
	if (ck_add(off, (uint64_t)len, end) || ck_align_up_u64(*end, align, end))
		return -EINVAL;
	return 0;
}

int qcow2_pread(struct aio_file *f, uint64_t off, void *buf, size_t len)
{
	uint64_t start, end;
	uint8_t *bounce;
	int err;

	if (block_range(f, off, len, &start, &end))
		return -EINVAL;
	bounce = buf_alloc(end - start, file_align(f));
	if (!bounce)
		return -ENOMEM;
	err = read_blocks(f, start, end, bounce);
	if (!err)
		memcpy(buf, bounce + (off - start), len);
	buf_free(bounce);
	return err;
}

int qcow2_pwrite(struct aio_file *f, uint64_t off, const void *buf, size_t len)
{
	uint64_t start, end, align = file_align(f);
	uint8_t *bounce;
	int err = 0;

	if (block_range(f, off, len, &start, &end))
		return -EINVAL;
	bounce = buf_alloc(end - start, align);
	if (!bounce)
		return -ENOMEM;
	/* partial first or last block: keep the bytes around the write */
	if (start != off)
		err = read_blocks(f, start, start + align, bounce);
	if (!err && end != off + len && (end - align > start || start == off))
		err = read_blocks(f, end - align, end, bounce + (end - align - start));
	if (!err) {
		uint64_t rec_id = 0;

		if (aio_rec_on())
			rec_id = aio_rec_file_issue(f, AIO_REC_WRITE, off, len,
						    &(struct iovec){ (void *)buf, len }, 1);
		memcpy(bounce + (off - start), buf, len);
		err = write_blocks(f, start, end, bounce);
		aio_rec_file_done(rec_id, err);
	}
	buf_free(bounce);
	return err;
}

int qcow2_fsync(struct aio_file *f)
{
	uint64_t rec_id;
	int err = 0;

	if (f->nosync) /* cache=unsafe: no ordering is kept, as in QEMU */
		return 0;
	rec_id = aio_rec_on() ? aio_rec_file_issue(f, AIO_REC_FSYNC, 0, 0, NULL, 0) : 0;
	while (fdatasync(f->fd) < 0) {
		if (errno != EINTR) {
			err = neg_errno();
			break;
		}
	}
	aio_rec_file_done(rec_id, err);
	return err;
}

int qcow2_ftruncate(struct aio_file *f, uint64_t size)
{
	uint64_t rec_id = aio_rec_on() ? aio_rec_file_issue(f, AIO_REC_TRUNC, size, 0, NULL, 0) : 0;
	int err = ftruncate(f->fd, (off_t)size) < 0 ? neg_errno() : 0;

	aio_rec_file_done(rec_id, err);
	return err;
}

int qcow2_fgrow(struct aio_file *f, uint64_t from, uint64_t to)
{
	/* new space reads as zeros, as a larger size would: recorded as that */
	uint64_t rec_id = aio_rec_on() ? aio_rec_file_issue(f, AIO_REC_TRUNC, to, 0, NULL, 0) : 0;
	int err = 0;

	while (fallocate(f->fd, 0, (off_t)from, (off_t)(to - from)) < 0) {
		if (errno != EINTR) {
			err = neg_errno();
			break;
		}
	}
	aio_rec_file_done(rec_id, err);
	return err;
}
