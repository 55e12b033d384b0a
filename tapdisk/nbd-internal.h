/* SPDX-License-Identifier: MIT */
/*
 * The NBD server's internals, shared by nbd-server.c (listeners, queues,
 * shutdown), nbd-conn.c (a connection's socket: handshake, request
 * parsing, sending), nbd-io.c (running a request) and nbd-bs.c (block
 * status).  Not an interface for anything else.
 *
 * Memory: a connection allocates everything when it enters the
 * transmission phase: its request slots and an arena that every request's
 * data (read data, write payload, block status descriptors) is carved from
 * in allocation order, so that the request path never allocates.  A
 * client that has used up the slots or the arena is not read from until
 * replies go out; that is also what holds back a client that does not
 * read its replies.
 */
#ifndef QTAP_TAPDISK_NBD_INTERNAL_H
#define QTAP_TAPDISK_NBD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "evloop.h"
#include "tapdisk/nbd-proto.h"
#include "tapdisk/nbd-server.h"
#include "tapdisk/rmw.h"
#include "tapdisk/vbd.h"

#define NBDS_SLOTS 128u		     /* requests in flight per connection */
#define NBDS_RUNS 16u		     /* content chunks in one read reply */
#define NBDS_IOV (2 * NBDS_RUNS + 1) /* iovecs of one reply */
#define NBDS_RX_BYTES (128u << 10)   /* receive buffer; holds any option */
#define NBDS_DIRECT_MIN (64u << 10)  /* payload left to read straight into place */
#define NBDS_ARENA_BYTES ((size_t)NBDP_MAX_BLOCK_BYTES + (1u << 20))
#define NBDS_ALIGN 4096u		       /* arena allocations: O_DIRECT-ready */
#define NBDS_BS_DESC 1024u		       /* descriptors per context per reply */
#define NBDS_HOLE_GRAIN 4096u		       /* sparse reads: zero runs at this grain */
#define NBDS_HANDSHAKE_NS (10ull * 1000000000) /* as qemu-nbd's default */
#define NBDS_SHUTDOWN_NS (5ull * 1000000000)   /* to take the last replies */
#define NBDS_SEND_IOV 1024u		       /* iovecs per sendmsg */
/*
 * A unix socket's send buffer (the kernel caps it at net.core.wmem_max).
 * The default (about 200 KiB) takes a fifth of a 1 MiB read reply per
 * sendmsg, each a wake-up of the client and an EPOLLOUT round for us; TCP
 * sizes its own buffer and is left alone.
 */
#define NBDS_UNIX_SNDBUF_BYTES (4 << 20)
#define NBDS_ACCEPT_RETRY_NS (100ull * 1000000)

/* ---- the arena (nbd-arena.c) ------------------------------------------- */

struct nbds_span {
	size_t unit; /* first unit of the data */
	size_t units;
	size_t waste_unit; /* the skipped end of the ring a wrap holds up */
	size_t waste;
};

struct nbds_arena {
	uint8_t *base;
	size_t units;  /* of NBDS_ALIGN bytes */
	uint8_t *busy; /* per unit */
	size_t head;   /* next allocation */
	size_t tail;   /* oldest unit held */
	size_t used;   /* units held, skipped ends included */
};

int nbds_arena_init(struct nbds_arena *a, size_t cap);
void nbds_arena_fini(struct nbds_arena *a);

/* nbds_arena_get - @len bytes recorded in @sp, or NULL when they do not fit now. */
void *nbds_arena_get(struct nbds_arena *a, size_t len, struct nbds_span *sp);

/* nbds_arena_put - give @sp back (once); space returns in ring order. */
void nbds_arena_put(struct nbds_arena *a, const struct nbds_span *sp);

/* ---- objects ------------------------------------------------------------ */

struct nbds_conn;
struct nbds_qctx;

struct nbds_slot {
	struct nbds_conn *c;
	struct nbdp_request r;
	struct td_request req;
	struct td_rmw rmw;
	struct iovec io_iov;
	struct nbds_span span;
	bool has_span;
	uint8_t *buf;	/* arena: the data, from disk offset @start */
	uint64_t start; /* READ/WRITE: the first block's offset */
	uint32_t got;	/* WRITE: payload bytes received */

	/* BLOCK_STATUS and CACHE walks */
	uint64_t pos, end;
	unsigned phase;
	struct nbdp_bs bs[2]; /* base:allocation, qemu:allocation-depth */

	/* the reply */
	uint8_t hdr[NBDS_RUNS][32];
	struct iovec iov[NBDS_IOV];
	unsigned iovcnt;
	unsigned sent_iov;	/* iovecs fully sent */
	size_t sent_bytes;	/* of iov[sent_iov] */
	struct nbds_slot *next; /* free list, or the send queue */
};

enum nbds_rx {
	RX_CLIENT_FLAGS = 0,
	RX_OPT_HDR,
	RX_OPT_DATA,
	RX_OPT_DISCARD,
	RX_REQ_HDR,
	RX_PAYLOAD,
	RX_DISCARD,
	RX_NONE, /* reading stopped */
};

struct nbds_conn {
	struct nbds_server *srv;
	struct nbds_qctx *qc;
	struct td_queue *q;
	int fd;
	char peer[80];
	struct evloop_watch watch;
	uint32_t events;	   /* what the watch is set to */
	struct evloop_timer timer; /* the handshake's deadline, then shutdown's */
	struct evloop_call attach;

	struct nbdp_export exp; /* this connection's copy */
	struct nbdp_session sess;
	enum nbds_rx rx_state;

	/* handshake */
	struct nbdp_buf hs_out;
	size_t hs_sent;
	uint32_t opt, opt_len;
	uint64_t discard; /* bytes of option data or payload still to drop */

	/* receive buffer */
	uint8_t *rx;
	size_t rx_start, rx_end;
	struct nbds_slot *cur; /* receiving a payload */

	/* transmission */
	struct nbds_slot *slots;
	struct nbds_slot *free_slots;
	unsigned busy; /* slots not free */
	struct nbds_arena arena;
	struct nbds_slot *tx_head, *tx_tail;
	struct iovec *send_iov;
	bool flush_queued; /* on qc->flush list */
	struct nbds_conn *flush_next;

	bool blocked; /* out of slots or arena: not reading */
	bool closing; /* reading stopped; gone once idle */
	bool hard;    /* closing without sending what is queued */
	bool shutdown_seen;
	struct nbds_conn *prev, *next; /* qc->conns */
};

/* Per queue thread. */
struct nbds_qctx {
	struct nbds_server *srv;
	struct td_queue *q;
	struct evloop *loop;
	struct evloop_hook hook; /* sends what completed this iteration */
	struct nbds_conn *conns;
	struct nbds_conn *flush;
	bool stopping;
};

struct nbds_listener {
	struct nbds_server *srv;
	int fd;
	char *addr;
	char *unlink_path;
	struct evloop_watch watch;
	struct evloop_timer retry; /* accept paused: out of file descriptors */
	struct nbds_listener *next;
};

struct nbds_server {
	struct td_vbd *vbd;
	struct nbdp_export exp; /* master copy; connections copy it at accept */
	char *name;
	char *description;
	char *bitmaps[NBDP_MAX_BITMAPS]; /* exp.bitmaps: copies of the image's names */
	uint32_t block_bytes;
	unsigned nr_queues;
	unsigned max_conns;
	struct nbds_qctx *qcs;
	struct nbds_listener *listeners;
	struct td_blocklock *locks;
	bool own_locks;
	unsigned next_queue; /* round robin, on the accepting thread */
	struct td_resize_notifier resize;

	pthread_mutex_t lock; /* nr_conns, exp, the condition */
	pthread_cond_t cond;
	unsigned nr_conns;
	bool stopping;
};

/* nbd-conn.c */
void nbds_conn_accepted(struct nbds_server *srv, int fd, const char *peer);
void nbds_conn_shutdown(struct nbds_conn *c);
void nbds_qctx_flush(struct evloop_hook *h);
void nbds_conn_fail(struct nbds_conn *c, const char *why);
void nbds_conn_queue_reply(struct nbds_slot *s);
void nbds_conn_slot_free(struct nbds_slot *s);

/* nbd-io.c */
int nbds_io_start(struct nbds_conn *c, const struct nbdp_request *r, struct nbds_slot **out);
void nbds_io_payload_done(struct nbds_slot *s);
void nbds_reply_error(struct nbds_slot *s, uint32_t error, const char *what);
void nbds_reply_ok(struct nbds_slot *s);

/* nbd-bs.c */
size_t nbds_bs_bytes(const struct nbds_conn *c, const struct nbdp_request *r);
void nbds_bs_start(struct nbds_slot *s);
void nbds_cache_start(struct nbds_slot *s);

#endif
