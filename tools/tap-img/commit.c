/* SPDX-License-Identifier: MIT */
/*
 * tap-img commit [-f FMT] [-t CACHE] [-b BASE] [-r RATE] [-d] [-p] [-q] FILE
 *
 * qemu-img commit: copy what FILE (and, with -b, every image between it
 * and BASE) holds into its backing file (or BASE), then empty FILE so that
 * it reads through to the result, unless -d or -b (qemu-img keeps FILE
 * then).  The copy reads FILE's chain (what the guest sees) for every run
 * held above the base, as QEMU's commit job does, and writes it into the
 * base opened read-write on its own (a smaller base grows first); the
 * base is flushed before FILE is emptied, so a crash loses nothing.  The
 * emptying is qcow2_sne_empty(): the active L1 zeroed, then the clusters
 * unreferenced.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "chaincopy.h"
#include "checked.h"
#include "errors.h"
#include "ratelimit.h"
#include "qcow2/snapshot-edit.h"
#include "tap-img.h"

#define COMMIT_BUF_BYTES (2u << 20)

struct commit_cmd {
	const char *fmt;
	const char *filename;
	const char *base;
	unsigned cache_flags;
	bool keep; /* -d */
	bool quiet;
	struct img_progress progress;
	struct img_ratelimit rate; /* -r */
};

static void commit_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img commit [-f FMT] [-t CACHE] [-b BASE] [-r RATE] [-d] [-p] [-q] "
		   "FILE\n"
		   "\n"
		   "Copy the data FILE holds into its backing file, then empty FILE.\n"
		   "  -b BASE   commit into BASE, an image deeper in FILE's backing chain, with\n"
		   "            the data of every image above it; FILE is then kept as it is\n"
		   "  -d        keep FILE's data (do not empty it)\n"
		   "  -f FMT    format of FILE (default: its TYPE: prefix, else probed)\n"
		   "  -t CACHE  cache mode (default writeback)\n"
		   "  -r RATE   copy at most RATE bytes per second (k/M/G/T/P/E suffixes;\n"
		   "            0: no limit)\n"
		   "  -p        show progress\n"
		   "  -q        quiet\n"
		   "Exit status: 0 on success, 1 on error.\n");
}

static int commit_parse_args(struct commit_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	cmd->cache_flags = DRV_OPEN_BUFFERED;
	while ((c = getopt_long(argc, argv, "hf:t:b:dpqr:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			commit_usage(stdout);
			exit(IMG_EXIT_OK);
		case 'f':
			cmd->fmt = optarg;
			break;
		case 't':
			cmd->cache_flags = 0;
			if (img_parse_cache("commit", optarg, &cmd->cache_flags))
				return -EINVAL;
			break;
		case 'b':
			cmd->base = optarg;
			break;
		case 'd':
			cmd->keep = true;
			break;
		case 'p':
			cmd->progress.on = true;
			break;
		case 'q':
			cmd->quiet = true;
			break;
		case 'r':
			if (img_parse_rate("commit", optarg, &cmd->rate.bytes_per_sec))
				return -EINVAL;
			break;
		default:
			commit_usage(stderr);
			return -EINVAL;
		}
	}
	if (argc - optind != 1) {
		img_err("commit", "Expecting one image file name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	cmd->progress.on &= !cmd->quiet;
	return 0;
}

/* The image of @top's chain that is @name, or NULL (printed). */
static struct drv_image *find_base(const struct commit_cmd *cmd, struct drv_image *top)
{
	struct drv_image *img;

	for (img = top->backing; img; img = img->backing) {
		if (img_same_file(cmd->base, img->path))
			return img;
	}
	img_err("commit", "Did not find '%s' in the backing chain of '%s'", cmd->base,
		cmd->filename);
	return NULL;
}

/* Every run held above @base, read through @top and written into @dst. */
static int copy_above(struct commit_cmd *cmd, struct img_chain *top, struct drv_image *base,
		      struct img_chain *dst)
{
	uint64_t size = top->img->size_bytes, off = 0, n;
	uint8_t *buf = buf_alloc(COMMIT_BUF_BYTES, 4096);
	bool alloc;
	int err = buf ? 0 : -ENOMEM;

	while (!err && off < size) {
		img_progress_show(&cmd->progress, off, size);
		err = img_allocated_above(top, top->img, base, off,
					  MIN(size - off, (uint64_t)COMMIT_BUF_BYTES), &alloc, &n);
		if (err)
			img_err("commit", "%s: block status at byte %" PRIu64 ": %s", cmd->filename,
				off, err_str(err));
		if (!err && alloc) {
			img_ratelimit_wait(&cmd->rate, n);
			err = img_read("commit", top, off, buf, n);
		}
		if (!err && alloc)
			err = img_copy_out("commit", dst, off, buf, n);
		off += err ? 0 : n;
	}
	/* the last run's time at the rate too, as QEMU's commit job spends it */
	if (!err)
		img_ratelimit_wait(&cmd->rate, 0);
	img_progress_show(&cmd->progress, size, size);
	buf_free(buf);
	return err;
}

static int grow_qcow2(const char *path, uint64_t size)
{
	struct qcow2_sne *e;
	int err = qcow2_sne_open(path, false, false, &e);

	if (!err)
		err = qcow2_sne_grow(e, size);
	qcow2_sne_close(e);
	return err;
}

/* A smaller base grows to the overlay's size first, as QEMU's commit job grows it. */
static int grow_base(const struct commit_cmd *cmd, struct drv_image *base, uint64_t size)
{
	int err = 0;

	if (strcmp(base->ops->name, "qcow2") == 0)
		err = grow_qcow2(base->path, size);
	else if (strcmp(base->ops->name, "raw") != 0)
		err = -ENOTSUP;
	else if (truncate(base->path, (off_t)size) < 0)
		err = -errno;
	if (err)
		img_err("commit", "growing %s to %" PRIu64 " bytes: %s", base->path, size,
			err_str(err));
	return err;
}

static int empty_top(const struct commit_cmd *cmd, const char *top_path)
{
	struct qcow2_sne *e;
	int err = qcow2_sne_open(top_path, false, false, &e);

	if (!err)
		err = qcow2_sne_empty(e);
	qcow2_sne_close(e);
	if (err)
		img_err("commit", "%s: emptying the image after the commit: %s", cmd->filename,
			err_str(err));
	return err;
}

static int commit_run(struct commit_cmd *cmd)
{
	struct img_chain top, dst = { 0 };
	struct drv_image *base;
	char *top_path = NULL;
	bool empty;
	int err;

	err = img_chain_open("commit", cmd->fmt, cmd->filename, DRV_OPEN_RDONLY | cmd->cache_flags,
			     &top);
	if (err)
		return err;
	base = top.img->backing;
	if (!base) {
		img_err("commit", "Image does not have a backing file");
		err = -EINVAL;
	} else if (cmd->base && !(base = find_base(cmd, top.img))) {
		err = -ENOENT;
	} else if (base->size_bytes < top.img->size_bytes) {
		err = grow_base(cmd, base, top.img->size_bytes);
	}
	if (!err)
		err = img_chain_open("commit", base->ops->name, base->path, cmd->cache_flags, &dst);
	if (!err)
		err = copy_above(cmd, &top, base, &dst);
	if (!err && (err = drv_sync_flush(dst.sync)) != 0)
		img_err("commit", "flushing %s: %s", base->path, err_str(err));
	img_progress_end(&cmd->progress);
	/* only qcow2 images have a backing file, and so get here */
	empty = !err && !cmd->keep && !cmd->base;
	if (empty && !(top_path = strdup(top.img->path)))
		err = -ENOMEM;
	img_chain_close(&dst);
	img_chain_close(&top);
	if (empty && !err)
		err = empty_top(cmd, top_path);
	free(top_path);
	return err;
}

int img_cmd_commit(int argc, char **argv)
{
	struct commit_cmd cmd = { 0 };
	const char *path;
	int err;

	img_ratelimit_init(&cmd.rate, 0);
	err = commit_parse_args(&cmd, argc, argv);
	if (!err && !cmd.fmt && !img_spec_split(cmd.filename, &path))
		cmd.fmt = img_probe(cmd.filename);
	if (!err)
		err = commit_run(&cmd);
	img_ratelimit_fini(&cmd.rate);
	if (err)
		return IMG_EXIT_ERR;
	if (!cmd.quiet)
		printf("Image committed.\n");
	return IMG_EXIT_OK;
}
