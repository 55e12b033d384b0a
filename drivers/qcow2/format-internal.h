/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the qcow2 format files; not part of the format API.
 */
#ifndef QTAP_QCOW2_FORMAT_INTERNAL_H
#define QTAP_QCOW2_FORMAT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "checked.h"
#include "qcow2/format.h"

/* The name for log lines when the caller has no path (fuzzing, tests). */
static inline const char *qcow2_fmt_path(const char *path)
{
	return path ? path : "(buffer)";
}

/*
 * A byte window onto untrusted input.  Reads past the end yield zeros,
 * which is what QEMU gets when it reads past the end of the image file;
 * callers that must not accept that check qcow2_in_has() first.
 */
struct qcow2_in {
	const uint8_t *buf;
	size_t len;
};

static inline bool qcow2_in_has(const struct qcow2_in *in, uint64_t off, uint64_t n)
{
	return range_within(off, n, in->len);
}

static inline void qcow2_in_copy(const struct qcow2_in *in, uint64_t off, void *dst, size_t n)
{
	size_t avail = 0;

	if (off < in->len)
		avail = MIN((uint64_t)n, in->len - off);
	if (avail)
		memcpy(dst, in->buf + off, avail);
	memset((uint8_t *)dst + avail, 0, n - avail);
}

static inline uint8_t qcow2_in_u8(const struct qcow2_in *in, uint64_t off)
{
	uint8_t v;

	qcow2_in_copy(in, off, &v, 1);
	return v;
}

static inline uint32_t qcow2_in_be32(const struct qcow2_in *in, uint64_t off)
{
	uint8_t b[4];

	qcow2_in_copy(in, off, b, sizeof(b));
	return qcow2_get_be32(b);
}

static inline uint64_t qcow2_in_be64(const struct qcow2_in *in, uint64_t off)
{
	uint8_t b[8];

	qcow2_in_copy(in, off, b, sizeof(b));
	return qcow2_get_be64(b);
}

/* Round a small length (at most a few MiB, never near overflow) up to 8. */
static inline uint64_t qcow2_pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* memdup that returns NULL only on failure, even for @n == 0. */
void *qcow2_fmt_memdup(const void *src, size_t n);

/* A NUL-terminated copy of @n bytes; NULL on allocation failure. */
char *qcow2_fmt_strndup(const void *src, size_t n);

/*
 * Walk the extension area of cluster 0 (from header_length to the backing
 * name or the end of the cluster) into @h.  @names_only: only collect the
 * feature name table and stop quietly at anything malformed, to name
 * unknown feature bits in an image that is refused anyway.
 */
int qcow2_fmt_parse_extensions(const struct qcow2_in *in, const char *path, bool names_only,
			       struct qcow2_header *h);

/* Overlap and table checks used by the header and snapshot validators. */
int qcow2_fmt_validate_table(const char *path, const char *what, uint64_t offset, uint64_t entries,
			     uint64_t entry_bytes, uint64_t max_bytes, unsigned cluster_bits);

#endif
