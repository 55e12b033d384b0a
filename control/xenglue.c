/* SPDX-License-Identifier: MIT */
/*
 * The Xen backend's seam onto tapctld's disks (struct xbk_ops), and its
 * place in the event loop.  Without xenstore (no Xen here) the backend is
 * simply off, unless --xen asked for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "log.h"
#include "tapctld.h"
#include "tdclient.h"
#include "xenbk.h"
#include "xstore.h"

/* Does @phys name @d: its control socket, or one of its unix NBD exports? */
static bool names_disk(const struct tcd_disk *d, const char *phys)
{
	json_t *nbd = json_object_get(d->open_args, "nbd"), *v;
	size_t i;

	if (strcmp(phys, d->ctl_path) == 0)
		return true;
	json_array_foreach(nbd, i, v)
	{
		const char *s = json_string_value(v);

		if (s && strncmp(s, "unix:", 5) == 0 && strcmp(s + 5, phys) == 0)
			return true;
	}
	return false;
}

static int xg_find(void *opaque, const char *phys, int *minor)
{
	struct tcd *t = opaque;
	struct tcd_disk *d;

	for (d = t->disks; d; d = d->next) {
		if (d->minor >= 0 && d->state == TCD_RUNNING && names_disk(d, phys)) {
			*minor = d->minor;
			return 0;
		}
	}
	return -ENOENT;
}

static uint32_t get_u32(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	return v < 0 || v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* The tapdisk's ring-info: what a blkif backend publishes for it. */
static int xg_disk_info(void *opaque, int minor, struct xbk_disk *out)
{
	struct tcd *t = opaque;
	struct tcd_disk *d = tcd_disk_by_minor(t, minor);
	json_t *r = NULL;
	char err[256];
	int rc;

	if (!d)
		return -ENOENT;
	rc = tdc_call(d->ctl_path, "ring-info", NULL, t->opts.tapdisk_timeout_s, &r, err,
		      sizeof(err));
	if (rc < 0) {
		log_err("xen: minor %d: %s", minor, err);
		return rc;
	}
	*out = (struct xbk_disk){
		.size_bytes = (uint64_t)json_integer_value(json_object_get(r, "sectors")) * 512,
		.sector_bytes = get_u32(r, "sector_size"),
		.phys_sector_bytes = get_u32(r, "physical_sector_size"),
		.readonly = (get_u32(r, "info") & 4) != 0,
		.can_discard = json_is_true(json_object_get(r, "discard")),
		.can_barrier = json_is_true(json_object_get(r, "barrier")),
		.limits = { .max_ring_page_order = get_u32(r, "max_ring_page_order"),
			    .max_queues = get_u32(r, "max_queues"),
			    .max_indirect_segments = get_u32(r, "max_indirect_segments") },
	};
	/* (a tapdisk older than the key: its physical sector) */
	out->discard_granularity_bytes = get_u32(r, "discard_granularity");
	if (!out->discard_granularity_bytes)
		out->discard_granularity_bytes = out->phys_sector_bytes;
	json_decref(r);
	if (out->sector_bytes < 512 || out->phys_sector_bytes < out->sector_bytes) {
		log_err("xen: minor %d: ring-info gave sector sizes %u/%u", minor,
			out->sector_bytes, out->phys_sector_bytes);
		return -EPROTO;
	}
	return 0;
}

static const char *proto_name(enum xbk_proto p)
{
	switch (p) {
	case XBK_PROTO_X86_32:
		return "x86_32-abi";
	case XBK_PROTO_X86_64:
		return "x86_64-abi";
	case XBK_PROTO_NATIVE:
		break;
	}
	return "native";
}

/* The ring parameters as the tapdisk's attach-ring takes them. */
static json_t *ring_json(const struct xbk_ring *r)
{
	json_t *refs = json_array(), *ports = json_array();
	unsigned q, i;

	for (q = 0; refs && ports && q < r->nr_queues; q++) {
		json_t *row = json_array();

		for (i = 0; row && i < (1u << r->order); i++)
			json_array_append_new(row, json_integer(r->refs[q][i]));
		if (!row || json_array_append_new(refs, row) < 0 ||
		    json_array_append_new(ports, json_integer(r->evtchn[q])) < 0) {
			json_decref(refs);
			json_decref(ports);
			return NULL;
		}
	}
	return json_pack("{s:s, s:s, s:i, s:i, s:o*, s:I, s:o*}", "transport", "xen", "protocol",
			 proto_name(r->proto), "order", (int)r->order, "queues", (int)r->nr_queues,
			 "refs", refs, "domid", (json_int_t)r->domid, "ports", ports);
}

static int xg_connect(void *opaque, int minor, const struct xbk_ring *ring, char *err, size_t size)
{
	struct tcd *t = opaque;
	struct tcd_disk *d = tcd_disk_by_minor(t, minor);
	json_t *args, *res = NULL;
	struct tcd_local_dom *l;
	int rc;

	if (!d)
		return -ENOENT;
	if (d->xen_ring)
		return -EALREADY; /* still attached, e.g. across a tapctld restart */
	args = ring_json(ring);
	if (!args)
		return -ENOMEM;
	for (l = t->local_doms; l && l->domid != ring->domid; l = l->next)
		;
	if (l && l->nr_fds != 1 + 2 * ring->nr_queues) {
		snprintf(err, size,
			 "local domain %u registered %u descriptors; %u queue(s) need %u", l->domid,
			 l->nr_fds, ring->nr_queues, 1 + 2 * ring->nr_queues);
		json_decref(args);
		return -EBADF;
	}
	if (l) {
		/* No Xen: the ring is on the local transport (struct tcd_local_dom). */
		json_object_set_new(args, "transport", json_string("local"));
		json_object_del(args, "domid");
		json_object_del(args, "ports");
	}
	rc = tdc_call_fds(d->ctl_path, "attach-ring", args, l ? l->fds : NULL, l ? l->nr_fds : 0,
			  t->opts.tapdisk_timeout_s, &res, err, size);
	json_decref(args);
	if (rc < 0)
		return rc;
	d->xen_ring = (uint64_t)json_integer_value(json_object_get(res, "ring"));
	json_decref(res);
	tcd_state_save(d);
	return 0;
}

static int xg_disconnect(void *opaque, int minor)
{
	struct tcd *t = opaque;
	struct tcd_disk *d = tcd_disk_by_minor(t, minor);
	char err[512];
	json_t *args;
	int rc;

	if (!d || !d->xen_ring)
		return -ENOENT;
	args = json_pack("{s:I}", "ring", (json_int_t)d->xen_ring);
	rc = tdc_call(d->ctl_path, "detach-ring", args, t->opts.tapdisk_timeout_s, NULL, err,
		      sizeof(err));
	json_decref(args);
	if (rc < 0 && rc != -ENOENT) {
		/* Still attached (EBUSY: requests wait in a paused disk): keep its id. */
		log_err("xen: minor %d: %s", minor, err);
		return rc;
	}
	d->xen_ring = 0;
	tcd_state_save(d);
	return 0;
}

static const struct xbk_ops xg_ops = {
	.find = xg_find,
	.disk_info = xg_disk_info,
	.connect = xg_connect,
	.disconnect = xg_disconnect,
};

static void on_xenstore(struct evloop_watch *w, uint32_t events)
{
	struct tcd *t = w->opaque;

	xbk_process(t->xbk);
}

int tcd_xen_start(struct tcd *t)
{
	const struct xbk_limits caps = {
		.max_ring_page_order = XBK_MAX_RING_PAGE_ORDER,
		.max_queues = XBK_MAX_QUEUES,
		.max_indirect_segments = 4096,
	};
	int rc;

	if (!t->opts.xen)
		return 0;
	rc = xstore_open(&t->xs);
	if (rc < 0) {
		if (t->opts.xen_required) {
			xstore_explain(rc);
			return rc;
		}
		log_info("xen: no xenstore, so no Xen backend (--xen makes this an error)");
		return 0;
	}
	rc = xbk_new(t->xs, 0, t->opts.xen_kind, &caps, &xg_ops, t, &t->xbk);
	if (rc == 0) {
		t->xs_watch = (struct evloop_watch){
			.fd = xstore_fd(t->xs), .events = EPOLLIN, .fn = on_xenstore, .opaque = t
		};
		rc = evloop_watch_add(t->loop, &t->xs_watch);
	}
	if (rc < 0) {
		tcd_xen_stop(t);
		return rc;
	}
	xbk_process(t->xbk);
	return 0;
}

void tcd_xen_stop(struct tcd *t)
{
	evloop_watch_del(&t->xs_watch);
	xbk_free(t->xbk);
	t->xbk = NULL;
	xstore_close(t->xs);
	t->xs = NULL;
}

void tcd_xen_disk_gone(struct tcd *t, int minor, const char *why)
{
	if (t->xbk)
		xbk_disk_gone(t->xbk, minor, why);
}

void tcd_xen_resized(struct tcd *t, int minor)
{
	if (t->xbk)
		xbk_resize(t->xbk, minor);
}

void tcd_xen_describe(struct tcd *t, int minor, char *buf, size_t size)
{
	buf[0] = '\0';
	if (t->xbk && minor >= 0)
		xbk_describe(t->xbk, minor, buf, size);
}

int tcd_xen_local(struct tcd *t, uint32_t domid, const int *fds, unsigned nr_fds, char *err,
		  size_t size)
{
	struct tcd_local_dom *l, **pp;
	unsigned i;

	if (nr_fds < 3 || nr_fds % 2 == 0 || nr_fds > 16) {
		snprintf(err, size,
			 "xen-local takes the memfd and each queue's kick and irq eventfds: 3, 5, "
			 "... 15 descriptors, not %u",
			 nr_fds);
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->domid = domid;
	for (i = 0; i < nr_fds; i++) {
		l->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (l->fds[i] < 0) {
			snprintf(err, size, "xen-local: %s", err_str(neg_errno()));
			while (i--)
				close(l->fds[i]);
			free(l);
			return -EBADF;
		}
	}
	l->nr_fds = nr_fds;
	/* A new registration replaces the domain's old one. */
	for (pp = &t->local_doms; *pp; pp = &(*pp)->next) {
		if ((*pp)->domid == domid) {
			struct tcd_local_dom *old = *pp;

			*pp = old->next;
			for (i = 0; i < old->nr_fds; i++)
				close(old->fds[i]);
			free(old);
			break;
		}
	}
	l->next = t->local_doms;
	t->local_doms = l;
	log_info("xen: local domain %u registered (%u queue(s) on the local transport)", domid,
		 (nr_fds - 1) / 2);
	return 0;
}

void tcd_xen_local_free(struct tcd *t)
{
	struct tcd_local_dom *l;
	unsigned i;

	while ((l = t->local_doms)) {
		t->local_doms = l->next;
		for (i = 0; i < l->nr_fds; i++)
			close(l->fds[i]);
		free(l);
	}
}
