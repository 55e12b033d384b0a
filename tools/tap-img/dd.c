// SPDX-License-Identifier: MIT
/*
 * tap-img dd: qemu-img dd.  Copy bs-sized blocks of an image, from block
 * skip on and, with count, up to block count, into a new image of the
 * output format.  Every block is written as data, zeros too, as qemu-img
 * dd writes them: the output is fully allocated.
 *
 * The output's size is qemu-img's: the input's size, cut to count x bs
 * when that is smaller, less skip x bs.  (count counts from the start of
 * the input, not from the skipped blocks on: qemu-img 7.2's rule, kept.)
 * The copy moves runs of its own size, not bs, which writes the same bytes
 * to the same places.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "sync.h"
#include "tap-img.h"

#define DD_MAX_BS 2147483647ull	  /* qemu-img's bound: INT_MAX */
#define DD_CHUNK_BYTES (1u << 20) /* what one read and one write move at most */
#define DD_SECTOR 512u

static const char suffix_hint[] =
	"You may use k, M, G, T, P or E suffixes for\n"
	"tap-img: dd: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.";

struct dd_cmd {
	const char *fmt;     /* -f */
	const char *out_fmt; /* -O */
	bool image_opts;     /* --image-opts: if= is QEMU's option string */
	bool force_share;    /* -U */
	const char *in, *out;
	uint64_t bs, count, skip;
	bool has_count, has_skip;
};

static void dd_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img dd [--image-opts] [-U] [-f FMT] [-O OUTPUT_FMT] [bs=BYTES]\n"
		   "                  [count=N] [skip=N] if=INPUT of=OUTPUT\n"
		   "\n"
		   "Copy an image block by block into a new image, as qemu-img dd.\n"
		   "  -f FMT        format of INPUT (default: its TYPE: prefix, else probed)\n"
		   "  -O FMT        format of OUTPUT (default raw); OUTPUT is created anew\n"
		   "  -U            read INPUT even while another process writes it (no lock)\n"
		   "  --image-opts  INPUT is driver=FMT,file.filename=PATH[,KEY=VALUE...]\n"
		   "  bs=BYTES      read and write up to BYTES bytes at a time (default 512)\n"
		   "  count=N       copy only N input blocks (counted from the start of INPUT)\n"
		   "  skip=N        skip N bs-sized blocks at the start of INPUT\n"
		   "  if=INPUT      read from INPUT\n"
		   "  of=OUTPUT     write to OUTPUT\n"
		   "Sizes take k, M, G, T, P and E suffixes (powers of 1024). Every block is\n"
		   "written, zeros too: OUTPUT is fully allocated.\n");
}

/* One operand, KEY=VALUE; qemu-img's messages for what is wrong with it. */
static int dd_operand(struct dd_cmd *cmd, const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
	const char *v = eq ? eq + 1 : "";
	uint64_t n;

	if (eq && klen == 2 && strncmp(arg, "if", 2) == 0) {
		cmd->in = v;
		return 0;
	}
	if (eq && klen == 2 && strncmp(arg, "of", 2) == 0) {
		cmd->out = v;
		return 0;
	}
	if (eq && klen == 2 && strncmp(arg, "bs", 2) == 0) {
		if (parse_u64(v, true, &n)) {
			img_err("dd", "Invalid bs specified. %s", suffix_hint);
			return -EINVAL;
		}
		if (n == 0 || n > DD_MAX_BS) {
			img_err("dd", "Invalid bs specified. Must be between 1 and %llu.",
				DD_MAX_BS);
			return -EINVAL;
		}
		cmd->bs = n;
		return 0;
	}
	if (eq && klen == 5 && strncmp(arg, "count", 5) == 0) {
		if (parse_u64(v, true, &cmd->count) || cmd->count > INT64_MAX) {
			img_err("dd", "Invalid count specified. %s", suffix_hint);
			return -EINVAL;
		}
		cmd->has_count = true;
		return 0;
	}
	if (eq && klen == 4 && strncmp(arg, "skip", 4) == 0) {
		if (parse_u64(v, true, &cmd->skip) || cmd->skip > INT64_MAX) {
			img_err("dd", "Invalid skip specified. %s", suffix_hint);
			return -EINVAL;
		}
		cmd->has_skip = true;
		return 0;
	}
	img_err("dd", "unrecognized operand %.*s", (int)klen, arg);
	return -EINVAL;
}

static int dd_parse_args(struct dd_cmd *cmd, int argc, char **argv)
{
	enum { OPT_IMAGE_OPTS = 256 };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	cmd->bs = 512;
	while ((c = getopt_long(argc, argv, "hf:O:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			dd_usage(stdout);
			exit(IMG_EXIT_OK);
		case 'f':
			cmd->fmt = optarg;
			break;
		case 'O':
			cmd->out_fmt = optarg;
			break;
		case 'U':
			cmd->force_share = true;
			break;
		case OPT_IMAGE_OPTS:
			cmd->image_opts = true;
			break;
		default:
			dd_usage(stderr);
			return -EINVAL;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (dd_operand(cmd, argv[i]))
			return -EINVAL;
	}
	if (!cmd->in || !cmd->out) {
		img_err("dd", "Must specify both input and output files");
		return -EINVAL;
	}
	if (cmd->image_opts && cmd->fmt) {
		img_err("dd", "--image-opts and -f are mutually exclusive");
		return -EINVAL;
	}
	return 0;
}

static int dd_open_input(const struct dd_cmd *cmd, struct drv_image **img)
{
	unsigned flags = DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED;

	if (cmd->force_share)
		flags |= DRV_OPEN_SHARED;
	if (cmd->image_opts)
		return img_open_image_opts("dd", cmd->in, flags, img);
	return img_open_probed("dd", cmd->fmt, cmd->in, flags, img);
}

/* qemu-img dd's output size: see the top of this file. */
static uint64_t dd_out_size(const struct dd_cmd *cmd, uint64_t in_size, uint64_t *end,
			    bool *past_end)
{
	uint64_t size = in_size;

	if (cmd->has_count && cmd->count <= INT64_MAX / cmd->bs && size > cmd->count * cmd->bs)
		size = cmd->count * cmd->bs;
	*end = size;
	*past_end = cmd->skip > INT64_MAX / cmd->bs || size < cmd->skip * cmd->bs;
	return *past_end ? 0 : size - cmd->skip * cmd->bs;
}

/* Create the output through tap-img create, quietly, as qemu-img dd does. */
static int dd_create(const struct dd_cmd *cmd, uint64_t size)
{
	char size_arg[32], fmt[32];
	char *args[] = { "create", "-q", "-f", fmt, (char *)cmd->out, size_arg, NULL };
	int save_optind = optind, rc;

	snprintf(fmt, sizeof(fmt), "%s", cmd->out_fmt ? cmd->out_fmt : "raw");
	snprintf(size_arg, sizeof(size_arg), "%" PRIu64, size);
	optind = 0; /* glibc: restart getopt for the verb */
	rc = img_cmd_create((int)ARRAY_SIZE(args) - 1, args);
	optind = save_optind;
	return rc == IMG_EXIT_OK ? 0 : -EIO;
}

/*
 * Copy input bytes [@from, @end) to the output from 0 on, in runs aligned
 * on the output side; an input offset off the 512-byte grid (bs=3000
 * skip=7) is read as the sectors around it.  The output's size was rounded
 * up to a sector by create; the last run's tail past the copy is zeros, as
 * qemu-img leaves it.
 */
static int dd_copy(const struct dd_cmd *cmd, struct drv_sync *in, struct drv_sync *out,
		   uint64_t from, uint64_t end)
{
	uint8_t *buf = buf_alloc(DD_CHUNK_BYTES + 2 * DD_SECTOR, 4096);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t done = 0; done < end - from;) {
		uint64_t len = MIN(DD_CHUNK_BYTES, end - from - done), pos = from + done;
		uint64_t head = pos % DD_SECTOR;
		uint64_t rlen = div_round_up_u64(head + len, DD_SECTOR) * DD_SECTOR;

		err = drv_sync_rw(in, DRV_OP_READ, pos - head, buf, rlen);
		if (err) {
			img_err("dd", "%s: error while reading input image: %s", cmd->in,
				err_str(err));
			break;
		}
		if (head)
			memmove(buf, buf + head, len);
		memset(buf + len, 0, div_round_up_u64(len, DD_SECTOR) * DD_SECTOR - len);
		err = drv_sync_rw(out, DRV_OP_WRITE, done, buf,
				  div_round_up_u64(len, DD_SECTOR) * DD_SECTOR);
		if (err) {
			img_err("dd", "%s: error while writing to output image file: %s", cmd->out,
				err_str(err));
			break;
		}
		done += len;
	}
	buf_free(buf);
	if (!err && (err = drv_sync_flush(out)) != 0)
		img_err("dd", "%s: flushing: %s", cmd->out, err_str(err));
	return err;
}

static int dd_run(const struct dd_cmd *cmd)
{
	struct drv_image *in_img = NULL, *out_img = NULL;
	struct drv_sync *in = NULL, *out = NULL;
	uint64_t end, size;
	bool past_end;
	int err;

	err = dd_open_input(cmd, &in_img);
	if (err)
		return err;
	size = dd_out_size(cmd, in_img->size_bytes, &end, &past_end);
	err = dd_create(cmd, size);
	if (!err && past_end) /* a warning: the output is empty, as dd(1) leaves it */
		img_err("dd", "%s: cannot skip to specified offset", cmd->in);
	if (!err)
		err = img_open("dd", cmd->out_fmt ? cmd->out_fmt : "raw", cmd->out,
			       DRV_OPEN_BUFFERED, &out_img);
	if (!err && (err = drv_sync_new(in_img, NULL, &in)) != 0)
		img_err("dd", "%s: setting up I/O: %s", cmd->in, err_str(err));
	if (!err && (err = drv_sync_new(out_img, NULL, &out)) != 0)
		img_err("dd", "%s: setting up I/O: %s", cmd->out, err_str(err));
	if (!err)
		err = dd_copy(cmd, in, out, end - size, end);
	drv_sync_free(out);
	drv_sync_free(in);
	if (out_img)
		drv_image_close(out_img);
	drv_image_close(in_img);
	return err;
}

int img_cmd_dd(int argc, char **argv)
{
	struct dd_cmd cmd = { 0 };

	if (dd_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	return dd_run(&cmd) ? IMG_EXIT_ERR : IMG_EXIT_OK;
}
