/* SPDX-License-Identifier: MIT */
/*
 * qcow2 internal snapshot table: on-disk entries and their codec.
 * Same conventions as format.h: pure functions on buffers, safe for any
 * input, 0/-errno, one log line naming the field at fault.
 */
#ifndef QTAP_QCOW2_SNAPSHOT_FMT_H
#define QTAP_QCOW2_SNAPSHOT_FMT_H

#include "qcow2/format.h"

/* ---- snapshot table --------------------------------------------------------- */

struct qcow2_disk_snapshot {
	uint64_t l1_table_offset;
	uint32_t l1_size;
	uint16_t id_str_size;
	uint16_t name_size;
	uint32_t date_sec;
	uint32_t date_nsec;
	uint64_t vm_clock_nsec;
	uint32_t vm_state_size;
	uint32_t extra_data_size;
	/* extra data, id string, name string, padding to 8 */
};
_Static_assert(sizeof(struct qcow2_disk_snapshot) == 40, "snapshot entry header");
_Static_assert(offsetof(struct qcow2_disk_snapshot, extra_data_size) == 36, "extra size");

struct qcow2_disk_snapshot_extra {
	uint64_t vm_state_size_large;
	uint64_t disk_size;
	uint64_t icount;
};
_Static_assert(sizeof(struct qcow2_disk_snapshot_extra) == 24, "snapshot extra data");

#define QCOW2_SNAPSHOT_HEADER_BYTES 40u
#define QCOW2_SNAPSHOT_EXTRA_BYTES 24u
#define QCOW2_SNAPSHOT_V3_MIN_EXTRA_BYTES 16u /* through disk_size */
/* Largest entry: header, capped extra data, two 16-bit-sized strings, pad. */
#define QCOW2_SNAPSHOT_MAX_ENTRY_BYTES                                                             \
	(QCOW2_SNAPSHOT_HEADER_BYTES + QCOW2_MAX_SNAPSHOT_EXTRA_BYTES + 2u * 65535u + 7u)

/*
 * struct qcow2_snapshot - one snapshot table entry.  Fields missing from
 * older entries read as QEMU reads them: the 32-bit VM state size, the
 * disk size of the image (the @image_size given to the parser), icount -1.
 */
struct qcow2_snapshot {
	uint64_t l1_table_offset;
	uint32_t l1_size; /* entries */
	char *id;	  /* NUL-terminated */
	char *name;
	uint32_t date_sec;
	uint32_t date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_bytes;
	uint64_t disk_size_bytes;
	int64_t icount;		  /* -1: not recorded */
	uint32_t extra_data_size; /* as found; < 16 in a v3 image is a check error */
	uint8_t *unknown_extra;	  /* extra data past the 24 bytes known */
	uint32_t unknown_extra_len;
};

#define QCOW2_SNAPSHOT_REPAIR                                                                      \
	(1u << 0) /* truncate over-long extra data
					 * (qemu-img check -r) instead of
					 * refusing the entry */

/*
 * qcow2_snapshot_parse - decode the entry starting at *@pos (first rounded
 * up to 8, as entries are 8-byte aligned) of @buf[0, @len); on success *@pos
 * is just past it (unpadded).  @index is for messages.  Returns 0, -EINVAL
 * (entry runs past @len, extra data over 1 KiB without REPAIR), -ENOMEM.
 */
int qcow2_snapshot_parse(const void *buf, size_t len, size_t *pos, unsigned index,
			 uint64_t image_size, const char *path, unsigned flags,
			 struct qcow2_snapshot *out);

/*
 * qcow2_snapshot_entry_bytes - bytes the entry takes when written, padding
 * to 8 included.  QEMU always writes the 24 known extra bytes, so entries
 * from older writers grow on a rewrite exactly as they do with QEMU.
 */
size_t qcow2_snapshot_entry_bytes(const struct qcow2_snapshot *sn);

/*
 * qcow2_snapshot_serialise - write the entry at *@pos (rounded up to 8, the
 * gap zeroed) of @buf[0, @len) and set *@pos just past it, unpadded.
 * -ENOSPC when it does not fit; -EINVAL for an id or name over 65535
 * bytes or oversized extra data.
 */
int qcow2_snapshot_serialise(const struct qcow2_snapshot *sn, void *buf, size_t len, size_t *pos);

/*
 * qcow2_snapshot_validate_l1 - the checks QEMU makes before using a
 * snapshot's L1 table (goto, delete, load_tmp): size limit, alignment,
 * end within INT64_MAX.  Not part of parsing: QEMU opens images whose
 * unused snapshots are broken.  Returns 0 or -EINVAL; logged.
 */
int qcow2_snapshot_validate_l1(const struct qcow2_snapshot *sn, unsigned cluster_bits,
			       const char *path, unsigned index);

void qcow2_snapshot_fini(struct qcow2_snapshot *sn);

/*
 * qcow2_read_fn - read @len bytes at image offset @offset into @buf.
 * Returns 0 or -errno; a short file reads as zeros, as in QEMU.
 */
typedef int qcow2_read_fn(void *opaque, uint64_t offset, void *buf, size_t len);

/*
 * qcow2_snapshot_table_read - read and parse the h->nb_snapshots entries at
 * h->snapshots_offset through @read, enforcing QEMU's 64 MiB table limit.
 * *@out is an array (NULL when there are none) for
 * qcow2_snapshot_table_free(); *@table_bytes (may be NULL) gets the table's
 * length as QEMU counts it.  Returns 0 or -errno; logged.
 */
int qcow2_snapshot_table_read(const struct qcow2_header *h, qcow2_read_fn *read, void *opaque,
			      const char *path, unsigned flags, struct qcow2_snapshot **out,
			      uint64_t *table_bytes);

/*
 * qcow2_snapshot_table_bytes - bytes of the table when written (the last
 * entry unpadded, as QEMU counts it).
 */
uint64_t qcow2_snapshot_table_bytes(const struct qcow2_snapshot *sns, unsigned nb);

/* qcow2_snapshot_table_serialise - write @nb entries into @buf[0, @len). */
int qcow2_snapshot_table_serialise(const struct qcow2_snapshot *sns, unsigned nb, void *buf,
				   size_t len);

void qcow2_snapshot_table_free(struct qcow2_snapshot *sns, unsigned nb);

#endif
