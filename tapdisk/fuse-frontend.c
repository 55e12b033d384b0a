// SPDX-License-Identifier: MIT
/*
 * The FUSE export as a tapdisk frontend: --fuse on the command line, the
 * fuse-add and fuse-remove control commands, and what `info` says about
 * it.  Each export is one file; several may serve one image.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ctl.h"
#include "errors.h"
#include "fuse-export.h"
#include "json.h"
#include "tapdisk.h"

#define FUSE_CLI_MAX 8

static struct {
	const char *paths[FUSE_CLI_MAX];
	unsigned nr;
	struct td_open_hook hook;
} fuse_cli;

struct fuse_fe {
	struct td_frontend fe;
	struct tdfuse *f;
	bool readonly;
};

static void fe_detach(struct td_frontend *fe)
{
	struct fuse_fe *x = fe->opaque;

	tdfuse_free(x->f);
	free(x);
}

static int fe_describe(struct td_frontend *fe, json_t *obj)
{
	struct fuse_fe *x = fe->opaque;

	return json_obj_set(obj, "path", json_string(tdfuse_path(x->f)))
		       ?: json_obj_set(obj, "readonly", json_boolean(x->readonly));
}

static int fuse_start(struct tapdisk *td, const char *path, bool readonly)
{
	struct tdfuse_config cfg = { .path = path, .readonly = readonly, .locks = td->locks };
	struct fuse_fe *x = calloc(1, sizeof(*x));
	int err;

	if (!x)
		return -ENOMEM;
	err = tdfuse_new(td->vbd, &cfg, &x->f);
	if (err) {
		free(x);
		return err;
	}
	x->readonly = readonly;
	x->fe = (struct td_frontend){
		.kind = "fuse", .detach = fe_detach, .describe = fe_describe, .opaque = x
	};
	tapdisk_frontend_add(td, &x->fe);
	return 0;
}

static struct fuse_fe *fuse_find(struct tapdisk *td, const char *path)
{
	for (struct td_frontend *fe = td->frontends; fe; fe = fe->next) {
		struct fuse_fe *x = fe->opaque;

		if (strcmp(fe->kind, "fuse") == 0 && strcmp(tdfuse_path(x->f), path) == 0)
			return x;
	}
	return NULL;
}

static int cli_open_hook(struct tapdisk *td, struct td_open_hook *h)
{
	unsigned i;
	int err = 0;

	for (i = 0; !err && i < fuse_cli.nr; i++)
		err = fuse_start(td, fuse_cli.paths[i], false);
	return err; /* tapdisk_open closes the image, detaching those that started */
}

int td_cli_fuse(struct tapdisk *td, const char *arg)
{
	if (!*arg)
		return td_cli_error("--fuse: empty file name");
	if (fuse_cli.nr == FUSE_CLI_MAX)
		return td_cli_error("--fuse: at most %d files", FUSE_CLI_MAX);
	fuse_cli.paths[fuse_cli.nr++] = arg;
	if (fuse_cli.nr == 1) {
		fuse_cli.hook = (struct td_open_hook){ .fn = cli_open_hook };
		tapdisk_open_hook_add(td, &fuse_cli.hook);
	}
	return 0;
}

int td_cmd_fuse_add(struct td_ctl_call *call)
{
	struct tapdisk *td = call->td;
	const char *path = NULL;
	bool readonly = false;
	int err;

	if (!td->vbd)
		return td_ctl_fail(call, -ENODEV, "fuse-add: no image is open");
	if ((err = td_ctl_arg_string(call, "path", true, &path)) ||
	    (err = td_ctl_arg_bool(call, "readonly", &readonly)))
		return err;
	if (fuse_find(td, path))
		return td_ctl_fail(call, -EEXIST, "fuse-add: %s is exported already", path);
	err = fuse_start(td, path, readonly);
	if (err)
		return td_ctl_fail(call, err, "fuse-add %s: %s", path, err_str(err));
	return 0;
}

int td_cmd_fuse_remove(struct td_ctl_call *call)
{
	struct fuse_fe *x;
	const char *path = NULL;
	int err = td_ctl_arg_string(call, "path", true, &path);

	if (err)
		return err;
	x = fuse_find(call->td, path);
	if (!x)
		return td_ctl_fail(call, -ENOENT, "fuse-remove: %s is not exported", path);
	tapdisk_frontend_del(call->td, &x->fe);
	fe_detach(&x->fe);
	return 0;
}
