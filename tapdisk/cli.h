/* SPDX-License-Identifier: MIT */
/*
 * tapdisk's command line, from a table any file can add an option to:
 * one line in tapdisk/cli-options.def and the parser in its own file (its
 * prototype comes from this header).
 */
#ifndef QTAP_TAPDISK_CLI_H
#define QTAP_TAPDISK_CLI_H

#include <stdio.h>

struct tapdisk;

#define TD_CLI_FRONTEND (1u << 0) /* serves the image: -a needs nothing else */

typedef int td_cli_parse_fn(struct tapdisk *td, const char *arg);

#define TD_CLI_OPTION(name, short_name, arg, flags, fn, help) td_cli_parse_fn fn;
#include "cli-options.def"
#undef TD_CLI_OPTION

struct td_cli_opt {
	const char *name;
	int short_name;	 /* 0: none */
	const char *arg; /* NULL: takes none */
	unsigned flags;	 /* TD_CLI_* */
	td_cli_parse_fn *parse;
	const char *help;
};

extern const struct td_cli_opt td_cli_opts[];

/*
 * tapdisk_cli_parse - read @argv into @td.  0 to go on, 1 when done (exit
 * 0: --help, --version), -EINVAL when the command line is wrong (printed
 * to stderr, naming what was wrong).
 */
int tapdisk_cli_parse(struct tapdisk *td, int argc, char **argv);

/* tapdisk_cli_usage - the --help text. */
void tapdisk_cli_usage(FILE *f);

#endif
