/* SPDX-License-Identifier: MIT */
/*
 * The "encrypt" member of qemu-img info's qcow2 format-specific data: for
 * LUKS images, what QEMU's qcrypto_block_get_info() reads from the LUKS1
 * header the FDE extension points to (no key needed: only the header's
 * plain fields); for legacy AES images, the format alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "info.h"
#include "json.h"

/* The LUKS1 header (all big-endian), as the LUKS on-disk format defines it. */
#define LUKS_MAGIC "LUKS\xba\xbe"
#define LUKS_SLOTS 8
#define LUKS_SLOT_ACTIVE 0x00AC71F3u
#define LUKS_SECTOR 512u
#define LUKS_HDR_BYTES 592u
#define LUKS_OFF_CIPHER_NAME 8
#define LUKS_OFF_CIPHER_MODE 40
#define LUKS_OFF_HASH 72
#define LUKS_OFF_PAYLOAD 104
#define LUKS_OFF_KEY_BYTES 108
#define LUKS_OFF_MK_ITERS 164
#define LUKS_OFF_UUID 168
#define LUKS_OFF_SLOTS 208
#define LUKS_SLOT_BYTES 48

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A fixed-size, NUL-padded header string. */
static json_t *field_str(const uint8_t *p, size_t len)
{
	char s[48];

	snprintf(s, sizeof(s), "%.*s", (int)len, (const char *)p);
	return json_string(s);
}

/* QEMU's cipher algorithm name: "aes-256" for aes with 256-bit keys (xts: two keys). */
static json_t *cipher_alg(const uint8_t *h, bool xts)
{
	unsigned bits = be32(h + LUKS_OFF_KEY_BYTES) * 8 / (xts ? 2 : 1);
	char name[40], s[48];

	snprintf(name, sizeof(name), "%.32s", (const char *)h + LUKS_OFF_CIPHER_NAME);
	snprintf(s, sizeof(s), "%s-%u", name, bits);
	return json_string(s);
}

static json_t *slot_json(const uint8_t *p)
{
	bool active = be32(p) == LUKS_SLOT_ACTIVE;
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "active", json_boolean(active));
	if (active) {
		json_object_set_new(o, "iters", json_integer(be32(p + 4)));
		json_object_set_new(o, "stripes", json_integer(be32(p + 44)));
	}
	json_object_set_new(o, "key-offset", json_integer((json_int_t)be32(p + 40) * LUKS_SECTOR));
	return o;
}

/* Keys in QAPI schema order (QCryptoBlockInfoLUKS): qjson orders them as QEMU does. */
static json_t *luks_json(const uint8_t *h)
{
	char mode[40], *dash, *colon;
	json_t *o = json_object(), *slots = json_array();
	unsigned i;

	if (!o || !slots) {
		json_decref(o);
		json_decref(slots);
		return NULL;
	}
	snprintf(mode, sizeof(mode), "%.32s", (const char *)h + LUKS_OFF_CIPHER_MODE);
	dash = strchr(mode, '-');
	if (dash)
		*dash++ = '\0';
	colon = dash ? strchr(dash, ':') : NULL;
	if (colon)
		*colon++ = '\0';
	json_object_set_new(o, "format", json_string("luks"));
	json_object_set_new(o, "cipher-alg", cipher_alg(h, strcmp(mode, "xts") == 0));
	json_object_set_new(o, "cipher-mode", json_string(mode));
	json_object_set_new(o, "ivgen-alg", json_string(dash ? dash : "plain"));
	if (colon)
		json_object_set_new(o, "ivgen-hash-alg", json_string(colon));
	json_object_set_new(o, "hash-alg", field_str(h + LUKS_OFF_HASH, 32));
	json_object_set_new(o, "payload-offset",
			    json_integer((json_int_t)be32(h + LUKS_OFF_PAYLOAD) * LUKS_SECTOR));
	json_object_set_new(o, "master-key-iters", json_integer(be32(h + LUKS_OFF_MK_ITERS)));
	json_object_set_new(o, "uuid", field_str(h + LUKS_OFF_UUID, 40));
	for (i = 0; i < LUKS_SLOTS; i++)
		json_array_append_new(slots, slot_json(h + LUKS_OFF_SLOTS + i * LUKS_SLOT_BYTES));
	json_object_set_new(o, "slots", slots);
	return o;
}

int info_encrypt_json(const char *path, const struct qcow2_header *h, json_t **out)
{
	uint8_t buf[LUKS_HDR_BYTES];
	ssize_t n;
	int fd;

	*out = NULL;
	if (h->crypt_method == QCOW2_CRYPT_AES) {
		*out = json_object();
		if (*out)
			json_object_set_new(*out, "format", json_string("aes"));
		return *out ? 0 : -ENOMEM;
	}
	if (h->crypt_method != QCOW2_CRYPT_LUKS || !h->fde.present)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return neg_errno();
	n = pread(fd, buf, sizeof(buf), (off_t)h->fde.offset);
	close(fd);
	if (n != (ssize_t)sizeof(buf) || memcmp(buf, LUKS_MAGIC, 6) != 0)
		return -EINVAL; /* QEMU cannot open it either */
	*out = luks_json(buf);
	return *out ? 0 : -ENOMEM;
}
