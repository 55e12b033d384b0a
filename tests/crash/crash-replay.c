// SPDX-License-Identifier: MIT
/*
 * crash-replay: builds post-crash copies of the image files from a log
 * crash-run recorded (lib/aio-rec.h) and checks each one.
 *
 *   crash-replay [-n STATES] [-s SEED] [-q EVERY] [-L] [-v] [-P PROG] [-w NAME] LOG
 *
 * The crash model is a power cut: a write reaches the disk for certain only
 * when an fdatasync of its file was issued after the write completed, and
 * that fdatasync completed.  At a crash point P (a position in the log),
 * each file holds its starting copy (LOG.N) with every such durable write
 * applied, plus any subset of the other writes issued before P, each of
 * them possibly torn at 512-byte granularity.  For each crash point chosen
 * the replay builds: none of them, all of them, prefixes in issue order,
 * and random subsets, half of them with torn writes.
 *
 * Each state is checked:
 *   - the qcow2 check (drivers/qcow2/check.c, in process) finds no
 *     corruption: leaks are allowed.  Every EVERY-th state goes to
 *     `qemu-img check` too, whose exit must be 0 or 3, and is read by
 *     `qemu-img convert` as well, which must read what the driver read;
 *   - the guest clusters the workload touched, read through the driver
 *     (read-only), hold per 512-byte sector a value the guest could see
 *     after such a crash: the value of the last guest write to the sector
 *     that was acknowledged before a completed guest flush was issued (or
 *     acknowledged with FUA), or of any guest write to it issued later; with
 *     no such write, the starting value or any write issued.  A read of an
 *     older value of the sector is a lost flushed write; a value never
 *     written to that sector (another offset's data, a freed cluster's) is a
 *     stale read.  Sectors of a touched cluster that the guest never wrote
 *     must hold their starting value (copy-on-write from the backing file).
 *
 * The state's guest size must be one the log names: a log may span several
 * processes (crash-run -A), e.g. writes, `tap-img resize`, more writes, each
 * crash-run naming the size it opened; the oracle reads the first size.
 *
 * With -P PROG, every position inside the records of process PROG (the
 * recorder's START record names it; e.g. tap-img) is a crash point, the
 * rest sampled as usual; each gets at least 8 states.
 *
 * With -L (lazy refcounts) each state is first opened read-write through the
 * driver, which repairs the refcounts of an image left dirty, as QEMU's open
 * does, and then checked.
 *
 * The states are built in place: the durable part advances with the crash
 * point, and the volatile subset is written over it and undone after the
 * checks (a copy is used with -L, whose open writes).  Prints one line:
 *   NAME states N corruptions N lost N stale N qemu-checked N
 * and exits 1 when a state failed.
 *
 * Reading the log and the per-sector rule are in replay-log.h; this file
 * builds the states and checks them.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aio-rec.h"
#include "buf.h"
#include "driver.h"
#include "log.h"
#include "qcow2/check.h"
#include "replay-log.h"
#include "sync.h"

#define PREFIXES 6u
#define FORCED_STATES 8u /* at least, per crash point inside -P's program */

/* ---- reading a state through the driver ---- */

struct reader {
	struct drv_image *img;
	struct drv_sync *sync;
};

static int reader_open(const char *path, unsigned flags, struct reader *rd)
{
	char spec[PATH_MAX + 8];

	snprintf(spec, sizeof(spec), "qcow2:%s", path);
	rd->sync = NULL;
	if (drv_chain_open(spec, flags | DRV_OPEN_BUFFERED | DRV_OPEN_NOLOCK, &rd->img))
		return -1;
	if (drv_sync_new(rd->img, NULL, &rd->sync)) {
		drv_image_close(rd->img);
		return -1;
	}
	return 0;
}

static void reader_close(struct reader *rd)
{
	drv_sync_free(rd->sync);
	drv_image_close(rd->img);
}

static int read_cluster(struct replay *r, struct reader *rd, uint64_t c)
{
	uint64_t off = c * r->cluster, len = r->cluster;

	if (off + len > r->size)
		len = r->size - off;
	memset(r->buf, 0, r->cluster);
	return drv_sync_rw(rd->sync, DRV_OP_READ, off, r->buf, len);
}

static void read_init(struct replay *r)
{
	char path[PATH_MAX];
	struct reader rd;
	uint64_t spc = r->cluster / SECTOR;

	snprintf(path, sizeof(path), "%s.0", r->log);
	if (reader_open(path, DRV_OPEN_RDONLY, &rd))
		die("cannot open the starting copy");
	for (uint64_t c = 0; c < r->nr_clusters; c++) {
		if (read_cluster(r, &rd, r->clusters[c]))
			die("cannot read the starting copy");
		for (uint64_t s = 0; s < spc; s++)
			r->init[c * spc + s] = hash_sector(r->buf + s * SECTOR);
	}
	reader_close(&rd);
}

/* Is @size one the log names (a resize's crash leaves the old or the new)? */
static bool size_known(const struct replay *r, uint64_t size)
{
	for (unsigned i = 0; i < r->nr_sizes; i++)
		if (r->sizes[i] == size)
			return true;
	return false;
}

/* Read every touched cluster of @path and judge it at crash point @p. */
static void verify_reads(struct replay *r, const char *path, uint64_t p, unsigned *lost,
			 unsigned *stale, bool *broken)
{
	uint64_t spc = r->cluster / SECTOR, k = 0;
	struct reader rd;

	if (reader_open(path, DRV_OPEN_RDONLY, &rd)) {
		*broken = true;
		return;
	}
	if (!size_known(r, rd.img->size_bytes)) {
		*broken = true;
		if (r->verbose)
			fprintf(stderr, "  crash point %" PRIu64 ": size %" PRIu64 " never given\n",
				p, rd.img->size_bytes);
	}
	for (uint64_t c = 0; c < r->nr_clusters; c++) {
		if (read_cluster(r, &rd, r->clusters[c])) {
			*broken = true;
			break;
		}
		for (uint64_t s = 0; s < spc; s++) {
			uint64_t sector = r->clusters[c] * spc + s, got, lo;
			enum verdict v;

			got = hash_sector(r->buf + s * SECTOR);
			r->seen[c * spc + s] = got;
			while (k < r->nr_sects && r->sects[k].sector < sector)
				k++;
			lo = k;
			while (k < r->nr_sects && r->sects[k].sector == sector)
				k++;
			if (lo == k) {
				v = got == r->init[c * spc + s] ? V_OK : V_STALE;
			} else {
				v = judge(r, lo, k, p, got, r->init[c * spc + s]);
			}
			if (v != V_OK && r->verbose)
				fprintf(stderr,
					"  crash point %" PRIu64 ": guest offset %" PRIu64 ": %s\n",
					p, sector * SECTOR,
					v == V_LOST ? "lost flushed write" : "stale read");
			*lost += v == V_LOST;
			*stale += v == V_STALE;
		}
	}
	reader_close(&rd);
}

/* ---- building the states ---- */

static void pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
	if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		die("cannot write a state");
}

static void undo_reserve(struct replay *r, uint64_t n)
{
	if (r->undo_used + n <= r->undo_cap)
		return;
	r->undo_cap = (r->undo_used + n) * 2;
	r->undo = realloc(r->undo, r->undo_cap);
	if (!r->undo)
		die("out of memory");
}

/* Write sectors [@a, @b) of file write event @e; with @save, keep the old bytes. */
static void apply_part(struct replay *r, uint64_t e, uint64_t a, uint64_t b, bool save)
{
	const struct aio_rec_hdr *h = r->ev[e].h;
	int fd = r->fd[h->file];
	uint64_t off = h->offset + a, len = (b < h->len ? b : h->len) - a;
	static uint8_t zeros[1 << 16];

	if (save) {
		struct {
			uint64_t off, len;
			int fd;
		} u = { off, len, fd };
		ssize_t got;

		undo_reserve(r, sizeof(u) + len);
		memcpy(r->undo + r->undo_used, &u, sizeof(u));
		got = pread(fd, r->undo + r->undo_used + sizeof(u), len, (off_t)off);
		if (got < 0)
			die("cannot read a state");
		/* past the end of the file: restored as zeros, then truncated */
		memset(r->undo + r->undo_used + sizeof(u) + got, 0, len - (uint64_t)got);
		r->undo_used += sizeof(u) + len;
	}
	if (h->type == AIO_REC_WRITE) {
		pwrite_all(fd, r->ev[e].data + a, len, off);
		return;
	}
	for (uint64_t done = 0; done < len; done += sizeof(zeros)) {
		uint64_t n = len - done < sizeof(zeros) ? len - done : sizeof(zeros);

		pwrite_all(fd, zeros, n, off + done);
	}
}

/* Set the size of the file of TRUNC event @e; with @save, keep the bytes cut. */
static void apply_trunc(struct replay *r, uint64_t e, bool save)
{
	const struct aio_rec_hdr *h = r->ev[e].h;
	int fd = r->fd[h->file];
	off_t end = lseek(fd, 0, SEEK_END);

	if (end < 0)
		die("cannot size a state");
	if (save && (uint64_t)end > h->offset) {
		struct {
			uint64_t off, len;
			int fd;
		} u = { h->offset, (uint64_t)end - h->offset, fd };

		undo_reserve(r, sizeof(u) + u.len);
		memcpy(r->undo + r->undo_used, &u, sizeof(u));
		if (pread(fd, r->undo + r->undo_used + sizeof(u), u.len, (off_t)u.off) !=
		    (ssize_t)u.len)
			die("cannot read a state");
		r->undo_used += sizeof(u) + u.len;
	}
	/* a size grown back by the undo is cut to the crash point's after it */
	if (ftruncate(fd, (off_t)h->offset) < 0)
		die("cannot truncate a state");
}

static void apply(struct replay *r, uint64_t e, bool save)
{
	if (r->ev[e].h->type == AIO_REC_TRUNC)
		apply_trunc(r, e, save);
	else
		apply_part(r, e, 0, r->ev[e].h->len, save);
}

static void undo_all(struct replay *r, const off_t *sizes)
{
	/* in reverse: the oldest bytes of a range come back last */
	uint64_t n = 0, *at = NULL, cap = 0, pos = 0;

	while (pos < r->undo_used) {
		uint64_t len;

		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			at = realloc(at, cap * sizeof(*at));
			if (!at)
				die("out of memory");
		}
		at[n++] = pos;
		memcpy(&len, r->undo + pos + 8, 8);
		pos += 24 + len;
	}
	while (n--) {
		uint64_t off, len;
		int fd;

		memcpy(&off, r->undo + at[n], 8);
		memcpy(&len, r->undo + at[n] + 8, 8);
		memcpy(&fd, r->undo + at[n] + 16, sizeof(fd));
		pwrite_all(fd, r->undo + at[n] + 24, len, off);
	}
	free(at);
	r->undo_used = 0;
	for (unsigned f = 0; f < r->nr_files; f++)
		if (ftruncate(r->fd[f], sizes[f]) < 0)
			die("cannot truncate a state");
}

static bool is_data_write(const struct replay *r, uint64_t e)
{
	int t = r->ev[e].h->type;

	return ((t == AIO_REC_WRITE || t == AIO_REC_ZERO) && r->ev[e].h->len) || t == AIO_REC_TRUNC;
}

/* Run @argv (qemu-img), output discarded: its exit status, or -1. */
static int run_quiet(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int run_qemu_check(const char *path)
{
	char *argv[] = { "qemu-img", "check", "-q", "-f", "qcow2", (char *)path, NULL };

	return run_quiet(argv);
}

/*
 * Read the state through QEMU (qemu-img convert to raw) and compare the
 * touched clusters with what the driver read: the number of sectors that
 * differ, or -1 when the convert failed.
 */
static int64_t qemu_compare(struct replay *r, const char *path)
{
	char raw[PATH_MAX + 8];
	char *argv[] = { "qemu-img", "convert", "-q",	      "-f", "qcow2",
			 "-O",	     "raw",	(char *)path, raw,  NULL };
	uint64_t spc = r->cluster / SECTOR;
	int64_t differ = 0;
	int fd;

	snprintf(raw, sizeof(raw), "%s.raw", r->log);
	unlink(raw);
	if (run_quiet(argv) != 0 || (fd = open(raw, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	for (uint64_t c = 0; c < r->nr_clusters; c++) {
		ssize_t got = pread(fd, r->buf, r->cluster, (off_t)(r->clusters[c] * r->cluster));

		if (got < 0)
			got = 0;
		memset(r->buf + got, 0, r->cluster - (uint64_t)got);
		for (uint64_t s = 0; s < spc; s++)
			differ += hash_sector(r->buf + s * SECTOR) != r->seen[c * spc + s];
	}
	close(fd);
	unlink(raw);
	return differ;
}

static void quiet_report(void *opaque, const char *line)
{
	if (*(bool *)opaque)
		fprintf(stderr, "    check: %s\n", line);
}

/* Copy @src to @dst whole (the lazy mode's open writes to the state). */
static void copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out;
	static uint8_t b[1 << 16];
	ssize_t n;
	off_t off = 0;

	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in < 0 || out < 0)
		die("cannot copy a state");
	while ((n = pread(in, b, sizeof(b), off)) > 0) {
		bool zero = true;

		for (ssize_t i = 0; i < n && zero; i++)
			zero = !b[i];
		if (!zero)
			pwrite_all(out, b, (uint64_t)n, (uint64_t)off);
		off += n;
	}
	if (ftruncate(out, off) < 0)
		die("cannot copy a state");
	close(in);
	close(out);
}

/* Check the state the files now hold, as crash point @p. */
static void check_state(struct replay *r, uint64_t p, const char *how)
{
	struct qcow2_check_result res = { 0 };
	struct qcow2_check_opts co = { .report = quiet_report, .opaque = &r->verbose };
	unsigned lost = 0, stale = 0;
	bool broken = false;
	char lazy[PATH_MAX + 8];
	const char *path = r->work[0];
	int rc;

	if (r->lazy) {
		struct reader rd;

		snprintf(lazy, sizeof(lazy), "%s.lazy", r->work[0]);
		copy_file(r->work[0], lazy);
		path = lazy;
		if (reader_open(path, 0, &rd))
			broken = true;
		else
			reader_close(&rd);
	}
	rc = qcow2_check_ex(path, &co, &res);
	if (rc < 0 || res.open_failed || res.corruptions || res.check_errors)
		broken = true;
	if (r->qemu_every && r->states % r->qemu_every == 0) {
		int q = run_qemu_check(path);

		r->qemu_checked++;
		if (q != 0 && q != 3) {
			broken = true;
			if (r->verbose)
				fprintf(stderr,
					"  crash point %" PRIu64 ": qemu-img check exit %d\n", p,
					q);
		}
	}
	/* reads are judged on a corrupt image too: what the guest would see */
	verify_reads(r, path, p, &lost, &stale, &broken);
	if (!broken && r->qemu_every && r->states % r->qemu_every == 0) {
		int64_t differ = qemu_compare(r, path);

		if (differ) {
			broken = true;
			fprintf(stderr,
				"  crash point %" PRIu64 ": QEMU reads %" PRId64
				" sectors otherwise (-1: convert failed)\n",
				p, differ);
		}
	}
	r->states++;
	r->corrupt += broken;
	r->lost += lost;
	r->stale += stale;
	if (broken || lost || stale) {
		r->failed_states++;
		if (r->verbose || r->failed_states <= 3)
			fprintf(stderr,
				"%s: crash point %" PRIu64 "/%" PRIu64
				" (%s): %s%u lost, %u stale\n",
				r->name, p, r->nr_ev, how, broken ? "corrupt, " : "", lost, stale);
	}
}

/* The volatile writes at @p: issued before it, not durable at it. */
static uint64_t volatile_at(const struct replay *r, uint64_t p, uint64_t *out)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < p; i++)
		if (is_data_write(r, i) && r->ev[i].durable >= p && r->ev[i].err == 0)
			out[n++] = i;
		else if (is_data_write(r, i) && r->ev[i].err)
			out[n++] = i;
	return n;
}

/* Build and check the states of crash point @p; returns how many. */
static uint64_t crash_point(struct replay *r, uint64_t p, uint64_t *vol, uint64_t budget)
{
	uint64_t nv = volatile_at(r, p, vol), made = 0;
	off_t sizes[AIO_REC_MAX_FILES];

	for (unsigned f = 0; f < r->nr_files; f++)
		sizes[f] = lseek(r->fd[f], 0, SEEK_END);
	/* 0: none; 1: all; then random subsets (half torn) and prefixes */
	for (uint64_t k = 0; made < budget; k++) {
		const char *how;

		if (k == 0) {
			how = "durable only";
		} else if (k == 1) {
			how = "all";
			for (uint64_t i = 0; i < nv; i++)
				apply(r, vol[i], true);
		} else if (k % 3 == 1 && k / 3 <= PREFIXES && nv > 1) {
			/* every third state from the fourth: a prefix, 1/7 .. 6/7 */
			uint64_t upto = nv * (k / 3) / (PREFIXES + 1);

			how = "prefix";
			for (uint64_t i = 0; i < upto; i++)
				apply(r, vol[i], true);
		} else {
			bool torn = rnd(r) % 2;

			how = torn ? "random, torn" : "random";
			for (uint64_t i = 0; i < nv; i++) {
				uint64_t len = r->ev[vol[i]].h->len;

				if (rnd(r) % 2)
					continue;
				if (!torn || len <= SECTOR) {
					apply(r, vol[i], true);
					continue;
				}
				for (uint64_t s = 0; s < len; s += SECTOR)
					if (rnd(r) % 2)
						apply_part(r, vol[i], s, s + SECTOR, true);
			}
		}
		check_state(r, p, how);
		undo_all(r, sizes);
		made++;
		if (nv == 0)
			break;
	}
	return made;
}

static void open_work(struct replay *r)
{
	for (unsigned f = 0; f < r->nr_files; f++) {
		char src[PATH_MAX];

		snprintf(src, sizeof(src), "%s.%u", r->log, f);
		snprintf(r->work[f], sizeof(r->work[f]), "%s.state.%u", r->log, f);
		copy_file(src, r->work[f]);
		r->fd[f] = open(r->work[f], O_RDWR | O_CLOEXEC);
		if (r->fd[f] < 0)
			die("cannot open a state");
	}
}

/*
 * Crash points: right before each fdatasync completes (the most writes in
 * flight) and spread over the whole log, in order, about @per states each.
 */
static void replay(struct replay *r)
{
	uint64_t *points = malloc((r->nr_ev + 2) * sizeof(uint64_t)), np = 0, nfs = 0;
	bool *forced = calloc(r->nr_ev + 2, sizeof(bool));
	uint64_t *vol = malloc((r->nr_ev + 1) * sizeof(uint64_t)), applied = 0, want, per = 4;
	bool in_prog = false;

	if (!points || !vol || !forced)
		die("out of memory");
	for (uint64_t i = 0; i < r->nr_ev; i++)
		if (r->ev[i].h->type == AIO_REC_DONE)
			nfs++;
	want = r->nr_states / per + 1;
	/* CRASH_POINT=P: that crash point alone, its volatile writes listed */
	if (getenv("CRASH_POINT")) {
		points[np++] = strtoull(getenv("CRASH_POINT"), NULL, 0);
		for (uint64_t i = 0, n = volatile_at(r, points[0], vol); i < n; i++)
			fprintf(stderr,
				"volatile %" PRIu64 " id %" PRIu64 " off 0x%" PRIx64 " len %" PRIu64
				" durable %" PRIu64 "\n",
				vol[i], r->ev[vol[i]].h->id, r->ev[vol[i]].h->offset,
				r->ev[vol[i]].h->len, r->ev[vol[i]].durable);
	}
	for (uint64_t i = 1; !getenv("CRASH_POINT") && i <= r->nr_ev; i++) {
		bool before_done = i < r->nr_ev && r->ev[i].h->type == AIO_REC_DONE;
		const struct aio_rec_hdr *h = r->ev[i - 1].h;

		if (h->type == AIO_REC_START)
			in_prog = r->every_in && h->data_len == strlen(r->every_in) &&
				  !memcmp(r->ev[i - 1].data, r->every_in, h->data_len);
		/* every point when the budget allows, else a sample; all of -P's */
		if (in_prog || (before_done && rnd(r) % (nfs / want + 1) == 0) ||
		    rnd(r) % (r->nr_ev / want + 1) == 0 || i == r->nr_ev) {
			forced[np] = in_prog;
			points[np++] = i;
		}
	}
	for (uint64_t k = 0; k < np && r->states < r->nr_states; k++) {
		uint64_t p = points[k], left = np - k;
		uint64_t budget = (r->nr_states - r->states + left - 1) / left;

		/* bring the durable part up to @p */
		for (uint64_t i = 0; i < r->nr_ev; i++)
			if (is_data_write(r, i) && r->ev[i].err == 0 && r->ev[i].durable < p &&
			    r->ev[i].durable >= applied)
				apply(r, i, false);
		applied = p;
		/* -P's points: random subsets enough to meet the bad orders */
		if (forced[k] && budget < FORCED_STATES)
			budget = FORCED_STATES;
		crash_point(r, p, vol, budget < 1 ? 1 : budget);
	}
	free(forced);
	free(points);
	free(vol);
}

int main(int argc, char **argv)
{
	struct replay r = { .nr_states = 200, .seed = 1, .name = "replay" };
	int c;

	while ((c = getopt(argc, argv, "n:s:q:LvP:w:")) != -1) {
		switch (c) {
		case 'n':
			r.nr_states = strtoull(optarg, NULL, 0);
			break;
		case 's':
			r.seed = strtoull(optarg, NULL, 0);
			break;
		case 'q':
			r.qemu_every = strtoull(optarg, NULL, 0);
			break;
		case 'L':
			r.lazy = true;
			break;
		case 'v':
			r.verbose = true;
			break;
		case 'P':
			r.every_in = optarg;
			break;
		case 'w':
			r.name = optarg;
			break;
		default:
			fprintf(stderr, "usage: crash-replay [-n STATES] [-s SEED] [-q EVERY] [-L] "
					"[-v] [-P PROG] [-w NAME] LOG\n");
			return 2;
		}
	}
	if (optind + 1 != argc)
		die("no log named");
	r.log = argv[optind];
	r.rng = r.seed * 0x9e3779b97f4a7c15ull | 1;
	log_set_level(r.verbose ? LOG_LEVEL_WARN : LOG_LEVEL_ERR);
	load_log(&r);
	if (!r.nr_files)
		die("the log names no file");
	link_events(&r);
	build_oracle(&r);
	read_init(&r);
	open_work(&r);
	replay(&r);
	printf("%s states %" PRIu64 " corruptions %" PRIu64 " lost %" PRIu64 " stale %" PRIu64
	       " qemu-checked %" PRIu64 "\n",
	       r.name, r.states, r.corrupt, r.lost, r.stale, r.qemu_checked);
	for (unsigned f = 0; f < r.nr_files; f++) {
		close(r.fd[f]);
		unlink(r.work[f]);
	}
	free(r.ev);
	free(r.sects);
	free(r.clusters);
	free(r.init);
	free(r.seen);
	buf_free(r.buf);
	free(r.undo);
	munmap(r.map, r.map_bytes ?: 1);
	return r.failed_states ? 1 : 0;
}
