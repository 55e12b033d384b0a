/* SPDX-License-Identifier: MIT */
/*
 * tap-img convert [-f FMT] [-O FMT] [-o OPTIONS] [-B BACKING -F FMT] [-c] [-p] [-q]
 *                 [-n] [--target-is-zero] [-S SIZE] [-m NUM] [-W] [-t CACHE] [-T CACHE]
 *                 [-l SNAPSHOT_PARAM] SRC DST
 *
 * As qemu-img convert: the source and its backing chain are read through
 * the drivers, the target is created by its driver (unless -n) and written
 * through it, so that what tapdisk serves is what convert reads and
 * writes.  Defaults are qemu-img's: raw output, 4 KiB sparse detection,
 * 8 requests in flight, in-order writes, target cache "unsafe" (no flush),
 * source cache "writeback" (but a source file the page cache holds almost
 * none of is read with O_DIRECT: the same bytes, without the copy into
 * the cache nor the cache's memory, that a one-pass copy never reuses).
 * Buffered reads and writes are handed to the kernel's worker threads
 * (aio_ctx_opts.offload_buffered), so that the cold reads and page cache
 * copies run in parallel rather than one after the other on the loop
 * thread.  (Neither with -c, whose requests are single clusters.)
 * Nothing is probed: the source is raw unless -f or a TYPE: prefix says
 * otherwise.
 *
 * This file parses the options and sets the images up; convert-copy.c
 * copies.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked.h"
#include "cleanup.h"
#include "convert-bitmaps.h"
#include "convert.h"
#include "errors.h"
#include "opts.h"
#include "snapshot-param.h"
#include "tap-img.h"

#define CONVERT_BUF_BYTES (2u << 20)	     /* qemu-img's IO_BUF_SIZE */
#define CONVERT_MAX_SPARSE_BYTES (16u << 20) /* qemu-img's MAX_BUF_SECTORS */
#define CONVERT_DEFAULT_SPARSE_BYTES 4096u
#define CONVERT_DEFAULT_PARALLEL 8u
#define CONVERT_MAX_PARALLEL 16u
#define CONVERT_MAX_WORKERS 4

enum {
	OPT_TARGET_IS_ZERO = 256,
	OPT_IMAGE_OPTS,
	OPT_BITMAPS,
	OPT_SKIP_BROKEN_BITMAPS,
	OPT_SALVAGE,
};

struct convert_cmd {
	bool image_opts; /* SRC is driver=FMT,file.filename=PATH,KEY=VALUE,... */
	const char *src_fmt;
	const char *dst_fmt;
	const char *src;
	const char *dst;
	const char *backing;
	const char *backing_fmt;
	unsigned src_flags;
	unsigned dst_flags;
	bool skip_create;
	bool target_is_zero;
	bool compress;
	bool quiet;
	bool force_share;
	bool bitmaps;		  /* --bitmaps */
	uint64_t rate_bytes;	  /* -r, 0: none */
	bool sparse_given;	  /* -S */
	bool skip_broken_bitmaps; /* --skip-broken-bitmaps */
	struct img_opts opts;
	struct img_snapshot_param snapshot; /* -l */
	struct convert_cfg cfg;
};

static void convert_usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-img convert [-f FMT] [-O FMT] [-o OPTIONS] [-B BACKING -F FMT] [-c]\n"
		"         [-p] [-q] [-n] [--target-is-zero] [-S SIZE] [-m NUM] [-W]\n"
		"         [-t CACHE] [-T CACHE] [-U] [-i AIO] [-l SNAPSHOT_PARAM] [-r RATE]\n"
		"         [-C] [--salvage] [--bitmaps [--skip-broken-bitmaps]] SRC DST\n"
		"\n"
		"Copy the image SRC (with its backing chain) into a new image DST.\n"
		"SRC may be an NBD URI (nbd://HOST/EXPORT, nbd+unix:///EXPORT?socket=PATH).\n"
		"  -f FMT       format of SRC (default: its TYPE: prefix, else raw)\n"
		"  -O FMT       format of DST (default raw)\n"
		"  -o OPTIONS   DST's format options, KEY=VALUE[,...]; repeatable\n"
		"  -B BACKING   make DST an overlay of BACKING, copying only what SRC's\n"
		"               top image holds (-b is the same)\n"
		"  -F FMT       format of BACKING (required with -B: nothing is probed)\n"
		"  -c           write compressed clusters (formats that have them)\n"
		"  -p           show progress\n"
		"  -q           quiet\n"
		"  -n           DST exists: do not create it\n"
		"  --target-is-zero  with -n: DST already reads as zeros\n"
		"  -S SIZE      zero runs of SIZE bytes (default 4k, a multiple of 512) stay\n"
		"               holes in DST; 0 copies everything (fully allocated DST)\n"
		"  -m NUM       requests in flight, 1..%u (default %u)\n"
		"  -W           allow out-of-order writes (then, as with -c, one thread per core)\n"
		"  -t CACHE     DST's cache mode (default unsafe: no flush, no syncs)\n"
		"  -T CACHE     SRC's cache mode (default writeback, but O_DIRECT for a\n"
		"               source file the page cache holds almost none of)\n"
		"  -U           read SRC even while another process writes it (no lock)\n"
		"  --image-opts SRC is driver=FMT,file.filename=PATH[,KEY=VALUE...] (the\n"
		"               driver's open options: qcow2's l2-cache-size, ...)\n"
		"  -i AIO       io_uring|libaio|native|threads|sync|auto (default auto)\n"
		"  -l SNAPSHOT_PARAM  copy the internal snapshot of SRC (qcow2) it names,\n"
		"               not SRC's current state: snapshot.id=ID[,snapshot.name=NAME]\n"
		"               (both must match), snapshot.name=NAME, or a bare ID_OR_NAME\n"
		"               (an id, else a name)\n"
		"  -r RATE      at most RATE bytes of data read per second (k/M/G/T/P/E\n"
		"               suffixes; 0: no limit)\n"
		"  -C           copy what SRC's block status calls data as it is, without\n"
		"               scanning it for zeros (qemu-img's copy offloading: DST may be\n"
		"               fully allocated); not with -c, -S or --salvage\n"
		"  --salvage    on a read error, read that chunk again sector by sector;\n"
		"               unreadable sectors become zeros, each with a warning\n"
		"  --bitmaps    copy SRC's persistent dirty bitmaps into DST (both qcow2 v3):\n"
		"               names, granularities, enabled or not, contents\n"
		"  --skip-broken-bitmaps  with --bitmaps: skip (with a warning) the\n"
		"               inconsistent bitmaps instead of failing\n"
		"Cache modes: none, directsync (O_DIRECT), writeback, writethrough, unsafe.\n",
		CONVERT_MAX_PARALLEL, CONVERT_DEFAULT_PARALLEL);
}

static int parse_sparse(struct convert_cmd *cmd, const char *s)
{
	uint64_t v;

	if (img_parse_size("convert", "sparse size", s, &v))
		return -EINVAL;
	if (v % 512 != 0 || v > CONVERT_MAX_SPARSE_BYTES) {
		img_err("convert",
			"invalid sparse size '%s': valid sizes are multiples of 512 up to %u; "
			"0 disables sparse detection (fully allocates the target)",
			s, CONVERT_MAX_SPARSE_BYTES);
		return -EINVAL;
	}
	cmd->cfg.sparse_bytes = v;
	return 0;
}

static int parse_parallel(struct convert_cmd *cmd, const char *s)
{
	uint64_t v;

	if (parse_u64(s, false, &v) || v < 1 || v > CONVERT_MAX_PARALLEL) {
		img_err("convert", "invalid number of parallel requests '%s' (1..%u)", s,
			CONVERT_MAX_PARALLEL);
		return -EINVAL;
	}
	cmd->cfg.parallel = (unsigned)v;
	return 0;
}

static int convert_parse_opt(struct convert_cmd *cmd, int c)
{
	switch (c) {
	case 'f':
		cmd->src_fmt = optarg;
		return 0;
	case 'O':
		cmd->dst_fmt = optarg;
		return 0;
	case 'o':
		return img_opts_split("convert", &cmd->opts, optarg);
	case 'B':
	case 'b':
		cmd->backing = optarg;
		return 0;
	case 'F':
		cmd->backing_fmt = optarg;
		return 0;
	case 'c':
		cmd->compress = true;
		return 0;
	case 'p':
		cmd->cfg.progress = true;
		return 0;
	case 'q':
		cmd->quiet = true;
		return 0;
	case 'U':
		cmd->force_share = true;
		return 0;
	case 'i':
		if (aio_engine_parse(optarg, &cmd->cfg.aio.engine) == 0)
			return 0;
		img_err("convert", "invalid aio engine '%s'", optarg);
		return -EINVAL;
	case 'n':
		cmd->skip_create = true;
		return 0;
	case OPT_TARGET_IS_ZERO:
		cmd->target_is_zero = true;
		return 0;
	case OPT_IMAGE_OPTS:
		cmd->image_opts = true;
		return 0;
	case OPT_BITMAPS:
		cmd->bitmaps = true;
		return 0;
	case OPT_SKIP_BROKEN_BITMAPS:
		cmd->skip_broken_bitmaps = true;
		return 0;
	case 'r':
		return img_parse_rate("convert", optarg, &cmd->rate_bytes);
	case 'l':
		return img_snapshot_param_parse("convert", optarg, &cmd->snapshot);
	case 'S':
		cmd->sparse_given = true;
		return parse_sparse(cmd, optarg);
	case 'C':
		cmd->cfg.copy_offload = true;
		return 0;
	case OPT_SALVAGE:
		cmd->cfg.salvage = true;
		return 0;
	case 'm':
		return parse_parallel(cmd, optarg);
	case 'W':
		cmd->cfg.in_order = false;
		return 0;
	case 't':
		cmd->cfg.flush = strcmp(optarg, "unsafe") != 0;
		return img_parse_cache("convert", optarg, &cmd->dst_flags);
	case 'T':
		return img_parse_cache("convert", optarg, &cmd->src_flags);
	}
	convert_usage(stderr);
	return -EINVAL;
}

/* -C's exclusions, in qemu-img's order. */
static int check_copy_offload(const struct convert_cmd *cmd)
{
	const char *why = NULL;

	if (!cmd->cfg.copy_offload)
		return 0;
	if (cmd->compress)
		why = "Cannot enable copy offloading when -c is used";
	else if (cmd->sparse_given)
		why = "Cannot enable copy offloading when -S is used";
	else if (cmd->cfg.salvage)
		why = "Cannot use copy offloading in salvaging mode";
	if (!why)
		return 0;
	img_err("convert", "%s", why);
	return -EINVAL;
}

/* The combinations qemu-img refuses, with its reasons. */
static int convert_check_args(const struct convert_cmd *cmd)
{
	if (check_copy_offload(cmd))
		return -EINVAL;
	if (cmd->skip_create && cmd->opts.nr) {
		img_err("convert", "-o has no effect when skipping image creation (-n)");
		return -EINVAL;
	}
	if (cmd->target_is_zero && !cmd->skip_create) {
		img_err("convert", "--target-is-zero requires -n");
		return -EINVAL;
	}
	if (cmd->target_is_zero && cmd->backing) {
		img_err("convert", "--target-is-zero cannot be used when the target has a "
				   "backing file");
		return -EINVAL;
	}
	if (cmd->backing && !cmd->backing_fmt) {
		img_err("convert", "-B needs -F, the backing file's format (formats are never "
				   "probed)");
		return -EINVAL;
	}
	if (cmd->backing_fmt && !cmd->backing) {
		img_err("convert", "-F names the format of a backing file given with -B");
		return -EINVAL;
	}
	return 0;
}

/*
 * Threads copying at once: with -c (compression is CPU bound), -W (the
 * order of writes is free) or a raw target (whose layout the order of
 * writes cannot change: every byte has its place), one per core, up to
 * CONVERT_MAX_WORKERS; else one, so that writes reach a format that
 * allocates as it goes in offset order, as with qemu-img.
 */
static unsigned convert_default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1u : (unsigned)MIN(n, (long)CONVERT_MAX_WORKERS);
}

static int convert_parse_args(struct convert_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
		{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
		{ "force-share", no_argument, NULL, 'U' },
		{ "bitmaps", no_argument, NULL, OPT_BITMAPS },
		{ "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN_BITMAPS },
		{ "salvage", no_argument, NULL, OPT_SALVAGE },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:O:o:B:b:F:cpqnS:m:Wt:T:Ui:l:r:C", longopts,
				NULL)) != -1) {
		if (c == 'h') {
			convert_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (convert_parse_opt(cmd, c))
			return -EINVAL;
	}
	if (cmd->compress || !cmd->cfg.in_order || strcmp(cmd->dst_fmt, "raw") == 0)
		cmd->cfg.workers = convert_default_workers();
	if (cmd->compress) {
		/*
		 * -c copies in clusters (64 KiB), not 2 MiB: a hop to a kernel
		 * worker per request, or an O_DIRECT read without readahead,
		 * costs more there than it saves (zstd: +20 % CPU).
		 */
		cmd->cfg.aio.offload_buffered = false;
		cmd->src_flags &= ~DRV_OPEN_DIRECT_IF_COLD;
	}
	/* --salvage re-reads 512-byte sectors, as qemu-img: O_DIRECT could only read blocks */
	if (cmd->cfg.salvage)
		cmd->src_flags &= ~DRV_OPEN_DIRECT_IF_COLD;
	if (cmd->skip_broken_bitmaps && !cmd->bitmaps) {
		img_err("convert", "Use of --skip-broken-bitmaps requires --bitmaps");
		return -EINVAL;
	}
	if (argc - optind > 2 && cmd->bitmaps) {
		img_err("convert", "Copying bitmaps only possible with single source");
		return -EINVAL;
	}
	if (argc - optind > 2 && cmd->snapshot.set) {
		img_err("convert", "No support for concatenating multiple snapshot");
		return -EINVAL;
	}
	if (argc - optind != 2) {
		img_err("convert", argc - optind < 2 ? "expected SRC and DST"
						     : "too many arguments (one SRC, one DST)");
		return -EINVAL;
	}
	cmd->src = argv[optind];
	cmd->dst = argv[optind + 1];
	if (cmd->force_share)
		cmd->src_flags |= DRV_OPEN_SHARED;
	if (cmd->quiet)
		cmd->cfg.progress = false;
	cmd->cfg.quiet = cmd->quiet;
	return convert_check_args(cmd);
}

/*
 * -c: the target stores whole clusters compressed (drv_ops.write_compressed,
 * reached with DRV_REQ_COMPRESSED).  Once the target is open (@img, else
 * NULL) also the cluster size it compresses in, in *@cluster_bytes.
 */
static bool convert_compress_hook(const struct drv_ops *ops, const struct drv_image *img,
				  uint64_t *cluster_bytes)
{
	*cluster_bytes = img ? img->compress_bytes : 0;
	return ops->write_compressed && (!img || img->compress_bytes);
}

static int convert_create(struct convert_cmd *cmd, const struct drv_ops *ops)
{
	struct drv_create_args args = {
		.size_bytes = cmd->cfg.size_bytes,
		.backing_file = cmd->backing,
		.backing_format = cmd->backing_fmt,
		.opts = cmd->opts.opt,
		.nr_opts = cmd->opts.nr,
	};

	if (!ops->create) {
		img_err("convert", "format '%s' does not support image creation", ops->name);
		return -ENOTSUP;
	}
	/* The driver has logged why it failed, naming the file and option. */
	if (ops->create(cmd->dst, &args))
		return -EIO;
	return img_opts_check_used("convert", &cmd->opts, cmd->dst, ops->name);
}

/* Refuse to write over the source, whatever the names. */
static int check_not_source(const struct convert_cmd *cmd)
{
	struct stat a, b;
	const struct drv_image *img;

	if (stat(cmd->dst, &b) < 0)
		return 0;
	for (img = cmd->cfg.src; img; img = img->backing) {
		if (stat(img->path, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			img_err("convert", "%s is %s, part of the source's chain", cmd->dst,
				img->path);
			return -EINVAL;
		}
	}
	return 0;
}

static int open_source(struct convert_cmd *cmd)
{
	struct drv_image *src;

	if (cmd->image_opts && cmd->src_fmt) {
		img_err("convert", "--image-opts and --format are mutually exclusive");
		return -EINVAL;
	}
	if (cmd->image_opts
		    ? img_open_image_opts("convert", cmd->src, cmd->src_flags, &cmd->cfg.src)
		    : img_open("convert", cmd->src_fmt, cmd->src, cmd->src_flags, &cmd->cfg.src))
		return -EIO;
	if (img_snapshot_param_load("convert", &cmd->snapshot, cmd->cfg.src))
		return -EIO;
	src = cmd->cfg.src;
	cmd->cfg.size_bytes = src->size_bytes;
	/* a remote source gets one connection: qemu-nbd serves one client by default */
	for (; src; src = src->backing) {
		if (strcmp(src->ops->name, "nbd") == 0)
			cmd->cfg.workers = 1;
	}
	src = cmd->cfg.src;
	if (!is_aligned_u64(src->size_bytes, src->block_bytes)) {
		img_err("convert",
			"%s: size %" PRIu64 " is not a multiple of its block size %u: the last "
			"%" PRIu64 " bytes cannot be read",
			cmd->src, src->size_bytes, src->block_bytes,
			src->size_bytes % src->block_bytes);
		return -EINVAL;
	}
	return 0;
}

/* Create (unless -n) and open the target; fill in what the copy needs to know of it. */
static int open_target(struct convert_cmd *cmd, const struct drv_ops *ops)
{
	struct convert_cfg *cfg = &cmd->cfg;
	struct drv_image *dst;

	if (check_not_source(cmd))
		return -EINVAL;
	if (!cmd->skip_create && convert_create(cmd, ops))
		return -EIO;
	if (img_open("convert", ops->name, cmd->dst, cmd->dst_flags, &cfg->dst))
		return -EIO;
	dst = cfg->dst;
	if (dst->size_bytes < cfg->size_bytes) {
		img_err("convert",
			"%s: the target (%" PRIu64 " bytes) is smaller than the source "
			"(%" PRIu64 " bytes)",
			cmd->dst, dst->size_bytes, cfg->size_bytes);
		return -EINVAL;
	}
	cfg->target_has_backing = cmd->backing != NULL;
	cfg->target_backing_bytes = dst->backing ? dst->backing->size_bytes : UINT64_MAX;
	cfg->zero_init = (!cmd->skip_create && !cmd->backing) || cmd->target_is_zero;
	if (cmd->compress) {
		cfg->compress = convert_compress_hook(ops, dst, &cfg->compress_bytes);
		if (!cfg->compress || !is_power_of_2_u64(cfg->compress_bytes) ||
		    cfg->compress_bytes > CONVERT_MAX_SPARSE_BYTES) {
			img_err("convert", "%s: no cluster size to compress in", cmd->dst);
			return -ENOTSUP;
		}
		cfg->buf_bytes = cfg->compress_bytes;
	}
	return 0;
}

static int convert_images(struct convert_cmd *cmd)
{
	const struct drv_ops *ops = drv_find(cmd->dst_fmt);
	uint64_t cluster_bytes;

	if (!ops) {
		img_err("convert", "unknown format '%s'", cmd->dst_fmt);
		return -EINVAL;
	}
	/* Before anything is created: qemu-img checks the format first too. */
	if (cmd->compress && !convert_compress_hook(ops, NULL, &cluster_bytes)) {
		img_err("convert", "compression is not supported by this format (%s)", ops->name);
		return -ENOTSUP;
	}
	if (!ops->write) {
		img_err("convert", "the %s driver cannot write images yet", ops->name);
		return -ENOTSUP;
	}
	if (open_source(cmd))
		return -EIO;
	if (cmd->bitmaps && convert_bitmaps_check_source(cmd->cfg.src, cmd->skip_broken_bitmaps))
		return -EINVAL;
	if (open_target(cmd, ops))
		return -EIO;
	if (cmd->bitmaps && convert_bitmaps_check_target(cmd->cfg.dst, cmd->dst_fmt))
		return -ENOTSUP;
	return convert_copy(&cmd->cfg);
}

int img_cmd_convert(int argc, char **argv)
{
	struct convert_cmd cmd = {
		.dst_fmt = "raw",
		/* -T writeback, but a cold source file is read with O_DIRECT */
		.src_flags = DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED | DRV_OPEN_DIRECT_IF_COLD,
		.dst_flags = DRV_OPEN_BUFFERED | DRV_OPEN_UNSAFE, /* -t unsafe */
		.cfg = {
			.buf_bytes = CONVERT_BUF_BYTES,
			.sparse_bytes = CONVERT_DEFAULT_SPARSE_BYTES,
			.parallel = CONVERT_DEFAULT_PARALLEL,
			.in_order = true,
			.workers = 1,
			/* blocking buffered I/O in the kernel's workers, as qemu-img's thread pool */
			.aio = { .offload_buffered = true },
		},
	};
	CLEANUP_FREE char *bitmaps_src = NULL;
	struct img_ratelimit rate;
	int err;

	if (convert_parse_args(&cmd, argc, argv)) {
		img_snapshot_param_fini(&cmd.snapshot);
		return IMG_EXIT_ERR;
	}
	cmd.cfg.src_name = cmd.src;
	cmd.cfg.dst_name = cmd.dst;
	img_ratelimit_init(&rate, cmd.rate_bytes);
	cmd.cfg.rate = cmd.rate_bytes ? &rate : NULL;
	err = convert_images(&cmd);
	img_ratelimit_fini(&rate);
	/* the top image's file, for after the close */
	if (!err && cmd.bitmaps && !(bitmaps_src = strdup(cmd.cfg.src->path)))
		err = -ENOMEM;
	drv_image_close(cmd.cfg.dst);
	drv_image_close(cmd.cfg.src);
	/* once both are closed, as qemu-img stores the bitmaps when it closes the target */
	if (!err && cmd.bitmaps)
		err = convert_bitmaps_copy(bitmaps_src, cmd.dst, cmd.skip_broken_bitmaps,
					   cmd.force_share);
	img_snapshot_param_fini(&cmd.snapshot);
	fflush(stdout);
	return err ? IMG_EXIT_ERR : IMG_EXIT_OK;
}
