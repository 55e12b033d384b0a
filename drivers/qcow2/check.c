// SPDX-License-Identifier: MIT
/*
 * qcow2 check and repair (check.h): the entry points, loading the image
 * as QEMU opens it for a check, the snapshot table, and the order of the
 * passes of QEMU's qcow2_co_check_locked():
 *
 *   1. read the snapshot table, repairing what cannot wait (too many
 *      snapshots: the header count is lowered at once);
 *   2. build the IMRT (check-refs.c) and compare it with the refcounts on
 *      disk (check-repair.c), rebuilding them when they cannot be trusted;
 *      check the COPIED flags;
 *   3. rewrite the snapshot table if entries were repaired;
 *   4. clear the dirty and corrupt bits after a clean repair.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/check-internal.h"
#include "qcow2/sync-io.h"

/* ---- messages and I/O ----------------------------------------------------------- */

void qcow2_ck_msg(struct qcow2_ck *ck, const char *fmt, ...)
{
	char *line;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (ck->report)
		ck->report(ck->opaque, line);
	else
		log_warn("qcow2 %s: %s", ck->path, line);
	free(line);
}

int qcow2_ck_read(struct qcow2_ck *ck, uint64_t off, void *buf, uint64_t len)
{
	return qcow2_pread(ck->file, off, buf, len);
}

static int refresh_size(struct qcow2_ck *ck)
{
	struct stat st;

	if (fstat(ck->file->fd, &st) < 0)
		return neg_errno();
	ck->file_bytes = (uint64_t)st.st_size;
	return 0;
}

int qcow2_ck_write(struct qcow2_ck *ck, uint64_t off, const void *buf, uint64_t len)
{
	int err = qcow2_pwrite(ck->file, off, buf, len);

	return err ? err : refresh_size(ck);
}

int qcow2_ck_sync(struct qcow2_ck *ck)
{
	return qcow2_fsync(ck->file);
}

static void add_result(struct qcow2_check_result *to, const struct qcow2_check_result *from,
		       bool allocation)
{
	to->check_errors += from->check_errors;
	to->corruptions += from->corruptions;
	to->leaks += from->leaks;
	to->corruptions_fixed += from->corruptions_fixed;
	to->leaks_fixed += from->leaks_fixed;
	if (!allocation)
		return;
	to->image_end_offset = from->image_end_offset;
	to->total_clusters = from->total_clusters;
	to->allocated_clusters = from->allocated_clusters;
	to->fragmented_clusters = from->fragmented_clusters;
	to->compressed_clusters = from->compressed_clusters;
}

/* ---- loading ----------------------------------------------------------------------- */

static int load_header(struct qcow2_ck *ck)
{
	uint8_t probe[QCOW2_HEADER_PROBE_BYTES];
	uint64_t cluster_bytes;
	uint8_t *buf;
	int err;

	err = qcow2_ck_read(ck, 0, probe, sizeof(probe));
	if (err) {
		log_err("qcow2 %s: read of the header: %s", ck->path, err_str(err));
		return err;
	}
	if (qcow2_header_cluster_bytes(probe, sizeof(probe), &cluster_bytes))
		return qcow2_header_parse(probe, sizeof(probe), ck->path, QCOW2_PARSE_CHECK,
					  &ck->hdr)
			       ?: -EINVAL;
	buf = malloc(cluster_bytes);
	if (!buf)
		return -ENOMEM;
	err = qcow2_ck_read(ck, 0, buf, cluster_bytes);
	if (err)
		log_err("qcow2 %s: read of cluster 0: %s", ck->path, err_str(err));
	else
		err = qcow2_header_parse(buf, cluster_bytes, ck->path, QCOW2_PARSE_CHECK, &ck->hdr);
	free(buf);
	return err;
}

/* A table of @entries big-endian u64 (bounded by the header parse). */
static int load_table(struct qcow2_ck *ck, const char *what, uint64_t off, uint64_t entries,
		      uint64_t **out)
{
	uint64_t *t = malloc(MAX(entries, (uint64_t)1) * 8);
	int err;

	if (!t)
		return -ENOMEM;
	err = qcow2_ck_read(ck, off, t, entries * 8);
	if (err) {
		log_err("qcow2 %s: read of the %s at offset 0x%" PRIx64 ": %s", ck->path, what, off,
			err_str(err));
		free(t);
		return err;
	}
	for (uint64_t i = 0; i < entries; i++)
		t[i] = be64toh(t[i]);
	*out = t;
	return 0;
}

/*
 * QEMU's open loads every bitmap not in use, and fails when its table
 * does not have exactly the size the disk needs or holds an invalid entry;
 * a check of such an image does not start either.
 */
static int loadable_bitmap(struct qcow2_ck *ck, const struct qcow2_bitmap *bm)
{
	uint64_t want = qcow2_bitmap_table_entries(ck->disk_bytes, bm->granularity_bits,
						   ck->g.cluster_bits);
	uint64_t *t, off;
	bool ones;
	int err = 0;

	if (bm->flags & QCOW2_BME_IN_USE)
		return 0;
	t = malloc((uint64_t)bm->table_size * 8); /* at most 8 MiB: bitmap-fmt.h */
	if (!t)
		return -ENOMEM;
	err = qcow2_ck_read(ck, bm->table_offset, t, (uint64_t)bm->table_size * 8);
	for (uint32_t i = 0; !err && i < bm->table_size; i++) {
		if (qcow2_bitmap_table_entry_decode(be64toh(t[i]), ck->g.cluster_bits, &off, &ones,
						    NULL))
			err = -EINVAL;
	}
	free(t);
	if (err)
		log_err("qcow2 %s: Could not read bitmap_table table from image for bitmap '%s': "
			"%s",
			ck->path, bm->name, err_str(err));
	else if (want != bm->table_size)
		log_err("qcow2 %s: Could not read bitmap '%s' from image: %s", ck->path, bm->name,
			err_str(err = -EINVAL));
	return err;
}

/*
 * The bitmap directory, when autoclear bit 0 vouches for it; QEMU fails
 * the open when it is broken, and so does this.
 */
static int load_bitmaps(struct qcow2_ck *ck)
{
	const struct qcow2_bitmaps_ext *b = &ck->hdr.bitmaps;
	uint8_t *dir;
	int err;

	if (!b->present || !(ck->hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	dir = malloc(MAX(b->dir_bytes, (uint64_t)1)); /* at most 64 MiB: checked by the parse */
	if (!dir)
		return -ENOMEM;
	err = qcow2_ck_read(ck, b->dir_offset, dir, b->dir_bytes);
	if (!err)
		err = qcow2_bitmap_dir_parse(dir, b->dir_bytes, &ck->hdr, ck->path, &ck->bms);
	free(dir);
	if (!err)
		ck->nb_bms = b->nb_bitmaps;
	for (uint32_t i = 0; !err && i < ck->nb_bms; i++)
		err = loadable_bitmap(ck, &ck->bms[i]);
	return err;
}

static int ck_load(struct qcow2_ck *ck)
{
	int err = refresh_size(ck);

	if (!err)
		err = load_header(ck);
	if (err)
		return err;
	qcow2_geom_init(&ck->g, &ck->hdr);
	/* QEMU's virtual size is whole 512-byte sectors */
	ck->disk_bytes = ALIGN_DOWN(ck->hdr.size_bytes, (uint64_t)512);
	ck->reftable_offset = ck->hdr.refcount_table_offset;
	ck->reftable_entries =
		((uint64_t)ck->hdr.refcount_table_clusters << ck->g.cluster_bits) / 8;
	ck->buf = malloc(ck->g.cluster_bytes);
	ck->rb = malloc(ck->g.cluster_bytes);
	if (!ck->buf || !ck->rb)
		return -ENOMEM;
	err = load_table(ck, "L1 table", ck->hdr.l1_table_offset, ck->hdr.l1_size, &ck->l1);
	if (!err)
		err = load_table(ck, "refcount table", ck->reftable_offset, ck->reftable_entries,
				 &ck->reftable);
	if (!err)
		err = load_bitmaps(ck);
	return err;
}

static void ck_fini(struct qcow2_ck *ck)
{
	qcow2_snapshot_table_free(ck->sns, ck->nb_sns);
	qcow2_bitmap_dir_free(ck->bms, ck->nb_bms);
	qcow2_header_fini(&ck->hdr);
	free(ck->l1);
	free(ck->reftable);
	free(ck->imrt);
	free(ck->rb);
	free(ck->buf);
	free(ck->l2_sorted);
	free(ck->rb_sorted);
}

/* ---- the snapshot table ------------------------------------------------------------ */

struct sn_reader {
	uint8_t *entry;	       /* one entry, its extra data cut to 1 KiB */
	uint64_t offset;       /* in the file, of the next entry */
	uint64_t table_length; /* as QEMU counts it */
	uint32_t reduced;      /* snapshots dropped off the end */
	uint32_t dropped;      /* entries whose extra data was cut */
	bool repair;
};

/* Bytes [@off, @off + @len) of the file into @dst. */
static int sn_read(struct qcow2_ck *ck, uint64_t off, void *dst, uint64_t len)
{
	int err = len ? qcow2_ck_read(ck, off, dst, len) : 0;

	if (err)
		qcow2_ck_msg(ck,
			     "ERROR failed to read the snapshot table: Failed to read snapshot "
			     "table: %s",
			     err_str(err));
	return err;
}

/*
 * One entry, as QEMU's qcow2_do_read_snapshots() reads it: extra data
 * over 1 KiB is refused, or cut with a repair.  Returns 0, 1 when the
 * table is too big (the caller stops there), or -errno (reported).
 */
static int read_snapshot(struct qcow2_ck *ck, struct sn_reader *r, uint32_t i, uint32_t nb,
			 struct qcow2_snapshot *sn)
{
	uint8_t *e = r->entry;
	uint64_t off, kept, strings;
	uint32_t extra;
	size_t pos = 0;
	int err;

	r->table_length = (r->table_length + 7) & ~(uint64_t)7;
	off = (r->offset + 7) & ~(uint64_t)7;
	err = sn_read(ck, off, e, QCOW2_SNAPSHOT_HEADER_BYTES);
	if (err)
		return err;
	extra = qcow2_get_be32(e + offsetof(struct qcow2_disk_snapshot, extra_data_size));
	strings = (uint64_t)qcow2_get_be16(e + offsetof(struct qcow2_disk_snapshot, id_str_size)) +
		  qcow2_get_be16(e + offsetof(struct qcow2_disk_snapshot, name_size));
	kept = MIN(extra, QCOW2_MAX_SNAPSHOT_EXTRA_BYTES);
	if (extra > QCOW2_MAX_SNAPSHOT_EXTRA_BYTES) {
		if (!r->repair) {
			qcow2_ck_msg(
				ck,
				"ERROR failed to read the snapshot table: Too much extra metadata "
				"in snapshot table entry %" PRIu32,
				i);
			qcow2_ck_msg(ck,
				     "You can force-remove this extra metadata with qemu-img check "
				     "-r all");
			return -EFBIG;
		}
		qcow2_ck_msg(ck,
			     "Discarding too much extra metadata in snapshot table entry %" PRIu32
			     " (%" PRIu32 " > %u)",
			     i, extra, QCOW2_MAX_SNAPSHOT_EXTRA_BYTES);
		r->dropped++;
		qcow2_put_be32(e + offsetof(struct qcow2_disk_snapshot, extra_data_size),
			       (uint32_t)kept);
	}
	off += QCOW2_SNAPSHOT_HEADER_BYTES;
	err = sn_read(ck, off, e + QCOW2_SNAPSHOT_HEADER_BYTES, kept);
	if (!err)
		err = sn_read(ck, off + extra, e + QCOW2_SNAPSHOT_HEADER_BYTES + kept, strings);
	if (err)
		return err;
	err = qcow2_snapshot_parse(e, QCOW2_SNAPSHOT_HEADER_BYTES + kept + strings, &pos, i,
				   ck->disk_bytes, ck->path, 0, sn);
	if (err)
		return err;
	r->table_length += QCOW2_SNAPSHOT_HEADER_BYTES + kept + strings;
	r->offset = off + extra + strings;
	if (r->table_length <= QCOW2_MAX_SNAPSHOTS_BYTES &&
	    r->offset - ck->hdr.snapshots_offset <= INT32_MAX)
		return 0;
	qcow2_snapshot_fini(sn);
	if (!r->repair) {
		qcow2_ck_msg(ck,
			     "ERROR failed to read the snapshot table: Snapshot table is too big");
		qcow2_ck_msg(ck,
			     "You can force-remove all %" PRIu32
			     " overhanging snapshots with qemu-img "
			     "check -r all",
			     nb - i);
		return -EFBIG;
	}
	qcow2_ck_msg(ck, "Discarding %" PRIu32 " overhanging snapshots (snapshot table is too big)",
		     nb - i);
	r->reduced += nb - i;
	return 1;
}

static int read_snapshot_entries(struct qcow2_ck *ck, struct sn_reader *r, uint32_t nb)
{
	uint64_t pre = 0;
	int ret = 0;

	ck->sns = calloc(MAX(nb, 1u), sizeof(*ck->sns));
	r->entry = malloc(QCOW2_SNAPSHOT_MAX_ENTRY_BYTES);
	if (!ck->sns || !r->entry)
		return -ENOMEM;
	r->offset = ck->hdr.snapshots_offset;
	for (uint32_t i = 0; i < nb; i++) {
		pre = r->offset;
		ret = read_snapshot(ck, r, i, nb, &ck->sns[i]);
		if (ret < 0)
			break;
		if (ret == 1) {
			r->offset = pre;
			ret = 0;
			break;
		}
		ck->nb_sns = i + 1;
	}
	ck->sns_offset = ck->hdr.snapshots_offset;
	ck->sns_bytes = r->offset - ck->sns_offset;
	return ret;
}

/* The table's place and size, as qcow2_validate_table() accepts them. */
static int snapshot_table_valid(struct qcow2_ck *ck, uint32_t nb)
{
	uint64_t max = (uint64_t)QCOW2_SNAPSHOT_HEADER_BYTES * QCOW2_MAX_SNAPSHOTS;
	uint64_t off = ck->hdr.snapshots_offset;

	if ((uint64_t)nb * QCOW2_SNAPSHOT_HEADER_BYTES > max) {
		qcow2_ck_msg(ck, "ERROR snapshot table too large");
		return -EFBIG;
	}
	if (INT64_MAX - (uint64_t)nb * QCOW2_SNAPSHOT_HEADER_BYTES < off ||
	    !is_aligned_u64(off, ck->g.cluster_bytes)) {
		qcow2_ck_msg(ck, "ERROR snapshot table offset invalid");
		return -EINVAL;
	}
	return 0;
}

/* QEMU's qcow2_check_read_snapshot_table(). */
static int read_snapshots(struct qcow2_ck *ck)
{
	struct sn_reader r = { .repair = ck->fix & QCOW2_CHECK_FIX_ERRORS };
	uint32_t nb = ck->hdr.nb_snapshots;
	uint8_t be[4];
	int err;

	if (nb > QCOW2_MAX_SNAPSHOTS && r.repair) {
		qcow2_ck_msg(ck, "Discarding %" PRIu32 " overhanging snapshots",
			     nb - QCOW2_MAX_SNAPSHOTS);
		r.reduced += nb - QCOW2_MAX_SNAPSHOTS;
		nb = QCOW2_MAX_SNAPSHOTS;
	}
	err = snapshot_table_valid(ck, nb);
	if (err) {
		if (nb > QCOW2_MAX_SNAPSHOTS)
			qcow2_ck_msg(ck,
				     "You can force-remove all %" PRIu32
				     " overhanging snapshots with "
				     "qemu-img check -r all",
				     nb - QCOW2_MAX_SNAPSHOTS);
		ck->res->check_errors++;
		return err;
	}
	err = read_snapshot_entries(ck, &r, nb);
	free(r.entry);
	if (err) {
		ck->res->check_errors++;
		return err;
	}
	ck->res->corruptions += r.reduced + r.dropped;
	if (r.reduced) {
		qcow2_put_be32(be, ck->nb_sns);
		err = qcow2_ck_write(ck, QCOW2_HDR_OFF(nb_snapshots), be, sizeof(be));
		if (!err)
			err = qcow2_ck_sync(ck);
		if (err) {
			ck->res->check_errors++;
			qcow2_ck_msg(
				ck,
				"ERROR failed to update the snapshot count in the image header: %s",
				err_str(err));
			return err;
		}
		ck->hdr.nb_snapshots = ck->nb_sns;
		ck->res->corruptions_fixed += r.reduced;
		ck->res->corruptions -= r.reduced;
	}
	for (uint32_t i = 0; ck->hdr.version >= 3 && i < ck->nb_sns; i++) {
		if (ck->sns[i].extra_data_size >= QCOW2_SNAPSHOT_V3_MIN_EXTRA_BYTES)
			continue;
		ck->res->corruptions++;
		qcow2_ck_msg(ck, "%s snapshot table entry %" PRIu32 " is incomplete",
			     ck->fix & QCOW2_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", i);
	}
	return 0;
}

/* QEMU's qcow2_check_fix_snapshot_table(). */
static int fix_snapshots(struct qcow2_ck *ck)
{
	int err;

	if (!ck->res->corruptions || !(ck->fix & QCOW2_CHECK_FIX_ERRORS))
		return 0;
	err = qcow2_ck_write_snapshots(ck);
	if (err) {
		ck->res->check_errors++;
		qcow2_ck_msg(ck, "ERROR failed to update snapshot table: %s", err_str(err));
		return err;
	}
	ck->res->corruptions_fixed += ck->res->corruptions;
	ck->res->corruptions = 0;
	return 0;
}

/* ---- refcounts ------------------------------------------------------------------- */

/*
 * After a rebuild: count again against the new structure, and free what
 * the old one leaves leaked.  Counters as QEMU keeps them: what the first
 * pass found and is now gone counts as fixed.
 */
static int recount_after_rebuild(struct qcow2_ck *ck, uint64_t *highest)
{
	struct qcow2_check_result *res = ck->res, old = *res, saved;
	uint64_t fresh_leaks = 0;
	bool rebuild = false;
	int err;

	res->corruptions = 0;
	res->leaks = 0;
	memset(ck->imrt, 0, ck->imrt_alloc_bytes);
	err = qcow2_ck_calculate(ck, 0, &rebuild);
	if (err)
		return err;
	if (ck->fix & QCOW2_CHECK_FIX_LEAKS) {
		saved = *res;
		*res = (struct qcow2_check_result){ 0 };
		qcow2_ck_compare(ck, QCOW2_CHECK_FIX_LEAKS, &rebuild, highest);
		if (rebuild)
			qcow2_ck_msg(ck, "ERROR rebuilt refcount structure is still broken");
		fresh_leaks = res->leaks;
		*res = saved;
	}
	if (res->corruptions < old.corruptions)
		res->corruptions_fixed += old.corruptions - res->corruptions;
	if (res->leaks < old.leaks)
		res->leaks_fixed += old.leaks - res->leaks;
	res->leaks += fresh_leaks;
	return 0;
}

/* QEMU's qcow2_check_refcounts(). */
static int check_refcounts(struct qcow2_ck *ck)
{
	struct qcow2_check_result *res = ck->res, pre;
	uint64_t nb_clusters = qcow2_ck_clusters(ck, ck->file_bytes), highest = 0;
	bool rebuild = false;
	int err;

	if (nb_clusters > QCOW2_CHECK_MAX_CLUSTERS) {
		res->check_errors++;
		return -EFBIG;
	}
	res->total_clusters = qcow2_ck_clusters(ck, ck->disk_bytes);
	err = qcow2_ck_imrt_resize(ck, nb_clusters);
	if (err) {
		res->check_errors++;
		return err;
	}
	err = qcow2_ck_calculate(ck, ck->fix, &rebuild);
	if (err)
		return err;
	pre = *res;
	qcow2_ck_compare(ck, 0, &rebuild, &highest);
	if (rebuild && (ck->fix & QCOW2_CHECK_FIX_ERRORS)) {
		qcow2_ck_msg(ck, "Rebuilding refcount structure");
		err = qcow2_ck_rebuild(ck);
		if (!err)
			err = recount_after_rebuild(ck, &highest);
	} else if (ck->fix && rebuild) {
		qcow2_ck_msg(ck, "ERROR need to rebuild refcount structures");
		res->check_errors++;
		err = -EIO;
	} else if (ck->fix && (res->leaks || res->corruptions)) {
		*res = pre;
		qcow2_ck_compare(ck, ck->fix, &rebuild, &highest);
	}
	if (!err)
		err = qcow2_ck_rc_flush(ck);
	if (!err && ck->fix)
		err = qcow2_ck_sync(ck);
	if (err)
		return err;
	err = qcow2_ck_check_copied(ck, ck->fix);
	if (err)
		return err;
	res->image_end_offset = (highest + 1) << ck->g.cluster_bits;
	return 0;
}

/* ---- the whole check ------------------------------------------------------------- */

/* QEMU's qcow2_mark_clean() and qcow2_mark_consistent(), as one synced field write. */
static int mark_clean(struct qcow2_ck *ck)
{
	uint64_t bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
	uint8_t be[8];
	int err;

	if (ck->hdr.version < 3 || !(ck->hdr.incompatible_features & bits))
		return 0;
	qcow2_put_be64(be, ck->hdr.incompatible_features & ~bits);
	err = qcow2_ck_sync(ck);
	if (!err)
		err = qcow2_ck_write(ck, QCOW2_HDR_OFF(incompatible_features), be, sizeof(be));
	if (!err)
		err = qcow2_ck_sync(ck);
	if (!err)
		ck->hdr.incompatible_features &= ~bits;
	return err;
}

/*
 * A program that changes the image must clear the autoclear bits it does
 * not know first (the spec; QEMU does it when it opens an image for
 * writing).  QEMU 7.2 rewrites the whole header for that during a check,
 * with the snapshot count it has not read yet, which drops every internal
 * snapshot of the image; this changes the one field, synced.
 */
static int clear_unknown_autoclear(struct qcow2_ck *ck)
{
	uint64_t known = ck->hdr.autoclear_features & QCOW2_AUTOCLEAR_KNOWN;
	uint8_t be[8];
	int err;

	if (!ck->fix || ck->hdr.autoclear_features == known)
		return 0;
	qcow2_put_be64(be, known);
	err = qcow2_ck_write(ck, QCOW2_HDR_OFF(autoclear_features), be, sizeof(be));
	if (!err)
		err = qcow2_ck_sync(ck);
	if (err)
		log_err("qcow2 %s: clearing unknown autoclear feature bits: %s", ck->path,
			err_str(err));
	else
		ck->hdr.autoclear_features = known;
	return err;
}

static int ck_run(struct qcow2_ck *ck, struct qcow2_check_result *res)
{
	struct qcow2_check_result snap = { 0 }, refs = { 0 };
	int err;

	err = clear_unknown_autoclear(ck);
	if (err) {
		res->check_errors++;
		return err;
	}
	ck->res = &snap;
	err = read_snapshots(ck);
	if (err) {
		add_result(res, &snap, false);
		return err;
	}
	ck->res = &refs;
	err = check_refcounts(ck);
	add_result(res, &refs, true);
	if (err) {
		add_result(res, &snap, false);
		return err;
	}
	ck->res = &snap;
	err = fix_snapshots(ck);
	add_result(res, &snap, false);
	if (err)
		return err;
	if (ck->fix && !res->check_errors && !res->corruptions)
		err = mark_clean(ck);
	return err;
}

int qcow2_check_file(struct aio_file *f, const char *path, const struct qcow2_check_opts *opts,
		     struct qcow2_check_result *res)
{
	struct qcow2_ck ck = {
		.file = f,
		.path = path,
		.fix = opts ? opts->flags & QCOW2_CHECK_REPAIR_ALL : 0,
		.report = opts ? opts->report : NULL,
		.opaque = opts ? opts->opaque : NULL,
		.rb_index = UINT64_MAX,
	};
	int err;

	memset(res, 0, sizeof(*res));
	err = ck_load(&ck);
	if (err)
		res->open_failed = true;
	else
		err = ck_run(&ck, res);
	ck_fini(&ck);
	return err;
}

int qcow2_check_ex(const char *path, const struct qcow2_check_opts *opts,
		   struct qcow2_check_result *res)
{
	unsigned flags = AIO_FILE_BUFFERED;
	struct aio_file *f;
	int err;

	if (!opts || !(opts->flags & QCOW2_CHECK_REPAIR_ALL))
		flags |= AIO_FILE_RDONLY;
	err = aio_file_open(path, flags, &f);
	if (err) {
		memset(res, 0, sizeof(*res));
		res->open_failed = true;
		return err;
	}
	err = qcow2_check_file(f, path, opts, res);
	aio_file_close(f);
	return err;
}

int qcow2_check(const char *path, unsigned flags, struct qcow2_check_result *res)
{
	struct qcow2_check_opts opts = { .flags = flags };

	return qcow2_check_ex(path, &opts, res);
}

/* The dirty-image repair logs its first findings only, then counts them. */
#define DIRTY_LOG_LINES 16u

struct dirty_log {
	const char *path;
	unsigned lines;
};

static void dirty_report(void *opaque, const char *line)
{
	struct dirty_log *d = opaque;

	if (d->lines++ < DIRTY_LOG_LINES)
		log_warn("qcow2 %s: %s", d->path, line);
}

int qcow2_check_repair_dirty(struct aio_file *f, const char *path)
{
	struct dirty_log d = { .path = path };
	struct qcow2_check_opts opts = {
		.flags = QCOW2_CHECK_REPAIR_ALL,
		.report = dirty_report,
		.opaque = &d,
	};
	struct qcow2_check_result res;
	int err = qcow2_check_file(f, path, &opts, &res);

	if (d.lines > DIRTY_LOG_LINES)
		log_warn("qcow2 %s: %u more messages of the repair not shown", path,
			 d.lines - DIRTY_LOG_LINES);
	if (err || res.check_errors) {
		err = err ?: -EIO;
		log_err("qcow2 %s: could not repair dirty image: %s", path, err_str(err));
		return err;
	}
	log_warn("qcow2 %s: dirty image repaired: %" PRIu64 " leaked clusters and %" PRIu64
		 " corruptions fixed, %" PRIu64 " corruptions left",
		 path, res.leaks_fixed, res.corruptions_fixed, res.corruptions);
	return 0;
}
