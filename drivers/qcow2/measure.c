// SPDX-License-Identifier: MIT
/*
 * qemu-img measure's arithmetic for qcow2 (measure.h).
 */
#include "checked.h"
#include "qcow2/measure.h"

#define L1E_BYTES 8u
#define REFTABLE_ENTRY_BYTES 8u

uint64_t qcow2_measure_refcount_bytes(uint64_t clusters, uint64_t cluster_bytes,
				      unsigned refcount_order)
{
	uint64_t per_table_cluster = cluster_bytes / REFTABLE_ENTRY_BYTES;
	uint64_t per_block = cluster_bytes * 8 >> refcount_order;
	uint64_t table = 0, blocks = 0, n = 0, last;

	do {
		last = n;
		blocks = div_round_up_u64(clusters + table + blocks, per_block);
		table = div_round_up_u64(blocks, per_table_cluster);
		n = clusters + blocks + table;
	} while (n != last);
	return (blocks + table) * cluster_bytes;
}

uint64_t qcow2_measure_prealloc_bytes(const struct qcow2_create_geom *g, uint64_t virtual_bytes)
{
	uint64_t cb = g->cluster_bytes, l2e = g->extended_l2 ? 16 : 8;
	uint64_t aligned = ALIGN_DOWN(virtual_bytes + cb - 1, cb);
	uint64_t meta = cb; /* header */
	uint64_t nl2e, nl1e;

	nl2e = aligned / cb;
	nl2e = ALIGN_DOWN(nl2e + cb / l2e - 1, cb / l2e);
	meta += nl2e * l2e;
	nl1e = nl2e * l2e / cb;
	nl1e = ALIGN_DOWN(nl1e + cb / L1E_BYTES - 1, cb / L1E_BYTES);
	meta += nl1e * L1E_BYTES;
	meta += qcow2_measure_refcount_bytes((meta + aligned) / cb, cb, g->refcount_order);
	return meta + aligned;
}

uint64_t qcow2_measure_bitmap_bytes(uint64_t disk_bytes, uint64_t gran, uint64_t name_len,
				    uint64_t cluster_bytes, uint64_t *dir_bytes)
{
	uint64_t bytes = div_round_up_u64(div_round_up_u64(disk_bytes, gran), 8);
	uint64_t clusters = div_round_up_u64(bytes, cluster_bytes);

	*dir_bytes += ALIGN_DOWN(24 + name_len + 7, 8);
	return clusters * cluster_bytes +
	       div_round_up_u64(clusters * 8, cluster_bytes) * cluster_bytes;
}
