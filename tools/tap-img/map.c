/* SPDX-License-Identifier: MIT */
/*
 * tap-img map [--output=human|json] [-f FMT] [--start-offset=OFF]
 *             [--max-length=LEN] [-U] FILE
 *
 * qemu-img map: the image's allocation, extent by extent, with the depth
 * in the backing chain that holds each one, whether it reads as zeros or
 * as data, and where the data lies in which file.  Extents are merged as
 * qemu-img merges them (same flags, same depth and file, contiguous host
 * offsets), so the JSON is qemu-img's, line for line.  The human layout
 * lists only the extents that have data at a known host offset.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bstatus.h"
#include "checked.h"
#include "errors.h"
#include "qcow2/info.h"
#include "tap-img.h"

enum {
	OPT_OUTPUT = 256,
	OPT_START_OFFSET,
	OPT_MAX_LENGTH,
};

struct map_cmd {
	const char *fmt;
	const char *filename;
	/* each image of the chain as qemu-img names it, by depth */
	char *names[DRV_CHAIN_MAX_DEPTH + 1];
	bool json;
	bool force_share;
	uint64_t start;
	uint64_t max_length;
	bool has_max_length;
};

/* qemu-img's MapEntry. */
struct map_entry {
	uint64_t start;
	uint64_t length;
	uint64_t offset;
	unsigned depth;
	bool present;
	bool zero;
	bool data;
	bool has_offset;
	const char *filename; /* the image holding the data (compared) */
	unsigned name_depth;  /* its depth, for its name in map_cmd.names */
};

static void map_usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-img map [--output=human|json] [-f FMT] [--start-offset=OFFSET]\n"
		"                   [--max-length=LENGTH] [-U] FILE\n"
		"\n"
		"Print the allocation of an image and its backing chain, as qemu-img map.\n"
		"  -f FMT               image format (default: FILE's TYPE: prefix, else probed)\n"
		"  --output=FMT         human (default: data extents and their host offsets)\n"
		"                       or json (every extent: start, length, depth, present,\n"
		"                       zero, data, offset)\n"
		"  --start-offset=OFF   start at guest offset OFF (k/M/G suffixes)\n"
		"  --max-length=LEN     at most LEN bytes\n"
		"  -U, --force-share    read an image another process is writing\n");
}

static int map_parse_opt(struct map_cmd *cmd, int c)
{
	switch (c) {
	case 'f':
		cmd->fmt = optarg;
		return 0;
	case 'U':
		cmd->force_share = true;
		return 0;
	case OPT_OUTPUT:
		if (strcmp(optarg, "json") != 0 && strcmp(optarg, "human") != 0) {
			img_err("map", "--output must be used with human or json as argument.");
			return -EINVAL;
		}
		cmd->json = strcmp(optarg, "json") == 0;
		return 0;
	case OPT_START_OFFSET:
		return img_parse_size("map", "start offset", optarg, &cmd->start);
	case OPT_MAX_LENGTH:
		cmd->has_max_length = true;
		return img_parse_size("map", "max length", optarg, &cmd->max_length);
	}
	map_usage(stderr);
	return -EINVAL;
}

static int map_parse_args(struct map_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "force-share", no_argument, NULL, 'U' },
		{ "start-offset", required_argument, NULL, OPT_START_OFFSET },
		{ "max-length", required_argument, NULL, OPT_MAX_LENGTH },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:U", longopts, NULL)) != -1) {
		if (c == 'h') {
			map_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (map_parse_opt(cmd, c))
			return -EINVAL;
	}
	if (optind != argc - 1) {
		img_err("map", "Expecting one image file name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	return 0;
}

/* qemu-img's get_block_status(): down the chain until a level answers. */
static int map_status(struct img_bs_chain *c, struct drv_image *top, uint64_t offset,
		      uint64_t bytes, struct map_entry *e)
{
	struct drv_image *img = top;
	unsigned depth = 0;
	struct img_bs bs;
	int err;

	for (;;) {
		err = img_bs_image(c, img, offset, bytes, &bs);
		if (err)
			return err;
		if (bs.bytes == 0)
			return -EIO; /* the top image's size bounds every query */
		bytes = bs.bytes;
		if (bs.flags & (IMG_BS_ZERO | IMG_BS_DATA))
			break;
		img = img->backing;
		if (!img) {
			bs.flags = 0;
			break;
		}
		depth++;
	}
	*e = (struct map_entry){
		.start = offset,
		.length = bytes,
		.depth = depth,
		.present = bs.flags & IMG_BS_ALLOCATED,
		.zero = bs.flags & IMG_BS_ZERO,
		.data = bs.flags & IMG_BS_DATA,
		.has_offset = bs.flags & IMG_BS_OFFSET_VALID,
		.offset = bs.map,
		.filename = (bs.flags & IMG_BS_OFFSET_VALID) ? bs.file->path : NULL,
		.name_depth = bs.file->depth,
	};
	return 0;
}

/* qemu-img's entry_mergeable(). */
static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
	if (a->length == 0)
		return false;
	if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
	    a->present != b->present || !a->filename != !b->filename ||
	    a->has_offset != b->has_offset)
		return false;
	if (a->filename && strcmp(a->filename, b->filename) != 0)
		return false;
	return !a->has_offset || a->offset + a->length == b->offset;
}

/* qemu-img's dump_map_entry(); @more: another entry follows. */
static int print_entry(const struct map_cmd *cmd, const struct map_entry *e, bool more)
{
	if (cmd->json) {
		printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
		       "\"present\": %s, \"zero\": %s, \"data\": %s",
		       e->start, e->length, e->depth, e->present ? "true" : "false",
		       e->zero ? "true" : "false", e->data ? "true" : "false");
		if (e->has_offset)
			printf(", \"offset\": %" PRIu64, e->offset);
		putchar('}');
		if (more)
			puts(",");
		return 0;
	}
	if (e->data && !e->has_offset) {
		img_err("map", "File contains external, encrypted or compressed clusters.");
		return -ENOTSUP;
	}
	if (e->data && e->has_offset)
		printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
		       e->offset, cmd->names[e->name_depth] ?: e->filename);
	return 0;
}

static int map_image(const struct map_cmd *cmd, struct drv_image *top)
{
	uint64_t length = top->size_bytes;
	struct map_entry curr = { .start = cmd->start }, next;
	struct img_bs_chain c;
	int err;

	if (cmd->has_max_length && cmd->start < length && cmd->max_length < length - cmd->start)
		length = cmd->start + cmd->max_length;
	err = img_bs_chain_init(&c, "map", top);
	if (err) {
		img_bs_chain_fini(&c);
		return err;
	}
	if (cmd->json)
		putchar('[');
	else
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	while (!err && curr.start + curr.length < length) {
		uint64_t offset = curr.start + curr.length;

		err = map_status(&c, top, offset, length - offset, &next);
		if (err) {
			img_err("map", "Could not read file metadata: %s", err_str(err));
			break;
		}
		if (mergeable(&curr, &next)) {
			curr.length += next.length;
			continue;
		}
		if (curr.length > 0)
			err = print_entry(cmd, &curr, true);
		curr = next;
	}
	if (!err)
		err = print_entry(cmd, &curr, false);
	if (cmd->json)
		puts("]");
	img_bs_chain_fini(&c);
	return err;
}

/*
 * The names qemu-img prints: the top as given, each backing file after the
 * directory of the image naming it.  A name that cannot be read is left
 * NULL (the driver's path is printed instead).
 */
static void chain_names(struct map_cmd *cmd, const struct drv_image *top)
{
	const char *colon = strchr(cmd->filename, ':');
	const struct drv_image *img;
	struct qcow2_info q;

	cmd->names[0] =
		strdup(cmd->fmt || !colon || strcmp(top->path, cmd->filename) == 0 ? cmd->filename
										   : top->path);
	for (img = top; img->backing && cmd->names[img->depth]; img = img->backing) {
		if (strcmp(img->ops->name, "qcow2") != 0 || qcow2_info_read(img->path, &q))
			return;
		if (q.hdr.has_backing_file)
			cmd->names[img->depth + 1] =
				img_backing_name(cmd->names[img->depth], q.hdr.backing_file);
		qcow2_info_fini(&q);
	}
}

int img_cmd_map(int argc, char **argv)
{
	struct map_cmd cmd = { 0 };
	struct drv_image *top;
	unsigned flags = DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED;
	int err;

	if (map_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	if (cmd.force_share)
		flags |= DRV_OPEN_SHARED;
	if (img_open_probed("map", cmd.fmt, cmd.filename, flags, &top))
		return IMG_EXIT_ERR;
	chain_names(&cmd, top);
	err = map_image(&cmd, top);
	drv_image_close(top);
	for (unsigned i = 0; i < ARRAY_SIZE(cmd.names); i++)
		free(cmd.names[i]);
	fflush(stdout);
	return err ? IMG_EXIT_ERR : IMG_EXIT_OK;
}
