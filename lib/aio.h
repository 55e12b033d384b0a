/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous file I/O: one interface, three engines.
 *
 *   io_uring  liburing; completions reaped from the CQ ring without a
 *             system call, the ring fd watched by the event loop.
 *   libaio    io_submit with an eventfd per context; completions reaped
 *             from the kernel's mmap'ed event ring where its layout is known.
 *   sync      preadv/pwritev/fdatasync executed at submission time; the
 *             completion is still delivered later from the event loop.
 *
 * Files are opened with O_DIRECT unless the caller asks for buffered I/O.
 * Where the file system refuses O_DIRECT (tmpfs), aio_file_open() logs a
 * warning naming the file and falls back to buffered I/O; flushes then still
 * reach the disk through fdatasync.  Requests whose buffers, offset or length
 * do not meet the file's O_DIRECT alignment go through preallocated bounce
 * buffers (read-modify-write for unaligned writes, serialised against other
 * writes to the same blocks), so callers may pass any buffer.
 *
 * Contract:
 *  - An aio_ctx belongs to one event loop and is used only on that loop's
 *    thread.  An aio_file may be shared by several contexts and threads.
 *  - aio_submit() never fails and never calls ->done itself: the request is
 *    queued, submitted in a batch by the loop's prepare hook, and ->done is
 *    called exactly once from the loop with 0 or -errno.
 *  - A transfer shorter than asked is -EIO, except for reads flagged
 *    AIO_F_ZERO_EOF, where the bytes past end of file read as zeros.
 *  - -EAGAIN from the kernel requeues the request; it never reaches ->done.
 *  - The request struct, its iovec and the buffers belong to the caller and
 *    must stay valid until ->done runs.  No allocation happens per request.
 */
#ifndef QTAP_AIO_H
#define QTAP_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct evloop;
struct aio_ctx;
struct aio_req;

enum aio_engine {
	AIO_ENGINE_AUTO = 0, /* io_uring, else libaio, else sync; logged */
	AIO_ENGINE_URING,
	AIO_ENGINE_LIBAIO,
	AIO_ENGINE_SYNC,
};

enum aio_op {
	AIO_OP_READ = 0,
	AIO_OP_WRITE,
	AIO_OP_FSYNC,	     /* fdatasync: data and the metadata needed to read it */
	AIO_OP_DISCARD,	     /* deallocate; reads back as zeros afterwards */
	AIO_OP_WRITE_ZEROES, /* zero the range, keeping it allocated */
};

/* Request flags. */
#define AIO_F_ZERO_EOF (1u << 0) /* READ: bytes past end of file read as zeros */

/* aio_file_open flags. */
#define AIO_FILE_RDONLY (1u << 0)
#define AIO_FILE_BUFFERED (1u << 1) /* do not try O_DIRECT */
#define AIO_FILE_CREATE (1u << 2)   /* O_CREAT, mode 0644 */
#define AIO_FILE_EXCL (1u << 3)	    /* with CREATE: O_EXCL */
/* FSYNC completes at once, syncing nothing (qemu's cache=unsafe: flushes are ignored) */
#define AIO_FILE_NOSYNC (1u << 4)
/*
 * With BUFFERED and RDONLY: O_DIRECT after all when the file is cold, a
 * regular file of whole 4 KiB blocks of whose allocated bytes the page
 * cache holds less than 1/16 (cachestat, Linux 6.5; without it, buffered).
 * A reader that goes through a large cold file once (tap-img convert's
 * source) then neither fills the cache with a copy it never reads again
 * nor pays for the copy; a warm file is still read from the cache.
 */
#define AIO_FILE_DIRECT_IF_COLD (1u << 5)

struct aio_file {
	int fd;
	char *path;
	bool direct; /* O_DIRECT in effect */
	bool readonly;
	bool is_blockdev;
	bool nosync;	    /* AIO_FILE_NOSYNC: flushes are no-ops */
	uint32_t mem_align; /* buffer address alignment O_DIRECT needs */
	uint32_t io_align;  /* offset and length alignment (logical block size) */
};

typedef void aio_done_fn(struct aio_req *req, int err);

struct aio_req {
	/* set by the caller */
	struct aio_file *file;
	enum aio_op op;
	unsigned flags;
	uint64_t offset;
	uint64_t len; /* READ/WRITE: must equal the iovec's total */
	const struct iovec *iov;
	unsigned iovcnt;
	aio_done_fn *done;
	void *opaque;

	/* private to lib/aio */
	struct aio_req *next;
	struct aio_ctx *ctx;
	int result;
	unsigned state;
	void *bounce;
	uint64_t bounce_off;
	uint64_t bounce_len;
	uint64_t done_bytes;
	uint64_t rec_id; /* aio-rec.h: the request's id in the log, 0: none */
};

struct aio_ctx_opts {
	enum aio_engine engine;
	unsigned depth;	       /* requests in flight at once; 0: 128 */
	unsigned bounce_count; /* bounce buffers; 0: 8 */
	uint64_t bounce_bytes; /* size of each; 0: 1 MiB.  Larger unaligned
				* requests are bounced in pieces. */
	/*
	 * Reads and writes of buffered (not O_DIRECT) files go straight to the
	 * kernel's worker threads (io_uring: IOSQE_ASYNC) instead of being
	 * tried on the loop thread first.  Tried there, the page cache copy,
	 * the page allocation and the readahead of a cold read all run on the
	 * loop thread, one request after the other; handed over, they run in
	 * parallel, as in a thread pool.  For bulk copies in large requests
	 * (tap-img convert); a loop serving small requests from the cache is
	 * faster without the hop.  The other engines ignore it.
	 */
	bool offload_buffered;
};

/*
 * aio_file_open - open @path for aio.  @flags are AIO_FILE_*.  Probes the
 * alignment (BLKSSZGET for block devices, statx DIOALIGN for files, else
 * 4096/512).  Returns 0 and *out, or -errno (logged with the path).
 */
int aio_file_open(const char *path, unsigned flags, struct aio_file **out);

/* aio_file_from_fd - wrap an fd the caller opened (ownership transferred). */
int aio_file_from_fd(int fd, const char *path, struct aio_file **out);

/* aio_file_close - close the fd and free; NULL is a no-op. */
void aio_file_close(struct aio_file *f);

/*
 * aio_ctx_new - a context on @loop (registers its fd watch and prepare
 * hook).  @opts may be NULL for defaults.  Returns 0 and *out, or -errno.
 */
int aio_ctx_new(struct evloop *loop, const struct aio_ctx_opts *opts, struct aio_ctx **out);

/* aio_ctx_free - no request may be in flight.  NULL is a no-op. */
void aio_ctx_free(struct aio_ctx *ctx);

/* aio_submit - queue @req; see the contract above. */
void aio_submit(struct aio_ctx *ctx, struct aio_req *req);

/* aio_ctx_inflight - requests queued or in flight on @ctx. */
unsigned aio_ctx_inflight(const struct aio_ctx *ctx);

/* aio_ctx_engine - the engine actually in use. */
enum aio_engine aio_ctx_engine(const struct aio_ctx *ctx);

/* aio_engine_name / aio_engine_parse - "io_uring", "libaio", "sync", "auto".
 * parse also accepts qemu's "native" (libaio) and "threads" (sync). */
const char *aio_engine_name(enum aio_engine e);
int aio_engine_parse(const char *name, enum aio_engine *out);

/*
 * Test seam: @fn is called for every request just before it is handed to
 * the engine; a negative return completes the request with that error
 * instead.  NULL removes it.  Used by fault-injection tests.
 */
typedef int aio_fault_fn(void *opaque, const struct aio_req *req);
void aio_ctx_set_fault(struct aio_ctx *ctx, aio_fault_fn *fn, void *opaque);

#endif
