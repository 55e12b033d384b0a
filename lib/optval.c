// SPDX-License-Identifier: MIT
/*
 * Option values in qemu-img's notation (optval.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "optval.h"

/* Fraction digits beyond this many are ignored: 10^18 * 2^61 fits 128 bits. */
#define OPTVAL_MAX_FRACTION_DIGITS 18

/* The multiplier of a size suffix letter, or 0 when @c is not one. */
static uint64_t suffix_mul(char c)
{
	static const char units[] = "kmgtpe";
	const char *u;

	if (c == 'b' || c == 'B')
		return 1;
	u = c ? strchr(units, tolower((unsigned char)c)) : NULL;
	return u ? UINT64_C(1) << (10 * (unsigned)(u - units + 1)) : 0;
}

/* Decimal digits at *@p into *@v, advancing *@p; -ERANGE on overflow. */
static int parse_decimal(const char **p, uint64_t *v)
{
	*v = 0;
	for (; isdigit((unsigned char)**p); (*p)++) {
		unsigned d = (unsigned)(**p - '0');

		if (*v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		*v = *v * 10 + d;
	}
	return 0;
}

/* Hex digits after "0x" at *@p into *@v, advancing *@p. */
static int parse_hex(const char **p, uint64_t *v)
{
	*v = 0;
	if (!isxdigit((unsigned char)**p))
		return -EINVAL;
	for (; isxdigit((unsigned char)**p); (*p)++) {
		int c = tolower((unsigned char)**p);
		unsigned d = isdigit(c) ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);

		if (*v > (UINT64_MAX >> 4))
			return -ERANGE;
		*v = (*v << 4) | d;
	}
	return 0;
}

/*
 * The digits after a '.' as a fraction num / den, advancing *@p.  Digits
 * past the precision kept are skipped.
 */
static void parse_fraction(const char **p, uint64_t *num, uint64_t *den)
{
	unsigned n = 0;

	*num = 0;
	*den = 1;
	for (; isdigit((unsigned char)**p); (*p)++, n++) {
		if (n >= OPTVAL_MAX_FRACTION_DIGITS)
			continue;
		*num = *num * 10 + (uint64_t)(**p - '0');
		*den *= 10;
	}
}

int optval_size(const char *s, uint64_t *out)
{
	const char *p = s, *digits;
	uint64_t v, num = 0, den = 1, mul;
	unsigned __int128 r;
	int err;

	if (!s)
		return -EINVAL;
	/* what strtoull skips; a '-' is refused rather than wrapped */
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '+')
		p++;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	digits = p;
	err = parse_decimal(&p, &v);
	if (!err && v == 0 && p == digits + 1 && (*p == 'x' || *p == 'X')) {
		/* hex: no fraction, but a suffix (qemu 7.2 only warns about it) */
		p++;
		err = parse_hex(&p, &v);
		if (!err && *p == '.')
			err = -EINVAL;
	} else if (!err && *p == '.') {
		p++;
		parse_fraction(&p, &num, &den);
	}
	if (err)
		return err;
	mul = suffix_mul(*p);
	if (mul)
		p++;
	else
		mul = 1;
	if (*p != '\0' || (mul == 1 && num != 0))
		return -EINVAL;
	r = (unsigned __int128)v * mul;
	/* round half up, as qemu does */
	r += ((unsigned __int128)num * mul * 2 + den) / ((unsigned __int128)den * 2);
	if (r > UINT64_MAX)
		return -ERANGE;
	*out = (uint64_t)r;
	return 0;
}

int optval_number(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (end == s || *end != '\0')
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*out = (uint64_t)v;
	return 0;
}

int optval_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "on", "yes", "true", "y" };
	static const char *const no[] = { "off", "no", "false", "n" };
	unsigned i;

	for (i = 0; s && i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}
