/* SPDX-License-Identifier: MIT */
/*
 * tap-img bitmap (--merge SOURCE | --add | --remove | --clear | --enable |
 *                 --disable)... [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRAN]
 *                 [-f FMT] FILE BITMAP
 *
 * qemu-img bitmap: change the persistent dirty bitmap BITMAP of a qcow2
 * image.  Several operations may be given; they apply in order, and those
 * done before one that fails are kept, as qemu-img keeps them.  The image
 * is edited by drivers/qcow2/bitmap-edit.c, which stores the bitmaps the
 * way QEMU does and keeps the write-ordering contract.  There is no list
 * operation: tap-img info (or qemu-img info) shows the bitmaps.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "qcow2/bitmap-edit.h"
#include "tap-img.h"

#define BM_MAX_OPS 32
#define BM_MIN_GRAN 512ull
#define BM_MAX_GRAN (1ull << 31)

enum bm_op_kind {
	BM_ADD = 256,
	BM_REMOVE,
	BM_CLEAR,
	BM_ENABLE,
	BM_DISABLE,
	BM_MERGE,
};

static const char *const bm_op_names[] = {
	[BM_ADD - BM_ADD] = "add",	   [BM_REMOVE - BM_ADD] = "remove",
	[BM_CLEAR - BM_ADD] = "clear",	   [BM_ENABLE - BM_ADD] = "enable",
	[BM_DISABLE - BM_ADD] = "disable", [BM_MERGE - BM_ADD] = "merge",
};

struct bm_op {
	enum bm_op_kind kind;
	const char *source; /* --merge */
};

struct bm_cmd {
	const char *fmt;
	const char *filename;
	const char *bitmap;
	const char *src_file;
	const char *src_fmt;
	uint64_t granularity; /* 0: the default */
	struct bm_op ops[BM_MAX_OPS];
	unsigned nr_ops;
	bool has_add;
	bool has_merge;
};

static void bm_usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-img bitmap (--merge SOURCE | --add | --remove | --clear |\n"
		"                       --enable | --disable)... [-b SOURCE_FILE [-F SOURCE_FMT]]\n"
		"                       [-g GRANULARITY] [-f FMT] FILE BITMAP\n"
		"\n"
		"Change the persistent dirty bitmap BITMAP of the qcow2 image FILE; the\n"
		"operations apply in order.\n"
		"  --add            create BITMAP, empty and enabled\n"
		"  --remove         delete BITMAP\n"
		"  --clear          clear every bit of BITMAP\n"
		"  --enable         BITMAP records the changes writers make\n"
		"  --disable        BITMAP stops recording them\n"
		"  --merge SOURCE   set in BITMAP every bit set in bitmap SOURCE (of FILE,\n"
		"                   or of SOURCE_FILE with -b)\n"
		"  -g GRANULARITY   with --add: bytes per bit, a power of two from 512 to 2G\n"
		"                   (default: the cluster size, between 4k and 64k)\n"
		"  -f FMT           format of FILE (default: probed; only qcow2 has bitmaps)\n"
		"  -b SOURCE_FILE   the image holding SOURCE; -F SOURCE_FMT its format\n"
		"tap-img info FILE lists the bitmaps.\n");
}

static int add_op(struct bm_cmd *cmd, enum bm_op_kind kind, const char *source)
{
	if (cmd->nr_ops == BM_MAX_OPS) {
		img_err("bitmap", "too many operations (at most %d)", BM_MAX_OPS);
		return -EINVAL;
	}
	cmd->ops[cmd->nr_ops++] = (struct bm_op){ .kind = kind, .source = source };
	cmd->has_add |= kind == BM_ADD;
	cmd->has_merge |= kind == BM_MERGE;
	return 0;
}

static int parse_gran(struct bm_cmd *cmd, const char *s)
{
	if (img_parse_size("bitmap", "granularity", s, &cmd->granularity))
		return -EINVAL;
	if (!is_power_of_2_u64(cmd->granularity) || cmd->granularity < BM_MIN_GRAN ||
	    cmd->granularity > BM_MAX_GRAN) {
		img_err("bitmap", "Granularity must be power of 2 and at least 512 (at most 2G)");
		return -EINVAL;
	}
	return 0;
}

static int bm_parse_opt(struct bm_cmd *cmd, int c)
{
	switch (c) {
	case 'f':
		cmd->fmt = optarg;
		return 0;
	case 'b':
		cmd->src_file = optarg;
		return 0;
	case 'F':
		cmd->src_fmt = optarg;
		return 0;
	case 'g':
		return parse_gran(cmd, optarg);
	case BM_ADD:
	case BM_REMOVE:
	case BM_CLEAR:
	case BM_ENABLE:
	case BM_DISABLE:
		return add_op(cmd, (enum bm_op_kind)c, NULL);
	case BM_MERGE:
		return add_op(cmd, BM_MERGE, optarg);
	}
	bm_usage(stderr);
	return -EINVAL;
}

/* The combinations qemu-img refuses, in its words. */
static int bm_check_args(const struct bm_cmd *cmd)
{
	if (cmd->nr_ops == 0) {
		img_err("bitmap", "Need at least one of --add, --remove, --clear, --enable, "
				  "--disable, or --merge");
		return -EINVAL;
	}
	if (cmd->granularity && !cmd->has_add) {
		img_err("bitmap", "granularity only supported with --add");
		return -EINVAL;
	}
	if (cmd->src_fmt && !cmd->src_file) {
		img_err("bitmap", "-F only supported with -b");
		return -EINVAL;
	}
	if (cmd->src_file && !cmd->has_merge) {
		img_err("bitmap", "Merge bitmap source file only supported with --merge");
		return -EINVAL;
	}
	return 0;
}

static int bm_parse_args(struct bm_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "add", no_argument, NULL, BM_ADD },
		{ "remove", no_argument, NULL, BM_REMOVE },
		{ "clear", no_argument, NULL, BM_CLEAR },
		{ "enable", no_argument, NULL, BM_ENABLE },
		{ "disable", no_argument, NULL, BM_DISABLE },
		{ "merge", required_argument, NULL, BM_MERGE },
		{ "granularity", required_argument, NULL, 'g' },
		{ "source-file", required_argument, NULL, 'b' },
		{ "source-format", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:b:F:g:", longopts, NULL)) != -1) {
		if (c == 'h') {
			bm_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (bm_parse_opt(cmd, c))
			return -EINVAL;
	}
	if (bm_check_args(cmd))
		return -EINVAL;
	if (argc - optind != 2) {
		img_err("bitmap", "Expecting filename and bitmap name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	cmd->bitmap = argv[optind + 1];
	return 0;
}

/* @filename's path and format: FMT, a TYPE: prefix, or the probe.  Only qcow2 has bitmaps. */
static int qcow2_path(const char *fmt, const char *filename, const char **path)
{
	const char *type = img_spec_split(filename, path);

	if (!fmt)
		fmt = type;
	if (!fmt)
		fmt = img_probe(*path);
	if (strcmp(fmt, "qcow2") != 0) {
		img_err("bitmap", "Can't store persistent bitmaps to %s: format %s has none",
			filename, fmt);
		return -ENOTSUP;
	}
	return 0;
}

/* The default granularity: QEMU's, the cluster size between 4 KiB and 64 KiB. */
static unsigned default_gran_bits(struct qcow2_bme *e)
{
	uint64_t g = MIN(MAX(qcow2_bme_cluster_bytes(e), 4096ull), 65536ull);

	return (unsigned)__builtin_ctzll(g);
}

static int run_op(const struct bm_cmd *cmd, const struct bm_op *op, struct qcow2_bme *e,
		  struct qcow2_bme *src)
{
	switch (op->kind) {
	case BM_ADD:
		return qcow2_bme_add(e, cmd->bitmap,
				     cmd->granularity ? (unsigned)__builtin_ctzll(cmd->granularity)
						      : default_gran_bits(e));
	case BM_REMOVE:
		return qcow2_bme_remove(e, cmd->bitmap);
	case BM_CLEAR:
		return qcow2_bme_clear(e, cmd->bitmap);
	case BM_ENABLE:
	case BM_DISABLE:
		return qcow2_bme_enable(e, cmd->bitmap, op->kind == BM_ENABLE);
	case BM_MERGE:
		return qcow2_bme_merge(e, cmd->bitmap, src ? src : e, op->source);
	}
	return -EINVAL;
}

static int bm_run(const struct bm_cmd *cmd, const char *path, const char *src_path)
{
	struct qcow2_bme *e = NULL, *src = NULL;
	unsigned i, done = 0;
	int err;

	err = qcow2_bme_open(path, false, false, &e);
	if (err) {
		img_err("bitmap", "Could not open '%s': %s", cmd->filename, err_str(err));
		return err;
	}
	if (src_path && (err = qcow2_bme_open(src_path, true, false, &src)) != 0)
		img_err("bitmap", "Could not open '%s': %s", cmd->src_file, err_str(err));
	for (i = 0; !err && i < cmd->nr_ops; i++) {
		err = run_op(cmd, &cmd->ops[i], e, src);
		if (err)
			img_err("bitmap", "Operation %s on bitmap %s failed: %s",
				bm_op_names[cmd->ops[i].kind - BM_ADD], cmd->bitmap, err_str(err));
		else
			done++;
	}
	if (done) {
		int cerr = qcow2_bme_commit(e);

		if (cerr)
			img_err("bitmap", "%s: storing the bitmaps failed: %s", cmd->filename,
				err_str(cerr));
		err = err ?: cerr;
	}
	qcow2_bme_close(src);
	qcow2_bme_close(e);
	return err;
}

int img_cmd_bitmap(int argc, char **argv)
{
	struct bm_cmd cmd = { 0 };
	const char *path, *src_path = NULL;

	if (bm_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	if (qcow2_path(cmd.fmt, cmd.filename, &path))
		return IMG_EXIT_ERR;
	if (cmd.src_file && qcow2_path(cmd.src_fmt, cmd.src_file, &src_path))
		return IMG_EXIT_ERR;
	return bm_run(&cmd, path, src_path) ? IMG_EXIT_ERR : IMG_EXIT_OK;
}
