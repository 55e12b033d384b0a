/* SPDX-License-Identifier: MIT */
/*
 * The command line: the table from cli-options.def turned into
 * getopt_long's, the core options' parsers, and the checks on the whole
 * (an image or a control socket; a way to reach the image).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "cli.h"
#include "errors.h"
#include "log.h"
#include "tapdisk.h"

const struct td_cli_opt td_cli_opts[] = {
#define TD_CLI_OPTION(name, short_name, arg, flags, fn, help)                                      \
	{ name, short_name, arg, flags, fn, help },
#include "cli-options.def"
#undef TD_CLI_OPTION
	{ NULL, 0, NULL, 0, NULL, NULL },
};

#define CLI_MAX_OPTS 64

static const char *prog = "tapdisk";

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
	return -EINVAL;
}

int td_cli_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return bad("%s", msg);
}

static int parse_count(const char *opt, const char *arg, uint64_t min, uint64_t max, unsigned *out)
{
	uint64_t v;

	if (parse_u64(arg, false, &v) || v < min || v > max)
		return bad("%s '%s': expected a number from %llu to %llu", opt, arg,
			   (unsigned long long)min, (unsigned long long)max);
	*out = (unsigned)v;
	return 0;
}

/* ---- the core options ---- */

int td_cli_add(struct tapdisk *td, const char *arg)
{
	if (td->spec)
		return bad("-a given twice ('%s', then '%s'): one image per tapdisk", td->spec,
			   arg);
	if (!strchr(arg, ':'))
		return bad("-a '%s': expected TYPE:PATH, such as qcow2:/images/vm.qcow2", arg);
	td->spec = arg;
	return 0;
}

int td_cli_readonly(struct tapdisk *td, const char *arg)
{
	td->opts.readonly = true;
	return 0;
}

int td_cli_queues(struct tapdisk *td, const char *arg)
{
	return parse_count("-q", arg, 1, TD_MAX_QUEUES, &td->opts.nr_queues);
}

int td_cli_queue_depth(struct tapdisk *td, const char *arg)
{
	return parse_count("--queue-depth", arg, 1, TD_MAX_QUEUE_DEPTH, &td->opts.queue_depth);
}

int td_cli_poll_us(struct tapdisk *td, const char *arg)
{
	return parse_count("--poll-us", arg, 0, TD_MAX_POLL_US, &td->opts.poll_us);
}

int td_cli_ring_copy(struct tapdisk *td, const char *arg)
{
	td->ring_copy = true;
	return 0;
}

int td_cli_options(struct tapdisk *td, const char *arg)
{
	int err;

	if (td->drv_opts)
		return bad("-o given twice: give all options in one, separated by commas");
	err = tapdisk_parse_drv_opts(arg, &td->drv_opts, &td->opts.nr_drv_opts);
	if (err)
		return bad("-o '%s': expected KEY=VALUE[,KEY=VALUE...]", arg);
	td->opts.drv_opts = td->drv_opts;
	return 0;
}

int td_cli_aio(struct tapdisk *td, const char *arg)
{
	if (aio_engine_parse(arg, &td->opts.engine))
		return bad("-i '%s': expected io_uring, libaio, sync or auto", arg);
	return 0;
}

int td_cli_ctl(struct tapdisk *td, const char *arg)
{
	if (!*arg)
		return bad("--ctl: empty socket path");
	td->ctl_path = arg;
	return 0;
}

int td_cli_foreground(struct tapdisk *td, const char *arg)
{
	td->foreground = true;
	return 0;
}

int td_cli_pid_file(struct tapdisk *td, const char *arg)
{
	td->pidfile = arg;
	return 0;
}

int td_cli_debug(struct tapdisk *td, const char *arg)
{
	if (log_set_debug_flags(arg))
		return bad("-D '%s': expected a list of %s", arg, log_debug_names());
	return 0;
}

int td_cli_help(struct tapdisk *td, const char *arg)
{
	tapdisk_cli_usage(stdout);
	return 1;
}

int td_cli_version(struct tapdisk *td, const char *arg)
{
	printf("tapdisk (qtap) %s\n", TAPDISK_VERSION);
	return 1;
}

/* ---- the table ---- */

void tapdisk_cli_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s -a TYPE:PATH [options]   serve one image\n"
		"       %s --ctl SOCKET [options]   wait for an `open` on SOCKET\n\n"
		"Options:\n",
		prog, prog);
	for (const struct td_cli_opt *o = td_cli_opts; o->name; o++) {
		char left[64];

		snprintf(left, sizeof(left), "%c%c%s--%s%s%s", o->short_name ? '-' : ' ',
			 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
			 o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(f, "  %-32s %s\n", left, o->help);
	}
	fprintf(f, "\nWithout -f, tapdisk becomes a daemon once the image and the socket are "
		   "ready,\nand logs to syslog.  See tapdisk(8).\n");
}

/* getopt_long's tables from ours; index in longopts = index in td_cli_opts. */
static void build_getopt(struct option *longopts, char *shortopts, size_t shortlen)
{
	size_t s = 0;
	unsigned i;

	shortopts[s++] = ':'; /* a missing argument is ':', not '?' */
	for (i = 0; td_cli_opts[i].name && i < CLI_MAX_OPTS; i++) {
		const struct td_cli_opt *o = &td_cli_opts[i];

		longopts[i] = (struct option){ o->name, o->arg ? required_argument : no_argument,
					       NULL, 256 + (int)i };
		if (o->short_name && s + 3 < shortlen) {
			shortopts[s++] = (char)o->short_name;
			if (o->arg)
				shortopts[s++] = ':';
		}
	}
	longopts[i] = (struct option){ NULL, 0, NULL, 0 };
	shortopts[s] = '\0';
}

static const struct td_cli_opt *opt_by_short(int c)
{
	for (const struct td_cli_opt *o = td_cli_opts; o->name; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

/* The command line as a whole. */
static int check_whole(struct tapdisk *td, bool frontend)
{
	if (!td->spec && !td->ctl_path)
		return bad("nothing to do: give -a TYPE:PATH to serve, or --ctl SOCKET to wait "
			   "for an `open`");
	if (!frontend)
		return bad("-a %s alone serves nothing: add --ctl SOCKET (or an export)", td->spec);
	return 0;
}

int tapdisk_cli_parse(struct tapdisk *td, int argc, char **argv)
{
	struct option longopts[CLI_MAX_OPTS + 1];
	char shortopts[2 * CLI_MAX_OPTS + 2];
	bool frontend = false;
	int c, err;

	if (argc > 0 && argv[0] && strrchr(argv[0], '/'))
		prog = strrchr(argv[0], '/') + 1;
	else if (argc > 0 && argv[0])
		prog = argv[0];
	build_getopt(longopts, shortopts, sizeof(shortopts));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const struct td_cli_opt *o;

		if (c == '?')
			return bad("unknown option '%s'", argv[optind - 1]);
		if (c == ':')
			return bad("option '%s' needs an argument", argv[optind - 1]);
		o = c >= 256 ? &td_cli_opts[c - 256] : opt_by_short(c);
		if (!o)
			return bad("unknown option '%s'", argv[optind - 1]);
		err = o->parse(td, optarg);
		if (err)
			return err;
		frontend |= (o->flags & TD_CLI_FRONTEND) != 0;
	}
	if (optind < argc)
		return bad("unexpected argument '%s'", argv[optind]);
	return check_whole(td, frontend);
}
