// SPDX-License-Identifier: MIT
/*
 * The NBD export as a tapdisk frontend: --nbd and --export-name on the
 * command line, the nbd-add and nbd-remove control commands, and what
 * `info` says about it.  One export per tapdisk, on any number of
 * addresses; it is set up again each time an image opens.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ctl.h"
#include "errors.h"
#include "json.h"
#include "log.h"
#include "nbd-internal.h"
#include "tapdisk.h"

#define NBD_CLI_MAX_ADDRS 16

/* The command line's export, attached at every open. */
static struct {
	const char *addrs[NBD_CLI_MAX_ADDRS];
	unsigned nr;
	const char *name;
	struct td_open_hook hook;
} nbd_cli;

struct nbd_fe {
	struct td_frontend fe;
	struct nbds_server *srv;
	struct tapdisk *td;
	bool readonly;
};

static void fe_detach(struct td_frontend *fe)
{
	struct nbd_fe *n = fe->opaque;

	nbds_free(n->srv);
	free(n);
}

static int fe_describe(struct td_frontend *fe, json_t *obj)
{
	struct nbd_fe *n = fe->opaque;
	const struct nbds_server *s = n->srv;
	json_t *addrs = json_array();
	int err = addrs ? 0 : -ENOMEM;

	for (const struct nbds_listener *l = s->listeners; !err && l; l = l->next)
		err = json_array_append_new(addrs, json_string(l->addr)) ? -ENOMEM : 0;
	err = err ?: json_obj_set(obj, "addresses", addrs);
	if (err) {
		json_decref(addrs);
		return err;
	}
	addrs = NULL;
	err = json_obj_set(obj, "export", json_string(s->name));
	err = err ?: json_obj_set(obj, "readonly", json_boolean(s->exp.readonly));
	err = err ?: json_obj_set(obj, "connections", json_integer(nbds_conn_count(s)));
	return err ?: json_obj_set(obj, "bitmaps", json_integer(s->exp.nr_bitmaps));
}

static struct nbd_fe *nbd_find(struct tapdisk *td)
{
	for (struct td_frontend *fe = td->frontends; fe; fe = fe->next) {
		if (strcmp(fe->kind, "nbd") == 0)
			return fe->opaque;
	}
	return NULL;
}

/* The export, created on the first address. */
static int nbd_start(struct tapdisk *td, const char *name, bool readonly, struct nbd_fe **out)
{
	struct nbds_config cfg = { .name = name, .readonly = readonly, .locks = td->locks };
	struct nbd_fe *n = calloc(1, sizeof(*n));
	int err;

	if (!n)
		return -ENOMEM;
	err = nbds_new(td->vbd, &cfg, &n->srv);
	if (err) {
		free(n);
		return err;
	}
	n->td = td;
	n->readonly = readonly;
	n->fe = (struct td_frontend){
		.kind = "nbd", .detach = fe_detach, .describe = fe_describe, .opaque = n
	};
	tapdisk_frontend_add(td, &n->fe);
	*out = n;
	return 0;
}

static void nbd_stop(struct tapdisk *td, struct nbd_fe *n)
{
	tapdisk_frontend_del(td, &n->fe);
	fe_detach(&n->fe);
}

/* ---- the command line ---------------------------------------------------------- */

static int cli_open_hook(struct tapdisk *td, struct td_open_hook *h)
{
	struct nbd_fe *n;
	unsigned i;
	int err = nbd_start(td, nbd_cli.name, false, &n);

	for (i = 0; !err && i < nbd_cli.nr; i++)
		err = nbds_listen(n->srv, nbd_cli.addrs[i]);
	if (err && n)
		nbd_stop(td, n);
	return err;
}

static bool addr_valid(const char *arg)
{
	return (strncmp(arg, "unix:", 5) == 0 && arg[5]) ||
	       (strncmp(arg, "tcp:", 4) == 0 && arg[4]);
}

int td_cli_nbd(struct tapdisk *td, const char *arg)
{
	if (!addr_valid(arg))
		return td_cli_error("--nbd '%s': expected unix:PATH or tcp:HOST:PORT", arg);
	if (nbd_cli.nr == NBD_CLI_MAX_ADDRS)
		return td_cli_error("--nbd: at most %d addresses", NBD_CLI_MAX_ADDRS);
	nbd_cli.addrs[nbd_cli.nr++] = arg;
	if (nbd_cli.nr == 1) {
		nbd_cli.hook = (struct td_open_hook){ .fn = cli_open_hook };
		tapdisk_open_hook_add(td, &nbd_cli.hook);
	}
	return 0;
}

int td_cli_export_name(struct tapdisk *td, const char *arg)
{
	if (strlen(arg) > NBDP_STRING_MAX)
		return td_cli_error("--export-name: longer than %u bytes", NBDP_STRING_MAX);
	nbd_cli.name = arg;
	return 0;
}

/* ---- control commands ------------------------------------------------------------ */

int td_cmd_nbd_add(struct td_ctl_call *call)
{
	struct tapdisk *td = call->td;
	const char *addr = NULL, *name = NULL;
	bool readonly = false, created = false;
	struct nbd_fe *n;
	int err;

	if (!td->vbd)
		return td_ctl_fail(call, -ENODEV, "nbd-add: no image is open");
	if ((err = td_ctl_arg_string(call, "addr", true, &addr)) ||
	    (err = td_ctl_arg_string(call, "name", false, &name)) ||
	    (err = td_ctl_arg_bool(call, "readonly", &readonly)))
		return err;
	if (!addr_valid(addr))
		return td_ctl_fail(call, -EINVAL, "nbd-add: '%s' is not unix:PATH or tcp:HOST:PORT",
				   addr);
	n = nbd_find(td);
	if (n && ((name && strcmp(name, n->srv->name)) || readonly != n->readonly))
		return td_ctl_fail(call, -EEXIST,
				   "nbd-add: the export '%s' exists with other settings; "
				   "nbd-remove it first",
				   n->srv->name);
	if (!n) {
		err = nbd_start(td, name, readonly, &n);
		if (err)
			return td_ctl_fail(call, err, "nbd-add: %s", err_str(err));
		created = true;
	}
	err = nbds_listen(n->srv, addr);
	if (err && created)
		nbd_stop(td, n);
	if (err)
		return td_ctl_fail(call, err, "nbd-add %s: %s", addr, err_str(err));
	return 0;
}

int td_cmd_nbd_remove(struct td_ctl_call *call)
{
	struct nbd_fe *n = nbd_find(call->td);

	if (!n)
		return td_ctl_fail(call, -ENOENT, "nbd-remove: no NBD export");
	nbd_stop(call->td, n);
	return 0;
}
