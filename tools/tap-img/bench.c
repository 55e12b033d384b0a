/* SPDX-License-Identifier: MIT */
/*
 * tap-img bench: qemu-img bench's options (-c -d -s -w -o -S -f -i -t -n
 * -q, --pattern=BYTE) with the same defaults, plus:
 *
 *   --pattern rand|seq   random or sequential offsets (a number keeps
 *                        qemu's meaning: the byte written)
 *   --rw MODE            read|write|rw|randread|randwrite|randrw
 *   --rwmixread PCT      reads in a mixed load (default 50)
 *   --verify, --seed N   seeded data per block; reads of blocks written in
 *                        the run are checked, and every block written is
 *                        read back and checked at the end
 *   --time SECONDS       run for a time instead of -c requests
 *   --output=json        engine, ops, bytes, seconds, iops, mib_s, lat_us
 *
 * Unlike qemu-img bench the default cache mode is none (O_DIRECT): tapdisk
 * serves guests that way, and that is what the figures should describe.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "checked.h"
#include "errors.h"
#include "tap-img.h"

#define BENCH_DEFAULT_COUNT 75000 /* qemu-img bench's */
#define BENCH_DEFAULT_DEPTH 64
#define BENCH_DEFAULT_BS 4096
#define BENCH_MAX_DEPTH 1024
#define BENCH_MAX_BS (64ull << 20)
#define BENCH_MAX_SECONDS 1e6

enum {
	OPT_PATTERN = 256,
	OPT_RW,
	OPT_RWMIXREAD,
	OPT_VERIFY,
	OPT_SEED,
	OPT_TIME,
	OPT_OUTPUT,
};

static void bench_usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-img bench [-c COUNT | --time SECONDS] [-d DEPTH] [-s SIZE] [-w]\n"
		"         [-o OFFSET] [-S STEP] [-f FMT] [-i AIO] [-t CACHE] [-n] [-q]\n"
		"         [--rw MODE] [--pattern rand|seq|BYTE] [--rwmixread PCT]\n"
		"         [--verify [--seed N]] [--output=human|json] FILE\n"
		"\n"
		"Drive FILE through its driver at queue depth DEPTH and report IOPS,\n"
		"MiB/s and latency percentiles.  Sizes take k/M/G suffixes.\n"
		"  -c COUNT        requests to send (default %d)\n"
		"  --time SECONDS  run this long instead (decimals allowed)\n"
		"  -d DEPTH        requests in flight (default %d)\n"
		"  -s SIZE         bytes per request (default %d)\n"
		"  -w              write instead of read (same as --rw write)\n"
		"  -o OFFSET       first byte used (default 0)\n"
		"  -S STEP         sequential: distance between requests (default SIZE)\n"
		"  -f FMT          image format (default: FILE's TYPE: prefix, else raw)\n"
		"  -i AIO          io_uring|libaio|native|threads|sync|auto (default auto)\n"
		"  -t CACHE        none (O_DIRECT, the default) or writeback; -n: none\n"
		"  -q              quiet: print nothing but errors (and --output=json)\n"
		"  --rw MODE       read|write|rw|randread|randwrite|randrw\n"
		"  --pattern P     rand or seq offsets; a number is the byte written (qemu)\n"
		"  --rwmixread PCT percentage of reads in rw modes (default 50)\n"
		"  --verify        write seeded data, check every read of it, then read\n"
		"                  back every block written; exit 1 on any wrong byte\n"
		"  --seed N        seed for --verify data and random offsets (default 1)\n"
		"  --output=FMT    human (default) or json\n",
		BENCH_DEFAULT_COUNT, BENCH_DEFAULT_DEPTH, BENCH_DEFAULT_BS);
}

int bench_parse_rw(const char *s, enum bench_mix *mix, bool *random)
{
	static const struct {
		const char *name;
		enum bench_mix mix;
		bool random;
	} modes[] = {
		{ "read", BENCH_READ, false },	  { "write", BENCH_WRITE, false },
		{ "rw", BENCH_MIXED, false },	  { "readwrite", BENCH_MIXED, false },
		{ "randread", BENCH_READ, true }, { "randwrite", BENCH_WRITE, true },
		{ "randrw", BENCH_MIXED, true },
	};
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		if (strcmp(s, modes[i].name) == 0) {
			*mix = modes[i].mix;
			*random = modes[i].random;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_rw(struct bench_cfg *cfg, const char *s)
{
	if (bench_parse_rw(s, &cfg->mix, &cfg->random) == 0)
		return 0;
	img_err("bench", "invalid --rw mode '%s' (read, write, rw, randread, randwrite, randrw)",
		s);
	return -EINVAL;
}

static int parse_pattern(struct bench_cfg *cfg, const char *s)
{
	uint64_t byte;

	if (strcmp(s, "rand") == 0 || strcmp(s, "random") == 0) {
		cfg->random = true;
	} else if (strcmp(s, "seq") == 0 || strcmp(s, "sequential") == 0) {
		cfg->random = false;
	} else if (parse_u64(s, false, &byte) == 0 && byte <= 0xff) {
		cfg->fill_byte = (int)byte;
	} else {
		img_err("bench", "invalid --pattern '%s' (rand, seq or a byte value)", s);
		return -EINVAL;
	}
	return 0;
}

static int parse_time(struct bench_cfg *cfg, const char *s)
{
	char *end;
	double secs;

	errno = 0;
	secs = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(secs) || secs <= 0 || secs > BENCH_MAX_SECONDS) {
		img_err("bench", "invalid time '%s' (seconds, more than 0)", s);
		return -EINVAL;
	}
	cfg->time_ns = (uint64_t)(secs * 1e9);
	return 0;
}

/* An unsigned option within [@min, @max]. */
static int parse_ranged(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (img_parse_size("bench", what, s, out))
		return -EINVAL;
	if (*out < min || *out > max) {
		img_err("bench", "%s must be between %" PRIu64 " and %" PRIu64, what, min, max);
		return -EINVAL;
	}
	return 0;
}

static int parse_output(struct bench_cfg *cfg, const char *s)
{
	if (strcmp(s, "json") == 0 || strcmp(s, "human") == 0) {
		cfg->json = s[0] == 'j';
		return 0;
	}
	img_err("bench", "invalid output format '%s' (human or json)", s);
	return -EINVAL;
}

static int parse_engine(struct bench_cfg *cfg, const char *s)
{
	if (aio_engine_parse(s, &cfg->aio.engine) == 0)
		return 0;
	img_err("bench", "invalid aio engine '%s' (io_uring, libaio, native, threads, sync, auto)",
		s);
	return -EINVAL;
}

static int parse_opt(struct bench_cfg *cfg, int c, const char *arg)
{
	uint64_t v;
	int err;

	switch (c) {
	case 'c':
		return parse_ranged("count", arg, 1, UINT64_MAX, &cfg->count);
	case 'd':
		err = parse_ranged("depth", arg, 1, BENCH_MAX_DEPTH, &v);
		cfg->depth = (unsigned)v;
		return err;
	case 's':
		return parse_ranged("buffer size", arg, 1, BENCH_MAX_BS, &cfg->bs);
	case 'o':
		return img_parse_size("bench", "offset", arg, &cfg->offset);
	case 'S':
		return parse_ranged("step size", arg, 1, UINT64_MAX, &cfg->step);
	case 'w':
		cfg->mix = BENCH_WRITE;
		return 0;
	case 'f':
		cfg->fmt = arg;
		return 0;
	case 'i':
		return parse_engine(cfg, arg);
	case 't':
		cfg->open_flags &= ~DRV_OPEN_BUFFERED;
		return img_parse_cache("bench", arg, &cfg->open_flags);
	case 'n':
		cfg->open_flags &= ~DRV_OPEN_BUFFERED;
		return 0;
	case 'q':
		cfg->quiet = true;
		return 0;
	case OPT_PATTERN:
		return parse_pattern(cfg, arg);
	case OPT_RW:
		return parse_rw(cfg, arg);
	case OPT_RWMIXREAD:
		err = parse_ranged("--rwmixread", arg, 0, 100, &v);
		cfg->read_pct = (unsigned)v;
		return err;
	case OPT_VERIFY:
		cfg->verify = true;
		return 0;
	case OPT_SEED:
		return img_parse_size("bench", "seed", arg, &cfg->seed);
	case OPT_TIME:
		return parse_time(cfg, arg);
	case OPT_OUTPUT:
		return parse_output(cfg, arg);
	}
	bench_usage(stderr);
	return -EINVAL;
}

static int parse_args(struct bench_cfg *cfg, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "rw", required_argument, NULL, OPT_RW },
		{ "rwmixread", required_argument, NULL, OPT_RWMIXREAD },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "time", required_argument, NULL, OPT_TIME },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hc:d:s:wo:S:f:i:t:nq", longopts, NULL)) != -1) {
		if (c == 'h') {
			bench_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (parse_opt(cfg, c, optarg))
			return -EINVAL;
	}
	if (argc - optind != 1) {
		img_err("bench", argc == optind ? "expected FILE" : "too many arguments");
		return -EINVAL;
	}
	cfg->filename = argv[optind];
	if (!cfg->count && !cfg->time_ns)
		cfg->count = BENCH_DEFAULT_COUNT;
	if (!cfg->step)
		cfg->step = cfg->bs;
	if (cfg->verify && cfg->mix == BENCH_READ) {
		img_err("bench", "--verify needs writes: use -w or --rw write|rw|randwrite|randrw");
		return -EINVAL;
	}
	return 0;
}

/* The geometry checks drv_submit would otherwise fail every request for. */
static int check_geometry(const struct bench_cfg *cfg, const struct drv_image *img)
{
	uint32_t bb = img->block_bytes;

	if (!is_aligned_u64(cfg->bs, bb) || !is_aligned_u64(cfg->offset, bb) ||
	    (!cfg->random && !is_aligned_u64(cfg->step, bb))) {
		img_err("bench", "%s: buffer size, offset and step must be multiples of %u bytes",
			cfg->filename, bb);
		return -EINVAL;
	}
	if (!range_within(cfg->offset, cfg->bs, img->size_bytes)) {
		img_err("bench",
			"%s: offset %" PRIu64 " + %" PRIu64 " bytes is past the end (%" PRIu64
			" bytes)",
			cfg->filename, cfg->offset, cfg->bs, img->size_bytes);
		return -EINVAL;
	}
	return 0;
}

/* qemu-img bench's opening line, with our extensions where they apply. */
static void print_plan(const struct bench_cfg *cfg)
{
	static const char *const mix[] = { "read", "write", "read/write" };

	if (cfg->time_ns)
		printf("Sending %s requests for %.1f seconds", mix[cfg->mix],
		       (double)cfg->time_ns / 1e9);
	else
		printf("Sending %" PRIu64 " %s requests", cfg->count, mix[cfg->mix]);
	printf(", %" PRIu64 " bytes each, %u in parallel ", cfg->bs, cfg->depth);
	if (cfg->random)
		printf("(random offsets from %" PRIu64 ", seed %" PRIu64 ")\n", cfg->offset,
		       cfg->seed);
	else
		printf("(starting at offset %" PRIu64 ", step size %" PRIu64 ")\n", cfg->offset,
		       cfg->step);
}

int img_cmd_bench(int argc, char **argv)
{
	struct bench_cfg cfg = {
		.depth = BENCH_DEFAULT_DEPTH,
		.bs = BENCH_DEFAULT_BS,
		.read_pct = 50,
		.seed = 1,
	};
	struct bench_result *res;
	struct drv_image *img;
	int err;

	if (parse_args(&cfg, argc, argv))
		return IMG_EXIT_ERR;
	if (cfg.mix == BENCH_READ)
		cfg.open_flags |= DRV_OPEN_RDONLY;
	if (img_open("bench", cfg.fmt, cfg.filename, cfg.open_flags, &img))
		return IMG_EXIT_ERR;
	res = calloc(1, sizeof(*res)); /* the histogram is too big for the stack */
	if (!res)
		img_err("bench", "out of memory");
	err = res ? check_geometry(&cfg, img) : -ENOMEM;
	if (!err && !cfg.quiet && !cfg.json)
		print_plan(&cfg);
	if (!err)
		err = bench_run(&cfg, img, res);
	if (!err)
		err = bench_print(&cfg, res);
	if (!err && (res->io_errors || res->verify_errors))
		err = -EIO;
	free(res);
	drv_image_close(img);
	return err ? IMG_EXIT_ERR : IMG_EXIT_OK;
}
