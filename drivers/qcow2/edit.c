// SPDX-License-Identifier: MIT
/*
 * Editing the tables of a qcow2 image offline (edit.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "qcow2/crash-fault.h"
#include "driver.h"
#include "errors.h"
#include "log.h"
#include "qcow2/check.h"
#include "qcow2/edit.h"
#include "qcow2/info.h"
#include "qcow2/refcount.h"
#include "qcow2/sync-io.h"

void qcow2_ed_close(struct qcow2_ed *e)
{
	free(e->l1);
	free(e->l2);
	qcow2_rc_free(e->rc);
	qcow2_header_fini(&e->hdr);
	aio_file_close(e->file);
}

static int read_header(struct qcow2_ed *e)
{
	int err = qcow2_info_read_header(e->file, e->path, &e->hdr);

	if (err || e->readonly || !(e->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY))
		return err;
	/* lazy refcounts and a crash: repair, as QEMU's writable open does */
	qcow2_header_fini(&e->hdr);
	err = qcow2_check_repair_dirty(e->file, e->path);
	return err ? err : qcow2_info_read_header(e->file, e->path, &e->hdr);
}

int qcow2_ed_read_l1(const struct qcow2_ed *e, uint64_t off, uint64_t n, uint64_t **out)
{
	uint64_t *t = calloc(n ? n : 1, sizeof(*t));
	int err = t ? 0 : -ENOMEM;

	if (!err)
		err = qcow2_pread(e->file, off, t, n * 8);
	if (err) {
		log_err("qcow2 %s: reading the L1 table at 0x%" PRIx64 ": %s", e->path, off,
			err_str(err));
		free(t);
		return err;
	}
	for (uint64_t i = 0; i < n; i++)
		t[i] = qcow2_get_be64(&t[i]);
	*out = t;
	return 0;
}

static int open_rw(struct qcow2_ed *e)
{
	struct qcow2_rc_params rp;

	if (e->hdr.incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
		log_err("qcow2 %s: the image is marked corrupt: repair it first (check -r all)",
			e->path);
		return -EROFS;
	}
	e->file_bytes = (uint64_t)lseek(e->file->fd, 0, SEEK_END);
	rp = (struct qcow2_rc_params){ .file = e->file,
				       .path = e->path,
				       .hdr = &e->hdr,
				       .geom = &e->geom,
				       .file_bytes = &e->file_bytes };
	return qcow2_rc_new(&rp, &e->rc);
}

int qcow2_ed_open_how(struct qcow2_ed *e, const char *path, unsigned how)
{
	bool ro = how & QCOW2_ED_RDONLY;
	unsigned lock = ro ? DRV_OPEN_RDONLY | (how & QCOW2_ED_SHARED ? DRV_OPEN_SHARED : 0) : 0;
	int err;

	e->path = path;
	e->readonly = ro;
	err = aio_file_open(path, (ro ? AIO_FILE_RDONLY : 0) | AIO_FILE_BUFFERED, &e->file);
	if (!err)
		err = drv_image_lock(e->file->fd, path, lock);
	if (!err)
		err = read_header(e);
	if (err)
		return err;
	qcow2_geom_init(&e->geom, &e->hdr);
	if (!ro && (err = open_rw(e)) != 0)
		return err;
	e->bitmaps = e->hdr.bitmaps.present && e->hdr.bitmaps.nb_bitmaps &&
		     (e->hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS);
	if (!(how & QCOW2_ED_TABLES))
		return 0;
	e->l2 = malloc(e->geom.cluster_bytes);
	if (!e->l2)
		return -ENOMEM;
	return qcow2_ed_read_l1(e, e->hdr.l1_table_offset, e->hdr.l1_size, &e->l1);
}

int qcow2_ed_open(struct qcow2_ed *e, const char *path)
{
	return qcow2_ed_open_how(e, path, QCOW2_ED_TABLES);
}

/* ---- L2 tables ------------------------------------------------------------------ */

uint64_t qcow2_ed_l2_word(const struct qcow2_ed *e, uint64_t j, unsigned word)
{
	return qcow2_get_be64(e->l2 + j * e->geom.l2_entry_bytes + word * 8);
}

/* The L2 table of L1 entry @i into e->l2; *@l2_off 0: none. */
int qcow2_ed_l2_read(struct qcow2_ed *e, uint64_t i, uint64_t *l2_off, bool *copied)
{
	const char *why;
	int err = qcow2_l1_entry_decode(&e->geom, e->l1[i], l2_off, copied, &why);

	if (err) {
		log_err("qcow2 %s: L1 entry %" PRIu64 ": %s", e->path, i, why);
		return -EIO;
	}
	if (!*l2_off)
		return 0;
	err = qcow2_pread(e->file, *l2_off, e->l2, e->geom.cluster_bytes);
	if (err)
		log_err("qcow2 %s: reading the L2 table at 0x%" PRIx64 ": %s", e->path, *l2_off,
			err_str(err));
	return err;
}

/* Queue the drop of the active tables' reference to entry @j's host clusters. */
int qcow2_ed_drop_entry(struct qcow2_ed *e, uint64_t j)
{
	struct qcow2_l2_entry d;
	const char *why;
	uint64_t bitmap = e->geom.extended_l2 ? qcow2_ed_l2_word(e, j, 1) : 0;

	if (qcow2_l2_entry_decode(&e->geom, qcow2_ed_l2_word(e, j, 0), bitmap, &d, &why) < 0) {
		log_err("qcow2 %s: L2 entry %" PRIu64 ": %s", e->path, j, why);
		return -EIO;
	}
	if (d.type == QCOW2_CLUSTER_COMPRESSED)
		return qcow2_rc_free_deferred(e->rc, d.host_offset, d.compressed_bytes);
	if (d.host_offset)
		return qcow2_rc_free_deferred(e->rc, d.host_offset, e->geom.cluster_bytes);
	return 0;
}

/*
 * Write e->l2 as the table of L1 entry @i, now at @l2_off: in place when
 * the active L1 owns it (@copied), else into a new cluster, the old one's
 * reference dropped once the L1 no longer points to it.  Durable on return.
 */
int qcow2_ed_l2_store(struct qcow2_ed *e, uint64_t i, uint64_t l2_off, bool copied)
{
	uint64_t off = l2_off;
	int err = 0;

	if (!copied) {
		err = qcow2_rc_alloc(e->rc, 1, &off);
		if (!err && l2_off)
			err = qcow2_rc_free_deferred(e->rc, l2_off, e->geom.cluster_bytes);
		/* the new table's refcount before the L1 entry that points to it */
		if (!err)
			err = qcow2_rc_writeback(e->rc);
	}
	if (!err)
		err = qcow2_pwrite(e->file, off, e->l2, e->geom.cluster_bytes);
	if (!err)
		err = qcow2_fsync(e->file);
	if (!err && !copied) {
		err = qcow2_l1_entry_encode(&e->geom, off, true, &e->l1[i]);
		e->l1_dirty = true;
	}
	if (err)
		log_err("qcow2 %s: writing the L2 table at 0x%" PRIx64 ": %s", e->path, off,
			err_str(err));
	return err;
}

/* The L1 table in place, synced. */
int qcow2_ed_l1_store(struct qcow2_ed *e)
{
	uint64_t n = e->hdr.l1_size, i;
	uint64_t *be = calloc(n ? n : 1, sizeof(*be));
	int err;

	if (!be)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		qcow2_put_be64(&be[i], e->l1[i]);
	err = qcow2_pwrite(e->file, e->hdr.l1_table_offset, be, n * 8);
	if (!err && !crash_fault(CRASH_FAULT_L1_NO_SYNC))
		err = qcow2_fsync(e->file);
	free(be);
	if (err)
		log_err("qcow2 %s: writing the L1 table at 0x%" PRIx64 ": %s", e->path,
			e->hdr.l1_table_offset, err_str(err));
	e->l1_dirty = false;
	return err;
}

/* Pointers removed are durable: the refcounts they held go down. */
int qcow2_ed_release(struct qcow2_ed *e)
{
	int err = e->l1_dirty ? qcow2_ed_l1_store(e) : 0;

	if (!err)
		err = qcow2_rc_release_deferred(e->rc);
	if (!err)
		err = qcow2_rc_writeback(e->rc);
	return err;
}
