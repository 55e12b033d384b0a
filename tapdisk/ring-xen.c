// SPDX-License-Identifier: MIT
/*
 * The Xen ring transport (ring-transport.h): the ring pages are mapped with
 * one xengnttab_map_domain_grant_refs call (contiguous, all or nothing),
 * data moves by grant copy in batches with a status per segment, and the
 * event channel is bound with one xenevtchn handle per ring, since a
 * handle must not be shared between threads.  blkif-notes §3.
 *
 * Without Xen, xengnttab_open and xenevtchn_open fail with ENOENT and print
 * nothing (blkif-notes §3.4), so the message saying why is ours.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "ring-abi.h"
#include "tapdisk/ring-transport.h"
#include "tapdisk/ring-xenlib.h"

#define GNTDEV_PATH "/dev/xen/gntdev"
#define EVTCHN_PATH "/dev/xen/evtchn"

struct xen_transport {
	struct td_transport t;
	xengnttab_handle *gnt;
	xenevtchn_handle *evtchn;
	uint16_t domid;
	evtchn_port_t local_port;
	bool bound;
	xengnttab_grant_copy_segment_t *segs; /* max_segs, preallocated */
};

/* ---- the seam ------------------------------------------------------------- */

static void real_probe(struct td_xen_host *host)
{
	FILE *f = fopen("/sys/hypervisor/type", "re");
	struct stat st;

	memset(host, 0, sizeof(*host));
	if (f) {
		if (fgets(host->hypervisor, sizeof(host->hypervisor), f))
			host->hypervisor[strcspn(host->hypervisor, "\n")] = '\0';
		fclose(f);
	}
	host->proc_xen = stat("/proc/xen", &st) == 0;
	host->dev_xen = stat("/dev/xen", &st) == 0;
	host->euid = geteuid();
}

static const struct td_xenlib real_lib = {
	.gnttab_open = xengnttab_open,
	.gnttab_close = xengnttab_close,
	.gnttab_map_domain_grant_refs = xengnttab_map_domain_grant_refs,
	.gnttab_unmap = xengnttab_unmap,
	.gnttab_grant_copy = xengnttab_grant_copy,
	.evtchn_open = xenevtchn_open,
	.evtchn_close = xenevtchn_close,
	.evtchn_fd = xenevtchn_fd,
	.evtchn_bind_interdomain = xenevtchn_bind_interdomain,
	.evtchn_unbind = xenevtchn_unbind,
	.evtchn_pending = xenevtchn_pending,
	.evtchn_unmask = xenevtchn_unmask,
	.evtchn_notify = xenevtchn_notify,
	.probe = real_probe,
};

static const struct td_xenlib *lib = &real_lib;

void td_xenlib_set(const struct td_xenlib *l)
{
	lib = l ? l : &real_lib;
}

void td_xen_explain(const struct td_xen_host *host, const char *dev, const char *module, int err,
		    char *buf, size_t len)
{
	bool xen = strcmp(host->hypervisor, "xen") == 0 || host->proc_xen;

	if ((err == ENOENT || err == ENODEV || err == ENXIO) && !xen)
		snprintf(buf, len,
			 "%s is missing: this is not a Xen host (/sys/hypervisor/type says \"%s\", "
			 "no /proc/xen); the Xen ring transport runs in dom0 or a driver domain",
			 dev, host->hypervisor[0] ? host->hypervisor : "nothing");
	else if (err == ENOENT || err == ENODEV || err == ENXIO)
		snprintf(buf, len,
			 "%s is missing on this Xen host: the %s kernel module is not loaded "
			 "(modprobe %s)",
			 dev, module, module);
	else if ((err == EACCES || err == EPERM) && host->euid != 0)
		snprintf(buf, len, "%s: permission denied: not root (euid %u); run as root", dev,
			 (unsigned)host->euid);
	else
		snprintf(buf, len, "%s: cannot open: %s", dev, strerror(err));
}

static int explain_open_failure(const char *dev, const char *module, int err, char *why,
				size_t why_len)
{
	struct td_xen_host host;
	char msg[256];

	lib->probe(&host);
	td_xen_explain(&host, dev, module, -err, msg, sizeof(msg));
	return td_ring_why(why, why_len, err, "xen ring: %s", msg);
}

/* ---- copies and events ---------------------------------------------------- */

static int gntst_errno(int16_t st)
{
	switch (st) {
	case GNTST_okay:
		return 0;
	case GNTST_bad_domain:
	case GNTST_bad_gntref:
	case GNTST_bad_copy_arg:
	case GNTST_bad_page:
		return -EINVAL;
	case GNTST_permission_denied:
		return -EPERM;
	case GNTST_eagain:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

static void fill_seg(xengnttab_grant_copy_segment_t *x, const struct td_copy_seg *s, uint16_t domid,
		     bool to_guest)
{
	memset(x, 0, sizeof(*x));
	x->len = s->len;
	if (to_guest) {
		x->source.virt = s->local;
		x->dest.foreign.ref = s->gref;
		x->dest.foreign.offset = s->offset;
		x->dest.foreign.domid = domid;
		x->flags = GNTCOPY_dest_gref;
	} else {
		x->source.foreign.ref = s->gref;
		x->source.foreign.offset = s->offset;
		x->source.foreign.domid = domid;
		x->dest.virt = s->local;
		x->flags = GNTCOPY_source_gref;
	}
}

static int xen_copy(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest)
{
	struct xen_transport *xt = (struct xen_transport *)t;
	int first_err = 0;

	if (n > t->max_segs)
		return -E2BIG; /* the engine sizes its batches: a bug, not the guest */
	for (unsigned i = 0; i < n; i++)
		fill_seg(&xt->segs[i], &segs[i], xt->domid, to_guest);
	if (lib->gnttab_grant_copy(xt->gnt, n, xt->segs) < 0) {
		int err = neg_errno();

		log_err_ratelimited("xen ring: grant copy of %u segments failed: %m", n);
		for (unsigned i = 0; i < n; i++)
			segs[i].status = err;
		return err;
	}
	/* Each segment on its own: one success says nothing of another (XSA-361). */
	for (unsigned i = 0; i < n; i++) {
		segs[i].status = gntst_errno(xt->segs[i].status);
		if (segs[i].status && !first_err)
			first_err = segs[i].status;
	}
	return first_err;
}

static int xen_event_ack(struct td_transport *t)
{
	struct xen_transport *xt = (struct xen_transport *)t;
	xenevtchn_port_or_error_t port = lib->evtchn_pending(xt->evtchn);

	if (port < 0)
		return errno == EAGAIN ? -EAGAIN : neg_errno();
	return 0;
}

static void xen_event_unmask(struct td_transport *t)
{
	struct xen_transport *xt = (struct xen_transport *)t;

	if (lib->evtchn_unmask(xt->evtchn, xt->local_port) < 0)
		log_err_ratelimited("xen ring: unmasking port %u failed: %m", xt->local_port);
}

static int xen_notify(struct td_transport *t)
{
	struct xen_transport *xt = (struct xen_transport *)t;

	return lib->evtchn_notify(xt->evtchn, xt->local_port) < 0 ? neg_errno() : 0;
}

static void xen_free(struct td_transport *t)
{
	struct xen_transport *xt = (struct xen_transport *)t;

	if (xt->bound)
		lib->evtchn_unbind(xt->evtchn, xt->local_port);
	if (xt->evtchn)
		lib->evtchn_close(xt->evtchn);
	if (t->sring)
		lib->gnttab_unmap(xt->gnt, t->sring, t->nr_pages);
	if (xt->gnt)
		lib->gnttab_close(xt->gnt);
	free(xt->segs);
	free(xt);
}

static const struct td_transport_ops xen_ops = {
	.copy = xen_copy,
	.event_ack = xen_event_ack,
	.event_unmask = xen_event_unmask,
	.notify = xen_notify,
	.free = xen_free,
};

/* ---- set-up --------------------------------------------------------------- */

static int xen_open_handles(struct xen_transport *xt, char *why, size_t why_len)
{
	xt->gnt = lib->gnttab_open(NULL, 0);
	if (!xt->gnt)
		return explain_open_failure(GNTDEV_PATH, "xen-gntdev", neg_errno(), why, why_len);
	xt->evtchn = lib->evtchn_open(NULL, 0);
	if (!xt->evtchn)
		return explain_open_failure(EVTCHN_PATH, "xen-evtchn", neg_errno(), why, why_len);
	return 0;
}

static int xen_connect(struct xen_transport *xt, const uint32_t *refs, unsigned nr_pages,
		       uint32_t remote_port, char *why, size_t why_len)
{
	uint32_t grefs[RING_PAGES_MAX];
	xenevtchn_port_or_error_t port;
	int err;

	memcpy(grefs, refs, nr_pages * sizeof(grefs[0]));
	xt->t.sring = lib->gnttab_map_domain_grant_refs(xt->gnt, nr_pages, xt->domid, grefs,
							PROT_READ | PROT_WRITE);
	if (!xt->t.sring) {
		err = neg_errno();
		return td_ring_why(why, why_len, err,
				   "xen ring: cannot map the %u ring pages of domain %u: %s",
				   nr_pages, xt->domid, err_str(err));
	}
	xt->t.nr_pages = nr_pages;
	port = lib->evtchn_bind_interdomain(xt->evtchn, xt->domid, remote_port);
	if (port < 0) {
		err = neg_errno();
		return td_ring_why(why, why_len, err,
				   "xen ring: cannot bind event channel %u of domain %u: %s",
				   remote_port, xt->domid, err_str(err));
	}
	xt->local_port = (evtchn_port_t)port;
	xt->bound = true;
	xt->t.event_fd = lib->evtchn_fd(xt->evtchn);
	return 0;
}

int td_transport_xen_new(uint16_t domid, const uint32_t *refs, unsigned nr_pages,
			 uint32_t remote_port, unsigned max_segs, struct td_transport **out,
			 char *why, size_t why_len)
{
	struct xen_transport *xt;
	int err;

	if (nr_pages == 0 || nr_pages > RING_PAGES_MAX || domid >= DOMID_FIRST_RESERVED ||
	    max_segs == 0)
		return td_ring_why(why, why_len, -EINVAL,
				   "xen ring: bad parameters (domain %u, %u ring pages)", domid,
				   nr_pages);
	xt = calloc(1, sizeof(*xt));
	if (!xt)
		return -ENOMEM;
	xt->t = (struct td_transport){
		.ops = &xen_ops, .name = "xen", .event_fd = -1, .max_segs = max_segs
	};
	xt->domid = domid;
	xt->segs = calloc(max_segs, sizeof(*xt->segs));
	err = xt->segs ? xen_open_handles(xt, why, why_len) : -ENOMEM;
	if (!err)
		err = xen_connect(xt, refs, nr_pages, remote_port, why, why_len);
	if (err) {
		xen_free(&xt->t);
		return err;
	}
	*out = &xt->t;
	return 0;
}
