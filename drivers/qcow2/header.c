// SPDX-License-Identifier: MIT
/*
 * qcow2 header: decoding the fixed header of cluster 0 and the open-time
 * validation QEMU performs in qcow2_do_open(), plus the geometry derived
 * from a valid header.  Extensions and serialisation are in header-ext.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "checked.h"
#include "log.h"
#include "qcow2/format-internal.h"
#include "qcow2/format.h"
#include "qcow2/snapshot-fmt.h"

void *qcow2_fmt_memdup(const void *src, size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p && n)
		memcpy(p, src, n);
	return p;
}

char *qcow2_fmt_strndup(const void *src, size_t n)
{
	char *s;

	if (n == SIZE_MAX)
		return NULL;
	s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, src, n);
	s[n] = '\0';
	return s;
}

/*
 * QEMU's qcow2_validate_table(): a size limit, a cluster-aligned offset,
 * and an end that stays below INT64_MAX because QEMU passes offsets around
 * as int64_t.  QEMU answers -EFBIG for the size; a bad header is -EINVAL
 * here, one code for every malformed field.
 */
int qcow2_fmt_validate_table(const char *path, const char *what, uint64_t offset, uint64_t entries,
			     uint64_t entry_bytes, uint64_t max_bytes, unsigned cluster_bits)
{
	uint64_t bytes;

	if (entries > max_bytes / entry_bytes) {
		log_err("qcow2: %s: %s size %" PRIu64 " exceeds the limit of %" PRIu64, path, what,
			entries, max_bytes / entry_bytes);
		return -EINVAL;
	}
	if (!is_aligned_u64(offset, UINT64_C(1) << cluster_bits)) {
		log_err("qcow2: %s: %s offset 0x%" PRIx64 " is not cluster aligned", path, what,
			offset);
		return -EINVAL;
	}
	bytes = entries * entry_bytes;
	if (offset > (uint64_t)INT64_MAX - bytes) {
		log_err("qcow2: %s: %s offset 0x%" PRIx64 " + %" PRIu64
			" bytes exceeds the largest file offset",
			path, what, offset, bytes);
		return -EINVAL;
	}
	return 0;
}

uint64_t qcow2_size_to_l1(unsigned cluster_bits, bool extended_l2, uint64_t size_bytes)
{
	unsigned l2_bits = cluster_bits - (extended_l2 ? 4 : 3);

	return div_round_up_u64(size_bytes, UINT64_C(1) << (cluster_bits + l2_bits));
}

/* ---- validation -------------------------------------------------------------- */

static int check_version_and_cluster(const struct qcow2_header *h, const char *path)
{
	if (h->version != 2 && h->version != 3) {
		log_err("qcow2: %s: version %" PRIu32 " is not supported (only 2 and 3)", path,
			h->version);
		return -ENOTSUP;
	}
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		log_err("qcow2: %s: cluster_bits %" PRIu32 " is outside %u..%u", path,
			h->cluster_bits, QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
		return -EINVAL;
	}
	return 0;
}

static int check_header_length(const struct qcow2_header *h, const char *path)
{
	uint64_t cluster_bytes = UINT64_C(1) << h->cluster_bits;

	if (h->version == 2)
		return 0;
	if (h->header_length < QCOW2_V3_MIN_HEADER_BYTES) {
		log_err("qcow2: %s: header_length %" PRIu32 " is below the v3 minimum of %u", path,
			h->header_length, QCOW2_V3_MIN_HEADER_BYTES);
		return -EINVAL;
	}
	if (h->header_length > cluster_bytes) {
		log_err("qcow2: %s: header_length %" PRIu32 " exceeds the cluster size %" PRIu64,
			path, h->header_length, cluster_bytes);
		return -EINVAL;
	}
	if (h->header_length % 8 != 0) {
		log_err("qcow2: %s: header_length %" PRIu32 " is not a multiple of 8", path,
			h->header_length);
		return -EINVAL;
	}
	return 0;
}

/* One line naming every unknown bit, with the image's own names if it has them. */
static int report_unknown_incompat(const struct qcow2_header *h, uint64_t bits, const char *path)
{
	char msg[512] = "";
	size_t used = 0;

	for (unsigned bit = 0; bit < 64 && used < sizeof(msg); bit++) {
		const char *name;
		int n;

		if (!(bits & (UINT64_C(1) << bit)))
			continue;
		name = qcow2_feature_name(h, QCOW2_FEAT_INCOMPAT, bit);
		n = snprintf(msg + used, sizeof(msg) - used, "%sbit %u (%s)", used ? ", " : "", bit,
			     name ? name : "no name in the image");
		if (n < 0)
			break;
		used += (size_t)n;
	}
	log_err("qcow2: %s: incompatible_features 0x%" PRIx64 ": unsupported %s", path,
		h->incompatible_features, msg);
	return -ENOTSUP;
}

static int check_compression(const struct qcow2_header *h, const char *path)
{
	bool bit = h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION;

	if (h->compression_type > QCOW2_COMPRESSION_ZSTD) {
		log_err("qcow2: %s: compression_type %u is not supported", path,
			h->compression_type);
		return -ENOTSUP;
	}
	if (bit != (h->compression_type != QCOW2_COMPRESSION_DEFLATE)) {
		log_err("qcow2: %s: compression_type %u but incompatible bit 3 (compression type) "
			"is %s",
			path, h->compression_type, bit ? "set" : "clear");
		return -EINVAL;
	}
	return 0;
}

static int check_data_file(const struct qcow2_header *h, const char *path)
{
	bool has_data_file = h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE;

	if (h->data_file && !has_data_file) {
		log_err("qcow2: %s: external data file extension \"%s\" without incompatible "
			"bit 2 (external data file)",
			path, h->data_file);
		return -EINVAL;
	}
	if ((h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && !has_data_file) {
		log_err("qcow2: %s: autoclear_features 0x%" PRIx64
			": raw external data without an external data file",
			path, h->autoclear_features);
		return -EINVAL;
	}
	if ((h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && h->has_backing_file) {
		log_err("qcow2: %s: raw external data file cannot have a backing file", path);
		return -EINVAL;
	}
	return 0;
}

static int check_features(const struct qcow2_header *h, const char *path)
{
	uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
	int ret;

	if (h->version == 2 && (h->incompatible_features || h->compatible_features ||
				h->autoclear_features || h->compression_type)) {
		log_err("qcow2: %s: version 2 image with v3 feature bits", path);
		return -EINVAL;
	}
	if (unknown)
		return report_unknown_incompat(h, unknown, path);
	ret = check_compression(h, path);
	if (ret)
		return ret;
	if ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) &&
	    h->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS) {
		log_err("qcow2: %s: cluster_bits %" PRIu32 " too small for extended L2 entries "
			"(subclusters below 512 bytes)",
			path, h->cluster_bits);
		return -EINVAL;
	}
	return check_data_file(h, path);
}

static int check_refcount_and_crypt(const struct qcow2_header *h, const char *path)
{
	if (h->refcount_order > QCOW2_MAX_REFCOUNT_ORDER) {
		log_err("qcow2: %s: refcount_order %" PRIu32 " exceeds %u (64-bit refcounts)", path,
			h->refcount_order, QCOW2_MAX_REFCOUNT_ORDER);
		return -EINVAL;
	}
	if (h->version == 2 && h->refcount_order != QCOW2_V2_REFCOUNT_ORDER) {
		log_err("qcow2: %s: refcount_order %" PRIu32 " in a version 2 image (must be 4)",
			path, h->refcount_order);
		return -EINVAL;
	}
	if (h->crypt_method > QCOW2_CRYPT_LUKS) {
		log_err("qcow2: %s: crypt_method %" PRIu32 " is unknown", path, h->crypt_method);
		return -EINVAL;
	}
	if (h->crypt_method == QCOW2_CRYPT_LUKS && !h->fde.present) {
		log_err("qcow2: %s: crypt_method 2 (LUKS) without a full disk encryption header "
			"extension",
			path);
		return -EINVAL;
	}
	if (h->fde.present && h->crypt_method != QCOW2_CRYPT_LUKS) {
		log_err("qcow2: %s: full disk encryption header extension with crypt_method "
			"%" PRIu32,
			path, h->crypt_method);
		return -EINVAL;
	}
	return 0;
}

static int check_l1_size(const struct qcow2_header *h, const char *path)
{
	bool extl2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
	uint64_t needed = qcow2_size_to_l1(h->cluster_bits, extl2, h->size_bytes);

	if (needed > INT_MAX) {
		log_err("qcow2: %s: size %" PRIu64 " is too big (needs %" PRIu64 " L1 entries)",
			path, h->size_bytes, needed);
		return -EINVAL;
	}
	if (h->l1_size < needed) {
		log_err("qcow2: %s: l1_size %" PRIu32 " is too small for size %" PRIu64
			" (needs %" PRIu64 " entries)",
			path, h->l1_size, h->size_bytes, needed);
		return -EINVAL;
	}
	return 0;
}

static int check_tables(const struct qcow2_header *h, const char *path, unsigned flags)
{
	uint64_t cluster_bytes = UINT64_C(1) << h->cluster_bits;
	int ret;

	if (h->refcount_table_clusters == 0 && !(flags & QCOW2_PARSE_CHECK)) {
		log_err("qcow2: %s: refcount_table_clusters is 0 (no refcount table)", path);
		return -EINVAL;
	}
	ret = qcow2_fmt_validate_table(path, "refcount table", h->refcount_table_offset,
				       h->refcount_table_clusters, cluster_bytes,
				       QCOW2_MAX_REFTABLE_BYTES, h->cluster_bits);
	if (ret)
		return ret;
	if (!(flags & QCOW2_PARSE_CHECK)) {
		ret = qcow2_fmt_validate_table(path, "snapshot table", h->snapshots_offset,
					       h->nb_snapshots, QCOW2_SNAPSHOT_HEADER_BYTES,
					       (uint64_t)QCOW2_SNAPSHOT_HEADER_BYTES *
						       QCOW2_MAX_SNAPSHOTS,
					       h->cluster_bits);
		if (ret)
			return ret;
	}
	ret = qcow2_fmt_validate_table(path, "L1 table", h->l1_table_offset, h->l1_size,
				       sizeof(uint64_t), QCOW2_MAX_L1_BYTES, h->cluster_bits);
	if (ret)
		return ret;
	return check_l1_size(h, path);
}

static int check_bitmaps_ext(const struct qcow2_header *h, const char *path)
{
	const struct qcow2_bitmaps_ext *b = &h->bitmaps;

	/* Without autoclear bit 0 QEMU ignores the extension altogether. */
	if (!b->present || !(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	if (b->nb_bitmaps == 0 || b->nb_bitmaps > QCOW2_MAX_BITMAPS) {
		log_err("qcow2: %s: bitmaps extension nb_bitmaps %" PRIu32 " is outside 1..%u",
			path, b->nb_bitmaps, QCOW2_MAX_BITMAPS);
		return -EINVAL;
	}
	if (b->dir_bytes > QCOW2_MAX_BITMAP_DIR_BYTES) {
		log_err("qcow2: %s: bitmap directory size %" PRIu64 " exceeds %llu", path,
			b->dir_bytes, QCOW2_MAX_BITMAP_DIR_BYTES);
		return -EINVAL;
	}
	return qcow2_fmt_validate_table(path, "bitmap directory", b->dir_offset, b->dir_bytes, 1,
					QCOW2_MAX_BITMAP_DIR_BYTES, h->cluster_bits);
}

static int check_fde_ext(const struct qcow2_header *h, const char *path)
{
	if (!h->fde.present)
		return 0;
	if (!is_aligned_u64(h->fde.offset, UINT64_C(1) << h->cluster_bits)) {
		log_err("qcow2: %s: encryption header offset 0x%" PRIx64 " is not cluster aligned",
			path, h->fde.offset);
		return -EINVAL;
	}
	if (h->fde.offset > (uint64_t)INT64_MAX || h->fde.length > INT64_MAX - h->fde.offset) {
		log_err("qcow2: %s: encryption header 0x%" PRIx64 " + %" PRIu64
			" exceeds the largest file offset",
			path, h->fde.offset, h->fde.length);
		return -EINVAL;
	}
	return 0;
}

struct region {
	const char *what;
	uint64_t offset;
	uint64_t bytes;
};

/*
 * QEMU only checks overlaps before writes; refusing them at open costs
 * nothing for sane images and keeps a hostile one from making the driver
 * update one table through another.  The snapshot table counts with its
 * minimum size (its entries are variable-length).  A check open skips
 * this: overlapping tables are what a check reports (as refcount errors),
 * and its repairs make their own overlap checks before each write.
 */
static int check_overlaps(const struct qcow2_header *h, const char *path, unsigned flags)
{
	uint64_t cluster_bytes = UINT64_C(1) << h->cluster_bits;
	struct region r[6];
	unsigned n = 0;

	if (flags & QCOW2_PARSE_CHECK)
		return 0;
	r[n++] = (struct region){ "header", 0, cluster_bytes };
	r[n++] = (struct region){ "L1 table", h->l1_table_offset, (uint64_t)h->l1_size * 8 };
	r[n++] = (struct region){ "refcount table", h->refcount_table_offset,
				  (uint64_t)h->refcount_table_clusters << h->cluster_bits };
	r[n++] = (struct region){ "snapshot table", h->snapshots_offset,
				  (uint64_t)h->nb_snapshots * QCOW2_SNAPSHOT_HEADER_BYTES };
	if (h->bitmaps.present && (h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		r[n++] = (struct region){ "bitmap directory", h->bitmaps.dir_offset,
					  h->bitmaps.dir_bytes };
	if (h->fde.present)
		r[n++] = (struct region){ "encryption header", h->fde.offset, h->fde.length };
	for (unsigned i = 0; i < n; i++) {
		for (unsigned j = i + 1; j < n; j++) {
			if (!ranges_overlap(r[i].offset, r[i].bytes, r[j].offset, r[j].bytes))
				continue;
			log_err("qcow2: %s: %s at 0x%" PRIx64 " (%" PRIu64
				" bytes) overlaps the %s "
				"at 0x%" PRIx64 " (%" PRIu64 " bytes)",
				path, r[j].what, r[j].offset, r[j].bytes, r[i].what, r[i].offset,
				r[i].bytes);
			return -EINVAL;
		}
	}
	return 0;
}

int qcow2_header_validate(const struct qcow2_header *h, const char *path, unsigned flags)
{
	int ret;

	path = qcow2_fmt_path(path);
	ret = check_version_and_cluster(h, path);
	if (!ret)
		ret = check_header_length(h, path);
	if (!ret)
		ret = check_features(h, path);
	if (!ret)
		ret = check_refcount_and_crypt(h, path);
	if (!ret)
		ret = check_tables(h, path, flags);
	if (!ret)
		ret = check_bitmaps_ext(h, path);
	if (!ret)
		ret = check_fde_ext(h, path);
	if (!ret)
		ret = check_overlaps(h, path, flags);
	return ret;
}

/* ---- parsing ------------------------------------------------------------------- */

int qcow2_header_cluster_bytes(const void *buf, size_t len, uint64_t *cluster_bytes)
{
	struct qcow2_in in = { buf, len };
	uint32_t bits = qcow2_in_be32(&in, QCOW2_HDR_OFF(cluster_bits));

	if (qcow2_in_be32(&in, 0) != QCOW2_MAGIC || bits < QCOW2_MIN_CLUSTER_BITS ||
	    bits > QCOW2_MAX_CLUSTER_BITS)
		return -EINVAL;
	*cluster_bytes = UINT64_C(1) << bits;
	return 0;
}

static void decode_v2_fields(const struct qcow2_in *in, struct qcow2_header *h)
{
	h->version = qcow2_in_be32(in, QCOW2_HDR_OFF(version));
	h->backing_file_offset = qcow2_in_be64(in, QCOW2_HDR_OFF(backing_file_offset));
	h->backing_file_size = qcow2_in_be32(in, QCOW2_HDR_OFF(backing_file_size));
	h->cluster_bits = qcow2_in_be32(in, QCOW2_HDR_OFF(cluster_bits));
	h->size_bytes = qcow2_in_be64(in, QCOW2_HDR_OFF(size));
	h->crypt_method = qcow2_in_be32(in, QCOW2_HDR_OFF(crypt_method));
	h->l1_size = qcow2_in_be32(in, QCOW2_HDR_OFF(l1_size));
	h->l1_table_offset = qcow2_in_be64(in, QCOW2_HDR_OFF(l1_table_offset));
	h->refcount_table_offset = qcow2_in_be64(in, QCOW2_HDR_OFF(refcount_table_offset));
	h->refcount_table_clusters = qcow2_in_be32(in, QCOW2_HDR_OFF(refcount_table_clusters));
	h->nb_snapshots = qcow2_in_be32(in, QCOW2_HDR_OFF(nb_snapshots));
	h->snapshots_offset = qcow2_in_be64(in, QCOW2_HDR_OFF(snapshots_offset));
}

/*
 * v2 headers stop at 72 bytes; what follows there is the extension area, so
 * the v3 fields take the values v2 implies.  compression_type exists only
 * when header_length covers it.
 */
static void decode_v3_fields(const struct qcow2_in *in, struct qcow2_header *h)
{
	if (h->version == 2) {
		h->refcount_order = QCOW2_V2_REFCOUNT_ORDER;
		h->header_length = QCOW2_V2_HEADER_BYTES;
		return;
	}
	h->incompatible_features = qcow2_in_be64(in, QCOW2_HDR_OFF(incompatible_features));
	h->compatible_features = qcow2_in_be64(in, QCOW2_HDR_OFF(compatible_features));
	h->autoclear_features = qcow2_in_be64(in, QCOW2_HDR_OFF(autoclear_features));
	h->refcount_order = qcow2_in_be32(in, QCOW2_HDR_OFF(refcount_order));
	h->header_length = qcow2_in_be32(in, QCOW2_HDR_OFF(header_length));
	if (h->header_length > QCOW2_HDR_OFF(compression_type))
		h->compression_type = qcow2_in_u8(in, QCOW2_HDR_OFF(compression_type));
}

static int parse_fixed(const struct qcow2_in *in, const char *path, struct qcow2_header *h)
{
	uint32_t magic = qcow2_in_be32(in, 0);
	int ret;

	if (magic != QCOW2_MAGIC) {
		log_err("qcow2: %s: magic 0x%08" PRIx32 " is not qcow2 (0x%08x)", path, magic,
			QCOW2_MAGIC);
		return -EINVAL;
	}
	decode_v2_fields(in, h);
	ret = check_version_and_cluster(h, path);
	if (ret)
		return ret;
	decode_v3_fields(in, h);
	ret = check_header_length(h, path);
	if (ret)
		return ret;
	if (h->backing_file_offset > (UINT64_C(1) << h->cluster_bits)) {
		log_err("qcow2: %s: backing_file_offset 0x%" PRIx64 " is beyond cluster 0", path,
			h->backing_file_offset);
		return -EINVAL;
	}
	return 0;
}

static int parse_unknown_fields(const struct qcow2_in *in, struct qcow2_header *h)
{
	if (h->version == 2 || h->header_length <= QCOW2_V3_HEADER_BYTES)
		return 0;
	h->unknown_fields_len = h->header_length - QCOW2_V3_HEADER_BYTES;
	h->unknown_fields = malloc(h->unknown_fields_len);
	if (!h->unknown_fields)
		return -ENOMEM;
	qcow2_in_copy(in, QCOW2_V3_HEADER_BYTES, h->unknown_fields, h->unknown_fields_len);
	return 0;
}

/*
 * The name must lie in cluster 0 after the fixed header (QEMU only checks
 * the cluster; a name over the header fields is never legitimate) and, as
 * in QEMU, be at most 1023 bytes.  A NUL inside would make the name differ
 * between readers, so it is refused.  A check open, which never uses the
 * name, accepts both as QEMU does (the name then ends at the NUL).
 */
static int parse_backing_name(const struct qcow2_in *in, const char *path, unsigned flags,
			      struct qcow2_header *h)
{
	bool check = flags & QCOW2_PARSE_CHECK;
	uint64_t cluster_bytes = UINT64_C(1) << h->cluster_bits;
	uint64_t max =
		MIN((uint64_t)QCOW2_MAX_BACKING_NAME_BYTES, cluster_bytes - h->backing_file_offset);

	if (h->backing_file_offset == 0)
		return 0;
	if (h->backing_file_offset < h->header_length && !check) {
		log_err("qcow2: %s: backing_file_offset 0x%" PRIx64 " is inside the %" PRIu32
			"-byte header",
			path, h->backing_file_offset, h->header_length);
		return -EINVAL;
	}
	if (h->backing_file_size > max) {
		log_err("qcow2: %s: backing_file_size %" PRIu32 " at offset 0x%" PRIx64
			" exceeds %" PRIu64 " (names are at most 1023 bytes, within cluster 0)",
			path, h->backing_file_size, h->backing_file_offset, max);
		return -EINVAL;
	}
	qcow2_in_copy(in, h->backing_file_offset, h->backing_file, h->backing_file_size);
	h->backing_file[h->backing_file_size] = '\0';
	if (strlen(h->backing_file) != h->backing_file_size && !check) {
		log_err("qcow2: %s: backing file name contains a NUL byte", path);
		return -EINVAL;
	}
	h->has_backing_file = true;
	return 0;
}

/*
 * With unknown incompatible bits nothing else in the image can be trusted to
 * mean what we think, so report them before anything else, with the names
 * from the image's feature table when a tolerant scan can find one.
 */
static int check_unknown_incompat_early(const struct qcow2_in *in, const char *path,
					struct qcow2_header *h)
{
	uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;

	if (!unknown)
		return 0;
	qcow2_fmt_parse_extensions(in, path, true, h);
	return report_unknown_incompat(h, unknown, path);
}

int qcow2_header_parse(const void *buf, size_t len, const char *path, unsigned flags,
		       struct qcow2_header *h)
{
	struct qcow2_in in = { buf, len };
	int ret;

	memset(h, 0, sizeof(*h));
	path = qcow2_fmt_path(path);
	ret = parse_fixed(&in, path, h);
	if (!ret)
		ret = parse_unknown_fields(&in, h);
	if (!ret)
		ret = check_unknown_incompat_early(&in, path, h);
	if (!ret)
		ret = qcow2_fmt_parse_extensions(&in, path, false, h);
	if (!ret)
		ret = parse_backing_name(&in, path, flags, h);
	if (!ret)
		ret = qcow2_header_validate(h, path, flags);
	if (ret == -ENOMEM)
		log_err("qcow2: %s: out of memory parsing the header", path);
	if (ret)
		qcow2_header_fini(h);
	return ret;
}

void qcow2_header_fini(struct qcow2_header *h)
{
	if (!h)
		return;
	free(h->unknown_fields);
	free(h->data_file);
	free(h->feature_names);
	for (unsigned i = 0; i < h->nb_unknown_exts; i++)
		free(h->unknown_exts[i].data);
	free(h->unknown_exts);
	memset(h, 0, sizeof(*h));
}

/* ---- geometry -------------------------------------------------------------------- */

void qcow2_geom_init(struct qcow2_geom *g, const struct qcow2_header *h)
{
	memset(g, 0, sizeof(*g));
	g->version = h->version;
	g->cluster_bits = h->cluster_bits;
	g->cluster_bytes = UINT64_C(1) << h->cluster_bits;
	g->extended_l2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
	g->data_file = h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
	g->l2_entry_bytes = g->extended_l2 ? 16 : 8;
	g->l2_bits = h->cluster_bits - (g->extended_l2 ? 4 : 3);
	g->l2_entries = UINT64_C(1) << g->l2_bits;
	g->subclusters = g->extended_l2 ? 32 : 1;
	g->subcluster_bits = h->cluster_bits - (g->extended_l2 ? 5 : 0);
	g->subcluster_bytes = UINT64_C(1) << g->subcluster_bits;
	g->refcount_order = h->refcount_order;
	g->refcount_bits = 1u << h->refcount_order;
	/* entries per block = cluster bits * 8 / refcount bits */
	g->refblock_bits = h->cluster_bits + 3 - h->refcount_order;
	g->refblock_entries = UINT64_C(1) << g->refblock_bits;
	g->csize_shift = 62 - (h->cluster_bits - 8);
	g->csize_mask = (UINT64_C(1) << (h->cluster_bits - 8)) - 1;
	g->coffset_mask = (UINT64_C(1) << g->csize_shift) - 1;
	g->l1_vm_state_index = qcow2_size_to_l1(h->cluster_bits, g->extended_l2, h->size_bytes);
}
