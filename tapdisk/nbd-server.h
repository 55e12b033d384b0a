/* SPDX-License-Identifier: MIT */
/*
 * The NBD server of a tapdisk: one export (the vbd's image chain) on any
 * number of unix and TCP listeners, every connection bound to one queue
 * thread (round robin), the handshake and the requests served there with
 * no lock on the request path.  See nbd-proto.h for the protocol subset
 * and docs/design.md for the design.
 *
 * Threads: nbds_new, nbds_listen and nbds_free run on the control thread
 * and block; everything else runs on the queue threads.
 */
#ifndef QTAP_TAPDISK_NBD_SERVER_H
#define QTAP_TAPDISK_NBD_SERVER_H

#include <stdbool.h>

struct td_vbd;
struct td_blocklock;
struct nbds_server;

struct nbds_config {
	const char *name;	    /* export name; NULL: "" (the default export) */
	const char *description;    /* NULL: the image spec */
	bool readonly;		    /* refuse writes even on a writable vbd */
	unsigned max_conns;	    /* connections at once; 0: NBDS_DEFAULT_MAX_CONNS */
	struct td_blocklock *locks; /* sub-block write locks shared with the
				     * vbd's other frontends; NULL: the server's own */
};

#define NBDS_DEFAULT_MAX_CONNS 128u

/*
 * nbds_new - an NBD server for @vbd, not listening yet.  Returns 0 and
 * *@out, or -errno (logged).
 */
int nbds_new(struct td_vbd *vbd, const struct nbds_config *cfg, struct nbds_server **out);

/*
 * nbds_listen - also accept connections on @addr: "unix:PATH" (created mode
 * 0600 and removed by nbds_free; an existing socket file is replaced only
 * if nothing listens on it) or "tcp:HOST:PORT" (HOST a name or an address;
 * "tcp::PORT" or "tcp:PORT" bind 127.0.0.1 only).  Returns 0 or
 * -errno (logged with the address).
 */
int nbds_listen(struct nbds_server *s, const char *addr);

/*
 * nbds_free - stop listening, let every connection finish the requests it
 * has in flight (their replies are sent), disconnect it, and free.  NULL is
 * a no-op.  The vbd must still be open.
 */
void nbds_free(struct nbds_server *s);

/* nbds_conn_count - connections open now (for stats).  Any thread. */
unsigned nbds_conn_count(const struct nbds_server *s);

#endif
