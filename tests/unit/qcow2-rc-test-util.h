/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the run-time refcount layer's tests (qcow2/refcount.h): an
 * image qemu-img made, opened with a qcow2_rc of its own whose overlap
 * check refuses the header and the L1 table, and qemu-img check's verdict
 * on it (exactly the leaks expected, then clean after -r leaks).
 *
 * Included after qcow2-test-util.h, by test-qcow2-refcount.c and
 * test-qcow2-refcount-limits.c.
 */
#ifndef QTAP_QCOW2_RC_TEST_UTIL_H
#define QTAP_QCOW2_RC_TEST_UTIL_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include "aio.h"
#include "checked.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"

struct img {
	char path[PATH_MAX];
	struct aio_file *f;
	struct qcow2_header hdr;
	struct qcow2_geom geom;
	uint64_t file_bytes;
	struct qcow2_rc *rc;
	/* overlap check: refuse anything touching cluster 0 or the L1 table */
	unsigned checks_block, checks_table, checks_new;
	const char *refuse_what; /* also refuse every call with this @what */
	uint64_t freed_calls;
};

static QT_UNUSED int overlap_cb(void *opaque, uint64_t off, uint64_t len, const char *what)
{
	struct img *m = opaque;
	uint64_t l1 = m->hdr.l1_table_offset, l1_len = (uint64_t)m->hdr.l1_size * 8;

	if (!strcmp(what, "refcount block"))
		m->checks_block++;
	else if (!strcmp(what, "refcount table"))
		m->checks_table++;
	else
		m->checks_new++;
	if (m->refuse_what && !strcmp(what, m->refuse_what))
		return -EIO;
	if (ranges_overlap(off, len, 0, m->geom.cluster_bytes) ||
	    ranges_overlap(off, len, l1, l1_len))
		fail_msg("%s at 0x%" PRIx64 "+%" PRIu64 " overlaps the header or L1", what, off,
			 len);
	return 0;
}

static QT_UNUSED void freed_cb(void *opaque, uint64_t off)
{
	struct img *m = opaque;

	assert_true(is_aligned_u64(off, m->geom.cluster_bytes));
	m->freed_calls++;
}

static QT_UNUSED void img_create(struct img *m, const char *name, unsigned bits,
				 unsigned cluster_bytes)
{
	char opts[128];

	memset(m, 0, sizeof(*m));
	snprintf(m->path, sizeof(m->path), "%s", qt_path(name));
	snprintf(opts, sizeof(opts), "refcount_bits=%u,cluster_size=%u", bits, cluster_bytes);
	unlink(m->path);
	assert_int_equal(
		qt_run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, m->path, "16M", NULL),
		0);
}

static QT_UNUSED void img_open(struct img *m, uint64_t cache_bytes)
{
	uint8_t *c0 = qt_read(m->path, 0, 2u << 20);
	struct qcow2_rc_params p = {
		.path = m->path,
		.hdr = &m->hdr,
		.geom = &m->geom,
		.file_bytes = &m->file_bytes,
		.cluster_freed = freed_cb,
		.overlap_check = overlap_cb,
		.opaque = m,
		.cache_bytes = cache_bytes,
	};

	assert_int_equal(qcow2_header_parse(c0, 2u << 20, m->path, 0, &m->hdr), 0);
	free(c0);
	qcow2_geom_init(&m->geom, &m->hdr);
	m->file_bytes = qt_file_size(m->path);
	assert_int_equal(aio_file_open(m->path, 0, &m->f), 0);
	p.file = m->f;
	assert_int_equal(qcow2_rc_new(&p, &m->rc), 0);
}

static QT_UNUSED void img_close(struct img *m)
{
	qcow2_rc_free(m->rc);
	m->rc = NULL;
	qcow2_header_fini(&m->hdr);
	aio_file_close(m->f);
	m->f = NULL;
}

/* Data would have been written there: the file reaches every allocation. */
static QT_UNUSED void img_extend(struct img *m)
{
	if (qt_file_size(m->path) < m->file_bytes)
		assert_int_equal(truncate(m->path, (off_t)m->file_bytes), 0);
}

static QT_UNUSED uint64_t rc_of(struct img *m, uint64_t off)
{
	uint64_t v = UINT64_MAX;

	assert_int_equal(qcow2_rc_get(m->rc, off, &v), 0);
	return v;
}

struct check_result {
	int status;
	int64_t leaks, corruptions, check_errors;
};

static QT_UNUSED int64_t json_int_or_0(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	return v ? json_integer_value(v) : 0;
}

static QT_UNUSED struct check_result img_check(const char *path, bool repair)
{
	struct check_result r = { 0 };
	char *out = NULL;
	json_t *j;

	/* one stderr line per leaked cluster: thousands of them */
	r.status =
		qt_run_out(&out, "sh", "-c",
			   repair ? "exec qemu-img check -r leaks --output=json \"$0\" 2>/dev/null"
				  : "exec qemu-img check --output=json \"$0\" 2>/dev/null",
			   path, NULL);
	j = out ? json_loads(out, 0, NULL) : NULL;
	if (!j)
		fail_msg("qemu-img check %s: no JSON: %s", path, out ? out : "(null)");
	r.leaks = json_int_or_0(j, "leaks");
	r.corruptions = json_int_or_0(j, "corruptions");
	r.check_errors = json_int_or_0(j, "check-errors");
	json_decref(j);
	free(out);
	return r;
}

/* Exactly @leaks leaks and nothing else; after -r leaks, clean. */
static QT_UNUSED void expect_leaks_then_repair(const char *path, uint64_t leaks)
{
	struct check_result r = img_check(path, false);

	assert_int_equal(r.corruptions, 0);
	assert_int_equal(r.check_errors, 0);
	assert_int_equal(r.leaks, leaks);
	assert_int_equal(r.status, leaks ? 3 : 0);
	r = img_check(path, true);
	assert_int_equal(r.corruptions, 0);
	r = img_check(path, false);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.leaks, 0);
	assert_int_equal(r.corruptions, 0);
}

#endif
