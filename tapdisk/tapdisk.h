/* SPDX-License-Identifier: MIT */
/*
 * One tapdisk process: at most one vbd (the image it serves), the
 * frontends attached to it, the control socket and the options it was
 * started with.  Everything here runs on the control thread (main's),
 * which also runs the control socket's event loop.
 *
 * Frontends (a blkif ring, an NBD or FUSE export) register a struct
 * td_frontend when they attach, so that closing the image or shutting the
 * process down detaches them first: vbd_close() requires it, and it is how
 * SIGTERM completes or fails every request a frontend has in flight.
 */
#ifndef QTAP_TAPDISK_TAPDISK_H
#define QTAP_TAPDISK_TAPDISK_H

#include <jansson.h>
#include <stdbool.h>
#include <time.h>

#include "driver.h"
#include "vbd.h"

struct evloop;
struct td_blocklock;
struct td_ctl;
struct tapdisk;

struct td_frontend {
	const char *kind; /* "ring", "nbd", "fuse": the name in `info` */
	/*
	 * detach - stop taking requests and wait for the ones in flight to
	 * complete (td_queue_run gets onto the queue threads); afterwards the
	 * vbd never sees this frontend again.  Control thread.  The frontend
	 * has already been removed from the list when this runs.
	 */
	void (*detach)(struct td_frontend *fe);
	/* describe - optional: add the frontend's details to @obj for `info`. */
	int (*describe)(struct td_frontend *fe, json_t *obj);
	void *opaque;
	struct td_frontend *next; /* private */
};

/*
 * Work to do each time an image has opened (from -a, or the `open`
 * command): a command-line option such as --nbd registers one while the
 * command line is parsed, and attaches its frontend from it.
 */
struct td_open_hook {
	/* 0, or -errno (logged): the open fails and the image is closed */
	int (*fn)(struct tapdisk *td, struct td_open_hook *h);
	void *opaque;
	struct td_open_hook *next; /* private */
};

struct tapdisk {
	struct evloop *loop; /* the control thread's */
	struct td_vbd *vbd;  /* NULL: no image open */
	struct td_frontend *frontends;
	struct td_ctl *ctl; /* NULL: no control socket */
	struct td_open_hook *open_hooks;
	struct td_blocklock *locks; /* sub-block writes of the NBD and FUSE
				     * frontends (rmw.h); with the vbd */

	/* from the command line; `open` takes the same as arguments */
	const char *spec;	  /* -a TYPE:PATH */
	struct td_vbd_opts opts;  /* -R -q -i --queue-depth -o */
	struct drv_opt *drv_opts; /* -o, parsed (malloc'ed) */
	const char *ctl_path;	  /* --ctl */
	const char *pidfile;	  /* --pidfile */
	bool foreground;	  /* -f */
	bool ring_copy;		  /* --ring-copy: attach-ring copies data (blkif.h) */

	time_t started;
	bool quit; /* leave the event loop: SIGTERM, SIGINT, `shutdown` */
};

/*
 * tapdisk_open - open @spec with @opts as the process's vbd (none may be
 * open).  0 or -errno (logged).
 */
int tapdisk_open(struct tapdisk *td, const char *spec, const struct td_vbd_opts *opts);

/*
 * tapdisk_close - detach every frontend, then close the vbd (its queued
 * requests fail with -ESHUTDOWN, in-flight ones complete, the chain is
 * flushed).  No-op without a vbd.
 */
void tapdisk_close(struct tapdisk *td);

/* tapdisk_open_hook_add - run @h after every successful tapdisk_open. */
void tapdisk_open_hook_add(struct tapdisk *td, struct td_open_hook *h);

/*
 * tapdisk_parse_drv_opts - "key=value,key=value" (qemu's -o) into an array
 * of drv_opt whose strings live in the same allocation: free(*out) frees
 * all.  0 or -EINVAL (logged, naming the item).
 */
int tapdisk_parse_drv_opts(const char *s, struct drv_opt **out, unsigned *nr);

/* tapdisk_frontend_add / _del - register or forget an attached frontend. */
void tapdisk_frontend_add(struct tapdisk *td, struct td_frontend *fe);
void tapdisk_frontend_del(struct tapdisk *td, struct td_frontend *fe);

/* tapdisk_info_json - what `info` answers: process, image, frontends. */
json_t *tapdisk_info_json(struct tapdisk *td);

/* tapdisk_request_quit - leave the event loop at the end of this iteration. */
void tapdisk_request_quit(struct tapdisk *td);

#define TAPDISK_VERSION "0.1.0"

#endif
