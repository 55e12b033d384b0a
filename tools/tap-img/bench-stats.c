/* SPDX-License-Identifier: MIT */
/*
 * Latency statistics and the report of tap-img bench.
 *
 * Latencies go into a log-linear histogram (32 buckets per power of two,
 * so a percentile is within ~3% of the true value) that is a fixed array:
 * recording one costs a few instructions and no memory, whatever the run
 * length.  The human report starts with qemu-img bench's two lines.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

#include "bench.h"
#include "json.h"

#define SUB_BITS BENCH_HIST_SUB_BITS
#define SUB_COUNT (1u << SUB_BITS)

static unsigned hist_bucket(uint64_t ns)
{
	unsigned msb;

	if (ns < 2 * SUB_COUNT)
		return (unsigned)ns;
	msb = 63 - (unsigned)__builtin_clzll(ns);
	return (msb - SUB_BITS) * SUB_COUNT + (unsigned)(ns >> (msb - SUB_BITS));
}

/* The middle of bucket @b, the value a percentile in it is reported as. */
static uint64_t hist_value(unsigned b)
{
	unsigned msb, shift;

	if (b < 2 * SUB_COUNT)
		return b;
	msb = b / SUB_COUNT + SUB_BITS - 1;
	shift = msb - SUB_BITS;
	return ((uint64_t)(b % SUB_COUNT + SUB_COUNT) << shift) + ((1ull << shift) >> 1);
}

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	h->count[hist_bucket(ns)]++;
	h->total++;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double pct)
{
	uint64_t rank, seen = 0;
	unsigned b;

	if (h->total == 0)
		return 0;
	rank = (uint64_t)((double)h->total * pct / 100.0 + 0.999999);
	if (rank == 0)
		rank = 1;
	for (b = 0; b < BENCH_HIST_BUCKETS; b++) {
		seen += h->count[b];
		if (seen >= rank)
			return hist_value(b);
	}
	return hist_value(BENCH_HIST_BUCKETS - 1);
}

const char *bench_mix_name(bool random, enum bench_mix mix)
{
	static const char *const names[2][3] = {
		{ "read", "write", "rw" },
		{ "randread", "randwrite", "randrw" },
	};

	return names[random][mix];
}

static const char *mix_name(const struct bench_cfg *cfg)
{
	return bench_mix_name(cfg->random, cfg->mix);
}

double bench_per_second(uint64_t n, uint64_t ns)
{
	return ns ? (double)n * 1e9 / (double)ns : 0.0;
}

static void print_human(const struct bench_cfg *cfg, const struct bench_result *r)
{
	const struct bench_hist *h = &r->hist;

	printf("Run completed in %3.3f seconds.\n", (double)r->elapsed_ns / 1e9);
	printf("%s %s: %" PRIu64 " ops (%" PRIu64 " reads, %" PRIu64 " writes), "
	       "%.0f IOPS, %.1f MiB/s; latency us: p50 %.1f p99 %.1f p99.9 %.1f\n",
	       r->engine, mix_name(cfg), r->ops, r->reads, r->writes,
	       bench_per_second(r->ops, r->elapsed_ns),
	       bench_per_second(r->bytes, r->elapsed_ns) / (1024.0 * 1024.0),
	       (double)bench_hist_percentile(h, 50.0) / 1e3,
	       (double)bench_hist_percentile(h, 99.0) / 1e3,
	       (double)bench_hist_percentile(h, 99.9) / 1e3);
	if (r->io_errors)
		printf("%" PRIu64 " requests failed\n", r->io_errors);
	if (cfg->verify)
		printf("verify (seed %" PRIu64 "): %" PRIu64 " blocks read back, %" PRIu64
		       " wrong\n",
		       cfg->seed, r->verified_blocks, r->verify_errors);
}

json_t *bench_latency_json(const struct bench_hist *h)
{
	return json_pack("{s:f, s:f, s:f}", "p50", (double)bench_hist_percentile(h, 50.0) / 1e3,
			 "p99", (double)bench_hist_percentile(h, 99.0) / 1e3, "p99.9",
			 (double)bench_hist_percentile(h, 99.9) / 1e3);
}

static int print_json(const struct bench_cfg *cfg, const struct bench_result *r)
{
	json_t *obj = json_pack(
		"{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:I}", "engine",
		r->engine, "rw", mix_name(cfg), "block_size", (json_int_t)cfg->bs, "depth",
		(json_int_t)cfg->depth, "ops", (json_int_t)r->ops, "reads", (json_int_t)r->reads,
		"writes", (json_int_t)r->writes, "bytes", (json_int_t)r->bytes, "seconds",
		(double)r->elapsed_ns / 1e9, "iops", bench_per_second(r->ops, r->elapsed_ns),
		"mib_s", bench_per_second(r->bytes, r->elapsed_ns) / (1024.0 * 1024.0), "lat_us",
		bench_latency_json(&r->hist), "errors", (json_int_t)r->io_errors);
	int err;

	if (!obj)
		return -ENOMEM;
	if (cfg->verify) {
		err = json_obj_set(obj, "verify",
				   json_pack("{s:I, s:I, s:I}", "seed", (json_int_t)cfg->seed,
					     "blocks", (json_int_t)r->verified_blocks, "errors",
					     (json_int_t)r->verify_errors));
		if (err) {
			json_decref(obj);
			return err;
		}
	}
	err = json_print(stdout, obj);
	json_decref(obj);
	return err;
}

int bench_print(const struct bench_cfg *cfg, const struct bench_result *res)
{
	if (cfg->json)
		return print_json(cfg, res);
	if (!cfg->quiet)
		print_human(cfg, res);
	return 0;
}
