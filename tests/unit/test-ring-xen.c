// SPDX-License-Identifier: MIT
/*
 * The Xen ring transport through its seam (tapdisk/ring-xenlib.h) and only
 * there: a fake grant-table and event-channel library stands in for
 * libxengnttab and libxenevtchn, backed by tap-front's frontend memory
 * (its memfd and grant table play the guest domain, its eventfds the
 * event channels).  So the real Xen transport, ring engine and vbd serve
 * a verified load; every failure of the library is answered without a
 * crash and without a leak; a missing /dev/xen is explained; and the real
 * libraries, on this machine, fail the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ring-test-util.h"
#include "ringshm.h"
#include "tapdisk/ring-xenlib.h"

#define DOMID 7
#define PORT_BASE 40

/* ---- the fake hypervisor ---------------------------------------------------- */

static struct fake {
	pthread_mutex_t lock;
	struct tf_dev *dev;
	int memfd;
	uint8_t *mem;
	struct ringshm_layout layout;
	const struct ringshm_gnt *table;
	int open_handles, maps, bound;
	int fail_gnttab_open, fail_evtchn_open; /* errno to fail with, 0: succeed */
	int fail_map, fail_bind, fail_copy;	/* errno */
	uint64_t copies, copy_segs;
	struct td_xen_host host;
} fk = { .lock = PTHREAD_MUTEX_INITIALIZER };

struct fake_evtchn {
	int port; /* local port: remote + 1000 */
	int remote;
};

static void count(int *what, int delta)
{
	pthread_mutex_lock(&fk.lock);
	*what += delta;
	pthread_mutex_unlock(&fk.lock);
}

static xengnttab_handle *f_gnttab_open(struct xentoollog_logger *l, unsigned flags)
{
	if (fk.fail_gnttab_open) {
		errno = fk.fail_gnttab_open;
		return NULL;
	}
	count(&fk.open_handles, 1);
	return (xengnttab_handle *)&fk;
}

static int f_gnttab_close(xengnttab_handle *h)
{
	count(&fk.open_handles, -1);
	return 0;
}

static void *f_map(xengnttab_handle *h, uint32_t n, uint32_t domid, uint32_t *refs, int prot)
{
	uint32_t frames[RING_PAGES_MAX];
	void *va;

	assert_int_equal(domid, DOMID);
	assert_int_equal(prot, PROT_READ | PROT_WRITE);
	if (fk.fail_map) {
		errno = fk.fail_map;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (ringshm_lookup(fk.table, &fk.layout, refs[i], true, &frames[i])) {
			errno = EINVAL;
			return NULL;
		}
	}
	if (ringshm_map_frames(fk.memfd, frames, n, &va))
		return NULL;
	count(&fk.maps, 1);
	return va;
}

static int f_unmap(xengnttab_handle *h, void *start, uint32_t n)
{
	count(&fk.maps, -1);
	return munmap(start, (size_t)n * 4096);
}

/* Xen's grant copy: the guest side checked per segment, statuses as Xen gives them. */
static int16_t copy_one(xengnttab_grant_copy_segment_t *s)
{
	bool to_guest = s->flags & GNTCOPY_dest_gref;
	const struct {
		uint32_t ref;
		uint16_t offset, domid;
	} *g = to_guest ? (void *)&s->dest.foreign : (void *)&s->source.foreign;
	uint32_t frame;
	uint8_t *guest;
	int err;

	if (s->flags != GNTCOPY_source_gref && s->flags != GNTCOPY_dest_gref)
		return GNTST_general_error;
	if (g->domid != DOMID)
		return GNTST_bad_domain;
	if ((unsigned)g->offset + s->len > 4096)
		return GNTST_bad_copy_arg;
	err = ringshm_lookup(fk.table, &fk.layout, g->ref, to_guest, &frame);
	if (err)
		return err == -EPERM ? GNTST_permission_denied : GNTST_bad_gntref;
	guest = fk.mem + (size_t)frame * 4096 + g->offset;
	if (to_guest)
		memcpy(guest, s->source.virt, s->len);
	else
		memcpy(s->dest.virt, guest, s->len);
	return GNTST_okay;
}

static int f_copy(xengnttab_handle *h, uint32_t n, xengnttab_grant_copy_segment_t *segs)
{
	__atomic_add_fetch(&fk.copies, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&fk.copy_segs, n, __ATOMIC_RELAXED);
	if (fk.fail_copy) {
		errno = fk.fail_copy;
		return -1;
	}
	for (uint32_t i = 0; i < n; i++)
		segs[i].status = copy_one(&segs[i]);
	return 0;
}

static xenevtchn_handle *f_evtchn_open(struct xentoollog_logger *l, unsigned flags)
{
	struct fake_evtchn *e;

	if (fk.fail_evtchn_open) {
		errno = fk.fail_evtchn_open;
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	e->port = -1;
	count(&fk.open_handles, 1);
	return (xenevtchn_handle *)e;
}

static int f_evtchn_close(xenevtchn_handle *h)
{
	free(h);
	count(&fk.open_handles, -1);
	return 0;
}

static struct tf_queue *queue_of(const struct fake_evtchn *e)
{
	return tf_dev_queue(fk.dev, (unsigned)(e->remote - PORT_BASE));
}

static xenevtchn_port_or_error_t f_bind(xenevtchn_handle *h, uint32_t domid, evtchn_port_t remote)
{
	struct fake_evtchn *e = (struct fake_evtchn *)h;

	if (fk.fail_bind || domid != DOMID || remote < PORT_BASE ||
	    remote >= PORT_BASE + tf_dev_nr_queues(fk.dev)) {
		errno = fk.fail_bind ? fk.fail_bind : EINVAL;
		return -1;
	}
	e->remote = (int)remote;
	e->port = (int)remote + 1000;
	count(&fk.bound, 1);
	return e->port;
}

static int f_unbind(xenevtchn_handle *h, evtchn_port_t port)
{
	assert_int_equal(port, ((struct fake_evtchn *)h)->port);
	count(&fk.bound, -1);
	return 0;
}

static int f_fd(xenevtchn_handle *h)
{
	return tf_queue_kick_fd(queue_of((struct fake_evtchn *)h));
}

static xenevtchn_port_or_error_t f_pending(xenevtchn_handle *h)
{
	struct fake_evtchn *e = (struct fake_evtchn *)h;
	uint64_t n;

	if (read(f_fd(h), &n, sizeof(n)) != sizeof(n))
		return -1;
	return e->port;
}

static int f_unmask(xenevtchn_handle *h, evtchn_port_t port)
{
	assert_int_equal(port, ((struct fake_evtchn *)h)->port);
	return 0;
}

static int f_notify(xenevtchn_handle *h, evtchn_port_t port)
{
	uint64_t one = 1;

	assert_int_equal(port, ((struct fake_evtchn *)h)->port);
	return write(tf_queue_irq_fd(queue_of((struct fake_evtchn *)h)), &one, sizeof(one)) ==
			       sizeof(one)
		       ? 0
		       : -1;
}

static void f_probe(struct td_xen_host *host)
{
	*host = fk.host;
}

static const struct td_xenlib fake_lib = {
	.gnttab_open = f_gnttab_open,
	.gnttab_close = f_gnttab_close,
	.gnttab_map_domain_grant_refs = f_map,
	.gnttab_unmap = f_unmap,
	.gnttab_grant_copy = f_copy,
	.evtchn_open = f_evtchn_open,
	.evtchn_close = f_evtchn_close,
	.evtchn_fd = f_fd,
	.evtchn_bind_interdomain = f_bind,
	.evtchn_unbind = f_unbind,
	.evtchn_pending = f_pending,
	.evtchn_unmask = f_unmask,
	.evtchn_notify = f_notify,
	.probe = f_probe,
};

/* ---- the rig: ring-test-util.h's, over the fake ---------------------------- */

/* tap-front's frontend as the guest, its memory the fake's. */
static void guest_new(struct rig *r, const struct tf_conf *fc)
{
	char why[128];

	assert_int_equal(tf_dev_new(fc, &r->dev), 0);
	fk.dev = r->dev;
	fk.memfd = tf_dev_memfd(fk.dev);
	assert_int_equal(ringshm_open(fk.memfd, &fk.layout, why, sizeof(why)), 0);
	fk.mem = mmap(NULL, (size_t)fk.layout.total_pages * 4096, PROT_READ | PROT_WRITE,
		      MAP_SHARED, fk.memfd, 0);
	assert_true(fk.mem != MAP_FAILED);
	fk.table = (const struct ringshm_gnt *)(fk.mem + (size_t)fk.layout.gnt_first * 4096);
}

static void xen_open(struct rig *r, const struct tf_conf *fc)
{
	rig_open(r, 2, false);
	guest_new(r, fc);
	td_xenlib_set(&fake_lib);
}

static void xen_close(struct rig *r)
{
	td_blkif_disconnect(r->blkif);
	r->blkif = NULL;
	/* nothing of the fake Xen is left open, mapped or bound */
	assert_int_equal(fk.open_handles, 0);
	assert_int_equal(fk.maps, 0);
	assert_int_equal(fk.bound, 0);
	td_xenlib_set(NULL);
	munmap(fk.mem, (size_t)fk.layout.total_pages * 4096);
	fk.dev = NULL;
	fk.fail_gnttab_open = fk.fail_evtchn_open = fk.fail_map = fk.fail_bind = fk.fail_copy = 0;
	rig_close(r);
}

/* What tapctld would send after the xenstore handshake. */
static int xen_connect(struct rig *r, const struct tf_conf *fc)
{
	struct td_blkif_conf c;

	td_blkif_conf_init(&c);
	c.kind = TD_BLKIF_XEN;
	c.abi = fc->abi;
	c.order = fc->order;
	c.nr_queues = fc->nr_queues;
	c.domid = DOMID;
	for (unsigned q = 0; q < fc->nr_queues; q++) {
		memcpy(c.refs[q], tf_queue_ring_refs(tf_dev_queue(r->dev, q)), sizeof(c.refs[q]));
		c.ports[q] = PORT_BASE + q;
	}
	return td_blkif_connect(r->vbd, &c, &r->blkif, r->why, sizeof(r->why));
}

/* ---- tests ------------------------------------------------------------------------ */

/* A verified load, two queues, 32-bit guest, multi-page rings, indirect: all by grant copy. */
static void test_verified_over_fake_xen(void **state)
{
	const struct tf_conf fc = { .abi = RING_ABI_X86_32,
				    .order = 1,
				    .nr_queues = 2,
				    .depth = 8,
				    .max_bytes = 32768,
				    .indirect_segs = 16,
				    .sub_page = true };
	struct rig r;

	xen_open(&r, &fc);
	assert_int_equal(xen_connect(&r, &fc), 0);
	assert_int_equal(fk.maps, 2);
	assert_int_equal(fk.bound, 2);
	r.load = (struct tf_load_conf){ .fill = 0,
					.mix = BENCH_MIXED,
					.random = true,
					.bs = 32768,
					.depth = 8,
					.nr_queues = 2,
					.ops = 2000,
					.verify = true,
					.seed = 9,
					.flush = true };
	rig_run(&r);
	assert_false(r.sum.protocol_error);
	assert_int_equal(r.sum.io_errors, 0);
	assert_int_equal(r.sum.verify_errors, 0);
	assert_true(r.sum.verified > 0);
	assert_true(fk.copies > 0);
	xen_close(&r);
}

/* Bad requests and bad grants over Xen: answered, never a crash. */
static void test_hostile_over_fake_xen(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 2, .depth = 4, .max_bytes = 4096
	};
	struct rig r;

	xen_open(&r, &fc);
	assert_int_equal(xen_connect(&r, &fc), 0);
	r.load = (struct tf_load_conf){ .fill = 0,
					.mix = BENCH_MIXED,
					.random = true,
					.bs = 4096,
					.depth = 4,
					.nr_queues = 2,
					.ops = 800,
					.verify = true,
					.seed = 5,
					.hostile = TF_HOSTILE_SEGMENTS };
	rig_run(&r);
	assert_int_equal(r.sum.hostile.unexpected, 0);
	assert_int_equal(r.sum.verify_errors, 0);
	assert_false(r.sum.protocol_error);
	xen_close(&r);
}

/* A failing grant copy ioctl fails the request, not the ring. */
static void test_copy_failure(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 1, .depth = 1, .max_bytes = 4096
	};
	struct tf_queue *q;
	struct rig r;

	xen_open(&r, &fc);
	assert_int_equal(xen_connect(&r, &fc), 0);
	q = tf_dev_queue(r.dev, 0);
	assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_OKAY);
	fk.fail_copy = EFAULT;
	assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_ERROR);
	fk.fail_copy = 0;
	assert_int_equal(one_request(q, RING_OP_READ, 0, 4096), RING_RSP_OKAY);
	xen_close(&r);
}

/* Every failure while connecting: a reason, -errno, and nothing left open. */
static void test_connect_failures(void **state)
{
	const struct tf_conf fc = {
		.abi = RING_ABI_X86_64, .nr_queues = 2, .depth = 1, .max_bytes = 4096
	};
	struct rig r;

	xen_open(&r, &fc);
	fk.fail_gnttab_open = ENOENT;
	fk.host = (struct td_xen_host){ .hypervisor = "", .euid = 0 };
	assert_int_equal(xen_connect(&r, &fc), -ENOENT);
	assert_non_null(strstr(r.why, "not a Xen host"));
	fk.fail_gnttab_open = 0;

	fk.fail_evtchn_open = ENOENT;
	fk.host = (struct td_xen_host){ .hypervisor = "xen", .proc_xen = true };
	assert_int_equal(xen_connect(&r, &fc), -ENOENT);
	assert_non_null(strstr(r.why, "modprobe xen-evtchn"));
	assert_int_equal(fk.open_handles, 0);
	fk.fail_evtchn_open = 0;

	fk.fail_map = EINVAL;
	assert_int_equal(xen_connect(&r, &fc), -EINVAL);
	assert_non_null(strstr(r.why, "cannot map"));
	assert_int_equal(fk.open_handles, 0);
	fk.fail_map = 0;

	fk.fail_bind = EINVAL; /* the second queue's maps are undone too */
	assert_int_equal(xen_connect(&r, &fc), -EINVAL);
	assert_non_null(strstr(r.why, "event channel"));
	assert_int_equal(fk.maps, 0);
	assert_int_equal(fk.open_handles, 0);
	xen_close(&r);
}

static void test_explain(void **state)
{
	struct td_xen_host h = { .hypervisor = "kvm", .euid = 0 };
	char m[256];

	td_xen_explain(&h, "/dev/xen/gntdev", "xen-gntdev", ENOENT, m, sizeof(m));
	assert_non_null(strstr(m, "not a Xen host"));
	assert_non_null(strstr(m, "kvm"));
	h = (struct td_xen_host){ .hypervisor = "xen" };
	td_xen_explain(&h, "/dev/xen/gntdev", "xen-gntdev", ENOENT, m, sizeof(m));
	assert_non_null(strstr(m, "modprobe xen-gntdev"));
	h = (struct td_xen_host){ .proc_xen = true, .dev_xen = true, .euid = 1000 };
	td_xen_explain(&h, "/dev/xen/evtchn", "xen-evtchn", EACCES, m, sizeof(m));
	assert_non_null(strstr(m, "not root"));
	h.euid = 0;
	td_xen_explain(&h, "/dev/xen/evtchn", "xen-evtchn", EBUSY, m, sizeof(m));
	assert_non_null(strstr(m, "busy"));
}

/* The real libraries, here: no /dev/xen, so a clear refusal and nothing open. */
static void test_real_library_without_xen(void **state)
{
	const uint32_t refs[1] = { 8 };
	struct td_transport *t = NULL;
	struct stat st;
	char why[256];
	int fds_before = 0, fds_after = 0;

	if (stat("/dev/xen/gntdev", &st) == 0)
		skip(); /* a Xen host: this test is about hosts without one */
	for (int fd = 0; fd < 1024; fd++)
		fds_before += fcntl(fd, F_GETFD) >= 0;
	td_xenlib_set(NULL);
	assert_int_equal(td_transport_xen_new(1, refs, 1, 5, 256, &t, why, sizeof(why)), -ENOENT);
	assert_null(t);
	assert_non_null(strstr(why, "/dev/xen/gntdev"));
	assert_true(strstr(why, "not a Xen host") || strstr(why, "modprobe"));
	for (int fd = 0; fd < 1024; fd++)
		fds_after += fcntl(fd, F_GETFD) >= 0;
	assert_int_equal(fds_after, fds_before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verified_over_fake_xen),
		cmocka_unit_test(test_hostile_over_fake_xen),
		cmocka_unit_test(test_copy_failure),
		cmocka_unit_test(test_connect_failures),
		cmocka_unit_test(test_explain),
		cmocka_unit_test(test_real_library_without_xen),
	};

	return cmocka_run_group_tests(tests, NULL, qt_group_teardown);
}
