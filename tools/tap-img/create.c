/* SPDX-License-Identifier: MIT */
/*
 * tap-img create [-q] [-f FMT] [-o KEY=VALUE[,...]] [-b BACKING [-F FMT]] FILE SIZE
 *
 * As qemu-img create: the format defaults to raw, -o may be repeated, and
 * every option must be consumed by the format or the command fails naming
 * it.  The formats offered are the registry's drivers that can create.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "tap-img.h"

#define CREATE_MAX_OPTS 32

struct create_cmd {
	const char *fmt;
	const char *filename;
	uint64_t size_bytes;
	bool quiet;
	struct drv_create_args args;
	struct drv_opt opts[CREATE_MAX_OPTS]; /* point into argv's -o strings */
};

static void create_usage(FILE *f)
{
	unsigned i;

	fprintf(f,
		"Usage: tap-img create [-q] [-f FMT] [-o OPTIONS] [-b BACKING [-F FMT]] FILE SIZE\n"
		"\n"
		"Create an image of SIZE bytes (k, M, G, T suffixes: powers of 1024).\n"
		"  -f FMT       image format (default raw)\n"
		"  -o OPTIONS   format options, KEY=VALUE[,KEY=VALUE...]; repeatable\n"
		"               raw: preallocation=off|falloc|full\n"
		"  -b BACKING   backing file, for formats that have one\n"
		"  -F FMT       format of the backing file\n"
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

/* Split one -o argument "k=v,k=v" (in place) into cmd->opts. */
static int create_split_opts(struct create_cmd *cmd, char *s)
{
	while (s && *s) {
		char *comma = strchr(s, ',');
		char *eq;
		struct drv_opt *opt;

		if (comma)
			*comma = '\0';
		eq = strchr(s, '=');
		if (!eq || eq == s) {
			img_err("create", "invalid option '%s' (expected KEY=VALUE)", s);
			return -EINVAL;
		}
		if (cmd->args.nr_opts == CREATE_MAX_OPTS) {
			img_err("create", "too many options (at most %d)", CREATE_MAX_OPTS);
			return -EINVAL;
		}
		*eq = '\0';
		opt = &cmd->opts[cmd->args.nr_opts++];
		opt->key = s;
		opt->value = eq + 1;
		s = comma ? comma + 1 : NULL;
	}
	return 0;
}

static int create_parse_args(struct create_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hqf:o:b:F:", longopts, NULL)) != -1) {
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
			cmd->args.backing_file = optarg;
			break;
		case 'F':
			cmd->args.backing_format = optarg;
			break;
		default:
			create_usage(stderr);
			return -EINVAL;
		}
	}
	if (argc - optind != 2) {
		img_err("create",
			argc - optind < 2 ? "expected FILE and SIZE" : "too many arguments");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	return img_parse_size("create", "size", argv[optind + 1], &cmd->args.size_bytes);
}

static void create_print(const struct create_cmd *cmd)
{
	unsigned i;

	printf("Formatting '%s', fmt=%s size=%" PRIu64, cmd->filename, cmd->fmt,
	       cmd->args.size_bytes);
	if (cmd->args.backing_file)
		printf(" backing_file=%s", cmd->args.backing_file);
	if (cmd->args.backing_format)
		printf(" backing_fmt=%s", cmd->args.backing_format);
	for (i = 0; i < cmd->args.nr_opts; i++)
		printf(" %s=%s", cmd->opts[i].key, cmd->opts[i].value);
	putchar('\n');
}

int img_cmd_create(int argc, char **argv)
{
	struct create_cmd cmd = { .fmt = "raw" };
	const struct drv_ops *ops;
	unsigned i;

	cmd.args.opts = cmd.opts;
	if (create_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	ops = create_find_format(cmd.fmt);
	if (!ops)
		return IMG_EXIT_ERR;
	if (!cmd.quiet)
		create_print(&cmd);
	/* The driver has logged why it failed, naming the file and option. */
	if (ops->create(cmd.filename, &cmd.args))
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
