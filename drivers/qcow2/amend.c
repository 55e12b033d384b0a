// SPDX-License-Identifier: MIT
/*
 * qemu-img amend's compat and lazy_refcounts, offline (amend.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/amend.h"
#include "qcow2/bitmap-edit.h"
#include "qcow2/edit.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"
#include "qcow2/snapshot-fmt.h"
#include "qcow2/sync-io.h"

/* One pass over every L2 table of the active and the snapshots' L1 tables. */
typedef int l2_fn(struct qcow2_ed *e, uint64_t l2_off);

static int read_at(void *opaque, uint64_t offset, void *buf, size_t len)
{
	return qcow2_pread(opaque, offset, buf, len);
}

static int walk_l1(struct qcow2_ed *e, const uint64_t *l1, uint64_t n, l2_fn *fn)
{
	uint64_t i, l2_off;
	const char *why;
	bool copied;
	int err = 0;

	for (i = 0; !err && i < n; i++) {
		if (qcow2_l1_entry_decode(&e->geom, l1[i], &l2_off, &copied, &why)) {
			log_err("qcow2 %s: L1 entry %" PRIu64 ": %s", e->path, i, why);
			return -EIO;
		}
		if (l2_off)
			err = fn(e, l2_off);
	}
	return err;
}

static int walk_snapshot(struct qcow2_ed *e, const struct qcow2_snapshot *sn, unsigned index,
			 l2_fn *fn)
{
	uint64_t n = sn->l1_size, i;
	uint64_t *l1;
	int err = qcow2_snapshot_validate_l1(sn, e->geom.cluster_bits, e->path, index);

	if (err)
		return err;
	l1 = calloc(n ? n : 1, sizeof(*l1));
	if (!l1)
		return -ENOMEM;
	err = qcow2_pread(e->file, sn->l1_table_offset, l1, n * 8);
	if (err)
		log_err("qcow2 %s: reading snapshot '%s' L1 table at 0x%" PRIx64 ": %s", e->path,
			sn->name, sn->l1_table_offset, err_str(err));
	for (i = 0; i < n; i++)
		l1[i] = qcow2_get_be64(&l1[i]);
	if (!err)
		err = walk_l1(e, l1, n, fn);
	free(l1);
	return err;
}

static int walk_all(struct qcow2_ed *e, l2_fn *fn)
{
	struct qcow2_snapshot *sns = NULL;
	unsigned i, nb = e->hdr.nb_snapshots;
	int err = walk_l1(e, e->l1, e->hdr.l1_size, fn);

	if (!err && nb)
		err = qcow2_snapshot_table_read(&e->hdr, read_at, e->file, e->path, 0, &sns, NULL);
	for (i = 0; !err && i < nb; i++)
		err = walk_snapshot(e, &sns[i], i, fn);
	qcow2_snapshot_table_free(sns, nb);
	return err;
}

static int read_l2(struct qcow2_ed *e, uint64_t l2_off)
{
	int err = qcow2_pread(e->file, l2_off, e->l2, e->geom.cluster_bytes);

	if (err)
		log_err("qcow2 %s: reading the L2 table at 0x%" PRIx64 ": %s", e->path, l2_off,
			err_str(err));
	return err;
}

static int decode(struct qcow2_ed *e, uint64_t j, struct qcow2_l2_entry *d)
{
	const char *why;

	if (qcow2_l2_entry_decode(&e->geom, qcow2_ed_l2_word(e, j, 0), 0, d, &why) < 0) {
		log_err("qcow2 %s: L2 entry %" PRIu64 ": %s", e->path, j, why);
		return -EIO;
	}
	return 0;
}

/* zstd cannot go to v2 once a cluster is compressed with it. */
static int find_compressed(struct qcow2_ed *e, uint64_t l2_off)
{
	struct qcow2_l2_entry d;
	uint64_t j;
	int err = read_l2(e, l2_off);

	for (j = 0; !err && j < e->geom.l2_entries; j++) {
		err = decode(e, j, &d);
		if (!err && d.type == QCOW2_CLUSTER_COMPRESSED) {
			log_err("Cannot downgrade an image with zstd compression type and existing "
				"compressed clusters");
			return -ENOTSUP;
		}
	}
	return err;
}

/* A zero entry as v2 can say it; *@changed when it had to change. */
static int expand_entry(struct qcow2_ed *e, uint64_t j, uint64_t l2_rc, const uint8_t *zeros,
			bool *changed)
{
	uint8_t *p = e->l2 + j * e->geom.l2_entry_bytes;
	uint64_t cb = e->geom.cluster_bytes, off, entry = 0;
	struct qcow2_l2_entry d;
	int err = decode(e, j, &d);

	if (err || (d.type != QCOW2_CLUSTER_ZERO_PLAIN && d.type != QCOW2_CLUSTER_ZERO_ALLOC))
		return err;
	*changed = true;
	if (d.type == QCOW2_CLUSTER_ZERO_ALLOC) {
		err = qcow2_pwrite(e->file, d.host_offset, zeros, cb);
		qcow2_put_be64(p, qcow2_ed_l2_word(e, j, 0) & ~QCOW2_OFLAG_ZERO);
		return err;
	}
	if (!e->hdr.has_backing_file) { /* unallocated reads as zeros too */
		qcow2_put_be64(p, 0);
		return 0;
	}
	/* as many references as the table has: every L1 path to it reaches the cluster */
	err = qcow2_rc_alloc(e->rc, 1, &off);
	if (!err && l2_rc > 1)
		err = qcow2_rc_update(e->rc, off, cb, (int64_t)l2_rc - 1);
	if (!err)
		err = qcow2_pwrite(e->file, off, zeros, cb);
	if (!err)
		err = qcow2_l2_entry_encode_normal(&e->geom, off, l2_rc == 1, &entry);
	qcow2_put_be64(p, entry);
	return err;
}

static int expand_zeros(struct qcow2_ed *e, uint64_t l2_off)
{
	uint8_t *zeros = calloc(1, e->geom.cluster_bytes);
	bool changed = false;
	uint64_t j, l2_rc = 0;
	int err = zeros ? read_l2(e, l2_off) : -ENOMEM;

	if (!err)
		err = qcow2_rc_get(e->rc, l2_off, &l2_rc);
	for (j = 0; !err && j < e->geom.l2_entries; j++)
		err = expand_entry(e, j, l2_rc, zeros, &changed);
	free(zeros);
	/* the zeros and their refcounts durable before the entries that point there */
	if (!err && changed)
		err = qcow2_rc_writeback(e->rc);
	if (!err && changed)
		err = qcow2_fsync(e->file);
	if (!err && changed)
		err = qcow2_pwrite(e->file, l2_off, e->l2, e->geom.cluster_bytes);
	if (!err && changed)
		err = qcow2_fsync(e->file);
	if (err)
		log_err("qcow2 %s: expanding the zero clusters of the L2 table at 0x%" PRIx64
			": %s",
			e->path, l2_off, err_str(err));
	return err;
}

/* ---- the header ----------------------------------------------------------------- */

static int write_header(struct qcow2_ed *e)
{
	uint64_t cb = e->geom.cluster_bytes;
	uint8_t *buf = calloc(1, cb);
	int err = buf ? qcow2_header_serialise(&e->hdr, buf, cb, NULL) : -ENOMEM;

	if (err == -ENOSPC)
		log_err("qcow2 %s: the new header does not fit in cluster 0", e->path);
	if (!err)
		err = qcow2_pwrite(e->file, 0, buf, cb);
	if (!err)
		err = qcow2_fsync(e->file);
	free(buf);
	if (err)
		log_err("qcow2 %s: writing the header: %s", e->path, err_str(err));
	return err;
}

static int downgrade_refused(struct qcow2_ed *e)
{
	uint64_t incompat =
		e->hdr.incompatible_features & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION);

	if (e->hdr.refcount_order != QCOW2_V2_REFCOUNT_ORDER) {
		log_err("compat=0.10 requires refcount_bits=16");
		return -ENOTSUP;
	}
	if (incompat) {
		log_err("Cannot downgrade an image with incompatible features 0x%" PRIx64 " set",
			incompat);
		return -ENOTSUP;
	}
	if (e->hdr.compression_type != QCOW2_COMPRESSION_DEFLATE)
		return walk_all(e, find_compressed);
	return 0;
}

static int downgrade(struct qcow2_ed *e)
{
	struct qcow2_header *h = &e->hdr;
	int err = walk_all(e, expand_zeros);

	if (err)
		return err;
	h->version = 2;
	h->incompatible_features = 0;
	h->compatible_features = 0;
	h->autoclear_features = 0;
	h->compression_type = QCOW2_COMPRESSION_DEFLATE;
	h->header_length = QCOW2_V2_HEADER_BYTES;
	h->bitmaps.present = false;
	free(h->feature_names);
	h->feature_names = NULL;
	h->nb_feature_names = 0;
	h->has_feature_table = false;
	return write_header(e);
}

static int upgrade(struct qcow2_ed *e, bool lazy)
{
	struct qcow2_header *h = &e->hdr;
	struct qcow2_snapshot *sns = NULL;
	unsigned i, nb = h->nb_snapshots;
	int err = 0;

	if (nb)
		err = qcow2_snapshot_table_read(h, read_at, e->file, e->path, 0, &sns, NULL);
	for (i = 0; !err && i < nb; i++) {
		if (sns[i].extra_data_size < 16) {
			log_err("qcow2 %s: snapshot '%s' has no disk size recorded: upgrading such "
				"a snapshot table is not supported",
				e->path, sns[i].name);
			err = -ENOTSUP;
		}
	}
	qcow2_snapshot_table_free(sns, nb);
	if (err)
		return err;
	h->version = 3;
	h->header_length = QCOW2_V3_HEADER_BYTES;
	h->refcount_order = QCOW2_V2_REFCOUNT_ORDER;
	h->compatible_features = lazy ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0;
	err = qcow2_header_set_default_feature_table(h);
	return err ? err : write_header(e);
}

static int set_lazy(struct qcow2_ed *e, bool lazy)
{
	uint64_t c = e->hdr.compatible_features;

	if (lazy)
		e->hdr.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
	else
		e->hdr.compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
	return c == e->hdr.compatible_features ? 0 : write_header(e);
}

/* v2 cannot keep bitmaps: removed, their clusters freed. */
static int drop_bitmaps(const char *path)
{
	struct qcow2_bme *b;
	int err = qcow2_bme_open(path, false, false, &b);

	if (!err)
		err = qcow2_bme_remove_all(b);
	if (!err)
		err = qcow2_bme_commit(b);
	qcow2_bme_close(b);
	return err;
}

static int amend_open(struct qcow2_ed *e, const char *path, const struct qcow2_amend_args *a,
		      unsigned *version)
{
	int err = qcow2_ed_open(e, path);

	if (err)
		return err;
	*version = a->compat ? a->compat : e->hdr.version;
	if (*version < 3 && a->lazy_refcounts == 1) {
		log_err("Lazy refcounts only supported with compatibility level 1.1 and above (use "
			"compat=1.1 or greater)");
		return -EINVAL;
	}
	if (e->hdr.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
		log_err("qcow2 %s: amending an image with an external data file is not supported",
			path);
		return -ENOTSUP;
	}
	return *version < e->hdr.version ? downgrade_refused(e) : 0;
}

int qcow2_amend(const char *path, const struct qcow2_amend_args *a)
{
	struct qcow2_ed e = { 0 };
	unsigned version;
	bool lazy;
	int err = amend_open(&e, path, a, &version);

	if (!err && version < e.hdr.version && e.bitmaps) {
		log_warn("qcow2 %s: compat=0.10 cannot hold persistent bitmaps: removing them",
			 path);
		qcow2_ed_close(&e);
		memset(&e, 0, sizeof(e));
		err = drop_bitmaps(path);
		if (!err)
			err = qcow2_ed_open(&e, path);
	}
	if (err) {
		qcow2_ed_close(&e);
		return err;
	}
	lazy = a->lazy_refcounts >= 0 ? a->lazy_refcounts == 1
				      : !!(e.hdr.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
	if (version < e.hdr.version)
		err = downgrade(&e);
	else if (version > e.hdr.version)
		err = upgrade(&e, lazy);
	else if (version == 3)
		err = set_lazy(&e, lazy);
	qcow2_ed_close(&e);
	return err;
}
