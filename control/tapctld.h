/* SPDX-License-Identifier: MIT */
/*
 * tapctld's insides, shared by its files (prefix tcd_).
 *
 * One thread, one event loop.  The daemon owns a table of disks: each is one
 * tapdisk process, supervised through a pidfd, reached through its control
 * socket, and named by a minor once attached.  Commands from tap-ctl and
 * the Xen backend's requests run to completion on the loop; the ones that
 * talk to a tapdisk block for at most that tapdisk's timeout.
 *
 *   daemon.c    the control socket and the command table
 *   supervise.c spawn a tapdisk, notice its death, stop it
 *   disks.c     attach/open/close/pause/resume/detach a disk
 *   statedir.c  the records a restarted tapctld re-adopts tapdisks from
 *   tdclient.c  the tapdisk control protocol, client side
 *   xenglue.c   the Xen backend's seam (struct xbk_ops) onto the disks
 */
#ifndef QTAP_CONTROL_TAPCTLD_H
#define QTAP_CONTROL_TAPCTLD_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "evloop.h"

#define TCD_MAX_MINORS 1024
#define TCD_MAX_DEATHS 32
#define TCD_SOCK_BYTES sizeof(((struct sockaddr_un *)0)->sun_path)

enum tcd_state {
	TCD_SPAWNED,  /* tapdisk running, no minor */
	TCD_ATTACHED, /* minor bound, no image open */
	TCD_RUNNING,  /* image open, serving */
	TCD_PAUSED,   /* image closed by pause, waiting for unpause */
};

struct tcd;

struct tcd_disk {
	struct tcd *tcd;
	int minor; /* -1 while TCD_SPAWNED */
	pid_t pid;
	int pidfd;
	uint64_t start_ticks; /* /proc/PID/stat starttime: tells a reused pid apart */
	bool child;	      /* spawned by this tapctld (reaped with waitpid) */
	bool polled;	      /* no pidfd (old kernel, valgrind): watched by a timer */
	bool supervised;
	bool reaped; /* exit_status is valid */
	int exit_status;
	enum tcd_state state;
	char ctl_path[TCD_SOCK_BYTES]; /* the tapdisk's control socket */
	char spec[PATH_MAX + 16];      /* TYPE:PATH of the open image, "" if none */
	json_t *open_args;	       /* readonly, nbd, fuse, opts: what open was given */
	uint64_t xen_ring;	       /* attach-ring's id while a Xen frontend is connected */
	struct evloop_watch exit_watch;
	struct tcd_disk *next;
};

/*
 * A "local domain": a frontend with no Xen (tap-front --xenstore) that
 * takes part in the xenstore handshake; its rings travel on the local
 * transport, so it hands tapctld its memfd and eventfds (xen-local), which
 * go to the tapdisk when the backend connects a device of that domid.
 */
struct tcd_local_dom {
	uint32_t domid;
	int fds[16]; /* memfd, then each queue's kick and irq eventfds */
	unsigned nr_fds;
	struct tcd_local_dom *next;
};

/* A tapdisk that died, for tap-ctl list. */
struct tcd_death {
	int minor;
	pid_t pid;
	char spec[PATH_MAX + 16];
	char how[64];	 /* "killed by signal 9", "exited with status 1" */
	uint64_t when_s; /* CLOCK_REALTIME seconds */
};

struct tcd_opts {
	const char *sock_path;
	const char *state_dir;
	const char *tapdisk_bin;
	unsigned tapdisk_timeout_s; /* per command to a tapdisk */
	bool xen;		    /* run the Xen backend */
	bool xen_required;	    /* --xen given: no xenstore is an error */
	const char *xen_kind;	    /* backend directory name, "vbd3" */
	const char *pid_file;
};

struct tcd {
	struct tcd_opts opts;
	struct evloop *loop;
	int listen_fd;
	struct evloop_watch listen_watch;
	int lock_fd;
	struct tcd_disk *disks;
	struct tcd_death deaths[TCD_MAX_DEATHS];
	unsigned nr_deaths, next_death;
	struct evloop_timer poll_timer; /* for disks without a pidfd */
	unsigned nr_polled;
	struct xstore *xs;
	struct xbk *xbk;
	struct tcd_local_dom *local_doms; /* xen-local registrations */
	struct evloop_watch xs_watch;
	bool stopping;
};

/* daemon.c */
int tcd_listen(struct tcd *t);
void tcd_unlisten(struct tcd *t);

/*
 * commands.c: run one request, return its reply (NULL: out of memory).
 * @fds came with it; they stay the caller's (a command keeps dups).
 */
json_t *tcd_command(struct tcd *t, const json_t *req, const int *fds, unsigned nr_fds);

/* supervise.c: the tapdisk processes */
int tcd_spawn(struct tcd *t, struct tcd_disk **out, char *err, size_t size);
int tcd_proc_open(struct tcd_disk *d);
int tcd_supervise(struct tcd_disk *d);
void tcd_unsupervise(struct tcd_disk *d);
void tcd_proc_stop(struct tcd_disk *d);
uint64_t tcd_proc_start_ticks(pid_t pid);
void tcd_record_death(struct tcd_disk *d, const char *how);

/* disks.c */
struct tcd_disk *tcd_disk_by_minor(struct tcd *t, int minor);
struct tcd_disk *tcd_disk_by_pid(struct tcd *t, pid_t pid);
void tcd_disk_unlink(struct tcd_disk *d);
int tcd_attach(struct tcd *t, struct tcd_disk *d, int minor, char *err, size_t size);
int tcd_open(struct tcd_disk *d, const char *spec, json_t *args, char *err, size_t size);
int tcd_close(struct tcd_disk *d, char *err, size_t size);
int tcd_pause(struct tcd_disk *d, char *err, size_t size);
int tcd_resume(struct tcd_disk *d, const char *new_spec, char *err, size_t size);
int tcd_detach(struct tcd_disk *d, char *err, size_t size);
void tcd_disk_free(struct tcd_disk *d);
const char *tcd_state_name(enum tcd_state s);
json_t *tcd_disk_json(struct tcd_disk *d);

/* statedir.c */
int tcd_state_lock(struct tcd *t);
int tcd_state_save(struct tcd_disk *d);
void tcd_state_forget(struct tcd_disk *d);
void tcd_state_adopt(struct tcd *t);
int tcd_ctl_path(struct tcd *t, pid_t pid, char *buf, size_t size);

/* xenglue.c */
int tcd_xen_start(struct tcd *t);
void tcd_xen_stop(struct tcd *t);
void tcd_xen_disk_gone(struct tcd *t, int minor, const char *why);
void tcd_xen_resized(struct tcd *t, int minor);
void tcd_xen_describe(struct tcd *t, int minor, char *buf, size_t size);
int tcd_xen_local(struct tcd *t, uint32_t domid, const int *fds, unsigned nr_fds, char *err,
		  size_t size);
void tcd_xen_local_free(struct tcd *t);

#endif
