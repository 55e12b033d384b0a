// SPDX-License-Identifier: MIT
/*
 * Opening files for aio: O_DIRECT where the file system allows it, and the
 * alignment O_DIRECT then needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"

/* When the kernel does not say: a page for memory, a sector for offsets. */
#define AIO_FALLBACK_MEM_ALIGN 4096u
#define AIO_FALLBACK_IO_ALIGN 512u

static int aio_probe_blockdev(struct aio_file *f)
{
	int bytes;

	if (ioctl(f->fd, BLKSSZGET, &bytes) < 0) {
		int r = neg_errno();

		log_err("aio: BLKSSZGET %s: %s", f->path, err_str(r));
		return r;
	}
	if (bytes <= 0 || !is_power_of_2_u64((uint64_t)bytes)) {
		log_err("aio: %s: implausible logical block size %d", f->path, bytes);
		return -EINVAL;
	}
	f->io_align = (uint32_t)bytes;
	f->mem_align = MAX(f->io_align, 512u);
	return 0;
}

/* statx(STATX_DIOALIGN) (Linux 6.1) knows the file system's real needs. */
static void aio_probe_regular(struct aio_file *f)
{
	f->mem_align = AIO_FALLBACK_MEM_ALIGN;
	f->io_align = AIO_FALLBACK_IO_ALIGN;
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (statx(f->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0 ||
	    !(stx.stx_mask & STATX_DIOALIGN) || !is_power_of_2_u64(stx.stx_dio_mem_align) ||
	    !is_power_of_2_u64(stx.stx_dio_offset_align))
		return;
	f->mem_align = stx.stx_dio_mem_align;
	f->io_align = stx.stx_dio_offset_align;
#endif
}

static int aio_file_probe(struct aio_file *f)
{
	struct stat st;

	if (fstat(f->fd, &st) < 0) {
		int r = neg_errno();

		log_err("aio: fstat %s: %s", f->path, err_str(r));
		return r;
	}
	f->is_blockdev = S_ISBLK(st.st_mode);
	if (!f->direct) {
		f->mem_align = 1;
		f->io_align = 1;
		return 0;
	}
	if (f->is_blockdev)
		return aio_probe_blockdev(f);
	aio_probe_regular(f);
	return 0;
}

/* Takes @fd: it is closed on failure. */
static int aio_file_new(int fd, const char *path, bool direct, bool readonly, struct aio_file **out)
{
	struct aio_file *f = calloc(1, sizeof(*f));
	int r = -ENOMEM;

	if (!f || !(f->path = strdup(path)))
		goto err;
	f->fd = fd;
	f->direct = direct;
	f->readonly = readonly;
	r = aio_file_probe(f);
	if (r < 0)
		goto err;
	log_dbg(LOG_F_AIO, "aio: %s: %s I/O, memory alignment %u, offset alignment %u", f->path,
		f->direct ? "direct" : "buffered", f->mem_align, f->io_align);
	*out = f;
	return 0;

err:
	if (f)
		free(f->path);
	free(f);
	close(fd);
	return r;
}

static int aio_open_flags(unsigned flags)
{
	int oflags = O_CLOEXEC;

	oflags |= (flags & AIO_FILE_RDONLY) ? O_RDONLY : O_RDWR;
	if (flags & AIO_FILE_CREATE)
		oflags |= O_CREAT;
	if ((flags & AIO_FILE_CREATE) && (flags & AIO_FILE_EXCL))
		oflags |= O_EXCL;
	return oflags;
}

/*
 * cachestat(2), which the C library and older kernel headers lack.  Its
 * number is the same on every architecture (one table since 5.1).
 */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
#define AIO_COLD_BLOCK_BYTES 4096u
#define AIO_COLD_SHARE 16u /* cold: less than 1/16 of the allocated bytes cached */

struct aio_cachestat_range {
	uint64_t off;
	uint64_t len; /* 0: to the end of the file */
};

struct aio_cachestat {
	uint64_t nr_cache;
	uint64_t nr_dirty;
	uint64_t nr_writeback;
	uint64_t nr_evicted;
	uint64_t nr_recently_evicted;
};

/* AIO_FILE_DIRECT_IF_COLD: is @fd cold?  No whenever it cannot tell. */
static bool aio_file_is_cold(int fd)
{
	struct aio_cachestat_range range = { 0, 0 };
	struct aio_cachestat cs;
	long page = sysconf(_SC_PAGESIZE);
	struct stat st;

	if (page <= 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size % AIO_COLD_BLOCK_BYTES)
		return false;
	if (syscall(__NR_cachestat, fd, &range, &cs, 0) < 0)
		return false;
	return cs.nr_cache * (uint64_t)page * AIO_COLD_SHARE < (uint64_t)st.st_blocks * 512u;
}

/*
 * The cold buffered file @fd (read-only, of whole blocks) again with
 * O_DIRECT, when the file system takes it and its blocks divide the file:
 * *@out, and @fd is closed.  Otherwise *@out stays NULL and @fd open.
 */
static void aio_file_reopen_direct(int fd, const char *path, struct aio_file **out)
{
	struct stat st;
	int dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);

	*out = NULL;
	if (dfd < 0 || fstat(dfd, &st) < 0) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	if (aio_file_new(dfd, path, true, true, out) < 0)
		return;
	if ((*out)->is_blockdev || st.st_size % (*out)->io_align) {
		aio_file_close(*out);
		*out = NULL;
		return;
	}
	log_dbg(LOG_F_AIO, "aio: %s: cold in the page cache, read with O_DIRECT", path);
	close(fd);
}

/* Opens @path, with O_DIRECT if *@direct and the file system takes it. */
static int aio_open(const char *path, int oflags, bool *direct)
{
	int fd;

	if (*direct) {
		fd = open(path, oflags | O_DIRECT, 0644);
		if (fd >= 0)
			return fd;
		if (errno != EINVAL)
			return neg_errno();
		log_warn("aio: %s: the file system refuses O_DIRECT; using buffered I/O, "
			 "flushes go through fdatasync",
			 path);
		*direct = false;
		/*
		 * The refusal comes after O_CREAT has made the file (O_EXCL
		 * passed, so it is ours): asking for O_EXCL again would fail.
		 */
		oflags &= ~O_EXCL;
	}
	fd = open(path, oflags, 0644);
	return fd >= 0 ? fd : neg_errno();
}

int aio_file_open(const char *path, unsigned flags, struct aio_file **out)
{
	bool direct = !(flags & AIO_FILE_BUFFERED);
	int fd = aio_open(path, aio_open_flags(flags), &direct);
	int err;

	if (fd < 0) {
		log_err("aio: open %s: %s", path, err_str(fd));
		return fd;
	}
	if ((flags & AIO_FILE_DIRECT_IF_COLD) && (flags & AIO_FILE_RDONLY) && !direct &&
	    aio_file_is_cold(fd)) {
		aio_file_reopen_direct(fd, path, out);
		if (*out)
			return 0;
	}
	err = aio_file_new(fd, path, direct, flags & AIO_FILE_RDONLY, out);
	if (!err)
		(*out)->nosync = (flags & AIO_FILE_NOSYNC) != 0;
	return err;
}

int aio_file_from_fd(int fd, const char *path, struct aio_file **out)
{
	char name[32];
	int fl = fcntl(fd, F_GETFL);

	if (!path) {
		snprintf(name, sizeof(name), "fd %d", fd);
		path = name;
	}
	if (fl < 0) {
		int r = neg_errno();

		log_err("aio: %s: F_GETFL: %s", path, err_str(r));
		close(fd);
		return r;
	}
	return aio_file_new(fd, path, fl & O_DIRECT, (fl & O_ACCMODE) == O_RDONLY, out);
}

void aio_file_close(struct aio_file *f)
{
	if (!f)
		return;
	close(f->fd);
	free(f->path);
	free(f);
}
