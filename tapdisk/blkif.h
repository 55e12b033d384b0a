/* SPDX-License-Identifier: MIT */
/*
 * A blkif interface: one frontend's connection to the vbd, that is one
 * ring per queue it asked for (multi-queue), all over one transport kind.
 * Ring i is served by the vbd's queue thread i.  This is what the control
 * commands attach and detach (ring-ctl.c), and what tapctld's xenstore
 * handshake connects on a Xen host.
 *
 * The backend's offer, the values a Xen backend publishes in xenstore, is
 * td_blkif_offer(): a frontend may ask for less, never more.
 */
#ifndef QTAP_TAPDISK_BLKIF_H
#define QTAP_TAPDISK_BLKIF_H

#include <stdbool.h>
#include <stdint.h>

#include "ring-abi.h"
#include "tapdisk/ring.h"
#include "tapdisk/vbd.h"

/* The local transport passes 1 + 2 fds per queue in one control message. */
#define TD_BLKIF_MAX_QUEUES 7

struct td_blkif;

enum td_blkif_kind {
	TD_BLKIF_LOCAL = 0,
	TD_BLKIF_XEN,
};

struct td_blkif_conf {
	enum td_blkif_kind kind;
	enum ring_abi abi;
	unsigned order;	    /* 2^order pages per ring */
	unsigned nr_queues; /* rings */
	bool copy;	    /* copy data even where the transport maps frames (--ring-copy) */
	uint32_t refs[TD_BLKIF_MAX_QUEUES][RING_PAGES_MAX];
	/* TD_BLKIF_XEN */
	uint16_t domid;
	uint32_t ports[TD_BLKIF_MAX_QUEUES];
	/* TD_BLKIF_LOCAL: owned by the conf until td_blkif_connect() */
	int memfd;
	int kick_fds[TD_BLKIF_MAX_QUEUES];
	int irq_fds[TD_BLKIF_MAX_QUEUES];
};

/* What the backend offers (blkif-notes §2.1's backend keys). */
struct td_blkif_offer {
	uint64_t sectors; /* 512-byte */
	uint32_t sector_size;
	uint32_t phys_sector_size;
	uint32_t info; /* RING_INFO_* */
	bool discard;
	uint32_t discard_granularity; /* bytes */
	unsigned max_ring_order;
	unsigned max_queues;
	unsigned max_indirect_segs;
};

void td_blkif_offer(struct td_vbd *vbd, struct td_blkif_offer *out);

/* td_blkif_conf_init - no fds, x86_32 (a frontend that names no protocol). */
void td_blkif_conf_init(struct td_blkif_conf *c);

/* td_blkif_conf_close - close the fds a conf still owns. */
void td_blkif_conf_close(struct td_blkif_conf *c);

/*
 * td_blkif_connect - check @c against the offer, map and start every ring.
 * The conf's fds pass to the interface (closed on failure).  Control
 * thread.  0 or -errno, with the reason logged and in @why (@why_len).
 */
int td_blkif_connect(struct td_vbd *vbd, struct td_blkif_conf *c, struct td_blkif **out, char *why,
		     size_t why_len);

/*
 * td_blkif_disconnect - stop taking requests, wait for those in flight to
 * be answered, unmap, close.  Control thread; blocks.  NULL is a no-op.
 */
void td_blkif_disconnect(struct td_blkif *b);

/*
 * td_blkif_abandon - the same without waiting, for a disk about to close
 * that holds requests it will only fail when it closes (a paused one): the
 * rings stop taking requests now, answer the rest as the closing disk
 * completes them, and the last ring to stop frees everything, on its queue
 * thread.  Control thread.  NULL is a no-op.
 */
void td_blkif_abandon(struct td_blkif *b);

/* td_blkif_nr_queues / td_blkif_ring - the rings, for statistics. */
unsigned td_blkif_nr_queues(const struct td_blkif *b);
struct td_ring *td_blkif_ring(struct td_blkif *b, unsigned index);

#endif
