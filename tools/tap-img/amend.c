/* SPDX-License-Identifier: MIT */
/*
 * tap-img amend [-f FMT] [-p] [-q] [-t CACHE] [--force] -o OPTIONS FILE
 *
 * qemu-img amend for qcow2 images: compat=0.10|v2|1.1|v3 and
 * lazy_refcounts=on|off (drivers/qcow2/amend.c).  Options qemu-img takes
 * only at creation are refused in its words; size= resizes as tap-img
 * resize does; the amendable ones this tool does not change
 * (refcount_bits, backing_file, ...) are refused naming the verb that does
 * it, when there is one.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "optval.h"
#include "opts.h"
#include "qcow2/amend.h"
#include "tap-img.h"

enum {
	OPT_FORCE = 256,
	OPT_OBJECT,
	OPT_IMAGE_OPTS,
};

struct amend_cmd {
	const char *fmt;
	const char *filename;
	const char *path;
	char *optstr; /* every -o, joined with commas */
	bool help;
	struct qcow2_amend_args args;
	uint64_t size_bytes; /* size=: 0 unchanged */
};

static void amend_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img amend [-f FMT] [-p] [-q] [-t CACHE] [--force] -o OPTIONS FILE\n"
		   "\n"
		   "Change options of an existing qcow2 image, as qemu-img amend.\n"
		   "  -o OPTIONS   compat=0.10|v2|1.1|v3, lazy_refcounts=on|off, size=SIZE\n"
		   "               (repeatable;\n"
		   "               -o help lists them)\n"
		   "  -f FMT       the image's format (default: its TYPE: prefix, else probed)\n"
		   "  -p, -q       accepted for qemu-img's sake (nothing is printed)\n"
		   "  -t CACHE     accepted; the image is written with synced writes\n"
		   "  --force      accepted (qemu-img needs it for encryption changes only)\n");
}

static void amend_options_help(void)
{
	printf("Amend options for 'qcow2':\n"
	       "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
	       "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"
	       "  size=<size>            - Virtual disk size\n");
}

static int add_optstr(struct amend_cmd *cmd, const char *s)
{
	size_t old = cmd->optstr ? strlen(cmd->optstr) : 0, n = strlen(s);
	char *p = realloc(cmd->optstr, old + n + 2);

	if (!p) {
		img_err("amend", "out of memory");
		return -ENOMEM;
	}
	if (old)
		p[old++] = ',';
	memcpy(p + old, s, n + 1);
	cmd->optstr = p;
	return 0;
}

static int amend_parse(struct amend_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "object", required_argument, NULL, OPT_OBJECT },
		{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:o:t:pqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			cmd->fmt = optarg;
			break;
		case 'o':
			if (add_optstr(cmd, optarg))
				return -ENOMEM;
			break;
		case 't':
		case 'p':
		case 'q':
		case OPT_FORCE:
			break;
		case 'h':
			amend_usage(stdout);
			return 1;
		case OPT_OBJECT:
		case OPT_IMAGE_OPTS:
			img_err("amend", "--object and --image-opts are not supported");
			return -EINVAL;
		default:
			amend_usage(stderr);
			return -EINVAL;
		}
	}
	if (!cmd->optstr) {
		img_err("amend", "Must specify options (-o)");
		return -EINVAL;
	}
	cmd->help = strcmp(cmd->optstr, "help") == 0 || strcmp(cmd->optstr, "?") == 0;
	if (cmd->help)
		return 0;
	if (optind != argc - 1) {
		amend_usage(stderr);
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	return 0;
}

/* One KEY=VALUE into cmd->args, or refused in qemu-img's words. */
static int amend_opt(struct amend_cmd *cmd, const struct drv_opt *o)
{
	static const char *const create_only[] = { "cluster_size",     "preallocation",
						   "extended_l2",      "compression_type",
						   "encryption",       "encrypt.format",
						   "data_file_raw_on", NULL };
	static const char *const unsupported[] = { "refcount_bits", "backing_file",  "backing_fmt",
						   "data_file",	    "data_file_raw", NULL };
	bool b;
	unsigned i;

	if (strcmp(o->key, "compat") == 0) {
		if (!strcmp(o->value, "0.10") || !strcmp(o->value, "v2"))
			cmd->args.compat = 2;
		else if (!strcmp(o->value, "1.1") || !strcmp(o->value, "v3"))
			cmd->args.compat = 3;
		else
			goto bad_compat;
		return 0;
	}
	if (strcmp(o->key, "size") == 0) {
		if (optval_size(o->value, &cmd->size_bytes)) {
			img_err("amend",
				"Parameter 'size' expects a non-negative number below 2^64");
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(o->key, "lazy_refcounts") == 0) {
		if (optval_bool(o->value, &b)) {
			img_err("amend", "Parameter 'lazy_refcounts' expects 'on' or 'off'");
			return -EINVAL;
		}
		cmd->args.lazy_refcounts = b;
		return 0;
	}
	for (i = 0; create_only[i]; i++) {
		if (strcmp(o->key, create_only[i]) == 0) {
			img_err("amend", "Invalid parameter '%s'", o->key);
			fprintf(stderr, "This option is only supported for image creation\n");
			return -EINVAL;
		}
	}
	for (i = 0; unsupported[i]; i++) {
		if (strcmp(o->key, unsupported[i]) == 0 || strncmp(o->key, "encrypt.", 8) == 0) {
			img_err("amend", "amending '%s' is not supported%s", o->key,
				strncmp(o->key, "backing", 7) == 0 ? ": use tap-img rebase -u"
								   : "");
			return -ENOTSUP;
		}
	}
	img_err("amend", "Invalid parameter '%s'", o->key);
	return -EINVAL;
bad_compat:
	img_err("amend", "Unknown compatibility level %s", o->value);
	return -EINVAL;
}

static int amend_opts(struct amend_cmd *cmd)
{
	struct img_opts o = { 0 };
	unsigned i;
	int err = img_opts_split("amend", &o, cmd->optstr);

	cmd->args.lazy_refcounts = -1;
	for (i = 0; !err && i < o.nr; i++)
		err = amend_opt(cmd, &o.opt[i]);
	return err;
}

static int amend_run(struct amend_cmd *cmd)
{
	const char *type = img_spec_split(cmd->filename, &cmd->path);
	const char *fmt = cmd->fmt ? cmd->fmt : type ? type : img_probe(cmd->path);
	int err = 0;

	if (access(cmd->path, F_OK) < 0) {
		img_err("amend", "Could not open '%s': %s", cmd->filename, strerror(errno));
		return -errno;
	}
	if (strcmp(fmt, "qcow2") != 0) {
		img_err("amend", "Format driver '%s' does not support option amendment", fmt);
		return -ENOTSUP;
	}
	if (amend_opts(cmd))
		return -EINVAL;
	/* a v2 image cannot mark zero clusters: resize while still v3 */
	if (cmd->size_bytes && cmd->args.compat == 2)
		err = img_resize_qcow2("amend", cmd->path, cmd->size_bytes);
	if (!err)
		err = qcow2_amend(cmd->path, &cmd->args);
	if (!err && cmd->size_bytes && cmd->args.compat != 2)
		err = img_resize_qcow2("amend", cmd->path, cmd->size_bytes);
	return err;
}

int img_cmd_amend(int argc, char **argv)
{
	struct amend_cmd cmd = { 0 };
	int err = amend_parse(&cmd, argc, argv);

	if (!err && cmd.help)
		amend_options_help();
	else if (!err)
		err = amend_run(&cmd);
	free(cmd.optstr);
	if (err)
		return err > 0 ? IMG_EXIT_OK : IMG_EXIT_ERR;
	return IMG_EXIT_OK;
}
