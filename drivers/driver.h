/* SPDX-License-Identifier: MIT */
/*
 * The image driver contract.
 *
 * A driver serves one image format (raw, qcow2, a remote NBD base) behind one
 * const ops table, listed in drivers/registry.c.  NULL members mean "not
 * supported"; members are only ever appended.
 *
 * Objects:
 *   struct drv_image   one open image file.  The core allocates it with
 *                      ops->priv_size zeroed bytes at img->priv, calls
 *                      ->open, and later ->close; it owns img->backing,
 *                      the next image in the chain (opened by chain.c).
 *   struct drv_queue   one queue thread's view of a chain: its event loop
 *                      and aio context.  Each image gets
 *                      ops->queue_priv_size bytes per queue in
 *                      img->qpriv[q->index], set up by ->queue_init.
 *   struct drv_req     one request.  Whoever issues it (the vbd, a tool)
 *                      provides ops->req_priv_size bytes of scratch at
 *                      req->priv, preallocated: drivers never allocate on
 *                      the I/O path.
 *
 * Lifecycle: open -> queue_init (per queue) -> requests -> queue_fini ->
 * close.  open/close/queue_init/queue_fini and the tool-only members run on
 * the control thread with no request in flight.  Data-path members run on
 * the thread that owns req->q, possibly on several queue threads at once for
 * the same image: a driver's shared state (metadata caches) must be locked,
 * and data I/O should run with no lock held.
 *
 * Completion: each data-path member returns void and finishes the request
 * exactly once by calling drv_req_complete(req, err) with 0 or -errno.  It
 * may do so before returning.  A driver never blocks on I/O in a data-path
 * member: it submits through lib/aio on req->q->aio.
 *
 * Backing chain: a driver that does not hold a range (an unallocated qcow2
 * cluster) forwards it to img->backing with drv_submit() on a sub-request
 * from a per-queue pool it preallocates in queue_init (each slot with
 * drv_chain_req_priv_bytes(img->backing) of scratch: the request's own
 * scratch cannot hold the next level's, since req_priv_size is one constant
 * per driver), or reads zeros when there is none.  Opening the chain, loop detection and bounds (a backing image
 * shorter than its overlay reads as zeros past its end) live once, in
 * drivers/chain.c, not in each driver.
 *
 * Errors: the place that detects a failure logs it once with operation,
 * path and offset; callers pass the code up silently.  Image contents are
 * untrusted input: every field goes through lib/checked.h.
 */
#ifndef QTAP_DRIVER_H
#define QTAP_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct aio_ctx;
struct evloop;
struct drv_image;
struct drv_queue;
struct drv_req;

/* Bumped when the ops table changes shape; checked by registry.c. */
#define DRV_API_VERSION 3

/* Open flags. */
#define DRV_OPEN_RDONLY (1u << 0)
#define DRV_OPEN_BUFFERED (1u << 1) /* no O_DIRECT (tools on tmpfs, tests) */
/*
 * With RDONLY: let other processes write and resize the file (QEMU's
 * permissions for a backing file, and qemu-img's -U / --force-share).
 * Without it, a read-only open refuses writers and a writable one
 * refuses writers and readers that do not share writing (drv_image_lock).
 */
#define DRV_OPEN_SHARED (1u << 2)
/* Take no image lock at all (tap-img's -U on verbs that qemu-img opens without I/O). */
#define DRV_OPEN_NOLOCK (1u << 3)
/*
 * qemu's cache=unsafe: flushes succeed without syncing anything, and the
 * metadata write ordering of the format (its fdatasyncs) is not kept
 * either.  A crash may leave the image unusable; tools only.
 */
#define DRV_OPEN_UNSAFE (1u << 4)
/*
 * With BUFFERED and RDONLY: a file the page cache holds almost none of is
 * read with O_DIRECT after all (AIO_FILE_DIRECT_IF_COLD).  tap-img
 * convert's source by default.
 */
#define DRV_OPEN_DIRECT_IF_COLD (1u << 5)

/* Capabilities reported in img->caps after open. */
#define DRV_CAP_DISCARD (1u << 0)
#define DRV_CAP_WRITE_ZEROES (1u << 1)
#define DRV_CAP_BLOCK_STATUS (1u << 2)
#define DRV_CAP_FUA (1u << 3) /* FUA honoured natively; else the core flushes */

enum drv_op {
	DRV_OP_READ = 0,
	DRV_OP_WRITE,
	DRV_OP_FLUSH,
	DRV_OP_DISCARD,
	DRV_OP_WRITE_ZEROES,
	DRV_OP_BLOCK_STATUS,
	DRV_OP_BITMAP_STATUS, /* ->bitmap_status */
};

/* Request flags. */
#define DRV_REQ_FUA (1u << 0)	     /* WRITE/WRITE_ZEROES: durable on completion */
#define DRV_REQ_MAY_UNMAP (1u << 1)  /* WRITE_ZEROES: may deallocate */
#define DRV_REQ_COMPRESSED (1u << 3) /* WRITE: through ->write_compressed (tools) */
#define DRV_REQ_NO_FALLBACK                                                                        \
	(1u << 2) /* WRITE_ZEROES: -ENOTSUP rather than
				       * writing zero buffers (NBD FAST_ZERO) */

/* Block status result flags (DRV_OP_BLOCK_STATUS). */
#define DRV_BS_DATA (1u << 0)	      /* reads may return non-zero data */
#define DRV_BS_ZERO (1u << 1)	      /* reads return zeros */
#define DRV_BS_ALLOCATED (1u << 2)    /* this image holds the range (not backing) */
#define DRV_BS_OFFSET_VALID (1u << 3) /* host_offset is meaningful */
#define DRV_BS_DIRTY (1u << 4)	      /* DRV_OP_BITMAP_STATUS: the bits are set */

struct drv_status {
	unsigned flags;	      /* DRV_BS_* */
	uint64_t len;	      /* bytes from req->offset with this status, > 0 */
	uint64_t host_offset; /* with DRV_BS_OFFSET_VALID */
	unsigned depth;	      /* chain depth of the image holding it (0 = top),
			       * filled by the chain helper */
};

typedef void drv_done_fn(struct drv_req *req, int err);

struct drv_req {
	/* set by the issuer */
	enum drv_op op;
	unsigned flags;
	uint64_t offset;
	uint64_t len;		 /* READ/WRITE: must equal the iovec's total */
	const struct iovec *iov; /* READ/WRITE; borrowed until completion */
	unsigned iovcnt;
	struct drv_queue *q;
	drv_done_fn *done;
	void *opaque;
	void *priv; /* ops->req_priv_size bytes of driver scratch */

	/* result of DRV_OP_BLOCK_STATUS and DRV_OP_BITMAP_STATUS */
	struct drv_status status;

	/* appended */
	const char *bitmap; /* DRV_OP_BITMAP_STATUS: the bitmap's name (borrowed) */
};

struct drv_queue {
	unsigned index; /* 0 .. nr_queues-1 */
	struct evloop *loop;
	struct aio_ctx *aio;
};

/* Parsed -o key=value options for create. */
struct drv_opt {
	const char *key;
	const char *value;
	bool used; /* set by drivers that consumed it; unused keys are an error */
};

/*
 * One option a driver's create takes, for the tool: the tool checks each
 * -o value against its type before calling ->create (so a malformed number
 * is refused the same way for every driver), lists the table for -o help,
 * and prints the "Formatting" line in table order with @def for the
 * options not given, as qemu-img does.  "size", "backing_file" and
 * "backing_fmt" are the tool's (they fill struct drv_create_args); a
 * driver lists them to say where they print and whether it has backing
 * files.
 */
enum drv_opt_type {
	DRV_OPT_STRING = 0,
	DRV_OPT_BOOL,	/* on/off, yes/no, true/false, y/n */
	DRV_OPT_NUMBER, /* C notation, no suffix */
	DRV_OPT_SIZE,	/* bytes, with k/M/G/T/P/E suffixes and fractions */
};

struct drv_opt_desc {
	const char *name; /* NULL ends the table */
	enum drv_opt_type type;
	const char *help;
	const char *def; /* default printed when not given; NULL: none */
};

struct drv_create_args {
	uint64_t size_bytes;	    /* as given: the driver rounds it as its format needs */
	const char *backing_file;   /* NULL: none */
	const char *backing_format; /* NULL with a backing file: refused */
	struct drv_opt *opts;
	unsigned nr_opts;
};

struct drv_ops {
	const char *name;	 /* the TYPE in TYPE:PATH */
	const char *description; /* one line for --help */
	size_t priv_size;
	size_t queue_priv_size;
	size_t req_priv_size;

	/*
	 * open - Required.  Open @path (flags DRV_OPEN_*), fill img->size_bytes,
	 * img->block_bytes and img->caps.  Returns 0 or -errno (logged).
	 */
	int (*open)(struct drv_image *img, const char *path, unsigned flags);

	/* close - Required.  No request in flight; every queue finished. */
	void (*close)(struct drv_image *img);

	/*
	 * get_backing - Optional.  The backing image spec ("qcow2:/abs/path")
	 * in *@spec (malloc'ed, ownership transferred) or NULL for none.
	 * Returns 0 or -errno (for example a backing file without a format).
	 */
	int (*get_backing)(struct drv_image *img, char **spec);

	/* queue_init / queue_fini - Optional.  Per-queue state in
	 * img->qpriv[q->index]; called on the control thread. */
	int (*queue_init)(struct drv_image *img, struct drv_queue *q);
	void (*queue_fini)(struct drv_image *img, struct drv_queue *q);

	/* Data path.  Called on req->q's thread; complete exactly once. */
	void (*read)(struct drv_image *img, struct drv_req *req);	  /* Required */
	void (*write)(struct drv_image *img, struct drv_req *req);	  /* Required unless
									   * read-only format */
	void (*flush)(struct drv_image *img, struct drv_req *req);	  /* Required */
	void (*discard)(struct drv_image *img, struct drv_req *req);	  /* Optional */
	void (*write_zeroes)(struct drv_image *img, struct drv_req *req); /* Optional */
	void (*block_status)(struct drv_image *img, struct drv_req *req); /* Optional */

	/*
	 * create - Optional, tools only.  Create an image at @path.  Options the
	 * driver uses are marked used; returns 0 or -errno (logged, naming the
	 * option at fault).
	 */
	int (*create)(const char *path, const struct drv_create_args *args);

	/*
	 * create_opts - Optional, with ->create: the options it takes, in the
	 * order qemu-img prints them.  NULL: only "size".
	 */
	const struct drv_opt_desc *create_opts;

	/*
	 * write_compressed - Optional, tools only (convert -c).  Write one
	 * whole unit of img->compress_bytes at a multiple of it (the disk's
	 * last unit may be shorter) stored compressed; data that does not
	 * compress is stored as a plain write.  Data-path semantics as ->write.
	 */
	void (*write_compressed)(struct drv_image *img, struct drv_req *req);

	/*
	 * bitmap_list - Optional.  The image's persistent dirty bitmaps that
	 * ->bitmap_status can report (consistent ones: a bitmap left in use by
	 * a crashed writer is not listed), by name, at most @max of them into
	 * @names; *@count is how many there are.  The names stay valid until
	 * close.  The first call may read the bitmaps in: control thread, no
	 * request in flight.  0 or -errno (logged).
	 */
	int (*bitmap_list)(struct drv_image *img, const char **names, unsigned max,
			   unsigned *count);

	/*
	 * bitmap_status - Optional, with ->bitmap_list.  DRV_OP_BITMAP_STATUS:
	 * req->status.flags is DRV_BS_DIRTY where bitmap req->bitmap has its
	 * bits set (a write since the bitmap was last cleared may have changed
	 * the range), else 0, and req->status.len the bytes from req->offset
	 * (at most req->len) that share it.  A bitmap the driver maintains
	 * shows the writes of this session too.  -ENOENT for a name
	 * ->bitmap_list did not give.  Data path.
	 */
	void (*bitmap_status)(struct drv_image *img, struct drv_req *req);

	/*
	 * open_opts - Optional: the open-time options ("key=value", QEMU's
	 * names, e.g. qcow2's l2-cache-size) ->open takes.  drivers/opts.c
	 * checks each given option against this table (an unknown key or a
	 * malformed value is refused naming the key) before ->open, which
	 * finds them in img->opts.  NULL: none; any option is refused.
	 */
	const struct drv_opt_desc *open_opts;
};

struct drv_image {
	const struct drv_ops *ops;
	char *path;
	unsigned open_flags;
	uint64_t size_bytes;
	uint32_t block_bytes;	   /* requests must be multiples of this */
	uint32_t phys_block_bytes; /* preferred I/O granularity */
	uint32_t discard_bytes;	   /* discards smaller or unaligned free nothing; 0: phys */
	unsigned caps;		   /* DRV_CAP_* */
	uint32_t compress_bytes;   /* unit of ->write_compressed */
	void *priv;
	void **qpriv; /* per-queue private state, indexed by queue */
	unsigned nr_queues;
	struct drv_queue *queues;  /* borrowed from drv_queues_init until _fini */
	struct drv_image *backing; /* NULL: end of chain */
	unsigned depth;		   /* 0 for the top image */
	/* appended */
	const struct drv_opt *opts; /* open-time options; borrowed, valid during ->open only */
	unsigned nr_opts;
};

/*
 * drv_req_complete - finish @req with @err (0 or -errno).  Calls req->done.
 * Must be called exactly once per request.
 */
void drv_req_complete(struct drv_req *req, int err);

/* drv_find - the driver named @name, or NULL. */
const struct drv_ops *drv_find(const char *name);

/* drv_list - the registry, NULL-terminated. */
extern const struct drv_ops *const drv_registry[];

/*
 * drv_parse_spec - split "TYPE:PATH" into the driver and the path (pointing
 * into @spec).  Returns 0, -EINVAL (no colon, empty path) or -ENOENT (no
 * such driver); logged with the spec.
 */
int drv_parse_spec(const char *spec, const struct drv_ops **ops, const char **path);

/*
 * drv_image_open - open one image (no backing chain) with @ops.  Allocates
 * priv.  Returns 0 and *out, or -errno.
 */
int drv_image_open(const struct drv_ops *ops, const char *path, unsigned flags,
		   struct drv_image **out);

/*
 * drv_aio_file_flags - for drivers' ->open: the AIO_FILE_* flags (lib/aio.h)
 * that open an image file as DRV_OPEN_* @flags ask: RDONLY, BUFFERED,
 * UNSAFE as NOSYNC, and DIRECT_IF_COLD.  The other DRV_OPEN_* flags do
 * not concern the file.
 */
unsigned drv_aio_file_flags(unsigned flags);

/*
 * drv_image_lock - for drivers' ->open: take QEMU's image locks (lib/imglock.h)
 * on @fd, the image file @path opened with @flags (DRV_OPEN_*): read-write
 * takes read, write and resize and shares neither write nor resize;
 * read-only takes read and shares neither; DRV_OPEN_SHARED takes read and
 * shares everything; DRV_OPEN_NOLOCK takes nothing.  The locks last until
 * @fd's open file description is closed.  0, or -EBUSY when another process
 * (qemu-nbd, a VM, a tapdisk) holds the image in a way that conflicts
 * (logged in QEMU's words), or -errno.
 */
int drv_image_lock(int fd, const char *path, unsigned flags);

/* drv_image_close - close @img and its backing chain.  NULL is a no-op. */
void drv_image_close(struct drv_image *img);

/*
 * drv_chain_open - open "TYPE:PATH" and its backing chain (backing images
 * read-only).  Loops and chains deeper than DRV_CHAIN_MAX_DEPTH are refused.
 */
#define DRV_CHAIN_MAX_DEPTH 64
int drv_chain_open(const char *spec, unsigned flags, struct drv_image **top);

/*
 * drv_queues_init - set up @nr queues on every image of the chain rooted at
 * @top, using the loops/aio contexts in @queues[0..nr-1].  Returns 0 or
 * -errno (already initialised queues are torn down).
 */
int drv_queues_init(struct drv_image *top, struct drv_queue *queues, unsigned nr);
void drv_queues_fini(struct drv_image *top);

/*
 * Open-time options (drivers/opts.c), the one parser of "key=value,..."
 * strings for drivers: tapdisk -o, the control protocol's open, tap-img
 * --image-opts.
 *
 * drv_opts_parse - split @s into a malloc'ed array (one free() releases it
 * and the strings it points to).  0, -EINVAL (an item without KEY=, logged)
 * or -ENOMEM.
 */
int drv_opts_parse(const char *s, struct drv_opt **out, unsigned *nr);

/*
 * drv_opts_check - every one of @opts is an option @ops->open_opts names
 * and its value has the option's type.  0 or -EINVAL, logged naming @path
 * and the key; *@bad (may be NULL) gets the index of the option refused.
 */
int drv_opts_check(const struct drv_ops *ops, const char *path, const struct drv_opt *opts,
		   unsigned nr, unsigned *bad);

/*
 * drv_opts_get - the value of option @key among @img's open options (in
 * ->open), the last one given; NULL when not given.
 */
const char *drv_opts_get(const struct drv_image *img, const char *key);

/* drv_image_open_opts - drv_image_open() with checked open-time options. */
int drv_image_open_opts(const struct drv_ops *ops, const char *path, unsigned flags,
			const struct drv_opt *opts, unsigned nr, struct drv_image **out);

/*
 * drv_chain_open_opts - drv_chain_open() with open-time options for the
 * top image's driver (checked with drv_opts_check(); the backing images
 * get none, as with QEMU's options for the top node).
 */
int drv_chain_open_opts(const char *spec, unsigned flags, const struct drv_opt *opts, unsigned nr,
			struct drv_image **top);

/* drv_chain_req_priv_bytes - the largest req_priv_size in the chain. */
size_t drv_chain_req_priv_bytes(const struct drv_image *top);

/*
 * Block status of a whole chain, as QEMU's block_status_above: a range the
 * top image does not hold (no DRV_BS_ALLOCATED) is asked of its backing
 * image, and so on down; the answer carries the depth of the image that
 * holds the range.  Past the end of a shorter backing image the range
 * reads as zeros, held by that image (QEMU's answer too).  The issuer keeps the walk's state
 * and resubmits its request while drv_chain_walk_next() says so:
 *
 *	drv_chain_walk_start(&w, top, req);   then drv_submit(w.img, req);
 *	on completion without error:
 *	    if (drv_chain_walk_next(&w, req)) drv_submit(w.img, req);
 *	    else req->status (and req->offset, req->len) are the answer.
 *
 * The request's scratch must hold drv_chain_req_priv_bytes(top).  A backing
 * image whose blocks do not line up with the range is asked about the
 * enclosing blocks; one that cannot say (no block status) counts as
 * holding data.
 */
struct drv_chain_walk {
	struct drv_image *img; /* the image to submit to next */
	uint64_t offset;       /* the range being asked about */
	uint64_t len;
};
void drv_chain_walk_start(struct drv_chain_walk *w, struct drv_image *top, struct drv_req *req);
bool drv_chain_walk_next(struct drv_chain_walk *w, struct drv_req *req);

/*
 * drv_submit - validate @req against @img (bounds, read-only, supported op,
 * iovec total) and dispatch to the driver.  Invalid requests complete with
 * -EINVAL, -EROFS or -EOPNOTSUPP.  Completion as for the ops.
 */
void drv_submit(struct drv_image *img, struct drv_req *req);

#endif
