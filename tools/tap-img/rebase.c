/* SPDX-License-Identifier: MIT */
/*
 * tap-img rebase [-f FMT] [-t CACHE] [-T CACHE] [-p] [-u] [-U] [-q]
 *                -b BACKING [-F BACKING_FMT] FILE
 *
 * qemu-img rebase: make FILE name a new backing file.  In the default
 * (safe) mode FILE keeps reading the same: every run FILE does not hold
 * itself is read through FILE (that is, from the old backing chain) and
 * from the new backing file, compared 512 bytes at a time, and the
 * sectors that differ are written into FILE; FILE is flushed, and only
 * then does its header name the new file.  -b "" removes the backing
 * file (so everything FILE reads from it that is not zero is copied in).
 * -u (unsafe) only changes the header.  A relative BACKING is relative
 * to FILE's directory, as in the header.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chaincopy.h"
#include "checked.h"
#include "errors.h"
#include "qcow2/backing-edit.h"
#include "tap-img.h"

#define REBASE_BUF_BYTES (2u << 20)
#define REBASE_SECTOR 512u

struct rebase_cmd {
	const char *fmt;
	const char *filename;
	const char *path; /* FILE without a TYPE: prefix */
	const char *backing;
	const char *backing_fmt;
	unsigned cache_flags;
	unsigned src_cache_flags;
	bool unsafe;
	bool quiet;
	bool force_share;
	struct img_progress progress;
};

static void rebase_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img rebase [-f FMT] [-t CACHE] [-T CACHE] [-p] [-u] [-U] [-q]\n"
		   "                      -b BACKING [-F BACKING_FMT] FILE\n"
		   "\n"
		   "Make the qcow2 image FILE name BACKING as its backing file.\n"
		   "  -b BACKING      the new backing file (\"\": none); relative to FILE's\n"
		   "                  directory unless absolute\n"
		   "  -F BACKING_FMT  its format (required unless BACKING is \"\")\n"
		   "  -u              unsafe: only change the header (BACKING must already\n"
		   "                  read the same as the old backing file)\n"
		   "                  default (safe): first copy into FILE every range where\n"
		   "                  the old and the new backing files differ\n"
		   "  -f FMT          format of FILE (default: its TYPE: prefix, else probed)\n"
		   "  -t CACHE        cache mode of FILE, -T CACHE of the backing files\n"
		   "  -U              read the backing files even if others write them\n"
		   "  -p              show progress\n"
		   "  -q              quiet\n"
		   "Exit status: 0 on success, 1 on error.\n");
}

static int rebase_opt(struct rebase_cmd *cmd, int c)
{
	switch (c) {
	case 'f':
		cmd->fmt = optarg;
		return 0;
	case 'b':
		cmd->backing = optarg;
		return 0;
	case 'F':
		cmd->backing_fmt = optarg;
		return 0;
	case 't':
		return img_parse_cache("rebase", optarg, &cmd->cache_flags);
	case 'T':
		return img_parse_cache("rebase", optarg, &cmd->src_cache_flags);
	case 'u':
		cmd->unsafe = true;
		return 0;
	case 'U':
		cmd->force_share = true;
		return 0;
	case 'p':
		cmd->progress.on = true;
		return 0;
	case 'q':
		cmd->quiet = true;
		return 0;
	}
	rebase_usage(stderr);
	return -EINVAL;
}

static int rebase_parse_args(struct rebase_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	cmd->cache_flags = cmd->src_cache_flags = DRV_OPEN_BUFFERED;
	while ((c = getopt_long(argc, argv, "hf:b:F:t:T:uUpq", longopts, NULL)) != -1) {
		if (c == 'h') {
			rebase_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (rebase_opt(cmd, c))
			return -EINVAL;
	}
	if (argc - optind != 1) {
		img_err("rebase", "Expecting one image file name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	if (!cmd->backing) {
		img_err("rebase", "Must specify backing file (-b) or use unsafe mode (-u)");
		return -EINVAL;
	}
	if (*cmd->backing && !cmd->backing_fmt) {
		img_err("rebase",
			"Could not change the backing file to '%s': backing format must "
			"be specified",
			cmd->backing);
		return -EINVAL;
	}
	cmd->progress.on &= !cmd->quiet;
	return 0;
}

/* The length of the run of sectors from @a, @b on that are (un)equal as the first is. */
static uint64_t sector_run(const uint8_t *a, const uint8_t *b, uint64_t len, bool *differ)
{
	uint64_t n = MIN(len, (uint64_t)REBASE_SECTOR), run;

	*differ = memcmp(a, b, n) != 0;
	for (run = n; run < len; run += n) {
		n = MIN(len - run, (uint64_t)REBASE_SECTOR);
		if ((memcmp(a + run, b + run, n) != 0) != *differ)
			break;
	}
	return run;
}

/* Write into @top the sectors of [@off, @off + @n) where @old and @new differ. */
static int copy_differences(struct img_chain *top, uint64_t off, const uint8_t *old,
			    const uint8_t *new, uint64_t n)
{
	uint64_t done = 0, run;
	bool differ;
	int err = 0;

	while (!err && done < n) {
		run = sector_run(old + done, new + done, n - done, &differ);
		if (differ)
			err = drv_sync_rw(top->sync, DRV_OP_WRITE, off + done, (void *)(old + done),
					  run);
		if (err)
			img_err("rebase", "error while writing %s at byte %" PRIu64 ": %s",
				top->img->path, off + done, err_str(err));
		done += run;
	}
	return err;
}

/* Safe mode's copy: FILE's view where it does not hold data, against @new. */
static int copy_safe(struct rebase_cmd *cmd, struct img_chain *top, struct img_chain *new)
{
	uint64_t size = top->img->size_bytes, off = 0, n;
	uint8_t *old_buf = buf_alloc(REBASE_BUF_BYTES, 4096);
	uint8_t *new_buf = buf_alloc(REBASE_BUF_BYTES, 4096);
	bool held;
	int err = old_buf && new_buf ? 0 : -ENOMEM;

	while (!err && off < size) {
		img_progress_show(&cmd->progress, off, size);
		err = img_allocated_above(top, top->img, top->img->backing, off,
					  MIN(size - off, (uint64_t)REBASE_BUF_BYTES), &held, &n);
		if (err)
			img_err("rebase", "%s: block status at byte %" PRIu64 ": %s", cmd->filename,
				off, err_str(err));
		if (!err && !held) {
			/* what FILE reads here comes from the old backing chain */
			err = img_read("rebase", top, off, old_buf, n);
			if (!err && new->img)
				err = img_read("rebase", new, off, new_buf, n);
			else if (!err)
				memset(new_buf, 0, n);
			if (!err)
				err = copy_differences(top, off, old_buf, new_buf, n);
		}
		off += err ? 0 : n;
	}
	img_progress_show(&cmd->progress, size, size);
	img_progress_end(&cmd->progress);
	buf_free(old_buf);
	buf_free(new_buf);
	return err;
}

static int open_new_backing(const struct rebase_cmd *cmd, struct img_chain *new)
{
	unsigned flags = DRV_OPEN_RDONLY | DRV_OPEN_SHARED | cmd->src_cache_flags;
	char *name;
	int err;

	*new = (struct img_chain){ 0 };
	if (!*cmd->backing)
		return 0;
	name = img_backing_name(cmd->path, cmd->backing);
	if (!name)
		return -ENOMEM;
	err = img_chain_open("rebase", cmd->backing_fmt, name, flags, new);
	if (err)
		img_err("rebase", "Could not open new backing file '%s'", name);
	free(name);
	return err;
}

static int rebase_safe(struct rebase_cmd *cmd)
{
	struct img_chain top, new;
	int err;

	err = img_chain_open("rebase", cmd->fmt, cmd->path, cmd->cache_flags, &top);
	if (err)
		return err;
	err = open_new_backing(cmd, &new);
	if (!err)
		err = copy_safe(cmd, &top, &new);
	/* what was copied is durable before the header stops naming the old file */
	if (!err && (err = drv_sync_flush(top.sync)) != 0)
		img_err("rebase", "flushing %s: %s", cmd->filename, err_str(err));
	img_chain_close(&new);
	img_chain_close(&top);
	return err;
}

int img_cmd_rebase(int argc, char **argv)
{
	struct rebase_cmd cmd = { 0 };
	const char *type;
	int err;

	if (rebase_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	type = img_spec_split(cmd.filename, &cmd.path);
	if (!cmd.fmt)
		cmd.fmt = type ? type : img_probe(cmd.path);
	if (strcmp(cmd.fmt, "qcow2") != 0) {
		img_err("rebase", "Could not change the backing file to '%s': %s", cmd.backing,
			err_str(-ENOTSUP));
		return IMG_EXIT_ERR;
	}
	if (!cmd.unsafe && rebase_safe(&cmd))
		return IMG_EXIT_ERR;
	err = qcow2_backing_change(cmd.path, *cmd.backing ? cmd.backing : NULL,
				   *cmd.backing ? cmd.backing_fmt : NULL);
	if (err) {
		img_err("rebase", "Could not change the backing file to '%s': %s", cmd.backing,
			err_str(err));
		return IMG_EXIT_ERR;
	}
	return IMG_EXIT_OK;
}
