// SPDX-License-Identifier: MIT
/*
 * Internal snapshot table entries: variable-length, 8-byte aligned records
 * of a fixed 40-byte part, extra data (24 bytes QEMU knows, anything after
 * it kept verbatim), the id and the name.  Read and written as QEMU's
 * qcow2-snapshot.c does, with its limits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "checked.h"
#include "log.h"
#include "qcow2/format-internal.h"
#include "qcow2/format.h"
#include "qcow2/snapshot-fmt.h"

static void decode_fixed(const struct qcow2_in *in, uint64_t off, struct qcow2_snapshot *sn)
{
	sn->l1_table_offset =
		qcow2_in_be64(in, off + offsetof(struct qcow2_disk_snapshot, l1_table_offset));
	sn->l1_size = qcow2_in_be32(in, off + offsetof(struct qcow2_disk_snapshot, l1_size));
	sn->date_sec = qcow2_in_be32(in, off + offsetof(struct qcow2_disk_snapshot, date_sec));
	sn->date_nsec = qcow2_in_be32(in, off + offsetof(struct qcow2_disk_snapshot, date_nsec));
	sn->vm_clock_nsec =
		qcow2_in_be64(in, off + offsetof(struct qcow2_disk_snapshot, vm_clock_nsec));
	sn->vm_state_bytes =
		qcow2_in_be32(in, off + offsetof(struct qcow2_disk_snapshot, vm_state_size));
	sn->extra_data_size =
		qcow2_in_be32(in, off + offsetof(struct qcow2_disk_snapshot, extra_data_size));
}

static uint16_t in_be16(const struct qcow2_in *in, uint64_t off)
{
	uint8_t b[2];

	qcow2_in_copy(in, off, b, sizeof(b));
	return qcow2_get_be16(b);
}

/* Fields the entry is too short to hold keep the values QEMU assumes. */
static void decode_known_extra(const struct qcow2_in *in, uint64_t off, uint32_t size,
			       uint64_t image_size, struct qcow2_snapshot *sn)
{
	sn->disk_size_bytes = image_size;
	sn->icount = -1;
	if (size >= offsetof(struct qcow2_disk_snapshot_extra, disk_size))
		sn->vm_state_bytes = qcow2_in_be64(in, off);
	if (size >= offsetof(struct qcow2_disk_snapshot_extra, icount))
		sn->disk_size_bytes = qcow2_in_be64(in, off + 8);
	if (size >= sizeof(struct qcow2_disk_snapshot_extra))
		sn->icount = (int64_t)qcow2_in_be64(in, off + 16);
}

/*
 * Over-long extra data is refused like QEMU does at open; `check -r all`
 * (QCOW2_SNAPSHOT_REPAIR) keeps the first 1 KiB and drops the rest.
 */
static int check_extra_size(struct qcow2_snapshot *sn, unsigned index, const char *path,
			    unsigned flags)
{
	if (sn->extra_data_size <= QCOW2_MAX_SNAPSHOT_EXTRA_BYTES)
		return 0;
	if (!(flags & QCOW2_SNAPSHOT_REPAIR)) {
		log_err("qcow2: %s: snapshot %u: extra_data_size %" PRIu32 " exceeds %u", path,
			index, sn->extra_data_size, QCOW2_MAX_SNAPSHOT_EXTRA_BYTES);
		return -EINVAL;
	}
	log_warn("qcow2: %s: snapshot %u: discarding extra data beyond %u of %" PRIu32 " bytes",
		 path, index, QCOW2_MAX_SNAPSHOT_EXTRA_BYTES, sn->extra_data_size);
	return 0;
}

static int decode_strings(const struct qcow2_in *in, uint64_t off, uint16_t id_len,
			  uint16_t name_len, struct qcow2_snapshot *sn)
{
	sn->id = malloc((size_t)id_len + 1);
	sn->name = malloc((size_t)name_len + 1);
	if (!sn->id || !sn->name)
		return -ENOMEM;
	qcow2_in_copy(in, off, sn->id, id_len);
	sn->id[id_len] = '\0';
	qcow2_in_copy(in, off + id_len, sn->name, name_len);
	sn->name[name_len] = '\0';
	return 0;
}

int qcow2_snapshot_parse(const void *buf, size_t len, size_t *pos, unsigned index,
			 uint64_t image_size, const char *path, unsigned flags,
			 struct qcow2_snapshot *sn)
{
	struct qcow2_in in = { buf, len };
	uint64_t off = qcow2_pad8(*pos);
	uint64_t extra_off, end;
	uint16_t id_len, name_len;
	uint32_t kept;
	int ret;

	memset(sn, 0, sizeof(*sn));
	path = qcow2_fmt_path(path);
	if (*pos > len || !qcow2_in_has(&in, off, QCOW2_SNAPSHOT_HEADER_BYTES)) {
		log_err("qcow2: %s: snapshot %u at table offset %zu runs past the table end %zu",
			path, index, *pos, len);
		return -EINVAL;
	}
	decode_fixed(&in, off, sn);
	id_len = in_be16(&in, off + offsetof(struct qcow2_disk_snapshot, id_str_size));
	name_len = in_be16(&in, off + offsetof(struct qcow2_disk_snapshot, name_size));
	extra_off = off + QCOW2_SNAPSHOT_HEADER_BYTES;
	end = extra_off + sn->extra_data_size + id_len + name_len;
	if (!qcow2_in_has(&in, off, end - off)) {
		log_err("qcow2: %s: snapshot %u at table offset %" PRIu64 " (%" PRIu64
			" bytes) runs past the table end %zu",
			path, index, off, end - off, len);
		return -EINVAL;
	}
	ret = check_extra_size(sn, index, path, flags);
	if (ret)
		return ret;
	kept = MIN(sn->extra_data_size, QCOW2_MAX_SNAPSHOT_EXTRA_BYTES);
	decode_known_extra(&in, extra_off, kept, image_size, sn);
	if (kept > QCOW2_SNAPSHOT_EXTRA_BYTES) {
		sn->unknown_extra_len = kept - QCOW2_SNAPSHOT_EXTRA_BYTES;
		sn->unknown_extra = qcow2_fmt_memdup(
			in.buf + extra_off + QCOW2_SNAPSHOT_EXTRA_BYTES, sn->unknown_extra_len);
		ret = sn->unknown_extra ? 0 : -ENOMEM;
	}
	sn->extra_data_size = kept;
	if (!ret)
		ret = decode_strings(&in, end - id_len - name_len, id_len, name_len, sn);
	if (ret) {
		log_err("qcow2: %s: snapshot %u: out of memory", path, index);
		qcow2_snapshot_fini(sn);
		return ret;
	}
	*pos = end;
	return 0;
}

void qcow2_snapshot_fini(struct qcow2_snapshot *sn)
{
	if (!sn)
		return;
	free(sn->id);
	free(sn->name);
	free(sn->unknown_extra);
	memset(sn, 0, sizeof(*sn));
}

/* Unpadded length as written: QEMU always writes the 24 known extra bytes. */
static uint64_t entry_bytes_unpadded(const struct qcow2_snapshot *sn)
{
	return QCOW2_SNAPSHOT_HEADER_BYTES + QCOW2_SNAPSHOT_EXTRA_BYTES + sn->unknown_extra_len +
	       (sn->id ? strlen(sn->id) : 0) + (sn->name ? strlen(sn->name) : 0);
}

size_t qcow2_snapshot_entry_bytes(const struct qcow2_snapshot *sn)
{
	return qcow2_pad8(entry_bytes_unpadded(sn));
}

static void put_fixed(const struct qcow2_snapshot *sn, uint8_t *p, size_t id_len, size_t name_len)
{
	/* a VM state too big for the old field reads as none to old readers */
	uint32_t vm_state32 = sn->vm_state_bytes <= UINT32_MAX ? (uint32_t)sn->vm_state_bytes : 0;

	qcow2_put_be64(p + offsetof(struct qcow2_disk_snapshot, l1_table_offset),
		       sn->l1_table_offset);
	qcow2_put_be32(p + offsetof(struct qcow2_disk_snapshot, l1_size), sn->l1_size);
	qcow2_put_be16(p + offsetof(struct qcow2_disk_snapshot, id_str_size), (uint16_t)id_len);
	qcow2_put_be16(p + offsetof(struct qcow2_disk_snapshot, name_size), (uint16_t)name_len);
	qcow2_put_be32(p + offsetof(struct qcow2_disk_snapshot, date_sec), sn->date_sec);
	qcow2_put_be32(p + offsetof(struct qcow2_disk_snapshot, date_nsec), sn->date_nsec);
	qcow2_put_be64(p + offsetof(struct qcow2_disk_snapshot, vm_clock_nsec), sn->vm_clock_nsec);
	qcow2_put_be32(p + offsetof(struct qcow2_disk_snapshot, vm_state_size), vm_state32);
	qcow2_put_be32(p + offsetof(struct qcow2_disk_snapshot, extra_data_size),
		       QCOW2_SNAPSHOT_EXTRA_BYTES + sn->unknown_extra_len);
	p += QCOW2_SNAPSHOT_HEADER_BYTES;
	qcow2_put_be64(p, sn->vm_state_bytes);
	qcow2_put_be64(p + 8, sn->disk_size_bytes);
	qcow2_put_be64(p + 16, (uint64_t)sn->icount);
}

int qcow2_snapshot_serialise(const struct qcow2_snapshot *sn, void *buf, size_t len, size_t *pos)
{
	size_t id_len = sn->id ? strlen(sn->id) : 0;
	size_t name_len = sn->name ? strlen(sn->name) : 0;
	uint64_t off = qcow2_pad8(*pos);
	uint64_t n = entry_bytes_unpadded(sn);
	uint8_t *p;

	if (id_len > UINT16_MAX || name_len > UINT16_MAX ||
	    sn->unknown_extra_len > QCOW2_MAX_SNAPSHOT_EXTRA_BYTES - QCOW2_SNAPSHOT_EXTRA_BYTES)
		return -EINVAL;
	if (*pos > len || !range_within(off, n, len))
		return -ENOSPC;
	memset((uint8_t *)buf + *pos, 0, off - *pos); /* alignment gap */
	p = (uint8_t *)buf + off;
	put_fixed(sn, p, id_len, name_len);
	p += QCOW2_SNAPSHOT_HEADER_BYTES + QCOW2_SNAPSHOT_EXTRA_BYTES;
	if (sn->unknown_extra_len)
		memcpy(p, sn->unknown_extra, sn->unknown_extra_len);
	p += sn->unknown_extra_len;
	memcpy(p, sn->id ? sn->id : "", id_len);
	memcpy(p + id_len, sn->name ? sn->name : "", name_len);
	*pos = off + n;
	return 0;
}

int qcow2_snapshot_validate_l1(const struct qcow2_snapshot *sn, unsigned cluster_bits,
			       const char *path, unsigned index)
{
	char what[48];

	snprintf(what, sizeof(what), "snapshot %u L1 table", index);
	return qcow2_fmt_validate_table(qcow2_fmt_path(path), what, sn->l1_table_offset,
					sn->l1_size, sizeof(uint64_t), QCOW2_MAX_L1_BYTES,
					cluster_bits);
}

/* ---- the whole table -------------------------------------------------------------- */

/*
 * Read one entry at @offset: the fixed part first, to learn the lengths,
 * then the extra data QEMU keeps (all of it, or 1 KiB when repairing) and
 * the strings, packed into @scratch as an entry of that kept size.
 * *@bytes gets the entry's real length in the image.
 */
static int read_entry(const struct qcow2_header *h, qcow2_read_fn *read, void *opaque,
		      uint64_t offset, uint8_t *scratch, unsigned index, const char *path,
		      unsigned flags, struct qcow2_snapshot *sn, uint64_t *bytes)
{
	const size_t fixed = QCOW2_SNAPSHOT_HEADER_BYTES;
	size_t strings, kept, pos = 0;
	uint32_t extra;
	uint64_t strings_at;
	int ret;

	ret = read(opaque, offset, scratch, fixed);
	if (ret)
		return ret;
	extra = qcow2_get_be32(scratch + offsetof(struct qcow2_disk_snapshot, extra_data_size));
	strings = (size_t)qcow2_get_be16(scratch +
					 offsetof(struct qcow2_disk_snapshot, id_str_size)) +
		  qcow2_get_be16(scratch + offsetof(struct qcow2_disk_snapshot, name_size));
	sn->extra_data_size = extra;
	ret = check_extra_size(sn, index, path, flags);
	if (ret)
		return ret;
	kept = MIN(extra, QCOW2_MAX_SNAPSHOT_EXTRA_BYTES);
	if (ck_add(offset, fixed + (uint64_t)extra, &strings_at))
		return -EINVAL;
	ret = read(opaque, offset + fixed, scratch + fixed, kept);
	if (!ret)
		ret = read(opaque, strings_at, scratch + fixed + kept, strings);
	if (ret)
		return ret;
	qcow2_put_be32(scratch + offsetof(struct qcow2_disk_snapshot, extra_data_size),
		       (uint32_t)kept);
	*bytes = fixed + (uint64_t)extra + strings;
	return qcow2_snapshot_parse(scratch, fixed + kept + strings, &pos, index, h->size_bytes,
				    path, flags, sn);
}

int qcow2_snapshot_table_read(const struct qcow2_header *h, qcow2_read_fn *read, void *opaque,
			      const char *path, unsigned flags, struct qcow2_snapshot **out,
			      uint64_t *table_bytes)
{
	struct qcow2_snapshot *sns = NULL;
	uint8_t *scratch = NULL;
	uint64_t off = 0, pos, n;
	int ret = 0;

	path = qcow2_fmt_path(path);
	*out = NULL;
	if (h->nb_snapshots) {
		sns = calloc(h->nb_snapshots, sizeof(*sns));
		scratch = malloc(QCOW2_SNAPSHOT_MAX_ENTRY_BYTES);
		if (!sns || !scratch) {
			log_err("qcow2: %s: out of memory for %" PRIu32 " snapshots", path,
				h->nb_snapshots);
			ret = -ENOMEM;
		}
	}
	for (unsigned i = 0; !ret && i < h->nb_snapshots; i++) {
		off = qcow2_pad8(off);
		ret = ck_add(h->snapshots_offset, off, &pos) ? -EINVAL : 0;
		if (!ret)
			ret = read_entry(h, read, opaque, pos, scratch, i, path, flags, &sns[i],
					 &n);
		off += ret ? 0 : n;
		if (!ret && off > QCOW2_MAX_SNAPSHOTS_BYTES) {
			log_err("qcow2: %s: snapshot table exceeds %llu bytes at snapshot %u", path,
				QCOW2_MAX_SNAPSHOTS_BYTES, i);
			ret = -EINVAL;
		}
	}
	free(scratch);
	if (ret) {
		/* entries not reached are still zeroed: fini is a no-op on them */
		qcow2_snapshot_table_free(sns, h->nb_snapshots);
		return ret;
	}
	*out = sns;
	if (table_bytes)
		*table_bytes = off;
	return 0;
}

uint64_t qcow2_snapshot_table_bytes(const struct qcow2_snapshot *sns, unsigned nb)
{
	uint64_t off = 0;

	for (unsigned i = 0; i < nb; i++)
		off = qcow2_pad8(off) + entry_bytes_unpadded(&sns[i]);
	return off;
}

int qcow2_snapshot_table_serialise(const struct qcow2_snapshot *sns, unsigned nb, void *buf,
				   size_t len)
{
	size_t pos = 0;

	for (unsigned i = 0; i < nb; i++) {
		int ret = qcow2_snapshot_serialise(&sns[i], buf, len, &pos);

		if (ret)
			return ret;
	}
	return 0;
}

void qcow2_snapshot_table_free(struct qcow2_snapshot *sns, unsigned nb)
{
	if (!sns)
		return;
	for (unsigned i = 0; i < nb; i++)
		qcow2_snapshot_fini(&sns[i]);
	free(sns);
}
