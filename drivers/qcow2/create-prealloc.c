// SPDX-License-Identifier: MIT
/*
 * qemu-img's layout of a new qcow2 image, replayed (create-alloc.h): the L1
 * table's growth, L2 tables, and the three kinds of preallocation, over
 * the refcount model of create-alloc.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "cleanup.h"
#include "errors.h"
#include "log.h"
#include "qcow2/create-alloc.h"
#include "qcow2/create-internal.h"
#include "qcow2/format.h"
#include "qcow2/sync-io.h"

#define MK_INVALID UINT64_MAX
/* The longest request QEMU's block layer passes down (BDRV_REQUEST_MAX_BYTES). */
#define MK_REQUEST_MAX_BYTES UINT64_C(0x7ffffe00)
/* preallocation=full writes zeros in pieces of this size */
#define MK_ZERO_CHUNK_BYTES (UINT64_C(1) << 20)

/* ---- L1 and L2 tables --------------------------------------------------------------- */

int qcow2_mk_grow_l1(struct qcow2_mk *mk, uint64_t entries)
{
	uint64_t old_offset = mk->l1_offset, old_entries = mk->l1_entries, off;
	uint64_t *t;
	uint8_t **l2;
	int err;

	if (entries <= mk->l1_entries)
		return 0;
	if (entries > QCOW2_MAX_L1_BYTES / 8) {
		log_err("create %s: an L1 table of %" PRIu64 " entries is too large", mk->path,
			entries);
		return -EFBIG;
	}
	t = calloc(entries, sizeof(*t));
	l2 = calloc(entries, sizeof(*l2));
	if (!t || !l2) {
		free(t);
		free(l2);
		return -ENOMEM;
	}
	if (old_entries) {
		memcpy(t, mk->l1, old_entries * sizeof(*t));
		memcpy(l2, mk->l2_tables, old_entries * sizeof(*l2));
	}
	err = qcow2_mk_alloc(mk, entries * sizeof(*t), &off);
	if (!err)
		err = qcow2_mk_write_be64(mk, off, t, entries, "L1 table");
	if (err) {
		free(t);
		free(l2);
		return err;
	}
	free(mk->l1);
	free(mk->l2_tables);
	mk->l1 = t;
	mk->l2_tables = l2;
	mk->l1_entries = entries;
	mk->l1_offset = off;
	qcow2_mk_free(mk, old_offset, old_entries * sizeof(*t));
	return 0;
}

static uint64_t l1_index(const struct qcow2_mk *mk, uint64_t guest_offset)
{
	return (guest_offset >> mk->cluster_bits) / mk->l2_entries;
}

/*
 * The L2 table for @guest_offset, allocated when missing (QEMU's
 * l2_allocate(): the zeroed table is written, then its L1 entry).  The
 * table is kept in memory until filled; its cluster counts as written now.
 */
static int ensure_l2(struct qcow2_mk *mk, uint64_t guest_offset)
{
	uint64_t i = l1_index(mk, guest_offset), off, be;
	int err;

	if (mk->l1[i])
		return 0;
	err = qcow2_mk_alloc(mk, mk->cluster_bytes, &off);
	if (err)
		return err;
	mk->l2_tables[i] = calloc(1, mk->cluster_bytes);
	if (!mk->l2_tables[i])
		return -ENOMEM;
	qcow2_mk_extend(mk, off + mk->cluster_bytes);
	mk->l1[i] = off | QCOW2_OFLAG_COPIED;
	be = htobe64(mk->l1[i]);
	return qcow2_mk_write(mk, mk->l1_offset + i * sizeof(be), &be, sizeof(be), "L1 entry");
}

/* Map guest cluster @cluster to @host: a preallocated entry, no subcluster bits. */
static void set_l2_entry(struct qcow2_mk *mk, uint64_t cluster, uint64_t host)
{
	uint8_t *t = mk->l2_tables[cluster / mk->l2_entries];

	qcow2_put_be64(t + (cluster % mk->l2_entries) * mk->l2_entry_bytes,
		       host | QCOW2_OFLAG_COPIED);
}

/* Write (and drop) the filled L2 tables below L1 index @end. */
static int write_l2_tables(struct qcow2_mk *mk, uint64_t end)
{
	uint64_t i;
	int err;

	for (i = 0; i < MIN(end, mk->l1_entries); i++) {
		if (!mk->l2_tables[i])
			continue;
		err = qcow2_mk_write(mk, mk->l1[i] & QCOW2_L1E_OFFSET_MASK, mk->l2_tables[i],
				     mk->cluster_bytes, "L2 table");
		if (err)
			return err;
		free(mk->l2_tables[i]);
		mk->l2_tables[i] = NULL;
	}
	return 0;
}

/* ---- preallocation ---------------------------------------------------------------- */

/*
 * QEMU's qcow2_alloc_host_offset() on unallocated entries: map guest
 * [@offset, @offset + *@bytes) to new clusters for as long as the host
 * range stays contiguous.  Each step allocates up to the end of an L2
 * table, but looks up the next table (allocating it) before trying to
 * extend, so a new L2 table usually ends the run.  *@bytes gets what was
 * mapped, *@host the host offset of @offset.
 */
static int alloc_host_run(struct qcow2_mk *mk, uint64_t offset, uint64_t *bytes, uint64_t *host)
{
	uint64_t start = offset, remaining = *bytes, next = MK_INVALID;
	int err;

	*host = MK_INVALID;
	while (remaining) {
		uint64_t in = start & (mk->cluster_bytes - 1), nb, got, h, cur, k;
		uint64_t l2i = (start >> mk->cluster_bits) % mk->l2_entries;

		err = ensure_l2(mk, start);
		if (err)
			return err;
		nb = div_round_up_u64(in + remaining, mk->cluster_bytes);
		nb = MIN(nb, mk->l2_entries - l2i);
		nb = MIN(nb, MK_REQUEST_MAX_BYTES >> mk->cluster_bits);
		if (next == MK_INVALID) {
			got = nb;
			err = qcow2_mk_alloc(mk, nb << mk->cluster_bits, &h);
		} else {
			h = ALIGN_DOWN(next, mk->cluster_bytes);
			err = qcow2_mk_alloc_at(mk, h, nb, &got);
		}
		if (err)
			return err;
		if (got == 0)
			break;
		for (k = 0; k < got; k++)
			set_l2_entry(mk, (start >> mk->cluster_bits) + k,
				     h + (k << mk->cluster_bits));
		cur = MIN(remaining, (got << mk->cluster_bits) - in);
		if (*host == MK_INVALID)
			*host = h + in;
		next = h + in + cur;
		start += cur;
		remaining -= cur;
	}
	*bytes -= remaining;
	return 0;
}

/*
 * The copy-on-write of a partial last (sub)cluster: QEMU fills the rest
 * of it with what the guest reads there, zeros, when linking the entry.
 */
static int write_cow_tail(struct qcow2_mk *mk, uint64_t size, uint64_t host_end)
{
	static const uint8_t zeros[4096];
	uint64_t len = ALIGN_DOWN(size + mk->subcluster_bytes - 1, mk->subcluster_bytes) - size;
	int err = 0;

	while (!err && len) {
		uint64_t n = MIN(len, (uint64_t)sizeof(zeros));

		err = qcow2_mk_write(mk, host_end, zeros, n, "copy-on-write tail");
		host_end += n;
		len -= n;
	}
	return err;
}

/* preallocation=metadata: QEMU's preallocate_co(). */
static int prealloc_metadata(struct qcow2_mk *mk, uint64_t size)
{
	uint64_t chunk = ALIGN_DOWN((uint64_t)INT32_MAX, mk->cluster_bytes);
	uint64_t offset = 0, host = 0, cur = 0;
	int err = 0;

	while (!err && offset < size) {
		cur = MIN(size - offset, chunk);
		err = alloc_host_run(mk, offset, &cur, &host);
		if (!err && offset + cur == size)
			err = write_cow_tail(mk, size, host + cur);
		offset += cur;
		if (!err)
			err = write_l2_tables(mk, l1_index(mk, offset));
	}
	if (err)
		return err;
	/* the file must reach the last cluster: extended sparsely */
	if (size)
		qcow2_mk_extend(mk, host + cur);
	return write_l2_tables(mk, mk->l1_entries);
}

/* The last cluster with a reference, below @bytes of file. */
static uint64_t last_used_cluster(const struct qcow2_mk *mk, uint64_t bytes)
{
	uint64_t c = div_round_up_u64(bytes, mk->cluster_bytes);

	while (c > 0 && qcow2_mk_refcount(mk, c - 1) == 0)
		c--;
	return c;
}

/* Grow the file from mk->file_bytes to @end: fallocate, or zeros written. */
static int allocate_file(struct qcow2_mk *mk, uint64_t end, enum qcow2_mk_prealloc mode)
{
	uint64_t cur = mk->file_bytes;
	int err = 0;

	if (end <= cur)
		return 0;
	if (mode == QCOW2_MK_PREALLOC_FALLOC) {
		err = -posix_fallocate(mk->file->fd, (off_t)cur, (off_t)(end - cur));
	} else {
		CLEANUP_FREE uint8_t *zeros = calloc(1, MK_ZERO_CHUNK_BYTES);

		if (!zeros)
			return -ENOMEM;
		if (ftruncate(mk->file->fd, (off_t)end) < 0)
			err = neg_errno();
		for (; !err && cur < end; cur += MIN(end - cur, MK_ZERO_CHUNK_BYTES))
			err = qcow2_pwrite(mk->file, cur, zeros,
					   MIN(end - cur, MK_ZERO_CHUNK_BYTES));
	}
	if (err) {
		log_err("create %s: preallocating %" PRIu64 " bytes at 0x%" PRIx64 ": %s", mk->path,
			end - mk->file_bytes, mk->file_bytes, err_str(err));
		return err;
	}
	mk->file_bytes = end;
	return 0;
}

/*
 * preallocation=falloc|full: QEMU's resize path.  A refcount area sized
 * for the data and its L2 tables goes at the end of the file, the data
 * right after it, allocated in the file; the L2 tables take the first
 * free clusters (the old refcount table's, then past the data).
 */
static int prealloc_file(struct qcow2_mk *mk, uint64_t size, enum qcow2_mk_prealloc mode)
{
	uint64_t nb_data = div_round_up_u64(size, mk->cluster_bytes), nb_l2, start, got;
	uint64_t guest = 0, host, last, old;
	int err;

	/* an unreferenced tail is cut, but the area still starts after it (QEMU) */
	old = mk->file_bytes;
	last = last_used_cluster(mk, old);
	if (last << mk->cluster_bits < old)
		mk->file_bytes = last << mk->cluster_bits;
	nb_l2 = div_round_up_u64(nb_data, mk->l2_entries) + 1;
	err = qcow2_mk_refcount_area(mk, ALIGN_DOWN(old + mk->cluster_bytes - 1, mk->cluster_bytes),
				     nb_data + nb_l2, true, 0, 0, NULL, &start);
	if (!err)
		err = qcow2_mk_alloc_at(mk, start, nb_data, &got);
	if (!err && got != nb_data)
		err = -EIO;
	if (!err)
		err = allocate_file(mk, start + (nb_data << mk->cluster_bits), mode);
	for (host = start; !err && guest < nb_data;) {
		uint64_t k = MIN(nb_data - guest, mk->l2_entries - guest % mk->l2_entries), i;

		err = ensure_l2(mk, guest << mk->cluster_bits);
		for (i = 0; !err && i < k; i++)
			set_l2_entry(mk, guest + i, host + (i << mk->cluster_bits));
		guest += k;
		host += k << mk->cluster_bits;
		if (!err)
			err = write_l2_tables(mk, l1_index(mk, guest << mk->cluster_bits));
	}
	return err ?: write_l2_tables(mk, mk->l1_entries);
}

int qcow2_mk_preallocate(struct qcow2_mk *mk, uint64_t size_bytes, enum qcow2_mk_prealloc mode)
{
	switch (mode) {
	case QCOW2_MK_PREALLOC_OFF:
		return 0;
	case QCOW2_MK_PREALLOC_METADATA:
		return prealloc_metadata(mk, size_bytes);
	default:
		return prealloc_file(mk, size_bytes, mode);
	}
}
