/* SPDX-License-Identifier: MIT */
/*
 * tap-img measure [--output=human|json] [-O FMT] [-o OPTIONS] [-U]
 *                 [--size N | [-f FMT] [-l SNAPSHOT_PARAM] FILE]
 *
 * qemu-img measure: how large a new image of format FMT (raw by default)
 * would be, for a disk of N bytes or holding FILE's contents: the
 * "required size" (metadata for the whole disk, plus the clusters FILE's
 * data needs), the "fully allocated size", and for a qcow2 source the
 * space its persistent bitmaps take.  The numbers are qemu-img's: the
 * arithmetic is QEMU's (drivers/qcow2/measure.c), and FILE's data is found
 * with QEMU's block status of its chain (bstatus.c).
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
#include "create.h"
#include "errors.h"
#include "json.h"
#include "qcow2/info.h"
#include "qcow2/measure.h"
#include "qjson.h"
#include "snapshot-param.h"
#include "tap-img.h"

enum {
	OPT_OUTPUT = 256,
	OPT_SIZE,
};

struct measure_cmd {
	struct create_cmd create; /* -O and -o, parsed as create parses them */
	const char *src_fmt;
	const char *filename;
	const char *size_str;
	struct img_snapshot_param snapshot; /* -l */
	bool json;
	bool force_share;
	struct drv_image *src;
	uint64_t size_bytes; /* --size, or the source's */
};

struct measure_info {
	uint64_t required;
	uint64_t fully_allocated;
	bool has_bitmaps;
	uint64_t bitmaps;
};

static void measure_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img measure [--output=human|json] [-O FMT] [-o OPTIONS] [-U]\n"
		   "                       [--size N | [-f FMT] [-l SNAPSHOT_PARAM] FILE]\n"
		   "\n"
		   "Print the size a new image of format FMT needs, as qemu-img measure.\n"
		   "  --size N         for a disk of N bytes (k/M/G/T suffixes)\n"
		   "  FILE             for a copy of FILE (and its backing chain)\n"
		   "  -f FMT           FILE's format (default: its TYPE: prefix, else probed)\n"
		   "  -O FMT           the new image's format: raw (default) or qcow2\n"
		   "  -o OPTIONS       its create options (cluster_size, compat, refcount_bits,\n"
		   "                   extended_l2, preallocation, backing_file, ...)\n"
		   "  --output=FMT     human (default) or json\n"
		   "  -U               read FILE even while another process writes it\n"
		   "  -l SNAPSHOT_PARAM  measure the internal snapshot of FILE (qcow2) it\n"
		   "                   names: snapshot.id=ID[,snapshot.name=NAME],\n"
		   "                   snapshot.name=NAME, or a bare ID_OR_NAME\n");
}

static int measure_parse_opt(struct measure_cmd *cmd, int c)
{
	switch (c) {
	case 'f':
		cmd->src_fmt = optarg;
		return 0;
	case 'O':
		cmd->create.fmt = optarg;
		return 0;
	case 'o':
		return create_split_opts(&cmd->create, optarg);
	case 'U':
		cmd->force_share = true;
		return 0;
	case 'l':
		return img_snapshot_param_parse("measure", optarg, &cmd->snapshot);
	case OPT_SIZE:
		cmd->size_str = optarg;
		return 0;
	case OPT_OUTPUT:
		if (strcmp(optarg, "json") != 0 && strcmp(optarg, "human") != 0) {
			img_err("measure", "--output must be used with human or json as argument.");
			return -EINVAL;
		}
		cmd->json = strcmp(optarg, "json") == 0;
		return 0;
	}
	measure_usage(stderr);
	return -EINVAL;
}

static int measure_check_args(struct measure_cmd *cmd)
{
	if (cmd->filename && cmd->size_str) {
		img_err("measure", "--size N cannot be used together with a filename.");
		return -EINVAL;
	}
	if (!cmd->filename && !cmd->size_str) {
		img_err("measure", "Either --size N or one filename must be specified.");
		return -EINVAL;
	}
	if (!cmd->filename && (cmd->src_fmt || cmd->snapshot.set)) {
		img_err("measure", "--image-opts, -f, and -l require a filename argument.");
		return -EINVAL;
	}
	if (cmd->size_str)
		return img_parse_size("measure", "size", cmd->size_str, &cmd->size_bytes);
	return 0;
}

static int measure_parse_args(struct measure_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:O:o:Ul:", longopts, NULL)) != -1) {
		if (c == 'h') {
			measure_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (measure_parse_opt(cmd, c))
			return -EINVAL;
	}
	if (argc - optind > 1) {
		img_err("measure", "At most one filename argument is allowed.");
		return -EINVAL;
	}
	if (optind < argc)
		cmd->filename = argv[optind];
	return measure_check_args(cmd);
}

/* Bytes of data clusters a copy of the source needs (QEMU's loop in qcow2_measure()). */
static int source_data_bytes(struct measure_cmd *cmd, uint64_t cluster_bytes, uint64_t *out)
{
	uint64_t size = cmd->src->size_bytes, offset, pnum;
	struct img_bs_chain c;
	struct img_bs bs;
	int err = img_bs_chain_init(&c, "measure", cmd->src);

	*out = 0;
	for (offset = 0; !err && offset < size; offset += pnum) {
		err = img_bs_above(&c, cmd->src, offset, size - offset, &bs);
		if (!err && bs.bytes == 0)
			err = -EIO;
		if (err)
			break;
		pnum = bs.bytes;
		if (bs.flags & IMG_BS_ZERO)
			continue;
		if ((bs.flags & (IMG_BS_DATA | IMG_BS_ALLOCATED)) ==
		    (IMG_BS_DATA | IMG_BS_ALLOCATED)) {
			pnum = ALIGN_DOWN(offset + pnum + cluster_bytes - 1, cluster_bytes) -
			       offset;
			*out += offset % cluster_bytes + pnum;
		}
	}
	if (err)
		img_err("measure", "Unable to get block status: %s", err_str(err));
	img_bs_chain_fini(&c);
	return err;
}

/* The space the source's persistent bitmaps take in a qcow2 image of @cluster_bytes. */
static int source_bitmaps(struct measure_cmd *cmd, uint64_t cluster_bytes, uint64_t *out)
{
	struct qcow2_info q;
	uint64_t dir = 0;
	unsigned i;
	int err = qcow2_info_read(cmd->src->path, &q);

	*out = 0;
	if (err) {
		img_err("measure", "%s: %s", cmd->filename, err_str(err));
		return err;
	}
	for (i = 0; i < q.nb_bitmaps; i++)
		*out += qcow2_measure_bitmap_bytes(cmd->src->size_bytes,
						   1ull << q.bitmaps[i].granularity_bits,
						   strlen(q.bitmaps[i].name), cluster_bytes, &dir);
	*out += div_round_up_u64(dir, cluster_bytes) * cluster_bytes;
	qcow2_info_fini(&q);
	return 0;
}

static int measure_qcow2(struct measure_cmd *cmd, struct measure_info *mi)
{
	struct qcow2_create_geom g;
	uint64_t virt, required = 0, cb;
	int err = qcow2_create_parse(cmd->filename ?: "measure", &cmd->create.args, &g);

	if (err)
		return err;
	cb = g.cluster_bytes;
	virt = ALIGN_DOWN(cmd->size_bytes + cb - 1, cb);
	if (div_round_up_u64(virt / cb, cb / (g.extended_l2 ? 16 : 8)) * 8 > (32u << 20)) {
		img_err("measure", "The image size is too large (try using a larger cluster size)");
		return -EFBIG;
	}
	if (cmd->src && g.has_backing)
		required = virt; /* nothing known to be shared with the new backing file */
	else if (cmd->src && (err = source_data_bytes(cmd, cb, &required)) != 0)
		return err;
	if (g.prealloc_data)
		required = virt;
	mi->fully_allocated = qcow2_measure_prealloc_bytes(&g, virt);
	mi->required = mi->fully_allocated - virt + required;
	mi->has_bitmaps = g.version >= 3 && cmd->src && strcmp(cmd->src->ops->name, "qcow2") == 0;
	return mi->has_bitmaps ? source_bitmaps(cmd, cb, &mi->bitmaps) : 0;
}

static void print_info(const struct measure_cmd *cmd, const struct measure_info *mi)
{
	json_t *o;

	if (!cmd->json) {
		printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n",
		       mi->required, mi->fully_allocated);
		if (mi->has_bitmaps)
			printf("bitmaps size: %" PRIu64 "\n", mi->bitmaps);
		return;
	}
	o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "required", json_integer((json_int_t)mi->required));
	json_object_set_new(o, "fully-allocated", json_integer((json_int_t)mi->fully_allocated));
	if (mi->has_bitmaps)
		json_object_set_new(o, "bitmaps", json_integer((json_int_t)mi->bitmaps));
	qjson_print(stdout, o);
	json_decref(o);
}

static int measure_run(struct measure_cmd *cmd)
{
	struct measure_info mi = { 0 };
	unsigned flags = DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED;
	int err;

	cmd->create.ops = drv_find(cmd->create.fmt);
	cmd->create.filename = cmd->filename ?: "measure";
	if (!cmd->create.ops) {
		img_err("measure", "Unknown file format '%s'", cmd->create.fmt);
		return -EINVAL;
	}
	if (strcmp(cmd->create.ops->name, "raw") != 0 && strcmp(cmd->create.ops->name, "qcow2")) {
		img_err("measure", "Block driver '%s' does not support size measurement",
			cmd->create.fmt);
		return -ENOTSUP;
	}
	if (create_check_opts(&cmd->create))
		return -EINVAL;
	if (cmd->create.size_known && !cmd->size_str)
		cmd->size_bytes = cmd->create.args.size_bytes;
	if (cmd->filename) {
		if (cmd->force_share)
			flags |= DRV_OPEN_SHARED;
		if (img_open_probed("measure", cmd->src_fmt, cmd->filename, flags, &cmd->src) ||
		    img_snapshot_param_load("measure", &cmd->snapshot, cmd->src))
			return -EIO;
		cmd->size_bytes = cmd->src->size_bytes;
	}
	if (strcmp(cmd->create.ops->name, "raw") == 0) {
		mi.required = cmd->src ? cmd->size_bytes : ALIGN_DOWN(cmd->size_bytes + 511, 512);
		mi.fully_allocated = mi.required;
		err = 0;
	} else {
		err = measure_qcow2(cmd, &mi);
	}
	if (!err)
		print_info(cmd, &mi);
	return err;
}

int img_cmd_measure(int argc, char **argv)
{
	struct measure_cmd cmd = { .create = { .fmt = "raw" } };
	int err;

	if (measure_parse_args(&cmd, argc, argv)) {
		img_snapshot_param_fini(&cmd.snapshot);
		return IMG_EXIT_ERR;
	}
	err = measure_run(&cmd);
	drv_image_close(cmd.src);
	img_snapshot_param_fini(&cmd.snapshot);
	fflush(stdout);
	return err ? IMG_EXIT_ERR : IMG_EXIT_OK;
}
