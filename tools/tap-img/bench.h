/* SPDX-License-Identifier: MIT */
/*
 * tap-img bench: a load generator that drives a driver chain directly with
 * drv_submit() at a fixed queue depth, from a request pool allocated before
 * the run, and measures IOPS, throughput and completion latency.
 *
 *   bench.c        options (qemu-img bench's, plus --rw, --verify, --time,
 *                  --output=json) and the verb
 *   bench-run.c    the request pool and the issue/complete loop
 *   bench-data.c   seeded per-block data for --verify
 *   bench-stats.c  the latency histogram and the report
 */
#ifndef QTAP_TAP_IMG_BENCH_H
#define QTAP_TAP_IMG_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "aio.h"
#include "driver.h"

enum bench_mix {
	BENCH_READ,
	BENCH_WRITE,
	BENCH_MIXED, /* reads and writes, cfg->read_pct percent reads */
};

struct bench_cfg {
	const char *fmt;
	const char *filename;
	struct aio_ctx_opts aio; /* engine; depth is set from @depth */
	unsigned open_flags;
	uint64_t count;	  /* requests; 0: until @time_ns */
	uint64_t time_ns; /* 0: until @count */
	unsigned depth;
	uint64_t bs;	 /* bytes per request */
	uint64_t offset; /* first byte used */
	uint64_t step;	 /* sequential: distance between requests */
	enum bench_mix mix;
	unsigned read_pct; /* BENCH_MIXED */
	bool random;
	bool verify;
	uint64_t seed;
	int fill_byte; /* qemu's --pattern=N: the byte written without --verify */
	bool json;
	bool quiet;
};

/* Log-linear latency histogram: 32 buckets per power of two. */
#define BENCH_HIST_SUB_BITS 5
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_SUB_BITS + 1) * (1u << BENCH_HIST_SUB_BITS))

struct bench_hist {
	uint64_t count[BENCH_HIST_BUCKETS];
	uint64_t total;
};

struct bench_result {
	const char *engine;
	uint64_t ops;
	uint64_t reads;
	uint64_t writes;
	uint64_t bytes;
	uint64_t elapsed_ns;
	uint64_t io_errors;
	uint64_t verified_blocks; /* read back and compared */
	uint64_t verify_errors;	  /* blocks with a wrong byte */
	struct bench_hist hist;
};

/*
 * bench_run - run the load of @cfg on the open chain @img, then, with
 * --verify, read back every block written and compare it.  Fills @res.
 * Returns 0 when the run completed (@res says whether I/O or verification
 * failed), or -errno when it could not be set up (reported).
 */
int bench_run(const struct bench_cfg *cfg, struct drv_image *img, struct bench_result *res);

/*
 * bench_fill / bench_check - the data of the block at byte @offset written
 * with generation @gen under @seed: deterministic, distinct per block and
 * per rewrite.  @len is a multiple of 8.  bench_check returns the index of
 * the first wrong byte, or @len when all match, and the expected byte in
 * *@want.
 */
void bench_fill(void *buf, uint64_t len, uint64_t seed, uint64_t offset, unsigned gen);
uint64_t bench_check(const void *buf, uint64_t len, uint64_t seed, uint64_t offset, unsigned gen,
		     uint8_t *want);

/* bench_rand - the next number of a splitmix64 stream kept in *@state. */
uint64_t bench_rand(uint64_t *state);

/* bench_hist_add / bench_hist_percentile - latencies in nanoseconds. */
void bench_hist_add(struct bench_hist *h, uint64_t ns);
uint64_t bench_hist_percentile(const struct bench_hist *h, double pct);

/* bench_mix_name - "read", "randrw"...: fio's and qemu's names of a load. */
const char *bench_mix_name(bool random, enum bench_mix mix);

/* bench_per_second - @n per second over @ns nanoseconds; 0 when @ns is 0. */
double bench_per_second(uint64_t n, uint64_t ns);

/* bench_parse_rw - read|write|rw|readwrite|randread|randwrite|randrw.  0 or -EINVAL. */
int bench_parse_rw(const char *s, enum bench_mix *mix, bool *random);

/* bench_latency_json - {"p50", "p99", "p99.9"} in microseconds; NULL on ENOMEM. */
struct json_t;
struct json_t *bench_latency_json(const struct bench_hist *h);

/* bench_print - the report, human or JSON.  Returns 0 or -errno. */
int bench_print(const struct bench_cfg *cfg, const struct bench_result *res);

#endif
