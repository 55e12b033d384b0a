/* SPDX-License-Identifier: MIT */
/*
 * The 0 / -errno convention at the libc boundary.
 *
 * Internal functions return 0 or a negative errno.  libc calls that report
 * through errno are converted at once, before any other call can clobber
 * errno:
 *
 *	if (fstat(fd, &st) < 0)
 *		return neg_errno();
 */
#ifndef QTAP_ERRORS_H
#define QTAP_ERRORS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* neg_errno - -errno, or -EIO if a broken libc path left errno at 0. */
static inline int neg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* err_str - strerror() of a 0/-errno value, thread-safe (static strings). */
const char *err_str(int err);

/*
 * parse_u64 - strict decimal/hex ("0x") parse of an unsigned integer with an
 * optional size suffix when @suffixes is true (k, M, G, T, P, E: powers of
 * 1024; "b"/"B" as 1).  Whole string must be consumed.  Returns 0 or -EINVAL
 * (malformed), -ERANGE (does not fit in 64 bits).
 */
int parse_u64(const char *s, bool suffixes, uint64_t *out);

#endif
