// SPDX-License-Identifier: MIT
/*
 * tap-front's xenstore frontend (xenfront.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#include "control/ctlclient.h"
#include "errors.h"
#include "evloop.h"
#include "xenfront.h"

#define WAIT_MS 30000
#define TXN_TRIES 16

static char *xs_get(struct tf_xen *x, const char *dir, const char *key)
{
	char path[320];
	unsigned len;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_read(x->xs, XBT_NULL, path, &len);
}

static unsigned get_uint(struct tf_xen *x, const char *dir, const char *key, unsigned dflt)
{
	char *v = xs_get(x, dir, key), *end;
	unsigned long n;

	if (!v)
		return dflt;
	n = strtoul(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n > UINT32_MAX)
		n = dflt;
	free(v);
	return (unsigned)n;
}

/* Write the number @v at @key below the frontend directory. */
static int put(struct tf_xen *x, xs_transaction_t t, const char *key, unsigned v)
{
	char path[320], val[32];

	snprintf(path, sizeof(path), "%s/%s", x->fe, key);
	snprintf(val, sizeof(val), "%u", v);
	return xs_write(x->xs, t, path, val, (unsigned)strlen(val)) ? 0 : neg_errno();
}

/* Wait for the backend's state to be @want; say what happened otherwise. */
static int wait_backend(struct tf_xen *x, unsigned want)
{
	uint64_t end = evloop_now_ns() + (uint64_t)x->timeout_ms * 1000000;
	unsigned st = 0;

	for (;;) {
		st = get_uint(x, x->be, "state", 0);
		if (st == want)
			return 0;
		if (st == 5 && want != 5 && want != 6) {
			char *why = xs_get(x, x->be, "error");

			fprintf(stderr, "tap-front: the backend %s is Closing: %s\n", x->be,
				why ? why : "(no error node)");
			free(why);
			return -EIO;
		}
		if (evloop_now_ns() > end)
			break;
		usleep(20000);
	}
	fprintf(stderr, "tap-front: the backend %s stayed in state %u, not %u\n", x->be, st, want);
	return -ETIMEDOUT;
}

int tf_xen_begin(const char *fe_path, struct tf_xen *x, struct tf_disk *disk)
{
	char *be;

	memset(x, 0, sizeof(*x));
	x->timeout_ms = WAIT_MS;
	if (sscanf(fe_path, "/local/domain/%u/device/", &x->domid) != 1 || x->domid == 0 ||
	    strlen(fe_path) >= sizeof(x->fe)) {
		fprintf(stderr,
			"tap-front: --xenstore '%s' is not /local/domain/DOMID/device/...\n",
			fe_path);
		return -EINVAL;
	}
	snprintf(x->fe, sizeof(x->fe), "%s", fe_path);
	x->xs = xs_open(0);
	if (!x->xs) {
		fprintf(stderr, "tap-front: cannot reach xenstore (XENSTORED_PATH?): %m\n");
		return -ENOENT;
	}
	be = xs_get(x, x->fe, "backend");
	if (!be || strlen(be) >= sizeof(x->be)) {
		fprintf(stderr, "tap-front: %s/backend is missing\n", x->fe);
		free(be);
		return -ENOENT;
	}
	snprintf(x->be, sizeof(x->be), "%s", be);
	free(be);
	if (wait_backend(x, 2))
		return -EIO;
	*disk = (struct tf_disk){
		.sector_size = 512,
		.max_order = get_uint(x, x->be, "max-ring-page-order", 0),
		.max_queues = get_uint(x, x->be, "multi-queue-max-queues", 1),
		.max_indirect_segs = get_uint(x, x->be, "feature-max-indirect-segments", 0),
	};
	return 0;
}

/* Our memfd and eventfds, as tapctld's local domain @x->domid. */
static int register_local(struct tf_xen *x, const char *sock, struct tf_dev *dev)
{
	int fds[1 + 2 * 7];
	unsigned nr = 0, q;
	char err[512];

	if (1 + 2 * tf_dev_nr_queues(dev) > sizeof(fds) / sizeof(fds[0]))
		return -E2BIG;
	fds[nr++] = tf_dev_memfd(dev);
	for (q = 0; q < tf_dev_nr_queues(dev); q++) {
		fds[nr++] = tf_queue_kick_fd(tf_dev_queue(dev, q));
		fds[nr++] = tf_queue_irq_fd(tf_dev_queue(dev, q));
	}
	if (ctlc_call_fds(sock, "xen-local", json_pack("{s:i}", "domid", (int)x->domid), fds, nr,
			  30, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "tap-front: xen-local: %s\n", err);
		return -EIO;
	}
	return 0;
}

/* One queue's ring-ref(s) and event channel, below @prefix ("" or "queue-N/"). */
static int put_queue(struct tf_xen *x, xs_transaction_t t, const char *prefix, struct tf_queue *q,
		     unsigned order)
{
	const uint32_t *refs = tf_queue_ring_refs(q);
	char key[64];
	unsigned i;
	int err = 0;

	for (i = 0; !err && i < (1u << order); i++) {
		if (order == 0)
			snprintf(key, sizeof(key), "%sring-ref", prefix);
		else
			snprintf(key, sizeof(key), "%sring-ref%u", prefix, i);
		err = put(x, t, key, refs[i]);
	}
	snprintf(key, sizeof(key), "%sevent-channel", prefix);
	return err ? err : put(x, t, key, tf_queue_index(q) + 1);
}

static int put_keys(struct tf_xen *x, xs_transaction_t t, struct tf_dev *dev, enum ring_abi abi,
		    unsigned order)
{
	const char *proto = abi == RING_ABI_X86_32 ? "x86_32-abi" : "x86_64-abi";
	unsigned n = tf_dev_nr_queues(dev), q;
	char path[320], prefix[32];
	int err = 0;

	if (order)
		err = put(x, t, "ring-page-order", order);
	if (!err && n > 1)
		err = put(x, t, "multi-queue-num-queues", n);
	for (q = 0; !err && q < n; q++) {
		prefix[0] = '\0';
		if (n > 1)
			snprintf(prefix, sizeof(prefix), "queue-%u/", q);
		err = put_queue(x, t, prefix, tf_dev_queue(dev, q), order);
	}
	snprintf(path, sizeof(path), "%s/protocol", x->fe);
	if (!err && !xs_write(x->xs, t, path, proto, (unsigned)strlen(proto)))
		err = neg_errno();
	return err ? err : put(x, t, "state", 3);
}

int tf_xen_connect(struct tf_xen *x, const char *tapctld_sock, struct tf_dev *dev,
		   enum ring_abi abi, unsigned order, struct tf_disk *disk)
{
	xs_transaction_t t;
	int err = register_local(x, tapctld_sock, dev);

	for (unsigned i = 0; !err && i < TXN_TRIES; i++) {
		t = xs_transaction_start(x->xs);
		if (!t)
			return neg_errno();
		err = put_keys(x, t, dev, abi, order);
		if (!xs_transaction_end(x->xs, t, err != 0) && !err)
			err = errno == EAGAIN ? -EAGAIN : neg_errno();
		if (err != -EAGAIN)
			break;
		err = 0;
	}
	if (!err)
		err = wait_backend(x, 4);
	if (err)
		return err;
	disk->sectors = get_uint(x, x->be, "sectors", 0);
	disk->sector_size = get_uint(x, x->be, "sector-size", 0);
	disk->info = get_uint(x, x->be, "info", 0);
	disk->discard = get_uint(x, x->be, "feature-discard", 0) != 0;
	if (disk->sectors == 0 || disk->sector_size < 512) {
		fprintf(stderr, "tap-front: the backend connected without sectors/sector-size\n");
		return -EPROTO;
	}
	return put(x, XBT_NULL, "state", 4);
}

int tf_xen_close(struct tf_xen *x)
{
	int err = 0;

	if (!x->xs)
		return 0;
	if (put(x, XBT_NULL, "state", 5) || wait_backend(x, 5) || put(x, XBT_NULL, "state", 6) ||
	    wait_backend(x, 6))
		err = -EIO;
	xs_close(x->xs);
	x->xs = NULL;
	return err;
}
