/* SPDX-License-Identifier: MIT */
/*
 * tap-front --xenstore FRONTEND_DIR: a blkfront that goes through the
 * XenbusState handshake with tapctld's Xen backend over xenstore (on a
 * machine with no Xen, a fake xenstored reached through XENSTORED_PATH),
 * while its rings travel on the local transport: it registers its memfd and
 * eventfds with tapctld as a "local domain" (xen-local), whose grant
 * references index the memfd's emulated grant table (lib/ringshm.h) and
 * whose event channels are its queues' eventfds.  Everything else is what a Linux blkfront does:
 * wait for InitWait, read the limits, write ring-ref(s), event-channel(s),
 * protocol and Initialised in one transaction, wait for Connected, read
 * sectors and sector-size; Closing and Closed at the end.
 */
#ifndef QTAP_TAP_FRONT_XENFRONT_H
#define QTAP_TAP_FRONT_XENFRONT_H

#include "attach.h"
#include "front.h"

struct tf_xen {
	struct xs_handle *xs;
	char fe[256];
	char be[256];
	unsigned domid;
	int timeout_ms;
};

/*
 * tf_xen_begin - open xenstore, find the backend of @fe_path, wait for
 * InitWait, and read its limits into @disk (max_order, max_queues,
 * max_indirect_segs; the rest once connected).  0 or -errno (reported).
 */
int tf_xen_begin(const char *fe_path, struct tf_xen *x, struct tf_disk *disk);

/*
 * tf_xen_connect - register @dev with tapctld at @tapctld_sock, write the
 * ring keys and Initialised, wait for Connected and read the disk into
 * @disk.  0 or -errno (reported, with the backend's error node if any).
 */
int tf_xen_connect(struct tf_xen *x, const char *tapctld_sock, struct tf_dev *dev,
		   enum ring_abi abi, unsigned order, struct tf_disk *disk);

/* tf_xen_close - Closing, then Closed, each waited for; close xenstore. */
int tf_xen_close(struct tf_xen *x);

#endif
