/* SPDX-License-Identifier: MIT */
/*
 * Per-disk statistics: each queue thread counts its own requests in
 * relaxed atomics (a plain load and store on the one writer's side, so the
 * I/O path pays no locked instruction), and a reader on any thread sums
 * the queues.  A sum taken while requests complete may be a request or two
 * apart between counters; each counter is exact.
 */
#include <errno.h>
#include <jansson.h>

#include "json.h"
#include "vbd-internal.h"

static const char *const op_names[TD_OP_COUNT] = {
	[TD_OP_READ] = "read",
	[TD_OP_WRITE] = "write",
	[TD_OP_FLUSH] = "flush",
	[TD_OP_DISCARD] = "discard",
	[TD_OP_WRITE_ZEROES] = "write_zeroes",
	[TD_OP_BLOCK_STATUS] = "block_status",
};

const char *td_op_name(enum td_op op)
{
	return (unsigned)op < TD_OP_COUNT ? op_names[op] : "unknown";
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static void set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

static uint64_t get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

static unsigned hist_bucket(uint64_t ns)
{
	unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;

	return b < TD_HIST_BUCKETS ? b : TD_HIST_BUCKETS - 1;
}

void td_stats_record(struct td_queue *q, const struct td_request *req, int err)
{
	unsigned op = (unsigned)req->op < TD_OP_COUNT ? (unsigned)req->op : TD_OP_READ;
	uint64_t now = evloop_now_ns();
	uint64_t lat = now > req->start_ns ? now - req->start_ns : 0;

	add(&q->st.count[op], 1);
	if (err)
		add(&q->st.errors[op], 1);
	else if (op != TD_OP_FLUSH)
		add(&q->st.bytes[op], req->len);
	add(&q->st.hist[op][hist_bucket(lat)], 1);
}

void td_stats_gauges(struct td_queue *q)
{
	set(&q->st.inflight, q->inflight);
	set(&q->st.waiting, q->waiting);
}

static void stats_add(struct td_vbd_stats *out, const struct td_qstats *st)
{
	unsigned op, b;

	for (op = 0; op < TD_OP_COUNT; op++) {
		out->op[op].count += get(&st->count[op]);
		out->op[op].bytes += get(&st->bytes[op]);
		out->op[op].errors += get(&st->errors[op]);
		for (b = 0; b < TD_HIST_BUCKETS; b++)
			out->op[op].hist_ns[b] += get(&st->hist[op][b]);
	}
	out->inflight += get(&st->inflight);
	out->waiting += get(&st->waiting);
	out->split += get(&st->split);
	out->pieces += get(&st->pieces);
	out->barriers += get(&st->barriers);
	out->flushes_added += get(&st->flushes_added);
}

int vbd_get_stats(const struct td_vbd *vbd, int queue, struct td_vbd_stats *out)
{
	unsigned i;

	*out = (struct td_vbd_stats){ .inflight = 0 };
	if (queue >= (int)vbd->nr_queues || queue < -1)
		return -EINVAL;
	for (i = 0; i < vbd->nr_queues; i++) {
		if (queue < 0 || (unsigned)queue == i)
			stats_add(out, &vbd->queues[i].st);
	}
	return 0;
}

uint64_t td_stats_percentile_ns(const struct td_op_stats *s, double p)
{
	uint64_t total = 0, seen = 0;
	double rank;
	unsigned b;

	for (b = 0; b < TD_HIST_BUCKETS; b++)
		total += s->hist_ns[b];
	if (!total)
		return 0;
	p = p < 0 ? 0 : p > 1 ? 1 : p;
	rank = p * (double)total;
	for (b = 0; b < TD_HIST_BUCKETS; b++) {
		uint64_t h = s->hist_ns[b];
		double lo = b ? (double)(1ull << b) : 0, hi = (double)(1ull << (b + 1));

		if (h && (double)(seen + h) >= rank)
			return (uint64_t)(lo + (hi - lo) * ((rank - (double)seen) / (double)h));
		seen += h;
	}
	return 1ull << TD_HIST_BUCKETS;
}

/* ---- JSON ---- */

static json_t *op_json(const struct td_op_stats *s)
{
	json_t *o = json_object(), *lat = json_object(), *hist = json_array();
	unsigned b, last = 0;
	int err = 0;

	if (!o || !lat || !hist) {
		json_decref(o);
		json_decref(lat);
		json_decref(hist);
		return NULL;
	}
	for (b = 0; b < TD_HIST_BUCKETS; b++)
		if (s->hist_ns[b])
			last = b + 1;
	for (b = 0; b < last && !err; b++)
		err = json_array_append_new(hist, json_integer((json_int_t)s->hist_ns[b]));
	err |= json_obj_set(lat, "p50", json_integer((json_int_t)td_stats_percentile_ns(s, 0.5)));
	err |= json_obj_set(lat, "p99", json_integer((json_int_t)td_stats_percentile_ns(s, 0.99)));
	err |= json_obj_set(lat, "p99.9",
			    json_integer((json_int_t)td_stats_percentile_ns(s, 0.999)));
	err |= json_obj_set(o, "count", json_integer((json_int_t)s->count));
	err |= json_obj_set(o, "bytes", json_integer((json_int_t)s->bytes));
	err |= json_obj_set(o, "errors", json_integer((json_int_t)s->errors));
	err |= json_obj_set(o, "latency_ns", lat);
	err |= json_obj_set(o, "histogram_log2_ns", hist);
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *stats_json(const struct td_vbd_stats *st)
{
	json_t *o = json_object(), *ops = json_object();
	unsigned op;
	int err = 0;

	if (!o || !ops) {
		json_decref(o);
		json_decref(ops);
		return NULL;
	}
	for (op = 0; op < TD_OP_COUNT; op++) {
		json_t *j = op_json(&st->op[op]);

		err |= j ? json_obj_set(ops, op_names[op], j) : -ENOMEM;
	}
	err |= json_obj_set(o, "inflight", json_integer((json_int_t)st->inflight));
	err |= json_obj_set(o, "waiting", json_integer((json_int_t)st->waiting));
	err |= json_obj_set(o, "split", json_integer((json_int_t)st->split));
	err |= json_obj_set(o, "pieces", json_integer((json_int_t)st->pieces));
	err |= json_obj_set(o, "barriers", json_integer((json_int_t)st->barriers));
	err |= json_obj_set(o, "flushes_added", json_integer((json_int_t)st->flushes_added));
	err |= json_obj_set(o, "ops", ops);
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *vbd_stats_json(const struct td_vbd *vbd, bool per_queue)
{
	struct td_vbd_stats st;
	json_t *o, *qs;
	unsigned i;

	vbd_get_stats(vbd, -1, &st);
	o = stats_json(&st);
	if (!o || !per_queue)
		return o;
	qs = json_array();
	if (!qs || json_obj_set(o, "queues", qs)) {
		json_decref(o);
		return NULL;
	}
	for (i = 0; i < vbd->nr_queues; i++) {
		json_t *q;

		vbd_get_stats(vbd, (int)i, &st);
		q = stats_json(&st);
		if (!q || json_array_append_new(qs, q)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}
