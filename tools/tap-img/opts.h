/* SPDX-License-Identifier: MIT */
/*
 * The -o option strings of the verbs that create images:
 * "key=value,key=value", repeatable, every key consumed by the driver or
 * the command fails naming it (as qemu-img does).
 */
#ifndef QTAP_TAP_IMG_OPTS_H
#define QTAP_TAP_IMG_OPTS_H

#include "driver.h"

#define IMG_MAX_OPTS 32

struct img_opts {
	struct drv_opt opt[IMG_MAX_OPTS]; /* point into the split strings */
	unsigned nr;
};

/*
 * img_opts_split - split @s (modified in place; must outlive @o) into
 * @o's entries.  Prints the error for @verb; 0 or -EINVAL.
 */
int img_opts_split(const char *verb, struct img_opts *o, char *s);

/*
 * img_opts_check_used - after a driver's create: every option must have
 * been consumed.  Prints the first that was not, naming @path and @fmt;
 * 0 or -EINVAL.
 */
int img_opts_check_used(const char *verb, const struct img_opts *o, const char *path,
			const char *fmt);

#endif
