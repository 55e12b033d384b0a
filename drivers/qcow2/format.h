/* SPDX-License-Identifier: MIT */
/*
 * qcow2 on-disk format: structures, constants and pure codecs.
 *
 * This layer turns bytes of a qcow2 image into host-endian structures and
 * back, and decides whether those bytes are acceptable the way QEMU 7.2
 * decides it at open and on each lookup.  It never does I/O: functions take
 * buffers, and the few that need more than one buffer (the snapshot table)
 * take a qcow2_read_fn.  The driver (open, caches, allocation) builds on it.
 * The internal snapshot table and the persistent dirty bitmaps have their
 * own headers beside this one, snapshot-fmt.h and bitmap-fmt.h.
 *
 * Contract for every function here:
 *
 *  - Image bytes are untrusted.  Every parser is safe for any content and
 *    any length (it is fuzzed); every field goes through lib/checked.h.
 *  - Return 0 or -errno:
 *      -EINVAL   malformed or hostile (a field out of range, overlapping
 *                tables, an entry QEMU would call corrupt);
 *      -ENOTSUP  well-formed but not supported (version, an unknown
 *                incompatible feature bit, compression type);
 *      -ERANGE   a value does not fit its on-disk field (encoders,
 *                refcount arithmetic);
 *      -ENOSPC   the output buffer is too small, or compressing a cluster
 *                does not make it smaller;
 *      -ENOMEM, -EIO (a qcow2_read_fn failure is passed up unchanged).
 *  - Logging: the open-time parsers (header, snapshot, bitmap directory)
 *    log one line where they refuse something, naming the field and value:
 *    "qcow2: PATH: l1_table_offset 0x1234 is not cluster aligned".  @path
 *    is only used for that and may be NULL.  The entry codecs (L1, L2,
 *    refcounts, compression) run on the I/O path and do not log: they
 *    return the error and, where useful, a static reason string for the
 *    caller, who knows the guest offset, to log.
 *  - Ownership: parsers fill caller-owned structs whose variable parts are
 *    malloc'ed; release them with the matching _fini/_free, which accept a
 *    zeroed struct, NULL, and being called twice.  On failure a parser
 *    leaves nothing to free.
 *  - Units: offsets and lengths are bytes (uint64_t); table sizes are in
 *    entries and say so; sectors appear only inside the compressed L2
 *    descriptor, as the format defines it.
 *
 * Threads: no function keeps state between calls except a qcow2_codec,
 * which is used by one thread at a time.
 */
#ifndef QTAP_QCOW2_FORMAT_H
#define QTAP_QCOW2_FORMAT_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "byteorder.h"

/* ---- big-endian access ------------------------------------------------ */

/* lib/byteorder.h's, under the names the qcow2 files use */
#define qcow2_get_be16 get_be16
#define qcow2_get_be32 get_be32
#define qcow2_get_be64 get_be64
#define qcow2_put_be16 put_be16
#define qcow2_put_be32 put_be32
#define qcow2_put_be64 put_be64

/* ---- the fixed header ---------------------------------------------------- */

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

/*
 * The header as it lies at offset 0, every field big-endian.  v2 images end
 * at incompatible_features (72 bytes); v3 images have header_length >= 104,
 * and QEMU >= 5.1 writes 112 (compression_type plus padding).
 */
struct qcow2_disk_header {
	uint32_t magic;
	uint32_t version;
	uint64_t backing_file_offset;
	uint32_t backing_file_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	/* version 3 */
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	uint32_t refcount_order;
	uint32_t header_length;
	/* optional: present iff header_length > 104 */
	uint8_t compression_type;
	uint8_t padding[7];
};

#define QCOW2_V2_HEADER_BYTES 72u
#define QCOW2_V3_MIN_HEADER_BYTES 104u
#define QCOW2_V3_HEADER_BYTES 112u

_Static_assert(offsetof(struct qcow2_disk_header, magic) == 0, "magic");
_Static_assert(offsetof(struct qcow2_disk_header, version) == 4, "version");
_Static_assert(offsetof(struct qcow2_disk_header, backing_file_offset) == 8, "backing offset");
_Static_assert(offsetof(struct qcow2_disk_header, backing_file_size) == 16, "backing size");
_Static_assert(offsetof(struct qcow2_disk_header, cluster_bits) == 20, "cluster_bits");
_Static_assert(offsetof(struct qcow2_disk_header, size) == 24, "size");
_Static_assert(offsetof(struct qcow2_disk_header, crypt_method) == 32, "crypt_method");
_Static_assert(offsetof(struct qcow2_disk_header, l1_size) == 36, "l1_size");
_Static_assert(offsetof(struct qcow2_disk_header, l1_table_offset) == 40, "l1_table_offset");
_Static_assert(offsetof(struct qcow2_disk_header, refcount_table_offset) == 48, "reftable");
_Static_assert(offsetof(struct qcow2_disk_header, refcount_table_clusters) == 56, "reftable size");
_Static_assert(offsetof(struct qcow2_disk_header, nb_snapshots) == 60, "nb_snapshots");
_Static_assert(offsetof(struct qcow2_disk_header, snapshots_offset) == 64, "snapshots_offset");
_Static_assert(offsetof(struct qcow2_disk_header, incompatible_features) == QCOW2_V2_HEADER_BYTES,
	       "v2 header ends where the v3 fields start");
_Static_assert(offsetof(struct qcow2_disk_header, compatible_features) == 80, "compatible");
_Static_assert(offsetof(struct qcow2_disk_header, autoclear_features) == 88, "autoclear");
_Static_assert(offsetof(struct qcow2_disk_header, refcount_order) == 96, "refcount_order");
_Static_assert(offsetof(struct qcow2_disk_header, header_length) == 100, "header_length");
_Static_assert(offsetof(struct qcow2_disk_header, compression_type) == QCOW2_V3_MIN_HEADER_BYTES,
	       "compression type follows the 104-byte v3 header");
_Static_assert(sizeof(struct qcow2_disk_header) == QCOW2_V3_HEADER_BYTES, "v3 header size");

/* Offsets for in-place updates of single fields (QEMU's synced writes). */
#define QCOW2_HDR_OFF(field) offsetof(struct qcow2_disk_header, field)

/* QEMU's implementation limits (block/qcow2.h). */
#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u
#define QCOW2_EXTL2_MIN_CLUSTER_BITS 14u /* 32 subclusters of >= 512 bytes */
#define QCOW2_MAX_REFCOUNT_ORDER 6u
#define QCOW2_V2_REFCOUNT_ORDER 4u
#define QCOW2_MAX_L1_BYTES (32ull << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8ull << 20)
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_MAX_SNAPSHOT_EXTRA_BYTES 1024u
#define QCOW2_MAX_SNAPSHOTS_BYTES (64ull << 20)
#define QCOW2_MAX_BACKING_NAME_BYTES 1023u
#define QCOW2_MAX_BACKING_FORMAT_BYTES 15u
#define QCOW2_MAX_HOST_OFFSET (1ull << 56) /* exclusive */

/* crypt_method */
#define QCOW2_CRYPT_NONE 0u
#define QCOW2_CRYPT_AES 1u
#define QCOW2_CRYPT_LUKS 2u

/* compression_type */
#define QCOW2_COMPRESSION_DEFLATE 0u
#define QCOW2_COMPRESSION_ZSTD 1u

/* Feature bits; "type" numbers as used by the feature name table. */
#define QCOW2_FEAT_INCOMPAT 0u
#define QCOW2_FEAT_COMPAT 1u
#define QCOW2_FEAT_AUTOCLEAR 2u

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1full

#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_COMPAT_KNOWN 0x1ull

#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)
#define QCOW2_AUTOCLEAR_KNOWN 0x3ull

/* ---- header extensions --------------------------------------------------- */

#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_FDE 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* Each extension: this, then len bytes of data, then zeros to 8 bytes. */
struct qcow2_disk_ext {
	uint32_t type;
	uint32_t len;
};
_Static_assert(sizeof(struct qcow2_disk_ext) == 8, "extension header");

#define QCOW2_FEATURE_NAME_BYTES 46u
struct qcow2_disk_feature {
	uint8_t type;
	uint8_t bit;
	char name[QCOW2_FEATURE_NAME_BYTES]; /* NUL-padded, not terminated if full */
};
_Static_assert(sizeof(struct qcow2_disk_feature) == 48, "feature table entry");

struct qcow2_disk_bitmaps_ext {
	uint32_t nb_bitmaps;
	uint32_t reserved;
	uint64_t dir_size;
	uint64_t dir_offset;
};
_Static_assert(sizeof(struct qcow2_disk_bitmaps_ext) == 24, "bitmaps extension");
_Static_assert(offsetof(struct qcow2_disk_bitmaps_ext, dir_offset) == 16, "dir offset");

struct qcow2_disk_fde_ext {
	uint64_t offset;
	uint64_t length;
};
_Static_assert(sizeof(struct qcow2_disk_fde_ext) == 16, "FDE extension");

#define QCOW2_MAX_BITMAPS 65535u
#define QCOW2_MAX_BITMAP_DIR_BYTES (1024ull * QCOW2_MAX_BITMAPS)

/* ---- host-endian header ---------------------------------------------------- */

struct qcow2_feature_name {
	uint8_t type; /* QCOW2_FEAT_* */
	uint8_t bit;
	char name[QCOW2_FEATURE_NAME_BYTES + 1];
};

/* An extension this code does not know, kept verbatim for rewrites. */
struct qcow2_ext_raw {
	uint32_t type;
	uint32_t len;
	uint8_t *data;
};

struct qcow2_bitmaps_ext {
	bool present;
	uint32_t nb_bitmaps;
	uint64_t dir_bytes;
	uint64_t dir_offset;
};

struct qcow2_fde_ext {
	bool present;
	uint64_t offset;
	uint64_t length;
};

/*
 * struct qcow2_header - the whole of cluster 0.
 *
 * v2 images get the values v2 implies: no feature bits, refcount_order 4,
 * header_length 72.  When the image has a bitmaps extension but autoclear
 * bit 0 is clear, QEMU ignores it (a program that does not know bitmaps
 * modified the image): it is kept in @bitmaps unvalidated, and
 * qcow2_header_serialise() drops it, as QEMU's next header rewrite does.
 */
struct qcow2_header {
	uint32_t version; /* 2 or 3 */
	uint32_t cluster_bits;
	uint64_t size_bytes; /* virtual disk size */
	uint32_t crypt_method;
	uint32_t l1_size; /* entries */
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;

	/* Where the backing name was; a serialised header places it anew. */
	uint64_t backing_file_offset;
	uint32_t backing_file_size;

	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	uint32_t refcount_order;
	uint32_t header_length;
	uint8_t compression_type;

	/* Header bytes [112, header_length) of a newer format, kept verbatim. */
	uint8_t *unknown_fields;
	uint32_t unknown_fields_len;

	bool has_backing_file;
	char backing_file[QCOW2_MAX_BACKING_NAME_BYTES + 1];
	bool has_backing_format;
	char backing_format[QCOW2_MAX_BACKING_FORMAT_BYTES + 1];
	char *data_file; /* external data file name; NULL: no extension */
	struct qcow2_fde_ext fde;
	struct qcow2_bitmaps_ext bitmaps;
	bool has_feature_table;
	struct qcow2_feature_name *feature_names;
	unsigned nb_feature_names;
	struct qcow2_ext_raw *unknown_exts; /* in image order */
	unsigned nb_unknown_exts;
};

/* Parse flags. */
#define QCOW2_PARSE_CHECK                                                                          \
	(1u << 0) /* opened for check/repair: as QEMU's
				     * BDRV_O_CHECK, accept a zero-sized
				     * reftable and skip the snapshot table
				     * bounds, which check repairs; tables
				     * may overlap (check reports it); the
				     * backing name may lie in the header
				     * or hold a NUL (check never uses it) */

/*
 * qcow2_header_parse - decode and validate cluster 0.
 *
 * @buf holds the first @len bytes of the image: all of cluster 0, or the
 * whole file when it is shorter.  Bytes of cluster 0 past @len read as
 * zeros, as a read past the end of the file does in QEMU; pass at least
 * QCOW2_HEADER_PROBE_BYTES and use qcow2_header_cluster_bytes() to learn
 * how much cluster 0 is.  Fills *@out (owned by the caller, release with
 * qcow2_header_fini()).  Returns 0, -EINVAL, -ENOTSUP (version, unknown
 * incompatible features, compression type) or -ENOMEM; logged.
 *
 * Stricter than QEMU, for images no QEMU writes: header_length must be a
 * multiple of 8 (as the spec says), the backing name must not lie inside
 * the fixed header, names must not contain NUL bytes, a known extension
 * may appear only once, and the header, L1 table, refcount table,
 * snapshot table, bitmap directory and encryption header must not overlap
 * (QEMU checks overlaps only before writing; a QCOW2_PARSE_CHECK parse
 * accepts them).
 */
#define QCOW2_HEADER_PROBE_BYTES QCOW2_V3_HEADER_BYTES
int qcow2_header_parse(const void *buf, size_t len, const char *path, unsigned flags,
		       struct qcow2_header *out);

/*
 * qcow2_header_cluster_bytes - the cluster size an image's first @len bytes
 * declare, to know how much to read for qcow2_header_parse().  Returns 0, or
 * -EINVAL when the bytes are not a qcow2 header with a sane cluster size
 * (not logged: the parse that follows says why).
 */
int qcow2_header_cluster_bytes(const void *buf, size_t len, uint64_t *cluster_bytes);

/*
 * qcow2_header_validate - the open-time checks on a host-endian header (what
 * qcow2_header_parse() runs after decoding; also for headers the driver
 * built or changed before writing them).  Returns 0, -EINVAL or -ENOTSUP;
 * logged.
 */
int qcow2_header_validate(const struct qcow2_header *h, const char *path, unsigned flags);

/* qcow2_header_fini - free what a parse allocated and zero *@h. */
void qcow2_header_fini(struct qcow2_header *h);

/*
 * qcow2_header_serialise - build cluster 0 the way QEMU's header rewrite does:
 * the fixed header, preserved unknown header bytes, then the extensions in
 * QEMU's order (backing format, data file, FDE, feature table, bitmaps
 * when autoclear bit 0 vouches for them, unknown ones in image order), the end marker and the backing file name;
 * zeros after that up to @len.  The backing file offset and size and the
 * v3 header_length are computed, not copied.  A header_length of 104 (an
 * image from before QEMU 5.1) is kept when nothing needs the longer header.
 * @len is normally the cluster size.  For images made by qemu-img this
 * reproduces cluster 0 byte for byte.  *@used (may be NULL) gets the bytes
 * before the zero tail.  Returns 0, -ENOSPC (does not fit in @len) or
 * -EINVAL (a name or value that cannot be represented); not logged.
 */
int qcow2_header_serialise(const struct qcow2_header *h, void *buf, size_t len, size_t *used);

/*
 * qcow2_feature_name - the image's name for a feature bit from its feature
 * name table, or NULL.
 */
const char *qcow2_feature_name(const struct qcow2_header *h, unsigned type, unsigned bit);

/*
 * qcow2_header_set_default_feature_table - replace the feature name table by
 * the one QEMU 7.2 writes: its 8 known features for v3 images with clusters
 * larger than 4 KiB (smaller ones keep room for the backing name), none
 * otherwise.  Returns 0 or -ENOMEM.
 */
int qcow2_header_set_default_feature_table(struct qcow2_header *h);

/*
 * qcow2_header_set_backing - set (or clear, with @name NULL) the backing
 * file name and format (@format NULL: no format extension).  Returns 0 or
 * -EINVAL (name over 1023 bytes, format over 15); not logged.
 */
int qcow2_header_set_backing(struct qcow2_header *h, const char *name, const char *format);

/*
 * qcow2_header_set_data_file - set (or clear, with NULL) the external data
 * file name extension; the incompatible bit is the caller's.  Returns 0 or
 * -ENOMEM.
 */
int qcow2_header_set_data_file(struct qcow2_header *h, const char *name);

/* ---- geometry -------------------------------------------------------------- */

/*
 * struct qcow2_geom - the numbers derived from a validated header that every
 * lookup needs, computed once.
 */
struct qcow2_geom {
	unsigned version;
	unsigned cluster_bits;
	uint64_t cluster_bytes;
	bool extended_l2;
	bool data_file;		 /* incompatible bit 2 */
	unsigned l2_entry_bytes; /* 8, or 16 with extended L2 */
	unsigned l2_bits;	 /* log2 of entries per L2 table */
	uint64_t l2_entries;
	unsigned subcluster_bits;
	uint64_t subcluster_bytes;
	unsigned subclusters; /* per cluster: 1, or 32 with extended L2 */
	unsigned refcount_order;
	unsigned refcount_bits;
	unsigned refblock_bits; /* log2 of refcount entries per block */
	uint64_t refblock_entries;
	unsigned csize_shift;	    /* x = 62 - (cluster_bits - 8) */
	uint64_t csize_mask;	    /* additional-sector count field */
	uint64_t coffset_mask;	    /* compressed host offset field */
	uint64_t l1_vm_state_index; /* first L1 entry past the disk */
};

/* qcow2_geom_init - fill *@g from a header qcow2_header_validate() accepts. */
void qcow2_geom_init(struct qcow2_geom *g, const struct qcow2_header *h);

/* qcow2_size_to_l1 - L1 entries needed to map @size_bytes (no overflow). */
uint64_t qcow2_size_to_l1(unsigned cluster_bits, bool extended_l2, uint64_t size_bytes);

static inline uint64_t qcow2_l1_index(const struct qcow2_geom *g, uint64_t guest_offset)
{
	return guest_offset >> (g->cluster_bits + g->l2_bits);
}

static inline uint64_t qcow2_l2_index(const struct qcow2_geom *g, uint64_t guest_offset)
{
	return (guest_offset >> g->cluster_bits) & (g->l2_entries - 1);
}

static inline unsigned qcow2_sc_index(const struct qcow2_geom *g, uint64_t guest_offset)
{
	return (unsigned)((guest_offset >> g->subcluster_bits) & (g->subclusters - 1));
}

/* ---- L1 and L2 entries ------------------------------------------------------ */

#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)

#define QCOW2_L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L1E_RESERVED_MASK 0x7f000000000001ffull
#define QCOW2_L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L2E_STD_RESERVED_MASK 0x3f000000000001feull

/* Extended L2 bitmap: bits 0-31 allocated, bits 32-63 reads-as-zero. */
#define QCOW2_SC_ALLOC(i) (1ull << (i))
#define QCOW2_SC_ZERO(i) (1ull << (32 + (i)))
#define QCOW2_SC_ALL_ALLOC 0x00000000ffffffffull
#define QCOW2_SC_ALL_ZERO 0xffffffff00000000ull

/*
 * Cluster types as QEMU's qcow2_get_cluster_type() sees them; with extended
 * L2 the subcluster types below are the ones that matter for I/O.
 */
enum qcow2_cluster_type {
	QCOW2_CLUSTER_UNALLOCATED = 0, /* read from backing, or zeros */
	QCOW2_CLUSTER_ZERO_PLAIN,      /* reads as zeros, no host cluster */
	QCOW2_CLUSTER_ZERO_ALLOC,      /* reads as zeros, host cluster kept */
	QCOW2_CLUSTER_NORMAL,
	QCOW2_CLUSTER_COMPRESSED,
};

enum qcow2_subcluster_type {
	QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN = 0,
	QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC, /* host space reserved, reads go to backing */
	QCOW2_SUBCLUSTER_ZERO_PLAIN,
	QCOW2_SUBCLUSTER_ZERO_ALLOC,
	QCOW2_SUBCLUSTER_NORMAL,
	QCOW2_SUBCLUSTER_COMPRESSED,
	QCOW2_SUBCLUSTER_INVALID,
};

/*
 * qcow2_l1_entry_decode - split a host-endian L1 entry.  *@l2_offset is 0
 * when no L2 table is allocated.  Returns 0, or -EINVAL with *@why set
 * when reserved bits are set or the L2 offset is not cluster aligned.
 */
int qcow2_l1_entry_decode(const struct qcow2_geom *g, uint64_t entry, uint64_t *l2_offset,
			  bool *copied, const char **why);

/* qcow2_l1_entry_encode - an L1 entry; -ERANGE for an unrepresentable offset. */
int qcow2_l1_entry_encode(const struct qcow2_geom *g, uint64_t l2_offset, bool copied,
			  uint64_t *entry);

/*
 * struct qcow2_l2_entry - one decoded L2 entry.
 *
 * @host_offset: NORMAL and ZERO_ALLOC: the host cluster; COMPRESSED: the
 * host byte offset of the compressed data; otherwise 0.
 * @compressed_bytes: COMPRESSED only: bytes to read from @host_offset
 * (whole sectors as the entry counts them, minus the offset into the first
 * sector); decompression stops after one cluster, so the tail may belong
 * to the next compressed cluster.
 */
struct qcow2_l2_entry {
	enum qcow2_cluster_type type;
	bool copied;
	uint64_t host_offset;
	uint64_t compressed_bytes;
	uint32_t alloc_bitmap; /* extended L2: subclusters allocated */
	uint32_t zero_bitmap;  /* extended L2: subclusters reading as zero */
};

/*
 * qcow2_l2_entry_decode - decode a host-endian L2 entry (@bitmap is the
 * second word with extended L2, ignored otherwise).  Returns 0, or -EINVAL
 * with *@why when the entry is corrupt: reserved bits set, an unaligned
 * host offset, a zero flag in a v2 image, COPIED on a compressed cluster, a
 * compressed cluster with a data file or a non-zero subcluster bitmap,
 * alloc and zero bits of one subcluster both set, or alloc bits without a
 * host cluster.  QEMU signals corruption for the run-time subset of these
 * and `qemu-img check` reports all of them.  The check that a data-file
 * entry's host offset equals its guest offset is the caller's.  *@out is
 * filled even when -EINVAL is returned, so a checker can report and go on.
 */
int qcow2_l2_entry_decode(const struct qcow2_geom *g, uint64_t entry, uint64_t bitmap,
			  struct qcow2_l2_entry *out, const char **why);

/*
 * qcow2_subcluster_type - the type of subcluster @sc (0 for standard L2) of
 * a decoded entry, following QEMU's qcow2_get_subcluster_type().
 */
enum qcow2_subcluster_type qcow2_subcluster_type(const struct qcow2_geom *g,
						 const struct qcow2_l2_entry *e, unsigned sc);

/* Encoders; -ERANGE when the offset does not fit its field or is unaligned. */
int qcow2_l2_entry_encode_normal(const struct qcow2_geom *g, uint64_t host_offset, bool copied,
				 uint64_t *entry);
uint64_t qcow2_l2_entry_encode_zero(uint64_t host_offset, bool copied);
int qcow2_l2_entry_encode_compressed(const struct qcow2_geom *g, uint64_t host_offset,
				     uint64_t compressed_bytes, uint64_t *entry);

/* ---- refcounts ------------------------------------------------------------- */

#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull
#define QCOW2_REFT_RESERVED_MASK 0x1ffull

/* qcow2_refcount_max - the largest refcount of width 2^@order bits. */
static inline uint64_t qcow2_refcount_max(unsigned order)
{
	return order >= 6 ? UINT64_MAX : (UINT64_C(1) << (1u << order)) - 1;
}

/*
 * qcow2_refcount_get / _set - entry @index of a refcount block with entries
 * of 2^@order bits (order 0..6).  Widths below 8 bits are packed LSB first
 * within each byte, wider ones are big-endian.  @index must be below the
 * block's entry count (an invariant of the caller's arithmetic).  _set
 * returns -ERANGE when @value exceeds qcow2_refcount_max(@order).
 */
uint64_t qcow2_refcount_get(const void *block, unsigned order, uint64_t index);
int qcow2_refcount_set(void *block, unsigned order, uint64_t index, uint64_t value);

/*
 * qcow2_refcount_add - @refcount + @addend within [0, max(@order)] into
 * *@out; -ERANGE on overflow or when it would go below zero.
 */
int qcow2_refcount_add(uint64_t refcount, int64_t addend, unsigned order, uint64_t *out);

/*
 * qcow2_reftable_entry_decode - a refcount table entry: refblock offset (0:
 * none).  -EINVAL with *@why for reserved bits or an unaligned offset.
 */
int qcow2_reftable_entry_decode(const struct qcow2_geom *g, uint64_t entry,
				uint64_t *refblock_offset, const char **why);

/* ---- compressed clusters ------------------------------------------------------ */

/*
 * struct qcow2_codec - compression state for one thread: zlib and zstd
 * contexts set up once, so compressing or decompressing a cluster does not
 * allocate (QEMU's compression type 0 is raw deflate with a 4 KiB window,
 * type 1 a zstd frame).
 */
struct qcow2_codec;

/* qcow2_codec_new - for @compression_type.  0, -ENOTSUP, -ENOMEM. */
int qcow2_codec_new(unsigned compression_type, struct qcow2_codec **out);
void qcow2_codec_free(struct qcow2_codec *c);

/*
 * qcow2_decompress - fill exactly @dst_len bytes (one cluster) from @src.
 * @src_len may exceed the compressed data: decoding stops when the cluster
 * is full and the rest is ignored, as QEMU ignores the tail of the last
 * sector.  zstd data may be several frames, and the frame that fills the
 * cluster must end there (QEMU's rule; deflate has no such rule in QEMU).
 * Returns 0, or -EIO when the data is corrupt or too short for a cluster.
 */
int qcow2_decompress(struct qcow2_codec *c, void *dst, size_t dst_len, const void *src,
		     size_t src_len);

/*
 * qcow2_compress - compress @src_len bytes (one cluster) into @dst.  The
 * result must be smaller than the input, as QEMU stores a cluster
 * uncompressed otherwise: -ENOSPC when it is not (or does not fit
 * @dst_cap).  Returns 0 and *@out_len, or -ENOSPC, -EIO.
 */
int qcow2_compress(struct qcow2_codec *c, void *dst, size_t dst_cap, const void *src,
		   size_t src_len, size_t *out_len);

#endif
