// SPDX-License-Identifier: MIT
/*
 * Persistent dirty bitmaps kept up to date by the qcow2 driver, checked
 * with QEMU's own tools: images get bitmaps from `qemu-img bitmap --add`
 * (64 KiB and 512 KiB granularity, one disabled with content), data from
 * qemu-io, then writes, zero writes and discards through the driver.  After
 * close, `qemu-img check` is clean, `qemu-img info` shows the bitmaps
 * consistent, and the dirty map QEMU exports over NBD (qemu-nbd -B, read
 * with nbdinfo --map=qemu:dirty-bitmap:NAME) is exactly the ranges written
 * at the bitmap's granularity; the disabled bitmap does not change.
 *
 * Also: a writer killed mid-way leaves its bitmaps in use (QEMU refuses to
 * export them), a bitmap already in use is left alone, a bitmap with a bad
 * table is marked in use instead of going stale, a read-only open changes
 * nothing, and four queue threads setting bits while flushes store them
 * lose no bit (built with TSan by check-tsan, TSAN_TESTS=qcow2-bitmaps).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aio.h"
#include "buf.h"
#include "checked.h"
#include "log.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define SIZE (16 * MiB)
#define THREADS 4u
#define DEPTH 8u
#define THREAD_OPS 600u

/* A scratch path that stays valid (qt_path() reuses a ring of 8 buffers). */
static const char *img_path(const char *name)
{
	char *p = strdup(qt_path(name));

	assert_non_null(p);
	return p;
}

/* ---- expected dirty sets ------------------------------------------------------------- */

/* A bitmap's expected bits, one byte per granule. */
struct model {
	const char *name;
	uint64_t gran;
	uint64_t n;
	uint8_t *dirty;
};

static void model_init(struct model *m, const char *name, uint64_t gran)
{
	m->name = name;
	m->gran = gran;
	m->n = div_round_up_u64(SIZE, gran);
	m->dirty = calloc(m->n, 1);
	assert_non_null(m->dirty);
}

static void model_mark(struct model *m, uint64_t off, uint64_t len)
{
	uint64_t g;

	for (g = off / m->gran; g < m->n && g * m->gran < off + len; g++)
		m->dirty[g] = 1;
}

static bool have_nbd_tools(void)
{
	return qt_run("qemu-nbd", "--version", NULL) == 0 &&
	       qt_run("nbdinfo", "--version", NULL) == 0;
}

#define REQUIRE_TOOLS()                                                                            \
	do {                                                                                       \
		QT_REQUIRE_QEMU();                                                                 \
		if (!have_nbd_tools()) {                                                           \
			print_message("SKIP: qemu-nbd or nbdinfo not installed\n");                \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* Parse nbdinfo --map lines ("offset length type description") into @dirty. */
static void parse_map(const char *out, uint64_t gran, uint64_t n, uint8_t *dirty)
{
	const char *line = out;

	while (line && *line) {
		uint64_t off, len, g;
		unsigned type;

		if (sscanf(line, "%" SCNu64 " %" SCNu64 " %u", &off, &len, &type) == 3 &&
		    (type & 1)) {
			for (g = off / gran; g < n && g * gran < off + len; g++)
				dirty[g] = 1;
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
}

/* Stop the qemu-nbd whose pid file is @pidfile, if it is still there. */
static void stop_nbd(const char *pidfile)
{
	char *s = NULL;
	int fd = open(pidfile, O_RDONLY);
	long pid;

	if (fd < 0)
		return;
	s = qt_slurp(fd);
	close(fd);
	pid = s ? strtol(s, NULL, 10) : 0;
	if (pid > 0 && kill((pid_t)pid, SIGTERM) == 0) {
		/* its image locks go only when it is gone: wait (10 s at most) */
		for (int i = 0; i < 1000 && kill((pid_t)pid, 0) == 0; i++)
			usleep(10000);
	}
	free(s);
	unlink(pidfile);
}

/*
 * The dirty map QEMU exports for bitmap @name of @img, one byte per
 * granule of @gran; NULL when qemu-nbd refuses to export it.
 */
static uint8_t *qemu_map(const char *img, const char *name, uint64_t gran)
{
	static unsigned seq;
	uint64_t n = div_round_up_u64(SIZE, gran);
	char uri[PATH_MAX + 32], ctx[128], sock[PATH_MAX], pidfile[PATH_MAX];
	uint8_t *dirty = calloc(n, 1);
	char *out = NULL;
	int rc;

	assert_non_null(dirty);
	/* a fresh name each time: a previous qemu-nbd removes its socket when it exits */
	snprintf(ctx, sizeof(ctx), "nbd-%u.sock", seq);
	snprintf(sock, sizeof(sock), "%s", qt_path(ctx));
	snprintf(ctx, sizeof(ctx), "nbd-%u.pid", seq++);
	snprintf(pidfile, sizeof(pidfile), "%s", qt_path(ctx));
	if (qt_run("qemu-nbd", "--fork", "--read-only", "-f", "qcow2", "-B", name, "-k", sock,
		   "--pid-file", pidfile, img, NULL) != 0) {
		free(dirty);
		return NULL;
	}
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	snprintf(ctx, sizeof(ctx), "--map=qemu:dirty-bitmap:%s", name);
	rc = qt_run_out(&out, "nbdinfo", ctx, uri, NULL);
	stop_nbd(pidfile);
	if (rc != 0)
		fail_msg("nbdinfo %s %s failed (%d)", ctx, uri, rc);
	parse_map(out, gran, n, dirty);
	free(out);
	return dirty;
}

static void expect_map(const char *img, const struct model *m)
{
	uint8_t *got = qemu_map(img, m->name, m->gran);
	uint64_t g;

	if (!got)
		fail_msg("%s: qemu-nbd refused to export bitmap %s", img, m->name);
	for (g = 0; g < m->n; g++) {
		if (got[g] != m->dirty[g])
			fail_msg("%s: bitmap %s: granule %" PRIu64 " (offset %" PRIu64
				 ") is %s, expected %s",
				 img, m->name, g, g * m->gran, got[g] ? "dirty" : "clean",
				 m->dirty[g] ? "dirty" : "clean");
	}
	free(got);
}

/* ---- what qemu-img says -------------------------------------------------------------- */

/* Whether bitmap @name of @img has flag @flag ("in-use", "auto"). */
static bool has_flag(const char *img, const char *name, const char *flag)
{
	json_t *info = qt_info(img), *bms, *bm, *f;
	bool found = false, has = false;
	size_t i, j;

	assert_non_null(info);
	bms = qt_json_get(info, "format-specific/data/bitmaps");
	json_array_foreach(bms, i, bm)
	{
		if (strcmp(json_string_value(json_object_get(bm, "name")), name) != 0)
			continue;
		found = true;
		json_array_foreach(json_object_get(bm, "flags"), j, f)
		{
			has |= strcmp(json_string_value(f), flag) == 0;
		}
	}
	json_decref(info);
	if (!found)
		fail_msg("%s: qemu-img info lists no bitmap %s", img, name);
	return has;
}

static void expect_clean_check(const char *img)
{
	char *out = NULL;

	if (qt_run_out(&out, "qemu-img", "check", img, NULL) != 0)
		fail_msg("qemu-img check %s:\n%s", img, out);
	free(out);
}

/* The directory entry of bitmap @name, as the file holds it now. */
static struct qcow2_bitmap dir_entry(const char *img, const char *name)
{
	uint8_t *c0 = qt_read(img, 0, 64 * KiB), *dir;
	struct qcow2_bitmap *bms = NULL, found = { 0 };
	struct qcow2_header h;
	unsigned i;

	assert_int_equal(qcow2_header_parse(c0, 64 * KiB, img, 0, &h), 0);
	assert_true(h.bitmaps.present);
	dir = qt_read(img, h.bitmaps.dir_offset, h.bitmaps.dir_bytes);
	assert_int_equal(qcow2_bitmap_dir_parse(dir, h.bitmaps.dir_bytes, &h, img, &bms), 0);
	for (i = 0; i < h.bitmaps.nb_bitmaps; i++) {
		if (strcmp(bms[i].name, name) == 0) {
			found = bms[i];
			found.name = NULL;
			found.extra_data = NULL;
		}
	}
	qcow2_bitmap_dir_free(bms, h.bitmaps.nb_bitmaps);
	qcow2_header_fini(&h);
	free(dir);
	free(c0);
	assert_int_not_equal(found.table_offset, 0);
	return found;
}

/* ---- making images ----------------------------------------------------------------- */

static void qemu_img(const char *a, const char *b, const char *c, const char *d, const char *e,
		     const char *f)
{
	if (qt_run("qemu-img", a, b, c, d, e, f, NULL) != 0)
		fail_msg("qemu-img %s %s %s %s %s %s failed", a, b, c, d ? d : "", e ? e : "",
			 f ? f : "");
}

/*
 * A 16 MiB image with clusters of @cluster bytes and three bitmaps: "fine"
 * (granularity @g_fine), "coarse" (@g_coarse) and "frozen" (@g_fine, then
 * disabled), all three dirty where qemu-io wrote first.
 */
static void make_image(const char *img, const char *cluster, const char *g_fine,
		       const char *g_coarse, struct model *m)
{
	static const char *const cmds[] = { "write -P 1 0 4k", "write -P 2 4M 64k", NULL };
	char opt[64];
	unsigned i;

	snprintf(opt, sizeof(opt), "cluster_size=%s", cluster);
	assert_int_equal(
		qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opt, img, "16M", NULL), 0);
	qemu_img("bitmap", "--add", "-g", g_fine, img, "fine");
	qemu_img("bitmap", "--add", "-g", g_coarse, img, "coarse");
	qemu_img("bitmap", "--add", "-g", g_fine, img, "frozen");
	qd_qemu_io(img, cmds);
	qemu_img("bitmap", "--disable", img, "frozen", NULL, NULL);
	for (i = 0; i < 3; i++) {
		model_mark(&m[i], 0, 4 * KiB);
		model_mark(&m[i], 4 * MiB, 64 * KiB);
	}
}

/* ---- requests through the driver ------------------------------------------------------ */

enum op_kind { OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH };

struct op {
	enum op_kind kind;
	uint64_t off;
	uint64_t len;
};

static int do_op(struct drv_sync *s, const struct op *o)
{
	uint8_t *buf;
	int err;

	switch (o->kind) {
	case OP_ZERO:
		return drv_sync_write_zeroes(s, o->off, o->len, 0);
	case OP_DISCARD:
		return drv_sync_discard(s, o->off, o->len);
	case OP_FLUSH:
		return drv_sync_flush(s);
	default:
		buf = malloc(o->len);
		assert_non_null(buf);
		memset(buf, 0x5a, o->len);
		err = drv_sync_rw(s, DRV_OP_WRITE, o->off, buf, o->len);
		free(buf);
		return err;
	}
}

/* Open @img read-write, apply @ops (and to the models of enabled bitmaps), close. */
static void session(const char *img, const struct op *ops, size_t nr, struct model *m,
		    unsigned nr_models)
{
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	char spec[PATH_MAX + 8];
	size_t i;
	unsigned k;

	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, 0, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	for (i = 0; i < nr; i++) {
		assert_int_equal(do_op(s, &ops[i]), 0);
		for (k = 0; k < nr_models && ops[i].kind != OP_FLUSH; k++)
			model_mark(&m[k], ops[i].off, ops[i].len);
	}
	drv_sync_free(s);
	drv_image_close(top);
}

static const struct op session1[] = {
	{ OP_WRITE, 1 * MiB + 512, 3 * KiB },
	{ OP_ZERO, 3 * MiB, 128 * KiB },
	{ OP_ZERO, 2 * MiB + 1024, 5 * KiB },
	{ OP_DISCARD, 5 * MiB, 64 * KiB },
	{ OP_FLUSH, 0, 0 },
	{ OP_WRITE, 1 * MiB + 70 * KiB, 512 },
	{ OP_WRITE, 6 * MiB - 512, 8 * KiB },
	{ OP_WRITE, SIZE - 512, 512 },
	{ OP_FLUSH, 0, 0 },
	{ OP_WRITE, 6 * MiB + 300 * KiB, 4 * KiB },
};

static const struct op session2[] = {
	{ OP_WRITE, 7 * MiB, 4 * KiB },	   { OP_DISCARD, 0, 64 * KiB },	  { OP_FLUSH, 0, 0 },
	{ OP_WRITE, 1 * MiB + 1536, 512 }, { OP_ZERO, 9 * MiB, 1 * MiB },
};

static void expect_consistent(const char *img, struct model *m)
{
	unsigned k;

	expect_clean_check(img);
	for (k = 0; k < 3; k++)
		assert_false(has_flag(img, m[k].name, "in-use"));
	assert_true(has_flag(img, "fine", "auto"));
	assert_true(has_flag(img, "coarse", "auto"));
	assert_false(has_flag(img, "frozen", "auto"));
	for (k = 0; k < 3; k++)
		expect_map(img, &m[k]);
}

static void run_ranges(const char *name, const char *cluster, const char *g_fine, uint64_t fine,
		       const char *g_coarse, uint64_t coarse)
{
	const char *img = img_path(name);
	struct model m[3];
	unsigned k;

	model_init(&m[0], "fine", fine);
	model_init(&m[1], "coarse", coarse);
	model_init(&m[2], "frozen", fine);
	make_image(img, cluster, g_fine, g_coarse, m);
	/* "frozen" (m[2]) is disabled: only the first two models follow the writes */
	session(img, session1, ARRAY_SIZE(session1), m, 2);
	expect_consistent(img, m);
	/* a second session works on bitmaps the first one stored */
	session(img, session2, ARRAY_SIZE(session2), m, 2);
	expect_consistent(img, m);
	for (k = 0; k < 3; k++)
		free(m[k].dirty);
	free((void *)img);
}

static void test_ranges_64k(void **state)
{
	REQUIRE_TOOLS();
	run_ranges("r64k.qcow2", "65536", "64k", 64 * KiB, "512k", 512 * KiB);
}

/* 512-byte clusters: bitmaps of several data clusters, some left all zeros. */
static void test_ranges_small_clusters(void **state)
{
	REQUIRE_TOOLS();
	run_ranges("r512.qcow2", "512", "512", 512, "4k", 4 * KiB);
}

/* ---- a writer killed mid-way ----------------------------------------------------------- */

static void child_writer(const char *img, int fd)
{
	static const struct op ops[] = {
		{ OP_WRITE, 1 * MiB, 4 * KiB },
		{ OP_FLUSH, 0, 0 },
		{ OP_WRITE, 2 * MiB, 4 * KiB },
	};
	struct drv_image *top = NULL;
	struct drv_sync *s = NULL;
	char spec[PATH_MAX + 8];
	size_t i;

	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	if (drv_chain_open(spec, 0, &top) || drv_sync_new(top, NULL, &s))
		_exit(1);
	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		if (do_op(s, &ops[i]))
			_exit(1);
	}
	if (write(fd, "w", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static void test_killed_writer(void **state)
{
	const char *img = img_path("killed.qcow2");
	struct model m[3];
	struct qt_capture cap;
	int fds[2], status;
	char c = 0, *log;
	pid_t pid;
	unsigned k;

	REQUIRE_TOOLS();
	model_init(&m[0], "fine", 64 * KiB);
	model_init(&m[1], "coarse", 512 * KiB);
	model_init(&m[2], "frozen", 64 * KiB);
	make_image(img, "65536", "64k", "512k", m);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child_writer(img, fds[1]);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	close(fds[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	/* inconsistent, never consistent but stale */
	assert_true(has_flag(img, "fine", "in-use"));
	assert_true(has_flag(img, "coarse", "in-use"));
	assert_null(qemu_map(img, "fine", 64 * KiB));
	/* the disabled bitmap never changed, and never stopped being valid */
	assert_false(has_flag(img, "frozen", "in-use"));
	expect_map(img, &m[2]);
	/* a crash may leak clusters, never corrupt: check says 0 or 3 */
	status = qt_run("qemu-img", "check", img, NULL);
	assert_true(status == 0 || status == 3);
	/* opened again: the in-use bitmaps are named, and stay in use */
	qt_capture_begin(&cap);
	session(img, session2, ARRAY_SIZE(session2), m, 0);
	log = qt_capture_end(&cap);
	assert_non_null(strstr(log, "bitmap \"fine\" is in use"));
	assert_non_null(strstr(log, "bitmap \"coarse\" is in use"));
	free(log);
	assert_true(has_flag(img, "fine", "in-use"));
	assert_true(has_flag(img, "coarse", "in-use"));
	expect_map(img, &m[2]);
	for (k = 0; k < 3; k++)
		free(m[k].dirty);
	free((void *)img);
}

/* ---- bitmaps already in use, and broken ones ------------------------------------------- */

static void test_in_use_left_alone(void **state)
{
	static const char *const crash[] = { "write 0 4k", "sigraise 9", NULL };
	const char *const argv[] = { "qemu-io", "-f", "qcow2",	"-c",
				     crash[0],	"-c", crash[1], img_path("inuse.qcow2"),
				     NULL };
	const char *img = argv[7];
	struct qcow2_bitmap before, after;
	struct model good;
	struct qt_capture cap;
	char *log;

	REQUIRE_TOOLS();
	assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", img, "16M", NULL), 0);
	qemu_img("bitmap", "--add", img, "stale", NULL, NULL);
	qt_runv(argv, NULL); /* killed by its own signal, leaving "stale" in use */
	assert_true(has_flag(img, "stale", "in-use"));
	qemu_img("bitmap", "--add", img, "good", NULL, NULL);
	before = dir_entry(img, "stale");
	model_init(&good, "good", 64 * KiB);
	qt_capture_begin(&cap);
	session(img, session1, ARRAY_SIZE(session1), &good, 1);
	log = qt_capture_end(&cap);
	assert_non_null(strstr(log, "bitmap \"stale\" is in use"));
	free(log);
	after = dir_entry(img, "stale");
	assert_int_equal(after.flags, before.flags);
	assert_int_equal(after.table_offset, before.table_offset);
	assert_int_equal(after.table_size, before.table_size);
	assert_true(has_flag(img, "stale", "in-use"));
	assert_false(has_flag(img, "good", "in-use"));
	expect_clean_check(img);
	expect_map(img, &good);
	free(good.dirty);
	free((void *)img);
}

/* A table entry with a reserved bit: marked in use (inconsistent), not left stale. */
static void test_bad_table_marked_in_use(void **state)
{
	const char *img = img_path("badtable.qcow2");
	struct qcow2_bitmap e;
	struct model m[3];
	struct qt_capture cap;
	uint8_t *be;
	char *log;
	unsigned k;

	REQUIRE_TOOLS();
	model_init(&m[0], "fine", 64 * KiB);
	model_init(&m[1], "coarse", 512 * KiB);
	model_init(&m[2], "frozen", 64 * KiB);
	make_image(img, "65536", "64k", "512k", m);
	e = dir_entry(img, "fine");
	be = qt_read(img, e.table_offset, 8);
	be[7] |= 0x02;
	qt_write(img, e.table_offset, be, 8);
	free(be);
	qt_capture_begin(&cap);
	session(img, session1, ARRAY_SIZE(session1), &m[1], 1);
	log = qt_capture_end(&cap);
	assert_non_null(strstr(log, "bitmap \"fine\": table entry 0"));
	free(log);
	assert_true(has_flag(img, "fine", "in-use"));
	assert_false(has_flag(img, "coarse", "in-use"));
	expect_map(img, &m[1]);
	expect_map(img, &m[2]);
	for (k = 0; k < 3; k++)
		free(m[k].dirty);
	free((void *)img);
}

static void test_read_only_changes_nothing(void **state)
{
	const char *img = img_path("ro.qcow2");
	struct drv_image *top = NULL;
	char spec[PATH_MAX + 8];
	struct model m[3];
	uint8_t *a, *b;
	uint64_t n;
	unsigned k;

	REQUIRE_TOOLS();
	model_init(&m[0], "fine", 64 * KiB);
	model_init(&m[1], "coarse", 512 * KiB);
	model_init(&m[2], "frozen", 64 * KiB);
	make_image(img, "65536", "64k", "512k", m);
	n = qt_file_size(img);
	a = qt_read(img, 0, n);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, DRV_OPEN_RDONLY, &top), 0);
	drv_image_close(top);
	b = qt_read(img, 0, n);
	assert_int_equal(qt_file_size(img), n);
	assert_memory_equal(a, b, n);
	free(a);
	free(b);
	for (k = 0; k < 3; k++)
		free(m[k].dirty);
	free((void *)img);
}

/* ---- four queue threads ------------------------------------------------------------------ */

struct th {
	pthread_t tid;
	struct drv_image *top;
	struct drv_queue *q;
	uint64_t rng;
	struct op log[THREAD_OPS];
	unsigned nr_log;
	unsigned failures;
	struct {
		struct drv_req req;
		struct iovec iov;
		uint8_t *buf;
		bool busy;
	} r[DEPTH];
};

static void th_done(struct drv_req *req, int err)
{
	struct th *t = req->opaque;
	unsigned i;

	for (i = 0; i < DEPTH; i++) {
		if (&t->r[i].req == req)
			t->r[i].busy = false;
	}
	t->failures += err != 0;
}

/* A write, zero write, whole-cluster discard or flush anywhere: bits overlap on purpose. */
static void th_issue(struct th *t, unsigned i)
{
	struct drv_req *req = &t->r[i].req;
	uint64_t kind = qd_rand(&t->rng) % 20, len, off;
	void *priv = req->priv;

	memset(req, 0, sizeof(*req));
	req->priv = priv;
	len = 512 * (1 + qd_rand(&t->rng) % 256);
	off = 512 * (qd_rand(&t->rng) % ((SIZE - len) / 512));
	req->op = kind < 15 ? DRV_OP_WRITE : kind < 17 ? DRV_OP_WRITE_ZEROES : DRV_OP_FLUSH;
	if (kind == 17) {
		req->op = DRV_OP_DISCARD;
		off = ALIGN_DOWN(off, 64 * KiB);
		len = 64 * KiB;
	}
	if (req->op != DRV_OP_FLUSH) {
		req->offset = off;
		req->len = len;
		t->log[t->nr_log++] = (struct op){ OP_WRITE, off, len };
	}
	t->r[i].iov = (struct iovec){ .iov_base = t->r[i].buf, .iov_len = len };
	req->iov = req->op == DRV_OP_WRITE ? &t->r[i].iov : NULL;
	req->iovcnt = req->iov ? 1 : 0;
	req->q = t->q;
	req->done = th_done;
	req->opaque = t;
	t->r[i].busy = true;
	drv_submit(t->top, req);
}

static void *th_main(void *arg)
{
	struct th *t = arg;
	unsigned issued = 0, i, busy;

	do {
		busy = 0;
		for (i = 0; i < DEPTH; i++) {
			if (!t->r[i].busy && issued < THREAD_OPS) {
				issued++;
				th_issue(t, i);
			}
			busy += t->r[i].busy;
		}
		if (busy)
			evloop_run_once(t->q->loop, -1);
	} while (busy || issued < THREAD_OPS);
	return NULL;
}

static void run_threads(struct drv_image *top, struct th *t)
{
	size_t priv_bytes = drv_chain_req_priv_bytes(top);
	struct drv_queue queues[THREADS];
	unsigned i, j;

	for (i = 0; i < THREADS; i++) {
		queues[i].index = i;
		assert_int_equal(evloop_new(&queues[i].loop), 0);
		assert_int_equal(aio_ctx_new(queues[i].loop, NULL, &queues[i].aio), 0);
	}
	assert_int_equal(drv_queues_init(top, queues, THREADS), 0);
	for (i = 0; i < THREADS; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].top = top;
		t[i].q = &queues[i];
		t[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
		for (j = 0; j < DEPTH; j++) {
			t[i].r[j].buf = buf_alloc(128 * KiB, 4096);
			memset(t[i].r[j].buf, 0x33 + i, 128 * KiB);
			t[i].r[j].req.priv = calloc(1, priv_bytes);
		}
	}
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i].tid, NULL, th_main, &t[i]), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i].tid, NULL);
	drv_queues_fini(top);
	for (i = 0; i < THREADS; i++) {
		for (j = 0; j < DEPTH; j++) {
			buf_free(t[i].r[j].buf);
			free(t[i].r[j].req.priv);
		}
		aio_ctx_free(queues[i].aio);
		evloop_free(queues[i].loop);
	}
}

static void test_threads(void **state)
{
	const char *img = img_path("threads.qcow2");
	struct drv_image *top = NULL;
	char spec[PATH_MAX + 8];
	struct model m[3];
	struct th *t = calloc(THREADS, sizeof(*t));
	unsigned i, j, k;

	REQUIRE_TOOLS();
	assert_non_null(t);
	model_init(&m[0], "fine", 64 * KiB);
	model_init(&m[1], "coarse", 512 * KiB);
	model_init(&m[2], "frozen", 64 * KiB);
	make_image(img, "65536", "64k", "512k", m);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, 0, &top), 0);
	run_threads(top, t);
	drv_image_close(top);
	for (i = 0; i < THREADS; i++) {
		assert_int_equal(t[i].failures, 0);
		for (j = 0; j < t[i].nr_log; j++)
			for (k = 0; k < 2; k++)
				model_mark(&m[k], t[i].log[j].off, t[i].log[j].len);
	}
	expect_consistent(img, m);
	for (k = 0; k < 3; k++)
		free(m[k].dirty);
	free(t);
	free((void *)img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ranges_64k),
		cmocka_unit_test(test_ranges_small_clusters),
		cmocka_unit_test(test_killed_writer),
		cmocka_unit_test(test_in_use_left_alone),
		cmocka_unit_test(test_bad_table_marked_in_use),
		cmocka_unit_test(test_read_only_changes_nothing),
		cmocka_unit_test(test_threads),
	};

	log_init("test-qcow2-bitmaps");
	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
