// SPDX-License-Identifier: MIT
/*
 * The qcow2 crash test: a writer killed with SIGKILL at random points,
 * many times over one image, against ARCHITECTURE.md §4.5: a crash may
 * leak clusters, never corrupt, never lose a write completed before a
 * completed flush.
 *
 * Each round forks a writer that opens the image read-write through the
 * driver and runs a seeded random workload with many requests in flight
 * (writes of self-describing blocks, FUA writes, zero writes with and
 * without MAY_UNMAP, discards, flushes), logging each request's issue and
 * completion (crash-oracle.h).  Once the image is open the parent waits a
 * random 2-300 ms (spread over four bands so kills land in allocations,
 * copy-on-write, metadata write-back and flushes alike) and kills it.
 * Then:
 *
 *   qemu-img check   exits 0 or 3 (leaks only); the leaks pile up over the
 *                    rounds, nothing repairs them;
 *   the contents     read through the driver and through qemu-img convert
 *                    -O raw are identical, and every block is a value the
 *                    log allows (crash-oracle.h has the rules); what it
 *                    reads becomes the block's value for the next round,
 *                    which reopens the same image and goes on writing.
 *
 * lazy_refcounts=on: a crashed image has refcounts that are too low by
 * design, and qemu-img check exits 2 on it, as it does on QEMU's own.
 * QEMU repairs them when it opens such an image read-write; our driver
 * does not yet (qcow2.c only warns about the dirty bit), and allocating
 * from those refcounts would hand out clusters in use.  So for lazy images
 * each round runs `qemu-img check -r all` (which must leave the image
 * clean: exit 0) before anything else reads or writes it.
 *
 * The writers use libaio (O_DIRECT), the sync engine, or io_uring on
 * buffered files: those finish or cancel every request before the killed
 * process is reaped.  io_uring with O_DIRECT may complete a write after
 * waitpid() returns, which would change the image under the checks.
 *
 * QTAP_CRASH_ROUNDS and QTAP_CRASH_SEED override the rounds per
 * configuration and the seed; under QTAP_VALGRIND=1 a few rounds run.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <time.h>

#include <cmocka.h>

#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "evloop.h"
#include "log.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"
#include "crash-oracle.h"

#define MiB (1024ull * 1024)
#define DEPTH 24u
#define WRITE_MAX_BLOCKS 64u
#define ROUNDS_DEFAULT 30u
#define ROUNDS_VALGRIND 2u
#define SNAPSHOT_EVERY 10u
#define CHILD_MAX_NS (30ull * 1000 * 1000 * 1000)

/* A writer's exit status when it ends by itself (it should be killed). */
enum child_exit {
	CHILD_EXIT_OPEN = 10,	    /* the image did not open read-write */
	CHILD_EXIT_IO = 11,	    /* a request failed */
	CHILD_EXIT_LOG = 12,	    /* the log could not be written */
	CHILD_EXIT_NOT_KILLED = 13, /* ran CHILD_MAX_NS without being killed */
	CHILD_EXIT_SETUP = 14,
};

struct crash_cfg {
	const char *name;
	const char *opts; /* qemu-img create -o */
	uint64_t size;
	bool backing;  /* over a qcow2 backing file (shorter than the image) */
	bool snapshot; /* data and an internal snapshot first, another every SNAPSHOT_EVERY rounds */
	bool lazy;     /* lazy refcounts: repaired with qemu-img check -r all each round */
	unsigned open_flags;
	enum aio_engine engine;
};

static bool under_valgrind(void)
{
	const char *vg = getenv("QTAP_VALGRIND");

	return vg && strcmp(vg, "1") == 0;
}

/* ---- the writer (a child process) --------------------------------------------------- */

struct cw;

struct cw_slot {
	struct drv_req req;
	struct iovec iov;
	uint8_t *buf;
	bool busy;
	uint32_t id;
	struct cw *w;
};

struct cw {
	int log_fd;
	uint64_t round;
	uint64_t rng;
	uint64_t nblocks;
	uint64_t cluster_blocks;
	uint8_t *busy; /* per block: a request on it is in flight */
	uint32_t next_id;
	struct drv_image *top;
	struct drv_queue *q;
	struct cw_slot slot[DEPTH];
};

static void cw_log(struct cw *w, const struct drv_req *req, enum cr_kind kind, unsigned op,
		   uint32_t id, int err)
{
	struct cr_rec rec = { .magic = CR_REC_MAGIC,
			      .kind = (uint8_t)kind,
			      .op = (uint8_t)op,
			      .fua = (req->flags & DRV_REQ_FUA) != 0,
			      .id = id,
			      .err = err,
			      .blk = req->offset / CR_BLK,
			      .nblk = req->len / CR_BLK };

	if (write(w->log_fd, &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		_exit(CHILD_EXIT_LOG);
}

static unsigned cw_op(const struct drv_req *req)
{
	switch (req->op) {
	case DRV_OP_WRITE:
		return CR_OP_WRITE;
	case DRV_OP_WRITE_ZEROES:
		return CR_OP_ZERO;
	case DRV_OP_DISCARD:
		return CR_OP_DISCARD;
	default:
		return CR_OP_FLUSH;
	}
}

static void cw_done(struct drv_req *req, int err)
{
	struct cw_slot *s = req->opaque;
	struct cw *w = s->w;

	cw_log(w, req, CR_DONE, cw_op(req), s->id, err);
	if (err) {
		fprintf(stderr,
			"writer: round %" PRIu64 " request %u (%s at %" PRIu64 "+%" PRIu64
			"): %s\n",
			w->round, s->id, cr_op_name(cw_op(req)), req->offset, req->len,
			strerror(-err));
		_exit(CHILD_EXIT_IO);
	}
	if (req->op != DRV_OP_FLUSH)
		memset(w->busy + req->offset / CR_BLK, 0, req->len / CR_BLK);
	s->busy = false;
}

/* A range for @op: small writes mostly, half of them in a hot eighth of the disk. */
static void cw_pick(struct cw *w, unsigned op, uint64_t *blk, uint64_t *n)
{
	uint64_t r = qd_rand(&w->rng) % 10, cb = w->cluster_blocks, region;

	if (op == CR_OP_WRITE)
		*n = 1 + qd_rand(&w->rng) % (r < 7 ? 4 : r < 9 ? cb + 2 : WRITE_MAX_BLOCKS);
	else if (op == CR_OP_ZERO)
		*n = 1 + qd_rand(&w->rng) % (2 * cb);
	else
		*n = cb * (1 + qd_rand(&w->rng) % 4) + (r % 2 ? qd_rand(&w->rng) % cb : 0);
	*n = MIN(*n, op == CR_OP_WRITE ? (uint64_t)WRITE_MAX_BLOCKS : w->nblocks);
	region = qd_rand(&w->rng) % 2 ? w->nblocks / 8 : w->nblocks;
	region = MAX(region, *n);
	*blk = qd_rand(&w->rng) % (region - *n + 1);
	if (op == CR_OP_DISCARD && r < 5)
		*blk = ALIGN_DOWN(*blk, cb);
}

static bool cw_busy(const struct cw *w, uint64_t blk, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		if (w->busy[blk + i])
			return true;
	}
	return false;
}

/* Issue one random request on @s; false when it would overlap one in flight. */
static bool cw_issue(struct cw *w, struct cw_slot *s)
{
	uint64_t k = qd_rand(&w->rng) % 100, blk = 0, n = 0, i;
	unsigned op = k < 62   ? CR_OP_WRITE
		      : k < 78 ? CR_OP_ZERO
		      : k < 88 ? CR_OP_DISCARD
			       : CR_OP_FLUSH;
	static const enum drv_op ops[] = { 0, DRV_OP_WRITE, DRV_OP_WRITE_ZEROES, DRV_OP_DISCARD,
					   DRV_OP_FLUSH };
	void *priv = s->req.priv;

	if (op != CR_OP_FLUSH) {
		cw_pick(w, op, &blk, &n);
		if (cw_busy(w, blk, n))
			return false;
		memset(w->busy + blk, 1, n);
	}
	s->id = w->next_id++;
	s->req = (struct drv_req){ .op = ops[op],
				   .offset = blk * CR_BLK,
				   .len = n * CR_BLK,
				   .q = w->q,
				   .done = cw_done,
				   .opaque = s,
				   .priv = priv };
	if (op == CR_OP_WRITE) {
		for (i = 0; i < n; i++)
			cr_fill(s->buf + i * CR_BLK, blk + i, cr_gen(w->round, s->id));
		s->iov = (struct iovec){ .iov_base = s->buf, .iov_len = n * CR_BLK };
		s->req.iov = &s->iov;
		s->req.iovcnt = 1;
		s->req.flags = k < 6 ? DRV_REQ_FUA : 0;
	} else if (op == CR_OP_ZERO) {
		s->req.flags = (k % 2 ? DRV_REQ_MAY_UNMAP : 0) | (k < 64 ? DRV_REQ_FUA : 0);
	}
	s->busy = true;
	cw_log(w, &s->req, CR_ISSUE, op, s->id, 0);
	drv_submit(w->top, &s->req);
	return true;
}

static void __attribute__((noreturn)) cw_run(struct cw *w)
{
	uint64_t start = evloop_now_ns();
	unsigned i, busy;

	for (;;) {
		for (busy = 0, i = 0; i < DEPTH; i++) {
			if (!w->slot[i].busy)
				cw_issue(w, &w->slot[i]);
			busy += w->slot[i].busy;
		}
		if (busy && evloop_run_once(w->q->loop, -1) < 0 && errno != EINTR)
			_exit(CHILD_EXIT_SETUP);
		if (evloop_now_ns() - start > CHILD_MAX_NS)
			_exit(CHILD_EXIT_NOT_KILLED);
	}
}

/*
 * The writer: open @img read-write, say so on @ready_fd, write until killed.
 * Never returns, and never touches cmocka's state.
 */
static void __attribute__((noreturn))
child_main(const struct crash_cfg *c, const char *img, uint64_t cluster_blocks, int log_fd,
	   int ready_fd, uint64_t round, uint64_t seed)
{
	struct aio_ctx_opts aopts = { .engine = c->engine };
	struct cw w = {
		.log_fd = log_fd, .round = round, .rng = seed | 1, .cluster_blocks = cluster_blocks
	};
	char spec[PATH_MAX + 8];
	struct drv_sync *s;
	unsigned i;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	if (drv_chain_open(spec, c->open_flags, &w.top) || drv_sync_new(w.top, &aopts, &s))
		_exit(CHILD_EXIT_OPEN);
	w.q = drv_sync_queue(s);
	w.nblocks = w.top->size_bytes / CR_BLK;
	w.busy = calloc(w.nblocks, 1);
	for (i = 0; i < DEPTH; i++) {
		w.slot[i].w = &w;
		w.slot[i].buf = buf_alloc(WRITE_MAX_BLOCKS * CR_BLK, 4096);
		w.slot[i].req.priv = calloc(1, drv_chain_req_priv_bytes(w.top));
		if (!w.slot[i].buf || !w.slot[i].req.priv)
			_exit(CHILD_EXIT_SETUP);
	}
	if (!w.busy || write(ready_fd, "r", 1) != 1)
		_exit(CHILD_EXIT_SETUP);
	close(ready_fd);
	cw_run(&w);
}

/* ---- the parent: set-up ------------------------------------------------------------------ */

struct crash_stats {
	unsigned rounds, kills;
	unsigned kills_in_flush;  /* a flush was in flight at the kill */
	unsigned kills_in_writes; /* a write, zero write or discard was */
	unsigned check_clean, check_leaks, check_dirty;
	uint64_t reqs, done, flushes, durable, exact_blocks;
	uint64_t delay_min_ms, delay_max_ms;
	int64_t leaks_end;
};

struct crash_run {
	const struct crash_cfg *cfg;
	char img[PATH_MAX], spec[PATH_MAX + 8], log[PATH_MAX], raw[PATH_MAX];
	uint64_t size, nblocks, cluster_blocks;
	uint64_t seed, rng;
	uint8_t *orig;	     /* what the image read before the first round */
	struct cr_val *base; /* per block: what it read after the last kill */
	uint8_t *buf;	     /* the driver's read of the whole disk */
	struct crash_stats st;
};

static void make_image(struct crash_run *cr)
{
	const struct crash_cfg *c = cr->cfg;
	char size[32];

	snprintf(size, sizeof(size), "%" PRIu64, c->size);
	unlink(cr->img);
	if (c->backing) {
		const char *base = qt_path("crash-base.qcow2"), *src = qt_path("crash-base.raw");

		qd_make_source(src, c->size - c->size / 8, cr->seed);
		unlink(base);
		assert_int_equal(qt_run("qemu-img", "convert", "-O", "qcow2", src, base, NULL), 0);
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", c->opts,
					"-b", base, "-F", "qcow2", cr->img, size, NULL),
				 0);
	} else {
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", c->opts,
					cr->img, size, NULL),
				 0);
	}
	if (c->snapshot) {
		static const char *const cmds[] = { "write -P 0x5a 0 3M", "write -z 5M 1M",
						    "write -P 0xa5 7M 100k", NULL };

		qd_qemu_io(cr->img, cmds);
		assert_int_equal(qt_run("qemu-img", "snapshot", "-c", "before", cr->img, NULL), 0);
	}
}

static void convert_raw(struct crash_run *cr, uint8_t **out)
{
	int rc = qt_run("qemu-img", "convert", "-O", "raw", cr->img, cr->raw, NULL);

	if (rc != 0)
		fail_msg("%s: qemu-img convert -O raw exits %d", cr->cfg->name, rc);
	assert_int_equal(qt_file_size(cr->raw), cr->size);
	*out = qt_read(cr->raw, 0, cr->size);
}

static void crash_setup(struct crash_run *cr, const struct crash_cfg *c, uint64_t seed)
{
	char name[64];
	json_t *info;

	memset(cr, 0, sizeof(*cr));
	cr->cfg = c;
	cr->seed = seed;
	cr->rng = seed | 1;
	snprintf(name, sizeof(name), "crash-%s.qcow2", c->name);
	snprintf(cr->img, sizeof(cr->img), "%s", qt_path(name));
	snprintf(cr->spec, sizeof(cr->spec), "qcow2:%s", cr->img);
	snprintf(name, sizeof(name), "crash-%s.log", c->name);
	snprintf(cr->log, sizeof(cr->log), "%s", qt_path(name));
	snprintf(name, sizeof(name), "crash-%s.raw", c->name);
	snprintf(cr->raw, sizeof(cr->raw), "%s", qt_path(name));
	make_image(cr);
	info = qt_info(cr->img);
	cr->cluster_blocks =
		(uint64_t)json_integer_value(qt_json_get(info, "cluster-size")) / CR_BLK;
	json_decref(info);
	assert_true(cr->cluster_blocks >= 1);
	cr->size = c->size;
	cr->nblocks = c->size / CR_BLK;
	convert_raw(cr, &cr->orig);
	cr->base = calloc(cr->nblocks, sizeof(*cr->base)); /* all CR_V_ORIG */
	cr->buf = buf_alloc(cr->size, 4096);
	assert_non_null(cr->base);
	assert_non_null(cr->buf);
	cr->st.delay_min_ms = UINT64_MAX;
	cr->st.leaks_end = -1;
}

static void crash_teardown(struct crash_run *cr)
{
	free(cr->orig);
	free(cr->base);
	buf_free(cr->buf);
}

/* ---- the parent: one round ------------------------------------------------------------------ */

/* A kill delay in one of four bands, 2 ms to 300 ms (ten times that under valgrind). */
static uint64_t pick_delay_ns(struct crash_run *cr)
{
	static const uint64_t edges_ms[] = { 2, 10, 40, 120, 300 };
	unsigned band = (unsigned)(qd_rand(&cr->rng) % 4);
	uint64_t lo = edges_ms[band] * 1000000, hi = edges_ms[band + 1] * 1000000;
	uint64_t ns = lo + qd_rand(&cr->rng) % (hi - lo);

	cr->st.delay_min_ms = MIN(cr->st.delay_min_ms, ns / 1000000);
	cr->st.delay_max_ms = MAX(cr->st.delay_max_ms, ns / 1000000);
	return under_valgrind() ? ns * 10 : ns;
}

static const char *child_exit_why(int code)
{
	switch (code) {
	case CHILD_EXIT_OPEN:
		return "could not open the image read-write";
	case CHILD_EXIT_IO:
		return "a request failed";
	case CHILD_EXIT_LOG:
		return "could not write its log";
	case CHILD_EXIT_NOT_KILLED:
		return "was never killed";
	default:
		return "set-up failed";
	}
}

/* Reap @pid, which must have died of SIGKILL. */
static void reap(struct crash_run *cr, pid_t pid, uint64_t round)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return;
	if (WIFEXITED(status))
		fail_msg("%s round %" PRIu64 ": the writer exited %d by itself: %s (its stderr is "
			 "above)",
			 cr->cfg->name, round, WEXITSTATUS(status),
			 child_exit_why(WEXITSTATUS(status)));
	fail_msg("%s round %" PRIu64 ": the writer died of signal %d", cr->cfg->name, round,
		 WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

/* Fork the writer, wait until the image is open, let it run, kill it. */
static void run_writer(struct crash_run *cr, uint64_t round)
{
	int log_fd = open(cr->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	uint64_t ns = pick_delay_ns(cr);
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000),
			       .tv_nsec = (long)(ns % 1000000000) };
	struct pollfd pfd;
	int ready[2], r;
	char c;
	pid_t pid;

	assert_true(log_fd >= 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		child_main(cr->cfg, cr->img, cr->cluster_blocks, log_fd, ready[1], round,
			   cr->seed * 1000003 + round);
	}
	close(log_fd);
	close(ready[1]);
	pfd = (struct pollfd){ .fd = ready[0], .events = POLLIN };
	do
		r = poll(&pfd, 1, under_valgrind() ? 600000 : 60000);
	while (r < 0 && errno == EINTR);
	if (r == 1 && read(ready[0], &c, 1) == 1) {
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	close(ready[0]);
	kill(pid, SIGKILL);
	reap(cr, pid, round);
	cr->st.kills++;
}

/* qemu-img check: 0 or 3 (lazy images: anything but 1, then -r all must clean up). */
static void check_image(struct crash_run *cr, uint64_t round)
{
	char *out = NULL, *text = NULL;
	json_t *j;
	int rc;

	rc = qt_run_out(&out, "qemu-img", "check", "--output=json", cr->img, NULL);
	j = json_loads(out ? out : "", 0, NULL);
	cr->st.leaks_end = j ? (int64_t)json_integer_value(json_object_get(j, "leaks")) : -1;
	json_decref(j);
	free(out);
	if (rc == 0 || rc == 3) {
		cr->st.check_clean += rc == 0;
		cr->st.check_leaks += rc == 3;
	} else if (cr->cfg->lazy && rc == 2) {
		cr->st.check_dirty++;
	} else {
		qt_run_out(&text, "qemu-img", "check", cr->img, NULL);
		fail_msg("%s round %" PRIu64 ": qemu-img check exits %d (seed %" PRIu64
			 ", image %s):\n%s",
			 cr->cfg->name, round, rc, cr->seed, cr->img, text ? text : "");
	}
	if (!cr->cfg->lazy)
		return;
	rc = qt_run_out(&text, "qemu-img", "check", "-r", "all", cr->img, NULL);
	if (rc != 0)
		fail_msg("%s round %" PRIu64 ": qemu-img check -r all exits %d:\n%s", cr->cfg->name,
			 round, rc, text ? text : "");
	free(text);
}

/* The whole disk through the driver, read-only, into cr->buf. */
static void read_driver(struct crash_run *cr)
{
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	uint64_t off, chunk = 1 * MiB;

	assert_int_equal(drv_chain_open(cr->spec, DRV_OPEN_RDONLY, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	for (off = 0; off < cr->size; off += chunk)
		assert_int_equal(
			drv_sync_rw(s, DRV_OP_READ, off, cr->buf + off, MIN(chunk, cr->size - off)),
			0);
	drv_sync_free(s);
	drv_image_close(top);
}

static void parse_log(struct crash_run *cr, struct cr_round *r, uint64_t round)
{
	uint64_t len = qt_file_size(cr->log);
	uint8_t *log = qt_read(cr->log, 0, len);
	const char *why;

	*r = (struct cr_round){ .round = round,
				.nblocks = cr->nblocks,
				.cluster_blocks = cr->cluster_blocks };
	why = cr_round_parse(r, log, len);
	free(log);
	if (why)
		fail_msg("%s round %" PRIu64 ": the writer's log: %s", cr->cfg->name, round, why);
}

static void fail_block(struct crash_run *cr, const struct cr_round *r, uint64_t b,
		       const char *reader, const uint8_t *got)
{
	char seen[128];
	char *hist = cr_describe_history(r, b, cr->base[b]);

	cr_describe_seen(got, b, cr->orig + b * CR_BLK, seen, sizeof(seen));
	fail_msg("%s round %" PRIu64 " (seed %" PRIu64 ", image %s): block %" PRIu64
		 " (guest offset %" PRIu64 ") reads through %s as %s, which the log does not "
		 "allow; the block %s",
		 cr->cfg->name, r->round, cr->seed, cr->img, b, b * CR_BLK, reader, seen, hist);
	free(hist);
}

/* Every block against the rules; what it holds is its value for the next round. */
static void judge_blocks(struct crash_run *cr, const struct cr_round *r, const uint8_t *qemu)
{
	uint64_t b;

	for (b = 0; b < cr->nblocks; b++) {
		const uint8_t *got = cr->buf + b * CR_BLK, *orig = cr->orig + b * CR_BLK;
		struct cr_val now;

		if (memcmp(got, qemu + b * CR_BLK, CR_BLK)) {
			if (!cr_judge(r, b, got, orig, cr->base[b], &now))
				fail_block(cr, r, b, "qtap", got);
			fail_block(cr, r, b, "qemu-img convert (qtap reads otherwise)",
				   qemu + b * CR_BLK);
		}
		if (!cr_judge(r, b, got, orig, cr->base[b], &now))
			fail_block(cr, r, b, "qtap and qemu-img convert", got);
		cr->st.exact_blocks += r->durable_pos[b] != 0;
		cr->base[b] = now;
	}
}

static void count_round(struct crash_run *cr, const struct cr_round *r)
{
	bool flush = false, write = false;
	uint64_t i;

	for (i = 0; i < r->nreqs; i++) {
		flush |= !r->reqs[i].done && r->reqs[i].op == CR_OP_FLUSH;
		write |= !r->reqs[i].done && r->reqs[i].op != CR_OP_FLUSH;
	}
	cr->st.kills_in_flush += flush;
	cr->st.kills_in_writes += write;
	cr->st.reqs += r->nreqs;
	cr->st.done += r->done;
	cr->st.flushes += r->flushes_done;
	cr->st.durable += r->durable;
}

static void crash_round(struct crash_run *cr, uint64_t round)
{
	struct cr_round r;
	uint8_t *qemu = NULL;

	run_writer(cr, round);
	parse_log(cr, &r, round);
	check_image(cr, round);
	read_driver(cr);
	convert_raw(cr, &qemu);
	judge_blocks(cr, &r, qemu);
	count_round(cr, &r);
	free(qemu);
	cr_round_free(&r);
	cr->st.rounds++;
	if (cr->cfg->snapshot && round % SNAPSHOT_EVERY == 0) {
		char name[32];

		snprintf(name, sizeof(name), "round%" PRIu64, round);
		assert_int_equal(qt_run("qemu-img", "snapshot", "-c", name, cr->img, NULL), 0);
	}
}

/* ---- the configurations --------------------------------------------------------------------- */

static const struct crash_cfg configs[] = {
	{ "64k", "cluster_size=65536", 32 * MiB, false, false, false, 0, AIO_ENGINE_LIBAIO },
	{ "4k", "cluster_size=4096", 8 * MiB, false, false, false, DRV_OPEN_BUFFERED,
	  AIO_ENGINE_URING },
	{ "extl2-backing", "cluster_size=65536,extended_l2=on", 16 * MiB, true, false, false, 0,
	  AIO_ENGINE_SYNC },
	{ "snapshot", "cluster_size=65536", 16 * MiB, false, true, false, 0, AIO_ENGINE_LIBAIO },
	{ "lazy", "lazy_refcounts=on,cluster_size=16384", 16 * MiB, false, false, true,
	  DRV_OPEN_BUFFERED, AIO_ENGINE_URING },
	{ "refcount1", "refcount_bits=1,cluster_size=4096", 8 * MiB, false, false, false,
	  DRV_OPEN_BUFFERED, AIO_ENGINE_SYNC },
};

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;
	uint64_t v;

	if (!s || !*s)
		return dflt;
	errno = 0;
	v = strtoull(s, &end, 0);
	return errno || *end ? dflt : v;
}

static void report(const struct crash_run *cr)
{
	const struct crash_stats *st = &cr->st;

	print_message("%s: %u rounds, %u kills (%u during a flush, %u with writes in flight), "
		      "kill delays %" PRIu64 "-%" PRIu64 " ms, seed %" PRIu64 "\n",
		      cr->cfg->name, st->rounds, st->kills, st->kills_in_flush, st->kills_in_writes,
		      st->delay_min_ms, st->delay_max_ms, cr->seed);
	print_message("%s: %" PRIu64 " requests issued, %" PRIu64 " completed, %" PRIu64
		      " flushes completed, %" PRIu64 " requests durable, %" PRIu64
		      " block checks exact\n",
		      cr->cfg->name, st->reqs, st->done, st->flushes, st->durable,
		      st->exact_blocks);
	print_message("%s: qemu-img check: %u clean, %u leaks only, %u dirty lazy-refcount "
		      "images (repaired with -r all); %" PRId64 " leaked clusters at the end\n",
		      cr->cfg->name, st->check_clean, st->check_leaks, st->check_dirty,
		      st->leaks_end);
}

static void test_config(void **state)
{
	const struct crash_cfg *c = *state;
	uint64_t rounds =
		env_u64("QTAP_CRASH_ROUNDS", under_valgrind() ? ROUNDS_VALGRIND : ROUNDS_DEFAULT);
	uint64_t seed = env_u64("QTAP_CRASH_SEED", 0xc4a5b000u) + (uint64_t)(c - configs);
	struct crash_run cr;
	uint64_t round;

	QT_REQUIRE_QEMU();
	crash_setup(&cr, c, seed);
	for (round = 1; round <= rounds; round++)
		crash_round(&cr, round);
	report(&cr);
	crash_teardown(&cr);
}

/* ---- the oracle's own rules, on a log made by hand ------------------------------------------- */

struct log_maker {
	uint8_t buf[64 * sizeof(struct cr_rec)];
	size_t len;
};

static void rec(struct log_maker *m, enum cr_kind kind, unsigned op, bool fua, uint32_t id,
		uint64_t blk, uint64_t nblk)
{
	struct cr_rec r = { .magic = CR_REC_MAGIC,
			    .kind = (uint8_t)kind,
			    .op = (uint8_t)op,
			    .fua = fua,
			    .id = id,
			    .blk = blk,
			    .nblk = nblk };

	assert_true(m->len + sizeof(r) <= sizeof(m->buf));
	memcpy(m->buf + m->len, &r, sizeof(r));
	m->len += sizeof(r);
}

static bool judge_data(const struct cr_round *r, uint64_t blk, uint64_t gen, const uint8_t *orig,
		       struct cr_val base)
{
	uint8_t b[CR_BLK];
	struct cr_val now;

	cr_fill(b, blk, gen);
	return cr_judge(r, blk, b, orig, base, &now);
}

static bool judge_bytes(const struct cr_round *r, uint64_t blk, const uint8_t *b,
			const uint8_t *orig, struct cr_val base)
{
	struct cr_val now;

	return cr_judge(r, blk, b, orig, base, &now);
}

static void make_oracle_log(struct log_maker *m)
{
	rec(m, CR_ISSUE, CR_OP_WRITE, false, 0, 0, 2); /* durable: flush 1 follows */
	rec(m, CR_DONE, CR_OP_WRITE, false, 0, 0, 2);
	rec(m, CR_ISSUE, CR_OP_FLUSH, false, 1, 0, 0);
	rec(m, CR_ISSUE, CR_OP_WRITE, false, 2, 1, 1); /* in flight at the kill */
	rec(m, CR_DONE, CR_OP_FLUSH, false, 1, 0, 0);
	rec(m, CR_ISSUE, CR_OP_DISCARD, false, 3, 8, 24); /* changes blocks 16..31 only */
	rec(m, CR_DONE, CR_OP_DISCARD, false, 3, 8, 24);
	rec(m, CR_ISSUE, CR_OP_WRITE, true, 4, 40, 1); /* FUA */
	rec(m, CR_DONE, CR_OP_WRITE, true, 4, 40, 1);
	rec(m, CR_ISSUE, CR_OP_WRITE, false, 5, 60, 1); /* completes after flush 6's issue */
	rec(m, CR_ISSUE, CR_OP_FLUSH, false, 6, 0, 0);
	rec(m, CR_ISSUE, CR_OP_ZERO, false, 7, 4, 1); /* issued after it too */
	rec(m, CR_DONE, CR_OP_WRITE, false, 5, 60, 1);
	rec(m, CR_DONE, CR_OP_ZERO, false, 7, 4, 1);
	rec(m, CR_DONE, CR_OP_FLUSH, false, 6, 0, 0);
}

static void test_oracle(void **state)
{
	struct cr_round r = { .round = 1, .nblocks = 64, .cluster_blocks = 16 };
	struct cr_val orig_v = { .kind = CR_V_ORIG }, old = { .kind = CR_V_DATA, .gen = 7 };
	uint8_t orig[CR_BLK], zero[CR_BLK] = { 0 }, torn[CR_BLK];
	struct log_maker m = { .len = 0 };

	memset(orig, 0x5a, sizeof(orig));
	make_oracle_log(&m);
	assert_null(cr_round_parse(&r, m.buf, m.len + 5)); /* a torn last record is ignored */
	assert_true(r.truncated);
	assert_int_equal(r.durable, 3); /* write 0, discard 3, FUA write 4 */
	/* a write completed before a completed flush reads back exactly */
	assert_true(judge_data(&r, 0, cr_gen(1, 0), orig, orig_v));
	assert_false(judge_bytes(&r, 0, orig, orig, orig_v));
	assert_false(judge_bytes(&r, 0, zero, orig, orig_v));
	/* ... or as a later write in flight */
	assert_true(judge_data(&r, 1, cr_gen(1, 0), orig, orig_v));
	assert_true(judge_data(&r, 1, cr_gen(1, 2), orig, orig_v));
	assert_false(judge_data(&r, 1, cr_gen(1, 4), orig, orig_v));
	/* a zero write completed after the last flush was issued: either */
	assert_true(judge_bytes(&r, 4, orig, orig, orig_v));
	assert_true(judge_bytes(&r, 4, zero, orig, orig_v));
	/* a discard leaves partial clusters alone, zeroes whole ones for good */
	assert_true(judge_bytes(&r, 8, orig, orig, orig_v));
	assert_false(judge_bytes(&r, 8, zero, orig, orig_v));
	assert_true(judge_bytes(&r, 16, zero, orig, orig_v));
	assert_false(judge_bytes(&r, 16, orig, orig, orig_v));
	/* FUA is durable on completion; the block's previous round value is gone */
	assert_true(judge_data(&r, 40, cr_gen(1, 4), orig, old));
	assert_false(judge_data(&r, 40, 7, orig, old));
	/* a flush only covers writes completed before it was issued */
	assert_true(judge_bytes(&r, 60, orig, orig, orig_v));
	assert_true(judge_data(&r, 60, cr_gen(1, 5), orig, orig_v));
	/* untouched: exactly what the last round left, never anything older */
	assert_true(judge_data(&r, 50, 7, orig, old));
	assert_false(judge_bytes(&r, 50, orig, orig, old));
	/* torn and misplaced blocks are never allowed */
	cr_fill(torn, 1, cr_gen(1, 2));
	memset(torn + 2048, 0, 2048);
	assert_false(judge_bytes(&r, 1, torn, orig, orig_v));
	cr_fill(torn, 2, cr_gen(1, 0));
	assert_false(judge_bytes(&r, 1, torn, orig, orig_v));
	cr_round_free(&r);
	/* an impossible log is refused */
	r = (struct cr_round){ .round = 1, .nblocks = 64, .cluster_blocks = 16 };
	m.len = 0;
	rec(&m, CR_DONE, CR_OP_WRITE, false, 0, 0, 1);
	assert_non_null(cr_round_parse(&r, m.buf, m.len));
	cr_round_free(&r);
}

int main(void)
{
	struct CMUnitTest tests[ARRAY_SIZE(configs) + 1];
	unsigned i;

	log_init("test-qcow2-crash");
	tests[0] = (struct CMUnitTest){ .name = "oracle", .test_func = test_oracle };
	for (i = 0; i < ARRAY_SIZE(configs); i++) {
		tests[i + 1] = (struct CMUnitTest){ .name = configs[i].name,
						    .test_func = test_config,
						    .initial_state = (void *)&configs[i] };
	}
	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
