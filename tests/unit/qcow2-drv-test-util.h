/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the qcow2 driver tests: making images with qemu-img and
 * qemu-io, opening a chain whose top (and maybe backing images) use the
 * qcow2 driver before it is registered, and driving requests on a drv_sync
 * queue against any image of that chain.
 *
 * Included after qcow2-test-util.h, by one test file each.
 */
#ifndef QTAP_QCOW2_DRV_TEST_UTIL_H
#define QTAP_QCOW2_DRV_TEST_UTIL_H

#include "driver.h"
#include "evloop.h"
#include "qcow2/qcow2.h"
#include "sync.h"
#include "test-rand.h"

/* ---- making images ------------------------------------------------------------ */

/* A deterministic generator, so failures reproduce. */
static QT_UNUSED uint64_t qd_rand(uint64_t *state)
{
	return test_rand(state);
}

/*
 * A raw file of @size bytes whose 64 KiB blocks are, in turn and at random:
 * random bytes, a hole, half random then a hole, or compressible text.
 */
static QT_UNUSED void qd_make_source(const char *path, uint64_t size, uint64_t seed)
{
	static const char text[] = "qtap reads qcow2 images as QEMU does. ";
	uint64_t state = seed | 1;
	uint8_t *blk = malloc(65536);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint64_t off;

	if (!blk || fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	for (off = 0; off < size; off += 65536) {
		uint64_t kind = qd_rand(&state) % 4, n = 65536, i;

		if (kind == 1)
			continue;
		for (i = 0; i < 65536; i += 8) {
			uint64_t r = qd_rand(&state);

			memcpy(blk + i, &r, 8);
		}
		if (kind == 2)
			n = 32768 + 512 * (qd_rand(&state) % 32);
		if (kind == 3)
			for (i = 0; i < 65536; i++)
				blk[i] = (uint8_t)text[(i + off / 512) % (sizeof(text) - 1)];
		n = n < size - off ? n : size - off;
		if (pwrite(fd, blk, n, (off_t)off) != (ssize_t)n)
			abort();
	}
	close(fd);
	free(blk);
}

/* A pattern file for `qemu-io write -s`: an odd length, so data shifts. */
static QT_UNUSED const char *qd_pattern(void)
{
	static char path[PATH_MAX];
	uint64_t state = 0x9e3779b97f4a7c15ull;
	uint8_t buf[4099];
	size_t i;
	int fd;

	if (path[0])
		return path;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)qd_rand(&state);
	snprintf(path, sizeof(path), "%s", qt_path("pattern"));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		abort();
	close(fd);
	return path;
}

/* qemu-io -f FMT -c CMD... IMG: the commands are a NULL-terminated list. */
static QT_UNUSED void qd_qemu_io(const char *img, const char *const *cmds)
{
	const char *argv[QT_MAX_ARGS + 1] = { "qemu-io", "-f", "qcow2" };
	unsigned n = 3;

	for (; *cmds; cmds++) {
		assert_true(n + 3 < QT_MAX_ARGS);
		argv[n++] = "-c";
		argv[n++] = *cmds;
	}
	argv[n++] = img;
	argv[n] = NULL;
	if (qt_runv(argv, NULL) != 0)
		fail_msg("qemu-io on %s failed", img);
}

/*
 * Convert a fresh random source of @size bytes into qcow2 at @name with
 * -o @opts (and -c when @compress), then run @cmds on it with qemu-io.
 */
static QT_UNUSED const char *qd_build(const char *name, uint64_t size, const char *opts,
				      bool compress, const char *const *cmds)
{
	const char *src = qt_path("source.raw");
	const char *img = qt_path(name);
	const char *argv[16] = { "qemu-img", "convert", "-f", "raw", "-O", "qcow2" };
	unsigned n = 6;

	qd_make_source(src, size, size ^ (uint64_t)strlen(name) ^ (uint64_t)compress);
	if (compress)
		argv[n++] = "-c";
	if (opts) {
		argv[n++] = "-o";
		argv[n++] = opts;
	}
	argv[n++] = src;
	argv[n++] = img;
	argv[n] = NULL;
	if (qt_runv(argv, NULL) != 0)
		fail_msg("qemu-img convert to %s (%s) failed", name, opts ? opts : "");
	if (cmds && cmds[0])
		qd_qemu_io(img, cmds);
	unlink(src);
	return img;
}

/* qemu-img create @img over @backing (format @fmt), with -o @opts if any. */
static QT_UNUSED void qd_create_overlay(const char *img, const char *backing, const char *fmt,
					const char *opts, const char *size)
{
	const char *argv[16] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F" };
	unsigned n = 8;

	argv[n++] = fmt;
	if (opts) {
		argv[n++] = "-o";
		argv[n++] = opts;
	}
	argv[n++] = img;
	argv[n++] = size;
	argv[n] = NULL;
	assert_int_equal(qt_runv(argv, NULL), 0);
}

/* ---- opening ---------------------------------------------------------------------- */

/* Open the backing image @img names, if any, into img->backing. */
static QT_UNUSED int qd_open_backing(struct drv_image *img, unsigned flags)
{
	const struct drv_ops *ops;
	char *spec = NULL, *colon;
	int err;

	err = img->ops->get_backing ? img->ops->get_backing(img, &spec) : 0;
	if (err || !spec)
		return err;
	colon = strchr(spec, ':');
	assert_non_null(colon);
	*colon = '\0';
	ops = strcmp(spec, "qcow2") == 0 ? &qcow2_driver : drv_find(spec);
	assert_non_null(ops);
	err = drv_image_open(ops, colon + 1, flags | DRV_OPEN_RDONLY, &img->backing);
	if (!err)
		img->backing->depth = img->depth + 1;
	free(spec);
	return err;
}

/*
 * Open @path with the qcow2 driver and its backing chain, read-only.  This
 * is drv_chain_open() for a driver the registry does not list yet: a
 * backing format of "qcow2" also means this driver.
 */
static QT_UNUSED int qd_open_chain(const char *path, unsigned flags, struct drv_image **top)
{
	struct drv_image *img;
	int err = drv_image_open(&qcow2_driver, path, flags | DRV_OPEN_RDONLY, top);

	if (err)
		return err;
	for (img = *top; img; img = img->backing) {
		err = qd_open_backing(img, flags);
		if (err) {
			drv_image_close(*top);
			*top = NULL;
			return err;
		}
	}
	return 0;
}

/* ---- requests on any image of the chain ---------------------------------------------- */

struct qd_wait {
	bool done;
	int err;
	int calls;
};

static QT_UNUSED void qd_done(struct drv_req *req, int err)
{
	struct qd_wait *w = req->opaque;

	w->err = err;
	w->done = true;
	w->calls++;
}

/*
 * Submit @req to @img (any image of @s's chain, topped by @top) on @s's
 * queue and run the loop until it completes.  Checks exactly-once.
 */
static QT_UNUSED int qd_submit(struct drv_sync *s, struct drv_image *top, struct drv_image *img,
			       struct drv_req *req)
{
	struct drv_queue *q = drv_sync_queue(s);
	struct qd_wait w = { .done = false };
	void *priv = calloc(1, drv_chain_req_priv_bytes(top) + 1);

	assert_non_null(priv);
	req->q = q;
	req->done = qd_done;
	req->opaque = &w;
	req->priv = priv;
	drv_submit(img, req);
	while (!w.done) {
		int r = evloop_run_once(q->loop, -1);

		assert_true(r >= 0 || r == -EINTR);
	}
	/* anything completing twice would show up in a further iteration */
	assert_true(evloop_run_once(q->loop, 0) >= 0);
	assert_int_equal(w.calls, 1);
	free(priv);
	return w.err;
}

#endif
