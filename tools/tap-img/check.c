// SPDX-License-Identifier: MIT
/*
 * tap-img check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-U] FILE
 *
 * As qemu-img check: findings on stderr as they are found, the summary on
 * stdout (human or JSON, the same keys, zero counters left out), and
 * qemu-img's exit codes: 0 clean, 1 check not completed, 2 corruptions,
 * 3 leaks only, 63 the format has no check.  After a repair the image is
 * checked again and that second result is the one printed, with the
 * counts of what was repaired.
 *
 * Without -f the format is recognised from the file's magic, as qemu-img
 * probes it: check only reads metadata, never serves the data nor opens
 * a backing file, so this cannot be abused the way probing a served disk
 * can.  The image is locked as qemu-img locks it, so neither tool checks
 * (or repairs) an image the other, QEMU or tapdisk is writing.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "imglock.h"
#include "json.h"
#include "qcow2/check.h"
#include "qcow2/format.h"
#include "tap-img.h"

#define CHECK_EXIT_CORRUPT 2
#define CHECK_EXIT_LEAKS 3
#define CHECK_EXIT_NOT_SUPPORTED 63

struct check_cmd {
	const char *fmt;
	const char *filename;
	const char *path; /* filename without a TYPE: prefix */
	unsigned fix;
	bool json;
	bool quiet;
	bool force_share;
};

static void check_usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-img check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-U] "
		"FILE\n"
		"\n"
		"Check a qcow2 image for consistency and optionally repair it, as qemu-img check.\n"
		"  -f FMT           image format (default: FILE's TYPE: prefix, else its magic)\n"
		"  -r leaks         free leaked clusters\n"
		"  -r all           also repair corruptions (may rebuild the refcounts)\n"
		"  --output=FMT     human (default) or json\n"
		"  -q               print nothing on stdout\n"
		"  -U               force share (read-only check of an image in use)\n"
		"\nExit codes: 0 no errors, 1 check not completed, 2 corruptions,\n"
		"3 leaked clusters only, 63 the format cannot be checked.\n");
}

static int check_parse_opt(struct check_cmd *cmd, int c)
{
	switch (c) {
	case 'f':
		cmd->fmt = optarg;
		return 0;
	case 'r':
		if (strcmp(optarg, "leaks") == 0) {
			cmd->fix = QCOW2_CHECK_REPAIR_LEAKS;
		} else if (strcmp(optarg, "all") == 0) {
			cmd->fix = QCOW2_CHECK_REPAIR_ALL;
		} else {
			img_err("check",
				"Unknown option value for -r (expecting 'leaks' or 'all'): %s",
				optarg);
			return -EINVAL;
		}
		return 0;
	case 'o':
		if (strcmp(optarg, "json") == 0 || strcmp(optarg, "human") == 0) {
			cmd->json = strcmp(optarg, "json") == 0;
			return 0;
		}
		img_err("check", "--output must be used with human or json as argument.");
		return -EINVAL;
	case 'T':
		return 0; /* the cache mode: check always reads through the page cache */
	case 'q':
		cmd->quiet = true;
		return 0;
	case 'U':
		cmd->force_share = true;
		return 0;
	}
	check_usage(stderr);
	return -EINVAL;
}

static int check_parse_args(struct check_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "repair", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:r:T:qU", longopts, NULL)) != -1) {
		if (c == 'h') {
			check_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (check_parse_opt(cmd, c))
			return -EINVAL;
	}
	if (argc - optind != 1) {
		img_err("check", "Expecting one image file name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	cmd->path = cmd->filename;
	if (cmd->fix && cmd->force_share) {
		img_err("check",
			"Could not open '%s': force-share=on can only be used with read-only "
			"images",
			cmd->filename);
		return -EINVAL;
	}
	return 0;
}

/* "qcow2" when the file starts with the qcow2 magic, else "raw". */
static int check_probe(struct check_cmd *cmd)
{
	CLEANUP_CLOSE int fd = open(cmd->path, O_RDONLY | O_CLOEXEC);
	uint8_t magic[4] = { 0 };
	ssize_t n;

	if (fd < 0) {
		int err = neg_errno();

		img_err("check", "Could not open '%s': %s", cmd->filename, err_str(err));
		return err;
	}
	n = pread(fd, magic, sizeof(magic), 0);
	if (!cmd->fmt)
		cmd->fmt = n == (ssize_t)sizeof(magic) && qcow2_get_be32(magic) == QCOW2_MAGIC
				   ? "qcow2"
				   : "raw";
	return 0;
}

/* The format: -f, a TYPE: prefix naming a driver, or the file's magic. */
static int check_format(struct check_cmd *cmd)
{
	const char *colon = strchr(cmd->filename, ':');
	const struct drv_ops *ops;

	if (!cmd->fmt && colon && colon != cmd->filename) {
		CLEANUP_FREE char *type = strndup(cmd->filename, (size_t)(colon - cmd->filename));

		if (type && drv_find(type)) {
			cmd->fmt = drv_find(type)->name;
			cmd->path = colon + 1;
		}
	}
	if (cmd->fmt) {
		ops = drv_find(cmd->fmt);
		if (!ops) {
			img_err("check", "Unknown driver '%s'", cmd->fmt);
			return -EINVAL;
		}
		cmd->fmt = ops->name;
	}
	return check_probe(cmd);
}

/*
 * The locks qemu-img check takes: read, sharing no write; with -r also
 * write and resize; with -U read only, sharing everything.  Held on @fd
 * until exit.
 */
static int check_lock(const struct check_cmd *cmd, int *fd)
{
	if (cmd->force_share)
		return img_lock("check", cmd->filename, cmd->path, IMGLOCK_PERM_SHARED,
				IMGLOCK_SHARED_SHARED, fd);
	return img_lock("check", cmd->filename, cmd->path,
			cmd->fix ? IMGLOCK_PERM_RW : IMGLOCK_PERM_RO,
			cmd->fix ? IMGLOCK_SHARED_RW : IMGLOCK_SHARED_RO, fd);
}

static void check_report(void *opaque, const char *line)
{
	(void)opaque;
	fflush(stdout);
	fprintf(stderr, "%s\n", line);
}

/* ---- output ------------------------------------------------------------------------ */

static void check_print_human(const struct qcow2_check_result *r)
{
	if (!(r->corruptions || r->leaks || r->check_errors)) {
		printf("No errors were found on the image.\n");
	} else {
		if (r->corruptions)
			printf("\n%" PRIu64 " errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt "
			       "it.\n",
			       r->corruptions);
		if (r->leaks)
			printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n",
			       r->leaks);
		if (r->check_errors)
			printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
			       r->check_errors);
	}
	if (r->total_clusters && r->allocated_clusters)
		printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
		       "compressed clusters\n",
		       r->allocated_clusters, r->total_clusters,
		       (double)r->allocated_clusters * 100.0 / (double)r->total_clusters,
		       (double)r->fragmented_clusters * 100.0 / (double)r->allocated_clusters,
		       (double)r->compressed_clusters * 100.0 / (double)r->allocated_clusters);
	if (r->image_end_offset)
		printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

/* A counter qemu-img prints only when non-zero (check-errors: always). */
static int json_count(json_t *o, const char *key, uint64_t v, bool always)
{
	if (!v && !always)
		return 0;
	return json_obj_set(o, key, json_integer((json_int_t)v));
}

/* qemu-img's key order, which its JSON dictionary's hashing gives. */
static int check_print_json(const struct check_cmd *cmd, const struct qcow2_check_result *r)
{
	json_t *o = json_object();
	int err;

	if (!o)
		return -ENOMEM;
	err = json_count(o, "image-end-offset", r->image_end_offset, false);
	err = err ?: json_count(o, "compressed-clusters", r->compressed_clusters, false);
	err = err ?: json_count(o, "total-clusters", r->total_clusters, false);
	err = err ?: json_count(o, "corruptions", r->corruptions, false);
	err = err ?: json_count(o, "corruptions-fixed", r->corruptions_fixed, false);
	err = err ?: json_count(o, "check-errors", r->check_errors, true);
	err = err ?: json_count(o, "leaks", r->leaks, false);
	err = err ?: json_count(o, "leaks-fixed", r->leaks_fixed, false);
	err = err ?: json_count(o, "allocated-clusters", r->allocated_clusters, false);
	err = err ?: json_obj_set(o, "filename", json_string(cmd->filename));
	err = err ?: json_obj_set(o, "format", json_string(cmd->fmt));
	err = err ?: json_count(o, "fragmented-clusters", r->fragmented_clusters, false);
	if (!err)
		err = json_print(stdout, o);
	json_decref(o);
	return err;
}

/* ---- the verb ---------------------------------------------------------------------- */

/* Run the check (and the second one after a repair); 0 or -errno. */
static int check_run(struct check_cmd *cmd, struct qcow2_check_result *r)
{
	struct qcow2_check_opts opts = { .flags = cmd->fix, .report = check_report };
	struct qcow2_check_result again;
	int err = qcow2_check_ex(cmd->path, &opts, r);

	if (err || !(r->corruptions_fixed || r->leaks_fixed))
		return err;
	if (!cmd->json && !cmd->quiet)
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %" PRIu64 " leaked clusters\n"
		       "    %" PRIu64 " corruptions\n\n"
		       "Double checking the fixed image now...\n",
		       r->leaks_fixed, r->corruptions_fixed);
	opts.flags = 0;
	err = qcow2_check_ex(cmd->path, &opts, &again);
	again.leaks_fixed = r->leaks_fixed;
	again.corruptions_fixed = r->corruptions_fixed;
	*r = again;
	return err;
}

static int check_exit_code(const struct check_cmd *cmd, const struct qcow2_check_result *r, int err)
{
	if (!err && !cmd->quiet) {
		if (cmd->json)
			err = check_print_json(cmd, r);
		else
			check_print_human(r);
	}
	if (err || r->check_errors) {
		if (err)
			img_err("check", "Check failed: %s", err_str(err));
		else
			img_err("check", "Check failed");
		return IMG_EXIT_ERR;
	}
	if (r->corruptions)
		return CHECK_EXIT_CORRUPT;
	return r->leaks ? CHECK_EXIT_LEAKS : IMG_EXIT_OK;
}

int img_cmd_check(int argc, char **argv)
{
	CLEANUP_CLOSE int lock_fd = -1;
	struct check_cmd cmd = { 0 };
	struct qcow2_check_result r;
	int err;

	if (check_parse_args(&cmd, argc, argv) || check_format(&cmd))
		return IMG_EXIT_ERR;
	if (strcmp(cmd.fmt, "qcow2") != 0) {
		img_err("check", "This image format does not support checks");
		return CHECK_EXIT_NOT_SUPPORTED;
	}
	if (check_lock(&cmd, &lock_fd))
		return IMG_EXIT_ERR;
	err = check_run(&cmd, &r);
	if (r.open_failed) {
		img_err("check", "Could not open '%s': %s", cmd.filename, err_str(err));
		return IMG_EXIT_ERR;
	}
	return check_exit_code(&cmd, &r, err);
}
