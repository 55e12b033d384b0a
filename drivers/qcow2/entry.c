// SPDX-License-Identifier: MIT
/*
 * L1 and L2 table entries: decoding into cluster/subcluster types with
 * QEMU's semantics, corruption detection, and encoding.
 *
 * These run for every guest request, so they neither log nor allocate: a
 * corrupt entry yields -EINVAL and a static reason the caller logs with the
 * guest offset before marking the image corrupt.
 */
#include <errno.h>

#include "checked.h"
#include "qcow2/format.h"

#define QCOW2_COMPRESSED_SECTOR_BYTES 512u

static int corrupt(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EINVAL;
}

int qcow2_l1_entry_decode(const struct qcow2_geom *g, uint64_t entry, uint64_t *l2_offset,
			  bool *copied, const char **why)
{
	*l2_offset = entry & QCOW2_L1E_OFFSET_MASK;
	*copied = entry & QCOW2_OFLAG_COPIED;
	if (entry & QCOW2_L1E_RESERVED_MASK)
		return corrupt(why, "L1 entry has reserved bits set");
	if (!is_aligned_u64(*l2_offset, g->cluster_bytes))
		return corrupt(why, "L2 table offset is not cluster aligned");
	return 0;
}

int qcow2_l1_entry_encode(const struct qcow2_geom *g, uint64_t l2_offset, bool copied,
			  uint64_t *entry)
{
	if ((l2_offset & ~QCOW2_L1E_OFFSET_MASK) || !is_aligned_u64(l2_offset, g->cluster_bytes))
		return -ERANGE;
	*entry = l2_offset | (copied ? QCOW2_OFLAG_COPIED : 0);
	return 0;
}

/*
 * Compressed descriptor: with x = 62 - (cluster_bits - 8), bits 0..x-1 are
 * the host byte offset and bits x..61 the number of 512-byte sectors
 * beyond the first; the data ends somewhere in the last sector.
 */
static int decode_compressed(const struct qcow2_geom *g, uint64_t entry, uint64_t bitmap,
			     struct qcow2_l2_entry *out, const char **why)
{
	uint64_t nb_sectors = ((entry >> g->csize_shift) & g->csize_mask) + 1;

	out->type = QCOW2_CLUSTER_COMPRESSED;
	out->host_offset = entry & g->coffset_mask;
	out->compressed_bytes = nb_sectors * QCOW2_COMPRESSED_SECTOR_BYTES -
				(out->host_offset % QCOW2_COMPRESSED_SECTOR_BYTES);
	if (entry & QCOW2_OFLAG_COPIED)
		return corrupt(why, "compressed cluster has the COPIED flag");
	if (g->data_file)
		return corrupt(why, "compressed cluster in an image with an external data file");
	if (g->extended_l2 && bitmap)
		return corrupt(why, "compressed cluster has a non-zero subcluster bitmap");
	if (out->host_offset >= QCOW2_MAX_HOST_OFFSET)
		return corrupt(why, "compressed data offset is beyond 2^56");
	return 0;
}

/*
 * QEMU's qcow2_get_cluster_type(): the zero flag only exists without
 * extended L2; offset 0 means unallocated except with an external data
 * file, where guest offset 0 maps to host offset 0 and COPIED (always set
 * there) tells the two apart.
 */
static enum qcow2_cluster_type standard_type(const struct qcow2_geom *g, uint64_t entry)
{
	uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;

	if ((entry & QCOW2_OFLAG_ZERO) && !g->extended_l2)
		return host ? QCOW2_CLUSTER_ZERO_ALLOC : QCOW2_CLUSTER_ZERO_PLAIN;
	if (!host)
		return g->data_file && (entry & QCOW2_OFLAG_COPIED) ? QCOW2_CLUSTER_NORMAL
								    : QCOW2_CLUSTER_UNALLOCATED;
	return QCOW2_CLUSTER_NORMAL;
}

static int check_bitmap(const struct qcow2_l2_entry *e, const char **why)
{
	if (e->type == QCOW2_CLUSTER_NORMAL && (e->alloc_bitmap & e->zero_bitmap))
		return corrupt(why, "subcluster is both allocated and zero");
	if (e->type == QCOW2_CLUSTER_UNALLOCATED && e->alloc_bitmap)
		return corrupt(why, "allocated subclusters without a host cluster");
	return 0;
}

int qcow2_l2_entry_decode(const struct qcow2_geom *g, uint64_t entry, uint64_t bitmap,
			  struct qcow2_l2_entry *out, const char **why)
{
	*out = (struct qcow2_l2_entry){ 0 };
	out->copied = entry & QCOW2_OFLAG_COPIED;
	if (g->extended_l2) {
		out->alloc_bitmap = (uint32_t)bitmap;
		out->zero_bitmap = (uint32_t)(bitmap >> 32);
	}
	if (entry & QCOW2_OFLAG_COMPRESSED)
		return decode_compressed(g, entry, bitmap, out, why);
	out->type = standard_type(g, entry);
	if (out->type == QCOW2_CLUSTER_NORMAL || out->type == QCOW2_CLUSTER_ZERO_ALLOC)
		out->host_offset = entry & QCOW2_L2E_OFFSET_MASK;
	if (entry & QCOW2_L2E_STD_RESERVED_MASK)
		return corrupt(why, "L2 entry has reserved bits set");
	if (!is_aligned_u64(out->host_offset, g->cluster_bytes))
		return corrupt(why, "host cluster offset is not cluster aligned");
	if (g->version < 3 &&
	    (out->type == QCOW2_CLUSTER_ZERO_PLAIN || out->type == QCOW2_CLUSTER_ZERO_ALLOC))
		return corrupt(why, "zero cluster in a version 2 image");
	return g->extended_l2 ? check_bitmap(out, why) : 0;
}

static enum qcow2_subcluster_type extended_type(const struct qcow2_l2_entry *e, unsigned sc)
{
	uint32_t bit = UINT32_C(1) << sc;

	switch (e->type) {
	case QCOW2_CLUSTER_COMPRESSED:
		return QCOW2_SUBCLUSTER_COMPRESSED;
	case QCOW2_CLUSTER_NORMAL:
		if (e->alloc_bitmap & e->zero_bitmap)
			return QCOW2_SUBCLUSTER_INVALID;
		if (e->zero_bitmap & bit)
			return QCOW2_SUBCLUSTER_ZERO_ALLOC;
		if (e->alloc_bitmap & bit)
			return QCOW2_SUBCLUSTER_NORMAL;
		return QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC;
	case QCOW2_CLUSTER_UNALLOCATED:
		if (e->alloc_bitmap)
			return QCOW2_SUBCLUSTER_INVALID;
		if (e->zero_bitmap & bit)
			return QCOW2_SUBCLUSTER_ZERO_PLAIN;
		return QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN;
	default:
		/* no zero flag with extended L2: not produced by decode */
		return QCOW2_SUBCLUSTER_INVALID;
	}
}

enum qcow2_subcluster_type qcow2_subcluster_type(const struct qcow2_geom *g,
						 const struct qcow2_l2_entry *e, unsigned sc)
{
	if (g->extended_l2)
		return sc < 32 ? extended_type(e, sc) : QCOW2_SUBCLUSTER_INVALID;
	switch (e->type) {
	case QCOW2_CLUSTER_COMPRESSED:
		return QCOW2_SUBCLUSTER_COMPRESSED;
	case QCOW2_CLUSTER_ZERO_PLAIN:
		return QCOW2_SUBCLUSTER_ZERO_PLAIN;
	case QCOW2_CLUSTER_ZERO_ALLOC:
		return QCOW2_SUBCLUSTER_ZERO_ALLOC;
	case QCOW2_CLUSTER_NORMAL:
		return QCOW2_SUBCLUSTER_NORMAL;
	default:
		return QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN;
	}
}

int qcow2_l2_entry_encode_normal(const struct qcow2_geom *g, uint64_t host_offset, bool copied,
				 uint64_t *entry)
{
	if ((host_offset & ~QCOW2_L2E_OFFSET_MASK) ||
	    !is_aligned_u64(host_offset, g->cluster_bytes))
		return -ERANGE;
	*entry = host_offset | (copied ? QCOW2_OFLAG_COPIED : 0);
	return 0;
}

uint64_t qcow2_l2_entry_encode_zero(uint64_t host_offset, bool copied)
{
	return (host_offset & QCOW2_L2E_OFFSET_MASK) | QCOW2_OFLAG_ZERO |
	       (copied ? QCOW2_OFLAG_COPIED : 0);
}

/*
 * The sector count is that of every 512-byte sector the data touches, less
 * one; QEMU computes it the same way in qcow2_alloc_compressed_cluster_offset.
 */
int qcow2_l2_entry_encode_compressed(const struct qcow2_geom *g, uint64_t host_offset,
				     uint64_t compressed_bytes, uint64_t *entry)
{
	uint64_t last, extra_sectors;

	if (compressed_bytes == 0 || (host_offset & ~g->coffset_mask) ||
	    host_offset >= QCOW2_MAX_HOST_OFFSET)
		return -ERANGE;
	if (ck_add(host_offset, compressed_bytes - 1, &last))
		return -ERANGE;
	extra_sectors =
		last / QCOW2_COMPRESSED_SECTOR_BYTES - host_offset / QCOW2_COMPRESSED_SECTOR_BYTES;
	if (extra_sectors > g->csize_mask)
		return -ERANGE;
	*entry = QCOW2_OFLAG_COMPRESSED | (extra_sectors << g->csize_shift) | host_offset;
	return 0;
}
