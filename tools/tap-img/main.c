/* SPDX-License-Identifier: MIT */
/*
 * tap-img: the dom0 image tool, in qemu-img's role.  It works on image
 * files directly through the same drivers tapdisk serves guests with.
 * This file only dispatches to the verbs, one file each.
 */
#include <stdio.h>
#include <string.h>

#include "checked.h"
#include "log.h"
#include "tap-img.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} img_verbs[] = {
	{ "create", img_cmd_create, "create a new image" },
	{ "io", img_cmd_io, "read, write, discard and verify an image (qemu-io's commands)" },
	{ "bench", img_cmd_bench, "run a load against an image and report IOPS and latency" },
};

static void usage(FILE *f)
{
	unsigned i;

	fprintf(f, "Usage: tap-img COMMAND [OPTIONS] ...\n\nCommands:\n");
	for (i = 0; i < ARRAY_SIZE(img_verbs); i++)
		fprintf(f, "  %-8s %s\n", img_verbs[i].name, img_verbs[i].summary);
	fprintf(f, "\n'tap-img COMMAND --help' describes a command's options.\n"
		   "Images are FILE (raw unless -f says otherwise) or TYPE:PATH.\n");
}

int main(int argc, char **argv)
{
	unsigned i;

	log_init("tap-img");
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
			return img_verbs[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "tap-img: unknown command '%s' (try 'tap-img --help')\n", argv[1]);
	return IMG_EXIT_ERR;
}
