/* SPDX-License-Identifier: MIT */
/*
 * tap-front's side of tapdisk's ring commands (docs/control-protocol.md,
 * "attach-ring"): hand a frontend's memfd, eventfds and ring references
 * to a running tapdisk over its control socket, learn what the disk is,
 * and detach again.  The socket is named by --ctl; a tapctld minor (-m)
 * resolves to the same socket through tapctld, then everything here is
 * the same.
 */
#ifndef QTAP_TAP_FRONT_ATTACH_H
#define QTAP_TAP_FRONT_ATTACH_H

#include <stdbool.h>
#include <stdint.h>

#include "front.h"

/* The backend's answer: what a Xen frontend would read from xenstore. */
struct tf_disk {
	uint64_t sectors; /* 512-byte */
	uint32_t sector_size;
	uint32_t info; /* RING_INFO_* */
	bool discard;
	unsigned max_order;
	unsigned max_queues;
	unsigned max_indirect_segs;
};

struct tf_attach {
	int sock;
	uint64_t ring_id;
	bool attached;
};

/* tf_ctl_connect - connect to the control socket @path.  0 or -errno (reported). */
int tf_ctl_connect(const char *path, struct tf_attach *a);

/* tf_ctl_ring_info - the backend's offer, before building the frontend. */
int tf_ctl_ring_info(struct tf_attach *a, struct tf_disk *disk);

/*
 * tf_ctl_attach - attach @dev's rings (local transport, @abi).  0, or
 * -errno with tapdisk's reason reported.
 */
int tf_ctl_attach(struct tf_attach *a, struct tf_dev *dev, enum ring_abi abi, unsigned order);

/* tf_ctl_detach - detach (if attached) and close the connection. */
int tf_ctl_detach(struct tf_attach *a);

/* tf_abi_name / tf_abi_parse - "native", "x86_32", "x86_64". */
const char *tf_abi_protocol(enum ring_abi abi);
int tf_abi_parse(const char *s, enum ring_abi *out);

#endif
