/* SPDX-License-Identifier: MIT */
/*
 * tap-img snapshot [-f FMT] [-q] [-U] (-l | -a NAME | -c NAME | -d NAME) FILE
 *
 * qemu-img snapshot: list, apply, create and delete the internal snapshots
 * of a qcow2 image.  The image is changed by drivers/qcow2/snapshot-edit.c,
 * which keeps the write-ordering contract; messages and exit codes are
 * qemu-img 7.2's (raw images have no snapshots: -l lists none, the others
 * fail).  -a looks a snapshot up by id, then by name; -d by name only, as
 * qemu-img does.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "qcow2/snapshot-edit.h"
#include "tap-img.h"

enum sn_action { SN_NONE, SN_LIST, SN_APPLY, SN_CREATE, SN_DELETE };

struct sn_cmd {
	enum sn_action action;
	const char *name;
	const char *fmt;
	const char *filename;
	bool quiet;
	bool force_share;
};

static void sn_usage(FILE *f)
{
	fprintf(f, "Usage: tap-img snapshot [-f FMT] [-q] [-U] (-l | -a NAME | -c NAME | -d NAME) "
		   "FILE\n"
		   "\n"
		   "List, apply, create or delete the internal snapshots of the qcow2 image FILE.\n"
		   "  -l        list the snapshots (the table qemu-img prints)\n"
		   "  -a NAME   apply the snapshot NAME (an id, or else a name): the image's\n"
		   "            contents become the snapshot's\n"
		   "  -c NAME   create a snapshot named NAME of the image as it is now\n"
		   "  -d NAME   delete the snapshot named NAME\n"
		   "  -f FMT    format of FILE (default: probed; only qcow2 has snapshots)\n"
		   "  -q        quiet\n"
		   "  -U        with -l: read the image even if another program writes it\n"
		   "Exit status: 0 on success, 1 on error.\n");
}

static int set_action(struct sn_cmd *cmd, enum sn_action a, const char *name)
{
	if (cmd->action != SN_NONE) {
		img_err("snapshot", "Cannot mix '-l', '-a', '-c', '-d'");
		return -EINVAL;
	}
	cmd->action = a;
	cmd->name = name;
	return 0;
}

static int sn_parse_opt(struct sn_cmd *cmd, int c)
{
	switch (c) {
	case 'l':
		return set_action(cmd, SN_LIST, NULL);
	case 'a':
		return set_action(cmd, SN_APPLY, optarg);
	case 'c':
		return set_action(cmd, SN_CREATE, optarg);
	case 'd':
		return set_action(cmd, SN_DELETE, optarg);
	case 'f':
		cmd->fmt = optarg;
		return 0;
	case 'q':
		cmd->quiet = true;
		return 0;
	case 'U':
		cmd->force_share = true;
		return 0;
	}
	sn_usage(stderr);
	return -EINVAL;
}

static int sn_parse_args(struct sn_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hla:c:d:f:qU", longopts, NULL)) != -1) {
		if (c == 'h') {
			sn_usage(stdout);
			exit(IMG_EXIT_OK);
		}
		if (sn_parse_opt(cmd, c))
			return -EINVAL;
	}
	if (argc - optind != 1) {
		img_err("snapshot", "Expecting one image file name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	return 0;
}

/* A format without snapshots: what qemu-img answers for raw. */
static int no_snapshots(const struct sn_cmd *cmd)
{
	switch (cmd->action) {
	case SN_CREATE:
		img_err("snapshot", "Could not create snapshot '%s': %d (%s)", cmd->name, -ENOTSUP,
			err_str(-ENOTSUP));
		return IMG_EXIT_ERR;
	case SN_APPLY:
		img_err("snapshot",
			"Could not apply snapshot '%s': Block driver does not support "
			"snapshots",
			cmd->name);
		return IMG_EXIT_ERR;
	case SN_DELETE:
		img_err("snapshot", "Could not delete snapshot '%s': snapshot not found",
			cmd->name);
		return IMG_EXIT_ERR;
	default:
		return IMG_EXIT_OK;
	}
}

static int sn_create(const struct sn_cmd *cmd, struct qcow2_sne *e)
{
	struct timespec ts;
	int err;

	clock_gettime(CLOCK_REALTIME, &ts);
	/* qemu-img records microseconds */
	err = qcow2_sne_create(e, cmd->name, (uint32_t)ts.tv_sec,
			       (uint32_t)(ts.tv_nsec / 1000 * 1000));
	if (err == -ERANGE)
		err = -EINVAL; /* a refcount past its maximum: QEMU's code for it */
	if (err)
		img_err("snapshot", "Could not create snapshot '%s': %d (%s)", cmd->name, err,
			err_str(err));
	return err;
}

static int sn_apply(const struct sn_cmd *cmd, struct qcow2_sne *e)
{
	int err = qcow2_sne_apply(e, cmd->name);

	if (err)
		img_err("snapshot", "Could not apply snapshot '%s': Failed to load snapshot: %s",
			cmd->name, err_str(err));
	return err;
}

static int sn_delete(const struct sn_cmd *cmd, struct qcow2_sne *e)
{
	int err = qcow2_sne_delete(e, cmd->name);

	if (err == -ENOENT)
		img_err("snapshot", "Could not delete snapshot '%s': snapshot not found",
			cmd->name);
	else if (err)
		img_err("snapshot", "Could not delete snapshot '%s': %s", cmd->name, err_str(err));
	return err;
}

static int sn_run(const struct sn_cmd *cmd, const char *path)
{
	bool ro = cmd->action == SN_LIST;
	struct qcow2_sne *e;
	unsigned n;
	int err;

	err = qcow2_sne_open(path, ro, ro && cmd->force_share, &e);
	if (err) {
		img_err("snapshot", "Could not open '%s': %s", cmd->filename, err_str(err));
		return IMG_EXIT_ERR;
	}
	switch (cmd->action) {
	case SN_LIST:
		n = qcow2_sne_count(e);
		if (n)
			img_snapshot_list_print(qcow2_sne_get(e, 0), n);
		break;
	case SN_CREATE:
		err = sn_create(cmd, e);
		break;
	case SN_APPLY:
		err = sn_apply(cmd, e);
		break;
	case SN_DELETE:
		err = sn_delete(cmd, e);
		break;
	default:
		break;
	}
	qcow2_sne_close(e);
	return err ? IMG_EXIT_ERR : IMG_EXIT_OK;
}

int img_cmd_snapshot(int argc, char **argv)
{
	struct sn_cmd cmd = { 0 };
	const char *path, *type, *fmt;

	if (sn_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	if (cmd.action == SN_NONE)
		return IMG_EXIT_OK; /* qemu-img does nothing either */
	type = img_spec_split(cmd.filename, &path);
	fmt = cmd.fmt ? cmd.fmt : type ? type : img_probe(path);
	if (strcmp(fmt, "qcow2") != 0) {
		if (strcmp(fmt, "raw") != 0 && strcmp(fmt, "aio") != 0) {
			img_err("snapshot", "Unknown file format '%s'", fmt);
			return IMG_EXIT_ERR;
		}
		return no_snapshots(&cmd);
	}
	return sn_run(&cmd, path);
}
