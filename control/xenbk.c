/* SPDX-License-Identifier: MIT */
/*
 * The Xen block backend's per-device state machine (see xenbk.h).
 *
 * Level-triggered: a watch event only says "look at this device again";
 * dev_eval() then reads the current backend and frontend state and does
 * what is due.  So coalesced events, the spurious event a watch fires on
 * registration, and a tapctld restart (devices found Connected) all take
 * the same path.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "cleanup.h"
#include "errors.h"
#include "log.h"
#include "xenbk.h"
#include "xstore.h"

#define PATH_BYTES 256
#define TXN_RETRIES 16
#define BE_TOKEN "qtap-backend"
#define FE_TOKEN "qtap-frontend"

/* blkif.h's info bits. */
#define VDISK_CDROM 0x1
#define VDISK_READONLY 0x4

struct xbk_dev {
	struct xbk *xbk;
	char be[PATH_BYTES]; /* backend directory */
	char fe[PATH_BYTES]; /* frontend directory, "" until known */
	char name[64];	     /* "vbd3/1/51712" for messages */
	uint32_t domid, devid;
	int minor; /* -1 until physical-device-path resolves */
	unsigned be_state;
	struct xbk_limits lim; /* what we published */
	bool ring_connected;
	bool dirty;
	char error[200]; /* non-empty: the error state */
	struct xbk_dev *next;
};

struct xbk {
	struct xstore *xs;
	char root[128];
	const char *kind;
	struct xbk_limits lim;
	const struct xbk_ops *ops;
	void *opaque;
	struct xbk_dev *devs;
};

static int be_read(struct xbk_dev *d, const char *key, char **out)
{
	char path[PATH_BYTES + 64];

	snprintf(path, sizeof(path), "%s/%s", d->be, key);
	return xstore_read(d->xbk->xs, XSTORE_NO_TXN, path, out);
}

static int fe_read(void *ctx, const char *key, char **out)
{
	struct xbk_dev *d = ctx;
	char path[PATH_BYTES + 64];

	snprintf(path, sizeof(path), "%s/%s", d->fe, key);
	return xstore_read(d->xbk->xs, XSTORE_NO_TXN, path, out);
}

static int set_state(struct xbk_dev *d, unsigned state)
{
	int rc = xstore_writef(d->xbk->xs, XSTORE_NO_TXN, d->be, "state", "%u", state);

	if (rc < 0) {
		log_err("xen %s: cannot write state %s: %s", d->name, xbk_state_name(state),
			err_str(rc));
		return rc;
	}
	log_dbg(LOG_F_XEN, "xen %s: backend %s -> %s", d->name, xbk_state_name(d->be_state),
		xbk_state_name(state));
	d->be_state = state;
	return 0;
}

static void dev_disconnect(struct xbk_dev *d)
{
	int rc;

	if (!d->ring_connected)
		return;
	d->ring_connected = false;
	rc = d->xbk->ops->disconnect(d->xbk->opaque, d->minor);
	if (rc < 0)
		log_err("xen %s: disconnecting the ring of minor %d: %s", d->name, d->minor,
			err_str(rc));
	else
		log_info("xen %s: ring of minor %d disconnected", d->name, d->minor);
}

/* The error state: say why (log and backend "error" node), then Closing. */
static void dev_error(struct xbk_dev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void dev_error(struct xbk_dev *d, const char *fmt, ...)
{
	char msg[sizeof(d->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(msg, d->error) == 0 && d->be_state >= XBK_CLOSING)
		return; /* said already; the frontend has not moved */
	memcpy(d->error, msg, sizeof(msg));
	log_err("xen %s: %s", d->name, d->error);
	dev_disconnect(d);
	xstore_writef(d->xbk->xs, XSTORE_NO_TXN, d->be, "error", "%s", d->error);
	if (d->be_state != XBK_CLOSING && d->be_state != XBK_CLOSED)
		set_state(d, XBK_CLOSING);
}

static void clear_error(struct xbk_dev *d)
{
	char path[PATH_BYTES + 8];

	if (!d->error[0])
		return;
	d->error[0] = '\0';
	snprintf(path, sizeof(path), "%s/error", d->be);
	xstore_rm(d->xbk->xs, XSTORE_NO_TXN, path);
}

/* What the frontend reads when it sees InitWait: @lim capped by ours. */
static int publish_features(struct xbk_dev *d, const struct xbk_limits *lim)
{
	struct xbk *x = d->xbk;
	int rc;

	d->lim.max_ring_page_order = MIN(lim->max_ring_page_order, x->lim.max_ring_page_order);
	d->lim.max_queues = MAX(1u, MIN(lim->max_queues, x->lim.max_queues));
	d->lim.max_indirect_segments =
		MIN(lim->max_indirect_segments, x->lim.max_indirect_segments);
	rc = xstore_writef(x->xs, XSTORE_NO_TXN, d->be, "max-ring-page-order", "%u",
			   d->lim.max_ring_page_order);
	if (rc == 0)
		rc = xstore_writef(x->xs, XSTORE_NO_TXN, d->be, "max-ring-pages", "%u",
				   1u << d->lim.max_ring_page_order);
	if (rc == 0)
		rc = xstore_writef(x->xs, XSTORE_NO_TXN, d->be, "multi-queue-max-queues", "%u",
				   d->lim.max_queues);
	if (rc == 0 && d->lim.max_indirect_segments > 11)
		rc = xstore_writef(x->xs, XSTORE_NO_TXN, d->be, "feature-max-indirect-segments",
				   "%u", d->lim.max_indirect_segments);
	if (rc < 0)
		log_err("xen %s: cannot publish the ring limits: %s", d->name, err_str(rc));
	return rc;
}

/*
 * The disk the hotplug script named, once it has run (-EAGAIN until then).
 * A name that is none of ours is the error state.
 */
static int resolve_minor(struct xbk_dev *d)
{
	CLEANUP_FREE char *status = NULL;
	CLEANUP_FREE char *phys = NULL;
	int rc;

	if (be_read(d, "hotplug-status", &status) < 0 || strcmp(status, "connected") != 0)
		return -EAGAIN;
	if (be_read(d, "physical-device-path", &phys) < 0) {
		dev_error(d, "the hotplug script wrote no physical-device-path");
		return -EINVAL;
	}
	rc = d->xbk->ops->find(d->xbk->opaque, phys, &d->minor);
	if (rc < 0) {
		d->minor = -1;
		dev_error(d, "physical-device-path '%.80s' names no disk of this tapctld", phys);
		return rc;
	}
	log_info("xen %s: served by minor %d (%s)", d->name, d->minor, phys);
	return 0;
}

/* Before InitWait: the disk is known and its ring limits are out. */
static int dev_setup(struct xbk_dev *d)
{
	struct xbk_disk disk = { 0 };
	int rc;

	rc = resolve_minor(d);
	if (rc < 0)
		return rc;
	rc = d->xbk->ops->disk_info(d->xbk->opaque, d->minor, &disk);
	if (rc < 0) {
		dev_error(d, "minor %d: cannot ask its tapdisk what it accepts: %s", d->minor,
			  err_str(rc));
		return rc;
	}
	rc = publish_features(d, &disk.limits);
	if (rc < 0)
		return rc;
	clear_error(d);
	return set_state(d, XBK_INITWAIT);
}

/* The device properties and Connected, in one transaction (retried). */
static int write_connected(struct xbk_dev *d, const struct xbk_disk *disk)
{
	struct xstore *xs = d->xbk->xs;
	CLEANUP_FREE char *mode = NULL;
	CLEANUP_FREE char *type = NULL;
	CLEANUP_FREE char *discard = NULL;
	unsigned info = 0, i;
	bool can_discard;
	uint32_t t;
	int rc = 0;

	if (disk->readonly || (be_read(d, "mode", &mode) == 0 && strcmp(mode, "r") == 0))
		info |= VDISK_READONLY;
	if (be_read(d, "device-type", &type) == 0 && strcmp(type, "cdrom") == 0)
		info |= VDISK_CDROM;
	can_discard = disk->can_discard && !(info & VDISK_READONLY) &&
		      !(be_read(d, "discard-enable", &discard) == 0 && strcmp(discard, "0") == 0);
	for (i = 0; i < TXN_RETRIES; i++) {
		rc = xstore_txn_start(xs, &t);
		if (rc < 0)
			return rc;
		rc = xstore_writef(xs, t, d->be, "sectors", "%llu",
				   (unsigned long long)(disk->size_bytes / 512));
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "info", "%u", info);
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "sector-size", "%u", disk->sector_bytes);
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "physical-sector-size", "%u",
					   disk->phys_sector_bytes);
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "feature-flush-cache", "1");
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "feature-barrier", "%d",
					   disk->can_barrier);
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "feature-persistent", "0");
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "feature-discard", "%d", can_discard);
		if (!rc && can_discard)
			rc = xstore_writef(xs, t, d->be, "discard-granularity", "%u",
					   disk->discard_granularity_bytes);
		if (!rc && can_discard)
			rc = xstore_writef(xs, t, d->be, "discard-alignment", "0");
		if (!rc && can_discard)
			rc = xstore_writef(xs, t, d->be, "discard-secure", "0");
		if (!rc)
			rc = xstore_writef(xs, t, d->be, "state", "%u", XBK_CONNECTED);
		if (rc < 0) {
			xstore_txn_end(xs, t, true);
			return rc;
		}
		rc = xstore_txn_end(xs, t, false);
		if (rc != -EAGAIN)
			break;
	}
	if (rc == 0)
		d->be_state = XBK_CONNECTED;
	return rc;
}

static void dev_connect(struct xbk_dev *d)
{
	struct xbk *x = d->xbk;
	struct xbk_ring ring = { .domid = d->domid, .devid = d->devid };
	struct xbk_disk disk = { 0 };
	char why[160];
	int rc;

	rc = xbk_read_ring(fe_read, d, &d->lim, &ring, why, sizeof(why));
	if (rc < 0)
		return dev_error(d, "%s", why);
	rc = x->ops->disk_info(x->opaque, d->minor, &disk);
	if (rc < 0)
		return dev_error(d, "minor %d: cannot get the disk's geometry: %s", d->minor,
				 err_str(rc));
	why[0] = '\0';
	rc = x->ops->connect(x->opaque, d->minor, &ring, why, sizeof(why));
	if (rc < 0 && rc != -EALREADY)
		return dev_error(d, "minor %d: the tapdisk cannot connect the ring: %s", d->minor,
				 why[0] ? why : err_str(rc));
	d->ring_connected = true;
	rc = write_connected(d, &disk);
	if (rc < 0)
		return dev_error(d, "cannot write the device properties: %s", err_str(rc));
	log_info("xen %s: connected to minor %d (%u queue(s) of %u page(s), %llu sectors)", d->name,
		 d->minor, ring.nr_queues, 1u << ring.order,
		 (unsigned long long)(disk.size_bytes / 512));
}

/* The frontend's state: XBK_UNKNOWN when it is gone, -EINVAL for garbage. */
static int fe_state(struct xbk_dev *d)
{
	CLEANUP_FREE char *v = NULL;
	uint32_t st;

	if (fe_read(d, "state", &v) < 0)
		return XBK_UNKNOWN;
	if (xbk_parse_u32(v, &st) < 0 || st > XBK_RECONFIGURED) {
		dev_error(d, "frontend state is '%.20s': not a XenbusState", v);
		return -EINVAL;
	}
	return (int)st;
}

static void dev_on_frontend(struct xbk_dev *d, int st)
{
	switch (st) {
	case XBK_INITIALISING:
	case XBK_INITWAIT:
		if (d->be_state == XBK_CLOSED) {
			/* The frontend starts again: so do we (reconnection). */
			d->be_state = XBK_INITIALISING;
			dev_setup(d);
		}
		break;
	case XBK_INITIALISED:
	case XBK_CONNECTED:
		if (d->error[0])
			break;
		if (d->be_state == XBK_INITWAIT ||
		    (d->be_state == XBK_CONNECTED && !d->ring_connected))
			dev_connect(d);
		break;
	case XBK_CLOSING:
		if (d->be_state != XBK_CLOSING && d->be_state != XBK_CLOSED)
			set_state(d, XBK_CLOSING);
		break;
	case XBK_CLOSED:
	case XBK_UNKNOWN:
		dev_disconnect(d);
		if (d->be_state != XBK_CLOSED && d->be_state >= XBK_INITWAIT)
			set_state(d, XBK_CLOSED);
		break;
	default:
		break;
	}
}

/* Learn the frontend directory from the backend's "frontend" key. */
static int dev_find_frontend(struct xbk_dev *d)
{
	CLEANUP_FREE char *fe = NULL;
	char prefix[64], path[PATH_BYTES + 8];
	int rc;

	if (d->fe[0])
		return 0;
	if (be_read(d, "frontend", &fe) < 0)
		return -EAGAIN;
	snprintf(prefix, sizeof(prefix), "/local/domain/%u/", d->domid);
	if (strncmp(fe, prefix, strlen(prefix)) != 0 || strstr(fe, "..") ||
	    strlen(fe) >= sizeof(d->fe)) {
		dev_error(d, "backend key frontend is '%.80s': not below %s", fe, prefix);
		return -EINVAL;
	}
	snprintf(d->fe, sizeof(d->fe), "%s", fe);
	snprintf(path, sizeof(path), "%s/state", d->fe);
	rc = xstore_watch(d->xbk->xs, path, FE_TOKEN);
	if (rc < 0) {
		d->fe[0] = '\0';
		log_err("xen %s: cannot watch %s: %s", d->name, path, err_str(rc));
	}
	return rc;
}

static void dev_free(struct xbk_dev *d)
{
	char path[PATH_BYTES + 8];

	if (d->fe[0]) {
		snprintf(path, sizeof(path), "%s/state", d->fe);
		xstore_unwatch(d->xbk->xs, path, FE_TOKEN);
	}
	free(d);
}

/* Is the backend directory still there? */
static bool dev_exists(struct xbk_dev *d)
{
	CLEANUP_FREE char *v = NULL;

	return xstore_read(d->xbk->xs, XSTORE_NO_TXN, d->be, &v) == 0;
}

/* Look at the device again; false when it is gone and must be freed. */
static bool dev_eval(struct xbk_dev *d)
{
	int fst;

	if (!dev_exists(d)) {
		log_info("xen %s: backend directory removed", d->name);
		dev_disconnect(d);
		return false;
	}
	if (dev_find_frontend(d) < 0)
		return true;
	if (d->be_state < XBK_INITWAIT) {
		if (dev_setup(d) < 0)
			return true;
	} else if (d->minor < 0 && d->be_state == XBK_CONNECTED) {
		if (resolve_minor(d) < 0)
			return true;
	}
	fst = fe_state(d);
	if (fst >= 0)
		dev_on_frontend(d, fst);
	return true;
}

/* After a restart: the limits this device was offered, from its keys. */
static void read_published(struct xbk_dev *d)
{
	static const char *const keys[] = { "max-ring-page-order", "multi-queue-max-queues",
					    "feature-max-indirect-segments" };
	unsigned *fields[] = { &d->lim.max_ring_page_order, &d->lim.max_queues,
			       &d->lim.max_indirect_segments };
	const unsigned *caps[] = { &d->xbk->lim.max_ring_page_order, &d->xbk->lim.max_queues,
				   &d->xbk->lim.max_indirect_segments };
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(keys); i++) {
		CLEANUP_FREE char *v = NULL;
		uint32_t n = 0;

		if (be_read(d, keys[i], &v) == 0)
			xbk_parse_u32(v, &n);
		*fields[i] = MIN(n, *caps[i]);
	}
	d->lim.max_queues = MAX(1u, d->lim.max_queues);
}

static struct xbk_dev *dev_get(struct xbk *x, uint32_t domid, uint32_t devid)
{
	CLEANUP_FREE char *st = NULL;
	struct xbk_dev *d;
	uint32_t v;

	for (d = x->devs; d; d = d->next)
		if (d->domid == domid && d->devid == devid)
			return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->xbk = x;
	d->domid = domid;
	d->devid = devid;
	d->minor = -1;
	snprintf(d->be, sizeof(d->be), "%s/%u/%u", x->root, domid, devid);
	snprintf(d->name, sizeof(d->name), "%s/%u/%u", x->kind, domid, devid);
	/* A restarted tapctld finds devices mid-way: take up their state. */
	if (be_read(d, "state", &st) == 0 && xbk_parse_u32(st, &v) == 0 && v <= XBK_CLOSED)
		d->be_state = v;
	if (d->be_state >= XBK_INITWAIT)
		read_published(d);
	if (d->be_state == XBK_INITWAIT)
		d->be_state = XBK_INITIALISING; /* resolve the minor, then InitWait again */
	if (d->be_state == XBK_CONNECTED)
		log_info("xen %s: found connected; taking it up again", d->name);
	d->next = x->devs;
	x->devs = d;
	return d;
}

/* Mark every device in the backend directory (and every known one) dirty. */
static void rescan(struct xbk *x)
{
	char **doms = NULL, **devs = NULL;
	unsigned nd = 0, nv = 0, i, j;
	char path[PATH_BYTES];
	struct xbk_dev *d;
	uint32_t domid, devid;

	for (d = x->devs; d; d = d->next)
		d->dirty = true;
	if (xstore_dir(x->xs, x->root, &doms, &nd) < 0)
		return;
	for (i = 0; i < nd; i++) {
		if (xbk_parse_u32(doms[i], &domid) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", x->root, doms[i]);
		if (xstore_dir(x->xs, path, &devs, &nv) < 0)
			continue;
		for (j = 0; j < nv; j++) {
			if (xbk_parse_u32(devs[j], &devid) < 0)
				continue;
			d = dev_get(x, domid, devid);
			if (d)
				d->dirty = true;
		}
		free(devs);
	}
	free(doms);
}

/* A backend event: the device it is under, or everything for the root. */
static void on_backend_event(struct xbk *x, const char *path)
{
	const char *rest = path + strlen(x->root);
	uint32_t domid, devid;
	char dom[16], dev[16];
	struct xbk_dev *d;
	size_t n;

	if (*rest != '/')
		return rescan(x);
	rest++;
	n = strcspn(rest, "/");
	if (n == 0 || n >= sizeof(dom) || rest[n] != '/')
		return rescan(x);
	memcpy(dom, rest, n);
	dom[n] = '\0';
	rest += n + 1;
	n = strcspn(rest, "/");
	if (n == 0 || n >= sizeof(dev))
		return;
	memcpy(dev, rest, n);
	dev[n] = '\0';
	if (xbk_parse_u32(dom, &domid) < 0 || xbk_parse_u32(dev, &devid) < 0)
		return;
	d = dev_get(x, domid, devid);
	if (d)
		d->dirty = true;
}

static void on_frontend_event(struct xbk *x, const char *path)
{
	struct xbk_dev *d;
	size_t n;

	for (d = x->devs; d; d = d->next) {
		n = strlen(d->fe);
		if (n && strncmp(path, d->fe, n) == 0 && (path[n] == '/' || !path[n]))
			d->dirty = true;
	}
}

void xbk_process(struct xbk *x)
{
	char path[4096], token[64];
	struct xbk_dev **pp, *d;
	int rc;

	while ((rc = xstore_next_event(x->xs, path, sizeof(path), token, sizeof(token))) !=
	       -EAGAIN) {
		if (rc < 0) {
			log_err("xen: reading watch events: %s", err_str(rc));
			break;
		}
		log_dbg(LOG_F_XEN, "xen: event %s (%s)", path, token);
		if (strcmp(token, BE_TOKEN) == 0)
			on_backend_event(x, path);
		else if (strcmp(token, FE_TOKEN) == 0)
			on_frontend_event(x, path);
	}
	for (pp = &x->devs; (d = *pp);) {
		if (d->dirty) {
			d->dirty = false;
			if (!dev_eval(d)) {
				*pp = d->next;
				dev_free(d);
				continue;
			}
		}
		pp = &d->next;
	}
}

int xbk_new(struct xstore *xs, unsigned self_domid, const char *kind,
	    const struct xbk_limits *limits, const struct xbk_ops *ops, void *opaque,
	    struct xbk **out)
{
	struct xbk *x = calloc(1, sizeof(*x));
	int rc;

	if (!x)
		return -ENOMEM;
	x->xs = xs;
	x->kind = kind;
	x->ops = ops;
	x->opaque = opaque;
	x->lim = *limits;
	if (x->lim.max_ring_page_order > XBK_MAX_RING_PAGE_ORDER)
		x->lim.max_ring_page_order = XBK_MAX_RING_PAGE_ORDER;
	if (x->lim.max_queues == 0)
		x->lim.max_queues = 1;
	if (x->lim.max_queues > XBK_MAX_QUEUES)
		x->lim.max_queues = XBK_MAX_QUEUES;
	snprintf(x->root, sizeof(x->root), "/local/domain/%u/backend/%s", self_domid, kind);
	rc = xstore_watch(xs, x->root, BE_TOKEN);
	if (rc < 0) {
		log_err("xen: cannot watch %s: %s", x->root, err_str(rc));
		free(x);
		return rc;
	}
	log_info("xen: watching %s", x->root);
	*out = x;
	return 0;
}

void xbk_free(struct xbk *x)
{
	struct xbk_dev *d;

	if (!x)
		return;
	while ((d = x->devs)) {
		x->devs = d->next;
		dev_free(d);
	}
	xstore_unwatch(x->xs, x->root, BE_TOKEN);
	free(x);
}

void xbk_resize(struct xbk *x, int minor)
{
	struct xbk_disk disk = { 0 };
	struct xbk_dev *d;
	int rc;

	for (d = x->devs; d; d = d->next) {
		if (d->minor != minor || d->be_state != XBK_CONNECTED || !d->ring_connected)
			continue;
		rc = x->ops->disk_info(x->opaque, minor, &disk);
		if (rc == 0)
			rc = write_connected(d, &disk);
		if (rc < 0)
			log_err("xen %s: cannot tell the frontend the new size: %s", d->name,
				err_str(rc));
		else
			log_info("xen %s: size now %llu sectors", d->name,
				 (unsigned long long)(disk.size_bytes / 512));
	}
}

void xbk_disk_gone(struct xbk *x, int minor, const char *why)
{
	struct xbk_dev *d;

	for (d = x->devs; d; d = d->next) {
		if (d->minor != minor)
			continue;
		d->ring_connected = false;
		d->minor = -1;
		if (d->be_state == XBK_CLOSED)
			continue; /* torn down already: nothing to tell the frontend */
		dev_error(d, "minor %d: %s", minor, why);
	}
}

void xbk_describe(struct xbk *x, int minor, char *buf, size_t size)
{
	struct xbk_dev *d;
	size_t n = 0;

	buf[0] = '\0';
	for (d = x->devs; d && n < size; d = d->next) {
		if (d->minor != minor)
			continue;
		n += (size_t)snprintf(buf + n, size - n, "%s%s %s%s%s", n ? ", " : "", d->name,
				      xbk_state_name(d->be_state), d->error[0] ? ": " : "",
				      d->error);
	}
}
