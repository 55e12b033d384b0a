/* SPDX-License-Identifier: MIT */
/*
 * The Xen block backend in tapctld: blktap3's tapback role.
 *
 * It watches /local/domain/<self>/backend/<kind> (kind "vbd3" by default,
 * what libxl writes for backendtype=tap) and runs the XenbusState handshake
 * of blkif-notes.md §2 for each device there:
 *
 *   new device      wait until the hotplug script has written
 *                   hotplug-status=connected and physical-device-path
 *                   naming one of our disks; publish what its tapdisk
 *                   accepts: max-ring-page-order (and the legacy
 *                   max-ring-pages), multi-queue-max-queues,
 *                   feature-max-indirect-segments; InitWait
 *   frontend 3 or 4 read and validate ring-page-order, multi-queue-num-queues,
 *                   ring-ref(s), event-channel(s) and protocol; tell the
 *                   tapdisk to connect the ring; write sectors, info,
 *                   sector-size, physical-sector-size, feature-flush-cache,
 *                   feature-barrier, feature-discard (+ granularity,
 *                   alignment, secure) and state=Connected in one
 *                   transaction
 *   frontend 5      Closing
 *   frontend 6 / 0  disconnect the ring; Closed (and InitWait again when the
 *                   frontend reinitialises: reconnection)
 *   resize          xbk_resize() rewrites sectors and state=Connected
 *
 * Every frontend key is untrusted: bad or missing keys put the device in an
 * error state (message in the backend's "error" node and the log, state
 * Closing) and touch nothing else; the frontend closing and reinitialising
 * retries.  The backend never calls a tapdisk itself: it goes through
 * struct xbk_ops, which tapctld implements (and the unit tests fake).
 */
#ifndef QTAP_CONTROL_XENBK_H
#define QTAP_CONTROL_XENBK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xstore;
struct xbk;

#define XBK_MAX_RING_PAGE_ORDER 4 /* 16 pages: Linux blkback's default */
#define XBK_MAX_QUEUES 16
#define XBK_MAX_RING_PAGES (1u << XBK_MAX_RING_PAGE_ORDER)

/* XenbusState (xen/io/xenbus.h). */
enum xbk_state {
	XBK_UNKNOWN = 0,
	XBK_INITIALISING = 1,
	XBK_INITWAIT = 2,
	XBK_INITIALISED = 3,
	XBK_CONNECTED = 4,
	XBK_CLOSING = 5,
	XBK_CLOSED = 6,
	XBK_RECONFIGURING = 7,
	XBK_RECONFIGURED = 8,
};

/* The ring ABI the frontend asked for ("protocol"). */
enum xbk_proto {
	XBK_PROTO_NATIVE = 0,
	XBK_PROTO_X86_32,
	XBK_PROTO_X86_64,
};

/* What a tapdisk's ring accepts; capped by xbk_new's and the XBK_MAX_*. */
struct xbk_limits {
	unsigned max_ring_page_order;
	unsigned max_queues;
	unsigned max_indirect_segments; /* 0: no indirect descriptors */
};

/* What the frontend asked for, validated: what the tapdisk connects. */
struct xbk_ring {
	uint32_t domid; /* the frontend's */
	uint32_t devid;
	enum xbk_proto proto;
	unsigned order;	    /* ring pages = 1 << order */
	unsigned nr_queues; /* >= 1 */
	uint32_t refs[XBK_MAX_QUEUES][XBK_MAX_RING_PAGES];
	uint32_t evtchn[XBK_MAX_QUEUES];
};

/* What the backend writes for the frontend before Connected. */
struct xbk_disk {
	uint64_t size_bytes;
	uint32_t sector_bytes;	    /* logical */
	uint32_t phys_sector_bytes; /* >= sector_bytes */
	uint32_t discard_granularity_bytes;
	bool readonly;
	bool can_discard;
	bool can_barrier;
	struct xbk_limits limits; /* what this disk's tapdisk accepts */
};

/*
 * The seam to tapctld.  @minor is tapctld's disk number.  Each returns 0 or
 * -errno and may block (they talk to a tapdisk).
 *   find        the disk the hotplug script named in physical-device-path
 *   disk_info   its geometry and features
 *   connect     tell its tapdisk to connect the ring (-EALREADY: it is);
 *               on failure @err says why, in the tapdisk's words
 *   disconnect  tell its tapdisk to drop the ring (waits for in-flight I/O)
 */
struct xbk_ops {
	int (*find)(void *opaque, const char *physical_path, int *minor);
	int (*disk_info)(void *opaque, int minor, struct xbk_disk *out);
	int (*connect)(void *opaque, int minor, const struct xbk_ring *ring, char *err,
		       size_t err_size);
	int (*disconnect)(void *opaque, int minor);
};

/*
 * xbk_new - start watching @kind's backend directory of domain @self_domid
 * on @xs (which stays the caller's).  0 or -errno.
 */
int xbk_new(struct xstore *xs, unsigned self_domid, const char *kind,
	    const struct xbk_limits *limits, const struct xbk_ops *ops, void *opaque,
	    struct xbk **out);

/* xbk_free - stop watching; connected rings are left connected.  NULL ok. */
void xbk_free(struct xbk *xbk);

/* xbk_process - handle every pending watch event; call when xstore_fd() is readable. */
void xbk_process(struct xbk *xbk);

/* xbk_resize - @minor's size changed: tell its frontend (if connected). */
void xbk_resize(struct xbk *xbk, int minor);

/*
 * xbk_disk_gone - @minor's image is closed or its tapdisk is gone (@why
 * says which): its devices enter the error state (the frontend sees
 * Closing) and forget the minor.
 */
void xbk_disk_gone(struct xbk *xbk, int minor, const char *why);

/*
 * xbk_describe - one line about the Xen devices using @minor (for tap-ctl
 * list: "vbd3/1/51712 Connected" or "... error: ..."), "" if none.
 */
void xbk_describe(struct xbk *xbk, int minor, char *buf, size_t size);

/* ---- the frontend keys (xenbk-keys.c; pure, unit-tested) ---- */

/* Read one key below the frontend directory: 0 and a malloc'd string, -ENOENT, -errno. */
typedef int xbk_read_fn(void *ctx, const char *key, char **out);

/*
 * xbk_read_ring - read and validate the frontend's ring keys through @read
 * against @limits.  0 and *ring filled (domid and devid left to the
 * caller), or -EINVAL/-ENOENT with a message naming the key in @err.
 */
int xbk_read_ring(xbk_read_fn *read, void *ctx, const struct xbk_limits *limits,
		  struct xbk_ring *ring, char *err, size_t err_size);

/* xbk_parse_u32 - strict decimal: digits only, no sign or blanks, fits 32 bits. */
int xbk_parse_u32(const char *s, uint32_t *out);

/* xbk_state_name - "Connected" etc.; "state N" style for unknown values. */
const char *xbk_state_name(unsigned state);

#endif
