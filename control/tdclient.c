/* SPDX-License-Identifier: MIT */
/*
 * The tapdisk control socket, client side (see tdclient.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctlclient.h"
#include "ctlmsg.h"
#include "errors.h"
#include "tdclient.h"

void tdc_argv(const char *bin, const char *ctl_path, char **argv)
{
	unsigned i = 0;

	argv[i++] = (char *)bin;
	argv[i++] = (char *)"--ctl";
	argv[i++] = (char *)ctl_path;
	argv[i++] = (char *)"-f";
	argv[i] = NULL;
}

int tdc_call(const char *ctl_path, const char *cmd, const json_t *args, unsigned timeout_s,
	     json_t **reply, char *err, size_t size)
{
	return tdc_call_fds(ctl_path, cmd, args, NULL, 0, timeout_s, reply, err, size);
}

int tdc_call_fds(const char *ctl_path, const char *cmd, const json_t *args, const int *fds,
		 unsigned nr_fds, unsigned timeout_s, json_t **reply, char *err, size_t size)
{
	return ctlc_exchange(ctl_path, "the tapdisk", cmd, args ? json_deep_copy(args) : NULL, fds,
			     nr_fds, timeout_s, reply, err, size);
}

int tdc_open(const char *ctl_path, const char *spec, const json_t *args, unsigned timeout_s,
	     char *err, size_t size)
{
	json_t *a = json_pack("{s:s, s:b}", "spec", spec, "readonly",
			      json_is_true(json_object_get(args, "readonly")));
	json_t *opts = json_object_get(args, "opts"), *v;
	char options[1024] = "";
	const char *key;
	size_t n = 0;
	int rc;

	if (!a)
		return -ENOMEM;
	/* The driver options as the command line writes them: KEY=VALUE,... */
	json_object_foreach(opts, key, v)
	{
		n += (size_t)snprintf(options + n, n < sizeof(options) ? sizeof(options) - n : 0,
				      "%s%s=%s", n ? "," : "", key, json_string_value(v));
	}
	if (n >= sizeof(options)) {
		json_decref(a);
		snprintf(err, size, "the driver options are too long");
		return -E2BIG;
	}
	if (n)
		json_object_set_new(a, "options", json_string(options));
	rc = tdc_call(ctl_path, "open", a, timeout_s, NULL, err, size);
	json_decref(a);
	return rc;
}

int tdc_export_add(const char *ctl_path, const char *kind, const char *where, unsigned timeout_s,
		   char *err, size_t size)
{
	bool nbd = strcmp(kind, "nbd") == 0;
	json_t *a = json_pack("{s:s}", nbd ? "addr" : "path", where);
	int rc;

	if (!a)
		return -ENOMEM;
	rc = tdc_call(ctl_path, nbd ? "nbd-add" : "fuse-add", a, timeout_s, NULL, err, size);
	json_decref(a);
	return rc;
}

static unsigned get_uint(const json_t *o, const char *key, unsigned dflt)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
		return dflt;
	return (unsigned)json_integer_value(v);
}

int tdc_info(const char *ctl_path, unsigned timeout_s, struct tdc_info *out, char *err, size_t size)
{
	json_t *res = NULL, *rep, *v;
	int rc = tdc_call(ctl_path, "info", NULL, timeout_s, &res, err, size);

	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	rep = json_object_get(res, "image");
	v = json_object_get(rep, "size");
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, size, "tapdisk at %s has no image open", ctl_path);
		json_decref(res);
		return -ENOMEDIUM;
	}
	out->size_bytes = (uint64_t)json_integer_value(v);
	out->block_bytes = get_uint(rep, "block_bytes", 512);
	out->phys_block_bytes = get_uint(rep, "phys_block_bytes", out->block_bytes);
	out->discard_bytes = get_uint(rep, "discard_bytes", out->phys_block_bytes);
	out->readonly = json_is_true(json_object_get(rep, "readonly"));
	out->can_discard = json_is_true(json_object_get(rep, "can_discard"));
	json_decref(res);
	return 0;
}

int tdc_ping(const char *ctl_path)
{
	int fd, rc = ctlmsg_connect(ctl_path, &fd);

	if (rc == 0)
		close(fd);
	return rc;
}
