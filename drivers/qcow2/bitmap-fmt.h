/* SPDX-License-Identifier: MIT */
/*
 * qcow2 persistent dirty bitmaps: directory entries, bitmap tables and their codec.
 * Same conventions as format.h: pure functions on buffers, safe for any
 * input, 0/-errno, one log line naming the field at fault.
 */
#ifndef QTAP_QCOW2_BITMAP_FMT_H
#define QTAP_QCOW2_BITMAP_FMT_H

#include "qcow2/format.h"

/* ---- persistent dirty bitmaps ------------------------------------------------- */

struct qcow2_disk_bitmap_entry {
	uint64_t table_offset;
	uint32_t table_size;
	uint32_t flags;
	uint8_t type;
	uint8_t granularity_bits;
	uint16_t name_size;
	uint32_t extra_data_size;
	/* extra data, name, padding to 8 */
};
_Static_assert(sizeof(struct qcow2_disk_bitmap_entry) == 24, "bitmap directory entry");

#define QCOW2_BME_IN_USE (1u << 0)
#define QCOW2_BME_AUTO (1u << 1)
#define QCOW2_BME_EXTRA_DATA_COMPATIBLE (1u << 2)
#define QCOW2_BME_RESERVED_FLAGS 0xfffffff8u
#define QCOW2_BME_TYPE_DIRTY_TRACKING 1u
#define QCOW2_BME_MIN_GRANULARITY_BITS 9u
#define QCOW2_BME_MAX_GRANULARITY_BITS 31u
#define QCOW2_BME_MAX_NAME_BYTES 1023u
#define QCOW2_BME_MAX_TABLE_ENTRIES 0x8000000u
#define QCOW2_BME_MAX_DATA_BYTES 0x20000000ull /* 512 MiB */

#define QCOW2_BMT_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_BMT_RESERVED_MASK 0xff000000000001feull
#define QCOW2_BMT_ALL_ONES 1ull

struct qcow2_bitmap {
	uint64_t table_offset;
	uint32_t table_size; /* entries */
	uint32_t flags;	     /* QCOW2_BME_* */
	uint8_t type;
	uint8_t granularity_bits;
	char *name; /* NUL-terminated; no NUL inside */
	uint8_t *extra_data;
	uint32_t extra_data_size;
};

/*
 * qcow2_bitmap_dir_parse - decode the bitmap directory @buf[0, @len) that
 * the header's bitmaps extension describes (@len must be its dir_bytes).
 * Checks QEMU's constraints for each entry (qcow2_bitmap_validate()), that
 * there are exactly nb_bitmaps entries ending exactly at @len, and that
 * names are unique.  *@out is an array of h->bitmaps.nb_bitmaps for
 * qcow2_bitmap_dir_free().  Returns 0, -EINVAL, -ENOMEM; logged.
 */
int qcow2_bitmap_dir_parse(const void *buf, size_t len, const struct qcow2_header *h,
			   const char *path, struct qcow2_bitmap **out);

/*
 * qcow2_bitmap_validate - one entry: table offset non-zero and aligned,
 * size 1..2^27 entries and at most 512 MiB of data, type 1, granularity
 * 9..31 bits, name 1..1023 bytes, no reserved flag; a bitmap not in use
 * must have a table large enough for @disk_size.  Returns 0 or -EINVAL;
 * logged.
 */
int qcow2_bitmap_validate(const struct qcow2_bitmap *bm, unsigned cluster_bits, uint64_t disk_size,
			  const char *path);

/*
 * qcow2_bitmap_usable - whether a writer may use and update the bitmap: QEMU
 * knows no extra data, and the spec allows using a bitmap with unknown
 * extra data only when extra_data_compatible is set.  QEMU itself refuses
 * to load bitmaps with any extra data; this layer keeps such entries
 * (and their data) so a rewrite preserves them.
 */
bool qcow2_bitmap_usable(const struct qcow2_bitmap *bm);

/* qcow2_bitmap_entry_bytes - bytes of the entry when written, padded to 8. */
size_t qcow2_bitmap_entry_bytes(const struct qcow2_bitmap *bm);

/*
 * qcow2_bitmap_dir_serialise - write @nb entries into @buf[0, @len); *@used
 * gets the directory size for the extension.  -ENOSPC, -EINVAL (name too
 * long or empty).
 */
int qcow2_bitmap_dir_serialise(const struct qcow2_bitmap *bms, unsigned nb, void *buf, size_t len,
			       size_t *used);

void qcow2_bitmap_dir_free(struct qcow2_bitmap *bms, unsigned nb);

/*
 * qcow2_bitmap_table_entries - bitmap table entries (clusters of bitmap data)
 * needed for a disk of @disk_size with @granularity_bits.
 */
uint64_t qcow2_bitmap_table_entries(uint64_t disk_size, unsigned granularity_bits,
				    unsigned cluster_bits);

/*
 * qcow2_bitmap_table_entry_decode - a bitmap table entry: data cluster
 * offset, or 0 with *@all_ones telling whether that cluster of the bitmap
 * reads as all ones.  -EINVAL with *@why for reserved bits, an unaligned
 * offset, or the all-ones flag next to an offset.
 */
int qcow2_bitmap_table_entry_decode(uint64_t entry, unsigned cluster_bits, uint64_t *offset,
				    bool *all_ones, const char **why);

#endif
