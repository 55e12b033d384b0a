/* SPDX-License-Identifier: MIT */
/*
 * JSON output through jansson, formatted the way qemu-img prints it
 * (four-space indent, keys in insertion order, trailing newline), so that
 * tools offering --output=json are drop-in for scripts written for qemu-img.
 */
#ifndef QTAP_JSON_H
#define QTAP_JSON_H

#include <jansson.h>
#include <stdio.h>

/* json_print - write @v to @f as above.  Returns 0 or -errno. */
int json_print(FILE *f, const json_t *v);

/* json_print_compact - one line, for control messages and logs. */
int json_print_compact(FILE *f, const json_t *v);

/*
 * json_obj_set - json_object_set_new that cannot silently drop a value:
 * returns 0 or -ENOMEM (and frees @v on failure).
 */
int json_obj_set(json_t *obj, const char *key, json_t *v);

#endif
