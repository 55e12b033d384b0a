/* SPDX-License-Identifier: MIT */
/*
 * tap-img resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] FILE [+|-]SIZE
 *
 * qemu-img resize: make a raw or qcow2 image SIZE bytes long, or SIZE
 * more or less.  Shrinking needs --shrink whatever the data past the new
 * end; preallocation only grows.  qcow2 images are changed by
 * drivers/qcow2/resize.c with the ordering of ARCHITECTURE.md §4; raw
 * files are truncated, fallocated or zero-filled.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "imglock.h"
#include "sync.h"
#include "qcow2/info.h"
#include "qcow2/resize.h"
#include "tap-img.h"

enum {
	OPT_SHRINK = 256,
	OPT_PREALLOC,
	OPT_OBJECT,
};

struct resize_cmd {
	const char *fmt;
	const char *filename;
	const char *path; /* @filename without a TYPE: prefix */
	const char *size_str;
	bool shrink;
	bool quiet;
	enum qcow2_prealloc prealloc;
	uint64_t cur_bytes;
	uint64_t new_bytes;
	uint64_t backing_bytes; /* 0: no backing file */
	uint8_t *head;		/* qcow2 over a longer backing file: see qcow2/resize.h */
};

static void resize_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img resize [-f FMT] [--shrink] [--preallocation=MODE] [-q]\n"
		   "                      FILE [+|-]SIZE\n"
		   "\n"
		   "Change the disk size of an image, as qemu-img resize.\n"
		   "  -f FMT                 raw or qcow2 (default: FILE's TYPE: prefix, else "
		   "probed)\n"
		   "  SIZE                   the new size (k/M/G/T/P/E suffixes); +SIZE or -SIZE\n"
		   "                         relative to the current one\n"
		   "  --shrink               allow a smaller size: data past the new end is lost\n"
		   "  --preallocation=MODE   off (default), metadata (qcow2), falloc or full:\n"
		   "                         allocate the added space\n"
		   "  -q                     no \"Image resized.\" line\n");
}

static int parse_prealloc(const char *s, enum qcow2_prealloc *out)
{
	static const char *const names[] = { "off", "metadata", "falloc", "full" };
	unsigned i;

	for (i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum qcow2_prealloc)i;
			return 0;
		}
	}
	img_err("resize", "Invalid preallocation mode '%s'", s);
	return -EINVAL;
}

static int resize_parse(struct resize_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "shrink", no_argument, NULL, OPT_SHRINK },
		{ "preallocation", required_argument, NULL, OPT_PREALLOC },
		{ "object", required_argument, NULL, OPT_OBJECT },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	/* the size may be negative: take it before getopt sees it, as qemu-img does */
	if (argc < 2) {
		resize_usage(stderr);
		return -EINVAL;
	}
	if (strcmp(argv[argc - 1], "--help") == 0 || strcmp(argv[argc - 1], "-h") == 0) {
		resize_usage(stdout);
		return 1;
	}
	cmd->size_str = argv[--argc];
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			cmd->fmt = optarg;
			break;
		case 'q':
			cmd->quiet = true;
			break;
		case 'h':
			resize_usage(stdout);
			return 1;
		case OPT_SHRINK:
			cmd->shrink = true;
			break;
		case OPT_PREALLOC:
			if (parse_prealloc(optarg, &cmd->prealloc))
				return -EINVAL;
			break;
		case OPT_OBJECT:
			img_err("resize", "--object is not supported");
			return -EINVAL;
		default:
			resize_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		resize_usage(stderr);
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	return 0;
}

/* The format: -f, else the TYPE: prefix, else probed as qemu-img probes. */
static int resize_format(struct resize_cmd *cmd)
{
	const char *type = img_spec_split(cmd->filename, &cmd->path);

	if (!cmd->fmt)
		cmd->fmt = type ? type : img_probe(cmd->path);
	if (strcmp(cmd->fmt, "aio") == 0)
		cmd->fmt = "raw";
	if (strcmp(cmd->fmt, "raw") != 0 && strcmp(cmd->fmt, "qcow2") != 0) {
		img_err("resize", "cannot resize '%s': format '%s' is not raw or qcow2",
			cmd->filename, cmd->fmt);
		return -ENOTSUP;
	}
	return 0;
}

/* The guest's view of the disk's last partial 2 MiB, before it grows over a longer backing file. */
static int read_head(struct resize_cmd *cmd, struct drv_image *img)
{
	uint64_t off = cmd->cur_bytes / QCOW2_RESIZE_HEAD_ALIGN * QCOW2_RESIZE_HEAD_ALIGN;
	struct drv_sync *s = NULL;
	int err;

	if (off == cmd->cur_bytes)
		return 0;
	cmd->head = malloc(cmd->cur_bytes - off);
	err = cmd->head ? drv_sync_new(img, NULL, &s) : -ENOMEM;
	if (!err)
		err = drv_sync_rw(s, DRV_OP_READ, off, cmd->head, cmd->cur_bytes - off);
	drv_sync_free(s);
	if (err)
		img_err("resize", "reading '%s' at %" PRIu64 ": %s", cmd->filename, off,
			err_str(err));
	return err;
}

static int current_size(struct resize_cmd *cmd)
{
	/* raw: qemu-img resize shares everything, so a raw file's writers do not refuse it */
	unsigned shared = strcmp(cmd->fmt, "raw") == 0 ? DRV_OPEN_SHARED : 0;
	struct drv_image *img;
	int err = img_open("resize", cmd->fmt, cmd->path,
			   DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED | shared, &img);

	if (err)
		return err;
	cmd->cur_bytes = img->size_bytes;
	cmd->backing_bytes = img->backing ? img->backing->size_bytes : 0;
	if (cmd->backing_bytes > cmd->cur_bytes && strcmp(cmd->fmt, "qcow2") == 0)
		err = read_head(cmd, img);
	drv_image_close(img);
	return err;
}

/* The new size, absolute or relative, checked as qemu-img checks it. */
static int target_size(struct resize_cmd *cmd)
{
	const char *s = cmd->size_str;
	int sign = (*s == '+') - (*s == '-');
	uint64_t n;

	if (img_parse_size("resize", "size", sign ? s + 1 : s, &n))
		return -EINVAL;
	if (sign < 0 && n >= cmd->cur_bytes) {
		img_err("resize", "New image size must be positive");
		return -EINVAL;
	}
	if (sign > 0 && n > INT64_MAX - cmd->cur_bytes) {
		img_err("resize", "Image size must be less than 8 EiB!");
		return -EINVAL;
	}
	cmd->new_bytes = sign < 0 ? cmd->cur_bytes - n : sign > 0 ? cmd->cur_bytes + n : n;
	if (cmd->new_bytes == 0) {
		img_err("resize", "New image size must be positive");
		return -EINVAL;
	}
	if (cmd->new_bytes <= cmd->cur_bytes && cmd->prealloc != QCOW2_PREALLOC_OFF) {
		img_err("resize", "Preallocation can only be used for growing images");
		return -EINVAL;
	}
	if (cmd->new_bytes < cmd->cur_bytes && !cmd->shrink) {
		img_err("resize", "Use the --shrink option to perform a shrink operation.");
		img_err("resize", "warning: Shrinking an image will delete all data beyond the "
				  "shrunken image's end. Before performing such an operation, make "
				  "sure there is no important data there.");
		return -EINVAL;
	}
	return 0;
}

/* Zeros written over [@off, @end) of @fd. */
static int raw_fill(int fd, uint64_t off, uint64_t end)
{
	size_t chunk = 1u << 20;
	char *z = calloc(1, chunk);
	int err = z ? 0 : -ENOMEM;

	while (!err && off < end) {
		size_t n = (size_t)(end - off < chunk ? end - off : chunk);
		ssize_t w = pwrite(fd, z, n, (off_t)off);

		if (w <= 0)
			err = w < 0 ? -errno : -EIO;
		else
			off += (uint64_t)w;
	}
	free(z);
	return err;
}

static int resize_raw(struct resize_cmd *cmd)
{
	uint64_t old = cmd->cur_bytes, new = cmd->new_bytes;
	struct stat st;
	int fd, lock_fd, err;

	if (cmd->prealloc == QCOW2_PREALLOC_METADATA) {
		img_err("resize", "Unsupported preallocation mode: metadata");
		return -ENOTSUP;
	}
	err = img_lock("resize", cmd->filename, cmd->path, IMGLOCK_PERM_RW, IMGLOCK_SHARED_SHARED,
		       &lock_fd);
	if (err)
		return err;
	fd = open(cmd->path, O_RDWR | O_CLOEXEC);
	err = fd < 0 ? -errno : 0;
	if (!err && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && new != old) {
		img_err("resize", "Cannot resize device files");
		err = -ENOTSUP;
	} else if (!err && ftruncate(fd, (off_t) new) < 0) {
		err = -errno;
	}
	if (!err && new > old && cmd->prealloc == QCOW2_PREALLOC_FALLOC)
		err = -posix_fallocate(fd, (off_t)old, (off_t)(new - old));
	if (!err && new > old && cmd->prealloc == QCOW2_PREALLOC_FULL)
		err = raw_fill(fd, old, new);
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (err && err != -ENOTSUP)
		img_err("resize", "Could not resize file: %s", err_str(err));
	if (fd >= 0)
		close(fd);
	if (lock_fd >= 0)
		close(lock_fd);
	return err;
}

static int resize_qcow2(struct resize_cmd *cmd)
{
	struct qcow2_resize_args a = {
		.size_bytes = cmd->new_bytes,
		.prealloc = cmd->prealloc,
		.zero_new = cmd->backing_bytes > cmd->cur_bytes,
		.head_offset = cmd->cur_bytes / QCOW2_RESIZE_HEAD_ALIGN * QCOW2_RESIZE_HEAD_ALIGN,
		.head = cmd->head,
	};

	return qcow2_resize(cmd->path, &a);
}

int img_resize_qcow2(const char *verb, const char *path, uint64_t size_bytes)
{
	struct resize_cmd cmd = { .fmt = "qcow2", .path = path, .new_bytes = size_bytes };
	int err = current_size(&cmd);

	(void)verb;
	if (!err)
		err = resize_qcow2(&cmd);
	free(cmd.head);
	return err;
}

int img_cmd_resize(int argc, char **argv)
{
	struct resize_cmd cmd = { 0 };
	int err = resize_parse(&cmd, argc, argv);

	if (err)
		return err > 0 ? IMG_EXIT_OK : IMG_EXIT_ERR;
	if (resize_format(&cmd) || current_size(&cmd) || target_size(&cmd)) {
		free(cmd.head);
		return IMG_EXIT_ERR;
	}
	if (strcmp(cmd.fmt, "raw") == 0) {
		err = resize_raw(&cmd);
	} else {
		err = resize_qcow2(&cmd);
	}
	free(cmd.head);
	if (err)
		return IMG_EXIT_ERR;
	if (!cmd.quiet)
		printf("Image resized.\n");
	return IMG_EXIT_OK;
}
