// SPDX-License-Identifier: MIT
/*
 * tap-front: a local blkif frontend.  It attaches to a running tapdisk
 * through the local ring transport (--ctl SOCKET), or drives a raw file
 * with libaio and O_DIRECT (--raw FILE), generates a load, verifies data,
 * misbehaves on request (--hostile) and reports IOPS, MiB/s and latency
 * percentiles.  docs/tap-front.1.pod is the manual.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "attach.h"
#include "checked.h"
#include "control/ctlclient.h"
#include "xenfront.h"
#include "engine.h"
#include "errors.h"
#include "front.h"
#include "load.h"
#include "log.h"

#define DEFAULT_SECONDS 5.0
#define MAX_DEPTH 512 /* a ring of order 4 holds 512 requests */
#define MAX_BS (16ull << 20)

struct tf_opts {
	const char *ctl;
	int minor;	      /* -m: the disk's tapctld minor, or -1 */
	const char *tapctld;  /* -S: tapctld's socket */
	const char *xenstore; /* --xenstore: a frontend directory */
	char ctl_buf[108];    /* the control socket -m resolved to */
	const char *raw;
	struct tf_load_conf load;
	unsigned order;
	enum ring_abi abi;
	unsigned indirect;
	bool json;
	bool have_ops, have_time;
};

enum {
	OPT_CTL = 256,
	OPT_RAW,
	OPT_RW,
	OPT_BS,
	OPT_QD,
	OPT_RUNTIME,
	OPT_OPS,
	OPT_QUEUES,
	OPT_ORDER,
	OPT_ABI,
	OPT_INDIRECT,
	OPT_OFFSET,
	OPT_SPAN,
	OPT_FILL,
	OPT_VERIFY,
	OPT_SEED,
	OPT_FLUSH,
	OPT_JSON,
	OPT_HOSTILE,
};

static const struct option long_opts[] = {
	{ "ctl", required_argument, NULL, OPT_CTL },
	{ "raw", required_argument, NULL, OPT_RAW },
	{ "rw", required_argument, NULL, OPT_RW },
	{ "bs", required_argument, NULL, OPT_BS },
	{ "qd", required_argument, NULL, OPT_QD },
	{ "runtime", required_argument, NULL, OPT_RUNTIME },
	{ "ops", required_argument, NULL, OPT_OPS },
	{ "queues", required_argument, NULL, OPT_QUEUES },
	{ "ring-order", required_argument, NULL, OPT_ORDER },
	{ "abi", required_argument, NULL, OPT_ABI },
	{ "indirect", required_argument, NULL, OPT_INDIRECT },
	{ "offset", required_argument, NULL, OPT_OFFSET },
	{ "span", required_argument, NULL, OPT_SPAN },
	{ "fill", required_argument, NULL, OPT_FILL },
	{ "verify", no_argument, NULL, OPT_VERIFY },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "flush", no_argument, NULL, OPT_FLUSH },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "hostile", required_argument, NULL, OPT_HOSTILE },
	{ "minor", required_argument, NULL, 'm' },
	{ "xenstore", required_argument, NULL, 'X' },
	{ "tapctld", required_argument, NULL, 'S' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-front (--ctl SOCKET | -m MINOR [-S TAPCTLD_SOCKET] | --xenstore DIR\n"
		"                  [-S TAPCTLD_SOCKET] | --raw FILE)\n"
		"         [--rw MODE] [--bs SIZE] [--qd N]\n"
		"         [--runtime SECONDS | --ops N] [--queues N] [--ring-order N]\n"
		"         [--abi native|x86_32|x86_64] [--indirect N] [--offset SIZE]\n"
		"         [--span SIZE] [--verify [--seed N] [--fill BYTE]] [--flush] [--json]\n"
		"         [--hostile MODE]\n"
		"\n"
		"A blkif frontend on the local ring transport: attach to a tapdisk and run a\n"
		"load through its rings, or run the same load on a raw file (libaio, O_DIRECT).\n"
		"  --ctl SOCKET     attach to the tapdisk whose control socket is SOCKET\n"
		"  -m MINOR         attach to tapctld's disk MINOR (its socket: -S SOCKET, else\n"
		"                   $TAPCTLD_SOCKET, else /run/qtap/tapctld.sock)\n"
		"  --xenstore DIR   be the blkfront of frontend directory DIR: the xenstore\n"
		"                   handshake with tapctld's Xen backend, the rings on the local\n"
		"                   transport (tapctld at -S SOCKET; XENSTORED_PATH for xenstore)\n"
		"  --raw FILE       the physical-limit baseline: the load on FILE directly\n"
		"  --rw MODE        read|write|rw|randread|randwrite|randrw (default randread)\n"
		"  --bs SIZE        bytes per request, a multiple of 512 (default 4k)\n"
		"  --qd N           requests in flight per queue (default 1)\n"
		"  --runtime SECS   run this long (default %.0f)\n"
		"  --ops N          or send N requests in all\n"
		"  --queues N       rings, one thread each (default 1)\n"
		"  --ring-order N   2^N pages per ring, 0 to 4 (default 0)\n"
		"  --abi ABI        the request layout: native, x86_32 or x86_64 (default native)\n"
		"  --indirect N     send every data request as INDIRECT, up to N segments\n"
		"  --offset SIZE    the first byte used, a multiple of --bs (default 0)\n"
		"  --span SIZE      use only SIZE bytes from there (default: the rest of the "
		"disk)\n"
		"  --verify         write seeded data, check every read of it, then read back\n"
		"                   every block written; any wrong byte fails the run\n"
		"  --seed N         the seed of --verify's data and of random offsets (default 1)\n"
		"  --fill BYTE      --verify: blocks not yet written hold BYTE: check their reads\n"
		"  --flush          FLUSH once the load is done; the run fails if it does\n"
		"  --json           report as JSON\n"
		"  --hostile MODE   also send bad requests: segments, nr-segments, past-end,\n"
		"                   prod-overrun, change, data, storm, ops (see tap-front(1))\n",
		DEFAULT_SECONDS);
}

static int bad_value(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "tap-front: invalid %s '%s' (%s)\n", opt, val, want);
	return -EINVAL;
}

static int parse_num(const char *opt, const char *s, bool suffixes, uint64_t min, uint64_t max,
		     uint64_t *out)
{
	char want[96];

	if (parse_u64(s, suffixes, out) == 0 && *out >= min && *out <= max)
		return 0;
	snprintf(want, sizeof(want), "from %" PRIu64 " to %" PRIu64, min, max);
	return bad_value(opt, s, want);
}

static int parse_rw(struct tf_load_conf *c, const char *s)
{
	if (bench_parse_rw(s, &c->mix, &c->random) == 0)
		return 0;
	return bad_value("--rw", s, "read, write, rw, randread, randwrite or randrw");
}

static int parse_seconds(const char *s, uint64_t *ns)
{
	char *end;
	double secs;

	errno = 0;
	secs = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(secs) || secs <= 0 || secs > 1e6)
		return bad_value("--runtime", s, "seconds, more than 0");
	*ns = (uint64_t)(secs * 1e9);
	return 0;
}

static int parse_one(struct tf_opts *o, int opt, const char *arg)
{
	uint64_t v;
	int err = 0;

	switch (opt) {
	case OPT_CTL:
		o->ctl = arg;
		return 0;
	case 'm':
		err = parse_num("-m", arg, false, 0, INT32_MAX, &v);
		o->minor = (int)v;
		return err;
	case 'S':
		o->tapctld = arg;
		return 0;
	case 'X':
		o->xenstore = arg;
		return 0;
	case OPT_RAW:
		o->raw = arg;
		return 0;
	case OPT_RW:
		return parse_rw(&o->load, arg);
	case OPT_BS:
		return parse_num("--bs", arg, true, RING_SECTOR_BYTES, MAX_BS, &o->load.bs);
	case OPT_QD:
		err = parse_num("--qd", arg, false, 1, MAX_DEPTH, &v);
		o->load.depth = (unsigned)v;
		return err;
	case OPT_RUNTIME:
		o->have_time = true;
		return parse_seconds(arg, &o->load.time_ns);
	case OPT_OPS:
		o->have_ops = true;
		return parse_num("--ops", arg, false, 1, UINT64_MAX, &o->load.ops);
	case OPT_QUEUES:
		err = parse_num("--queues", arg, false, 1, 64, &v);
		o->load.nr_queues = (unsigned)v;
		return err;
	case OPT_ORDER:
		err = parse_num("--ring-order", arg, false, 0, RING_ORDER_MAX, &v);
		o->order = (unsigned)v;
		return err;
	case OPT_ABI:
		return tf_abi_parse(arg, &o->abi)
			       ? bad_value("--abi", arg, "native, x86_32, x86_64")
			       : 0;
	case OPT_INDIRECT:
		err = parse_num("--indirect", arg, false, 1,
				RING_INDIRECT_PAGES_MAX * RING_SEGS_PER_INDIRECT_PAGE, &v);
		o->indirect = (unsigned)v;
		return err;
	case OPT_OFFSET:
		return parse_num("--offset", arg, true, 0, UINT64_MAX, &o->load.offset);
	case OPT_FILL:
		err = parse_num("--fill", arg, false, 0, 255, &v);
		o->load.fill = (int)v;
		return err;
	case OPT_SPAN:
		return parse_num("--span", arg, true, RING_SECTOR_BYTES, UINT64_MAX, &o->load.span);
	case OPT_VERIFY:
		o->load.verify = true;
		return 0;
	case OPT_SEED:
		return parse_num("--seed", arg, false, 0, UINT64_MAX, &o->load.seed);
	case OPT_FLUSH:
		o->load.flush = true;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_HOSTILE:
		return tf_hostile_parse(arg, &o->load.hostile)
			       ? bad_value("--hostile", arg,
					   "segments, nr-segments, past-end, prod-overrun, change, "
					   "data, storm or ops")
			       : 0;
	}
	return -EINVAL;
}

/* Checks that need no disk. */
static int check_opts(struct tf_opts *o)
{
	struct tf_load_conf *c = &o->load;

	if ((o->ctl != NULL) + (o->raw != NULL) + (o->minor >= 0) + (o->xenstore != NULL) != 1) {
		fprintf(stderr, "tap-front: give exactly one of --ctl SOCKET, -m MINOR, --xenstore "
				"DIR and --raw FILE\n");
		return -EINVAL;
	}
	if (o->minor >= 0) {
		char err[512];

		if (ctlc_minor_ctl(ctlc_socket(o->tapctld), o->minor, o->ctl_buf,
				   sizeof(o->ctl_buf), err, sizeof(err)) < 0) {
			fprintf(stderr, "tap-front: -m %d: %s\n", o->minor, err);
			return -ENOENT;
		}
		o->ctl = o->ctl_buf;
	}
	if (o->have_ops && o->have_time) {
		fprintf(stderr, "tap-front: --runtime and --ops exclude each other\n");
		return -EINVAL;
	}
	if (!o->have_ops && !o->have_time)
		c->time_ns = (uint64_t)(DEFAULT_SECONDS * 1e9);
	if (c->bs % RING_SECTOR_BYTES || c->offset % c->bs) {
		fprintf(stderr,
			"tap-front: --bs %" PRIu64 " must be a multiple of 512, and --offset "
			"a multiple of --bs\n",
			c->bs);
		return -EINVAL;
	}
	if (c->fill >= 0 && !c->verify) {
		fprintf(stderr, "tap-front: --fill says what --verify expects; give --verify\n");
		return -EINVAL;
	}
	if (c->hostile == TF_HOSTILE_PROD && c->nr_queues < 2) {
		fprintf(stderr, "tap-front: --hostile prod-overrun halts queue 0's ring: it needs "
				"--queues 2 or more, to show the others go on\n");
		return -EINVAL;
	}
	if (o->raw && (c->hostile || o->indirect || o->order || o->abi != RING_ABI_NATIVE)) {
		fprintf(stderr, "tap-front: --hostile, --indirect, --ring-order and --abi are for "
				"rings, not --raw\n");
		return -EINVAL;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct tf_opts *o)
{
	int opt;

	*o = (struct tf_opts){
		.load = { .mix = BENCH_READ,
			  .random = true,
			  .bs = 4096,
			  .depth = 1,
			  .nr_queues = 1,
			  .seed = 1,
			  .fill = -1 },
		.abi = RING_ABI_NATIVE,
		.minor = -1,
	};
	while ((opt = getopt_long(argc, argv, "hm:S:", long_opts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			exit(0);
		}
		if (opt == '?' || parse_one(o, opt, optarg)) {
			if (opt == '?')
				fprintf(stderr, "Try 'tap-front --help'.\n");
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tap-front: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return check_opts(o);
}

/* ---- running -------------------------------------------------------------- */

struct tf_run {
	struct tf_opts *opts;
	struct tf_worker *workers;
	struct aio_file *file; /* --raw */
};

static void *raw_thread(void *arg)
{
	struct tf_worker *w = arg;
	struct tf_raw *raw = NULL;
	struct aio_file *file = w->ctx;
	int err = tf_raw_new(file, w->conf->depth, w->conf->bs, &raw);

	w->ctx = raw;
	if (!err)
		err = tf_worker_run(w);
	if (err)
		w->st.protocol_error = true;
	tf_raw_free(raw);
	return NULL;
}

static void *ring_thread(void *arg)
{
	struct tf_worker *w = arg;
	int err;

	if (w->conf->hostile == TF_HOSTILE_PROD && w->index == 0)
		err = tf_hostile_prod(w);
	else
		err = tf_worker_run(w);
	if (err)
		w->st.protocol_error = true;
	tf_hostile_stop(w); /* its counts are part of the worker's */
	return NULL;
}

/* Run every worker on a thread of its own; the sum of their statistics. */
static int run_workers(struct tf_run *run, void *(*fn)(void *), struct tf_qstats *sum)
{
	const struct tf_load_conf *c = &run->opts->load;
	pthread_t *threads = calloc(c->nr_queues, sizeof(*threads));
	unsigned started = 0;
	int err = threads ? 0 : -ENOMEM;

	while (!err && started < c->nr_queues) {
		err = -pthread_create(&threads[started], NULL, fn, &run->workers[started]);
		if (err)
			fprintf(stderr, "tap-front: cannot start a thread: %s\n", err_str(err));
		else
			started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(threads[i], NULL);
		tf_stats_add(sum, &run->workers[i].st);
	}
	free(threads);
	return err;
}

static int workers_init(struct tf_run *run, const struct tf_engine *eng)
{
	const struct tf_load_conf *c = &run->opts->load;
	int err = 0;

	run->workers = calloc(c->nr_queues, sizeof(*run->workers));
	if (!run->workers)
		return -ENOMEM;
	for (unsigned i = 0; !err && i < c->nr_queues; i++) {
		struct tf_worker *w = &run->workers[i];

		w->conf = c;
		w->index = i;
		w->eng = eng;
		err = tf_worker_init(w);
	}
	return err;
}

static void workers_fini(struct tf_run *run)
{
	for (unsigned i = 0; run->workers && i < run->opts->load.nr_queues; i++)
		tf_worker_fini(&run->workers[i]);
	free(run->workers);
}

/* The span the load uses: the rest of the disk from --offset unless --span, whole blocks. */
static int set_span(struct tf_load_conf *c, uint64_t disk_bytes)
{
	uint64_t usable;

	c->disk_bytes = disk_bytes;
	if (c->offset >= disk_bytes) {
		fprintf(stderr,
			"tap-front: --offset %" PRIu64 " is past the end of the disk (%" PRIu64
			" bytes)\n",
			c->offset, disk_bytes);
		return -EINVAL;
	}
	usable = disk_bytes - c->offset;
	if (c->hostile == TF_HOSTILE_CHANGE || c->hostile == TF_HOSTILE_DATA) {
		/* their writes go right after the span: keep room for them */
		if (disk_bytes < 2 * TF_CHANGE_RESERVE_BYTES) {
			fprintf(stderr, "tap-front: --hostile %s needs a disk of 2 MiB or more\n",
				tf_hostile_name(c->hostile));
			return -EINVAL;
		}
		usable = disk_bytes - TF_CHANGE_RESERVE_BYTES;
	}
	if (!c->span)
		c->span = usable;
	if (c->span > usable) {
		fprintf(stderr,
			"tap-front: --span %" PRIu64 " is larger than the disk allows (%" PRIu64
			" bytes)\n",
			c->span, usable);
		return -EINVAL;
	}
	c->span -= c->span % c->bs;
	if (c->span / c->bs < c->nr_queues) {
		fprintf(stderr,
			"tap-front: the disk holds %" PRIu64 " blocks of %" PRIu64
			" bytes, fewer than --queues\n",
			c->span / c->bs, c->bs);
		return -EINVAL;
	}
	return 0;
}

static bool run_ok(const struct tf_run *run, const struct tf_qstats *sum)
{
	const struct tf_load_conf *c = &run->opts->load;
	bool flushed = true;

	for (unsigned i = 0; c->flush && i < c->nr_queues; i++)
		flushed &= run->workers[i].st.flushed;
	return !sum->io_errors && !sum->verify_errors && !sum->protocol_error &&
	       !sum->hostile.unexpected && flushed;
}

/* ---- --raw ---------------------------------------------------------------- */

static int run_raw(struct tf_opts *o)
{
	struct tf_run run = { .opts = o };
	struct tf_qstats sum = { 0 };
	off_t size;
	int err = aio_file_open(o->raw, 0, &run.file);

	if (err)
		return err;
	size = lseek(run.file->fd, 0, SEEK_END);
	err = size < 0 ? neg_errno() : set_span(&o->load, (uint64_t)size);
	if (!err)
		err = workers_init(&run, &tf_raw_engine);
	for (unsigned i = 0; !err && i < o->load.nr_queues; i++)
		run.workers[i].ctx = run.file;
	if (!err)
		err = run_workers(&run, raw_thread, &sum);
	if (!err)
		err = tf_report(&o->load, "raw", &sum, o->json);
	if (!err && !run_ok(&run, &sum))
		err = -EIO;
	workers_fini(&run);
	aio_file_close(run.file);
	return err;
}

/* ---- --ctl ---------------------------------------------------------------- */

static int check_offer(const struct tf_opts *o, const struct tf_disk *d)
{
	if (o->order > d->max_order || o->load.nr_queues > d->max_queues ||
	    o->indirect > d->max_indirect_segs) {
		fprintf(stderr,
			"tap-front: tapdisk offers rings of order %u at most, %u queues and %u "
			"indirect segments; asked for %u, %u and %u\n",
			d->max_order, d->max_queues, d->max_indirect_segs, o->order,
			o->load.nr_queues, o->indirect);
		return -EINVAL;
	}
	if (o->load.bs % d->sector_size) {
		fprintf(stderr,
			"tap-front: --bs %" PRIu64 " is not a multiple of the disk's "
			"%u-byte sectors\n",
			o->load.bs, d->sector_size);
		return -EINVAL;
	}
	if ((d->info & RING_INFO_READONLY) && o->load.mix != BENCH_READ) {
		fprintf(stderr, "tap-front: the disk is read-only\n");
		return -EROFS;
	}
	return 0;
}

static int make_front(const struct tf_opts *o, struct tf_dev **dev)
{
	struct tf_conf fc = {
		.abi = o->abi,
		.order = o->order,
		.nr_queues = o->load.nr_queues,
		.depth = o->load.depth,
		.max_bytes = o->load.bs,
		.indirect_segs = o->indirect,
		.sub_page = o->load.verify,
	};
	int err = tf_dev_new(&fc, dev);

	if (err == -E2BIG && fc.sub_page) {
		fc.sub_page = false; /* the buffer's offset would cost a segment too many */
		err = tf_dev_new(&fc, dev);
	}
	if (err == -E2BIG)
		fprintf(stderr,
			"tap-front: --bs %" PRIu64 " needs more segments than a %s "
			"request carries (%u)%s\n",
			o->load.bs, o->indirect ? "--indirect" : "direct",
			o->indirect ? o->indirect : RING_SEGS_DIRECT,
			o->indirect ? "" : "; use --indirect");
	else if (err == -EINVAL)
		fprintf(stderr, "tap-front: --qd %u is more than a ring of order %u holds\n",
			o->load.depth, o->order);
	else if (err)
		fprintf(stderr, "tap-front: cannot set up the frontend: %s\n", err_str(err));
	return err;
}

static int run_attached(struct tf_run *run, struct tf_dev *dev, struct tf_qstats *sum)
{
	struct tf_opts *o = run->opts;
	int err = workers_init(run, &tf_ring_engine);

	for (unsigned i = 0; !err && i < o->load.nr_queues; i++) {
		run->workers[i].ctx = tf_dev_queue(dev, i);
		run->workers[i].ring = tf_dev_queue(dev, i);
		if (o->load.hostile)
			err = tf_hostile_start(&run->workers[i]);
	}
	if (!err)
		err = run_workers(run, ring_thread, sum);
	for (unsigned i = 0; run->workers && i < o->load.nr_queues; i++)
		tf_hostile_stop(&run->workers[i]);
	return err;
}

static int run_ring(struct tf_opts *o)
{
	struct tf_run run = { .opts = o };
	struct tf_attach at = { .sock = -1 };
	struct tf_qstats sum = { 0 };
	struct tf_dev *dev = NULL;
	struct tf_disk disk;
	int err = tf_ctl_connect(o->ctl, &at);

	if (!err)
		err = tf_ctl_ring_info(&at, &disk);
	if (!err)
		err = check_offer(o, &disk);
	if (!err)
		err = set_span(&o->load, disk.sectors * RING_SECTOR_BYTES);
	if (!err)
		err = make_front(o, &dev);
	if (!err)
		err = tf_ctl_attach(&at, dev, o->abi, o->order);
	if (!err)
		err = run_attached(&run, dev, &sum);
	if (tf_ctl_detach(&at) && !err)
		err = -EIO;
	if (!err)
		err = tf_report(&o->load, "ring", &sum, o->json);
	if (!err && !run_ok(&run, &sum))
		err = -EIO;
	workers_fini(&run);
	tf_dev_free(dev);
	return err;
}

/* --xenstore: the same load, after a xenstore handshake with tapctld. */
static int run_xen(struct tf_opts *o)
{
	struct tf_run run = { .opts = o };
	struct tf_qstats sum = { 0 };
	struct tf_dev *dev = NULL;
	struct tf_xen x = { 0 };
	struct tf_disk disk;
	int err = tf_xen_begin(o->xenstore, &x, &disk);

	if (!err)
		err = check_offer(o, &disk);
	if (!err)
		err = make_front(o, &dev);
	if (!err)
		err = tf_xen_connect(&x, ctlc_socket(o->tapctld), dev, o->abi, o->order, &disk);
	if (!err)
		err = check_offer(o, &disk);
	if (!err)
		err = set_span(&o->load, disk.sectors * RING_SECTOR_BYTES);
	if (!err)
		err = run_attached(&run, dev, &sum);
	if (tf_xen_close(&x) && !err)
		err = -EIO;
	if (!err)
		err = tf_report(&o->load, "xen ring", &sum, o->json);
	if (!err && !run_ok(&run, &sum))
		err = -EIO;
	workers_fini(&run);
	tf_dev_free(dev);
	return err;
}

int main(int argc, char **argv)
{
	struct tf_opts o;

	log_init("tap-front");
	if (parse_args(argc, argv, &o))
		return 1;
	if (o.xenstore)
		return run_xen(&o) ? 1 : 0;
	return (o.raw ? run_raw(&o) : run_ring(&o)) ? 1 : 0;
}
