/* SPDX-License-Identifier: MIT */
/*
 * tap-img create's -o options (create.h), read and printed the way
 * qemu-img's QemuOpts do, so that option strings, error messages and the
 * "Formatting" line carry over from scripts written for qemu-img.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "create.h"
#include "optval.h"
#include "tap-img.h"

/* A format with no table of its own takes only a size. */
static const struct drv_opt_desc size_only[] = {
	{ "size", DRV_OPT_SIZE, "Virtual disk size", NULL },
	{ NULL, DRV_OPT_STRING, NULL, NULL },
};

static const struct drv_opt_desc *opt_table(const struct drv_ops *ops)
{
	return ops->create_opts ? ops->create_opts : size_only;
}

static const struct drv_opt_desc *find_desc(const struct drv_ops *ops, const char *key)
{
	const struct drv_opt_desc *d;

	for (d = opt_table(ops); d->name; d++) {
		if (strcmp(d->name, key) == 0)
			return d;
	}
	return NULL;
}

/*
 * Cut the value starting at @v in place: ",," is a comma, a single ','
 * ends it.  Returns where the next option starts.
 */
static char *cut_value(char *v)
{
	char *r = v, *w = v, *next;

	while (*r) {
		if (*r == ',' && r[1] != ',')
			break;
		*w++ = *r;
		r += *r == ',' ? 2 : 1;
	}
	next = *r ? r + 1 : r;
	*w = '\0';
	return next;
}

int create_split_opts(struct create_cmd *cmd, char *s)
{
	char *p = s;

	while (*p) {
		char *key = p, *after = p + strcspn(p, "=,");
		const char *value = "on";

		if (*after == '=') {
			*after = '\0';
			value = after + 1;
			p = cut_value(after + 1);
		} else {
			p = *after ? after + 1 : after;
			*after = '\0';
		}
		if (strcmp(key, "help") == 0 || strcmp(key, "?") == 0) {
			cmd->help = true;
			continue;
		}
		if (cmd->nr_given == CREATE_MAX_OPTS) {
			img_err("create", "too many options (at most %d)", CREATE_MAX_OPTS);
			return -EINVAL;
		}
		cmd->given[cmd->nr_given].key = key;
		cmd->given[cmd->nr_given].value = value;
		cmd->nr_given++;
	}
	return 0;
}

static const char *type_name(enum drv_opt_type type)
{
	switch (type) {
	case DRV_OPT_BOOL:
		return "bool (on/off)";
	case DRV_OPT_NUMBER:
		return "num";
	case DRV_OPT_SIZE:
		return "size";
	default:
		return "str";
	}
}

static int cmp_lines(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void create_print_help(const struct create_cmd *cmd)
{
	const struct drv_opt_desc *d, *table = opt_table(cmd->ops);
	char *lines[CREATE_MAX_OPTS];
	unsigned n = 0, i;

	for (d = table; d->name && n < CREATE_MAX_OPTS; d++) {
		char head[128];
		int len = snprintf(head, sizeof(head), "  %s=<%s>", d->name, type_name(d->type));

		if (asprintf(&lines[n], "%s%*s - %s", head, len < 24 ? 24 - len : 0, "",
			     d->help ? d->help : "") < 0)
			return;
		n++;
	}
	qsort(lines, n, sizeof(lines[0]), cmp_lines);
	printf("Supported %s options:\n", cmd->ops->name);
	for (i = 0; i < n; i++) {
		puts(lines[i]);
		free(lines[i]);
	}
}

/* A value of the option's type, or qemu-img's message for it. */
static int check_type(const struct create_cmd *cmd, const struct drv_opt_desc *d, const char *value,
		      uint64_t *num)
{
	bool flag;
	int err;

	switch (d->type) {
	case DRV_OPT_SIZE:
		err = optval_size(value, num);
		if (err == 0)
			return 0;
		if (err == -ERANGE)
			break;
		img_err("create",
			"%s: Parameter '%s' expects a non-negative number below 2^64\n"
			"Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
			"peta-\nand exabytes, respectively.",
			cmd->filename, d->name);
		return -EINVAL;
	case DRV_OPT_NUMBER:
		err = optval_number(value, num);
		if (err == 0)
			return 0;
		if (err == -ERANGE)
			break;
		img_err("create", "%s: Parameter '%s' expects a number", cmd->filename, d->name);
		return -EINVAL;
	case DRV_OPT_BOOL:
		if (optval_bool(value, &flag) == 0)
			return 0;
		img_err("create", "%s: Parameter '%s' expects 'on' or 'off'", cmd->filename,
			d->name);
		return -EINVAL;
	default:
		return 0;
	}
	img_err("create", "%s: Value '%s' is %s for parameter '%s'", cmd->filename, value,
		d->type == DRV_OPT_SIZE ? "out of range" : "too large", d->name);
	return -ERANGE;
}

/* Keep one entry per key in cmd->opts, the last value given. */
static void add_unique(struct create_cmd *cmd, const struct drv_opt *opt)
{
	unsigned i;

	for (i = 0; i < cmd->args.nr_opts; i++) {
		if (strcmp(cmd->opts[i].key, opt->key) == 0) {
			cmd->opts[i].value = opt->value;
			return;
		}
	}
	cmd->opts[cmd->args.nr_opts].key = opt->key;
	cmd->opts[cmd->args.nr_opts].value = opt->value;
	cmd->opts[cmd->args.nr_opts].used = false;
	cmd->args.nr_opts++;
}

/* size, backing_file and backing_fmt given with -o: the tool's to use. */
static int take_generic(struct create_cmd *cmd, const struct drv_opt *opt, uint64_t num)
{
	if (strcmp(opt->key, "size") == 0) {
		if (cmd->size_arg) {
			img_err("create", "%s: The image size must be specified only once",
				cmd->filename);
			return -EINVAL;
		}
		cmd->args.size_bytes = num;
		cmd->size_known = true;
	} else if (strcmp(opt->key, "backing_file") == 0) {
		cmd->args.backing_file = opt->value;
	} else {
		cmd->args.backing_format = opt->value;
	}
	return 0;
}

static bool is_generic(const char *key)
{
	return strcmp(key, "size") == 0 || strcmp(key, "backing_file") == 0 ||
	       strcmp(key, "backing_fmt") == 0;
}

/* -b and -F override -o, and need a format that has backing files. */
static int take_backing_args(struct create_cmd *cmd)
{
	if (cmd->backing_arg) {
		if (!find_desc(cmd->ops, "backing_file")) {
			img_err("create", "%s: Backing file not supported for file format '%s'",
				cmd->filename, cmd->fmt);
			return -EINVAL;
		}
		cmd->args.backing_file = cmd->backing_arg;
	}
	if (cmd->backing_fmt_arg) {
		if (!find_desc(cmd->ops, "backing_fmt")) {
			img_err("create",
				"%s: Backing file format not supported for file format '%s'",
				cmd->filename, cmd->fmt);
			return -EINVAL;
		}
		cmd->args.backing_format = cmd->backing_fmt_arg;
	}
	return 0;
}

int create_check_opts(struct create_cmd *cmd)
{
	unsigned i;

	cmd->args.opts = cmd->opts;
	cmd->args.nr_opts = 0;
	for (i = 0; i < cmd->nr_given; i++) {
		const struct drv_opt *opt = &cmd->given[i];
		const struct drv_opt_desc *d = find_desc(cmd->ops, opt->key);
		uint64_t num = 0;

		if (!d) {
			img_err("create", "%s: Invalid parameter '%s'", cmd->filename, opt->key);
			return -EINVAL;
		}
		if (check_type(cmd, d, opt->value, &num))
			return -EINVAL;
		if (!is_generic(opt->key))
			add_unique(cmd, opt);
		else if (take_generic(cmd, opt, num))
			return -EINVAL;
	}
	return take_backing_args(cmd);
}

/* A string value with its commas doubled, as qemu-img escapes them. */
static void print_escaped(const char *s)
{
	for (; *s; s++) {
		if (*s == ',')
			putchar(',');
		putchar(*s);
	}
}

/* The value given for @name (the last), or NULL. */
static const char *given_value(const struct create_cmd *cmd, const char *name)
{
	unsigned i;

	for (i = 0; i < cmd->args.nr_opts; i++) {
		if (strcmp(cmd->opts[i].key, name) == 0)
			return cmd->opts[i].value;
	}
	return NULL;
}

static void print_one(const struct create_cmd *cmd, const struct drv_opt_desc *d, const char *sep)
{
	const char *v = given_value(cmd, d->name);
	uint64_t num;

	if (strcmp(d->name, "size") == 0) {
		printf("%ssize=%" PRId64, sep, (int64_t)cmd->args.size_bytes);
		return;
	}
	if (strcmp(d->name, "backing_file") == 0)
		v = cmd->args.backing_file;
	else if (strcmp(d->name, "backing_fmt") == 0)
		v = cmd->args.backing_format;
	printf("%s%s=", sep, d->name);
	if (v && (d->type == DRV_OPT_SIZE || d->type == DRV_OPT_NUMBER) &&
	    (d->type == DRV_OPT_SIZE ? optval_size(v, &num) : optval_number(v, &num)) == 0)
		printf("%" PRId64, (int64_t)num);
	else if (d->type == DRV_OPT_STRING)
		print_escaped(v ? v : d->def);
	else
		fputs(v ? v : d->def, stdout);
}

void create_print_formatting(const struct create_cmd *cmd)
{
	const struct drv_opt_desc *d;
	const char *sep = "";

	printf("Formatting '%s', fmt=%s ", cmd->filename, cmd->fmt);
	for (d = opt_table(cmd->ops); d->name; d++) {
		bool present = d->def || strcmp(d->name, "size") == 0 ||
			       (strcmp(d->name, "backing_file") == 0 && cmd->args.backing_file) ||
			       (strcmp(d->name, "backing_fmt") == 0 && cmd->args.backing_format) ||
			       given_value(cmd, d->name);

		if (!present)
			continue;
		print_one(cmd, d, sep);
		sep = " ";
	}
	putchar('\n');
	fflush(stdout);
}
