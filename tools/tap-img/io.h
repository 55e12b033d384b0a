/* SPDX-License-Identifier: MIT */
/*
 * tap-img io: shared between the verb (io.c) and its commands (io-cmds.c).
 */
#ifndef QTAP_TAP_IMG_IO_H
#define QTAP_TAP_IMG_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"
#include "sync.h"

struct io_state {
	struct drv_image *img;
	struct drv_sync *sync;
	bool quiet; /* -q: only errors */
};

/*
 * A command: @argv[0] is its name.  Returns 0, or -1 after printing why it
 * failed (qemu-io prints on stdout; so do we, to keep transcripts alike).
 */
struct io_cmd {
	const char *name;
	int (*fn)(struct io_state *st, int argc, char **argv);
	const char *args;
	const char *help;
};

/* The command table, terminated by an entry with a NULL name. */
extern const struct io_cmd io_cmds[];

/*
 * io_report - qemu-io's two result lines for @verb ("read", "wrote",
 * "discard") of @bytes at @offset taking @ns nanoseconds.
 */
void io_report(const char *verb, uint64_t offset, uint64_t bytes, uint64_t ns);

#endif
