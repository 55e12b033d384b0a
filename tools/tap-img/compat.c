/* SPDX-License-Identifier: MIT */
/*
 * blktap's image tools under their old names, for scripts written for
 * them: tap-img installed (or linked) as qcow-create, img2qcow or
 * qcow2raw takes their old arguments and runs the matching verb.  The
 * images are qcow2 (blktap's were QEMU's first qcow format, which no
 * current tool writes).
 *
 *   qcow-create [-h] [-r] SIZE_MB FILE [BACKING]   create -f qcow2 (-r: fully
 *                                                  allocated, preallocation=full)
 *   img2qcow QCOW_FILE SRC_IMAGE                   convert -f raw -O qcow2
 *   qcow2raw RAW_FILE QCOW_FILE                    convert -f qcow2 -O raw
 *
 * A backing file's format is recognised from its header (qcow2, else raw):
 * the old tool recorded none, and it is the administrator's own file.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "tap-img.h"

#define COMPAT_MAX_ARGS 16

static int run_verb(int (*fn)(int, char **), char **args)
{
	int argc = 0;

	while (args[argc])
		argc++;
	optind = 0; /* glibc: restart getopt for the verb */
	return fn(argc, args);
}

static void qcow_create_usage(FILE *f)
{
	fprintf(f, "usage: qcow-create [-h help] [-r reserve] <SIZE(MB)> <FILENAME> "
		   "[<BACKING_FILENAME>]\n"
		   "Creates a qcow2 image of SIZE megabytes (tap-img create -f qcow2);\n"
		   "-r allocates all of it (preallocation=full).\n");
}

static int qcow_create(int argc, char **argv)
{
	/* the verb may split its -o argument in place: it must be writable */
	char size[32], prealloc[] = "preallocation=full";
	char *args[COMPAT_MAX_ARGS] = { "create", "-q", "-f", "qcow2" };
	unsigned n = 4;
	uint64_t mb;
	int c;

	while ((c = getopt(argc, argv, "hr")) != -1) {
		if (c == 'h') {
			qcow_create_usage(stdout);
			return IMG_EXIT_OK;
		}
		if (c != 'r') {
			qcow_create_usage(stderr);
			return IMG_EXIT_ERR;
		}
		args[n++] = "-o";
		args[n++] = prealloc;
	}
	if (argc - optind != 2 && argc - optind != 3) {
		qcow_create_usage(stderr);
		return IMG_EXIT_ERR;
	}
	if (parse_u64(argv[optind], false, &mb) || mb > (UINT64_MAX >> 20)) {
		fprintf(stderr, "qcow-create: invalid size '%s' (megabytes)\n", argv[optind]);
		return IMG_EXIT_ERR;
	}
	snprintf(size, sizeof(size), "%" PRIu64 "M", mb);
	if (argc - optind == 3) {
		args[n++] = "-b";
		args[n++] = argv[optind + 2];
		args[n++] = "-F";
		args[n++] = (char *)img_probe(argv[optind + 2]);
	}
	args[n++] = argv[optind + 1];
	args[n++] = size;
	return run_verb(img_cmd_create, args);
}

/* img2qcow and qcow2raw: DEST first, then SRC, as blktap's tools took them. */
static int convert_to(const char *prog, int argc, char **argv, char *src_fmt, char *dst_fmt)
{
	char *args[COMPAT_MAX_ARGS] = { "convert", "-p", "-f", src_fmt, "-O", dst_fmt };

	if (argc != 3 || argv[1][0] == '-') {
		fprintf(argc == 2 && strcmp(argv[1], "-h") == 0 ? stdout : stderr,
			"usage: %s <%s FILENAME> <%s IMAGE>\n"
			"Copies the %s image into a new %s image (tap-img convert -f %s -O %s).\n",
			prog, strcmp(dst_fmt, "qcow2") == 0 ? "QCOW" : "RAW",
			strcmp(src_fmt, "qcow2") == 0 ? "QCOW" : "SRC", src_fmt, dst_fmt, src_fmt,
			dst_fmt);
		return argc == 2 && strcmp(argv[1], "-h") == 0 ? IMG_EXIT_OK : IMG_EXIT_ERR;
	}
	args[6] = argv[2];
	args[7] = argv[1];
	return run_verb(img_cmd_convert, args);
}

bool img_compat_name(const char *prog)
{
	return strcmp(prog, "qcow-create") == 0 || strcmp(prog, "img2qcow") == 0 ||
	       strcmp(prog, "qcow2raw") == 0;
}

int img_compat_main(const char *prog, int argc, char **argv)
{
	if (strcmp(prog, "qcow-create") == 0)
		return qcow_create(argc, argv);
	if (strcmp(prog, "img2qcow") == 0)
		return convert_to(prog, argc, argv, "raw", "qcow2");
	return convert_to(prog, argc, argv, "qcow2", "raw");
}
