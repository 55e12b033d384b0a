/* SPDX-License-Identifier: MIT */
/*
 * Values of KEY=VALUE options as qemu-img reads them, so that an option
 * string written for qemu-img means the same thing to us: sizes with
 * fractions and suffixes ("1.5M"), numbers in any C base, and qemu's boolean
 * spellings.  Pure functions; no logging (the caller names the option).
 */
#ifndef QTAP_OPTVAL_H
#define QTAP_OPTVAL_H

#include <stdbool.h>
#include <stdint.h>

/*
 * optval_size - a byte count as qemu 7.2's qemu_strtosz() reads it: a
 * decimal integer with an optional fraction, or a hex integer "0x...",
 * then an optional one-letter suffix (B, K, M, G, T, P, E in either case;
 * powers of 1024; a fraction needs a suffix other than B).  Leading blanks
 * and a '+' are skipped as strtoull() skips them.  A fractional result is
 * rounded to the nearest byte.  The whole string must be consumed.  0,
 * -EINVAL (malformed, negative) or -ERANGE (over 2^64 - 1).
 */
int optval_size(const char *s, uint64_t *out);

/*
 * optval_number - an unsigned integer in C notation (decimal, 0x hex,
 * leading-0 octal), the whole string.  A leading '-' wraps as strtoull
 * does, as qemu accepts it.  0, -EINVAL or -ERANGE.
 */
int optval_number(const char *s, uint64_t *out);

/*
 * optval_bool - "on", "yes", "true", "y" or "off", "no", "false", "n".
 * 0 or -EINVAL.
 */
int optval_bool(const char *s, bool *out);

#endif
