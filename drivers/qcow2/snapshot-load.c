// SPDX-License-Identifier: MIT
/*
 * A read-only qcow2 image read through one of its snapshots' L1 tables
 * (snapshot-load.h).  The L2 cache is keyed by the tables' file offsets,
 * so entries the active tree shares with the snapshot stay valid.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/internal.h"
#include "qcow2/qcow2.h"
#include "qcow2/snapshot-fmt.h"
#include "qcow2/snapshot-load.h"
#include "qcow2/sync-io.h"

static int read_fn(void *opaque, uint64_t offset, void *buf, size_t len)
{
	return qcow2_pread(opaque, offset, buf, len);
}

/* QEMU's find_snapshot_by_id_and_name(): what is given must match. */
static int find(const struct qcow2_snapshot *sns, unsigned nb, const char *id, const char *name)
{
	unsigned i;

	if (!id && !name)
		return -1;
	for (i = 0; i < nb; i++) {
		if ((!id || strcmp(sns[i].id, id) == 0) &&
		    (!name || strcmp(sns[i].name, name) == 0))
			return (int)i;
	}
	return -1;
}

/*
 * The snapshot's L1 entries, zero-extended to the entries the image's
 * current size needs (QEMU reads past a shorter table as unallocated).
 */
static int load_l1(struct drv_image *img, const struct qcow2_snapshot *sn, unsigned index)
{
	struct qcow2_image *qi = img->priv;
	uint64_t entries = MAX((uint64_t)sn->l1_size, (uint64_t)qi->hdr.l1_size), i;
	uint64_t *t;
	int err = qcow2_snapshot_validate_l1(sn, qi->hdr.cluster_bits, img->path, index);

	if (err)
		return err;
	t = calloc(MAX(entries, (uint64_t)1), sizeof(*t));
	if (!t) {
		log_err("qcow2 %s: out of memory for snapshot %s's L1 table", img->path, sn->id);
		return -ENOMEM;
	}
	err = qcow2_pread(qi->file, sn->l1_table_offset, t, (size_t)sn->l1_size * sizeof(*t));
	if (err) {
		log_err("qcow2 %s: read of snapshot %s's L1 table at offset 0x%" PRIx64 ": %s",
			img->path, sn->id, sn->l1_table_offset, err_str(err));
		free(t);
		return err;
	}
	for (i = 0; i < sn->l1_size; i++)
		t[i] = be64toh(t[i]);
	free(qi->l1);
	qi->l1 = t;
	qi->hdr.l1_size = (uint32_t)entries;
	qi->hdr.l1_table_offset = sn->l1_table_offset;
	return 0;
}

int qcow2_snapshot_load_tmp(struct drv_image *img, const char *id, const char *name)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_snapshot *sns = NULL;
	unsigned nb;
	int err, i;

	if (img->ops != &qcow2_driver || !(img->open_flags & DRV_OPEN_RDONLY))
		return -ENOTSUP;
	err = qcow2_snapshot_table_read(&qi->hdr, read_fn, qi->file, img->path, 0, &sns, NULL);
	if (err)
		return err;
	nb = qi->hdr.nb_snapshots;
	i = find(sns, nb, id, name);
	err = i < 0 ? -ENOENT : load_l1(img, &sns[i], (unsigned)i);
	if (!err)
		log_dbg(LOG_F_QCOW2, "%s: reading snapshot %s (%s)", img->path, sns[i].id,
			sns[i].name);
	qcow2_snapshot_table_free(sns, nb);
	return err;
}

int qcow2_snapshot_load_tmp_by_id_or_name(struct drv_image *img, const char *s)
{
	int err = qcow2_snapshot_load_tmp(img, s, NULL);

	return err == -ENOENT ? qcow2_snapshot_load_tmp(img, NULL, s) : err;
}
