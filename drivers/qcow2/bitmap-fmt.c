// SPDX-License-Identifier: MIT
/*
 * Persistent dirty bitmaps: the bitmap directory and bitmap table entries,
 * with the constraints QEMU's qcow2-bitmap.c puts on them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "checked.h"
#include "log.h"
#include "qcow2/format-internal.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/format.h"

#define BME_OFF(field) offsetof(struct qcow2_disk_bitmap_entry, field)

static int bad_entry(const struct qcow2_bitmap *bm, const char *path, const char *field,
		     uint64_t value, const char *why)
{
	log_err("qcow2: %s: bitmap \"%s\": %s %" PRIu64 " (0x%" PRIx64 ") %s", path,
		bm->name ? bm->name : "", field, value, value, why);
	return -EINVAL;
}

static int validate_table(const struct qcow2_bitmap *bm, unsigned cluster_bits, uint64_t disk_size,
			  const char *path)
{
	uint64_t data_bytes = (uint64_t)bm->table_size << cluster_bits;
	char what[QCOW2_BME_MAX_NAME_BYTES + 32];
	uint64_t covered;

	if (bm->table_offset == 0)
		return bad_entry(bm, path, "table offset", 0, "is not allowed");
	if (bm->table_size == 0 || bm->table_size > QCOW2_BME_MAX_TABLE_ENTRIES)
		return bad_entry(bm, path, "table size", bm->table_size,
				 "is outside 1..134217728 entries");
	if (data_bytes > QCOW2_BME_MAX_DATA_BYTES)
		return bad_entry(bm, path, "table size", bm->table_size,
				 "covers more than 512 MiB of bitmap data");
	snprintf(what, sizeof(what), "bitmap \"%s\" table", bm->name);
	if (qcow2_fmt_validate_table(path, what, bm->table_offset, bm->table_size, sizeof(uint64_t),
				     (uint64_t)QCOW2_BME_MAX_TABLE_ENTRIES * sizeof(uint64_t),
				     cluster_bits))
		return -EINVAL;
	/* at most 2^29 bytes * 8 bits << 31: no overflow */
	covered = (data_bytes * 8) << bm->granularity_bits;
	if (!(bm->flags & QCOW2_BME_IN_USE) && disk_size > covered)
		return bad_entry(bm, path, "table size", bm->table_size,
				 "is too small for the disk");
	return 0;
}

int qcow2_bitmap_validate(const struct qcow2_bitmap *bm, unsigned cluster_bits, uint64_t disk_size,
			  const char *path)
{
	size_t name_len = bm->name ? strlen(bm->name) : 0;

	path = qcow2_fmt_path(path);
	if (bm->type != QCOW2_BME_TYPE_DIRTY_TRACKING)
		return bad_entry(bm, path, "type", bm->type, "is not 1 (dirty tracking)");
	if (bm->granularity_bits < QCOW2_BME_MIN_GRANULARITY_BITS ||
	    bm->granularity_bits > QCOW2_BME_MAX_GRANULARITY_BITS)
		return bad_entry(bm, path, "granularity_bits", bm->granularity_bits,
				 "is outside 9..31");
	if (bm->flags & QCOW2_BME_RESERVED_FLAGS)
		return bad_entry(bm, path, "flags", bm->flags, "has reserved bits set");
	if (name_len == 0 || name_len > QCOW2_BME_MAX_NAME_BYTES)
		return bad_entry(bm, path, "name size", name_len, "is outside 1..1023");
	return validate_table(bm, cluster_bits, disk_size, path);
}

bool qcow2_bitmap_usable(const struct qcow2_bitmap *bm)
{
	return bm->extra_data_size == 0 || (bm->flags & QCOW2_BME_EXTRA_DATA_COMPATIBLE);
}

size_t qcow2_bitmap_entry_bytes(const struct qcow2_bitmap *bm)
{
	size_t name_len = bm->name ? strlen(bm->name) : 0;

	return qcow2_pad8(sizeof(struct qcow2_disk_bitmap_entry) + (uint64_t)bm->extra_data_size +
			  name_len);
}

static int decode_entry(const struct qcow2_in *in, uint64_t off, unsigned index, const char *path,
			struct qcow2_bitmap *bm, uint64_t *entry_bytes)
{
	uint16_t name_size;
	uint64_t n;

	if (!qcow2_in_has(in, off, sizeof(struct qcow2_disk_bitmap_entry)))
		goto past_end;
	bm->table_offset = qcow2_in_be64(in, off + BME_OFF(table_offset));
	bm->table_size = qcow2_in_be32(in, off + BME_OFF(table_size));
	bm->flags = qcow2_in_be32(in, off + BME_OFF(flags));
	bm->type = qcow2_in_u8(in, off + BME_OFF(type));
	bm->granularity_bits = qcow2_in_u8(in, off + BME_OFF(granularity_bits));
	qcow2_in_copy(in, off + BME_OFF(name_size), &name_size, sizeof(name_size));
	name_size = be16toh(name_size);
	bm->extra_data_size = qcow2_in_be32(in, off + BME_OFF(extra_data_size));
	n = qcow2_pad8(sizeof(struct qcow2_disk_bitmap_entry) + (uint64_t)bm->extra_data_size +
		       name_size);
	if (!qcow2_in_has(in, off, n))
		goto past_end;
	off += sizeof(struct qcow2_disk_bitmap_entry);
	bm->extra_data = qcow2_fmt_memdup(in->buf + off, bm->extra_data_size);
	bm->name = qcow2_fmt_strndup(in->buf + off + bm->extra_data_size, name_size);
	if (!bm->extra_data || !bm->name)
		return -ENOMEM;
	if (strlen(bm->name) != name_size) {
		log_err("qcow2: %s: bitmap %u: name contains a NUL byte", path, index);
		return -EINVAL;
	}
	*entry_bytes = n;
	return 0;
past_end:
	log_err("qcow2: %s: bitmap directory entry %u at offset %" PRIu64
		" runs past the directory end (%zu bytes)",
		path, index, off, in->len);
	return -EINVAL;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorting makes this O(n log n): a hostile directory may hold 65535 names. */
static int check_unique_names(const struct qcow2_bitmap *bms, unsigned nb, const char *path)
{
	const char **names = malloc((nb ? nb : 1) * sizeof(*names));
	int ret = 0;

	if (!names)
		return -ENOMEM;
	for (unsigned i = 0; i < nb; i++)
		names[i] = bms[i].name;
	qsort(names, nb, sizeof(*names), cmp_names);
	for (unsigned i = 1; i < nb && !ret; i++) {
		if (strcmp(names[i - 1], names[i]) == 0) {
			log_err("qcow2: %s: bitmap name \"%s\" appears twice", path, names[i]);
			ret = -EINVAL;
		}
	}
	free(names);
	return ret;
}

static int parse_entries(const struct qcow2_in *in, const struct qcow2_header *h, const char *path,
			 struct qcow2_bitmap *bms)
{
	unsigned nb = h->bitmaps.nb_bitmaps;
	uint64_t off = 0;
	int ret;

	for (unsigned i = 0; i < nb; i++) {
		uint64_t n;

		ret = decode_entry(in, off, i, path, &bms[i], &n);
		if (!ret)
			ret = qcow2_bitmap_validate(&bms[i], h->cluster_bits, h->size_bytes, path);
		if (ret)
			return ret;
		off += n;
	}
	if (off != in->len) {
		log_err("qcow2: %s: bitmap directory of %zu bytes ends after %" PRIu64
			" bytes (%u entries)",
			path, in->len, off, nb);
		return -EINVAL;
	}
	return check_unique_names(bms, nb, path);
}

int qcow2_bitmap_dir_parse(const void *buf, size_t len, const struct qcow2_header *h,
			   const char *path, struct qcow2_bitmap **out)
{
	struct qcow2_in in = { buf, len };
	unsigned nb = h->bitmaps.nb_bitmaps;
	struct qcow2_bitmap *bms;
	int ret;

	path = qcow2_fmt_path(path);
	*out = NULL;
	if (!h->bitmaps.present || len != h->bitmaps.dir_bytes || nb == 0 ||
	    nb > QCOW2_MAX_BITMAPS) {
		log_err("qcow2: %s: bitmap directory of %zu bytes does not match the extension "
			"(%" PRIu32 " bitmaps, %" PRIu64 " bytes)",
			path, len, nb, h->bitmaps.dir_bytes);
		return -EINVAL;
	}
	bms = calloc(nb, sizeof(*bms));
	if (!bms)
		return -ENOMEM;
	ret = parse_entries(&in, h, path, bms);
	if (ret) {
		if (ret == -ENOMEM)
			log_err("qcow2: %s: out of memory reading the bitmap directory", path);
		qcow2_bitmap_dir_free(bms, nb);
		return ret;
	}
	*out = bms;
	return 0;
}

static void put_entry(const struct qcow2_bitmap *bm, uint8_t *p, size_t name_len)
{
	qcow2_put_be64(p + BME_OFF(table_offset), bm->table_offset);
	qcow2_put_be32(p + BME_OFF(table_size), bm->table_size);
	qcow2_put_be32(p + BME_OFF(flags), bm->flags);
	p[BME_OFF(type)] = bm->type;
	p[BME_OFF(granularity_bits)] = bm->granularity_bits;
	qcow2_put_be16(p + BME_OFF(name_size), (uint16_t)name_len);
	qcow2_put_be32(p + BME_OFF(extra_data_size), bm->extra_data_size);
	p += sizeof(struct qcow2_disk_bitmap_entry);
	if (bm->extra_data_size)
		memcpy(p, bm->extra_data, bm->extra_data_size);
	memcpy(p + bm->extra_data_size, bm->name, name_len);
}

int qcow2_bitmap_dir_serialise(const struct qcow2_bitmap *bms, unsigned nb, void *buf, size_t len,
			       size_t *used)
{
	size_t pos = 0;

	for (unsigned i = 0; i < nb; i++) {
		size_t name_len = bms[i].name ? strlen(bms[i].name) : 0;
		size_t n = qcow2_bitmap_entry_bytes(&bms[i]);

		if (name_len == 0 || name_len > QCOW2_BME_MAX_NAME_BYTES)
			return -EINVAL;
		if (n > len - pos)
			return -ENOSPC;
		memset((uint8_t *)buf + pos, 0, n);
		put_entry(&bms[i], (uint8_t *)buf + pos, name_len);
		pos += n;
	}
	if (used)
		*used = pos;
	return 0;
}

void qcow2_bitmap_dir_free(struct qcow2_bitmap *bms, unsigned nb)
{
	if (!bms)
		return;
	for (unsigned i = 0; i < nb; i++) {
		free(bms[i].name);
		free(bms[i].extra_data);
	}
	free(bms);
}

uint64_t qcow2_bitmap_table_entries(uint64_t disk_size, unsigned granularity_bits,
				    unsigned cluster_bits)
{
	uint64_t bits = div_round_up_u64(disk_size, UINT64_C(1) << granularity_bits);
	uint64_t bytes = div_round_up_u64(bits, 8);

	return div_round_up_u64(bytes, UINT64_C(1) << cluster_bits);
}

int qcow2_bitmap_table_entry_decode(uint64_t entry, unsigned cluster_bits, uint64_t *offset,
				    bool *all_ones, const char **why)
{
	const char *reason = NULL;

	*offset = entry & QCOW2_BMT_OFFSET_MASK;
	*all_ones = !*offset && (entry & QCOW2_BMT_ALL_ONES);
	if (entry & QCOW2_BMT_RESERVED_MASK)
		reason = "bitmap table entry has reserved bits set";
	else if (*offset && (entry & QCOW2_BMT_ALL_ONES))
		reason = "bitmap table entry has an offset and the all-ones flag";
	else if (!is_aligned_u64(*offset, UINT64_C(1) << cluster_bits))
		reason = "bitmap data offset is not cluster aligned";
	if (!reason)
		return 0;
	if (why)
		*why = reason;
	return -EINVAL;
}
