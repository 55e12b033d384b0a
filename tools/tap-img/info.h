/* SPDX-License-Identifier: MIT */
/*
 * tap-img info: what info.c shares with info-luks.c.
 */
#ifndef QTAP_TAP_IMG_INFO_H
#define QTAP_TAP_IMG_INFO_H

#include <jansson.h>

#include "qcow2/format.h"

/*
 * info_encrypt_json - the "encrypt" object of an encrypted qcow2 image
 * (@path, header @h) as qemu-img info shows it, or NULL in *@out when the
 * image is not encrypted.  0 or -errno (-EINVAL: no LUKS header where the
 * FDE extension points).
 */
int info_encrypt_json(const char *path, const struct qcow2_header *h, json_t **out);

#endif
