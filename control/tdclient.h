/* SPDX-License-Identifier: MIT */
/*
 * The client side of a tapdisk's control socket, as tapctld uses it.
 *
 * Everything tapctld knows about how a tapdisk is started and spoken to is
 * in tdclient.c: the command line that starts an empty tapdisk waiting for
 * `open`, and one call per control command.  The replies are JSON objects.
 */
#ifndef QTAP_CONTROL_TDCLIENT_H
#define QTAP_CONTROL_TDCLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The disk as the tapdisk reports it (tdc_info). */
struct tdc_info {
	uint64_t size_bytes;
	uint32_t block_bytes;
	uint32_t phys_block_bytes;
	uint32_t discard_bytes; /* granularity; 0 when it cannot discard */
	bool readonly;
	bool can_discard;
};

/*
 * tdc_argv - fill @argv (at least 8 slots) with the command line that
 * starts @bin as an empty tapdisk serving control socket @ctl_path.
 */
void tdc_argv(const char *bin, const char *ctl_path, char **argv);

/*
 * tdc_call - send @cmd with @args (may be NULL; not consumed) to the tapdisk
 * at @ctl_path and wait at most @timeout_s.  0 and *reply (may be NULL if
 * not wanted), or -errno with the tapdisk's own message, or what went wrong
 * talking to it, in @err.
 */
int tdc_call(const char *ctl_path, const char *cmd, const json_t *args, unsigned timeout_s,
	     json_t **reply, char *err, size_t size);

/*
 * tdc_open - open image @spec with tapctld's open arguments @args
 * (readonly, opts{KEY: VALUE}), as the tapdisk's open command takes them.
 */
int tdc_open(const char *ctl_path, const char *spec, const json_t *args, unsigned timeout_s,
	     char *err, size_t size);

/* tdc_export_add - export the open image: @kind "nbd" (@where unix:PATH or tcp:HOST:PORT) or "fuse" (@where a file). */
int tdc_export_add(const char *ctl_path, const char *kind, const char *where, unsigned timeout_s,
		   char *err, size_t size);

/* tdc_call_fds - tdc_call sending @nr_fds descriptors with the request (they stay ours). */
int tdc_call_fds(const char *ctl_path, const char *cmd, const json_t *args, const int *fds,
		 unsigned nr_fds, unsigned timeout_s, json_t **reply, char *err, size_t size);

/* tdc_info - ask for the disk's geometry and abilities. */
int tdc_info(const char *ctl_path, unsigned timeout_s, struct tdc_info *out, char *err,
	     size_t size);

/* tdc_ping - is a tapdisk accepting connections at @ctl_path?  0 or -errno. */
int tdc_ping(const char *ctl_path);

#endif
