// SPDX-License-Identifier: MIT
/*
 * Reading a qcow2 image for `tap-img info` (info.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/info.h"
#include "qcow2/sync-io.h"

bool qcow2_info_probe(const void *buf, size_t len)
{
	return len >= 8 && qcow2_get_be32(buf) == QCOW2_MAGIC &&
	       qcow2_get_be32((const uint8_t *)buf + 4) >= 2;
}

static int read_at(void *opaque, uint64_t offset, void *buf, size_t len)
{
	return qcow2_pread(opaque, offset, buf, len);
}

int qcow2_info_read_header(struct aio_file *f, const char *path, struct qcow2_header *h)
{
	uint8_t probe[QCOW2_HEADER_PROBE_BYTES];
	uint64_t cluster_bytes;
	uint8_t *buf;
	int err;

	err = qcow2_pread(f, 0, probe, sizeof(probe));
	if (err) {
		log_err("qcow2 %s: read of the header: %s", path, err_str(err));
		return err;
	}
	/* the parse of the probe says what is wrong with it */
	if (qcow2_header_cluster_bytes(probe, sizeof(probe), &cluster_bytes))
		return qcow2_header_parse(probe, sizeof(probe), path, 0, h) ?: -EINVAL;
	buf = malloc(cluster_bytes);
	if (!buf)
		return -ENOMEM;
	err = qcow2_pread(f, 0, buf, cluster_bytes);
	if (err)
		log_err("qcow2 %s: read of cluster 0: %s", path, err_str(err));
	else
		err = qcow2_header_parse(buf, cluster_bytes, path, 0, h);
	free(buf);
	return err;
}

/* The bitmap directory, only where QEMU would use it (v3, autoclear bit set). */
static int read_bitmaps(struct aio_file *f, const char *path, struct qcow2_info *info)
{
	const struct qcow2_header *h = &info->hdr;
	uint8_t *dir;
	int err;

	if (h->version < 3 || !h->bitmaps.present ||
	    !(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) || h->bitmaps.nb_bitmaps == 0)
		return 0;
	/* validated by the header parse: at most 64 MiB */
	dir = malloc(h->bitmaps.dir_bytes);
	if (!dir)
		return -ENOMEM;
	err = qcow2_pread(f, h->bitmaps.dir_offset, dir, h->bitmaps.dir_bytes);
	if (err)
		log_err("qcow2 %s: read of the bitmap directory at 0x%" PRIx64 ": %s", path,
			h->bitmaps.dir_offset, err_str(err));
	else
		err = qcow2_bitmap_dir_parse(dir, h->bitmaps.dir_bytes, h, path, &info->bitmaps);
	free(dir);
	if (!err)
		info->nb_bitmaps = h->bitmaps.nb_bitmaps;
	return err;
}

int qcow2_info_read(const char *path, struct qcow2_info *out)
{
	struct aio_file *f;
	int err;

	memset(out, 0, sizeof(*out));
	err = aio_file_open(path, AIO_FILE_RDONLY | AIO_FILE_BUFFERED, &f);
	if (err)
		return err;
	err = qcow2_info_read_header(f, path, &out->hdr);
	if (!err)
		err = qcow2_snapshot_table_read(&out->hdr, read_at, f, path, 0, &out->snapshots,
						NULL);
	if (!err)
		err = read_bitmaps(f, path, out);
	aio_file_close(f);
	if (err)
		qcow2_info_fini(out);
	return err;
}

/* Clusters below @end_cluster with a refcount, counted up to @limit. */
static int count_refcounted(struct aio_file *f, const char *path, const struct qcow2_geom *g,
			    const struct qcow2_header *h, uint64_t end_cluster, uint64_t limit,
			    uint64_t *count)
{
	uint64_t per_block = g->cluster_bytes * 8 >> h->refcount_order;
	uint64_t entries = (uint64_t)h->refcount_table_clusters * g->cluster_bytes / 8;
	uint8_t *block = malloc(g->cluster_bytes);
	uint64_t t, i, refblock;
	uint8_t raw[8];
	const char *why;
	int err = block ? 0 : -ENOMEM;

	*count = 0;
	for (t = 0; !err && t < entries && t * per_block < end_cluster && *count < limit; t++) {
		err = qcow2_pread(f, h->refcount_table_offset + t * 8, raw, sizeof(raw));
		if (!err)
			err = qcow2_reftable_entry_decode(g, qcow2_get_be64(raw), &refblock, &why);
		if (err || !refblock)
			continue;
		err = qcow2_pread(f, refblock, block, g->cluster_bytes);
		for (i = 0; !err && i < per_block && t * per_block + i < end_cluster; i++)
			*count += qcow2_refcount_get(block, h->refcount_order, i) != 0;
	}
	if (err)
		log_err("qcow2 %s: reading the refcounts: %s", path, err_str(err));
	free(block);
	return err;
}

int qcow2_info_metadata_preallocated(const char *path, const struct qcow2_info *info, bool *out)
{
	struct qcow2_geom g;
	struct aio_file *f;
	uint64_t real_clusters, threshold, count = 0;
	struct stat st;
	int err;

	if (stat(path, &st) < 0)
		return neg_errno();
	qcow2_geom_init(&g, &info->hdr);
	real_clusters = (uint64_t)st.st_blocks * 512 / g.cluster_bytes;
	threshold = MAX(real_clusters * 10 / 9, real_clusters + 2);
	err = aio_file_open(path, AIO_FILE_RDONLY | AIO_FILE_BUFFERED, &f);
	if (err)
		return err;
	err = count_refcounted(f, path, &g, &info->hdr,
			       div_round_up_u64((uint64_t)st.st_size, g.cluster_bytes), threshold,
			       &count);
	aio_file_close(f);
	*out = !err && count >= threshold;
	return err;
}

void qcow2_info_fini(struct qcow2_info *info)
{
	if (!info)
		return;
	qcow2_snapshot_table_free(info->snapshots, info->hdr.nb_snapshots);
	qcow2_bitmap_dir_free(info->bitmaps, info->nb_bitmaps);
	qcow2_header_fini(&info->hdr);
	memset(info, 0, sizeof(*info));
}
