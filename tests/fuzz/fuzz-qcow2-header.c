// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the input is the start of a qcow2 image file.
 *
 * Everything the driver parses at open time runs on it: cluster 0 (in
 * normal and check mode), then, when the header is accepted, the snapshot
 * table and bitmap directory it points to (read from the same bytes,
 * zeros past the end, as a short file reads in QEMU) and the active L1
 * entries.  Beyond memory safety it checks two properties:
 *   - an accepted header serialises to a cluster 0 that parses again and
 *     serialises to the very same bytes;
 *   - an accepted snapshot entry or bitmap directory does the same
 *     (padding, which nobody checks on read, is rewritten as zeros).
 * A violation aborts, which libFuzzer reports as a crash.
 *
 * Built only by `make fuzz` (tests/fuzz/run.sh), never by `make all`.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "qcow2/bitmap-fmt.h"
#include "qcow2/format.h"
#include "qcow2/snapshot-fmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct image {
	const uint8_t *data;
	size_t size;
};

static int read_image(void *opaque, uint64_t offset, void *buf, size_t len)
{
	const struct image *im = opaque;
	size_t n = 0;

	if (offset < im->size)
		n = MIN((uint64_t)len, im->size - offset);
	if (n)
		memcpy(buf, im->data + offset, n);
	memset((uint8_t *)buf + n, 0, len - n);
	return 0;
}

/* A broken property: say which before libFuzzer reports the abort. */
#define check(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz-qcow2-header: property failed at line %d: %s\n",     \
				__LINE__, #cond);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void header_roundtrip(const struct qcow2_header *h)
{
	size_t cluster = (size_t)1 << h->cluster_bits;
	uint8_t *a = malloc(cluster), *b = malloc(cluster);
	struct qcow2_header again;

	check(a && b);
	/* canonical layout may need an end marker the original lacked */
	if (qcow2_header_serialise(h, a, cluster, NULL) == 0) {
		check(qcow2_header_parse(a, cluster, NULL, 0, &again) == 0);
		check(qcow2_header_serialise(&again, b, cluster, NULL) == 0);
		check(memcmp(a, b, cluster) == 0);
		qcow2_header_fini(&again);
	}
	free(a);
	free(b);
}

static void snapshots(const struct qcow2_header *h, struct image *im)
{
	struct qcow2_snapshot *sns = NULL;
	uint64_t bytes = 0;

	if (qcow2_snapshot_table_read(h, read_image, im, NULL, 0, &sns, &bytes) != 0)
		return;
	for (unsigned i = 0; i < h->nb_snapshots; i++) {
		size_t n = qcow2_snapshot_entry_bytes(&sns[i]), pos = 0, pos2 = 0;
		uint8_t *a = malloc(n), *b = malloc(n);
		struct qcow2_snapshot again;

		check(a && b);
		qcow2_snapshot_validate_l1(&sns[i], h->cluster_bits, NULL, i);
		check(qcow2_snapshot_serialise(&sns[i], a, n, &pos) == 0);
		check(qcow2_snapshot_parse(a, pos, &pos2, i, h->size_bytes, NULL, 0, &again) == 0);
		check(pos2 == pos);
		memset(b, 0, n);
		pos2 = 0;
		check(qcow2_snapshot_serialise(&again, b, n, &pos2) == 0);
		check(pos2 == pos && memcmp(a, b, pos) == 0);
		qcow2_snapshot_fini(&again);
		free(a);
		free(b);
	}
	qcow2_snapshot_table_free(sns, h->nb_snapshots);
}

/*
 * Rewriting zeroes the padding, which QEMU does not check on read, so the
 * property is that a rewritten directory parses and rewrites to itself.
 */
static void bitmaps(const struct qcow2_header *h, struct image *im)
{
	struct qcow2_bitmap *bms = NULL, *again = NULL;
	uint64_t len = h->bitmaps.dir_bytes;
	uint8_t *dir, *a, *b;
	size_t used = 0;

	if (!h->bitmaps.present || len > im->size)
		return;
	dir = malloc(len ? len : 1);
	a = malloc(len ? len : 1);
	b = malloc(len ? len : 1);
	check(dir && a && b);
	read_image(im, h->bitmaps.dir_offset, dir, len);
	if (qcow2_bitmap_dir_parse(dir, len, h, NULL, &bms) == 0) {
		check(qcow2_bitmap_dir_serialise(bms, h->bitmaps.nb_bitmaps, a, len, &used) == 0);
		check(used == len);
		check(qcow2_bitmap_dir_parse(a, len, h, NULL, &again) == 0);
		check(qcow2_bitmap_dir_serialise(again, h->bitmaps.nb_bitmaps, b, len, &used) == 0);
		check(memcmp(a, b, len) == 0);
		qcow2_bitmap_dir_free(again, h->bitmaps.nb_bitmaps);
		qcow2_bitmap_dir_free(bms, h->bitmaps.nb_bitmaps);
	}
	free(dir);
	free(a);
	free(b);
}

static void l1_entries(const struct qcow2_header *h, struct image *im)
{
	struct qcow2_geom g;
	uint8_t raw[8];

	qcow2_geom_init(&g, h);
	for (uint32_t i = 0; i < h->l1_size && i < 4096; i++) {
		uint64_t l2_offset, e;
		const char *why;
		bool copied;

		read_image(im, h->l1_table_offset + (uint64_t)i * 8, raw, sizeof(raw));
		if (qcow2_l1_entry_decode(&g, qcow2_get_be64(raw), &l2_offset, &copied, &why) ==
			    0 &&
		    l2_offset)
			check(qcow2_l1_entry_encode(&g, l2_offset, copied, &e) == 0 &&
			      e == qcow2_get_be64(raw));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct image im = { data, size };
	struct qcow2_header h;

	if (qcow2_header_parse(data, size, NULL, QCOW2_PARSE_CHECK, &h) == 0)
		qcow2_header_fini(&h);
	if (qcow2_header_parse(data, size, NULL, 0, &h) != 0)
		return 0;
	header_roundtrip(&h);
	snapshots(&h, &im);
	bitmaps(&h, &im);
	l1_entries(&h, &im);
	qcow2_header_fini(&h);
	return 0;
}
