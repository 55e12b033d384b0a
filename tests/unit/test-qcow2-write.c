// SPDX-License-Identifier: MIT
/*
 * The qcow2 write path against QEMU's tools: seeded random workloads of
 * writes, zero writes (with and without MAY_UNMAP), discards and flushes,
 * many in flight at once (never two on the same bytes, often in the same
 * cluster), applied through the driver to an image made by qemu-img and to
 * an in-memory model of the guest disk.  Afterwards `qemu-img compare`
 * finds the image equal to the model, `qemu-img check` finds it clean, and
 * the driver reads the model back.  Covers clusters of 512 B to 2 MiB,
 * extended L2, v2, refcount widths 1 and 64, a backing file, and writes
 * after an internal snapshot (shared clusters and L2 tables).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aio.h"
#include "buf.h"
#include "log.h"
#include "checked.h"
#include "qcow2/format.h"
#include "qcow2-test-util.h"
#include "qcow2-drv-test-util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define BATCH_MAX 16u

struct wl_config {
	const char *name;
	const char *opts; /* qemu-img create -o */
	uint64_t size;
	unsigned ops;
	bool backing;
	bool snapshot;
	unsigned open_flags;
};

struct wl_op {
	struct drv_req req;
	struct iovec iov[3];
	uint8_t *buf;
	bool done;
	int err;
};

struct wl {
	const struct wl_config *cfg;
	uint64_t rng;
	uint8_t *model;
	uint64_t size;
	uint64_t cluster;
	bool v2;
	bool has_backing;
	struct drv_image *top;
	struct drv_sync *sync;
	void *privs;
	size_t priv_bytes;
	struct wl_op ops[BATCH_MAX];
};

static void wl_done(struct drv_req *req, int err)
{
	struct wl_op *op = req->opaque;

	op->done = true;
	op->err = err;
}

/* ---- the model -------------------------------------------------------------------- */

/* The bytes a discard of [off, off + len) turns to zeros: whole clusters. */
static void model_discard(struct wl *w, uint64_t off, uint64_t len)
{
	uint64_t end = off + len, start = ALIGN_UP(off, w->cluster);

	end = end == w->size ? end : ALIGN_DOWN(end, w->cluster);
	if (start >= end || (w->v2 && w->has_backing))
		return;
	memset(w->model + start, 0, end - start);
}

/* ---- building a batch -------------------------------------------------------------------- */

static bool overlaps_batch(struct wl *w, unsigned n, uint64_t off, uint64_t len)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		const struct drv_req *r = &w->ops[i].req;

		if (off < r->offset + r->len && r->offset < off + len)
			return true;
	}
	return false;
}

/* A random range: usually small and unaligned within clusters, sometimes large. */
static void pick_range(struct wl *w, uint64_t *off, uint64_t *len)
{
	uint64_t r = qd_rand(&w->rng), max;

	if (r % 8 == 0)
		max = 4 * w->cluster + 256 * KiB;
	else
		max = MIN(w->cluster, 64 * KiB) + 4 * KiB;
	*len = 512 * (1 + qd_rand(&w->rng) % (max / 512));
	*len = MIN(*len, w->size);
	*off = 512 * (qd_rand(&w->rng) % ((w->size - *len) / 512 + 1));
}

/* Fill op @i with a random request not overlapping ops [0, i). */
static bool make_op(struct wl *w, unsigned i)
{
	struct wl_op *op = &w->ops[i];
	uint64_t kind = qd_rand(&w->rng) % 20, off, len, j;

	pick_range(w, &off, &len);
	if (overlaps_batch(w, i, off, len))
		return false;
	memset(&op->req, 0, sizeof(op->req));
	op->req.offset = off;
	op->req.len = len;
	op->done = false;
	if (kind < 13) {
		op->req.op = DRV_OP_WRITE;
		for (j = 0; j < len; j += 8) {
			uint64_t v = qd_rand(&w->rng);

			memcpy(op->buf + j, &v, MIN(8, len - j));
		}
		/* scattered: three pieces when it can */
		op->iov[0] = (struct iovec){ op->buf, len };
		op->req.iov = op->iov;
		op->req.iovcnt = 1;
		if (len >= 2048 && kind % 2) {
			uint64_t a = 512 * (1 + qd_rand(&w->rng) % (len / 1024));

			op->iov[0].iov_len = a;
			op->iov[1] = (struct iovec){ op->buf + a, 512 };
			op->iov[2] = (struct iovec){ op->buf + a + 512, len - a - 512 };
			op->req.iovcnt = 3;
		}
		memcpy(w->model + off, op->buf, len);
		if (kind == 12)
			op->req.flags = DRV_REQ_FUA;
	} else if (kind < 17) {
		op->req.op = DRV_OP_WRITE_ZEROES;
		op->req.flags = kind % 2 ? DRV_REQ_MAY_UNMAP : 0;
		memset(w->model + off, 0, len);
	} else if (kind < 19) {
		op->req.op = DRV_OP_DISCARD;
		model_discard(w, off, len);
	} else {
		op->req.op = DRV_OP_FLUSH;
		op->req.offset = op->req.len = 0;
	}
	return true;
}

static void run_batch(struct wl *w, unsigned n)
{
	struct drv_queue *q = drv_sync_queue(w->sync);
	unsigned i, left;

	for (i = 0; i < n; i++) {
		struct wl_op *op = &w->ops[i];

		op->req.q = q;
		op->req.done = wl_done;
		op->req.opaque = op;
		op->req.priv = (char *)w->privs + i * w->priv_bytes;
		drv_submit(w->top, &op->req);
	}
	for (;;) {
		int r;

		for (left = 0, i = 0; i < n; i++)
			left += !w->ops[i].done;
		if (!left)
			break;
		r = evloop_run_once(q->loop, -1);
		assert_true(r >= 0 || r == -EINTR);
	}
	for (i = 0; i < n; i++) {
		if (w->ops[i].err)
			fail_msg("%s: op %d at %" PRIu64 "+%" PRIu64 ": %s", w->cfg->name,
				 w->ops[i].req.op, w->ops[i].req.offset, w->ops[i].req.len,
				 strerror(-w->ops[i].err));
	}
}

/* ---- set-up and checks ------------------------------------------------------------------- */

static void make_image(struct wl *w, const char *img)
{
	const struct wl_config *c = w->cfg;
	char size[32];

	snprintf(size, sizeof(size), "%" PRIu64, c->size);
	unlink(img);
	if (c->backing) {
		const char *base = qt_path("wl-base.qcow2");
		const char *src = qt_path("wl-base.raw");

		qd_make_source(src, c->size - c->size / 8, w->rng); /* a short backing file */
		unlink(base);
		assert_int_equal(qt_run("qemu-img", "convert", "-O", "qcow2", src, base, NULL), 0);
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", c->opts,
					"-b", base, "-F", "qcow2", img, size, NULL),
				 0);
	} else {
		assert_int_equal(qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", c->opts,
					img, size, NULL),
				 0);
	}
	if (c->snapshot) {
		static const char *const cmds[] = { "write -P 0x5a 0 3M", "write -z 5M 1M",
						    "write -P 0xa5 7M 100k", NULL };

		qd_qemu_io(img, cmds);
		assert_int_equal(qt_run("qemu-img", "snapshot", "-c", "before", img, NULL), 0);
	}
}

static void load_model(struct wl *w, const char *img)
{
	const char *raw = qt_path("wl-model.raw");
	uint8_t *m;

	assert_int_equal(qt_run("qemu-img", "convert", "-O", "raw", img, raw, NULL), 0);
	w->size = qt_file_size(raw);
	m = qt_read(raw, 0, w->size);
	w->model = m;
}

static void check_image(struct wl *w, const char *img)
{
	const char *raw = qt_path("wl-model.raw");
	char *out = NULL;
	int rc;

	qt_write(raw, 0, w->model, w->size); /* load_model made it, of this size */
	rc = qt_run_out(&out, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, raw, NULL);
	if (rc != 0)
		fail_msg("%s: qemu-img compare: exit %d: %s", w->cfg->name, rc, out);
	free(out);
	out = NULL;
	rc = qt_run_out(&out, "qemu-img", "check", img, NULL);
	if (rc != 0)
		fail_msg("%s: qemu-img check: exit %d:\n%s", w->cfg->name, rc, out);
	free(out);
}

/* Read the whole disk back through the driver and compare with the model. */
static void read_back(struct wl *w, const char *img)
{
	char spec[PATH_MAX + 8];
	struct drv_image *top;
	struct drv_sync *s;
	uint64_t off, chunk = 1 * MiB;
	uint8_t *buf = malloc(chunk);

	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, DRV_OPEN_RDONLY, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	for (off = 0; off < w->size; off += chunk) {
		uint64_t n = MIN(chunk, w->size - off);

		assert_int_equal(drv_sync_rw(s, DRV_OP_READ, off, buf, n), 0);
		if (memcmp(buf, w->model + off, n))
			fail_msg("%s: read back differs in [%" PRIu64 ", +%" PRIu64 ")",
				 w->cfg->name, off, n);
	}
	drv_sync_free(s);
	drv_image_close(top);
	free(buf);
}

static void run_workload(const struct wl_config *c, uint64_t seed)
{
	const char *img = qt_path("wl.qcow2");
	struct wl w = { .cfg = c, .rng = seed | 1 };
	char spec[PATH_MAX + 8];
	unsigned done = 0, i;

	make_image(&w, img);
	load_model(&w, img);
	w.has_backing = c->backing;
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, c->open_flags, &w.top), 0);
	{
		json_t *info = qt_info(img);

		w.cluster = (uint64_t)json_integer_value(qt_json_get(info, "cluster-size"));
		w.v2 = strcmp(json_string_value(qt_json_get(info, "format-specific/data/compat")),
			      "0.10") == 0;
		json_decref(info);
	}
	assert_int_equal(drv_sync_new(w.top, NULL, &w.sync), 0);
	w.priv_bytes = drv_chain_req_priv_bytes(w.top);
	w.privs = calloc(BATCH_MAX, w.priv_bytes);
	for (i = 0; i < BATCH_MAX; i++)
		w.ops[i].buf = buf_alloc(4 * w.cluster + 512 * KiB, 4096);
	while (done < c->ops) {
		unsigned n = 1 + (unsigned)(qd_rand(&w.rng) % BATCH_MAX), k = 0, tries;

		for (tries = 0; k < n && tries < 4 * n; tries++)
			k += make_op(&w, k);
		run_batch(&w, k);
		done += k;
	}
	assert_int_equal(drv_sync_flush(w.sync), 0);
	drv_sync_free(w.sync);
	drv_image_close(w.top);
	check_image(&w, img);
	read_back(&w, img);
	for (i = 0; i < BATCH_MAX; i++)
		buf_free(w.ops[i].buf);
	free(w.privs);
	free(w.model);
}

/* ---- the configurations -------------------------------------------------------------------- */

static const struct wl_config configs[] = {
	{ "64k", "cluster_size=65536", 64 * MiB, 3000, false, false, 0 },
	{ "4k-buffered", "cluster_size=4096", 32 * MiB, 3000, false, false, DRV_OPEN_BUFFERED },
	{ "512", "cluster_size=512", 4 * MiB, 2000, false, false, DRV_OPEN_BUFFERED },
	{ "2m", "cluster_size=2M", 64 * MiB, 600, false, false, DRV_OPEN_BUFFERED },
	{ "64k-backing", "cluster_size=65536", 48 * MiB, 2000, true, false, 0 },
	{ "extl2-64k", "cluster_size=65536,extended_l2=on", 48 * MiB, 3000, false, false, 0 },
	{ "extl2-32k-backing", "cluster_size=32768,extended_l2=on", 32 * MiB, 2000, true, false,
	  DRV_OPEN_BUFFERED },
	{ "v2", "compat=0.10,cluster_size=4096", 16 * MiB, 2000, false, false, DRV_OPEN_BUFFERED },
	{ "v2-backing", "compat=0.10", 16 * MiB, 1500, true, false, DRV_OPEN_BUFFERED },
	{ "refcount1", "refcount_bits=1,cluster_size=4096", 16 * MiB, 2000, false, false,
	  DRV_OPEN_BUFFERED },
	{ "refcount64", "refcount_bits=64,cluster_size=1024", 8 * MiB, 2000, false, false,
	  DRV_OPEN_BUFFERED },
	{ "snapshot", "cluster_size=65536", 16 * MiB, 2000, false, true, 0 },
	{ "snapshot-extl2", "cluster_size=65536,extended_l2=on", 16 * MiB, 1500, true, true,
	  DRV_OPEN_BUFFERED },
	{ "lazy", "lazy_refcounts=on,cluster_size=16384", 16 * MiB, 2000, false, false,
	  DRV_OPEN_BUFFERED },
};

static void test_config(void **state)
{
	const struct wl_config *c = *state;
	struct wl_config scaled = *c;
	const char *vg = getenv("QTAP_VALGRIND");

	QT_REQUIRE_QEMU();
	/* under valgrind (50 times slower) a tenth of the load still covers every path */
	if (vg && strcmp(vg, "1") == 0)
		scaled.ops = c->ops / 10;
	run_workload(&scaled, 0x5eed0000u + (uint64_t)(c - configs));
}

/* Compressed writes (convert -c), deflate and zstd, then overwrites of them. */
static void compressed_case(const char *opts)
{
	const char *img = qt_path("wlc.qcow2");
	uint64_t size = 4 * MiB, cb = 64 * KiB, off, rng = 99, n_comp = 0;
	uint8_t *model = calloc(1, size), *buf = buf_alloc(cb, 4096);
	char spec[PATH_MAX + 8], *out = NULL;
	struct drv_image *top;
	struct drv_sync *s;
	json_t *j;

	unlink(img);
	assert_int_equal(
		qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, "4M", NULL), 0);
	snprintf(spec, sizeof(spec), "qcow2:%s", img);
	assert_int_equal(drv_chain_open(spec, 0, &top), 0);
	assert_int_equal(drv_sync_new(top, NULL, &s), 0);
	assert_int_equal(top->compress_bytes, cb);
	for (off = 0; off < size; off += cb) {
		struct iovec iov = { buf, cb };
		struct drv_req req = { .op = DRV_OP_WRITE,
				       .flags = DRV_REQ_COMPRESSED,
				       .offset = off,
				       .len = cb,
				       .iov = &iov,
				       .iovcnt = 1 };
		uint64_t i, kind = qd_rand(&rng) % 3;

		for (i = 0; i < cb; i += 8) {
			uint64_t v = kind == 0 ? qd_rand(&rng) : (off + i / 512) * 0x0101010101ull;

			memcpy(buf + i, &v, 8);
		}
		n_comp += kind != 0;
		memcpy(model + off, buf, cb);
		assert_int_equal(drv_sync_req(s, &req), 0);
	}
	/* partial overwrites of compressed clusters: copy-on-write from them */
	for (off = 3000; off < size; off += 5 * cb + 4096) {
		memset(model + off - off % 512, 0x77, 4096);
		memset(buf, 0x77, 4096);
		assert_int_equal(drv_sync_rw(s, DRV_OP_WRITE, off - off % 512, buf, 4096), 0);
	}
	drv_sync_free(s);
	drv_image_close(top);
	assert_int_equal(qt_run_out(&out, "qemu-img", "check", "--output=json", img, NULL), 0);
	j = json_loads(out, 0, NULL);
	assert_true(json_integer_value(json_object_get(j, "compressed-clusters")) > 0);
	assert_true(json_integer_value(json_object_get(j, "compressed-clusters")) <= (int)n_comp);
	json_decref(j);
	free(out);
	{
		const char *raw = qt_path("wlc.raw");
		int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		assert_true(fd >= 0 && write(fd, model, size) == (ssize_t)size);
		close(fd);
		assert_int_equal(qt_run("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw",
					img, raw, NULL),
				 0);
	}
	buf_free(buf);
	free(model);
}

static void test_compressed(void **state)
{
	QT_REQUIRE_QEMU();
	compressed_case("compression_type=zlib");
	compressed_case("compression_type=zstd");
	compressed_case("compression_type=zstd,extended_l2=on");
}

int main(void)
{
	struct CMUnitTest tests[ARRAY_SIZE(configs) + 1];
	unsigned i;

	log_init("test-qcow2-write");
	for (i = 0; i < ARRAY_SIZE(configs); i++) {
		tests[i] = (struct CMUnitTest){ .name = configs[i].name,
						.test_func = test_config,
						.initial_state = (void *)&configs[i] };
	}
	tests[ARRAY_SIZE(configs)] =
		(struct CMUnitTest){ .name = "compressed", .test_func = test_compressed };
	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
