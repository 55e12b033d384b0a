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
 * design, and qemu-img check exits 2 on it (with the dirty bit set), as it
 * does on QEMU's own.  A writable open repairs them, QEMU's and ours: so
 * after the check the parent opens the image read-write through the driver
 * and closes it, and then qemu-img check must find it clean (0 or 3) and
 * the dirty bit clear, before the contents are judged.
 *
 * The writers use libaio (O_DIRECT), the sync engine, or io_uring on
 * buffered files: those finish or cancel every request before the killed
 * process is reaped.  io_uring with O_DIRECT may complete a write after
 * waitpid() returns, which would change the image under the checks.
 *
 * QTAP_CRASH_ROUNDS and QTAP_CRASH_SEED override the rounds per
 * configuration and the seed; under QTAP_VALGRIND=1 a few rounds run.
 * The oracle's rules are tested on their own in test-qcow2-crash-oracle.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "evloop.h"
#include "log.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"
#include "crash-oracle.h"
#include "crash-writer.h"

#define MiB (1024ull * 1024)
#define ROUNDS_DEFAULT 20u
#define ROUNDS_VALGRIND 2u
#define SNAPSHOT_EVERY 10u

static bool under_valgrind(void)
{
	const char *vg = getenv("QTAP_VALGRIND");

	return vg && strcmp(vg, "1") == 0;
}

/* ---- the parent: set-up ------------------------------------------------------------------ */

struct crash_stats {
	unsigned rounds, kills, stops;
	unsigned kills_in_flush;  /* a flush was in flight at the kill */
	unsigned kills_in_writes; /* a write, zero write or discard was */
	unsigned check_clean, check_leaks, check_dirty, repaired;
	uint64_t reqs, done, flushes, durable, exact_blocks;
	uint64_t delay_min_ms, delay_max_ms;
	int64_t leaks_end;
	uint32_t reftable_start, reftable_end; /* refcount_table_clusters */
};

struct crash_run {
	const struct crash_cfg *cfg;
	char img[PATH_MAX], spec[PATH_MAX + 8], log[PATH_MAX], raw[PATH_MAX];
	uint64_t size, nblocks, cluster_blocks, unit_bytes, upb;
	uint64_t seed, rng, rounds;
	uint8_t *orig;	     /* what the image read before the first round */
	struct cr_val *base; /* per unit (upb per block): what it read after the last kill */
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

/* Start qemu-img convert -O raw of the image into cr->raw; its pid. */
static pid_t convert_start(struct crash_run *cr)
{
	const char *argv[] = { "qemu-img", "convert", "-t",    "unsafe", "-O",
			       "raw",	   cr->img,   cr->raw, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	assert_int_equal(posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* Wait for convert_start()'s @pid; the raw image in *@out (malloc'ed). */
static void convert_finish(struct crash_run *cr, pid_t pid, uint8_t **out)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: qemu-img convert -O raw failed (status 0x%x)", cr->cfg->name, status);
	assert_int_equal(qt_file_size(cr->raw), cr->size);
	*out = qt_read(cr->raw, 0, cr->size);
}

static void convert_raw(struct crash_run *cr, uint8_t **out)
{
	convert_finish(cr, convert_start(cr), out);
}

/* A big-endian header field of @len bytes at @off. */
static uint64_t header_field(const struct crash_run *cr, uint64_t off, size_t len)
{
	uint8_t *be = qt_read(cr->img, off, len);
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len; i++)
		v = v << 8 | be[i];
	free(be);
	return v;
}

/* The header's refcount_table_clusters: grows with the file. */
static uint32_t reftable_clusters(const struct crash_run *cr)
{
	return (uint32_t)header_field(cr, 56, 4);
}

static void crash_setup(struct crash_run *cr, const struct crash_cfg *c, uint64_t seed)
{
	uint64_t cluster_bytes;
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
	cluster_bytes = (uint64_t)json_integer_value(qt_json_get(info, "cluster-size"));
	json_decref(info);
	assert_true(cluster_bytes >= 512);
	cr->cluster_blocks = MAX(cluster_bytes / CR_BLK, 1);
	cr->unit_bytes = MIN(cluster_bytes, (uint64_t)CR_BLK);
	cr->upb = CR_BLK / cr->unit_bytes;
	cr->size = c->size;
	cr->nblocks = c->size / CR_BLK;
	cr->st.reftable_start = reftable_clusters(cr);
	convert_raw(cr, &cr->orig);
	cr->base = calloc(cr->nblocks * cr->upb, sizeof(*cr->base)); /* all CR_V_ORIG */
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

/*
 * A killed process's io_uring is torn down by the kernel after the
 * process is reaped: until its workers let go of the image file, the
 * writer's OFD locks stay and qemu-img check would refuse the image. Wait
 * (up to 10 s) until no lock conflicts with a writer's.
 */
static void wait_unlocked(struct crash_run *cr, uint64_t round)
{
	int fd = open(cr->img, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	for (int i = 0; i < 1000; i++) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

		assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
		if (fl.l_type == F_UNLCK) {
			close(fd);
			return;
		}
		usleep(10000);
	}
	close(fd);
	fail_msg("%s round %" PRIu64 ": the killed writer's locks on %s stay for 10 s",
		 cr->cfg->name, round, cr->img);
}

/*
 * Reap @pid: it must have died of SIGKILL, or with @stopped, exited 0
 * (under valgrind, a memory error or leak in the writer exits 119).
 */
static void reap(struct crash_run *cr, pid_t pid, uint64_t round, bool stopped)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	wait_unlocked(cr, round);
	if (!stopped && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return;
	if (stopped && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	if (WIFEXITED(status))
		fail_msg("%s round %" PRIu64 ": the writer exited %d %s: %s (its stderr is above)",
			 cr->cfg->name, round, WEXITSTATUS(status),
			 stopped ? "when asked to stop" : "by itself",
			 child_exit_why(WEXITSTATUS(status)));
	fail_msg("%s round %" PRIu64 ": the writer died of signal %d", cr->cfg->name, round,
		 WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

/*
 * Fork the writer, wait until the image is open, let it run, then kill it
 * (or, with @stop, ask it to stop and close the image cleanly).
 */
static void run_writer(struct crash_run *cr, uint64_t round, bool stop)
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
		struct cw_args a = { .round = round,
				     .seed = cr->seed * 1000003 + round,
				     .cluster_blocks = cr->cluster_blocks,
				     .fresh_blk =
					     (round - 1) % cr->rounds * cr->nblocks / cr->rounds,
				     .fresh_nblk = cr->nblocks / cr->rounds,
				     .log_fd = log_fd,
				     .ready_fd = ready[1] };

		close(ready[0]);
		child_main(cr->cfg, cr->img, &a);
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
	kill(pid, stop && r == 1 ? SIGUSR1 : SIGKILL);
	reap(cr, pid, round, stop && r == 1);
	cr->st.kills += !stop;
	cr->st.stops += stop;
}

/*
 * Run qemu-img with its stderr (a line per leaked cluster) dropped; stdout
 * in *@out.  Returns the exit status.
 */
static __attribute__((sentinel)) int run_quiet(char **out, const char *arg0, ...)
{
	int saved = dup(2), null = open("/dev/null", O_WRONLY), rc;
	va_list ap;

	assert_true(saved >= 0 && null >= 0);
	fflush(stderr);
	dup2(null, 2);
	va_start(ap, arg0);
	rc = qt_run_va(out, arg0, ap);
	va_end(ap);
	dup2(saved, 2);
	close(saved);
	close(null);
	return rc;
}

static void fail_check(struct crash_run *cr, uint64_t round, int rc, const char *why)
{
	char *text = NULL;

	qt_run_out(&text, "qemu-img", "check", cr->img, NULL); /* its stderr goes to the log */
	fail_msg("%s round %" PRIu64 ": qemu-img check exits %d%s (seed %" PRIu64
		 ", image %s):\n%s",
		 cr->cfg->name, round, rc, why, cr->seed, cr->img, text ? text : "");
}

/*
 * A lazy image after a kill: the driver's writable open repairs the
 * refcounts (as QEMU's does); after a close, qemu-img check must find the
 * image clean and the dirty bit clear.
 */
static void repair_by_open(struct crash_run *cr, uint64_t round)
{
	struct drv_image *top = NULL;
	int rc;

	assert_int_equal(drv_chain_open(cr->spec, cr->cfg->open_flags, &top), 0);
	drv_image_close(top);
	rc = run_quiet(NULL, "qemu-img", "check", cr->img, NULL);
	if (rc != 0 && rc != 3)
		fail_check(cr, round, rc, " after qtap's writable open repaired the image");
	if (header_field(cr, 72, 8) & 1)
		fail_msg("%s round %" PRIu64 ": the dirty bit is still set after qtap's writable "
			 "open and close",
			 cr->cfg->name, round);
	cr->st.repaired++;
}

/*
 * qemu-img check: 0 or 3.  Lazy refcounts after a kill: 2 as well while
 * the dirty bit is set (refcounts too low by design), then the driver's
 * repair must leave it clean.  After a clean close (@closed): 0 or 3,
 * lazy or not.
 */
static void check_image(struct crash_run *cr, uint64_t round, bool closed)
{
	char *out = NULL;
	json_t *j;
	int rc;

	rc = run_quiet(&out, "qemu-img", "check", "--output=json", cr->img, NULL);
	j = json_loads(out ? out : "", 0, NULL);
	cr->st.leaks_end = j ? (int64_t)json_integer_value(json_object_get(j, "leaks")) : -1;
	json_decref(j);
	free(out);
	if (rc == 0 || rc == 3) {
		cr->st.check_clean += rc == 0;
		cr->st.check_leaks += rc == 3;
	} else if (cr->cfg->lazy && rc == 2 && !closed) {
		if (!(header_field(cr, 72, 8) & 1))
			fail_check(cr, round, rc, " with the dirty bit clear");
		cr->st.check_dirty++;
	} else {
		fail_check(cr, round, rc, "");
	}
	if (cr->cfg->lazy && !closed)
		repair_by_open(cr, round);
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
				.cluster_blocks = cr->cluster_blocks,
				.unit_bytes = cr->unit_bytes };
	why = cr_round_parse(r, log, len);
	free(log);
	if (why)
		fail_msg("%s round %" PRIu64 ": the writer's log: %s", cr->cfg->name, round, why);
}

static void fail_block(struct crash_run *cr, const struct cr_round *r, uint64_t b,
		       const char *reader, const uint8_t *got)
{
	char seen[128];
	char *hist = cr_describe_history(r, b, cr->base + b * cr->upb);

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
	struct cr_val now[CR_BLK / 512];
	uint64_t b;

	for (b = 0; b < cr->nblocks; b++) {
		const uint8_t *got = cr->buf + b * CR_BLK, *orig = cr->orig + b * CR_BLK;
		struct cr_val *base = cr->base + b * cr->upb;

		if (memcmp(got, qemu + b * CR_BLK, CR_BLK)) {
			if (!cr_judge(r, b, got, orig, base, now))
				fail_block(cr, r, b, "qtap", got);
			fail_block(cr, r, b, "qemu-img convert (qtap reads otherwise)",
				   qemu + b * CR_BLK);
		}
		if (!cr_judge(r, b, got, orig, base, now))
			fail_block(cr, r, b, "qtap and qemu-img convert", got);
		cr->st.exact_blocks += r->durable_pos[b] != 0;
		memcpy(base, now, cr->upb * sizeof(*base));
	}
}

static void count_round(struct crash_run *cr, const struct cr_round *r, bool stop)
{
	bool flush = false, write = false;
	uint64_t i;

	for (i = 0; i < r->nreqs; i++) {
		flush |= !r->reqs[i].done && r->reqs[i].op == CR_OP_FLUSH;
		write |= !r->reqs[i].done && r->reqs[i].op != CR_OP_FLUSH;
	}
	if (stop && (flush || write))
		fail_msg("%s round %" PRIu64
			 ": the writer closed the image with requests in flight",
			 cr->cfg->name, r->round);
	cr->st.kills_in_flush += flush;
	cr->st.kills_in_writes += write;
	cr->st.reqs += r->nreqs;
	cr->st.done += r->done;
	cr->st.flushes += r->flushes_done;
	cr->st.durable += r->durable;
}

/* One round; with @stop, the writer closes the image instead of being killed. */
static void crash_round(struct crash_run *cr, uint64_t round, bool stop)
{
	struct cr_round r;
	uint8_t *qemu = NULL;
	pid_t convert = -1;

	run_writer(cr, round, stop);
	parse_log(cr, &r, round);
	/* qemu-img convert runs alongside the check and the driver's read,
	 * all read-only; only a lazy image's repair (a writable open) must
	 * come first */
	if (!cr->cfg->lazy)
		convert = convert_start(cr);
	check_image(cr, round, stop);
	if (cr->cfg->lazy)
		convert = convert_start(cr);
	read_driver(cr);
	convert_finish(cr, convert, &qemu);
	judge_blocks(cr, &r, qemu);
	count_round(cr, &r, stop);
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

#define BUF DRV_OPEN_BUFFERED

/*
 * Engines: see the top of the file.  "queues" runs the writer on four
 * queue threads; "4k-spread" dirties more L2 slices than the cache lets
 * stay dirty between its rare flushes, so write-back also happens under
 * cache pressure; "512-refcount64" grows the refcount table every few
 * rounds (64 refcounts to a block, 64 blocks to the first table).
 */
static const struct crash_cfg configs[] = {
	{ .name = "64k",
	  .opts = "cluster_size=65536",
	  .size = 32 * MiB,
	  .engine = AIO_ENGINE_LIBAIO,
	  .queues = 1,
	  .flush_pct = 10 },
	{ .name = "4k",
	  .opts = "cluster_size=4096",
	  .size = 8 * MiB,
	  .open_flags = BUF,
	  .engine = AIO_ENGINE_URING,
	  .queues = 1,
	  .flush_pct = 10 },
	{ .name = "extl2-backing",
	  .opts = "cluster_size=65536,extended_l2=on",
	  .size = 16 * MiB,
	  .backing = true,
	  .engine = AIO_ENGINE_SYNC,
	  .queues = 1,
	  .flush_pct = 10 },
	{ .name = "snapshot",
	  .opts = "cluster_size=65536",
	  .size = 16 * MiB,
	  .snapshot = true,
	  .engine = AIO_ENGINE_LIBAIO,
	  .queues = 1,
	  .flush_pct = 10 },
	{ .name = "lazy",
	  .opts = "lazy_refcounts=on,cluster_size=16384",
	  .size = 16 * MiB,
	  .lazy = true,
	  .open_flags = BUF,
	  .engine = AIO_ENGINE_URING,
	  .queues = 1,
	  .flush_pct = 10 },
	{ .name = "refcount1",
	  .opts = "refcount_bits=1,cluster_size=4096",
	  .size = 8 * MiB,
	  .open_flags = BUF,
	  .engine = AIO_ENGINE_SYNC,
	  .queues = 1,
	  .flush_pct = 10 },
	{ .name = "queues",
	  .opts = "cluster_size=16384",
	  .size = 16 * MiB,
	  .engine = AIO_ENGINE_LIBAIO,
	  .queues = 4,
	  .flush_pct = 6 },
	{ .name = "4k-spread",
	  .opts = "cluster_size=4096",
	  .size = 64 * MiB,
	  .open_flags = BUF,
	  .engine = AIO_ENGINE_URING,
	  .queues = 2,
	  .flush_pct = 1,
	  .spread = true },
	{ .name = "512-refcount64",
	  .opts = "cluster_size=512,refcount_bits=64",
	  .size = 4 * MiB,
	  .open_flags = BUF,
	  .engine = AIO_ENGINE_SYNC,
	  .queues = 1,
	  .flush_pct = 5 },
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
	const char *name = cr->cfg->name;

	print_message("%s: %u rounds: %u kills (%u during a flush, %u with writes in flight) and "
		      "%u clean close, "
		      "kill delays %" PRIu64 "-%" PRIu64 " ms, %u queue(s), %s, seed %" PRIu64 "\n",
		      name, st->rounds, st->kills, st->kills_in_flush, st->kills_in_writes,
		      st->stops, st->delay_min_ms, st->delay_max_ms, cr->cfg->queues,
		      aio_engine_name(cr->cfg->engine), cr->seed);
	print_message("%s: %" PRIu64 " requests issued, %" PRIu64 " completed, %" PRIu64
		      " flushes completed, %" PRIu64 " requests durable, %" PRIu64
		      " block checks exact\n",
		      name, st->reqs, st->done, st->flushes, st->durable, st->exact_blocks);
	print_message("%s: qemu-img check: %u clean, %u leaks only, %u dirty (lazy refcounts); "
		      "%u kills then repaired by qtap's writable open; %" PRId64
		      " leaked clusters at the end; refcount table %" PRIu32 " -> %" PRIu32
		      " clusters\n",
		      name, st->check_clean, st->check_leaks, st->check_dirty, st->repaired,
		      st->leaks_end, st->reftable_start, st->reftable_end);
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
	cr.rounds = rounds;
	for (round = 1; round <= rounds; round++)
		crash_round(&cr, round, round == rounds);
	cr.st.reftable_end = reftable_clusters(&cr);
	report(&cr);
	crash_teardown(&cr);
}

int main(void)
{
	struct CMUnitTest tests[ARRAY_SIZE(configs)];
	unsigned i;

	log_init("test-qcow2-crash");
	for (i = 0; i < ARRAY_SIZE(configs); i++) {
		tests[i] = (struct CMUnitTest){ .name = configs[i].name,
						.test_func = test_config,
						.initial_state = (void *)&configs[i] };
	}
	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
