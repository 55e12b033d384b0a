// SPDX-License-Identifier: MIT
/*
 * Refcount block entries at every width the format allows (refcount_order
 * 0..6, 1..64 bits) and refcount table entries.
 *
 * Sub-byte widths are packed least significant bits first: entry 0 of a
 * 1-bit block is bit 0 of byte 0, as QEMU's get_refcount_ro0() reads it.
 * Widths of 8 bits and more are big-endian integers.
 */
#include <errno.h>

#include "checked.h"
#include "qcow2/format.h"

uint64_t qcow2_refcount_get(const void *block, unsigned order, uint64_t index)
{
	const uint8_t *p = block;

	switch (order) {
	case 0:
	case 1:
	case 2: {
		unsigned bits = 1u << order;
		unsigned per_byte = 8u >> order;
		unsigned shift = (unsigned)(index % per_byte) * bits;

		return (p[index / per_byte] >> shift) & ((1u << bits) - 1);
	}
	case 3:
		return p[index];
	case 4:
		return qcow2_get_be16(p + index * 2);
	case 5:
		return qcow2_get_be32(p + index * 4);
	default:
		return qcow2_get_be64(p + index * 8);
	}
}

int qcow2_refcount_set(void *block, unsigned order, uint64_t index, uint64_t value)
{
	uint8_t *p = block;

	if (order > QCOW2_MAX_REFCOUNT_ORDER || value > qcow2_refcount_max(order))
		return -ERANGE;
	switch (order) {
	case 0:
	case 1:
	case 2: {
		unsigned bits = 1u << order;
		unsigned per_byte = 8u >> order;
		unsigned shift = (unsigned)(index % per_byte) * bits;
		uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);

		p[index / per_byte] = (uint8_t)((p[index / per_byte] & ~mask) | (value << shift));
		break;
	}
	case 3:
		p[index] = (uint8_t)value;
		break;
	case 4:
		qcow2_put_be16(p + index * 2, (uint16_t)value);
		break;
	case 5:
		qcow2_put_be32(p + index * 4, (uint32_t)value);
		break;
	default:
		qcow2_put_be64(p + index * 8, value);
		break;
	}
	return 0;
}

int qcow2_refcount_add(uint64_t refcount, int64_t addend, unsigned order, uint64_t *out)
{
	uint64_t max = qcow2_refcount_max(order);
	uint64_t r;

	if (addend >= 0) {
		if (ck_add(refcount, (uint64_t)addend, &r) || r > max)
			return -ERANGE;
	} else {
		/* -(INT64_MIN) does not fit in int64_t; do it in unsigned */
		uint64_t dec = (uint64_t)0 - (uint64_t)addend;

		if (dec > refcount)
			return -ERANGE;
		r = refcount - dec;
	}
	*out = r;
	return 0;
}

int qcow2_reftable_entry_decode(const struct qcow2_geom *g, uint64_t entry,
				uint64_t *refblock_offset, const char **why)
{
	*refblock_offset = entry & QCOW2_REFT_OFFSET_MASK;
	if (entry & QCOW2_REFT_RESERVED_MASK) {
		if (why)
			*why = "refcount table entry has reserved bits set";
		return -EINVAL;
	}
	if (!is_aligned_u64(*refblock_offset, g->cluster_bytes)) {
		if (why)
			*why = "refcount block offset is not cluster aligned";
		return -EINVAL;
	}
	return 0;
}
