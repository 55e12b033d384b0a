/* SPDX-License-Identifier: MIT */
/*
 * tap-img: the dom0 image tool, in qemu-img's role.  It works on image
 * files directly through the same drivers tapdisk serves guests with.
 * This file only dispatches to the verbs, one file each.
 */
#include <stdio.h>
#include <string.h>

#include "aio-rec.h"
#include "checked.h"
#include "log.h"
#include "tap-img.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} img_verbs[] = {
	{ "create", img_cmd_create, "create a new image" },
	{ "convert", img_cmd_convert, "copy an image and its backing chain into a new image" },
	{ "info", img_cmd_info, "show what qemu-img info shows about an image" },
	{ "check", img_cmd_check, "check an image for consistency, and repair it" },
	{ "io", img_cmd_io, "read, write, discard and verify an image (qemu-io's commands)" },
	{ "bench", img_cmd_bench, "run a load against an image and report IOPS and latency" },
	{ "bitmap", img_cmd_bitmap, "add, remove, clear, enable, disable and merge dirty bitmaps" },
	{ "compare", img_cmd_compare, "check whether two images have the same contents" },
	{ "measure", img_cmd_measure, "how large a new image would be, for a size or a copy" },
	{ "map", img_cmd_map, "show where an image's data lies, extent by extent" },
	{ "snapshot", img_cmd_snapshot, "create, apply, delete and list internal snapshots" },
	{ "commit", img_cmd_commit, "copy an overlay's data into its backing file" },
	{ "rebase", img_cmd_rebase, "change an image's backing file, keeping its contents" },
	{ "resize", img_cmd_resize, "grow or shrink an image's disk" },
	{ "amend", img_cmd_amend, "change a qcow2 image's compat level and lazy refcounts" },
	{ "dd", img_cmd_dd, "copy an image block by block into a new image, as dd" },
};

static void usage(FILE *f)
{
	unsigned i;

	fprintf(f, "Usage: tap-img [-D FLAGS] COMMAND [OPTIONS] ...\n\nCommands:\n");
	for (i = 0; i < ARRAY_SIZE(img_verbs); i++)
		fprintf(f, "  %-8s %s\n", img_verbs[i].name, img_verbs[i].summary);
	fprintf(f,
		"\n'tap-img COMMAND --help' describes a command's options.\n"
		"Images are FILE (raw unless -f says otherwise) or TYPE:PATH.\n"
		"-D FLAGS enables debug output for subsystems: %s\n"
		"(also the QTAP_DEBUG environment variable).\n",
		log_debug_names());
}

/* Global options before the command: -D FLAGS.  Returns argv's shift or -1. */
static int global_opts(int argc, char **argv)
{
	int i = 1;

	while (i < argc && strcmp(argv[i], "-D") == 0) {
		if (i + 1 >= argc) {
			fprintf(stderr, "tap-img: -D needs a list of flags (%s)\n",
				log_debug_names());
			return -1;
		}
		if (log_set_debug_flags(argv[i + 1]) < 0)
			return -1;
		i += 2;
	}
	return i - 1;
}

/*
 * Run a command; with QTAP_RECORD=LOG (or +LOG) its writes are recorded for
 * the crash harness (lib/aio-rec.h), as tapdisk's are.  A test switch.
 */
static int run_verb(int (*fn)(int argc, char **argv), int argc, char **argv)
{
	struct aio_rec *rec;
	int rc;

	if (aio_rec_start_env(&rec))
		return IMG_EXIT_ERR;
	rc = fn(argc, argv);
	if (aio_rec_free(rec) && rc == IMG_EXIT_OK)
		rc = IMG_EXIT_ERR;
	return rc;
}

int main(int argc, char **argv)
{
	unsigned i;
	int shift;

	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

	if (img_compat_name(prog)) {
		log_init(prog);
		return img_compat_main(prog, argc, argv);
	}
	log_init("tap-img");
	shift = global_opts(argc, argv);
	if (shift < 0)
		return IMG_EXIT_ERR;
	argc -= shift;
	argv += shift;
	if (argc < 2) {
		usage(stderr);
		return IMG_EXIT_ERR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return IMG_EXIT_OK;
	}
	for (i = 0; i < ARRAY_SIZE(img_verbs); i++) {
		if (strcmp(argv[1], img_verbs[i].name) == 0)
			return run_verb(img_verbs[i].fn, argc - 1, argv + 1);
	}
	fprintf(stderr, "tap-img: unknown command '%s' (try 'tap-img --help')\n", argv[1]);
	return IMG_EXIT_ERR;
}
