/* SPDX-License-Identifier: MIT */
/*
 * tap-img compare [-f FMT] [-F FMT] [-T CACHE] [-p] [-q] [-s] [-U] FILE1 FILE2
 *
 * qemu-img compare: do two images (each with its backing chain) read the
 * same?  The walk is qemu-img's: both chains' block status decides, run by
 * run, whether to skip (zeros on both sides), compare the data, or check
 * that the side that holds the run reads as zeros; a size difference is a
 * warning when the larger image's surplus reads as zeros.  With -s
 * (strict) the block status must match too, and the sizes.  The texts and
 * the exit codes are qemu-img's: 0 identical, 1 different, 2 an image
 * could not be opened, 3 a block status failed, 4 a read failed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bstatus.h"
#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "tap-img.h"

#define CMP_EXIT_DIFFERENT 1
#define CMP_EXIT_OPEN 2
#define CMP_EXIT_STATUS 3
#define CMP_EXIT_READ 4
#define CMP_BUF_BYTES (2u << 20) /* qemu-img's IO_BUF_SIZE */
#define CMP_SECTOR 512u

struct cmp_side {
	const char *fmt;
	const char *filename;
	struct drv_image *img;
	struct img_bs_chain chain;
	uint8_t *buf;
};

struct cmp_cmd {
	struct cmp_side a, b;
	unsigned flags;
	bool strict;
	bool quiet;
	bool progress;
	double last_pct;
	uint64_t progress_base;
	uint64_t done;
};

static void cmp_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img compare [-f FMT] [-F FMT] [-T CACHE] [-p] [-q] [-s] [-U] "
		   "FILE1 FILE2\n"
		   "\n"
		   "Check whether two images (with their backing chains) have the same contents.\n"
		   "  -f FMT     format of FILE1 (default: its TYPE: prefix, else probed)\n"
		   "  -F FMT     format of FILE2\n"
		   "  -T CACHE   cache mode of both (default writeback)\n"
		   "  -p         show progress\n"
		   "  -q         quiet: only the exit code tells\n"
		   "  -s         strict: the sizes and the allocation must match too\n"
		   "  -U         read images other processes are writing\n"
		   "Exit: 0 identical, 1 different, 2 cannot open, 3 block status error, "
		   "4 read error.\n");
}

static void qprintf(const struct cmp_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void qprintf(const struct cmp_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	if (cmd->quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

static void progress(struct cmp_cmd *cmd, uint64_t bytes)
{
	double pct;

	cmd->done += bytes;
	if (!cmd->progress)
		return;
	pct = cmd->progress_base ? (double)cmd->done * 100.0 / (double)cmd->progress_base : 100;
	if (bytes && pct < cmd->last_pct + 1.0 && pct < 100.0)
		return;
	cmd->last_pct = pct;
	printf("    (%3.2f/100%%)\r", pct);
	fflush(stdout);
}

static int cmp_parse_args(struct cmp_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:F:T:pqsU", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cmp_usage(stdout);
			exit(IMG_EXIT_OK);
		case 'f':
			cmd->a.fmt = optarg;
			break;
		case 'F':
			cmd->b.fmt = optarg;
			break;
		case 'T':
			cmd->flags &= ~DRV_OPEN_BUFFERED;
			if (img_parse_cache("compare", optarg, &cmd->flags))
				return -EINVAL;
			break;
		case 'p':
			cmd->progress = true;
			break;
		case 'q':
			cmd->quiet = true;
			break;
		case 's':
			cmd->strict = true;
			break;
		case 'U':
			cmd->flags |= DRV_OPEN_SHARED;
			break;
		default:
			cmp_usage(stderr);
			return -EINVAL;
		}
	}
	if (argc - optind != 2) {
		img_err("compare", "Expecting two image file names");
		return -EINVAL;
	}
	cmd->a.filename = argv[optind];
	cmd->b.filename = argv[optind + 1];
	if (cmd->quiet)
		cmd->progress = false;
	return 0;
}

static int side_open(struct cmp_cmd *cmd, struct cmp_side *s)
{
	int err = img_open_probed("compare", s->fmt, s->filename, cmd->flags, &s->img);

	if (!err)
		err = img_bs_chain_init(&s->chain, "compare", s->img);
	if (!err) {
		s->buf = buf_alloc(CMP_BUF_BYTES, 4096);
		err = s->buf ? 0 : -ENOMEM;
		if (err)
			img_err("compare", "out of memory");
	}
	return err;
}

static void side_close(struct cmp_side *s)
{
	buf_free(s->buf);
	if (s->chain.top)
		img_bs_chain_fini(&s->chain);
	drv_image_close(s->img);
}

static int side_status(struct cmp_side *s, uint64_t offset, uint64_t bytes, struct img_bs *bs)
{
	int err = img_bs_above(&s->chain, s->img, offset, bytes, bs);

	if (!err && bs->bytes == 0)
		err = -EIO;
	if (err) {
		img_err("compare", "Sector allocation test failed for %s", s->filename);
		return -CMP_EXIT_STATUS;
	}
	return 0;
}

static int side_read(struct cmp_side *s, uint64_t offset, uint64_t bytes)
{
	int err = drv_sync_rw(s->chain.sync, DRV_OP_READ, offset, s->buf, bytes);

	if (err) {
		img_err("compare", "Error while reading offset %" PRIu64 " of %s: %s", offset,
			s->filename, err_str(err));
		return -CMP_EXIT_READ;
	}
	return 0;
}

/* Bytes of @p before its first non-zero sector, @len if none (qemu-img's granularity). */
static uint64_t zero_prefix(const uint8_t *p, uint64_t len)
{
	uint64_t i;

	for (i = 0; i < len; i++) {
		if (p[i])
			return ALIGN_DOWN(i, (uint64_t)CMP_SECTOR);
	}
	return len;
}

/* qemu-img's check_empty_sectors(): the run @s holds must read as zeros. */
static int check_empty(struct cmp_cmd *cmd, struct cmp_side *s, uint64_t offset, uint64_t bytes)
{
	int err = side_read(s, offset, bytes);
	uint64_t idx;

	if (err)
		return err;
	idx = zero_prefix(s->buf, bytes);
	if (idx == bytes)
		return 0;
	qprintf(cmd, "Content mismatch at offset %" PRIu64 "!\n", offset + idx);
	return -CMP_EXIT_DIFFERENT;
}

/* The first differing sector of the two buffers, or @len. */
static uint64_t first_difference(const uint8_t *a, const uint8_t *b, uint64_t len)
{
	uint64_t i;

	for (i = 0; i < len; i += CMP_SECTOR) {
		if (memcmp(a + i, b + i, MIN((uint64_t)CMP_SECTOR, len - i)) != 0)
			return i;
	}
	return len;
}

/* One step of the common part: returns the bytes done, or -exit code. */
static int64_t compare_run(struct cmp_cmd *cmd, uint64_t offset)
{
	struct img_bs s1, s2;
	uint64_t chunk, diff;
	bool alloc1, alloc2;
	int err;

	err = side_status(&cmd->a, offset, cmd->a.img->size_bytes - offset, &s1);
	if (!err)
		err = side_status(&cmd->b, offset, cmd->b.img->size_bytes - offset, &s2);
	if (err)
		return err;
	alloc1 = s1.flags & IMG_BS_ALLOCATED;
	alloc2 = s2.flags & IMG_BS_ALLOCATED;
	chunk = MIN(s1.bytes, s2.bytes);
	if (cmd->strict && s1.flags != s2.flags) {
		qprintf(cmd, "Strict mode: Offset %" PRIu64 " block status mismatch!\n", offset);
		return -CMP_EXIT_DIFFERENT;
	}
	if ((s1.flags & IMG_BS_ZERO) && (s2.flags & IMG_BS_ZERO))
		return (int64_t)chunk;
	chunk = MIN(chunk, (uint64_t)CMP_BUF_BYTES);
	if (alloc1 != alloc2)
		err = check_empty(cmd, alloc1 ? &cmd->a : &cmd->b, offset, chunk);
	else
		err = side_read(&cmd->a, offset, chunk) ?: side_read(&cmd->b, offset, chunk);
	if (err)
		return err;
	if (alloc1 == alloc2) {
		diff = first_difference(cmd->a.buf, cmd->b.buf, chunk);
		if (diff != chunk) {
			qprintf(cmd, "Content mismatch at offset %" PRIu64 "!\n", offset + diff);
			return -CMP_EXIT_DIFFERENT;
		}
	}
	return (int64_t)chunk;
}

/* The larger image's surplus must read as zeros. */
static int compare_surplus(struct cmp_cmd *cmd, uint64_t offset)
{
	struct cmp_side *over = cmd->a.img->size_bytes > cmd->b.img->size_bytes ? &cmd->a : &cmd->b;
	uint64_t end = over->img->size_bytes;
	struct img_bs bs;
	int err;

	qprintf(cmd, "Warning: Image size mismatch!\n");
	while (offset < end) {
		err = side_status(over, offset, end - offset, &bs);
		if (err)
			return err;
		if ((bs.flags & IMG_BS_ALLOCATED) && !(bs.flags & IMG_BS_ZERO)) {
			bs.bytes = MIN(bs.bytes, (uint64_t)CMP_BUF_BYTES);
			err = check_empty(cmd, over, offset, bs.bytes);
			if (err)
				return err;
		}
		offset += bs.bytes;
		progress(cmd, bs.bytes);
	}
	return 0;
}

static int compare_images(struct cmp_cmd *cmd)
{
	uint64_t size1 = cmd->a.img->size_bytes, size2 = cmd->b.img->size_bytes;
	uint64_t offset = 0, total = MIN(size1, size2);
	int64_t n;

	cmd->progress_base = MAX(size1, size2);
	progress(cmd, 0);
	if (cmd->strict && size1 != size2) {
		qprintf(cmd, "Strict mode: Image size mismatch!\n");
		return -CMP_EXIT_DIFFERENT;
	}
	while (offset < total) {
		n = compare_run(cmd, offset);
		if (n < 0)
			return (int)n;
		offset += (uint64_t)n;
		progress(cmd, (uint64_t)n);
	}
	if (size1 != size2) {
		int err = compare_surplus(cmd, offset);

		if (err)
			return err;
	}
	qprintf(cmd, "Images are identical.\n");
	return 0;
}

int img_cmd_compare(int argc, char **argv)
{
	struct cmp_cmd cmd = { .flags = DRV_OPEN_RDONLY | DRV_OPEN_BUFFERED };
	int rc;

	if (cmp_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	if (side_open(&cmd, &cmd.a) || side_open(&cmd, &cmd.b))
		rc = CMP_EXIT_OPEN;
	else
		rc = -compare_images(&cmd);
	if (cmd.progress)
		putchar('\n');
	side_close(&cmd.b);
	side_close(&cmd.a);
	fflush(stdout);
	return rc;
}
