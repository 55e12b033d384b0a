// SPDX-License-Identifier: MIT
/*
 * tap-front's report: the queues' statistics summed, printed for people
 * or as JSON (IOPS, MiB/s, latency percentiles, failures).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

#include "checked.h"
#include "json.h"
#include "load.h"

void tf_stats_add(struct tf_qstats *sum, const struct tf_qstats *q)
{
	sum->ops += q->ops;
	sum->reads += q->reads;
	sum->writes += q->writes;
	sum->bytes += q->bytes;
	sum->io_errors += q->io_errors;
	sum->verified += q->verified;
	sum->verify_errors += q->verify_errors;
	sum->elapsed_ns = MAX(sum->elapsed_ns, q->elapsed_ns);
	sum->protocol_error |= q->protocol_error;
	sum->hostile.sent += q->hostile.sent;
	sum->hostile.answered += q->hostile.answered;
	sum->hostile.unexpected += q->hostile.unexpected;
	for (unsigned b = 0; b < BENCH_HIST_BUCKETS; b++)
		sum->hist.count[b] += q->hist.count[b];
	sum->hist.total += q->hist.total;
}

static double pct_us(const struct bench_hist *h, double p)
{
	return (double)bench_hist_percentile(h, p) / 1e3;
}

static void print_human(const struct tf_load_conf *c, const char *engine, const struct tf_qstats *s)
{
	printf("%s %s bs %" PRIu64 " qd %u queues %u: %" PRIu64 " ops (%" PRIu64 " reads, %" PRIu64
	       " writes) in %.3f s, %.0f IOPS, %.1f MiB/s; latency us: p50 %.1f p99 %.1f "
	       "p99.9 %.1f\n",
	       engine, bench_mix_name(c->random, c->mix), c->bs, c->depth, c->nr_queues, s->ops,
	       s->reads, s->writes, (double)s->elapsed_ns / 1e9,
	       bench_per_second(s->ops, s->elapsed_ns),
	       bench_per_second(s->bytes, s->elapsed_ns) / (1024.0 * 1024.0),
	       pct_us(&s->hist, 50.0), pct_us(&s->hist, 99.0), pct_us(&s->hist, 99.9));
	if (s->io_errors)
		printf("%" PRIu64 " requests failed\n", s->io_errors);
	if (c->verify)
		printf("verify (seed %" PRIu64 "): %" PRIu64 " blocks read back, %" PRIu64
		       " wrong\n",
		       c->seed, s->verified, s->verify_errors);
	if (c->hostile)
		printf("hostile %s: %" PRIu64 " bad requests, %" PRIu64
		       " answered as expected, %" PRIu64 " not\n",
		       tf_hostile_name(c->hostile), s->hostile.sent, s->hostile.answered,
		       s->hostile.unexpected);
}

static json_t *details_json(const struct tf_load_conf *c, const struct tf_qstats *s)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (c->verify && json_obj_set(o, "verify",
				      json_pack("{s:I, s:I, s:I}", "seed", (json_int_t)c->seed,
						"blocks", (json_int_t)s->verified, "errors",
						(json_int_t)s->verify_errors)))
		goto fail;
	if (c->hostile &&
	    json_obj_set(o, "hostile",
			 json_pack("{s:s, s:I, s:I, s:I}", "mode", tf_hostile_name(c->hostile),
				   "sent", (json_int_t)s->hostile.sent, "answered",
				   (json_int_t)s->hostile.answered, "unexpected",
				   (json_int_t)s->hostile.unexpected)))
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

static int print_json(const struct tf_load_conf *c, const char *engine, const struct tf_qstats *s)
{
	json_t *obj = json_pack(
		"{s:s, s:s, s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:I}", "engine",
		engine, "rw", bench_mix_name(c->random, c->mix), "block_size", (json_int_t)c->bs,
		"depth", (int)c->depth, "queues", (int)c->nr_queues, "ops", (json_int_t)s->ops,
		"reads", (json_int_t)s->reads, "writes", (json_int_t)s->writes, "bytes",
		(json_int_t)s->bytes, "seconds", (double)s->elapsed_ns / 1e9, "iops",
		bench_per_second(s->ops, s->elapsed_ns), "mib_s",
		bench_per_second(s->bytes, s->elapsed_ns) / (1024.0 * 1024.0), "lat_us",
		bench_latency_json(&s->hist), "errors", (json_int_t)s->io_errors);
	json_t *more = details_json(c, s);
	int err = obj && more && !json_object_update(obj, more) ? 0 : -ENOMEM;

	if (!err)
		err = json_print(stdout, obj);
	json_decref(more);
	json_decref(obj);
	return err;
}

int tf_report(const struct tf_load_conf *conf, const char *engine, const struct tf_qstats *sum,
	      bool json)
{
	if (json)
		return print_json(conf, engine, sum);
	print_human(conf, engine, sum);
	return 0;
}
