/* SPDX-License-Identifier: MIT */
/*
 * The Xen backend's seam onto tapctld's disks (struct xbk_ops), and its
 * place in the event loop.  Without xenstore (no Xen here) the backend is
 * simply off, unless --xen asked for it.
 */
#include <errno.h>
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

static int xg_disk_info(void *opaque, int minor, struct xbk_disk *out)
{
	struct tcd *t = opaque;
	struct tcd_disk *d = tcd_disk_by_minor(t, minor);
	struct tdc_info info;
	char err[256];
	int rc;

	if (!d)
		return -ENOENT;
	rc = tdc_info(d->ctl_path, t->opts.tapdisk_timeout_s, &info, err, sizeof(err));
	if (rc < 0) {
		log_err("xen: minor %d: %s", minor, err);
		return rc;
	}
	*out = (struct xbk_disk){
		.size_bytes = info.size_bytes,
		.sector_bytes = info.block_bytes,
		.phys_sector_bytes = info.phys_block_bytes,
		.discard_granularity_bytes = info.discard_bytes,
		.readonly = info.readonly,
		.can_discard = info.can_discard,
		.can_barrier = true,
		.limits = { .max_ring_page_order = info.max_ring_page_order,
			    .max_queues = info.max_queues,
			    .max_indirect_segments = info.max_indirect_segments },
	};
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

/* The ring parameters as the tapdisk's attach-ring command takes them. */
static json_t *ring_json(const struct xbk_ring *r)
{
	json_t *queues = json_array(), *o;
	unsigned q, i;

	for (q = 0; queues && q < r->nr_queues; q++) {
		json_t *refs = json_array();

		for (i = 0; refs && i < (1u << r->order); i++)
			json_array_append_new(refs, json_integer(r->refs[q][i]));
		o = json_pack("{s:o*, s:I}", "refs", refs, "evtchn", (json_int_t)r->evtchn[q]);
		if (!o || json_array_append_new(queues, o) < 0) {
			json_decref(queues);
			return NULL;
		}
	}
	return json_pack("{s:s, s:I, s:I, s:s, s:i, s:o*}", "transport", "xen", "domid",
			 (json_int_t)r->domid, "devid", (json_int_t)r->devid, "protocol",
			 proto_name(r->proto), "order", (int)r->order, "queues", queues);
}

static int xg_connect(void *opaque, int minor, const struct xbk_ring *ring, char *err, size_t size)
{
	struct tcd *t = opaque;
	struct tcd_disk *d = tcd_disk_by_minor(t, minor);
	json_t *args;
	int rc;

	if (!d)
		return -ENOENT;
	args = ring_json(ring);
	if (!args)
		return -ENOMEM;
	rc = tdc_call(d->ctl_path, "attach-ring", args, t->opts.tapdisk_timeout_s, NULL, err, size);
	json_decref(args);
	return rc;
}

static int xg_disconnect(void *opaque, int minor)
{
	struct tcd *t = opaque;
	struct tcd_disk *d = tcd_disk_by_minor(t, minor);
	char err[512];
	int rc;

	if (!d)
		return -ENOENT;
	rc = tdc_call(d->ctl_path, "detach-ring", NULL, t->opts.tapdisk_timeout_s, NULL, err,
		      sizeof(err));
	if (rc < 0)
		log_err("xen: minor %d: %s", minor, err);
	return rc;
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
