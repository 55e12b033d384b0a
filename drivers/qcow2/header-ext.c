// SPDX-License-Identifier: MIT
/*
 * qcow2 header extensions and the serialisation of cluster 0.
 *
 * Extensions are decoded into struct qcow2_header as QEMU's
 * qcow2_read_extensions() reads them; unknown ones are kept verbatim so a
 * header rewrite preserves them (QEMU keeps them too, iotest 031).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "checked.h"
#include "log.h"
#include "qcow2/format-internal.h"
#include "qcow2/format.h"

struct ext_ctx {
	const struct qcow2_in *in;
	const char *path;
	struct qcow2_header *h;
	unsigned seen; /* EXT_SEEN_* of the known types met so far */
};

#define EXT_SEEN_BACKING_FORMAT (1u << 0)
#define EXT_SEEN_FEATURE_TABLE (1u << 1)
#define EXT_SEEN_BITMAPS (1u << 2)
#define EXT_SEEN_FDE (1u << 3)
#define EXT_SEEN_DATA_FILE (1u << 4)

/*
 * QEMU lets a later copy of a known extension win; two different backing
 * formats or data file names in one image can only be an attack on
 * whichever reader takes the other one, so a repeat is refused.
 */
static int ext_once(struct ext_ctx *c, unsigned bit, uint32_t type, uint64_t off)
{
	if (c->seen & bit) {
		log_err("qcow2: %s: header extension 0x%08" PRIx32 " at offset 0x%" PRIx64
			" appears twice",
			c->path, type, off);
		return -EINVAL;
	}
	c->seen |= bit;
	return 0;
}

static int ext_backing_format(struct ext_ctx *c, uint64_t off, uint32_t len)
{
	struct qcow2_header *h = c->h;

	if (len > QCOW2_MAX_BACKING_FORMAT_BYTES) {
		log_err("qcow2: %s: backing format extension length %" PRIu32 " exceeds %u",
			c->path, len, QCOW2_MAX_BACKING_FORMAT_BYTES);
		return -EINVAL;
	}
	qcow2_in_copy(c->in, off, h->backing_format, len);
	h->backing_format[len] = '\0';
	if (strlen(h->backing_format) != len) {
		log_err("qcow2: %s: backing format name contains a NUL byte", c->path);
		return -EINVAL;
	}
	h->has_backing_format = true;
	return 0;
}

/* A trailing partial entry carries no usable name and is dropped. */
static int ext_feature_table(struct ext_ctx *c, uint64_t off, uint32_t len)
{
	struct qcow2_header *h = c->h;
	unsigned n = len / sizeof(struct qcow2_disk_feature);

	h->feature_names = calloc(n ? n : 1, sizeof(*h->feature_names));
	if (!h->feature_names)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct qcow2_disk_feature d;

		qcow2_in_copy(c->in, off + (uint64_t)i * sizeof(d), &d, sizeof(d));
		h->feature_names[i].type = d.type;
		h->feature_names[i].bit = d.bit;
		memcpy(h->feature_names[i].name, d.name, sizeof(d.name));
	}
	h->nb_feature_names = n;
	h->has_feature_table = true;
	return 0;
}

static int ext_bitmaps(struct ext_ctx *c, uint64_t off, uint32_t len)
{
	struct qcow2_header *h = c->h;
	uint32_t reserved;

	if (len != sizeof(struct qcow2_disk_bitmaps_ext)) {
		log_err("qcow2: %s: bitmaps extension length %" PRIu32 " is not %zu", c->path, len,
			sizeof(struct qcow2_disk_bitmaps_ext));
		return -EINVAL;
	}
	h->bitmaps.present = true;
	h->bitmaps.nb_bitmaps = qcow2_in_be32(c->in, off);
	reserved = qcow2_in_be32(c->in, off + 4);
	h->bitmaps.dir_bytes = qcow2_in_be64(c->in, off + 8);
	h->bitmaps.dir_offset = qcow2_in_be64(c->in, off + 16);
	if (reserved && (h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
		log_err("qcow2: %s: bitmaps extension reserved field 0x%" PRIx32 " is not zero",
			c->path, reserved);
		return -EINVAL;
	}
	return 0;
}

static int ext_fde(struct ext_ctx *c, uint64_t off, uint32_t len)
{
	struct qcow2_header *h = c->h;

	if (len != sizeof(struct qcow2_disk_fde_ext)) {
		log_err("qcow2: %s: full disk encryption extension length %" PRIu32 " is not %zu",
			c->path, len, sizeof(struct qcow2_disk_fde_ext));
		return -EINVAL;
	}
	h->fde.present = true;
	h->fde.offset = qcow2_in_be64(c->in, off);
	h->fde.length = qcow2_in_be64(c->in, off + 8);
	return 0;
}

static int ext_data_file(struct ext_ctx *c, uint64_t off, uint32_t len)
{
	struct qcow2_header *h = c->h;

	h->data_file = malloc((size_t)len + 1);
	if (!h->data_file)
		return -ENOMEM;
	qcow2_in_copy(c->in, off, h->data_file, len);
	h->data_file[len] = '\0';
	if (strlen(h->data_file) != len) {
		log_err("qcow2: %s: external data file name contains a NUL byte", c->path);
		return -EINVAL;
	}
	return 0;
}

static int ext_unknown(struct ext_ctx *c, uint32_t type, uint64_t off, uint32_t len)
{
	struct qcow2_header *h = c->h;
	struct qcow2_ext_raw *arr;
	uint8_t *data;

	data = malloc(len ? len : 1);
	if (!data)
		return -ENOMEM;
	qcow2_in_copy(c->in, off, data, len);
	arr = realloc(h->unknown_exts, (h->nb_unknown_exts + 1) * sizeof(*arr));
	if (!arr) {
		free(data);
		return -ENOMEM;
	}
	h->unknown_exts = arr;
	arr[h->nb_unknown_exts++] = (struct qcow2_ext_raw){ type, len, data };
	return 0;
}

/* The known extensions; each may appear at most once. */
static const struct {
	uint32_t type;
	unsigned seen_bit;
	int (*parse)(struct ext_ctx *c, uint64_t off, uint32_t len);
} ext_parsers[] = {
	{ QCOW2_EXT_BACKING_FORMAT, EXT_SEEN_BACKING_FORMAT, ext_backing_format },
	{ QCOW2_EXT_FEATURE_TABLE, EXT_SEEN_FEATURE_TABLE, ext_feature_table },
	{ QCOW2_EXT_BITMAPS, EXT_SEEN_BITMAPS, ext_bitmaps },
	{ QCOW2_EXT_FDE, EXT_SEEN_FDE, ext_fde },
	{ QCOW2_EXT_DATA_FILE, EXT_SEEN_DATA_FILE, ext_data_file },
};

static int ext_dispatch(struct ext_ctx *c, uint32_t type, uint64_t off, uint32_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(ext_parsers); i++) {
		int ret;

		if (ext_parsers[i].type != type)
			continue;
		ret = ext_once(c, ext_parsers[i].seen_bit, type, off);
		return ret ? ret : ext_parsers[i].parse(c, off, len);
	}
	return ext_unknown(c, type, off, len);
}

/*
 * Like QEMU, an extension whose 8-byte header or data would cross the end
 * of the area is refused, and the area may end without an end marker.
 */
int qcow2_fmt_parse_extensions(const struct qcow2_in *in, const char *path, bool names_only,
			       struct qcow2_header *h)
{
	struct ext_ctx c = { in, path, h, 0 };
	uint64_t end =
		h->backing_file_offset ? h->backing_file_offset : UINT64_C(1) << h->cluster_bits;
	uint64_t off = h->header_length;

	while (off < end) {
		uint32_t type = qcow2_in_be32(in, off);
		uint32_t len = qcow2_in_be32(in, off + 4);
		int ret;

		if (end - off < sizeof(struct qcow2_disk_ext) ||
		    len > end - off - sizeof(struct qcow2_disk_ext)) {
			if (names_only)
				return 0;
			log_err("qcow2: %s: header extension 0x%08" PRIx32 " at offset 0x%" PRIx64
				": length %" PRIu32 " runs past the extension area end 0x%" PRIx64,
				path, type, off, len, end);
			return -EINVAL;
		}
		off += sizeof(struct qcow2_disk_ext);
		if (type == QCOW2_EXT_END)
			return 0;
		if (names_only)
			ret = type == QCOW2_EXT_FEATURE_TABLE && !h->has_feature_table
				      ? ext_feature_table(&c, off, len)
				      : 0;
		else
			ret = ext_dispatch(&c, type, off, len);
		if (ret)
			return ret;
		off += qcow2_pad8(len);
	}
	return 0;
}

const char *qcow2_feature_name(const struct qcow2_header *h, unsigned type, unsigned bit)
{
	for (unsigned i = 0; i < h->nb_feature_names; i++) {
		const struct qcow2_feature_name *f = &h->feature_names[i];

		if (f->type == type && f->bit == bit && f->name[0])
			return f->name;
	}
	return NULL;
}

/* ---- serialisation --------------------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len;
	size_t pos;
};

static int put_bytes(struct wbuf *w, const void *data, size_t n)
{
	if (n > w->len - w->pos)
		return -ENOSPC;
	if (n)
		memcpy(w->p + w->pos, data, n);
	w->pos += n;
	return 0;
}

/* One extension, its data zero-padded to 8 bytes (the buffer is zeroed). */
static int put_ext(struct wbuf *w, uint32_t type, const void *data, size_t n)
{
	uint8_t hdr[8];

	if (n > UINT32_MAX)
		return -EINVAL;
	if (n > w->len - w->pos || qcow2_pad8(n) + sizeof(hdr) > w->len - w->pos)
		return -ENOSPC;
	qcow2_put_be32(hdr, type);
	qcow2_put_be32(hdr + 4, (uint32_t)n);
	put_bytes(w, hdr, sizeof(hdr));
	put_bytes(w, data, n);
	w->pos += qcow2_pad8(n) - n;
	return 0;
}

static uint32_t serialised_header_length(const struct qcow2_header *h)
{
	if (h->version == 2)
		return QCOW2_V2_HEADER_BYTES;
	if (h->header_length == QCOW2_V3_MIN_HEADER_BYTES && h->compression_type == 0 &&
	    h->unknown_fields_len == 0)
		return QCOW2_V3_MIN_HEADER_BYTES;
	return QCOW2_V3_HEADER_BYTES + h->unknown_fields_len;
}

static void put_fixed(const struct qcow2_header *h, uint8_t *p, uint32_t header_length)
{
	qcow2_put_be32(p + QCOW2_HDR_OFF(magic), QCOW2_MAGIC);
	qcow2_put_be32(p + QCOW2_HDR_OFF(version), h->version);
	qcow2_put_be32(p + QCOW2_HDR_OFF(cluster_bits), h->cluster_bits);
	qcow2_put_be64(p + QCOW2_HDR_OFF(size), h->size_bytes);
	qcow2_put_be32(p + QCOW2_HDR_OFF(crypt_method), h->crypt_method);
	qcow2_put_be32(p + QCOW2_HDR_OFF(l1_size), h->l1_size);
	qcow2_put_be64(p + QCOW2_HDR_OFF(l1_table_offset), h->l1_table_offset);
	qcow2_put_be64(p + QCOW2_HDR_OFF(refcount_table_offset), h->refcount_table_offset);
	qcow2_put_be32(p + QCOW2_HDR_OFF(refcount_table_clusters), h->refcount_table_clusters);
	qcow2_put_be32(p + QCOW2_HDR_OFF(nb_snapshots), h->nb_snapshots);
	qcow2_put_be64(p + QCOW2_HDR_OFF(snapshots_offset), h->snapshots_offset);
	if (h->version == 2)
		return;
	qcow2_put_be64(p + QCOW2_HDR_OFF(incompatible_features), h->incompatible_features);
	qcow2_put_be64(p + QCOW2_HDR_OFF(compatible_features), h->compatible_features);
	qcow2_put_be64(p + QCOW2_HDR_OFF(autoclear_features), h->autoclear_features);
	qcow2_put_be32(p + QCOW2_HDR_OFF(refcount_order), h->refcount_order);
	qcow2_put_be32(p + QCOW2_HDR_OFF(header_length), header_length);
	if (header_length > QCOW2_HDR_OFF(compression_type))
		p[QCOW2_HDR_OFF(compression_type)] = h->compression_type;
}

static int put_feature_table(struct wbuf *w, const struct qcow2_header *h)
{
	struct qcow2_disk_feature *d;
	size_t n = h->nb_feature_names;
	int ret;

	if (!h->has_feature_table)
		return 0;
	d = calloc(n ? n : 1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct qcow2_feature_name *f = &h->feature_names[i];

		d[i].type = f->type;
		d[i].bit = f->bit;
		memcpy(d[i].name, f->name, strnlen(f->name, sizeof(d[i].name)));
	}
	ret = put_ext(w, QCOW2_EXT_FEATURE_TABLE, d, n * sizeof(*d));
	free(d);
	return ret;
}

static int put_known_exts(struct wbuf *w, const struct qcow2_header *h)
{
	int ret = 0;

	if (h->has_backing_format)
		ret = put_ext(w, QCOW2_EXT_BACKING_FORMAT, h->backing_format,
			      strlen(h->backing_format));
	if (!ret && h->data_file)
		ret = put_ext(w, QCOW2_EXT_DATA_FILE, h->data_file, strlen(h->data_file));
	if (!ret && h->fde.present) {
		uint8_t fde[16];

		qcow2_put_be64(fde, h->fde.offset);
		qcow2_put_be64(fde + 8, h->fde.length);
		ret = put_ext(w, QCOW2_EXT_FDE, fde, sizeof(fde));
	}
	if (!ret)
		ret = put_feature_table(w, h);
	if (!ret && h->bitmaps.present && (h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
		uint8_t b[24] = { 0 };

		qcow2_put_be32(b, h->bitmaps.nb_bitmaps);
		qcow2_put_be64(b + 8, h->bitmaps.dir_bytes);
		qcow2_put_be64(b + 16, h->bitmaps.dir_offset);
		ret = put_ext(w, QCOW2_EXT_BITMAPS, b, sizeof(b));
	}
	return ret;
}

static int put_backing_name(struct wbuf *w, const struct qcow2_header *h)
{
	size_t n = strlen(h->backing_file);

	if (!h->has_backing_file)
		return 0;
	if (n > QCOW2_MAX_BACKING_NAME_BYTES)
		return -EINVAL;
	qcow2_put_be64(w->p + QCOW2_HDR_OFF(backing_file_offset), w->pos);
	qcow2_put_be32(w->p + QCOW2_HDR_OFF(backing_file_size), (uint32_t)n);
	return put_bytes(w, h->backing_file, n);
}

int qcow2_header_serialise(const struct qcow2_header *h, void *buf, size_t len, size_t *used)
{
	uint32_t header_length = serialised_header_length(h);
	struct wbuf w = { buf, len, 0 };
	int ret;

	if (len < header_length)
		return -ENOSPC;
	memset(buf, 0, len);
	put_fixed(h, buf, header_length);
	/* v2 has no header_length, so no room for fields it does not know */
	w.pos = h->version == 2 ? header_length : header_length - h->unknown_fields_len;
	ret = h->version == 2 ? 0 : put_bytes(&w, h->unknown_fields, h->unknown_fields_len);
	if (!ret)
		ret = put_known_exts(&w, h);
	for (unsigned i = 0; !ret && i < h->nb_unknown_exts; i++)
		ret = put_ext(&w, h->unknown_exts[i].type, h->unknown_exts[i].data,
			      h->unknown_exts[i].len);
	if (!ret)
		ret = put_ext(&w, QCOW2_EXT_END, NULL, 0);
	if (!ret)
		ret = put_backing_name(&w, h);
	if (ret)
		return ret;
	if (used)
		*used = w.pos;
	return 0;
}

/* ---- setters --------------------------------------------------------------------- */

/* The table QEMU 7.2 writes, in its order. */
static const struct qcow2_feature_name default_features[] = {
	{ QCOW2_FEAT_INCOMPAT, 0, "dirty bit" },
	{ QCOW2_FEAT_INCOMPAT, 1, "corrupt bit" },
	{ QCOW2_FEAT_INCOMPAT, 2, "external data file" },
	{ QCOW2_FEAT_INCOMPAT, 3, "compression type" },
	{ QCOW2_FEAT_INCOMPAT, 4, "extended L2 entries" },
	{ QCOW2_FEAT_COMPAT, 0, "lazy refcounts" },
	{ QCOW2_FEAT_AUTOCLEAR, 0, "bitmaps" },
	{ QCOW2_FEAT_AUTOCLEAR, 1, "raw external data" },
};

int qcow2_header_set_default_feature_table(struct qcow2_header *h)
{
	struct qcow2_feature_name *f = NULL;
	bool want = h->version >= 3 && h->cluster_bits > 12;

	if (want) {
		f = qcow2_fmt_memdup(default_features, sizeof(default_features));
		if (!f)
			return -ENOMEM;
	}
	free(h->feature_names);
	h->feature_names = f;
	h->nb_feature_names = want ? ARRAY_SIZE(default_features) : 0;
	h->has_feature_table = want;
	return 0;
}

int qcow2_header_set_backing(struct qcow2_header *h, const char *name, const char *format)
{
	size_t n = name ? strlen(name) : 0;
	size_t f = format ? strlen(format) : 0;

	if (n > QCOW2_MAX_BACKING_NAME_BYTES || f > QCOW2_MAX_BACKING_FORMAT_BYTES)
		return -EINVAL;
	memset(h->backing_file, 0, sizeof(h->backing_file));
	memset(h->backing_format, 0, sizeof(h->backing_format));
	memcpy(h->backing_file, name ? name : "", n);
	memcpy(h->backing_format, format ? format : "", f);
	h->has_backing_file = name != NULL;
	h->has_backing_format = name != NULL && format != NULL;
	h->backing_file_offset = 0;
	h->backing_file_size = (uint32_t)n;
	return 0;
}

int qcow2_header_set_data_file(struct qcow2_header *h, const char *name)
{
	char *copy = NULL;

	if (name) {
		copy = qcow2_fmt_strndup(name, strlen(name));
		if (!copy)
			return -ENOMEM;
	}
	free(h->data_file);
	h->data_file = copy;
	return 0;
}
