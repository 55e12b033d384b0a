/* SPDX-License-Identifier: MIT */
/*
 * The raw driver: a regular file or a block device whose bytes are the
 * guest's bytes.  Spec types "raw:" and blktap's "aio:" (an alias in
 * registry.c).
 *
 * Every data-path request becomes one lib/aio request on the queue's aio
 * context, kept in the request's driver scratch (req->priv), so nothing is
 * allocated per request.  lib/aio handles O_DIRECT alignment (bouncing what
 * the caller did not align) and the fallback to buffered I/O on file systems
 * that refuse O_DIRECT.
 *
 * The guest-visible block size is the file's O_DIRECT alignment, never less
 * than 512: a buffered file has no alignment, but guests and NBD clients
 * expect sector-sized blocks, and a smaller size would only invite
 * read-modify-write in lib/aio.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "driver.h"
#include "errors.h"
#include "log.h"
#include "registry.h"

#define RAW_MIN_BLOCK_BYTES 512u
#define RAW_DEFAULT_PHYS_BLOCK_BYTES 4096u

struct raw_image {
	struct aio_file *file;
};

/* Driver scratch of one request (req->priv). */
struct raw_req {
	struct aio_req aio;
	struct drv_req *req;
	bool flush_after; /* FUA: follow the write with an fdatasync */
};

/* ---- open / close ------------------------------------------------------- */

static int raw_blockdev_geometry(struct drv_image *img, int fd)
{
	uint64_t size_bytes;
	unsigned int phys_bytes;

	if (ioctl(fd, BLKGETSIZE64, &size_bytes) < 0) {
		int err = neg_errno();

		log_err("open %s: BLKGETSIZE64: %s", img->path, err_str(err));
		return err;
	}
	img->size_bytes = size_bytes;
	/* Old kernels and some drivers lack BLKPBSZGET: assume 4k sectors. */
	if (ioctl(fd, BLKPBSZGET, &phys_bytes) < 0 || !is_power_of_2_u64(phys_bytes))
		phys_bytes = RAW_DEFAULT_PHYS_BLOCK_BYTES;
	img->phys_block_bytes = phys_bytes;
	return 0;
}

/* Size and block sizes of the open file. */
static int raw_geometry(struct drv_image *img, struct raw_image *ri)
{
	struct stat st;
	int err;

	if (fstat(ri->file->fd, &st) < 0) {
		err = neg_errno();
		log_err("open %s: fstat: %s", img->path, err_str(err));
		return err;
	}
	img->block_bytes = MAX(ri->file->io_align, RAW_MIN_BLOCK_BYTES);
	if (S_ISBLK(st.st_mode)) {
		err = raw_blockdev_geometry(img, ri->file->fd);
		if (err)
			return err;
	} else if (S_ISREG(st.st_mode)) {
		/*
		 * As QEMU: a file that ends inside a sector shows the whole sector,
		 * whose bytes past the end of the file read as zeros.  A backing
		 * file of 1000 bytes must give its overlay all 1000.
		 */
		img->size_bytes = ((uint64_t)st.st_size + RAW_MIN_BLOCK_BYTES - 1) &
				  ~(uint64_t)(RAW_MIN_BLOCK_BYTES - 1);
		img->phys_block_bytes = RAW_DEFAULT_PHYS_BLOCK_BYTES;
	} else {
		log_err("open %s: not a regular file or a block device", img->path);
		return -EINVAL;
	}
	img->phys_block_bytes = MAX(img->phys_block_bytes, img->block_bytes);
	if (!is_aligned_u64(img->size_bytes, img->block_bytes))
		log_warn("open %s: size %" PRIu64 " is not a multiple of the block size %u; "
			 "the last %" PRIu64 " bytes cannot be accessed",
			 img->path, img->size_bytes, img->block_bytes,
			 img->size_bytes % img->block_bytes);
	return 0;
}

static int raw_open(struct drv_image *img, const char *path, unsigned flags)
{
	struct raw_image *ri = img->priv;
	unsigned aio_flags = 0;
	int err;

	if (flags & DRV_OPEN_RDONLY)
		aio_flags |= AIO_FILE_RDONLY;
	if (flags & DRV_OPEN_BUFFERED)
		aio_flags |= AIO_FILE_BUFFERED;
	if (flags & DRV_OPEN_UNSAFE)
		aio_flags |= AIO_FILE_NOSYNC;
	if (flags & DRV_OPEN_DIRECT_IF_COLD)
		aio_flags |= AIO_FILE_DIRECT_IF_COLD;
	err = aio_file_open(path, aio_flags, &ri->file);
	if (err)
		return err;
	err = drv_image_lock(ri->file->fd, path, flags);
	if (!err)
		err = raw_geometry(img, ri);
	if (err) {
		aio_file_close(ri->file);
		ri->file = NULL;
		return err;
	}
	img->caps = DRV_CAP_DISCARD | DRV_CAP_WRITE_ZEROES | DRV_CAP_BLOCK_STATUS | DRV_CAP_FUA;
	log_dbg(LOG_F_RAW, "open %s: %" PRIu64 " bytes, block %u, physical block %u, %s", path,
		img->size_bytes, img->block_bytes, img->phys_block_bytes,
		ri->file->direct ? "O_DIRECT" : "buffered");
	return 0;
}

static void raw_close(struct drv_image *img)
{
	struct raw_image *ri = img->priv;

	aio_file_close(ri->file);
	ri->file = NULL;
}

/* ---- data path ---------------------------------------------------------- */

static void raw_aio_done(struct aio_req *aio, int err)
{
	struct raw_req *rr = aio->opaque;
	struct drv_req *req = rr->req;

	if (err) {
		/* lib/aio detected it and logged it, with the file and offset. */
		drv_req_complete(req, err);
		return;
	}
	if (rr->flush_after) {
		/* FUA: the data is written; make it durable before completing. */
		rr->flush_after = false;
		aio->op = AIO_OP_FSYNC;
		aio->flags = 0;
		aio->iov = NULL;
		aio->iovcnt = 0;
		aio_submit(req->q->aio, aio);
		return;
	}
	drv_req_complete(req, 0);
}

/* Turn @req into an aio request of type @op and submit it. */
static void raw_submit(struct drv_image *img, struct drv_req *req, enum aio_op op)
{
	struct raw_image *ri = img->priv;
	struct raw_req *rr = req->priv;

	rr->req = req;
	rr->flush_after = (req->flags & DRV_REQ_FUA) &&
			  (op == AIO_OP_WRITE || op == AIO_OP_WRITE_ZEROES || op == AIO_OP_DISCARD);
	rr->aio = (struct aio_req){
		.file = ri->file,
		.op = op,
		.flags = op == AIO_OP_READ ? AIO_F_ZERO_EOF : 0, /* the last partial sector */
		.offset = req->offset,
		.len = op == AIO_OP_FSYNC ? 0 : req->len,
		.iov = req->iov,
		.iovcnt = req->iovcnt,
		.done = raw_aio_done,
		.opaque = rr,
	};
	aio_submit(req->q->aio, &rr->aio);
}

static void raw_read(struct drv_image *img, struct drv_req *req)
{
	raw_submit(img, req, AIO_OP_READ);
}

static void raw_write(struct drv_image *img, struct drv_req *req)
{
	raw_submit(img, req, AIO_OP_WRITE);
}

static void raw_flush(struct drv_image *img, struct drv_req *req)
{
	raw_submit(img, req, AIO_OP_FSYNC);
}

static void raw_discard(struct drv_image *img, struct drv_req *req)
{
	raw_submit(img, req, AIO_OP_DISCARD);
}

/*
 * Punching a hole is the cheapest way to zero a file range and reads back
 * as zeros, so use it when the caller allows unmapping.  A block device's
 * discard gives no such guarantee everywhere, so it always zeroes.
 */
static void raw_write_zeroes(struct drv_image *img, struct drv_req *req)
{
	struct raw_image *ri = img->priv;
	bool unmap = (req->flags & DRV_REQ_MAY_UNMAP) && !ri->file->is_blockdev;

	raw_submit(img, req, unmap ? AIO_OP_DISCARD : AIO_OP_WRITE_ZEROES);
}

/*
 * Where the next data or hole starts, at or after @offset.  ENXIO means
 * "none before end of file"; EINVAL/EOPNOTSUPP mean the file system cannot
 * tell, so everything counts as data.
 */
static int raw_seek(int fd, uint64_t offset, int whence, uint64_t end, uint64_t *out)
{
	off_t pos = lseek(fd, (off_t)offset, whence);

	if (pos >= 0) {
		*out = MIN((uint64_t)pos, end);
		return 0;
	}
	if (errno == ENXIO) {
		*out = end;
		return 0;
	}
	return neg_errno();
}

/*
 * Block status through SEEK_DATA/SEEK_HOLE.  The lseek is synchronous: it
 * reads only the file system's extent tree, which is in memory for a file
 * we are doing I/O on, and there is no asynchronous lseek in either aio
 * engine.  QEMU's file-posix makes the same call inline.
 */
static void raw_block_status(struct drv_image *img, struct drv_req *req)
{
	struct raw_image *ri = img->priv;
	uint64_t end = req->offset + req->len; /* bounds checked by drv_submit */
	uint64_t data = req->offset;
	uint64_t hole = end;
	int err = 0;

	if (!ri->file->is_blockdev)
		err = raw_seek(ri->file->fd, req->offset, SEEK_DATA, end, &data);
	if (!err && data == req->offset && !ri->file->is_blockdev)
		err = raw_seek(ri->file->fd, req->offset, SEEK_HOLE, end, &hole);
	if (err == -EINVAL || err == -EOPNOTSUPP) {
		data = req->offset;
		hole = end;
		err = 0;
	}
	if (err) {
		log_err_ratelimited("block_status %s: offset %" PRIu64 ": lseek: %s", img->path,
				    req->offset, err_str(err));
		drv_req_complete(req, err);
		return;
	}
	req->status = (struct drv_status){ .host_offset = req->offset };
	if (data > req->offset) {
		/* a hole is still this image's: nothing below a raw file */
		req->status.flags = DRV_BS_ZERO | DRV_BS_ALLOCATED | DRV_BS_OFFSET_VALID;
		req->status.len = data - req->offset;
	} else {
		req->status.flags = DRV_BS_DATA | DRV_BS_ALLOCATED | DRV_BS_OFFSET_VALID;
		req->status.len = hole - req->offset;
	}
	drv_req_complete(req, 0);
}

/* ---- create ------------------------------------------------------------- */

enum raw_prealloc {
	RAW_PREALLOC_OFF,
	RAW_PREALLOC_FALLOC,
	RAW_PREALLOC_FULL,
};

static int raw_parse_opts(const char *path, const struct drv_create_args *args,
			  enum raw_prealloc *prealloc)
{
	unsigned i;

	*prealloc = RAW_PREALLOC_OFF;
	for (i = 0; i < args->nr_opts; i++) {
		struct drv_opt *opt = &args->opts[i];

		if (strcmp(opt->key, "preallocation") != 0) {
			log_err("create %s: invalid parameter '%s'", path, opt->key);
			return -EINVAL;
		}
		if (strcmp(opt->value, "off") == 0)
			*prealloc = RAW_PREALLOC_OFF;
		else if (strcmp(opt->value, "falloc") == 0)
			*prealloc = RAW_PREALLOC_FALLOC;
		else if (strcmp(opt->value, "full") == 0)
			*prealloc = RAW_PREALLOC_FULL;
		else {
			log_err("create %s: Parameter 'preallocation' does not accept value '%s'",
				path, opt->value);
			return -EINVAL;
		}
		opt->used = true;
	}
	return 0;
}

/* Write zeros over [0, @size): "full" preallocation. */
static int raw_fill_zeros(int fd, const char *path, uint64_t size)
{
	static const char zeros[65536];
	uint64_t off = 0;

	while (off < size) {
		size_t chunk = (size_t)MIN(size - off, (uint64_t)sizeof(zeros));
		ssize_t n = pwrite(fd, zeros, chunk, (off_t)off);

		if (n <= 0) {
			int err = n < 0 ? neg_errno() : -EIO;

			log_err("create %s: write at offset %" PRIu64 ": %s", path, off,
				err_str(err));
			return err;
		}
		off += (uint64_t)n;
	}
	return 0;
}

static int raw_allocate(int fd, const char *path, uint64_t size, enum raw_prealloc prealloc)
{
	int err;

	if (ftruncate(fd, (off_t)size) < 0) {
		err = neg_errno();
		log_err("create %s: truncate to %" PRIu64 ": %s", path, size, err_str(err));
		return err;
	}
	if (prealloc == RAW_PREALLOC_FALLOC && size > 0 && fallocate(fd, 0, 0, (off_t)size) < 0) {
		err = neg_errno();
		log_err("create %s: fallocate %" PRIu64 " bytes: %s", path, size, err_str(err));
		return err;
	}
	if (prealloc == RAW_PREALLOC_FULL) {
		err = raw_fill_zeros(fd, path, size);
		if (err)
			return err;
	}
	if (fsync(fd) < 0) {
		err = neg_errno();
		log_err("create %s: fsync: %s", path, err_str(err));
		return err;
	}
	return 0;
}

/*
 * Create (or truncate, as qemu-img does) a raw file of args->size_bytes,
 * rounded up to 512 bytes like qemu-img so the whole image is addressable.
 */
static int raw_create(const char *path, const struct drv_create_args *args)
{
	enum raw_prealloc prealloc;
	uint64_t size;
	int fd, err;

	if (args->backing_file) {
		log_err("create %s: raw images cannot have a backing file", path);
		return -EINVAL;
	}
	err = raw_parse_opts(path, args, &prealloc);
	if (err)
		return err;
	if (ck_align_up_u64(args->size_bytes, RAW_MIN_BLOCK_BYTES, &size) || size > INT64_MAX) {
		log_err("create %s: size %" PRIu64 " too large", path, args->size_bytes);
		return -EFBIG;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = neg_errno();
		log_err("create %s: %s", path, err_str(err));
		return err;
	}
	err = raw_allocate(fd, path, size, prealloc);
	close(fd);
	return err;
}

/* In qemu-img's order: raw's own size, then file-posix's preallocation. */
static const struct drv_opt_desc raw_create_opts[] = {
	{ "size", DRV_OPT_SIZE, "Virtual disk size", NULL },
	{ "preallocation", DRV_OPT_STRING, "Preallocation mode (allowed values: off, falloc, full)",
	  NULL },
	{ NULL, DRV_OPT_STRING, NULL, NULL },
};

/* The ops table keeps its '=' signs aligned (STYLE.md), out of clang-format's reach. */
/* clang-format off */
const struct drv_ops raw_driver = {
	.name		= "raw",
	.description	= "raw file or block device (also \"aio:\")",
	.priv_size	= sizeof(struct raw_image),
	.req_priv_size	= sizeof(struct raw_req),
	.open		= raw_open,
	.close		= raw_close,
	.read		= raw_read,
	.write		= raw_write,
	.flush		= raw_flush,
	.discard	= raw_discard,
	.write_zeroes	= raw_write_zeroes,
	.block_status	= raw_block_status,
	.create		= raw_create,
	.create_opts	= raw_create_opts,
};
/* clang-format on */
