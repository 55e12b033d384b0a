// SPDX-License-Identifier: MIT
/*
 * Creating, applying and deleting internal snapshots offline
 * (snapshot-edit.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/edit.h"
#include "qcow2/format.h"
#include "qcow2/refcount.h"
#include "qcow2/snapshot-edit.h"
#include "qcow2/sync-io.h"

struct qcow2_sne {
	struct qcow2_ed ed; /* the header, refcounts, active L1 and an L2 buffer */
	char *path;
	struct qcow2_snapshot *sns;
	unsigned nb;
	uint64_t table_bytes; /* of the table on disk, as QEMU counts it */
};

unsigned qcow2_sne_count(const struct qcow2_sne *e)
{
	return e->nb;
}

const struct qcow2_snapshot *qcow2_sne_get(const struct qcow2_sne *e, unsigned i)
{
	return i < e->nb ? &e->sns[i] : NULL;
}

/* ---- opening ---------------------------------------------------------------------- */

static int read_fn(void *opaque, uint64_t offset, void *buf, size_t len)
{
	return qcow2_pread(opaque, offset, buf, len);
}

static int sne_setup(struct qcow2_sne *e, bool shared)
{
	unsigned how =
		e->ed.readonly ? QCOW2_ED_RDONLY | (shared ? QCOW2_ED_SHARED : 0) : QCOW2_ED_TABLES;
	int err = qcow2_ed_open_how(&e->ed, e->path, how);

	if (!err)
		err = qcow2_snapshot_table_read(&e->ed.hdr, read_fn, e->ed.file, e->path, 0,
						&e->sns, &e->table_bytes);
	if (!err)
		e->nb = e->ed.hdr.nb_snapshots;
	return err;
}

int qcow2_sne_open(const char *path, bool readonly, bool shared, struct qcow2_sne **out)
{
	struct qcow2_sne *e = calloc(1, sizeof(*e));
	int err;

	if (!e || !(e->path = strdup(path))) {
		free(e);
		return -ENOMEM;
	}
	e->ed.readonly = readonly;
	err = sne_setup(e, shared);
	if (err) {
		qcow2_sne_close(e);
		return err;
	}
	*out = e;
	return 0;
}

void qcow2_sne_close(struct qcow2_sne *e)
{
	if (!e)
		return;
	qcow2_snapshot_table_free(e->sns, e->nb);
	qcow2_ed_close(&e->ed);
	free(e->path);
	free(e);
}

/* ---- refcounts of a tree ------------------------------------------------------------ */

/* The L2 table of L1 entry @entry (0: none); -EIO for a corrupt entry. */
static int l2_of(struct qcow2_sne *e, uint64_t entry, uint64_t *l2_off)
{
	const char *why = NULL;
	bool copied;

	if (qcow2_l1_entry_decode(&e->ed.geom, entry, l2_off, &copied, &why) == 0)
		return 0;
	log_err("qcow2 %s: L1 entry 0x%" PRIx64 ": %s", e->path, entry, why ? why : "corrupt");
	return -EIO;
}

static uint64_t l2_word(const struct qcow2_sne *e, uint64_t i, unsigned w)
{
	return qcow2_get_be64(e->ed.l2 + i * e->ed.geom.l2_entry_bytes + 8 * w);
}

/*
 * The host range L2 entry @i of the table in e->ed.l2 references: *@len 0
 * when none.  *@copyable: a data cluster whose entry carries COPIED.
 */
static int l2_ref(struct qcow2_sne *e, uint64_t l2_off, uint64_t i, uint64_t *off, uint64_t *len,
		  bool *copyable)
{
	struct qcow2_l2_entry d;
	const char *why = NULL;

	*len = 0;
	*copyable = false;
	if (qcow2_l2_entry_decode(&e->ed.geom, l2_word(e, i, 0),
				  e->ed.geom.extended_l2 ? l2_word(e, i, 1) : 0, &d, &why)) {
		log_err("qcow2 %s: L2 table at 0x%" PRIx64 ", entry %" PRIu64 ": %s", e->path,
			l2_off, i, why ? why : "corrupt");
		return -EIO;
	}
	if (d.type == QCOW2_CLUSTER_COMPRESSED) {
		*off = d.host_offset;
		*len = d.compressed_bytes;
	} else if ((d.type == QCOW2_CLUSTER_NORMAL || d.type == QCOW2_CLUSTER_ZERO_ALLOC) &&
		   d.host_offset) {
		*off = d.host_offset;
		*len = e->ed.geom.cluster_bytes;
		*copyable = true;
	}
	return 0;
}

static int read_l2(struct qcow2_sne *e, uint64_t l2_off)
{
	int err = qcow2_pread(e->ed.file, l2_off, e->ed.l2, e->ed.geom.cluster_bytes);

	if (err)
		log_err("qcow2 %s: reading the L2 table at 0x%" PRIx64 ": %s", e->path, l2_off,
			err_str(err));
	return err;
}

/* Add @addend to every data cluster the L2 table at @l2_off references. */
static int l2_refs(struct qcow2_sne *e, uint64_t l2_off, int64_t addend)
{
	uint64_t off, len;
	bool copyable;
	int err = read_l2(e, l2_off);

	for (uint64_t i = 0; !err && i < e->ed.geom.l2_entries; i++) {
		err = l2_ref(e, l2_off, i, &off, &len, &copyable);
		if (!err && len)
			err = qcow2_rc_update(e->ed.rc, off, len, addend);
	}
	return err;
}

/*
 * Add @addend to the refcount of every L2 table and data cluster the L1
 * table @l1 reaches, in memory (QEMU's qcow2_update_snapshot_refcount).  A
 * failure leaves changes in memory that only a write-back would store:
 * the caller then gives up without one.
 */
static int tree_refs(struct qcow2_sne *e, const uint64_t *l1, uint32_t n, int64_t addend)
{
	uint64_t l2_off;
	int err = 0;

	for (uint32_t i = 0; !err && i < n; i++) {
		err = l2_of(e, l1[i], &l2_off);
		if (!err && l2_off)
			err = l2_refs(e, l2_off, addend);
		if (!err && l2_off)
			err = qcow2_rc_update(e->ed.rc, l2_off, e->ed.geom.cluster_bytes, addend);
	}
	return err;
}

static int refcount_is_one(struct qcow2_sne *e, uint64_t off, bool *one)
{
	uint64_t rc = 0;
	int err = qcow2_rc_get(e->ed.rc, off, &rc);

	*one = rc == 1;
	return err;
}

/* Set COPIED on the entries of the table in e->ed.l2 whose cluster has refcount 1. */
static int l2_fix_copied(struct qcow2_sne *e, uint64_t l2_off, bool *changed)
{
	uint64_t off, len, w, nw;
	bool copyable, one = false;
	int err = 0;

	for (uint64_t i = 0; !err && i < e->ed.geom.l2_entries; i++) {
		err = l2_ref(e, l2_off, i, &off, &len, &copyable);
		if (err || !copyable)
			continue;
		err = refcount_is_one(e, off, &one);
		w = l2_word(e, i, 0);
		nw = one ? w | QCOW2_OFLAG_COPIED : w & ~QCOW2_OFLAG_COPIED;
		if (!err && nw != w) {
			qcow2_put_be64(e->ed.l2 + i * e->ed.geom.l2_entry_bytes, nw);
			*changed = true;
		}
	}
	return err;
}

static int write_synced(struct qcow2_sne *e, uint64_t off, const void *buf, size_t len,
			const char *what)
{
	int err = qcow2_pwrite(e->ed.file, off, buf, len);

	if (!err)
		err = qcow2_fsync(e->ed.file);
	if (err)
		log_err("qcow2 %s: writing the %s at 0x%" PRIx64 ": %s", e->path, what, off,
			err_str(err));
	return err;
}

static int write_l2(struct qcow2_sne *e, uint64_t l2_off)
{
	int err = qcow2_pwrite(e->ed.file, l2_off, e->ed.l2, e->ed.geom.cluster_bytes);

	if (err)
		log_err("qcow2 %s: writing the L2 table at 0x%" PRIx64 ": %s", e->path, l2_off,
			err_str(err));
	return err;
}

/* The active L1 table, big-endian, at @off; synced. */
static int write_l1(struct qcow2_sne *e, const uint64_t *l1, uint32_t n, uint64_t off)
{
	uint64_t *be = calloc(n ? n : 1, sizeof(*be));
	int err;

	if (!be)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		qcow2_put_be64(&be[i], l1[i]);
	err = write_synced(e, off, be, (size_t)n * 8, "L1 table");
	free(be);
	return err;
}

/*
 * COPIED over the active tree: set where the refcount is 1, cleared
 * elsewhere, as QEMU's addend-0 pass.  The L2 tables first (one sync for
 * all), then the L1 (synced).  The refcounts it reads must already be durable.
 */
static int fix_copied(struct qcow2_sne *e)
{
	bool l1_changed = false, changed, one = false;
	uint64_t l2_off, nw;
	int err = 0;

	for (uint32_t i = 0; !err && i < e->ed.hdr.l1_size; i++) {
		err = l2_of(e, e->ed.l1[i], &l2_off);
		if (err || !l2_off)
			continue;
		changed = false;
		err = read_l2(e, l2_off);
		if (!err)
			err = l2_fix_copied(e, l2_off, &changed);
		if (!err && changed)
			err = write_l2(e, l2_off);
		if (!err)
			err = refcount_is_one(e, l2_off, &one);
		nw = one ? e->ed.l1[i] | QCOW2_OFLAG_COPIED : e->ed.l1[i] & ~QCOW2_OFLAG_COPIED;
		if (!err && nw != e->ed.l1[i]) {
			e->ed.l1[i] = nw;
			l1_changed = true;
		}
	}
	/* the L2 tables durable before the L1 entries that describe them */
	if (!err)
		err = qcow2_fsync(e->ed.file);
	if (!err && l1_changed)
		err = write_l1(e, e->ed.l1, e->ed.hdr.l1_size, e->ed.hdr.l1_table_offset);
	return err;
}

/* Refcounts to disk: the blocks, their table entries, synced. */
static int rc_commit(struct qcow2_sne *e)
{
	int err = qcow2_rc_writeback(e->ed.rc);

	if (!err)
		err = qcow2_fsync(e->ed.file);
	return err;
}

/* ---- the snapshot table ------------------------------------------------------------- */

/* Header bytes 60..71: nb_snapshots and snapshots_offset, one synced write. */
static int switch_table(struct qcow2_sne *e, uint32_t nb, uint64_t off)
{
	uint8_t b[12];

	qcow2_put_be32(b, nb);
	qcow2_put_be64(b + 4, off);
	return write_synced(e, QCOW2_HDR_OFF(nb_snapshots), b, sizeof(b), "snapshot table pointer");
}

/*
 * Write @sns[0, @nb) as the new table, make it durable, point the header
 * to it and free the old one.  On success the array is e->sns.
 */
static int store_table(struct qcow2_sne *e, struct qcow2_snapshot *sns, unsigned nb)
{
	uint64_t bytes = qcow2_snapshot_table_bytes(sns, nb), off = 0;
	uint64_t cb = e->ed.geom.cluster_bytes, alloc = div_round_up_u64(bytes, cb) * cb;
	uint64_t old_off = e->ed.hdr.snapshots_offset, old_bytes = e->table_bytes;
	bool had_table = e->ed.hdr.nb_snapshots > 0;
	uint8_t *buf = NULL;
	int err = 0;

	if (bytes > QCOW2_MAX_SNAPSHOTS_BYTES) {
		log_err("qcow2 %s: the snapshot table would pass %llu bytes", e->path,
			QCOW2_MAX_SNAPSHOTS_BYTES);
		return -EFBIG;
	}
	if (nb) {
		buf = calloc(1, alloc);
		err = buf ? qcow2_snapshot_table_serialise(sns, nb, buf, alloc) : -ENOMEM;
		if (!err)
			err = qcow2_rc_alloc(e->ed.rc, alloc / cb, &off);
		if (!err)
			err = qcow2_pwrite(e->ed.file, off, buf, alloc);
		free(buf);
	}
	/* the table and its refcounts durable before the header points there */
	if (!err)
		err = rc_commit(e);
	if (!err)
		err = switch_table(e, nb, off);
	if (err) {
		log_err("qcow2 %s: writing the snapshot table: %s", e->path, err_str(err));
		return err;
	}
	e->ed.hdr.nb_snapshots = nb;
	e->ed.hdr.snapshots_offset = off;
	e->table_bytes = bytes;
	if (had_table && old_bytes)
		err = qcow2_rc_update(e->ed.rc, old_off, old_bytes, -1);
	if (!err)
		err = rc_commit(e);
	if (err)
		log_err("qcow2 %s: freeing the old snapshot table: %s (it leaks)", e->path,
			err_str(err));
	return err;
}

static int find_by_name(const struct qcow2_sne *e, const char *name)
{
	for (unsigned i = 0; i < e->nb; i++) {
		if (strcmp(e->sns[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

static int find_by_id_or_name(const struct qcow2_sne *e, const char *s)
{
	for (unsigned i = 0; i < e->nb; i++) {
		if (strcmp(e->sns[i].id, s) == 0)
			return (int)i;
	}
	return find_by_name(e, s);
}

/* QEMU's find_new_snapshot_id(): one past the largest numeric id. */
static char *new_id(const struct qcow2_sne *e)
{
	unsigned long max = 0;
	char buf[32];

	for (unsigned i = 0; i < e->nb; i++) {
		unsigned long id = strtoul(e->sns[i].id, NULL, 10);

		max = MAX(max, id);
	}
	snprintf(buf, sizeof(buf), "%lu", max + 1);
	return strdup(buf);
}

static int writable(const struct qcow2_sne *e)
{
	if (e->ed.readonly)
		return -EROFS;
	if (e->ed.geom.data_file) {
		log_err("qcow2 %s: internal snapshots are not supported with an external data "
			"file",
			e->path);
		return -ENOTSUP;
	}
	return 0;
}

/* ---- create ------------------------------------------------------------------------- */

/* A copy of the active L1 (COPIED cleared: it is shared from now on) in new clusters. */
static int copy_l1(struct qcow2_sne *e, uint64_t *off)
{
	uint32_t n = e->ed.hdr.l1_size;
	uint64_t cb = e->ed.geom.cluster_bytes, bytes = div_round_up_u64((uint64_t)n * 8, cb) * cb;
	uint64_t *l1 = calloc(1, bytes ? bytes : cb);
	int err = l1 ? 0 : -ENOMEM;

	*off = 0;
	for (uint32_t i = 0; !err && i < n; i++)
		qcow2_put_be64(&l1[i], e->ed.l1[i] & ~QCOW2_OFLAG_COPIED);
	if (!err && n)
		err = qcow2_rc_alloc(e->ed.rc, bytes / cb, off);
	if (!err && n)
		err = qcow2_pwrite(e->ed.file, *off, l1, bytes);
	free(l1);
	if (err)
		log_err("qcow2 %s: writing the snapshot's L1 table: %s", e->path, err_str(err));
	return err;
}

static int new_entry(struct qcow2_sne *e, const char *name, uint32_t date_sec, uint32_t date_nsec,
		     struct qcow2_snapshot *sn)
{
	*sn = (struct qcow2_snapshot){
		.l1_size = e->ed.hdr.l1_size,
		.date_sec = date_sec,
		.date_nsec = date_nsec,
		.disk_size_bytes = e->ed.hdr.size_bytes,
		.extra_data_size = QCOW2_SNAPSHOT_EXTRA_BYTES,
	};
	sn->id = new_id(e);
	sn->name = strdup(name);
	if (!sn->id || !sn->name) {
		qcow2_snapshot_fini(sn);
		return -ENOMEM;
	}
	return 0;
}

int qcow2_sne_create(struct qcow2_sne *e, const char *name, uint32_t date_sec, uint32_t date_nsec)
{
	struct qcow2_snapshot *sns;
	int err = writable(e);

	if (!err && e->nb >= QCOW2_MAX_SNAPSHOTS)
		err = -EFBIG;
	if (err)
		return err;
	sns = calloc(e->nb + 1, sizeof(*sns));
	if (!sns)
		return -ENOMEM;
	err = new_entry(e, name, date_sec, date_nsec, &sns[e->nb]);
	if (!err)
		err = copy_l1(e, &sns[e->nb].l1_table_offset);
	if (!err)
		err = tree_refs(e, e->ed.l1, e->ed.hdr.l1_size, 1);
	/* the copy and the new references durable, then COPIED goes, then the table */
	if (!err)
		err = rc_commit(e);
	if (!err)
		err = fix_copied(e);
	if (!err) {
		if (e->nb)
			memcpy(sns, e->sns, e->nb * sizeof(*sns));
		err = store_table(e, sns, e->nb + 1);
	}
	if (err) {
		qcow2_snapshot_fini(&sns[e->nb]);
		free(sns);
		return err;
	}
	free(e->sns); /* the entries moved to sns */
	e->sns = sns;
	e->nb++;
	return 0;
}

/* ---- apply -------------------------------------------------------------------------- */

/* The snapshot's L1 (zero-padded to @n entries) becomes the active one. */
static int install_l1(struct qcow2_sne *e, uint64_t *l1, uint32_t n)
{
	uint64_t cb = e->ed.geom.cluster_bytes, old_off = e->ed.hdr.l1_table_offset, off;
	uint64_t old_bytes = (uint64_t)e->ed.hdr.l1_size * 8;
	uint8_t b[12];
	int err;

	if (n == e->ed.hdr.l1_size)
		return write_l1(e, l1, n, old_off);
	/* a larger L1: at a new place, and the header switched to it */
	err = qcow2_rc_alloc(e->ed.rc, div_round_up_u64((uint64_t)n * 8, cb), &off);
	if (!err)
		err = rc_commit(e);
	if (!err)
		err = write_l1(e, l1, n, off);
	qcow2_put_be32(b, n);
	qcow2_put_be64(b + 4, off);
	if (!err)
		err = write_synced(e, QCOW2_HDR_OFF(l1_size), b, sizeof(b), "L1 table pointer");
	if (err)
		return err;
	e->ed.hdr.l1_size = n;
	e->ed.hdr.l1_table_offset = off;
	return old_bytes ? qcow2_rc_update(e->ed.rc, old_off, old_bytes, -1) : 0;
}

static int apply(struct qcow2_sne *e, const struct qcow2_snapshot *sn, unsigned index)
{
	uint32_t n = MAX(sn->l1_size, e->ed.hdr.l1_size), old_n = e->ed.hdr.l1_size;
	uint64_t *sl1 = NULL, *l1 = NULL, *old_l1 = e->ed.l1;
	int err;

	err = qcow2_snapshot_validate_l1(sn, e->ed.geom.cluster_bits, e->path, index);
	if (!err)
		err = qcow2_ed_read_l1(&e->ed, sn->l1_table_offset, sn->l1_size, &sl1);
	if (!err && !(l1 = calloc(n ? n : 1, sizeof(*l1))))
		err = -ENOMEM;
	if (!err) {
		memcpy(l1, sl1, (size_t)sn->l1_size * 8);
		err = tree_refs(e, l1, n, 1);
	}
	free(sl1);
	/* the snapshot tree's new references durable before the active L1 points to it */
	if (!err)
		err = rc_commit(e);
	if (!err)
		err = install_l1(e, l1, n);
	if (err) {
		free(l1);
		return err;
	}
	e->ed.l1 = l1;
	/* the old tree is unreferenced (durably): its references go */
	err = tree_refs(e, old_l1, old_n, -1);
	free(old_l1);
	if (!err)
		err = rc_commit(e);
	return err ? err : fix_copied(e);
}

int qcow2_sne_apply(struct qcow2_sne *e, const char *id_or_name)
{
	int i = find_by_id_or_name(e, id_or_name);
	int err = writable(e);

	if (err)
		return err;
	if (i < 0)
		return -ENOENT;
	if (e->sns[i].disk_size_bytes != e->ed.hdr.size_bytes) {
		log_err("qcow2: Loading snapshots with different disk size is not supported");
		return -ENOTSUP;
	}
	return apply(e, &e->sns[i], (unsigned)i);
}

/* ---- delete ------------------------------------------------------------------------- */

int qcow2_sne_delete(struct qcow2_sne *e, const char *name)
{
	int i = find_by_name(e, name);
	struct qcow2_snapshot sn;
	uint64_t *l1 = NULL;
	int err = writable(e);

	if (err)
		return err;
	if (i < 0)
		return -ENOENT;
	err = qcow2_snapshot_validate_l1(&e->sns[i], e->ed.geom.cluster_bits, e->path, (unsigned)i);
	if (!err)
		err = qcow2_ed_read_l1(&e->ed, e->sns[i].l1_table_offset, e->sns[i].l1_size, &l1);
	if (err)
		return err;
	/* the table without it first: a crash after leaks, never dangles */
	sn = e->sns[i];
	memmove(&e->sns[i], &e->sns[i + 1], (e->nb - (unsigned)i - 1) * sizeof(sn));
	e->nb--;
	err = store_table(e, e->sns, e->nb);
	if (!err)
		err = tree_refs(e, l1, sn.l1_size, -1);
	if (!err && sn.l1_size)
		err = qcow2_rc_update(e->ed.rc, sn.l1_table_offset, (uint64_t)sn.l1_size * 8, -1);
	if (!err)
		err = rc_commit(e);
	if (!err)
		err = fix_copied(e);
	free(l1);
	qcow2_snapshot_fini(&sn);
	return err;
}

/* ---- empty -------------------------------------------------------------------------- */

int qcow2_sne_empty(struct qcow2_sne *e)
{
	uint32_t n = e->ed.hdr.l1_size;
	uint64_t *old = e->ed.l1, *l1;
	int err = writable(e);

	if (err)
		return err;
	l1 = calloc(n ? n : 1, sizeof(*l1));
	if (!l1)
		return -ENOMEM;
	/* no pointer left (durably), then the references go */
	err = write_l1(e, l1, n, e->ed.hdr.l1_table_offset);
	if (err) {
		free(l1);
		return err;
	}
	e->ed.l1 = l1;
	err = tree_refs(e, old, n, -1);
	free(old);
	return err ? err : rc_commit(e);
}

/* ---- grow --------------------------------------------------------------------------- */

static int grow_refused(const struct qcow2_sne *e, uint64_t size)
{
	if (size < e->ed.hdr.size_bytes) {
		log_err("qcow2 %s: shrinking is not supported here", e->path);
		return -EINVAL;
	}
	if (e->nb && e->ed.hdr.version < 3) {
		log_err("qcow2 %s: Can't resize a v2 image which has snapshots", e->path);
		return -ENOTSUP;
	}
	if (e->ed.hdr.bitmaps.present && e->ed.hdr.bitmaps.nb_bitmaps) {
		log_err("qcow2 %s: Can't resize an image which has persistent bitmaps here",
			e->path);
		return -ENOTSUP;
	}
	return 0;
}

int qcow2_sne_grow(struct qcow2_sne *e, uint64_t size)
{
	uint64_t n = qcow2_size_to_l1(e->ed.geom.cluster_bits, e->ed.geom.extended_l2, size);
	uint64_t *l1;
	uint8_t b[8];
	int err = writable(e);

	if (!err)
		err = grow_refused(e, size);
	if (!err && n > QCOW2_MAX_L1_BYTES / 8) {
		log_err("qcow2 %s: %" PRIu64 " bytes need an L1 table over %llu bytes", e->path,
			size, QCOW2_MAX_L1_BYTES);
		err = -EFBIG;
	}
	if (err)
		return err;
	if (n > e->ed.hdr.l1_size) {
		/* exactly as large as the new size needs, at a new place (QEMU's exact growth) */
		l1 = calloc(n, sizeof(*l1));
		if (!l1)
			return -ENOMEM;
		memcpy(l1, e->ed.l1, (size_t)e->ed.hdr.l1_size * 8);
		err = install_l1(e, l1, (uint32_t)n);
		if (err) {
			free(l1);
			return err;
		}
		free(e->ed.l1);
		e->ed.l1 = l1;
		err = rc_commit(e);
	}
	/* the size last, synced: the tables it needs are in place */
	qcow2_put_be64(b, size);
	if (!err)
		err = write_synced(e, QCOW2_HDR_OFF(size), b, sizeof(b), "disk size");
	if (!err)
		e->ed.hdr.size_bytes = size;
	return err;
}
