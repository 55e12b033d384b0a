/* SPDX-License-Identifier: MIT */
/*
 * tap-img create [-q] [-f FMT] [-o OPTIONS] [-b BACKING [-F FMT]] [-u] FILE [SIZE]
 *
 * As qemu-img create (its bdrv_img_create()): the format defaults to raw,
 * -o may be repeated and "-o help" lists the format's options; the size
 * may come from -o size=, and otherwise from the backing file, which is
 * opened (read-only, with its chain) unless -u says not to.  A backing
 * file needs its format (-F): probing it is what CVE-2008-2004 was about.
 * Every option must be consumed by the format, or the command fails
 * naming it.  The formats offered are the registry's drivers that can
 * create.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checked.h"
#include "cleanup.h"
#include "create.h"
#include "errors.h"
#include "optval.h"
#include "tap-img.h"

static void create_usage(FILE *f)
{
	unsigned i;

	fprintf(f,
		"Usage: tap-img create [-q] [-f FMT] [-o OPTIONS] [-b BACKING [-F FMT]] [-u] FILE "
		"[SIZE]\n"
		"\n"
		"Create an image of SIZE bytes (k, M, G, T, P, E suffixes: powers of 1024).\n"
		"  -f FMT       image format (default raw)\n"
		"  -o OPTIONS   format options, KEY=VALUE[,KEY=VALUE...]; repeatable;\n"
		"               '-o help' lists the format's options\n"
		"  -b BACKING   backing file, for formats that have one; SIZE defaults to its "
		"size\n"
		"  -F FMT       format of the backing file (required with -b)\n"
		"  -u           do not open the backing file (SIZE is then required)\n"
		"  -q           quiet\n"
		"\nFormats:");
	for (i = 0; drv_registry[i]; i++) {
		if (drv_registry[i]->create)
			fprintf(f, " %s", drv_registry[i]->name);
	}
	fputc('\n', f);
}

/* The formats that can create, "a, b", for error messages. */
static void create_formats(char *buf, size_t size)
{
	size_t used = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; drv_registry[i] && used < size; i++) {
		if (!drv_registry[i]->create)
			continue;
		used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
					 drv_registry[i]->name);
	}
}

static const struct drv_ops *create_find_format(const char *fmt)
{
	const struct drv_ops *ops = drv_find(fmt);
	char formats[256];

	if (ops && ops->create)
		return ops;
	create_formats(formats, sizeof(formats));
	if (ops)
		img_err("create", "format '%s' does not support image creation (formats: %s)", fmt,
			formats);
	else
		img_err("create", "unknown format '%s' (formats: %s)", fmt, formats);
	return NULL;
}

static int create_parse_args(struct create_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hqf:o:b:F:u", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			create_usage(stdout);
			exit(IMG_EXIT_OK);
		case 'q':
			cmd->quiet = true;
			break;
		case 'f':
			cmd->fmt = optarg;
			break;
		case 'o':
			if (create_split_opts(cmd, optarg))
				return -EINVAL;
			break;
		case 'b':
			cmd->backing_arg = optarg;
			break;
		case 'F':
			cmd->backing_fmt_arg = optarg;
			break;
		case 'u':
			cmd->no_backing_open = true;
			break;
		default:
			create_usage(stderr);
			return -EINVAL;
		}
	}
	cmd->filename = optind < argc ? argv[optind] : NULL;
	cmd->size_arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (optind + 2 < argc) {
		img_err("create", "Unexpected argument: %s", argv[optind + 2]);
		return -EINVAL;
	}
	return 0;
}

/* The SIZE argument, as qemu-img's cvtnum() reads it. */
static int create_parse_size(struct create_cmd *cmd)
{
	uint64_t v;
	int err;

	if (!cmd->size_arg)
		return 0;
	err = optval_size(cmd->size_arg, &v);
	if (err == -EINVAL) {
		img_err("create", "Invalid image size specified. You may use k, M, G, T, P or E "
				  "suffixes for\nkilobytes, megabytes, gigabytes, terabytes, "
				  "petabytes and exabytes.");
		return err;
	}
	if (err || v > INT64_MAX) {
		img_err("create",
			"Invalid image size specified. Must be between 0 and %" PRId64 ".",
			INT64_MAX);
		return -ERANGE;
	}
	cmd->args.size_bytes = v;
	cmd->size_known = true;
	return 0;
}

/*
 * The backing file's name as opened from here: a relative name is
 * relative to the new image's directory (qemu's path_combine()).
 */
static char *backing_path(const char *filename, const char *backing)
{
	const char *slash = strrchr(filename, '/');
	char *path;

	if (backing[0] == '/' || !slash)
		return strdup(backing);
	if (asprintf(&path, "%.*s%s", (int)(slash - filename + 1), filename, backing) < 0)
		return NULL;
	return path;
}

/* Open the backing chain read-only for its size, as qemu-img does. */
static int create_open_backing(struct create_cmd *cmd, const char *path)
{
	const char *fmt = cmd->args.backing_format;
	CLEANUP_FREE char *spec = NULL;
	struct drv_image *img;
	struct stat st;
	int err;

	if (stat(path, &st) < 0) {
		err = neg_errno();
		img_err("create", "%s: Could not open '%s': %s\nCould not open backing image.",
			cmd->filename, path, err_str(err));
		return err;
	}
	if (!fmt) {
		img_err("create", "%s: Backing file specified without backing format",
			cmd->filename);
		return -EINVAL;
	}
	if (!drv_find(fmt)) {
		img_err("create", "%s: Unknown driver '%s'\nCould not open backing image.",
			cmd->filename, fmt);
		return -EINVAL;
	}
	if (asprintf(&spec, "%s:%s", fmt, path) < 0) {
		spec = NULL;
		return -ENOMEM;
	}
	err = drv_chain_open(spec, DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED, &img);
	if (err) {
		img_err("create", "%s: Could not open '%s': %s\nCould not open backing image.",
			cmd->filename, path, err_str(err));
		return err;
	}
	/* QEMU's block layer counts whole sectors: a raw file's tail rounds up */
	if (!cmd->size_known && ck_align_up_u64(img->size_bytes, 512, &cmd->args.size_bytes) == 0)
		cmd->size_known = true;
	drv_image_close(img);
	return 0;
}

/* qemu-img's checks of the backing file, and the size it implies. */
static int create_check_backing(struct create_cmd *cmd)
{
	const char *backing = cmd->args.backing_file;
	CLEANUP_FREE char *path = NULL;

	if (!backing)
		return 0;
	if (strcmp(backing, cmd->filename) == 0) {
		img_err("create",
			"%s: Error: Trying to create an image with the same filename as the "
			"backing file",
			cmd->filename);
		return -EINVAL;
	}
	if (backing[0] == '\0') {
		img_err("create", "%s: Expected backing file name, got empty string",
			cmd->filename);
		return -EINVAL;
	}
	if (cmd->no_backing_open) {
		if (cmd->args.backing_format)
			return 0;
		img_err("create", "%s: Backing file specified without backing format",
			cmd->filename);
		return -EINVAL;
	}
	path = backing_path(cmd->filename, backing);
	if (!path)
		return -ENOMEM;
	return create_open_backing(cmd, path);
}

static int create_prepare(struct create_cmd *cmd)
{
	if (!cmd->filename) {
		img_err("create", "Expecting image file name");
		return -EINVAL;
	}
	if (create_parse_size(cmd) || create_check_opts(cmd) || create_check_backing(cmd))
		return -EINVAL;
	if (!cmd->size_known) {
		img_err("create", "%s: Image creation needs a size parameter", cmd->filename);
		return -EINVAL;
	}
	return 0;
}

int img_cmd_create(int argc, char **argv)
{
	struct create_cmd cmd = { .fmt = "raw" };
	unsigned i;

	if (create_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	cmd.ops = create_find_format(cmd.fmt);
	if (!cmd.ops)
		return IMG_EXIT_ERR;
	if (cmd.help) {
		create_print_help(&cmd);
		return IMG_EXIT_OK;
	}
	if (create_prepare(&cmd))
		return IMG_EXIT_ERR;
	if (!cmd.quiet)
		create_print_formatting(&cmd);
	/* The driver has logged why it failed, naming the file and option. */
	if (cmd.ops->create(cmd.filename, &cmd.args))
		return IMG_EXIT_ERR;
	for (i = 0; i < cmd.args.nr_opts; i++) {
		if (!cmd.opts[i].used) {
			img_err("create", "%s: invalid parameter '%s' for format %s", cmd.filename,
				cmd.opts[i].key, cmd.fmt);
			return IMG_EXIT_ERR;
		}
	}
	return IMG_EXIT_OK;
}
