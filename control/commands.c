/* SPDX-License-Identifier: MIT */
/*
 * tapctld's commands (docs/control-protocol.md lists them with their
 * arguments and replies).  Each takes the request object and returns the
 * reply object; arguments are checked here, before anything is started.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctlproto.h"
#include "errors.h"
#include "log.h"
#include "tapctld.h"
#include "tdclient.h"

#define ERR_BYTES 512

/* The disk named by the request's "minor"; NULL with *reply set if none. */
static struct tcd_disk *req_disk(struct tcd *t, const json_t *req, json_t **reply)
{
	char why[160];
	int64_t minor;
	struct tcd_disk *d;
	int rc = ctlp_get_int(req, "minor", 0, TCD_MAX_MINORS - 1, &minor, why, sizeof(why));

	if (rc == -ENOENT) {
		*reply = ctlp_error(-EINVAL, "argument 'minor' is missing");
		return NULL;
	}
	if (rc < 0) {
		*reply = ctlp_error(rc, "%s", why);
		return NULL;
	}
	d = tcd_disk_by_minor(t, (int)minor);
	if (!d)
		*reply = ctlp_error(-ENOENT, "no disk has minor %lld", (long long)minor);
	return d;
}

/* A reply for @rc: ok, or the error with @err. */
static json_t *result(int rc, const char *err)
{
	return rc < 0 ? ctlp_error(rc, "%s", err) : ctlp_ok(NULL);
}

/* The open arguments a request carries, checked: readonly, nbd[], fuse, opts{}. */
static json_t *open_args(const json_t *req, char *err, size_t size)
{
	json_t *a = json_object(), *nbd = json_object_get(req, "nbd");
	json_t *opts = json_object_get(req, "opts"), *v;
	const char *fuse, *key;
	bool ro = false;
	size_t i;
	int rc;

	if (!a)
		return NULL;
	if (ctlp_get_bool(req, "readonly", &ro, err, size) == -EINVAL)
		goto bad;
	json_object_set_new(a, "readonly", json_boolean(ro));
	if (nbd && !json_is_array(nbd)) {
		snprintf(err, size, "argument 'nbd' must be a list of strings");
		goto bad;
	}
	json_array_foreach(nbd, i, v)
	{
		if (!json_is_string(v)) {
			snprintf(err, size, "argument 'nbd' must be a list of strings");
			goto bad;
		}
	}
	if (nbd && json_array_size(nbd))
		json_object_set(a, "nbd", nbd);
	rc = ctlp_get_str(req, "fuse", &fuse, err, size);
	if (rc == -EINVAL)
		goto bad;
	if (rc == 0)
		json_object_set_new(a, "fuse", json_string(fuse));
	if (opts && !json_is_object(opts)) {
		snprintf(err, size, "argument 'opts' must be an object of strings");
		goto bad;
	}
	json_object_foreach(opts, key, v)
	{
		if (!json_is_string(v)) {
			snprintf(err, size, "option '%s' must be a string", key);
			goto bad;
		}
	}
	if (opts && json_object_size(opts))
		json_object_set(a, "opts", opts);
	return a;
bad:
	json_decref(a);
	return NULL;
}

static const char *req_spec(const json_t *req, json_t **reply)
{
	const char *spec = NULL;
	char why[160];
	int rc = ctlp_get_str(req, "spec", &spec, why, sizeof(why));

	if (rc == -ENOENT)
		*reply = ctlp_error(-EINVAL, "argument 'spec' (TYPE:PATH) is missing");
	else if (rc < 0)
		*reply = ctlp_error(rc, "%s", why);
	else if (!strchr(spec, ':') || spec[0] == ':')
		*reply = ctlp_error(-EINVAL, "image '%s' is not TYPE:PATH (qcow2:/path, aio:/path)",
				    spec);
	else
		return spec;
	return NULL;
}

static json_t *cmd_create(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES] = "invalid arguments";
	json_t *reply = NULL, *args;
	struct tcd_disk *d;
	const char *spec = req_spec(req, &reply);
	int rc;

	if (!spec)
		return reply;
	args = open_args(req, err, sizeof(err));
	if (!args)
		return ctlp_error(-EINVAL, "%s", err);
	rc = tcd_spawn(t, &d, err, sizeof(err));
	if (rc == 0) {
		rc = tcd_attach(t, d, -1, err, sizeof(err));
		if (rc == 0)
			rc = tcd_open(d, spec, args, err, sizeof(err));
		if (rc < 0) {
			char ignore[ERR_BYTES];

			if (d->state == TCD_ATTACHED || d->state == TCD_SPAWNED)
				tcd_detach(d, ignore, sizeof(ignore));
		}
	}
	json_decref(args);
	if (rc < 0)
		return ctlp_error(rc, "%s", err);
	return ctlp_ok(json_pack("{s:i, s:i}", "minor", d->minor, "pid", (int)d->pid));
}

static json_t *cmd_destroy(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	json_t *reply = NULL;
	struct tcd_disk *d = req_disk(t, req, &reply);
	int rc = 0;

	if (!d)
		return reply;
	if (d->state == TCD_RUNNING || d->state == TCD_PAUSED)
		rc = tcd_close(d, err, sizeof(err));
	if (rc == 0)
		rc = tcd_detach(d, err, sizeof(err));
	return result(rc, err);
}

static json_t *cmd_list(struct tcd *t, const json_t *req)
{
	json_t *disks = json_array(), *deaths = json_array(), *o;
	struct tcd_disk *d;
	unsigned i, k;

	if (!disks || !deaths)
		goto nomem;
	for (d = t->disks; d; d = d->next)
		if (json_array_append_new(disks, tcd_disk_json(d)) < 0)
			goto nomem;
	for (i = 0; i < t->nr_deaths; i++) {
		const struct tcd_death *x;

		k = (t->next_death + TCD_MAX_DEATHS - t->nr_deaths + i) % TCD_MAX_DEATHS;
		x = &t->deaths[k];
		o = json_pack("{s:i, s:i, s:s, s:s, s:I}", "minor", x->minor, "pid", (int)x->pid,
			      "spec", x->spec, "how", x->how, "time", (json_int_t)x->when_s);
		if (json_array_append_new(deaths, o) < 0)
			goto nomem;
	}
	return ctlp_ok(json_pack("{s:o, s:o}", "disks", disks, "deaths", deaths));
nomem:
	json_decref(disks);
	json_decref(deaths);
	return NULL;
}

static json_t *cmd_pause(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	json_t *reply = NULL;
	struct tcd_disk *d = req_disk(t, req, &reply);

	if (!d)
		return reply;
	return result(tcd_pause(d, err, sizeof(err)), err);
}

static json_t *cmd_unpause(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	json_t *reply = NULL;
	struct tcd_disk *d = req_disk(t, req, &reply);
	const char *spec = NULL;

	if (!d)
		return reply;
	if (json_object_get(req, "spec") && !(spec = req_spec(req, &reply)))
		return reply;
	return result(tcd_resume(d, spec, err, sizeof(err)), err);
}

static json_t *cmd_stats(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	json_t *reply = NULL, *stats = NULL, *info = NULL, *o;
	struct tcd_disk *d = req_disk(t, req, &reply);
	int rc;

	if (!d)
		return reply;
	o = tcd_disk_json(d);
	if (!o)
		return NULL;
	if (d->state == TCD_RUNNING || d->state == TCD_PAUSED) {
		rc = tdc_call(d->ctl_path, "info", NULL, t->opts.tapdisk_timeout_s, &info, err,
			      sizeof(err));
		if (rc == 0)
			rc = tdc_call(d->ctl_path, "stats", NULL, t->opts.tapdisk_timeout_s, &stats,
				      err, sizeof(err));
		if (rc < 0) {
			json_decref(info);
			json_decref(o);
			return ctlp_error(rc, "%s", err);
		}
		/* The image as the tapdisk has it now (size, geometry, abilities). */
		json_object_set(o, "image", json_object_get(info, "image"));
		json_object_set(o, "frontends", json_object_get(info, "frontends"));
		json_object_set_new(o, "tapdisk", stats);
		json_decref(info);
	}
	return ctlp_ok(json_pack("{s:o}", "stats", o));
}

static json_t *cmd_spawn(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	struct tcd_disk *d;
	int rc = tcd_spawn(t, &d, err, sizeof(err));

	if (rc < 0)
		return ctlp_error(rc, "%s", err);
	return ctlp_ok(json_pack("{s:i}", "pid", (int)d->pid));
}

static json_t *cmd_attach(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	int64_t pid, minor = -1;
	struct tcd_disk *d;
	int rc;

	rc = ctlp_get_int(req, "pid", 1, INT32_MAX, &pid, err, sizeof(err));
	if (rc == -ENOENT)
		return ctlp_error(-EINVAL, "argument 'pid' is missing");
	if (rc < 0)
		return ctlp_error(rc, "%s", err);
	rc = ctlp_get_int(req, "minor", 0, TCD_MAX_MINORS - 1, &minor, err, sizeof(err));
	if (rc == -EINVAL)
		return ctlp_error(rc, "%s", err);
	d = tcd_disk_by_pid(t, (pid_t)pid);
	if (!d)
		return ctlp_error(-ENOENT, "no tapdisk of this tapctld has pid %lld",
				  (long long)pid);
	rc = tcd_attach(t, d, (int)minor, err, sizeof(err));
	if (rc < 0)
		return ctlp_error(rc, "%s", err);
	return ctlp_ok(json_pack("{s:i}", "minor", d->minor));
}

static json_t *cmd_detach(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	json_t *reply = NULL;
	struct tcd_disk *d = req_disk(t, req, &reply);

	if (!d)
		return reply;
	return result(tcd_detach(d, err, sizeof(err)), err);
}

static json_t *cmd_open(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES] = "invalid arguments";
	json_t *reply = NULL, *args;
	struct tcd_disk *d = req_disk(t, req, &reply);
	const char *spec;
	int rc;

	if (!d)
		return reply;
	spec = req_spec(req, &reply);
	if (!spec)
		return reply;
	args = open_args(req, err, sizeof(err));
	if (!args)
		return ctlp_error(-EINVAL, "%s", err);
	rc = tcd_open(d, spec, args, err, sizeof(err));
	json_decref(args);
	return result(rc, err);
}

static json_t *cmd_close(struct tcd *t, const json_t *req)
{
	char err[ERR_BYTES];
	json_t *reply = NULL;
	struct tcd_disk *d = req_disk(t, req, &reply);

	if (!d)
		return reply;
	return result(tcd_close(d, err, sizeof(err)), err);
}

static json_t *cmd_version(struct tcd *t, const json_t *req)
{
	return ctlp_ok(json_pack("{s:s, s:i, s:i, s:i}", "program", "tapctld", "protocol",
				 CTLMSG_VERSION, "commands", CTLP_COMMANDS_VERSION, "pid",
				 (int)getpid()));
}

static const struct {
	const char *name;
	json_t *(*fn)(struct tcd *t, const json_t *req);
} commands[] = {
	{ "create", cmd_create }, { "destroy", cmd_destroy }, { "list", cmd_list },
	{ "pause", cmd_pause },	  { "unpause", cmd_unpause }, { "stats", cmd_stats },
	{ "spawn", cmd_spawn },	  { "attach", cmd_attach },   { "detach", cmd_detach },
	{ "open", cmd_open },	  { "close", cmd_close },     { "version", cmd_version },
};

/* xen-local: register a local domain's memfd and eventfds. */
static json_t *cmd_xen_local(struct tcd *t, const json_t *req, const int *fds, unsigned nr_fds)
{
	char err[ERR_BYTES];
	int64_t domid;
	int rc = ctlp_get_int(req, "domid", 1, 0x7fef, &domid, err, sizeof(err));

	if (rc == -ENOENT)
		return ctlp_error(-EINVAL, "argument 'domid' is missing");
	if (rc < 0)
		return ctlp_error(rc, "%s", err);
	rc = tcd_xen_local(t, (uint32_t)domid, fds, nr_fds, err, sizeof(err));
	return result(rc, err);
}

json_t *tcd_command(struct tcd *t, const json_t *req, const int *fds, unsigned nr_fds)
{
	const json_t *args = json_object_get(req, "args");
	json_t *empty = NULL, *reply;
	const char *cmd = NULL;
	char why[160];
	size_t i;

	if (ctlp_get_str(req, "cmd", &cmd, why, sizeof(why)) < 0)
		return ctlp_error(-EINVAL, "the request names no command ('cmd')");
	if (args && !json_is_object(args))
		return ctlp_error(-EINVAL, "the request's 'args' is not an object");
	if (!args)
		args = empty = json_object();
	if (strcmp(cmd, "xen-local") == 0) {
		reply = cmd_xen_local(t, args, fds, nr_fds);
		json_decref(empty);
		return reply;
	}
	if (nr_fds) {
		json_decref(empty);
		return ctlp_error(-EINVAL, "%s takes no file descriptors (%u came)", cmd, nr_fds);
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(cmd, commands[i].name) == 0) {
			log_dbg(LOG_F_CTL, "control: %s", cmd);
			reply = commands[i].fn(t, args);
			json_decref(empty);
			return reply;
		}
	}
	json_decref(empty);
	return ctlp_error(-EINVAL, "unknown command '%.40s'", cmd);
}
