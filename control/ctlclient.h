/* SPDX-License-Identifier: MIT */
/*
 * The client side of the tap-ctl <-> tapctld protocol, for tap-ctl and for
 * other tools that find a disk through tapctld (tap-front -m MINOR).
 */
#ifndef QTAP_CONTROL_CTLCLIENT_H
#define QTAP_CONTROL_CTLCLIENT_H

#include <jansson.h>
#include <stddef.h>

#define CTLC_DEFAULT_SOCKET "/run/qtap/tapctld.sock"

/* ctlc_socket - @explicit if set, else $TAPCTLD_SOCKET, else the default. */
const char *ctlc_socket(const char *explicit_path);

/*
 * ctlc_call - send command @cmd with @args (stolen; NULL: none) to tapctld
 * at @sock and wait up to @timeout_s for the reply.  0 and *result (caller
 * decrefs; may be NULL if unwanted) for an ok reply; otherwise -errno with
 * a message for the user in @err: tapctld's own, or why tapctld could not
 * be reached.
 */
int ctlc_call(const char *sock, const char *cmd, json_t *args, unsigned timeout_s, json_t **result,
	      char *err, size_t size);

/*
 * ctlc_exchange - one request on the control socket @sock of @peer (a name
 * for messages: "tapctld", "the tapdisk"), with @nr_fds descriptors (they
 * stay ours) and @args (stolen).  0 and *result (may be NULL if unwanted),
 * or -errno with why in @err: the peer's own message when it refused.
 */
int ctlc_exchange(const char *sock, const char *peer, const char *cmd, json_t *args, const int *fds,
		  unsigned nr_fds, unsigned timeout_s, json_t **result, char *err, size_t size);

/* ctlc_call_fds - ctlc_call sending @nr_fds descriptors with the request (they stay ours). */
int ctlc_call_fds(const char *sock, const char *cmd, json_t *args, const int *fds, unsigned nr_fds,
		  unsigned timeout_s, json_t **result, char *err, size_t size);

/*
 * ctlc_minor_ctl - the control socket of the tapdisk serving @minor, asked
 * of tapctld at @sock.  0, or -errno with a message in @err.
 */
int ctlc_minor_ctl(const char *sock, int minor, char *path, size_t path_size, char *err,
		   size_t size);

#endif
