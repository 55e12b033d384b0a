/* SPDX-License-Identifier: MIT */
/*
 * Output shaped exactly like qemu-img's, from jansson values built with
 * their keys inserted in the order of QEMU's QAPI schema.
 *
 * qemu-img turns its QAPI structures into QDicts, a hash table of 512
 * buckets, and prints the keys in bucket order (the newest first within a
 * bucket): that order, not the schema's, is what users and scripts see.
 * These printers reproduce it, so `tap-img info --output=json` is textually
 * identical to `qemu-img info --output=json` and diffs against it stay
 * empty.  Strings are escaped as QEMU escapes them (every non-ASCII
 * character as \uXXXX), empty containers print over two lines.
 */
#ifndef QTAP_TAP_IMG_QJSON_H
#define QTAP_TAP_IMG_QJSON_H

#include <jansson.h>
#include <stdio.h>

/* qjson_print - @v as qemu-img's --output=json prints it, and a newline. */
void qjson_print(FILE *f, const json_t *v);

/*
 * qjson_dump_human - @v as qemu-img's human output prints format-specific
 * data: "key: value" lines indented by four spaces per @level, dashes in
 * keys shown as spaces, list items as "[N]:".
 */
void qjson_dump_human(FILE *f, const json_t *v, int level);

#endif
