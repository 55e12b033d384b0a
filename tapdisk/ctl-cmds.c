/* SPDX-License-Identifier: MIT */
/*
 * The control commands of the process and its image: help, info, open,
 * close, pause, resume, stats, shutdown (docs/control-protocol.md).
 * Frontends' commands live in their own files.
 */
#include <errno.h>
#include <stdlib.h>

#include "ctl.h"
#include "errors.h"
#include "json.h"
#include "tapdisk.h"

static int no_image(struct td_ctl_call *call)
{
	return td_ctl_fail(call, -ENODEV, "%s: no image is open", call->cmd);
}

/* Move @v (stolen) into the result; -ENOMEM if that fails. */
static int result_set(struct td_ctl_call *call, const char *key, json_t *v)
{
	return json_obj_set(call->result, key, v);
}

int td_cmd_help(struct td_ctl_call *call)
{
	json_t *list = json_array();

	for (const struct td_ctl_cmd *c = td_ctl_commands; list && c->name; c++) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "name", c->name, "args", c->args, "help",
				      c->help);

		if (json_array_append_new(list, o)) {
			json_decref(list);
			list = NULL;
		}
	}
	return result_set(call, "commands", list);
}

int td_cmd_info(struct td_ctl_call *call)
{
	json_t *info = tapdisk_info_json(call->td);

	if (!info)
		return -ENOMEM;
	json_decref(call->result);
	call->result = info;
	return 0;
}

/* The open arguments over the command line's defaults. */
static int open_opts(struct td_ctl_call *call, struct td_vbd_opts *o)
{
	uint64_t queues = o->nr_queues ? o->nr_queues : 1;
	uint64_t depth = o->queue_depth ? o->queue_depth : TD_DEFAULT_QUEUE_DEPTH;
	uint64_t max_io = o->max_io_bytes;
	const char *engine = NULL;
	int err;

	if ((err = td_ctl_arg_bool(call, "readonly", &o->readonly)) ||
	    (err = td_ctl_arg_u64(call, "queues", false, 1, TD_MAX_QUEUES, &queues)) ||
	    (err = td_ctl_arg_u64(call, "queue_depth", false, 1, TD_MAX_QUEUE_DEPTH, &depth)) ||
	    (err = td_ctl_arg_u64(call, "max_io_bytes", false, 512, 1u << 30, &max_io)) ||
	    (err = td_ctl_arg_string(call, "engine", false, &engine)))
		return err;
	if (engine && aio_engine_parse(engine, &o->engine))
		return td_ctl_fail(call, -EINVAL,
				   "open: engine '%s' is not one of io_uring, libaio, sync, auto",
				   engine);
	o->nr_queues = (unsigned)queues;
	o->queue_depth = (unsigned)depth;
	o->max_io_bytes = max_io;
	return 0;
}

/* Driver options the spec's driver does not take: refused to the client, naming the key. */
static int check_drv_opts(struct td_ctl_call *call, const char *spec, const struct drv_opt *opts,
			  unsigned nr)
{
	const struct drv_ops *ops;
	const char *path;
	unsigned bad = 0;

	if (drv_parse_spec(spec, &ops, &path))
		return 0; /* the open reports the spec */
	if (!drv_opts_check(ops, path, opts, nr, &bad))
		return 0;
	return td_ctl_fail(call, -EINVAL, "open %s: driver %s refused option '%s=%s'", spec,
			   ops->name, opts[bad].key, opts[bad].value);
}

int td_cmd_open(struct td_ctl_call *call)
{
	struct tapdisk *td = call->td;
	struct td_vbd_opts o = td->opts;
	struct drv_opt *drv_opts = NULL;
	const char *spec = NULL, *options = NULL;
	struct td_vbd_info in;
	int err;

	if (td->vbd) {
		vbd_get_info(td->vbd, &in);
		return td_ctl_fail(call, -EBUSY, "open: %s is already open; close it first",
				   in.spec);
	}
	if ((err = td_ctl_arg_string(call, "spec", true, &spec)) || (err = open_opts(call, &o)) ||
	    (err = td_ctl_arg_string(call, "options", false, &options)))
		return err;
	if (options && *options) {
		err = tapdisk_parse_drv_opts(options, &drv_opts, &o.nr_drv_opts);
		if (err)
			return td_ctl_fail(call, err, "open: options '%s': expected KEY=VALUE,...",
					   options);
		o.drv_opts = drv_opts;
	}
	if (o.nr_drv_opts && (err = check_drv_opts(call, spec, drv_opts, o.nr_drv_opts))) {
		free(drv_opts);
		return err;
	}
	err = tapdisk_open(td, spec, &o);
	free(drv_opts);
	if (err && call->message[0])
		return err;
	if (err)
		return td_ctl_fail(call, err, "open %s: %s", spec, err_str(err));
	return td_cmd_info(call);
}

int td_cmd_close(struct td_ctl_call *call)
{
	if (!call->td->vbd)
		return no_image(call);
	tapdisk_close(call->td);
	return 0;
}

int td_cmd_pause(struct td_ctl_call *call)
{
	int err;

	if (!call->td->vbd)
		return no_image(call);
	err = vbd_pause(call->td->vbd);
	if (err == -EALREADY)
		return td_ctl_fail(call, err, "pause: already paused");
	if (err)
		return td_ctl_fail(call, err, "pause: the flush failed, still running: %s",
				   err_str(err));
	return 0;
}

int td_cmd_resume(struct td_ctl_call *call)
{
	const char *spec = NULL;
	int err;

	if (!call->td->vbd)
		return no_image(call);
	err = td_ctl_arg_string(call, "spec", false, &spec);
	if (err)
		return err;
	err = vbd_resume(call->td->vbd, spec);
	if (err == -EALREADY)
		return td_ctl_fail(call, err, "resume: not paused");
	if (err == -EMEDIUMTYPE)
		return td_ctl_fail(call, err,
				   "resume: the image's block size differs from the disk's; "
				   "still paused");
	if (err)
		return td_ctl_fail(call, err, "resume: %s; still paused", err_str(err));
	return td_cmd_info(call);
}

int td_cmd_stats(struct td_ctl_call *call)
{
	bool per_queue = false;
	json_t *st;
	int err;

	if (!call->td->vbd)
		return no_image(call);
	err = td_ctl_arg_bool(call, "per_queue", &per_queue);
	if (err)
		return err;
	st = vbd_stats_json(call->td->vbd, per_queue);
	if (!st)
		return -ENOMEM;
	json_decref(call->result);
	call->result = st;
	return 0;
}

int td_cmd_shutdown(struct td_ctl_call *call)
{
	call->quit = true;
	return 0;
}
