/* SPDX-License-Identifier: MIT */
/*
 * The process around the vbd: opening and closing the image with its
 * frontends, and what `info` reports.  Control thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "evloop.h"
#include "json.h"
#include "log.h"
#include "rmw.h"
#include "tapdisk.h"

int tapdisk_open(struct tapdisk *td, const char *spec, const struct td_vbd_opts *opts)
{
	struct td_open_hook *h;
	int err;

	if (td->vbd)
		return -EBUSY;
	err = td_blocklock_new(&td->locks);
	if (err)
		return err;
	err = vbd_open(spec, opts, &td->vbd);
	if (err) {
		td_blocklock_free(td->locks);
		td->locks = NULL;
		return err;
	}
	log_set_disk(spec);
	for (h = td->open_hooks; h; h = h->next) {
		err = h->fn(td, h);
		if (err) {
			tapdisk_close(td);
			return err;
		}
	}
	{
		struct td_vbd_info in;

		vbd_get_info(td->vbd, &in);
		log_info("open: %" PRIu64 " bytes, %u queue%s, %s%s", in.size_bytes, in.nr_queues,
			 in.nr_queues == 1 ? "" : "s", aio_engine_name(in.engine),
			 in.readonly ? ", read-only" : "");
	}
	return 0;
}

void tapdisk_close(struct tapdisk *td)
{
	struct td_frontend *fe;

	if (!td->vbd)
		return;
	/* a paused vbd would hold the frontends' requests, and their detach, forever */
	vbd_refuse_new(td->vbd);
	while ((fe = td->frontends)) {
		td->frontends = fe->next;
		fe->next = NULL;
		fe->detach(fe);
	}
	vbd_close(td->vbd);
	td->vbd = NULL;
	td_blocklock_free(td->locks);
	td->locks = NULL;
	log_info("image closed");
	log_set_disk(NULL);
}

void tapdisk_open_hook_add(struct tapdisk *td, struct td_open_hook *h)
{
	struct td_open_hook **p = &td->open_hooks;

	/* in the order given on the command line */
	while (*p)
		p = &(*p)->next;
	h->next = NULL;
	*p = h;
}

void tapdisk_frontend_add(struct tapdisk *td, struct td_frontend *fe)
{
	fe->next = td->frontends;
	td->frontends = fe;
}

void tapdisk_frontend_del(struct tapdisk *td, struct td_frontend *fe)
{
	for (struct td_frontend **p = &td->frontends; *p; p = &(*p)->next) {
		if (*p == fe) {
			*p = fe->next;
			fe->next = NULL;
			return;
		}
	}
}

void tapdisk_request_quit(struct tapdisk *td)
{
	td->quit = true;
	evloop_stop(td->loop);
}

int tapdisk_parse_drv_opts(const char *s, struct drv_opt **out, unsigned *nr)
{
	return drv_opts_parse(s, out, nr);
}

/* ---- info ---- */

static json_t *image_json(const struct td_vbd_info *in)
{
	return json_pack("{s:s, s:s, s:I, s:i, s:i, s:b, s:i, s:i, s:s, s:i, s:I, s:b, s:b, s:b, "
			 "s:b}",
			 "spec", in->spec, "state", in->paused ? "paused" : "running", "size",
			 (json_int_t)in->size_bytes, "block_bytes", (int)in->block_bytes,
			 "phys_block_bytes", (int)in->phys_block_bytes, "readonly", in->readonly,
			 "queues", (int)in->nr_queues, "queue_depth", (int)in->queue_depth,
			 "engine", aio_engine_name(in->engine), "chain_depth", (int)in->chain_depth,
			 "max_io_bytes", (json_int_t)in->max_io_bytes, "can_discard",
			 in->can_discard, "can_write_zeroes", in->can_write_zeroes,
			 "can_block_status", in->can_block_status, "native_fua", in->native_fua);
}

static json_t *frontends_json(struct tapdisk *td)
{
	json_t *a = json_array();

	for (struct td_frontend *fe = td->frontends; a && fe; fe = fe->next) {
		json_t *o = json_pack("{s:s}", "kind", fe->kind);

		if (!o || (fe->describe && fe->describe(fe, o)) || json_array_append_new(a, o)) {
			json_decref(o);
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *tapdisk_info_json(struct tapdisk *td)
{
	json_t *o =
		json_pack("{s:s, s:s, s:i, s:i, s:I, s:s}", "program", "tapdisk", "version",
			  TAPDISK_VERSION, "protocol", CTLMSG_VERSION, "pid", (int)getpid(),
			  "started", (json_int_t)td->started, "state", td->vbd ? "open" : "closed");
	struct td_vbd_info in;
	int err = 0;

	if (!o)
		return NULL;
	if (td->ctl_path)
		err = json_obj_set(o, "control", json_string(td->ctl_path));
	if (!err && td->vbd) {
		vbd_get_info(td->vbd, &in);
		err = json_obj_set(o, "image", image_json(&in));
	}
	if (!err)
		err = json_obj_set(o, "frontends", frontends_json(td));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}
