// SPDX-License-Identifier: MIT
/*
 * errno helpers and the one strict integer parser every command line and
 * control message goes through (atoi and friends are banned).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

const char *err_str(int err)
{
	if (err == 0)
		return "Success";
	/* strerror() of glibc returns static strings for every known errno. */
	return strerrordesc_np(err < 0 ? -err : err) ?: "Unknown error";
}

/* Size suffixes as qemu-img takes them: k/K, M, G, T, P, E (powers of
 * 1024), optionally followed by "B" or "iB"; a lone "B" means bytes. */
static int suffix_shift(const char *s, unsigned *shift)
{
	static const char units[] = "kmgtpe";
	const char *unit;

	if (strcmp(s, "B") == 0 || strcmp(s, "b") == 0) {
		*shift = 0;
		return 0;
	}
	unit = s[0] ? strchr(units, tolower((unsigned char)s[0])) : NULL;
	if (!unit)
		return -EINVAL;
	if (s[1] != '\0' && strcmp(s + 1, "B") != 0 && strcmp(s + 1, "iB") != 0)
		return -EINVAL;
	*shift = 10 * (unsigned)(unit - units + 1);
	return 0;
}

int parse_u64(const char *s, bool suffixes, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s)
		return -EINVAL;
	if (*end != '\0') {
		if (!suffixes || suffix_shift(end, &shift) < 0)
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}
