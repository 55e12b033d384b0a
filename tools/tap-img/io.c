/* SPDX-License-Identifier: MIT */
/*
 * tap-img io [-f FMT] [-r] [-n] [-t CACHE] [-i AIO] [-q] -c CMD [-c CMD ...] FILE
 *
 * The qemu-io subset that test scripts use, run through the real driver
 * path (drv_submit on an aio queue).  As qemu-io, every -c command runs in
 * order even after one fails, and the exit code is 1 if any failed.
 * Output lines match qemu-io's so transcripts can be compared.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "cleanup.h"
#include "errors.h"
#include "io.h"
#include "tap-img.h"

#define IO_MAX_CMDS 256
#define IO_MAX_WORDS 32

struct io_opts {
	const char *fmt;
	const char *filename;
	unsigned open_flags;
	struct aio_ctx_opts aio;
	bool quiet;
	bool image_opts; /* FILE is driver=FMT,file.filename=PATH,KEY=VALUE,... */
	const char *cmds[IO_MAX_CMDS];
	unsigned nr_cmds;
};

static void io_usage(FILE *f)
{
	unsigned i;

	fprintf(f, "Usage: tap-img io [-f FMT] [-r] [-U] [-n] [-t CACHE] [-i AIO] [-q] -c CMD ... "
		   "FILE\n"
		   "\n"
		   "Run qemu-io style commands against an image, in order.\n"
		   "  -f FMT     image format (default: FILE's TYPE: prefix, else raw;\n"
		   "             nothing is probed, so raw never misreads another format)\n"
		   "  -r         open read-only\n"
		   "  -U         with -r: share the image with its writers (no lock refuses them)\n"
		   "  -n         O_DIRECT (the default; same as -t none)\n"
		   "  -t CACHE   none|directsync (O_DIRECT) or writeback|writethrough|unsafe\n"
		   "  -i AIO     io_uring|libaio|native|threads|sync|auto (default auto)\n"
		   "  -q         print errors only\n"
		   "  -c CMD     a command; repeatable\n"
		   "  --image-opts  FILE is driver=FMT,file.filename=PATH[,KEY=VALUE...]:\n"
		   "             the driver's open options (qcow2: l2-cache-size, ...)\n"
		   "\nCommands (OFF and LEN take k/M/G suffixes):\n");
	for (i = 0; io_cmds[i].name; i++)
		fprintf(f, "  %s%s%s\n      %s\n", io_cmds[i].name, *io_cmds[i].args ? " " : "",
			io_cmds[i].args, io_cmds[i].help);
}

static int io_parse_opt(struct io_opts *o, int c)
{
	switch (c) {
	case 'f':
		o->fmt = optarg;
		return 0;
	case 'r':
		o->open_flags |= DRV_OPEN_RDONLY;
		return 0;
	case 'n':
		o->open_flags &= ~DRV_OPEN_BUFFERED;
		return 0;
	case 't':
		o->open_flags &= ~DRV_OPEN_BUFFERED;
		return img_parse_cache("io", optarg, &o->open_flags);
	case 'i':
		if (aio_engine_parse(optarg, &o->aio.engine) == 0)
			return 0;
		img_err("io", "invalid aio engine '%s'", optarg);
		return -EINVAL;
	case 'U':
		o->open_flags |= DRV_OPEN_SHARED;
		return 0;
	case 'q':
		o->quiet = true;
		return 0;
	case 'I':
		o->image_opts = true;
		return 0;
	case 'c':
		if (o->nr_cmds == IO_MAX_CMDS) {
			img_err("io", "too many commands (at most %d)", IO_MAX_CMDS);
			return -EINVAL;
		}
		o->cmds[o->nr_cmds++] = optarg;
		return 0;
	}
	io_usage(stderr);
	return -EINVAL;
}

static int io_parse_args(struct io_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "cmd", required_argument, NULL, 'c' },
		{ "format", required_argument, NULL, 'f' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "nocache", no_argument, NULL, 'n' },
		{ "cache", required_argument, NULL, 't' },
		{ "aio", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "image-opts", no_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:rUnt:i:qc:", longopts, NULL)) != -1) {
		if (c == 'h') {
			io_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (io_parse_opt(o, c))
			return -EINVAL;
	}
	if (argc - optind != 1) {
		img_err("io", argc == optind ? "expected FILE" : "too many arguments");
		return -EINVAL;
	}
	o->filename = argv[optind];
	if (o->image_opts && o->fmt) {
		img_err("io", "--image-opts and --format are mutually exclusive");
		return -EINVAL;
	}
	if ((o->open_flags & DRV_OPEN_SHARED) && !(o->open_flags & DRV_OPEN_RDONLY)) {
		img_err("io",
			"force-share=on can only be used with read-only images (-U needs -r)");
		return -EINVAL;
	}
	return 0;
}

/* Split @line (modified in place) into at most IO_MAX_WORDS words. */
static int io_split(char *line, char **words)
{
	int n = 0;
	char *s = line;

	for (;;) {
		s += strspn(s, " \t");
		if (*s == '\0')
			return n;
		if (n == IO_MAX_WORDS)
			return -E2BIG;
		words[n++] = s;
		s += strcspn(s, " \t");
		if (*s != '\0')
			*s++ = '\0';
	}
}

/* Run one -c command; 0 or -1 (already reported). */
static int io_run_cmd(struct io_state *st, const char *cmdline)
{
	CLEANUP_FREE char *line = strdup(cmdline);
	char *words[IO_MAX_WORDS + 1];
	unsigned i;
	int n;

	if (!line) {
		img_err("io", "out of memory");
		return -1;
	}
	n = io_split(line, words);
	if (n <= 0) {
		printf(n == 0 ? "empty command\n" : "too many arguments\n");
		return -1;
	}
	words[n] = NULL;
	for (i = 0; io_cmds[i].name; i++) {
		if (strcmp(io_cmds[i].name, words[0]) == 0) {
			optind = 0; /* glibc: restart getopt for the command's own options */
			return io_cmds[i].fn(st, n, words);
		}
	}
	printf("command \"%s\" not found\n", words[0]);
	return -1;
}

int img_cmd_io(int argc, char **argv)
{
	struct io_opts o = { .fmt = NULL };
	struct io_state st = { .img = NULL };
	int rc = IMG_EXIT_OK;
	unsigned i;

	if (io_parse_args(&o, argc, argv))
		return IMG_EXIT_ERR;
	st.quiet = o.quiet;
	if (o.image_opts ? img_open_image_opts("io", o.filename, o.open_flags, &st.img)
			 : img_open("io", o.fmt, o.filename, o.open_flags, &st.img))
		return IMG_EXIT_ERR;
	if (drv_sync_new(st.img, &o.aio, &st.sync)) {
		img_err("io", "%s: could not set up I/O", o.filename);
		drv_image_close(st.img);
		return IMG_EXIT_ERR;
	}
	for (i = 0; i < o.nr_cmds; i++) {
		if (io_run_cmd(&st, o.cmds[i]))
			rc = IMG_EXIT_ERR;
	}
	drv_sync_free(st.sync);
	drv_image_close(st.img);
	fflush(stdout);
	return rc;
}

/* qemu-io's cvtstr(): "64 KiB", "1.500 MiB", "32 bytes". */
static void io_human(double value, char *buf, size_t size)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;
	char *trim;

	while (value >= 1024.0 && u + 1 < ARRAY_SIZE(units)) {
		value /= 1024.0;
		u++;
	}
	snprintf(buf, size, "%.3f", value);
	trim = strstr(buf, ".000");
	if (trim)
		*trim = '\0';
	snprintf(buf + strlen(buf), size - strlen(buf), " %s", units[u]);
}

void io_report(const char *verb, uint64_t offset, uint64_t bytes, uint64_t ns)
{
	double secs = (double)ns / 1e9;
	char total[32], rate[32];

	printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", verb, bytes, bytes,
	       offset);
	if (secs <= 0)
		secs = 1e-9;
	io_human((double)bytes, total, sizeof(total));
	io_human((double)bytes / secs, rate, sizeof(rate));
	printf("%s, 1 ops; %02u.%02u sec (%s/sec and %.4f ops/sec)\n", total,
	       (unsigned)(ns / 1000000000u), (unsigned)(ns % 1000000000u / 10000000u), rate,
	       1.0 / secs);
}
