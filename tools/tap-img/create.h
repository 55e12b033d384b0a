/* SPDX-License-Identifier: MIT */
/*
 * tap-img create: the command's state, shared by create.c (the command)
 * and create-opts.c (-o parsing, checking, help and the "Formatting"
 * line, following qemu-img's QemuOpts rules).
 */
#ifndef QTAP_TAP_IMG_CREATE_H
#define QTAP_TAP_IMG_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define CREATE_MAX_OPTS 64

struct create_cmd {
	const char *fmt;
	const struct drv_ops *ops;
	const char *filename;
	const char *size_arg; /* the SIZE argument, or NULL */
	bool quiet;
	bool no_backing_open;	     /* -u */
	bool help;		     /* -o help or -o ? */
	const char *backing_arg;     /* -b */
	const char *backing_fmt_arg; /* -F */
	/* every KEY=VALUE of every -o, in order (pointing into argv) */
	struct drv_opt given[CREATE_MAX_OPTS];
	unsigned nr_given;
	/* the driver's options: one per key, the last value given */
	struct drv_opt opts[CREATE_MAX_OPTS];
	bool size_known;
	struct drv_create_args args;
};

/*
 * create_split_opts - add one -o argument "k=v,k=v" (split in place; ",,"
 * is a literal comma, a key alone means "on", "help" and "?" ask for help)
 * to cmd->given.  0 or -EINVAL (message printed).
 */
int create_split_opts(struct create_cmd *cmd, char *s);

/* create_print_help - qemu-img's -o help listing for cmd->ops. */
void create_print_help(const struct create_cmd *cmd);

/*
 * create_check_opts - refuse keys the format does not take and values
 * that are not of the option's type, with qemu-img's messages; take size,
 * backing_file and backing_fmt into cmd->args and the rest, one per key,
 * into cmd->opts for the driver.  0 or -EINVAL.
 */
int create_check_opts(struct create_cmd *cmd);

/* create_print_formatting - "Formatting 'FILE', fmt=FMT k=v ..." on stdout. */
void create_print_formatting(const struct create_cmd *cmd);

#endif
