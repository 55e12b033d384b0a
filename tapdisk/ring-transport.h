/* SPDX-License-Identifier: MIT */
/*
 * The seam between the blkif ring engine and whatever carries the ring:
 * Xen (grant-mapped ring pages, grant copy, an event channel) or the local
 * transport (a sealed memfd standing in for guest memory and its grant
 * table, eventfds standing in for the event channel).  The engine never
 * calls a Xen library or touches a memfd itself: it gets the ring pages
 * mapped contiguously, moves data through ->map or ->copy and handles
 * events through the rest.  blkif-notes §5.2.
 *
 * A transport serves one ring and is used by one thread at a time (created
 * on the control thread, then used only on the ring's queue thread, then
 * freed on the control thread after the queue thread let go of it).
 *
 * Data moves by copy (Xen's grant copy, blkif-notes §0.4), or, where the
 * transport can point at the frontend's frames without any set-up (the
 * local transport: they are in a memfd we map whole), the I/O runs on the
 * frames themselves (->map).  Then the frontend can change or revoke a
 * frame while the I/O runs, as a guest can under virtio or DMA: that only
 * affects its own data, since nothing in tapdisk or the drivers reads a
 * write's buffer twice in a way metadata depends on (docs/design.md, "The
 * blkif ring").  tapdisk --ring-copy keeps every ring on ->copy.
 */
#ifndef QTAP_TAPDISK_RING_TRANSPORT_H
#define QTAP_TAPDISK_RING_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct td_transport;

/* One segment of a copy (Xen's grant copy segment, in our terms) or of a map. */
struct td_copy_seg {
	uint32_t gref;	 /* the guest's grant of one 4 KiB frame */
	uint16_t offset; /* into the frame; offset + len <= 4096 */
	uint16_t len;
	void *local; /* our side: len bytes (->map: out, the guest's bytes) */
	int status;  /* out: 0 or -errno for this segment alone */
};

struct td_transport_ops {
	/*
	 * copy - copy @n segments from the guest into local memory
	 * (@to_guest false) or from local memory into the guest.  Sets
	 * every segment's status, each judged on its own (XSA-361), and
	 * returns 0 when all succeeded, else a failing segment's -errno.
	 * A bad grant is an error here, never a crash.
	 */
	int (*copy)(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest);

	/*
	 * map - Optional (NULL: data always moves by ->copy).  Point each
	 * of @n segments' ->local at the guest's bytes it names, after the
	 * checks ->copy makes for the same segments (reference in range,
	 * grant valid, frame in range, offset + len within the frame, and,
	 * when @to_guest, a grant the backend may write).  Sets every
	 * status and returns 0 when all succeeded, else a failing segment's
	 * -errno; then no pointer may be used.  The pointers stay valid
	 * (never fault) until ->free, whatever the frontend does; the bytes
	 * behind them are the frontend's to change at any time.
	 */
	int (*map)(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest);

	/*
	 * event_ack - the event fd was readable: take the notification.
	 * Returns 0, or -EAGAIN when there was none (spurious wake-up).
	 */
	int (*event_ack)(struct td_transport *t);

	/* event_unmask - the ring was looked at: let notifications in again. */
	void (*event_unmask)(struct td_transport *t);

	/* notify - tell the frontend there are responses.  0 or -errno. */
	int (*notify)(struct td_transport *t);

	/* free - unmap the ring, unbind and close.  No request may be in flight. */
	void (*free)(struct td_transport *t);
};

struct td_transport {
	const struct td_transport_ops *ops;
	const char *name;  /* "local", "xen": for messages */
	void *sring;	   /* the ring pages, one contiguous mapping */
	unsigned nr_pages; /* of the ring */
	int event_fd;	   /* readable when the frontend notified */
	/*
	 * How to watch event_fd: 0 for EPOLLIN, or EPOLLIN | EPOLLET where
	 * every notification is an edge of its own and event_ack need not
	 * read anything (an eventfd wakes its waiters on every write).
	 */
	uint32_t event_epoll;
	unsigned max_segs; /* the largest copy the transport was sized for */
};

/* td_transport_free - NULL is a no-op. */
void td_transport_free(struct td_transport *t);

/*
 * td_ring_why - a set-up failure: log it, and keep the sentence in @why
 * (@len bytes) for the control client that asked.  Returns @err.
 */
int td_ring_why(char *why, size_t len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- local ---------------------------------------------------------------- */

struct td_local_mem;

/*
 * td_local_mem_open - take @memfd (ownership passes, also on failure):
 * check it (ringshm_open) and map it whole.  One per attached frontend,
 * shared by its rings; it must outlive them.  0 or -errno, logged and
 * said in @why (@why_len bytes).
 */
int td_local_mem_open(int memfd, struct td_local_mem **out, char *why, size_t why_len);

/* td_local_mem_free - NULL is a no-op. */
void td_local_mem_free(struct td_local_mem *mem);

/*
 * td_transport_local_new - a ring on @mem: map the frames that grant
 * references @refs[0..@nr_pages) name, contiguously and in that order,
 * whatever the frames' order in the memfd; take @kick_fd (frontend ->
 * us) and @irq_fd (us -> frontend), which must be eventfds (ownership
 * passes, also on failure).  @max_segs sizes the copies.  0 or -errno,
 * logged and said in @why.
 */
int td_transport_local_new(struct td_local_mem *mem, const uint32_t *refs, unsigned nr_pages,
			   int kick_fd, int irq_fd, unsigned max_segs, struct td_transport **out,
			   char *why, size_t why_len);

/* ---- Xen ------------------------------------------------------------------ */

/*
 * td_transport_xen_new - a ring of frontend domain @domid: map its ring
 * pages @refs[0..@nr_pages) through gntdev and bind to its event channel
 * @remote_port.  Where Xen's devices cannot be opened, says why (not a Xen
 * host, a module not loaded, not root) and returns -errno, leaving nothing
 * open or mapped.  0 or -errno, logged and said in @why.
 */
int td_transport_xen_new(uint16_t domid, const uint32_t *refs, unsigned nr_pages,
			 uint32_t remote_port, unsigned max_segs, struct td_transport **out,
			 char *why, size_t why_len);

#endif
