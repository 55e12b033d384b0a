// SPDX-License-Identifier: MIT
/*
 * The ring commands of tapdisk's control socket (docs/control-protocol.md):
 * ring-info (what a backend publishes in xenstore), attach-ring (connect a
 * frontend's rings, local or Xen) and detach-ring.  Each attached
 * interface is a td_frontend of kind "ring", so `close`, `shutdown` and
 * SIGTERM detach it like any other frontend, and `info` describes it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "ctl.h"
#include "json.h"
#include "log.h"
#include "tapdisk.h"
#include "tapdisk/blkif.h"

struct ring_fe {
	struct td_frontend fe;
	struct tapdisk *td;
	struct td_blkif *blkif;
	struct td_ctl_hold hold; /* detach_on_close: the attaching connection */
	uint64_t id;
	enum td_blkif_kind kind;
	enum ring_abi abi;
	unsigned order;
};

static uint64_t next_ring_id = 1;

static const struct {
	const char *name;
	enum ring_abi abi;
} protocols[] = {
	{ "x86_32-abi", RING_ABI_X86_32 },
	{ "x86_64-abi", RING_ABI_X86_64 },
	{ "arm-abi", RING_ABI_X86_64 }, /* the same layout */
	{ "native", RING_ABI_NATIVE },
};

static const char *protocol_name(enum ring_abi abi)
{
	for (unsigned i = 0; i < ARRAY_SIZE(protocols); i++)
		if (protocols[i].abi == abi)
			return protocols[i].name;
	return "?";
}

static int no_image(struct td_ctl_call *call)
{
	return td_ctl_fail(call, -ENODEV, "%s: no image is open", call->cmd);
}

/* ---- ring-info -------------------------------------------------------------- */

static json_t *offer_json(struct td_vbd *vbd)
{
	struct td_blkif_offer o;

	td_blkif_offer(vbd, &o);
	return json_pack("{s:I, s:i, s:i, s:i, s:b, s:I, s:b, s:b, s:i, s:i, s:i}", "sectors",
			 (json_int_t)o.sectors, "sector_size", (int)o.sector_size,
			 "physical_sector_size", (int)o.phys_sector_size, "info", (int)o.info,
			 "discard", o.discard, "discard_granularity",
			 (json_int_t)o.discard_granularity, "flush_cache", 1, "barrier", 1,
			 "max_ring_page_order", (int)o.max_ring_order, "max_queues",
			 (int)o.max_queues, "max_indirect_segments", (int)o.max_indirect_segs);
}

int td_cmd_ring_info(struct td_ctl_call *call)
{
	json_t *offer;

	if (!call->td->vbd)
		return no_image(call);
	offer = offer_json(call->td->vbd);
	if (!offer)
		return -ENOMEM;
	json_decref(call->result);
	call->result = offer;
	return 0;
}

/* ---- attach-ring ------------------------------------------------------------ */

static int arg_protocol(struct td_ctl_call *call, enum ring_abi *abi)
{
	const char *name = "x86_32-abi"; /* blkback's default: a frontend naming none */
	int err = td_ctl_arg_string(call, "protocol", false, &name);

	if (err)
		return err;
	for (unsigned i = 0; i < ARRAY_SIZE(protocols); i++) {
		if (strcmp(name, protocols[i].name) == 0) {
			*abi = protocols[i].abi;
			return 0;
		}
	}
	return td_ctl_fail(call, -EINVAL,
			   "attach-ring: protocol '%s' is not x86_32-abi, x86_64-abi, arm-abi or "
			   "native",
			   name);
}

/* An array of @n arrays of @m integers below 2^32 (refs), or of @n (ports when m = 0). */
static int arg_u32_table(struct td_ctl_call *call, const char *key, unsigned n, unsigned m,
			 uint32_t (*out)[RING_PAGES_MAX], uint32_t *flat)
{
	const json_t *a = json_object_get(call->args, key);

	if (!json_is_array(a) || json_array_size(a) != n)
		goto bad;
	for (unsigned q = 0; q < n; q++) {
		const json_t *row = json_array_get(a, q);

		for (unsigned i = 0; i < (m ? m : 1); i++) {
			const json_t *v = m ? json_array_get(row, i) : row;
			json_int_t x = json_integer_value(v);

			if ((m && (!json_is_array(row) || json_array_size(row) != m)) ||
			    !json_is_integer(v) || x < 0 || x > UINT32_MAX)
				goto bad;
			if (m)
				out[q][i] = (uint32_t)x;
			else
				flat[q] = (uint32_t)x;
		}
	}
	return 0;
bad:
	if (m)
		return td_ctl_fail(
			call, -EINVAL,
			"attach-ring: '%s' must be %u arrays (one per queue) of %u grant "
			"references",
			key, n, m);
	return td_ctl_fail(call, -EINVAL,
			   "attach-ring: '%s' must be %u event channel ports (one per queue)", key,
			   n);
}

static int arg_local(struct td_ctl_call *call, struct td_blkif_conf *c)
{
	int err;

	if (call->nr_fds != 1 + 2 * c->nr_queues)
		return td_ctl_fail(call, -EBADF,
				   "attach-ring: the local transport takes 1 + 2 x %u descriptors "
				   "(the memfd, then each queue's kick and irq eventfds); %u came",
				   c->nr_queues, call->nr_fds);
	err = td_ctl_take_fd(call, 0, &c->memfd);
	for (unsigned q = 0; !err && q < c->nr_queues; q++) {
		err = td_ctl_take_fd(call, 1 + 2 * q, &c->kick_fds[q]);
		if (!err)
			err = td_ctl_take_fd(call, 2 + 2 * q, &c->irq_fds[q]);
	}
	return err;
}

static int arg_xen(struct td_ctl_call *call, struct td_blkif_conf *c)
{
	uint64_t domid = 0;
	int err = td_ctl_arg_u64(call, "domid", true, 1, 0x7fef, &domid);

	if (!err)
		err = arg_u32_table(call, "ports", c->nr_queues, 0, NULL, c->ports);
	c->domid = (uint16_t)domid;
	return err;
}

static int parse_attach(struct td_ctl_call *call, struct td_blkif_conf *c)
{
	const char *transport = NULL;
	uint64_t order = 0, queues = 1;
	int err;

	if ((err = td_ctl_arg_string(call, "transport", true, &transport)) ||
	    (err = arg_protocol(call, &c->abi)) ||
	    (err = td_ctl_arg_u64(call, "order", false, 0, RING_ORDER_MAX, &order)) ||
	    (err = td_ctl_arg_u64(call, "queues", false, 1, TD_BLKIF_MAX_QUEUES, &queues)))
		return err;
	c->order = (unsigned)order;
	c->nr_queues = (unsigned)queues;
	err = arg_u32_table(call, "refs", c->nr_queues, 1u << c->order, c->refs, NULL);
	if (err)
		return err;
	if (strcmp(transport, "local") == 0) {
		c->kind = TD_BLKIF_LOCAL;
		return arg_local(call, c);
	}
	if (strcmp(transport, "xen") == 0) {
		c->kind = TD_BLKIF_XEN;
		return arg_xen(call, c);
	}
	return td_ctl_fail(call, -EINVAL, "attach-ring: transport '%s' is not local or xen",
			   transport);
}

/*
 * td_frontend.detach, for close and shutdown too.  A paused disk answers
 * the requests waiting in it only when it closes, which comes after this:
 * then the rings are left to finish on their own (td_blkif_abandon).
 */
static void ring_detach(struct td_frontend *fe)
{
	struct ring_fe *r = fe->opaque;
	struct td_vbd_info info;

	td_ctl_release(&r->hold);
	vbd_get_info(r->td->vbd, &info);
	if (info.paused)
		td_blkif_abandon(r->blkif);
	else
		td_blkif_disconnect(r->blkif);
	free(r);
}

static json_t *ring_stats_json(struct td_ring *ring)
{
	struct td_ring_stats s;

	td_ring_get_stats(ring, &s);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "inflight",
			 (json_int_t)s.inflight, "requests", (json_int_t)s.requests, "errors",
			 (json_int_t)s.errors, "bad_requests", (json_int_t)s.bad_requests, "kicks",
			 (json_int_t)s.kicks, "spurious", (json_int_t)s.spurious, "storms",
			 (json_int_t)s.storms, "notifies", (json_int_t)s.notifies, "mapped",
			 (json_int_t)s.mapped, "copied", (json_int_t)s.copied, "halted", s.halted);
}

static int ring_describe(struct td_frontend *fe, json_t *obj)
{
	struct ring_fe *r = fe->opaque;
	json_t *rings = json_array();

	for (unsigned q = 0; rings && q < td_blkif_nr_queues(r->blkif); q++) {
		if (json_array_append_new(rings, ring_stats_json(td_blkif_ring(r->blkif, q)))) {
			json_decref(rings);
			rings = NULL;
		}
	}
	if (!rings)
		return -ENOMEM;
	if (json_obj_set(obj, "ring", json_integer((json_int_t)r->id)) ||
	    json_obj_set(obj, "transport",
			 json_string(r->kind == TD_BLKIF_XEN ? "xen" : "local")) ||
	    json_obj_set(obj, "protocol", json_string(protocol_name(r->abi))) ||
	    json_obj_set(obj, "order", json_integer(r->order))) {
		json_decref(rings);
		return -ENOMEM;
	}
	return json_obj_set(obj, "queues", rings);
}

/* The connection that attached with detach_on_close closed: the frontend is gone. */
static void owner_closed(struct td_ctl_hold *h)
{
	struct ring_fe *r = h->opaque;

	log_info("ring %llu: the control connection that attached it closed; detaching",
		 (unsigned long long)r->id);
	tapdisk_frontend_del(r->td, &r->fe);
	ring_detach(&r->fe);
}

int td_cmd_attach_ring(struct td_ctl_call *call)
{
	struct td_blkif_conf c;
	struct td_blkif *blkif;
	struct ring_fe *r;
	json_t *result;
	bool hold = false;
	char why[200];
	int err;

	if (!call->td->vbd)
		return no_image(call);
	err = td_ctl_arg_bool(call, "detach_on_close", &hold);
	if (err)
		return err;
	if (hold && !call->conn)
		return td_ctl_fail(call, -ENOTCONN,
				   "attach-ring: detach_on_close needs a control connection");
	td_blkif_conf_init(&c);
	err = parse_attach(call, &c);
	c.copy = call->td->ring_copy;
	r = err ? NULL : calloc(1, sizeof(*r));
	if (!r) {
		td_blkif_conf_close(&c);
		return err ? err : -ENOMEM;
	}
	err = td_blkif_connect(call->td->vbd, &c, &blkif, why, sizeof(why));
	if (err) {
		free(r);
		return td_ctl_fail(call, err, "attach-ring: %s", why);
	}
	*r = (struct ring_fe){ .fe = { .kind = "ring",
				       .detach = ring_detach,
				       .describe = ring_describe,
				       .opaque = r },
			       .td = call->td,
			       .blkif = blkif,
			       .id = next_ring_id++,
			       .kind = c.kind,
			       .abi = c.abi,
			       .order = c.order };
	tapdisk_frontend_add(call->td, &r->fe);
	if (hold) {
		r->hold.closed = owner_closed;
		r->hold.opaque = r;
		td_ctl_hold(call, &r->hold); /* cannot fail: call->conn is set */
	}
	result = offer_json(call->td->vbd);
	if (!result || json_obj_set(result, "ring", json_integer((json_int_t)r->id)))
		return -ENOMEM; /* attached all the same: `info` names it */
	json_decref(call->result);
	call->result = result;
	return 0;
}

/* ---- detach-ring ------------------------------------------------------------ */

/*
 * Detaching waits for the requests taken to be answered; those of a paused
 * disk wait for `resume`, which this control thread could then never run.
 * Refuse instead, as Linux blkback refuses to disconnect with I/O in flight.
 */
static bool waiting_in_pause(struct tapdisk *td, struct ring_fe *r)
{
	struct td_vbd_info info;
	struct td_ring_stats st;

	vbd_get_info(td->vbd, &info);
	if (!info.paused)
		return false;
	for (unsigned q = 0; q < td_blkif_nr_queues(r->blkif); q++) {
		td_ring_get_stats(td_blkif_ring(r->blkif, q), &st);
		if (st.inflight)
			return true;
	}
	return false;
}

int td_cmd_detach_ring(struct td_ctl_call *call)
{
	uint64_t id = 0;
	int err = td_ctl_arg_u64(call, "ring", true, 1, UINT64_MAX, &id);

	if (err)
		return err;
	for (struct td_frontend *fe = call->td->frontends; fe; fe = fe->next) {
		struct ring_fe *r = fe->opaque;

		if (fe->detach != ring_detach || r->id != id)
			continue;
		if (waiting_in_pause(call->td, r))
			return td_ctl_fail(
				call, -EBUSY,
				"detach-ring: ring %llu has requests waiting in the paused "
				"disk; resume it first",
				(unsigned long long)id);
		tapdisk_frontend_del(call->td, fe);
		ring_detach(fe);
		return 0;
	}
	return td_ctl_fail(call, -ENOENT, "detach-ring: no ring %llu is attached",
			   (unsigned long long)id);
}
