/* SPDX-License-Identifier: MIT */
/*
 * The Xen transport's seam: every libxengnttab and libxenevtchn call it
 * makes, and the probes it uses to explain a failure, go through this
 * table.  In production it holds the libraries' functions; the unit test
 * (tests/unit/test-ring-xen.c) installs a fake grant table and event
 * channel here and nowhere else.
 */
#ifndef QTAP_TAPDISK_RING_XENLIB_H
#define QTAP_TAPDISK_RING_XENLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <xenevtchn.h>
#include <xengnttab.h>

/* What explains a device that would not open. */
struct td_xen_host {
	char hypervisor[16]; /* /sys/hypervisor/type, "" when absent */
	bool proc_xen;	     /* /proc/xen exists (xenfs) */
	bool dev_xen;	     /* /dev/xen exists */
	uid_t euid;
};

struct td_xenlib {
	xengnttab_handle *(*gnttab_open)(struct xentoollog_logger *logger, unsigned flags);
	int (*gnttab_close)(xengnttab_handle *h);
	void *(*gnttab_map_domain_grant_refs)(xengnttab_handle *h, uint32_t count, uint32_t domid,
					      uint32_t *refs, int prot);
	int (*gnttab_unmap)(xengnttab_handle *h, void *start, uint32_t count);
	int (*gnttab_grant_copy)(xengnttab_handle *h, uint32_t count,
				 xengnttab_grant_copy_segment_t *segs);
	xenevtchn_handle *(*evtchn_open)(struct xentoollog_logger *logger, unsigned flags);
	int (*evtchn_close)(xenevtchn_handle *h);
	int (*evtchn_fd)(xenevtchn_handle *h);
	xenevtchn_port_or_error_t (*evtchn_bind_interdomain)(xenevtchn_handle *h, uint32_t domid,
							     evtchn_port_t remote_port);
	int (*evtchn_unbind)(xenevtchn_handle *h, evtchn_port_t port);
	xenevtchn_port_or_error_t (*evtchn_pending)(xenevtchn_handle *h);
	int (*evtchn_unmask)(xenevtchn_handle *h, evtchn_port_t port);
	int (*evtchn_notify)(xenevtchn_handle *h, evtchn_port_t port);
	/* the host as the failure explanation sees it; see td_xen_explain() */
	void (*probe)(struct td_xen_host *host);
};

/* td_xenlib_set - install @lib (a test's fake), or NULL for the real libraries. */
void td_xenlib_set(const struct td_xenlib *lib);

/*
 * td_xen_explain - the message for failing to open @dev (a /dev/xen path,
 * served by kernel module @module) with -@err, on @host: not a Xen host,
 * the module not loaded, not root, or the errno.  Writes @buf.
 */
void td_xen_explain(const struct td_xen_host *host, const char *dev, const char *module, int err,
		    char *buf, size_t len);

#endif
