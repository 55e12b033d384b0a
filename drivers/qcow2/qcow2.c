// SPDX-License-Identifier: MIT
/*
 * The qcow2 driver: open, close, the backing spec, per-queue state and the
 * ops table.  The metadata engine is in map.c over the L2 cache (cache.c);
 * the data path in read.c, backing.c and status.c.
 *
 * Open runs on the control thread, so it reads cluster 0 and the tables
 * with plain pread (through an aligned buffer: the file may be O_DIRECT).
 * Bytes past the end of the file read as zeros there, as QEMU reads them.
 *
 * A read-write open also starts the image's metadata thread (meta.c), which
 * owns the refcounts and every metadata change, and takes over the
 * persistent dirty bitmaps (bitmap.c); images QEMU would not open
 * read-write (the corrupt bit) are refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "qcow2/create.h"
#include "qcow2/check.h"
#include "qcow2/internal.h"
#include "qcow2/qcow2.h"
#include "qcow2/sync-io.h"

#define QCOW2_BLOCK_BYTES 512u
#define QCOW2_ZSLOT_TARGET_BYTES (1u << 20) /* of compressed-read buffers per queue */
#define QCOW2_ZSLOTS_MAX 8u

/* Read a table of @entries big-endian u64 at @off into a host-endian array. */
static int load_table(struct drv_image *img, const char *what, uint64_t off, uint64_t entries,
		      uint64_t **out)
{
	struct qcow2_image *qi = img->priv;
	uint64_t *t = malloc(MAX(entries, (uint64_t)1) * sizeof(*t));
	uint64_t i;
	int err;

	if (!t) {
		log_err("qcow2 %s: out of memory for the %s (%" PRIu64 " entries)", img->path, what,
			entries);
		return -ENOMEM;
	}
	err = qcow2_pread(qi->file, off, t, entries * sizeof(*t));
	if (err) {
		log_err("qcow2 %s: read of the %s at offset 0x%" PRIx64 ": %s", img->path, what,
			off, err_str(err));
		free(t);
		return err;
	}
	for (i = 0; i < entries; i++)
		t[i] = be64toh(t[i]);
	*out = t;
	return 0;
}

/* ---- open -------------------------------------------------------------------------- */

static int read_header(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;
	uint8_t probe[QCOW2_HEADER_PROBE_BYTES];
	uint64_t cluster_bytes;
	uint8_t *buf;
	int err;

	err = qcow2_pread(qi->file, 0, probe, sizeof(probe));
	if (err) {
		log_err("qcow2 %s: read of the header: %s", img->path, err_str(err));
		return err;
	}
	/* On failure the parse of the probe logs what is wrong with it. */
	if (qcow2_header_cluster_bytes(probe, sizeof(probe), &cluster_bytes))
		return qcow2_header_parse(probe, sizeof(probe), img->path, 0, &qi->hdr) ?: -EINVAL;
	buf = malloc(cluster_bytes);
	if (!buf)
		return -ENOMEM;
	err = qcow2_pread(qi->file, 0, buf, cluster_bytes);
	if (err)
		log_err("qcow2 %s: read of cluster 0: %s", img->path, err_str(err));
	else
		err = qcow2_header_parse(buf, cluster_bytes, img->path, 0, &qi->hdr);
	free(buf);
	return err;
}

/* Features this step cannot serve, and QEMU's refusals on open. */
static int check_features(struct drv_image *img, unsigned flags)
{
	const struct qcow2_header *h = &((struct qcow2_image *)img->priv)->hdr;

	if (h->crypt_method != QCOW2_CRYPT_NONE) {
		log_err("qcow2 %s: encrypted images (crypt_method %u) are not supported", img->path,
			h->crypt_method);
		return -ENOTSUP;
	}
	if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
		log_err("qcow2 %s: images with an external data file are not supported", img->path);
		return -ENOTSUP;
	}
	if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && !(flags & DRV_OPEN_RDONLY)) {
		log_err("qcow2 %s: image is corrupt; cannot be opened read/write", img->path);
		return -EACCES;
	}
	if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) && (flags & DRV_OPEN_RDONLY))
		log_dbg(LOG_F_QCOW2,
			"%s: dirty bit set: refcounts may be stale (reads are unaffected)",
			img->path);
	return 0;
}

/*
 * "FMT:/abs/path" for the backing file.  A relative name is relative to the
 * directory of the image (not the working directory), as in QEMU.  The
 * format must be recorded in the image: probing a backing file lets a guest
 * that writes a header into a raw disk choose what the host opens
 * (CVE-2008-2004).
 */
static int make_backing_spec(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;
	const struct qcow2_header *h = &qi->hdr;
	char dir[PATH_MAX];
	char *slash;
	int n;

	if (!h->has_backing_file)
		return 0;
	if (!h->has_backing_format) {
		log_err("qcow2 %s: backing file '%s' has no recorded format; name it with "
			"qemu-img rebase -u -b '%s' -F FMT",
			img->path, h->backing_file, h->backing_file);
		return -EINVAL;
	}
	if (strncmp(h->backing_file, "json:", 5) == 0 || strstr(h->backing_file, "://")) {
		log_err("qcow2 %s: backing file '%s': protocol names are not supported", img->path,
			h->backing_file);
		return -ENOTSUP;
	}
	if (h->backing_file[0] == '/') {
		dir[0] = '\0';
	} else {
		if (!realpath(img->path, dir)) {
			int err = neg_errno();

			log_err("qcow2 %s: resolving the image's directory: %s", img->path,
				err_str(err));
			return err;
		}
		slash = strrchr(dir, '/');
		slash[slash == dir ? 1 : 0] = '\0';
	}
	n = asprintf(&qi->backing_spec, "%s:%s%s%s", h->backing_format, dir,
		     dir[0] && strcmp(dir, "/") ? "/" : "", h->backing_file);
	if (n < 0) {
		qi->backing_spec = NULL;
		return -ENOMEM;
	}
	return 0;
}

static int load_tables(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;
	const struct qcow2_header *h = &qi->hdr;

	/* the refcount table is loaded by the write path (refcount.c) */
	return load_table(img, "L1 table", h->l1_table_offset, h->l1_size, &qi->l1);
}

static int open_file(struct drv_image *img, const char *path, unsigned flags)
{
	struct qcow2_image *qi = img->priv;
	off_t end;
	int err;

	err = aio_file_open(path, drv_aio_file_flags(flags), &qi->file);
	if (!err)
		err = drv_image_lock(qi->file->fd, path, flags);
	if (err)
		return err;
	end = lseek(qi->file->fd, 0, SEEK_END);
	if (end < 0) {
		err = neg_errno();
		log_err("qcow2 %s: size of the file: %s", path, err_str(err));
		return err;
	}
	qi->file_bytes = (uint64_t)end;
	return 0;
}

static void qcow2_close(struct drv_image *img)
{
	struct qcow2_image *qi = img->priv;

	qcow2_meta_close(img);
	qcow2_bmq_free(qi->bmq);
	buf_free(qi->zero_buf);
	qcow2_l2_cache_free(qi->l2_cache);
	free(qi->backing_spec);
	free(qi->l1);
	qcow2_header_fini(&qi->hdr);
	aio_file_close(qi->file);
	memset(qi, 0, sizeof(*qi));
}

static int open_image(struct drv_image *img, const char *path, unsigned flags)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_cache_cfg cfg;
	int err;

	err = open_file(img, path, flags);
	if (!err)
		err = read_header(img);
	if (!err && qi->file->direct && (1ull << qi->hdr.cluster_bits) < qi->file->io_align) {
		/*
		 * Clusters smaller than the device's O_DIRECT block: writing one
		 * would read-modify-write its neighbours, racing the writers of
		 * those.  The page cache does that safely.
		 */
		log_dbg(LOG_F_QCOW2,
			"%s: %u-byte clusters under %u-byte direct I/O blocks: "
			"buffered I/O",
			path, 1u << qi->hdr.cluster_bits, qi->file->io_align);
		aio_file_close(qi->file);
		qi->file = NULL;
		qcow2_header_fini(&qi->hdr);
		err = open_file(img, path, (flags & ~DRV_OPEN_DIRECT_IF_COLD) | DRV_OPEN_BUFFERED);
		if (!err)
			err = read_header(img);
	}
	if (!err && !(flags & DRV_OPEN_RDONLY) &&
	    (qi->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
		/*
		 * Lazy refcounts and a crash: the refcounts are stale.  Repair
		 * them before anything allocates, as QEMU's writable open does.
		 */
		log_warn("qcow2 %s: dirty bit set: repairing the refcounts", path);
		qcow2_header_fini(&qi->hdr);
		err = qcow2_check_repair_dirty(qi->file, path);
		if (!err)
			err = read_header(img);
	}
	if (!err)
		err = check_features(img, flags);
	if (err)
		return err;
	qcow2_geom_init(&qi->geom, &qi->hdr);
	err = load_tables(img);
	if (!err)
		err = make_backing_spec(img);
	if (err)
		return err;
	err = qcow2_cache_cfg(img, &qi->geom, qi->hdr.size_bytes, &cfg);
	if (err)
		return err;
	qi->rc_cache_bytes = cfg.rc_cache_bytes;
	err = qcow2_l2_cache_new(qi->file, img->path, cfg.l2_slice_bytes, cfg.l2_slices,
				 &qi->l2_cache);
	if (err || (flags & DRV_OPEN_RDONLY))
		return err;
	qi->zero_buf = buf_alloc(qi->geom.cluster_bytes, 4096);
	if (!qi->zero_buf)
		return -ENOMEM;
	memset(qi->zero_buf, 0, qi->geom.cluster_bytes);
	return qcow2_meta_open(img);
}

static int qcow2_open(struct drv_image *img, const char *path, unsigned flags)
{
	struct qcow2_image *qi = img->priv;
	int err = open_image(img, path, flags);

	if (err) {
		qcow2_close(img);
		return err;
	}
	img->size_bytes = qi->hdr.size_bytes;
	img->block_bytes = QCOW2_BLOCK_BYTES;
	img->caps = DRV_CAP_BLOCK_STATUS;
	if (!(flags & DRV_OPEN_RDONLY)) {
		img->caps |= DRV_CAP_DISCARD | DRV_CAP_WRITE_ZEROES;
		img->compress_bytes = (uint32_t)qi->geom.cluster_bytes;
		/* as QEMU's qcow2: only whole clusters are freed */
		img->discard_bytes = (uint32_t)qi->geom.cluster_bytes;
	}
	if (!is_aligned_u64(img->size_bytes, QCOW2_BLOCK_BYTES))
		log_warn("qcow2 %s: size %" PRIu64
			 " is not a multiple of %u bytes; the last %" PRIu64
			 " bytes cannot be accessed",
			 path, img->size_bytes, QCOW2_BLOCK_BYTES,
			 img->size_bytes % QCOW2_BLOCK_BYTES);
	log_dbg(LOG_F_QCOW2,
		"open %s: v%u, %" PRIu64 " bytes, cluster %" PRIu64 "%s, L1 %u entries%s%s", path,
		qi->hdr.version, img->size_bytes, qi->geom.cluster_bytes,
		qi->geom.extended_l2 ? " (extended L2)" : "", qi->hdr.l1_size,
		qi->backing_spec ? ", backing " : "", qi->backing_spec ? qi->backing_spec : "");
	return 0;
}

static int qcow2_get_backing(struct drv_image *img, char **spec)
{
	struct qcow2_image *qi = img->priv;

	*spec = NULL;
	if (!qi->backing_spec)
		return 0;
	*spec = strdup(qi->backing_spec);
	return *spec ? 0 : -ENOMEM;
}

/* ---- queues ---------------------------------------------------------------------- */

/*
 * Compressed reads need two clusters of input and one of output.  About
 * 1 MiB of them per queue: eight at 64 KiB clusters, one at 2 MiB.
 */
static int zslots_init(struct qcow2_image *qi, struct qcow2_queue *qq)
{
	uint64_t cluster_bytes = qi->geom.cluster_bytes;
	unsigned i;

	qq->nr_zslots = (unsigned)MIN(QCOW2_ZSLOTS_MAX,
				      MAX(1u, QCOW2_ZSLOT_TARGET_BYTES / (3 * cluster_bytes)));
	qq->zslots = calloc(qq->nr_zslots, sizeof(*qq->zslots));
	if (!qq->zslots)
		return -ENOMEM;
	for (i = 0; i < qq->nr_zslots; i++) {
		struct qcow2_zslot *z = &qq->zslots[i];

		z->in = buf_alloc(2 * cluster_bytes, 4096);
		z->out = buf_alloc(cluster_bytes, 4096);
		if (!z->in || !z->out)
			return -ENOMEM;
		z->next_free = qq->zfree;
		qq->zfree = z;
	}
	return 0;
}

static void qcow2_queue_fini(struct drv_image *img, struct drv_queue *q)
{
	struct qcow2_queue *qq = img->qpriv[q->index];
	unsigned i;

	if (!qq)
		return;
	qcow2_backing_queue_fini(qq);
	qcow2_write_queue_fini(img, qq);
	for (i = 0; qq->zslots && i < qq->nr_zslots; i++) {
		buf_free(qq->zslots[i].in);
		buf_free(qq->zslots[i].out);
	}
	free(qq->zslots);
	qcow2_codec_free(qq->codec);
	memset(qq, 0, sizeof(*qq));
}

static int qcow2_queue_init(struct drv_image *img, struct drv_queue *q)
{
	struct qcow2_image *qi = img->priv;
	struct qcow2_queue *qq = img->qpriv[q->index];
	int err;

	err = qcow2_codec_new(qi->hdr.compression_type, &qq->codec);
	if (!err)
		err = zslots_init(qi, qq);
	if (!err)
		err = qcow2_backing_queue_init(img, qq);
	if (!err)
		err = qcow2_write_queue_init(img, qq);
	if (err) {
		log_err("qcow2 %s: queue %u set-up: %s", img->path, q->index, err_str(err));
		qcow2_queue_fini(img, q);
	}
	return err;
}

/* The ops table keeps its '=' signs aligned (STYLE.md), out of clang-format's reach. */
/* clang-format off */
const struct drv_ops qcow2_driver = {
	.name		 = "qcow2",
	.description	 = "QEMU copy-on-write image, version 2 or 3",
	.priv_size	 = sizeof(struct qcow2_image),
	.queue_priv_size = sizeof(struct qcow2_queue),
	.req_priv_size	 = sizeof(struct qcow2_req),
	.open		 = qcow2_open,
	.close		 = qcow2_close,
	.get_backing	 = qcow2_get_backing,
	.queue_init	 = qcow2_queue_init,
	.queue_fini	 = qcow2_queue_fini,
	.read		 = qcow2_read,
	.write		 = qcow2_write,
	.flush		 = qcow2_flush,
	.discard	 = qcow2_discard,
	.write_zeroes	 = qcow2_write_zeroes,
	.write_compressed = qcow2_write_compressed,
	.block_status	 = qcow2_block_status,
	.create		 = qcow2_create,
	.create_opts	 = qcow2_create_opts,
	.bitmap_list	 = qcow2_bitmap_list,
	.bitmap_status	 = qcow2_bitmap_status,
	.open_opts	 = qcow2_open_opts,
};
/* clang-format on */
