// SPDX-License-Identifier: MIT
/*
 * Walking the caller's iovec by guest position: a request's extents land in
 * consecutive pieces of it, and each extent keeps a cursor to its piece so
 * that asynchronous completions (decompression, bounced backing reads) can
 * copy into it later.  drv_submit() checked that the iovec adds up to the
 * request's length, so the walks never run off its end.
 */
#include <string.h>

#include "checked.h"
#include "qcow2/internal.h"

/* Skip entries the cursor has reached the end of (and empty ones). */
static void cursor_settle(const struct iovec *iov, struct qcow2_iov_cursor *cur)
{
	while (cur->off == iov[cur->idx].iov_len && iov[cur->idx].iov_len != 0) {
		cur->idx++;
		cur->off = 0;
	}
	while (iov[cur->idx].iov_len == 0)
		cur->idx++;
}

void qcow2_iov_advance(const struct iovec *iov, struct qcow2_iov_cursor *cur, uint64_t len)
{
	while (len) {
		uint64_t n;

		cursor_settle(iov, cur);
		n = MIN(len, iov[cur->idx].iov_len - cur->off);
		cur->off += n;
		len -= n;
	}
}

void qcow2_iov_memset(const struct iovec *iov, struct qcow2_iov_cursor cur, int c, uint64_t len)
{
	while (len) {
		uint64_t n;

		cursor_settle(iov, &cur);
		n = MIN(len, iov[cur.idx].iov_len - cur.off);
		memset((uint8_t *)iov[cur.idx].iov_base + cur.off, c, n);
		cur.off += n;
		len -= n;
	}
}

void qcow2_iov_from_buf(const struct iovec *iov, struct qcow2_iov_cursor cur, const void *buf,
			uint64_t len)
{
	const uint8_t *src = buf;

	while (len) {
		uint64_t n;

		cursor_settle(iov, &cur);
		n = MIN(len, iov[cur.idx].iov_len - cur.off);
		memcpy((uint8_t *)iov[cur.idx].iov_base + cur.off, src, n);
		src += n;
		cur.off += n;
		len -= n;
	}
}

uint64_t qcow2_iov_slice(const struct iovec *iov, struct qcow2_iov_cursor cur, uint64_t len,
			 struct iovec *out, unsigned max, unsigned *used)
{
	uint64_t done = 0;

	*used = 0;
	while (done < len && *used < max) {
		uint64_t n;

		cursor_settle(iov, &cur);
		n = MIN(len - done, iov[cur.idx].iov_len - cur.off);
		out[*used] = (struct iovec){
			.iov_base = (uint8_t *)iov[cur.idx].iov_base + cur.off,
			.iov_len = n,
		};
		(*used)++;
		cur.off += n;
		done += n;
	}
	return done;
}

void qcow2_iov_to_buf(const struct iovec *iov, struct qcow2_iov_cursor cur, void *buf, uint64_t len)
{
	uint8_t *dst = buf;

	while (len) {
		uint64_t n;

		cursor_settle(iov, &cur);
		n = MIN(len, iov[cur.idx].iov_len - cur.off);
		memcpy(dst, (const uint8_t *)iov[cur.idx].iov_base + cur.off, n);
		dst += n;
		cur.off += n;
		len -= n;
	}
}
